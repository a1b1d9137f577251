//! `approved-registries` (admission): admits only runs whose image comes from
//! an approved registry.
//!
//! Admission runs before the job is rendered, so the plugin judges the run's
//! `image` job variable (the run's own, merged over its deployment's): a run
//! without one is admitted (it gets the pool's default image), one whose image
//! starts with an approved prefix is admitted, any other is rejected with the
//! image and the allowed prefixes in the refusal (code
//! `unapproved-registry`, details `{"image", "prefixes"}`); an image that is
//! not a string is rejected with the code `bad-image`. The Python and
//! JavaScript versions next to it (`python/app.py`, `js/plugin.js`) make the
//! same decisions with the same refusals.
//!
//! Limits: the mutator stage cannot re-check (a later mutator or the
//! template's default image is not seen here), and a raw job (a run with its
//! own `job`, no deployment) carries its image in job variables only if the
//! caller set the `image` job variable; an image written directly in a raw
//! job manifest is not seen. Prefixes match text: end them with `/` so that
//! `ghcr.io/acme/` does not also admit `ghcr.io/acme-evil/...`.
//!
//! Config:
//!
//! ```json
//! {"prefixes": ["registry.example.com/", "ghcr.io/acme/"]}
//! ```
//!
//! * `prefixes` (required, non-empty list of non-empty strings).

use weir_plugin_sdk::config::ConfigObject;
use weir_plugin_sdk::json::short;
use weir_plugin_sdk::serde_json::{Value, json};
use weir_plugin_sdk::{
    Admission, AdmissionPlugin, Description, Plugin, Refusal, Result, RunContext, Stats, log,
};

/// The parsed config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub prefixes: Vec<String>,
}

pub struct ApprovedRegistries;

impl Plugin for ApprovedRegistries {
    type Config = Config;

    fn describe() -> Description {
        Description::new(
            "approved-registries",
            "1.0.0",
            "admits only runs whose image comes from an approved registry",
        )
        .with_config_schema(json!({
            "type": "object",
            "required": ["prefixes"],
            "properties": {
                "prefixes": {
                    "type": "array",
                    "minItems": 1,
                    "items": {"type": "string", "minLength": 1}
                }
            },
            "additionalProperties": false
        }))
    }

    fn parse_config(config: &Value) -> Result<Config> {
        let cfg = ConfigObject::root(config)?;
        cfg.allow_only(&["prefixes"])?;
        let prefixes = cfg.required("prefixes", cfg.strings("prefixes")?)?;
        if prefixes.is_empty() {
            return Err(cfg.error("prefixes", "must list at least one prefix"));
        }
        if let Some(i) = prefixes.iter().position(String::is_empty) {
            return Err(cfg.error(&format!("prefixes[{i}]"), "must not be empty"));
        }
        Ok(Config { prefixes })
    }
}

impl AdmissionPlugin for ApprovedRegistries {
    fn admit(config: &Config, ctx: &RunContext, _stats: &dyn Stats) -> Result<Admission> {
        let image = match ctx.job_variable("image") {
            None => return Ok(Admission::Admit),
            Some(Value::String(image)) => image,
            Some(other) => {
                return Ok(Admission::reject(
                    "bad-image",
                    format!(
                        "job variable `image` must be a string, got {}",
                        short(other)
                    ),
                ));
            }
        };
        if config
            .prefixes
            .iter()
            .any(|p| image.starts_with(p.as_str()))
        {
            return Ok(Admission::Admit);
        }
        log::info("image from an unapproved registry", &[("image", image)]);
        Ok(Admission::Reject(
            Refusal::new(
                "unapproved-registry",
                format!(
                    "image {image:?} is not from an approved registry; allowed prefixes: {}",
                    config.prefixes.join(", ")
                ),
            )
            .with_details(json!({"image": image, "prefixes": config.prefixes})),
        ))
    }
}

weir_plugin_sdk::export_admission!(ApprovedRegistries);

#[cfg(test)]
mod tests {
    use super::*;
    use weir_plugin_sdk::{StatsTable, run_admission, validate_config};

    const CONFIG: &str = r#"{"prefixes": ["registry.example.com/", "ghcr.io/acme/"]}"#;

    fn decide(job_variables: Value) -> Admission {
        let ctx = RunContext {
            job_variables: job_variables.as_object().cloned().unwrap_or_default(),
            ..RunContext::default()
        };
        match run_admission::<ApprovedRegistries>(CONFIG, &ctx, &StatsTable::default()) {
            Ok(a) => a,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn approved_images_are_admitted() {
        assert_eq!(
            decide(json!({"image": "registry.example.com/team/app:1"})),
            Admission::Admit
        );
        assert_eq!(
            decide(json!({"image": "ghcr.io/acme/tool@sha256:abc"})),
            Admission::Admit
        );
    }

    #[test]
    fn runs_without_an_image_are_admitted() {
        assert_eq!(decide(json!({})), Admission::Admit);
        assert_eq!(decide(json!({"image": null, "env": {}})), Admission::Admit);
    }

    #[test]
    fn other_images_are_rejected_with_the_prefixes() {
        assert_eq!(
            decide(json!({"image": "ghcr.io/acme-evil/x:1"})),
            Admission::Reject(
                Refusal::new(
                    "unapproved-registry",
                    "image \"ghcr.io/acme-evil/x:1\" is not from an approved registry; \
                     allowed prefixes: registry.example.com/, ghcr.io/acme/"
                )
                .with_details(json!({
                    "image": "ghcr.io/acme-evil/x:1",
                    "prefixes": ["registry.example.com/", "ghcr.io/acme/"]
                }))
            )
        );
        assert!(matches!(
            decide(json!({"image": "busybox:1.36"})),
            Admission::Reject(_)
        ));
    }

    #[test]
    fn non_string_images_are_rejected() {
        assert_eq!(
            decide(json!({"image": ["a"]})),
            Admission::reject(
                "bad-image",
                "job variable `image` must be a string, got [\"a\"]"
            )
        );
    }

    #[test]
    fn config_errors_name_the_key() {
        let err = |c: &str| {
            validate_config::<ApprovedRegistries>(c)
                .map_err(|e| e.message)
                .err()
        };
        assert_eq!(err(CONFIG), None);
        assert_eq!(err("").as_deref(), Some("config: missing key `prefixes`"));
        assert_eq!(
            err(r#"{"prefixes": ["a/"], "prefix": "b"}"#).as_deref(),
            Some("config: unknown key `prefix` (allowed: prefixes)")
        );
        assert_eq!(
            err(r#"{"prefixes": "a/"}"#).as_deref(),
            Some("config key `prefixes`: expected a list of strings, got string \"a/\"")
        );
        assert_eq!(
            err(r#"{"prefixes": ["a/", 1]}"#).as_deref(),
            Some("config key `prefixes[1]`: expected a string, got number 1")
        );
        assert_eq!(
            err(r#"{"prefixes": []}"#).as_deref(),
            Some("config key `prefixes`: must list at least one prefix")
        );
        assert_eq!(
            err(r#"{"prefixes": ["a/", ""]}"#).as_deref(),
            Some("config key `prefixes[1]`: must not be empty")
        );
    }
}

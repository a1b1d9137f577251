//! weir:plugin@0.2.0 admission plugin: a per-team quota read with
//! `stats.occupancy` on the run's `team` label, refused with a structured
//! refusal. Config `{"max": N}` (its schema requires it); `{"max": N, "do":
//! ...}` makes it misbehave for the runtime's tests:
//! - `"bad-code"`: rejects with the code `Not A Code` (invalid output);
//! - `"bad-details"`: rejects with details that are not a JSON object;
//! - `"ask-many"`: asks about 100 distinct tags (over the per-decision bound);
//! - `"error"`: refuses to decide with a structured refusal.

wit_bindgen::generate!({ path: "../../../wit/v0.2.0", world: "admission-plugin" });

use exports::weir::plugin::admission::Guest as AdmissionGuest;
use exports::weir::plugin::plugin::Guest as PluginGuest;
use weir::plugin::log::{Level, log};
use weir::plugin::stats::occupancy;
use weir::plugin::types::{Admission, Description, Refusal, Run, Scope};

struct Plugin;

fn refusal(code: &str, message: String, details: Option<String>) -> Refusal {
    Refusal {
        code: code.into(),
        message,
        details,
    }
}

impl PluginGuest for Plugin {
    fn describe() -> Description {
        Description {
            name: "v2-admission".into(),
            version: "2.0.0".into(),
            summary: "a per-team quota on running runs".into(),
            config_schema: Some(
                r#"{"type": "object", "required": ["max"], "properties": {"max": {"type": "integer", "minimum": 0}, "do": {"type": "string"}}, "additionalProperties": false}"#
                    .into(),
            ),
        }
    }

    fn validate_config(config: String) -> Result<(), Refusal> {
        // The host checked the schema first; what a schema cannot say:
        let value: serde_json::Value = serde_json::from_str(&config)
            .map_err(|e| refusal("bad-config", e.to_string(), None))?;
        if value["max"].as_u64() == Some(13) {
            return Err(refusal(
                "unlucky",
                "13 is not a quota".into(),
                Some(r#"{"field": "max"}"#.into()),
            ));
        }
        Ok(())
    }
}

impl AdmissionGuest for Plugin {
    fn admit(config: String, run: &Run) -> Result<Admission, Refusal> {
        let config: serde_json::Value = serde_json::from_str(&config)
            .map_err(|e| refusal("bad-config", e.to_string(), None))?;
        match config["do"].as_str() {
            Some("bad-code") => {
                return Ok(Admission::Reject(refusal("Not A Code", "x".into(), None)));
            }
            Some("bad-details") => {
                return Ok(Admission::Reject(refusal(
                    "bad-details",
                    "x".into(),
                    Some("[1, 2]".into()),
                )));
            }
            Some("ask-many") => {
                for i in 0..100 {
                    occupancy(&Scope::Tag(format!("t{i}")));
                }
            }
            Some("error") => {
                return Err(refusal(
                    "quota-service-down",
                    "the quota service did not answer".into(),
                    Some(r#"{"retry_after_s": 30}"#.into()),
                ));
            }
            _ => {}
        }
        let max = config["max"].as_u64().unwrap_or(0);
        let Some(team) = run.label("team") else {
            return Ok(Admission::Admit);
        };
        let running =
            u64::from(occupancy(&Scope::Label((String::from("team"), team.clone()))).running);
        log(
            Level::Info,
            "team quota",
            &[
                ("team".into(), team.clone()),
                ("running".into(), running.to_string()),
            ],
        );
        if running >= max {
            return Ok(Admission::Reject(refusal(
                "quota-exceeded",
                format!("team {team} has {running} running; its quota is {max}"),
                Some(format!(
                    r#"{{"team": "{team}", "running": {running}, "max": {max}}}"#
                )),
            )));
        }
        Ok(Admission::Admit)
    }
}

export!(Plugin);

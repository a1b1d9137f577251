//! `tag-router` (router): sends runs to a pool and/or queue by tag or labels.
//!
//! Config:
//!
//! ```json
//! {"rules": [
//!     {"tag": "gpu", "pool": "gpu-pool", "queue": "default"},
//!     {"label": {"team": "a"}, "queue": "team-a", "add_tags": ["team-a"]}
//! ]}
//! ```
//!
//! * `rules` (required list): tried in order; the first matching rule wins
//!   and later rules are not looked at. No match: the run keeps its pool and
//!   queue.
//! * a rule matches on `tag` (the run has that tag) and/or `label` (the run
//!   has every given label with the given value); a rule with both needs both.
//!   Each rule needs at least one of them; `label` must not be empty.
//! * `pool`, `queue` (optional strings): the route; unset keeps the current one.
//! * `add_tags` (optional list of strings): tags added to the run.

use std::collections::BTreeMap;

use weir_plugin_sdk::config::ConfigObject;
use weir_plugin_sdk::serde_json::{Value, json};
use weir_plugin_sdk::{
    BAD_CONFIG, Description, Plugin, Refusal, Result, Route, RouterPlugin, RunContext, Stats, log,
};

/// One routing rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub tag: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub route: Route,
}

impl Rule {
    pub fn matches(&self, ctx: &RunContext) -> bool {
        self.tag.as_deref().is_none_or(|t| ctx.has_tag(t))
            && self
                .labels
                .iter()
                .all(|(k, v)| ctx.label(k) == Some(v.as_str()))
    }
}

/// The parsed config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub rules: Vec<Rule>,
}

pub struct TagRouter;

impl Plugin for TagRouter {
    type Config = Config;

    fn describe() -> Description {
        let name = json!({"type": "string", "minLength": 1});
        Description::new(
            "tag-router",
            "1.0.0",
            "sends runs to a pool and/or queue by tag or labels",
        )
        .with_config_schema(json!({
            "type": "object",
            "required": ["rules"],
            "properties": {
                "rules": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "tag": name,
                            "label": {
                                "type": "object",
                                "minProperties": 1,
                                "additionalProperties": {"type": "string"}
                            },
                            "pool": name,
                            "queue": name,
                            "add_tags": {"type": "array", "items": name}
                        },
                        "anyOf": [{"required": ["tag"]}, {"required": ["label"]}],
                        "additionalProperties": false
                    }
                }
            },
            "additionalProperties": false
        }))
    }

    fn parse_config(config: &Value) -> Result<Config> {
        let cfg = ConfigObject::root(config)?;
        cfg.allow_only(&["rules"])?;
        let rules = cfg.required("rules", cfg.objects("rules")?)?;
        let rules = rules
            .iter()
            .map(|rule| {
                rule.allow_only(&["tag", "label", "pool", "queue", "add_tags"])?;
                let tag = rule.non_empty_str("tag")?.map(str::to_owned);
                let labels = rule.string_map("label")?;
                if labels.as_ref().is_some_and(BTreeMap::is_empty) {
                    return Err(rule.error("label", "must name at least one label"));
                }
                if tag.is_none() && labels.is_none() {
                    return Err(Refusal::new(
                        BAD_CONFIG,
                        format!(
                            "config key `{}`: a rule needs `tag` or `label`",
                            rule.path()
                        ),
                    ));
                }
                let add_tags = rule.strings("add_tags")?.unwrap_or_default();
                if let Some(i) = add_tags.iter().position(String::is_empty) {
                    return Err(rule.error(&format!("add_tags[{i}]"), "must not be empty"));
                }
                Ok(Rule {
                    tag,
                    labels: labels.unwrap_or_default(),
                    route: Route {
                        pool: rule.non_empty_str("pool")?.map(str::to_owned),
                        queue: rule.non_empty_str("queue")?.map(str::to_owned),
                        add_tags,
                    },
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Config { rules })
    }
}

impl RouterPlugin for TagRouter {
    fn route(config: &Config, ctx: &RunContext, _stats: &dyn Stats) -> Result<Route> {
        match config
            .rules
            .iter()
            .enumerate()
            .find(|(_, r)| r.matches(ctx))
        {
            Some((i, rule)) => {
                log::debug("rule matched", &[("rule", &i)]);
                Ok(rule.route.clone())
            }
            None => Ok(Route::unchanged()),
        }
    }
}

weir_plugin_sdk::export_router!(TagRouter);

#[cfg(test)]
mod tests {
    use super::*;
    use weir_plugin_sdk::{StatsTable, run_router, validate_config};

    const CONFIG: &str = r#"{"rules": [
        {"tag": "gpu", "pool": "gpu-pool", "queue": "default"},
        {"label": {"team": "a"}, "queue": "team-a", "add_tags": ["team-a"]},
        {"tag": "big", "label": {"team": "b", "tier": "1"}, "pool": "big-b"}
    ]}"#;

    fn ctx(tags: &[&str], labels: &[(&str, &str)]) -> RunContext {
        RunContext {
            pool: "p".into(),
            queue: "default".into(),
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            ..RunContext::default()
        }
    }

    fn route(ctx: &RunContext) -> Route {
        match run_router::<TagRouter>(CONFIG, ctx, &StatsTable::default()) {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn tag_rule_routes() {
        let r = route(&ctx(&["gpu"], &[]));
        assert_eq!(r.pool.as_deref(), Some("gpu-pool"));
        assert_eq!(r.queue.as_deref(), Some("default"));
        assert!(r.add_tags.is_empty());
    }

    #[test]
    fn first_matching_rule_wins() {
        let r = route(&ctx(&["gpu"], &[("team", "a")]));
        assert_eq!(r.pool.as_deref(), Some("gpu-pool"));
    }

    #[test]
    fn label_rule_routes_and_tags() {
        let r = route(&ctx(&[], &[("team", "a"), ("other", "x")]));
        assert_eq!(
            r,
            Route {
                pool: None,
                queue: Some("team-a".into()),
                add_tags: vec!["team-a".into()]
            }
        );
    }

    #[test]
    fn all_labels_and_the_tag_must_match() {
        assert_eq!(route(&ctx(&["big"], &[("team", "b")])), Route::unchanged());
        assert_eq!(
            route(&ctx(&[], &[("team", "b"), ("tier", "1")])),
            Route::unchanged()
        );
        let r = route(&ctx(&["big"], &[("team", "b"), ("tier", "1")]));
        assert_eq!(r.pool.as_deref(), Some("big-b"));
    }

    #[test]
    fn no_match_keeps_everything() {
        assert_eq!(route(&ctx(&["cpu"], &[("team", "z")])), Route::unchanged());
    }

    #[test]
    fn config_errors_name_the_key() {
        let err = |c: &str| validate_config::<TagRouter>(c).map_err(|e| e.message).err();
        assert_eq!(err(CONFIG), None);
        assert_eq!(err("{}").as_deref(), Some("config: missing key `rules`"));
        assert_eq!(err(""), Some("config: missing key `rules`".into()));
        assert_eq!(
            err(r#"{"rules": [], "x": 1}"#).as_deref(),
            Some("config: unknown key `x` (allowed: rules)")
        );
        assert_eq!(
            err(r#"{"rules": [{"tag": "a", "pol": "p"}]}"#).as_deref(),
            Some("config: unknown key `rules[0].pol` (allowed: tag, label, pool, queue, add_tags)")
        );
        assert_eq!(
            err(r#"{"rules": [{"tag": "a"}, {"tag": 1}]}"#).as_deref(),
            Some("config key `rules[1].tag`: expected a string, got number 1")
        );
        assert_eq!(
            err(r#"{"rules": [{"label": {"team": 1}}]}"#).as_deref(),
            Some("config key `rules[0].label.team`: expected a string, got number 1")
        );
        assert_eq!(
            err(r#"{"rules": [{"queue": "q"}]}"#).as_deref(),
            Some("config key `rules[0]`: a rule needs `tag` or `label`")
        );
        assert_eq!(
            err(r#"{"rules": [{"label": {}}]}"#).as_deref(),
            Some("config key `rules[0].label`: must name at least one label")
        );
        assert_eq!(
            err(r#"{"rules": [{"tag": "a", "add_tags": "b"}]}"#).as_deref(),
            Some("config key `rules[0].add_tags`: expected a list of strings, got string \"b\"")
        );
        assert_eq!(
            err(r#"{"rules": {"tag": "a"}}"#).as_deref(),
            Some("config key `rules`: expected a list of objects, got object {\"tag\":\"a\"}")
        );
        assert!(err(r#"{"rules": [{"tag": "a", "pool": ""}]}"#).is_some());
        assert!(err("[]").is_some());
    }
}

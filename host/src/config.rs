//! The TOML configuration file: server settings, and pools, queues, limits,
//! deployments, plugins and their bindings applied idempotently at start
//! (create what is missing, bring what exists in line), so a set-up — its
//! policies included — can live in git. Unknown keys are errors.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::dispatcher::{DispatchError, Dispatcher};
use crate::domain::{BindingMode, OnError, PluginBinding, PoolType, RetryPolicy};
use crate::registry::BindingSpec;
use crate::resources::{
    DeploymentSpec, DeploymentUpdate, LimitSpec, PoolSpec, PoolUpdate, QueueSpec, QueueUpdate,
    ScheduleSpec,
};
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{what}: {source}")]
    Apply { what: String, source: DispatchError },
    /// A plugin or binding the registry refused.
    #[error("{what}: {message}")]
    Plugin { what: String, message: String },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    /// Kubernetes cluster connections.
    #[serde(default)]
    pub kubernetes: KubernetesConfig,
    #[serde(default)]
    pub pools: Vec<PoolConfig>,
    #[serde(default)]
    pub queues: Vec<QueueConfig>,
    #[serde(default)]
    pub limits: Vec<LimitSpec>,
    #[serde(default)]
    pub deployments: Vec<DeploymentConfig>,
    /// Plugin components, each kept as the newest version of its name.
    #[serde(default)]
    pub plugins: Vec<PluginConfig>,
    /// Admission and mutator plugins bound to pools.
    #[serde(default)]
    pub bindings: Vec<BindingConfig>,
    /// Router plugins in the global chain (no `pool`).
    #[serde(default)]
    pub routers: Vec<BindingConfig>,
    /// Where the file was read from; relative paths are resolved against it.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    /// `postgres://USER:PASSWORD@HOST:PORT/DATABASE`: keep state in
    /// PostgreSQL instead of the embedded SQLite file in the data directory.
    pub database_url: Option<String>,
    /// The URL jobs get in `WEIR_API_URL`; defaults to `http://<listen>`.
    pub api_url: Option<String>,
    /// A Scheduled run this long past its time is marked Late (default 15).
    pub late_after_seconds: Option<u32>,
    /// SIGTERM → SIGKILL grace for process runs (default 10).
    pub process_grace_seconds: Option<u32>,
    /// `on`, `off` or `auto` (default: on unless listening on loopback only).
    pub auth: Option<crate::auth::AuthMode>,
    /// PEM certificate chain: serve HTTPS (needs `tls_key`).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Plugin decisions whose inputs are kept for replay, newest first
    /// (default 100000; 0 records none).
    pub decision_inputs_keep: Option<u64>,
    /// Recorded inputs older than this many days are swept (default 30).
    pub decision_inputs_keep_days: Option<u32>,
    /// Schedules create runs for their times up to this far ahead (default
    /// 3600; 1 to 8640000, 100 days).
    pub schedule_horizon_seconds: Option<u32>,
    /// …and at most this many future runs per schedule (default 10; 1 to 1000).
    pub schedule_ahead: Option<u32>,
}

/// Most decision inputs `decision_inputs_keep` may ask to keep.
const MAX_DECISION_INPUTS: u64 = 100_000_000;

impl ServerConfig {
    fn check(&self) -> Result<(), String> {
        if self
            .decision_inputs_keep
            .is_some_and(|n| n > MAX_DECISION_INPUTS)
        {
            return Err(format!(
                "server.decision_inputs_keep: at most {MAX_DECISION_INPUTS}"
            ));
        }
        if self
            .decision_inputs_keep_days
            .is_some_and(|d| !(1..=3650).contains(&d))
        {
            return Err("server.decision_inputs_keep_days: must be between 1 and 3650".into());
        }
        if self
            .schedule_horizon_seconds
            .is_some_and(|s| !(1..=8_640_000).contains(&s))
        {
            return Err(
                "server.schedule_horizon_seconds: must be between 1 and 8640000 (100 days)".into(),
            );
        }
        if self
            .schedule_ahead
            .is_some_and(|n| !(1..=1000).contains(&n))
        {
            return Err("server.schedule_ahead: must be between 1 and 1000".into());
        }
        Ok(())
    }

    /// How far ahead schedules create runs.
    pub(crate) fn schedules(&self) -> crate::run::schedule::ScheduleSettings {
        let default = crate::run::schedule::ScheduleSettings::default();
        crate::run::schedule::ScheduleSettings {
            horizon: self
                .schedule_horizon_seconds
                .map_or(default.horizon, |s| chrono::Duration::seconds(i64::from(s))),
            ahead: self.schedule_ahead.map_or(default.ahead, |n| n as usize),
        }
    }

    /// How long plugin decisions' inputs are kept.
    pub(crate) fn retention(&self) -> crate::pipeline::Retention {
        let default = crate::pipeline::Retention::default();
        crate::pipeline::Retention {
            keep: self.decision_inputs_keep.unwrap_or(default.keep),
            keep_for: self
                .decision_inputs_keep_days
                .map_or(default.keep_for, |d| chrono::Duration::days(i64::from(d))),
        }
    }
}

/// `[kubernetes]`: the default connection (used by kubernetes pools that
/// name no cluster) and `[kubernetes.clusters.<name>]`, named ones.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesConfig {
    /// A kubeconfig file; default: in-cluster when running in a pod, else
    /// `$KUBECONFIG` or `~/.kube/config`.
    pub kubeconfig: Option<PathBuf>,
    /// A context in that kubeconfig; default: its current context.
    pub context: Option<String>,
    /// Client-side request budget: requests per second (default 50).
    pub qps: Option<f64>,
    /// Client-side request budget: burst (default 100).
    pub burst: Option<u32>,
    #[serde(default)]
    pub clusters: std::collections::BTreeMap<String, ClusterConfig>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// Required: a named connection always says where its kubeconfig is,
    /// or `in_cluster = true`.
    pub kubeconfig: Option<PathBuf>,
    #[serde(default)]
    pub in_cluster: bool,
    pub context: Option<String>,
    pub qps: Option<f64>,
    pub burst: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    pub name: String,
    #[serde(rename = "type")]
    pub pool_type: PoolType,
    /// Inline base job template.
    pub base_job_template: Option<toml::Value>,
    /// Or a JSON file holding it, relative to the config file.
    pub base_job_template_file: Option<PathBuf>,
    /// Kubernetes pools: a connection from `[kubernetes.clusters.<name>]`.
    pub cluster: Option<String>,
    pub concurrency_limit: Option<u32>,
    /// Applied only when given, so a pool paused at run time stays paused.
    pub paused: Option<bool>,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    pub pool: String,
    pub name: String,
    #[serde(default = "one")]
    pub priority: u32,
    pub concurrency_limit: Option<u32>,
    pub paused: Option<bool>,
    #[serde(default)]
    pub description: String,
    /// Seconds past its time after which a run turns Late (absent: the
    /// server's `late_after_seconds`).
    pub late_after_seconds: Option<u32>,
    /// `keep` (default) or `cancel`.
    #[serde(default)]
    pub late_action: crate::domain::LateAction,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentConfig {
    pub name: String,
    pub pool: String,
    pub queue: Option<String>,
    #[serde(default)]
    pub job_variables: Map<String, Value>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub parameters: Map<String, Value>,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub retries: RetryPolicy,
    /// The team whose submitter tokens may run it.
    pub team: Option<String>,
    /// `[[deployments.schedules]]`: cron, interval or one-off times.
    #[serde(default)]
    pub schedules: Vec<ScheduleSpec>,
}

/// `[[plugins]]`: a component file (relative to the config file) kept as
/// the newest version of `name`; with `digest`, a file whose SHA-256 differs
/// is refused.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    pub name: String,
    pub path: PathBuf,
    /// `sha256:<64 hex digits>`.
    pub digest: Option<String>,
}

/// `[[bindings]]` (with `pool`) and `[[routers]]` (without): the fields of
/// `weir pool bind` / `weir router bind`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindingConfig {
    pub pool: Option<String>,
    pub plugin: String,
    /// Pin a version; absent: follow the newest.
    pub version: Option<u32>,
    pub config: Option<toml::Value>,
    pub order: Option<i32>,
    pub on_error: Option<OnError>,
    pub deadline_ms: Option<u32>,
    pub memory_mb: Option<u32>,
    /// `enforce` (default) or `shadow`.
    pub mode: Option<BindingMode>,
}

impl Config {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config = Self::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })?;
        config.base_dir = path
            .parent()
            .map(Path::to_owned)
            .unwrap_or_else(|| PathBuf::from("."));
        Ok(config)
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let config: Self = toml::from_str(text).map_err(|e| e.to_string())?;
        config.server.check()?;
        Ok(config)
    }

    fn template_of(&self, pool: &PoolConfig) -> Result<Option<Value>, ConfigError> {
        let what = format!("pools.{}", pool.name);
        match (&pool.base_job_template, &pool.base_job_template_file) {
            (Some(_), Some(_)) => Err(ConfigError::Parse {
                path: self.base_dir.clone(),
                message: format!(
                    "{what}: give base_job_template or base_job_template_file, not both"
                ),
            }),
            (Some(inline), None) => {
                serde_json::to_value(inline)
                    .map(Some)
                    .map_err(|e| ConfigError::Parse {
                        path: self.base_dir.clone(),
                        message: format!("{what}.base_job_template: {e}"),
                    })
            }
            (None, Some(file)) => {
                let path = self.base_dir.join(file);
                let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                serde_json::from_str(&text)
                    .map(Some)
                    .map_err(|e| ConfigError::Parse {
                        path,
                        message: format!("{what}.base_job_template_file: {e}"),
                    })
            }
            (None, None) => Ok(None),
        }
    }

    /// Creates what is missing and updates what exists to match the file.
    /// Nothing absent from the file is deleted.
    pub async fn apply(&self, dispatcher: &Dispatcher) -> Result<(), ConfigError> {
        let apply_err =
            |what: String| move |source: DispatchError| ConfigError::Apply { what, source };
        let store = &dispatcher.store;
        for pool in &self.pools {
            let what = format!("pools.{}", pool.name);
            let template = self.template_of(pool)?;
            match store.get_pool(&pool.name).await {
                Ok(existing) => {
                    if existing.pool_type != pool.pool_type {
                        return Err(ConfigError::Apply {
                            what: format!("{what}.type"),
                            source: DispatchError::Store(StoreError::conflict(
                                Some("type"),
                                format!(
                                    "the pool exists with type {}; a pool's type cannot change",
                                    existing.pool_type.as_str()
                                ),
                            )),
                        });
                    }
                    let template = match template {
                        Some(t) => Some(t),
                        // No template in the file: Weir's default.
                        None => Some(
                            serde_json::to_value(crate::template::BaseJobTemplate::default_for(
                                pool.pool_type.template_kind(),
                            ))
                            .map_err(|e| ConfigError::Parse {
                                path: self.base_dir.clone(),
                                message: e.to_string(),
                            })?,
                        ),
                    };
                    dispatcher
                        .update_pool(
                            &pool.name,
                            PoolUpdate {
                                base_job_template: template,
                                cluster: Some(pool.cluster.clone()),
                                concurrency_limit: Some(pool.concurrency_limit),
                                paused: pool.paused,
                                description: Some(pool.description.clone()),
                            },
                        )
                        .await
                        .map_err(apply_err(what))?;
                }
                Err(StoreError::NotFound { .. }) => {
                    dispatcher
                        .create_pool(PoolSpec {
                            name: pool.name.clone(),
                            pool_type: pool.pool_type,
                            base_job_template: template,
                            cluster: pool.cluster.clone(),
                            concurrency_limit: pool.concurrency_limit,
                            paused: pool.paused.unwrap_or(false),
                            description: pool.description.clone(),
                        })
                        .await
                        .map_err(apply_err(what))?;
                }
                Err(e) => return Err(apply_err(what)(e.into())),
            }
        }
        for q in &self.queues {
            let what = format!("queues.{}/{}", q.pool, q.name);
            match store.get_queue(&q.pool, &q.name).await {
                Ok(_) => {
                    dispatcher
                        .update_queue(
                            &q.pool,
                            &q.name,
                            QueueUpdate {
                                priority: Some(q.priority),
                                concurrency_limit: Some(q.concurrency_limit),
                                paused: q.paused,
                                description: Some(q.description.clone()),
                                late_after_seconds: Some(q.late_after_seconds),
                                late_action: Some(q.late_action),
                            },
                        )
                        .await
                        .map_err(apply_err(what))?;
                }
                Err(StoreError::NotFound { .. }) => {
                    dispatcher
                        .create_queue(
                            &q.pool,
                            QueueSpec {
                                name: q.name.clone(),
                                priority: q.priority,
                                concurrency_limit: q.concurrency_limit,
                                paused: q.paused.unwrap_or(false),
                                description: q.description.clone(),
                                late_after_seconds: q.late_after_seconds,
                                late_action: q.late_action,
                            },
                        )
                        .await
                        .map_err(apply_err(what))?;
                }
                Err(e) => return Err(apply_err(what)(e.into())),
            }
        }
        for l in &self.limits {
            let what = format!("limits.{}", l.tag);
            match store.get_limit(&l.tag).await {
                Ok(_) => {
                    dispatcher
                        .update_limit(&l.tag, l.limit)
                        .await
                        .map_err(apply_err(what))?;
                }
                Err(StoreError::NotFound { .. }) => {
                    dispatcher
                        .create_limit(l.clone())
                        .await
                        .map_err(apply_err(what))?;
                }
                Err(e) => return Err(apply_err(what)(e.into())),
            }
        }
        for d in &self.deployments {
            let what = format!("deployments.{}", d.name);
            match store.get_deployment(&d.name).await {
                Ok(existing) => {
                    if existing.pool != d.pool {
                        return Err(ConfigError::Apply {
                            what: format!("{what}.pool"),
                            source: DispatchError::Store(StoreError::conflict(
                                Some("pool"),
                                format!(
                                    "the deployment exists in pool {:?}; delete it to move it",
                                    existing.pool
                                ),
                            )),
                        });
                    }
                    dispatcher
                        .update_deployment(
                            &d.name,
                            DeploymentUpdate {
                                queue: Some(d.queue.clone()),
                                job_variables: Some(d.job_variables.clone()),
                                tags: Some(d.tags.clone()),
                                parameters: Some(d.parameters.clone()),
                                description: Some(d.description.clone()),
                                retries: Some(d.retries),
                                team: Some(d.team.clone()),
                            },
                        )
                        .await
                        .map_err(apply_err(what))?;
                }
                Err(StoreError::NotFound { .. }) => {
                    dispatcher
                        .create_deployment(DeploymentSpec {
                            name: d.name.clone(),
                            pool: d.pool.clone(),
                            queue: d.queue.clone(),
                            job_variables: d.job_variables.clone(),
                            tags: d.tags.clone(),
                            parameters: d.parameters.clone(),
                            description: d.description.clone(),
                            retries: d.retries,
                            team: d.team.clone(),
                        })
                        .await
                        .map_err(apply_err(what))?;
                }
                Err(e) => return Err(apply_err(what)(e.into())),
            }
            for s in &d.schedules {
                let what = format!("deployments.{}.schedules.{}", d.name, s.name);
                dispatcher
                    .apply_schedule(&d.name, s.clone())
                    .await
                    .map_err(apply_err(what))?;
            }
        }
        self.apply_plugins(dispatcher).await?;
        for (i, b) in self.bindings.iter().enumerate() {
            let what = format!("bindings[{i}] ({})", b.plugin);
            let Some(pool) = &b.pool else {
                return Err(self.parse_error(format!(
                    "{what}: a binding needs the pool it binds to (a router goes in [[routers]])"
                )));
            };
            self.apply_binding(dispatcher, Some(pool), b, what).await?;
        }
        for (i, b) in self.routers.iter().enumerate() {
            let what = format!("routers[{i}] ({})", b.plugin);
            if b.pool.is_some() {
                return Err(self.parse_error(format!(
                    "{what}: a router binds to no pool (admission and mutator plugins go in \
                     [[bindings]])"
                )));
            }
            self.apply_binding(dispatcher, None, b, what).await?;
        }
        Ok(())
    }

    fn parse_error(&self, message: String) -> ConfigError {
        ConfigError::Parse {
            path: self.base_dir.clone(),
            message,
        }
    }

    /// Each `[[plugins]]` file, checked against its digest, added as the
    /// newest version of its name (a no-op when it already is).
    async fn apply_plugins(&self, dispatcher: &Dispatcher) -> Result<(), ConfigError> {
        use sha2::{Digest, Sha256};
        for p in &self.plugins {
            let what = format!("plugins.{}", p.name);
            let path = self.base_dir.join(&p.path);
            let bytes = std::fs::read(&path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            let actual = format!("sha256:{:x}", Sha256::digest(&bytes));
            if let Some(expected) = &p.digest {
                let well_formed = expected.strip_prefix("sha256:").is_some_and(|hex| {
                    hex.len() == 64 && hex.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
                });
                if !well_formed {
                    return Err(ConfigError::Parse {
                        path,
                        message: format!(
                            "{what}.digest: {expected:?} is not sha256: and 64 lowercase hex digits"
                        ),
                    });
                }
                if *expected != actual {
                    return Err(ConfigError::Parse {
                        path,
                        message: format!(
                            "{what}: the file's digest is {actual}, not {expected} as the \
                             config file says; refusing it"
                        ),
                    });
                }
            }
            dispatcher
                .pipeline
                .registry()
                .add(&p.name, &bytes)
                .await
                .map_err(|e| ConfigError::Plugin {
                    what: format!("{what} ({})", path.display()),
                    message: e.to_string(),
                })?;
        }
        Ok(())
    }

    /// One binding: kept when the stored one says the same, else replaced.
    async fn apply_binding(
        &self,
        dispatcher: &Dispatcher,
        pool: Option<&str>,
        b: &BindingConfig,
        what: String,
    ) -> Result<(), ConfigError> {
        let config = match &b.config {
            Some(c) => serde_json::to_value(c)
                .map_err(|e| self.parse_error(format!("{what}.config: {e}")))?,
            None => Value::Object(Map::new()),
        };
        let store = &dispatcher.store;
        let existing = store
            .list_bindings(pool)
            .await
            .map_err(|e| ConfigError::Apply {
                what: what.clone(),
                source: e.into(),
            })?
            .into_iter()
            .find(|e| e.plugin == b.plugin && e.mode == b.mode.unwrap_or_default());
        let spec = BindingSpec {
            plugin: b.plugin.clone(),
            version: b.version,
            config: Some(config),
            // Unsaid: where it is now (a new one goes last).
            order: b.order.or(existing.as_ref().map(|e| e.order)),
            on_error: b.on_error,
            deadline_ms: b.deadline_ms,
            memory_mb: b.memory_mb,
            mode: b.mode,
        };
        if let Some(existing) = existing {
            if same_binding(&existing, &spec) {
                return Ok(());
            }
            store
                .delete_binding(pool, &b.plugin, Some(existing.mode))
                .await
                .map_err(|e| ConfigError::Apply {
                    what: what.clone(),
                    source: e.into(),
                })?;
        }
        dispatcher
            .pipeline
            .registry()
            .bind_exactly(pool, spec)
            .await
            .map_err(|e| ConfigError::Plugin {
                what,
                message: e.to_string(),
            })?;
        Ok(())
    }
}

/// Whether a stored binding already is what `spec` asks for (unsaid limits:
/// the registry's defaults).
fn same_binding(existing: &PluginBinding, spec: &BindingSpec) -> bool {
    use crate::registry::{DEFAULT_DEADLINE_MS, DEFAULT_MEMORY_MB};
    existing.pinned_version == spec.version
        && Some(&existing.config) == spec.config.as_ref()
        && spec.order.is_none_or(|o| o == existing.order)
        && existing.on_error == spec.on_error.unwrap_or_default()
        && existing.deadline_ms == spec.deadline_ms.unwrap_or(DEFAULT_DEADLINE_MS)
        && existing.memory_mb == spec.memory_mb.unwrap_or(DEFAULT_MEMORY_MB)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_errors() {
        let err = Config::parse("[server]\nlisten = \"127.0.0.1:1\"\nlsiten = 2\n")
            .expect_err("typo must be refused");
        assert!(err.contains("lsiten"), "{err}");
        let err = Config::parse("[[pools]]\nname = \"a\"\ntype = \"process\"\ncolour = 1\n")
            .expect_err("unknown pool key");
        assert!(err.contains("colour"), "{err}");
    }

    #[test]
    fn full_config_parses() {
        let c = Config::parse(
            r#"
            [server]
            listen = "127.0.0.1:4680"
            late_after_seconds = 5
            [[pools]]
            name = "local"
            type = "process"
            concurrency_limit = 2
            [[queues]]
            pool = "local"
            name = "urgent"
            priority = 1
            [[limits]]
            tag = "db"
            limit = 1
            [[deployments]]
            name = "hello"
            pool = "local"
            job_variables = { command = "echo hi", env = { A = "b" } }
            retries = { max = 2, delay_seconds = 1 }
            "#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.pools[0].concurrency_limit, Some(2));
        assert_eq!(c.queues[0].priority, 1);
        assert_eq!(c.limits[0].limit, 1);
        assert_eq!(c.deployments[0].job_variables["env"]["A"], "b");
        assert_eq!(c.deployments[0].retries.max, 2);
        assert_eq!(c.server.late_after_seconds, Some(5));
    }

    #[test]
    fn plugins_bindings_and_routers_parse() {
        let c = Config::parse(
            r#"
            [[plugins]]
            name = "gate"
            path = "plugins/gate.wasm"
            digest = "sha256:00"
            [[bindings]]
            pool = "local"
            plugin = "gate"
            version = 2
            config = { prefixes = ["ghcr.io/acme/"] }
            on_error = "fail-open"
            deadline_ms = 100
            [[routers]]
            plugin = "route"
            order = 5
            "#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.plugins[0].path, PathBuf::from("plugins/gate.wasm"));
        assert_eq!(c.bindings[0].pool.as_deref(), Some("local"));
        assert_eq!(c.bindings[0].version, Some(2));
        assert_eq!(c.bindings[0].on_error, Some(OnError::FailOpen));
        assert_eq!(c.routers[0].order, Some(5));
        let err = Config::parse("[[bindings]]\npool = \"p\"\nplugin = \"g\"\nmod = 1\n")
            .expect_err("unknown binding key");
        assert!(err.contains("mod"), "{err}");
        let err =
            Config::parse("[[bindings]]\npool = \"p\"\nplugin = \"g\"\non_error = \"maybe\"\n")
                .expect_err("bad on_error");
        assert!(err.contains("maybe"), "{err}");
    }

    #[test]
    fn bad_type_names_the_key() {
        let err = Config::parse("[[pools]]\nname = \"a\"\ntype = \"docker\"\n").expect_err("type");
        assert!(err.contains("docker") || err.contains("type"), "{err}");
    }
}

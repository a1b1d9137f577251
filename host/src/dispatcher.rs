//! The front of a run's life: validated specs become stored pools, queues,
//! limits, deployments and runs; cancel requests reach the launcher. The API
//! and the config file both go through here, so validation lives in one place.
//!
//! Run creation is the first stage of the pipeline:
//! validate → routers → admission → store as Scheduled → wake the scheduler
//! (the plugin stages live in [`crate::pipeline`]).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Map, Value};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::auth::{AuthError, Principal, RunTokenKey};
use crate::backend::Backends;
use crate::domain::{
    Cause, ConcurrencyLimit, DEFAULT_QUEUE, Deployment, MAX_TAGS, Pool, PoolType, Queue,
    RetryPolicy, Run, RunId, RunState, ValidationError, document, validate_dns_label, validate_tag,
};
use crate::metrics::Metrics;
use crate::pipeline::{self, AdmissionVerdict, Pipeline};
use crate::replica::{Bus, Signal};
use crate::run::build::{BuildError, JobBuilder, JobRequest, Purpose, Source};
use crate::store::{DeploymentPatch, NewRun, PoolPatch, QueuePatch, Store, StoreError, Transition};
use crate::template::{BaseJobTemplate, TemplateError};

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A plugin refused (fail-closed) while previewing.
    #[error("{0}")]
    Refused(String),
    /// The caller's token does not allow this (`host/src/auth/`).
    #[error(transparent)]
    Auth(#[from] AuthError),
}

pub type Result<T, E = DispatchError> = std::result::Result<T, E>;

impl From<BuildError> for DispatchError {
    fn from(e: BuildError) -> Self {
        match e {
            BuildError::Template(t) => DispatchError::Template(t),
            BuildError::Refused(r) => DispatchError::Refused(r.message),
            e @ BuildError::Mutated(_) => DispatchError::Refused(e.to_string()),
        }
    }
}

/// Settings that shape every run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The URL jobs are given in `WEIR_API_URL`.
    pub api_url: String,
    /// A Scheduled run waiting longer than this past its time is marked Late.
    pub late_after: chrono::Duration,
    /// Per-run log files live here.
    pub log_dir: PathBuf,
    /// Names of the Kubernetes cluster connections a pool may choose.
    pub clusters: Vec<String>,
    /// When auth is on: the key each released job's `WEIR_RUN_TOKEN` is
    /// derived from. `None`: jobs get no run token.
    pub run_tokens: Option<RunTokenKey>,
}

// ---------------------------------------------------------------------------
// Specs: what a caller (HTTP body or config file) asks for.

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolSpec {
    pub name: String,
    #[serde(rename = "type")]
    pub pool_type: PoolType,
    #[serde(default)]
    pub base_job_template: Option<Value>,
    /// Kubernetes pools: a named cluster connection from the server's
    /// configuration (default: the server's default connection).
    #[serde(default)]
    pub cluster: Option<String>,
    #[serde(default)]
    pub concurrency_limit: Option<u32>,
    #[serde(default)]
    pub paused: bool,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolUpdate {
    #[serde(default)]
    pub base_job_template: Option<Value>,
    #[serde(default, with = "double_option")]
    pub cluster: Option<Option<String>>,
    #[serde(default, with = "double_option")]
    pub concurrency_limit: Option<Option<u32>>,
    #[serde(default)]
    pub paused: Option<bool>,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueSpec {
    pub name: String,
    #[serde(default = "one")]
    pub priority: u32,
    #[serde(default)]
    pub concurrency_limit: Option<u32>,
    #[serde(default)]
    pub paused: bool,
    #[serde(default)]
    pub description: String,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueUpdate {
    #[serde(default)]
    pub priority: Option<u32>,
    #[serde(default, with = "double_option")]
    pub concurrency_limit: Option<Option<u32>>,
    #[serde(default)]
    pub paused: Option<bool>,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSpec {
    pub tag: String,
    pub limit: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentSpec {
    pub name: String,
    pub pool: String,
    #[serde(default)]
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
    #[serde(default)]
    pub team: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentUpdate {
    #[serde(default, with = "double_option")]
    pub queue: Option<Option<String>>,
    #[serde(default)]
    pub job_variables: Option<Map<String, Value>>,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    #[serde(default)]
    pub parameters: Option<Map<String, Value>>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub retries: Option<RetryPolicy>,
    /// `null` removes the team.
    #[serde(default, with = "double_option")]
    pub team: Option<Option<String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSpec {
    #[serde(default)]
    pub deployment: Option<String>,
    #[serde(default)]
    pub pool: Option<String>,
    #[serde(default)]
    pub queue: Option<String>,
    /// A raw job configuration (no deployment): `{"command": ...}` for a
    /// process pool, `{"job_manifest": {...}}` for a kubernetes pool.
    #[serde(default)]
    pub job: Option<Value>,
    #[serde(default)]
    pub parameters: Map<String, Value>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub job_variables: Map<String, Value>,
    #[serde(default)]
    pub scheduled_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub idempotency_key: Option<String>,
    #[serde(default)]
    pub parent_run_id: Option<Uuid>,
    #[serde(default)]
    pub retries: Option<RetryPolicy>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenderSpec {
    #[serde(default)]
    pub job_variables: Map<String, Value>,
    #[serde(default)]
    pub parameters: Map<String, Value>,
}

/// Serde helper: a missing field is `None`, an explicit `null` is `Some(None)`.
mod double_option {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, T, D>(d: D) -> Result<Option<Option<T>>, D::Error>
    where
        T: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        Option::<T>::deserialize(d).map(Some)
    }
}

/// A limit of 0 holds every run; limits above this are surely typos.
const MAX_LIMIT: u32 = 1_000_000;
const MAX_KEY_LEN: usize = 256;

fn validate_limit(field: &str, value: Option<u32>) -> Result<(), ValidationError> {
    match value {
        Some(v) if v > MAX_LIMIT => Err(ValidationError::new(
            field,
            format!("must be at most {MAX_LIMIT}"),
        )),
        _ => Ok(()),
    }
}

fn validate_priority(field: &str, value: u32) -> Result<(), ValidationError> {
    if value == 0 || value > 1000 {
        return Err(ValidationError::new(
            field,
            "must be between 1 (served first) and 1000",
        ));
    }
    Ok(())
}

fn validate_tags(field: &str, tags: &[String]) -> Result<Vec<String>, ValidationError> {
    if tags.len() > MAX_TAGS {
        return Err(ValidationError::new(
            field,
            format!("at most {MAX_TAGS} tags"),
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(tags.len());
    for (i, t) in tags.iter().enumerate() {
        validate_tag(&format!("{field}[{i}]"), t)?;
        if !out.contains(t) {
            out.push(t.clone());
        }
    }
    Ok(out)
}

fn validate_description(field: &str, d: &str) -> Result<(), ValidationError> {
    if d.len() > 4096 {
        return Err(ValidationError::new(field, "must be at most 4096 bytes"));
    }
    Ok(())
}

fn parse_template(
    pool_type: PoolType,
    value: Option<Value>,
) -> Result<BaseJobTemplate, DispatchError> {
    let template = match value {
        None => BaseJobTemplate::default_for(pool_type.template_kind()),
        Some(v) => BaseJobTemplate::from_value(v)?,
    };
    Ok(template)
}

/// The merged parameters of a deployment and a run: the run's win key by key.
fn merge_parameters(base: &Map<String, Value>, over: &Map<String, Value>) -> Map<String, Value> {
    let mut merged = base.clone();
    for (k, v) in over {
        merged.insert(k.clone(), v.clone());
    }
    merged
}

/// The owner of a run's front half, shared by the API, the config loader,
/// the scheduler and the launcher.
pub struct Dispatcher {
    pub store: Arc<dyn Store>,
    pub pipeline: Arc<Pipeline>,
    pub settings: Settings,
    pub metrics: Arc<Metrics>,
    /// The backends by pool type (the launcher runs jobs on them; the API
    /// reads Kubernetes runs' logs through them).
    pub backends: Backends,
    wake: Arc<Notify>,
    cancels: Mutex<HashMap<RunId, CancellationToken>>,
    /// This replica's link to the others (and whether it leads).
    replicas: Bus,
}

impl Dispatcher {
    pub fn new(
        store: Arc<dyn Store>,
        pipeline: Arc<Pipeline>,
        settings: Settings,
        metrics: Arc<Metrics>,
        backends: Backends,
    ) -> Self {
        Self {
            backends,
            store,
            pipeline,
            settings,
            metrics,
            wake: Arc::new(Notify::new()),
            cancels: Mutex::new(HashMap::new()),
            replicas: Bus::local(),
        }
    }

    /// One of several replicas on a shared database (see [`crate::replica`]).
    pub fn with_replicas(mut self, bus: Bus) -> Self {
        self.replicas = bus;
        self
    }

    pub fn replicas(&self) -> &Bus {
        &self.replicas
    }

    /// The scheduler waits on this; anything that may let a run go wakes it.
    pub fn wake_handle(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    pub fn wake_scheduler(&self) {
        self.wake.notify_one();
        // Another replica may be the one scheduling.
        self.replicas.send(Signal::Wake);
    }

    /// Wakes this replica's scheduler only (a signal from another replica).
    pub fn wake_local(&self) {
        self.wake.notify_one();
    }

    pub fn log_path(&self, id: RunId) -> PathBuf {
        self.settings.log_dir.join(format!("{id}.log"))
    }

    // -- pools ---------------------------------------------------------------

    pub async fn create_pool(&self, spec: PoolSpec) -> Result<Pool> {
        validate_dns_label("name", &spec.name)?;
        validate_limit("concurrency_limit", spec.concurrency_limit)?;
        validate_description("description", &spec.description)?;
        let template = parse_template(spec.pool_type, spec.base_job_template)?;
        self.validate_cluster(spec.pool_type, spec.cluster.as_deref())?;
        let now = Utc::now();
        let pool = Pool {
            name: spec.name,
            pool_type: spec.pool_type,
            base_job_template: template,
            cluster: spec.cluster,
            concurrency_limit: spec.concurrency_limit,
            paused: spec.paused,
            description: spec.description,
            created_at: now,
            updated_at: now,
        };
        self.store.create_pool(&pool).await?;
        Ok(pool)
    }

    pub async fn update_pool(&self, name: &str, update: PoolUpdate) -> Result<Pool> {
        let pool = self.store.get_pool(name).await?;
        if let Some(Some(l)) = update.concurrency_limit {
            validate_limit("concurrency_limit", Some(l))?;
        }
        if let Some(d) = &update.description {
            validate_description("description", d)?;
        }
        if let Some(c) = &update.cluster {
            self.validate_cluster(pool.pool_type, c.as_deref())?;
        }
        let base_job_template = match update.base_job_template {
            Some(v) => Some(parse_template(pool.pool_type, Some(v))?),
            None => None,
        };
        let updated = self
            .store
            .update_pool(
                name,
                PoolPatch {
                    base_job_template,
                    cluster: update.cluster,
                    concurrency_limit: update.concurrency_limit,
                    paused: update.paused,
                    description: update.description,
                },
            )
            .await?;
        self.wake_scheduler();
        Ok(updated)
    }

    fn validate_cluster(&self, pool_type: PoolType, cluster: Option<&str>) -> Result<()> {
        let Some(name) = cluster else { return Ok(()) };
        if pool_type != PoolType::Kubernetes {
            return Err(ValidationError::new(
                "cluster",
                "only kubernetes pools connect to a cluster",
            )
            .into());
        }
        if !self.settings.clusters.iter().any(|c| c == name) {
            let known = if self.settings.clusters.is_empty() {
                "none is configured".to_owned()
            } else {
                format!("configured: {}", self.settings.clusters.join(", "))
            };
            return Err(ValidationError::new(
                "cluster",
                format!(
                    "no cluster connection named {name:?} in this Weir's configuration \
                     ([kubernetes.clusters.<name>]; {known})"
                ),
            )
            .into());
        }
        Ok(())
    }

    // -- queues --------------------------------------------------------------

    pub async fn create_queue(&self, pool: &str, spec: QueueSpec) -> Result<Queue> {
        validate_dns_label("name", &spec.name)?;
        validate_priority("priority", spec.priority)?;
        validate_limit("concurrency_limit", spec.concurrency_limit)?;
        validate_description("description", &spec.description)?;
        let queue = Queue {
            pool: pool.to_owned(),
            name: spec.name,
            priority: spec.priority,
            concurrency_limit: spec.concurrency_limit,
            paused: spec.paused,
            description: spec.description,
            created_at: Utc::now(),
        };
        self.store.create_queue(&queue).await?;
        Ok(queue)
    }

    pub async fn update_queue(&self, pool: &str, name: &str, update: QueueUpdate) -> Result<Queue> {
        if let Some(p) = update.priority {
            validate_priority("priority", p)?;
        }
        if let Some(Some(l)) = update.concurrency_limit {
            validate_limit("concurrency_limit", Some(l))?;
        }
        if let Some(d) = &update.description {
            validate_description("description", d)?;
        }
        let queue = self
            .store
            .update_queue(
                pool,
                name,
                QueuePatch {
                    priority: update.priority,
                    concurrency_limit: update.concurrency_limit,
                    paused: update.paused,
                    description: update.description,
                },
            )
            .await?;
        self.wake_scheduler();
        Ok(queue)
    }

    // -- limits --------------------------------------------------------------

    pub async fn create_limit(&self, spec: LimitSpec) -> Result<ConcurrencyLimit> {
        validate_tag("tag", &spec.tag)?;
        validate_limit("limit", Some(spec.limit))?;
        let limit = ConcurrencyLimit {
            tag: spec.tag,
            limit: spec.limit,
            created_at: Utc::now(),
        };
        self.store.create_limit(&limit).await?;
        Ok(limit)
    }

    pub async fn update_limit(&self, tag: &str, limit: u32) -> Result<ConcurrencyLimit> {
        validate_limit("limit", Some(limit))?;
        let l = self.store.update_limit(tag, limit).await?;
        self.wake_scheduler();
        Ok(l)
    }

    pub async fn delete_limit(&self, tag: &str) -> Result<()> {
        self.store.delete_limit(tag).await?;
        self.wake_scheduler();
        Ok(())
    }

    // -- deployments ---------------------------------------------------------

    /// Checks a deployment's pool, queue and job variables against the pool's
    /// template, so a bad deployment is refused at creation, not at run time.
    async fn check_deployment(
        &self,
        pool: &str,
        queue: Option<&str>,
        job_variables: &Map<String, Value>,
    ) -> Result<Pool> {
        let pool = match self.store.get_pool(pool).await {
            Err(StoreError::NotFound { .. }) => {
                return Err(
                    ValidationError::new("pool", format!("pool {pool:?} does not exist")).into(),
                );
            }
            other => other?,
        };
        if let Some(q) = queue {
            match self.store.get_queue(&pool.name, q).await {
                Err(StoreError::NotFound { .. }) => {
                    return Err(ValidationError::new(
                        "queue",
                        format!("queue {q:?} does not exist in pool {:?}", pool.name),
                    )
                    .into());
                }
                other => {
                    other?;
                }
            }
        }
        document::check_map_depth("job_variables", job_variables)?;
        pool.base_job_template.resolve_variables(&[job_variables])?;
        Ok(pool)
    }

    pub async fn create_deployment(&self, spec: DeploymentSpec) -> Result<Deployment> {
        validate_dns_label("name", &spec.name)?;
        validate_description("description", &spec.description)?;
        let tags = validate_tags("tags", &spec.tags)?;
        document::check_map_depth("parameters", &spec.parameters)?;
        if let Some(team) = &spec.team {
            validate_dns_label("team", team)?;
        }
        self.check_deployment(&spec.pool, spec.queue.as_deref(), &spec.job_variables)
            .await?;
        let now = Utc::now();
        let deployment = Deployment {
            name: spec.name,
            pool: spec.pool,
            queue: spec.queue,
            job_variables: spec.job_variables,
            tags,
            parameters: spec.parameters,
            description: spec.description,
            team: spec.team,
            retries: spec.retries,
            created_at: now,
            updated_at: now,
        };
        self.store.create_deployment(&deployment).await?;
        Ok(deployment)
    }

    pub async fn update_deployment(
        &self,
        name: &str,
        update: DeploymentUpdate,
    ) -> Result<Deployment> {
        let current = self.store.get_deployment(name).await?;
        let tags = update
            .tags
            .as_deref()
            .map(|t| validate_tags("tags", t))
            .transpose()?;
        if let Some(d) = &update.description {
            validate_description("description", d)?;
        }
        if let Some(Some(team)) = &update.team {
            validate_dns_label("team", team)?;
        }
        if let Some(parameters) = &update.parameters {
            document::check_map_depth("parameters", parameters)?;
        }
        let queue = update.queue.clone().unwrap_or(current.queue.clone());
        let vars = update
            .job_variables
            .as_ref()
            .unwrap_or(&current.job_variables);
        self.check_deployment(&current.pool, queue.as_deref(), vars)
            .await?;
        Ok(self
            .store
            .update_deployment(
                name,
                DeploymentPatch {
                    queue: update.queue,
                    job_variables: update.job_variables,
                    tags,
                    parameters: update.parameters,
                    description: update.description,
                    retries: update.retries,
                    team: update.team,
                },
            )
            .await?)
    }

    /// The exact job configuration a run of this deployment would get now:
    /// the release's own builder, mutators and final checks included.
    pub async fn render_deployment(&self, name: &str, spec: RenderSpec) -> Result<(Pool, Value)> {
        let deployment = self.store.get_deployment(name).await?;
        let pool = self.store.get_pool(&deployment.pool).await?;
        let queue = deployment
            .queue
            .clone()
            .unwrap_or_else(|| DEFAULT_QUEUE.into());
        document::check_map_depth("job_variables", &spec.job_variables)?;
        document::check_map_depth("parameters", &spec.parameters)?;
        let parameters = merge_parameters(&deployment.parameters, &spec.parameters);
        let job_variables =
            pipeline::merged_job_variables(Some(&deployment.job_variables), &spec.job_variables);
        let request = JobRequest {
            run_id: "00000000-0000-0000-0000-000000000000",
            pool: &pool,
            queue: &queue,
            source: Source::Deployment(&deployment),
            job_variables: &spec.job_variables,
            parameters: &parameters,
            tags: &deployment.tags,
            labels: &pipeline::labels_of(&job_variables),
            parent_run_id: None,
        };
        let job = self
            .job_builder()
            .build(&request, Purpose::Preview, &mut Vec::new())
            .await?;
        Ok((pool, job))
    }

    /// The job builder with this dispatcher's mutators and settings.
    pub(crate) fn job_builder(&self) -> JobBuilder<'_> {
        JobBuilder {
            pipeline: &self.pipeline,
            settings: &self.settings,
        }
    }

    // -- runs ----------------------------------------------------------------

    /// Stage 1 of the pipeline. Returns the run and whether it was created
    /// (false: the idempotency key matched an earlier run).
    pub async fn create_run(&self, spec: RunSpec, cause: &str) -> Result<(Run, bool)> {
        self.create_run_as(&Principal::Anyone, spec, cause).await
    }

    /// [`create_run`](Self::create_run) for `principal`: its team, pools and
    /// run (for a run token) are checked after routing, before anything is
    /// stored, so a refused run leaves no trace.
    pub async fn create_run_as(
        &self,
        principal: &Principal,
        spec: RunSpec,
        cause: &str,
    ) -> Result<(Run, bool)> {
        principal.require(crate::auth::Action::CreateRun)?;
        // Resolve where the run goes and what it runs.
        let deployment = match &spec.deployment {
            Some(name) => match self.store.get_deployment(name).await {
                Err(StoreError::NotFound { .. }) => {
                    return Err(ValidationError::new(
                        "deployment",
                        format!("deployment {name:?} does not exist"),
                    )
                    .into());
                }
                other => Some(other?),
            },
            None => None,
        };
        let pool_name = match (&deployment, &spec.pool) {
            (Some(d), Some(p)) if *p != d.pool => {
                return Err(ValidationError::new(
                    "pool",
                    format!(
                        "deployment {:?} runs in pool {:?}, not {p:?}",
                        d.name, d.pool
                    ),
                )
                .into());
            }
            (Some(d), _) => d.pool.clone(),
            (None, Some(p)) => p.clone(),
            (None, None) => {
                return Err(ValidationError::new(
                    "deployment",
                    "either a deployment, or a pool and a job, is required",
                )
                .into());
            }
        };
        if deployment.is_some() && spec.job.is_some() {
            return Err(ValidationError::new(
                "job",
                "a run uses either a deployment or a raw job, not both",
            )
            .into());
        }
        if deployment.is_none() && spec.job.is_none() {
            return Err(
                ValidationError::new("job", "a run without a deployment needs a job").into(),
            );
        }
        document::check_map_depth("job_variables", &spec.job_variables)?;
        document::check_map_depth("parameters", &spec.parameters)?;
        if let Some(job) = &spec.job {
            document::check_depth("job", job)?;
        }
        if deployment.is_none() && !spec.job_variables.is_empty() {
            return Err(ValidationError::new(
                "job_variables",
                "job variables apply to a deployment's template; a raw job is used as given",
            )
            .into());
        }
        let queue = spec
            .queue
            .clone()
            .or_else(|| deployment.as_ref().and_then(|d| d.queue.clone()))
            .unwrap_or_else(|| DEFAULT_QUEUE.to_owned());

        let mut tags = deployment
            .as_ref()
            .map(|d| d.tags.clone())
            .unwrap_or_default();
        tags.extend(validate_tags("tags", &spec.tags)?);
        let tags = validate_tags("tags", &tags)?;
        let parameters = match &deployment {
            Some(d) => merge_parameters(&d.parameters, &spec.parameters),
            None => spec.parameters.clone(),
        };
        if let Some(key) = &spec.idempotency_key
            && (key.is_empty() || key.len() > MAX_KEY_LEN)
        {
            return Err(ValidationError::new(
                "idempotency_key",
                format!("must be 1 to {MAX_KEY_LEN} bytes"),
            )
            .into());
        }
        if let Some(parent) = spec.parent_run_id {
            match self.store.get_run(parent, false).await {
                Err(StoreError::NotFound { .. }) => {
                    return Err(ValidationError::new(
                        "parent_run_id",
                        format!("run {parent} does not exist"),
                    )
                    .into());
                }
                other => {
                    other?;
                }
            }
        }
        let retries = spec
            .retries
            .or(deployment.as_ref().map(|d| d.retries))
            .unwrap_or_default();
        if retries.max > 100 {
            return Err(ValidationError::new("retries.max", "must be at most 100").into());
        }

        let id = Uuid::now_v7();
        let id_text = id.to_string();
        let job_variables = pipeline::merged_job_variables(
            deployment.as_ref().map(|d| &d.job_variables),
            &spec.job_variables,
        );
        let labels = pipeline::labels_of(&job_variables);
        let mut ctx = pipeline::context(
            &id_text,
            deployment.as_ref().map(|d| d.name.as_str()),
            &pool_name,
            &queue,
            &tags,
            &labels,
            &parameters,
            &job_variables,
            spec.parent_run_id.map(|p| p.to_string()),
        );
        let mut history = Vec::new();

        // Stage 1: routers (global, in order) may change pool, queue, tags.
        let mut refusal = self.pipeline.route(&mut ctx, &mut history).await.err();
        let routed = if ctx.pool != pool_name || ctx.queue != queue {
            " (chosen by a router)"
        } else {
            ""
        };
        let tags = validate_tags("tags", &ctx.tags)?;
        let (pool_name, queue) = (ctx.pool.clone(), ctx.queue.clone());
        let pool = match self.store.get_pool(&pool_name).await {
            Err(StoreError::NotFound { .. }) => {
                return Err(ValidationError::new(
                    "pool",
                    format!("pool {pool_name:?}{routed} does not exist"),
                )
                .into());
            }
            other => other?,
        };
        match self.store.get_queue(&pool.name, &queue).await {
            Err(StoreError::NotFound { .. }) => {
                return Err(ValidationError::new(
                    "queue",
                    format!(
                        "queue {queue:?}{routed} does not exist in pool {:?}",
                        pool.name
                    ),
                )
                .into());
            }
            other => {
                other?;
            }
        }

        // The caller's scope, on where the run ends up after routing.
        principal.may_create_run(
            deployment
                .as_ref()
                .map(|d| (d.name.as_str(), d.team.as_deref())),
            &pool.name,
            spec.parent_run_id,
        )?;

        // Check the job can be built now, so bad variables are refused here
        // and not discovered when the run is released.
        let source = match (&deployment, &spec.job) {
            (Some(d), _) => Source::Deployment(d),
            (None, Some(job)) => Source::Raw(job),
            (None, None) => {
                return Err(
                    ValidationError::new("job", "a run without a deployment needs a job").into(),
                );
            }
        };
        let request = JobRequest {
            run_id: &id_text,
            pool: &pool,
            queue: &queue,
            source,
            job_variables: &spec.job_variables,
            parameters: &parameters,
            tags: &tags,
            labels: &labels,
            parent_run_id: spec.parent_run_id,
        };
        self.job_builder()
            .build(&request, Purpose::Check, &mut Vec::new())
            .await?;

        // Stage 2: the pool's admission plugins admit, reject or defer.
        let mut scheduled_at = spec.scheduled_at.unwrap_or_else(Utc::now);
        let mut needs_admission = false;
        if refusal.is_none() {
            match self
                .pipeline
                .admit(&ctx, RunState::Scheduled, &mut history)
                .await
            {
                AdmissionVerdict::Admit => {}
                AdmissionVerdict::Defer { seconds, .. } => {
                    needs_admission = true;
                    let until = Utc::now() + chrono::Duration::seconds(i64::from(seconds));
                    scheduled_at = scheduled_at.max(until);
                }
                AdmissionVerdict::Reject(r) => refusal = Some(r),
            }
        }

        let (run, created) = self
            .store
            .insert_run(NewRun {
                id,
                pool: pool.name.clone(),
                queue,
                deployment: deployment.as_ref().map(|d| d.name.clone()),
                job: spec.job.clone(),
                tags,
                parameters,
                job_variables: spec.job_variables.clone(),
                parent_run_id: spec.parent_run_id,
                idempotency_key: spec.idempotency_key.clone(),
                scheduled_at,
                retries,
                message: "created".into(),
                cause: cause.to_owned(),
                history,
                needs_admission,
                labels,
            })
            .await?;
        if !created {
            return Ok((run, false));
        }
        self.metrics.run_created();
        if let Some(r) = refusal {
            // A refused run is kept, with why, rather than silently dropped.
            let mut t = Transition::new(RunState::Failed, r.message, Cause::PIPELINE);
            t.detail = Some(r.detail);
            self.transition(run.id, t).await?;
            return Ok((self.store.get_run(run.id, true).await?, true));
        }
        self.wake_scheduler();
        Ok((run, created))
    }

    /// Judges a deferred run again when its time has come (the scheduler
    /// calls this before releasing).
    pub async fn readmit(&self, run: &Run) -> Result<()> {
        let deployment_vars = match &run.deployment {
            Some(d) => match self.store.get_deployment(d).await {
                Ok(d) => Some(d.job_variables),
                Err(StoreError::NotFound { .. }) => None,
                Err(e) => return Err(e.into()),
            },
            None => None,
        };
        let job_variables =
            pipeline::merged_job_variables(deployment_vars.as_ref(), &run.job_variables);
        let ctx = pipeline::context(
            &run.id.to_string(),
            run.deployment.as_deref(),
            &run.pool,
            &run.queue,
            &run.tags,
            &run.labels,
            &run.parameters,
            &job_variables,
            run.parent_run_id.map(|p| p.to_string()),
        );
        let mut history = Vec::new();
        match self.pipeline.admit(&ctx, run.state, &mut history).await {
            AdmissionVerdict::Admit => {
                self.store.set_admission(run.id, None, &history).await?;
                self.wake_scheduler();
            }
            AdmissionVerdict::Defer { seconds, .. } => {
                let until = Utc::now() + chrono::Duration::seconds(i64::from(seconds));
                self.store
                    .set_admission(run.id, Some(until), &history)
                    .await?;
            }
            AdmissionVerdict::Reject(r) => {
                self.store.append_history(run.id, &history).await?;
                let mut t = Transition::new(RunState::Failed, r.message, Cause::PIPELINE);
                t.detail = Some(r.detail);
                self.transition(run.id, t).await?;
            }
        }
        Ok(())
    }

    /// Cancels a run: a waiting run is Cancelled at once; a released one goes
    /// to Cancelling and whoever runs its attempt stops it.
    pub async fn cancel_run(&self, id: RunId, cause: &str) -> Result<Run> {
        // The run may move on between the read and the write (released by
        // the scheduler, or ended): the store refuses the stale transition,
        // and the cancel is decided again from the state it moved to.
        let mut tries = 0;
        let updated = loop {
            tries += 1;
            match self.try_cancel(id, cause).await {
                Err(DispatchError::Store(StoreError::IllegalTransition(_))) if tries < 3 => {}
                other => break other?,
            }
        };
        self.wake_scheduler();
        Ok(self.store.get_run(updated.id, true).await?)
    }

    async fn try_cancel(&self, id: RunId, cause: &str) -> Result<Run> {
        let run = self.store.get_run(id, false).await?;
        if run.state.is_terminal() || run.state == RunState::Cancelling {
            return Err(StoreError::conflict(
                Some("id"),
                format!("run {id} is already {}", run.state),
            )
            .into());
        }
        if run.state.is_waiting() {
            let t = Transition::new(RunState::Cancelled, "cancelled", cause);
            return Ok(self.store.transition(id, t).await?);
        }
        let t = Transition::new(RunState::Cancelling, "cancel requested", cause);
        let updated = self.store.transition(id, t).await?;
        // Who stops the attempt: this replica if it has it in flight; else,
        // on a standby, the leader, told now; else (the leader, with the
        // launch not yet begun) the launch itself, which finds the run
        // Cancelling when it records its intent and submits nothing. The
        // leader's sweep of Cancelling runs is the safety net for all three.
        match self.cancel_token(id) {
            Some(token) => token.cancel(),
            None if !self.replicas.is_leader() => self.replicas.send(Signal::Cancel(id)),
            None => {}
        }
        Ok(updated)
    }

    // -- launcher bookkeeping -----------------------------------------------

    pub(crate) fn register_cancel(&self, id: RunId) -> CancellationToken {
        let token = CancellationToken::new();
        if let Ok(mut map) = self.cancels.lock() {
            map.insert(id, token.clone());
        }
        token
    }

    pub(crate) fn forget_cancel(&self, id: RunId) {
        if let Ok(mut map) = self.cancels.lock() {
            map.remove(&id);
        }
    }

    /// Stops the attempt this replica has in flight for `id`, if any.
    pub(crate) fn cancel_in_flight(&self, id: RunId) -> bool {
        match self.cancel_token(id) {
            Some(t) => {
                t.cancel();
                true
            }
            None => false,
        }
    }

    fn cancel_token(&self, id: RunId) -> Option<CancellationToken> {
        self.cancels.lock().ok().and_then(|m| m.get(&id).cloned())
    }

    /// Records a state change and keeps the metrics in step.
    pub async fn transition(&self, id: RunId, t: Transition) -> Result<Run> {
        let to = t.to;
        let run = self.store.transition(id, t).await?;
        self.metrics.run_transitioned(to);
        if !to.holds_slots() {
            self.wake_scheduler();
        }
        Ok(run)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_merge_key_by_key() {
        let base = serde_json::json!({"a": 1, "b": 2})
            .as_object()
            .cloned()
            .unwrap_or_default();
        let over = serde_json::json!({"b": 3})
            .as_object()
            .cloned()
            .unwrap_or_default();
        assert_eq!(
            Value::Object(merge_parameters(&base, &over)),
            serde_json::json!({"a": 1, "b": 3})
        );
    }

    #[test]
    fn tags_are_validated_and_deduplicated() {
        let tags = vec!["a".to_owned(), "b".to_owned(), "a".to_owned()];
        assert_eq!(
            validate_tags("tags", &tags).ok(),
            Some(vec!["a".into(), "b".into()])
        );
        let err = validate_tags("tags", &["ok".into(), "not ok".into()]).expect_err("space");
        assert_eq!(err.field, "tags[1]");
    }

    #[test]
    fn update_distinguishes_null_from_missing() {
        let u: PoolUpdate =
            serde_json::from_str(r#"{"concurrency_limit": null}"#).unwrap_or_default();
        assert_eq!(u.concurrency_limit, Some(None));
        let u: PoolUpdate = serde_json::from_str(r#"{}"#).unwrap_or_default();
        assert_eq!(u.concurrency_limit, None);
        let u: PoolUpdate = serde_json::from_str(r#"{"concurrency_limit": 3}"#).unwrap_or_default();
        assert_eq!(u.concurrency_limit, Some(Some(3)));
    }
}

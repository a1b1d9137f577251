//! Submit: a run spec becomes a stored run. Validate → routers → the
//! caller's scope → the job builder's check → admission → store as
//! Scheduled (or Failed, with why) → wake the scheduler. A deferred run is
//! judged again when due ([`Dispatcher::readmit`]). The plugin stages live
//! in `pipeline/`.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::auth::Principal;
use crate::dispatcher::{Dispatcher, Result};
use crate::domain::{
    Cause, DEFAULT_QUEUE, HistoryEntry, RetryPolicy, Run, RunState, ValidationError, document,
};
use crate::pipeline::{self, AdmissionVerdict};
use crate::resources::{MAX_KEY_LEN, validate_tags};
use crate::run::build::{JobRequest, Purpose, Source};
use crate::store::{NewRun, StoreError, Transition};

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
    /// Who made the run, when not a caller (a schedule): a history line
    /// written right after "created".
    #[serde(skip)]
    pub origin: Option<HistoryEntry>,
}

/// The merged parameters of a deployment and a run: the run's win key by key.
pub(crate) fn merge_parameters(
    base: &Map<String, Value>,
    over: &Map<String, Value>,
) -> Map<String, Value> {
    let mut merged = base.clone();
    for (k, v) in over {
        merged.insert(k.clone(), v.clone());
    }
    merged
}

impl Dispatcher {
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
        let mut history: Vec<HistoryEntry> = spec.origin.iter().cloned().collect();

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
}

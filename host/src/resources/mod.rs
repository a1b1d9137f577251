//! Pools, queues, tag limits and deployments: created, changed and deleted
//! from validated specs (`specs.rs`), and a deployment's job previewed with
//! the release's own builder.

mod schedules;
mod specs;

use chrono::Utc;
use serde_json::{Map, Value};

pub(crate) use schedules::ScheduleSpec;
pub(crate) use specs::{
    DeploymentSpec, DeploymentUpdate, LimitSpec, PoolSpec, PoolUpdate, QueueSpec, QueueUpdate,
    RenderSpec,
};
pub(crate) use specs::{MAX_KEY_LEN, validate_tags};
use specs::{
    parse_template, validate_description, validate_late_after, validate_limit, validate_priority,
};

use crate::dispatcher::{Dispatcher, Result};
use crate::domain::{
    ConcurrencyLimit, DEFAULT_QUEUE, Deployment, Pool, PoolType, Queue, ValidationError, document,
    validate_dns_label, validate_tag,
};
use crate::pipeline;
use crate::run::build::{JobRequest, Purpose, Source};
use crate::run::submit::merge_parameters;
use crate::store::{DeploymentPatch, PoolPatch, QueuePatch, StoreError};

impl Dispatcher {
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
        validate_late_after("late_after_seconds", spec.late_after_seconds)?;
        let queue = Queue {
            pool: pool.to_owned(),
            name: spec.name,
            priority: spec.priority,
            concurrency_limit: spec.concurrency_limit,
            paused: spec.paused,
            late_after_seconds: spec.late_after_seconds,
            late_action: spec.late_action,
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
        if let Some(l) = update.late_after_seconds {
            validate_late_after("late_after_seconds", l)?;
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
                    late_after_seconds: update.late_after_seconds,
                    late_action: update.late_action,
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
}

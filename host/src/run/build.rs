//! The one job builder. Every job Weir makes of a run is built here, in one
//! order, whatever it is for — the check when a run is submitted, the
//! preview (`deployment render`), the release — so the three cannot drift:
//!
//! 1. layer the job variables (deployment, then run) and validate them
//!    against the pool's template (`template::BaseJobTemplate`);
//! 2. render the template, or take the run's raw job as given;
//! 3. finalise: Weir's labels, env, name and namespace stamped, the shape
//!    checked for the pool's kind (`template::finalize`);
//! 4. the pool's mutators patch it, in binding order (`pipeline`), each
//!    outcome recorded; forbidden paths are refused there;
//! 5. finalise again: Weir's stamps re-applied over whatever the mutators
//!    did, and the mutated job's shape checked as in 3.
//!
//! The submit-time check stops after step 3: the mutators judge a run once,
//! when it is released (or previewed), not also when it is stored.

use serde_json::{Map, Value};

use crate::dispatcher::Settings;
use crate::domain::{Deployment, HistoryEntry, Pool, RunId, RunState};
use crate::pipeline::{self, Pipeline, Refusal};
use crate::template::{self, RunMetadata, TemplateError};

/// The `WEIR_RUN_TOKEN` a job that is never submitted carries (checks and
/// previews); only a released job gets the run's real token.
pub(crate) const RUN_TOKEN_PLACEHOLDER: &str = "weirrun_preview";

/// What the job is built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// At submission: steps 1–3, so bad variables are refused before the
    /// run is stored.
    Check,
    /// `deployment render`: every step, with a placeholder token.
    Preview,
    /// At release: every step, with the run's real token.
    Release(RunId),
}

/// Where the job comes from.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Source<'a> {
    /// The pool's template with the deployment's job variables.
    Deployment(&'a Deployment),
    /// A job configuration (or bare Kubernetes Job) given whole.
    Raw(&'a Value),
}

/// Everything about a run that shapes its job.
#[derive(Debug, Clone, Copy)]
pub(crate) struct JobRequest<'a> {
    pub run_id: &'a str,
    pub pool: &'a Pool,
    pub queue: &'a str,
    pub source: Source<'a>,
    /// The run's own job variables (layered over the deployment's).
    pub job_variables: &'a Map<String, Value>,
    /// The run's parameters (the deployment's with the run's merged in).
    pub parameters: &'a Map<String, Value>,
    pub tags: &'a [String],
    /// The labels the run was admitted with (the merged `labels` variable).
    pub labels: &'a Map<String, Value>,
    pub parent_run_id: Option<RunId>,
}

/// Why a job could not be built.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BuildError {
    /// Steps 1–3: the variables, the template or the raw job.
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// Step 4: a mutator refused (fail-closed), with its structured detail.
    #[error("{}", .0.message)]
    Refused(Refusal),
    /// Step 5: what the mutators made is not a valid job.
    #[error("the mutated job is invalid: {0}")]
    Mutated(TemplateError),
}

/// Builds jobs with the pool's mutators and the server's settings.
#[derive(Clone, Copy)]
pub(crate) struct JobBuilder<'a> {
    pub pipeline: &'a Pipeline,
    pub settings: &'a Settings,
}

impl JobBuilder<'_> {
    /// Builds the job `request` describes, for `purpose`. Mutator decisions
    /// are appended to `history` (recording them is the caller's, so a
    /// preview records nothing).
    pub(crate) async fn build(
        &self,
        request: &JobRequest<'_>,
        purpose: Purpose,
        history: &mut Vec<HistoryEntry>,
    ) -> Result<Value, BuildError> {
        let parameters = serde_json::to_string(request.parameters).unwrap_or_else(|_| "{}".into());
        let token = match (purpose, &self.settings.run_tokens) {
            (_, None) => None,
            (Purpose::Release(id), Some(key)) => Some(key.token_for(id)),
            (Purpose::Check | Purpose::Preview, Some(_)) => Some(RUN_TOKEN_PLACEHOLDER.to_owned()),
        };
        let meta = RunMetadata {
            run_id: request.run_id,
            pool: &request.pool.name,
            queue: request.queue,
            deployment: match request.source {
                Source::Deployment(d) => Some(d.name.as_str()),
                Source::Raw(_) => None,
            },
            api_url: &self.settings.api_url,
            parameters: &parameters,
            run_token: token.as_deref(),
        };
        let kind = request.pool.pool_type.template_kind();

        // Steps 1–3.
        let (job, deployment_variables) = match request.source {
            Source::Deployment(d) => (
                template::build_job(
                    &request.pool.base_job_template,
                    kind,
                    &[&d.job_variables, request.job_variables],
                    &meta,
                )?,
                Some(&d.job_variables),
            ),
            Source::Raw(job) => (
                template::finalize(kind, with_job_prefix(job.clone()), &meta)?,
                None,
            ),
        };
        if purpose == Purpose::Check {
            return Ok(job);
        }

        // Step 4.
        let job_variables =
            pipeline::merged_job_variables(deployment_variables, request.job_variables);
        let ctx = pipeline::context(
            request.run_id,
            meta.deployment,
            &request.pool.name,
            request.queue,
            request.tags,
            request.labels,
            request.parameters,
            &job_variables,
            request.parent_run_id.map(|p| p.to_string()),
        );
        let job = self
            .pipeline
            .mutate(
                &request.pool.name,
                request.pool.pool_type,
                &ctx,
                job,
                RunState::Pending,
                // Shadow mutators judge released runs only, not previews.
                matches!(purpose, Purpose::Release(_)),
                history,
            )
            .await
            .map_err(BuildError::Refused)?;

        // Step 5.
        template::finalize(kind, job, &meta).map_err(BuildError::Mutated)
    }
}

/// Raw jobs for kubernetes pools may be given as a bare Job manifest; the
/// template layer wants a job configuration with `job_manifest`.
pub(crate) fn with_job_prefix(job: Value) -> Value {
    match &job {
        Value::Object(m) if m.get("kind").and_then(Value::as_str) == Some("Job") => {
            let mut cfg = Map::new();
            if let Some(ns) = m
                .get("metadata")
                .and_then(|md| md.get("namespace"))
                .cloned()
            {
                cfg.insert("namespace".into(), ns);
            }
            cfg.insert("job_manifest".into(), job);
            Value::Object(cfg)
        }
        _ => job,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_job_manifest_is_wrapped() {
        let job = serde_json::json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"namespace": "x"}});
        let cfg = with_job_prefix(job.clone());
        assert_eq!(cfg["job_manifest"], job);
        assert_eq!(cfg["namespace"], "x");
        let process = serde_json::json!({"command": "true"});
        assert_eq!(with_job_prefix(process.clone()), process);
    }
}

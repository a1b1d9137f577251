//! The Kubernetes backend: a run's attempt becomes a batch/v1 Job named from
//! the run id, created through kube-rs, and followed through one watch per
//! namespace until the Job says how it ended.
//!
//! The life of an attempt here: [`Target::from_execution`] (the Job to
//! create, named `weir-<run>` or `weir-<run>-<attempt>`) → [`submit`] (create;
//! `AlreadyExists` with our labels is adoption; 422/400/403/404 fail the run
//! with the server's message; 429, 5xx and lost connections are retried) →
//! [`KubernetesBackend::track`] (watch events → [`observe`] → started,
//! Completed, Failed; Crashed when no pod starts within the pod-start timeout
//! or when someone else deletes the Job) → on cancel, a background delete,
//! and Cancelled once the Job is gone.

mod cluster;
mod observe;
mod watch;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, LogParams, PostParams, PropagationPolicy};
use kube::runtime::events::{Event, EventType};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{Backend, Execution, LogRequest, LogStream, Outcome};
use crate::domain::RunId;
use crate::template::LABEL_RUN_ID;

use cluster::{Cluster, Clusters};
pub(crate) use cluster::{ClusterConfigs, ClusterSettings, DEFAULT_BURST, DEFAULT_QPS};
pub(crate) use observe::{Observation, observe};
use watch::{NamespaceWatch, Subscription};

/// Label holding the attempt number, on the Job and its pods.
pub(crate) const LABEL_ATTEMPT: &str = "weir.dev/attempt";
/// Seconds to wait for a pod to start when the job configuration says nothing.
pub(crate) const DEFAULT_POD_START_TIMEOUT_SECONDS: u64 = 300;

#[derive(Debug, thiserror::Error)]
pub(crate) enum KubeError {
    #[error("Kubernetes configuration: {0}")]
    Config(String),
    #[error("{0}")]
    Job(String),
}

/// Timing knobs; the defaults suit a real cluster.
#[derive(Debug, Clone)]
pub(crate) struct KubeSettings {
    /// How long create/delete keep retrying a server that answers 429/5xx
    /// or cannot be reached before the attempt is Crashed.
    pub give_up_after: Duration,
    /// While a Job has not been seen by the watch, how often to look it up
    /// directly (it may have been deleted before the watch saw it).
    pub unseen_check: Duration,
}

impl Default for KubeSettings {
    fn default() -> Self {
        Self {
            give_up_after: Duration::from_secs(300),
            unseen_check: Duration::from_secs(20),
        }
    }
}

pub(crate) struct KubernetesBackend {
    clusters: Clusters,
    watches: Mutex<HashMap<(String, String), Arc<NamespaceWatch>>>,
    settings: KubeSettings,
}

/// The Job an attempt creates, and where.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub namespace: String,
    pub name: String,
    pub job: Job,
    pub pod_start_timeout: Duration,
}

/// The Job name of an attempt: `weir-<run>` first, `weir-<run>-<n>` for
/// retries (a retry is a new Job; the failed one stays for inspection).
pub(crate) fn job_name(run: RunId, attempt: u32) -> String {
    if attempt <= 1 {
        format!("weir-{run}")
    } else {
        format!("weir-{run}-{attempt}")
    }
}

impl Target {
    /// Reads the finalised job configuration (`namespace`, `job_manifest`,
    /// `pod_start_timeout_seconds`) and names the Job for this attempt.
    pub(crate) fn from_execution(
        run: RunId,
        attempt: u32,
        config: &Value,
    ) -> Result<Self, KubeError> {
        let bad = |m: String| KubeError::Job(m);
        let namespace = config
            .get("namespace")
            .and_then(Value::as_str)
            .unwrap_or("default")
            .to_owned();
        // Prefect's template calls it pod_watch_timeout_seconds.
        let timeout_key = ["pod_start_timeout_seconds", "pod_watch_timeout_seconds"]
            .into_iter()
            .find(|k| config.get(*k).is_some_and(|v| !v.is_null()));
        let pod_start_timeout = match timeout_key {
            None => DEFAULT_POD_START_TIMEOUT_SECONDS,
            Some(key) => {
                let v = &config[key];
                v.as_u64().filter(|s| *s > 0).ok_or_else(|| {
                    bad(format!(
                        "job_configuration.{key}: must be a positive integer, got {v}"
                    ))
                })?
            }
        };
        let mut manifest = config
            .get("job_manifest")
            .cloned()
            .ok_or_else(|| bad("job_configuration.job_manifest: missing".into()))?;
        let name = job_name(run, attempt);
        let attempt_label = json!(attempt.to_string());
        if let Some(md) = manifest.get_mut("metadata").and_then(Value::as_object_mut) {
            md.insert("name".into(), json!(name));
            md.insert("namespace".into(), json!(namespace));
            if let Some(labels) = md.get_mut("labels").and_then(Value::as_object_mut) {
                labels.insert(LABEL_ATTEMPT.into(), attempt_label.clone());
            }
        }
        if let Some(labels) = manifest
            .pointer_mut("/spec/template/metadata/labels")
            .and_then(Value::as_object_mut)
        {
            labels.insert(LABEL_ATTEMPT.into(), attempt_label);
        }
        let job: Job = serde_path_to_error::deserialize(manifest).map_err(|e| {
            bad(format!(
                "job_configuration.job_manifest.{}: {}",
                e.path(),
                e.inner()
            ))
        })?;
        Ok(Self {
            namespace,
            name,
            job,
            pod_start_timeout: Duration::from_secs(pod_start_timeout),
        })
    }
}

impl KubernetesBackend {
    pub(crate) fn new(configs: ClusterConfigs, settings: KubeSettings) -> Self {
        Self {
            clusters: Clusters::new(configs),
            watches: Mutex::new(HashMap::new()),
            settings,
        }
    }

    async fn watch(&self, cluster: &Cluster, namespace: &str) -> Arc<NamespaceWatch> {
        let key = (cluster.name.clone(), namespace.to_owned());
        let mut watches = self.watches.lock().await;
        watches
            .entry(key)
            .or_insert_with(|| NamespaceWatch::start(cluster.client.clone(), namespace))
            .clone()
    }

    /// Creates the attempt's Job (or adopts it) and says when that was.
    async fn create(
        &self,
        cluster: &Cluster,
        target: &Target,
        exec: &Execution,
    ) -> Result<Instant, Outcome> {
        let submitted = submit(
            cluster,
            target,
            exec.run_id,
            exec.attempt,
            self.settings.give_up_after,
            &exec.cancel,
        )
        .await?;
        match submitted {
            Submitted::Created => record_event(
                cluster,
                target,
                EventType::Normal,
                "Submitted",
                format!("Weir run {} attempt {}", exec.run_id, exec.attempt),
            ),
            Submitted::Adopted => {
                info!(run = %exec.run_id, job = %target.name, "adopted the existing Job");
            }
        }
        Ok(Instant::now())
    }

    /// Follows a created (or adopted) Job to its end.
    async fn track(
        &self,
        cluster: &Cluster,
        target: &Target,
        mut sub: Subscription,
        exec: Execution,
        created: Instant,
    ) -> Outcome {
        let api: Api<Job> = Api::namespaced(cluster.client.clone(), &target.namespace);
        let deadline = created + target.pod_start_timeout;
        let mut started = Some(exec.started);
        let mut seen = false;
        let mut trouble: Option<String> = None;
        let mut next_check = Instant::now() + self.settings.unseen_check;
        loop {
            let view = sub.view();
            match &view.job {
                Some(job) => {
                    seen = true;
                    match observe(job, &view.pods) {
                        Observation::Completed => {
                            if let Some(tx) = started.take() {
                                let _ = tx.send(());
                            }
                            return Outcome::Completed;
                        }
                        Observation::Failed { exit_code, message } => {
                            return Outcome::Failed { exit_code, message };
                        }
                        Observation::Waiting {
                            started: true,
                            trouble: _,
                        } => {
                            if let Some(tx) = started.take() {
                                let _ = tx.send(());
                            }
                        }
                        Observation::Waiting {
                            started: false,
                            trouble: t,
                        } => trouble = t,
                    }
                }
                None if seen && view.synced => {
                    return Outcome::Crashed {
                        reason: format!(
                            "the Job {}/{} was deleted before it finished (not by Weir)",
                            target.namespace, target.name
                        ),
                    };
                }
                None => {}
            }
            let now = Instant::now();
            if started.is_some() && now >= deadline {
                let mut why = trouble
                    .clone()
                    .unwrap_or_else(|| "no pod of the Job is running".to_owned());
                if let Some(e) = &view.watch_error {
                    why.push_str(&format!("; {e}"));
                }
                let reason = format!(
                    "no pod of Job {}/{} started within the pod start timeout of {} s: {why}",
                    target.namespace,
                    target.name,
                    target.pod_start_timeout.as_secs()
                );
                record_event(
                    cluster,
                    target,
                    EventType::Warning,
                    "PodStartTimeout",
                    format!("Weir deletes this Job: {reason}"),
                );
                if let Err(e) = self.delete(cluster, &api, &target.name).await {
                    warn!(job = %target.name, "cannot delete the Job that did not start: {e}");
                }
                return Outcome::Crashed { reason };
            }
            if !seen && now >= next_check {
                next_check = now + self.settings.unseen_check;
                cluster.budget.acquire().await;
                if let Ok(None) = api.get_opt(&target.name).await {
                    return Outcome::Crashed {
                        reason: format!(
                            "the Job {}/{} was deleted before it finished (not by Weir)",
                            target.namespace, target.name
                        ),
                    };
                }
            }
            let wake = if started.is_some() {
                deadline.min(next_check)
            } else {
                next_check
            };
            let timer = async {
                if seen && started.is_none() {
                    std::future::pending::<()>().await;
                } else {
                    tokio::time::sleep_until(wake).await;
                }
            };
            tokio::select! {
                _ = sub.changed() => {}
                _ = timer => {}
                _ = exec.cancel.cancelled() => {
                    return self.cancel(cluster, &api, target, &mut sub).await;
                }
            }
        }
    }

    /// Deletes the Job (background propagation) and waits until it is gone.
    async fn cancel(
        &self,
        cluster: &Cluster,
        api: &Api<Job>,
        target: &Target,
        sub: &mut Subscription,
    ) -> Outcome {
        record_event(
            cluster,
            target,
            EventType::Normal,
            "Cancelled",
            "the run was cancelled in Weir; deleting the Job".to_owned(),
        );
        if let Err(e) = self.delete(cluster, api, &target.name).await {
            return Outcome::Crashed {
                reason: format!("cancel: cannot delete the Job: {e}"),
            };
        }
        let give_up = Instant::now() + self.settings.give_up_after;
        loop {
            let view = sub.view();
            if view.synced && view.job.is_none() {
                break;
            }
            tokio::select! {
                _ = sub.changed() => {}
                _ = tokio::time::sleep(Duration::from_secs(5)) => {
                    cluster.budget.acquire().await;
                    if let Ok(None) = api.get_opt(&target.name).await {
                        break;
                    }
                    if Instant::now() >= give_up {
                        return Outcome::Crashed {
                            reason: format!(
                                "cancel: the Job {}/{} was still there {} s after it was deleted",
                                target.namespace,
                                target.name,
                                self.settings.give_up_after.as_secs()
                            ),
                        };
                    }
                }
            }
        }
        Outcome::Cancelled {
            message: format!(
                "cancelled: the Job {}/{} was deleted",
                target.namespace, target.name
            ),
        }
    }

    async fn delete(&self, cluster: &Cluster, api: &Api<Job>, name: &str) -> Result<(), String> {
        let params = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            ..Default::default()
        };
        retrying(
            self.settings.give_up_after,
            &CancellationToken::new(),
            || async {
                cluster.budget.acquire().await;
                match api.delete(name, &params).await {
                    Ok(_) => Ok(()),
                    Err(kube::Error::Api(s)) if s.is_not_found() => Ok(()),
                    Err(e) => Err(e),
                }
            },
        )
        .await
        .map_err(|e| e.to_string())
    }
}

/// Records an Event on the Job, in the background: an event that cannot be
/// written is logged, never a reason to hold the run up.
fn record_event(cluster: &Cluster, target: &Target, type_: EventType, reason: &str, note: String) {
    let reference = ObjectReference {
        api_version: Some("batch/v1".to_owned()),
        kind: Some("Job".to_owned()),
        name: Some(target.name.clone()),
        namespace: Some(target.namespace.clone()),
        ..Default::default()
    };
    // The Events API caps a note at 1 kB.
    let mut note = note;
    if note.len() > 1000 {
        let mut cut = 1000;
        while !note.is_char_boundary(cut) {
            cut -= 1;
        }
        note.truncate(cut);
    }
    let event = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(note),
        action: reason.to_owned(),
        secondary: None,
    };
    let recorder = cluster.recorder.clone();
    let job = target.name.clone();
    tokio::spawn(async move {
        if let Err(e) = recorder.publish(&event, &reference).await {
            debug!(%job, "cannot record an event: {}", describe(&e));
        }
    });
}

/// How a create ended.
enum Submitted {
    Created,
    Adopted,
}

/// Creates the Job; `AlreadyExists` with this run's and attempt's labels is
/// adoption (a retried create, or a restart). Errors are the run's outcome.
async fn submit(
    cluster: &Cluster,
    target: &Target,
    run: RunId,
    attempt: u32,
    give_up: Duration,
    cancel: &CancellationToken,
) -> Result<Submitted, Outcome> {
    let api: Api<Job> = Api::namespaced(cluster.client.clone(), &target.namespace);
    let created = retrying(give_up, cancel, || async {
        cluster.budget.acquire().await;
        api.create(&PostParams::default(), &target.job).await
    })
    .await;
    match created {
        Ok(_) => Ok(Submitted::Created),
        Err(Retried::Cancelled) => Err(Outcome::Cancelled {
            message: "cancelled before the Job was created".into(),
        }),
        Err(Retried::Failed(kube::Error::Api(s))) if s.is_already_exists() => {
            cluster.budget.acquire().await;
            let existing = api
                .get_opt(&target.name)
                .await
                .map_err(|e| Outcome::Crashed {
                    reason: format!(
                        "the Job {}/{} exists, and reading it failed: {e}",
                        target.namespace, target.name
                    ),
                })?;
            let Some(existing) = existing else {
                return Err(Outcome::Crashed {
                    reason: format!(
                        "the Job {}/{} existed at create and was gone right after",
                        target.namespace, target.name
                    ),
                });
            };
            let labels = existing.labels();
            let ours = labels.get(LABEL_RUN_ID).map(String::as_str) == Some(&run.to_string())
                && labels.get(LABEL_ATTEMPT).map(String::as_str) == Some(&attempt.to_string());
            if ours {
                Ok(Submitted::Adopted)
            } else {
                Err(Outcome::Failed {
                    exit_code: None,
                    message: format!(
                        "a Job named {} already exists in namespace {} and is not this run's \
                         (its {LABEL_RUN_ID} label is {:?})",
                        target.name,
                        target.namespace,
                        labels.get(LABEL_RUN_ID)
                    ),
                })
            }
        }
        Err(Retried::Failed(kube::Error::Api(s))) if s.code == 401 => Err(Outcome::Crashed {
            reason: format!(
                "the Kubernetes API server refused Weir's credentials: {}",
                s.message
            ),
        }),
        Err(Retried::Failed(kube::Error::Api(s))) => Err(Outcome::Failed {
            exit_code: None,
            message: format!(
                "the Kubernetes API server refused the Job ({} {}): {}",
                s.code, s.reason, s.message
            ),
        }),
        Err(Retried::Failed(e)) => Err(Outcome::Crashed {
            reason: format!(
                "cannot create the Job {}/{}: {}",
                target.namespace,
                target.name,
                describe(&e)
            ),
        }),
        Err(Retried::GaveUp(e)) => Err(Outcome::Crashed {
            reason: format!(
                "the Kubernetes API server did not take the Job within {} s: {}",
                give_up.as_secs(),
                describe(&e)
            ),
        }),
    }
}

enum Retried {
    Cancelled,
    /// A permanent error.
    Failed(kube::Error),
    /// Still failing transiently when time ran out.
    GaveUp(kube::Error),
}

impl std::fmt::Display for Retried {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Retried::Cancelled => write!(f, "cancelled"),
            Retried::Failed(e) => write!(f, "{}", describe(e)),
            Retried::GaveUp(e) => write!(f, "still failing after retries: {}", describe(e)),
        }
    }
}

/// An API error as a person reads it: `403 Forbidden: <the server's
/// message>`, without kube-rs's debug dump of the Status.
pub(crate) fn describe(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} {}: {}", s.code, s.reason, s.message),
        other => other.to_string(),
    }
}

/// A watch error, described the same way.
pub(crate) fn describe_watch(e: &kube::runtime::watcher::Error) -> String {
    use kube::runtime::watcher::Error as W;
    match e {
        W::InitialListFailed(e) => format!("cannot list: {}", describe(e)),
        W::WatchStartFailed(e) => format!("cannot watch: {}", describe(e)),
        W::WatchFailed(e) => format!("the watch failed: {}", describe(e)),
        W::WatchError(s) => format!("the watch failed: {} {}: {}", s.code, s.reason, s.message),
        W::NoResourceVersion => e.to_string(),
    }
}

/// Whether an error may go away by itself: throttling, server errors, and
/// a server that cannot be reached.
pub(crate) fn is_transient(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => s.code == 429 || s.code >= 500,
        kube::Error::HyperError(_) | kube::Error::Service(_) => true,
        _ => false,
    }
}

/// Retries transient errors with exponential backoff (100 ms → 5 s).
async fn retrying<T, F, Fut>(
    give_up: Duration,
    cancel: &CancellationToken,
    mut f: F,
) -> Result<T, Retried>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, kube::Error>>,
{
    let until = Instant::now() + give_up;
    let mut backoff = Duration::from_millis(100);
    loop {
        let e = match f().await {
            Ok(v) => return Ok(v),
            Err(e) if is_transient(&e) => e,
            Err(e) => return Err(Retried::Failed(e)),
        };
        if Instant::now() + backoff > until {
            return Err(Retried::GaveUp(e));
        }
        warn!("Kubernetes API: {}; retrying in {backoff:?}", describe(&e));
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = cancel.cancelled() => return Err(Retried::Cancelled),
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

#[async_trait]
impl Backend for KubernetesBackend {
    fn keeps_logs(&self) -> bool {
        true
    }

    fn records_intent(&self) -> bool {
        true
    }

    async fn execute(&self, exec: Execution) -> Outcome {
        let target = match Target::from_execution(exec.run_id, exec.attempt, &exec.job) {
            Ok(t) => t,
            Err(e) => {
                return Outcome::Failed {
                    exit_code: None,
                    message: e.to_string(),
                };
            }
        };
        let cluster = match self.clusters.get(exec.cluster.as_deref()).await {
            Ok(c) => c,
            Err(e) => {
                return Outcome::Crashed {
                    reason: e.to_string(),
                };
            }
        };
        let watch = self.watch(&cluster, &target.namespace).await;
        let mut sub = watch.subscribe(&target.name);

        let created = match exec.resume.clone() {
            None => match self.create(&cluster, &target, &exec).await {
                Ok(at) => at,
                Err(outcome) => return outcome,
            },
            Some(resume) => {
                // After a restart: look before doing anything. The watch's
                // first list is the truth about which Jobs exist.
                loop {
                    if sub.view().synced {
                        break;
                    }
                    tokio::select! {
                        _ = sub.changed() => {}
                        _ = exec.cancel.cancelled() => {
                            let api: Api<Job> = Api::namespaced(cluster.client.clone(), &target.namespace);
                            return self.cancel(&cluster, &api, &target, &mut sub).await;
                        }
                    }
                }
                match sub.view().job {
                    Some(job) => {
                        info!(run = %exec.run_id, job = %target.name, "resuming the Job after a restart");
                        created_instant(&job)
                    }
                    None if resume.may_create => {
                        match self.create(&cluster, &target, &exec).await {
                            Ok(at) => at,
                            Err(outcome) => return outcome,
                        }
                    }
                    None => {
                        return Outcome::Crashed {
                            reason: format!(
                                "the Job {}/{} no longer exists after a restart of Weir; the \
                                 attempt's outcome cannot be known",
                                target.namespace, target.name
                            ),
                        };
                    }
                }
            }
        };
        self.track(&cluster, &target, sub, exec, created).await
    }

    async fn logs(&self, request: LogRequest) -> Result<LogStream, String> {
        let target = Target::from_execution(request.run_id, request.attempt, &request.job)
            .map_err(|e| e.to_string())?;
        let cluster = self
            .clusters
            .get(request.cluster.as_deref())
            .await
            .map_err(|e| e.to_string())?;
        let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &target.namespace);
        cluster.budget.acquire().await;
        let list = pods
            .list(
                &ListParams::default()
                    .labels(&format!("batch.kubernetes.io/job-name={}", target.name)),
            )
            .await
            .map_err(|e| format!("cannot list the Job's pods: {}", describe(&e)))?;
        let Some(pod) = list
            .items
            .into_iter()
            .max_by(|a, b| a.creation_timestamp().cmp(&b.creation_timestamp()))
        else {
            return Ok(futures::stream::empty().boxed());
        };
        let params = LogParams {
            follow: request.follow,
            ..Default::default()
        };
        cluster.budget.acquire().await;
        let reader = pods
            .log_stream(&pod.name_any(), &params)
            .await
            .map_err(|e| {
                format!(
                    "cannot read the logs of pod {}: {}",
                    pod.name_any(),
                    describe(&e)
                )
            })?;
        let stream = tokio_util::io::ReaderStream::new(
            tokio_util::compat::FuturesAsyncReadCompatExt::compat(reader),
        );
        Ok(stream.boxed())
    }
}

/// When an existing Job was created, as an `Instant` (for the pod start
/// deadline of an adopted Job).
fn created_instant(job: &Job) -> Instant {
    let now = Instant::now();
    let Some(t) = job.metadata.creation_timestamp.as_ref() else {
        return now;
    };
    let age_seconds = chrono::Utc::now().timestamp() - t.0.as_second();
    match u64::try_from(age_seconds) {
        Ok(age) => now.checked_sub(Duration::from_secs(age)).unwrap_or(now),
        Err(_) => now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Value {
        json!({
            "namespace": "team-a",
            "pod_start_timeout_seconds": 30,
            "job_manifest": {
                "apiVersion": "batch/v1", "kind": "Job",
                "metadata": {"name": "weir-x", "labels": {"weir.dev/run-id": "x"}},
                "spec": {"template": {"metadata": {"labels": {"weir.dev/run-id": "x"}},
                         "spec": {"restartPolicy": "Never", "containers": [{"name": "job", "image": "busybox"}]}}}
            }
        })
    }

    #[test]
    fn each_attempt_gets_its_own_deterministic_job() {
        let run = RunId::now_v7();
        let first = Target::from_execution(run, 1, &config()).expect("valid");
        assert_eq!(first.name, format!("weir-{run}"));
        assert_eq!(first.namespace, "team-a");
        assert_eq!(first.pod_start_timeout, Duration::from_secs(30));
        assert_eq!(
            first.job.metadata.name.as_deref(),
            Some(first.name.as_str())
        );
        assert_eq!(
            first.job.labels().get(LABEL_ATTEMPT).map(String::as_str),
            Some("1")
        );
        let pod_labels = first
            .job
            .spec
            .as_ref()
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| m.labels.as_ref())
            .and_then(|l| l.get(LABEL_ATTEMPT).cloned());
        assert_eq!(pod_labels.as_deref(), Some("1"));
        let third = Target::from_execution(run, 3, &config()).expect("valid");
        assert_eq!(third.name, format!("weir-{run}-3"));
    }

    #[test]
    fn a_bad_job_configuration_names_the_field() {
        let run = RunId::now_v7();
        let mut c = config();
        c["pod_start_timeout_seconds"] = json!(0);
        let e = Target::from_execution(run, 1, &c)
            .err()
            .map(|e| e.to_string());
        assert!(
            e.as_deref()
                .is_some_and(|e| e.starts_with("job_configuration.pod_start_timeout_seconds")),
            "{e:?}"
        );
        let mut c = config();
        c["job_manifest"]["spec"]["backoffLimit"] = json!("six");
        let e = Target::from_execution(run, 1, &c)
            .err()
            .map(|e| e.to_string());
        assert!(
            e.as_deref()
                .is_some_and(|e| e.contains("job_configuration.job_manifest.spec.backoffLimit")),
            "{e:?}"
        );
    }

    #[test]
    fn throttling_and_server_errors_are_transient_validation_is_not() {
        let api = |code: u16| {
            kube::Error::Api(
                kube::core::Status {
                    code,
                    ..Default::default()
                }
                .boxed(),
            )
        };
        assert!(is_transient(&api(429)));
        assert!(is_transient(&api(503)));
        assert!(!is_transient(&api(422)));
        assert!(!is_transient(&api(403)));
        assert!(!is_transient(&api(409)));
    }
}

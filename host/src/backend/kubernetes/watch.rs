//! One watch per (cluster, namespace): Weir-labelled Jobs and their pods,
//! kept in memory and fanned out to the runs that wait on them. Runs never
//! poll the API server; they wait for a change to their Job or its pods.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, ResourceExt};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::template::LABEL_RUN_ID;

/// The label the job controller puts on a Job's pods.
const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";
const LEGACY_JOB_NAME_LABEL: &str = "job-name";

/// What a run sees of its Job.
#[derive(Debug, Clone, Default)]
pub(super) struct JobView {
    /// Both watches have listed everything at least once.
    pub synced: bool,
    pub job: Option<Arc<Job>>,
    pub pods: Vec<Arc<Pod>>,
    /// The last error of either watch, while it is failing.
    pub watch_error: Option<String>,
}

#[derive(Default)]
struct State {
    jobs: HashMap<String, Arc<Job>>,
    /// Job name → pod name → pod.
    pods: HashMap<String, HashMap<String, Arc<Pod>>>,
    jobs_synced: bool,
    pods_synced: bool,
    /// Objects listed since the last `Init`, swapped in at `InitDone`.
    jobs_relist: Option<HashMap<String, Arc<Job>>>,
    pods_relist: Option<HashMap<String, HashMap<String, Arc<Pod>>>>,
    job_error: Option<String>,
    pod_error: Option<String>,
    /// Job name → the waiters on it.
    waiters: HashMap<String, watch::Sender<u64>>,
}

impl State {
    fn notify(&self, job: &str) {
        if let Some(tx) = self.waiters.get(job) {
            tx.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    fn notify_all(&self) {
        for tx in self.waiters.values() {
            tx.send_modify(|n| *n = n.wrapping_add(1));
        }
    }
}

/// The watches of one namespace.
pub(super) struct NamespaceWatch {
    state: Mutex<State>,
    stop: CancellationToken,
}

impl NamespaceWatch {
    /// Starts watching Weir-labelled Jobs and pods in `namespace`.
    pub(super) fn start(client: kube::Client, namespace: &str) -> Arc<Self> {
        let this = Arc::new(Self {
            state: Mutex::new(State::default()),
            stop: CancellationToken::new(),
        });
        let config = watcher::Config::default().labels(LABEL_RUN_ID);
        let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
        let pods: Api<Pod> = Api::namespaced(client, namespace);
        tokio::spawn(
            this.clone()
                .follow_jobs(jobs, config.clone(), namespace.to_owned()),
        );
        tokio::spawn(this.clone().follow_pods(pods, config, namespace.to_owned()));
        this
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves maps that are still valid.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Subscribes to changes of `job`; the receiver sees a new value after
    /// every change to the Job or its pods (and after every relist).
    pub(super) fn subscribe(self: &Arc<Self>, job: &str) -> Subscription {
        let mut state = self.lock();
        let rx = match state.waiters.get(job) {
            Some(tx) => tx.subscribe(),
            None => {
                let (tx, rx) = watch::channel(0);
                state.waiters.insert(job.to_owned(), tx);
                rx
            }
        };
        Subscription {
            watch: self.clone(),
            job: job.to_owned(),
            rx,
        }
    }

    pub(super) fn view(&self, job: &str) -> JobView {
        let state = self.lock();
        let mut pods: Vec<Arc<Pod>> = state
            .pods
            .get(job)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        pods.sort_by_key(|p| p.creation_timestamp());
        JobView {
            synced: state.jobs_synced && state.pods_synced,
            job: state.jobs.get(job).cloned(),
            pods,
            watch_error: state.job_error.clone().or_else(|| state.pod_error.clone()),
        }
    }

    async fn follow_jobs(self: Arc<Self>, api: Api<Job>, config: watcher::Config, ns: String) {
        let mut stream = watcher::watcher(api, config).default_backoff().boxed();
        loop {
            let event = tokio::select! {
                _ = self.stop.cancelled() => return,
                e = stream.next() => e,
            };
            let Some(event) = event else { return };
            let mut state = self.lock();
            match event {
                Err(e) => {
                    let e = super::describe_watch(&e);
                    warn!(namespace = %ns, "watching jobs: {e}");
                    state.job_error = Some(format!("watching jobs in {ns}: {e}"));
                    state.notify_all();
                }
                Ok(Event::Init) => state.jobs_relist = Some(HashMap::new()),
                Ok(Event::InitApply(job)) => {
                    let name = job.name_any();
                    if let Some(relist) = state.jobs_relist.as_mut() {
                        relist.insert(name, Arc::new(job));
                    }
                }
                Ok(Event::InitDone) => {
                    if let Some(relist) = state.jobs_relist.take() {
                        state.jobs = relist;
                    }
                    state.jobs_synced = true;
                    state.job_error = None;
                    debug!(namespace = %ns, jobs = state.jobs.len(), "jobs listed");
                    state.notify_all();
                }
                Ok(Event::Apply(job)) => {
                    let name = job.name_any();
                    state.job_error = None;
                    state.jobs.insert(name.clone(), Arc::new(job));
                    state.notify(&name);
                }
                Ok(Event::Delete(job)) => {
                    let name = job.name_any();
                    state.jobs.remove(&name);
                    state.notify(&name);
                }
            }
        }
    }

    async fn follow_pods(self: Arc<Self>, api: Api<Pod>, config: watcher::Config, ns: String) {
        let mut stream = watcher::watcher(api, config).default_backoff().boxed();
        loop {
            let event = tokio::select! {
                _ = self.stop.cancelled() => return,
                e = stream.next() => e,
            };
            let Some(event) = event else { return };
            let mut state = self.lock();
            match event {
                Err(e) => {
                    let e = super::describe_watch(&e);
                    warn!(namespace = %ns, "watching pods: {e}");
                    state.pod_error = Some(format!("watching pods in {ns}: {e}"));
                    state.notify_all();
                }
                Ok(Event::Init) => state.pods_relist = Some(HashMap::new()),
                Ok(Event::InitApply(pod)) => {
                    if let (Some(job), Some(relist)) = (job_of(&pod), state.pods_relist.as_mut()) {
                        relist
                            .entry(job)
                            .or_default()
                            .insert(pod.name_any(), Arc::new(pod));
                    }
                }
                Ok(Event::InitDone) => {
                    if let Some(relist) = state.pods_relist.take() {
                        state.pods = relist;
                    }
                    state.pods_synced = true;
                    state.pod_error = None;
                    state.notify_all();
                }
                Ok(Event::Apply(pod)) => {
                    state.pod_error = None;
                    if let Some(job) = job_of(&pod) {
                        state
                            .pods
                            .entry(job.clone())
                            .or_default()
                            .insert(pod.name_any(), Arc::new(pod));
                        state.notify(&job);
                    }
                }
                Ok(Event::Delete(pod)) => {
                    if let Some(job) = job_of(&pod) {
                        if let Some(m) = state.pods.get_mut(&job) {
                            m.remove(&pod.name_any());
                            if m.is_empty() {
                                state.pods.remove(&job);
                            }
                        }
                        state.notify(&job);
                    }
                }
            }
        }
    }
}

impl Drop for NamespaceWatch {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn job_of(pod: &Pod) -> Option<String> {
    let labels = pod.labels();
    labels
        .get(JOB_NAME_LABEL)
        .or_else(|| labels.get(LEGACY_JOB_NAME_LABEL))
        .cloned()
}

/// A run's interest in one Job; dropping it unsubscribes.
pub(super) struct Subscription {
    watch: Arc<NamespaceWatch>,
    job: String,
    rx: watch::Receiver<u64>,
}

impl Subscription {
    pub(super) fn view(&self) -> JobView {
        self.watch.view(&self.job)
    }

    /// Waits for the next change.
    pub(super) async fn changed(&mut self) {
        if self.rx.changed().await.is_err() {
            // The sender is kept while a subscription exists; never here.
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut state = self.watch.lock();
        let last = state
            .waiters
            .get(&self.job)
            .is_some_and(|tx| tx.receiver_count() <= 1);
        if last {
            state.waiters.remove(&self.job);
        }
    }
}

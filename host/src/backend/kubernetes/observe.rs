//! What a Job and its pods say about a run: pure functions over the objects
//! the watches hold, so the mapping is tested without a cluster.

use std::sync::Arc;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use kube::ResourceExt;

/// The run's state as far as its Job tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Observation {
    /// Not finished. `started`: a pod of the Job has run. `trouble`: why no
    /// pod is running yet, when the cluster says so.
    Waiting {
        started: bool,
        trouble: Option<String>,
    },
    Completed,
    Failed {
        exit_code: Option<i32>,
        message: String,
    },
}

/// Container waiting reasons that mean the pod cannot start by itself.
const START_TROUBLE: &[&str] = &[
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

pub(crate) fn observe(job: &Job, pods: &[Arc<Pod>]) -> Observation {
    let status = job.status.as_ref();
    let conditions = status.and_then(|s| s.conditions.as_deref()).unwrap_or(&[]);
    let is_true = |t: &str| {
        conditions
            .iter()
            .find(|c| c.type_ == t && c.status == "True")
    };
    if is_true("Complete").is_some() {
        return Observation::Completed;
    }
    if let Some(c) = is_true("Failed") {
        let reason = c.reason.as_deref().unwrap_or("Failed");
        let mut message = match c.message.as_deref() {
            Some(m) if !m.is_empty() => format!("{reason}: {m}"),
            _ => reason.to_owned(),
        };
        let last = last_termination(pods);
        if let Some((pod, container, code, why)) = &last {
            message.push_str(&format!(
                " (pod {pod}: container {container} exited with {code}{})",
                why.as_deref().map(|w| format!(", {w}")).unwrap_or_default()
            ));
        }
        return Observation::Failed {
            exit_code: last.map(|(_, _, code, _)| code),
            message,
        };
    }
    let ran_before = status.is_some_and(|s| {
        s.succeeded.unwrap_or(0) > 0 || s.failed.unwrap_or(0) > 0 || s.ready.unwrap_or(0) > 0
    });
    let started = ran_before || pods.iter().any(|p| pod_started(p));
    let trouble = if started { None } else { start_trouble(pods) };
    Observation::Waiting { started, trouble }
}

fn pod_started(pod: &Pod) -> bool {
    let Some(status) = &pod.status else {
        return false;
    };
    if matches!(
        status.phase.as_deref(),
        Some("Running" | "Succeeded" | "Failed")
    ) {
        return true;
    }
    containers(pod).any(|c| {
        c.state
            .as_ref()
            .is_some_and(|s| s.running.is_some() || s.terminated.is_some())
    })
}

fn containers(pod: &Pod) -> impl Iterator<Item = &ContainerStatus> {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_deref())
        .unwrap_or(&[])
        .iter()
}

/// Why the newest pod is not running, if the cluster says.
pub(super) fn start_trouble(pods: &[Arc<Pod>]) -> Option<String> {
    let pod = pods.last()?;
    let name = pod.name_any();
    let status = pod.status.as_ref()?;
    for c in containers(pod) {
        if let Some(w) = c.state.as_ref().and_then(|s| s.waiting.as_ref()) {
            let reason = w.reason.as_deref().unwrap_or("");
            if START_TROUBLE.contains(&reason) {
                return Some(format!(
                    "pod {name}: container {} cannot start: {reason}{}",
                    c.name,
                    w.message
                        .as_deref()
                        .map(|m| format!(": {m}"))
                        .unwrap_or_default()
                ));
            }
        }
    }
    let unscheduled = status
        .conditions
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False");
    unscheduled.map(|c| {
        format!(
            "pod {name} cannot be scheduled: {}{}",
            c.reason.as_deref().unwrap_or("Unschedulable"),
            c.message
                .as_deref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default()
        )
    })
}

/// The newest terminated container: (pod, container, exit code, reason).
fn last_termination(pods: &[Arc<Pod>]) -> Option<(String, String, i32, Option<String>)> {
    pods.iter().rev().find_map(|p| {
        containers(p).find_map(|c| {
            let t = c.state.as_ref()?.terminated.as_ref()?;
            (t.exit_code != 0)
                .then(|| (p.name_any(), c.name.clone(), t.exit_code, t.reason.clone()))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(status: serde_json::Value) -> Job {
        serde_json::from_value(json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "weir-x"},
            "status": status,
        }))
        .expect("job")
    }

    fn pod(name: &str, status: serde_json::Value) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name},
                "status": status,
            }))
            .expect("pod"),
        )
    }

    #[test]
    fn complete_and_failed_conditions_end_the_run() {
        let done = job(json!({"conditions": [
            {"type": "SuccessCriteriaMet", "status": "True"},
            {"type": "Complete", "status": "True"}]}));
        assert_eq!(observe(&done, &[]), Observation::Completed);

        let failed = job(json!({"conditions": [{"type": "Failed", "status": "True",
            "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}]}));
        let p = pod(
            "weir-x-abc",
            json!({"phase": "Failed", "containerStatuses": [{"name": "job", "image": "i", "imageID": "",
            "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 3, "reason": "Error"}}}]}),
        );
        assert_eq!(
            observe(&failed, &[p]),
            Observation::Failed {
                exit_code: Some(3),
                message: "BackoffLimitExceeded: Job has reached the specified backoff limit \
                          (pod weir-x-abc: container job exited with 3, Error)"
                    .into()
            }
        );

        let deadline = job(json!({"conditions": [{"type": "Failed", "status": "True",
            "reason": "DeadlineExceeded", "message": "Job was active longer than specified deadline"}]}));
        assert_eq!(
            observe(&deadline, &[]),
            Observation::Failed {
                exit_code: None,
                message: "DeadlineExceeded: Job was active longer than specified deadline".into()
            }
        );
    }

    #[test]
    fn a_failure_target_alone_does_not_end_the_run() {
        // The job controller sets FailureTarget first and Failed once the
        // pods are gone; only the terminal condition counts.
        let j = job(json!({"conditions": [{"type": "FailureTarget", "status": "True"}]}));
        assert!(matches!(observe(&j, &[]), Observation::Waiting { .. }));
    }

    #[test]
    fn a_running_pod_means_started() {
        let j = job(json!({"active": 1}));
        let pending = pod("p1", json!({"phase": "Pending"}));
        assert_eq!(
            observe(&j, std::slice::from_ref(&pending)),
            Observation::Waiting {
                started: false,
                trouble: None
            }
        );
        let running = pod("p1", json!({"phase": "Running"}));
        assert_eq!(
            observe(&j, &[running]),
            Observation::Waiting {
                started: true,
                trouble: None
            }
        );
    }

    #[test]
    fn unschedulable_and_image_pull_trouble_is_described() {
        let j = job(json!({"active": 1}));
        let unschedulable = pod(
            "p1",
            json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
            "reason": "Unschedulable", "message": "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector."}]}),
        );
        assert_eq!(
            observe(&j, &[unschedulable]),
            Observation::Waiting {
                started: false,
                trouble: Some(
                    "pod p1 cannot be scheduled: Unschedulable: 0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector.".into()
                )
            }
        );
        let pull = pod(
            "p2",
            json!({"phase": "Pending", "containerStatuses": [{"name": "job", "image": "nope", "imageID": "",
            "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image \"nope\""}}}]}),
        );
        assert_eq!(
            start_trouble(&[pull]).as_deref(),
            Some(
                "pod p2: container job cannot start: ImagePullBackOff: Back-off pulling image \"nope\""
            )
        );
        // Still creating: not trouble.
        let creating = pod(
            "p3",
            json!({"phase": "Pending", "containerStatuses": [{"name": "job", "image": "i", "imageID": "",
            "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}}]}),
        );
        assert_eq!(start_trouble(&[creating]), None);
    }
}

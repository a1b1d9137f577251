//! Cluster connections: one kube client per configured connection, made on
//! first use, each behind its own client-side request budget (kube-rs has
//! none, and a burst of submissions must not trip the API server's priority
//! and fairness limits).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::events::{Recorder, Reporter};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::KubeError;

/// How to reach one cluster.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterSettings {
    /// `None`: in-cluster when running in a pod (`KUBERNETES_SERVICE_HOST`
    /// set), else `$KUBECONFIG` or `~/.kube/config`.
    pub kubeconfig: Option<PathBuf>,
    /// Use the pod's service account even if a kubeconfig exists.
    pub in_cluster: bool,
    /// A context of the kubeconfig; `None`: its current context.
    pub context: Option<String>,
    /// Requests per second (create, get, delete; watches are not counted).
    pub qps: f64,
    pub burst: u32,
}

pub(crate) const DEFAULT_QPS: f64 = 50.0;
pub(crate) const DEFAULT_BURST: u32 = 100;

/// The connections this Weir may use: the default one and named ones.
#[derive(Debug, Clone, Default)]
pub struct ClusterConfigs {
    pub default: ClusterSettings,
    pub named: HashMap<String, ClusterSettings>,
}

/// A connected cluster.
#[derive(Clone)]
pub(super) struct Cluster {
    /// `""` for the default connection.
    pub name: String,
    pub client: kube::Client,
    pub budget: Arc<Budget>,
    /// Events on Weir's Jobs (`kubectl describe job` shows what Weir did).
    pub recorder: Recorder,
}

/// Connects lazily and keeps each connection.
pub(super) struct Clusters {
    configs: ClusterConfigs,
    connected: Mutex<HashMap<String, Cluster>>,
}

impl Clusters {
    pub(super) fn new(configs: ClusterConfigs) -> Self {
        Self {
            configs,
            connected: Mutex::new(HashMap::new()),
        }
    }

    /// The connection named `name` (`None`: the default one).
    pub(super) async fn get(&self, name: Option<&str>) -> Result<Cluster, KubeError> {
        let key = name.unwrap_or("").to_owned();
        let mut connected = self.connected.lock().await;
        if let Some(c) = connected.get(&key) {
            return Ok(c.clone());
        }
        let settings = match name {
            None => &self.configs.default,
            Some(n) => self.configs.named.get(n).ok_or_else(|| {
                KubeError::Config(format!(
                    "no cluster connection named {n:?} in this Weir's configuration"
                ))
            })?,
        };
        let config = client_config(settings).await?;
        let client = kube::Client::try_from(config)
            .map_err(|e| KubeError::Config(format!("cannot make a Kubernetes client: {e}")))?;
        let reporter = Reporter {
            controller: "weir.dev/weir".to_owned(),
            instance: std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()),
        };
        let cluster = Cluster {
            name: key.clone(),
            recorder: Recorder::new(client.clone(), reporter),
            client,
            budget: Arc::new(Budget::new(settings.qps, settings.burst)),
        };
        connected.insert(key, cluster.clone());
        Ok(cluster)
    }
}

async fn client_config(s: &ClusterSettings) -> Result<kube::Config, KubeError> {
    let what = |e: &dyn std::fmt::Display| match &s.kubeconfig {
        Some(p) => format!("kubeconfig {}: {e}", p.display()),
        None => format!("Kubernetes configuration: {e}"),
    };
    let options = KubeConfigOptions {
        context: s.context.clone(),
        ..Default::default()
    };
    let in_pod = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some();
    if s.in_cluster || (s.kubeconfig.is_none() && s.context.is_none() && in_pod) {
        return kube::Config::incluster()
            .map_err(|e| KubeError::Config(format!("in-cluster configuration: {e}")));
    }
    match &s.kubeconfig {
        Some(path) => {
            let file = Kubeconfig::read_from(path).map_err(|e| KubeError::Config(what(&e)))?;
            kube::Config::from_custom_kubeconfig(file, &options)
                .await
                .map_err(|e| KubeError::Config(what(&e)))
        }
        None => kube::Config::from_kubeconfig(&options)
            .await
            .map_err(|e| KubeError::Config(what(&e))),
    }
}

/// A token bucket: `burst` requests at once, refilled at `qps` per second.
pub(super) struct Budget {
    qps: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl Budget {
    pub(super) fn new(qps: f64, burst: u32) -> Self {
        let qps = if qps.is_finite() && qps > 0.0 {
            qps
        } else {
            DEFAULT_QPS
        };
        let burst = f64::from(burst.max(1));
        Self {
            qps,
            burst,
            state: Mutex::new((burst, Instant::now())),
        }
    }

    /// Waits until a request may be sent.
    pub(super) async fn acquire(&self) {
        let wait = {
            let mut state = self.state.lock().await;
            let (tokens, last) = &mut *state;
            let now = Instant::now();
            *tokens =
                (*tokens + now.duration_since(*last).as_secs_f64() * self.qps).min(self.burst);
            *last = now;
            *tokens -= 1.0;
            if *tokens >= 0.0 {
                None
            } else {
                // Our token is the one the bucket owes: wait for it to refill.
                Some(Duration::from_secs_f64(-*tokens / self.qps))
            }
        };
        if let Some(d) = wait {
            tokio::time::sleep(d).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_budget_allows_a_burst_then_paces_at_qps() {
        let budget = Budget::new(10.0, 3);
        let start = Instant::now();
        for _ in 0..3 {
            budget.acquire().await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO, "the burst is free");
        for _ in 0..5 {
            budget.acquire().await;
        }
        // 5 more at 10/s: the fifth waits until 0.5 s.
        let elapsed = start.elapsed();
        assert!(
            elapsed >= Duration::from_millis(499) && elapsed <= Duration::from_millis(501),
            "{elapsed:?}"
        );
    }

    #[tokio::test]
    async fn an_unknown_connection_name_is_a_clear_error() {
        let clusters = Clusters::new(ClusterConfigs::default());
        let e = clusters.get(Some("gpu")).await.err().map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some(
                "Kubernetes configuration: no cluster connection named \"gpu\" in this Weir's configuration"
            )
        );
    }

    #[tokio::test]
    async fn a_missing_kubeconfig_names_the_file() {
        let clusters = Clusters::new(ClusterConfigs {
            default: ClusterSettings {
                kubeconfig: Some(PathBuf::from("/nonexistent/kubeconfig")),
                ..Default::default()
            },
            ..Default::default()
        });
        let e = clusters.get(None).await.err().map(|e| e.to_string());
        assert!(
            e.as_deref()
                .is_some_and(|e| e.contains("/nonexistent/kubeconfig")),
            "{e:?}"
        );
    }
}

//! Helpers for tests against the real Kubernetes control plane of
//! `tests/cluster/` (etcd, kube-apiserver, controller-manager, scheduler,
//! kwok; see its README).
//!
//! The gate is `WEIR_K8S_KUBECONFIG`, which `eval "$(tests/cluster/up.sh)"`
//! and `.ci/run` set to the cluster's admin kubeconfig. Unset: a test calls
//! [`client`] (or [`kubeconfig_path`]), gets `None`, prints a `SKIPPED:` line
//! and returns. Set: the cluster must be there; a missing file or an API
//! server that is not ready is a test failure, never a silent skip.
//!
//! Each test works in its own namespace ([`fresh_namespace`]), so tests run
//! in parallel and never see each other's objects. `up.sh` disables the
//! `ServiceAccount` admission plugin and runs no service-account controller:
//! namespaces get no `default` ServiceAccount and pods need none. A test that
//! wants a ServiceAccount creates it, then can act as it with
//! [`service_account_kubeconfig`].
//!
//! Polling helpers are in [`crate::harness`] ([`crate::harness::eventually`]).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, PostParams};
use kube::config::{
    AuthInfo, Context, KubeConfigOptions, Kubeconfig, NamedAuthInfo, NamedCluster, NamedContext,
};
use kube::{Client, Config};

/// The environment variable naming the admin kubeconfig of the test cluster.
pub const KUBECONFIG_ENV: &str = "WEIR_K8S_KUBECONFIG";

/// How long the API server gets to answer `/readyz` with `ok`.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Label on every namespace [`fresh_namespace`] creates, so leftovers of
/// failed tests can be found (`kubectl get ns -l weir.dev/test`).
pub const TEST_LABEL: &str = "weir.dev/test";

/// The admin kubeconfig from `WEIR_K8S_KUBECONFIG`.
///
/// Unset: prints `SKIPPED: <test>: ...` to stderr, uncaptured (the test is
/// the current thread's name, which is the test's name under the default
/// test harness)
/// and returns `None`. Set but the file does not exist: panics naming it.
pub fn kubeconfig_path() -> Option<PathBuf> {
    crate::harness::gated_file(
        KUBECONFIG_ENV,
        ".ci/run sets it after tests/cluster/up.sh",
        "is the cluster up? eval \"$(tests/cluster/up.sh)\"",
    )
}

/// An admin client for the test cluster, or `None` (test skipped) when
/// `WEIR_K8S_KUBECONFIG` is unset. Panics if the kubeconfig cannot be used
/// or the API server's `/readyz` does not answer `ok` within 10 s.
pub async fn client() -> Option<Client> {
    let path = kubeconfig_path()?;
    let client = client_from(&path).await;
    wait_ready(&client, &path).await;
    Some(client)
}

/// A client from any kubeconfig file (its current context), e.g. one written
/// by [`service_account_kubeconfig`]. Panics naming the file if it is unusable.
pub async fn client_from(kubeconfig: &Path) -> Client {
    let parsed = Kubeconfig::read_from(kubeconfig)
        .unwrap_or_else(|e| panic!("cannot read kubeconfig {}: {e}", kubeconfig.display()));
    let config = Config::from_custom_kubeconfig(parsed, &KubeConfigOptions::default())
        .await
        .unwrap_or_else(|e| panic!("cannot use kubeconfig {}: {e}", kubeconfig.display()));
    Client::try_from(config).unwrap_or_else(|e| {
        panic!(
            "cannot build a client from kubeconfig {}: {e}",
            kubeconfig.display()
        )
    })
}

/// Polls `GET /readyz` until it answers `ok`; panics with the last answer
/// after [`READY_TIMEOUT`].
async fn wait_ready(client: &Client, kubeconfig: &Path) {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let request = http::Request::get("/readyz")
            .body(Vec::new())
            .expect("a GET request with an empty body is well formed");
        // Bounded, so a server that accepts but never answers still fails in time.
        let left = deadline.saturating_duration_since(Instant::now());
        let last = match tokio::time::timeout(left, client.request_text(request)).await {
            Ok(Ok(body)) if body.trim() == "ok" => return,
            Ok(Ok(body)) => format!("answered {body:?}"),
            Ok(Err(e)) => format!("failed: {e}"),
            Err(_) => "got no answer".to_owned(),
        };
        assert!(
            Instant::now() < deadline,
            "{KUBECONFIG_ENV}={}: the API server's /readyz did not answer ok within {READY_TIMEOUT:?}; last request {last}",
            kubeconfig.display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Creates a namespace named `<prefix>-<8 random hex digits>` (labelled
/// [`TEST_LABEL`]) and returns its name. `prefix` must be a DNS-1123 label
/// of at most 50 characters. The test deletes it with [`delete_namespace`]
/// when it passes; a failed test leaves it for inspection.
pub async fn fresh_namespace(client: &Client, prefix: &str) -> String {
    assert!(
        !prefix.is_empty()
            && prefix.len() <= 50
            && prefix
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !prefix.starts_with('-')
            && !prefix.ends_with('-'),
        "namespace prefix {prefix:?} is not a DNS-1123 label of at most 50 characters"
    );
    // The tail of a v7 UUID is random (the head is the clock, shared by
    // tests started in the same millisecond).
    let id = uuid::Uuid::now_v7().simple().to_string();
    let name = format!("{prefix}-{}", &id[id.len() - 8..]);
    let namespace = Namespace {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            labels: Some([(TEST_LABEL.to_owned(), "true".to_owned())].into()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .unwrap_or_else(|e| panic!("cannot create namespace {name}: {e}"));
    name
}

/// Deletes a namespace (the namespace controller then deletes what is in it);
/// does not wait for it to be gone.
pub async fn delete_namespace(client: &Client, name: &str) {
    Api::<Namespace>::all(client.clone())
        .delete(name, &DeleteParams::default())
        .await
        .unwrap_or_else(|e| panic!("cannot delete namespace {name}: {e}"));
}

/// Writes a kubeconfig that acts as ServiceAccount `namespace/service_account`
/// (which must exist) and returns its path, `dir/<service_account>.kubeconfig`.
///
/// The token comes from the TokenRequest API (valid 1 h); the server and
/// certificate authority are those of the admin kubeconfig's current
/// context; the context's namespace is `namespace`. The file is JSON, which
/// every kubeconfig reader accepts as YAML.
pub async fn service_account_kubeconfig(
    client: &Client,
    namespace: &str,
    service_account: &str,
    dir: &Path,
) -> PathBuf {
    let what = format!("ServiceAccount {namespace}/{service_account}");
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: Vec::new(), // the API server's own audience
            expiration_seconds: Some(3600),
            ..TokenRequestSpec::default()
        },
        ..TokenRequest::default()
    };
    let answer = Api::<ServiceAccount>::namespaced(client.clone(), namespace)
        .create_token_request(service_account, &PostParams::default(), &request)
        .await
        .unwrap_or_else(|e| panic!("cannot request a token for {what}: {e}"));
    let token = answer
        .status
        .map(|s| s.token)
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| panic!("the TokenRequest for {what} returned no token"));

    let admin_path = kubeconfig_path().unwrap_or_else(|| {
        panic!("service_account_kubeconfig needs {KUBECONFIG_ENV}, which is not set")
    });
    let admin = Kubeconfig::read_from(&admin_path)
        .unwrap_or_else(|e| panic!("cannot read kubeconfig {}: {e}", admin_path.display()));
    let cluster = admin_cluster(&admin, &admin_path);

    let user = format!("{namespace}-{service_account}");
    let kubeconfig = Kubeconfig {
        clusters: vec![cluster.clone()],
        auth_infos: vec![NamedAuthInfo {
            name: user.clone(),
            auth_info: Some(AuthInfo {
                token: Some(token.into()),
                ..AuthInfo::default()
            }),
            other: Default::default(),
        }],
        contexts: vec![NamedContext {
            name: user.clone(),
            context: Some(Context {
                cluster: cluster.name,
                user: Some(user.clone()),
                namespace: Some(namespace.to_owned()),
                ..Context::default()
            }),
            other: Default::default(),
        }],
        current_context: Some(user),
        api_version: Some("v1".to_owned()),
        kind: Some("Config".to_owned()),
        ..Kubeconfig::default()
    };
    let text = serde_json::to_string_pretty(&kubeconfig)
        .unwrap_or_else(|e| panic!("cannot serialise the kubeconfig of {what}: {e}"));
    let path = dir.join(format!("{service_account}.kubeconfig"));
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    path
}

/// The cluster entry of `kubeconfig`'s current context (certificate paths
/// already absolute: `Kubeconfig::read_from` resolves them).
fn admin_cluster(kubeconfig: &Kubeconfig, path: &Path) -> NamedCluster {
    let file = path.display();
    let current = kubeconfig
        .current_context
        .as_deref()
        .unwrap_or_else(|| panic!("kubeconfig {file} has no current-context"));
    let cluster = kubeconfig
        .contexts
        .iter()
        .find(|c| c.name == current)
        .and_then(|c| c.context.as_ref())
        .map(|c| c.cluster.as_str())
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| panic!("kubeconfig {file}: context {current} names no cluster"));
    kubeconfig
        .clusters
        .iter()
        .find(|c| c.name == cluster)
        .cloned()
        .unwrap_or_else(|| panic!("kubeconfig {file}: no cluster named {cluster}"))
}

/// The HTTP status code of a refused API call (`kube::Error::Api`), or a
/// panic naming `what` if the call succeeded or failed some other way.
pub fn api_error_code<T: std::fmt::Debug>(what: &str, result: kube::Result<T>) -> u16 {
    match result {
        Err(kube::Error::Api(status)) => status.code,
        Err(other) => panic!("{what}: expected an API error status, got {other}"),
        Ok(value) => panic!("{what}: expected a refusal, but it succeeded: {value:?}"),
    }
}

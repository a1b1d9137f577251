//! PLACEHOLDER (lead): replaced by the cluster harness from branch `cluster`.
use std::path::PathBuf;

pub fn kubeconfig_path() -> Option<PathBuf> {
    match std::env::var_os("WEIR_K8S_KUBECONFIG") {
        None => {
            eprintln!("SKIPPED: WEIR_K8S_KUBECONFIG is not set");
            None
        }
        Some(p) => Some(PathBuf::from(p)),
    }
}

pub async fn client() -> Option<kube::Client> {
    let path = kubeconfig_path()?;
    let kc = kube::config::Kubeconfig::read_from(&path).expect("kubeconfig");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("config");
    Some(kube::Client::try_from(cfg).expect("client"))
}

pub async fn fresh_namespace(client: &kube::Client, prefix: &str) -> String {
    use k8s_openapi::api::core::v1::Namespace;
    let name = format!(
        "{prefix}-{}",
        &uuid::Uuid::now_v7().simple().to_string()[24..]
    );
    let api: kube::Api<Namespace> = kube::Api::all(client.clone());
    let ns: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).expect("namespace");
    api.create(&Default::default(), &ns)
        .await
        .expect("create namespace");
    name
}

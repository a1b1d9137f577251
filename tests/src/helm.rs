//! The Helm chart `deploy/helm/weir`, rendered by a real `helm` for the tests
//! in `tests/tests/deploy.rs`.
//!
//! The gate is `WEIR_HELM`, the path of a `helm` binary, which `.ci/run` sets
//! to what `tests/cluster/helm.sh` built (helm.sh/helm/v4 from the Go module
//! proxy, cached by version). Unset: a test calls [`helm_binary`], gets
//! `None`, prints a `SKIPPED:` line and returns. Set: the file must be there;
//! a missing one is a test failure, never a silent skip.

use std::path::{Path, PathBuf};
use std::process::Command;

use kube::api::DynamicObject;
use serde_json::Value;

/// The environment variable naming the `helm` binary.
pub const HELM_ENV: &str = "WEIR_HELM";

/// The release name the tests render the chart as (`helm install weir …`,
/// as deploy/README.md says), so object names match `deploy/`'s.
pub const RELEASE: &str = "weir";

/// The `helm` binary from `WEIR_HELM`.
///
/// Unset: prints `SKIPPED: <test>: ...` to stderr, uncaptured (the test is
/// the current thread's name, which is the test's name under the default
/// test harness) and returns `None`. Set but the file does not exist: panics
/// naming it.
pub fn helm_binary() -> Option<PathBuf> {
    crate::harness::gated_file(
        HELM_ENV,
        ".ci/run sets it to the helm that tests/cluster/helm.sh builds",
        "build it with tests/cluster/helm.sh",
    )
}

/// The chart's directory, `deploy/helm/weir`.
pub fn chart_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/helm/weir")
}

/// `helm template weir deploy/helm/weir --namespace NAMESPACE [--values FILE]…`:
/// the rendered manifests, or what helm printed on stderr when it refused
/// (e.g. a `fail` in the chart). Panics if `WEIR_HELM` is unset (call
/// [`helm_binary`] first, which skips the test) or helm cannot be run.
pub fn template(values_files: &[&Path], namespace: &str) -> Result<String, String> {
    let helm = std::env::var_os(HELM_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("{HELM_ENV} is not set: call helm_binary() first"));
    let mut command = Command::new(&helm);
    command
        .arg("template")
        .arg(RELEASE)
        .arg(chart_dir())
        .arg("--namespace")
        .arg(namespace);
    for file in values_files {
        command.arg("--values").arg(file);
    }
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", helm.display()));
    if output.status.success() {
        Ok(String::from_utf8(output.stdout)
            .unwrap_or_else(|e| panic!("helm template printed something not UTF-8: {e}")))
    } else {
        Err(format!(
            "helm template exited with {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// The chart's objects rendered with `values_files` (in order, later ones
/// winning) into `namespace`, in helm's order; empty documents skipped.
/// Panics if helm refuses or prints something that is not Kubernetes objects.
pub fn render(values_files: &[&Path], namespace: &str) -> Vec<DynamicObject> {
    let shown: Vec<String> = values_files
        .iter()
        .map(|f| f.display().to_string())
        .collect();
    let text = template(values_files, namespace)
        .unwrap_or_else(|e| panic!("rendering the chart with values {shown:?}: {e}"));
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text)
        .unwrap_or_else(|e| panic!("helm template (values {shown:?}) is not YAML: {e}\n{text}"));
    docs.into_iter()
        .filter(|d| !d.is_null())
        .map(|doc| {
            let object: DynamicObject = serde_json::from_value(doc).unwrap_or_else(|e| {
                panic!("helm template (values {shown:?}): not a Kubernetes object: {e}")
            });
            assert!(
                object.types.is_some(),
                "helm template (values {shown:?}): an object without apiVersion/kind"
            );
            object
        })
        .collect()
}

//! `memory-guests` (issue #14, item 6): what a Python or JavaScript plugin
//! version costs a real `weir serve` — the time to add it (its compile, at
//! upload) and the resident memory it holds once loaded, measured on a
//! restarted server that loads it from the compiled-artifact cache, so the
//! compiler's transient heap is not counted.
//!
//! The Python and JavaScript `approved-registries` (admission) and
//! `gpu-node-selector` (mutator) built by `tests/plugins/guests/build.sh`
//! (the directory `WEIR_GUESTS` names) are uploaded twice each (each copy a
//! distinct digest), 8 versions; pool `g-K` binds copy K of each language's
//! pair. Every version decides once before the restart and once after it:
//! admission at run creation, the mutators through `deployment render`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::Row;
use crate::memory_serve::{Api, copy_of, memory_rows};
use crate::serve::WeirServe;

const COPIES: u32 = 2;
const LANGS: [&str; 2] = ["python", "js"];

fn pools() -> Vec<(String, &'static str, u32)> {
    let mut out = Vec::new();
    for lang in LANGS {
        for k in 1..=COPIES {
            out.push((format!("g-{lang}-{k}"), lang, k));
        }
    }
    out
}

async fn set_up(api: &Api, dist: &std::path::Path) -> Result<Vec<Duration>, String> {
    let mut compiles = Vec::new();
    for lang in LANGS {
        for plugin in ["approved-registries", "gpu-node-selector"] {
            let path = dist.join(format!("{lang}-{plugin}.wasm"));
            let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            for k in 1..=COPIES {
                let t = Instant::now();
                let v = api
                    .send(
                        api.http
                            .post(format!("{}/api/v1/plugins/{lang}-{plugin}", api.base))
                            .body(copy_of(&bytes, k)),
                        &format!("add {lang}-{plugin} copy {k}"),
                    )
                    .await?;
                compiles.push(t.elapsed());
                if v["version"] != json!(k) {
                    return Err(format!("{lang}-{plugin} copy {k} stored as {v}"));
                }
            }
        }
    }
    for (pool, lang, k) in pools() {
        api.post(
            "/api/v1/pools",
            json!({"name": pool, "type": "kubernetes", "paused": true}),
        )
        .await?;
        api.post(
            "/api/v1/deployments",
            json!({"name": format!("d-{pool}"), "pool": pool, "tags": ["gpu"],
                   "job_variables": {"image": "registry.example.com/ml/trainer:1"}}),
        )
        .await?;
        api.post(
            &format!("/api/v1/pools/{pool}/bindings"),
            json!({"plugin": format!("{lang}-approved-registries"), "version": k,
                   "config": {"prefixes": ["registry.example.com/"]}}),
        )
        .await?;
        api.post(
            &format!("/api/v1/pools/{pool}/bindings"),
            json!({"plugin": format!("{lang}-gpu-node-selector"), "version": k,
                   "config": {"node_selector": {"accelerator": "nvidia-a100"}}}),
        )
        .await?;
    }
    Ok(compiles)
}

/// Every version decides once: a run created in each pool (admission) and
/// each deployment rendered (the mutator). Returns each pool's time for
/// both.
async fn decide_all(api: &Api, only: Option<&str>) -> Result<Vec<Duration>, String> {
    let mut took = Vec::new();
    for (pool, lang, _) in pools() {
        if only.is_some_and(|only| only != lang) {
            continue;
        }
        let t = Instant::now();
        api.post("/api/v1/runs", json!({"deployment": format!("d-{pool}")}))
            .await?;
        let job: Value = api
            .post(&format!("/api/v1/deployments/d-{pool}/render"), json!({}))
            .await?;
        took.push(t.elapsed());
        if !job["job_configuration"].to_string().contains("nvidia-a100") {
            return Err(format!(
                "memory-guests: the mutator of {pool} did not run: {job}"
            ));
        }
    }
    Ok(took)
}

pub(crate) async fn scenario() -> Result<Vec<Row>, String> {
    let Some(dist) = std::env::var_os("WEIR_GUESTS").map(PathBuf::from) else {
        return Err(
            "memory-guests needs WEIR_GUESTS (tests/plugins/guests/build.sh prints it)".into(),
        );
    };
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut rows = Vec::new();

    let serve = WeirServe::start(dir.path()).await?;
    let api = Api::new(&serve.base);
    let compiles = set_up(&api, &dist).await?;
    decide_all(&api, None).await?;
    rows.extend(memory_rows(
        &serve,
        "memory-guests",
        "8 guest versions compiled at upload and called",
    ));
    serve.stop().await;

    // A fresh process on the same data directory: nothing loaded yet.
    let serve = WeirServe::start(dir.path()).await?;
    let api = Api::new(&serve.base);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = serve.kib("VmRSS");
    rows.extend(memory_rows(&serve, "memory-guests", "restarted, idle"));
    // One language at a time: each one's versions loaded from the cache
    // and called (an admission and a mutator per pool, so each version's
    // instance also leaves its pool slot warm, as in service).
    let mut first = Vec::new();
    let mut before = idle;
    for lang in LANGS {
        first.extend(decide_all(&api, Some(lang)).await?);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let after = serve.kib("VmRSS");
        rows.extend(memory_rows(
            &serve,
            "memory-guests",
            &format!("restarted, then the {lang} versions loaded from the cache and called"),
        ));
        if let (Some(before), Some(after)) = (before, after) {
            let versions = f64::from(COPIES) * 2.0;
            let per = (after - before) / 1024.0 / versions;
            eprintln!(
                "memory-guests: {lang}: {per:.1} MiB per loaded version ({versions} versions)"
            );
            rows.push(Row::Value {
                name: format!(
                    "memory-guests: RSS per {lang} version loaded from the cache and called (mean of {versions})"
                ),
                value: per,
                unit: "MiB",
            });
        }
        before = after;
    }
    let again = decide_all(&api, None).await?;
    serve.stop().await;

    rows.push(Row::latency(
        "memory-guests: adding a guest version (upload, compile, store)",
        compiles,
    ));
    rows.push(Row::latency(
        "memory-guests: a pool's admission + mutator, first after restart (load from the cache)",
        first,
    ));
    rows.push(Row::latency(
        "memory-guests: a pool's admission + mutator, loaded",
        again,
    ));
    Ok(rows)
}

//! `decision-inputs` (issue #16): what recording each plugin decision's
//! inputs costs.
//!
//! 1. Run creation with an admission plugin bound (`approved-registries`),
//!    32 clients, the pool paused so only creation is measured: with
//!    recording off (`decision_inputs_keep = 0`, the baseline) and on (the
//!    default), three passes each, each on a fresh server, in the same run;
//!    the median of each. Then the stored bytes per admission decision.
//! 2. Runs released and completed on a process pool with a mutator bound
//!    (`team-resources`, which is given the whole job): the stored bytes per
//!    mutator decision, whose input includes the job.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::Row;
use crate::server::{Bench, hammer};

const CLIENTS: usize = 32;

async fn with_plugin(bench: &Bench, plugin: &str, config: serde_json::Value) -> Result<(), String> {
    let path = crate::build_plugins()?.join(format!("{plugin}.wasm"));
    let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let resp = reqwest::Client::new()
        .post(format!("{}/api/v1/plugins/{plugin}", bench.base))
        .body(bytes)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("upload {plugin}: {}", resp.status()));
    }
    bench
        .post(
            "/api/v1/pools/bench/bindings",
            json!({"plugin": plugin, "config": config}),
        )
        .await?;
    Ok(())
}

/// Waits until `expected` decisions are stored (the recorder writes in the
/// background); the size then.
async fn recorded(bench: &Bench, expected: u64) -> Result<weir::DecisionsSize, String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let size = bench
            .store()
            .decisions_size()
            .await
            .map_err(|e| e.to_string())?;
        if size.decisions >= expected {
            return Ok(size);
        }
        if Instant::now() > deadline {
            return Err(format!(
                "decision-inputs: {} of {expected} decisions recorded after 60 s",
                size.decisions
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(crate) async fn scenario(total: usize) -> Result<Vec<Row>, String> {
    let gate = json!({"prefixes": ["ghcr.io/acme/", "docker.io/library/"]});
    let mut rows = Vec::new();
    let mut rates: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let mut sized = false;
    // Three passes each, in an order that gives neither the first or a
    // later (warmer, more loaded) turn every time.
    for record in [false, true, true, false, false, true] {
        let bench = Bench::start_with(|o| {
            if !record {
                o.config.server.decision_inputs_keep = Some(0);
            }
        })
        .await?;
        bench.setup(None, true).await?;
        with_plugin(&bench, "approved-registries", gate.clone()).await?;
        hammer(&bench.base, CLIENTS, CLIENTS * 4, true).await?;
        let (runs, wall) = hammer(&bench.base, CLIENTS, total, true).await?;
        let label = if record {
            "recorded"
        } else {
            "not recorded (baseline)"
        };
        let rate = runs.len() as f64 / wall.as_secs_f64();
        eprintln!("decision-inputs: {rate:.0} runs/s, inputs {label}");
        rates[usize::from(record)].push(rate);
        rows.push(Row::rate(
            format!("decision-inputs: POST /api/v1/runs, 1 admission plugin, inputs {label}"),
            runs.len() as u64,
            wall,
            "runs",
        ));
        rows.push(Row::latency(
            format!("decision-inputs: POST /api/v1/runs latency, inputs {label}"),
            runs,
        ));
        if record && !sized {
            sized = true;
            let decisions = (total + CLIENTS * 4) as u64;
            let size = recorded(&bench, decisions).await?;
            rows.push(Row::Value {
                name: "decision-inputs: stored bytes per admission decision".into(),
                value: size.blob_bytes as f64 / size.decisions as f64,
                unit: "B",
            });
            rows.push(Row::Value {
                name: "decision-inputs: row bytes per admission decision".into(),
                value: size.row_bytes as f64 / size.decisions as f64,
                unit: "B",
            });
            rows.push(Row::Value {
                name: "decision-inputs: parts stored per admission decision".into(),
                value: size.blobs as f64 / size.decisions as f64,
                unit: "parts",
            });
        }
        bench.stop().await;
    }

    for (record, label) in [(false, "not recorded (baseline)"), (true, "recorded")] {
        let r = &mut rates[usize::from(record)];
        r.sort_by(f64::total_cmp);
        rows.push(Row::Value {
            name: format!("decision-inputs: runs created per second, median of 3, inputs {label}"),
            value: r[r.len() / 2],
            unit: "runs/s",
        });
    }

    // Mutator decisions: released and run, each mutator given the job.
    let bench = Bench::start().await?;
    bench.setup(Some(8), false).await?;
    with_plugin(
        &bench,
        "team-resources",
        json!({"teams": {"data": {"default": {"cpu": "500m"}, "max": {"cpu": "2"}}}}),
    )
    .await?;
    let runs = 1_000usize.min(total);
    hammer(&bench.base, 8, runs, true).await?;
    let size = recorded(&bench, runs as u64).await?;
    rows.push(Row::Value {
        name: "decision-inputs: stored bytes per mutator decision (process job)".into(),
        value: size.blob_bytes as f64 / size.decisions as f64,
        unit: "B",
    });
    rows.push(Row::Value {
        name: "decision-inputs: row bytes per mutator decision".into(),
        value: size.row_bytes as f64 / size.decisions as f64,
        unit: "B",
    });
    bench.stop().await;
    Ok(rows)
}

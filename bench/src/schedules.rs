//! `schedules` (issue #17): how fast schedules turn into runs, next to the
//! same number of runs created through the API.
//!
//! 500 schedules (100 on each of 5 deployments, the most one may have),
//! every 60 s, with the default 10 runs
//! ahead each: the leader creates 5,000 runs, one after the other through
//! the ordinary submit path (`run/schedule.rs`). Timed from the first
//! schedule added until the 5,000th run is stored (adding the schedules is
//! inside the time). Baselines, in the same run, each on a fresh server:
//! 5,000 `POST /api/v1/runs` from one client (the schedules' loop is one
//! caller too) and from 32. The pool is paused, so only creation counts.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::Row;
use crate::server::{Bench, hammer};

const SCHEDULES: usize = 500;
const AHEAD: usize = 10;

pub(crate) async fn scenario() -> Result<Vec<Row>, String> {
    let total = SCHEDULES * AHEAD;
    let mut rows = Vec::new();

    let bench = Bench::start().await?;
    bench.setup(None, true).await?;
    for d in 0..SCHEDULES / 100 {
        bench
            .post(
                "/api/v1/deployments",
                json!({"name": format!("d{d}"), "pool": "bench", "job_variables": {"command": "true"}}),
            )
            .await?;
    }
    let start = Instant::now();
    for i in 0..SCHEDULES {
        bench
            .post(
                &format!("/api/v1/deployments/d{}/schedules", i / 100),
                json!({"name": format!("s{i}"), "interval": 60}),
            )
            .await?;
    }
    let added = start.elapsed();
    let deadline = start + Duration::from_secs(600);
    loop {
        let stats = bench.store().stats().await.map_err(|e| e.to_string())?;
        let created: u64 = stats.runs_by_state.values().sum();
        if created >= total as u64 {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("schedules: {created} of {total} runs after 600 s"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let wall = start.elapsed();
    eprintln!(
        "schedules: {total} runs from {SCHEDULES} schedules in {:.1} s (adding them: {:.1} s)",
        wall.as_secs_f64(),
        added.as_secs_f64()
    );
    rows.push(Row::rate(
        format!("schedules: runs created by {SCHEDULES} schedules, {AHEAD} ahead each"),
        total as u64,
        wall,
        "runs",
    ));
    bench.stop().await;

    for clients in [1, 32] {
        let bench = Bench::start().await?;
        bench.setup(None, true).await?;
        let (_, wall) = hammer(&bench.base, clients, total, true).await?;
        rows.push(Row::rate(
            format!("schedules baseline: POST /api/v1/runs, {clients} client(s)"),
            total as u64,
            wall,
            "runs",
        ));
        bench.stop().await;
    }
    Ok(rows)
}

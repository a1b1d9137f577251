//! The CLI end to end: the real `weir` binary as server and as client.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use weir_tests::harness::{WeirProcess, eventually_blocking};

fn history_time(run: &Value, state: &str) -> Option<DateTime<Utc>> {
    run["history"]
        .as_array()?
        .iter()
        .find(|h| h["state"] == state)
        .and_then(|h| h["at"].as_str())
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

fn wait_terminal(weir: &WeirProcess, id: &str) -> Value {
    eventually_blocking(&format!("run {id} to end"), Duration::from_secs(60), || {
        let run = weir.inspect(id);
        matches!(
            run["state"].as_str(),
            Some("Completed" | "Failed" | "Crashed" | "Cancelled")
        )
        .then_some(run)
    })
}

#[test]
fn pools_queues_limits_order_outcomes_logs_and_cancel() {
    let dir = tempfile::tempdir().expect("tempdir");
    let weir = WeirProcess::start(dir.path(), None);

    weir.cli_json(&[
        "pool",
        "create",
        "local",
        "--type",
        "process",
        "--concurrency-limit",
        "2",
    ]);
    weir.cli_json(&[
        "queue",
        "create",
        "high",
        "--pool",
        "local",
        "--priority",
        "1",
    ]);
    weir.cli_json(&[
        "queue",
        "create",
        "low",
        "--pool",
        "local",
        "--priority",
        "2",
    ]);
    weir.cli_json(&[
        "deployment",
        "create",
        "work",
        "--pool",
        "local",
        "--job-variables",
        r#"{"command": "sh -c 'echo \"$MSG from $WEIR_RUN_ID\"; sleep 0.3'", "env": {"MSG": "hi"}}"#,
    ]);
    let pools = weir.cli_json(&["pool", "ls"]);
    assert_eq!(pools["items"][0]["concurrency_limit"], 2);

    // Hold everything while the mix is submitted, low priority first.
    weir.cli_json(&["pool", "pause", "local"]);
    let low: Vec<String> = (0..3)
        .map(|_| weir.create_run(&["work", "--queue", "low"]))
        .collect();
    let mut high: Vec<String> = (0..3)
        .map(|_| weir.create_run(&["work", "--queue", "high"]))
        .collect();
    let failing = weir.create_run(&[
        "work",
        "--queue",
        "high",
        "--job-variables",
        r#"{"command": "sh -c 'echo failing; exit 4'"}"#,
    ]);
    high.push(failing.clone());
    let queued = weir.cli_json(&["run", "ls", "--state", "Scheduled", "--pool", "local"]);
    assert_eq!(
        queued["items"].as_array().map(Vec::len),
        Some(7),
        "paused pool holds its runs"
    );
    weir.cli_json(&["pool", "resume", "local"]);

    let mut runs: Vec<(String, Value)> = Vec::new();
    for id in high.iter().chain(low.iter()) {
        runs.push((id.clone(), wait_terminal(&weir, id)));
    }

    // Outcomes.
    for (id, run) in &runs {
        if *id == failing {
            assert_eq!(run["state"], "Failed", "{run}");
            assert_eq!(run["exit_code"], 4);
        } else {
            assert_eq!(run["state"], "Completed", "{run}");
        }
    }

    // Order: every high-priority run was released before any low one.
    let released = |id: &str| {
        let run = &runs.iter().find(|(i, _)| i == id).expect("run").1;
        history_time(run, "Pending").expect("released")
    };
    let last_high = high.iter().map(|id| released(id)).max().expect("high");
    let first_low = low.iter().map(|id| released(id)).min().expect("low");
    assert!(
        last_high <= first_low,
        "a low-priority run went before a high one"
    );
    // FIFO within a queue.
    let low_times: Vec<_> = low.iter().map(|id| released(id)).collect();
    assert!(
        low_times.windows(2).all(|w| w[0] <= w[1]),
        "low queue not FIFO"
    );

    // Limits: never more than 2 runs between release and end at once.
    let intervals: Vec<(DateTime<Utc>, DateTime<Utc>)> = runs
        .iter()
        .map(|(_, r)| {
            let start = history_time(r, "Pending").expect("pending");
            let end = DateTime::parse_from_rfc3339(r["ended_at"].as_str().expect("ended"))
                .expect("time")
                .with_timezone(&Utc);
            (start, end)
        })
        .collect();
    for (s, _) in &intervals {
        let overlapping = intervals
            .iter()
            .filter(|(s2, e2)| s2 <= s && s < e2)
            .count();
        assert!(overlapping <= 2, "{overlapping} runs held slots at {s}");
    }

    // Logs.
    let out = weir.cli(&["run", "logs", &high[0]]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("hi from {}\n", high[0])
    );

    // Cancellation of a running run.
    let long = weir.create_run(&["work", "--job-variables", r#"{"command": "sleep 60"}"#]);
    eventually_blocking("the long run to start", Duration::from_secs(30), || {
        (weir.inspect(&long)["state"] == "Running").then_some(())
    });
    let out = weir.cli(&["run", "cancel", &long]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = wait_terminal(&weir, &long);
    assert_eq!(run["state"], "Cancelled", "{run}");

    // --wait exits with the run's outcome.
    let ok = weir.cli(&["run", "create", "work", "--wait"]);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("Completed"));
    let bad = weir.cli(&[
        "run",
        "create",
        "work",
        "--job-variables",
        r#"{"command": "false"}"#,
        "--wait",
    ]);
    assert_eq!(bad.status.code(), Some(3), "Failed exits 3");

    // Bad input: a clear error naming the field, exit 1.
    let out = weir.cli(&["pool", "create", "Bad_Name", "--type", "process"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("name"), "{err}");
    let out = weir.cli(&["run", "create", "work", "--job-variables", r#"{"nope": 1}"#]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("job_variables.nope"));
}

#[test]
fn tag_limits_hold_across_queues() {
    let dir = tempfile::tempdir().expect("tempdir");
    let weir = WeirProcess::start(dir.path(), None);
    weir.cli_json(&["pool", "create", "local", "--type", "process"]);
    weir.cli_json(&["queue", "create", "other", "--pool", "local"]);
    weir.cli_json(&["limit", "create", "db", "1"]);
    weir.cli_json(&[
        "deployment",
        "create",
        "dbjob",
        "--pool",
        "local",
        "--tag",
        "db",
        "--job-variables",
        r#"{"command": "sleep 0.3"}"#,
    ]);
    let ids: Vec<String> = (0..4)
        .map(|i| {
            weir.create_run(&[
                "dbjob",
                "--queue",
                if i % 2 == 0 { "default" } else { "other" },
            ])
        })
        .collect();
    let runs: Vec<Value> = ids.iter().map(|id| wait_terminal(&weir, id)).collect();
    let intervals: Vec<(DateTime<Utc>, DateTime<Utc>)> = runs
        .iter()
        .map(|r| {
            assert_eq!(r["state"], "Completed");
            (
                history_time(r, "Pending").expect("pending"),
                DateTime::parse_from_rfc3339(r["ended_at"].as_str().expect("ended"))
                    .expect("time")
                    .with_timezone(&Utc),
            )
        })
        .collect();
    for (s, _) in &intervals {
        let n = intervals
            .iter()
            .filter(|(s2, e2)| s2 <= s && s < e2)
            .count();
        assert_eq!(n, 1, "tag limit 1 was exceeded at {s}");
    }
    let limit = weir.cli_json(&["limit", "inspect", "db"]);
    assert_eq!(limit["active_slots"], 0, "slots returned");
}

#[test]
fn a_killed_server_recovers_its_runs_and_slots() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut weir = WeirProcess::start(dir.path(), None);
    weir.cli_json(&[
        "pool",
        "create",
        "one",
        "--type",
        "process",
        "--concurrency-limit",
        "1",
    ]);
    let long = weir.create_run(&["--pool", "one", "--command", "sleep 60"]);
    let queued = weir.create_run(&["--pool", "one", "--command", "true"]);
    eventually_blocking("the long run to start", Duration::from_secs(30), || {
        (weir.inspect(&long)["state"] == "Running").then_some(())
    });
    assert_eq!(weir.inspect(&queued)["state"], "Scheduled");

    weir.restart(); // SIGKILL, then start on the same data directory.

    // The job outlived the host (its supervisor did): still Running, still
    // holding the pool's one slot, and it can be cancelled.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(weir.inspect(&long)["state"], "Running");
    assert_eq!(weir.inspect(&queued)["state"], "Scheduled");
    weir.cli_json(&["run", "cancel", &long]);
    let run = wait_terminal(&weir, &long);
    assert_eq!(run["state"], "Cancelled", "{run}");
    // Its slot came back: the queued run goes through the limit-1 pool.
    let run = wait_terminal(&weir, &queued);
    assert_eq!(run["state"], "Completed", "{run}");
    // Nothing was lost: both runs are there, once.
    let all = weir.cli_json(&["run", "ls", "--pool", "one"]);
    assert_eq!(all["items"].as_array().map(Vec::len), Some(2));
}

#[test]
fn config_file_is_applied_idempotently() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("weir.toml");
    std::fs::write(
        &config,
        r#"
[[pools]]
name = "cfg"
type = "process"
concurrency_limit = 3

[[queues]]
pool = "cfg"
name = "fast"
priority = 1

[[limits]]
tag = "gpu"
limit = 2

[[deployments]]
name = "hello"
pool = "cfg"
queue = "fast"
job_variables = { command = "echo hello" }
"#,
    )
    .expect("write config");
    let data = dir.path().join("data");
    let mut weir = WeirProcess::start(&data, Some(&config));
    let id = weir.create_run(&["hello"]);
    assert_eq!(wait_terminal(&weir, &id)["state"], "Completed");
    // Restarting with the same file changes nothing and fails nothing.
    weir.restart();
    let pools = weir.cli_json(&["pool", "ls"]);
    assert_eq!(pools["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(pools["items"][0]["concurrency_limit"], 3);
    let d = weir.cli_json(&["deployment", "inspect", "hello"]);
    assert_eq!(d["queue"], "fast");
    let l = weir.cli_json(&["limit", "ls"]);
    assert_eq!(l["items"][0]["limit"], 2);
}

#[test]
fn a_job_starts_a_child_run_through_weir_api_url() {
    let dir = tempfile::tempdir().expect("tempdir");
    let weir = WeirProcess::start(dir.path(), None);
    let bin = weir_tests::harness::weir_bin();
    weir.cli_json(&["pool", "create", "local", "--type", "process"]);
    weir.cli_json(&[
        "deployment",
        "create",
        "child",
        "--pool",
        "local",
        "--job-variables",
        r#"{"command": "sh -c 'echo child of $WEIR_PARENT_HINT; echo params=$WEIR_PARAMETERS'"}"#,
    ]);
    // The parent job uses the CLI it finds on disk, with the URL and run id
    // Weir put in its environment.
    let parent_cmd = format!(
        "sh -c '{} -o json run create child --parent \"$WEIR_RUN_ID\" --param n=7 --wait'",
        bin.display()
    );
    let vars = serde_json::json!({"command": parent_cmd}).to_string();
    weir.cli_json(&[
        "deployment",
        "create",
        "parent",
        "--pool",
        "local",
        "--job-variables",
        &vars,
    ]);
    let parent = weir.create_run(&["parent"]);
    let run = wait_terminal(&weir, &parent);
    assert_eq!(run["state"], "Completed", "{run}");
    let children = weir.cli_json(&["run", "ls", "--parent", &parent]);
    let items = children["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), 1, "{children}");
    assert_eq!(items[0]["deployment"], "child");
    assert_eq!(items[0]["parent_run_id"], parent.as_str());
    assert_eq!(items[0]["state"], "Completed");
    let child = items[0]["id"].as_str().expect("id");
    let out = weir.cli(&["run", "logs", child]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(r#"params={"n":7}"#),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

//! Deployment schedules and late policies end to end, on the real binary:
//! a 1 s interval for 10 s gives 10 runs; a server SIGKILLed mid-schedule and
//! restarted creates no time twice and follows each catch-up policy; two
//! replicas on PostgreSQL never create a time twice across a failover; the
//! config file's schedules apply idempotently; a queue that cancels Late runs
//! cancels with the reason.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::Value;
use weir_tests::harness::{WeirProcess, eventually_blocking, free_port, http};
use weir_tests::pg;

/// A config whose schedules keep `ahead` future runs each.
fn write_config(dir: &Path, ahead: u32, extra: &str) -> std::path::PathBuf {
    let path = dir.join("weir.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nschedule_ahead = {ahead}\nschedule_horizon_seconds = 3600\n\
             late_after_seconds = 60\n{extra}"
        ),
    )
    .expect("write config");
    path
}

fn setup(weir: &WeirProcess, deployment: &str) {
    let pools = weir.cli_json(&["pool", "ls"]);
    let has_pool = pools["items"]
        .as_array()
        .is_some_and(|p| p.iter().any(|p| p["name"] == "p"));
    if !has_pool {
        weir.cli_json(&["pool", "create", "p", "--type", "process"]);
    }
    weir.cli_json(&[
        "deployment",
        "create",
        deployment,
        "--pool",
        "p",
        "--job-variables",
        r#"{"command": "true"}"#,
    ]);
}

fn time(v: &Value) -> DateTime<Utc> {
    v.as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| panic!("not a time: {v}"))
}

/// Every run of a deployment (all pages).
fn runs_of(weir: &WeirProcess, deployment: &str) -> Vec<Value> {
    weir.cli_json(&["run", "ls", "--deployment", deployment, "--all"])["items"]
        .as_array()
        .expect("items")
        .clone()
}

/// Scheduled times of a schedule's runs (their idempotency key names the
/// schedule), asserting none is there twice.
fn times_of(runs: &[Value], schedule_id: &str) -> Vec<DateTime<Utc>> {
    let prefix = format!("schedule/{schedule_id}/");
    let mut seen = BTreeMap::new();
    for r in runs {
        let key = r["idempotency_key"].as_str().unwrap_or("");
        if !key.starts_with(&prefix) {
            continue;
        }
        let at = time(&r["scheduled_at"]);
        if let Some(other) = seen.insert(at, r["id"].clone()) {
            panic!("time {at} has two runs: {other} and {}", r["id"]);
        }
    }
    seen.into_keys().collect()
}

fn schedule_id(weir: &WeirProcess, deployment: &str, name: &str) -> (String, DateTime<Utc>) {
    let s = weir.cli_json(&[
        "deployment",
        "schedule",
        "inspect",
        name,
        "--deployment",
        deployment,
    ]);
    (
        s["id"].as_str().expect("id").to_owned(),
        time(&s["created_through"]),
    )
}

#[test]
fn an_interval_of_one_second_for_ten_seconds_creates_ten_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), 10, "");
    let weir = WeirProcess::start(dir.path(), Some(&config));
    setup(&weir, "tick");
    let added = weir.cli_json(&[
        "deployment",
        "schedule",
        "add",
        "every-second",
        "--deployment",
        "tick",
        "--interval",
        "1s",
        "--param",
        "source=schedule",
    ]);
    assert_eq!(added["kind"], "interval");
    assert_eq!(added["interval_seconds"], 1);
    let anchor = time(&added["anchor"]);
    let id = added["id"].as_str().expect("id").to_owned();
    // The human listing names it and its next time.
    let out = weir.cli(&["deployment", "schedule", "ls"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("every-second") && text.contains("every 1 s"),
        "{text}"
    );

    // Upcoming runs are there ahead of time, as Scheduled.
    let ahead = eventually_blocking("runs created ahead", Duration::from_secs(10), || {
        let runs = runs_of(&weir, "tick");
        (runs.len() >= 10).then_some(runs)
    });
    assert!(ahead.iter().any(|r| r["state"] == "Scheduled"), "{ahead:?}");

    // Ten seconds of the schedule: its times anchor+1 … anchor+10 s.
    let end = anchor + chrono::Duration::seconds(10);
    while Utc::now() < end + chrono::Duration::milliseconds(500) {
        std::thread::sleep(Duration::from_millis(200));
    }
    let runs = runs_of(&weir, "tick");
    let times = times_of(&runs, &id);
    let in_window: Vec<_> = times.iter().filter(|t| **t <= end).collect();
    let want: Vec<_> = (1..=10)
        .map(|k| anchor + chrono::Duration::seconds(k))
        .collect();
    assert_eq!(
        in_window.into_iter().copied().collect::<Vec<_>>(),
        want,
        "the ten times of the first ten seconds, each once"
    );
    // Each of them runs to completion, with the schedule's parameter and its
    // origin in its history.
    for r in runs.iter().filter(|r| time(&r["scheduled_at"]) <= end) {
        let id = r["id"].as_str().expect("id");
        let done = weir.wait_state(id, &["Completed"]);
        assert_eq!(done["parameters"]["source"], "schedule");
        let history = done["history"].as_array().expect("history");
        assert_eq!(history[0]["cause"], "schedule:every-second", "{history:?}");
        assert!(
            history[1]["message"]
                .as_str()
                .unwrap_or("")
                .starts_with("for "),
            "{history:?}"
        );
        assert_eq!(history[1]["detail"]["schedule"], "every-second");
    }

    // Pausing cancels the runs not yet released, with the reason.
    weir.cli_json(&[
        "deployment",
        "schedule",
        "pause",
        "every-second",
        "--deployment",
        "tick",
    ]);
    let after_pause = runs_of(&weir, "tick");
    let waiting: Vec<_> = after_pause
        .iter()
        .filter(|r| r["state"] == "Scheduled" || r["state"] == "Late")
        .collect();
    assert!(waiting.is_empty(), "{waiting:?}");
    let cancelled: Vec<_> = after_pause
        .iter()
        .filter(|r| r["state"] == "Cancelled")
        .collect();
    assert!(!cancelled.is_empty(), "some runs were ahead of the pause");
    for r in &cancelled {
        let msg = r["state_message"].as_str().unwrap_or("");
        assert!(msg.contains("was paused"), "{msg}");
    }
    let count = after_pause.len();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        runs_of(&weir, "tick").len(),
        count,
        "a paused schedule creates nothing"
    );
    // Resumed: new runs from the next time after now, none for the paused
    // seconds, and still none twice.
    let resumed = weir.cli_json(&[
        "deployment",
        "schedule",
        "resume",
        "every-second",
        "--deployment",
        "tick",
    ]);
    assert_eq!(resumed["generation"], 1);
    let resumed_at = time(&resumed["created_through"]);
    eventually_blocking("runs after resume", Duration::from_secs(10), || {
        let runs = runs_of(&weir, "tick");
        (runs.len() > count).then_some(())
    });
    let runs = runs_of(&weir, "tick");
    let new_times = times_of(&runs, &format!("{id}/1"));
    assert!(new_times.iter().all(|t| *t > resumed_at), "{new_times:?}");
    let rm = weir.cli(&[
        "deployment",
        "schedule",
        "rm",
        "every-second",
        "--deployment",
        "tick",
    ]);
    assert!(rm.status.success(), "{rm:?}");
    let gone = weir.cli(&[
        "deployment",
        "schedule",
        "inspect",
        "every-second",
        "--deployment",
        "tick",
    ]);
    assert!(!gone.status.success());
    // A deployment deleted with a schedule takes it along and cancels the
    // runs it had created ahead.
    weir.cli_json(&[
        "deployment",
        "schedule",
        "add",
        "again",
        "--deployment",
        "tick",
        "--interval",
        "30m",
    ]);
    let ahead = eventually_blocking("a run ahead", Duration::from_secs(10), || {
        runs_of(&weir, "tick")
            .into_iter()
            .find(|r| r["state"] == "Scheduled")
    });
    let deleted = weir.cli(&["deployment", "delete", "tick"]);
    assert!(deleted.status.success(), "{deleted:?}");
    let run = weir.inspect(ahead["id"].as_str().expect("id"));
    assert_eq!(run["state"], "Cancelled");
    assert!(
        run["state_message"]
            .as_str()
            .unwrap_or("")
            .contains("removed with its deployment"),
        "{run}"
    );
    let all = weir.cli_json(&["deployment", "schedule", "ls"]);
    assert_eq!(all["items"].as_array().map(Vec::len), Some(0), "{all}");
}

#[test]
fn bad_schedules_are_refused_naming_the_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let weir = WeirProcess::start(dir.path(), None);
    setup(&weir, "d");
    let refused = |args: &[&str], field: &str| {
        let mut all = vec!["deployment", "schedule", "add", "s", "--deployment", "d"];
        all.extend_from_slice(args);
        let out = weir.cli(&all);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(stderr.contains(field), "{args:?}: {stderr}");
    };
    refused(&["--cron", "0 2 * *"], "cron");
    refused(&["--cron", "0 0 2 * * *"], "cron");
    refused(&["--cron", "0 25 * * *"], "cron");
    refused(
        &["--cron", "0 2 * * *", "--timezone", "Mars/Olympus"],
        "timezone",
    );
    refused(&["--interval", "0s"], "interval");
    refused(&["--interval", "soon"], "interval");
    refused(&["--at", "2020-01-01T00:00:00Z"], "at");
    refused(
        &["--interval", "1s", "--job-variables", r#"{"command": 7}"#],
        "job_variables",
    );
    // Unknown deployment, duplicate name.
    let out = weir.cli(&[
        "deployment",
        "schedule",
        "add",
        "s",
        "--deployment",
        "nope",
        "--interval",
        "1h",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope"));
    weir.cli_json(&[
        "deployment",
        "schedule",
        "add",
        "s",
        "--deployment",
        "d",
        "--interval",
        "1h",
    ]);
    refused(&["--interval", "1h"], "already has a schedule");
    // A cron schedule in a time zone shows its next times in UTC.
    let nightly = weir.cli_json(&[
        "deployment",
        "schedule",
        "add",
        "nightly",
        "--deployment",
        "d",
        "--cron",
        "0 2 * * *",
        "--timezone",
        "Europe/Paris",
        "--catchup",
        "latest",
    ]);
    assert_eq!(nightly["timezone"], "Europe/Paris");
    assert_eq!(nightly["catchup"], "latest");
    let next = nightly["next_times"].as_array().expect("next");
    assert_eq!(next.len(), 3);
    for t in next {
        // 02:00 in Paris is 00:00 or 01:00 UTC.
        let t = time(t);
        assert!(
            t.format("%M:%S").to_string() == "00:00"
                && ["00", "01"].contains(&t.format("%H").to_string().as_str()),
            "{t}"
        );
    }
}

/// Runs `n` seconds of wall time.
fn sleep_s(n: u64) {
    std::thread::sleep(Duration::from_secs(n));
}

/// The history messages of a run.
fn messages(weir: &WeirProcess, id: &str) -> Vec<String> {
    weir.inspect(id)["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|h| h["message"].as_str().unwrap_or("").to_owned())
        .collect()
}

/// The run of a schedule at `at`.
fn run_at<'a>(runs: &'a [Value], schedule_id: &str, at: DateTime<Utc>) -> &'a Value {
    runs.iter()
        .find(|r| {
            r["idempotency_key"]
                .as_str()
                .is_some_and(|k| k.starts_with(&format!("schedule/{schedule_id}/")))
                && time(&r["scheduled_at"]) == at
        })
        .expect("the run of that time")
}

/// The largest gap between consecutive times, and the time after it.
fn largest_gap(times: &[DateTime<Utc>]) -> (chrono::Duration, DateTime<Utc>) {
    times
        .windows(2)
        .map(|w| (w[1] - w[0], w[1]))
        .max_by_key(|(gap, _)| *gap)
        .expect("at least two times")
}

#[test]
fn a_server_killed_mid_schedule_creates_no_time_twice_and_catches_up_by_policy() {
    let dir = tempfile::tempdir().expect("tempdir");
    // One run ahead per schedule, so a downtime leaves times missed.
    let config = write_config(dir.path(), 1, "");
    let mut weir = WeirProcess::start(dir.path(), Some(&config));
    setup(&weir, "d");
    for policy in ["none", "latest", "all"] {
        weir.cli_json(&[
            "deployment",
            "schedule",
            "add",
            policy,
            "--deployment",
            "d",
            "--interval",
            "1s",
            "--catchup",
            policy,
        ]);
    }
    let ids: BTreeMap<&str, (String, DateTime<Utc>)> = ["none", "latest", "all"]
        .into_iter()
        .map(|p| (p, schedule_id(&weir, "d", p)))
        .collect();
    sleep_s(3);
    weir.kill();
    let killed_at = Utc::now();
    // Down for 7 s: with one run ahead and a 2 s grace, at least four times
    // per schedule are missed.
    sleep_s(7);
    weir.restart();
    let restarted_at = Utc::now();
    sleep_s(4);
    for policy in ["none", "latest", "all"] {
        weir.cli_json(&[
            "deployment",
            "schedule",
            "pause",
            policy,
            "--deployment",
            "d",
        ]);
    }
    let runs = runs_of(&weir, "d");

    for (policy, (id, anchor)) in &ids {
        // No time twice (times_of panics on one), every time a whole second
        // after the anchor.
        let times = times_of(&runs, id);
        assert!(times.len() >= 6, "{policy}: {times:?}");
        for t in &times {
            assert_eq!((*t - *anchor).num_milliseconds() % 1000, 0, "{policy}: {t}");
        }
        let (gap, after_gap) = largest_gap(&times);
        let note_of = |t: DateTime<Utc>| -> Vec<String> {
            messages(&weir, run_at(&runs, id, t)["id"].as_str().expect("id"))
        };
        match *policy {
            "all" => {
                // Every second has its run; those missed while it was down
                // say they were caught up.
                assert_eq!(gap, chrono::Duration::seconds(1), "{times:?}");
                let caught = times
                    .iter()
                    .filter(|t| **t > killed_at - chrono::Duration::seconds(2))
                    .filter(|t| note_of(**t).iter().any(|m| m.contains("catch-up all")))
                    .count();
                assert!(caught >= 4, "{caught} caught up: {times:?}");
            }
            "latest" => {
                // A gap of missed times, then the latest missed one, which
                // says so, then the on-time ones.
                assert!(gap >= chrono::Duration::seconds(2), "{times:?}");
                let msgs = note_of(after_gap);
                assert!(
                    msgs.iter()
                        .any(|m| m.contains("catch-up latest: the latest of")),
                    "{msgs:?}"
                );
                assert!(
                    after_gap < restarted_at - chrono::Duration::seconds(1),
                    "{after_gap}"
                );
            }
            "none" => {
                // A gap of missed times; the first run after it says how
                // many were skipped.
                assert!(gap >= chrono::Duration::seconds(3), "{times:?}");
                assert!(
                    after_gap > killed_at + chrono::Duration::seconds(4),
                    "{after_gap}"
                );
                let msgs = note_of(after_gap);
                assert!(
                    msgs.iter()
                        .any(|m| m.contains("catch-up none:") && m.contains("skipped")),
                    "{msgs:?}"
                );
            }
            _ => unreachable!(),
        }
    }
    // The metrics count what was skipped.
    let metrics = reqwest_get_text(&format!("{}/metrics", weir.url));
    let skipped = metric(&metrics, "weir_schedule_times_skipped_total");
    // At least three by `none`, two by `latest`.
    assert!(skipped >= 5.0, "{skipped}");
}

fn reqwest_get_text(url: &str) -> String {
    let (status, text) = http("GET", url, None);
    assert_eq!(status, 200, "GET {url}: {text}");
    text
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

#[test]
fn the_config_file_applies_schedules_idempotently() {
    let dir = tempfile::tempdir().expect("tempdir");
    let schedule = |cron: &str| {
        format!(
            "[[pools]]\nname = \"p\"\ntype = \"process\"\n\n\
             [[deployments]]\nname = \"nightly-etl\"\npool = \"p\"\n\
             job_variables = {{ command = \"true\" }}\n\n\
             [[deployments.schedules]]\nname = \"nightly\"\ncron = \"{cron}\"\n\
             timezone = \"America/New_York\"\ncatchup = \"latest\"\n\
             parameters = {{ full = true }}\n\n\
             [[deployments.schedules]]\nname = \"often\"\ninterval = \"2s\"\n"
        )
    };
    let config = write_config(dir.path(), 2, &schedule("30 1 * * *"));
    let mut weir = WeirProcess::start(dir.path(), Some(&config));
    let first = weir.cli_json(&[
        "deployment",
        "schedule",
        "ls",
        "--deployment",
        "nightly-etl",
    ]);
    let by_name = |list: &Value, name: &str| -> Value {
        list["items"]
            .as_array()
            .expect("items")
            .iter()
            .find(|s| s["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no schedule {name}: {list}"))
    };
    let nightly = by_name(&first, "nightly");
    assert_eq!(nightly["cron"], "30 1 * * *");
    assert_eq!(nightly["parameters"]["full"], true);
    let often = by_name(&first, "often");
    assert_eq!(often["interval_seconds"], 2);
    // The same file again: same schedules, same progress, same generation.
    weir.restart();
    let again = weir.cli_json(&[
        "deployment",
        "schedule",
        "ls",
        "--deployment",
        "nightly-etl",
    ]);
    for name in ["nightly", "often"] {
        let (a, b) = (by_name(&first, name), by_name(&again, name));
        assert_eq!(a["id"], b["id"], "{name}");
        assert_eq!(b["generation"], 0, "{name}");
        assert_eq!(a["anchor"], b["anchor"], "{name}");
    }
    // A changed cron: a new generation from now; the interval untouched.
    std::fs::write(
        &config,
        format!("[server]\nschedule_ahead = 2\n{}", schedule("45 1 * * 1-5")),
    )
    .expect("rewrite config");
    weir.restart();
    let changed = weir.cli_json(&[
        "deployment",
        "schedule",
        "ls",
        "--deployment",
        "nightly-etl",
    ]);
    let nightly = by_name(&changed, "nightly");
    assert_eq!(nightly["cron"], "45 1 * * 1-5");
    assert_eq!(nightly["generation"], 1);
    assert_eq!(by_name(&changed, "often")["generation"], 0);
    // A bad schedule in the file stops the server with the field named.
    std::fs::write(
        &config,
        format!("[server]\nschedule_ahead = 2\n{}", schedule("30 1 * *")),
    )
    .expect("rewrite config");
    weir.kill();
    let out = std::process::Command::new(weir_tests::harness::weir_bin())
        .args(["serve", "--data-dir"])
        .arg(dir.path())
        .arg("--config")
        .arg(&config)
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .output()
        .expect("run weir serve");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("deployments.nightly-etl.schedules.nightly") && stderr.contains("cron"),
        "{stderr}"
    );
}

#[test]
fn a_queue_that_cancels_late_runs_cancels_them_with_the_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), 1, "");
    let weir = WeirProcess::start(dir.path(), Some(&config));
    setup(&weir, "d");
    let q = weir.cli_json(&[
        "queue",
        "create",
        "nightly",
        "--pool",
        "p",
        "--late-after",
        "2s",
        "--late-action",
        "cancel",
    ]);
    assert_eq!(q["late_after_seconds"], 2);
    assert_eq!(q["late_action"], "cancel");
    // The default queue turns runs Late after 1 s and keeps them.
    let d = weir.cli_json(&[
        "queue",
        "set-late-policy",
        "--pool",
        "p",
        "default",
        "--late-after",
        "1s",
    ]);
    assert_eq!(d["late_action"], "keep");
    // Nothing is released while the pool is paused: both runs wait.
    weir.cli_json(&["pool", "pause", "p"]);
    let strict = weir.create_run(&["d", "--queue", "nightly"]);
    let kept = weir.create_run(&["d"]);
    let started = Instant::now();
    let cancelled = weir.wait_state(&strict, &["Cancelled"]);
    assert!(started.elapsed() < Duration::from_secs(30));
    let msg = cancelled["state_message"].as_str().unwrap_or("");
    assert!(
        msg.starts_with("cancelled because it was late: ")
            && msg.contains("queue p/nightly cancels runs more than 2 s late"),
        "{msg}"
    );
    let history = cancelled["history"].as_array().expect("history");
    let states: Vec<&str> = history
        .iter()
        .map(|h| h["state"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(states, ["Scheduled", "Late", "Cancelled"], "{history:?}");
    let last = &history[2];
    assert_eq!(last["cause"], "scheduler");
    assert_eq!(last["detail"]["late_action"], "cancel");
    assert!(last["detail"]["late_by_seconds"].as_i64().expect("late by") >= 2);
    // The default queue's run is Late, not cancelled, and runs once the pool
    // resumes.
    let late = weir.wait_state(&kept, &["Late"]);
    assert_eq!(late["queue"], "default");
    weir.cli_json(&["pool", "resume", "p"]);
    weir.wait_state(&kept, &["Completed"]);
    let metrics = reqwest_get_text(&format!("{}/metrics", weir.url));
    assert_eq!(metric(&metrics, "weir_late_runs_cancelled_total"), 1.0);
    // Bad late policies name the field.
    let out = weir.cli(&[
        "queue",
        "set-late-policy",
        "--pool",
        "p",
        "nightly",
        "--late-after",
        "0s",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--late-after"));
    let out = weir.cli(&[
        "queue",
        "set-late-policy",
        "--pool",
        "p",
        "nightly",
        "--late-after",
        "31d",
    ]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("late_after_seconds"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reset = weir.cli_json(&[
        "queue",
        "set-late-policy",
        "--pool",
        "p",
        "nightly",
        "--late-after",
        "default",
        "--late-action",
        "keep",
    ]);
    assert!(reset["late_after_seconds"].is_null());
    assert_eq!(reset["late_action"], "keep");
}

#[test]
fn two_replicas_on_postgres_never_create_a_time_twice() {
    let Some(db) =
        pg::fresh_database("schedules::two_replicas_on_postgres_never_create_a_time_twice")
    else {
        return;
    };
    let dirs: Vec<_> = (0..2)
        .map(|_| tempfile::tempdir().expect("tempdir"))
        .collect();
    let configs: Vec<_> = dirs.iter().map(|d| write_config(d.path(), 2, "")).collect();
    let start = |i: usize| {
        WeirProcess::start_with_args(
            dirs[i].path(),
            Some(&configs[i]),
            free_port(),
            &["--database-url", &db.url],
        )
    };
    let mut replicas = vec![Some(start(0)), Some(start(1))];
    let first = replicas[0].as_ref().expect("replica");
    setup(first, "d");
    // Added on one replica, catching up everything.
    first.cli_json(&[
        "deployment",
        "schedule",
        "add",
        "tick",
        "--deployment",
        "d",
        "--interval",
        "1s",
        "--catchup",
        "all",
    ]);
    let (id, anchor) = schedule_id(first, "d", "tick");
    let leader = |replicas: &[Option<WeirProcess>]| -> usize {
        eventually_blocking("one leader", Duration::from_secs(30), || {
            let leads: Vec<usize> = replicas
                .iter()
                .enumerate()
                .filter_map(|(i, r)| {
                    let r = r.as_ref()?;
                    let ready = reqwest_get_text(&format!("{}/readyz", r.url));
                    let v: Value = serde_json::from_str(&ready).ok()?;
                    (v["leader"] == true).then_some(i)
                })
                .collect();
            (leads.len() == 1).then(|| leads[0])
        })
    };
    sleep_s(3);
    // The leader dies; the other takes over and goes on from where the
    // schedule's runs were created.
    let l = leader(&replicas);
    replicas[l].as_mut().expect("leader").kill();
    replicas[l] = None;
    let other = 1 - l;
    let took_over = leader(&replicas);
    assert_eq!(took_over, other);
    // The old leader comes back as a standby.
    replicas[l] = Some(start(l));
    sleep_s(4);
    let survivor = replicas[other].as_ref().expect("replica");
    survivor.cli_json(&[
        "deployment",
        "schedule",
        "pause",
        "tick",
        "--deployment",
        "d",
    ]);
    let runs = runs_of(survivor, "d");
    // No time twice (times_of panics on one), and with catch-up all no
    // second without its run, from the first time to the last.
    let times = times_of(&runs, &id);
    assert!(times.len() >= 8, "{times:?}");
    assert_eq!(times[0], anchor + chrono::Duration::seconds(1));
    let seconds: BTreeSet<i64> = times.iter().map(|t| (*t - anchor).num_seconds()).collect();
    let last = *seconds.iter().max().expect("a time");
    assert_eq!(seconds, (1..=last).collect::<BTreeSet<_>>(), "{times:?}");
}

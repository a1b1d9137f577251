use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use chrono::{TimeZone, Utc};
use clap::{CommandFactory, Parser};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::client::{Client, api_error};
use super::deployment::{DeploymentCommand, render_deployments, render_job_configuration};
use super::input::{RetryArgs, parse_job_variables, parse_param, parse_params};
use super::limit::{LimitCommand, render_limits};
use super::output::{kv_block, table, waiting_text};
use super::pool::{PoolCommand, PoolTypeArg, render_pools};
use super::queue::{QueueCommand, render_queues};
use super::run::{
    Progress, RunCommand, RunCreateArgs, create_body, exit_code_for_state, list_query, render_run,
    render_runs,
};
use super::*;

fn parse(args: &[&str]) -> Cli {
    let argv = std::iter::once("weir").chain(args.iter().copied());
    match Cli::try_parse_from(argv) {
        Ok(cli) => cli,
        Err(e) => panic!("{args:?} should parse: {e}"),
    }
}

fn parse_err(args: &[&str]) -> clap::Error {
    let argv = std::iter::once("weir").chain(args.iter().copied());
    match Cli::try_parse_from(argv) {
        Ok(cli) => panic!("{args:?} should not parse, got {cli:?}"),
        Err(e) => e,
    }
}

/// A file in the temp dir with a unique name, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(contents: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "weir-cli-test-{}-{}.json",
            std::process::id(),
            uuid::Uuid::now_v7()
        ));
        if let Err(e) = std::fs::write(&path, contents) {
            panic!("cannot write {}: {e}", path.display());
        }
        TempFile(path)
    }

    fn arg(&self) -> String {
        format!("@{}", self.0.display())
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap_or_default()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

// ---------------------------------------------------------------- parsing

#[test]
fn clap_definition_is_consistent() {
    Cli::command().debug_assert();
}

#[test]
fn global_args_defaults_and_position() {
    let cli = parse(&["pool", "ls"]);
    if std::env::var_os("WEIR_API_URL").is_none() {
        assert_eq!(cli.global.api, DEFAULT_API_URL);
    }
    assert_eq!(cli.global.output, OutputFormat::Table);

    let cli = parse(&["pool", "ls", "-o", "json", "--api", "http://h:1"]);
    assert_eq!(cli.global.output, OutputFormat::Json);
    assert_eq!(cli.global.api, "http://h:1");

    let cli = parse(&["--output", "json", "limit", "ls"]);
    assert_eq!(cli.global.output, OutputFormat::Json);
    parse_err(&["-o", "yaml", "pool", "ls"]);
}

#[test]
fn parses_serve() {
    let cli = parse(&[
        "serve",
        "--config",
        "w.toml",
        "--data-dir",
        "/var/lib/weir",
        "--listen",
        "0.0.0.0:4680",
        "--advertise-url",
        "http://weir:4680",
    ]);
    let Command::Serve(args) = cli.command else {
        panic!("expected serve");
    };
    assert_eq!(args.config, Some(PathBuf::from("w.toml")));
    assert_eq!(args.data_dir, Some(PathBuf::from("/var/lib/weir")));
    assert_eq!(args.listen.map(|a| a.port()), Some(4680));
    assert_eq!(args.api_url.as_deref(), Some("http://weir:4680"));
    parse_err(&["serve", "--listen", "not-an-address"]);
}

#[test]
fn parses_pool_commands() {
    let cli = parse(&[
        "pool",
        "create",
        "gpu",
        "--type",
        "kubernetes",
        "--base-job-template",
        "t.json",
        "--concurrency-limit",
        "4",
        "--description",
        "GPUs",
        "--cluster",
        "gpu-cluster",
        "--paused",
    ]);
    match cli.command {
        Command::Pool(PoolArgs {
            command:
                PoolCommand::Create {
                    name,
                    pool_type,
                    base_job_template,
                    cluster,
                    concurrency_limit,
                    description,
                    paused,
                },
        }) => {
            assert_eq!(name, "gpu");
            assert_eq!(pool_type, PoolTypeArg::Kubernetes);
            assert_eq!(base_job_template, Some(PathBuf::from("t.json")));
            assert_eq!(cluster.as_deref(), Some("gpu-cluster"));
            assert_eq!(concurrency_limit, Some(4));
            assert_eq!(description.as_deref(), Some("GPUs"));
            assert!(paused);
        }
        other => panic!("unexpected {other:?}"),
    }
    parse_err(&["pool", "create", "p"]); // --type is required
    parse_err(&["pool", "create", "p", "--type", "docker"]);
    parse_err(&[
        "pool",
        "create",
        "p",
        "--type",
        "process",
        "--concurrency-limit",
        "-1",
    ]);

    parse(&["pool", "update", "p", "--description", "d"]);
    parse_err(&["pool", "update", "p"]); // nothing to change

    match parse(&["pool", "set-concurrency-limit", "p", "3"]).command {
        Command::Pool(PoolArgs {
            command: PoolCommand::SetConcurrencyLimit { name, limit },
        }) => assert_eq!((name.as_str(), limit), ("p", 3)),
        other => panic!("unexpected {other:?}"),
    }
    parse(&["pool", "clear-concurrency-limit", "p"]);
    match parse(&[
        "pool",
        "get-default-base-job-template",
        "--type",
        "process",
        "--file",
        "f",
    ])
    .command
    {
        Command::Pool(PoolArgs {
            command: PoolCommand::GetDefaultBaseJobTemplate { pool_type, file },
        }) => {
            assert_eq!(pool_type, PoolTypeArg::Process);
            assert_eq!(file, Some(PathBuf::from("f")));
        }
        other => panic!("unexpected {other:?}"),
    }
    for sub in ["inspect", "pause", "resume", "delete"] {
        parse(&["pool", sub, "p"]);
        parse_err(&["pool", sub]);
    }
    parse(&["pool", "ls"]);
    parse(&["pool", "list"]);
    parse_err(&["pool"]);
}

#[test]
fn parses_queue_commands() {
    match parse(&[
        "queue",
        "create",
        "urgent",
        "--pool",
        "p",
        "--priority",
        "2",
        "--limit",
        "5",
        "--description",
        "d",
        "--late-after",
        "2h",
        "--late-action",
        "cancel",
    ])
    .command
    {
        Command::Queue(QueueArgs {
            command:
                QueueCommand::Create {
                    name,
                    pool,
                    priority,
                    limit,
                    description,
                    late_after,
                    late_action,
                },
        }) => {
            assert_eq!((name.as_str(), pool.as_str()), ("urgent", "p"));
            assert_eq!((priority, limit), (Some(2), Some(5)));
            assert_eq!(description.as_deref(), Some("d"));
            assert_eq!(late_after.as_deref(), Some("2h"));
            assert_eq!(late_action.as_deref(), Some("cancel"));
        }
        other => panic!("unexpected {other:?}"),
    }
    parse_err(&["queue", "create", "q"]); // --pool is required
    parse_err(&["queue", "create", "q", "--pool", "p", "--priority", "0"]);
    parse_err(&[
        "queue",
        "create",
        "q",
        "--pool",
        "p",
        "--late-action",
        "drop",
    ]);
    match parse(&["queue", "set-concurrency-limit", "--pool", "p", "q", "7"]).command {
        Command::Queue(QueueArgs {
            command: QueueCommand::SetConcurrencyLimit { pool, name, limit },
        }) => assert_eq!((pool.as_str(), name.as_str(), limit), ("p", "q", 7)),
        other => panic!("unexpected {other:?}"),
    }
    parse(&["queue", "clear-concurrency-limit", "--pool", "p", "q"]);
    for sub in ["inspect", "pause", "resume", "delete"] {
        parse(&["queue", sub, "--pool", "p", "q"]);
        parse_err(&["queue", sub, "q"]);
    }
    match parse(&["queue", "ls"]).command {
        Command::Queue(QueueArgs {
            command: QueueCommand::Ls { pool },
        }) => assert_eq!(pool, None),
        other => panic!("unexpected {other:?}"),
    }
    parse(&["queue", "ls", "--pool", "p"]);
}

#[test]
fn parses_limit_commands() {
    match parse(&["limit", "create", "db:prod", "2"]).command {
        Command::Limit(LimitArgs {
            command: LimitCommand::Create { tag, limit },
        }) => assert_eq!((tag.as_str(), limit), ("db:prod", 2)),
        other => panic!("unexpected {other:?}"),
    }
    parse_err(&["limit", "create", "t"]);
    parse_err(&["limit", "create", "t", "many"]);
    parse(&["limit", "ls"]);
    parse(&["limit", "inspect", "t"]);
    parse(&["limit", "delete", "t"]);
}

#[test]
fn parses_deployment_commands() {
    match parse(&[
        "deployment",
        "create",
        "etl",
        "--pool",
        "p",
        "--queue",
        "q",
        "--job-variables",
        r#"{"image":"x"}"#,
        "--tag",
        "a",
        "--tag",
        "b",
        "--param",
        "n=1",
        "--param",
        "s=x",
        "--description",
        "d",
        "--retries",
        "3",
        "--retry-delay",
        "10",
    ])
    .command
    {
        Command::Deployment(DeploymentArgs {
            command:
                DeploymentCommand::Create {
                    name,
                    pool,
                    queue,
                    job_variables,
                    tags,
                    params,
                    description,
                    team,
                    retry,
                },
        }) => {
            assert_eq!(team, None);
            assert_eq!((name.as_str(), pool.as_str()), ("etl", "p"));
            assert_eq!(queue.as_deref(), Some("q"));
            assert_eq!(job_variables.as_deref(), Some(r#"{"image":"x"}"#));
            assert_eq!(tags, ["a", "b"]);
            assert_eq!(params, ["n=1", "s=x"]);
            assert_eq!(description.as_deref(), Some("d"));
            assert_eq!(
                retry,
                RetryArgs {
                    retries: Some(3),
                    retry_delay: Some(10)
                }
            );
            assert_eq!(
                retry.to_json(),
                Some(json!({"max": 3, "delay_seconds": 10}))
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    parse_err(&["deployment", "create", "d"]); // --pool is required
    // --retry-delay alone means nothing.
    parse_err(&[
        "deployment",
        "create",
        "d",
        "--pool",
        "p",
        "--retry-delay",
        "5",
    ]);
    match parse(&[
        "deployment",
        "render",
        "etl",
        "--param",
        "k=v",
        "--job-variables",
        "@vars.json",
    ])
    .command
    {
        Command::Deployment(DeploymentArgs {
            command:
                DeploymentCommand::Render {
                    name,
                    job_variables,
                    params,
                },
        }) => {
            assert_eq!(name, "etl");
            assert_eq!(job_variables.as_deref(), Some("@vars.json"));
            assert_eq!(params, ["k=v"]);
        }
        other => panic!("unexpected {other:?}"),
    }
    for sub in ["inspect", "delete"] {
        parse(&["deployment", sub, "d"]);
    }
    parse(&["deployment", "ls"]);
}

fn run_create(args: &[&str]) -> RunCreateArgs {
    let argv: Vec<&str> = ["run", "create"].iter().chain(args).copied().collect();
    match parse(&argv).command {
        Command::Run(RunArgs {
            command: RunCommand::Create(args),
        }) => args,
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn parses_run_create() {
    let parent = "0193a3b4-0000-7000-8000-000000000001";
    let args = run_create(&[
        "etl",
        "--param",
        "n=1",
        "--job-variables",
        "{}",
        "--tag",
        "t",
        "--queue",
        "q",
        "--idempotency-key",
        "k1",
        "--parent",
        parent,
        "--scheduled-at",
        "2030-01-01T09:00:00+02:00",
        "--retries",
        "2",
        "--wait",
    ]);
    assert_eq!(args.deployment.as_deref(), Some("etl"));
    assert_eq!(args.params, ["n=1"]);
    assert_eq!(args.queue.as_deref(), Some("q"));
    assert_eq!(args.idempotency_key.as_deref(), Some("k1"));
    assert_eq!(args.parent.map(|p| p.to_string()).as_deref(), Some(parent));
    assert!(args.scheduled_at.is_some());
    assert_eq!(args.retry.retries, Some(2));
    assert!(args.wait);

    let raw = run_create(&["--pool", "p", "--command", "echo hi", "--in", "30"]);
    assert_eq!(raw.pool.as_deref(), Some("p"));
    assert_eq!(raw.command.as_deref(), Some("echo hi"));
    assert_eq!(raw.in_seconds, Some(30));
    let k8s = run_create(&["--pool", "k", "--job-manifest", "job.json"]);
    assert_eq!(k8s.job_manifest, Some(PathBuf::from("job.json")));

    parse_err(&["run", "create"]); // nothing to run
    parse_err(&["run", "create", "--pool", "p"]); // pool alone is no job
    parse_err(&["run", "create", "--command", "echo"]); // raw needs --pool
    parse_err(&["run", "create", "etl", "--pool", "p"]);
    parse_err(&["run", "create", "etl", "--command", "echo"]);
    parse_err(&[
        "run",
        "create",
        "--pool",
        "p",
        "--command",
        "a",
        "--job-manifest",
        "f",
    ]);
    parse_err(&["run", "create", "etl", "--scheduled-at", "tomorrow"]);
    parse_err(&[
        "run",
        "create",
        "etl",
        "--in",
        "5",
        "--scheduled-at",
        "2030-01-01T00:00:00Z",
    ]);
    parse_err(&["run", "create", "etl", "--parent", "not-a-uuid"]);
}

#[test]
fn parses_other_run_commands() {
    let id = "0193a3b4-0000-7000-8000-000000000001";
    match parse(&[
        "run",
        "ls",
        "--state",
        "running",
        "--state",
        "AwaitingRetry",
        "--pool",
        "p",
        "--queue",
        "q",
        "--deployment",
        "d",
        "--tag",
        "t",
        "--parent",
        id,
        "--limit",
        "10",
        "--cursor",
        "42",
        "--all",
    ])
    .command
    {
        Command::Run(RunArgs {
            command: RunCommand::Ls(args),
        }) => {
            assert_eq!(args.states, ["Running", "AwaitingRetry"]);
            assert!(args.all);
            assert_eq!(args.cursor.as_deref(), Some("42"));
            let q = list_query(&args);
            let expect: Vec<(&str, String)> = vec![
                ("state", "Running".into()),
                ("state", "AwaitingRetry".into()),
                ("pool", "p".into()),
                ("queue", "q".into()),
                ("deployment", "d".into()),
                ("tag", "t".into()),
                ("parent", id.into()),
                ("limit", "10".into()),
            ];
            assert_eq!(q, expect);
        }
        other => panic!("unexpected {other:?}"),
    }
    parse_err(&["run", "ls", "--state", "Sleeping"]);
    parse_err(&["run", "ls", "--limit", "0"]);
    match parse(&["run", "logs", id, "--follow"]).command {
        Command::Run(RunArgs {
            command: RunCommand::Logs { follow, .. },
        }) => assert!(follow),
        other => panic!("unexpected {other:?}"),
    }
    parse(&["run", "logs", id]);
    parse(&["run", "inspect", id]);
    parse(&["run", "cancel", id]);
    parse_err(&["run", "inspect", "abc"]);
}

#[test]
fn wait_help_documents_exit_codes() {
    let mut cmd = Cli::command();
    let help = cmd
        .find_subcommand_mut("run")
        .and_then(|r| r.find_subcommand_mut("create"))
        .map(|c| c.render_long_help().to_string())
        .unwrap_or_default();
    for needle in ["0 Completed", "3 Failed", "4 Crashed", "5 Cancelled"] {
        assert!(help.contains(needle), "{needle:?} missing from:\n{help}");
    }
}

// ------------------------------------------------------------ input values

#[test]
fn param_values_are_json_when_they_parse() {
    let cases = [
        ("n=3", json!(3)),
        ("f=1.5", json!(1.5)),
        ("b=true", json!(true)),
        ("z=null", json!(null)),
        ("o={\"a\":1}", json!({"a": 1})),
        ("l=[1,2]", json!([1, 2])),
        ("q=\"7\"", json!("7")),
        ("s=hello", json!("hello")),
        ("e=", json!("")),
        ("u=a=b", json!("a=b")),
        ("p={not json", json!("{not json")),
    ];
    for (raw, want) in cases {
        let (key, value) = match parse_param(raw) {
            Ok(kv) => kv,
            Err(e) => panic!("{raw}: {e}"),
        };
        assert_eq!(key, &raw[..1], "{raw}");
        assert_eq!(value, want, "{raw}");
    }
}

#[test]
fn param_without_equals_names_the_flag() {
    let err = parse_param("oops").err().map(|e| e.to_string());
    let msg = err.unwrap_or_default();
    assert!(msg.contains("--param"), "{msg}");
    assert!(msg.contains("KEY=VALUE"), "{msg}");
    assert!(matches!(
        parse_param("=1"),
        Err(CliError::Input { ref arg, .. }) if arg == "--param"
    ));
    let merged = parse_params(&["a=1".into(), "a=2".into(), "b=x".into()]);
    assert!(matches!(merged, Ok(Some(ref m)) if m["a"] == json!(2) && m["b"] == json!("x")));
    assert!(matches!(parse_params(&[]), Ok(None)));
}

#[test]
fn job_variables_inline_and_from_file() {
    let inline = parse_job_variables(r#"{"image": "busybox", "env": {"A": "1"}}"#);
    assert!(matches!(inline, Ok(ref m) if m["image"] == json!("busybox")));

    let file = TempFile::new(r#"{"namespace": "jobs"}"#);
    let from_file = parse_job_variables(&file.arg());
    assert!(matches!(from_file, Ok(ref m) if m["namespace"] == json!("jobs")));

    let bad = TempFile::new("{oops");
    for (raw, needle) in [
        ("[1]".to_string(), "must be a JSON object, got an array"),
        ("{".to_string(), "not valid JSON"),
        (bad.arg(), "is not valid JSON"),
        ("@/nonexistent/weir-vars.json".to_string(), "cannot read"),
        ("@".to_string(), "empty file name"),
    ] {
        let msg = parse_job_variables(&raw)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(msg.starts_with("invalid --job-variables:"), "{raw}: {msg}");
        assert!(msg.contains(needle), "{raw}: {msg}");
    }
}

#[test]
fn run_create_body_from_a_deployment() {
    let now = Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).single();
    let Some(now) = now else { panic!("bad date") };
    let args = run_create(&[
        "etl",
        "--param",
        "n=2",
        "--tag",
        "a",
        "--in",
        "90",
        "--idempotency-key",
        "k",
        "--parent",
        "0193a3b4-0000-7000-8000-000000000001",
        "--retries",
        "1",
    ]);
    let body = match create_body(&args, now) {
        Ok(b) => b,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(
        body,
        json!({
            "deployment": "etl",
            "parameters": {"n": 2},
            "tags": ["a"],
            "scheduled_at": "2030-01-01T00:01:30Z",
            "idempotency_key": "k",
            "parent_run_id": "0193a3b4-0000-7000-8000-000000000001",
            "retries": {"max": 1, "delay_seconds": 0},
        })
    );
    let at = run_create(&["etl", "--scheduled-at", "2030-01-01T09:00:00+02:00"]);
    let body = create_body(&at, now).unwrap_or_default();
    assert_eq!(body["scheduled_at"], json!("2030-01-01T07:00:00Z"));
}

#[test]
fn run_create_body_for_raw_jobs() {
    let now = Utc::now();
    let args = run_create(&["--pool", "p", "--command", "sh -c 'exit 3'"]);
    let body = create_body(&args, now).unwrap_or_default();
    assert_eq!(
        body,
        json!({"pool": "p", "job": {"command": "sh -c 'exit 3'"}})
    );

    let unbalanced = run_create(&["--pool", "p", "--command", "echo 'oops"]);
    let err = create_body(&unbalanced, now).err().map(|e| e.to_string());
    assert!(err.unwrap_or_default().starts_with("invalid --command:"));
    let empty = run_create(&["--pool", "p", "--command", "  "]);
    assert!(create_body(&empty, now).is_err());

    let manifest = TempFile::new(r#"{"apiVersion": "batch/v1", "kind": "Job"}"#);
    let args = run_create(&["--pool", "k", "--job-manifest", manifest.path()]);
    let body = create_body(&args, now).unwrap_or_default();
    assert_eq!(body["job"]["job_manifest"]["kind"], json!("Job"));

    let list = TempFile::new("[]");
    let args = run_create(&["--pool", "k", "--job-manifest", list.path()]);
    let err = create_body(&args, now).err().map(|e| e.to_string());
    assert!(
        err.unwrap_or_default()
            .starts_with("invalid --job-manifest:")
    );
}

// --------------------------------------------------------------- exit codes

#[test]
fn wait_exit_codes() {
    assert_eq!(exit_code_for_state("Completed"), Some(0));
    assert_eq!(exit_code_for_state("Failed"), Some(3));
    assert_eq!(exit_code_for_state("Crashed"), Some(4));
    assert_eq!(exit_code_for_state("Cancelled"), Some(5));
    for waiting in [
        "Scheduled",
        "Late",
        "Pending",
        "Running",
        "Cancelling",
        "AwaitingRetry",
    ] {
        assert_eq!(exit_code_for_state(waiting), None, "{waiting}");
    }
}

#[test]
fn progress_prints_each_history_entry_once() {
    let entry = |state: &str, msg: &str| json!({"state": state, "at": "2030-01-01T00:00:00Z", "message": msg, "cause": "api"});
    let mut progress = Progress::default();
    let run1 = json!({"state": "Scheduled", "history": [entry("Scheduled", "created")]});
    let lines = progress.new_lines(&run1);
    assert_eq!(lines.len(), 1);
    assert!(lines[0].contains("Scheduled") && lines[0].ends_with("created"));
    assert!(progress.new_lines(&run1).is_empty());
    let run2 = json!({"state": "Running", "history": [
        entry("Scheduled", "created"), entry("Pending", ""), entry("Running", "pid 7")]});
    let lines = progress.new_lines(&run2);
    assert_eq!(lines.len(), 2);
    assert!(
        lines[0].ends_with("Pending"),
        "no trailing spaces: {:?}",
        lines[0]
    );
    assert!(lines[1].ends_with("Running       pid 7"), "{:?}", lines[1]);

    // Without history, one line per observed state.
    let mut progress = Progress::default();
    assert_eq!(progress.new_lines(&json!({"state": "Running"})).len(), 1);
    assert!(progress.new_lines(&json!({"state": "Running"})).is_empty());
    assert_eq!(progress.new_lines(&json!({"state": "Completed"})).len(), 1);
}

// ------------------------------------------------------------------- errors

#[test]
fn error_rendering() {
    let with_field = CliError::Api {
        status: 422,
        error: "invalid".into(),
        field: Some("name".into()),
        detail: "\"A\" must contain only lowercase letters".into(),
    };
    assert_eq!(
        format!("error: {with_field}"),
        "error: \"A\" must contain only lowercase letters (field: name)"
    );
    let without = CliError::Api {
        status: 404,
        error: "not_found".into(),
        field: None,
        detail: "no pool named x".into(),
    };
    assert_eq!(without.to_string(), "no pool named x");
    assert_eq!(
        CliError::input("--param", "expected KEY=VALUE").to_string(),
        "invalid --param: expected KEY=VALUE"
    );
}

#[test]
fn api_errors_are_decoded() {
    let body = br#"{"error": "conflict", "field": "name", "detail": "pool p exists"}"#;
    match api_error(StatusCode::CONFLICT, body) {
        CliError::Api {
            status,
            error,
            field,
            detail,
        } => {
            assert_eq!(status, 409);
            assert_eq!(error, "conflict");
            assert_eq!(field.as_deref(), Some("name"));
            assert_eq!(detail, "pool p exists");
        }
        other => panic!("unexpected {other:?}"),
    }
    let plain = api_error(StatusCode::BAD_GATEWAY, b"upstream down");
    assert_eq!(
        plain.to_string(),
        "the server answered 502 Bad Gateway: upstream down"
    );
    assert!(matches!(plain, CliError::Api { ref error, .. } if error == "http_502"));
}

#[tokio::test]
async fn unreachable_server_says_how_to_start_it() {
    // A port that was free a moment ago.
    let addr = match TcpListener::bind("127.0.0.1:0").await {
        Ok(l) => l.local_addr().ok(),
        Err(_) => None,
    };
    let Some(addr) = addr else { return };
    let url = format!("http://{addr}");
    let cli = parse(&["--api", &url, "pool", "ls"]);
    let err = execute(cli.global, cli.command).await.err();
    let Some(err) = err else {
        panic!("expected an error")
    };
    assert!(matches!(err, CliError::Connect(..)), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&url), "{msg}");
    assert!(msg.contains("weir serve"), "{msg}");
}

#[test]
fn bad_api_url_is_an_input_error() {
    for bad in ["not a url", "ftp://weir.example", "mailto:x@y"] {
        let err = Client::new(bad, None, None).err().map(|e| e.to_string());
        assert!(
            err.unwrap_or_default().starts_with("invalid --api:"),
            "{bad}"
        );
    }
}

#[test]
fn urls_keep_prefixes_and_encode_segments() {
    let Ok(c) = Client::new("http://h:4680/weir/", None, None) else {
        panic!("client")
    };
    assert_eq!(
        c.url(&["limits", "a/b c"]).as_str(),
        "http://h:4680/weir/api/v1/limits/a%2Fb%20c"
    );
    let Ok(c) = Client::new("http://h:4680", None, None) else {
        panic!("client")
    };
    assert_eq!(c.url(&["pools"]).as_str(), "http://h:4680/api/v1/pools");
}

#[test]
fn not_a_client_command() {
    let cli = parse(&["serve"]);
    let rt = tokio::runtime::Builder::new_current_thread().build();
    let Ok(rt) = rt else { panic!("runtime") };
    let result = rt.block_on(execute(cli.global, cli.command));
    assert!(matches!(result, Err(CliError::NotAClientCommand("serve"))));
}

// ------------------------------------------------------------------ output

fn sample_runs() -> Vec<Value> {
    vec![
        json!({"id": "0193a3b4-0000-7000-8000-000000000001", "state": "Running",
               "deployment": "etl", "pool": "p", "queue": "default", "tags": ["a", "b"],
               "attempt": 1, "scheduled_at": null, "exit_code": null}),
        json!({"id": "0193a3b4-0000-7000-8000-000000000002", "state": "Failed",
               "deployment": null, "pool": "p", "queue": "urgent", "tags": [],
               "attempt": 2, "scheduled_at": null, "exit_code": 3}),
    ]
}

#[test]
fn run_table() {
    let text = render_runs(&sample_runs());
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        [
            "ID",
            "STATE",
            "DEPLOYMENT",
            "POOL",
            "QUEUE",
            "TAGS",
            "ATTEMPT",
            "SCHEDULED",
            "EXIT"
        ]
    );
    assert!(lines[1].starts_with("0193a3b4-0000-7000-8000-000000000001  Running"));
    assert!(lines[1].contains("a, b"));
    assert!(lines[2].contains("Failed"));
    assert!(lines[2].trim_end().ends_with('3'));
    // Columns line up: STATE starts at the same offset on every line.
    let col = lines[0].find("STATE");
    assert_eq!(lines[1].find("Running"), col);
    assert_eq!(lines[2].find("Failed"), col);
    assert!(text.lines().all(|l| l == l.trim_end()));
    // No borders.
    assert!(!text.contains('|') && !text.contains("--") && !text.contains('+'));
    assert_eq!(render_runs(&[]), "No runs.");
}

#[test]
fn other_tables() {
    let pools = render_pools(&[json!({"name": "p", "type": "process", "paused": true,
        "concurrency_limit": null, "active_runs": 1, "queued_runs": 2, "description": "",
        "waiting": {"turn": 0, "limit": 0, "paused": 2, "deferred": 0, "retry": 0,
            "scheduled": 0, "unsorted": 0}})]);
    let row: Vec<&str> = pools
        .lines()
        .nth(1)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(
        row,
        [
            "p", "process", "paused", "none", "1", "2", "2", "paused", "-", "-"
        ]
    );

    let queues = render_queues(&[json!({"pool": "p", "name": "q", "priority": 1,
        "paused": false, "concurrency_limit": 3, "active_runs": 0, "queued_runs": 0})]);
    let row: Vec<&str> = queues
        .lines()
        .nth(1)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(row, ["p", "q", "1", "ready", "3", "0", "0", "-", "-", "-"]);

    let waiting = json!({"waiting": {"turn": 1, "limit": 3, "paused": 0, "deferred": 2,
        "retry": 0, "scheduled": 5, "unsorted": 0}});
    assert_eq!(
        waiting_text(&waiting),
        "1 turn, 3 limit, 2 deferred, 5 scheduled"
    );
    assert_eq!(waiting_text(&json!({})), "-");

    let limits = render_limits(&[json!({"tag": "db", "limit": 2, "active_slots": 1})]);
    assert!(limits.starts_with("TAG"));
    let deployments = render_deployments(&[json!({"name": "d", "pool": "p", "queue": null,
        "tags": ["x"], "retries": {"max": 2, "delay_seconds": 5}})]);
    assert!(deployments.contains("2 (delay 5s)"), "{deployments}");
    assert_eq!(render_pools(&[]), "No pools.");
}

#[test]
fn generic_table_and_kv_block() {
    let t = table(&["a", "bb"], vec![vec!["1".into(), "2".into()]]);
    assert_eq!(t, "A  BB\n1  2");
    assert_eq!(
        kv_block(&[
            ("id", "1".into()),
            ("state", "Running".into()),
            ("empty", String::new())
        ]),
        "id:    1\nstate: Running\nempty:"
    );
}

#[test]
fn run_inspect_shows_history() {
    let run = json!({"id": "x", "state": "Failed", "state_message": "exit code 3",
        "pool": "p", "queue": "default", "deployment": null, "tags": [], "exit_code": 3,
        "retries": {"max": 0, "delay_seconds": 0},
        "history": [
            {"state": "Scheduled", "at": "2030-01-01T00:00:00Z", "message": "created", "cause": "api"},
            {"state": "Failed", "at": "2030-01-01T00:00:02Z", "message": "exit code 3", "cause": "backend"}]});
    let text = render_run(&run);
    assert!(
        text.contains("state:           Failed (exit code 3)"),
        "{text}"
    );
    assert!(text.contains("History:\nAT"), "{text}");
    assert!(text.contains("2030-01-01T00:00:02Z  Failed"), "{text}");
    assert!(text.trim_end().ends_with("backend"), "{text}");
}

#[test]
fn rendered_jobs() {
    let k8s = json!({"job_manifest": {"kind": "Job"}, "namespace": "x"});
    assert_eq!(
        render_job_configuration("kubernetes", &k8s),
        "{\n  \"kind\": \"Job\"\n}"
    );
    let process = json!({"command": "python -m app", "env": {"A": "1", "B": 2},
        "working_dir": null, "stream_output": true});
    let text = render_job_configuration("process", &process);
    assert_eq!(
        text,
        "command:       python -m app\nworking dir:   -\nstream output: true\nenv:\n  A=1\n  B=2"
    );
    let argv = json!({"command": ["echo", "a b"]});
    assert!(render_job_configuration("process", &argv).starts_with("command:     echo 'a b'"));
}

#[test]
fn openapi_documents_every_client_call() {
    let doc: Value = match serde_json::from_str(include_str!("../api/openapi.json")) {
        Ok(v) => v,
        Err(e) => panic!("openapi.json: {e}"),
    };
    assert_eq!(doc["openapi"], json!("3.1.0"));
    let calls = [
        ("get", "/api/v1/base-job-templates/{type}"),
        ("post", "/api/v1/pools"),
        ("get", "/api/v1/pools"),
        ("get", "/api/v1/pools/{name}"),
        ("patch", "/api/v1/pools/{name}"),
        ("delete", "/api/v1/pools/{name}"),
        ("post", "/api/v1/pools/{name}/pause"),
        ("post", "/api/v1/pools/{name}/resume"),
        ("post", "/api/v1/pools/{pool}/queues"),
        ("get", "/api/v1/pools/{pool}/queues"),
        ("get", "/api/v1/pools/{pool}/queues/{name}"),
        ("patch", "/api/v1/pools/{pool}/queues/{name}"),
        ("delete", "/api/v1/pools/{pool}/queues/{name}"),
        ("post", "/api/v1/pools/{pool}/queues/{name}/pause"),
        ("post", "/api/v1/pools/{pool}/queues/{name}/resume"),
        ("post", "/api/v1/limits"),
        ("get", "/api/v1/limits"),
        ("get", "/api/v1/limits/{tag}"),
        ("delete", "/api/v1/limits/{tag}"),
        ("post", "/api/v1/deployments"),
        ("get", "/api/v1/deployments"),
        ("get", "/api/v1/deployments/{name}"),
        ("delete", "/api/v1/deployments/{name}"),
        ("post", "/api/v1/deployments/{name}/render"),
        ("post", "/api/v1/runs"),
        ("get", "/api/v1/runs"),
        ("get", "/api/v1/runs/{id}"),
        ("post", "/api/v1/runs/{id}/cancel"),
        ("get", "/api/v1/runs/{id}/logs"),
    ];
    for (method, path) in calls {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} missing"
        );
    }
    // Every $ref resolves.
    let text = include_str!("../api/openapi.json");
    for piece in text.split("\"#/components/").skip(1) {
        let target = piece.split('"').next().unwrap_or_default();
        let mut node = &doc["components"];
        for part in target.split('/') {
            node = &node[part];
        }
        assert!(node.is_object(), "dangling $ref {target}");
    }
}

// --------------------------------------------- against a scripted server

/// A minimal HTTP/1.1 server answering scripted JSON: each route has a queue
/// of answers; the last one repeats. Records every request.
struct Scripted {
    base: String,
    requests: Arc<Mutex<Vec<(String, String, String)>>>,
}

type Routes = Vec<(&'static str, &'static str, VecDeque<(u16, String)>)>;

/// (method, path, answers as (status, JSON body; `null` for none)).
type Script = Vec<(&'static str, &'static str, Vec<(u16, Value)>)>;

async fn scripted(routes: Script) -> Scripted {
    let listener = match TcpListener::bind("127.0.0.1:0").await {
        Ok(l) => l,
        Err(e) => panic!("bind: {e}"),
    };
    let base = match listener.local_addr() {
        Ok(a) => format!("http://{a}"),
        Err(e) => panic!("{e}"),
    };
    let routes: Routes = routes
        .into_iter()
        .map(|(m, p, answers)| {
            let answers = answers
                .into_iter()
                .map(|(s, v)| {
                    (
                        s,
                        if v.is_null() {
                            String::new()
                        } else {
                            v.to_string()
                        },
                    )
                })
                .collect();
            (m, p, answers)
        })
        .collect();
    let routes = Arc::new(Mutex::new(routes));
    let requests = Arc::new(Mutex::new(Vec::new()));
    let recorded = requests.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let routes = routes.clone();
            let recorded = recorded.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let Some((method, target, body)) = read_request(&mut sock, &mut buf).await
                    else {
                        return;
                    };
                    let path = target.split('?').next().unwrap_or_default().to_string();
                    let (status, answer) = {
                        let mut routes = routes.lock().unwrap_or_else(|e| e.into_inner());
                        match routes
                            .iter_mut()
                            .find(|(m, p, _)| *m == method && *p == path)
                        {
                            Some((_, _, answers)) if answers.len() > 1 => {
                                answers.pop_front().unwrap_or_default()
                            }
                            Some((_, _, answers)) => answers.front().cloned().unwrap_or_default(),
                            None => (
                                404,
                                r#"{"error":"not_found","field":null,"detail":"no such endpoint"}"#
                                    .to_string(),
                            ),
                        }
                    };
                    recorded
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((method, target, body));
                    let head = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                        answer.len()
                    );
                    if sock.write_all(head.as_bytes()).await.is_err()
                        || sock.write_all(answer.as_bytes()).await.is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    Scripted { base, requests }
}

async fn read_request(
    sock: &mut tokio::net::TcpStream,
    buf: &mut Vec<u8>,
) -> Option<(String, String, String)> {
    let mut chunk = [0u8; 4096];
    let header_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = sock.read(&mut chunk).await.ok().filter(|n| *n > 0)?;
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).to_string();
    let mut first = head.lines().next()?.split_whitespace();
    let method = first.next()?.to_lowercase();
    let target = first.next()?.to_string();
    let length: usize = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < header_end + length {
        let n = sock.read(&mut chunk).await.ok().filter(|n| *n > 0)?;
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buf[header_end..header_end + length]).to_string();
    buf.drain(..header_end + length);
    Some((method, target, body))
}

impl Scripted {
    async fn run(&self, args: &[&str]) -> Result<ExitCode, CliError> {
        let argv: Vec<&str> = ["--api", self.base.as_str()]
            .iter()
            .chain(args)
            .copied()
            .collect();
        let cli = parse(&argv);
        execute(cli.global, cli.command).await
    }

    fn requests(&self) -> Vec<(String, String, String)> {
        self.requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

const RUN_ID: &str = "0193a3b4-0000-7000-8000-000000000001";
const RUN_PATH: &str = "/api/v1/runs/0193a3b4-0000-7000-8000-000000000001";

fn run_in(state: &str, history: &[&str]) -> Value {
    let history: Vec<Value> = history
        .iter()
        .map(|s| json!({"state": s, "at": "2030-01-01T00:00:00Z", "message": "", "cause": "api"}))
        .collect();
    json!({"id": RUN_ID, "state": state, "pool": "p", "queue": "default",
           "deployment": "etl", "history": history})
}

#[tokio::test]
async fn wait_follows_the_run_and_maps_the_outcome() {
    for (last, code) in [
        ("Completed", 0u8),
        ("Failed", 3),
        ("Crashed", 4),
        ("Cancelled", 5),
    ] {
        let server = scripted(vec![
            (
                "post",
                "/api/v1/runs",
                vec![(201, run_in("Scheduled", &["Scheduled"]))],
            ),
            (
                "get",
                RUN_PATH,
                vec![
                    (200, run_in("Running", &["Scheduled", "Pending", "Running"])),
                    (
                        200,
                        run_in(last, &["Scheduled", "Pending", "Running", last]),
                    ),
                ],
            ),
        ])
        .await;
        let result = server
            .run(&["run", "create", "etl", "--param", "n=1", "--wait"])
            .await;
        match result {
            Ok(exit) => assert_eq!(exit, ExitCode::from(code), "{last}"),
            Err(e) => panic!("{last}: {e}"),
        }
        let requests = server.requests();
        assert_eq!(requests[0].0, "post");
        let body: Value = serde_json::from_str(&requests[0].2).unwrap_or_default();
        assert_eq!(body, json!({"deployment": "etl", "parameters": {"n": 1}}));
        assert_eq!(requests.iter().filter(|r| r.0 == "get").count(), 2);
    }
}

#[tokio::test]
async fn api_errors_come_back_as_cli_errors() {
    let server = scripted(vec![(
        "post",
        "/api/v1/pools",
        vec![(
            422,
            json!({"error": "invalid", "field": "name", "detail": "\"Bad\" must be lowercase"}),
        )],
    )])
    .await;
    let err = server
        .run(&["pool", "create", "Bad", "--type", "process"])
        .await
        .err();
    let Some(err) = err else {
        panic!("expected an error")
    };
    assert_eq!(err.to_string(), "\"Bad\" must be lowercase (field: name)");
    assert!(matches!(err, CliError::Api { status: 422, .. }));
    let body: Value = serde_json::from_str(&server.requests()[0].2).unwrap_or_default();
    assert_eq!(body, json!({"name": "Bad", "type": "process"}));
}

#[tokio::test]
async fn run_ls_all_follows_cursors() {
    let server = scripted(vec![(
        "get",
        "/api/v1/runs",
        vec![
            (
                200,
                json!({"items": [run_in("Running", &[])], "next_cursor": "7"}),
            ),
            (
                200,
                json!({"items": [run_in("Failed", &[])], "next_cursor": null}),
            ),
        ],
    )])
    .await;
    let result = server
        .run(&["run", "ls", "--state", "failed", "--limit", "1", "--all"])
        .await;
    assert!(
        matches!(result, Ok(ref c) if *c == ExitCode::SUCCESS),
        "{result:?}"
    );
    let targets: Vec<String> = server.requests().into_iter().map(|r| r.1).collect();
    assert_eq!(
        targets,
        [
            "/api/v1/runs?state=Failed&limit=1",
            "/api/v1/runs?state=Failed&limit=1&cursor=7"
        ]
    );
}

#[tokio::test]
async fn queue_ls_without_pool_walks_every_pool() {
    let queue = |pool: &str| json!({"pool": pool, "name": "default", "priority": 1});
    let server = scripted(vec![
        (
            "get",
            "/api/v1/pools",
            vec![(200, json!({"items": [{"name": "a"}, {"name": "b"}]}))],
        ),
        (
            "get",
            "/api/v1/pools/a/queues",
            vec![(200, json!({"items": [queue("a")]}))],
        ),
        (
            "get",
            "/api/v1/pools/b/queues",
            vec![(200, json!({"items": [queue("b")]}))],
        ),
    ])
    .await;
    let result = server.run(&["queue", "ls"]).await;
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(server.requests().len(), 3);
}

#[tokio::test]
async fn clear_concurrency_limit_sends_null() {
    let server = scripted(vec![(
        "patch",
        "/api/v1/pools/p/queues/q",
        vec![(
            200,
            json!({"pool": "p", "name": "q", "concurrency_limit": null}),
        )],
    )])
    .await;
    let result = server
        .run(&["queue", "clear-concurrency-limit", "--pool", "p", "q"])
        .await;
    assert!(result.is_ok(), "{result:?}");
    let body: Value = serde_json::from_str(&server.requests()[0].2).unwrap_or_default();
    assert_eq!(body, json!({"concurrency_limit": null}));
}

#[tokio::test]
async fn delete_accepts_an_empty_answer() {
    let server = scripted(vec![(
        "delete",
        "/api/v1/limits/db",
        vec![(204, Value::Null)],
    )])
    .await;
    let result = server.run(&["limit", "delete", "db"]).await;
    assert!(result.is_ok(), "{result:?}");
}

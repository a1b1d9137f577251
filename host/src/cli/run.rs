//! `weir run ...`

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use chrono::{DateTime, FixedOffset, SecondsFormat, TimeDelta, Utc};
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{ArgGroup, Args, Subcommand};
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::input::{RetryArgs, json_kind, parse_job_variables, parse_params, read_json_file};
use super::output::{
    clock_time, emit, emit_json, field, full_time, ignore_broken_pipe, items, kv_block, note,
    short_time, str_of, table,
};
use super::{CliError, Ctx};

/// Every run state, as the API spells it.
pub(super) const RUN_STATES: [&str; 10] = [
    "Scheduled",
    "Late",
    "Pending",
    "Running",
    "Completed",
    "Failed",
    "Crashed",
    "Cancelling",
    "Cancelled",
    "AwaitingRetry",
];

/// How often `run create --wait` polls the run.
pub(crate) const WAIT_POLL_INTERVAL: Duration = Duration::from_millis(200);
/// How long `--wait` keeps retrying while the server cannot be reached.
const WAIT_RECONNECT_FOR: Duration = Duration::from_secs(30);

/// The exit code of `run create --wait` for a run that ended in `state`:
/// Completed → 0, Failed → 3, Crashed → 4, Cancelled → 5; `None` for a state
/// that is not terminal.
pub(super) fn exit_code_for_state(state: &str) -> Option<u8> {
    match state {
        "Completed" => Some(0),
        "Failed" => Some(3),
        "Crashed" => Some(4),
        "Cancelled" => Some(5),
        _ => None,
    }
}

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(subcommand)]
    pub command: RunCommand,
}

#[derive(Subcommand, Debug)]
pub enum RunCommand {
    /// Create a run of a deployment, or a raw run (--pool with --command or --job-manifest)
    Create(RunCreateArgs),
    /// List runs, newest first
    #[command(visible_alias = "list")]
    Ls(RunListArgs),
    /// Show a run and its state history
    Inspect {
        /// Run ID
        id: Uuid,
    },
    /// Print a run's output
    Logs {
        /// Run ID
        id: Uuid,
        /// Keep streaming until the run has ended and all its output was printed
        #[arg(short, long)]
        follow: bool,
    },
    /// Cancel a run (a running job is stopped)
    Cancel {
        /// Run ID
        id: Uuid,
    },
}

#[derive(Args, Debug, Clone, Default)]
#[command(group(
    ArgGroup::new("source")
        .required(true)
        .args(["deployment", "command", "job_manifest"])
))]
pub struct RunCreateArgs {
    /// Deployment to run
    pub deployment: Option<String>,

    /// Pool of a raw run (requires --command or --job-manifest)
    #[arg(long, value_name = "POOL", conflicts_with = "deployment")]
    pub pool: Option<String>,

    /// Raw run in a process pool: the command line to run (one shell-quoted string)
    #[arg(long, value_name = "CMD", requires = "pool")]
    pub command: Option<String>,

    /// Raw run in a kubernetes pool: a Job manifest (JSON file)
    #[arg(long, value_name = "FILE", requires = "pool")]
    pub job_manifest: Option<PathBuf>,

    /// Parameter KEY=VALUE (repeatable); VALUE is JSON if it parses (3, true, {"a":1}), else a string
    #[arg(long = "param", value_name = "KEY=VALUE")]
    pub params: Vec<String>,

    /// Job variables: inline JSON object, or @FILE
    #[arg(long, value_name = "JSON|@FILE")]
    pub job_variables: Option<String>,

    /// Tag (repeatable)
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,

    /// Queue [default: the deployment's queue, else the pool's "default" queue]
    #[arg(long, value_name = "QUEUE")]
    pub queue: Option<String>,

    /// Create the run only once: a second create with the same key returns the first run
    #[arg(long, value_name = "KEY")]
    pub idempotency_key: Option<String>,

    /// ID of the parent run
    #[arg(long, value_name = "ID")]
    pub parent: Option<Uuid>,

    /// Start no earlier than this time (RFC 3339, e.g. 2030-01-01T09:00:00Z)
    #[arg(long, value_name = "RFC3339", value_parser = parse_rfc3339, conflicts_with = "in_seconds")]
    pub scheduled_at: Option<DateTime<FixedOffset>>,

    /// Start no earlier than SECONDS from now
    #[arg(long = "in", value_name = "SECONDS")]
    pub in_seconds: Option<u32>,

    #[command(flatten)]
    pub retry: RetryArgs,

    /// Follow the run until it ends, printing each state change, and exit with
    /// its outcome: 0 Completed, 3 Failed, 4 Crashed, 5 Cancelled (1 on an API
    /// or usage error)
    #[arg(long)]
    pub wait: bool,
}

#[derive(Args, Debug, Clone, Default)]
pub struct RunListArgs {
    /// Only runs in this state (repeatable)
    #[arg(
        long = "state",
        value_name = "STATE",
        ignore_case = true,
        value_parser = PossibleValuesParser::new(RUN_STATES).map(canonical_state)
    )]
    pub states: Vec<String>,
    /// Only runs of this pool
    #[arg(long, value_name = "POOL")]
    pub pool: Option<String>,
    /// Only runs of this queue
    #[arg(long, value_name = "QUEUE")]
    pub queue: Option<String>,
    /// Only runs of this deployment
    #[arg(long, value_name = "DEPLOYMENT")]
    pub deployment: Option<String>,
    /// Only runs carrying this tag
    #[arg(long, value_name = "TAG")]
    pub tag: Option<String>,
    /// Only children of this run
    #[arg(long, value_name = "ID")]
    pub parent: Option<Uuid>,
    /// Page size [server default: 100]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub limit: Option<u32>,
    /// Continue a listing from the cursor a previous page returned
    #[arg(long, value_name = "CURSOR")]
    pub cursor: Option<String>,
    /// Fetch every page
    #[arg(long)]
    pub all: bool,
}

fn canonical_state(s: String) -> String {
    RUN_STATES
        .iter()
        .find(|st| st.eq_ignore_ascii_case(&s))
        .map_or(s, |st| (*st).to_string())
}

fn parse_rfc3339(s: &str) -> Result<DateTime<FixedOffset>, String> {
    DateTime::parse_from_rfc3339(s)
        .map_err(|e| format!("{e}; expected RFC 3339 such as 2030-01-01T09:00:00Z"))
}

pub(crate) async fn execute(ctx: &Ctx, command: RunCommand) -> Result<ExitCode, CliError> {
    match command {
        RunCommand::Create(args) => create(ctx, &args).await,
        RunCommand::Ls(args) => list(ctx, &args).await,
        RunCommand::Inspect { id } => {
            let run = ctx.client.get(&["runs", &id.to_string()]).await?;
            ctx.show(&run, render_run)?;
            Ok(ExitCode::SUCCESS)
        }
        RunCommand::Logs { id, follow } => logs(ctx, id, follow).await,
        RunCommand::Cancel { id } => {
            let run = ctx
                .client
                .post(&["runs", &id.to_string(), "cancel"], None)
                .await?
                .body;
            ctx.show(&run, |r| {
                format!(
                    "Cancel requested for run {}: now {}",
                    str_of(r, "id"),
                    str_of(r, "state")
                )
            })?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The `POST /runs` body for `run create`.
pub(crate) fn create_body(args: &RunCreateArgs, now: DateTime<Utc>) -> Result<Value, CliError> {
    let mut body = Map::new();
    if let Some(d) = &args.deployment {
        body.insert("deployment".into(), json!(d));
    }
    if let Some(p) = &args.pool {
        body.insert("pool".into(), json!(p));
    }
    if let Some(cmd) = &args.command {
        match shell_words::split(cmd) {
            Ok(words) if words.is_empty() => {
                return Err(CliError::input("--command", "the command is empty"));
            }
            Ok(_) => {}
            Err(e) => return Err(CliError::input("--command", format!("{cmd:?}: {e}"))),
        }
        body.insert("job".into(), json!({ "command": cmd }));
    }
    if let Some(path) = &args.job_manifest {
        let manifest = read_json_file(path, "--job-manifest")?;
        if !manifest.is_object() {
            return Err(CliError::input(
                "--job-manifest",
                format!(
                    "{} must hold a JSON object (a Kubernetes Job), got {}",
                    path.display(),
                    json_kind(&manifest)
                ),
            ));
        }
        body.insert("job".into(), json!({ "job_manifest": manifest }));
    }
    if let Some(q) = &args.queue {
        body.insert("queue".into(), json!(q));
    }
    if let Some(p) = parse_params(&args.params)? {
        body.insert("parameters".into(), Value::Object(p));
    }
    if !args.tags.is_empty() {
        body.insert("tags".into(), json!(args.tags));
    }
    if let Some(raw) = &args.job_variables {
        body.insert(
            "job_variables".into(),
            Value::Object(parse_job_variables(raw)?),
        );
    }
    let scheduled_at = match (args.scheduled_at, args.in_seconds) {
        (Some(at), _) => Some(at.with_timezone(&Utc)),
        (None, Some(secs)) => Some(
            now.checked_add_signed(TimeDelta::seconds(i64::from(secs)))
                .ok_or_else(|| CliError::input("--in", "too far in the future"))?,
        ),
        (None, None) => None,
    };
    if let Some(at) = scheduled_at {
        body.insert(
            "scheduled_at".into(),
            json!(at.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
        );
    }
    if let Some(k) = &args.idempotency_key {
        body.insert("idempotency_key".into(), json!(k));
    }
    if let Some(p) = &args.parent {
        body.insert("parent_run_id".into(), json!(p.to_string()));
    }
    if let Some(r) = args.retry.to_json() {
        body.insert("retries".into(), r);
    }
    Ok(Value::Object(body))
}

async fn create(ctx: &Ctx, args: &RunCreateArgs) -> Result<ExitCode, CliError> {
    let body = create_body(args, Utc::now())?;
    let reply = ctx.client.post(&["runs"], Some(&body)).await?;
    let run = reply.body;
    let summary = created_summary(&run, reply.status == StatusCode::OK);
    if !args.wait {
        ctx.show(&run, |_| summary)?;
        return Ok(ExitCode::SUCCESS);
    }
    if ctx.json() {
        note(&summary);
    } else {
        emit(&summary)?;
    }
    let last = wait(ctx, run).await?;
    if ctx.json() {
        emit_json(&last)?;
    }
    let code = exit_code_for_state(str_of(&last, "state")).unwrap_or(1);
    Ok(ExitCode::from(code))
}

fn created_summary(run: &Value, existing: bool) -> String {
    let from = match run.get("deployment").and_then(Value::as_str) {
        Some(d) => format!(" of deployment {d}"),
        None => String::new(),
    };
    let facts = format!(
        "{} ({}) in {}/{}{from}",
        str_of(run, "id"),
        str_of(run, "state"),
        str_of(run, "pool"),
        str_of(run, "queue"),
    );
    if existing {
        format!(
            "Run {facts} already exists for idempotency key {}",
            field(run, "idempotency_key")
        )
    } else {
        format!("Created run {facts}")
    }
}

/// Follows a run until it reaches a terminal state, printing each new history
/// entry (to stdout, or to stderr with `-o json`). Returns the final run.
async fn wait(ctx: &Ctx, mut run: Value) -> Result<Value, CliError> {
    let id = str_of(&run, "id").to_string();
    if id.is_empty() {
        return Err(CliError::Response("the created run has no id".to_string()));
    }
    let mut progress = Progress::default();
    let mut unreachable_since: Option<Instant> = None;
    loop {
        for line in progress.new_lines(&run) {
            if ctx.json() {
                note(&line);
            } else {
                emit(&line)?;
            }
        }
        if exit_code_for_state(str_of(&run, "state")).is_some() {
            return Ok(run);
        }
        tokio::time::sleep(WAIT_POLL_INTERVAL).await;
        match ctx.client.get(&["runs", &id]).await {
            Ok(next) => {
                run = next;
                unreachable_since = None;
            }
            Err(e @ (CliError::Connect(..) | CliError::Http { .. })) => {
                let since = *unreachable_since.get_or_insert_with(|| {
                    note(&format!("warning: {e}; retrying"));
                    Instant::now()
                });
                if since.elapsed() > WAIT_RECONNECT_FOR {
                    return Err(e);
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// Which history entries of a followed run were already printed.
#[derive(Default)]
pub(crate) struct Progress {
    printed: usize,
    last_state: Option<String>,
}

impl Progress {
    /// Lines `<time> <STATE> <message>` for the entries not printed yet. A run
    /// without `history` gets a line per observed state change.
    pub(crate) fn new_lines(&mut self, run: &Value) -> Vec<String> {
        let mut lines = Vec::new();
        if let Some(history) = run.get("history").and_then(Value::as_array) {
            if history.len() < self.printed {
                self.printed = 0;
            }
            for entry in &history[self.printed..] {
                lines.push(history_line(entry));
            }
            self.printed = history.len();
            self.last_state = history
                .last()
                .map(|e| str_of(e, "state").to_string())
                .or(self.last_state.take());
        } else {
            let state = str_of(run, "state");
            if self.last_state.as_deref() != Some(state) {
                let entry = json!({
                    "state": state,
                    "at": Utc::now().to_rfc3339(),
                    "message": str_of(run, "state_message"),
                });
                lines.push(history_line(&entry));
                self.last_state = Some(state.to_string());
            }
        }
        lines
    }
}

pub(crate) fn history_line(entry: &Value) -> String {
    format!(
        "{} {:<13} {}",
        clock_time(entry, "at"),
        str_of(entry, "state"),
        str_of(entry, "message")
    )
    .trim_end()
    .to_string()
}

/// The `GET /runs` query for `run ls` (without the cursor).
pub(crate) fn list_query(args: &RunListArgs) -> Vec<(&'static str, String)> {
    let mut q: Vec<(&'static str, String)> = Vec::new();
    for s in &args.states {
        q.push(("state", s.clone()));
    }
    let optional = [
        ("pool", args.pool.clone()),
        ("queue", args.queue.clone()),
        ("deployment", args.deployment.clone()),
        ("tag", args.tag.clone()),
        ("parent", args.parent.map(|p| p.to_string())),
        ("limit", args.limit.map(|n| n.to_string())),
    ];
    q.extend(optional.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))));
    q
}

async fn list(ctx: &Ctx, args: &RunListArgs) -> Result<ExitCode, CliError> {
    let query = list_query(args);
    let mut cursor = args.cursor.clone();
    let mut all: Vec<Value> = Vec::new();
    loop {
        let mut url = ctx.client.url(&["runs"]);
        {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in &query {
                pairs.append_pair(k, v);
            }
            if let Some(c) = &cursor {
                pairs.append_pair("cursor", c);
            }
        }
        let page = ctx.client.get_url(url).await?;
        let next = page
            .get("next_cursor")
            .and_then(Value::as_str)
            .map(str::to_string);
        if !args.all {
            if ctx.json() {
                emit_json(&page)?;
            } else {
                emit(&render_runs(items(&page)?))?;
                if let Some(next) = next {
                    note(&format!("More runs: --cursor {next} (or --all)"));
                }
            }
            return Ok(ExitCode::SUCCESS);
        }
        all.extend(items(&page)?.iter().cloned());
        match next {
            // A cursor that does not move would loop forever.
            Some(next) if cursor.as_deref() != Some(next.as_str()) => cursor = Some(next),
            _ => break,
        }
    }
    ctx.show_list(&json!({ "items": all, "next_cursor": null }), render_runs)?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn render_runs(runs: &[Value]) -> String {
    if runs.is_empty() {
        return "No runs.".to_string();
    }
    let rows = runs
        .iter()
        .map(|r| {
            vec![
                field(r, "id"),
                field(r, "state"),
                field(r, "deployment"),
                field(r, "pool"),
                field(r, "queue"),
                field(r, "tags"),
                field(r, "attempt"),
                short_time(r, "scheduled_at"),
                field(r, "exit_code"),
            ]
        })
        .collect();
    table(
        &[
            "id",
            "state",
            "deployment",
            "pool",
            "queue",
            "tags",
            "attempt",
            "scheduled",
            "exit",
        ],
        rows,
    )
}

fn retries_text(r: &Value) -> String {
    let retries = r.get("retries").unwrap_or(&Value::Null);
    match retries.get("max").and_then(Value::as_u64) {
        None | Some(0) => "none".to_string(),
        Some(max) => format!("max {max}, delay {}s", field(retries, "delay_seconds")),
    }
}

pub(crate) fn render_run(r: &Value) -> String {
    let state = match r.get("state_message").and_then(Value::as_str) {
        Some(m) if !m.is_empty() => format!("{} ({m})", str_of(r, "state")),
        _ => field(r, "state"),
    };
    let mut rows = vec![
        ("id", field(r, "id")),
        ("state", state),
        ("deployment", field(r, "deployment")),
        ("pool", field(r, "pool")),
        ("queue", field(r, "queue")),
        ("tags", field(r, "tags")),
        ("parameters", field(r, "parameters")),
        ("job variables", field(r, "job_variables")),
    ];
    if let Some(job) = r.get("job").filter(|j| !j.is_null()) {
        rows.push(("job", job.to_string()));
    }
    rows.extend([
        ("parent run", field(r, "parent_run_id")),
        ("idempotency key", field(r, "idempotency_key")),
        ("attempt", field(r, "attempt")),
        ("retries", retries_text(r)),
        ("exit code", field(r, "exit_code")),
        ("scheduled at", full_time(r, "scheduled_at")),
        ("created at", full_time(r, "created_at")),
        ("started at", full_time(r, "started_at")),
        ("ended at", full_time(r, "ended_at")),
    ]);
    let mut text = kv_block(&rows);
    if let Some(waiting) = r.get("waiting").filter(|w| w.is_object()) {
        text.push_str("\n\nWaiting: ");
        text.push_str(str_of(waiting, "summary"));
        if let Some(p) = waiting.get("position").filter(|p| p.is_object()) {
            text.push_str(&format!(
                "\n  position: {} in its queue, {} in its pool's release order",
                field(p, "in_queue"),
                field(p, "in_pool")
            ));
        }
        for hold in waiting
            .get("holds")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            text.push_str("\n  - ");
            text.push_str(str_of(hold, "text"));
        }
    }
    if let Some(history) = r.get("history").and_then(Value::as_array) {
        let rows = history
            .iter()
            .map(|h| {
                vec![
                    full_time(h, "at"),
                    field(h, "state"),
                    field(h, "message"),
                    field(h, "cause"),
                ]
            })
            .collect();
        text.push_str("\n\nHistory:\n");
        text.push_str(&table(&["at", "state", "message", "cause"], rows));
    }
    text
}

async fn logs(ctx: &Ctx, id: Uuid, follow: bool) -> Result<ExitCode, CliError> {
    let mut url = ctx.client.url(&["runs", &id.to_string(), "logs"]);
    url.query_pairs_mut()
        .append_pair("follow", if follow { "true" } else { "false" });
    let response = ctx.client.stream(url.clone()).await?;
    let mut body = response.bytes_stream();
    let mut out = std::io::stdout();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| ctx.client.transport(&url, e))?;
        let written = out.write_all(&chunk).and_then(|()| out.flush());
        if let Err(e) = written {
            // The reader went away (`weir run logs ID | head`): stop quietly.
            ignore_broken_pipe(Err(e))?;
            return Ok(ExitCode::SUCCESS);
        }
    }
    Ok(ExitCode::SUCCESS)
}

//! `weir deployment ...`

use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::{Map, Value, json};

use super::input::{RetryArgs, parse_job_variables, parse_params};
use super::output::{
    emit, emit_json, field, full_time, kv_block, pretty, short_time, str_of, table,
};
use super::{CliError, Ctx};

#[derive(Args, Debug)]
pub struct DeploymentArgs {
    #[command(subcommand)]
    pub command: DeploymentCommand,
}

#[derive(Subcommand, Debug)]
pub enum DeploymentCommand {
    /// Create a deployment: a named, reusable way to create runs in a pool
    Create {
        /// Deployment name (lowercase letters, digits and '-')
        name: String,
        /// Pool its runs go to
        #[arg(long, value_name = "POOL")]
        pool: String,
        /// Queue of its runs [default: the pool's "default" queue]
        #[arg(long, value_name = "QUEUE")]
        queue: Option<String>,
        /// Job variables: inline JSON object, or @FILE
        #[arg(long, value_name = "JSON|@FILE")]
        job_variables: Option<String>,
        /// Tag of its runs (repeatable)
        #[arg(long = "tag", value_name = "TAG")]
        tags: Vec<String>,
        /// Default parameter KEY=VALUE (repeatable); VALUE is JSON if it parses, else a string
        #[arg(long = "param", value_name = "KEY=VALUE")]
        params: Vec<String>,
        /// Free-form description
        #[arg(long, value_name = "TEXT")]
        description: Option<String>,
        /// The team whose submitter tokens may run it
        #[arg(long, value_name = "TEAM")]
        team: Option<String>,
        #[command(flatten)]
        retry: RetryArgs,
    },
    /// List deployments
    #[command(visible_alias = "list")]
    Ls,
    /// Show a deployment
    Inspect {
        /// Deployment name
        name: String,
    },
    /// Delete a deployment
    Delete {
        /// Deployment name
        name: String,
    },
    /// Show the job a run of this deployment would get (its job configuration)
    Render {
        /// Deployment name
        name: String,
        /// Job variables to merge over the deployment's: inline JSON object, or @FILE
        #[arg(long, value_name = "JSON|@FILE")]
        job_variables: Option<String>,
        /// Parameter KEY=VALUE (repeatable); VALUE is JSON if it parses, else a string
        #[arg(long = "param", value_name = "KEY=VALUE")]
        params: Vec<String>,
    },
    /// A deployment's schedules: add, ls, inspect, pause, resume, rm
    Schedule(super::schedule::ScheduleArgs),
}

pub(crate) async fn execute(ctx: &Ctx, command: DeploymentCommand) -> Result<ExitCode, CliError> {
    let c = &ctx.client;
    match command {
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
        } => {
            let mut body = Map::new();
            if let Some(t) = team {
                crate::domain::validate_dns_label("team", &t)
                    .map_err(|e| CliError::input("--team", e.reason))?;
                body.insert("team".into(), json!(t));
            }
            body.insert("name".into(), json!(name));
            body.insert("pool".into(), json!(pool));
            if let Some(q) = queue {
                body.insert("queue".into(), json!(q));
            }
            if let Some(raw) = job_variables {
                body.insert(
                    "job_variables".into(),
                    Value::Object(parse_job_variables(&raw)?),
                );
            }
            if !tags.is_empty() {
                body.insert("tags".into(), json!(tags));
            }
            if let Some(p) = parse_params(&params)? {
                body.insert("parameters".into(), Value::Object(p));
            }
            if let Some(d) = description {
                body.insert("description".into(), json!(d));
            }
            if let Some(r) = retry.to_json() {
                body.insert("retries".into(), r);
            }
            let created = c
                .post(&["deployments"], Some(&Value::Object(body)))
                .await?
                .body;
            ctx.show(&created, |d| {
                let queue = match d.get("queue").and_then(Value::as_str) {
                    Some(q) => format!("/{q}"),
                    None => String::new(),
                };
                format!(
                    "Created deployment {} in {}{queue}",
                    str_of(d, "name"),
                    str_of(d, "pool")
                )
            })?;
        }
        DeploymentCommand::Schedule(args) => {
            return super::schedule::execute(ctx, args.command).await;
        }
        DeploymentCommand::Ls => {
            let list = c.get(&["deployments"]).await?;
            ctx.show_list(&list, render_deployments)?;
        }
        DeploymentCommand::Inspect { name } => {
            let d = c.get(&["deployments", &name]).await?;
            ctx.show(&d, render_deployment)?;
        }
        DeploymentCommand::Delete { name } => {
            c.delete(&["deployments", &name]).await?;
            ctx.done(&format!("Deleted deployment {name}"))?;
        }
        DeploymentCommand::Render {
            name,
            job_variables,
            params,
        } => {
            let mut body = Map::new();
            if let Some(raw) = job_variables {
                body.insert(
                    "job_variables".into(),
                    Value::Object(parse_job_variables(&raw)?),
                );
            }
            if let Some(p) = parse_params(&params)? {
                body.insert("parameters".into(), Value::Object(p));
            }
            let rendered = c
                .post(
                    &["deployments", &name, "render"],
                    Some(&Value::Object(body)),
                )
                .await?
                .body;
            let job_configuration = rendered.get("job_configuration").ok_or_else(|| {
                CliError::Response("the render answer has no job_configuration".to_string())
            })?;
            if ctx.json() {
                emit_json(job_configuration)?;
            } else {
                emit(&render_job_configuration(
                    str_of(&rendered, "type"),
                    job_configuration,
                ))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn retries_text(d: &Value) -> String {
    let r = d.get("retries").unwrap_or(&Value::Null);
    match r.get("max").and_then(Value::as_u64) {
        None | Some(0) => "none".to_string(),
        Some(max) => format!("{max} (delay {}s)", field(r, "delay_seconds")),
    }
}

pub(crate) fn render_deployments(deployments: &[Value]) -> String {
    if deployments.is_empty() {
        return "No deployments.".to_string();
    }
    let rows = deployments
        .iter()
        .map(|d| {
            vec![
                field(d, "name"),
                field(d, "pool"),
                field(d, "queue"),
                field(d, "tags"),
                retries_text(d),
                short_time(d, "updated_at"),
                field(d, "description"),
            ]
        })
        .collect();
    table(
        &[
            "name",
            "pool",
            "queue",
            "tags",
            "retries",
            "updated",
            "description",
        ],
        rows,
    )
}

fn render_deployment(d: &Value) -> String {
    kv_block(&[
        ("name", field(d, "name")),
        ("pool", field(d, "pool")),
        ("queue", field(d, "queue")),
        ("tags", field(d, "tags")),
        ("parameters", field(d, "parameters")),
        ("job variables", field(d, "job_variables")),
        ("retries", retries_text(d)),
        ("description", field(d, "description")),
        ("team", field(d, "team")),
        ("created at", full_time(d, "created_at")),
        ("updated at", full_time(d, "updated_at")),
    ])
}

/// Human view of a rendered job: a Kubernetes Job manifest as pretty JSON; a
/// process job as its command line, working directory and environment.
pub(crate) fn render_job_configuration(pool_type: &str, jc: &Value) -> String {
    match pool_type {
        "kubernetes" => pretty(jc.get("job_manifest").unwrap_or(jc)),
        "process" => render_process_job(jc),
        _ => pretty(jc),
    }
}

fn render_process_job(jc: &Value) -> String {
    let command = match jc.get("command") {
        Some(Value::Array(argv)) => {
            let words: Vec<String> = argv
                .iter()
                .map(|a| a.as_str().map_or_else(|| a.to_string(), str::to_string))
                .collect();
            shell_words::join(words)
        }
        Some(v) => super::output::fmt_value(v),
        None => "-".to_string(),
    };
    let known = ["command", "working_dir", "env"];
    let extra: Vec<(String, String)> = jc
        .as_object()
        .map(|o| {
            o.iter()
                .filter(|(k, v)| !known.contains(&k.as_str()) && !v.is_null())
                .map(|(k, v)| (k.replace('_', " "), super::output::fmt_value(v)))
                .collect()
        })
        .unwrap_or_default();
    let mut rows = vec![
        ("command", command),
        ("working dir", field(jc, "working_dir")),
    ];
    rows.extend(extra.iter().map(|(k, v)| (k.as_str(), v.clone())));
    let mut env_lines = Vec::new();
    match jc.get("env") {
        Some(Value::Object(env)) if !env.is_empty() => {
            rows.push(("env", String::new()));
            for (k, v) in env {
                let v = match v {
                    Value::String(s) => s.clone(),
                    Value::Null => String::new(),
                    other => other.to_string(),
                };
                env_lines.push(format!("  {k}={v}"));
            }
        }
        _ => rows.push(("env", "-".to_string())),
    }
    let mut text = kv_block(&rows);
    for line in env_lines {
        text.push('\n');
        text.push_str(&line);
    }
    text
}

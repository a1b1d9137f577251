//! `weir queue ...`

use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::{Map, Value, json};

use super::output::{
    emit, field, full_time, items, kv_block, limit_text, short_time, str_of, table, waiting_text,
};
use super::pool::status_text;
use super::{CliError, Ctx};

#[derive(Args, Debug)]
pub struct QueueArgs {
    #[command(subcommand)]
    pub command: QueueCommand,
}

#[derive(Subcommand, Debug)]
pub enum QueueCommand {
    /// Create a work queue in a pool
    Create {
        /// Queue name (lowercase letters, digits and '-')
        name: String,
        /// Pool to create the queue in
        #[arg(long, value_name = "POOL")]
        pool: String,
        /// Priority within the pool: 1 is served first [server default: 1]
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        priority: Option<u32>,
        /// Most runs of this queue active at once
        #[arg(long, value_name = "N")]
        limit: Option<u32>,
        /// Free-form description
        #[arg(long, value_name = "TEXT")]
        description: Option<String>,
        /// A run this long past its time turns Late (30s, 15m, 2h, 1d)
        /// [server default: its late_after_seconds]
        #[arg(long, value_name = "DURATION")]
        late_after: Option<String>,
        /// What happens to a run that turns Late: keep it, or cancel it with
        /// how late it was as the reason [default: keep]
        #[arg(long, value_name = "ACTION", value_parser = ["keep", "cancel"])]
        late_action: Option<String>,
    },
    /// Set when a queue's runs turn Late and what happens to them then
    SetLatePolicy {
        /// Pool of the queue
        #[arg(long, value_name = "POOL")]
        pool: String,
        /// Queue name
        name: String,
        /// A run this long past its time turns Late (30s, 15m, 2h, 1d), or
        /// `default` for the server's late_after_seconds
        #[arg(long, value_name = "DURATION")]
        late_after: Option<String>,
        /// keep (a Late run runs when it can) or cancel (it is cancelled)
        #[arg(long, value_name = "ACTION", value_parser = ["keep", "cancel"])]
        late_action: Option<String>,
    },
    /// Limit how many runs of a queue are active at once
    SetConcurrencyLimit {
        /// Pool of the queue
        #[arg(long, value_name = "POOL")]
        pool: String,
        /// Queue name
        name: String,
        /// Most runs of the queue active at once
        #[arg(value_name = "N")]
        limit: u32,
    },
    /// Remove a queue's concurrency limit
    ClearConcurrencyLimit {
        /// Pool of the queue
        #[arg(long, value_name = "POOL")]
        pool: String,
        /// Queue name
        name: String,
    },
    /// List the queues of a pool, or of every pool
    #[command(visible_alias = "list")]
    Ls {
        /// Only this pool's queues
        #[arg(long, value_name = "POOL")]
        pool: Option<String>,
    },
    /// Show a queue
    Inspect {
        /// Pool of the queue
        #[arg(long, value_name = "POOL")]
        pool: String,
        /// Queue name
        name: String,
    },
    /// Pause a queue: none of its runs is released until it is resumed
    Pause {
        /// Pool of the queue
        #[arg(long, value_name = "POOL")]
        pool: String,
        /// Queue name
        name: String,
    },
    /// Resume a paused queue
    Resume {
        /// Pool of the queue
        #[arg(long, value_name = "POOL")]
        pool: String,
        /// Queue name
        name: String,
    },
    /// Delete a queue (a pool's "default" queue cannot be deleted)
    Delete {
        /// Pool of the queue
        #[arg(long, value_name = "POOL")]
        pool: String,
        /// Queue name
        name: String,
    },
}

pub(crate) async fn execute(ctx: &Ctx, command: QueueCommand) -> Result<ExitCode, CliError> {
    let c = &ctx.client;
    match command {
        QueueCommand::Create {
            name,
            pool,
            priority,
            limit,
            description,
            late_after,
            late_action,
        } => {
            let mut body = Map::new();
            body.insert("name".into(), json!(name));
            if let Some(l) = late_after {
                body.insert("late_after_seconds".into(), json!(late_seconds(&l)?));
            }
            if let Some(a) = late_action {
                body.insert("late_action".into(), json!(a));
            }
            if let Some(p) = priority {
                body.insert("priority".into(), json!(p));
            }
            if let Some(n) = limit {
                body.insert("concurrency_limit".into(), json!(n));
            }
            if let Some(d) = description {
                body.insert("description".into(), json!(d));
            }
            let queue = c
                .post(&["pools", &pool, "queues"], Some(&Value::Object(body)))
                .await?
                .body;
            ctx.show(&queue, |q| {
                format!(
                    "Created queue {}/{} (priority {})",
                    str_of(q, "pool"),
                    str_of(q, "name"),
                    field(q, "priority")
                )
            })?;
        }
        QueueCommand::SetLatePolicy {
            pool,
            name,
            late_after,
            late_action,
        } => {
            let mut body = Map::new();
            match late_after.as_deref() {
                Some("default") => {
                    body.insert("late_after_seconds".into(), Value::Null);
                }
                Some(l) => {
                    body.insert("late_after_seconds".into(), json!(late_seconds(l)?));
                }
                None => {}
            }
            if let Some(a) = late_action {
                body.insert("late_action".into(), json!(a));
            }
            if body.is_empty() {
                return Err(CliError::Input {
                    arg: "--late-after".into(),
                    reason: "give --late-after, --late-action or both".into(),
                });
            }
            let queue = c
                .patch(&["pools", &pool, "queues", &name], &Value::Object(body))
                .await?;
            ctx.show(&queue, |q| {
                format!(
                    "Queue {}/{}: runs turn Late after {}, then are {}",
                    str_of(q, "pool"),
                    str_of(q, "name"),
                    match q.get("late_after_seconds").and_then(Value::as_u64) {
                        Some(s) => format!("{s} s"),
                        None => "the server's default".into(),
                    },
                    match str_of(q, "late_action") {
                        "cancel" => "cancelled",
                        _ => "kept",
                    }
                )
            })?;
        }
        QueueCommand::SetConcurrencyLimit { pool, name, limit } => {
            let body = json!({ "concurrency_limit": limit });
            let queue = c.patch(&["pools", &pool, "queues", &name], &body).await?;
            ctx.show(&queue, |q| {
                format!(
                    "Set the concurrency limit of queue {}/{} to {}",
                    str_of(q, "pool"),
                    str_of(q, "name"),
                    limit_text(q, "concurrency_limit")
                )
            })?;
        }
        QueueCommand::ClearConcurrencyLimit { pool, name } => {
            let body = json!({ "concurrency_limit": null });
            let queue = c.patch(&["pools", &pool, "queues", &name], &body).await?;
            ctx.show(&queue, |q| {
                format!(
                    "Cleared the concurrency limit of queue {}/{}",
                    str_of(q, "pool"),
                    str_of(q, "name")
                )
            })?;
        }
        QueueCommand::Ls { pool: Some(pool) } => {
            let list = c.get(&["pools", &pool, "queues"]).await?;
            ctx.show_list(&list, render_queues)?;
        }
        QueueCommand::Ls { pool: None } => {
            let pools = c.get(&["pools"]).await?;
            let mut all = Vec::new();
            for pool in items(&pools)? {
                let name = str_of(pool, "name");
                let list = match c.get(&["pools", name, "queues"]).await {
                    // Deleted since it was listed.
                    Err(CliError::Api { status: 404, .. }) => continue,
                    other => other?,
                };
                all.extend(items(&list)?.iter().cloned());
            }
            let list = json!({ "items": all });
            if ctx.json() {
                super::output::emit_json(&list)?;
            } else {
                emit(&render_queues(&all))?;
            }
        }
        QueueCommand::Inspect { pool, name } => {
            let queue = c.get(&["pools", &pool, "queues", &name]).await?;
            ctx.show(&queue, render_queue)?;
        }
        QueueCommand::Pause { pool, name } => {
            let queue = c
                .post(&["pools", &pool, "queues", &name, "pause"], None)
                .await?
                .body;
            ctx.show(&queue, |q| {
                format!("Paused queue {}/{}", str_of(q, "pool"), str_of(q, "name"))
            })?;
        }
        QueueCommand::Resume { pool, name } => {
            let queue = c
                .post(&["pools", &pool, "queues", &name, "resume"], None)
                .await?
                .body;
            ctx.show(&queue, |q| {
                format!("Resumed queue {}/{}", str_of(q, "pool"), str_of(q, "name"))
            })?;
        }
        QueueCommand::Delete { pool, name } => {
            c.delete(&["pools", &pool, "queues", &name]).await?;
            ctx.done(&format!("Deleted queue {pool}/{name}"))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `--late-after`: a duration in whole seconds.
fn late_seconds(text: &str) -> Result<u64, CliError> {
    crate::domain::schedule::parse_interval("--late-after", text).map_err(|e| CliError::Input {
        arg: "--late-after".into(),
        reason: e.reason,
    })
}

pub(crate) fn render_queues(queues: &[Value]) -> String {
    if queues.is_empty() {
        return "No queues.".to_string();
    }
    let rows = queues
        .iter()
        .map(|q| {
            vec![
                field(q, "pool"),
                field(q, "name"),
                field(q, "priority"),
                status_text(q),
                limit_text(q, "concurrency_limit"),
                field(q, "active_runs"),
                field(q, "queued_runs"),
                waiting_text(q),
                short_time(q, "created_at"),
                field(q, "description"),
            ]
        })
        .collect();
    table(
        &[
            "pool",
            "name",
            "priority",
            "status",
            "limit",
            "active",
            "queued",
            "waiting on",
            "created",
            "description",
        ],
        rows,
    )
}

fn render_queue(q: &Value) -> String {
    kv_block(&[
        ("pool", field(q, "pool")),
        ("name", field(q, "name")),
        ("priority", field(q, "priority")),
        ("status", status_text(q)),
        ("concurrency limit", limit_text(q, "concurrency_limit")),
        ("active runs", field(q, "active_runs")),
        ("queued runs", field(q, "queued_runs")),
        ("waiting on", waiting_text(q)),
        (
            "late after",
            match q.get("late_after_seconds").and_then(Value::as_u64) {
                Some(s) => format!("{s} s"),
                None => "the server's default".into(),
            },
        ),
        ("when late", field(q, "late_action")),
        ("description", field(q, "description")),
        ("created at", full_time(q, "created_at")),
    ])
}

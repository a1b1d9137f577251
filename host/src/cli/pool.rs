//! `weir pool ...`

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgGroup, Args, Subcommand, ValueEnum};
use serde_json::{Map, Value, json};

use super::input::read_json_file;
use super::output::{
    emit, field, full_time, kv_block, limit_text, pretty, short_time, str_of, table, waiting_text,
};
use super::{CliError, Ctx};

#[derive(Args, Debug)]
pub struct PoolArgs {
    #[command(subcommand)]
    pub command: PoolCommand,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolTypeArg {
    /// Runs jobs as local processes
    Process,
    /// Runs jobs as Kubernetes Jobs
    Kubernetes,
}

impl PoolTypeArg {
    pub fn as_str(self) -> &'static str {
        match self {
            PoolTypeArg::Process => "process",
            PoolTypeArg::Kubernetes => "kubernetes",
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum PoolCommand {
    /// Create a work pool
    Create {
        /// Pool name (lowercase letters, digits and '-')
        name: String,
        /// Infrastructure that runs the pool's jobs
        #[arg(long = "type", value_name = "TYPE", value_enum)]
        pool_type: PoolTypeArg,
        /// Base job template (JSON file); default: the type's default template
        #[arg(long, value_name = "FILE")]
        base_job_template: Option<PathBuf>,
        /// Kubernetes pools: a cluster connection named in the server's
        /// configuration ([kubernetes.clusters.NAME]); default: the server's
        /// default connection
        #[arg(long, value_name = "NAME")]
        cluster: Option<String>,
        /// Most runs of this pool active at once
        #[arg(long, value_name = "N")]
        concurrency_limit: Option<u32>,
        /// Free-form description
        #[arg(long, value_name = "TEXT")]
        description: Option<String>,
        /// Create the pool paused (no run is released until it is resumed)
        #[arg(long)]
        paused: bool,
    },
    /// Change a pool's base job template or description
    #[command(group(
        ArgGroup::new("changes")
            .required(true)
            .multiple(true)
            .args(["base_job_template", "description"])
    ))]
    Update {
        /// Pool name
        name: String,
        /// New base job template (JSON file)
        #[arg(long, value_name = "FILE")]
        base_job_template: Option<PathBuf>,
        /// New description
        #[arg(long, value_name = "TEXT")]
        description: Option<String>,
    },
    /// Limit how many runs of a pool are active at once
    SetConcurrencyLimit {
        /// Pool name
        name: String,
        /// Most runs of the pool active at once
        #[arg(value_name = "N")]
        limit: u32,
    },
    /// Remove a pool's concurrency limit
    ClearConcurrencyLimit {
        /// Pool name
        name: String,
    },
    /// Print (or write to a file) the default base job template of a pool type
    GetDefaultBaseJobTemplate {
        /// Pool type
        #[arg(long = "type", value_name = "TYPE", value_enum)]
        pool_type: PoolTypeArg,
        /// Write the template to FILE instead of printing it
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
    },
    /// List pools
    #[command(visible_alias = "list")]
    Ls,
    /// Show a pool
    Inspect {
        /// Pool name
        name: String,
    },
    /// Pause a pool: none of its runs is released until it is resumed
    Pause {
        /// Pool name
        name: String,
    },
    /// Resume a paused pool
    Resume {
        /// Pool name
        name: String,
    },
    /// Delete a pool with its queues
    Delete {
        /// Pool name
        name: String,
    },
    /// Bind an admission or mutator plugin to the pool
    Bind {
        /// Pool name
        pool: String,
        /// PLUGIN or PLUGIN@VERSION (pinned; otherwise the newest version)
        plugin: String,
        #[command(flatten)]
        options: super::plugin::BindOptions,
    },
    /// Remove a plugin binding from the pool
    Unbind {
        /// Pool name
        pool: String,
        /// Plugin name
        plugin: String,
        /// Only its binding in this mode [default: both]
        #[arg(long, value_enum)]
        mode: Option<super::plugin::ModeArg>,
    },
    /// List the pool's plugin bindings in order
    Bindings {
        /// Pool name
        pool: String,
    },
}

pub(crate) async fn execute(ctx: &Ctx, command: PoolCommand) -> Result<ExitCode, CliError> {
    let c = &ctx.client;
    match command {
        PoolCommand::Create {
            name,
            pool_type,
            base_job_template,
            cluster,
            concurrency_limit,
            description,
            paused,
        } => {
            let mut body = Map::new();
            body.insert("name".into(), json!(name));
            body.insert("type".into(), json!(pool_type.as_str()));
            if let Some(path) = base_job_template {
                body.insert(
                    "base_job_template".into(),
                    read_json_file(&path, "--base-job-template")?,
                );
            }
            if let Some(n) = concurrency_limit {
                body.insert("concurrency_limit".into(), json!(n));
            }
            if let Some(name) = cluster {
                body.insert("cluster".into(), json!(name));
            }
            if let Some(d) = description {
                body.insert("description".into(), json!(d));
            }
            if paused {
                body.insert("paused".into(), json!(true));
            }
            let pool = c.post(&["pools"], Some(&Value::Object(body))).await?.body;
            ctx.show(&pool, |p| {
                format!(
                    "Created {} pool {}{}",
                    str_of(p, "type"),
                    str_of(p, "name"),
                    if p.get("paused") == Some(&Value::Bool(true)) {
                        " (paused)"
                    } else {
                        ""
                    }
                )
            })?;
        }
        PoolCommand::Update {
            name,
            base_job_template,
            description,
        } => {
            let mut body = Map::new();
            if let Some(path) = base_job_template {
                body.insert(
                    "base_job_template".into(),
                    read_json_file(&path, "--base-job-template")?,
                );
            }
            if let Some(d) = description {
                body.insert("description".into(), json!(d));
            }
            let pool = c.patch(&["pools", &name], &Value::Object(body)).await?;
            ctx.show(&pool, |p| format!("Updated pool {}", str_of(p, "name")))?;
        }
        PoolCommand::SetConcurrencyLimit { name, limit } => {
            let body = json!({ "concurrency_limit": limit });
            let pool = c.patch(&["pools", &name], &body).await?;
            ctx.show(&pool, |p| {
                format!(
                    "Set the concurrency limit of pool {} to {}",
                    str_of(p, "name"),
                    limit_text(p, "concurrency_limit")
                )
            })?;
        }
        PoolCommand::ClearConcurrencyLimit { name } => {
            let body = json!({ "concurrency_limit": null });
            let pool = c.patch(&["pools", &name], &body).await?;
            ctx.show(&pool, |p| {
                format!(
                    "Cleared the concurrency limit of pool {}",
                    str_of(p, "name")
                )
            })?;
        }
        PoolCommand::GetDefaultBaseJobTemplate { pool_type, file } => {
            let template = c.get(&["base-job-templates", pool_type.as_str()]).await?;
            let text = pretty(&template) + "\n";
            match file {
                Some(path) => {
                    std::fs::write(&path, text).map_err(|source| CliError::WriteFile {
                        path: path.clone(),
                        source,
                    })?;
                    super::output::note(&format!(
                        "Wrote the default {} base job template to {}",
                        pool_type.as_str(),
                        path.display()
                    ));
                }
                None => emit(&text)?,
            }
        }
        PoolCommand::Ls => {
            let list = c.get(&["pools"]).await?;
            ctx.show_list(&list, render_pools)?;
        }
        PoolCommand::Inspect { name } => {
            let pool = c.get(&["pools", &name]).await?;
            ctx.show(&pool, render_pool)?;
        }
        PoolCommand::Pause { name } => {
            let pool = c.post(&["pools", &name, "pause"], None).await?.body;
            ctx.show(&pool, |p| format!("Paused pool {}", str_of(p, "name")))?;
        }
        PoolCommand::Resume { name } => {
            let pool = c.post(&["pools", &name, "resume"], None).await?.body;
            ctx.show(&pool, |p| format!("Resumed pool {}", str_of(p, "name")))?;
        }
        PoolCommand::Delete { name } => {
            c.delete(&["pools", &name]).await?;
            ctx.done(&format!("Deleted pool {name}"))?;
        }
        PoolCommand::Bind {
            pool,
            plugin,
            options,
        } => {
            let body = super::plugin::binding_body(&plugin, &options)?;
            let b = c
                .post(&["pools", &pool, "bindings"], Some(&body))
                .await?
                .body;
            ctx.show(&b, |b| {
                format!(
                    "Bound {} to pool {pool} (order {}, {})",
                    str_of(b, "plugin"),
                    field(b, "order"),
                    str_of(b, "on_error")
                )
            })?;
        }
        PoolCommand::Unbind { pool, plugin, mode } => {
            super::plugin::unbind(c, &["pools", &pool, "bindings", &plugin], mode).await?;
            ctx.done(&format!("Unbound {plugin} from pool {pool}"))?;
        }
        PoolCommand::Bindings { pool } => {
            let list = c.get(&["pools", &pool, "bindings"]).await?;
            ctx.show_list(&list, super::plugin::render_bindings)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn status_text(obj: &Value) -> String {
    match obj.get("paused").and_then(Value::as_bool) {
        Some(true) => "paused".to_string(),
        Some(false) => "ready".to_string(),
        None => "-".to_string(),
    }
}

pub(crate) fn render_pools(pools: &[Value]) -> String {
    if pools.is_empty() {
        return "No pools.".to_string();
    }
    let rows = pools
        .iter()
        .map(|p| {
            vec![
                field(p, "name"),
                field(p, "type"),
                status_text(p),
                limit_text(p, "concurrency_limit"),
                field(p, "active_runs"),
                field(p, "queued_runs"),
                waiting_text(p),
                short_time(p, "created_at"),
                field(p, "description"),
            ]
        })
        .collect();
    table(
        &[
            "name",
            "type",
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

fn render_pool(p: &Value) -> String {
    let template = p.get("base_job_template").unwrap_or(&Value::Null);
    let variables = template
        .get("variables")
        .and_then(|v| v.get("properties"))
        .and_then(Value::as_object)
        .map(|props| props.keys().cloned().collect::<Vec<_>>().join(", "))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "-".to_string());
    kv_block(&[
        ("name", field(p, "name")),
        ("type", field(p, "type")),
        ("cluster", field(p, "cluster")),
        ("status", status_text(p)),
        ("concurrency limit", limit_text(p, "concurrency_limit")),
        ("active runs", field(p, "active_runs")),
        ("queued runs", field(p, "queued_runs")),
        ("waiting on", waiting_text(p)),
        ("description", field(p, "description")),
        ("created at", full_time(p, "created_at")),
        ("updated at", full_time(p, "updated_at")),
        ("job variables", variables),
    ]) + "\n(-o json shows the whole base job template)"
}

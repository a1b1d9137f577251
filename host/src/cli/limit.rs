//! `weir limit ...`: tag concurrency limits.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::output::{field, full_time, kv_block, short_time, str_of, table};
use super::{CliError, Ctx};

#[derive(Args, Debug)]
pub struct LimitArgs {
    #[command(subcommand)]
    pub command: LimitCommand,
}

#[derive(Subcommand, Debug)]
pub enum LimitCommand {
    /// Allow at most N runs carrying TAG to be active at once
    Create {
        /// The tag (runs carrying it share the limit)
        tag: String,
        /// Most runs carrying the tag active at once
        #[arg(value_name = "N")]
        limit: u32,
    },
    /// List tag limits
    #[command(visible_alias = "list")]
    Ls,
    /// Show a tag limit
    Inspect {
        /// The limited tag
        tag: String,
    },
    /// Delete a tag limit
    Delete {
        /// The limited tag
        tag: String,
    },
}

pub(crate) async fn execute(ctx: &Ctx, command: LimitCommand) -> Result<ExitCode, CliError> {
    let c = &ctx.client;
    match command {
        LimitCommand::Create { tag, limit } => {
            let body = json!({ "tag": tag, "limit": limit });
            let created = c.post(&["limits"], Some(&body)).await?.body;
            ctx.show(&created, |l| {
                format!(
                    "Created limit {} for tag {}",
                    field(l, "limit"),
                    str_of(l, "tag")
                )
            })?;
        }
        LimitCommand::Ls => {
            let list = c.get(&["limits"]).await?;
            ctx.show_list(&list, render_limits)?;
        }
        LimitCommand::Inspect { tag } => {
            let limit = c.get(&["limits", &tag]).await?;
            ctx.show(&limit, |l| {
                kv_block(&[
                    ("tag", field(l, "tag")),
                    ("limit", field(l, "limit")),
                    ("active slots", field(l, "active_slots")),
                    ("created at", full_time(l, "created_at")),
                ])
            })?;
        }
        LimitCommand::Delete { tag } => {
            c.delete(&["limits", &tag]).await?;
            ctx.done(&format!("Deleted the limit for tag {tag}"))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn render_limits(limits: &[Value]) -> String {
    if limits.is_empty() {
        return "No tag limits.".to_string();
    }
    let rows = limits
        .iter()
        .map(|l| {
            vec![
                field(l, "tag"),
                field(l, "limit"),
                field(l, "active_slots"),
                short_time(l, "created_at"),
            ]
        })
        .collect();
    table(&["tag", "limit", "active", "created"], rows)
}

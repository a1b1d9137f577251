//! `weir deployment schedule ...`

use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::{Map, Value, json};

use super::input::{parse_job_variables, parse_params};
use super::output::{field, full_time, kv_block, str_of, table};
use super::{CliError, Ctx};

#[derive(Args, Debug)]
pub struct ScheduleArgs {
    #[command(subcommand)]
    pub command: ScheduleCommand,
}

#[derive(Subcommand, Debug)]
pub enum ScheduleCommand {
    /// Add a schedule to a deployment: cron in a time zone, a fixed
    /// interval, or one time. Its runs are created ahead of time, each once.
    #[command(group = clap::ArgGroup::new("when").required(true).args(["cron", "interval", "at"]))]
    Add {
        /// Schedule name (lowercase letters, digits and '-')
        name: String,
        /// The deployment whose runs it creates
        #[arg(long, value_name = "DEPLOYMENT")]
        deployment: String,
        /// Five cron fields (minute hour day-of-month month day-of-week), e.g.
        /// '0 2 * * *', or a nickname (@daily)
        #[arg(long, value_name = "EXPR")]
        cron: Option<String>,
        /// The IANA time zone the cron expression is read in [default: UTC]
        #[arg(long, value_name = "ZONE", requires = "cron")]
        timezone: Option<String>,
        /// Every so often: 30s, 15m, 2h, 1d
        #[arg(long, value_name = "DURATION")]
        interval: Option<String>,
        /// When an interval's times are counted from (RFC 3339) [default: now]
        #[arg(long, value_name = "TIME", requires = "interval")]
        anchor: Option<String>,
        /// Once, at this time (RFC 3339, e.g. 2026-12-24T18:00:00Z)
        #[arg(long, value_name = "TIME")]
        at: Option<String>,
        /// Parameter KEY=VALUE of its runs (repeatable); VALUE is JSON if it parses, else a string
        #[arg(long = "param", value_name = "KEY=VALUE")]
        params: Vec<String>,
        /// Job variables of its runs: inline JSON object, or @FILE
        #[arg(long, value_name = "JSON|@FILE")]
        job_variables: Option<String>,
        /// Times missed while Weir was down: none get a run, the latest does,
        /// or all do [default: none]
        #[arg(long, value_name = "POLICY", value_parser = ["none", "latest", "all"])]
        catchup: Option<String>,
        /// Add it paused
        #[arg(long)]
        paused: bool,
    },
    /// List schedules, with their next times
    #[command(visible_alias = "list")]
    Ls {
        /// Only this deployment's schedules
        #[arg(long, value_name = "DEPLOYMENT")]
        deployment: Option<String>,
    },
    /// Show a schedule
    Inspect {
        /// Schedule name
        name: String,
        #[arg(long, value_name = "DEPLOYMENT")]
        deployment: String,
    },
    /// Pause a schedule: its runs not yet released are cancelled and no more
    /// are created until it is resumed
    Pause {
        /// Schedule name
        name: String,
        #[arg(long, value_name = "DEPLOYMENT")]
        deployment: String,
    },
    /// Resume a schedule: runs are created again from its next time (paused
    /// times are not caught up)
    Resume {
        /// Schedule name
        name: String,
        #[arg(long, value_name = "DEPLOYMENT")]
        deployment: String,
    },
    /// Remove a schedule; its runs not yet released are cancelled
    #[command(visible_alias = "delete")]
    Rm {
        /// Schedule name
        name: String,
        #[arg(long, value_name = "DEPLOYMENT")]
        deployment: String,
    },
}

pub(crate) async fn execute(ctx: &Ctx, command: ScheduleCommand) -> Result<ExitCode, CliError> {
    let c = &ctx.client;
    match command {
        ScheduleCommand::Add {
            name,
            deployment,
            cron,
            timezone,
            interval,
            anchor,
            at,
            params,
            job_variables,
            catchup,
            paused,
        } => {
            let mut body = Map::new();
            body.insert("name".into(), json!(name));
            for (key, value) in [
                ("cron", cron),
                ("timezone", timezone),
                ("interval", interval),
                ("anchor", anchor),
                ("at", at),
                ("catchup", catchup),
            ] {
                if let Some(v) = value {
                    body.insert(key.into(), json!(v));
                }
            }
            if let Some(p) = parse_params(&params)? {
                body.insert("parameters".into(), Value::Object(p));
            }
            if let Some(raw) = job_variables {
                body.insert(
                    "job_variables".into(),
                    Value::Object(parse_job_variables(&raw)?),
                );
            }
            if paused {
                body.insert("paused".into(), json!(true));
            }
            let s = c
                .post(
                    &["deployments", &deployment, "schedules"],
                    Some(&Value::Object(body)),
                )
                .await?
                .body;
            ctx.show(&s, |s| {
                format!(
                    "Added schedule {} to deployment {} ({}); next: {}",
                    str_of(s, "name"),
                    str_of(s, "deployment"),
                    when_text(s),
                    next_text(s)
                )
            })?;
        }
        ScheduleCommand::Ls { deployment } => {
            let list = match &deployment {
                Some(d) => c.get(&["deployments", d, "schedules"]).await?,
                None => c.get(&["schedules"]).await?,
            };
            ctx.show_list(&list, render_schedules)?;
        }
        ScheduleCommand::Inspect { name, deployment } => {
            let s = c
                .get(&["deployments", &deployment, "schedules", &name])
                .await?;
            ctx.show(&s, render_schedule)?;
        }
        ScheduleCommand::Pause { name, deployment } => {
            let s = c
                .post(
                    &["deployments", &deployment, "schedules", &name, "pause"],
                    None,
                )
                .await?
                .body;
            ctx.show(&s, |s| {
                format!(
                    "Paused schedule {} of deployment {}",
                    str_of(s, "name"),
                    str_of(s, "deployment")
                )
            })?;
        }
        ScheduleCommand::Resume { name, deployment } => {
            let s = c
                .post(
                    &["deployments", &deployment, "schedules", &name, "resume"],
                    None,
                )
                .await?
                .body;
            ctx.show(&s, |s| {
                format!(
                    "Resumed schedule {} of deployment {}; next: {}",
                    str_of(s, "name"),
                    str_of(s, "deployment"),
                    next_text(s)
                )
            })?;
        }
        ScheduleCommand::Rm { name, deployment } => {
            c.delete(&["deployments", &deployment, "schedules", &name])
                .await?;
            ctx.done(&format!(
                "Removed schedule {name} of deployment {deployment}"
            ))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `cron '0 2 * * *' (Europe/Paris)`, `every 30 s`, `once at …`.
fn when_text(s: &Value) -> String {
    match str_of(s, "kind") {
        "cron" => format!("cron '{}' ({})", str_of(s, "cron"), str_of(s, "timezone")),
        "interval" => format!("every {} s", field(s, "interval_seconds")),
        "once" => format!("once at {}", str_of(s, "at")),
        other => other.to_owned(),
    }
}

fn next_text(s: &Value) -> String {
    let next: Vec<&str> = s
        .get("next_times")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    match next.first() {
        Some(t) => (*t).to_owned(),
        None if s.get("paused").and_then(Value::as_bool) == Some(true) => "paused".into(),
        None => "none".into(),
    }
}

fn render_schedules(items: &[Value]) -> String {
    if items.is_empty() {
        return "No schedules.".to_string();
    }
    let rows = items
        .iter()
        .map(|s| {
            vec![
                str_of(s, "deployment").to_owned(),
                str_of(s, "name").to_owned(),
                when_text(s),
                str_of(s, "catchup").to_owned(),
                if s.get("paused").and_then(Value::as_bool) == Some(true) {
                    "paused".into()
                } else {
                    "active".into()
                },
                next_text(s),
            ]
        })
        .collect();
    table(
        &["deployment", "name", "when", "catchup", "status", "next"],
        rows,
    )
}

fn render_schedule(s: &Value) -> String {
    let next: Vec<String> = s
        .get("next_times")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    kv_block(&[
        ("deployment", field(s, "deployment")),
        ("name", field(s, "name")),
        ("when", when_text(s)),
        ("catch-up", field(s, "catchup")),
        (
            "status",
            if s.get("paused").and_then(Value::as_bool) == Some(true) {
                "paused".into()
            } else {
                "active".into()
            },
        ),
        (
            "next times",
            if next.is_empty() {
                "none".into()
            } else {
                next.join(", ")
            },
        ),
        ("runs created through", full_time(s, "created_through")),
        ("parameters", field(s, "parameters")),
        ("job variables", field(s, "job_variables")),
        ("created at", full_time(s, "created_at")),
    ])
}

//! The `weir` command line: `weir serve` (run by `main` itself) and the
//! client commands for pools, queues, tag limits, deployments and runs.
//!
//! The client talks to the server only over HTTP (`/api/v1`, see
//! `api/openapi.json`) and works on `serde_json::Value`, so it does not depend
//! on the server's types. Human output is compact tables and key/value
//! blocks; `-o json` prints the server's JSON.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::Value;

mod client;
mod deployment;
mod error;
mod input;
mod limit;
mod new;
mod output;
mod plugin;
mod pool;
mod queue;
mod run;
mod schedule;
#[cfg(test)]
mod tests;
mod token;

pub(crate) use deployment::DeploymentArgs;
pub(crate) use error::CliError;
pub(crate) use limit::LimitArgs;
pub(crate) use plugin::{PluginArgs, PluginCommand, RouterArgs};
pub(crate) use pool::PoolArgs;
pub(crate) use queue::QueueArgs;
pub(crate) use run::RunArgs;
pub(crate) use token::TokenArgs;

/// The default server URL, also the default `--listen` of `weir serve`.
pub(crate) const DEFAULT_API_URL: &str = "http://127.0.0.1:4680";

/// Weir: a job dispatcher with work pools, work queues, deployments and runs.
#[derive(Parser, Debug)]
#[command(name = "weir", version, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command accepts.
#[derive(Args, Debug, Clone)]
pub struct GlobalArgs {
    /// URL of the Weir server
    #[arg(
        long = "api",
        value_name = "URL",
        env = "WEIR_API_URL",
        default_value = DEFAULT_API_URL,
        global = true,
        help_heading = "Global options"
    )]
    pub api: String,

    /// Output format: human-readable tables, or the server's JSON
    #[arg(
        short = 'o',
        long = "output",
        value_enum,
        default_value_t = OutputFormat::Table,
        global = true,
        help_heading = "Global options"
    )]
    pub output: OutputFormat,

    /// API token, sent as `Authorization: Bearer` [default: $WEIR_TOKEN,
    /// else $WEIR_RUN_TOKEN, which Weir gives every job]
    #[arg(
        long = "token",
        value_name = "TOKEN",
        env = "WEIR_TOKEN",
        hide_env_values = true,
        global = true,
        help_heading = "Global options"
    )]
    pub token: Option<String>,

    /// PEM certificate to trust for an https:// server (e.g. a self-signed one)
    #[arg(
        long = "ca-cert",
        value_name = "FILE",
        env = "WEIR_CA_CERT",
        global = true,
        help_heading = "Global options"
    )]
    pub ca_cert: Option<PathBuf>,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    Table,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the Weir server (API, scheduler and launcher)
    Serve(ServeArgs),
    /// Manage work pools
    Pool(PoolArgs),
    /// Manage work queues inside a pool
    Queue(QueueArgs),
    /// Manage tag concurrency limits
    Limit(LimitArgs),
    /// Manage deployments
    Deployment(DeploymentArgs),
    /// Create, list, inspect, follow and cancel runs
    Run(RunArgs),
    /// Upload, list, inspect, delete and test WebAssembly plugins
    Plugin(PluginArgs),
    /// Manage the global router plugin chain
    Router(RouterArgs),
    /// Create, list and revoke API tokens (opens the server's store directly)
    Token(TokenArgs),
    /// Launch the supervisors of process runs' attempts (started by `weir serve`)
    #[command(hide = true)]
    Supervise(SuperviseArgs),
}

/// `weir supervise <RUNS_DIR>`: the host's requests on stdin.
#[derive(Args, Debug, Clone)]
pub struct SuperviseArgs {
    /// The runs' directory, `<data>/runs`
    pub runs_dir: PathBuf,
}

#[derive(Args, Debug, Clone, Default)]
pub struct ServeArgs {
    /// Configuration file (TOML)
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Directory for the database and run logs
    #[arg(long, value_name = "DIR", env = "WEIR_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// Keep state in PostgreSQL (postgres://USER:PASSWORD@HOST:PORT/DATABASE)
    /// [default: the embedded SQLite file in the data directory]
    #[arg(
        long,
        value_name = "URL",
        env = "WEIR_DATABASE_URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,

    /// Address to listen on [default: 127.0.0.1:4680]
    #[arg(long, value_name = "ADDR", env = "WEIR_LISTEN")]
    pub listen: Option<SocketAddr>,

    /// The server URL that jobs receive in WEIR_API_URL
    #[arg(long = "advertise-url", value_name = "URL", env = "WEIR_ADVERTISE_URL")]
    pub api_url: Option<String>,

    /// Kubeconfig of the default cluster connection [default: in-cluster in
    /// a pod, else $KUBECONFIG or ~/.kube/config]
    #[arg(long, value_name = "FILE", env = "WEIR_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,

    /// Context of that kubeconfig [default: its current context]
    #[arg(long, value_name = "NAME", env = "WEIR_KUBE_CONTEXT")]
    pub kube_context: Option<String>,

    /// Require API tokens: on, off, or auto (on unless listening on
    /// loopback only) [default: auto]
    #[arg(long, value_name = "MODE", env = "WEIR_AUTH", value_parser = ["on", "off", "auto"])]
    pub auth: Option<String>,

    /// PEM certificate chain: serve HTTPS (with --tls-key)
    #[arg(long, value_name = "FILE", env = "WEIR_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key for --tls-cert
    #[arg(long, value_name = "FILE", env = "WEIR_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

/// What every client command gets: the HTTP client and the output format.
pub(crate) struct Ctx {
    pub client: client::Client,
    pub output: OutputFormat,
}

impl Ctx {
    pub(crate) fn json(&self) -> bool {
        self.output == OutputFormat::Json
    }

    /// Prints `value` as JSON in `-o json` mode, else the human text.
    pub(crate) fn show(
        &self,
        value: &Value,
        human: impl FnOnce(&Value) -> String,
    ) -> Result<(), CliError> {
        if self.json() {
            output::emit_json(value)
        } else {
            output::emit(&human(value))
        }
    }

    /// Prints a list answer `{"items": [...]}`: as JSON, or rendered.
    pub(crate) fn show_list(
        &self,
        list: &Value,
        render: fn(&[Value]) -> String,
    ) -> Result<(), CliError> {
        if self.json() {
            output::emit_json(list)
        } else {
            output::emit(&render(output::items(list)?))
        }
    }

    /// A confirmation for a command whose answer has no body (delete): printed
    /// in table mode only, so `-o json` prints nothing.
    pub(crate) fn done(&self, message: &str) -> Result<(), CliError> {
        if self.json() {
            Ok(())
        } else {
            output::emit(message)
        }
    }
}

/// Runs every command except `serve` (which `main` runs itself) and returns
/// the process exit code: 0 on success; for `run create --wait`, the code of
/// the run's terminal state (see [`exit_code_for_state`]). Errors are returned
/// for `main` to print as `error: {err}` and exit with 1.
pub async fn execute(global: GlobalArgs, command: Command) -> Result<ExitCode, CliError> {
    if let Command::Serve(_) = command {
        return Err(CliError::NotAClientCommand("serve"));
    }
    if let Command::Plugin(PluginArgs {
        command: test @ PluginCommand::Test { .. },
    }) = command
    {
        return plugin::test_offline(test, global.output == OutputFormat::Json).await;
    }
    if let Command::Plugin(PluginArgs {
        command:
            PluginCommand::New {
                name,
                lang,
                world,
                dir,
            },
    }) = command
    {
        return new::execute(&name, lang, world, dir, global.output == OutputFormat::Json);
    }
    let command = match command {
        Command::Token(args) => return token::execute(args, global.output).await,
        other => other,
    };
    // A job has WEIR_RUN_TOKEN; a person's WEIR_TOKEN / --token wins.
    let token = global
        .token
        .clone()
        .or_else(|| std::env::var("WEIR_RUN_TOKEN").ok())
        .filter(|t| !t.is_empty());
    let ctx = Ctx {
        client: client::Client::new(&global.api, token.as_deref(), global.ca_cert.as_deref())?,
        output: global.output,
    };
    match command {
        Command::Serve(_) => Err(CliError::NotAClientCommand("serve")),
        Command::Supervise(_) => Err(CliError::NotAClientCommand("supervise")),
        Command::Pool(args) => pool::execute(&ctx, args.command).await,
        Command::Queue(args) => queue::execute(&ctx, args.command).await,
        Command::Limit(args) => limit::execute(&ctx, args.command).await,
        Command::Deployment(args) => deployment::execute(&ctx, args.command).await,
        Command::Run(args) => run::execute(&ctx, args.command).await,
        Command::Plugin(args) => plugin::execute(&ctx, args.command).await,
        Command::Router(args) => plugin::execute_router(&ctx, args.command).await,
        Command::Token(_) => Err(CliError::NotAClientCommand("token")),
    }
}

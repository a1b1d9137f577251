//! `weir token ...`: create, list and revoke API tokens.
//!
//! These commands open the store directly (the same `--config`,
//! `--data-dir` and `--database-url` resolution as `weir serve`), not the
//! API: whoever can read the server's data can bootstrap the first admin
//! token, and nobody else can without one.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};

use super::output::{field, kv_block, short_time, table};
use super::{CliError, OutputFormat, output};
use crate::auth::{Authenticator, NewToken, Role};
use crate::domain::validate_dns_label;
use crate::server::{Database, ServeOptions};
use crate::store::Store;

#[derive(Args, Debug)]
pub struct TokenArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(subcommand)]
    pub command: TokenCommand,
}

/// Where the server keeps its state (as for `weir serve`).
#[derive(Args, Debug, Clone, Default)]
pub struct StoreArgs {
    /// The server's configuration file (TOML)
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// The server's data directory
    #[arg(long, value_name = "DIR", env = "WEIR_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// The server's PostgreSQL database
    #[arg(
        long,
        value_name = "URL",
        env = "WEIR_DATABASE_URL",
        hide_env_values = true,
        global = true
    )]
    pub database_url: Option<String>,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleArg {
    Admin,
    Operator,
    Submitter,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Self {
        match r {
            RoleArg::Admin => Role::Admin,
            RoleArg::Operator => Role::Operator,
            RoleArg::Submitter => Role::Submitter,
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Create a token and print it (once: only its hash is stored)
    Create {
        /// admin: everything; operator: queues, deployments, cancel;
        /// submitter: create and read runs of its team and pools
        #[arg(long, value_enum)]
        role: RoleArg,
        /// Submitters: only deployments of this team
        #[arg(long, value_name = "TEAM")]
        team: Option<String>,
        /// Submitters: only runs in this pool (repeatable)
        #[arg(long = "pool", value_name = "POOL")]
        pools: Vec<String>,
        /// A name to recognise the token by
        #[arg(long, default_value = "")]
        name: String,
    },
    /// List tokens (never their secret)
    #[command(visible_alias = "list")]
    Ls,
    /// Revoke a token: it is refused from the next request on
    Revoke {
        /// The token's id (from `weir token ls`)
        id: String,
    },
}

pub(crate) async fn execute(args: TokenArgs, format: OutputFormat) -> Result<ExitCode, CliError> {
    let store = open_store(&args.store).await?;
    let json_out = format == OutputFormat::Json;
    match args.command {
        TokenCommand::Create {
            role,
            team,
            pools,
            name,
        } => {
            let new = validate(role.into(), team, pools, name)?;
            let (record, text) = Authenticator::create_token(store.as_ref(), new)
                .await
                .map_err(|e| CliError::Token(e.to_string()))?;
            if json_out {
                let mut value = serde_json::to_value(&record).unwrap_or(Value::Null);
                value["token"] = json!(text);
                output::emit_json(&value)?;
            } else {
                output::note(&format!(
                    "created {} token {}; it is shown only now, keep it safe:",
                    record.role.as_str(),
                    record.id
                ));
                output::emit(&text)?;
            }
        }
        TokenCommand::Ls => {
            let tokens = store
                .list_tokens()
                .await
                .map_err(|e| CliError::Token(e.to_string()))?;
            let items: Vec<Value> = tokens
                .iter()
                .map(|t| serde_json::to_value(t).unwrap_or(Value::Null))
                .collect();
            if json_out {
                output::emit_json(&json!({ "items": items }))?;
            } else {
                output::emit(&render_tokens(&items))?;
            }
        }
        TokenCommand::Revoke { id } => {
            let record = store
                .revoke_token(&id)
                .await
                .map_err(|e| CliError::Token(e.to_string()))?;
            let value = serde_json::to_value(&record).unwrap_or(Value::Null);
            if json_out {
                output::emit_json(&value)?;
            } else {
                output::emit(&kv_block(&[
                    ("revoked", field(&value, "id")),
                    ("at", field(&value, "revoked_at")),
                ]))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Checks `weir token create`'s input, naming the flag at fault.
fn validate(
    role: Role,
    team: Option<String>,
    pools: Vec<String>,
    name: String,
) -> Result<NewToken, CliError> {
    if let Some(t) = &team {
        validate_dns_label("team", t).map_err(|e| CliError::input("--team", e.reason))?;
    }
    for p in &pools {
        validate_dns_label("pool", p).map_err(|e| CliError::input("--pool", e.reason))?;
    }
    if name.len() > 256 {
        return Err(CliError::input("--name", "must be at most 256 bytes"));
    }
    match role {
        Role::Submitter if team.is_none() && pools.is_empty() => Err(CliError::input(
            "--role",
            "a submitter token needs --team or --pool (or both): they say which runs it may create",
        )),
        Role::Admin | Role::Operator if team.is_some() || !pools.is_empty() => {
            Err(CliError::input(
                if team.is_some() { "--team" } else { "--pool" },
                format!(
                    "only submitter tokens are limited to a team or pools; a {} token is not",
                    role.as_str()
                ),
            ))
        }
        _ => Ok(NewToken {
            name,
            role,
            team,
            pools,
        }),
    }
}

async fn open_store(args: &StoreArgs) -> Result<std::sync::Arc<dyn Store>, CliError> {
    let fail = |e: crate::server::ServeError| CliError::Token(e.to_string());
    let mut options =
        ServeOptions::resolve(args.config.as_deref(), args.data_dir.clone(), None, None)
            .map_err(fail)?;
    if let Some(url) = &args.database_url {
        options.database = Database::from_url(url).map_err(fail)?;
    }
    if options.database == Database::Embedded {
        let db = options.data_dir.join("weir.db");
        if !db.exists() {
            return Err(CliError::Token(format!(
                "no Weir database at {}; point --data-dir (or --config, --database-url) \
                 at the server's",
                db.display()
            )));
        }
    }
    options.database.open(&options.data_dir).await.map_err(fail)
}

fn render_tokens(tokens: &[Value]) -> String {
    if tokens.is_empty() {
        return "No tokens.".to_string();
    }
    let rows = tokens
        .iter()
        .map(|t| {
            let pools = t["pools"]
                .as_array()
                .map(|p| {
                    p.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            vec![
                field(t, "id"),
                field(t, "name"),
                field(t, "role"),
                field(t, "team"),
                pools,
                format!("{}…", field(t, "prefix")),
                short_time(t, "created_at"),
                if t["revoked_at"].is_null() {
                    String::new()
                } else {
                    short_time(t, "revoked_at")
                },
            ]
        })
        .collect();
    table(
        &[
            "id", "name", "role", "team", "pools", "token", "created", "revoked",
        ],
        rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_input_errors_name_the_flag() {
        let arg = |r: Result<NewToken, CliError>| match r {
            Err(CliError::Input { arg, .. }) => arg,
            other => panic!("expected an input error, got {other:?}"),
        };
        assert_eq!(
            arg(validate(Role::Submitter, None, vec![], String::new())),
            "--role"
        );
        assert_eq!(
            arg(validate(
                Role::Submitter,
                Some("Bad Team".into()),
                vec![],
                String::new()
            )),
            "--team"
        );
        assert_eq!(
            arg(validate(
                Role::Submitter,
                None,
                vec!["no pool!".into()],
                String::new()
            )),
            "--pool"
        );
        assert_eq!(
            arg(validate(
                Role::Admin,
                Some("a".into()),
                vec![],
                String::new()
            )),
            "--team"
        );
        assert_eq!(
            arg(validate(
                Role::Operator,
                None,
                vec!["p".into()],
                String::new()
            )),
            "--pool"
        );
        assert_eq!(
            arg(validate(Role::Admin, None, vec![], "x".repeat(300))),
            "--name"
        );
        assert!(validate(Role::Submitter, Some("a".into()), vec![], String::new()).is_ok());
        assert!(validate(Role::Admin, None, vec![], "ops".into()).is_ok());
    }
}

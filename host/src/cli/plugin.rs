//! `weir plugin ...`, `weir router ...` and the binding options shared with
//! `weir pool bind`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};

use super::input::read_json_file;
use super::new::{Lang, WorldArg};
use super::output::{field, full_time, kv_block, str_of, table};
use super::{CliError, Ctx};
use crate::plugin::{FixedStats, Limits, Lookup, Mutated, PluginRuntime, RunContext, World};

#[derive(Args, Debug)]
pub struct PluginArgs {
    #[command(subcommand)]
    pub command: PluginCommand,
}

#[derive(Subcommand, Debug)]
pub enum PluginCommand {
    /// Upload a component; a new version of NAME if NAME exists
    Add {
        /// Plugin name (lowercase letters, digits and '-')
        name: String,
        /// The component (.wasm)
        file: PathBuf,
    },
    /// List plugins (newest version of each)
    #[command(visible_alias = "list")]
    Ls,
    /// Show a plugin's versions, digests, world and bindings
    Inspect { name: String },
    /// Delete a plugin and all its versions (refused while bound)
    Rm { name: String },
    /// Run a plugin offline with the same limits, and print its decision or
    /// the patched job
    Test {
        /// The component (.wasm)
        file: PathBuf,
        /// The run context (JSON): run_id, deployment, pool, queue, tags,
        /// labels, parameters, job_variables, parent_run
        #[arg(long = "ctx", value_name = "FILE")]
        ctx: PathBuf,
        /// The job to mutate (JSON), for mutator plugins
        #[arg(long, value_name = "FILE")]
        job: Option<PathBuf>,
        /// The binding's config (JSON); default {}
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// What the plugin may ask (JSON): counts for `pool`, `queue`,
        /// `tags` {TAG: counts}, `labels` {KEY: {VALUE: counts}} (counts are
        /// {"running": N, "queued": N}), and `pool_type`; default all zero,
        /// process
        #[arg(long, value_name = "FILE")]
        stats: Option<PathBuf>,
        #[arg(long, value_name = "MS", default_value_t = 50)]
        deadline_ms: u32,
        #[arg(long, value_name = "MB", default_value_t = 64)]
        memory_mb: u32,
        /// Where compiled components are kept, by digest, so testing the
        /// same component again skips compiling it (a Python or JavaScript
        /// one takes seconds to tens of seconds) [default:
        /// $XDG_CACHE_HOME/weir/plugin-test, else ~/.cache/weir/plugin-test].
        /// A server's own is DATA_DIR/plugin-cache
        #[arg(long, value_name = "DIR")]
        cache_dir: Option<PathBuf>,
    },
    /// Judge again the decisions NAME made, with another version or a
    /// component not stored, on the inputs recorded with them: offline, no
    /// run changes. Prints per run "same" or the difference, then counts
    #[command(disable_version_flag = true)]
    Replay {
        name: String,
        /// A stored version of NAME
        #[arg(
            long = "version",
            id = "candidate_version",
            value_name = "VERSION",
            required_unless_present = "file",
            conflicts_with = "file"
        )]
        version: Option<u32>,
        /// A component (.wasm), not stored
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
        /// Only decisions about runs in this pool
        #[arg(long)]
        pool: Option<String>,
        /// Only decisions since: an RFC 3339 time or an age (90m, 12h, 7d)
        #[arg(long, value_name = "WHEN")]
        since: Option<String>,
        /// The newest this many decisions (at most 10000)
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// The candidate's config instead of each decision's own: inline
        /// JSON or @FILE
        #[arg(long, value_name = "JSON|@FILE")]
        config: Option<String>,
    },
    /// Write a new plugin project (source, SDK, samples, a test, its build)
    /// that builds with one command and runs in `weir plugin test`
    New {
        /// Plugin name (lowercase letters, digits and '-'); the component is
        /// NAME.wasm
        name: String,
        /// Its language
        #[arg(long, value_enum)]
        lang: Lang,
        /// Its world
        #[arg(long, value_enum)]
        world: WorldArg,
        /// Where to write it (must not exist or be empty); default ./NAME
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

#[derive(Args, Debug)]
pub struct RouterArgs {
    #[command(subcommand)]
    pub command: RouterCommand,
}

#[derive(Subcommand, Debug)]
pub enum RouterCommand {
    /// Add a router plugin to the global router chain
    Bind {
        /// PLUGIN or PLUGIN@VERSION (pinned)
        plugin: String,
        #[command(flatten)]
        options: BindOptions,
    },
    /// Remove a router plugin from the chain
    Unbind {
        plugin: String,
        /// Only its binding in this mode [default: both]
        #[arg(long, value_enum)]
        mode: Option<ModeArg>,
    },
    /// List the router chain in order
    #[command(visible_alias = "list")]
    Ls,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnErrorArg {
    FailClosed,
    FailOpen,
}

/// `--mode`: whether a binding's decisions count.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModeArg {
    /// Its decisions count
    Enforce,
    /// It judges live runs, its decisions are recorded, it never changes a run
    Shadow,
}

impl ModeArg {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ModeArg::Enforce => "enforce",
            ModeArg::Shadow => "shadow",
        }
    }
}

/// A DELETE of a binding, of one mode or (`None`) of both.
pub(crate) async fn unbind(
    c: &super::client::Client,
    segments: &[&str],
    mode: Option<ModeArg>,
) -> Result<(), CliError> {
    let mut url = c.url(segments);
    if let Some(m) = mode {
        url.query_pairs_mut().append_pair("mode", m.as_str());
    }
    c.send(reqwest::Method::DELETE, url, None).await?;
    Ok(())
}

/// Options of a binding, shared by `pool bind` and `router bind`.
#[derive(Args, Debug, Clone)]
pub struct BindOptions {
    /// The plugin's config: inline JSON or @FILE
    #[arg(long, value_name = "JSON|@FILE")]
    pub config: Option<String>,
    /// Position in the chain (lower runs first); default: after the others
    #[arg(long)]
    pub order: Option<i32>,
    /// What a plugin failure does to the run [default: fail-closed]
    #[arg(long, value_enum)]
    pub on_error: Option<OnErrorArg>,
    /// Time limit per decision, 1 to 2000 [default: 50]
    #[arg(long, value_name = "MS")]
    pub deadline_ms: Option<u32>,
    /// Memory limit per decision, 1 to 64 [default: 64]
    #[arg(long, value_name = "MB")]
    pub memory_mb: Option<u32>,
    /// shadow: judge live runs and record the decisions, never change a run;
    /// enforce on a plugin bound in shadow promotes that binding
    /// [default: enforce]
    #[arg(long, value_enum)]
    pub mode: Option<ModeArg>,
}

/// `PLUGIN[@VERSION]`.
fn parse_plugin_ref(raw: &str) -> Result<(String, Option<u32>), CliError> {
    match raw.split_once('@') {
        None => Ok((raw.to_owned(), None)),
        Some((name, v)) => {
            let version = v.parse::<u32>().map_err(|_| {
                CliError::input(
                    "PLUGIN",
                    format!("{v:?} is not a version number (PLUGIN@N)"),
                )
            })?;
            Ok((name.to_owned(), Some(version)))
        }
    }
}

fn parse_config(raw: &str) -> Result<Value, CliError> {
    match raw.strip_prefix('@') {
        Some(path) => read_json_file(Path::new(path), "--config"),
        None => serde_json::from_str(raw)
            .map_err(|e| CliError::input("--config", format!("not valid JSON: {e}"))),
    }
}

/// The JSON body of a binding request.
pub(crate) fn binding_body(plugin: &str, options: &BindOptions) -> Result<Value, CliError> {
    let (name, version) = parse_plugin_ref(plugin)?;
    let mut body = json!({ "plugin": name });
    if let Some(v) = version {
        body["version"] = json!(v);
    }
    if let Some(c) = &options.config {
        body["config"] = parse_config(c)?;
    }
    if let Some(o) = options.order {
        body["order"] = json!(o);
    }
    if let Some(e) = options.on_error {
        body["on_error"] = json!(match e {
            OnErrorArg::FailClosed => "fail-closed",
            OnErrorArg::FailOpen => "fail-open",
        });
    }
    if let Some(d) = options.deadline_ms {
        body["deadline_ms"] = json!(d);
    }
    if let Some(m) = options.memory_mb {
        body["memory_mb"] = json!(m);
    }
    if let Some(m) = options.mode {
        body["mode"] = json!(m.as_str());
    }
    Ok(body)
}

pub(crate) fn render_bindings(items: &[Value]) -> String {
    if items.is_empty() {
        return "No bindings.".into();
    }
    table(
        &[
            "ORDER", "PLUGIN", "VERSION", "MODE", "ON ERROR", "DEADLINE", "MEMORY", "CONFIG",
        ],
        items
            .iter()
            .map(|b| {
                vec![
                    field(b, "order"),
                    str_of(b, "plugin").to_owned(),
                    match b.get("pinned_version") {
                        Some(Value::Number(n)) => n.to_string(),
                        _ => "newest".into(),
                    },
                    str_of(b, "mode").to_owned(),
                    str_of(b, "on_error").to_owned(),
                    format!("{} ms", field(b, "deadline_ms")),
                    format!("{} MiB", field(b, "memory_mb")),
                    b.get("config").map(Value::to_string).unwrap_or_default(),
                ]
            })
            .collect(),
    )
}

fn render_plugins(items: &[Value]) -> String {
    if items.is_empty() {
        return "No plugins.".into();
    }
    table(
        &["NAME", "WORLD", "VERSION", "DIGEST", "SIZE", "BINDINGS"],
        items
            .iter()
            .map(|p| {
                vec![
                    str_of(p, "name").to_owned(),
                    str_of(p, "world").to_owned(),
                    field(p, "version"),
                    str_of(p, "digest").chars().take(19).collect(),
                    field(p, "size"),
                    field(p, "bindings"),
                ]
            })
            .collect(),
    )
}

/// A replay report: a line per run, then the counts.
fn render_replay(r: &Value) -> String {
    let runs = r["runs"].as_array().cloned().unwrap_or_default();
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|l| {
            let outcome = if let Some(why) = l["not_replayable"].as_str() {
                format!("not replayable: {why}")
            } else if l["same"] == true {
                "same".into()
            } else {
                let mut text = str_of(l, "change").to_owned();
                if let Some(diff) = l.get("job_diff") {
                    text.push_str(&format!("; job diff {diff}"));
                }
                text
            };
            vec![
                str_of(l, "run_id").to_owned(),
                full_time(l, "decided_at"),
                field(l, "recorded_version"),
                outcome,
            ]
        })
        .collect();
    let c = &r["summary"];
    let n = |k: &str| c[k].as_u64().unwrap_or(0);
    let mut counts = vec![
        format!("judged {}", n("judged")),
        format!("same {}", n("same")),
        format!("different {}", n("different")),
    ];
    for (key, words) in [
        ("would_reject", "would reject"),
        ("would_admit", "would admit"),
        ("would_defer", "would defer"),
        ("reasons_changed", "reasons changed"),
        ("routes_changed", "routes changed"),
        ("jobs_changed", "jobs changed"),
        ("errors", "errors"),
        ("not_replayable", "not replayable"),
        ("live_stats", "stats read live"),
    ] {
        if n(key) > 0 {
            counts.push(format!("{words} {}", n(key)));
        }
    }
    let candidate = &r["candidate"];
    let mut out = format!(
        "Replayed {} ({}, {}) against the decisions of {}:\n",
        str_of(candidate, "source"),
        str_of(candidate, "digest")
            .chars()
            .take(19)
            .collect::<String>(),
        str_of(candidate, "world"),
        str_of(r, "plugin")
    );
    if rows.is_empty() {
        out.push_str("no recorded decisions match\n");
    } else {
        out.push_str(&table(&["RUN", "DECIDED", "WAS", "NOW"], rows));
        out.push('\n');
    }
    out.push_str(&counts.join(", "));
    if r["truncated"] == true {
        out.push_str(" (cut short: the replay's time ran out; narrow it with --limit or --since)");
    }
    out
}

pub(crate) async fn execute(ctx: &Ctx, command: PluginCommand) -> Result<ExitCode, CliError> {
    let c = &ctx.client;
    match command {
        PluginCommand::Add { name, file } => {
            let bytes = std::fs::read(&file).map_err(|e| {
                CliError::input("FILE", format!("cannot read {}: {e}", file.display()))
            })?;
            let reply = c.post_bytes(&["plugins", &name], bytes).await?;
            let created = reply.status.as_u16() == 201;
            ctx.show(&reply.body, |v| {
                format!(
                    "{} {} version {} ({} plugin, {})",
                    if created { "Added" } else { "Unchanged:" },
                    str_of(v, "name"),
                    field(v, "version"),
                    str_of(v, "world"),
                    str_of(v, "digest")
                )
            })?;
        }
        PluginCommand::Ls => {
            let list = c.get(&["plugins"]).await?;
            ctx.show_list(&list, render_plugins)?;
        }
        PluginCommand::Inspect { name } => {
            let p = c.get(&["plugins", &name]).await?;
            ctx.show(&p, |p| {
                let versions = p["versions"].as_array().cloned().unwrap_or_default();
                let mut rows = vec![
                    ("name", field(p, "name")),
                    ("world", field(p, "world")),
                    ("newest version", field(p, "newest_version")),
                ];
                // What a 0.2.0 plugin says about itself.
                if let Some(d) = p.get("description") {
                    rows.push((
                        "describes itself as",
                        format!("{} {}", str_of(d, "name"), str_of(d, "version")),
                    ));
                    rows.push(("summary", field(d, "summary")));
                    rows.push((
                        "config schema",
                        d.get("config_schema")
                            .map(Value::to_string)
                            .unwrap_or_else(|| "none".into()),
                    ));
                }
                if let Some(e) = p.get("description_error") {
                    rows.push(("describe failed", e.as_str().unwrap_or_default().to_owned()));
                }
                let mut out = kv_block(&rows);
                out.push_str("\n\nVersions:\n");
                out.push_str(&table(
                    &["VERSION", "DIGEST", "WIT", "SIZE", "ADDED"],
                    versions
                        .iter()
                        .map(|v| {
                            vec![
                                field(v, "version"),
                                str_of(v, "digest").to_owned(),
                                str_of(v, "wit_version").to_owned(),
                                field(v, "size"),
                                full_time(v, "created_at"),
                            ]
                        })
                        .collect(),
                ));
                out.push_str("\n\nBindings:\n");
                let bindings = p["bindings"].as_array().cloned().unwrap_or_default();
                let rows: Vec<Vec<String>> = bindings
                    .iter()
                    .map(|b| {
                        vec![
                            match b.get("pool") {
                                Some(Value::String(p)) => format!("pool {p}"),
                                _ => "router chain".into(),
                            },
                            match b.get("pinned_version") {
                                Some(Value::Number(n)) => n.to_string(),
                                _ => "newest".into(),
                            },
                            str_of(b, "on_error").to_owned(),
                        ]
                    })
                    .collect();
                if rows.is_empty() {
                    out.push_str("none");
                } else {
                    out.push_str(&table(&["WHERE", "VERSION", "ON ERROR"], rows));
                }
                out
            })?;
        }
        PluginCommand::Rm { name } => {
            c.delete(&["plugins", &name]).await?;
            ctx.done(&format!("Deleted plugin {name}"))?;
        }
        PluginCommand::Replay {
            name,
            version,
            file,
            pool,
            since,
            limit,
            config,
        } => {
            let mut url = c.url(&["plugins", &name, "replay"]);
            {
                let mut q = url.query_pairs_mut();
                if let Some(v) = version {
                    q.append_pair("version", &v.to_string());
                }
                if let Some(p) = &pool {
                    q.append_pair("pool", p);
                }
                if let Some(s) = &since {
                    q.append_pair("since", s);
                }
                q.append_pair("limit", &limit.to_string());
                if let Some(c) = &config {
                    q.append_pair("config", &parse_config(c)?.to_string());
                }
            }
            let reply = match &file {
                Some(path) => {
                    let bytes = std::fs::read(path).map_err(|e| {
                        CliError::input("--file", format!("cannot read {}: {e}", path.display()))
                    })?;
                    c.post_bytes_to(url, bytes).await?
                }
                None => c.send(reqwest::Method::POST, url, None).await?,
            };
            ctx.show(&reply.body, render_replay)?;
        }
        PluginCommand::Test { .. } => {
            return Err(CliError::NotAClientCommand("plugin test"));
        }
        PluginCommand::New { .. } => {
            return Err(CliError::NotAClientCommand("plugin new"));
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn execute_router(
    ctx: &Ctx,
    command: RouterCommand,
) -> Result<ExitCode, CliError> {
    let c = &ctx.client;
    match command {
        RouterCommand::Bind { plugin, options } => {
            let body = binding_body(&plugin, &options)?;
            let b = c.post(&["routers"], Some(&body)).await?.body;
            ctx.show(&b, |b| {
                format!(
                    "Bound router {} (order {})",
                    str_of(b, "plugin"),
                    field(b, "order")
                )
            })?;
        }
        RouterCommand::Unbind { plugin, mode } => {
            unbind(c, &["routers", &plugin], mode).await?;
            ctx.done(&format!("Unbound router {plugin}"))?;
        }
        RouterCommand::Ls => {
            let list = c.get(&["routers"]).await?;
            ctx.show_list(&list, render_bindings)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `weir plugin test`'s compile cache when `--cache-dir` is not given:
/// `$XDG_CACHE_HOME/weir/plugin-test`, else `~/.cache/weir/plugin-test`;
/// none without either variable.
fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".cache"))
        })?;
    Some(base.join("weir").join("plugin-test"))
}

/// `weir plugin test`: needs no server; the same runtime and limits.
pub(super) async fn test_offline(
    command: PluginCommand,
    json_output: bool,
) -> Result<ExitCode, CliError> {
    let PluginCommand::Test {
        file,
        ctx,
        job,
        config,
        stats,
        deadline_ms,
        memory_mb,
        cache_dir,
    } = command
    else {
        return Err(CliError::NotAClientCommand("plugin"));
    };
    // What the plugin said (its `log` calls, its stdout and stderr) goes to
    // stderr: what an author needs while writing one. `WEIR_LOG` overrides.
    let filter = tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,weir::plugin::guest=trace"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .without_time()
        .with_target(false)
        .try_init();
    let bytes = std::fs::read(&file)
        .map_err(|e| CliError::input("FILE", format!("cannot read {}: {e}", file.display())))?;
    let run_ctx: RunContext = serde_json::from_value(read_json_file(&ctx, "--ctx")?)
        .map_err(|e| CliError::input("--ctx", e.to_string()))?;
    let config = match &config {
        Some(p) => read_json_file(p, "--config")?,
        None => json!({}),
    };
    let config = config.to_string();
    let limits = Limits {
        deadline: std::time::Duration::from_millis(u64::from(deadline_ms)),
        memory_bytes: memory_mb as usize * 1024 * 1024,
        ..Limits::default()
    };
    let cache_dir = cache_dir.or_else(default_cache_dir);
    let runtime = PluginRuntime::new(cache_dir, 4).map_err(|e| CliError::Plugin(e.to_string()))?;
    let plugin = runtime
        .load(&bytes)
        .await
        .map_err(|e| CliError::Plugin(format!("{} is not a usable plugin: {e}", file.display())))?;
    let fail = |e: crate::plugin::CallError| CliError::Plugin(format!("{}: {e}", e.kind()));
    let lookup: std::sync::Arc<dyn Lookup> = std::sync::Arc::new(match &stats {
        Some(p) => serde_json::from_value::<FixedStats>(read_json_file(p, "--stats")?)
            .map_err(|e| CliError::input("--stats", e.to_string()))?,
        None => FixedStats::default(),
    });
    let (description, _) = plugin.describe(&limits).await;
    let description = description.map_err(fail)?;
    let (valid, _) = plugin.validate_config(&config, &limits).await;
    valid.map_err(|e| CliError::Plugin(format!("the config is refused: {e}")))?;
    let (out, elapsed) = match plugin.world() {
        World::Router => {
            let (r, t) = plugin.route(&config, &run_ctx, &lookup, &limits).await;
            let route = r.map_err(fail)?;
            (json!({"route": route}), t)
        }
        World::Admission => {
            let (r, t) = plugin.admit(&config, &run_ctx, &lookup, &limits).await;
            (json!({"admission": r.map_err(fail)?}), t)
        }
        World::Mutator => {
            let Some(job) = &job else {
                return Err(CliError::input(
                    "--job",
                    "a mutator plugin needs --job FILE",
                ));
            };
            let job = read_json_file(job, "--job")?;
            let (r, t) = plugin
                .mutate(&config, &run_ctx, &job, &[], &lookup, &limits)
                .await;
            match r.map_err(fail)? {
                Mutated::Job { job, patch } => (json!({"patch": patch, "job": job}), t),
                Mutated::Reject(refusal) => (json!({"reject": refusal}), t),
            }
        }
    };
    let mut out = out;
    out["world"] = json!(plugin.world());
    out["wit_version"] = json!(plugin.wit_version());
    out["digest"] = json!(plugin.digest());
    if let Some(d) = &description {
        out["description"] = json!(d);
    }
    out["elapsed_ms"] = json!(elapsed.as_secs_f64() * 1000.0);
    let text = if json_output {
        super::output::pretty(&out)
    } else {
        let mut s = format!(
            "{} plugin {} (weir:plugin@{}) ({:.3} ms)\n",
            plugin.world(),
            plugin.digest(),
            plugin.wit_version(),
            elapsed.as_secs_f64() * 1000.0
        );
        if let Some(d) = &description {
            s.push_str(&format!("{} {}: {}\n", d.name, d.version, d.summary));
        }
        for key in ["route", "admission", "reject", "patch", "job"] {
            if let Some(v) = out.get(key) {
                s.push_str(&format!("{key}:\n{}\n", super::output::pretty(v)));
            }
        }
        s
    };
    super::output::emit(text.trim_end())?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_refs_and_bodies() {
        assert_eq!(parse_plugin_ref("a").ok(), Some(("a".into(), None)));
        assert_eq!(parse_plugin_ref("a@3").ok(), Some(("a".into(), Some(3))));
        assert!(parse_plugin_ref("a@x").is_err());
        let body = binding_body(
            "gpu@2",
            &BindOptions {
                config: Some(r#"{"k": 1}"#.into()),
                order: Some(5),
                on_error: Some(OnErrorArg::FailOpen),
                deadline_ms: Some(20),
                memory_mb: None,
                mode: Some(ModeArg::Shadow),
            },
        )
        .unwrap_or_default();
        assert_eq!(
            body,
            json!({"plugin": "gpu", "version": 2, "config": {"k": 1}, "order": 5,
                   "on_error": "fail-open", "deadline_ms": 20, "mode": "shadow"})
        );
        let err = binding_body(
            "p",
            &BindOptions {
                config: Some("{".into()),
                order: None,
                on_error: None,
                deadline_ms: None,
                memory_mb: None,
                mode: None,
            },
        )
        .expect_err("bad JSON");
        assert!(err.to_string().contains("--config"));
    }
}

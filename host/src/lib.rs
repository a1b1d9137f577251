//! Weir: a job dispatcher whose policies are WebAssembly component plugins.
//!
//! The life of a run, module by module (see ARCHITECTURE.md):
//! `api` receives it → `run::submit` validates, routes, admits and stores it
//! (`store`) → `scheduler` releases it when priority and every limit allow
//! (the walk in `domain::release`) → `run::launch` builds its job
//! (`run::build`) and hands it to a `backend` → the outcome is written back
//! through the `domain::RunState` transition table.

// Inside the crate, `pub(crate)`: a `pub` item is one the crate exports (the
// list below), and this lint keeps it that way.
#![warn(unreachable_pub)]

mod api;
mod auth;
mod backend;
mod cli;
mod config;
mod dashboard;
mod dispatcher;
mod domain;
mod metrics;
mod pipeline;
mod plugin;
mod registry;
mod replica;
mod resources;
mod run;
mod scheduler;
mod server;
mod store;
mod template;
mod tls;

// What the binary (`main.rs`), the end-to-end tests (`tests/`) and the
// benchmarks (`bench/`) use; everything else is the crate's own.

/// Every API route as `(method, path)`: the route table and `openapi.json`
/// are checked against it.
pub use api::ROUTES;
/// `--auth on|off|auto`.
pub use auth::AuthMode;
/// The hidden `weir supervise`: the launcher of the process backend's
/// per-attempt supervisors.
pub use backend::supervise;
/// The command line: parsed by `main.rs`, executed against a server's API.
pub use cli::{Cli, Command, ServeArgs, execute};
/// The TOML configuration file.
pub use config::Config;
/// The nouns a run passes through.
pub use domain::{
    BaseJobTemplate, ConcurrencyLimit, LateAction, Pool, PoolType, Queue, RetryPolicy, Run,
    RunState, TemplateKind,
};
/// The plugin runtime, for loading and calling components directly.
pub use plugin::{
    Admission, Counts, FixedStats, Limits as PluginLimits, LoadedPlugin, Lookup, Mutated,
    PluginRuntime, RunContext, Stats,
};
/// `weir serve`: its options and the server.
pub use server::{Database, ServeOptions, Server, init_tracing, serve};
/// The store, for benchmarks and tests that drive it without a server.
pub use store::{
    Blob, DatabaseUrl, DecisionQuery, DecisionRecord, DecisionsSize, NewRun, PoolPatch, SqlStore,
    Store, StoreError, StoredDecision, Transition,
};
/// HTTPS: the certificate and key files.
pub use tls::TlsFiles;

/// The release walk (`domain/release.rs`), for the property test that
/// checks it against the benchmarks' model.
pub mod release {
    pub use crate::domain::release::{Limits, QueueState, ReleaseSource, walk};
}

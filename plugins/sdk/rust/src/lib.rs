//! # weir-plugin-sdk
//!
//! Write a Weir plugin as plain Rust over `serde_json`, and let one macro
//! turn it into a WebAssembly component for the `weir:plugin@0.2.0` world it
//! implements:
//!
//! ```ignore
//! use weir_plugin_sdk::{Description, Job, MutatorPlugin, Mutation, Plugin, Result, RunContext, Stats};
//!
//! pub struct MyPlugin;
//!
//! impl Plugin for MyPlugin {
//!     type Config = MyConfig;
//!     fn describe() -> Description {
//!         Description::new("gpu-placer", "1.0.0", "what it does").with_config_schema(/* ... */)
//!     }
//!     fn parse_config(config: &serde_json::Value) -> Result<MyConfig> { /* ... */ }
//! }
//!
//! impl MutatorPlugin for MyPlugin {
//!     fn mutate(config: &MyConfig, run: &RunContext, stats: &dyn Stats, mut job: Job) -> Result<Mutation> {
//!         for container in job.containers_mut() { /* change it */ }
//!         Ok(Mutation::Job(job))
//!     }
//! }
//!
//! weir_plugin_sdk::export_mutator!(MyPlugin);
//! ```
//!
//! * The traits ([`Plugin`] plus one of [`RouterPlugin`], [`AdmissionPlugin`],
//!   [`MutatorPlugin`]) use this crate's plain types ([`RunContext`],
//!   [`Stats`], [`Route`], [`Admission`], [`Mutation`], [`Job`],
//!   [`Refusal`]), so the logic is unit-tested natively with `cargo test`
//!   (a [`StatsTable`] answers occupancy questions there).
//! * [`export_router!`], [`export_admission!`], [`export_mutator!`] generate
//!   the world's bindings in the plugin crate (from this crate's own copy of
//!   the contract, `wit/plugin.wit`), read the run resource once into a
//!   [`RunContext`], answer [`Stats`] questions through the host's `stats`
//!   import, convert the decision and export the component. They expand to
//!   nothing outside `wasm32`.
//! * `describe` returns [`Plugin::describe`]; the host checks a binding's
//!   config against its schema, then `validate-config` calls
//!   [`Plugin::parse_config`]. Every decision parses the config the same way,
//!   so a config that validated behaves the same.
//! * An `Err(`[`Refusal`]`)` is a refusal to decide (the binding's on-error
//!   policy applies); [`Admission::Reject`] and [`Mutation::Reject`] refuse
//!   the run. Both carry a code, a message and optional details.

mod context;
mod error;
mod job;
mod patch;

pub mod config;
pub mod json;
pub mod k8s;
pub mod log;
pub mod quantity;

pub use context::{
    Admission, Counts, Description, Mutation, PoolType, Route, RunContext, Scope, Stats,
    StatsTable, parse_object,
};
pub use error::{BAD_CONFIG, BAD_JOB, BAD_RUN, Refusal, Result};
pub use job::{Job, JobKind};
pub use patch::{PatchKind, PatchOp, apply, diff};
pub use quantity::Quantity;
pub use serde_json;

use serde_json::Value;

/// What every plugin has: a description and a config, parsed (and so
/// validated) from the binding's JSON.
pub trait Plugin {
    /// The parsed config.
    type Config;

    /// Name, version, summary and the JSON Schema of the config.
    fn describe() -> Description;

    /// Parses and validates the binding's config (which already matched the
    /// described schema). `config` is `{}` when the binding has none. Reject
    /// unknown keys and wrong types with a message naming the key
    /// ([`config::ConfigObject`] does that, with the code `bad-config`).
    fn parse_config(config: &Value) -> Result<Self::Config>;
}

/// A router (world `router-plugin`): runs before a pool is chosen.
pub trait RouterPlugin: Plugin {
    /// Chooses the pool and queue (unset: keep the current one) and tags to add.
    fn route(config: &Self::Config, run: &RunContext, stats: &dyn Stats) -> Result<Route>;
}

/// An admission plugin (world `admission-plugin`): admits, rejects or defers.
pub trait AdmissionPlugin: Plugin {
    fn admit(config: &Self::Config, run: &RunContext, stats: &dyn Stats) -> Result<Admission>;
}

/// A mutator (world `mutator-plugin`): changes the rendered job, or rejects
/// the run.
pub trait MutatorPlugin: Plugin {
    /// Usually `Ok(Mutation::Job(job))` after changing `job` in place.
    fn mutate(
        config: &Self::Config,
        run: &RunContext,
        stats: &dyn Stats,
        job: Job,
    ) -> Result<Mutation>;
}

/// Parses config text and validates it with `P` (what `validate-config` does).
pub fn validate_config<P: Plugin>(config: &str) -> Result<()> {
    parse_plugin_config::<P>(config).map(drop)
}

/// Parses config text with `P`.
pub fn parse_plugin_config<P: Plugin>(config: &str) -> Result<P::Config> {
    P::parse_config(&config::parse(config)?)
}

/// Runs a router on config text (what the component's `route` does).
pub fn run_router<P: RouterPlugin>(
    config: &str,
    run: &RunContext,
    stats: &dyn Stats,
) -> Result<Route> {
    P::route(&parse_plugin_config::<P>(config)?, run, stats)
}

/// Runs an admission plugin on config text (what the component's `admit` does).
pub fn run_admission<P: AdmissionPlugin>(
    config: &str,
    run: &RunContext,
    stats: &dyn Stats,
) -> Result<Admission> {
    P::admit(&parse_plugin_config::<P>(config)?, run, stats)
}

/// Runs a mutator on config text and job text (what the component's `mutate`
/// does).
pub fn run_mutator<P: MutatorPlugin>(
    config: &str,
    run: &RunContext,
    stats: &dyn Stats,
    job: &str,
) -> Result<Mutation> {
    let config = parse_plugin_config::<P>(config)?;
    P::mutate(&config, run, stats, Job::parse(job)?)
}

#[doc(hidden)]
pub mod __private {
    pub use wit_bindgen;
}

// `__weir_generate!`, written by build.rs with the WIT package's path.
include!(concat!(env!("OUT_DIR"), "/generate.rs"));

/// Shared part of the export macros: the bindings, the log sink, the run
/// resource read into a `RunContext`, host stats, refusals, `describe` and
/// `validate-config`. Internal.
#[doc(hidden)]
#[macro_export]
macro_rules! __weir_common {
    ($plugin:ty, $world:tt) => {
        $crate::__weir_generate!($world);

        use weir::plugin::types as wit;

        struct Component;

        fn __weir_log(
            level: $crate::log::Level,
            message: &str,
            fields: &[(::std::string::String, ::std::string::String)],
        ) {
            use weir::plugin::log::Level as L;
            let level = match level {
                $crate::log::Level::Trace => L::Trace,
                $crate::log::Level::Debug => L::Debug,
                $crate::log::Level::Info => L::Info,
                $crate::log::Level::Warn => L::Warn,
                $crate::log::Level::Error => L::Error,
            };
            weir::plugin::log::log(level, message, fields);
        }

        fn __weir_refusal(r: $crate::Refusal) -> wit::Refusal {
            wit::Refusal {
                details: r.details_json(),
                code: r.code,
                message: r.message,
            }
        }

        /// Reads the run resource once (each getter is a host call).
        fn __weir_run(run: &wit::Run) -> $crate::Result<$crate::RunContext> {
            ::core::result::Result::Ok($crate::RunContext {
                run_id: run.id(),
                deployment: run.deployment(),
                pool: run.pool(),
                pool_type: run.pool_type().map(|t| match t {
                    wit::PoolType::Process => $crate::PoolType::Process,
                    wit::PoolType::Kubernetes => $crate::PoolType::Kubernetes,
                }),
                queue: run.queue(),
                tags: run.tags(),
                labels: run.labels().into_iter().collect(),
                parameters: $crate::parse_object("parameters", &run.parameters())?,
                job_variables: $crate::parse_object("job-variables", &run.job_variables())?,
                parent_run: run.parent_run(),
            })
        }

        /// Occupancy, asked of the host.
        struct HostStats;

        impl $crate::Stats for HostStats {
            fn occupancy(&self, scope: &$crate::Scope) -> $crate::Counts {
                let scope = match scope {
                    $crate::Scope::Pool => wit::Scope::Pool,
                    $crate::Scope::Queue => wit::Scope::Queue,
                    $crate::Scope::Tag(tag) => wit::Scope::Tag(tag.clone()),
                    $crate::Scope::Label { key, value } => {
                        wit::Scope::Label((key.clone(), value.clone()))
                    }
                };
                let counts = weir::plugin::stats::occupancy(&scope);
                $crate::Counts {
                    running: counts.running,
                    queued: counts.queued,
                }
            }
        }

        impl exports::weir::plugin::plugin::Guest for Component {
            fn describe() -> wit::Description {
                let d = <$plugin as $crate::Plugin>::describe();
                wit::Description {
                    name: d.name,
                    version: d.version,
                    summary: d.summary,
                    config_schema: d.config_schema.map(|s| s.to_string()),
                }
            }

            fn validate_config(
                config: ::std::string::String,
            ) -> ::core::result::Result<(), wit::Refusal> {
                $crate::log::set_sink(__weir_log);
                $crate::validate_config::<$plugin>(&config).map_err(__weir_refusal)
            }
        }
    };
}

/// Exports `$plugin` (a [`RouterPlugin`]) as a `router-plugin` component.
/// Invoke once, at the crate root of a `cdylib` crate.
#[macro_export]
macro_rules! export_router {
    ($plugin:ty) => {
        #[cfg(target_arch = "wasm32")]
        #[doc(hidden)]
        #[allow(warnings, clippy::all, clippy::pedantic)]
        mod __weir_router_plugin {
            use super::*;
            $crate::__weir_common!($plugin, "router-plugin");

            impl exports::weir::plugin::router::Guest for Component {
                fn route(
                    config: ::std::string::String,
                    run: &wit::Run,
                ) -> ::core::result::Result<wit::Route, wit::Refusal> {
                    $crate::log::set_sink(__weir_log);
                    let run = __weir_run(run).map_err(__weir_refusal)?;
                    let route = $crate::run_router::<$plugin>(&config, &run, &HostStats)
                        .map_err(__weir_refusal)?;
                    ::core::result::Result::Ok(wit::Route {
                        pool: route.pool,
                        queue: route.queue,
                        add_tags: route.add_tags,
                    })
                }
            }

            export!(Component);
        }
    };
}

/// Exports `$plugin` (an [`AdmissionPlugin`]) as an `admission-plugin`
/// component. Invoke once, at the crate root of a `cdylib` crate.
#[macro_export]
macro_rules! export_admission {
    ($plugin:ty) => {
        #[cfg(target_arch = "wasm32")]
        #[doc(hidden)]
        #[allow(warnings, clippy::all, clippy::pedantic)]
        mod __weir_admission_plugin {
            use super::*;
            $crate::__weir_common!($plugin, "admission-plugin");

            impl exports::weir::plugin::admission::Guest for Component {
                fn admit(
                    config: ::std::string::String,
                    run: &wit::Run,
                ) -> ::core::result::Result<wit::Admission, wit::Refusal> {
                    $crate::log::set_sink(__weir_log);
                    let run = __weir_run(run).map_err(__weir_refusal)?;
                    let decision = $crate::run_admission::<$plugin>(&config, &run, &HostStats)
                        .map_err(__weir_refusal)?;
                    ::core::result::Result::Ok(match decision {
                        $crate::Admission::Admit => wit::Admission::Admit,
                        $crate::Admission::Reject(r) => wit::Admission::Reject(__weir_refusal(r)),
                        $crate::Admission::Defer { seconds, reason } => {
                            wit::Admission::Defer(wit::Deferral { seconds, reason })
                        }
                    })
                }
            }

            export!(Component);
        }
    };
}

/// Exports `$plugin` (a [`MutatorPlugin`]) as a `mutator-plugin` component.
/// Invoke once, at the crate root of a `cdylib` crate.
#[macro_export]
macro_rules! export_mutator {
    ($plugin:ty) => {
        #[cfg(target_arch = "wasm32")]
        #[doc(hidden)]
        #[allow(warnings, clippy::all, clippy::pedantic)]
        mod __weir_mutator_plugin {
            use super::*;
            $crate::__weir_common!($plugin, "mutator-plugin");

            impl exports::weir::plugin::mutator::Guest for Component {
                fn mutate(
                    config: ::std::string::String,
                    run: &wit::Run,
                    job: ::std::string::String,
                ) -> ::core::result::Result<wit::Mutation, wit::Refusal> {
                    $crate::log::set_sink(__weir_log);
                    let run = __weir_run(run).map_err(__weir_refusal)?;
                    let mutation = $crate::run_mutator::<$plugin>(&config, &run, &HostStats, &job)
                        .map_err(__weir_refusal)?;
                    ::core::result::Result::Ok(match mutation {
                        $crate::Mutation::Job(job) => wit::Mutation::Job(job.to_json()),
                        $crate::Mutation::Patch(ops) => wit::Mutation::Patch(
                            ops.into_iter()
                                .map(|op| wit::PatchOp {
                                    value: op.value_json(),
                                    op: match op.op {
                                        $crate::PatchKind::Add => wit::PatchKind::Add,
                                        $crate::PatchKind::Remove => wit::PatchKind::Remove,
                                        $crate::PatchKind::Replace => wit::PatchKind::Replace,
                                        $crate::PatchKind::Move => wit::PatchKind::Move,
                                        $crate::PatchKind::Copy => wit::PatchKind::Copy,
                                        $crate::PatchKind::Test => wit::PatchKind::Test,
                                    },
                                    path: op.path,
                                    from: op.from,
                                })
                                .collect(),
                        ),
                        $crate::Mutation::Reject(r) => wit::Mutation::Reject(__weir_refusal(r)),
                    })
                }
            }

            export!(Component);
        }
    };
}

//! # weir-plugin-sdk
//!
//! Write a Weir plugin as plain Rust over `serde_json`, and let one macro
//! turn it into a WebAssembly component for the `weir:plugin@0.1.0` world it
//! implements:
//!
//! ```ignore
//! use weir_plugin_sdk::{Job, MutatorPlugin, PatchOp, Plugin, Result, RunContext, config};
//!
//! pub struct MyPlugin;
//!
//! impl Plugin for MyPlugin {
//!     type Config = MyConfig;
//!     fn parse_config(config: &serde_json::Value) -> Result<MyConfig> { /* ... */ }
//! }
//!
//! impl MutatorPlugin for MyPlugin {
//!     fn mutate(config: &MyConfig, ctx: &RunContext, mut job: Job) -> Result<Vec<PatchOp>> {
//!         for container in job.containers_mut() { /* change it */ }
//!         Ok(job.into_patch())
//!     }
//! }
//!
//! weir_plugin_sdk::export_mutator!(MyPlugin);
//! ```
//!
//! * The traits ([`Plugin`] plus one of [`RouterPlugin`], [`AdmissionPlugin`],
//!   [`MutatorPlugin`]) use this crate's plain types ([`RunContext`],
//!   [`Stats`], [`Route`], [`Admission`], [`PatchOp`], [`Job`]), so the logic
//!   is unit-tested natively with `cargo test`.
//! * [`export_router!`], [`export_admission!`], [`export_mutator!`] generate
//!   the world's bindings in the plugin crate (from the WIT package in the
//!   Weir repository, found by this crate's build script), convert between
//!   the generated types and this crate's, and export the component. They
//!   expand to nothing outside `wasm32`.
//! * `validate-config` calls [`Plugin::parse_config`]; every decision parses
//!   the config the same way, so a config that validated behaves the same.

mod context;
mod error;
mod job;
mod patch;

pub mod config;
pub mod json;
pub mod k8s;
pub mod log;
pub mod quantity;

pub use context::{Admission, Counts, Route, RunContext, Stats, parse_object};
pub use error::{PluginError, Result};
pub use job::{Job, JobKind};
pub use patch::{PatchKind, PatchOp, apply, diff};
pub use quantity::Quantity;
pub use serde_json;

use serde_json::Value;

/// What every plugin has: a config, parsed (and so validated) from the
/// binding's JSON.
pub trait Plugin {
    /// The parsed config.
    type Config;

    /// Parses and validates the binding's config. `config` is `{}` when the
    /// binding has none. Reject unknown keys and wrong types with a message
    /// naming the key ([`config::ConfigObject`] does that).
    fn parse_config(config: &Value) -> Result<Self::Config>;
}

/// A router (world `router-plugin`): runs before a pool is chosen.
pub trait RouterPlugin: Plugin {
    /// Chooses the pool and queue (unset: keep the current one) and tags to add.
    fn route(config: &Self::Config, ctx: &RunContext) -> Result<Route>;
}

/// An admission plugin (world `admission-plugin`): admits, rejects or defers.
pub trait AdmissionPlugin: Plugin {
    fn admit(config: &Self::Config, ctx: &RunContext, stats: &Stats) -> Result<Admission>;
}

/// A mutator (world `mutator-plugin`): changes the rendered job.
pub trait MutatorPlugin: Plugin {
    /// Returns RFC 6902 operations on the job; usually [`Job::into_patch`].
    fn mutate(config: &Self::Config, ctx: &RunContext, job: Job) -> Result<Vec<PatchOp>>;
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
pub fn run_router<P: RouterPlugin>(config: &str, ctx: &RunContext) -> Result<Route> {
    P::route(&parse_plugin_config::<P>(config)?, ctx)
}

/// Runs an admission plugin on config text (what the component's `admit` does).
pub fn run_admission<P: AdmissionPlugin>(
    config: &str,
    ctx: &RunContext,
    stats: &Stats,
) -> Result<Admission> {
    P::admit(&parse_plugin_config::<P>(config)?, ctx, stats)
}

/// Runs a mutator on config text and job text (what the component's `mutate`
/// does).
pub fn run_mutator<P: MutatorPlugin>(
    config: &str,
    ctx: &RunContext,
    job: &str,
) -> Result<Vec<PatchOp>> {
    let config = parse_plugin_config::<P>(config)?;
    P::mutate(&config, ctx, Job::parse(job)?)
}

#[doc(hidden)]
pub mod __private {
    pub use wit_bindgen;
}

// `__weir_generate!`, written by build.rs with the WIT package's path.
include!(concat!(env!("OUT_DIR"), "/generate.rs"));

/// Shared part of the export macros: the bindings, the log sink, the run
/// context and error conversions, and `validate-config`. Internal.
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

        fn __weir_error(e: $crate::PluginError) -> wit::PluginError {
            wit::PluginError { message: e.message }
        }

        fn __weir_ctx(ctx: wit::RunContext) -> $crate::Result<$crate::RunContext> {
            $crate::RunContext::from_wit(
                ctx.run_id,
                ctx.deployment,
                ctx.pool,
                ctx.queue,
                ctx.tags,
                ctx.labels,
                &ctx.parameters,
                &ctx.job_variables,
                ctx.parent_run,
            )
        }

        impl exports::weir::plugin::config::Guest for Component {
            fn validate_config(
                config: ::std::string::String,
            ) -> ::core::result::Result<(), wit::PluginError> {
                $crate::log::set_sink(__weir_log);
                $crate::validate_config::<$plugin>(&config).map_err(__weir_error)
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
                    ctx: wit::RunContext,
                ) -> ::core::result::Result<wit::Route, wit::PluginError> {
                    $crate::log::set_sink(__weir_log);
                    let ctx = __weir_ctx(ctx).map_err(__weir_error)?;
                    let route =
                        $crate::run_router::<$plugin>(&config, &ctx).map_err(__weir_error)?;
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

            fn __weir_counts(c: wit::Counts) -> $crate::Counts {
                $crate::Counts {
                    running: c.running,
                    queued: c.queued,
                }
            }

            impl exports::weir::plugin::admission::Guest for Component {
                fn admit(
                    config: ::std::string::String,
                    ctx: wit::RunContext,
                    stats: wit::Stats,
                ) -> ::core::result::Result<wit::Admission, wit::PluginError> {
                    $crate::log::set_sink(__weir_log);
                    let ctx = __weir_ctx(ctx).map_err(__weir_error)?;
                    let stats = $crate::Stats {
                        pool: __weir_counts(stats.pool),
                        queue: __weir_counts(stats.queue),
                        tags: stats
                            .tags
                            .into_iter()
                            .map(|t| (t.tag, __weir_counts(t.counts)))
                            .collect(),
                        team: stats.team,
                        team_counts: __weir_counts(stats.team_counts),
                    };
                    let decision = $crate::run_admission::<$plugin>(&config, &ctx, &stats)
                        .map_err(__weir_error)?;
                    ::core::result::Result::Ok(match decision {
                        $crate::Admission::Admit => wit::Admission::Admit,
                        $crate::Admission::Reject(reason) => wit::Admission::Reject(reason),
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
                    ctx: wit::RunContext,
                    job: ::std::string::String,
                ) -> ::core::result::Result<::std::vec::Vec<wit::PatchOp>, wit::PluginError>
                {
                    $crate::log::set_sink(__weir_log);
                    let ctx = __weir_ctx(ctx).map_err(__weir_error)?;
                    let ops = $crate::run_mutator::<$plugin>(&config, &ctx, &job)
                        .map_err(__weir_error)?;
                    ::core::result::Result::Ok(
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
                    )
                }
            }

            export!(Component);
        }
    };
}

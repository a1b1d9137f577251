//! The WebAssembly plugin runtime: loads `weir:plugin` components and runs
//! their decisions in a sandbox.
//!
//! The life of a plugin, file by file:
//! [`PluginRuntime::load`] (`runtime.rs`) refuses what is not a component,
//! precompiles it or reads the cached artifact, detects its world and WIT
//! version from its export names, and links it once against the host imports
//! of that version (`v0_1_0.rs`, `v0_2_0.rs`) → each decision ([`LoadedPlugin::route`],
//! [`LoadedPlugin::admit`], [`LoadedPlugin::mutate`],
//! [`LoadedPlugin::validate_config`]) waits for a concurrency permit, then on
//! a blocking thread gets a fresh Store and instance with an epoch deadline,
//! a memory cap, hostcall fuel at the output cap and captured stdio
//! (`call.rs`) → the output is size- and count-checked, converted to the
//! host's types (`types.rs`) and, for a mutator, applied op by op as an RFC
//! 6902 patch with forbidden paths and the job's depth and size bounded
//! (`patch.rs`).
//!
//! Architecture invariant: a plugin reaches nothing of the host but its
//! arguments, `log`, what a 0.2.0 plugin may ask (`stats.occupancy`, the
//! run's getters: read-only, answered through the caller's `Lookup`, bounded
//! in number and by the call's deadline), and the WASI clocks (the monotonic one Weir's own,
//! whose sleeps end at the call's deadline). Its WASI context has no preopened
//! directories, no environment, no arguments, no network, an empty stdin,
//! stdout and stderr into bounded memory, and a fixed "random" sequence.
//!
//! Architecture invariant: no state survives a decision. Every call
//! instantiates afresh from the linked `InstancePre`.
//!
//! Architecture invariant: one binding module per WIT version, frozen with
//! its WIT (a test pins each `wit/vX/` digest). A new version is a
//! `vX.rs`, its `add_to_linker` call, and one arm in `runtime::Versioned`;
//! plugins built against older versions keep loading.

mod call;
mod error;
mod patch;
mod runtime;
mod types;
mod v0_1_0;
mod v0_2_0;

#[cfg(test)]
mod tests;

pub(crate) use error::{CallError, LoadError};
pub use runtime::{LoadedPlugin, PluginRuntime};
#[allow(unreachable_pub)] // re-exported at the crate root (lib.rs)
pub use types::{
    Admission, Counts, Description, FixedStats, Limits, Lookup, Mutated, Refusal, RunContext,
    Scope, Stats,
};
pub(crate) use types::{MAX_DEFER_SECONDS, Route, World};

//! Host bindings for `weir:plugin@0.1.0` (`wit/v0.1.0/plugin.wit`), and the
//! conversions between its generated types and the host's.
//!
//! Frozen with the WIT: a new version gets a sibling module and an arm in
//! `runtime::Versioned`, and this one stays so old plugins keep loading.

use wasmtime::Store;
use wasmtime::component::{HasSelf, InstancePre, Linker};

use super::call::{Failure, GuestResult, HostState, LogLevel};
use super::types::{self as host, World};

/// The version string in this binding's export names.
pub(crate) const VERSION: &str = "0.1.0";

/// One `bindgen!` per world; the shared interfaces (`types`, `log`) are
/// generated once, in `router`, and reused by the other two.
mod bindings {
    pub(super) mod router {
        wasmtime::component::bindgen!({
            path: "../wit/v0.1.0",
            world: "router-plugin",
        });
    }
    pub(super) mod admission {
        wasmtime::component::bindgen!({
            path: "../wit/v0.1.0",
            world: "admission-plugin",
            with: {
                "weir:plugin/types": crate::plugin::v0_1_0::bindings::router::weir::plugin::types,
                "weir:plugin/log": crate::plugin::v0_1_0::bindings::router::weir::plugin::log,
            },
        });
    }
    pub(super) mod mutator {
        wasmtime::component::bindgen!({
            path: "../wit/v0.1.0",
            world: "mutator-plugin",
            with: {
                "weir:plugin/types": crate::plugin::v0_1_0::bindings::router::weir::plugin::types,
                "weir:plugin/log": crate::plugin::v0_1_0::bindings::router::weir::plugin::log,
            },
        });
    }
}

use bindings::router::weir::plugin::{log, types};

impl types::Host for HostState {}

impl log::Host for HostState {
    fn log(&mut self, level: log::Level, message: String, fields: Vec<(String, String)>) {
        let level = match level {
            log::Level::Trace => LogLevel::Trace,
            log::Level::Debug => LogLevel::Debug,
            log::Level::Info => LogLevel::Info,
            log::Level::Warn => LogLevel::Warn,
            log::Level::Error => LogLevel::Error,
        };
        self.log.emit(level, &message, &fields);
    }
}

/// Adds this version's host imports (`types`, `log`) to the linker. All three
/// worlds import the same, so the router world's function covers them.
pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    bindings::router::RouterPlugin::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)
}

/// A linked plugin of this version, ready to instantiate.
pub(crate) enum Pre {
    Router(bindings::router::RouterPluginPre<HostState>),
    Admission(bindings::admission::AdmissionPluginPre<HostState>),
    Mutator(bindings::mutator::MutatorPluginPre<HostState>),
}

impl Pre {
    /// Checks the component's exports against `world`'s types.
    pub(crate) fn new(world: World, pre: InstancePre<HostState>) -> wasmtime::Result<Self> {
        Ok(match world {
            World::Router => Pre::Router(bindings::router::RouterPluginPre::new(pre)?),
            World::Admission => Pre::Admission(bindings::admission::AdmissionPluginPre::new(pre)?),
            World::Mutator => Pre::Mutator(bindings::mutator::MutatorPluginPre::new(pre)?),
        })
    }

    fn world(&self) -> World {
        match self {
            Pre::Router(_) => World::Router,
            Pre::Admission(_) => World::Admission,
            Pre::Mutator(_) => World::Mutator,
        }
    }

    fn wrong(&self, called: World) -> Failure {
        Failure::WrongWorld {
            called,
            actual: self.world(),
        }
    }

    pub(crate) fn validate_config(
        &self,
        store: &mut Store<HostState>,
        config: &str,
    ) -> GuestResult<()> {
        let result = match self {
            Pre::Router(pre) => {
                let plugin = pre.instantiate(&mut *store).map_err(Failure::Instantiate)?;
                plugin
                    .weir_plugin_config()
                    .call_validate_config(&mut *store, config)
            }
            Pre::Admission(pre) => {
                let plugin = pre.instantiate(&mut *store).map_err(Failure::Instantiate)?;
                plugin
                    .weir_plugin_config()
                    .call_validate_config(&mut *store, config)
            }
            Pre::Mutator(pre) => {
                let plugin = pre.instantiate(&mut *store).map_err(Failure::Instantiate)?;
                plugin
                    .weir_plugin_config()
                    .call_validate_config(&mut *store, config)
            }
        };
        Ok(result
            .map_err(Failure::Call)?
            .map_err(|e| host::Refusal::message(e.message)))
    }

    pub(crate) fn route(
        &self,
        store: &mut Store<HostState>,
        config: &str,
        ctx: &host::RunContext,
    ) -> GuestResult<host::Route> {
        let Pre::Router(pre) = self else {
            return Err(self.wrong(World::Router));
        };
        let plugin = pre.instantiate(&mut *store).map_err(Failure::Instantiate)?;
        let route = plugin
            .weir_plugin_router()
            .call_route(&mut *store, config, &run_context(ctx))
            .map_err(Failure::Call)?;
        Ok(route
            .map(|r| host::Route {
                pool: r.pool,
                queue: r.queue,
                add_tags: r.add_tags,
            })
            .map_err(|e| host::Refusal::message(e.message)))
    }

    pub(crate) fn admit(
        &self,
        store: &mut Store<HostState>,
        config: &str,
        ctx: &host::RunContext,
        stats: &host::Stats,
    ) -> GuestResult<host::Admission> {
        let Pre::Admission(pre) = self else {
            return Err(self.wrong(World::Admission));
        };
        let plugin = pre.instantiate(&mut *store).map_err(Failure::Instantiate)?;
        let decision = plugin
            .weir_plugin_admission()
            .call_admit(&mut *store, config, &run_context(ctx), &stats_of(stats))
            .map_err(Failure::Call)?;
        Ok(decision
            .map(|d| match d {
                types::Admission::Admit => host::Admission::Admit,
                types::Admission::Reject(reason) => host::Admission::Reject {
                    reason,
                    code: None,
                    details: None,
                },
                types::Admission::Defer(d) => host::Admission::Defer {
                    seconds: d.seconds,
                    reason: d.reason,
                },
            })
            .map_err(|e| host::Refusal::message(e.message)))
    }

    pub(crate) fn mutate(
        &self,
        store: &mut Store<HostState>,
        config: &str,
        ctx: &host::RunContext,
        job: &str,
    ) -> GuestResult<host::Mutation> {
        let Pre::Mutator(pre) = self else {
            return Err(self.wrong(World::Mutator));
        };
        let plugin = pre.instantiate(&mut *store).map_err(Failure::Instantiate)?;
        let ops = plugin
            .weir_plugin_mutator()
            .call_mutate(&mut *store, config, &run_context(ctx), job)
            .map_err(Failure::Call)?;
        Ok(ops
            .map(|ops| host::Mutation::Patch(ops.into_iter().map(patch_op).collect()))
            .map_err(|e| host::Refusal::message(e.message)))
    }
}

fn run_context(ctx: &host::RunContext) -> types::RunContext {
    types::RunContext {
        run_id: ctx.run_id.clone(),
        deployment: ctx.deployment.clone(),
        pool: ctx.pool.clone(),
        queue: ctx.queue.clone(),
        tags: ctx.tags.clone(),
        labels: ctx
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        parameters: ctx.parameters.to_string(),
        job_variables: ctx.job_variables.to_string(),
        parent_run: ctx.parent_run.clone(),
    }
}

fn counts(c: host::Counts) -> types::Counts {
    types::Counts {
        running: c.running,
        queued: c.queued,
    }
}

fn stats_of(stats: &host::Stats) -> types::Stats {
    types::Stats {
        pool: counts(stats.pool),
        queue: counts(stats.queue),
        tags: stats
            .tags
            .iter()
            .map(|(tag, c)| types::TagCounts {
                tag: tag.clone(),
                counts: counts(*c),
            })
            .collect(),
        team: stats.team.clone(),
        team_counts: counts(stats.team_counts),
    }
}

fn patch_op(op: types::PatchOp) -> host::PatchOp {
    host::PatchOp {
        op: match op.op {
            types::PatchKind::Add => host::PatchKind::Add,
            types::PatchKind::Remove => host::PatchKind::Remove,
            types::PatchKind::Replace => host::PatchKind::Replace,
            types::PatchKind::Move => host::PatchKind::Move,
            types::PatchKind::Copy => host::PatchKind::Copy,
            types::PatchKind::Test => host::PatchKind::Test,
        },
        path: op.path,
        from: op.from,
        value: op.value,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use sha2::{Digest, Sha256};

    /// The digest of a WIT directory (relative to the host crate): every
    /// file's name and bytes, in name order (`sha256(name NUL len NUL bytes
    /// ...)`).
    pub(crate) fn digest_of(dir: &str) -> String {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .expect("reading a WIT directory")
            .map(|entry| entry.expect("a directory entry").path())
            .collect();
        files.sort();
        let mut hash = Sha256::new();
        for path in &files {
            let name = path.file_name().expect("a file name").to_string_lossy();
            let bytes = std::fs::read(path).expect("reading a WIT file");
            hash.update(name.as_bytes());
            hash.update([0]);
            hash.update(bytes.len().to_string().as_bytes());
            hash.update([0]);
            hash.update(&bytes);
        }
        hex::encode(hash.finalize())
    }

    /// `wit/v0.1.0/` is frozen: plugins built against it must keep loading,
    /// so its text never changes. A change belongs in a new version's
    /// directory. The digest covers every file's name and bytes, in name
    /// order (`sha256(name NUL len NUL bytes ...)`).
    const FROZEN: &str = "f8ef433d676b2d1cb5097d81ba97093b4b8b7395ab4fbe25ead84637b048e64e";

    #[test]
    fn the_released_contract_is_frozen() {
        assert_eq!(
            digest_of("../wit/v0.1.0"),
            FROZEN,
            "wit/v0.1.0 changed; released contracts are frozen (put changes in a new version)"
        );
    }
}

//! Host bindings for `weir:plugin@0.2.0` (`wit/v0.2.0/plugin.wit`), and the
//! conversions between its generated types and the host's.
//!
//! Frozen with the WIT, as `v0_1_0` is. What 0.2.0 adds on the host side:
//! the judged run is a resource in the call's table (`run` getters read it;
//! `pool-type` asks the call's `Lookup`), `stats.occupancy` asks the
//! `Lookup` when called, refusals are checked and kept structured, a
//! mutator's whole job becomes a patch, and `describe` is checked.

use wasmtime::Store;
use wasmtime::component::{HasSelf, InstancePre, Linker, Resource};

use super::call::{Failure, GuestResult, HostState, LogLevel};
use super::types::{
    self as host, MAX_CONFIG_SCHEMA_BYTES, MAX_DESCRIPTION_NAME_BYTES,
    MAX_DESCRIPTION_VERSION_BYTES, Refusal, World,
};

/// The version string in this binding's export names.
pub(crate) const VERSION: &str = "0.2.0";

/// The judged run, as the guest's `run` resource sees it.
#[allow(unreachable_pub)] // named by the generated bindings, which are `pub`
pub struct RunRef(host::RunContext);

mod bindings {
    pub(super) mod router {
        wasmtime::component::bindgen!({
            path: "../wit/v0.2.0",
            world: "router-plugin",
            with: { "weir:plugin/types.run": crate::plugin::v0_2_0::RunRef },
            imports: { default: trappable },
        });
    }
    pub(super) mod admission {
        wasmtime::component::bindgen!({
            path: "../wit/v0.2.0",
            world: "admission-plugin",
            with: {
                "weir:plugin/types": crate::plugin::v0_2_0::bindings::router::weir::plugin::types,
                "weir:plugin/log": crate::plugin::v0_2_0::bindings::router::weir::plugin::log,
                "weir:plugin/stats": crate::plugin::v0_2_0::bindings::router::weir::plugin::stats,
            },
            imports: { default: trappable },
        });
    }
    pub(super) mod mutator {
        wasmtime::component::bindgen!({
            path: "../wit/v0.2.0",
            world: "mutator-plugin",
            with: {
                "weir:plugin/types": crate::plugin::v0_2_0::bindings::router::weir::plugin::types,
                "weir:plugin/log": crate::plugin::v0_2_0::bindings::router::weir::plugin::log,
                "weir:plugin/stats": crate::plugin::v0_2_0::bindings::router::weir::plugin::stats,
            },
            imports: { default: trappable },
        });
    }
}

use bindings::router::weir::plugin::{log, stats, types};

impl types::Host for HostState {}

impl types::HostRun for HostState {
    fn id(&mut self, run: Resource<RunRef>) -> wasmtime::Result<String> {
        Ok(self.table().get(&run)?.0.run_id.clone())
    }

    fn deployment(&mut self, run: Resource<RunRef>) -> wasmtime::Result<Option<String>> {
        Ok(self.table().get(&run)?.0.deployment.clone())
    }

    fn pool(&mut self, run: Resource<RunRef>) -> wasmtime::Result<String> {
        Ok(self.table().get(&run)?.0.pool.clone())
    }

    fn pool_type(&mut self, run: Resource<RunRef>) -> wasmtime::Result<Option<types::PoolType>> {
        let pool = self.table().get(&run)?.0.pool.clone();
        Ok(HostState::pool_type(self, &pool)?.map(|t| match t {
            crate::domain::PoolType::Process => types::PoolType::Process,
            crate::domain::PoolType::Kubernetes => types::PoolType::Kubernetes,
        }))
    }

    fn queue(&mut self, run: Resource<RunRef>) -> wasmtime::Result<String> {
        Ok(self.table().get(&run)?.0.queue.clone())
    }

    fn tags(&mut self, run: Resource<RunRef>) -> wasmtime::Result<Vec<String>> {
        Ok(self.table().get(&run)?.0.tags.clone())
    }

    fn labels(&mut self, run: Resource<RunRef>) -> wasmtime::Result<Vec<(String, String)>> {
        let ctx = &self.table().get(&run)?.0;
        Ok(ctx
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn label(&mut self, run: Resource<RunRef>, key: String) -> wasmtime::Result<Option<String>> {
        Ok(self.table().get(&run)?.0.labels.get(&key).cloned())
    }

    fn parameters(&mut self, run: Resource<RunRef>) -> wasmtime::Result<String> {
        Ok(self.table().get(&run)?.0.parameters.to_string())
    }

    fn job_variables(&mut self, run: Resource<RunRef>) -> wasmtime::Result<String> {
        Ok(self.table().get(&run)?.0.job_variables.to_string())
    }

    fn parent_run(&mut self, run: Resource<RunRef>) -> wasmtime::Result<Option<String>> {
        Ok(self.table().get(&run)?.0.parent_run.clone())
    }

    fn drop(&mut self, run: Resource<RunRef>) -> wasmtime::Result<()> {
        self.table().delete(run)?;
        Ok(())
    }
}

impl log::Host for HostState {
    fn log(
        &mut self,
        level: log::Level,
        message: String,
        fields: Vec<(String, String)>,
    ) -> wasmtime::Result<()> {
        let level = match level {
            log::Level::Trace => LogLevel::Trace,
            log::Level::Debug => LogLevel::Debug,
            log::Level::Info => LogLevel::Info,
            log::Level::Warn => LogLevel::Warn,
            log::Level::Error => LogLevel::Error,
        };
        self.log.emit(level, &message, &fields);
        Ok(())
    }
}

impl stats::Host for HostState {
    fn occupancy(&mut self, scope: types::Scope) -> wasmtime::Result<types::Counts> {
        let Some((pool, queue)) = self.asker.run.clone() else {
            return Err(wasmtime::Error::msg("occupancy asked outside a decision"));
        };
        let scope = match scope {
            types::Scope::Pool => host::Scope::Pool(pool),
            types::Scope::Queue => host::Scope::Queue { pool, queue },
            types::Scope::Tag(tag) => host::Scope::Tag(tag),
            types::Scope::Label((key, value)) => host::Scope::Label { key, value },
        };
        let counts = HostState::occupancy(self, scope)?;
        Ok(types::Counts {
            running: counts.running,
            queued: counts.queued,
        })
    }
}

/// Adds this version's host imports (`types`' run resource, `log`,
/// `stats`). All three worlds import the same, so the router world's
/// function covers them.
pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    bindings::router::RouterPlugin::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)
}

/// A linked plugin of this version, ready to instantiate.
pub(crate) enum Pre {
    Router(bindings::router::RouterPluginPre<HostState>),
    Admission(bindings::admission::AdmissionPluginPre<HostState>),
    Mutator(bindings::mutator::MutatorPluginPre<HostState>),
}

/// The exported `plugin` interface of whichever world was instantiated.
macro_rules! plugin_interface {
    ($self:expr, $store:expr, |$iface:ident| $body:expr) => {
        match $self {
            Pre::Router(pre) => {
                let plugin = pre
                    .instantiate(&mut *$store)
                    .map_err(Failure::Instantiate)?;
                let $iface = plugin.weir_plugin_plugin();
                $body
            }
            Pre::Admission(pre) => {
                let plugin = pre
                    .instantiate(&mut *$store)
                    .map_err(Failure::Instantiate)?;
                let $iface = plugin.weir_plugin_plugin();
                $body
            }
            Pre::Mutator(pre) => {
                let plugin = pre
                    .instantiate(&mut *$store)
                    .map_err(Failure::Instantiate)?;
                let $iface = plugin.weir_plugin_plugin();
                $body
            }
        }
    };
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

    pub(crate) fn describe(
        &self,
        store: &mut Store<HostState>,
    ) -> GuestResult<Option<host::Description>> {
        let d = plugin_interface!(self, store, |plugin| plugin
            .call_describe(&mut *store)
            .map_err(Failure::Call)?);
        description(d).map(|d| Ok(Some(d))).map_err(Failure::Output)
    }

    pub(crate) fn validate_config(
        &self,
        store: &mut Store<HostState>,
        config: &str,
    ) -> GuestResult<()> {
        let result = plugin_interface!(self, store, |plugin| plugin
            .call_validate_config(&mut *store, config)
            .map_err(Failure::Call)?);
        refused(result)
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
        let run = judged(store, ctx)?;
        let result = plugin
            .weir_plugin_router()
            .call_route(&mut *store, config, borrow(&run))
            .map_err(Failure::Call);
        release(store, run);
        refused(result?)?.map_or_else(
            |r| Ok(Err(r)),
            |r| {
                Ok(Ok(host::Route {
                    pool: r.pool,
                    queue: r.queue,
                    add_tags: r.add_tags,
                }))
            },
        )
    }

    pub(crate) fn admit(
        &self,
        store: &mut Store<HostState>,
        config: &str,
        ctx: &host::RunContext,
    ) -> GuestResult<host::Admission> {
        let Pre::Admission(pre) = self else {
            return Err(self.wrong(World::Admission));
        };
        let plugin = pre.instantiate(&mut *store).map_err(Failure::Instantiate)?;
        let run = judged(store, ctx)?;
        let result = plugin
            .weir_plugin_admission()
            .call_admit(&mut *store, config, borrow(&run))
            .map_err(Failure::Call);
        release(store, run);
        let decision = match refused(result?)? {
            Ok(d) => d,
            Err(r) => return Ok(Err(r)),
        };
        Ok(Ok(match decision {
            types::Admission::Admit => host::Admission::Admit,
            types::Admission::Reject(r) => {
                let r = refusal(r).map_err(Failure::Output)?;
                host::Admission::Reject {
                    reason: r.message,
                    code: r.code,
                    details: r.details,
                }
            }
            types::Admission::Defer(d) => host::Admission::Defer {
                seconds: d.seconds,
                reason: d.reason,
            },
        }))
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
        let run = judged(store, ctx)?;
        let result = plugin
            .weir_plugin_mutator()
            .call_mutate(&mut *store, config, borrow(&run), job)
            .map_err(Failure::Call);
        release(store, run);
        let mutation = match refused(result?)? {
            Ok(m) => m,
            Err(r) => return Ok(Err(r)),
        };
        Ok(Ok(match mutation {
            types::Mutation::Job(text) => host::Mutation::Job(text),
            types::Mutation::Patch(ops) => {
                host::Mutation::Patch(ops.into_iter().map(patch_op).collect())
            }
            types::Mutation::Reject(r) => {
                host::Mutation::Reject(refusal(r).map_err(Failure::Output)?)
            }
        }))
    }
}

/// Puts the judged run in the call's table, and tells the asker whose pool
/// and queue `scope::pool` and `scope::queue` mean.
fn judged(
    store: &mut Store<HostState>,
    ctx: &host::RunContext,
) -> Result<Resource<RunRef>, Failure> {
    let state = store.data_mut();
    state.asker.run = Some((ctx.pool.clone(), ctx.queue.clone()));
    state
        .table()
        .push(RunRef(ctx.clone()))
        .map_err(|e| Failure::Call(wasmtime::Error::msg(format!("run resource: {e}"))))
}

/// A borrow of the run for the call (the host keeps ownership).
fn borrow(run: &Resource<RunRef>) -> Resource<RunRef> {
    Resource::new_borrow(run.rep())
}

fn release(store: &mut Store<HostState>, run: Resource<RunRef>) {
    // The Store is dropped after the call anyway; this keeps the table tidy
    // for a second call on the same Store, should there ever be one.
    let _ = store.data_mut().table().delete(run);
}

/// The guest's `result<T, refusal>`: its refusal checked as 0.2.0 bounds it.
fn refused<T>(result: Result<T, types::Refusal>) -> GuestResult<T> {
    match result {
        Ok(value) => Ok(Ok(value)),
        Err(r) => Ok(Err(refusal(r).map_err(Failure::Output)?)),
    }
}

fn refusal(r: types::Refusal) -> Result<Refusal, String> {
    Refusal::checked(r.code, r.message, r.details)
}

fn description(d: types::Description) -> Result<host::Description, String> {
    if d.name.is_empty() || d.name.len() > MAX_DESCRIPTION_NAME_BYTES {
        return Err(format!(
            "describe: name is {} bytes; 1 to {MAX_DESCRIPTION_NAME_BYTES} are accepted",
            d.name.len()
        ));
    }
    if d.version.len() > MAX_DESCRIPTION_VERSION_BYTES {
        return Err(format!(
            "describe: version is {} bytes; at most {MAX_DESCRIPTION_VERSION_BYTES} are accepted",
            d.version.len()
        ));
    }
    let config_schema = match d.config_schema {
        None => None,
        Some(text) if text.len() > MAX_CONFIG_SCHEMA_BYTES => {
            return Err(format!(
                "describe: config-schema is {} bytes; at most {MAX_CONFIG_SCHEMA_BYTES} are accepted",
                text.len()
            ));
        }
        Some(text) => {
            let schema: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| format!("describe: config-schema is not JSON: {e}"))?;
            if !schema.is_object() {
                return Err("describe: config-schema is not a JSON object".into());
            }
            jsonschema::validator_for(&schema)
                .map_err(|e| format!("describe: config-schema is not a valid JSON Schema: {e}"))?;
            Some(schema)
        }
    };
    Ok(host::Description {
        name: d.name,
        version: d.version,
        summary: d.summary,
        config_schema,
    })
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
mod tests {
    /// `wit/v0.2.0/` is frozen since this host loads it, as 0.1.0 is (see
    /// `v0_1_0::tests`).
    const FROZEN: &str = "a085e42048099341408bb8e6cda8a2d986941e33630ce5820787b05fab1311a4";

    #[test]
    fn the_released_contract_is_frozen() {
        assert_eq!(
            super::super::v0_1_0::tests::digest_of("../wit/v0.2.0"),
            FROZEN,
            "wit/v0.2.0 changed; released contracts are frozen (put changes in a new version)"
        );
    }

    /// The Rust SDK carries its own copy of the contract it builds against
    /// (so it needs nothing outside its crate); the copy is the released one.
    #[test]
    fn the_rust_sdks_copy_is_the_released_contract() {
        assert_eq!(
            super::super::v0_1_0::tests::digest_of("../plugins/sdk/rust/wit"),
            FROZEN,
            "plugins/sdk/rust/wit differs from wit/v0.2.0; copy it again"
        );
    }
}

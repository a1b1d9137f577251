//! The process's wasm engine, loading components, and running their calls.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use wasmtime::component::{Component, Linker};
use wasmtime::{
    Config, Enabled, Engine, EngineWeak, InstanceAllocationStrategy, PoolingAllocationConfig,
};

use super::call::{self, CallSite, DeadlineClocks, GuestResult, HostState, TABLE_ELEMENTS_MAX};
use super::error::{CallError, LoadError};
use super::patch;
use super::types::{
    Admission, Description, Limits, Lookup, Mutated, Mutation, Output, Route, RunContext, World,
    stats_for,
};
use super::{v0_1_0, v0_2_0};

/// How often the epoch advances; deadlines are counted in these ticks.
const EPOCH_TICK: Duration = Duration::from_millis(2);
/// How long past its deadline a caller still waits for a call's thread.
/// A guest is stopped at its deadline while it runs wasm, and its WASI
/// sleeps end at the deadline (`call::DeadlineClock`), so the thread and its
/// concurrency permit are free at the deadline plus at most an epoch tick
/// and the host's check of the output; this is a margin for a loaded
/// machine, not a wait anyone should see.
const WALL_CLOCK_GRACE: Duration = Duration::from_secs(1);
/// How long a call waits for a concurrency slot, beyond its own deadline,
/// before it fails as `busy`. Every call in flight ends by its deadline, so
/// only a runtime saturated by many calls at once waits this long.
const SLOT_WAIT: Duration = Duration::from_secs(1);

/// Pooling allocator sizing: a few hundred instances of small plugins.
/// Every slot reserves address space, not memory: pages are committed on use
/// and returned on reuse, so 512 slots cost little on a 24 GiB machine.
const POOL_INSTANCES: u32 = 512;
/// A Rust `wasm32-wasip2` component has one memory and a few core instances
/// (the program plus small shim modules); componentize-js makes 5 and
/// componentize-py 14 (CPython and its shared libraries, each a core module).
/// A core instance slot is bookkeeping, not linear memory.
const POOL_CORE_INSTANCES_PER_COMPONENT: u32 = 32;
const POOL_MEMORIES_PER_COMPONENT: u32 = 2;
const POOL_TABLES_PER_COMPONENT: u32 = 4;
/// The largest linear memory a plugin can have (`Limits::memory_bytes` cap).
const POOL_MEMORY_BYTES: usize = 64 << 20;
/// Calls run synchronously on blocking threads, so no fiber stacks are used;
/// keep the pool's (reserved even so) small.
const POOL_STACKS: u32 = 8;
/// When an instance ends, its slot stays ready for the next instance of the
/// same component (wasmtime keeps slots affine to a component): the pages
/// the instance touched, up to this many bytes of each memory, are reset to
/// the component's initial image in place (found with Linux's
/// `PAGEMAP_SCAN` where the kernel has it, 6.7+) instead of being handed
/// back to the kernel and faulted in again by the next instance. Every byte
/// still starts each decision at its initial value; what it costs is memory
/// kept resident in warm slots (at most this much per memory, and only pages
/// a decision touched).
const POOL_KEEP_RESIDENT_BYTES: usize = 16 << 20;
/// The same for tables (componentize-py's funcref tables are large).
const POOL_TABLE_KEEP_RESIDENT_BYTES: usize = 1 << 20;
/// Slots kept warm while unused, bounding what they keep resident:
/// 16 × 16 MiB at the very most.
const POOL_MAX_UNUSED_WARM_SLOTS: u32 = 16;

/// The plugin runtime: one wasmtime Engine and Linker for the process, a
/// bound on calls in flight, and the precompiled-artifact cache.
pub struct PluginRuntime {
    engine: Engine,
    /// Host imports for every supported WIT version, plus WASI p2.
    linker: Linker<HostState>,
    /// `"pooling"` or `"on-demand"`, for logs and health output.
    allocator: &'static str,
    /// The most memory an instance can have, whatever a call's limits say.
    memory_ceiling: usize,
    /// Bounds the calls in flight, and so the blocking threads wasm holds.
    calls: Arc<Semaphore>,
    /// The semaphore's size, for the `busy` error.
    max_concurrent: usize,
    cache_dir: Option<PathBuf>,
    /// Loads served from the disk cache (for metrics and tests).
    cache_hits: AtomicU64,
    /// Stops the epoch ticker thread when the runtime goes.
    ticker_stop: Arc<AtomicBool>,
}

impl PluginRuntime {
    /// Creates the engine (pooling allocator, falling back to on-demand
    /// allocation when the pool cannot be reserved), the linker, and the
    /// epoch ticker thread. `cache_dir`: where precompiled artifacts go
    /// (`None`: no disk cache). `max_concurrent`: calls in flight (at least
    /// one, at most the pool's instance count).
    pub fn new(cache_dir: Option<PathBuf>, max_concurrent: usize) -> Result<Arc<Self>, LoadError> {
        if let Some(dir) = &cache_dir {
            std::fs::create_dir_all(dir).map_err(|e| LoadError::CacheDir {
                path: dir.display().to_string(),
                reason: e.to_string(),
            })?;
        }
        let (engine, allocator, memory_ceiling) = match Engine::new(&engine_config(true)) {
            Ok(engine) => (engine, "pooling", POOL_MEMORY_BYTES),
            Err(pool_error) => {
                tracing::warn!(
                    error = %format!("{pool_error:#}"),
                    "plugin runtime: the pooling allocator is unavailable; using on-demand allocation"
                );
                let engine = Engine::new(&engine_config(false))
                    .map_err(|e| LoadError::Engine(format!("{e:#}")))?;
                // The same ceiling as a pool slot, so a binding's limit
                // means the same whichever allocator is in use.
                (engine, "on-demand", POOL_MEMORY_BYTES)
            }
        };
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| LoadError::Engine(format!("linking WASI: {e:#}")))?;
        // WASI's monotonic clock, replaced by one whose sleeps end at the
        // call's deadline (a host call is out of reach of the epoch).
        linker.allow_shadowing(true);
        wasmtime_wasi::p2::bindings::clocks::monotonic_clock::add_to_linker::<
            HostState,
            DeadlineClocks,
        >(&mut linker, HostState::clock)
        .map_err(|e| LoadError::Engine(format!("linking the deadline clock: {e:#}")))?;
        linker.allow_shadowing(false);
        v0_1_0::add_to_linker(&mut linker)
            .map_err(|e| LoadError::Engine(format!("linking weir:plugin@0.1.0: {e:#}")))?;
        v0_2_0::add_to_linker(&mut linker)
            .map_err(|e| LoadError::Engine(format!("linking weir:plugin@0.2.0: {e:#}")))?;

        let max_concurrent = max_concurrent.clamp(1, POOL_INSTANCES as usize);
        let ticker_stop = Arc::new(AtomicBool::new(false));
        spawn_ticker(engine.weak(), Arc::clone(&ticker_stop))
            .map_err(|e| LoadError::Engine(format!("starting the epoch ticker: {e}")))?;
        tracing::info!(
            allocator,
            max_concurrent,
            cache_dir = cache_dir.as_ref().map(|d| d.display().to_string()),
            "plugin runtime ready"
        );
        Ok(Arc::new(PluginRuntime {
            engine,
            linker,
            allocator,
            memory_ceiling,
            calls: Arc::new(Semaphore::new(max_concurrent)),
            max_concurrent,
            cache_dir,
            cache_hits: AtomicU64::new(0),
            ticker_stop,
        }))
    }

    /// The instance allocator in use: `"pooling"` or `"on-demand"`.
    pub fn allocator(&self) -> &'static str {
        self.allocator
    }

    /// Loads served from the precompiled-artifact cache so far.
    pub fn cache_hits(&self) -> u64 {
        self.cache_hits.load(Ordering::Relaxed)
    }

    /// Checks the bytes are a component, detects its world and WIT version
    /// from its exports, precompiles it (or loads the cached artifact, keyed
    /// by the wasm's sha256 and the engine's compatibility hash; a cached
    /// artifact that fails to load is a miss), and links it once. The CPU
    /// work runs on a blocking thread.
    pub async fn load(self: &Arc<Self>, wasm: &[u8]) -> Result<LoadedPlugin, LoadError> {
        check_header(wasm)?;
        let runtime = Arc::clone(self);
        let wasm = wasm.to_vec();
        tokio::task::spawn_blocking(move || runtime.load_blocking(&wasm))
            .await
            .map_err(|e| LoadError::Host(format!("load task failed: {e}")))?
    }

    fn load_blocking(self: Arc<Self>, wasm: &[u8]) -> Result<LoadedPlugin, LoadError> {
        let hex_digest = hex::encode(Sha256::digest(wasm));
        let component = self.compile_or_cached(wasm, &hex_digest)?;
        let (world, version) = detect_world(&component, &self.engine)?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Link(format!("{e:#}")))?;
        let pre = match version {
            v0_1_0::VERSION => Versioned::V0_1_0(
                v0_1_0::Pre::new(world, pre).map_err(|e| LoadError::Link(format!("{e:#}")))?,
            ),
            v0_2_0::VERSION => Versioned::V0_2_0(
                v0_2_0::Pre::new(world, pre).map_err(|e| LoadError::Link(format!("{e:#}")))?,
            ),
            other => {
                return Err(LoadError::UnsupportedVersion {
                    version: other.to_string(),
                    supported: SUPPORTED_VERSIONS.to_vec(),
                });
            }
        };
        let digest = format!("sha256:{hex_digest}");
        tracing::info!(plugin = %digest, %world, version, "plugin loaded");
        Ok(LoadedPlugin {
            inner: Arc::new(Loaded {
                digest: Arc::from(digest),
                world,
                version,
                pre,
                runtime: self,
            }),
        })
    }

    fn compile_or_cached(&self, wasm: &[u8], hex_digest: &str) -> Result<Component, LoadError> {
        let path = self
            .cache_dir
            .as_ref()
            .map(|dir| dir.join(format!("{hex_digest}-{}.cwasm", compat_key(&self.engine))));
        if let Some(path) = &path
            && let Some(component) = self.read_cached(path)
        {
            self.cache_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(component);
        }
        let artifact = self
            .engine
            .precompile_component(wasm)
            .map_err(|e| LoadError::Compile(format!("{e:#}")))?;
        // SAFETY: `artifact` was produced just now by this engine's
        // `precompile_component`, which is what `deserialize` requires.
        let component = unsafe { Component::deserialize(&self.engine, &artifact) }
            .map_err(|e| LoadError::Compile(format!("{e:#}")))?;
        if let Some(path) = &path {
            write_cached(path, &artifact);
        }
        Ok(component)
    }

    /// The cached component at `path`, or `None` on any problem (a miss).
    ///
    /// The artifact is mapped from its file, not copied into memory: its
    /// code and data pages are then the page cache's, resident only as far
    /// as they are used and shared by every server on the machine (a
    /// componentize-py artifact is ~35 MB, most of it code a decision never
    /// runs). Its checksum is in a file beside it (`checksum_path`).
    fn read_cached(&self, path: &Path) -> Option<Component> {
        let expected = std::fs::read(checksum_path(path)).ok()?;
        let mut file = std::fs::File::open(path).ok()?;
        let mut hasher = Sha256::new();
        std::io::copy(&mut file, &mut hasher).ok()?;
        if hasher.finalize().as_slice() != expected.as_slice() {
            tracing::warn!(path = %path.display(), "plugin cache: corrupt artifact, recompiling");
            return None;
        }
        // SAFETY: `deserialize_file` trusts the file to be an artifact that
        // wasmtime produced, and not to change while it is mapped. This file
        // is in a cache directory its operator owns (a server's
        // DATA_DIR/plugin-cache, `weir plugin test`'s --cache-dir), was
        // written by `write_cached` from `precompile_component` output and
        // is only ever replaced whole (a rename), never written in place; its
        // checksum (checked above) rules out damage since; its name carries
        // the engine's compatibility hash, and wasmtime checks the header
        // again. A failure is only a miss.
        match unsafe { Component::deserialize_file(&self.engine, path) } {
            Ok(component) => Some(component),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %format!("{e:#}"), "plugin cache: unusable artifact, recompiling");
                None
            }
        }
    }

    fn site<'a>(
        &'a self,
        plugin: &'a Loaded,
        run: Option<String>,
        lookup: Option<Arc<dyn Lookup>>,
    ) -> CallSite<'a> {
        CallSite {
            lookup,
            engine: &self.engine,
            digest: &plugin.digest,
            world: plugin.world,
            run,
            epoch_tick: EPOCH_TICK,
            memory_ceiling: self.memory_ceiling,
        }
    }
}

impl Drop for PluginRuntime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for PluginRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginRuntime")
            .field("allocator", &self.allocator)
            .field("cache_dir", &self.cache_dir)
            .finish_non_exhaustive()
    }
}

const SUPPORTED_VERSIONS: &[&str] = &[v0_1_0::VERSION, v0_2_0::VERSION];

/// A linked plugin, by the WIT version it was built against.
enum Versioned {
    V0_1_0(v0_1_0::Pre),
    V0_2_0(v0_2_0::Pre),
}

/// A loaded plugin: cheap to clone, callable concurrently.
#[derive(Clone)]
pub struct LoadedPlugin {
    inner: Arc<Loaded>,
}

struct Loaded {
    digest: Arc<str>,
    world: World,
    version: &'static str,
    pre: Versioned,
    runtime: Arc<PluginRuntime>,
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("digest", &self.inner.digest)
            .field("world", &self.inner.world)
            .field("wit_version", &self.inner.version)
            .finish()
    }
}

impl LoadedPlugin {
    /// `sha256:<hex>` of the component's bytes.
    pub fn digest(&self) -> &str {
        &self.inner.digest
    }

    pub fn world(&self) -> World {
        self.inner.world
    }

    /// The `weir:plugin` version it was built against, e.g. `0.1.0`.
    pub fn wit_version(&self) -> &str {
        self.inner.version
    }

    /// Calls `describe` (0.2.0 on): what the plugin says it is, its config
    /// schema checked to compile. `None` for a 0.1.0 plugin, which has none.
    pub async fn describe(
        &self,
        limits: &Limits,
    ) -> (Result<Option<Description>, CallError>, Duration) {
        self.call(None, None, None, limits, Ok, move |pre, store| match pre {
            Versioned::V0_1_0(_) => Ok(Ok(None)),
            Versioned::V0_2_0(pre) => pre.describe(store),
        })
        .await
    }

    /// Checks a binding's config: against the schema the plugin describes
    /// (0.2.0 on; [`CallError::ConfigSchema`] names each place it fails),
    /// then by its `validate-config` (`Err(CallError::Plugin)` carries the
    /// plugin's reason for refusing it).
    pub async fn validate_config(
        &self,
        config: &str,
        limits: &Limits,
    ) -> (Result<(), CallError>, Duration) {
        let (described, described_in) = self.describe(limits).await;
        let schema = match described {
            Ok(d) => d.and_then(|d| d.config_schema),
            Err(e) => return (Err(e), described_in),
        };
        if let Some(schema) = schema
            && let Err(e) = check_config(&schema, config)
        {
            return (Err(e), described_in);
        }
        let config = config.to_string();
        let (result, elapsed) = self
            .call(None, None, None, limits, Ok, move |pre, store| match pre {
                Versioned::V0_1_0(pre) => pre.validate_config(store, &config),
                Versioned::V0_2_0(pre) => pre.validate_config(store, &config),
            })
            .await;
        (result, described_in + elapsed)
    }

    /// Calls `route`. `lookup` answers what a 0.2.0 router asks (its pool's
    /// type, occupancy).
    pub async fn route(
        &self,
        config: &str,
        ctx: &RunContext,
        lookup: &Arc<dyn Lookup>,
        limits: &Limits,
    ) -> (Result<Route, CallError>, Duration) {
        let (config, ctx) = (config.to_string(), ctx.clone());
        let run = Some(ctx.run_id.clone());
        self.call(
            Some(World::Router),
            run,
            Some(Arc::clone(lookup)),
            limits,
            Ok,
            move |pre, store| match pre {
                Versioned::V0_1_0(pre) => pre.route(store, &config, &ctx),
                Versioned::V0_2_0(pre) => pre.route(store, &config, &ctx),
            },
        )
        .await
    }

    /// Calls `admit`. A 0.1.0 plugin is given its fixed counts, asked of
    /// `lookup` first (a failure to read them is [`CallError::Host`]); a
    /// 0.2.0 plugin asks `lookup` what it wants when it wants it.
    pub async fn admit(
        &self,
        config: &str,
        ctx: &RunContext,
        lookup: &Arc<dyn Lookup>,
        limits: &Limits,
    ) -> (Result<Admission, CallError>, Duration) {
        let stats = match &self.inner.pre {
            Versioned::V0_1_0(_) => match stats_for(ctx, &**lookup).await {
                Ok(stats) => Some(stats),
                Err(reason) => {
                    let reason = format!("reading admission stats: {reason}");
                    return (Err(CallError::Host { reason }), Duration::ZERO);
                }
            },
            Versioned::V0_2_0(_) => None,
        };
        let (config, ctx) = (config.to_string(), ctx.clone());
        let run = Some(ctx.run_id.clone());
        self.call(
            Some(World::Admission),
            run,
            Some(Arc::clone(lookup)),
            limits,
            Ok,
            move |pre, store| match (pre, &stats) {
                (Versioned::V0_1_0(pre), Some(stats)) => pre.admit(store, &config, &ctx, stats),
                (Versioned::V0_1_0(_), None) => Err(call::Failure::Output(
                    "no stats for a 0.1.0 admission plugin".into(),
                )),
                (Versioned::V0_2_0(pre), _) => pre.admit(store, &config, &ctx),
            },
        )
        .await
    }

    /// Calls `mutate` with `job` as JSON text. A patch is applied to the
    /// job; a whole job (0.2.0) is taken as it is, with the patch from `job`
    /// to it checked against `forbidden` and recorded, so the outcome and
    /// the recorded patch are the same whichever the plugin returned. An op
    /// that writes at or under a `forbidden` pointer, a patch that does not
    /// apply, value text that is not JSON, and a job that is not a JSON
    /// object within the job bounds are [`CallError::InvalidOutput`].
    pub async fn mutate(
        &self,
        config: &str,
        ctx: &RunContext,
        job: &serde_json::Value,
        forbidden: &[String],
        lookup: &Arc<dyn Lookup>,
        limits: &Limits,
    ) -> (Result<Mutated, CallError>, Duration) {
        let (config, ctx) = (config.to_string(), ctx.clone());
        let run = Some(ctx.run_id.clone());
        let job = job.clone();
        let job_text = job.to_string();
        let forbidden = forbidden.to_vec();
        let apply = move |mutation: Mutation| match mutation {
            Mutation::Patch(ops) => {
                patch::apply(&job, &ops, &forbidden).map(|(job, patch)| Mutated::Job { job, patch })
            }
            Mutation::Job(text) => patch::accept_job(&job, &text, &forbidden)
                .map(|(job, patch)| Mutated::Job { job, patch }),
            Mutation::Reject(refusal) => Ok(Mutated::Reject(refusal)),
        };
        self.call(
            Some(World::Mutator),
            run,
            Some(Arc::clone(lookup)),
            limits,
            apply,
            move |pre, store| match pre {
                Versioned::V0_1_0(pre) => pre.mutate(store, &config, &ctx, &job_text),
                Versioned::V0_2_0(pre) => pre.mutate(store, &config, &ctx, &job_text),
            },
        )
        .await
    }

    /// Runs `guest` in a fresh sandbox on a blocking thread, under the
    /// concurrency permit, then `finish` on its output (same thread). The
    /// duration is from getting the permit to the result.
    async fn call<T, U>(
        &self,
        world: Option<World>,
        run: Option<String>,
        lookup: Option<Arc<dyn Lookup>>,
        limits: &Limits,
        finish: impl FnOnce(T) -> Result<U, CallError> + Send + 'static,
        guest: impl FnOnce(&Versioned, &mut wasmtime::Store<HostState>) -> GuestResult<T>
        + Send
        + 'static,
    ) -> (Result<U, CallError>, Duration)
    where
        T: Output,
        U: Send + 'static,
    {
        if let Some(called) = world
            && called != self.inner.world
        {
            let reason = format!("{called} function called on a {} plugin", self.inner.world);
            return (Err(CallError::Host { reason }), Duration::ZERO);
        }
        let runtime = &self.inner.runtime;
        let wait = limits.deadline + SLOT_WAIT;
        let acquire = Arc::clone(&runtime.calls).acquire_owned();
        let permit = match tokio::time::timeout(wait, acquire).await {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) => {
                let reason = "plugin runtime is shutting down".to_string();
                return (Err(CallError::Host { reason }), Duration::ZERO);
            }
            Err(_) => {
                let slots = runtime.max_concurrent;
                return (
                    Err(CallError::Busy {
                        slots,
                        waited: wait,
                    }),
                    wait,
                );
            }
        };
        let started = Instant::now();
        let plugin = Arc::clone(&self.inner);
        let task_limits = limits.clone();
        // The caller's subscriber and span (plugin name, run...) follow the
        // work to the blocking thread, and so do the plugin's log events.
        let dispatch = tracing::dispatcher::get_default(Clone::clone);
        let span = tracing::Span::current();
        let task = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            tracing::dispatcher::with_default(&dispatch, || {
                let _span = span.enter();
                let site = plugin.runtime.site(&plugin, run, lookup);
                call::run(site, &task_limits, |store| guest(&plugin.pre, store)).and_then(finish)
            })
        });
        let result = match tokio::time::timeout(limits.deadline + WALL_CLOCK_GRACE, task).await {
            Ok(Ok(result)) => result,
            Ok(Err(e)) => Err(CallError::Host {
                reason: format!("plugin call task failed: {e}"),
            }),
            Err(_) => Err(CallError::Timeout {
                deadline: limits.deadline,
            }),
        };
        (result, started.elapsed())
    }
}

pub(super) fn engine_config(pooling: bool) -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    // Frame numbers without names add nothing to a trap message but length;
    // the guest's panic text from its stderr is what tells the story.
    config.wasm_backtrace_max_frames(None);
    if pooling {
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(POOL_INSTANCES)
            .total_core_instances(POOL_INSTANCES * POOL_CORE_INSTANCES_PER_COMPONENT)
            .total_memories(POOL_INSTANCES * POOL_MEMORIES_PER_COMPONENT)
            .total_tables(POOL_INSTANCES * POOL_TABLES_PER_COMPONENT)
            .total_stacks(POOL_STACKS)
            .max_core_instances_per_component(POOL_CORE_INSTANCES_PER_COMPONENT)
            .max_memories_per_component(POOL_MEMORIES_PER_COMPONENT)
            .max_tables_per_component(POOL_TABLES_PER_COMPONENT)
            .max_memory_size(POOL_MEMORY_BYTES)
            .table_elements(TABLE_ELEMENTS_MAX)
            .linear_memory_keep_resident(POOL_KEEP_RESIDENT_BYTES)
            .table_keep_resident(POOL_TABLE_KEEP_RESIDENT_BYTES)
            .max_unused_warm_slots(POOL_MAX_UNUSED_WARM_SLOTS)
            .pagemap_scan(Enabled::Auto);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    config
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until stopped or the
/// engine is gone. A plain thread: the runtime may be built outside tokio.
fn spawn_ticker(engine: EngineWeak, stop: Arc<AtomicBool>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("weir-plugin-epoch".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(EPOCH_TICK);
                match engine.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => break,
                }
            }
        })
        .map(drop)
}

/// Refuses what is not a component before any compiling: the 8-byte header
/// is `\0asm`, then version 0x0d and layer 1 for a component (version 1,
/// layer 0 for a core module).
fn check_header(wasm: &[u8]) -> Result<(), LoadError> {
    let Some((magic, rest)) = wasm.split_first_chunk::<4>() else {
        return Err(LoadError::NotAComponent(format!(
            "{} bytes is too short to be WebAssembly",
            wasm.len()
        )));
    };
    if magic != b"\0asm" {
        return Err(LoadError::NotAComponent(
            "no WebAssembly magic number (\\0asm)".into(),
        ));
    }
    match rest.first_chunk::<4>() {
        Some([0x0d, 0x00, 0x01, 0x00]) => Ok(()),
        Some([0x01, 0x00, 0x00, 0x00]) => Err(LoadError::NotAComponent(
            "a core WebAssembly module; build for wasm32-wasip2 (or wrap it with `wasm-tools component new`)".into(),
        )),
        _ => Err(LoadError::NotAComponent(
            "unknown WebAssembly version or layer".into(),
        )),
    }
}

/// The world and WIT version a component targets, from its export names
/// (`weir:plugin/mutator@0.1.0` → mutator, `0.1.0`).
fn detect_world(
    component: &Component,
    engine: &Engine,
) -> Result<(World, &'static str), LoadError> {
    let exports: Vec<String> = component
        .component_type()
        .exports(engine)
        .map(|(name, _)| name.to_string())
        .collect();
    let mut found = Vec::new();
    for name in &exports {
        let Some((interface, version)) = name
            .strip_prefix("weir:plugin/")
            .and_then(|rest| rest.split_once('@'))
        else {
            continue;
        };
        let world = match interface {
            "router" => World::Router,
            "admission" => World::Admission,
            "mutator" => World::Mutator,
            _ => continue,
        };
        found.push((world, version));
    }
    match found.as_slice() {
        [] => Err(LoadError::UnknownWorld { exports }),
        [(world, version)] => match SUPPORTED_VERSIONS.iter().find(|v| *v == version) {
            Some(version) => Ok((*world, version)),
            None => Err(LoadError::UnsupportedVersion {
                version: version.to_string(),
                supported: SUPPORTED_VERSIONS.to_vec(),
            }),
        },
        several => Err(LoadError::MultipleWorlds {
            worlds: several.iter().map(|(w, v)| format!("{w}@{v}")).collect(),
        }),
    }
}

/// 16 hex digits of the engine's precompile compatibility hash: artifacts
/// from another wasmtime version or configuration get another file name.
fn compat_key(engine: &Engine) -> String {
    struct Sha256Hasher(Sha256);
    impl Hasher for Sha256Hasher {
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
        fn finish(&self) -> u64 {
            let digest = self.0.clone().finalize();
            let mut first = [0u8; 8];
            first.copy_from_slice(&digest[..8]);
            u64::from_le_bytes(first)
        }
    }
    let mut hasher = Sha256Hasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

/// Writes `artifact` behind its sha256, through a temporary file and a
/// rename, so a reader never sees half a file. Failure only costs a
/// recompile next time.
/// Where the SHA-256 of the artifact at `path` is kept: `<name>.sha256`.
fn checksum_path(path: &Path) -> std::path::PathBuf {
    path.with_extension("sha256")
}

/// Writes the artifact, then its checksum, each to a temporary file renamed
/// into place: a reader sees a whole file or none, and an artifact without
/// its checksum (a crash between the two) is a miss.
fn write_cached(path: &Path, artifact: &[u8]) {
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    let write = |to: &Path, contents: &[u8]| {
        let tmp = to.with_extension(format!(
            "tmp-{}-{}",
            std::process::id(),
            SEQUENCE.fetch_add(1, Ordering::Relaxed)
        ));
        let written = std::fs::write(&tmp, contents).and_then(|()| std::fs::rename(&tmp, to));
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written
    };
    // The old checksum first: a reader between the two renames then finds
    // the new artifact without a matching checksum (a miss), never an old
    // checksum that a new artifact happens to be checked against.
    let _ = std::fs::remove_file(checksum_path(path));
    let written = write(path, artifact)
        .and_then(|()| write(&checksum_path(path), Sha256::digest(artifact).as_slice()));
    if let Err(e) = written {
        tracing::warn!(path = %path.display(), error = %e, "plugin cache: could not write artifact");
    }
}

/// Checks a binding's config (JSON text) against a plugin's config schema.
fn check_config(schema: &serde_json::Value, config: &str) -> Result<(), CallError> {
    let refuse = |errors: String| Err(CallError::ConfigSchema { errors });
    let config: serde_json::Value = match serde_json::from_str(config) {
        Ok(v) => v,
        Err(e) => return refuse(format!("not JSON: {e}")),
    };
    let validator = match jsonschema::validator_for(schema) {
        Ok(v) => v,
        Err(e) => return refuse(format!("the plugin's schema does not compile: {e}")),
    };
    let errors: Vec<String> = validator
        .iter_errors(&config)
        .take(8)
        .map(|e| {
            let at = e.instance_path.to_string();
            format!(
                "config{}: {e}",
                if at.is_empty() { String::new() } else { at }
            )
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        refuse(errors.join("; "))
    }
}

//! One plugin call, on a blocking thread: a fresh sandboxed Store, the guest
//! call, and the classification of whatever went wrong.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{HasData, Resource, ResourceTable};
use wasmtime::{Engine, ResourceLimiter, Store, Trap};
use wasmtime_wasi::p2::bindings::clocks::monotonic_clock;
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};
use wasmtime_wasi::p2::{DynPollable, Pollable, subscribe};
use wasmtime_wasi::{Deterministic, WasiCtx, WasiCtxView, WasiView};

use super::error::CallError;
use super::types::{
    Counts, Limits, Lookup, MAX_OCCUPANCY_QUESTIONS, MAX_PATCH_OPS, Output, Refusal, Scope, World,
};

/// Bytes of guest stdout and stderr kept per call. Past this a guest's
/// writes fail (a Rust guest then panics), which is its problem, not ours.
const STDIO_CAPTURE_BYTES: usize = 64 << 10;
/// The most of a trap message (and of captured stdio in logs) kept.
const MESSAGE_MAX_BYTES: usize = 1024;
/// `log` calls honoured per decision; the rest are counted and dropped.
const LOG_EVENTS_MAX: u32 = 100;
const LOG_MESSAGE_MAX_BYTES: usize = 2048;
const LOG_FIELDS_MAX: usize = 32;
const LOG_FIELD_MAX_BYTES: usize = 256;
/// Table elements an instance may grow a table to (matches the pool's slots).
pub(crate) const TABLE_ELEMENTS_MAX: usize = 20_000;
/// The fixed "random" bytes every plugin sees: the WIT promises plugins no
/// randomness beyond the clocks, so that a decision is reproducible.
const RANDOM_SEED: &[u8] = b"weir:plugin deterministic random";

/// A guest call's outcome before classification: the plugin's own refusal to
/// decide (0.1.0 `plugin-error`, 0.2.0 `refusal`) is the inner `Err`.
pub(crate) type GuestResult<T> = Result<Result<T, Refusal>, Failure>;

/// How a guest call failed, by stage, so that a failure to instantiate (a
/// host matter, unless the guest's own start code misbehaved) is told apart
/// from a failure inside the call (the guest's fault).
pub(crate) enum Failure {
    Instantiate(wasmtime::Error),
    Call(wasmtime::Error),
    WrongWorld {
        called: World,
        actual: World,
    },
    /// The guest returned, but what it returned breaks the contract's
    /// bounds (a refusal code's alphabet, details that are not an object).
    Output(String),
}

/// Hostcall fuel beyond the output cap: what lifting a decision's records
/// (not their strings) costs, e.g. `MAX_PATCH_OPS` patch ops at ~80 bytes.
const FUEL_RECORD_ALLOWANCE: usize = MAX_PATCH_OPS * 128;

/// The Store's data: WASI, the memory limiter, the `log` sink, and the
/// call's wall-clock deadline for the clock the guest sleeps on.
pub(crate) struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: MemoryLimiter,
    pub(crate) log: LogSink,
    /// When the call's deadline passes: no WASI sleep outlasts it.
    deadline: tokio::time::Instant,
    /// Answers the 0.2.0 questions (`stats.occupancy`, `run.pool-type`).
    pub(crate) asker: Asker,
    /// Set when a host function failed the call for the host's own reason
    /// (the store unreachable, the deadline passed while it was asked): the
    /// outcome is this, not the trap the guest then sees.
    host_failure: Option<CallError>,
}

/// The host side of a 0.2.0 plugin's questions: asked of the call's
/// [`Lookup`] on the runtime the call came from, each distinct question
/// once per decision, at most [`MAX_OCCUPANCY_QUESTIONS`] of them, and never
/// past the call's deadline.
pub(crate) struct Asker {
    lookup: Option<Arc<dyn Lookup>>,
    runtime: Option<tokio::runtime::Handle>,
    answers: std::collections::HashMap<Scope, Counts>,
    /// The judged run's pool and queue, for `scope::pool` and `scope::queue`.
    pub(crate) run: Option<(String, String)>,
    pool_types: std::collections::HashMap<String, Option<crate::domain::PoolType>>,
}

impl HostState {
    /// Fails the call for a host reason; returns the error that makes the
    /// guest trap (its text is not what is reported).
    fn fail(&mut self, failure: CallError) -> wasmtime::Error {
        let message = failure.to_string();
        self.host_failure.get_or_insert(failure);
        wasmtime::Error::msg(message)
    }

    /// Blocks this (blocking) thread on `future`, until the call's deadline.
    fn wait<T>(
        &mut self,
        what: &str,
        future: impl std::future::Future<Output = Result<T, String>>,
    ) -> wasmtime::Result<T> {
        let Some(runtime) = self.asker.runtime.clone() else {
            return Err(self.fail(CallError::Host {
                reason: format!("{what}: no async runtime to ask on"),
            }));
        };
        let deadline = self.deadline;
        match runtime.block_on(tokio::time::timeout_at(deadline, future)) {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(reason)) => Err(self.fail(CallError::Host {
                reason: format!("{what}: {reason}"),
            })),
            Err(_) => {
                let limit = self.log.deadline;
                Err(self.fail(CallError::Timeout { deadline: limit }))
            }
        }
    }

    /// `stats.occupancy`, with the scope resolved against the judged run.
    pub(crate) fn occupancy(&mut self, scope: Scope) -> wasmtime::Result<Counts> {
        if let Some(counts) = self.asker.answers.get(&scope) {
            return Ok(*counts);
        }
        if self.asker.answers.len() >= MAX_OCCUPANCY_QUESTIONS {
            return Err(self.fail(CallError::InvalidOutput {
                reason: format!(
                    "the plugin asked more than {MAX_OCCUPANCY_QUESTIONS} distinct occupancy questions in one decision"
                ),
            }));
        }
        let Some(lookup) = self.asker.lookup.clone() else {
            return Err(self.fail(CallError::Host {
                reason: "occupancy asked outside a decision".into(),
            }));
        };
        let counts = self.wait("reading occupancy", async {
            lookup.occupancy(&scope).await
        })?;
        self.asker.answers.insert(scope, counts);
        Ok(counts)
    }

    /// `run.pool-type`.
    pub(crate) fn pool_type(
        &mut self,
        pool: &str,
    ) -> wasmtime::Result<Option<crate::domain::PoolType>> {
        if let Some(known) = self.asker.pool_types.get(pool) {
            return Ok(*known);
        }
        let Some(lookup) = self.asker.lookup.clone() else {
            return Ok(None);
        };
        let answer = self.wait("reading the pool's type", async {
            lookup.pool_type(pool).await
        })?;
        self.asker.pool_types.insert(pool.to_owned(), answer);
        Ok(answer)
    }

    pub(crate) fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
    }
}

impl HostState {
    pub(crate) fn clock(&mut self) -> DeadlineClock<'_> {
        DeadlineClock {
            table: &mut self.table,
            deadline: self.deadline,
        }
    }
}

/// `wasi:clocks/monotonic-clock` with every sleep cut at the call's deadline.
///
/// Epoch interruption stops a guest running wasm, not one blocked in a host
/// call: with WASI's own clock, a guest sleeping in `subscribe-duration` +
/// `poll` held its thread and its call slot long after its caller had
/// given up. Here a sleep ends at the deadline at the latest; the guest then
/// runs wasm again and the (passed) epoch deadline traps it. The clocks are
/// the only imports that can block: stdin is empty, stdout and stderr are
/// memory pipes, and there are no sockets or files.
pub(crate) struct DeadlineClock<'a> {
    table: &'a mut ResourceTable,
    deadline: tokio::time::Instant,
}

/// [`HasData`] for [`DeadlineClock`], to add it to the linker.
pub(crate) struct DeadlineClocks;

impl HasData for DeadlineClocks {
    type Data<'a> = DeadlineClock<'a>;
}

/// The process-wide origin of the guests' monotonic clock.
fn clock_origin() -> std::time::Instant {
    static ORIGIN: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    *ORIGIN.get_or_init(std::time::Instant::now)
}

impl DeadlineClock<'_> {
    fn sleep(&mut self, duration: Duration) -> wasmtime::Result<Resource<DynPollable>> {
        let now = tokio::time::Instant::now();
        let until = now.checked_add(duration).unwrap_or(self.deadline);
        let sleep = self.table.push(Sleep(until.min(self.deadline)))?;
        subscribe(self.table, sleep)
    }
}

impl monotonic_clock::Host for DeadlineClock<'_> {
    fn now(&mut self) -> wasmtime::Result<monotonic_clock::Instant> {
        Ok(u64::try_from(clock_origin().elapsed().as_nanos()).unwrap_or(u64::MAX))
    }

    fn resolution(&mut self) -> wasmtime::Result<monotonic_clock::Instant> {
        Ok(1)
    }

    fn subscribe_instant(
        &mut self,
        when: monotonic_clock::Instant,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        let now = self.now()?;
        self.sleep(Duration::from_nanos(when.saturating_sub(now)))
    }

    fn subscribe_duration(
        &mut self,
        duration: monotonic_clock::Duration,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        self.sleep(Duration::from_nanos(duration))
    }
}

/// A guest's sleep, already cut at its call's deadline.
struct Sleep(tokio::time::Instant);

#[async_trait::async_trait]
impl Pollable for Sleep {
    async fn ready(&mut self) {
        tokio::time::sleep_until(self.0).await;
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Caps linear memory at the call's limit and remembers a refusal, so that
/// the trap a guest hits after a failed allocation is reported as what it is.
struct MemoryLimiter {
    limit: usize,
    denied: bool,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.denied = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        // The pool's slot size or the OS refused: the same thing to the guest.
        self.denied = true;
        Ok(())
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= TABLE_ELEMENTS_MAX)
    }
}

/// Where a plugin's `log` calls go: `tracing` events tagged with the plugin
/// digest, world and run, bounded in number and size per decision.
pub(crate) struct LogSink {
    plugin: Arc<str>,
    world: World,
    run: Option<String>,
    emitted: u32,
    dropped: u32,
    /// The call's deadline as configured, for a timeout's message.
    deadline: Duration,
}

/// The WIT `log.level`, version-neutral.
#[derive(Clone, Copy)]
pub(crate) enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl LogSink {
    pub(crate) fn emit(&mut self, level: LogLevel, message: &str, fields: &[(String, String)]) {
        if self.emitted >= LOG_EVENTS_MAX {
            self.dropped = self.dropped.saturating_add(1);
            return;
        }
        self.emitted += 1;
        let message = clip(message, LOG_MESSAGE_MAX_BYTES);
        let fields = Fields(fields);
        let plugin = &*self.plugin;
        let world = self.world.as_str();
        let run = self.run.as_deref().unwrap_or("");
        macro_rules! event {
            ($level:expr) => {
                tracing::event!(
                    target: "weir::plugin::guest",
                    $level,
                    plugin,
                    world,
                    run,
                    fields = %fields,
                    "{message}"
                )
            };
        }
        match level {
            LogLevel::Trace => event!(tracing::Level::TRACE),
            LogLevel::Debug => event!(tracing::Level::DEBUG),
            LogLevel::Info => event!(tracing::Level::INFO),
            LogLevel::Warn => event!(tracing::Level::WARN),
            LogLevel::Error => event!(tracing::Level::ERROR),
        }
    }
}

/// A plugin's log fields as `{key="value", ...}`, bounded.
struct Fields<'a>(&'a [(String, String)]);

impl fmt::Display for Fields<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, (key, value)) in self.0.iter().take(LOG_FIELDS_MAX).enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(
                f,
                "{}={:?}",
                clip(key, LOG_FIELD_MAX_BYTES),
                clip(value, LOG_FIELD_MAX_BYTES)
            )?;
        }
        if self.0.len() > LOG_FIELDS_MAX {
            write!(f, ", +{} more", self.0.len() - LOG_FIELDS_MAX)?;
        }
        f.write_str("}")
    }
}

/// What a call needs to know about the plugin it runs.
pub(crate) struct CallSite<'a> {
    pub(crate) engine: &'a Engine,
    pub(crate) digest: &'a Arc<str>,
    pub(crate) world: World,
    pub(crate) run: Option<String>,
    pub(crate) epoch_tick: Duration,
    /// The most memory an instance can have whatever `Limits` say (the
    /// pooling allocator's slot size), so a reported limit is the real one.
    pub(crate) memory_ceiling: usize,
    /// What the plugin's questions are asked of (0.2.0); `None` for calls
    /// about no run (`describe`, `validate-config`).
    pub(crate) lookup: Option<Arc<dyn Lookup>>,
}

/// Runs one guest call in a fresh sandbox and classifies the outcome. Blocks:
/// call it on a blocking thread.
pub(crate) fn run<T: Output>(
    site: CallSite<'_>,
    limits: &Limits,
    call: impl FnOnce(&mut Store<HostState>) -> GuestResult<T>,
) -> Result<T, CallError> {
    let memory_limit = limits.memory_bytes.min(site.memory_ceiling);
    let stdout = MemoryOutputPipe::new(STDIO_CAPTURE_BYTES);
    let stderr = MemoryOutputPipe::new(STDIO_CAPTURE_BYTES);
    let wasi = WasiCtx::builder()
        // No preopens, env, args or network: the builder's defaults, stated.
        .stdin(MemoryInputPipe::new(Vec::<u8>::new()))
        .stdout(stdout.clone())
        .stderr(stderr.clone())
        .secure_random(Deterministic::new(RANDOM_SEED.to_vec()))
        .insecure_random(Deterministic::new(RANDOM_SEED.to_vec()))
        .insecure_random_seed(0)
        .max_random_size(64 << 10)
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .build();
    let state = HostState {
        wasi,
        table: ResourceTable::new(),
        limiter: MemoryLimiter {
            limit: memory_limit,
            denied: false,
        },
        log: LogSink {
            plugin: Arc::clone(site.digest),
            world: site.world,
            run: site.run,
            emitted: 0,
            dropped: 0,
            deadline: limits.deadline,
        },
        deadline: tokio::time::Instant::now() + limits.deadline,
        asker: Asker {
            lookup: site.lookup,
            runtime: tokio::runtime::Handle::try_current().ok(),
            answers: std::collections::HashMap::new(),
            run: None,
            pool_types: std::collections::HashMap::new(),
        },
        host_failure: None,
    };
    let mut store = Store::new(site.engine, state);
    store.limiter(|state| &mut state.limiter);
    // What the host copies out of the guest in one go (a decision's output,
    // a `log` call's text) is counted while it is copied, so an output over
    // the cap — or many list elements aliasing one large guest string — is
    // refused before it is materialised, not measured after.
    store.set_hostcall_fuel(hostcall_fuel(limits));
    store.set_epoch_deadline(deadline_ticks(limits.deadline, site.epoch_tick));
    store.epoch_deadline_trap();

    let outcome = call(&mut store);

    let state = store.data();
    if state.log.dropped > 0 {
        tracing::warn!(
            plugin = &*state.log.plugin,
            dropped = state.log.dropped,
            "plugin log events over the per-call limit were dropped"
        );
    }
    log_stdio(&state.log.plugin, "stdout", &stdout.contents());
    let stderr = stderr.contents();
    log_stdio(&state.log.plugin, "stderr", &stderr);

    let denied = state.limiter.denied;
    let host_failure = state.host_failure.clone();
    if let Some(failure) = host_failure
        && outcome.is_err()
    {
        return Err(failure);
    }
    match outcome {
        Ok(Ok(mut value)) => {
            check_size(value.output_bytes(), limits)?;
            // Counts (tags, ops) are checked and reasons clipped before the
            // caller does any work that grows with them.
            value
                .bound()
                .map_err(|reason| CallError::InvalidOutput { reason })?;
            Ok(value)
        }
        Ok(Err(mut refusal)) => {
            check_size(refusal.output_bytes(), limits)?;
            refusal.clip();
            Err(CallError::Plugin { refusal })
        }
        Err(failure) => Err(classify(failure, denied, limits, memory_limit, &stderr)),
    }
}

/// The hostcall fuel of one call: the output cap plus the records' own size.
fn hostcall_fuel(limits: &Limits) -> usize {
    limits
        .max_output_bytes
        .saturating_add(FUEL_RECORD_ALLOWANCE)
}

/// wasmtime's error when a guest passes more than the hostcall fuel in one
/// call. Its type is private to wasmtime; its message is not.
fn is_fuel_exhausted(error: &wasmtime::Error) -> bool {
    format!("{error:#}").contains("fuel allocated for hostcalls has been exhausted")
}

/// Epoch ticks for a deadline: rounded up, plus one because the deadline
/// counts from the current epoch, which may be about to tick.
fn deadline_ticks(deadline: Duration, tick: Duration) -> u64 {
    let tick = tick.as_nanos().max(1);
    let ticks = deadline.as_nanos().div_ceil(tick).saturating_add(1);
    u64::try_from(ticks).unwrap_or(u64::MAX)
}

fn check_size(bytes: usize, limits: &Limits) -> Result<(), CallError> {
    if bytes > limits.max_output_bytes {
        return Err(CallError::InvalidOutput {
            reason: format!(
                "output is {bytes} bytes, over the {}-byte limit",
                limits.max_output_bytes
            ),
        });
    }
    Ok(())
}

fn classify(
    failure: Failure,
    memory_denied: bool,
    limits: &Limits,
    memory_limit: usize,
    stderr: &[u8],
) -> CallError {
    let (error, in_call) = match failure {
        Failure::WrongWorld { called, actual } => {
            return CallError::Host {
                reason: format!("{called} function called on a {actual} plugin"),
            };
        }
        Failure::Output(reason) => return CallError::InvalidOutput { reason },
        Failure::Instantiate(error) => (error, false),
        Failure::Call(error) => (error, true),
    };
    if is_fuel_exhausted(&error) {
        return CallError::InvalidOutput {
            reason: format!(
                "the plugin passed more than {} bytes to the host in one call (output cap {} bytes); refused while copying, before it was kept",
                hostcall_fuel(limits),
                limits.max_output_bytes
            ),
        };
    }
    let trap = error.downcast_ref::<Trap>().copied();
    if trap == Some(Trap::Interrupt) {
        return CallError::Timeout {
            deadline: limits.deadline,
        };
    }
    if memory_denied {
        return CallError::MemoryLimit {
            limit_bytes: memory_limit,
        };
    }
    // A trap in the guest's start code is the guest's fault too; any other
    // instantiation failure (an exhausted pool, say) is the host's.
    if !in_call && trap.is_none() {
        return CallError::Host {
            reason: one_line(&format!("instantiating the plugin failed: {error:#}")),
        };
    }
    // The trap code says it best; other errors (a host call that failed
    // the guest, output that could not be lifted) say it in their chain.
    let mut message = match trap {
        Some(trap) => format!("wasm trap: {trap}"),
        None => format!("{error:#}"),
    };
    if let Some(said) = guest_last_words(stderr) {
        message.push_str("; guest stderr: ");
        message.push_str(&said);
    }
    CallError::Trap {
        message: one_line(&message),
    }
}

/// The guest's panic message from its stderr (Rust guests print
/// `panicked at <file:line:col>:\n<message>` there), or else its last line.
fn guest_last_words(stderr: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(stderr);
    if let Some(exception) = python_exception(&text) {
        return Some(one_line(exception));
    }
    let said = match text.rfind("panicked at") {
        Some(start) => {
            let panic = &text[start..];
            // Drop the `note: run with RUST_BACKTRACE=1 ...` hint.
            panic.split("\nnote:").next().unwrap_or(panic)
        }
        None => text.lines().rev().find(|line| !line.trim().is_empty())?,
    };
    let said = one_line(said);
    (!said.is_empty()).then_some(said)
}

/// The exception line of the last Python traceback in `text`
/// (`RuntimeError: ...`): componentize-py prints the traceback of an uncaught
/// exception, then its runtime panics with a message that does not say
/// which exception it was.
fn python_exception(text: &str) -> Option<&str> {
    let start = text.rfind("Traceback (most recent call last):")?;
    text[start..]
        .lines()
        .skip(1)
        .find(|line| !line.starts_with(char::is_whitespace) && !line.trim().is_empty())
}

/// `text` on one line (whitespace runs become one space), clipped.
fn one_line(text: &str) -> String {
    let joined = text.split_whitespace().collect::<Vec<_>>().join(" ");
    clip(&joined, MESSAGE_MAX_BYTES).into_owned()
}

/// `text` cut to at most `max` bytes on a char boundary, marked when cut.
pub(crate) fn clip(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if text.len() <= max {
        return text.into();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end]).into()
}

fn log_stdio(plugin: &str, stream: &str, bytes: &[u8]) {
    if bytes.is_empty() {
        return;
    }
    let text = String::from_utf8_lossy(bytes);
    tracing::debug!(
        target: "weir::plugin::guest",
        plugin,
        stream,
        output = %clip(text.trim_end(), MESSAGE_MAX_BYTES),
        "plugin wrote to {stream}"
    );
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn deadline_ticks_round_up_plus_one() {
        let tick = Duration::from_millis(2);
        assert_eq!(deadline_ticks(Duration::from_millis(50), tick), 26);
        assert_eq!(deadline_ticks(Duration::from_millis(51), tick), 27);
        assert_eq!(deadline_ticks(Duration::ZERO, tick), 1);
        assert_eq!(
            deadline_ticks(Duration::MAX, Duration::from_nanos(1)),
            u64::MAX
        );
    }

    #[test]
    fn panic_message_is_found_and_trimmed() {
        let stderr = b"\nthread '<unnamed>' panicked at src/lib.rs:20:9:\nboom: deliberate panic\nnote: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n";
        assert_eq!(
            guest_last_words(stderr).as_deref(),
            Some("panicked at src/lib.rs:20:9: boom: deliberate panic")
        );
        assert_eq!(
            guest_last_words(b"memory allocation of 1048576 bytes failed\n").as_deref(),
            Some("memory allocation of 1048576 bytes failed")
        );
        assert_eq!(guest_last_words(b"  \n"), None);
        // componentize-py: the traceback, then its runtime's panic.
        let python = b"Traceback (most recent call last):\n  File \"/app.py\", line 54, in admit\n    raise RuntimeError(\"boom\")\nRuntimeError: boom\n\nthread '<unnamed>' panicked at runtime/src/lib.rs:1293:29:\nPython function threw an unexpected exception\n";
        assert_eq!(
            guest_last_words(python).as_deref(),
            Some("RuntimeError: boom")
        );
        let long = "é".repeat(4000);
        assert!(one_line(&long).len() <= MESSAGE_MAX_BYTES + '…'.len_utf8());
    }
}

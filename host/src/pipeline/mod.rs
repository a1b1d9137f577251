//! The plugin stages of a run's life, in their fixed order:
//! routers (global, in binding order) → admission (the pool's bindings) →
//! (the scheduler waits for slots) → render → mutators (the pool's bindings,
//! in order) → backend. Every plugin outcome becomes a history line with the
//! plugin's name, version, digest, decision or patch, and time taken.
//! Bindings in shadow mode (`shadow.rs`) judge the same runs after the
//! enforced ones of their stage, and only add lines.

mod record;
mod replay;
mod shadow;

pub(crate) use record::{Recorder, Retention};
pub(crate) use replay::{
    Candidate, DEFAULT_DECISIONS, MAX_DECISIONS, ReplayError, ReplayRequest, parse_since,
};

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::Utc;
use serde_json::{Map, Value, json};

use crate::domain::{
    BindingMode, HistoryEntry, OnError, PluginBinding, PluginVersion, PoolType, RunState,
};
use crate::metrics::Metrics;
use crate::plugin::{
    Admission, CallError, Counts, Lookup, MAX_DEFER_SECONDS, Mutated, RunContext, Scope,
};
use crate::registry::{Registry, limits_of};
use crate::store::{Occupancy, Store};

/// A fail-closed plugin failure or a rejection: the run ends with this.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub message: String,
    pub detail: Value,
}

pub enum AdmissionVerdict {
    Admit,
    Reject(Refusal),
    Defer { seconds: u32, reason: String },
}

pub struct Pipeline {
    registry: Arc<Registry>,
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    /// Where each decision's inputs go (`record.rs`); none: not recorded.
    recorder: Option<Recorder>,
}

impl AdmissionVerdict {
    /// The verdict as a shadow admission decision is compared with it.
    fn as_decision(&self) -> Value {
        match self {
            AdmissionVerdict::Admit => json!({"decision": "admit"}),
            AdmissionVerdict::Reject(r) => json!({"decision": "reject", "reason": r.message}),
            AdmissionVerdict::Defer { seconds, reason } => {
                json!({"decision": "defer", "seconds": seconds, "reason": reason})
            }
        }
    }
}

/// A stage's bindings: those enforced, in order, and those in shadow.
fn split(bindings: Vec<PluginBinding>) -> (Vec<PluginBinding>, Vec<PluginBinding>) {
    bindings
        .into_iter()
        .partition(|b| b.mode == BindingMode::Enforce)
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

fn cause(world: &str, plugin: &str) -> String {
    format!("{world}:{plugin}")
}

fn detail(
    binding: &PluginBinding,
    version: Option<&PluginVersion>,
    world: &str,
    elapsed: Duration,
) -> Map<String, Value> {
    let mut d = Map::new();
    d.insert("plugin".into(), json!(binding.plugin));
    d.insert("world".into(), json!(world));
    if let Some(v) = version {
        d.insert("version".into(), json!(v.version));
        d.insert("digest".into(), json!(v.digest));
    }
    d.insert("elapsed_ms".into(), json!(ms(elapsed)));
    d
}

fn entry(
    state: RunState,
    message: String,
    cause: String,
    detail: Map<String, Value>,
) -> HistoryEntry {
    HistoryEntry {
        state,
        at: Utc::now(),
        message,
        cause,
        detail: Some(Value::Object(detail)),
    }
}

fn counts(o: Occupancy) -> Counts {
    Counts {
        running: u32::try_from(o.active).unwrap_or(u32::MAX),
        queued: u32::try_from(o.queued).unwrap_or(u32::MAX),
    }
}

/// A scope's counts as the store has them now.
async fn read_occupancy(store: &Arc<dyn Store>, scope: &Scope) -> Result<Counts, String> {
    let occupancy = match scope {
        Scope::Pool(pool) => store.pool_occupancy(pool).await,
        Scope::Queue { pool, queue } => store.queue_occupancy(pool, queue).await,
        Scope::Tag(tag) => store.tag_occupancy(tag).await,
        Scope::Label { key, value } => store.label_occupancy(key, value).await,
    }
    .map_err(|e| e.to_string())?;
    Ok(counts(occupancy))
}

/// A pool's type as the store has it now (`None`: no such pool).
async fn read_pool_type(store: &Arc<dyn Store>, pool: &str) -> Result<Option<PoolType>, String> {
    match store.get_pool(pool).await {
        Ok(p) => Ok(Some(p.pool_type)),
        Err(crate::store::StoreError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// What plugins ask during one stage of one run, read from the store when
/// first asked and remembered for the rest of the stage, so every binding
/// of the stage sees the same counts (and 0.1.0 admission plugins, which are
/// given the counts up front, cost one read per count, not one per plugin).
struct StoreLookup {
    store: Arc<dyn Store>,
    answers: Mutex<HashMap<Scope, Counts>>,
    pool_types: Mutex<HashMap<String, Option<PoolType>>>,
}

impl StoreLookup {
    fn shared(store: &Arc<dyn Store>) -> Arc<StoreLookup> {
        Arc::new(StoreLookup {
            store: Arc::clone(store),
            answers: Mutex::new(HashMap::new()),
            pool_types: Mutex::new(HashMap::new()),
        })
    }

    /// Every answer given so far, as recorded with a decision.
    fn read_so_far(&self) -> record::StatsRead {
        let answers = self.answers.lock().unwrap_or_else(PoisonError::into_inner);
        let mut occupancy: Vec<record::Answer> = answers
            .iter()
            .map(|(scope, counts)| record::Answer {
                scope: scope.into(),
                counts: *counts,
            })
            .collect();
        occupancy.sort_by(|a, b| a.scope.cmp(&b.scope));
        let pool_types = self
            .pool_types
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        record::StatsRead {
            occupancy,
            pool_types,
        }
    }
}

#[async_trait::async_trait]
impl Lookup for StoreLookup {
    async fn occupancy(&self, scope: &Scope) -> Result<Counts, String> {
        let known = self
            .answers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(scope)
            .copied();
        if let Some(counts) = known {
            return Ok(counts);
        }
        let answer = read_occupancy(&self.store, scope).await?;
        self.answers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(scope.clone(), answer);
        Ok(answer)
    }

    async fn pool_type(&self, pool: &str) -> Result<Option<PoolType>, String> {
        let known = self
            .pool_types
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(pool)
            .copied();
        if let Some(t) = known {
            return Ok(t);
        }
        let answer = read_pool_type(&self.store, pool).await?;
        self.pool_types
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(pool.to_owned(), answer);
        Ok(answer)
    }
}

/// A router's decision as recorded.
fn route_json(route: &crate::plugin::Route) -> Value {
    json!({"pool": route.pool, "queue": route.queue, "add_tags": route.add_tags})
}

/// An admission decision as a shadow records it.
fn admission_json(a: &Admission) -> Value {
    match a {
        Admission::Admit => json!({"decision": "admit"}),
        Admission::Reject {
            reason,
            code,
            details,
        } => {
            let mut v = json!({"decision": "reject", "reason": reason});
            if let Some(code) = code {
                v["code"] = json!(code);
            }
            if let Some(details) = details {
                v["details"] = details.clone();
            }
            v
        }
        Admission::Defer { seconds, reason } => {
            json!({"decision": "defer", "seconds": (*seconds).clamp(1, MAX_DEFER_SECONDS), "reason": reason})
        }
    }
}

/// A mutator's outcome as recorded and compared: its patch, its reject, or
/// its failure.
pub(crate) fn mutated_json(result: &Result<Mutated, CallError>) -> Value {
    match result {
        Ok(Mutated::Job { patch, .. }) => json!({"patch": patch}),
        Ok(Mutated::Reject(refusal)) => {
            let mut decision = refusal_json(refusal);
            decision["decision"] = json!("reject");
            decision
        }
        Err(e) => record::error_outcome(e.kind(), &e.to_string()),
    }
}

/// A plugin's structured refusal as history detail.
fn refusal_json(r: &crate::plugin::Refusal) -> Value {
    let mut v = json!({"message": r.message});
    if let Some(code) = &r.code {
        v["code"] = json!(code);
    }
    if let Some(details) = &r.details {
        v["details"] = details.clone();
    }
    v
}

fn config_text(config: &Value) -> String {
    serde_json::to_string(config).unwrap_or_else(|_| "null".into())
}

/// Paths a mutator may not touch: what Weir stamps on every job.
pub(crate) fn forbidden_paths(pool_type: PoolType) -> Vec<String> {
    match pool_type {
        PoolType::Kubernetes => vec![
            "/job_manifest/apiVersion".into(),
            "/job_manifest/kind".into(),
            "/job_manifest/metadata/name".into(),
            "/job_manifest/metadata/namespace".into(),
            "/job_manifest/metadata/labels/weir.dev~1".into(),
            "/job_manifest/spec/template/metadata/labels/weir.dev~1".into(),
            "/namespace".into(),
        ],
        PoolType::Process => vec![
            "/env/WEIR_RUN_ID".into(),
            "/env/WEIR_API_URL".into(),
            "/env/WEIR_PARAMETERS".into(),
            "/env/WEIR_RUN_TOKEN".into(),
        ],
    }
}

/// What a failed call means for the run, by the binding's policy.
enum Failure {
    Skip(HistoryEntry),
    Refuse(Refusal),
}

fn failure(
    binding: &PluginBinding,
    version: Option<&PluginVersion>,
    world: &str,
    state: RunState,
    elapsed: Duration,
    error: Result<&CallError, String>,
) -> Failure {
    let mut d = detail(binding, version, world, elapsed);
    let (kind, message) = match &error {
        Ok(e) => (e.kind(), e.to_string()),
        Err(host) => ("host", host.clone()),
    };
    let mut e = json!({"kind": kind, "message": message});
    if let Ok(CallError::Plugin { refusal }) = error {
        e["refusal"] = refusal_json(refusal);
    }
    d.insert("error".into(), e);
    d.insert("on_error".into(), json!(binding.on_error.as_str()));
    let label = match version {
        Some(v) => format!("{}@{}", binding.plugin, v.version),
        None => binding.plugin.clone(),
    };
    match binding.on_error {
        OnError::FailOpen => Failure::Skip(entry(
            state,
            format!("{world} {label} failed ({kind}: {message}); skipped (fail-open)"),
            cause(world, &binding.plugin),
            d,
        )),
        OnError::FailClosed => Failure::Refuse(Refusal {
            message: format!("{world} plugin {label} failed ({kind}): {message}"),
            detail: Value::Object(d),
        }),
    }
}

/// Applies a failure's policy: a skipped plugin is recorded and the chain
/// goes on; a refusal ends it.
fn settle(f: Failure, history: &mut Vec<HistoryEntry>) -> Result<(), Refusal> {
    match f {
        Failure::Skip(h) => {
            history.push(h);
            Ok(())
        }
        Failure::Refuse(r) => Err(r),
    }
}

/// What one decision was about, for its record.
struct Judged<'a> {
    binding: &'a PluginBinding,
    version: &'a PluginVersion,
    world: &'static str,
    ctx: &'a RunContext,
    lookup: &'a StoreLookup,
    job: Option<&'a Value>,
}

impl Pipeline {
    pub fn new(registry: Arc<Registry>, store: Arc<dyn Store>, metrics: Arc<Metrics>) -> Self {
        Self {
            registry,
            store,
            metrics,
            recorder: None,
        }
    }

    /// Records every decision's inputs through `recorder`.
    pub(crate) fn with_recorder(mut self, recorder: Option<Recorder>) -> Self {
        self.recorder = recorder;
        self
    }

    /// Records a shadow decision's inputs, its outcome as the shadow line has
    /// it.
    #[allow(clippy::too_many_arguments)]
    fn record_shadow(
        &self,
        binding: &PluginBinding,
        version: &PluginVersion,
        world: &'static str,
        ctx: &RunContext,
        lookup: &StoreLookup,
        job: Option<&Value>,
        outcome: &Result<Value, (String, String)>,
    ) {
        if self.recorder.is_none() {
            return;
        }
        let outcome = match outcome {
            Ok(v) => v.clone(),
            Err((kind, message)) => record::error_outcome(kind, message),
        };
        let judged = Judged {
            binding,
            version,
            world,
            ctx,
            lookup,
            job,
        };
        self.record(judged, outcome);
    }

    /// Hands one decision and its inputs to the recorder, if there is one.
    fn record(&self, j: Judged<'_>, outcome: Value) {
        let Some(recorder) = &self.recorder else {
            return;
        };
        // Cloned here, serialised by the recorder, off the run's path.
        recorder.record(record::Decision {
            run_id: j.ctx.run_id.clone(),
            at: Utc::now(),
            plugin: j.binding.plugin.clone(),
            world: j.world,
            mode: j.binding.mode,
            version: j.version.version,
            digest: j.version.digest.clone(),
            pool: j.ctx.pool.clone(),
            outcome,
            context: j.ctx.clone(),
            stats: j.lookup.read_so_far(),
            binding: j.binding.into(),
            job: j.job.cloned(),
        });
    }

    /// Records one shadow decision: its history line and its count.
    #[allow(clippy::too_many_arguments)]
    fn shadow_decided(
        &self,
        b: &PluginBinding,
        version: Option<&PluginVersion>,
        world: &str,
        state: RunState,
        elapsed: Duration,
        outcome: Result<Value, (String, String)>,
        enforced: Option<&Value>,
        history: &mut Vec<HistoryEntry>,
    ) {
        let agreement = match (&outcome, enforced) {
            (Ok(v), Some(e)) => Some(shadow::agrees(world, v, e)),
            _ => None,
        };
        self.metrics.shadow_decided(
            &b.plugin,
            world,
            &shadow::decision_label(&outcome),
            agreement,
        );
        history.push(shadow::line(
            b, version, world, state, elapsed, &outcome, enforced, agreement,
        ));
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Stage 1: routers may set the pool and queue and add tags. On a
    /// fail-closed failure the run is refused (its history so far is in
    /// `history`).
    pub async fn route(
        &self,
        ctx: &mut RunContext,
        history: &mut Vec<HistoryEntry>,
    ) -> Result<(), Refusal> {
        let bindings = self.store.list_bindings(None).await.map_err(|e| Refusal {
            message: format!("cannot read router bindings: {e}"),
            detail: Value::Null,
        })?;
        let state = RunState::Scheduled;
        let lookup = StoreLookup::shared(&self.store);
        let asked: Arc<dyn Lookup> = lookup.clone();
        let (bindings, shadows) = split(bindings);
        let mut seen = Vec::new();
        for b in &bindings {
            if !shadows.is_empty() {
                seen.push(shadow::Seen {
                    order: b.order,
                    plugin: b.plugin.clone(),
                    input: ctx.clone(),
                    outcome: None,
                });
            }
            let (version, plugin) = match self.registry.resolve(b).await {
                Ok(r) => r,
                Err(e) => {
                    let f = failure(b, None, "router", state, Duration::ZERO, Err(e));
                    settle(f, history)?;
                    continue;
                }
            };
            let (result, elapsed) = plugin
                .route(&config_text(&b.config), ctx, &asked, &limits_of(b))
                .await;
            let judged = Judged {
                binding: b,
                version: &version,
                world: "router",
                ctx,
                lookup: &lookup,
                job: None,
            };
            match &result {
                Ok(route) => self.record(judged, route_json(route)),
                Err(e) => self.record(judged, record::error_outcome(e.kind(), &e.to_string())),
            }
            match result {
                Ok(route) => {
                    if let Some(s) = seen.last_mut() {
                        s.outcome = Some(route_json(&route));
                    }
                    let mut changes = Vec::new();
                    if let Some(p) = &route.pool {
                        ctx.pool = p.clone();
                        changes.push(format!("pool {p}"));
                    }
                    if let Some(q) = &route.queue {
                        ctx.queue = q.clone();
                        changes.push(format!("queue {q}"));
                    }
                    // The plugin layer bounds add_tags (at most MAX_TAGS);
                    // a set keeps the merge linear anyway.
                    let mut known: std::collections::HashSet<String> =
                        ctx.tags.iter().cloned().collect();
                    for t in &route.add_tags {
                        if known.insert(t.clone()) {
                            ctx.tags.push(t.clone());
                        }
                    }
                    if !route.add_tags.is_empty() {
                        changes.push(format!("tags +{}", route.add_tags.join(" +")));
                    }
                    let mut d = detail(b, Some(&version), "router", elapsed);
                    d.insert("decision".into(), route_json(&route));
                    history.push(entry(
                        state,
                        format!(
                            "router {}@{}: {} ({} ms)",
                            b.plugin,
                            version.version,
                            if changes.is_empty() {
                                "no change".into()
                            } else {
                                changes.join(", ")
                            },
                            ms(elapsed)
                        ),
                        cause("router", &b.plugin),
                        d,
                    ));
                }
                Err(e) => match failure(b, Some(&version), "router", state, elapsed, Ok(&e)) {
                    Failure::Skip(h) => history.push(h),
                    Failure::Refuse(r) => return Err(r),
                },
            }
        }
        for b in &shadows {
            let (input, enforced) = shadow::input_for(&seen, b, ctx);
            let (version, outcome, elapsed) = match self.registry.resolve(b).await {
                Err(e) => (None, Err(("host".to_owned(), e)), Duration::ZERO),
                Ok((version, plugin)) => {
                    let (result, elapsed) = plugin
                        .route(&config_text(&b.config), input, &asked, &limits_of(b))
                        .await;
                    let outcome = result
                        .map(|route| route_json(&route))
                        .map_err(|e| (e.kind().to_owned(), e.to_string()));
                    self.record_shadow(b, &version, "router", input, &lookup, None, &outcome);
                    (Some(version), outcome, elapsed)
                }
            };
            self.shadow_decided(
                b,
                version.as_ref(),
                "router",
                state,
                elapsed,
                outcome,
                enforced,
                history,
            );
        }
        Ok(())
    }

    /// Stage 2: the pool's admission plugins, in order. The first reject
    /// or defer decides; all must admit for the run to wait for slots.
    pub async fn admit(
        &self,
        ctx: &RunContext,
        state: RunState,
        history: &mut Vec<HistoryEntry>,
    ) -> AdmissionVerdict {
        let bindings = match self.store.list_bindings(Some(&ctx.pool)).await {
            Ok(b) => b,
            Err(e) => {
                return AdmissionVerdict::Reject(Refusal {
                    message: format!("cannot read admission bindings: {e}"),
                    detail: Value::Null,
                });
            }
        };
        let lookup = StoreLookup::shared(&self.store);
        let asked: Arc<dyn Lookup> = lookup.clone();
        let (bindings, shadows) = split(bindings);
        let verdict = self
            .admit_enforced(ctx, state, &bindings, &lookup, history)
            .await;
        if shadows.is_empty() {
            return verdict;
        }
        let enforced = verdict.as_decision();
        for b in &shadows {
            let (version, outcome, elapsed) = match self.registry.resolve(b).await {
                Err(e) => (None, Err(("host".to_owned(), e)), Duration::ZERO),
                Ok((version, _)) if version.world != crate::domain::World::Admission => continue,
                Ok((version, plugin)) => {
                    let (result, elapsed) = plugin
                        .admit(&config_text(&b.config), ctx, &asked, &limits_of(b))
                        .await;
                    let outcome = result
                        .map(|a| admission_json(&a))
                        .map_err(|e| (e.kind().to_owned(), e.to_string()));
                    self.record_shadow(b, &version, "admission", ctx, &lookup, None, &outcome);
                    (Some(version), outcome, elapsed)
                }
            };
            self.shadow_decided(
                b,
                version.as_ref(),
                "admission",
                state,
                elapsed,
                outcome,
                Some(&enforced),
                history,
            );
        }
        verdict
    }

    /// The enforced admission bindings, in order: the first reject or
    /// defer decides.
    async fn admit_enforced(
        &self,
        ctx: &RunContext,
        state: RunState,
        bindings: &[PluginBinding],
        lookup: &Arc<StoreLookup>,
        history: &mut Vec<HistoryEntry>,
    ) -> AdmissionVerdict {
        let asked: Arc<dyn Lookup> = lookup.clone();
        for b in bindings {
            let (version, plugin) = match self.registry.resolve(b).await {
                Ok(r) => r,
                Err(e) => {
                    let f = failure(b, None, "admission", state, Duration::ZERO, Err(e));
                    if let Err(r) = settle(f, history) {
                        return AdmissionVerdict::Reject(r);
                    }
                    continue;
                }
            };
            if version.world != crate::domain::World::Admission {
                continue;
            }
            let (result, elapsed) = plugin
                .admit(&config_text(&b.config), ctx, &asked, &limits_of(b))
                .await;
            let judged = Judged {
                binding: b,
                version: &version,
                world: "admission",
                ctx,
                lookup,
                job: None,
            };
            match &result {
                Ok(a) => self.record(judged, admission_json(a)),
                Err(e) => self.record(judged, record::error_outcome(e.kind(), &e.to_string())),
            }
            let label = format!("{}@{}", b.plugin, version.version);
            let mut d = detail(b, Some(&version), "admission", elapsed);
            match result {
                Ok(Admission::Admit) => {
                    d.insert("decision".into(), json!({"decision": "admit"}));
                    history.push(entry(
                        state,
                        format!("admission {label}: admit ({} ms)", ms(elapsed)),
                        cause("admission", &b.plugin),
                        d,
                    ));
                }
                Ok(Admission::Reject {
                    reason,
                    code,
                    details,
                }) => {
                    let mut decision = json!({"decision": "reject", "reason": reason});
                    if let Some(code) = &code {
                        decision["code"] = json!(code);
                    }
                    if let Some(details) = details {
                        decision["details"] = details;
                    }
                    d.insert("decision".into(), decision);
                    let code = code.map(|c| format!("[{c}] ")).unwrap_or_default();
                    return AdmissionVerdict::Reject(Refusal {
                        message: format!("rejected by admission plugin {label}: {code}{reason}"),
                        detail: Value::Object(d),
                    });
                }
                Ok(Admission::Defer { seconds, reason }) => {
                    let asked = seconds;
                    let seconds = seconds.clamp(1, MAX_DEFER_SECONDS);
                    d.insert(
                        "decision".into(),
                        json!({"decision": "defer", "seconds": seconds, "reason": reason}),
                    );
                    let capped = if asked > MAX_DEFER_SECONDS {
                        d.insert("asked_seconds".into(), json!(asked));
                        format!(" (asked {asked}s; at most {MAX_DEFER_SECONDS}s)")
                    } else {
                        String::new()
                    };
                    history.push(entry(
                        state,
                        format!(
                            "admission {label}: defer {seconds}s{capped}: {reason} ({} ms)",
                            ms(elapsed)
                        ),
                        cause("admission", &b.plugin),
                        d,
                    ));
                    return AdmissionVerdict::Defer { seconds, reason };
                }
                Err(e) => match failure(b, Some(&version), "admission", state, elapsed, Ok(&e)) {
                    Failure::Skip(h) => history.push(h),
                    Failure::Refuse(r) => return AdmissionVerdict::Reject(r),
                },
            }
        }
        AdmissionVerdict::Admit
    }

    /// Stage 4: the pool's mutators patch the rendered job, in order.
    /// `record` is false for previews (`deployment render`).
    #[allow(clippy::too_many_arguments)]
    pub async fn mutate(
        &self,
        pool: &str,
        pool_type: PoolType,
        ctx: &RunContext,
        mut job: Value,
        state: RunState,
        release: bool,
        history: &mut Vec<HistoryEntry>,
    ) -> Result<Value, Refusal> {
        let bindings = self
            .store
            .list_bindings(Some(pool))
            .await
            .map_err(|e| Refusal {
                message: format!("cannot read mutator bindings: {e}"),
                detail: Value::Null,
            })?;
        let forbidden = forbidden_paths(pool_type);
        let lookup = StoreLookup::shared(&self.store);
        let asked: Arc<dyn Lookup> = lookup.clone();
        let (bindings, shadows) = split(bindings);
        let mut seen = Vec::new();
        for b in &bindings {
            let (version, plugin) = match self.registry.resolve(b).await {
                Ok(r) => r,
                Err(e) => {
                    let f = failure(b, None, "mutator", state, Duration::ZERO, Err(e));
                    settle(f, history)?;
                    continue;
                }
            };
            if version.world != crate::domain::World::Mutator {
                continue;
            }
            if !shadows.is_empty() {
                seen.push(shadow::Seen {
                    order: b.order,
                    plugin: b.plugin.clone(),
                    input: job.clone(),
                    outcome: None,
                });
            }
            let (result, elapsed) = plugin
                .mutate(
                    &config_text(&b.config),
                    ctx,
                    &job,
                    &forbidden,
                    &asked,
                    &limits_of(b),
                )
                .await;
            if release {
                let judged = Judged {
                    binding: b,
                    version: &version,
                    world: "mutator",
                    ctx,
                    lookup: &lookup,
                    job: Some(&job),
                };
                self.record(judged, mutated_json(&result));
            }
            match result {
                Ok(Mutated::Reject(refusal)) => {
                    let mut d = detail(b, Some(&version), "mutator", elapsed);
                    let mut decision = refusal_json(&refusal);
                    decision["decision"] = json!("reject");
                    d.insert("decision".into(), decision);
                    return Err(Refusal {
                        message: format!(
                            "rejected by mutator plugin {}@{}: {refusal}",
                            b.plugin, version.version
                        ),
                        detail: Value::Object(d),
                    });
                }
                Ok(Mutated::Job {
                    job: patched,
                    patch: ops,
                }) => {
                    if let Some(s) = seen.last_mut() {
                        s.outcome = Some(json!({"patch": ops}));
                    }
                    let n = ops.as_array().map(Vec::len).unwrap_or(0);
                    let mut d = detail(b, Some(&version), "mutator", elapsed);
                    d.insert("patch".into(), ops);
                    history.push(entry(
                        state,
                        format!(
                            "mutator {}@{}: {n} patch operation(s) ({} ms)",
                            b.plugin,
                            version.version,
                            ms(elapsed)
                        ),
                        cause("mutator", &b.plugin),
                        d,
                    ));
                    job = patched;
                }
                Err(e) => match failure(b, Some(&version), "mutator", state, elapsed, Ok(&e)) {
                    Failure::Skip(h) => history.push(h),
                    Failure::Refuse(r) => return Err(r),
                },
            }
        }
        // Shadow mutators judge released runs only, not previews.
        if !release {
            return Ok(job);
        }
        for b in &shadows {
            let (input, enforced) = shadow::input_for(&seen, b, &job);
            let (version, outcome, elapsed) = match self.registry.resolve(b).await {
                Err(e) => (None, Err(("host".to_owned(), e)), Duration::ZERO),
                Ok((version, _)) if version.world != crate::domain::World::Mutator => continue,
                Ok((version, plugin)) => {
                    let (result, elapsed) = plugin
                        .mutate(
                            &config_text(&b.config),
                            ctx,
                            input,
                            &forbidden,
                            &asked,
                            &limits_of(b),
                        )
                        .await;
                    let outcome = match mutated_json(&result) {
                        v if v.get("error").is_some() => Err((
                            v["error"]["kind"].as_str().unwrap_or_default().to_owned(),
                            v["error"]["message"]
                                .as_str()
                                .unwrap_or_default()
                                .to_owned(),
                        )),
                        v => Ok(v),
                    };
                    self.record_shadow(b, &version, "mutator", ctx, &lookup, Some(input), &outcome);
                    (Some(version), outcome, elapsed)
                }
            };
            self.shadow_decided(
                b,
                version.as_ref(),
                "mutator",
                state,
                elapsed,
                outcome,
                enforced,
                history,
            );
        }
        Ok(job)
    }
}

/// The context a plugin sees for a run.
#[allow(clippy::too_many_arguments)]
pub(crate) fn context(
    run_id: &str,
    deployment: Option<&str>,
    pool: &str,
    queue: &str,
    tags: &[String],
    labels: &Map<String, Value>,
    parameters: &Map<String, Value>,
    job_variables: &Map<String, Value>,
    parent_run: Option<String>,
) -> RunContext {
    let labels: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| {
            let text = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.clone(), text)
        })
        .collect();
    RunContext {
        run_id: run_id.to_owned(),
        deployment: deployment.map(str::to_owned),
        pool: pool.to_owned(),
        queue: queue.to_owned(),
        tags: tags.to_vec(),
        labels,
        parameters: Value::Object(parameters.clone()),
        job_variables: Value::Object(job_variables.clone()),
        parent_run,
    }
}

/// The merged job variables of a deployment and a run (the run's win, `env`
/// and `labels` merge key by key), as plugins see them.
pub(crate) fn merged_job_variables(
    deployment: Option<&Map<String, Value>>,
    run: &Map<String, Value>,
) -> Map<String, Value> {
    let mut merged = deployment.cloned().unwrap_or_default();
    for (k, v) in run {
        match (merged.get_mut(k), v) {
            (Some(Value::Object(base)), Value::Object(over)) if k == "env" || k == "labels" => {
                for (ik, iv) in over {
                    base.insert(ik.clone(), iv.clone());
                }
            }
            _ => {
                merged.insert(k.clone(), v.clone());
            }
        }
    }
    merged
}

pub(crate) fn labels_of(job_variables: &Map<String, Value>) -> Map<String, Value> {
    job_variables
        .get("labels")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

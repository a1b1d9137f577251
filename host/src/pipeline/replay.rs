//! Replay (issue #16): a candidate plugin — another stored version, or a
//! component that is not stored — judges again the decisions a bound plugin
//! made, on the inputs recorded with them (`record.rs`), and the report says
//! per run whether it decides the same and, where not, how.
//!
//! Offline and without effect: nothing is written, no run changes. The
//! candidate runs in the same sandbox as a live decision (the plugin
//! runtime's calls, with the limits recorded from the binding), one call at
//! a time so a replay never holds more than one of the runtime's slots, and
//! for at most [`BUDGET`] in all (a report cut short says so). The stats it
//! asks are answered as they were answered then; a question the recorded
//! decision did not ask is answered from the store now, and the run's line
//! says which (`live_stats`). A mutator is given the job the bound plugin
//! was given — the one the job builder built for the run at its release,
//! as recorded — and the report shows both patches and the difference
//! between the two jobs they make (RFC 6902, from the recorded version's
//! job to the candidate's).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use super::record::{self, BindingRecord, StatsRead};
use super::{Pipeline, admission_json, config_text, forbidden_paths, mutated_json, route_json};
use crate::domain::{BindingMode, PoolType, ValidationError};
use crate::plugin::{Counts, Limits, LoadedPlugin, Lookup, RunContext, Scope, World};
use crate::registry::RegistryError;
use crate::store::{DecisionQuery, Store, StoreError, StoredDecision};

/// Decisions one replay judges at most (and by default).
pub(crate) const MAX_DECISIONS: usize = 10_000;
pub(crate) const DEFAULT_DECISIONS: usize = 100;
/// Wall-clock time one replay may take; past it the report is cut short.
/// (Below the CLI's request timeout of 60 s.)
pub(crate) const BUDGET: Duration = Duration::from_secs(45);

/// What is replayed.
#[derive(Debug, Clone)]
pub(crate) enum Candidate {
    /// A stored version of the plugin.
    Version(u32),
    /// A component given with the request, not stored.
    Wasm(Vec<u8>),
}

#[derive(Debug, Clone)]
pub(crate) struct ReplayRequest {
    pub plugin: String,
    pub candidate: Candidate,
    /// Only decisions about runs in this pool.
    pub pool: Option<String>,
    /// Only decisions made at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// The newest this many decisions (1 ..= [`MAX_DECISIONS`]).
    pub limit: usize,
    /// The candidate's config; `None`: the config each decision was made
    /// with.
    pub config: Option<Value>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ReplayError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The candidate as reported.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CandidateInfo {
    /// `version N` or `file`.
    pub source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    pub digest: String,
    pub world: World,
}

/// What a replay found, over all the decisions it judged.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub(crate) struct Summary {
    /// Decisions the candidate judged.
    pub judged: u64,
    pub same: u64,
    pub different: u64,
    /// Admission: now reject where the recorded decision did not.
    pub would_reject: u64,
    /// Admission: now admit where the recorded decision did not.
    pub would_admit: u64,
    /// Admission: now defer where the recorded decision did not.
    pub would_defer: u64,
    /// Admission: the same decision, with another reason, code or details.
    pub reasons_changed: u64,
    /// Routers: a different route.
    pub routes_changed: u64,
    /// Mutators: a different patch (or a reject where there was a patch, or
    /// the reverse).
    pub jobs_changed: u64,
    /// The candidate failed (trap, timeout, bad output, …).
    pub errors: u64,
    /// Recorded decisions whose inputs could not be read back (swept).
    pub not_replayable: u64,
    /// Decisions where the candidate asked stats not recorded, answered
    /// from the store now.
    pub live_stats: u64,
}

/// One decision, judged again.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Replayed {
    pub run_id: String,
    pub decided_at: DateTime<Utc>,
    pub pool: String,
    pub recorded_version: u32,
    pub recorded: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replayed: Option<Value>,
    pub same: bool,
    /// The difference in words (`admit → reject: …`); none when the same.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub change: Option<String>,
    /// Mutators whose patches differ: the RFC 6902 patch from the job the
    /// recorded patch made to the job the candidate's makes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_diff: Option<Value>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub live_stats: Vec<String>,
    /// Why the decision could not be replayed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_replayable: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct ReplayReport {
    pub plugin: String,
    pub candidate: CandidateInfo,
    /// The config the candidate was given, when not each decision's own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<Value>,
    pub summary: Summary,
    /// Cut short by [`BUDGET`]: the decisions past `runs` were not judged.
    pub truncated: bool,
    /// Newest first, as the decisions were made.
    pub runs: Vec<Replayed>,
}

/// Parses `--since`: an RFC 3339 time, or an age such as `90m`, `12h`, `7d`
/// (`s`, `m`, `h`, `d`) counted back from `now`.
pub(crate) fn parse_since(
    text: &str,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, ValidationError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    let bad = || {
        ValidationError::new(
            "since",
            format!("{text:?} is neither an RFC 3339 time nor an age like 90m, 12h or 7d"),
        )
    };
    // The unit is the last character, whatever its width.
    let split = text.char_indices().last().map(|(i, _)| i).ok_or_else(bad)?;
    let (n, unit) = text.split_at(split);
    let n: i64 = n.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3_600),
        "d" => n.checked_mul(86_400),
        _ => None,
    }
    .filter(|s| (0..=10 * 365 * 86_400).contains(s))
    .ok_or_else(bad)?;
    Ok(now - chrono::Duration::seconds(seconds))
}

/// Stats as they were answered; what was not asked then is read now.
struct RecordedLookup {
    stats: StatsRead,
    store: Arc<dyn Store>,
    live: Mutex<Vec<String>>,
}

impl RecordedLookup {
    fn asked_live(&self, what: String) {
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        if !live.contains(&what) {
            live.push(what);
        }
    }
}

#[async_trait::async_trait]
impl Lookup for RecordedLookup {
    async fn occupancy(&self, scope: &Scope) -> Result<Counts, String> {
        let wanted = record::ScopeRecord::from(scope);
        if let Some(a) = self.stats.occupancy.iter().find(|a| a.scope == wanted) {
            return Ok(a.counts);
        }
        self.asked_live(serde_json::to_string(&wanted).unwrap_or_default());
        super::read_occupancy(&self.store, scope).await
    }

    async fn pool_type(&self, pool: &str) -> Result<Option<PoolType>, String> {
        if let Some(t) = self.stats.pool_types.get(pool) {
            return Ok(*t);
        }
        self.asked_live(format!("pool type of {pool:?}"));
        super::read_pool_type(&self.store, pool).await
    }
}

/// A recorded decision's inputs, read back.
struct Inputs {
    context: RunContext,
    stats: StatsRead,
    binding: BindingRecord,
    job: Option<Value>,
}

fn inputs(d: &StoredDecision) -> Result<Inputs, String> {
    let part = |name: &str, data: &Option<Vec<u8>>| -> Result<Vec<u8>, String> {
        data.clone()
            .ok_or_else(|| format!("its {name} is no longer kept"))
    };
    let job = match &d.job {
        None => None,
        Some(data) => {
            Some(record::unblob(&part("job", data)?).map_err(|e| format!("its job: {e}"))?)
        }
    };
    Ok(Inputs {
        context: record::unblob(&part("context", &d.context)?)
            .map_err(|e| format!("its context: {e}"))?,
        stats: record::unblob(&part("stats", &d.stats)?).map_err(|e| format!("its stats: {e}"))?,
        binding: record::unblob(&part("binding", &d.binding)?)
            .map_err(|e| format!("its binding: {e}"))?,
        job,
    })
}

impl Pipeline {
    /// Replays `request` (see the module doc).
    pub(crate) async fn replay(&self, request: ReplayRequest) -> Result<ReplayReport, ReplayError> {
        if !(1..=MAX_DECISIONS).contains(&request.limit) {
            return Err(ValidationError::new(
                "limit",
                format!("must be between 1 and {MAX_DECISIONS}"),
            )
            .into());
        }
        let versions = self.store.plugin_versions(&request.plugin).await?;
        let newest = versions.last().ok_or_else(|| StoreError::NotFound {
            kind: "plugin",
            name: request.plugin.clone(),
        })?;
        let (candidate, info) = match &request.candidate {
            Candidate::Version(v) => {
                let (version, plugin) = self.registry.version(&request.plugin, *v).await?;
                let info = CandidateInfo {
                    source: format!("version {v}"),
                    version: Some(*v),
                    digest: version.digest,
                    world: version.world,
                };
                (plugin, info)
            }
            Candidate::Wasm(bytes) => {
                let plugin = self.registry.load_unstored(bytes).await?;
                let info = CandidateInfo {
                    source: "file".into(),
                    version: None,
                    digest: plugin.digest().to_owned(),
                    world: plugin.world(),
                };
                (plugin, info)
            }
        };
        if info.world != newest.world {
            return Err(ValidationError::new(
                match request.candidate {
                    Candidate::Version(_) => "version",
                    Candidate::Wasm(_) => "wasm",
                },
                format!(
                    "the candidate is a {} plugin; {:?} decides as a {} plugin",
                    info.world.as_str(),
                    request.plugin,
                    newest.world.as_str()
                ),
            )
            .into());
        }
        if let Some(config) = &request.config {
            let (result, _) = candidate
                .validate_config(&config_text(config), &Limits::default())
                .await;
            if let Err(e) = result {
                return Err(ValidationError::new(
                    "config",
                    format!("the candidate refused the config: {e}"),
                )
                .into());
            }
        }
        // What was decided just now is in the recorder's queue: wait for it.
        if let Some(r) = &self.recorder {
            r.flush().await;
        }
        let decisions = self
            .store
            .recorded_decisions(&DecisionQuery {
                plugin: request.plugin.clone(),
                mode: BindingMode::Enforce,
                pool: request.pool.clone(),
                since: request.since,
                limit: request.limit,
            })
            .await?;
        let started = Instant::now();
        let mut report = ReplayReport {
            plugin: request.plugin.clone(),
            candidate: info,
            config: request.config.clone(),
            summary: Summary::default(),
            truncated: false,
            runs: Vec::with_capacity(decisions.len()),
        };
        for d in &decisions {
            if started.elapsed() >= BUDGET {
                report.truncated = true;
                break;
            }
            let line = self
                .replay_one(
                    &candidate,
                    report.candidate.world,
                    d,
                    request.config.as_ref(),
                )
                .await;
            tally(&mut report.summary, &line, report.candidate.world);
            report.runs.push(line);
        }
        Ok(report)
    }

    async fn replay_one(
        &self,
        candidate: &LoadedPlugin,
        world: World,
        d: &StoredDecision,
        config: Option<&Value>,
    ) -> Replayed {
        let mut line = Replayed {
            run_id: d.run_id.clone(),
            decided_at: d.at,
            pool: d.pool.clone(),
            recorded_version: d.version,
            recorded: d.outcome.clone(),
            replayed: None,
            same: false,
            change: None,
            job_diff: None,
            live_stats: Vec::new(),
            not_replayable: None,
        };
        if d.world != world.as_str() {
            line.not_replayable = Some(format!(
                "recorded as a {} decision; the candidate is a {} plugin",
                d.world,
                world.as_str()
            ));
            return line;
        }
        let inputs = match inputs(d) {
            Ok(i) => i,
            Err(e) => {
                line.not_replayable = Some(e);
                return line;
            }
        };
        let config = config_text(config.unwrap_or(&inputs.binding.config));
        let limits = Limits {
            deadline: Duration::from_millis(u64::from(inputs.binding.deadline_ms)),
            memory_bytes: inputs.binding.memory_mb as usize * 1024 * 1024,
            ..Limits::default()
        };
        let lookup = Arc::new(RecordedLookup {
            stats: inputs.stats,
            store: Arc::clone(&self.store),
            live: Mutex::new(Vec::new()),
        });
        let asked: Arc<dyn Lookup> = lookup.clone();
        let ctx = &inputs.context;
        let replayed = match (world, &inputs.job) {
            (World::Router, _) => {
                let (r, _) = candidate.route(&config, ctx, &asked, &limits).await;
                match r {
                    Ok(route) => route_json(&route),
                    Err(e) => record::error_outcome(e.kind(), &e.to_string()),
                }
            }
            (World::Admission, _) => {
                let (r, _) = candidate.admit(&config, ctx, &asked, &limits).await;
                match r {
                    Ok(a) => admission_json(&a),
                    Err(e) => record::error_outcome(e.kind(), &e.to_string()),
                }
            }
            (World::Mutator, Some(job)) => {
                // What the host stamps, by the pool's kind: as recorded if a
                // plugin asked, else the pool's now (the host asking is not
                // the candidate reading live stats), else the job's shape.
                let recorded = lookup.stats.pool_types.get(&ctx.pool).copied().flatten();
                let pool_type = match recorded {
                    Some(t) => t,
                    None => match self.store.get_pool(&ctx.pool).await {
                        Ok(p) => p.pool_type,
                        Err(_) if job.get("job_manifest").is_some() => PoolType::Kubernetes,
                        Err(_) => PoolType::Process,
                    },
                };
                let forbidden = forbidden_paths(pool_type);
                let (r, _) = candidate
                    .mutate(&config, ctx, job, &forbidden, &asked, &limits)
                    .await;
                mutated_json(&r)
            }
            (World::Mutator, None) => {
                line.not_replayable = Some("no job was recorded with it".into());
                return line;
            }
        };
        line.live_stats =
            std::mem::take(&mut *lookup.live.lock().unwrap_or_else(PoisonError::into_inner));
        line.same = replayed == d.outcome;
        if !line.same {
            line.change = Some(format!("{} → {}", said(&d.outcome), said(&replayed)));
            if let (Some(job), Some(old), Some(new)) =
                (&inputs.job, d.outcome.get("patch"), replayed.get("patch"))
            {
                line.job_diff = job_diff(job, old, new);
            }
        }
        line.replayed = Some(replayed);
        line
    }
}

/// The difference between the jobs two patches make of `job`.
fn job_diff(job: &Value, old: &Value, new: &Value) -> Option<Value> {
    let made = |ops: &Value| -> Option<Value> {
        let patch: json_patch::Patch = serde_json::from_value(ops.clone()).ok()?;
        let mut doc = job.clone();
        json_patch::patch(&mut doc, &patch).ok()?;
        Some(doc)
    };
    let (a, b) = (made(old)?, made(new)?);
    serde_json::to_value(json_patch::diff(&a, &b)).ok()
}

/// An outcome in a few words.
fn said(v: &Value) -> String {
    if let Some(e) = v.get("error") {
        return format!(
            "error ({}: {})",
            e["kind"].as_str().unwrap_or("?"),
            e["message"].as_str().unwrap_or("")
        );
    }
    if let Some(ops) = v.get("patch").and_then(Value::as_array) {
        return format!("{} patch operation(s)", ops.len());
    }
    match v.get("decision").and_then(Value::as_str) {
        Some(d) => match v
            .get("reason")
            .or_else(|| v.get("message"))
            .and_then(Value::as_str)
        {
            Some(r) if !r.is_empty() => format!("{d}: {r}"),
            _ => d.to_owned(),
        },
        None => format!("route {v}"),
    }
}

fn decision(v: &Value) -> Option<&str> {
    v.get("decision").and_then(Value::as_str)
}

fn tally(s: &mut Summary, line: &Replayed, world: World) {
    let Some(new) = &line.replayed else {
        s.not_replayable += 1;
        return;
    };
    s.judged += 1;
    if !line.live_stats.is_empty() {
        s.live_stats += 1;
    }
    if new.get("error").is_some() {
        s.errors += 1;
    }
    if line.same {
        s.same += 1;
        return;
    }
    s.different += 1;
    let old = &line.recorded;
    match world {
        World::Admission => match decision(new) {
            Some(d) if decision(old) != Some(d) => match d {
                "reject" => s.would_reject += 1,
                "admit" => s.would_admit += 1,
                "defer" => s.would_defer += 1,
                _ => {}
            },
            Some(_) => s.reasons_changed += 1,
            None => {}
        },
        World::Router => {
            if new.get("error").is_none() {
                s.routes_changed += 1;
            }
        }
        World::Mutator => {
            if new.get("error").is_none() {
                s.jobs_changed += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn since_takes_a_time_or_an_age() {
        let now = DateTime::parse_from_rfc3339("2026-12-04T12:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        assert_eq!(
            parse_since("90m", now).expect("age"),
            now - chrono::Duration::minutes(90)
        );
        assert_eq!(
            parse_since("2d", now).expect("age"),
            now - chrono::Duration::days(2)
        );
        assert_eq!(
            parse_since("2026-12-01T00:00:00Z", now)
                .expect("time")
                .to_rfc3339(),
            "2026-12-01T00:00:00+00:00"
        );
        for bad in [
            "",
            "m",
            "5w",
            "-5m",
            "99999999999d",
            "yesterday",
            "5é",
            "L\u{7a6a6}",
        ] {
            let e = parse_since(bad, now).expect_err(bad);
            assert_eq!(e.field, "since", "{bad}");
        }
    }

    #[test]
    fn the_job_diff_goes_from_the_recorded_job_to_the_candidates() {
        let job = json!({"env": {"A": "1"}});
        let old = json!([{"op": "add", "path": "/env/M", "value": "patch"}]);
        let new = json!([{"op": "add", "path": "/env/M", "value": "job"},
                         {"op": "remove", "path": "/env/A"}]);
        let diff = job_diff(&job, &old, &new).expect("diff");
        let ops = diff.as_array().expect("ops");
        assert!(
            ops.contains(&json!({"op": "replace", "path": "/env/M", "value": "job"})),
            "{diff}"
        );
        assert!(
            ops.contains(&json!({"op": "remove", "path": "/env/A"})),
            "{diff}"
        );
        assert_eq!(ops.len(), 2, "{diff}");
    }

    #[test]
    fn the_summary_counts_each_kind_of_difference() {
        let line = |old: Value, new: Option<Value>| Replayed {
            run_id: "r".into(),
            decided_at: Utc::now(),
            pool: "p".into(),
            recorded_version: 1,
            same: new.as_ref() == Some(&old),
            recorded: old,
            replayed: new,
            change: None,
            job_diff: None,
            live_stats: Vec::new(),
            not_replayable: None,
        };
        let mut s = Summary::default();
        let admit = json!({"decision": "admit"});
        let reject = json!({"decision": "reject", "reason": "no"});
        tally(
            &mut s,
            &line(admit.clone(), Some(admit.clone())),
            World::Admission,
        );
        tally(
            &mut s,
            &line(admit.clone(), Some(reject.clone())),
            World::Admission,
        );
        tally(
            &mut s,
            &line(reject.clone(), Some(admit.clone())),
            World::Admission,
        );
        tally(
            &mut s,
            &line(admit.clone(), Some(record::error_outcome("trap", "boom"))),
            World::Admission,
        );
        tally(&mut s, &line(admit, None), World::Admission);
        assert_eq!(
            s,
            Summary {
                judged: 4,
                same: 1,
                different: 3,
                would_reject: 1,
                would_admit: 1,
                errors: 1,
                not_replayable: 1,
                ..Summary::default()
            }
        );
    }
}

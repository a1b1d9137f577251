//! `scheduler`: `release_ready` on a real SQLite store, each released run
//! moved to Running and Completed at once (the backend stubbed to complete
//! instantly), next to the same ordering and limit logic on an in-memory
//! model with no store.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{Map, json};
use weir::BaseJobTemplate;
use weir::{ConcurrencyLimit, Pool, PoolType, Queue, RetryPolicy, RunState};
use weir::{NewRun, SqlStore, Store, Transition};

use crate::Row;

pub(crate) const POOL: &str = "bench";
const POOL_LIMIT: u32 = 100;
pub(crate) const TAGS: [(&str, u32); 3] = [("t20", 20), ("t40", 40), ("t60", 60)];
pub(crate) const BATCH: usize = 512;

/// Queue `i` of the 10: priorities 1–5, two queues each.
pub(crate) fn queue(i: usize) -> (String, u32) {
    let priority = (i / 2) as u32 + 1;
    let side = if i.is_multiple_of(2) { 'a' } else { 'b' };
    (format!("p{priority}-{side}"), priority)
}

/// The workload: for run `i`, its queue index and its 0–2 tags (indices into
/// `TAGS`), from a fixed pseudo-random sequence (xorshift), so every scenario
/// and every commit queues the same runs.
pub(crate) struct Workload {
    x: u64,
}

impl Workload {
    pub(crate) fn new() -> Self {
        Self {
            x: 0x9e37_79b9_7f4a_7c15,
        }
    }

    fn next_u64(&mut self) -> u64 {
        self.x ^= self.x << 13;
        self.x ^= self.x >> 7;
        self.x ^= self.x << 17;
        self.x
    }
}

impl Iterator for Workload {
    type Item = (usize, Vec<usize>);

    fn next(&mut self) -> Option<Self::Item> {
        let q = (self.next_u64() % 10) as usize;
        let tags = match self.next_u64() % 3 {
            0 => vec![],
            1 => vec![(self.next_u64() % 3) as usize],
            _ => {
                let a = (self.next_u64() % 3) as usize;
                vec![a, (a + 1 + (self.next_u64() % 2) as usize) % 3]
            }
        };
        Some((q, tags))
    }
}

fn workload(n: usize) -> Vec<(usize, Vec<usize>)> {
    Workload::new().take(n).collect()
}

pub(crate) async fn scenario(n: usize) -> Result<Vec<Row>, String> {
    let work = workload(n);
    let (mut rows, store_counts) = store_run(&work).await?;
    let (model_rows, model_counts) = model_run(&work);
    rows.extend(model_rows);
    eprintln!(
        "scheduler: store and model released the same number of runs per call: {}",
        store_counts == model_counts
    );
    Ok(rows)
}

/// One pool (limit `POOL_LIMIT`), its 10 queues and the 3 tag limits.
pub(crate) async fn setup(store: &SqlStore) -> Result<(), String> {
    let now = Utc::now();
    store
        .create_pool(&Pool {
            cluster: None,
            name: POOL.into(),
            pool_type: PoolType::Process,
            base_job_template: BaseJobTemplate::default_for(PoolType::Process.template_kind()),
            concurrency_limit: Some(POOL_LIMIT),
            paused: false,
            description: String::new(),
            created_at: now,
            updated_at: now,
        })
        .await
        .map_err(|e| e.to_string())?;
    for i in 0..10 {
        let (name, priority) = queue(i);
        store
            .create_queue(&Queue {
                pool: POOL.into(),
                name,
                priority,
                concurrency_limit: None,
                paused: false,
                late_after_seconds: None,
                late_action: weir::LateAction::Keep,
                description: String::new(),
                created_at: now,
            })
            .await
            .map_err(|e| e.to_string())?;
    }
    for (tag, limit) in TAGS {
        store
            .create_limit(&ConcurrencyLimit {
                tag: tag.into(),
                limit,
                created_at: now,
            })
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Run `(q, tags)` of the workload as `insert_run` gets it.
pub(crate) fn new_run(q: usize, tags: &[usize], scheduled_at: DateTime<Utc>) -> NewRun {
    NewRun {
        id: uuid::Uuid::now_v7(),
        pool: POOL.into(),
        queue: queue(q).0,
        deployment: None,
        job: Some(json!({"command": ["true"]})),
        tags: tags.iter().map(|t| TAGS[*t].0.to_owned()).collect(),
        parameters: Map::new(),
        job_variables: Map::new(),
        parent_run_id: None,
        idempotency_key: None,
        scheduled_at,
        retries: RetryPolicy::default(),
        message: "created".into(),
        cause: "bench".into(),
        history: Vec::new(),
        needs_admission: false,
        labels: Map::new(),
    }
}

async fn store_run(work: &[(usize, Vec<usize>)]) -> Result<(Vec<Row>, Vec<usize>), String> {
    let n = work.len();
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let store = SqlStore::open_sqlite(&dir.path().join("weir.db"))
        .await
        .map_err(|e| e.to_string())?;
    setup(&store).await?;
    // The store has no batch insert: one transaction per run, as the API does.
    let scheduled_at = Utc::now() - chrono::Duration::seconds(1);
    let t = Instant::now();
    for (q, tags) in work {
        let run = new_run(*q, tags, scheduled_at);
        store.insert_run(run).await.map_err(|e| e.to_string())?;
    }
    let insert = t.elapsed();

    let mut calls = Vec::new();
    let mut counts = Vec::new();
    let mut finish = Vec::new();
    let mut released = 0usize;
    let t = Instant::now();
    while released < n {
        let c = Instant::now();
        let batch = store
            .release_ready(Utc::now(), BATCH)
            .await
            .map_err(|e| e.to_string())?;
        calls.push(c.elapsed());
        if batch.is_empty() {
            return Err(format!(
                "scheduler: release_ready released nothing with {} of {n} runs left",
                n - released
            ));
        }
        counts.push(batch.len());
        released += batch.len();
        // The released runs end concurrently, as runs on a backend do (each
        // on its own task), so their transitions can share commits.
        let store = &store;
        let ends = futures::future::join_all(batch.into_iter().map(|r| async move {
            let c = Instant::now();
            for to in [RunState::Running, RunState::Completed] {
                store
                    .transition(r.run.id, Transition::new(to, "done", "bench"))
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Ok::<_, String>(c.elapsed())
        }))
        .await;
        for end in ends {
            finish.push(end?);
        }
    }
    let wall = t.elapsed();
    let in_release: Duration = calls.iter().sum();
    eprintln!(
        "scheduler: {n} runs, {} release calls (pool limit {POOL_LIMIT}, batch {BATCH})",
        calls.len()
    );
    let rows = vec![
        Row::rate(
            "scheduler: sqlite insert_run (one transaction each)",
            n as u64,
            insert,
            "runs",
        ),
        Row::rate(
            "scheduler: sqlite decisions (released / wall, incl. concurrent completes)",
            n as u64,
            wall,
            "runs",
        ),
        Row::rate(
            "scheduler: sqlite decisions (released / time in release_ready)",
            n as u64,
            in_release,
            "runs",
        ),
        Row::latency("scheduler: sqlite release_ready call", calls),
        Row::latency(
            "scheduler: sqlite transition Running+Completed, per run (a batch's runs at once)",
            finish,
        ),
    ];
    Ok((rows, counts))
}

pub(crate) struct ModelQueue {
    runs: VecDeque<(usize, Vec<usize>)>,
}

/// The store's release logic on plain data: priority levels in order,
/// round-robin across a level's queues, a queue's runs in order, runs whose
/// tags are full skipped (not blocking the queue), the pool limit over all.
pub(crate) struct Model {
    levels: BTreeMap<u32, Vec<usize>>,
    queues: Vec<ModelQueue>,
    pool_used: u32,
    tag_used: [u32; 3],
}

impl Model {
    /// The 10 queues of the scenario, empty.
    pub(crate) fn new() -> Self {
        let mut model = Model {
            levels: BTreeMap::new(),
            queues: (0..10)
                .map(|_| ModelQueue {
                    runs: VecDeque::new(),
                })
                .collect(),
            pool_used: 0,
            tag_used: [0; 3],
        };
        for q in 0..10 {
            model.levels.entry(queue(q).1).or_default().push(q);
        }
        model
    }

    /// Queues run `i` of the workload.
    pub(crate) fn push(&mut self, i: usize, (q, tags): (usize, Vec<usize>)) {
        self.queues[q].runs.push_back((i, tags));
    }

    pub(crate) fn release(&mut self, max: usize) -> Vec<(usize, Vec<usize>)> {
        let mut out = Vec::new();
        'levels: for qs in self.levels.values() {
            let mut done: HashSet<usize> = HashSet::new();
            let mut pos = vec![0usize; qs.len()];
            while done.len() < qs.len() {
                for (i, &q) in qs.iter().enumerate() {
                    if done.contains(&i) {
                        continue;
                    }
                    if out.len() >= max {
                        break 'levels;
                    }
                    if self.pool_used >= POOL_LIMIT {
                        done.insert(i);
                        continue;
                    }
                    let runs = &mut self.queues[q].runs;
                    let tag_used = &self.tag_used;
                    while pos[i] < runs.len()
                        && runs[pos[i]].1.iter().any(|t| tag_used[*t] >= TAGS[*t].1)
                    {
                        pos[i] += 1;
                    }
                    let Some(run) = runs.remove(pos[i]) else {
                        done.insert(i);
                        continue;
                    };
                    for t in &run.1 {
                        self.tag_used[*t] += 1;
                    }
                    self.pool_used += 1;
                    out.push(run);
                }
            }
        }
        out
    }

    pub(crate) fn complete(&mut self, run: &(usize, Vec<usize>)) {
        self.pool_used -= 1;
        for t in &run.1 {
            self.tag_used[*t] -= 1;
        }
    }
}

fn model_run(work: &[(usize, Vec<usize>)]) -> (Vec<Row>, Vec<usize>) {
    let n = work.len();
    let mut model = Model::new();
    for (i, item) in work.iter().enumerate() {
        model.push(i, item.clone());
    }
    let mut calls = Vec::new();
    let mut counts = Vec::new();
    let mut released = 0;
    let t = Instant::now();
    while released < n {
        let c = Instant::now();
        let batch = model.release(BATCH);
        calls.push(c.elapsed());
        if batch.is_empty() {
            break;
        }
        counts.push(batch.len());
        released += batch.len();
        for r in &batch {
            model.complete(r);
        }
        std::hint::black_box(&batch);
    }
    let wall = t.elapsed();
    (
        vec![
            Row::rate(
                "scheduler: in-memory model decisions (released / wall)",
                released as u64,
                wall,
                "runs",
            ),
            Row::latency("scheduler: in-memory model release call", calls),
        ],
        counts,
    )
}

/// The store's release walk (`weir::release::walk`, the code both
/// stores run inside their transaction) against [`Model`]: the same
/// workload, the same passes and completions, the same releases in the same
/// order — without a database.
#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use async_trait::async_trait;
    use proptest::prelude::*;
    use weir::release::{self, Limits, QueueState, ReleaseSource};

    use super::*;

    /// One pass over the waiting runs, as a store's transaction sees them.
    struct Pass<'a> {
        waiting: &'a [VecDeque<(usize, Vec<String>)>],
        read: Vec<usize>,
    }

    #[async_trait]
    impl ReleaseSource for Pass<'_> {
        type Run = (usize, Vec<String>);
        type Error = ();
        /// Leaves out runs carrying a full tag, as the SQL store's pages do,
        /// so the property test checks that doing so changes no release.
        async fn next(&mut self, q: usize, full_tags: &[&str]) -> Result<Option<Self::Run>, ()> {
            loop {
                let run = self.waiting[q].get(self.read[q]).cloned();
                self.read[q] += 1;
                match run {
                    Some(run) if run.1.iter().any(|t| full_tags.contains(&t.as_str())) => {}
                    other => return Ok(other),
                }
            }
        }
        async fn take(&mut self, _q: usize, _run: &Self::Run) -> Result<bool, ()> {
            Ok(true)
        }
        fn tags(run: &Self::Run) -> &[String] {
            &run.1
        }
    }

    /// The walk's side: waiting runs per queue and the slots held.
    struct Walked {
        waiting: Vec<VecDeque<(usize, Vec<String>)>>,
        queues: Vec<QueueState>,
        limits: Limits,
    }

    impl Walked {
        fn new() -> Self {
            let mut limits = Limits::default();
            limits.pools.insert(POOL.into(), (Some(POOL_LIMIT), 0));
            limits.tags = TAGS.iter().map(|(t, l)| (t.to_string(), *l)).collect();
            Self {
                waiting: (0..10).map(|_| VecDeque::new()).collect(),
                queues: (0..10)
                    .map(|q| QueueState {
                        pool: POOL.into(),
                        priority: i64::from(queue(q).1),
                        limit: None,
                        used: 0,
                    })
                    .collect(),
                limits,
            }
        }

        async fn release(&mut self, max: usize) -> Vec<usize> {
            let mut pass = Pass {
                waiting: &self.waiting,
                read: vec![0; 10],
            };
            let taken = release::walk(&mut pass, &mut self.queues, &mut self.limits, max)
                .await
                .unwrap_or_default();
            for (q, (id, _)) in &taken {
                self.waiting[*q].retain(|(w, _)| w != id);
            }
            taken.into_iter().map(|(_, (id, _))| id).collect()
        }

        fn complete(&mut self, q: usize, tags: &[usize]) {
            self.queues[q].used -= 1;
            if let Some(p) = self.limits.pools.get_mut(POOL) {
                p.1 -= 1;
            }
            for t in tags {
                if let Some(n) = self.limits.tags_used.get_mut(TAGS[*t].0) {
                    *n -= 1;
                }
            }
        }
    }

    fn workload() -> impl Strategy<Value = Vec<(usize, Vec<usize>)>> {
        prop::collection::vec(
            (0..10usize, prop::collection::btree_set(0..3usize, 0..=2)),
            0..600,
        )
        .prop_map(|runs| {
            runs.into_iter()
                .map(|(q, tags)| (q, tags.into_iter().collect()))
                .collect()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn the_walk_releases_what_the_model_releases(
            work in workload(),
            passes in prop::collection::vec((1..300usize, 0..=100u8), 1..40),
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let mut model = Model::new();
            let mut walked = Walked::new();
            let by_id: HashMap<usize, (usize, Vec<usize>)> =
                work.iter().cloned().enumerate().collect();
            for (i, (q, tags)) in work.iter().enumerate() {
                model.push(i, (*q, tags.clone()));
                let names = tags.iter().map(|t| TAGS[*t].0.to_owned()).collect();
                walked.waiting[*q].push_back((i, names));
            }
            let mut running: Vec<usize> = Vec::new();
            for (max, done_percent) in passes {
                let expected: Vec<usize> = model.release(max).into_iter().map(|(i, _)| i).collect();
                let got = runtime.block_on(walked.release(max));
                prop_assert_eq!(&got, &expected);
                running.extend(got);
                // Complete a share of what is running, oldest first.
                let n = running.len() * usize::from(done_percent) / 100;
                for id in running.drain(..n) {
                    let (q, tags) = &by_id[&id];
                    model.complete(&(id, tags.clone()));
                    walked.complete(*q, tags);
                }
            }
        }
    }
}

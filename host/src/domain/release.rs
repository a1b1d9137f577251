//! The release walk: which waiting runs start now. Written once, as plain
//! code over [`ReleaseSource`] — a store implements it inside one
//! transaction (`store/sql.rs`), and the property test in `weir-bench`
//! implements it in memory and checks the same releases as its model.
//!
//! The rules, in order:
//! - queues are taken by priority level (1 first), and within a level
//!   round-robin, one run per queue per round, in the order given;
//! - a queue gives its runs in order (FIFO by scheduled time);
//! - a run whose tags include one at its limit is skipped for this pass and
//!   blocks nobody behind it;
//! - a queue stops at its own limit, or at its pool's;
//! - the walk stops after `max` runs;
//! - a run the source cannot take (it stopped waiting since it was read) is
//!   skipped; taking one charges its pool, its queue and each of its tags.
//!
//! Paused pools and queues never reach the walk: the store leaves them out
//! of `queues`.

use std::collections::{BTreeMap, HashMap, HashSet};

use async_trait::async_trait;

/// Where the walk reads runs and takes them.
#[async_trait]
pub trait ReleaseSource: Send {
    /// A waiting run as the source gives it.
    type Run: Send;
    type Error: Send;

    /// Queue `queue`'s next waiting run after those it already gave in this
    /// pass, or `None` when it has no more.
    ///
    /// `full_tags` are the tags at their limit now. A source may leave out
    /// runs carrying one of them (the walk would skip them): a tag only fills
    /// during a pass, so such a run could not be taken later in it either.
    /// Without this, runs blocked by a full tag pile up at a queue's head and
    /// every pass reads past all of them again.
    async fn next(
        &mut self,
        queue: usize,
        full_tags: &[&str],
    ) -> Result<Option<Self::Run>, Self::Error>;

    /// Takes the run from queue `queue` with its slots, if it is still
    /// waiting: `false` (nothing taken) when it moved on since `next` read it.
    /// A source may only choose here and move the chosen runs after the walk,
    /// all at once (the SQL store does: `store/sql.rs`); it then checks each
    /// is still waiting itself, and walks again if one was not.
    async fn take(&mut self, queue: usize, run: &Self::Run) -> Result<bool, Self::Error>;

    /// The run's tags.
    fn tags(run: &Self::Run) -> &[String];
}

/// A queue the walk may release from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueState {
    pub pool: String,
    pub priority: i64,
    pub limit: Option<u32>,
    /// Slots its runs hold now.
    pub used: u64,
}

/// The limits over queues: pools and tags, with the slots held now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    /// Pool → (limit, slots held). A pool missing here releases nothing.
    pub pools: HashMap<String, (Option<u32>, u64)>,
    /// Tag → limit; a tag missing here has no limit.
    pub tags: HashMap<String, u32>,
    /// Tag → slots held.
    pub tags_used: HashMap<String, u64>,
}

impl Limits {
    fn pool_full(&self, pool: &str) -> bool {
        self.pools
            .get(pool)
            .is_none_or(|(limit, used)| limit.is_some_and(|l| *used >= u64::from(l)))
    }

    fn tag_full(&self, tag: &str) -> bool {
        self.tags
            .get(tag)
            .is_some_and(|l| self.tags_used.get(tag).copied().unwrap_or(0) >= u64::from(*l))
    }

    /// The tags at their limit now, in name order.
    fn full_tags(&self) -> Vec<&str> {
        let mut full: Vec<&str> = self
            .tags
            .keys()
            .map(String::as_str)
            .filter(|t| self.tag_full(t))
            .collect();
        full.sort_unstable();
        full
    }
}

/// Walks `queues` (as the rules above say) and returns the runs taken, each
/// with the index of its queue, in the order they were taken. `queues` and
/// `limits` are charged with what was taken.
pub async fn walk<S: ReleaseSource>(
    source: &mut S,
    queues: &mut [QueueState],
    limits: &mut Limits,
    max: usize,
) -> Result<Vec<(usize, S::Run)>, S::Error> {
    let mut levels: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
    for (i, q) in queues.iter().enumerate() {
        levels.entry(q.priority).or_default().push(i);
    }
    let mut taken = Vec::new();
    'levels: for level in levels.values() {
        let mut done: HashSet<usize> = HashSet::new();
        while done.len() < level.len() {
            for &q in level {
                if done.contains(&q) {
                    continue;
                }
                if taken.len() >= max {
                    break 'levels;
                }
                let queue = &queues[q];
                let queue_full = queue.limit.is_some_and(|l| queue.used >= u64::from(l));
                if queue_full || limits.pool_full(&queue.pool) {
                    done.insert(q);
                    continue;
                }
                let full = limits.full_tags();
                let run = loop {
                    let Some(run) = source.next(q, &full).await? else {
                        break None;
                    };
                    if S::tags(&run).iter().any(|t| limits.tag_full(t)) {
                        continue;
                    }
                    if source.take(q, &run).await? {
                        break Some(run);
                    }
                };
                let Some(run) = run else {
                    done.insert(q);
                    continue;
                };
                for tag in S::tags(&run) {
                    *limits.tags_used.entry(tag.clone()).or_insert(0) += 1;
                }
                if let Some(p) = limits.pools.get_mut(&queues[q].pool) {
                    p.1 += 1;
                }
                queues[q].used += 1;
                taken.push((q, run));
            }
        }
    }
    Ok(taken)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// Runs as (name, tags) per queue; `gone` ones cannot be taken.
    struct Memory {
        queues: Vec<VecDeque<(&'static str, Vec<String>)>>,
        gone: Vec<&'static str>,
        /// The full tags each `next` was given.
        asked: Vec<Vec<String>>,
    }

    #[async_trait]
    impl ReleaseSource for Memory {
        type Run = (&'static str, Vec<String>);
        type Error = ();
        async fn next(
            &mut self,
            queue: usize,
            full_tags: &[&str],
        ) -> Result<Option<Self::Run>, ()> {
            self.asked
                .push(full_tags.iter().map(|t| t.to_string()).collect());
            Ok(self.queues[queue].pop_front())
        }
        async fn take(&mut self, _queue: usize, run: &Self::Run) -> Result<bool, ()> {
            Ok(!self.gone.contains(&run.0))
        }
        fn tags(run: &Self::Run) -> &[String] {
            &run.1
        }
    }

    fn queue(pool: &str, priority: i64, limit: Option<u32>) -> QueueState {
        QueueState {
            pool: pool.into(),
            priority,
            limit,
            used: 0,
        }
    }

    fn runs(names: &[&'static str], tags: &[&str]) -> VecDeque<(&'static str, Vec<String>)> {
        names
            .iter()
            .map(|n| (*n, tags.iter().map(|t| t.to_string()).collect()))
            .collect()
    }

    #[tokio::test]
    async fn priority_then_round_robin_then_limits() {
        let mut source = Memory {
            queues: vec![
                runs(&["a1", "a2", "a3"], &[]),
                runs(&["b1", "b2"], &[]),
                runs(&["u1", "u2"], &[]),
            ],
            gone: vec!["a2"],
            asked: vec![],
        };
        let mut queues = vec![
            queue("p", 2, None),
            queue("p", 2, Some(1)),
            queue("p", 1, None),
        ];
        let mut limits = Limits::default();
        limits.pools.insert("p".into(), (Some(5), 0));
        let taken = walk(&mut source, &mut queues, &mut limits, 10)
            .await
            .expect("walk");
        let names: Vec<&str> = taken.iter().map(|(_, r)| r.0).collect();
        // The urgent level first; then a/b alternate until b is at its limit;
        // a2 was gone; the pool stops the walk at 5.
        assert_eq!(names, vec!["u1", "u2", "a1", "b1", "a3"]);
        assert_eq!(limits.pools["p"].1, 5);
        assert_eq!(queues[1].used, 1);
    }

    #[tokio::test]
    async fn a_run_held_by_a_tag_blocks_nobody_behind_it() {
        let mut q = runs(&["gpu1", "gpu2"], &["gpu"]);
        q.extend(runs(&["cpu1"], &[]));
        let mut source = Memory {
            queues: vec![q],
            gone: vec![],
            asked: vec![],
        };
        let mut queues = vec![queue("p", 1, None)];
        let mut limits = Limits::default();
        limits.pools.insert("p".into(), (None, 0));
        limits.tags.insert("gpu".into(), 1);
        let taken = walk(&mut source, &mut queues, &mut limits, 10)
            .await
            .expect("walk");
        let names: Vec<&str> = taken.iter().map(|(_, r)| r.0).collect();
        assert_eq!(names, vec!["gpu1", "cpu1"]);
        assert_eq!(limits.tags_used["gpu"], 1);
        // Once gpu1 filled the tag, the source is told, so it may leave out
        // the runs it would hold (a SQL page does).
        assert_eq!(source.asked.first(), Some(&Vec::new()));
        assert!(source.asked.len() > 1, "{:?}", source.asked);
        for asked in &source.asked[1..] {
            assert_eq!(asked, &vec!["gpu".to_string()]);
        }
    }

    #[tokio::test]
    async fn a_pool_that_is_not_listed_releases_nothing_and_max_stops_the_walk() {
        let mut source = Memory {
            queues: vec![runs(&["x"], &[]), runs(&["y1", "y2", "y3"], &[])],
            gone: vec![],
            asked: vec![],
        };
        let mut queues = vec![queue("paused", 1, None), queue("p", 1, None)];
        let mut limits = Limits::default();
        limits.pools.insert("p".into(), (None, 0));
        let taken = walk(&mut source, &mut queues, &mut limits, 2)
            .await
            .expect("walk");
        let names: Vec<&str> = taken.iter().map(|(_, r)| r.0).collect();
        assert_eq!(names, vec!["y1", "y2"]);
    }
}

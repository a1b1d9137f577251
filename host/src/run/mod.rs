//! A stored run's life, one file per step: `submit.rs` (validate, route,
//! admit, store), `build.rs` (the one job builder), `launch.rs` (a released
//! run's attempt: build, record the intent, execute, record the outcome),
//! `cancel.rs` (cancels and the attempts in flight), `recover.rs` (after a
//! restart), `waiting.rs` (why a waiting run waits), `schedule.rs` (a
//! deployment's schedules become runs, on the leader). Release itself is the
//! scheduler's (`scheduler.rs`, the walk in `domain/release.rs`).

pub(crate) mod build;
pub(crate) mod cancel;
pub(crate) mod launch;
pub(crate) mod recover;
pub(crate) mod schedule;
pub(crate) mod submit;
pub(crate) mod waiting;

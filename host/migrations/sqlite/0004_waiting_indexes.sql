-- The scheduler's per-pass queries seek instead of reading every waiting
-- run (weir-bench growth: at 1M queued these took 0.8 s per pass).
-- mark_late (state = 'Scheduled' AND scheduled_at < ?) and next_wake
-- (MIN(scheduled_at) per waiting state):
CREATE INDEX runs_state_time ON runs (state, scheduled_at);
-- due_admissions: only the few runs an admission plugin deferred, in order.
CREATE INDEX runs_admission ON runs (scheduled_at, seq) WHERE needs_admission = 1;

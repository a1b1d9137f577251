-- The scheduler's per-pass queries seek instead of reading every waiting
-- run (see host/migrations/sqlite/0004_waiting_indexes.sql).
CREATE INDEX runs_state_time ON runs (state, scheduled_at);
CREATE INDEX runs_admission ON runs (scheduled_at, seq) WHERE needs_admission;

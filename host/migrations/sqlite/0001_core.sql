-- Weir's core schema. Times are integer microseconds since the Unix epoch.

CREATE TABLE pools (
    name              TEXT PRIMARY KEY,
    type              TEXT NOT NULL,
    base_job_template TEXT NOT NULL,
    concurrency_limit INTEGER,
    paused            INTEGER NOT NULL DEFAULT 0,
    description       TEXT NOT NULL DEFAULT '',
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL
);

CREATE TABLE queues (
    pool              TEXT NOT NULL REFERENCES pools(name) ON DELETE CASCADE,
    name              TEXT NOT NULL,
    priority          INTEGER NOT NULL,
    concurrency_limit INTEGER,
    paused            INTEGER NOT NULL DEFAULT 0,
    description       TEXT NOT NULL DEFAULT '',
    created_at        INTEGER NOT NULL,
    PRIMARY KEY (pool, name)
);

CREATE TABLE limits (
    tag        TEXT PRIMARY KEY,
    slots      INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE deployments (
    name                TEXT PRIMARY KEY,
    pool                TEXT NOT NULL REFERENCES pools(name),
    queue               TEXT,
    job_variables       TEXT NOT NULL,
    tags                TEXT NOT NULL,
    parameters          TEXT NOT NULL,
    description         TEXT NOT NULL DEFAULT '',
    retries_max         INTEGER NOT NULL DEFAULT 0,
    retry_delay_seconds INTEGER NOT NULL DEFAULT 0,
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL
);

CREATE TABLE runs (
    seq                 INTEGER PRIMARY KEY AUTOINCREMENT,
    id                  TEXT NOT NULL UNIQUE,
    state               TEXT NOT NULL,
    state_message       TEXT NOT NULL DEFAULT '',
    pool                TEXT NOT NULL,
    queue               TEXT NOT NULL,
    deployment          TEXT,
    job                 TEXT,
    tags                TEXT NOT NULL,
    parameters          TEXT NOT NULL,
    job_variables       TEXT NOT NULL,
    parent_run_id       TEXT,
    idempotency_key     TEXT UNIQUE,
    scheduled_at        INTEGER NOT NULL,
    created_at          INTEGER NOT NULL,
    released_at         INTEGER,
    started_at          INTEGER,
    ended_at            INTEGER,
    attempt             INTEGER NOT NULL DEFAULT 1,
    retries_max         INTEGER NOT NULL DEFAULT 0,
    retry_delay_seconds INTEGER NOT NULL DEFAULT 0,
    exit_code           INTEGER
);

-- The scheduler reads the head of each queue in (scheduled_at, seq) order.
CREATE INDEX runs_waiting ON runs (pool, queue, scheduled_at, seq)
    WHERE state IN ('Scheduled', 'Late', 'AwaitingRetry');
CREATE INDEX runs_state ON runs (state, seq);
CREATE INDEX runs_parent ON runs (parent_run_id) WHERE parent_run_id IS NOT NULL;
CREATE INDEX runs_deployment ON runs (deployment, seq);

CREATE TABLE run_tags (
    tag    TEXT NOT NULL,
    run_id TEXT NOT NULL,
    PRIMARY KEY (tag, run_id)
);

CREATE TABLE run_history (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id  TEXT NOT NULL,
    state   TEXT NOT NULL,
    at      INTEGER NOT NULL,
    message TEXT NOT NULL,
    cause   TEXT NOT NULL
);
CREATE INDEX run_history_run ON run_history (run_id, seq);

-- A slot belongs to a run from its release until it stops holding slots
-- (terminal, or waiting for a retry). kind is 'pool', 'queue' or 'tag'.
CREATE TABLE slots (
    kind   TEXT NOT NULL,
    key    TEXT NOT NULL,
    run_id TEXT NOT NULL,
    PRIMARY KEY (kind, key, run_id)
);
CREATE INDEX slots_run ON slots (run_id);

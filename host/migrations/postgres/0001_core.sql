-- Weir's core schema on PostgreSQL: the same tables, columns and meaning as
-- migrations/sqlite/0001_core.sql, numbered alike so a later change adds the
-- same-numbered file to both directories.
--
-- Times are bigint microseconds since the Unix epoch, as in SQLite: the
-- store code converts them one way for both stores, the release cursor pages
-- on (scheduled_at, seq) with plain integer comparisons, and no session time
-- zone or timestamp range ever enters. JSON is text, not jsonb: jsonb
-- reorders object keys and drops duplicates, and Weir keeps the key order of
-- templates, variables and labels (serde_json preserve_order), so the API
-- returns what was stored. The one query that looks inside JSON
-- (label counts) casts to jsonb. All integers are bigint (the Rust side is
-- i64) except exit_code, an i32.

CREATE TABLE pools (
    name              text PRIMARY KEY,
    type              text NOT NULL,
    base_job_template text NOT NULL,
    concurrency_limit bigint,
    paused            boolean NOT NULL DEFAULT false,
    description       text NOT NULL DEFAULT '',
    created_at        bigint NOT NULL,
    updated_at        bigint NOT NULL
);

CREATE TABLE queues (
    pool              text NOT NULL REFERENCES pools(name) ON DELETE CASCADE,
    name              text NOT NULL,
    priority          bigint NOT NULL,
    concurrency_limit bigint,
    paused            boolean NOT NULL DEFAULT false,
    description       text NOT NULL DEFAULT '',
    created_at        bigint NOT NULL,
    PRIMARY KEY (pool, name)
);

CREATE TABLE limits (
    tag        text PRIMARY KEY,
    slots      bigint NOT NULL,
    created_at bigint NOT NULL
);

CREATE TABLE deployments (
    name                text PRIMARY KEY,
    pool                text NOT NULL REFERENCES pools(name),
    queue               text,
    job_variables       text NOT NULL,
    tags                text NOT NULL,
    parameters          text NOT NULL,
    description         text NOT NULL DEFAULT '',
    retries_max         bigint NOT NULL DEFAULT 0,
    retry_delay_seconds bigint NOT NULL DEFAULT 0,
    created_at          bigint NOT NULL,
    updated_at          bigint NOT NULL
);

CREATE TABLE runs (
    seq                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id                  text NOT NULL UNIQUE,
    state               text NOT NULL,
    state_message       text NOT NULL DEFAULT '',
    pool                text NOT NULL,
    queue               text NOT NULL,
    deployment          text,
    job                 text,
    tags                text NOT NULL,
    parameters          text NOT NULL,
    job_variables       text NOT NULL,
    parent_run_id       text,
    idempotency_key     text UNIQUE,
    scheduled_at        bigint NOT NULL,
    created_at          bigint NOT NULL,
    released_at         bigint,
    started_at          bigint,
    ended_at            bigint,
    attempt             bigint NOT NULL DEFAULT 1,
    retries_max         bigint NOT NULL DEFAULT 0,
    retry_delay_seconds bigint NOT NULL DEFAULT 0,
    exit_code           integer
);

-- The scheduler reads the head of each queue in (scheduled_at, seq) order.
CREATE INDEX runs_waiting ON runs (pool, queue, scheduled_at, seq)
    WHERE state IN ('Scheduled', 'Late', 'AwaitingRetry');
CREATE INDEX runs_state ON runs (state, seq);
CREATE INDEX runs_parent ON runs (parent_run_id) WHERE parent_run_id IS NOT NULL;
CREATE INDEX runs_deployment ON runs (deployment, seq);

CREATE TABLE run_tags (
    tag    text NOT NULL,
    run_id text NOT NULL,
    PRIMARY KEY (tag, run_id)
);

CREATE TABLE run_history (
    seq     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id  text NOT NULL,
    state   text NOT NULL,
    at      bigint NOT NULL,
    message text NOT NULL,
    cause   text NOT NULL
);
CREATE INDEX run_history_run ON run_history (run_id, seq);

-- A slot belongs to a run from its release until it stops holding slots
-- (terminal, or waiting for a retry). kind is 'pool', 'queue' or 'tag'.
CREATE TABLE slots (
    kind   text NOT NULL,
    key    text NOT NULL,
    run_id text NOT NULL,
    PRIMARY KEY (kind, key, run_id)
);
CREATE INDEX slots_run ON slots (run_id);

-- WebAssembly plugins: content-addressed bytes shared by replicas, named
-- versions, and bindings (global routers, per-pool admission and mutators).
-- Same meaning as migrations/sqlite/0002_plugins.sql.

CREATE TABLE plugin_blobs (
    digest     text PRIMARY KEY,
    bytes      bytea NOT NULL,
    created_at bigint NOT NULL
);

CREATE TABLE plugin_versions (
    name        text NOT NULL,
    version     bigint NOT NULL,
    digest      text NOT NULL REFERENCES plugin_blobs(digest),
    world       text NOT NULL,
    wit_version text NOT NULL,
    size        bigint NOT NULL,
    created_at  bigint NOT NULL,
    PRIMARY KEY (name, version)
);

CREATE TABLE plugin_bindings (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- '' for the global router chain, else the pool's name.
    pool           text NOT NULL,
    plugin         text NOT NULL,
    pinned_version bigint,
    config         text NOT NULL,
    position       bigint NOT NULL,
    on_error       text NOT NULL,
    deadline_ms    bigint NOT NULL,
    memory_mb      bigint NOT NULL,
    created_at     bigint NOT NULL,
    UNIQUE (pool, plugin)
);

-- Structured detail on history lines (plugin decisions, patches, timings).
ALTER TABLE run_history ADD COLUMN detail text;

-- A run deferred by an admission plugin is judged again when it is due.
ALTER TABLE runs ADD COLUMN needs_admission boolean NOT NULL DEFAULT false;

-- The run's merged `labels` job variable (deployment, then run), for
-- plugins and per-label counts (team quotas).
ALTER TABLE runs ADD COLUMN labels text NOT NULL DEFAULT '{}';

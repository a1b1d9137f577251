-- WebAssembly plugins: content-addressed bytes shared by replicas, named
-- versions, and bindings (global routers, per-pool admission and mutators).

CREATE TABLE plugin_blobs (
    digest     TEXT PRIMARY KEY,
    bytes      BLOB NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE plugin_versions (
    name        TEXT NOT NULL,
    version     INTEGER NOT NULL,
    digest      TEXT NOT NULL REFERENCES plugin_blobs(digest),
    world       TEXT NOT NULL,
    wit_version TEXT NOT NULL,
    size        INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (name, version)
);

CREATE TABLE plugin_bindings (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    -- '' for the global router chain, else the pool's name.
    pool           TEXT NOT NULL,
    plugin         TEXT NOT NULL,
    pinned_version INTEGER,
    config         TEXT NOT NULL,
    position       INTEGER NOT NULL,
    on_error       TEXT NOT NULL,
    deadline_ms    INTEGER NOT NULL,
    memory_mb      INTEGER NOT NULL,
    created_at     INTEGER NOT NULL,
    UNIQUE (pool, plugin)
);

-- Structured detail on history lines (plugin decisions, patches, timings).
ALTER TABLE run_history ADD COLUMN detail TEXT;

-- A run deferred by an admission plugin is judged again when it is due.
ALTER TABLE runs ADD COLUMN needs_admission INTEGER NOT NULL DEFAULT 0;

-- The run's merged `labels` job variable (deployment, then run), for
-- plugins and per-label counts (team quotas).
ALTER TABLE runs ADD COLUMN labels TEXT NOT NULL DEFAULT '{}';

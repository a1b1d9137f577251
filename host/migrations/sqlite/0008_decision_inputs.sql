-- What each plugin decision saw (issue #16), so a new version can be
-- replayed against it: one row per decision, its parts (the run's context,
-- the stats it read, its binding's config and limits, the job a mutator was
-- given) stored once each by digest, zstd-compressed, in decision_blobs.
-- Kept for a configured count and age (`[server] decision_inputs_keep`,
-- `decision_inputs_keep_days`); a swept part reads back as "not kept".
-- Same meaning as migrations/postgres/0008_decision_inputs.sql.
CREATE TABLE decision_blobs (
    digest TEXT PRIMARY KEY,
    data   BLOB NOT NULL
);

CREATE TABLE decision_inputs (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id   TEXT NOT NULL,
    at       INTEGER NOT NULL,
    plugin   TEXT NOT NULL,
    world    TEXT NOT NULL,
    -- 'enforce' or 'shadow': the binding's mode.
    mode     TEXT NOT NULL,
    version  INTEGER NOT NULL,
    digest   TEXT NOT NULL,
    -- The run's pool when it was judged (before routing, for a router).
    pool     TEXT NOT NULL,
    -- The decision as the plugin made it (JSON): a route, an admission
    -- decision, a patch, a reject, or an error.
    outcome  TEXT NOT NULL,
    context  TEXT NOT NULL,
    stats    TEXT NOT NULL,
    binding  TEXT NOT NULL,
    job      TEXT
);

CREATE INDEX decision_inputs_plugin ON decision_inputs (plugin, id);
CREATE INDEX decision_inputs_at ON decision_inputs (at);

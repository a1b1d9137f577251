-- What each plugin decision saw (issue #16), so a new version can be
-- replayed against it: one row per decision, its parts (the run's context,
-- the stats it read, its binding's config and limits, the job a mutator was
-- given) stored once each by digest, zstd-compressed, in decision_blobs.
-- Kept for a configured count and age (`[server] decision_inputs_keep`,
-- `decision_inputs_keep_days`); a swept part reads back as "not kept".
-- Same meaning as migrations/sqlite/0008_decision_inputs.sql.
CREATE TABLE decision_blobs (
    digest text PRIMARY KEY,
    data   bytea NOT NULL
);

CREATE TABLE decision_inputs (
    id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id   text NOT NULL,
    at       bigint NOT NULL,
    plugin   text NOT NULL,
    world    text NOT NULL,
    -- 'enforce' or 'shadow': the binding's mode.
    mode     text NOT NULL,
    version  bigint NOT NULL,
    digest   text NOT NULL,
    -- The run's pool when it was judged (before routing, for a router).
    pool     text NOT NULL,
    -- The decision as the plugin made it (JSON): a route, an admission
    -- decision, a patch, a reject, or an error.
    outcome  text NOT NULL,
    context  text NOT NULL,
    stats    text NOT NULL,
    binding  text NOT NULL,
    job      text
);

CREATE INDEX decision_inputs_plugin ON decision_inputs (plugin, id);
CREATE INDEX decision_inputs_at ON decision_inputs (at);

-- Deployment schedules and late policies (issue #17).
--
-- A queue's late threshold (NULL: the server's late_after_seconds) and what
-- happens to a run of it that turns Late ('keep' or 'cancel').
ALTER TABLE queues ADD COLUMN late_after_seconds INTEGER;
ALTER TABLE queues ADD COLUMN late_action TEXT NOT NULL DEFAULT 'keep';

-- A deployment's schedules. `created_through`: every time at or before it
-- has been dealt with (its run created, or skipped by the catch-up policy);
-- the runs carry the idempotency key schedule/<id>/<generation>/<time>, so a
-- time gets one run whichever replica or restart creates it.
CREATE TABLE schedules (
    deployment       TEXT NOT NULL REFERENCES deployments(name) ON DELETE CASCADE,
    name             TEXT NOT NULL,
    id               TEXT NOT NULL UNIQUE,
    generation       INTEGER NOT NULL DEFAULT 0,
    kind             TEXT NOT NULL,
    cron             TEXT,
    timezone         TEXT,
    interval_seconds INTEGER,
    anchor           INTEGER,
    at               INTEGER,
    parameters       TEXT NOT NULL,
    job_variables    TEXT NOT NULL,
    catchup          TEXT NOT NULL,
    paused           INTEGER NOT NULL DEFAULT 0,
    created_through  INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    PRIMARY KEY (deployment, name)
);

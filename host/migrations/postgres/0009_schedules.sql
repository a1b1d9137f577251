-- Deployment schedules and late policies (issue #17).
--
-- A queue's late threshold (NULL: the server's late_after_seconds) and what
-- happens to a run of it that turns Late ('keep' or 'cancel').
ALTER TABLE queues ADD COLUMN late_after_seconds bigint;
ALTER TABLE queues ADD COLUMN late_action text NOT NULL DEFAULT 'keep';

-- A deployment's schedules. `created_through`: every time at or before it
-- has been dealt with (its run created, or skipped by the catch-up policy);
-- the runs carry the idempotency key schedule/<id>/<generation>/<time>, so a
-- time gets one run whichever replica or restart creates it.
CREATE TABLE schedules (
    deployment       text NOT NULL REFERENCES deployments(name) ON DELETE CASCADE,
    name             text NOT NULL,
    id               text NOT NULL UNIQUE,
    generation       bigint NOT NULL DEFAULT 0,
    kind             text NOT NULL,
    cron             text,
    timezone         text,
    interval_seconds bigint,
    anchor           bigint,
    at               bigint,
    parameters       text NOT NULL,
    job_variables    text NOT NULL,
    catchup          text NOT NULL,
    paused           boolean NOT NULL DEFAULT false,
    created_through  bigint NOT NULL,
    created_at       bigint NOT NULL,
    updated_at       bigint NOT NULL,
    PRIMARY KEY (deployment, name)
);

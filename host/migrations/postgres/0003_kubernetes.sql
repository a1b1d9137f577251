-- Kubernetes backend: which cluster connection a pool uses, and the
-- submission intent recorded before a backend call (so a restart resolves a
-- crash between the two by looking, not guessing). Same meaning as
-- migrations/sqlite/0003_kubernetes.sql.

-- NULL: the server's default connection; otherwise a name from the
-- server configuration's [kubernetes.clusters.<name>].
ALTER TABLE pools ADD COLUMN cluster text;

CREATE TABLE submissions (
    run_id      text   NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    attempt     bigint NOT NULL,
    -- Backend-specific JSON: for Kubernetes the cluster, namespace, Job name
    -- and the manifest itself.
    target      text   NOT NULL,
    recorded_at bigint NOT NULL,
    PRIMARY KEY (run_id, attempt)
);

-- Authentication (host/src/auth/). A token is stored only as the SHA-256 of
-- its text; `prefix` (the first characters after `weir_`) lets a person
-- recognise it in `weir token list`.
CREATE TABLE tokens (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL DEFAULT '',
    role        TEXT NOT NULL,
    team        TEXT,
    pools       TEXT NOT NULL DEFAULT '[]',
    prefix      TEXT NOT NULL,
    hash        TEXT NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);

-- Secrets the server derives things from (the run-token HMAC key). Inserted
-- if absent, so replicas sharing one database agree on them.
CREATE TABLE server_secrets (
    name   TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);

-- A deployment may belong to a team; submitter tokens of that team may run it.
ALTER TABLE deployments ADD COLUMN team TEXT;

-- Authentication (host/src/auth/). A token is stored only as the SHA-256 of
-- its text; `prefix` (the first characters after `weir_`) lets a person
-- recognise it in `weir token list`.
CREATE TABLE tokens (
    id          text PRIMARY KEY,
    name        text NOT NULL DEFAULT '',
    role        text NOT NULL,
    team        text,
    pools       text NOT NULL DEFAULT '[]',
    prefix      text NOT NULL,
    hash        text NOT NULL UNIQUE,
    created_at  bigint NOT NULL,
    revoked_at  bigint
);

-- Secrets the server derives things from (the run-token HMAC key). Inserted
-- if absent, so replicas sharing one database agree on them.
CREATE TABLE server_secrets (
    name   text PRIMARY KEY,
    value  text NOT NULL
);

-- A deployment may belong to a team; submitter tokens of that team may run it.
ALTER TABLE deployments ADD COLUMN team text;

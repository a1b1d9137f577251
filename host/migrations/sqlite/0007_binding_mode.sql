-- A binding's mode (issue #16): 'enforce' (its decision counts) or 'shadow'
-- (it judges live runs, its decision is recorded, the run is not changed).
-- A plugin may be bound to a pool once per mode, so a new version can run
-- in shadow beside the one enforcing. SQLite cannot drop a UNIQUE
-- constraint: the table is rebuilt with the same rows.
CREATE TABLE plugin_bindings_v7 (
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
    mode           TEXT NOT NULL DEFAULT 'enforce',
    UNIQUE (pool, plugin, mode)
);
INSERT INTO plugin_bindings_v7 (id, pool, plugin, pinned_version, config, position, on_error,
                                deadline_ms, memory_mb, created_at, mode)
    SELECT id, pool, plugin, pinned_version, config, position, on_error,
           deadline_ms, memory_mb, created_at, 'enforce'
    FROM plugin_bindings;
DROP TABLE plugin_bindings;
ALTER TABLE plugin_bindings_v7 RENAME TO plugin_bindings;

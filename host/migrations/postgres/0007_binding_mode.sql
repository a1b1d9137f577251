-- A binding's mode (issue #16): 'enforce' (its decision counts) or 'shadow'
-- (it judges live runs, its decision is recorded, the run is not changed).
-- A plugin may be bound to a pool once per mode, so a new version can run
-- in shadow beside the one enforcing.
ALTER TABLE plugin_bindings ADD COLUMN mode text NOT NULL DEFAULT 'enforce';
ALTER TABLE plugin_bindings DROP CONSTRAINT plugin_bindings_pool_plugin_key;
ALTER TABLE plugin_bindings ADD CONSTRAINT plugin_bindings_pool_plugin_mode_key
    UNIQUE (pool, plugin, mode);

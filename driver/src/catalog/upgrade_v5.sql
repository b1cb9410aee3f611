-- aepg catalog, version 4 → 5. Run by `install` inside one transaction,
-- under an advisory lock, when the catalog is at version 4.
--
-- Version 5 adds the work state of column key rotations (`aepg rotate cek
-- start|status|complete`, docs/OPERATIONS.md): one row per setting whose
-- column key is being replaced, naming the key it is replaced by, and a
-- third direction of column migration, 'rekey', for each of the setting's
-- columns (cells under the setting's key → cells under the new key, in a
-- shadow column until the swap). Clients never read these rows: they only
-- ever see the setting's signed record, which names the new key from the
-- swap on. An administrator trusts a rotation only through its record,
-- signed by the master keys of the setting's key when it began (so the
-- server cannot steer a rotation onto a key of its choosing).
CREATE TABLE aepg.key_rotations (
    setting_id integer PRIMARY KEY CHECK (setting_id > 0),
    -- The key the setting names when the rotation began, and its
    -- successor, as the record says (for reports). No foreign keys: a row
    -- the server damaged is reported by the administrator.
    from_key_id integer NOT NULL CHECK (from_key_id > 0),
    to_key_id integer NOT NULL CHECK (to_key_id > 0),
    -- The signed record (docs/FORMAT.md, kind 0x05) and its signatures,
    -- a second one while the key's master key is rotated too.
    record bytea NOT NULL,
    signature bytea NOT NULL,
    cosignature bytea,
    started_at timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE aepg.column_migrations
    DROP CONSTRAINT column_migrations_direction_check,
    ADD CONSTRAINT column_migrations_direction_check
        CHECK (direction IN ('encrypt', 'decrypt', 'rekey'));

UPDATE aepg.catalog_version SET version = 5;

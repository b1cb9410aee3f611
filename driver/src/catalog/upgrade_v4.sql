-- aepg catalog, version 3 → 4. Run by `install` inside one transaction,
-- under an advisory lock, when the catalog is at version 3.
--
-- Version 4 lets a setting or an assignment carry a second signature, by
-- a second master key of its column key, while that master key is being
-- rotated (`aepg rotate cmk start|complete`, docs/OPERATIONS.md): clients
-- that hold either master key can then verify it. A client accepts a
-- record when either signature verifies under a master key that its
-- column key is wrapped under; both cover the same canonical bytes, so a
-- second signature adds no way to change what a record says.
ALTER TABLE aepg.encryption_settings ADD COLUMN cosignature bytea;
ALTER TABLE aepg.column_assignments ADD COLUMN cosignature bytea;

UPDATE aepg.catalog_version SET version = 4;

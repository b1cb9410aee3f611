-- aepg catalog, version 1. Run by `install` inside one transaction, under
-- an advisory lock, only when no catalog is installed.
--
-- Only signed bytes are trusted: the `record`/`signature` columns hold the
-- canonical encodings of docs/FORMAT.md §3, and clients verify each
-- signature with the column master key before use. The other columns are
-- indexes for humans and queries; clients check that they agree with the
-- signed record.

CREATE SCHEMA aepg;

COMMENT ON SCHEMA aepg IS 'aepg client-side column encryption: keys (wrapped), settings and column assignments';

-- instance_id: 16 random bytes drawn by the installing client. Every
-- signature covers it, so records cannot be replayed from another database.
CREATE TABLE aepg.catalog_version (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    version integer NOT NULL,
    instance_id bytea NOT NULL CHECK (octet_length(instance_id) = 16),
    installed_at timestamptz NOT NULL DEFAULT now()
);

-- Encrypted columns hold cells of format v1: version byte 0x01, at least
-- 38 bytes. A plaintext bytea written by mistake is refused by the server.
CREATE DOMAIN aepg.ciphertext AS bytea
    CHECK (octet_length(VALUE) >= 38 AND get_byte(VALUE, 0) = 1);

CREATE TABLE aepg.master_keys (
    name text PRIMARY KEY,
    provider text NOT NULL,
    key_path text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE aepg.column_keys (
    id integer PRIMARY KEY CHECK (id > 0),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE SEQUENCE aepg.column_key_ids AS integer MINVALUE 1 OWNED BY aepg.column_keys.id;

-- One row per master key a column key is wrapped under (two while the
-- master key is being rotated).
CREATE TABLE aepg.column_key_values (
    key_id integer NOT NULL REFERENCES aepg.column_keys (id),
    master_key_name text NOT NULL REFERENCES aepg.master_keys (name),
    record bytea NOT NULL,
    signature bytea NOT NULL,
    PRIMARY KEY (key_id, master_key_name)
);

CREATE TABLE aepg.encryption_settings (
    id integer PRIMARY KEY CHECK (id > 0),
    name text NOT NULL UNIQUE,
    key_id integer NOT NULL REFERENCES aepg.column_keys (id),
    record bytea NOT NULL,
    signature bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE SEQUENCE aepg.encryption_setting_ids AS integer MINVALUE 1 OWNED BY aepg.encryption_settings.id;

CREATE TABLE aepg.column_assignments (
    schema_name text NOT NULL,
    table_name text NOT NULL,
    column_name text NOT NULL,
    setting_id integer NOT NULL REFERENCES aepg.encryption_settings (id),
    record bytea NOT NULL,
    signature bytea NOT NULL,
    assigned_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (schema_name, table_name, column_name)
);

-- The version row is inserted by the installing client, with instance_id.
-- Version 2 (upgrade_v2.sql) follows at once on a fresh install.

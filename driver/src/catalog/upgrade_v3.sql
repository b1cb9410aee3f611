-- aepg catalog, version 2 → 3. Run by `install` inside one transaction,
-- under an advisory lock, when the catalog is at version 2.
--
-- Version 3 adds the work state of column migrations (`aepg column
-- encrypt` / `decrypt`, docs/OPERATIONS.md): one row per column being
-- encrypted or decrypted in place, so that a killed run resumes where it
-- stopped. The rows are not signed. They never make a client trust
-- anything: a column in its final swap is one clients refuse to use, so
-- a forged row can only deny service, and a deleted one makes a client
-- fall back on the signed catalog, as it would without migrations.
CREATE TABLE aepg.column_migrations (
    schema_name text NOT NULL,
    table_name text NOT NULL,
    column_name text NOT NULL,
    -- 'encrypt': plaintext column → cells of setting_id;
    -- 'decrypt': cells of setting_id → plaintext column.
    direction text NOT NULL CHECK (direction IN ('encrypt', 'decrypt')),
    setting_id integer NOT NULL CHECK (setting_id > 0),
    -- The column that receives the converted values until the swap.
    shadow_name text NOT NULL,
    -- 'backfill': converting rows batch by batch;
    -- 'swapping': clients stop using the column, the swap follows.
    phase text NOT NULL CHECK (phase IN ('backfill', 'swapping')),
    -- The backfill's walk through the heap: the next block, and the block
    -- it stops at (the table's size when the walk began).
    next_block bigint NOT NULL DEFAULT 0 CHECK (next_block >= 0),
    end_block bigint NOT NULL DEFAULT 0 CHECK (end_block >= 0),
    rows_done bigint NOT NULL DEFAULT 0 CHECK (rows_done >= 0),
    started_at timestamptz NOT NULL DEFAULT now(),
    phase_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (schema_name, table_name, column_name)
);

UPDATE aepg.catalog_version SET version = 3;

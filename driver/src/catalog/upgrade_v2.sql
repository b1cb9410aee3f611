-- aepg catalog, version 1 → 2. Run by `install` inside one transaction,
-- under an advisory lock, when the catalog is at version 1 (also right
-- after a fresh install of version 1).
--
-- Version 2 adds what lets a client fail closed against a server that
-- rewrites or rolls back the catalog (docs/DESIGN.md, "Catalog"):
-- a catalog generation, raised by every administrative change and
-- announced on the channel aepg_catalog; and signed manifests, each the
-- whole set of encrypted columns at one generation.

ALTER TABLE aepg.catalog_version
    ADD COLUMN generation bigint NOT NULL DEFAULT 1 CHECK (generation > 0);

-- One manifest per master key that signs one: record and signature are the
-- canonical encoding of docs/FORMAT.md §3 (kind 0x04). master_key_name and
-- generation are indexes; clients check them against the signed record.
CREATE TABLE aepg.manifests (
    master_key_name text PRIMARY KEY REFERENCES aepg.master_keys (name),
    generation bigint NOT NULL,
    record bytea NOT NULL,
    signature bytea NOT NULL,
    signed_at timestamptz NOT NULL DEFAULT now()
);

-- Equality on ciphertext, so the server types a parameter compared with an
-- encrypted column as aepg.ciphertext (not as the domain's base type,
-- bytea) and the client's cross-check sees it: a second line of defence
-- behind the client's own analysis. Plain SQL functions, inlined by the
-- planner into bytea comparisons, so indexes and hash joins still apply.
CREATE FUNCTION aepg.ciphertext_eq(aepg.ciphertext, aepg.ciphertext) RETURNS boolean
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS 'SELECT $1::bytea = $2::bytea';
CREATE FUNCTION aepg.ciphertext_ne(aepg.ciphertext, aepg.ciphertext) RETURNS boolean
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS 'SELECT $1::bytea <> $2::bytea';

-- Operators are found along the search path, so they go where sessions
-- look: the public schema, when it exists and this role may create there.
DO $install$
BEGIN
    IF to_regnamespace('public') IS NOT NULL
       AND has_schema_privilege('public', 'CREATE') THEN
        CREATE OPERATOR public.= (
            LEFTARG = aepg.ciphertext, RIGHTARG = aepg.ciphertext,
            FUNCTION = aepg.ciphertext_eq,
            COMMUTATOR = OPERATOR(public.=), NEGATOR = OPERATOR(public.<>),
            RESTRICT = eqsel, JOIN = eqjoinsel);
        CREATE OPERATOR public.<> (
            LEFTARG = aepg.ciphertext, RIGHTARG = aepg.ciphertext,
            FUNCTION = aepg.ciphertext_ne,
            COMMUTATOR = OPERATOR(public.<>), NEGATOR = OPERATOR(public.=),
            RESTRICT = neqsel, JOIN = neqjoinsel);
    ELSE
        RAISE NOTICE 'aepg: schema public is missing or not writable; ciphertext equality operators not installed';
    END IF;
END
$install$;

UPDATE aepg.catalog_version SET version = 2;

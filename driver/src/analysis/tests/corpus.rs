//! The corpus: statements with their expected analysis or refusal.

use crate::analysis::test_schema::{column_name, TestSchema};
use crate::analysis::{
    analyze, ParameterTarget, ParameterUse, Refusal, StatementAnalysis, DETERMINISTIC_ALLOWED,
    RANDOMIZED_ALLOWED, UNUSABLE_CIPHERTEXT_ALLOWED,
};
use crate::cell::EncryptionMode;

/// Where one `$n` is expected to go.
#[derive(Clone, Copy, Debug)]
pub(super) enum Param {
    /// Plaintext.
    Plain,
    /// Stored into the column.
    Store(&'static str),
    /// Compared with the column.
    Compare(&'static str),
    /// The array of `= ANY($n)` against the column.
    Any(&'static str),
    /// The array of `unnest($n)` whose elements are stored into the column.
    Each(&'static str),
    /// The same, its elements also compared with the column.
    EachBoth(&'static str),
}

/// The expected refusal and its key fields.
#[derive(Clone, Copy, Debug)]
pub(super) enum Refused {
    /// `NotAllowed` on a column of a mode, with `attempted` containing the text.
    NotAllowed(&'static str, EncryptionMode, &'static str),
    /// `UnusableColumn` on a column.
    Unassigned(&'static str),
    /// `SettingMismatch` between two columns.
    Mismatch(&'static str, &'static str),
    /// `ParameterConflict` on a parameter.
    Conflict(usize),
    /// `UnsupportedShape` naming a table.
    Unsupported(&'static str),
    /// `Unresolved` naming a table.
    Unresolved(&'static str),
    /// `Unparsable`.
    Unparsable,
}

/// What analyzing a statement must give.
#[derive(Clone, Copy, Debug)]
pub(super) enum Expected {
    /// Accepted; the statement touches a table with encrypted columns.
    Touching(&'static [Param]),
    /// Accepted; the statement touches no table with encrypted columns.
    NotTouching(&'static [Param]),
    /// Refused.
    Refuses(Refused),
}

use EncryptionMode::{Deterministic as Det, Randomized as Rnd};
use Expected::{NotTouching, Refuses, Touching};
use Param::{Any, Compare, Each, EachBoth, Plain, Store};
use Refused::{Conflict, Mismatch, NotAllowed, Unassigned, Unparsable, Unresolved, Unsupported};

/// Every supported shape and every refusal, with the expected answer.
pub(super) const CORPUS: &[(&str, Expected)] = &[
    // INSERT
    (
        "INSERT INTO patients (id, name, ssn, diagnosis, email) VALUES ($1, $2, $3, $4, $5)",
        Touching(&[Plain, Plain, Store("patients.ssn"), Store("patients.diagnosis"), Store("patients.email")]),
    ),
    // Without a column list, values follow the server's column order,
    // which no signature covers.
    ("INSERT INTO patients VALUES ($1, $2, $3, $4, $5)", Refuses(Unsupported("public.patients"))),
    ("INSERT INTO patients SELECT * FROM patients", Refuses(Unsupported("public.patients"))),
    (
        "INSERT INTO patients (id, name, ssn, diagnosis, email) VALUES ($1, $2, $3, $4, $5)",
        Touching(&[Plain, Plain, Store("patients.ssn"), Store("patients.diagnosis"), Store("patients.email")]),
    ),
    ("INSERT INTO plain VALUES ($1, $2)", NotTouching(&[Plain, Plain])),
    (
        "INSERT INTO patients (ssn, name) VALUES ($1, $2), ($3, $4), (NULL, DEFAULT)",
        Touching(&[Store("patients.ssn"), Plain, Store("patients.ssn"), Plain]),
    ),
    ("INSERT INTO patients DEFAULT VALUES", Touching(&[])),
    (
        "INSERT INTO patients (ssn) VALUES ('123-45-6789')",
        Refuses(NotAllowed("patients.ssn", Det, "literal")),
    ),
    ("INSERT INTO patients (diagnosis) SELECT note FROM visits WHERE id = $1", Touching(&[Plain])),
    (
        "INSERT INTO patients (ssn, email) SELECT ssn, ssn FROM visits",
        Refuses(Mismatch("patients.email", "visits.ssn")),
    ),
    ("INSERT INTO patients (id, ssn) SELECT $1, $2", Touching(&[Plain, Store("patients.ssn")])),
    (
        "INSERT INTO patients (id, ssn) VALUES ($1, $2) ON CONFLICT (id) \
         DO UPDATE SET ssn = EXCLUDED.ssn, email = $3 RETURNING id, ssn",
        Touching(&[Plain, Store("patients.ssn"), Store("patients.email")]),
    ),
    (
        "INSERT INTO patients AS p (id, ssn) VALUES ($1, $2) ON CONFLICT (ssn) \
         DO UPDATE SET name = $3 WHERE p.ssn = $4",
        Touching(&[Plain, Store("patients.ssn"), Plain, Compare("patients.ssn")]),
    ),
    (
        "INSERT INTO patients (id, ssn) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        Touching(&[Plain, Store("patients.ssn")]),
    ),
    (
        "INSERT INTO patients (ssn) VALUES ($1) ON CONFLICT (id) DO UPDATE SET ssn = 'x'",
        Refuses(NotAllowed("patients.ssn", Det, "literal")),
    ),
    (
        "INSERT INTO patients (ssn) VALUES ($1) ON CONFLICT (id) DO UPDATE SET email = EXCLUDED.ssn",
        Refuses(Mismatch("patients.email", "patients.ssn")),
    ),
    (
        "INSERT INTO patients (name) VALUES ($1) RETURNING lower(ssn)",
        Refuses(NotAllowed("patients.ssn", Det, "function lower()")),
    ),
    (
        r#"INSERT INTO billing."Accounts" ("Id", owner_ssn, card) VALUES ($1, $2, $3)"#,
        Touching(&[Plain, Store("billing.Accounts.owner_ssn"), Store("billing.Accounts.card")]),
    ),
    // Unquoted names fold to lower case: billing.accounts is not billing."Accounts".
    ("INSERT INTO billing.accounts (owner_ssn) VALUES ($1)", NotTouching(&[Plain])),
    (
        "INSERT INTO patient_view (name, ssn) VALUES ($1, $2)",
        Refuses(Unassigned("patient_view.ssn")),
    ),
    ("INSERT INTO patient_view (name, ssn) VALUES ($1, NULL)", Touching(&[Plain])),
    (
        "INSERT INTO plain (a) SELECT ssn FROM patients",
        Refuses(NotAllowed("patients.ssn", Det, "plaintext column public.plain.a")),
    ),
    (
        "INSERT INTO patients (ssn) VALUES ($1::text)",
        Refuses(NotAllowed("patients.ssn", Det, "expression")),
    ),
    ("INSERT INTO patients (ssn, email) VALUES ($1, $1)", Refuses(Conflict(1))),
    (
        "INSERT INTO patients (ssn) SELECT owner_ssn FROM billing.\"Accounts\" WHERE card IS NOT NULL",
        Touching(&[]),
    ),
    (
        "INSERT INTO patients (diagnosis) SELECT card FROM billing.\"Accounts\"",
        Refuses(Mismatch("patients.diagnosis", "billing.Accounts.card")),
    ),
    ("INSERT INTO visits (id, note) VALUES ($1, $2)", Touching(&[Plain, Store("visits.note")])),
    // UPDATE
    (
        "UPDATE patients SET ssn = $1, name = $2 WHERE id = $3",
        Touching(&[Store("patients.ssn"), Plain, Plain]),
    ),
    (
        "UPDATE patients p SET email = $1 FROM visits v WHERE v.patient_id = p.id AND v.ssn = $2",
        Touching(&[Store("patients.email"), Compare("visits.ssn")]),
    ),
    (
        "UPDATE patients SET ssn = 'x' WHERE id = 1",
        Refuses(NotAllowed("patients.ssn", Det, "literal")),
    ),
    ("UPDATE patients SET email = ssn", Refuses(Mismatch("patients.email", "patients.ssn"))),
    (
        "UPDATE visits SET ssn = p.ssn FROM patients p WHERE p.id = visits.patient_id",
        Touching(&[]),
    ),
    (
        "UPDATE patients SET (ssn, name) = ($1, $2) WHERE email = $3",
        Touching(&[Store("patients.ssn"), Plain, Compare("patients.email")]),
    ),
    (
        "UPDATE patients SET diagnosis = $1 WHERE diagnosis = $2",
        Refuses(NotAllowed("patients.diagnosis", Rnd, "comparison by =")),
    ),
    ("UPDATE patients SET name = $1 WHERE ssn = $1", Refuses(Conflict(1))),
    (
        "UPDATE patients SET ssn = $1 WHERE ssn = $2 RETURNING ssn, diagnosis",
        Touching(&[Store("patients.ssn"), Compare("patients.ssn")]),
    ),
    (
        "UPDATE patients SET name = lower(ssn)",
        Refuses(NotAllowed("patients.ssn", Det, "function lower()")),
    ),
    // DELETE
    ("DELETE FROM patients WHERE ssn = $1", Touching(&[Compare("patients.ssn")])),
    (
        "DELETE FROM visits v USING patients p WHERE v.patient_id = p.id AND p.email = $1 RETURNING v.note",
        Touching(&[Compare("patients.email")]),
    ),
    (
        "DELETE FROM patients WHERE ssn LIKE $1",
        Refuses(NotAllowed("patients.ssn", Det, "LIKE")),
    ),
    // SELECT: comparisons with parameters
    (
        "SELECT id, name, ssn, diagnosis FROM patients WHERE ssn = $1",
        Touching(&[Compare("patients.ssn")]),
    ),
    ("SELECT name FROM patients WHERE $1 = ssn", Touching(&[Compare("patients.ssn")])),
    ("SELECT name FROM patients WHERE ssn <> $1", Touching(&[Compare("patients.ssn")])),
    (
        "SELECT * FROM patients WHERE ssn IN ($1, $2) AND name = $3",
        Touching(&[Compare("patients.ssn"), Compare("patients.ssn"), Plain]),
    ),
    ("SELECT id FROM patients WHERE ssn = ANY($1)", Touching(&[Any("patients.ssn")])),
    ("SELECT id FROM patients WHERE ssn <> ALL($1)", Touching(&[Any("patients.ssn")])),
    (
        "SELECT * FROM patients WHERE ssn = ANY(ARRAY[$1, $2])",
        Touching(&[Compare("patients.ssn"), Compare("patients.ssn")]),
    ),
    (
        "SELECT id FROM patients WHERE ssn IS NOT NULL AND diagnosis IS NULL",
        Touching(&[]),
    ),
    (
        "SELECT id FROM patients WHERE ($1 IS NULL OR ssn = $1) AND ($2 IS NULL OR name = $2)",
        Touching(&[Compare("patients.ssn"), Plain]),
    ),
    (
        "SELECT id FROM patients WHERE ssn IS NOT DISTINCT FROM $1",
        Touching(&[Compare("patients.ssn")]),
    ),
    (
        "SELECT * FROM patients WHERE (ssn, name) = ($1, $2)",
        Touching(&[Compare("patients.ssn"), Plain]),
    ),
    (
        "SELECT name FROM patients WHERE CASE ssn WHEN $1 THEN true ELSE false END",
        Touching(&[Compare("patients.ssn")]),
    ),
    (
        "SELECT name FROM patients ORDER BY id LIMIT $1 OFFSET $2",
        Touching(&[Plain, Plain]),
    ),
    (
        "SELECT * FROM PATIENTS WHERE SSN = $1",
        Touching(&[Compare("patients.ssn")]),
    ),
    (
        "SELECT public.patients.ssn FROM public.patients WHERE patients.email = $1",
        Touching(&[Compare("patients.email")]),
    ),
    (
        r#"SELECT "Id", owner_ssn FROM billing."Accounts" a WHERE a.owner_ssn = $1"#,
        Touching(&[Compare("billing.Accounts.owner_ssn")]),
    ),
    // SELECT: joins
    (
        "SELECT p.name, v.note FROM patients p JOIN visits v ON v.ssn = p.ssn WHERE v.id = $1",
        Touching(&[Plain]),
    ),
    (
        "SELECT * FROM patients JOIN visits USING (ssn) WHERE ssn = $1",
        Touching(&[Compare("patients.ssn")]),
    ),
    (
        r#"SELECT * FROM billing."Accounts" a JOIN patients p ON p.ssn = a.owner_ssn"#,
        Touching(&[]),
    ),
    (
        "SELECT * FROM patients p JOIN visits v ON p.email = v.ssn",
        Refuses(Mismatch("patients.email", "visits.ssn")),
    ),
    (
        "SELECT * FROM patients p JOIN visits v ON p.diagnosis = v.note",
        Refuses(NotAllowed("patients.diagnosis", Rnd, "comparison by =")),
    ),
    (
        "SELECT * FROM patients p LEFT JOIN plain ON p.ssn = plain.a",
        Refuses(NotAllowed("patients.ssn", Det, "plaintext column public.plain.a")),
    ),
    (
        "SELECT p.name FROM patients p, visits v WHERE p.ssn = $1 AND v.ssn = $1",
        Touching(&[Compare("patients.ssn")]),
    ),
    // SELECT: subqueries and CTEs
    (
        "SELECT name FROM patients WHERE ssn = (SELECT ssn FROM visits WHERE id = $1)",
        Touching(&[Plain]),
    ),
    (
        "SELECT name FROM patients WHERE email = (SELECT ssn FROM visits WHERE id = $1)",
        Refuses(Mismatch("patients.email", "visits.ssn")),
    ),
    (
        "SELECT name FROM patients WHERE ssn = (SELECT max(a) FROM plain)",
        Refuses(NotAllowed("patients.ssn", Det, "expression")),
    ),
    (
        "SELECT name FROM patients WHERE ssn IN (SELECT ssn FROM visits WHERE note IS NULL AND patient_id = $1)",
        Touching(&[Plain]),
    ),
    ("SELECT * FROM patients WHERE ssn = ANY(SELECT ssn FROM visits)", Touching(&[])),
    (
        "SELECT name FROM patients p WHERE EXISTS (SELECT 1 FROM visits v WHERE v.ssn = p.ssn AND v.id = $1)",
        Touching(&[Plain]),
    ),
    (
        "SELECT name FROM patients p WHERE EXISTS (SELECT 1 FROM visits v WHERE v.patient_id = p.id AND ssn = $1)",
        Touching(&[Compare("visits.ssn")]),
    ),
    // Matching by position over a `*` follows the server's column order,
    // which no signature covers: refused where ciphertext is involved.
    (
        "SELECT pid FROM patients AS p(pid, pname, secret) WHERE secret = $1",
        Refuses(Unsupported("public.patients")),
    ),
    (
        "WITH p(pid, secret) AS (SELECT * FROM patients) SELECT pid FROM p WHERE secret = $1",
        Refuses(Unsupported("public.patients")),
    ),
    (
        "SELECT x FROM (SELECT * FROM patients) AS s(x, y, z) WHERE z = $1",
        Refuses(Unsupported("public.patients")),
    ),
    (
        "INSERT INTO pairs (id, ssn) SELECT * FROM pairs",
        Refuses(Unsupported("public.pairs")),
    ),
    (
        "INSERT INTO pairs (id, ssn) SELECT * FROM (SELECT * FROM pairs) AS s",
        Refuses(Unsupported("public.pairs")),
    ),
    ("SELECT 1 FROM pairs WHERE ($1, $2) IN (SELECT * FROM pairs)", Refuses(Unsupported("public.pairs"))),
    ("SELECT 1 FROM pairs WHERE ($1, $2) = (SELECT p.* FROM pairs p)", Refuses(Unsupported("public.pairs"))),
    (
        "SELECT 1 FROM pairs WHERE ($1, $2) IN (SELECT id, ssn FROM pairs)",
        Touching(&[Plain, Compare("pairs.ssn")]),
    ),
    // A parameter never meets ciphertext in a set operation, so a `*` there
    // cannot misplace one.
    (
        "SELECT id FROM (SELECT * FROM patients UNION ALL SELECT * FROM patients) u WHERE u.ssn = $1",
        Touching(&[Compare("patients.ssn")]),
    ),
    (
        "WITH p(pid, secret) AS (SELECT id, ssn FROM patients) SELECT pid FROM p WHERE secret = $1",
        Touching(&[Compare("patients.ssn")]),
    ),
    (
        "SELECT * FROM (SELECT * FROM patients) s WHERE s.ssn = $1",
        Touching(&[Compare("patients.ssn")]),
    ),
    (
        "SELECT s.y FROM (SELECT * FROM (SELECT ssn AS secret, name AS who FROM patients) AS l \
         NATURAL JOIN plain) AS s(x, y) WHERE s.x = $1",
        Refuses(Unsupported("public.patients")),
    ),
    (
        "SELECT s.y FROM (SELECT * FROM (SELECT ssn AS secret, name AS who FROM patients) AS l \
         JOIN plain ON true) AS s(x, y) WHERE s.x = $1",
        Touching(&[Compare("patients.ssn")]),
    ),
    ("SELECT x FROM plain AS p(x, y) WHERE y = $1", NotTouching(&[Plain])),
    ("SELECT * FROM plain UNION ALL SELECT $1, $2", NotTouching(&[Plain, Plain])),
    // An unqualified name an inner query binds, while an outer query has an
    // encrypted column of that name under another setting: a column the
    // server adds to the inner table would capture the value.
    (
        "SELECT 1 FROM patients p WHERE EXISTS (SELECT 1 FROM (SELECT a AS ssn FROM plain) q WHERE ssn = $1)",
        Refuses(Unresolved("public.patients")),
    ),
    (
        "SELECT 1 FROM patients p WHERE EXISTS (SELECT 1 FROM (SELECT note AS ssn FROM visits) q WHERE ssn = $1)",
        Refuses(Unresolved("public.patients")),
    ),
    (
        "SELECT 1 FROM patients p WHERE EXISTS (SELECT 1 FROM (SELECT a AS ssn FROM plain) q WHERE q.ssn = $1)",
        Touching(&[Plain]),
    ),
    (
        "SELECT 1 FROM patients p WHERE EXISTS (SELECT 1 FROM plain WHERE plain.a = p.name AND ssn = $1)",
        Touching(&[Compare("patients.ssn")]),
    ),
    (
        "SELECT s.ssn FROM (SELECT ssn, name FROM patients) AS s WHERE s.ssn = $1",
        Touching(&[Compare("patients.ssn")]),
    ),
    (
        "SELECT t.x FROM (SELECT email FROM patients) AS t(x) WHERE t.x = $1",
        Touching(&[Compare("patients.email")]),
    ),
    (
        "WITH x AS (SELECT ssn FROM patients WHERE email = $1) SELECT * FROM x WHERE x.ssn = $2",
        Touching(&[Compare("patients.email"), Compare("patients.ssn")]),
    ),
    (
        "WITH ins AS (INSERT INTO patients (id, ssn) VALUES ($1, $2) RETURNING id, ssn) \
         INSERT INTO visits (patient_id, ssn) SELECT id, ssn FROM ins",
        Touching(&[Plain, Store("patients.ssn")]),
    ),
    (
        "WITH d AS (DELETE FROM visits WHERE ssn = $1 RETURNING note) SELECT count(*) FROM d",
        Touching(&[Compare("visits.ssn")]),
    ),
    (
        "SELECT ssn FROM patients p WHERE p.ssn IN (SELECT owner_ssn FROM billing.\"Accounts\" WHERE \"Id\" = $1)",
        Touching(&[Plain]),
    ),
    (
        "SELECT * FROM patients WHERE name = $1 AND id IN (SELECT patient_id FROM visits WHERE note IS NOT NULL)",
        Touching(&[Plain]),
    ),
    // SELECT: grouping, counting, set operations
    (
        "SELECT count(ssn), count(DISTINCT email), count(diagnosis), count(*) FROM patients",
        Touching(&[]),
    ),
    (
        "SELECT ssn, count(*) FROM patients GROUP BY ssn HAVING count(*) > $1",
        Touching(&[Plain]),
    ),
    ("SELECT ssn, count(*) FROM patients GROUP BY 1", Touching(&[])),
    ("SELECT DISTINCT ssn FROM patients", Touching(&[])),
    ("SELECT DISTINCT ON (ssn) ssn, name FROM patients", Touching(&[])),
    (
        "SELECT row_number() OVER (PARTITION BY ssn ORDER BY id) FROM patients",
        Touching(&[]),
    ),
    ("SELECT ssn FROM patients UNION SELECT ssn FROM visits", Touching(&[])),
    ("SELECT diagnosis FROM patients UNION ALL SELECT note FROM visits", Touching(&[])),
    // View columns of unknown setting
    ("SELECT name, ssn FROM patient_view WHERE ssn IS NULL", Touching(&[])),
    ("SELECT count(ssn) FROM patient_view", Touching(&[])),
    (
        "SELECT name FROM patient_view WHERE ssn = $1",
        Refuses(Unassigned("patient_view.ssn")),
    ),
    (
        "SELECT name FROM patient_view v JOIN patients p ON p.ssn = v.ssn",
        Refuses(Unassigned("patient_view.ssn")),
    ),
    // Operations refused on encrypted columns
    (
        "SELECT name FROM patients WHERE ssn = '123-45-6789'",
        Refuses(NotAllowed("patients.ssn", Det, "literal")),
    ),
    (
        "SELECT name FROM patients WHERE ssn IN ('a', $1)",
        Refuses(NotAllowed("patients.ssn", Det, "literal")),
    ),
    (
        "SELECT lower(ssn) FROM patients",
        Refuses(NotAllowed("patients.ssn", Det, "function lower()")),
    ),
    (
        "SELECT coalesce(ssn, email) FROM patients",
        Refuses(NotAllowed("patients.ssn", Det, "function coalesce()")),
    ),
    (
        "SELECT name FROM patients WHERE ssn || 'x' = $1",
        Refuses(NotAllowed("patients.ssn", Det, "||")),
    ),
    (
        "SELECT name FROM patients WHERE ssn > $1",
        Refuses(NotAllowed("patients.ssn", Det, ">")),
    ),
    (
        "SELECT name FROM patients WHERE ssn < ANY($1)",
        Refuses(NotAllowed("patients.ssn", Det, "< ANY")),
    ),
    (
        "SELECT name FROM patients WHERE ssn BETWEEN $1 AND $2",
        Refuses(NotAllowed("patients.ssn", Det, "BETWEEN")),
    ),
    (
        "SELECT ssn::text FROM patients",
        Refuses(NotAllowed("patients.ssn", Det, "cast")),
    ),
    (
        "SELECT name FROM patients WHERE ssn = $1 || 'x'",
        Refuses(NotAllowed("patients.ssn", Det, "expression")),
    ),
    (
        "SELECT name FROM patients ORDER BY ssn",
        Refuses(NotAllowed("patients.ssn", Det, "ORDER BY")),
    ),
    (
        "SELECT ssn AS s FROM patients ORDER BY s",
        Refuses(NotAllowed("patients.ssn", Det, "ORDER BY")),
    ),
    (
        "SELECT name, ssn FROM patients ORDER BY 2",
        Refuses(NotAllowed("patients.ssn", Det, "ORDER BY")),
    ),
    (
        "SELECT ssn FROM patients UNION SELECT ssn FROM visits ORDER BY 1",
        Refuses(NotAllowed("patients.ssn", Det, "ORDER BY")),
    ),
    (
        "SELECT max(ssn) FROM patients",
        Refuses(NotAllowed("patients.ssn", Det, "aggregate max()")),
    ),
    (
        "SELECT count(DISTINCT diagnosis) FROM patients",
        Refuses(NotAllowed("patients.diagnosis", Rnd, "COUNT(DISTINCT")),
    ),
    (
        "SELECT diagnosis FROM patients GROUP BY diagnosis",
        Refuses(NotAllowed("patients.diagnosis", Rnd, "GROUP BY")),
    ),
    (
        "SELECT count(*) FROM patients GROUP BY ROLLUP (diagnosis)",
        Refuses(NotAllowed("patients.diagnosis", Rnd, "GROUP BY")),
    ),
    (
        "SELECT DISTINCT diagnosis FROM patients",
        Refuses(NotAllowed("patients.diagnosis", Rnd, "DISTINCT")),
    ),
    (
        "SELECT note FROM visits WHERE note = $1",
        Refuses(NotAllowed("visits.note", Rnd, "comparison by =")),
    ),
    (
        "SELECT diagnosis FROM patients UNION SELECT note FROM visits",
        Refuses(NotAllowed("patients.diagnosis", Rnd, "UNION")),
    ),
    (
        "SELECT ssn FROM patients UNION ALL SELECT email FROM patients",
        Refuses(Mismatch("patients.ssn", "patients.email")),
    ),
    (
        "SELECT ssn FROM patients UNION ALL SELECT $1",
        Refuses(NotAllowed("patients.ssn", Det, "UNION")),
    ),
    // Parameters that cannot be encrypted one way
    ("SELECT name FROM patients WHERE ssn = $1 AND email = $1", Refuses(Conflict(1))),
    ("SELECT name FROM patients WHERE ssn = $1 OR name = $1", Refuses(Conflict(1))),
    ("SELECT name FROM patients WHERE ssn = ANY($1) OR ssn = $1", Refuses(Conflict(1))),
    ("UPDATE patients SET ssn = $1; UPDATE patients SET email = $1", Refuses(Conflict(1))),
    // Names
    ("SELECT ssn FROM patients, visits", Refuses(Unresolved("public.patients"))),
    ("SELECT name FROM patients WHERE nosuch = $1", Refuses(Unresolved("public.patients"))),
    (
        "SELECT * FROM patients p WHERE patients.ssn = $1",
        Refuses(Unresolved("public.patients")),
    ),
    ("SELECT * FROM nosuch WHERE x = $1", NotTouching(&[Plain])),
    (r#"SELECT * FROM "Patients""#, NotTouching(&[])),
    ("SELECT * FROM plain WHERE a = $1 AND b LIKE $2", NotTouching(&[Plain, Plain])),
    ("SELECT * FROM plain WHERE a = $3", NotTouching(&[Plain, Plain, Plain])),
    // Shapes the analyzer does not understand
    ("COPY patients FROM STDIN", Refuses(Unsupported("public.patients"))),
    (
        "MERGE INTO patients p USING visits v ON p.id = v.patient_id WHEN MATCHED THEN UPDATE SET ssn = v.ssn",
        Refuses(Unsupported("public.patients")),
    ),
    ("CREATE TABLE t2 AS SELECT * FROM patients", Refuses(Unsupported("public.patients"))),
    ("CREATE INDEX ON patients (ssn)", Refuses(Unsupported("public.patients"))),
    ("SELECT ssn INTO TEMP t2 FROM patients", Refuses(Unsupported("public.patients"))),
    (
        "SELECT * FROM patients, generate_series(1, 3) g",
        Refuses(Unsupported("public.patients")),
    ),
    (
        "SELECT * FROM plain, generate_series(1, (SELECT count(*) FROM visits WHERE ssn = $1)) g",
        Refuses(Unsupported("public.visits")),
    ),
    (
        "SELECT * FROM patients p, LATERAL (SELECT * FROM visits v WHERE v.patient_id = p.id) x",
        Refuses(Unsupported("public.patients")),
    ),
    (
        "WITH RECURSIVE r AS (SELECT id FROM patients UNION ALL SELECT id FROM r) SELECT * FROM r",
        Refuses(Unsupported("public.patients")),
    ),
    (
        "SELECT count(ssn) OVER () FROM patients",
        Refuses(Unsupported("public.patients")),
    ),
    ("SELECT p FROM patients p", Refuses(Unsupported("public.patients"))),
    ("SELECT * FROM generate_series(1, $1) g", NotTouching(&[Plain])),
    // unnest($n, …) in FROM: arrays of parameters, one row per element
    (
        "INSERT INTO patients (id, ssn, diagnosis) \
         SELECT * FROM unnest($1::int[], $2, $3) AS u(id, ssn, diagnosis)",
        Touching(&[Plain, Each("patients.ssn"), Each("patients.diagnosis")]),
    ),
    (
        "INSERT INTO patients (id, ssn) SELECT u.i, u.s FROM unnest($1, $2) u(i, s)",
        Touching(&[Plain, Each("patients.ssn")]),
    ),
    (
        "INSERT INTO patients (ssn) SELECT s FROM unnest($1) s",
        Touching(&[Each("patients.ssn")]),
    ),
    (
        "INSERT INTO patients (ssn) SELECT unnest FROM unnest($1)",
        Touching(&[Each("patients.ssn")]),
    ),
    (
        "INSERT INTO patients (ssn, id) SELECT s, n FROM unnest($1) WITH ORDINALITY AS u(s, n)",
        Touching(&[Each("patients.ssn")]),
    ),
    (
        "WITH rows AS (SELECT * FROM unnest($1, $2) AS u(id, ssn)) \
         INSERT INTO patients (id, ssn) SELECT id, ssn FROM rows",
        Touching(&[Plain, Each("patients.ssn")]),
    ),
    (
        "UPDATE patients SET diagnosis = u.d FROM unnest($1::int[], $2) AS u(id, d) \
         WHERE patients.id = u.id",
        Touching(&[Plain, Each("patients.diagnosis")]),
    ),
    (
        "SELECT p.id FROM patients p JOIN unnest($1) AS u(ssn) ON p.ssn = u.ssn",
        Touching(&[Any("patients.ssn")]),
    ),
    (
        "DELETE FROM patients USING unnest($1) AS u(ssn) WHERE patients.ssn = u.ssn",
        Touching(&[Any("patients.ssn")]),
    ),
    (
        "INSERT INTO patients (ssn) SELECT s FROM unnest($1) AS u(s) \
         WHERE NOT EXISTS (SELECT 1 FROM patients p WHERE p.ssn = u.s)",
        Touching(&[EachBoth("patients.ssn")]),
    ),
    // One array of cells serves two columns of one setting, not of two.
    (
        "WITH p AS (INSERT INTO patients (ssn) SELECT s FROM unnest($1) AS u(s) RETURNING id) \
         INSERT INTO pairs (ssn) SELECT s FROM unnest($1) AS u(s)",
        Touching(&[Each("patients.ssn")]),
    ),
    (
        "INSERT INTO patients (ssn, email) SELECT s, s FROM unnest($1) AS u(s)",
        Refuses(Conflict(1)),
    ),
    ("SELECT x FROM unnest($1) AS u(x)", NotTouching(&[Plain])),
    ("SELECT * FROM plain, unnest($1::int[]) AS u(x) WHERE a = x", NotTouching(&[Plain])),
    // A cast makes it a computed (plaintext) array.
    (
        "INSERT INTO patients (ssn) SELECT s FROM unnest($1::text[]) AS u(s)",
        Refuses(NotAllowed("patients.ssn", Det, "plaintext column u.s")),
    ),
    // Anything but a parameter, bare or cast to a built-in type's array,
    // may give any number of columns (an array of a composite type gives
    // one per field): the relation's columns are unknown.
    (
        "INSERT INTO patients (ssn) SELECT s FROM unnest(ARRAY[$1]) AS u(s)",
        Refuses(Unresolved("public.patients")),
    ),
    (
        "INSERT INTO patients (ssn) SELECT s FROM unnest(ARRAY['123-45-6789']) AS u(s)",
        Refuses(Unresolved("public.patients")),
    ),
    (
        "INSERT INTO patients (id, ssn) SELECT * FROM unnest($1::pair[])",
        Refuses(Unsupported("public.patients")),
    ),
    (
        "INSERT INTO patients (id, ssn) SELECT * FROM unnest($1::text[]::pair[])",
        Refuses(Unsupported("public.patients")),
    ),
    (
        "SELECT p.id FROM patients p NATURAL JOIN unnest($1::\"int4\"[]) u",
        Refuses(Unsupported("public.patients")),
    ),
    // A query that gives fewer values than the INSERT has columns means
    // the walk miscounted them: the server refuses any difference.
    (
        "INSERT INTO patients (id, ssn) SELECT * FROM unnest($1)",
        Refuses(Unresolved("public.patients")),
    ),
    (
        "INSERT INTO patients (ssn) SELECT upper(s) FROM unnest($1) AS u(s)",
        Refuses(NotAllowed("patients.ssn", Det, "not a parameter")),
    ),
    (
        "INSERT INTO patients (ssn, name) SELECT s, s FROM unnest($1) AS u(s)",
        Refuses(Conflict(1)),
    ),
    (
        "INSERT INTO patients (ssn, diagnosis) SELECT s, s FROM unnest($1) AS u(s)",
        Refuses(Conflict(1)),
    ),
    (
        "INSERT INTO patients (ssn) SELECT s FROM unnest($1) AS u(s) WHERE s > $2",
        Refuses(Conflict(1)),
    ),
    ("INSERT INTO patients (ssn) VALUES ($1) RETURNING (SELECT x FROM unnest($1) u(x) LIMIT 1)", Refuses(Conflict(1))),
    (
        "SELECT * FROM patients p, unnest(p.ssn) AS u(x)",
        Refuses(NotAllowed("patients.ssn", Det, "unnest")),
    ),
    (
        "SELECT p.id FROM patients p JOIN unnest($1) AS u(d) ON p.diagnosis = u.d",
        Refuses(NotAllowed("patients.diagnosis", Rnd, "comparison")),
    ),
    (
        "SELECT p.id FROM patients p JOIN unnest($1) AS u(ssn) ON p.ssn = u.ssn AND p.email = u.ssn",
        Refuses(Conflict(1)),
    ),
    (
        "SELECT p.id FROM patients p JOIN unnest($1) AS u(ssn) ON p.ssn = u.ssn \
         JOIN pairs ON pairs.ssn = $1",
        Refuses(Conflict(1)),
    ),
    ("CREATE TABLE t2 (a int)", NotTouching(&[])),
    ("ALTER TABLE plain ADD COLUMN c int", NotTouching(&[])),
    ("SET search_path = billing", NotTouching(&[])),
    ("SHOW search_path", NotTouching(&[])),
    ("TRUNCATE patients", Touching(&[])),
    (
        "EXPLAIN SELECT * FROM patients WHERE ssn = $1",
        Touching(&[Compare("patients.ssn")]),
    ),
    (
        "BEGIN; UPDATE patients SET ssn = $1 WHERE id = $2; COMMIT",
        Touching(&[Store("patients.ssn"), Plain]),
    ),
    (
        "DELETE FROM patients WHERE ssn = $1; SELECT * FROM plain WHERE a = $2",
        Touching(&[Compare("patients.ssn"), Plain]),
    ),
    // Text that does not parse
    ("SELEC * FROM patients WHERE ssn = $1", Refuses(Unparsable)),
    ("SELEC * FROM plain WHERE a = $2", NotTouching(&[Plain, Plain])),
    ("SELECT 'unterminated FROM patients", Refuses(Unparsable)),
    ("SELECT 1 END; DELETE FROM patients WHERE ssn = '1'", Refuses(Unparsable)),
];

fn expected_target(schema: &TestSchema, param: Param) -> ParameterTarget {
    match param {
        Param::Plain => ParameterTarget::Plaintext,
        Param::Store(column) => schema.target(column, ParameterUse::Store),
        Param::Compare(column) => schema.target(column, ParameterUse::Compare),
        Param::Any(column) => schema.target(column, ParameterUse::CompareAny),
        Param::Each(column) => schema.target(column, ParameterUse::StoreEach),
        Param::EachBoth(column) => schema.target(column, ParameterUse::StoreEachAndCompare),
    }
}

/// Why `actual` is not `expected`, if it is not.
fn mismatch(
    schema: &TestSchema,
    expected: Expected,
    actual: &Result<StatementAnalysis, Refusal>,
) -> Option<String> {
    // Result columns are checked by their own test; the corpus pins parameters.
    let accepted = |parameters: &[Param], touches: bool| StatementAnalysis {
        parameters: parameters
            .iter()
            .map(|param| expected_target(schema, *param))
            .collect(),
        touches_encrypted_table: touches,
        result_columns: actual
            .as_ref()
            .map(|analysis| analysis.result_columns.clone())
            .unwrap_or_default(),
        changes_session: actual
            .as_ref()
            .is_ok_and(|analysis| analysis.changes_session),
        encrypted_tables: actual
            .as_ref()
            .map(|analysis| analysis.encrypted_tables.clone())
            .unwrap_or_default(),
        transaction_block: actual
            .as_ref()
            .ok()
            .and_then(|analysis| analysis.transaction_block),
        unnested: actual
            .as_ref()
            .map(|analysis| analysis.unnested.clone())
            .unwrap_or_default(),
    };
    let matches = match (expected, actual) {
        (Expected::Touching(parameters), Ok(analysis)) => *analysis == accepted(parameters, true),
        (Expected::NotTouching(parameters), Ok(analysis)) => {
            *analysis == accepted(parameters, false)
        }
        (Expected::Refuses(refused), Err(refusal)) => refusal_matches(refused, refusal),
        _ => false,
    };
    (!matches).then(|| format!("expected {expected:?}, got {actual:?}"))
}

fn refusal_matches(expected: Refused, actual: &Refusal) -> bool {
    match (expected, actual) {
        (
            Refused::NotAllowed(column, mode, attempted_part),
            Refusal::NotAllowed {
                column: actual_column,
                mode: actual_mode,
                attempted,
                allowed,
            },
        ) => {
            let expected_allowed = match mode {
                EncryptionMode::Deterministic => DETERMINISTIC_ALLOWED,
                EncryptionMode::Randomized => RANDOMIZED_ALLOWED,
            };
            *actual_column == column_name(column)
                && *actual_mode == mode
                && attempted.contains(attempted_part)
                && *allowed == expected_allowed
        }
        (
            Refused::Unassigned(column),
            refusal @ Refusal::UnusableColumn {
                column: actual_column,
                ..
            },
        ) => {
            *actual_column == column_name(column)
                && refusal.to_string().contains(UNUSABLE_CIPHERTEXT_ALLOWED)
        }
        (
            Refused::Mismatch(left, right),
            Refusal::SettingMismatch {
                left: actual_left,
                right: actual_right,
                ..
            },
        ) => actual_left.0 == column_name(left) && actual_right.0 == column_name(right),
        (
            Refused::Conflict(parameter),
            Refusal::ParameterConflict {
                parameter: actual, ..
            },
        ) => *actual == parameter,
        (Refused::Unsupported(table), Refusal::UnsupportedShape { table: actual, .. })
        | (Refused::Unresolved(table), Refusal::Unresolved { table: actual, .. }) => {
            actual.to_string() == table
        }
        (Refused::Unparsable, Refusal::Unparsable { .. }) => true,
        _ => false,
    }
}

#[test]
fn corpus_has_at_least_fifty_statements_covering_every_refusal() {
    assert!(CORPUS.len() >= 50, "{} statements", CORPUS.len());
    let refuses = |wanted: fn(&Refused) -> bool| {
        CORPUS
            .iter()
            .any(|(_, expected)| matches!(expected, Expected::Refuses(refused) if wanted(refused)))
    };
    assert!(refuses(|refused| matches!(
        refused,
        Refused::NotAllowed(..)
    )));
    assert!(refuses(|refused| matches!(
        refused,
        Refused::Unassigned(..)
    )));
    assert!(refuses(|refused| matches!(refused, Refused::Mismatch(..))));
    assert!(refuses(|refused| matches!(refused, Refused::Conflict(..))));
    assert!(refuses(|refused| matches!(
        refused,
        Refused::Unsupported(..)
    )));
    assert!(refuses(|refused| matches!(
        refused,
        Refused::Unresolved(..)
    )));
    assert!(refuses(|refused| matches!(refused, Refused::Unparsable)));
}

#[test]
fn every_corpus_statement_gets_its_expected_answer() {
    let schema = TestSchema::new();
    let failures: Vec<String> = CORPUS
        .iter()
        .filter_map(|(sql, expected)| {
            mismatch(&schema, *expected, &analyze(sql, &schema))
                .map(|why| format!("{sql}\n    {why}"))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} statements:\n{}",
        failures.len(),
        CORPUS.len(),
        failures.join("\n")
    );
}

#[test]
fn refusals_never_quote_a_value_from_the_statement() {
    let schema = TestSchema::new();
    let secret = "123-45-6789";
    for sql in [
        "SELECT name FROM patients WHERE ssn = '123-45-6789'",
        "INSERT INTO patients (ssn) VALUES ('123-45-6789')",
        "SELEC * FROM patients WHERE ssn = '123-45-6789'",
        "SELECT * FROM patients WHERE ssn = '123-45-6789' '",
        "SELECT 1 END; DELETE FROM patients WHERE ssn = '123-45-6789'",
        "COPY patients FROM STDIN; SELECT '123-45-6789'",
    ] {
        let refusal = analyze(sql, &schema).expect_err(sql);
        assert!(!refusal.to_string().contains(secret), "{sql}: {refusal}");
        assert!(
            !format!("{refusal:?}").contains(secret),
            "{sql}: {refusal:?}"
        );
    }
}

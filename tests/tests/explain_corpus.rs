//! `Client::explain` over a corpus of statements against a real PostgreSQL:
//! every statement shape the analyzer supports and every kind of refusal,
//! each with the answer docs/DESIGN.md ("The client pipeline") calls for.
//! All mismatches are reported at once.
#![allow(clippy::unwrap_used)] // a test fails by panicking

use aepg::analysis::{
    Refusal, DETERMINISTIC_ALLOWED, RANDOMIZED_ALLOWED, UNUSABLE_CIPHERTEXT_ALLOWED,
};
use aepg::cell::EncryptionMode::{self, Deterministic, Randomized};
use aepg::{Client, ColumnDecryption, ColumnName, Error, Explanation};
use aepg_tests::fixture::EncryptedDatabase;

/// What `explain` must answer for one statement.
#[derive(Clone, Copy, Debug)]
enum Expected {
    /// Accepted. Each parameter is `"plain"` or `"column:Usage:setting"`
    /// (`"public.patients.ssn:Compare:ssn"`); each result column is
    /// `"plain"`, the table column it is decrypted from, `"setting:NAME"`
    /// (decrypted under that setting, from no single column), or
    /// `"refused"` (ciphertext no signed record lets it decrypt).
    Explains {
        parameters: &'static [&'static str],
        columns: &'static [&'static str],
    },
    /// Refused.
    Refuses(Refused),
}

/// The refusal expected, with its key fields.
#[derive(Clone, Copy, Debug)]
enum Refused {
    /// `Refusal::NotAllowed` on `column`, `attempted` containing the text.
    NotAllowed(&'static str, &'static str),
    /// `Refusal::SettingMismatch` between two columns (either order).
    SettingMismatch(&'static str, &'static str),
    /// `Refusal::UnsupportedShape` on a table, the shape containing the text.
    UnsupportedShape(&'static str, &'static str),
    /// `Refusal::Unresolved` on a table, the name containing the text.
    Unresolved(&'static str, &'static str),
    /// `Refusal::ParameterConflict` on a parameter.
    ParameterConflict(usize),
    /// `Refusal::UnusableColumn` on a column.
    UnassignedCiphertext(&'static str),
    /// `Refusal::Unparsable`.
    Unparsable,
    /// `Error::ParameterCrossCheck` on a parameter.
    CrossCheck(usize),
    /// The server rejects the statement (which touches no encrypted table);
    /// its message contains the text.
    Database(&'static str),
}

const fn explains(
    parameters: &'static [&'static str],
    columns: &'static [&'static str],
) -> Expected {
    Expected::Explains {
        parameters,
        columns,
    }
}

use Expected::Refuses;
use Refused::{
    CrossCheck, Database, NotAllowed, ParameterConflict, SettingMismatch, UnassignedCiphertext,
    Unparsable, Unresolved, UnsupportedShape,
};

const PLAIN: &str = "plain";
const REFUSED: &str = "refused";
const SETTING_SSN: &str = "setting:ssn";
const SETTING_DIAGNOSIS: &str = "setting:diagnosis";
const SSN: &str = "public.patients.ssn";
const DIAGNOSIS: &str = "public.patients.diagnosis";
const VISIT_SSN: &str = "public.visits.patient_ssn";
const BADGE: &str = "public.badges.code";
const OWNER_SSN: &str = "billing.Accounts.owner_ssn";
const VIEW_SSN: &str = "public.patient_view.ssn";
const ASSIGNED_VIEW_SSN: &str = "public.assigned_view.ssn";
const PATIENTS: &str = "public.patients";
const VISITS: &str = "public.visits";

const STORE_SSN: &str = "public.patients.ssn:Store:ssn";
const STORE_DIAGNOSIS: &str = "public.patients.diagnosis:Store:diagnosis";
const COMPARE_SSN: &str = "public.patients.ssn:Compare:ssn";
const STORE_VISIT_SSN: &str = "public.visits.patient_ssn:Store:ssn";
const COMPARE_VISIT_SSN: &str = "public.visits.patient_ssn:Compare:ssn";

/// The setting each encrypted column is assigned to.
const ASSIGNMENTS: &[(&str, &str)] = &[
    (SSN, "ssn"),
    (DIAGNOSIS, "diagnosis"),
    (VISIT_SSN, "ssn"),
    (BADGE, "badge"),
    (OWNER_SSN, "ssn"),
    (ASSIGNED_VIEW_SSN, "ssn"),
];

/// Each setting's mode.
const SETTINGS: &[(&str, EncryptionMode)] = &[
    ("ssn", Deterministic),
    ("diagnosis", Randomized),
    ("badge", Deterministic),
];

/// Every statement with its expected answer.
const CORPUS: &[(&str, Expected)] = &[
    // INSERT
    (
        "INSERT INTO patients (id, name, ssn, diagnosis) VALUES ($1, $2, $3, $4)",
        explains(&[PLAIN, PLAIN, STORE_SSN, STORE_DIAGNOSIS], &[]),
    ),
    // The server's column order is not signed: a positional INSERT into
    // a table with encrypted columns is refused.
    (
        "INSERT INTO patients VALUES ($1, $2, $3, $4)",
        Refuses(UnsupportedShape(PATIENTS, "column list")),
    ),
    (
        "INSERT INTO visits VALUES (DEFAULT, $1, $2, $3)",
        Refuses(UnsupportedShape(VISITS, "column list")),
    ),
    (
        "INSERT INTO visits (patient_id, patient_ssn, note) VALUES ($1, $2, $3), ($4, $5, $6), ($7, NULL, DEFAULT)",
        explains(
            &[PLAIN, STORE_VISIT_SSN, PLAIN, PLAIN, STORE_VISIT_SSN, PLAIN, PLAIN],
            &[],
        ),
    ),
    (
        "INSERT INTO visits (patient_id, patient_ssn) SELECT id, ssn FROM patients WHERE id = $1",
        explains(&[PLAIN], &[]),
    ),
    (
        "INSERT INTO patients (id, ssn) SELECT $1, $2",
        explains(&[PLAIN, STORE_SSN], &[]),
    ),
    (
        "INSERT INTO plain_items (a, b) SELECT id, name FROM patients WHERE ssn = $1",
        explains(&[COMPARE_SSN], &[]),
    ),
    (
        "INSERT INTO patients (id, ssn, diagnosis) VALUES ($1, $2, $3) \
         ON CONFLICT (ssn) DO UPDATE SET diagnosis = EXCLUDED.diagnosis",
        explains(&[PLAIN, STORE_SSN, STORE_DIAGNOSIS], &[]),
    ),
    (
        "INSERT INTO patients AS p (id, ssn) VALUES ($1, $2) ON CONFLICT (id) \
         DO UPDATE SET ssn = $3, diagnosis = $4 WHERE p.ssn = $5 RETURNING id, ssn, diagnosis",
        explains(
            &[PLAIN, STORE_SSN, STORE_SSN, STORE_DIAGNOSIS, COMPARE_SSN],
            &[PLAIN, SSN, DIAGNOSIS],
        ),
    ),
    (
        "INSERT INTO patients (id, ssn) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        explains(&[PLAIN, STORE_SSN], &[]),
    ),
    (
        r#"INSERT INTO billing."Accounts" ("Id", owner_ssn) VALUES ($1, $2)"#,
        explains(&[PLAIN, "billing.Accounts.owner_ssn:Store:ssn"], &[]),
    ),
    // UPDATE
    (
        "UPDATE patients SET ssn = $1, diagnosis = $2, name = $3 WHERE id = $4",
        explains(&[STORE_SSN, STORE_DIAGNOSIS, PLAIN, PLAIN], &[]),
    ),
    (
        "UPDATE patients SET diagnosis = $1 WHERE ssn = $2 RETURNING diagnosis, ssn",
        explains(&[STORE_DIAGNOSIS, COMPARE_SSN], &[DIAGNOSIS, SSN]),
    ),
    (
        "UPDATE patients SET (ssn, name) = ($1, $2) WHERE id = $3",
        explains(&[STORE_SSN, PLAIN, PLAIN], &[]),
    ),
    (
        "UPDATE visits v SET note = $1 FROM patients p WHERE p.ssn = v.patient_ssn AND p.ssn = $2",
        explains(&[PLAIN, COMPARE_SSN], &[]),
    ),
    (
        "UPDATE visits SET patient_ssn = p.ssn FROM patients p WHERE p.id = visits.patient_id AND p.name = $1",
        explains(&[PLAIN], &[]),
    ),
    (
        r#"UPDATE billing."Accounts" SET owner_ssn = $1 WHERE "Id" = $2"#,
        explains(&["billing.Accounts.owner_ssn:Store:ssn", PLAIN], &[]),
    ),
    // DELETE
    (
        "DELETE FROM patients WHERE ssn = $1",
        explains(&[COMPARE_SSN], &[]),
    ),
    (
        "DELETE FROM visits v USING patients p WHERE v.patient_ssn = p.ssn AND p.id = $1 \
         RETURNING v.patient_ssn, v.note",
        explains(&[PLAIN], &[VISIT_SSN, PLAIN]),
    ),
    // SELECT: joins, aliases, qualified and quoted names
    (
        "SELECT * FROM patients WHERE ssn = $1",
        explains(&[COMPARE_SSN], &[PLAIN, PLAIN, SSN, DIAGNOSIS]),
    ),
    (
        "SELECT p.name, v.note, v.patient_ssn FROM patients p JOIN visits v ON v.patient_ssn = p.ssn WHERE p.ssn = $1",
        explains(&[COMPARE_SSN], &[PLAIN, PLAIN, VISIT_SSN]),
    ),
    (
        "SELECT ssn, note FROM patients JOIN visits USING (id) WHERE ssn = $1",
        explains(&[COMPARE_SSN], &[SSN, PLAIN]),
    ),
    (
        "SELECT p.id, v.id FROM patients p, visits v WHERE p.ssn = v.patient_ssn AND v.patient_ssn = $1",
        explains(&[COMPARE_VISIT_SSN], &[PLAIN, PLAIN]),
    ),
    (
        "SELECT pt.ssn AS s FROM public.patients AS pt WHERE pt.ssn <> $1",
        explains(&[COMPARE_SSN], &[SSN]),
    ),
    (
        r#"SELECT "Id", owner_ssn FROM billing."Accounts" a WHERE a.owner_ssn = $1"#,
        explains(&["billing.Accounts.owner_ssn:Compare:ssn"], &[PLAIN, OWNER_SSN]),
    ),
    (
        r#"SELECT p.name, a.owner_ssn FROM billing."Accounts" a JOIN patients p ON p.ssn = a.owner_ssn"#,
        explains(&[], &[PLAIN, OWNER_SSN]),
    ),
    // SELECT: subqueries, EXISTS, CTEs
    (
        "SELECT s.ssn, s.name FROM (SELECT ssn, name FROM patients WHERE id = $1) AS s WHERE s.ssn = $2",
        explains(&[PLAIN, COMPARE_SSN], &[SSN, PLAIN]),
    ),
    (
        "SELECT name FROM patients WHERE ssn IN (SELECT patient_ssn FROM visits WHERE note = $1)",
        explains(&[PLAIN], &[PLAIN]),
    ),
    (
        "SELECT name FROM patients WHERE ssn = (SELECT patient_ssn FROM visits WHERE id = $1)",
        explains(&[PLAIN], &[PLAIN]),
    ),
    (
        "SELECT p.id FROM patients p WHERE EXISTS \
         (SELECT 1 FROM visits v WHERE v.patient_ssn = p.ssn AND v.note = $1)",
        explains(&[PLAIN], &[PLAIN]),
    ),
    (
        "SELECT p.id FROM patients p WHERE EXISTS \
         (SELECT 1 FROM visits v WHERE v.patient_id = p.id AND v.patient_ssn = $1)",
        explains(&[COMPARE_VISIT_SSN], &[PLAIN]),
    ),
    (
        "WITH x AS (SELECT id, ssn FROM patients WHERE name = $1) SELECT x.ssn FROM x WHERE x.ssn = $2",
        explains(&[PLAIN, COMPARE_SSN], &[SSN]),
    ),
    (
        "WITH ins AS (INSERT INTO patients (id, ssn) VALUES ($1, $2) RETURNING id, ssn) SELECT id, ssn FROM ins",
        explains(&[PLAIN, STORE_SSN], &[PLAIN, SSN]),
    ),
    (
        "WITH moved AS (DELETE FROM visits WHERE patient_ssn = $1 RETURNING patient_id, patient_ssn) \
         INSERT INTO visits (patient_id, patient_ssn, note) SELECT patient_id, patient_ssn, $2 FROM moved",
        explains(&[COMPARE_VISIT_SSN, PLAIN], &[]),
    ),
    // SELECT: comparisons with parameters and NULL
    (
        "SELECT id FROM patients WHERE ssn IN ($1, $2) AND name = $3",
        explains(&[COMPARE_SSN, COMPARE_SSN, PLAIN], &[PLAIN]),
    ),
    (
        "SELECT id FROM patients WHERE ssn = ANY($1)",
        explains(&["public.patients.ssn:CompareAny:ssn"], &[PLAIN]),
    ),
    (
        "SELECT id FROM patients WHERE ssn <> ALL($1)",
        explains(&["public.patients.ssn:CompareAny:ssn"], &[PLAIN]),
    ),
    // The analyzer maps `= ANY(ARRAY[$1, $2])` (its documentation lists the
    // shape), but PostgreSQL types `ARRAY[$1, $2]` as text[], and there is
    // no `aepg.ciphertext = text`: the server rejects it, nothing is sent.
    (
        "SELECT id FROM patients WHERE ssn = ANY(ARRAY[$1, $2])",
        Refuses(Database("operator does not exist")),
    ),
    (
        "SELECT id FROM patients WHERE ssn IN ($1, NULL)",
        explains(&[COMPARE_SSN], &[PLAIN]),
    ),
    (
        "SELECT id, diagnosis FROM patients WHERE ssn IS NOT NULL AND diagnosis IS NULL",
        explains(&[], &[PLAIN, DIAGNOSIS]),
    ),
    (
        "SELECT id FROM patients WHERE (ssn = $1 OR $1 IS NULL) AND name = $2",
        explains(&[COMPARE_SSN, PLAIN], &[PLAIN]),
    ),
    (
        "SELECT id FROM patients WHERE ssn IS DISTINCT FROM $1",
        explains(&[COMPARE_SSN], &[PLAIN]),
    ),
    (
        "SELECT id FROM patients WHERE CASE ssn WHEN $1 THEN true ELSE false END",
        explains(&[COMPARE_SSN], &[PLAIN]),
    ),
    // SELECT: grouping, counting, set operations
    (
        "SELECT ssn, count(*) FROM patients GROUP BY ssn HAVING count(*) > $1",
        explains(&[PLAIN], &[SSN, PLAIN]),
    ),
    ("SELECT DISTINCT ssn FROM patients", explains(&[], &[SSN])),
    (
        "SELECT count(ssn), count(DISTINCT ssn), count(diagnosis), count(*) FROM patients",
        explains(&[], &[PLAIN, PLAIN, PLAIN, PLAIN]),
    ),
    (
        "SELECT ssn FROM patients WHERE id = $1 UNION ALL SELECT patient_ssn FROM visits WHERE note = $2",
        explains(&[PLAIN, PLAIN], &[SETTING_SSN]),
    ),
    (
        r#"SELECT ssn FROM patients UNION SELECT owner_ssn FROM billing."Accounts""#,
        explains(&[], &[SETTING_SSN]),
    ),
    (
        "SELECT diagnosis FROM patients WHERE id = $1 UNION ALL SELECT diagnosis FROM patients WHERE id = $2",
        explains(&[PLAIN, PLAIN], &[SETTING_DIAGNOSIS]),
    ),
    // A view whose ciphertext column has no signed assignment: its cells
    // are refused, never decrypted by their headers alone.
    (
        "SELECT name, ssn FROM patient_view WHERE ssn IS NOT NULL",
        explains(&[], &[PLAIN, REFUSED]),
    ),
    // A view column with a signed assignment is an encrypted column.
    (
        "SELECT id, ssn FROM assigned_view WHERE ssn = $1",
        explains(&["public.assigned_view.ssn:Compare:ssn"], &[PLAIN, ASSIGNED_VIEW_SSN]),
    ),
    // `*` over joins that merge columns, and `TABLE`
    (
        "SELECT * FROM patients JOIN visits USING (id) WHERE ssn = $1",
        explains(
            &[COMPARE_SSN],
            &[PLAIN, PLAIN, SSN, DIAGNOSIS, PLAIN, VISIT_SSN, PLAIN],
        ),
    ),
    (
        "SELECT * FROM patients NATURAL JOIN visits",
        explains(&[], &[PLAIN, PLAIN, SSN, DIAGNOSIS, PLAIN, VISIT_SSN, PLAIN]),
    ),
    (
        "SELECT * FROM visits RIGHT JOIN patients USING (id)",
        explains(&[], &[PLAIN, PLAIN, VISIT_SSN, PLAIN, PLAIN, SSN, DIAGNOSIS]),
    ),
    ("TABLE patients", explains(&[], &[PLAIN, PLAIN, SSN, DIAGNOSIS])),
    // Statements that only name tables, or wrap others
    ("TRUNCATE patients", explains(&[], &[])),
    (
        "EXPLAIN SELECT id FROM patients WHERE ssn = $1",
        explains(&[COMPARE_SSN], &[PLAIN]),
    ),
    (
        "EXPLAIN (FORMAT JSON) SELECT * FROM patients WHERE ssn = $1",
        explains(&[COMPARE_SSN], &[PLAIN]),
    ),
    // Statements touching no encrypted table
    (
        "SELECT a, b FROM plain_items WHERE a = $1 AND b LIKE $2 ORDER BY b",
        explains(&[PLAIN, PLAIN], &[PLAIN, PLAIN]),
    ),
    (
        "INSERT INTO plain_items VALUES ($1, $2)",
        explains(&[PLAIN, PLAIN], &[]),
    ),
    (
        "UPDATE plain_items SET b = lower($1) WHERE a > $2 RETURNING a",
        explains(&[PLAIN, PLAIN], &[PLAIN]),
    ),
    (
        "SELECT a FROM plain_items WHERE b = '555-55-5555'",
        explains(&[], &[PLAIN]),
    ),
    // Refused: literals stored into or compared with encrypted columns
    (
        "INSERT INTO patients (id, ssn) VALUES ($1, '555-55-5555')",
        Refuses(NotAllowed(SSN, "literal")),
    ),
    (
        "SELECT id FROM patients WHERE ssn = '555-55-5555'",
        Refuses(NotAllowed(SSN, "literal")),
    ),
    (
        "SELECT id FROM patients WHERE ssn IN ($1, '555-55-5555')",
        Refuses(NotAllowed(SSN, "literal")),
    ),
    (
        "UPDATE patients SET diagnosis = 'influenza-5555' WHERE id = $1",
        Refuses(NotAllowed(DIAGNOSIS, "literal")),
    ),
    (
        "INSERT INTO patients (id, ssn) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET ssn = '555-55-5555'",
        Refuses(NotAllowed(SSN, "literal")),
    ),
    // Refused: operations a mode does not allow
    (
        "SELECT id FROM patients WHERE ssn LIKE $1",
        Refuses(NotAllowed(SSN, "LIKE")),
    ),
    (
        "SELECT id FROM patients WHERE ssn > $1",
        Refuses(NotAllowed(SSN, ">")),
    ),
    (
        "SELECT id FROM patients WHERE ssn BETWEEN $1 AND $2",
        Refuses(NotAllowed(SSN, "BETWEEN")),
    ),
    (
        "SELECT id FROM patients WHERE lower(ssn) = $1",
        Refuses(NotAllowed(SSN, "lower")),
    ),
    (
        "SELECT max(ssn) FROM patients",
        Refuses(NotAllowed(SSN, "max")),
    ),
    (
        "DELETE FROM patients WHERE ssn = $1 || '-5555'",
        Refuses(NotAllowed(SSN, "expression")),
    ),
    (
        "INSERT INTO patients (id, ssn) VALUES ($1, $2::text)",
        Refuses(NotAllowed(SSN, "storing an expression")),
    ),
    (
        "SELECT id FROM patients ORDER BY ssn",
        Refuses(NotAllowed(SSN, "ORDER BY")),
    ),
    (
        "SELECT name, ssn FROM patients ORDER BY 2",
        Refuses(NotAllowed(SSN, "ORDER BY")),
    ),
    (
        "SELECT id FROM patients WHERE diagnosis = $1",
        Refuses(NotAllowed(DIAGNOSIS, "=")),
    ),
    (
        "SELECT DISTINCT diagnosis FROM patients",
        Refuses(NotAllowed(DIAGNOSIS, "DISTINCT")),
    ),
    (
        "SELECT diagnosis, count(*) FROM patients GROUP BY diagnosis",
        Refuses(NotAllowed(DIAGNOSIS, "GROUP BY")),
    ),
    (
        "SELECT p.id FROM patients p JOIN plain_items i ON i.b = p.ssn",
        Refuses(NotAllowed(SSN, "public.plain_items.b")),
    ),
    (
        "INSERT INTO plain_items (a, b) SELECT id, ssn FROM patients",
        Refuses(NotAllowed(SSN, "public.plain_items.b")),
    ),
    (
        "UPDATE patients SET ssn = (SELECT $1)",
        Refuses(NotAllowed(SSN, "storing an expression")),
    ),
    // Refused: columns of different settings
    (
        "SELECT p.id FROM patients p JOIN badges b ON b.code = p.ssn",
        Refuses(SettingMismatch(BADGE, SSN)),
    ),
    (
        "INSERT INTO badges (id, code) SELECT id, ssn FROM patients",
        Refuses(SettingMismatch(BADGE, SSN)),
    ),
    (
        "SELECT ssn FROM patients UNION ALL SELECT code FROM badges",
        Refuses(SettingMismatch(SSN, BADGE)),
    ),
    (
        "UPDATE patients SET diagnosis = ssn",
        Refuses(SettingMismatch(DIAGNOSIS, SSN)),
    ),
    // Refused: one parameter, two encodings
    (
        "UPDATE patients SET name = $1 WHERE ssn = $1",
        Refuses(ParameterConflict(1)),
    ),
    (
        "SELECT p.id FROM patients p JOIN badges b ON b.id = p.id WHERE p.ssn = $1 AND b.code = $1",
        Refuses(ParameterConflict(1)),
    ),
    (
        "SELECT id FROM patients WHERE ssn = ANY($1) OR ssn = $1",
        Refuses(ParameterConflict(1)),
    ),
    // Refused: ciphertext of unknown setting
    (
        "SELECT id FROM patient_view WHERE ssn = $1",
        Refuses(UnassignedCiphertext(VIEW_SSN)),
    ),
    (
        "INSERT INTO patient_view (id, ssn) VALUES ($1, $2)",
        Refuses(UnassignedCiphertext(VIEW_SSN)),
    ),
    // Refused: shapes the analyzer does not understand
    (
        "COPY patients FROM STDIN",
        Refuses(UnsupportedShape(PATIENTS, "COPY")),
    ),
    (
        "MERGE INTO patients p USING visits v ON p.ssn = v.patient_ssn \
         WHEN MATCHED THEN UPDATE SET diagnosis = 'influenza-5555'",
        Refuses(UnsupportedShape(PATIENTS, "MERGE")),
    ),
    (
        "CREATE TABLE patients_copy AS SELECT * FROM patients",
        Refuses(UnsupportedShape(PATIENTS, "CREATE TABLE")),
    ),
    (
        "SELECT ssn INTO TEMP patients_copy FROM patients",
        Refuses(UnsupportedShape(PATIENTS, "SELECT INTO")),
    ),
    (
        "SELECT * FROM patients p, LATERAL (SELECT * FROM visits v WHERE v.patient_id = p.id) x",
        Refuses(UnsupportedShape(PATIENTS, "LATERAL")),
    ),
    (
        "WITH RECURSIVE r AS (SELECT id FROM patients UNION ALL SELECT id FROM r) SELECT * FROM r",
        Refuses(UnsupportedShape(PATIENTS, "WITH RECURSIVE")),
    ),
    (
        "SELECT * FROM patients, generate_series(1, 3) g",
        Refuses(UnsupportedShape(PATIENTS, "generate_series")),
    ),
    (
        "SELECT p FROM patients p",
        Refuses(UnsupportedShape(PATIENTS, "whole-row")),
    ),
    // Refused: names that do not resolve
    (
        "SELECT id FROM patients, visits WHERE ssn = $1",
        Refuses(Unresolved(PATIENTS, "id")),
    ),
    (
        "SELECT nosuch FROM patients WHERE ssn = $1",
        Refuses(Unresolved(PATIENTS, "nosuch")),
    ),
    (
        r#"SELECT id FROM patients WHERE "SSN" = $1"#,
        Refuses(Unresolved(PATIENTS, "SSN")),
    ),
    (
        "SELECT * FROM patients p WHERE patients.ssn = $1",
        Refuses(Unresolved(PATIENTS, "ssn")),
    ),
    (
        "SELECT p.id FROM patients p JOIN nosuch n ON n.x = p.ssn",
        Refuses(Unresolved(PATIENTS, "nosuch")),
    ),
    (
        "SELECT id FROM patients WHERE ssn = nosuch",
        Refuses(Unresolved(PATIENTS, "nosuch")),
    ),
    // Unquoted names fold to lower case: billing.accounts is not
    // billing."Accounts", touches no encrypted table, and the server judges it.
    (
        "SELECT owner_ssn FROM billing.accounts WHERE owner_ssn = $1",
        Refuses(Database("does not exist")),
    ),
    // Refused: text that does not parse
    (
        "SELEC id FROM patients WHERE ssn = '555-55-5555'",
        Refuses(Unparsable),
    ),
    (
        "SELECT id FROM patients WHERE ssn = '555-55-5555",
        Refuses(Unparsable),
    ),
    // Refused by the cross-check: the server types it aepg.ciphertext, the
    // analysis has no column for it.
    ("SELECT $1::aepg.ciphertext", Refuses(CrossCheck(1))),
];

/// The schema of the brief, plus a view whose ciphertext column has no setting.
async fn schema() -> (EncryptedDatabase, Client) {
    let db = EncryptedDatabase::new("explain_corpus").await;
    db.setting("ssn", "text", Deterministic).await;
    db.setting("diagnosis", "text", Randomized).await;
    db.setting("badge", "text", Deterministic).await;
    db.table(
        "CREATE TABLE patients (id int PRIMARY KEY, name text, ssn aepg.ciphertext UNIQUE, diagnosis aepg.ciphertext);
         CREATE TABLE visits (id serial PRIMARY KEY, patient_id int, patient_ssn aepg.ciphertext, note text);
         CREATE TABLE badges (id int, code aepg.ciphertext);
         CREATE TABLE plain_items (a int, b text);",
        &[
            ("patients", "ssn", "ssn"),
            ("patients", "diagnosis", "diagnosis"),
            ("visits", "patient_ssn", "ssn"),
            ("badges", "code", "badge"),
        ],
    )
    .await;
    db.plain
        .batch_execute(
            r#"CREATE SCHEMA billing;
               CREATE TABLE billing."Accounts" ("Id" int, owner_ssn aepg.ciphertext);
               CREATE VIEW patient_view AS SELECT id, name, ssn FROM patients;
               CREATE VIEW assigned_view AS SELECT id, ssn FROM patients;"#,
        )
        .await
        .unwrap();
    for column in [
        ColumnName::new("billing", "Accounts", "owner_ssn"),
        ColumnName::new("public", "assigned_view", "ssn"),
    ] {
        db.admin
            .assign_column(&mut *db.admin_connection().await, &column, "ssn")
            .await
            .unwrap();
    }
    let client = db.client().await;
    (db, client)
}

fn setting_of(column: &str) -> Option<&'static str> {
    ASSIGNMENTS
        .iter()
        .find(|(name, _)| *name == column)
        .map(|(_, setting)| *setting)
}

fn mode_of(setting: &str) -> Option<EncryptionMode> {
    SETTINGS
        .iter()
        .find(|(name, _)| *name == setting)
        .map(|(_, mode)| *mode)
}

/// The accepted answer in the corpus's notation, and anything in it that
/// disagrees with the catalog (setting, mode, key, type).
fn describe(explanation: &Explanation, key_id: u32) -> (Vec<String>, Vec<String>, Vec<String>) {
    let mut problems = Vec::new();
    let parameters = explanation
        .parameters
        .iter()
        .enumerate()
        .map(|(index, parameter)| {
            if parameter.number != index + 1 {
                problems.push(format!(
                    "parameter {} numbered {}",
                    index + 1,
                    parameter.number
                ));
            }
            let Some(encryption) = &parameter.encryption else {
                return PLAIN.to_owned();
            };
            let column = encryption.column.to_string();
            if setting_of(&column) != Some(encryption.setting.as_str()) {
                problems.push(format!(
                    "${} encrypted under setting {:?}, but {column} is assigned {:?}",
                    parameter.number,
                    encryption.setting,
                    setting_of(&column)
                ));
            }
            if mode_of(&encryption.setting) != Some(encryption.mode)
                || encryption.key_id != key_id
                || encryption.plaintext_type != "text"
            {
                problems.push(format!(
                    "${}: mode {}, key {}, type {} (expected key {key_id}, type text)",
                    parameter.number, encryption.mode, encryption.key_id, encryption.plaintext_type
                ));
            }
            format!("{column}:{:?}:{}", encryption.usage, encryption.setting)
        })
        .collect();
    let columns = explanation
        .columns
        .iter()
        .map(|result| match &result.decryption {
            ColumnDecryption::Plaintext => PLAIN.to_owned(),
            ColumnDecryption::Refused { .. } => REFUSED.to_owned(),
            ColumnDecryption::Decrypted { column, setting } => {
                let (mode, plaintext_type) = (setting.cell.mode, setting.type_name());
                if mode_of(&setting.name) != Some(mode) || plaintext_type != "text" {
                    problems.push(format!(
                        "result column {:?} read as setting {:?}, {mode}, {plaintext_type}",
                        result.name, setting.name
                    ));
                }
                match column {
                    Some(column) => {
                        let column = column.to_string();
                        if setting_of(&column) != Some(setting.name.as_str()) {
                            problems.push(format!(
                                "result column {:?} from {column} read as setting {:?}",
                                result.name, setting.name
                            ));
                        }
                        column
                    }
                    None => format!("setting:{}", setting.name),
                }
            }
            _ => "unknown".to_owned(),
        })
        .collect();
    (parameters, columns, problems)
}

/// The single-quoted literals of `sql`: values a message must never quote.
fn literals(sql: &str) -> Vec<&str> {
    sql.split('\'')
        .skip(1)
        .step_by(2)
        .filter(|literal| !literal.is_empty())
        .collect()
}

/// Whether `refusal` is the one expected; the names its message must contain.
fn refusal_matches(expected: Refused, refusal: &Refusal) -> Option<Vec<String>> {
    let allowed_for = |column: &str| {
        setting_of(column).and_then(mode_of).map(|mode| {
            let allowed = if mode == Deterministic {
                DETERMINISTIC_ALLOWED
            } else {
                RANDOMIZED_ALLOWED
            };
            (mode, allowed)
        })
    };
    let matches = match (expected, refusal) {
        (
            NotAllowed(column, part),
            Refusal::NotAllowed {
                column: actual,
                mode,
                attempted,
                allowed,
            },
        ) => {
            actual.to_string() == column
                && allowed_for(column) == Some((*mode, *allowed))
                && attempted.contains(part)
        }
        (SettingMismatch(one, other), Refusal::SettingMismatch { left, right, .. }) => {
            let (left, right) = (left.0.to_string(), right.0.to_string());
            (left == one && right == other) || (left == other && right == one)
        }
        (
            UnsupportedShape(table, part),
            Refusal::UnsupportedShape {
                shape,
                table: actual,
            },
        ) => actual.to_string() == table && shape.contains(part),
        (
            Unresolved(table, part),
            Refusal::Unresolved {
                what,
                table: actual,
            },
        ) => actual.to_string() == table && what.contains(part),
        (ParameterConflict(number), Refusal::ParameterConflict { parameter, .. }) => {
            *parameter == number
        }
        (
            UnassignedCiphertext(column),
            refusal @ Refusal::UnusableColumn { column: actual, .. },
        ) => {
            actual.to_string() == column
                && refusal.to_string().contains(UNUSABLE_CIPHERTEXT_ALLOWED)
        }
        (Unparsable, Refusal::Unparsable { .. }) => true,
        _ => false,
    };
    matches.then(|| match expected {
        NotAllowed(column, _) | UnassignedCiphertext(column) => vec![column.to_owned()],
        SettingMismatch(one, other) => vec![one.to_owned(), other.to_owned()],
        UnsupportedShape(table, _) | Unresolved(table, _) => vec![table.to_owned()],
        ParameterConflict(number) | CrossCheck(number) => vec![format!("${number}")],
        Unparsable | Database(_) => Vec::new(),
    })
}

/// What is wrong with `actual` for `sql`, if anything.
fn mismatch(
    sql: &str,
    expected: Expected,
    actual: &Result<Explanation, Error>,
    key_id: u32,
) -> Option<String> {
    let answered = match actual {
        Ok(explanation) => {
            let (parameters, columns, problems) = describe(explanation, key_id);
            let text = format!("explains {parameters:?} columns {columns:?}");
            match expected {
                Expected::Explains {
                    parameters: want_parameters,
                    columns: want_columns,
                } if parameters == want_parameters && columns == want_columns => {
                    return (!problems.is_empty())
                        .then(|| format!("{sql}\n    {}", problems.join("; ")));
                }
                _ => text,
            }
        }
        Err(error) => {
            let message = error.to_string();
            let debug = format!("{error:?}");
            let names = match (expected, error) {
                (
                    Refuses(CrossCheck(number)),
                    Error::ParameterCrossCheck { number: actual, .. },
                ) if *actual == number => Some(vec![format!("${number}")]),
                (Refuses(Database(part)), Error::Database(_)) if message.contains(part) => {
                    Some(Vec::new())
                }
                (Refuses(refused), Error::Refused(refusal)) => refusal_matches(refused, refusal),
                _ => None,
            };
            match names {
                Some(names) => {
                    let mut problems: Vec<String> = names
                        .iter()
                        .filter(|name| !message.contains(name.as_str()))
                        .map(|name| format!("message does not name {name}"))
                        .collect();
                    problems.extend(
                        literals(sql)
                            .into_iter()
                            .filter(|literal| message.contains(literal) || debug.contains(literal))
                            .map(|literal| format!("error quotes the literal {literal:?}")),
                    );
                    return (!problems.is_empty())
                        .then(|| format!("{sql}\n    {}\n    {message}", problems.join("; ")));
                }
                None => format!("fails: {debug}\n    message: {message}"),
            }
        }
    };
    Some(format!(
        "{sql}\n    expected {expected:?}\n    actual   {answered}"
    ))
}

#[test]
fn the_corpus_covers_every_refusal_kind() {
    assert!(CORPUS.len() >= 45, "{} statements", CORPUS.len());
    let kinds: [fn(&Refused) -> bool; 9] = [
        |r| matches!(r, NotAllowed(..)),
        |r| matches!(r, SettingMismatch(..)),
        |r| matches!(r, UnsupportedShape(..)),
        |r| matches!(r, Unresolved(..)),
        |r| matches!(r, ParameterConflict(..)),
        |r| matches!(r, UnassignedCiphertext(..)),
        |r| matches!(r, Unparsable),
        |r| matches!(r, CrossCheck(..)),
        |r| matches!(r, Database(..)),
    ];
    for (index, kind) in kinds.iter().enumerate() {
        assert!(
            CORPUS
                .iter()
                .any(|(_, expected)| matches!(expected, Refuses(refused) if kind(refused))),
            "refusal kind {index} missing"
        );
    }
}

#[tokio::test]
async fn explain_gives_every_corpus_statement_its_expected_answer() {
    let (db, client) = schema().await;
    let mut failures = Vec::new();
    for (sql, expected) in CORPUS {
        let actual = client.explain(sql).await;
        if let Some(why) = mismatch(sql, *expected, &actual, db.key_id) {
            failures.push(why);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} statements:\n{}",
        failures.len(),
        CORPUS.len(),
        failures.join("\n")
    );
}

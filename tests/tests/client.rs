//! The transparent client against a real PostgreSQL.
#![allow(clippy::unwrap_used)] // a test fails by panicking

use aepg::cell::EncryptionMode::{Deterministic, Randomized};
use aepg::types::ToSql;
use aepg::{Client, Error};
use aepg_tests::fixture::EncryptedDatabase;
use futures_util::TryStreamExt;

/// A `patients` table: deterministic ssn, randomized diagnosis, plaintext name;
/// and `visits` sharing the ssn setting, plus `badges` with another deterministic setting.
async fn clinic(label: &str) -> (EncryptedDatabase, Client) {
    let db = EncryptedDatabase::new(label).await;
    db.setting("ssn", "text", Deterministic).await;
    db.setting("diagnosis", "text", Randomized).await;
    db.setting("badge", "text", Deterministic).await;
    db.table(
        "CREATE TABLE patients (id int PRIMARY KEY, name text, ssn aepg.ciphertext UNIQUE, diagnosis aepg.ciphertext);
         CREATE TABLE visits (id serial PRIMARY KEY, patient_ssn aepg.ciphertext, note text);
         CREATE TABLE badges (id int, code aepg.ciphertext);",
        &[
            ("patients", "ssn", "ssn"),
            ("patients", "diagnosis", "diagnosis"),
            ("visits", "patient_ssn", "ssn"),
            ("badges", "code", "badge"),
        ],
    )
    .await;
    let client = db.client().await;
    for (id, name, ssn, diagnosis) in [
        (1, "Ada", "111-11-1111", "asthma"),
        (2, "Grace", "222-22-2222", "flu"),
        (3, "Alan", "333-33-3333", "asthma"),
    ] {
        client
            .execute(
                "INSERT INTO patients (id, name, ssn, diagnosis) VALUES ($1, $2, $3, $4)",
                &[&id, &name, &ssn, &diagnosis],
            )
            .await
            .unwrap();
    }
    client
        .execute(
            "INSERT INTO visits (patient_ssn, note) VALUES ($1, 'checkup'), ($2, 'follow-up')",
            &[&"111-11-1111", &"333-33-3333"],
        )
        .await
        .unwrap();
    (db, client)
}

async fn ids(client: &Client, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Vec<i32> {
    let mut ids: Vec<i32> = client
        .query(sql, params)
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    ids.sort_unstable();
    ids
}

#[tokio::test]
async fn the_server_holds_only_ciphertext_and_the_application_reads_plaintext() {
    let (db, client) = clinic("roundtrip").await;
    let row = client
        .query_one(
            "SELECT name, ssn, diagnosis FROM patients WHERE id = $1",
            &[&1],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "Ada");
    assert_eq!(row.get::<_, String>("ssn"), "111-11-1111");
    assert_eq!(row.get::<_, &str>("diagnosis"), "asthma");

    let stored = db
        .plain
        .query_one(
            "SELECT ssn::bytea, diagnosis::bytea FROM patients WHERE id = 1",
            &[],
        )
        .await
        .unwrap();
    for index in 0..2 {
        let cell: Vec<u8> = stored.get(index);
        assert_eq!(cell[0], 1, "format version");
        assert!(!String::from_utf8_lossy(&cell).contains("111-11"));
        assert!(!String::from_utf8_lossy(&cell).contains("asthma"));
    }
}

#[tokio::test]
async fn equality_in_any_and_joins_on_deterministic_columns_return_exactly_the_right_rows() {
    let (_db, client) = clinic("equality").await;
    assert_eq!(
        ids(
            &client,
            "SELECT id FROM patients WHERE ssn = $1",
            &[&"222-22-2222"]
        )
        .await,
        [2]
    );
    assert_eq!(
        ids(
            &client,
            "SELECT id FROM patients WHERE ssn <> $1",
            &[&"222-22-2222"]
        )
        .await,
        [1, 3]
    );
    assert_eq!(
        ids(
            &client,
            "SELECT id FROM patients WHERE ssn IN ($1, $2)",
            &[&"111-11-1111", &"333-33-3333"]
        )
        .await,
        [1, 3]
    );
    let wanted = vec!["333-33-3333".to_owned(), "999-99-9999".to_owned()];
    assert_eq!(
        ids(
            &client,
            "SELECT id FROM patients WHERE ssn = ANY($1)",
            &[&wanted]
        )
        .await,
        [3]
    );
    assert_eq!(
        ids(
            &client,
            "SELECT p.id FROM patients p JOIN visits v ON v.patient_ssn = p.ssn",
            &[]
        )
        .await,
        [1, 3]
    );
    assert_eq!(
        ids(
            &client,
            "SELECT id FROM patients WHERE ssn = $1",
            &[&"nobody"]
        )
        .await,
        Vec::<i32>::new()
    );
    let counts = client
        .query("SELECT ssn, count(*) FROM visits v JOIN patients p ON p.ssn = v.patient_ssn GROUP BY ssn", &[])
        .await;
    // GROUP BY a deterministic column works (its cells are equal when the values are).
    let counts = counts.unwrap();
    assert_eq!(counts.len(), 2);
}

#[tokio::test]
async fn unique_on_a_deterministic_column_is_enforced_by_the_server() {
    let (_db, client) = clinic("unique").await;
    let err = client
        .execute(
            "INSERT INTO patients (id, ssn) VALUES ($1, $2)",
            &[&9, &"111-11-1111"],
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("duplicate key"), "{err}");
}

#[tokio::test]
async fn update_delete_returning_and_on_conflict() {
    let (_db, client) = clinic("writes").await;
    let row = client
        .query_one(
            "UPDATE patients SET diagnosis = $1 WHERE ssn = $2 RETURNING diagnosis, ssn",
            &[&"cured", &"222-22-2222"],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "cured");
    assert_eq!(row.get::<_, String>(1), "222-22-2222");
    client
        .execute(
            "INSERT INTO patients (id, ssn, diagnosis) VALUES ($1, $2, $3)
             ON CONFLICT (ssn) DO UPDATE SET diagnosis = EXCLUDED.diagnosis",
            &[&10, &"333-33-3333", &"measles"],
        )
        .await
        .unwrap();
    let row = client
        .query_one(
            "SELECT id, diagnosis FROM patients WHERE ssn = $1",
            &[&"333-33-3333"],
        )
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, i32>(0), row.get::<_, String>(1)),
        (3, "measles".to_owned())
    );
    assert_eq!(
        client
            .execute("DELETE FROM patients WHERE ssn = $1", &[&"111-11-1111"])
            .await
            .unwrap(),
        1
    );
    assert_eq!(ids(&client, "SELECT id FROM patients", &[]).await, [2, 3]);
}

/// Each refused statement: the error names the column and what is allowed,
/// and nothing reached the table.
#[tokio::test]
async fn refusals_name_the_column_and_write_nothing() {
    let (db, client) = clinic("refusals").await;
    let before: i64 = db
        .plain
        .query_one("SELECT count(*) FROM patients", &[])
        .await
        .unwrap()
        .get(0);
    let refused: [(&str, &[&(dyn ToSql + Sync)], &str); 8] = [
        (
            "INSERT INTO patients (id, ssn) VALUES (50, '555-55-5555')",
            &[],
            "public.patients.ssn",
        ),
        (
            "UPDATE patients SET diagnosis = 'x' WHERE id = $1",
            &[&1],
            "public.patients.diagnosis",
        ),
        (
            "SELECT id FROM patients WHERE ssn LIKE $1",
            &[&"1%"],
            "public.patients.ssn",
        ),
        (
            "SELECT id FROM patients WHERE ssn > $1",
            &[&"1"],
            "public.patients.ssn",
        ),
        (
            "SELECT id FROM patients WHERE lower(ssn) = $1",
            &[&"1"],
            "public.patients.ssn",
        ),
        (
            "SELECT id FROM patients ORDER BY ssn",
            &[],
            "public.patients.ssn",
        ),
        (
            "SELECT id FROM patients WHERE diagnosis = $1",
            &[&"flu"],
            "public.patients.diagnosis",
        ),
        (
            "SELECT p.id FROM patients p JOIN badges b ON b.code = p.ssn",
            &[],
            "ssn",
        ),
    ];
    for (sql, params, column) in refused {
        let err = client.query(sql, params).await.unwrap_err();
        assert!(matches!(err, Error::Refused(_)), "{sql}: {err}");
        let message = err.to_string();
        assert!(message.contains(column), "{sql}: {message}");
    }
    let err = client
        .batch_execute("INSERT INTO patients (id, ssn) VALUES (51, '555-55-5555')")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Refused(_)), "{err}");
    let after: i64 = db
        .plain
        .query_one("SELECT count(*) FROM patients", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(before, after);
    // A statement on plaintext columns only is not affected.
    client
        .batch_execute("UPDATE patients SET name = upper(name)")
        .await
        .unwrap();
}

#[tokio::test]
async fn a_value_of_the_wrong_rust_type_is_refused_before_sending() {
    let (db, client) = clinic("wrong_type").await;
    let err = client
        .execute(
            "INSERT INTO patients (id, ssn) VALUES ($1, $2)",
            &[&60, &60i64],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::ParameterType { number: 2, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("public.patients.ssn"), "{err}");
    let count: i64 = db
        .plain
        .query_one("SELECT count(*) FROM patients WHERE id = 60", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 0);
}

#[tokio::test]
async fn a_tampered_cell_fails_to_read_naming_its_column() {
    let (db, client) = clinic("tamper").await;
    db.plain
        .batch_execute("UPDATE patients SET diagnosis = set_byte(diagnosis::bytea, 30, get_byte(diagnosis::bytea, 30) # 1)::aepg.ciphertext WHERE id = 2")
        .await
        .unwrap();
    let row = client
        .query_one("SELECT name, diagnosis FROM patients WHERE id = 2", &[])
        .await
        .unwrap();
    assert_eq!(
        row.get::<_, String>(0),
        "Grace",
        "other columns stay readable"
    );
    let err = row.try_get::<_, String>(1).unwrap_err();
    assert!(matches!(err, Error::Decrypt { .. }), "{err}");
    assert!(
        err.to_string().contains("public.patients.diagnosis"),
        "{err}"
    );
    assert!(err.to_string().contains("altered"), "{err}");
}

#[tokio::test]
async fn a_cell_copied_into_another_column_fails_to_read() {
    let (db, client) = clinic("copy").await;
    // Same key, other setting: the badge column must not accept an ssn cell.
    db.plain
        .batch_execute("INSERT INTO badges (id, code) SELECT id, ssn FROM patients WHERE id = 1")
        .await
        .unwrap();
    let row = client
        .query_one("SELECT code FROM badges WHERE id = 1", &[])
        .await
        .unwrap();
    let err = row.try_get::<_, String>(0).unwrap_err();
    assert!(
        err.to_string().contains("ciphertext from another column"),
        "{err}"
    );
    // Copied into a column of the same setting, it is the same value: allowed by design.
    db.plain
        .batch_execute("INSERT INTO visits (patient_ssn, note) SELECT ssn, 'copied' FROM patients WHERE id = 2")
        .await
        .unwrap();
    let row = client
        .query_one("SELECT patient_ssn FROM visits WHERE note = 'copied'", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "222-22-2222");
}

/// A view column is decrypted only under a setting a signed record gives
/// it: without one its cells are refused (a redefined view could otherwise
/// swap two columns' values unnoticed); `UNION` branches decrypt under the
/// setting the analysis found for every branch.
#[tokio::test]
async fn view_columns_decrypt_only_under_a_signed_setting() {
    let (db, client) = clinic("views").await;
    db.plain
        .batch_execute(
            "CREATE VIEW patient_ssns AS SELECT id, coalesce(ssn, ssn) AS ssn FROM patients;
             CREATE VIEW patient_diagnoses AS SELECT id, diagnosis FROM patients",
        )
        .await
        .unwrap();
    db.admin
        .assign_column(
            &mut *db.admin_connection().await,
            &aepg::ColumnName::new("public", "patient_ssns", "ssn"),
            "ssn",
        )
        .await
        .unwrap();
    let row = client
        .query_one("SELECT ssn FROM patient_ssns WHERE id = $1", &[&3])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "333-33-3333");
    let row = client
        .query_one(
            "SELECT ssn FROM patient_ssns WHERE ssn = $1",
            &[&"222-22-2222"],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "222-22-2222");
    // No assignment: the cell is refused, though its header names a setting.
    let row = client
        .query_one(
            "SELECT diagnosis FROM patient_diagnoses WHERE id = $1",
            &[&1],
        )
        .await
        .unwrap();
    let err = row.try_get::<_, String>(0).unwrap_err();
    assert!(
        err.to_string()
            .contains("no verified encryption assignment"),
        "{err}"
    );
    // The view redefined to show another setting's column under the
    // assigned name: its cells carry the wrong setting and are refused.
    db.plain
        .batch_execute(
            "CREATE OR REPLACE VIEW patient_ssns AS SELECT id, diagnosis AS ssn FROM patients",
        )
        .await
        .unwrap();
    let row = client
        .query_one("SELECT ssn FROM patient_ssns WHERE id = $1", &[&1])
        .await
        .unwrap();
    let err = row.try_get::<_, String>(0).unwrap_err();
    assert!(
        err.to_string().contains("ciphertext from another column"),
        "{err}"
    );
    let rows = client
        .query("SELECT ssn FROM patients WHERE id = 1 UNION ALL SELECT patient_ssn FROM visits WHERE note = 'follow-up'", &[])
        .await
        .unwrap();
    let mut values: Vec<String> = rows.iter().map(|row| row.get(0)).collect();
    values.sort();
    assert_eq!(values, ["111-11-1111", "333-33-3333"]);
}

#[tokio::test]
async fn nulls_stay_null() {
    let (db, client) = clinic("nulls").await;
    client
        .execute(
            "INSERT INTO patients (id, ssn, diagnosis) VALUES ($1, $2, $3)",
            &[&70, &None::<&str>, &None::<String>],
        )
        .await
        .unwrap();
    let row = client
        .query_one("SELECT ssn, diagnosis FROM patients WHERE id = 70", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, Option<String>>(0), None);
    assert_eq!(row.get::<_, Option<String>>(1), None);
    assert!(row.try_get::<_, String>(0).is_err());
    let nulls: i64 = db
        .plain
        .query_one(
            "SELECT count(*) FROM patients WHERE id = 70 AND ssn IS NULL AND diagnosis IS NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(nulls, 1);
    assert_eq!(
        ids(
            &client,
            "SELECT id FROM patients WHERE diagnosis IS NULL",
            &[]
        )
        .await,
        [70]
    );
}

#[tokio::test]
async fn transactions_roll_back_and_nest() {
    let (_db, mut client) = clinic("transactions").await;
    {
        let transaction = client.transaction().await.unwrap();
        transaction
            .execute(
                "INSERT INTO patients (id, ssn) VALUES ($1, $2)",
                &[&80, &"800-00-0000"],
            )
            .await
            .unwrap();
        assert_eq!(ids_in(&transaction, "800-00-0000").await, [80]);
        transaction.rollback().await.unwrap();
    }
    assert_eq!(
        ids(
            &client,
            "SELECT id FROM patients WHERE ssn = $1",
            &[&"800-00-0000"]
        )
        .await,
        Vec::<i32>::new()
    );

    let mut transaction = client.transaction().await.unwrap();
    transaction
        .execute(
            "INSERT INTO patients (id, ssn) VALUES ($1, $2)",
            &[&81, &"810-00-0000"],
        )
        .await
        .unwrap();
    let nested = transaction.transaction().await.unwrap();
    nested
        .execute(
            "INSERT INTO patients (id, ssn) VALUES ($1, $2)",
            &[&82, &"820-00-0000"],
        )
        .await
        .unwrap();
    nested.rollback().await.unwrap();
    transaction.commit().await.unwrap();
    assert_eq!(
        ids(&client, "SELECT id FROM patients WHERE id > 80", &[]).await,
        [81]
    );
}

async fn ids_in(transaction: &aepg::Transaction<'_>, ssn: &str) -> Vec<i32> {
    transaction
        .query("SELECT id FROM patients WHERE ssn = $1", &[&ssn])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

#[tokio::test]
async fn sixty_four_concurrent_queries_pipeline_on_one_client() {
    let (_db, client) = clinic("pipeline").await;
    let ssns = ["111-11-1111", "222-22-2222", "333-33-3333", "none"];
    let queries = (0..64).map(|i| {
        let client = &client;
        let ssn = ssns[i % 4];
        async move {
            let rows = client
                .query("SELECT id, ssn FROM patients WHERE ssn = $1", &[&ssn])
                .await
                .unwrap();
            (
                i,
                rows.iter()
                    .map(|row| row.get::<_, String>(1))
                    .collect::<Vec<_>>(),
            )
        }
    });
    let results = futures_util::future::join_all(queries).await;
    assert_eq!(results.len(), 64);
    for (i, found) in results {
        let ssn = ssns[i % 4];
        let expected: Vec<String> = if ssn == "none" {
            vec![]
        } else {
            vec![ssn.to_owned()]
        };
        assert_eq!(found, expected, "query {i}");
    }
}

#[tokio::test]
async fn prepared_statements_and_streams() {
    let (_db, client) = clinic("prepared").await;
    let statement = client
        .prepare("SELECT id, diagnosis FROM patients WHERE ssn = $1")
        .await
        .unwrap();
    for (ssn, id) in [("111-11-1111", 1), ("333-33-3333", 3)] {
        let row = client.query_one(&statement, &[&ssn]).await.unwrap();
        assert_eq!(row.get::<_, i32>(0), id);
    }
    let stream = client
        .query_raw("SELECT diagnosis FROM patients ORDER BY id", &[])
        .await
        .unwrap();
    let rows: Vec<aepg::Row> = stream.try_collect().await.unwrap();
    let diagnoses: Vec<String> = rows.iter().map(|row| row.get(0)).collect();
    assert_eq!(diagnoses, ["asthma", "flu", "asthma"]);
}

#[tokio::test]
async fn explain_names_targets_and_decryptions() {
    let (_db, client) = clinic("explain").await;
    let explanation = client
        .explain("SELECT name, ssn FROM patients WHERE ssn = $1 AND id = $2")
        .await
        .unwrap();
    let first = explanation.parameters[0].encryption.as_ref().unwrap();
    assert_eq!(first.column.to_string(), "public.patients.ssn");
    assert_eq!((first.setting.as_str(), first.mode), ("ssn", Deterministic));
    assert!(explanation.parameters[1].encryption.is_none());
    assert_eq!(
        explanation.columns[0].decryption,
        aepg::ColumnDecryption::Plaintext
    );
    assert!(matches!(
        explanation.columns[1].decryption,
        aepg::ColumnDecryption::Decrypted { .. }
    ));
    let text = explanation.to_string();
    assert!(
        text.contains("$1") && text.contains("public.patients.ssn"),
        "{text}"
    );

    let err = client
        .explain("SELECT id FROM patients ORDER BY diagnosis")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("ORDER BY"), "{err}");
}

#[tokio::test]
async fn one_catalog_load_serves_every_client_of_an_encryption_state() {
    let (db, _client) = clinic("shared_catalog").await;
    let encryption = db.encryption_with(|config| config);
    let first = db.client_with(encryption.clone()).await;
    first.query("SELECT ssn FROM patients", &[]).await.unwrap();
    let verifications = db.store.operation_counts().verify;
    let unwraps = db.store.operation_counts().unwrap;
    for _ in 0..3 {
        let other = db.client_with(encryption.clone()).await;
        other
            .query("SELECT ssn FROM patients WHERE ssn = $1", &[&"111-11-1111"])
            .await
            .unwrap();
    }
    assert_eq!(
        db.store.operation_counts().verify,
        verifications,
        "no catalog reload"
    );
    assert_eq!(db.store.operation_counts().unwrap, unwraps, "no key unwrap");
}

#[tokio::test]
async fn a_zero_key_ttl_asks_the_key_store_every_time_and_a_revoked_key_cuts_readers_off() {
    let (db, _client) = clinic("key_ttl").await;
    let client = db
        .client_with(db.encryption_with(|config| config.key_ttl(std::time::Duration::ZERO)))
        .await;
    client.query("SELECT ssn FROM patients", &[]).await.unwrap();
    let unwraps = db.store.operation_counts().unwrap;
    client.query("SELECT ssn FROM patients", &[]).await.unwrap();
    assert!(db.store.operation_counts().unwrap > unwraps);

    assert!(db.store.remove_key(&db.master_key.key_path));
    let rows = client
        .query("SELECT ssn FROM patients WHERE id = 1", &[])
        .await
        .unwrap();
    let err = rows[0].try_get::<_, String>(0).unwrap_err();
    assert!(err.to_string().contains("public.patients.ssn"), "{err}");
}

/// A key store that fails is asked once for a statement's first run (not
/// once ahead of the run and again for its parameter), and not again
/// until the failure backoff has passed; with no backoff, every use asks.
#[tokio::test]
async fn a_failing_key_store_is_asked_once_then_rested_for_the_failure_backoff() {
    use std::time::Duration;
    let (db, _client) = clinic("key_failure_backoff").await;
    // A backoff no run of this test outlasts, and a short one to wait out.
    let rested = db.encryption_with(|config| config.key_failure_backoff(Duration::from_secs(60)));
    let client = db.client_with(rested).await;
    let short = Duration::from_millis(300);
    let brief = db
        .client_with(db.encryption_with(|config| config.key_failure_backoff(short)))
        .await;
    let eager = db
        .client_with(db.encryption_with(|config| config.key_failure_backoff(Duration::ZERO)))
        .await;
    let pooled = db.encryption_with(|config| config.key_failure_backoff(Duration::from_secs(60)));
    let mut pool = Vec::new();
    for _ in 0..4 {
        pool.push(db.client_with(pooled.clone()).await);
    }
    for client in [&client, &brief, &eager].into_iter().chain(&pool) {
        // The catalog is loaded and verified; no column key is unwrapped.
        client.query("SELECT id FROM patients", &[]).await.unwrap();
    }
    assert!(db.store.remove_key(&db.master_key.key_path));
    // What asking for the key costs the store depends on the store (a
    // signature check, an unwrap): counted as both.
    let asks = || {
        let counts = db.store.operation_counts();
        counts.verify + counts.unwrap
    };
    async fn fails(client: &Client) {
        let err = client
            .query("SELECT id FROM patients WHERE ssn = $1", &[&"111-11-1111"])
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("public.patients.ssn")
                && err.to_string().contains("is unavailable"),
            "{err}"
        );
    }

    // One ask, measured on a prepared statement without a backoff.
    fails(&eager).await;
    let before = asks();
    fails(&eager).await;
    let one_ask = asks() - before;
    assert!(one_ask > 0);

    let before = asks();
    fails(&client).await;
    assert_eq!(
        asks() - before,
        one_ask,
        "one ask for the statement's first run"
    );
    let before = asks();
    fails(&client).await;
    assert_eq!(asks(), before, "no ask within the backoff");

    // A pool's connections needing the key at once: one ask answers all.
    let before = asks();
    futures_util::future::join_all(pool.iter().map(fails)).await;
    assert_eq!(asks() - before, one_ask, "one ask for the pool");

    // After the backoff, the store is asked again.
    fails(&brief).await;
    tokio::time::sleep(short + Duration::from_millis(100)).await;
    let before = asks();
    fails(&brief).await;
    assert_eq!(asks() - before, one_ask, "asked again after the backoff");
}

/// A parameter the analysis cannot trace (it disappears into a function)
/// but that the server types as `aepg.ciphertext` is refused, not sent as
/// plaintext: the cross-check (docs/DESIGN.md, "The client pipeline", step 4).
#[tokio::test]
async fn the_cross_check_refuses_a_parameter_the_analysis_could_not_trace() {
    let (db, client) = clinic("cross_check").await;
    db.plain
        .batch_execute(
            "CREATE FUNCTION put_ssn(v aepg.ciphertext) RETURNS void
             LANGUAGE sql AS 'INSERT INTO patients (id, ssn) VALUES (99, v)'",
        )
        .await
        .unwrap();
    let err = client
        .query("SELECT put_ssn($1)", &[&"999-99-9999"])
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::ParameterCrossCheck { number: 1, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("aepg.ciphertext"), "{err}");
    let count: i64 = db
        .plain
        .query_one("SELECT count(*) FROM patients WHERE id = 99", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 0);
}

/// A table of the same name earlier on the search path must not receive
/// what is meant for the encrypted one: the name is refused as ambiguous.
#[tokio::test]
async fn a_shadowing_table_on_the_search_path_is_refused() {
    let (db, _client) = clinic("shadow").await;
    let database = db.database.name().to_owned();
    db.plain
        .batch_execute(&format!(
            "CREATE SCHEMA shadow; CREATE TABLE shadow.patients (id int, ssn text);
             ALTER DATABASE \"{database}\" SET search_path = shadow, public"
        ))
        .await
        .unwrap();
    let client = db.client().await; // a new connection: it gets the new search path
    let err = client
        .execute(
            "INSERT INTO patients (id, ssn) VALUES ($1, $2)",
            &[&7, &"777-77-7777"],
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Refused(_)), "{err}");
    assert!(err.to_string().contains("public.patients"), "{err}");
    let leaked: i64 = db
        .plain
        .query_one("SELECT count(*) FROM shadow.patients", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(leaked, 0);
    // Qualified names still work.
    client
        .execute(
            "INSERT INTO public.patients (id, ssn) VALUES ($1, $2)",
            &[&7, &"777-77-7777"],
        )
        .await
        .unwrap();
}

/// `SET search_path` through the client makes it read the path again.
#[tokio::test]
async fn changing_the_search_path_is_noticed() {
    let (db, client) = clinic("set_path").await;
    db.plain
        .batch_execute("CREATE SCHEMA other; CREATE TABLE other.notes (id int, body text)")
        .await
        .unwrap();
    client.refresh_catalog().await.unwrap();
    assert_eq!(
        ids(
            &client,
            "SELECT id FROM patients WHERE ssn = $1",
            &[&"111-11-1111"]
        )
        .await,
        [1]
    );
    client
        .batch_execute("SET search_path = other")
        .await
        .unwrap();
    // `patients` is no longer on the path: the client knows, and refuses
    // rather than treating ssn as a plaintext column.
    let err = client
        .query("SELECT id FROM patients WHERE ssn = $1", &[&"111-11-1111"])
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Refused(_)), "{err}");
    client
        .execute("INSERT INTO notes VALUES ($1, $2)", &[&1, &"plain"])
        .await
        .unwrap();
}

/// A ciphertext column whose assignment was deleted does not hand out the
/// cells that were copied into it.
#[tokio::test]
async fn cells_of_a_column_without_an_assignment_are_refused() {
    let (db, client) = clinic("unassigned").await;
    db.plain
        .batch_execute(
            "ALTER TABLE patients ADD COLUMN notes aepg.ciphertext;
             UPDATE patients SET notes = ssn WHERE id = 1",
        )
        .await
        .unwrap();
    client.refresh_catalog().await.unwrap();
    let row = client
        .query_one("SELECT notes FROM patients WHERE id = 1", &[])
        .await
        .unwrap();
    let err = row.try_get::<_, String>(0).unwrap_err();
    assert!(
        err.to_string()
            .contains("no verified encryption assignment"),
        "{err}"
    );
    let row = client
        .query_one("SELECT notes FROM patients WHERE id = 2", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, Option<String>>(0), None);
}

/// A column encrypted after a statement was prepared (an administrator's
/// change, announced on the catalog channel) never receives plaintext from
/// that statement: a client that hears the announcement, and one that
/// cannot (its connection not driven by aepg), both analyze it again first.
#[tokio::test]
async fn a_column_encrypted_after_a_statement_was_prepared_never_receives_plaintext() {
    let db = EncryptedDatabase::new("encrypted_later").await;
    db.setting("email", "text", Deterministic).await;
    db.table("CREATE TABLE people (id int, email text)", &[])
        .await;
    let tap = aepg_tests::WireTap::start(&db.database.config()).await;
    let routed = tap.route(&db.database.config());
    let watched = db
        .client_at(&routed, db.encryption_with(|config| config))
        .await;
    let (inner, connection) = routed.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let unwatched = Client::new(inner, db.encryption_with(|config| config));
    let insert = "INSERT INTO people (id, email) VALUES ($1, $2)";
    for client in [&watched, &unwatched] {
        client
            .execute(insert, &[&0, &"before@example.org"])
            .await
            .unwrap();
    }
    // The administrator encrypts the (emptied) column.
    db.plain
        .batch_execute(
            "DELETE FROM people;
             ALTER TABLE people ALTER COLUMN email TYPE aepg.ciphertext USING NULL",
        )
        .await
        .unwrap();
    db.admin
        .assign_column(
            &mut *db.admin_connection().await,
            &aepg::ColumnName::new("public", "people", "email"),
            "email",
        )
        .await
        .unwrap();
    // Announcements arrive between transactions, a moment after the commit.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    for (id, client, secret) in [
        (1, &watched, "watched-SECRET@example.org"),
        (2, &unwatched, "unwatched-SECRET@example.org"),
    ] {
        client.execute(insert, &[&id, &secret]).await.unwrap();
        let row = client
            .query_one("SELECT email FROM people WHERE email = $1", &[&secret])
            .await
            .unwrap();
        assert_eq!(row.get::<_, &str>(0), secret);
        assert!(!tap.saw(secret.as_bytes()), "{secret} reached the server");
    }
    assert!(
        tap.saw(b"before@example.org"),
        "the tap sees plaintext columns"
    );
}

/// EXPLAIN's plan lines read as text; its parameters are encrypted.
#[tokio::test]
async fn explain_plans_read_as_text() {
    let (_db, client) = clinic("explain_rows").await;
    for sql in [
        "EXPLAIN SELECT id FROM patients WHERE ssn = $1",
        "EXPLAIN (FORMAT JSON) SELECT * FROM patients WHERE ssn = $1",
    ] {
        let rows = client.query(sql, &[&"111-11-1111"]).await.unwrap();
        assert!(!rows.is_empty(), "{sql}");
        let line: String = rows[0].try_get(0).unwrap_or_else(|error| {
            let json: serde_json::Value = rows[0].get(0);
            drop(error);
            json.to_string()
        });
        assert!(
            line.contains("patients") || line.contains("Scan"),
            "{sql}: {line}"
        );
    }
}

/// The ciphertext equality operators make the server type a compared
/// parameter aepg.ciphertext, and keep indexes and hash joins.
#[tokio::test]
async fn ciphertext_equality_keeps_indexes_and_hash_joins() {
    let (db, client) = clinic("operators").await;
    let explanation = client
        .explain("SELECT id FROM patients WHERE ssn = $1")
        .await
        .unwrap();
    assert_eq!(explanation.parameters[0].server_type, "ciphertext");
    let plan = |sql: &'static str| {
        let plain = &db.plain;
        async move {
            plain
                .simple_query(sql)
                .await
                .unwrap()
                .into_iter()
                .filter_map(|message| match message {
                    tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
                    _ => None,
                })
                .collect::<Vec<_>>()
                .join("\n")
        }
    };
    db.plain
        .batch_execute(
            "SET enable_seqscan = off; SET enable_mergejoin = off; SET enable_nestloop = off",
        )
        .await
        .unwrap();
    let index =
        plan("EXPLAIN SELECT id FROM patients WHERE ssn = '\\x0101'::aepg.ciphertext").await;
    assert!(index.contains("Index"), "{index}");
    let join =
        plan("EXPLAIN SELECT p.id FROM patients p JOIN visits v ON v.patient_ssn = p.ssn").await;
    assert!(join.contains("Hash Join"), "{join}");
}

#[tokio::test]
async fn query_opt_and_query_one_count_rows() {
    let (_db, client) = clinic("client_row_counts").await;
    let by_diagnosis = "SELECT id FROM patients WHERE name = $1";
    let none = client.query_opt(by_diagnosis, &[&"Nobody"]).await.unwrap();
    assert!(none.is_none());
    let one = client.query_opt(by_diagnosis, &[&"Ada"]).await.unwrap();
    assert_eq!(one.unwrap().get::<_, i32>("id"), 1);
    let error = client
        .query_opt("SELECT id FROM patients", &[])
        .await
        .unwrap_err();
    assert!(matches!(error, Error::RowCount { got: 2, .. }), "{error}");
    let error = client
        .query_one(by_diagnosis, &[&"Nobody"])
        .await
        .unwrap_err();
    assert!(matches!(error, Error::RowCount { got: 0, .. }), "{error}");
    // The connection is fine afterwards.
    assert_eq!(
        client.query(by_diagnosis, &[&"Grace"]).await.unwrap().len(),
        1
    );
}

/// A patient read by column names, encrypted columns decrypted.
#[derive(Debug, PartialEq)]
struct Patient {
    id: i32,
    name: String,
    ssn: String,
    condition: Option<String>,
}

aepg::from_row!(Patient { id, name, ssn, condition = "diagnosis" });

#[tokio::test]
async fn rows_decode_into_structs_by_column_name() {
    let (_db, client) = clinic("client_from_row").await;
    let patients: Vec<Patient> = client
        .query(
            "SELECT id, name, ssn, diagnosis FROM patients WHERE ssn = $1",
            &[&"222-22-2222"],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.decode().unwrap())
        .collect();
    assert_eq!(
        patients,
        [Patient {
            id: 2,
            name: "Grace".to_owned(),
            ssn: "222-22-2222".to_owned(),
            condition: Some("flu".to_owned()),
        }]
    );
    // A column the struct needs and the result lacks.
    let row = client
        .query_one("SELECT id, name, ssn FROM patients WHERE id = 2", &[])
        .await
        .unwrap();
    let error = row.decode::<Patient>().unwrap_err();
    assert!(matches!(error, Error::NoSuchColumn { .. }), "{error}");
    // The connection's cancel token is tokio-postgres's.
    let _token = client.cancel_token();
}

#[tokio::test]
async fn declared_parameter_types_are_checked_against_encrypted_columns() {
    use aepg::types::Type;
    let (db, client) = clinic("client_typed").await;
    let statement = client
        .prepare_typed(
            "INSERT INTO patients (id, name, ssn) VALUES ($1, $2, $3)",
            &[Type::INT4, Type::TEXT, Type::TEXT],
        )
        .await
        .unwrap();
    client
        .execute(&statement, &[&9, &"Kurt", &"999-99-9999"])
        .await
        .unwrap();
    let rows = client
        .query_typed(
            "SELECT name FROM patients WHERE ssn = $1",
            &[(&"999-99-9999", Type::TEXT)],
        )
        .await
        .unwrap();
    assert_eq!(rows[0].get::<_, &str>("name"), "Kurt");
    // A plaintext parameter declared otherwise than the server would infer.
    let rows = client
        .query_typed(
            "SELECT name FROM patients WHERE id = $1 AND ssn = $2",
            &[(&9i64, Type::INT8), (&"999-99-9999", Type::TEXT)],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    // Stored as a cell, not as the declared text.
    let stored: Vec<u8> = db
        .plain
        .query_one("SELECT ssn::bytea FROM patients WHERE id = 9", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!stored.windows(11).any(|window| window == b"999-99-9999"));
    // Text only declared types can type, touching no encrypted table.
    let rows = client
        .query_typed(
            "SELECT $1 IS NULL AS missing",
            &[(&None::<i32>, Type::INT4)],
        )
        .await
        .unwrap();
    assert!(rows[0].get::<_, bool>("missing"));
    // = ANY on an encrypted column takes the array of its plaintext type.
    let statement = client
        .prepare_typed(
            "SELECT name FROM patients WHERE ssn = ANY($1)",
            &[Type::TEXT_ARRAY],
        )
        .await
        .unwrap();
    let rows = client
        .query(&statement, &[&vec!["999-99-9999", "111-11-1111"]])
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    // Prepared again inside a transaction (where warm statements that send
    // plaintext are), it keeps its declared types.
    let by_id = client
        .prepare_typed("SELECT name FROM patients WHERE id = $1", &[Type::INT8])
        .await
        .unwrap();
    let mut client = client;
    let transaction = client.transaction().await.unwrap();
    let row = transaction.query_one(&by_id, &[&9i64]).await.unwrap();
    assert_eq!(row.get::<_, &str>("name"), "Kurt");
    transaction.commit().await.unwrap();
    // A declared type the encrypted column does not hold is refused.
    let error = client
        .prepare_typed("SELECT name FROM patients WHERE ssn = $1", &[Type::INT8])
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::ParameterType { number: 1, .. }),
        "{error}"
    );
}

#[tokio::test]
async fn simple_query_runs_plaintext_text_and_refuses_encrypted_tables() {
    let (db, client) = clinic("client_simple_query").await;
    db.plain
        .batch_execute(
            "CREATE TABLE notes (id int, body text); INSERT INTO notes VALUES (1, 'hello')",
        )
        .await
        .unwrap();
    let messages = client
        .simple_query("SELECT body FROM notes WHERE id = 1")
        .await
        .unwrap();
    let bodies: Vec<&str> = messages
        .iter()
        .filter_map(|message| match message {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0),
            _ => None,
        })
        .collect();
    assert_eq!(bodies, ["hello"]);
    // Session control passes through.
    client.simple_query("SHOW search_path").await.unwrap();
    // Text results of an encrypted table cannot be decrypted: refused.
    let error = client
        .simple_query("SELECT name FROM patients")
        .await
        .unwrap_err();
    assert!(matches!(error, Error::TextResults { .. }), "{error}");
    assert!(error.to_string().contains("public.patients"), "{error}");
    // A literal for an encrypted column is refused as in batch_execute.
    let error = client
        .simple_query(
            "SELECT 1 FROM notes WHERE EXISTS (SELECT 1 FROM patients WHERE ssn = '111-11-1111')",
        )
        .await
        .unwrap_err();
    assert!(error.to_string().contains("refused"), "{error}");
}

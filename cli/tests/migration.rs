//! `aepg column encrypt|decrypt` as an operator runs them: the built binary
//! with a config file, killed with SIGKILL at several points of a migration
//! and run again, while applications write and read through aepg (and,
//! before the swap, through plain tokio-postgres). Afterwards every row
//! holds what its last writer wrote, and no read failed or missed.
#![allow(clippy::unwrap_used)] // a test fails by panicking

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use aepg::Client;
use aepg_tests::workload::{aepg_writer, check_rows, people, plain_writer, reader, ssn_type};
use aepg_tests::TestDatabase;
use common::{aepg_command, aepg_json, init_with_ssn_setting, write_config};

/// Runs `aepg` in `dir` and kills it (SIGKILL) at its first progress line
/// naming `stage`. Returns whether it was killed (it may finish first).
fn kill_at(dir: &Path, args: &[&str], stage: &str) -> bool {
    let mut child = aepg_command(dir, args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let marker = format!(": {stage}: ");
    let mut killed = false;
    for line in stderr.lines() {
        if line.unwrap().contains(&marker) {
            child.kill().unwrap();
            killed = true;
            break;
        }
    }
    child.wait().unwrap();
    killed
}

/// A directory with `aepg.toml`, a generated master key, a column key and
/// a deterministic `text` setting `ssn`.
fn workspace(db: &TestDatabase) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "aepg.toml", db, &["cmk1"]);
    let dir_path = dir.path();
    init_with_ssn_setting(dir_path);
    dir
}

/// An application's aepg client, with the master key of `dir`.
async fn application(db: &TestDatabase, dir: &Path) -> Client {
    common::application(db, dir, &["cmk1"]).await
}

async fn migration_rows(db: &TestDatabase) -> Vec<(String, i64)> {
    let plain = db.connect().await;
    plain
        .query("SELECT phase, rows_done FROM aepg.column_migrations", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_killed_at_every_stage_resumes_to_the_same_result() {
    let db = TestDatabase::new("cli_migration").await;
    let dir = workspace(&db);
    let dir = dir.path();
    let ledger = people(&db.connect().await).await;

    let stop = Arc::new(AtomicBool::new(false));
    let stop_plain = Arc::new(AtomicBool::new(false));
    let tasks = vec![
        aepg_writer(application(&db, dir).await, ledger.clone(), stop.clone()),
        reader(application(&db, dir).await, ledger.clone(), stop.clone()),
    ];
    let plain = plain_writer(db.connect().await, ledger.clone(), stop_plain.clone());

    let encrypt = [
        "column",
        "encrypt",
        "--table",
        "people",
        "--column",
        "ssn",
        "--setting",
        "ssn",
        "--batch-size",
        "300",
    ];
    let with = |extra: &[&'static str]| -> Vec<&'static str> {
        encrypt.iter().chain(extra).copied().collect()
    };
    // Killed in the backfill: the work state says how far it got.
    assert!(kill_at(dir, &with(&["--grace", "1"]), "backfill"));
    let rows = migration_rows(&db).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].0, "backfill");
    assert_eq!(ssn_type(&db.connect().await).await, "text");
    // Killed again in the catch-up, or in the grace period after it.
    kill_at(dir, &with(&["--grace", "1"]), "catch-up");
    // Plain clients stop before the swap: afterwards the column takes only cells.
    stop_plain.store(true, Ordering::SeqCst);
    plain.await.unwrap();
    // Killed in a long grace period: clients were told of the swap.
    assert!(kill_at(dir, &with(&["--grace", "60"]), "grace"));
    assert_eq!(migration_rows(&db).await[0].0, "swapping");
    assert_eq!(ssn_type(&db.connect().await).await, "text");
    // Killed as the swap begins (it may be done by then).
    kill_at(dir, &with(&["--grace", "0.5"]), "swap");
    let done = aepg_json(dir, &with(&["--grace", "0.5"]));
    assert!(
        done["resumed"] == true || done["already_done"] == true,
        "{done}"
    );
    assert_eq!(ssn_type(&db.connect().await).await, "aepg.ciphertext");
    assert!(migration_rows(&db).await.is_empty());
    let status = aepg_json(dir, &["column", "status"]);
    assert_eq!(status[0]["column"], "public.people.ssn");
    assert_eq!(status[0]["state"], "usable");

    // And back, killed once in its backfill.
    let decrypt = [
        "column",
        "decrypt",
        "--table",
        "people",
        "--column",
        "ssn",
        "--batch-size",
        "300",
        "--grace",
        "0.5",
    ];
    assert!(kill_at(dir, &decrypt, "backfill"));
    let done = aepg_json(dir, &decrypt);
    assert_eq!(done["resumed"], true, "{done}");
    assert_eq!(ssn_type(&db.connect().await).await, "text");

    stop.store(true, Ordering::SeqCst);
    for task in tasks {
        task.await.unwrap();
    }
    ledger.assert_clean();
    check_rows(&application(&db, dir).await, &ledger).await;
}

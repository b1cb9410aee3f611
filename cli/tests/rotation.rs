//! `aepg rotate cmk start|complete` and `aepg rotate cek
//! start|status|complete` as an operator runs them: the built binary with
//! config files, killed with SIGKILL in the middle of each step and run
//! again, while applications write and read through aepg. Applications
//! holding only the new master key work once its rotation has started;
//! after it completes the old key file is deleted and they still do.
//! Afterwards every row holds what its last writer wrote.
#![allow(clippy::unwrap_used)] // a test fails by panicking

mod common;

use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aepg_tests::workload::{aepg_writer, aepg_writer_from, check_rows, people, reader};
use aepg_tests::TestDatabase;
use common::{aepg_command, aepg_json, application, init_with_ssn_setting, write_config};

/// Runs `aepg` in `dir` while another session holds the rows of
/// `aepg.encryption_settings`, and kills it (SIGKILL) once its
/// transaction waits for them: in the middle of a rotation step, after
/// the steps before it were written. Waits until its transaction is gone.
async fn kill_in_the_middle(db: &TestDatabase, dir: &Path, args: &[&str]) {
    kill_while_waiting(
        db,
        dir,
        args,
        "SELECT FROM aepg.encryption_settings FOR UPDATE",
        "UPDATE aepg.encryption_settings%",
    )
    .await;
}

/// Runs `aepg` in `dir` while another session, in a transaction, has run
/// `hold`, and kills it (SIGKILL) once a statement of it that starts like
/// `waiting_on` (a `LIKE` pattern) waits for a lock. Waits until its
/// session is gone.
async fn kill_while_waiting(
    db: &TestDatabase,
    dir: &Path,
    args: &[&str],
    hold: &str,
    waiting_on: &str,
) {
    let mut holder = db.connect().await;
    let hold = {
        let transaction = holder.transaction().await.unwrap();
        transaction.batch_execute(hold).await.unwrap();
        transaction
    };
    let mut child = aepg_command(dir, args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let observer = db.connect().await;
    let waiting = "SELECT pid FROM pg_stat_activity
                   WHERE wait_event_type = 'Lock' AND ltrim(query) LIKE $1";
    let mut pid = None;
    for _ in 0..600 {
        if let Some(row) = observer.query_opt(waiting, &[&waiting_on]).await.unwrap() {
            pid = Some(row.get::<_, i32>(0));
            break;
        }
        if child.try_wait().unwrap().is_some() {
            ended_early(child, args, "it waited");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pid = pid.unwrap_or_else(|| panic!("aepg {args:?} never waited for the lock"));
    child.kill().unwrap();
    child.wait().unwrap();
    hold.rollback().await.unwrap();
    // The server ends the killed run's session, and its transaction with it.
    for _ in 0..600 {
        let gone = observer
            .query_opt("SELECT FROM pg_stat_activity WHERE pid = $1", &[&pid])
            .await
            .unwrap()
            .is_none();
        if gone {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the killed run's session did not end");
}

/// Fails the test for a run of `aepg` that ended before `what`, with its
/// output.
fn ended_early(child: std::process::Child, args: &[&str], what: &str) -> ! {
    let output = child.wait_with_output().unwrap();
    panic!(
        "aepg {args:?} ended before {what}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs `aepg` in `dir` and kills it (SIGKILL) as soon as `condition` (a
/// query of one boolean) holds, then waits until its session's locks are
/// gone.
async fn kill_when(db: &TestDatabase, dir: &Path, args: &[&str], condition: &str) {
    let mut child = aepg_command(dir, args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let observer = db.connect().await;
    let mut held = false;
    for _ in 0..1_000 {
        if observer.query_one(condition, &[]).await.unwrap().get(0) {
            held = true;
            break;
        }
        if child.try_wait().unwrap().is_some() {
            ended_early(child, args, condition);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(held, "aepg {args:?} never got to {condition}");
    child.kill().unwrap();
    child.wait().unwrap();
    let locks = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'";
    for _ in 0..600 {
        if observer
            .query_one(locks, &[])
            .await
            .unwrap()
            .get::<_, i64>(0)
            == 0
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the killed run's session did not end");
}

async fn count(db: &TestDatabase, sql: &str) -> i64 {
    db.connect().await.query_one(sql, &[]).await.unwrap().get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_key_rotation_killed_in_each_step_completes_on_a_rerun() {
    let db = TestDatabase::new("cli_rotation").await;
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    // The operator's config holds both keys; `new.toml` only the new one.
    write_config(dir, "aepg.toml", &db, &["cmk1", "cmk2"]);
    write_config(dir, "new.toml", &db, &["cmk2"]);
    init_with_ssn_setting(dir);
    let ledger = people(&db.connect().await).await;
    aepg_json(
        dir,
        &[
            "column",
            "encrypt",
            "--table",
            "people",
            "--column",
            "ssn",
            "--setting",
            "ssn",
            "--grace",
            "0.2",
        ],
    );

    let stop_old = Arc::new(AtomicBool::new(false));
    let old_tasks = vec![
        aepg_writer(
            application(&db, dir, &["cmk1"]).await,
            ledger.clone(),
            stop_old.clone(),
        ),
        reader(
            application(&db, dir, &["cmk1"]).await,
            ledger.clone(),
            stop_old.clone(),
        ),
    ];
    aepg_json(dir, &["cmk", "register", "cmk2", "--generate"]);

    // Start, killed in its transaction: nothing of it remains.
    let start = ["rotate", "cmk", "start", "--from", "cmk1", "--to", "cmk2"];
    kill_in_the_middle(&db, dir, &start).await;
    let under_new = "SELECT count(*) FROM aepg.column_key_values WHERE master_key_name = 'cmk2'";
    assert_eq!(count(&db, under_new).await, 0);
    let started = aepg_json(dir, &start);
    assert_eq!(started["step"], "start");
    assert_eq!(started["column_keys"], 1, "{started}");
    assert_eq!(started["records_signed"], 2, "{started}");
    assert_eq!(count(&db, under_new).await, 1);
    let status = aepg_json(dir, &["status"]);
    assert_eq!(
        status["rotating_column_keys"][0]["master_keys"],
        serde_json::json!(["cmk1", "cmk2"]),
        "{status}"
    );

    // Applications holding only the new key join; the old key's writer
    // hands over to one of them.
    stop_old.store(true, Ordering::SeqCst);
    for task in old_tasks {
        task.await.unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = vec![
        aepg_writer_from(
            application(&db, dir, &["cmk2"]).await,
            ledger.clone(),
            stop.clone(),
            1_000_000,
        ),
        reader(
            application(&db, dir, &["cmk2"]).await,
            ledger.clone(),
            stop.clone(),
        ),
        reader(
            application(&db, dir, &["cmk1"]).await,
            ledger.clone(),
            stop.clone(),
        ),
    ];
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Complete, with the new key only, killed in its transaction: the old
    // key stays registered. Then the old key's reader stops, and the rerun
    // completes.
    let complete = [
        "--config", "new.toml", "rotate", "cmk", "complete", "--from", "cmk1", "--to", "cmk2",
    ];
    kill_in_the_middle(&db, dir, &complete).await;
    let old_registered = "SELECT count(*) FROM aepg.master_keys WHERE name = 'cmk1'";
    assert_eq!(count(&db, old_registered).await, 1);
    stop.store(true, Ordering::SeqCst);
    for task in tasks {
        task.await.unwrap();
    }
    let completed = aepg_json(dir, &complete);
    assert_eq!(completed["step"], "complete");
    assert_eq!(completed["column_keys"], 1, "{completed}");
    assert_eq!(count(&db, old_registered).await, 0);
    assert!(aepg_json(dir, &complete)["generation"].is_null());

    // The old key is destroyed: the new key alone reads and verifies everything.
    std::fs::remove_file(dir.join("keys/cmk1.pem")).unwrap();
    let keys = aepg_json(dir, &["--config", "new.toml", "cmk", "list"]);
    assert_eq!(keys.as_array().unwrap().len(), 1, "{keys}");
    assert_eq!(keys[0]["name"], "cmk2");
    aepg_json(dir, &["--config", "new.toml", "verify"]);
    ledger.assert_clean();
    check_rows(&application(&db, dir, &["cmk2"]).await, &ledger).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_column_key_rotation_killed_in_each_step_completes_on_a_rerun() {
    let db = TestDatabase::new("cli_cek_rotation").await;
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    write_config(dir, "aepg.toml", &db, &["cmk1"]);
    init_with_ssn_setting(dir);
    let ledger = people(&db.connect().await).await;
    let options = [
        "--batch-size",
        "500",
        "--grace",
        "0.2",
        "--lock-timeout",
        "30",
    ];
    let encrypt = [
        &[
            "column",
            "encrypt",
            "--table",
            "people",
            "--column",
            "ssn",
            "--setting",
            "ssn",
        ][..],
        &options,
    ]
    .concat();
    aepg_json(dir, &encrypt);
    let old_key = count(&db, "SELECT key_id::int8 FROM aepg.encryption_settings").await;

    let stop = Arc::new(AtomicBool::new(false));
    let tasks = vec![
        aepg_writer(
            application(&db, dir, &["cmk1"]).await,
            ledger.clone(),
            stop.clone(),
        ),
        reader(
            application(&db, dir, &["cmk1"]).await,
            ledger.clone(),
            stop.clone(),
        ),
    ];
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Start, killed in the middle of its backfill, then run again: it goes
    // on with the same new key.
    let start = [
        &["rotate", "cek", "start", "--setting", "ssn"][..],
        &options,
    ]
    .concat();
    kill_when(
        &db,
        dir,
        &start,
        "SELECT COALESCE((SELECT rows_done > 2000 FROM aepg.column_migrations), false)",
    )
    .await;
    let done = "SELECT rows_done FROM aepg.column_migrations";
    assert!(count(&db, done).await < 19_000, "killed in the middle");
    let new_key = count(&db, "SELECT to_key_id::int8 FROM aepg.key_rotations").await;
    let started = aepg_json(dir, &start);
    assert_eq!(started["step"], "start");
    assert_eq!(started["began"], false, "{started}");
    assert_eq!(started["to_key"], new_key, "{started}");
    assert_eq!(started["from_key"], old_key, "{started}");
    assert_eq!(started["columns"], serde_json::json!(["public.people.ssn"]));
    assert!(started["generation"].is_null());
    let status = aepg_json(dir, &["rotate", "cek", "status", "--setting", "ssn"]);
    assert_eq!(status["rotating"], true, "{status}");
    assert_eq!(status["columns"][0]["phase"], "backfill", "{status}");
    assert!(
        status["columns"][0]["rows_done"].as_u64().unwrap() > 19_000,
        "{status}"
    );
    let catalog = aepg_json(dir, &["status"]);
    assert_eq!(
        catalog["column_key_rotations"][0]["setting"], "ssn",
        "{catalog}"
    );

    // Complete, killed while its swap waits for the table: the column is
    // not swapped, and the rerun swaps it.
    let complete = [
        &["rotate", "cek", "complete", "--setting", "ssn"][..],
        &options,
    ]
    .concat();
    kill_while_waiting(
        &db,
        dir,
        &complete,
        "LOCK TABLE people IN ACCESS SHARE MODE",
        "LOCK TABLE%",
    )
    .await;
    let completed = aepg_json(dir, &complete);
    assert_eq!(completed["step"], "complete");
    assert!(completed["generation"].is_u64(), "{completed}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    for task in tasks {
        task.await.unwrap();
    }

    // The old key is retired, then dropped: no cell names it.
    let dropped = aepg_json(dir, &["cek", "drop", &old_key.to_string()]);
    assert_eq!(dropped["dropped"], true, "{dropped}");
    for (sql, expected) in [
        (
            "SELECT key_id::int8 FROM aepg.encryption_settings".to_owned(),
            new_key,
        ),
        (
            format!("SELECT count(*) FROM aepg.column_keys WHERE id = {old_key}"),
            0,
        ),
        (
            format!(
                "SELECT count(*) FROM people WHERE ssn IS NOT NULL
                 AND substring(ssn::bytea FROM 3 FOR 4) <> int4send({new_key}::int4)"
            ),
            0,
        ),
    ] {
        assert_eq!(count(&db, &sql).await, expected, "{sql}");
    }
    let status = aepg_json(dir, &["rotate", "cek", "status", "--setting", "ssn"]);
    assert_eq!(status["rotating"], false, "{status}");
    assert!(aepg_json(dir, &complete)["generation"].is_null());
    aepg_json(dir, &["verify"]);
    ledger.assert_clean();
    check_rows(&application(&db, dir, &["cmk1"]).await, &ledger).await;
}

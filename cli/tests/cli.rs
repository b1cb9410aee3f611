//! The `aepg` binary as a user runs it: a config file, a real database, a
//! key directory, `--json` output parsed here, exit statuses.
#![allow(clippy::unwrap_used)] // a test fails by panicking

mod common;

use std::path::Path;

use aepg_tests::TestDatabase;
use serde_json::Value;

/// One run of the binary.
struct Run {
    status: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|error| panic!("not JSON ({error}): {}\n{}", self.stdout, self.stderr))
    }

    fn ok(self) -> Self {
        assert_eq!(
            self.status, 0,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }
}

/// Runs `aepg` in `dir` with `args` ([`common::aepg_command`]), to the end.
fn aepg(dir: &Path, args: &[&str]) -> Run {
    let output = common::aepg_command(dir, args).output().unwrap();
    Run {
        status: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

/// A working directory with `aepg.toml` for `db` and an empty key directory.
fn workspace(db: &TestDatabase) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("keys")).unwrap();
    let config = format!(
        "database_url = {:?}\n\n\
         [[key_stores]]\nprovider = \"local\"\ndirectory = \"keys\"\ntrusted = [\"cmk1.pem\"]\n\n\
         [[master_keys]]\nname = \"cmk1\"\nprovider = \"local\"\npath = \"cmk1.pem\"\n",
        db.connection_string()
    );
    std::fs::write(dir.path().join("aepg.toml"), config).unwrap();
    dir
}

#[tokio::test]
async fn a_catalog_administered_from_the_command_line() {
    let db = TestDatabase::new("cli").await;
    let dir = workspace(&db);
    let dir = dir.path();

    assert_eq!(
        aepg(dir, &["init", "--json"]).ok().json()["outcome"],
        "installed"
    );
    assert_eq!(
        aepg(dir, &["init", "--json"]).ok().json()["outcome"],
        "unchanged"
    );
    let registered = aepg(dir, &["cmk", "register", "cmk1", "--generate", "--json"])
        .ok()
        .json();
    assert_eq!(registered["generated"], true);
    assert!(dir.join("keys/cmk1.pem").exists());
    let key = common::create_ssn_setting(|args| common::aepg_json(dir, args), "cmk1");
    aepg(
        dir,
        &[
            "setting",
            "create",
            "mood",
            "--enum",
            "mood",
            "--labels",
            "sad,ok,happy",
            "--mode",
            "randomized",
            "--cek",
            &key,
        ],
    )
    .ok();
    let client = db.connect().await;
    client
        .batch_execute("CREATE TABLE people (id int, ssn aepg.ciphertext, mood aepg.ciphertext)")
        .await
        .unwrap();
    aepg(
        dir,
        &[
            "column",
            "assign",
            "--table",
            "people",
            "--column",
            "ssn",
            "--setting",
            "ssn",
        ],
    )
    .ok();
    aepg(
        dir,
        &[
            "column",
            "assign",
            "--table",
            "public.people",
            "--column",
            "mood",
            "--setting",
            "mood",
        ],
    )
    .ok();

    // Lists, as JSON.
    let keys = aepg(dir, &["cmk", "list", "--json"]).ok().json();
    assert_eq!(keys[0]["name"], "cmk1");
    assert_eq!(keys[0]["key_path"], "cmk1.pem");
    let settings = aepg(dir, &["setting", "list", "--json"]).ok().json();
    let mood = settings
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "mood")
        .unwrap();
    assert_eq!(mood["labels"], serde_json::json!(["sad", "ok", "happy"]));
    assert_eq!(mood["mode"], "randomized");
    let columns = aepg(dir, &["column", "status", "--table", "people", "--json"])
        .ok()
        .json();
    assert_eq!(columns.as_array().unwrap().len(), 2);
    assert!(columns
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["state"] == "usable"));
    let status = aepg(dir, &["status", "--json"]).ok().json();
    assert_eq!(status["encrypted_columns"], 2);
    assert_eq!(status["records_left_out"], 0);
    // Text output too.
    let text = aepg(dir, &["cek", "list"]).ok().stdout;
    assert!(text.contains("cmk1") && text.contains("ssn"), "{text}");

    // explain: the target of each parameter, or the refusal.
    let plan = aepg(
        dir,
        &[
            "explain",
            "SELECT id, ssn FROM people WHERE ssn = $1",
            "--json",
        ],
    )
    .ok()
    .json();
    let parameter = &plan["parameters"][0]["encryption"];
    assert_eq!(parameter["column"], "public.people.ssn");
    assert_eq!(parameter["setting"], "ssn");
    assert_eq!(parameter["mode"], "deterministic");
    assert_eq!(plan["columns"][1]["decryption"]["kind"], "decrypted");
    let refused = aepg(
        dir,
        &[
            "explain",
            "SELECT id FROM people WHERE ssn LIKE $1",
            "--json",
        ],
    )
    .ok()
    .json();
    let reason = refused["refused"].as_str().unwrap();
    assert!(
        reason.contains("LIKE") && reason.contains("public.people.ssn"),
        "{reason}"
    );

    // A key in use is not dropped; the error names who uses it.
    let drop = aepg(dir, &["cek", "drop", &key]);
    assert_eq!(drop.status, 1);
    assert!(drop.stderr.contains("setting \"ssn\""), "{}", drop.stderr);
    let spare = aepg(dir, &["cek", "create", "--cmk", "cmk1", "--json"])
        .ok()
        .json()["id"]
        .as_u64()
        .unwrap()
        .to_string();
    aepg(dir, &["cek", "drop", &spare]).ok();
    let keys = aepg(dir, &["cek", "list", "--json"]).ok().json();
    assert_eq!(keys.as_array().unwrap().len(), 1);

    // verify: clean, then a DBA's edit of a setting's record is found.
    aepg(dir, &["verify"]).ok();
    client
        .batch_execute(
            // Flips bits of one byte: setting it to a fixed value would leave a
            // signature that already has it (1 in 256) unchanged.
            "UPDATE aepg.encryption_settings SET signature = set_byte(signature, 4, get_byte(signature, 4) # 255) \
             WHERE name = 'mood'",
        )
        .await
        .unwrap();
    let verify = aepg(dir, &["verify", "--json"]);
    assert_eq!(verify.status, 1, "{}", verify.stderr);
    let failed = verify.json()["failed"].as_array().unwrap().clone();
    assert!(
        failed
            .iter()
            .any(|f| f["record"].as_str().unwrap().contains("mood") && f["kind"] == "tampered"),
        "{failed:?}"
    );
    // A row whose names carry terminal control sequences: listed, escaped.
    client
        .batch_execute(
            "INSERT INTO aepg.column_assignments \
             (schema_name, table_name, column_name, setting_id, record, signature) \
             SELECT 'public', 'people', E'x\\x1b[2K\\rall records verify', id, '\\x00', '\\x00' \
             FROM aepg.encryption_settings WHERE name = 'ssn'",
        )
        .await
        .unwrap();
    let verify = aepg(dir, &["verify"]);
    assert_eq!(verify.status, 1);
    assert!(
        !verify.stdout.contains('\u{1b}') && !verify.stdout.contains('\r'),
        "{:?}",
        verify.stdout
    );
    assert!(verify.stdout.contains("\\u{1b}[2K"), "{}", verify.stdout);
}

#[tokio::test]
async fn usage_errors_exit_2_and_failures_exit_1() {
    let db = TestDatabase::new("cli_errors").await;
    let dir = workspace(&db);
    let dir = dir.path();
    let empty = tempfile::tempdir().unwrap();

    // No database anywhere.
    let run = aepg(empty.path(), &["status"]);
    assert_eq!(run.status, 2);
    assert!(run.stderr.contains("DATABASE_URL"), "{}", run.stderr);
    // Not a command, a bad mode, a bad config file.
    assert_eq!(aepg(dir, &["rotate-everything"]).status, 2);
    assert_eq!(
        aepg(
            dir,
            &["setting", "create", "x", "--type", "text", "--mode", "sideways", "--cek", "1"]
        )
        .status,
        2
    );
    std::fs::write(empty.path().join("aepg.toml"), "database_url = 7\n").unwrap();
    let run = aepg(empty.path(), &["status"]);
    assert_eq!(run.status, 2, "{}", run.stderr);
    assert!(run.stderr.contains("aepg.toml"), "{}", run.stderr);
    // An unsupported type is a usage error naming it.
    let run = aepg(
        dir,
        &[
            "setting",
            "create",
            "x",
            "--type",
            "point",
            "--mode",
            "randomized",
            "--cek",
            "1",
        ],
    );
    assert_eq!(run.status, 2);
    assert!(run.stderr.contains("point"), "{}", run.stderr);

    // A catalog that is not installed: the operation fails, and says what to do.
    let run = aepg(dir, &["status"]);
    assert_eq!(run.status, 1);
    assert!(run.stderr.contains("install"), "{}", run.stderr);

    // A master key the key store does not have: named in the error.
    aepg(dir, &["init"]).ok();
    let run = aepg(dir, &["cmk", "register", "cmk1"]);
    assert_eq!(run.status, 1);
    assert!(run.stderr.contains("cmk1.pem"), "{}", run.stderr);
    // A key path outside the trusted list is refused before any key file
    // is made.
    let run = aepg(
        dir,
        &[
            "cmk",
            "register",
            "other",
            "--path",
            "other.pem",
            "--generate",
        ],
    );
    assert_eq!(run.status, 2, "{}", run.stderr);
    assert!(!dir.join("keys/other.pem").exists());
    assert!(run.stderr.contains("other.pem"), "{}", run.stderr);
    // --json reports the error as JSON too.
    let run = aepg(
        dir,
        &[
            "cek", "create", "--cmk", "nobody", "--path", "cmk1.pem", "--json",
        ],
    );
    assert_eq!(run.status, 1);
    assert!(run.json()["error"].as_str().unwrap().contains("nobody"));
}

//! What the binary's end-to-end suites share: running `aepg` as an
//! operator does, its config file, and an application's aepg client.
#![allow(dead_code, clippy::unwrap_used)] // each suite uses part of it; a test fails by panicking

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use aepg::keystore::{KeyStoreRegistry, LocalKeyStore, TrustedKeyPaths};
use aepg::{Client, Encryption, EncryptionConfig};
use aepg_tests::TestDatabase;
use serde_json::Value;

/// `aepg` in `dir` with `args`, `DATABASE_URL` removed so that only the
/// config file and flags count.
pub fn aepg_command(dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_aepg"));
    command
        .current_dir(dir)
        .env_remove("DATABASE_URL")
        .args(args);
    command
}

/// Runs `aepg … --json` in `dir` to the end and asserts it succeeded; its
/// stdout parsed as JSON.
pub fn aepg_json(dir: &Path, args: &[&str]) -> Value {
    let output = aepg_command(dir, args).arg("--json").output().unwrap();
    assert!(
        output.status.success(),
        "aepg {args:?}: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Runs `aepg … --json` in `dir` with the environment variable `name` set
/// to `value` (a PIN, a client secret): its exit status, stdout, stderr.
pub fn aepg_with_env(
    dir: &Path,
    args: &[&str],
    (name, value): (&str, &str),
) -> (Option<i32>, String, String) {
    let output = aepg_command(dir, args)
        .arg("--json")
        .env(name, value)
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

/// [`aepg_with_env`], asserting success: stdout parsed as JSON.
pub fn aepg_json_with_env(dir: &Path, args: &[&str], variable: (&str, &str)) -> Value {
    let (status, stdout, stderr) = aepg_with_env(dir, args, variable);
    assert_eq!(status, Some(0), "aepg {args:?}: {stdout}\n{stderr}");
    serde_json::from_str(&stdout).unwrap()
}

/// Runs `init` in `dir`, registers a generated master key `cmk1`, creates
/// a column key under it and, on that key, a deterministic `text` setting
/// `ssn`.
pub fn init_with_ssn_setting(dir: &Path) {
    aepg_json(dir, &["init"]);
    aepg_json(dir, &["cmk", "register", "cmk1", "--generate"]);
    create_ssn_setting(|args| aepg_json(dir, args), "cmk1");
}

/// Creates a column key under master key `cmk` and, on it, a
/// deterministic `text` setting `ssn`, each through `ok` (the binary run
/// with `--json`, its output parsed); returns the column key's id.
pub fn create_ssn_setting(ok: impl Fn(&[&str]) -> serde_json::Value, cmk: &str) -> String {
    let key = ok(&["cek", "create", "--cmk", cmk])["id"].to_string();
    ok(&[
        "setting",
        "create",
        "ssn",
        "--type",
        "text",
        "--mode",
        "deterministic",
        "--cek",
        &key,
    ]);
    key
}

/// Writes `dir/file`: a config file for `db` with a local key store in
/// `dir/keys` trusting the `*.pem` files named by `master_keys`, each
/// also listed as a `[[master_keys]]` entry.
pub fn write_config(dir: &Path, file: &str, db: &TestDatabase, master_keys: &[&str]) {
    std::fs::create_dir_all(dir.join("keys")).unwrap();
    let trusted: Vec<String> = master_keys
        .iter()
        .map(|name| format!("\"{name}.pem\""))
        .collect();
    let mut config = format!(
        "database_url = {:?}\n\n\
         [[key_stores]]\nprovider = \"local\"\ndirectory = \"keys\"\ntrusted = [{}]\n",
        db.connection_string(),
        trusted.join(", ")
    );
    for name in master_keys {
        config.push_str(&format!(
            "\n[[master_keys]]\nname = \"{name}\"\nprovider = \"local\"\npath = \"{name}.pem\"\n"
        ));
    }
    std::fs::write(dir.join(file), config).unwrap();
}

/// An application's aepg client holding the master keys `master_keys`
/// (`*.pem` files of `dir/keys`).
pub async fn application(db: &TestDatabase, dir: &Path, master_keys: &[&str]) -> Client {
    let store = LocalKeyStore::open(dir.join("keys")).unwrap();
    let mut registry = KeyStoreRegistry::new();
    registry
        .register(
            Arc::new(store),
            TrustedKeyPaths::only(master_keys.iter().map(|name| format!("{name}.pem"))),
        )
        .unwrap();
    let encryption = Encryption::new(EncryptionConfig::new(registry));
    let (inner, connection) = db.config().connect(tokio_postgres::NoTls).await.unwrap();
    let (client, connection) = Client::with_connection(inner, connection, encryption);
    tokio::spawn(connection);
    client
}

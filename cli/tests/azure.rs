//! The `aepg` binary with its master key in Azure Key Vault: the local Key
//! Vault test server, set up in the config file as an `azure-key-vault`
//! key store with a client secret from the environment.
#![allow(clippy::unwrap_used)] // a test fails by panicking

mod common;

use aepg_kvserver::{KeyVaultServer, ServerConfig};
use aepg_tests::TestDatabase;
use common::{aepg_json_with_env, aepg_with_env, create_ssn_setting};

// The server runs on the test's runtime while the test waits on the
// binary: a second worker serves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_key_in_key_vault_from_the_command_line() {
    let vault = KeyVaultServer::start(ServerConfig::default())
        .await
        .unwrap();
    let kid = vault.create_key("cmk1", 2048);
    let db = TestDatabase::new("cli_azure").await;
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    std::fs::write(dir.join("vault-ca.pem"), vault.ca_certificate_pem()).unwrap();
    std::fs::write(
        dir.join("aepg.toml"),
        format!(
            "database_url = {:?}\n\n\
             [[key_stores]]\nprovider = \"azure-key-vault\"\ncredential = \"client-secret\"\n\
             tenant = {:?}\nclient_id = {:?}\nclient_secret_env = \"TEST_VAULT_SECRET\"\n\
             authority = {:?}\nca_file = \"vault-ca.pem\"\nvault_hosts = [{:?}]\n\
             trusted = [{kid:?}]\n\n\
             [[master_keys]]\nname = \"cmk1\"\nprovider = \"azure-key-vault\"\npath = {kid:?}\n",
            db.connection_string(),
            vault.tenant(),
            vault.client_id(),
            vault.vault_url(),
            vault.vault_url().trim_start_matches("https://"),
        ),
    )
    .unwrap();
    let run = |args: &[&str], value: &str| aepg_with_env(dir, args, ("TEST_VAULT_SECRET", value));
    let ok =
        |args: &[&str]| aepg_json_with_env(dir, args, ("TEST_VAULT_SECRET", vault.client_secret()));

    ok(&["init"]);
    assert_eq!(ok(&["cmk", "register", "cmk1"])["key_path"], kid.as_str());
    create_ssn_setting(ok, "cmk1");
    assert_eq!(ok(&["status"])["records_left_out"], 0);
    assert!(vault
        .request_log()
        .iter()
        .any(|request| request.path.ends_with("/wrapkey") && request.status == 200));

    // A wrong secret: refused, naming the client, never printing the secret.
    let (status, stdout, stderr) = run(&["cek", "create", "--cmk", "cmk1"], "wrong-secret-42");
    assert_eq!(status, Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains(vault.client_id()), "{stderr}");
    assert!(!stderr.contains("wrong-secret-42") && !stdout.contains("wrong-secret-42"));

    // A disabled key: refused, naming the vault's answer.
    vault.disable_key("cmk1");
    let (status, _, stderr) = run(&["cek", "create", "--cmk", "cmk1"], vault.client_secret());
    assert_eq!(status, Some(1), "{stderr}");
    assert!(stderr.contains("403"), "{stderr}");
}

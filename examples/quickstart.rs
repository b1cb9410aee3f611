//! aepg in one page: encrypt two columns, write and read through aepg, and
//! look at what the server actually stores.
//!
//! `cargo run --example quickstart` uses `DATABASE_URL` if set; otherwise it
//! starts a throwaway PostgreSQL with `aepg-pgserver`, as the test suite does
//! (a container, or a local `initdb` cluster when no container can be
//! started).

use std::sync::Arc;

use aepg::catalog::{install, CatalogAdmin, NewEncryptionSetting, Pins};
use aepg::cell::{EncryptionMode, PlaintextType};
use aepg::{Client, ColumnName, Encryption, EncryptionConfig};
use aepg_keystore::{KeyStoreRegistry, LocalKeyStore, MasterKeyLocation, TrustedKeyPaths};

use aepg_examples::{database, Failure};

#[tokio::main]
async fn main() -> Result<(), Failure> {
    // 1. A database. `_throwaway` keeps a throwaway server alive until the end.
    let (config, _throwaway) = database("quickstart").await?;
    let (mut plain, connection) = tokio_postgres::connect(&config, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);

    // 2. A column master key: an RSA key in a local key store (a directory of PEM files).
    let key_dir = tempfile::tempdir()?;
    let key_store = LocalKeyStore::open(key_dir.path())?;
    key_store.generate_key("quickstart-cmk.pem", 2048).await?;
    let mut registry = KeyStoreRegistry::new();
    registry.register(
        Arc::new(key_store),
        TrustedKeyPaths::only(["quickstart-cmk.pem"]),
    )?;

    // 3. The catalog: install it, register the master key, create a column key and two settings.
    install(&mut plain).await?;
    let suffix = std::process::id();
    let admin = CatalogAdmin::new(registry.clone());
    let master_key = format!("quickstart-cmk-{suffix}");
    let location = MasterKeyLocation::new("local", "quickstart-cmk.pem");
    admin
        .register_master_key(&mut plain, &master_key, &location)
        .await?;
    let key_id = admin
        .create_column_key(&mut plain, &master_key, &location)
        .await?;
    let ssn_setting = format!("ssn-{suffix}");
    let diagnosis_setting = format!("diagnosis-{suffix}");
    for (name, mode) in [
        (&ssn_setting, EncryptionMode::Deterministic),
        (&diagnosis_setting, EncryptionMode::Randomized),
    ] {
        let setting =
            NewEncryptionSetting::new(name.clone(), PlaintextType::parse("text")?, mode, key_id);
        admin.create_setting(&mut plain, &setting).await?;
    }

    // 4. A table whose ssn (deterministic) and diagnosis (randomized) are encrypted.
    let table = format!("patients_{suffix}");
    plain
        .batch_execute(&format!(
            "CREATE TABLE {table} (id int PRIMARY KEY, name text, ssn aepg.ciphertext, diagnosis aepg.ciphertext)"
        ))
        .await?;
    for (column, setting) in [("ssn", &ssn_setting), ("diagnosis", &diagnosis_setting)] {
        let column = ColumnName::new("public", table.clone(), column);
        admin.assign_column(&mut plain, &column, setting).await?;
    }

    // 5. Pins: what the application knows of its catalog (its identity, the
    //    generation of its signed manifest, its encrypted columns), exported
    //    once from the trusted catalog. An application embeds the file
    //    (`include_str!("aepg-pins.json")`), so even its first connection
    //    refuses a catalog that was replaced, rolled back or stripped.
    let pins = Pins::of_catalog(&admin.load(&plain).await?).to_json();
    println!("pin file for the application:\n{pins}\n");

    // 6. The application: an aepg client, used like tokio-postgres.
    let config_with_pins = EncryptionConfig::new(registry).pins(Pins::from_json(&pins)?);
    let encryption = Encryption::new(config_with_pins);
    let (client, connection) = aepg::connect(&config, tokio_postgres::NoTls, encryption).await?;
    tokio::spawn(connection);
    let people = [
        (1, "Ada", "078-05-1120", "asthma"),
        (2, "Grace", "219-09-9999", "influenza"),
        (3, "Alan", "457-55-5462", "asthma"),
    ];
    for (id, name, ssn, diagnosis) in people {
        client
            .execute(
                &format!("INSERT INTO {table} (id, name, ssn, diagnosis) VALUES ($1, $2, $3, $4)"),
                &[&id, &name, &ssn, &diagnosis],
            )
            .await?;
    }
    let found = client
        .query_one(
            &format!("SELECT name, diagnosis FROM {table} WHERE ssn = $1"),
            &[&"219-09-9999"],
        )
        .await?;
    println!(
        "aepg found ssn 219-09-9999 by equality on ciphertext: {} ({})\n",
        found.get::<_, &str>(0),
        found.get::<_, &str>(1)
    );

    // 7. Side by side: what the server stores, and what the application reads.
    show_side_by_side(&plain, &client, &table).await?;

    // 8. What aepg refuses, and how it says so.
    let refused = client
        .query(
            &format!("SELECT id FROM {table} WHERE ssn LIKE $1"),
            &[&"219%"],
        )
        .await;
    if let Err(error) = refused {
        println!("\nrefused: {error}");
    }
    println!(
        "\n{}",
        client
            .explain(&format!("SELECT name, ssn FROM {table} WHERE ssn = $1"))
            .await?
    );
    Ok(())
}

async fn show_side_by_side(
    plain: &tokio_postgres::Client,
    client: &Client,
    table: &str,
) -> Result<(), Failure> {
    let stored = plain
        .query(
            &format!("SELECT id, ssn::bytea, diagnosis::bytea FROM {table} ORDER BY id"),
            &[],
        )
        .await?;
    let read = client
        .query(
            &format!("SELECT id, ssn, diagnosis FROM {table} ORDER BY id"),
            &[],
        )
        .await?;
    println!(
        "{:<3} {:<42} {:<42} | {:<12} diagnosis",
        "id", "server stores ssn", "server stores diagnosis", "app reads ssn"
    );
    for (server_row, app_row) in stored.iter().zip(&read) {
        let ssn: Vec<u8> = server_row.get(1);
        let diagnosis: Vec<u8> = server_row.get(2);
        println!(
            "{:<3} {:<42} {:<42} | {:<12} {}",
            server_row.get::<_, i32>(0),
            describe_cell(&ssn),
            describe_cell(&diagnosis),
            app_row.get::<_, &str>(1),
            app_row.get::<_, &str>(2),
        );
    }
    println!("(a cell: 22-byte header with mode, key, setting and nonce; then ciphertext and tag.");
    println!(" Equal ssns would give equal cells (deterministic); the two 'asthma' cells differ (randomized).)");
    Ok(())
}

/// A cell as the server holds it: its length and the start of its ciphertext.
fn describe_cell(cell: &[u8]) -> String {
    let ciphertext = cell.get(22..34).unwrap_or_default();
    format!("{} B, ciphertext {}…", cell.len(), hex::encode(ciphertext))
}

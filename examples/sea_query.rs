//! sea-query over aepg: statements built by a query builder run unchanged
//! on an `aepg::Client`, with encrypted columns.
//!
//! sea-query writes SQL text with `$n` parameters and hands the values over
//! as `sea_query_postgres::PostgresValues`; aepg analyzes the text like any
//! other and encrypts the values bound for encrypted columns. What works is
//! what aepg allows on an encrypted column: storing, reading, `=`/`IN` on a
//! deterministic one (see the README); a `LIKE` or an `ORDER BY` on one is
//! refused. Values must be of the column's type (an `i64` for `int8`):
//! sea-query's values accept every SQL type, and aepg checks each encoding
//! before it encrypts it.
//!
//! `cargo run --example sea_query` uses `DATABASE_URL` if set; otherwise it
//! starts a throwaway PostgreSQL as the quickstart does.

use std::sync::Arc;

use aepg::catalog::{install, CatalogAdmin, NewEncryptionSetting};
use aepg::cell::{EncryptionMode, PlaintextType};
use aepg::{ColumnName, Encryption, EncryptionConfig};
use aepg_examples::{database, Failure};
use aepg_keystore::{KeyStoreRegistry, LocalKeyStore, MasterKeyLocation, TrustedKeyPaths};
use sea_query::{Expr, ExprTrait, Iden, Order, PostgresQueryBuilder, Query};
use sea_query_postgres::PostgresBinder;

/// The table, as sea-query names it.
#[derive(Iden)]
enum Customers {
    Table,
    Id,
    Name,
    Email,
    CreditLimit,
}

#[tokio::main]
async fn main() -> Result<(), Failure> {
    let (config, _throwaway) = database("sea_query").await?;
    let (mut plain, connection) = tokio_postgres::connect(&config, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);

    // A master key in a local key store, the catalog, a column key, and two
    // settings: email deterministic (searchable by equality), the credit
    // limit randomized.
    let key_dir = tempfile::tempdir()?;
    let key_store = LocalKeyStore::open(key_dir.path())?;
    key_store.generate_key("cmk.pem", 2048).await?;
    let mut registry = KeyStoreRegistry::new();
    registry.register(Arc::new(key_store), TrustedKeyPaths::only(["cmk.pem"]))?;
    install(&mut plain).await?;
    let admin = CatalogAdmin::new(registry.clone());
    let suffix = std::process::id();
    let master_key = format!("sea-query-cmk-{suffix}");
    let location = MasterKeyLocation::new("local", "cmk.pem");
    admin
        .register_master_key(&mut plain, &master_key, &location)
        .await?;
    let key_id = admin
        .create_column_key(&mut plain, &master_key, &location)
        .await?;
    let email_setting = format!("email-{suffix}");
    let limit_setting = format!("credit-limit-{suffix}");
    for (name, sql_type, mode) in [
        (&email_setting, "text", EncryptionMode::Deterministic),
        (&limit_setting, "int8", EncryptionMode::Randomized),
    ] {
        let setting =
            NewEncryptionSetting::new(name.clone(), PlaintextType::parse(sql_type)?, mode, key_id);
        admin.create_setting(&mut plain, &setting).await?;
    }
    plain
        .batch_execute(
            "CREATE TABLE customers (id serial PRIMARY KEY, name text, \
             email aepg.ciphertext, credit_limit aepg.ciphertext)",
        )
        .await?;
    for (column, setting) in [("email", &email_setting), ("credit_limit", &limit_setting)] {
        let column = ColumnName::new("public", "customers", column);
        admin.assign_column(&mut plain, &column, setting).await?;
    }

    let encryption = Encryption::new(EncryptionConfig::new(registry));
    let (client, connection) = aepg::connect(&config, tokio_postgres::NoTls, encryption).await?;
    tokio::spawn(connection);

    // INSERT … RETURNING, built by sea-query.
    for (name, email, limit) in [
        ("Ada", "ada@example.com", 5_000i64),
        ("Grace", "grace@example.com", 12_000),
        ("Alan", "alan@example.com", 7_500),
    ] {
        let (sql, values) = Query::insert()
            .into_table(Customers::Table)
            .columns([Customers::Name, Customers::Email, Customers::CreditLimit])
            .values_panic([name.into(), email.into(), limit.into()])
            .returning_col(Customers::Id)
            .build_postgres(PostgresQueryBuilder);
        let row = client.query_one(&sql, &values.as_params()).await?;
        println!(
            "inserted {name} as id {}   [{sql}]",
            row.get::<_, i32>("id")
        );
    }

    // SELECT … WHERE email IN (…) ORDER BY id LIMIT: equality on ciphertext.
    let (sql, values) = Query::select()
        .columns([
            Customers::Id,
            Customers::Name,
            Customers::Email,
            Customers::CreditLimit,
        ])
        .from(Customers::Table)
        .and_where(Expr::col(Customers::Email).is_in(["grace@example.com", "alan@example.com"]))
        .order_by(Customers::Id, Order::Asc)
        .limit(10)
        .build_postgres(PostgresQueryBuilder);
    println!("\n[{sql}]");
    for row in client.query(&sql, &values.as_params()).await? {
        println!(
            "  {} {:<6} {:<18} credit limit {}",
            row.get::<_, i32>("id"),
            row.get::<_, &str>("name"),
            row.get::<_, &str>("email"),
            row.get::<_, i64>("credit_limit")
        );
    }

    // UPDATE … WHERE email = …, and DELETE.
    let (sql, values) = Query::update()
        .table(Customers::Table)
        .value(Customers::CreditLimit, 9_000i64)
        .and_where(Expr::col(Customers::Email).eq("alan@example.com"))
        .build_postgres(PostgresQueryBuilder);
    let updated = client.execute(&sql, &values.as_params()).await?;
    println!("\nupdated {updated} row   [{sql}]");
    let (sql, values) = Query::delete()
        .from_table(Customers::Table)
        .and_where(Expr::col(Customers::Email).eq("ada@example.com"))
        .build_postgres(PostgresQueryBuilder);
    let deleted = client.execute(&sql, &values.as_params()).await?;
    println!("deleted {deleted} row   [{sql}]");

    // What the server holds: ciphertext only.
    println!("\nwhat the server stores:");
    for row in plain
        .query(
            "SELECT id, email::bytea, credit_limit::bytea FROM customers ORDER BY id",
            &[],
        )
        .await?
    {
        let email: Vec<u8> = row.get(1);
        let limit: Vec<u8> = row.get(2);
        assert!(!String::from_utf8_lossy(&email).contains("example.com"));
        println!(
            "  {} email {} B, credit limit {} B (cells, not values)",
            row.get::<_, i32>(0),
            email.len(),
            limit.len()
        );
    }
    let remaining = client
        .query_one(
            "SELECT credit_limit FROM customers WHERE email = $1",
            &[&"alan@example.com"],
        )
        .await?;
    assert_eq!(remaining.get::<_, i64>("credit_limit"), 9_000);

    // A wrong-typed value through sea-query's wrapper is refused, not
    // encrypted as the bytes of another type.
    let (sql, values) = Query::update()
        .table(Customers::Table)
        .value(Customers::CreditLimit, 1i32)
        .and_where(Expr::col(Customers::Id).eq(2))
        .build_postgres(PostgresQueryBuilder);
    match client.execute(&sql, &values.as_params()).await {
        Err(error) => println!("\nrefused: {error}"),
        Ok(_) => return Err("an int4 was encrypted into an int8 column".into()),
    }
    Ok(())
}

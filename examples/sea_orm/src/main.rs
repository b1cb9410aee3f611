//! SeaORM 2 over aepg: entities whose encrypted columns are encrypted in
//! the application, through SeaORM's proxy connection.
//!
//! SeaORM has no aepg driver; its proxy connection (`Database::connect_proxy`
//! with `DbBackend::Postgres`, feature `proxy`) hands every statement to a
//! `ProxyDatabaseTrait`: SQL text with `$n` placeholders and a list of
//! `sea_query::Value`s. `proxy::AepgProxy` runs them on an `aepg::Client`,
//! which analyzes the text like any other, encrypts the values bound for
//! encrypted columns and decrypts the rows; the rows go back to SeaORM as
//! `ProxyRow`s (column name → value). Errors are `DbErr::Query`/`DbErr::Exec`
//! carrying aepg's message, which names the table and column.
//!
//! What works, and is checked below: `ActiveModel::insert` (`INSERT …
//! RETURNING`, decrypted), `find().filter(Column::Ssn.eq(…))` and `.is_in(…)`
//! on a deterministic column, `is_null()` and `count()`, `ActiveModel::update`
//! (`UPDATE … RETURNING`), `update_many`, `delete_many`, `ORDER BY` and
//! comparisons on plaintext columns, and transactions: `db.transaction(…)`,
//! `begin()`/`commit()`/`rollback()`, nested ones (savepoints), one dropped
//! unfinished (rolled back before the next statement).
//!
//! What aepg refuses on an encrypted column, before the server sees it (see
//! the README, "What is allowed on an encrypted column"): `LIKE`
//! (`contains`, `starts_with`…), `ORDER BY`, `<`/`>` (`gt`, `between`…),
//! functions, casts, `MIN`/`MAX`/`SUM`, literals, comparing it with a
//! plaintext column or a column of another setting; and on a randomized
//! column `=`/`IN` too. A value of another type than the column's (an `i32`
//! for `int8`) is refused: give fields the column's plaintext type.
//!
//! The limits of this path:
//! - Schema: SeaORM's schema builder and migrations would declare encrypted
//!   columns as their plaintext types. Create them as `aepg.ciphertext`
//!   with SQL and assign them with `CatalogAdmin`, as below.
//! - One connection, one session: statements run one at a time, and a
//!   statement on `db` while a transaction is open runs inside it. Give each
//!   concurrent task its own proxy connection (no pool is wired here).
//! - Transactions are `BEGIN`/`COMMIT`/`ROLLBACK` (and `SAVEPOINT`) text
//!   through `batch_execute`, which aepg recognizes and tracks as a
//!   transaction block. The trait's `begin`/`commit`/`rollback` return
//!   nothing: if one fails (a `COMMIT` refused for a serialization failure,
//!   say), `commit()` still returns `Ok` and the *next* statement fails with
//!   the error. SeaORM's proxy drops the options of `transaction_with_config`
//!   and `begin_with_config`: run `SET TRANSACTION …` as the transaction's
//!   first statement instead (`execute_unprepared`, as below).
//! - `execute_unprepared` text is sent with the simple protocol: it carries
//!   no parameters (so no value for an encrypted column) and reports 0 rows
//!   affected.
//! - No streams: SeaORM's `stream` feature is off, and a proxy returns whole
//!   results anyway.
//! - Types: the adapter binds bool, integers (unsigned ones as the next wider
//!   signed type), float4/8, text and bytea, and reads int2/4/8, float4/8,
//!   bool, text, varchar, char, name and bytea, NULLs included. aepg encrypts
//!   more (dates, uuid, numeric, json, arrays); reading or binding them here
//!   needs SeaORM's `with-*` features and a few more lines in `proxy.rs`: until
//!   then they fail with an error naming the type. `ProxyRow` is a map by
//!   name, so a result with two columns of one name keeps one.
//!
//! `cargo run -p aepg-sea-orm-example` uses `DATABASE_URL` if set (where no
//! `patient` table exists yet); otherwise it starts a throwaway PostgreSQL
//! as the other examples do. sea-orm 2 needs Rust 1.94.

mod proxy;

use std::sync::Arc;

use aepg::catalog::{install, CatalogAdmin, NewEncryptionSetting};
use aepg::cell::{EncryptionMode, PlaintextType};
use aepg::{ColumnName, Encryption, EncryptionConfig};
use aepg_examples::{database, Failure};
use aepg_keystore::{KeyStoreRegistry, LocalKeyStore, MasterKeyLocation, TrustedKeyPaths};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr,
    EntityTrait, NotSet, PaginatorTrait, ProxyDatabaseTrait, QueryFilter, QueryOrder, QueryTrait,
    Set, Statement, TransactionError, TransactionTrait,
};

use proxy::AepgProxy;

/// The entity: a patient, with three encrypted columns.
mod patient {
    use sea_orm::entity::prelude::*;

    /// A row of `patient`. On the server `ssn`, `diagnosis` and `balance`
    /// are `aepg.ciphertext`; here they are their plaintext types.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "patient")]
    pub struct Model {
        /// `serial`, plaintext.
        #[sea_orm(primary_key)]
        pub id: i32,
        /// `text`, plaintext.
        pub name: String,
        /// `text`, encrypted deterministic: `=` and `IN` work on it.
        pub ssn: String,
        /// `text`, encrypted randomized: stored and read only; may be NULL.
        pub diagnosis: Option<String>,
        /// `int8`, encrypted randomized.
        pub balance: i64,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// A new patient, its id left to the `serial`.
fn new_patient(
    name: &str,
    ssn: &str,
    diagnosis: Option<&str>,
    balance: i64,
) -> patient::ActiveModel {
    patient::ActiveModel {
        id: NotSet,
        name: Set(name.to_owned()),
        ssn: Set(ssn.to_owned()),
        diagnosis: Set(diagnosis.map(str::to_owned)),
        balance: Set(balance),
    }
}

/// The patient of a social security number, if any.
async fn by_ssn(db: &DatabaseConnection, ssn: &str) -> Result<Option<patient::Model>, DbErr> {
    patient::Entity::find()
        .filter(patient::Column::Ssn.eq(ssn))
        .one(db)
        .await
}

#[tokio::main]
async fn main() -> Result<(), Failure> {
    let (config, _throwaway) = database("sea_orm").await?;
    let (mut plain, connection) = tokio_postgres::connect(&config, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);

    // A master key in a local key store, the catalog, a column key, and
    // three settings: the ssn deterministic (searchable by equality), the
    // diagnosis and the balance randomized.
    let key_dir = tempfile::tempdir()?;
    let key_store = LocalKeyStore::open(key_dir.path())?;
    key_store.generate_key("cmk.pem", 2048).await?;
    let mut registry = KeyStoreRegistry::new();
    registry.register(Arc::new(key_store), TrustedKeyPaths::only(["cmk.pem"]))?;
    install(&mut plain).await?;
    let admin = CatalogAdmin::new(registry.clone());
    let suffix = std::process::id();
    let master_key = format!("sea-orm-cmk-{suffix}");
    let location = MasterKeyLocation::new("local", "cmk.pem");
    admin
        .register_master_key(&mut plain, &master_key, &location)
        .await?;
    let key_id = admin
        .create_column_key(&mut plain, &master_key, &location)
        .await?;
    let ssn_setting = format!("ssn-{suffix}");
    let diagnosis_setting = format!("diagnosis-{suffix}");
    let balance_setting = format!("balance-{suffix}");
    for (name, sql_type, mode) in [
        (&ssn_setting, "text", EncryptionMode::Deterministic),
        (&diagnosis_setting, "text", EncryptionMode::Randomized),
        (&balance_setting, "int8", EncryptionMode::Randomized),
    ] {
        let setting =
            NewEncryptionSetting::new(name.clone(), PlaintextType::parse(sql_type)?, mode, key_id);
        admin.create_setting(&mut plain, &setting).await?;
    }
    // The table is made by hand: SeaORM's schema builder would declare the
    // encrypted columns as their plaintext types.
    plain
        .batch_execute(
            "CREATE TABLE patient (id serial PRIMARY KEY, name text NOT NULL, \
             ssn aepg.ciphertext NOT NULL, diagnosis aepg.ciphertext, \
             balance aepg.ciphertext NOT NULL)",
        )
        .await?;
    for (column, setting) in [
        ("ssn", &ssn_setting),
        ("diagnosis", &diagnosis_setting),
        ("balance", &balance_setting),
    ] {
        let column = ColumnName::new("public", "patient", column);
        admin.assign_column(&mut plain, &column, setting).await?;
    }

    // SeaORM's proxy connection, run by an aepg client.
    let encryption = Encryption::new(EncryptionConfig::new(registry));
    let (client, connection) = aepg::connect(&config, tokio_postgres::NoTls, encryption).await?;
    tokio::spawn(connection);
    let proxy: Box<dyn ProxyDatabaseTrait> = Box::new(AepgProxy::new(client));
    let db = Database::connect_proxy(DbBackend::Postgres, Arc::new(proxy)).await?;

    // INSERT … RETURNING: the ActiveModel comes back decrypted.
    for (name, ssn, diagnosis, balance) in [
        ("Ada", "078-05-1120", None, 1_250i64),
        ("Grace", "219-09-9999", Some("hypertension"), 0),
        ("Alan", "457-55-5462", Some("hay fever"), 310),
    ] {
        let inserted = new_patient(name, ssn, diagnosis, balance)
            .insert(&db)
            .await?;
        assert_eq!(
            (
                inserted.name.as_str(),
                inserted.ssn.as_str(),
                inserted.diagnosis.as_deref(),
                inserted.balance
            ),
            (name, ssn, diagnosis, balance)
        );
        println!("inserted {name} as id {}", inserted.id);
    }

    // WHERE ssn = $1: equality on a deterministic column.
    let query = patient::Entity::find().filter(patient::Column::Ssn.eq("219-09-9999"));
    println!("\n[{}]", query.build(DbBackend::Postgres).sql);
    let grace = query.one(&db).await?.ok_or("Grace not found by her ssn")?;
    assert_eq!(grace.name, "Grace");
    assert_eq!(grace.diagnosis.as_deref(), Some("hypertension"));
    println!("  found {} ({:?})", grace.name, grace.diagnosis);

    // WHERE ssn IN ($1, $2) ORDER BY id: ORDER BY a plaintext column.
    let query = patient::Entity::find()
        .filter(patient::Column::Ssn.is_in(["078-05-1120", "457-55-5462"]))
        .order_by_asc(patient::Column::Id);
    println!("[{}]", query.build(DbBackend::Postgres).sql);
    let found = query.all(&db).await?;
    let names: Vec<&str> = found.iter().map(|patient| patient.name.as_str()).collect();
    assert_eq!(names, ["Ada", "Alan"]);
    for patient in &found {
        println!(
            "  {} {:<5} {} {:<12} balance {}",
            patient.id,
            patient.name,
            patient.ssn,
            patient.diagnosis.as_deref().unwrap_or("(none)"),
            patient.balance
        );
    }
    let ada = found.first().ok_or("Ada not found")?.clone();
    let alan = found.get(1).ok_or("Alan not found")?.clone();

    // WHERE diagnosis IS NULL, counted.
    let undiagnosed = patient::Entity::find()
        .filter(patient::Column::Diagnosis.is_null())
        .count(&db)
        .await?;
    assert_eq!(undiagnosed, 1);
    println!("patients without a diagnosis: {undiagnosed}");

    // UPDATE … RETURNING through the ActiveModel, and UPDATE … WHERE ssn = $2.
    let mut changed: patient::ActiveModel = alan.into();
    changed.diagnosis = Set(Some("pollen allergy".to_owned()));
    changed.balance = Set(900);
    let alan = changed.update(&db).await?;
    assert_eq!(alan.diagnosis.as_deref(), Some("pollen allergy"));
    assert_eq!(alan.balance, 900);
    let updated = patient::Entity::update_many()
        .col_expr(patient::Column::Balance, Expr::value(0i64))
        .filter(patient::Column::Ssn.eq(ada.ssn.as_str()))
        .exec(&db)
        .await?;
    assert_eq!(updated.rows_affected, 1);
    println!("\nupdated Alan's diagnosis and balance; set Ada's balance to 0");

    // DELETE … WHERE ssn = $1.
    let deleted = patient::Entity::delete_many()
        .filter(patient::Column::Ssn.eq(grace.ssn.as_str()))
        .exec(&db)
        .await?;
    assert_eq!(deleted.rows_affected, 1);
    assert!(by_ssn(&db, &grace.ssn).await?.is_none());
    println!("deleted Grace");

    // A committed transaction, with a savepoint rolled back inside it.
    let edsger = db
        .transaction::<_, patient::Model, DbErr>(|txn| {
            Box::pin(async move {
                // SeaORM's proxy connection drops the options of
                // `transaction_with_config`: set them as the first statement.
                txn.execute_unprepared("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                    .await?;
                let show =
                    Statement::from_string(DbBackend::Postgres, "SHOW transaction_isolation");
                let isolation: String = txn
                    .query_one_raw(show)
                    .await?
                    .ok_or_else(|| DbErr::Custom("SHOW returned no row".to_owned()))?
                    .try_get("", "transaction_isolation")?;
                assert_eq!(isolation, "repeatable read");
                let edsger = new_patient("Edsger", "123-45-6789", Some("migraine"), 75)
                    .insert(txn)
                    .await?;
                let savepoint = txn.begin().await?;
                new_patient("Barbara", "987-65-4321", None, 5)
                    .insert(&savepoint)
                    .await?;
                savepoint.rollback().await?;
                Ok(edsger)
            })
        })
        .await?;
    assert!(by_ssn(&db, "123-45-6789").await?.is_some());
    assert!(by_ssn(&db, "987-65-4321").await?.is_none());
    println!(
        "\ntransaction committed (repeatable read): Edsger in, Barbara's savepoint rolled back"
    );

    // A transaction whose closure fails is rolled back, and so is one
    // dropped without a commit.
    let outcome = db
        .transaction::<_, (), DbErr>(|txn| {
            Box::pin(async move {
                new_patient("Mallory", "666-00-0000", None, 1)
                    .insert(txn)
                    .await?;
                Err(DbErr::Custom("changed my mind".to_owned()))
            })
        })
        .await;
    assert!(matches!(outcome, Err(TransactionError::Transaction(_))));
    {
        let txn = db.begin().await?;
        new_patient("Eve", "555-55-5555", None, 2)
            .insert(&txn)
            .await?;
    }
    assert!(by_ssn(&db, "666-00-0000").await?.is_none());
    assert!(by_ssn(&db, "555-55-5555").await?.is_none());
    println!("transactions rolled back: Mallory (closure failed), Eve (dropped)");

    // What aepg refuses on encrypted columns, before the server sees it.
    println!();
    for (what, outcome) in [
        (
            "LIKE",
            patient::Entity::find()
                .filter(patient::Column::Ssn.like("078%"))
                .all(&db)
                .await,
        ),
        (
            "ORDER BY",
            patient::Entity::find()
                .order_by_asc(patient::Column::Ssn)
                .all(&db)
                .await,
        ),
        (
            "<",
            patient::Entity::find()
                .filter(patient::Column::Balance.lt(100i64))
                .all(&db)
                .await,
        ),
    ] {
        match outcome {
            Err(error) => {
                let message = error.to_string();
                assert!(message.contains(what), "{message}");
                assert!(message.contains("public.patient."), "{message}");
                println!("refused {what}: {message}");
            }
            Ok(_) => return Err(format!("{what} on an encrypted column ran").into()),
        }
    }

    // A value of another type than the column's is refused, not encrypted
    // as the bytes of another type (SeaORM's entities bind the field's type;
    // a hand-written expression can bind any).
    let wrong = patient::Entity::update_many()
        .col_expr(patient::Column::Balance, Expr::value(1i32))
        .filter(patient::Column::Id.eq(ada.id))
        .exec(&db)
        .await;
    match wrong {
        Err(error) => {
            let message = error.to_string();
            assert!(message.contains("public.patient.balance"), "{message}");
            assert!(message.contains("does not fit"), "{message}");
            println!("refused an int4 for an int8: {message}");
        }
        Ok(_) => return Err("an int4 was encrypted into an int8 column".into()),
    }

    // What the server stores: ciphertext only. Through SeaORM: plaintext.
    let expected = [
        ("Ada", "078-05-1120", None, 0i64),
        ("Alan", "457-55-5462", Some("pollen allergy"), 900),
        ("Edsger", "123-45-6789", Some("migraine"), 75),
    ];
    println!("\nwhat the server stores:");
    let stored = plain
        .query(
            "SELECT id, name, ssn::bytea, diagnosis::bytea, balance::bytea \
             FROM patient ORDER BY id",
            &[],
        )
        .await?;
    assert_eq!(stored.len(), expected.len());
    for row in &stored {
        let ssn: Vec<u8> = row.try_get(2)?;
        let diagnosis: Option<Vec<u8>> = row.try_get(3)?;
        let balance: Vec<u8> = row.try_get(4)?;
        for (_, plaintext_ssn, plaintext_diagnosis, _) in expected {
            assert!(!contains(&ssn, plaintext_ssn.as_bytes()));
            if let (Some(cell), Some(plaintext)) = (&diagnosis, plaintext_diagnosis) {
                assert!(!contains(cell, plaintext.as_bytes()));
            }
        }
        println!(
            "  {} {:<6} ssn {} B, diagnosis {}, balance {} B (cells, not values)",
            row.try_get::<_, i32>(0)?,
            row.try_get::<_, &str>(1)?,
            ssn.len(),
            diagnosis.map_or("NULL".to_owned(), |cell| format!("{} B", cell.len())),
            balance.len()
        );
    }
    let decrypted = patient::Entity::find()
        .order_by_asc(patient::Column::Id)
        .all(&db)
        .await?;
    let decrypted: Vec<_> = decrypted
        .iter()
        .map(|p| {
            (
                p.name.as_str(),
                p.ssn.as_str(),
                p.diagnosis.as_deref(),
                p.balance,
            )
        })
        .collect();
    assert_eq!(decrypted, expected);
    assert_eq!(decrypted.last().map(|p| p.0), Some(edsger.name.as_str()));
    println!(
        "read back through SeaORM: {} patients, decrypted",
        decrypted.len()
    );
    Ok(())
}

/// Whether `needle` occurs in `haystack`.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

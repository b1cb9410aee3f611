//! One attack's stage: an encrypted database on the logging server, the
//! application's pins exported before the attack, and three clients.

use std::sync::Mutex;

use aepg::catalog::Pins;
use aepg::cell::EncryptionMode::{Deterministic, Randomized};
use aepg::keystore::KeyStoreRegistry;
use aepg::{Client, Encryption, EncryptionConfig};
use aepg_tests::fixture::EncryptedDatabase;
use aepg_tests::{DedicatedServer, WireTap};

use super::workload::{Operation, Text};

/// The three clients every attack is tried against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Created after the attack, no pins.
    Fresh,
    /// Created after the attack, with the pin file exported before it.
    Pinned,
    /// Created and used before the attack (its catalog, analyses and
    /// prepared statements are warm), used again after it.
    Warm,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Fresh, Kind::Pinned, Kind::Warm];
}

/// The server everything runs on, logging every statement and parameter,
/// and the tap that records every byte clients send it.
pub struct Lab {
    pub server: DedicatedServer,
    pub tap: WireTap,
    /// Every plaintext any workload bound for an encrypted column.
    needles: Mutex<Vec<String>>,
}

impl Lab {
    pub async fn start() -> Self {
        let server = DedicatedServer::start(&[
            ("log_statement", "all"),
            ("log_parameter_max_length", "-1"),
            ("log_parameter_max_length_on_error", "-1"),
            ("log_min_error_statement", "error"),
        ])
        .await
        .unwrap();
        let tap = WireTap::start(&server.config()).await;
        Self {
            server,
            tap,
            needles: Mutex::new(Vec::new()),
        }
    }

    /// A plaintext for an encrypted column, unique in the whole run.
    pub fn needle(&self, attack: &str, kind: Kind, what: &str) -> String {
        let needle = format!("SECRET-{attack}-{kind:?}-{what}-{}", rand::random::<u32>());
        self.needles.lock().unwrap().push(needle.clone());
        needle
    }

    pub fn needles(&self) -> Vec<String> {
        self.needles.lock().unwrap().clone()
    }
}

/// One attack's database, the pins exported before the attack, and the
/// warm client.
pub struct Scene<'l> {
    pub lab: &'l Lab,
    pub name: &'static str,
    pub db: EncryptedDatabase,
    pub pins: Pins,
    pub warm: Client,
    /// The key stores clients made after the attack trust.
    pub registry: KeyStoreRegistry,
}

/// The application's schema: `patients` with a deterministic ssn, a
/// randomized diagnosis and an `email` ciphertext column assigned only by
/// attacks that need it; a function the application calls.
const SCHEMA: &str = "
    CREATE TABLE patients (
        id int, name text, ssn aepg.ciphertext, diagnosis aepg.ciphertext, email aepg.ciphertext);
    CREATE FUNCTION app_hook() RETURNS int LANGUAGE sql AS 'SELECT 1';";

impl<'l> Scene<'l> {
    pub async fn new(lab: &'l Lab, name: &'static str) -> Scene<'l> {
        let db = EncryptedDatabase::on(lab.server.create_database(name).await.unwrap()).await;
        db.setting("ssn", "text", Deterministic).await;
        db.setting("diagnosis", "text", Randomized).await;
        db.setting("email", "text", Deterministic).await;
        db.table(
            SCHEMA,
            &[
                ("patients", "ssn", "ssn"),
                ("patients", "diagnosis", "diagnosis"),
            ],
        )
        .await;
        let warm = Self::client_for(&db, lab, &db.registry, Pins::new()).await;
        let scene = Scene {
            lab,
            name,
            pins: Pins::new(),
            registry: db.registry.clone(),
            db,
            warm,
        };
        let pins = Pins::of_catalog(&scene.db.admin.load(&scene.db.plain).await.unwrap());
        // Warm up: the warm client prepares every workload text.
        for operation in Operation::ALL {
            let outcome = operation
                .run(&scene.warm, lab, name, Kind::Warm, Text::Usual)
                .await;
            assert!(
                outcome.is_ok(),
                "{name}: warm-up {operation:?}: {outcome:?}"
            );
        }
        Scene { pins, ..scene }
    }

    async fn client_for(
        db: &EncryptedDatabase,
        lab: &Lab,
        registry: &KeyStoreRegistry,
        pins: Pins,
    ) -> Client {
        let encryption = Encryption::new(EncryptionConfig::new(registry.clone()).pins(pins));
        db.client_at(&lab.tap.route(&db.database.config()), encryption)
            .await
    }

    /// A client of `kind` for after the attack.
    pub async fn client(&self, kind: Kind) -> Option<Client> {
        let pins = match kind {
            Kind::Fresh => Pins::new(),
            Kind::Pinned => self.pins.clone(),
            Kind::Warm => return None,
        };
        Some(Self::client_for(&self.db, self.lab, &self.registry, pins).await)
    }

    /// Assigns `patients.email` as the administrator (a legitimate change:
    /// a new generation, announced).
    pub async fn encrypt_email(&mut self) {
        self.db
            .admin
            .assign_column(
                &mut *self.db.admin_connection().await,
                &aepg::ColumnName::new("public", "patients", "email"),
                "email",
            )
            .await
            .unwrap();
        self.pins = Pins::of_catalog(&self.db.admin.load(&self.db.plain).await.unwrap());
        // The warm client catches up with the new generation: a load, not
        // `catalog()`, which may answer from the catalog it holds when the
        // announcement of the change has not reached it yet (then it never
        // saw the generation the attack rolls back, and takes the replay for
        // the current catalog, as it should).
        self.warm.refresh_catalog().await.unwrap();
    }

    /// Runs `sql` as the attacker: a superuser on the server side.
    pub async fn attack(&self, sql: &str) {
        self.db
            .plain
            .batch_execute(sql)
            .await
            .unwrap_or_else(|error| panic!("{}: attack SQL failed: {error:?}", self.name));
    }

    /// The application's role (the schema named after it comes first on
    /// the default search path).
    pub async fn role(&self) -> String {
        self.db
            .plain
            .query_one("SELECT current_user::text", &[])
            .await
            .unwrap()
            .get(0)
    }

    pub fn database_name(&self) -> &str {
        self.db.database.name()
    }
}

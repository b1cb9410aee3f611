//! The attacks: what a superuser of the server, without any master key,
//! does to the catalog, the schema and the session, and what each kind of
//! client must answer.

use std::future::Future;
use std::pin::Pin;

use aepg::catalog::install;
use aepg::keystore::{
    ColumnKey, KeyStoreRegistry, MasterKeyLocation, MemoryKeyStore, TrustedKeyPaths,
};
use aepg::record::SignedRecord;

use super::scene::Scene;
use super::workload::Operation;

/// What one kind of client must answer to an attack.
#[derive(Clone, Copy, Debug)]
pub enum Expect {
    /// Every operation is refused, each with a message containing one of
    /// these fragments.
    Refused(&'static [&'static str]),
    /// Operations may be refused (with a message containing one of these
    /// fragments) or work; at least one is refused.
    SomeRefused(&'static [&'static str]),
    /// Operations may fail (with a message containing one of these
    /// fragments) or work: what matters is that nothing leaks.
    Safe(&'static [&'static str]),
    /// Every operation works.
    Works,
    /// The known limit of a client with nothing to compare against (no
    /// pins, nothing seen): it accepts a replayed catalog. Its workload is
    /// not run, since it would send plaintext; the test checks that it does
    /// accept, so that the limit stays documented truthfully.
    AcceptsReplay,
}

type Step<'a> = Pin<Box<dyn Future<Output = ()> + 'a>>;

/// One attack.
pub struct Attack {
    pub name: &'static str,
    /// What the attacker does, after the warm client has warmed up.
    pub run: for<'a, 'l> fn(&'a mut Scene<'l>) -> Step<'a>,
    /// The fresh, pinned and warm clients' answers.
    pub expect: [Expect; 3],
    /// The workload run after the attack.
    pub workload: &'static [Operation],
}

const MANIFEST_LISTS: &str = "manifest lists it as encrypted";
const PINNED: &str = "pinned column";
const TAMPERED: &str = "tampered";
const NO_MANIFEST: &str = "no column manifest signed by a master key this application trusts";
const SERVER_TYPES: &str = "the server types it";
const DATABASE: &str = "database error";
const SHADOWED: &str = "has encrypted columns (qualify the name)";
const MISSING: &str = "missing from the database";
const ROLLED_BACK: &str = "rolled back";
const REPLACED: &str = "it was replaced";
const ALTERED: &str = "is not aepg.ciphertext";
const LEFT_OUT: &str = "cannot be used";
const REDIRECTED: &str = "resolves to another relation";
const UNREADABLE: &str = "failed authentication";

use Expect::{AcceptsReplay, Refused, Safe, SomeRefused, Works};

pub const ATTACKS: &[Attack] = &[
    Attack {
        name: "delete_assignment_and_retype_column",
        run: |s| {
            Box::pin(async move {
                s.attack(
                    "DELETE FROM aepg.column_assignments WHERE column_name = 'ssn';
                      ALTER TABLE patients ALTER COLUMN ssn TYPE text USING NULL",
                )
                .await;
            })
        },
        expect: [
            SomeRefused(&[MANIFEST_LISTS]),
            Refused(&[PINNED]),
            Safe(&[SERVER_TYPES, DATABASE]),
        ],
        workload: &Operation::ALL,
    },
    Attack {
        name: "delete_every_assignment",
        run: |s| {
            Box::pin(async move {
                s.attack("DELETE FROM aepg.column_assignments").await;
            })
        },
        expect: [SomeRefused(&[MANIFEST_LISTS]), Refused(&[PINNED]), Works],
        workload: &Operation::ALL,
    },
    Attack {
        name: "retarget_assignment_row",
        run: |s| {
            Box::pin(async move {
                s.attack(
                    "UPDATE aepg.column_assignments SET setting_id =
                        (SELECT id FROM aepg.encryption_settings WHERE name = 'email')
                      WHERE column_name = 'ssn'",
                )
                .await;
            })
        },
        expect: [SomeRefused(&[TAMPERED]), Refused(&[PINNED]), Works],
        workload: &Operation::ALL,
    },
    Attack {
        name: "swap_setting_records",
        run: |s| {
            Box::pin(async move {
                s.attack("UPDATE aepg.encryption_settings AS a SET record = b.record, signature = b.signature
                      FROM aepg.encryption_settings AS b
                      WHERE (a.name, b.name) IN (('ssn', 'email'), ('email', 'ssn'))").await;
            })
        },
        expect: [
            SomeRefused(&[TAMPERED, LEFT_OUT]),
            Refused(&[PINNED]),
            Works,
        ],
        workload: &Operation::ALL,
    },
    Attack {
        name: "weaken_randomized_setting",
        run: |s| {
            Box::pin(async move {
                // The mode byte of "diagnosis": randomized (2) becomes deterministic (1).
                s.attack(
                    "UPDATE aepg.encryption_settings
                      SET record = set_byte(record, 6 + 4 + 2 + length(name) + 12, 1)
                      WHERE name = 'diagnosis'",
                )
                .await;
            })
        },
        expect: [SomeRefused(&[LEFT_OUT]), Refused(&[PINNED]), Works],
        workload: &Operation::ALL,
    },
    Attack {
        name: "delete_manifests",
        run: |s| {
            Box::pin(async move {
                s.attack("DELETE FROM aepg.manifests").await;
            })
        },
        expect: [Refused(&[NO_MANIFEST]), Refused(&[NO_MANIFEST]), Works],
        workload: &Operation::ALL,
    },
    Attack {
        name: "delete_manifests_and_announce",
        run: |s| {
            Box::pin(async move {
                s.attack(
                    "DELETE FROM aepg.manifests;
                      UPDATE aepg.catalog_version SET generation = generation + 1;
                      NOTIFY aepg_catalog",
                )
                .await;
            })
        },
        expect: [
            Refused(&[NO_MANIFEST]),
            Refused(&[NO_MANIFEST]),
            Refused(&[NO_MANIFEST]),
        ],
        workload: &Operation::ALL,
    },
    Attack {
        name: "replay_older_manifest_and_unencrypt_a_newer_column",
        run: |s| {
            Box::pin(async move {
                s.attack(
                    "CREATE TABLE saved_manifest AS SELECT * FROM aepg.manifests;
                      CREATE TABLE saved_generation AS SELECT generation FROM aepg.catalog_version",
                )
                .await;
                s.encrypt_email().await;
                s.attack("UPDATE aepg.manifests m SET generation = o.generation, record = o.record,
                             signature = o.signature
                      FROM saved_manifest o WHERE o.master_key_name = m.master_key_name;
                      UPDATE aepg.catalog_version SET generation = (SELECT generation FROM saved_generation);
                      DELETE FROM aepg.column_assignments WHERE column_name = 'email';
                      ALTER TABLE patients ALTER COLUMN email TYPE text USING NULL;
                      NOTIFY aepg_catalog").await;
            })
        },
        expect: [
            AcceptsReplay,
            Refused(&[ROLLED_BACK]),
            Refused(&[ROLLED_BACK]),
        ],
        workload: &[Operation::InsertEmail],
    },
    Attack {
        name: "replace_catalog_with_another_databases",
        run: |s| {
            Box::pin(async move {
                // Another database whose catalog shares the master key; its
                // records verify there, under its own identity.
                let other = super::scene::Scene::new(s.lab, "replay_source").await;
                let copy = |table: &str| format!("SELECT * FROM aepg.{table}");
                let mut statements = vec!["SET session_replication_role = replica".to_owned()];
                for table in [
                    "column_assignments",
                    "encryption_settings",
                    "manifests",
                    "column_key_values",
                    "column_keys",
                    "catalog_version",
                ] {
                    statements.push(format!("DELETE FROM aepg.{table}"));
                }
                for table in [
                    "catalog_version",
                    "column_keys",
                    "column_key_values",
                    "manifests",
                    "encryption_settings",
                    "column_assignments",
                ] {
                    let rows = other.db.plain.query(&copy(table), &[]).await.unwrap();
                    for row in rows {
                        let values: Vec<String> =
                            (0..row.len()).map(|index| literal(&row, index)).collect();
                        statements.push(format!(
                            "INSERT INTO aepg.{table} VALUES ({})",
                            values.join(", ")
                        ));
                    }
                }
                statements.push("SET session_replication_role = origin".to_owned());
                statements.push("NOTIFY aepg_catalog".to_owned());
                s.attack(&statements.join(";\n")).await;
            })
        },
        // The other catalog lists the same columns, under keys the attacker
        // does not hold either: a fresh client encrypts under them, and
        // cannot read the cells of this database's keys.
        expect: [
            SomeRefused(&[UNREADABLE]),
            Refused(&[REPLACED]),
            Refused(&[REPLACED]),
        ],
        workload: &Operation::ALL,
    },
    Attack {
        name: "repoint_master_key_to_an_untrusted_path",
        run: |s| {
            Box::pin(async move {
                s.attack("UPDATE aepg.master_keys SET key_path = 'attacker-key'")
                    .await;
            })
        },
        expect: [Refused(&[NO_MANIFEST]), Refused(&[NO_MANIFEST]), Works],
        workload: &Operation::ALL,
    },
    Attack {
        name: "repoint_master_key_and_announce",
        run: |s| {
            Box::pin(async move {
                s.attack(
                    "UPDATE aepg.master_keys SET key_path = 'attacker-key';
                      UPDATE aepg.catalog_version SET generation = generation + 1;
                      NOTIFY aepg_catalog",
                )
                .await;
            })
        },
        expect: [
            Refused(&[NO_MANIFEST]),
            Refused(&[NO_MANIFEST]),
            Refused(&[NO_MANIFEST]),
        ],
        workload: &Operation::ALL,
    },
    Attack {
        name: "column_key_wrapped_by_an_attacker_key",
        run: |s| {
            Box::pin(async move {
                let attacker = MemoryKeyStore::new();
                attacker.generate_key("cmk1", 2048).unwrap();
                let mut registry = KeyStoreRegistry::new();
                registry
                    .register(std::sync::Arc::new(attacker), TrustedKeyPaths::Any)
                    .unwrap();
                let catalog = aepg::catalog::catalog_id(&s.db.plain).await.unwrap();
                let forged = SignedRecord::seal(
                    &registry,
                    &catalog,
                    "cmk1",
                    &MasterKeyLocation::new("memory", "cmk1"),
                    s.db.key_id,
                    &ColumnKey::generate().unwrap(),
                )
                .await
                .unwrap();
                s.db.plain
                    .execute(
                        "UPDATE aepg.column_key_values SET record = $1, signature = $2",
                        &[&forged.canonical_bytes(), &forged.signature()],
                    )
                    .await
                    .unwrap();
            })
        },
        expect: [
            SomeRefused(&[LEFT_OUT, TAMPERED]),
            Refused(&[PINNED]),
            Works,
        ],
        workload: &Operation::ALL,
    },
    Attack {
        name: "retype_an_encrypted_column",
        run: |s| {
            Box::pin(async move {
                s.attack("ALTER TABLE patients ALTER COLUMN diagnosis TYPE text USING NULL")
                    .await;
            })
        },
        expect: [
            SomeRefused(&[ALTERED]),
            Refused(&[PINNED]),
            Safe(&[SERVER_TYPES, DATABASE]),
        ],
        workload: &Operation::ALL,
    },
    Attack {
        name: "rename_table_and_shadow_it_in_the_users_schema",
        run: |s| {
            Box::pin(async move {
                let role = s.role().await;
                s.attack(&format!(
                "ALTER TABLE patients RENAME TO patients_old;
                 CREATE SCHEMA \"{role}\";
                 CREATE TABLE \"{role}\".patients (id int, name text, ssn text, diagnosis text, email text)"
            ))
            .await;
            })
        },
        expect: [
            SomeRefused(&[MISSING, SHADOWED]),
            Refused(&[PINNED]),
            Safe(&[SERVER_TYPES, SHADOWED, MISSING, REDIRECTED, DATABASE]),
        ],
        workload: &Operation::ALL,
    },
    Attack {
        name: "shadow_with_an_updatable_view",
        run: |s| {
            Box::pin(async move {
                let role = s.role().await;
                s.attack(&format!(
                    "CREATE TABLE sink (id int, name text, ssn text, diagnosis text, email text);
                 CREATE SCHEMA \"{role}\";
                 CREATE VIEW \"{role}\".patients AS SELECT * FROM public.sink"
                ))
                .await;
            })
        },
        expect: [
            SomeRefused(&[SHADOWED]),
            SomeRefused(&[SHADOWED]),
            Safe(&[SERVER_TYPES, SHADOWED, REDIRECTED, DATABASE]),
        ],
        workload: &Operation::ALL,
    },
    Attack {
        name: "shadow_with_a_temporary_table_made_by_a_hooked_function",
        run: |s| {
            Box::pin(async move {
                s.attack(
                "CREATE OR REPLACE FUNCTION app_hook() RETURNS int LANGUAGE plpgsql AS $$
                 BEGIN
                     CREATE TEMP TABLE IF NOT EXISTS patients (id int, name text, ssn text, diagnosis text, email text);
                     RETURN 1;
                 END $$",
            )
            .await;
            })
        },
        expect: [
            SomeRefused(&[SHADOWED]),
            SomeRefused(&[SHADOWED]),
            Safe(&[SHADOWED, SERVER_TYPES, REDIRECTED, DATABASE]),
        ],
        workload: &Operation::ALL,
    },
    Attack {
        name: "search_path_set_for_the_role_in_the_database",
        run: |s| {
            Box::pin(async move {
                let (role, database) = (s.role().await, s.database_name().to_owned());
                s.attack(&format!(
                "CREATE SCHEMA evil;
                 CREATE TABLE evil.patients (id int, name text, ssn text, diagnosis text, email text);
                 ALTER ROLE \"{role}\" IN DATABASE \"{database}\" SET search_path = evil, public"
            ))
            .await;
            })
        },
        // The warm client's session keeps its search path.
        expect: [SomeRefused(&[SHADOWED]), SomeRefused(&[SHADOWED]), Works],
        workload: &Operation::ALL,
    },
    Attack {
        name: "search_path_changed_by_a_hooked_function",
        run: |s| {
            Box::pin(async move {
                s.attack(
                "CREATE SCHEMA evil;
                 CREATE TABLE evil.patients (id int, name text, ssn text, diagnosis text, email text);
                 CREATE OR REPLACE FUNCTION app_hook() RETURNS int LANGUAGE plpgsql AS $$
                 BEGIN
                     PERFORM set_config('search_path', 'evil, public', false);
                     RETURN 1;
                 END $$",
            )
            .await;
            })
        },
        expect: [
            SomeRefused(&[SHADOWED]),
            SomeRefused(&[SHADOWED]),
            Safe(&[SHADOWED, SERVER_TYPES, REDIRECTED, DATABASE]),
        ],
        workload: &Operation::ALL,
    },
    Attack {
        name: "rule_copies_inserted_values",
        run: |s| {
            Box::pin(async move {
                s.attack(
                "CREATE TABLE stolen (ssn text, diagnosis text);
                 CREATE RULE steal AS ON INSERT TO patients
                     DO ALSO INSERT INTO stolen VALUES (NEW.ssn::bytea::text, NEW.diagnosis::bytea::text)",
            )
            .await;
            })
        },
        // The rule only ever sees ciphertext.
        expect: [Works, Works, Works],
        workload: &Operation::ALL,
    },
    Attack {
        name: "catalog_dropped_and_reinstalled",
        run: |s| {
            Box::pin(async move {
                s.attack("DROP SCHEMA aepg CASCADE").await;
                let mut attacker = s.db.database.connect().await;
                install(&mut attacker).await.unwrap();
                s.attack(
                    "ALTER TABLE patients ADD COLUMN ssn text, ADD COLUMN diagnosis text;
                      NOTIFY aepg_catalog",
                )
                .await;
            })
        },
        expect: [
            Refused(&[NO_MANIFEST]),
            Refused(&[NO_MANIFEST, REPLACED]),
            Refused(&[REPLACED, ROLLED_BACK]),
        ],
        workload: &Operation::ALL,
    },
    Attack {
        name: "generation_rolled_back",
        run: |s| {
            Box::pin(async move {
                s.attack("UPDATE aepg.catalog_version SET generation = 1; NOTIFY aepg_catalog")
                    .await;
            })
        },
        expect: [
            Refused(&[ROLLED_BACK]),
            Refused(&[ROLLED_BACK]),
            Refused(&[ROLLED_BACK]),
        ],
        workload: &Operation::ALL,
    },
    Attack {
        name: "catalog_identity_changed",
        run: |s| {
            Box::pin(async move {
                s.attack("UPDATE aepg.catalog_version SET instance_id = decode(md5(random()::text), 'hex');
                      NOTIFY aepg_catalog").await;
            })
        },
        expect: [
            Refused(&[NO_MANIFEST]),
            Refused(&[NO_MANIFEST, REPLACED]),
            Refused(&[REPLACED]),
        ],
        workload: &Operation::ALL,
    },
    Attack {
        name: "ciphertext_operators_dropped",
        run: |s| {
            Box::pin(async move {
                s.attack(
                    "DROP OPERATOR public.= (aepg.ciphertext, aepg.ciphertext);
                      DROP OPERATOR public.<> (aepg.ciphertext, aepg.ciphertext)",
                )
                .await;
            })
        },
        expect: [Works, Works, Safe(&[DATABASE])],
        workload: &Operation::ALL,
    },
    Attack {
        name: "forged_assignment_for_a_plaintext_column",
        run: |s| {
            Box::pin(async move {
                s.attack(
                    "INSERT INTO aepg.column_assignments
                          (schema_name, table_name, column_name, setting_id, record, signature)
                      SELECT 'public', 'patients', 'name', setting_id, record, signature
                      FROM aepg.column_assignments WHERE column_name = 'ssn'",
                )
                .await;
            })
        },
        // A forged record makes its column unusable, never plaintext.
        expect: [SomeRefused(&[TAMPERED]), SomeRefused(&[TAMPERED]), Works],
        workload: &Operation::ALL,
    },
    Attack {
        name: "announcements_spammed",
        run: |s| {
            Box::pin(async move {
                s.attack(
                    "NOTIFY aepg_catalog, '999999'; NOTIFY aepg_catalog, 'x'; NOTIFY aepg_catalog",
                )
                .await;
            })
        },
        expect: [Works, Works, Works],
        workload: &Operation::ALL,
    },
    Attack {
        name: "cells_tampered_and_moved_between_settings",
        run: |s| {
            Box::pin(async move {
                s.attack("UPDATE patients SET ssn = diagnosis
                          WHERE id = (SELECT min(id) FROM patients WHERE diagnosis IS NOT NULL);
                      UPDATE patients
                          SET diagnosis = set_byte(diagnosis::bytea, 30, get_byte(diagnosis::bytea, 30) # 1)::aepg.ciphertext
                          WHERE id = (SELECT max(id) FROM patients WHERE diagnosis IS NOT NULL)").await;
            })
        },
        expect: [
            SomeRefused(&["another column", "failed authentication"]),
            SomeRefused(&["another column", "failed authentication"]),
            SomeRefused(&["another column", "failed authentication"]),
        ],
        workload: &Operation::ALL,
    },
    Attack {
        name: "repoint_master_key_to_another_trusted_key",
        run: |s| {
            Box::pin(async move {
                // The application trusts a second master key (during a rotation,
                // say); the attacker points the first one's row at it.
                s.db.store.memory().generate_key("cmk2", 2048).unwrap();
                let mut registry = KeyStoreRegistry::new();
                registry
                    .register(s.db.store.clone(), TrustedKeyPaths::only(["cmk1", "cmk2"]))
                    .unwrap();
                s.registry = registry;
                s.attack("UPDATE aepg.master_keys SET key_path = 'cmk2'")
                    .await;
            })
        },
        expect: [Refused(&[NO_MANIFEST]), Refused(&[NO_MANIFEST]), Works],
        workload: &Operation::ALL,
    },
    Attack {
        name: "swap_assignment_records",
        run: |s| {
            Box::pin(async move {
                s.attack("UPDATE aepg.column_assignments AS a SET record = b.record, signature = b.signature
                      FROM aepg.column_assignments AS b
                      WHERE (a.column_name, b.column_name) IN (('ssn', 'diagnosis'), ('diagnosis', 'ssn'))").await;
            })
        },
        expect: [SomeRefused(&[TAMPERED]), Refused(&[PINNED]), Works],
        workload: &Operation::ALL,
    },
    Attack {
        name: "delete_column_key_values",
        run: |s| {
            Box::pin(async move {
                s.attack("DELETE FROM aepg.column_key_values").await;
            })
        },
        expect: [SomeRefused(&[LEFT_OUT]), Refused(&[PINNED]), Works],
        workload: &Operation::ALL,
    },
    Attack {
        name: "table_dropped_and_recreated_as_plaintext",
        run: |s| {
            Box::pin(async move {
                s.attack("DROP TABLE patients;
                      CREATE TABLE patients (id int, name text, ssn text, diagnosis text, email text)").await;
            })
        },
        expect: [
            SomeRefused(&[ALTERED]),
            Refused(&[PINNED]),
            Safe(&[SERVER_TYPES, REDIRECTED, DATABASE]),
        ],
        workload: &Operation::ALL,
    },
];

/// A value of `row` as an SQL literal (bytea as hex), to copy rows between
/// databases as plain SQL does.
fn literal(row: &tokio_postgres::Row, index: usize) -> String {
    use tokio_postgres::types::Type;
    let ty = row.columns()[index].type_().clone();
    let quoted = |text: String| format!("'{}'", text.replace('\'', "''"));
    match ty {
        Type::BYTEA => match row.get::<_, Option<Vec<u8>>>(index) {
            Some(bytes) => format!("'\\x{}'::bytea", hex::encode(bytes)),
            None => "NULL".to_owned(),
        },
        Type::INT4 => row
            .get::<_, Option<i32>>(index)
            .map_or("NULL".to_owned(), |v| v.to_string()),
        Type::INT8 => row
            .get::<_, Option<i64>>(index)
            .map_or("NULL".to_owned(), |v| v.to_string()),
        Type::BOOL => row
            .get::<_, Option<bool>>(index)
            .map_or("NULL".to_owned(), |v| v.to_string()),
        Type::TEXT => row
            .get::<_, Option<String>>(index)
            .map_or("NULL".to_owned(), quoted),
        _ => "DEFAULT".to_owned(),
    }
}

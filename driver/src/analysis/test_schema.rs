//! The schema the analyzer's tests and fuzz targets analyze against, as an
//! in-memory [`SchemaView`].

use crate::analysis::{
    ColumnEncryption, ColumnInfo, ColumnProtection, ParameterTarget, ParameterUse, SchemaView,
    TableInfo,
};
use crate::cell::EncryptionMode;
use crate::names::{ColumnName, TableName};

/// `public.patients`, `public.visits`, `billing."Accounts"`, `public.plain`
/// and the view `public.patient_view`; search path `public`.
pub(crate) struct TestSchema {
    tables: Vec<TableInfo>,
}

const DETERMINISTIC: EncryptionMode = EncryptionMode::Deterministic;
const RANDOMIZED: EncryptionMode = EncryptionMode::Randomized;

fn plaintext(name: &str) -> ColumnInfo {
    ColumnInfo::plaintext(name)
}

fn encrypted(name: &str, setting_id: u32, mode: EncryptionMode) -> ColumnInfo {
    ColumnInfo::encrypted(
        name,
        ColumnEncryption {
            setting_id,
            setting_name: format!("setting{setting_id}").into(),
            mode,
        },
    )
}

/// A ciphertext column no verified assignment names.
fn unusable(name: &str) -> ColumnInfo {
    ColumnInfo {
        name: name.into(),
        protection: ColumnProtection::Unusable {
            reason: "it is aepg.ciphertext, but no verified assignment names it".into(),
        },
    }
}

fn table(schema: &str, name: &str, columns: Vec<ColumnInfo>) -> TableInfo {
    TableInfo::new(TableName::new(schema, name), columns)
}

impl TestSchema {
    pub(crate) fn new() -> Self {
        Self {
            tables: vec![
                table(
                    "public",
                    "patients",
                    vec![
                        plaintext("id"),
                        plaintext("name"),
                        encrypted("ssn", 1, DETERMINISTIC),
                        encrypted("diagnosis", 2, RANDOMIZED),
                        encrypted("email", 3, DETERMINISTIC),
                    ],
                ),
                table(
                    "public",
                    "visits",
                    vec![
                        plaintext("id"),
                        plaintext("patient_id"),
                        encrypted("ssn", 1, DETERMINISTIC),
                        encrypted("note", 2, RANDOMIZED),
                    ],
                ),
                table(
                    "billing",
                    "Accounts",
                    vec![
                        plaintext("Id"),
                        encrypted("owner_ssn", 1, DETERMINISTIC),
                        encrypted("card", 4, RANDOMIZED),
                    ],
                ),
                table("public", "plain", vec![plaintext("a"), plaintext("b")]),
                table(
                    "public",
                    "pairs",
                    vec![plaintext("id"), encrypted("ssn", 1, DETERMINISTIC)],
                ),
                table(
                    "public",
                    "patient_view",
                    vec![plaintext("name"), unusable("ssn")],
                ),
            ],
        }
    }

    /// The column `schema.table.column` of the fixture.
    pub(crate) fn column(&self, schema: &str, table: &str, column: &str) -> Option<&ColumnInfo> {
        self.tables
            .iter()
            .find(|info| info.name == TableName::new(schema, table))?
            .columns
            .iter()
            .find(|info| info.name == column)
    }

    /// The target a parameter gets when it meets `column` (`"patients.ssn"`,
    /// `"billing.Accounts.owner_ssn"`; schema `public` when omitted).
    pub(crate) fn target(&self, column: &str, usage: ParameterUse) -> ParameterTarget {
        let name = column_name(column);
        let encryption = self
            .column(&name.schema, &name.table, &name.column)
            .and_then(|info| info.encryption().cloned())
            .unwrap_or_else(|| panic!("{column} is not an encrypted fixture column"));
        ParameterTarget::Encrypted {
            column: name,
            encryption,
            usage,
        }
    }
}

/// `"patients.ssn"` → `public.patients.ssn`; `"billing.Accounts.card"` as written.
pub(crate) fn column_name(column: &str) -> ColumnName {
    let parts: Vec<&str> = column.split('.').collect();
    let (schema, table, column) = match parts.as_slice() {
        [table, column] => ("public", *table, *column),
        [schema, table, column] => (*schema, *table, *column),
        _ => panic!("bad column {column}"),
    };
    ColumnName::new(schema, table, column)
}

impl SchemaView for TestSchema {
    fn resolve_table(&self, schema: Option<&str>, name: &str) -> Option<TableInfo> {
        let wanted = TableName::new(schema.unwrap_or("public"), name);
        self.tables
            .iter()
            .find(|table| table.name == wanted)
            .cloned()
    }

    fn encrypted_tables_named(&self, name: &str) -> Vec<TableName> {
        self.tables
            .iter()
            .filter(|table| table.name.name == name && table.has_encrypted_columns())
            .map(|table| table.name.clone())
            .collect()
    }

    fn has_encrypted_columns(&self) -> bool {
        true
    }
}

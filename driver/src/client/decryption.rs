//! Decrypting result columns. How each column is read is decided once, when
//! its statement is prepared: from the origin the server reports, checked
//! against where the analysis resolved the column, and from what the
//! analysis says fills it. A cell is only ever decrypted under the setting
//! a signed record gives its column — never by what its header says alone.

use std::error::Error as StdError;
use std::ops::Range;
use std::sync::Arc;

use postgres_types::{FromSql, Type};
use zeroize::Zeroizing;

use super::encryption::Encryption;
use crate::analysis::{ResultColumn, ResultColumnSource};
use crate::catalog::{left_out_note, Catalog, ColumnState, EncryptionSetting};
use crate::cell::{CellCipher, CellError};
use crate::error::{DecryptError, ResultProblem};
use crate::names::ColumnName;
use crate::Error;

/// How one result column is read.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ColumnDecryption {
    /// Not encrypted: passed through.
    Plaintext,
    /// Decrypted under `setting`; a cell of another setting is an error.
    Decrypted {
        /// The table or view column it comes from, when known.
        column: Option<ColumnName>,
        /// The setting its cells must carry.
        setting: Arc<EncryptionSetting>,
    },
    /// Ciphertext this client will not decrypt: reading a value fails with
    /// this reason (`NULL` still reads as `NULL`).
    Refused {
        /// Why.
        reason: Arc<str>,
    },
}

/// A result column and how it is read, decided at prepare time.
#[derive(Clone, Debug)]
pub(crate) struct ResultColumnPlan {
    /// For messages: `schema.table.column` when known, else the result name.
    pub(crate) label: Arc<str>,
    pub(crate) decryption: ColumnDecryption,
    /// The plaintext's type, for decrypted columns.
    pub(crate) plaintext_type: Option<Type>,
}

/// Plans the decryption of `columns` against `catalog`: by the origin the
/// server reports (which must be where the analysis resolved the column),
/// else by what the analysis says fills the column.
///
/// # Errors
/// [`ResultProblem`] when the server's result columns are not the ones the
/// analysis resolved, for a statement on encrypted tables.
pub(crate) fn plan_columns(
    columns: &[tokio_postgres::Column],
    analysis: &[ResultColumn],
    touches_encrypted_table: bool,
    catalog: &Catalog,
) -> Result<Vec<ResultColumnPlan>, Error> {
    let analysis = if analysis.len() == columns.len() {
        analysis
    } else if touches_encrypted_table && !analysis.is_empty() {
        // The catalog's view of a table is stale, or a name means another
        // relation: which result columns hold cells cannot be told.
        return Err(Error::ResultMismatch {
            problem: ResultProblem::ColumnCount {
                expected: analysis.len(),
                found: columns.len(),
            },
        });
    } else {
        &[]
    };
    columns
        .iter()
        .enumerate()
        .map(|(index, column)| plan_column(column, analysis.get(index), catalog))
        .collect()
}

fn plan_column(
    column: &tokio_postgres::Column,
    analyzed: Option<&ResultColumn>,
    catalog: &Catalog,
) -> Result<ResultColumnPlan, Error> {
    let origin = column.table_oid().zip(column.column_id());
    if let (Some(expected), Some(origin)) = (analyzed.and_then(|r| r.origin.as_ref()), origin) {
        check_not_redirected(column, expected, origin, catalog)?;
    }
    let plan = decide(column, origin, analyzed, catalog);
    if let ColumnDecryption::Decrypted { .. } = plan.decryption {
        // Cells are bytes; a column the catalog calls encrypted that the
        // server types otherwise was altered behind the client's back.
        let ty = column.type_();
        if ty.oid() != catalog.ciphertext_type_oid() && *ty != Type::BYTEA {
            return Err(Error::ResultMismatch {
                problem: ResultProblem::NotCiphertext {
                    column: plan.label.to_string(),
                    server_type: ty.name().to_owned(),
                },
            });
        }
    }
    Ok(plan)
}

/// How a result column is read: by its origin, else by the analysis.
fn decide(
    column: &tokio_postgres::Column,
    origin: Option<(u32, i16)>,
    analyzed: Option<&ResultColumn>,
    catalog: &Catalog,
) -> ResultColumnPlan {
    let plan = |label: String, decryption: ColumnDecryption| {
        let plaintext_type = match &decryption {
            ColumnDecryption::Decrypted { setting, .. } => setting.sql_type(),
            _ => None,
        };
        ResultColumnPlan {
            label: label.into(),
            decryption,
            plaintext_type,
        }
    };
    let refused = |reason: &str| ColumnDecryption::Refused {
        reason: reason.into(),
    };
    if let Some(encrypted) = origin.and_then(|(table, attnum)| catalog.column_at(table, attnum)) {
        let decryption = match (&encrypted.state, catalog.usable_setting(&encrypted.name)) {
            (ColumnState::Usable { .. }, Some(setting)) => ColumnDecryption::Decrypted {
                column: Some(encrypted.name.clone()),
                setting: setting.clone(),
            },
            (ColumnState::Unusable { reason }, _) => ColumnDecryption::Refused {
                reason: reason.clone(),
            },
            _ => refused("its encryption setting was not loaded"),
        };
        return plan(encrypted.name.to_string(), decryption);
    }
    let label = column.name().to_owned();
    if origin.is_some_and(|(table, attnum)| catalog.is_unassigned_ciphertext_column(table, attnum))
    {
        let reason = format!(
            "the column is aepg.ciphertext but has no verified encryption assignment{}",
            left_out_note(catalog.skipped())
        );
        return plan(label, refused(&reason));
    }
    let decryption = match analyzed.map(|r| &r.source) {
        Some(ResultColumnSource::Encrypted(encryption)) => {
            match catalog.settings().get(&encryption.setting_id) {
                Some(setting) => ColumnDecryption::Decrypted {
                    column: analyzed.and_then(|r| r.origin.clone()),
                    setting: setting.clone(),
                },
                None => refused("its encryption setting was not loaded"),
            }
        }
        Some(ResultColumnSource::Unusable) => {
            refused("its values are ciphertext this client cannot use")
        }
        _ if column.type_().oid() == catalog.ciphertext_type_oid() => {
            refused("its values are ciphertext whose encryption setting no signed record names")
        }
        _ => ColumnDecryption::Plaintext,
    };
    plan(label, decryption)
}

/// A result column the analysis resolved to `expected` must come from
/// there: if a name resolves to another relation on the server (a table
/// renamed and shadowed, a search path changed behind the client's back),
/// reading on would hand the application another table's rows.
fn check_not_redirected(
    column: &tokio_postgres::Column,
    expected: &ColumnName,
    origin: (u32, i16),
    catalog: &Catalog,
) -> Result<(), Error> {
    if catalog.attribute(expected) == Some(origin) {
        return Ok(());
    }
    let involves_encryption = catalog.column(expected).is_some()
        || catalog.column_at(origin.0, origin.1).is_some()
        || catalog.is_unassigned_ciphertext_column(origin.0, origin.1)
        || catalog.has_encrypted_table(&expected.table_name());
    if !involves_encryption {
        return Ok(());
    }
    Err(Error::ResultMismatch {
        problem: ResultProblem::Redirected {
            column: column.name().to_owned(),
            expected: expected.to_string(),
        },
    })
}

/// The bytes of any value, whatever its type: how cells are read off a row.
pub(crate) struct RawValue<'a>(pub(crate) &'a [u8]);

impl<'a> FromSql<'a> for RawValue<'a> {
    fn from_sql(_ty: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn StdError + Sync + Send>> {
        Ok(Self(raw))
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }
}

/// The ciphers one query's cells need: each looked up in the key cache (or
/// unwrapped) once per query, not once per cell, so a cell costs no lock
/// or clock read; a key that cannot be had fails every cell of the query
/// that needs it, without asking the key store again for each.
#[derive(Debug, Default)]
pub(crate) struct QueryCiphers {
    keys: Vec<(u32, CipherSlot)>,
}

/// A column key's cipher, or why it cannot be had.
pub(crate) type CipherLookup = Result<Arc<CellCipher>, Arc<DecryptError>>;

/// The ciphers a row's decrypted columns need, by key id, looked up before
/// its cells are decrypted (which then needs no `await`).
pub(crate) type RowCiphers = Vec<(u32, CipherLookup)>;

type CipherSlot = tokio::sync::OnceCell<CipherLookup>;

impl QueryCiphers {
    /// Slots for the column keys of `plans`' decrypted columns; none when
    /// `encryption` keeps no keys (a zero key TTL: every cell asks).
    pub(crate) fn for_plans(plans: &[ResultColumnPlan], encryption: &Encryption) -> Self {
        let mut keys: Vec<(u32, CipherSlot)> = Vec::new();
        if !encryption.keeps_keys() {
            return Self { keys };
        }
        for plan in plans {
            if let ColumnDecryption::Decrypted { setting, .. } = &plan.decryption {
                if !keys.iter().any(|(key_id, _)| *key_id == setting.key_id) {
                    keys.push((setting.key_id, CipherSlot::new()));
                }
            }
        }
        Self { keys }
    }

    /// The ciphers of `plans`' decrypted columns that `needed` says (by
    /// column index) hold a cell, each key looked up once: from this
    /// query's slots, or (keys not kept) from the key cache or store, for
    /// every call. NULL needs no key, and with keys not kept every lookup
    /// asks the key store.
    pub(crate) async fn for_row(
        &self,
        plans: &[ResultColumnPlan],
        needed: impl Fn(usize) -> bool,
        encryption: &Encryption,
        catalog: &Catalog,
    ) -> RowCiphers {
        let mut ciphers: RowCiphers = Vec::new();
        for (index, plan) in plans.iter().enumerate() {
            if let ColumnDecryption::Decrypted { setting, .. } = &plan.decryption {
                if needed(index) && !ciphers.iter().any(|(key_id, _)| *key_id == setting.key_id) {
                    let cipher = self.cipher(encryption, catalog, setting.key_id).await;
                    ciphers.push((setting.key_id, cipher));
                }
            }
        }
        ciphers
    }

    async fn cipher(
        &self,
        encryption: &Encryption,
        catalog: &Catalog,
        key_id: u32,
    ) -> CipherLookup {
        let lookup = || async { encryption.cipher(catalog, key_id).await.map_err(Arc::new) };
        match self.keys.iter().find(|(id, _)| *id == key_id) {
            Some((_, slot)) => slot.get_or_init(lookup).await.clone(),
            None => lookup().await,
        }
    }
}

/// Decrypts one `cell` of a column whose cells must carry `setting`, with
/// the column key that setting names.
///
/// # Errors
/// [`DecryptError`]: a malformed or tampered cell, one of another setting
/// or key, a key that is unavailable.
pub(crate) async fn decrypt_cell(
    encryption: &Encryption,
    catalog: &Catalog,
    setting: &EncryptionSetting,
    cell: &[u8],
    ciphers: &QueryCiphers,
) -> Result<Zeroizing<Vec<u8>>, Arc<DecryptError>> {
    let cipher = ciphers.cipher(encryption, catalog, setting.key_id).await?;
    // The cipher checks the header as in `decrypt_into`.
    cipher
        .decrypt(&setting.cell, cell)
        .map_err(|error| Arc::new(cell_error(encryption, catalog, setting, error)))
}

/// [`decrypt_cell`] with the cipher of `setting`'s key already at hand,
/// appending the plaintext to `plaintexts` ([`CellCipher::decrypt_into`]);
/// returns where it is there.
///
/// # Errors
/// As [`decrypt_cell`], but for the key.
pub(crate) fn decrypt_into(
    cipher: &CellCipher,
    encryption: &Encryption,
    catalog: &Catalog,
    setting: &EncryptionSetting,
    cell: &[u8],
    plaintexts: &mut Zeroizing<Vec<u8>>,
) -> Result<Range<usize>, Arc<DecryptError>> {
    // A setting's cells are made with its column key: the cipher checks
    // that the header names this setting, its mode and this key.
    cipher
        .decrypt_into(&setting.cell, cell, plaintexts)
        .map_err(|error| Arc::new(cell_error(encryption, catalog, setting, error)))
}

/// A cell's error, with a cell of another setting named by that setting.
fn cell_error(
    encryption: &Encryption,
    catalog: &Catalog,
    setting: &EncryptionSetting,
    error: CellError,
) -> DecryptError {
    if let CellError::KeyMismatch { .. } = error {
        // Perhaps the setting's key was rotated after this catalog was
        // loaded: the next statement checks the generation first.
        encryption.mark_stale(0);
    }
    let CellError::FromAnotherSetting { found, .. } = error else {
        return DecryptError::Cell(error);
    };
    let found = match catalog.settings().get(&found) {
        Some(other) => other.label(),
        None => {
            // Perhaps a setting created after this catalog was loaded:
            // every client checks the generation before its next statement
            // instead of waiting for the TTL.
            encryption.mark_stale(0);
            format!(
                "setting {found}, which catalog generation {} does not have (the catalog is \
                 checked again before the next statement)",
                catalog.generation()
            )
        }
    };
    DecryptError::FromAnotherSetting {
        expected: setting.label(),
        found,
    }
}

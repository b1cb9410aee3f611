//! What can be wrong with the catalog itself: missing, too new, not the
//! expected one, damaged, rolled back.

use std::fmt;

use aepg_keystore::MasterKeyLocation;

use crate::names::ColumnName;
use crate::record::CatalogId;

/// The kinds of object the catalog holds, for messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CatalogObject {
    /// A column master key.
    MasterKey,
    /// A column encryption key.
    ColumnKey,
    /// A column encryption setting.
    EncryptionSetting,
    /// A column assignment.
    ColumnAssignment,
    /// A signed manifest of encrypted columns.
    Manifest,
}

impl fmt::Display for CatalogObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::MasterKey => "column master key",
            Self::ColumnKey => "column encryption key",
            Self::EncryptionSetting => "column encryption setting",
            Self::ColumnAssignment => "column assignment",
            Self::Manifest => "column manifest",
        })
    }
}

/// What is wrong with the catalog.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CatalogError {
    /// The database has no aepg catalog.
    #[error("the aepg catalog is not installed in this database (run install first)")]
    NotInstalled,
    /// The database's catalog is newer than this library.
    #[error("the aepg catalog in this database has version {found}; this library knows versions up to {supported}: upgrade aepg")]
    TooNew {
        /// The installed version.
        found: i32,
        /// The newest version this library knows.
        supported: i32,
    },
    /// A statement uses a table whose column is in the final swap of an
    /// in-place migration, inside a transaction block (where waiting would
    /// hold locks the swap needs) or for longer than the client waits
    /// ([`EncryptionConfig::migration_swap_wait`](crate::EncryptionConfig::migration_swap_wait)).
    #[error(
        "table {table} has a column in the final swap of an in-place migration (`aepg column \
         encrypt` or `decrypt`), which takes a few seconds: retry the statement (outside a \
         transaction block it waits for the swap)"
    )]
    Swapping {
        /// The table.
        table: String,
    },
    /// The database's catalog is older than this library reads.
    #[error("the aepg catalog in this database has version {found}; this library reads version {supported}: run install to upgrade it, then sign its manifests")]
    TooOld {
        /// The installed version.
        found: i32,
        /// The version this library reads.
        supported: i32,
    },
    /// The database's catalog is not the one the application expects (by
    /// its pin, or the one this client loaded before).
    #[error("the aepg catalog in this database is {found}, not the expected {expected}: it was replaced")]
    IdentityMismatch {
        /// The identity the application expects.
        expected: CatalogId,
        /// The identity found.
        found: CatalogId,
    },
    /// A catalog row cannot be read, or disagrees with its signed record.
    #[error("catalog row {row} is malformed: {reason}")]
    MalformedRow {
        /// Which row (table and key).
        row: String,
        /// What is wrong.
        reason: String,
    },
    /// A named catalog object does not exist.
    #[error("{object} {name} does not exist in the aepg catalog")]
    NotFound {
        /// What kind of object.
        object: CatalogObject,
        /// Its name or id.
        name: String,
    },
    /// A catalog object exists already.
    #[error("{object} {name} already exists in the aepg catalog")]
    AlreadyExists {
        /// What kind of object.
        object: CatalogObject,
        /// Its name.
        name: String,
    },
    /// A master key is registered at another location than the caller expects.
    #[error("column master key {name:?} is registered at {registered}, not at {expected}, where the caller expects it")]
    MasterKeyElsewhere {
        /// Its name.
        name: String,
        /// Where the catalog says it is.
        registered: MasterKeyLocation,
        /// Where the caller says it is.
        expected: MasterKeyLocation,
    },
    /// A column key is wrapped under more master keys than a record has
    /// signatures for: two rotations were started and neither completed.
    #[error("column key {key_id} is wrapped under {} master keys ({}); a record carries two signatures: complete the master key rotation under way first", master_keys.len(), master_keys.join(", "))]
    TooManyMasterKeys {
        /// The column key.
        key_id: u32,
        /// The master keys it is wrapped under.
        master_keys: Vec<String>,
    },
    /// A record of a column key must be signed by every master key the
    /// key is wrapped under, and this administrator cannot verify some.
    #[error("column key {key_id} is also wrapped under master key(s) {} whose values this administrator cannot verify: records of the key must be signed by each of its master keys. During a master key rotation, run this with both keys; a value that no key verifies (aepg verify: tampered) is no wrapping of the key and may be deleted, but one under a key you no longer hold must not be deleted before the rotation completes", missing.join(", "))]
    SignersMissing {
        /// The column key.
        key_id: u32,
        /// The master keys, by name, whose values this administrator cannot verify.
        missing: Vec<String>,
    },
    /// A master key rotation cannot start or complete.
    #[error("cannot rotate column master key {from:?} to {to:?}: {reason}")]
    MasterKeyRotation {
        /// The master key being retired.
        from: String,
        /// The master key replacing it.
        to: String,
        /// Why, and what to do.
        reason: String,
    },
    /// A column key rotation cannot start or complete.
    #[error("cannot rotate the column key of setting {setting:?}: {reason}")]
    KeyRotation {
        /// The setting whose column key is replaced.
        setting: String,
        /// Why, and what to do.
        reason: String,
    },
    /// An object cannot be dropped: others still use it.
    #[error("{object} {name} is still used by {users}: drop or move them first")]
    InUse {
        /// What was to be dropped.
        object: CatalogObject,
        /// Its name or id.
        name: String,
        /// What uses it.
        users: String,
    },
    /// A column cannot be assigned to a setting.
    #[error("column {column} cannot be encrypted: {reason}")]
    ColumnNotAssignable {
        /// The column.
        column: ColumnName,
        /// Why.
        reason: String,
    },
    /// A column the application pinned is not encrypted as pinned.
    #[error("pinned column {column} is not encrypted as expected: {reason}")]
    PinnedColumnMismatch {
        /// The column.
        column: ColumnName,
        /// What differs.
        reason: String,
    },
    /// No manifest verifies under a master key this application trusts:
    /// the catalog was replaced, emptied, or its manifests were removed or
    /// forged; or no trusted master key was registered in it yet.
    #[error("the aepg catalog has no column manifest signed by a master key this application trusts{}: refusing it, as it cannot tell which columns are encrypted (register the application's master key, or sign the manifests after an upgrade)", describe_rejected(.rejected))]
    NoManifest {
        /// Manifests found but refused, and why.
        rejected: Vec<String>,
    },
    /// A master key's manifest is older than one already seen or pinned,
    /// or is missing: a rollback of the catalog.
    #[error("the column manifest of master key {master_key:?} is {}, but generation {seen} was already seen or pinned: the catalog was rolled back or its manifest removed", match .found { Some(found) => format!("at generation {found}"), None => "missing".to_owned() })]
    ManifestRollback {
        /// The master key.
        master_key: String,
        /// The lowest generation acceptable.
        seen: u64,
        /// The generation found, if any.
        found: Option<u64>,
    },
    /// An administrator holds a registered master key whose manifest is
    /// missing or does not verify: a change now would sign a manifest that
    /// lists only the columns whose records survived, dropping the others
    /// from encryption.
    #[error("the aepg catalog has no verified column manifest signed by master key {master_key:?}, which this administrator holds: it was removed or altered, and a change now could leave encrypted columns out of the manifests; restore the catalog from a backup (or, only right after upgrading a catalog that never had manifests, sign them with sign-manifests)")]
    ManifestMissing {
        /// The master key.
        master_key: String,
    },
    /// An administrator's master key could not check its manifest: its key
    /// store is down or refused (a wrong PIN, a revoked key). Nothing was
    /// changed.
    #[error("the column manifest of master key {master_key:?} cannot be checked, so nothing was changed: {reason}")]
    ManifestUnverifiable {
        /// The master key.
        master_key: String,
        /// What the key store said.
        reason: String,
    },
    /// A master key is registered in a catalog that has changed since its
    /// install, but holds no verified manifest of any master key this
    /// administrator holds: the catalog may have been stripped (its master
    /// key rows, keys and manifests deleted) to look new.
    #[error("the aepg catalog is at generation {generation} but has no verified column manifest of a master key this administrator holds: its manifests and master keys may have been removed, and registering now would sign a manifest without the columns they listed; restore the catalog from a backup, or, if this administrator's keys are new to this catalog (a database shared with another application), opt in with CatalogAdmin::joining_catalog")]
    NoHeldManifest {
        /// The catalog's generation.
        generation: u64,
    },
    /// A new catalog id (of a column key or setting) is in use, or not above
    /// one a signed record names: the id sequence was reset.
    #[error("{what} {id} is already in use in the aepg catalog, or not above one its signed records name: its id sequence was reset, and a new object must not take an existing one's id")]
    IdInUse {
        /// What kind of id (`column key id`).
        what: &'static str,
        /// The id.
        id: u32,
    },
    /// The server's catalog generation is lower than one already seen, or
    /// lower than a signed manifest's: a rollback of the catalog.
    #[error("the catalog generation is {found}, but generation {seen} was already seen: the catalog was rolled back")]
    GenerationRollback {
        /// The generation already seen.
        seen: u64,
        /// The generation found.
        found: u64,
    },
    /// A change of the catalog was announced while this connection is in a
    /// repeatable-read or serializable transaction, whose snapshot cannot
    /// show it.
    #[error("the aepg catalog changed during this transaction, whose snapshot (repeatable read or serializable) cannot see the change: end the transaction and run it again")]
    ChangedDuringTransaction,
    /// The catalog or the session kept changing while a statement was
    /// being prepared.
    #[error("the aepg catalog or the session's search path kept changing while the statement was prepared; try again")]
    Unsettled,
    /// The catalog could not be checked or loaded within the refresh
    /// timeout (a lock held on a table of schema `aepg`, a stalled
    /// connection) when no verified catalog could be used instead.
    #[error("the aepg catalog could not be {step} within {timeout:?}: see whether a session holds a lock on a table of schema aepg, or the connection stalled")]
    RefreshTimedOut {
        /// What ran out of time (`checked`, `loaded`).
        step: &'static str,
        /// The refresh timeout.
        timeout: std::time::Duration,
    },
    /// A number in the catalog is out of the range of its kind of id.
    #[error("{what} {value} is out of range")]
    IdOutOfRange {
        /// What kind of number (`column key id`).
        what: &'static str,
        /// The value found.
        value: i64,
    },
}

fn describe_rejected(rejected: &[String]) -> String {
    if rejected.is_empty() {
        String::new()
    } else {
        format!(" (refused: {})", rejected.join("; "))
    }
}

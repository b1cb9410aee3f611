//! The `aepg` catalog in the database: column master keys, wrapped column
//! keys, column encryption settings, column assignments and the manifests
//! that list every encrypted column, each signed by a column master key
//! (docs/DESIGN.md, "Catalog").
//!
//! - [`install`]: the idempotent, versioned install (and upgrade) of the schema;
//! - [`CatalogAdmin`]: creating keys and settings, assigning columns,
//!   signing manifests, rotating master keys, the catalog's part of
//!   column key rotations;
//! - [`load_catalog`]: reading and verifying everything into a [`Catalog`];
//! - [`Pins`]: what the application itself knows of its catalog.

mod admin;
mod column_key_rotation;
mod error;
mod install;
mod load;
mod looked_up;
mod master_key_rotation;
mod model;
mod pin;

pub(crate) use admin::{require_signers, Change, Manifests};
pub use admin::{CatalogAdmin, NewEncryptionSetting};
pub(crate) use column_key_rotation::KeyRotationRow;
pub use error::{CatalogError, CatalogObject};
pub use install::{
    catalog_id, install, installed_version, InstallOutcome, CATALOG_CHANNEL, CATALOG_VERSION,
};
pub use load::load_catalog;
pub use master_key_rotation::MasterKeyRotationReport;
pub use model::{
    Catalog, CatalogSchemaView, ColumnState, EncryptedColumn, EncryptionSetting, SkipReason,
    SkippedRecord, VerifiedManifest,
};
pub use pin::{PinFileError, PinnedColumn, Pins, PIN_FILE_FORMAT};

pub(crate) use install::CATALOG_STATE_QUERY;
pub(crate) use load::{left_out_note, look_up_tables};

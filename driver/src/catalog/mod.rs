//! The `aepg` catalog in the database: column master keys, wrapped column
//! keys, column encryption settings and column assignments, each signed by
//! a column master key (DESIGN.md §5).
//!
//! - [`install`]: the idempotent, versioned install of the schema;
//! - [`CatalogAdmin`]: creating keys and settings, assigning columns;
//! - [`load_catalog`]: reading and verifying everything into a [`Catalog`].

mod admin;
mod install;
mod load;
mod model;
mod pin;

pub use admin::{CatalogAdmin, NewEncryptionSetting};
pub use install::{catalog_id, install, installed_version, InstallOutcome, CATALOG_VERSION};
pub use load::load_catalog;
pub use model::{Catalog, CatalogSchemaView, EncryptedColumn, EncryptionSetting, SkippedRecord};
pub use pin::PinnedColumn;

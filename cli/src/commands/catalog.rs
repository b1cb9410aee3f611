//! `init`, and loading the catalog the way every reading command does.

use aepg::catalog::Catalog;
use aepg::catalog::{install, CatalogAdmin, InstallOutcome};
use serde_json::json;

use crate::config::Settings;
use crate::connect;
use crate::failure::Failure;
use crate::output::Output;

/// `aepg init`
pub async fn init(settings: &Settings, output: Output) -> Result<(), Failure> {
    let mut client = connect::plain(settings).await?;
    let outcome = install(&mut client).await?;
    let (outcome, text) = match outcome {
        InstallOutcome::Installed => ("installed", "catalog installed".to_owned()),
        InstallOutcome::Upgraded { from } => (
            "upgraded",
            format!(
                "catalog upgraded from version {from}: sign its manifests before other changes"
            ),
        ),
        InstallOutcome::AlreadyInstalled => ("unchanged", "catalog already installed".to_owned()),
        _ => ("unchanged", "catalog unchanged".to_owned()),
    };
    output.result(|| text, || json!({ "outcome": outcome }));
    Ok(())
}

/// The administrator for this run: its key stores and pins.
pub fn admin(settings: &Settings) -> CatalogAdmin {
    let admin = CatalogAdmin::new(settings.registry.clone());
    match &settings.pins {
        Some(pins) => admin.with_pins(pins.clone()),
        None => admin,
    }
}

/// Loads and verifies the catalog with this run's keys.
///
/// # Errors
/// A catalog that cannot be loaded (not installed, no verified manifest, a
/// pin mismatch, …).
pub async fn load(settings: &Settings) -> Result<(tokio_postgres::Client, Catalog), Failure> {
    let client = connect::plain(settings).await?;
    let catalog = admin(settings).load(&client).await?;
    Ok((client, catalog))
}

//! `rotate cmk start|complete`.

use aepg::catalog::MasterKeyRotationReport;
use aepg::keystore::MasterKeyLocation;
use serde_json::json;

use super::catalog::admin;
use crate::args::CmkRotationArgs;
use crate::config::Settings;
use crate::connect;
use crate::failure::Failure;
use crate::output::Output;

/// `aepg rotate cmk start --from A --to B`
pub async fn start_master_key(
    settings: &Settings,
    output: Output,
    args: &CmkRotationArgs,
) -> Result<(), Failure> {
    let (mut client, to) = open(settings, args).await?;
    let report = admin(settings)
        .start_master_key_rotation(&mut client, &args.from, &args.to, &to)
        .await?;
    let (from, to) = (&args.from, &args.to);
    output.result(
        || {
            format!(
                "rotating master key {from:?} to {to:?}: {} column key(s) wrapped under {to:?}, \
                 {} record(s) signed by both{}\n\
                 Clients holding either key work. Once every application holds {to:?}, run\n  \
                 aepg rotate cmk complete --from {from} --to {to}",
                report.column_keys,
                report.records_signed,
                generation_note(&report),
            )
        },
        || report_json("start", from, to, &report),
    );
    Ok(())
}

/// `aepg rotate cmk complete --from A --to B`
pub async fn complete_master_key(
    settings: &Settings,
    output: Output,
    args: &CmkRotationArgs,
) -> Result<(), Failure> {
    let (mut client, to) = open(settings, args).await?;
    let report = admin(settings)
        .complete_master_key_rotation(&mut client, &args.from, &args.to, &to)
        .await?;
    let (from, to) = (&args.from, &args.to);
    output.result(
        || match report.generation {
            None => format!("no catalog row names master key {from:?}: nothing left to complete"),
            Some(_) => format!(
                "master key {from:?} retired for {to:?}: {} column key(s) now only under {to:?}, \
                 {} record(s) signed by {to:?} alone{}\n\
                 Remove {from:?} from the applications' trusted keys; it can then be destroyed.",
                report.column_keys,
                report.records_signed,
                generation_note(&report),
            ),
        },
        || report_json("complete", from, to, &report),
    );
    Ok(())
}

/// The connection, and where the new master key is (from the flags or
/// the config file).
async fn open(
    settings: &Settings,
    args: &CmkRotationArgs,
) -> Result<(tokio_postgres::Client, MasterKeyLocation), Failure> {
    let to = settings.master_key_location(
        &args.to,
        &args.location.provider,
        args.location.path.as_deref(),
    )?;
    Ok((connect::plain(settings).await?, to))
}

fn generation_note(report: &MasterKeyRotationReport) -> String {
    report
        .generation
        .map(|generation| format!(" (catalog generation {generation})"))
        .unwrap_or_default()
}

fn report_json(
    step: &str,
    from: &str,
    to: &str,
    report: &MasterKeyRotationReport,
) -> serde_json::Value {
    json!({
        "step": step,
        "from": from,
        "to": to,
        "column_keys": report.column_keys,
        "records_signed": report.records_signed,
        "generation": report.generation,
    })
}

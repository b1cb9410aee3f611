//! `rotate cmk start|complete` and `rotate cek start|status|complete`.

use aepg::catalog::MasterKeyRotationReport;
use aepg::keystore::MasterKeyLocation;
use aepg::migration::KeyRotationReport;
use serde_json::json;

use super::catalog::admin;
use super::migrate::{options, Progress};
use crate::args::{CekRotationArgs, CmkRotationArgs};
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

/// `aepg rotate cek start --setting S`
pub async fn start_column_key(
    settings: &Settings,
    output: Output,
    args: &CekRotationArgs,
) -> Result<(), Failure> {
    let report = rotate_column_key(settings, args, false).await?;
    let setting = &args.setting;
    output.result(
        || {
            format!(
                "rotating the column key of setting {setting:?}: key {} replaces key {}{}; {} \
                 cell(s) re-encrypted in {} column(s). Applications keep using key {} until\n  \
                 aepg rotate cek complete --setting {setting}",
                report.to_key,
                report.from_key,
                if report.began { " (new)" } else { "" },
                report.rows_converted,
                report.columns.len(),
                report.from_key,
            )
        },
        || cek_report_json("start", setting, &report),
    );
    Ok(())
}

/// `aepg rotate cek complete --setting S`
pub async fn complete_column_key(
    settings: &Settings,
    output: Output,
    args: &CekRotationArgs,
) -> Result<(), Failure> {
    let report = rotate_column_key(settings, args, true).await?;
    let setting = &args.setting;
    output.result(
        || match report.generation {
            None => format!(
                "setting {setting:?} has no column key rotation under way: nothing to complete"
            ),
            Some(generation) => format!(
                "setting {setting:?} now uses column key {}: {} cell(s) re-encrypted in {} \
                 column(s) (catalog generation {generation}).\n\
                 Key {} is retired: no setting names it. Once every application has reloaded \
                 its catalog, delete it with\n  aepg cek drop {}\n\
                 (refused while any cell still names it).",
                report.to_key,
                report.rows_converted,
                report.columns.len(),
                report.from_key,
                report.from_key,
            ),
        },
        || cek_report_json("complete", setting, &report),
    );
    Ok(())
}

/// `aepg rotate cek status --setting S`
pub async fn column_key_status(
    settings: &Settings,
    output: Output,
    setting: &str,
) -> Result<(), Failure> {
    let client = connect::plain(settings).await?;
    let status = admin(settings)
        .key_rotation_status(&client, setting)
        .await?;
    output.result(
        || match &status {
            None => format!("setting {setting:?} has no column key rotation under way"),
            Some(status) => {
                let mut text = format!(
                    "setting {setting:?}: column key {} replaces key {}",
                    status.to_key, status.from_key
                );
                for column in &status.columns {
                    text.push_str(&format!(
                        "\n  {}: {}, {} cell(s) done, {} left",
                        column.column, column.phase, column.rows_done, column.rows_left
                    ));
                }
                text
            }
        },
        || match &status {
            None => json!({ "setting": setting, "rotating": false }),
            Some(status) => json!({
                "setting": setting,
                "rotating": true,
                "from_key": status.from_key,
                "to_key": status.to_key,
                "columns": status.columns.iter().map(|column| json!({
                    "column": column.column.to_string(),
                    "phase": column.phase,
                    "rows_done": column.rows_done,
                    "rows_left": column.rows_left,
                })).collect::<Vec<_>>(),
            }),
        },
    );
    Ok(())
}

/// Runs `start` (or `complete`) with a progress display.
async fn rotate_column_key(
    settings: &Settings,
    args: &CekRotationArgs,
    complete: bool,
) -> Result<KeyRotationReport, Failure> {
    let options = options(&args.migration)?;
    let mut client = connect::plain(settings).await?;
    let mut progress = Progress::new(&format!("rotate cek {}", args.setting));
    let admin = admin(settings);
    let mut update = |update: &aepg::migration::MigrationProgress| progress.update(update);
    let report = if complete {
        admin
            .complete_key_rotation(&mut client, &args.setting, &options, &mut update)
            .await
    } else {
        admin
            .start_key_rotation(&mut client, &args.setting, &options, &mut update)
            .await
    };
    progress.finish();
    Ok(report?)
}

fn cek_report_json(step: &str, setting: &str, report: &KeyRotationReport) -> serde_json::Value {
    json!({
        "step": step,
        "setting": setting,
        "from_key": report.from_key,
        "to_key": report.to_key,
        "began": report.began,
        "columns": report.columns.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "rows_converted": report.rows_converted,
        "generation": report.generation,
    })
}

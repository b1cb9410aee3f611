//! `status`, `explain`, `verify`.

use aepg::catalog::SkipReason;
use aepg::ColumnDecryption;
use serde_json::{json, Value};

use super::catalog::load;
use crate::config::Settings;
use crate::connect;
use crate::failure::{with_causes, Failure};
use crate::output::{clean, Output};

/// `aepg status`
pub async fn status(settings: &Settings, output: Output) -> Result<(), Failure> {
    let (client, catalog) = load(settings).await?;
    // Column key rotations under way (their unsigned work state, for a
    // report: `rotate cek status` checks one against the catalog).
    let key_rotations: Vec<(String, i32, i32)> = client
        .query(
            "SELECT setting_id, from_key_id, to_key_id FROM aepg.key_rotations ORDER BY 1",
            &[],
        )
        .await
        .map_err(aepg::Error::from)?
        .iter()
        .map(|row| {
            let setting_id: i32 = row.get(0);
            let name = u32::try_from(setting_id)
                .ok()
                .and_then(|id| catalog.settings().get(&id))
                .map_or_else(|| format!("#{setting_id}"), |setting| setting.name.clone());
            (name, row.get(1), row.get(2))
        })
        .collect();
    let usable = catalog
        .columns()
        .filter(|column| column.setting_id().is_some())
        .count();
    let columns = catalog.columns().count();
    // A column key under two master keys: a master key rotation under way.
    let rotating: Vec<(u32, Vec<&str>)> = catalog
        .column_keys()
        .filter(|(_, master_keys)| master_keys.len() > 1)
        .collect();
    output.result(
        || {
            let rotations = if rotating.is_empty() {
                "none".to_owned()
            } else {
                rotating
                    .iter()
                    .map(|(id, master_keys)| {
                        format!("column key {id} under {}", master_keys.join(" and "))
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
                    + " (finish with aepg rotate cmk complete)"
            };
            let key_rotations = if key_rotations.is_empty() {
                "none".to_owned()
            } else {
                key_rotations
                    .iter()
                    .map(|(setting, from, to)| {
                        format!("setting {:?}: key {to} replaces key {from}", clean(setting))
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
                    + " (aepg rotate cek status|complete)"
            };
            format!(
                "catalog {} (version {}), generation {}\n\
                 master keys: {}\ncolumn keys: {}\nsettings: {}\n\
                 encrypted columns: {columns} ({usable} usable here)\n\
                 master key rotations under way: {rotations}\n\
                 column key rotations under way: {key_rotations}\n\
                 records left out: {}{}",
                catalog.id(),
                catalog.version(),
                catalog.generation(),
                catalog.master_keys().len(),
                catalog.column_keys().count(),
                catalog.settings().len(),
                catalog.skipped().len(),
                if catalog.skipped().is_empty() {
                    ""
                } else {
                    " (aepg verify lists them)"
                }
            )
        },
        || {
            json!({
                "catalog_id": catalog.id().to_string(),
                "version": catalog.version(),
                "generation": catalog.generation(),
                "master_keys": catalog.master_keys().len(),
                "column_keys": catalog.column_keys().count(),
                "settings": catalog.settings().len(),
                "encrypted_columns": columns,
                "usable_columns": usable,
                "rotating_column_keys": rotating
                    .iter()
                    .map(|(id, master_keys)| json!({ "id": id, "master_keys": master_keys }))
                    .collect::<Vec<_>>(),
                "column_key_rotations": key_rotations
                    .iter()
                    .map(|(setting, from, to)| json!({ "setting": setting, "from_key": from, "to_key": to }))
                    .collect::<Vec<_>>(),
                "records_left_out": catalog.skipped().len(),
            })
        },
    );
    Ok(())
}

/// `aepg verify`: every record that fails, and exit 1 if any does.
pub async fn verify(settings: &Settings, output: Output) -> Result<(), Failure> {
    let (_client, catalog) = load(settings).await?;
    let skipped = catalog.skipped();
    let kind = |kind: &SkipReason| match kind {
        SkipReason::Unverifiable => "unverifiable",
        SkipReason::Tampered => "tampered",
        SkipReason::Dependency => "dependency",
        _ => "other",
    };
    output.result(
        || {
            let mut text = format!(
                "catalog {} at generation {}: {} record(s) fail",
                catalog.id(),
                catalog.generation(),
                skipped.len()
            );
            for record in skipped {
                text.push_str(&format!(
                    "\n{} [{}]: {}",
                    clean(&record.what),
                    kind(&record.kind),
                    clean(&record.reason)
                ));
            }
            text
        },
        || {
            json!({
                "catalog_id": catalog.id().to_string(),
                "generation": catalog.generation(),
                "failed": skipped.iter().map(|record| json!({
                    "record": record.what,
                    "kind": kind(&record.kind),
                    "reason": record.reason,
                })).collect::<Vec<_>>(),
            })
        },
    );
    if skipped.is_empty() {
        Ok(())
    } else {
        Err(Failure::reported(format!(
            "{} catalog record(s) failed verification",
            skipped.len()
        )))
    }
}

/// `aepg explain SQL`: the plan, or the refusal (which is an answer, not a
/// failure of the command).
pub async fn explain(settings: &Settings, output: Output, sql: &str) -> Result<(), Failure> {
    let client = connect::encrypted(settings).await?;
    match client.explain(sql).await {
        Ok(explanation) => {
            output.result(
                || explanation.to_string(),
                || explanation_json(&explanation),
            );
            Ok(())
        }
        Err(error @ (aepg::Error::Refused(_) | aepg::Error::ParameterCrossCheck { .. })) => {
            let reason = with_causes(&error);
            output.result(
                || format!("refused: {reason}"),
                || json!({ "refused": reason }),
            );
            Ok(())
        }
        Err(error) => Err(error.into()),
    }
}

fn explanation_json(explanation: &aepg::Explanation) -> Value {
    let parameters: Vec<Value> = explanation
        .parameters
        .iter()
        .map(|parameter| {
            let encryption = parameter.encryption.as_ref().map(|e| {
                json!({
                    "column": e.column.to_string(),
                    "usage": e.usage.to_string(),
                    "setting": e.setting,
                    "mode": e.mode.to_string(),
                    "column_key": e.key_id,
                    "plaintext_type": e.plaintext_type,
                })
            });
            json!({
                "number": parameter.number,
                "server_type": parameter.server_type,
                "encryption": encryption,
            })
        })
        .collect();
    let columns: Vec<Value> = explanation
        .columns
        .iter()
        .map(|column| {
            let decryption = match &column.decryption {
                ColumnDecryption::Plaintext => json!({ "kind": "plaintext" }),
                ColumnDecryption::Refused { reason } => {
                    json!({ "kind": "refused", "reason": reason.to_string() })
                }
                ColumnDecryption::Decrypted { column, setting } => json!({
                    "kind": "decrypted",
                    "column": column.as_ref().map(ToString::to_string),
                    "setting": setting.name,
                    "mode": setting.cell.mode.to_string(),
                    "plaintext_type": setting.type_name(),
                }),
                _ => json!({ "kind": "other" }),
            };
            json!({ "name": column.name, "decryption": decryption })
        })
        .collect();
    json!({ "parameters": parameters, "columns": columns })
}

//! `setting create|list`, `column assign|status`.

use aepg::catalog::{ColumnState, NewEncryptionSetting};
use aepg::cell::{EncryptionMode, NamedType, PaddingPolicy, PlaintextType};
use aepg::ColumnName;
use serde_json::json;

use super::catalog::{admin, load};
use crate::args::{Mode, NewSettingArgs, Padding};
use crate::config::Settings;
use crate::connect;
use crate::failure::Failure;
use crate::output::{table, Output};

/// `aepg setting create NAME …`
pub async fn create_setting(
    settings: &Settings,
    output: Output,
    new: &NewSettingArgs,
) -> Result<(), Failure> {
    let NewSettingArgs {
        name,
        sql_type,
        enum_name,
        labels,
        mode,
        cek,
        padding,
    } = new;
    let mode = match mode {
        Mode::Deterministic => EncryptionMode::Deterministic,
        Mode::Randomized => EncryptionMode::Randomized,
    };
    let mut new = match (sql_type.as_deref(), enum_name) {
        (_, Some(enum_name)) => {
            let named = NamedType::enumeration(enum_name.clone(), labels.iter().cloned())
                .map_err(|error| Failure::usage(format!("enum {enum_name:?}: {error}")))?;
            NewEncryptionSetting::named(name.clone(), named, mode, *cek)
        }
        (Some(sql_type), None) if sql_type.trim().eq_ignore_ascii_case("citext") => {
            NewEncryptionSetting::named(name.clone(), NamedType::citext(), mode, *cek)
        }
        (Some(sql_type), None) => {
            let plaintext_type = PlaintextType::parse(sql_type)
                .map_err(|error| Failure::usage(error.to_string()))?;
            NewEncryptionSetting::new(name.clone(), plaintext_type, mode, *cek)
        }
        (None, None) => return Err(Failure::usage("give --type or --enum")),
    };
    if let Some(padding) = padding {
        new = new.with_padding(match padding {
            Padding::None => PaddingPolicy::None,
            Padding::Block16 => PaddingPolicy::Block16,
            Padding::Bucket => PaddingPolicy::Bucket,
        });
    }
    let mut client = connect::plain(settings).await?;
    let id = admin(settings).create_setting(&mut client, &new).await?;
    output.result(
        || format!("setting {name:?} created (id {id}, {mode}, column key {cek})"),
        || json!({ "id": id, "name": name, "mode": mode.to_string(), "column_key": cek }),
    );
    Ok(())
}

/// `aepg setting list`
pub async fn list_settings(settings: &Settings, output: Output) -> Result<(), Failure> {
    let (_client, catalog) = load(settings).await?;
    let list: Vec<_> = catalog.settings().values().cloned().collect();
    output.result(
        || {
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|setting| {
                    vec![
                        setting.name.clone(),
                        setting.cell.setting_id.to_string(),
                        setting.type_name(),
                        setting.cell.mode.to_string(),
                        setting.cell.padding.to_string(),
                        setting.key_id.to_string(),
                    ]
                })
                .collect();
            table(
                &["NAME", "ID", "TYPE", "MODE", "PADDING", "COLUMN KEY"],
                &rows,
            )
        },
        || {
            json!(list
                .iter()
                .map(|setting| json!({
                    "name": setting.name,
                    "id": setting.cell.setting_id,
                    "type": setting.type_name(),
                    "labels": setting.named_type.as_ref().and_then(|named| named.labels()),
                    "mode": setting.cell.mode.to_string(),
                    "padding": setting.cell.padding.to_string(),
                    "column_key": setting.key_id,
                }))
                .collect::<Vec<_>>())
        },
    );
    Ok(())
}

/// `public.people` from `people` or `public.people`.
pub(super) fn column_name(table: &str, column: &str) -> ColumnName {
    match table.split_once('.') {
        Some((schema, table)) => ColumnName::new(schema, table, column),
        None => ColumnName::new("public", table, column),
    }
}

/// `aepg column assign --table T --column C --setting S`
pub async fn assign_column(
    settings: &Settings,
    output: Output,
    table: &str,
    column: &str,
    setting: &str,
) -> Result<(), Failure> {
    let column = column_name(table, column);
    let mut client = connect::plain(settings).await?;
    admin(settings)
        .assign_column(&mut client, &column, setting)
        .await?;
    output.result(
        || format!("column {column} is encrypted under setting {setting:?}"),
        || json!({ "column": column.to_string(), "setting": setting }),
    );
    Ok(())
}

/// `aepg column status [--table T]`
pub async fn column_status(
    settings: &Settings,
    output: Output,
    only: Option<&str>,
) -> Result<(), Failure> {
    let (_client, catalog) = load(settings).await?;
    let wanted = only.map(|only| column_name(only, "").table_name());
    let columns: Vec<_> = catalog
        .columns()
        .filter(|column| wanted.as_ref().is_none_or(|table| column.name.is_in(table)))
        .map(|column| {
            let setting = column
                .setting_id()
                .and_then(|id| catalog.settings().get(&id));
            let (state, reason) = match &column.state {
                ColumnState::Usable { .. } => ("usable", None),
                ColumnState::Unusable { reason } => ("unusable", Some(reason.to_string())),
                _ => ("unusable", None),
            };
            (column.name.to_string(), setting.cloned(), state, reason)
        })
        .collect();
    output.result(
        || {
            let rows: Vec<Vec<String>> = columns
                .iter()
                .map(|(name, setting, state, reason)| {
                    vec![
                        name.clone(),
                        setting
                            .as_ref()
                            .map_or_else(String::new, |s| s.name.clone()),
                        setting
                            .as_ref()
                            .map_or_else(String::new, |s| s.cell.mode.to_string()),
                        match reason {
                            Some(reason) => format!("{state}: {reason}"),
                            None => (*state).to_owned(),
                        },
                    ]
                })
                .collect();
            table(&["COLUMN", "SETTING", "MODE", "STATE"], &rows)
        },
        || {
            json!(columns
                .iter()
                .map(|(name, setting, state, reason)| json!({
                    "column": name,
                    "setting": setting.as_ref().map(|s| s.name.clone()),
                    "mode": setting.as_ref().map(|s| s.cell.mode.to_string()),
                    "state": state,
                    "reason": reason,
                }))
                .collect::<Vec<_>>())
        },
    );
    Ok(())
}

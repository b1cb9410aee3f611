//! Encrypted binary `COPY`: bulk loading and reading with encrypted
//! columns encrypted and decrypted on the way.
//!
//! A `COPY` is planned as the statement it stands for, through the same
//! analysis, `prepare` and cross-check as any statement:
//! `COPY t (a, b) FROM STDIN` as `INSERT INTO t (a, b) VALUES ($1, $2)`,
//! `COPY t (a, b) TO STDOUT` as `SELECT a, b FROM t`, `COPY (query) TO
//! STDOUT` as the query. So a column the analysis maps to an encrypted
//! column gets cells, one the server types as ciphertext but the analysis
//! does not map is refused, a refused column or statement is refused, and
//! a `COPY` into a table with encrypted columns goes to the table the
//! analysis resolved (its name qualified). Only the binary format: text
//! cannot carry cells, nor be decrypted. The column list is required for
//! `FROM STDIN`: the server's column order is not signed.

use sqlparser::ast::{CopyLegacyOption, CopyOption, CopySource, CopyTarget, Ident, ObjectName};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use super::batch_decryption::BatchDecryption;
use super::copy_in::{CopyColumn, CopyInWriter};
use super::copy_out_format::CopyOutRows;
use super::executor::Executor;
use super::row::{RowStream, Source};
use crate::analysis::ParameterTarget;
use crate::names::TableName;
use crate::Error;

/// A `COPY` as written, reduced to what aepg runs.
struct CopyCommand {
    source: CopySource,
    freeze: bool,
}

fn refused(reason: impl Into<String>) -> Error {
    Error::CopyRefused {
        reason: reason.into(),
    }
}

/// Reads `sql` as one PostgreSQL `COPY … (FORMAT binary)` to or from the
/// client.
fn parse(sql: &str, to: bool) -> Result<CopyCommand, Error> {
    let usage = if to {
        "copy_out runs COPY table (columns) TO STDOUT (FORMAT binary) or COPY (query) TO STDOUT (FORMAT binary)"
    } else {
        "copy_in runs COPY table (columns) FROM STDIN (FORMAT binary)"
    };
    let statements = Parser::parse_sql(&PostgreSqlDialect {}, sql)
        .map_err(|_| refused(format!("the text is not one COPY statement: {usage}")))?;
    let [sqlparser::ast::Statement::Copy {
        source,
        to: is_to,
        target,
        options,
        legacy_options,
        payload: None,
    }] = statements.as_slice()
    else {
        return Err(refused(format!(
            "the text is not one COPY statement: {usage}"
        )));
    };
    let wanted_target = if to {
        CopyTarget::Stdout
    } else {
        CopyTarget::Stdin
    };
    if *is_to != to || *target != wanted_target {
        return Err(refused(format!(
            "only to or from the client, never a server file or program: {usage}"
        )));
    }
    let mut binary = false;
    let mut freeze = false;
    for option in options {
        match option {
            CopyOption::Format(format) if format.value.eq_ignore_ascii_case("binary") => {
                binary = true;
            }
            CopyOption::Freeze(value) if !to => freeze = *value,
            _ => {
                return Err(refused(format!(
                    "option {option} is not supported: {usage}"
                )))
            }
        }
    }
    for option in legacy_options {
        match option {
            CopyLegacyOption::Binary => binary = true,
            _ => {
                return Err(refused(format!(
                    "option {option} is not supported: {usage}"
                )))
            }
        }
    }
    if !binary {
        return Err(refused(format!(
            "only the binary format: text can neither carry cells nor be decrypted ({usage})"
        )));
    }
    if let CopySource::Table {
        table_name,
        columns,
    } = source
    {
        if columns.is_empty() {
            return Err(refused(format!(
                "name the columns: the server's column order is not signed ({usage})"
            )));
        }
        // The COPY is rebuilt from the parsed names, and sqlparser prints a
        // quoted identifier holding `"` or `\` otherwise than it was
        // written: such a name could reach another column than the one
        // analyzed.
        let names = table_name
            .0
            .iter()
            .filter_map(|part| part.as_ident())
            .chain(columns.iter());
        for name in names {
            if name.value.contains(['"', '\\']) {
                return Err(refused(format!(
                    "a table or column name with a double quote or a backslash ({usage})"
                )));
            }
        }
    }
    Ok(CopyCommand {
        source: source.clone(),
        freeze,
    })
}

fn column_list(columns: &[Ident]) -> String {
    columns
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// `"schema"."table"`.
fn qualified(table: &TableName) -> String {
    let quote = |name: &str| format!("\"{}\"", name.replace('"', "\"\""));
    format!("{}.{}", quote(&table.schema), quote(&table.name))
}

/// The table a `COPY` names, as the analysis of its statement resolved it
/// when the table has encrypted columns.
fn target(table_name: &ObjectName, encrypted_tables: &[TableName]) -> Result<String, Error> {
    match encrypted_tables {
        [] => Ok(table_name.to_string()),
        [table] => Ok(qualified(table)),
        _ => Err(refused(format!(
            "{table_name} resolves to more than one table with encrypted columns"
        ))),
    }
}

impl<'a> Executor<'a> {
    /// Plans and starts `COPY table (columns) FROM STDIN (FORMAT binary)`.
    pub(crate) async fn copy_in(&self, sql: &str) -> Result<CopyInWriter, Error> {
        let command = parse(sql, false)?;
        let CopySource::Table {
            table_name,
            columns,
        } = &command.source
        else {
            return Err(refused("COPY FROM takes a table, not a query"));
        };
        let placeholders: Vec<String> = (1..=columns.len()).map(|n| format!("${n}")).collect();
        let insert = format!(
            "INSERT INTO {table_name} ({}) VALUES ({})",
            column_list(columns),
            placeholders.join(", ")
        );
        // Prepared afresh, never taken from the cache: the server types the
        // columns against the table as it is now, and the catalog
        // generation is read in the same round trip, before any plaintext
        // value is sent.
        let catalog = self.catalog().await?;
        let statement = self.prepare_afresh(&insert, catalog, None).await?;
        let prepared = &statement.0;
        let target = target(table_name, &prepared.analysis.encrypted_tables)?;
        let mut copy_columns = Vec::with_capacity(columns.len());
        for (index, (server_type, name)) in statement.params().iter().zip(columns).enumerate() {
            match prepared.analysis.parameters.get(index) {
                Some(ParameterTarget::Encrypted {
                    column, encryption, ..
                }) => {
                    let (setting, cipher) = self
                        .column_cipher(&prepared.catalog, column, encryption)
                        .await?;
                    copy_columns.push(CopyColumn::Encrypted {
                        column: column.clone(),
                        setting,
                        cipher,
                    });
                }
                _ => copy_columns.push(CopyColumn::Plain {
                    name: name.to_string(),
                    ty: server_type.clone(),
                }),
            }
        }
        let freeze = if command.freeze { ", FREEZE" } else { "" };
        let copy = format!(
            "COPY {target} ({}) FROM STDIN (FORMAT binary{freeze})",
            column_list(columns)
        );
        let sink = self.client.copy_in(&copy).await?;
        self.state.statement_ran();
        Ok(CopyInWriter::new(sink, copy_columns))
    }

    /// Plans and starts `COPY … TO STDOUT (FORMAT binary)`; the rows come
    /// decrypted.
    pub(crate) async fn copy_out(&self, sql: &str) -> Result<RowStream<'static>, Error> {
        let command = parse(sql, true)?;
        // `COPY t TO` reads `t` alone, not the tables inheriting it.
        let select_from = |columns: &[Ident], table: &str| {
            format!("SELECT {} FROM ONLY {table}", column_list(columns))
        };
        let select = match &command.source {
            CopySource::Table {
                table_name,
                columns,
            } => select_from(columns, &table_name.to_string()),
            CopySource::Query(query) => query.to_string(),
        };
        let catalog = self.catalog().await?;
        let statement = self.prepare_afresh(&select, catalog, None).await?;
        if !statement.params().is_empty() {
            return Err(refused("a COPY cannot carry parameters"));
        }
        let prepared = statement.0.clone();
        // What runs names the table the analysis resolved.
        let select = match &command.source {
            CopySource::Table {
                table_name,
                columns,
            } => select_from(
                columns,
                &target(table_name, &prepared.analysis.encrypted_tables)?,
            ),
            CopySource::Query(_) => select,
        };
        let stream = self
            .client
            .copy_out(&format!("COPY ({select}) TO STDOUT (FORMAT binary)"))
            .await?;
        self.state.statement_ran();
        let decryption = BatchDecryption::of(&prepared, self.state.encryption.clone());
        let rows = decryption.decrypt(CopyOutRows::new(stream), Source::Copy);
        Ok(RowStream {
            inner: Box::pin(rows),
        })
    }
}

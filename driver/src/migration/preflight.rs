//! What must hold of a column before it is migrated in place, checked
//! before anything is changed, so a migration does not fail at its swap
//! after hours of backfill.

use tokio_postgres::GenericClient;

use super::error::MigrationError;
use super::Direction;
use crate::catalog::EncryptionSetting;
use crate::cell::EncryptionMode;
use crate::names::ColumnName;
use crate::Error;

/// The server's facts about a column to migrate.
#[derive(Clone, Debug)]
pub(crate) struct ColumnFacts {
    /// Its table's oid.
    pub(crate) table_oid: u32,
    /// Its `attnum`.
    pub(crate) attnum: i16,
}

/// Checks that `column` can be migrated in `direction` under `setting`,
/// and returns what the migration needs to know of it.
pub(crate) async fn check(
    client: &impl GenericClient,
    column: &ColumnName,
    direction: Direction,
    setting: &EncryptionSetting,
) -> Result<ColumnFacts, Error> {
    let action = direction.past_participle();
    let refuse = |reason: String| MigrationError::NotMigratable {
        column: Box::new(column.clone()),
        action,
        reason,
    };
    let row = client
        .query_opt(
            "SELECT c.oid, c.relkind::text, a.attnum,
                    pg_catalog.format_type(a.atttypid, a.atttypmod),
                    a.atttypid OPERATOR(pg_catalog.=) 'aepg.ciphertext'::pg_catalog.regtype,
                    a.atttypid::int8, a.atttypmod,
                    a.atttypid OPERATOR(pg_catalog.=) pg_catalog.to_regtype($4),
                    EXISTS (SELECT FROM pg_catalog.pg_inherits i
                            WHERE i.inhrelid OPERATOR(pg_catalog.=) c.oid
                               OR i.inhparent OPERATOR(pg_catalog.=) c.oid)
             FROM pg_catalog.pg_attribute a
             JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) a.attrelid
             JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
             WHERE n.nspname OPERATOR(pg_catalog.=) $1
               AND c.relname OPERATOR(pg_catalog.=) $2
               AND a.attname OPERATOR(pg_catalog.=) $3
               AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped",
            &[
                &column.schema,
                &column.table,
                &column.column,
                &setting.named_type.as_ref().map(|named| named.name()),
            ],
        )
        .await?
        .ok_or_else(|| refuse("there is no such column".to_owned()))?;
    let table_oid: u32 = row.try_get(0)?;
    let relkind: String = row.try_get(1)?;
    let attnum: i16 = row.try_get(2)?;
    let type_name: String = row.try_get(3)?;
    let is_ciphertext: bool = row.try_get(4)?;
    if relkind != "r" {
        return Err(refuse(
            "only the columns of ordinary tables can be migrated in place (not views, \
             partitioned or foreign tables)"
                .to_owned(),
        )
        .into());
    }
    if row.try_get::<_, bool>(8)? {
        return Err(refuse(
            "its table has inheritance parents or children; migrate a copy without them".to_owned(),
        )
        .into());
    }
    match direction {
        Direction::Encrypt => {
            if is_ciphertext {
                return Err(refuse(
                    "it is of type aepg.ciphertext already; an empty one is assigned with \
                     `aepg column assign`"
                        .to_owned(),
                )
                .into());
            }
            let oid = u32::try_from(row.try_get::<_, i64>(5)?).unwrap_or(0);
            let typmod: i32 = row.try_get(6)?;
            let same_type = match &setting.named_type {
                Some(_) => row.try_get::<_, Option<bool>>(7)?.unwrap_or(false),
                None => {
                    oid == setting.cell.plaintext_type.oid
                        && typmod == setting.cell.plaintext_type.typmod
                }
            };
            if !same_type {
                return Err(refuse(format!(
                    "it is of type {type_name}, but {} holds values of type {}: alter the \
                     column to that type first, or create a setting of type {type_name}",
                    setting.label(),
                    setting.type_name()
                ))
                .into());
            }
        }
        Direction::Decrypt | Direction::Rekey => {
            if !is_ciphertext {
                return Err(
                    refuse(format!("it is of type {type_name}, not aepg.ciphertext")).into(),
                );
            }
        }
    }
    check_dependents(client, column, direction, setting, table_oid, attnum).await?;
    Ok(ColumnFacts { table_oid, attnum })
}

/// Refuses a column that views, rules, defaults, generated columns,
/// constraints other than a primary key or `UNIQUE`, indexes other than
/// plain btree or hash ones with default operator classes, policies,
/// statistics or other tables' columns of the table's row type depend on,
/// or that is an identity or generated column, or (to encrypt) has a
/// collation of its own: changing its type would fail at the swap, or keep
/// plaintext semantics on ciphertext. Indexes and keys are kept (rebuilt
/// on the new values) where the new values still compare as the old did:
/// not for randomized cells, which are all different.
pub(crate) async fn check_dependents(
    client: &impl GenericClient,
    column: &ColumnName,
    direction: Direction,
    setting: &EncryptionSetting,
    table_oid: u32,
    attnum: i16,
) -> Result<(), Error> {
    let action = direction.past_participle();
    let refuse = |reason: String| MigrationError::NotMigratable {
        column: Box::new(column.clone()),
        action,
        reason,
    };
    let facts = client
        .query_one(
            "SELECT a.attidentity::text, a.attgenerated::text,
                    a.attcollation::int8 NOT IN (0, 100),
                    (SELECT pg_catalog.string_agg(x.attrelid::pg_catalog.regclass::text
                                OPERATOR(pg_catalog.||) '.' OPERATOR(pg_catalog.||) x.attname, ', ')
                     FROM pg_catalog.pg_attribute x
                     WHERE x.atttypid OPERATOR(pg_catalog.=) c.reltype AND NOT x.attisdropped)
             FROM pg_catalog.pg_attribute a
             JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) a.attrelid
             WHERE a.attrelid OPERATOR(pg_catalog.=) $1 AND a.attnum OPERATOR(pg_catalog.=) $2",
            &[&table_oid, &attnum],
        )
        .await?;
    if !facts.try_get::<_, String>(0)?.is_empty() {
        return Err(refuse("it is an identity column".to_owned()).into());
    }
    if !facts.try_get::<_, String>(1)?.is_empty() {
        return Err(refuse("it is a generated column".to_owned()).into());
    }
    if direction == Direction::Encrypt && facts.try_get::<_, bool>(2)? {
        return Err(refuse(
            "it has a collation of its own, whose comparisons ciphertext cannot keep".to_owned(),
        )
        .into());
    }
    if let Some(users) = facts.try_get::<_, Option<String>>(3)? {
        return Err(refuse(format!("the table's row type is the type of {users}")).into());
    }
    let rows = client
        .query(
            "SELECT pg_catalog.pg_describe_object(d.classid, d.objid, d.objsubid),
                    i.indexrelid IS NOT NULL AND i.indexprs IS NULL AND i.indpred IS NULL
                    AND (SELECT am.amname::text FROM pg_catalog.pg_class ic
                         JOIN pg_catalog.pg_am am ON am.oid OPERATOR(pg_catalog.=) ic.relam
                         WHERE ic.oid OPERATOR(pg_catalog.=) i.indexrelid) IN ('btree', 'hash')
                    AND NOT EXISTS (
                        SELECT FROM unnest(i.indkey::int2[], i.indclass::oid[], i.indcollation::oid[])
                                    AS k(attnum, opclass, coll)
                        JOIN pg_catalog.pg_opclass oc ON oc.oid OPERATOR(pg_catalog.=) k.opclass
                        WHERE k.attnum::int4 OPERATOR(pg_catalog.=) $2
                          AND (NOT oc.opcdefault OR k.coll::int8 NOT IN (0, 100))),
                    COALESCE(con.contype OPERATOR(pg_catalog.=) ANY ('{p,u}'::pg_catalog.\"char\"[]), false)
             FROM pg_catalog.pg_depend d
             LEFT JOIN pg_catalog.pg_index i
               ON d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
              AND i.indexrelid OPERATOR(pg_catalog.=) d.objid
             LEFT JOIN pg_catalog.pg_constraint con
               ON d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_constraint'::pg_catalog.regclass
              AND con.oid OPERATOR(pg_catalog.=) d.objid
             WHERE d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
               AND d.refobjid OPERATOR(pg_catalog.=) $1
               AND d.refobjsubid OPERATOR(pg_catalog.=) $2
               AND d.deptype OPERATOR(pg_catalog.=) ANY ('{n,a}'::pg_catalog.\"char\"[])
             ORDER BY 1",
            &[&table_oid, &i32::from(attnum)],
        )
        .await?;
    // Re-encrypted cells compare as the old ones did: whatever index the
    // column has means as much afterwards.
    let keeps_equality =
        direction != Direction::Encrypt || setting.cell.mode == EncryptionMode::Deterministic;
    let mut refused = Vec::new();
    for row in &rows {
        let description: Option<String> = row.try_get(0)?;
        let plain_index: Option<bool> = row.try_get(1)?;
        let plain_index = plain_index.unwrap_or(false);
        let key: bool = row.try_get(2)?;
        if (plain_index || key) && keeps_equality {
            continue;
        }
        let description = description.unwrap_or_else(|| "an object".to_owned());
        refused.push(if plain_index || key {
            format!("{description} (randomized cells are all different, so it would mean nothing)")
        } else {
            description
        });
    }
    if refused.is_empty() {
        return Ok(());
    }
    Err(MigrationError::Dependents {
        column: Box::new(column.clone()),
        action,
        objects: refused.join(", "),
    }
    .into())
}

//! The trigger that keeps a migration's shadow column honest: it clears a
//! row's shadow value whenever the column's value changes, so the
//! catch-up passes find the row again. The migration relies on it firing
//! for every write, so it is checked before the backfill and under the
//! swap's lock.

use tokio_postgres::GenericClient;

use super::backfill::Names;
use super::error::MigrationError;
use super::Direction;
use crate::names::ColumnName;
use crate::Error;

/// `tgtype` bits (PostgreSQL's `pg_trigger.h`).
const ROW: i16 = 1;
const BEFORE: i16 = 2;
const INSERT: i16 = 4;
const UPDATE: i16 = 16;

/// Creates the trigger and its function. The change test compares the
/// values' binary images (`record_image_eq`), so no collation, float
/// output setting or type without `=` can hide a change; the trigger fires
/// in every session, replicas' apply workers included (`ENABLE ALWAYS`).
pub(super) async fn create(client: &impl GenericClient, names: &Names) -> Result<(), Error> {
    let body = format!(
        "BEGIN
             IF TG_OP = 'INSERT'
                OR NOT pg_catalog.record_image_eq(ROW(NEW.{column}), ROW(OLD.{column})) THEN
                 NEW.{shadow} := NULL;
             END IF;
             RETURN NEW;
         END",
        column = names.column,
        shadow = names.shadow,
    );
    let tag = dollar_tag(&body);
    client
        .batch_execute(&format!(
            "CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql
                 SET search_path = pg_catalog AS {tag}{body}{tag};
             CREATE TRIGGER {trigger} BEFORE INSERT OR UPDATE ON {table}
                 FOR EACH ROW EXECUTE FUNCTION {function}();
             ALTER TABLE ONLY {table} ENABLE ALWAYS TRIGGER {trigger};",
            table = names.table,
            function = names.function,
            trigger = names.trigger,
        ))
        .await?;
    Ok(())
}

/// Checks that the migration's trigger is in place and fires always
/// (unless `before_creation`), and that no other `BEFORE` row trigger on
/// inserts or updates fires after it (triggers fire in name order): such a
/// trigger could change the column after the shadow value was judged.
pub(super) async fn check(
    client: &impl GenericClient,
    column: &ColumnName,
    direction: Direction,
    names: &Names,
    before_creation: bool,
) -> Result<(), Error> {
    let rows = client
        .query(
            "SELECT t.tgname::text, t.tgenabled::text, t.tgtype,
                    n.nspname::text OPERATOR(pg_catalog.||) '.' OPERATOR(pg_catalog.||) p.proname::text
             FROM pg_catalog.pg_trigger t
             JOIN pg_catalog.pg_proc p ON p.oid OPERATOR(pg_catalog.=) t.tgfoid
             JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) p.pronamespace
             WHERE t.tgrelid OPERATOR(pg_catalog.=) $1 AND NOT t.tgisinternal",
            &[&names.table_oid],
        )
        .await?;
    let mut ours = None;
    for row in &rows {
        let name: String = row.try_get(0)?;
        let enabled: String = row.try_get(1)?;
        let kind: i16 = row.try_get(2)?;
        if name == names.trigger_name {
            ours = Some(enabled);
            continue;
        }
        let function: String = row.try_get(3)?;
        // Another column's migration of the same table (a key rotation
        // migrates every column of a setting): its trigger only ever clears
        // its own shadow column.
        let sibling = name
            .strip_prefix("zzz_aepg_migrate_")
            .is_some_and(|attnum| function == format!("aepg.migrate_{}_{attnum}", names.table_oid));
        let before_row_write =
            kind & ROW != 0 && kind & BEFORE != 0 && kind & (INSERT | UPDATE) != 0 && !sibling;
        // Byte order is the server's order of trigger names.
        if before_row_write && enabled != "D" && name.as_bytes() > names.trigger_name.as_bytes() {
            return Err(MigrationError::NotMigratable {
                column: Box::new(column.clone()),
                action: direction.past_participle(),
                reason: format!(
                    "trigger {name:?} fires after aepg's own ({:?}) and could change the column \
                     unseen; rename it to sort before, or disable it during the migration",
                    names.trigger_name
                ),
            }
            .into());
        }
    }
    match (before_creation, ours.as_deref()) {
        (true, _) | (false, Some("A")) => Ok(()),
        (false, found) => {
            Err(MigrationError::Damaged {
                column: Box::new(column.clone()),
                reason: format!(
                "its trigger {:?} is {}, so writes may have been missed; run `aepg column abort` \
                 and start the migration again",
                names.trigger_name,
                if found.is_some() { "not enabled always" } else { "gone" }
            ),
            }
            .into())
        }
    }
}

/// A dollar-quote tag that `body` does not contain.
fn dollar_tag(body: &str) -> String {
    (0..)
        .map(|n| format!("$aepg{n}$"))
        .find(|tag| !body.contains(tag.as_str()))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dollar_tag_is_not_in_the_body() {
        assert_eq!(dollar_tag("BEGIN END"), "$aepg0$");
        assert_eq!(dollar_tag("x $aepg0$ y"), "$aepg1$");
    }
}

//! Tables without encrypted columns, read from the server when a statement
//! first names them rather than with every catalog load.
//!
//! A catalog load reads the tables that hold encrypted columns (by a
//! signed record or by type): what decides what is encrypted. The analyzer
//! also needs the columns of the other tables a statement names (to map an
//! `INSERT`'s values, to resolve an unqualified column), and reading every
//! table of the database with every load made a cold start grow with the
//! schema (docs/BENCHMARKS.md, "A cold start and the size of the schema").
//! So those tables are read when a statement first names them, in one
//! query for all the names it lacks, and kept with the catalog they were
//! read under; a reload of the catalog forgets them.
//!
//! What this cache holds never makes a column encrypted or plaintext
//! against the signed records: a table a signed record names is the
//! load's, and is never looked up here (the load keeps it, damaged, when
//! the server does not list it). A table the server lists here with
//! `aepg.ciphertext` columns gets them unusable, as a load would.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::analysis::TableInfo;
use crate::names::{ColumnName, TableName};

/// Tables kept at most; past it the cache starts over (an application that
/// names more distinct tables than this reads some of them again).
const MAX_TABLES: usize = 4096;

/// A table read on demand: what the analyzer sees, and where its columns
/// are on the server (to check a result column's origin).
#[derive(Debug)]
pub(crate) struct LookedUpTable {
    pub(crate) info: TableInfo,
    pub(crate) oid: u32,
    pub(crate) attnums: HashMap<String, i16>,
}

/// What the cache knows of a table name.
pub(crate) enum Lookup {
    /// The server has it.
    Found(TableInfo),
    /// The server said it has no such table.
    Absent,
    /// Not asked yet.
    Unknown,
}

/// The tables read on demand under one catalog, shared by every client
/// that analyzes under it. Not part of what makes two loads of a catalog
/// the same: equal, cloned empty, shown by its size.
#[derive(Default)]
pub(crate) struct LookedUpTables {
    state: Mutex<State>,
}

/// The tables, and how often they were forgotten.
#[derive(Default)]
struct State {
    tables: HashMap<TableName, Option<Arc<LookedUpTable>>>,
    clears: u64,
}

impl LookedUpTables {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every change is one insert or a clear: nothing half done to see.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What to pass to [`record`](Self::record) with the answer of a
    /// lookup sent after this call.
    pub(crate) fn epoch(&self) -> u64 {
        self.lock().clears
    }

    /// What is known of `name`.
    pub(crate) fn get(&self, name: &TableName) -> Lookup {
        match self.lock().tables.get(name) {
            Some(Some(table)) => Lookup::Found(table.info.clone()),
            Some(None) => Lookup::Absent,
            None => Lookup::Unknown,
        }
    }

    /// The oid and `attnum` of column `name` of a table read here.
    pub(crate) fn attribute(&self, name: &ColumnName) -> Option<(u32, i16)> {
        let state = self.lock();
        let table = state.tables.get(&name.table_name())?.as_ref()?;
        Some((table.oid, *table.attnums.get(&name.column)?))
    }

    /// Whether a table read here has `aepg.ciphertext` columns.
    pub(crate) fn has_encrypted_columns(&self, name: &TableName) -> bool {
        self.lock()
            .tables
            .get(name)
            .and_then(Option::as_ref)
            .is_some_and(|table| table.info.has_encrypted_columns())
    }

    /// Keeps what the server answered for `asked`: the tables in `found`,
    /// and every other asked name as absent. An answer to a lookup sent
    /// before the last [`clear`](Self::clear) (`epoch` older) is dropped:
    /// it may show the shapes the clear was for.
    pub(crate) fn record(&self, epoch: u64, asked: &[TableName], found: Vec<LookedUpTable>) {
        let mut state = self.lock();
        if state.clears != epoch {
            return;
        }
        let asked = &asked[..asked.len().min(MAX_TABLES)];
        if state.tables.len() + asked.len() > MAX_TABLES {
            state.tables.clear();
        }
        for name in asked {
            state.tables.insert(name.clone(), None);
        }
        for table in found {
            if asked.contains(&table.info.name) {
                state
                    .tables
                    .insert(table.info.name.clone(), Some(Arc::new(table)));
            }
        }
    }

    /// Forgets every table: they may have changed shape.
    pub(crate) fn clear(&self) {
        let mut state = self.lock();
        state.tables.clear();
        state.clears += 1;
    }

    /// How many names are kept.
    pub(crate) fn len(&self) -> usize {
        self.lock().tables.len()
    }
}

impl Clone for LookedUpTables {
    /// An empty cache: a cloned catalog reads its tables again.
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl PartialEq for LookedUpTables {
    /// Always: two loads of the same catalog are the same whatever each
    /// has read since.
    fn eq(&self, _other: &Self) -> bool {
        true
    }
}

impl fmt::Debug for LookedUpTables {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LookedUpTables")
            .field("names", &self.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::ColumnInfo;

    fn table(name: &str, columns: &[&str]) -> LookedUpTable {
        LookedUpTable {
            info: TableInfo::new(
                TableName::new("public", name),
                columns
                    .iter()
                    .map(|&column| ColumnInfo::plaintext(column))
                    .collect(),
            ),
            oid: 100,
            attnums: columns
                .iter()
                .zip(1..)
                .map(|(&column, attnum)| (column.to_owned(), attnum))
                .collect(),
        }
    }

    #[test]
    fn asked_names_are_found_or_absent_and_nothing_else_is_kept() {
        let cache = LookedUpTables::default();
        let orders = TableName::new("public", "orders");
        let missing = TableName::new("public", "missing");
        let unasked = TableName::new("public", "unasked");
        let epoch = cache.epoch();
        cache.record(
            epoch,
            &[orders.clone(), missing.clone()],
            vec![table("orders", &["id", "total"]), table("unasked", &["x"])],
        );
        assert!(matches!(cache.get(&orders), Lookup::Found(info) if info.columns.len() == 2));
        assert!(matches!(cache.get(&missing), Lookup::Absent));
        assert!(matches!(cache.get(&unasked), Lookup::Unknown));
        assert_eq!(cache.attribute(&orders.column("total")), Some((100, 2)));
        assert_eq!(cache.attribute(&orders.column("nope")), None);
        cache.clear();
        assert!(matches!(cache.get(&orders), Lookup::Unknown));
        // An answer to a lookup sent before the clear is dropped.
        cache.record(
            epoch,
            std::slice::from_ref(&orders),
            vec![table("orders", &["id"])],
        );
        assert!(matches!(cache.get(&orders), Lookup::Unknown));
    }

    #[test]
    fn the_cache_is_bounded() {
        let cache = LookedUpTables::default();
        for index in 0..MAX_TABLES + 10 {
            cache.record(
                cache.epoch(),
                &[TableName::new("public", format!("t{index}"))],
                Vec::new(),
            );
            assert!(cache.len() <= MAX_TABLES);
        }
    }
}

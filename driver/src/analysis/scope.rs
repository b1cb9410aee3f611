//! Which tables, aliases and CTEs a name can refer to at one point of a
//! statement, and what a column reference resolves to.
//!
//! A [`Scope`] is one query level (a `SELECT`'s `FROM` list, the target of an
//! `UPDATE` and its `FROM` list, …) linked to the enclosing levels, so a
//! correlated subquery sees the columns of the queries around it.

use std::ops::Range;

use super::operand::{CiphertextColumn, SourceColumn};
use super::TableInfo;
use crate::names::ColumnName;

/// How a relation in `FROM` can be named in a column reference.
#[derive(Clone, Debug)]
pub(super) enum Qualifier {
    /// By its alias only (`FROM patients p`: `p.ssn`, never `patients.ssn`).
    Alias(String),
    /// A table without alias: `patients.ssn` or `public.patients.ssn`.
    Table {
        /// Its schema.
        schema: String,
        /// Its name.
        name: String,
    },
    /// Not at all: a subquery without alias.
    Anonymous,
}

impl Qualifier {
    /// Whether `qualifier` (the parts before the column name) names this relation.
    fn matches(&self, qualifier: &[String]) -> bool {
        match (self, qualifier) {
            (Self::Alias(alias), [name]) => alias == name,
            (Self::Table { name, .. }, [given]) => name == given,
            (Self::Table { schema, name }, [given_schema, given_name])
            | (Self::Table { schema, name }, [_, given_schema, given_name]) => {
                schema == given_schema && name == given_name
            }
            _ => false,
        }
    }

    /// The single name a bare identifier would have to equal to mean the
    /// whole row of this relation.
    fn row_name(&self) -> Option<&str> {
        match self {
            Self::Alias(name) | Self::Table { name, .. } => Some(name),
            Self::Anonymous => None,
        }
    }
}

/// One named column of a relation.
#[derive(Clone, Debug)]
pub(super) struct ScopeColumn {
    /// The name a reference must use (already case-folded).
    pub(super) name: String,
    /// What its values are.
    pub(super) source: SourceColumn,
    /// Whether its position among its relation's columns is the server's
    /// column order (a table's or view's, or a `*` over one carried through
    /// a subquery or CTE), which no signature covers.
    pub(super) server_ordered: bool,
}

/// One entry of a `FROM` list (or the target of `INSERT`/`UPDATE`/`DELETE`).
#[derive(Clone, Debug)]
pub(super) struct Relation {
    /// How it is named.
    pub(super) qualifier: Qualifier,
    /// Its columns, or `None` when they are unknown (a table the schema view
    /// does not know, a function in `FROM`): then any name might be one of them.
    pub(super) columns: Option<Vec<ScopeColumn>>,
    /// Whether its columns can only be named with its qualifier, as those of
    /// `EXCLUDED` in `ON CONFLICT … DO UPDATE`.
    pub(super) qualified_only: bool,
}

impl Relation {
    /// A table from the schema view.
    pub(super) fn from_table(table: &TableInfo, alias: Option<String>) -> Self {
        let columns = table
            .columns
            .iter()
            .map(|column| {
                let name = table.name.column(column.name.clone());
                let source = match CiphertextColumn::of(name.clone(), &column.protection) {
                    Some(ciphertext) => SourceColumn::Ciphertext(ciphertext),
                    None => SourceColumn::Plaintext {
                        label: name.to_string(),
                        origin: Some(name),
                    },
                };
                ScopeColumn {
                    name: column.name.clone(),
                    source,
                    server_ordered: true,
                }
            })
            .collect();
        let qualifier = match alias {
            Some(alias) => Qualifier::Alias(alias),
            None => Qualifier::Table {
                schema: table.name.schema.clone(),
                name: table.name.name.clone(),
            },
        };
        Self {
            qualifier,
            columns: Some(columns),
            qualified_only: false,
        }
    }

    /// A relation with known columns (a subquery or CTE).
    pub(super) fn derived(name: Option<String>, columns: Vec<ScopeColumn>) -> Self {
        Self {
            qualifier: name.map_or(Qualifier::Anonymous, Qualifier::Alias),
            columns: Some(columns),
            qualified_only: false,
        }
    }

    /// The same columns under another name that must always be written
    /// (`EXCLUDED`).
    pub(super) fn qualified_copy(&self, name: &str) -> Self {
        Self {
            qualifier: Qualifier::Alias(name.to_owned()),
            columns: self.columns.clone(),
            qualified_only: true,
        }
    }

    /// A relation whose columns cannot be known.
    pub(super) fn opaque(name: Option<String>) -> Self {
        Self {
            qualifier: name.map_or(Qualifier::Anonymous, Qualifier::Alias),
            columns: None,
            qualified_only: false,
        }
    }

    /// Renames the first columns, as `AS alias(a, b)` does.
    pub(super) fn rename_columns(&mut self, names: &[String]) {
        if let Some(columns) = &mut self.columns {
            for (column, name) in columns.iter_mut().zip(names) {
                column.name.clone_from(name);
            }
        }
    }

    /// Whether any column holds ciphertext.
    pub(super) fn has_ciphertext(&self) -> bool {
        self.columns
            .as_ref()
            .is_some_and(|columns| columns.iter().any(|column| column.source.is_ciphertext()))
    }

    fn columns_named<'r>(&'r self, name: &'r str) -> impl Iterator<Item = &'r ScopeColumn> + 'r {
        self.columns
            .iter()
            .flatten()
            .filter(move |column| column.name == name)
    }
}

/// A CTE visible from a query: a relation waiting to be named in `FROM`.
#[derive(Clone, Debug)]
pub(super) struct CommonTable {
    /// Its name (already case-folded).
    pub(super) name: String,
    /// Its columns.
    pub(super) columns: Vec<ScopeColumn>,
}

/// What a column reference resolved to.
#[derive(Clone, Debug)]
pub(super) enum ColumnLookup {
    /// One column.
    Found(SourceColumn),
    /// A bare relation name: the whole row as one composite value.
    WholeRow {
        /// Whether the row holds ciphertext.
        has_ciphertext: bool,
    },
    /// Several columns at the same level: the server refuses the statement.
    Ambiguous,
    /// A column of an inner query that shadows an encrypted column of the
    /// same name in an outer query: the server binds the inner one, but the
    /// application may mean the outer one, and a column added by the server
    /// to the inner table would capture a value meant for encryption.
    Shadowing(ColumnName),
    /// Maybe a column of a relation whose columns are unknown.
    Unknown,
    /// Nothing by that name: the server refuses the statement.
    NotFound,
}

/// One query level and the levels around it.
#[derive(Debug, Default)]
pub(super) struct Scope<'outer> {
    outer: Option<&'outer Scope<'outer>>,
    relations: Vec<Relation>,
    /// What `*` expands to over each `FROM` item (or target) of this level,
    /// in order; `None` where some columns are unknown.
    star_items: Vec<Option<Vec<ScopeColumn>>>,
    common_tables: Vec<CommonTable>,
    /// Columns merged by `JOIN … USING` / `NATURAL JOIN`: an unqualified
    /// reference to them is not ambiguous.
    merged_columns: Vec<String>,
}

impl<'outer> Scope<'outer> {
    /// An empty level inside `outer` (or a top-level one).
    pub(super) fn inside(outer: Option<&'outer Scope<'outer>>) -> Self {
        Self {
            outer,
            ..Self::default()
        }
    }

    /// The enclosing level.
    pub(super) fn outer(&self) -> Option<&'outer Scope<'outer>> {
        self.outer
    }

    /// Adds a relation to this level (one of a `FROM` item's relations).
    pub(super) fn add_relation(&mut self, relation: Relation) {
        self.relations.push(relation);
    }

    /// Adds a relation that is a whole `FROM` item of its own (the target of
    /// `UPDATE`, `DELETE`, `INSERT`), which `*` expands over.
    pub(super) fn add_target(&mut self, relation: Relation) {
        self.star_items.push(relation.columns.clone());
        self.relations.push(relation);
    }

    /// Records what `*` expands to over one `FROM` item.
    pub(super) fn add_star_item(&mut self, columns: Option<Vec<ScopeColumn>>) {
        self.star_items.push(columns);
    }

    /// What `*` expands to at this level, or `None` if some columns are unknown.
    pub(super) fn star_columns(&self) -> Option<Vec<ScopeColumn>> {
        let mut columns = Vec::new();
        for item in &self.star_items {
            columns.extend(item.as_ref()?.iter().cloned());
        }
        Some(columns)
    }

    /// How many relations this level holds (to tell the left and right
    /// sides of a join apart).
    pub(super) fn relation_count(&self) -> usize {
        self.relations.len()
    }

    /// Declares a CTE for this level and the levels inside it.
    pub(super) fn add_common_table(&mut self, common_table: CommonTable) {
        self.common_tables.push(common_table);
    }

    /// Marks a column name as merged by `USING` or `NATURAL`.
    pub(super) fn merge_column(&mut self, name: String) {
        self.merged_columns.push(name);
    }

    fn levels(&self) -> impl Iterator<Item = &Scope<'_>> {
        std::iter::successors(Some(self), |level| level.outer)
    }

    /// The CTE a one-part table name refers to, innermost first; a later
    /// CTE of one `WITH` shadows an earlier one of the same name.
    pub(super) fn common_table(&self, name: &str) -> Option<&CommonTable> {
        self.levels().find_map(|level| {
            level
                .common_tables
                .iter()
                .rev()
                .find(|common_table| common_table.name == name)
        })
    }

    /// Resolves an unqualified column name as the server does: the
    /// innermost level with a match wins; only when no level has a column of
    /// that name can it mean a whole row.
    pub(super) fn lookup_column(&self, name: &str) -> ColumnLookup {
        for level in self.levels() {
            let visible = || {
                level
                    .relations
                    .iter()
                    .filter(|relation| !relation.qualified_only)
            };
            let mut matches = visible().flat_map(|relation| relation.columns_named(name));
            if let Some(first) = matches.next() {
                if matches.next().is_some() && !level.is_merged(name) {
                    return ColumnLookup::Ambiguous;
                }
                if let Some(outer) = level
                    .outer
                    .and_then(|outer| outer.shadowed(name, &first.source))
                {
                    return ColumnLookup::Shadowing(outer);
                }
                return ColumnLookup::Found(first.source.clone());
            }
            // A valid statement cannot name a column that appears nowhere, so
            // a relation with unknown columns is where it must come from.
            if visible().any(|relation| relation.columns.is_none()) {
                return ColumnLookup::Unknown;
            }
        }
        for level in self.levels() {
            if let Some(relation) = level
                .relations
                .iter()
                .find(|relation| relation.qualifier.row_name() == Some(name))
            {
                return ColumnLookup::WholeRow {
                    has_ciphertext: relation.has_ciphertext() || relation.columns.is_none(),
                };
            }
        }
        ColumnLookup::NotFound
    }

    /// An encrypted column named `name`, visible unqualified at this level
    /// or an outer one, that `inner` (found by that name in an inner query)
    /// is not under the same setting as.
    fn shadowed(&self, name: &str, inner: &SourceColumn) -> Option<ColumnName> {
        let same_setting = |outer: &CiphertextColumn| match (inner, &outer.encryption) {
            (SourceColumn::Ciphertext(inner), Ok(outer)) => {
                inner.encryption.as_ref().is_ok_and(|inner| inner == outer)
            }
            _ => false,
        };
        self.levels().find_map(|level| {
            level
                .relations
                .iter()
                .filter(|relation| !relation.qualified_only)
                .flat_map(|relation| relation.columns_named(name))
                .find_map(|column| match &column.source {
                    SourceColumn::Ciphertext(outer) if !same_setting(outer) => {
                        Some(outer.column.clone())
                    }
                    _ => None,
                })
        })
    }

    /// Resolves `qualifier.column`.
    pub(super) fn lookup_qualified(&self, qualifier: &[String], column: &str) -> ColumnLookup {
        for level in self.levels() {
            let mut relations = level
                .relations
                .iter()
                .filter(|relation| relation.qualifier.matches(qualifier));
            let Some(relation) = relations.next() else {
                continue;
            };
            if relations.next().is_some() {
                return ColumnLookup::Ambiguous;
            }
            if relation.columns.is_none() {
                return ColumnLookup::Unknown;
            }
            let mut columns = relation.columns_named(column);
            return match (columns.next(), columns.next()) {
                (Some(found), None) => ColumnLookup::Found(found.source.clone()),
                (Some(_), Some(_)) => ColumnLookup::Ambiguous,
                (None, _) => ColumnLookup::NotFound,
            };
        }
        ColumnLookup::NotFound
    }

    /// The columns named `name` among this level's relations in `range`
    /// (one side of a join).
    pub(super) fn columns_in(&self, range: Range<usize>, name: &str) -> Vec<SourceColumn> {
        self.relations
            .get(range)
            .unwrap_or_default()
            .iter()
            .flat_map(|relation| relation.columns_named(name))
            .map(|column| column.source.clone())
            .collect()
    }

    /// The column names of this level's relations in `range`, or `None` if
    /// some are unknown.
    pub(super) fn column_names_in(&self, range: Range<usize>) -> Option<Vec<String>> {
        let mut names = Vec::new();
        for relation in self.relations.get(range).unwrap_or_default() {
            names.extend(
                relation
                    .columns
                    .as_ref()?
                    .iter()
                    .map(|column| column.name.clone()),
            );
        }
        Some(names)
    }

    /// Whether `name` was merged by an earlier `USING` or `NATURAL` join.
    pub(super) fn is_merged(&self, name: &str) -> bool {
        self.merged_columns.iter().any(|merged| merged == name)
    }

    /// The relation `qualifier` names, innermost first (for `alias.*`).
    pub(super) fn relation(&self, qualifier: &[String]) -> Option<&Relation> {
        self.levels().find_map(|level| {
            level
                .relations
                .iter()
                .find(|relation| relation.qualifier.matches(qualifier))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::{ColumnEncryption, ColumnInfo};
    use crate::cell::EncryptionMode;

    fn table(name: &str, columns: &[(&str, bool)]) -> TableInfo {
        TableInfo::new(
            crate::names::TableName::new("public", name),
            columns
                .iter()
                .map(|(column, encrypted)| {
                    if *encrypted {
                        ColumnInfo::encrypted(
                            *column,
                            ColumnEncryption {
                                setting_id: 1,
                                setting_name: "s1".into(),
                                mode: EncryptionMode::Deterministic,
                            },
                        )
                    } else {
                        ColumnInfo::plaintext(*column)
                    }
                })
                .collect(),
        )
    }

    #[test]
    fn the_innermost_level_wins_and_outer_levels_stay_visible() {
        let mut outer = Scope::inside(None);
        outer.add_relation(Relation::from_table(
            &table("a", &[("x", true), ("y", false)]),
            None,
        ));
        let mut inner = Scope::inside(Some(&outer));
        inner.add_relation(Relation::from_table(
            &table("b", &[("y", false), ("z", true)]),
            None,
        ));
        let mut innermost = Scope::inside(Some(&inner));
        innermost.add_relation(Relation::from_table(&table("c", &[("z", true)]), None));
        assert!(matches!(
            inner.lookup_column("y"),
            ColumnLookup::Found(SourceColumn::Plaintext { origin: Some(origin), .. })
                if origin.table == "b"
        ));
        assert!(matches!(
            inner.lookup_column("x"),
            ColumnLookup::Found(SourceColumn::Ciphertext(_))
        ));
        assert!(matches!(
            innermost.lookup_column("z"),
            ColumnLookup::Found(SourceColumn::Ciphertext(found)) if found.column.table == "c"
        ));
        assert!(matches!(
            inner.lookup_qualified(&["a".into()], "x"),
            ColumnLookup::Found(SourceColumn::Ciphertext(_))
        ));
        assert!(matches!(
            inner.lookup_qualified(&["public".into(), "a".into()], "x"),
            ColumnLookup::Found(SourceColumn::Ciphertext(_))
        ));
    }

    #[test]
    fn an_inner_plaintext_column_may_not_shadow_an_outer_encrypted_one() {
        let mut outer = Scope::inside(None);
        outer.add_relation(Relation::from_table(&table("a", &[("x", true)]), None));
        let middle = Scope::inside(Some(&outer));
        let mut inner = Scope::inside(Some(&middle));
        inner.add_relation(Relation::from_table(&table("b", &[("x", false)]), None));
        assert!(matches!(
            inner.lookup_column("x"),
            ColumnLookup::Shadowing(column) if column.table == "a"
        ));
        assert!(matches!(
            inner.lookup_qualified(&["b".into()], "x"),
            ColumnLookup::Found(SourceColumn::Plaintext { .. })
        ));
    }

    #[test]
    fn an_alias_hides_the_table_name_and_duplicates_are_ambiguous() {
        let mut scope = Scope::inside(None);
        scope.add_relation(Relation::from_table(
            &table("a", &[("x", true)]),
            Some("p".into()),
        ));
        scope.add_relation(Relation::from_table(&table("b", &[("x", true)]), None));
        assert!(matches!(
            scope.lookup_qualified(&["a".into()], "x"),
            ColumnLookup::NotFound
        ));
        assert!(matches!(scope.lookup_column("x"), ColumnLookup::Ambiguous));
        scope.merge_column("x".into());
        assert!(matches!(scope.lookup_column("x"), ColumnLookup::Found(_)));
        assert!(matches!(
            scope.lookup_column("p"),
            ColumnLookup::WholeRow {
                has_ciphertext: true
            }
        ));
    }

    #[test]
    fn a_relation_with_unknown_columns_makes_missing_names_unknown() {
        let mut scope = Scope::inside(None);
        scope.add_relation(Relation::from_table(&table("a", &[("x", true)]), None));
        scope.add_relation(Relation::opaque(Some("f".into())));
        assert!(matches!(scope.lookup_column("x"), ColumnLookup::Found(_)));
        assert!(matches!(scope.lookup_column("z"), ColumnLookup::Unknown));
        assert!(matches!(
            scope.lookup_qualified(&["f".into()], "z"),
            ColumnLookup::Unknown
        ));
    }
}

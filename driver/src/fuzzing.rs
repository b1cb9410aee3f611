//! Entry points of the fuzz targets (`fuzz/`, a workspace of its own), and
//! the checks they make. Compiled only for fuzzing and for this crate's
//! tests, which run the same checks over the analyzer's corpus.
//!
//! - [`cell`]: any bytes as a cell never panic the parser or the cipher,
//!   and any plaintext round-trips; as a plaintext of any type, coercion to
//!   the type never panics, and what it yields is valid and its own
//!   coercion (canonical).
//! - [`record`]: any bytes as any kind of catalog record either fail to
//!   decode or decode to a record whose canonical encoding is those bytes.
//! - [`analysis`]: any text is analyzed without panicking; what an accepted
//!   analysis binds for encryption is a real encrypted column; and, with
//!   the `pg-parser` feature, it is differential: every parameter that
//!   PostgreSQL's own parse tree shows stored into, or compared with, a
//!   column of an encrypted name must be one the analysis encrypts.

use aepg_keystore::ColumnKey;
use zeroize::Zeroizing;

use crate::analysis::test_schema::TestSchema;
use crate::analysis::{analyze, ParameterTarget, Refusal, StatementAnalysis};
use crate::cell::{
    coerce, CellCipher, CellHeader, CellSetting, Coercion, EncryptionMode, PaddingPolicy,
    PlaintextType,
};
use crate::record::{
    CatalogRecord, ColumnAssignment, ColumnManifest, EncryptionSettingRecord, WrappedColumnKey,
};

/// Cells: parse and decrypt arbitrary bytes; encrypt and decrypt them as a plaintext.
pub fn cell(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let Ok(key) = ColumnKey::from_unwrapped(Zeroizing::new(vec![0x42; 32])) else {
        return;
    };
    let cipher = CellCipher::new(1, &key);
    let setting = CellSetting {
        setting_id: 7,
        mode: if selector & 1 == 0 {
            EncryptionMode::Deterministic
        } else {
            EncryptionMode::Randomized
        },
        plaintext_type: PlaintextType {
            oid: 25,
            typmod: -1,
        },
        padding: match (selector >> 1) % 3 {
            0 => PaddingPolicy::None,
            1 => PaddingPolicy::Block16,
            _ => PaddingPolicy::Bucket,
        },
    };
    let _ = CellHeader::parse(rest);
    let _ = cipher.decrypt(&setting, rest);
    let cell = cipher
        .encrypt(&setting, rest)
        .unwrap_or_else(|error| panic!("encrypting {} bytes failed: {error}", rest.len()));
    let plaintext = cipher
        .decrypt(&setting, &cell)
        .unwrap_or_else(|error| panic!("a fresh cell does not decrypt: {error}"));
    assert_eq!(&plaintext[..], rest, "round trip");
    coercion(selector, rest);
}

/// Types whose coercion does something.
const COERCED_TYPES: &[&str] = &[
    "numeric",
    "numeric(6,2)",
    "numeric(3,3)",
    "numeric(4)",
    "varchar(3)",
    "char(3)",
    "bpchar",
    "timestamp(0)",
    "timestamptz(3)",
    "interval(2)",
    "time(1)",
    "timetz(3)",
    "inet",
    "cidr",
    "int4[]",
    "char(2)[]",
    "numeric(5,1)[]",
    "text",
    "jsonb",
    "macaddr",
    "money",
];

/// Bytes as a plaintext of one of [`COERCED_TYPES`]: no panic, and a
/// coerced value is valid and coerces to itself.
fn coercion(selector: u8, plaintext: &[u8]) {
    let name = COERCED_TYPES[usize::from(selector) % COERCED_TYPES.len()];
    let ty = PlaintextType::parse(name).unwrap_or_else(|error| panic!("{name}: {error}"));
    let _ = coerce(ty, plaintext, Coercion::Compare);
    if let Ok(first) = coerce(ty, plaintext, Coercion::Store) {
        let once = first.as_deref().map_or(plaintext, Vec::as_slice);
        let twice = coerce(ty, once, Coercion::Store)
            .unwrap_or_else(|error| panic!("{name}: a coerced value is refused: {error}"));
        assert_eq!(
            twice.as_deref().map_or(once, Vec::as_slice),
            once,
            "{name}: coercion is not idempotent"
        );
    }
}

/// Catalog records: strict decoding, one encoding per record.
pub fn record(data: &[u8]) {
    canonical::<WrappedColumnKey>(data);
    canonical::<EncryptionSettingRecord>(data);
    canonical::<ColumnAssignment>(data);
    canonical::<ColumnManifest>(data);
}

fn canonical<T: CatalogRecord>(data: &[u8]) {
    if let Ok(record) = T::from_canonical_bytes(data) {
        let encoded = record
            .canonical_bytes()
            .unwrap_or_else(|error| panic!("a decoded record does not encode: {error}"));
        assert_eq!(encoded, data, "decoding accepted a non-canonical encoding");
    }
}

/// SQL analysis: no panic, sound bindings, and agreement with PostgreSQL's
/// parse tree. Returns what the analysis answered.
pub fn analysis(data: &[u8]) -> Option<Result<StatementAnalysis, Refusal>> {
    let sql = std::str::from_utf8(data).ok()?;
    let schema = TestSchema::new();
    let result = analyze(sql, &schema);
    if let Ok(analysis) = &result {
        check_bindings(&schema, sql, analysis);
        #[cfg(feature = "pg-parser")]
        reference::check(&schema, sql, analysis);
    }
    Some(result)
}

/// Every parameter bound for encryption is bound to a real encrypted column
/// of the schema, under its setting.
pub(crate) fn check_bindings(schema: &TestSchema, sql: &str, analysis: &StatementAnalysis) {
    for target in &analysis.parameters {
        if let ParameterTarget::Encrypted {
            column, encryption, ..
        } = target
        {
            let expected = schema
                .column(&column.schema, &column.table, &column.column)
                .and_then(|info| info.encryption());
            assert_eq!(expected, Some(encryption), "{sql:?}: {target:?}");
            assert!(analysis.touches_encrypted_table, "{sql:?}");
        }
    }
}

/// The differential reference: PostgreSQL's parse tree (as JSON), read for
/// the places where a parameter meets a column by name.
#[cfg(feature = "pg-parser")]
mod reference {
    use std::collections::BTreeSet;

    use serde_json::Value;

    use super::TestSchema;
    use crate::analysis::{ParameterTarget, SchemaView, StatementAnalysis};

    /// `AExpr` kinds: an operator, `op ANY`, `op ALL`, `IS DISTINCT FROM`,
    /// `IS NOT DISTINCT FROM`, `NULLIF`, `IN`.
    const COMPARISONS: &[i64] = &[1, 2, 3, 4, 5, 6, 7];

    pub(super) fn check(schema: &TestSchema, sql: &str, analysis: &StatementAnalysis) {
        // Deeply nested text exceeds the protobuf decoder's limit: no opinion.
        let Ok(parsed) = pg_query::parse(sql, 0) else {
            return;
        };
        let Ok(tree) = serde_json::to_value(&parsed.protobuf) else {
            return;
        };
        // Only the ciphertext columns of the relations the statement names
        // count; a relation that does not exist makes the server refuse the
        // statement before any parameter is sent.
        let Some(mut names) = encrypted_names(schema, &tree) else {
            return;
        };
        // A name the statement gives a value of its own (`AS ssn`, `x(ssn)`)
        // no longer means the column.
        for alias in aliases(&tree) {
            names.remove(&alias);
        }
        let mut must_encrypt = BTreeSet::new();
        walk(&tree, &names, schema, &mut must_encrypt);
        for number in must_encrypt {
            let target = analysis.parameters.get(number.saturating_sub(1));
            assert!(
                matches!(target, Some(ParameterTarget::Encrypted { .. })),
                "{sql:?}: PostgreSQL's parse tree shows ${number} meeting an encrypted column, \
                 the analysis sends it as {target:?}"
            );
        }
    }

    /// Names of the ciphertext columns of the relations `tree` names that
    /// no plaintext column of them shares, or `None` if one of them does not
    /// resolve (and is no CTE).
    fn encrypted_names(schema: &TestSchema, tree: &Value) -> Option<BTreeSet<String>> {
        let mut ctes = BTreeSet::new();
        visit(tree, &mut |value| {
            if let Some(name) = node(value, "CommonTableExpr")
                .and_then(|cte| cte.get("ctename"))
                .and_then(Value::as_str)
            {
                ctes.insert(name.to_owned());
            }
        });
        let mut relations = Vec::new();
        let mut unresolved = false;
        visit(tree, &mut |value| {
            let Some(name) = value.get("relname").and_then(Value::as_str) else {
                return;
            };
            let qualifier = value
                .get("schemaname")
                .and_then(Value::as_str)
                .filter(|schema| !schema.is_empty());
            match schema.resolve_table(qualifier, name) {
                Some(table) => relations.push(table),
                None if qualifier.is_none() && ctes.contains(name) => {}
                None => unresolved = true,
            }
        });
        if unresolved {
            return None;
        }
        let columns = || relations.iter().flat_map(|table| &table.columns);
        let plaintext: BTreeSet<&str> = columns()
            .filter(|column| !column.is_ciphertext())
            .map(|column| column.name.as_str())
            .collect();
        Some(
            columns()
                .filter(|column| {
                    column.is_ciphertext() && !plaintext.contains(column.name.as_str())
                })
                .map(|column| column.name.clone())
                .collect(),
        )
    }

    fn node<'v>(value: &'v Value, kind: &str) -> Option<&'v Value> {
        value.get("node")?.get(kind)
    }

    fn param_number(value: &Value) -> Option<usize> {
        let number = node(value, "ParamRef")?.get("number")?.as_u64()?;
        usize::try_from(number).ok()
    }

    /// The last name of a bare column reference.
    fn column_name(value: &Value) -> Option<&str> {
        node(value, "ColumnRef")?
            .get("fields")?
            .as_array()?
            .last()
            .and_then(|field| node(field, "String")?.get("sval")?.as_str())
    }

    /// Every name the statement defines: select-list aliases, alias column
    /// lists, CTE column lists.
    fn aliases(tree: &Value) -> Vec<String> {
        let mut found = Vec::new();
        visit(tree, &mut |value| {
            if let Some(target) = node(value, "SelectStmt") {
                for item in target
                    .get("target_list")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if let Some(name) = node(item, "ResTarget")
                        .and_then(|r| r.get("name"))
                        .and_then(Value::as_str)
                    {
                        found.push(name.to_owned());
                    }
                }
            }
            for key in ["colnames", "aliascolnames"] {
                for name in value
                    .get(key)
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if let Some(name) = node(name, "String")
                        .and_then(|s| s.get("sval"))
                        .and_then(Value::as_str)
                    {
                        found.push(name.to_owned());
                    }
                }
            }
        });
        found
    }

    fn visit(value: &Value, on: &mut impl FnMut(&Value)) {
        on(value);
        match value {
            Value::Object(map) => map.values().for_each(|child| visit(child, on)),
            Value::Array(items) => items.iter().for_each(|child| visit(child, on)),
            _ => {}
        }
    }

    fn walk(
        tree: &Value,
        names: &BTreeSet<String>,
        schema: &TestSchema,
        out: &mut BTreeSet<usize>,
    ) {
        visit(tree, &mut |value| {
            if let Some(expr) = node(value, "AExpr") {
                comparison(expr, names, out);
            }
            if let Some(update) = node(value, "UpdateStmt") {
                assignments(update.get("target_list"), names, out);
            }
            if let Some(insert) = node(value, "InsertStmt") {
                insert_values(insert, names, schema, out);
                if let Some(conflict) = insert.get("on_conflict_clause") {
                    assignments(conflict.get("target_list"), names, out);
                }
            }
        });
    }

    /// `col op $n`, `$n op col`, `col IN ($n, …)`, `col = ANY($n)`.
    fn comparison(expr: &Value, names: &BTreeSet<String>, out: &mut BTreeSet<usize>) {
        let kind = expr.get("kind").and_then(Value::as_i64).unwrap_or_default();
        if !COMPARISONS.contains(&kind) {
            return;
        }
        let (Some(left), Some(right)) = (expr.get("lexpr"), expr.get("rexpr")) else {
            return;
        };
        for (column, other) in [(left, right), (right, left)] {
            if !column_name(column).is_some_and(|name| names.contains(name)) {
                continue;
            }
            match node(other, "List") {
                Some(list) => {
                    for item in list
                        .get("items")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        out.extend(param_number(item));
                    }
                }
                None => out.extend(param_number(other)),
            }
        }
    }

    /// `SET col = $n` (in `UPDATE` or `ON CONFLICT … DO UPDATE`).
    fn assignments(targets: Option<&Value>, names: &BTreeSet<String>, out: &mut BTreeSet<usize>) {
        for target in targets.and_then(Value::as_array).into_iter().flatten() {
            let Some(target) = node(target, "ResTarget") else {
                continue;
            };
            let named = target
                .get("name")
                .and_then(Value::as_str)
                .is_some_and(|name| names.contains(name));
            let bare = target
                .get("indirection")
                .and_then(Value::as_array)
                .is_none_or(Vec::is_empty);
            if named && bare {
                out.extend(target.get("val").and_then(param_number));
            }
        }
    }

    /// `INSERT INTO t (cols) VALUES ($n, …)`, or in table order without columns.
    fn insert_values(
        insert: &Value,
        names: &BTreeSet<String>,
        schema: &TestSchema,
        out: &mut BTreeSet<usize>,
    ) {
        let mut columns: Vec<String> = insert
            .get("cols")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|col| {
                node(col, "ResTarget")?
                    .get("name")?
                    .as_str()
                    .map(str::to_owned)
            })
            .collect();
        if columns.is_empty() {
            let relation = insert.get("relation");
            let name = relation
                .and_then(|r| r.get("relname"))
                .and_then(Value::as_str)
                .unwrap_or_default();
            let qualifier = relation
                .and_then(|r| r.get("schemaname"))
                .and_then(Value::as_str)
                .filter(|schema| !schema.is_empty());
            if let Some(table) = schema.resolve_table(qualifier, name) {
                columns = table.columns.iter().map(|c| c.name.clone()).collect();
            }
        }
        let rows = insert
            .get("select_stmt")
            .and_then(|select| node(select, "SelectStmt"))
            .and_then(|select| select.get("values_lists"))
            .and_then(Value::as_array);
        for row in rows.into_iter().flatten() {
            let items = node(row, "List")
                .and_then(|list| list.get("items"))
                .and_then(Value::as_array);
            for (position, item) in items.into_iter().flatten().enumerate() {
                if columns
                    .get(position)
                    .is_some_and(|name| names.contains(name))
                {
                    out.extend(param_number(item));
                }
            }
        }
    }
}

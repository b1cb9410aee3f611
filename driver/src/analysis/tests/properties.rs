//! Properties over arbitrary text: the analyzer never panics, and whatever
//! it binds for encryption is a real encrypted column of the schema.

use proptest::prelude::*;

use super::corpus::CORPUS;
use crate::analysis::test_schema::TestSchema;
use crate::analysis::{analyze, ParameterTarget, Refusal, StatementAnalysis};

/// Checks what an analysis may claim: encrypted targets only on encrypted
/// columns, with their setting; and text that names no table with encrypted
/// columns is never refused and binds nothing for encryption.
fn assert_sound(schema: &TestSchema, sql: &str, result: &Result<StatementAnalysis, Refusal>) {
    let lower = sql.to_lowercase();
    // Statements that run unanalyzable SQL are refused whatever they name.
    let opaque = matches!(result, Err(Refusal::Opaque { .. }));
    if !opaque
        && !["patient", "visits", "accounts", "pairs"]
            .iter()
            .any(|name| lower.contains(name))
    {
        let analysis = result
            .as_ref()
            .unwrap_or_else(|refusal| panic!("{sql:?} names no encrypted table: {refusal:?}"));
        assert!(!analysis.touches_encrypted_table, "{sql:?}");
        assert!(
            analysis
                .parameters
                .iter()
                .all(|target| *target == ParameterTarget::Plaintext),
            "{sql:?}"
        );
    }
    if let Ok(analysis) = result {
        crate::fuzzing::check_bindings(schema, sql, analysis);
    }
}

/// `sql` cut at the character boundary nearest below `fraction` of its length.
fn truncate(sql: &str, fraction: f64) -> &str {
    let boundaries: Vec<usize> = sql
        .char_indices()
        .map(|(at, _)| at)
        .chain([sql.len()])
        .collect();
    // Truncation towards zero is the point: a position within the text.
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let position = (fraction * boundaries.len() as f64) as usize;
    &sql[..boundaries[position.min(boundaries.len() - 1)]]
}

/// Words that make SQL-like noise over the test schema.
#[rustfmt::skip]
const VOCABULARY: &[&str] = &[
    "SELECT", "INSERT", "INTO", "UPDATE", "DELETE", "FROM", "WHERE", "VALUES", "SET", "JOIN", "ON",
    "USING", "WITH", "AS", "RETURNING", "GROUP", "BY", "ORDER", "UNION", "ALL", "IN", "ANY", "AND",
    "OR", "NOT", "NULL", "IS", "DISTINCT", "EXISTS", "LATERAL", "DEFAULT", "CONFLICT", "DO",
    "NOTHING", "count", "lower", "patients", "visits", "pairs", "plain", "patient_view", "billing",
    "\"Accounts\"", "ssn", "email", "diagnosis", "note", "name", "id", "a", "p", "v", "$1", "$2",
    "$3", "'x'", "42", "(", ")", ",", ".", "=", "<>", "<", "||", "::", "*", ";", "[", "]", "$$",
    "--", "/*", "*/", "\"", "'",
];

fn sql_like() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(VOCABULARY), 0..40).prop_map(|words| words.join(" "))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn never_panics_on_arbitrary_text(text in any::<String>()) {
        let schema = TestSchema::new();
        let result = analyze(&text, &schema);
        assert_sound(&schema, &text, &result);
    }

    #[test]
    fn never_panics_on_sql_like_noise(text in sql_like()) {
        let schema = TestSchema::new();
        let result = analyze(&text, &schema);
        assert_sound(&schema, &text, &result);
    }

    #[test]
    fn never_panics_on_any_corpus_statement_truncated(cut in 0.0..1.0_f64) {
        let schema = TestSchema::new();
        for (sql, _) in CORPUS {
            let truncated = truncate(sql, cut);
            let result = analyze(truncated, &schema);
            assert_sound(&schema, truncated, &result);
        }
    }

    #[test]
    fn never_panics_on_mutated_corpus_statements(
        index in 0..CORPUS.len(),
        at in 0.0..1.0_f64,
        removed in 0..6_usize,
        inserted in prop::collection::vec(prop::sample::select(VOCABULARY), 0..4),
    ) {
        let schema = TestSchema::new();
        let sql = CORPUS[index].0;
        let start = truncate(sql, at).len();
        let end = sql[start..].char_indices().nth(removed).map_or(sql.len(), |(offset, _)| start + offset);
        let mutated = format!("{} {} {}", &sql[..start], inserted.join(" "), &sql[end..]);
        let result = analyze(&mutated, &schema);
        assert_sound(&schema, &mutated, &result);
        // The fuzz target's checks, PostgreSQL's parse tree among them.
        crate::fuzzing::analysis(mutated.as_bytes());
    }
}

#[test]
fn the_fuzz_targets_checks_hold_over_the_corpus() {
    for (sql, _) in CORPUS {
        crate::fuzzing::analysis(sql.as_bytes());
        crate::fuzzing::record(sql.as_bytes());
        crate::fuzzing::cell(sql.as_bytes());
    }
}

/// Runs `check` on a thread with the stack of a Tokio worker, so a walk that
/// recursed too deep would crash the test rather than pass on a big stack.
fn on_small_stack(check: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(check)
        .unwrap()
        .join()
        .unwrap();
}

#[test]
fn long_condition_chains_are_analyzed_not_refused() {
    on_small_stack(|| {
        let schema = TestSchema::new();
        let sql = format!(
            "SELECT id FROM patients WHERE ssn = $1{}",
            " AND name = $2".repeat(1_500)
        );
        let analysis = analyze(&sql, &schema).unwrap();
        assert_eq!(analysis.parameters.len(), 2);
        assert!(matches!(
            analysis.parameters[0],
            ParameterTarget::Encrypted { .. }
        ));
    });
}

#[test]
fn long_operator_chains_are_analyzed_iteratively() {
    on_small_stack(|| {
        let schema = TestSchema::new();
        // Up to what PostgreSQL's parser (libpg_query's stack limit) reads.
        for terms in [300, 1_000] {
            let chain = "id + ".repeat(terms);
            let sql = format!("SELECT {chain}1 FROM patients WHERE ssn = $1");
            let analysis = analyze(&sql, &schema).unwrap();
            assert!(matches!(
                analysis.parameters[..],
                [ParameterTarget::Encrypted { .. }]
            ));
            let sql = format!("SELECT {chain}ssn FROM patients");
            assert!(matches!(
                analyze(&sql, &schema),
                Err(Refusal::NotAllowed { .. })
            ));
        }
    });
}

#[test]
fn statements_too_deep_to_walk_fail_closed_without_exhausting_the_stack() {
    on_small_stack(|| {
        let schema = TestSchema::new();
        let casts = "::int8".repeat(150);
        assert!(matches!(
            analyze(&format!("SELECT $1{casts} FROM patients"), &schema),
            Err(Refusal::UnsupportedShape { .. })
        ));
        assert_eq!(
            analyze(&format!("SELECT $1{casts} FROM plain"), &schema)
                .unwrap()
                .parameters,
            vec![ParameterTarget::Plaintext]
        );
        let unions = " UNION ALL SELECT ssn FROM visits".repeat(1_000);
        assert!(matches!(
            analyze(&format!("SELECT ssn FROM patients{unions}"), &schema),
            Err(Refusal::UnsupportedShape { .. })
        ));
        let subqueries = format!("{}1{}", "(SELECT ".repeat(60), ")".repeat(60));
        assert!(analyze(
            &format!("SELECT name FROM patients WHERE id = {subqueries}"),
            &schema
        )
        .is_err());
        let parentheses = format!("{}1{}", "(".repeat(500), ")".repeat(500));
        assert!(matches!(
            analyze(&format!("SELECT {parentheses} FROM patients"), &schema),
            Err(Refusal::Unparsable { .. })
        ));
        let chain = "1 + ".repeat(20_000);
        assert!(matches!(
            analyze(&format!("SELECT {chain}1 FROM patients"), &schema),
            Err(Refusal::Unparsable { .. })
        ));
        assert_eq!(
            analyze(&format!("SELECT {chain}$1 FROM plain"), &schema)
                .unwrap()
                .parameters,
            vec![ParameterTarget::Plaintext]
        );
    });
}

#[test]
fn many_rows_and_many_statements_are_fine() {
    let schema = TestSchema::new();
    let rows: Vec<String> = (0..2_000)
        .map(|row| format!("(${}, ${})", 2 * row + 1, 2 * row + 2))
        .collect();
    let sql = format!(
        "INSERT INTO patients (ssn, name) VALUES {}",
        rows.join(", ")
    );
    let analysis = analyze(&sql, &schema).unwrap();
    assert_eq!(analysis.parameters.len(), 4_000);
    assert!(matches!(
        analysis.parameters[3_998],
        ParameterTarget::Encrypted { .. }
    ));
    assert_eq!(analysis.parameters[3_999], ParameterTarget::Plaintext);
    let batch = "INSERT INTO plain (a) VALUES (1);".repeat(5_000);
    assert!(analyze(&batch, &schema).is_ok());
}

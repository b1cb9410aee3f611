//! Statements sqlparser reads differently from PostgreSQL, or not at all:
//! PostgreSQL's own parser keeps them from passing as plaintext-only.

use crate::analysis::test_schema::TestSchema;
use crate::analysis::{analyze, ParameterTarget, Refusal};

#[test]
fn unicode_escaped_identifiers_name_the_encrypted_table() {
    let schema = TestSchema::new();
    for sql in [
        r#"SELECT id FROM U&"pat\0069ents" WHERE ssn = $1"#,
        r#"INSERT INTO U&"pat\0069ents" (id, ssn) VALUES ($1, $2)"#,
        r#"SELECT id FROM public.U&"pat!0069ents" UESCAPE '!' WHERE ssn = $1"#,
    ] {
        let refusal = analyze(sql, &schema).expect_err(sql);
        assert!(
            matches!(
                refusal,
                Refusal::Unparsable { .. } | Refusal::SecondOpinion { .. }
            ),
            "{sql}: {refusal:?}"
        );
    }
    // The same escape naming a plaintext table passes.
    let analysis = analyze(r#"SELECT a FROM U&"pl\0061in" WHERE b = $1"#, &schema).unwrap();
    assert_eq!(analysis.parameters, vec![ParameterTarget::Plaintext]);
}

#[test]
fn a_backslash_ends_a_standard_string_as_it_does_on_the_server() {
    // With standard_conforming_strings (the default), 'x\' is a whole
    // string: the server then reads a comparison of ssn with $1. A reader
    // that took \' for an escaped quote would see one long string and
    // send $1 as plaintext.
    let schema = TestSchema::new();
    let sql = r"SELECT 'x\', id FROM patients WHERE ssn = $1 --'";
    match analyze(sql, &schema) {
        Ok(analysis) => assert!(
            matches!(analysis.parameters[..], [ParameterTarget::Encrypted { .. }]),
            "{analysis:?}"
        ),
        Err(refusal) => assert!(
            matches!(
                refusal,
                Refusal::SecondOpinion { .. } | Refusal::Unparsable { .. }
            ),
            "{refusal:?}"
        ),
    }
}

#[test]
fn what_postgres_cannot_read_touching_encrypted_tables_is_refused() {
    let schema = TestSchema::new();
    // Deeper than libpg_query's stack limit: the walk could read it, the
    // second opinion cannot confirm it.
    let chain = "id + ".repeat(3_000);
    let sql = format!("SELECT {chain}1 FROM patients WHERE ssn = $1");
    let refusal = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || analyze(&sql, &TestSchema::new()))
        .unwrap()
        .join()
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(refusal, Refusal::SecondOpinion { .. }),
        "{refusal:?}"
    );
    assert!(
        refusal.to_string().contains("nested too deeply"),
        "{refusal}"
    );
    // A deep statement on plaintext tables is the server's business.
    let sql = format!("SELECT {chain}1 FROM plain WHERE a = $1");
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || analyze(&sql, &TestSchema::new()).unwrap())
        .unwrap()
        .join()
        .unwrap();
    drop(schema);
}

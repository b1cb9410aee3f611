//! Which texts are session control, sent without analysis or catalog.

use crate::analysis::{session_control, SessionControl};

#[test]
fn settings_and_transaction_control_are_recognised() {
    let cases = [
        (
            "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ",
            SessionControl::Changes,
        ),
        ("SET search_path = app, public", SessionControl::Changes),
        (
            "set local statement_timeout = '5s'",
            SessionControl::Changes,
        ),
        ("RESET ALL", SessionControl::Changes),
        ("DISCARD ALL", SessionControl::Changes),
        ("SHOW search_path", SessionControl::Keeps),
        ("BEGIN", SessionControl::Keeps),
        ("START TRANSACTION READ ONLY", SessionControl::Keeps),
        ("SAVEPOINT a", SessionControl::Keeps),
        ("RELEASE SAVEPOINT a", SessionControl::EndsTransaction),
        ("ROLLBACK TO SAVEPOINT a", SessionControl::EndsTransaction),
        ("COMMIT", SessionControl::EndsTransaction),
        ("BEGIN; SET LOCAL search_path = x", SessionControl::Changes),
        ("COMMIT; SHOW work_mem", SessionControl::EndsTransaction),
    ];
    for (sql, expected) in cases {
        assert_eq!(
            session_control(sql).map(|text| text.effect),
            Some(expected),
            "{sql}"
        );
    }
}

#[test]
fn opening_and_closing_a_transaction_block_is_told() {
    let block = |sql| session_control(sql).and_then(|text| text.block_open_after);
    assert_eq!(block("BEGIN"), Some(true));
    assert_eq!(
        block("START TRANSACTION ISOLATION LEVEL SERIALIZABLE"),
        Some(true)
    );
    assert_eq!(block("COMMIT"), Some(false));
    assert_eq!(block("ROLLBACK"), Some(false));
    assert_eq!(
        block("BEGIN; SET LOCAL work_mem = '1MB'; COMMIT"),
        Some(false)
    );
    assert_eq!(block("COMMIT; BEGIN"), Some(true));
    assert_eq!(block("ROLLBACK TO SAVEPOINT a"), None);
    assert_eq!(block("COMMIT AND CHAIN"), Some(true));
    assert_eq!(block("ROLLBACK AND CHAIN"), Some(true));
    assert_eq!(block("SET search_path = x"), None);
}

#[test]
fn anything_that_names_a_relation_or_runs_a_query_is_not() {
    for sql in [
        "",
        ";",
        "SELECT 1",
        "SET search_path = x; SELECT ssn FROM people",
        "BEGIN; INSERT INTO people (ssn) VALUES ('1')",
        "SET x = (SELECT ssn FROM people)",
        "COPY people TO STDOUT",
        "DO $$ BEGIN PERFORM 1; END $$",
        "PREPARE p AS SELECT 1",
        "EXECUTE p",
        "LISTEN aepg_catalog",
        "not sql at all",
        "SET",
    ] {
        assert_eq!(session_control(sql), None, "{sql}");
    }
}

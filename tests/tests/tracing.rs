//! aepg's tracing: spans and events for analysis, prepare, encryption,
//! decryption, key unwrap and catalog load, with names — and never a value
//! of an encrypted column. Everything is captured at TRACE level (also
//! tokio-postgres's `log` records) while distinctive plaintexts go through.
//! One test in this binary: it installs the process's subscriber.
#![allow(clippy::unwrap_used)] // a test fails by panicking

use std::io::Write;
use std::sync::{Arc, Mutex};

use aepg::cell::EncryptionMode::{Deterministic, Randomized};
use aepg_tests::fixture::EncryptedDatabase;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Every line the subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test]
async fn traces_name_what_happens_and_never_a_value() {
    let captured = Captured::default();
    // Everything at TRACE, but sqlparser's own debug output: it logs the
    // tokens of the SQL text it parses, literals included (see the README's
    // tracing section: filter it below debug).
    let filter = Targets::new()
        .with_default(LevelFilter::TRACE)
        .with_target("sqlparser", LevelFilter::INFO);
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(captured.clone())
        .with_span_events(FmtSpan::FULL)
        .with_ansi(false);
    tracing_subscriber::registry()
        .with(layer)
        .with(filter)
        .try_init()
        .unwrap();

    let db = EncryptedDatabase::new("tracing").await;
    db.setting("ssn", "text", Deterministic).await;
    db.setting("note", "text", Randomized).await;
    db.table(
        "CREATE TABLE people (id int, ssn aepg.ciphertext, note aepg.ciphertext)",
        &[("people", "ssn", "ssn"), ("people", "note", "note")],
    )
    .await;
    let client = db.client().await;
    let needles = ["NEEDLE-SSN-8675309", "NEEDLE-NOTE-31337"];
    client
        .execute(
            "INSERT INTO people (id, ssn, note) VALUES ($1, $2, $3)",
            &[&1, &needles[0], &needles[1]],
        )
        .await
        .unwrap();
    let row = client
        .query_one(
            "SELECT ssn, note FROM people WHERE ssn = $1",
            &[&needles[0]],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, &str>("note"), needles[1]);
    // A refused statement with a needle in its text.
    client
        .query(
            "SELECT id FROM people WHERE ssn = 'NEEDLE-SSN-8675309'",
            &[],
        )
        .await
        .unwrap_err();

    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    for needle in needles {
        assert!(!text.contains(needle), "{needle} appears in the traces");
        assert!(
            !text.contains(&needle[7..]),
            "part of {needle} appears in the traces"
        );
    }
    for expected in [
        "aepg.catalog.load",
        "aepg catalog loaded and verified",
        "aepg.key.unwrap",
        "aepg.prepare",
        "aepg.analyze",
        "aepg.encrypt",
        "aepg.decrypt",
        "aepg statement prepared",
        "aepg parameter encrypted",
        "aepg cell decrypted",
        "public.people.ssn",
    ] {
        assert!(text.contains(expected), "no {expected:?} in the traces");
    }
    // tokio-postgres's `log` records were captured too (the parameters it
    // logs for encrypted columns are cells).
    assert!(text.contains("tokio_postgres"), "no log records captured");
    // Spans are timed.
    assert!(text.contains("time.busy"), "spans carry no timings");
}

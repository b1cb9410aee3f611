//! TLS to the server with rustls: a server with `ssl = on` and a
//! certificate from a CA made here; aepg's client over it, a CA it does not
//! trust, a certificate for another name, and a server without TLS.
#![allow(clippy::unwrap_used)] // a test fails by panicking

use std::time::Duration;

use aepg::cell::EncryptionMode::Deterministic;
use aepg::tls::MakeRustlsConnect;
use aepg_tests::fixture::EncryptedDatabase;
use aepg_tests::DedicatedServer;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use tokio_postgres::config::SslMode;

/// A certificate authority of the test's own.
struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl TestCa {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Self { issuer }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A server certificate for `names` and its private key, in PEM.
    fn server_certificate(&self, names: &[&str]) -> (String, String) {
        let names: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
        let key = KeyPair::generate().unwrap();
        let certificate = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &self.issuer)
            .unwrap();
        (certificate.pem(), key.serialize_pem())
    }

    fn connector(&self) -> MakeRustlsConnect {
        aepg::tls::connector_trusting(self.pem().as_bytes()).unwrap()
    }
}

/// Writes `pem` as `file` in the server's data directory, through the
/// server itself (so it works for a container as for a local server),
/// readable by the server's user only, as it requires of a key.
async fn write_server_file(db: &EncryptedDatabase, file: &str, pem: &str) {
    assert!(!pem.contains("$pem$"));
    db.plain
        .batch_execute(&format!(
            "COPY (SELECT unnest(string_to_array($pem${pem}$pem$, E'\\n'))) \
             TO PROGRAM 'umask 077 && cat > {file}'"
        ))
        .await
        .unwrap();
}

/// Serves `certificate` (a fresh file each time), or turns TLS off, and
/// waits until new connections see it.
async fn configure_tls(db: &EncryptedDatabase, certificate: Option<(String, String)>, tag: &str) {
    let data_directory: String = db
        .plain
        .query_one("SHOW data_directory", &[])
        .await
        .unwrap()
        .get(0);
    let wanted = if certificate.is_some() { "on" } else { "off" };
    let mut statements = vec![format!("ALTER SYSTEM SET ssl = {wanted}")];
    if let Some((certificate, key)) = certificate {
        let (certificate_file, key_file) = (
            format!("{data_directory}/aepg-{tag}.crt"),
            format!("{data_directory}/aepg-{tag}.key"),
        );
        write_server_file(db, &certificate_file, &certificate).await;
        write_server_file(db, &key_file, &key).await;
        statements.push(format!(
            "ALTER SYSTEM SET ssl_cert_file = '{certificate_file}'"
        ));
        statements.push(format!("ALTER SYSTEM SET ssl_key_file = '{key_file}'"));
    }
    statements.push("SELECT pg_reload_conf()".to_owned());
    // ALTER SYSTEM runs outside transaction blocks: one statement at a time.
    for statement in statements {
        db.plain.batch_execute(&statement).await.unwrap();
    }
    for _ in 0..100 {
        let fresh = db.database.connect().await;
        let ssl: String = fresh.query_one("SHOW ssl", &[]).await.unwrap().get(0);
        let file: String = fresh
            .query_one("SHOW ssl_cert_file", &[])
            .await
            .unwrap()
            .get(0);
        if ssl == wanted && (wanted == "off" || file.contains(tag)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the server did not take the TLS configuration");
}

async fn tls_server(label: &str) -> (DedicatedServer, EncryptedDatabase) {
    let server = DedicatedServer::start(&[]).await.unwrap();
    let db = EncryptedDatabase::on(server.create_database(label).await.unwrap()).await;
    (server, db)
}

#[tokio::test]
async fn encrypted_columns_over_verified_tls() {
    let (_server, db) = tls_server("tls").await;
    let ca = TestCa::new("aepg test CA");
    configure_tls(
        &db,
        Some(ca.server_certificate(&["localhost", "127.0.0.1"])),
        "good",
    )
    .await;
    db.setting("ssn", "text", Deterministic).await;
    db.table(
        "CREATE TABLE people (id int, ssn aepg.ciphertext)",
        &[("people", "ssn", "ssn")],
    )
    .await;
    let encryption = db.encryption_with(|config| config);
    let config = db.database.config();
    assert_eq!(
        config.get_ssl_mode(),
        SslMode::Prefer,
        "the harness's default"
    );

    let (client, connection) = aepg::tls::connect(&config, ca.connector(), encryption.clone())
        .await
        .unwrap();
    tokio::spawn(connection);
    let row = client
        .query_one(
            "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    assert!(row.get::<_, bool>("ssl"), "the session is encrypted");
    assert!(row.get::<_, String>("version").starts_with("TLSv1."));
    client
        .execute(
            "INSERT INTO people (id, ssn) VALUES ($1, $2)",
            &[&1, &"078-05-1120"],
        )
        .await
        .unwrap();
    let found = client
        .query_one("SELECT id FROM people WHERE ssn = $1", &[&"078-05-1120"])
        .await
        .unwrap();
    assert_eq!(found.get::<_, i32>(0), 1);

    // A CA the client does not trust: refused before anything is sent.
    let stranger = TestCa::new("someone else's CA");
    let error = aepg::tls::connect(&config, stranger.connector(), encryption.clone())
        .await
        .unwrap_err();
    assert!(format!("{error:?}").contains("UnknownIssuer"), "{error:?}");

    // A certificate from the trusted CA, for another name.
    configure_tls(
        &db,
        Some(ca.server_certificate(&["db.elsewhere.invalid"])),
        "other",
    )
    .await;
    let error = aepg::tls::connect(&config, ca.connector(), encryption)
        .await
        .unwrap_err();
    assert!(
        format!("{error:?}").contains("NotValidForName"),
        "{error:?}"
    );
}

#[tokio::test]
async fn tls_is_required_even_when_the_server_declines_it() {
    let (_server, db) = tls_server("no_tls").await;
    let ca = TestCa::new("aepg test CA");
    configure_tls(&db, None, "off").await;
    let encryption = db.encryption_with(|config| config);
    let mut config = db.database.config();
    config.ssl_mode(SslMode::Prefer);
    // tokio-postgres's default, `prefer`, would fall back to plaintext...
    let (plain, connection) = config.connect(ca.connector()).await.unwrap();
    tokio::spawn(connection);
    let ssl: bool = plain
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!ssl, "prefer fell back to plaintext");
    // ... aepg::tls::connect does not, whatever the configuration says.
    let error = aepg::tls::connect(&config, ca.connector(), encryption.clone())
        .await
        .unwrap_err();
    assert!(error.to_string().contains("TLS"), "{error}");
    // Nor does sslmode=require with aepg::connect.
    let error = aepg::connect(
        &format!("{} sslmode=require", db.database.connection_string()),
        ca.connector(),
        encryption,
    )
    .await
    .unwrap_err();
    assert!(error.to_string().contains("TLS"), "{error}");
    // A PEM without a certificate is refused up front.
    assert!(aepg::tls::connector_trusting(b"not a certificate").is_err());
}

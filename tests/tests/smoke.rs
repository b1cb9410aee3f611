//! Smoke tests of the shared PostgreSQL harness.

use aepg_tests::{env_vars, DedicatedServer, TestDatabase};

#[tokio::test]
async fn server_starts_and_reports_expected_version() {
    let db = TestDatabase::new("smoke").await;
    let client = db.connect().await;
    let row = client
        .query_one(
            "SELECT current_database(), current_setting('server_version_num')::int",
            &[],
        )
        .await
        .expect("query");
    let current: String = row.get(0);
    let version_num: i32 = row.get(1);
    assert_eq!(current, db.name());
    assert_eq!(version_num, db.server_version_num());
    eprintln!(
        "backend {} / {} / PostgreSQL {} ({})",
        db.backend(),
        db.server().description,
        db.server().version,
        version_num
    );
    if let Ok(expected) = std::env::var(env_vars::EXPECT_PG_MAJOR) {
        let expected: i32 = match expected.trim().parse() {
            Ok(major) => major,
            Err(e) => panic!(
                "{}={expected:?} is not a number: {e}",
                env_vars::EXPECT_PG_MAJOR
            ),
        };
        assert_eq!(
            version_num / 10000,
            expected,
            "server is PostgreSQL {}, expected major {expected}",
            db.server().version
        );
    }
    // The connection string works as well as the config.
    let parsed: tokio_postgres::Config = db.connection_string().parse().expect("parse");
    assert_eq!(parsed.get_dbname(), Some(db.name()));
}

#[tokio::test]
async fn databases_are_distinct_and_isolated() {
    let a = TestDatabase::new("iso").await;
    let b = TestDatabase::new("iso").await;
    assert_ne!(a.name(), b.name());
    let ca = a.connect().await;
    let cb = b.connect().await;
    ca.batch_execute("CREATE TABLE only_in_a (x int); INSERT INTO only_in_a VALUES (1)")
        .await
        .expect("create in a");
    let in_b = cb
        .query_one("SELECT to_regclass('only_in_a') IS NULL", &[])
        .await
        .expect("query b");
    assert!(in_b.get::<_, bool>(0), "table of database a visible in b");
    let count: i64 = ca
        .query_one("SELECT count(*) FROM only_in_a", &[])
        .await
        .expect("query a")
        .get(0);
    assert_eq!(count, 1);

    // Explicit drop works and removes the database.
    let name_b = b.name().to_owned();
    drop(cb);
    b.drop_database().await.expect("drop b");
    let exists: bool = ca
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)",
            &[&name_b],
        )
        .await
        .expect("query pg_database")
        .get(0);
    assert!(!exists, "{name_b} still exists");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedicated_server_logs_statements() {
    let mut server = match DedicatedServer::start(&[
        ("log_statement", "all"),
        ("log_parameter_max_length", "-1"),
        ("log_min_duration_statement", "0"),
    ])
    .await
    {
        Ok(server) => server,
        Err(e)
            if e.is_unavailable() && std::env::var(env_vars::BACKEND).as_deref() == Ok("url") =>
        {
            eprintln!("skipped: {e}");
            return;
        }
        Err(e) => panic!("cannot start a dedicated server: {e}"),
    };
    let client = server.connect().await.expect("connect");
    let needle = format!("aepg_needle_{}", std::process::id());
    client
        .query("SELECT $1::text", &[&needle])
        .await
        .expect("query with a parameter");
    client
        .simple_query(&format!("SELECT 'literal_{needle}'"))
        .await
        .expect("simple query");

    let db = server
        .create_database("dedicated")
        .await
        .expect("create db");
    let db_client = db.connect().await;
    db_client
        .batch_execute("CREATE TABLE t (v text); INSERT INTO t VALUES ('row_value_marker')")
        .await
        .expect("insert");
    drop(db_client);
    drop(client);

    server.stop().await.expect("stop");
    let log = server.server_log().await.expect("read log");
    assert!(
        log.contains(&format!("literal_{needle}")),
        "statement not in the server log:\n{log}"
    );
    assert!(
        // "parameters: $1 = '...'" (PostgreSQL 17: "Parameters: ...").
        log.contains(&format!("$1 = '{needle}'")),
        "bind parameter not in the server log:\n{log}"
    );

    let copy_parent = tempfile::tempdir().expect("tempdir");
    let copy = server
        .copy_data_dir(copy_parent.path().join("data"))
        .await
        .expect("copy data dir");
    assert!(
        copy.join("PG_VERSION").is_file(),
        "no PG_VERSION in the copy"
    );
    assert!(copy.join("base").is_dir(), "no base/ in the copy");
}

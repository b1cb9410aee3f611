//! Every supported plaintext type, in both modes, NULL included.
#![allow(clippy::unwrap_used)] // a test fails by panicking

use std::fmt::Debug;

use aepg::catalog::NewEncryptionSetting;
use aepg::cell::EncryptionMode::Deterministic;
use aepg::cell::{EncryptionMode, NamedType};
use aepg::types::{FromSql, ToSql};
use aepg::{Client, Error};
use aepg_tests::fixture::EncryptedDatabase;

/// Stores `value` (and NULL) in an encrypted column of `sql_type` in both
/// modes, reads it back, and, for deterministic columns, finds it by equality.
async fn round_trip<T>(db: &EncryptedDatabase, client: &Client, sql_type: &str, value: T)
where
    T: ToSql + Sync + for<'a> FromSql<'a> + PartialEq + Debug,
{
    for mode in [EncryptionMode::Deterministic, EncryptionMode::Randomized] {
        let name = format!(
            "{}_{}",
            sql_type.replace(|c: char| !c.is_ascii_alphanumeric(), "_"),
            mode
        );
        db.setting(&name, sql_type, mode).await;
        db.table(
            &format!("CREATE TABLE {name} (id int, v aepg.ciphertext)"),
            &[(&name, "v", &name)],
        )
        .await;
        client.refresh_catalog().await.unwrap();
        client
            .execute(
                &format!("INSERT INTO {name} (id, v) VALUES ($1, $2), ($3, $4)"),
                &[&1, &value, &2, &None::<T>],
            )
            .await
            .unwrap_or_else(|error| panic!("{name}: {error}"));
        let row = client
            .query_one(&format!("SELECT v FROM {name} WHERE id = $1"), &[&1])
            .await
            .unwrap();
        assert_eq!(row.get::<_, T>(0), value, "{name}");
        let row = client
            .query_one(&format!("SELECT v FROM {name} WHERE id = $1"), &[&2])
            .await
            .unwrap();
        assert_eq!(row.get::<_, Option<T>>(0), None, "{name}");
        if mode == EncryptionMode::Deterministic {
            let found = client
                .query(&format!("SELECT id FROM {name} WHERE v = $1"), &[&value])
                .await
                .unwrap();
            assert_eq!(found.len(), 1, "{name}");
        }
        let stored: Vec<u8> = db
            .plain
            .query_one(&format!("SELECT v::bytea FROM {name} WHERE id = 1"), &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(stored[0], 1, "{name}: a cell is stored");
    }
}

#[tokio::test]
async fn every_type_round_trips_in_both_modes() {
    let db = EncryptedDatabase::new("types").await;
    let client = db.client().await;
    round_trip(&db, &client, "bool", true).await;
    round_trip(&db, &client, "int2", -12i16).await;
    round_trip(&db, &client, "int4", 1_815_000i32).await;
    round_trip(&db, &client, "int8", -9_007_199_254_740_993i64).await;
    round_trip(&db, &client, "float4", 1.5f32).await;
    round_trip(&db, &client, "float8", -2.25e100f64).await;
    round_trip(
        &db,
        &client,
        "numeric(12,2)",
        rust_decimal::Decimal::new(123_456_789, 2),
    )
    .await;
    round_trip(&db, &client, "text", "Ada Lovelace ✓".to_owned()).await;
    round_trip(&db, &client, "varchar(20)", "short enough".to_owned()).await;
    round_trip(&db, &client, "bytea", vec![0u8, 1, 2, 0x80, 0, 0]).await;
    round_trip(
        &db,
        &client,
        "uuid",
        uuid::Uuid::from_u128(0x1234_5678_9abc_def0_1234_5678_9abc_def0),
    )
    .await;
    round_trip(
        &db,
        &client,
        "date",
        chrono::NaiveDate::from_ymd_opt(1815, 12, 10).unwrap(),
    )
    .await;
    let timestamp = chrono::NaiveDate::from_ymd_opt(1843, 7, 1)
        .unwrap()
        .and_hms_micro_opt(12, 30, 5, 123_456)
        .unwrap();
    round_trip(&db, &client, "timestamp", timestamp).await;
    round_trip(&db, &client, "timestamptz", timestamp.and_utc()).await;
    round_trip(
        &db,
        &client,
        "json",
        serde_json::json!({"engine": "analytical", "year": 1843}),
    )
    .await;
    round_trip(
        &db,
        &client,
        "jsonb",
        serde_json::json!({"notes": ["G", "Bernoulli"]}),
    )
    .await;
}

#[tokio::test]
async fn network_time_and_array_types_round_trip_in_both_modes() {
    let db = EncryptedDatabase::new("types_more").await;
    let client = db.client().await;
    round_trip(&db, &client, "char(6)", "Ada   ".to_owned()).await;
    round_trip(
        &db,
        &client,
        "time",
        chrono::NaiveTime::from_hms_micro_opt(23, 59, 58, 999_999).unwrap(),
    )
    .await;
    round_trip(&db, &client, "timetz", TimeTz(45_296_000_001, -19_800)).await;
    round_trip(
        &db,
        &client,
        "interval",
        Interval {
            micros: -3_723_000_004,
            days: 40,
            months: -14,
        },
    )
    .await;
    round_trip(
        &db,
        &client,
        "inet",
        "2001:db8::7".parse::<std::net::IpAddr>().unwrap(),
    )
    .await;
    round_trip(
        &db,
        &client,
        "cidr",
        "10.1.0.0/16".parse::<cidr::IpCidr>().unwrap(),
    )
    .await;
    round_trip(
        &db,
        &client,
        "macaddr",
        eui48::MacAddress::new([0x08, 0x00, 0x2b, 0x01, 0x02, 0x03]),
    )
    .await;
    round_trip(&db, &client, "money", Money(-1_234_567)).await;
    round_trip(&db, &client, "int4[]", vec![3, -1, 4, 1, 5]).await;
    round_trip(&db, &client, "int8[]", Vec::<i64>::new()).await;
    round_trip(
        &db,
        &client,
        "text[]",
        vec![Some("Ada".to_owned()), None, Some("Charles".to_owned())],
    )
    .await;
    round_trip(
        &db,
        &client,
        "uuid[]",
        vec![uuid::Uuid::from_u128(7), uuid::Uuid::from_u128(8)],
    )
    .await;
    round_trip(
        &db,
        &client,
        "numeric(8,2)[]",
        vec![rust_decimal::Decimal::new(1250, 2)],
    )
    .await;
}

/// An enum as an application declares it for tokio-postgres.
#[derive(Debug, PartialEq, Clone, Copy, postgres_types::ToSql, postgres_types::FromSql)]
#[postgres(name = "mood")]
enum Mood {
    #[postgres(name = "sad")]
    Sad,
    #[postgres(name = "ok")]
    Ok,
    #[postgres(name = "happy")]
    Happy,
}

/// The same type name with other labels than the signed setting's.
#[derive(Debug, PartialEq, postgres_types::ToSql)]
#[postgres(name = "mood")]
enum OtherMood {
    #[allow(dead_code)] // its label is what matters
    #[postgres(name = "sad")]
    Sad,
    #[postgres(name = "angry")]
    Angry,
}

/// Creates setting `name` of a named type in `mode`, and a table of that
/// name whose column `v` it encrypts.
async fn named_setting_table(
    db: &EncryptedDatabase,
    name: &str,
    named: NamedType,
    mode: EncryptionMode,
) {
    let setting = NewEncryptionSetting::named(name, named, mode, db.key_id);
    db.admin
        .create_setting(&mut *db.admin_connection().await, &setting)
        .await
        .unwrap();
    db.table(
        &format!("CREATE TABLE {name} (id int, v aepg.ciphertext)"),
        &[(name, "v", name)],
    )
    .await;
}

#[tokio::test]
async fn enums_and_citext_round_trip_in_both_modes_without_the_type_on_the_server() {
    let db = EncryptedDatabase::new("types_named").await;
    let mood = NamedType::enumeration("mood", ["sad", "ok", "happy"]).unwrap();
    for mode in [EncryptionMode::Deterministic, EncryptionMode::Randomized] {
        named_setting_table(&db, &format!("mood_{mode}"), mood.clone(), mode).await;
        named_setting_table(&db, &format!("note_{mode}"), NamedType::citext(), mode).await;
    }
    let client = db.client().await;
    round_trip_named(&client, "mood_deterministic", Mood::Happy).await;
    round_trip_named(&client, "mood_randomized", Mood::Sad).await;
    round_trip_named(&client, "note_deterministic", "Ada".to_owned()).await;
    round_trip_named(&client, "note_randomized", "Ada".to_owned()).await;

    // Deterministic: IN and = ANY find by label; citext compares bytes.
    client
        .execute(
            "INSERT INTO mood_deterministic (id, v) VALUES (2, $1), (3, $2)",
            &[&Mood::Ok, &Mood::Happy],
        )
        .await
        .unwrap();
    let any = client
        .query(
            "SELECT id FROM mood_deterministic WHERE v = ANY($1) ORDER BY id",
            &[&vec![Mood::Happy, Mood::Sad]],
        )
        .await
        .unwrap();
    assert_eq!(
        any.iter()
            .map(|row| row.get::<_, i32>(0))
            .collect::<Vec<_>>(),
        [1, 3]
    );
    let found = client
        .query("SELECT id FROM note_deterministic WHERE v = $1", &[&"ADA"])
        .await
        .unwrap();
    assert!(found.is_empty(), "deterministic citext equality is binary");

    // What the server would refuse on a plaintext enum column is refused
    // here: a value that is not a label, a Rust enum with other labels, a
    // string for an enum.
    let insert = "INSERT INTO mood_deterministic (id, v) VALUES (9, $1)";
    let error = client
        .execute(insert, &[&AnyType(b"angry".to_vec())])
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("public.mood_deterministic.v") && message.contains("mood"),
        "{message}"
    );
    assert!(
        message.contains("labels") && !message.contains("angry"),
        "{message}"
    );
    let error = client
        .execute(insert, &[&OtherMood::Angry])
        .await
        .unwrap_err();
    assert!(error.to_string().contains("cannot convert"), "{error}");
    let error = client.execute(insert, &[&"happy"]).await.unwrap_err();
    assert!(error.to_string().contains("cannot convert"), "{error}");

    // The server has no such type, and holds ciphertext.
    let types: i64 = db
        .plain
        .query_one(
            "SELECT count(*) FROM pg_type WHERE typname IN ('mood', 'citext')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(types, 0);
    let cells: Vec<Vec<u8>> = db
        .plain
        .query("SELECT v::bytea FROM mood_deterministic", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(cells.len(), 3);
    assert!(cells
        .iter()
        .all(|cell| cell[0] == 1 && !cell.windows(5).any(|w| w == b"happy")));
}

/// Stores `value` in table `name`, reads it back, and for a deterministic
/// setting finds it by equality.
async fn round_trip_named<T>(client: &Client, name: &str, value: T)
where
    T: ToSql + Sync + for<'a> FromSql<'a> + PartialEq + Debug,
{
    client
        .execute(
            &format!("INSERT INTO {name} (id, v) VALUES (1, $1)"),
            &[&value],
        )
        .await
        .unwrap_or_else(|error| panic!("{name}: {error}"));
    let row = client
        .query_one(&format!("SELECT v FROM {name} WHERE id = 1"), &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, T>(0), value, "{name}");
    if name.ends_with("deterministic") {
        let found = client
            .query(&format!("SELECT id FROM {name} WHERE v = $1"), &[&value])
            .await
            .unwrap();
        assert_eq!(found.len(), 1, "{name}");
    }
}

/// `timetz`, which tokio-postgres maps to no Rust type: microseconds since
/// midnight and the zone's offset in seconds west of UTC, its binary form.
#[derive(Debug, PartialEq)]
struct TimeTz(i64, i32);

/// `interval`, which tokio-postgres maps to no Rust type: its binary form.
#[derive(Debug, PartialEq)]
struct Interval {
    micros: i64,
    days: i32,
    months: i32,
}

/// `money`, which tokio-postgres maps to no Rust type: cents in an `int8`.
#[derive(Debug, PartialEq)]
struct Money(i64);

/// Binary `ToSql`/`FromSql` for a type with a fixed layout of big-endian fields.
macro_rules! binary_type {
    ($rust:ident, $sql:ident, |$value:ident| $encode:expr, |$raw:ident| $decode:expr) => {
        impl ToSql for $rust {
            fn to_sql(
                &self,
                _: &aepg::types::Type,
                out: &mut bytes::BytesMut,
            ) -> Result<aepg::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
                let $value = self;
                out.extend_from_slice(&$encode);
                Ok(aepg::types::IsNull::No)
            }

            fn accepts(ty: &aepg::types::Type) -> bool {
                *ty == aepg::types::Type::$sql
            }

            aepg::types::to_sql_checked!();
        }

        impl<'a> FromSql<'a> for $rust {
            fn from_sql(
                _: &aepg::types::Type,
                $raw: &'a [u8],
            ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
                Ok($decode)
            }

            fn accepts(ty: &aepg::types::Type) -> bool {
                *ty == aepg::types::Type::$sql
            }
        }
    };
}

fn field<const N: usize>(raw: &[u8], at: usize) -> [u8; N] {
    raw[at..at + N].try_into().unwrap()
}

binary_type!(
    TimeTz,
    TIMETZ,
    |value| [value.0.to_be_bytes().as_slice(), &value.1.to_be_bytes()].concat(),
    |raw| TimeTz(
        i64::from_be_bytes(field(raw, 0)),
        i32::from_be_bytes(field(raw, 8))
    )
);
binary_type!(
    Interval,
    INTERVAL,
    |value| [
        value.micros.to_be_bytes().as_slice(),
        &value.days.to_be_bytes(),
        &value.months.to_be_bytes()
    ]
    .concat(),
    |raw| Interval {
        micros: i64::from_be_bytes(field(raw, 0)),
        days: i32::from_be_bytes(field(raw, 8)),
        months: i32::from_be_bytes(field(raw, 12)),
    }
);
binary_type!(Money, MONEY, |value| value.0.to_be_bytes(), |raw| Money(
    i64::from_be_bytes(field(raw, 0))
));

#[tokio::test]
async fn varchar_length_is_enforced_before_sending() {
    let db = EncryptedDatabase::new("varchar").await;
    db.setting("code", "varchar(3)", EncryptionMode::Deterministic)
        .await;
    db.table(
        "CREATE TABLE codes (v aepg.ciphertext)",
        &[("codes", "v", "code")],
    )
    .await;
    let client = db.client().await;
    client
        .execute("INSERT INTO codes (v) VALUES ($1)", &[&"abc"])
        .await
        .unwrap();
    let err = client
        .execute("INSERT INTO codes (v) VALUES ($1)", &[&"abcd"])
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("longer than 3 characters"),
        "{err}"
    );
    let count: i64 = db
        .plain
        .query_one("SELECT count(*) FROM codes", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 1);
}

#[tokio::test]
async fn reading_with_the_wrong_rust_type_is_an_error() {
    let db = EncryptedDatabase::new("read_type").await;
    db.setting("n", "int8", EncryptionMode::Randomized).await;
    db.table(
        "CREATE TABLE numbers (v aepg.ciphertext)",
        &[("numbers", "v", "n")],
    )
    .await;
    let client = db.client().await;
    client
        .execute("INSERT INTO numbers (v) VALUES ($1)", &[&7i64])
        .await
        .unwrap();
    let row = client
        .query_one("SELECT v FROM numbers", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 7);
    let err = row.try_get::<_, String>(0).unwrap_err();
    assert!(err.to_string().contains("bigint"), "{err}");
}

/// A value that claims every SQL type and writes its own bytes, as a query
/// builder's wrapper value does.
#[derive(Debug)]
struct AnyType(Vec<u8>);

impl aepg::types::ToSql for AnyType {
    fn to_sql(
        &self,
        _: &aepg::types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<aepg::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.extend_from_slice(&self.0);
        Ok(aepg::types::IsNull::No)
    }

    fn accepts(_: &aepg::types::Type) -> bool {
        true
    }

    aepg::types::to_sql_checked!();
}

#[tokio::test]
async fn a_value_of_another_type_is_not_encrypted_as_raw_bytes() {
    let db = EncryptedDatabase::new("types_wrapper").await;
    db.setting("count", "int4", Deterministic).await;
    db.setting("label", "text", Deterministic).await;
    db.table(
        "CREATE TABLE tally (id int, n aepg.ciphertext, label aepg.ciphertext)",
        &[("tally", "n", "count"), ("tally", "label", "label")],
    )
    .await;
    let client = db.client().await;
    let insert = "INSERT INTO tally (id, n, label) VALUES ($1, $2, $3)";
    // An int8 for an int4 column.
    let error = client
        .execute(insert, &[&1, &AnyType(7i64.to_be_bytes().to_vec()), &"ok"])
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(error, Error::ParameterType { number: 2, .. }),
        "{message}"
    );
    assert!(
        message.contains("public.tally.n") && message.contains("integer"),
        "{message}"
    );
    // Bytes that are not UTF-8 for a text column.
    let error = client
        .execute(insert, &[&2, &7i32, &AnyType(vec![0xff, 0xfe, 0x00])])
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::ParameterType { number: 3, .. }),
        "{error}"
    );
    // The right bytes pass.
    client
        .execute(insert, &[&3, &AnyType(7i32.to_be_bytes().to_vec()), &"ok"])
        .await
        .unwrap();
    let row = client
        .query_one("SELECT n FROM tally WHERE id = 3", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>("n"), 7);
    let stored: i64 = db
        .plain
        .query_one("SELECT count(*) FROM tally", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 1);
}

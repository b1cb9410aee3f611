//! What fills each result column, for decrypting values whose origin the
//! server does not report.

use crate::analysis::test_schema::TestSchema;
use crate::analysis::{analyze, ResultColumnSource};

/// What fills a result column, by setting id: plaintext, cells of a
/// setting, or unusable cells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Filled {
    Plaintext,
    Encrypted { setting_id: u32 },
    Ciphertext,
}

use Filled::{Ciphertext, Encrypted, Plaintext};

fn filled(source: &ResultColumnSource) -> Filled {
    match source {
        ResultColumnSource::Encrypted(encryption) => Encrypted {
            setting_id: encryption.setting_id,
        },
        ResultColumnSource::Unusable => Ciphertext,
        _ => Plaintext,
    }
}

#[test]
fn result_columns_name_the_setting_that_fills_them() {
    let schema = TestSchema::new();
    let cases: [(&str, &[Filled]); 8] = [
        (
            "SELECT id, ssn, diagnosis FROM patients",
            &[
                Plaintext,
                Encrypted { setting_id: 1 },
                Encrypted { setting_id: 2 },
            ],
        ),
        (
            "SELECT ssn FROM patients UNION ALL SELECT ssn FROM visits",
            &[Encrypted { setting_id: 1 }],
        ),
        (
            "SELECT s FROM (SELECT ssn AS s FROM patients) sub",
            &[Encrypted { setting_id: 1 }],
        ),
        (
            "SELECT ssn FROM patients UNION ALL SELECT NULL",
            &[Encrypted { setting_id: 1 }],
        ),
        (
            "SELECT count(ssn), name FROM patients GROUP BY name",
            &[Plaintext, Plaintext],
        ),
        ("SELECT ssn FROM patient_view", &[Ciphertext]),
        (
            "UPDATE patients SET name = $1 RETURNING diagnosis",
            &[Encrypted { setting_id: 2 }],
        ),
        (
            "BEGIN; SELECT ssn FROM visits",
            &[Encrypted { setting_id: 1 }],
        ),
    ];
    for (sql, expected) in cases {
        let analysis = analyze(sql, &schema).unwrap_or_else(|refusal| panic!("{sql}: {refusal}"));
        let found: Vec<Filled> = analysis
            .result_columns
            .iter()
            .map(|column| filled(&column.source))
            .collect();
        assert_eq!(found, expected, "{sql}");
    }
}

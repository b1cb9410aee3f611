//! What the application does after each attack: store, find, update and
//! read encrypted values, each with plaintexts unique to the attack, the
//! client and the statement, so a leak anywhere can be traced.

use aepg::Client;
use futures_util::TryStreamExt;

use super::scene::{Kind, Lab};

/// Whether an operation uses the statement text the warm client prepared
/// before the attack, or a text new to every client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Text {
    /// The text as prepared before the attack (cached by the warm client).
    Usual,
    /// The same statement with a comment: a text no client has prepared.
    New,
}

/// One statement of the workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// Calls a function of the application's (which an attacker may redefine).
    Hook,
    /// Stores a deterministic and a randomized plaintext.
    Insert,
    /// Finds a row by equality on the deterministic column.
    Select,
    /// Updates the randomized column of the row found by equality.
    Update,
    /// Finds rows by `= ANY` over an array of plaintexts.
    Any,
    /// Reads every encrypted cell of the table.
    ReadAll,
    /// Stores into `email`, which some attacks have the administrator encrypt.
    InsertEmail,
}

impl Operation {
    /// The workload every attack runs (`InsertEmail` only where `email` is encrypted).
    pub const ALL: [Operation; 6] = [
        Operation::Hook,
        Operation::Insert,
        Operation::Select,
        Operation::Update,
        Operation::Any,
        Operation::ReadAll,
    ];

    fn sql(self) -> &'static str {
        match self {
            Self::Hook => "SELECT app_hook()",
            Self::Insert => {
                "INSERT INTO patients (id, name, ssn, diagnosis) VALUES ($1, $2, $3, $4)"
            }
            Self::Select => "SELECT id, ssn, diagnosis FROM patients WHERE ssn = $1",
            Self::Update => "UPDATE patients SET diagnosis = $1 WHERE ssn = $2",
            Self::Any => "SELECT id FROM patients WHERE ssn = ANY($1)",
            Self::ReadAll => "SELECT id, ssn, diagnosis FROM patients",
            Self::InsertEmail => "INSERT INTO patients (id, email) VALUES ($1, $2)",
        }
    }

    /// Runs the operation on `client`; `Err` carries the error's message.
    pub async fn run(
        self,
        client: &Client,
        lab: &Lab,
        attack: &str,
        kind: Kind,
        text: Text,
    ) -> Result<(), String> {
        let sql = match text {
            Text::Usual => self.sql().to_owned(),
            Text::New => format!("{} -- after the attack", self.sql()),
        };
        let what = format!("{self:?}-{text:?}");
        let needle = |part: &str| lab.needle(attack, kind, &format!("{what}-{part}"));
        let error = |error: aepg::Error| error.to_string();
        match self {
            Self::Hook => {
                client.query(&sql, &[]).await.map_err(error)?;
            }
            Self::Insert => {
                let (ssn, diagnosis) = (needle("ssn"), needle("diagnosis"));
                client
                    .execute(&sql, &[&rand::random::<i32>(), &"name", &ssn, &diagnosis])
                    .await
                    .map_err(error)?;
            }
            Self::Select => {
                for row in client.query(&sql, &[&needle("ssn")]).await.map_err(error)? {
                    row.try_get::<_, Option<String>>("ssn").map_err(error)?;
                }
            }
            Self::Update => {
                client
                    .execute(&sql, &[&needle("diagnosis"), &needle("ssn")])
                    .await
                    .map_err(error)?;
            }
            Self::Any => {
                let values = vec![needle("ssn-1"), needle("ssn-2")];
                client.query(&sql, &[&values]).await.map_err(error)?;
            }
            Self::ReadAll => {
                let rows: Vec<aepg::Row> = client
                    .query_raw(&sql, &[])
                    .await
                    .map_err(error)?
                    .try_collect()
                    .await
                    .map_err(error)?;
                for row in rows {
                    row.try_get::<_, Option<String>>("ssn").map_err(error)?;
                    row.try_get::<_, Option<String>>("diagnosis")
                        .map_err(error)?;
                }
            }
            Self::InsertEmail => {
                client
                    .execute(&sql, &[&rand::random::<i32>(), &needle("email")])
                    .await
                    .map_err(error)?;
            }
        }
        Ok(())
    }
}

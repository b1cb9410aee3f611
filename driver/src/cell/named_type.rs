//! Plaintext types that are not built in, known by name: enums, and
//! `citext`.
//!
//! Their oids differ from one database to the next, so a cell cannot be
//! bound to one. Their values travel as text (`enum_send` and
//! `citext_send` send the label or the string), so a setting of a named
//! type has the plaintext type `text` — what its cells bind — and carries
//! the type's name, and an enum's labels, in its signed record. The server
//! need not have the type at all.

use std::collections::HashSet;

use postgres_types::{Kind, Type};

/// A type known by name, whose values are text.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NamedType {
    name: String,
    labels: Option<Vec<String>>,
    /// The types handed to `ToSql`/`FromSql`, built once: a value encrypted
    /// or decrypted clones them (a reference count), never rebuilds them.
    sql_type: Type,
    sql_array_type: Type,
}

/// Why a named type is not acceptable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NamedTypeError {
    /// The name is empty, longer than PostgreSQL allows (63 bytes), or
    /// `citext` for an enum.
    #[error("a type name must be 1 to 63 bytes, and an enum cannot be called citext")]
    Name,
    /// An enum without labels, with an empty or too long label, or with a
    /// label twice.
    #[error("an enum needs at least one label, each 1 to 63 bytes and unique")]
    Labels,
}

/// PostgreSQL's `NAMEDATALEN - 1`.
const MAX_NAME_BYTES: usize = 63;
const CITEXT: &str = "citext";

impl NamedType {
    /// `citext`, the case-insensitive text extension type. Equality on a
    /// deterministic `citext` column compares the bytes, so it is
    /// case-sensitive, as SQL Server's Always Encrypted requires a binary
    /// collation for deterministic columns: store values in one case if
    /// they are to be found by equality.
    pub fn citext() -> Self {
        Self::from_parts(CITEXT.to_owned(), None)
    }

    /// An enum type called `name` (unqualified: what a Rust type's
    /// `#[postgres(name = "…")]` says) with `labels`, in their order.
    ///
    /// # Errors
    /// [`NamedTypeError`] for a bad name or labels.
    pub fn enumeration(
        name: impl Into<String>,
        labels: impl IntoIterator<Item = impl Into<String>>,
    ) -> Result<Self, NamedTypeError> {
        let named = Self::from_parts(
            name.into(),
            Some(labels.into_iter().map(Into::into).collect()),
        );
        named.check()?;
        Ok(named)
    }

    /// Checks what a record may say.
    pub(crate) fn check(&self) -> Result<(), NamedTypeError> {
        let name_ok = (1..=MAX_NAME_BYTES).contains(&self.name.len());
        match &self.labels {
            None if self.name == CITEXT => Ok(()),
            None => Err(NamedTypeError::Name),
            Some(_) if !name_ok || self.name == CITEXT => Err(NamedTypeError::Name),
            Some(labels) => {
                let unique: HashSet<&String> = labels.iter().collect();
                let sizes_ok = labels
                    .iter()
                    .all(|label| (1..=MAX_NAME_BYTES).contains(&label.len()));
                if labels.is_empty() || !sizes_ok || unique.len() != labels.len() {
                    Err(NamedTypeError::Labels)
                } else {
                    Ok(())
                }
            }
        }
    }

    /// Built from a record's fields.
    pub(crate) fn from_parts(name: String, labels: Option<Vec<String>>) -> Self {
        let kind = match &labels {
            Some(labels) => Kind::Enum(labels.clone()),
            None => Kind::Simple,
        };
        // Oid 0: the server's oid for the type is neither known nor needed.
        let sql_type = Type::new(name.clone(), 0, kind, "public".to_owned());
        let sql_array_type = Type::new(
            format!("_{name}"),
            0,
            Kind::Array(sql_type.clone()),
            "public".to_owned(),
        );
        Self {
            name,
            labels,
            sql_type,
            sql_array_type,
        }
    }

    /// The type's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// An enum's labels; `None` for `citext`.
    pub fn labels(&self) -> Option<&[String]> {
        self.labels.as_deref()
    }

    /// Whether `text` is a value of this type: any text for `citext`, a
    /// label for an enum (the server would refuse anything else).
    pub(crate) fn admits(&self, text: &str) -> bool {
        self.labels
            .as_ref()
            .is_none_or(|labels| labels.iter().any(|label| label == text))
    }

    /// The type handed to `ToSql`/`FromSql` for its values, so that a
    /// derived enum or `String` (which accepts `citext` by name) converts.
    /// Its oid is 0: the server's oid for it is neither known nor needed.
    pub fn sql_type(&self) -> Type {
        self.sql_type.clone()
    }

    /// The type of arrays of it, for `= ANY($n)`.
    pub fn sql_array_type(&self) -> Type {
        self.sql_array_type.clone()
    }
}

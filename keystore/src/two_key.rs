//! Master keys that are two keys: one that wraps column keys, another that
//! signs records. Stores such as AWS KMS and Google Cloud KMS give a key one
//! purpose, encryption or signing, never both; a two-key master key pairs
//! two such keys, in one store or two, under one name.
//!
//! A two-key master key is a [`MasterKeyLocation`] of the reserved provider
//! [`TWO_KEY_PROVIDER`], whose key path names both keys:
//!
//! ```text
//! two-key:wrap=pkcs11:pkcs11%3Amodule-name=softhsm2%3Btoken=t%3Bobject=w;sign=local:sign.pem
//! ```
//!
//! Catalog records carry a master key's provider and key path and are
//! signed, so the pairing is part of every record the master key signs:
//! new single-purpose stores need no format change. The registry routes
//! wrapping and unwrapping to the wrapping key, signing and verifying to
//! the signing key, and checks each against its own provider's trusted
//! paths (docs/FORMAT.md, "Two-key master keys").

use crate::{KeyStoreError, MasterKeyLocation};

/// The provider name of two-key master keys; no store may be registered
/// under it.
pub const TWO_KEY_PROVIDER: &str = "two-key";

/// The two keys of a two-key master key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TwoKeyPath {
    /// The key that wraps and unwraps column keys.
    pub wrapping: MasterKeyLocation,
    /// The key that signs and verifies records.
    pub signing: MasterKeyLocation,
}

/// Characters escaped in a component: the escape itself and the
/// separators of the two-key syntax.
const ESCAPED: [(char, &str); 4] = [('%', "%25"), (';', "%3B"), (':', "%3A"), ('=', "%3D")];

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match ESCAPED.iter().find(|(raw, _)| *raw == c) {
            Some((_, code)) => out.push_str(code),
            None => out.push(c),
        }
    }
    out
}

/// Undoes [`escape`], refusing anything [`escape`] would not have written:
/// each pair of keys has exactly one key path.
fn unescape(text: &str) -> Result<String, &'static str> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(['%', ';', ':', '=']) {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let (raw, code) = ESCAPED
            .iter()
            .find(|(_, code)| rest.starts_with(code))
            .ok_or("a '%', ';', ':' or '=' in a key's provider or path is not escaped as %25, %3B, %3A or %3D")?;
        out.push(*raw);
        rest = &rest[code.len()..];
    }
    out.push_str(rest);
    Ok(out)
}

impl TwoKeyPath {
    /// A two-key master key of `wrapping` and `signing`.
    ///
    /// # Errors
    /// [`KeyStoreError::InvalidKeyPath`] when either is itself a two-key
    /// master key, or both are the same key (a plain location says that).
    pub fn new(
        wrapping: MasterKeyLocation,
        signing: MasterKeyLocation,
    ) -> Result<Self, KeyStoreError> {
        let path = Self { wrapping, signing };
        let reason = if path.wrapping.provider == TWO_KEY_PROVIDER
            || path.signing.provider == TWO_KEY_PROVIDER
        {
            Some("a two-key master key cannot name another two-key master key")
        } else if path.wrapping == path.signing {
            Some("both keys are the same key: name it as a plain master key")
        } else if [&path.wrapping, &path.signing]
            .iter()
            .any(|location| location.provider.is_empty() || location.key_path.is_empty())
        {
            Some("a key's provider or path is empty")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(KeyStoreError::InvalidKeyPath {
                key_path: path.key_path(),
                reason,
            }),
            None => Ok(path),
        }
    }

    /// The master key location of this pair.
    pub fn location(&self) -> MasterKeyLocation {
        MasterKeyLocation::new(TWO_KEY_PROVIDER, self.key_path())
    }

    fn key_path(&self) -> String {
        format!(
            "wrap={}:{};sign={}:{}",
            escape(&self.wrapping.provider),
            escape(&self.wrapping.key_path),
            escape(&self.signing.provider),
            escape(&self.signing.key_path)
        )
    }

    /// Parses a two-key key path.
    ///
    /// # Errors
    /// [`KeyStoreError::InvalidKeyPath`] saying what is wrong.
    pub fn parse(key_path: &str) -> Result<Self, KeyStoreError> {
        let invalid = |reason| KeyStoreError::InvalidKeyPath {
            key_path: key_path.to_owned(),
            reason,
        };
        let component =
            |text: Option<&str>, role: &str| -> Result<MasterKeyLocation, KeyStoreError> {
                let text = text
                    .and_then(|text| text.strip_prefix(role))
                    .ok_or_else(|| invalid("it must be wrap=PROVIDER:PATH;sign=PROVIDER:PATH"))?;
                let (provider, path) = text
                    .split_once(':')
                    .ok_or_else(|| invalid("a key must be PROVIDER:PATH"))?;
                Ok(MasterKeyLocation::new(
                    unescape(provider).map_err(invalid)?,
                    unescape(path).map_err(invalid)?,
                ))
            };
        let mut parts = key_path.split(';');
        let wrapping = component(parts.next(), "wrap=")?;
        let signing = component(parts.next(), "sign=")?;
        if parts.next().is_some() {
            return Err(invalid("it must be wrap=PROVIDER:PATH;sign=PROVIDER:PATH"));
        }
        let path = Self::new(wrapping, signing)?;
        if path.key_path() != key_path {
            return Err(invalid("it is not in its one canonical form"));
        }
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::{TwoKeyPath, TWO_KEY_PROVIDER};
    use crate::MasterKeyLocation;

    #[test]
    fn a_pair_round_trips_through_its_one_key_path() {
        let pair = TwoKeyPath::new(
            MasterKeyLocation::new("pkcs11", "pkcs11:module-name=m;token=t;object=w%20x"),
            MasterKeyLocation::new("local", "sign=1.pem"),
        )
        .unwrap();
        let location = pair.location();
        assert_eq!(location.provider, TWO_KEY_PROVIDER);
        assert_eq!(
            location.key_path,
            "wrap=pkcs11:pkcs11%3Amodule-name%3Dm%3Btoken%3Dt%3Bobject%3Dw%2520x;sign=local:sign%3D1.pem"
        );
        assert_eq!(TwoKeyPath::parse(&location.key_path).unwrap(), pair);
    }

    #[test]
    fn other_spellings_and_odd_pairs_are_refused() {
        for path in [
            "",
            "wrap=memory:w",
            "sign=memory:s;wrap=memory:w",
            "wrap=memory:w;sign=memory:s;",
            "wrap=memory:w;sign=memory:s;wrap=memory:x",
            "wrap=memory:w;sign=memorys",
            "wrap=memory:w%3b;sign=memory:s",
            "wrap=memory:w%41;sign=memory:s",
            "wrap=memory:w:x;sign=memory:s",
            "wrap=memory:w;sign=memory:w",
            "wrap=:w;sign=memory:s",
            "wrap=two-key:x;sign=memory:s",
        ] {
            assert!(TwoKeyPath::parse(path).is_err(), "{path:?}");
        }
        TwoKeyPath::parse("wrap=memory:w;sign=memory:s").unwrap();
    }
}

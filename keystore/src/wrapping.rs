//! How a column key is wrapped under a master key, and the wrapped value.

use std::fmt;

/// The RSA encryption that wraps a column key under a master key's public key.
///
/// The algorithm a column key was wrapped with is recorded in the catalog
/// record that carries the wrapped value, and that record is signed by the
/// master key itself: a server that rewrites it to a weaker algorithm breaks
/// the signature, so the algorithm cannot be downgraded by the catalog.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyWrapAlgorithm {
    /// RSA-OAEP with SHA-256 and MGF1-SHA-256, empty label: the default.
    RsaOaepSha256,
    /// RSA-OAEP with SHA-1 and MGF1-SHA-1, empty label: for tokens whose
    /// OAEP supports no other hash (SoftHSM2 2.6, many smart cards). SQL
    /// Server's Always Encrypted wraps with it. OAEP's security rests on the
    /// hash's behaviour as a random oracle, not on collision resistance, so
    /// SHA-1's broken collision resistance does not break it.
    RsaOaepSha1,
}

impl KeyWrapAlgorithm {
    /// Every algorithm, strongest first.
    pub const ALL: [Self; 2] = [Self::RsaOaepSha256, Self::RsaOaepSha1];

    /// The name catalog records carry (`"RSA-OAEP-SHA256"`, `"RSA-OAEP-SHA1"`).
    pub const fn name(self) -> &'static str {
        match self {
            Self::RsaOaepSha256 => "RSA-OAEP-SHA256",
            Self::RsaOaepSha1 => "RSA-OAEP-SHA1",
        }
    }

    /// The algorithm named `name` exactly, if there is one.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|algorithm| algorithm.name() == name)
    }
}

impl fmt::Display for KeyWrapAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A column key wrapped under a master key, with the algorithm that wrapped it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrappedKey {
    /// How the column key was wrapped.
    pub algorithm: KeyWrapAlgorithm,
    /// The RSA ciphertext of the 32 key bytes.
    pub ciphertext: Vec<u8>,
}

impl WrappedKey {
    /// A wrapped value from its parts.
    pub fn new(algorithm: KeyWrapAlgorithm, ciphertext: Vec<u8>) -> Self {
        Self {
            algorithm,
            ciphertext,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::KeyWrapAlgorithm;

    #[test]
    fn names_round_trip_and_nothing_else_parses() {
        for algorithm in KeyWrapAlgorithm::ALL {
            assert_eq!(
                KeyWrapAlgorithm::from_name(algorithm.name()),
                Some(algorithm)
            );
        }
        for name in [
            "",
            "rsa-oaep-sha256",
            "RSA-OAEP",
            "RSA-OAEP-SHA256 ",
            "RSA1_5",
        ] {
            assert_eq!(KeyWrapAlgorithm::from_name(name), None, "{name:?}");
        }
    }
}

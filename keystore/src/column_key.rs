//! Column encryption key material.

use std::fmt;

use rand::TryRng;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::KeyStoreError;

/// Length of a column encryption key in bytes (AES-256).
pub const COLUMN_KEY_LEN: usize = 32;

/// The 32 secret bytes of a column encryption key (CEK).
///
/// The bytes are zeroized when the value is dropped, and neither `Debug` nor
/// any error ever shows them. A `ColumnKey` exists in memory only inside the
/// application: in the catalog it is stored wrapped by a column master key.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct ColumnKey {
    bytes: [u8; COLUMN_KEY_LEN],
}

impl ColumnKey {
    /// Generates a fresh key from the operating system's CSPRNG.
    ///
    /// # Errors
    /// [`KeyStoreError::RandomnessUnavailable`] if the OS generator fails.
    pub fn generate() -> Result<Self, KeyStoreError> {
        let mut bytes = [0u8; COLUMN_KEY_LEN];
        rand::rngs::SysRng
            .try_fill_bytes(&mut bytes)
            .map_err(|_| KeyStoreError::RandomnessUnavailable)?;
        Ok(Self { bytes })
    }

    /// Builds a key from unwrapped bytes.
    ///
    /// Meant for key store providers (which unwrap keys) and for known-answer
    /// tests; applications get keys from the catalog instead.
    ///
    /// # Errors
    /// [`KeyStoreError::InvalidColumnKeyLength`] unless exactly 32 bytes are given.
    pub fn from_unwrapped(bytes: Zeroizing<Vec<u8>>) -> Result<Self, KeyStoreError> {
        let array: [u8; COLUMN_KEY_LEN] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| KeyStoreError::InvalidColumnKeyLength { len: bytes.len() })?;
        Ok(Self { bytes: array })
    }

    /// The secret bytes, for wrapping and subkey derivation only.
    pub fn expose_secret(&self) -> &[u8; COLUMN_KEY_LEN] {
        &self.bytes
    }
}

impl fmt::Debug for ColumnKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ColumnKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_no_key_bytes() {
        let key = ColumnKey::from_unwrapped(Zeroizing::new(vec![0xAB; 32])).unwrap();
        let shown = format!("{key:?}");
        assert_eq!(shown, "ColumnKey(<redacted>)");
        assert!(!shown.to_lowercase().contains("ab"));
    }

    #[test]
    fn generated_keys_differ() {
        let a = ColumnKey::generate().unwrap();
        let b = ColumnKey::generate().unwrap();
        assert_ne!(a.expose_secret(), b.expose_secret());
    }

    #[test]
    fn wrong_length_is_refused() {
        let err = ColumnKey::from_unwrapped(Zeroizing::new(vec![1; 31])).unwrap_err();
        assert!(matches!(
            err,
            KeyStoreError::InvalidColumnKeyLength { len: 31 }
        ));
    }
}

//! The RSA algorithms Key Vault names in its JSON Web Algorithms, over the
//! `rsa` crate, plus the server's randomness and clock.

use std::time::{SystemTime, UNIX_EPOCH};

use rand::TryRng;
use rsa::{PrivateKey, PublicKey};
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha384, Sha512};
use zeroize::Zeroizing;

/// RSA modulus sizes Key Vault (and this server) can create.
pub(crate) const KEY_SIZES: [usize; 3] = [2048, 3072, 4096];

/// Why a cryptographic request cannot be served; both become 400 BadParameter.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum CryptoError {
    /// The `alg` is unknown or not implemented for this operation.
    UnsupportedAlgorithm(String),
    /// The input does not fit the algorithm (wrong length, bad padding...).
    InvalidInput(&'static str),
}

impl CryptoError {
    pub(crate) fn message(&self) -> String {
        match self {
            Self::UnsupportedAlgorithm(alg) => {
                format!("Algorithm '{alg}' is not supported for this operation on an RSA key.")
            }
            Self::InvalidInput(reason) => reason.to_string(),
        }
    }
}

/// `N` bytes from the OS RNG.
///
/// # Panics
/// If the OS RNG fails; a test server cannot do without it.
pub(crate) fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0; N];
    rand::rngs::SysRng
        .try_fill_bytes(&mut bytes)
        .expect("the OS random number generator failed");
    bytes
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// A fresh RSA key with public exponent 65537; `None` for unsupported sizes
/// (or if the OS RNG fails).
pub(crate) fn generate(bits: usize) -> Option<PrivateKey> {
    if !KEY_SIZES.contains(&bits) {
        return None;
    }
    PrivateKey::new(&mut rand::rngs::SysRng, bits).ok()
}

/// Encrypts (or wraps) with RSA-OAEP-256 (SHA-256, MGF1-SHA-256) or RSA-OAEP
/// (SHA-1, MGF1-SHA-1).
pub(crate) fn encrypt(
    alg: &str,
    key: &PublicKey,
    plaintext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let result = match alg {
        "RSA-OAEP-256" => key.oaep_encrypt::<Sha256>(plaintext),
        "RSA-OAEP" => key.oaep_encrypt::<Sha1>(plaintext),
        _ => return Err(CryptoError::UnsupportedAlgorithm(alg.to_owned())),
    };
    result
        .map_err(|_| CryptoError::InvalidInput("The value is too long for the key and algorithm."))
}

/// Decrypts (or unwraps) what [`encrypt`] produced.
pub(crate) fn decrypt(
    alg: &str,
    key: &PrivateKey,
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let result = match alg {
        "RSA-OAEP-256" => key.oaep_decrypt::<Sha256>(ciphertext),
        "RSA-OAEP" => key.oaep_decrypt::<Sha1>(ciphertext),
        _ => return Err(CryptoError::UnsupportedAlgorithm(alg.to_owned())),
    };
    result
        .map(Zeroizing::new)
        .map_err(|_| CryptoError::InvalidInput("The value could not be decrypted with the key."))
}

/// Signs a digest (already hashed by the caller) with RSASSA-PSS: PS256,
/// PS384 or PS512, MGF1 with the same hash, salt as long as the digest.
pub(crate) fn sign(alg: &str, key: &PrivateKey, digest: &[u8]) -> Result<Vec<u8>, CryptoError> {
    match alg {
        "PS256" => pss_sign::<Sha256>(key, digest),
        "PS384" => pss_sign::<Sha384>(key, digest),
        "PS512" => pss_sign::<Sha512>(key, digest),
        _ => Err(CryptoError::UnsupportedAlgorithm(alg.to_owned())),
    }
}

/// Verifies a [`sign`] signature over a digest.
pub(crate) fn verify(
    alg: &str,
    key: &PublicKey,
    digest: &[u8],
    signature: &[u8],
) -> Result<bool, CryptoError> {
    match alg {
        "PS256" => pss_verify::<Sha256>(key, digest, signature),
        "PS384" => pss_verify::<Sha384>(key, digest, signature),
        "PS512" => pss_verify::<Sha512>(key, digest, signature),
        _ => Err(CryptoError::UnsupportedAlgorithm(alg.to_owned())),
    }
}

fn check_digest<D: Digest>(digest: &[u8]) -> Result<(), CryptoError> {
    if digest.len() == <D as Digest>::output_size() {
        Ok(())
    } else {
        Err(CryptoError::InvalidInput(
            "The digest length does not match the signature algorithm's hash.",
        ))
    }
}

fn pss_sign<D>(key: &PrivateKey, digest: &[u8]) -> Result<Vec<u8>, CryptoError>
where
    D: Digest + sha2::digest::FixedOutputReset,
{
    check_digest::<D>(digest)?;
    key.pss_sign_prehash::<D>(digest)
        .map_err(|_| CryptoError::InvalidInput("The digest could not be signed."))
}

fn pss_verify<D>(key: &PublicKey, digest: &[u8], signature: &[u8]) -> Result<bool, CryptoError>
where
    D: Digest + sha2::digest::FixedOutputReset,
{
    check_digest::<D>(digest)?;
    Ok(key.pss_verify_prehash::<D>(digest, signature).is_ok())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn round_trips_and_rejects() {
        let key = generate(2048).unwrap();
        let public = key.as_public_key();
        for alg in ["RSA-OAEP-256", "RSA-OAEP"] {
            let wrapped = encrypt(alg, public, b"column key").unwrap();
            assert_eq!(
                decrypt(alg, &key, &wrapped).unwrap().as_slice(),
                b"column key"
            );
        }
        let wrapped = encrypt("RSA-OAEP-256", public, b"column key").unwrap();
        assert!(matches!(
            decrypt("RSA-OAEP", &key, &wrapped),
            Err(CryptoError::InvalidInput(_))
        ));
        assert!(matches!(
            encrypt("RSA1_5", public, b"x"),
            Err(CryptoError::UnsupportedAlgorithm(_))
        ));

        let digest = Sha256::digest(b"message");
        let signature = sign("PS256", &key, &digest).unwrap();
        assert_eq!(verify("PS256", public, &digest, &signature), Ok(true));
        let other = Sha256::digest(b"other");
        assert_eq!(verify("PS256", public, &other, &signature), Ok(false));
        assert!(matches!(
            sign("PS256", &key, b"short"),
            Err(CryptoError::InvalidInput(_))
        ));
        assert!(generate(1024).is_none());
    }
}

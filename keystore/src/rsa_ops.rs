//! RSA operations shared by the providers that hold private keys in process
//! memory (`local`, `memory`): one place that fixes the algorithms.

use std::fmt;

use aws_lc_rs::rsa::{OaepPrivateDecryptingKey, PrivateDecryptingKey, OAEP_SHA256_MGF1SHA256};
use aws_lc_rs::signature::{RsaPublicKeyComponents, RSA_PSS_2048_8192_SHA256};
use rsa::pkcs8::der::pem;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, PrivateKeyInfoRef};
use rsa::traits::PublicKeyParts;
use rsa::{PrivateKey, PublicKey};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::{ColumnKey, KeyStoreError, KeyWrapAlgorithm, MasterKeyInfo, WrappedKey};

/// Smallest RSA modulus accepted for a column master key.
pub const MIN_MASTER_KEY_BITS: usize = 2048;

/// RSA modulus sizes a provider can generate.
pub const GENERATABLE_KEY_BITS: [usize; 3] = [2048, 3072, 4096];

/// The object identifier of `rsaEncryption` (PKCS #1).
const RSA_ENCRYPTION_OID: &str = "1.2.840.113549.1.1.1";

/// A master key's private half as the in-process providers hold it: the
/// `rsa` crate's key, which signs, wraps and names the public key, and
/// AWS-LC's RSA-OAEP decrypting key of the same numbers, which unwraps
/// column keys (an RSA-2048 unwrap takes about 0.3 ms in AWS-LC against
/// about 2 ms in the `rsa` crate, and a client's first encrypted statement
/// waits for one). Both wipe their numbers when dropped.
///
/// AWS-LC is stricter than the `rsa` crate about what it parses (it checks
/// the stored CRT values, which the `rsa` crate recomputes, and refuses
/// PKCS#8 v2 documents): a key the `rsa` crate accepts and AWS-LC does not
/// is unwrapped by the `rsa` crate, as before, so no key that worked stops
/// working.
pub(crate) struct HeldKey {
    key: PrivateKey,
    unwrapping: Option<OaepPrivateDecryptingKey>,
}

impl HeldKey {
    /// The key of `key` and `pkcs8_der`, its own PKCS#8 encoding.
    fn new(key: PrivateKey, pkcs8_der: &[u8]) -> Self {
        let unwrapping = PrivateDecryptingKey::from_pkcs8(pkcs8_der)
            .ok()
            .and_then(|decrypting| OaepPrivateDecryptingKey::new(decrypting).ok());
        Self { key, unwrapping }
    }

    /// The `rsa` crate's private key.
    pub(crate) fn private_key(&self) -> &PrivateKey {
        &self.key
    }

    /// The public half.
    pub(crate) fn as_public_key(&self) -> &PublicKey {
        self.key.as_public_key()
    }

    /// Whether AWS-LC unwraps with this key (else the `rsa` crate does).
    #[cfg(test)]
    fn unwraps_in_aws_lc(&self) -> bool {
        self.unwrapping.is_some()
    }

    /// RSA-OAEP-SHA-256 decryption of `ciphertext`, `None` if it fails.
    fn oaep_decrypt(&self, ciphertext: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        match &self.unwrapping {
            Some(unwrapping) => {
                // The buffer, as long as the modulus, is wiped when dropped.
                let mut buffer = Zeroizing::new(vec![0; self.key.size()]);
                let plaintext = unwrapping
                    .decrypt(&OAEP_SHA256_MGF1SHA256, ciphertext, &mut buffer, None)
                    .ok()?;
                Some(Zeroizing::new(plaintext.to_vec()))
            }
            None => self
                .key
                .oaep_decrypt::<Sha256>(ciphertext)
                .ok()
                .map(Zeroizing::new),
        }
    }
}

impl fmt::Debug for HeldKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeldKey").finish_non_exhaustive()
    }
}

pub(crate) fn generate(key_path: &str, bits: usize) -> Result<HeldKey, KeyStoreError> {
    if !GENERATABLE_KEY_BITS.contains(&bits) {
        return Err(KeyStoreError::UnsupportedKeySize { bits });
    }
    let key = PrivateKey::new(&mut rand::rngs::SysRng, bits)
        .map_err(|_| KeyStoreError::RandomnessUnavailable)?;
    let der = key
        .to_pkcs8_der()
        .map_err(|_| KeyStoreError::MalformedKey {
            key_path: key_path.to_owned(),
            reason: "generated key cannot be encoded".to_owned(),
        })?;
    Ok(HeldKey::new(key, der.as_bytes()))
}

/// Parses a PKCS#8 PEM private key and checks that it can be a master key,
/// with a distinct error for each way it can be wrong.
pub(crate) fn parse_private_key_pem(
    key_path: &str,
    pem_text: &str,
) -> Result<HeldKey, KeyStoreError> {
    let malformed = |reason: &str| KeyStoreError::MalformedKey {
        key_path: key_path.to_owned(),
        reason: reason.to_owned(),
    };
    let label = pem::decode_label(pem_text.as_bytes()).map_err(|_| malformed("not a PEM file"))?;
    match label {
        "PRIVATE KEY" => {}
        "PUBLIC KEY" | "RSA PUBLIC KEY" | "CERTIFICATE" => {
            return Err(KeyStoreError::PublicKeyOnly {
                key_path: key_path.to_owned(),
            })
        }
        "RSA PRIVATE KEY" => {
            return Err(malformed(
                "PKCS#1 key; convert it to PKCS#8 (openssl pkcs8 -topk8 -nocrypt)",
            ))
        }
        "ENCRYPTED PRIVATE KEY" => {
            return Err(malformed("password-protected keys are not supported"))
        }
        "EC PRIVATE KEY" | "OPENSSH PRIVATE KEY" | "DSA PRIVATE KEY" => {
            return Err(KeyStoreError::NotRsa {
                key_path: key_path.to_owned(),
                found: label.to_owned(),
            })
        }
        _ => return Err(malformed("unexpected PEM label")),
    }
    let (_, document) = rsa::pkcs8::SecretDocument::from_pem(pem_text)
        .map_err(|_| malformed("invalid PEM encoding"))?;
    let info = PrivateKeyInfoRef::try_from(document.as_bytes())
        .map_err(|_| malformed("invalid PKCS#8 structure"))?;
    let oid = info.algorithm.oid.to_string();
    if oid != RSA_ENCRYPTION_OID {
        return Err(KeyStoreError::NotRsa {
            key_path: key_path.to_owned(),
            found: format!("algorithm {oid}"),
        });
    }
    let key = PrivateKey::from_pkcs8_der(document.as_bytes())
        .map_err(|_| malformed("invalid RSA private key"))?;
    check_size(key_path, key.as_public_key())?;
    Ok(HeldKey::new(key, document.as_bytes()))
}

pub(crate) fn check_size(key_path: &str, key: &PublicKey) -> Result<(), KeyStoreError> {
    // The modulus's own width: a 2047-bit modulus fills 256 bytes too.
    let bits = key.n().bit_width() as usize;
    if bits < MIN_MASTER_KEY_BITS {
        return Err(KeyStoreError::KeyTooSmall {
            key_path: key_path.to_owned(),
            bits,
            minimum: MIN_MASTER_KEY_BITS,
        });
    }
    Ok(())
}

/// The RSA public key of big-endian `modulus` and `exponent` (as an HSM or
/// a vault gives them), of a size a master key may have.
#[cfg(any(feature = "pkcs11", feature = "azure-key-vault"))]
pub(crate) fn public_key_from_numbers(
    key_path: &str,
    modulus: &[u8],
    exponent: &[u8],
) -> Result<PublicKey, KeyStoreError> {
    let key = PublicKey::new(
        rsa::BoxedUint::from_be_slice_vartime(modulus),
        rsa::BoxedUint::from_be_slice_vartime(exponent),
    )
    .map_err(|_| KeyStoreError::MalformedKey {
        key_path: key_path.to_owned(),
        reason: "its RSA public numbers do not form a key".to_owned(),
    })?;
    check_size(key_path, &key)?;
    Ok(key)
}

pub(crate) fn describe(key_path: &str, key: &PublicKey) -> Result<MasterKeyInfo, KeyStoreError> {
    let spki = key
        .to_public_key_der()
        .map_err(|_| KeyStoreError::MalformedKey {
            key_path: key_path.to_owned(),
            reason: "public key cannot be encoded".to_owned(),
        })?;
    Ok(MasterKeyInfo {
        bits: key.size() * 8,
        public_key_sha256: Sha256::digest(spki.as_bytes()).into(),
    })
}

pub(crate) fn wrap(
    key_path: &str,
    key: &PublicKey,
    column_key: &ColumnKey,
) -> Result<WrappedKey, KeyStoreError> {
    let ciphertext = key
        .oaep_encrypt::<Sha256>(column_key.expose_secret())
        .map_err(|_| KeyStoreError::WrapFailed {
            key_path: key_path.to_owned(),
        })?;
    Ok(WrappedKey::new(KeyWrapAlgorithm::RsaOaepSha256, ciphertext))
}

/// Unwraps with a private key in process memory: RSA-OAEP-SHA-256 only, the
/// only algorithm these providers wrap with.
pub(crate) fn unwrap(
    provider: &str,
    key_path: &str,
    key: &HeldKey,
    wrapped: &WrappedKey,
) -> Result<ColumnKey, KeyStoreError> {
    if wrapped.algorithm != KeyWrapAlgorithm::RsaOaepSha256 {
        return Err(KeyStoreError::UnsupportedWrapAlgorithm {
            provider: provider.to_owned(),
            key_path: key_path.to_owned(),
            algorithm: wrapped.algorithm.name(),
        });
    }
    let failed = || KeyStoreError::UnwrapFailed {
        key_path: key_path.to_owned(),
    };
    // Both crates blind the private-key operation.
    let bytes = key.oaep_decrypt(&wrapped.ciphertext).ok_or_else(failed)?;
    ColumnKey::from_unwrapped(bytes).map_err(|_| failed())
}

pub(crate) fn sign(
    key_path: &str,
    key: &HeldKey,
    message: &[u8],
) -> Result<Vec<u8>, KeyStoreError> {
    key.private_key()
        .pss_sign::<Sha256>(message)
        .map_err(|_| KeyStoreError::SignFailed {
            key_path: key_path.to_owned(),
        })
}

/// Verifies an RSA-PSS-SHA-256 signature (salt as long as the digest) of
/// `message` under `key`.
///
/// AWS-LC verifies first, in a fraction of the `rsa` crate's time, and a
/// catalog load verifies every record it reads. What it does not accept
/// (a forged or damaged signature, or a key outside the sizes and
/// exponents it takes) the `rsa` crate decides, as before: both check the
/// same scheme with the same salt length, so no signature that verified
/// stops verifying, and a forgery must pass the `rsa` crate as it always
/// had to.
pub(crate) fn verify(
    key_path: &str,
    key: &PublicKey,
    message: &[u8],
    signature: &[u8],
) -> Result<(), KeyStoreError> {
    if verifies_in_aws_lc(key, message, signature) {
        return Ok(());
    }
    key.pss_verify::<Sha256>(message, signature)
        .map_err(|_| KeyStoreError::InvalidSignature {
            key_path: key_path.to_owned(),
        })
}

/// Whether AWS-LC verifies `signature` as [`verify`] asks.
fn verifies_in_aws_lc(key: &PublicKey, message: &[u8], signature: &[u8]) -> bool {
    RsaPublicKeyComponents {
        n: key.n_bytes(),
        e: key.e_bytes(),
    }
    .verify(&RSA_PSS_2048_8192_SHA256, message, signature)
    .is_ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a test fails by panicking

    use rsa::pkcs8::{EncodePrivateKey, LineEnding, SecretDocument};
    use rsa::signature::{RandomizedSigner, SignatureEncoding};

    use super::*;

    /// A key whose stored CRT coefficient is wrong: the `rsa` crate
    /// recomputes it and accepts the key, AWS-LC checks it and refuses.
    /// Such a key kept working before AWS-LC unwrapped, and still does.
    #[test]
    fn a_key_aws_lc_refuses_still_unwraps_with_the_rsa_crate() {
        let held = generate("cmk.pem", 2048).unwrap();
        assert!(held.unwraps_in_aws_lc());
        let mut der = held
            .private_key()
            .to_pkcs8_der()
            .unwrap()
            .as_bytes()
            .to_vec();
        // The last byte of a PKCS#8 v1 RSA key is its CRT coefficient's.
        *der.last_mut().unwrap() ^= 1;
        let pem = SecretDocument::try_from(der)
            .unwrap()
            .to_pem("PRIVATE KEY", LineEnding::LF)
            .unwrap();
        let odd = parse_private_key_pem("odd.pem", &pem).unwrap();
        assert!(!odd.unwraps_in_aws_lc());

        for key in [&held, &odd] {
            let column_key = ColumnKey::generate().unwrap();
            let wrapped = wrap("cmk.pem", key.as_public_key(), &column_key).unwrap();
            let unwrapped = unwrap("local", "cmk.pem", key, &wrapped).unwrap();
            assert_eq!(unwrapped.expose_secret(), column_key.expose_secret());
            let mut damaged = wrapped.clone();
            damaged.ciphertext[7] ^= 0x40;
            assert!(matches!(
                unwrap("local", "cmk.pem", key, &damaged),
                Err(KeyStoreError::UnwrapFailed { .. })
            ));
        }
    }

    /// Signatures this module makes verify in AWS-LC (the fast path is
    /// the one taken) and in the `rsa` crate; a damaged one, one under
    /// another key, and one with a salt shorter than the digest verify in
    /// neither, and are refused.
    #[test]
    fn signatures_verify_in_both_crates_and_forgeries_in_neither() {
        let held = generate("cmk.pem", 2048).unwrap();
        let other = generate("other.pem", 2048).unwrap();
        let public = held.as_public_key();
        let message = b"aepg catalog record";
        let signature = sign("cmk.pem", &held, message).unwrap();
        assert!(verifies_in_aws_lc(public, message, &signature));
        assert!(public.pss_verify::<Sha256>(message, &signature).is_ok());
        verify("cmk.pem", public, message, &signature).unwrap();

        let mut damaged = signature.clone();
        damaged[100] ^= 0x01;
        let short_salt =
            rsa::pss::SigningKey::<Sha256>::new_with_salt_len(held.private_key().clone(), 20)
                .try_sign_with_rng(&mut rand::rngs::SysRng, message)
                .unwrap()
                .to_vec();
        let forgeries: [(&PublicKey, &[u8], &[u8]); 4] = [
            (public, message, &damaged),
            (public, b"aepg catalog recorD", &signature),
            (other.as_public_key(), message, &signature),
            (public, message, &short_salt),
        ];
        for (key, message, signature) in forgeries {
            assert!(!verifies_in_aws_lc(key, message, signature));
            assert!(key.pss_verify::<Sha256>(message, signature).is_err());
            assert!(matches!(
                verify("cmk.pem", key, message, signature),
                Err(KeyStoreError::InvalidSignature { .. })
            ));
        }
    }

    /// A modulus one bit short of 2048 fills 256 bytes too; it is refused.
    #[test]
    fn a_2047_bit_modulus_is_too_small() {
        let key = PrivateKey::new(&mut rand::rngs::SysRng, 2047).unwrap();
        assert_eq!(key.size(), 256);
        assert!(matches!(
            check_size("short.pem", key.as_public_key()),
            Err(KeyStoreError::KeyTooSmall { bits: 2047, .. })
        ));
    }
}

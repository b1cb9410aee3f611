//! The cell constructions of the anchors, rebuilt from RustCrypto primitives
//! so that aepg's cell cipher can be measured against them in the same run.
//!
//! Both follow their published specifications in the parts that cost time
//! (key schedules are computed once, as a real driver caches them):
//! - SQL Server Always Encrypted, `AEAD_AES_256_CBC_HMAC_SHA256`: AES-256-CBC
//!   with PKCS#7 padding, IV random or HMAC-SHA-256(IV key, plaintext) for
//!   deterministic; tag HMAC-SHA-256(MAC key, version ‖ IV ‖ ciphertext ‖
//!   version length); cell = version ‖ tag ‖ IV ‖ ciphertext (65+ bytes overhead).
//! - MongoDB client-side field level encryption,
//!   `AEAD_AES_256_CBC_HMAC_SHA_512`: AES-256-CBC with PKCS#7, IV random or
//!   HMAC-SHA-512(IV key, AAD ‖ plaintext) truncated to 16 bytes; tag
//!   HMAC-SHA-512(MAC key, AAD ‖ IV ‖ ciphertext ‖ AAD bit length) truncated
//!   to 32 bytes; the AAD is the 18-byte BSON header (subtype, key UUID, type).

use aes::cipher::block_padding::Pkcs7;
use aes::cipher::{BlockModeDecrypt, BlockModeEncrypt, InnerIvInit, KeyInit as AesKeyInit};
use aes::Aes256;
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use rand::Rng;
use sha2::{Sha256, Sha512};

type CbcEncryptor = cbc::Encryptor<Aes256>;
type CbcDecryptor = cbc::Decryptor<Aes256>;

/// Why a reference decryption failed (the benches only assert success).
#[derive(Debug)]
pub struct Invalid;

fn random_iv() -> [u8; 16] {
    let mut iv = [0u8; 16];
    rand::rng().fill_bytes(&mut iv);
    iv
}

fn truncated_iv(digest: &[u8]) -> [u8; 16] {
    let mut iv = [0u8; 16];
    iv.copy_from_slice(&digest[..16]);
    iv
}

/// SQL Server's `AEAD_AES_256_CBC_HMAC_SHA256`.
pub struct SqlServerCell {
    aes: Aes256,
    mac: Hmac<Sha256>,
    iv_mac: Hmac<Sha256>,
}

impl SqlServerCell {
    const VERSION: u8 = 0x01;

    pub fn new(root_key: &[u8; 32]) -> Self {
        let derive = |label: &[u8]| -> [u8; 32] {
            let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(root_key).unwrap();
            mac.update(label);
            mac.finalize().into_bytes().into()
        };
        let enc_key = derive(b"Microsoft SQL Server cell encryption key");
        let mac_key = derive(b"Microsoft SQL Server cell MAC key");
        let iv_key = derive(b"Microsoft SQL Server cell IV key");
        Self {
            aes: <Aes256 as AesKeyInit>::new(&enc_key.into()),
            mac: <Hmac<Sha256> as KeyInit>::new_from_slice(&mac_key).unwrap(),
            iv_mac: <Hmac<Sha256> as KeyInit>::new_from_slice(&iv_key).unwrap(),
        }
    }

    /// The HMAC over version ‖ IV ‖ ciphertext ‖ version length, unfinished.
    fn tag_mac(&self, iv: &[u8], ciphertext: &[u8]) -> Hmac<Sha256> {
        let mut mac = self.mac.clone();
        mac.update(&[Self::VERSION]);
        mac.update(iv);
        mac.update(ciphertext);
        mac.update(&[1]);
        mac
    }

    pub fn encrypt(&self, plaintext: &[u8], deterministic: bool) -> Vec<u8> {
        let iv = if deterministic {
            let mut mac = self.iv_mac.clone();
            mac.update(plaintext);
            truncated_iv(&mac.finalize().into_bytes())
        } else {
            random_iv()
        };
        let ciphertext = CbcEncryptor::inner_iv_init(self.aes.clone(), &iv.into())
            .encrypt_padded_vec::<Pkcs7>(plaintext);
        let tag = self.tag_mac(&iv, &ciphertext).finalize().into_bytes();
        let mut cell = Vec::with_capacity(1 + 32 + 16 + ciphertext.len());
        cell.push(Self::VERSION);
        cell.extend_from_slice(&tag);
        cell.extend_from_slice(&iv);
        cell.extend_from_slice(&ciphertext);
        cell
    }

    pub fn decrypt(&self, cell: &[u8]) -> Result<Vec<u8>, Invalid> {
        if cell.len() < 1 + 32 + 16 + 16 || cell[0] != Self::VERSION {
            return Err(Invalid);
        }
        let (tag, rest) = cell[1..].split_at(32);
        let (iv, ciphertext) = rest.split_at(16);
        self.tag_mac(iv, ciphertext)
            .verify_slice(tag)
            .map_err(|_| Invalid)?;
        CbcDecryptor::inner_iv_init(self.aes.clone(), &truncated_iv(iv).into())
            .decrypt_padded_vec::<Pkcs7>(ciphertext)
            .map_err(|_| Invalid)
    }
}

/// MongoDB's `AEAD_AES_256_CBC_HMAC_SHA_512` (client-side field level encryption).
pub struct MongoCell {
    aes: Aes256,
    mac: Hmac<Sha512>,
    iv_mac: Hmac<Sha512>,
    aad: [u8; 18],
}

impl MongoCell {
    /// `key` is the 96-byte data key: MAC key, encryption key, IV key.
    pub fn new(key: &[u8; 96]) -> Self {
        let mut aad = [0u8; 18];
        aad[0] = 1; // deterministic subtype; the benches use one header for both modes
        aad[17] = 0x02; // BSON string
        Self {
            mac: <Hmac<Sha512> as KeyInit>::new_from_slice(&key[..32]).unwrap(),
            aes: <Aes256 as AesKeyInit>::new_from_slice(&key[32..64]).unwrap(),
            iv_mac: <Hmac<Sha512> as KeyInit>::new_from_slice(&key[64..]).unwrap(),
            aad,
        }
    }

    /// The HMAC over AAD ‖ IV ‖ ciphertext ‖ AAD bit length, unfinished.
    fn tag_mac(&self, iv: &[u8], ciphertext: &[u8]) -> Hmac<Sha512> {
        let mut mac = self.mac.clone();
        mac.update(&self.aad);
        mac.update(iv);
        mac.update(ciphertext);
        mac.update(&((self.aad.len() as u64) * 8).to_be_bytes());
        mac
    }

    pub fn encrypt(&self, plaintext: &[u8], deterministic: bool) -> Vec<u8> {
        let iv = if deterministic {
            let mut mac = self.iv_mac.clone();
            mac.update(&self.aad);
            mac.update(plaintext);
            truncated_iv(&mac.finalize().into_bytes())
        } else {
            random_iv()
        };
        let ciphertext = CbcEncryptor::inner_iv_init(self.aes.clone(), &iv.into())
            .encrypt_padded_vec::<Pkcs7>(plaintext);
        let tag = self.tag_mac(&iv, &ciphertext).finalize().into_bytes();
        let mut cell = Vec::with_capacity(self.aad.len() + 16 + ciphertext.len() + 32);
        cell.extend_from_slice(&self.aad);
        cell.extend_from_slice(&iv);
        cell.extend_from_slice(&ciphertext);
        cell.extend_from_slice(&tag[..32]);
        cell
    }

    pub fn decrypt(&self, cell: &[u8]) -> Result<Vec<u8>, Invalid> {
        if cell.len() < 18 + 16 + 16 + 32 || cell[..18] != self.aad {
            return Err(Invalid);
        }
        let body = &cell[18..];
        let (iv, rest) = body.split_at(16);
        let (ciphertext, tag) = rest.split_at(rest.len() - 32);
        // Constant-time comparison, as a real implementation must do.
        self.tag_mac(iv, ciphertext)
            .verify_truncated_left(tag)
            .map_err(|_| Invalid)?;
        CbcDecryptor::inner_iv_init(self.aes.clone(), &truncated_iv(iv).into())
            .decrypt_padded_vec::<Pkcs7>(ciphertext)
            .map_err(|_| Invalid)
    }
}

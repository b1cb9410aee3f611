//! The vault's keys: every version of every key, in memory, and their
//! KeyBundle JSON.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rsa::traits::PublicKeyParts;
use rsa::PrivateKey;
use serde_json::{json, Value};

use crate::crypto::{random, unix_now};
use crate::lock;
use crate::reply::{b64url_encode, Reply};

/// The operations a key allows unless it was created with a narrower list.
pub(crate) const ALL_KEY_OPS: [&str; 6] = [
    "encrypt",
    "decrypt",
    "sign",
    "verify",
    "wrapKey",
    "unwrapKey",
];

/// Whether `name` is a valid Key Vault object name: 1 to 127 ASCII letters,
/// digits and dashes.
pub(crate) fn is_valid_name(name: &str) -> bool {
    (1..=127).contains(&name.len())
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-')
}

/// What a new key version may set beyond its key material.
#[derive(Debug, Default)]
pub(crate) struct NewKeyOptions {
    /// `"RSA"` (the default) or `"RSA-HSM"`.
    pub(crate) kty: Option<String>,
    /// The allowed operations; all of [`ALL_KEY_OPS`] by default.
    pub(crate) key_ops: Option<Vec<String>>,
    /// Whether the version starts enabled (the default).
    pub(crate) enabled: Option<bool>,
    /// Tags, echoed back in the KeyBundle.
    pub(crate) tags: Option<Value>,
}

struct KeyVersion {
    version: String,
    key: Arc<PrivateKey>,
    kty: String,
    key_ops: Vec<String>,
    enabled: bool,
    created: u64,
    updated: u64,
    tags: Option<Value>,
}

struct Key {
    /// The name as created (lookups ignore case, as Key Vault's do).
    name: String,
    /// Oldest first: the last is the current version.
    versions: Vec<KeyVersion>,
}

/// A key version found for an operation.
pub(crate) struct Found {
    /// The full key id, version included.
    pub(crate) kid: String,
    pub(crate) key: Arc<PrivateKey>,
    /// The version's KeyBundle JSON.
    pub(crate) bundle: Value,
}

/// All keys of the vault.
pub(crate) struct KeyStore {
    vault_url: String,
    keys: Mutex<HashMap<String, Key>>,
}

impl KeyStore {
    pub(crate) fn new(vault_url: String) -> Self {
        Self {
            vault_url,
            keys: Mutex::new(HashMap::new()),
        }
    }

    /// Adds `key` as the new current version of key `name` and returns it,
    /// or `None` if `name` is not a valid key name.
    pub(crate) fn insert(
        &self,
        name: &str,
        key: PrivateKey,
        options: NewKeyOptions,
    ) -> Option<Found> {
        if !is_valid_name(name) {
            return None;
        }
        let now = unix_now();
        let version = KeyVersion {
            version: random::<16>().iter().map(|b| format!("{b:02x}")).collect(),
            key: Arc::new(key),
            kty: options.kty.unwrap_or_else(|| "RSA".to_owned()),
            key_ops: options
                .key_ops
                .unwrap_or_else(|| ALL_KEY_OPS.map(str::to_owned).to_vec()),
            enabled: options.enabled.unwrap_or(true),
            created: now,
            updated: now,
            tags: options.tags,
        };
        let mut keys = lock(&self.keys);
        let entry = keys
            .entry(name.to_ascii_lowercase())
            .or_insert_with(|| Key {
                name: name.to_owned(),
                versions: Vec::new(),
            });
        let found = self.found(&entry.name, &version);
        entry.versions.push(version);
        Some(found)
    }

    /// Enables or disables every version of key `name`; `false` if there is
    /// no such key.
    pub(crate) fn set_enabled(&self, name: &str, enabled: bool) -> bool {
        let mut keys = lock(&self.keys);
        let Some(entry) = keys.get_mut(&name.to_ascii_lowercase()) else {
            return false;
        };
        let now = unix_now();
        for version in &mut entry.versions {
            version.enabled = enabled;
            version.updated = now;
        }
        true
    }

    /// The version `version` of key `name` (`""`: the current version), for
    /// `operation` (a key_ops name, or `"get"`).
    ///
    /// # Errors
    /// 404 KeyNotFound if there is no such key or version; 403 Forbidden if
    /// the version is disabled or does not allow `operation`.
    pub(crate) fn find(&self, name: &str, version: &str, operation: &str) -> Result<Found, Reply> {
        let keys = lock(&self.keys);
        let entry = keys.get(&name.to_ascii_lowercase());
        let found = entry.and_then(|entry| {
            if version.is_empty() {
                entry.versions.last()
            } else {
                entry
                    .versions
                    .iter()
                    .find(|v| v.version.eq_ignore_ascii_case(version))
            }
            .map(|found| (entry, found))
        });
        let Some((entry, key_version)) = found else {
            let id = if version.is_empty() {
                name.to_owned()
            } else {
                format!("{name}/{version}")
            };
            return Err(Reply::error(
                404,
                "KeyNotFound",
                format!(
                    "A key with (name/id) {id} was not found in this key vault. If you recently \
                     deleted this key you may be able to recover it using the correct recovery \
                     command. For help resolving this issue, please see \
                     https://go.microsoft.com/fwlink/?linkid=2125182"
                ),
            ));
        };
        if !key_version.enabled {
            return Err(Reply::error(
                403,
                "Forbidden",
                format!("Operation {operation} is not allowed on a disabled key."),
            ));
        }
        if operation != "get" && !key_version.key_ops.iter().any(|op| op == operation) {
            return Err(Reply::error(
                403,
                "Forbidden",
                format!("Operation {operation} is not permitted on this key."),
            ));
        }
        Ok(self.found(&entry.name, key_version))
    }

    fn found(&self, name: &str, version: &KeyVersion) -> Found {
        let kid = format!("{}/keys/{name}/{}", self.vault_url, version.version);
        let key = version.key.as_public_key();
        let mut bundle = json!({
            "key": {
                "kid": kid,
                "kty": version.kty,
                "key_ops": version.key_ops,
                "n": b64url_encode(&key.n_bytes()),
                "e": b64url_encode(&key.e_bytes()),
            },
            "attributes": {
                "enabled": version.enabled,
                "created": version.created,
                "updated": version.updated,
                "recoveryLevel": "Recoverable+Purgeable",
                "recoverableDays": 90,
            },
        });
        if let (Some(tags), Some(object)) = (&version.tags, bundle.as_object_mut()) {
            object.insert("tags".to_owned(), tags.clone());
        }
        Found {
            kid,
            key: Arc::clone(&version.key),
            bundle,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_names() {
        assert!(is_valid_name("cmk-1"));
        assert!(is_valid_name(&"a".repeat(127)));
        assert!(!is_valid_name(""));
        assert!(!is_valid_name(&"a".repeat(128)));
        assert!(!is_valid_name("a_b"));
        assert!(!is_valid_name("a/b"));
    }
}

//! Key paths of the `azure-key-vault` provider: Key Vault key identifiers.
//!
//! ```text
//! https://payments.vault.azure.net/keys/cmk-2026/0123456789abcdef0123456789abcdef
//! https://payments.vault.azure.net/keys/cmk-2026
//! ```
//!
//! `https` only; a host (a vault, a managed HSM, a sovereign cloud's vault,
//! or a test server with its port); `/keys/NAME` and an optional
//! `/VERSION`. A path without a version always means the key's current
//! version: pin the version so that a new version made in the vault does
//! not leave older wrapped values unreadable. One spelling per key: lower
//! case host, no trailing slash, no query or fragment.

/// A parsed key identifier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct KeyId {
    /// `https://host[:port]`, no trailing slash.
    pub vault: String,
    /// The key's name.
    pub name: String,
    /// The key's version, if the path pins one.
    pub version: Option<String>,
}

impl KeyId {
    /// Parses `key_path`, or says what is wrong with it.
    pub fn parse(key_path: &str) -> Result<Self, &'static str> {
        if key_path.len() > 512 {
            return Err("it is longer than 512 bytes");
        }
        let rest = key_path
            .strip_prefix("https://")
            .ok_or("it must be a key identifier URL starting with https://")?;
        let (host, path) = rest
            .split_once('/')
            .ok_or("it must be https://VAULT/keys/NAME[/VERSION]")?;
        let host_ok = !host.is_empty()
            && host.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | ':')
            })
            && !host.starts_with(['.', '-', ':']);
        if !host_ok {
            return Err("its host must be a lower-case DNS name, with an optional port");
        }
        let mut parts = path.split('/');
        if parts.next() != Some("keys") {
            return Err("it must be https://VAULT/keys/NAME[/VERSION]");
        }
        let name = parts.next().unwrap_or_default();
        if name.is_empty()
            || name.len() > 127
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(
                "the key name must be 1-127 lower-case letters, digits and dashes \
                        (Key Vault names are case-insensitive: one spelling per key)",
            );
        }
        let version = match parts.next() {
            None => None,
            Some(version)
                if !version.is_empty()
                    && version.len() <= 64
                    && version
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()) =>
            {
                Some(version.to_owned())
            }
            Some(_) => return Err("the key version must be 1-64 lower-case letters and digits"),
        };
        if parts.next().is_some() {
            return Err("it must be https://VAULT/keys/NAME[/VERSION], nothing after");
        }
        Ok(Self {
            vault: format!("https://{host}"),
            name: name.to_owned(),
            version,
        })
    }

    /// The host (and port) of the vault.
    pub fn host(&self) -> &str {
        self.vault.trim_start_matches("https://")
    }

    /// The URL of the key (with its version, if pinned).
    pub fn url(&self) -> String {
        match &self.version {
            Some(version) => format!("{}/keys/{}/{version}", self.vault, self.name),
            None => format!("{}/keys/{}", self.vault, self.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::KeyId;

    #[test]
    fn identifiers_parse_and_nothing_else() {
        let id = KeyId::parse("https://pay.vault.azure.net/keys/cmk-1/0a1b").unwrap();
        assert_eq!(id.vault, "https://pay.vault.azure.net");
        assert_eq!(id.name, "cmk-1");
        assert_eq!(id.version.as_deref(), Some("0a1b"));
        assert_eq!(id.url(), "https://pay.vault.azure.net/keys/cmk-1/0a1b");
        let latest = KeyId::parse("https://localhost:8443/keys/cmk").unwrap();
        assert_eq!(latest.version, None);
        for path in [
            "",
            "http://pay.vault.azure.net/keys/cmk",
            "https://pay.vault.azure.net/keys/",
            "https://pay.vault.azure.net/keys/cmk/",
            "https://pay.vault.azure.net/secrets/cmk",
            "https://pay.vault.azure.net/keys/cmk/v1/x",
            "https://pay.vault.azure.net/keys/cmk?api-version=7.4",
            "https://pay.vault.azure.net/keys/cmk#x",
            "https://PAY.vault.azure.net/keys/cmk",
            "https://user@pay.vault.azure.net/keys/cmk",
            "https://pay.vault.azure.net/keys/c_mk",
            "https://pay.vault.azure.net/keys/CMK",
            "https://pay.vault.azure.net/keys/cmk/0A1B",
            "https:///keys/cmk",
        ] {
            assert!(KeyId::parse(path).is_err(), "{path:?}");
        }
    }
}

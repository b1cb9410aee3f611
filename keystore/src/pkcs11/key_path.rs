//! Key paths of the `pkcs11` provider: a subset of the PKCS#11 URI
//! (RFC 7512) that names a module, a token and a key.
//!
//! ```text
//! pkcs11:module-name=softhsm2;token=payments;object=cmk-2026
//! pkcs11:module-name=luna;serial=7701234;id=%01%02
//! ```
//!
//! - `module-name`: the module, by the name the application configured it
//!   under (never a file path: the catalog must not choose which library
//!   the application loads);
//! - `token` (label) or `serial` (serial number), or both;
//! - `object` (label) or `id` (`CKA_ID`, percent-encoded bytes), or both;
//! - `type=private`, optionally.
//!
//! Query attributes (`?pin-value=…`, `?module-path=…`) are refused: the PIN
//! never comes from the catalog.
//!
//! Each key has one spelling: attributes in the order above, `id` bytes
//! all percent-encoded (`%0A`, upper case), other values with exactly the
//! characters outside RFC 3986's unreserved set and `!$&'()*+,=:@`
//! encoded. A path in another spelling is refused, saying which one to use:
//! the allow-list compares key paths as strings, and master keys are told
//! apart by their paths.

/// A parsed key path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Pkcs11KeyPath {
    /// The configured module's name.
    pub module: String,
    /// Which token: by label, by serial number, or both must match.
    pub token: TokenSelector,
    /// The key's label (`CKA_LABEL`), if the path names one.
    pub label: Option<String>,
    /// The key's id (`CKA_ID`), if the path names one.
    pub id: Option<Vec<u8>>,
}

/// How a key path picks its token.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct TokenSelector {
    /// The token's label, if named.
    pub label: Option<String>,
    /// The token's serial number, if named.
    pub serial: Option<String>,
}

impl TokenSelector {
    /// Whether a token with this label and serial number (as the module
    /// reports them, blank-padded) is the one selected.
    pub fn matches(&self, label: &str, serial: &str) -> bool {
        self.label
            .as_deref()
            .is_none_or(|want| want == label.trim_end())
            && self
                .serial
                .as_deref()
                .is_none_or(|want| want == serial.trim_end())
    }

    /// How errors name the token.
    pub fn describe(&self) -> String {
        match (&self.label, &self.serial) {
            (Some(label), Some(serial)) => format!("token {label:?} (serial {serial})"),
            (Some(label), None) => format!("token {label:?}"),
            (None, Some(serial)) => format!("token with serial {serial}"),
            (None, None) => "no token".to_owned(),
        }
    }
}

/// Longest key path accepted.
const MAX_LEN: usize = 1024;

impl Pkcs11KeyPath {
    /// Parses `key_path`, or says what is wrong with it.
    pub fn parse(key_path: &str) -> Result<Self, &'static str> {
        if key_path.len() > MAX_LEN {
            return Err("it is longer than 1024 bytes");
        }
        let Some(rest) = key_path.strip_prefix("pkcs11:") else {
            return Err("it must start with \"pkcs11:\" (a PKCS#11 URI, RFC 7512)");
        };
        if rest.contains('?') {
            return Err(
                "query attributes (pin-value, module-path, …) are not accepted: \
                        the PIN and the module's file are the application's, never the catalog's",
            );
        }
        let (mut module, mut label, mut id, mut token_label, mut serial, mut typed) =
            (None, None, None, None, None, None);
        for attribute in rest.split(';') {
            let (name, value) = attribute
                .split_once('=')
                .ok_or("every attribute must be name=value, separated by ';'")?;
            let value = percent_decode(value)?;
            let slot = match name {
                "module-name" => &mut module,
                "token" => &mut token_label,
                "serial" => &mut serial,
                "object" => &mut label,
                "id" => &mut id,
                "type" => {
                    if value != b"private" {
                        return Err("type must be \"private\": a master key is a private key");
                    }
                    &mut typed
                }
                _ => {
                    return Err(
                        "unknown attribute: use module-name, token, serial, object, id \
                                or type",
                    )
                }
            };
            if slot.replace(value).is_some() {
                return Err("an attribute is given twice");
            }
        }
        let text = |value: Option<Vec<u8>>| -> Result<Option<String>, &'static str> {
            value
                .map(|bytes| String::from_utf8(bytes).map_err(|_| "a label or name is not UTF-8"))
                .transpose()
        };
        let module = text(module)?.ok_or("it names no module-name")?;
        let token = TokenSelector {
            label: text(token_label)?,
            serial: text(serial)?,
        };
        if token.label.is_none() && token.serial.is_none() {
            return Err("it names no token (token=label or serial=number)");
        }
        let label = text(label)?;
        if label.is_none() && id.is_none() {
            return Err("it names no key (object=label or id=bytes)");
        }
        if [
            Some(&module),
            token.label.as_ref(),
            token.serial.as_ref(),
            label.as_ref(),
        ]
        .into_iter()
        .flatten()
        .any(|value| value.is_empty() || value.chars().any(char::is_control))
        {
            return Err("a name or label is empty or contains control characters");
        }
        if id.as_ref().is_some_and(Vec::is_empty) {
            return Err("the id is empty");
        }
        let path = Self {
            module,
            token,
            label,
            id,
        };
        let canonical = path.canonical(typed.is_some());
        if canonical != key_path {
            return Err(
                "it is not in its one canonical spelling: attributes in the order \
                        module-name, token, serial, object, id, type, and percent-encoding \
                        exactly where needed (aepg's docs/KEY_STORES.md)",
            );
        }
        Ok(path)
    }

    /// The one spelling of this path (with `;type=private` when `typed`).
    fn canonical(&self, typed: bool) -> String {
        let mut out = String::from("pkcs11:");
        let mut attribute = |name: &str, value: String| {
            if !out.ends_with(':') {
                out.push(';');
            }
            out.push_str(name);
            out.push('=');
            out.push_str(&value);
        };
        attribute("module-name", encode_text(&self.module));
        if let Some(label) = &self.token.label {
            attribute("token", encode_text(label));
        }
        if let Some(serial) = &self.token.serial {
            attribute("serial", encode_text(serial));
        }
        if let Some(label) = &self.label {
            attribute("object", encode_text(label));
        }
        if let Some(id) = &self.id {
            attribute("id", id.iter().map(|byte| format!("%{byte:02X}")).collect());
        }
        if typed {
            attribute("type", "private".to_owned());
        }
        out
    }
}

/// Percent-encodes every byte of `text` outside RFC 3986's unreserved set
/// and `!$&'()*+,=:@` (RFC 7512's path characters, `;` excepted).
fn encode_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~!$&'()*+,=:@".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Decodes RFC 3986 percent-encoding; a stray `%` is an error.
fn percent_decode(value: &str) -> Result<Vec<u8>, &'static str> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'%' {
            let hex = bytes
                .get(at + 1..at + 3)
                .filter(|pair| pair.iter().all(u8::is_ascii_hexdigit))
                .and_then(|pair| std::str::from_utf8(pair).ok())
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                .ok_or("a '%' is not followed by two hex digits")?;
            out.push(hex);
            at += 3;
        } else {
            out.push(bytes[at]);
            at += 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::{Pkcs11KeyPath, TokenSelector};

    #[test]
    fn a_full_path_parses() {
        let path = Pkcs11KeyPath::parse(
            "pkcs11:module-name=softhsm2;token=pay%20ments;object=cmk;id=%01%FF;type=private",
        )
        .unwrap();
        assert_eq!(
            path,
            Pkcs11KeyPath {
                module: "softhsm2".into(),
                token: TokenSelector {
                    label: Some("pay ments".into()),
                    serial: None
                },
                label: Some("cmk".into()),
                id: Some(vec![1, 0xff]),
            }
        );
        assert!(path
            .token
            .matches("pay ments                       ", "123"));
        assert!(!path.token.matches("payments", "123"));
        let by_serial = Pkcs11KeyPath::parse("pkcs11:module-name=m;serial=42;id=%07").unwrap();
        // Characters RFC 7512 allows raw stay raw; others are encoded.
        Pkcs11KeyPath::parse("pkcs11:module-name=m;token=a%2Fb%C3%A9:x@y;object=k").unwrap();
        assert!(by_serial.token.matches("anything", "42      "));
        assert!(!by_serial.token.matches("anything", "43"));
    }

    #[test]
    fn malformed_paths_are_refused_with_a_reason() {
        for path in [
            "",
            "softhsm2/token/key",
            "pkcs11:",
            "pkcs11:token=t;object=k",
            "pkcs11:module-name=m;object=k",
            "pkcs11:module-name=m;token=t",
            "pkcs11:module-name=m;token=t;object=k?pin-value=1234",
            "pkcs11:module-name=m;token=t;object=k;object=j",
            "pkcs11:module-name=m;token=t;object=k;type=public",
            "pkcs11:module-name=m;token=t;object=k;slot-id=1",
            "pkcs11:module-name=m;token=t;object=%zz",
            "pkcs11:module-name=m;token=t;object=%ff",
            "pkcs11:module-name=m;token=;object=k",
            "pkcs11:module-name=m;token=t;object=a%0ab",
            "pkcs11:module-name=m;token=t;id=",
            "pkcs11:module-name=m;token=t;object",
            // Other spellings of keys that parse: one spelling per key.
            "pkcs11:token=t;module-name=m;object=k",
            "pkcs11:module-name=m;token=t;object=%6B",
            "pkcs11:module-name=m;token=t;id=%0a",
            "pkcs11:module-name=m;token=t;id=%+1",
            "pkcs11:module-name=m;token=t;id=k",
            "pkcs11:module-name=m;token=t;object=k;type=private;type=private",
            "pkcs11:module-name=m;token=a b;object=k",
        ] {
            assert!(Pkcs11KeyPath::parse(path).is_err(), "{path:?}");
        }
        let long = format!("pkcs11:module-name=m;token=t;object={}", "k".repeat(1100));
        assert!(Pkcs11KeyPath::parse(&long).is_err());
    }
}

//! Identifiers and parameter placeholders as PostgreSQL reads them.

use sqlparser::ast::{Ident, ObjectName, ObjectNamePart, TableAlias};

/// The longest identifier PostgreSQL keeps (`NAMEDATALEN - 1`); longer ones
/// are silently truncated by the server, so they must be here too or a long
/// name would resolve differently on each side.
const MAX_IDENTIFIER_BYTES: usize = 63;

/// The highest parameter number the wire protocol can carry (a `u16` count).
pub(super) const MAX_PARAMETER: usize = 65_535;

/// Folds an identifier the way the server does: unquoted names are
/// lower-cased (ASCII only, as in a UTF-8 database), quoted names keep their
/// case, and both are truncated to 63 bytes.
pub(super) fn fold_identifier(ident: &Ident) -> String {
    fold_word(&ident.value, ident.quote_style.is_some())
}

/// [`fold_identifier`] for a bare word and whether it was quoted.
pub(super) fn fold_word(value: &str, quoted: bool) -> String {
    let folded = if quoted {
        value.to_owned()
    } else {
        value.to_ascii_lowercase()
    };
    truncate_identifier(folded)
}

fn truncate_identifier(mut name: String) -> String {
    if name.len() > MAX_IDENTIFIER_BYTES {
        let mut end = MAX_IDENTIFIER_BYTES;
        // The server cuts at a character boundary, never inside a UTF-8 sequence.
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        name.truncate(end);
    }
    name
}

/// The folded parts of a dotted name, or `None` if a part is not a plain
/// identifier (some dialects allow function calls in names; PostgreSQL does not).
pub(super) fn object_name_parts(name: &ObjectName) -> Option<Vec<String>> {
    name.0
        .iter()
        .map(|part| match part {
            ObjectNamePart::Identifier(ident) => Some(fold_identifier(ident)),
            ObjectNamePart::Function(_) => None,
        })
        .collect()
}

/// The folded name of an alias.
pub(super) fn alias_name(alias: Option<&TableAlias>) -> Option<String> {
    alias.map(|alias| fold_identifier(&alias.name))
}

/// The folded column names of an alias (`AS p(a, b)`), if any.
pub(super) fn alias_columns(alias: Option<&TableAlias>) -> Vec<String> {
    alias
        .map(|alias| {
            alias
                .columns
                .iter()
                .map(|column| fold_identifier(&column.name))
                .collect()
        })
        .unwrap_or_default()
}

/// A dotted name for messages (`public.patients`, `lower`).
pub(super) fn display_parts(parts: &[String]) -> String {
    parts.join(".")
}

/// The number of a `$n` placeholder, if it is one the protocol can bind:
/// `$0`, `$007x`, `?` or `:name` are not.
pub(super) fn parameter_number(placeholder: &str) -> Option<usize> {
    let digits = placeholder.strip_prefix('$')?;
    if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    // Reject long digit strings before parsing so that no overflow is possible.
    if digits.len() > 5 {
        return None;
    }
    let number: usize = digits.parse().ok()?;
    (1..=MAX_PARAMETER).contains(&number).then_some(number)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unquoted_identifiers_fold_to_lower_case_and_quoted_ones_keep_case() {
        assert_eq!(fold_word("Patients", false), "patients");
        assert_eq!(fold_word("Accounts", true), "Accounts");
        // Only ASCII folds, as in a UTF-8 database.
        assert_eq!(fold_word("ÄRZTE", false), "Ärzte");
    }

    #[test]
    fn long_identifiers_are_truncated_at_a_character_boundary() {
        let long = "a".repeat(62) + "é";
        let folded = fold_word(&long, true);
        assert_eq!(folded, "a".repeat(62));
        assert_eq!(fold_word(&"b".repeat(100), false), "b".repeat(63));
    }

    #[test]
    fn only_protocol_parameters_have_numbers() {
        assert_eq!(parameter_number("$1"), Some(1));
        assert_eq!(parameter_number("$65535"), Some(65_535));
        assert_eq!(parameter_number("$65536"), None);
        assert_eq!(parameter_number("$0"), None);
        assert_eq!(parameter_number("$99999999999999999999999"), None);
        assert_eq!(parameter_number("?"), None);
        assert_eq!(parameter_number("$a"), None);
        assert_eq!(parameter_number("$"), None);
    }
}

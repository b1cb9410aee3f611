//! What can be read from statement text without parsing it: the highest
//! `$n`, whether the text names a table with encrypted columns, and whether
//! it is too deeply chained to parse safely.
//!
//! This is the fail-closed fallback for text the parser rejects and for
//! parts of a statement the walk does not enter, so it errs towards finding
//! table names: any identifier-looking word counts, wherever it stands, even
//! inside a string literal (which may be SQL run later).

use std::collections::HashSet;

use sqlparser::ast::DollarQuotedString;
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

use super::names::{fold_word, parameter_number};
use super::SchemaView;
use crate::names::TableName;

/// The longest run of tokens between `,` `(` `)` `;` that is parsed. Such a
/// run is where operator chains (`a + b + …`, `x AND y AND …`) build syntax
/// trees one level deeper per operator, and the parser's trees are dropped
/// and printed recursively: a run this long stays well inside a 2 MiB task
/// stack, far longer than any statement an application writes.
pub(super) const MAX_TOKEN_RUN: usize = 8_000;

/// One name a text might use for a table: `name` or `schema.name`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct NameCandidate {
    schema: Option<String>,
    name: String,
}

/// What the lexical scan of a text found.
#[derive(Debug, Default)]
pub(super) struct Lexicon {
    /// The highest `$n` in the text (0 if none).
    pub(super) highest_parameter: usize,
    /// The longest run of tokens between separators.
    pub(super) longest_run: usize,
    candidates: Vec<NameCandidate>,
    /// The first word of each statement (at the start, or after `;`).
    leading_words: Vec<String>,
}

impl Lexicon {
    /// Scans tokenized text.
    pub(super) fn of_tokens(tokens: &[TokenWithSpan]) -> Self {
        let mut lexicon = Self::default();
        let mut run = 0_usize;
        // Words seen since the last token that is neither a word nor a `.`,
        // to pair `schema.name`.
        let mut previous_word: Option<String> = None;
        let mut after_period = false;
        let mut statement_start = true;
        for token in tokens.iter().map(|token| &token.token) {
            match token {
                Token::Whitespace(_) => continue,
                Token::SemiColon => statement_start = true,
                Token::Word(word) if statement_start => {
                    lexicon.leading_words.push(word.value.to_ascii_lowercase());
                    statement_start = false;
                }
                _ => statement_start = false,
            }
            match token {
                Token::Comma | Token::LParen | Token::RParen | Token::SemiColon => run = 0,
                _ => {
                    run += 1;
                    lexicon.longest_run = lexicon.longest_run.max(run);
                }
            }
            match token {
                Token::Word(word) => {
                    let folded = fold_word(&word.value, word.quote_style.is_some());
                    lexicon.add_word(&folded, previous_word.take().filter(|_| after_period));
                    previous_word = Some(folded);
                    after_period = false;
                }
                Token::Period => after_period = true,
                Token::SingleQuotedString(text)
                | Token::DoubleQuotedString(text)
                | Token::TripleSingleQuotedString(text)
                | Token::TripleDoubleQuotedString(text)
                | Token::EscapedStringLiteral(text)
                | Token::UnicodeStringLiteral(text)
                | Token::NationalStringLiteral(text)
                | Token::DollarQuotedString(DollarQuotedString { value: text, .. }) => {
                    // A string may be SQL run later (a DO block, a function
                    // body): its words count as names, but not its `$n`,
                    // which are not this statement's parameters.
                    lexicon
                        .candidates
                        .extend(Self::of_raw_text(text).candidates);
                    previous_word = None;
                    after_period = false;
                }
                Token::Placeholder(placeholder) => {
                    lexicon.add_placeholder(placeholder);
                    previous_word = None;
                }
                _ => {
                    previous_word = None;
                    after_period = false;
                }
            }
        }
        lexicon
    }

    /// Scans text the tokenizer rejects (an unterminated quote or comment):
    /// every run of identifier characters is a word, even inside what may be
    /// a string, and both its folded and its exact spelling are candidates.
    pub(super) fn of_raw_text(text: &str) -> Self {
        let mut lexicon = Self::default();
        let mut previous_word: Option<String> = None;
        let mut after_period = false;
        let mut statement_start = true;
        let mut chars = text.char_indices().peekable();
        while let Some((start, first)) = chars.next() {
            if first == ';' {
                statement_start = true;
            }
            if is_word_char(first) {
                let mut end = start + first.len_utf8();
                while let Some(&(index, next)) = chars.peek() {
                    if !is_word_char(next) {
                        break;
                    }
                    end = index + next.len_utf8();
                    chars.next();
                }
                let word = text.get(start..end).unwrap_or_default();
                if std::mem::take(&mut statement_start) {
                    lexicon.leading_words.push(word.to_ascii_lowercase());
                }
                if let Some(placeholder) = word.strip_prefix('$').filter(|_| first == '$') {
                    lexicon.add_placeholder(&format!("${placeholder}"));
                    previous_word = None;
                    continue;
                }
                let schema = previous_word.take().filter(|_| after_period);
                lexicon.add_word(&fold_word(word, false), schema.clone());
                lexicon.add_word(&fold_word(word, true), schema);
                previous_word = Some(word.to_owned());
                after_period = false;
            } else if first == '.' {
                after_period = true;
            } else if first != '"' && !first.is_whitespace() {
                previous_word = None;
                after_period = false;
            }
        }
        lexicon
    }

    /// The kind of the first statement that runs SQL the analysis cannot
    /// see (`do`, `execute`), if the text has one.
    pub(super) fn opaque_statement(&self) -> Option<&str> {
        self.leading_words
            .iter()
            .map(String::as_str)
            .find(|word| matches!(*word, "do" | "execute"))
    }

    fn add_word(&mut self, word: &str, schema: Option<String>) {
        if let Some(schema) = schema {
            // Both spellings of the schema: the raw scan cannot tell quoted
            // from unquoted.
            for schema in [fold_word(&schema, false), fold_word(&schema, true)] {
                self.candidates.push(NameCandidate {
                    schema: Some(schema),
                    name: word.to_owned(),
                });
            }
        }
        self.candidates.push(NameCandidate {
            schema: None,
            name: word.to_owned(),
        });
    }

    fn add_placeholder(&mut self, placeholder: &str) {
        if let Some(number) = parameter_number(placeholder) {
            self.highest_parameter = self.highest_parameter.max(number);
        }
    }

    /// The first table with encrypted columns the text may name.
    pub(super) fn encrypted_table(&self, schema: &dyn SchemaView) -> Option<TableName> {
        let mut checked = HashSet::new();
        self.candidates
            .iter()
            .filter(|candidate| checked.insert(*candidate))
            .find_map(|candidate| {
                if candidate.schema.is_none() {
                    // Wherever the search path leads, a same-named encrypted table counts.
                    if let Some(encrypted) = schema
                        .encrypted_tables_named(&candidate.name)
                        .into_iter()
                        .next()
                    {
                        return Some(encrypted);
                    }
                }
                let table =
                    schema.resolve_if_known(candidate.schema.as_deref(), &candidate.name)?;
                table.has_encrypted_columns().then_some(table.name)
            })
    }
}

fn is_word_char(character: char) -> bool {
    character.is_alphanumeric() || character == '_' || character == '$' || !character.is_ascii()
}

/// Tokenizes `text` as the parser would.
pub(super) fn tokenize(
    text: &str,
) -> Result<Vec<TokenWithSpan>, sqlparser::tokenizer::TokenizerError> {
    Tokenizer::new(&PostgreSqlDialect {}, text).tokenize_with_location()
}

/// The lexicon of `text`, tokenized if possible.
pub(super) fn scan(text: &str) -> Lexicon {
    match tokenize(text) {
        Ok(tokens) => Lexicon::of_tokens(&tokens),
        Err(_) => Lexicon::of_raw_text(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidates(lexicon: &Lexicon) -> Vec<(Option<&str>, &str)> {
        lexicon
            .candidates
            .iter()
            .map(|candidate| (candidate.schema.as_deref(), candidate.name.as_str()))
            .collect()
    }

    #[test]
    fn tokens_give_folded_names_qualified_pairs_and_the_highest_parameter() {
        let lexicon = scan(r#"SELECT * FROM billing."Accounts" WHERE x = $3 AND 'patients' = $12"#);
        assert_eq!(lexicon.highest_parameter, 12);
        let names = candidates(&lexicon);
        assert!(names.contains(&(Some("billing"), "Accounts")));
        assert!(names.contains(&(None, "select")));
        // Words in strings count (a string may be a function body)…
        assert!(names.contains(&(None, "patients")));
        // …but their `$n` are not this statement's parameters.
        assert_eq!(
            scan("DO $$ SELECT $9 FROM patients $$").highest_parameter,
            0
        );
    }

    #[test]
    fn raw_text_counts_every_word_in_both_spellings() {
        let lexicon = Lexicon::of_raw_text("SELECT 'unterminated FROM Billing.\"Accounts\" $7");
        assert_eq!(lexicon.highest_parameter, 7);
        let names = candidates(&lexicon);
        assert!(names.contains(&(None, "unterminated")));
        assert!(names.contains(&(Some("billing"), "Accounts")));
        assert!(names.contains(&(Some("Billing"), "accounts")));
    }

    #[test]
    fn runs_between_separators_are_measured() {
        let chained = format!("SELECT {}1", "1 + ".repeat(100));
        assert!(scan(&chained).longest_run > 200);
        let listed = format!("SELECT {}1", "1, ".repeat(100));
        assert!(scan(&listed).longest_run < 5);
    }
}

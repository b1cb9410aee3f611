//! Printing results: text for people, or JSON (`--json`).

use serde_json::Value;

/// Where results go.
#[derive(Clone, Copy, Debug)]
pub struct Output {
    json: bool,
}

impl Output {
    /// Text, or JSON when `json`.
    pub fn new(json: bool) -> Self {
        Self { json }
    }

    /// Prints a result: `text` for people, `json` with `--json`. Control
    /// characters in the text (but its line breaks) are escaped: names come
    /// from the database, and a DBA could otherwise hide or rewrite lines
    /// of the administrator's terminal.
    pub fn result(&self, text: impl FnOnce() -> String, json: impl FnOnce() -> Value) {
        if self.json {
            println!("{}", json());
        } else {
            let text = text();
            if !text.is_empty() {
                let lines: Vec<String> = text.trim_end().lines().map(clean).collect();
                println!("{}", lines.join("\n"));
            }
        }
    }

    /// Whether results are JSON.
    pub fn is_json(&self) -> bool {
        self.json
    }
}

/// `text` with control characters, line breaks included, escaped
/// (`\n`, `\u{1b}`): for one value from the database.
pub fn clean(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_owned();
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Lines of a text table, columns padded to their widest cell; each cell
/// is [`clean`]ed, so one value is one line.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|row| row.iter().map(|cell| clean(cell)).collect())
        .collect();
    let rows = rows.as_slice();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    let mut out = vec![line(header.iter().map(|h| (*h).to_owned()).collect())];
    out.extend(rows.iter().map(|row| line(row.clone())));
    out.join("\n")
}

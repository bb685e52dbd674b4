//! Plain text into sentences, for distillation data.
//!
//! Paragraphs are separated by blank lines; inside a paragraph, hard-wrapped lines are joined.
//! A file without any blank line is read as one unit per line (one sentence or paragraph per
//! line). Each unit is split after `.`, `!` or `?` (and any closing quotes or brackets) followed
//! by whitespace and an uppercase letter, digit or opening quote, so abbreviations in lower-case
//! context (`e.g. this`) stay whole. Whitespace is collapsed; pieces shorter than `min_chars`
//! characters are dropped; exact duplicates are kept once, in first-seen order.
//!
//! ```
//! use ember_slm::pipeline::text::sentences;
//! let text = "Call me Ishmael. Some years ago, never mind\nhow long precisely, I went to sea.\n\nIt is a way I have!";
//! assert_eq!(
//!     sentences(text, 5),
//!     vec!["Call me Ishmael.", "Some years ago, never mind how long precisely, I went to sea.", "It is a way I have!"]
//! );
//! ```

use std::collections::HashSet;

/// The sentences of `text` (see the [module docs](self)).
pub fn sentences(text: &str, min_chars: usize) -> Vec<String> {
    let text = text.replace("\r\n", "\n");
    let has_blank =
        text.lines().any(|l| l.trim().is_empty()) && text.lines().filter(|l| !l.trim().is_empty()).count() > 1;
    let units: Vec<String> = if has_blank {
        text.split("\n\n")
            .flat_map(|p| {
                // Paragraph separators may carry spaces: split again on whitespace-only lines.
                let mut out = Vec::new();
                let mut cur = String::new();
                for line in p.lines() {
                    if line.trim().is_empty() {
                        if !cur.is_empty() {
                            out.push(std::mem::take(&mut cur));
                        }
                    } else {
                        cur.push(' ');
                        cur.push_str(line.trim());
                    }
                }
                if !cur.is_empty() {
                    out.push(cur);
                }
                out
            })
            .collect()
    } else {
        text.lines().map(str::to_string).collect()
    };
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for unit in units {
        let unit = unit.split_whitespace().collect::<Vec<_>>().join(" ");
        for s in split_unit(&unit) {
            if s.chars().count() >= min_chars && seen.insert(s.clone()) {
                out.push(s);
            }
        }
    }
    out
}

fn split_unit(unit: &str) -> Vec<String> {
    let chars: Vec<char> = unit.chars().collect();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < chars.len() {
        if matches!(chars[i], '.' | '!' | '?') {
            let mut end = i + 1;
            while end < chars.len() && matches!(chars[end], '.' | '!' | '?' | '"' | '\'' | ')' | ']' | '”' | '’') {
                end += 1;
            }
            let next = chars.get(end + 1).copied();
            let starts_sentence = next
                .is_some_and(|c| c.is_uppercase() || c.is_ascii_digit() || matches!(c, '"' | '\'' | '“' | '‘' | '('));
            if end < chars.len() && chars[end] == ' ' && starts_sentence {
                out.push(chars[start..end].iter().collect::<String>().trim().to_string());
                start = end + 1;
                i = end + 1;
                continue;
            }
            i = end;
            continue;
        }
        i += 1;
    }
    if start < chars.len() {
        out.push(chars[start..].iter().collect::<String>().trim().to_string());
    }
    out.retain(|s| !s.is_empty());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_without_blank_lines_are_units_and_duplicates_go() {
        let text = "first line without a stop\nsecond line. It has two\nfirst line without a stop\n";
        assert_eq!(sentences(text, 3), vec!["first line without a stop", "second line.", "It has two"]);
    }

    #[test]
    fn quotes_abbreviations_and_short_pieces() {
        let text = "\"Stop!\" he cried. Then, e.g. this stays whole. Ok.\n\nA.";
        assert_eq!(sentences(text, 4), vec!["\"Stop!\" he cried.", "Then, e.g. this stays whole."]);
        assert!(sentences("", 1).is_empty());
        assert!(sentences("\n\n  \n", 1).is_empty());
    }
}

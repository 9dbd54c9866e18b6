//! A scalar as the scanner found it (where its text is, how it is written, its value)
//! and the edits that give it another value in the same style.

use std::ops::Range;

/// How a scalar is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Style {
    Plain,
    SingleQuoted,
    DoubleQuoted,
    /// `|` or `>`: `header` is the indicator with its indentation and chomping
    /// characters; `line` the one content line that can hold a reference.
    Block {
        header: Range<usize>,
        literal: bool,
        increment: Option<char>,
        line: Range<usize>,
    },
}

/// A tag written before a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Tag {
    /// Where it starts (a character index).
    pub(super) at: usize,
    /// The parser gives the node as a plain string all the same (`!!str`, `!!binary`…),
    /// unlike a local tag (`!foo`), which ko and Kubernetes do not take as a string.
    pub(super) string_like: bool,
}

/// One scalar as the scanner found it.
#[derive(Debug, Clone)]
pub(super) struct Scalar {
    /// Where its text is, in bytes (a block scalar's indicator only: its edits are
    /// its header and its one line of text).
    pub(super) span: Range<usize>,
    /// Where it starts (a character index), to match it with a simple key.
    pub(super) at: usize,
    pub(super) style: Style,
    /// Its value, when the value could be a reference (a block scalar of several
    /// lines cannot).
    pub(super) value: Option<String>,
    pub(super) tag: Option<Tag>,
}

impl Scalar {
    /// The text edits that make this scalar's value `image`, keeping its style.
    pub(super) fn edits(&self, image: &str) -> Vec<(Range<usize>, String)> {
        match &self.style {
            Style::Plain if plain_safe(image) => vec![(self.span.clone(), image.to_string())],
            Style::Plain | Style::DoubleQuoted => {
                vec![(self.span.clone(), double_quoted(image))]
            }
            Style::SingleQuoted => vec![(
                self.span.clone(),
                format!("'{}'", image.replace('\'', "''")),
            )],
            Style::Block {
                header,
                literal,
                increment,
                line,
            } => {
                // Strip chomping: the value is the image without a line break after it.
                let mut new_header = String::from(if *literal { "|" } else { ">" });
                new_header.extend(increment);
                new_header.push('-');
                vec![
                    (header.clone(), new_header),
                    (line.clone(), image.to_string()),
                ]
            }
        }
    }
}

/// Whether `s` reads back as the same string when written as a plain scalar, in a
/// block or a flow collection.
fn plain_safe(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    !"-?:,[]{}#&*!|>'\"%@`".contains(first)
        && !first.is_whitespace()
        && !s.ends_with(char::is_whitespace)
        && !s.ends_with(':')
        && !s.contains(": ")
        && !s.contains(" #")
        && !s.chars().any(|c| c.is_control() || ",[]{}".contains(c))
}

fn double_quoted(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

//! The text side of `gantry resolve`: finding the `ko://` references in Kubernetes
//! YAML (or JSON) and putting each image's `REPO@sha256:…` in its place.
//!
//! The output must keep every other byte as the user wrote it (comments, quoting,
//! key order, blank lines), so the replacement is done on the text, not by
//! re-serializing parsed documents. Two readings of each file work together:
//!
//! - the YAML parser ([`yaml_serde`]) decides what the documents hold: which string
//!   values are references ([`references`]);
//! - a scanner that follows the same tokenizing rules finds where each scalar sits in
//!   the text and how it is quoted, so that only whole scalar values are replaced,
//!   never a comment or part of a longer string.
//!
//! The parser then checks the result: the new text must parse to exactly the old
//! documents with the references replaced, or [`replace`] fails rather than print
//! something else.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::ops::Range;

use serde::de::{DeserializeSeed, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor};
use sha2::{Digest as _, Sha256};

/// The prefix that marks a string as a Go import path to build (ko's "strict" scheme).
pub const SCHEME: &str = "ko://";

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("{file} is not valid YAML: {cause}\ngantry resolve reads Kubernetes YAML or JSON files (several documents separated by `---`); fix the file, or leave it out of -f")]
    NotYaml {
        file: String,
        cause: yaml_serde::Error,
    },
    #[error("{file}: the ko:// references could not be replaced without changing anything else ({detail}), so nothing was printed; writing each reference on a line of its own (`image: ko://…`) avoids this")]
    Rewrite { file: String, detail: String },
}

/// One input of `gantry resolve`: what messages call it, and its text.
#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub text: String,
}

/// The reference a string value makes, if any: ko looks for the scheme at the very
/// start of the value and ignores surrounding white space after that.
pub fn reference_in(value: &str) -> Option<&str> {
    value.starts_with(SCHEME).then(|| value.trim())
}

/// The distinct `ko://` references among the string values of `source`'s documents
/// (mapping keys included, values under a local tag like `!foo` excluded, as ko
/// does), trimmed, in the order they first appear.
pub fn references(source: &Source) -> Result<Vec<String>, ResolveError> {
    let mut walk = Walk::collecting();
    fingerprints(without_bom(&source.text).1, &mut walk).map_err(|e| not_yaml(source, e))?;
    Ok(walk.found)
}

/// `source`'s text with each scalar whose reference (see [`reference_in`]) is a key
/// of `images` replaced by the image, in the same quoting style; every other byte
/// is kept. Fails when the result would not parse to the same documents with just
/// those strings replaced.
pub fn replace(source: &Source, images: &HashMap<String, String>) -> Result<String, ResolveError> {
    if images.is_empty() {
        return Ok(source.text.clone());
    }
    let rewrite = |detail: String| ResolveError::Rewrite {
        file: source.name.clone(),
        detail,
    };
    let (bom, text) = without_bom(&source.text);
    let scalars = match Scanner::new(text).run() {
        Ok(scalars) => scalars,
        // A file the scanner cannot follow passes as it is if it holds none of the
        // references.
        Err(detail) => {
            verify(source, text, text, images).map_err(|_| rewrite(detail))?;
            return Ok(source.text.clone());
        }
    };
    let mut edits: Vec<(Range<usize>, String)> = Vec::new();
    for scalar in &scalars {
        if scalar.tag.is_some_and(|t| !t.string_like) {
            continue;
        }
        let Some(image) = scalar
            .value
            .as_deref()
            .and_then(reference_in)
            .and_then(|r| images.get(r))
        else {
            continue;
        };
        edits.extend(scalar.edits(image));
    }
    edits.sort_by_key(|(range, _)| range.start);
    let mut out = String::with_capacity(source.text.len());
    out.push_str(bom);
    let mut at = 0;
    for (range, new) in edits {
        out.push_str(&text[at..range.start]);
        out.push_str(&new);
        at = range.end;
    }
    out.push_str(&text[at..]);
    // Also when nothing was replaced: a reference the scanner missed must not pass.
    verify(source, text, &out[bom.len()..], images)?;
    Ok(out)
}

/// A text's byte order mark, kept aside: the parser would count it as a column of
/// indentation on the first line.
fn without_bom(text: &str) -> (&str, &str) {
    match text.strip_prefix('\u{feff}') {
        Some(rest) => ("\u{feff}", rest),
        None => ("", text),
    }
}

/// Checks with the parser that `original` (`source`'s text) with the references in
/// `images` replaced is exactly what `out` holds.
fn verify(
    source: &Source,
    original: &str,
    out: &str,
    images: &HashMap<String, String>,
) -> Result<(), ResolveError> {
    let rewrite = |detail: String| ResolveError::Rewrite {
        file: source.name.clone(),
        detail,
    };
    let expected =
        fingerprints(original, &mut Walk::substituting(images)).map_err(|e| not_yaml(source, e))?;
    let got = fingerprints(out, &mut Walk::plain())
        .map_err(|e| rewrite(format!("the replaced text does not parse: {e}")))?;
    if expected.len() != got.len() {
        return Err(rewrite(format!(
            "{} documents became {}",
            expected.len(),
            got.len()
        )));
    }
    match expected.iter().zip(&got).position(|(a, b)| a != b) {
        Some(n) => Err(rewrite(format!(
            "document {} would change in more than its references",
            n + 1
        ))),
        None => Ok(()),
    }
}

/// Several resolved texts as one YAML stream, as ko prints them: a `---` line between
/// two files (a `...` line before a file that starts with a directive such as
/// `%YAML`, which may only follow the end of a document). A byte order mark may
/// only start the stream, so later files lose theirs.
pub fn join(texts: &[String]) -> String {
    let mut out = String::new();
    for (n, text) in texts.iter().enumerate() {
        if n == 0 {
            out.push_str(text);
            continue;
        }
        let text = without_bom(text).1;
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(if starts_with_directive(text) {
            "...\n"
        } else {
            "---\n"
        });
        out.push_str(text);
    }
    out
}

/// Whether the first line that is not blank or a comment is a directive (`%…`).
fn starts_with_directive(text: &str) -> bool {
    text.lines()
        .map(str::trim_end)
        .find(|l| !l.trim_start().is_empty() && !l.trim_start().starts_with('#'))
        .is_some_and(|l| l.starts_with('%'))
}

fn not_yaml(source: &Source, cause: yaml_serde::Error) -> ResolveError {
    ResolveError::NotYaml {
        file: source.name.clone(),
        cause,
    }
}

// ---------------------------------------------------------------------------------
// The parser's reading: one walk over every value of every document.

/// Parses every document of `text`, feeding each value to `walk`; returns one digest
/// per document of everything it held (each string as `walk` maps it), so two texts
/// can be compared without keeping their values (aliases may expand a small file a
/// hundredfold).
fn fingerprints(text: &str, walk: &mut Walk<'_>) -> Result<Vec<[u8; 32]>, yaml_serde::Error> {
    let mut digests = Vec::new();
    for document in yaml_serde::Deserializer::from_str(text) {
        walk.hasher = Sha256::new();
        Node {
            walk: &mut *walk,
            tagged: false,
        }
        .deserialize(document)?;
        digests.push(std::mem::take(&mut walk.hasher).finalize().into());
    }
    Ok(digests)
}

/// What a walk does with the string values it meets.
enum Mode<'m> {
    /// Records the references.
    Collect,
    /// Hashes each reference that `images` maps as its image.
    Substitute(&'m HashMap<String, String>),
    /// Hashes what is there.
    Plain,
}

struct Walk<'m> {
    mode: Mode<'m>,
    hasher: Sha256,
    found: Vec<String>,
    seen: HashSet<String>,
}

impl<'m> Walk<'m> {
    fn new(mode: Mode<'m>) -> Self {
        Walk {
            mode,
            hasher: Sha256::new(),
            found: Vec::new(),
            seen: HashSet::new(),
        }
    }

    fn collecting() -> Self {
        Walk::new(Mode::Collect)
    }

    fn substituting(images: &'m HashMap<String, String>) -> Self {
        Walk::new(Mode::Substitute(images))
    }

    fn plain() -> Self {
        Walk::new(Mode::Plain)
    }

    /// One value: a kind byte, then its length and bytes, so no two different
    /// documents feed the same bytes.
    fn feed(&mut self, kind: u8, bytes: &[u8]) {
        self.hasher.update([kind]);
        self.hasher.update((bytes.len() as u64).to_le_bytes());
        self.hasher.update(bytes);
    }

    /// A string value; `tagged` when it carries a local tag (`!foo`), which makes it
    /// something other than a plain string to Kubernetes and to ko.
    fn string(&mut self, value: &str, tagged: bool) {
        let reference = if tagged { None } else { reference_in(value) };
        let shown = match (&self.mode, reference) {
            (Mode::Collect, Some(r)) => {
                if self.seen.insert(r.to_string()) {
                    self.found.push(r.to_string());
                }
                value
            }
            (Mode::Substitute(images), Some(r)) => images.get(r).map_or(value, String::as_str),
            _ => value,
        }
        .to_string();
        self.feed(b's', shown.as_bytes());
    }
}

/// One node of a document, walked through serde: any value the parser gives.
struct Node<'w, 'm> {
    walk: &'w mut Walk<'m>,
    /// The node is the content of a local tag (`!foo value`).
    tagged: bool,
}

impl<'de> DeserializeSeed<'de> for Node<'_, '_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<(), E> {
        self.walk.feed(b'b', &[u8::from(v)]);
        Ok(())
    }

    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        self.walk.feed(b'i', &v.to_le_bytes());
        Ok(())
    }

    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        self.walk.feed(b'u', &v.to_le_bytes());
        Ok(())
    }

    fn visit_i128<E>(self, v: i128) -> Result<(), E> {
        self.walk.feed(b'I', &v.to_le_bytes());
        Ok(())
    }

    fn visit_u128<E>(self, v: u128) -> Result<(), E> {
        self.walk.feed(b'U', &v.to_le_bytes());
        Ok(())
    }

    fn visit_f64<E>(self, v: f64) -> Result<(), E> {
        self.walk.feed(b'f', &v.to_bits().to_le_bytes());
        Ok(())
    }

    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        self.walk.string(v, self.tagged);
        Ok(())
    }

    fn visit_bytes<E>(self, v: &[u8]) -> Result<(), E> {
        self.walk.feed(b'y', v);
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        self.walk.feed(b'n', &[]);
        Ok(())
    }

    fn visit_none<E>(self) -> Result<(), E> {
        self.walk.feed(b'n', &[]);
        Ok(())
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        de.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.walk.feed(b'[', &[]);
        while seq
            .next_element_seed(Node {
                walk: &mut *self.walk,
                tagged: false,
            })?
            .is_some()
        {}
        self.walk.feed(b']', &[]);
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.walk.feed(b'{', &[]);
        while map
            .next_key_seed(Node {
                walk: &mut *self.walk,
                tagged: false,
            })?
            .is_some()
        {
            map.next_value_seed(Node {
                walk: &mut *self.walk,
                tagged: false,
            })?;
        }
        self.walk.feed(b'}', &[]);
        Ok(())
    }

    /// A value under a local tag: the parser hands it over as an enum variant named
    /// by the tag.
    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<(), A::Error> {
        let (tag, content) = data.variant::<String>()?;
        self.walk.feed(b't', tag.as_bytes());
        content.newtype_variant_seed(Node {
            walk: self.walk,
            tagged: true,
        })
    }
}

// ---------------------------------------------------------------------------------
// The scanner's reading: where each scalar is in the text.

/// How a scalar is written.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Style {
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
struct Tag {
    /// Where it starts (a character index).
    at: usize,
    /// The parser gives the node as a plain string all the same (`!!str`, `!!binary`…),
    /// unlike a local tag (`!foo`), which ko and Kubernetes do not take as a string.
    string_like: bool,
}

/// One scalar as the scanner found it.
#[derive(Debug, Clone)]
struct Scalar {
    /// Where its text is, in bytes (a block scalar's indicator only: its edits are
    /// its header and its one line of text).
    span: Range<usize>,
    /// Where it starts (a character index), to match it with a simple key.
    at: usize,
    style: Style,
    /// Its value, when the value could be a reference (a block scalar of several
    /// lines cannot).
    value: Option<String>,
    tag: Option<Tag>,
}

impl Scalar {
    /// The text edits that make this scalar's value `image`, keeping its style.
    fn edits(&self, image: &str) -> Vec<(Range<usize>, String)> {
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

fn is_blank(c: Option<char>) -> bool {
    matches!(c, Some(' ' | '\t'))
}

fn is_break(c: Option<char>) -> bool {
    matches!(c, Some('\r' | '\n' | '\u{85}' | '\u{2028}' | '\u{2029}'))
}

fn is_breakz(c: Option<char>) -> bool {
    c.is_none() || is_break(c)
}

fn is_blankz(c: Option<char>) -> bool {
    is_blank(c) || is_breakz(c)
}

/// Anchor and alias names: letters, digits, `_` and `-`, as the parser takes them.
fn is_name(c: Option<char>) -> bool {
    c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// A potential implicit key (`key: value`): where the node that may turn out to be a
/// key began.
#[derive(Debug, Clone, Copy, Default)]
struct SimpleKey {
    possible: bool,
    at: usize,
    byte: usize,
    line: usize,
    col: usize,
}

/// The scanner follows the parser's tokenizing rules (indentation levels, implicit
/// keys, flow levels, the ends of plain and block scalars) and keeps only what it
/// needs: the scalars.
struct Scanner<'t> {
    text: &'t str,
    chars: Vec<(usize, char)>,
    i: usize,
    line: usize,
    col: usize,
    flow_level: usize,
    indent: isize,
    indents: Vec<isize>,
    key_allowed: bool,
    /// One per flow level, the block level first.
    keys: Vec<SimpleKey>,
    tag: Option<Tag>,
    scalars: Vec<Scalar>,
}

impl<'t> Scanner<'t> {
    fn new(text: &'t str) -> Self {
        Scanner {
            text,
            chars: text.char_indices().collect(),
            i: 0,
            line: 0,
            col: 0,
            flow_level: 0,
            indent: -1,
            indents: Vec::new(),
            key_allowed: true,
            keys: vec![SimpleKey::default()],
            tag: None,
            scalars: Vec::new(),
        }
    }

    fn ch(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.i + ahead).map(|&(_, c)| c)
    }

    /// The byte offset of character `i` (the text's length at the end).
    fn byte(&self, i: usize) -> usize {
        self.chars.get(i).map_or(self.text.len(), |&(b, _)| b)
    }

    fn starts(&self, s: &str) -> bool {
        s.chars().enumerate().all(|(n, c)| self.ch(n) == Some(c))
    }

    fn advance(&mut self) {
        self.i += 1;
        self.col += 1;
    }

    /// Steps over one line break (CR LF counts as one); returns it as the parser
    /// normalizes it.
    fn skip_line(&mut self) -> char {
        let c = self.ch(0);
        if c == Some('\r') && self.ch(1) == Some('\n') {
            self.i += 2;
        } else if is_break(c) {
            self.i += 1;
        }
        self.line += 1;
        self.col = 0;
        // Line and paragraph separators stay; every other break reads as LF.
        match c {
            Some('\u{2028}') => '\u{2028}',
            Some('\u{2029}') => '\u{2029}',
            _ => '\n',
        }
    }

    fn at_document_marker(&self) -> bool {
        self.col == 0 && (self.starts("---") || self.starts("...")) && is_blankz(self.ch(3))
    }

    fn run(mut self) -> Result<Vec<Scalar>, String> {
        loop {
            self.skip_to_token();
            self.forget_stale_keys();
            self.unroll(self.col as isize);
            let Some(c) = self.ch(0) else {
                return Ok(self.scalars);
            };
            if self.col == 0 && c == '%' {
                // A directive: the rest of its line.
                self.unroll(-1);
                self.remove_key();
                self.key_allowed = false;
                while !is_breakz(self.ch(0)) {
                    self.advance();
                }
                continue;
            }
            if self.at_document_marker() {
                self.unroll(-1);
                self.remove_key();
                self.key_allowed = false;
                self.tag = None;
                for _ in 0..3 {
                    self.advance();
                }
                continue;
            }
            let next = self.ch(1);
            match c {
                '[' | '{' => {
                    self.save_key();
                    self.tag = None;
                    self.flow_level += 1;
                    self.keys.push(SimpleKey::default());
                    self.key_allowed = true;
                    self.advance();
                }
                ']' | '}' => {
                    self.remove_key();
                    if self.flow_level > 0 {
                        self.flow_level -= 1;
                        self.keys.pop();
                    }
                    self.key_allowed = false;
                    self.advance();
                }
                ',' => {
                    self.remove_key();
                    self.key_allowed = true;
                    self.advance();
                }
                '-' if is_blankz(next) => {
                    self.roll(self.col);
                    self.remove_key();
                    self.key_allowed = true;
                    self.tag = None;
                    self.advance();
                }
                '?' if self.flow_level > 0 || is_blankz(next) => {
                    self.roll(self.col);
                    self.remove_key();
                    self.key_allowed = self.flow_level == 0;
                    self.tag = None;
                    self.advance();
                }
                ':' if self.flow_level > 0 || is_blankz(next) => self.value_indicator(),
                '*' | '&' => {
                    self.save_key();
                    self.key_allowed = false;
                    self.advance();
                    while is_name(self.ch(0)) {
                        self.advance();
                    }
                    if c == '*' {
                        self.tag = None;
                    }
                }
                '!' => {
                    self.save_key();
                    self.key_allowed = false;
                    self.scan_tag();
                }
                '|' | '>' if self.flow_level == 0 => {
                    self.remove_key();
                    self.key_allowed = true;
                    self.block_scalar(c == '|');
                }
                '\'' | '"' => {
                    self.save_key();
                    self.key_allowed = false;
                    self.quoted(c == '\'')?;
                }
                _ if self.plain_starts(c, next) => {
                    self.save_key();
                    self.key_allowed = false;
                    self.plain()?;
                }
                _ => {
                    return Err(format!(
                        "unexpected {c:?} on line {}, column {}",
                        self.line + 1,
                        self.col + 1
                    ))
                }
            }
        }
    }

    /// Skips white space, comments and line breaks up to the next token.
    fn skip_to_token(&mut self) {
        loop {
            if self.col == 0 && self.ch(0) == Some('\u{feff}') {
                self.advance();
            }
            while self.ch(0) == Some(' ')
                || ((self.flow_level > 0 || !self.key_allowed) && self.ch(0) == Some('\t'))
            {
                self.advance();
            }
            if self.ch(0) == Some('#') {
                while !is_breakz(self.ch(0)) {
                    self.advance();
                }
            }
            if !is_break(self.ch(0)) {
                return;
            }
            self.skip_line();
            if self.flow_level == 0 {
                self.key_allowed = true;
            }
        }
    }

    /// An implicit key must fit on one line and in 1024 bytes.
    fn forget_stale_keys(&mut self) {
        let (line, byte) = (self.line, self.byte(self.i));
        for key in &mut self.keys {
            if key.possible && (key.line < line || key.byte + 1024 < byte) {
                key.possible = false;
            }
        }
    }

    fn save_key(&mut self) {
        if self.key_allowed {
            let key = SimpleKey {
                possible: true,
                at: self.i,
                byte: self.byte(self.i),
                line: self.line,
                col: self.col,
            };
            if let Some(slot) = self.keys.last_mut() {
                *slot = key;
            }
        }
    }

    fn remove_key(&mut self) {
        if let Some(slot) = self.keys.last_mut() {
            slot.possible = false;
        }
    }

    /// A block collection starts at `col` if that is deeper than the current one.
    fn roll(&mut self, col: usize) {
        if self.flow_level == 0 && self.indent < col as isize {
            self.indents.push(self.indent);
            self.indent = col as isize;
        }
    }

    /// Block collections deeper than `col` end.
    fn unroll(&mut self, col: isize) {
        if self.flow_level == 0 {
            while self.indent > col {
                self.indent = self.indents.pop().unwrap_or(-1);
            }
        }
    }

    /// `:` — the node before it, if it could be a key, becomes one.
    fn value_indicator(&mut self) {
        let key = self.keys.last().copied().unwrap_or_default();
        if key.possible {
            self.roll(key.col);
            // A tag written before the key's line belongs to the mapping, not to the key.
            if let Some(scalar) = self.scalars.last_mut() {
                if scalar.at >= key.at && scalar.tag.is_some_and(|t| t.at < key.at) {
                    scalar.tag = None;
                }
            }
            self.remove_key();
            self.key_allowed = false;
        } else {
            self.roll(self.col);
            self.key_allowed = self.flow_level == 0;
        }
        self.tag = None;
        self.advance();
    }

    fn scan_tag(&mut self) {
        let start = self.i;
        self.advance();
        if self.ch(0) == Some('<') {
            while !is_blankz(self.ch(0)) && self.ch(0) != Some('>') {
                self.advance();
            }
            if self.ch(0) == Some('>') {
                self.advance();
            }
        } else {
            while self
                .ch(0)
                .is_some_and(|c| c.is_ascii_alphanumeric() || "-_;/?:@&=+$.%!~*'()".contains(c))
            {
                self.advance();
            }
        }
        let text: String = self.chars[start..self.i].iter().map(|&(_, c)| c).collect();
        let core = |name: &str| matches!(name, "bool" | "int" | "float" | "null");
        let string_like = match (text.strip_prefix("!!"), text.strip_prefix("!<")) {
            (Some(name), _) => !name.is_empty() && !core(name),
            (_, Some(uri)) => {
                !uri.starts_with('!')
                    && uri
                        .trim_end_matches('>')
                        .strip_prefix("tag:yaml.org,2002:")
                        .is_none_or(|name| !core(name))
            }
            _ => false,
        };
        self.tag = Some(Tag {
            at: start,
            string_like,
        });
    }

    fn plain_starts(&self, c: char, next: Option<char>) -> bool {
        !(is_blankz(Some(c)) || "-?:,[]{}#&*!|>'\"%@`".contains(c))
            || (c == '-' && !is_blank(next))
            || (self.flow_level == 0 && (c == '?' || c == ':') && !is_blankz(next))
    }

    /// Records the scalar written from character `start` to character `end`.
    fn push(
        &mut self,
        (start, end): (usize, usize),
        style: Style,
        value: Option<String>,
        tag: Option<Tag>,
    ) {
        let span = self.byte(start)..self.byte(end);
        self.scalars.push(Scalar {
            span,
            at: start,
            style,
            value,
            tag,
        });
    }

    fn plain(&mut self) -> Result<(), String> {
        let tag = self.tag.take();
        let start = self.i;
        let mut end = self.i;
        let indent = self.indent + 1;
        let mut value = String::new();
        let mut folding = Folding::default();
        loop {
            if self.at_document_marker() || self.ch(0) == Some('#') {
                break;
            }
            while let Some(c) = self.ch(0).filter(|&c| !is_blankz(Some(c))) {
                let next = self.ch(1);
                if self.flow_level > 0
                    && c == ':'
                    && matches!(next, Some(',' | '?' | '[' | ']' | '{' | '}'))
                {
                    return Err(format!("unexpected ':' on line {}", self.line + 1));
                }
                if (c == ':' && is_blankz(next))
                    || (self.flow_level > 0 && matches!(c, ',' | '[' | ']' | '{' | '}'))
                {
                    break;
                }
                folding.flush(&mut value);
                value.push(c);
                self.advance();
                end = self.i;
            }
            if !(is_blank(self.ch(0)) || is_break(self.ch(0))) {
                break;
            }
            self.blanks(&mut folding);
            if self.flow_level == 0 && (self.col as isize) < indent {
                break;
            }
        }
        self.push((start, end), Style::Plain, Some(value), tag);
        if folding.leading_blanks {
            self.key_allowed = true;
        }
        Ok(())
    }

    /// White space and line breaks inside a flow scalar, recorded for folding.
    fn blanks(&mut self, folding: &mut Folding) {
        while is_blank(self.ch(0)) || is_break(self.ch(0)) {
            if let Some(c) = self.ch(0).filter(|&c| is_blank(Some(c))) {
                if !folding.leading_blanks {
                    folding.spaces.push(c);
                }
                self.advance();
            } else {
                let nl = self.skip_line();
                if folding.leading_blanks {
                    folding.trailing_breaks.push(nl);
                } else {
                    folding.spaces.clear();
                    folding.leading_break = Some(nl);
                    folding.leading_blanks = true;
                }
            }
        }
    }

    fn quoted(&mut self, single: bool) -> Result<(), String> {
        let tag = self.tag.take();
        let start = self.i;
        let quote = if single { '\'' } else { '"' };
        self.advance();
        let mut value = String::new();
        let mut folding = Folding::default();
        loop {
            if self.ch(0).is_none() {
                return Err("a quoted scalar is not closed".into());
            }
            folding.leading_blanks = false;
            while let Some(c) = self.ch(0).filter(|&c| !is_blankz(Some(c))) {
                if single && c == '\'' && self.ch(1) == Some('\'') {
                    value.push('\'');
                    self.advance();
                    self.advance();
                } else if c == quote {
                    break;
                } else if !single && c == '\\' && is_break(self.ch(1)) {
                    // An escaped line break joins the lines without a space.
                    self.advance();
                    self.skip_line();
                    folding.leading_blanks = true;
                    break;
                } else if !single && c == '\\' {
                    value.push(self.escape()?);
                } else {
                    value.push(c);
                    self.advance();
                }
            }
            if self.ch(0) == Some(quote) {
                self.advance();
                break;
            }
            self.blanks(&mut folding);
            folding.flush(&mut value);
        }
        let style = if single {
            Style::SingleQuoted
        } else {
            Style::DoubleQuoted
        };
        self.push((start, self.i), style, Some(value), tag);
        Ok(())
    }

    /// One escape sequence of a double-quoted scalar, from its backslash.
    fn escape(&mut self) -> Result<char, String> {
        let code = self.ch(1).ok_or("a quoted scalar ends in a backslash")?;
        let simple = match code {
            '0' => Some('\0'),
            'a' => Some('\x07'),
            'b' => Some('\x08'),
            't' | '\t' => Some('\t'),
            'n' => Some('\n'),
            'v' => Some('\x0b'),
            'f' => Some('\x0c'),
            'r' => Some('\r'),
            'e' => Some('\x1b'),
            ' ' => Some(' '),
            '"' => Some('"'),
            '/' => Some('/'),
            '\'' => Some('\''),
            '\\' => Some('\\'),
            'N' => Some('\u{85}'),
            '_' => Some('\u{a0}'),
            'L' => Some('\u{2028}'),
            'P' => Some('\u{2029}'),
            _ => None,
        };
        self.advance();
        self.advance();
        if let Some(c) = simple {
            return Ok(c);
        }
        let digits = match code {
            'x' => 2,
            'u' => 4,
            'U' => 8,
            other => return Err(format!("unknown escape \\{other}")),
        };
        let mut n = 0u32;
        for _ in 0..digits {
            let d = self
                .ch(0)
                .and_then(|c| c.to_digit(16))
                .ok_or("a bad hexadecimal escape")?;
            n = n * 16 + d;
            self.advance();
        }
        char::from_u32(n).ok_or_else(|| format!("escape \\{code}{n:x} is no character"))
    }

    fn block_scalar(&mut self, literal: bool) {
        let tag = self.tag.take();
        let start = self.i;
        self.advance();
        let mut increment = None;
        let is_increment = |c: Option<char>| c.filter(|c| ('1'..='9').contains(c));
        if matches!(self.ch(0), Some('+' | '-')) {
            self.advance();
            increment = is_increment(self.ch(0));
            if increment.is_some() {
                self.advance();
            }
        } else if let Some(d) = is_increment(self.ch(0)) {
            increment = Some(d);
            self.advance();
            if matches!(self.ch(0), Some('+' | '-')) {
                self.advance();
            }
        }
        let header = self.byte(start)..self.byte(self.i);
        while is_blank(self.ch(0)) {
            self.advance();
        }
        if self.ch(0) == Some('#') {
            while !is_breakz(self.ch(0)) {
                self.advance();
            }
        }
        if is_break(self.ch(0)) {
            self.skip_line();
        }
        let mut indent = match increment.and_then(|d| d.to_digit(10)) {
            Some(n) if self.indent >= 0 => self.indent as usize + n as usize,
            Some(n) => n as usize,
            None => 0,
        };
        let leading = self.block_breaks(&mut indent);
        let mut lines: Vec<Range<usize>> = Vec::new();
        while self.col == indent && self.ch(0).is_some() {
            let from = self.i;
            while !is_breakz(self.ch(0)) {
                self.advance();
            }
            lines.push(self.byte(from)..self.byte(self.i));
            if self.ch(0).is_none() {
                break;
            }
            self.skip_line();
            self.block_breaks(&mut indent);
        }
        let text = self.text;
        let filled: Vec<&Range<usize>> = lines
            .iter()
            .filter(|r| !text[(*r).clone()].trim().is_empty())
            .collect();
        // Only a block whose first line is its one line of text can hold a reference.
        let one_line = match (leading, filled.as_slice(), lines.first()) {
            (0, [only], Some(first)) if *only == first => Some(first.clone()),
            _ => None,
        };
        let value = one_line.as_ref().map(|r| text[r.clone()].to_string());
        let style = Style::Block {
            header,
            literal,
            increment,
            line: one_line.unwrap_or(0..0),
        };
        self.push((start, start + 1), style, value, tag);
    }

    /// Empty lines and indentation inside a block scalar; fixes the indentation from
    /// the first line of text when the header does not give it. Returns how many line
    /// breaks it passed.
    fn block_breaks(&mut self, indent: &mut usize) -> usize {
        let mut max = 0;
        let mut breaks = 0;
        loop {
            while (*indent == 0 || self.col < *indent) && self.ch(0) == Some(' ') {
                self.advance();
            }
            max = max.max(self.col);
            if !is_break(self.ch(0)) {
                break;
            }
            self.skip_line();
            breaks += 1;
        }
        if *indent == 0 {
            *indent = max.max((self.indent + 1).max(1) as usize);
        }
        breaks
    }
}

/// How the line breaks and spaces inside a flow scalar fold into its value.
#[derive(Default)]
struct Folding {
    leading_blanks: bool,
    leading_break: Option<char>,
    trailing_breaks: String,
    spaces: String,
}

impl Folding {
    /// Adds what the white space since the last text stands for: one line break is a
    /// space, n breaks are n-1 newlines, spaces within a line stay.
    fn flush(&mut self, value: &mut String) {
        if self.leading_blanks {
            match self.leading_break.take() {
                Some('\n') if self.trailing_breaks.is_empty() => value.push(' '),
                Some('\n') => value.push_str(&self.trailing_breaks),
                Some(other) => {
                    value.push(other);
                    value.push_str(&self.trailing_breaks);
                }
                None => value.push_str(&self.trailing_breaks),
            }
            self.trailing_breaks.clear();
            self.leading_blanks = false;
        } else {
            value.push_str(&self.spaces);
        }
        self.spaces.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "registry.example/app-a@sha256:aaaa";
    const B: &str = "registry.example/app-b@sha256:bbbb";

    fn source(text: &str) -> Source {
        Source {
            name: "config/app.yaml".into(),
            text: text.into(),
        }
    }

    fn images() -> HashMap<String, String> {
        HashMap::from([
            ("ko://example.com/app/cmd/a".to_string(), A.to_string()),
            ("ko://example.com/app/cmd/b".to_string(), B.to_string()),
        ])
    }

    fn refs(text: &str) -> Vec<String> {
        references(&source(text)).expect("references")
    }

    fn resolved(text: &str) -> String {
        replace(&source(text), &images()).expect("replace")
    }

    #[test]
    fn references_are_string_values_and_keys_starting_with_the_scheme() {
        let text = "\
# ko://example.com/app/cmd/comment is a comment
kind: Pod
spec:
  containers:
  - image: ko://example.com/app/cmd/a
    args: [\"see ko://example.com/x\", ' ko://example.com/leading-space']
  - image: \"ko://example.com/app/cmd/b \"
    env: !foo ko://example.com/local-tag
    other: !!str ko://example.com/core-tag
ko://example.com/key: 1
---
again: ko://example.com/app/cmd/a
";
        assert_eq!(
            refs(text),
            [
                "ko://example.com/app/cmd/a",
                "ko://example.com/app/cmd/b",
                "ko://example.com/core-tag",
                "ko://example.com/key",
            ]
        );
    }

    #[test]
    fn aliases_repeat_a_reference_without_adding_one() {
        assert_eq!(
            refs("a: &img ko://example.com/app/cmd/a\nb: *img\n"),
            ["ko://example.com/app/cmd/a"]
        );
    }

    #[test]
    fn a_file_that_is_not_yaml_is_named() {
        let err = references(&source("a: [1, 2\nb: c\n")).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, ResolveError::NotYaml { .. }));
        assert!(
            text.starts_with("config/app.yaml is not valid YAML:"),
            "{text}"
        );
        assert!(text.contains("line"), "names the place: {text}");
    }

    #[test]
    fn plain_references_are_replaced_and_every_other_byte_kept() {
        let text = "\
# The app. ko://example.com/app/cmd/a stays in this comment.
apiVersion: apps/v1   # trailing comment
kind: Deployment
spec:
  template:
    spec:
      containers:
        - name: a
          image: ko://example.com/app/cmd/a # keep me
          args:
          - ko://example.com/app/cmd/b
          - 'text with ko://example.com/app/cmd/a inside'
";
        let want = text
            .replace(
                "image: ko://example.com/app/cmd/a #",
                &format!("image: {A} #"),
            )
            .replace("- ko://example.com/app/cmd/b", &format!("- {B}"));
        assert_eq!(resolved(text), want);
    }

    #[test]
    fn quoted_references_keep_their_quotes() {
        let text = "a: 'ko://example.com/app/cmd/a'\nb: \"ko://example.com/app/cmd/b\"\n";
        assert_eq!(resolved(text), format!("a: '{A}'\nb: \"{B}\"\n"));
    }

    #[test]
    fn json_stays_json() {
        let text = "{\n  \"image\": \"ko://example.com/app/cmd/a\",\n  \"n\": [1, \"ko://example.com/app/cmd/b\"]\n}\n";
        let out = resolved(text);
        assert_eq!(
            out,
            format!("{{\n  \"image\": \"{A}\",\n  \"n\": [1, \"{B}\"]\n}}\n")
        );
        let v: serde_json::Value = serde_json::from_str(&out).expect("still JSON");
        assert_eq!(v["image"], A);
    }

    #[test]
    fn flow_collections_keys_and_multi_document_streams() {
        let text = "\
%YAML 1.1
---
list: [ko://example.com/app/cmd/a, \"ko://example.com/app/cmd/b\", other]
map: {x: ko://example.com/app/cmd/a, y: 2}
...
---
ko://example.com/app/cmd/b: key
? ko://example.com/app/cmd/a
: explicit
";
        let want = text
            .replace("[ko://example.com/app/cmd/a,", &format!("[{A},"))
            .replace("\"ko://example.com/app/cmd/b\",", &format!("\"{B}\","))
            .replace("x: ko://example.com/app/cmd/a,", &format!("x: {A},"))
            .replace("ko://example.com/app/cmd/b: key", &format!("{B}: key"))
            .replace("? ko://example.com/app/cmd/a", &format!("? {A}"));
        assert_eq!(resolved(text), want);
    }

    #[test]
    fn anchors_are_replaced_where_they_are_written_and_aliases_follow() {
        let text = "a: &img ko://example.com/app/cmd/a\nb: *img\n";
        assert_eq!(resolved(text), format!("a: &img {A}\nb: *img\n"));
    }

    #[test]
    fn tags_decide_whether_a_value_is_a_string() {
        let text = "\
a: !!str ko://example.com/app/cmd/a
b: !local ko://example.com/app/cmd/b
c: !!str
  ko://example.com/app/cmd/b
";
        let want = format!("a: !!str {A}\nb: !local ko://example.com/app/cmd/b\nc: !!str\n  {B}\n");
        assert_eq!(resolved(text), want);
        // A tag on the line before a mapping is the mapping's, not its first key's.
        let text = "!!map\nko://example.com/app/cmd/a: 1\n";
        assert_eq!(resolved(text), format!("!!map\n{A}: 1\n"));
    }

    #[test]
    fn a_one_line_block_scalar_becomes_the_image_without_a_line_break() {
        let text = "\
a: |  # the image
  ko://example.com/app/cmd/a
b: >+
    ko://example.com/app/cmd/b

c: |
  ko://example.com/app/cmd/a
  and more text
d: 1
";
        let want = format!(
            "a: |-  # the image\n  {A}\nb: >-\n    {B}\n\nc: |\n  ko://example.com/app/cmd/a\n  and more text\nd: 1\n"
        );
        assert_eq!(resolved(text), want);
    }

    #[test]
    fn block_scalar_ends_are_found_by_indentation() {
        // The reference after the scripts is a value, the ones inside them are text.
        let text = "\
script: |
  echo ko://example.com/app/cmd/a
  ko://example.com/app/cmd/a
list:
- |
    ko://example.com/app/cmd/b
    ko://example.com/app/cmd/b
- ko://example.com/app/cmd/b
empty: |
next: ko://example.com/app/cmd/a
";
        let want = text
            .replace(
                "- ko://example.com/app/cmd/b\nempty",
                &format!("- {B}\nempty"),
            )
            .replace("next: ko://example.com/app/cmd/a", &format!("next: {A}"));
        assert_eq!(resolved(text), want);
    }

    #[test]
    fn white_space_around_a_reference_in_quotes() {
        // ko trims after matching the scheme, so a leading space means no reference.
        let text = "a: \"ko://example.com/app/cmd/a  \"\nb: ' ko://example.com/app/cmd/b'\n";
        assert_eq!(
            resolved(text),
            format!("a: \"{A}\"\nb: ' ko://example.com/app/cmd/b'\n")
        );
    }

    #[test]
    fn escapes_and_folded_lines_in_quoted_scalars_are_read_as_the_parser_reads_them() {
        let text = "a: \"ko:\\/\\/example.com/app/cmd/a\"\nb: \"ko://example.com/\\\n   app/cmd/b\"\nc: 'ko://example.com/app/cmd/a\n   trailing'\n";
        assert_eq!(
            resolved(text),
            format!("a: \"{A}\"\nb: \"{B}\"\nc: 'ko://example.com/app/cmd/a\n   trailing'\n")
        );
    }

    #[test]
    fn a_multi_line_plain_scalar_is_one_value() {
        let text = "a: ko://example.com/app/cmd/a\n  continued\nb: ko://example.com/app/cmd/b\n";
        assert_eq!(
            resolved(text),
            format!("a: ko://example.com/app/cmd/a\n  continued\nb: {B}\n")
        );
    }

    #[test]
    fn line_endings_and_byte_order_mark_are_kept() {
        // The parser alone would take the mark for indentation and fail on line 2.
        let text = "\u{feff}a: ko://example.com/app/cmd/a\r\nb: \"x\"\r\n";
        assert_eq!(refs(text), ["ko://example.com/app/cmd/a"]);
        assert_eq!(resolved(text), format!("\u{feff}a: {A}\r\nb: \"x\"\r\n"));
    }

    #[test]
    fn references_without_an_image_are_left_alone() {
        let text = "a: ko://example.com/other\nb: ko://example.com/app/cmd/a\n";
        assert_eq!(
            resolved(text),
            format!("a: ko://example.com/other\nb: {A}\n")
        );
        // No images: the text as it was, even one the scanner would not follow.
        assert_eq!(
            replace(&source("a: b\n"), &HashMap::new()).unwrap(),
            "a: b\n"
        );
    }

    #[test]
    fn an_image_that_cannot_be_plain_is_quoted() {
        let images = HashMap::from([(
            "ko://example.com/app/cmd/a".to_string(),
            "odd: [image]".to_string(),
        )]);
        let out = replace(&source("a: ko://example.com/app/cmd/a\n"), &images).unwrap();
        assert_eq!(out, "a: \"odd: [image]\"\n");
    }

    #[test]
    fn the_parser_rejects_a_result_that_changed_more_than_the_references() {
        let src = source("a: ko://example.com/app/cmd/a\nb: 1\n");
        let images = images();
        let ok = format!("a: {A}\nb: 1\n");
        assert!(verify(&src, &src.text, &ok, &images).is_ok());
        for wrong in [
            format!("a: {A}\nb: 2\n"),
            "a: ko://example.com/app/cmd/a\nb: 1\n".to_string(),
            format!("a: {A}\nb: 1\n---\nc: 1\n"),
            format!("a: [{A}\nb: 1\n"),
        ] {
            let err = verify(&src, &src.text, &wrong, &images).unwrap_err();
            assert!(
                matches!(&err, ResolveError::Rewrite { file, .. } if file == "config/app.yaml"),
                "{wrong:?}: {err}"
            );
        }
    }

    /// Kubernetes configuration in the shapes it is written in.
    const CORPUS: &str = r#"# Manifests for a demo.
apiVersion: v1
kind: Namespace
metadata:
  name: demo
  labels: {team: platform, "app.kubernetes.io/part-of": demo}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  annotations:
    description: >
      A folded description
      over two lines.
spec:
  replicas: 2
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels: &labels
        app: web
        tier: frontend
    spec:
      initContainers:
      - name: init
        image: busybox
        command: ["sh", "-c", 'echo "starting"']
      containers:
        - name: web
          image: web-image   # the image
          args:
            - --port=8080
            - "--verbose"
            - >-
              --long-flag-value
          ports:
          - containerPort: 8080
            protocol: TCP
          env:
          - {name: MODE, value: production}
          - name: LABELS
            value: "tier=frontend,app=web"
          readinessProbe:
            httpGet: {path: /healthz, port: 8080}
            periodSeconds: 10
          resources:
            limits: {cpu: 500m, memory: 128Mi}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: scripts
data:
  run.sh: |
    #!/bin/sh
    set -e
    exec web-server --config /etc/web.yaml
  web.yaml: |-
    listen: :8080
    upstreams: [a, b]
  single: 'it''s quoted'
  escaped: "tab\there"
  multi: "first
    second"
  plain-multi: first
    second
? complex-key
: complex-value
--- # A list at the top.
- &first item-one
- *first
- [nested, [deeper, list], {k: v}]
- key: value
  other: value2
-   - inner-a
    - inner-b
- !!str tagged-string
- !custom local-tag
...
%YAML 1.1
---
!!map
kind: List
items: []
"#;

    #[test]
    fn every_scalar_of_real_yaml_can_become_a_reference_and_be_replaced() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files = vec![
            ("corpus".to_string(), CORPUS.to_string()),
            (
                "json".to_string(),
                r#"{"kind": "Pod", "spec": {"containers": [{"name": "a", "image": "img", "args": ["x", 1, true, null]}]}}"#
                    .to_string(),
            ),
        ];
        for name in [
            "action.yml",
            ".github/workflows/ci.yml",
            ".github/workflows/release.yml",
            ".github/workflows/example-publish.yml",
        ] {
            if let Ok(text) = std::fs::read_to_string(root.join(name)) {
                files.push((name.to_string(), text));
            }
        }
        let image = "registry.example/img@sha256:0";
        for (name, text) in files {
            let scalars = Scanner::new(&text)
                .run()
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let mut tried = 0;
            for scalar in &scalars {
                let Some(value) = &scalar.value else { continue };
                let simple = !value.is_empty()
                    && value
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "./_-=".contains(c));
                if !simple || scalar.tag.is_some_and(|t| !t.string_like) {
                    continue;
                }
                let reference = format!("{SCHEME}{value}");
                let (written, replaced) = match scalar.style {
                    Style::Plain => (reference.clone(), image.to_string()),
                    Style::SingleQuoted => (format!("'{reference}'"), format!("'{image}'")),
                    Style::DoubleQuoted => (format!("\"{reference}\""), format!("\"{image}\"")),
                    Style::Block { .. } => continue,
                };
                let around = |middle: &str| {
                    format!(
                        "{}{middle}{}",
                        &text[..scalar.span.start],
                        &text[scalar.span.end..]
                    )
                };
                let src = Source {
                    name: name.clone(),
                    text: around(&written),
                };
                let found = references(&src).unwrap_or_else(|e| panic!("{name}: {e}"));
                assert!(
                    found.contains(&reference),
                    "{name}: {reference} not found in {found:?}"
                );
                let images = HashMap::from([(reference.clone(), image.to_string())]);
                let out = replace(&src, &images)
                    .unwrap_or_else(|e| panic!("{name}: replacing {reference}: {e}"));
                assert_eq!(out, around(&replaced), "{name}: {reference}");
                tried += 1;
            }
            assert!(tried >= 5, "{name}: only {tried} scalars tried");
        }
    }

    #[test]
    fn join_separates_files_as_one_stream() {
        let texts = [
            "a: 1\n".to_string(),
            "b: 2".to_string(),
            "%YAML 1.1\n---\nc: 3\n".to_string(),
            "\u{feff}# only a comment\n".to_string(),
        ];
        let out = join(&texts);
        assert_eq!(
            out,
            "a: 1\n---\nb: 2\n...\n%YAML 1.1\n---\nc: 3\n---\n# only a comment\n"
        );
        let docs: Vec<yaml_serde::Value> = yaml_serde::Deserializer::from_str(&out)
            .map(|d| serde::Deserialize::deserialize(d).expect("parses"))
            .collect();
        assert_eq!(docs.len(), 4);
        assert_eq!(join(&["x: 1\n".to_string()]), "x: 1\n");
    }
}

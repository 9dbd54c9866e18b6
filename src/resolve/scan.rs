//! The scanner's reading of a YAML text: where each scalar is and how it is quoted
//! (`scalar.rs` holds what it finds). It follows the tokenizing rules of the parser
//! underneath `yaml_serde`, which keeps no positions.

use std::ops::Range;

use super::scalar::{Scalar, Style, Tag};

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
pub(super) struct Scanner<'t> {
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
    pub(super) fn new(text: &'t str) -> Self {
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

    pub(super) fn run(mut self) -> Result<Vec<Scalar>, String> {
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

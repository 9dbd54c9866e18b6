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

use std::collections::HashMap;
use std::ops::Range;

mod scalar;
mod scan;
mod walk;

use scan::Scanner;
use walk::{fingerprints, Walk};

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

#[cfg(test)]
mod tests;

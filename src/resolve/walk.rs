//! The parser's reading of a YAML text: one walk over every value of every document,
//! through serde, that collects the references or fingerprints each document.

use std::collections::{HashMap, HashSet};
use std::fmt;

use serde::de::{DeserializeSeed, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor};
use sha2::{Digest as _, Sha256};

use super::reference_in;

/// Parses every document of `text`, feeding each value to `walk`; returns one digest
/// per document of everything it held (each string as `walk` maps it), so two texts
/// can be compared without keeping their values (aliases may expand a small file a
/// hundredfold).
pub(super) fn fingerprints(
    text: &str,
    walk: &mut Walk<'_>,
) -> Result<Vec<[u8; 32]>, yaml_serde::Error> {
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

pub(super) struct Walk<'m> {
    mode: Mode<'m>,
    hasher: Sha256,
    pub(super) found: Vec<String>,
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

    pub(super) fn collecting() -> Self {
        Walk::new(Mode::Collect)
    }

    pub(super) fn substituting(images: &'m HashMap<String, String>) -> Self {
        Walk::new(Mode::Substitute(images))
    }

    pub(super) fn plain() -> Self {
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
            (&Mode::Substitute(images), Some(r)) => images.get(r).map_or(value, String::as_str),
            _ => value,
        };
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

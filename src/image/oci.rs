//! The OCI documents gantry writes, as types: an image manifest (also the shape of an
//! artifact that refers to a subject) and an image index. Each serializes to
//! canonical JSON (keys sorted, no spaces), so the same content gives the same digest.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::Serialize;

use super::{canonical_json, media_type, Descriptor};

/// An OCI image manifest: a config and layers; with `artifact_type` and `subject`, an
/// OCI 1.1 artifact that refers to another manifest.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    pub media_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Manifest {
    pub fn new(config: Descriptor, layers: Vec<Descriptor>) -> Self {
        Manifest {
            schema_version: 2,
            media_type: media_type::OCI_MANIFEST,
            artifact_type: None,
            config,
            layers,
            subject: None,
            annotations: BTreeMap::new(),
        }
    }

    /// The bytes to push, and their descriptor.
    pub fn encode(&self) -> (Descriptor, Bytes) {
        encode(self, self.media_type)
    }
}

/// An OCI image index: one manifest per platform.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    pub media_type: &'static str,
    pub manifests: Vec<Descriptor>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Index {
    pub fn new(manifests: Vec<Descriptor>) -> Self {
        Index {
            schema_version: 2,
            media_type: media_type::OCI_INDEX,
            manifests,
            annotations: BTreeMap::new(),
        }
    }

    /// The bytes to push, and their descriptor.
    pub fn encode(&self) -> (Descriptor, Bytes) {
        encode(self, self.media_type)
    }
}

fn encode(document: &impl Serialize, media_type: &str) -> (Descriptor, Bytes) {
    let value = serde_json::to_value(document)
        .expect("strings, numbers and string-keyed maps always serialize");
    let bytes = canonical_json(&value);
    (
        Descriptor::for_bytes(media_type, &bytes),
        Bytes::from(bytes),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_are_canonical_json_without_empty_fields() {
        let config = Descriptor::for_bytes(media_type::OCI_CONFIG, b"{}");
        let (descriptor, bytes) = Manifest::new(config.clone(), Vec::new()).encode();
        assert_eq!(
            std::str::from_utf8(&bytes).unwrap(),
            format!(
                r#"{{"config":{{"digest":"{}","mediaType":"{}","size":2}},"layers":[],"mediaType":"{}","schemaVersion":2}}"#,
                config.digest,
                media_type::OCI_CONFIG,
                media_type::OCI_MANIFEST
            )
        );
        assert_eq!(descriptor.size, bytes.len() as u64);
        let (_, index) = Index::new(vec![descriptor]).encode();
        assert!(std::str::from_utf8(&index)
            .unwrap()
            .starts_with(r#"{"manifests":[{"digest":"sha256:"#));
    }
}

//! OCI images without a network: layers, configs, manifests and indexes, built as
//! exact bytes whose digests are what gets pushed. An image is layers + config +
//! manifest; an index points at images.

mod assemble;
mod digest;
mod gzip;
mod layer;
mod oci;

pub use assemble::{
    assemble_index, assemble_linux_image, assemble_wasm_artifact, assemble_wasm_image, index_entry,
    BaseImage, ImageSpec,
};
pub use digest::{Digest, NotADigest};
pub use layer::{growing, write_layer, GrowingLayer, LayerEntry, LayerFile, LayerGrowth};
pub use oci::{Index, Manifest};

use std::collections::BTreeMap;
use std::path::PathBuf;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::platform::Platform;

/// OCI and Docker media types gantry reads or writes.
pub mod media_type {
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
    pub const WASM_CONFIG: &str = "application/vnd.wasm.config.v0+json";
    pub const WASM_LAYER: &str = "application/wasm";
    /// Every manifest type gantry accepts when it reads from a registry.
    pub const ACCEPTED_MANIFESTS: &[&str] =
        &[OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST];
}

/// Annotation keys with a meaning to other tools.
pub mod annotation {
    pub const BASE_NAME: &str = "org.opencontainers.image.base.name";
    pub const BASE_DIGEST: &str = "org.opencontainers.image.base.digest";
    pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
    /// crun's wasm handler looks for it; `-smart` also needs `args[0]` ending in `.wasm`.
    pub const WASM_VARIANT: &str = "module.wasm.image/variant";
}

/// `sha256:<hex>` and size of a file, read in chunks (a module can be large).
pub fn file_digest(path: &std::path::Path) -> std::io::Result<(Digest, u64)> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let size = std::io::copy(&mut file, &mut hasher)?;
    Ok((Digest::from_hash(&hasher.finalize()), size))
}

/// An OCI content descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Descriptor {
    pub fn new(media_type: &str, digest: Digest, size: u64) -> Self {
        Descriptor {
            media_type: media_type.to_string(),
            digest,
            size,
            platform: None,
            artifact_type: None,
            annotations: BTreeMap::new(),
        }
    }

    /// The descriptor of bytes held in memory (configs, manifests).
    pub fn for_bytes(media_type: &str, bytes: &[u8]) -> Self {
        Descriptor::new(media_type, Digest::of(bytes), bytes.len() as u64)
    }

    /// The bare hex of the digest, for file names (`blobs/sha256/<hex>`).
    pub fn hex(&self) -> &str {
        self.digest.hex()
    }
}

/// Where a blob's bytes are, so publishing can stream them instead of holding them.
#[derive(Debug, Clone)]
pub enum BlobSource {
    /// Small JSON documents.
    Bytes(Bytes),
    /// A small document this run made that a registry almost surely lacks, since it
    /// carries or lists a new signature: uploaded without asking first (asking
    /// would cost a round trip to hear "no").
    Unpublished(Bytes),
    /// A layer gantry wrote to disk.
    File(PathBuf),
    /// A base-image layer, still in its registry repository (`registry/repo`).
    Remote { repository: String },
}

/// A blob and where to get it.
#[derive(Debug, Clone)]
pub struct Blob {
    pub descriptor: Descriptor,
    pub source: BlobSource,
}

impl Blob {
    pub fn from_bytes(media_type: &str, bytes: Vec<u8>) -> Self {
        Blob {
            descriptor: Descriptor::for_bytes(media_type, &bytes),
            source: BlobSource::Bytes(Bytes::from(bytes)),
        }
    }

    /// A document about a signature made just now (see [`BlobSource::Unpublished`]).
    pub fn unpublished(media_type: &str, bytes: Vec<u8>) -> Self {
        Blob {
            descriptor: Descriptor::for_bytes(media_type, &bytes),
            source: BlobSource::Unpublished(Bytes::from(bytes)),
        }
    }
}

/// One platform's image: its manifest's bytes plus the blobs it names.
#[derive(Debug, Clone)]
pub struct Image {
    pub platform: Platform,
    /// The manifest's descriptor, with `platform` set for the index.
    pub descriptor: Descriptor,
    pub manifest: Bytes,
    pub config: Blob,
    pub layers: Vec<Blob>,
    /// The base image's manifest digest, when built on one.
    pub base_digest: Option<Digest>,
}

/// What gets published for one package: an index of platform images, or a single
/// image when only one platform was built.
// A handful exist per run; boxing would only add indirection.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Artifact {
    Index {
        descriptor: Descriptor,
        bytes: Bytes,
        images: Vec<Image>,
    },
    Image(Image),
}

impl Artifact {
    /// The descriptor of what a tag will point at.
    pub fn descriptor(&self) -> &Descriptor {
        match self {
            Artifact::Index { descriptor, .. } => descriptor,
            Artifact::Image(image) => &image.descriptor,
        }
    }

    pub fn images(&self) -> &[Image] {
        match self {
            Artifact::Index { images, .. } => images,
            Artifact::Image(image) => std::slice::from_ref(image),
        }
    }

    /// The root manifest's bytes.
    pub fn bytes(&self) -> &Bytes {
        match self {
            Artifact::Index { bytes, .. } => bytes,
            Artifact::Image(image) => &image.manifest,
        }
    }
}

/// Serializes JSON with object keys sorted at every level (canonical JSON), so the same
/// content always hashes to the same digest whatever order it was built in.
pub fn canonical_json(value: &serde_json::Value) -> Vec<u8> {
    fn sorted(value: &serde_json::Value) -> serde_json::Value {
        match value {
            serde_json::Value::Object(map) => {
                let ordered: BTreeMap<&String, serde_json::Value> =
                    map.iter().map(|(k, v)| (k, sorted(v))).collect();
                let mut out = serde_json::Map::new();
                for (k, v) in ordered {
                    out.insert(k.clone(), v);
                }
                serde_json::Value::Object(out)
            }
            serde_json::Value::Array(items) => {
                serde_json::Value::Array(items.iter().map(sorted).collect())
            }
            other => other.clone(),
        }
    }
    // Serializing a Value cannot fail: every key is a string.
    serde_json::to_vec(&sorted(value)).unwrap_or_default()
}

/// RFC 3339 UTC for a Unix time, with no clock involved (reproducible `created`).
pub fn rfc3339(epoch: i64) -> String {
    let days = epoch.div_euclid(86_400);
    let secs = epoch.rem_euclid(86_400);
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// The latest `SOURCE_DATE_EPOCH` accepted: 9999-12-31T23:59:59Z, the last second
/// an RFC 3339 date (four-digit year) can express.
pub const MAX_SOURCE_DATE_EPOCH: i64 = 253_402_300_799;

/// A `SOURCE_DATE_EPOCH` that is not a Unix time gantry can write.
#[derive(Debug, thiserror::Error)]
pub enum SourceDateEpochError {
    #[error(
        "SOURCE_DATE_EPOCH={0:?} is out of range: use a Unix time in seconds from 0 to \
         253402300799 (9999-12-31T23:59:59Z)"
    )]
    OutOfRange(String),
    #[error(
        "SOURCE_DATE_EPOCH={0:?} is not a Unix time: use a whole number of seconds from 0 \
         to 253402300799 (9999-12-31T23:59:59Z)"
    )]
    NotANumber(String),
}

/// Parses a `SOURCE_DATE_EPOCH` value: blank is `None`; otherwise a whole number of
/// seconds from 0 to [`MAX_SOURCE_DATE_EPOCH`], surrounding whitespace ignored.
pub fn parse_source_date_epoch(value: &str) -> Result<Option<i64>, SourceDateEpochError> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Ok(None);
    }
    let digits = trimmed.strip_prefix(['+', '-']).unwrap_or(trimmed);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SourceDateEpochError::NotANumber(value.to_string()));
    }
    match trimmed.parse::<i64>() {
        Ok(epoch) if (0..=MAX_SOURCE_DATE_EPOCH).contains(&epoch) => Ok(Some(epoch)),
        // Digits that overflow i64 are out of range too.
        _ => Err(SourceDateEpochError::OutOfRange(value.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_nested_keys() {
        let v = serde_json::json!({"b": 1, "a": {"d": [ {"z": 1, "y": 2} ], "c": null}});
        assert_eq!(
            String::from_utf8(canonical_json(&v)).unwrap(),
            r#"{"a":{"c":null,"d":[{"y":2,"z":1}]},"b":1}"#
        );
    }

    #[test]
    fn rfc3339_known_epochs() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(MAX_SOURCE_DATE_EPOCH), "9999-12-31T23:59:59Z");
    }

    #[test]
    fn source_date_epoch_accepts_0_to_year_9999() {
        assert_eq!(parse_source_date_epoch("").unwrap(), None);
        assert_eq!(parse_source_date_epoch("  ").unwrap(), None);
        assert_eq!(parse_source_date_epoch("0").unwrap(), Some(0));
        assert_eq!(
            parse_source_date_epoch(" 1700000000\n").unwrap(),
            Some(1_700_000_000)
        );
        assert_eq!(
            parse_source_date_epoch("253402300799").unwrap(),
            Some(253_402_300_799)
        );
        for bad in ["253402300800", "-1", "99999999999999999999999"] {
            let err = parse_source_date_epoch(bad).unwrap_err().to_string();
            assert_eq!(
                err,
                format!(
                    "SOURCE_DATE_EPOCH=\"{bad}\" is out of range: use a Unix time in seconds \
                     from 0 to 253402300799 (9999-12-31T23:59:59Z)"
                )
            );
        }
        for bad in ["abc", "1.5", "1e9", "-", "12 34", "0x10"] {
            let err = parse_source_date_epoch(bad).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("SOURCE_DATE_EPOCH={bad:?} is not a Unix time"))
                    && err.contains("0 to 253402300799"),
                "{err}"
            );
        }
    }

    #[test]
    fn descriptor_serializes_oci_field_names() {
        let mut d = Descriptor::for_bytes(media_type::OCI_MANIFEST, b"{}");
        d.platform = Some(Platform::new("linux", "arm", Some("v7")));
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(json["mediaType"], media_type::OCI_MANIFEST);
        assert_eq!(json["platform"]["architecture"], "arm");
        assert_eq!(json["platform"]["variant"], "v7");
        assert!(json.get("annotations").is_none());
    }
}

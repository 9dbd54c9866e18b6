//! What a build reports: the result per package, as `--json` writes it and as the
//! step outputs and job summary show it. Plain data, so that reporting depends on
//! this and not on the pipeline that fills it.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::image::Digest;
use crate::publish::PublishStats;
use crate::sign::{Attachment, SignerIdentity};

/// The result, per package, as `--json` writes it.
#[derive(Debug, Clone, Serialize)]
pub struct BuildReport {
    pub images: Vec<PackageReport>,
    pub publish: PublishStats,
    pub go_version: String,
    /// Who signed, when anything was signed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signer: Option<SignerIdentity>,
    /// HTTP requests sent to registries, every retry counted.
    pub registry_requests: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct PackageReport {
    pub import_path: String,
    /// `registry/repo`, or `oci:DIR` for a layout-only build.
    pub repository: String,
    /// Digest of the index (or of the single manifest).
    pub digest: Digest,
    pub media_type: String,
    /// `repository@digest`.
    pub reference: String,
    pub tags: Vec<String>,
    pub platforms: Vec<PlatformReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_image: Option<BaseReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wasm_artifact: Option<WasmArtifactReport>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sboms: Vec<SbomReport>,
    /// Signatures and attestations stored for this package.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SbomReport {
    /// Digest of the image or index described.
    pub subject: Digest,
    /// `index`, or the platform.
    pub platform: String,
    pub format: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlatformReport {
    pub platform: String,
    pub digest: Digest,
    pub config_digest: Digest,
    pub layers: Vec<LayerReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_digest: Option<Digest>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LayerReport {
    pub digest: Digest,
    pub size: u64,
    pub media_type: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BaseReport {
    pub name: String,
    pub digest: Digest,
}

#[derive(Debug, Clone, Serialize)]
pub struct WasmArtifactReport {
    pub digest: Digest,
    pub tags: Vec<String>,
}

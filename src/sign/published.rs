//! Claims about an image that is already published (`gantry sign REF`, the way to
//! finish after signing failed): the SBOMs and provenance are made again from the
//! images themselves, by reading each entrypoint binary's Go build info out of its
//! layer — ELF and wasm alike.

use std::path::Path;

use serde_json::Value;

use super::{claims_for, Claim, SignError};
use crate::attest::provenance::{self, BuildFacts};
use crate::attest::sbom::SbomFormat;
use crate::attest::{self, ImageFacts, SbomDocument};
use crate::gobuild::buildinfo::BuildInfo;
use crate::image::{annotation, media_type, Descriptor, Digest};
use crate::platform::Platform;
use crate::publish::Publisher;

/// What to attach besides signatures.
#[derive(Debug, Clone)]
pub struct ClaimOptions<'a> {
    pub sbom: &'a [SbomFormat],
    pub provenance: bool,
    pub created: i64,
    /// Where provenance looks for the source (git).
    pub workdir: &'a Path,
}

/// What can be said about a published index or image, made from what it holds.
#[derive(Debug, Clone)]
pub struct Material {
    /// The root (index or image), then each platform manifest of an index.
    pub subjects: Vec<Descriptor>,
    /// The SBOMs of every image whose entrypoint has Go build info, and the index's.
    pub sboms: Vec<SbomDocument>,
    pub provenance: Option<Value>,
    /// What has no SBOM, and why.
    pub skipped: Vec<String>,
}

/// Claims about the index or image `root` (its bytes), stored in `repository`:
/// signatures for it and each platform manifest, SBOMs of every image whose
/// entrypoint has Go build info, and provenance. Also returns what was skipped, and why.
pub async fn claims(
    publisher: &dyn Publisher,
    repository: &str,
    root: &[u8],
    options: &ClaimOptions<'_>,
) -> Result<(Vec<Claim>, Vec<String>), SignError> {
    let made = material(publisher, repository, root, options).await?;
    let sbom_refs: Vec<_> = made.sboms.iter().collect();
    Ok((
        claims_for(
            repository,
            &made.subjects,
            &sbom_refs,
            made.provenance.as_ref(),
        ),
        made.skipped,
    ))
}

/// The subjects, SBOMs and provenance of the index or image `root` (its bytes),
/// stored in `repository`: what [`claims`] signs, or what is stored unsigned when
/// nothing signs.
pub async fn material(
    publisher: &dyn Publisher,
    repository: &str,
    root: &[u8],
    options: &ClaimOptions<'_>,
) -> Result<Material, SignError> {
    let manifest: Value = serde_json::from_slice(root).unwrap_or_default();
    let root_type = manifest["mediaType"]
        .as_str()
        .unwrap_or(media_type::OCI_MANIFEST);
    let root_descriptor = Descriptor::for_bytes(root_type, root);
    let is_index = manifest["manifests"].is_array();
    let mut subjects = vec![root_descriptor.clone()];
    let mut images: Vec<(Descriptor, Value)> = Vec::new();
    if is_index {
        for child in manifest["manifests"].as_array().into_iter().flatten() {
            let Ok(d) = serde_json::from_value::<Descriptor>(child.clone()) else {
                continue;
            };
            subjects.push(d.clone());
            if let Some(bytes) = publisher.fetch_manifest(repository, &d.digest).await? {
                images.push((d, serde_json::from_slice(&bytes).unwrap_or_default()));
            }
        }
    } else {
        images.push((root_descriptor.clone(), manifest.clone()));
    }

    let mut skipped = Vec::new();
    let mut read: Vec<(Descriptor, Platform, Option<Digest>, BuildInfo)> = Vec::new();
    let scratch = tempfile::tempdir().map_err(|source| SignError::Io {
        context: "creating a work directory".into(),
        source,
    })?;
    for (descriptor, image) in &images {
        let config: Value = match image["config"]["digest"].as_str() {
            Some(digest) => {
                serde_json::from_slice(&publisher.fetch_blob(repository, digest).await?)
                    .unwrap_or_default()
            }
            None => Value::Null,
        };
        let platform = descriptor.platform.clone().unwrap_or_else(|| {
            Platform::new(
                config["os"].as_str().unwrap_or_default(),
                config["architecture"].as_str().unwrap_or_default(),
                config["variant"].as_str(),
            )
        });
        let Some(entrypoint) = config["config"]["Entrypoint"][0].as_str() else {
            skipped.push(format!("{platform}: no entrypoint, so no SBOM"));
            continue;
        };
        let file = scratch.path().join(read.len().to_string());
        let layers = image["layers"].as_array().cloned().unwrap_or_default();
        if !extract(publisher, repository, &layers, entrypoint, &file).await? {
            skipped.push(format!(
                "{platform}: {entrypoint} is in no layer, so no SBOM"
            ));
            continue;
        }
        match BuildInfo::read(&file) {
            Ok(info) => {
                // An annotation that is not a digest names no base.
                let base = image["annotations"][annotation::BASE_DIGEST]
                    .as_str()
                    .and_then(|d| Digest::parse(d).ok());
                read.push((descriptor.clone(), platform, base, info));
            }
            Err(_) => skipped.push(format!(
                "{platform}: {entrypoint} has no Go build info, so no SBOM"
            )),
        }
    }
    // wasm binaries do not record the Go version; their Linux siblings do.
    let go_version = read
        .iter()
        .map(|(_, _, _, info)| info.go_version.clone())
        .find(|v| !v.is_empty())
        .unwrap_or_default();
    for (_, _, _, info) in &mut read {
        if info.go_version.is_empty() {
            info.go_version.clone_from(&go_version);
        }
    }

    let base_name = images
        .iter()
        .find_map(|(_, m)| m["annotations"][annotation::BASE_NAME].as_str());
    let facts: Vec<ImageFacts> = read
        .iter()
        .map(|(d, platform, base, info)| ImageFacts {
            digest: &d.digest,
            platform,
            base_digest: base.as_ref(),
            build_info: info,
        })
        .collect();
    // In an OCI layout there is no repository: the SBOMs name the program, as a
    // layout-only build does.
    let program = read
        .first()
        .and_then(|(_, _, _, info)| info.path.rsplit('/').next())
        .unwrap_or("image");
    let sboms = attest::sboms(
        if repository.is_empty() {
            program
        } else {
            repository
        },
        is_index.then_some(&root_descriptor.digest),
        &facts,
        base_name.zip(
            manifest["annotations"][annotation::BASE_DIGEST]
                .as_str()
                .and_then(|d| Digest::parse(d).ok())
                .as_ref(),
        ),
        options.created,
        options.sbom,
    );
    let provenance = options.provenance.then(|| {
        let mut packages: Vec<String> = read.iter().map(|(_, _, _, i)| i.path.clone()).collect();
        packages.dedup();
        let platforms: Vec<String> = images
            .iter()
            .filter_map(|(d, _)| d.platform.as_ref().map(Platform::to_string))
            .collect();
        let bases: Vec<(String, String)> = base_name
            .zip(manifest["annotations"][annotation::BASE_DIGEST].as_str())
            .map(|(n, d)| (n.to_string(), d.to_string()))
            .into_iter()
            .collect();
        provenance::predicate(&BuildFacts {
            packages: &packages,
            platforms: &platforms,
            go_version: &go_version,
            bases: &bases,
            workdir: options.workdir,
            created: options.created,
        })
    });
    Ok(Material {
        subjects,
        sboms,
        provenance,
        skipped,
    })
}

/// Writes the file at `path` in the image's filesystem to `into`, from the topmost
/// layer that has it. Returns whether one had it.
async fn extract(
    publisher: &dyn Publisher,
    repository: &str,
    layers: &[Value],
    path: &str,
    into: &Path,
) -> Result<bool, SignError> {
    let wanted = path.trim_start_matches('/');
    for layer in layers.iter().rev() {
        let (Some(digest), Some(kind)) = (layer["digest"].as_str(), layer["mediaType"].as_str())
        else {
            continue;
        };
        let blob = publisher.fetch_blob(repository, digest).await?;
        let reader: Box<dyn std::io::Read> = if kind.ends_with("gzip") {
            Box::new(flate2::read::MultiGzDecoder::new(blob.as_ref()))
        } else if kind.ends_with("tar") {
            Box::new(blob.as_ref())
        } else {
            continue;
        };
        let mut archive = tar::Archive::new(reader);
        let Ok(entries) = archive.entries() else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry
                .path()
                .map(|p| p.to_string_lossy().trim_start_matches("./").to_string())
                .unwrap_or_default();
            if name.trim_start_matches('/') == wanted {
                let mut entry = entry;
                std::fs::File::create(into)
                    .and_then(|mut out| std::io::copy(&mut entry, &mut out))
                    .map_err(|source| SignError::Io {
                        context: format!("extracting {path} from layer {digest}"),
                        source,
                    })?;
                return Ok(true);
            }
        }
    }
    Ok(false)
}

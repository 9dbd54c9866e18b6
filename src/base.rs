//! Base images: fetch the base's index, pick each platform's manifest and config, and
//! leave its layers in the registry to be mounted or streamed at publish time.

use serde::Deserialize;

use crate::image::{media_type, BaseImage, Blob, BlobSource, Descriptor, Digest};
use crate::platform::Platform;
use crate::publish::{parse_reference, ImageName, PublishError, Registry};

#[derive(Debug, thiserror::Error)]
pub enum BaseError {
    #[error("base image {base} has no {wanted} (it offers: {offers}); choose platforms it has, another --base, or --platform all")]
    MissingPlatform {
        base: String,
        wanted: String,
        offers: String,
    },
    #[error("base image {base}: {detail}")]
    Malformed { base: String, detail: String },
    #[error("base image {base}: {}{}", crate::error::chain(&**cause), if matches!(**cause, PublishError::Unreachable { .. }) {
        "\n(to build anyway: --base scratch, or a base image on a registry this machine can reach)"
    } else {
        ""
    })]
    Registry {
        base: String,
        cause: Box<PublishError>,
    },
}

/// A base image resolved for the platforms of a build.
#[derive(Debug, Clone)]
pub struct ResolvedBase {
    /// The digest of the base's index (or of its only manifest).
    pub digest: Digest,
    pub images: Vec<BaseImage>,
}

impl ResolvedBase {
    pub fn for_platform(&self, platform: &Platform) -> Option<&BaseImage> {
        self.images
            .iter()
            .find(|b| base_platform(b).is_some_and(|p| p.matches(platform)))
    }

    /// The Linux platforms the base offers, for `--platform all`.
    pub fn platforms(&self) -> Vec<Platform> {
        self.images.iter().filter_map(base_platform).collect()
    }
}

fn base_platform(base: &BaseImage) -> Option<Platform> {
    serde_json::from_value::<Platform>(base.config.clone()).ok()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Manifest {
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

/// Resolves `reference` for `wanted` platforms, or for every Linux platform it has
/// when `wanted` is `None`.
pub async fn resolve(
    registry: &Registry,
    reference: &str,
    wanted: Option<&[Platform]>,
) -> Result<ResolvedBase, BaseError> {
    let reg_err = |source| BaseError::Registry {
        base: reference.to_string(),
        cause: Box::new(source),
    };
    let malformed = |detail: String| BaseError::Malformed {
        base: reference.to_string(),
        detail,
    };
    let (name, at) = parse_reference(reference).map_err(reg_err)?;
    let (bytes, digest) = registry.pull_manifest(&name, &at).await.map_err(reg_err)?;
    let root: Manifest = serde_json::from_slice(&bytes).map_err(|e| malformed(e.to_string()))?;

    let Some(entries) = root.manifests else {
        // A single-platform base: its config says which platform it is.
        let image = load_image(registry, reference, &name, &digest, root).await?;
        if let Some(wanted) = wanted {
            check_all_present(reference, wanted, std::slice::from_ref(&image))?;
        }
        return Ok(ResolvedBase {
            digest,
            images: vec![image],
        });
    };

    // Attestation manifests in an index say `unknown/unknown`; only Linux entries count.
    let candidates: Vec<&Descriptor> = entries
        .iter()
        .filter(|d| d.platform.as_ref().is_some_and(|p| p.os == "linux"))
        .collect();
    let chosen: Vec<&Descriptor> = match wanted {
        None => candidates,
        Some(wanted) => {
            let mut chosen = Vec::new();
            for w in wanted {
                match candidates
                    .iter()
                    .find(|d| d.platform.as_ref().is_some_and(|p| p.matches(w)))
                {
                    Some(d) => chosen.push(*d),
                    None => {
                        return Err(BaseError::MissingPlatform {
                            base: reference.to_string(),
                            wanted: w.to_string(),
                            offers: offers(&candidates),
                        })
                    }
                }
            }
            chosen
        }
    };
    // Each platform's manifest and config, all platforms at once.
    let images = futures::future::try_join_all(chosen.into_iter().map(|d| async {
        let (bytes, child_digest) = registry
            .pull_manifest(&name, &d.digest)
            .await
            .map_err(reg_err)?;
        let manifest: Manifest =
            serde_json::from_slice(&bytes).map_err(|e| malformed(e.to_string()))?;
        let mut image = load_image(registry, reference, &name, &child_digest, manifest).await?;
        // The index's platform is authoritative when the config omits the variant.
        if let (Some(p), Some(obj)) = (&d.platform, image.config.as_object_mut()) {
            if let Some(v) = &p.variant {
                obj.entry("variant").or_insert_with(|| v.clone().into());
            }
        }
        Ok::<_, BaseError>(image)
    }))
    .await?;
    Ok(ResolvedBase { digest, images })
}

fn offers(candidates: &[&Descriptor]) -> String {
    let list: Vec<String> = candidates
        .iter()
        .filter_map(|d| d.platform.as_ref().map(Platform::to_string))
        .collect();
    if list.is_empty() {
        "no Linux platforms".into()
    } else {
        list.join(", ")
    }
}

fn check_all_present(
    reference: &str,
    wanted: &[Platform],
    images: &[BaseImage],
) -> Result<(), BaseError> {
    let have: Vec<Platform> = images.iter().filter_map(base_platform).collect();
    for w in wanted {
        if !have.iter().any(|p| p.matches(w)) {
            return Err(BaseError::MissingPlatform {
                base: reference.to_string(),
                wanted: w.to_string(),
                offers: have
                    .iter()
                    .map(Platform::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
    }
    Ok(())
}

async fn load_image(
    registry: &Registry,
    reference: &str,
    name: &ImageName,
    digest: &Digest,
    manifest: Manifest,
) -> Result<BaseImage, BaseError> {
    let malformed = |detail: String| BaseError::Malformed {
        base: reference.to_string(),
        detail,
    };
    let known = [media_type::OCI_MANIFEST, media_type::DOCKER_MANIFEST];
    if let Some(mt) = &manifest.media_type {
        if !known.contains(&mt.as_str()) {
            return Err(malformed(format!("unsupported manifest type {mt}")));
        }
    }
    let config = manifest
        .config
        .ok_or_else(|| malformed(format!("manifest {digest} has no config")))?;
    let bytes = registry
        .pull_small_blob(name, &config.digest)
        .await
        .map_err(|source| BaseError::Registry {
            base: reference.to_string(),
            cause: Box::new(source),
        })?;
    let config: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| malformed(format!("config is not JSON: {e}")))?;
    let repository = name.to_string();
    let layers = manifest
        .layers
        .into_iter()
        .map(|mut descriptor| {
            descriptor.platform = None;
            Blob {
                descriptor,
                source: BlobSource::Remote {
                    repository: repository.clone(),
                },
            }
        })
        .collect();
    Ok(BaseImage {
        name: reference.to_string(),
        digest: digest.clone(),
        config,
        layers,
    })
}

//! What gantry says about the images it built: SBOMs (and, with signing, in-toto
//! statements about them).

pub mod provenance;
pub mod sbom;

use crate::gobuild::buildinfo::BuildInfo;
use crate::platform::Platform;
use sbom::{SbomFormat, SbomSubject};

/// One SBOM document about one image or index.
#[derive(Debug, Clone)]
pub struct SbomDocument {
    /// Digest of the manifest or index it describes.
    pub subject: String,
    /// None for the index's SBOM.
    pub platform: Option<Platform>,
    pub format: SbomFormat,
    pub json: Vec<u8>,
}

/// One platform image, as an SBOM describes it.
#[derive(Debug, Clone)]
pub struct ImageFacts<'a> {
    pub digest: &'a str,
    pub platform: &'a Platform,
    /// The base image's manifest digest for this platform, when built on one.
    pub base_digest: Option<&'a str>,
    pub build_info: &'a BuildInfo,
}

/// SBOMs for every platform image and, when there is one, for the index
/// (`index_digest`), which lists the images as its variants. `base` is the base
/// image's `(name, digest)`, which the images descend from.
pub fn sboms(
    repository: &str,
    index_digest: Option<&str>,
    images: &[ImageFacts],
    base: Option<(&str, &str)>,
    created: i64,
    formats: &[SbomFormat],
) -> Vec<SbomDocument> {
    let mut subjects = Vec::new();
    for image in images {
        subjects.push((
            image.digest,
            Some(image.platform),
            Some(image.build_info),
            base.map(|(name, _)| name).zip(image.base_digest),
            Vec::new(),
        ));
    }
    if let Some(index) = index_digest {
        let variants = images
            .iter()
            .map(|i| (i.platform.clone(), i.digest.to_string()))
            .collect();
        subjects.push((index, None, None, base, variants));
    }
    let mut out = Vec::new();
    for (digest, platform, info, base, variants) in &subjects {
        let subject = SbomSubject {
            repository,
            digest,
            platform: *platform,
            build_info: *info,
            base: *base,
            variants,
            created,
        };
        for format in formats {
            let doc = match format {
                SbomFormat::Spdx => sbom::spdx(&subject),
                SbomFormat::Cyclonedx => sbom::cyclonedx(&subject),
            };
            out.push(SbomDocument {
                subject: digest.to_string(),
                platform: platform.cloned(),
                format: *format,
                json: crate::image::canonical_json(&doc),
            });
        }
    }
    out
}

//! What gantry says about the images it built: SBOMs (and, with signing, in-toto
//! statements about them).

pub mod provenance;
pub mod sbom;

use crate::gobuild::buildinfo::BuildInfo;
use crate::image::Artifact;
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

/// SBOMs for every platform image of `artifact` and, when it is an index, for the
/// index. `build_infos` are per platform, in the artifact's image order.
pub fn sboms(
    repository: &str,
    artifact: &Artifact,
    build_infos: &[BuildInfo],
    base: Option<(&str, &str)>,
    created: i64,
    formats: &[SbomFormat],
) -> Vec<SbomDocument> {
    let mut subjects = Vec::new();
    for (image, info) in artifact.images().iter().zip(build_infos) {
        let base = match (base, &image.base_digest) {
            (Some((name, _)), Some(digest)) => Some((name, digest.as_str())),
            _ => None,
        };
        subjects.push((
            image.descriptor.digest.clone(),
            Some(image.platform.clone()),
            Some(info),
            base,
            Vec::new(),
        ));
    }
    if let Artifact::Index {
        descriptor, images, ..
    } = artifact
    {
        let variants = images
            .iter()
            .map(|i| (i.platform.clone(), i.descriptor.digest.clone()))
            .collect();
        subjects.push((descriptor.digest.clone(), None, None, base, variants));
    }
    let mut out = Vec::new();
    for (digest, platform, info, base, variants) in &subjects {
        let subject = SbomSubject {
            repository,
            digest,
            platform: platform.as_ref(),
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
                subject: digest.clone(),
                platform: platform.clone(),
                format: *format,
                json: crate::image::canonical_json(&doc),
            });
        }
    }
    out
}

//! Filling in what a build reports ([`crate::report`]), and the files it writes beside
//! the images: the result and the SBOMs.

use std::path::{Path, PathBuf};

use super::{io, Assembled, BuildError};
use crate::attest::SbomDocument;
use crate::platform::Platform;
use crate::report::{
    BaseReport, BuildReport, LayerReport, PackageReport, PlatformReport, SbomReport,
    WasmArtifactReport,
};

/// Writes the JSON result; `path` was checked for writability before anything was
/// pushed.
pub(super) fn write_report(path: &Path, report: &BuildReport) -> Result<(), BuildError> {
    let json = serde_json::to_vec_pretty(report).map_err(|e| BuildError::Io {
        context: "serialising the result".into(),
        cause: std::io::Error::other(e),
    })?;
    std::fs::write(path, json).map_err(io(format!("writing {}", path.display())))
}

/// Fails early, before any build or push, when an output file cannot be written:
/// opens an existing file for writing, or makes (and removes) a file beside it.
pub(super) fn check_writable(path: &Path, is_dir: bool) -> Result<(), BuildError> {
    let context = || {
        format!(
            "{} cannot be written (checked before building; nothing was pushed)",
            path.display()
        )
    };
    let probe = if is_dir {
        std::fs::create_dir_all(path).and_then(|()| tempfile::NamedTempFile::new_in(path).map(drop))
    } else if path.exists() {
        std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map(drop)
    } else {
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
        tempfile::NamedTempFile::new_in(parent.unwrap_or(Path::new("."))).map(drop)
    };
    probe.map_err(io(context()))
}

/// What the report says of one package (its attachments are added by the caller).
pub(super) fn report(
    package: &Assembled,
    repository: String,
    tags: &[String],
    wasm_tags: &[String],
) -> PackageReport {
    let (plan, artifact) = (&package.plan, &package.artifact);
    let descriptor = artifact.descriptor();
    PackageReport {
        import_path: plan.package.import_path.clone(),
        reference: format!("{repository}@{}", descriptor.digest),
        repository,
        digest: descriptor.digest.clone(),
        media_type: descriptor.media_type.clone(),
        tags: tags.to_vec(),
        platforms: artifact
            .images()
            .iter()
            .map(|i| PlatformReport {
                platform: i.platform.to_string(),
                digest: i.descriptor.digest.clone(),
                config_digest: i.config.descriptor.digest.clone(),
                layers: i
                    .layers
                    .iter()
                    .map(|l| LayerReport {
                        digest: l.descriptor.digest.clone(),
                        size: l.descriptor.size,
                        media_type: l.descriptor.media_type.clone(),
                    })
                    .collect(),
                base_digest: i.base_digest.clone(),
            })
            .collect(),
        base_image: plan.base.as_ref().map(|(name, r)| BaseReport {
            name: name.clone(),
            digest: r.digest.clone(),
        }),
        wasm_artifact: package.wasm.as_ref().map(|w| WasmArtifactReport {
            digest: w.descriptor().digest.clone(),
            tags: wasm_tags.to_vec(),
        }),
        sboms: package
            .sboms
            .iter()
            .map(|(doc, file)| sbom_report(doc, file.clone()))
            .collect(),
        attachments: Vec::new(),
    }
}

fn sbom_report(doc: &SbomDocument, file: Option<PathBuf>) -> SbomReport {
    SbomReport {
        subject: doc.subject.clone(),
        platform: doc
            .platform
            .as_ref()
            .map_or("index".into(), Platform::to_string),
        format: format!("{:?}", doc.format).to_lowercase(),
        file,
    }
}

/// Writes SBOMs to `dir` (when given) as `<name>-<platform|index>.<format>.json`.
pub(super) fn write_sboms(
    dir: Option<&Path>,
    name: &str,
    docs: Vec<SbomDocument>,
) -> Result<Vec<(SbomDocument, Option<PathBuf>)>, BuildError> {
    let Some(dir) = dir else {
        return Ok(docs.into_iter().map(|d| (d, None)).collect());
    };
    std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    docs.into_iter()
        .map(|doc| {
            let which = doc
                .platform
                .as_ref()
                .map_or("index".to_string(), |p| p.to_string().replace('/', "-"));
            let path = dir.join(format!("{name}-{which}.{}", doc.format.file_suffix()));
            std::fs::write(&path, &doc.json).map_err(io(format!("writing {}", path.display())))?;
            Ok((doc, Some(path)))
        })
        .collect()
}

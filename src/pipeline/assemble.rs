//! From binaries to images: each package's platform images (Linux on its base, wasm
//! on nothing), its index, and the CNCF Wasm artifact when asked for.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use super::{io, BuildError, BuildOptions, PackagePlan};
use crate::image::{
    self, assemble_index, assemble_linux_image, assemble_wasm_artifact, assemble_wasm_image,
    media_type, Artifact, Blob, BlobSource, Descriptor, ImageSpec, LayerEntry,
};
use crate::platform::Platform;

/// Layers (in parallel, off the async threads) and images for one package.
pub(super) async fn assemble_package(
    opts: &BuildOptions,
    plan: &PackagePlan,
    binaries: &[(Platform, PathBuf)],
    work: &Path,
) -> Result<Artifact, BuildError> {
    let mtime = opts.source_date_epoch.unwrap_or(0).max(0) as u64;
    let name = plan.package.name.clone();
    let spec = ImageSpec {
        name: name.clone(),
        created: opts.source_date_epoch.unwrap_or(0),
        labels: opts.labels.clone(),
        annotations: opts.annotations.clone(),
    };

    let kodata = match (
        &plan.package.kodata,
        binaries.iter().any(|(p, _)| !p.is_wasm()),
    ) {
        (Some(dir), true) => Some(layer(work, kodata_entries(dir)?, mtime).await?),
        _ => None,
    };
    // One layer per distinct binary: wasi/wasm and wasip1/wasm share one blob.
    let mut layers: HashMap<PathBuf, (Blob, String)> = HashMap::new();
    let mut images = Vec::new();
    for (platform, binary) in binaries {
        let app = match layers.get(binary) {
            Some(l) => l.clone(),
            None => {
                let entries = if platform.is_wasm() {
                    vec![LayerEntry::File {
                        path: format!("{name}.wasm"),
                        mode: 0o755,
                        source: binary.clone(),
                    }]
                } else {
                    vec![
                        LayerEntry::Dir {
                            path: "ko-app".into(),
                            mode: 0o755,
                        },
                        LayerEntry::File {
                            path: format!("ko-app/{name}"),
                            mode: 0o555,
                            source: binary.clone(),
                        },
                    ]
                };
                let l = layer(work, entries, mtime).await?;
                layers.insert(binary.clone(), l.clone());
                l
            }
        };
        let image = if platform.is_wasm() {
            assemble_wasm_image(&spec, platform, app)
        } else {
            let base = match &plan.base {
                Some((_, resolved)) => {
                    Some(resolved.for_platform(platform).ok_or_else(|| {
                        BuildError::Usage(format!("base image has no {platform}"))
                    })?)
                }
                None => None,
            };
            let ours = kodata.iter().cloned().chain(std::iter::once(app)).collect();
            assemble_linux_image(&spec, platform, base, ours)
        };
        images.push(image);
    }
    let mut index_annotations = opts.annotations.clone();
    if let Some((name, resolved)) = &plan.base {
        index_annotations.insert(image::annotation::BASE_NAME.into(), name.clone());
        index_annotations.insert(
            image::annotation::BASE_DIGEST.into(),
            resolved.digest.clone(),
        );
    }
    Ok(assemble_index(images, index_annotations))
}

async fn layer(
    work: &Path,
    entries: Vec<LayerEntry>,
    mtime: u64,
) -> Result<(Blob, String), BuildError> {
    let work = work.to_path_buf();
    tokio::task::spawn_blocking(move || image::write_layer(&work, &entries, mtime))
        .await
        .map_err(|e| BuildError::Usage(format!("layer writer stopped: {e}")))?
        .map_err(io("writing a layer"))
}

/// `kodata/` as ko ships it: under /var/run/ko, sorted, symlinks followed.
fn kodata_entries(dir: &Path) -> Result<Vec<LayerEntry>, BuildError> {
    fn walk(dir: &Path, rel: &str, out: &mut Vec<LayerEntry>) -> Result<(), BuildError> {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .map_err(io(format!("reading {}", dir.display())))?
            .filter_map(Result::ok)
            .map(|e| e.file_name())
            .collect();
        names.sort();
        for name in names {
            let path = dir.join(&name);
            let rel = format!("{rel}/{}", name.to_string_lossy());
            let meta =
                std::fs::metadata(&path).map_err(io(format!("reading {}", path.display())))?;
            if meta.is_dir() {
                out.push(LayerEntry::Dir {
                    path: rel.clone(),
                    mode: 0o755,
                });
                walk(&path, &rel, out)?;
            } else {
                out.push(LayerEntry::File {
                    path: rel,
                    mode: 0o555,
                    source: path,
                });
            }
        }
        Ok(())
    }
    let mut out = vec![LayerEntry::Dir {
        path: "var/run/ko".into(),
        mode: 0o755,
    }];
    walk(dir, "var/run/ko", &mut out)?;
    Ok(out)
}

/// The CNCF Wasm OCI artifact of a package's module: the raw `.wasm` as one layer.
pub(super) async fn wasm_artifact(
    opts: &BuildOptions,
    plan: &PackagePlan,
    module: &Path,
) -> Result<Artifact, BuildError> {
    let path = module.to_path_buf();
    let (digest, size) = tokio::task::spawn_blocking(move || image::file_digest(&path))
        .await
        .map_err(|e| BuildError::Usage(format!("hashing stopped: {e}")))?
        .map_err(io(format!("reading {}", module.display())))?;
    let blob = Blob {
        descriptor: Descriptor::new(media_type::WASM_LAYER, digest, size),
        source: BlobSource::File(module.to_path_buf()),
    };
    let spec = ImageSpec {
        name: plan.package.name.clone(),
        created: opts.source_date_epoch.unwrap_or(0),
        labels: BTreeMap::new(),
        annotations: opts.annotations.clone(),
    };
    Ok(Artifact::Image(assemble_wasm_artifact(&spec, blob)))
}

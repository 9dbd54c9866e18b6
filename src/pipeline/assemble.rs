//! From binaries to images: each package's platform images (Linux on its base, wasm
//! on nothing), its index, and the CNCF Wasm artifact when asked for.

use std::collections::BTreeMap;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use super::{io, BuildError, BuildOptions, Compiled, PackagePlan};
use crate::base::BaseError;
use crate::image::{
    self, assemble_index, assemble_linux_image, assemble_wasm_artifact, assemble_wasm_image,
    media_type, Artifact, Blob, BlobSource, Descriptor, ImageSpec, LayerEntry,
};
use crate::platform::Platform;

/// The images of one package, from its platforms' builds (whose layers are written):
/// Linux images on the base with kodata under the binary, wasm images on nothing.
pub(super) async fn assemble_package(
    opts: &BuildOptions,
    plan: &PackagePlan,
    compiled: &[Compiled],
    work: &Path,
) -> Result<Artifact, BuildError> {
    let spec = ImageSpec {
        name: plan.package.name.clone(),
        created: opts.source_date_epoch.unwrap_or(0),
        labels: opts.labels.clone(),
        annotations: opts.annotations.clone(),
        user: opts.image_user.clone(),
    };
    let kodata = match (
        &plan.package.kodata,
        compiled.iter().any(|c| !c.platform.is_wasm()),
    ) {
        (Some(dir), true) => Some(layer(work, kodata_entries(dir)?, file_time(opts)).await?),
        _ => None,
    };
    let mut images = Vec::new();
    for c in compiled {
        let image = if c.platform.is_wasm() {
            assemble_wasm_image(&spec, &c.platform, c.layer.clone())
        } else {
            let base = match &plan.base {
                Some((name, resolved)) => {
                    Some(resolved.for_platform(&c.platform).ok_or_else(|| {
                        BaseError::MissingPlatform {
                            base: name.clone(),
                            wanted: c.platform.to_string(),
                            offers: resolved
                                .platforms()
                                .iter()
                                .map(ToString::to_string)
                                .collect::<Vec<_>>()
                                .join(", "),
                        }
                    })?)
                }
                None => None,
            };
            let ours = kodata.iter().cloned().chain([c.layer.clone()]).collect();
            assemble_linux_image(&spec, &c.platform, base, ours)
        };
        images.push(image);
    }
    let mut index_annotations = opts.annotations.clone();
    if let Some((name, resolved)) = &plan.base {
        index_annotations.insert(image::annotation::BASE_NAME.into(), name.clone());
        index_annotations.insert(
            image::annotation::BASE_DIGEST.into(),
            resolved.digest.to_string(),
        );
    }
    Ok(assemble_index(images, index_annotations))
}

/// File times in layers: SOURCE_DATE_EPOCH, else 0.
pub(super) fn file_time(opts: &BuildOptions) -> u64 {
    opts.source_date_epoch.unwrap_or(0).max(0) as u64
}

/// The layer that holds a program: `/<name>.wasm` for wasm (runtimes look for the
/// module there), `/ko-app/<name>` for Linux, as ko lays it out.
pub(super) fn app_layer_entries(name: &str, platform: &Platform, binary: &Path) -> Vec<LayerEntry> {
    if platform.is_wasm() {
        vec![LayerEntry::File {
            path: format!("{name}.wasm"),
            mode: 0o755,
            source: binary.to_path_buf(),
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
                source: binary.to_path_buf(),
            },
        ]
    }
}

async fn layer(
    work: &Path,
    entries: Vec<LayerEntry>,
    mtime: u64,
) -> Result<(Blob, image::Digest), BuildError> {
    let work = work.to_path_buf();
    tokio::task::spawn_blocking(move || {
        image::write_layer(image::LayerFile::create_in(&work)?, &entries, mtime, None)
    })
    .await
    .map_err(|source| BuildError::Stopped {
        what: "writing a layer",
        source,
    })?
    .map_err(io("writing a layer"))
}

/// `kodata/` as ko ships it: under /var/run/ko, sorted. A symlink is followed only
/// when it resolves inside kodata/, so that no link can ship a file from elsewhere on
/// the build machine (a credential, say) into an image; special files are refused
/// before anything opens them.
fn kodata_entries(dir: &Path) -> Result<Vec<LayerEntry>, BuildError> {
    let root = std::fs::canonicalize(dir).map_err(io(format!("reading {}", dir.display())))?;
    let mut out = vec![LayerEntry::Dir {
        path: "var/run/ko".into(),
        mode: 0o755,
    }];
    let mut walking = vec![root.clone()];
    walk_kodata(&root, dir, "var/run/ko", &mut walking, &mut out)?;
    Ok(out)
}

/// One directory of kodata, named `shown` for messages; `walking` holds the resolved
/// directories from the root down to it, so that a link back up is caught.
fn walk_kodata(
    root: &Path,
    shown: &Path,
    rel: &str,
    walking: &mut Vec<PathBuf>,
    out: &mut Vec<LayerEntry>,
) -> Result<(), BuildError> {
    let real = walking.last().expect("the root is walked").clone();
    let mut names = std::fs::read_dir(&real)
        .and_then(|entries| {
            entries
                .map(|e| e.map(|e| e.file_name()))
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(io(format!("reading {}", shown.display())))?;
    names.sort();
    for name in names {
        let shown = shown.join(&name);
        let rel = format!("{rel}/{}", name.to_string_lossy());
        let refuse = |problem: String| BuildError::Kodata {
            path: shown.clone(),
            problem,
        };
        let reading = || io(format!("reading {}", shown.display()));
        let here = real.join(&name);
        let meta = std::fs::symlink_metadata(&here).map_err(reading())?;
        let (source, meta, is) = if meta.file_type().is_symlink() {
            let target = std::fs::canonicalize(&here).map_err(|e| {
                let to = std::fs::read_link(&here).unwrap_or_default();
                refuse(format!(
                    "is a symlink to {} that does not resolve: {e}",
                    to.display()
                ))
            })?;
            if !target.starts_with(root) {
                return Err(refuse(format!(
                    "is a symlink to {}, outside kodata/: only links within kodata/ are followed",
                    target.display()
                )));
            }
            let meta = std::fs::metadata(&target).map_err(reading())?;
            let is = format!("is a symlink to {},", target.display());
            (target, meta, is)
        } else {
            (here, meta, "is".to_string())
        };
        let kind = meta.file_type();
        if kind.is_dir() {
            if walking.contains(&source) {
                return Err(refuse(format!(
                    "{is} a directory that holds the link: a link cycle"
                )));
            }
            out.push(LayerEntry::Dir {
                path: rel.clone(),
                mode: 0o755,
            });
            walking.push(source);
            walk_kodata(root, &shown, &rel, walking, out)?;
            walking.pop();
        } else if kind.is_file() {
            out.push(LayerEntry::File {
                path: rel,
                mode: 0o555,
                source,
            });
        } else {
            return Err(refuse(format!(
                "{is} {}: kodata may hold only regular files, directories and links within it",
                special_kind(kind)
            )));
        }
    }
    Ok(())
}

/// What a file that is neither a regular file nor a directory is, for messages.
fn special_kind(kind: std::fs::FileType) -> &'static str {
    if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_char_device() {
        "a character device"
    } else {
        "a special file"
    }
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
        .map_err(|source| BuildError::Stopped {
            what: "hashing the wasm module",
            source,
        })?
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
        user: None,
    };
    Ok(Artifact::Image(assemble_wasm_artifact(&spec, blob)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A package dir with `kodata/` holding `a.txt` and `sub/b.txt`.
    fn kodata() -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("kodata");
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("a.txt"), "a").unwrap();
        std::fs::write(dir.join("sub/b.txt"), "b").unwrap();
        (tmp, dir)
    }

    fn message(dir: &Path) -> String {
        kodata_entries(dir).unwrap_err().to_string()
    }

    #[test]
    fn links_within_kodata_are_followed() {
        let (_tmp, dir) = kodata();
        symlink("sub/b.txt", dir.join("c.txt")).unwrap();
        symlink("sub", dir.join("linked")).unwrap();
        let real = std::fs::canonicalize(&dir).unwrap();
        let entries: Vec<(String, Option<PathBuf>)> = kodata_entries(&dir)
            .unwrap()
            .into_iter()
            .map(|e| match e {
                LayerEntry::Dir { path, .. } => (path, None),
                LayerEntry::File { path, source, .. } => (path, Some(source)),
            })
            .collect();
        let file = |p: &str| Some(real.join(p));
        assert_eq!(
            entries,
            vec![
                ("var/run/ko".into(), None),
                ("var/run/ko/a.txt".into(), file("a.txt")),
                ("var/run/ko/c.txt".into(), file("sub/b.txt")),
                ("var/run/ko/linked".into(), None),
                ("var/run/ko/linked/b.txt".into(), file("sub/b.txt")),
                ("var/run/ko/sub".into(), None),
                ("var/run/ko/sub/b.txt".into(), file("sub/b.txt")),
            ]
        );
    }

    #[test]
    fn a_link_out_of_kodata_is_refused_naming_both_ends() {
        let (tmp, dir) = kodata();
        let secret = tmp.path().join("secret.json");
        std::fs::write(&secret, "{}").unwrap();
        symlink("../../secret.json", dir.join("sub/c.json")).unwrap();
        assert_eq!(
            message(&dir),
            format!(
                "{} is a symlink to {}, outside kodata/: only links within kodata/ are followed",
                dir.join("sub/c.json").display(),
                std::fs::canonicalize(&secret).unwrap().display()
            )
        );
    }

    #[test]
    fn a_link_to_a_device_is_refused() {
        let (_tmp, dir) = kodata();
        symlink("/dev/null", dir.join("null")).unwrap();
        assert!(
            message(&dir).ends_with(
                "null is a symlink to /dev/null, outside kodata/: only links within kodata/ are followed"
            ),
            "{}",
            message(&dir)
        );
    }

    #[test]
    fn a_fifo_is_refused_without_being_opened() {
        let (_tmp, dir) = kodata();
        let fifo = dir.join("sub/pipe");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        assert_eq!(
            message(&dir),
            format!(
                "{} is a FIFO: kodata may hold only regular files, directories and links within it",
                fifo.display()
            )
        );
    }

    #[test]
    fn a_link_cycle_is_refused() {
        let (_tmp, dir) = kodata();
        symlink("..", dir.join("sub/up")).unwrap();
        assert_eq!(
            message(&dir),
            format!(
                "{} is a symlink to {}, a directory that holds the link: a link cycle",
                dir.join("sub/up").display(),
                std::fs::canonicalize(&dir).unwrap().display()
            )
        );
    }

    #[test]
    fn broken_and_looping_links_are_refused() {
        let (_tmp, dir) = kodata();
        symlink("missing.txt", dir.join("gone")).unwrap();
        let err = message(&dir);
        assert!(
            err.starts_with(&format!(
                "{} is a symlink to missing.txt that does not resolve:",
                dir.join("gone").display()
            )),
            "{err}"
        );
        std::fs::remove_file(dir.join("gone")).unwrap();
        symlink("loop2", dir.join("loop1")).unwrap();
        symlink("loop1", dir.join("loop2")).unwrap();
        let err = message(&dir);
        assert!(
            err.starts_with(&format!(
                "{} is a symlink to loop2 that does not resolve:",
                dir.join("loop1").display()
            )),
            "{err}"
        );
    }
}

//! An OCI image layout as one tar file (what skopeo and podman call `oci-archive:`):
//! the layout directory's files under their relative paths, with nothing in the tar
//! that depends on the machine or the moment, so the same layout always gives the
//! same bytes. And one image of a layout as the tar `docker load` reads
//! (`docker-archive:`), ko's `--tarball`, written the same way.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::image::Digest;

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("archiving {path}")]
    Read {
        path: PathBuf,
        #[source]
        cause: std::io::Error,
    },
    #[error("writing the archive {path}")]
    Write {
        path: PathBuf,
        #[source]
        cause: std::io::Error,
    },
    #[error("archiving {path}: only files and directories belong in an OCI layout, and this is a {kind}")]
    Unsupported { path: PathBuf, kind: &'static str },
    #[error("{0}")]
    NotOneImage(String),
}

/// Writes the layout at `layout` as a tar at `dest`, entries sorted by path, every
/// time `mtime`, owner 0:0 without names, directories 0755 and files 0644.
///
/// The tar is written beside `dest` and renamed onto it once complete, so a failure
/// leaves whatever was at `dest` before (or nothing), never half an archive.
pub fn write_archive(layout: &Path, dest: &Path, mtime: u64) -> Result<(), ArchiveError> {
    let mut found = Vec::new();
    collect(layout, Path::new(""), &mut found)?;
    let entries = found
        .into_iter()
        .map(|(relative, kind)| {
            let source = match kind {
                Kind::Dir => Source::Dir,
                Kind::File(size) => Source::File(layout.join(&relative), size),
            };
            (relative, source)
        })
        .collect();
    write_tar(dest, sorted(entries), mtime)
}

/// Entries in the byte order of their paths: the same on every file system.
fn sorted(mut entries: Vec<(PathBuf, Source)>) -> Vec<(PathBuf, Source)> {
    entries.sort_by(|a, b| a.0.as_os_str().cmp(b.0.as_os_str()));
    entries
}

/// Writes the image `digest` (one platform's manifest) of the layout at `layout` as
/// the tar `docker load` reads: its config and layers under their digests, and a
/// `manifest.json` naming them and `repo_tags`. Deterministic as [`write_archive`].
pub fn write_docker_archive(
    layout: &Path,
    digest: &str,
    repo_tags: &[String],
    dest: &Path,
    mtime: u64,
) -> Result<(), ArchiveError> {
    let parse = |d: &str| Digest::parse(d).map_err(|e| ArchiveError::NotOneImage(e.to_string()));
    let digest = parse(digest)?;
    let blob = |d: &Digest| -> Result<(PathBuf, u64), ArchiveError> {
        let path = layout.join("blobs/sha256").join(d.hex());
        let size = std::fs::metadata(&path)
            .map_err(|cause| ArchiveError::Read {
                path: path.clone(),
                cause,
            })?
            .len();
        Ok((path, size))
    };
    let (manifest_path, _) = blob(&digest)?;
    let manifest: serde_json::Value = std::fs::read(&manifest_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    if manifest.get("manifests").is_some() {
        return Err(ArchiveError::NotOneImage(format!(
            "{digest} is an index of {} images; docker load takes one: build one platform (--platform), or keep them all with --oci-archive",
            manifest["manifests"].as_array().map_or(0, Vec::len)
        )));
    }
    let (Some(config), Some(layers)) = (
        manifest["config"]["digest"].as_str(),
        manifest["layers"].as_array(),
    ) else {
        return Err(ArchiveError::NotOneImage(format!(
            "{digest} in the layout is not an image manifest"
        )));
    };
    let config = parse(config)?;
    let config_name = format!("{}.json", config.hex());
    let (config_path, config_size) = blob(&config)?;
    let mut entries = vec![(
        PathBuf::from(&config_name),
        Source::File(config_path, config_size),
    )];
    let mut layer_names = Vec::new();
    for layer in layers {
        let d = parse(layer["digest"].as_str().unwrap_or_default())?;
        let (path, size) = blob(&d)?;
        let gzip = layer["mediaType"]
            .as_str()
            .unwrap_or_default()
            .ends_with("gzip");
        let name = format!("{}.tar{}", d.hex(), if gzip { ".gz" } else { "" });
        layer_names.push(name.clone());
        entries.push((PathBuf::from(name), Source::File(path, size)));
    }
    let listing = serde_json::json!([{
        "Config": config_name,
        "RepoTags": repo_tags,
        "Layers": layer_names,
    }]);
    entries.push((
        PathBuf::from("manifest.json"),
        Source::Bytes(listing.to_string().into_bytes()),
    ));
    // A layer listed twice is stored once.
    let mut entries = sorted(entries);
    entries.dedup_by(|a, b| a.0 == b.0);
    write_tar(dest, entries, mtime)
}

/// What one tar entry holds.
enum Source {
    Dir,
    /// A file of this many bytes.
    File(PathBuf, u64),
    Bytes(Vec<u8>),
}

/// Writes `entries` (sorted by the caller) as a tar at `dest`: every time `mtime`,
/// owner 0:0 without names, directories 0755 and files 0644. Written beside `dest`
/// and renamed onto it once complete.
fn write_tar(dest: &Path, entries: Vec<(PathBuf, Source)>, mtime: u64) -> Result<(), ArchiveError> {
    let write_err = |cause| ArchiveError::Write {
        path: dest.to_path_buf(),
        cause,
    };
    let dir = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = tempfile::Builder::new()
        .prefix(".gantry-archive-")
        .tempfile_in(dir)
        .map_err(write_err)?;
    // Removed if a signal ends the run before the rename (the guard's drop is then a
    // no-op on a path that no longer exists).
    let _guard = crate::cleanup::Removal::new(tmp.path());
    let mut tar = tar::Builder::new(BufWriter::new(tmp.as_file()));
    for (relative, source) in &entries {
        let mut header = tar::Header::new_ustar();
        header.set_mtime(mtime);
        header.set_uid(0);
        header.set_gid(0);
        header.set_username("").map_err(write_err)?;
        header.set_groupname("").map_err(write_err)?;
        match source {
            Source::Dir => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                header.set_size(0);
                let mut name = relative.as_os_str().to_owned();
                name.push("/");
                tar.append_data(&mut header, Path::new(&name), std::io::empty())
                    .map_err(write_err)?;
            }
            Source::File(path, size) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(0o644);
                header.set_size(*size);
                let file = File::open(path).map_err(|cause| ArchiveError::Read {
                    path: path.clone(),
                    cause,
                })?;
                let reader = Exact {
                    inner: file.take(*size),
                    remaining: *size,
                };
                tar.append_data(&mut header, relative, reader)
                    .map_err(|cause| ArchiveError::Read {
                        path: path.clone(),
                        cause,
                    })?;
            }
            Source::Bytes(bytes) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(0o644);
                header.set_size(bytes.len() as u64);
                tar.append_data(&mut header, relative, bytes.as_slice())
                    .map_err(write_err)?;
            }
        }
    }
    tar.into_inner()
        .and_then(|w| w.into_inner().map_err(|e| e.into_error()))
        .and_then(|mut f| f.flush())
        .map_err(write_err)?;
    tmp.as_file().sync_all().map_err(write_err)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(write_err)?;
    }
    tmp.persist(dest).map_err(|e| write_err(e.error))?;
    Ok(())
}

enum Kind {
    Dir,
    /// A regular file of this many bytes.
    File(u64),
}

/// Every directory and file under `root/relative`, as paths relative to `root`.
/// Symbolic links are refused rather than followed: a layout gantry writes has
/// none, and following one could pull a file from outside the layout into the tar.
fn collect(
    root: &Path,
    relative: &Path,
    out: &mut Vec<(PathBuf, Kind)>,
) -> Result<(), ArchiveError> {
    let dir = root.join(relative);
    let read_err = |path: &Path| {
        let path = path.to_path_buf();
        move |cause| ArchiveError::Read { path, cause }
    };
    for entry in std::fs::read_dir(&dir).map_err(read_err(&dir))? {
        let entry = entry.map_err(read_err(&dir))?;
        let path = entry.path();
        let meta = std::fs::symlink_metadata(&path).map_err(read_err(&path))?;
        let name = relative.join(entry.file_name());
        let kind = meta.file_type();
        if kind.is_dir() {
            out.push((name.clone(), Kind::Dir));
            collect(root, &name, out)?;
        } else if kind.is_file() {
            out.push((name, Kind::File(meta.len())));
        } else {
            return Err(ArchiveError::Unsupported {
                path,
                kind: if kind.is_symlink() {
                    "symbolic link"
                } else {
                    "special file"
                },
            });
        }
    }
    Ok(())
}

/// Gives exactly `remaining` bytes or fails: a file that shrank after its size was
/// read would otherwise leave a tar whose header promises more than follows.
struct Exact<R> {
    inner: R,
    remaining: u64,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && self.remaining > 0 && !buf.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "the file ended {} bytes early (it changed while being archived)",
                    self.remaining
                ),
            ));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small layout; `variant` changes what the file system says about it (times,
    /// permissions, creation order) but not its content.
    fn layout(root: &Path, variant: bool) {
        let blobs = root.join("blobs/sha256");
        std::fs::create_dir_all(&blobs).unwrap();
        let files: Vec<(PathBuf, &[u8])> = vec![
            (
                root.join("oci-layout"),
                br#"{"imageLayoutVersion":"1.0.0"}"#,
            ),
            (root.join("index.json"), b"{\"manifests\":[]}"),
            (blobs.join("bb"), b"second blob"),
            (blobs.join("aa"), b"first blob"),
        ];
        let ordered: Vec<_> = if variant {
            files.into_iter().rev().collect()
        } else {
            files
        };
        for (path, bytes) in ordered {
            std::fs::write(&path, bytes).unwrap();
            if variant {
                use std::os::unix::fs::PermissionsExt as _;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
                File::options()
                    .write(true)
                    .open(&path)
                    .unwrap()
                    .set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(12345))
                    .unwrap();
            }
        }
    }

    #[test]
    fn same_layout_same_bytes_with_fixed_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        layout(&a, false);
        layout(&b, true);
        let (ta, tb) = (dir.path().join("a.tar"), dir.path().join("b.tar"));
        write_archive(&a, &ta, 1_700_000_000).unwrap();
        write_archive(&b, &tb, 1_700_000_000).unwrap();
        let bytes = std::fs::read(&ta).unwrap();
        assert_eq!(bytes, std::fs::read(&tb).unwrap(), "same layout, same tar");

        let mut archive = tar::Archive::new(bytes.as_slice());
        let mut seen = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let header = entry.header().clone();
            let path = entry.path().unwrap().display().to_string();
            assert_eq!(header.mtime().unwrap(), 1_700_000_000, "{path}");
            assert_eq!((header.uid().unwrap(), header.gid().unwrap()), (0, 0));
            assert_eq!(header.username().unwrap(), Some(""));
            assert_eq!(header.groupname().unwrap(), Some(""));
            let dir = header.entry_type().is_dir();
            assert_eq!(
                header.mode().unwrap(),
                if dir { 0o755 } else { 0o644 },
                "{path}"
            );
            let mut content = Vec::new();
            entry.read_to_end(&mut content).unwrap();
            if path == "blobs/sha256/aa" {
                assert_eq!(content, b"first blob");
            }
            seen.push(path);
        }
        assert_eq!(
            seen,
            [
                "blobs/",
                "blobs/sha256/",
                "blobs/sha256/aa",
                "blobs/sha256/bb",
                "index.json",
                "oci-layout"
            ]
        );
        // Another time gives other bytes: the time is the caller's, not the files'.
        let tc = dir.path().join("c.tar");
        write_archive(&a, &tc, 0).unwrap();
        assert_ne!(bytes, std::fs::read(&tc).unwrap());
    }

    #[test]
    fn a_failure_leaves_the_previous_archive_and_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let layout_dir = dir.path().join("layout");
        layout(&layout_dir, false);
        let dest = dir.path().join("out.tar");
        std::fs::write(&dest, b"previous").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", layout_dir.join("blobs/sha256/cc")).unwrap();
        let err = write_archive(&layout_dir, &dest, 0).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert_eq!(std::fs::read(&dest).unwrap(), b"previous");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(
            names.iter().all(|n| !n.starts_with(".gantry-archive-")),
            "a temporary file was left: {names:?}"
        );
        let missing = write_archive(&dir.path().join("nope"), &dest, 0).unwrap_err();
        assert!(missing.to_string().contains("nope"), "{missing}");
    }
}

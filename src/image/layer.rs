//! Deterministic tar+gzip layers written in one streaming pass: the tar bytes are
//! hashed (diff_id) on their way into gzip, and the gzip bytes are hashed (digest) on
//! their way to disk. Memory use does not grow with the binary's size.
//!
//! The gzip stream is made by [`ParallelGzip`]: members compressed on every core.
//!
//! An upload need not wait for the layer either: [`growing`] pairs the writer with a
//! [`GrowingLayer`] that reads the file as far as it has been written, so its bytes can
//! go to a registry while the rest is still being compressed.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncReadExt;
use tokio::sync::watch;

use super::gzip::ParallelGzip;
use super::{media_type, Blob, BlobSource, Descriptor, Digest};

/// One entry of a layer, in the order it is written.
#[derive(Debug, Clone)]
pub enum LayerEntry {
    /// A directory at `path` (relative, no leading slash).
    Dir { path: String, mode: u32 },
    /// A regular file at `path` whose bytes come from `source` on disk.
    File {
        path: String,
        mode: u32,
        source: PathBuf,
    },
}

/// A writer that hashes and counts what passes through it.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<W> Hashing<W> {
    fn new(inner: W) -> Self {
        Hashing {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    fn digest(&self) -> Digest {
        Digest::from_hash(&self.hasher.clone().finalize())
    }
}

/// A regular file's bytes, exactly as many as its size when opened: the tar header
/// announces that size, so a file that shrinks or grows meanwhile (or a /proc file,
/// whose size says 0) must fail the layer rather than corrupt it.
struct Exact<'a> {
    file: File,
    path: &'a Path,
    size: u64,
    left: u64,
}

impl<'a> Exact<'a> {
    fn open(path: &'a Path) -> io::Result<Self> {
        let named = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
        // Non-blocking, so that opening a FIFO cannot wait for a writer.
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(named)?;
        let meta = file.metadata().map_err(named)?;
        if !meta.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a regular file", path.display()),
            ));
        }
        Ok(Exact {
            file,
            path,
            size: meta.len(),
            left: meta.len(),
        })
    }
}

impl Read for Exact<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            let n = self.file.read(&mut [0u8])?;
            if n != 0 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{} grew while being read: it has more than the {} bytes its size announced",
                        self.path.display(),
                        self.size
                    ),
                ));
            }
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.file.read(&mut buf[..want])?;
        if n == 0 && want > 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "{} shrank while being read: expected {} bytes, got {}",
                    self.path.display(),
                    self.size,
                    self.size - self.left
                ),
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// How much of a layer file is on disk.
#[derive(Debug, Clone)]
enum Growth {
    Partial(u64),
    Whole(Descriptor),
}

/// The writing side of [`growing`]: [`write_layer`] says through it how far it got.
pub struct LayerGrowth(watch::Sender<Growth>);

/// A layer file being written, read as far as it goes.
#[derive(Clone)]
pub struct GrowingLayer {
    path: PathBuf,
    growth: watch::Receiver<Growth>,
}

/// A new layer file in `dir`, and a way to follow it while [`write_layer`] writes it.
pub fn growing(dir: &Path) -> io::Result<(LayerFile, LayerGrowth, GrowingLayer)> {
    let file = LayerFile::create_in(dir)?;
    let (sender, growth) = watch::channel(Growth::Partial(0));
    let follower = GrowingLayer {
        path: file.path.clone(),
        growth,
    };
    Ok((file, LayerGrowth(sender), follower))
}

impl GrowingLayer {
    /// The layer's bytes as they reach the file, to its end; an error if the writer
    /// stopped before the layer was whole.
    pub fn bytes(&self) -> BoxStream<'static, io::Result<Bytes>> {
        const PIECE: u64 = 256 * 1024;
        let state = (self.path.clone(), self.growth.clone(), None, 0u64);
        futures::stream::try_unfold(state, |(path, mut growth, file, offset)| async move {
            loop {
                let (written, whole) = match &*growth.borrow_and_update() {
                    Growth::Partial(n) => (*n, false),
                    Growth::Whole(d) => (d.size, true),
                };
                if written > offset {
                    let mut opened = match file {
                        Some(f) => f,
                        None => tokio::fs::File::open(&path).await?,
                    };
                    let mut piece = vec![0; (written - offset).min(PIECE) as usize];
                    opened.read_exact(&mut piece).await?;
                    let next = offset + piece.len() as u64;
                    return Ok(Some((
                        Bytes::from(piece),
                        (path, growth, Some(opened), next),
                    )));
                }
                if whole {
                    return Ok(None);
                }
                if growth.changed().await.is_err() {
                    return Err(io::Error::other(
                        "the layer stopped being written before it was whole",
                    ));
                }
            }
        })
        .boxed()
    }

    /// The layer's descriptor once it is whole; None if writing it failed.
    pub async fn descriptor(mut self) -> Option<Descriptor> {
        let whole = self
            .growth
            .wait_for(|g| matches!(g, Growth::Whole(_)))
            .await
            .ok()?;
        match &*whole {
            Growth::Whole(d) => Some(d.clone()),
            Growth::Partial(_) => None,
        }
    }
}

/// A writer that says how many bytes reached the file, when someone follows it.
struct Announcing {
    file: File,
    written: u64,
    growth: Option<LayerGrowth>,
}

impl Write for Announcing {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.written += n as u64;
        if let Some(LayerGrowth(sender)) = &self.growth {
            sender.send_replace(Growth::Partial(self.written));
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// A new, empty file for a layer.
pub struct LayerFile {
    file: File,
    path: PathBuf,
}

impl LayerFile {
    /// A file of a name of its own in `dir`, kept until the run's work directory goes.
    pub fn create_in(dir: &Path) -> io::Result<Self> {
        let file = tempfile::Builder::new()
            .prefix("layer-")
            .suffix(".tar.gz")
            .tempfile_in(dir)?;
        let (file, path) = file.keep().map_err(|e| e.error)?;
        Ok(LayerFile { file, path })
    }
}

/// Writes `entries` as a gzipped tar to `out` and returns the layer blob and its
/// diff_id, telling `growth` (if any) how far it got. Owner 0:0, mtime `mtime`, no
/// user or group names: the bytes depend only on the entries' contents, so equal
/// inputs give equal digests anywhere.
pub fn write_layer(
    out: LayerFile,
    entries: &[LayerEntry],
    mtime: u64,
    growth: Option<LayerGrowth>,
) -> io::Result<(Blob, Digest)> {
    let LayerFile { file, path } = out;
    let file = Announcing {
        file,
        written: 0,
        growth,
    };
    let compressed = Hashing::new(BufWriter::with_capacity(256 * 1024, file));
    let gzip = ParallelGzip::new(compressed);
    let mut tar = tar::Builder::new(Hashing::new(gzip));
    tar.mode(tar::HeaderMode::Deterministic);

    for entry in entries {
        let mut header = tar::Header::new_gnu();
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(mtime);
        match entry {
            LayerEntry::Dir { path, mode } => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(*mode);
                header.set_size(0);
                tar.append_data(
                    &mut header,
                    format!("{}/", path.trim_end_matches('/')),
                    io::empty(),
                )?;
            }
            LayerEntry::File { path, mode, source } => {
                let src = Exact::open(source)?;
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(*mode);
                header.set_size(src.size);
                tar.append_data(&mut header, path, src)?;
            }
        }
    }

    let uncompressed = tar.into_inner()?;
    let diff_id = uncompressed.digest();
    let compressed = uncompressed.inner.finish()?;
    let digest = compressed.digest();
    let size = compressed.count;
    // Flushed, not synced: the file lives in this run's work directory (or is
    // written again from its binary), so a crash loses nothing worth an fsync.
    let file = compressed.inner.into_inner().map_err(|e| e.into_error())?;

    let descriptor = Descriptor::new(media_type::OCI_LAYER_GZIP, digest, size);
    if let Some(LayerGrowth(sender)) = &file.growth {
        sender.send_replace(Growth::Whole(descriptor.clone()));
    }
    let blob = Blob {
        descriptor,
        source: BlobSource::File(path),
    };
    Ok((blob, diff_id))
}

#[cfg(test)]
mod tests {
    use super::super::gzip::GZIP_MEMBER;
    use super::*;
    use flate2::read::MultiGzDecoder as GzDecoder;
    use std::io::Read;

    fn read_blob(blob: &Blob) -> Vec<u8> {
        match &blob.source {
            BlobSource::File(p) => std::fs::read(p).unwrap(),
            other => panic!("unexpected source {other:?}"),
        }
    }

    #[test]
    fn layers_are_reproducible_and_digests_are_right() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("app");
        std::fs::write(&bin, b"\0asm fake binary").unwrap();
        let entries = vec![
            LayerEntry::Dir {
                path: "ko-app".into(),
                mode: 0o755,
            },
            LayerEntry::File {
                path: "ko-app/app".into(),
                mode: 0o555,
                source: bin,
            },
        ];
        let (a, diff_a) =
            write_layer(LayerFile::create_in(dir.path()).unwrap(), &entries, 0, None).unwrap();
        let (b, diff_b) =
            write_layer(LayerFile::create_in(dir.path()).unwrap(), &entries, 0, None).unwrap();
        assert_eq!(a.descriptor, b.descriptor);
        assert_eq!(diff_a, diff_b);

        let gz = read_blob(&a);
        assert_eq!(super::super::Digest::of(&gz), a.descriptor.digest);
        assert_eq!(gz.len() as u64, a.descriptor.size);
        let mut tar_bytes = Vec::new();
        GzDecoder::new(&gz[..]).read_to_end(&mut tar_bytes).unwrap();
        assert_eq!(super::super::Digest::of(&tar_bytes), diff_a);

        let mut archive = tar::Archive::new(&tar_bytes[..]);
        let names: Vec<(String, u32, u64)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    h.mode().unwrap(),
                    h.mtime().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            names,
            vec![
                ("ko-app/".to_string(), 0o755, 0),
                ("ko-app/app".to_string(), 0o555, 0)
            ]
        );
    }

    /// A follower reads exactly the layer's bytes while they are written, and learns
    /// its descriptor at the end; one whose writer fails gets an error, not a short
    /// layer.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_growing_layer_is_read_whole_while_it_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("app");
        let data: Vec<u8> = (0..3 * GZIP_MEMBER + 777)
            .map(|i| (i * 13 % 253) as u8 ^ (i >> 11) as u8)
            .collect();
        std::fs::write(&bin, &data).unwrap();
        let (out, growth, follower) = growing(dir.path()).unwrap();
        let reading = tokio::spawn({
            let follower = follower.clone();
            async move {
                let mut bytes = Vec::new();
                let mut stream = follower.bytes();
                while let Some(piece) = stream.next().await {
                    bytes.extend_from_slice(&piece.unwrap());
                }
                (bytes, follower.descriptor().await)
            }
        });
        let entries = file(bin);
        let (blob, _) = tokio::task::spawn_blocking(move || {
            write_layer(out, &entries, 0, Some(growth)).unwrap()
        })
        .await
        .unwrap();
        let (bytes, descriptor) = reading.await.unwrap();
        assert_eq!(bytes, read_blob(&blob));
        assert_eq!(descriptor, Some(blob.descriptor));

        let fifo = dir.path().join("pipe");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        let (out, growth, follower) = growing(dir.path()).unwrap();
        let entries = file(fifo);
        tokio::task::spawn_blocking(move || write_layer(out, &entries, 0, Some(growth)))
            .await
            .unwrap()
            .unwrap_err();
        let mut stream = follower.bytes();
        let mut failed = false;
        while let Some(piece) = stream.next().await {
            failed |= piece.is_err();
        }
        assert!(failed, "a layer that was never finished read as whole");
        assert_eq!(follower.descriptor().await, None);
    }

    fn file(source: PathBuf) -> Vec<LayerEntry> {
        vec![LayerEntry::File {
            path: "f".into(),
            mode: 0o444,
            source,
        }]
    }

    #[test]
    fn a_file_whose_size_is_not_its_length_fails_the_layer() {
        let dir = tempfile::tempdir().unwrap();
        let err = write_layer(
            LayerFile::create_in(dir.path()).unwrap(),
            &file("/proc/self/status".into()),
            0,
            None,
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("/proc/self/status grew while being read"),
            "{err}"
        );
    }

    #[test]
    fn a_fifo_fails_the_layer_without_waiting_for_a_writer() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        let err = write_layer(
            LayerFile::create_in(dir.path()).unwrap(),
            &file(fifo.clone()),
            0,
            None,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("{} is not a regular file", fifo.display())
        );
    }

    #[test]
    fn a_file_that_changes_after_its_size_was_taken_fails() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"12345").unwrap();
        let mut src = Exact::open(&path).unwrap();
        std::fs::write(&path, b"123").unwrap();
        let err = io::copy(&mut src, &mut io::sink()).unwrap_err();
        let shrank = format!(
            "{} shrank while being read: expected 5 bytes, got 3",
            path.display()
        );
        assert_eq!(err.to_string(), shrank);

        let mut src = Exact::open(&path).unwrap();
        std::fs::write(&path, b"12345").unwrap();
        let err = io::copy(&mut src, &mut io::sink()).unwrap_err();
        assert!(err.to_string().contains("grew while being read"), "{err}");
    }
}

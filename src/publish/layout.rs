//! An OCI image layout directory (image-spec `image-layout.md`): `oci-layout`,
//! `index.json`, and every blob under `blobs/sha256/`. It holds the same bytes a push
//! would send, so `skopeo copy oci:DIR docker://…` keeps every digest.

use std::io::Write;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures::StreamExt;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;

use super::{BlobOutcome, ImageName, Pending, PublishError, Publisher, Registry};
use crate::image::{annotation, canonical_json, media_type, Blob, BlobSource, Descriptor, Digest};

/// Publishes into an OCI layout. Repositories become `org.opencontainers.image.ref.name`
/// prefixes (`name:tag`); an empty repository means the tag alone.
pub struct LayoutPublisher<'r> {
    root: PathBuf,
    /// Where base-image layers are fetched from, when there is a base.
    registry: Option<&'r Registry>,
    /// Serialises read-modify-write of index.json.
    index_lock: Mutex<()>,
}

impl<'r> LayoutPublisher<'r> {
    /// Creates the layout (or opens an existing one, keeping what it holds).
    pub fn create(root: &Path, registry: Option<&'r Registry>) -> Result<Self, PublishError> {
        let io = |e: std::io::Error| layout_err(root, e);
        std::fs::create_dir_all(root.join("blobs/sha256")).map_err(io)?;
        let marker = root.join("oci-layout");
        if !marker.exists() {
            write_atomic(&marker, br#"{"imageLayoutVersion":"1.0.0"}"#).map_err(io)?;
        }
        let index = root.join("index.json");
        if !index.exists() {
            write_atomic(&index, &canonical_json(&empty_index())).map_err(io)?;
        }
        Ok(LayoutPublisher {
            root: root.to_path_buf(),
            registry,
            index_lock: Mutex::new(()),
        })
    }

    /// Opens an existing layout for reading (no base-image registry).
    pub fn open(root: &Path) -> Result<Self, PublishError> {
        if !root.join("oci-layout").is_file() {
            return Err(PublishError::Layout {
                path: root.display().to_string(),
                detail: "not an OCI image layout (no oci-layout file)".into(),
            });
        }
        Ok(LayoutPublisher {
            root: root.to_path_buf(),
            registry: None,
            index_lock: Mutex::new(()),
        })
    }

    fn blob_path(&self, descriptor: &Descriptor) -> PathBuf {
        self.root.join("blobs/sha256").join(descriptor.hex())
    }

    fn has_blob(&self, descriptor: &Descriptor) -> bool {
        std::fs::metadata(self.blob_path(descriptor)).is_ok_and(|m| m.len() == descriptor.size)
    }

    async fn copy_remote(
        &self,
        repository: &str,
        descriptor: &Descriptor,
    ) -> Result<(), PublishError> {
        let registry = self.registry.ok_or_else(|| PublishError::Layout {
            path: self.root.display().to_string(),
            detail: format!(
                "blob {} lives in {repository}, but no registry client was set up",
                descriptor.digest
            ),
        })?;
        let name = ImageName::parse(repository)?;
        let mut stream = registry.blob_stream(&name, descriptor).await?;
        let (tmp, tmp_path) = tempfile::NamedTempFile::new_in(self.root.join("blobs"))
            .map_err(|e| layout_err(&self.root, e))?
            .into_parts();
        let mut file = tokio::fs::File::from_std(tmp);
        let mut hasher = Sha256::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| PublishError::Io {
                context: format!("downloading {} from {name}", descriptor.digest),
                cause: e,
            })?;
            hasher.update(&chunk);
            file.write_all(&chunk)
                .await
                .map_err(|e| layout_err(&self.root, e))?;
        }
        file.sync_all()
            .await
            .map_err(|e| layout_err(&self.root, e))?;
        let actual = crate::image::Digest::from_hash(&hasher.finalize());
        if actual != descriptor.digest {
            return Err(PublishError::DigestMismatch {
                what: format!("blob from {name}"),
                expected: descriptor.digest.to_string(),
                actual: actual.to_string(),
            });
        }
        tmp_path
            .persist(self.blob_path(descriptor))
            .map_err(|e| layout_err(&self.root, e.error))?;
        Ok(())
    }

    fn update_index(&self, ref_name: &str, descriptor: &Descriptor) -> Result<(), PublishError> {
        let path = self.root.join("index.json");
        let io = |e: std::io::Error| layout_err(&self.root, e);
        let mut index: Value = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| PublishError::Layout {
                path: path.display().to_string(),
                detail: format!("index.json is not valid JSON ({e}); remove the directory or pick another --oci-layout"),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => empty_index(),
            Err(e) => return Err(io(e)),
        };
        let mut entry = descriptor.clone();
        entry.platform = None;
        entry
            .annotations
            .insert(annotation::REF_NAME.into(), ref_name.to_string());
        let mut manifests: Vec<Value> = index["manifests"].as_array().cloned().unwrap_or_default();
        manifests.retain(|m| m["annotations"][annotation::REF_NAME] != ref_name);
        manifests.push(json!(entry));
        manifests.sort_by_key(|m| {
            m["annotations"][annotation::REF_NAME]
                .as_str()
                .unwrap_or("")
                .to_string()
        });
        index["manifests"] = Value::Array(manifests);
        index["schemaVersion"] = json!(2);
        index["mediaType"] = json!(media_type::OCI_INDEX);
        write_atomic(&path, &canonical_json(&index)).map_err(io)
    }
}

/// `tag`, or `repository:tag` when a layout holds several packages.
fn ref_name(repository: &str, tag: &str) -> String {
    if repository.is_empty() {
        tag.to_string()
    } else {
        format!("{repository}:{tag}")
    }
}

fn empty_index() -> Value {
    json!({"schemaVersion": 2, "mediaType": media_type::OCI_INDEX, "manifests": []})
}

fn layout_err(root: &Path, e: std::io::Error) -> PublishError {
    PublishError::Layout {
        path: root.display().to_string(),
        detail: e.to_string(),
    }
}

/// Writes through a temporary file and a rename, so a crash never leaves half a file.
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

// The work of each `Publisher` call (inherent methods win over the trait's names).
impl LayoutPublisher<'_> {
    async fn push_blob(&self, _repository: &str, blob: &Blob) -> Result<BlobOutcome, PublishError> {
        if self.has_blob(&blob.descriptor) {
            return Ok(BlobOutcome::Existed);
        }
        let dest = self.blob_path(&blob.descriptor);
        match &blob.source {
            BlobSource::Bytes(bytes) | BlobSource::Unpublished(bytes) => {
                write_atomic(&dest, bytes).map_err(|e| layout_err(&self.root, e))?
            }
            BlobSource::File(src) => {
                // A hard link costs nothing when the work dir shares the file system.
                if std::fs::hard_link(src, &dest).is_err() {
                    let tmp = dest.with_extension("partial");
                    std::fs::copy(src, &tmp).map_err(|e| layout_err(&self.root, e))?;
                    std::fs::rename(&tmp, &dest).map_err(|e| layout_err(&self.root, e))?;
                }
            }
            BlobSource::Remote { repository } => {
                self.copy_remote(repository, &blob.descriptor).await?
            }
        }
        Ok(BlobOutcome::Uploaded)
    }

    async fn push_manifest(
        &self,
        _repository: &str,
        descriptor: &Descriptor,
        bytes: &Bytes,
    ) -> Result<(), PublishError> {
        if !self.has_blob(descriptor) {
            write_atomic(&self.blob_path(descriptor), bytes)
                .map_err(|e| layout_err(&self.root, e))?;
        }
        Ok(())
    }

    async fn has_manifest(
        &self,
        repository: &str,
        at: &str,
    ) -> Result<Option<Digest>, PublishError> {
        Ok(self
            .fetch_manifest(repository, at)
            .await?
            .map(|bytes| crate::image::Digest::of(&bytes)))
    }

    /// An OCI layout has no referrers API: the fallback index is the list.
    async fn referrers(
        &self,
        _repository: &str,
        _subject: &str,
    ) -> Result<Option<Vec<Value>>, PublishError> {
        Ok(None)
    }

    async fn fetch_manifest(
        &self,
        repository: &str,
        tag: &str,
    ) -> Result<Option<Bytes>, PublishError> {
        if tag.starts_with("sha256:") {
            let path = self.path_of(tag)?;
            return Ok(std::fs::read(path).ok().map(Bytes::from));
        }
        let ref_name = ref_name(repository, tag);
        let index: Value = match std::fs::read(self.root.join("index.json")) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|_| empty_index()),
            Err(_) => return Ok(None),
        };
        let found = index["manifests"].as_array().and_then(|m| {
            m.iter()
                .find(|d| d["annotations"][annotation::REF_NAME] == ref_name.as_str())
        });
        let Some(digest) = found.and_then(|d| d["digest"].as_str()) else {
            return Ok(None);
        };
        let path = self.path_of(digest)?;
        std::fs::read(path)
            .map(|b| Some(Bytes::from(b)))
            .map_err(|e| layout_err(&self.root, e))
    }

    /// Where the blob `digest` is: a digest that is not `sha256:` and 64 hex digits
    /// (from a damaged or hostile index) names no path, so it cannot lead outside.
    fn path_of(&self, digest: &str) -> Result<PathBuf, PublishError> {
        let digest = Digest::parse(digest).map_err(|e| PublishError::Layout {
            path: self.root.display().to_string(),
            detail: e.to_string(),
        })?;
        Ok(self.root.join("blobs/sha256").join(digest.hex()))
    }

    async fn fetch_blob(&self, _repository: &str, digest: &str) -> Result<Bytes, PublishError> {
        let path = self.path_of(digest)?;
        let bytes = std::fs::read(&path).map_err(|e| layout_err(&self.root, e))?;
        let actual = crate::image::Digest::of(&bytes);
        if actual != digest {
            return Err(PublishError::DigestMismatch {
                what: path.display().to_string(),
                expected: digest.to_string(),
                actual: actual.to_string(),
            });
        }
        Ok(Bytes::from(bytes))
    }

    async fn tag(
        &self,
        repository: &str,
        tag: &str,
        descriptor: &Descriptor,
        bytes: &Bytes,
    ) -> Result<(), PublishError> {
        self.push_manifest(repository, descriptor, bytes).await?;
        let ref_name = ref_name(repository, tag);
        let _guard = self.index_lock.lock().await;
        self.update_index(&ref_name, descriptor)
    }
}

impl Publisher for LayoutPublisher<'_> {
    fn push_blob<'a>(&'a self, repository: &'a str, blob: &'a Blob) -> Pending<'a, BlobOutcome> {
        Box::pin(self.push_blob(repository, blob))
    }

    fn push_manifest<'a>(
        &'a self,
        repository: &'a str,
        descriptor: &'a Descriptor,
        bytes: &'a Bytes,
    ) -> Pending<'a, ()> {
        Box::pin(self.push_manifest(repository, descriptor, bytes))
    }

    fn has_manifest<'a>(&'a self, repository: &'a str, at: &'a str) -> Pending<'a, Option<Digest>> {
        Box::pin(self.has_manifest(repository, at))
    }

    fn referrers<'a>(
        &'a self,
        repository: &'a str,
        subject: &'a str,
    ) -> Pending<'a, Option<Vec<Value>>> {
        Box::pin(self.referrers(repository, subject))
    }

    fn fetch_manifest<'a>(
        &'a self,
        repository: &'a str,
        at: &'a str,
    ) -> Pending<'a, Option<Bytes>> {
        Box::pin(self.fetch_manifest(repository, at))
    }

    fn fetch_blob<'a>(&'a self, repository: &'a str, digest: &'a str) -> Pending<'a, Bytes> {
        Box::pin(self.fetch_blob(repository, digest))
    }

    fn tag<'a>(
        &'a self,
        repository: &'a str,
        tag: &'a str,
        descriptor: &'a Descriptor,
        bytes: &'a Bytes,
    ) -> Pending<'a, ()> {
        Box::pin(self.tag(repository, tag, descriptor, bytes))
    }
}

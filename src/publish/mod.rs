//! Publishing: one `Publisher` trait with a registry and an OCI image layout behind it,
//! and the order every destination keeps — blobs, then image manifests, then indexes,
//! then tags — so a tag never points at something half-written.

pub mod archive;
mod layout;
#[cfg(test)]
pub(crate) mod memory;
mod reference;
mod registry;
mod token;
mod transport;

pub use layout::LayoutPublisher;
pub use reference::{is_tag, parse_reference, ImageName};
pub use registry::{Registry, RegistryOptions};
pub use transport::NetworkSettings;

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use futures::{stream, StreamExt, TryStreamExt};
use serde::Serialize;

use crate::auth::AuthError;
use crate::image::{Artifact, Blob, Descriptor, Digest, Image};

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("invalid image reference {reference:?}: {reason}")]
    Reference { reference: String, reason: String },
    #[error("{}", unreachable_message(registry, *cause, detail))]
    Unreachable {
        registry: String,
        cause: ConnectFailure,
        detail: String,
    },
    #[error("registry {registry} refused access to {repository} ({detail}).\n{}", credentials_hint(registry, used.as_deref(), searched))]
    AuthRefused {
        registry: String,
        repository: String,
        detail: String,
        /// Where the credentials sent came from; None when none were found.
        used: Option<String>,
        /// Every place looked in, for when none were found.
        searched: String,
    },
    #[error("registry {registry}: {action} in {repository} failed: {detail}")]
    Registry {
        registry: String,
        repository: String,
        action: String,
        detail: String,
    },
    #[error("registry {registry}: {request} failed after {attempts} attempts: {detail}\n(the registry or the network between is failing; try again later, or raise --registry-attempts)")]
    GaveUp {
        registry: String,
        request: String,
        detail: String,
        attempts: u32,
    },
    #[error("registry {registry}: {request} stalled: nothing was sent or received for {seconds} s\n(the registry stopped answering; try again, or raise --stall-timeout / GANTRY_STALL_TIMEOUT on a very slow link)")]
    Stalled {
        registry: String,
        request: String,
        seconds: f64,
    },
    #[error("OCI layout {path}: {detail}")]
    Layout { path: String, detail: String },
    #[error("{what} has digest {actual}, expected {expected}")]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    NotADigest(#[from] crate::image::NotADigest),
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        cause: std::io::Error,
    },
}

/// Why a registry that never answered could not be reached: each has its own remedy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectFailure {
    /// The host name does not resolve (offline, or a typo).
    NoSuchHost,
    /// Nothing listens at that address and port.
    Refused,
    /// The TLS handshake failed (often: the registry speaks plain HTTP).
    Tls,
    Other,
}

fn unreachable_message(registry: &str, cause: ConnectFailure, detail: &str) -> String {
    let host = registry.rsplit_once(':').map_or(registry, |(h, _)| h);
    match cause {
        ConnectFailure::NoSuchHost => {
            format!("cannot resolve host {host}: offline, or a typo in the registry's name?")
        }
        ConnectFailure::Refused => format!(
            "cannot reach registry {registry}: nothing is listening there (connection refused); is the registry running, and is the port right?"
        ),
        ConnectFailure::Tls => format!(
            "cannot reach registry {registry} over HTTPS: {detail}\n(if {registry} serves plain HTTP, pass --insecure-registry {registry})"
        ),
        ConnectFailure::Other => format!("cannot reach registry {registry}: {detail}"),
    }
}

fn credentials_hint(registry: &str, used: Option<&str>, searched: &str) -> String {
    match used {
        Some(source) => format!(
            "The credentials sent came from {source}: check that they are current and may use this repository, or log in again (`docker login {registry}`)."
        ),
        None => format!(
            "No credentials for {registry} were found (looked in: {searched}).\nLog in (`docker login {registry}`), or set them in one of those places."
        ),
    }
}

/// What making a blob present took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobOutcome {
    /// The destination already had it (HEAD check); nothing sent.
    Existed,
    /// Cross-repository mount inside one registry; nothing sent.
    Mounted,
    /// Bytes were sent.
    Uploaded,
}

/// What a [`Publisher`] call returns: boxed, so that the trait is usable as
/// `dyn Publisher` and callers need not know which destination they write to.
pub type Pending<'a, T> = Pin<Box<dyn Future<Output = Result<T, PublishError>> + Send + 'a>>;

/// A destination for images, bound to nothing: every call names the repository.
pub trait Publisher: Sync {
    /// Makes `blob` present in `repository`.
    fn push_blob<'a>(&'a self, repository: &'a str, blob: &'a Blob) -> Pending<'a, BlobOutcome>;

    /// Stores a manifest or index by digest (no tag).
    fn push_manifest<'a>(
        &'a self,
        repository: &'a str,
        descriptor: &'a Descriptor,
        bytes: &'a Bytes,
    ) -> Pending<'a, ()>;

    /// The digest a tag (or `sha256:` digest) names, or None when there is none.
    fn has_manifest<'a>(&'a self, repository: &'a str, at: &'a str) -> Pending<'a, Option<Digest>>;

    /// The referrers of `subject` (descriptors, with their annotations) when the
    /// destination lists them itself (the OCI 1.1 referrers API); None when it does
    /// not, and the `sha256-<hex>` fallback index must be kept instead.
    fn referrers<'a>(
        &'a self,
        repository: &'a str,
        subject: &'a str,
    ) -> Pending<'a, Option<Vec<serde_json::Value>>>;

    /// The manifest a tag (or `sha256:` digest) names, or None when there is none.
    fn fetch_manifest<'a>(&'a self, repository: &'a str, at: &'a str)
        -> Pending<'a, Option<Bytes>>;

    /// A small blob (a signature payload, a bundle), checked against its digest.
    fn fetch_blob<'a>(&'a self, repository: &'a str, digest: &'a str) -> Pending<'a, Bytes>;

    /// Stores a manifest under `tag` (a manifest stored this way is also there by
    /// digest).
    fn tag<'a>(
        &'a self,
        repository: &'a str,
        tag: &'a str,
        descriptor: &'a Descriptor,
        bytes: &'a Bytes,
    ) -> Pending<'a, ()>;
}

/// One artifact to publish under `repository` with `tags`.
#[derive(Debug)]
pub struct PublishRequest<'a> {
    pub repository: String,
    pub artifact: &'a Artifact,
    pub tags: Vec<String>,
}

/// Counts of what publishing did, for the report and the "second push uploads
/// nothing" check.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PublishStats {
    pub blobs_uploaded: usize,
    pub blobs_existing: usize,
    pub blobs_mounted: usize,
    pub manifests: usize,
    /// Artifacts the destination already had whole (nothing of theirs was sent).
    pub manifests_existing: usize,
    pub tags: usize,
}

/// Requests of one step (blob uploads, manifest pushes, tag updates) in flight at
/// once; the registry transport bounds the run's requests as a whole.
const CONCURRENCY: usize = 16;

/// Publishes the content of every request: all blobs (deduplicated), then all image
/// manifests, then the indexes. No tag moves here: that is [`apply_tags`], once
/// everything that refers to the images is stored too. Returns the counts, and the
/// digests of the artifacts that were new to the destination.
///
/// An artifact whose root manifest the destination already has is skipped whole: a
/// registry accepts a manifest only once everything it names is there.
pub async fn publish(
    publisher: &dyn Publisher,
    requests: &[PublishRequest<'_>],
) -> Result<(PublishStats, HashSet<Digest>), PublishError> {
    let mut stats = PublishStats::default();
    let present: Vec<bool> = stream::iter(requests)
        .map(|req| async move {
            let digest = &req.artifact.descriptor().digest;
            Ok::<_, PublishError>(
                publisher
                    .has_manifest(&req.repository, digest)
                    .await?
                    .is_some(),
            )
        })
        .buffered(CONCURRENCY)
        .try_collect()
        .await?;
    let missing: Vec<&PublishRequest> = requests
        .iter()
        .zip(&present)
        .filter(|(_, present)| !**present)
        .map(|(req, _)| req)
        .collect();
    stats.manifests_existing = requests.len() - missing.len();

    // Under an index that is missing, the images a failed run already stored are
    // kept, blobs and all: only what is not there is sent.
    let children: Vec<(&str, &Image)> = missing
        .iter()
        .filter(|req| matches!(req.artifact, Artifact::Index { .. }))
        .flat_map(|req| {
            req.artifact
                .images()
                .iter()
                .map(move |image| (req.repository.as_str(), image))
        })
        .collect();
    let stored: HashSet<(&str, &str)> = stream::iter(&children)
        .map(|(repo, image)| async move {
            let digest = image.descriptor.digest.as_str();
            let found = publisher.has_manifest(repo, digest).await?.is_some();
            Ok::<_, PublishError>(found.then_some((*repo, digest)))
        })
        .buffered(CONCURRENCY)
        .try_collect::<Vec<_>>()
        .await?
        .into_iter()
        .flatten()
        .collect();
    stats.manifests_existing += stored.len();
    let to_send =
        |repo: &str, image: &Image| !stored.contains(&(repo, image.descriptor.digest.as_str()));

    let mut seen = HashSet::new();
    let mut blobs: Vec<(&str, &Blob)> = Vec::new();
    for req in &missing {
        for image in req
            .artifact
            .images()
            .iter()
            .filter(|image| to_send(&req.repository, image))
        {
            for blob in std::iter::once(&image.config).chain(&image.layers) {
                if seen.insert((req.repository.as_str(), blob.descriptor.digest.as_str())) {
                    blobs.push((&req.repository, blob));
                }
            }
        }
    }
    let outcomes: Vec<BlobOutcome> = stream::iter(blobs)
        .map(|(repo, blob)| publisher.push_blob(repo, blob))
        .buffer_unordered(CONCURRENCY)
        .try_collect()
        .await?;
    for outcome in outcomes {
        match outcome {
            BlobOutcome::Existed => stats.blobs_existing += 1,
            BlobOutcome::Mounted => stats.blobs_mounted += 1,
            BlobOutcome::Uploaded => stats.blobs_uploaded += 1,
        }
    }

    let manifests = missing.iter().flat_map(|req| {
        req.artifact
            .images()
            .iter()
            .filter(|image| to_send(&req.repository, image))
            .map(move |image| (req.repository.as_str(), &image.descriptor, &image.manifest))
    });
    stats.manifests += push_all(publisher, manifests).await?;
    let indexes = missing.iter().filter_map(|req| match req.artifact {
        Artifact::Index {
            descriptor, bytes, ..
        } => Some((req.repository.as_str(), descriptor, bytes)),
        Artifact::Image(_) => None,
    });
    stats.manifests += push_all(publisher, indexes).await?;
    let new = missing
        .iter()
        .map(|req| req.artifact.descriptor().digest.clone())
        .collect();
    Ok((stats, new))
}

/// Points every request's tags at its artifact, the last step of a run. A tag that
/// already points there is left alone; one whose artifact is `new` this run cannot
/// point there yet, so it is not asked. Returns how many tags moved.
pub async fn apply_tags(
    publisher: &dyn Publisher,
    requests: &[PublishRequest<'_>],
    new: &HashSet<Digest>,
) -> Result<usize, PublishError> {
    let jobs = requests
        .iter()
        .flat_map(|req| req.tags.iter().map(move |tag| (req, tag)));
    let moved: Vec<bool> = stream::iter(jobs)
        .map(|(req, tag)| async move {
            let descriptor = req.artifact.descriptor();
            if !new.contains(&descriptor.digest)
                && publisher
                    .has_manifest(&req.repository, tag)
                    .await?
                    .as_deref()
                    == Some(descriptor.digest.as_str())
            {
                return Ok::<_, PublishError>(false);
            }
            publisher
                .tag(&req.repository, tag, descriptor, req.artifact.bytes())
                .await?;
            Ok(true)
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect()
        .await?;
    Ok(moved.into_iter().filter(|m| *m).count())
}

async fn push_all<'a>(
    publisher: &dyn Publisher,
    items: impl Iterator<Item = (&'a str, &'a Descriptor, &'a Bytes)>,
) -> Result<usize, PublishError> {
    let done: Vec<()> = stream::iter(items)
        .map(|(repo, descriptor, bytes)| publisher.push_manifest(repo, descriptor, bytes))
        .buffer_unordered(CONCURRENCY)
        .try_collect()
        .await?;
    Ok(done.len())
}

#[cfg(test)]
mod tests {
    use super::memory::MemoryPublisher;
    use super::*;
    use crate::image::{media_type, Image};

    fn image() -> Artifact {
        let config = Blob::from_bytes(media_type::OCI_CONFIG, b"{\"os\":\"wasi\"}".to_vec());
        let layer = Blob::from_bytes("application/vnd.oci.image.layer.v1.tar+gzip", vec![1, 2, 3]);
        let manifest = crate::image::canonical_json(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media_type::OCI_MANIFEST,
            "config": config.descriptor,
            "layers": [layer.descriptor],
        }));
        Artifact::Image(Image {
            platform: "wasi/wasm".parse().unwrap(),
            descriptor: Descriptor::for_bytes(media_type::OCI_MANIFEST, &manifest),
            manifest: Bytes::from(manifest),
            config,
            layers: vec![layer],
            base_digest: None,
        })
    }

    #[tokio::test]
    async fn what_the_destination_has_is_skipped_and_tags_come_last() {
        let store = MemoryPublisher::default();
        let artifact = image();
        let requests = [PublishRequest {
            repository: "app".into(),
            artifact: &artifact,
            tags: vec!["v1".into()],
        }];
        let (stats, new) = publish(&store, &requests).await.unwrap();
        assert_eq!((stats.blobs_uploaded, stats.manifests), (2, 1));
        assert!(new.contains(&artifact.descriptor().digest));
        let writes = store.writes.lock().unwrap().clone();
        assert!(
            writes.iter().all(|w| !w.starts_with("tag")),
            "publish moved a tag: {writes:?}"
        );
        assert_eq!(apply_tags(&store, &requests, &new).await.unwrap(), 1);

        // Again: the manifest is there, so nothing under it is sent, and the tag
        // already points at it.
        let before = store.writes.lock().unwrap().len();
        let (stats, new) = publish(&store, &requests).await.unwrap();
        assert_eq!((stats.manifests_existing, stats.blobs_uploaded), (1, 0));
        assert!(new.is_empty());
        assert_eq!(apply_tags(&store, &requests, &new).await.unwrap(), 0);
        assert_eq!(store.writes.lock().unwrap().len(), before, "a rerun wrote");
    }
}

//! The OCI distribution API over [`super::transport`]: manifests and blobs by tag or
//! digest, uploads in the fewest round trips (HEAD; else a cross-repository mount
//! that doubles as the upload session; else POST then PUT, streamed), and whether a
//! registry has the referrers API.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::future::{FutureExt, Shared};
use futures::stream::BoxStream;
use futures::StreamExt;
use http::{Method, StatusCode};
use tokio::sync::{oneshot, OnceCell};
use tokio_util::io::ReaderStream;

use super::transport::{Body, Failure, NetworkSettings, Request, Response, Transport};
use super::{BlobOutcome, ImageName, Pending, PublishError, Publisher};
use crate::image::{media_type, Blob, BlobSource, Descriptor, Digest, GrowingLayer};

/// How to reach registries: which hosts speak plain HTTP, and the network policy.
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// Hosts spoken to over plain HTTP (loopback ones always are).
    pub insecure: Vec<String>,
    pub network: NetworkSettings,
}

/// A value per key, found out once: concurrent askers wait for the first.
type OncePerKey<K, V> = Mutex<HashMap<K, Arc<OnceCell<V>>>>;

/// How an upload under way ends (`Ok(true)`: the blob is there), for every waiter.
type UploadOutcome = Shared<oneshot::Receiver<bool>>;

fn once_for<K: std::hash::Hash + Eq, V>(map: &OncePerKey<K, V>, key: K) -> Arc<OnceCell<V>> {
    lock(map).entry(key).or_default().clone()
}

/// Every registry one run talks to, through one transport.
pub struct Registry {
    transport: Transport,
    /// Per registry: does it have the referrers API? Learnt once, from an
    /// `OCI-Subject` answer or from the first listing, whichever comes first.
    referrers_api: OncePerKey<String, bool>,
    /// One upload per blob and repository, however many callers want it: concurrent
    /// uploads of one blob race inside docker-registry (its link file is rewritten
    /// while a manifest PUT reads it, and the PUT fails with DIGEST_INVALID).
    uploads: OncePerKey<(ImageName, Digest), BlobOutcome>,
    /// Uploads that began before their blob's digest was known (a layer streamed as
    /// it was written), by the digest it turned out to have: a push of that blob waits
    /// for their outcome rather than sending it again, and a manifest pushed to the
    /// repository waits for all of them (the last PUT of an upload nobody asked for,
    /// because the registry had the image, must not race a manifest PUT either).
    under_way: Mutex<HashMap<(ImageName, Digest), UploadOutcome>>,
}

impl Registry {
    pub fn new(options: &RegistryOptions) -> Result<Self, PublishError> {
        Ok(Registry {
            transport: Transport::new(&options.insecure, options.network)?,
            referrers_api: Mutex::new(HashMap::new()),
            uploads: Mutex::new(HashMap::new()),
            under_way: Mutex::new(HashMap::new()),
        })
    }

    /// Declares that the run pushes to `name` (or only reads it), so that one token
    /// per registry covers every repository the run touches.
    pub fn declare(&self, name: &ImageName, push: bool) {
        self.transport
            .declare(&name.registry, &name.repository, push);
    }

    /// Requests sent so far, every try counted.
    pub fn request_count(&self) -> u64 {
        self.transport.request_count()
    }

    /// One request, retried as the policy says; `judge` turns a response into a value
    /// or a failure.
    async fn call<T, J, Fut>(
        &self,
        name: &ImageName,
        request: Request<'_>,
        body: impl Fn() -> Body,
        judge: J,
    ) -> Result<T, PublishError>
    where
        J: Fn(Response) -> Fut,
        Fut: std::future::Future<Output = Result<T, Failure>>,
    {
        let what = format!("{} {}", request.method, request.target);
        self.transport
            .retrying(&name.registry, &what, || async {
                let response = self
                    .transport
                    .send(&name.registry, &request, body())
                    .await?;
                judge(response).await
            })
            .await
    }

    /// Fetches a manifest or index by tag or digest; returns its bytes and digest.
    pub async fn pull_manifest(
        &self,
        name: &ImageName,
        at: &str,
    ) -> Result<(Bytes, Digest), PublishError> {
        self.find_manifest(name, at)
            .await?
            .ok_or_else(|| PublishError::Registry {
                registry: name.registry.clone(),
                repository: name.repository.clone(),
                action: format!("fetching manifest {at}"),
                detail: "no such tag or digest".into(),
            })
    }

    /// Like `pull_manifest`, but a missing tag or repository is `None`. A manifest
    /// fetched by digest is checked against it.
    pub async fn find_manifest(
        &self,
        name: &ImageName,
        at: &str,
    ) -> Result<Option<(Bytes, Digest)>, PublishError> {
        let found = self
            .call(
                name,
                manifest_read(name, Method::GET, at),
                || Body::Empty,
                |r| async move {
                    match r.status {
                        StatusCode::NOT_FOUND => Ok(None),
                        s if s.is_success() => Ok(Some(r.bytes().await?)),
                        _ => Err(unexpected(name, &format!("fetching manifest {at}"), r).await),
                    }
                },
            )
            .await?;
        let Some(bytes) = found else {
            return Ok(None);
        };
        let digest = Digest::of(&bytes);
        if at.starts_with("sha256:") && digest != at {
            return Err(PublishError::DigestMismatch {
                what: format!("manifest from {name}"),
                expected: at.to_string(),
                actual: digest.to_string(),
            });
        }
        Ok(Some((bytes, digest)))
    }

    /// Checks, without writing, that `name` answers and that this run may push to it:
    /// a HEAD of `tag` sent with push access, so a Basic registry checks the
    /// credentials and a Bearer one grants (or refuses) the push scope. Run beside the
    /// builds, it turns a wrong host or login into an error in seconds.
    pub async fn check_push_access(&self, name: &ImageName, tag: &str) -> Result<(), PublishError> {
        self.call(
            name,
            v2(name, Method::HEAD, format!("manifests/{tag}")).pushing(true),
            || Body::Empty,
            |r| async move {
                match r.status {
                    s if s.is_success() || s == StatusCode::NOT_FOUND => Ok(()),
                    _ => Err(unexpected(name, "checking access", r).await),
                }
            },
        )
        .await
    }

    /// The digest a tag or digest names (HEAD), or None when there is none.
    pub async fn manifest_digest(
        &self,
        name: &ImageName,
        at: &str,
    ) -> Result<Option<Digest>, PublishError> {
        let found = self
            .call(
                name,
                manifest_read(name, Method::HEAD, at),
                || Body::Empty,
                |r| async move {
                    match r.status {
                        StatusCode::NOT_FOUND => Ok(None),
                        s if s.is_success() => Ok(Some(
                            r.header("docker-content-digest")
                                .and_then(|d| Digest::parse(d).ok()),
                        )),
                        _ => Err(unexpected(name, &format!("looking up manifest {at}"), r).await),
                    }
                },
            )
            .await?;
        match found {
            None => Ok(None),
            Some(Some(digest)) => Ok(Some(digest)),
            // There, but the answer did not say its digest: the manifest itself does.
            Some(None) => Ok(self.find_manifest(name, at).await?.map(|(_, d)| d)),
        }
    }

    /// Fetches a small blob (an image config) into memory and checks its digest.
    pub async fn pull_small_blob(
        &self,
        name: &ImageName,
        digest: &str,
    ) -> Result<Bytes, PublishError> {
        // A digest from a manifest goes into a URL: only a well-formed one does.
        let digest = &Digest::parse(digest)?;
        let bytes = self
            .call(
                name,
                v2(name, Method::GET, format!("blobs/{digest}")),
                || Body::Empty,
                |r| async move {
                    if r.status.is_success() {
                        r.bytes().await
                    } else {
                        Err(unexpected(name, &format!("fetching blob {digest}"), r).await)
                    }
                },
            )
            .await?;
        let actual = Digest::of(&bytes);
        if actual != *digest {
            return Err(PublishError::DigestMismatch {
                what: format!("blob from {name}"),
                expected: digest.to_string(),
                actual: actual.to_string(),
            });
        }
        Ok(bytes)
    }

    /// Streams a blob out of `name`. The reader checks the digest (the stream is
    /// consumed by an upload or a file write, each of which hashes what passes).
    pub async fn blob_stream(
        &self,
        name: &ImageName,
        descriptor: &Descriptor,
    ) -> Result<BoxStream<'static, std::io::Result<Bytes>>, PublishError> {
        let digest = &descriptor.digest;
        self.call(
            name,
            v2(name, Method::GET, format!("blobs/{digest}")),
            || Body::Empty,
            |r| async move {
                if r.status.is_success() {
                    Ok(r.into_stream().boxed())
                } else {
                    Err(unexpected(name, &format!("fetching blob {digest}"), r).await)
                }
            },
        )
        .await
    }

    /// Whether `name` has the blob (asked with push access: the run writes there).
    async fn blob_exists(&self, name: &ImageName, digest: &str) -> Result<bool, PublishError> {
        self.call(
            name,
            v2(name, Method::HEAD, format!("blobs/{digest}")).pushing(true),
            || Body::Empty,
            |r| async move {
                match r.status {
                    StatusCode::NOT_FOUND => Ok(false),
                    s if s.is_success() => Ok(true),
                    _ => Err(unexpected(name, &format!("checking blob {digest}"), r).await),
                }
            },
        )
        .await
    }

    /// Makes `blob` present in `name`, once per run: a caller that asks while
    /// another upload of it is under way waits for that one. A failed upload is not
    /// remembered, so the next caller tries again.
    async fn upload(&self, name: &ImageName, blob: &Blob) -> Result<BlobOutcome, PublishError> {
        let key = (name.clone(), blob.descriptor.digest.clone());
        once_for(&self.uploads, key)
            .get_or_try_init(|| self.upload_once(name, blob))
            .await
            .copied()
    }

    /// Uploads a layer while it is still being written: POST, then one PATCH that
    /// streams the bytes as they reach the file, then PUT with the digest, known only
    /// at the end. Nothing asks first whether the registry has it: the digest is not
    /// known yet. The PATCH is not retried (its bytes are not kept); after a failure
    /// the blob's ordinary push sends the finished file.
    pub async fn push_growing_blob(
        &self,
        name: &ImageName,
        layer: GrowingLayer,
    ) -> Result<Digest, PublishError> {
        let what = "streaming a layer as it is written";
        let location = self
            .call(
                name,
                v2(name, Method::POST, "blobs/uploads/".into())
                    .pushing(true)
                    .header(http::header::CONTENT_LENGTH, "0"),
                || Body::Empty,
                |r| async move {
                    if r.status == StatusCode::ACCEPTED {
                        session(name, what, &r)
                    } else {
                        Err(unexpected(name, what, r).await)
                    }
                },
            )
            .await?;
        let patch = Request {
            target: location,
            ..v2(name, Method::PATCH, String::new())
                .pushing(true)
                .header(http::header::CONTENT_TYPE, "application/octet-stream")
        };
        let body = Body::Stream {
            stream: layer.bytes(),
            length: None,
        };
        let sent = match self.transport.send(&name.registry, &patch, body).await {
            Ok(r) if r.status == StatusCode::ACCEPTED => session(name, what, &r),
            Ok(r) => Err(unexpected(name, what, r).await),
            Err(failure) => Err(failure),
        };
        let location = sent.map_err(|failure| match failure {
            Failure::Fatal(e) => e,
            Failure::Retry { detail, .. } => refused_error(name, what, detail),
            Failure::Reauthorized => refused_error(name, what, "the token expired".into()),
        })?;
        let descriptor = layer.descriptor().await.ok_or_else(|| {
            refused_error(name, what, "the layer was not written to its end".into())
        })?;
        let digest = descriptor.digest;
        self.call(
            name,
            Request {
                target: with_digest(&location, &digest),
                ..v2(name, Method::PUT, String::new())
                    .pushing(true)
                    .header(http::header::CONTENT_LENGTH, "0")
            },
            || Body::Empty,
            |r| async move {
                if r.status.is_success() {
                    Ok(())
                } else {
                    Err(unexpected(name, what, r).await)
                }
            },
        )
        .await?;
        Ok(digest)
    }

    /// Says that an upload of `digest` to `name` is under way and how it ends
    /// (`true`: the blob is there), so that pushing it waits rather than sends it too.
    pub fn upload_under_way(
        &self,
        name: &ImageName,
        digest: &Digest,
        ends: oneshot::Receiver<bool>,
    ) {
        lock(&self.under_way).insert((name.clone(), digest.clone()), ends.shared());
    }

    /// Makes `blob` present in `name` in the fewest round trips: HEAD (not for
    /// unpublished blobs); then a mount from the blob's home repository on the same
    /// registry (its 202 is the upload session, so a refused mount costs nothing
    /// extra); then PUT of the bytes.
    async fn upload_once(
        &self,
        name: &ImageName,
        blob: &Blob,
    ) -> Result<BlobOutcome, PublishError> {
        let d = &blob.descriptor;
        let streamed = lock(&self.under_way)
            .get(&(name.clone(), d.digest.clone()))
            .cloned();
        if let Some(ends) = streamed {
            if ends.await == Ok(true) {
                return Ok(BlobOutcome::Uploaded);
            }
        }
        let unpublished = matches!(blob.source, BlobSource::Unpublished(_));
        if !unpublished && self.blob_exists(name, &d.digest).await? {
            return Ok(BlobOutcome::Existed);
        }
        let source = match &blob.source {
            BlobSource::Remote { repository } => Some(ImageName::parse(repository)?),
            _ => None,
        };
        let mount_from = source
            .as_ref()
            .filter(|s| s.registry == name.registry && s.repository != name.repository);
        let start = match mount_from {
            Some(s) => format!("blobs/uploads/?mount={}&from={}", d.digest, s.repository),
            None => "blobs/uploads/".to_string(),
        };
        let what = format!("uploading blob {}", d.digest);
        let result = self
            .transport
            .retrying(
                &name.registry,
                &format!("POST+PUT /v2/{}/{start}", name.repository),
                || async {
                    let post = v2(name, Method::POST, start.clone())
                        .pushing(true)
                        .header(http::header::CONTENT_LENGTH, "0");
                    let r = self
                        .transport
                        .send(&name.registry, &post, Body::Empty)
                        .await?;
                    if r.status == StatusCode::CREATED && mount_from.is_some() {
                        return Ok(BlobOutcome::Mounted);
                    }
                    if r.status != StatusCode::ACCEPTED {
                        return Err(unexpected(name, &what, r).await);
                    }
                    let location = session(name, &what, &r)?;
                    let put = Request {
                        target: with_digest(&location, &d.digest),
                        ..v2(name, Method::PUT, String::new())
                            .pushing(true)
                            .header(http::header::CONTENT_TYPE, "application/octet-stream")
                    };
                    let body = self.body_for(blob, source.as_ref()).await?;
                    let r = self.transport.send(&name.registry, &put, body).await?;
                    if r.status.is_success() {
                        Ok(BlobOutcome::Uploaded)
                    } else {
                        Err(unexpected(name, &what, r).await)
                    }
                },
            )
            .await;
        match result {
            Ok(outcome) => Ok(outcome),
            // docker-registry answers 500 to one of two concurrent uploads of one
            // blob; some registries omit Location after a finished upload. Either way
            // the blob may well be there.
            Err(e) => match self.blob_exists(name, &d.digest).await {
                Ok(true) => Ok(BlobOutcome::Uploaded),
                _ => Err(e),
            },
        }
    }

    /// The bytes of a blob, for one try of an upload.
    async fn body_for(&self, blob: &Blob, source: Option<&ImageName>) -> Result<Body, Failure> {
        let d = &blob.descriptor;
        Ok(match (&blob.source, source) {
            (BlobSource::Bytes(bytes) | BlobSource::Unpublished(bytes), _) => {
                Body::Bytes(bytes.clone())
            }
            (BlobSource::File(path), _) => Body::Stream {
                stream: file_stream(path).await.map_err(|cause| {
                    Failure::Fatal(PublishError::Io {
                        context: format!("reading {}", path.display()),
                        cause,
                    })
                })?,
                length: Some(d.size),
            },
            (BlobSource::Remote { .. }, Some(source)) => Body::Stream {
                stream: self.blob_stream(source, d).await?,
                length: Some(d.size),
            },
            (BlobSource::Remote { repository }, None) => {
                return Err(Failure::Fatal(PublishError::Reference {
                    reference: repository.clone(),
                    reason: "not a repository".into(),
                }))
            }
        })
    }

    /// PUTs a manifest by tag or digest. Notes whether the registry acknowledged a
    /// `subject` (OCI-Subject), which means it keeps the referrers itself.
    async fn put_manifest(
        &self,
        name: &ImageName,
        at: &str,
        media_type: &str,
        bytes: &Bytes,
    ) -> Result<(), PublishError> {
        let streamed: Vec<UploadOutcome> = lock(&self.under_way)
            .iter()
            .filter(|((repository, _), _)| repository == name)
            .map(|(_, outcome)| outcome.clone())
            .collect();
        futures::future::join_all(streamed).await;
        let acknowledged = self
            .call(
                name,
                v2(name, Method::PUT, format!("manifests/{at}"))
                    .pushing(true)
                    .header(http::header::CONTENT_TYPE, media_type.to_string()),
                || Body::Bytes(bytes.clone()),
                |r| async move {
                    if r.status.is_success() {
                        return Ok(r.header("oci-subject").is_some());
                    }
                    let action = format!("pushing manifest {at}");
                    if r.status != StatusCode::BAD_REQUEST {
                        return Err(unexpected(name, &action, r).await);
                    }
                    // We hash what we send, so DIGEST_INVALID here is docker-registry
                    // reading a blob's link while another upload of that blob (by
                    // another signer, say) rewrites it: worth another try.
                    let detail = r.describe().await;
                    Err(if detail.contains("DIGEST_INVALID") {
                        Failure::Retry {
                            detail,
                            retry_after: None,
                        }
                    } else {
                        refused(name, &action, detail)
                    })
                },
            )
            .await?;
        if acknowledged {
            // Already known (true) or set by this answer: either way it has the API.
            let _ = once_for(&self.referrers_api, name.registry.clone()).set(true);
        }
        Ok(())
    }

    /// The referrers of `subject` from the registry's referrers API, or None when the
    /// registry has no such API (then the `sha256-<hex>` fallback tag is the list).
    /// Concurrent first calls share one probe.
    pub async fn list_referrers(
        &self,
        name: &ImageName,
        subject: &str,
    ) -> Result<Option<Vec<serde_json::Value>>, PublishError> {
        let known = once_for(&self.referrers_api, name.registry.clone());
        let mut probed = None;
        let has_api = *known
            .get_or_try_init(|| async {
                probed = self.get_referrers(name, subject).await?;
                Ok::<_, PublishError>(probed.is_some())
            })
            .await?;
        match (has_api, probed) {
            (false, _) => Ok(None),
            (true, Some(listed)) => Ok(Some(listed)),
            (true, None) => self.get_referrers(name, subject).await,
        }
    }

    /// `GET /v2/<name>/referrers/<subject>`: the listed descriptors, or None when the
    /// answer is not a referrers index.
    async fn get_referrers(
        &self,
        name: &ImageName,
        subject: &str,
    ) -> Result<Option<Vec<serde_json::Value>>, PublishError> {
        self.call(
            name,
            v2(name, Method::GET, format!("referrers/{subject}"))
                .header(http::header::ACCEPT, media_type::OCI_INDEX),
            || Body::Empty,
            |r| async move {
                let index = r
                    .header("content-type")
                    .is_some_and(|t| t.starts_with(media_type::OCI_INDEX));
                if !(r.status.is_success() && index) {
                    return Ok(None);
                }
                let bytes = r.bytes().await?;
                Ok(serde_json::from_slice::<serde_json::Value>(&bytes)
                    .ok()
                    .map(|v| v["manifests"].as_array().cloned().unwrap_or_default()))
            },
        )
        .await
    }
}

/// A request for `/v2/<name>/<path>`.
fn v2<'a>(name: &'a ImageName, method: Method, path: String) -> Request<'a> {
    Request {
        method,
        repository: &name.repository,
        push: false,
        target: format!("/v2/{}/{path}", name.repository),
        headers: Vec::new(),
    }
}

/// A read of the manifest `at` (tag or digest), accepting every manifest and index
/// type gantry reads.
fn manifest_read<'a>(name: &'a ImageName, method: Method, at: &str) -> Request<'a> {
    v2(name, method, format!("manifests/{at}")).header(
        http::header::ACCEPT,
        media_type::ACCEPTED_MANIFESTS.join(", "),
    )
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// An unexpected status as a final error that names the registry and the action.
async fn unexpected(name: &ImageName, action: &str, response: Response) -> Failure {
    refused(name, action, response.describe().await)
}

/// The registry said no to `action`, for good.
fn refused(name: &ImageName, action: &str, detail: String) -> Failure {
    Failure::Fatal(refused_error(name, action, detail))
}

fn refused_error(name: &ImageName, action: &str, detail: String) -> PublishError {
    PublishError::Registry {
        registry: name.registry.clone(),
        repository: name.repository.clone(),
        action: action.to_string(),
        detail,
    }
}

/// Where an upload session (answered 202) takes its next request.
fn session(name: &ImageName, action: &str, r: &Response) -> Result<String, Failure> {
    r.header("location").map(str::to_string).ok_or_else(|| {
        refused(
            name,
            action,
            "the registry answered an upload without a Location".into(),
        )
    })
}

/// An upload session's location with the blob's digest added to its query.
fn with_digest(location: &str, digest: &Digest) -> String {
    let separator = if location.contains('?') { '&' } else { '?' };
    format!("{location}{separator}digest={digest}")
}

async fn file_stream(path: &Path) -> std::io::Result<BoxStream<'static, std::io::Result<Bytes>>> {
    let file = tokio::fs::File::open(path).await?;
    Ok(ReaderStream::with_capacity(file, 256 * 1024).boxed())
}

/// A registry as a destination: each call names `registry/repository`.
impl Publisher for Registry {
    fn push_blob<'a>(&'a self, repository: &'a str, blob: &'a Blob) -> Pending<'a, BlobOutcome> {
        Box::pin(async move { self.upload(&ImageName::parse(repository)?, blob).await })
    }

    fn push_manifest<'a>(
        &'a self,
        repository: &'a str,
        descriptor: &'a Descriptor,
        bytes: &'a Bytes,
    ) -> Pending<'a, ()> {
        Box::pin(async move {
            let name = ImageName::parse(repository)?;
            self.put_manifest(&name, &descriptor.digest, &descriptor.media_type, bytes)
                .await
        })
    }

    fn has_manifest<'a>(&'a self, repository: &'a str, at: &'a str) -> Pending<'a, Option<Digest>> {
        Box::pin(async move {
            self.manifest_digest(&ImageName::parse(repository)?, at)
                .await
        })
    }

    fn referrers<'a>(
        &'a self,
        repository: &'a str,
        subject: &'a str,
    ) -> Pending<'a, Option<Vec<serde_json::Value>>> {
        Box::pin(async move {
            self.list_referrers(&ImageName::parse(repository)?, subject)
                .await
        })
    }

    fn fetch_manifest<'a>(
        &'a self,
        repository: &'a str,
        at: &'a str,
    ) -> Pending<'a, Option<Bytes>> {
        Box::pin(async move {
            let name = ImageName::parse(repository)?;
            Ok(self.find_manifest(&name, at).await?.map(|(bytes, _)| bytes))
        })
    }

    fn fetch_blob<'a>(&'a self, repository: &'a str, digest: &'a str) -> Pending<'a, Bytes> {
        Box::pin(async move {
            self.pull_small_blob(&ImageName::parse(repository)?, digest)
                .await
        })
    }

    fn tag<'a>(
        &'a self,
        repository: &'a str,
        tag: &'a str,
        descriptor: &'a Descriptor,
        bytes: &'a Bytes,
    ) -> Pending<'a, ()> {
        Box::pin(async move {
            let name = ImageName::parse(repository)?;
            self.put_manifest(&name, tag, &descriptor.media_type, bytes)
                .await
        })
    }
}

//! The OCI distribution API over [`super::transport`]: manifests and blobs by tag or
//! digest, uploads (upload.rs), and whether a registry has the referrers API.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::future::Shared;
use futures::stream::BoxStream;
use futures::StreamExt;
use http::{Method, StatusCode};
use tokio::sync::{oneshot, OnceCell};

use super::transport::{Body, Failure, NetworkSettings, Request, Response, Transport};
use super::{BlobOutcome, ImageName, Pending, PublishError, Publisher};
use crate::image::{media_type, Blob, Descriptor, Digest};

mod upload;

/// How to reach registries: which hosts speak plain HTTP, and the network policy.
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// Hosts spoken to over plain HTTP (loopback ones always are).
    pub insecure: Vec<String>,
    pub network: NetworkSettings,
}

/// A value per key, found out once: concurrent askers wait for the first.
type OncePerKey<K, V> = Mutex<HashMap<K, Arc<OnceCell<V>>>>;

/// How an upload under way ends (`Ok(Some(_))`: the blob is there), for every waiter.
type UploadOutcome = Shared<oneshot::Receiver<Option<BlobOutcome>>>;

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

//! Registry traffic through `oci-client`: credentials per registry, plain HTTP for
//! loopback and `--insecure-registry` hosts, streamed blob copies, and errors that say
//! which registry refused what.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use bytes::Bytes;
use futures::TryStreamExt;
use http::HeaderValue;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use tokio::sync::Mutex;
use tokio_util::io::ReaderStream;

use super::{BlobOutcome, PublishError, Publisher};
use crate::auth;
use crate::image::{media_type, sha256_digest, Blob, BlobSource, Descriptor};

/// A repository in a registry, without tag or digest: `ghcr.io/acme/app`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageName {
    pub registry: String,
    pub repository: String,
}

impl ImageName {
    /// Parses `registry/repository` (Docker Hub short names allowed); a tag or digest
    /// here is an error, since gantry chooses those itself.
    pub fn parse(text: &str) -> Result<Self, PublishError> {
        let err = |reason: &str| PublishError::Reference {
            reference: text.to_string(),
            reason: reason.to_string(),
        };
        if text.contains('@')
            || text
                .rsplit('/')
                .next()
                .is_some_and(|last| last.contains(':'))
        {
            return Err(err(
                "give the repository without a tag or digest (use --tag for tags)",
            ));
        }
        let reference: Reference = text
            .parse()
            .map_err(|e: oci_client::ParseError| err(&e.to_string()))?;
        Ok(ImageName {
            registry: reference.registry().to_string(),
            repository: reference.repository().to_string(),
        })
    }

    /// `REPO/<name>`, for builds of several packages.
    pub fn join(&self, name: &str) -> ImageName {
        ImageName {
            registry: self.registry.clone(),
            repository: format!("{}/{}", self.repository, name.to_lowercase()),
        }
    }

    pub fn with_digest(&self, digest: &str) -> Reference {
        Reference::with_digest(
            self.registry.clone(),
            self.repository.clone(),
            digest.to_string(),
        )
    }

    /// The reference a manifest is pushed by digest to. oci-client 0.18 panics when a
    /// registry omits `Location` on a push to a reference without a tag (its
    /// workaround strips the tag from the URL), so the digest also fills the tag slot;
    /// the URL is the digest one either way.
    pub fn for_manifest_push(&self, digest: &str) -> Reference {
        Reference::with_tag_and_digest(
            self.registry.clone(),
            self.repository.clone(),
            digest.to_string(),
            digest.to_string(),
        )
    }

    pub fn with_tag(&self, tag: &str) -> Reference {
        Reference::with_tag(
            self.registry.clone(),
            self.repository.clone(),
            tag.to_string(),
        )
    }
}

impl fmt::Display for ImageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)
    }
}

/// Splits a user's image reference (`host/repo:tag`, `host/repo@sha256:…`) into the
/// repository and the tag or digest to fetch.
pub fn parse_reference(text: &str) -> Result<(ImageName, String), PublishError> {
    let reference: Reference =
        text.parse()
            .map_err(|e: oci_client::ParseError| PublishError::Reference {
                reference: text.to_string(),
                reason: e.to_string(),
            })?;
    let name = ImageName {
        registry: reference.registry().to_string(),
        repository: reference.repository().to_string(),
    };
    let at = reference
        .digest()
        .or(reference.tag())
        .unwrap_or("latest")
        .to_string();
    Ok((name, at))
}

/// True for hosts reached over plain HTTP without asking: loopback only.
fn is_loopback(registry: &str) -> bool {
    let host = registry
        .rsplit_once(':')
        .filter(|(h, port)| !h.is_empty() && port.chars().all(|c| c.is_ascii_digit()))
        .map_or(registry, |(h, _)| h);
    matches!(host, "localhost" | "127.0.0.1" | "[::1]") || host.starts_with("127.")
}

/// One client for every registry a run touches, with the credentials found for each.
pub struct Registry {
    client: Client,
    /// Where each registry's credentials came from, once looked up.
    credentials: Mutex<HashMap<String, String>>,
}

impl Registry {
    /// `hosts` are the registries this run will use; loopback ones and `insecure` ones
    /// are spoken to over HTTP.
    pub fn new<'a>(hosts: impl IntoIterator<Item = &'a str>, insecure: &[String]) -> Self {
        let mut http: Vec<String> = hosts
            .into_iter()
            .filter(|h| is_loopback(h))
            .map(str::to_string)
            .collect();
        http.extend(insecure.iter().cloned());
        let config = ClientConfig {
            protocol: ClientProtocol::HttpsExcept(http),
            use_monolithic_push: true,
            ..Default::default()
        };
        Registry {
            client: Client::new(config),
            credentials: Mutex::new(HashMap::new()),
        }
    }

    /// Looks up and installs credentials for `registry` once.
    async fn ensure_auth(&self, registry: &str) -> Result<(), PublishError> {
        let mut known = self.credentials.lock().await;
        if known.contains_key(registry) {
            return Ok(());
        }
        let (auth, source) = match auth::lookup(registry)? {
            Some(c) => (
                RegistryAuth::Basic(c.username.clone(), c.password.expose().to_string()),
                c.source.clone(),
            ),
            None => (RegistryAuth::Anonymous, "none (anonymous)".to_string()),
        };
        self.client.store_auth_if_needed(registry, &auth).await;
        known.insert(registry.to_string(), source);
        Ok(())
    }

    /// Turns a client error into one that names the registry and what to do.
    async fn explain(
        &self,
        name: &ImageName,
        action: &str,
        e: OciDistributionError,
    ) -> PublishError {
        let detail = chain(&e);
        let refused = match &e {
            OciDistributionError::ServerError { code, .. } => *code == 401 || *code == 403,
            OciDistributionError::UnauthorizedError { .. }
            | OciDistributionError::AuthenticationFailure(_) => true,
            OciDistributionError::RequestError(r) => r
                .status()
                .is_some_and(|s| s.as_u16() == 401 || s.as_u16() == 403),
            OciDistributionError::RegistryError { envelope, .. } => {
                envelope.errors.iter().any(|x| {
                    matches!(
                        x.code,
                        oci_client::errors::OciErrorCode::Unauthorized
                            | oci_client::errors::OciErrorCode::Denied
                    )
                })
            }
            _ => false,
        };
        if refused {
            let used = self
                .credentials
                .lock()
                .await
                .get(&name.registry)
                .cloned()
                .unwrap_or_else(|| "none".into());
            return PublishError::AuthRefused {
                registry: name.registry.clone(),
                repository: name.repository.clone(),
                detail,
                used,
                searched: auth::searched_locations(&name.registry),
            };
        }
        if let OciDistributionError::RequestError(r) = &e {
            if r.is_connect() || r.is_timeout() || r.is_request() {
                return PublishError::Unreachable {
                    registry: name.registry.clone(),
                    detail,
                };
            }
        }
        PublishError::Registry {
            registry: name.registry.clone(),
            repository: name.repository.clone(),
            action: action.to_string(),
            detail,
        }
    }

    /// Fetches a manifest or index by tag or digest; returns its bytes and digest.
    pub async fn pull_manifest(
        &self,
        name: &ImageName,
        at: &str,
    ) -> Result<(Bytes, String), PublishError> {
        self.find_manifest(name, at)
            .await?
            .ok_or_else(|| PublishError::Registry {
                registry: name.registry.clone(),
                repository: name.repository.clone(),
                action: format!("fetching manifest {at}"),
                detail: "no such tag or digest".into(),
            })
    }

    /// Like `pull_manifest`, but a missing tag or repository is `None`.
    pub async fn find_manifest(
        &self,
        name: &ImageName,
        at: &str,
    ) -> Result<Option<(Bytes, String)>, PublishError> {
        self.ensure_auth(&name.registry).await?;
        let reference = if at.starts_with("sha256:") {
            name.with_digest(at)
        } else {
            name.with_tag(at)
        };
        match self
            .client
            .pull_manifest_raw(
                &reference,
                &RegistryAuth::Anonymous,
                media_type::ACCEPTED_MANIFESTS,
            )
            .await
        {
            Ok(found) => Ok(Some(found)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(self
                .explain(name, &format!("fetching manifest {at}"), e)
                .await),
        }
    }

    /// Fetches a small blob (an image config) into memory and checks its digest.
    pub async fn pull_small_blob(
        &self,
        name: &ImageName,
        digest: &str,
    ) -> Result<Vec<u8>, PublishError> {
        self.ensure_auth(&name.registry).await?;
        let mut out = Vec::new();
        if let Err(e) = self
            .client
            .pull_blob(&name.with_digest(digest), digest, &mut out)
            .await
        {
            return Err(self
                .explain(name, &format!("fetching blob {digest}"), e)
                .await);
        }
        let actual = sha256_digest(&out);
        if actual != digest {
            return Err(PublishError::DigestMismatch {
                what: format!("blob from {name}"),
                expected: digest.to_string(),
                actual,
            });
        }
        Ok(out)
    }

    /// Streams a blob out of `name`; the client checks the digest as it goes.
    pub async fn blob_stream(
        &self,
        name: &ImageName,
        descriptor: &Descriptor,
    ) -> Result<oci_client::client::SizedStream, PublishError> {
        self.ensure_auth(&name.registry).await?;
        let oci = OciDescriptor {
            media_type: descriptor.media_type.clone(),
            digest: descriptor.digest.clone(),
            size: descriptor.size as i64,
            ..Default::default()
        };
        match self
            .client
            .pull_blob_stream(&name.with_digest(&descriptor.digest), &oci)
            .await
        {
            Ok(s) => Ok(s),
            Err(e) => Err(self
                .explain(name, &format!("fetching blob {}", descriptor.digest), e)
                .await),
        }
    }
}

fn is_not_found(e: &OciDistributionError) -> bool {
    use oci_client::errors::OciErrorCode;
    match e {
        OciDistributionError::RegistryError { envelope, .. } => envelope.errors.iter().any(|x| {
            matches!(
                x.code,
                OciErrorCode::ManifestUnknown | OciErrorCode::NameUnknown
            )
        }),
        OciDistributionError::ServerError { code, .. } => *code == 404,
        _ => false,
    }
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

/// Publishes into registries.
pub struct RegistryPublisher<'r> {
    pub registry: &'r Registry,
}

impl RegistryPublisher<'_> {
    async fn upload(
        &self,
        name: &ImageName,
        blob: &Blob,
    ) -> Result<BlobOutcome, OciDistributionError> {
        let client = &self.registry.client;
        let d = &blob.descriptor;
        let target = name.with_digest(&d.digest);
        if client.blob_exists(&target, &d.digest).await? {
            return Ok(BlobOutcome::Existed);
        }
        match &blob.source {
            BlobSource::Bytes(bytes) => {
                client.push_blob(&target, bytes.clone(), &d.digest).await?;
            }
            BlobSource::File(path) => {
                let stream = file_stream(path).await?;
                client
                    .push_blob_stream(&target, stream, &d.digest, Some(d.size))
                    .await?;
            }
            BlobSource::Remote { repository } => {
                let source = ImageName::parse(repository)
                    .map_err(|e| OciDistributionError::GenericError(Some(e.to_string())))?;
                if source.registry == name.registry
                    && client
                        .mount_blob(&target, &source.with_digest(&d.digest), &d.digest)
                        .await
                        .is_ok()
                    && client.blob_exists(&target, &d.digest).await?
                {
                    return Ok(BlobOutcome::Mounted);
                }
                let stream = self
                    .registry
                    .blob_stream(&source, d)
                    .await
                    .map_err(|e| OciDistributionError::GenericError(Some(e.to_string())))?;
                client
                    .push_blob_stream(
                        &target,
                        stream.stream.map_err(OciDistributionError::IoError),
                        &d.digest,
                        Some(d.size),
                    )
                    .await?;
            }
        }
        Ok(BlobOutcome::Uploaded)
    }
}

async fn file_stream(
    path: &Path,
) -> Result<
    impl futures::Stream<Item = Result<Bytes, OciDistributionError>> + Send + 'static,
    OciDistributionError,
> {
    let file = tokio::fs::File::open(path).await?;
    Ok(ReaderStream::with_capacity(file, 256 * 1024).map_err(OciDistributionError::IoError))
}

impl Publisher for RegistryPublisher<'_> {
    async fn push_blob(&self, repository: &str, blob: &Blob) -> Result<BlobOutcome, PublishError> {
        let name = ImageName::parse(repository)?;
        self.registry.ensure_auth(&name.registry).await?;
        match self.upload(&name, blob).await {
            Ok(outcome) => Ok(outcome),
            // Some registries (go-containerregistry's) omit Location after a
            // completed upload, and docker-registry answers 500 to one of two
            // concurrent uploads of the same blob; either way the blob is there.
            Err(_)
                if self
                    .registry
                    .client
                    .blob_exists(
                        &name.with_digest(&blob.descriptor.digest),
                        &blob.descriptor.digest,
                    )
                    .await
                    .unwrap_or(false) =>
            {
                Ok(BlobOutcome::Uploaded)
            }
            Err(e) => Err(self
                .registry
                .explain(
                    &name,
                    &format!("uploading blob {}", blob.descriptor.digest),
                    e,
                )
                .await),
        }
    }

    async fn push_manifest(
        &self,
        repository: &str,
        descriptor: &Descriptor,
        bytes: &Bytes,
    ) -> Result<(), PublishError> {
        let name = ImageName::parse(repository)?;
        put_manifest(
            self.registry,
            &name,
            &name.for_manifest_push(&descriptor.digest),
            descriptor,
            bytes,
        )
        .await
    }

    async fn fetch_manifest(
        &self,
        repository: &str,
        tag: &str,
    ) -> Result<Option<Bytes>, PublishError> {
        let name = ImageName::parse(repository)?;
        Ok(self
            .registry
            .find_manifest(&name, tag)
            .await?
            .map(|(bytes, _)| bytes))
    }

    async fn fetch_blob(&self, repository: &str, digest: &str) -> Result<Bytes, PublishError> {
        let name = ImageName::parse(repository)?;
        Ok(Bytes::from(
            self.registry.pull_small_blob(&name, digest).await?,
        ))
    }

    async fn tag(
        &self,
        repository: &str,
        tag: &str,
        descriptor: &Descriptor,
        bytes: &Bytes,
    ) -> Result<(), PublishError> {
        let name = ImageName::parse(repository)?;
        put_manifest(self.registry, &name, &name.with_tag(tag), descriptor, bytes).await
    }
}

async fn put_manifest(
    registry: &Registry,
    name: &ImageName,
    reference: &Reference,
    descriptor: &Descriptor,
    bytes: &Bytes,
) -> Result<(), PublishError> {
    registry.ensure_auth(&name.registry).await?;
    let content_type =
        HeaderValue::from_str(&descriptor.media_type).map_err(|e| PublishError::Registry {
            registry: name.registry.clone(),
            repository: name.repository.clone(),
            action: "pushing manifest".into(),
            detail: e.to_string(),
        })?;
    match registry
        .client
        .push_manifest_raw(reference, bytes.clone(), content_type)
        .await
    {
        Ok(_) => Ok(()),
        Err(e) => Err(registry
            .explain(name, &format!("pushing manifest {}", reference.whole()), e)
            .await),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_names() {
        let n = ImageName::parse("localhost:5000/acme/app").unwrap();
        assert_eq!(n.registry, "localhost:5000");
        assert_eq!(n.repository, "acme/app");
        assert_eq!(n.join("Hello").to_string(), "localhost:5000/acme/app/hello");
        assert!(ImageName::parse("localhost:5000/acme/app:v1").is_err());
        assert!(ImageName::parse("ghcr.io/acme/app@sha256:abc").is_err());
        assert!(ImageName::parse("Not A Ref!").is_err());
        let (name, at) = parse_reference("localhost:5000/base:v1").unwrap();
        assert_eq!((name.repository.as_str(), at.as_str()), ("base", "v1"));
    }

    #[test]
    fn loopback_hosts_use_http() {
        assert!(is_loopback("localhost:5000"));
        assert!(is_loopback("127.0.0.1:1234"));
        assert!(is_loopback("[::1]:5000"));
        assert!(!is_loopback("ghcr.io"));
        assert!(!is_loopback("localhost.example.com"));
    }
}

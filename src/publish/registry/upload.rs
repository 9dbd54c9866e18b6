//! Uploads in the fewest round trips: HEAD; else a cross-repository mount that doubles
//! as the upload session; else POST then PUT, streamed from the file. A layer still
//! being written goes POST, one chunked PATCH that follows the file, then PUT with the
//! digest (or, when a HEAD finds the registry has it, no more); a later push of that
//! blob, and any manifest PUT to the repository, waits for it.

use std::path::Path;

use bytes::Bytes;
use futures::future::FutureExt;
use futures::stream::BoxStream;
use futures::StreamExt;
use http::{Method, StatusCode};
use tokio::sync::oneshot;
use tokio_util::io::ReaderStream;

use super::{lock, once_for, refused, refused_error, unexpected, v2, Registry};
use crate::image::{Blob, BlobSource, Digest, GrowingLayer};
use crate::publish::transport::{Body, Failure, Request, Response};
use crate::publish::{BlobOutcome, ImageName, PublishError};

impl Registry {
    /// Makes `blob` present in `name`, once per run: a caller that asks while
    /// another upload of it is under way waits for that one. A failed upload is not
    /// remembered, so the next caller tries again.
    pub(super) async fn upload(
        &self,
        name: &ImageName,
        blob: &Blob,
    ) -> Result<BlobOutcome, PublishError> {
        let key = (name.clone(), blob.descriptor.digest.clone());
        once_for(&self.uploads, key)
            .get_or_try_init(|| self.upload_once(name, blob))
            .await
            .copied()
    }

    /// Uploads a layer while it is still being written: POST, then one PATCH that
    /// streams the bytes as they reach the file, then PUT with the digest, known only
    /// at the end. Nothing can ask first whether the registry has it, as the digest is
    /// not known yet; once it is, a HEAD asks, beside the rest of the PATCH, and a
    /// registry that has the blob (a rerun, a second tag of a commit built before) gets
    /// none of the rest: the PATCH is cut, and the session cancelled. The PATCH is not
    /// retried (its bytes are not kept); after a failure the session is cancelled and
    /// the blob's ordinary push sends the finished file. `ends` hears how it ended
    /// (`None`: it failed) as soon as that is known, before the session is cancelled.
    pub async fn push_growing_blob(
        &self,
        name: &ImageName,
        layer: GrowingLayer,
        ends: oneshot::Sender<Option<BlobOutcome>>,
    ) {
        let location = self
            .call(
                name,
                v2(name, Method::POST, "blobs/uploads/".into())
                    .pushing(true)
                    .header(http::header::CONTENT_LENGTH, "0"),
                || Body::Empty,
                |r| async move {
                    if r.status == StatusCode::ACCEPTED {
                        session(name, STREAMING, &r)
                    } else {
                        Err(unexpected(name, STREAMING, r).await)
                    }
                },
            )
            .await;
        let Ok(mut location) = location else {
            // No one may be waiting: the registry had the whole image.
            let _ = ends.send(None);
            return;
        };
        let closed = self.stream_and_close(name, &mut location, layer).await.ok();
        let _ = ends.send(closed);
        if closed != Some(BlobOutcome::Uploaded) {
            self.cancel_upload(name, &location).await;
        }
    }

    /// The PATCH, HEAD and PUT of [`Registry::push_growing_blob`]; `location` follows
    /// the session, for cancelling it.
    async fn stream_and_close(
        &self,
        name: &ImageName,
        location: &mut String,
        layer: GrowingLayer,
    ) -> Result<BlobOutcome, PublishError> {
        let patch = Request {
            target: location.clone(),
            ..v2(name, Method::PATCH, String::new())
                .pushing(true)
                .header(http::header::CONTENT_TYPE, "application/octet-stream")
        };
        let body = Body::Stream {
            stream: layer.bytes(),
            length: None,
        };
        let sending = self.transport.send(&name.registry, &patch, body);
        // The layer's descriptor once it is whole, and whether the registry has it
        // (not knowing counts as not having it).
        let asking = async {
            let descriptor = layer.descriptor().await;
            let there = match &descriptor {
                Some(d) => matches!(self.blob_exists(name, &d.digest).await, Ok(true)),
                None => false,
            };
            (descriptor, there)
        };
        let (sent, (descriptor, there)) = {
            tokio::pin!(sending, asking);
            tokio::select! {
                asked = &mut asking => match asked {
                    (_, true) => return Ok(BlobOutcome::Existed),
                    asked => ((&mut sending).await, asked),
                },
                sent = &mut sending => match sent {
                    // The ordinary push asks the registry itself.
                    Err(failure) => (Err(failure), (None, false)),
                    sent => (sent, asking.await),
                },
            }
        };
        let sent = match sent {
            Ok(r) if r.status == StatusCode::ACCEPTED => session(name, STREAMING, &r),
            Ok(r) => Err(unexpected(name, STREAMING, r).await),
            Err(failure) => Err(failure),
        };
        if let Ok(next) = &sent {
            location.clone_from(next);
        }
        if there {
            return Ok(BlobOutcome::Existed);
        }
        *location = sent.map_err(|failure| match failure {
            Failure::Fatal(e) => e,
            Failure::Retry { detail, .. } => refused_error(name, STREAMING, detail),
            Failure::Reauthorized => refused_error(name, STREAMING, "the token expired".into()),
        })?;
        let descriptor = descriptor.ok_or_else(|| {
            refused_error(
                name,
                STREAMING,
                "the layer was not written to its end".into(),
            )
        })?;
        self.call(
            name,
            Request {
                target: with_digest(location, &descriptor.digest),
                ..v2(name, Method::PUT, String::new())
                    .pushing(true)
                    .header(http::header::CONTENT_LENGTH, "0")
            },
            || Body::Empty,
            |r| async move {
                if r.status.is_success() {
                    Ok(BlobOutcome::Uploaded)
                } else {
                    Err(unexpected(name, STREAMING, r).await)
                }
            },
        )
        .await
    }

    /// Ends an upload session that will not be finished (it failed, or the registry
    /// has the blob), so the registry drops what it holds of it now rather than when
    /// the session expires. Once, for a few seconds at most, and its answer does not
    /// matter.
    async fn cancel_upload(&self, name: &ImageName, location: &str) {
        let delete = Request {
            target: location.to_string(),
            ..v2(name, Method::DELETE, String::new()).pushing(true)
        };
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            self.transport.send(&name.registry, &delete, Body::Empty),
        )
        .await;
    }

    /// Says that an upload of `digest` to `name` is under way and how it ends (what
    /// it took, or `None` when it failed), so that pushing it waits rather than sends
    /// it too.
    pub fn upload_under_way(
        &self,
        name: &ImageName,
        digest: &Digest,
        ends: oneshot::Receiver<Option<BlobOutcome>>,
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
            if let Ok(Some(outcome)) = ends.await {
                return Ok(outcome);
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
                    let stored = match self.transport.send(&name.registry, &put, body).await {
                        Ok(r) if r.status.is_success() => return Ok(BlobOutcome::Uploaded),
                        Ok(r) => unexpected(name, &what, r).await,
                        Err(failure) => failure,
                    };
                    // The next try opens a session of its own.
                    self.cancel_upload(name, &location).await;
                    Err(stored)
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
}

/// What a streamed upload is doing, in its errors.
const STREAMING: &str = "streaming a layer as it is written";

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

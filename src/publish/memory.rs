//! A destination held in memory, for unit tests of what is built on [`Publisher`]:
//! the merges of shared signature lists, skipping what is there, tags last. It
//! records every write, and yields to other tasks between a read and what follows,
//! so that concurrent writers interleave as they would over a network.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;

use super::{BlobOutcome, Pending, PublishError, Publisher};
use crate::image::{Blob, BlobSource, Descriptor, Digest};

#[derive(Default)]
pub struct MemoryPublisher {
    blobs: Mutex<HashMap<(String, Digest), Bytes>>,
    manifests: Mutex<HashMap<(String, Digest), Bytes>>,
    tags: Mutex<HashMap<(String, String), Digest>>,
    /// Every write, in order: `blob <digest>`, `manifest <digest>`, `tag <name>`.
    pub writes: Mutex<Vec<String>>,
}

impl MemoryPublisher {
    fn wrote(&self, what: String) {
        self.writes.lock().unwrap().push(what);
    }

    /// Puts `bytes` at `tag` as another tool would, recording no write.
    pub fn plant(&self, repository: &str, tag: &str, bytes: &[u8]) {
        let digest = Digest::of(bytes);
        let key = (repository.to_string(), digest.clone());
        self.manifests
            .lock()
            .unwrap()
            .insert(key, Bytes::copy_from_slice(bytes));
        self.tags
            .lock()
            .unwrap()
            .insert((repository.to_string(), tag.to_string()), digest);
    }

    fn resolve(&self, repository: &str, at: &str) -> Option<Digest> {
        if let Ok(digest) = Digest::parse(at) {
            let key = (repository.to_string(), digest);
            return self
                .manifests
                .lock()
                .unwrap()
                .contains_key(&key)
                .then_some(key.1);
        }
        let key = (repository.to_string(), at.to_string());
        self.tags.lock().unwrap().get(&key).cloned()
    }
}

impl Publisher for MemoryPublisher {
    fn push_blob<'a>(&'a self, repository: &'a str, blob: &'a Blob) -> Pending<'a, BlobOutcome> {
        Box::pin(async move {
            let key = (repository.to_string(), blob.descriptor.digest.clone());
            if self.blobs.lock().unwrap().contains_key(&key) {
                return Ok(BlobOutcome::Existed);
            }
            let bytes = match &blob.source {
                BlobSource::Bytes(b) | BlobSource::Unpublished(b) => b.clone(),
                _ => Bytes::new(),
            };
            self.blobs.lock().unwrap().insert(key, bytes);
            self.wrote(format!("blob {}", blob.descriptor.digest));
            Ok(BlobOutcome::Uploaded)
        })
    }

    fn push_manifest<'a>(
        &'a self,
        repository: &'a str,
        descriptor: &'a Descriptor,
        bytes: &'a Bytes,
    ) -> Pending<'a, ()> {
        Box::pin(async move {
            let key = (repository.to_string(), descriptor.digest.clone());
            self.manifests.lock().unwrap().insert(key, bytes.clone());
            self.wrote(format!("manifest {}", descriptor.digest));
            Ok(())
        })
    }

    fn has_manifest<'a>(&'a self, repository: &'a str, at: &'a str) -> Pending<'a, Option<Digest>> {
        Box::pin(async move { Ok(self.resolve(repository, at)) })
    }

    fn referrers<'a>(
        &'a self,
        _repository: &'a str,
        _subject: &'a str,
    ) -> Pending<'a, Option<Vec<serde_json::Value>>> {
        Box::pin(async { Ok(None) })
    }

    fn fetch_manifest<'a>(
        &'a self,
        repository: &'a str,
        at: &'a str,
    ) -> Pending<'a, Option<Bytes>> {
        Box::pin(async move {
            let found = self.resolve(repository, at).and_then(|digest| {
                let key = (repository.to_string(), digest);
                self.manifests.lock().unwrap().get(&key).cloned()
            });
            // The answer is on its way back: others may write meanwhile.
            tokio::task::yield_now().await;
            Ok(found)
        })
    }

    fn fetch_blob<'a>(&'a self, repository: &'a str, digest: &'a str) -> Pending<'a, Bytes> {
        Box::pin(async move {
            let key = (repository.to_string(), Digest::parse(digest).unwrap());
            self.blobs
                .lock()
                .unwrap()
                .get(&key)
                .cloned()
                .ok_or_else(|| PublishError::Layout {
                    path: "memory".into(),
                    detail: format!("no blob {digest}"),
                })
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
            let key = (repository.to_string(), descriptor.digest.clone());
            self.manifests.lock().unwrap().insert(key, bytes.clone());
            self.tags.lock().unwrap().insert(
                (repository.to_string(), tag.to_string()),
                descriptor.digest.clone(),
            );
            self.wrote(format!("tag {tag}"));
            Ok(())
        })
    }
}

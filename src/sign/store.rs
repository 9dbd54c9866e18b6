//! The two shared lists signatures live in when a registry cannot list referrers
//! itself: the `sha256-<hex>.sig` (and `.att`) manifest, whose layers are the
//! signatures, and the `sha256-<hex>` fallback index, whose manifests are the
//! referrers. Several signers may update one at the same time, and registries offer
//! no compare-and-swap on tags, so each update is a merge that is checked afterwards:
//!
//! 1. read what is there; content that is not the expected kind of manifest is never
//!    overwritten (the run fails and names the tag);
//! 2. add our entries that are not there yet (an entry already there is not added
//!    again), write;
//! 3. read back, and once more after a pause twice as long as our own read-to-write
//!    took: if another writer's entries replaced ours, merge again (a bounded number
//!    of times).
//!
//! What remains is a writer that read before our write and writes after our second
//! read-back, which takes a read-to-write slower than twice ours. Registries with the
//! referrers API never need the fallback index, and so have no window for bundles.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::TryFutureExt;
use serde_json::{json, Value};

use super::SignError;
use crate::image::{canonical_json, media_type, Blob, Descriptor, Digest};
use crate::publish::Publisher;

/// How many merges to try before reporting that another writer keeps overwriting.
const ROUNDS: usize = 5;

/// Which shared list a tag holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedList {
    /// `.sig` / `.att`: an image manifest whose layers are signatures.
    SignatureManifest,
    /// `sha256-<hex>`: an index whose manifests are referrers.
    FallbackIndex,
}

impl SharedList {
    fn field(self) -> &'static str {
        match self {
            SharedList::SignatureManifest => "layers",
            SharedList::FallbackIndex => "manifests",
        }
    }

    fn media_type(self) -> &'static str {
        match self {
            SharedList::SignatureManifest => media_type::OCI_MANIFEST,
            SharedList::FallbackIndex => media_type::OCI_INDEX,
        }
    }

    /// The manifest for `entries`, and the blobs it needs (the `.sig` config).
    fn render(self, entries: &[Value]) -> (Vec<u8>, Vec<Blob>) {
        match self {
            SharedList::SignatureManifest => {
                let diff_ids: Vec<&Value> = entries.iter().map(|l| &l["digest"]).collect();
                // It lists the layers, ours among them: new, like our signature.
                let config = Blob::unpublished(
                    media_type::OCI_CONFIG,
                    canonical_json(&json!({
                        "architecture": "", "os": "", "config": {},
                        "rootfs": {"type": "layers", "diff_ids": diff_ids},
                    })),
                );
                let manifest = canonical_json(&json!({
                    "schemaVersion": 2,
                    "mediaType": media_type::OCI_MANIFEST,
                    "config": config.descriptor,
                    "layers": entries,
                }));
                (manifest, vec![config])
            }
            SharedList::FallbackIndex => (
                canonical_json(&json!({
                    "schemaVersion": 2,
                    "mediaType": media_type::OCI_INDEX,
                    "manifests": entries,
                })),
                Vec::new(),
            ),
        }
    }
}

/// A shared list as read: its entries, the digest of the manifest that holds them
/// (None when the tag does not exist), and when it was read.
#[derive(Debug)]
pub struct Listed {
    pub entries: Vec<Value>,
    pub digest: Option<Digest>,
    read_at: Instant,
}

/// The list at `tag`, or an error when the tag holds something else. A missing tag
/// is an empty list.
pub async fn read_list(
    publisher: &dyn Publisher,
    repository: &str,
    tag: &str,
    kind: SharedList,
) -> Result<Listed, SignError> {
    let read_at = Instant::now();
    let Some(bytes) = publisher.fetch_manifest(repository, tag).await? else {
        return Ok(Listed {
            entries: Vec::new(),
            digest: None,
            read_at,
        });
    };
    let entries = parse_list(&bytes, kind).map_err(|found| SignError::Foreign {
        tag: format!("{repository}:{tag}"),
        found,
        expected: kind.media_type(),
    })?;
    Ok(Listed {
        entries,
        digest: Some(Digest::of(&bytes)),
        read_at,
    })
}

/// The entries of a shared list, or what was found instead.
fn parse_list(bytes: &[u8], kind: SharedList) -> Result<Vec<Value>, String> {
    let value: Value = serde_json::from_slice(bytes).map_err(|_| {
        format!(
            "{} bytes that are not JSON ({:?}…)",
            bytes.len(),
            String::from_utf8_lossy(&bytes[..bytes.len().min(24)])
        )
    })?;
    let media = value["mediaType"].as_str().unwrap_or("no mediaType");
    if media != kind.media_type() {
        return Err(format!("a manifest of type {media}"));
    }
    value[kind.field()]
        .as_array()
        .cloned()
        .ok_or_else(|| format!("a {media} without {}", kind.field()))
}

/// Adds `ours` to the list at `tag` (of kind `kind`), keeping every entry already
/// there, and checks that the result stuck (see the module doc). `blobs` are what
/// `ours` name, uploaded while the list is first read; `same` says whether an entry
/// already there stands for one of ours (so it is not added twice). Returns the
/// digest of the manifest at the tag, or None when there is nothing to add.
pub async fn merge_into_tag(
    publisher: &dyn Publisher,
    repository: &str,
    (tag, kind): (&str, SharedList),
    ours: &[Value],
    blobs: &[Blob],
    same: impl Fn(&Value, &Value) -> bool,
) -> Result<Option<Digest>, SignError> {
    if ours.is_empty() {
        return Ok(None);
    }
    for round in 0..ROUNDS {
        // Read, and if anything of ours is missing, the merged list's config up.
        let prepare = async {
            let Listed {
                mut entries,
                digest,
                read_at,
            } = read_list(publisher, repository, tag, kind).await?;
            let missing: Vec<&Value> = ours
                .iter()
                .filter(|o| !entries.iter().any(|e| same(e, o)))
                .collect();
            if missing.is_empty() {
                return Ok::<_, SignError>((digest, read_at, None));
            }
            entries.extend(missing.into_iter().cloned());
            let (manifest, config) = kind.render(&entries);
            futures::future::try_join_all(
                config.iter().map(|b| publisher.push_blob(repository, b)),
            )
            .await?;
            Ok((digest, read_at, Some(manifest)))
        };
        // The first time, our entries' blobs go up meanwhile.
        let (digest, read_at, merged) = if round == 0 {
            let upload = futures::future::try_join_all(
                blobs.iter().map(|b| publisher.push_blob(repository, b)),
            )
            .map_err(SignError::from);
            futures::try_join!(prepare, upload)?.0
        } else {
            prepare.await?
        };
        let Some(manifest) = merged else {
            // Complete: as found, or as written and still so after the pause.
            return Ok(digest);
        };
        let descriptor = Descriptor::for_bytes(kind.media_type(), &manifest);
        publisher
            .tag(repository, tag, &descriptor, &Bytes::from(manifest))
            .await?;
        // A writer that read before our write lands within about our own
        // read-to-write time; wait twice that, then look again.
        let pause = (read_at.elapsed() * 2).max(Duration::from_millis(50));
        tokio::time::sleep(pause).await;
    }
    Err(SignError::Contended {
        tag: format!("{repository}:{tag}"),
        rounds: ROUNDS,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::publish::memory::MemoryPublisher;

    fn entry(digest: &str) -> Value {
        json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest, "size": 1})
    }

    fn tag_writes(store: &MemoryPublisher) -> usize {
        let writes = store.writes.lock().unwrap();
        writes.iter().filter(|w| w.starts_with("tag ")).count()
    }

    #[tokio::test]
    async fn two_writers_at_once_both_keep_their_entries() {
        let store = MemoryPublisher::default();
        let same = |a: &Value, b: &Value| a == b;
        let list = ("sha256-ab", SharedList::FallbackIndex);
        let (a, b) = ([entry("sha256:aa")], [entry("sha256:bb")]);
        let (ra, rb) = tokio::join!(
            merge_into_tag(&store, "app", list, &a, &[], same),
            merge_into_tag(&store, "app", list, &b, &[], same),
        );
        ra.unwrap();
        rb.unwrap();
        let listed = read_list(&store, "app", "sha256-ab", SharedList::FallbackIndex)
            .await
            .unwrap();
        assert!(listed.entries.contains(&a[0]) && listed.entries.contains(&b[0]));
        // Both read the empty list before either wrote: one overwrote the other, and
        // the read-back merged again.
        assert!(tag_writes(&store) >= 3, "the race did not happen");
    }

    #[tokio::test]
    async fn merging_what_is_there_writes_nothing() {
        let store = MemoryPublisher::default();
        let same = |a: &Value, b: &Value| a == b;
        let list = ("sha256-ab.sig", SharedList::SignatureManifest);
        let ours = [entry("sha256:aa")];
        let first = merge_into_tag(&store, "app", list, &ours, &[], same)
            .await
            .unwrap();
        let writes = store.writes.lock().unwrap().len();
        let again = merge_into_tag(&store, "app", list, &ours, &[], same)
            .await
            .unwrap();
        assert_eq!(first, again);
        assert_eq!(store.writes.lock().unwrap().len(), writes);
    }

    #[tokio::test]
    async fn foreign_content_is_never_overwritten() {
        let store = MemoryPublisher::default();
        store.plant("app", "sha256-ab.sig", b"\x00not a manifest");
        let err = merge_into_tag(
            &store,
            "app",
            ("sha256-ab.sig", SharedList::SignatureManifest),
            &[entry("sha256:aa")],
            &[],
            |a: &Value, b: &Value| a == b,
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("app:sha256-ab.sig"), "{err}");
        assert_eq!(tag_writes(&store), 0);
        let kept = store.fetch_manifest("app", "sha256-ab.sig").await.unwrap();
        assert_eq!(kept.as_deref(), Some(&b"\x00not a manifest"[..]));
    }

    #[test]
    fn foreign_content_is_named() {
        let index = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
        assert_eq!(parse_list(index, SharedList::FallbackIndex), Ok(vec![]));
        let err = parse_list(index, SharedList::SignatureManifest).unwrap_err();
        assert!(err.contains("index.v1+json"), "{err}");
        let err = parse_list(b"\x00garbage", SharedList::FallbackIndex).unwrap_err();
        assert!(err.contains("not JSON"), "{err}");
    }

    #[test]
    fn a_signature_manifest_lists_its_layers_as_diff_ids() {
        let layer = json!({"mediaType": "x", "digest": "sha256:ab", "size": 1});
        let (manifest, blobs) = SharedList::SignatureManifest.render(&[layer]);
        let m: Value = serde_json::from_slice(&manifest).unwrap();
        assert_eq!(m["layers"][0]["digest"], "sha256:ab");
        assert_eq!(m["config"]["digest"], blobs[0].descriptor.digest.as_str());
    }
}

//! Signatures and attestations, stored where cosign and GitHub look for them:
//! - the classic cosign signature: tag `sha256-<hex>.sig`, one simplesigning layer per
//!   signature, appended to what is there (cosign v2 verifies it; v3 falls back to it);
//! - Sigstore bundles v0.3 with a DSSE envelope, stored as OCI 1.1 referrers of the
//!   signed manifest, with the `sha256-<hex>` fallback index kept up to date for
//!   registries without the referrers API: an image signature (cosign v3's
//!   `https://sigstore.dev/cosign/sign/v1` statement) and every attestation;
//! - optionally the legacy `sha256-<hex>.att` tag (DSSE envelope layers).

pub mod keys;
pub mod verify;

use std::collections::BTreeMap;
use std::path::PathBuf;

use base64::Engine as _;
use bytes::Bytes;
use serde::Serialize;
use serde_json::{json, Value};

use crate::image::{canonical_json, media_type, rfc3339, Blob, Descriptor};
use crate::publish::{PublishError, Publisher};
use keys::SigningKey;

pub const BUNDLE_MEDIA_TYPE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
pub const INTOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
const INTOTO_STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// What cosign v3 signs for an image signature in bundle form.
pub const COSIGN_SIGN_PREDICATE: &str = "https://sigstore.dev/cosign/sign/v1";
const SIMPLESIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
const DSSE_ENVELOPE: &str = "application/vnd.dsse.envelope.v1+json";
const EMPTY_CONFIG: &str = "application/vnd.oci.empty.v1+json";
const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";

#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("signing key {path}: {detail}")]
    Key { path: PathBuf, detail: String },
    #[error("signing failed: {0}")]
    Crypto(String),
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error("{0}")]
    NotFound(String),
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// DSSE's pre-authentication encoding: what the signature is over.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// An in-toto v1 statement about `subjects` (`name`, `sha256:` digest).
pub fn statement(
    subjects: &[(String, String)],
    predicate_type: &str,
    predicate: &Value,
) -> Vec<u8> {
    let subject: Vec<Value> = subjects
        .iter()
        .map(|(name, digest)| {
            json!({"name": name, "digest": {"sha256": digest.trim_start_matches("sha256:")}})
        })
        .collect();
    canonical_json(&json!({
        "_type": INTOTO_STATEMENT_TYPE,
        "subject": subject,
        "predicateType": predicate_type,
        "predicate": predicate,
    }))
}

/// One thing to sign or attest, about one manifest or index.
#[derive(Debug, Clone)]
pub struct Claim {
    /// The repository the subject lives in (and where the claim is stored).
    pub repository: String,
    pub subject: Descriptor,
    pub kind: ClaimKind,
}

#[derive(Debug, Clone)]
pub enum ClaimKind {
    /// An image signature (classic `.sig` and a bundle referrer).
    Signature,
    /// An in-toto statement with this predicate, stored as a bundle referrer.
    Attestation {
        predicate_type: String,
        /// The whole statement, already made (its subjects may be several images).
        statement: Vec<u8>,
    },
}

/// What was stored, for reports.
#[derive(Debug, Clone, Serialize)]
pub struct Attachment {
    /// `signature` or `attestation`.
    pub kind: &'static str,
    pub subject: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub predicate_type: Option<String>,
    /// `sig-tag`, `referrer` or `att-tag`.
    pub storage: &'static str,
    /// Digest of the manifest that holds it.
    pub digest: String,
}

/// Signs and stores every claim through `publisher`, after the images themselves
/// were published.
/// Claims about different subjects run concurrently; those about one subject run in
/// order, since they update the same `.sig`, `.att` and fallback tags.
pub async fn attach<P: Publisher>(
    publisher: &P,
    key: &SigningKey,
    claims: &[Claim],
    legacy_attestations: bool,
    created: i64,
) -> Result<Vec<Attachment>, SignError> {
    let mut by_subject: Vec<Vec<&Claim>> = Vec::new();
    for claim in claims {
        match by_subject.iter_mut().find(|g| {
            g[0].subject.digest == claim.subject.digest && g[0].repository == claim.repository
        }) {
            Some(group) => group.push(claim),
            None => by_subject.push(vec![claim]),
        }
    }
    let groups = by_subject
        .into_iter()
        .map(|group| attach_in_order(publisher, key, group, legacy_attestations, created));
    let done = futures::future::try_join_all(groups).await?;
    Ok(done.into_iter().flatten().collect())
}

async fn attach_in_order<P: Publisher>(
    publisher: &P,
    key: &SigningKey,
    claims: Vec<&Claim>,
    legacy_attestations: bool,
    created: i64,
) -> Result<Vec<Attachment>, SignError> {
    let mut out = Vec::new();
    for claim in claims {
        let subject = &claim.subject.digest;
        match &claim.kind {
            ClaimKind::Signature => {
                let payload = simplesigning_payload(&claim.repository, subject);
                let signature = key.sign(&payload)?;
                let mut annotations = BTreeMap::new();
                annotations.insert(SIGNATURE_ANNOTATION.to_string(), b64(&signature));
                let digest = append_layer(
                    publisher,
                    &claim.repository,
                    subject,
                    "sig",
                    SIMPLESIGNING,
                    payload,
                    annotations,
                )
                .await?;
                out.push(Attachment {
                    kind: "signature",
                    subject: subject.clone(),
                    predicate_type: None,
                    storage: "sig-tag",
                    digest,
                });

                let stmt = statement(
                    &[(claim.repository.clone(), subject.clone())],
                    COSIGN_SIGN_PREDICATE,
                    &json!({}),
                );
                let digest =
                    store_bundle(publisher, key, claim, COSIGN_SIGN_PREDICATE, &stmt, created)
                        .await?;
                out.push(Attachment {
                    kind: "signature",
                    subject: subject.clone(),
                    predicate_type: Some(COSIGN_SIGN_PREDICATE.into()),
                    storage: "referrer",
                    digest,
                });
            }
            ClaimKind::Attestation {
                predicate_type,
                statement,
            } => {
                let digest =
                    store_bundle(publisher, key, claim, predicate_type, statement, created).await?;
                out.push(Attachment {
                    kind: "attestation",
                    subject: subject.clone(),
                    predicate_type: Some(predicate_type.clone()),
                    storage: "referrer",
                    digest,
                });
                if legacy_attestations {
                    let envelope = envelope(key, statement)?;
                    let mut annotations = BTreeMap::new();
                    annotations.insert(SIGNATURE_ANNOTATION.to_string(), String::new());
                    annotations.insert("predicateType".to_string(), predicate_type.clone());
                    let digest = append_layer(
                        publisher,
                        &claim.repository,
                        subject,
                        "att",
                        DSSE_ENVELOPE,
                        canonical_json(&envelope),
                        annotations,
                    )
                    .await?;
                    out.push(Attachment {
                        kind: "attestation",
                        subject: subject.clone(),
                        predicate_type: Some(predicate_type.clone()),
                        storage: "att-tag",
                        digest,
                    });
                }
            }
        }
    }
    Ok(out)
}

/// cosign's simplesigning payload: which image, by digest, in which repository.
fn simplesigning_payload(repository: &str, digest: &str) -> Vec<u8> {
    canonical_json(&json!({
        "critical": {
            "identity": {"docker-reference": repository},
            "image": {"docker-manifest-digest": digest},
            "type": "cosign container image signature",
        },
        "optional": null,
    }))
}

fn envelope(key: &SigningKey, statement: &[u8]) -> Result<Value, SignError> {
    let signature = key.sign(&pae(INTOTO_PAYLOAD_TYPE, statement))?;
    Ok(json!({
        "payloadType": INTOTO_PAYLOAD_TYPE,
        "payload": b64(statement),
        "signatures": [{"keyid": "", "sig": b64(&signature)}],
    }))
}

/// `sha256-<hex>` and its suffixed forms (`.sig`, `.att`).
fn digest_tag(digest: &str, suffix: Option<&str>) -> String {
    let base = digest.replacen(':', "-", 1);
    match suffix {
        Some(s) => format!("{base}.{s}"),
        None => base,
    }
}

/// Adds one layer to the `sha256-<hex>.<suffix>` manifest, keeping the layers already
/// there (a second signer adds, never replaces). Returns the new manifest's digest.
async fn append_layer<P: Publisher>(
    publisher: &P,
    repository: &str,
    subject: &str,
    suffix: &str,
    layer_type: &str,
    payload: Vec<u8>,
    annotations: BTreeMap<String, String>,
) -> Result<String, SignError> {
    let tag = digest_tag(subject, Some(suffix));
    let mut layers: Vec<Value> = match publisher.fetch_manifest(repository, &tag).await? {
        Some(bytes) => serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|m| m["layers"].as_array().cloned())
            .unwrap_or_default(),
        None => Vec::new(),
    };
    let blob = Blob::from_bytes(layer_type, payload);
    let mut layer = blob.descriptor.clone();
    layer.annotations = annotations;
    let layer = json!(layer);
    if !layers.contains(&layer) {
        layers.push(layer);
    }
    let diff_ids: Vec<&Value> = layers.iter().map(|l| &l["digest"]).collect();
    let config = Blob::from_bytes(
        media_type::OCI_CONFIG,
        canonical_json(
            &json!({"architecture": "", "os": "", "config": {}, "rootfs": {"type": "layers", "diff_ids": diff_ids}}),
        ),
    );
    let manifest = canonical_json(&json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_MANIFEST,
        "config": config.descriptor,
        "layers": layers,
    }));
    store_manifest(publisher, repository, &[blob, config], manifest, Some(&tag)).await
}

/// Pushes blobs, then the manifest, then the tag; returns the manifest digest.
async fn store_manifest<P: Publisher>(
    publisher: &P,
    repository: &str,
    blobs: &[Blob],
    manifest: Vec<u8>,
    tag: Option<&str>,
) -> Result<String, SignError> {
    for blob in blobs {
        publisher.push_blob(repository, blob).await?;
    }
    let media = serde_json::from_slice::<Value>(&manifest)
        .ok()
        .and_then(|m| m["mediaType"].as_str().map(str::to_string))
        .unwrap_or_else(|| media_type::OCI_MANIFEST.to_string());
    let descriptor = Descriptor::for_bytes(&media, &manifest);
    let bytes = Bytes::from(manifest);
    publisher
        .push_manifest(repository, &descriptor, &bytes)
        .await?;
    if let Some(tag) = tag {
        publisher.tag(repository, tag, &descriptor, &bytes).await?;
    }
    Ok(descriptor.digest)
}

/// A DSSE bundle v0.3 as an OCI referrer of the claim's subject, listed in the
/// `sha256-<hex>` fallback index.
async fn store_bundle<P: Publisher>(
    publisher: &P,
    key: &SigningKey,
    claim: &Claim,
    predicate_type: &str,
    statement: &[u8],
    created: i64,
) -> Result<String, SignError> {
    let bundle = json!({
        "mediaType": BUNDLE_MEDIA_TYPE,
        "verificationMaterial": {"publicKey": {"hint": key.hint()}, "tlogEntries": []},
        "dsseEnvelope": envelope(key, statement)?,
    });
    let bundle = Blob::from_bytes(BUNDLE_MEDIA_TYPE, canonical_json(&bundle));
    let empty = Blob::from_bytes(EMPTY_CONFIG, b"{}".to_vec());
    let mut subject = claim.subject.clone();
    subject.platform = None;
    subject.annotations.clear();
    let annotations = json!({
        "dev.sigstore.bundle.content": "dsse-envelope",
        "dev.sigstore.bundle.predicateType": predicate_type,
        "org.opencontainers.image.created": rfc3339(created),
    });
    let manifest = canonical_json(&json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_MANIFEST,
        "artifactType": BUNDLE_MEDIA_TYPE,
        "config": empty.descriptor,
        "layers": [bundle.descriptor],
        "subject": subject,
        "annotations": annotations,
    }));
    let referrer = Descriptor::for_bytes(media_type::OCI_MANIFEST, &manifest);
    let digest = store_manifest(
        publisher,
        &claim.repository,
        &[empty, bundle],
        manifest,
        None,
    )
    .await?;

    // The fallback index: every referrer of the subject, ours added once.
    let tag = digest_tag(&claim.subject.digest, None);
    let mut manifests: Vec<Value> = match publisher.fetch_manifest(&claim.repository, &tag).await? {
        Some(bytes) => serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|m| m["manifests"].as_array().cloned())
            .unwrap_or_default(),
        None => Vec::new(),
    };
    if !manifests
        .iter()
        .any(|m| m["digest"] == referrer.digest.as_str())
    {
        let mut entry = referrer;
        entry.artifact_type = Some(BUNDLE_MEDIA_TYPE.into());
        let mut entry = json!(entry);
        entry["annotations"] = annotations;
        manifests.push(entry);
    }
    let index = canonical_json(&json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_INDEX,
        "manifests": manifests,
    }));
    store_manifest(publisher, &claim.repository, &[], index, Some(&tag)).await?;
    Ok(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_matches_the_dsse_spec_example() {
        // DSSE spec: PAE("http://example.com/HelloWorld", "hello world")
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
    }

    #[test]
    fn statements_and_tags() {
        let s: Value = serde_json::from_slice(&statement(
            &[("r/app".into(), "sha256:ab".into())],
            "https://slsa.dev/provenance/v1",
            &json!({"x": 1}),
        ))
        .unwrap();
        assert_eq!(s["_type"], INTOTO_STATEMENT_TYPE);
        assert_eq!(s["subject"][0]["digest"]["sha256"], "ab");
        assert_eq!(digest_tag("sha256:ab", Some("sig")), "sha256-ab.sig");
        assert_eq!(digest_tag("sha256:ab", None), "sha256-ab");
    }
}

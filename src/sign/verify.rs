//! Reading back what `attach` stored: checking signatures with a public key, and
//! finding attestations (SBOMs, provenance) of an image. Works through any
//! `Publisher`, so a registry and an OCI layout are checked alike.

use std::path::Path;

use base64::Engine as _;
use serde::Serialize;
use serde_json::Value;

use super::evidence::{Evidence, Witnessed};
use super::trust::{Rejection, Trust};
use super::{
    digest_tag, keyless, pae, SignError, BUNDLE_MEDIA_TYPE, CERTIFICATE_ANNOTATION,
    INTOTO_PAYLOAD_TYPE, SIGNATURE_ANNOTATION,
};
use super::{AttachmentKind, Storage};
use crate::image::Digest;
use crate::publish::{parse_reference, LayoutPublisher, Publisher, Registry, RegistryOptions};

/// A signature or attestation found about an image.
#[derive(Debug, Clone, Serialize)]
pub struct Found {
    pub kind: AttachmentKind,
    pub storage: Storage,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub predicate_type: Option<String>,
    /// Who the certificate names, for keyless signatures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate_identity: Option<String>,
    /// Whether a transparency log entry came with it.
    pub tlog_entry: bool,
    /// What the trusted root backed, when one was given and the signer verified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub witnessed: Option<Witnessed>,
    /// Whether the trust given accepted it (None: nothing given to check with).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verified: Option<bool>,
    /// Why the trust given did not accept it.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "display_reason"
    )]
    pub reason: Option<Rejection>,
    /// The in-toto statement, for attestations.
    #[serde(skip)]
    pub statement: Option<Value>,
}

fn display_reason<S: serde::Serializer>(
    reason: &Option<Rejection>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match reason {
        Some(reason) => serializer.collect_str(reason),
        None => serializer.serialize_none(),
    }
}

/// What checking with `trust` found: `verified` and `reason` for a [`Found`].
fn judged(checked: Option<Result<(), Rejection>>) -> (Option<bool>, Option<Rejection>) {
    match checked {
        None => (None, None),
        Some(Ok(())) => (Some(true), None),
        Some(Err(reason)) => (Some(false), Some(reason)),
    }
}

fn b64decode(text: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

fn identity_of(certificate: Option<&[u8]>) -> Option<String> {
    keyless::certificate_identity(certificate?).map(|(san, _)| san)
}

/// Everything stored about `digest` in `repository`: the classic `.sig` layers and
/// the bundle referrers listed in the fallback index, each checked against `trust`,
/// and each bundle's evidence against the trusted root when `evidence` is given.
pub async fn inspect(
    publisher: &dyn Publisher,
    repository: &str,
    digest: &Digest,
    trust: Option<&Trust>,
    evidence: Option<&Evidence>,
) -> Result<Vec<Found>, SignError> {
    let mut found = Vec::new();
    if let Some(sig) = publisher
        .fetch_manifest(repository, &digest_tag(digest, Some("sig")))
        .await?
    {
        let manifest: Value = serde_json::from_slice(&sig).unwrap_or_default();
        for layer in manifest["layers"].as_array().into_iter().flatten() {
            let Some(layer_digest) = layer["digest"].as_str() else {
                continue;
            };
            let payload = publisher.fetch_blob(repository, layer_digest).await?;
            let claims: Value = serde_json::from_slice(&payload).unwrap_or_default();
            let about_this = claims["critical"]["image"]["docker-manifest-digest"] == **digest;
            let annotations = &layer["annotations"];
            let signature = annotations[SIGNATURE_ANNOTATION]
                .as_str()
                .and_then(b64decode);
            let certificate = annotations[CERTIFICATE_ANNOTATION]
                .as_str()
                .and_then(|p| pem::parse(p).ok())
                .map(pem::Pem::into_contents);
            let (verified, reason) = judged(trust.map(|t| {
                if !about_this {
                    return Err(Rejection::OtherImage);
                }
                let signature = signature.as_deref().ok_or(Rejection::NoSignature)?;
                t.verifies(signature, &payload, certificate.as_deref())?;
                match evidence {
                    Some(_) => Err(Rejection::ClassicSignature),
                    None => Ok(()),
                }
            }));
            found.push(Found {
                kind: AttachmentKind::Signature,
                storage: Storage::SigTag,
                predicate_type: None,
                certificate_identity: identity_of(certificate.as_deref()),
                tlog_entry: annotations.get(super::BUNDLE_ANNOTATION).is_some(),
                witnessed: None,
                verified,
                reason,
                statement: None,
            });
        }
    }
    // The registry's referrers API where it has one, else the fallback index.
    let listed = match publisher.referrers(repository, digest).await? {
        Some(list) => Some(list),
        None => publisher
            .fetch_manifest(repository, &digest_tag(digest, None))
            .await?
            .map(|index| {
                let index: Value = serde_json::from_slice(&index).unwrap_or_default();
                index["manifests"].as_array().cloned().unwrap_or_default()
            }),
    };
    if let Some(entries) = listed {
        for entry in &entries {
            if entry["artifactType"] != BUNDLE_MEDIA_TYPE {
                continue;
            }
            let Some(manifest_digest) = entry["digest"].as_str() else {
                continue;
            };
            let Some(manifest) = publisher
                .fetch_manifest(repository, manifest_digest)
                .await?
            else {
                continue;
            };
            let manifest: Value = serde_json::from_slice(&manifest).unwrap_or_default();
            if manifest["subject"]["digest"] != **digest {
                continue;
            }
            let Some(layer_digest) = manifest["layers"][0]["digest"].as_str() else {
                continue;
            };
            let bytes = publisher.fetch_blob(repository, layer_digest).await?;
            let mut finding = bundle_finding(&bytes, digest, trust);
            if let (Some(evidence), Some(trust), Some(true)) = (evidence, trust, finding.verified) {
                match evidence.check(&String::from_utf8_lossy(&bytes), digest, trust) {
                    Ok(witnessed) => finding.witnessed = Some(witnessed),
                    Err(why) => {
                        finding.verified = Some(false);
                        finding.reason = Some(Rejection::Unwitnessed(why));
                    }
                }
            }
            found.push(finding);
        }
    }
    Ok(found)
}

/// A Sigstore bundle's DSSE envelope, checked: is it about `digest`, and signed by
/// whom `trust` names.
fn bundle_finding(bytes: &[u8], digest: &str, trust: Option<&Trust>) -> Found {
    let bundle: Value = serde_json::from_slice(bytes).unwrap_or_default();
    let envelope = &bundle["dsseEnvelope"];
    let material = &bundle["verificationMaterial"];
    let payload = envelope["payload"]
        .as_str()
        .and_then(b64decode)
        .unwrap_or_default();
    let statement: Value = serde_json::from_slice(&payload).unwrap_or_default();
    let about_this = statement["subject"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|s| {
            s["digest"]["sha256"]
                .as_str()
                .map(|h| format!("sha256:{h}"))
                .as_deref()
                == Some(digest)
        });
    let certificate = material["certificate"]["rawBytes"]
        .as_str()
        .or_else(|| material["x509CertificateChain"]["certificates"][0]["rawBytes"].as_str())
        .and_then(b64decode);
    let (verified, reason) = judged(trust.map(|t| {
        if !about_this {
            return Err(Rejection::OtherImage);
        }
        if envelope["payloadType"] != INTOTO_PAYLOAD_TYPE {
            return Err(Rejection::NotInToto(
                envelope["payloadType"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            ));
        }
        // Any signature that verifies will do; else why the first did not.
        let mut first = None;
        for s in envelope["signatures"].as_array().into_iter().flatten() {
            let checked = match s["sig"].as_str().and_then(b64decode) {
                Some(sig) => t.verifies(
                    &sig,
                    &pae(INTOTO_PAYLOAD_TYPE, &payload),
                    certificate.as_deref(),
                ),
                None => Err(Rejection::NoSignature),
            };
            match checked {
                Ok(()) => return Ok(()),
                Err(reason) => {
                    first.get_or_insert(reason);
                }
            }
        }
        Err(first.unwrap_or(Rejection::NoSignature))
    }));
    let predicate_type = statement["predicateType"].as_str().map(str::to_string);
    let kind = if predicate_type.as_deref() == Some(super::COSIGN_SIGN_PREDICATE) {
        AttachmentKind::Signature
    } else {
        AttachmentKind::Attestation
    };
    Found {
        kind,
        storage: Storage::Referrer,
        predicate_type,
        certificate_identity: identity_of(certificate.as_deref()),
        tlog_entry: material["tlogEntries"]
            .as_array()
            .is_some_and(|e| !e.is_empty()),
        witnessed: None,
        verified,
        reason,
        statement: Some(statement),
    }
}

/// What a user's reference (`oci:DIR[:tag]`, or `host/repo[:tag|@digest]`) names,
/// opened for reading and writing.
pub struct Target {
    store: Box<dyn Publisher>,
    /// The repository within the store ("" in an OCI layout).
    repository: String,
    /// The root manifest or index, and its digest.
    pub manifest: bytes::Bytes,
    pub digest: Digest,
}

pub async fn open(reference: &str, registries: &RegistryOptions) -> Result<Target, SignError> {
    if let Some(rest) = reference.strip_prefix("oci:") {
        let (dir, tag) = match rest.rsplit_once(':') {
            Some((dir, tag)) if !tag.contains('/') => (dir, tag),
            _ => (rest, "latest"),
        };
        let layout = LayoutPublisher::open(Path::new(dir))?;
        let manifest = layout.fetch_manifest("", tag).await?.ok_or_else(|| {
            SignError::NotFound(format!(
                "{reference}: no image tagged {tag:?} in the layout"
            ))
        })?;
        let digest = Digest::of(&manifest);
        return Ok(Target {
            store: Box::new(layout),
            repository: String::new(),
            manifest,
            digest,
        });
    }
    let (name, at) = parse_reference(reference)?;
    let registry = Registry::new(registries)?;
    let (manifest, digest) = registry.pull_manifest(&name, &at).await?;
    Ok(Target {
        store: Box::new(registry),
        repository: name.to_string(),
        manifest,
        digest,
    })
}

impl Target {
    /// Where the image and what refers to it are read from.
    pub fn store(&self) -> &dyn Publisher {
        &*self.store
    }

    /// The repository within [`Target::store`] ("" in an OCI layout).
    pub fn repository(&self) -> &str {
        &self.repository
    }
}

/// Inspects what is stored about the manifest `reference` names; returns its digest too.
pub async fn inspect_reference(
    reference: &str,
    trust: Option<&Trust>,
    evidence: Option<&Evidence>,
    registries: &RegistryOptions,
) -> Result<(Digest, Vec<Found>), SignError> {
    let target = open(reference, registries).await?;
    let found = inspect(
        &*target.store,
        &target.repository,
        &target.digest,
        trust,
        evidence,
    )
    .await?;
    Ok((target.digest, found))
}

/// Signs and attests an image already published (an index and each of its
/// manifests), without rebuilding: what to run when signing failed after a push.
/// Returns the root digest, what was attached, and what was skipped.
pub async fn sign_reference(
    reference: &str,
    signer: &super::Signer,
    registries: &RegistryOptions,
    options: &super::published::ClaimOptions<'_>,
    legacy_attestations: bool,
) -> Result<(Digest, Vec<super::Attachment>, Vec<String>), SignError> {
    let target = open(reference, registries).await?;
    let store = &*target.store;
    let (claims, skipped) =
        super::published::claims(store, &target.repository, &target.manifest, options).await?;
    let attached =
        super::attach(store, signer, &claims, legacy_attestations, options.created).await?;
    Ok((target.digest, attached, skipped))
}

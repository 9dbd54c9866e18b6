//! Signing claims and storing what was signed: per subject, the claims are signed
//! concurrently (the log round trips overlap), the bundle referrers are pushed side
//! by side, and each shared list (`.sig`, `.att`, the fallback index) gets one merge.
//! Whatever the same key already stored about the subject is not stored again.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use serde_json::{json, Value};

use super::store::{self, SharedList};
use super::{
    digest_tag, statement, tlog, Attachment, AttachmentKind, Claim, ClaimKind, ListedBy, SignError,
    SignedStatement, Signer, Storage, BUNDLE_ANNOTATION, BUNDLE_MEDIA_TYPE, COSIGN_SIGN_PREDICATE,
    DSSE_ENVELOPE, EMPTY_CONFIG, KEY_ANNOTATION, PREDICATE_ANNOTATION, SIGNATURE_ANNOTATION,
    SIMPLESIGNING, STATEMENT_ANNOTATION,
};
use crate::attest::SbomDocument;
use crate::image::{canonical_json, rfc3339, Blob, BlobSource, Descriptor, Digest, Manifest};
use crate::publish::Publisher;

/// Signs and stores every claim through `publisher` (into each claim's repository),
/// after the images themselves were published.
pub async fn attach(
    publisher: &dyn Publisher,
    signer: &Signer,
    claims: &[Claim],
    legacy_attestations: bool,
    created: i64,
) -> Result<Vec<Attachment>, SignError> {
    let signed = sign_claims(signer, claims).await?;
    let Some(repository) = claims.first().map(|c| c.repository.clone()) else {
        return Ok(Vec::new());
    };
    store_signed(
        publisher,
        &repository,
        signer,
        &signed,
        legacy_attestations,
        created,
    )
    .await
}

/// The claims about one subject, signed (and logged) once: what any number of
/// destinations then store, so a build written to a registry and a layout makes one
/// signature per claim, and one log entry.
pub struct SignedSubject {
    claims: Vec<(Claim, SignedClaim)>,
}

/// Signs every claim; the log round trips of all of them overlap. Claims are grouped
/// by subject, since those about one subject share the `.sig`, `.att` and fallback
/// tags (one merge each when stored).
pub async fn sign_claims(
    signer: &Signer,
    claims: &[Claim],
) -> Result<Vec<SignedSubject>, SignError> {
    let mut by_subject: Vec<Vec<&Claim>> = Vec::new();
    for claim in claims {
        match by_subject.iter_mut().find(|g| {
            g[0].subject.digest == claim.subject.digest && g[0].repository == claim.repository
        }) {
            Some(group) => group.push(claim),
            None => by_subject.push(vec![claim]),
        }
    }
    let groups = by_subject.into_iter().map(|group| async move {
        let signed =
            futures::future::try_join_all(group.iter().map(|c| sign_claim(signer, c))).await?;
        Ok::<_, SignError>(SignedSubject {
            claims: group.into_iter().cloned().zip(signed).collect(),
        })
    });
    futures::future::try_join_all(groups).await
}

/// Stores what was signed into `repository` through `publisher`; the subjects run
/// concurrently.
pub async fn store_signed(
    publisher: &dyn Publisher,
    repository: &str,
    signer: &Signer,
    signed: &[SignedSubject],
    legacy_attestations: bool,
    created: i64,
) -> Result<Vec<Attachment>, SignError> {
    let subjects = signed.iter().map(|subject| {
        store_subject(
            publisher,
            repository,
            signer,
            subject,
            legacy_attestations,
            created,
        )
    });
    let done = futures::future::try_join_all(subjects).await?;
    Ok(done.into_iter().flatten().collect())
}

/// A claim signed, and entered in the log, ready to store.
enum SignedClaim {
    Signature {
        payload: Vec<u8>,
        annotations: BTreeMap<String, String>,
        entry: Option<tlog::LogEntry>,
        bundle: SignedStatement,
    },
    Attestation(SignedStatement),
}

async fn sign_claim(signer: &Signer, claim: &Claim) -> Result<SignedClaim, SignError> {
    match &claim.kind {
        ClaimKind::Signature => {
            let subject = &claim.subject.digest;
            let payload = simplesigning_payload(&claim.repository, subject);
            let stmt = signature_statement(&claim.repository, subject);
            let ((annotations, entry), bundle) =
                futures::try_join!(signer.sign_payload(&payload), signer.sign_statement(&stmt))?;
            Ok(SignedClaim::Signature {
                payload,
                annotations,
                entry,
                bundle,
            })
        }
        ClaimKind::Attestation { statement, .. } => Ok(SignedClaim::Attestation(
            signer.sign_statement(statement).await?,
        )),
    }
}

/// Stores the signed claims about one subject: one merge each into the `.sig` and
/// `.att` manifests, and beside them the bundle referrers followed by a merge into the
/// fallback index (see [`store`]).
/// Whatever this key already stored about the subject is not stored again.
async fn store_subject(
    publisher: &dyn Publisher,
    repository: &str,
    signer: &Signer,
    signed: &SignedSubject,
    legacy_attestations: bool,
    created: i64,
) -> Result<Vec<Attachment>, SignError> {
    let Some((first, _)) = signed.claims.first() else {
        return Ok(Vec::new());
    };
    let subject = &first.subject;

    let mut out: Vec<Unstored> = Vec::new();
    let (mut sig_blobs, mut att_blobs) = (Vec::new(), Vec::new());
    let mut referrers: Vec<Referrer> = Vec::new();
    let mut sig_layers: Vec<Value> = Vec::new();
    let mut att_layers: Vec<Value> = Vec::new();
    let attachment = |kind,
                      predicate_type: Option<&str>,
                      storage,
                      referrer: Option<Digest>,
                      entry: &Option<tlog::LogEntry>,
                      bundle: Option<&Value>| Unstored {
        kind,
        predicate_type: predicate_type.map(str::to_string),
        storage,
        referrer,
        rekor_log_index: entry.as_ref().map(|e| e.log_index),
        bundle: bundle.cloned(),
    };
    for (claim, signed) in &signed.claims {
        let (kind, predicate_type, statement) = match &claim.kind {
            ClaimKind::Signature => (
                AttachmentKind::Signature,
                COSIGN_SIGN_PREDICATE.to_string(),
                None,
            ),
            ClaimKind::Attestation {
                predicate_type,
                statement,
            } => (
                AttachmentKind::Attestation,
                predicate_type.clone(),
                Some(statement),
            ),
        };
        let bundle = match &signed {
            SignedClaim::Signature { bundle, .. } => bundle,
            SignedClaim::Attestation(signed) => signed,
        };
        let statement_digest = match statement {
            Some(s) => crate::image::Digest::of(s),
            None => {
                crate::image::Digest::of(&signature_statement(&claim.repository, &subject.digest))
            }
        };
        let mut referrer = referrer(
            claim,
            &predicate_type,
            &bundle.bundle,
            &statement_digest,
            &signer.key.hint(),
            created,
        );
        out.push(attachment(
            kind,
            Some(&predicate_type),
            Storage::Referrer,
            Some(referrer.descriptor.digest.clone()),
            &bundle.log_entry,
            Some(&bundle.bundle),
        ));
        referrer.report = out.len() - 1;
        referrers.push(referrer);
        match signed {
            SignedClaim::Signature {
                payload,
                annotations,
                entry,
                ..
            } => {
                let blob = Blob::from_bytes(SIMPLESIGNING, payload.clone());
                sig_layers.push(annotated(&blob, annotations.clone()));
                sig_blobs.push(blob);
                out.push(attachment(
                    AttachmentKind::Signature,
                    None,
                    Storage::SigTag,
                    None,
                    entry,
                    None,
                ));
            }
            SignedClaim::Attestation(signed) if legacy_attestations => {
                let mut annotations = signer.identity_annotations();
                annotations.insert(SIGNATURE_ANNOTATION.to_string(), String::new());
                annotations.insert(LEGACY_PREDICATE.to_string(), predicate_type.clone());
                annotations.insert(
                    STATEMENT_ANNOTATION.to_string(),
                    statement_digest.to_string(),
                );
                annotations.insert(KEY_ANNOTATION.to_string(), signer.key.hint());
                if let Some(annotation) = signed
                    .log_entry
                    .as_ref()
                    .and_then(|e| e.cosign_annotation.clone())
                {
                    annotations.insert(BUNDLE_ANNOTATION.to_string(), annotation);
                }
                let blob = Blob::unpublished(DSSE_ENVELOPE, canonical_json(&signed.envelope));
                att_layers.push(annotated(&blob, annotations));
                att_blobs.push(blob);
                out.push(attachment(
                    AttachmentKind::Attestation,
                    Some(&predicate_type),
                    Storage::AttTag,
                    None,
                    &signed.log_entry,
                    None,
                ));
            }
            SignedClaim::Attestation(_) => {}
        }
    }

    // A `.sig` layer with our payload whose signature our key makes is ours already
    // (signatures are randomised, so the bytes differ between runs).
    let payloads: HashMap<&str, &Bytes> = sig_blobs
        .iter()
        .filter_map(|b| match &b.source {
            BlobSource::Bytes(bytes) => Some((b.descriptor.digest.as_str(), bytes)),
            _ => None,
        })
        .collect();
    let same_layer = |existing: &Value, ours: &Value| {
        existing == ours
            || (existing["digest"] == ours["digest"]
                && existing["digest"]
                    .as_str()
                    .and_then(|d| payloads.get(d))
                    .zip(existing["annotations"][SIGNATURE_ANNOTATION].as_str())
                    .is_some_and(|(payload, sig)| signer.made_signature(sig, payload)))
    };
    let sig_tag = digest_tag(&subject.digest, Some("sig"));
    let att_tag = digest_tag(&subject.digest, Some("att"));
    // The three lists are independent: stored side by side.
    let (sig_digest, att_digest, (already, listed_by)) = futures::try_join!(
        store::merge_into_tag(
            publisher,
            repository,
            (&sig_tag, SharedList::SignatureManifest),
            &sig_layers,
            &sig_blobs,
            same_layer,
        ),
        store::merge_into_tag(
            publisher,
            repository,
            (&att_tag, SharedList::SignatureManifest),
            &att_layers,
            &att_blobs,
            same_attestation_layer,
        ),
        store_referrers(publisher, repository, &subject.digest, referrers),
    )?;
    let mut already: HashMap<usize, Digest> = already.into_iter().collect();
    let stored = out.into_iter().enumerate().map(|(report, unstored)| {
        let (digest, listed) = match unstored.storage {
            // Each of these added an entry to its tag's list, so the list has a digest.
            Storage::SigTag => (sig_digest.clone().expect("the .sig list was stored"), None),
            Storage::AttTag => (att_digest.clone().expect("the .att list was stored"), None),
            Storage::Referrer => (
                already
                    .remove(&report)
                    .or_else(|| unstored.referrer.clone())
                    .expect("a referrer has its manifest's digest"),
                Some(listed_by),
            ),
        };
        unstored.stored(&subject.digest, digest, listed)
    });
    Ok(stored.collect())
}

/// A `.sig` / `.att` layer: the blob's descriptor with the annotations.
fn annotated(blob: &Blob, annotations: BTreeMap<String, String>) -> Value {
    let mut layer = blob.descriptor.clone();
    layer.annotations = annotations;
    json!(layer)
}

/// The annotation cosign's `.att` layers name their predicate by.
const LEGACY_PREDICATE: &str = "predicateType";

/// Whether a listed referrer is ours: the same manifest, or a bundle by the same key
/// about the same statement (what a rerun with that key would make again).
fn same_referrer(existing: &Value, ours: &Value) -> bool {
    existing["digest"] == ours["digest"] || same_claim(existing, ours, PREDICATE_ANNOTATION)
}

/// Whether a legacy `.att` layer is ours: the same bytes, or an envelope by the same
/// key about the same statement (the envelope's signature differs each time).
fn same_attestation_layer(existing: &Value, ours: &Value) -> bool {
    existing == ours || same_claim(existing, ours, LEGACY_PREDICATE)
}

/// Same predicate (under `predicate_key`), same statement, same key hint.
fn same_claim(existing: &Value, ours: &Value, predicate_key: &str) -> bool {
    let (a, b) = (&existing["annotations"], &ours["annotations"]);
    [predicate_key, STATEMENT_ANNOTATION, KEY_ANNOTATION]
        .iter()
        .all(|k| a[k].is_string() && a[k] == b[k])
}

/// The referrers of one subject: those this key already stored about the same
/// statements are left as they are; the others are pushed, then named in the
/// fallback index where the registry has no referrers API. Returns, for each one
/// already there, its report's index and the stored digest; and what lists them.
async fn store_referrers(
    publisher: &dyn Publisher,
    repository: &str,
    subject: &str,
    referrers: Vec<Referrer>,
) -> Result<(Vec<(usize, Digest)>, ListedBy), SignError> {
    let index_tag = digest_tag(subject, None);
    let (known, uses_fallback) = match publisher.referrers(repository, subject).await? {
        Some(listed) => (listed, false),
        None => {
            let listed =
                store::read_list(publisher, repository, &index_tag, SharedList::FallbackIndex)
                    .await?;
            (listed.entries, true)
        }
    };
    let mut already = Vec::new();
    let mut new = Vec::new();
    for r in referrers {
        match known
            .iter()
            .find(|e| same_referrer(e, &r.entry))
            .and_then(|e| e["digest"].as_str())
            .and_then(|d| Digest::parse(d).ok())
        {
            Some(digest) => already.push((r.report, digest)),
            None => new.push(r),
        }
    }
    futures::future::try_join_all(
        new.iter()
            .flat_map(|r| &r.blobs)
            .map(|b| publisher.push_blob(repository, b)),
    )
    .await?;
    futures::future::try_join_all(
        new.iter()
            .map(|r| publisher.push_manifest(repository, &r.descriptor, &r.manifest)),
    )
    .await?;
    if uses_fallback {
        let entries: Vec<Value> = new.into_iter().map(|r| r.entry).collect();
        store::merge_into_tag(
            publisher,
            repository,
            (&index_tag, SharedList::FallbackIndex),
            &entries,
            &[],
            same_referrer,
        )
        .await?;
    }
    let listed_by = if uses_fallback {
        ListedBy::FallbackTag
    } else {
        ListedBy::ReferrersApi
    };
    Ok((already, listed_by))
}

/// An attachment before its manifest is stored: its digest is its own referrer
/// manifest's (or that of the same referrer already there), or that of the `.sig` or
/// `.att` list it joins, known once the list is stored.
struct Unstored {
    kind: AttachmentKind,
    predicate_type: Option<String>,
    storage: Storage,
    referrer: Option<Digest>,
    rekor_log_index: Option<i64>,
    bundle: Option<Value>,
}

impl Unstored {
    fn stored(self, subject: &Digest, digest: Digest, listed_by: Option<ListedBy>) -> Attachment {
        Attachment {
            kind: self.kind,
            subject: subject.clone(),
            predicate_type: self.predicate_type,
            storage: self.storage,
            listed_by,
            digest,
            rekor_log_index: self.rekor_log_index,
            bundle: self.bundle,
        }
    }
}

/// A DSSE bundle v0.3 as an OCI referrer of a subject, ready to store.
struct Referrer {
    descriptor: Descriptor,
    manifest: Bytes,
    /// How the fallback index lists it.
    entry: Value,
    /// The empty config and the bundle.
    blobs: Vec<Blob>,
    /// Which of the run's attachments reports it.
    report: usize,
}

/// A DSSE bundle v0.3 as an OCI referrer of the claim's subject.
fn referrer(
    claim: &Claim,
    predicate_type: &str,
    bundle: &Value,
    statement_digest: &str,
    key_hint: &str,
    created: i64,
) -> Referrer {
    let bundle = Blob::unpublished(BUNDLE_MEDIA_TYPE, canonical_json(bundle));
    let annotations = [
        ("dev.sigstore.bundle.content", "dsse-envelope"),
        (PREDICATE_ANNOTATION, predicate_type),
        (STATEMENT_ANNOTATION, statement_digest),
        (KEY_ANNOTATION, key_hint),
        ("org.opencontainers.image.created", &rfc3339(created)),
    ];
    artifact_referrer(&claim.subject, bundle, &annotations)
}

/// An OCI 1.1 artifact of one layer (its media type the artifact's type) that refers
/// to `subject`: how bundles, and unsigned SBOMs and provenance, are stored.
fn artifact_referrer(subject: &Descriptor, layer: Blob, annotations: &[(&str, &str)]) -> Referrer {
    let artifact_type = layer.descriptor.media_type.clone();
    let empty = Blob::from_bytes(EMPTY_CONFIG, b"{}".to_vec());
    let mut subject = subject.clone();
    subject.platform = None;
    subject.annotations.clear();
    let mut manifest = Manifest::new(empty.descriptor.clone(), vec![layer.descriptor.clone()]);
    manifest.artifact_type = Some(artifact_type.clone());
    manifest.subject = Some(subject);
    manifest.annotations = annotations
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let (descriptor, bytes) = manifest.encode();
    // The fallback index lists it as the referrers API would: with its artifact type
    // and annotations.
    let mut entry = descriptor.clone();
    entry.artifact_type = Some(artifact_type);
    entry.annotations = manifest.annotations;
    Referrer {
        descriptor,
        manifest: bytes,
        entry: json!(entry),
        blobs: vec![empty, layer],
        report: 0,
    }
}

/// Media type of an in-toto statement stored as is.
const IN_TOTO_STATEMENT: &str = "application/vnd.in-toto+json";
/// The annotation that names an unsigned statement's predicate type.
const IN_TOTO_PREDICATE: &str = "in-toto.io/predicate-type";

/// Stores each SBOM, and the provenance, as an unsigned OCI 1.1 referrer of what it
/// describes, for builds that do not sign: the SBOM document itself (artifact type
/// `application/spdx+json` or `application/vnd.cyclonedx+json`), and the provenance
/// as an in-toto statement about every subject (naming them in `named`), referring to
/// each; all stored into `repository`. Through the same
/// referrers API or fallback index as signed bundles; a rerun finds them stored
/// (their bytes are the same) and stores nothing again.
pub async fn store_unsigned(
    publisher: &dyn Publisher,
    repository: &str,
    named: &str,
    subjects: &[Descriptor],
    sboms: &[&SbomDocument],
    provenance: Option<&Value>,
    created: i64,
) -> Result<Vec<Attachment>, SignError> {
    let created = rfc3339(created);
    let mut per_subject: Vec<(&Descriptor, Vec<(Referrer, Attachment)>)> =
        subjects.iter().map(|s| (s, Vec::new())).collect();
    let mut add = |digest: &str, layer: Blob, predicate_type: &str| {
        if let Some((subject, list)) = per_subject.iter_mut().find(|(s, _)| s.digest == digest) {
            let annotations = [
                (IN_TOTO_PREDICATE, predicate_type),
                ("org.opencontainers.image.created", created.as_str()),
            ];
            let referrer = artifact_referrer(subject, layer, &annotations);
            let attachment = Attachment {
                kind: AttachmentKind::Unsigned,
                subject: subject.digest.clone(),
                predicate_type: Some(predicate_type.to_string()),
                storage: Storage::Referrer,
                listed_by: None,
                digest: referrer.descriptor.digest.clone(),
                rekor_log_index: None,
                bundle: None,
            };
            list.push((referrer, attachment));
        }
    };
    for doc in sboms {
        let media_type = doc.format.media_type();
        add(
            &doc.subject,
            Blob::from_bytes(media_type, doc.json.clone()),
            doc.format.predicate_type(),
        );
    }
    if let Some(predicate) = provenance {
        let named: Vec<(String, String)> = subjects
            .iter()
            .map(|s| (named.to_string(), s.digest.to_string()))
            .collect();
        let predicate_type = crate::attest::provenance::PREDICATE_TYPE;
        let statement = statement(&named, predicate_type, predicate);
        for subject in subjects {
            add(
                &subject.digest,
                Blob::from_bytes(IN_TOTO_STATEMENT, statement.clone()),
                predicate_type,
            );
        }
    }
    let stored = per_subject.into_iter().map(|(subject, list)| async move {
        let (mut referrers, mut attachments): (Vec<Referrer>, Vec<Attachment>) =
            list.into_iter().unzip();
        for (i, r) in referrers.iter_mut().enumerate() {
            r.report = i;
        }
        let (already, listed_by) =
            store_referrers(publisher, repository, &subject.digest, referrers).await?;
        for (report, digest) in already {
            attachments[report].digest = digest;
        }
        for a in &mut attachments {
            a.listed_by = Some(listed_by);
        }
        Ok::<_, SignError>(attachments)
    });
    let done = futures::future::try_join_all(stored).await?;
    Ok(done.into_iter().flatten().collect())
}

/// cosign v3's image signature: an in-toto statement with an empty predicate.
fn signature_statement(repository: &str, digest: &str) -> Vec<u8> {
    statement(
        &[(repository.to_string(), digest.to_string())],
        COSIGN_SIGN_PREDICATE,
        &json!({}),
    )
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

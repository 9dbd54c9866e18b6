//! Signatures and attestations, stored where cosign and GitHub look for them:
//! - the classic cosign signature: tag `sha256-<hex>.sig`, one simplesigning layer per
//!   signature, appended to what is there (cosign v2 verifies it; v3 falls back to it);
//! - Sigstore bundles v0.3 with a DSSE envelope, stored as OCI 1.1 referrers of the
//!   signed manifest, with the `sha256-<hex>` fallback index kept up to date for
//!   registries without the referrers API: an image signature (cosign v3's
//!   `https://sigstore.dev/cosign/sign/v1` statement) and every attestation;
//! - optionally the legacy `sha256-<hex>.att` tag (DSSE envelope layers).
//!
//! The bundles are written here as JSON, in one place (`Signer::sign_statement`): the
//! v0.3 document is small, and the Rekor v2 entry goes in as sigstore-rekor returns
//! it. What reads them back is sigstore-verify (`evidence.rs`), cosign and `gh`.

mod attach;
pub mod evidence;
pub mod keyless;
pub mod keys;
pub mod public_good;
pub mod published;
pub mod rekor;
mod service;
pub mod signing_config;
mod store;
pub mod tlog;
pub mod trust;
pub mod verify;

use std::collections::BTreeMap;
use std::path::PathBuf;

use base64::Engine as _;
use serde::Serialize;
use serde_json::{json, Value};

use crate::attest::SbomDocument;
use crate::image::{canonical_json, Descriptor, Digest};
use crate::publish::PublishError;
pub use attach::{attach, sign_claims, store_signed, store_unsigned, SignedSubject};
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
const CERTIFICATE_ANNOTATION: &str = "dev.sigstore.cosign/certificate";
const CHAIN_ANNOTATION: &str = "dev.sigstore.cosign/chain";
const BUNDLE_ANNOTATION: &str = "dev.sigstore.cosign/bundle";
const TIMESTAMP_ANNOTATION: &str = "dev.sigstore.cosign/rfc3161timestamp";
const PREDICATE_ANNOTATION: &str = "dev.sigstore.bundle.predicateType";
/// On each bundle referrer: the SHA-256 of the signed statement and the signing key's
/// hint, so that a rerun with the same key sees the attestation is already there.
const STATEMENT_ANNOTATION: &str = "dev.gantry.statement.digest";
const KEY_ANNOTATION: &str = "dev.gantry.signer.key";

#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("signing key {path}: {detail}")]
    Key { path: PathBuf, detail: String },
    #[error("signing key {path}: cannot decrypt it: wrong password, or the key file was altered (COSIGN_PASSWORD must hold the password it was written with)")]
    KeyPassword { path: PathBuf },
    #[error("signing failed: {0}")]
    Crypto(String),
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the OIDC identity token {0}")]
    IdentityToken(&'static str),
    #[error("cannot create an HTTP client")]
    HttpClient(#[source] reqwest::Error),
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error("{0}")]
    NotFound(String),
    #[error("{tag} holds {found}, not the {expected} gantry keeps signatures in; it was left as it is. Remove or fix that tag (another tool wrote it?), then sign again")]
    Foreign {
        tag: String,
        found: String,
        expected: &'static str,
    },
    #[error("{tag}: other writers kept replacing it, {rounds} merges in a row; sign again when they are done")]
    Contended { tag: String, rounds: usize },
    #[error("the transparency log {log} is a Rekor v2 log, whose entries carry no signing time, and no timestamp authority is configured: a keyless certificate lives minutes, so verifiers need one; add tsaUrls to the signing config or pass --timestamp-server-url")]
    NoSigningTime { log: String },
    #[error("{service} ({url}) {detail}")]
    Service {
        service: &'static str,
        url: String,
        detail: String,
    },
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

/// Names that reports, `--json` and the job summary print, kebab-case.
macro_rules! report_names {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $text:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
        pub enum $name {
            $($(#[$vdoc])* #[serde(rename = $text)] $variant,)+
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(match self {
                    $($name::$variant => $text,)+
                })
            }
        }
    };
}

report_names!(
    /// What an attachment is.
    AttachmentKind {
        /// A signature over the image (cosign's simple signing).
        Signature => "signature",
        /// A signed in-toto statement about the image.
        Attestation => "attestation",
        /// An SBOM or provenance stored unsigned, for a build that does not sign.
        Unsigned => "unsigned",
    }
);

report_names!(
    /// Where an attachment is stored.
    Storage {
        /// In the `sha256-<hex>.sig` tag, as cosign reads signatures.
        SigTag => "sig-tag",
        /// An OCI 1.1 referrer carrying a Sigstore bundle.
        Referrer => "referrer",
        /// In the legacy `sha256-<hex>.att` tag.
        AttTag => "att-tag",
    }
);

report_names!(
    /// What lists a referrer.
    ListedBy {
        /// The registry's own referrers API.
        ReferrersApi => "referrers-api",
        /// The `sha256-<hex>` fallback index gantry keeps.
        FallbackTag => "fallback-tag",
    }
);

report_names!(
    /// How the images were signed.
    SigningMethod {
        /// With a key the user holds.
        Key => "key",
        /// With a short-lived certificate for the CI's identity.
        Keyless => "keyless",
    }
);

/// What was stored, for reports.
#[derive(Debug, Clone, Serialize)]
pub struct Attachment {
    pub kind: AttachmentKind,
    pub subject: Digest,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub predicate_type: Option<String>,
    pub storage: Storage,
    /// For a referrer, what lists it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listed_by: Option<ListedBy>,
    /// Digest of the manifest that holds it.
    pub digest: Digest,
    /// Where the transparency log recorded the signature, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rekor_log_index: Option<i64>,
    /// The Sigstore bundle, for referrers (what GitHub's attestation store takes).
    #[serde(skip)]
    pub bundle: Option<Value>,
}

/// What signs: a key (for keyless signing, with its Fulcio certificate), and what
/// witnesses each signature: a transparency log and a timestamp authority.
#[derive(Debug)]
pub struct Signer {
    key: SigningKey,
    certificate: Option<keyless::Certificate>,
    log: Option<tlog::Log>,
    timestamps: Option<tlog::TimestampAuthority>,
}

/// How to sign, decided before the build. A keyless signer is made only once the
/// images are pushed: its certificate lives ten minutes.
#[derive(Debug)]
pub enum Signing {
    Key(Box<Signer>),
    Keyless(Keyless),
}

/// Where keyless signing gets its identity and certificate, and which log records it.
#[derive(Debug, Clone)]
pub struct Keyless {
    pub token: keyless::TokenSource,
    pub fulcio_url: String,
    pub witnesses: tlog::Witnesses,
}

/// Who signed: what `cosign verify` needs to be told.
#[derive(Debug, Clone, Serialize)]
pub struct SignerIdentity {
    pub method: SigningMethod,
    /// The certificate's subject (for GitHub, the workflow that ran).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate_identity: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate_oidc_issuer: Option<String>,
    /// The transparency log the signatures were entered in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rekor_url: Option<String>,
    /// The timestamp authority that countersigned them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp_authority: Option<String>,
}

/// A statement signed into a DSSE envelope, and the bundle that carries it.
struct SignedStatement {
    envelope: Value,
    bundle: Value,
    log_entry: Option<tlog::LogEntry>,
}

impl Signer {
    /// Signs with `key`, witnessed by `witnesses`.
    pub fn with_key(key: SigningKey, witnesses: &tlog::Witnesses) -> Result<Self, SignError> {
        let client = service::client()?;
        Self::witnessed(key, None, witnesses, client)
    }

    /// A fresh key with a Fulcio certificate for the token's identity.
    pub async fn keyless(config: &Keyless) -> Result<Self, SignError> {
        config.witnesses.check_keyless()?;
        let client = service::client()?;
        let key = SigningKey::generate()?;
        let certificate =
            keyless::certificate(&client, &config.fulcio_url, &config.token, &key).await?;
        Self::witnessed(key, Some(certificate), &config.witnesses, client)
    }

    fn witnessed(
        key: SigningKey,
        certificate: Option<keyless::Certificate>,
        witnesses: &tlog::Witnesses,
        client: reqwest::Client,
    ) -> Result<Self, SignError> {
        Ok(Signer {
            key,
            certificate,
            log: witnesses
                .log
                .as_ref()
                .map(|log| tlog::Log::new(log, client.clone()))
                .transpose()?,
            timestamps: witnesses
                .timestamp_authority
                .as_deref()
                .map(|url| tlog::TimestampAuthority::new(url, client))
                .transpose()?,
        })
    }

    /// Who signs, as reports and verify commands name it.
    pub fn identity(&self) -> SignerIdentity {
        let (identity, issuer) = self
            .certificate
            .as_ref()
            .and_then(keyless::Certificate::identity)
            .unzip();
        SignerIdentity {
            method: if self.certificate.is_some() {
                SigningMethod::Keyless
            } else {
                SigningMethod::Key
            },
            certificate_identity: identity,
            certificate_oidc_issuer: issuer,
            rekor_url: self.log.as_ref().map(|l| l.url().to_string()),
            timestamp_authority: self.timestamps.as_ref().map(|t| t.url().to_string()),
        }
    }

    /// What verifies the signatures: the certificate, else the public key.
    fn verifier(&self) -> tlog::Verifier<'_> {
        match &self.certificate {
            Some(c) => tlog::Verifier {
                der: &c.leaf_der,
                pem: &c.leaf_pem,
                is_certificate: true,
            },
            None => tlog::Verifier {
                der: &self.key.public_der,
                pem: &self.key.public_pem,
                is_certificate: false,
            },
        }
    }

    /// A signed timestamp over `signature`, when there is a timestamp authority.
    async fn timestamp(&self, signature: &[u8]) -> Result<Option<Vec<u8>>, SignError> {
        match &self.timestamps {
            Some(tsa) => tsa.timestamp(signature).await.map(Some),
            None => Ok(None),
        }
    }

    /// Whether `signature` (base64) over `message` is this key's, for a key that
    /// outlives the run; a keyless key is new each run, so never.
    fn made_signature(&self, signature: &str, message: &[u8]) -> bool {
        use base64::Engine as _;
        self.certificate.is_none()
            && base64::engine::general_purpose::STANDARD
                .decode(signature)
                .ok()
                .zip(trust::PublicKey::from_pem(self.key.public_pem.as_bytes()).ok())
                .is_some_and(|(sig, key)| key.verifies(&sig, message))
    }

    /// Annotations naming the signer: certificate and chain when keyless.
    fn identity_annotations(&self) -> BTreeMap<String, String> {
        let mut annotations = BTreeMap::new();
        if let Some(c) = &self.certificate {
            annotations.insert(CERTIFICATE_ANNOTATION.to_string(), c.leaf_pem.clone());
            annotations.insert(CHAIN_ANNOTATION.to_string(), c.chain_pem.clone());
        }
        annotations
    }

    /// Signs cosign's simplesigning payload; returns the `.sig` layer's annotations
    /// and the log entry. Only a v1 log's entry fits those annotations (cosign's
    /// bundle annotation is built on its signed timestamp), so a v2 log is not asked:
    /// the image's bundle referrer carries the v2 entry.
    async fn sign_payload(
        &self,
        payload: &[u8],
    ) -> Result<(BTreeMap<String, String>, Option<tlog::LogEntry>), SignError> {
        let signature = self.key.sign(payload)?;
        let mut annotations = self.identity_annotations();
        annotations.insert(SIGNATURE_ANNOTATION.to_string(), b64(&signature));
        let verifier = self.verifier();
        let logging = async {
            match &self.log {
                Some(log) if log.annotates_sig_layers() => log
                    .enter_signature(&signature, &verifier, payload)
                    .await
                    .map(Some),
                _ => Ok(None),
            }
        };
        let (entry, timestamp) = futures::try_join!(logging, self.timestamp(&signature))?;
        if let Some(annotation) = entry.as_ref().and_then(|e| e.cosign_annotation.clone()) {
            annotations.insert(BUNDLE_ANNOTATION.to_string(), annotation);
        }
        if let Some(timestamp) = &timestamp {
            annotations.insert(
                TIMESTAMP_ANNOTATION.to_string(),
                tlog::cosign_timestamp_annotation(timestamp),
            );
        }
        Ok((annotations, entry))
    }

    /// Signs an in-toto statement into a DSSE envelope, logs it, and wraps both in a
    /// Sigstore bundle v0.3.
    async fn sign_statement(&self, statement: &[u8]) -> Result<SignedStatement, SignError> {
        let pae = pae(INTOTO_PAYLOAD_TYPE, statement);
        let signature = self.key.sign(&pae)?;
        let envelope = json!({
            "payloadType": INTOTO_PAYLOAD_TYPE,
            "payload": b64(statement),
            "signatures": [{"keyid": "", "sig": b64(&signature)}],
        });
        let verifier = self.verifier();
        let logging = async {
            match &self.log {
                Some(log) => log
                    .enter_envelope(&envelope, &signature, &verifier, &pae)
                    .await
                    .map(Some),
                None => Ok(None),
            }
        };
        let (log_entry, timestamp) = futures::try_join!(logging, self.timestamp(&signature))?;
        let tlog_entries: Vec<&Value> = log_entry.iter().map(|e| &e.bundle_entry).collect();
        let mut material = json!({"tlogEntries": tlog_entries});
        if let Some(timestamp) = &timestamp {
            material["timestampVerificationData"] =
                json!({"rfc3161Timestamps": [{"signedTimestamp": b64(timestamp)}]});
        }
        match &self.certificate {
            Some(c) => material["certificate"] = json!({"rawBytes": b64(&c.leaf_der)}),
            None => material["publicKey"] = json!({"hint": self.key.hint()}),
        }
        let bundle = json!({
            "mediaType": BUNDLE_MEDIA_TYPE,
            "verificationMaterial": material,
            "dsseEnvelope": envelope,
        });
        Ok(SignedStatement {
            envelope,
            bundle,
            log_entry,
        })
    }
}

/// A signature for the index and every platform manifest; each SBOM as an
/// attestation about its image; the provenance about all of them, on each.
/// `subjects` are the index (first, when there is one) and its platform manifests.
pub fn claims_for(
    repository: &str,
    subjects: &[Descriptor],
    sboms: &[&SbomDocument],
    provenance: Option<&Value>,
) -> Vec<Claim> {
    let claim = |subject: &Descriptor, kind| Claim {
        repository: repository.to_string(),
        subject: subject.clone(),
        kind,
    };
    let mut claims: Vec<Claim> = subjects
        .iter()
        .map(|s| claim(s, ClaimKind::Signature))
        .collect();
    for doc in sboms {
        let Some(subject) = subjects.iter().find(|s| s.digest == doc.subject) else {
            continue;
        };
        let predicate: Value = serde_json::from_slice(&doc.json).unwrap_or_default();
        let predicate_type = doc.format.predicate_type().to_string();
        let statement = statement(
            &[(repository.to_string(), doc.subject.to_string())],
            &predicate_type,
            &predicate,
        );
        claims.push(claim(
            subject,
            ClaimKind::Attestation {
                predicate_type,
                statement,
            },
        ));
    }
    if let Some(predicate) = provenance {
        let named: Vec<(String, String)> = subjects
            .iter()
            .map(|s| (repository.to_string(), s.digest.to_string()))
            .collect();
        let statement = statement(&named, crate::attest::provenance::PREDICATE_TYPE, predicate);
        for s in subjects {
            claims.push(claim(
                s,
                ClaimKind::Attestation {
                    predicate_type: crate::attest::provenance::PREDICATE_TYPE.to_string(),
                    statement: statement.clone(),
                },
            ));
        }
    }
    claims
}

/// `sha256-<hex>` and its suffixed forms (`.sig`, `.att`).
fn digest_tag(digest: &str, suffix: Option<&str>) -> String {
    let base = digest.replacen(':', "-", 1);
    match suffix {
        Some(s) => format!("{base}.{s}"),
        None => base,
    }
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

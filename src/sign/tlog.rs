//! The witnesses of a signature: the transparency log it is entered in, and the
//! timestamp authority that vouches for when it was made.
//!
//! - Rekor v1 is gantry's own client (`rekor.rs`): sigstore-rekor's v1 entries take a
//!   certificate only, and key-based signatures are entered with a public key. A v1
//!   entry brings its own signed timestamp (the SET).
//! - Rekor v2 goes through sigstore-rekor, which also checks that the log's answer is
//!   the entry asked for. v2 knows only `hashedrekord` 0.0.2: an envelope is entered as
//!   the SHA-256 of its pre-authentication encoding. Its entries carry no signed
//!   timestamp, so the signing time comes from an RFC 3161 timestamp authority.
//! - Timestamps go through sigstore-tsa, which checks the reply answers the request.
//!
//! Both crates' clients make one attempt; [`service::retried`] retries them as gantry
//! retries Fulcio.

use base64::Engine as _;
use serde_json::Value;
use sigstore_rekor::{HashedRekordV2, RekorV2Client, RekorV2KeyDetails};
use sigstore_tsa::TimestampClient;
use sigstore_types::{DerCertificate, DerPublicKey, Sha256Hash, SignatureBytes};

use super::rekor::Rekor;
use super::service;
use super::SignError;

/// The major version of Rekor's API a log speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RekorVersion {
    V1,
    V2,
}

/// A transparency log to enter signatures in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogService {
    pub url: String,
    pub version: RekorVersion,
}

/// Who witnesses a run's signatures.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Witnesses {
    /// None: no transparency log (`--no-tlog-upload`).
    pub log: Option<LogService>,
    /// An RFC 3161 timestamp authority's URL (`…/api/v1/timestamp`).
    pub timestamp_authority: Option<String>,
}

impl Witnesses {
    /// Refuses what cannot give a keyless signature a trusted signing time: a Rekor v2
    /// log (no signed timestamp of its own) with no timestamp authority.
    pub fn check_keyless(&self) -> Result<(), SignError> {
        match (&self.log, &self.timestamp_authority) {
            (Some(log), None) if log.version == RekorVersion::V2 => Err(SignError::NoSigningTime {
                log: log.url.clone(),
            }),
            _ => Ok(()),
        }
    }
}

/// What verifies a signature: a certificate (keyless) or a public key, as DER and PEM.
pub struct Verifier<'a> {
    pub der: &'a [u8],
    pub pem: &'a str,
    pub is_certificate: bool,
}

/// A signature's entry in the log.
#[derive(Debug, Clone)]
pub struct LogEntry {
    pub log_index: i64,
    /// The entry as a Sigstore bundle's `tlogEntries` item.
    pub bundle_entry: Value,
    /// cosign's `dev.sigstore.cosign/bundle` annotation: v1 only, since it is built on
    /// the signed entry timestamp v2 does not give.
    pub cosign_annotation: Option<String>,
}

/// A transparency log client.
#[derive(Debug, Clone)]
pub enum Log {
    V1(Rekor),
    V2(RekorV2Client),
}

impl Log {
    pub fn new(service: &LogService, http: reqwest::Client) -> Result<Self, SignError> {
        let url = service.url.trim_end_matches('/').to_string();
        Ok(match service.version {
            RekorVersion::V1 => Log::V1(Rekor::new(&url, http)),
            RekorVersion::V2 => Log::V2(
                RekorV2Client::builder(url.clone())
                    .with_http_client(http)
                    .build()
                    .map_err(|e| SignError::Service {
                        service: "Rekor v2",
                        url,
                        detail: e.to_string(),
                    })?,
            ),
        })
    }

    pub fn url(&self) -> &str {
        match self {
            Log::V1(rekor) => &rekor.url,
            Log::V2(client) => client.url(),
        }
    }

    /// Whether entries in this log carry a signing time cosign's `.sig` annotations can
    /// hold (v1's signed entry timestamp).
    pub fn annotates_sig_layers(&self) -> bool {
        matches!(self, Log::V1(_))
    }

    /// Enters a signature over `payload` (`hashedrekord`).
    pub async fn enter_signature(
        &self,
        signature: &[u8],
        verifier: &Verifier<'_>,
        payload: &[u8],
    ) -> Result<LogEntry, SignError> {
        let digest = Sha256Hash::new(sha256(payload));
        match self {
            Log::V1(rekor) => rekor
                .hashedrekord(signature, verifier.pem, &hex::encode(digest.as_bytes()))
                .await
                .map(Into::into),
            Log::V2(client) => enter_v2(client, signature, verifier, &digest).await,
        }
        .map_err(offer_no_tlog)
    }

    /// Enters a signed DSSE envelope: a `dsse` entry in v1, in v2 a `hashedrekord`
    /// over its pre-authentication encoding `pae`.
    pub async fn enter_envelope(
        &self,
        envelope: &Value,
        signature: &[u8],
        verifier: &Verifier<'_>,
        pae: &[u8],
    ) -> Result<LogEntry, SignError> {
        match self {
            Log::V1(rekor) => rekor.dsse(envelope, verifier.pem).await.map(Into::into),
            Log::V2(client) => {
                let digest = Sha256Hash::new(sha256(pae));
                enter_v2(client, signature, verifier, &digest).await
            }
        }
        .map_err(offer_no_tlog)
    }
}

/// Enters a signature over the SHA-256 `digest` in a Rekor v2 log (`hashedrekord`
/// 0.0.2, the only kind v2 takes).
async fn enter_v2(
    client: &RekorV2Client,
    signature: &[u8],
    verifier: &Verifier<'_>,
    digest: &Sha256Hash,
) -> Result<LogEntry, SignError> {
    let signature = SignatureBytes::from_bytes(signature);
    let request = if verifier.is_certificate {
        HashedRekordV2::new_with_certificate(
            digest,
            &signature,
            &DerCertificate::from_bytes(verifier.der),
            RekorV2KeyDetails::PkixEcdsaP256Sha256,
        )
    } else {
        HashedRekordV2::new_with_public_key(
            digest,
            &signature,
            &DerPublicKey::from_bytes(verifier.der),
            RekorV2KeyDetails::PkixEcdsaP256Sha256,
        )
    };
    let url = client.url();
    let entry = service::retried("Rekor v2", url, rekor_retryable, || {
        client.create_entry(request.clone())
    })
    .await?;
    let bundle_entry = serde_json::to_value(&entry).map_err(|e| SignError::Service {
        service: "Rekor v2",
        url: url.to_string(),
        detail: format!("its entry does not encode as JSON ({e})"),
    })?;
    Ok(LogEntry {
        log_index: entry.log_index.as_i64(),
        bundle_entry,
        cosign_annotation: None,
    })
}

impl From<super::rekor::V1Entry> for LogEntry {
    fn from(entry: super::rekor::V1Entry) -> Self {
        LogEntry {
            log_index: entry.log_index,
            bundle_entry: entry.bundle_tlog_entry(),
            cosign_annotation: Some(entry.cosign_bundle_annotation()),
        }
    }
}

/// A log that cannot be reached or refuses: the way around it, unless said already.
fn offer_no_tlog(error: SignError) -> SignError {
    match error {
        SignError::Service {
            service,
            url,
            detail,
        } if !detail.contains("--no-tlog-upload") => SignError::Service {
            service,
            url,
            detail: format!(
                "{detail}; a run that must not (or cannot) use a transparency log, for a private project or offline, passes --no-tlog-upload"
            ),
        },
        other => other,
    }
}

fn rekor_retryable(error: &sigstore_rekor::Error) -> bool {
    match error {
        sigstore_rekor::Error::Http(_) => true,
        sigstore_rekor::Error::Status { status, .. } => crate::retry::retryable_status(*status),
        _ => false,
    }
}

/// An RFC 3161 timestamp authority.
#[derive(Debug, Clone)]
pub struct TimestampAuthority {
    url: String,
    client: TimestampClient,
}

impl TimestampAuthority {
    pub fn new(url: &str, http: reqwest::Client) -> Result<Self, SignError> {
        let client = TimestampClient::builder(url)
            .with_http_client(http)
            .build()
            .map_err(|e| SignError::Service {
                service: "the timestamp authority",
                url: url.to_string(),
                detail: e.to_string(),
            })?;
        Ok(TimestampAuthority {
            url: url.to_string(),
            client,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// A signed timestamp over `signature` (the DER TimeStampResp, as bundles and
    /// cosign's annotation carry it).
    pub async fn timestamp(&self, signature: &[u8]) -> Result<Vec<u8>, SignError> {
        let signature = SignatureBytes::from_bytes(signature);
        let token = service::retried("the timestamp authority", &self.url, tsa_retryable, || {
            self.client.timestamp_signature(&signature)
        })
        .await?;
        Ok(token.as_bytes().to_vec())
    }
}

/// Whether a timestamp authority's failure is worth another try: one that could not
/// be reached, or a status that says "later". The crate reports both as `Http`, a
/// status as "TSA returned status N".
fn tsa_retryable(error: &sigstore_tsa::Error) -> bool {
    let sigstore_tsa::Error::Http(message) = error else {
        return false;
    };
    match message
        .strip_prefix("TSA returned status ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse::<u16>().ok())
    {
        Some(status) => crate::retry::retryable_status(status),
        None => true,
    }
}

/// cosign's `dev.sigstore.cosign/rfc3161timestamp` annotation on a `.sig` layer.
pub fn cosign_timestamp_annotation(response: &[u8]) -> String {
    serde_json::json!({
        "SignedRFC3161Timestamp": base64::engine::general_purpose::STANDARD.encode(response)
    })
    .to_string()
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timestamp_authority_is_asked_again_only_when_it_may_answer_later() {
        let http = |m: &str| sigstore_tsa::Error::Http(m.to_string());
        assert!(!tsa_retryable(&http("TSA returned status 400 Bad Request")));
        assert!(tsa_retryable(&http(
            "TSA returned status 503 Service Unavailable"
        )));
        assert!(tsa_retryable(&http(
            "TSA returned status 429 Too Many Requests"
        )));
        assert!(tsa_retryable(&http(
            "error sending request: connection refused"
        )));
        assert!(!tsa_retryable(&sigstore_tsa::Error::InvalidResponse(
            "nonce mismatch".into()
        )));
    }
}

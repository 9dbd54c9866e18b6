//! What a signature must verify against: a public key, or for keyless signatures a
//! certificate that chains to a trusted Fulcio CA and names the expected identity and
//! OIDC issuer — the checks `cosign verify --certificate-identity … --certificate-oidc-issuer …`
//! makes. (Transparency-log proofs are cosign's to check; `gantry verify` reports
//! whether there is one.)

use std::path::Path;

use base64::Engine as _;
use rustls::pki_types::{CertificateDer, UnixTime};
use serde_json::Value;
use sigstore::crypto::{CosignVerificationKey, Signature, SigningScheme};

use super::keyless::certificate_identity;
use super::service::{client, Call};
use super::SignError;

/// A public key to check signatures with.
pub struct PublicKey(CosignVerificationKey);

impl PublicKey {
    pub fn load(path: &Path) -> Result<Self, SignError> {
        let pem = std::fs::read(path).map_err(|e| SignError::Key {
            path: path.to_path_buf(),
            detail: format!("cannot read it: {e}"),
        })?;
        Self::from_pem(&pem).map_err(|detail| SignError::Key {
            path: path.to_path_buf(),
            detail,
        })
    }

    pub fn from_pem(pem: &[u8]) -> Result<Self, String> {
        if String::from_utf8_lossy(pem).contains("PRIVATE KEY-----") {
            return Err("this is a private key; verifying needs its public half (cosign.pub beside cosign.key), which is safe to share".into());
        }
        CosignVerificationKey::from_pem(pem, &SigningScheme::ECDSA_P256_SHA256_ASN1)
            .map(PublicKey)
            .map_err(|e| format!("not a PEM public key ({e})"))
    }

    pub(crate) fn verifies(&self, signature: &[u8], message: &[u8]) -> bool {
        self.0
            .verify_signature(Signature::Raw(signature), message)
            .is_ok()
    }
}

/// Who must have signed.
pub enum Trust {
    Key(PublicKey),
    Identity(IdentityPolicy),
}

/// A keyless signer: the certificate's SAN and issuer, and the CAs that may issue it.
pub struct IdentityPolicy {
    pub identity: IdentityMatch,
    pub issuer: String,
    pub authorities: Authorities,
}

pub enum IdentityMatch {
    Exact(String),
    /// `--certificate-identity-regexp`: unanchored, as cosign matches it.
    Regex(regex::Regex),
}

impl IdentityMatch {
    fn matches(&self, san: &str) -> bool {
        match self {
            IdentityMatch::Exact(expected) => san == expected,
            IdentityMatch::Regex(re) => re.is_match(san),
        }
    }
}

/// Fulcio certificate authorities: each a root and its intermediates (DER).
pub struct Authorities(Vec<(Vec<u8>, Vec<Vec<u8>>)>);

impl Authorities {
    /// From a Sigstore trusted root file (`trusted_root.json`, what `cosign
    /// --trusted-root` reads).
    pub fn from_trusted_root(path: &Path) -> Result<Self, SignError> {
        let bad = |detail: String| SignError::Key {
            path: path.to_path_buf(),
            detail,
        };
        let text = std::fs::read(path).map_err(|e| bad(format!("cannot read it: {e}")))?;
        let root: Value = serde_json::from_slice(&text)
            .map_err(|e| bad(format!("not a Sigstore trusted root (JSON: {e})")))?;
        let chains = root["certificateAuthorities"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|ca| {
                ca["certChain"]["certificates"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|c| c["rawBytes"].as_str())
                    .map(|b| base64::engine::general_purpose::STANDARD.decode(b))
                    .collect::<Result<Vec<_>, _>>()
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(format!("a certificate is not base64 ({e})")))?;
        Self::from_chains(chains).ok_or_else(|| bad("it lists no certificate authority".into()))
    }

    /// What a Fulcio instance says it issues under (`GET /api/v2/trustBundle`).
    pub async fn from_fulcio(url: &str) -> Result<Self, SignError> {
        let url = format!("{}/api/v2/trustBundle", url.trim_end_matches('/'));
        let reply = Call {
            service: "Fulcio",
            url: url.clone(),
            bearer: None,
            body: None,
            refused_hint: "pass --trusted-root FILE instead",
        }
        .send(&client()?, &[])
        .await?;
        let chains = reply.json["chains"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|chain| {
                chain["certificates"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .filter_map(|p| pem::parse(p).ok().map(pem::Pem::into_contents))
                    .collect()
            })
            .collect();
        Self::from_chains(chains).ok_or_else(|| SignError::Service {
            service: "Fulcio",
            url,
            detail: "its trust bundle holds no certificates".into(),
        })
    }

    /// Chains are leaf-most first: the last certificate is the root.
    fn from_chains(chains: Vec<Vec<Vec<u8>>>) -> Option<Self> {
        let cas: Vec<_> = chains
            .into_iter()
            .filter_map(|mut chain| {
                let root = chain.pop()?;
                Some((root, chain))
            })
            .collect();
        (!cas.is_empty()).then_some(Authorities(cas))
    }

    /// Whether one of the authorities issued `leaf` for code signing. Checked at the
    /// certificate's own start time: it lives minutes, and the signing time is the
    /// transparency log's to witness.
    fn issued(&self, leaf: &[u8]) -> bool {
        /// id-kp-codeSigning, 1.3.6.1.5.5.7.3.3, as DER content octets.
        const CODE_SIGNING: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x03];
        let Some(start) = not_before(leaf) else {
            return false;
        };
        let leaf = CertificateDer::from(leaf);
        let Ok(end_entity) = webpki::EndEntityCert::try_from(&leaf) else {
            return false;
        };
        let algorithms = rustls::crypto::aws_lc_rs::default_provider()
            .signature_verification_algorithms
            .all;
        self.0.iter().any(|(root, intermediates)| {
            let root = CertificateDer::from(root.as_slice());
            let Ok(anchor) = webpki::anchor_from_trusted_cert(&root) else {
                return false;
            };
            let intermediates: Vec<CertificateDer> = intermediates
                .iter()
                .map(|c| CertificateDer::from(c.as_slice()))
                .collect();
            end_entity
                .verify_for_usage(
                    algorithms,
                    &[anchor],
                    &intermediates,
                    UnixTime::since_unix_epoch(std::time::Duration::from_secs(start + 1)),
                    webpki::KeyUsage::required(CODE_SIGNING),
                    None,
                    None,
                )
                .is_ok()
        })
    }
}

/// The certificate's notBefore, in Unix seconds.
fn not_before(der: &[u8]) -> Option<u64> {
    use der::Decode as _;
    let cert = x509_cert::Certificate::from_der(der).ok()?;
    Some(
        cert.tbs_certificate()
            .validity()
            .not_before
            .to_unix_duration()
            .as_secs(),
    )
}

impl Trust {
    /// Whether `signature` over `message` was made by whom this trust names.
    /// `certificate` is the signer's certificate (DER), when the signature came with one.
    pub fn verifies(&self, signature: &[u8], message: &[u8], certificate: Option<&[u8]>) -> bool {
        match self {
            Trust::Key(key) => key.verifies(signature, message),
            Trust::Identity(policy) => certificate.is_some_and(|der| {
                policy.accepts(der)
                    && certificate_key(der).is_some_and(|k| k.verifies(signature, message))
            }),
        }
    }
}

impl IdentityPolicy {
    fn accepts(&self, der: &[u8]) -> bool {
        certificate_identity(der)
            .is_some_and(|(san, issuer)| self.identity.matches(&san) && issuer == self.issuer)
            && self.authorities.issued(der)
    }
}

/// The public key a certificate certifies.
fn certificate_key(der: &[u8]) -> Option<PublicKey> {
    use der::{Decode as _, Encode as _};
    let cert = x509_cert::Certificate::from_der(der).ok()?;
    let spki = cert
        .tbs_certificate()
        .subject_public_key_info()
        .to_der()
        .ok()?;
    CosignVerificationKey::from_der(&spki, &SigningScheme::ECDSA_P256_SHA256_ASN1)
        .ok()
        .map(PublicKey)
}

//! What a signature must verify against: a public key, or for keyless signatures a
//! certificate that chains to a trusted Fulcio CA and names the expected identity and
//! OIDC issuer — the checks `cosign verify --certificate-identity … --certificate-oidc-issuer …`
//! makes. What witnessed a bundle's signature (log, SCT, timestamps) is checked after
//! this, against a trusted root, in [`super::evidence`].

use std::path::Path;

use base64::Engine as _;
use rustls::pki_types::{CertificateDer, UnixTime};
use serde_json::Value;
use sigstore::crypto::{CosignVerificationKey, Signature, SigningScheme};

use super::keyless::certificate_identity;
use super::service::{client, Call};
use super::SignError;

/// A public key to check signatures with.
pub struct PublicKey {
    key: CosignVerificationKey,
    /// PKIX DER, as the trusted-root verifier takes it.
    der: Vec<u8>,
}

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
        let key = CosignVerificationKey::from_pem(pem, &SigningScheme::ECDSA_P256_SHA256_ASN1)
            .map_err(|e| format!("not a PEM public key ({e})"))?;
        let der = pem::parse(pem)
            .map_err(|e| format!("not a PEM public key ({e})"))?
            .into_contents();
        Ok(PublicKey { key, der })
    }

    /// PKIX DER.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    pub(crate) fn verifies(&self, signature: &[u8], message: &[u8]) -> bool {
        self.key
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

impl std::fmt::Display for IdentityMatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IdentityMatch::Exact(expected) => f.write_str(expected),
            IdentityMatch::Regex(re) => write!(f, "an identity matching {}", re.as_str()),
        }
    }
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
        let text = std::fs::read(path).map_err(|e| SignError::Key {
            path: path.to_path_buf(),
            detail: format!("cannot read it: {e}"),
        })?;
        Self::from_trusted_root_json(&text).map_err(|detail| SignError::Key {
            path: path.to_path_buf(),
            detail,
        })
    }

    /// From a trusted root's JSON; or what is wrong with it.
    pub fn from_trusted_root_json(text: &[u8]) -> Result<Self, String> {
        let root: Value = serde_json::from_slice(text)
            .map_err(|e| format!("not a Sigstore trusted root (JSON: {e})"))?;
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
            .map_err(|e| format!("a certificate is not base64 ({e})"))?;
        Self::from_chains(chains).ok_or_else(|| "it lists no certificate authority".to_string())
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

    /// Whether one of the authorities issued `leaf` for code signing, and if not,
    /// which check failed. Checked at the certificate's own start time: it lives
    /// minutes, and the signing time is the transparency log's to witness.
    fn issued(&self, leaf: &[u8]) -> Result<(), Untrusted> {
        /// id-kp-codeSigning, 1.3.6.1.5.5.7.3.3, as DER content octets.
        const CODE_SIGNING: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x03];
        let start = not_before(leaf).ok_or_else(|| Untrusted::Unreadable("not X.509".into()))?;
        let leaf = CertificateDer::from(leaf);
        let end_entity = webpki::EndEntityCert::try_from(&leaf)
            .map_err(|e| Untrusted::Unreadable(e.to_string()))?;
        let algorithms = rustls::crypto::aws_lc_rs::default_provider()
            .signature_verification_algorithms
            .all;
        let mut failures = Vec::new();
        for (root, intermediates) in &self.0 {
            let root = CertificateDer::from(root.as_slice());
            let anchor = match webpki::anchor_from_trusted_cert(&root) {
                Ok(anchor) => anchor,
                Err(e) => {
                    failures.push(e);
                    continue;
                }
            };
            let intermediates: Vec<CertificateDer> = intermediates
                .iter()
                .map(|c| CertificateDer::from(c.as_slice()))
                .collect();
            match end_entity.verify_for_usage(
                algorithms,
                &[anchor],
                &intermediates,
                UnixTime::since_unix_epoch(std::time::Duration::from_secs(start + 1)),
                webpki::KeyUsage::required(CODE_SIGNING),
                None,
                None,
            ) {
                Ok(_) => return Ok(()),
                Err(e) => failures.push(e),
            }
        }
        // An authority that knows the issuer says more than those that do not.
        let unknown = |e: &webpki::Error| {
            matches!(
                e,
                webpki::Error::UnknownIssuer | webpki::Error::InvalidSignatureForPublicKey
            )
        };
        let failure = failures
            .iter()
            .find(|e| !unknown(e))
            .or(failures.first())
            .cloned()
            .unwrap_or(webpki::Error::UnknownIssuer);
        Err(Untrusted::from_webpki(failure))
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

/// Why a signature is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The signature was not made with the key given (or what it signs was altered).
    #[error("the signature does not verify with this key (another key signed it, or what it signs was altered)")]
    BadSignature,
    /// The certificate is trusted and names the signer, but the signature was not
    /// made with its key.
    #[error("the signature does not verify with the key its certificate certifies")]
    CertificateKeyMismatch,
    #[error("it carries no certificate, so no identity to check")]
    NoCertificate,
    #[error("the certificate {0}")]
    UntrustedCertificate(Untrusted),
    #[error("the certificate names no identity and OIDC issuer")]
    NoIdentity,
    #[error("the certificate names {found}, not {expected}")]
    IdentityMismatch { expected: String, found: String },
    #[error("the certificate's OIDC issuer is {found}, not {expected}")]
    IssuerMismatch { expected: String, found: String },
    /// What is signed names another image.
    #[error("what it signs is another image, not this digest")]
    OtherImage,
    #[error("it carries no signature")]
    NoSignature,
    #[error("its payload type is {0:?}, not an in-toto statement")]
    NotInToto(String),
    /// What witnessed the signature (log, SCT, timestamps) does not hold against the
    /// trusted root.
    #[error("the trusted root does not back it: {0}")]
    Unwitnessed(String),
    /// A classic `.sig` signature, when the evidence was asked for: its log entry is
    /// cosign's format, which only cosign checks.
    #[error("a classic .sig signature, whose log evidence gantry does not check (cosign v2 does); the Sigstore bundles beside it are checked")]
    ClassicSignature,
}

/// Which check a certificate failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Untrusted {
    #[error("does not chain to a trusted Fulcio CA ({0})")]
    Chain(String),
    #[error("was not valid when it signed ({0})")]
    Validity(String),
    #[error("is not for code signing")]
    NotForCodeSigning,
    #[error("cannot be read ({0})")]
    Unreadable(String),
}

impl Untrusted {
    fn from_webpki(error: webpki::Error) -> Self {
        use webpki::Error as E;
        match error {
            E::UnknownIssuer | E::InvalidSignatureForPublicKey => {
                Untrusted::Chain("no trusted CA or intermediate signed it".into())
            }
            E::CertExpired { .. } => Untrusted::Validity("it or a CA above it had expired".into()),
            E::CertNotValidYet { .. } => {
                Untrusted::Validity("it or a CA above it was not valid yet".into())
            }
            E::InvalidCertValidity => Untrusted::Validity("its validity period is invalid".into()),
            E::RequiredEkuNotFoundContext(_) | E::EmptyEkuExtension => Untrusted::NotForCodeSigning,
            other => Untrusted::Chain(other.to_string()),
        }
    }
}

impl Trust {
    /// Whether `signature` over `message` was made by whom this trust names, and if
    /// not, why. `certificate` is the signer's certificate (DER), when the signature
    /// came with one.
    pub fn verifies(
        &self,
        signature: &[u8],
        message: &[u8],
        certificate: Option<&[u8]>,
    ) -> Result<(), Rejection> {
        match self {
            Trust::Key(key) => key
                .verifies(signature, message)
                .then_some(())
                .ok_or(Rejection::BadSignature),
            Trust::Identity(policy) => {
                let der = certificate.ok_or(Rejection::NoCertificate)?;
                policy.accepts(der)?;
                let key = certificate_key(der).ok_or_else(|| {
                    Rejection::UntrustedCertificate(Untrusted::Unreadable(
                        "its public key is not ECDSA P-256".into(),
                    ))
                })?;
                key.verifies(signature, message)
                    .then_some(())
                    .ok_or(Rejection::CertificateKeyMismatch)
            }
        }
    }
}

impl IdentityPolicy {
    /// The chain first: what an untrusted certificate names means nothing.
    fn accepts(&self, der: &[u8]) -> Result<(), Rejection> {
        self.authorities
            .issued(der)
            .map_err(Rejection::UntrustedCertificate)?;
        let (san, issuer) = certificate_identity(der).ok_or(Rejection::NoIdentity)?;
        if !self.identity.matches(&san) {
            return Err(Rejection::IdentityMismatch {
                expected: self.identity.to_string(),
                found: san,
            });
        }
        if issuer != self.issuer {
            return Err(Rejection::IssuerMismatch {
                expected: self.issuer.clone(),
                found: issuer,
            });
        }
        Ok(())
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
    let key =
        CosignVerificationKey::from_der(&spki, &SigningScheme::ECDSA_P256_SHA256_ASN1).ok()?;
    Some(PublicKey { key, der: spki })
}

#[cfg(test)]
mod tests {
    //! Fixtures made with openssl: a CA (`ROOT`), a leaf it issued for code signing
    //! to `GOOD` by `ISSUER` (`LEAF`) and one for TLS (`TLS_LEAF`), another CA
    //! (`OTHER`), and the leaf key's ECDSA signature over `MESSAGE`.
    use super::*;

    const ROOT: &str = "-----BEGIN CERTIFICATE-----\n\
MIIBuDCCAV2gAwIBAgIUKYASmv2FUrLyabVFazjfd0M+jnQwCgYIKoZIzj0EAwIw\n\
KDEUMBIGA1UECgwLZ2FudHJ5LXRlc3QxEDAOBgNVBAMMB3Jvb3QgQ0EwIBcNMjYx\n\
MTI2MjMwNzIzWhgPMjEyNjExMDIyMzA3MjNaMCgxFDASBgNVBAoMC2dhbnRyeS10\n\
ZXN0MRAwDgYDVQQDDAdyb290IENBMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n\
F1c3TDUILLzZM/NEtKviQXVd1Teldjcw6r7PjJiBs/boYJ/+xvAjwUIba/cuURv8\n\
4FcOMVd3WVcWpIE+aCjzBqNjMGEwHQYDVR0OBBYEFDQm8gor67N9WSmwEVcgGPtf\n\
zabjMB8GA1UdIwQYMBaAFDQm8gor67N9WSmwEVcgGPtfzabjMA8GA1UdEwEB/wQF\n\
MAMBAf8wDgYDVR0PAQH/BAQDAgEGMAoGCCqGSM49BAMCA0kAMEYCIQC2BUKiRvtC\n\
0JqvMy7s7hAHFozEj9v2RGIVIupKsOYinwIhAPflqt8VaHDfo5fMzrSi55VDUsMi\n\
44xdUFoOEF9KwDuY\n\
-----END CERTIFICATE-----";
    const OTHER: &str = "-----BEGIN CERTIFICATE-----\n\
MIIBuDCCAV+gAwIBAgIUZkpFPxTXD6VDgN7eFh/NOOQPp1owCgYIKoZIzj0EAwIw\n\
KTEUMBIGA1UECgwLZ2FudHJ5LXRlc3QxETAPBgNVBAMMCG90aGVyIENBMCAXDTI2\n\
MTEyNjIzMDcyM1oYDzIxMjYxMTAyMjMwNzIzWjApMRQwEgYDVQQKDAtnYW50cnkt\n\
dGVzdDERMA8GA1UEAwwIb3RoZXIgQ0EwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNC\n\
AAQqBwXrztSKN3Sd0aXtcllMsezjiLGDsxzSQ9bEZNnRfFB57uHzWmlB4Ea1vr8x\n\
/zrd1Xe/4QXdGWkuMVehTisko2MwYTAdBgNVHQ4EFgQUVyDYkXHFX5vRqS2i8+Hs\n\
B+PnXPYwHwYDVR0jBBgwFoAUVyDYkXHFX5vRqS2i8+HsB+PnXPYwDwYDVR0TAQH/\n\
BAUwAwEB/zAOBgNVHQ8BAf8EBAMCAQYwCgYIKoZIzj0EAwIDRwAwRAIgEqqrltlU\n\
crKvqFvwECAJzzi0/2itXxsrgQIv6HsGsz4CIGCdAKUkbCdThqLQZy3iao8C7x+3\n\
EDSTFTt77Ooh7M/u\n\
-----END CERTIFICATE-----";
    const LEAF: &str = "-----BEGIN CERTIFICATE-----\n\
MIICGTCCAb6gAwIBAgIUZNJQ8LzB22f3yoY/pd05tQhmhJswCgYIKoZIzj0EAwIw\n\
KDEUMBIGA1UECgwLZ2FudHJ5LXRlc3QxEDAOBgNVBAMMB3Jvb3QgQ0EwIBcNMjYx\n\
MTI2MjMwNzIzWhgPMjEyNjExMDIyMzA3MjNaMAAwWTATBgcqhkjOPQIBBggqhkjO\n\
PQMBBwNCAAQo8yP6aOz/bIrgUXpQZdTIGcwno1tgcsnnkKAzcMIwt20FQJmmpz9b\n\
d+xKl5Nr2l9vMRCGhVOS5GltMMvqiAWHo4HrMIHoMAwGA1UdEwEB/wQCMAAwDgYD\n\
VR0PAQH/BAQDAgeAMBMGA1UdJQQMMAoGCCsGAQUFBwMDMEwGA1UdEQRFMEOGQWh0\n\
dHBzOi8vZ2l0aHViLmNvbS9vL3IvLmdpdGh1Yi93b3JrZmxvd3MvZ29vZC55bWxA\n\
cmVmcy9oZWFkcy9tYWluMCUGCisGAQQBg78wAQgEFwwVaHR0cHM6Ly90b2tlbi5l\n\
eGFtcGxlMB0GA1UdDgQWBBSgpaW7Z/FZ5/tFwZ4cdmMxFbWZGzAfBgNVHSMEGDAW\n\
gBQ0JvIKK+uzfVkpsBFXIBj7X82m4zAKBggqhkjOPQQDAgNJADBGAiEAymSZALEh\n\
X6LDWhnbfBxVevfaklJWgnb2/5GavPBAT8kCIQD1DPR5hkr6GI3jaRRQHv18u0O5\n\
vUYQmGLT4k+qKyD9iA==\n\
-----END CERTIFICATE-----";
    const TLS_LEAF: &str = "-----BEGIN CERTIFICATE-----\n\
MIICGDCCAb6gAwIBAgIUZNJQ8LzB22f3yoY/pd05tQhmhJwwCgYIKoZIzj0EAwIw\n\
KDEUMBIGA1UECgwLZ2FudHJ5LXRlc3QxEDAOBgNVBAMMB3Jvb3QgQ0EwIBcNMjYx\n\
MTI2MjMwNzI0WhgPMjEyNjExMDIyMzA3MjRaMAAwWTATBgcqhkjOPQIBBggqhkjO\n\
PQMBBwNCAAQo8yP6aOz/bIrgUXpQZdTIGcwno1tgcsnnkKAzcMIwt20FQJmmpz9b\n\
d+xKl5Nr2l9vMRCGhVOS5GltMMvqiAWHo4HrMIHoMAwGA1UdEwEB/wQCMAAwDgYD\n\
VR0PAQH/BAQDAgeAMBMGA1UdJQQMMAoGCCsGAQUFBwMBMEwGA1UdEQRFMEOGQWh0\n\
dHBzOi8vZ2l0aHViLmNvbS9vL3IvLmdpdGh1Yi93b3JrZmxvd3MvZ29vZC55bWxA\n\
cmVmcy9oZWFkcy9tYWluMCUGCisGAQQBg78wAQgEFwwVaHR0cHM6Ly90b2tlbi5l\n\
eGFtcGxlMB0GA1UdDgQWBBSgpaW7Z/FZ5/tFwZ4cdmMxFbWZGzAfBgNVHSMEGDAW\n\
gBQ0JvIKK+uzfVkpsBFXIBj7X82m4zAKBggqhkjOPQQDAgNIADBFAiEAi0w+R2fK\n\
EuVJQXfrkWgkAxqQdJcFUAqf2kB0u+IZnf0CIGIk4ipmddLCREZzifaVRswv8I5I\n\
n409W46Ml2rf1GLN\n\
-----END CERTIFICATE-----";
    const LEAF_PUB: &str = "-----BEGIN PUBLIC KEY-----\n\
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEKPMj+mjs/2yK4FF6UGXUyBnMJ6Nb\n\
YHLJ55CgM3DCMLdtBUCZpqc/W3fsSpeTa9pfbzEQhoVTkuRpbTDL6ogFhw==\n\
-----END PUBLIC KEY-----";
    const OTHER_PUB: &str = "-----BEGIN PUBLIC KEY-----\n\
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEKgcF687Uijd0ndGl7XJZTLHs44ix\n\
g7Mc0kPWxGTZ0XxQee7h81ppQeBGtb6/Mf863dV3v+EF3RlpLjFXoU4rJA==\n\
-----END PUBLIC KEY-----";
    const SIGNATURE: &str = "MEUCIG2JQ3ao7bT42fhCXeBf7jv0sOa6HHnaLXOtxvZQ9NCLAiEAgEMYMZsxNKvwvZt9eBaDby17e/zi9fKS+374bFQ9pu4=";
    const MESSAGE: &[u8] = b"hello";
    const GOOD: &str = "https://github.com/o/r/.github/workflows/good.yml@refs/heads/main";
    const ISSUER: &str = "https://token.example";

    fn der(pem: &str) -> Vec<u8> {
        pem::parse(pem).unwrap().into_contents()
    }

    fn signature() -> Vec<u8> {
        base64::engine::general_purpose::STANDARD
            .decode(SIGNATURE)
            .unwrap()
    }

    fn keyless(identity: &str, issuer: &str, ca: &str) -> Trust {
        Trust::Identity(IdentityPolicy {
            identity: IdentityMatch::Exact(identity.into()),
            issuer: issuer.into(),
            authorities: Authorities::from_chains(vec![vec![der(ca)]]).unwrap(),
        })
    }

    #[test]
    fn a_key_accepts_its_signature_and_names_a_bad_one() {
        let key = Trust::Key(PublicKey::from_pem(LEAF_PUB.as_bytes()).unwrap());
        assert_eq!(key.verifies(&signature(), MESSAGE, None), Ok(()));
        assert_eq!(
            key.verifies(&signature(), b"altered", None),
            Err(Rejection::BadSignature)
        );
        let stranger = Trust::Key(PublicKey::from_pem(OTHER_PUB.as_bytes()).unwrap());
        let err = stranger.verifies(&signature(), MESSAGE, None).unwrap_err();
        assert_eq!(err, Rejection::BadSignature);
        assert!(
            err.to_string().contains("does not verify with this key"),
            "{err}"
        );
    }

    #[test]
    fn keyless_names_what_failed() {
        let leaf = der(LEAF);
        let check = |trust: &Trust| trust.verifies(&signature(), MESSAGE, Some(&leaf));
        assert_eq!(check(&keyless(GOOD, ISSUER, ROOT)), Ok(()));

        let evil = "https://github.com/o/r/.github/workflows/evil.yml@refs/heads/main";
        let err = check(&keyless(evil, ISSUER, ROOT)).unwrap_err();
        assert_eq!(
            err,
            Rejection::IdentityMismatch {
                expected: evil.into(),
                found: GOOD.into()
            }
        );
        assert_eq!(
            err.to_string(),
            format!("the certificate names {GOOD}, not {evil}")
        );

        let err = check(&keyless(GOOD, "https://elsewhere.example", ROOT)).unwrap_err();
        assert_eq!(
            err,
            Rejection::IssuerMismatch {
                expected: "https://elsewhere.example".into(),
                found: ISSUER.into()
            }
        );

        // Another CA: the chain fails before the identity (a wrong one too) is looked at.
        for identity in [GOOD, evil] {
            let err = check(&keyless(identity, ISSUER, OTHER)).unwrap_err();
            assert!(
                matches!(err, Rejection::UntrustedCertificate(Untrusted::Chain(_))),
                "{err:?}"
            );
            assert!(
                err.to_string()
                    .starts_with("the certificate does not chain to a trusted Fulcio CA ("),
                "{err}"
            );
        }

        let tls = der(TLS_LEAF);
        assert_eq!(
            keyless(GOOD, ISSUER, ROOT).verifies(&signature(), MESSAGE, Some(&tls)),
            Err(Rejection::UntrustedCertificate(
                Untrusted::NotForCodeSigning
            ))
        );
        assert_eq!(
            keyless(GOOD, ISSUER, ROOT).verifies(&signature(), b"altered", Some(&leaf)),
            Err(Rejection::CertificateKeyMismatch)
        );
        assert_eq!(
            keyless(GOOD, ISSUER, ROOT).verifies(&signature(), MESSAGE, None),
            Err(Rejection::NoCertificate)
        );
        assert!(matches!(
            keyless(GOOD, ISSUER, ROOT).verifies(&signature(), MESSAGE, Some(b"junk")),
            Err(Rejection::UntrustedCertificate(Untrusted::Unreadable(_)))
        ));
    }
}

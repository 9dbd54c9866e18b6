//! Keyless signing: an OIDC identity token (GitHub Actions', or one given in
//! SIGSTORE_ID_TOKEN) buys a short-lived Fulcio certificate for a key made for this
//! run. The certificate names the workflow, so verifiers check who signed, not which
//! key.
//!
//! The Fulcio call is gantry's own: sigstore-fulcio's client wants its own key and
//! token types (sigstore-crypto's `KeyPair`, sigstore-oidc's `IdentityToken`), where
//! gantry's keys are the cosign-format keys of `keys.rs`, and it makes one attempt
//! with no word on what to fix; this one retries as every Sigstore call here does
//! (`service.rs`) and says why Fulcio refused.

use base64::Engine as _;
use serde_json::{json, Value};

use super::keys::{Secret, SigningKey};
use super::service::Call;
use super::SignError;

pub const PUBLIC_FULCIO: &str = "https://fulcio.sigstore.dev";

/// Where the identity token comes from.
#[derive(Debug, Clone)]
pub enum TokenSource {
    /// The runner's endpoint: GET `$ACTIONS_ID_TOKEN_REQUEST_URL&audience=sigstore`
    /// with `Authorization: bearer $ACTIONS_ID_TOKEN_REQUEST_TOKEN`.
    GitHubActions { url: String, request_token: Secret },
    /// A token given as it is (SIGSTORE_ID_TOKEN, as cosign reads it).
    Given(Secret),
}

impl TokenSource {
    /// The token source the environment offers, if any.
    pub fn from_env() -> Option<Self> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        if let Some(token) = var("SIGSTORE_ID_TOKEN") {
            return Some(TokenSource::Given(Secret::new(token)));
        }
        match (
            var("ACTIONS_ID_TOKEN_REQUEST_URL"),
            var("ACTIONS_ID_TOKEN_REQUEST_TOKEN"),
        ) {
            (Some(url), Some(token)) => Some(TokenSource::GitHubActions {
                url,
                request_token: Secret::new(token),
            }),
            _ => None,
        }
    }

    /// What to tell a user who asked for keyless signing without a token source.
    pub const MISSING: &'static str = "keyless signing needs an OIDC identity token, and there is none: in GitHub Actions give the job `permissions: id-token: write` (ACTIONS_ID_TOKEN_REQUEST_URL is then set); elsewhere set SIGSTORE_ID_TOKEN, or sign with a key (--sign key --key cosign.key)";

    async fn token(&self, client: &reqwest::Client) -> Result<IdentityToken, SignError> {
        let jwt = match self {
            TokenSource::Given(token) => token.clone(),
            TokenSource::GitHubActions { url, request_token } => {
                let separator = if url.contains('?') { '&' } else { '?' };
                let reply = Call {
                    service: "the GitHub Actions OIDC token endpoint",
                    url: format!("{url}{separator}audience=sigstore"),
                    bearer: Some(request_token.expose()),
                    body: None,
                    refused_hint: "does the job have `permissions: id-token: write`?",
                }
                .send(client, &[])
                .await?;
                let value = reply.json["value"]
                    .as_str()
                    .ok_or_else(|| SignError::Service {
                        service: "the GitHub Actions OIDC token endpoint",
                        url: url.split('?').next().unwrap_or_default().into(),
                        detail: "its answer has no `value` (the token)".into(),
                    })?;
                Secret::new(value.to_string())
            }
        };
        crate::workflow::mask(jwt.expose());
        IdentityToken::parse(jwt)
    }
}

/// An OIDC identity token and the claims Fulcio's proof of possession is about.
struct IdentityToken {
    jwt: Secret,
    /// What the key signs to prove it is held: the `email` claim when there is one,
    /// else `sub` (GitHub's tokens have no email).
    challenge: String,
}

impl IdentityToken {
    fn parse(jwt: Secret) -> Result<Self, SignError> {
        let invalid = SignError::IdentityToken;
        let payload = jwt
            .expose()
            .split('.')
            .nth(1)
            .ok_or_else(|| invalid("is not a JWT (header.payload.signature)"))?;
        let claims: Value = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload.trim_end_matches('='))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .ok_or_else(|| invalid("has a payload that is not base64url JSON"))?;
        let challenge = claims["email"]
            .as_str()
            .or_else(|| claims["sub"].as_str())
            .ok_or_else(|| invalid("has neither an `email` nor a `sub` claim"))?
            .to_string();
        Ok(IdentityToken { jwt, challenge })
    }
}

/// A Fulcio certificate for the run's key: the leaf, and the chain up to the root.
#[derive(Debug, Clone)]
pub struct Certificate {
    pub leaf_der: Vec<u8>,
    pub leaf_pem: String,
    /// The intermediates and root, PEM, in order (cosign's `chain` annotation).
    pub chain_pem: String,
}

/// Asks Fulcio (`POST /api/v2/signingCert`) for a certificate binding `key` to the
/// token's identity, proving possession by signing the token's subject.
pub async fn certificate(
    client: &reqwest::Client,
    fulcio_url: &str,
    source: &TokenSource,
    key: &SigningKey,
) -> Result<Certificate, SignError> {
    let token = source.token(client).await?;
    let proof = key.sign(token.challenge.as_bytes())?;
    let body = json!({
        "credentials": {"oidcIdentityToken": token.jwt.expose()},
        "publicKeyRequest": {
            "publicKey": {"algorithm": "ECDSA", "content": key.public_pem},
            "proofOfPossession": base64::engine::general_purpose::STANDARD.encode(proof),
        },
    });
    let url = format!("{}/api/v2/signingCert", fulcio_url.trim_end_matches('/'));
    let reply = Call {
        service: "Fulcio",
        url: url.clone(),
        bearer: None,
        body: Some(&body),
        refused_hint: "Fulcio refused the identity token: is its issuer one this Fulcio trusts (--fulcio-url)?",
    }
    .send(client, &[])
    .await?;
    let chain = reply.json["signedCertificateEmbeddedSct"]["chain"]["certificates"]
        .as_array()
        .or_else(|| reply.json["signedCertificateDetachedSct"]["chain"]["certificates"].as_array())
        .ok_or_else(|| SignError::Service {
            service: "Fulcio",
            url: url.clone(),
            detail: "its answer holds no certificate chain".into(),
        })?;
    let pems: Vec<&str> = chain.iter().filter_map(Value::as_str).collect();
    let leaf_pem = pems.first().ok_or_else(|| SignError::Service {
        service: "Fulcio",
        url: url.clone(),
        detail: "the certificate chain it returned is empty".into(),
    })?;
    let leaf_der = pem::parse(leaf_pem.as_bytes())
        .map_err(|e| SignError::Service {
            service: "Fulcio",
            url,
            detail: format!("the certificate it returned is not PEM ({e})"),
        })?
        .into_contents();
    Ok(Certificate {
        leaf_der,
        leaf_pem: ensure_newline(leaf_pem),
        chain_pem: pems[1..].iter().map(|p| ensure_newline(p)).collect(),
    })
}

impl Certificate {
    /// Who the certificate says signed: its subject alternative name (for GitHub, the
    /// workflow `https://github.com/OWNER/REPO/.github/workflows/F@REF`) and the OIDC
    /// issuer Fulcio recorded. These are what `cosign verify` matches.
    pub fn identity(&self) -> Option<(String, String)> {
        certificate_identity(&self.leaf_der)
    }
}

/// The subject alternative name and Fulcio OIDC issuer of a certificate (DER).
pub fn certificate_identity(der: &[u8]) -> Option<(String, String)> {
    {
        use der::Decode as _;
        use x509_cert::ext::pkix::{name::GeneralName, SubjectAltName};
        let cert = x509_cert::Certificate::from_der(der).ok()?;
        let extensions = cert.tbs_certificate().extensions()?;
        let mut san = None;
        let mut issuer = None;
        for ext in extensions.iter() {
            let value = ext.extn_value.as_bytes();
            match ext.extn_id.to_string().as_str() {
                "2.5.29.17" => {
                    san = SubjectAltName::from_der(value)
                        .ok()?
                        .0
                        .into_iter()
                        .find_map(|name| match name {
                            GeneralName::UniformResourceIdentifier(uri) => Some(uri.to_string()),
                            GeneralName::Rfc822Name(email) => Some(email.to_string()),
                            _ => None,
                        });
                }
                // Fulcio's issuer (V2): a DER UTF8String.
                "1.3.6.1.4.1.57264.1.8" => {
                    issuer = der::asn1::Utf8StringRef::from_der(value)
                        .ok()
                        .map(|s| s.as_str().to_string());
                }
                // The deprecated V1 form: the raw string.
                "1.3.6.1.4.1.57264.1.1" if issuer.is_none() => {
                    issuer = String::from_utf8(value.to_vec()).ok();
                }
                _ => {}
            }
        }
        Some((san?, issuer?))
    }
}

fn ensure_newline(pem: &str) -> String {
    let mut text = pem.trim_end().to_string();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_challenge_is_the_subject_when_there_is_no_email() {
        let encode = |v: Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(&v).unwrap())
        };
        let jwt = |claims: Value| {
            Secret::new(format!(
                "{}.{}.sig",
                encode(json!({"alg": "RS256"})),
                encode(claims)
            ))
        };
        let github =
            IdentityToken::parse(jwt(json!({"sub": "repo:o/r:ref:refs/heads/main"}))).unwrap();
        assert_eq!(github.challenge, "repo:o/r:ref:refs/heads/main");
        let google = IdentityToken::parse(jwt(json!({"sub": "123", "email": "a@b.c"}))).unwrap();
        assert_eq!(google.challenge, "a@b.c");
        let err = IdentityToken::parse(Secret::new("not-a-jwt"))
            .err()
            .unwrap();
        assert!(err.to_string().contains("not a JWT"), "{err}");
        assert!(
            !err.to_string().contains("not-a-jwt"),
            "the token leaked: {err}"
        );
    }
}

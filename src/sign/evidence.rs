//! The evidence around a bundle's signature, checked against a Sigstore trusted root
//! (`--trusted-root`) by sigstore-verify: the certificate's chain and SCT, the
//! transparency-log entry (its inclusion proof against a signed checkpoint, or its
//! signed entry timestamp), RFC 3161 timestamps against the timestamp authorities'
//! chains, the certificate's validity at the verified signing time, and that the log
//! entry is this signature's.
//!
//! gantry's own check ([`super::trust`]) runs first and names the signer
//! (identities by regular expression included); this one then says whether what
//! witnessed the signature holds.

use sigstore_trust_root::TrustedRoot;
use sigstore_types::{Bundle, DerPublicKey, Sha256Hash, VerificationMaterialContent};
use sigstore_verify::{PublicKeyVerificationPolicy, VerificationPolicy, Verifier};

use super::trust::Trust;
use crate::image::Digest;

/// What the evidence of a bundle must show, and the roots it is checked against.
pub struct Evidence {
    verifier: Verifier,
    /// `--insecure-ignore-tlog`: no log entry needed.
    pub ignore_tlog: bool,
    /// `--insecure-ignore-sct`: no SCT needed (a certificate authority without a CT log).
    pub ignore_sct: bool,
}

/// What the evidence showed.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Witnessed {
    /// The log entry's inclusion (proof and checkpoint, or signed entry timestamp).
    pub tlog: bool,
    /// The certificate's signed certificate timestamp.
    pub sct: bool,
    /// Signing times vouched for (RFC 3161 timestamps, a v1 log's integrated time).
    pub timestamps: usize,
}

impl Evidence {
    /// From a trusted root's JSON; or what is wrong with it.
    pub fn from_json(text: &[u8], ignore_tlog: bool, ignore_sct: bool) -> Result<Self, String> {
        let text = std::str::from_utf8(text).map_err(|e| format!("not UTF-8 ({e})"))?;
        let root = TrustedRoot::from_json(text.trim())
            .map_err(|e| format!("not a Sigstore trusted root: {e}"))?;
        let verifier =
            Verifier::new(&root).map_err(|e| format!("its trust material is unusable: {e}"))?;
        Ok(Evidence {
            verifier,
            ignore_tlog,
            ignore_sct,
        })
    }

    /// Checks the bundle `json`, whose statement is about `subject`, signed by whom
    /// `trust` names; says what failed.
    pub fn check(&self, json: &str, subject: &Digest, trust: &Trust) -> Result<Witnessed, String> {
        let bundle = Bundle::from_json(json).map_err(|e| format!("not a Sigstore bundle: {e}"))?;
        let material = &bundle.verification_material;
        if self.ignore_tlog
            && material.tlog_entries.is_empty()
            && material
                .timestamp_verification_data
                .rfc3161_timestamps
                .is_empty()
        {
            // Signed with --no-tlog-upload and no timestamp authority: nothing
            // witnessed it, and the log was to be ignored. A key needs no signing time;
            // a short-lived certificate is then held to now, as cosign holds it, and
            // its SCT cannot be checked without a verified time.
            if let Trust::Identity(_) = trust {
                if !self.ignore_sct {
                    return Err("nothing witnessed it (no log entry, no timestamp), so its certificate's SCT cannot be checked; pass --insecure-ignore-sct as well to accept it on its chain and current validity".into());
                }
                certificate_valid_now(&material.content)?;
            }
            return Ok(Witnessed::default());
        }
        let artifact =
            Sha256Hash::from_hex(subject.hex()).map_err(|e| format!("the subject digest: {e}"))?;
        let result = match trust {
            Trust::Key(key) => {
                let mut policy =
                    PublicKeyVerificationPolicy::new(DerPublicKey::from_bytes(key.der()));
                if self.ignore_tlog {
                    policy = policy.skip_tlog_unsafe();
                }
                self.verifier.verify(artifact, &bundle, &policy)
            }
            Trust::Identity(_) => {
                let mut policy = VerificationPolicy::any_identity();
                if self.ignore_tlog {
                    policy = policy.skip_tlog_unsafe();
                }
                if self.ignore_sct {
                    policy = policy.skip_sct();
                }
                self.verifier.verify(artifact, &bundle, &policy)
            }
        }
        .map_err(|e| e.to_string())?;
        Ok(Witnessed {
            tlog: result.tlog_verified(),
            sct: result.sct_verified(),
            timestamps: result.verified_timestamps().len(),
        })
    }
}

/// Whether the bundle's certificate is valid at this moment; or why not.
fn certificate_valid_now(content: &VerificationMaterialContent) -> Result<(), String> {
    use der::Decode as _;
    let der = match content {
        VerificationMaterialContent::Certificate(c) => c.raw_bytes.as_bytes(),
        VerificationMaterialContent::X509CertificateChain { certificates } => certificates
            .first()
            .ok_or("its certificate chain is empty")?
            .raw_bytes
            .as_bytes(),
        _ => return Err("it carries no certificate".into()),
    };
    let certificate = x509_cert::Certificate::from_der(der)
        .map_err(|e| format!("its certificate cannot be read ({e})"))?;
    let validity = certificate.tbs_certificate().validity();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let (from, until) = (
        validity.not_before.to_unix_duration(),
        validity.not_after.to_unix_duration(),
    );
    if now < from || now > until {
        return Err(format!(
            "its certificate is valid from {} to {} (Unix seconds), not now ({}), and nothing witnessed that it signed while valid",
            from.as_secs(),
            until.as_secs(),
            now.as_secs()
        ));
    }
    Ok(())
}

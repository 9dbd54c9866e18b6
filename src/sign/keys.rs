//! cosign's key files: `ENCRYPTED SIGSTORE PRIVATE KEY` (older: `ENCRYPTED COSIGN
//! PRIVATE KEY`), scrypt + secretbox, password from COSIGN_PASSWORD. `gantry keygen`
//! writes a pair that cosign reads, and gantry reads pairs cosign wrote.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use sha2::{Digest as _, Sha256};
use sigstore::crypto::signing_key::SigStoreKeyPair;
use sigstore::crypto::{SigStoreSigner, SigningScheme};

use super::SignError;

pub use crate::secret::Secret;

/// A signing key and its public half.
pub struct SigningKey {
    signer: SigStoreSigner,
    /// PKIX DER of the public key.
    pub public_der: Vec<u8>,
    pub public_pem: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("public_pem", &self.public_pem)
            .finish_non_exhaustive()
    }
}

/// Whether `pem` holds a whole cosign key file, so that a failure to decrypt it
/// can only be the password (or a deliberate edit), never a cut-off copy.
fn check_key_file(pem: &[u8]) -> Result<(), String> {
    #[derive(serde::Deserialize)]
    struct Encrypted {
        kdf: serde_json::Value,
        cipher: serde_json::Value,
        ciphertext: String,
    }
    let block = pem::parse(pem).map_err(|e| format!("its PEM block does not decode ({e})"))?;
    let encrypted: Encrypted = serde_json::from_slice(block.contents())
        .map_err(|e| format!("its contents are not cosign's encrypted key ({e})"))?;
    let ciphertext = base64::engine::general_purpose::STANDARD
        .decode(&encrypted.ciphertext)
        .map_err(|_| "its ciphertext is not base64".to_string())?;
    // A P-256 PKCS#8 key is over 100 bytes, plus the 16-byte authenticator.
    if ciphertext.len() < 100 || !encrypted.kdf.is_object() || !encrypted.cipher.is_object() {
        return Err("its encrypted key is incomplete".into());
    }
    Ok(())
}

impl SigningKey {
    /// Reads a cosign private key file.
    pub fn load(path: &Path, password: &Secret) -> Result<Self, SignError> {
        let pem = std::fs::read(path).map_err(|e| SignError::Key {
            path: path.to_path_buf(),
            detail: format!("cannot read it: {e}"),
        })?;
        let text = String::from_utf8_lossy(&pem);
        if !text.contains("ENCRYPTED SIGSTORE PRIVATE KEY")
            && !text.contains("ENCRYPTED COSIGN PRIVATE KEY")
        {
            return Err(SignError::Key {
                path: path.to_path_buf(),
                detail: "not a cosign private key (expected a PEM block `ENCRYPTED SIGSTORE PRIVATE KEY`, as `cosign generate-key-pair` or `gantry keygen` write)".into(),
            });
        }
        if let Err(detail) = check_key_file(&pem) {
            return Err(SignError::Key {
                path: path.to_path_buf(),
                detail: format!("corrupt or truncated: {detail}; use the file `cosign generate-key-pair` or `gantry keygen` wrote"),
            });
        }
        let pair = SigStoreKeyPair::from_encrypted_pem(&pem, password.bytes()).map_err(|_| {
            SignError::KeyPassword {
                path: path.to_path_buf(),
            }
        })?;
        Self::from_pair(&pair).map_err(|detail| SignError::Key {
            path: path.to_path_buf(),
            detail,
        })
    }

    /// A fresh P-256 key (keyless signing uses one per run).
    pub fn generate() -> Result<Self, SignError> {
        let signer = SigningScheme::ECDSA_P256_SHA256_ASN1
            .create_signer()
            .map_err(|e| SignError::Crypto(e.to_string()))?;
        let pair = signer
            .to_sigstore_keypair()
            .map_err(|e| SignError::Crypto(e.to_string()))?;
        Self::from_pair(&pair).map_err(SignError::Crypto)
    }

    fn from_pair(pair: &SigStoreKeyPair) -> Result<Self, String> {
        let signer = pair
            .to_sigstore_signer(&SigningScheme::ECDSA_P256_SHA256_ASN1)
            .map_err(|e| format!("unsupported key: {e} (gantry signs with ECDSA P-256 keys)"))?;
        Ok(SigningKey {
            signer,
            public_der: pair.public_key_to_der().map_err(|e| e.to_string())?,
            // The crate writes CRLF; cosign and everyone else write LF.
            public_pem: pair
                .public_key_to_pem()
                .map_err(|e| e.to_string())?
                .replace("\r\n", "\n"),
        })
    }

    /// ECDSA-P256-SHA256 signature (ASN.1 DER) over `message`.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        self.signer
            .sign(message)
            .map_err(|e| SignError::Crypto(e.to_string()))
    }

    /// The key hint bundles carry: base64 of the SHA-256 of the public key's DER.
    pub fn hint(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&self.public_der))
    }

    /// Writes `<prefix>.key` (encrypted with `password`) and `<prefix>.pub`; refuses to
    /// overwrite an existing key.
    pub fn write_pair(
        &self,
        prefix: &Path,
        password: &Secret,
    ) -> Result<(PathBuf, PathBuf), SignError> {
        let key_path = prefix.with_extension("key");
        let pub_path = prefix.with_extension("pub");
        for p in [&key_path, &pub_path] {
            if p.exists() {
                return Err(SignError::Key {
                    path: p.clone(),
                    detail: "already exists; remove it or choose another --output-prefix".into(),
                });
            }
        }
        let pair = self
            .signer
            .to_sigstore_keypair()
            .map_err(|e| SignError::Crypto(e.to_string()))?;
        let encrypted = pair
            .private_key_to_encrypted_pem(password.bytes())
            .map_err(|e| SignError::Crypto(e.to_string()))?;
        let write = |path: &Path, bytes: &[u8]| {
            std::fs::write(path, bytes).map_err(|e| SignError::Key {
                path: path.to_path_buf(),
                detail: format!("cannot write it: {e}"),
            })
        };
        write(&key_path, encrypted.replace("\r\n", "\n").as_bytes())?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600));
        }
        write(&pub_path, self.public_pem.as_bytes())?;
        Ok((key_path, pub_path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keygen_round_trip_and_wrong_password() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::generate().unwrap();
        let password = Secret::new("correct horse");
        let (key_path, pub_path) = key
            .write_pair(&dir.path().join("cosign"), &password)
            .unwrap();
        assert!(std::fs::read_to_string(&pub_path)
            .unwrap()
            .contains("PUBLIC KEY"));
        let loaded = SigningKey::load(&key_path, &password).unwrap();
        assert_eq!(loaded.public_der, key.public_der);
        let err = SigningKey::load(&key_path, &Secret::new("wrong")).unwrap_err();
        assert!(err.to_string().contains("wrong password"), "{err}");
        assert!(!err.to_string().contains("correct horse"));
        assert!(
            key.write_pair(&dir.path().join("cosign"), &password)
                .is_err(),
            "overwrote a key"
        );
        std::fs::write(dir.path().join("junk.key"), "hello").unwrap();
        let err = SigningKey::load(&dir.path().join("junk.key"), &password).unwrap_err();
        assert!(
            err.to_string().contains("not a cosign private key"),
            "{err}"
        );
        assert_eq!(format!("{password:?}"), "***");
    }
}

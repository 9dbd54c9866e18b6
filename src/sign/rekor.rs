//! Rekor v1, the transparency log: a signature is entered in it (`hashedrekord` for
//! signatures over a payload, `dsse` for envelopes), so the signing time is witnessed
//! while the short-lived certificate was valid. gantry's own client: the Rekor crate's
//! v1 entries take a certificate only, not the public key a key-based signature has.

use base64::Engine as _;
use serde_json::{json, Value};

use super::service::Call;
use super::SignError;

pub const PUBLIC_REKOR: &str = "https://rekor.sigstore.dev";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A Rekor instance.
#[derive(Debug, Clone)]
pub struct Rekor {
    pub url: String,
    client: reqwest::Client,
}

/// An entry as Rekor v1 returns it.
#[derive(Debug, Clone)]
pub struct V1Entry {
    /// `hashedrekord` or `dsse`.
    pub kind: &'static str,
    /// The canonicalized entry, base64.
    pub body: String,
    pub integrated_time: i64,
    /// Hex SHA-256 of the log's public key.
    pub log_id: String,
    pub log_index: i64,
    /// The signed entry timestamp (the log's promise to include it), base64.
    pub signed_entry_timestamp: String,
    pub inclusion_proof: Value,
}

impl Rekor {
    pub fn new(url: &str, client: reqwest::Client) -> Self {
        Rekor {
            url: url.trim_end_matches('/').to_string(),
            client,
        }
    }

    /// Enters a signature over a payload with the SHA-256 `digest_hex`.
    pub async fn hashedrekord(
        &self,
        signature: &[u8],
        verifier_pem: &str,
        digest_hex: &str,
    ) -> Result<V1Entry, SignError> {
        let entry = json!({
            "apiVersion": "0.0.1",
            "kind": "hashedrekord",
            "spec": {
                "data": {"hash": {"algorithm": "sha256", "value": digest_hex}},
                "signature": {
                    "content": b64(signature),
                    "publicKey": {"content": b64(verifier_pem.as_bytes())},
                },
            },
        });
        self.create("hashedrekord", &entry).await
    }

    /// Enters a signed DSSE envelope.
    pub async fn dsse(&self, envelope: &Value, verifier_pem: &str) -> Result<V1Entry, SignError> {
        let entry = json!({
            "apiVersion": "0.0.1",
            "kind": "dsse",
            "spec": {"proposedContent": {
                "envelope": envelope.to_string(),
                "verifiers": [b64(verifier_pem.as_bytes())],
            }},
        });
        self.create("dsse", &entry).await
    }

    /// POST /api/v1/log/entries; an entry already there (409) is fetched instead, so
    /// a rerun finishes rather than fails.
    async fn create(&self, kind: &'static str, entry: &Value) -> Result<V1Entry, SignError> {
        let url = format!("{}/api/v1/log/entries", self.url);
        let hint = "Rekor refused the entry; --no-tlog-upload skips the transparency log (private projects)";
        let reply = Call {
            service: "Rekor",
            url: url.clone(),
            bearer: None,
            body: Some(entry),
            refused_hint: hint,
        }
        .send(&self.client, &[409])
        .await?;
        let json = match (reply.status, reply.location) {
            (409, Some(location)) => {
                let location = if location.starts_with("http") {
                    location
                } else {
                    format!("{}{location}", self.url)
                };
                Call {
                    service: "Rekor",
                    url: location,
                    bearer: None,
                    body: None,
                    refused_hint: hint,
                }
                .send(&self.client, &[])
                .await?
                .json
            }
            _ => reply.json,
        };
        V1Entry::from_response(kind, &json).ok_or_else(|| SignError::Service {
            service: "Rekor",
            url,
            detail: "its answer is not a log entry (body, integratedTime, logID, logIndex, verification)".into(),
        })
    }
}

impl V1Entry {
    /// Reads `{"<uuid>": {body, integratedTime, logID, logIndex, verification}}`.
    fn from_response(kind: &'static str, json: &Value) -> Option<Self> {
        let (_uuid, entry) = json.as_object()?.iter().next()?;
        Some(V1Entry {
            kind,
            body: entry["body"].as_str()?.to_string(),
            integrated_time: entry["integratedTime"].as_i64()?,
            log_id: entry["logID"].as_str()?.to_string(),
            log_index: entry["logIndex"].as_i64()?,
            signed_entry_timestamp: entry["verification"]["signedEntryTimestamp"]
                .as_str()?
                .to_string(),
            inclusion_proof: entry["verification"]["inclusionProof"].clone(),
        })
    }

    /// cosign's `dev.sigstore.cosign/bundle` annotation: the entry and the log's
    /// signed promise, which cosign checks offline.
    pub fn cosign_bundle_annotation(&self) -> String {
        json!({
            "SignedEntryTimestamp": self.signed_entry_timestamp,
            "Payload": {
                "body": self.body,
                "integratedTime": self.integrated_time,
                "logIndex": self.log_index,
                "logID": self.log_id,
            },
        })
        .to_string()
    }

    /// The entry as a Sigstore bundle's `tlogEntries` item (protobuf JSON: 64-bit
    /// integers as strings, bytes as base64).
    pub fn bundle_tlog_entry(&self) -> Value {
        let hex_to_b64 = |h: &str| hex::decode(h).map(|b| b64(&b)).unwrap_or_default();
        let proof = &self.inclusion_proof;
        let mut entry = json!({
            "logIndex": self.log_index.to_string(),
            "logId": {"keyId": hex_to_b64(&self.log_id)},
            "kindVersion": {"kind": self.kind, "version": "0.0.1"},
            "integratedTime": self.integrated_time.to_string(),
            "inclusionPromise": {"signedEntryTimestamp": self.signed_entry_timestamp},
            "canonicalizedBody": self.body,
        });
        if proof.is_object() {
            entry["inclusionProof"] = json!({
                "logIndex": proof["logIndex"].as_i64().unwrap_or_default().to_string(),
                "rootHash": hex_to_b64(proof["rootHash"].as_str().unwrap_or_default()),
                "treeSize": proof["treeSize"].as_i64().unwrap_or_default().to_string(),
                "hashes": proof["hashes"].as_array().into_iter().flatten()
                    .filter_map(Value::as_str).map(hex_to_b64).collect::<Vec<_>>(),
                "checkpoint": {"envelope": proof["checkpoint"].as_str().unwrap_or_default()},
            });
        }
        entry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_v1_entry_becomes_a_bundle_entry_and_a_cosign_annotation() {
        let response = json!({"24296fb2": {
            "body": "Ym9keQ==", "integratedTime": 1700000000, "logID": "c0d23d6a",
            "logIndex": 42,
            "verification": {
                "signedEntryTimestamp": "U0VU",
                "inclusionProof": {"logIndex": 7, "rootHash": "00ff", "treeSize": 8,
                    "hashes": ["0102"], "checkpoint": "rekor.sigstore.dev - 1\n8\n"},
            },
        }});
        let entry = V1Entry::from_response("dsse", &response).unwrap();
        let bundle = entry.bundle_tlog_entry();
        assert_eq!(bundle["logIndex"], "42");
        assert_eq!(bundle["logId"]["keyId"], b64(&[0xc0, 0xd2, 0x3d, 0x6a]));
        assert_eq!(bundle["kindVersion"]["kind"], "dsse");
        assert_eq!(bundle["inclusionProof"]["treeSize"], "8");
        assert_eq!(bundle["inclusionProof"]["rootHash"], b64(&[0, 255]));
        let annotation: Value = serde_json::from_str(&entry.cosign_bundle_annotation()).unwrap();
        assert_eq!(annotation["Payload"]["logIndex"], 42);
        assert_eq!(annotation["SignedEntryTimestamp"], "U0VU");
        assert!(V1Entry::from_response("dsse", &json!({"x": {}})).is_none());
    }
}

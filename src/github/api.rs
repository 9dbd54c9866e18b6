//! GitHub's REST API, through octocrab: attestation bundles go to the repository's
//! attestation store (what `gh attestation verify` reads), and on a release event the
//! SBOMs and the run's result are attached to the release. Neither is worth failing a
//! run whose images are pushed and signed: problems come back as warnings that say
//! what to grant.
//!
//! Each distinct in-toto statement is stored once. The store indexes a bundle by every
//! subject digest its statement names, so the provenance (one statement naming the
//! index and every platform manifest, signed onto each of them in the registry) is
//! found from any of its subjects after one post; posting each copy would make the
//! store hold, and `gh attestation verify` report, the same statement once per
//! subject. Each SBOM statement names only its own image, so each is still one post.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use bytes::Bytes;
use octocrab::Octocrab;
use serde_json::{json, Value};

use crate::report::BuildReport;
use crate::sign::{AttachmentKind, SigningMethod};

/// A repository on a GitHub instance, and a client for its API.
pub struct Repository {
    client: Octocrab,
    owner: String,
    name: String,
}

/// What the run added on GitHub, and what it could not.
#[derive(Debug, Default)]
pub struct Published {
    pub attestations: Vec<u64>,
    pub release_assets: Vec<String>,
    pub warnings: Vec<String>,
}

impl Repository {
    /// The workflow's repository (GITHUB_REPOSITORY) on the instance GITHUB_API_URL
    /// names (GitHub Enterprise Server has its own), with `token`. `uploads` is the
    /// release-asset host, from the release event.
    pub fn from_env(token: &str, uploads: Option<&str>) -> Result<Self, String> {
        let repository = std::env::var("GITHUB_REPOSITORY")
            .map_err(|_| "GITHUB_REPOSITORY is not set".to_string())?;
        let (owner, name) = repository
            .split_once('/')
            .ok_or_else(|| format!("GITHUB_REPOSITORY={repository:?} is not OWNER/REPO"))?;
        let api =
            std::env::var("GITHUB_API_URL").unwrap_or_else(|_| "https://api.github.com".into());
        let mut builder = Octocrab::builder()
            .personal_token(token.to_string())
            .base_uri(api.as_str())
            .map_err(|e| format!("GITHUB_API_URL={api:?}: {e}"))?;
        if let Some(uploads) = uploads {
            builder = builder
                .upload_uri(uploads)
                .map_err(|e| format!("release upload URL {uploads:?}: {e}"))?;
        }
        Ok(Repository {
            client: builder
                .build()
                .map_err(|e| format!("GitHub API client: {e}"))?,
            owner: owner.to_string(),
            name: name.to_string(),
        })
    }

    /// `POST /repos/{owner}/{repo}/attestations` with `{bundle}`; returns the id.
    pub async fn store_attestation(&self, bundle: &Value) -> Result<u64, String> {
        let route = format!("/repos/{}/{}/attestations", self.owner, self.name);
        let reply: Value = self
            .client
            .post(route, Some(&json!({ "bundle": bundle })))
            .await
            .map_err(|e| match status(&e) {
                Some(403) | Some(404) => "GitHub refused to store the attestation: the job needs `permissions: attestations: write` (and the repository must allow artifact attestations)".to_string(),
                _ => format!("storing the attestation on GitHub failed: {}", describe(&e)),
            })?;
        Ok(reply["id"].as_u64().unwrap_or_default())
    }

    /// Uploads a release asset: `POST {upload_url}?name=…` with the raw bytes, to the
    /// URL the release event gives (uploads.github.com, or GHES's own).
    pub async fn upload_release_asset(
        &self,
        upload_url: &str,
        name: &str,
        body: Vec<u8>,
    ) -> Result<(), String> {
        let failed = |e: octocrab::Error| {
            match status(&e) {
            Some(403) => format!(
                "GitHub refused the release asset {name}: the job needs `permissions: contents: write`"
            ),
            Some(422) => format!("the release already has an asset named {name}; kept it"),
            _ => format!("uploading release asset {name} failed: {}", describe(&e)),
        }
        };
        let uri = format!("{upload_url}?name={}", query_escape(name));
        let request = http::Request::post(uri.as_str())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::CONTENT_LENGTH, body.len())
            .body(Bytes::from(body))
            .map_err(|e| format!("release asset {name}: {e}"))?;
        let response = self.client.execute(request).await.map_err(failed)?;
        octocrab::map_github_error(response)
            .await
            .map(|_| ())
            .map_err(failed)
    }
}

/// Percent-encodes a query value (asset names are file names).
fn query_escape(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn status(error: &octocrab::Error) -> Option<u16> {
    match error {
        octocrab::Error::GitHub { source, .. } => Some(source.status_code.as_u16()),
        _ => None,
    }
}

/// The error without the request URL or headers.
fn describe(error: &octocrab::Error) -> String {
    match error {
        octocrab::Error::GitHub { source, .. } => {
            format!("{} {}", source.status_code, source.message)
        }
        other => other.to_string(),
    }
}

/// Where a `release` event's assets go: its upload URL (template stripped) and host.
fn release_from_event() -> Option<(String, String)> {
    if std::env::var("GITHUB_EVENT_NAME").ok()? != "release" {
        return None;
    }
    let path = std::env::var("GITHUB_EVENT_PATH").ok()?;
    let event: Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    // "https://uploads.github.com/repos/o/r/releases/1/assets{?name,label}"
    let upload_url = event["release"]["upload_url"].as_str()?;
    let upload_url = upload_url.split('{').next()?.to_string();
    let host = upload_url.split("/repos/").next()?.to_string();
    Some((upload_url, host))
}

/// The bundles to store: the first of each distinct statement, in the order given. A
/// statement is its DSSE envelope's payload type and decoded payload (the signatures
/// differ between copies of one statement: each signing is new). A bundle whose
/// payload cannot be read is kept, never merged with another.
fn distinct_statements<'a>(bundles: impl IntoIterator<Item = &'a Value>) -> Vec<&'a Value> {
    let mut seen = std::collections::HashSet::new();
    bundles
        .into_iter()
        .filter(|bundle| match statement_key(bundle) {
            Some(key) => seen.insert(key),
            None => true,
        })
        .collect()
}

/// A DSSE bundle's payload type and the `sha256:` digest of its statement (what the
/// `dev.gantry.statement.digest` annotation of its referrer holds).
fn statement_key(bundle: &Value) -> Option<(String, String)> {
    let envelope = &bundle["dsseEnvelope"];
    let payload_type = envelope["payloadType"].as_str()?;
    // Protobuf's JSON form of bytes: standard or URL-safe base64, padded or not.
    let payload = envelope["payload"].as_str()?.trim_end_matches('=');
    let statement = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(payload)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload))
        .ok()?;
    Some((
        payload_type.to_string(),
        crate::image::Digest::of(&statement).to_string(),
    ))
}

/// Stores each distinct attestation statement of a keyless run in GitHub's attestation
/// store, once (see the module doc), and, on a release event, attaches the SBOM files
/// and `result` (the `--json` file).
pub async fn publish(report: &BuildReport, token: &str, result: Option<&Path>) -> Published {
    let mut published = Published::default();
    let release = release_from_event();
    let repository =
        match Repository::from_env(token, release.as_ref().map(|(_, host)| host.as_str())) {
            Ok(r) => r,
            Err(e) => {
                published
                    .warnings
                    .push(format!("not publishing to GitHub: {e}"));
                return published;
            }
        };
    let keyless = report
        .signer
        .as_ref()
        .is_some_and(|s| s.method == SigningMethod::Keyless);
    if keyless {
        let bundles = distinct_statements(
            report
                .images
                .iter()
                .flat_map(|i| &i.attachments)
                .filter(|a| a.kind == AttachmentKind::Attestation)
                .filter_map(|a| a.bundle.as_ref()),
        );
        for bundle in bundles {
            match repository.store_attestation(bundle).await {
                Ok(id) => published.attestations.push(id),
                Err(e) => {
                    published.warnings.push(e);
                    break;
                }
            }
        }
    }
    if let Some((upload_url, _)) = &release {
        let mut files: Vec<PathBuf> = report
            .images
            .iter()
            .flat_map(|i| &i.sboms)
            .filter_map(|s| s.file.clone())
            .collect();
        files.extend(result.map(Path::to_path_buf));
        for file in files {
            let name = file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let uploaded = match std::fs::read(&file) {
                Ok(body) => {
                    repository
                        .upload_release_asset(upload_url, &name, body)
                        .await
                }
                Err(e) => Err(format!("reading {}: {e}", file.display())),
            };
            match uploaded {
                Ok(()) => published.release_assets.push(name),
                Err(e) => published.warnings.push(e),
            }
        }
    }
    published
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle(payload_type: &str, payload: &str, signature: &str) -> Value {
        json!({
            "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
            "dsseEnvelope": {
                "payloadType": payload_type,
                "payload": payload,
                "signatures": [{"sig": signature}],
            },
        })
    }

    #[test]
    fn each_statement_is_stored_once_in_the_order_first_seen() {
        let intoto = "application/vnd.in-toto+json";
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let url_safe = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        // Provenance about a, b and the index, signed onto each (new signatures each
        // time); an SBOM per image.
        let provenance = r#"{"subject":["a","b","index"],"predicateType":"slsa"}"#;
        let bundles = [
            bundle(
                intoto,
                &b64(r#"{"subject":["a"],"predicateType":"spdx"}"#),
                "1",
            ),
            bundle(intoto, &b64(provenance), "2"),
            bundle(
                intoto,
                &b64(r#"{"subject":["b"],"predicateType":"spdx"}"#),
                "3",
            ),
            bundle(intoto, &b64(provenance), "4"),
            // The same statement in the other base64 alphabet, unpadded.
            bundle(intoto, &url_safe(provenance), "5"),
            // The same bytes under another payload type are another statement.
            bundle("text/plain", &b64(provenance), "6"),
            // Unreadable payloads are never merged.
            bundle(intoto, "not base64!", "7"),
            bundle(intoto, "not base64!", "8"),
        ];
        let signatures: Vec<&str> = distinct_statements(&bundles)
            .iter()
            .map(|b| b["dsseEnvelope"]["signatures"][0]["sig"].as_str().unwrap())
            .collect();
        assert_eq!(signatures, ["1", "2", "3", "6", "7", "8"]);
    }
}

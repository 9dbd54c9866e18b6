//! [`KeylessStack`]: a local Sigstore for keyless signing (an OIDC issuer minting
//! GitHub-shaped tokens, a real Fulcio with an ephemeral CA, optionally a Rekor),
//! and the Fulcio config and trusted root that make cosign trust it.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use super::env::tool;
use super::net::{free_port, start_server};

/// A local Sigstore for keyless signing: an OIDC issuer that mints GitHub-shaped
/// tokens the way a runner serves them (tests/oidc-issuer), and a real Fulcio with an
/// ephemeral CA that trusts it. Both stop when dropped.
pub struct KeylessStack {
    /// The issuer URL, which the certificates name.
    pub issuer: String,
    pub fulcio: String,
    /// What cosign verifies with: a trusted root holding Fulcio's CA (and Rekor's key
    /// when there is a Rekor).
    pub trusted_root: PathBuf,
    /// The Rekor, when started with one.
    pub rekor: Option<String>,
    children: Vec<Child>,
    dir: tempfile::TempDir,
}

impl KeylessStack {
    /// The bearer token the issuer's /token endpoint wants.
    pub const REQUEST_TOKEN: &'static str = "gantry-test-request-token";
    /// The certificate identity: `https://github.com/` + the job_workflow_ref claim.
    pub const IDENTITY: &'static str =
        "https://github.com/octo-org/octo-repo/.github/workflows/release.yml@refs/heads/main";

    pub fn start() -> Self {
        Self::start_with(false)
    }

    /// Also a real Rekor v1 (tests/rekor-local), whose key joins the trusted root.
    pub fn start_with_rekor() -> Self {
        Self::start_with(true)
    }

    fn start_with(with_rekor: bool) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut children = Vec::new();
        let (issuer_host, _) = start_server(
            "the OIDC issuer",
            "/.well-known/openid-configuration",
            |s| s == 200,
            &mut children,
            |host| {
                Command::new(tool("oidc-issuer"))
                    .args(["--address", host, "--request-token", Self::REQUEST_TOKEN])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("start oidc-issuer")
            },
        );
        let issuer = format!("http://{issuer_host}");
        let config = dir.path().join("fulcio.yaml");
        std::fs::write(&config, fulcio_config(&issuer)).unwrap();
        let log = dir.path().join("fulcio.log");
        let (fulcio_host, bundle) = start_server(
            "Fulcio",
            "/api/v2/trustBundle",
            |s| s == 200,
            &mut children,
            |host| {
                let (_, port) = host.split_once(':').unwrap();
                Command::new(tool("fulcio"))
                    .args([
                        "serve",
                        "--ca",
                        "ephemeralca",
                        "--ct-log-url",
                        "",
                        "--host",
                        "127.0.0.1",
                    ])
                    .args([
                        "--grpc-host",
                        "127.0.0.1",
                        "--metrics-port",
                        "0",
                        "--port",
                        port,
                    ])
                    .arg("--grpc-port")
                    .arg(free_port().to_string())
                    .arg("--config-path")
                    .arg(&config)
                    .arg("--legacy-unix-domain-socket")
                    .arg(dir.path().join(format!("legacy-{port}.sock")))
                    .stdout(Stdio::null())
                    .stderr(std::fs::File::create(&log).unwrap())
                    .spawn()
                    .expect("start fulcio")
            },
        );
        let rekor = with_rekor.then(|| {
            start_server(
                "Rekor",
                "/api/v1/log/publicKey",
                |s| s == 200,
                &mut children,
                |host| {
                    let (_, port) = host.split_once(':').unwrap();
                    Command::new(tool("rekor-local"))
                        .args(["--port", port])
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .spawn()
                        .expect("start rekor-local")
                },
            )
        });
        let trusted_root = dir.path().join("trusted_root.json");
        // One JSON document on one line, newline-terminated: also a trusted_root.jsonl,
        // which `gh attestation verify --custom-trusted-root` reads line by line.
        std::fs::write(
            &trusted_root,
            trusted_root_for(&bundle, &fulcio_host, rekor.as_ref()) + "\n",
        )
        .unwrap();
        // The same, as cosign v2's classic verification reads them (SIGSTORE_ROOT_FILE,
        // SIGSTORE_REKOR_PUBLIC_KEY).
        let chain: Value = serde_json::from_slice(&bundle).unwrap();
        let pems: Vec<&str> = chain["chains"][0]["certificates"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        std::fs::write(dir.path().join("fulcio-root.pem"), pems.join("")).unwrap();
        if let Some((_, key)) = &rekor {
            std::fs::write(dir.path().join("rekor.pub"), key).unwrap();
        }
        KeylessStack {
            issuer,
            fulcio: format!("http://{fulcio_host}"),
            trusted_root,
            rekor: rekor.map(|(host, _)| format!("http://{host}")),
            children,
            dir,
        }
    }

    /// Fulcio's CA chain, PEM (cosign v2's SIGSTORE_ROOT_FILE).
    pub fn fulcio_root_pem(&self) -> PathBuf {
        self.dir.path().join("fulcio-root.pem")
    }

    /// Rekor's public key, PEM (cosign v2's SIGSTORE_REKOR_PUBLIC_KEY).
    pub fn rekor_public_key(&self) -> PathBuf {
        self.dir.path().join("rekor.pub")
    }

    /// The runner's OIDC variables, pointing at the local issuer.
    pub fn actions_env(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                "ACTIONS_ID_TOKEN_REQUEST_URL",
                format!("{}/token?api-version=2.0", self.issuer),
            ),
            ("ACTIONS_ID_TOKEN_REQUEST_TOKEN", Self::REQUEST_TOKEN.into()),
        ]
    }
}

impl Drop for KeylessStack {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Fulcio's config: trust the local issuer as a GitHub Actions one, with the
/// certificate extensions and SAN public-good Fulcio derives from GitHub's claims.
fn fulcio_config(issuer: &str) -> String {
    format!(
        r#"oidc-issuers:
  {issuer}:
    issuer-url: {issuer}
    client-id: sigstore
    type: ci-provider
    ci-provider: github-workflow
ci-issuer-metadata:
  github-workflow:
    default-template-values:
      url: "https://github.com"
      environment: ""
    extension-templates:
      github-workflow-trigger: "event_name"
      github-workflow-sha: "sha"
      github-workflow-name: "workflow"
      github-workflow-repository: "repository"
      github-workflow-ref: "ref"
      build-signer-uri: "{{{{ .url }}}}/{{{{ .job_workflow_ref }}}}"
      build-signer-digest: "job_workflow_sha"
      runner-environment: "runner_environment"
      source-repository-uri: "{{{{ .url }}}}/{{{{ .repository }}}}"
      source-repository-digest: "sha"
      source-repository-ref: "ref"
      source-repository-identifier: "repository_id"
      source-repository-owner-uri: "{{{{ .url }}}}/{{{{ .repository_owner }}}}"
      source-repository-owner-identifier: "repository_owner_id"
      build-config-uri: "{{{{ .url }}}}/{{{{ .workflow_ref }}}}"
      build-config-digest: "workflow_sha"
      build-trigger: "event_name"
      run-invocation-uri: "{{{{ .url }}}}/{{{{ .repository }}}}/actions/runs/{{{{ .run_id }}}}/attempts/{{{{ .run_attempt }}}}"
      source-repository-visibility-at-signing: "repository_visibility"
    subject-alternative-name-template: "{{{{ .url }}}}/{{{{ .job_workflow_ref }}}}"
"#
    )
}

/// A Sigstore trusted root (what `cosign --trusted-root` reads) holding the CA chain
/// Fulcio's `/api/v2/trustBundle` returned, and the Rekor `(host, public key PEM)`.
fn trusted_root_for(
    trust_bundle: &[u8],
    fulcio_host: &str,
    rekor: Option<&(String, Vec<u8>)>,
) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let tlogs: Vec<Value> = rekor
        .map(|(host, pem)| {
            let der = pem::parse(pem).expect("Rekor's key is PEM").into_contents();
            serde_json::json!({
                "baseUrl": format!("http://{host}"),
                "hashAlgorithm": "SHA2_256",
                "publicKey": {
                    "rawBytes": b64(&der),
                    "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                    "validFor": {"start": "2020-01-01T00:00:00Z"},
                },
                "logId": {"keyId": b64(&sha2::Sha256::digest(&der))},
            })
        })
        .into_iter()
        .collect();
    let bundle: Value = serde_json::from_slice(trust_bundle).expect("Fulcio trust bundle JSON");
    let certificates: Vec<Value> = bundle["chains"][0]["certificates"]
        .as_array()
        .expect("a certificate chain")
        .iter()
        .map(|pem| {
            let der = pem::parse(pem.as_str().unwrap()).unwrap().into_contents();
            serde_json::json!({"rawBytes": b64(&der)})
        })
        .collect();
    serde_json::json!({
        "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
        "tlogs": tlogs, "ctlogs": [], "timestampAuthorities": [],
        "certificateAuthorities": [{
            "subject": {"organization": "sigstore", "commonName": "sigstore"},
            "uri": format!("http://{fulcio_host}"),
            "certChain": {"certificates": certificates},
            "validFor": {"start": "2020-01-01T00:00:00Z"},
        }],
    })
    .to_string()
}

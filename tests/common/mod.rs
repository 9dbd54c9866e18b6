//! Real parts for the integration tests: Debian's docker-registry on a loopback port,
//! skopeo to read back, and the built programs run natively, under qemu-user, or
//! under node:wasi. A missing tool fails the test with how to install it.
#![allow(dead_code)] // each test binary uses a different part of this module

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn example(name: &str) -> PathBuf {
    repo_root().join("examples").join(name)
}

/// Panics with an install hint when `tool` is not on PATH.
pub fn require(tool: &str, install: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "`{tool}` is not installed; {install} (scripts/test installs it)"
    );
}

/// A Go tool scripts/test installs into target/tools (cosign-v2, cosign-v3, fulcio,
/// referrers-registry, oidc-issuer).
pub fn tool(name: &str) -> PathBuf {
    let binary = if name.starts_with("cosign") {
        "cosign"
    } else {
        name
    };
    let path = repo_root().join("target/tools").join(name).join(binary);
    assert!(
        path.is_file(),
        "{} is missing; run scripts/test, which installs it with go install",
        path.display()
    );
    path
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free loopback port")
}

/// A loopback port nothing listens on: a service that is down.
pub fn closed_port() -> u16 {
    free_port()
}

/// A docker-registry process, stopped when dropped.
pub struct TestRegistry {
    pub host: String,
    child: Child,
    _dir: tempfile::TempDir,
    /// The token service, for a registry that asks for Bearer tokens.
    token_server: Option<(String, Child)>,
}

impl TestRegistry {
    pub fn start() -> Self {
        Self::start_with(|_| String::new())
    }

    /// With Bearer token auth, as ghcr.io and Docker Hub have it: a token service
    /// (tests/token-server) that gives `user`/`password` whatever scope they ask for.
    pub fn start_with_token_auth(user: &str, password: &str) -> Self {
        Self::start_with_token_service(user, password, &[])
    }

    /// Like `start_with_token_auth`, but the token service grants only pull on the
    /// repositories in `pull_only` (its JWT says so, and the registry refuses pushes).
    pub fn start_with_token_service(user: &str, password: &str, pull_only: &[&str]) -> Self {
        use std::io::BufRead;
        let mut server = None;
        let mut registry = Self::start_with(|dir| {
            let cert = dir.join("token-signer.pem");
            let mut child = Command::new(tool("token-server"))
                .args(["-user", user, "-password", password, "-pull-only"])
                .arg(pull_only.join(","))
                .arg("-cert")
                .arg(&cert)
                .stdout(Stdio::piped())
                .spawn()
                .expect("start token-server");
            let mut line = String::new();
            std::io::BufReader::new(child.stdout.take().expect("stdout"))
                .read_line(&mut line)
                .expect("read the token server's address");
            let address = line.trim().trim_start_matches("listening on ").to_string();
            let config = format!(
                "auth:\n  token:\n    realm: http://{address}/token\n    service: gantry-test-registry\n    issuer: gantry-test-issuer\n    rootcertbundle: {}\n",
                cert.display()
            );
            server = Some((address, child));
            config
        });
        registry.token_server = server;
        registry
    }

    /// The token requests the token service saw: `{user, scopes, status}`.
    pub fn token_requests(&self) -> Vec<Value> {
        let (address, _) = self.token_server.as_ref().expect("a token-auth registry");
        let (_, body) = http_get(address, "/__log").expect("token server answers");
        serde_json::from_slice::<Option<Vec<Value>>>(&body)
            .expect("token log")
            .unwrap_or_default()
    }

    /// With htpasswd auth for `user`/`password`.
    pub fn start_with_auth(user: &str, password: &str) -> Self {
        require("htpasswd", "apt-get install apache2-utils");
        let out = Command::new("htpasswd")
            .args(["-Bbn", user, password])
            .output()
            .expect("run htpasswd");
        assert!(out.status.success());
        Self::start_with(|dir| {
            let path = dir.join("htpasswd");
            std::fs::write(&path, &out.stdout).expect("write htpasswd");
            format!(
                "auth:\n  htpasswd:\n    realm: gantry-test\n    path: {}\n",
                path.display()
            )
        })
    }

    /// go-containerregistry's registry with the OCI referrers API switched on
    /// (tests/referrers-registry, built by scripts/test).
    pub fn start_with_referrers_api() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::started(dir, |host| {
            Command::new(tool("referrers-registry"))
                .args(["--address", host])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start the referrers registry")
        })
    }

    /// A registry `spawn` starts on the host it is given, once it answers.
    fn started(dir: tempfile::TempDir, spawn: impl Fn(&str) -> Child) -> Self {
        let mut children = Vec::new();
        // Any answer means it is up (a registry with auth answers 401).
        let (host, _) = start_server("the registry", "/v2/", |_| true, &mut children, spawn);
        TestRegistry {
            host,
            child: children.pop().expect("started"),
            _dir: dir,
            token_server: None,
        }
    }

    /// The repositories docker-registry holds anything for (blobs, manifests or
    /// uploads), read from its storage, so that registries with auth show too.
    pub fn repositories(&self) -> Vec<String> {
        fn walk(dir: &Path, rel: &str, out: &mut Vec<String>) {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with('_') {
                    if !out.iter().any(|r| r == rel) {
                        out.push(rel.to_string());
                    }
                } else if entry.path().is_dir() {
                    let rel = if rel.is_empty() {
                        name
                    } else {
                        format!("{rel}/{name}")
                    };
                    walk(&entry.path(), &rel, out);
                }
            }
        }
        let mut out = Vec::new();
        let root = self
            ._dir
            .path()
            .join("data/docker/registry/v2/repositories");
        walk(&root, "", &mut out);
        out
    }

    /// Status and body of GET `path` on this registry.
    pub fn get(&self, path: &str) -> Option<(u16, Vec<u8>)> {
        http_get(&self.host, path)
    }

    /// docker-registry with the `auth:` section `auth` writes (it may put files in
    /// the registry's directory).
    fn start_with(auth: impl FnOnce(&Path) -> String) -> Self {
        require("docker-registry", "apt-get install docker-registry");
        let dir = tempfile::tempdir().expect("tempdir");
        let auth = auth(dir.path());
        let cfg = dir.path().join("config.yml");
        let data = dir.path().join("data");
        Self::started(dir, |host| {
            let config = format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {host}\n{auth}",
                data.display()
            );
            std::fs::write(&cfg, config).expect("write registry config");
            Command::new("docker-registry")
                // It reads REGISTRY_* variables as configuration: none from outside.
                .env_clear()
                .arg("serve")
                .arg(&cfg)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start docker-registry")
        })
    }

    /// Digest a tag points at, read with skopeo (None when the tag does not exist).
    pub fn tag_digest(&self, repo: &str, tag: &str) -> Option<String> {
        let out = skopeo(&[
            "inspect",
            "--raw",
            &format!("docker://{}/{repo}:{tag}", self.host),
        ]);
        out.status.success().then(|| sha256sum(&out.stdout))
    }

    /// docker-registry's storage for `repo` (`repositories/<repo>`).
    fn storage(&self, repo: &str) -> PathBuf {
        self._dir
            .path()
            .join("data/docker/registry/v2/repositories")
            .join(repo)
    }

    /// The digests under `dir/sha256/` that have a `link`, sorted.
    fn linked(dir: &Path) -> Vec<String> {
        let mut out: Vec<String> = std::fs::read_dir(dir.join("sha256"))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().join("link").is_file())
            .map(|e| format!("sha256:{}", e.file_name().to_string_lossy()))
            .collect();
        out.sort();
        out
    }

    /// The blobs (layers and configs) `repo` holds, read from docker-registry's storage.
    pub fn blobs(&self, repo: &str) -> Vec<String> {
        Self::linked(&self.storage(repo).join("_layers"))
    }

    /// The manifests (images, indexes, anything) `repo` holds, from the storage.
    pub fn manifests(&self, repo: &str) -> Vec<String> {
        Self::linked(&self.storage(repo).join("_manifests/revisions"))
    }

    /// `repo`'s tags and the digests they point at, from the storage.
    pub fn tags(&self, repo: &str) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> =
            std::fs::read_dir(self.storage(repo).join("_manifests/tags"))
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| {
                    let link = std::fs::read_to_string(e.path().join("current/link")).ok()?;
                    Some((e.file_name().to_string_lossy().into_owned(), link))
                })
                .collect();
        out.sort();
        out
    }

    /// Everything stored, repository by repository: (repo, blobs, manifests, tags).
    pub fn contents(&self) -> Vec<StoredRepo> {
        let mut repos = self.repositories();
        repos.sort();
        repos
            .into_iter()
            .map(|r| StoredRepo {
                blobs: self.blobs(&r),
                manifests: self.manifests(&r),
                tags: self.tags(&r),
                repo: r,
            })
            .collect()
    }
}

/// What one repository of a [`TestRegistry`] holds, read from its storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRepo {
    pub repo: String,
    pub blobs: Vec<String>,
    pub manifests: Vec<String>,
    pub tags: Vec<(String, String)>,
}

/// `sha256:<hex>` of `bytes`, computed by coreutils' sha256sum (not by gantry).
pub fn sha256sum(bytes: &[u8]) -> String {
    require("sha256sum", "apt-get install coreutils");
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run sha256sum");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(bytes)
        .expect("feed sha256sum");
    let out = child.wait_with_output().expect("sha256sum");
    assert!(out.status.success(), "sha256sum failed");
    let hex = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("sha256sum printed a sum")
        .to_string();
    format!("sha256:{hex}")
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some((_, server)) = &mut self.token_server {
            let _ = server.kill();
            let _ = server.wait();
        }
    }
}

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

/// Starts a server on a free loopback port and waits until `path` answers with a
/// status `up` accepts; a
/// server that exits first (its port was taken meanwhile) is started again on
/// another port. Keeps the child in `children`; returns the host and the body.
fn start_server(
    what: &str,
    path: &str,
    up: impl Fn(u16) -> bool,
    children: &mut Vec<Child>,
    spawn: impl Fn(&str) -> Child,
) -> (String, Vec<u8>) {
    let mut failures = Vec::new();
    for _ in 0..3 {
        let port = free_port();
        let host = format!("127.0.0.1:{port}");
        let mut child = spawn(&host);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some((_, body)) = http_get(&host, path).filter(|(s, _)| up(*s)) {
                // The answer may come from another test's server that took the port
                // first (ours then fails to bind): keep only a server that holds it.
                if listens_on(child.id(), port) == Some(false) {
                    let _ = child.kill();
                    let _ = child.wait();
                    failures.push(format!("another process answered on {host}"));
                    break;
                }
                children.push(child);
                return (host, body);
            }
            if let Some(status) = child.try_wait().ok().flatten() {
                // Its port was taken meanwhile, most likely: try another.
                failures.push(format!("it exited ({status}) on {host}"));
                break;
            }
            assert!(Instant::now() < deadline, "{what} did not start on {host}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    panic!("{what} did not start three times: {}", failures.join("; "));
}

/// Whether process `pid` holds the socket listening on loopback `port`, read from
/// /proc (None when /proc cannot say).
fn listens_on(pid: u32, port: u16) -> Option<bool> {
    let sockets: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()?
        .flatten()
        .filter_map(|fd| {
            let target = std::fs::read_link(fd.path()).ok()?;
            let inode = target
                .to_str()?
                .strip_prefix("socket:[")?
                .strip_suffix(']')?;
            Some(inode.to_string())
        })
        .collect();
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?
        + &std::fs::read_to_string("/proc/net/tcp6").unwrap_or_default();
    let port = format!(":{port:04X}");
    Some(table.lines().any(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        // local address, state (0A = LISTEN), inode
        f.len() > 9 && f[1].ends_with(&port) && f[3] == "0A" && sockets.iter().any(|s| s == f[9])
    }))
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

/// One request a [`RecordingServer`] received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// Path and query.
    pub target: String,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A loopback HTTP server that records every request and answers with what
/// `respond` returns (status, JSON body): a stand-in for an API whose requests a test
/// checks against the API's documented shapes.
pub struct RecordingServer {
    pub url: String,
    pub requests: std::sync::Arc<std::sync::Mutex<Vec<Recorded>>>,
}

impl RecordingServer {
    pub fn start(respond: fn(&Recorded) -> (u16, String)) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let log = log.clone();
                std::thread::spawn(move || serve_one(stream, respond, &log));
            }
        });
        RecordingServer { url, requests }
    }

    pub fn recorded(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

/// Reads one HTTP/1.1 request (Content-Length bodies only); None at end of stream.
fn read_request(reader: &mut impl std::io::BufRead) -> Option<Recorded> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).ok()? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_lowercase(), v.trim().to_string()));
        }
    }
    let length: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Recorded {
        method,
        target,
        headers,
        body,
    })
}

fn serve_one(
    mut stream: TcpStream,
    respond: fn(&Recorded) -> (u16, String),
    log: &std::sync::Mutex<Vec<Recorded>>,
) {
    let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
    while let Some(request) = read_request(&mut reader) {
        let (status, reply) = respond(&request);
        log.lock().unwrap().push(request);
        let response = format!(
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{reply}",
            reply.len()
        );
        if stream.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

/// A registry that refuses some requests: a proxy in front of a real one that
/// answers the requests `refuse` picks with 400 MANIFEST_INVALID (as a registry that
/// does not take a media type does) and forwards the rest.
pub struct RefusingProxy {
    pub host: String,
}

impl RefusingProxy {
    pub fn start(upstream: &str, refuse: fn(&Recorded) -> bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let host = listener.local_addr().unwrap().to_string();
        let upstream = upstream.to_string();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let upstream = upstream.clone();
                std::thread::spawn(move || proxy_one(stream, &upstream, refuse));
            }
        });
        RefusingProxy { host }
    }
}

fn proxy_one(mut client: TcpStream, upstream: &str, refuse: fn(&Recorded) -> bool) {
    let mut reader = std::io::BufReader::new(client.try_clone().unwrap());
    while let Some(request) = read_request(&mut reader) {
        let response = if refuse(&request) {
            let body = r#"{"errors":[{"code":"MANIFEST_INVALID","message":"manifest invalid","detail":"unsupported manifest"}]}"#;
            format!(
                "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes()
        } else {
            // One upstream connection per request, read to its end.
            let Ok(mut server) = TcpStream::connect(upstream) else {
                return;
            };
            let mut head = format!("{} {} HTTP/1.1\r\n", request.method, request.target);
            for (k, v) in &request.headers {
                if k != "connection" {
                    head.push_str(&format!("{k}: {v}\r\n"));
                }
            }
            head.push_str("connection: close\r\n\r\n");
            let mut response = Vec::new();
            if server.write_all(head.as_bytes()).is_err()
                || server.write_all(&request.body).is_err()
                || server.read_to_end(&mut response).is_err()
            {
                return;
            }
            response
        };
        if client.write_all(&response).is_err() {
            return;
        }
    }
}

/// A real network in front of a registry (tests/fault-proxy): latency, faults picked
/// by method and path, and a log of every request it saw. Stopped when dropped.
pub struct FaultProxy {
    pub host: String,
    child: Child,
}

/// One request as the proxy saw it.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct ProxyEntry {
    pub method: String,
    pub path: String,
    pub query: String,
    pub status: u16,
    #[serde(default)]
    pub fault: String,
    /// When the request arrived and when its answer was done, in ms since the proxy
    /// started.
    #[serde(default)]
    pub start_ms: u64,
    #[serde(default)]
    pub end_ms: u64,
}

impl FaultProxy {
    /// In front of `upstream`, with no added latency.
    pub fn start(upstream: &str) -> Self {
        Self::start_with_latency(upstream, "0s")
    }

    /// `latency` as Go writes durations ("25ms"), added each way.
    pub fn start_with_latency(upstream: &str, latency: &str) -> Self {
        use std::io::BufRead;
        let mut child = Command::new(tool("fault-proxy"))
            .args(["-upstream", upstream, "-latency", latency])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start fault-proxy");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read the proxy's address");
        let host = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("fault-proxy said {line:?}"))
            .to_string();
        FaultProxy { host, child }
    }

    /// Adds faults: `[{"method":"PUT","path":"/manifests/","action":"status","status":503}]`.
    pub fn inject(&self, faults: Value) {
        let (status, body) = http_request(
            &self.host,
            "POST",
            "/__proxy/faults",
            faults.to_string().as_bytes(),
        )
        .expect("fault-proxy answers");
        assert_eq!(
            status,
            200,
            "fault-proxy refused the faults: {}",
            String::from_utf8_lossy(&body)
        );
    }

    /// Every request seen since the start (or the last `clear`).
    pub fn log(&self) -> Vec<ProxyEntry> {
        let (_, body) =
            http_request(&self.host, "GET", "/__proxy/log", b"").expect("fault-proxy answers");
        serde_json::from_slice::<Option<Vec<ProxyEntry>>>(&body)
            .expect("proxy log")
            .unwrap_or_default()
    }

    pub fn clear(&self) {
        http_request(&self.host, "DELETE", "/__proxy/log", b"").expect("fault-proxy answers");
        http_request(&self.host, "DELETE", "/__proxy/faults", b"").expect("fault-proxy answers");
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Status and body of one HTTP/1.0 request on loopback, None when nothing answers.
pub fn http_request(host: &str, method: &str, path: &str, body: &[u8]) -> Option<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect(host).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: {host}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .ok()?;
    s.write_all(body).ok()?;
    let mut response = Vec::new();
    s.read_to_end(&mut response).ok()?;
    let status = String::from_utf8_lossy(&response)
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    let body = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| response[i + 4..].to_vec())
        .unwrap_or_default();
    Some((status, body))
}

/// Status and body of a plain HTTP/1.0 GET on loopback, None when nothing answers.
fn http_get(host: &str, path: &str) -> Option<(u16, Vec<u8>)> {
    http_request(host, "GET", path, b"")
}

/// Copies a directory tree (test fixtures into temp dirs).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}

/// Runs gantry with `args` in `dir`, in a sealed environment (see [`seal`]).
pub fn gantry(dir: &Path, args: &[&str]) -> Output {
    gantry_env(dir, args, &[])
}

/// Runs gantry with `args` in `dir`, in a sealed environment plus `env` (applied last).
pub fn gantry_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = gantry_command(dir);
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run gantry")
}

/// The gantry binary, to run in `dir` in a sealed environment (see [`seal`]), for a
/// test that spawns it itself.
pub fn gantry_command(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gantry"));
    cmd.current_dir(dir);
    seal(&mut cmd);
    cmd
}

/// Go's settings that a sealed run passes on, as `go env` reports them for the real
/// user: the build and module caches stay shared and warm.
const GO_SETTINGS: [&str; 11] = [
    "GOCACHE",
    "GOMODCACHE",
    "GOPATH",
    "GOPROXY",
    "GOFLAGS",
    "GONOSUMDB",
    "GONOPROXY",
    "GOSUMDB",
    "GOPRIVATE",
    "GOINSECURE",
    "GOTOOLCHAIN",
];

/// `go env` of the real user, asked once per test binary: GO_SETTINGS and GOROOT.
fn go_env() -> &'static serde_json::Map<String, Value> {
    static GO_ENV: std::sync::OnceLock<serde_json::Map<String, Value>> = std::sync::OnceLock::new();
    GO_ENV.get_or_init(|| {
        let out = Command::new("go")
            .args(["env", "-json", "GOROOT"])
            .args(GO_SETTINGS)
            .output()
            .expect("run `go env`: the tests need Go (scripts/test checks for it)");
        assert!(
            out.status.success(),
            "go env failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("go env -json")
    })
}

/// The real `go` binary, `$(go env GOROOT)/bin/go`.
pub fn real_go() -> PathBuf {
    let goroot = go_env()["GOROOT"].as_str().expect("GOROOT");
    Path::new(goroot).join("bin/go")
}

thread_local! {
    /// This test's own HOME and caches. libtest runs each test on a thread of its
    /// own, so the directory lives as long as the test and is removed after it.
    static SEALED_ROOT: tempfile::TempDir = {
        let dir = tempfile::Builder::new()
            .prefix("gantry-test-env-")
            .tempdir()
            .expect("tempdir");
        std::fs::create_dir(dir.path().join("home")).expect("mkdir home");
        dir
    };
}

/// Clears `cmd`'s environment and sets only what a run needs: PATH (and TMPDIR, when
/// set); HOME, DOCKER_CONFIG, XDG_CACHE_HOME and GANTRY_CACHE_DIR in this test's own
/// temporary directory; and Go's caches and settings as the real user has them.
/// Anything else (credentials, tokens, GANTRY_REPO, SOURCE_DATE_EPOCH) a test sets
/// itself.
pub fn seal(cmd: &mut Command) -> &mut Command {
    let root = SEALED_ROOT.with(|d| d.path().to_path_buf());
    let home = root.join("home");
    cmd.env_clear();
    for inherited in ["PATH", "TMPDIR"] {
        if let Some(value) = std::env::var_os(inherited) {
            cmd.env(inherited, value);
        }
    }
    cmd.env("HOME", &home)
        .env("DOCKER_CONFIG", home.join(".docker"))
        .env("XDG_CACHE_HOME", root.join("cache"))
        .env("GANTRY_CACHE_DIR", root.join("cache/gantry"));
    let go = go_env();
    for key in GO_SETTINGS {
        if let Some(value) = go
            .get(key)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
        {
            cmd.env(key, value);
        }
    }
    cmd
}

/// A `go` for GANTRY_GO that appends each invocation's arguments to a log, one line
/// each, then runs the real go: what gantry asked Go to do, seen from outside.
pub struct RecordingGo {
    pub go: PathBuf,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl RecordingGo {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let go = dir.path().join("go");
        let log = dir.path().join("calls");
        std::fs::write(
            &go,
            format!(
                "#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{}'\nexec '{}' \"$@\"\n",
                log.display(),
                real_go().display()
            ),
        )
        .expect("write the recording go");
        std::fs::set_permissions(&go, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
        RecordingGo { go, log, _dir: dir }
    }

    /// GANTRY_GO for gantry_env.
    pub fn env(&self) -> (&'static str, &str) {
        ("GANTRY_GO", self.go.to_str().expect("utf-8 path"))
    }

    /// Every invocation so far, its arguments joined by spaces.
    pub fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// The `go build` invocations so far.
    pub fn builds(&self) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter(|c| c == "build" || c.starts_with("build "))
            .collect()
    }
}

impl Default for RecordingGo {
    fn default() -> Self {
        Self::new()
    }
}

/// A key pair written by the real cosign: `dir/cosign.key` (encrypted with
/// `password`) and `dir/cosign.pub`.
pub fn cosign_key_pair(dir: &Path, password: &str) -> (PathBuf, PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    let out = seal(&mut Command::new(tool("cosign-v3")))
        .arg("generate-key-pair")
        .current_dir(dir)
        .env("COSIGN_PASSWORD", password)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cosign generate-key-pair: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (dir.join("cosign.key"), dir.join("cosign.pub"))
}

/// The `REPO@sha256:…` a failed build names as pushed (no tag moved, so the error is
/// where the digest is).
pub fn pushed_reference(stderr: &str, repo: &str) -> String {
    stderr
        .split_whitespace()
        .find(|w| w.starts_with(&format!("{repo}@sha256:")))
        .unwrap_or_else(|| panic!("the error does not name the pushed digest:\n{stderr}"))
        .trim_end_matches(',')
        .to_string()
}

/// Asserts success and returns stdout.
pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "gantry failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asserts failure and returns stderr.
pub fn fails(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "gantry should have failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stdout.is_empty(),
        "a failed run printed a result: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !stderr.contains("panicked at") && out.status.code() != Some(101),
        "gantry panicked: {stderr}"
    );
    stderr
}

pub fn skopeo(args: &[&str]) -> Output {
    require("skopeo", "apt-get install skopeo");
    let mut full = vec![];
    let is_docker = args.iter().any(|a| a.starts_with("docker://"));
    full.push(args[0]);
    if is_docker {
        if args[0] == "copy" {
            full.extend(["--src-tls-verify=false", "--dest-tls-verify=false"]);
        } else {
            full.push("--tls-verify=false");
        }
    }
    full.extend(&args[1..]);
    // Sealed too: skopeo reads REGISTRY_AUTH_FILE, DOCKER_CONFIG and HOME's configs.
    seal(&mut Command::new("skopeo"))
        .args(&full)
        .output()
        .expect("run skopeo")
}

pub fn skopeo_ok(args: &[&str]) -> Vec<u8> {
    let out = skopeo(args);
    assert!(
        out.status.success(),
        "skopeo {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

pub fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("valid JSON")
}

/// Copies one platform of `src` (a skopeo image reference) into an OCI layout with
/// skopeo, extracts its layers in order into a root filesystem, and returns the
/// root and the image config.
pub fn pull_and_extract(
    src: &str,
    os: &str,
    arch: &str,
    variant: Option<&str>,
) -> (tempfile::TempDir, Value) {
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = dir.path().join("layout");
    let dest = format!("oci:{}:img", layout.display());
    let mut args = vec!["copy", "--override-os", os, "--override-arch", arch];
    if let Some(v) = variant {
        args.extend(["--override-variant", v]);
    }
    args.extend([src, dest.as_str()]);
    skopeo_ok(&args);
    let index = json(&std::fs::read(layout.join("index.json")).expect("index.json"));
    let manifest_digest = index["manifests"][0]["digest"]
        .as_str()
        .expect("digest")
        .to_string();
    let blob = |d: &str| {
        std::fs::read(
            layout
                .join("blobs/sha256")
                .join(d.trim_start_matches("sha256:")),
        )
        .expect("blob")
    };
    let manifest = json(&blob(&manifest_digest));
    let config = json(&blob(
        manifest["config"]["digest"].as_str().expect("config"),
    ));
    let root = dir.path().join("rootfs");
    std::fs::create_dir_all(&root).expect("mkdir rootfs");
    for layer in manifest["layers"].as_array().expect("layers") {
        let bytes = blob(layer["digest"].as_str().expect("layer digest"));
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..]));
        archive.set_preserve_permissions(true);
        archive.unpack(&root).expect("unpack layer");
    }
    (dir, config)
}

/// Runs the image's entrypoint from an extracted rootfs: natively, under
/// qemu-user for another Linux architecture, or under node:wasi for wasm.
pub fn run_entrypoint(rootfs: &Path, config: &Value) -> String {
    let entry = config["config"]["Entrypoint"][0]
        .as_str()
        .expect("entrypoint");
    let program = rootfs.join(entry.trim_start_matches('/'));
    assert!(
        program.is_file(),
        "entrypoint {entry} missing from the image"
    );
    let env: Vec<(String, String)> = config["config"]["Env"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| {
                    e.as_str()?
                        .split_once('=')
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                })
                .collect()
        })
        .unwrap_or_default();
    let arch = config["architecture"].as_str().unwrap_or("");
    let mut cmd = match arch {
        "wasm" => {
            require("node", "apt-get install nodejs");
            let mut c = Command::new("node");
            c.arg("--no-warnings")
                .arg("-e")
                .arg(NODE_WASI)
                .arg(&program);
            c
        }
        "amd64" => Command::new(&program),
        "arm64" => {
            require("qemu-aarch64-static", "apt-get install qemu-user-static");
            let mut c = Command::new("qemu-aarch64-static");
            c.arg(&program);
            c
        }
        "arm" => {
            require("qemu-arm-static", "apt-get install qemu-user-static");
            let mut c = Command::new("qemu-arm-static");
            c.arg(&program);
            c
        }
        other => panic!("no way to run {other} here"),
    };
    cmd.env_clear();
    for (k, v) in env {
        // The image's paths are inside the rootfs.
        let v = if k == "KO_DATA_PATH" {
            rootfs.join(v.trim_start_matches('/')).display().to_string()
        } else {
            v
        };
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run entrypoint");
    assert!(
        out.status.success(),
        "{entry} ({arch}) failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A WASI preview1 host: node's `node:wasi`, the module path in argv[1].
const NODE_WASI: &str = r#"
const { WASI } = require('node:wasi');
const fs = require('node:fs');
const file = process.argv[1];
const wasi = new WASI({ version: 'preview1', args: [file], env: {} });
const mod = new WebAssembly.Module(fs.readFileSync(file));
const imports = WebAssembly.Module.imports(mod).map(i => i.module);
if (imports.some(m => m !== 'wasi_snapshot_preview1')) { console.error('unexpected imports: ' + imports); process.exit(3); }
const inst = new WebAssembly.Instance(mod, wasi.getImportObject());
process.exitCode = wasi.start(inst);
"#;

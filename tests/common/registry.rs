//! [`TestRegistry`]: a real registry on a loopback port (Debian's docker-registry,
//! optionally behind htpasswd or Bearer-token auth, or go-containerregistry's with
//! the referrers API), and what it stored, read straight from its storage so a test
//! checks the registry's side rather than gantry's account of it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use super::clients::{sha256sum, skopeo};
use super::env::{require, tool};
use super::net::{http_get, start_server};

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

impl TestRegistry {
    /// What a client can reach by name: per repository, its manifests and tags (the
    /// blobs left out: a run uploads each layer as soon as its build ends, so a run
    /// that fails later may leave layers, which no manifest names and the next run
    /// reuses).
    pub fn manifests_and_tags(&self) -> Vec<StoredRepo> {
        self.contents()
            .into_iter()
            .map(|r| StoredRepo {
                blobs: Vec::new(),
                ..r
            })
            .filter(|r| !r.manifests.is_empty() || !r.tags.is_empty())
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

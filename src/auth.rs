//! Registry credentials, found where docker, podman, skopeo, crane and ko keep them,
//! so an existing `docker login` just works. Secrets never reach Debug, Display or
//! error messages.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use serde::Deserialize;

pub use crate::secret::Secret;

/// Credentials for one registry, and where they came from (for messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: Secret,
    pub source: String,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{path}: not valid JSON ({detail}); fix or remove the file")]
    Malformed { path: PathBuf, detail: String },
    #[error("{path}: the `auth` entry for {registry} is not base64 of user:password; run `docker login {registry}` again")]
    BadAuthEntry { path: PathBuf, registry: String },
    #[error("credential helper docker-credential-{helper} (named in {path}) could not be run: {detail}; install it or remove it from the file")]
    Helper {
        helper: String,
        path: PathBuf,
        detail: String,
    },
}

/// The docker/podman config subset gantry reads.
#[derive(Debug, Default, Deserialize)]
struct ConfigFile {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: HashMap<String, String>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

/// The environment lookups read; tests give their own.
pub trait Env {
    fn var(&self, key: &str) -> Option<String>;
}

struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, key: &str) -> Option<String> {
        std::env::var(key).ok().filter(|v| !v.is_empty())
    }
}

/// Credentials for `registry`, or None to go anonymous.
pub fn lookup(registry: &str) -> Result<Option<Credentials>, AuthError> {
    lookup_in(&ProcessEnv, registry)
}

/// The places `lookup` searches, for an "access refused" message.
pub fn searched_locations(registry: &str) -> String {
    searched_in(&ProcessEnv, registry)
}

/// Config files in the order they are consulted.
fn config_files(env: &dyn Env) -> Vec<PathBuf> {
    let mut files = Vec::new();
    if let Some(f) = env.var("REGISTRY_AUTH_FILE") {
        files.push(PathBuf::from(f));
    }
    match (env.var("DOCKER_CONFIG"), env.var("HOME")) {
        (Some(dir), _) => files.push(Path::new(&dir).join("config.json")),
        (None, Some(home)) => files.push(Path::new(&home).join(".docker/config.json")),
        (None, None) => {}
    }
    if let Some(run) = env.var("XDG_RUNTIME_DIR") {
        files.push(Path::new(&run).join("containers/auth.json"));
    }
    files
}

/// Docker Hub's many names all log in as the one index.
fn canonical(registry: &str) -> &str {
    match registry {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => "https://index.docker.io/v1/",
        other => other,
    }
}

/// `https://host/v1/` and `host` name the same registry.
fn host_of(key: &str) -> &str {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    key.split('/').next().unwrap_or(key)
}

fn matches(key: &str, registry: &str) -> bool {
    let wanted = canonical(registry);
    key == wanted || host_of(key) == host_of(wanted)
}

fn lookup_in(env: &dyn Env, registry: &str) -> Result<Option<Credentials>, AuthError> {
    for path in config_files(env) {
        let Ok(text) = std::fs::read(&path) else {
            continue;
        };
        let config: ConfigFile =
            serde_json::from_slice(&text).map_err(|e| AuthError::Malformed {
                path: path.clone(),
                detail: format!("line {} column {}", e.line(), e.column()),
            })?;
        if let Some((_, helper)) = config
            .cred_helpers
            .iter()
            .find(|(k, _)| matches(k, registry))
        {
            if let Some(c) = run_helper(env, helper, &path, registry)? {
                return Ok(Some(c));
            }
        }
        if let Some((key, entry)) = config.auths.iter().find(|(k, _)| matches(k, registry)) {
            if let Some(c) = from_entry(entry, &path, key)? {
                return Ok(Some(c));
            }
        }
        if let Some(store) = &config.creds_store {
            if let Some(c) = run_helper(env, store, &path, registry)? {
                return Ok(Some(c));
            }
        }
    }
    if registry == "ghcr.io" {
        if let Some(token) = env.var("GITHUB_TOKEN") {
            return Ok(Some(Credentials {
                username: env
                    .var("GITHUB_ACTOR")
                    .unwrap_or_else(|| "x-access-token".into()),
                password: Secret::new(token),
                source: "GITHUB_TOKEN".into(),
            }));
        }
    }
    Ok(None)
}

fn from_entry(entry: &AuthEntry, path: &Path, key: &str) -> Result<Option<Credentials>, AuthError> {
    let source = format!("{} (auths)", path.display());
    if let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
        let bad = || AuthError::BadAuthEntry {
            path: path.to_path_buf(),
            registry: key.to_string(),
        };
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth)
            .map_err(|_| bad())?;
        let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
        let (user, pass) = decoded.split_once(':').ok_or_else(bad)?;
        return Ok(Some(Credentials {
            username: user.to_string(),
            password: Secret::new(pass),
            source,
        }));
    }
    if let (Some(user), Some(pass)) = (&entry.username, &entry.password) {
        return Ok(Some(Credentials {
            username: user.clone(),
            password: Secret::new(pass.clone()),
            source,
        }));
    }
    Ok(entry.identitytoken.as_ref().map(|token| Credentials {
        username: "<token>".into(),
        password: Secret::new(token.clone()),
        source,
    }))
}

#[derive(Deserialize)]
struct HelperReply {
    #[serde(rename = "Username")]
    username: String,
    #[serde(rename = "Secret")]
    secret: String,
}

/// `docker-credential-<helper> get`, server URL on stdin. "Not found" is no credentials.
fn run_helper(
    env: &dyn Env,
    helper: &str,
    path: &Path,
    registry: &str,
) -> Result<Option<Credentials>, AuthError> {
    let program = format!("docker-credential-{helper}");
    let helper_err = |detail: String| AuthError::Helper {
        helper: helper.to_string(),
        path: path.to_path_buf(),
        detail,
    };
    let mut cmd = Command::new(&program);
    if let Some(p) = env.var("PATH") {
        cmd.env("PATH", p);
    }
    let mut child = cmd
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| helper_err(e.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(canonical(registry).as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| helper_err(e.to_string()))?;
    if !out.status.success() {
        let said = String::from_utf8_lossy(&out.stdout).to_lowercase()
            + &String::from_utf8_lossy(&out.stderr).to_lowercase();
        if said.contains("not found") {
            return Ok(None);
        }
        return Err(helper_err(format!("it exited with {}", out.status)));
    }
    let reply: HelperReply = serde_json::from_slice(&out.stdout)
        .map_err(|_| helper_err("it did not answer with {\"Username\",\"Secret\"} JSON".into()))?;
    Ok(Some(Credentials {
        username: reply.username,
        password: Secret::new(reply.secret),
        source: format!("credential helper {program}"),
    }))
}

fn searched_in(env: &dyn Env, registry: &str) -> String {
    let mut places = Vec::new();
    if env.var("REGISTRY_AUTH_FILE").is_none() {
        places.push("$REGISTRY_AUTH_FILE (unset)".to_string());
    }
    for path in config_files(env) {
        let state = if path.exists() {
            "no usable entry"
        } else {
            "absent"
        };
        places.push(format!("{} ({state} for {registry})", path.display()));
    }
    if registry == "ghcr.io" {
        let state = if env.var("GITHUB_TOKEN").is_some() {
            "set"
        } else {
            "unset"
        };
        places.push(format!("GITHUB_TOKEN ({state})"));
    }
    places.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    struct TestEnv(HashMap<&'static str, String>);

    impl Env for TestEnv {
        fn var(&self, key: &str) -> Option<String> {
            self.0.get(key).cloned()
        }
    }

    fn env(pairs: &[(&'static str, &str)]) -> TestEnv {
        TestEnv(pairs.iter().map(|(k, v)| (*k, v.to_string())).collect())
    }

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn auths_in_every_spelling() {
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{}"}},"https://reg.example.com/v2/":{{"auth":"{}"}},"plain.example.com":{{"username":"u","password":"p"}}}}}}"#,
            b64("hub:hubpass"),
            b64("me:s3cret")
        );
        std::fs::write(dir.path().join("config.json"), config).unwrap();
        let e = env(&[("DOCKER_CONFIG", dir.path().to_str().unwrap())]);
        let c = lookup_in(&e, "reg.example.com").unwrap().unwrap();
        assert_eq!((c.username.as_str(), c.password.expose()), ("me", "s3cret"));
        assert!(!format!("{c:?}").contains("s3cret"));
        assert_eq!(lookup_in(&e, "docker.io").unwrap().unwrap().username, "hub");
        assert_eq!(
            lookup_in(&e, "plain.example.com")
                .unwrap()
                .unwrap()
                .password
                .expose(),
            "p"
        );
        assert!(lookup_in(&e, "other.example.com").unwrap().is_none());
    }

    #[test]
    fn registry_auth_file_comes_first_and_github_token_is_the_ghcr_fallback() {
        let dir = tempfile::tempdir().unwrap();
        let first = dir.path().join("auth.json");
        std::fs::write(
            &first,
            format!(
                r#"{{"auths":{{"ghcr.io":{{"auth":"{}"}}}}}}"#,
                b64("a:first")
            ),
        )
        .unwrap();
        let e = env(&[
            ("REGISTRY_AUTH_FILE", first.to_str().unwrap()),
            ("GITHUB_TOKEN", "tok"),
        ]);
        assert_eq!(
            lookup_in(&e, "ghcr.io").unwrap().unwrap().password.expose(),
            "first"
        );
        let e = env(&[("GITHUB_TOKEN", "tok"), ("GITHUB_ACTOR", "octo")]);
        let c = lookup_in(&e, "ghcr.io").unwrap().unwrap();
        assert_eq!(
            (c.username.as_str(), c.source.as_str()),
            ("octo", "GITHUB_TOKEN")
        );
        assert!(
            lookup_in(&e, "quay.io").unwrap().is_none(),
            "GITHUB_TOKEN is for ghcr.io only"
        );
        assert!(searched_in(&e, "ghcr.io").contains("GITHUB_TOKEN (set)"));
    }

    #[test]
    fn credential_helpers() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let helper = bin.join("docker-credential-fake");
        std::fs::write(&helper, "#!/bin/sh\nread url\necho \"{\\\"Username\\\":\\\"h\\\",\\\"Secret\\\":\\\"from-$url\\\"}\"\n").unwrap();
        std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
        let none = bin.join("docker-credential-empty");
        std::fs::write(
            &none,
            "#!/bin/sh\necho 'credentials not found in native keychain'\nexit 1\n",
        )
        .unwrap();
        std::fs::set_permissions(&none, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"credHelpers":{"reg.example.com":"fake","gone.example.com":"missing"},"credsStore":"empty"}"#,
        )
        .unwrap();
        let path = format!("{}:/usr/bin:/bin", bin.display());
        let e = env(&[
            ("DOCKER_CONFIG", dir.path().to_str().unwrap()),
            ("PATH", &path),
        ]);
        let c = lookup_in(&e, "reg.example.com").unwrap().unwrap();
        assert_eq!(c.password.expose(), "from-reg.example.com");
        assert_eq!(c.source, "credential helper docker-credential-fake");
        assert!(
            lookup_in(&e, "elsewhere.example.com").unwrap().is_none(),
            "store said not found"
        );
        let err = lookup_in(&e, "gone.example.com").unwrap_err().to_string();
        assert!(err.contains("docker-credential-missing"), "{err}");
    }

    #[test]
    fn malformed_files_are_named_without_secrets() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"auths": {"x": {"auth": "s3cret"#,
        )
        .unwrap();
        let e = env(&[("DOCKER_CONFIG", dir.path().to_str().unwrap())]);
        let err = lookup_in(&e, "x").unwrap_err().to_string();
        assert!(
            err.contains("config.json") && err.contains("line 1"),
            "{err}"
        );
        assert!(!err.contains("s3cret"));
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"auths": {"x": {"auth": "!!notbase64"}}}"#,
        )
        .unwrap();
        let err = lookup_in(&e, "x").unwrap_err().to_string();
        assert!(
            err.contains("not base64") && !err.contains("notbase64"),
            "{err}"
        );
    }
}

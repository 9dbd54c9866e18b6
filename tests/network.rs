//! gantry against a registry on a real network's terms: docker-registry behind
//! tests/fault-proxy, which injects 5xx, 429, resets and stalls, and counts every
//! request from the outside. Signatures are judged by the real cosign.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const PASSWORD: &str = "gantry-net-pass";

fn cosign_keys(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    cosign_key_pair(&dir.join(name), PASSWORD)
}

/// `cosign verify` (v2: the classic `.sig` path) with a key, offline.
fn cosign_verifies(version: &str, public: &Path, image: &str) -> bool {
    let root = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        root.path(),
        r#"{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1","tlogs":[],"certificateAuthorities":[],"ctlogs":[],"timestampAuthorities":[]}"#,
    )
    .unwrap();
    let mut cmd = Command::new(tool(version));
    cmd.args(["verify", "--key"])
        .arg(public)
        .args(["--insecure-ignore-tlog=true", "--allow-http-registry"]);
    if version == "cosign-v2" {
        cmd.arg("--trusted-root").arg(root.path());
    }
    cmd.arg(image).output().unwrap().status.success()
}

fn build_args<'a>(repo: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "build",
        "--repo",
        repo,
        "--platform",
        "linux/amd64,wasi/wasm",
        "--base",
        "scratch",
    ];
    args.extend(extra);
    args
}

/// The index and platform digests a `--json` report names.
fn subjects(report: &Path) -> Vec<String> {
    let r = json(&std::fs::read(report).unwrap());
    let image = &r["images"][0];
    let mut all = vec![image["digest"].as_str().unwrap().to_string()];
    for p in image["platforms"].as_array().unwrap() {
        all.push(p["digest"].as_str().unwrap().to_string());
    }
    all
}

/// A manifest read straight from the registry (not through the proxy) with skopeo.
fn raw(registry: &TestRegistry, repo: &str, at: &str) -> Option<Value> {
    let out = skopeo(&[
        "inspect",
        "--raw",
        &format!("docker://{}/{repo}:{at}", registry.host),
    ]);
    out.status.success().then(|| json(&out.stdout))
}

fn sig_tag(digest: &str) -> String {
    format!("{}.sig", digest.replacen(':', "-", 1))
}

#[test]
fn every_kind_of_transient_failure_is_retried_and_the_signed_build_succeeds() {
    let registry = TestRegistry::start();
    let proxy = FaultProxy::start(&registry.host);
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = cosign_keys(dir.path(), "k");
    proxy.inject(json!([
        {"method": "PUT", "path": "/manifests/sha256:", "action": "status", "status": 503},
        {"method": "PUT", "path": "/blobs/uploads/", "action": "status", "status": 429, "retry_after": "1"},
        {"method": "HEAD", "path": "/blobs/", "action": "status", "status": 500},
        {"method": "POST", "path": "/blobs/uploads/", "action": "reset"},
        {"method": "GET", "path": "/manifests/", "action": "status", "status": 502},
        {"method": "PUT", "path": "/manifests/latest", "action": "status", "status": 504, "forward": true},
    ]));
    let repo = format!("{}/retry", proxy.host);
    let report = dir.path().join("r.json");
    let args = build_args(
        &repo,
        &[
            "--key",
            key.to_str().unwrap(),
            "--json",
            report.to_str().unwrap(),
        ],
    );
    ok(&gantry_env(
        &example("hello"),
        &args,
        &[("COSIGN_PASSWORD", PASSWORD)],
    ));

    // Each fault was hit, and the very request was then sent again and answered by
    // the registry: 2xx, or for a read the 404 that means "not there" (an upload is
    // restarted from a new session, so its PUT has a new path).
    let log = proxy.log();
    for (method, path, fault) in [
        ("PUT", "/manifests/sha256:", "status"),
        ("PUT", "/blobs/uploads/", "status"),
        ("HEAD", "/blobs/", "status"),
        ("POST", "/blobs/uploads/", "reset"),
        ("GET", "/manifests/", "status"),
        ("PUT", "/manifests/latest", "status"),
    ] {
        let hit = log
            .iter()
            .position(|e| e.method == method && e.path.contains(path) && e.fault == fault)
            .unwrap_or_else(|| panic!("fault on {method} {path} never hit: {log:#?}"));
        let faulted = &log[hit];
        let again = |e: &&ProxyEntry| {
            e.method == faulted.method
                && if faulted.path.contains("/blobs/uploads/") && method == "PUT" {
                    e.path.contains("/blobs/uploads/")
                } else {
                    e.path == faulted.path
                }
                && e.fault.is_empty()
        };
        let retried = log[hit + 1..]
            .iter()
            .find(again)
            .unwrap_or_else(|| panic!("{method} {} was not retried: {log:#?}", faulted.path));
        assert!(
            retried.status < 300 || (matches!(method, "GET" | "HEAD") && retried.status == 404),
            "{method} {} was retried but answered {}: {log:#?}",
            faulted.path,
            retried.status
        );
    }
    // docker-registry has no referrers API: the report says the fallback tag lists them.
    let result = json(&std::fs::read(&report).unwrap());
    let referrers: Vec<&Value> = result["images"][0]["attachments"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["storage"] == "referrer")
        .collect();
    assert!(
        !referrers.is_empty() && referrers.iter().all(|a| a["listed_by"] == "fallback-tag"),
        "{referrers:?}"
    );
    // Read back with independent clients, straight from the registry.
    let all = subjects(&report);
    let latest = registry.tag_digest("retry", "latest");
    assert_eq!(latest.as_deref(), Some(all[0].as_str()));
    for digest in &all {
        let image = format!("{}/retry@{digest}", registry.host);
        assert!(cosign_verifies("cosign-v3", &public, &image), "{image}");
        assert!(cosign_verifies("cosign-v2", &public, &image), "{image}");
    }
}

#[test]
fn a_client_error_is_not_retried() {
    let registry = TestRegistry::start();
    let proxy = FaultProxy::start(&registry.host);
    proxy.inject(json!([
        {"method": "PUT", "path": "/manifests/", "action": "status", "status": 400, "times": 100},
    ]));
    let repo = format!("{}/bad", proxy.host);
    let err = fails(&gantry(&example("hello"), &build_args(&repo, &[])));
    let log = proxy.log();
    let puts: Vec<&str> = log
        .iter()
        .filter(|e| e.method == "PUT" && e.path.contains("/manifests/"))
        .map(|e| e.path.as_str())
        .collect();
    assert!(!puts.is_empty(), "no manifest was pushed: {log:#?}");
    for path in &puts {
        let tries = puts.iter().filter(|p| *p == path).count();
        assert_eq!(tries, 1, "a 400 on {path} was retried: {log:#?}");
    }
    assert!(err.contains(&proxy.host) && err.contains("400"), "{err}");
    assert!(registry.tag_digest("bad", "latest").is_none());
}

#[test]
fn a_stalled_registry_ends_in_a_clear_error_within_the_stall_timeout() {
    let registry = TestRegistry::start();
    let proxy = FaultProxy::start(&registry.host);
    proxy.inject(json!([
        {"method": "PUT", "path": "/manifests/", "action": "stall", "times": 100},
    ]));
    let repo = format!("{}/stall", proxy.host);
    let started = Instant::now();
    let err = fails(&gantry(
        &example("hello"),
        &build_args(&repo, &["--stall-timeout", "2"]),
    ));
    let took = started.elapsed();
    assert!(
        err.contains("stalled") && err.contains(&proxy.host),
        "{err}"
    );
    assert!(err.contains("--stall-timeout"), "no way forward: {err}");
    assert!(
        took < Duration::from_secs(40),
        "took {took:?} with a 2 s stall timeout"
    );
    assert!(registry.tag_digest("stall", "latest").is_none());
}

#[test]
fn two_signers_at_once_both_keep_their_signatures_and_signing_again_adds_nothing() {
    let registry = TestRegistry::start();
    let dir = tempfile::tempdir().unwrap();
    let (key1, pub1) = cosign_keys(dir.path(), "one");
    let (key2, pub2) = cosign_keys(dir.path(), "two");
    let repo = format!("{}/two", registry.host);
    let report = dir.path().join("r.json");
    ok(&gantry(
        &example("hello"),
        &build_args(
            &repo,
            &["--sign", "none", "--json", report.to_str().unwrap()],
        ),
    ));
    let all = subjects(&report);
    let reference = format!("{repo}@{}", all[0]);

    let sign = |key: &Path| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gantry"));
        cmd.args(["sign", "--legacy-attestations", "--key"])
            .arg(key)
            .arg(&reference)
            .env("COSIGN_PASSWORD", PASSWORD)
            .env_remove("COSIGN_KEY")
            .env_remove("SIGSTORE_ID_TOKEN")
            .env_remove("ACTIONS_ID_TOKEN_REQUEST_URL");
        cmd
    };
    let one = sign(&key1).output_async();
    let two = sign(&key2).output_async();
    for out in [one.join().unwrap(), two.join().unwrap()] {
        ok(&out);
    }
    for digest in &all {
        let image = format!("{repo}@{digest}");
        for public in [&pub1, &pub2] {
            // v2 reads the `.sig` manifest, v3 the bundles in the fallback index.
            assert!(cosign_verifies("cosign-v2", public, &image), "{image}");
            assert!(cosign_verifies("cosign-v3", public, &image), "{image}");
        }
    }

    // The same key again: nothing new in the `.sig` and `.att` manifests or the
    // fallback indexes.
    let counts = || -> Vec<(usize, usize, usize)> {
        all.iter()
            .map(|d| {
                let listed = |tag: &str, field: &str| {
                    raw(&registry, "two", tag).unwrap_or_else(|| panic!("no {tag}"))[field]
                        .as_array()
                        .unwrap()
                        .len()
                };
                let att = format!("{}.att", d.replacen(':', "-", 1));
                (
                    listed(&sig_tag(d), "layers"),
                    listed(&att, "layers"),
                    listed(&d.replacen(':', "-", 1), "manifests"),
                )
            })
            .collect()
    };
    let before = counts();
    assert!(
        before
            .iter()
            .all(|(sigs, atts, _)| *sigs == 2 && *atts >= 2),
        "{before:?}"
    );
    ok(&sign(&key1).output().unwrap());
    assert_eq!(
        counts(),
        before,
        "signing again with the same key added entries"
    );
}

#[test]
fn garbage_at_the_signature_tag_is_never_overwritten() {
    let registry = TestRegistry::start();
    let proxy = FaultProxy::start(&registry.host);
    let dir = tempfile::tempdir().unwrap();
    let (key1, pub1) = cosign_keys(dir.path(), "one");
    let (key2, _) = cosign_keys(dir.path(), "two");
    let report = dir.path().join("r.json");
    let repo = format!("{}/keep", registry.host);
    ok(&gantry_env(
        &example("hello"),
        &build_args(
            &repo,
            &[
                "--key",
                key1.to_str().unwrap(),
                "--json",
                report.to_str().unwrap(),
            ],
        ),
        &[("COSIGN_PASSWORD", PASSWORD)],
    ));
    let index = subjects(&report)[0].clone();
    let tag = sig_tag(&index);
    let before = raw(&registry, "keep", &tag).expect("the first .sig");

    proxy.inject(json!([
        {"method": "GET", "path": format!("/manifests/{tag}"), "action": "garbage", "times": 100},
    ]));
    let err = fails(&gantry_env(
        Path::new("."),
        &[
            "sign",
            "--key",
            key2.to_str().unwrap(),
            &format!("{}/keep@{index}", proxy.host),
        ],
        &[("COSIGN_PASSWORD", PASSWORD)],
    ));
    assert!(err.contains(&tag) && err.contains("not JSON"), "{err}");
    assert_eq!(
        raw(&registry, "keep", &tag),
        Some(before),
        "the .sig manifest was changed"
    );
    assert!(cosign_verifies(
        "cosign-v2",
        &pub1,
        &format!("{repo}@{index}")
    ));
}

#[test]
fn nothing_is_built_or_pushed_when_an_output_cannot_be_written() {
    let registry = TestRegistry::start();
    let proxy = FaultProxy::start(&registry.host);
    let repo = format!("{}/early", proxy.host);
    let err = fails(&gantry(
        &example("hello"),
        &build_args(&repo, &["--json", "/nonexistent-dir/result.json"]),
    ));
    assert!(err.contains("/nonexistent-dir/result.json"), "{err}");
    assert!(
        proxy.log().is_empty(),
        "the registry was contacted: {:?}",
        proxy.log()
    );
}

#[test]
fn a_rerun_pushes_nothing_that_is_there_and_only_then_moves_the_tag() {
    let registry = TestRegistry::start();
    let proxy = FaultProxy::start(&registry.host);
    let repo = format!("{}/again", proxy.host);
    ok(&gantry(&example("hello"), &build_args(&repo, &[])));
    proxy.clear();
    ok(&gantry(
        &example("hello"),
        &build_args(&repo, &["--tag", "v2"]),
    ));
    let log = proxy.log();
    let writes: Vec<&ProxyEntry> = log
        .iter()
        .filter(|e| e.method == "PUT" || e.method == "POST")
        .collect();
    assert_eq!(writes.len(), 1, "only the new tag is written: {log:#?}");
    assert!(writes[0].path.ends_with("/manifests/v2"), "{log:#?}");
    assert!(
        !log.iter().any(|e| e.path == "/v2/"),
        "pinged the registry: {log:#?}"
    );
}

/// `Command::output` on a thread, so two runs overlap.
trait OutputAsync {
    fn output_async(self) -> std::thread::JoinHandle<std::process::Output>;
}

impl OutputAsync for Command {
    fn output_async(mut self) -> std::thread::JoinHandle<std::process::Output> {
        std::thread::spawn(move || self.output().expect("run gantry"))
    }
}

#[test]
fn a_body_cut_short_is_fetched_again() {
    let registry = TestRegistry::start();
    let proxy = FaultProxy::start(&registry.host);
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = cosign_keys(dir.path(), "k");
    ok(&gantry(
        &example("hello"),
        &build_args(&format!("{}/cut", registry.host), &["--sign", "none"]),
    ));
    proxy.inject(json!([
        {"method": "GET", "path": "/manifests/latest$", "action": "truncate"},
    ]));
    let out = ok(&gantry_env(
        Path::new("."),
        &[
            "sign",
            "--key",
            key.to_str().unwrap(),
            &format!("{}/cut:latest", proxy.host),
        ],
        &[("COSIGN_PASSWORD", PASSWORD)],
    ));
    let log = proxy.log();
    let gets: Vec<&ProxyEntry> = log
        .iter()
        .filter(|e| e.method == "GET" && e.path == "/v2/cut/manifests/latest")
        .collect();
    assert!(
        gets.len() == 2 && gets[0].fault == "truncate" && gets[1].fault.is_empty(),
        "the cut answer was not fetched again: {log:#?}"
    );
    let signed = out.trim().replace(&proxy.host, &registry.host);
    assert!(cosign_verifies("cosign-v2", &public, &signed), "{signed}");
}

/// `docker login` for `host`, in a config of its own; returns the environment that
/// points gantry at it.
fn docker_login(home: &Path, host: &str, user: &str, pass: &str) -> Vec<(String, String)> {
    use base64::Engine as _;
    let docker = home.join(".docker");
    std::fs::create_dir_all(&docker).unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    std::fs::write(
        docker.join("config.json"),
        format!(r#"{{"auths":{{"{host}":{{"auth":"{auth}"}}}}}}"#),
    )
    .unwrap();
    vec![
        ("HOME".into(), home.display().to_string()),
        ("DOCKER_CONFIG".into(), docker.display().to_string()),
    ]
}

#[test]
fn a_token_registry_gets_one_token_request_per_run() {
    let registry = TestRegistry::start_with_token_auth("gantry", "t0ken-pass");
    let home = tempfile::tempdir().unwrap();
    let env = docker_login(home.path(), &registry.host, "gantry", "t0ken-pass");
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let base = format!("{}/base", registry.host);
    ok(&gantry_env(
        &example("hello"),
        &[
            "build",
            "--repo",
            &base,
            "--platform",
            "linux/amd64,linux/arm64",
            "--base",
            "scratch",
        ],
        &env,
    ));

    // On that base, in another repository: one token for both, asked for once.
    let before = registry.token_requests().len();
    let repo = format!("{}/app", registry.host);
    let out = ok(&gantry_env(
        &example("hello"),
        &[
            "build",
            "--repo",
            &repo,
            "--platform",
            "linux/amd64,linux/arm64",
            "--base",
            &format!("{base}:latest"),
        ],
        &env,
    ));
    let asked = registry.token_requests()[before..].to_vec();
    assert_eq!(asked.len(), 1, "one token request per run: {asked:#?}");
    let scopes: Vec<&str> = asked[0]["scopes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        scopes.contains(&"repository:app:pull,push") && scopes.contains(&"repository:base:pull"),
        "{scopes:?}"
    );
    // Read back by an independent client with the same credentials.
    let pushed = out.trim();
    let index = json(&skopeo_ok(&[
        "inspect",
        "--raw",
        "--creds",
        "gantry:t0ken-pass",
        &format!("docker://{pushed}"),
    ]));
    assert_eq!(index["manifests"].as_array().unwrap().len(), 2);

    // A wrong password: the token service says no, and gantry says so.
    let env = docker_login(home.path(), &registry.host, "gantry", "wrong-pass");
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let err = fails(&gantry_env(
        &example("hello"),
        &[
            "build",
            "--repo",
            &repo,
            "--platform",
            "linux/amd64",
            "--base",
            "scratch",
        ],
        &env,
    ));
    assert!(
        err.contains(&format!("registry {} refused access", registry.host))
            && err.contains("token service answered 401"),
        "{err}"
    );
    assert!(
        !err.contains("wrong-pass"),
        "the password reached the error"
    );
}

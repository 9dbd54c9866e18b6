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
    seal(&mut cmd)
        .args(["verify", "--key"])
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

/// The digest in the `REPO@sha256:…` line gantry printed.
fn printed_digest(stdout: &str) -> String {
    let (_, digest) = stdout.trim().rsplit_once('@').expect("REPO@DIGEST");
    digest.to_string()
}

/// The index at `index` and the manifests it lists, as the registry holds them (read
/// straight from it with skopeo, which checks the digest it was asked for).
fn subjects(registry: &TestRegistry, repo: &str, index: &str) -> Vec<String> {
    let raw = skopeo_ok(&[
        "inspect",
        "--raw",
        &format!("docker://{}/{repo}@{index}", registry.host),
    ]);
    assert_eq!(sha256sum(&raw), index);
    let mut all = vec![index.to_string()];
    for m in json(&raw)["manifests"].as_array().expect("an index") {
        all.push(m["digest"].as_str().unwrap().to_string());
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
        // More than one upload's tries: a streamed upload gives up, and so does a try
        // of an ordinary one.
        {"method": "PUT", "path": "/blobs/uploads/", "action": "status", "status": 500, "times": 6},
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
            "--no-tlog-upload",
            "--key",
            key.to_str().unwrap(),
            "--json",
            report.to_str().unwrap(),
        ],
    );
    let out = ok(&gantry_env(
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
    // An upload session whose PUT failed is finished by a retry, or cancelled.
    for failed in log
        .iter()
        .filter(|e| e.method == "PUT" && e.path.contains("/blobs/uploads/") && e.status >= 400)
    {
        let ended = log.iter().any(|e| {
            e.path == failed.path && (e.method == "DELETE" || (e.method == "PUT" && e.status < 300))
        });
        assert!(ended, "session {} left open: {log:#?}", failed.path);
    }
    // Read back with independent clients, straight from the registry.
    let all = subjects(&registry, "retry", &printed_digest(&out));
    let latest = registry.tag_digest("retry", "latest");
    assert_eq!(latest.as_deref(), Some(all[0].as_str()));
    for digest in &all {
        let image = format!("{}/retry@{digest}", registry.host);
        assert!(cosign_verifies("cosign-v3", &public, &image), "{image}");
        assert!(cosign_verifies("cosign-v2", &public, &image), "{image}");
        // docker-registry has no referrers API: the fallback tag lists the bundles.
        let fallback = raw(&registry, "retry", &digest.replacen(':', "-", 1))
            .unwrap_or_else(|| panic!("no referrers fallback tag for {digest}"));
        assert!(
            !fallback["manifests"].as_array().unwrap().is_empty(),
            "{fallback}"
        );
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
    let out = ok(&gantry(
        &example("hello"),
        &build_args(&repo, &["--sign", "none"]),
    ));
    let all = subjects(&registry, "two", &printed_digest(&out));
    let reference = format!("{repo}@{}", all[0]);

    let sign = |key: &Path| {
        let mut cmd = gantry_command(Path::new("."));
        cmd.args(["sign", "--legacy-attestations", "--no-tlog-upload", "--key"])
            .arg(key)
            .arg(&reference)
            .env("COSIGN_PASSWORD", PASSWORD);
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
    let repo = format!("{}/keep", registry.host);
    let out = ok(&gantry_env(
        &example("hello"),
        &build_args(
            &repo,
            &["--no-tlog-upload", "--key", key1.to_str().unwrap()],
        ),
        &[("COSIGN_PASSWORD", PASSWORD)],
    ));
    let index = subjects(&registry, "keep", &printed_digest(&out))[0].clone();
    let tag = sig_tag(&index);
    let before = raw(&registry, "keep", &tag).expect("the first .sig");

    proxy.inject(json!([
        {"method": "GET", "path": format!("/manifests/{tag}"), "action": "garbage", "times": 100},
    ]));
    let err = fails(&gantry_env(
        Path::new("."),
        &[
            "sign",
            "--no-tlog-upload",
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
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let under_a_file = file.join("sbom");
    for (flag, path) in [
        ("--json", Path::new("/nonexistent-dir/result.json")),
        ("--sbom-dir", under_a_file.as_path()),
    ] {
        let go = RecordingGo::new();
        let err = fails(&gantry_env(
            &example("hello"),
            &build_args(&repo, &[flag, path.to_str().unwrap()]),
            &[go.env()],
        ));
        assert!(err.contains(path.to_str().unwrap()), "{err}");
        assert!(go.builds().is_empty(), "{flag}: built {:?}", go.builds());
        assert!(
            proxy.log().is_empty(),
            "{flag}: the registry was contacted: {:?}",
            proxy.log()
        );
    }
    assert!(registry.repositories().is_empty());
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
            "--no-tlog-upload",
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

/// A blob upload request: the session's POST, a PATCH, or the PUT that ends it.
fn is_upload(e: &ProxyEntry) -> bool {
    e.path.contains("/blobs/uploads/") && matches!(e.method.as_str(), "POST" | "PATCH" | "PUT")
}

/// The digest a finished upload stored (the `digest=` of its 201 PUT, or of a
/// monolithic POST); a mount is not an upload.
fn uploaded_digest(e: &ProxyEntry) -> Option<String> {
    if !is_upload(e) || e.status != 201 || e.query.contains("mount=") {
        return None;
    }
    e.query
        .split('&')
        .find_map(|kv| kv.strip_prefix("digest="))
        .map(|d| d.replace("%3A", ":").replace("%3a", ":"))
}

/// The configs and layers of the image manifests `images` of `repo`, read straight
/// from the registry with skopeo.
fn blobs_of(registry: &TestRegistry, repo: &str, images: &[String]) -> Vec<String> {
    let mut blobs = std::collections::BTreeSet::new();
    for digest in images {
        let m = json(&skopeo_ok(&[
            "inspect",
            "--raw",
            &format!("docker://{}/{repo}@{digest}", registry.host),
        ]));
        blobs.insert(m["config"]["digest"].as_str().unwrap().to_string());
        for layer in m["layers"].as_array().unwrap() {
            blobs.insert(layer["digest"].as_str().unwrap().to_string());
        }
    }
    blobs.into_iter().collect()
}

const THREE_PLATFORMS: &str = "linux/amd64,linux/arm64,wasi/wasm";

#[test]
fn blobs_then_image_manifests_then_the_index_then_the_tags_as_the_proxy_saw_them() {
    let registry = TestRegistry::start();
    // A little latency, so that requests that overlap in time show it.
    let proxy = FaultProxy::start_with_latency(&registry.host, "2ms");
    let repo = format!("{}/order", proxy.host);
    // The images' own order. What refers to them is stored before any tag moves
    // (tests/sign.rs: a refused referrer moves no tag; tests/referrers.rs lists them).
    let out = ok(&gantry(
        &example("hello"),
        &[
            "build",
            "--sbom",
            "none",
            "--no-provenance",
            "--repo",
            &repo,
            "--platform",
            THREE_PLATFORMS,
            "--base",
            "scratch",
            "--tag",
            "v1",
            "--tag",
            "latest",
        ],
    ));
    let log = proxy.log();
    let all = subjects(&registry, "order", &printed_digest(&out));
    let (index, images) = all.split_first().unwrap();
    assert_eq!(images.len(), 3, "{all:?}");
    let blobs = blobs_of(&registry, "order", images);

    // Every write the registry got, by kind, as positions in the log.
    let (mut uploads, mut image_puts, mut index_puts, mut tag_puts) =
        (vec![], vec![], vec![], vec![]);
    for (i, e) in log.iter().enumerate() {
        if matches!(e.method.as_str(), "GET" | "HEAD") {
            continue;
        }
        let at = e.path.strip_prefix("/v2/order/manifests/");
        match at {
            _ if is_upload(e) => uploads.push(i),
            Some(at) if e.method == "PUT" && at == index => index_puts.push(i),
            Some(at) if e.method == "PUT" && images.iter().any(|d| d == at) => image_puts.push(i),
            Some("v1" | "latest") if e.method == "PUT" => tag_puts.push(i),
            _ => panic!("an unexpected write: {e:?}\n{log:#?}"),
        }
    }
    let mut uploaded: Vec<String> = log.iter().filter_map(uploaded_digest).collect();
    uploaded.sort();
    assert_eq!(uploaded, blobs, "each blob uploaded once: {log:#?}");
    for (what, puts, n) in [
        ("image manifest", &image_puts, 3),
        ("index", &index_puts, 1),
        ("tag", &tag_puts, 2),
    ] {
        assert_eq!(puts.len(), n, "{what} PUTs: {log:#?}");
        assert!(puts.iter().all(|&i| log[i].status == 201), "{log:#?}");
    }
    // `first` all answered before any of `then` arrived (and so are logged before).
    let before = |first: &[usize], then: &[usize], what: &str| {
        for &a in first {
            for &b in then {
                assert!(
                    a < b && log[a].end_ms <= log[b].start_ms,
                    "{what}: {:?} was not done when {:?} began",
                    log[a],
                    log[b]
                );
            }
        }
    };
    before(&uploads, &image_puts, "blobs, then image manifests");
    before(&image_puts, &index_puts, "image manifests, then the index");
    let rest: Vec<usize> = [&uploads[..], &image_puts, &index_puts].concat();
    before(&rest, &tag_puts, "tags last");
}

#[test]
fn a_rerun_after_a_failed_push_uploads_only_the_blobs_that_are_missing() {
    let registry = TestRegistry::start();
    let proxy = FaultProxy::start(&registry.host);
    let dir = tempfile::tempdir().unwrap();
    // The same build into a layout first: the blobs the push will send, by digest.
    let layout = dir.path().join("layout");
    ok(&gantry(
        &example("hello"),
        &[
            "build",
            "--platform",
            THREE_PLATFORMS,
            "--base",
            "scratch",
            "--oci-layout",
            layout.to_str().unwrap(),
        ],
    ));
    let blob = |digest: &str| {
        let bytes = std::fs::read(layout.join("blobs/sha256").join(&digest[7..])).unwrap();
        assert_eq!(sha256sum(&bytes), digest);
        json(&bytes)
    };
    let layout_index = json(&std::fs::read(layout.join("index.json")).unwrap())["manifests"][0]
        ["digest"]
        .as_str()
        .unwrap()
        .to_string();
    // The largest layer (a Linux binary): the registry will not take it this time.
    let mut layers: Vec<(u64, String)> = Vec::new();
    for m in blob(&layout_index)["manifests"].as_array().unwrap() {
        for l in blob(m["digest"].as_str().unwrap())["layers"]
            .as_array()
            .unwrap()
        {
            layers.push((
                l["size"].as_u64().unwrap(),
                l["digest"].as_str().unwrap().into(),
            ));
        }
    }
    let refused = layers.iter().max().unwrap().1.clone();
    proxy.inject(json!([
        {"method": "HEAD", "path": format!("/blobs/{refused}$"), "action": "status", "status": 503, "times": 100},
    ]));
    let repo = format!("{}/rerun", proxy.host);
    // The images' blobs only: SBOMs and provenance would add their own.
    let args = [
        "build",
        "--sbom",
        "none",
        "--no-provenance",
        "--repo",
        &repo,
        "--platform",
        THREE_PLATFORMS,
        "--base",
        "scratch",
    ];
    let err = fails(&gantry(&example("hello"), &args));
    assert!(err.contains(&proxy.host), "{err}");
    let first = proxy.log();
    let stored = registry.blobs("rerun");
    assert!(
        !stored.is_empty() && !stored.contains(&refused),
        "the failed run should leave some blobs, not {refused}: {stored:?}\n{first:#?}"
    );
    assert!(registry.manifests("rerun").is_empty() && registry.tags("rerun").is_empty());

    proxy.clear();
    let out = ok(&gantry(&example("hello"), &args));
    let second = proxy.log();
    let all = subjects(&registry, "rerun", &printed_digest(&out));
    assert_eq!(all[0], layout_index, "the push is not the layout's index");
    let needed = blobs_of(&registry, "rerun", &all[1..]);
    let missing: Vec<String> = needed
        .iter()
        .filter(|d| !stored.contains(d))
        .cloned()
        .collect();
    assert!(missing.contains(&refused), "{missing:?}");
    let mut uploaded: Vec<String> = second.iter().filter_map(uploaded_digest).collect();
    uploaded.sort();
    assert_eq!(
        uploaded, missing,
        "the rerun uploads exactly what was missing: {second:#?}"
    );
    // What was stored is only asked about (HEAD), never sent or mounted again.
    for digest in &stored {
        let touching: Vec<&ProxyEntry> = second
            .iter()
            .filter(|e| {
                e.path.contains(digest.as_str())
                    || e.query.replace("%3A", ":").contains(digest.as_str())
            })
            .collect();
        assert!(
            !touching.is_empty()
                && touching
                    .iter()
                    .all(|e| e.method == "HEAD" && e.status == 200),
            "{digest} was already stored: {touching:#?}"
        );
    }
    assert_eq!(registry.blobs("rerun"), needed);
}

#[test]
fn a_rerun_after_the_index_was_refused_sends_only_the_index() {
    let registry = TestRegistry::start();
    let proxy = FaultProxy::start(&registry.host);
    let dir = tempfile::tempdir().unwrap();
    // The same build into a layout: the digests the push will have (builds are
    // reproducible), read from its files.
    let layout = dir.path().join("layout");
    let build = |extra: &[&str]| {
        // The images only: SBOMs and provenance would add writes of their own.
        let mut args = vec![
            "build",
            "--sbom",
            "none",
            "--no-provenance",
            "--platform",
            THREE_PLATFORMS,
            "--base",
            "scratch",
        ];
        args.extend(extra);
        gantry(&example("hello"), &args)
    };
    ok(&build(&["--oci-layout", layout.to_str().unwrap()]));
    let read = |digest: &str| {
        let bytes = std::fs::read(layout.join("blobs/sha256").join(&digest[7..])).unwrap();
        assert_eq!(sha256sum(&bytes), digest);
        json(&bytes)
    };
    let index = json(&std::fs::read(layout.join("index.json")).unwrap())["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let images: Vec<String> = read(&index)["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["digest"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(images.len(), 3);

    // The registry refuses the index once (a 400 is not retried): the images are stored.
    proxy.inject(json!([
        {"method": "PUT", "path": format!("/manifests/{index}$"), "action": "status", "status": 400, "times": 1},
    ]));
    let repo = format!("{}/indexonly", proxy.host);
    fails(&build(&["--repo", &repo]));
    assert_eq!(registry.manifests("indexonly"), {
        let mut sorted = images.clone();
        sorted.sort();
        sorted
    });
    proxy.clear();

    ok(&build(&["--repo", &repo]));
    let log = proxy.log();
    let writes: Vec<String> = log
        .iter()
        .filter(|e| e.method == "PUT" || e.method == "POST" || e.method == "PATCH")
        .map(|e| format!("{} {}", e.method, e.path))
        .collect();
    assert_eq!(
        writes,
        [
            format!("PUT /v2/indexonly/manifests/{index}"),
            "PUT /v2/indexonly/manifests/latest".to_string(),
        ],
        "only the index and the tag are written: {log:#?}"
    );
    assert!(
        !log.iter().any(|e| e.path.contains("/blobs/")),
        "blobs of stored images were checked again: {log:#?}"
    );
}

#[test]
fn layers_stream_while_compressed_and_a_failed_stream_is_sent_whole() {
    let registry = TestRegistry::start();
    let proxy = FaultProxy::start(&registry.host);
    // The first stream is cut: its layer must still arrive, whole, once.
    proxy.inject(json!([
        {"method": "PATCH", "path": "/blobs/uploads/", "action": "reset", "times": 1},
    ]));
    let repo = format!("{}/stream", proxy.host);
    let out = ok(&gantry(
        &example("hello"),
        &[
            "build",
            "--sbom",
            "none",
            "--no-provenance",
            "--repo",
            &repo,
            "--platform",
            "linux/amd64,linux/arm64",
            "--base",
            "scratch",
        ],
    ));
    let log = proxy.log();
    let all = subjects(&registry, "stream", &printed_digest(&out));
    let layers: Vec<(String, u64)> = all[1..]
        .iter()
        .map(|digest| {
            let m = json(&skopeo_ok(&[
                "inspect",
                "--raw",
                &format!("docker://{}/stream@{digest}", registry.host),
            ]));
            // The program's layer is the last.
            let layer = m["layers"].as_array().unwrap().last().unwrap();
            (
                layer["digest"].as_str().unwrap().to_string(),
                layer["size"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(layers.len(), 2, "{all:?}");

    let patches: Vec<&ProxyEntry> = log.iter().filter(|e| e.method == "PATCH").collect();
    assert_eq!(patches.len(), 2, "one PATCH per layer: {log:#?}");
    assert_eq!(patches[0].fault, "reset", "{log:#?}");
    // The cut session is cancelled, not left for the registry to expire.
    let cut = patches[0].path.rsplit('/').next().unwrap();
    assert!(
        log.iter()
            .any(|e| e.method == "DELETE" && e.path.ends_with(&format!("/blobs/uploads/{cut}"))),
        "no DELETE of the cut session {cut}: {log:#?}"
    );
    // The other layer went as it was written: chunked, all of it in one PATCH, and
    // the PUT that ended its session carried its digest and no bytes.
    let streamed = patches[1];
    assert!(streamed.chunked && streamed.status == 202, "{streamed:?}");
    let (digest, size) = layers
        .iter()
        .find(|(_, size)| *size == streamed.bytes_in)
        .unwrap_or_else(|| panic!("no layer of {} bytes: {layers:?}", streamed.bytes_in));
    let put = |digest: &str| {
        log.iter()
            .filter(|e| uploaded_digest(e).as_deref() == Some(digest))
            .collect::<Vec<_>>()
    };
    let ends = put(digest);
    assert_eq!(ends.len(), 1, "{digest} stored once: {log:#?}");
    assert_eq!(ends[0].bytes_in, 0, "{:?}", ends[0]);
    // The cut one was sent again from the finished file, in the PUT.
    let (other, other_size) = layers.iter().find(|(d, _)| d != digest).unwrap();
    let ends = put(other);
    assert_eq!(ends.len(), 1, "{other} stored once: {log:#?}");
    assert_eq!(ends[0].bytes_in, *other_size, "{:?}", ends[0]);
    assert!(!ends[0].chunked, "{:?}", ends[0]);
    assert_ne!(
        size, other_size,
        "two layers of one size: cannot tell them apart"
    );

    // And an independent client reads both whole (skopeo checks every digest).
    let dir = tempfile::tempdir().unwrap();
    skopeo_ok(&[
        "copy",
        "--all",
        &format!("docker://{}/stream@{}", registry.host, all[0]),
        &format!("oci:{}", dir.path().join("copy").display()),
    ]);
}

/// Builds `program` for linux/amd64 through `proxy` twice, each time with a
/// cache of its own, so that go writes a new binary and its layer streams though the
/// registry has it the second time; `faults` are in place for the second run only.
/// Returns the images' digest (the same both times) and the proxy's log of the
/// second run.
fn rebuild_with_a_cold_cache(
    proxy: &FaultProxy,
    program: &Path,
    repository: &str,
    faults: Value,
) -> (String, Vec<ProxyEntry>) {
    let repo = format!("{}/{repository}", proxy.host);
    let caches = tempfile::tempdir().unwrap();
    let run = |tag: &str, cache: &str| {
        let cache = caches.path().join(cache);
        printed_digest(&ok(&gantry_env(
            program,
            &[
                "build",
                "--sbom",
                "none",
                "--no-provenance",
                "--repo",
                &repo,
                "--platform",
                "linux/amd64",
                "--base",
                "scratch",
                "--tag",
                tag,
            ],
            &[("GANTRY_CACHE_DIR", cache.to_str().unwrap())],
        )))
    };
    let first = run("v1", "a");
    proxy.clear();
    proxy.inject(faults);
    let second = run("v2", "b");
    assert_eq!(first, second, "reproducible");
    (second, proxy.log())
}

/// A Go program of `mib` MiB or so, most of it bytes that do not compress (the same
/// ones every time), in a new directory.
fn big_program(mib: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("go.mod"),
        "module example.com/big\n\ngo 1.21\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("main.go"),
        "package main\n\nimport (\n\t_ \"embed\"\n\t\"fmt\"\n)\n\n//go:embed blob\nvar blob []byte\n\nfunc main() { fmt.Println(len(blob)) }\n",
    )
    .unwrap();
    // xorshift64: reproducible noise.
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut blob = Vec::with_capacity(mib << 20);
    while blob.len() < mib << 20 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        blob.extend_from_slice(&state.to_le_bytes());
    }
    std::fs::write(dir.path().join("blob"), blob).unwrap();
    dir
}

/// The requests of `log` to upload sessions, by method.
fn to_sessions<'a>(log: &'a [ProxyEntry], method: &str) -> Vec<&'a ProxyEntry> {
    log.iter()
        .filter(|e| e.method == method && e.path.contains("/blobs/uploads/"))
        .collect()
}

#[test]
fn a_layer_streamed_for_an_image_the_registry_has_ends_before_any_manifest_is_written() {
    let registry = TestRegistry::start();
    let proxy = FaultProxy::start_with_latency(&registry.host, "2ms");
    // The streamed layer's HEAD, once its digest is known, is answered late (once
    // 503, retried a second later): time enough for a manifest PUT that did not wait
    // to overtake the end of the upload.
    let (_, log) = rebuild_with_a_cold_cache(
        &proxy,
        &example("hello"),
        "again",
        json!([
            {"method": "HEAD", "path": "/blobs/sha256:", "action": "status", "status": 503,
             "retry_after": "1", "times": 1},
        ]),
    );
    assert!(
        to_sessions(&log, "PATCH").iter().any(|e| e.chunked),
        "the layer was not streamed: {log:#?}"
    );
    let late = log
        .iter()
        .position(|e| e.method == "HEAD" && e.fault == "status")
        .unwrap_or_else(|| panic!("no HEAD of the streamed layer: {log:#?}"));
    // The upload ends when the HEAD, asked again, finds the layer there.
    let stream_end = log[late + 1..]
        .iter()
        .find(|e| e.method == "HEAD" && e.path == log[late].path && e.status == 200)
        .unwrap_or_else(|| panic!("the streamed layer's HEAD was not asked again: {log:#?}"));
    // The registry has the layer: its session is cancelled, not finished.
    assert!(to_sessions(&log, "PUT").is_empty(), "{log:#?}");
    assert!(
        !to_sessions(&log[late..], "DELETE").is_empty(),
        "the streamed upload was not cancelled: {log:#?}"
    );
    let manifests: Vec<&ProxyEntry> = log
        .iter()
        .filter(|e| e.method == "PUT" && e.path.contains("/manifests/"))
        .collect();
    assert!(!manifests.is_empty(), "the tag was not written: {log:#?}");
    for m in manifests {
        assert!(
            stream_end.end_ms <= m.start_ms,
            "{m:?} began before the streamed upload ended ({stream_end:?})"
        );
    }
}

#[test]
fn on_a_slow_link_a_streamed_layer_the_registry_has_stops_once_its_digest_is_known() {
    let registry = TestRegistry::start();
    let proxy = FaultProxy::start(&registry.host);
    // A layer larger than the sockets' buffers hold, at 1 MiB a second: more than
    // half a minute to send whole.
    let program = big_program(32);
    let (digest, log) = rebuild_with_a_cold_cache(
        &proxy,
        program.path(),
        "slow",
        json!([
            {"method": "PATCH", "path": "/blobs/uploads/", "action": "throttle", "rate": 1 << 20, "times": 10},
        ]),
    );
    let manifest = json(&skopeo_ok(&[
        "inspect",
        "--raw",
        &format!("docker://{}/slow@{digest}", registry.host),
    ]));
    let layer = manifest["layers"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    let size = layer["size"].as_u64().unwrap();
    // The proxy logs the cut PATCH once it has read what the sockets still held.
    let mut log = log;
    let waiting = Instant::now();
    while to_sessions(&log, "PATCH").is_empty() && waiting.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(100));
        log = proxy.log();
    }
    let patches = to_sessions(&log, "PATCH");
    assert_eq!(patches.len(), 1, "{log:#?}");
    assert!(
        patches[0].chunked && patches[0].bytes_in < size / 2,
        "{} of {size} bytes were sent: {log:#?}",
        patches[0].bytes_in
    );
    assert!(
        log.iter().any(|e| e.method == "HEAD"
            && e.path.ends_with(layer["digest"].as_str().unwrap())
            && e.status == 200),
        "{log:#?}"
    );
    let session = patches[0].path.as_str();
    assert!(
        log.iter()
            .any(|e| e.method == "DELETE" && e.path == session),
        "the cut session was not cancelled: {log:#?}"
    );
    assert!(to_sessions(&log, "PUT").is_empty(), "{log:#?}");
    assert_eq!(
        registry.tag_digest("slow", "v2").as_deref(),
        Some(digest.as_str())
    );
}

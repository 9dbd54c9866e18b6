//! Keyless signing offline: a real Fulcio (ephemeral CA) trusting a local OIDC issuer
//! that serves GitHub-shaped tokens the way a runner does. The real cosign, v2 and
//! v3, judges the result by the workflow identity in the certificate.

mod common;

use std::io::{BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use common::*;
use serde_json::Value;

/// `cosign VERB` by certificate identity against the local CA. When the stack has
/// no Rekor, the signatures were made with --no-tlog-upload and the log is not
/// checked; with one, cosign checks every entry against the log's key. The
/// certificates have no SCT (there is no CT log).
fn cosign_keyless(
    version: &str,
    verb: &str,
    stack: &KeylessStack,
    identity: &str,
    extra: &[&str],
    image: &str,
) -> Output {
    let mut cmd = Command::new(tool(version));
    cmd.arg(verb)
        .arg("--trusted-root")
        .arg(&stack.trusted_root)
        .args(["--certificate-identity", identity])
        .args(["--certificate-oidc-issuer", &stack.issuer])
        .args(["--insecure-ignore-sct=true", "--allow-http-registry"]);
    if stack.rekor.is_none() {
        cmd.arg("--insecure-ignore-tlog=true");
    }
    // A Rekor v2 entry has no signing time of its own: cosign v3 turns to the RFC 3161
    // timestamps by itself, v2 is told to.
    if stack.signing_config.is_some() && version == "cosign-v2" {
        cmd.arg("--use-signed-timestamps=true");
    }
    cmd.args(extra).arg(image).output().unwrap()
}

/// The claim type cosign prints for a signature in a bundle referrer.
const BUNDLE_SIGNATURE: &str = "https://sigstore.dev/cosign/sign/v1";
/// The claim type cosign prints for a classic `.sig` signature.
const CLASSIC_SIGNATURE: &str = "cosign container image signature";

/// Runs cosign `verb` by the workflow identity and asserts it succeeded. For
/// `verify` it also asserts that a signature of the image's own digest is among the
/// claims cosign printed: cosign v3's `verify` passes on any bundle the signer made,
/// attestations included, so its exit status alone does not show a signature.
fn assert_verifies(version: &str, verb: &str, stack: &KeylessStack, extra: &[&str], image: &str) {
    let out = cosign_keyless(version, verb, stack, KeylessStack::IDENTITY, extra, image);
    assert!(
        out.status.success(),
        "{version} {verb} {extra:?} {image} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    if verb == "verify" {
        let digest = image.rsplit_once('@').expect("an image by digest").1;
        let types = verified_types(&out.stdout, digest);
        assert!(
            types
                .iter()
                .any(|t| t == BUNDLE_SIGNATURE || t == CLASSIC_SIGNATURE),
            "{version} verify {image} passed without a signature among {types:?}"
        );
    }
}

/// The `critical.type` of each claim `cosign verify` printed about `digest`.
fn verified_types(stdout: &[u8], digest: &str) -> Vec<String> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter(|l| l.trim_start().starts_with('['))
        .flat_map(|l| json(l.as_bytes()).as_array().cloned().unwrap_or_default())
        .filter(|c| c["critical"]["image"]["docker-manifest-digest"] == digest)
        .map(|c| c["critical"]["type"].as_str().unwrap_or("").to_string())
        .collect()
}

fn env<'a>(pairs: &'a [(&'static str, String)]) -> Vec<(&'a str, &'a str)> {
    pairs.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// Fulcio's endpoint for certificates, and Rekor's for new entries.
const SIGNING_CERT: &str = "/api/v2/signingCert";
const LOG_ENTRIES: &str = "/api/v1/log/entries";

/// One request a [`CountingService`] received, and what became of it.
#[derive(Debug, Clone)]
struct Arrival {
    method: String,
    /// Without the query.
    path: String,
    body: Vec<u8>,
    /// The status it was answered with, by the stand-in or by the real service.
    status: u16,
    forwarded: bool,
}

/// A stand-in for Fulcio or Rekor that counts what it is sent. The n-th arrival
/// (from 0) of one request (the same method, path and body: what a retry sends) is
/// answered with the status `answer(n)` gives, or forwarded to the real service when
/// it gives None. One request per connection, and every answer says so.
struct CountingService {
    url: String,
    seen: Arc<Mutex<Vec<Arrival>>>,
}

impl CountingService {
    /// In front of `upstream` (`http://host:port`).
    fn start(upstream: &str, answer: fn(usize) -> Option<u16>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let upstream = upstream.trim_start_matches("http://").to_string();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (log, upstream) = (log.clone(), upstream.clone());
                std::thread::spawn(move || serve_counted(stream, &upstream, answer, &log));
            }
        });
        CountingService { url, seen }
    }

    /// The requests to `path`, in the order they came.
    fn arrivals(&self, path: &str) -> Vec<Arrival> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|a| a.path == path)
            .cloned()
            .collect()
    }

    /// For each distinct request to `path` (by body), the statuses of its tries, in
    /// order: one entry per log entry or certificate asked for.
    fn tries(&self, path: &str) -> Vec<Vec<u16>> {
        let mut distinct: Vec<(Vec<u8>, Vec<u16>)> = Vec::new();
        for a in self.arrivals(path) {
            match distinct.iter_mut().find(|(body, _)| *body == a.body) {
                Some((_, statuses)) => statuses.push(a.status),
                None => distinct.push((a.body, vec![a.status])),
            }
        }
        distinct.into_iter().map(|(_, s)| s).collect()
    }
}

fn serve_counted(
    mut client: TcpStream,
    upstream: &str,
    answer: fn(usize) -> Option<u16>,
    log: &Mutex<Vec<Arrival>>,
) {
    let mut reader = BufReader::new(client.try_clone().unwrap());
    let Some(Recorded {
        method,
        target,
        headers,
        body,
    }) = read_request(&mut reader)
    else {
        return;
    };
    let path = target.split('?').next().unwrap_or_default().to_string();
    // Counted and decided under one lock: concurrent tries see each other.
    let (index, decided) = {
        let mut log = log.lock().unwrap();
        let n = log
            .iter()
            .filter(|a| a.method == method && a.path == path && a.body == body)
            .count();
        let decided = answer(n);
        log.push(Arrival {
            method: method.clone(),
            path,
            body: body.clone(),
            status: decided.unwrap_or(0),
            forwarded: decided.is_none(),
        });
        (log.len() - 1, decided)
    };
    let response = match decided {
        Some(status) => {
            let reply = format!(
                r#"{{"code":{status},"message":"the counting stand-in answers {status}"}}"#
            );
            format!(
                "HTTP/1.1 {status} Stand-in\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
                reply.len()
            )
            .into_bytes()
        }
        None => {
            let mut head = format!("{method} {target} HTTP/1.1\r\n");
            for (k, v) in headers.iter().filter(|(k, _)| k != "connection") {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
            head.push_str("connection: close\r\n\r\n");
            let mut response = Vec::new();
            let forwarded = TcpStream::connect(upstream).and_then(|mut server| {
                server.write_all(head.as_bytes())?;
                server.write_all(&body)?;
                server.read_to_end(&mut response)
            });
            if forwarded.is_err() {
                return;
            }
            let status = String::from_utf8_lossy(&response)
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            log.lock().unwrap()[index].status = status;
            response
        }
    };
    let _ = client.write_all(&response);
}

/// An identity token from the local issuer, fetched the way a runner's job would
/// (`GET /token?audience=sigstore` with the request token), for SIGSTORE_ID_TOKEN.
fn id_token(stack: &KeylessStack) -> String {
    let host = stack.issuer.trim_start_matches("http://");
    let mut s = TcpStream::connect(host).expect("the issuer answers");
    write!(
        s,
        "GET /token?audience=sigstore HTTP/1.0\r\nHost: {host}\r\nAuthorization: bearer {}\r\n\r\n",
        KeylessStack::REQUEST_TOKEN
    )
    .unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    let (_, body) = response.split_once("\r\n\r\n").expect("an HTTP answer");
    json(body.as_bytes())["value"]
        .as_str()
        .unwrap_or_else(|| panic!("no token in {response}"))
        .to_string()
}

/// A keyless build run as an Actions step, and the files it wrote.
struct ActionsRun {
    out: Output,
    work: tempfile::TempDir,
}

impl ActionsRun {
    fn report(&self) -> Value {
        serde_json::from_slice(&std::fs::read(self.work.path().join("r.json")).unwrap()).unwrap()
    }

    fn file(&self, name: &str) -> String {
        std::fs::read_to_string(self.work.path().join(name)).unwrap()
    }
}

/// with-deps for linux/amd64 and wasi/wasm, signed keyless as an Actions step: into
/// the stack's Rekor when it has one, else with --no-tlog-upload.
fn keyless_build_in_actions(stack: &KeylessStack, repo: &str) -> ActionsRun {
    let work = tempfile::tempdir().unwrap();
    let report = work.path().join("r.json");
    let mut vars = stack.actions_env();
    vars.push(("GITHUB_ACTIONS", "true".into()));
    vars.push((
        "GITHUB_OUTPUT",
        work.path().join("output").display().to_string(),
    ));
    vars.push((
        "GITHUB_STEP_SUMMARY",
        work.path().join("summary").display().to_string(),
    ));
    // The repository the issuer's tokens name (the summary's `gh` command uses it).
    vars.push(("GITHUB_REPOSITORY", "octo-org/octo-repo".into()));
    let mut args = vec![
        "build",
        "--repo",
        repo,
        "--platform",
        "linux/amd64,wasi/wasm",
        "--base",
        "scratch",
        "--sign",
        "keyless",
        "--fulcio-url",
        &stack.fulcio,
        "--json",
        report.to_str().unwrap(),
    ];
    match (&stack.signing_config, &stack.rekor) {
        (Some(config), _) => args.extend(["--signing-config", config.to_str().unwrap()]),
        (None, Some(rekor)) => args.extend(["--rekor-url", rekor]),
        (None, None) => args.push("--no-tlog-upload"),
    }
    let out = gantry_env(&example("with-deps"), &args, &env(&vars));
    ActionsRun { out, work }
}

/// The manifest digest of one platform's image in a `--json` report.
fn platform_digest(report: &Value, platform: &str) -> String {
    report["images"][0]["platforms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["platform"] == platform)
        .unwrap_or_else(|| panic!("no {platform} image"))["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

/// `reference` and its classic `.sig` copied to `name` in `registry`, where no bundle
/// sits beside them; returns the new repository.
fn classic_copy(registry: &TestRegistry, repo: &str, reference: &str, name: &str) -> String {
    let classic = format!("{}/{name}", registry.host);
    skopeo_ok(&[
        "copy",
        "--all",
        "--preserve-digests",
        &format!("docker://{reference}"),
        &format!("docker://{classic}:latest"),
    ]);
    let digest = reference.rsplit_once('@').unwrap().1;
    let sig_tag = format!("{}.sig", digest.replacen(':', "-", 1));
    skopeo_ok(&[
        "copy",
        "--preserve-digests",
        &format!("docker://{repo}:{sig_tag}"),
        &format!("docker://{classic}:{sig_tag}"),
    ]);
    classic
}

/// Attaches the Sigstore bundle in `file` to `image` as its referrer, with oras.
fn attach_bundle(image: &str, file: &std::path::Path) {
    let media_type = "application/vnd.dev.sigstore.bundle.v0.3+json";
    oras_ok(&[
        "attach",
        "--disable-path-validation",
        "--artifact-type",
        media_type,
        image,
        &format!("{}:{media_type}", file.display()),
    ]);
}

/// cosign v3 and v2 accept the signatures of the index and the wasm image; cosign
/// v3 their SBOMs (SPDX, CycloneDX) and the index's provenance.
fn cosign_accepts_the_build(stack: &KeylessStack, repo: &str, report: &Value) {
    let reference = report["images"][0]["reference"].as_str().unwrap();
    let wasm_ref = format!("{repo}@{}", platform_digest(report, "wasi/wasm"));
    for version in ["cosign-v3", "cosign-v2"] {
        assert_verifies(version, "verify", stack, &[], reference);
        assert_verifies(version, "verify", stack, &[], &wasm_ref);
    }
    for kind in ["spdxjson", "cyclonedx"] {
        assert_verifies(
            "cosign-v3",
            "verify-attestation",
            stack,
            &["--type", kind],
            &wasm_ref,
        );
    }
    assert_verifies(
        "cosign-v3",
        "verify-attestation",
        stack,
        &["--type", "slsaprovenance1"],
        reference,
    );
}

#[test]
fn keyless_signatures_and_attestations_verify_by_workflow_identity() {
    let stack = KeylessStack::start();
    let registry = TestRegistry::start();
    let repo = format!("{}/keyless", registry.host);
    let run = keyless_build_in_actions(&stack, &repo);
    let out = &run.out;
    let reference = ok(out).trim().to_string();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.lines().any(|l| l.starts_with("::add-mask::ey")),
        "the OIDC token was not masked:\n{stderr}"
    );
    // Only the mask commands may name them (that is how the runner learns what to hide).
    let unmasked: String = stderr
        .lines()
        .filter(|l| !l.starts_with("::add-mask::"))
        .collect();
    for text in [unmasked, run.file("output"), run.file("summary")] {
        assert!(
            !text.contains(KeylessStack::REQUEST_TOKEN),
            "the request token leaked"
        );
        assert!(!text.contains("eyJ"), "a JWT leaked");
    }

    let report = run.report();
    assert_eq!(report["signer"]["method"], "keyless");
    assert_eq!(
        report["signer"]["certificate_identity"],
        KeylessStack::IDENTITY
    );
    assert_eq!(
        report["signer"]["certificate_oidc_issuer"],
        stack.issuer.as_str()
    );
    // The summary tells how to verify it, with this identity.
    let summary = run.file("summary");
    assert!(
        summary.contains(&format!(
            "cosign verify --certificate-identity '{}' --certificate-oidc-issuer '{}' --insecure-ignore-tlog=true",
            KeylessStack::IDENTITY,
            stack.issuer
        )),
        "{summary}"
    );
    cosign_accepts_the_build(&stack, &repo, &report);

    // Someone else's identity does not verify, and cosign says it is the identity:
    // the one it found is ours.
    let evil = "https://github.com/evil/fork/.github/workflows/x.yml@refs/heads/main";
    let out = cosign_keyless("cosign-v3", "verify", &stack, evil, &[], &reference);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && said.contains(&format!(
                "expected SAN value \"{evil}\", got \"{}\"",
                KeylessStack::IDENTITY
            )),
        "another identity verified the signature, or cosign failed for another reason:\n{said}"
    );

    // gantry verify makes the same checks: identity, issuer, and a chain to the CA.
    let by_identity = |identity: &str, root: &std::path::Path| {
        gantry(
            &example("hello"),
            &[
                "verify",
                &reference,
                "--certificate-identity",
                identity,
                "--certificate-oidc-issuer",
                &stack.issuer,
                "--trusted-root",
                root.to_str().unwrap(),
                // Signed with --no-tlog-upload, by a Fulcio with no CT log.
                "--insecure-ignore-tlog",
                "--insecure-ignore-sct",
            ],
        )
    };
    let found: Value = serde_json::from_str(&ok(&by_identity(
        KeylessStack::IDENTITY,
        &stack.trusted_root,
    )))
    .unwrap();
    let found = found.as_array().unwrap();
    assert!(found.len() >= 5, "{found:?}");
    // Nothing witnessed these bundles (no log, no timestamp): without
    // --insecure-ignore-sct too, their certificates' SCT cannot be checked, and that
    // is said.
    let stderr = fails(&gantry(
        &example("hello"),
        &[
            "verify",
            &reference,
            "--certificate-identity",
            KeylessStack::IDENTITY,
            "--certificate-oidc-issuer",
            &stack.issuer,
            "--trusted-root",
            stack.trusted_root.to_str().unwrap(),
            "--insecure-ignore-tlog",
        ],
    ));
    assert!(
        stderr.contains("SCT cannot be checked") && stderr.contains("--insecure-ignore-sct"),
        "{stderr}"
    );
    // The bundles are checked against the trusted root; the classic .sig, whose
    // evidence is cosign's format, is named as not checked.
    assert!(
        found
            .iter()
            .all(|f| f["certificate_identity"] == KeylessStack::IDENTITY
                && if f["storage"] == "sig-tag" {
                    f["verified"] == false && f["reason"].as_str().unwrap().contains("classic .sig")
                } else {
                    f["verified"] == true && f["witnessed"].is_object()
                }),
        "{found:?}"
    );
    let out = ok(&gantry(
        &example("hello"),
        &[
            "verify",
            &reference,
            "--certificate-identity-regexp",
            "^https://github.com/octo-org/",
            "--certificate-oidc-issuer",
            &stack.issuer,
            "--fulcio-url",
            &stack.fulcio,
        ],
    ));
    assert!(out.contains("\"verified\": true"));
    // gantry names what it found and why it fails: signatures by our identity, not
    // by the one asked for.
    let stderr = fails(&by_identity(evil, &stack.trusted_root));
    let mismatch = format!(
        "the certificate names {}, not {evil}",
        KeylessStack::IDENTITY
    );
    assert!(
        stderr.contains(&format!(
            "is signed, but no signature verifies with this identity and issuer: {mismatch}\n"
        )) && stderr.contains(&format!(
            "signed by {}): NOT verified: {mismatch}\n",
            KeylessStack::IDENTITY
        )) && !stderr.contains("does not chain"),
        "{stderr}"
    );
    // The right identity from a CA that is not trusted: another Fulcio's. cosign
    // names the chain.
    let other = KeylessStack::start();
    let out = Command::new(tool("cosign-v3"))
        .arg("verify")
        .arg("--trusted-root")
        .arg(&other.trusted_root)
        .args(["--certificate-identity", KeylessStack::IDENTITY])
        .args(["--certificate-oidc-issuer", &stack.issuer])
        .args(["--insecure-ignore-sct=true", "--allow-http-registry"])
        .arg("--insecure-ignore-tlog=true")
        .arg(&reference)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && said.contains(
                "failed to verify leaf certificate: leaf certificate verification failed"
            ),
        "cosign accepted a certificate from an untrusted CA, or failed for another reason:\n{said}"
    );
    // So does gantry, for each entry and in its summary, and not as a wrong identity.
    let stderr = fails(&by_identity(KeylessStack::IDENTITY, &other.trusted_root));
    let untrusted = "the certificate does not chain to a trusted Fulcio CA (";
    assert!(
        stderr.contains(&format!(
            "is signed, but no signature verifies with this identity and issuer: {untrusted}"
        )) && stderr.contains(&format!(
            "signed by {}): NOT verified: {untrusted}",
            KeylessStack::IDENTITY
        )) && !stderr.contains("the certificate names"),
        "{stderr}"
    );

    // The classic signature carries the certificate and its chain, as cosign writes them.
    let digest = reference.rsplit_once('@').unwrap().1;
    let sig = skopeo_ok(&[
        "inspect",
        "--raw",
        &format!("docker://{repo}:{}.sig", digest.replacen(':', "-", 1)),
    ]);
    let sig: Value = serde_json::from_slice(&sig).unwrap();
    let annotations = &sig["layers"][0]["annotations"];
    assert!(annotations["dev.sigstore.cosign/certificate"]
        .as_str()
        .unwrap()
        .contains("BEGIN CERTIFICATE"));
    assert!(annotations["dev.sigstore.cosign/chain"]
        .as_str()
        .unwrap()
        .contains("BEGIN CERTIFICATE"));
    assert!(
        annotations.get("dev.sigstore.cosign/bundle").is_none(),
        "a Rekor bundle without --tlog"
    );
}

#[test]
fn keyless_without_an_oidc_token_fails_before_building() {
    let registry = TestRegistry::start();
    let repo = format!("{}/no-oidc", registry.host);
    let out = gantry(
        &example("hello"),
        &[
            "build",
            "--repo",
            &repo,
            "--platform",
            "linux/amd64",
            "--base",
            "scratch",
            "--sign",
            "keyless",
        ],
    );
    let stderr = fails(&out);
    assert!(stderr.contains("permissions: id-token: write"), "{stderr}");
    assert!(
        !stderr.contains("building"),
        "it built before failing:\n{stderr}"
    );
    assert_eq!(
        registry.tag_digest("no-oidc", "latest"),
        None,
        "something was pushed"
    );
}

#[test]
fn fulcio_down_leaves_the_images_and_gantry_sign_finishes_the_job() {
    let stack = KeylessStack::start();
    let registry = TestRegistry::start();
    let repo = format!("{}/fulcio-down", registry.host);
    // A Fulcio that is down: every try answered 503.
    let down = CountingService::start(&stack.fulcio, |_| Some(503));
    let vars = stack.actions_env();
    let out = gantry_env(
        &example("with-deps"),
        &[
            "build",
            "--repo",
            &repo,
            "--platform",
            "linux/amd64,wasi/wasm",
            "--base",
            "scratch",
            "--sign",
            "keyless",
            "--fulcio-url",
            &down.url,
            "--no-tlog-upload",
        ],
        &env(&vars),
    );
    let stderr = fails(&out);
    // Three tries in all (sign/service.rs's policy for Sigstore's services), counted
    // by the service, not read from the message.
    assert_eq!(
        down.tries(SIGNING_CERT),
        vec![vec![503, 503, 503]],
        "one certificate asked for, three times"
    );
    assert_eq!(down.arrivals(SIGNING_CERT).len(), 3);
    assert!(
        stderr.contains("Fulcio")
            && stderr.contains("answered 503")
            && stderr.contains("after 3 attempts"),
        "the error does not name the service, its answer and the tries:\n{stderr}"
    );
    assert!(
        stderr.contains("gantry sign REF"),
        "no way forward given:\n{stderr}"
    );
    assert!(
        registry.tag_digest("fulcio-down", "latest").is_none(),
        "a tag moved although signing failed"
    );
    // The error names what was pushed, by digest.
    let reference = pushed_reference(&stderr, &repo);
    assert!(
        skopeo(&["inspect", "--raw", &format!("docker://{reference}")])
            .status
            .success(),
        "the image should stay pushed"
    );
    let out = cosign_keyless(
        "cosign-v3",
        "verify",
        &stack,
        KeylessStack::IDENTITY,
        &[],
        &reference,
    );
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && said.contains("no signatures found"),
        "verified before anything was signed, or failed for another reason:\n{said}"
    );

    // The rerun signs and attests what is there, without rebuilding: the SBOMs come
    // from the build info of the binaries in the layers. Fulcio is back, but its
    // first two answers are still 503: the third try gets the certificate.
    let recovering = CountingService::start(&stack.fulcio, |n| (n < 2).then_some(503));
    let out = gantry_env(
        &example("with-deps"),
        &[
            "sign",
            &reference,
            "--sign",
            "keyless",
            "--fulcio-url",
            &recovering.url,
            "--no-tlog-upload",
        ],
        &env(&vars),
    );
    assert_eq!(ok(&out).trim(), reference);
    assert_eq!(
        recovering.tries(SIGNING_CERT),
        vec![vec![503, 503, 200]],
        "503 twice, then Fulcio's certificate on the third try"
    );
    assert_verifies("cosign-v3", "verify", &stack, &[], &reference);
    assert_verifies(
        "cosign-v3",
        "verify-attestation",
        &stack,
        &["--type", "slsaprovenance1"],
        &reference,
    );
    let index: Value = serde_json::from_slice(&skopeo_ok(&[
        "inspect",
        "--raw",
        &format!("docker://{reference}"),
    ]))
    .unwrap();
    for image in index["manifests"].as_array().unwrap() {
        let image_ref = format!("{repo}@{}", image["digest"].as_str().unwrap());
        let out = cosign_keyless(
            "cosign-v3",
            "verify-attestation",
            &stack,
            KeylessStack::IDENTITY,
            &["--type", "spdxjson"],
            &image_ref,
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let sbom = attested_predicate(&out.stdout);
        for dep in [
            "pkg:golang/golang.org/x/text@v0.21.0",
            "pkg:golang/github.com/google/uuid@v1.6.0",
        ] {
            assert!(sbom.contains(dep), "{} SBOM lacks {dep}", image["platform"]);
        }
    }
}

/// The predicate of the first attestation `cosign verify-attestation` printed.
fn attested_predicate(stdout: &[u8]) -> String {
    use base64::Engine as _;
    let line = String::from_utf8_lossy(stdout);
    let envelope: Value = serde_json::from_str(line.lines().next().unwrap_or_default()).unwrap();
    let payload = base64::engine::general_purpose::STANDARD
        .decode(envelope["payload"].as_str().unwrap())
        .unwrap();
    let statement: Value = serde_json::from_slice(&payload).unwrap();
    statement["predicate"].to_string()
}

#[test]
fn a_refused_token_and_a_rekor_that_is_down_fail_clearly() {
    let stack = KeylessStack::start_with_rekor();
    let registry = TestRegistry::start();
    let repo = format!("{}/refused", registry.host);
    let base = [
        "build",
        "--repo",
        &repo,
        "--platform",
        "linux/amd64",
        "--base",
        "scratch",
        "--sign",
        "keyless",
        "--fulcio-url",
        &stack.fulcio,
    ];

    let wrong_token = "not-the-request-token-1234";
    let mut vars = stack.actions_env();
    vars[1].1 = wrong_token.into();
    let mut args = base.to_vec();
    args.push("--no-tlog-upload");
    let stderr = fails(&gantry_env(&example("hello"), &args, &env(&vars)));
    assert!(
        stderr.contains("OIDC token endpoint") && stderr.contains("401"),
        "{stderr}"
    );
    assert!(stderr.contains("id-token: write"), "{stderr}");
    assert!(
        !stderr.contains(wrong_token),
        "the request token leaked:\n{stderr}"
    );

    // A Rekor that is down: every try answered 503.
    let down = CountingService::start(stack.rekor.as_ref().unwrap(), |_| Some(503));
    let mut args = base.to_vec();
    args.extend(["--rekor-url", &down.url]);
    let stderr = fails(&gantry_env(
        &example("hello"),
        &args,
        &env(&stack.actions_env()),
    ));
    // The entries are sent side by side and the first to run out of tries ends the
    // run: none is tried more than three times, and that one exactly three times.
    let tries = down.tries(LOG_ENTRIES);
    assert!(
        tries
            .iter()
            .all(|t| t.len() <= 3 && t.iter().all(|s| *s == 503))
            && tries.iter().any(|t| t.len() == 3),
        "tries per log entry: {tries:?}"
    );
    assert!(
        stderr.contains("Rekor")
            && stderr.contains("answered 503")
            && stderr.contains("after 3 attempts"),
        "{stderr}"
    );
    assert!(
        stderr.contains("--no-tlog-upload") || stderr.contains("gantry sign REF"),
        "{stderr}"
    );
}

#[test]
fn a_refusal_is_sent_once_and_a_service_back_by_the_third_try_is_enough() {
    let stack = KeylessStack::start_with_rekor();
    let rekor = stack.rekor.clone().unwrap();
    let registry = TestRegistry::start();
    let repo = format!("{}/tries", registry.host);
    let build = |fulcio: &str, rekor: &str| {
        gantry_env(
            &example("hello"),
            &[
                "build",
                "--repo",
                &repo,
                "--platform",
                "linux/amd64",
                "--base",
                "scratch",
                "--sign",
                "keyless",
                "--fulcio-url",
                fulcio,
                "--rekor-url",
                rekor,
            ],
            &env(&stack.actions_env()),
        )
    };

    // Fulcio refuses (400): asked once, and the error says what it answered.
    let refusing = CountingService::start(&stack.fulcio, |_| Some(400));
    let stderr = fails(&build(&refusing.url, &rekor));
    assert_eq!(refusing.tries(SIGNING_CERT), vec![vec![400]], "{stderr}");
    assert!(
        stderr.contains("Fulcio") && stderr.contains("answered 400"),
        "{stderr}"
    );
    assert!(!stderr.contains("attempts"), "{stderr}");

    // Rekor refuses (400): each entry sent once.
    let refusing = CountingService::start(&rekor, |_| Some(400));
    let stderr = fails(&build(&stack.fulcio, &refusing.url));
    let tries = refusing.tries(LOG_ENTRIES);
    assert!(
        !tries.is_empty() && tries.iter().all(|t| *t == [400]),
        "tries per log entry: {tries:?}"
    );
    assert!(
        stderr.contains("Rekor") && stderr.contains("answered 400"),
        "{stderr}"
    );

    // Rekor answers 503 twice to each entry, then takes it: the run succeeds with
    // every entry tried exactly three times. One image (a single platform, so no
    // index): its signature is entered twice (the classic .sig's hashedrekord and the
    // bundle's dsse), and each of its 3 attestations (SPDX, CycloneDX, provenance) once.
    let recovering = CountingService::start(&rekor, |n| (n < 2).then_some(503));
    let reference = ok(&build(&stack.fulcio, &recovering.url))
        .trim()
        .to_string();
    let expected_entries = 2 + 3;
    assert_eq!(
        recovering.tries(LOG_ENTRIES),
        vec![vec![503, 503, 201]; expected_entries],
        "tries per log entry"
    );
    assert!(recovering
        .arrivals(LOG_ENTRIES)
        .iter()
        .all(|a| a.method == "POST" && a.forwarded == (a.status == 201)));
    // The entries are in the real log: cosign checks them against its key.
    assert_verifies("cosign-v3", "verify", &stack, &[], &reference);
    assert_verifies(
        "cosign-v3",
        "verify-attestation",
        &stack,
        &["--type", "slsaprovenance1"],
        &reference,
    );
}

#[test]
fn keyless_signatures_are_entered_in_rekor_and_cosign_checks_the_log() {
    let stack = KeylessStack::start_with_rekor();
    let rekor = stack.rekor.clone().unwrap();
    let registry = TestRegistry::start();
    let repo = format!("{}/logged", registry.host);
    let run = keyless_build_in_actions(&stack, &repo);
    let out = &run.out;
    let reference = ok(out).trim().to_string();
    let digest = reference.rsplit_once('@').unwrap().1.to_string();

    // Every signature and attestation has its log entry.
    let report = run.report();
    let attachments = report["images"][0]["attachments"].as_array().unwrap();
    assert!(
        attachments.iter().all(|a| a["rekor_log_index"].is_u64()),
        "{attachments:?}"
    );
    assert_eq!(report["signer"]["rekor_url"], rekor.as_str());
    let outputs = run.file("output");
    let index_line = outputs
        .lines()
        .skip_while(|l| !l.starts_with("rekor-log-index<<"))
        .nth(1)
        .unwrap();
    assert!(
        index_line.parse::<u64>().is_ok(),
        "rekor-log-index output: {index_line:?}"
    );
    let summary = run.file("summary");
    assert!(!summary.contains("insecure-ignore-tlog"), "{summary}");

    // cosign v3 and v2 check the entries against the log's key (no --insecure-ignore-tlog).
    cosign_accepts_the_build(&stack, &repo, &report);

    // The classic signature alone, as cosign v2 reads it without bundles: the
    // certificate, chain and Rekor bundle annotations (the SET, checked offline).
    let classic = classic_copy(&registry, &repo, &reference, "classic");
    let out = Command::new(tool("cosign-v2"))
        .args(["verify", "--certificate-identity", KeylessStack::IDENTITY])
        .args([
            "--certificate-oidc-issuer",
            &stack.issuer,
            "--insecure-ignore-sct=true",
        ])
        .args(["--rekor-url", &rekor, "--allow-http-registry"])
        .arg(format!("{classic}@{digest}"))
        .env("SIGSTORE_ROOT_FILE", stack.fulcio_root_pem())
        .env("SIGSTORE_REKOR_PUBLIC_KEY", stack.rekor_public_key())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cosign v2 (classic .sig with Rekor bundle) failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("transparency log was verified"));

    // GitHub's verifier: `gh attestation verify` finds the provenance through the
    // registry (the fallback tag: docker-registry has no referrers API) and checks
    // certificate, identity, owner or repository, and log. Offline it is given the
    // bundle's place (the registry, not GitHub's API), the local issuer and the local
    // trust root; nothing else is added to the command the summary names.
    let gh_config = tempfile::tempdir().unwrap();
    let gh = |args: &[&str]| {
        Command::new(tool("gh"))
            .args(args)
            .arg("--bundle-from-oci")
            .args(["--cert-oidc-issuer", &stack.issuer, "--format", "json"])
            .arg("--custom-trusted-root")
            .arg(&stack.trusted_root)
            .env("GH_TOKEN", "unused-offline")
            .env("GH_CONFIG_DIR", gh_config.path())
            .output()
            .unwrap()
    };
    let provenance_verified = |out: &Output, what: &str| {
        assert!(
            out.status.success(),
            "{what}:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let results: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            results[0]["verificationResult"]["statement"]["predicateType"],
            "https://slsa.dev/provenance/v1",
            "{what}"
        );
    };
    let named: Vec<&str> = summary.lines().filter(|l| l.starts_with("gh ")).collect();
    let expected = format!("gh attestation verify oci://{reference} --repo octo-org/octo-repo");
    assert_eq!(named, [expected.as_str()], "{summary}");
    let command: Vec<&str> = expected.split_whitespace().skip(1).collect();
    provenance_verified(&gh(&command), &expected);
    let wasm = platform_digest(&report, "wasi/wasm");
    for subject in [reference.clone(), format!("{repo}@{wasm}")] {
        let subject = format!("oci://{subject}");
        let out = gh(&["attestation", "verify", &subject, "--owner", "octo-org"]);
        provenance_verified(&out, &subject);
    }
    // Another owner, another repository: refused. gh (2.83) drops the verifier's
    // reason and says only that verifying with the certificate's issuer failed; the
    // commands above, identical but for the owner or repository, pass, so that flag
    // is what failed it. The message shows gh found the bundle and checked it (not,
    // say, that it found nothing to check or could not reach anything).
    let oci = format!("oci://{reference}");
    for (flag, value) in [
        ("--owner", "someone-else"),
        ("--repo", "octo-org/other-repo"),
    ] {
        let out = gh(&["attestation", "verify", &oci, flag, value]);
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && said.contains("verifying with issuer \"sigstore\""),
            "gh accepted {flag} {value}, or failed for another reason:\n{said}"
        );
    }

    // gantry verify sees the entries too.
    let found: Value = serde_json::from_str(&ok(&gantry(
        &example("hello"),
        &[
            "verify",
            &reference,
            "--certificate-identity",
            KeylessStack::IDENTITY,
            "--certificate-oidc-issuer",
            &stack.issuer,
            "--trusted-root",
            stack.trusted_root.to_str().unwrap(),
            "--insecure-ignore-sct",
        ],
    )))
    .unwrap();
    // Every bundle's inclusion proof and signed entry timestamp hold against the log's
    // key in the trusted root.
    assert!(
        found
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["tlog_entry"] == true
                && (f["storage"] == "sig-tag"
                    || (f["witnessed"]["tlog"] == true && f["witnessed"]["timestamps"] == 1))),
        "{found}"
    );
}

/// Rekor v2 and a timestamp authority, named by a signing config: each bundle holds a
/// `hashedrekord` 0.0.2 entry with its inclusion proof and checkpoint, and an RFC 3161
/// timestamp; cosign v3 checks both against the trusted root. The classic `.sig`
/// carries the timestamp in cosign's annotation, which cosign v2 checks against the
/// authority's chain.
#[test]
fn keyless_signatures_in_rekor_v2_carry_timestamps_that_cosign_checks() {
    let stack = KeylessStack::start_with_rekor_v2();
    let registry = TestRegistry::start();
    let repo = format!("{}/logged-v2", registry.host);
    let run = keyless_build_in_actions(&stack, &repo);
    let reference = ok(&run.out).trim().to_string();
    let digest = reference.rsplit_once('@').unwrap().1.to_string();
    let report = run.report();
    assert_eq!(
        report["signer"]["rekor_url"],
        stack.rekor.as_deref().unwrap()
    );
    assert!(
        report["signer"]["timestamp_authority"]
            .as_str()
            .is_some_and(|u| u.ends_with("/api/v1/timestamp")),
        "{report}"
    );
    // Every bundle is in the log; the classic .sig layers are not (a v2 entry does
    // not fit cosign's annotations).
    for a in report["images"][0]["attachments"].as_array().unwrap() {
        let logged = a["rekor_log_index"].is_u64();
        assert_eq!(logged, a["storage"] == "referrer", "{a}");
    }

    cosign_accepts_the_build(&stack, &repo, &report);

    // GitHub's verifier takes the Rekor v2 entry and the timestamp too.
    let gh_config = tempfile::tempdir().unwrap();
    let out = Command::new(tool("gh"))
        .args(["attestation", "verify", &format!("oci://{reference}")])
        .args(["--owner", "octo-org", "--bundle-from-oci"])
        .args(["--cert-oidc-issuer", &stack.issuer, "--format", "json"])
        .arg("--custom-trusted-root")
        .arg(&stack.trusted_root)
        .env("GH_TOKEN", "unused-offline")
        .env("GH_CONFIG_DIR", gh_config.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "gh attestation verify (Rekor v2):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        json(&out.stdout)[0]["verificationResult"]["statement"]["predicateType"],
        "https://slsa.dev/provenance/v1"
    );

    // The bundles themselves: a v2 entry with no signed entry timestamp, a checkpoint,
    // and a timestamp.
    let stored = |path: String| {
        let (status, body) = registry.get(&path).unwrap();
        assert_eq!(status, 200, "{path}");
        json(&body)
    };
    let referrer = report["images"][0]["attachments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["storage"] == "referrer" && a["subject"] == digest.as_str())
        .expect("a bundle referrer")["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let manifest = json(&skopeo_ok(&[
        "inspect",
        "--raw",
        &format!("docker://{repo}@{referrer}"),
    ]));
    let layer = manifest["layers"][0]["digest"].as_str().unwrap();
    let bundle = stored(format!("/v2/logged-v2/blobs/{layer}"));
    let entry = &bundle["verificationMaterial"]["tlogEntries"][0];
    assert_eq!(entry["kindVersion"]["kind"], "hashedrekord", "{bundle}");
    assert_eq!(entry["kindVersion"]["version"], "0.0.2", "{bundle}");
    assert!(entry["inclusionPromise"].is_null(), "{bundle}");
    assert!(
        entry["inclusionProof"]["checkpoint"]["envelope"]
            .as_str()
            .is_some_and(|c| c.starts_with("127.0.0.1\n")),
        "{bundle}"
    );
    assert!(
        bundle["verificationMaterial"]["timestampVerificationData"]["rfc3161Timestamps"][0]
            ["signedTimestamp"]
            .is_string(),
        "{bundle}"
    );

    // gantry verify checks the same evidence against the trusted root: each bundle's
    // inclusion proof against the log's signed checkpoint, and its timestamp against
    // the authority's chain. (The certificates have no SCT: there is no CT log.)
    let verify = |reference: &str, root: &std::path::Path, extra: &[&str]| {
        let mut args = vec![
            "verify",
            reference,
            "--certificate-identity",
            KeylessStack::IDENTITY,
            "--certificate-oidc-issuer",
            &stack.issuer,
            "--trusted-root",
            root.to_str().unwrap(),
        ];
        args.extend(extra);
        gantry(&example("hello"), &args)
    };
    let found = json(
        ok(&verify(
            &reference,
            &stack.trusted_root,
            &["--insecure-ignore-sct"],
        ))
        .as_bytes(),
    );
    let bundles: Vec<&Value> = found
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["storage"] == "referrer")
        .collect();
    assert!(bundles.len() >= 3, "{found}");
    assert!(
        bundles.iter().all(|f| f["verified"] == true
            && f["witnessed"]["tlog"] == true
            && f["witnessed"]["timestamps"].as_u64() >= Some(1)),
        "{found}"
    );
    // With no root named, the public-good one is the judge (from Sigstore's TUF
    // repository, or the copy built in): the local CA is not in it.
    let stderr = fails(&gantry(
        &example("hello"),
        &[
            "verify",
            &reference,
            "--certificate-identity",
            KeylessStack::IDENTITY,
            "--certificate-oidc-issuer",
            &stack.issuer,
        ],
    ));
    assert!(
        stderr.contains("no signature verifies")
            && stderr.contains("does not chain to a trusted Fulcio CA"),
        "{stderr}"
    );
    // Refused, naming what failed: a certificate without an SCT when one is required;
    // a log the trusted root does not list.
    let stderr = fails(&verify(&reference, &stack.trusted_root, &[]));
    assert!(
        stderr.contains("no signature verifies")
            && stderr.contains("the trusted root does not back it: invalid signed certificate timestamp: certificate is missing SCT extension"),
        "{stderr}"
    );
    let mut root = json(&std::fs::read(&stack.trusted_root).unwrap());
    root["tlogs"] = serde_json::json!([]);
    let work = tempfile::tempdir().unwrap();
    let logless = work.path().join("no-logs.json");
    std::fs::write(&logless, root.to_string()).unwrap();
    let stderr = fails(&verify(&reference, &logless, &["--insecure-ignore-sct"]));
    assert!(
        stderr.contains("the trusted root does not back it: invalid checkpoint: No matching Rekor key found for checkpoint signature"),
        "{stderr}"
    );
    // A bundle whose inclusion proof was altered, alone beside a copy of the image.
    let signature = report["images"][0]["attachments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| {
            a["storage"] == "referrer"
                && a["subject"] == digest.as_str()
                && a["predicate_type"] == "https://sigstore.dev/cosign/sign/v1"
        })
        .expect("a signature bundle")["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let manifest = json(&skopeo_ok(&[
        "inspect",
        "--raw",
        &format!("docker://{repo}@{signature}"),
    ]));
    let layer = manifest["layers"][0]["digest"].as_str().unwrap();
    let mut tampered = stored(format!("/v2/logged-v2/blobs/{layer}"));
    let hash =
        &mut tampered["verificationMaterial"]["tlogEntries"][0]["inclusionProof"]["hashes"][0];
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut bytes = b64
        .decode(
            hash.as_str()
                .expect("an inclusion proof with a hash (the log has several entries)"),
        )
        .unwrap();
    bytes[0] ^= 1;
    *hash = Value::String(b64.encode(bytes));
    let bundle_file = work.path().join("bundle.json");
    std::fs::write(&bundle_file, tampered.to_string()).unwrap();
    let copy = format!("{}/tampered", registry.host);
    skopeo_ok(&[
        "copy",
        "--all",
        "--preserve-digests",
        &format!("docker://{reference}"),
        &format!("docker://{copy}:latest"),
    ]);
    attach_bundle(&format!("{copy}@{digest}"), &bundle_file);
    let stderr = fails(&verify(
        &format!("{copy}@{digest}"),
        &stack.trusted_root,
        &["--insecure-ignore-sct"],
    ));
    assert!(
        stderr.contains("the trusted root does not back it: invalid inclusion proof: inclusion proof verification failed: root hash mismatch"),
        "{stderr}"
    );

    // cosign v2 on the classic .sig alone (copied where no bundle is beside it): the
    // certificate by identity, the signing time by the timestamp authority's chain
    // (there is no v1 log entry to check).
    let classic = classic_copy(&registry, &repo, &reference, "classic-v2");
    let out = Command::new(tool("cosign-v2"))
        .args(["verify", "--certificate-identity", KeylessStack::IDENTITY])
        .args(["--certificate-oidc-issuer", &stack.issuer])
        .args(["--insecure-ignore-sct=true", "--insecure-ignore-tlog=true"])
        .args([
            "--use-signed-timestamps=true",
            "--timestamp-certificate-chain",
        ])
        .arg(stack.tsa_chain_pem())
        .arg("--allow-http-registry")
        .arg(format!("{classic}@{digest}"))
        .env("SIGSTORE_ROOT_FILE", stack.fulcio_root_pem())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cosign v2 (classic .sig with an RFC 3161 timestamp) failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_token_given_in_sigstore_id_token_signs_keyless() {
    let stack = KeylessStack::start();
    let registry = TestRegistry::start();
    let repo = format!("{}/given-token", registry.host);
    let args = [
        "build",
        "--repo",
        &repo,
        "--platform",
        "linux/amd64",
        "--base",
        "scratch",
        "--sign",
        "keyless",
        "--fulcio-url",
        &stack.fulcio,
        "--no-tlog-upload",
    ];
    // The token alone, as outside Actions: no runner variables to fetch one with.
    let token = id_token(&stack);
    let out = gantry_env(
        &example("hello"),
        &args,
        &[("SIGSTORE_ID_TOKEN", token.as_str())],
    );
    let reference = ok(&out).trim().to_string();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let unmasked: String = stderr
        .lines()
        .filter(|l| !l.starts_with("::add-mask::"))
        .collect();
    assert!(!unmasked.contains(&token), "the token leaked:\n{stderr}");
    for version in ["cosign-v3", "cosign-v2"] {
        assert_verifies(version, "verify", &stack, &[], &reference);
    }
    assert_verifies(
        "cosign-v3",
        "verify-attestation",
        &stack,
        &["--type", "slsaprovenance1"],
        &reference,
    );

    // The variable is what gantry reads: something else in it is refused as a token.
    let stderr = fails(&gantry_env(
        &example("hello"),
        &args,
        &[("SIGSTORE_ID_TOKEN", "garbage-in-the-variable")],
    ));
    assert!(
        stderr.contains("the OIDC identity token is not a JWT")
            && !stderr.contains("garbage-in-the-variable"),
        "{stderr}"
    );
}

/// `cosign verify --key PUB` (v3, no transparency log for key signatures).
fn cosign_verify_with_key(public: &std::path::Path, image: &str) -> Output {
    Command::new(tool("cosign-v3"))
        .arg("verify")
        .arg("--key")
        .arg(public)
        .args(["--insecure-ignore-tlog=true", "--allow-http-registry"])
        .arg(image)
        .output()
        .unwrap()
}

#[test]
fn sign_auto_takes_a_key_else_a_token_else_signs_nothing_and_says_so() {
    let stack = KeylessStack::start();
    let registry = TestRegistry::start();
    let keys = tempfile::tempdir().unwrap();
    let (key, public) = cosign_key_pair(keys.path(), "auto-pass");
    let token_vars = stack.actions_env();
    let build = |name: &str, sign: &[&str], vars: &[(&str, &str)]| {
        let repo = format!("{}/{name}", registry.host);
        let mut args = vec![
            "build",
            "--repo",
            &repo,
            "--platform",
            "linux/amd64",
            "--base",
            "scratch",
            "--fulcio-url",
            &stack.fulcio,
            "--no-tlog-upload",
        ];
        args.extend(sign);
        let out = gantry_env(&example("hello"), &args, vars);
        let reference = ok(&out).trim().to_string();
        (reference, String::from_utf8_lossy(&out.stderr).into_owned())
    };
    const NOT_SIGNING: &str = "gantry: not signing: no --key (or COSIGN_KEY) and no OIDC token";

    // A key (COSIGN_KEY) and a token both available: the key signs.
    let mut vars = env(&token_vars);
    vars.extend([
        ("COSIGN_KEY", key.to_str().unwrap()),
        ("COSIGN_PASSWORD", "auto-pass"),
    ]);
    let (reference, stderr) = build("with-key", &["--sign", "auto"], &vars);
    assert!(!stderr.contains("not signing"), "{stderr}");
    let out = cosign_verify_with_key(&public, &reference);
    let digest = reference.rsplit_once('@').unwrap().1;
    let types = verified_types(&out.stdout, digest);
    assert!(
        out.status.success()
            && types
                .iter()
                .any(|t| t == BUNDLE_SIGNATURE || t == CLASSIC_SIGNATURE),
        "not signed with the key ({types:?}):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // One signer only: the .sig tag holds one layer, with no certificate (a keyless
    // signature carries its Fulcio certificate there).
    let sig: Value = serde_json::from_slice(&skopeo_ok(&[
        "inspect",
        "--raw",
        &format!(
            "docker://{}/with-key:{}.sig",
            registry.host,
            digest.replacen(':', "-", 1)
        ),
    ]))
    .unwrap();
    let layers = sig["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "{sig}");
    assert!(
        layers[0]["annotations"]
            .get("dev.sigstore.cosign/certificate")
            .is_none(),
        "signed keyless although a key was given: {sig}"
    );

    // A token and no key: keyless, by the workflow's identity; the same when --sign
    // is not given at all (auto is the default).
    for (name, sign) in [
        ("with-token", &["--sign", "auto"][..]),
        ("default", &[][..]),
    ] {
        let (reference, stderr) = build(name, sign, &env(&token_vars));
        assert!(!stderr.contains("not signing"), "{stderr}");
        assert_verifies("cosign-v3", "verify", &stack, &[], &reference);
    }

    // Neither: the image is pushed unsigned, and stderr says why.
    let (reference, stderr) = build("unsigned", &["--sign", "auto"], &[]);
    assert!(stderr.contains(NOT_SIGNING), "{stderr}");
    let tags: Vec<String> = registry
        .tags("unsigned")
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    // Only the tag, and the fallback indexes listing the unsigned SBOMs and
    // provenance: no signature or attestation tags.
    assert!(tags.contains(&"latest".to_string()), "{tags:?}");
    assert!(
        tags.iter()
            .all(|t| t == "latest" || (t.starts_with("sha256-") && !t.contains('.'))),
        "signatures or attestations were stored: {tags:?}"
    );
    let out = cosign_verify_with_key(&public, &reference);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && said.contains("no signatures found"),
        "{said}"
    );
}

/// A signing config names the Fulcio and Rekor to use: with it and no URL flags, the
/// build signs through the local services, and cosign checks the result against them.
/// A config that names only Rekor v2 logs is refused before anything is built.
#[test]
fn a_signing_config_names_the_services() {
    let stack = KeylessStack::start_with_rekor();
    let rekor = stack.rekor.clone().unwrap();
    let registry = TestRegistry::start();
    let repo = format!("{}/configured", registry.host);
    let work = tempfile::tempdir().unwrap();
    let config = |logs: &str| {
        let path = work
            .path()
            .join(format!("signing-config-{}.json", logs.len()));
        std::fs::write(
            &path,
            format!(
                r#"{{"mediaType":"application/vnd.dev.sigstore.signingconfig.v0.2+json",
                "caUrls":[{{"url":"{}","majorApiVersion":1,"validFor":{{"start":"2020-01-01T00:00:00Z"}}}}],
                "oidcUrls":[],
                "rekorTlogUrls":[{logs}],
                "tsaUrls":[],
                "rekorTlogConfig":{{"selector":"ANY"}},"tsaConfig":{{"selector":"ANY"}}}}"#,
                stack.fulcio
            ),
        )
        .unwrap();
        path
    };
    let v1 = config(&format!(
        r#"{{"url":"{rekor}","majorApiVersion":1,"validFor":{{"start":"2020-01-01T00:00:00Z"}}}}"#
    ));
    let report = work.path().join("r.json");
    let build = |config: &std::path::Path| {
        gantry_env(
            &example("with-deps"),
            &[
                "build",
                "--repo",
                &repo,
                "--platform",
                "linux/amd64,wasi/wasm",
                "--base",
                "scratch",
                "--sign",
                "keyless",
                "--signing-config",
                config.to_str().unwrap(),
                "--json",
                report.to_str().unwrap(),
            ],
            &env(&stack.actions_env()),
        )
    };
    ok(&build(&v1));
    let report = json(&std::fs::read(&report).unwrap());
    assert_eq!(report["signer"]["rekor_url"], rekor.as_str(), "{report}");
    cosign_accepts_the_build(&stack, &repo, &report);

    let v2 = config(
        r#"{"url":"https://log2025-1.rekor.sigstore.dev","majorApiVersion":2,"validFor":{"start":"2020-01-01T00:00:00Z"}}"#,
    );
    let go = RecordingGo::new();
    let actions = stack.actions_env();
    let mut vars = env(&actions);
    vars.push(go.env());
    let err = fails(&gantry_env(
        &example("with-deps"),
        &[
            "build",
            "--repo",
            &repo,
            "--sign",
            "keyless",
            "--signing-config",
            v2.to_str().unwrap(),
        ],
        &vars,
    ));
    // A Rekor v2 log and no timestamp authority: a keyless signature would have no
    // trusted signing time.
    assert!(
        err.contains("Rekor v2")
            && err.contains("tsaUrls")
            && err.contains("--timestamp-server-url"),
        "{err}"
    );
    // A config that names no log: refused, not replaced by the public log.
    let logless = config("");
    let err = fails(&gantry_env(
        &example("with-deps"),
        &[
            "build",
            "--repo",
            &repo,
            "--sign",
            "keyless",
            "--signing-config",
            logless.to_str().unwrap(),
        ],
        &vars,
    ));
    assert!(
        err.contains("names no transparency log valid now") && err.contains("--no-tlog-upload"),
        "{err}"
    );
    assert!(go.builds().is_empty(), "{:?}", go.builds());
}

/// Scale-out signed keyless: two unsigned `--push-by-digest` jobs, then `gantry merge`
/// with the workflow's identity through the local Fulcio and Rekor; cosign v3 and v2
/// verify the index and each manifest by that identity, and a platform's SBOM.
#[test]
fn a_keyless_merge_signs_the_index_and_every_manifest() {
    let stack = KeylessStack::start_with_rekor();
    let rekor = stack.rekor.clone().unwrap();
    let registry = TestRegistry::start();
    let repo = format!("{}/merged", registry.host);
    let work = tempfile::tempdir().unwrap();
    let mut reports = Vec::new();
    for platform in ["linux/amd64", "wasi/wasm"] {
        let report = work
            .path()
            .join(format!("{}.json", platform.replace('/', "-")));
        ok(&gantry(
            &example("hello"),
            &[
                "build",
                "--repo",
                &repo,
                "--platform",
                platform,
                "--base",
                "scratch",
                "--sign",
                "none",
                "--push-by-digest",
                "--json",
                report.to_str().unwrap(),
            ],
        ));
        reports.push(report);
    }
    let merged_report = work.path().join("merged.json");
    let mut args = vec![
        "merge",
        "--repo",
        &repo,
        "--tag",
        "v1",
        "--sign",
        "keyless",
        "--fulcio-url",
        &stack.fulcio,
        "--rekor-url",
        &rekor,
        "--json",
        merged_report.to_str().unwrap(),
    ];
    for r in &reports {
        args.extend(["--from", r.to_str().unwrap()]);
    }
    let printed = ok(&gantry_env(
        std::path::Path::new("."),
        &args,
        &env(&stack.actions_env()),
    ));
    let index = printed.trim().rsplit_once('@').unwrap().1.to_string();
    assert_eq!(
        registry.tag_digest("merged", "v1").as_deref(),
        Some(index.as_str())
    );
    let manifest = json(&skopeo_ok(&[
        "inspect",
        "--raw",
        &format!("docker://{repo}@{index}"),
    ]));
    let images: Vec<String> = manifest["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["digest"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(images.len(), 2, "{manifest}");
    for digest in std::iter::once(&index).chain(&images) {
        for version in ["cosign-v3", "cosign-v2"] {
            assert_verifies(version, "verify", &stack, &[], &format!("{repo}@{digest}"));
        }
    }
    assert_verifies(
        "cosign-v3",
        "verify-attestation",
        &stack,
        &["--type", "spdxjson"],
        &format!("{repo}@{}", images[0]),
    );
}

/// Key-based signatures are entered in the transparency log by default, as cosign
/// enters them: in Rekor v1 (`--rekor-url`) and in Rekor v2 with timestamps (a signing
/// config). cosign v3 checks the entries with the key and the trusted root, without
/// --insecure-ignore-tlog, and so does `gantry verify --trusted-root`. With no log named,
/// the default is the public Rekor, which a sealed test cannot reach: the failure names
/// it and the way out.
#[test]
fn key_signatures_are_logged_by_default() {
    let registry = TestRegistry::start();
    let work = tempfile::tempdir().unwrap();
    let (key, public) = cosign_key_pair(work.path(), "logged-key");
    let build = |repo: &str, extra: &[&str]| {
        let mut args = vec![
            "build",
            "--repo",
            repo,
            "--platform",
            "linux/amd64",
            "--base",
            "scratch",
            "--key",
            key.to_str().unwrap(),
        ];
        args.extend(extra);
        gantry_env(
            &example("hello"),
            &args,
            &[("COSIGN_PASSWORD", "logged-key")],
        )
    };
    let v1 = KeylessStack::start_with_rekor();
    let v2 = KeylessStack::start_with_rekor_v2();
    let config = v2.signing_config.as_ref().unwrap().to_str().unwrap();
    for (name, stack, extra) in [
        (
            "key-v1",
            &v1,
            vec!["--rekor-url", v1.rekor.as_deref().unwrap()],
        ),
        ("key-v2", &v2, vec!["--signing-config", config]),
    ] {
        let repo = format!("{}/{name}", registry.host);
        let reference = ok(&build(&repo, &extra)).trim().to_string();
        for verb in [
            vec!["verify"],
            vec!["verify-attestation", "--type", "slsaprovenance1"],
        ] {
            let out = Command::new(tool("cosign-v3"))
                .args(&verb)
                .arg("--key")
                .arg(&public)
                .arg("--trusted-root")
                .arg(&stack.trusted_root)
                .arg("--allow-http-registry")
                .arg(&reference)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{name}: cosign v3 {verb:?} with the log checked:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let found = json(
            ok(&gantry(
                &example("hello"),
                &[
                    "verify",
                    &reference,
                    "--key",
                    public.to_str().unwrap(),
                    "--trusted-root",
                    stack.trusted_root.to_str().unwrap(),
                ],
            ))
            .as_bytes(),
        );
        assert!(
            found
                .as_array()
                .unwrap()
                .iter()
                .filter(|f| f["storage"] == "referrer")
                .all(|f| f["verified"] == true && f["witnessed"]["tlog"] == true),
            "{name}: {found}"
        );
    }

    let stderr = fails(&build(&format!("{}/key-default", registry.host), &[]));
    assert!(
        stderr.contains("https://rekor.sigstore.dev") && stderr.contains("--no-tlog-upload"),
        "{stderr}"
    );
}

/// A signing time the certificate was not valid at is refused. The bundle is made by
/// hand from real parts: a key (openssl) signs cosign's statement about an image, the
/// timestamp authority countersigns that signature, and only then does Fulcio certify
/// the key, so the timestamp is older than the certificate.
#[test]
fn a_timestamp_before_the_certificate_is_refused() {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let stack = KeylessStack::start_with_rekor_v2();
    let registry = TestRegistry::start();
    let repo = format!("{}/early", registry.host);
    let reference = ok(&gantry(
        &example("hello"),
        &[
            "build",
            "--repo",
            &repo,
            "--platform",
            "linux/amd64",
            "--base",
            "scratch",
            "--sign",
            "none",
            "--sbom",
            "none",
            "--no-provenance",
        ],
    ))
    .trim()
    .to_string();
    let digest = reference.rsplit_once('@').unwrap().1.to_string();

    let work = tempfile::tempdir().unwrap();
    let file = |name: &str| work.path().join(name);
    let key = file("key.pem");
    openssl(&[
        "ecparam",
        "-name",
        "prime256v1",
        "-genkey",
        "-noout",
        "-out",
        key.to_str().unwrap(),
    ]);
    let public =
        String::from_utf8(openssl(&["ec", "-in", key.to_str().unwrap(), "-pubout"])).unwrap();
    let sign = |bytes: &[u8]| {
        std::fs::write(file("message"), bytes).unwrap();
        openssl(&[
            "dgst",
            "-sha256",
            "-sign",
            key.to_str().unwrap(),
            file("message").to_str().unwrap(),
        ])
    };

    let statement = serde_json::json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": repo, "digest": {"sha256": digest.trim_start_matches("sha256:")}}],
        "predicateType": "https://sigstore.dev/cosign/sign/v1",
        "predicate": {},
    })
    .to_string();
    let payload_type = "application/vnd.in-toto+json";
    let pae = format!(
        "DSSEv1 {} {payload_type} {} {statement}",
        payload_type.len(),
        statement.len()
    );
    let signature = sign(pae.as_bytes());

    // The timestamp, over the signature.
    let config = json(&std::fs::read(stack.signing_config.as_ref().unwrap()).unwrap());
    let tsa = config["tsaUrls"][0]["url"]
        .as_str()
        .unwrap()
        .trim_start_matches("http://");
    let (tsa_host, tsa_path) = tsa.split_once('/').unwrap();
    let signature_digest = sha256sum(&signature);
    let query = openssl(&[
        "ts",
        "-query",
        "-sha256",
        "-cert",
        "-digest",
        signature_digest.trim_start_matches("sha256:"),
    ]);
    let timestamp = || {
        let (status, timestamp) = http_request_typed(
            tsa_host,
            "POST",
            &format!("/{tsa_path}"),
            Some("application/timestamp-query"),
            &query,
        )
        .expect("the timestamp authority answers");
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&timestamp));
        timestamp
    };
    let early = timestamp();

    // Later: the certificate (Fulcio's times are in whole seconds).
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let token = id_token(&stack);
    let claims = json(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token.split('.').nth(1).unwrap())
            .unwrap(),
    );
    let proof = sign(claims["sub"].as_str().unwrap().as_bytes());
    let request = serde_json::json!({
        "credentials": {"oidcIdentityToken": token},
        "publicKeyRequest": {
            "publicKey": {"algorithm": "ECDSA", "content": public},
            "proofOfPossession": b64.encode(&proof),
        },
    });
    let (status, answer) = http_request_typed(
        stack.fulcio.trim_start_matches("http://"),
        "POST",
        "/api/v2/signingCert",
        Some("application/json"),
        request.to_string().as_bytes(),
    )
    .expect("Fulcio answers");
    assert!(
        status < 300,
        "Fulcio: {status} {}",
        String::from_utf8_lossy(&answer)
    );
    let answer = json(&answer);
    let leaf = answer["signedCertificateEmbeddedSct"]["chain"]["certificates"][0]
        .as_str()
        .or_else(|| answer["signedCertificateDetachedSct"]["chain"]["certificates"][0].as_str())
        .expect("a certificate");
    let leaf = pem::parse(leaf).unwrap().into_contents();

    let bundle = |timestamp: &[u8]| {
        serde_json::json!({
            "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
            "verificationMaterial": {
                "certificate": {"rawBytes": b64.encode(&leaf)},
                "tlogEntries": [],
                "timestampVerificationData": {"rfc3161Timestamps": [{"signedTimestamp": b64.encode(timestamp)}]},
            },
            "dsseEnvelope": {
                "payload": b64.encode(&statement),
                "payloadType": payload_type,
                "signatures": [{"sig": b64.encode(&signature), "keyid": ""}],
            },
        })
    };
    // The bundle alone beside a copy of the image; then gantry verify's word on it.
    let verify_with = |name: &str, bundle: Value| {
        let copy = format!("{}/{name}", registry.host);
        skopeo_ok(&[
            "copy",
            "--preserve-digests",
            &format!("docker://{reference}"),
            &format!("docker://{copy}:latest"),
        ]);
        let path = file(&format!("{name}.json"));
        std::fs::write(&path, bundle.to_string()).unwrap();
        let image = format!("{copy}@{digest}");
        attach_bundle(&image, &path);
        gantry(
            &example("hello"),
            &[
                "verify",
                &image,
                "--certificate-identity",
                KeylessStack::IDENTITY,
                "--certificate-oidc-issuer",
                &stack.issuer,
                "--trusted-root",
                stack.trusted_root.to_str().unwrap(),
                "--insecure-ignore-sct",
                "--insecure-ignore-tlog",
            ],
        )
    };
    // Countersigned after the certificate was issued, the same signature verifies:
    // the bundle is sound but for the time.
    ok(&verify_with("in-time", bundle(&timestamp())));
    let stderr = fails(&verify_with("too-early", bundle(&early)));
    assert!(
        stderr.contains("no signature verifies")
            && stderr.contains("the trusted root does not back it: certificate chain is invalid")
            && stderr.contains("CertNotValidYet"),
        "{stderr}"
    );
}

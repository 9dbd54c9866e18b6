//! Keyless signing offline: a real Fulcio (ephemeral CA) trusting a local OIDC issuer
//! that serves GitHub-shaped tokens the way a runner does. The real cosign, v2 and
//! v3, judges the result by the workflow identity in the certificate.

mod common;

use std::process::{Command, Output};

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
    cmd.args(extra).arg(image).output().unwrap()
}

fn assert_verifies(version: &str, verb: &str, stack: &KeylessStack, extra: &[&str], image: &str) {
    let out = cosign_keyless(version, verb, stack, KeylessStack::IDENTITY, extra, image);
    assert!(
        out.status.success(),
        "{version} {verb} {extra:?} {image} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn env<'a>(pairs: &'a [(&'static str, String)]) -> Vec<(&'a str, &'a str)> {
    pairs.iter().map(|(k, v)| (*k, v.as_str())).collect()
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
    match &stack.rekor {
        Some(rekor) => args.extend(["--rekor-url", rekor]),
        None => args.push("--no-tlog-upload"),
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

    // Someone else's identity does not verify.
    let out = cosign_keyless(
        "cosign-v3",
        "verify",
        &stack,
        "https://github.com/evil/fork/.github/workflows/x.yml@refs/heads/main",
        &[],
        &reference,
    );
    assert!(
        !out.status.success(),
        "another identity verified the signature"
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
    assert!(
        found
            .iter()
            .all(|f| f["verified"] == true && f["certificate_identity"] == KeylessStack::IDENTITY),
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
    let stderr = fails(&by_identity(
        "https://github.com/evil/fork/.github/workflows/x.yml@refs/heads/main",
        &stack.trusted_root,
    ));
    assert!(
        stderr.contains("verifies with this identity and issuer"),
        "{stderr}"
    );
    // The right identity from a CA that is not trusted: another Fulcio's.
    let other = KeylessStack::start();
    fails(&by_identity(KeylessStack::IDENTITY, &other.trusted_root));

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
    let closed = format!("http://127.0.0.1:{}", closed_port());
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
            &closed,
            "--no-tlog-upload",
        ],
        &env(&vars),
    );
    let stderr = fails(&out);
    assert!(
        stderr.contains("Fulcio") && stderr.contains("after 3 attempts"),
        "{stderr}"
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
    assert!(!out.status.success(), "verified before anything was signed");

    // The rerun signs and attests what is there, without rebuilding: the SBOMs come
    // from the build info of the binaries in the layers.
    let out = gantry_env(
        &example("with-deps"),
        &[
            "sign",
            &reference,
            "--sign",
            "keyless",
            "--fulcio-url",
            &stack.fulcio,
            "--no-tlog-upload",
        ],
        &env(&vars),
    );
    assert_eq!(ok(&out).trim(), reference);
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
    let stack = KeylessStack::start();
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

    let closed = format!("http://127.0.0.1:{}", closed_port());
    let mut args = base.to_vec();
    args.extend(["--rekor-url", &closed]);
    let stderr = fails(&gantry_env(
        &example("hello"),
        &args,
        &env(&stack.actions_env()),
    ));
    assert!(
        stderr.contains("Rekor") && stderr.contains("after 3 attempts"),
        "{stderr}"
    );
    assert!(
        stderr.contains("--no-tlog-upload") || stderr.contains("gantry sign REF"),
        "{stderr}"
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
    let classic = format!("{}/classic", registry.host);
    skopeo_ok(&[
        "copy",
        "--all",
        "--preserve-digests",
        &format!("docker://{reference}"),
        &format!("docker://{classic}:latest"),
    ]);
    let sig_tag = format!("{}.sig", digest.replacen(':', "-", 1));
    skopeo_ok(&[
        "copy",
        "--preserve-digests",
        &format!("docker://{repo}:{sig_tag}"),
        &format!("docker://{classic}:{sig_tag}"),
    ]);
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
    // certificate, identity, owner and log.
    let gh_config = tempfile::tempdir().unwrap();
    let gh = |reference: &str, owner: &str| {
        Command::new(tool("gh"))
            .args([
                "attestation",
                "verify",
                &format!("oci://{reference}"),
                "--bundle-from-oci",
            ])
            .args([
                "--owner",
                owner,
                "--cert-oidc-issuer",
                &stack.issuer,
                "--format",
                "json",
            ])
            .arg("--custom-trusted-root")
            .arg(&stack.trusted_root)
            .env("GH_TOKEN", "unused-offline")
            .env("GH_CONFIG_DIR", gh_config.path())
            .output()
            .unwrap()
    };
    let wasm = platform_digest(&report, "wasi/wasm");
    for subject in [reference.clone(), format!("{repo}@{wasm}")] {
        let out = gh(&subject, "octo-org");
        assert!(
            out.status.success(),
            "gh attestation verify {subject}:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let results: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            results[0]["verificationResult"]["statement"]["predicateType"],
            "https://slsa.dev/provenance/v1"
        );
    }
    assert!(
        !gh(&reference, "someone-else").status.success(),
        "gh accepted another owner"
    );

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
        ],
    )))
    .unwrap();
    assert!(
        found
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["tlog_entry"] == true),
        "{found}"
    );
}

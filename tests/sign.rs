//! Signatures and attestations judged by the real cosign, v2 and v3: keys from
//! `cosign generate-key-pair` and from `gantry keygen`, the classic `.sig` and the
//! Sigstore bundle referrers, on registries with and without the referrers API.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use base64::Engine as _;
use common::*;
use serde_json::Value;

const PASSWORD: &str = "gantry-test-pass";
/// An empty trusted root: key-based verification needs no CA, but cosign insists on a
/// root once it sees bundles (online it fetches the public-good one over TUF).
const EMPTY_TRUSTED_ROOT: &str = r#"{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1","tlogs":[],"certificateAuthorities":[],"ctlogs":[],"timestampAuthorities":[]}"#;

struct Keys {
    dir: tempfile::TempDir,
}

impl Keys {
    /// A pair written by the real cosign.
    fn from_cosign() -> Self {
        let dir = tempfile::tempdir().unwrap();
        cosign_key_pair(dir.path(), PASSWORD);
        std::fs::write(dir.path().join("root.json"), EMPTY_TRUSTED_ROOT).unwrap();
        Keys { dir }
    }

    fn key(&self) -> PathBuf {
        self.dir.path().join("cosign.key")
    }

    fn public(&self) -> PathBuf {
        self.dir.path().join("cosign.pub")
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root.json")
    }
}

fn cosign(version: &str, args: &[&str], keys_root: &Path) -> Output {
    let mut cmd = Command::new(tool(version));
    cmd.args(args)
        .arg("--insecure-ignore-tlog=true")
        .arg("--allow-http-registry");
    if version == "cosign-v2" {
        cmd.arg("--trusted-root").arg(keys_root);
    }
    cmd.output().unwrap()
}

fn verifies(
    version: &str,
    verb: &str,
    public: &Path,
    root: &Path,
    image: &str,
    extra: &[&str],
) -> Vec<u8> {
    let mut args = vec![verb, "--key", public.to_str().unwrap()];
    args.extend(extra);
    args.push(image);
    let out = cosign(version, &args, root);
    assert!(
        out.status.success(),
        "{version} {verb} {extra:?} {image} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn build_signed(registry: &TestRegistry, repo: &str, keys: &Keys, extra: &[&str]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("r.json");
    let repo = format!("{}/{repo}", registry.host);
    let key = keys.key();
    let mut args = vec![
        "build",
        "--repo",
        &repo,
        "--platform",
        "linux/amd64,wasi/wasm",
        "--base",
        "scratch",
        "--key",
        key.to_str().unwrap(),
        "--json",
        report.to_str().unwrap(),
    ];
    args.extend(extra);
    let out = gantry_env(
        &example("with-deps"),
        &args,
        &[("COSIGN_PASSWORD", PASSWORD)],
    );
    ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains(PASSWORD),
        "the key password reached the log"
    );
    json(&std::fs::read(report).unwrap())
}

/// Checks an index of referrers names a signature, both SBOMs and the provenance.
fn assert_lists_every_predicate(index: &Value, what: &str) {
    let kinds: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            m["annotations"]["dev.sigstore.bundle.predicateType"]
                .as_str()
                .unwrap_or("")
        })
        .collect();
    for expected in [
        "https://sigstore.dev/cosign/sign/v1",
        "https://spdx.dev/Document",
        "https://cyclonedx.org/bom",
        "https://slsa.dev/provenance/v1",
    ] {
        assert!(
            kinds.contains(&expected),
            "{expected} missing from {what}: {kinds:?}"
        );
    }
}

/// `(index digest, [platform manifest digests])`.
fn digests(report: &Value) -> (String, Vec<String>) {
    let image = &report["images"][0];
    let platforms = image["platforms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["digest"].as_str().unwrap().to_string())
        .collect();
    (image["digest"].as_str().unwrap().to_string(), platforms)
}

#[test]
fn cosign_v2_and_v3_verify_signatures_and_attestations() {
    let registry = TestRegistry::start();
    let keys = Keys::from_cosign();
    let report = build_signed(&registry, "app", &keys, &[]);
    let (index, platforms) = digests(&report);
    let repo = format!("{}/app", registry.host);

    for version in ["cosign-v3", "cosign-v2"] {
        for digest in std::iter::once(&index).chain(&platforms) {
            verifies(
                version,
                "verify",
                &keys.public(),
                &keys.root(),
                &format!("{repo}@{digest}"),
                &[],
            );
        }
        // The index's and the wasm image's attestations.
        for digest in [&index, &platforms[1]] {
            let image = format!("{repo}@{digest}");
            for kind in ["spdxjson", "cyclonedx", "slsaprovenance1"] {
                let out = verifies(
                    version,
                    "verify-attestation",
                    &keys.public(),
                    &keys.root(),
                    &image,
                    &["--type", kind],
                );
                let envelope: Value =
                    serde_json::from_slice(out.split(|b| *b == b'\n').next().unwrap()).unwrap();
                let statement: Value = serde_json::from_slice(
                    &base64::engine::general_purpose::STANDARD
                        .decode(envelope["payload"].as_str().unwrap())
                        .unwrap(),
                )
                .unwrap();
                assert!(statement["subject"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(
                        |s| format!("sha256:{}", s["digest"]["sha256"].as_str().unwrap())
                            == *digest
                    ));
                if kind != "slsaprovenance1" && digest == &platforms[1] {
                    let sbom = statement["predicate"].to_string();
                    assert!(
                        sbom.contains("pkg:golang/github.com/google/uuid@v1.6.0"),
                        "wasm SBOM lacks uuid: {kind}"
                    );
                    assert!(
                        sbom.contains("pkg:golang/golang.org/x/text@v0.21.0"),
                        "wasm SBOM lacks x/text: {kind}"
                    );
                }
            }
        }
    }

    // gantry's own verifier agrees, and prints the SBOM it finds.
    let public = keys.public();
    let wasm_ref = format!("{repo}@{}", platforms[1]);
    let out = gantry(
        Path::new("."),
        &["verify", "--key", public.to_str().unwrap(), &wasm_ref],
    );
    let found = json(ok(&out).as_bytes());
    assert!(found
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["verified"] == true));
    let sbom = ok(&gantry(
        Path::new("."),
        &[
            "sbom",
            "--format",
            "spdx",
            "--key",
            public.to_str().unwrap(),
            &wasm_ref,
        ],
    ));
    assert!(sbom.contains("pkg:golang/github.com/google/uuid@v1.6.0"));

    // Another key does not verify.
    let stranger = Keys::from_cosign();
    let err = fails(&gantry(
        Path::new("."),
        &[
            "verify",
            "--key",
            stranger.public().to_str().unwrap(),
            &format!("{repo}@{index}"),
        ],
    ));
    assert!(
        err.contains("is signed, but no signature verifies with this key"),
        "{err}"
    );
    // The private key where the public one belongs is named as such.
    let err = fails(&gantry(
        Path::new("."),
        &[
            "verify",
            "--key",
            keys.key().to_str().unwrap(),
            &format!("{repo}@{index}"),
        ],
    ));
    assert!(err.contains("this is a private key"), "{err}");
    // An SBOM is printed only once its signer is checked, or with a warning.
    let err = fails(&gantry(Path::new("."), &["sbom", &wasm_ref]));
    assert!(
        err.contains("say whom to trust") && err.contains("--unverified"),
        "{err}"
    );
    let out = gantry(Path::new("."), &["sbom", "--unverified", &wasm_ref]);
    assert!(ok(&out).contains("pkg:golang/github.com/google/uuid@v1.6.0"));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("warning: --unverified"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A reader that stops early (`| head -1`) ends gantry quietly, not with a panic.
    for args in [
        vec!["sbom", "--key", public.to_str().unwrap(), &wasm_ref],
        vec!["verify", "--key", public.to_str().unwrap(), &wasm_ref],
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_gantry"))
            .args(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && !stderr.contains("panicked") && !stderr.contains("error"),
            "{args:?} with stdout closed: {}: {stderr}",
            out.status
        );
    }
    let out = cosign(
        "cosign-v3",
        &[
            "verify",
            "--key",
            stranger.public().to_str().unwrap(),
            &format!("{repo}@{index}"),
        ],
        &stranger.root(),
    );
    assert!(
        !out.status.success(),
        "a foreign key verified the signature"
    );

    // The classic .sig on its own (as on a registry that lost the referrers): cosign
    // verifies it without any bundle in sight.
    let classic = format!("{}/classic", registry.host);
    let hex = index.trim_start_matches("sha256:");
    skopeo_ok(&[
        "copy",
        "--all",
        "--preserve-digests",
        &format!("docker://{repo}@{index}"),
        &format!("docker://{classic}:x"),
    ]);
    skopeo_ok(&[
        "copy",
        &format!("docker://{repo}:sha256-{hex}.sig"),
        &format!("docker://{classic}:sha256-{hex}.sig"),
    ]);
    for version in ["cosign-v3", "cosign-v2"] {
        let out = verifies(
            version,
            "verify",
            &keys.public(),
            &keys.root(),
            &format!("{classic}@{index}"),
            &[],
        );
        assert!(String::from_utf8_lossy(&out).contains("cosign container image signature"));
    }
    // Registry without the referrers API: the fallback tag lists every bundle.
    let fallback = json(&skopeo_ok(&[
        "inspect",
        "--raw",
        &format!("docker://{repo}:sha256-{hex}"),
    ]));
    assert_lists_every_predicate(&fallback, "the fallback index");
    let attachments = report["images"][0]["attachments"].as_array().unwrap();
    assert_eq!(
        attachments
            .iter()
            .filter(|a| a["storage"] == "sig-tag")
            .count(),
        3
    );
}

#[test]
fn second_signer_appends_and_legacy_attestations_verify_with_cosign_v2() {
    let registry = TestRegistry::start();
    let first = Keys::from_cosign();
    // The second key comes from gantry keygen; cosign must read it too.
    let second = tempfile::tempdir().unwrap();
    ok(&gantry_env(
        second.path(),
        &["keygen", "--output-prefix", "gantry"],
        &[("COSIGN_PASSWORD", PASSWORD)],
    ));
    let out = Command::new(tool("cosign-v3"))
        .args(["public-key", "--key", "gantry.key"])
        .current_dir(second.path())
        .env("COSIGN_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cosign cannot read gantry's key: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        std::fs::read_to_string(second.path().join("gantry.pub"))
            .unwrap()
            .trim()
    );
    std::fs::write(second.path().join("root.json"), EMPTY_TRUSTED_ROOT).unwrap();
    let second_keys = Keys { dir: second };
    std::fs::rename(second_keys.dir.path().join("gantry.key"), second_keys.key()).unwrap();
    std::fs::rename(
        second_keys.dir.path().join("gantry.pub"),
        second_keys.public(),
    )
    .unwrap();

    let r1 = build_signed(&registry, "app", &first, &["--legacy-attestations"]);
    let r2 = build_signed(&registry, "app", &second_keys, &[]);
    let (index, _) = digests(&r1);
    assert_eq!(digests(&r2).0, index);
    let repo = format!("{}/app", registry.host);
    let hex = index.trim_start_matches("sha256:");
    let sig = json(&skopeo_ok(&[
        "inspect",
        "--raw",
        &format!("docker://{repo}:sha256-{hex}.sig"),
    ]));
    assert_eq!(
        sig["layers"].as_array().unwrap().len(),
        2,
        "the second signature replaced the first"
    );

    let classic = format!("{}/classic", registry.host);
    skopeo_ok(&[
        "copy",
        "--all",
        "--preserve-digests",
        &format!("docker://{repo}@{index}"),
        &format!("docker://{classic}:x"),
    ]);
    for suffix in ["sig", "att"] {
        skopeo_ok(&[
            "copy",
            &format!("docker://{repo}:sha256-{hex}.{suffix}"),
            &format!("docker://{classic}:sha256-{hex}.{suffix}"),
        ]);
    }
    for keys in [&first, &second_keys] {
        verifies(
            "cosign-v2",
            "verify",
            &keys.public(),
            &keys.root(),
            &format!("{classic}@{index}"),
            &[],
        );
        verifies(
            "cosign-v3",
            "verify",
            &keys.public(),
            &keys.root(),
            &format!("{repo}@{index}"),
            &[],
        );
    }
    for kind in ["spdxjson", "cyclonedx", "slsaprovenance1"] {
        verifies(
            "cosign-v2",
            "verify-attestation",
            &first.public(),
            &first.root(),
            &format!("{classic}@{index}"),
            &["--type", kind],
        );
    }
}

#[test]
fn referrers_api_registry_lists_the_bundles() {
    let registry = TestRegistry::start_with_referrers_api();
    let keys = Keys::from_cosign();
    let report = build_signed(&registry, "app", &keys, &[]);
    let (index, platforms) = digests(&report);
    // The registry's own referrers endpoint lists our bundles for the wasm image.
    let (status, body) = registry
        .get(&format!("/v2/app/referrers/{}", platforms[1]))
        .unwrap();
    assert_eq!(status, 200, "the registry serves the referrers API");
    let listed = json(&body);
    assert_lists_every_predicate(&listed, "the referrers API");
    // The registry lists them itself, so no fallback index is written, and the
    // report says which way each referrer is listed.
    let listed_by = |report: &Value| -> Vec<String> {
        report["images"][0]["attachments"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["storage"] == "referrer")
            .map(|a| a["listed_by"].as_str().unwrap_or("missing").to_string())
            .collect()
    };
    let ways = listed_by(&report);
    assert!(
        !ways.is_empty() && ways.iter().all(|w| w == "referrers-api"),
        "{ways:?}"
    );
    for digest in std::iter::once(&index).chain(&platforms) {
        let fallback = format!("/v2/app/manifests/{}", digest.replacen(':', "-", 1));
        let (status, _) = registry.get(&fallback).unwrap();
        assert_eq!(status, 404, "a fallback index was written at {fallback}");
    }
    for version in ["cosign-v3", "cosign-v2"] {
        verifies(
            version,
            "verify",
            &keys.public(),
            &keys.root(),
            &format!("{}/app@{index}", registry.host),
            &[],
        );
        verifies(
            version,
            "verify-attestation",
            &keys.public(),
            &keys.root(),
            &format!("{}/app@{}", registry.host, platforms[1]),
            &["--type", "spdxjson"],
        );
    }
}

#[test]
fn signatures_live_in_the_oci_layout_too() {
    let keys = Keys::from_cosign();
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let report = dir.path().join("r.json");
    ok(&gantry_env(
        &example("hello"),
        &[
            "build",
            "--platform",
            "linux/amd64,wasi/wasm",
            "--base",
            "scratch",
            "--oci-layout",
            layout.to_str().unwrap(),
            "--key",
            keys.key().to_str().unwrap(),
            "--json",
            report.to_str().unwrap(),
        ],
        &[("COSIGN_PASSWORD", PASSWORD)],
    ));
    let (index, _) = digests(&json(&std::fs::read(report).unwrap()));
    let hex = index.trim_start_matches("sha256:");
    // Copy the image and its .sig out of the layout; cosign is the judge.
    let registry = TestRegistry::start();
    let repo = format!("{}/fromlayout", registry.host);
    skopeo_ok(&[
        "copy",
        "--all",
        "--preserve-digests",
        &format!("oci:{}:latest", layout.display()),
        &format!("docker://{repo}:latest"),
    ]);
    skopeo_ok(&[
        "copy",
        &format!("oci:{}:sha256-{hex}.sig", layout.display()),
        &format!("docker://{repo}:sha256-{hex}.sig"),
    ]);
    verifies(
        "cosign-v2",
        "verify",
        &keys.public(),
        &keys.root(),
        &format!("{repo}@{index}"),
        &[],
    );
    // gantry verifies the layout itself, no registry involved.
    let public = keys.public();
    ok(&gantry(
        Path::new("."),
        &[
            "verify",
            "--key",
            public.to_str().unwrap(),
            &format!("oci:{}:latest", layout.display()),
        ],
    ));
    let cdx = ok(&gantry(
        Path::new("."),
        &[
            "sbom",
            "--format",
            "cyclonedx",
            "--key",
            public.to_str().unwrap(),
            &format!("oci:{}", layout.display()),
        ],
    ));
    assert_eq!(json(cdx.as_bytes())["specVersion"], "1.6");
}

#[test]
fn bad_keys_fail_clearly_before_anything_is_pushed() {
    let registry = TestRegistry::start();
    let keys = Keys::from_cosign();
    let repo = format!("{}/app", registry.host);
    let base = [
        "build",
        "--repo",
        repo.as_str(),
        "--platform",
        "linux/amd64",
        "--base",
        "scratch",
        "--key",
    ];

    let key = keys.key();
    let mut args = base.to_vec();
    args.push(key.to_str().unwrap());
    let err = fails(&gantry_env(
        &example("hello"),
        &args,
        &[("COSIGN_PASSWORD", "not-the-password")],
    ));
    assert!(
        err.contains("cannot decrypt it: wrong password") && err.contains("COSIGN_PASSWORD"),
        "{err}"
    );
    assert!(!err.contains("not-the-password"));

    // No password at all: said as such, not as a wrong one.
    let err = fails(&gantry(&example("hello"), &args));
    assert!(
        err.contains("it is encrypted and COSIGN_PASSWORD is not set"),
        "{err}"
    );

    // A key cut short, or with its contents damaged, is not a password problem.
    let text = std::fs::read_to_string(&key).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    for (name, damaged) in [
        (
            "truncated.key",
            format!("{}\n", lines[..lines.len() / 2].join("\n")),
        ),
        (
            "damaged.key",
            format!(
                "{}\n{}\n{}\n",
                lines[0],
                "QUJD".repeat(20),
                lines[lines.len() - 1]
            ),
        ),
    ] {
        let path = keys.dir.path().join(name);
        std::fs::write(&path, damaged).unwrap();
        let mut args = base.to_vec();
        args.push(path.to_str().unwrap());
        let err = fails(&gantry_env(
            &example("hello"),
            &args,
            &[("COSIGN_PASSWORD", PASSWORD)],
        ));
        assert!(
            err.contains(&format!("{name}: corrupt or truncated")) && !err.contains("password"),
            "{err}"
        );
    }

    let junk = keys.dir.path().join("junk.key");
    std::fs::write(
        &junk,
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let mut args = base.to_vec();
    args.push(junk.to_str().unwrap());
    let err = fails(&gantry_env(
        &example("hello"),
        &args,
        &[("COSIGN_PASSWORD", PASSWORD)],
    ));
    assert!(err.contains("not a cosign private key"), "{err}");

    let mut args = base.to_vec();
    args.push("/nonexistent/cosign.key");
    let err = fails(&gantry_env(
        &example("hello"),
        &args,
        &[("COSIGN_PASSWORD", PASSWORD)],
    ));
    assert!(
        err.contains("signing key /nonexistent/cosign.key: cannot read it"),
        "{err}"
    );

    let err = fails(&gantry(
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
            "key",
        ],
    ));
    assert!(err.contains("--sign key needs --key"), "{err}");
    assert!(
        registry.repositories().is_empty(),
        "a failed signing set-up pushed something: {:?}",
        registry.repositories()
    );
}

#[test]
fn gantry_sign_signs_what_was_pushed_unsigned() {
    let registry = TestRegistry::start();
    let keys = Keys::from_cosign();
    let repo = format!("{}/later", registry.host);
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("r.json");
    ok(&gantry(
        &example("hello"),
        &[
            "build",
            "--repo",
            &repo,
            "--platform",
            "linux/amd64,wasi/wasm",
            "--base",
            "scratch",
            "--sign",
            "none",
            "--json",
            report.to_str().unwrap(),
        ],
    ));
    let (index, platforms) = digests(&json(&std::fs::read(report).unwrap()));
    let out = cosign(
        "cosign-v3",
        &[
            "verify",
            "--key",
            keys.public().to_str().unwrap(),
            &format!("{repo}@{index}"),
        ],
        &keys.root(),
    );
    assert!(!out.status.success(), "unsigned image verified");

    let key = keys.key();
    let stdout = ok(&gantry_env(
        Path::new("."),
        &[
            "sign",
            "--key",
            key.to_str().unwrap(),
            &format!("{repo}:latest"),
        ],
        &[("COSIGN_PASSWORD", PASSWORD)],
    ));
    assert_eq!(stdout.trim(), format!("{repo}@{index}"));
    for digest in std::iter::once(&index).chain(&platforms) {
        verifies(
            "cosign-v3",
            "verify",
            &keys.public(),
            &keys.root(),
            &format!("{repo}@{digest}"),
            &[],
        );
    }
}

#[test]
fn a_registry_that_refuses_the_referrer_manifest_fails_clearly_and_leaves_nothing_dangling() {
    let registry = TestRegistry::start();
    // Everything passes but manifests with an artifactType: the bundle referrers.
    let proxy = RefusingProxy::start(&registry.host, |r| {
        r.method == "PUT"
            && r.target.contains("/manifests/")
            && String::from_utf8_lossy(&r.body).contains("\"artifactType\"")
    });
    let keys = Keys::from_cosign();
    let repo = format!("{}/refusing", proxy.host);
    let key = keys.key();
    let out = gantry_env(
        &example("hello"),
        &[
            "build",
            "--repo",
            &repo,
            "--platform",
            "linux/amd64",
            "--base",
            "scratch",
            "--key",
            key.to_str().unwrap(),
        ],
        &[("COSIGN_PASSWORD", PASSWORD)],
    );
    let stderr = fails(&out);
    assert!(
        stderr.contains(&proxy.host) && stderr.contains("manifest invalid"),
        "the error should name the registry and its answer:\n{stderr}"
    );
    assert!(stderr.contains("gantry sign REF"), "{stderr}");
    assert!(!stderr.contains(PASSWORD));
    // The image is pushed by digest (the error names it), no tag moved, and no
    // fallback index lists a referrer that is not there.
    assert!(registry.tag_digest("refusing", "latest").is_none());
    // The proxy's host is in the reference; read the digest back from the registry.
    let pushed = pushed_reference(&stderr, &repo);
    let digest = pushed.rsplit('@').next().unwrap();
    assert!(
        skopeo(&[
            "inspect",
            "--raw",
            &format!("docker://{}/refusing@{digest}", registry.host)
        ])
        .status
        .success(),
        "the image should stay pushed"
    );
    assert_eq!(
        registry.tag_digest("refusing", &digest.replacen(':', "-", 1)),
        None,
        "a fallback index was written for a referrer the registry refused"
    );
}

#[test]
fn verify_fails_when_a_kind_of_attestation_has_none_by_this_key() {
    let registry = TestRegistry::start();
    let ours = Keys::from_cosign();
    let theirs = Keys::from_cosign();
    // Our key signs the image only; another key signs it and attests its SBOMs.
    let report = build_signed(
        &registry,
        "mixed",
        &ours,
        &["--sbom", "none", "--no-provenance"],
    );
    let (index, _) = digests(&report);
    let image = format!("{}/mixed@{index}", registry.host);
    let their_key = theirs.key();
    ok(&gantry_env(
        Path::new("."),
        &[
            "sign",
            &image,
            "--key",
            their_key.to_str().unwrap(),
            "--sbom",
            "spdx",
            "--no-provenance",
        ],
        &[("COSIGN_PASSWORD", PASSWORD)],
    ));
    // Theirs verifies whole; ours verifies the signature, but no SPDX attestation.
    ok(&gantry(
        Path::new("."),
        &["verify", "--key", theirs.public().to_str().unwrap(), &image],
    ));
    let err = fails(&gantry(
        Path::new("."),
        &["verify", "--key", ours.public().to_str().unwrap(), &image],
    ));
    assert!(
        err.contains("its signature verifies, but no attestation of type https://spdx.dev/Document verifies with this key"),
        "{err}"
    );
}

//! Signatures and attestations judged by the real cosign, v2 and v3: keys from
//! `cosign generate-key-pair` and from `gantry keygen`, the classic `.sig` and the
//! Sigstore bundle referrers, on registries with and without the referrers API.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine as _;
use common::*;
use serde_json::Value;

const PASSWORD: &str = "gantry-test-pass";
/// An empty trusted root: key-based verification needs no CA, but cosign insists on a
/// root once it sees bundles (online it fetches the public-good one over TUF).
const EMPTY_TRUSTED_ROOT: &str = r#"{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1","tlogs":[],"certificateAuthorities":[],"ctlogs":[],"timestampAuthorities":[]}"#;
/// What `build_signed` builds for: two platforms, so three subjects (the index and
/// each platform manifest) get signed and attested.
const PLATFORMS: &str = "linux/amd64,wasi/wasm";
/// The claim type cosign prints for a signature found in a Sigstore bundle referrer.
const BUNDLE_SIGNATURE: &str = "https://sigstore.dev/cosign/sign/v1";
/// The claim type cosign prints for a classic `.sig` signature.
const CLASSIC_SIGNATURE: &str = "cosign container image signature";
/// `(cosign --type, predicate type)` of every attestation a signed build stores.
const ATTESTATIONS: [(&str, &str); 3] = [
    ("spdxjson", "https://spdx.dev/Document"),
    ("cyclonedx", "https://cyclonedx.org/bom"),
    ("slsaprovenance1", "https://slsa.dev/provenance/v1"),
];

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

/// Runs cosign `verb` and asserts it succeeded. For `verify` it also asserts that a
/// signature of the image's digest is among what cosign verified: cosign v3's
/// `verify` passes on any bundle the key made, attestations included, so its exit
/// status alone does not show there is a signature.
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
    out.stdout
}

/// The `critical.type` of each claim `cosign verify` printed about `digest`.
fn verified_types(stdout: &[u8], digest: &str) -> Vec<String> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter(|l| l.trim_start().starts_with('['))
        .flat_map(|l| json(l.as_bytes()).as_array().unwrap().clone())
        .filter(|c| c["critical"]["image"]["docker-manifest-digest"] == digest)
        .map(|c| c["critical"]["type"].as_str().unwrap_or("").to_string())
        .collect()
}

/// `cosign verify-attestation --type kind`: the in-toto statements it verified, each
/// checked to be of the predicate type `kind` stands for and about `digest`.
fn attested(version: &str, keys: &Keys, repo: &str, digest: &str, kind: &str) -> Vec<Value> {
    let predicate_type = ATTESTATIONS
        .iter()
        .find(|(k, _)| *k == kind)
        .expect("a known kind")
        .1;
    let out = verifies(
        version,
        "verify-attestation",
        &keys.public(),
        &keys.root(),
        &format!("{repo}@{digest}"),
        &["--type", kind],
    );
    let statements: Vec<Value> = out
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            let envelope = json(l);
            json(
                &base64::engine::general_purpose::STANDARD
                    .decode(envelope["payload"].as_str().expect("a DSSE payload"))
                    .unwrap(),
            )
        })
        .collect();
    assert!(!statements.is_empty(), "{version}: no {kind} statement");
    for statement in &statements {
        assert_eq!(statement["predicateType"], predicate_type, "{statement}");
        assert!(
            subjects_of(statement).contains(&digest.to_string()),
            "the {kind} statement is not about {digest}: {}",
            statement["subject"]
        );
    }
    statements
}

/// The `sha256:…` digests an in-toto statement names as its subjects.
fn subjects_of(statement: &Value) -> Vec<String> {
    statement["subject"]
        .as_array()
        .expect("subjects")
        .iter()
        .map(|s| format!("sha256:{}", s["digest"]["sha256"].as_str().unwrap()))
        .collect()
}

fn build_signed(host: &str, repo: &str, keys: &Keys, extra: &[&str]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("r.json");
    let repo = format!("{host}/{repo}");
    let key = keys.key();
    let mut args = vec![
        "build",
        "--repo",
        &repo,
        "--platform",
        PLATFORMS,
        "--base",
        "scratch",
        "--no-tlog-upload",
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

/// Checks an index of referrers names a signature, both SBOMs and the provenance,
/// and nothing else.
fn assert_lists_every_predicate(index: &Value, what: &str) {
    let mut kinds: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            m["annotations"]["dev.sigstore.bundle.predicateType"]
                .as_str()
                .unwrap_or("")
        })
        .collect();
    kinds.sort();
    let mut expected: Vec<&str> = std::iter::once(BUNDLE_SIGNATURE)
        .chain(ATTESTATIONS.iter().map(|(_, p)| *p))
        .collect();
    expected.sort();
    assert_eq!(kinds, expected, "what {what} lists");
}

/// What `gantry verify` printed, as `"<storage> <predicate type>"` with whether it
/// verified, sorted.
fn gantry_found(stdout: &str) -> Vec<(String, bool)> {
    let mut found: Vec<(String, bool)> = json(stdout.as_bytes())
        .as_array()
        .expect("a list of what was found")
        .iter()
        .map(|f| {
            (
                format!(
                    "{} {}",
                    f["storage"].as_str().unwrap_or(""),
                    f["predicate_type"].as_str().unwrap_or("")
                ),
                f["verified"] == true,
            )
        })
        .collect();
    found.sort();
    found
}

/// The `.sig` signature, the signature bundle and each attestation bundle: what
/// `gantry verify` finds (by [`gantry_found`]) of a build `build_signed` made.
fn everything_signed() -> Vec<String> {
    let mut expected: Vec<String> = std::iter::once(BUNDLE_SIGNATURE)
        .chain(ATTESTATIONS.iter().map(|(_, p)| *p))
        .map(|p| format!("referrer {p}"))
        .chain(["sig-tag ".to_string()])
        .collect();
    expected.sort();
    expected
}

/// Checks `gantry verify` found exactly [`everything_signed`], and verified each.
fn assert_gantry_verified_all(stdout: &str) {
    let expected: Vec<(String, bool)> =
        everything_signed().into_iter().map(|e| (e, true)).collect();
    assert_eq!(gantry_found(stdout), expected, "what gantry verify found");
}

/// A manifest as stored, byte for byte (`reference` as skopeo writes it).
fn raw(reference: &str) -> Vec<u8> {
    skopeo_ok(&["inspect", "--raw", reference])
}

/// `(index digest, [platform manifest digests])`, found without gantry: the index's
/// bytes hashed with sha256sum, and each manifest it lists fetched with `fetch` and
/// hashed again. The `--json` report must say the same, and the index must hold one
/// manifest per platform asked for.
fn digests(
    report: &Value,
    index_bytes: &[u8],
    fetch: impl Fn(&str) -> Vec<u8>,
) -> (String, Vec<String>) {
    let index = sha256sum(index_bytes);
    let platforms: Vec<String> = json(index_bytes)["manifests"]
        .as_array()
        .expect("an image index")
        .iter()
        .map(|m| m["digest"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(platforms.len(), PLATFORMS.split(',').count());
    for digest in &platforms {
        assert_eq!(&sha256sum(&fetch(digest)), digest, "stored under {digest}");
    }
    let image = &report["images"][0];
    assert_eq!(image["digest"], index.as_str(), "the report's index digest");
    let reported: Vec<&str> = image["platforms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["digest"].as_str().unwrap())
        .collect();
    assert_eq!(reported, platforms, "the report's platform digests");
    (index, platforms)
}

/// [`digests`] of what `repo` (`host/name`) has under `latest`.
fn pushed(report: &Value, repo: &str) -> (String, Vec<String>) {
    digests(report, &raw(&format!("docker://{repo}:latest")), |d| {
        raw(&format!("docker://{repo}@{d}"))
    })
}

/// `sha256-<hex>`: the tag a subject's fallback index lives under (`.sig` appended
/// for its classic signatures).
fn digest_tag(digest: &str) -> String {
    digest.replacen(':', "-", 1)
}

/// The tags `repo` has, sorted, from the registry's tags list (none when it has no tag).
fn tags(registry: &TestRegistry, repo: &str) -> Vec<String> {
    let (status, body) = registry
        .get(&format!("/v2/{repo}/tags/list"))
        .expect("the registry answers");
    let text = String::from_utf8_lossy(&body);
    let mut tags: Vec<String> = match status {
        200 => json(&body)["tags"]
            .as_array()
            .map(|t| t.iter().map(|t| t.as_str().unwrap().to_string()).collect())
            .unwrap_or_default(),
        404 if text.contains("NAME_UNKNOWN") => Vec::new(),
        _ => panic!("tags of {repo}: {status} {text}"),
    };
    tags.sort();
    tags
}

/// PUTs a manifest as it is, for the fallback index: skopeo 1.9 will not copy an
/// index of artifacts without rewriting it. Returns the status and the answer.
fn put_manifest(host: &str, repo: &str, reference: &str, body: &[u8]) -> (u16, String) {
    let media_type = json(body)["mediaType"]
        .as_str()
        .expect("a mediaType")
        .to_string();
    let mut s = TcpStream::connect(host).expect("connect to the registry");
    write!(
        s,
        "PUT /v2/{repo}/manifests/{reference} HTTP/1.0\r\nHost: {host}\r\nContent-Type: {media_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    let mut response = Vec::new();
    s.read_to_end(&mut response).unwrap();
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

#[test]
fn cosign_v2_and_v3_verify_signatures_and_attestations() {
    let registry = TestRegistry::start();
    let keys = Keys::from_cosign();
    let report = build_signed(&registry.host, "app", &keys, &[]);
    let repo = format!("{}/app", registry.host);
    let (index, platforms) = pushed(&report, &repo);

    for version in ["cosign-v3", "cosign-v2"] {
        for digest in std::iter::once(&index).chain(&platforms) {
            let out = verifies(
                version,
                "verify",
                &keys.public(),
                &keys.root(),
                &format!("{repo}@{digest}"),
                &[],
            );
            // Both read the bundles when they are there (v2 once given a trusted root).
            assert!(
                verified_types(&out, digest).contains(&BUNDLE_SIGNATURE.to_string()),
                "{version}: {}",
                String::from_utf8_lossy(&out)
            );
        }
        // The index's and the wasm image's attestations.
        for digest in [&index, &platforms[1]] {
            for (kind, _) in ATTESTATIONS {
                let statement = &attested(version, &keys, &repo, digest, kind)[0];
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

    // gantry's own verifier agrees: the `.sig` signature, the signature bundle and the
    // three attestations, each verified; and it prints the SBOM it finds.
    let public = keys.public();
    let wasm_ref = format!("{repo}@{}", platforms[1]);
    let out = gantry(
        Path::new("."),
        &[
            "verify",
            "--insecure-ignore-tlog",
            "--key",
            public.to_str().unwrap(),
            &wasm_ref,
        ],
    );
    assert_gantry_verified_all(&ok(&out));
    let sbom = ok(&gantry(
        Path::new("."),
        &[
            "sbom",
            "--insecure-ignore-tlog",
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
    // Each entry, and the summary, says the signature is not this key's.
    let bad = "the signature does not verify with this key";
    assert!(
        err.contains(&format!(
            "is signed, but no signature verifies with this key: {bad}"
        )) && err
            .lines()
            .filter(|l| l.contains("NOT verified"))
            .all(|l| l.contains(&format!("NOT verified: {bad}")))
            && err.contains("NOT verified: "),
        "{err}"
    );
    // The private key where the public one belongs is named as such.
    let err = fails(&gantry(
        Path::new("."),
        &[
            "verify",
            "--insecure-ignore-tlog",
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
        vec![
            "sbom",
            "--insecure-ignore-tlog",
            "--key",
            public.to_str().unwrap(),
            &wasm_ref,
        ],
        vec![
            "verify",
            "--insecure-ignore-tlog",
            "--key",
            public.to_str().unwrap(),
            &wasm_ref,
        ],
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_gantry"))
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
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
    // cosign refuses the foreign key for the signature made with ours.
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
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && stderr.contains("failed to verify signature")
            && stderr.contains("accepted signatures do not match threshold, Found: 0"),
        "a foreign key verified the signature, or cosign failed for another reason: {stderr}"
    );

    // The classic .sig on its own (as on a registry that lost the referrers): cosign
    // verifies it without any bundle in sight.
    let classic = format!("{}/classic", registry.host);
    let sig_tag = format!("{}.sig", digest_tag(&index));
    skopeo_ok(&[
        "copy",
        "--all",
        "--preserve-digests",
        &format!("docker://{repo}@{index}"),
        &format!("docker://{classic}:x"),
    ]);
    skopeo_ok(&[
        "copy",
        &format!("docker://{repo}:{sig_tag}"),
        &format!("docker://{classic}:{sig_tag}"),
    ]);
    assert_eq!(tags(&registry, "classic"), [sig_tag.as_str(), "x"]);
    for version in ["cosign-v3", "cosign-v2"] {
        let out = verifies(
            version,
            "verify",
            &keys.public(),
            &keys.root(),
            &format!("{classic}@{index}"),
            &[],
        );
        assert_eq!(verified_types(&out, &index), [CLASSIC_SIGNATURE]);
    }

    // Registry without the referrers API: each subject (the index and each platform,
    // by the test's own count) has a `.sig` tag and a fallback index listing its
    // signature bundle and three attestations, each stored as listed and about it.
    let subjects: Vec<&String> = std::iter::once(&index).chain(&platforms).collect();
    let expected_subjects = 1 + PLATFORMS.split(',').count();
    assert!(expected_subjects > 1);
    assert_eq!(subjects.len(), expected_subjects);
    let mut expected_tags: Vec<String> = subjects
        .iter()
        .flat_map(|s| [digest_tag(s), format!("{}.sig", digest_tag(s))])
        .chain(["latest".to_string()])
        .collect();
    expected_tags.sort();
    assert_eq!(tags(&registry, "app"), expected_tags, "the tags of {repo}");
    let mut listed = Vec::new();
    for subject in &subjects {
        let fallback = json(&raw(&format!("docker://{repo}:{}", digest_tag(subject))));
        assert_lists_every_predicate(&fallback, "the fallback index");
        for entry in fallback["manifests"].as_array().unwrap() {
            let digest = entry["digest"].as_str().unwrap();
            let bytes = raw(&format!("docker://{repo}@{digest}"));
            assert_eq!(sha256sum(&bytes), digest, "the referrer listed as {digest}");
            let referrer = json(&bytes);
            assert_eq!(referrer["subject"]["digest"], subject.as_str());
            assert_eq!(referrer["artifactType"], entry["artifactType"]);
            listed.push(digest.to_string());
        }
    }
    assert_eq!(listed.len(), expected_subjects * (1 + ATTESTATIONS.len()));

    // The report names what the registry holds: each `.sig` by its digest, and the
    // referrers the fallback indexes list.
    let attachments = report["images"][0]["attachments"].as_array().unwrap();
    let mut sig_tags: Vec<(String, String)> = attachments
        .iter()
        .filter(|a| a["storage"] == "sig-tag")
        .map(|a| {
            (
                a["subject"].as_str().unwrap().to_string(),
                a["digest"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    sig_tags.sort();
    let mut stored_sigs: Vec<(String, String)> = subjects
        .iter()
        .map(|s| {
            let sig = raw(&format!("docker://{repo}:{}.sig", digest_tag(s)));
            (s.to_string(), sha256sum(&sig))
        })
        .collect();
    stored_sigs.sort();
    assert_eq!(sig_tags, stored_sigs, "the report's .sig attachments");
    let mut referrers: Vec<String> = attachments
        .iter()
        .filter(|a| a["storage"] == "referrer")
        .map(|a| a["digest"].as_str().unwrap().to_string())
        .collect();
    referrers.sort();
    listed.sort();
    assert_eq!(referrers, listed, "the report's referrers");
}

#[test]
fn cosign_v3_verifies_the_bundle_referrers_alone() {
    let registry = TestRegistry::start();
    let keys = Keys::from_cosign();
    let report = build_signed(&registry.host, "app", &keys, &[]);
    let repo = format!("{}/app", registry.host);
    let (index, platforms) = pushed(&report, &repo);
    let subjects: Vec<&String> = std::iter::once(&index).chain(&platforms).collect();

    // A fresh repository gets the image and, per subject, only its referrers and the
    // fallback index that lists them: no `.sig`, no `.att`.
    let copy = format!("{}/bundles", registry.host);
    skopeo_ok(&[
        "copy",
        "--all",
        "--preserve-digests",
        &format!("docker://{repo}@{index}"),
        &format!("docker://{copy}@{index}"),
    ]);
    // Without the list of referrers nothing verifies: there is no other way in.
    let out = cosign(
        "cosign-v3",
        &[
            "verify",
            "--key",
            keys.public().to_str().unwrap(),
            &format!("{copy}@{index}"),
        ],
        &keys.root(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("no signatures found"),
        "the copy verified before its bundles were there: {stderr}"
    );
    let mut copied = 0;
    for subject in &subjects {
        let tag = digest_tag(subject);
        let fallback = raw(&format!("docker://{repo}:{tag}"));
        assert_lists_every_predicate(&json(&fallback), "the fallback index");
        for entry in json(&fallback)["manifests"].as_array().unwrap() {
            let digest = entry["digest"].as_str().unwrap();
            skopeo_ok(&[
                "copy",
                "--preserve-digests",
                &format!("docker://{repo}@{digest}"),
                &format!("docker://{copy}@{digest}"),
            ]);
            copied += 1;
        }
        let (status, answer) = put_manifest(&registry.host, "bundles", &tag, &fallback);
        assert_eq!(status, 201, "{answer}");
        assert!(
            raw(&format!("docker://{copy}:{tag}")) == fallback,
            "{tag} changed"
        );
    }
    assert_eq!(copied, subjects.len() * (1 + ATTESTATIONS.len()));
    let mut expected_tags: Vec<String> = subjects.iter().map(|s| digest_tag(s)).collect();
    expected_tags.sort();
    assert_eq!(
        tags(&registry, "bundles"),
        expected_tags,
        "no .sig, no .att"
    );

    // cosign v3 finds each signature bundle, about its own subject.
    for digest in &subjects {
        let out = verifies(
            "cosign-v3",
            "verify",
            &keys.public(),
            &keys.root(),
            &format!("{copy}@{digest}"),
            &[],
        );
        assert!(
            verified_types(&out, digest).contains(&BUNDLE_SIGNATURE.to_string()),
            "no signature bundle for {digest}: {}",
            String::from_utf8_lossy(&out)
        );
    }
    // And each attestation bundle, with what it should say.
    for digest in &subjects {
        for (kind, _) in ATTESTATIONS {
            for statement in attested("cosign-v3", &keys, &copy, digest, kind) {
                let predicate = statement["predicate"].to_string();
                if kind == "slsaprovenance1" {
                    assert_eq!(
                        statement["predicate"]["buildDefinition"]["buildType"],
                        "https://gantry.dev/buildtypes/go-image/v1"
                    );
                    let mut named = subjects_of(&statement);
                    named.sort();
                    let mut all: Vec<String> = subjects.iter().map(|s| s.to_string()).collect();
                    all.sort();
                    assert_eq!(named, all, "the provenance's subjects");
                } else if *digest == &index {
                    // The index's SBOM names each platform image.
                    for platform in &platforms {
                        let hex = &platform["sha256:".len()..];
                        assert!(predicate.contains(hex), "{kind} lacks {platform}");
                    }
                } else {
                    for purl in [
                        "pkg:golang/github.com/google/uuid@v1.6.0",
                        "pkg:golang/golang.org/x/text@v0.21.0",
                    ] {
                        assert!(predicate.contains(purl), "{kind} of {digest} lacks {purl}");
                    }
                }
            }
        }
    }
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

    let repo = format!("{}/app", registry.host);
    let r1 = build_signed(&registry.host, "app", &first, &["--legacy-attestations"]);
    let (index, _) = pushed(&r1, &repo);
    let r2 = build_signed(&registry.host, "app", &second_keys, &[]);
    assert_eq!(pushed(&r2, &repo).0, index, "the rebuild moved latest");
    let sig_tag = format!("{}.sig", digest_tag(&index));
    let att_tag = format!("{}.att", digest_tag(&index));
    let layers = |tag: &str| {
        json(&raw(&format!("docker://{repo}:{tag}")))["layers"]
            .as_array()
            .unwrap()
            .len()
    };
    assert_eq!(
        layers(&sig_tag),
        2,
        "the second signature replaced the first"
    );
    // Only the first build asked for `.att`: one layer per attestation.
    assert_eq!(layers(&att_tag), ATTESTATIONS.len());
    // Both signers' bundles are listed: a signature and each attestation per key.
    let fallback = json(&raw(&format!("docker://{repo}:{}", digest_tag(&index))));
    assert_eq!(
        fallback["manifests"].as_array().unwrap().len(),
        2 * (1 + ATTESTATIONS.len()),
        "{fallback}"
    );

    let classic = format!("{}/classic", registry.host);
    skopeo_ok(&[
        "copy",
        "--all",
        "--preserve-digests",
        &format!("docker://{repo}@{index}"),
        &format!("docker://{classic}:x"),
    ]);
    for tag in [&sig_tag, &att_tag] {
        skopeo_ok(&[
            "copy",
            &format!("docker://{repo}:{tag}"),
            &format!("docker://{classic}:{tag}"),
        ]);
    }
    assert_eq!(
        tags(&registry, "classic"),
        [att_tag.as_str(), sig_tag.as_str(), "x"]
    );
    for keys in [&first, &second_keys] {
        let out = verifies(
            "cosign-v2",
            "verify",
            &keys.public(),
            &keys.root(),
            &format!("{classic}@{index}"),
            &[],
        );
        assert_eq!(verified_types(&out, &index), [CLASSIC_SIGNATURE]);
        let out = verifies(
            "cosign-v3",
            "verify",
            &keys.public(),
            &keys.root(),
            &format!("{repo}@{index}"),
            &[],
        );
        assert!(verified_types(&out, &index).contains(&BUNDLE_SIGNATURE.to_string()));
    }
    for (kind, _) in ATTESTATIONS {
        attested("cosign-v2", &first, &classic, &index, kind);
    }
}

#[test]
fn referrers_api_registry_lists_the_bundles() {
    let registry = TestRegistry::start_with_referrers_api();
    // gantry pushes through a proxy that logs each request it forwards.
    let proxy = FaultProxy::start(&registry.host);
    let keys = Keys::from_cosign();
    let report = build_signed(&proxy.host, "app", &keys, &[]);
    let (index, platforms) = pushed(&report, &format!("{}/app", registry.host));
    let subjects: Vec<&String> = std::iter::once(&index).chain(&platforms).collect();
    // The test's own count: the index and each platform, each with a signature and
    // every attestation.
    let expected_subjects = 1 + PLATFORMS.split(',').count();
    let per_subject = 1 + ATTESTATIONS.len();
    assert!(expected_subjects > 1 && per_subject > 1);
    assert_eq!(subjects.len(), expected_subjects);
    let log = proxy.log();
    let puts = |path: &str| -> Vec<u16> {
        log.iter()
            .filter(|e| e.method == "PUT" && e.path == path)
            .map(|e| e.status)
            .collect()
    };
    // The registry's own referrers endpoint lists our bundles for each subject, and
    // each was PUT once, and taken.
    let mut referrers = Vec::new();
    for subject in &subjects {
        let (status, body) = registry
            .get(&format!("/v2/app/referrers/{subject}"))
            .unwrap();
        assert_eq!(status, 200, "the registry serves the referrers API");
        let listed = json(&body);
        assert_lists_every_predicate(&listed, "the referrers API");
        for entry in listed["manifests"].as_array().unwrap() {
            let digest = entry["digest"].as_str().unwrap();
            assert_eq!(
                puts(&format!("/v2/app/manifests/{digest}")),
                [201],
                "{digest}"
            );
            referrers.push(digest.to_string());
        }
    }
    assert_eq!(referrers.len(), expected_subjects * per_subject);
    // The registry lists them itself, so no fallback index is written (not even
    // tried), while the `.sig` tags are.
    for subject in &subjects {
        let fallback = format!("/v2/app/manifests/{}", digest_tag(subject));
        assert_eq!(
            puts(&fallback),
            Vec::<u16>::new(),
            "a fallback index was written at {fallback}"
        );
        assert!(
            puts(&format!("{fallback}.sig")).contains(&201),
            "no .sig for {subject}: the proxy log misses tag PUTs"
        );
        let (status, _) = registry.get(&fallback).unwrap();
        assert_eq!(status, 404, "a fallback index is stored at {fallback}");
    }
    let fallback_tags: Vec<String> = tags(&registry, "app")
        .into_iter()
        .filter(|t| t.starts_with("sha256-") && !t.contains('.'))
        .collect();
    assert_eq!(fallback_tags, Vec::<String>::new());
    // The report says each referrer is listed by the API, and names the same ones.
    let mut reported: Vec<String> = report["images"][0]["attachments"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["storage"] == "referrer")
        .map(|a| {
            assert_eq!(a["listed_by"], "referrers-api", "{a}");
            a["digest"].as_str().unwrap().to_string()
        })
        .collect();
    reported.sort();
    referrers.sort();
    assert_eq!(reported, referrers, "the report's referrers");
    let repo = format!("{}/app", registry.host);
    for version in ["cosign-v3", "cosign-v2"] {
        let out = verifies(
            version,
            "verify",
            &keys.public(),
            &keys.root(),
            &format!("{repo}@{index}"),
            &[],
        );
        assert!(verified_types(&out, &index).contains(&BUNDLE_SIGNATURE.to_string()));
        attested(version, &keys, &repo, &platforms[1], "spdxjson");
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
            PLATFORMS,
            "--base",
            "scratch",
            "--oci-layout",
            layout.to_str().unwrap(),
            "--no-tlog-upload",
            "--key",
            keys.key().to_str().unwrap(),
            "--json",
            report.to_str().unwrap(),
        ],
        &[("COSIGN_PASSWORD", PASSWORD)],
    ));
    // The digests from the layout's own files, hashed with sha256sum.
    let (index, _) = digests(
        &json(&std::fs::read(report).unwrap()),
        &raw(&format!("oci:{}:latest", layout.display())),
        |d| std::fs::read(layout.join("blobs/sha256").join(&d["sha256:".len()..])).unwrap(),
    );
    let sig_tag = format!("{}.sig", digest_tag(&index));
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
        &format!("oci:{}:{sig_tag}", layout.display()),
        &format!("docker://{repo}:{sig_tag}"),
    ]);
    let out = verifies(
        "cosign-v2",
        "verify",
        &keys.public(),
        &keys.root(),
        &format!("{repo}@{index}"),
        &[],
    );
    assert_eq!(verified_types(&out, &index), [CLASSIC_SIGNATURE]);
    // gantry verifies the layout itself, no registry involved.
    let public = keys.public();
    assert_gantry_verified_all(&ok(&gantry(
        Path::new("."),
        &[
            "verify",
            "--insecure-ignore-tlog",
            "--key",
            public.to_str().unwrap(),
            &format!("oci:{}:latest", layout.display()),
        ],
    )));
    let cdx = ok(&gantry(
        Path::new("."),
        &[
            "sbom",
            "--insecure-ignore-tlog",
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
        "--no-tlog-upload",
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
            PLATFORMS,
            "--base",
            "scratch",
            "--sign",
            "none",
            "--json",
            report.to_str().unwrap(),
        ],
    ));
    let (index, platforms) = pushed(&json(&std::fs::read(report).unwrap()), &repo);
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
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("no signatures found"),
        "the unsigned image verified, or cosign failed for another reason: {stderr}"
    );
    // No signature tag: only the fallback indexes listing the unsigned SBOMs and
    // provenance, one per subject, beside the tag.
    let mut expected: Vec<String> = std::iter::once(&index)
        .chain(&platforms)
        .map(|d| d.replacen(':', "-", 1))
        .chain(["latest".to_string()])
        .collect();
    expected.sort();
    assert_eq!(tags(&registry, "later"), expected);

    let key = keys.key();
    let stdout = ok(&gantry_env(
        Path::new("."),
        &[
            "sign",
            "--no-tlog-upload",
            "--key",
            key.to_str().unwrap(),
            &format!("{repo}:latest"),
        ],
        &[("COSIGN_PASSWORD", PASSWORD)],
    ));
    assert_eq!(stdout.trim(), format!("{repo}@{index}"));
    for digest in std::iter::once(&index).chain(&platforms) {
        let out = verifies(
            "cosign-v3",
            "verify",
            &keys.public(),
            &keys.root(),
            &format!("{repo}@{digest}"),
            &[],
        );
        assert!(verified_types(&out, digest).contains(&BUNDLE_SIGNATURE.to_string()));
    }
}

/// Whether a manifest is a referrer: its top-level object names both an
/// `artifactType` and a `subject`. An index listing referrers (the fallback index)
/// carries `artifactType` only in its entries, so it is not one.
fn is_referrer_manifest(body: &[u8]) -> bool {
    serde_json::from_slice::<Value>(body)
        .is_ok_and(|m| m.get("artifactType").is_some() && m.get("subject").is_some())
}

/// How many referrer manifests the refusing proxy refused.
static REFUSED: AtomicUsize = AtomicUsize::new(0);

#[test]
fn a_registry_that_refuses_the_referrer_manifest_fails_clearly_and_leaves_nothing_dangling() {
    // The predicate tells a referrer from an index that lists one.
    let listed = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/vnd.dev.sigstore.bundle.v0.3+json","digest":"sha256:00","size":1}"#;
    let referrer =
        format!(r#"{{"schemaVersion":2,"artifactType":"x","subject":{listed},"layers":[]}}"#);
    let index = format!(r#"{{"schemaVersion":2,"manifests":[{listed}]}}"#);
    assert!(is_referrer_manifest(referrer.as_bytes()));
    assert!(!is_referrer_manifest(index.as_bytes()));

    let registry = TestRegistry::start();
    // The proxy next to the registry logs what reaches it; the one in front refuses
    // the bundle referrers and forwards everything else.
    let log = FaultProxy::start(&registry.host);
    let proxy = RefusingProxy::start(&log.host, |r| {
        let refuse =
            r.method == "PUT" && r.target.contains("/manifests/") && is_referrer_manifest(&r.body);
        if refuse {
            REFUSED.fetch_add(1, Ordering::SeqCst);
        }
        refuse
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
            "--no-tlog-upload",
            "--key",
            key.to_str().unwrap(),
        ],
        &[("COSIGN_PASSWORD", PASSWORD)],
    );
    let stderr = fails(&out);
    // The image is pushed by digest (the error names it; the proxy's host is in the
    // reference), and stored under that digest.
    let pushed = pushed_reference(&stderr, &repo);
    let digest = pushed.rsplit('@').next().unwrap();
    let stored = raw(&format!("docker://{}/refusing@{digest}", registry.host));
    assert_eq!(sha256sum(&stored), digest, "the image should stay pushed");
    let seen = log.log();
    let puts = |reference: &str| -> Vec<u16> {
        seen.iter()
            .filter(|e| {
                e.method == "PUT" && e.path == format!("/v2/refusing/manifests/{reference}")
            })
            .map(|e| e.status)
            .collect()
    };
    assert_eq!(puts(digest), [201], "the image's manifest PUT: {seen:?}");
    // No fallback index was even tried: it would list a referrer that is not there.
    assert_eq!(
        puts(&digest_tag(digest)),
        Vec::<u16>::new(),
        "a fallback index was written for a referrer the registry refused"
    );
    // No tag moved.
    assert_eq!(puts("latest"), Vec::<u16>::new());
    let stored_tags = tags(&registry, "refusing");
    assert!(
        !stored_tags
            .iter()
            .any(|t| t == "latest" || *t == digest_tag(digest)),
        "{stored_tags:?}"
    );
    // It failed because the referrers were refused, and says where and why, and what to
    // run once the registry is fixed.
    assert!(
        REFUSED.load(Ordering::SeqCst) > 0,
        "no referrer was pushed:\n{stderr}"
    );
    assert!(
        stderr.contains(&proxy.host) && stderr.contains("manifest invalid"),
        "the error should name the registry and its answer:\n{stderr}"
    );
    assert!(stderr.contains("gantry sign REF"), "{stderr}");
    assert!(!stderr.contains(PASSWORD));
}

#[test]
fn verify_fails_when_a_kind_of_attestation_has_none_by_this_key() {
    let registry = TestRegistry::start();
    let ours = Keys::from_cosign();
    let theirs = Keys::from_cosign();
    // Our key signs the image only; another key signs it and attests its SBOMs.
    let report = build_signed(
        &registry.host,
        "mixed",
        &ours,
        &["--sbom", "none", "--no-provenance"],
    );
    let (index, _) = pushed(&report, &format!("{}/mixed", registry.host));
    let image = format!("{}/mixed@{index}", registry.host);
    let their_key = theirs.key();
    ok(&gantry_env(
        Path::new("."),
        &[
            "sign",
            &image,
            "--no-tlog-upload",
            "--key",
            their_key.to_str().unwrap(),
            "--sbom",
            "spdx",
            "--no-provenance",
        ],
        &[("COSIGN_PASSWORD", PASSWORD)],
    ));
    // Theirs verifies whole: their `.sig` signature, signature bundle and SPDX
    // attestation (our `.sig` signature is found too, and does not verify with theirs).
    let found = gantry_found(&ok(&gantry(
        Path::new("."),
        &[
            "verify",
            "--insecure-ignore-tlog",
            "--key",
            theirs.public().to_str().unwrap(),
            &image,
        ],
    )));
    let verified: Vec<&str> = found
        .iter()
        .filter(|(_, v)| *v)
        .map(|(f, _)| f.as_str())
        .collect();
    let spdx = format!("referrer {}", ATTESTATIONS[0].1);
    let sign = format!("referrer {BUNDLE_SIGNATURE}");
    assert_eq!(verified, [&sign, &spdx, "sig-tag "], "{found:?}");
    // Ours verifies the signature, but no SPDX attestation.
    let err = fails(&gantry(
        Path::new("."),
        &[
            "verify",
            "--insecure-ignore-tlog",
            "--key",
            ours.public().to_str().unwrap(),
            &image,
        ],
    ));
    assert!(
        err.contains("its signature verifies, but no attestation of type https://spdx.dev/Document verifies with this key"),
        "{err}"
    );
}

#[test]
fn a_registry_and_a_layout_get_the_same_signatures_made_once() {
    let registry = TestRegistry::start();
    let keys = Keys::from_cosign();
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let repo = format!("{}/both", registry.host);
    let key = keys.key();
    ok(&gantry_env(
        &example("hello"),
        &[
            "build",
            "--repo",
            &repo,
            "--oci-layout",
            layout.to_str().unwrap(),
            "--platform",
            PLATFORMS,
            "--base",
            "scratch",
            "--no-tlog-upload",
            "--key",
            key.to_str().unwrap(),
        ],
        &[("COSIGN_PASSWORD", PASSWORD)],
    ));
    let index = sha256sum(&raw(&format!("docker://{repo}:latest")));
    assert_eq!(
        index,
        sha256sum(&raw(&format!("oci:{}:latest", layout.display()))),
        "the layout holds the pushed index"
    );
    // ECDSA signatures differ each time they are made: the same bytes in both places
    // mean one signing, stored twice.
    let sig = format!("{}.sig", digest_tag(&index));
    let fallback = digest_tag(&index);
    for tag in [&sig, &fallback] {
        let pushed = raw(&format!("docker://{repo}:{tag}"));
        let written = raw(&format!("oci:{}:{tag}", layout.display()));
        assert_eq!(
            sha256sum(&pushed),
            sha256sum(&written),
            "{tag} differs between the registry and the layout: signed twice?\n{}\n{}",
            String::from_utf8_lossy(&pushed),
            String::from_utf8_lossy(&written)
        );
    }
    // And what was stored twice verifies in both places.
    verifies(
        "cosign-v3",
        "verify",
        &keys.public(),
        &keys.root(),
        &format!("{repo}@{index}"),
        &[],
    );
    assert_gantry_verified_all(&ok(&gantry(
        Path::new("."),
        &[
            "verify",
            "--insecure-ignore-tlog",
            "--key",
            keys.public().to_str().unwrap(),
            &format!("oci:{}:latest", layout.display()),
        ],
    )));
}

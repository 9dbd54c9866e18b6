//! `--oci-archive`: the whole signed multi-platform result as one tar of an OCI
//! layout, read back by skopeo, unpacked by GNU tar, judged by cosign and `gantry
//! verify`, and byte-identical when built again.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::Value;

const PASSWORD: &str = "gantry-test-pass";
const PLATFORMS: &str = "linux/amd64,linux/arm64,wasi/wasm";
/// 2023-11-14 22:13:20 UTC: every time in the archive.
const EPOCH: &str = "1700000000";
/// An empty trusted root: cosign v2 wants one once it sees bundles, and key-based
/// verification needs no CA.
const EMPTY_TRUSTED_ROOT: &str = r#"{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1","tlogs":[],"certificateAuthorities":[],"ctlogs":[],"timestampAuthorities":[]}"#;

/// Builds examples/hello for [`PLATFORMS`] into the archive `file`, signed with
/// `key` when there is one; returns stdout and the `--json` report.
fn build_archive(file: &Path, key: Option<&Path>) -> (String, Value) {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("r.json");
    let mut args = vec![
        "build",
        "--platform",
        PLATFORMS,
        "--base",
        "scratch",
        "--oci-archive",
        file.to_str().unwrap(),
        "--json",
        report.to_str().unwrap(),
    ];
    if let Some(key) = key {
        args.extend(["--no-tlog-upload", "--key", key.to_str().unwrap()]);
    }
    let stdout = ok(&gantry_env(
        &example("hello"),
        &args,
        &[("COSIGN_PASSWORD", PASSWORD), ("SOURCE_DATE_EPOCH", EPOCH)],
    ));
    (stdout, json(&std::fs::read(report).unwrap()))
}

/// Unpacks `file` into a new directory with GNU tar.
fn untar(file: &Path, into: &Path) {
    std::fs::create_dir_all(into).unwrap();
    let out = Command::new("tar")
        .arg("-xf")
        .arg(file)
        .arg("-C")
        .arg(into)
        .output()
        .expect("run tar");
    assert!(
        out.status.success(),
        "tar -x: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every file under `root`, relative path -> bytes.
fn files(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                out.insert(path.strip_prefix(root).unwrap().to_path_buf(), bytes);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn platforms(index: &Value) -> Vec<String> {
    index["manifests"]
        .as_array()
        .expect("an index")
        .iter()
        .map(|m| {
            format!(
                "{}/{}",
                m["platform"]["os"].as_str().unwrap(),
                m["platform"]["architecture"].as_str().unwrap()
            )
        })
        .collect()
}

#[test]
fn the_signed_multi_platform_result_as_one_reproducible_archive() {
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = cosign_key_pair(&dir.path().join("keys"), PASSWORD);
    let root = dir.path().join("keys/root.json");
    std::fs::write(&root, EMPTY_TRUSTED_ROOT).unwrap();
    let archive = dir.path().join("hello.tar");
    let (stdout, report) = build_archive(&archive, Some(&key));

    // The index as skopeo reads it from the archive, hashed by sha256sum.
    let src = format!("oci-archive:{}:latest", archive.display());
    let index_bytes = skopeo_ok(&["inspect", "--raw", &src]);
    let index = json(&index_bytes);
    let digest = sha256sum(&index_bytes);
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    assert_eq!(
        platforms(&index),
        ["linux/amd64", "linux/arm64", "wasi/wasm"]
    );
    assert_eq!(
        stdout.trim(),
        format!("oci-archive:{}@{digest}", archive.display()),
        "stdout names the archive, not the temporary layout behind it"
    );
    assert_eq!(report["images"][0]["digest"], digest.as_str());
    assert_eq!(
        report["images"][0]["repository"],
        format!("oci-archive:{}", archive.display())
    );

    // skopeo copies every platform out of it, digests kept.
    let copy = dir.path().join("copy");
    skopeo_ok(&[
        "copy",
        "--all",
        "--preserve-digests",
        &src,
        &format!("oci:{}:latest", copy.display()),
    ]);
    assert_eq!(
        sha256sum(&skopeo_ok(&[
            "inspect",
            "--raw",
            &format!("oci:{}:latest", copy.display())
        ])),
        digest
    );

    // Reproducible: the same source built again, elsewhere, gives the same bytes.
    // Unsigned, since an ECDSA signature is new each time it is made; signing adds
    // to the layout but changes nothing of the images.
    let (first, second) = (
        dir.path().join("u1/hello.tar"),
        dir.path().join("u2/hello.tar"),
    );
    for file in [&first, &second] {
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        let (stdout, _) = build_archive(file, None);
        assert!(stdout.trim().ends_with(&format!("@{digest}")), "{stdout}");
    }
    assert!(
        std::fs::read(&first).unwrap() == std::fs::read(&second).unwrap(),
        "two builds of the same source gave two archives"
    );

    // What GNU tar sees: sorted, owned by 0:0 without names, fixed modes and time.
    let out = Command::new("tar")
        .args(["-tv", "--numeric-owner", "--full-time", "-f"])
        .arg(&archive)
        .env("TZ", "UTC")
        .output()
        .expect("run tar");
    assert!(out.status.success());
    let listing = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut names = Vec::new();
    for line in listing.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (mode, owner, date, time, name) =
            (fields[0], fields[1], fields[3], fields[4], fields[5]);
        assert_eq!(owner, "0/0", "{line}");
        assert_eq!((date, time), ("2023-11-14", "22:13:20"), "{line}");
        let expected = if name.ends_with('/') {
            "drwxr-xr-x"
        } else {
            "-rw-r--r--"
        };
        assert_eq!(mode, expected, "{line}");
        names.push(name.to_string());
    }
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "entries in path order");
    assert!(names.contains(&"oci-layout".to_string()) && names.contains(&"index.json".to_string()));

    // Unpacked, it is a layout whose signatures and attestations verify.
    let extracted = dir.path().join("extracted");
    untar(&archive, &extracted);
    let found = json(
        ok(&gantry(
            Path::new("."),
            &[
                "verify",
                "--insecure-ignore-tlog",
                "--key",
                public.to_str().unwrap(),
                &format!("oci:{}:latest", extracted.display()),
            ],
        ))
        .as_bytes(),
    );
    let found = found.as_array().expect("what gantry verify found");
    let mut kinds: Vec<String> = found
        .iter()
        .map(|f| {
            assert_eq!(f["verified"], true, "{f}");
            format!(
                "{} {}",
                f["storage"].as_str().unwrap_or(""),
                f["predicate_type"].as_str().unwrap_or("")
            )
        })
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "referrer https://cyclonedx.org/bom",
            "referrer https://sigstore.dev/cosign/sign/v1",
            "referrer https://slsa.dev/provenance/v1",
            "referrer https://spdx.dev/Document",
            "sig-tag ",
        ]
    );

    // And cosign is the judge of the classic signature of every manifest: copied
    // from the unpacked layout to a registry, with each `.sig`.
    let registry = TestRegistry::start();
    let repo = format!("{}/fromarchive", registry.host);
    let layout = format!("oci:{}", extracted.display());
    skopeo_ok(&[
        "copy",
        "--all",
        "--preserve-digests",
        &format!("{layout}:latest"),
        &format!("docker://{repo}:latest"),
    ]);
    let subjects: Vec<String> = std::iter::once(digest.clone())
        .chain(
            index["manifests"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["digest"].as_str().unwrap().to_string()),
        )
        .collect();
    for subject in &subjects {
        let sig_tag = format!("{}.sig", subject.replacen(':', "-", 1));
        skopeo_ok(&[
            "copy",
            &format!("{layout}:{sig_tag}"),
            &format!("docker://{repo}:{sig_tag}"),
        ]);
        let out = Command::new(tool("cosign-v2"))
            .args(["verify", "--key"])
            .arg(&public)
            .args(["--insecure-ignore-tlog=true", "--allow-http-registry"])
            .arg("--trusted-root")
            .arg(&root)
            .arg(format!("{repo}@{subject}"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cosign verify {subject}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn with_oci_layout_too_both_are_written_and_hold_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let archive = dir.path().join("out.tar");
    let stdout = ok(&gantry(
        &example("hello"),
        &[
            "build",
            "--platform",
            "linux/amd64",
            "--base",
            "scratch",
            "--oci-layout",
            layout.to_str().unwrap(),
            "--oci-archive",
            archive.to_str().unwrap(),
        ],
    ));
    assert!(
        stdout.starts_with(&format!("oci:{}@sha256:", layout.display())),
        "the layout is named when there is one: {stdout}"
    );
    let extracted = dir.path().join("extracted");
    untar(&archive, &extracted);
    let written = files(&layout);
    assert!(written.contains_key(Path::new("index.json")));
    assert_eq!(files(&extracted), written, "the archive holds the layout");
    // Nothing left beside the archive.
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["extracted", "layout", "out.tar"]);
}

#[test]
fn an_archive_that_cannot_be_written_fails_before_building() {
    let dir = tempfile::tempdir().unwrap();
    let go = RecordingGo::new();
    for (target, why) in [
        (dir.path().join("missing/out.tar"), "cannot be written"),
        (dir.path().to_path_buf(), "is a directory"),
    ] {
        let stderr = fails(&gantry_env(
            &example("hello"),
            &[
                "build",
                "--platform",
                "linux/amd64",
                "--base",
                "scratch",
                "--oci-archive",
                target.to_str().unwrap(),
            ],
            &[go.env()],
        ));
        assert!(
            stderr.contains("--oci-archive") && stderr.contains(why),
            "{stderr}"
        );
    }
    assert!(go.builds().is_empty(), "built anyway: {:?}", go.builds());
}

#[test]
fn the_action_input_writes_the_archive_beside_its_layout() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("action.tar");
    let temp = dir.path().join("runner-temp");
    std::fs::create_dir_all(&temp).unwrap();
    let stdout = ok(&gantry_env(
        &example("hello"),
        &["action"],
        &[
            ("INPUT_PUSH", "false"),
            ("INPUT_PLATFORMS", "linux/amd64,wasi/wasm"),
            ("INPUT_BASE-IMAGE", "scratch"),
            ("INPUT_SIGN", "none"),
            ("INPUT_OCI-ARCHIVE", archive.to_str().unwrap()),
            ("RUNNER_TEMP", temp.to_str().unwrap()),
        ],
    ));
    let (_, digest) = stdout.trim().rsplit_once('@').expect("a digest");
    let index = skopeo_ok(&[
        "inspect",
        "--raw",
        &format!("oci-archive:{}:latest", archive.display()),
    ]);
    assert_eq!(sha256sum(&index), digest);
    assert_eq!(platforms(&json(&index)), ["linux/amd64", "wasi/wasm"]);
}

/// `--tarball` (ko's): the image as the tar `docker load` reads, named REPO:TAG; read
/// back by skopeo's docker-archive transport and its program run; the same bytes from
/// a second build; several platforms refused before anything is built.
#[test]
fn tarball_is_a_docker_archive_of_one_image() {
    let dir = tempfile::tempdir().unwrap();
    let build = |file: &std::path::Path| {
        ok(&gantry(
            &example("hello"),
            &[
                "build",
                "--repo",
                "registry.gantry-test.invalid/hello",
                "--push=false",
                "--platform",
                "linux/amd64",
                "--base",
                "scratch",
                "--tag",
                "v1",
                "--tarball",
                file.to_str().unwrap(),
            ],
        ))
    };
    let (first, second) = (dir.path().join("a.tar"), dir.path().join("b.tar"));
    let printed = build(&first);
    assert!(
        printed.starts_with(&format!("docker-archive:{}@sha256:", first.display())),
        "{printed}"
    );
    build(&second);
    assert_eq!(
        std::fs::read(&first).unwrap(),
        std::fs::read(&second).unwrap(),
        "the same build gave another tarball"
    );
    let named = format!(
        "docker-archive:{}:registry.gantry-test.invalid/hello:v1",
        first.display()
    );
    let config = json(&skopeo_ok(&["inspect", "--config", &named]));
    assert_eq!(config["architecture"], "amd64", "{config}");
    let (root, config) = pull_and_extract(&named, "linux", "amd64", None);
    assert!(run_entrypoint(&root.path().join("rootfs"), &config).contains("hello from linux/amd64"));

    let go = RecordingGo::new();
    let err = fails(&gantry_env(
        &example("hello"),
        &[
            "build",
            "--platform",
            "linux/amd64,linux/arm64",
            "--tarball",
            dir.path().join("c.tar").to_str().unwrap(),
        ],
        &[go.env()],
    ));
    assert!(err.contains("--tarball holds one platform"), "{err}");
    assert!(go.builds().is_empty(), "{:?}", go.builds());
}

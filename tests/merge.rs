//! Scaling out: one `gantry build --push-by-digest` process per platform, standing in
//! for the jobs of a CI matrix, then `gantry merge` of their reports into one index.
//! Judged by skopeo (what the registry holds), the real cosign (signatures and
//! attestations) and the merged image's own binary, run.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use base64::Engine as _;
use common::*;
use serde_json::Value;

const PASSWORD: &str = "gantry-merge-pass";
/// What the jobs build, one each, in the order the index must list them.
const PLATFORMS: [&str; 3] = ["linux/amd64", "linux/arm64", "wasi/wasm"];
/// The claim type cosign prints for a signature found in a Sigstore bundle referrer.
const BUNDLE_SIGNATURE: &str = "https://sigstore.dev/cosign/sign/v1";
/// The claim type cosign prints for a classic `.sig` signature.
const CLASSIC_SIGNATURE: &str = "cosign container image signature";

/// One job: `gantry build --push-by-digest` of examples/hello for `platform` into
/// `repo`, its `--json` report written into `dir`. Returns the report's path and
/// what it says.
fn job(repo: &str, platform: &str, dir: &Path, extra: &[&str]) -> (PathBuf, Value) {
    let report = dir.join(format!("{}.json", platform.replace('/', "-")));
    let mut args = vec![
        "build",
        "--repo",
        repo,
        "--platform",
        platform,
        "--base",
        "scratch",
        "--push-by-digest",
        "--json",
        report.to_str().unwrap(),
    ];
    args.extend(extra);
    let out = gantry_env(&example("hello"), &args, &[("COSIGN_PASSWORD", PASSWORD)]);
    let printed = ok(&out);
    let parsed = json(&std::fs::read(&report).unwrap());
    let image = &parsed["images"][0];
    assert_eq!(printed.trim(), image["reference"].as_str().unwrap());
    assert_eq!(image["tags"], serde_json::json!([]), "a job reports no tag");
    (report, parsed)
}

/// The tags of `repo` that are not signatures or referrer lists (`sha256-…`).
fn plain_tags(registry: &TestRegistry, repo: &str) -> Vec<String> {
    registry
        .tags(repo)
        .into_iter()
        .map(|(tag, _)| tag)
        .filter(|tag| !tag.starts_with("sha256-"))
        .collect()
}

fn merge(args: &[&str]) -> Output {
    let mut full = vec!["merge"];
    full.extend(args);
    gantry_env(Path::new("."), &full, &[("COSIGN_PASSWORD", PASSWORD)])
}

/// The real cosign v3, sealed and offline (a key needs no transparency log).
fn cosign(args: &[&str]) -> Output {
    seal(&mut Command::new(tool("cosign-v3")))
        .args(args)
        .args(["--insecure-ignore-tlog=true", "--allow-http-registry"])
        .output()
        .unwrap()
}

/// `cosign verify --key` passes on `reference` (`REPO@sha256:…`), and a signature of
/// that very digest is among what it verified (its exit status alone would also
/// pass on an attestation the key made).
fn assert_signed(public: &Path, reference: &str) {
    let out = cosign(&["verify", "--key", public.to_str().unwrap(), reference]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "cosign verify {reference}: {stderr}");
    let digest = reference.rsplit_once('@').unwrap().1;
    let types: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.trim_start().starts_with('['))
        .flat_map(|l| json(l.as_bytes()).as_array().cloned().unwrap_or_default())
        .filter(|c| c["critical"]["image"]["docker-manifest-digest"] == digest)
        .filter_map(|c| c["critical"]["type"].as_str().map(str::to_string))
        .collect();
    assert!(
        types
            .iter()
            .any(|t| t == BUNDLE_SIGNATURE || t == CLASSIC_SIGNATURE),
        "cosign verify {reference} passed without a signature of it among {types:?}"
    );
}

/// The in-toto statements `cosign verify-attestation --type spdxjson` accepted.
fn spdx_statements(public: &Path, reference: &str) -> Vec<Value> {
    let out = cosign(&[
        "verify-attestation",
        "--key",
        public.to_str().unwrap(),
        "--type",
        "spdxjson",
        reference,
    ]);
    assert!(
        out.status.success(),
        "cosign verify-attestation {reference}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
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
        .collect()
}

#[test]
fn merge_makes_one_signed_index_of_the_jobs_images_and_tags_it_last() {
    let registry = TestRegistry::start();
    let keys = tempfile::tempdir().unwrap();
    let (key, public) = cosign_key_pair(keys.path(), PASSWORD);
    let key = key.to_str().unwrap();
    let repo = format!("{}/hello", registry.host);
    let reports = tempfile::tempdir().unwrap();

    // The jobs, each a process of its own, pushing by digest: the first signs its
    // image, the others do not, so what signs those is the merge.
    let jobs: Vec<(PathBuf, Value)> = PLATFORMS
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let signing: &[&str] = if i == 0 {
                &["--no-tlog-upload", "--key", key]
            } else {
                &["--sign", "none"]
            };
            job(&repo, p, reports.path(), signing)
        })
        .collect();
    assert_eq!(
        plain_tags(&registry, "hello"),
        Vec::<String>::new(),
        "a push by digest moved a tag"
    );
    let manifests: Vec<String> = jobs
        .iter()
        .map(|(_, r)| r["images"][0]["digest"].as_str().unwrap().to_string())
        .collect();
    assert_signed(&public, &format!("{repo}@{}", manifests[0]));
    let unsigned = format!("{repo}@{}", manifests[1]);
    assert!(
        !cosign(&["verify", "--key", public.to_str().unwrap(), &unsigned])
            .status
            .success(),
        "cosign accepts {unsigned} before the merge signed it"
    );

    // The reports in another order than the index's: the order is the platforms'.
    let from = |i: usize| jobs[i].0.to_str().unwrap().to_string();
    let result = reports.path().join("merged.json");
    let args = [
        "--repo",
        &repo,
        "--from",
        &from(2),
        "--from",
        &from(0),
        "--from",
        &from(1),
        "--no-tlog-upload",
        "--key",
        key,
        "--json",
        result.to_str().unwrap(),
    ];
    let printed = ok(&merge(&args)).trim().to_string();
    let (name, index) = printed.rsplit_once('@').expect("REPO@DIGEST");
    assert_eq!(name, repo);

    // What the registry holds, read by skopeo and hashed by sha256sum.
    let raw = skopeo_ok(&["inspect", "--raw", &format!("docker://{printed}")]);
    assert_eq!(sha256sum(&raw), index);
    let listed = json(&raw);
    assert_eq!(
        listed["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let entries: Vec<(String, String)> = listed["manifests"]
        .as_array()
        .expect("an index")
        .iter()
        .map(|m| {
            (
                format!(
                    "{}/{}",
                    m["platform"]["os"].as_str().unwrap(),
                    m["platform"]["architecture"].as_str().unwrap()
                ),
                m["digest"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = PLATFORMS
        .iter()
        .map(|p| p.to_string())
        .zip(manifests.iter().cloned())
        .collect();
    assert_eq!(entries, expected, "the index lists the jobs' images");
    assert_eq!(
        registry.tag_digest("hello", "latest").as_deref(),
        Some(index),
        "latest names the index"
    );
    assert_eq!(plain_tags(&registry, "hello"), ["latest"]);

    // The report has a build's shape.
    let report = json(&std::fs::read(&result).unwrap());
    let image = &report["images"][0];
    assert_eq!(image["reference"], printed.as_str());
    assert_eq!(image["tags"], serde_json::json!(["latest"]));
    let reported: Vec<&str> = image["platforms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["digest"].as_str().unwrap())
        .collect();
    assert_eq!(reported, manifests);

    // cosign accepts the index and every image in it, and an image's SBOM.
    assert_signed(&public, &printed);
    for digest in &manifests {
        assert_signed(&public, &format!("{repo}@{digest}"));
    }
    let arm64 = format!("{repo}@{}", manifests[1]);
    let statements = spdx_statements(&public, &arm64);
    assert!(!statements.is_empty(), "no SPDX attestation");
    for statement in &statements {
        assert_eq!(statement["predicateType"], "https://spdx.dev/Document");
        let subject = format!(
            "sha256:{}",
            statement["subject"][0]["digest"]["sha256"]
                .as_str()
                .unwrap()
        );
        assert_eq!(subject, manifests[1], "an SBOM of the arm64 image");
        assert!(
            statement["predicate"]
                .to_string()
                .contains("pkg:golang/example.com/hello"),
            "the SBOM names the program: {}",
            statement["predicate"]
        );
    }

    // Again: the same index, and the same key's signature of it is not added twice.
    let sig_tag = format!("{}.sig", index.replacen(':', "-", 1));
    let sig_before = registry.tag_digest("hello", &sig_tag).expect("a .sig tag");
    let again = ok(&merge(&args));
    assert_eq!(again.trim(), printed, "a second merge gives another index");
    assert_eq!(
        registry.tag_digest("hello", &sig_tag).as_deref(),
        Some(sig_before.as_str()),
        "the second merge signed the index again"
    );

    // The index a single build of all three platforms makes, byte for byte.
    let together = ok(&gantry(
        &example("hello"),
        &[
            "build",
            "--repo",
            &format!("{}/together", registry.host),
            "--platform",
            &PLATFORMS.join(","),
            "--base",
            "scratch",
            "--sign",
            "none",
            "--push-by-digest",
        ],
    ));
    assert_eq!(
        together.trim().rsplit_once('@').unwrap().1,
        index,
        "merging gave another index than one build of every platform"
    );

    // Run what the tag names, as a linux/amd64 node picks it.
    let (rootfs, config) =
        pull_and_extract(&format!("docker://{repo}:latest"), "linux", "amd64", None);
    let said = run_entrypoint(&rootfs.path().join("rootfs"), &config);
    assert!(said.starts_with("hello from linux/amd64"), "{said}");
}

#[test]
fn a_manifest_missing_from_the_repository_fails_the_merge_and_moves_no_tag() {
    let registry = TestRegistry::start();
    let repo = format!("{}/app", registry.host);
    let reports = tempfile::tempdir().unwrap();
    // Nothing attached by the job itself: what is attached below is the merge's.
    let (amd64, _) = job(
        &repo,
        "linux/amd64",
        reports.path(),
        &["--sign", "none", "--sbom", "none", "--no-provenance"],
    );
    // A job that pushed elsewhere, its report edited to claim this repository.
    let elsewhere = format!("{}/elsewhere", registry.host);
    let (wasm, mut claimed) = job(&elsewhere, "wasi/wasm", reports.path(), &["--sign", "none"]);
    claimed["images"][0]["repository"] = Value::from(repo.as_str());
    std::fs::write(&wasm, serde_json::to_vec(&claimed).unwrap()).unwrap();
    let missing = claimed["images"][0]["digest"].as_str().unwrap().to_string();
    let stored = registry.manifests("app");

    let from = |p: &Path| p.to_str().unwrap().to_string();
    let out = merge(&[
        "--repo",
        &repo,
        "--from",
        &from(&amd64),
        "--from",
        &from(&wasm),
        "--sign",
        "none",
    ]);
    let stderr = fails(&out);
    assert!(
        stderr.contains(&format!(
            "{repo}@{missing} (wasi/wasm, from {})",
            wasm.display()
        )),
        "the error names neither the missing image nor its report:\n{stderr}"
    );
    assert!(
        stderr.contains("nothing was pushed and no tag moved"),
        "{stderr}"
    );
    assert_eq!(plain_tags(&registry, "app"), Vec::<String>::new());
    assert_eq!(registry.manifests("app"), stored, "the failed merge pushed");

    // One platform is one image, not an index: tagged, with its SBOM and
    // provenance attached unsigned, as an unsigned build attaches them.
    let printed = ok(&merge(&[
        "--repo",
        &repo,
        "--from",
        &from(&amd64),
        "--sign",
        "none",
        "--tag",
        "v1",
    ]));
    let digest = printed.trim().rsplit_once('@').unwrap().1.to_string();
    assert_eq!(
        registry.tag_digest("app", "v1").as_deref(),
        Some(digest.as_str())
    );
    let referrers = json(&skopeo_ok(&[
        "inspect",
        "--raw",
        &format!("docker://{repo}:{}", digest.replacen(':', "-", 1)),
    ]));
    let mut types: Vec<&str> = referrers["manifests"]
        .as_array()
        .expect("a fallback index of referrers")
        .iter()
        .map(|m| m["artifactType"].as_str().unwrap_or_default())
        .collect();
    types.sort();
    assert_eq!(
        types,
        [
            "application/spdx+json",
            "application/vnd.cyclonedx+json",
            "application/vnd.in-toto+json"
        ]
    );
}

/// The value of `name` in a `$GITHUB_OUTPUT` file (`name<<DELIMITER`, the value, the
/// delimiter).
fn step_output(file: &Path, name: &str) -> Option<String> {
    let text = std::fs::read_to_string(file).unwrap();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if let Some((key, delimiter)) = line.split_once("<<") {
            let value: Vec<&str> = lines.by_ref().take_while(|l| *l != delimiter).collect();
            if key == name {
                return Some(value.join("\n"));
            }
        }
    }
    None
}

#[test]
fn the_action_builds_by_digest_in_each_job_and_merges_a_directory_of_results() {
    let registry = TestRegistry::start();
    let repo = format!("{}/acme/hello", registry.host);
    let github = [
        ("GITHUB_ACTIONS", "true"),
        ("GITHUB_REPOSITORY", "acme/hello"),
        ("GITHUB_SERVER_URL", "https://github.com"),
        ("GITHUB_SHA", "0123456789abcdef0123456789abcdef01234567"),
    ];
    // Where actions/download-artifact puts each job's artifact: a directory each.
    let downloads = tempfile::tempdir().unwrap();
    for (i, platform) in ["linux/amd64", "wasi/wasm"].iter().enumerate() {
        let temp = tempfile::tempdir().unwrap();
        let mut env = vec![
            ("INPUT_REPOSITORY", repo.as_str()),
            ("INPUT_PLATFORMS", platform),
            ("INPUT_BASE-IMAGE", "scratch"),
            ("INPUT_TAGS", "latest"),
            ("INPUT_PUSH-BY-DIGEST", "true"),
            ("RUNNER_TEMP", temp.path().to_str().unwrap()),
        ];
        env.extend(github);
        ok(&gantry_env(&example("hello"), &["action"], &env));
        let artifact = downloads.path().join(format!("gantry-result-{i}"));
        std::fs::create_dir(&artifact).unwrap();
        std::fs::copy(
            temp.path().join("gantry-result.json"),
            artifact.join("gantry-result.json"),
        )
        .unwrap();
    }
    assert_eq!(
        plain_tags(&registry, "acme/hello"),
        Vec::<String>::new(),
        "a job moved a tag"
    );

    let temp = tempfile::tempdir().unwrap();
    let outputs = temp.path().join("github_output");
    std::fs::write(&outputs, "").unwrap();
    let mut env = vec![
        ("INPUT_REPOSITORY", repo.as_str()),
        ("INPUT_MERGE-FROM", downloads.path().to_str().unwrap()),
        ("INPUT_TAGS", "v1\nlatest"),
        ("RUNNER_TEMP", temp.path().to_str().unwrap()),
        ("GITHUB_OUTPUT", outputs.to_str().unwrap()),
    ];
    env.extend(github);
    let printed = ok(&gantry_env(Path::new("."), &["action"], &env));
    let index = printed.trim().rsplit_once('@').unwrap().1.to_string();
    assert_eq!(
        step_output(&outputs, "digest").as_deref(),
        Some(index.as_str())
    );
    for tag in ["v1", "latest"] {
        assert_eq!(
            registry.tag_digest("acme/hello", tag).as_deref(),
            Some(index.as_str()),
            "{tag}"
        );
    }
    let listed = json(&skopeo_ok(&[
        "inspect",
        "--raw",
        &format!("docker://{repo}@{index}"),
    ]));
    let platforms: Vec<&str> = listed["manifests"]
        .as_array()
        .expect("an index")
        .iter()
        .map(|m| m["platform"]["os"].as_str().unwrap())
        .collect();
    assert_eq!(platforms, ["linux", "wasi"]);
    // GHCR links the package to its repository through the index's annotation.
    assert_eq!(
        listed["annotations"]["org.opencontainers.image.source"],
        "https://github.com/acme/hello"
    );
}

//! The GitHub API calls a keyless run in Actions makes, against a local server that
//! records them: attestation bundles to `POST /repos/{owner}/{repo}/attestations`
//! (body `{"bundle": …}`), each distinct statement once (the store finds a bundle by
//! every subject its statement names), and on a release event the SBOMs and the result
//! as release assets (`POST …/releases/{id}/assets?name=…`, raw body). A 403 is a
//! warning naming the permission, never a failed run.

mod common;

use base64::Engine as _;
use common::*;
use serde_json::{json, Value};

const TOKEN: &str = "ghs_gantry_test_token_1234";

fn github(request: &Recorded) -> (u16, String) {
    if request.target == "/repos/octo-org/octo-repo/attestations" {
        return (201, json!({"id": 101}).to_string());
    }
    if let Some(query) = request
        .target
        .strip_prefix("/repos/octo-org/octo-repo/releases/7/assets?")
    {
        let name = query
            .trim_start_matches("name=")
            .split('&')
            .next()
            .unwrap_or_default();
        let asset = json!({
            "url": "https://api.github.com/repos/octo-org/octo-repo/releases/assets/1",
            "browser_download_url": format!("https://github.com/octo-org/octo-repo/releases/download/v1.0.0/{name}"),
            "id": 1, "node_id": "RA_1", "name": name, "label": null, "state": "uploaded",
            "content_type": "application/json", "size": request.body.len(), "digest": null,
            "download_count": 0, "created_at": "2026-11-24T00:00:00Z",
            "updated_at": "2026-11-24T00:00:00Z", "uploader": null,
        });
        return (201, asset.to_string());
    }
    (404, json!({"message": "Not Found"}).to_string())
}

fn forbidden(_: &Recorded) -> (u16, String) {
    (
        403,
        json!({"message": "Resource not accessible by integration", "documentation_url": "https://docs.github.com/rest"}).to_string(),
    )
}

/// The platforms the release builds are asked for.
const PLATFORMS: [&str; 2] = ["linux/amd64", "wasi/wasm"];
/// What each image and the index are attested with on their own: the two SBOMs (both
/// formats are the default), each a statement about that subject alone.
const SBOM_PREDICATES: [&str; 2] = ["https://spdx.dev/Document", "https://cyclonedx.org/bom"];
/// And together: one SLSA provenance statement naming the index and every image.
const PROVENANCE: &str = "https://slsa.dev/provenance/v1";

/// A keyless `gantry build` as an Actions step on a release event, talking to `api`.
fn release_build(
    stack: &KeylessStack,
    registry: &TestRegistry,
    api: &RecordingServer,
    dir: &std::path::Path,
) -> std::process::Output {
    let event = dir.join("event.json");
    std::fs::write(
        &event,
        json!({"action": "published", "release": {
            "id": 7, "tag_name": "v1.0.0",
            "upload_url": format!("{}/repos/octo-org/octo-repo/releases/7/assets{{?name,label}}", api.url),
        }})
        .to_string(),
    )
    .unwrap();
    let repo = format!("{}/released", registry.host);
    let mut vars = stack.actions_env();
    for (k, v) in [
        ("GITHUB_ACTIONS", "true".to_string()),
        ("GITHUB_API_URL", api.url.clone()),
        ("GITHUB_REPOSITORY", "octo-org/octo-repo".into()),
        ("GITHUB_TOKEN", TOKEN.into()),
        ("GITHUB_EVENT_NAME", "release".into()),
        ("GITHUB_EVENT_PATH", event.display().to_string()),
        ("GITHUB_OUTPUT", dir.join("output").display().to_string()),
        (
            "GITHUB_STEP_SUMMARY",
            dir.join("summary").display().to_string(),
        ),
    ] {
        vars.push((k, v));
    }
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let sbom_dir = dir.join("sbom");
    let result = dir.join("result.json");
    gantry_env(
        &example("hello"),
        &[
            "build",
            "--repo",
            &repo,
            "--platform",
            &PLATFORMS.join(","),
            "--base",
            "scratch",
            "--sign",
            "keyless",
            "--fulcio-url",
            &stack.fulcio,
            "--no-tlog-upload",
            "--sbom-dir",
            sbom_dir.to_str().unwrap(),
            "--json",
            result.to_str().unwrap(),
        ],
        &vars,
    )
}

#[test]
fn attestations_go_to_the_attestation_store_and_sboms_to_the_release() {
    let stack = KeylessStack::start();
    let registry = TestRegistry::start();
    let api = RecordingServer::start(github);
    let dir = tempfile::tempdir().unwrap();
    let out = release_build(&stack, &registry, &api, dir.path());
    let stdout = ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr
            .lines()
            .all(|l| l.starts_with("::add-mask::") || !l.contains(TOKEN)),
        "the token leaked:\n{stderr}"
    );
    assert!(!stderr.contains("::warning::"), "{stderr}");

    // What the store must receive comes from the test's own arithmetic, not from
    // gantry's report: each platform asked for gives an image, and with more than one
    // there is an index; each of them has its own SBOM statements, and one provenance
    // statement names them all. The store indexes a bundle by every subject in its
    // statement, so that provenance is posted once, not once per subject (which would
    // make `gh attestation verify` find it `subjects` times on any of them).
    let subjects = PLATFORMS.len() + 1;
    let expected_attestations = subjects * SBOM_PREDICATES.len() + 1;
    let requests = api.recorded();
    let stored: Vec<&Recorded> = requests
        .iter()
        .filter(|r| r.target.ends_with("/attestations"))
        .collect();
    assert_eq!(
        stored.len(),
        expected_attestations,
        "one POST per distinct statement: {subjects} subjects x {} SBOMs + 1 provenance",
        SBOM_PREDICATES.len()
    );
    // And what each is about, with the subjects read from the registry (the index
    // gantry printed, and the manifests skopeo finds in it): per subject an SPDX and
    // a CycloneDX SBOM about it alone, and a provenance statement about the whole
    // build (the index and every manifest, one statement naming them all).
    let index = stdout.trim();
    let (_, index_digest) = index.rsplit_once('@').unwrap();
    let listed = json(&skopeo_ok(&[
        "inspect",
        "--raw",
        &format!("docker://{index}"),
    ]));
    let mut digests: Vec<String> = listed["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["digest"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(digests.len(), PLATFORMS.len(), "{listed}");
    digests.push(index_digest.to_string());
    digests.sort();
    let mut expected: Vec<(String, Vec<String>)> = Vec::new();
    for digest in &digests {
        for sbom in SBOM_PREDICATES {
            expected.push((sbom.to_string(), vec![digest.clone()]));
        }
    }
    expected.push((PROVENANCE.to_string(), digests.clone()));
    expected.sort();
    let mut attested: Vec<(String, Vec<String>)> = stored
        .iter()
        .map(|r| {
            let body: Value = serde_json::from_slice(&r.body).unwrap();
            let payload = base64::engine::general_purpose::STANDARD
                .decode(
                    body["bundle"]["dsseEnvelope"]["payload"]
                        .as_str()
                        .expect("a DSSE payload"),
                )
                .unwrap();
            let statement: Value = serde_json::from_slice(&payload).unwrap();
            let mut subjects: Vec<String> = statement["subject"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| format!("sha256:{}", s["digest"]["sha256"].as_str().unwrap()))
                .collect();
            subjects.sort();
            (
                statement["predicateType"].as_str().unwrap().to_string(),
                subjects,
            )
        })
        .collect();
    let provenances: Vec<&Vec<String>> = attested
        .iter()
        .filter(|(predicate, _)| predicate == PROVENANCE)
        .map(|(_, named)| named)
        .collect();
    assert_eq!(
        provenances,
        [&digests],
        "one provenance posted, naming all {subjects} subjects"
    );
    attested.sort();
    assert_eq!(attested, expected);
    for request in &stored {
        assert_eq!(request.method, "POST");
        assert_eq!(
            request.header("authorization"),
            Some(format!("Bearer {TOKEN}").as_str())
        );
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        let bundle = &body["bundle"];
        assert_eq!(
            bundle["mediaType"],
            "application/vnd.dev.sigstore.bundle.v0.3+json"
        );
        assert!(
            bundle["verificationMaterial"]["certificate"]["rawBytes"].is_string(),
            "{bundle}"
        );
        assert_eq!(
            bundle["dsseEnvelope"]["payloadType"],
            "application/vnd.in-toto+json"
        );
        assert_eq!(
            body.as_object().unwrap().len(),
            1,
            "the body is {{bundle}} only"
        );
    }

    // Release assets: every SBOM file and the result, each its file's bytes. One SBOM
    // file per subject and format (the SBOM predicates).
    let uploads: Vec<&Recorded> = requests
        .iter()
        .filter(|r| r.target.contains("/releases/7/assets?"))
        .collect();
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(dir.path().join("sbom"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), subjects * SBOM_PREDICATES.len(), "{files:?}");
    files.push(dir.path().join("result.json"));
    assert_eq!(uploads.len(), files.len(), "{uploads:?}");
    for file in files {
        let name = file.file_name().unwrap().to_str().unwrap();
        let upload = uploads
            .iter()
            .find(|u| u.target.ends_with(&format!("?name={name}")))
            .unwrap_or_else(|| panic!("{name} was not uploaded"));
        assert_eq!(upload.method, "POST");
        assert_eq!(upload.body, std::fs::read(&file).unwrap(), "{name}");
        assert!(upload.header("content-type").is_some());
    }
    assert!(
        stderr.contains(&format!(
            "stored {expected_attestations} attestations in GitHub's attestation store"
        )),
        "{stderr}"
    );
}

#[test]
fn a_forbidden_attestation_store_is_a_warning_that_names_the_permission() {
    let stack = KeylessStack::start();
    let registry = TestRegistry::start();
    let api = RecordingServer::start(forbidden);
    let dir = tempfile::tempdir().unwrap();
    let out = release_build(&stack, &registry, &api, dir.path());
    let stdout = ok(&out);
    assert!(
        stdout.contains("@sha256:"),
        "the run still reports its image"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("::warning::") && l.contains("attestations: write")),
        "{stderr}"
    );
    let stored = api
        .recorded()
        .iter()
        .filter(|r| r.target.ends_with("/attestations"))
        .count();
    assert_eq!(stored, 1, "after a 403 it should stop asking");
}

//! A build that does not sign still attaches its SBOMs and provenance, unsigned, as
//! OCI 1.1 referrers: read back by oras (an independent client) through the registry's
//! referrers API and through the fallback tag of a registry without one.

mod common;

use common::*;
use serde_json::Value;

const SPDX: &str = "application/spdx+json";
const CYCLONEDX: &str = "application/vnd.cyclonedx+json";
const IN_TOTO: &str = "application/vnd.in-toto+json";

/// Builds examples/hello for two platforms into `repo`, unsigned; returns the index
/// digest and the platform manifests' digests.
fn build_unsigned(repo: &str, extra: &[&str]) -> (String, Vec<String>) {
    let mut args = vec![
        "build",
        "--repo",
        repo,
        "--platform",
        "linux/amd64,linux/arm64",
        "--base",
        "scratch",
    ];
    args.extend(extra);
    let printed = ok(&gantry(&example("hello"), &args));
    let index = printed.trim().rsplit_once('@').unwrap().1.to_string();
    let manifest = json(&skopeo_ok(&[
        "inspect",
        "--raw",
        &format!("docker://{repo}@{index}"),
    ]));
    let images = manifest["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["digest"].as_str().unwrap().to_string())
        .collect();
    (index, images)
}

/// The layer of the referrer `digest`, fetched by oras.
fn referrer_document(repo: &str, digest: &str) -> Value {
    let manifest = json(&oras_ok(&[
        "manifest",
        "fetch",
        &format!("{repo}@{digest}"),
    ]));
    let layer = manifest["layers"][0]["digest"].as_str().unwrap();
    json(&oras_ok(&[
        "blob",
        "fetch",
        "--output",
        "-",
        &format!("{repo}@{layer}"),
    ]))
}

fn unsigned_referrers_are_listed_and_name_their_subject(registry: &TestRegistry) {
    let repo = format!("{}/unsigned", registry.host);
    let (index, images) = build_unsigned(&repo, &[]);
    for subject in std::iter::once(&index).chain(&images) {
        let listed = oras_referrers(&format!("{repo}@{subject}"));
        let types: Vec<&str> = listed.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(
            types,
            [SPDX, CYCLONEDX, IN_TOTO],
            "referrers of {subject}: {listed:?}"
        );
        for (artifact_type, digest) in &listed {
            let document = referrer_document(&repo, digest);
            match artifact_type.as_str() {
                SPDX => {
                    let described = document["packages"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .flat_map(|p| p["checksums"].as_array().cloned().unwrap_or_default())
                        .any(|c| {
                            Some(c["checksumValue"].as_str().unwrap())
                                == subject.strip_prefix("sha256:")
                        });
                    assert!(
                        described,
                        "the SPDX SBOM of {subject} does not name it: {document}"
                    );
                }
                CYCLONEDX => {
                    assert_eq!(document["bomFormat"], "CycloneDX", "{document}");
                    assert!(
                        document.to_string().contains(&subject[7..]),
                        "the CycloneDX SBOM of {subject} does not name it"
                    );
                }
                _ => {
                    // The provenance: one in-toto statement about the index and every
                    // image, referring to each.
                    assert_eq!(document["_type"], "https://in-toto.io/Statement/v1");
                    assert_eq!(document["predicateType"], "https://slsa.dev/provenance/v1");
                    let named: Vec<&str> = document["subject"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|s| s["digest"]["sha256"].as_str().unwrap())
                        .collect();
                    assert_eq!(named.len(), 3, "{document}");
                    assert!(named.contains(&&subject[7..]), "{document}");
                }
            }
        }
    }

    // A rerun finds them stored and stores nothing new.
    let before = registry.manifests("unsigned");
    build_unsigned(&repo, &[]);
    assert_eq!(
        registry.manifests("unsigned"),
        before,
        "the rerun stored more"
    );

    // --sbom none --no-provenance attaches nothing.
    let bare = format!("{}/bare", registry.host);
    let (index, _) = build_unsigned(&bare, &["--sbom", "none", "--no-provenance"]);
    assert_eq!(oras_referrers(&format!("{bare}@{index}")), []);
}

#[test]
fn unsigned_sboms_and_provenance_through_the_fallback_tag() {
    let registry = TestRegistry::start();
    unsigned_referrers_are_listed_and_name_their_subject(&registry);
}

#[test]
fn unsigned_sboms_and_provenance_through_the_referrers_api() {
    let registry = TestRegistry::start_with_referrers_api();
    unsigned_referrers_are_listed_and_name_their_subject(&registry);
}

//! The Actions runner's artifact list: after a push, the file `GITHUB_ARTIFACTS` names
//! gets one `oci://REPO@sha256:…` line per pushed image, with the digest the registry
//! holds under the tag (read with skopeo, hashed with sha256sum); a layout-only build
//! adds nothing, and an unset variable writes nothing.

mod common;

use common::*;

/// What a step (or the runner) may already have put in the file.
const EARLIER: &str = "# declared by an earlier command of this step\ndist/tool";

#[test]
fn a_push_declares_each_pushed_image_by_digest() {
    let registry = TestRegistry::start();
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("artifacts");
    std::fs::write(&list, EARLIER).unwrap();
    let repo = format!("{}/multi", registry.host);
    let stdout = ok(&gantry_env(
        &repo_root().join("examples"),
        &[
            "build",
            "--repo",
            &repo,
            "--platform",
            "linux/amd64,wasi/wasm",
            "--base",
            "scratch",
            "--tag",
            "v1",
            "--wasm-artifact",
            "./hello",
            "./with-deps",
        ],
        &[("GITHUB_ARTIFACTS", list.to_str().unwrap())],
    ));
    let hello = registry.tag_digest("multi/hello", "v1").expect("pushed");
    let with_deps = registry
        .tag_digest("multi/with-deps", "v1")
        .expect("pushed");
    // One line per image, by its index digest: not the platform manifests, and not
    // the Wasm artifact, which the runner would take as a second digest of the name.
    assert_eq!(
        std::fs::read_to_string(&list).unwrap(),
        format!("{EARLIER}\noci://{repo}/hello@{hello}\noci://{repo}/with-deps@{with_deps}\n")
    );
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [
            format!("{repo}/hello@{hello}"),
            format!("{repo}/with-deps@{with_deps}")
        ]
    );
}

#[test]
fn a_single_platform_push_declares_its_manifest() {
    let registry = TestRegistry::start();
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("artifacts");
    let repo = format!("{}/solo", registry.host);
    ok(&gantry_env(
        &example("hello"),
        &[
            "build",
            "--repo",
            &repo,
            "--platform",
            "wasi/wasm",
            "--base",
            "scratch",
        ],
        &[("GITHUB_ARTIFACTS", list.to_str().unwrap())],
    ));
    let digest = registry.tag_digest("solo", "latest").expect("pushed");
    let manifest = json(&skopeo_ok(&[
        "inspect",
        "--raw",
        &format!("docker://{repo}@{digest}"),
    ]));
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(
        std::fs::read_to_string(&list).unwrap(),
        format!("oci://{repo}@{digest}\n")
    );
}

#[test]
fn a_layout_only_build_declares_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("artifacts");
    std::fs::write(&list, EARLIER).unwrap();
    let archive = dir.path().join("out.tar");
    ok(&gantry_env(
        &example("hello"),
        &[
            "build",
            "--platform",
            "linux/amd64",
            "--base",
            "scratch",
            "--oci-layout",
            dir.path().join("layout").to_str().unwrap(),
            "--oci-archive",
            archive.to_str().unwrap(),
        ],
        &[("GITHUB_ARTIFACTS", list.to_str().unwrap())],
    ));
    assert_eq!(std::fs::read_to_string(&list).unwrap(), EARLIER);
}

//! `gantry build` end to end against a real registry, read back with skopeo, and the
//! built programs run: amd64 natively, arm64 under qemu-user, wasm under node:wasi.

mod common;

use common::*;
use serde_json::Value;

const PLATFORMS: &str = "linux/amd64,linux/arm64,wasi/wasm";

fn read_json(path: &std::path::Path) -> Value {
    json(&std::fs::read(path).expect("read json"))
}

/// Checks every platform of the index at `src` (a skopeo reference) by running it.
fn run_every_platform(src: &str) {
    let index = json(&skopeo_ok(&["inspect", "--raw", src]));
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let entries = index["manifests"].as_array().expect("manifests");
    let platforms: Vec<String> = entries
        .iter()
        .map(|m| {
            format!(
                "{}/{}",
                m["platform"]["os"].as_str().unwrap(),
                m["platform"]["architecture"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64", "wasi/wasm"]);
    for (os, arch, expect) in [
        ("linux", "amd64", "hello from linux/amd64"),
        ("linux", "arm64", "hello from linux/arm64"),
        ("wasi", "wasm", "hello from wasip1/wasm"),
    ] {
        let (root, config) = pull_and_extract(src, os, arch, None);
        assert_eq!(config["architecture"], arch);
        assert_eq!(config["os"], os);
        let out = run_entrypoint(&root.path().join("rootfs"), &config);
        assert!(out.contains(expect), "{os}/{arch} printed {out:?}");
        if os == "linux" {
            assert_eq!(config["config"]["Entrypoint"][0], "/ko-app/hello");
            assert!(
                out.contains("greetings from kodata"),
                "kodata not shipped: {out:?}"
            );
        } else {
            assert_eq!(config["config"]["Entrypoint"][0], "/hello.wasm");
        }
    }
}

#[test]
fn pushes_index_that_runs_on_every_platform_and_repushes_nothing() {
    let registry = TestRegistry::start();
    let repo = format!("{}/hello", registry.host);
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("result.json");
    let args = [
        "build",
        "--repo",
        &repo,
        "--platform",
        PLATFORMS,
        "--base",
        "scratch",
        "--tag",
        "v1",
        "--tag",
        "latest",
    ];
    let mut first = args.to_vec();
    first.extend(["--json", report.to_str().unwrap()]);
    let stdout = ok(&gantry(&example("hello"), &first));

    let result = read_json(&report);
    let digest = result["images"][0]["digest"].as_str().unwrap().to_string();
    assert_eq!(
        stdout.trim(),
        format!("{repo}@{digest}"),
        "stdout is exactly the result line"
    );
    assert_eq!(
        registry.tag_digest("hello", "v1").as_deref(),
        Some(digest.as_str())
    );
    assert_eq!(
        registry.tag_digest("hello", "latest").as_deref(),
        Some(digest.as_str())
    );
    assert!(result["publish"]["blobs_uploaded"].as_u64().unwrap() > 0);
    assert_eq!(
        result["images"][0]["platforms"].as_array().unwrap().len(),
        3
    );

    run_every_platform(&format!("docker://{repo}:v1"));

    // Same source again: same digest, and nothing uploaded.
    let again = dir.path().join("again.json");
    let mut second = args.to_vec();
    second.extend(["--json", again.to_str().unwrap()]);
    ok(&gantry(&example("hello"), &second));
    let again = read_json(&again);
    assert_eq!(again["images"][0]["digest"], digest.as_str());
    assert_eq!(
        again["publish"]["blobs_uploaded"], 0,
        "second push uploaded blobs: {}",
        again["publish"]
    );
    // The registry already has the index, so nothing under it is sent (the proxy
    // counts in tests/network.rs check the same from the outside).
    assert_eq!(
        again["publish"]["manifests_existing"], 1,
        "{}",
        again["publish"]
    );
}

#[test]
fn oci_layout_holds_the_same_index_and_copies_with_digests_kept() {
    let registry = TestRegistry::start();
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let report = dir.path().join("r.json");
    let stdout = ok(&gantry(
        &example("hello"),
        &[
            "build",
            "--platform",
            PLATFORMS,
            "--base",
            "scratch",
            "--oci-layout",
            layout.to_str().unwrap(),
            "--json",
            report.to_str().unwrap(),
        ],
    ));
    let digest = read_json(&report)["images"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(stdout.trim().ends_with(&digest));

    let src = format!("oci:{}:latest", layout.display());
    run_every_platform(&src);
    let dest = format!("docker://{}/fromlayout:latest", registry.host);
    skopeo_ok(&["copy", "--all", "--preserve-digests", &src, &dest]);
    assert_eq!(
        registry.tag_digest("fromlayout", "latest").as_deref(),
        Some(digest.as_str())
    );

    // The layout output equals what a push produces.
    let repo = format!("{}/pushed", registry.host);
    let pushed = ok(&gantry(
        &example("hello"),
        &[
            "build",
            "--repo",
            &repo,
            "--platform",
            PLATFORMS,
            "--base",
            "scratch",
        ],
    ));
    assert_eq!(pushed.trim(), format!("{repo}@{digest}"));
}

#[test]
fn reproducible_across_directories_and_honours_source_date_epoch() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let mut digests = Vec::new();
    for dir in [a.path(), b.path()] {
        let src = dir.join("src");
        copy_dir(&example("hello"), &src);
        let report = dir.join("r.json");
        ok(&gantry_env(
            &src,
            &[
                "build",
                "--platform",
                PLATFORMS,
                "--base",
                "scratch",
                "--oci-layout",
                dir.join("out").to_str().unwrap(),
                "--json",
                report.to_str().unwrap(),
            ],
            &[("SOURCE_DATE_EPOCH", "1700000000")],
        ));
        let r = read_json(&report);
        digests.push(r["images"][0]["digest"].as_str().unwrap().to_string());
        let src = format!("oci:{}:latest", dir.join("out").display());
        let (_root, config) = pull_and_extract(&src, "linux", "amd64", None);
        assert_eq!(config["created"], "2023-11-14T22:13:20Z");
    }
    assert_eq!(
        digests[0], digests[1],
        "same source in two directories gave two digests"
    );
}

#[test]
fn base_image_with_platform_all_keeps_its_platforms_and_layers() {
    let registry = TestRegistry::start();
    // The base: built by gantry itself from scratch, for three platforms.
    let base = format!("{}/base", registry.host);
    let base_ref = format!("{base}:v1");
    ok(&gantry(
        &example("with-deps"),
        &[
            "build",
            "--repo",
            &base,
            "--platform",
            "linux/amd64,linux/arm64,linux/arm/v7",
            "--base",
            "scratch",
            "--tag",
            "v1",
        ],
    ));
    let base_index = json(&skopeo_ok(&[
        "inspect",
        "--raw",
        &format!("docker://{base_ref}"),
    ]));

    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("r.json");
    let repo = format!("{}/app", registry.host);
    ok(&gantry(
        &example("hello"),
        &[
            "build",
            "--repo",
            &repo,
            "--platform",
            "all,wasi/wasm",
            "--base",
            &base_ref,
            "--json",
            report.to_str().unwrap(),
        ],
    ));
    let r = read_json(&report);
    let platforms: Vec<&str> = r["images"][0]["platforms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["platform"].as_str().unwrap())
        .collect();
    assert_eq!(
        platforms,
        ["linux/amd64", "linux/arm64", "linux/arm/v7", "wasi/wasm"]
    );
    assert!(
        r["publish"]["blobs_mounted"].as_u64().unwrap() >= 3,
        "base layers were not mounted: {}",
        r["publish"]
    );

    for (i, entry) in base_index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        let base_manifest = json(&skopeo_ok(&[
            "inspect",
            "--raw",
            &format!("docker://{base}@{}", entry["digest"].as_str().unwrap()),
        ]));
        let ours = &r["images"][0]["platforms"][i];
        assert_eq!(ours["base_digest"], entry["digest"]);
        for (j, layer) in base_manifest["layers"]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
        {
            assert_eq!(
                ours["layers"][j]["digest"], layer["digest"],
                "base layer {j} of {} not kept",
                ours["platform"]
            );
        }
    }
    // Runs on the base: arm/v7 under qemu, with the base's own files beside ours.
    let (root, config) = pull_and_extract(
        &format!("docker://{repo}:latest"),
        "linux",
        "arm",
        Some("v7"),
    );
    assert!(
        root.path().join("rootfs/ko-app/with-deps").is_file(),
        "base layer missing"
    );
    assert!(run_entrypoint(&root.path().join("rootfs"), &config).contains("hello from linux/arm"));
    let manifest = json(&skopeo_ok(&[
        "inspect",
        "--raw",
        &format!(
            "docker://{repo}@{}",
            r["images"][0]["platforms"][0]["digest"].as_str().unwrap()
        ),
    ]));
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.base.name"],
        base_ref.as_str()
    );
}

#[test]
fn wasm_os_both_shares_one_layer_and_wasm_only_is_a_single_manifest() {
    let registry = TestRegistry::start();
    let repo = format!("{}/wasm", registry.host);
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
            "--wasm-os",
            "both",
            "--base",
            "scratch",
            "--json",
            report.to_str().unwrap(),
        ],
    ));
    let r = read_json(&report);
    let p = r["images"][0]["platforms"].as_array().unwrap();
    assert_eq!(p.len(), 3);
    assert_eq!(p[1]["platform"], "wasi/wasm");
    assert_eq!(p[2]["platform"], "wasip1/wasm");
    assert_eq!(
        p[1]["layers"], p[2]["layers"],
        "wasi and wasip1 entries must share the layer blob"
    );
    assert_ne!(p[1]["config_digest"], p[2]["config_digest"]);

    // wasm only: a single manifest, crun's annotation on it, and the CNCF artifact beside it.
    let only = format!("{}/wasmonly", registry.host);
    ok(&gantry(
        &example("hello"),
        &[
            "build",
            "--repo",
            &only,
            "--platform",
            "wasi/wasm",
            "--wasm-artifact",
        ],
    ));
    let m = json(&skopeo_ok(&[
        "inspect",
        "--raw",
        &format!("docker://{only}:latest"),
    ]));
    assert_eq!(m["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(
        m["annotations"]["module.wasm.image/variant"],
        "compat-smart"
    );
    let (root, config) = pull_and_extract(&format!("docker://{only}:latest"), "wasi", "wasm", None);
    assert!(run_entrypoint(&root.path().join("rootfs"), &config).contains("hello from wasip1/wasm"));

    let art = json(&skopeo_ok(&[
        "inspect",
        "--raw",
        &format!("docker://{only}:latest-wasm"),
    ]));
    assert_eq!(
        art["config"]["mediaType"],
        "application/vnd.wasm.config.v0+json"
    );
    assert_eq!(art["layers"].as_array().unwrap().len(), 1);
    assert_eq!(art["layers"][0]["mediaType"], "application/wasm");
    let cfg = skopeo_ok(&[
        "inspect",
        "--raw",
        "--config",
        &format!("docker://{only}:latest-wasm"),
    ]);
    let cfg = json(&cfg);
    assert_eq!(cfg["architecture"], "wasm");
    assert_eq!(cfg["os"], "wasip1");
    assert_eq!(cfg["layerDigests"][0], art["layers"][0]["digest"]);
}

#[test]
fn several_packages_become_repo_slash_name() {
    let registry = TestRegistry::start();
    let repo = format!("{}/multi", registry.host);
    let stdout = ok(&gantry(
        &repo_root().join("examples"),
        &[
            "build",
            "--repo",
            &repo,
            "--platform",
            "linux/amd64",
            "--base",
            "scratch",
            "./hello",
            "./with-deps",
        ],
    ));
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "one line per package: {stdout}");
    assert!(lines[0].starts_with(&format!("{repo}/hello@sha256:")));
    assert!(lines[1].starts_with(&format!("{repo}/with-deps@sha256:")));
    assert!(registry.tag_digest("multi/with-deps", "latest").is_some());
}

#[test]
fn ko_yaml_sets_platforms_base_and_templated_ldflags() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(
        src.join("go.mod"),
        "module example.com/versioned\n\ngo 1.21\n",
    )
    .unwrap();
    std::fs::write(
        src.join("main.go"),
        "package main\n\nimport \"fmt\"\n\nvar version = \"dev\"\n\nfunc main() { fmt.Println(\"version\", version) }\n",
    )
    .unwrap();
    std::fs::write(
        src.join(".ko.yaml"),
        "defaultBaseImage: scratch\ndefaultPlatforms: [linux/amd64, wasi/wasm]\nbuilds:\n  - id: v\n    main: .\n    ldflags: [\"-X main.version={{.Env.APP_VERSION}}\"]\n",
    )
    .unwrap();
    let layout = dir.path().join("out");
    let report = dir.path().join("r.json");
    ok(&gantry_env(
        &src,
        &[
            "build",
            "--oci-layout",
            layout.to_str().unwrap(),
            "--json",
            report.to_str().unwrap(),
        ],
        &[("APP_VERSION", "1.2.3")],
    ));
    let r = read_json(&report);
    let platforms: Vec<&str> = r["images"][0]["platforms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["platform"].as_str().unwrap())
        .collect();
    assert_eq!(platforms, ["linux/amd64", "wasi/wasm"]);
    assert!(
        r["images"][0].get("base_image").is_none(),
        "defaultBaseImage: scratch was ignored"
    );
    for (os, arch) in [("linux", "amd64"), ("wasi", "wasm")] {
        let (root, config) =
            pull_and_extract(&format!("oci:{}:latest", layout.display()), os, arch, None);
        let out = run_entrypoint(&root.path().join("rootfs"), &config);
        assert_eq!(out.trim(), "version 1.2.3", "{os}/{arch}");
    }
}

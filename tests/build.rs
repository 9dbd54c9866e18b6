//! `gantry build` end to end against a real registry, read back with skopeo, and the
//! built programs run: amd64 natively, arm64 under qemu-user, wasm under node:wasi.

mod common;

use common::*;
use serde_json::Value;

const PLATFORMS: &str = "linux/amd64,linux/arm64,wasi/wasm";

fn read_json(path: &std::path::Path) -> Value {
    json(&std::fs::read(path).expect("read json"))
}

/// The digest of the manifest or index at `src` (a skopeo reference), hashed by
/// sha256sum from the bytes skopeo reads.
fn digest_of(src: &str) -> String {
    sha256sum(&skopeo_ok(&["inspect", "--raw", src]))
}

/// The `os/arch[/variant]` of each entry of an index.
fn index_platforms(index: &Value) -> Vec<String> {
    index["manifests"]
        .as_array()
        .expect("an index")
        .iter()
        .map(|m| {
            let p = &m["platform"];
            let mut s = format!(
                "{}/{}",
                p["os"].as_str().unwrap(),
                p["architecture"].as_str().unwrap()
            );
            if let Some(v) = p["variant"].as_str() {
                s = format!("{s}/{v}");
            }
            s
        })
        .collect()
}

/// Writes done through the proxy: what a registry was sent.
fn writes(proxy: &FaultProxy) -> Vec<ProxyEntry> {
    proxy
        .log()
        .into_iter()
        .filter(|e| matches!(e.method.as_str(), "POST" | "PUT" | "PATCH" | "DELETE"))
        .collect()
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
    let proxy = FaultProxy::start(&registry.host);
    let repo = format!("{}/hello", proxy.host);
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
    // Every blob the registry holds was uploaded, once (the digest is in the query
    // of the PUT that ends an upload).
    let mut uploaded: Vec<String> = writes(&proxy)
        .iter()
        .filter(|e| e.method == "PUT" && e.path.contains("/blobs/uploads/") && e.status == 201)
        .filter_map(|e| {
            let q = e.query.replace("%3A", ":");
            Some(
                q.split('&')
                    .find_map(|kv| kv.strip_prefix("digest="))?
                    .to_string(),
            )
        })
        .collect();
    uploaded.sort();
    let stored = registry.blobs("hello");
    assert!(stored.len() >= 6, "{stored:?}");
    assert_eq!(uploaded, stored, "{:#?}", proxy.log());

    run_every_platform(&format!("docker://{}/hello:v1", registry.host));

    // Same source again: same digest, and the registry is sent nothing at all.
    proxy.clear();
    let stdout = ok(&gantry(&example("hello"), &args));
    assert_eq!(stdout.trim(), format!("{repo}@{digest}"));
    assert!(
        writes(&proxy).is_empty(),
        "the second push wrote: {:#?}",
        proxy.log()
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
    let src = format!("oci:{}:latest", layout.display());
    let digest = digest_of(&src);
    assert!(stdout.trim().ends_with(&digest));
    assert_eq!(read_json(&report)["images"][0]["digest"], digest.as_str());

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

/// Named by its import path, hello's builds start before `go list` answers (go.mod
/// says where it lives): the first ones as `go build .` in its directory. Each output is
/// built once, the early builds adopted, and what they built runs.
#[test]
fn a_package_named_by_import_path_is_built_once_its_first_builds_early() {
    let go = RecordingGo::new();
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    ok(&gantry_env(
        &example("hello"),
        &[
            "build",
            "--platform",
            PLATFORMS,
            "--base",
            "scratch",
            "--jobs",
            "2",
            "--oci-layout",
            layout.to_str().unwrap(),
            "example.com/hello",
        ],
        &[go.env()],
    ));
    let builds = go.builds();
    let outputs: std::collections::HashSet<&str> = builds
        .iter()
        .filter_map(|b| b.split(" -o ").nth(1)?.split(' ').next())
        .collect();
    assert_eq!(
        (builds.len(), outputs.len()),
        (3, 3),
        "one build per platform: {builds:#?}"
    );
    let early = builds.iter().filter(|b| b.ends_with(" .")).count();
    assert_eq!(early, 2, "the first two start early: {builds:#?}");
    run_every_platform(&format!("oci:{}:latest", layout.display()));
}

#[test]
fn reproducible_across_directories_and_honours_source_date_epoch() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let mut digests = Vec::new();
    for dir in [a.path(), b.path()] {
        let src = dir.join("src");
        copy_dir(&example("hello"), &src);
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
            ],
            &[("SOURCE_DATE_EPOCH", "1700000000")],
        ));
        let src = format!("oci:{}:latest", dir.join("out").display());
        digests.push(digest_of(&src));
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
    let proxy = FaultProxy::start(&registry.host);
    // The base: built by gantry itself from scratch, for three platforms.
    let base = format!("{}/base", proxy.host);
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
    // Read straight from the registry, not through the proxy.
    let manifest_at = |repo: &str, digest: &str| {
        json(&skopeo_ok(&[
            "inspect",
            "--raw",
            &format!("docker://{}/{repo}@{digest}", registry.host),
        ]))
    };
    let base_index = json(&skopeo_ok(&[
        "inspect",
        "--raw",
        &format!("docker://{}/base:v1", registry.host),
    ]));

    proxy.clear();
    let repo = format!("{}/app", proxy.host);
    let out = ok(&gantry(
        &example("hello"),
        &[
            "build",
            "--repo",
            &repo,
            "--platform",
            "all,wasi/wasm",
            "--base",
            &base_ref,
        ],
    ));
    let (_, digest) = out.trim().rsplit_once('@').unwrap();
    let index = manifest_at("app", digest);
    assert_eq!(
        index_platforms(&index),
        ["linux/amd64", "linux/arm64", "linux/arm/v7", "wasi/wasm"]
    );

    let mut base_layers = std::collections::BTreeSet::new();
    for (entry, ours) in base_index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .zip(index["manifests"].as_array().unwrap())
    {
        let base_manifest = manifest_at("base", entry["digest"].as_str().unwrap());
        let manifest = manifest_at("app", ours["digest"].as_str().unwrap());
        assert_eq!(
            manifest["annotations"]["org.opencontainers.image.base.digest"],
            entry["digest"]
        );
        for (j, layer) in base_manifest["layers"]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
        {
            assert_eq!(
                manifest["layers"][j]["digest"], layer["digest"],
                "base layer {j} of {} not kept",
                ours["platform"]
            );
            base_layers.insert(layer["digest"].as_str().unwrap().to_string());
        }
    }
    // Each base layer was mounted from the base's repository (201 to a mount POST),
    // never sent again.
    let log = proxy.log();
    for layer in &base_layers {
        let about: Vec<&ProxyEntry> = log
            .iter()
            .filter(|e| e.method != "HEAD" && e.query.replace("%3A", ":").contains(layer.as_str()))
            .collect();
        assert!(
            about.len() == 1
                && about[0].method == "POST"
                && about[0].status == 201
                && about[0].query.contains("from=base"),
            "base layer {layer} was not mounted once: {about:#?}"
        );
    }
    // Runs on the base: arm/v7 under qemu, with the base's own files beside ours.
    let (root, config) = pull_and_extract(
        &format!("docker://{}/app:latest", registry.host),
        "linux",
        "arm",
        Some("v7"),
    );
    assert!(
        root.path().join("rootfs/ko-app/with-deps").is_file(),
        "base layer missing"
    );
    assert!(run_entrypoint(&root.path().join("rootfs"), &config).contains("hello from linux/arm"));
    let manifest = manifest_at("app", index["manifests"][0]["digest"].as_str().unwrap());
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.base.name"],
        base_ref.as_str()
    );
}

#[test]
fn wasm_os_both_shares_one_layer_and_wasm_only_is_a_single_manifest() {
    let registry = TestRegistry::start();
    let repo = format!("{}/wasm", registry.host);
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
        ],
    ));
    // As the registry holds them.
    let index = json(&skopeo_ok(&[
        "inspect",
        "--raw",
        &format!("docker://{repo}:latest"),
    ]));
    assert_eq!(
        index_platforms(&index),
        ["linux/amd64", "wasi/wasm", "wasip1/wasm"]
    );
    let manifest = |i: usize| {
        json(&skopeo_ok(&[
            "inspect",
            "--raw",
            &format!(
                "docker://{repo}@{}",
                index["manifests"][i]["digest"].as_str().unwrap()
            ),
        ]))
    };
    let (wasi, wasip1) = (manifest(1), manifest(2));
    assert_eq!(wasi["layers"].as_array().unwrap().len(), 1);
    assert_eq!(
        wasi["layers"], wasip1["layers"],
        "wasi and wasip1 entries must share the layer blob"
    );
    assert_ne!(wasi["config"]["digest"], wasip1["config"]["digest"]);
    let shared = wasi["layers"][0]["digest"].as_str().unwrap();
    assert!(registry.blobs("wasm").iter().any(|b| b == shared));

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
    ok(&gantry_env(
        &src,
        &["build", "--oci-layout", layout.to_str().unwrap()],
        &[("APP_VERSION", "1.2.3")],
    ));
    let index = json(&skopeo_ok(&[
        "inspect",
        "--raw",
        &format!("oci:{}:latest", layout.display()),
    ]));
    assert_eq!(index_platforms(&index), ["linux/amd64", "wasi/wasm"]);
    let (_, config) = pull_and_extract(
        &format!("oci:{}:latest", layout.display()),
        "linux",
        "amd64",
        None,
    );
    assert_eq!(
        config["rootfs"]["diff_ids"].as_array().unwrap().len(),
        1,
        "defaultBaseImage: scratch was ignored (layers: {})",
        config["rootfs"]
    );
    for (os, arch) in [("linux", "amd64"), ("wasi", "wasm")] {
        let (root, config) =
            pull_and_extract(&format!("oci:{}:latest", layout.display()), os, arch, None);
        let out = run_entrypoint(&root.path().join("rootfs"), &config);
        assert_eq!(out.trim(), "version 1.2.3", "{os}/{arch}");
    }
}

/// Every entry of every layer of `os/arch` in `src` (a skopeo reference), listed by
/// GNU tar as `(date time, name)` in UTC; the layers are copied out with skopeo and
/// checked against their digests with sha256sum. Also returns the config.
fn layer_entries(src: &str, os: &str, arch: &str) -> (Vec<(String, String)>, Value) {
    require("tar", "apt-get install tar");
    let dir = tempfile::tempdir().unwrap();
    let dest = format!("dir:{}", dir.path().display());
    skopeo_ok(&[
        "copy",
        "--override-os",
        os,
        "--override-arch",
        arch,
        src,
        &dest,
    ]);
    let manifest = read_json(&dir.path().join("manifest.json"));
    let blob = |digest: &str| {
        let path = dir.path().join(digest.trim_start_matches("sha256:"));
        assert_eq!(sha256sum(&std::fs::read(&path).unwrap()), digest);
        path
    };
    let config = read_json(&blob(manifest["config"]["digest"].as_str().unwrap()));
    let mut entries = Vec::new();
    for layer in manifest["layers"].as_array().unwrap() {
        let out = std::process::Command::new("tar")
            .args(["--full-time", "--numeric-owner", "-tvzf"])
            .arg(blob(layer["digest"].as_str().unwrap()))
            .env("TZ", "UTC")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tar: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for line in String::from_utf8(out.stdout).unwrap().lines() {
            // mode owner size date time name
            let f: Vec<&str> = line.split_whitespace().collect();
            assert!(f.len() >= 6, "{line}");
            entries.push((format!("{} {}", f[3], f[4]), f[5..].join(" ")));
        }
    }
    (entries, config)
}

#[test]
fn every_file_time_in_the_layers_is_source_date_epoch_or_zero() {
    for (epoch, time, created) in [
        (None, "1970-01-01 00:00:00", "1970-01-01T00:00:00Z"),
        (
            Some("1700000000"),
            "2023-11-14 22:13:20",
            "2023-11-14T22:13:20Z",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let layout = dir.path().join("out");
        let env: Vec<(&str, &str)> = epoch
            .map(|e| ("SOURCE_DATE_EPOCH", e))
            .into_iter()
            .collect();
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
            ],
            &env,
        ));
        let src = format!("oci:{}:latest", layout.display());
        for (os, arch, program) in [
            ("linux", "amd64", "ko-app/hello"),
            ("wasi", "wasm", "hello.wasm"),
        ] {
            let (entries, config) = layer_entries(&src, os, arch);
            assert!(
                entries.iter().any(|(_, name)| name.ends_with(program)),
                "{os}/{arch}: {entries:?}"
            );
            if os == "linux" {
                assert!(
                    entries.iter().any(|(_, name)| name.contains("var/run/ko/")),
                    "kodata missing: {entries:?}"
                );
            }
            for (at, name) in &entries {
                assert_eq!(at, time, "{os}/{arch} {name} (SOURCE_DATE_EPOCH={epoch:?})");
            }
            assert_eq!(config["created"], created, "{os}/{arch}");
        }
    }
}

#[test]
fn provenance_says_github_only_when_the_runner_said_enough() {
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = cosign_key_pair(&dir.path().join("keys"), "pw");
    let provenance = |extra_env: &[(&str, &str)]| {
        let report = dir.path().join("r.json");
        let layout = dir.path().join(format!("layout-{}", extra_env.len()));
        let mut env = vec![("COSIGN_PASSWORD", "pw"), ("GITHUB_ACTIONS", "true")];
        env.extend_from_slice(extra_env);
        ok(&gantry_env(
            &example("hello"),
            &[
                "build",
                "--base",
                "scratch",
                "--platform",
                "wasi/wasm",
                "--oci-layout",
                layout.to_str().unwrap(),
                "--no-tlog-upload",
                "--key",
                key.to_str().unwrap(),
                "--sbom",
                "none",
                "--json",
                report.to_str().unwrap(),
            ],
            &env,
        ));
        // The provenance referrer, read from the layout's own files.
        let report = json(&std::fs::read(&report).unwrap());
        let referrer = report["images"][0]["attachments"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| {
                a["predicate_type"] == "https://slsa.dev/provenance/v1"
                    && a["storage"] == "referrer"
            })
            .expect("a provenance attestation")["digest"]
            .as_str()
            .unwrap()
            .to_string();
        let blob = |digest: &str| {
            let bytes = std::fs::read(layout.join("blobs/sha256").join(&digest[7..])).unwrap();
            assert_eq!(sha256sum(&bytes), digest);
            json(&bytes)
        };
        let manifest = blob(&referrer);
        let bundle = blob(manifest["layers"][0]["digest"].as_str().unwrap());
        use base64::Engine as _;
        let payload = base64::engine::general_purpose::STANDARD
            .decode(bundle["dsseEnvelope"]["payload"].as_str().unwrap())
            .unwrap();
        json(&payload)["predicate"].clone()
    };
    // GITHUB_ACTIONS alone (not a real runner): a local build, no URLs made of nothing.
    let local = provenance(&[("GITHUB_REPOSITORY", "acme/hello")]);
    assert_eq!(
        local["buildDefinition"]["buildType"], "https://gantry.dev/buildtypes/go-image/v1",
        "{local}"
    );
    assert!(!local.to_string().contains("\"/"), "{local}");
    // What a runner sets: GitHub's build type, with whole URLs.
    let github = provenance(&[
        ("GITHUB_REPOSITORY", "acme/hello"),
        ("GITHUB_SERVER_URL", "https://github.com"),
        (
            "GITHUB_WORKFLOW_REF",
            "acme/hello/.github/workflows/ci.yml@refs/heads/main",
        ),
        ("GITHUB_REF", "refs/heads/main"),
        ("GITHUB_SHA", "0123456789abcdef0123456789abcdef01234567"),
    ]);
    assert_eq!(
        github["buildDefinition"]["buildType"], "https://actions.github.io/buildtypes/workflow/v1",
        "{github}"
    );
    assert_eq!(
        github["runDetails"]["builder"]["id"],
        "https://github.com/acme/hello/.github/workflows/ci.yml@refs/heads/main"
    );
}

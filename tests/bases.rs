//! Base images gantry did not build: written by hand here as the other tools write
//! them (Docker media types in a Docker manifest list; an OCI index with zstd and
//! uncompressed layers; `unknown/unknown` attestation entries as docker buildx adds),
//! pushed with skopeo, built on, and read back and run with independent clients.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::*;
use serde_json::{json, Value};

const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
const IN_TOTO: &str = "application/vnd.in-toto+json";

/// The media types of one base: index, manifests, config, and each layer in order.
struct Types {
    index: &'static str,
    manifest: &'static str,
    config: &'static str,
    layers: &'static [&'static str],
}

const DOCKER_TYPES: Types = Types {
    index: DOCKER_LIST,
    manifest: DOCKER_MANIFEST,
    config: DOCKER_CONFIG,
    layers: &[DOCKER_LAYER_GZIP, DOCKER_LAYER_GZIP],
};

const ZSTD_AND_TAR_TYPES: Types = Types {
    index: OCI_INDEX,
    manifest: OCI_MANIFEST,
    config: OCI_CONFIG,
    layers: &[OCI_LAYER_ZSTD, OCI_LAYER_TAR],
};

/// The platforms every base here offers: architecture, and the variant its index entry
/// names (arm64 as `v8`, as Docker Hub images have it).
const BASE_PLATFORMS: &[(&str, Option<&str>)] = &[("amd64", None), ("arm64", Some("v8"))];

/// What `/etc/base-marker` holds in a base's `arch` image.
fn marker(tag: &str, arch: &str) -> String {
    format!("foreign base {tag} for {arch}\n")
}

/// A tar of `files` (path, contents) under `etc/`, made without gantry's writer.
fn tar_of(files: &[(&str, &str)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut dir = tar::Header::new_ustar();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o755);
    dir.set_size(0);
    dir.set_mtime(1_600_000_000);
    builder
        .append_data(&mut dir, "etc/", std::io::empty())
        .unwrap();
    for (path, contents) in files {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(contents.len() as u64);
        h.set_mtime(1_600_000_000);
        builder
            .append_data(&mut h, path, contents.as_bytes())
            .unwrap();
    }
    builder.into_inner().unwrap()
}

/// Runs `tool args` with `input` on stdin and returns its stdout.
fn pipe(tool: &str, args: &[&str], input: &[u8]) -> Vec<u8> {
    let mut child = Command::new(tool)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {tool}: {e}"));
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &input));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(
        out.status.success(),
        "{tool} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The layer blob for `tar` in `media_type`, compressed by the gzip and zstd CLIs.
fn compress(tar: &[u8], media_type: &str) -> Vec<u8> {
    if media_type.ends_with("gzip") {
        require("gzip", "apt-get install gzip");
        pipe("gzip", &["-n", "-c"], tar)
    } else if media_type.ends_with("+zstd") {
        require("zstd", "apt-get install zstd");
        pipe("zstd", &["-q", "-c"], tar)
    } else {
        assert_eq!(media_type, OCI_LAYER_TAR);
        tar.to_vec()
    }
}

/// The uncompressed tar of a layer blob of `media_type`.
fn decompress(blob: &[u8], media_type: &str) -> Vec<u8> {
    if media_type.ends_with("gzip") {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(blob), &mut out)
            .expect("gunzip layer");
        out
    } else if media_type.ends_with("+zstd") {
        require("zstd", "apt-get install zstd");
        pipe("zstd", &["-q", "-d", "-c"], blob)
    } else {
        assert_eq!(media_type, OCI_LAYER_TAR, "unexpected layer type");
        blob.to_vec()
    }
}

/// A skopeo `dir:` directory: `manifest.json` is the top-level manifest, each
/// instance manifest `<hex>.manifest.json`, each other blob `<hex>`.
struct DirLayout<'a> {
    dir: &'a Path,
}

impl DirLayout<'_> {
    fn blob(&self, bytes: &[u8]) -> String {
        let digest = sha256sum(bytes);
        std::fs::write(self.dir.join(hex(&digest)), bytes).unwrap();
        digest
    }

    fn instance(&self, manifest: &Value) -> (String, usize) {
        let bytes = serde_json::to_vec(manifest).unwrap();
        let digest = sha256sum(&bytes);
        std::fs::write(
            self.dir.join(format!("{}.manifest.json", hex(&digest))),
            &bytes,
        )
        .unwrap();
        (digest, bytes.len())
    }
}

fn hex(digest: &str) -> &str {
    digest.trim_start_matches("sha256:")
}

/// What was pushed for one platform of a base.
struct BasePlatform {
    arch: &'static str,
    manifest_digest: String,
    /// (digest, size, media type) of each layer.
    layers: Vec<(String, u64, String)>,
    diff_ids: Vec<String>,
}

/// Writes a two-layer, two-platform base of `types` (with an attestation manifest per
/// platform when `attestations`), pushes it with skopeo to `HOST/base:tag`, and checks
/// the registry holds exactly those bytes.
fn push_base(
    registry: &TestRegistry,
    tag: &str,
    types: &Types,
    attestations: bool,
) -> Vec<BasePlatform> {
    let tmp = tempfile::tempdir().unwrap();
    let layout = DirLayout { dir: tmp.path() };
    let mut entries = Vec::new();
    let mut pushed = Vec::new();
    for (arch, variant) in BASE_PLATFORMS {
        let tars = [
            tar_of(&[("etc/base-marker", &marker(tag, arch))]),
            tar_of(&[("etc/base-second", "second layer\n")]),
        ];
        let mut layers = Vec::new();
        let mut diff_ids = Vec::new();
        for (tar, media_type) in tars.iter().zip(types.layers) {
            let blob = compress(tar, media_type);
            let digest = layout.blob(&blob);
            layers.push((digest, blob.len() as u64, media_type.to_string()));
            diff_ids.push(sha256sum(tar));
        }
        // The config omits the variant, as many do; the index entry has it.
        let config = serde_json::to_vec(&json!({
            "architecture": arch,
            "os": "linux",
            "created": "2020-09-13T12:26:40Z",
            "config": {"Env": ["PATH=/usr/bin:/bin", "BASE=foreign"], "Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [{"created_by": "ADD marker"}, {"created_by": "ADD second"}],
        }))
        .unwrap();
        let config_digest = layout.blob(&config);
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": types.manifest,
            "config": {"mediaType": types.config, "digest": config_digest, "size": config.len()},
            "layers": layers.iter().map(|(d, s, t)| json!({"mediaType": t, "digest": d, "size": s}))
                .collect::<Vec<_>>(),
        });
        let (manifest_digest, size) = layout.instance(&manifest);
        let mut platform = json!({"architecture": arch, "os": "linux"});
        if let Some(v) = variant {
            platform["variant"] = json!(v);
        }
        entries.push(json!({
            "mediaType": types.manifest, "digest": manifest_digest, "size": size,
            "platform": platform,
        }));
        pushed.push(BasePlatform {
            arch,
            manifest_digest,
            layers,
            diff_ids,
        });
    }
    if attestations {
        for p in &pushed {
            entries.push(attestation(&layout, &p.manifest_digest));
        }
    }
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": types.index,
        "manifests": entries,
    }))
    .unwrap();
    std::fs::write(tmp.path().join("manifest.json"), &index).unwrap();
    std::fs::write(
        tmp.path().join("version"),
        "Directory Transport Version: 1.1\n",
    )
    .unwrap();
    skopeo_ok(&[
        "copy",
        "--all",
        "--preserve-digests",
        &format!("dir:{}", tmp.path().display()),
        &format!("docker://{}/base:{tag}", registry.host),
    ]);
    assert_eq!(
        registry.tag_digest("base", tag),
        Some(sha256sum(&index)),
        "the registry does not hold the base index as written"
    );
    pushed
}

/// An attestation manifest for `subject` and its index entry, as docker buildx
/// writes them: `unknown/unknown`, pointing back at the image manifest.
fn attestation(layout: &DirLayout, subject: &str) -> Value {
    let statement = serde_json::to_vec(&json!({
        "_type": "https://in-toto.io/Statement/v0.1",
        "predicateType": "https://slsa.dev/provenance/v0.2",
        "subject": [{"name": "base", "digest": {"sha256": hex(subject)}}],
        "predicate": {"builder": {"id": "by hand"}},
    }))
    .unwrap();
    let statement_digest = layout.blob(&statement);
    let config = serde_json::to_vec(&json!({
        "architecture": "unknown",
        "os": "unknown",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [statement_digest]},
    }))
    .unwrap();
    let config_digest = layout.blob(&config);
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config.len()},
        "layers": [{
            "mediaType": IN_TOTO, "digest": statement_digest, "size": statement.len(),
            "annotations": {"in-toto.io/predicate-type": "https://slsa.dev/provenance/v0.2"},
        }],
    });
    let (digest, size) = layout.instance(&manifest);
    json!({
        "mediaType": OCI_MANIFEST, "digest": digest, "size": size,
        "platform": {"architecture": "unknown", "os": "unknown"},
        "annotations": {
            "vnd.docker.reference.type": "attestation-manifest",
            "vnd.docker.reference.digest": subject,
        },
    })
}

/// The layer type gantry's OCI manifest lists for a base layer of `media_type`: the
/// same, except that Docker's gzip layer gets its OCI name, which the OCI image spec
/// calls interchangeable and fully compatible (same bytes, same digest).
fn expected_type(media_type: &str) -> &str {
    if media_type == DOCKER_LAYER_GZIP {
        OCI_LAYER_GZIP
    } else {
        media_type
    }
}

/// Builds examples/hello on `BASEHOST/base:tag` for `platforms` into `APPHOST/app-<tag>`
/// (and `extra` arguments) through a logging proxy: the report and the proxy's log.
fn build_on(
    base: &TestRegistry,
    app: &TestRegistry,
    tag: &str,
    platforms: &str,
    extra: &[&str],
) -> (Value, Vec<ProxyEntry>) {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("r.json");
    let proxy = FaultProxy::start(&app.host);
    let repo = format!("{}/app-{tag}", proxy.host);
    // The base through the same proxy when it is on the same registry, so that gantry
    // sees one registry (and mounts) and the log sees the mounts.
    let base_host = if std::ptr::eq(base, app) {
        &proxy.host
    } else {
        &base.host
    };
    let base_ref = format!("{base_host}/base:{tag}");
    let mut args = vec![
        "build",
        "--repo",
        &repo,
        "--base",
        &base_ref,
        "--platform",
        platforms,
        "--json",
        report.to_str().unwrap(),
    ];
    args.extend(extra);
    ok(&gantry(&example("hello"), &args));
    (json(&std::fs::read(&report).unwrap()), proxy.log())
}

/// Checks, from `app`'s registry with skopeo, that `app-<tag>:latest` is an OCI index
/// of exactly the base's Linux platforms, each starting with the base's layers (same
/// digests and sizes; see [`expected_type`]) and diff_ids, and that each runs from
/// its extracted layers with the base's files beside it. The base's layers were
/// mounted when `app` is the base's registry, else streamed from it.
fn check_built_on(
    app: &TestRegistry,
    tag: &str,
    base: &[BasePlatform],
    log: &[ProxyEntry],
    same_registry: bool,
) {
    let app = format!("{}/app-{tag}", app.host);
    let index = json(&skopeo_ok(&[
        "inspect",
        "--raw",
        &format!("docker://{app}:latest"),
    ]));
    assert_eq!(index["mediaType"], OCI_INDEX);
    let platforms: Vec<String> = index["manifests"]
        .as_array()
        .expect("manifests")
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
        .collect();
    assert_eq!(
        platforms,
        ["linux/amd64", "linux/arm64"],
        "the index's platforms: {index}"
    );
    let base_blobs: std::collections::BTreeSet<&str> = base
        .iter()
        .flat_map(|b| b.layers.iter().map(|(d, _, _)| d.as_str()))
        .collect();
    // Mounts as the registry saw them: a POST naming the blob to mount, answered 201.
    let mounted: std::collections::BTreeSet<&str> = log
        .iter()
        .filter(|e| e.method == "POST" && e.status == 201)
        .filter_map(|e| e.query.split('&').find_map(|kv| kv.strip_prefix("mount=")))
        .map(|d| {
            d.trim_start_matches("sha256%3A")
                .trim_start_matches("sha256:")
        })
        .collect();
    let base_hex: std::collections::BTreeSet<&str> = base_blobs
        .iter()
        .map(|d| d.trim_start_matches("sha256:"))
        .collect();
    if same_registry {
        assert!(
            base_hex.is_subset(&mounted),
            "the base's layers were not mounted from its repository: {mounted:?} {log:#?}"
        );
    } else {
        assert!(mounted.is_empty(), "mounted across registries: {log:#?}");
    }

    for (entry, b) in index["manifests"].as_array().unwrap().iter().zip(base) {
        let reference = format!("docker://{app}@{}", entry["digest"].as_str().unwrap());
        let manifest = json(&skopeo_ok(&["inspect", "--raw", &reference]));
        assert_eq!(manifest["mediaType"], OCI_MANIFEST);
        assert_eq!(manifest["config"]["mediaType"], OCI_CONFIG);
        assert_eq!(
            manifest["annotations"]["org.opencontainers.image.base.digest"],
            b.manifest_digest.as_str(),
            "{}",
            b.arch
        );
        let layers = manifest["layers"].as_array().expect("layers");
        assert!(layers.len() > b.layers.len(), "no layers of gantry's own");
        for (j, (digest, size, media_type)) in b.layers.iter().enumerate() {
            let l = &layers[j];
            assert_eq!(l["digest"], digest.as_str(), "{} base layer {j}", b.arch);
            assert_eq!(l["size"], *size, "{} base layer {j}", b.arch);
            assert_eq!(
                l["mediaType"],
                expected_type(media_type),
                "{} base layer {j}",
                b.arch
            );
        }
        for l in &layers[b.layers.len()..] {
            assert_eq!(l["mediaType"], OCI_LAYER_GZIP, "gantry's own layer");
        }
        let config = json(&skopeo_ok(&["inspect", "--raw", "--config", &reference]));
        let diff_ids = config["rootfs"]["diff_ids"].as_array().unwrap();
        assert_eq!(diff_ids.len(), layers.len());
        assert_eq!(diff_ids[..b.diff_ids.len()], b.diff_ids[..], "{}", b.arch);
        assert_eq!(config["architecture"], b.arch);
        assert!(
            config.get("variant").is_none(),
            "built for linux/{}, yet: {config}",
            b.arch
        );
        assert!(config["config"]["Env"]
            .as_array()
            .unwrap()
            .contains(&json!("BASE=foreign")));

        let (root, config) = extract(&format!("docker://{app}:latest"), b.arch);
        let rootfs = root.path().join("rootfs");
        let out = run_entrypoint(&rootfs, &config);
        assert!(
            out.contains(&format!("hello from linux/{}", b.arch)),
            "{} printed {out:?}",
            b.arch
        );
        assert_eq!(
            std::fs::read_to_string(rootfs.join("etc/base-marker")).expect("the base's file"),
            marker(tag, b.arch)
        );
        assert_eq!(
            std::fs::read_to_string(rootfs.join("etc/base-second")).unwrap(),
            "second layer\n"
        );
    }
}

/// Copies the `arch` image of `src` into an OCI layout with skopeo and applies its
/// layers in order, whatever their compression (gzip, zstd or none), each checked
/// against its diff_id; returns the root (`<dir>/rootfs`) and the config.
fn extract(src: &str, arch: &str) -> (tempfile::TempDir, Value) {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let dest = format!("oci:{}:img", layout.display());
    skopeo_ok(&[
        "copy",
        "--override-os",
        "linux",
        "--override-arch",
        arch,
        src,
        &dest,
    ]);
    let blob = |d: &str| std::fs::read(layout.join("blobs/sha256").join(hex(d))).expect("blob");
    let index = json(&std::fs::read(layout.join("index.json")).expect("index.json"));
    let manifest = json(&blob(index["manifests"][0]["digest"].as_str().unwrap()));
    let config = json(&blob(manifest["config"]["digest"].as_str().unwrap()));
    let root = dir.path().join("rootfs");
    std::fs::create_dir_all(&root).unwrap();
    for (i, layer) in manifest["layers"].as_array().unwrap().iter().enumerate() {
        let bytes = blob(layer["digest"].as_str().unwrap());
        let tar = decompress(&bytes, layer["mediaType"].as_str().unwrap());
        assert_eq!(
            config["rootfs"]["diff_ids"][i],
            sha256sum(&tar).as_str(),
            "layer {i}: diff_id"
        );
        let mut archive = tar::Archive::new(&tar[..]);
        archive.set_preserve_permissions(true);
        archive.unpack(&root).expect("unpack layer");
    }
    (dir, config)
}

#[test]
fn docker_media_type_base_with_attestations() {
    let registry = TestRegistry::start();
    let base = push_base(&registry, "docker", &DOCKER_TYPES, true);
    let (report, report_log) = build_on(
        &registry,
        &registry,
        "docker",
        "linux/amd64,linux/arm64",
        &[],
    );
    check_built_on(&registry, "docker", &base, &report_log, true);
    assert_eq!(
        report["images"][0]["platforms"][0]["layers"][0]["media_type"],
        OCI_LAYER_GZIP
    );
}

#[test]
fn platform_all_skips_attestation_entries() {
    let registry = TestRegistry::start();
    let base = push_base(&registry, "docker", &DOCKER_TYPES, true);
    let (report, _) = build_on(&registry, &registry, "docker", "all", &[]);
    let platforms: Vec<&str> = report["images"][0]["platforms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["platform"].as_str().unwrap())
        .collect();
    // arm64 keeps the index entry's variant, which `all` takes as it is.
    assert_eq!(platforms, ["linux/amd64", "linux/arm64/v8"]);
    let index = json(&skopeo_ok(&[
        "inspect",
        "--raw",
        &format!("docker://{}/app-docker:latest", registry.host),
    ]));
    for entry in index["manifests"].as_array().unwrap() {
        assert_eq!(entry["platform"]["os"], "linux", "{index}");
        assert!(entry
            .get("annotations")
            .is_none_or(|a| a.get("vnd.docker.reference.type").is_none()));
    }
    let ours = &report["images"][0]["platforms"];
    for (i, b) in base.iter().enumerate() {
        assert_eq!(ours[i]["base_digest"], b.manifest_digest.as_str());
    }
}

#[test]
fn zstd_and_uncompressed_base_layers_are_kept_as_they_are() {
    let registry = TestRegistry::start();
    let base = push_base(&registry, "zstd", &ZSTD_AND_TAR_TYPES, true);
    let (report, report_log) =
        build_on(&registry, &registry, "zstd", "linux/amd64,linux/arm64", &[]);
    check_built_on(&registry, "zstd", &base, &report_log, true);

    // To another registry, and into an OCI layout: the base's blobs are streamed
    // from its registry, not mounted, and must arrive as they are.
    let other = TestRegistry::start();
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let (streamed, streamed_log) = build_on(
        &registry,
        &other,
        "zstd",
        "linux/amd64,linux/arm64",
        &["--oci-layout", layout.to_str().unwrap()],
    );
    check_built_on(&other, "zstd", &base, &streamed_log, false);
    // The same layers either way (the index differs only in the base's name: here
    // it is reached through the proxy's address).
    let layers = |r: &Value| {
        r["images"][0]["platforms"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["layers"].clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(layers(&streamed), layers(&report));
    for b in &base {
        let (root, _) = extract(&format!("oci:{}:latest", layout.display()), b.arch);
        assert_eq!(
            std::fs::read_to_string(root.path().join("rootfs/etc/base-marker")).unwrap(),
            marker("zstd", b.arch)
        );
    }
}

#[test]
fn single_docker_manifest_base() {
    let registry = TestRegistry::start();
    let base = push_base(&registry, "docker", &DOCKER_TYPES, false);
    // One platform's Docker manifest, tagged on its own.
    skopeo_ok(&[
        "copy",
        "--preserve-digests",
        &format!(
            "docker://{}/base@{}",
            registry.host, base[0].manifest_digest
        ),
        &format!("docker://{}/base:single", registry.host),
    ]);
    let (report, _) = build_on(&registry, &registry, "single", "linux/amd64", &[]);
    let image = &report["images"][0];
    assert_eq!(image["media_type"], OCI_MANIFEST);
    assert_eq!(
        image["platforms"][0]["base_digest"],
        base[0].manifest_digest.as_str()
    );
    let manifest = json(&skopeo_ok(&[
        "inspect",
        "--raw",
        &format!("docker://{}/app-single:latest", registry.host),
    ]));
    for (j, (digest, _, _)) in base[0].layers.iter().enumerate() {
        assert_eq!(manifest["layers"][j]["digest"], digest.as_str());
        assert_eq!(manifest["layers"][j]["mediaType"], OCI_LAYER_GZIP);
    }
    let (root, config) = extract(
        &format!("docker://{}/app-single:latest", registry.host),
        "amd64",
    );
    let rootfs = root.path().join("rootfs");
    assert!(run_entrypoint(&rootfs, &config).contains("hello from linux/amd64"));
    assert_eq!(
        std::fs::read_to_string(rootfs.join("etc/base-marker")).unwrap(),
        marker("docker", "amd64")
    );
}

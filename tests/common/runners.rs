//! Running what gantry built: [`pull_and_extract`] unpacks one platform of an image
//! into a root filesystem with skopeo and tar, and [`run_entrypoint`] runs its
//! entrypoint natively, under qemu-user, or under node:wasi for wasm.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use super::clients::{json, skopeo_ok};
use super::env::require;

/// Copies one platform of `src` (a skopeo image reference) into an OCI layout with
/// skopeo, extracts its layers in order into a root filesystem, and returns the
/// root and the image config.
pub fn pull_and_extract(
    src: &str,
    os: &str,
    arch: &str,
    variant: Option<&str>,
) -> (tempfile::TempDir, Value) {
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = dir.path().join("layout");
    let dest = format!("oci:{}:img", layout.display());
    let mut args = vec!["copy", "--override-os", os, "--override-arch", arch];
    if let Some(v) = variant {
        args.extend(["--override-variant", v]);
    }
    args.extend([src, dest.as_str()]);
    skopeo_ok(&args);
    let index = json(&std::fs::read(layout.join("index.json")).expect("index.json"));
    let manifest_digest = index["manifests"][0]["digest"]
        .as_str()
        .expect("digest")
        .to_string();
    let blob = |d: &str| {
        std::fs::read(
            layout
                .join("blobs/sha256")
                .join(d.trim_start_matches("sha256:")),
        )
        .expect("blob")
    };
    let manifest = json(&blob(&manifest_digest));
    let config = json(&blob(
        manifest["config"]["digest"].as_str().expect("config"),
    ));
    let root = dir.path().join("rootfs");
    std::fs::create_dir_all(&root).expect("mkdir rootfs");
    for layer in manifest["layers"].as_array().expect("layers") {
        let bytes = blob(layer["digest"].as_str().expect("layer digest"));
        let mut archive = tar::Archive::new(flate2::read::MultiGzDecoder::new(&bytes[..]));
        archive.set_preserve_permissions(true);
        archive.unpack(&root).expect("unpack layer");
    }
    (dir, config)
}

/// Runs the image's entrypoint from an extracted rootfs: natively, under
/// qemu-user for another Linux architecture, or under node:wasi for wasm.
pub fn run_entrypoint(rootfs: &Path, config: &Value) -> String {
    let entry = config["config"]["Entrypoint"][0]
        .as_str()
        .expect("entrypoint");
    let program = rootfs.join(entry.trim_start_matches('/'));
    assert!(
        program.is_file(),
        "entrypoint {entry} missing from the image"
    );
    let env: Vec<(String, String)> = config["config"]["Env"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| {
                    e.as_str()?
                        .split_once('=')
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                })
                .collect()
        })
        .unwrap_or_default();
    let arch = config["architecture"].as_str().unwrap_or("");
    let mut cmd = match arch {
        "wasm" => {
            require("node", "apt-get install nodejs");
            let mut c = Command::new("node");
            c.arg("--no-warnings")
                .arg("-e")
                .arg(NODE_WASI)
                .arg(&program);
            c
        }
        "amd64" => Command::new(&program),
        "arm64" => {
            require("qemu-aarch64-static", "apt-get install qemu-user-static");
            let mut c = Command::new("qemu-aarch64-static");
            c.arg(&program);
            c
        }
        "arm" => {
            require("qemu-arm-static", "apt-get install qemu-user-static");
            let mut c = Command::new("qemu-arm-static");
            c.arg(&program);
            c
        }
        other => panic!("no way to run {other} here"),
    };
    cmd.env_clear();
    for (k, v) in env {
        // The image's paths are inside the rootfs.
        let v = if k == "KO_DATA_PATH" {
            rootfs.join(v.trim_start_matches('/')).display().to_string()
        } else {
            v
        };
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run entrypoint");
    assert!(
        out.status.success(),
        "{entry} ({arch}) failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A WASI preview1 host: node's `node:wasi`, the module path in argv[1].
const NODE_WASI: &str = r#"
const { WASI } = require('node:wasi');
const fs = require('node:fs');
const file = process.argv[1];
const wasi = new WASI({ version: 'preview1', args: [file], env: {} });
const mod = new WebAssembly.Module(fs.readFileSync(file));
const imports = WebAssembly.Module.imports(mod).map(i => i.module);
if (imports.some(m => m !== 'wasi_snapshot_preview1')) { console.error('unexpected imports: ' + imports); process.exit(3); }
const inst = new WebAssembly.Instance(mod, wasi.getImportObject());
process.exitCode = wasi.start(inst);
"#;

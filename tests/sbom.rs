//! SBOMs from real builds, judged by real validators: pyspdxtools (PyPI spdx-tools) and
//! the CycloneDX 1.6 JSON schema (PyPI cyclonedx-python-lib). The wasm image's SBOM
//! lists what `go version -m` prints for the same source's Linux binary.

mod common;

use std::process::Command;

use common::*;
use serde_json::Value;

#[test]
fn sboms_validate_and_list_the_modules_for_linux_and_wasm() {
    require("pyspdxtools", "pip install spdx-tools");
    let dir = tempfile::tempdir().unwrap();
    let sboms = dir.path().join("sbom");
    let layout = dir.path().join("layout");
    let report = dir.path().join("r.json");
    ok(&gantry(
        &example("with-deps"),
        &[
            "build",
            "--platform",
            "linux/amd64,wasi/wasm",
            "--base",
            "scratch",
            "--oci-layout",
            layout.to_str().unwrap(),
            "--sbom-dir",
            sboms.to_str().unwrap(),
            "--json",
            report.to_str().unwrap(),
        ],
    ));
    let r = json(&std::fs::read(&report).unwrap());
    let listed = r["images"][0]["sboms"].as_array().unwrap();
    assert_eq!(
        listed.len(),
        6,
        "spdx + cyclonedx for amd64, wasm and the index"
    );

    let mut spdx = Vec::new();
    let mut cdx = Vec::new();
    for entry in listed {
        let file = entry["file"].as_str().unwrap().to_string();
        if file.ends_with(".spdx.json") {
            spdx.push(file)
        } else {
            cdx.push(file)
        }
    }
    for file in &spdx {
        let out = Command::new("pyspdxtools")
            .args(["-i", file])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pyspdxtools rejected {file}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = Command::new("python3")
        .arg(repo_root().join("tests/validate_cyclonedx.py"))
        .args(&cdx)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "CycloneDX 1.6 schema rejected: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // What go itself says of the Linux binary from the image.
    let (root, _) = pull_and_extract(
        &format!("oci:{}:latest", layout.display()),
        "linux",
        "amd64",
        None,
    );
    let go = Command::new("go")
        .args(["version", "-m"])
        .arg(root.path().join("rootfs/ko-app/with-deps"))
        .output()
        .unwrap();
    let expected: Vec<String> = String::from_utf8(go.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("dep\t"))
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            format!("pkg:golang/{}@{}", f[0], f[1])
        })
        .collect();
    assert!(expected
        .iter()
        .any(|p| p.starts_with("pkg:golang/github.com/google/uuid@v1.6.0")));
    assert!(expected
        .iter()
        .any(|p| p.starts_with("pkg:golang/golang.org/x/text@")));

    let purls = |doc: &Value| -> Vec<String> {
        doc["components"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["type"] == "library")
            .map(|c| c["purl"].as_str().unwrap().to_string())
            .collect()
    };
    let wasm_cdx = json(&std::fs::read(sboms.join("with-deps-wasi-wasm.cdx.json")).unwrap());
    let linux_cdx = json(&std::fs::read(sboms.join("with-deps-linux-amd64.cdx.json")).unwrap());
    assert_eq!(
        purls(&wasm_cdx),
        expected,
        "wasm SBOM modules differ from go version -m of the Linux build"
    );
    assert_eq!(purls(&linux_cdx), expected);
    let wasm_spdx = std::fs::read_to_string(sboms.join("with-deps-wasi-wasm.spdx.json")).unwrap();
    for purl in &expected {
        assert!(
            wasm_spdx.contains(purl),
            "{purl} missing from the wasm SPDX"
        );
    }
    // The image is identified by digest: the wasm SBOM names the wasm manifest.
    let wasm_digest = r["images"][0]["platforms"][1]["digest"].as_str().unwrap();
    assert!(wasm_cdx["metadata"]["component"]["purl"]
        .as_str()
        .unwrap()
        .contains(&wasm_digest.replace(':', "%3A")));
}

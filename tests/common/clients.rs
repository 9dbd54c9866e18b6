//! Independent clients that read back or prepare what gantry works with, so results
//! are checked by other tools than gantry itself: skopeo (sealed, TLS off for
//! loopback), oras for OCI 1.1 referrers, coreutils' sha256sum, cosign's key
//! generation, and JSON parsing.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use super::env::{require, seal, tool};

/// `sha256:<hex>` of `bytes`, computed by coreutils' sha256sum (not by gantry).
pub fn sha256sum(bytes: &[u8]) -> String {
    require("sha256sum", "apt-get install coreutils");
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run sha256sum");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(bytes)
        .expect("feed sha256sum");
    let out = child.wait_with_output().expect("sha256sum");
    assert!(out.status.success(), "sha256sum failed");
    let hex = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("sha256sum printed a sum")
        .to_string();
    format!("sha256:{hex}")
}

/// A key pair written by the real cosign: `dir/cosign.key` (encrypted with
/// `password`) and `dir/cosign.pub`.
pub fn cosign_key_pair(dir: &Path, password: &str) -> (PathBuf, PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    let out = seal(&mut Command::new(tool("cosign-v3")))
        .arg("generate-key-pair")
        .current_dir(dir)
        .env("COSIGN_PASSWORD", password)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cosign generate-key-pair: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (dir.join("cosign.key"), dir.join("cosign.pub"))
}

pub fn skopeo(args: &[&str]) -> Output {
    require("skopeo", "apt-get install skopeo");
    let mut full = vec![];
    let is_docker = args.iter().any(|a| a.starts_with("docker://"));
    full.push(args[0]);
    if is_docker {
        if args[0] == "copy" {
            full.extend(["--src-tls-verify=false", "--dest-tls-verify=false"]);
        } else {
            full.push("--tls-verify=false");
        }
    }
    full.extend(&args[1..]);
    // Sealed too: skopeo reads REGISTRY_AUTH_FILE, DOCKER_CONFIG and HOME's configs.
    seal(&mut Command::new("skopeo"))
        .args(&full)
        .output()
        .expect("run skopeo")
}

pub fn skopeo_ok(args: &[&str]) -> Vec<u8> {
    let out = skopeo(args);
    assert!(
        out.status.success(),
        "skopeo {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// oras (sealed, plain HTTP): it lists referrers through the referrers API, or the
/// `sha256-<hex>` fallback tag where a registry has none.
pub fn oras_ok(args: &[&str]) -> Vec<u8> {
    let out = seal(&mut Command::new(tool("oras")))
        .args(args)
        .arg("--plain-http")
        .output()
        .expect("run oras");
    assert!(
        out.status.success(),
        "oras {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// What refers to `reference` (`host/repo@sha256:…`), as oras lists it: (artifact
/// type, manifest digest) pairs, sorted. The type is read from each referrer's own
/// manifest: go-containerregistry's registry lists the config's media type instead.
pub fn oras_referrers(reference: &str) -> Vec<(String, String)> {
    let listed = json(&oras_ok(&["discover", "--format", "json", reference]));
    let repository = reference.split_once('@').map_or(reference, |(r, _)| r);
    let mut out: Vec<(String, String)> = listed["referrers"]
        .as_array()
        .unwrap_or_else(|| panic!("oras discover printed no referrers list: {listed}"))
        .iter()
        .map(|r| {
            let digest = r["digest"].as_str().unwrap_or_default().to_string();
            let manifest = json(&oras_ok(&[
                "manifest",
                "fetch",
                &format!("{repository}@{digest}"),
            ]));
            let artifact_type = manifest["artifactType"].as_str().unwrap_or_default();
            (artifact_type.to_string(), digest)
        })
        .collect();
    out.sort();
    out
}

pub fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("valid JSON")
}

/// openssl's stdout for `args`; the test fails with its stderr when it does.
pub fn openssl(args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

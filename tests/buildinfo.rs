//! Build info read from real binaries: for ELF it must equal `go version -m`, and the
//! wasm module (which `go version -m` cannot read) must list the same modules.

mod common;

use std::process::Command;

use gantry::gobuild::buildinfo::BuildInfo;

fn go_build(goos: &str, goarch: &str, out: &std::path::Path) {
    let status = Command::new("go")
        .args(["build", "-trimpath", "-o"])
        .arg(out)
        .arg(".")
        .current_dir(common::example("with-deps"))
        .env("GOOS", goos)
        .env("GOARCH", goarch)
        .env("CGO_ENABLED", "0")
        .status()
        .expect("run go");
    assert!(status.success());
}

#[test]
fn reads_elf_and_wasm_build_info() {
    let dir = tempfile::tempdir().unwrap();
    let elf = dir.path().join("app");
    let wasm = dir.path().join("app.wasm");
    go_build("linux", "arm64", &elf);
    go_build("wasip1", "wasm", &wasm);

    let from_elf = BuildInfo::read(&elf).unwrap();
    let out = Command::new("go")
        .args(["version", "-m"])
        .arg(&elf)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let deps: Vec<String> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("dep\t"))
        .map(|l| l.split('\t').take(3).collect::<Vec<_>>().join(" "))
        .collect();
    let ours: Vec<String> = from_elf
        .deps
        .iter()
        .map(|d| {
            format!(
                "{} {} {}",
                d.path,
                d.version,
                d.sum.clone().unwrap_or_default()
            )
        })
        .collect();
    assert_eq!(ours, deps);
    assert!(ours
        .iter()
        .any(|d| d.starts_with("github.com/google/uuid v1.6.0 h1:")));
    assert!(text.starts_with(&format!("{}: {}", elf.display(), from_elf.go_version)));
    assert_eq!(from_elf.path, "example.com/with-deps");

    let from_wasm = BuildInfo::read(&wasm).unwrap();
    assert_eq!(from_wasm.deps, from_elf.deps);
    assert_eq!(from_wasm.main, from_elf.main);
    assert!(from_wasm
        .settings
        .contains(&("GOOS".into(), "wasip1".into())));
    assert!(from_wasm
        .settings
        .contains(&("GOARCH".into(), "wasm".into())));
    // The reason this reader exists: go itself cannot list a wasm module's deps.
    let go = Command::new("go")
        .args(["version", "-m"])
        .arg(&wasm)
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&go.stdout).contains("dep\t"));
}

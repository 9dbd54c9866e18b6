//! SBOMs from real builds, judged by real validators: pyspdxtools (PyPI spdx-tools),
//! the CycloneDX 1.6 JSON schema (PyPI cyclonedx-python-lib) and, for every package
//! URL, packageurl-python (tests/purl_check.py). The modules an SBOM lists are what
//! `go version -m` prints for the binary in the image, their purls as
//! packageurl-python builds them. Also `gantry sbom --platform`, and the provenance
//! of a checkout with no remote.

mod common;

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use common::*;
use serde_json::Value;

/// Asserts that pyspdxtools accepts each SPDX file.
fn validate_spdx(files: &[String]) {
    require("pyspdxtools", "pip install spdx-tools");
    for file in files {
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
}

/// Asserts that the CycloneDX 1.6 schema, and the graph checks of
/// tests/validate_cyclonedx.py, accept each CycloneDX file.
fn validate_cyclonedx(files: &[String]) {
    let out = Command::new("python3")
        .arg(repo_root().join("tests/validate_cyclonedx.py"))
        .args(files)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "CycloneDX 1.6 rejected (pip install \"cyclonedx-python-lib[json-validation]\"): {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Asserts that packageurl-python parses every purl in these SBOM files and prints
/// it back unchanged; returns how many it checked.
fn purls_are_canonical(files: &[String]) -> usize {
    let out = Command::new("python3")
        .arg(repo_root().join("tests/purl_check.py"))
        .args(files)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "packageurl-python disagrees (pip install packageurl-python): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).lines().count()
}

/// The canonical golang purls of these `(module path, version)` pairs, as
/// packageurl-python writes them.
fn golang_purls(modules: &[(String, String)]) -> Vec<String> {
    let mut child = Command::new("python3")
        .arg(repo_root().join("tests/purl_check.py"))
        .arg("--golang")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let input: String = modules
        .iter()
        .map(|(path, version)| format!("{path}\t{version}\n"))
        .collect();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "purl_check.py --golang: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// What `go version -m` says of a binary.
struct GoSays {
    /// The toolchain, `go1.26.8`.
    go: String,
    /// The main module's path and version.
    main: (String, String),
    /// Each dependency's path, version and go.sum hash, in Go's order.
    deps: Vec<(String, String, Option<String>)>,
}

fn go_version_m(binary: &Path) -> GoSays {
    let out = Command::new("go")
        .args(["version", "-m"])
        .arg(binary)
        .output()
        .unwrap();
    assert!(out.status.success(), "go version -m: {out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let go = text
        .lines()
        .next()
        .and_then(|l| l.rsplit(' ').next())
        .unwrap()
        .to_string();
    let fields = |l: &str| -> Vec<String> { l.split('\t').map(str::to_string).collect() };
    let mut main = None;
    let mut deps = Vec::new();
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("mod\t") {
            let f = fields(rest);
            main = Some((f[0].clone(), f[1].clone()));
        }
        if let Some(rest) = line.strip_prefix("dep\t") {
            let f = fields(rest);
            let sum = f.get(2).filter(|s| !s.is_empty()).cloned();
            deps.push((f[0].clone(), f[1].clone(), sum));
        }
        assert!(!line.starts_with("=>"), "no replacements expected: {line}");
    }
    GoSays {
        go,
        main: main.expect("a mod line"),
        deps,
    }
}

/// The standard library's module version for a release toolchain: `go1.26.8` is
/// `v1.26.8`, `go1.26` is `v1.26.0`.
fn stdlib_version(go: &str) -> String {
    let release = go.strip_prefix("go").unwrap();
    assert!(
        release.chars().all(|c| c.is_ascii_digit() || c == '.'),
        "the tests expect a release toolchain, not {go}"
    );
    match release.matches('.').count() {
        1 => format!("v{release}.0"),
        _ => format!("v{release}"),
    }
}

/// The purls of a CycloneDX document's components of `kind`, in order.
fn component_purls(doc: &Value, kind: &str) -> Vec<String> {
    doc["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["type"] == kind)
        .map(|c| c["purl"].as_str().unwrap().to_string())
        .collect()
}

/// Every purl an SPDX document's packages give.
fn spdx_purls(doc: &Value) -> Vec<String> {
    doc["packages"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["externalRefs"].as_array().unwrap().iter())
        .filter(|r| r["referenceType"] == "purl")
        .map(|r| r["referenceLocator"].as_str().unwrap().to_string())
        .collect()
}

/// The SBOM files a build's report lists, SPDX and CycloneDX apart.
fn listed_sboms(report: &Value) -> (Vec<String>, Vec<String>) {
    let mut spdx = Vec::new();
    let mut cdx = Vec::new();
    for entry in report["images"][0]["sboms"].as_array().unwrap() {
        let file = entry["file"].as_str().unwrap().to_string();
        if file.ends_with(".spdx.json") {
            spdx.push(file)
        } else {
            cdx.push(file)
        }
    }
    (spdx, cdx)
}

#[test]
fn sboms_validate_and_list_the_modules_for_linux_and_wasm() {
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
    let (spdx, cdx) = listed_sboms(&r);
    assert_eq!(
        spdx.len() + cdx.len(),
        6,
        "spdx + cyclonedx for amd64, wasm and the index"
    );
    validate_spdx(&spdx);
    validate_cyclonedx(&cdx);
    let all: Vec<String> = spdx.iter().chain(&cdx).cloned().collect();
    assert!(purls_are_canonical(&all) > 0);

    // What go itself says of the Linux binary from the image.
    let (root, _) = pull_and_extract(
        &format!("oci:{}:latest", layout.display()),
        "linux",
        "amd64",
        None,
    );
    let go = go_version_m(&root.path().join("rootfs/ko-app/with-deps"));
    assert!(go
        .deps
        .iter()
        .any(|(path, version, _)| path == "github.com/google/uuid" && version == "v1.6.0"));
    assert!(go
        .deps
        .iter()
        .any(|(path, _, _)| path == "golang.org/x/text"));
    let mut modules = vec![("stdlib".to_string(), stdlib_version(&go.go))];
    modules.extend(go.deps.iter().map(|(p, v, _)| (p.clone(), v.clone())));
    let expected = golang_purls(&modules);
    assert_eq!(expected[0], format!("pkg:golang/stdlib@{}", modules[0].1));

    let read = |name: &str| json(&std::fs::read(sboms.join(name)).unwrap());
    let wasm_cdx = read("with-deps-wasi-wasm.cdx.json");
    let linux_cdx = read("with-deps-linux-amd64.cdx.json");
    assert_eq!(
        component_purls(&wasm_cdx, "library"),
        expected,
        "wasm SBOM modules differ from go version -m of the Linux build"
    );
    assert_eq!(component_purls(&linux_cdx, "library"), expected);
    let main = golang_purls(std::slice::from_ref(&go.main));
    assert_eq!(component_purls(&linux_cdx, "application"), main);
    for name in [
        "with-deps-wasi-wasm.spdx.json",
        "with-deps-linux-amd64.spdx.json",
    ] {
        let purls = spdx_purls(&read(name));
        for purl in expected.iter().chain(&main) {
            assert!(purls.contains(purl), "{purl} missing from {name}");
        }
    }

    // go.sum's h1 hashes are recorded as what they are, never as a file checksum.
    let summed: Vec<&(String, String, Option<String>)> =
        go.deps.iter().filter(|(_, _, sum)| sum.is_some()).collect();
    assert!(
        !summed.is_empty(),
        "go recorded no h1 hashes: {:?}",
        go.deps
    );
    for doc in [&wasm_cdx, &linux_cdx] {
        for c in doc["components"].as_array().unwrap() {
            assert!(c.get("hashes").is_none(), "a hash that is not one: {c}");
        }
        for (path, _, sum) in &summed {
            let c = doc["components"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["name"] == path.as_str())
                .unwrap();
            let recorded: Vec<&Value> = c["properties"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| &p["value"])
                .collect();
            assert!(recorded.contains(&&Value::from(sum.clone())), "{c}");
        }
    }
    let linux_spdx = read("with-deps-linux-amd64.spdx.json");
    for package in linux_spdx["packages"].as_array().unwrap() {
        if package["SPDXID"] != "SPDXRef-Image" {
            assert!(package.get("checksums").is_none(), "{package}");
        }
    }
    for (path, _, sum) in &summed {
        let package = linux_spdx["packages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == path.as_str())
            .unwrap();
        let note = package["annotations"][0]["comment"].as_str().unwrap();
        assert!(
            note.contains("h1 dirhash") && note.contains(sum.as_deref().unwrap()),
            "{package}"
        );
    }

    // The image is identified by digest: the wasm SBOM names the wasm manifest.
    let wasm_digest = r["images"][0]["platforms"][1]["digest"].as_str().unwrap();
    assert!(wasm_cdx["metadata"]["component"]["purl"]
        .as_str()
        .unwrap()
        .contains(&format!("@{wasm_digest}")));
}

/// A module whose path has uppercase letters and a `+`, and dependencies that are
/// `+incompatible` or spelled with capitals, all vendored so that no network is
/// needed: the SBOMs still validate and every purl is canonical.
#[test]
fn awkward_module_paths_and_versions_give_canonical_purls() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let write = |path: &str, text: &str| {
        let file = src.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, text).unwrap();
    };
    write(
        "go.mod",
        "module example.com/Odd+Mod\n\ngo 1.21\n\nrequire (\n\
         \texample.com/Upper/Lib v1.0.0\n\texample.com/old v2.0.0+incompatible\n)\n",
    );
    write(
        "vendor/modules.txt",
        "# example.com/Upper/Lib v1.0.0\n## explicit; go 1.21\nexample.com/Upper/Lib\n\
         # example.com/old v2.0.0+incompatible\n## explicit\nexample.com/old\n",
    );
    write(
        "vendor/example.com/Upper/Lib/lib.go",
        "package Lib\n\nfunc Hi() string { return \"hi\" }\n",
    );
    write(
        "vendor/example.com/old/old.go",
        "package old\n\nfunc Old() string { return \"old\" }\n",
    );
    write(
        "cmd/app/main.go",
        "package main\n\nimport (\n\t\"fmt\"\n\n\t\"example.com/Upper/Lib\"\n\t\"example.com/old\"\n)\n\n\
         func main() { fmt.Println(Lib.Hi(), old.Old()) }\n",
    );
    let sboms = dir.path().join("sbom");
    let layout = dir.path().join("layout");
    let report = dir.path().join("r.json");
    ok(&gantry_env(
        &src,
        &[
            "build",
            "--platform",
            "linux/amd64",
            "--base",
            "scratch",
            "--oci-layout",
            layout.to_str().unwrap(),
            "--sbom-dir",
            sboms.to_str().unwrap(),
            "--json",
            report.to_str().unwrap(),
            "./cmd/app",
        ],
        &[("GOFLAGS", "-mod=vendor"), ("GOPROXY", "off")],
    ));
    let (spdx, cdx) = listed_sboms(&json(&std::fs::read(&report).unwrap()));
    assert_eq!((spdx.len(), cdx.len()), (1, 1));
    validate_spdx(&spdx);
    validate_cyclonedx(&cdx);
    let all: Vec<String> = spdx.iter().chain(&cdx).cloned().collect();
    assert!(purls_are_canonical(&all) > 0);

    let (root, _) = pull_and_extract(
        &format!("oci:{}:latest", layout.display()),
        "linux",
        "amd64",
        None,
    );
    let go = go_version_m(&root.path().join("rootfs/ko-app/app"));
    assert_eq!(go.main.0, "example.com/Odd+Mod");
    let mut modules = vec![("stdlib".to_string(), stdlib_version(&go.go))];
    modules.extend(go.deps.iter().map(|(p, v, _)| (p.clone(), v.clone())));
    let expected = golang_purls(&modules);
    assert!(
        expected.iter().any(|p| p.contains("%2Bincompatible")),
        "{expected:?}"
    );
    let doc = json(&std::fs::read(&cdx[0]).unwrap());
    assert_eq!(component_purls(&doc, "library"), expected);
    assert_eq!(
        component_purls(&doc, "application"),
        golang_purls(std::slice::from_ref(&go.main))
    );
    // The SBOM's names keep Go's spelling, which is case-sensitive.
    let names: Vec<&str> = doc["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert!(names.contains(&"example.com/Upper/Lib"), "{names:?}");
    let spdx_doc = json(&std::fs::read(&spdx[0]).unwrap());
    let purls = spdx_purls(&spdx_doc);
    for purl in &expected {
        assert!(purls.contains(purl), "{purl} missing from the SPDX");
    }
}

/// The provenance referrer of a signed build in `layout`, as its report lists it.
fn provenance_in(layout: &Path, report: &Value) -> Value {
    let referrer = report["images"][0]["attachments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| {
            a["predicate_type"] == "https://slsa.dev/provenance/v1" && a["storage"] == "referrer"
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
}

/// A signed two-platform build of a git checkout with no remote, pushed to a registry
/// and written to a layout: `gantry sbom --platform` prints each platform's SBOM
/// from either, the index's without it, and names the platforms there are when asked
/// for one that is not; the provenance names the import path and no local directory.
#[test]
fn sbom_per_platform_and_provenance_without_a_remote() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    copy_dir(&example("with-deps"), &src);
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(args)
            .current_dir(&src)
            .output()
            .expect("git (apt-get install git)");
        assert!(out.status.success(), "git {args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    git(&["init", "-q"]);
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "source"]);
    let commit = git(&["rev-parse", "HEAD"]);
    let (key, public) = cosign_key_pair(&dir.path().join("keys"), "pw");
    let registry = TestRegistry::start();
    let repo = format!("{}/per-platform", registry.host);
    let layout = dir.path().join("layout");
    let report = dir.path().join("r.json");
    ok(&gantry_env(
        &src,
        &[
            "build",
            "--repo",
            &repo,
            "--platform",
            "linux/amd64,wasi/wasm",
            "--base",
            "scratch",
            "--oci-layout",
            layout.to_str().unwrap(),
            "--no-tlog-upload",
            "--key",
            key.to_str().unwrap(),
            "--json",
            report.to_str().unwrap(),
            ".",
        ],
        &[("COSIGN_PASSWORD", "pw")],
    ));
    let r = json(&std::fs::read(&report).unwrap());
    let index = r["images"][0]["digest"].as_str().unwrap().to_string();
    let digest_of = |platform: &str| {
        r["images"][0]["platforms"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["platform"] == platform)
            .unwrap_or_else(|| panic!("{platform} in {r}"))["digest"]
            .as_str()
            .unwrap()
            .to_string()
    };

    let public = public.to_str().unwrap();
    let sbom = |reference: &str, platform: Option<&str>| {
        let mut args = vec![
            "sbom",
            "--insecure-ignore-tlog",
            "--format",
            "cyclonedx",
            "--key",
            public,
            reference,
        ];
        if let Some(p) = platform {
            args.extend(["--platform", p]);
        }
        gantry(Path::new("."), &args)
    };
    let described = |out: &std::process::Output| {
        json(ok(out).as_bytes())["metadata"]["component"]["version"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let in_layout = format!("oci:{}", layout.display());
    let in_registry = format!("{repo}@{index}");
    for reference in [in_layout.as_str(), in_registry.as_str()] {
        assert_eq!(described(&sbom(reference, None)), index, "{reference}");
        for platform in ["linux/amd64", "wasi/wasm"] {
            assert_eq!(
                described(&sbom(reference, Some(platform))),
                digest_of(platform),
                "{reference} --platform {platform}"
            );
        }
        let err = fails(&sbom(reference, Some("linux/arm64")));
        assert!(
            err.contains("no linux/arm64 image") && err.contains("linux/amd64, wasi/wasm"),
            "{err}"
        );
    }
    // A single image will do when it is of the platform asked for.
    let wasm = format!("{repo}@{}", digest_of("wasi/wasm"));
    assert_eq!(
        described(&sbom(&wasm, Some("wasi/wasm"))),
        digest_of("wasi/wasm")
    );
    let err = fails(&sbom(&wasm, Some("linux/amd64")));
    assert!(err.contains("single wasi/wasm image"), "{err}");

    // The provenance: the import path Go knows the package by, the commit, and
    // nothing of this machine's directories.
    let provenance = provenance_in(&layout, &r);
    let listed = Command::new("go")
        .args(["list", "-f", "{{.ImportPath}}", "."])
        .current_dir(&src)
        .output()
        .unwrap();
    let import_path = String::from_utf8(listed.stdout).unwrap().trim().to_string();
    assert_eq!(import_path, "example.com/with-deps");
    let definition = &provenance["buildDefinition"];
    assert_eq!(
        definition["externalParameters"]["packages"],
        serde_json::json!([import_path]),
        "{provenance}"
    );
    assert!(
        definition["resolvedDependencies"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["digest"]["gitCommit"] == commit.as_str()),
        "{provenance}"
    );
    let text = provenance.to_string();
    for local in [src.to_str().unwrap(), dir.path().to_str().unwrap(), "file:"] {
        assert!(!text.contains(local), "{local} in {text}");
    }
}

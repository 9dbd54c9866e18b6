//! gantry inside GitHub Actions: step outputs read the way the runner reads them, the
//! job summary, masks, and compile errors as annotations.

mod common;

use common::*;

/// Parses a `$GITHUB_OUTPUT` file as the runner does (`k=v` and `k<<DELIM` forms).
fn parse_outputs(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if let Some((key, delim)) = line.split_once("<<") {
            let value: Vec<&str> = lines.by_ref().take_while(|l| *l != delim).collect();
            out.push((key.to_string(), value.join("\n")));
        } else if let Some((k, v)) = line.split_once('=') {
            out.push((k.to_string(), v.to_string()));
        }
    }
    out
}

#[test]
fn outputs_summary_and_masks_in_actions() {
    let registry = TestRegistry::start();
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("output");
    let summary = dir.path().join("summary");
    let repo = format!("{}/hello", registry.host);
    let out = gantry_env(
        &example("hello"),
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
        ],
        &[
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_OUTPUT", output.to_str().unwrap()),
            ("GITHUB_STEP_SUMMARY", summary.to_str().unwrap()),
            ("COSIGN_PASSWORD", "very-secret-value"),
        ],
    );
    ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("::add-mask::very-secret-value"), "{stderr}");

    let outputs = parse_outputs(&std::fs::read_to_string(&output).unwrap());
    let get = |k: &str| {
        outputs
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no output {k}"))
    };
    let pushed = registry.tag_digest("hello", "v1").unwrap();
    assert_eq!(
        get("digest"),
        pushed,
        "the digest output is what the registry has"
    );
    assert_eq!(get("image"), format!("{repo}@{pushed}"));
    assert_eq!(get("tags"), format!("{repo}:v1"));
    let platforms: serde_json::Value = serde_json::from_str(&get("platforms")).unwrap();
    assert!(platforms["wasi/wasm"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    let metadata: serde_json::Value = serde_json::from_str(&get("metadata")).unwrap();
    assert_eq!(metadata["images"][0]["digest"], pushed.as_str());
    let linux_config = metadata["images"][0]["platforms"][0]["config_digest"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(get("imageid"), linux_config);
    assert_eq!(outputs.len(), 10, "{outputs:?}");

    let md = std::fs::read_to_string(&summary).unwrap();
    assert!(
        md.contains(&format!("| `{repo}` | index | `{pushed}` |")),
        "{md}"
    );
    assert!(md.contains("| | wasi/wasm |"), "{md}");
}

#[test]
fn compile_errors_become_annotations() {
    let dir = tempfile::tempdir().unwrap();
    let pkg = dir.path().join("cmd/broken");
    std::fs::create_dir_all(&pkg).unwrap();
    std::fs::write(
        dir.path().join("go.mod"),
        "module example.com/ws\n\ngo 1.21\n",
    )
    .unwrap();
    std::fs::write(
        pkg.join("main.go"),
        "package main\n\nfunc main() {\n\tnope()\n}\n",
    )
    .unwrap();
    let err = fails(&gantry_env(
        dir.path(),
        &[
            "build",
            "--platform",
            "linux/amd64",
            "--base",
            "scratch",
            "./cmd/broken",
        ],
        &[
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_WORKSPACE", dir.path().to_str().unwrap()),
        ],
    ));
    assert!(
        err.contains("::error file=cmd/broken/main.go,line=4,col=2::undefined: nope"),
        "{err}"
    );
}

//! The GitHub Action: linted by the real linters, `dist/install.sh` against a local
//! release, action.yml's steps run the way a runner runs them, and the binary's
//! outputs, summary, masks and annotations.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::Value;

fn run_ok(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn action_and_workflows_pass_the_linters() {
    let root = repo_root();
    require("check-jsonschema", "pip install check-jsonschema");
    require("zizmor", "pip install zizmor");
    require("shellcheck", "apt-get install shellcheck");
    run_ok(
        Command::new("check-jsonschema")
            .args(["--builtin-schema", "vendor.github-actions", "action.yml"])
            .current_dir(&root),
        "check-jsonschema",
    );
    run_ok(
        Command::new("zizmor")
            .args([
                "--offline",
                "--config",
                ".github/zizmor.yml",
                "--min-severity",
                "high",
                "action.yml",
                ".github/workflows",
            ])
            .current_dir(&root),
        "zizmor (high findings)",
    );
    run_ok(
        Command::new("shellcheck")
            .arg("dist/install.sh")
            .current_dir(&root),
        "shellcheck",
    );
    let workflows: Vec<_> = std::fs::read_dir(root.join(".github/workflows"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    run_ok(
        Command::new(tool("actionlint"))
            .args(&workflows)
            .current_dir(&root),
        "actionlint",
    );
    // Inputs reach scripts through env only, never as ${{ inputs.* }} inside run:.
    let action: Value =
        yaml_serde::from_str(&std::fs::read_to_string(root.join("action.yml")).unwrap()).unwrap();
    for step in action["runs"]["steps"].as_array().unwrap() {
        assert!(
            !step["run"].as_str().unwrap_or("").contains("${{"),
            "expression inside run: {step}"
        );
    }
}

/// A copy of dist/ whose SHA256SUMS lists a fake release in a local directory.
fn fake_release(
    asset: &str,
    contents: &[u8],
    listed: &[u8],
) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let dist = dir.path().join("dist");
    std::fs::create_dir_all(&dist).unwrap();
    std::fs::copy(repo_root().join("dist/install.sh"), dist.join("install.sh")).unwrap();
    std::fs::copy(repo_root().join("dist/VERSION"), dist.join("VERSION")).unwrap();
    let sum = gantry::image::sha256_digest(listed);
    std::fs::write(
        dist.join("SHA256SUMS"),
        format!("{}  {asset}\n", sum.trim_start_matches("sha256:")),
    )
    .unwrap();
    let release = dir.path().join("release");
    std::fs::create_dir_all(&release).unwrap();
    std::fs::write(release.join(asset), contents).unwrap();
    (dir, dist)
}

fn install(
    dist: &Path,
    os: &str,
    arch: &str,
    cache: &Path,
    release: &Path,
) -> std::process::Output {
    let path_file = cache.join("github_path");
    Command::new("bash")
        .arg(dist.join("install.sh"))
        .env("RUNNER_OS", os)
        .env("RUNNER_ARCH", arch)
        .env("RUNNER_TOOL_CACHE", cache)
        .env("GITHUB_PATH", &path_file)
        .env(
            "GANTRY_RELEASE_URL",
            format!("file://{}", release.display()),
        )
        .env_remove("GANTRY_BIN")
        .output()
        .unwrap()
}

#[test]
fn install_sh_picks_the_asset_checks_it_and_caches_it() {
    let script = b"#!/bin/sh\necho fake-gantry\n";
    for (os, arch, asset) in [
        ("Linux", "X64", "gantry-x86_64-unknown-linux-musl"),
        ("Linux", "ARM64", "gantry-aarch64-unknown-linux-musl"),
        ("macOS", "ARM64", "gantry-aarch64-apple-darwin"),
    ] {
        let (dir, dist) = fake_release(asset, script, script);
        let cache = dir.path().join("cache");
        std::fs::create_dir_all(&cache).unwrap();
        let release = dir.path().join("release");
        let out = install(&dist, os, arch, &cache, &release);
        assert!(
            out.status.success(),
            "{os}/{arch}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let on_path = std::fs::read_to_string(cache.join("github_path")).unwrap();
        let bin = Path::new(on_path.trim()).join("gantry");
        assert_eq!(
            run_ok(&mut Command::new(&bin), "installed gantry").trim(),
            "fake-gantry"
        );

        // The cache is reused: the release can be gone.
        std::fs::remove_dir_all(&release).unwrap();
        let out = install(&dist, os, arch, &cache, &release);
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("from the tool cache"),
            "{os}/{arch} not cached"
        );
    }

    let (dir, dist) = fake_release("gantry-x86_64-unknown-linux-musl", b"tampered", script);
    let cache = dir.path().join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    let out = install(&dist, "Linux", "X64", &cache, &dir.path().join("release"));
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("::error") && said.contains("checksum mismatch"),
        "{said}"
    );
    assert!(
        !cache.join("gantry").exists() && std::fs::read_dir(&cache).unwrap().count() == 0,
        "a mismatched binary was cached"
    );

    let out = install(&dist, "Windows", "X64", &cache, &dir.path().join("release"));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("no gantry release for runner Windows/X64")
    );
}

/// Resolves the `${{ … }}` expressions action.yml uses.
fn resolve(
    text: &str,
    inputs: &BTreeMap<String, String>,
    ctx: &BTreeMap<&str, String>,
    steps: &BTreeMap<String, String>,
) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${{") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find("}}").expect("closed expression") + start;
        let expr = rest[start + 3..end].trim();
        let value = if let Some(name) = expr.strip_prefix("inputs.") {
            inputs.get(name).cloned().unwrap_or_default()
        } else if let Some(name) = expr.strip_prefix("steps.build.outputs.") {
            steps.get(name).cloned().unwrap_or_default()
        } else {
            ctx.get(expr)
                .cloned()
                .unwrap_or_else(|| panic!("unknown expression {expr}"))
        };
        out.push_str(&value);
        rest = &rest[end + 2..];
    }
    out.push_str(rest);
    out
}

#[test]
fn action_steps_run_like_a_runner_runs_them() {
    let registry = TestRegistry::start();
    let root = repo_root();
    let action: Value =
        yaml_serde::from_str(&std::fs::read_to_string(root.join("action.yml")).unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let files = |n: &str| dir.path().join(n);
    for f in ["github_path", "github_output", "github_env", "summary"] {
        std::fs::write(files(f), "").unwrap();
    }
    // with: … as a workflow would give it; defaults for the rest, as the runner does.
    let mut inputs: BTreeMap<String, String> = BTreeMap::new();
    let ctx: BTreeMap<&str, String> = [
        ("github.action_path", root.display().to_string()),
        ("github.token", "ghs_fake-token-for-test".to_string()),
    ]
    .into();
    for (name, spec) in action["inputs"].as_object().unwrap() {
        let default = spec["default"].as_str().unwrap_or("");
        inputs.insert(
            name.clone(),
            resolve(default, &inputs.clone(), &ctx, &BTreeMap::new()),
        );
    }
    let repo = format!("{}/acme/hello", registry.host);
    for (k, v) in [
        ("repository", repo.as_str()),
        ("platforms", "linux/amd64,wasi/wasm"),
        ("base-image", "scratch"),
        ("tags", "v1.2.3\nlatest"),
        ("working-directory", "examples/hello"),
    ] {
        inputs.insert(k.into(), v.into());
    }

    let mut path = std::env::var("PATH").unwrap();
    let mut outputs = BTreeMap::new();
    for step in action["runs"]["steps"].as_array().unwrap() {
        let run = step["run"].as_str().unwrap();
        let cwd = step["working-directory"]
            .as_str()
            .map_or(root.clone(), |w| {
                root.join(resolve(w, &inputs, &ctx, &outputs))
            });
        let mut cmd = Command::new("bash");
        cmd.args(["--noprofile", "--norc", "-eo", "pipefail", "-c", run])
            .current_dir(cwd);
        cmd.env("PATH", &path)
            .env("GANTRY_BIN", env!("CARGO_BIN_EXE_gantry"))
            .env("GITHUB_ACTIONS", "true")
            .env("GITHUB_PATH", files("github_path"))
            .env("GITHUB_OUTPUT", files("github_output"))
            .env("GITHUB_ENV", files("github_env"))
            .env("GITHUB_STEP_SUMMARY", files("summary"))
            .env("GITHUB_REPOSITORY", "acme/hello")
            .env("GITHUB_SERVER_URL", "https://github.com")
            .env("GITHUB_SHA", "0123456789abcdef0123456789abcdef01234567")
            .env("RUNNER_TEMP", dir.path())
            .env_remove("GITHUB_TOKEN")
            .env_remove("SOURCE_DATE_EPOCH");
        for (k, v) in step["env"].as_object().into_iter().flatten() {
            cmd.env(k, resolve(v.as_str().unwrap(), &inputs, &ctx, &outputs));
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "step {:?} failed:\n{}",
            step["name"],
            String::from_utf8_lossy(&out.stderr)
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr
                .replace("::add-mask::ghs_fake-token-for-test", "")
                .contains("ghs_fake-token-for-test"),
            "token in the log"
        );
        // The runner adds GITHUB_PATH entries to PATH for later steps.
        for added in std::fs::read_to_string(files("github_path"))
            .unwrap()
            .lines()
        {
            path = format!("{added}:{path}");
        }
        if step["id"] == "build" {
            outputs = parse_outputs(&std::fs::read_to_string(files("github_output")).unwrap());
        }
    }
    let action_outputs: BTreeMap<String, String> = action["outputs"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                resolve(v["value"].as_str().unwrap(), &inputs, &ctx, &outputs),
            )
        })
        .collect();
    let served = registry
        .tag_digest("acme/hello", "v1.2.3")
        .expect("tag pushed");
    assert_eq!(action_outputs["digest"], served);
    assert_eq!(
        registry.tag_digest("acme/hello", "latest").as_deref(),
        Some(served.as_str())
    );
    assert_eq!(action_outputs["image"], format!("{repo}@{served}"));
    assert!(std::fs::read_to_string(files("summary"))
        .unwrap()
        .contains(&served));
    let manifest = json(&skopeo_ok(&[
        "inspect",
        "--raw",
        &format!(
            "docker://{repo}@{}",
            json(action_outputs["platforms"].as_bytes())["linux/amd64"]
                .as_str()
                .unwrap()
        ),
    ]));
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.source"],
        "https://github.com/acme/hello"
    );
}

fn parse_outputs(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if let Some((key, delim)) = line.split_once("<<") {
            let value: Vec<&str> = lines.by_ref().take_while(|l| *l != delim).collect();
            out.insert(key.to_string(), value.join("\n"));
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
    assert!(
        stderr.contains("::group::Go builds") && stderr.contains("::group::Publish"),
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("::group::").count(),
        stderr.matches("::endgroup::").count(),
        "{stderr}"
    );

    let outputs = parse_outputs(&std::fs::read_to_string(&output).unwrap());
    let get = |k: &str| {
        outputs
            .get(k)
            .cloned()
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

#[test]
fn tags_come_from_the_git_ref_in_metadata_action_syntax() {
    let specs = "type=semver,pattern={{version}}\ntype=semver,pattern={{major}}.{{minor}}\ntype=ref,event=branch\ntype=ref,event=pr\ntype=sha";
    for (git_ref, expected) in [
        (
            "refs/tags/v1.2.3",
            vec!["1.2", "1.2.3", "latest", "sha-0123456"],
        ),
        (
            "refs/heads/feature/wasm",
            vec!["feature-wasm", "sha-0123456"],
        ),
        ("refs/pull/42/merge", vec!["pr-42", "sha-0123456"]),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let output = dir.path().join("output");
        ok(&gantry_env(
            &example("hello"),
            &["action"],
            &[
                ("INPUT_PUSH", "false"),
                ("INPUT_PLATFORMS", "wasi/wasm"),
                ("INPUT_TAGS", specs),
                ("GITHUB_REF", git_ref),
                ("GITHUB_SHA", "0123456789abcdef0123"),
                ("RUNNER_TEMP", dir.path().to_str().unwrap()),
                ("GITHUB_ACTIONS", "true"),
                ("GITHUB_OUTPUT", output.to_str().unwrap()),
            ],
        ));
        let index = json(&std::fs::read(dir.path().join("gantry-oci-layout/index.json")).unwrap());
        let mut names: Vec<&str> = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|m| m["annotations"]["org.opencontainers.image.ref.name"].as_str())
            .filter(|n| !n.starts_with("sha256-"))
            .collect();
        names.sort();
        assert_eq!(names, expected, "{git_ref}");
    }

    // A hostile tags value: line breaks and a delimiter-like string stay inside values.
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("output");
    ok(&gantry_env(
        &example("hello"),
        &["action"],
        &[
            ("INPUT_PUSH", "false"),
            ("INPUT_PLATFORMS", "wasi/wasm"),
            (
                "INPUT_TAGS",
                "ok\ndigest=evil\nghadelimiter_1234\nimage<<EOF",
            ),
            ("RUNNER_TEMP", dir.path().to_str().unwrap()),
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_OUTPUT", output.to_str().unwrap()),
        ],
    ));
    let outputs = parse_outputs(&std::fs::read_to_string(&output).unwrap());
    assert!(
        outputs["digest"].starts_with("sha256:"),
        "digest output overridden: {}",
        outputs["digest"]
    );
    assert_eq!(outputs.len(), 10);
    assert!(
        outputs["tags"].contains(":digest-evil"),
        "{}",
        outputs["tags"]
    );
}

#[test]
fn a_key_given_as_a_secret_signs_and_is_removed_whatever_the_outcome() {
    let keys = tempfile::tempdir().unwrap();
    ok(&gantry_env(
        keys.path(),
        &["keygen", "--output-prefix", "k"],
        &[("COSIGN_PASSWORD", "key-pass")],
    ));
    let pem = std::fs::read_to_string(keys.path().join("k.key")).unwrap();
    let leftover_keys = |dir: &std::path::Path| -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".key"))
            .collect()
    };
    for (password, succeeds) in [("key-pass", true), ("wrong-pass", false)] {
        let dir = tempfile::tempdir().unwrap();
        let output = dir.path().join("output");
        let out = gantry_env(
            &example("hello"),
            &["action"],
            &[
                ("INPUT_PUSH", "false"),
                ("INPUT_PLATFORMS", "wasi/wasm"),
                ("INPUT_COSIGN-KEY", pem.as_str()),
                ("COSIGN_PASSWORD", password),
                ("RUNNER_TEMP", dir.path().to_str().unwrap()),
                ("GITHUB_ACTIONS", "true"),
                ("GITHUB_OUTPUT", output.to_str().unwrap()),
            ],
        );
        if succeeds {
            ok(&out);
            // Signed with that key: the layout holds its signature.
            let layout = format!("oci:{}", dir.path().join("gantry-oci-layout").display());
            ok(&gantry_env(
                Path::new("."),
                &[
                    "verify",
                    "--key",
                    keys.path().join("k.pub").to_str().unwrap(),
                    &layout,
                ],
                &[],
            ));
        } else {
            let err = fails(&out);
            assert!(err.contains("cannot decrypt it"), "{err}");
        }
        assert!(
            leftover_keys(dir.path()).is_empty(),
            "the key written from the input stayed in RUNNER_TEMP: {:?}",
            leftover_keys(dir.path())
        );
    }
}

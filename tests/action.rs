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
    let sum = sha256sum(listed);
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
    let mut cmd = Command::new("bash");
    seal(&mut cmd)
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
        // Sealed: nothing from the outside (an OIDC token, COSIGN_KEY) reaches the
        // Action, so `sign: auto` can never reach the public Sigstore from a test.
        let mut cmd = Command::new("bash");
        seal(&mut cmd);
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

/// Reads a `$GITHUB_OUTPUT` file the way the runner does: `key<<DELIMITER` takes the
/// lines up to one that is exactly DELIMITER (none: an error), `key=value` is one
/// line, blank lines are skipped, and anything else is an error. Each output comes
/// with its delimiter, when it has one.
fn runner_entries(text: &str) -> Result<Vec<(String, String, Option<String>)>, String> {
    let mut out = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line.is_empty() {
            continue;
        }
        let heredoc = line.find("<<");
        let equals = line.find('=');
        match (heredoc, equals) {
            (Some(h), e) if e.is_none_or(|e| h < e) => {
                let (key, delimiter) = (&line[..h], &line[h + 2..]);
                let mut value = Vec::new();
                loop {
                    match lines.next() {
                        Some(l) if l == delimiter => break,
                        Some(l) => value.push(l),
                        None => return Err(format!("no closing {delimiter:?} for {key:?}")),
                    }
                }
                out.push((
                    key.to_string(),
                    value.join("\n"),
                    Some(delimiter.to_string()),
                ));
            }
            (_, Some(e)) if e > 0 => {
                out.push((line[..e].to_string(), line[e + 1..].to_string(), None))
            }
            _ => return Err(format!("not an output line: {line:?}")),
        }
    }
    Ok(out)
}

/// The outputs the runner would set from a `$GITHUB_OUTPUT` file, in order.
fn runner_outputs(text: &str) -> Result<Vec<(String, String)>, String> {
    Ok(runner_entries(text)?
        .into_iter()
        .map(|(k, v, _)| (k, v))
        .collect())
}

/// The outputs the runner would set, each set once (a key set twice would let a
/// later line override an earlier one).
fn parse_outputs(text: &str) -> BTreeMap<String, String> {
    let pairs = runner_outputs(text).unwrap_or_else(|e| panic!("{e}:\n{text}"));
    let outputs: BTreeMap<String, String> = pairs.iter().cloned().collect();
    assert_eq!(outputs.len(), pairs.len(), "an output set twice: {pairs:?}");
    outputs
}

/// The delimiter of each output in a `$GITHUB_OUTPUT` file, in order (None for a
/// one-line `key=value`).
fn delimiters(text: &str) -> Vec<Option<String>> {
    runner_entries(text)
        .unwrap_or_else(|e| panic!("{e}:\n{text}"))
        .into_iter()
        .map(|(_, _, d)| d)
        .collect()
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

/// The `*.key` files in `dir`.
fn key_files(dir: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "key"))
        .collect()
}

#[test]
fn a_key_given_as_a_secret_signs_and_is_removed_whatever_the_outcome() {
    let registry = TestRegistry::start();
    let keys = tempfile::tempdir().unwrap();
    ok(&gantry_env(
        keys.path(),
        &["keygen", "--output-prefix", "k"],
        &[("COSIGN_PASSWORD", "key-pass")],
    ));
    let pem = std::fs::read_to_string(keys.path().join("k.key")).unwrap();
    let public = keys.path().join("k.pub");
    let repo = format!("{}/acme/keyed", registry.host);
    let inputs = |dir: &Path| -> Vec<(String, String)> {
        [
            ("INPUT_REPOSITORY", repo.as_str()),
            ("INPUT_PLATFORMS", "wasi/wasm"),
            ("INPUT_COSIGN-KEY", pem.as_str()),
            // Offline: no public transparency log to reach.
            ("INPUT_TLOG-UPLOAD", "false"),
            ("RUNNER_TEMP", dir.to_str().unwrap()),
            ("GITHUB_ACTIONS", "true"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    };

    // The key material itself as the input (as from a secret): the pushed image
    // verifies with cosign and the public half, and no key file stays behind.
    let dir = tempfile::tempdir().unwrap();
    let mut vars = inputs(dir.path());
    vars.push(("COSIGN_PASSWORD".into(), "key-pass".into()));
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let image = ok(&gantry_env(&example("hello"), &["action"], &vars))
        .trim()
        .to_string();
    let digest = image.rsplit_once('@').unwrap().1;
    let out = Command::new(tool("cosign-v3"))
        .arg("verify")
        .arg("--key")
        .arg(&public)
        .args([
            "--insecure-ignore-tlog=true",
            "--allow-http-registry",
            &image,
        ])
        .output()
        .unwrap();
    // A signature of the image's own digest among what cosign verified (its exit
    // status alone would also pass on an attestation the key signed).
    let types: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.trim_start().starts_with('['))
        .flat_map(|l| json(l.as_bytes()).as_array().cloned().unwrap_or_default())
        .filter(|c| c["critical"]["image"]["docker-manifest-digest"] == digest)
        .filter_map(|c| c["critical"]["type"].as_str().map(str::to_string))
        .collect();
    assert!(
        out.status.success()
            && types
                .iter()
                .any(|t| t == "https://sigstore.dev/cosign/sign/v1"
                    || t == "cosign container image signature"),
        "cosign verify --key ({types:?}):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        key_files(dir.path()).is_empty(),
        "the key written from the input stayed in RUNNER_TEMP: {:?}",
        key_files(dir.path())
    );

    // A wrong password: the run fails on the key, and the file goes too.
    let dir = tempfile::tempdir().unwrap();
    let mut vars = inputs(dir.path());
    vars.push(("COSIGN_PASSWORD".into(), "wrong-pass".into()));
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let err = fails(&gantry_env(&example("hello"), &["action"], &vars));
    assert!(err.contains("cannot decrypt it"), "{err}");
    assert!(
        key_files(dir.path()).is_empty(),
        "the key written from the input stayed in RUNNER_TEMP: {:?}",
        key_files(dir.path())
    );

    // Stopped by SIGTERM while the Go build runs: the key file was there (owner-only,
    // the input's bytes), and it is gone once gantry has ended. The go build is a
    // shim that says it started and sleeps.
    let dir = tempfile::tempdir().unwrap();
    let started = dir.path().join("go-started");
    let shim = dir.path().join("go");
    std::fs::write(
        &shim,
        format!(
            "#!/bin/sh\nif [ \"$1\" = build ]; then echo $$ > '{}'; exec sleep 613; fi\nexec '{}' \"$@\"\n",
            started.display(),
            real_go().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&shim, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let temp = dir.path().join("runner-temp");
    std::fs::create_dir(&temp).unwrap();
    let mut cmd = gantry_command(&example("hello"));
    cmd.arg("action")
        .env("GANTRY_GO", &shim)
        .env("COSIGN_PASSWORD", "key-pass")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    for (k, v) in inputs(&temp) {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let sleeper = loop {
        if let Some(pid) = std::fs::read_to_string(&started)
            .ok()
            .and_then(|t| t.trim().parse::<u32>().ok())
        {
            break pid;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the build never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    // What was on disk while it ran, asserted once gantry and the shim are stopped.
    let written: Vec<(String, u32)> = key_files(&temp)
        .iter()
        .map(|p| {
            let mode = std::fs::metadata(p)
                .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777);
            (
                std::fs::read_to_string(p).unwrap_or_default(),
                mode.unwrap_or(0),
            )
        })
        .collect();
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    // The shim's sleep is ours to end if gantry left it running.
    let _ = Command::new("kill")
        .args(["-TERM", &sleeper.to_string()])
        .output();
    assert!(killed.success());
    // The input's bytes (the runner's inputs are trimmed, so is this one), owner-only.
    assert_eq!(
        written,
        [(pem.trim().to_string(), 0o600)],
        "the key file while building"
    );
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(143), "{stderr}");
    assert!(
        key_files(&temp).is_empty(),
        "the key file outlived a SIGTERM: {:?}",
        key_files(&temp)
    );
}

#[test]
fn every_output_gets_a_fresh_random_delimiter_that_no_value_can_fake() {
    let run = || {
        let dir = tempfile::tempdir().unwrap();
        let output = dir.path().join("output");
        ok(&gantry_env(
            &example("hello"),
            &["action"],
            &[
                ("INPUT_PUSH", "false"),
                ("INPUT_PLATFORMS", "wasi/wasm"),
                ("RUNNER_TEMP", dir.path().to_str().unwrap()),
                ("GITHUB_ACTIONS", "true"),
                ("GITHUB_OUTPUT", output.to_str().unwrap()),
            ],
        ));
        std::fs::read_to_string(&output).unwrap()
    };
    let (first, second) = (run(), run());
    // Every output is in the multi-line form, and the file reads back the runner's way.
    let multi_line = |text: &str| -> Vec<String> {
        let found = delimiters(text);
        assert_eq!(found.len(), parse_outputs(text).len());
        found
            .into_iter()
            .map(|d| d.unwrap_or_else(|| panic!("a one-line output:\n{text}")))
            .collect()
    };
    let (a, b) = (multi_line(&first), multi_line(&second));
    assert_eq!(a.len(), 10, "{first}");
    // 20 delimiters, no two alike: not fixed, not per run, not per key.
    let mut all: Vec<&String> = a.iter().chain(&b).collect();
    all.sort();
    all.dedup();
    assert_eq!(
        all.len(),
        a.len() + b.len(),
        "a delimiter came twice: {a:?} {b:?}"
    );
    // Past what they share, each has a long part of its own (a random one).
    let shared = all
        .iter()
        .map(|d| {
            d.chars()
                .zip(all[0].chars())
                .take_while(|(x, y)| x == y)
                .count()
        })
        .min()
        .unwrap();
    assert!(
        all.iter().all(|d| d.chars().count() >= shared + 32),
        "delimiters with less than 32 characters of their own: {all:?}"
    );

    // A value holding lines that equal naive delimiters, one of the delimiters just
    // seen, and what a break-out would add, stays one value: written by gantry's
    // writer, read the runner's way. (No input reaches a line of an output value
    // unprefixed, so this is asked of the writer directly.)
    let hostile = format!(
        "v1\nEOF\ndigest=evil\nghadelimiter\n{}\nimage<<EOF\nx\nEOF",
        a[0]
    );
    let written = vec![
        ("tags".to_string(), hostile.clone()),
        ("digest".to_string(), "sha256:ab".to_string()),
    ];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("output");
    gantry::github::write_outputs(&path, &written).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(runner_outputs(&text), Ok(written.clone()), "{text}");
    assert!(delimiters(&text)
        .iter()
        .all(|d| d.as_ref().is_some_and(|d| !all.contains(&d))));
    // The reading is a judge: under a fixed delimiter the same value breaks out.
    let naive = format!("tags<<EOF\n{hostile}\nEOF\ndigest<<EOF\nsha256:ab\nEOF\n");
    assert_ne!(runner_outputs(&naive), Ok(written));
}

/// Runs git in `dir` with no user or system configuration, and returns its stdout.
fn git(dir: &Path, args: &[&str]) -> String {
    run_ok(
        Command::new("git")
            .args([
                "-c",
                "user.name=gantry test",
                "-c",
                "user.email=test@example.com",
            ])
            .args(args)
            .current_dir(dir)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1"),
        &format!("git {args:?}"),
    )
}

#[test]
fn the_action_labels_every_image_with_the_commit_it_built() {
    require("git", "apt-get install git");
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("hello");
    copy_dir(&example("hello"), &src);
    git(&src, &["init", "-q"]);
    git(&src, &["add", "."]);
    git(&src, &["commit", "-q", "-m", "hello"]);
    let head = git(&src, &["rev-parse", "HEAD"]).trim().to_string();
    assert_eq!(head.len(), 40, "{head}");
    let temp = dir.path().join("runner-temp");
    std::fs::create_dir(&temp).unwrap();
    // GITHUB_SHA is how the runner names the commit checked out.
    ok(&gantry_env(
        &src,
        &["action"],
        &[
            ("INPUT_PUSH", "false"),
            ("INPUT_PLATFORMS", "linux/amd64,wasi/wasm"),
            ("INPUT_BASE-IMAGE", "scratch"),
            ("GITHUB_SHA", head.as_str()),
            ("GITHUB_SERVER_URL", "https://github.com"),
            ("GITHUB_REPOSITORY", "acme/hello"),
            ("RUNNER_TEMP", temp.to_str().unwrap()),
            ("GITHUB_ACTIONS", "true"),
        ],
    ));
    let layout = temp.join("gantry-oci-layout");
    let blob = |digest: &str| {
        json(
            &std::fs::read(
                layout
                    .join("blobs/sha256")
                    .join(digest.trim_start_matches("sha256:")),
            )
            .unwrap(),
        )
    };
    let top = json(&std::fs::read(layout.join("index.json")).unwrap());
    let tagged = top["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == "latest")
        .expect("the latest tag");
    let index = blob(tagged["digest"].as_str().unwrap());
    let images = index["manifests"].as_array().unwrap();
    assert_eq!(images.len(), 2, "{index}");
    for entry in images {
        let manifest = blob(entry["digest"].as_str().unwrap());
        let config = blob(manifest["config"]["digest"].as_str().unwrap());
        let platform = &entry["platform"];
        for (key, value) in [
            ("org.opencontainers.image.revision", head.as_str()),
            (
                "org.opencontainers.image.source",
                "https://github.com/acme/hello",
            ),
        ] {
            assert_eq!(
                config["config"]["Labels"][key], value,
                "{platform} label {key}"
            );
            assert_eq!(
                manifest["annotations"][key], value,
                "{platform} annotation {key}"
            );
        }
    }
}

/// Stands in for ghcr.io, which is not reached from here: an HTTPS proxy (for
/// HTTPS_PROXY) that accepts the CONNECT, ends the TLS itself with a certificate for
/// ghcr.io from a CA the test makes (for SSL_CERT_FILE), records the requests inside
/// the tunnel, and refuses each with 403.
struct FakeGhcr {
    proxy: String,
    ca: std::path::PathBuf,
    /// `CONNECT host:port`, then `METHOD path` of each request in a tunnel.
    seen: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

impl FakeGhcr {
    fn start() -> Self {
        require("openssl", "apt-get install openssl");
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n).display().to_string();
        std::fs::write(
            p("leaf.ext"),
            "subjectAltName=DNS:ghcr.io\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
        )
        .unwrap();
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        for args in [
            [
                &["req", "-x509"][..],
                &ec,
                &["-keyout", &p("ca.key"), "-out", &p("ca.pem")],
            ]
            .concat()
            .into_iter()
            .chain([
                "-days",
                "1",
                "-subj",
                "/CN=gantry test CA",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign",
            ])
            .collect::<Vec<&str>>(),
            [
                &["req"][..],
                &ec,
                &["-keyout", &p("leaf.key"), "-out", &p("leaf.csr")],
            ]
            .concat()
            .into_iter()
            .chain(["-subj", "/CN=ghcr.io"])
            .collect(),
        ] {
            run_ok(Command::new("openssl").args(&args), "openssl req");
        }
        let (csr, ca, ca_key, ext, leaf) = (
            p("leaf.csr"),
            p("ca.pem"),
            p("ca.key"),
            p("leaf.ext"),
            p("leaf.pem"),
        );
        run_ok(
            Command::new("openssl").args([
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &ca,
                "-CAkey",
                &ca_key,
                "-CAcreateserial",
                "-days",
                "1",
                "-extfile",
                &ext,
                "-out",
                &leaf,
            ]),
            "openssl x509",
        );
        let der = |path: &str| {
            pem::parse(std::fs::read(path).unwrap())
                .unwrap()
                .into_contents()
        };
        let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![rustls::pki_types::CertificateDer::from(der(&leaf))],
                rustls::pki_types::PrivateKeyDer::Pkcs8(der(&p("leaf.key")).into()),
            )
            .unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let config = std::sync::Arc::new(config);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let proxy = format!("http://{}", listener.local_addr().unwrap());
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (config, log) = (config.clone(), log.clone());
                std::thread::spawn(move || tunnel(stream, config, &log));
            }
        });
        FakeGhcr {
            proxy,
            ca: dir.path().join("ca.pem"),
            seen,
            _dir: dir,
        }
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

/// The head of an HTTP request: its first line, and the header lines up to the blank
/// one (None when the stream ends first).
fn request_head(reader: &mut impl std::io::BufRead) -> Option<String> {
    let mut first = String::new();
    reader.read_line(&mut first).ok().filter(|n| *n > 0)?;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 || line.trim().is_empty() {
            return Some(first.trim().to_string());
        }
    }
}

fn tunnel(
    mut stream: std::net::TcpStream,
    config: std::sync::Arc<rustls::ServerConfig>,
    log: &std::sync::Mutex<Vec<String>>,
) {
    use std::io::Write;
    // The client sends nothing more until the CONNECT is answered: no byte of the
    // TLS handshake can be left in this reader's buffer.
    let Some(connect) = request_head(&mut std::io::BufReader::new(&stream)) else {
        return;
    };
    log.lock()
        .unwrap()
        .push(connect.trim_end_matches(" HTTP/1.1").to_string());
    if stream
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .is_err()
    {
        return;
    }
    let Ok(server) = rustls::ServerConnection::new(config) else {
        return;
    };
    let mut tls = std::io::BufReader::new(rustls::StreamOwned::new(server, stream));
    while let Some(request) = request_head(&mut tls) {
        let mut parts = request.split_whitespace();
        let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        log.lock().unwrap().push(format!("{method} {path}"));
        let body = r#"{"errors":[{"code":"DENIED","message":"the test's stand-in for ghcr.io"}]}"#;
        let response = format!(
            "HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let tls = tls.get_mut();
        if tls
            .write_all(response.as_bytes())
            .and_then(|_| tls.flush())
            .is_err()
        {
            return;
        }
    }
}

#[test]
fn without_a_repository_input_the_action_pushes_to_ghcr_io_owner_repo_lowercased() {
    let ghcr = FakeGhcr::start();
    let dir = tempfile::tempdir().unwrap();
    let stderr = fails(&gantry_env(
        &example("hello"),
        &["action"],
        &[
            ("INPUT_PLATFORMS", "wasi/wasm"),
            ("GITHUB_REPOSITORY", "Octo-Org/Hello-App"),
            ("RUNNER_TEMP", dir.path().to_str().unwrap()),
            ("GITHUB_ACTIONS", "true"),
            ("HTTPS_PROXY", ghcr.proxy.as_str()),
            ("SSL_CERT_FILE", ghcr.ca.to_str().unwrap()),
        ],
    ));
    let seen = ghcr.seen();
    assert_eq!(
        seen.first().map(String::as_str),
        Some("CONNECT ghcr.io:443"),
        "{seen:?}\n{stderr}"
    );
    assert!(
        seen.iter().any(|r| r.contains(" /v2/octo-org/hello-app/")),
        "no request for ghcr.io/octo-org/hello-app: {seen:?}\n{stderr}"
    );
    assert!(
        seen.iter()
            .filter(|r| !r.starts_with("CONNECT "))
            .all(|r| r.contains(" /v2/octo-org/hello-app/")),
        "{seen:?}"
    );
    assert!(
        stderr.contains("registry ghcr.io refused access to octo-org/hello-app"),
        "{stderr}"
    );
}

#[test]
fn without_repo_the_cli_takes_gantry_repo_then_ko_docker_repo_then_writes_oci_layout() {
    let registry = TestRegistry::start();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("hello");
    copy_dir(&example("hello"), &src);
    let build = |vars: &[(&str, &str)]| {
        ok(&gantry_env(
            &src,
            &["build", "--platform", "wasi/wasm"],
            vars,
        ))
    };
    let gantry_repo = format!("{}/from-gantry-repo", registry.host);
    let ko_repo = format!("{}/from-ko-docker-repo", registry.host);

    let out = build(&[
        ("GANTRY_REPO", gantry_repo.as_str()),
        ("KO_DOCKER_REPO", ko_repo.as_str()),
    ]);
    assert!(out.starts_with(&format!("{gantry_repo}@sha256:")), "{out}");
    assert_eq!(registry.repositories(), ["from-gantry-repo"]);

    let out = build(&[("KO_DOCKER_REPO", ko_repo.as_str())]);
    assert!(out.starts_with(&format!("{ko_repo}@sha256:")), "{out}");
    let mut repos = registry.repositories();
    repos.sort();
    assert_eq!(repos, ["from-gantry-repo", "from-ko-docker-repo"]);

    // Neither: an OCI layout in ./oci-layout, and nothing more in the registry.
    let out = build(&[]);
    let layout = src.join("oci-layout");
    let (place, digest) = out.trim().rsplit_once('@').unwrap();
    assert!(
        place.starts_with("oci:") && place.ends_with("oci-layout"),
        "{out}"
    );
    let top = json(&std::fs::read(layout.join("index.json")).expect("./oci-layout/index.json"));
    assert!(
        top["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["digest"] == digest),
        "{top}"
    );
    assert_eq!(registry.repositories().len(), 2);
}

#[test]
fn install_sh_builds_from_source_when_no_release_lists_the_asset() {
    // A release that lists another asset only: install.sh must build this source with
    // cargo (a recording stand-in here), cache the binary, and use the cache next time.
    let (dir, dist) = fake_release("gantry-some-other-target", b"x", b"x");
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let calls = dir.path().join("cargo-calls");
    let cargo = bin.join("cargo");
    std::fs::write(
        &cargo,
        format!(
            "#!/bin/sh\necho \"$@\" >> {calls}\nmkdir -p {root}/target/release\nprintf '#!/bin/sh\\necho built-from-source\\n' > {root}/target/release/gantry\nchmod 755 {root}/target/release/gantry\n",
            calls = calls.display(),
            root = dir.path().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&cargo, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let cache = dir.path().join("cache");
    let run = || {
        let path_file = cache.join("github_path");
        std::fs::create_dir_all(&cache).unwrap();
        let out = Command::new("bash")
            .arg(dist.join("install.sh"))
            .env_clear()
            .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
            .env("HOME", dir.path())
            .env("RUNNER_OS", "Linux")
            .env("RUNNER_ARCH", "X64")
            .env("RUNNER_TOOL_CACHE", &cache)
            .env("GITHUB_PATH", &path_file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "install.sh: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            std::fs::read_to_string(&path_file).unwrap(),
        )
    };
    let (said, path) = run();
    assert!(said.contains("building from source"), "{said}");
    let recorded = std::fs::read_to_string(&calls).unwrap();
    assert_eq!(
        recorded.trim(),
        format!(
            "build --release --locked --manifest-path {}/../Cargo.toml",
            dist.display()
        )
    );
    // The directory put on PATH holds the built binary.
    let on_path = Path::new(path.trim());
    let out = Command::new(on_path.join("gantry")).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "built-from-source"
    );

    // Next time: the tool cache, and cargo is not run again.
    let (said, _) = run();
    assert!(said.contains("from the tool cache"), "{said}");
    assert_eq!(std::fs::read_to_string(&calls).unwrap().lines().count(), 1);
}

/// The `signing-config` input reaches `--signing-config`: a config of a version gantry
/// does not read stops the action, naming the file and the version, before anything
/// is built.
#[test]
fn the_signing_config_input_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("signing_config.json");
    std::fs::write(
        &config,
        r#"{"mediaType":"application/vnd.dev.sigstore.signingconfig.v0.1+json",
        "caUrls":[{"url":"https://fulcio.example","majorApiVersion":1,"validFor":{"start":"2020-01-01T00:00:00Z"}}]}"#,
    )
    .unwrap();
    let go = RecordingGo::new();
    let err = fails(&gantry_env(
        &example("hello"),
        &["action"],
        &[
            go.env(),
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_REPOSITORY", "octo-org/octo-repo"),
            ("INPUT_PUSH", "false"),
            ("INPUT_SIGN", "none"),
            ("INPUT_SIGNING-CONFIG", config.to_str().unwrap()),
        ],
    ));
    assert!(
        err.contains("signing_config.json") && err.contains("signingconfig.v0.1+json"),
        "{err}"
    );
    assert!(go.builds().is_empty(), "{:?}", go.builds());
}

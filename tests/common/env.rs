//! The environment gantry runs in, and running it: [`seal`] clears a command's
//! environment down to PATH, a per-test HOME and caches, and the real user's Go
//! settings, so no test sees the developer's credentials or config; [`gantry`] and
//! friends run the built binary that way, and [`ok`]/[`fails`] check the outcome.
//! Also where fixtures and installed tools are found ([`repo_root`], [`example`],
//! [`tool`], [`require`]).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use super::go::{go_env, GO_SETTINGS};

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn example(name: &str) -> PathBuf {
    repo_root().join("examples").join(name)
}

/// Panics with an install hint when `tool` is not on PATH.
pub fn require(tool: &str, install: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "`{tool}` is not installed; {install} (scripts/test installs it)"
    );
}

/// A Go tool scripts/test installs into target/tools (cosign-v2, cosign-v3, fulcio,
/// referrers-registry, oidc-issuer).
pub fn tool(name: &str) -> PathBuf {
    let binary = match name {
        _ if name.starts_with("cosign") => "cosign",
        "rekor-tiles" => "posix",
        _ => name,
    };
    let path = repo_root().join("target/tools").join(name).join(binary);
    assert!(
        path.is_file(),
        "{} is missing; run scripts/test, which installs it with go install",
        path.display()
    );
    path
}

/// Copies a directory tree (test fixtures into temp dirs).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}

/// Runs gantry with `args` in `dir`, in a sealed environment (see [`seal`]).
pub fn gantry(dir: &Path, args: &[&str]) -> Output {
    gantry_env(dir, args, &[])
}

/// Runs gantry with `args` in `dir`, in a sealed environment plus `env` (applied last).
pub fn gantry_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = gantry_command(dir);
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run gantry")
}

/// The gantry binary, to run in `dir` in a sealed environment (see [`seal`]), for a
/// test that spawns it itself.
pub fn gantry_command(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gantry"));
    cmd.current_dir(dir);
    seal(&mut cmd);
    cmd
}

thread_local! {
    /// This test's own HOME and caches. libtest runs each test on a thread of its
    /// own, so the directory lives as long as the test and is removed after it.
    static SEALED_ROOT: tempfile::TempDir = {
        let dir = tempfile::Builder::new()
            .prefix("gantry-test-env-")
            .tempdir()
            .expect("tempdir");
        std::fs::create_dir(dir.path().join("home")).expect("mkdir home");
        dir
    };
}

/// Clears `cmd`'s environment and sets only what a run needs: PATH (and TMPDIR, when
/// set); HOME, DOCKER_CONFIG, XDG_CACHE_HOME and GANTRY_CACHE_DIR in this test's own
/// temporary directory; and Go's caches and settings as the real user has them.
/// Anything else (credentials, tokens, GANTRY_REPO, SOURCE_DATE_EPOCH) a test sets
/// itself.
pub fn seal(cmd: &mut Command) -> &mut Command {
    let root = SEALED_ROOT.with(|d| d.path().to_path_buf());
    let home = root.join("home");
    cmd.env_clear();
    for inherited in ["PATH", "TMPDIR"] {
        if let Some(value) = std::env::var_os(inherited) {
            cmd.env(inherited, value);
        }
    }
    cmd.env("HOME", &home)
        .env("DOCKER_CONFIG", home.join(".docker"))
        .env("XDG_CACHE_HOME", root.join("cache"))
        .env("GANTRY_CACHE_DIR", root.join("cache/gantry"));
    let go = go_env();
    for key in GO_SETTINGS {
        if let Some(value) = go
            .get(key)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
        {
            cmd.env(key, value);
        }
    }
    cmd
}

/// The `REPO@sha256:…` a failed build names as pushed (no tag moved, so the error is
/// where the digest is).
pub fn pushed_reference(stderr: &str, repo: &str) -> String {
    stderr
        .split_whitespace()
        .find(|w| w.starts_with(&format!("{repo}@sha256:")))
        .unwrap_or_else(|| panic!("the error does not name the pushed digest:\n{stderr}"))
        .trim_end_matches(',')
        .to_string()
}

/// Asserts success and returns stdout.
pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "gantry failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asserts failure and returns stderr.
pub fn fails(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "gantry should have failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stdout.is_empty(),
        "a failed run printed a result: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !stderr.contains("panicked at") && out.status.code() != Some(101),
        "gantry panicked: {stderr}"
    );
    stderr
}

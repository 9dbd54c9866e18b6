//! The real user's Go toolchain as the tests see it: `go env` asked once per test
//! binary (the caches and settings [`seal`](super::seal) passes on), the real `go`
//! binary, and [`RecordingGo`], a GANTRY_GO wrapper that logs what gantry asked Go
//! to do.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// Go's settings that a sealed run passes on, as `go env` reports them for the real
/// user: the build and module caches stay shared and warm.
pub(super) const GO_SETTINGS: [&str; 11] = [
    "GOCACHE",
    "GOMODCACHE",
    "GOPATH",
    "GOPROXY",
    "GOFLAGS",
    "GONOSUMDB",
    "GONOPROXY",
    "GOSUMDB",
    "GOPRIVATE",
    "GOINSECURE",
    "GOTOOLCHAIN",
];

/// `go env` of the real user, asked once per test binary: GO_SETTINGS and GOROOT.
pub(super) fn go_env() -> &'static serde_json::Map<String, Value> {
    static GO_ENV: std::sync::OnceLock<serde_json::Map<String, Value>> = std::sync::OnceLock::new();
    GO_ENV.get_or_init(|| {
        let out = Command::new("go")
            .args(["env", "-json", "GOROOT"])
            .args(GO_SETTINGS)
            .output()
            .expect("run `go env`: the tests need Go (scripts/test checks for it)");
        assert!(
            out.status.success(),
            "go env failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("go env -json")
    })
}

/// The real `go` binary, `$(go env GOROOT)/bin/go`.
pub fn real_go() -> PathBuf {
    let goroot = go_env()["GOROOT"].as_str().expect("GOROOT");
    Path::new(goroot).join("bin/go")
}

/// A `go` for GANTRY_GO that appends each invocation's arguments to a log, one line
/// each, then runs the real go: what gantry asked Go to do, seen from outside.
pub struct RecordingGo {
    pub go: PathBuf,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl RecordingGo {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let go = dir.path().join("go");
        let log = dir.path().join("calls");
        std::fs::write(
            &go,
            format!(
                "#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{}'\nexec '{}' \"$@\"\n",
                log.display(),
                real_go().display()
            ),
        )
        .expect("write the recording go");
        std::fs::set_permissions(&go, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
        RecordingGo { go, log, _dir: dir }
    }

    /// GANTRY_GO for gantry_env.
    pub fn env(&self) -> (&'static str, &str) {
        ("GANTRY_GO", self.go.to_str().expect("utf-8 path"))
    }

    /// Every invocation so far, its arguments joined by spaces.
    pub fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// The `go build` invocations so far.
    pub fn builds(&self) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter(|c| c == "build" || c.starts_with("build "))
            .collect()
    }
}

impl Default for RecordingGo {
    fn default() -> Self {
        Self::new()
    }
}

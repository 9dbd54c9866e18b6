//! The Go toolchain: which one is on PATH, which packages the user named, and one
//! `go build` per platform.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::Command;

pub mod buildinfo;
mod module;

pub use module::guess_package_dir;

use crate::platform::Platform;

/// The first Go that can target `GOOS=wasip1`.
pub const MIN_WASIP1: GoVersion = GoVersion {
    major: 1,
    minor: 21,
};

#[derive(Debug, thiserror::Error)]
pub enum GoError {
    #[error("no Go toolchain found: install Go (https://go.dev/dl) or put it on PATH, or set GANTRY_GO to its path; `{go}` could not be run")]
    NotFound {
        go: String,
        #[source]
        cause: std::io::Error,
    },
    #[error("could not read the Go version from `go env GOVERSION` (it printed {0:?})")]
    UnknownVersion(String),
    #[error("{platforms} needs Go {MIN_WASIP1} or newer (GOOS=wasip1 arrived in Go 1.21), but `go` is {found}; install a newer Go or drop the wasm platform")]
    TooOldForWasip1 { found: GoVersion, platforms: String },
    #[error("cannot find Go package {package:?} from {dir}:\n{stderr}")]
    Resolve {
        package: String,
        dir: PathBuf,
        stderr: String,
    },
    #[error("package {import_path} is `package {name}`, not `package main`: only main packages build into programs; name the directory of a command (e.g. ./cmd/app)")]
    NotMain { import_path: String, name: String },
    #[error("go build of {import_path} for {platform} failed:\n{stderr}")]
    Compile {
        import_path: String,
        platform: String,
        /// Where go ran: the paths in its messages are relative to it.
        dir: PathBuf,
        stderr: String,
    },
    #[error("running go")]
    Io(#[from] std::io::Error),
}

/// A Go release's major.minor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct GoVersion {
    pub major: u32,
    pub minor: u32,
}

impl GoVersion {
    /// Reads `go1.21.3`, `go1.22rc1` or `devel go1.23-abcdef`.
    pub fn parse(text: &str) -> Option<GoVersion> {
        let start = text.find("go1.")? + 2;
        let rest = &text[start..];
        let mut nums = rest.split(|c: char| !c.is_ascii_digit());
        let major = nums.next()?.parse().ok()?;
        let minor = nums.next()?.parse().ok()?;
        Some(GoVersion { major, minor })
    }
}

impl fmt::Display for GoVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// The `go` command gantry builds with.
#[derive(Debug, Clone)]
pub struct GoToolchain {
    pub go: PathBuf,
    /// Full version string (`go1.26.8`), recorded in reports and provenance.
    pub version_string: String,
    pub version: GoVersion,
}

impl GoToolchain {
    /// Asks `go` (a path, or a name looked up on PATH) its version.
    pub async fn detect(go: &Path) -> Result<Self, GoError> {
        let go = go.to_path_buf();
        let out = Command::new(&go)
            .args(["env", "GOVERSION"])
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|cause| GoError::NotFound {
                go: go.display().to_string(),
                cause,
            })?;
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let version =
            GoVersion::parse(&text).ok_or_else(|| GoError::UnknownVersion(text.clone()))?;
        Ok(GoToolchain {
            go,
            version_string: text,
            version,
        })
    }

    /// Fails before any build when a wasm platform needs a newer Go.
    pub fn check_platforms(&self, platforms: &[Platform]) -> Result<(), GoError> {
        let wasm: Vec<String> = platforms
            .iter()
            .filter(|p| p.is_wasm())
            .map(Platform::to_string)
            .collect();
        if !wasm.is_empty() && self.version < MIN_WASIP1 {
            return Err(GoError::TooOldForWasip1 {
                found: self.version,
                platforms: wasm.join(", "),
            });
        }
        Ok(())
    }

    /// Runs one `go build` for `platform`, writing the binary to `out`.
    pub async fn build(&self, job: &BuildJob<'_>) -> Result<(), GoError> {
        let mut cmd = Command::new(&self.go);
        cmd.arg("build").arg("-trimpath").arg("-o").arg(job.out);
        cmd.args(job.flags);
        if !job.ldflags.is_empty() {
            cmd.arg(format!("-ldflags={}", job.ldflags.join(" ")));
        }
        cmd.arg(job.target)
            .current_dir(job.dir)
            .stdin(Stdio::null())
            // A build abandoned (the base failed to resolve, a signal) stops too.
            .kill_on_drop(true)
            .env("CGO_ENABLED", "0");
        // What the user set (in the environment or, applied after, the config) wins.
        for (k, v) in tuning(job.procs, |k| std::env::var_os(k).is_some()) {
            cmd.env(k, v);
        }
        for (k, v) in job.env {
            cmd.env(k, v);
        }
        // The platform decides GOOS/GOARCH; configured env cannot contradict it.
        for (k, v) in job.platform.go_env() {
            cmd.env(k, v);
        }
        let out = cmd.output().await?;
        if !out.status.success() {
            return Err(GoError::Compile {
                import_path: job.target.to_string(),
                platform: job.platform.to_string(),
                dir: job.dir.to_path_buf(),
                stderr: String::from_utf8_lossy(&out.stderr).trim_end().to_string(),
            });
        }
        Ok(())
    }
}

/// Resolves a package argument (import path or directory) with `go`, and checks it is
/// `main`. It needs no toolchain version, so it runs while the version is asked.
pub async fn resolve(go: &Path, package: &str, dir: &Path) -> Result<Package, GoError> {
    let arg = package.strip_prefix("ko://").unwrap_or(package);
    // A directory is resolved from inside it, so it may belong to another module.
    let (arg, cwd) = match dir.join(arg) {
        path if path.is_dir() => (".", path),
        _ => (arg, dir.to_path_buf()),
    };
    // -find: name the package without loading what it imports, which on a large
    // program takes longer than everything else before the first build.
    let out = Command::new(go)
        .args([
            "list",
            "-find",
            "-f",
            "{{.Name}}\t{{.ImportPath}}\t{{.Dir}}",
            arg,
        ])
        .current_dir(&cwd)
        .stdin(Stdio::null())
        .output()
        .await?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let fields: Vec<&str> = if out.status.success() {
        stdout.trim().split('\t').collect()
    } else {
        Vec::new()
    };
    let [name, import_path, pkg_dir] = fields.as_slice() else {
        return Err(GoError::Resolve {
            package: package.to_string(),
            dir: dir.to_path_buf(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    };
    if *name != "main" {
        return Err(GoError::NotMain {
            import_path: import_path.to_string(),
            name: name.to_string(),
        });
    }
    let pkg_dir = PathBuf::from(pkg_dir);
    let kodata = pkg_dir.join("kodata");
    Ok(Package {
        name: binary_name(import_path),
        import_path: import_path.to_string(),
        kodata: kodata.is_dir().then_some(kodata),
        dir: pkg_dir,
    })
}

/// A Go main package to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    pub import_path: String,
    /// The program's name: the import path's last element, skipping a `/vN` suffix.
    pub name: String,
    pub dir: PathBuf,
    /// `kodata/` beside the package, shipped at /var/run/ko as ko does.
    pub kodata: Option<PathBuf>,
}

/// One `go build` invocation.
#[derive(Debug)]
pub struct BuildJob<'a> {
    /// The package as go is given it: its import path, or `.` run in its directory.
    pub target: &'a str,
    pub platform: &'a Platform,
    /// Working directory of the build: inside the module holding the package.
    pub dir: &'a Path,
    pub env: &'a [(String, String)],
    pub flags: &'a [String],
    pub ldflags: &'a [String],
    pub out: &'a Path,
    /// GOMAXPROCS for this build, when it shares the machine with other builds.
    pub procs: Option<usize>,
}

/// Settings for go that change how fast it builds, never what: GOMAXPROCS when builds
/// share the machine (`procs`), and a garbage collector that runs half as often
/// (GOGC=200). The go command and its linker keep large heaps alive; two parallel
/// builds of a 47 MB program on 2 cores took 3.5% less time that way, for 3% more
/// peak memory (613 MiB against 595). A variable the user set (`user_set`) is left
/// alone.
fn tuning(procs: Option<usize>, user_set: impl Fn(&str) -> bool) -> Vec<(&'static str, String)> {
    let procs = procs.map(|n| ("GOMAXPROCS", n.to_string()));
    let gc = Some(("GOGC", "200".to_string()));
    [procs, gc]
        .into_iter()
        .flatten()
        .filter(|(k, _)| !user_set(k))
        .collect()
}

fn binary_name(import_path: &str) -> String {
    let mut parts = import_path.rsplit('/');
    let last = parts.next().unwrap_or(import_path);
    let is_major =
        last.len() > 1 && last.starts_with('v') && last[1..].chars().all(|c| c.is_ascii_digit());
    match (is_major, parts.next()) {
        (true, Some(parent)) => parent.to_string(),
        _ => last.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_is_tuned_unless_the_user_set_the_same_variable() {
        let tuned = |procs, set: &[&str]| tuning(procs, |k| set.contains(&k));
        assert_eq!(
            tuned(Some(1), &[]),
            [("GOMAXPROCS", "1".into()), ("GOGC", "200".into())]
        );
        assert_eq!(tuned(None, &[]), [("GOGC", "200".into())]);
        assert_eq!(tuned(Some(2), &["GOGC"]), [("GOMAXPROCS", "2".into())]);
        assert!(tuned(Some(2), &["GOGC", "GOMAXPROCS"]).is_empty());
    }

    #[test]
    fn parses_go_versions() {
        assert_eq!(
            GoVersion::parse("go1.21.3"),
            Some(GoVersion {
                major: 1,
                minor: 21
            })
        );
        assert_eq!(
            GoVersion::parse("go1.22rc1"),
            Some(GoVersion {
                major: 1,
                minor: 22
            })
        );
        assert_eq!(
            GoVersion::parse("devel go1.23-abc"),
            Some(GoVersion {
                major: 1,
                minor: 23
            })
        );
        assert_eq!(GoVersion::parse("nonsense"), None);
        assert!(GoVersion::parse("go1.20.14").unwrap() < MIN_WASIP1);
    }

    #[test]
    fn binary_names_skip_major_version_suffix() {
        assert_eq!(binary_name("example.com/app/cmd/server"), "server");
        assert_eq!(binary_name("example.com/app/v2"), "app");
        assert_eq!(binary_name("hello"), "hello");
    }

    #[test]
    fn wasm_needs_go_1_21() {
        let go = GoToolchain {
            go: "go".into(),
            version_string: "go1.20.1".into(),
            version: GoVersion {
                major: 1,
                minor: 20,
            },
        };
        let err = go
            .check_platforms(&[Platform::new("wasi", "wasm", None)])
            .unwrap_err();
        assert!(err.to_string().contains("needs Go 1.21"), "{err}");
        assert!(go
            .check_platforms(&[Platform::new("linux", "amd64", None)])
            .is_ok());
    }
}

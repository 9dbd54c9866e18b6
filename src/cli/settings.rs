//! What gantry takes from the environment beyond its flags, read once at the start so
//! that the commands below see one consistent picture (and tests can see what counts).

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::{bail, Result};
use gantry::github;
use gantry::sign::keys::Secret;

pub struct Settings {
    source_date_epoch: Option<OsString>,
    /// COSIGN_PASSWORD, when set (even to nothing: a key without a password).
    pub cosign_password: Option<Secret>,
    /// ko's name for the destination, used when neither --repo nor GANTRY_REPO is given.
    pub ko_docker_repo: Option<String>,
    pub github_token: Option<Secret>,
    /// Running inside GitHub Actions.
    pub in_actions: bool,
    /// Where paths in annotations are relative to.
    pub workspace: Option<PathBuf>,
    /// ko's KO_DEFAULTBASEIMAGE.
    pub ko_default_base: Option<String>,
    /// ko's KO_CONFIG_PATH: a config file, or a directory holding `.ko.yaml`.
    pub ko_config_path: Option<PathBuf>,
    /// The `go` to run: GANTRY_GO, else `go` on PATH.
    pub go: PathBuf,
    /// The file the Actions runner reads the step's pushed images from
    /// (GITHUB_ARTIFACTS).
    pub artifacts_file: Option<PathBuf>,
    /// gantry's cache: GANTRY_CACHE_DIR, else $XDG_CACHE_HOME/gantry, else
    /// ~/.cache/gantry.
    pub cache_dir: Option<PathBuf>,
}

impl Settings {
    pub fn from_env() -> Self {
        let set = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Settings {
            source_date_epoch: std::env::var_os("SOURCE_DATE_EPOCH"),
            cosign_password: std::env::var("COSIGN_PASSWORD").ok().map(Secret::new),
            ko_docker_repo: set("KO_DOCKER_REPO"),
            ko_default_base: set("KO_DEFAULTBASEIMAGE"),
            ko_config_path: set("KO_CONFIG_PATH").map(PathBuf::from),
            github_token: set("GITHUB_TOKEN").map(Secret::new),
            in_actions: github::in_actions(),
            workspace: std::env::var_os("GITHUB_WORKSPACE").map(PathBuf::from),
            artifacts_file: std::env::var_os(github::artifacts::FILE_VARIABLE)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            go: std::env::var_os("GANTRY_GO").map_or_else(|| PathBuf::from("go"), PathBuf::from),
            // An empty variable counts as unset: "" would name the working directory.
            cache_dir: std::env::var_os("GANTRY_CACHE_DIR")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .or_else(|| {
                    std::env::var_os("XDG_CACHE_HOME")
                        .filter(|v| !v.is_empty())
                        .map(|d| PathBuf::from(d).join("gantry"))
                })
                .or_else(|| {
                    std::env::var_os("HOME")
                        .filter(|v| !v.is_empty())
                        .map(|h| PathBuf::from(h).join(".cache/gantry"))
                }),
        }
    }

    /// SOURCE_DATE_EPOCH: unset or blank is None; otherwise seconds from 0 to
    /// 253402300799 (9999-12-31T23:59:59Z), anything else an error.
    pub fn source_date_epoch(&self) -> Result<Option<i64>> {
        match &self.source_date_epoch {
            None => Ok(None),
            Some(v) => match v.to_str() {
                Some(v) => Ok(gantry::image::parse_source_date_epoch(v)?),
                None => bail!(
                    "SOURCE_DATE_EPOCH={v:?} is not a Unix time: use a whole number of seconds from 0 \
                     to 253402300799 (9999-12-31T23:59:59Z)"
                ),
            },
        }
    }
}

//! `gantry.yaml`, or ko's `.ko.yaml` when there is none: ko's keys, so ko users switch
//! without changing a line. Unknown keys are errors naming file, line and key.

use std::collections::{BTreeMap, HashMap};
use std::io::Read as _;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use serde::Deserialize;

use crate::image::rfc3339;

mod budget;

/// File names looked for, in order.
const CONFIG_NAMES: &[&str] = &["gantry.yaml", "gantry.yml", ".ko.yaml", ".ko.yml"];

/// The largest config file read. Real configs are a few kilobytes; this keeps a stray
/// or hostile file from being read, parsed and held whole.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}")]
    Read {
        path: PathBuf,
        #[source]
        cause: std::io::Error,
    },
    #[error(
        "{path} is {size} bytes, over the {limit}-byte (1 MiB) limit for a config file; \
         a gantry or ko config is a few kilobytes"
    )]
    TooLarge {
        path: PathBuf,
        size: u64,
        limit: u64,
    },
    #[error(
        "{path}: aliases expand past {limit_mib} MiB (each *alias repeats its &anchor's \
         whole value); write the values out or use fewer aliases"
    )]
    AliasExpansion { path: PathBuf, limit_mib: usize },
    #[error("{path}:{line}:{column}: {detail}")]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        detail: String,
    },
    #[error("{path}: env entry {entry:?} is not KEY=VALUE")]
    BadEnv { path: PathBuf, entry: String },
    #[error("template {template:?}: {detail}")]
    Template { template: String, detail: String },
}

/// ko's configuration keys.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    #[serde(default)]
    pub default_base_image: Option<String>,
    #[serde(default)]
    pub base_image_overrides: HashMap<String, String>,
    #[serde(default)]
    pub default_platforms: Vec<String>,
    #[serde(default)]
    pub default_env: Vec<String>,
    #[serde(default)]
    pub default_flags: Vec<String>,
    #[serde(default)]
    pub default_ldflags: Vec<String>,
    #[serde(default)]
    pub builds: Vec<BuildConfig>,
}

/// One `builds[]` entry.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildConfig {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub dir: Option<String>,
    #[serde(default)]
    pub main: Option<String>,
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub flags: Vec<String>,
    #[serde(default)]
    pub ldflags: Vec<String>,
}

/// The text of `path`, refusing files over [`MAX_CONFIG_BYTES`]: by the size of the
/// open file, and by reading at most one byte more than the limit, so a file that
/// grows after the check is still refused.
fn read_bounded(path: &Path) -> Result<String, ConfigError> {
    let read_error = |cause| ConfigError::Read {
        path: path.to_path_buf(),
        cause,
    };
    let too_large = |size| ConfigError::TooLarge {
        path: path.to_path_buf(),
        size,
        limit: MAX_CONFIG_BYTES,
    };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let size = file.metadata().map_err(read_error)?.len();
    if size > MAX_CONFIG_BYTES {
        return Err(too_large(size));
    }
    let mut bytes = Vec::new();
    (&file)
        .take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        let grown = file.metadata().map_or(0, |m| m.len());
        return Err(too_large(grown.max(bytes.len() as u64)));
    }
    String::from_utf8(bytes).map_err(|e| {
        read_error(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("not UTF-8 text: {e}"),
        ))
    })
}

/// A config and the file it came from (paths in it are relative to that file).
#[derive(Debug)]
pub struct LoadedConfig {
    pub path: PathBuf,
    pub config: Config,
}

/// What `go build` gets for one package.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BuildSettings {
    /// The `builds[].dir` to build in, when a build entry applies.
    pub dir: Option<PathBuf>,
    pub env: Vec<(String, String)>,
    pub flags: Vec<String>,
    pub ldflags: Vec<String>,
}

impl Config {
    /// The first of gantry.yaml, gantry.yml, .ko.yaml, .ko.yml in `dir`, if any.
    pub fn discover(dir: &Path) -> Result<Option<LoadedConfig>, ConfigError> {
        CONFIG_NAMES
            .iter()
            .map(|name| dir.join(name))
            .find(|p| p.is_file())
            .map(|p| Config::load(&p))
            .transpose()
    }

    /// Reads and parses `path`: at most [`MAX_CONFIG_BYTES`], and aliases may not
    /// expand the values past the alias budget (see `budget.rs`).
    pub fn load(path: &Path) -> Result<LoadedConfig, ConfigError> {
        let text = read_bounded(path)?;
        let config = if text.trim().is_empty() {
            Config::default()
        } else {
            budget::deserialize(&text).map_err(|failure| {
                let e = match failure {
                    budget::Failure::Expansion => {
                        return ConfigError::AliasExpansion {
                            path: path.to_path_buf(),
                            limit_mib: budget::EXPANSION_BUDGET >> 20,
                        }
                    }
                    budget::Failure::Yaml(e) => e,
                };
                let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
                ConfigError::Parse {
                    path: path.to_path_buf(),
                    line,
                    column,
                    detail: e.to_string().replace("unknown field", "unknown key"),
                }
            })?
        };
        Ok(LoadedConfig {
            path: path.to_path_buf(),
            config,
        })
    }

    /// `baseImageOverrides[import_path]`, else `default` (ko's KO_DEFAULTBASEIMAGE,
    /// which beats the file's), else `defaultBaseImage`.
    pub fn base_image_for<'a>(
        &'a self,
        import_path: &str,
        default: Option<&'a str>,
    ) -> Option<&'a str> {
        self.base_image_overrides
            .get(import_path)
            .map(String::as_str)
            .or(default)
            .or(self.default_base_image.as_deref())
    }
}

impl LoadedConfig {
    fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    /// The settings for the package in `package_dir`: the `builds[]` entry whose
    /// `dir`/`main` is that directory, over the defaults (as ko does: per-build env
    /// is added to defaultEnv; per-build flags and ldflags replace the defaults).
    pub fn settings_for(&self, package_dir: &Path) -> Result<BuildSettings, ConfigError> {
        let c = &self.config;
        let target = normalize(package_dir);
        let build = c.builds.iter().find(|b| {
            let dir = self.dir().join(b.dir.as_deref().unwrap_or("."));
            normalize(&dir.join(b.main.as_deref().unwrap_or("."))) == target
        });
        let mut env = self.parse_env(&c.default_env)?;
        let (mut flags, mut ldflags, mut dir) =
            (c.default_flags.clone(), c.default_ldflags.clone(), None);
        if let Some(b) = build {
            for (k, v) in self.parse_env(&b.env)? {
                env.retain(|(existing, _)| *existing != k);
                env.push((k, v));
            }
            if !b.flags.is_empty() {
                flags = b.flags.clone();
            }
            if !b.ldflags.is_empty() {
                ldflags = b.ldflags.clone();
            }
            dir = b.dir.as_ref().map(|d| self.dir().join(d));
        }
        Ok(BuildSettings {
            dir,
            env,
            flags,
            ldflags,
        })
    }

    fn parse_env(&self, entries: &[String]) -> Result<Vec<(String, String)>, ConfigError> {
        entries
            .iter()
            .map(|e| match e.split_once('=') {
                Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
                _ => Err(ConfigError::BadEnv {
                    path: self.path.clone(),
                    entry: e.clone(),
                }),
            })
            .collect()
    }
}

/// Canonical path when it exists, else a lexical clean-up.
fn normalize(path: &Path) -> PathBuf {
    path.canonicalize().unwrap_or_else(|_| {
        let mut out = PathBuf::new();
        for c in path.components() {
            match c {
                Component::CurDir => {}
                Component::ParentDir => {
                    out.pop();
                }
                other => out.push(other),
            }
        }
        out
    })
}

/// Values for ldflags templates, as ko defines them: `.Env` is the build's
/// environment with `LDFLAGS` defined (empty) when unset, `.GoEnv` is `go env` with
/// the build's environment over it; any other missing key is an error.
#[derive(Debug, Clone, Default)]
pub struct TemplateData {
    pub env: BTreeMap<String, String>,
    pub go_env: BTreeMap<String, String>,
    pub git_tag: String,
    pub git_short_commit: String,
    pub git_full_commit: String,
    pub date: String,
    pub timestamp: String,
}

impl TemplateData {
    /// The process environment, `go env` (from `go`), git facts of `dir` (empty
    /// outside git), and the time from SOURCE_DATE_EPOCH (so templated builds stay
    /// reproducible), else now.
    pub fn gather(dir: &Path, source_date_epoch: Option<i64>, go: &Path) -> Self {
        let git = |args: &[&str]| crate::git::output(dir, args).unwrap_or_default();
        let epoch = source_date_epoch.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64)
        });
        let mut env: BTreeMap<String, String> = std::env::vars().collect();
        env.entry("LDFLAGS".into()).or_default();
        let go_env = Command::new(go)
            .args(["env", "-json"])
            .current_dir(dir)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| serde_json::from_slice(&o.stdout).ok())
            .unwrap_or_default();
        TemplateData {
            env,
            go_env,
            git_tag: git(&["describe", "--tags", "--abbrev=0"]),
            git_short_commit: git(&["rev-parse", "--short", "HEAD"]),
            git_full_commit: git(&["rev-parse", "HEAD"]),
            date: rfc3339(epoch),
            timestamp: epoch.to_string(),
        }
    }

    /// This data with the build's own env entries over `.Env` and `.GoEnv`.
    fn with_build_env(&self, entries: &[(String, String)]) -> TemplateData {
        let mut data = self.clone();
        for (k, v) in entries {
            data.env.insert(k.clone(), v.clone());
        }
        for (k, v) in data.go_env.iter_mut() {
            if let Some(over) = data.env.get(k) {
                v.clone_from(over);
            }
        }
        data
    }

    fn field(&self, name: &str) -> Result<String, String> {
        if let Some(var) = name.strip_prefix("Env.") {
            return self
                .env
                .get(var)
                .cloned()
                .ok_or_else(|| format!("environment variable {var} is not set"));
        }
        if let Some(var) = name.strip_prefix("GoEnv.") {
            return self
                .go_env
                .get(var)
                .cloned()
                .ok_or_else(|| format!("`go env` has no {var}"));
        }
        Ok(match name {
            "Git.Tag" => self.git_tag.clone(),
            "Git.ShortCommit" => self.git_short_commit.clone(),
            "Git.FullCommit" => self.git_full_commit.clone(),
            "Date" => self.date.clone(),
            "Timestamp" => self.timestamp.clone(),
            other => {
                return Err(format!(
                    "unknown field .{other} (known: .Env.NAME, .GoEnv.NAME, .Git.Tag, .Git.ShortCommit, .Git.FullCommit, .Date, .Timestamp)"
                ))
            }
        })
    }

    /// Expands `{{ .Field }}` the way ko's Go templates do for these fields.
    pub fn render(&self, template: &str) -> Result<String, ConfigError> {
        let err = |detail: String| ConfigError::Template {
            template: template.to_string(),
            detail,
        };
        let mut out = String::new();
        let mut rest = template;
        while let Some(start) = rest.find("{{") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .ok_or_else(|| err("`{{` without `}}`".into()))?;
            let name = after[..end].trim();
            let name = name
                .strip_prefix('.')
                .ok_or_else(|| err(format!("expected a field like .Git.Tag, found {name:?}")))?;
            out.push_str(&self.field(name).map_err(err)?);
            rest = &after[end + 2..];
        }
        if rest.contains("}}") {
            return Err(err("`}}` without `{{`".into()));
        }
        out.push_str(rest);
        Ok(out)
    }
}

impl BuildSettings {
    /// Whether any value uses `{{ … }}`.
    pub fn has_templates(&self) -> bool {
        let values = self
            .env
            .iter()
            .map(|(_, v)| v)
            .chain(&self.flags)
            .chain(&self.ldflags);
        values.into_iter().any(|v| v.contains("{{"))
    }

    /// Expands templates in env values, flags and ldflags.
    pub fn render(self, data: &TemplateData) -> Result<BuildSettings, ConfigError> {
        // Env values are rendered with the data as it is; flags and ldflags also see
        // the build's (rendered) env, as ko's do.
        let env = self
            .env
            .into_iter()
            .map(|(k, v)| Ok((k, data.render(&v)?)))
            .collect::<Result<Vec<_>, ConfigError>>()?;
        let data = &data.with_build_env(&env);
        let all = |items: Vec<String>| {
            items
                .iter()
                .map(|i| data.render(i))
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(BuildSettings {
            dir: self.dir,
            env,
            flags: all(self.flags)?,
            ldflags: all(self.ldflags)?,
        })
    }
}

#[cfg(test)]
mod tests;

//! `gantry action`: the GitHub Action's inputs (INPUT_* variables, which the
//! composite action passes through `env:`) turned into `gantry build` arguments, or
//! `gantry merge` ones when `merge-from` is given, so the Action and the command line
//! share one parser and one set of checks.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Parser;
use gantry::{cleanup, tags};

use super::build::BuildArgs;
use super::merge::MergeArgs;
use super::{Cli, Command};

/// An action input (`with: { base-image: … }` arrives as INPUT_BASE-IMAGE).
fn input(name: &str) -> Option<String> {
    std::env::var(format!("INPUT_{}", name.to_uppercase()))
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// Splits a list input on newlines and commas.
fn list(text: &str) -> Vec<String> {
    text.split(['\n', ','])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// What the Action runs: a build, or (with the `merge-from` input) a merge of what
/// the jobs of a matrix built.
pub enum Run {
    Build(Box<BuildArgs>),
    Merge(Box<MergeArgs>),
}

/// The command the action's inputs describe.
pub fn command() -> Result<Run> {
    match input("merge-from") {
        Some(files) => merge_args(&files).map(|args| Run::Merge(Box::new(args))),
        None => build_args().map(|args| Run::Build(Box::new(args))),
    }
}

/// Translates the action's inputs into `gantry build` arguments, so the action and
/// the command line share one parser and one set of checks.
fn build_args() -> Result<BuildArgs> {
    let mut argv: Vec<String> = vec!["gantry".into(), "build".into()];
    let push = input("push").is_none_or(|p| p == "true");
    let by_digest = input("push-by-digest").is_some_and(|p| p == "true");
    if push {
        argv.extend(["--repo".into(), repository()?]);
    } else {
        let dir = std::env::var("RUNNER_TEMP").unwrap_or_else(|_| ".".into());
        argv.extend(["--oci-layout".into(), format!("{dir}/gantry-oci-layout")]);
    }
    for (name, flag) in [
        ("platforms", "--platform"),
        ("base-image", "--base"),
        ("config", "--config"),
        ("wasm-os", "--wasm-os"),
        ("oci-archive", "--oci-archive"),
    ] {
        if let Some(v) = input(name) {
            argv.extend([flag.into(), v]);
        }
    }
    if by_digest {
        // The tags are the merge's to move.
        argv.push("--push-by-digest".into());
    } else {
        argv.extend(tag_args()?);
    }
    argv.extend(signing_args()?);
    // GHCR links a package to its repository through these.
    for annotation in source_annotations() {
        argv.extend([
            "--image-annotation".into(),
            annotation.clone(),
            "--image-label".into(),
            annotation,
        ]);
    }
    if let Ok(temp) = std::env::var("RUNNER_TEMP") {
        argv.extend(["--json".into(), format!("{temp}/gantry-result.json")]);
        // On disk, so a release event can attach them.
        argv.extend(["--sbom-dir".into(), format!("{temp}/gantry-sbom")]);
    }
    argv.extend(
        input("packages")
            .map(|p| list(&p.replace(' ', ",")))
            .unwrap_or_default(),
    );
    match Cli::try_parse_from(&argv)
        .context("the action's inputs")?
        .command
    {
        Command::Build(args) => Ok(*args),
        _ => bail!("internal: action inputs did not make a build command"),
    }
}

/// Translates the action's inputs into `gantry merge` arguments: `merge-from` lists
/// the jobs' reports (files, or directories holding them).
fn merge_args(files: &str) -> Result<MergeArgs> {
    for building in ["platforms", "base-image", "config", "oci-archive"] {
        if input(building).is_some() {
            bail!("the inputs merge-from and {building} do not go together: merge-from merges images the jobs already built; set {building} in those jobs");
        }
    }
    if input("push").is_some_and(|p| p != "true")
        || input("push-by-digest").is_some_and(|p| p == "true")
    {
        bail!("merge-from pushes an index and moves its tags: leave push and push-by-digest at their defaults");
    }
    let mut argv: Vec<String> = vec!["gantry".into(), "merge".into()];
    argv.extend(["--repo".into(), repository()?]);
    for file in report_files(&list(files))? {
        argv.extend(["--from".into(), file]);
    }
    argv.extend(tag_args()?);
    argv.extend(signing_args()?);
    for annotation in source_annotations() {
        argv.extend(["--image-annotation".into(), annotation]);
    }
    if let Ok(temp) = std::env::var("RUNNER_TEMP") {
        argv.extend(["--json".into(), format!("{temp}/gantry-result.json")]);
    }
    match Cli::try_parse_from(&argv)
        .context("the action's inputs")?
        .command
    {
        Command::Merge(args) => Ok(*args),
        _ => bail!("internal: action inputs did not make a merge command"),
    }
}

/// The `repository` input, else `ghcr.io/<owner>/<repo>` in lowercase.
fn repository() -> Result<String> {
    match input("repository") {
        Some(r) => Ok(r),
        None => Ok(format!(
            "ghcr.io/{}",
            std::env::var("GITHUB_REPOSITORY")
                .context("no `repository` input and no GITHUB_REPOSITORY to default to")?
                .to_lowercase()
        )),
    }
}

/// `--tag` arguments from the `tags` input, in docker/metadata-action's syntax or as
/// plain tags.
fn tag_args() -> Result<Vec<String>> {
    let info = tags::RefInfo {
        git_ref: std::env::var("GITHUB_REF").unwrap_or_default(),
        sha: std::env::var("GITHUB_SHA").unwrap_or_default(),
    };
    let specs: Vec<String> = input("tags")
        .map(|t| t.lines().map(str::to_string).collect())
        .unwrap_or_default();
    // A line is one metadata-action spec (they contain commas); plain tags may also be
    // comma-separated.
    let specs: Vec<String> = specs
        .iter()
        .flat_map(|l| {
            if l.contains("type=") {
                vec![l.clone()]
            } else {
                list(l)
            }
        })
        .collect();
    Ok(tags::expand(&specs, &info)?
        .into_iter()
        .flat_map(|tag| ["--tag".to_string(), tag])
        .collect())
}

/// How to sign and what to attest, from the inputs `sign`, `sbom`, `provenance`,
/// `cosign-key`, `signing-config` and `tlog-upload`.
fn signing_args() -> Result<Vec<String>> {
    let mut argv = Vec::new();
    for (name, flag) in [("sign", "--sign"), ("sbom", "--sbom")] {
        if let Some(v) = input(name) {
            argv.extend([flag.into(), v]);
        }
    }
    if input("provenance").is_some_and(|p| p == "false") {
        argv.push("--no-provenance".into());
    }
    if let Some(key) = input("cosign-key") {
        argv.extend(["--key".into(), key_file(&key)?]);
    }
    if let Some(config) = input("signing-config") {
        argv.extend(["--signing-config".into(), config]);
    }
    if input("tlog-upload").is_some_and(|t| t == "false") {
        argv.push("--no-tlog-upload".into());
    }
    Ok(argv)
}

/// `org.opencontainers.image.source` and `.revision` (`K=V`), from the workflow's
/// repository and commit.
fn source_annotations() -> Vec<String> {
    let mut out = Vec::new();
    if let (Ok(server), Ok(repo)) = (
        std::env::var("GITHUB_SERVER_URL"),
        std::env::var("GITHUB_REPOSITORY"),
    ) {
        out.push(format!("org.opencontainers.image.source={server}/{repo}"));
    }
    if let Ok(sha) = std::env::var("GITHUB_SHA") {
        out.push(format!("org.opencontainers.image.revision={sha}"));
    }
    out
}

/// The reports `merge-from` names: a file as it is; a directory (where
/// actions/download-artifact put them) gives every `.json` file in it and below, in
/// name order.
fn report_files(entries: &[String]) -> Result<Vec<String>> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
        let mut children: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("merge-from: reading the directory {}", dir.display()))?
            .map(|e| e.map(|e| e.path()))
            .collect::<std::io::Result<_>>()
            .with_context(|| format!("merge-from: reading the directory {}", dir.display()))?;
        children.sort();
        for path in children {
            if path.is_dir() {
                walk(&path, out)?;
            } else if path.extension().is_some_and(|e| e == "json") {
                out.push(path);
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    for entry in entries {
        let path = Path::new(entry);
        if path.is_dir() {
            let before = files.len();
            walk(path, &mut files)?;
            if files.len() == before {
                bail!("merge-from: the directory {entry} holds no .json report");
            }
        } else {
            files.push(path.to_path_buf());
        }
    }
    Ok(files.iter().map(|p| p.display().to_string()).collect())
}

/// A `cosign-key` input is a path, or the key itself (from a secret): then it is
/// written to a private file for this run.
fn key_file(value: &str) -> Result<String> {
    if !value.contains("-----BEGIN") {
        return Ok(value.to_string());
    }
    let dir = std::env::var("RUNNER_TEMP")
        .map(PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir());
    let path = dir.join(format!("gantry-{}.key", std::process::id()));
    let mut file = std::fs::OpenOptions::new();
    file.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut file, 0o600);
    file.open(&path)
        .and_then(|mut f| f.write_all(value.as_bytes()))
        .context("writing the cosign-key input to a file")?;
    // Removed when the run ends, however it ends.
    cleanup::remove_at_exit(&path);
    Ok(path.display().to_string())
}

//! `gantry action`: the GitHub Action's inputs (INPUT_* variables, which the
//! composite action passes through `env:`) turned into `gantry build` arguments, so
//! the Action and the command line share one parser and one set of checks.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Parser;
use gantry::{cleanup, tags};

use super::build::BuildArgs;
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

/// Translates the action's inputs into `gantry build` arguments, so the action and
/// the command line share one parser and one set of checks.
pub fn build_args() -> Result<BuildArgs> {
    let mut argv: Vec<String> = vec!["gantry".into(), "build".into()];
    let push = input("push").is_none_or(|p| p == "true");
    if push {
        let repo = match input("repository") {
            Some(r) => r,
            None => format!(
                "ghcr.io/{}",
                std::env::var("GITHUB_REPOSITORY")
                    .context("no `repository` input and no GITHUB_REPOSITORY to default to")?
                    .to_lowercase()
            ),
        };
        argv.extend(["--repo".into(), repo]);
    } else {
        let dir = std::env::var("RUNNER_TEMP").unwrap_or_else(|_| ".".into());
        argv.extend(["--oci-layout".into(), format!("{dir}/gantry-oci-layout")]);
    }
    for (name, flag) in [
        ("platforms", "--platform"),
        ("base-image", "--base"),
        ("sign", "--sign"),
        ("sbom", "--sbom"),
        ("config", "--config"),
        ("wasm-os", "--wasm-os"),
        ("oci-archive", "--oci-archive"),
    ] {
        if let Some(v) = input(name) {
            argv.extend([flag.into(), v]);
        }
    }
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
    for tag in tags::expand(&specs, &info)? {
        argv.extend(["--tag".into(), tag]);
    }
    if input("provenance").is_some_and(|p| p == "false") {
        argv.push("--no-provenance".into());
    }
    if let Some(key) = input("cosign-key") {
        argv.extend(["--key".into(), key_file(&key)?]);
    }
    // GHCR links a package to its repository through these.
    if let (Ok(server), Ok(repo)) = (
        std::env::var("GITHUB_SERVER_URL"),
        std::env::var("GITHUB_REPOSITORY"),
    ) {
        let source = format!("org.opencontainers.image.source={server}/{repo}");
        argv.extend([
            "--image-annotation".into(),
            source.clone(),
            "--image-label".into(),
            source,
        ]);
    }
    if let Ok(sha) = std::env::var("GITHUB_SHA") {
        let revision = format!("org.opencontainers.image.revision={sha}");
        argv.extend([
            "--image-annotation".into(),
            revision.clone(),
            "--image-label".into(),
            revision,
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

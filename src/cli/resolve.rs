//! `gantry resolve` (ko's `resolve`): reads Kubernetes YAML, builds and publishes every
//! `ko://` import path it names in one pipeline run, and prints the YAML with each
//! reference replaced by its image's `REPO@sha256:…`, every other byte as it was.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use futures::StreamExt;
use gantry::gobuild::{self, GoError, GoToolchain};
use gantry::pipeline;
use gantry::resolve::{self, Source, SCHEME};

use super::build::{options, BuildArgs};
use super::output::report_published;
use super::progress::Progress;
use super::{Settings, StdoutClosed};

#[derive(Args)]
// The packages come from the files, not from the command line.
#[command(mut_arg("packages", |a| a.hide(true).default_value(None::<&str>)))]
pub struct ResolveArgs {
    /// A YAML or JSON file, a directory of them (*.yaml, *.yml, *.json), or - for
    /// standard input (repeatable, or comma-separated).
    #[arg(
        short = 'f',
        long = "filename",
        value_name = "FILE|DIR|-",
        required = true,
        value_delimiter = ','
    )]
    pub filenames: Vec<String>,
    /// Also read the subdirectories of a directory given to -f.
    #[arg(short = 'R', long)]
    pub recursive: bool,
    /// Fail when a ko:// reference is not a Go main package (without it, such a
    /// reference is printed as it was, with a warning).
    #[arg(long)]
    pub strict: bool,
    #[command(flatten)]
    pub build: BuildArgs,
}

/// Where the input says a reference first appeared, for messages.
struct Found {
    reference: String,
    file: String,
}

pub async fn resolve(args: ResolveArgs, settings: &Settings) -> Result<()> {
    if let Some(package) = args.build.packages.first() {
        bail!(
            "gantry resolve builds the packages its files name (ko://…) and takes none as arguments: \
             to read {package}, pass it with -f"
        );
    }
    if args.build.oci_archive.is_some() {
        bail!("--oci-archive is for gantry build: gantry resolve pushes to a registry, so that the YAML names images a cluster can pull");
    }
    let sources = read_sources(&args.filenames, args.recursive)?;
    let mut found: Vec<Found> = Vec::new();
    for source in &sources {
        for reference in resolve::references(source)? {
            if !found.iter().any(|f| f.reference == reference) {
                found.push(Found {
                    reference,
                    file: source.name.clone(),
                });
            }
        }
    }
    let images = if found.is_empty() {
        eprintln!("gantry: no ko:// references in the input; nothing to build");
        HashMap::new()
    } else {
        build_images(&args, settings, &found).await?
    };
    let texts = sources
        .iter()
        .map(|source| resolve::replace(source, &images))
        .collect::<Result<Vec<_>, _>>()?;
    write_stdout(&resolve::join(&texts))
}

/// Builds and publishes the packages behind `found`, all in one pipeline run; returns
/// each reference's image. A reference that is not a main package fails the run with
/// --strict (all of them named, before anything is built) and is left out, with a
/// warning, without it: the meaning ko's `--strict` had.
async fn build_images(
    args: &ResolveArgs,
    settings: &Settings,
    found: &[Found],
) -> Result<HashMap<String, String>> {
    let mut opts = options(&args.build, settings, args.build.oci_layout.clone()).await?;
    if opts.repo.is_none() {
        bail!(
            "gantry resolve needs a registry to push to, so that the YAML names images a cluster can pull: \
             pass --repo REPO (or set GANTRY_REPO or KO_DOCKER_REPO)"
        );
    }
    let go = &GoToolchain::detect(&opts.go).await?;
    let workdir = &opts.workdir;
    // `jobs` lookups at a time, each answer in its reference's place.
    let resolved: Vec<_> = futures::stream::iter(found.iter().map(|f| async move {
        let path = &f.reference[SCHEME.len()..];
        // The path reaches `go list` as an argument: nothing that could read as a flag.
        if path.is_empty()
            || path.starts_with('-')
            || path.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return (f, Err(None));
        }
        (
            f,
            gobuild::resolve(&go.go, path, workdir).await.map_err(Some),
        )
    }))
    .buffered(opts.jobs.max(1))
    .collect()
    .await;

    // Each package once (`ko://./cmd/a` and `ko://example.com/cmd/a` are one), built
    // from the path its first reference gives.
    let mut packages: Vec<String> = Vec::new();
    let mut import_paths: Vec<String> = Vec::new();
    let mut wanted: Vec<(&str, String)> = Vec::new();
    let mut not_packages: Vec<String> = Vec::new();
    for (f, result) in resolved {
        let why = match result {
            Ok(package) => {
                if !import_paths.contains(&package.import_path) {
                    import_paths.push(package.import_path.clone());
                    packages.push(f.reference[SCHEME.len()..].to_string());
                }
                wanted.push((&f.reference, package.import_path));
                continue;
            }
            Err(None) => "it is not a Go import path".to_string(),
            Err(Some(e @ (GoError::Resolve { .. } | GoError::NotMain { .. }))) => e.to_string(),
            Err(Some(e)) => return Err(e.into()),
        };
        if args.strict {
            not_packages.push(format!(
                "{}: {} does not name a Go main package: {why}",
                f.file, f.reference
            ));
        } else {
            eprintln!(
                "gantry: warning: {}: {} is left as it is (--strict makes this an error): it does not name a Go main package: {why}",
                f.file, f.reference
            );
        }
    }
    if !not_packages.is_empty() {
        bail!(
            "{}\nImport paths are found from the current directory ({}), as `go list` finds them: \
             fix the references, run gantry from the module that holds the packages, \
             or drop --strict to leave such references as they are",
            not_packages.join("\n"),
            workdir.display()
        );
    }
    if packages.is_empty() {
        return Ok(HashMap::new());
    }

    opts.packages = packages;
    let progress = Progress::new(settings.in_actions);
    let result = pipeline::build(&opts, &|phase, line| progress.step(phase, line)).await;
    progress.finish();
    let report = result?;
    report_published(&report);
    wanted
        .into_iter()
        .map(|(reference, import_path)| {
            let image = report
                .images
                .iter()
                .find(|i| i.import_path == import_path)
                .ok_or_else(|| anyhow!("the build reported no image for {reference}"))?;
            Ok((reference.to_string(), image.reference.clone()))
        })
        .collect()
}

/// The inputs -f names, in order: a file as it is (whatever its name), a directory's
/// *.yaml, *.yml and *.json files in name order (subdirectories too with -R), `-` as
/// standard input.
fn read_sources(filenames: &[String], recursive: bool) -> Result<Vec<Source>> {
    let mut sources = Vec::new();
    let mut stdin_read = false;
    for name in filenames {
        if name == "-" {
            if stdin_read {
                bail!("-f - is given twice, and standard input can be read once");
            }
            stdin_read = true;
            let mut bytes = Vec::new();
            std::io::stdin()
                .read_to_end(&mut bytes)
                .context("reading standard input")?;
            sources.push(source("standard input".to_string(), bytes)?);
            continue;
        }
        let path = Path::new(name);
        let metadata = std::fs::metadata(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                anyhow!("{name} does not exist; -f takes a YAML or JSON file, a directory of them, or - for standard input")
            } else {
                anyhow!("cannot read {name}: {e}")
            }
        })?;
        if metadata.is_dir() {
            let mut files = Vec::new();
            list_directory(path, recursive, &mut files)?;
            if files.is_empty() {
                bail!(
                    "{name} holds no .yaml, .yml or .json files{}",
                    if recursive {
                        ""
                    } else {
                        " (-R also reads its subdirectories)"
                    }
                );
            }
            for file in files {
                sources.push(read_file(&file)?);
            }
        } else {
            sources.push(read_file(path)?);
        }
    }
    Ok(sources)
}

/// A directory's YAML and JSON files in name order, each subdirectory's where its name
/// falls when `recursive`. Links to directories are not followed.
fn list_directory(dir: &Path, recursive: bool, files: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries = std::fs::read_dir(dir)
        .and_then(|entries| entries.collect::<std::io::Result<Vec<_>>>())
        .with_context(|| format!("reading the directory {}", dir.display()))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let kind = entry
            .file_type()
            .with_context(|| format!("reading {}", path.display()))?;
        if kind.is_dir() {
            if recursive {
                list_directory(&path, recursive, files)?;
            }
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        ) {
            files.push(path);
        }
    }
    Ok(())
}

fn read_file(path: &Path) -> Result<Source> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    source(path.display().to_string(), bytes)
}

fn source(name: String, bytes: Vec<u8>) -> Result<Source> {
    match String::from_utf8(bytes) {
        Ok(text) => Ok(Source { name, text }),
        Err(_) => bail!("{name} is not UTF-8 text, so it is not YAML gantry resolve can read"),
    }
}

/// Writes the resolved YAML exactly as it is (no line added). A reader that has gone
/// away ends the run quietly.
fn write_stdout(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(StdoutClosed.into()),
        other => other.context("writing to stdout"),
    }
}

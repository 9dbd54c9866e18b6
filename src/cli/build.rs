//! `gantry build` (and the Action, which is a build with its inputs as arguments):
//! the pipeline, with progress on stderr and the result on stdout. Around it: the
//! `--oci-archive` tar of the layout the pipeline wrote, and the declaration of the
//! pushed images to the Actions runner's artifact list.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use gantry::pipeline::{self, BuildOptions, BuildReport, Naming};
use gantry::platform::WasmOs;
use gantry::publish::archive;
use gantry::{cleanup, github};

use super::args::{key_values, AttestArgs, NetworkArgs, SigningArgs};
use super::output::{print_result, report_published};
use super::progress::Progress;
use super::Settings;

#[derive(Args)]
pub struct BuildArgs {
    /// Import paths or directories of main packages.
    #[arg(default_value = ".")]
    pub packages: Vec<String>,
    /// Push every package to REPO itself (ko's --bare).
    #[arg(long, group = "naming")]
    pub bare: bool,
    /// Push each package to REPO/<import path> (ko's -P).
    #[arg(long, short = 'P', group = "naming")]
    pub preserve_import_paths: bool,
    /// Push each package to REPO/<last element of its import path> (ko's -B).
    #[arg(long, short = 'B', group = "naming")]
    pub base_import_paths: bool,
    /// Push each package to REPO/<last element>-<md5 of its import path>, ko's default.
    #[arg(long, group = "naming")]
    pub ko_names: bool,
    /// Repository to push to (e.g. ghcr.io/acme/app); also GANTRY_REPO, then KO_DOCKER_REPO.
    #[arg(long, env = "GANTRY_REPO")]
    pub repo: Option<String>,
    /// Platforms, comma-separated: linux/amd64,linux/arm64,linux/arm/v7,wasi/wasm, or "all".
    #[arg(long)]
    pub platform: Option<String>,
    /// Base image for Linux platforms ("scratch" for none).
    #[arg(long)]
    pub base: Option<String>,
    /// Tags to apply (repeatable, or comma-separated as ko takes them); default "latest".
    #[arg(
        long = "tag",
        short = 't',
        visible_alias = "tags",
        value_delimiter = ','
    )]
    pub tags: Vec<String>,
    /// Push the images, and their signatures and attestations, by digest only: no tag
    /// moves (not even "latest"). For one job of a CI matrix; `gantry merge` then
    /// makes one index of the jobs' images and tags it.
    #[arg(long, conflicts_with = "tags")]
    pub push_by_digest: bool,
    /// Write an OCI image layout here (the default destination when there is no --repo: ./oci-layout).
    #[arg(long)]
    pub oci_layout: Option<PathBuf>,
    /// Write everything the layout holds as one reproducible tar (an `oci-archive:`).
    #[arg(long, value_name = "FILE")]
    pub oci_archive: Option<PathBuf>,
    /// Write the image (one platform) as the tar `docker load` reads (ko's --tarball).
    #[arg(long, value_name = "FILE")]
    pub tarball: Option<PathBuf>,
    /// Write the machine-readable result here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write each image's REPO@sha256:… here, a line each (as ko's --image-refs).
    #[arg(long)]
    pub image_refs: Option<PathBuf>,
    /// Parallel go builds (default: CPUs).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Image config label K=V (repeatable).
    #[arg(long = "image-label")]
    pub image_labels: Vec<String>,
    /// Manifest annotation K=V (repeatable).
    #[arg(long = "image-annotation")]
    pub image_annotations: Vec<String>,
    /// The user Linux images run as, UID[:GID] (ko's --image-user).
    #[arg(long, value_name = "UID[:GID]")]
    pub image_user: Option<String>,
    /// More -ldflags for every package, after the config's (repeatable; ko's --ldflags).
    #[arg(long = "ldflags", value_name = "FLAGS", allow_hyphen_values = true)]
    pub ldflags: Vec<String>,
    /// Build without optimizations or inlining, for debuggers (-gcflags=all=-N -l).
    #[arg(long)]
    pub disable_optimizations: bool,
    /// --push=false pushes nothing: the images go to the OCI layout (./oci-layout
    /// unless --oci-layout or --oci-archive says), as ko's --push=false.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub push: bool,
    /// OS string of wasm images: wasi (Podman, Docker, runwasi), wasip1 (image-spec GOOS), or both.
    #[arg(long, value_enum, default_value_t = WasmOs::Wasi)]
    pub wasm_os: WasmOs,
    /// Also publish the CNCF Wasm OCI artifact, tagged <tag>-wasm.
    #[arg(long)]
    pub wasm_artifact: bool,
    #[command(flatten)]
    pub network: NetworkArgs,
    /// Config file (default: gantry.yaml, else .ko.yaml, in the working directory).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Also write every SBOM into this directory.
    #[arg(long)]
    pub sbom_dir: Option<PathBuf>,
    #[command(flatten)]
    pub signing: SigningArgs,
    #[command(flatten)]
    pub attest: AttestArgs,
}

pub async fn build(args: BuildArgs, settings: &Settings) -> Result<()> {
    for file in args.oci_archive.iter().chain(&args.tarball) {
        check_archive_writable(file)?;
    }
    if args.tarball.is_some()
        && args
            .platform
            .as_deref()
            .is_some_and(|p| p.contains(',') || p.trim() == "all")
    {
        bail!("--tarball holds one platform's image (docker load takes one): give one --platform, or keep them all with --oci-archive");
    }
    // With --oci-archive or --tarball alone the layout is only a step towards the
    // archive: it is written to a directory of its own, removed however the run ends.
    let archived = args.oci_archive.is_some() || args.tarball.is_some();
    let temporary_layout = match (archived, &args.oci_layout) {
        (true, None) => {
            let dir = tempfile::Builder::new()
                .prefix("gantry-layout-")
                .tempdir()
                .context("making a directory for the layout behind --oci-archive")?;
            let removal = cleanup::Removal::new(dir.path());
            Some((dir, removal))
        }
        _ => None,
    };
    let oci_layout = match &temporary_layout {
        Some((dir, _)) => Some(dir.path().to_path_buf()),
        None => args.oci_layout.clone(),
    };
    let mut opts = options(&args, settings, oci_layout).await?;
    if temporary_layout.is_some() {
        // The layout is only a step: what the report names is the archive.
        opts.layout_name = match (&args.oci_archive, &args.tarball) {
            (Some(file), _) => Some(format!("oci-archive:{}", file.display())),
            (None, Some(file)) => Some(format!("docker-archive:{}", file.display())),
            (None, None) => None,
        };
    }
    let progress = Progress::new(settings.in_actions);
    let result = pipeline::build(&opts, &|phase, line| progress.step(phase, line)).await;
    progress.finish();
    let report = result?;
    if let (Some(file), Some(layout)) = (&args.oci_archive, &opts.oci_layout) {
        let mtime = opts
            .source_date_epoch
            .map_or(0, |t| u64::try_from(t).unwrap_or(0));
        archive::write_archive(layout, file, mtime)
            .with_context(|| format!("writing --oci-archive {}", file.display()))?;
        eprintln!("gantry: wrote the OCI archive {}", file.display());
    }
    if let (Some(file), Some(layout)) = (&args.tarball, &opts.oci_layout) {
        let [image] = report.images.as_slice() else {
            bail!(
                "--tarball holds one image, and this build made {}: build one package",
                report.images.len()
            );
        };
        // Named as it would be pushed: REPO:TAG for each tag, when there is a REPO.
        let repo = args
            .repo
            .clone()
            .or_else(|| settings.ko_docker_repo.clone());
        let repo_tags: Vec<String> = repo
            .iter()
            .flat_map(|r| image.tags.iter().map(move |t| format!("{r}:{t}")))
            .collect();
        let mtime = opts
            .source_date_epoch
            .map_or(0, |t| u64::try_from(t).unwrap_or(0));
        archive::write_docker_archive(layout, &image.digest, &repo_tags, file, mtime)
            .with_context(|| format!("writing --tarball {}", file.display()))?;
        eprintln!("gantry: wrote the image tarball {}", file.display());
    }
    drop(temporary_layout);
    report_published(&report);
    report_to_github(&report, settings, opts.repo.is_some(), args.json.as_deref()).await?;
    let lines: Vec<&str> = report.images.iter().map(|i| i.reference.as_str()).collect();
    print_result(&lines.join("\n"))
}

/// What follows a run that published: in GitHub Actions the step outputs, the job
/// summary, the attestation store and release assets; and, for images pushed to a
/// registry (`pushed`), their declaration in the runner's artifact list. `gantry
/// merge` ends the same way.
pub(super) async fn report_to_github(
    report: &BuildReport,
    settings: &Settings,
    pushed: bool,
    json: Option<&Path>,
) -> Result<()> {
    if settings.in_actions {
        github::report_to_actions(report)?;
        // Attestations to GitHub's store, and release assets on a release.
        if let Some(token) = settings.github_token.as_ref().filter(|_| pushed) {
            let published = github::api::publish(report, token.expose(), json).await;
            if !published.attestations.is_empty() {
                eprintln!(
                    "gantry: stored {} attestations in GitHub's attestation store",
                    published.attestations.len()
                );
            }
            for name in &published.release_assets {
                eprintln!("gantry: attached {name} to the release");
            }
            for warning in &published.warnings {
                eprintln!("::warning::{}", github::escape_data(warning));
            }
        }
    }
    // For a later attestation step: the images pushed to a registry, not a layout.
    if let Some(path) = settings.artifacts_file.as_ref().filter(|_| pushed) {
        let declarations = github::artifacts::declarations(report);
        for skipped in &declarations.skipped {
            if settings.in_actions {
                eprintln!("::warning::{}", github::escape_data(skipped));
            } else {
                eprintln!("gantry: warning: {skipped}");
            }
        }
        github::artifacts::append(path, &declarations.declared).with_context(|| {
            format!(
                "declaring the pushed images in ${}",
                github::artifacts::FILE_VARIABLE
            )
        })?;
    }
    Ok(())
}

/// The pipeline's options from the build flags and the environment, with the layout
/// to write (`gantry resolve` takes the same flags).
pub(super) async fn options(
    args: &BuildArgs,
    settings: &Settings,
    oci_layout: Option<PathBuf>,
) -> Result<BuildOptions> {
    let repo = args
        .repo
        .clone()
        .or_else(|| settings.ko_docker_repo.clone())
        .filter(|_| args.push);
    if args.push_by_digest && repo.is_none() {
        bail!("--push-by-digest pushes to a registry: give --repo (or GANTRY_REPO / KO_DOCKER_REPO), and not --push=false");
    }
    Ok(BuildOptions {
        packages: args.packages.clone(),
        workdir: std::env::current_dir().context("reading the current directory")?,
        repo,
        naming: if args.bare {
            Naming::Bare
        } else if args.preserve_import_paths {
            Naming::ImportPath
        } else if args.base_import_paths {
            Naming::LastElement
        } else if args.ko_names {
            Naming::Md5Suffixed
        } else {
            Naming::Gantry
        },
        platforms: args.platform.clone(),
        base: args.base.clone(),
        default_base: settings.ko_default_base.clone(),
        tags: args.tags.clone(),
        push_by_digest: args.push_by_digest,
        oci_layout,
        layout_name: None,
        jobs: args
            .jobs
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
        labels: key_values("--image-label", &args.image_labels)?,
        annotations: key_values("--image-annotation", &args.image_annotations)?,
        image_user: args.image_user.clone(),
        ldflags: args.ldflags.clone(),
        go_flags: if args.disable_optimizations {
            vec!["-gcflags=all=-N -l".to_string()]
        } else {
            Vec::new()
        },
        wasm_os: args.wasm_os,
        wasm_artifact: args.wasm_artifact,
        registries: args.network.options()?,
        config: args.config.clone().or_else(|| {
            settings.ko_config_path.as_ref().map(|p| {
                if p.is_dir() {
                    p.join(".ko.yaml")
                } else {
                    p.clone()
                }
            })
        }),
        source_date_epoch: settings.source_date_epoch()?,
        sbom: args.attest.sbom.0.clone(),
        sbom_dir: args.sbom_dir.clone(),
        report_file: args.json.clone(),
        image_refs: args.image_refs.clone(),
        signing: args.signing.signing(settings).await?,
        provenance: !args.attest.no_provenance,
        legacy_attestations: args.attest.legacy_attestations,
        go: settings.go.clone(),
        cache_dir: settings.cache_dir.clone(),
    })
}

/// Fails before anything is built when the archive could not be written in the end:
/// its directory must exist and take a new file, and it must not be a directory.
fn check_archive_writable(file: &Path) -> Result<()> {
    let context = || {
        format!(
            "--oci-archive {} cannot be written (checked before building; nothing was pushed)",
            file.display()
        )
    };
    if file.is_dir() {
        bail!("{}: it is a directory; name a file", context());
    }
    let dir = file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    tempfile::NamedTempFile::new_in(dir)
        .map(drop)
        .with_context(context)
}

//! `gantry merge`: the images that jobs of a CI matrix pushed by digest, made into one
//! signed multi-platform index, tagged last; the result printed as `gantry build`
//! prints it.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use gantry::merge::{self, MergeOptions};
use gantry::sign::published::ClaimOptions;

use super::args::{key_values, AttestArgs, NetworkArgs, SigningArgs};
use super::build::report_to_github;
use super::output::{print_result, report_published};
use super::progress::Progress;
use super::Settings;

#[derive(Args)]
pub struct MergeArgs {
    /// Repository the jobs pushed to, where the index goes (e.g. ghcr.io/acme/app);
    /// also GANTRY_REPO, then KO_DOCKER_REPO.
    #[arg(long, env = "GANTRY_REPO")]
    pub repo: Option<String>,
    /// A job's report, as `gantry build --push-by-digest --json FILE` wrote it
    /// (repeatable: one per job). Its images in --repo go into the index.
    #[arg(long = "from", value_name = "FILE", required = true)]
    pub from: Vec<PathBuf>,
    /// Tags for the index (repeatable, or comma-separated); default "latest".
    #[arg(
        long = "tag",
        short = 't',
        visible_alias = "tags",
        value_delimiter = ','
    )]
    pub tags: Vec<String>,
    /// Annotation K=V of the index (repeatable).
    #[arg(long = "image-annotation")]
    pub image_annotations: Vec<String>,
    /// Write the machine-readable result here (as `gantry build --json`), before any
    /// tag moves.
    #[arg(long)]
    pub json: Option<PathBuf>,
    #[command(flatten)]
    pub network: NetworkArgs,
    #[command(flatten)]
    pub signing: SigningArgs,
    #[command(flatten)]
    pub attest: AttestArgs,
}

pub async fn merge(args: MergeArgs, settings: &Settings) -> Result<()> {
    let repo = args
        .repo
        .clone()
        .or_else(|| settings.ko_docker_repo.clone())
        .context("gantry merge needs --repo REPO (or GANTRY_REPO / KO_DOCKER_REPO): the repository the jobs pushed to")?;
    let workdir = std::env::current_dir().context("reading the current directory")?;
    let options = MergeOptions {
        repo,
        reports: args.from.clone(),
        tags: args.tags.clone(),
        annotations: key_values("--image-annotation", &args.image_annotations)?,
        signing: args.signing.signing(settings).await?,
        claims: ClaimOptions {
            sbom: &args.attest.sbom.0,
            provenance: !args.attest.no_provenance,
            created: settings.source_date_epoch()?.unwrap_or(0),
            workdir: &workdir,
        },
        legacy_attestations: args.attest.legacy_attestations,
        registries: args.network.options()?,
    };
    let progress = Progress::new(settings.in_actions);
    let result = merge::merge(&options, &|phase, line| progress.step(phase, line)).await;
    progress.finish();
    let merged = result?;
    let references: Vec<&str> = merged
        .report
        .images
        .iter()
        .map(|i| i.reference.as_str())
        .collect();
    let references = references.join("\n");
    // The report before the tags, as a build writes it.
    if let Some(path) = &args.json {
        let json = serde_json::to_vec_pretty(&merged.report).context("serialising the result")?;
        std::fs::write(path, json).with_context(|| {
            format!(
                "writing {} (the index is pushed and signed as {references}; no tag was moved)",
                path.display()
            )
        })?;
    }
    merged.move_tags().await?;
    report_published(&merged.report);
    report_to_github(&merged.report, settings, true, args.json.as_deref()).await?;
    print_result(&references)
}

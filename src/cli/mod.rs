//! The command line: one file per command over the library, the flags they share,
//! the environment read once (settings), and the Action's inputs as a build.

mod action;
mod args;
mod build;
mod keygen;
mod merge;
mod output;
mod progress;
mod resolve;
mod settings;
mod sign;
mod verify;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};
use gantry::attest::sbom::SbomFormat;
use gantry::github;
use gantry::gobuild::GoError;
use gantry::pipeline::BuildError;

use args::{AttestArgs, NetworkArgs, SigningArgs, TrustArgs};
pub use output::StdoutClosed;
pub use settings::Settings;

#[derive(Parser)]
#[command(
    name = "gantry",
    version,
    about = "Build Go programs into multi-platform OCI images, Linux and WebAssembly"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Build Go main packages into one image (index) per package and publish it.
    Build(Box<build::BuildArgs>),
    /// Check an image's signatures and attestations (registry or oci:DIR[:tag]): by public
    /// key, or by the keyless signer's certificate identity.
    Verify {
        reference: String,
        #[command(flatten)]
        trust: TrustArgs,
        #[command(flatten)]
        network: NetworkArgs,
    },
    /// Sign an image already published (its index and every manifest), without rebuilding.
    Sign {
        reference: String,
        #[command(flatten)]
        signing: SigningArgs,
        #[command(flatten)]
        attest: AttestArgs,
        #[command(flatten)]
        network: NetworkArgs,
    },
    /// Print the SBOM attested for an image (registry or oci:DIR[:tag]), once its
    /// attestation verifies by key or identity.
    Sbom {
        reference: String,
        #[arg(long, value_enum, default_value_t = SbomFormat::Spdx)]
        format: SbomFormat,
        /// For an index: the SBOM of this platform's image (e.g. linux/arm64, wasi/wasm)
        /// rather than the index's own.
        #[arg(long)]
        platform: Option<String>,
        #[command(flatten)]
        trust: TrustArgs,
        /// Print the SBOM without checking who signed it (a warning says so).
        #[arg(long, conflicts_with_all = ["key", "certificate_identity", "certificate_identity_regexp"])]
        unverified: bool,
        #[command(flatten)]
        network: NetworkArgs,
    },
    /// Build the ko:// import paths that Kubernetes YAML names (in one run, with the
    /// flags of `build`) and print the YAML with each replaced by its image's
    /// REPO@sha256:…, as ko resolve does.
    Resolve(Box<resolve::ResolveArgs>),
    /// Make one signed multi-platform index of the images that separate jobs pushed
    /// with `build --push-by-digest` (from their --json reports), and tag it.
    Merge(Box<merge::MergeArgs>),
    /// Run as the GitHub Action: read the action's inputs from INPUT_* variables.
    Action,
    /// Write a cosign-compatible key pair (<prefix>.key, encrypted with COSIGN_PASSWORD
    /// or, when that is unset, a password asked for on the terminal; and <prefix>.pub).
    Keygen {
        #[arg(long, default_value = "cosign")]
        output_prefix: PathBuf,
    },
}

/// Runs the command the arguments name.
pub async fn run(command: Command, settings: &Settings) -> Result<()> {
    match command {
        Command::Build(args) => build::build(*args, settings).await,
        Command::Resolve(args) => resolve::resolve(*args, settings).await,
        Command::Keygen { output_prefix } => keygen::keygen(&output_prefix, settings),
        Command::Merge(args) => merge::merge(*args, settings).await,
        Command::Action => match action::command()? {
            action::Run::Build(args) => build::build(*args, settings).await,
            action::Run::Merge(args) => merge::merge(*args, settings).await,
        },
        Command::Verify {
            reference,
            trust,
            network,
        } => verify::verify(&reference, &trust, &network, settings).await,
        Command::Sign {
            reference,
            signing,
            attest,
            network,
        } => sign::sign(settings, &reference, &signing, &attest, &network).await,
        Command::Sbom {
            reference,
            format,
            platform,
            trust,
            unverified,
            network,
        } => {
            verify::sbom(
                &reference,
                format,
                platform.as_deref(),
                &trust,
                unverified,
                &network,
                settings,
            )
            .await
        }
    }
}

/// Go compile errors become annotations on the lines they are about.
pub fn annotate(error: &anyhow::Error, settings: &Settings) {
    if let Some(BuildError::Go(GoError::Compile { dir, stderr, .. })) =
        error.downcast_ref::<BuildError>()
    {
        let workspace = settings
            .workspace
            .clone()
            .or_else(|| std::env::current_dir().ok())
            .unwrap_or_default();
        for line in github::compile_error_annotations(stderr, dir, &workspace) {
            eprintln!("{line}");
        }
    }
}

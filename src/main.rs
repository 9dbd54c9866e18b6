//! The `gantry` command: argument parsing only; the work is in the library.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};

use gantry::attest::sbom::SbomFormat;
use gantry::cleanup;
use gantry::github;
use gantry::gobuild::GoError;
use gantry::pipeline::{self, BuildError, BuildOptions, Phase};
use gantry::platform::WasmOs;
use gantry::publish::{NetworkSettings, RegistryOptions};
use gantry::sign::keyless::{self, TokenSource};
use gantry::sign::keys::{Secret, SigningKey};
use gantry::sign::published::ClaimOptions;
use gantry::sign::trust::{Authorities, IdentityMatch, IdentityPolicy, PublicKey, Trust};
use gantry::sign::verify;
use gantry::sign::{rekor, Attachment, Keyless, SignError, Signer, Signing};

#[path = "cli/action.rs"]
mod action;

#[derive(Parser)]
#[command(
    name = "gantry",
    version,
    about = "Build Go programs into multi-platform OCI images, Linux and WebAssembly"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build Go main packages into one image (index) per package and publish it.
    Build(Box<BuildArgs>),
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
        #[command(flatten)]
        trust: TrustArgs,
        /// Print the SBOM without checking who signed it (a warning says so).
        #[arg(long, conflicts_with_all = ["key", "certificate_identity", "certificate_identity_regexp"])]
        unverified: bool,
        #[command(flatten)]
        network: NetworkArgs,
    },
    /// Run as the GitHub Action: read the action's inputs from INPUT_* variables.
    Action,
    /// Write a cosign-compatible key pair (<prefix>.key, encrypted with COSIGN_PASSWORD
    /// or, when that is unset, a password asked for on the terminal; and <prefix>.pub).
    Keygen {
        #[arg(long, default_value = "cosign")]
        output_prefix: PathBuf,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum SignMode {
    /// A key when one is given, else GitHub OIDC keyless when available, else none.
    Auto,
    Keyless,
    Key,
    None,
}

/// How registries are reached: shared by every command that talks to one.
#[derive(Args, Clone)]
struct NetworkArgs {
    /// Registry host to reach over plain HTTP (repeatable; loopback hosts always are).
    #[arg(long = "insecure-registry")]
    insecure_registries: Vec<String>,
    /// Tries per registry request before giving up (408, 429, 5xx and broken
    /// connections are retried with backoff).
    #[arg(long, env = "GANTRY_REGISTRY_ATTEMPTS", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=20))]
    registry_attempts: u32,
    /// Seconds without a byte moving either way after which a registry request fails.
    #[arg(long, env = "GANTRY_STALL_TIMEOUT", default_value_t = 60.0)]
    stall_timeout: f64,
}

impl NetworkArgs {
    fn options(&self) -> Result<RegistryOptions> {
        if !(self.stall_timeout.is_finite() && self.stall_timeout > 0.0) {
            bail!(
                "--stall-timeout {} is not a positive number of seconds",
                self.stall_timeout
            );
        }
        let mut network = NetworkSettings::default();
        network.retry.attempts = self.registry_attempts;
        network.stall_timeout = std::time::Duration::from_secs_f64(self.stall_timeout);
        Ok(RegistryOptions {
            insecure: self.insecure_registries.clone(),
            network,
        })
    }
}

#[derive(Args)]
struct BuildArgs {
    /// Import paths or directories of main packages.
    #[arg(default_value = ".")]
    packages: Vec<String>,
    /// Repository to push to (e.g. ghcr.io/acme/app); also GANTRY_REPO, then KO_DOCKER_REPO.
    #[arg(long, env = "GANTRY_REPO")]
    repo: Option<String>,
    /// Platforms, comma-separated: linux/amd64,linux/arm64,linux/arm/v7,wasi/wasm, or "all".
    #[arg(long)]
    platform: Option<String>,
    /// Base image for Linux platforms ("scratch" for none).
    #[arg(long)]
    base: Option<String>,
    /// Tag to apply (repeatable); default "latest".
    #[arg(long = "tag", short = 't')]
    tags: Vec<String>,
    /// Write an OCI image layout here (the default destination when there is no --repo: ./oci-layout).
    #[arg(long)]
    oci_layout: Option<PathBuf>,
    /// Write the machine-readable result here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Parallel go builds (default: CPUs).
    #[arg(long)]
    jobs: Option<usize>,
    /// Image config label K=V (repeatable).
    #[arg(long = "image-label")]
    image_labels: Vec<String>,
    /// Manifest annotation K=V (repeatable).
    #[arg(long = "image-annotation")]
    image_annotations: Vec<String>,
    /// OS string of wasm images: wasi (Podman, Docker, runwasi), wasip1 (image-spec GOOS), or both.
    #[arg(long, value_enum, default_value_t = WasmOs::Wasi)]
    wasm_os: WasmOs,
    /// Also publish the CNCF Wasm OCI artifact, tagged <tag>-wasm.
    #[arg(long)]
    wasm_artifact: bool,
    #[command(flatten)]
    network: NetworkArgs,
    /// Config file (default: gantry.yaml, else .ko.yaml, in the working directory).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Also write every SBOM into this directory.
    #[arg(long)]
    sbom_dir: Option<PathBuf>,
    #[command(flatten)]
    signing: SigningArgs,
    #[command(flatten)]
    attest: AttestArgs,
}

/// Whom to trust: shared by `verify` and `sbom`.
#[derive(Args)]
struct TrustArgs {
    /// Public key (cosign.pub) the signatures must verify with.
    #[arg(long, conflicts_with_all = ["certificate_identity", "certificate_identity_regexp"])]
    key: Option<PathBuf>,
    /// Keyless: the identity the certificate must name; for GitHub Actions
    /// https://github.com/OWNER/REPO/.github/workflows/FILE@REF.
    #[arg(long, requires = "certificate_oidc_issuer")]
    certificate_identity: Option<String>,
    /// Keyless: a regular expression the identity must match.
    #[arg(
        long,
        conflicts_with = "certificate_identity",
        requires = "certificate_oidc_issuer"
    )]
    certificate_identity_regexp: Option<String>,
    /// Keyless: the OIDC issuer; for GitHub Actions https://token.actions.githubusercontent.com.
    #[arg(long)]
    certificate_oidc_issuer: Option<String>,
    /// Sigstore trusted root (trusted_root.json) holding the Fulcio CAs; default: the
    /// trust bundle --fulcio-url serves.
    #[arg(long)]
    trusted_root: Option<PathBuf>,
    #[arg(long, env = "SIGSTORE_FULCIO_URL", default_value = keyless::PUBLIC_FULCIO)]
    fulcio_url: String,
}

impl TrustArgs {
    /// The trust these flags describe; None when none was asked for.
    async fn trust(&self) -> Result<Option<Trust>> {
        if let Some(key) = &self.key {
            return Ok(Some(Trust::Key(PublicKey::load(key)?)));
        }
        let identity = match (
            &self.certificate_identity,
            &self.certificate_identity_regexp,
        ) {
            (Some(exact), _) => IdentityMatch::Exact(exact.clone()),
            (None, Some(re)) => IdentityMatch::Regex(
                regex::Regex::new(re)
                    .with_context(|| format!("--certificate-identity-regexp {re:?}"))?,
            ),
            (None, None) => {
                if self.certificate_oidc_issuer.is_some() {
                    bail!("--certificate-oidc-issuer needs --certificate-identity (or --certificate-identity-regexp)");
                }
                return Ok(None);
            }
        };
        let authorities = match &self.trusted_root {
            Some(path) => Authorities::from_trusted_root(path)?,
            None => Authorities::from_fulcio(&self.fulcio_url).await?,
        };
        Ok(Some(Trust::Identity(IdentityPolicy {
            identity,
            issuer: self.certificate_oidc_issuer.clone().unwrap_or_default(),
            authorities,
        })))
    }
}

/// What to attest besides signatures: shared by `build` and `sign`.
#[derive(Args)]
struct AttestArgs {
    /// SBOM formats, comma-separated, or "none".
    #[arg(long, default_value = "spdx,cyclonedx", value_parser = parse_sbom_formats)]
    sbom: SbomFormats,
    /// Attach SLSA provenance (default on; needs signing).
    #[arg(long, overrides_with = "no_provenance")]
    provenance: bool,
    /// Do not attach SLSA provenance.
    #[arg(long)]
    no_provenance: bool,
    /// Also store attestations under the legacy cosign `.att` tag.
    #[arg(long)]
    legacy_attestations: bool,
}

/// How to sign: shared by `build` and `sign`.
#[derive(Args)]
struct SigningArgs {
    /// How to sign the images and their attestations.
    #[arg(long, value_enum, default_value_t = SignMode::Auto)]
    sign: SignMode,
    /// cosign private key (password from COSIGN_PASSWORD).
    #[arg(long, env = "COSIGN_KEY")]
    key: Option<PathBuf>,
    /// Fulcio, which certifies keyless signing keys.
    #[arg(long, env = "SIGSTORE_FULCIO_URL", default_value = keyless::PUBLIC_FULCIO)]
    fulcio_url: String,
    /// Rekor, the transparency log that records keyless signatures.
    #[arg(long, env = "SIGSTORE_REKOR_URL", default_value = rekor::PUBLIC_REKOR)]
    rekor_url: String,
    /// Do not record keyless signatures in the (public) transparency log.
    #[arg(long)]
    no_tlog_upload: bool,
}

impl SigningArgs {
    /// Picks what the mode asks for, or says why there is nothing to sign with.
    fn signing(&self) -> Result<Option<Signing>> {
        let keyless = || {
            TokenSource::from_env().map(|token| {
                Signing::Keyless(Keyless {
                    token,
                    fulcio_url: self.fulcio_url.clone(),
                    rekor_url: (!self.no_tlog_upload).then(|| self.rekor_url.clone()),
                })
            })
        };
        let with_key = |path: &PathBuf| -> Result<Signing> {
            let password = cosign_password();
            match SigningKey::load(path, password.as_ref().unwrap_or(&Secret::default())) {
                Ok(key) => Ok(Signing::Key(Signer::with_key(key))),
                Err(SignError::KeyPassword { .. }) if password.is_none() => bail!(
                    "signing key {}: it is encrypted and COSIGN_PASSWORD is not set; set COSIGN_PASSWORD to its password",
                    path.display()
                ),
                Err(e) => Err(e.into()),
            }
        };
        match (self.sign, &self.key) {
            (SignMode::None, _) => Ok(None),
            (SignMode::Key | SignMode::Auto, Some(path)) => with_key(path).map(Some),
            (SignMode::Key, None) => bail!(
                "--sign key needs --key PATH (or COSIGN_KEY); create one with `gantry keygen`"
            ),
            (SignMode::Keyless, _) => match keyless() {
                Some(k) => Ok(Some(k)),
                None => bail!("{}", TokenSource::MISSING),
            },
            (SignMode::Auto, None) => {
                let found = keyless();
                if found.is_none() {
                    eprintln!("gantry: not signing: no --key (or COSIGN_KEY) and no OIDC token for keyless signing (in GitHub Actions: `permissions: id-token: write`)");
                }
                Ok(found)
            }
        }
    }
}

#[derive(Clone)]
struct SbomFormats(Vec<SbomFormat>);

fn parse_sbom_formats(text: &str) -> Result<SbomFormats, String> {
    if text == "none" {
        return Ok(SbomFormats(Vec::new()));
    }
    text.split(',')
        .map(|f| match f.trim() {
            "spdx" => Ok(SbomFormat::Spdx),
            "cyclonedx" => Ok(SbomFormat::Cyclonedx),
            other => Err(format!(
                "unknown SBOM format {other:?}: use spdx, cyclonedx, or none"
            )),
        })
        .collect::<Result<_, _>>()
        .map(SbomFormats)
}

fn key_values(flag: &str, items: &[String]) -> Result<BTreeMap<String, String>> {
    items
        .iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => bail!("{flag} {kv:?} is not of the form KEY=VALUE"),
        })
        .collect()
}

/// SOURCE_DATE_EPOCH: unset or blank is None; otherwise seconds from 0 to
/// 253402300799 (9999-12-31T23:59:59Z), anything else an error.
fn source_date_epoch() -> Result<Option<i64>> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) => Ok(gantry::image::parse_source_date_epoch(&v)?),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(v)) => bail!(
            "SOURCE_DATE_EPOCH={v:?} is not a Unix time: use a whole number of seconds from 0 \
             to 253402300799 (9999-12-31T23:59:59Z)"
        ),
    }
}

/// COSIGN_PASSWORD, when set (even to nothing: a key without a password).
fn cosign_password() -> Option<Secret> {
    std::env::var("COSIGN_PASSWORD").ok().map(Secret::new)
}

async fn build(args: BuildArgs) -> Result<()> {
    let repo = args.repo.or_else(|| {
        std::env::var("KO_DOCKER_REPO")
            .ok()
            .filter(|r| !r.is_empty())
    });
    let opts = BuildOptions {
        packages: args.packages,
        workdir: std::env::current_dir().context("reading the current directory")?,
        repo,
        platforms: args.platform,
        base: args.base,
        tags: args.tags,
        oci_layout: args.oci_layout,
        jobs: args
            .jobs
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
        labels: key_values("--image-label", &args.image_labels)?,
        annotations: key_values("--image-annotation", &args.image_annotations)?,
        wasm_os: args.wasm_os,
        wasm_artifact: args.wasm_artifact,
        registries: args.network.options()?,
        config: args.config,
        source_date_epoch: source_date_epoch()?,
        sbom: args.attest.sbom.0,
        sbom_dir: args.sbom_dir,
        report_file: args.json.clone(),
        signing: args.signing.signing()?,
        provenance: !args.attest.no_provenance,
        legacy_attestations: args.attest.legacy_attestations,
    };
    // On a terminal, one status line rewritten in place; in Actions, a log group per
    // phase; elsewhere a line per step.
    let actions = github::in_actions();
    let tty = std::io::stderr().is_terminal() && !actions;
    let phase: std::sync::Mutex<Option<Phase>> = std::sync::Mutex::new(None);
    let progress = |p: Phase, line: &str| {
        if actions {
            if let Ok(mut current) = phase.lock() {
                if *current != Some(p) {
                    if current.is_some() {
                        eprintln!("::endgroup::");
                    }
                    eprintln!("::group::{}", p.title());
                    *current = Some(p);
                }
            }
        }
        if tty {
            eprint!("\r\x1b[2Kgantry: {line}");
        } else {
            eprintln!("gantry: {line}");
        }
    };
    let result = pipeline::build(&opts, &progress).await;
    if tty {
        eprint!("\r\x1b[2K");
    }
    if actions && phase.lock().is_ok_and(|p| p.is_some()) {
        eprintln!("::endgroup::");
    }
    let report = result?;
    eprintln!(
        "gantry: published: {} blobs uploaded, {} already present, {} mounted, {} manifests, {} tags",
        report.publish.blobs_uploaded,
        report.publish.blobs_existing,
        report.publish.blobs_mounted,
        report.publish.manifests,
        report.publish.tags
    );
    for image in &report.images {
        report_attachments(&image.attachments);
    }
    if github::in_actions() {
        github::report_to_actions(&report)?;
        // Attestations to GitHub's store, and release assets on a release.
        let token = std::env::var("GITHUB_TOKEN").unwrap_or_default();
        if !token.is_empty() && opts.repo.is_some() {
            let published = github::api::publish(&report, &token, args.json.as_deref()).await;
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
    let lines: Vec<&str> = report.images.iter().map(|i| i.reference.as_str()).collect();
    print_result(&lines.join("\n"))
}

/// Stdout was closed before the result was all written (`gantry … | head -1`).
#[derive(Debug, thiserror::Error)]
#[error("stdout was closed")]
struct StdoutClosed;

/// Writes a command's result to stdout. A reader that has gone away is not an error of
/// ours: it ends the process quietly, where `println!` would panic.
fn print_result(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(StdoutClosed.into()),
        other => other.context("writing to stdout"),
    }
}

/// One line per signature or attestation stored.
fn report_attachments(attachments: &[Attachment]) {
    for a in attachments {
        eprintln!(
            "gantry: {} {} of {} stored as {} {}{}",
            a.kind,
            a.predicate_type
                .as_deref()
                .unwrap_or("(cosign simplesigning)"),
            a.subject,
            a.storage,
            a.digest,
            a.rekor_log_index
                .map(|i| format!(" (Rekor log index {i})"))
                .unwrap_or_default()
        );
    }
}

fn keygen(prefix: &std::path::Path) -> Result<()> {
    let password = match cosign_password() {
        Some(password) => password,
        None => ask_new_password()?,
    };
    let key = SigningKey::generate()?;
    let (private, public) = key.write_pair(prefix, &password)?;
    eprintln!(
        "gantry: wrote {} and {}",
        private.display(),
        public.display()
    );
    Ok(())
}

/// A new key's password, typed twice on the terminal without echo.
fn ask_new_password() -> Result<Secret> {
    if std::fs::File::open("/dev/tty").is_err() {
        bail!("COSIGN_PASSWORD is not set and there is no terminal to ask for a password: set COSIGN_PASSWORD to the new key's password (set and empty for a key without one)");
    }
    let first = rpassword::prompt_password("Enter password for private key: ")
        .context("reading the password from the terminal")?;
    let again = rpassword::prompt_password("Enter password for private key again: ")
        .context("reading the password from the terminal")?;
    if first != again {
        bail!("the two passwords differ; nothing was written");
    }
    Ok(Secret::new(first))
}

async fn verify(reference: &str, trust: &TrustArgs, network: &NetworkArgs) -> Result<()> {
    let registries = network.options()?;
    let Some(trust) = trust.trust().await? else {
        bail!("say whom to trust: --key cosign.pub, or --certificate-identity ID --certificate-oidc-issuer URL for keyless signatures");
    };
    let (digest, found) = verify::inspect_reference(reference, Some(&trust), &registries).await?;
    let whom = match &trust {
        Trust::Key(_) => "this key",
        Trust::Identity(_) => "this identity and issuer",
    };
    for f in &found {
        eprintln!(
            "gantry: {} {} ({}{}{}): {}",
            f.kind,
            f.predicate_type
                .as_deref()
                .unwrap_or("(cosign simplesigning)"),
            f.storage,
            f.certificate_identity
                .as_deref()
                .map(|i| format!(", signed by {i}"))
                .unwrap_or_default(),
            if f.tlog_entry {
                ", in the transparency log"
            } else {
                ""
            },
            if f.verified == Some(true) {
                "verified".to_string()
            } else {
                format!("NOT verified by {whom}")
            }
        );
    }
    if !found.iter().any(|f| f.kind == "signature") {
        bail!("{reference} ({digest}) has no signatures: sign it (`gantry sign`, or build with --key or keyless signing), then verify");
    }
    if !found
        .iter()
        .any(|f| f.kind == "signature" && f.verified == Some(true))
    {
        bail!("{reference} ({digest}) is signed, but no signature verifies with {whom}");
    }
    // Each kind of attestation must have one that verifies: another signer's may sit
    // beside ours, but an altered one must not pass unnoticed.
    let failed: std::collections::BTreeSet<&str> = found
        .iter()
        .filter(|f| f.kind == "attestation")
        .filter_map(|f| f.predicate_type.as_deref())
        .filter(|t| {
            !found
                .iter()
                .any(|f| f.predicate_type.as_deref() == Some(*t) && f.verified == Some(true))
        })
        .collect();
    if !failed.is_empty() {
        bail!(
            "{reference} ({digest}): its signature verifies, but no attestation of type {} verifies with {whom}",
            failed.into_iter().collect::<Vec<_>>().join(", ")
        );
    }
    print_result(&serde_json::to_string_pretty(&found)?)
}

async fn sign(
    reference: &str,
    signing: &SigningArgs,
    attest: &AttestArgs,
    network: &NetworkArgs,
) -> Result<()> {
    let signer = match signing.signing()? {
        Some(Signing::Key(signer)) => signer,
        Some(Signing::Keyless(keyless)) => Signer::keyless(&keyless).await?,
        None => bail!("nothing to sign with: pass --key PATH, or run where an OIDC token is available (--sign keyless)"),
    };
    let workdir = std::env::current_dir().context("reading the current directory")?;
    let options = ClaimOptions {
        sbom: &attest.sbom.0,
        provenance: !attest.no_provenance,
        created: source_date_epoch()?.unwrap_or(0),
        workdir: &workdir,
    };
    let (digest, attached, skipped) = verify::sign_reference(
        reference,
        &signer,
        &network.options()?,
        &options,
        attest.legacy_attestations,
    )
    .await?;
    for note in &skipped {
        eprintln!("gantry: {note}");
    }
    report_attachments(&attached);
    // The reference by digest: what was signed, whatever tag named it.
    let name = match reference.rsplit_once('@') {
        Some((name, _)) => name,
        None => match reference.rsplit_once(':') {
            Some((name, tag)) if !tag.contains('/') && name.contains('/') => name,
            _ => reference,
        },
    };
    print_result(&format!("{name}@{digest}"))
}

async fn sbom(
    reference: &str,
    format: SbomFormat,
    trust: &TrustArgs,
    unverified: bool,
    network: &NetworkArgs,
) -> Result<()> {
    let trust = trust.trust().await?;
    if trust.is_none() {
        if !unverified {
            bail!("say whom to trust: --key cosign.pub, or --certificate-identity ID --certificate-oidc-issuer URL; or --unverified to print an SBOM whose signer is not checked");
        }
        eprintln!("gantry: warning: --unverified: printing an SBOM without checking who signed it");
    }
    let (digest, found) =
        verify::inspect_reference(reference, trust.as_ref(), &network.options()?).await?;
    let sbom = found.iter().find(|f| {
        f.predicate_type.as_deref() == Some(format.predicate_type()) && f.verified != Some(false)
    });
    match sbom.and_then(|f| f.statement.as_ref()) {
        Some(statement) => print_result(&serde_json::to_string_pretty(&statement["predicate"])?),
        None => bail!(
            "no {} SBOM attestation{} found for {reference} ({digest})",
            format.predicate_type(),
            if trust.is_some() {
                " that verifies"
            } else {
                ""
            }
        ),
    }
}

/// Waits for SIGINT or SIGTERM; returns its name.
async fn interrupted() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}

/// Go compile errors become annotations on the lines they are about.
fn annotate(error: &anyhow::Error) {
    if let Some(BuildError::Go(GoError::Compile { dir, stderr, .. })) =
        error.downcast_ref::<BuildError>()
    {
        let workspace = std::env::var_os("GITHUB_WORKSPACE")
            .map(PathBuf::from)
            .or_else(|| std::env::current_dir().ok())
            .unwrap_or_default();
        for line in github::compile_error_annotations(stderr, dir, &workspace) {
            eprintln!("{line}");
        }
    }
}

fn main() -> ExitCode {
    // One TLS stack with one crypto provider, installed before any client exists.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = Cli::parse();
    if github::in_actions() {
        for line in github::mask_commands() {
            eprintln!("{line}");
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("gantry: error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let command = async {
            match cli.command {
                Command::Build(args) => build(*args).await,
                Command::Keygen { output_prefix } => keygen(&output_prefix),
                Command::Action => match action::build_args() {
                    Ok(args) => build(args).await,
                    Err(e) => Err(e),
                },
                Command::Verify {
                    reference,
                    trust,
                    network,
                } => verify(&reference, &trust, &network).await,
                Command::Sign {
                    reference,
                    signing,
                    attest,
                    network,
                } => sign(&reference, &signing, &attest, &network).await,
                Command::Sbom {
                    reference,
                    format,
                    trust,
                    unverified,
                    network,
                } => sbom(&reference, format, &trust, unverified, &network).await,
            }
        };
        // On a signal the command is dropped, which stops its `go build`s and
        // removes its work directory; then the registered files go too.
        tokio::select! {
            result = command => Ok(result),
            signal = interrupted() => Err(signal),
        }
    });
    cleanup::remove_all();
    let result = match result {
        Ok(result) => result,
        Err(signal) => {
            eprintln!("gantry: stopped by {signal}; its work files are removed");
            return ExitCode::from(if signal == "SIGINT" { 130 } else { 143 });
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is::<StdoutClosed>() => ExitCode::SUCCESS,
        Err(e) => {
            if github::in_actions() {
                annotate(&e);
            }
            eprintln!("gantry: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

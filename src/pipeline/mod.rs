//! `gantry build` as a library call, in stages that one value per package flows
//! through: plan (packages, settings, platforms, bases, repositories), compile (the Go
//! builds, each platform's layer written as its build ends), assemble (images, index,
//! SBOMs), deliver (publish, then sign and attest), report; tags move last.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::StreamExt;

use crate::attest::provenance::{self, BuildFacts};
use crate::attest::sbom::SbomFormat;
use crate::attest::{self, SbomDocument};
use crate::base::{BaseError, ResolvedBase};
use crate::config::{BuildSettings, Config, ConfigError};
use crate::gobuild::buildinfo::{BuildInfo, BuildInfoError};
use crate::gobuild::{self, GoError, GoToolchain, Package};
use crate::image::{self, Artifact};
use crate::platform::{Platform, PlatformError, PlatformRequest, WasmOs};
use crate::publish::{
    self, ImageName, LayoutPublisher, PublishError, PublishStats, Registry, RegistryOptions,
};
use crate::sign::{Attachment, SignError, Signing};

mod assemble;
mod compile;
mod deliver;
mod outputs;
mod plan;
mod report;

use assemble::{assemble_package, file_time, wasm_artifact};
use compile::{compile, start_early, Background, CompileOptions};
pub use plan::Naming;
use plan::{
    base_for, check_bases, check_destinations, early_builds, plan_bases, plan_packages,
    split_request, Base,
};

pub use crate::report::{
    BaseReport, BuildReport, LayerReport, PackageReport, PlatformReport, SbomReport,
    WasmArtifactReport,
};
use deliver::{add, requests_for, Delivery, Destination};
use report::{check_writable, report, write_report, write_sboms};

/// The base ko uses, and gantry with it.
pub const DEFAULT_BASE: &str = "cgr.dev/chainguard/static:latest";
/// What `--platform` means when neither the flag nor the config says.
pub const DEFAULT_PLATFORMS: &str = "linux/amd64";

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Go(#[from] GoError),
    #[error(transparent)]
    Platform(#[from] PlatformError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Base(#[from] BaseError),
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error(transparent)]
    BuildInfo(#[from] BuildInfoError),
    #[error("the images are pushed as {pushed}, but signing or attesting them failed, so no tag was moved.\nFix the cause, then rerun the same command (it pushes nothing again), or `gantry sign REF` with the same signing options for REF = {pushed}")]
    Sign {
        pushed: String,
        #[source]
        source: Box<SignError>,
    },
    #[error("{0}")]
    Usage(String),
    /// A task running off the async threads ended without finishing (it panicked or
    /// was cancelled).
    #[error("{what} stopped before it finished")]
    Stopped {
        what: &'static str,
        #[source]
        source: tokio::task::JoinError,
    },
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        cause: std::io::Error,
    },
    /// An entry of `kodata/` that must not reach the image.
    #[error("{} {problem}", path.display())]
    Kodata { path: PathBuf, problem: String },
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> BuildError {
    let context = context.into();
    move |cause| BuildError::Io { context, cause }
}

/// The stages a build goes through, for progress displays (GitHub groups them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Resolve,
    Build,
    Publish,
    Sign,
}

impl Phase {
    pub fn title(self) -> &'static str {
        match self {
            Phase::Resolve => "Resolve packages, platforms and base images",
            Phase::Build => "Go builds",
            Phase::Publish => "Publish",
            Phase::Sign => "Sign and attest",
        }
    }
}

/// Receives one line per step.
pub type Progress<'a> = dyn Fn(Phase, &str) + Sync + 'a;

/// Everything `gantry build` takes.
#[derive(Debug, Default)]
pub struct BuildOptions {
    /// Import paths or directories; empty means ".".
    pub packages: Vec<String>,
    /// Where packages are resolved and the config is found.
    pub workdir: PathBuf,
    /// Registry repository to push to.
    pub repo: Option<String>,
    /// How each package's repository is named under `repo`.
    pub naming: Naming,
    /// Comma-separated platforms; None = config's defaultPlatforms, else linux/amd64.
    pub platforms: Option<String>,
    /// Base image; None = config, else DEFAULT_BASE. `scratch` = no base.
    pub base: Option<String>,
    /// The default base when the config names none for a package (ko's
    /// KO_DEFAULTBASEIMAGE): beats the config's `defaultBaseImage`, not its overrides.
    pub default_base: Option<String>,
    pub tags: Vec<String>,
    /// Push the images (and what refers to them) by digest only: no tag moves, not
    /// even the default `latest`; `gantry merge` assembles and tags them later.
    pub push_by_digest: bool,
    /// OCI layout to write; the destination when there is no repo.
    pub oci_layout: Option<PathBuf>,
    /// How reports name the layout's images (`NAME@sha256:…`): `oci:DIR` unless
    /// given (`oci-archive:FILE` when the layout only becomes an archive).
    pub layout_name: Option<String>,
    pub jobs: usize,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// The user Linux images run as (`UID[:GID]`, ko's `--image-user`).
    pub image_user: Option<String>,
    /// More `-ldflags` for every package, after its configured ones (ko's `--ldflags`).
    pub ldflags: Vec<String>,
    /// More `go build` flags for every package (`--disable-optimizations` gives
    /// `-gcflags=all=-N -l`, as ko does).
    pub go_flags: Vec<String>,
    pub wasm_os: WasmOs,
    /// Also publish the CNCF Wasm OCI artifact, tagged `<tag>-wasm`.
    pub wasm_artifact: bool,
    /// Plain-HTTP hosts and the network policy.
    pub registries: RegistryOptions,
    /// Explicit config file; None = discover gantry.yaml / .ko.yaml in workdir.
    pub config: Option<PathBuf>,
    /// SOURCE_DATE_EPOCH: `created` and file times; None = 0.
    pub source_date_epoch: Option<i64>,
    /// SBOM formats to produce (empty: none).
    pub sbom: Vec<SbomFormat>,
    /// Also write each SBOM here as a file.
    pub sbom_dir: Option<PathBuf>,
    /// Write the result (`BuildReport` as JSON) here, before any tag moves.
    pub report_file: Option<PathBuf>,
    /// Write each image's `REPO@sha256:…` here, a line each (ko's `--image-refs`).
    pub image_refs: Option<PathBuf>,
    /// How to sign and attest; None = no signatures or attestations.
    pub signing: Option<Signing>,
    /// Attach SLSA provenance (signed when signing, else as an unsigned referrer).
    pub provenance: bool,
    /// Also store attestations under the legacy `.att` tag.
    pub legacy_attestations: bool,
    /// The `go` to run (a path, or a name looked up on PATH).
    pub go: PathBuf,
    /// Where Go outputs are kept between runs, so Go can skip an up-to-date link;
    /// None keeps them in the run's work directory only.
    pub cache_dir: Option<PathBuf>,
}

/// One package's plan: what to build it for, on what, and where it goes (the one
/// place repositories are named).
#[derive(Clone)]
struct PackagePlan {
    package: Package,
    settings: BuildSettings,
    platforms: Vec<Platform>,
    base: Option<(String, Arc<ResolvedBase>)>,
    /// In the registry, when pushing: REPO, or REPO/<name> when there are several
    /// packages.
    registry_repo: Option<ImageName>,
    /// In the OCI layout: the layout itself, or `<name>` when there are several.
    layout_repo: String,
}

/// One platform of a package once built: its binary, the layer holding it, and its
/// Go build info (when SBOMs are made).
#[derive(Clone)]
struct Compiled {
    platform: Platform,
    binary: PathBuf,
    layer: (image::Blob, image::Digest),
    build_info: Option<BuildInfo>,
}

/// A package once assembled: its plan, its images, and the SBOMs describing them.
struct Assembled {
    plan: PackagePlan,
    artifact: Artifact,
    /// The CNCF Wasm artifact, when asked for.
    wasm: Option<Artifact>,
    sboms: Vec<(SbomDocument, Option<PathBuf>)>,
}

/// Runs the whole build. `progress` receives one line per step, for stderr.
pub async fn build(
    opts: &BuildOptions,
    progress: &Progress<'_>,
) -> Result<BuildReport, BuildError> {
    let tags = if opts.push_by_digest {
        Vec::new()
    } else {
        tags_to_apply(&opts.tags)?
    };
    let config = match &opts.config {
        Some(path) => Some(Config::load(path)?),
        None => Config::discover(&opts.workdir)?,
    };
    let default_platforms = config
        .as_ref()
        .filter(|c| !c.config.default_platforms.is_empty())
        .map(|c| c.config.default_platforms.join(","));
    let platform_text = opts
        .platforms
        .clone()
        .or(default_platforms)
        .unwrap_or_else(|| DEFAULT_PLATFORMS.to_string());
    let request = PlatformRequest::parse(&platform_text, opts.wasm_os)?;

    let destination = opts.repo.as_deref().map(ImageName::parse).transpose()?;
    for path in opts.report_file.iter().chain(&opts.image_refs) {
        check_writable(path, false)?;
    }
    if let Some(dir) = &opts.sbom_dir {
        check_writable(dir, true)?;
    }
    check_bases(opts, config.as_ref())?;
    let packages = if opts.packages.is_empty() {
        vec![".".to_string()]
    } else {
        opts.packages.clone()
    };
    let work = tempfile::Builder::new()
        .prefix("gantry-")
        .tempdir()
        .map_err(io("creating a work directory"))?;
    let _remove_on_signal = crate::cleanup::Removal::new(work.path());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // The packages are looked up (`jobs` at a time) while the toolchain's version is
    // asked; a missing `go` is reported as such, before what the lookups made of it.
    let lookups = {
        let (go, workdir, packages) = (opts.go.clone(), opts.workdir.clone(), packages.clone());
        let jobs = opts.jobs.max(1);
        Background::spawn(
            futures::stream::iter(packages)
                .map(move |arg| {
                    let (go, workdir) = (go.clone(), workdir.clone());
                    async move { gobuild::resolve(&go, &arg, &workdir).await }
                })
                .buffered(jobs)
                .collect::<Vec<_>>(),
        )
    };
    let go = GoToolchain::detect(&opts.go).await?;
    let (PlatformRequest::List(asked) | PlatformRequest::All { wasm: asked }) = &request;
    go.check_platforms(asked)?;
    progress(
        Phase::Resolve,
        &format!("using {} ({})", go.version_string, go.go.display()),
    );
    // Packages whose directory is known without go (named by it, or found through
    // go.mod) start building now, while they are looked up.
    let (linux, wasm) = split_request(&request);
    let listed: Vec<Platform> = linux.iter().chain(&wasm).cloned().collect();
    let early = match early_builds(opts, config.as_ref(), &request, &packages) {
        Some((dirs, settings)) => start_early(
            &go,
            (
                opts.cache_dir.as_deref().unwrap_or(work.path()),
                opts.jobs,
                cores,
            ),
            &dirs,
            &settings,
            &listed,
        )?,
        None => HashMap::new(),
    };
    let found = lookups.join("looking up the packages").await?;

    let mut plans = plan_packages(opts, config.as_ref(), found, destination.as_ref())?;

    let bases: Vec<Base> = plans
        .iter()
        .map(|p| base_for(opts, config.as_ref(), &p.package.import_path))
        .collect();
    // Every repository this run reads or writes, so that one token per registry
    // covers them all.
    let registry = Arc::new(Registry::new(&opts.registries)?);
    for b in bases.iter().filter_map(Base::image) {
        registry.declare(&publish::parse_reference(b)?.0, false);
    }
    let registry_repos: Vec<ImageName> = plans
        .iter()
        .filter_map(|p| p.registry_repo.clone())
        .collect();
    for repo in &registry_repos {
        registry.declare(repo, true);
    }

    let compiling = CompileOptions {
        go: &go,
        cache_dir: opts.cache_dir.as_deref(),
        work: work.path(),
        jobs: opts.jobs,
        cores,
        mtime: file_time(opts),
        build_info: !opts.sbom.is_empty(),
        registry: destination.is_some().then(|| registry.clone()),
    };
    // While the first go build runs, the destination is asked whether this run may push.
    // (Any tag name will do for the check; a push by digest has none of its own.)
    let probe = tags.first().map_or("latest", String::as_str);
    let access = check_destinations(&registry, &registry_repos, probe);
    // Layer uploads started as builds ended run on until this run ends (publishing
    // waits for them); an early return stops them.
    let (compiled, _uploads) = match &request {
        // The platforms come from the bases: resolve them, then build.
        PlatformRequest::All { .. } => {
            futures::try_join!(
                plan_bases(&registry, &request, &bases, &mut plans, &go, progress),
                access,
            )?;
            compile(&compiling, &plans, early, progress).await?
        }
        // The platforms are the listed ones: build while the bases resolve.
        PlatformRequest::List(_) => {
            for plan in &mut plans {
                plan.platforms = listed.clone();
            }
            let building = plans.clone();
            let (compiled, (), ()) = futures::try_join!(
                compile(&compiling, &building, early, progress),
                plan_bases(&registry, &request, &bases, &mut plans, &go, progress),
                access,
            )?;
            compiled
        }
    };

    let mut assembled = Vec::new();
    for (plan, compiled) in plans.into_iter().zip(compiled) {
        assembled.push(assemble(opts, plan, &compiled, work.path()).await?);
    }

    let layout_dir = match (&opts.oci_layout, &destination) {
        (Some(dir), _) => Some(dir.clone()),
        (None, None) => Some(PathBuf::from("oci-layout")),
        (None, Some(_)) => None,
    };
    let wasm_tags: Vec<String> = tags.iter().map(|t| format!("{t}-wasm")).collect();
    let provenance = opts
        .provenance
        .then(|| provenance_of(opts, &assembled, &go.version_string));
    let delivery = Delivery {
        packages: &assembled,
        tags: &tags,
        wasm_tags: &wasm_tags,
        signing: opts.signing.as_ref(),
        keyless_signer: tokio::sync::OnceCell::new(),
        signed: tokio::sync::OnceCell::new(),
        provenance: provenance.as_ref(),
        legacy_attestations: opts.legacy_attestations,
        created: opts.source_date_epoch.unwrap_or(0),
    };
    let layout_publisher = layout_dir
        .as_deref()
        .map(|dir| LayoutPublisher::create(dir, Some(&registry)))
        .transpose()?;

    let mut stats = PublishStats::default();
    let mut attachments: Vec<Vec<Attachment>> = vec![Vec::new(); assembled.len()];
    let mut new_in_registry = HashSet::new();
    let mut new_in_layout = HashSet::new();
    if let Some(dest) = &destination {
        progress(Phase::Publish, &format!("pushing to {dest}"));
        let delivered = delivery
            .deliver(&*registry, Destination::Registry, progress)
            .await?;
        add(&mut stats, delivered.stats);
        attachments = delivered.attachments;
        new_in_registry = delivered.new;
    }
    if let (Some(dir), Some(layout)) = (&layout_dir, &layout_publisher) {
        progress(
            Phase::Publish,
            &format!("writing OCI layout {}", dir.display()),
        );
        let delivered = delivery
            .deliver(layout, Destination::Layout, progress)
            .await?;
        add(&mut stats, delivered.stats);
        if destination.is_none() {
            attachments = delivered.attachments;
        }
        new_in_layout = delivered.new;
    }

    let signer = delivery.signer_identity();
    drop(delivery);
    let images = assembled
        .iter()
        .zip(attachments)
        .map(|(package, attached)| {
            let repository = match &package.plan.registry_repo {
                Some(repo) => repo.to_string(),
                None => opts.layout_name.clone().unwrap_or_else(|| {
                    format!(
                        "oci:{}",
                        layout_dir.as_deref().unwrap_or(Path::new(".")).display()
                    )
                }),
            };
            let mut report = report(package, repository, &tags, &wasm_tags);
            report.attachments = attached;
            report
        })
        .collect();
    let mut report = BuildReport {
        images,
        publish: stats,
        go_version: go.version_string.clone(),
        signer,
        registry_requests: registry.request_count(),
    };

    // Tags last: only once the images, what refers to them and the report are all
    // stored does any tag move.
    let registry_requests = destination
        .is_some()
        .then(|| requests_for(&assembled, &tags, &wasm_tags, Destination::Registry));
    let layout_requests = layout_publisher
        .is_some()
        .then(|| requests_for(&assembled, &tags, &wasm_tags, Destination::Layout));
    report.publish.tags = registry_requests
        .iter()
        .chain(&layout_requests)
        .flatten()
        .map(|r| r.tags.len())
        .sum();
    if let Some(path) = &opts.report_file {
        write_report(path, &report)?;
    }
    if let Some(path) = &opts.image_refs {
        let refs: String = report
            .images
            .iter()
            .map(|i| format!("{}\n", i.reference))
            .collect();
        std::fs::write(path, refs).map_err(io(format!("writing {}", path.display())))?;
    }
    if let Some(requests) = &registry_requests {
        publish::apply_tags(&*registry, requests, &new_in_registry).await?;
    }
    if let (Some(layout), Some(requests)) = (&layout_publisher, &layout_requests) {
        publish::apply_tags(layout, requests, &new_in_layout).await?;
    }
    Ok(report)
}

/// The SLSA provenance predicate of what this run built.
fn provenance_of(
    opts: &BuildOptions,
    assembled: &[Assembled],
    go_version: &str,
) -> serde_json::Value {
    let platforms: Vec<String> = assembled
        .iter()
        .flat_map(|a| a.plan.platforms.iter().map(Platform::to_string))
        .collect();
    let bases: Vec<(String, String)> = assembled
        .iter()
        .filter_map(|a| {
            a.plan
                .base
                .as_ref()
                .map(|(n, r)| (n.clone(), r.digest.to_string()))
        })
        .collect();
    // What was built, as a reader elsewhere names it: import paths, not `.`.
    let import_paths: Vec<String> = assembled
        .iter()
        .map(|a| a.plan.package.import_path.clone())
        .collect();
    provenance::predicate(&BuildFacts {
        packages: &import_paths,
        platforms: &platforms,
        go_version,
        bases: &bases,
        workdir: &opts.workdir,
        created: opts.source_date_epoch.unwrap_or(0),
    })
}

/// The assemble stage for one package: its images and index, the CNCF Wasm artifact
/// when asked for, and its SBOMs (also written to --sbom-dir).
async fn assemble(
    opts: &BuildOptions,
    plan: PackagePlan,
    compiled: &[Compiled],
    work: &Path,
) -> Result<Assembled, BuildError> {
    let artifact = assemble_package(opts, &plan, compiled, work).await?;
    let wasm = match (
        opts.wasm_artifact,
        compiled.iter().find(|c| c.platform.is_wasm()),
    ) {
        (true, Some(c)) => Some(wasm_artifact(opts, &plan, &c.binary).await?),
        _ => None,
    };
    let infos: Option<Vec<&BuildInfo>> = compiled.iter().map(|c| c.build_info.as_ref()).collect();
    let docs = match infos {
        Some(infos) if !opts.sbom.is_empty() => {
            let name = plan
                .registry_repo
                .as_ref()
                .map_or_else(|| plan.package.name.clone(), ImageName::to_string);
            attest::sboms(
                &name,
                match &artifact {
                    Artifact::Index { descriptor, .. } => Some(&descriptor.digest),
                    Artifact::Image(_) => None,
                },
                &artifact
                    .images()
                    .iter()
                    .zip(infos)
                    .map(|(image, info)| attest::ImageFacts {
                        digest: &image.descriptor.digest,
                        platform: &image.platform,
                        base_digest: image.base_digest.as_ref(),
                        build_info: info,
                    })
                    .collect::<Vec<_>>(),
                plan.base.as_ref().map(|(n, r)| (n.as_str(), &r.digest)),
                opts.source_date_epoch.unwrap_or(0),
                &opts.sbom,
            )
        }
        _ => Vec::new(),
    };
    let sboms = write_sboms(opts.sbom_dir.as_deref(), &plan.package.name, docs)?;
    Ok(Assembled {
        plan,
        artifact,
        wasm,
        sboms,
    })
}

/// The tags a run moves: those given, once each and checked, or `latest`.
pub fn tags_to_apply(given: &[String]) -> Result<Vec<String>, BuildError> {
    let mut tags = if given.is_empty() {
        vec!["latest".to_string()]
    } else {
        given.to_vec()
    };
    let mut seen = HashSet::new();
    tags.retain(|t| seen.insert(t.clone()));
    for tag in &tags {
        check_tag(tag)?;
    }
    Ok(tags)
}

/// A tag the user gave, checked against the OCI grammar before anything is built.
pub fn check_tag(tag: &str) -> Result<(), BuildError> {
    if publish::is_tag(tag) {
        Ok(())
    } else {
        Err(BuildError::Usage(format!(
            "tag {tag:?} is not a valid OCI tag: use up to 128 letters, digits, '_', '.', '-', not starting with '.' or '-'"
        )))
    }
}

#[cfg(test)]
mod tests;

//! `gantry build` as a library call: resolve packages, platforms and bases; run the
//! Go builds in parallel; assemble images and indexes; publish; report.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use tokio::sync::Semaphore;

use crate::attest::provenance::{self, BuildFacts};
use crate::attest::sbom::SbomFormat;
use crate::attest::{self, SbomDocument};
use crate::base::{self, BaseError, ResolvedBase};
use crate::config::{BuildSettings, Config, ConfigError, LoadedConfig, TemplateData};
use crate::gobuild::buildinfo::{BuildInfo, BuildInfoError};
use crate::gobuild::{BuildJob, GoError, GoToolchain, Package};
use crate::image::{
    self, assemble_index, assemble_linux_image, assemble_wasm_artifact, assemble_wasm_image,
    media_type, Artifact, Blob, BlobSource, Descriptor, ImageSpec, LayerEntry,
};
use crate::platform::{Platform, PlatformError, PlatformRequest, WasmOs};
use crate::publish::{
    self, ImageName, LayoutPublisher, PublishError, PublishRequest, PublishStats, Publisher,
    Registry, RegistryOptions, RegistryPublisher,
};
use crate::sign::{self, Attachment, SignError, Signer, SignerIdentity, Signing};

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
    #[error("{context}: {cause}")]
    Io {
        context: String,
        cause: std::io::Error,
    },
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
    /// Comma-separated platforms; None = config's defaultPlatforms, else linux/amd64.
    pub platforms: Option<String>,
    /// Base image; None = config, else DEFAULT_BASE. `scratch` = no base.
    pub base: Option<String>,
    pub tags: Vec<String>,
    /// OCI layout to write; the destination when there is no repo.
    pub oci_layout: Option<PathBuf>,
    pub jobs: usize,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
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
    /// How to sign and attest; None = no signatures or attestations.
    pub signing: Option<Signing>,
    /// Attach SLSA provenance (needs signing).
    pub provenance: bool,
    /// Also store attestations under the legacy `.att` tag.
    pub legacy_attestations: bool,
}

/// The result, per package, as `--json` writes it.
#[derive(Debug, Clone, Serialize)]
pub struct BuildReport {
    pub images: Vec<PackageReport>,
    pub publish: PublishStats,
    pub go_version: String,
    /// Who signed, when anything was signed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signer: Option<SignerIdentity>,
    /// HTTP requests sent to registries, every retry counted.
    pub registry_requests: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct PackageReport {
    pub import_path: String,
    /// `registry/repo`, or `oci:DIR` for a layout-only build.
    pub repository: String,
    /// Digest of the index (or of the single manifest).
    pub digest: String,
    pub media_type: String,
    /// `repository@digest`.
    pub reference: String,
    pub tags: Vec<String>,
    pub platforms: Vec<PlatformReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_image: Option<BaseReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wasm_artifact: Option<WasmArtifactReport>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sboms: Vec<SbomReport>,
    /// Signatures and attestations stored for this package.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SbomReport {
    /// Digest of the image or index described.
    pub subject: String,
    /// `index`, or the platform.
    pub platform: String,
    pub format: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlatformReport {
    pub platform: String,
    pub digest: String,
    pub config_digest: String,
    pub layers: Vec<LayerReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_digest: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LayerReport {
    pub digest: String,
    pub size: u64,
    pub media_type: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct BaseReport {
    pub name: String,
    pub digest: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct WasmArtifactReport {
    pub digest: String,
    pub tags: Vec<String>,
}

/// One package's plan: what to build it for and on what.
struct PackagePlan {
    package: Package,
    settings: BuildSettings,
    platforms: Vec<Platform>,
    base: Option<(String, Arc<ResolvedBase>)>,
}

/// Runs the whole build. `progress` receives one line per step, for stderr.
pub async fn build(
    opts: &BuildOptions,
    progress: &Progress<'_>,
) -> Result<BuildReport, BuildError> {
    let tags = if opts.tags.is_empty() {
        vec!["latest".to_string()]
    } else {
        opts.tags.clone()
    };
    for tag in &tags {
        check_tag(tag)?;
    }
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
    if let Some(path) = &opts.report_file {
        check_writable(path, false)?;
    }
    if let Some(dir) = &opts.sbom_dir {
        check_writable(dir, true)?;
    }
    let go = GoToolchain::detect().await?;
    let (PlatformRequest::List(asked) | PlatformRequest::All { wasm: asked }) = &request;
    go.check_platforms(asked)?;
    progress(
        Phase::Resolve,
        &format!("using {} ({})", go.version_string, go.go.display()),
    );

    let packages = if opts.packages.is_empty() {
        vec![".".to_string()]
    } else {
        opts.packages.clone()
    };
    // Gathered (three git calls) only when some setting has a template.
    let mut template_data: Option<TemplateData> = None;
    let mut resolved = Vec::new();
    for arg in &packages {
        let package = go.resolve(arg, &opts.workdir).await?;
        let settings = settings_for(config.as_ref(), &package)?;
        let settings = if settings.has_templates() {
            let data = template_data
                .get_or_insert_with(|| TemplateData::gather(&opts.workdir, opts.source_date_epoch));
            settings.render(data)?
        } else {
            settings
        };
        resolved.push((package, settings));
    }

    let base_refs: Vec<String> = resolved
        .iter()
        .map(|(p, _)| base_ref(opts, config.as_ref(), &p.import_path))
        .collect();
    // Every repository this run reads or writes, so that one token per registry
    // covers them all.
    let registry = Registry::new(&opts.registries)?;
    for b in base_refs.iter().filter(|b| *b != "scratch") {
        registry.declare(&publish::parse_reference(b)?.0, false);
    }
    if let Some(dest) = &destination {
        let multi = resolved.len() > 1;
        for (package, _) in &resolved {
            let repo = if multi {
                dest.join(&package.name)
            } else {
                dest.clone()
            };
            registry.declare(&repo, true);
        }
    }

    let mut bases: HashMap<String, Arc<ResolvedBase>> = HashMap::new();
    let mut plans = Vec::new();
    for ((package, settings), base_ref) in resolved.into_iter().zip(base_refs) {
        let (platforms, base) =
            plan_platforms(&registry, &request, &base_ref, &mut bases, progress).await?;
        go.check_platforms(&platforms)?;
        plans.push(PackagePlan {
            package,
            settings,
            platforms,
            base,
        });
    }

    let work = tempfile::Builder::new()
        .prefix("gantry-")
        .tempdir()
        .map_err(io("creating a work directory"))?;
    let _remove_on_signal = crate::cleanup::Removal::new(work.path());
    let binaries = run_builds(&go, &plans, work.path(), opts.jobs, progress).await?;
    let build_infos = if opts.sbom.is_empty() {
        Vec::new()
    } else {
        read_build_infos(&binaries, &go.version_string).await?
    };

    let layout_dir = match (&opts.oci_layout, &destination) {
        (Some(dir), _) => Some(dir.clone()),
        (None, None) => Some(PathBuf::from("oci-layout")),
        (None, Some(_)) => None,
    };
    let mut artifacts = Vec::new();
    for (i, plan) in plans.iter().enumerate() {
        let artifact = assemble_package(opts, plan, &binaries[i], work.path()).await?;
        let wasm = match (
            opts.wasm_artifact,
            binaries[i].iter().find(|(p, _)| p.is_wasm()),
        ) {
            (true, Some((_, module))) => Some(wasm_artifact(opts, plan, module).await?),
            _ => None,
        };
        artifacts.push((artifact, wasm));
    }

    let multi = plans.len() > 1;
    let sbom_names: Vec<String> = plans
        .iter()
        .map(|p| match &destination {
            Some(dest) if multi => dest.join(&p.package.name).to_string(),
            Some(dest) => dest.to_string(),
            None => p.package.name.clone(),
        })
        .collect();
    let mut sboms = Vec::new();
    for (i, plan) in plans.iter().enumerate() {
        let docs = match build_infos.get(i) {
            Some(infos) => attest::sboms(
                &sbom_names[i],
                match &artifacts[i].0 {
                    Artifact::Index { descriptor, .. } => Some(descriptor.digest.as_str()),
                    Artifact::Image(_) => None,
                },
                &artifacts[i]
                    .0
                    .images()
                    .iter()
                    .zip(infos)
                    .map(|(image, info)| attest::ImageFacts {
                        digest: &image.descriptor.digest,
                        platform: &image.platform,
                        base_digest: image.base_digest.as_deref(),
                        build_info: info,
                    })
                    .collect::<Vec<_>>(),
                plan.base
                    .as_ref()
                    .map(|(n, r)| (n.as_str(), r.digest.as_str())),
                opts.source_date_epoch.unwrap_or(0),
                &opts.sbom,
            ),
            None => Vec::new(),
        };
        sboms.push(write_sboms(
            opts.sbom_dir.as_deref(),
            &plan.package.name,
            docs,
        )?);
    }
    let wasm_tags: Vec<String> = tags.iter().map(|t| format!("{t}-wasm")).collect();
    let provenance = (opts.provenance && opts.signing.is_some()).then(|| {
        let platforms: Vec<String> = plans
            .iter()
            .flat_map(|p| p.platforms.iter().map(Platform::to_string))
            .collect();
        let bases: Vec<(String, String)> = plans
            .iter()
            .filter_map(|p| p.base.as_ref().map(|(n, r)| (n.clone(), r.digest.clone())))
            .collect();
        provenance::predicate(&BuildFacts {
            packages: &packages,
            platforms: &platforms,
            go_version: &go.version_string,
            bases: &bases,
            workdir: &opts.workdir,
            created: opts.source_date_epoch.unwrap_or(0),
        })
    });
    let delivery = Delivery {
        plans: &plans,
        artifacts: &artifacts,
        sboms: &sboms,
        tags: &tags,
        wasm_tags: &wasm_tags,
        jobs: opts.jobs.max(1) * 2,
        signing: opts.signing.as_ref(),
        keyless_signer: tokio::sync::OnceCell::new(),
        provenance: provenance.as_ref(),
        legacy_attestations: opts.legacy_attestations,
        created: opts.source_date_epoch.unwrap_or(0),
    };
    let repos_in_registry: Vec<String> = match &destination {
        Some(dest) => plans
            .iter()
            .map(|p| {
                if multi {
                    dest.join(&p.package.name).to_string()
                } else {
                    dest.to_string()
                }
            })
            .collect(),
        None => Vec::new(),
    };
    let repos_in_layout: Vec<String> = plans
        .iter()
        .map(|p| {
            if multi {
                p.package.name.clone()
            } else {
                String::new()
            }
        })
        .collect();
    let registry_publisher = RegistryPublisher {
        registry: &registry,
    };
    let layout_publisher = layout_dir
        .as_deref()
        .map(|dir| LayoutPublisher::create(dir, Some(&registry)))
        .transpose()?;

    let mut stats = PublishStats::default();
    let mut attachments: Vec<Vec<Attachment>> = vec![Vec::new(); plans.len()];
    if let Some(dest) = &destination {
        progress(Phase::Publish, &format!("pushing to {dest}"));
        let (s, a) = delivery
            .deliver(&registry_publisher, &repos_in_registry, progress)
            .await?;
        add(&mut stats, s);
        attachments = a;
    }
    if let (Some(dir), Some(layout)) = (&layout_dir, &layout_publisher) {
        progress(
            Phase::Publish,
            &format!("writing OCI layout {}", dir.display()),
        );
        let (s, a) = delivery.deliver(layout, &repos_in_layout, progress).await?;
        add(&mut stats, s);
        if destination.is_none() {
            attachments = a;
        }
    }

    let signer = delivery.signer_identity();
    drop(delivery);
    let mut reports = Vec::new();
    for (((plan, (artifact, wasm)), sboms), attached) in
        plans.iter().zip(&artifacts).zip(sboms).zip(attachments)
    {
        let repository = match &destination {
            Some(dest) if multi => dest.join(&plan.package.name).to_string(),
            Some(dest) => dest.to_string(),
            None => format!(
                "oci:{}",
                layout_dir.as_deref().unwrap_or(Path::new(".")).display()
            ),
        };
        let mut report = report(plan, artifact, wasm.as_ref(), repository, &tags, &wasm_tags);
        report.sboms = sboms
            .into_iter()
            .map(|(doc, file)| sbom_report(&doc, file))
            .collect();
        report.attachments = attached;
        reports.push(report);
    }
    let mut report = BuildReport {
        images: reports,
        publish: stats,
        go_version: go.version_string.clone(),
        signer,
        registry_requests: registry.request_count(),
    };

    // Tags last: only once the images, what refers to them and the report are all
    // stored does any tag move.
    let tag_jobs = opts.jobs.max(1) * 2;
    let registry_requests = destination
        .is_some()
        .then(|| requests_for(&plans, &artifacts, &tags, &wasm_tags, &repos_in_registry));
    let layout_requests = layout_publisher
        .is_some()
        .then(|| requests_for(&plans, &artifacts, &tags, &wasm_tags, &repos_in_layout));
    report.publish.tags = registry_requests
        .iter()
        .chain(&layout_requests)
        .flatten()
        .map(|r| r.tags.len())
        .sum();
    if let Some(path) = &opts.report_file {
        write_report(path, &report)?;
    }
    if let Some(requests) = &registry_requests {
        publish::apply_tags(&registry_publisher, requests, tag_jobs).await?;
    }
    if let (Some(layout), Some(requests)) = (&layout_publisher, &layout_requests) {
        publish::apply_tags(layout, requests, tag_jobs).await?;
    }
    Ok(report)
}

/// Writes the JSON result; `path` was checked for writability before anything was
/// pushed.
fn write_report(path: &Path, report: &BuildReport) -> Result<(), BuildError> {
    let json = serde_json::to_vec_pretty(report).map_err(|e| BuildError::Io {
        context: "serialising the result".into(),
        cause: std::io::Error::other(e),
    })?;
    std::fs::write(path, json).map_err(io(format!("writing {}", path.display())))
}

/// Fails early, before any build or push, when an output file cannot be written:
/// opens an existing file for writing, or makes (and removes) a file beside it.
fn check_writable(path: &Path, is_dir: bool) -> Result<(), BuildError> {
    let context = || {
        format!(
            "{} cannot be written (checked before building; nothing was pushed)",
            path.display()
        )
    };
    let probe = if is_dir {
        std::fs::create_dir_all(path).and_then(|()| tempfile::NamedTempFile::new_in(path).map(drop))
    } else if path.exists() {
        std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map(drop)
    } else {
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
        tempfile::NamedTempFile::new_in(parent.unwrap_or(Path::new("."))).map(drop)
    };
    probe.map_err(io(context()))
}

/// Everything one destination receives: images first, then what refers to them.
struct Delivery<'a> {
    plans: &'a [PackagePlan],
    artifacts: &'a [(Artifact, Option<Artifact>)],
    sboms: &'a [Vec<(SbomDocument, Option<PathBuf>)>],
    tags: &'a [String],
    wasm_tags: &'a [String],
    jobs: usize,
    signing: Option<&'a Signing>,
    /// Made at the first signature, then shared by every destination.
    keyless_signer: tokio::sync::OnceCell<Signer>,
    provenance: Option<&'a serde_json::Value>,
    legacy_attestations: bool,
    created: i64,
}

impl Delivery<'_> {
    fn signer_identity(&self) -> Option<SignerIdentity> {
        match self.signing? {
            Signing::Key(signer) => Some(signer.identity()),
            Signing::Keyless(_) => self.keyless_signer.get().map(Signer::identity),
        }
    }

    /// The signer, if signing: a keyless one gets its certificate now, after the
    /// images are pushed, so its ten minutes are spent signing.
    async fn signer(&self, progress: &Progress<'_>) -> Result<Option<&Signer>, SignError> {
        match self.signing {
            None => Ok(None),
            Some(Signing::Key(signer)) => Ok(Some(signer)),
            Some(Signing::Keyless(keyless)) => self
                .keyless_signer
                .get_or_try_init(|| {
                    progress(
                        Phase::Sign,
                        &format!(
                            "requesting a signing certificate from {}",
                            keyless.fulcio_url
                        ),
                    );
                    Signer::keyless(keyless)
                })
                .await
                .map(Some),
        }
    }

    async fn deliver<P: Publisher>(
        &self,
        publisher: &P,
        repos: &[String],
        progress: &Progress<'_>,
    ) -> Result<(PublishStats, Vec<Vec<Attachment>>), BuildError> {
        let requests = requests_for(self.plans, self.artifacts, self.tags, self.wasm_tags, repos);
        let stats = publish::publish(publisher, &requests, self.jobs).await?;
        let pushed = || {
            requests
                .iter()
                .map(|r| format!("{}@{}", r.repository, r.artifact.descriptor().digest))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let failed = |source| BuildError::Sign {
            pushed: pushed(),
            source: Box::new(source),
        };
        let mut attachments = Vec::new();
        for (i, (artifact, _)) in self.artifacts.iter().enumerate() {
            let Some(signer) = self.signer(progress).await.map_err(failed)? else {
                attachments.push(Vec::new());
                continue;
            };
            let mut subjects: Vec<Descriptor> = Vec::new();
            if let Artifact::Index { descriptor, .. } = artifact {
                subjects.push(descriptor.clone());
            }
            subjects.extend(artifact.images().iter().map(|i| i.descriptor.clone()));
            let sboms: Vec<&SbomDocument> = self.sboms[i].iter().map(|(doc, _)| doc).collect();
            let claims = sign::claims_for(&repos[i], &subjects, &sboms, self.provenance);
            progress(
                Phase::Sign,
                &format!(
                    "signing and attesting {} ({} items)",
                    repos[i],
                    claims.len()
                ),
            );
            attachments.push(
                sign::attach(
                    publisher,
                    signer,
                    &claims,
                    self.legacy_attestations,
                    self.created,
                )
                .await
                .map_err(failed)?,
            );
        }
        Ok((stats, attachments))
    }
}

fn add(total: &mut PublishStats, s: PublishStats) {
    total.blobs_uploaded += s.blobs_uploaded;
    total.blobs_existing += s.blobs_existing;
    total.blobs_mounted += s.blobs_mounted;
    total.manifests += s.manifests;
    total.manifests_existing += s.manifests_existing;
    total.tags += s.tags;
}

fn requests_for<'a>(
    plans: &[PackagePlan],
    artifacts: &'a [(Artifact, Option<Artifact>)],
    tags: &[String],
    wasm_tags: &[String],
    repos: &[String],
) -> Vec<PublishRequest<'a>> {
    let mut requests = Vec::new();
    for ((_, (artifact, wasm)), repo) in plans.iter().zip(artifacts).zip(repos) {
        requests.push(PublishRequest {
            repository: repo.clone(),
            artifact,
            tags: tags.to_vec(),
        });
        if let Some(wasm) = wasm {
            requests.push(PublishRequest {
                repository: repo.clone(),
                artifact: wasm,
                tags: wasm_tags.to_vec(),
            });
        }
    }
    requests
}

/// OCI tag grammar: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
pub fn check_tag(tag: &str) -> Result<(), BuildError> {
    let ok = !tag.is_empty()
        && tag.len() <= 128
        && tag
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(BuildError::Usage(format!(
            "tag {tag:?} is not a valid OCI tag: use up to 128 letters, digits, '_', '.', '-', not starting with '.' or '-'"
        )))
    }
}

fn settings_for(
    config: Option<&LoadedConfig>,
    package: &Package,
) -> Result<BuildSettings, BuildError> {
    Ok(match config {
        Some(c) => c.settings_for(&package.dir)?,
        None => BuildSettings::default(),
    })
}

fn base_ref(opts: &BuildOptions, config: Option<&LoadedConfig>, import_path: &str) -> String {
    opts.base
        .clone()
        .or_else(|| {
            config
                .and_then(|c| c.config.base_image_for(import_path))
                .map(str::to_string)
        })
        .unwrap_or_else(|| DEFAULT_BASE.to_string())
}

/// The platforms one package builds for, and its base resolved for the Linux ones.
async fn plan_platforms(
    registry: &Registry,
    request: &PlatformRequest,
    base_ref: &str,
    cache: &mut HashMap<String, Arc<ResolvedBase>>,
    progress: &Progress<'_>,
) -> Result<(Vec<Platform>, Option<(String, Arc<ResolvedBase>)>), BuildError> {
    let (linux, wasm): (Vec<Platform>, Vec<Platform>) = match request {
        PlatformRequest::List(list) => list.iter().cloned().partition(|p| !p.is_wasm()),
        PlatformRequest::All { wasm } => (Vec::new(), wasm.clone()),
    };
    let wants_linux = matches!(request, PlatformRequest::All { .. }) || !linux.is_empty();
    if !wants_linux {
        return Ok((wasm, None));
    }
    if base_ref == "scratch" {
        if matches!(request, PlatformRequest::All { .. }) {
            return Err(BuildError::Usage(
                "--platform all takes its platforms from the base image, but the base is scratch; list the platforms instead".into(),
            ));
        }
        return Ok((linux.into_iter().chain(wasm).collect(), None));
    }
    let key = format!(
        "{base_ref}|{}",
        linux
            .iter()
            .map(Platform::to_string)
            .collect::<Vec<_>>()
            .join(",")
    );
    let resolved = match cache.get(&key) {
        Some(r) => r.clone(),
        None => {
            progress(Phase::Resolve, &format!("resolving base image {base_ref}"));
            let wanted = (!linux.is_empty()).then_some(linux.as_slice());
            let r = Arc::new(base::resolve(registry, base_ref, wanted).await?);
            cache.insert(key, r.clone());
            r
        }
    };
    let linux = if linux.is_empty() {
        resolved.platforms()
    } else {
        linux
    };
    Ok((
        linux.into_iter().chain(wasm).collect(),
        Some((base_ref.to_string(), resolved)),
    ))
}

/// Runs every `go build` (one per package and distinct GOOS/GOARCH/variant), `jobs` at
/// a time. Returns, per package, each platform's binary.
async fn run_builds(
    go: &GoToolchain,
    plans: &[PackagePlan],
    work: &Path,
    jobs: usize,
    progress: &Progress<'_>,
) -> Result<Vec<Vec<(Platform, PathBuf)>>, BuildError> {
    let limit = Semaphore::new(jobs.max(1));
    let mut tasks = Vec::new();
    let mut outputs: Vec<Vec<(Platform, PathBuf)>> = Vec::new();
    for (i, plan) in plans.iter().enumerate() {
        let mut per_platform = Vec::new();
        let mut seen: HashMap<Vec<(&str, String)>, PathBuf> = HashMap::new();
        for platform in &plan.platforms {
            let env = platform.go_env();
            let out = match seen.get(&env) {
                Some(out) => out.clone(),
                None => {
                    let slug = env
                        .iter()
                        .map(|(_, v)| v.as_str())
                        .collect::<Vec<_>>()
                        .join("-");
                    let file = if platform.is_wasm() {
                        format!("{}.wasm", plan.package.name)
                    } else {
                        plan.package.name.clone()
                    };
                    let dir =
                        output_dir(work, &go.version_string, plan, &env, &format!("{i}-{slug}"));
                    std::fs::create_dir_all(&dir).map_err(io("creating a work directory"))?;
                    let out = dir.join(file);
                    seen.insert(env, out.clone());
                    tasks.push((plan, platform, out.clone()));
                    out
                }
            };
            per_platform.push((platform.clone(), out));
        }
        outputs.push(per_platform);
    }
    let builds = tasks.iter().map(|(plan, platform, out)| {
        let limit = &limit;
        async move {
            let _permit = limit
                .acquire()
                .await
                .map_err(|e| BuildError::Usage(e.to_string()))?;
            progress(
                Phase::Build,
                &format!("building {} for {platform}", plan.package.import_path),
            );
            let dir = plan.settings.dir.as_deref().unwrap_or(&plan.package.dir);
            go.build(&BuildJob {
                package: &plan.package,
                platform,
                dir,
                env: &plan.settings.env,
                flags: &plan.settings.flags,
                ldflags: &plan.settings.ldflags,
                out,
            })
            .await
            .map_err(BuildError::from)
        }
    });
    futures::future::try_join_all(builds).await?;
    Ok(outputs)
}

/// Where one build's binary goes: a directory in gantry's cache keyed by everything
/// that shapes the binary, so a rebuild finds the previous output and Go skips the
/// link when it is up to date. Without a cache directory, the run's work directory.
fn output_dir(
    work: &Path,
    go_version: &str,
    plan: &PackagePlan,
    env: &[(&str, String)],
    fallback: &str,
) -> PathBuf {
    let root = std::env::var_os("GANTRY_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("gantry")))
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/gantry")));
    let Some(root) = root else {
        return work.join(fallback);
    };
    let key = format!(
        "{go_version}\0{}\0{}\0{env:?}\0{:?}\0{:?}\0{:?}",
        plan.package.import_path,
        plan.package.dir.display(),
        plan.settings.env,
        plan.settings.flags,
        plan.settings.ldflags
    );
    let hash = image::sha256_digest(key.as_bytes());
    root.join("bin")
        .join(&hash["sha256:".len().."sha256:".len() + 24])
}

/// Layers (in parallel, off the async threads) and images for one package.
async fn assemble_package(
    opts: &BuildOptions,
    plan: &PackagePlan,
    binaries: &[(Platform, PathBuf)],
    work: &Path,
) -> Result<Artifact, BuildError> {
    let mtime = opts.source_date_epoch.unwrap_or(0).max(0) as u64;
    let name = plan.package.name.clone();
    let spec = ImageSpec {
        name: name.clone(),
        created: opts.source_date_epoch.unwrap_or(0),
        labels: opts.labels.clone(),
        annotations: opts.annotations.clone(),
    };

    let kodata = match (
        &plan.package.kodata,
        binaries.iter().any(|(p, _)| !p.is_wasm()),
    ) {
        (Some(dir), true) => Some(layer(work, kodata_entries(dir)?, mtime).await?),
        _ => None,
    };
    // One layer per distinct binary: wasi/wasm and wasip1/wasm share one blob.
    let mut layers: HashMap<PathBuf, (Blob, String)> = HashMap::new();
    let mut images = Vec::new();
    for (platform, binary) in binaries {
        let app = match layers.get(binary) {
            Some(l) => l.clone(),
            None => {
                let entries = if platform.is_wasm() {
                    vec![LayerEntry::File {
                        path: format!("{name}.wasm"),
                        mode: 0o755,
                        source: binary.clone(),
                    }]
                } else {
                    vec![
                        LayerEntry::Dir {
                            path: "ko-app".into(),
                            mode: 0o755,
                        },
                        LayerEntry::File {
                            path: format!("ko-app/{name}"),
                            mode: 0o555,
                            source: binary.clone(),
                        },
                    ]
                };
                let l = layer(work, entries, mtime).await?;
                layers.insert(binary.clone(), l.clone());
                l
            }
        };
        let image = if platform.is_wasm() {
            assemble_wasm_image(&spec, platform, app)
        } else {
            let base = match &plan.base {
                Some((_, resolved)) => {
                    Some(resolved.for_platform(platform).ok_or_else(|| {
                        BuildError::Usage(format!("base image has no {platform}"))
                    })?)
                }
                None => None,
            };
            let ours = kodata.iter().cloned().chain(std::iter::once(app)).collect();
            assemble_linux_image(&spec, platform, base, ours)
        };
        images.push(image);
    }
    let mut index_annotations = opts.annotations.clone();
    if let Some((name, resolved)) = &plan.base {
        index_annotations.insert(image::annotation::BASE_NAME.into(), name.clone());
        index_annotations.insert(
            image::annotation::BASE_DIGEST.into(),
            resolved.digest.clone(),
        );
    }
    Ok(assemble_index(images, index_annotations))
}

async fn layer(
    work: &Path,
    entries: Vec<LayerEntry>,
    mtime: u64,
) -> Result<(Blob, String), BuildError> {
    let work = work.to_path_buf();
    tokio::task::spawn_blocking(move || image::write_layer(&work, &entries, mtime))
        .await
        .map_err(|e| BuildError::Usage(format!("layer writer stopped: {e}")))?
        .map_err(io("writing a layer"))
}

/// `kodata/` as ko ships it: under /var/run/ko, sorted, symlinks followed.
fn kodata_entries(dir: &Path) -> Result<Vec<LayerEntry>, BuildError> {
    fn walk(dir: &Path, rel: &str, out: &mut Vec<LayerEntry>) -> Result<(), BuildError> {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .map_err(io(format!("reading {}", dir.display())))?
            .filter_map(Result::ok)
            .map(|e| e.file_name())
            .collect();
        names.sort();
        for name in names {
            let path = dir.join(&name);
            let rel = format!("{rel}/{}", name.to_string_lossy());
            let meta =
                std::fs::metadata(&path).map_err(io(format!("reading {}", path.display())))?;
            if meta.is_dir() {
                out.push(LayerEntry::Dir {
                    path: rel.clone(),
                    mode: 0o755,
                });
                walk(&path, &rel, out)?;
            } else {
                out.push(LayerEntry::File {
                    path: rel,
                    mode: 0o555,
                    source: path,
                });
            }
        }
        Ok(())
    }
    let mut out = vec![LayerEntry::Dir {
        path: "var/run/ko".into(),
        mode: 0o755,
    }];
    walk(dir, "var/run/ko", &mut out)?;
    Ok(out)
}

/// The CNCF Wasm OCI artifact of a package's module: the raw `.wasm` as one layer.
async fn wasm_artifact(
    opts: &BuildOptions,
    plan: &PackagePlan,
    module: &Path,
) -> Result<Artifact, BuildError> {
    let path = module.to_path_buf();
    let (digest, size) = tokio::task::spawn_blocking(move || image::file_digest(&path))
        .await
        .map_err(|e| BuildError::Usage(format!("hashing stopped: {e}")))?
        .map_err(io(format!("reading {}", module.display())))?;
    let blob = Blob {
        descriptor: Descriptor::new(media_type::WASM_LAYER, digest, size),
        source: BlobSource::File(module.to_path_buf()),
    };
    let spec = ImageSpec {
        name: plan.package.name.clone(),
        created: opts.source_date_epoch.unwrap_or(0),
        labels: BTreeMap::new(),
        annotations: opts.annotations.clone(),
    };
    Ok(Artifact::Image(assemble_wasm_artifact(&spec, blob)))
}

fn report(
    plan: &PackagePlan,
    artifact: &Artifact,
    wasm: Option<&Artifact>,
    repository: String,
    tags: &[String],
    wasm_tags: &[String],
) -> PackageReport {
    let descriptor = artifact.descriptor();
    PackageReport {
        import_path: plan.package.import_path.clone(),
        reference: format!("{repository}@{}", descriptor.digest),
        repository,
        digest: descriptor.digest.clone(),
        media_type: descriptor.media_type.clone(),
        tags: tags.to_vec(),
        platforms: artifact
            .images()
            .iter()
            .map(|i| PlatformReport {
                platform: i.platform.to_string(),
                digest: i.descriptor.digest.clone(),
                config_digest: i.config.descriptor.digest.clone(),
                layers: i
                    .layers
                    .iter()
                    .map(|l| LayerReport {
                        digest: l.descriptor.digest.clone(),
                        size: l.descriptor.size,
                        media_type: l.descriptor.media_type.clone(),
                    })
                    .collect(),
                base_digest: i.base_digest.clone(),
            })
            .collect(),
        base_image: plan.base.as_ref().map(|(name, r)| BaseReport {
            name: name.clone(),
            digest: r.digest.clone(),
        }),
        wasm_artifact: wasm.map(|w| WasmArtifactReport {
            digest: w.descriptor().digest.clone(),
            tags: wasm_tags.to_vec(),
        }),
        sboms: Vec::new(),
        attachments: Vec::new(),
    }
}

fn sbom_report(doc: &SbomDocument, file: Option<PathBuf>) -> SbomReport {
    SbomReport {
        subject: doc.subject.clone(),
        platform: doc
            .platform
            .as_ref()
            .map_or("index".into(), Platform::to_string),
        format: format!("{:?}", doc.format).to_lowercase(),
        file,
    }
}

/// Reads each built binary's Go build info (wasm has no Go version in it: the
/// toolchain that built it supplies that).
async fn read_build_infos(
    binaries: &[Vec<(Platform, PathBuf)>],
    go_version: &str,
) -> Result<Vec<Vec<BuildInfo>>, BuildError> {
    let binaries = binaries.to_vec();
    let go_version = go_version.to_string();
    tokio::task::spawn_blocking(move || {
        binaries
            .iter()
            .map(|per_package| {
                per_package
                    .iter()
                    .map(|(_, path)| {
                        let mut info = BuildInfo::read(path)?;
                        if info.go_version.is_empty() {
                            info.go_version = go_version.clone();
                        }
                        Ok(info)
                    })
                    .collect()
            })
            .collect()
    })
    .await
    .map_err(|e| BuildError::Usage(format!("reading build info stopped: {e}")))?
}

/// Writes SBOMs to `dir` (when given) as `<name>-<platform|index>.<format>.json`.
fn write_sboms(
    dir: Option<&Path>,
    name: &str,
    docs: Vec<SbomDocument>,
) -> Result<Vec<(SbomDocument, Option<PathBuf>)>, BuildError> {
    let Some(dir) = dir else {
        return Ok(docs.into_iter().map(|d| (d, None)).collect());
    };
    std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    docs.into_iter()
        .map(|doc| {
            let which = doc
                .platform
                .as_ref()
                .map_or("index".to_string(), |p| p.to_string().replace('/', "-"));
            let path = dir.join(format!("{name}-{which}.{}", doc.format.file_suffix()));
            std::fs::write(&path, &doc.json).map_err(io(format!("writing {}", path.display())))?;
            Ok((doc, Some(path)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_follow_the_oci_grammar() {
        assert!(check_tag("v1.2.3").is_ok());
        assert!(check_tag("latest").is_ok());
        assert!(check_tag("_x").is_ok());
        assert!(check_tag("-x").is_err());
        assert!(check_tag("a/b").is_err());
        assert!(check_tag("a\nb").is_err());
        assert!(check_tag(&"a".repeat(129)).is_err());
    }
}

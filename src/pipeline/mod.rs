//! `gantry build` as a library call: resolve packages, platforms and bases; run the
//! Go builds in parallel; assemble images and indexes; publish; report.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::attest;
use crate::attest::provenance::{self, BuildFacts};
use crate::attest::sbom::SbomFormat;
use crate::base::{self, BaseError, ResolvedBase};
use crate::config::{BuildSettings, Config, ConfigError, LoadedConfig, TemplateData};
use crate::gobuild::buildinfo::{BuildInfo, BuildInfoError};
use crate::gobuild::{BuildJob, GoError, GoToolchain, Package};
use crate::image::{self, Artifact};
use crate::platform::{Platform, PlatformError, PlatformRequest, WasmOs};
use crate::publish::{
    self, ImageName, LayoutPublisher, PublishError, PublishStats, Registry, RegistryOptions,
};
use crate::sign::{Attachment, SignError, Signing};

mod assemble;
mod deliver;
mod report;

use assemble::{assemble_package, wasm_artifact};

pub use crate::report::{
    BaseReport, BuildReport, LayerReport, PackageReport, PlatformReport, SbomReport,
    WasmArtifactReport,
};
use deliver::{add, requests_for, Delivery};
use report::{check_writable, report, sbom_report, write_report, write_sboms};

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

/// One package's plan: what to build it for and on what.
#[derive(Clone)]
struct PackagePlan {
    package: Package,
    settings: BuildSettings,
    platforms: Vec<Platform>,
    base: Option<(String, Arc<ResolvedBase>)>,
}

/// Asks every destination repository, without writing, whether this run may push.
async fn check_destinations(
    registry: &Registry,
    repos: &[ImageName],
    tag: &str,
) -> Result<(), BuildError> {
    futures::future::try_join_all(repos.iter().map(|r| registry.check_push_access(r, tag))).await?;
    Ok(())
}

/// Runs the whole build. `progress` receives one line per step, for stderr.
pub async fn build(
    opts: &BuildOptions,
    progress: &Progress<'_>,
) -> Result<BuildReport, BuildError> {
    let mut tags = if opts.tags.is_empty() {
        vec!["latest".to_string()]
    } else {
        opts.tags.clone()
    };
    let mut seen = HashSet::new();
    tags.retain(|t| seen.insert(t.clone()));
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
        // `./cmd/app` and `example.com/cmd/app` are one package: built and pushed once.
        if resolved
            .iter()
            .any(|(p, _): &(Package, _)| p.dir == package.dir)
        {
            continue;
        }
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
    // Where each package goes: REPO, or REPO/<name> when there are several.
    let registry_repos: Vec<ImageName> = match &destination {
        Some(dest) if resolved.len() > 1 => resolved
            .iter()
            .map(|(package, _)| dest.join(&package.name))
            .collect(),
        Some(dest) => vec![dest.clone()],
        None => Vec::new(),
    };
    for repo in &registry_repos {
        registry.declare(repo, true);
    }

    let work = tempfile::Builder::new()
        .prefix("gantry-")
        .tempdir()
        .map_err(io("creating a work directory"))?;
    let _remove_on_signal = crate::cleanup::Removal::new(work.path());
    let mut plans: Vec<PackagePlan> = resolved
        .into_iter()
        .map(|(package, settings)| PackagePlan {
            package,
            settings,
            platforms: Vec::new(),
            base: None,
        })
        .collect();
    // While the first go build runs, the destination is asked whether this run may push.
    let access = check_destinations(&registry, &registry_repos, &tags[0]);
    let binaries = match &request {
        // The platforms come from the bases: resolve them, then build.
        PlatformRequest::All { .. } => {
            futures::try_join!(
                plan_bases(&registry, &request, &base_refs, &mut plans, &go, progress),
                access,
            )?;
            run_builds(&go, &plans, work.path(), opts.jobs, progress).await?
        }
        // The platforms are the listed ones: build while the bases resolve.
        PlatformRequest::List(_) => {
            let (linux, wasm) = split_request(&request);
            for plan in &mut plans {
                plan.platforms = linux.iter().chain(&wasm).cloned().collect();
            }
            let building = plans.clone();
            let (binaries, (), ()) = futures::try_join!(
                run_builds(&go, &building, work.path(), opts.jobs, progress),
                plan_bases(&registry, &request, &base_refs, &mut plans, &go, progress),
                access,
            )?;
            binaries
        }
    };
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
    let repos_in_registry: Vec<String> = registry_repos.iter().map(|r| r.to_string()).collect();
    let sbom_names: Vec<String> = plans
        .iter()
        .enumerate()
        .map(|(i, p)| {
            repos_in_registry
                .get(i)
                .cloned()
                .unwrap_or_else(|| p.package.name.clone())
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
        signing: opts.signing.as_ref(),
        keyless_signer: tokio::sync::OnceCell::new(),
        provenance: provenance.as_ref(),
        legacy_attestations: opts.legacy_attestations,
        created: opts.source_date_epoch.unwrap_or(0),
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
    let layout_publisher = layout_dir
        .as_deref()
        .map(|dir| LayoutPublisher::create(dir, Some(&registry)))
        .transpose()?;

    let mut stats = PublishStats::default();
    let mut attachments: Vec<Vec<Attachment>> = vec![Vec::new(); plans.len()];
    let mut new_in_registry = HashSet::new();
    let mut new_in_layout = HashSet::new();
    if let Some(dest) = &destination {
        progress(Phase::Publish, &format!("pushing to {dest}"));
        let delivered = delivery
            .deliver(&registry, &repos_in_registry, progress)
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
        let delivered = delivery.deliver(layout, &repos_in_layout, progress).await?;
        add(&mut stats, delivered.stats);
        if destination.is_none() {
            attachments = delivered.attachments;
        }
        new_in_layout = delivered.new;
    }

    let signer = delivery.signer_identity();
    drop(delivery);
    let mut reports = Vec::new();
    for (i, (((plan, (artifact, wasm)), sboms), attached)) in plans
        .iter()
        .zip(&artifacts)
        .zip(sboms)
        .zip(attachments)
        .enumerate()
    {
        let repository = repos_in_registry.get(i).cloned().unwrap_or_else(|| {
            format!(
                "oci:{}",
                layout_dir.as_deref().unwrap_or(Path::new(".")).display()
            )
        });
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
        publish::apply_tags(&registry, requests, &new_in_registry).await?;
    }
    if let (Some(layout), Some(requests)) = (&layout_publisher, &layout_requests) {
        publish::apply_tags(layout, requests, &new_in_layout).await?;
    }
    Ok(report)
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

/// Fills each plan's platforms and base (its Linux images' base, resolved).
async fn plan_bases(
    registry: &Registry,
    request: &PlatformRequest,
    base_refs: &[String],
    plans: &mut [PackagePlan],
    go: &GoToolchain,
    progress: &Progress<'_>,
) -> Result<(), BuildError> {
    let mut bases: HashMap<String, Arc<ResolvedBase>> = HashMap::new();
    for (plan, base_ref) in plans.iter_mut().zip(base_refs) {
        let (platforms, base) =
            plan_platforms(registry, request, base_ref, &mut bases, progress).await?;
        go.check_platforms(&platforms)?;
        plan.platforms = platforms;
        plan.base = base;
    }
    Ok(())
}

/// The Linux and the wasm platforms a request lists (`all` lists no Linux ones).
fn split_request(request: &PlatformRequest) -> (Vec<Platform>, Vec<Platform>) {
    match request {
        PlatformRequest::List(list) => list.iter().cloned().partition(|p| !p.is_wasm()),
        PlatformRequest::All { wasm } => (Vec::new(), wasm.clone()),
    }
}

/// The platforms one package builds for, and its base resolved for the Linux ones.
async fn plan_platforms(
    registry: &Registry,
    request: &PlatformRequest,
    base_ref: &str,
    cache: &mut HashMap<String, Arc<ResolvedBase>>,
    progress: &Progress<'_>,
) -> Result<(Vec<Platform>, Option<(String, Arc<ResolvedBase>)>), BuildError> {
    let (linux, wasm) = split_request(request);
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

//! The plan stage: each package's settings, platforms, base image and repository name
//! (gantry's or ko's naming), and the checks that run beside the first builds (the
//! destination may be pushed to).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{BuildError, BuildOptions, PackagePlan, Phase, Progress, DEFAULT_BASE};
use crate::base::{self, ResolvedBase};
use crate::config::{BuildSettings, LoadedConfig, TemplateData};
use crate::gobuild::{self, GoError, GoToolchain, Package};
use crate::platform::{Platform, PlatformRequest};
use crate::publish::{ImageName, Registry};

/// Asks every destination repository, without writing, whether this run may push.
pub(super) async fn check_destinations(
    registry: &Registry,
    repos: &[ImageName],
    tag: &str,
) -> Result<(), BuildError> {
    futures::future::try_join_all(repos.iter().map(|r| registry.check_push_access(r, tag))).await?;
    Ok(())
}

/// What the config gives the package in `dir`, before templates and the command
/// line's additions.
pub(super) fn settings_for(
    config: Option<&LoadedConfig>,
    dir: &Path,
) -> Result<BuildSettings, BuildError> {
    Ok(match config {
        Some(c) => c.settings_for(dir)?,
        None => BuildSettings::default(),
    })
}

/// `settings` with the command line's `-ldflags` and go flags added (after the
/// config's, and after its templates are rendered: those are not templates).
pub(super) fn with_command_line(mut settings: BuildSettings, opts: &BuildOptions) -> BuildSettings {
    settings.ldflags.extend(opts.ldflags.iter().cloned());
    settings.flags.extend(opts.go_flags.iter().cloned());
    settings
}

/// The directories of the packages named, when the builds may start before `go list`
/// answers, and the settings every one of them gets: each is named by directory (or
/// by an import path go.mod maps to one), the platforms are listed, and the config
/// (if any) has no per-package builds or templates, so the settings cannot depend on
/// what `go list` will say. A build started on a guess is used only if `go list`
/// names the same directory.
pub(super) fn early_builds(
    opts: &BuildOptions,
    config: Option<&LoadedConfig>,
    request: &PlatformRequest,
    packages: &[String],
) -> Option<(Vec<PathBuf>, BuildSettings)> {
    if !matches!(request, PlatformRequest::List(_))
        || config.is_some_and(|c| !c.config.builds.is_empty())
    {
        return None;
    }
    let settings = settings_for(config, &opts.workdir).ok()?;
    if settings.has_templates() {
        return None;
    }
    let mut dirs: Vec<PathBuf> = Vec::new();
    for arg in packages {
        let arg = arg.strip_prefix("ko://").unwrap_or(arg);
        // As `gobuild::resolve` tells a directory from an import path.
        let dir = match opts.workdir.join(arg) {
            dir if dir.is_dir() => dir,
            _ => gobuild::guess_package_dir(&opts.workdir, arg)?,
        };
        let dir = std::fs::canonicalize(&dir).ok().filter(|d| d.is_dir())?;
        if !declares_main(&dir) {
            return None;
        }
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }
    Some((dirs, with_command_line(settings, opts)))
}

/// Whether a `.go` file in `dir` (not a test) has the package clause `package main`
/// (read up to that clause only): a library is never built on a guess, only once
/// `go list` says it is `main` (which it then refuses).
fn declares_main(dir: &Path) -> bool {
    use std::io::BufRead;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|entry| {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !name.ends_with(".go") || name.ends_with("_test.go") {
            return false;
        }
        let Ok(file) = std::fs::File::open(entry.path()) else {
            return false;
        };
        let clause = std::io::BufReader::new(file)
            .lines()
            .map_while(Result::ok)
            .find_map(|line| line.strip_prefix("package ").map(str::to_string));
        clause.is_some_and(|rest| rest.split(['/', ' ', '\t']).next() == Some("main"))
    })
}

/// Every base image the options and the config name, checked as references before
/// anything runs (which package gets which is known only once they are looked up).
pub(super) fn check_bases(
    opts: &BuildOptions,
    config: Option<&LoadedConfig>,
) -> Result<(), BuildError> {
    let from_config = config.into_iter().flat_map(|c| {
        c.config
            .default_base_image
            .iter()
            .chain(c.config.base_image_overrides.values())
    });
    for base in [&opts.base, &opts.default_base]
        .into_iter()
        .flatten()
        .chain(from_config)
        .filter(|b| *b != "scratch")
    {
        crate::publish::parse_reference(base)?;
    }
    Ok(())
}

/// One plan per package found (a package named twice is planned once): its settings
/// (the config's, templates rendered, the command line's added) and its repository
/// names; platforms and base come later.
pub(super) fn plan_packages(
    opts: &BuildOptions,
    config: Option<&LoadedConfig>,
    found: Vec<Result<Package, GoError>>,
    destination: Option<&ImageName>,
) -> Result<Vec<PackagePlan>, BuildError> {
    // Gathered (three git calls) only when some setting has a template.
    let mut template_data: Option<TemplateData> = None;
    let mut resolved: Vec<(Package, BuildSettings)> = Vec::new();
    for package in found {
        let package = package?;
        // `./cmd/app` and `example.com/cmd/app` are one package: built and pushed once.
        if resolved.iter().any(|(p, _)| p.dir == package.dir) {
            continue;
        }
        let settings = settings_for(config, &package.dir)?;
        let settings = if settings.has_templates() {
            let data = template_data.get_or_insert_with(|| {
                TemplateData::gather(&opts.workdir, opts.source_date_epoch, &opts.go)
            });
            settings.render(data)?
        } else {
            settings
        };
        resolved.push((package, with_command_line(settings, opts)));
    }
    let (count, multi) = (resolved.len(), resolved.len() > 1);
    Ok(resolved
        .into_iter()
        .map(|(package, settings)| PackagePlan {
            registry_repo: destination.map(|dest| opts.naming.repository(dest, &package, count)),
            layout_repo: if multi {
                package.name.clone()
            } else {
                String::new()
            },
            package,
            settings,
            platforms: Vec::new(),
            base: None,
        })
        .collect())
}

/// What a package's Linux images are built on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Base {
    /// Nothing: the image holds the program's layer alone.
    Scratch,
    /// An image reference, resolved from the registry.
    Image(String),
}

impl Base {
    /// The reference, unless the base is scratch.
    pub(super) fn image(&self) -> Option<&str> {
        match self {
            Base::Scratch => None,
            Base::Image(reference) => Some(reference),
        }
    }
}

/// The base for a package: --base, else the config's (KO_DEFAULTBASEIMAGE beating
/// its default, not its overrides), else gantry's default. `scratch` names none.
pub(super) fn base_for(
    opts: &BuildOptions,
    config: Option<&LoadedConfig>,
    import_path: &str,
) -> Base {
    let default = opts.default_base.as_deref();
    let text = opts
        .base
        .clone()
        .or_else(|| match config {
            Some(c) => c
                .config
                .base_image_for(import_path, default)
                .map(str::to_string),
            None => default.map(str::to_string),
        })
        .unwrap_or_else(|| DEFAULT_BASE.to_string());
    match text.as_str() {
        "scratch" => Base::Scratch,
        _ => Base::Image(text),
    }
}

/// Fills each plan's platforms and base (its Linux images' base, resolved).
pub(super) async fn plan_bases(
    registry: &Registry,
    request: &PlatformRequest,
    bases: &[Base],
    plans: &mut [PackagePlan],
    go: &GoToolchain,
    progress: &Progress<'_>,
) -> Result<(), BuildError> {
    let mut resolved: HashMap<String, Arc<ResolvedBase>> = HashMap::new();
    for (plan, base) in plans.iter_mut().zip(bases) {
        let (platforms, base) =
            plan_platforms(registry, request, base, &mut resolved, progress).await?;
        go.check_platforms(&platforms)?;
        plan.platforms = platforms;
        plan.base = base;
    }
    Ok(())
}

/// The Linux and the wasm platforms a request lists (`all` lists no Linux ones).
pub(super) fn split_request(request: &PlatformRequest) -> (Vec<Platform>, Vec<Platform>) {
    match request {
        PlatformRequest::List(list) => list.iter().cloned().partition(|p| !p.is_wasm()),
        PlatformRequest::All { wasm } => (Vec::new(), wasm.clone()),
    }
}

/// The platforms one package builds for, and its base resolved for the Linux ones.
async fn plan_platforms(
    registry: &Registry,
    request: &PlatformRequest,
    base: &Base,
    cache: &mut HashMap<String, Arc<ResolvedBase>>,
    progress: &Progress<'_>,
) -> Result<(Vec<Platform>, Option<(String, Arc<ResolvedBase>)>), BuildError> {
    let (linux, wasm) = split_request(request);
    let wants_linux = matches!(request, PlatformRequest::All { .. }) || !linux.is_empty();
    if !wants_linux {
        return Ok((wasm, None));
    }
    let Base::Image(base_ref) = base else {
        if matches!(request, PlatformRequest::All { .. }) {
            return Err(BuildError::Usage(
                "--platform all takes its platforms from the base image, but the base is scratch; list the platforms instead".into(),
            ));
        }
        return Ok((linux.into_iter().chain(wasm).collect(), None));
    };
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

/// How each package's repository is named under the destination REPO: gantry's
/// way, or one of ko's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Naming {
    /// REPO for one package, REPO/<name> for several.
    #[default]
    Gantry,
    /// REPO for every package (ko's `--bare`).
    Bare,
    /// REPO/<import path> (ko's `-P`).
    ImportPath,
    /// REPO/<last element of the import path> (ko's `-B`).
    LastElement,
    /// REPO/<last element>-<md5 of the import path> (ko's default).
    Md5Suffixed,
}

impl Naming {
    /// The repository of `package` under `dest`, among `count` packages. ko names
    /// from the import path in lowercase, as registries require.
    pub(super) fn repository(self, dest: &ImageName, package: &Package, count: usize) -> ImageName {
        use md5::Digest as _;
        let path = package.import_path.to_lowercase();
        let last = path.rsplit('/').next().unwrap_or(&path).to_string();
        match self {
            Naming::Gantry if count > 1 => dest.join(&package.name),
            Naming::Gantry | Naming::Bare => dest.clone(),
            Naming::ImportPath => dest.join(&path),
            Naming::LastElement => dest.join(&last),
            Naming::Md5Suffixed => dest.join(&format!(
                "{last}-{}",
                hex::encode(md5::Md5::digest(path.as_bytes()))
            )),
        }
    }
}

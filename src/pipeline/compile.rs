//! The compile stage: every `go build` (one per package and distinct GOOS/GOARCH/
//! variant), `jobs` at a time. As soon as one ends, its layer is written and its Go
//! build info read, off the async threads, while the other builds run. When the
//! images go to a registry and go wrote the binary anew, the layer's upload starts
//! with its compression and follows it (POST, a PATCH streaming the file as it grows,
//! PUT once the digest is known, or nothing more if a HEAD then finds the registry has
//! it), so on a slow link the upload overlaps the compression instead of following
//! it, and on any link it overlaps the builds still running. When go left the binary
//! as it was, the layer is uploaded after it is written only if it differs from the
//! one this output had last run; a layer seen before is left to the publish stage,
//! which skips whole images the registry already has without asking about each blob.
//! Either way the registry client remembers the upload: publishing waits for it, and
//! sends the blob itself if it failed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::Semaphore;

use super::assemble::app_layer_entries;
use super::outputs::{self, identity, note_layer, output_path};
use super::{io, BuildError, Compiled, PackagePlan, Phase, Progress};
use crate::config::BuildSettings;
use crate::gobuild::buildinfo::BuildInfo;
use crate::gobuild::{BuildJob, GoError, GoToolchain};
use crate::image;
use crate::platform::Platform;
use crate::publish::{Publisher, Registry};

/// What the compile stage needs besides the plans.
pub(super) struct CompileOptions<'a> {
    pub(super) go: &'a GoToolchain,
    /// Where outputs are kept between runs (see `output_dir`).
    pub(super) cache_dir: Option<&'a Path>,
    pub(super) work: &'a Path,
    pub(super) jobs: usize,
    /// The machine's cores, shared among the builds that run at once.
    pub(super) cores: usize,
    /// File time in layers.
    pub(super) mtime: u64,
    /// Read each binary's build info (for SBOMs).
    pub(super) build_info: bool,
    /// The registry the images go to, when they go to one.
    pub(super) registry: Option<Arc<Registry>>,
}

/// A task beside the stages that stops when dropped (on an early return): a layer
/// upload, a go build started early, the packages' lookups.
pub(super) struct Background<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for Background<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<T: Send + 'static> Background<T> {
    pub(super) fn spawn(task: impl std::future::Future<Output = T> + Send + 'static) -> Self {
        Background(tokio::spawn(task))
    }

    /// Waits for the task's outcome.
    pub(super) async fn join(mut self, what: &'static str) -> Result<T, BuildError> {
        (&mut self.0)
            .await
            .map_err(|source| BuildError::Stopped { what, source })
    }
}

/// A layer upload running in the background.
pub(super) type Upload = Background<()>;

/// Builds every plan's platforms; returns, per plan, each platform's build in the
/// plan's order, and the layer uploads under way. Platforms that build the same
/// binary (wasi/wasm and wasip1/wasm) share one build and one layer.
pub(super) async fn compile(
    options: &CompileOptions<'_>,
    plans: &[PackagePlan],
    mut early: HashMap<PathBuf, EarlyBuild>,
    progress: &Progress<'_>,
) -> Result<(Vec<Vec<Compiled>>, Vec<Upload>), BuildError> {
    let limit = Semaphore::new(options.jobs.max(1));
    // One task per distinct binary; per plan, each platform's task.
    let mut tasks: Vec<(&PackagePlan, &Platform, PathBuf)> = Vec::new();
    let mut task_of: Vec<Vec<usize>> = Vec::new();
    for plan in plans {
        let mut seen: HashMap<Vec<(&str, String)>, usize> = HashMap::new();
        let mut per_platform = Vec::new();
        for platform in &plan.platforms {
            let env = platform.go_env();
            let task = match seen.get(&env) {
                Some(task) => *task,
                None => {
                    let out = output_path(
                        options.cache_dir.unwrap_or(options.work),
                        &options.go.version_string,
                        &plan.package.dir,
                        &env,
                        &plan.settings,
                        platform.is_wasm(),
                    )?;
                    tasks.push((plan, platform, out));
                    seen.insert(env, tasks.len() - 1);
                    tasks.len() - 1
                }
            };
            per_platform.push(task);
        }
        task_of.push(per_platform);
    }
    // Builds started before the packages were looked up go on as theirs; any other
    // stops now.
    let adopted: Vec<Option<EarlyBuild>> =
        tasks.iter().map(|(_, _, out)| early.remove(out)).collect();
    drop(early);
    let procs = procs_per_build(options.cores, options.jobs.max(1).min(tasks.len()));
    let builds = tasks
        .iter()
        .zip(adopted)
        .map(|((plan, platform, out), started)| {
            build_one(
                options,
                &limit,
                (plan, platform, out),
                started,
                procs,
                progress,
            )
        });
    let (built, uploads): (Vec<_>, Vec<_>) = futures::future::try_join_all(builds)
        .await?
        .into_iter()
        .map(|(layer, info, upload)| ((layer, info), upload))
        .unzip();
    if let Some(cache) = options.cache_dir {
        let cache = cache.to_path_buf();
        let in_use: Vec<PathBuf> = tasks
            .iter()
            .filter_map(|(_, _, out)| Some(out.parent()?.to_path_buf()))
            .collect();
        let now = std::time::SystemTime::now();
        // Only a sweep: whether it ran does not matter to this build.
        let _ = tokio::task::spawn_blocking(move || outputs::trim(&cache, now, &in_use)).await;
    }
    let compiled = plans
        .iter()
        .zip(task_of)
        .map(|(plan, per_platform)| {
            plan.platforms
                .iter()
                .zip(per_platform)
                .map(|(platform, task)| {
                    let (layer, build_info) = built[task].clone();
                    Compiled {
                        platform: platform.clone(),
                        binary: tasks[task].2.clone(),
                        layer,
                        build_info,
                    }
                })
                .collect()
        })
        .collect();
    Ok((compiled, uploads.into_iter().flatten().collect()))
}

/// What one build gives: its layer (and diff_id), build info, and upload under way.
type Built = (
    (image::Blob, image::Digest),
    Option<BuildInfo>,
    Option<Upload>,
);

/// One `go build` (of `plan` for `platform` into `out`; `started` already, or not),
/// then its layer and build info.
async fn build_one(
    options: &CompileOptions<'_>,
    limit: &Semaphore,
    (plan, platform, out): (&PackagePlan, &Platform, &Path),
    started: Option<EarlyBuild>,
    procs: Option<usize>,
    progress: &Progress<'_>,
) -> Result<Built, BuildError> {
    // The semaphore is never closed, so acquiring cannot fail.
    let _permit = limit.acquire().await.ok();
    progress(
        Phase::Build,
        &format!("building {} for {platform}", plan.package.import_path),
    );
    let import_path = &plan.package.import_path;
    let before = match started {
        Some(build) => adopt(build, import_path).await?,
        None => {
            let before = identity(out);
            options
                .go
                .build(&BuildJob {
                    target: import_path,
                    platform,
                    dir: plan.settings.dir.as_deref().unwrap_or(&plan.package.dir),
                    env: &plan.settings.env,
                    flags: &plan.settings.flags,
                    ldflags: &plan.settings.ldflags,
                    out,
                    procs,
                })
                .await?;
            before
        }
    };
    let destination = match (&options.registry, &plan.registry_repo) {
        (Some(registry), Some(repo)) => Some((registry.clone(), repo.clone())),
        _ => None,
    };
    // A binary go wrote anew makes a layer the registry has not seen: it is sent while
    // it is compressed. (Go only touches an output that is up to date, and it writes a
    // new one to a new file, unless it must copy across file systems: then the size
    // tells, or the layer is sent once whole, as below.)
    let relinked = before != identity(out);
    let (layer_file, growth, streaming) = match &destination {
        Some((registry, repo)) if relinked => {
            let (file, growth, follower) =
                image::growing(options.work).map_err(io("creating a layer file"))?;
            let (ends, outcome) = tokio::sync::oneshot::channel();
            let (registry, repo) = (registry.clone(), repo.clone());
            let task = Background::spawn(async move {
                registry.push_growing_blob(&repo, follower, ends).await;
            });
            (file, Some(growth), Some((task, outcome)))
        }
        _ => {
            let file =
                image::LayerFile::create_in(options.work).map_err(io("creating a layer file"))?;
            (file, None, None)
        }
    };
    let entries = app_layer_entries(&plan.package.name, platform, out);
    let (binary, mtime) = (out.to_path_buf(), options.mtime);
    let (read_info, go_version) = (options.build_info, options.go.version_string.clone());
    let (layer, info) = tokio::task::spawn_blocking(move || {
        let layer = image::write_layer(layer_file, &entries, mtime, growth)
            .map_err(io("writing a layer"))?;
        let info = read_info
            .then(|| {
                // wasm has no Go version in it: the toolchain that built it supplies it.
                BuildInfo::read(&binary).map(|mut info| {
                    if info.go_version.is_empty() {
                        info.go_version = go_version;
                    }
                    info
                })
            })
            .transpose()?;
        Ok::<_, BuildError>((layer, info))
    })
    .await
    .map_err(|source| BuildError::Stopped {
        what: "writing a layer",
        source,
    })??;
    let digest = &layer.0.descriptor.digest;
    let new = note_layer(out, digest);
    let upload = match (destination, streaming) {
        (Some((registry, repo)), Some((task, outcome))) => {
            registry.upload_under_way(&repo, digest, outcome);
            Some(task)
        }
        (Some((registry, repo)), None) if new => {
            let blob = layer.0.clone();
            // Its outcome is the registry client's to remember: publishing waits for
            // it, or sends the blob itself if it failed.
            Some(Background::spawn(async move {
                let _ = registry.push_blob(&repo.to_string(), &blob).await;
            }))
        }
        _ => None,
    };
    Ok((layer, info, upload))
}

/// The cores each of `at_once` builds running together gets, when that is fewer than
/// all. Go sizes its compiler's and linker's parallelism and its garbage collector to
/// GOMAXPROCS; builds that each size themselves to the whole machine while sharing it
/// lose time to one another (two parallel builds of a 47 MB program on 2 cores took
/// 6% less time with one core each, of a hello-world 10% less).
fn procs_per_build(cores: usize, at_once: usize) -> Option<usize> {
    Some((cores / at_once.max(1)).max(1)).filter(|&procs| procs < cores)
}

/// A `go build` started before its package was looked up: the output's identity
/// before it, and how it ended.
pub(super) type EarlyBuild = Background<(Option<(u64, u64, u64)>, Result<(), GoError>)>;

/// Waits for a build started early; returns the output's identity before it. A
/// failure names the package by its import path, as any build's does.
async fn adopt(
    build: EarlyBuild,
    import_path: &str,
) -> Result<Option<(u64, u64, u64)>, BuildError> {
    let (before, built) = build.join("a go build").await?;
    built.map_err(|e| match e {
        GoError::Compile {
            platform,
            dir,
            stderr,
            ..
        } => GoError::Compile {
            import_path: import_path.to_string(),
            platform,
            dir,
            stderr,
        },
        other => other,
    })?;
    Ok(before)
}

/// Starts the builds of the packages in `dirs` (known before the lookup, so `go build .`
/// there builds what it will name, if it names the same directory) for `platforms`,
/// as many as `jobs`, while `go list` still runs: `settings` must be what every
/// package gets (no per-package config). The compile stage adopts each by its output,
/// and starts the rest.
pub(super) fn start_early(
    go: &GoToolchain,
    (root, jobs, cores): (&Path, usize, usize),
    dirs: &[PathBuf],
    settings: &BuildSettings,
    platforms: &[Platform],
) -> Result<HashMap<PathBuf, EarlyBuild>, BuildError> {
    let mut wanted: Vec<(&PathBuf, &Platform)> = Vec::new();
    for dir in dirs {
        let mut seen = Vec::new();
        for platform in platforms {
            let env = platform.go_env();
            if !seen.contains(&env) {
                seen.push(env);
                wanted.push((dir, platform));
            }
        }
    }
    // The first `jobs` of them, as the compile stage would start them.
    let at_once = jobs.max(1).min(wanted.len());
    let procs = procs_per_build(cores, at_once);
    wanted.truncate(at_once);
    let mut started = HashMap::new();
    for (dir, platform) in wanted {
        let env = platform.go_env();
        let out = output_path(
            root,
            &go.version_string,
            dir,
            &env,
            settings,
            platform.is_wasm(),
        )?;
        let (go, dir, settings, platform, target) = (
            go.clone(),
            dir.clone(),
            settings.clone(),
            platform.clone(),
            out.clone(),
        );
        let task = Background::spawn(async move {
            let before = identity(&target);
            let built = go
                .build(&BuildJob {
                    target: ".",
                    platform: &platform,
                    dir: &dir,
                    env: &settings.env,
                    flags: &settings.flags,
                    ldflags: &settings.ldflags,
                    out: &target,
                    procs,
                })
                .await;
            (before, built)
        });
        started.insert(out, task);
    }
    Ok(started)
}

#[cfg(test)]
mod tests {
    use super::procs_per_build;

    #[test]
    fn builds_running_together_share_the_cores() {
        assert_eq!(procs_per_build(2, 2), Some(1));
        assert_eq!(procs_per_build(2, 3), Some(1));
        assert_eq!(procs_per_build(8, 2), Some(4));
        assert_eq!(procs_per_build(8, 3), Some(2));
        // Alone, or on one core, a build has the machine as Go would size it.
        assert_eq!(procs_per_build(8, 1), None);
        assert_eq!(procs_per_build(1, 2), None);
    }
}

//! `gantry merge`: one multi-platform index out of images that separate jobs pushed
//! by digest (`gantry build --push-by-digest`, one platform per CI runner, say).
//!
//! The jobs' `--json` reports say which manifest each platform got. Every one is
//! fetched back from the repository (so a job that never pushed is caught before
//! anything is written), the index is assembled by the same code a build uses, in
//! platform order whatever the order of the reports, and pushed. Then the index and
//! every manifest in it are signed and attested from what the images hold, as
//! `gantry sign` does (or, without signing, the SBOMs and provenance are attached
//! unsigned, as a build does), and only then may the caller move the tags
//! ([`Merged::move_tags`]), so a tag never names an index that is half signed.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use futures::{StreamExt, TryStreamExt};
use serde::Deserialize;
use serde_json::Value;

use crate::attest::SbomDocument;
use crate::image::{
    self, annotation, media_type, Artifact, Blob, BlobSource, Descriptor, Digest, Image,
};
use crate::pipeline::{tags_to_apply, BuildError, Phase, Progress};
use crate::platform::Platform;
use crate::publish::{self, ImageName, PublishError, PublishRequest, Registry, RegistryOptions};
use crate::report::{BaseReport, BuildReport, PackageReport, PlatformReport};
use crate::sign::published::{self, ClaimOptions};
use crate::sign::{self, Attachment, SignError, Signer, Signing};

#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("no reports to merge: pass --from FILE for each job's `gantry build --json` report")]
    NoReports,
    #[error("reading the report {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not a report of `gantry build --json`: {detail}", path.display())]
    NotAReport { path: PathBuf, detail: String },
    #[error("{} has no image in {repo} (it has: {found}); merge with the --repo the job pushed to", path.display())]
    NoImage {
        path: PathBuf,
        repo: String,
        found: String,
    },
    #[error("the reports are of different programs ({0}); an index holds one program, built for several platforms")]
    Programs(String),
    #[error("two images for {platform}: {first} from {} and {second} from {}; an index holds one image per platform (drop one of the reports, or rebuild)", first_report.display(), second_report.display())]
    Conflict {
        platform: String,
        first: Digest,
        first_report: PathBuf,
        second: Digest,
        second_report: PathBuf,
    },
    #[error("{repo} lacks images the reports name, so nothing was pushed and no tag moved:\n{missing}\n(did those jobs push to {repo}, and finish?)")]
    Missing { repo: String, missing: String },
    #[error("{reference} ({platform}, from {}) is {found}, not an image manifest", report.display())]
    NotAnImage {
        reference: String,
        platform: String,
        report: PathBuf,
        found: String,
    },
    #[error("{reference} (from {}) is reported as {reported}, but its config says {actual}", report.display())]
    WrongPlatform {
        reference: String,
        report: PathBuf,
        reported: String,
        actual: String,
    },
    #[error(transparent)]
    Tag(BuildError),
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error("the index is pushed as {pushed}, but signing, attesting or attaching to it failed, so no tag was moved.\nFix the cause, then run the same merge again (it pushes nothing again), or `gantry sign {pushed}` with the same signing options")]
    Sign {
        pushed: String,
        #[source]
        source: Box<SignError>,
    },
}

/// Everything `gantry merge` takes.
pub struct MergeOptions<'a> {
    /// The repository the jobs pushed to, where the index goes.
    pub repo: String,
    /// The jobs' `--json` reports.
    pub reports: Vec<PathBuf>,
    /// Tags for the index; empty means `latest`.
    pub tags: Vec<String>,
    /// Annotations of the index itself (the images keep their own).
    pub annotations: BTreeMap<String, String>,
    /// How to sign; None attaches the SBOMs and provenance unsigned.
    pub signing: Option<Signing>,
    /// SBOM formats, provenance, and the time and source they record.
    pub claims: ClaimOptions<'a>,
    /// Also store attestations under the legacy `.att` tag.
    pub legacy_attestations: bool,
    pub registries: RegistryOptions,
}

/// The fields of a build report that merging reads.
#[derive(Deserialize)]
struct JobReport {
    images: Vec<JobImage>,
    #[serde(default)]
    go_version: String,
}

#[derive(Deserialize)]
struct JobImage {
    import_path: String,
    repository: String,
    platforms: Vec<PlatformReport>,
    #[serde(default)]
    base_image: Option<BaseReport>,
}

/// One platform's image, as a job reported it.
struct Entry {
    platform: Platform,
    digest: Digest,
    /// The report it came from, for errors.
    report: PathBuf,
    facts: PlatformReport,
}

/// What the reports say together: the images by platform (sorted, since a
/// `BTreeMap` keeps its keys in order), and what they share.
struct Gathered {
    entries: BTreeMap<Platform, Entry>,
    import_path: String,
    go_versions: Vec<String>,
    bases: Vec<BaseReport>,
}

/// The index pushed, signed and attested; its tags are still to move.
pub struct Merged {
    registry: Registry,
    repository: String,
    artifact: Artifact,
    tags: Vec<String>,
    /// The index, when this run stored it (a tag cannot point at it yet).
    new: HashSet<Digest>,
    /// What was merged, shaped as a build's report (one package).
    pub report: BuildReport,
}

impl Merged {
    /// Points the tags at the index: the last step, once everything that refers to
    /// it is stored (and the caller has written the report). Returns how many moved.
    pub async fn move_tags(&self) -> Result<usize, MergeError> {
        let request = PublishRequest {
            repository: self.repository.clone(),
            artifact: &self.artifact,
            tags: self.tags.clone(),
        };
        Ok(publish::apply_tags(&self.registry, &[request], &self.new).await?)
    }
}

/// Reads the reports, checks that the repository holds every image they name,
/// pushes one index of them, and signs and attests it and every image (or attaches
/// the SBOMs and provenance unsigned). Moves no tag: see [`Merged::move_tags`].
pub async fn merge(opts: &MergeOptions<'_>, progress: &Progress<'_>) -> Result<Merged, MergeError> {
    let tags = tags_to_apply(&opts.tags).map_err(MergeError::Tag)?;
    let name = ImageName::parse(&opts.repo)?;
    let repository = name.to_string();
    let gathered = gather(&opts.reports, &name)?;

    let registry = Registry::new(&opts.registries)?;
    registry.declare(&name, true);
    progress(
        Phase::Resolve,
        &format!(
            "fetching {} image manifests from {repository}",
            gathered.entries.len()
        ),
    );
    let images = fetch_images(&registry, &name, &gathered).await?;

    let mut annotations = opts.annotations.clone();
    // The base, when every image built on one names the same: as a build of all
    // the platforms in one run would say it.
    if let [base] = gathered.bases.as_slice() {
        annotations.insert(annotation::BASE_NAME.into(), base.name.clone());
        annotations.insert(annotation::BASE_DIGEST.into(), base.digest.to_string());
    }
    let artifact = image::assemble_index(images, annotations);
    let descriptor = artifact.descriptor().clone();
    let pushed = format!("{repository}@{}", descriptor.digest);
    progress(Phase::Publish, &format!("pushing {pushed}"));
    let request = PublishRequest {
        repository: repository.clone(),
        artifact: &artifact,
        tags: tags.clone(),
    };
    let (mut stats, new) = publish::publish(&registry, &[request]).await?;
    stats.tags = tags.len();

    let failed = |source: SignError| MergeError::Sign {
        pushed: pushed.clone(),
        source: Box::new(source),
    };
    let root = artifact.bytes();
    let keyless_signer;
    let signer = match &opts.signing {
        None => None,
        Some(Signing::Key(signer)) => Some(&**signer),
        // Its certificate lives minutes: asked for once the index is pushed.
        Some(Signing::Keyless(keyless)) => {
            progress(
                Phase::Sign,
                &format!(
                    "requesting a signing certificate from {}",
                    keyless.fulcio_url
                ),
            );
            keyless_signer = Signer::keyless(keyless).await.map_err(failed)?;
            Some(&keyless_signer)
        }
    };
    let (attachments, skipped) = attach(&registry, &repository, root, opts, signer, progress)
        .await
        .map_err(failed)?;
    for note in &skipped {
        progress(Phase::Sign, note);
    }

    let report = BuildReport {
        images: vec![PackageReport {
            import_path: gathered.import_path,
            reference: pushed,
            repository: repository.clone(),
            digest: descriptor.digest.clone(),
            media_type: descriptor.media_type.clone(),
            tags: tags.clone(),
            platforms: gathered.entries.into_values().map(|e| e.facts).collect(),
            base_image: match gathered.bases.as_slice() {
                [base] => Some(base.clone()),
                _ => None,
            },
            wasm_artifact: None,
            sboms: Vec::new(),
            attachments,
        }],
        publish: stats,
        go_version: gathered.go_versions.join(", "),
        signer: signer.map(Signer::identity),
        registry_requests: registry.request_count(),
    };
    Ok(Merged {
        registry,
        repository,
        artifact,
        tags,
        new,
        report,
    })
}

/// Signs and attests the index or image `root` and every image in it, from what the
/// images hold (or attaches their SBOMs and provenance unsigned when `signer` is
/// None). Returns what was stored, and what has no SBOM and why.
async fn attach(
    registry: &Registry,
    repository: &str,
    root: &[u8],
    opts: &MergeOptions<'_>,
    signer: Option<&Signer>,
    progress: &Progress<'_>,
) -> Result<(Vec<Attachment>, Vec<String>), SignError> {
    let created = opts.claims.created;
    let Some(signer) = signer else {
        let made = published::material(registry, repository, root, &opts.claims).await?;
        progress(
            Phase::Sign,
            &format!("attaching SBOMs and provenance to {repository}, unsigned"),
        );
        let sboms: Vec<&SbomDocument> = made.sboms.iter().collect();
        let attached = sign::store_unsigned(
            registry,
            repository,
            repository,
            &made.subjects,
            &sboms,
            made.provenance.as_ref(),
            created,
        )
        .await?;
        return Ok((attached, made.skipped));
    };
    let (claims, skipped) = published::claims(registry, repository, root, &opts.claims).await?;
    progress(
        Phase::Sign,
        &format!(
            "signing and attesting {repository} ({} items)",
            claims.len()
        ),
    );
    let attached =
        sign::attach(registry, signer, &claims, opts.legacy_attestations, created).await?;
    Ok((attached, skipped))
}

/// The images of `repo` that the reports name, one per platform, and what they share.
fn gather(reports: &[PathBuf], repo: &ImageName) -> Result<Gathered, MergeError> {
    if reports.is_empty() {
        return Err(MergeError::NoReports);
    }
    let mut gathered = Gathered {
        entries: BTreeMap::new(),
        import_path: String::new(),
        go_versions: Vec::new(),
        bases: Vec::new(),
    };
    let mut programs: Vec<String> = Vec::new();
    for path in reports {
        let report = read_report(path)?;
        let ours: Vec<&JobImage> = report
            .images
            .iter()
            .filter(|i| ImageName::parse(&i.repository).is_ok_and(|n| n == *repo))
            .collect();
        if ours.is_empty() {
            let found: Vec<&str> = report
                .images
                .iter()
                .map(|i| i.repository.as_str())
                .collect();
            return Err(MergeError::NoImage {
                path: path.clone(),
                repo: repo.to_string(),
                found: if found.is_empty() {
                    "no image".into()
                } else {
                    found.join(", ")
                },
            });
        }
        if !report.go_version.is_empty() && !gathered.go_versions.contains(&report.go_version) {
            gathered.go_versions.push(report.go_version.clone());
        }
        for image in ours {
            if !programs.contains(&image.import_path) {
                programs.push(image.import_path.clone());
            }
            if let Some(base) = &image.base_image {
                if !gathered
                    .bases
                    .iter()
                    .any(|b| b.name == base.name && b.digest == base.digest)
                {
                    gathered.bases.push(base.clone());
                }
            }
            for facts in &image.platforms {
                add_entry(&mut gathered.entries, entry(path, facts)?)?;
            }
        }
    }
    if programs.len() > 1 {
        return Err(MergeError::Programs(programs.join(", ")));
    }
    gathered.import_path = programs.pop().unwrap_or_default();
    Ok(gathered)
}

fn read_report(path: &Path) -> Result<JobReport, MergeError> {
    let bytes = std::fs::read(path).map_err(|source| MergeError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|e| MergeError::NotAReport {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })
}

fn entry(path: &Path, facts: &PlatformReport) -> Result<Entry, MergeError> {
    let bad = |detail: String| MergeError::NotAReport {
        path: path.to_path_buf(),
        detail,
    };
    Ok(Entry {
        platform: facts.platform.parse().map_err(|e| bad(format!("{e}")))?,
        digest: Digest::parse(&facts.digest).map_err(|e| bad(format!("{e}")))?,
        report: path.to_path_buf(),
        facts: facts.clone(),
    })
}

/// Adds an image; the same image twice (a job rerun, a report given twice) is one.
/// Spellings of one platform (`linux/arm64` and `linux/arm64/v8`) are one platform.
fn add_entry(entries: &mut BTreeMap<Platform, Entry>, new: Entry) -> Result<(), MergeError> {
    match entries
        .values()
        .find(|old| old.platform.matches(&new.platform))
    {
        Some(old) if old.digest == new.digest => Ok(()),
        Some(old) => Err(MergeError::Conflict {
            platform: old.platform.to_string(),
            first: old.digest.clone(),
            first_report: old.report.clone(),
            second: new.digest,
            second_report: new.report,
        }),
        None => {
            entries.insert(new.platform.clone(), new);
            Ok(())
        }
    }
}

/// Requests in flight at once while fetching the images.
const CONCURRENCY: usize = 8;

/// Each reported image as the repository holds it, checked: there, an image
/// manifest, and of the platform reported. Every missing one is named at once.
async fn fetch_images(
    registry: &Registry,
    name: &ImageName,
    gathered: &Gathered,
) -> Result<Vec<Image>, MergeError> {
    let found: Vec<Option<Image>> = futures::stream::iter(gathered.entries.values())
        .map(|entry| fetch_image(registry, name, entry))
        .buffered(CONCURRENCY)
        .try_collect()
        .await?;
    let missing: Vec<String> = gathered
        .entries
        .values()
        .zip(&found)
        .filter(|(_, image)| image.is_none())
        .map(|(e, _)| {
            format!(
                "  {name}@{} ({}, from {})",
                e.digest,
                e.platform,
                e.report.display()
            )
        })
        .collect();
    if !missing.is_empty() {
        return Err(MergeError::Missing {
            repo: name.to_string(),
            missing: missing.join("\n"),
        });
    }
    Ok(found.into_iter().flatten().collect())
}

/// One reported image, fetched by digest (the registry client checks the bytes
/// against it); None when the repository does not have it.
async fn fetch_image(
    registry: &Registry,
    name: &ImageName,
    entry: &Entry,
) -> Result<Option<Image>, MergeError> {
    let Some((bytes, _)) = registry.find_manifest(name, &entry.digest).await? else {
        return Ok(None);
    };
    let reference = format!("{name}@{}", entry.digest);
    let manifest: Value = serde_json::from_slice(&bytes).unwrap_or_default();
    let kind = manifest["mediaType"].as_str().unwrap_or_default();
    let descriptor_of = |value: &Value| serde_json::from_value::<Descriptor>(value.clone()).ok();
    let config = descriptor_of(&manifest["config"]);
    let layers: Option<Vec<Descriptor>> = manifest["layers"]
        .as_array()
        .and_then(|layers| layers.iter().map(descriptor_of).collect());
    let (true, Some(config), Some(layers)) = (
        [media_type::OCI_MANIFEST, media_type::DOCKER_MANIFEST].contains(&kind),
        config,
        layers,
    ) else {
        return Err(MergeError::NotAnImage {
            reference,
            platform: entry.platform.to_string(),
            report: entry.report.clone(),
            found: if kind.is_empty() {
                "no manifest gantry knows".into()
            } else {
                kind.to_string()
            },
        });
    };
    let config_json: Value =
        serde_json::from_slice(&registry.pull_small_blob(name, &config.digest).await?)
            .unwrap_or_default();
    let text = |key: &str| config_json[key].as_str().unwrap_or_default();
    let actual = Platform::new(
        text("os"),
        text("architecture"),
        config_json["variant"].as_str(),
    );
    if !entry.platform.matches(&actual) {
        return Err(MergeError::WrongPlatform {
            reference,
            report: entry.report.clone(),
            reported: entry.platform.to_string(),
            actual: actual.to_string(),
        });
    }
    let manifest_annotations: BTreeMap<String, String> =
        serde_json::from_value(manifest["annotations"].clone()).unwrap_or_default();
    // Already in the repository: nothing of theirs is sent again.
    let remote = |descriptor: Descriptor| Blob {
        descriptor,
        source: BlobSource::Remote {
            repository: name.to_string(),
        },
    };
    Ok(Some(Image {
        descriptor: image::index_entry(
            Descriptor::for_bytes(kind, &bytes),
            &entry.platform,
            &manifest_annotations,
        ),
        platform: entry.platform.clone(),
        manifest: bytes,
        config: remote(config),
        layers: layers.into_iter().map(remote).collect(),
        base_digest: entry.facts.base_digest.clone(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(platform: &str, digest: &Digest) -> PlatformReport {
        PlatformReport {
            platform: platform.into(),
            digest: digest.clone(),
            config_digest: Digest::of(b"config"),
            layers: Vec::new(),
            base_digest: None,
        }
    }

    #[test]
    fn images_come_in_platform_order_and_a_platform_only_once() {
        let (a, b, c) = (Digest::of(b"a"), Digest::of(b"b"), Digest::of(b"c"));
        let mut entries = BTreeMap::new();
        for (platform, digest, report) in [
            ("wasi/wasm", &c, "w.json"),
            ("linux/arm64", &b, "arm.json"),
            ("linux/amd64", &a, "amd.json"),
            // The same image again is one image.
            ("linux/amd64", &a, "amd-again.json"),
        ] {
            add_entry(
                &mut entries,
                entry(Path::new(report), &facts(platform, digest)).unwrap(),
            )
            .unwrap();
        }
        let order: Vec<String> = entries.keys().map(Platform::to_string).collect();
        assert_eq!(order, ["linux/amd64", "linux/arm64", "wasi/wasm"]);

        let other = entry(Path::new("other.json"), &facts("linux/arm64/v8", &c)).unwrap();
        let err = add_entry(&mut entries, other).unwrap_err().to_string();
        assert!(
            err.contains(&format!(
                "two images for linux/arm64: {b} from arm.json and {c} from other.json"
            )),
            "{err}"
        );
    }

    #[test]
    fn a_report_must_name_the_repository_and_be_a_report() {
        let dir = tempfile::tempdir().unwrap();
        let repo = ImageName::parse("registry.example/acme/app").unwrap();
        let elsewhere = dir.path().join("elsewhere.json");
        std::fs::write(
            &elsewhere,
            serde_json::json!({"images": [{"import_path": "example.com/app",
                "repository": "registry.example/acme/other", "platforms": []}]})
            .to_string(),
        )
        .unwrap();
        let err = gather(std::slice::from_ref(&elsewhere), &repo)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains(
                "has no image in registry.example/acme/app (it has: registry.example/acme/other)"
            ),
            "{err}"
        );
        let garbage = dir.path().join("garbage.json");
        std::fs::write(&garbage, "{\"images\": 3}").unwrap();
        let err = gather(&[garbage], &repo).err().unwrap().to_string();
        assert!(
            err.contains("is not a report of `gantry build --json`"),
            "{err}"
        );
        assert!(matches!(gather(&[], &repo), Err(MergeError::NoReports)));
    }
}

//! SLSA provenance v1: what was built, from which source, with which toolchain and
//! base, by whom. In GitHub Actions it uses GitHub's buildType and workflow facts;
//! elsewhere gantry's own buildType.

use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

use crate::image::rfc3339;

pub const PREDICATE_TYPE: &str = "https://slsa.dev/provenance/v1";
const GITHUB_BUILD_TYPE: &str = "https://actions.github.io/buildtypes/workflow/v1";
const GANTRY_BUILD_TYPE: &str = "https://gantry.dev/buildtypes/go-image/v1";

/// The facts of one build, gathered by the pipeline.
#[derive(Debug, Clone)]
pub struct BuildFacts<'a> {
    pub packages: &'a [String],
    pub platforms: &'a [String],
    pub go_version: &'a str,
    /// `(reference, digest)` of each base image used.
    pub bases: &'a [(String, String)],
    /// The directory built from (for the git source).
    pub workdir: &'a Path,
    pub created: i64,
}

fn env(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|v| !v.is_empty())
}

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}

/// The provenance predicate.
pub fn predicate(facts: &BuildFacts) -> Value {
    let mut deps = Vec::new();
    // GitHub's build type only with what it is made of: a run without the server,
    // the repository or the workflow (not a real runner) is described as a local one
    // rather than with URLs built from empty values.
    let github = env("GITHUB_ACTIONS").as_deref() == Some("true")
        && [
            "GITHUB_SERVER_URL",
            "GITHUB_REPOSITORY",
            "GITHUB_WORKFLOW_REF",
        ]
        .iter()
        .all(|k| env(k).is_some());
    if let Some(commit) = env("GITHUB_SHA")
        .filter(|_| github)
        .or_else(|| git(facts.workdir, &["rev-parse", "HEAD"]))
    {
        let uri = match (
            env("GITHUB_SERVER_URL"),
            env("GITHUB_REPOSITORY"),
            env("GITHUB_REF"),
        ) {
            (Some(server), Some(repo), Some(r)) if github => format!("git+{server}/{repo}@{r}"),
            _ => git(facts.workdir, &["remote", "get-url", "origin"])
                .map(|u| format!("git+{u}"))
                .unwrap_or_else(|| "git+file:".to_string() + &facts.workdir.display().to_string()),
        };
        deps.push(json!({"uri": uri, "digest": {"gitCommit": commit}}));
    }
    for (reference, digest) in facts.bases {
        deps.push(json!({"uri": format!("oci://{reference}"), "digest": {"sha256": digest.trim_start_matches("sha256:")}}));
    }
    deps.push(json!({"uri": format!("pkg:golang/toolchain@{}", facts.go_version), "name": "go"}));

    let external = json!({"packages": facts.packages, "platforms": facts.platforms});
    let (build_type, builder, external) = if github {
        let workflow = json!({
            "ref": env("GITHUB_REF"),
            "repository": format!("{}/{}", env("GITHUB_SERVER_URL").unwrap_or_default(), env("GITHUB_REPOSITORY").unwrap_or_default()),
            "path": env("GITHUB_WORKFLOW_REF").and_then(|w| w.split('@').next().and_then(|p| p.splitn(3, '/').nth(2)).map(str::to_string)),
        });
        (
            GITHUB_BUILD_TYPE,
            format!(
                "{}/{}",
                env("GITHUB_SERVER_URL").unwrap_or_default(),
                env("GITHUB_WORKFLOW_REF").unwrap_or_default()
            ),
            json!({"workflow": workflow, "gantry": external}),
        )
    } else {
        (
            GANTRY_BUILD_TYPE,
            "https://gantry.dev/builder/local/v1".to_string(),
            external,
        )
    };
    let mut run =
        json!({"builder": {"id": builder}, "metadata": {"startedOn": rfc3339(facts.created)}});
    if github {
        if let (Some(server), Some(repo), Some(id), Some(attempt)) = (
            env("GITHUB_SERVER_URL"),
            env("GITHUB_REPOSITORY"),
            env("GITHUB_RUN_ID"),
            env("GITHUB_RUN_ATTEMPT"),
        ) {
            run["metadata"]["invocationId"] = json!(format!(
                "{server}/{repo}/actions/runs/{id}/attempts/{attempt}"
            ));
        }
    }
    json!({
        "buildDefinition": {
            "buildType": build_type,
            "externalParameters": external,
            "internalParameters": {"gantryVersion": env!("CARGO_PKG_VERSION")},
            "resolvedDependencies": deps,
        },
        "runDetails": run,
    })
}

//! SLSA provenance v1: what was built, from which source, with which toolchain and
//! base, by whom. In GitHub Actions it uses GitHub's buildType and workflow facts;
//! elsewhere gantry's own buildType.
//!
//! A provenance is published with the image, so it names things as a reader
//! elsewhere knows them: Go import paths, not the arguments typed on this machine,
//! and a repository's public URL, never a directory of the machine that built it.

use std::path::Path;

use serde_json::{json, Value};

use crate::git::output as git;
use crate::image::rfc3339;

pub const PREDICATE_TYPE: &str = "https://slsa.dev/provenance/v1";
const GITHUB_BUILD_TYPE: &str = "https://actions.github.io/buildtypes/workflow/v1";
const GANTRY_BUILD_TYPE: &str = "https://gantry.dev/buildtypes/go-image/v1";

/// The facts of one build, gathered by the pipeline.
#[derive(Debug, Clone)]
pub struct BuildFacts<'a> {
    /// The main packages' import paths (`example.com/app/cmd/app`, not `./cmd/app`).
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

/// A git remote's URL as a provenance may show it: without the credentials an
/// `https://user:token@…` URL can carry, scp-like `git@host:path` as an `ssh://`
/// URL, and None for a remote that is itself a local path (`/srv/repo`, `../repo`,
/// `file://…`), which names nothing outside this machine.
fn public_remote(url: &str) -> Option<String> {
    let url = url.trim();
    if let Some((scheme, rest)) = url.split_once("://") {
        let scheme = scheme.to_ascii_lowercase();
        if scheme == "file" || rest.is_empty() {
            return None;
        }
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let host = match authority.rsplit_once('@') {
            // An ssh user name (`git@`) is an address, not a secret; anything with a
            // password, or any user of an http URL, may be a token.
            Some((user, host)) if scheme.contains("ssh") && !user.contains(':') => {
                format!("{user}@{host}")
            }
            Some((_, host)) => host.to_string(),
            None => authority.to_string(),
        };
        return Some(format!("{scheme}://{host}/{path}"));
    }
    // scp-like syntax: a host before the first colon, and no slash before it.
    match url.split_once(':') {
        Some((host, path))
            if !host.is_empty()
                && !host.contains('/')
                && !host.contains('\\')
                && host.len() > 1 =>
        {
            Some(format!("ssh://{host}/{}", path.trim_start_matches('/')))
        }
        _ => None,
    }
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
            (Some(server), Some(repo), Some(r)) if github => {
                Some(format!("git+{server}/{repo}@{r}"))
            }
            _ => git(facts.workdir, &["remote", "get-url", "origin"])
                .and_then(|url| public_remote(&url))
                .map(|u| format!("git+{u}")),
        };
        // Without a public remote the commit is still a fact about the source; the
        // directory it was checked out in is not.
        deps.push(match uri {
            Some(uri) => json!({"uri": uri, "digest": {"gitCommit": commit}}),
            None => json!({"name": "source", "digest": {"gitCommit": commit}}),
        });
    }
    for (reference, digest) in facts.bases {
        deps.push(json!({"uri": format!("oci://{reference}"), "digest": {"sha256": digest.trim_start_matches("sha256:")}}));
    }
    deps.push(json!({"uri": super::purl("golang", "toolchain", Some(facts.go_version), &[]), "name": "go"}));

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn remotes_lose_credentials_and_local_paths() {
        let cases = [
            (
                "https://github.com/acme/app.git",
                Some("https://github.com/acme/app.git"),
            ),
            (
                "https://x-access-token:ghs_secret@github.com/acme/app",
                Some("https://github.com/acme/app"),
            ),
            (
                "https://ghp_token@github.com/acme/app",
                Some("https://github.com/acme/app"),
            ),
            (
                "ssh://git@github.com/acme/app.git",
                Some("ssh://git@github.com/acme/app.git"),
            ),
            (
                "git@github.com:acme/app.git",
                Some("ssh://git@github.com/acme/app.git"),
            ),
            ("file:///srv/git/app.git", None),
            ("/srv/git/app.git", None),
            ("../app.git", None),
            ("C:\\src\\app", None),
        ];
        for (remote, public) in cases {
            assert_eq!(public_remote(remote).as_deref(), public, "{remote}");
        }
    }

    /// A checkout with no remote: its commit is recorded, its directory is not.
    #[test]
    fn no_remote_records_no_local_path() {
        let dir = tempfile::tempdir().unwrap();
        let git = |args: &[&str]| {
            let out = Command::new("git")
                .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
                .args(args)
                .current_dir(dir.path())
                .output()
                .expect("git is needed to test the provenance's source");
            assert!(out.status.success(), "git {args:?}: {out:?}");
        };
        git(&["init", "-q"]);
        git(&["commit", "-q", "--allow-empty", "-m", "first"]);
        let packages = ["example.com/app/cmd/app".to_string()];
        let predicate = predicate(&BuildFacts {
            packages: &packages,
            platforms: &["linux/amd64".to_string()],
            go_version: "go1.26.8",
            bases: &[],
            workdir: dir.path(),
            created: 0,
        });
        let text = predicate.to_string();
        let path = dir.path().display().to_string();
        assert!(!text.contains(&path), "{path} in {text}");
        assert!(!text.contains("file:"), "{text}");
        let deps = predicate["buildDefinition"]["resolvedDependencies"]
            .as_array()
            .unwrap();
        assert!(
            deps.iter().any(|d| d["digest"]["gitCommit"].is_string()),
            "{text}"
        );
        assert!(text.contains("example.com/app/cmd/app"), "{text}");
        assert!(deps
            .iter()
            .any(|d| d["uri"] == "pkg:golang/toolchain@go1.26.8"));
    }
}

//! Tags from git refs in docker/metadata-action's syntax: `type=semver,pattern=…`,
//! `type=ref,event=branch|tag|pr`, `type=sha`, `type=raw,value=…`, `latest=auto`, and
//! plain tags. Results are sanitised to the OCI tag grammar.

use std::collections::BTreeMap;

/// The git facts tags are made from (GITHUB_REF, GITHUB_SHA).
#[derive(Debug, Clone, Default)]
pub struct RefInfo {
    /// `refs/heads/main`, `refs/tags/v1.2.3`, `refs/pull/12/merge`.
    pub git_ref: String,
    pub sha: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TagError {
    #[error("tag spec {0:?}: unknown type (use semver, ref, sha, raw, or a plain tag)")]
    UnknownType(String),
    #[error("tag spec {spec:?}: {detail}")]
    Bad { spec: String, detail: String },
    #[error("{0:?} cannot be made a valid OCI tag")]
    Invalid(String),
}

struct Semver {
    major: u64,
    minor: u64,
    patch: u64,
    pre: Option<String>,
}

fn parse_semver(text: &str) -> Option<Semver> {
    let text = text.strip_prefix('v').unwrap_or(text);
    let (core, pre) = match text.split_once('-') {
        Some((c, p)) => (c, Some(p.to_string())),
        None => (text, None),
    };
    let core = core.split('+').next()?;
    let mut nums = core.split('.').map(|n| n.parse::<u64>());
    let (major, minor, patch) = (nums.next()?.ok()?, nums.next()?.ok()?, nums.next()?.ok()?);
    nums.next().is_none().then_some(Semver {
        major,
        minor,
        patch,
        pre,
    })
}

/// OCI tags: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`; `/` and other characters become `-`.
pub fn sanitize(raw: &str) -> Result<String, TagError> {
    let mut tag: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    tag = tag.trim_start_matches(['.', '-']).to_string();
    tag.truncate(128);
    if tag.is_empty() {
        return Err(TagError::Invalid(raw.to_string()));
    }
    Ok(tag)
}

/// Expands `specs` (one per line or comma-free entry) for `info`.
pub fn expand(specs: &[String], info: &RefInfo) -> Result<Vec<String>, TagError> {
    let mut tags: Vec<String> = Vec::new();
    let mut latest_auto = true;
    let mut semver_release = false;
    let push = |t: String, tags: &mut Vec<String>| {
        if !tags.contains(&t) {
            tags.push(t);
        }
    };
    let tag_name = info.git_ref.strip_prefix("refs/tags/");
    let branch = info.git_ref.strip_prefix("refs/heads/");
    let pr = info
        .git_ref
        .strip_prefix("refs/pull/")
        .and_then(|r| r.split('/').next());
    for spec in specs.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        if let Some(v) = spec.strip_prefix("latest=") {
            latest_auto = v == "auto";
            if v == "true" {
                push("latest".into(), &mut tags);
            }
            continue;
        }
        if !spec.starts_with("type=") {
            push(sanitize(spec)?, &mut tags);
            continue;
        }
        let attrs: BTreeMap<&str, &str> = spec
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .collect();
        let bad = |detail: &str| TagError::Bad {
            spec: spec.to_string(),
            detail: detail.to_string(),
        };
        let prefix = attrs.get("prefix").copied().unwrap_or("");
        match attrs.get("type").copied() {
            Some("semver") => {
                let pattern = attrs
                    .get("pattern")
                    .ok_or_else(|| bad("needs pattern={{version}} or the like"))?;
                let Some(v) = tag_name.and_then(parse_semver) else {
                    continue;
                };
                // Like metadata-action: a prerelease only gets {{version}}.
                if v.pre.is_some() && *pattern != "{{version}}" {
                    continue;
                }
                let version = match &v.pre {
                    Some(p) => format!("{}.{}.{}-{p}", v.major, v.minor, v.patch),
                    None => format!("{}.{}.{}", v.major, v.minor, v.patch),
                };
                let out = pattern
                    .replace("{{version}}", &version)
                    .replace("{{major}}", &v.major.to_string())
                    .replace("{{minor}}", &v.minor.to_string())
                    .replace("{{patch}}", &v.patch.to_string());
                semver_release |= v.pre.is_none();
                push(sanitize(&format!("{prefix}{out}"))?, &mut tags);
            }
            Some("ref") => {
                let value = match attrs.get("event").copied() {
                    Some("branch") => branch.map(str::to_string),
                    Some("tag") => tag_name.map(str::to_string),
                    Some("pr") => pr.map(|n| format!("pr-{n}")),
                    _ => return Err(bad("needs event=branch, event=tag or event=pr")),
                };
                if let Some(v) = value {
                    push(sanitize(&format!("{prefix}{v}"))?, &mut tags);
                }
            }
            Some("sha") => {
                let short: String = info.sha.chars().take(7).collect();
                if short.is_empty() {
                    return Err(bad("no commit SHA (GITHUB_SHA) to tag with"));
                }
                let prefix = attrs.get("prefix").copied().unwrap_or("sha-");
                push(sanitize(&format!("{prefix}{short}"))?, &mut tags);
            }
            Some("raw") => {
                let value = attrs.get("value").ok_or_else(|| bad("needs value=…"))?;
                push(sanitize(&format!("{prefix}{value}"))?, &mut tags);
            }
            _ => return Err(TagError::UnknownType(spec.to_string())),
        }
    }
    if latest_auto && semver_release {
        push("latest".into(), &mut tags);
    }
    Ok(tags)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specs(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    const SPECS: &[&str] = &[
        "type=semver,pattern={{version}}",
        "type=semver,pattern={{major}}.{{minor}}",
        "type=semver,pattern={{major}}",
        "type=ref,event=branch",
        "type=ref,event=pr",
        "type=sha",
    ];

    fn info(git_ref: &str) -> RefInfo {
        RefInfo {
            git_ref: git_ref.into(),
            sha: "0123456789abcdef".into(),
        }
    }

    #[test]
    fn tag_branch_and_pr_refs() {
        assert_eq!(
            expand(&specs(SPECS), &info("refs/tags/v1.2.3")).unwrap(),
            ["1.2.3", "1.2", "1", "sha-0123456", "latest"]
        );
        assert_eq!(
            expand(&specs(SPECS), &info("refs/tags/v2.0.0-rc.1")).unwrap(),
            ["2.0.0-rc.1", "sha-0123456"],
            "a prerelease is never latest"
        );
        assert_eq!(
            expand(&specs(SPECS), &info("refs/heads/feature/x")).unwrap(),
            ["feature-x", "sha-0123456"]
        );
        assert_eq!(
            expand(&specs(SPECS), &info("refs/pull/12/merge")).unwrap(),
            ["pr-12", "sha-0123456"]
        );
        assert_eq!(
            expand(
                &specs(&["v1", "type=raw,value=edge", "latest=true"]),
                &info("refs/heads/main")
            )
            .unwrap(),
            ["v1", "edge", "latest"]
        );
    }

    #[test]
    fn bad_specs_and_tags() {
        assert!(matches!(
            expand(&specs(&["type=nope"]), &info("")),
            Err(TagError::UnknownType(_))
        ));
        assert!(expand(&specs(&["type=ref"]), &info("")).is_err());
        assert_eq!(sanitize("-/-"), Err(TagError::Invalid("-/-".into())));
        assert_eq!(sanitize("a b\nc").unwrap(), "a-b-c");
    }
}

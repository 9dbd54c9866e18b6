//! Talking to GitHub Actions: step outputs through `$GITHUB_OUTPUT`, the job summary,
//! workflow commands (masks, annotations), all escaped per the runner's rules.

pub mod api;
pub mod artifacts;

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use serde_json::json;

use crate::report::BuildReport;
use crate::sign::{AttachmentKind, SignerIdentity, SigningMethod};
pub use crate::workflow::{escape_data, escape_property, in_actions, mask, mask_commands};

#[derive(Debug, thiserror::Error)]
pub enum GithubError {
    #[error("output {key:?} cannot be written: its name or value contains the delimiter or a line break in the name")]
    Injection { key: String },
    #[error("writing {path}")]
    Io {
        path: String,
        #[source]
        cause: std::io::Error,
    },
}

/// `::error file=…,line=…,col=…::` for each `file.go:L:C: message` line Go printed.
/// `dir` is where go ran (its paths are relative to it); `workspace` is the checkout,
/// which annotation paths are relative to.
pub fn compile_error_annotations(stderr: &str, dir: &Path, workspace: &Path) -> Vec<String> {
    stderr
        .lines()
        .filter_map(|line| {
            let (file, rest) = line.split_once(".go:")?;
            let mut parts = rest.splitn(3, ':');
            let line_no: u32 = parts.next()?.trim().parse().ok()?;
            let (col, message) = match (parts.next(), parts.next()) {
                (Some(c), Some(m)) if c.trim().parse::<u32>().is_ok() => {
                    (Some(c.trim().to_string()), m.trim())
                }
                (Some(m), rest) => (None, rest.map_or(m.trim(), |r| r.trim())),
                _ => return None,
            };
            let file = format!("{}.go", file.trim());
            let path = dir.join(file.strip_prefix("./").unwrap_or(&file));
            let shown = path
                .strip_prefix(workspace)
                .unwrap_or(&path)
                .display()
                .to_string();
            let mut props = format!("file={},line={line_no}", escape_property(&shown));
            if let Some(c) = col {
                props.push_str(&format!(",col={c}"));
            }
            Some(format!("::error {props}::{}", escape_data(message)))
        })
        .collect()
}

/// Appends `key=value` pairs to a `$GITHUB_OUTPUT` file, each in the multi-line form
/// with a fresh random delimiter, refusing anything that could end it early.
pub fn write_outputs(path: &Path, outputs: &[(String, String)]) -> Result<(), GithubError> {
    let mut text = String::new();
    for (key, value) in outputs {
        let delimiter = format!("ghadelimiter_{}", uuid::Uuid::new_v4());
        if key.contains(&delimiter)
            || value.contains(&delimiter)
            || key.contains(['\n', '\r', '='])
            || key.is_empty()
        {
            return Err(GithubError::Injection { key: key.clone() });
        }
        let _ = write!(text, "{key}<<{delimiter}\n{value}\n{delimiter}\n");
    }
    append(path, &text)
}

fn append(path: &Path, text: &str) -> Result<(), GithubError> {
    let io = |cause| GithubError::Io {
        path: path.display().to_string(),
        cause,
    };
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io)?;
    file.write_all(text.as_bytes()).map_err(io)
}

/// The step outputs users know from docker/build-push-action, and gantry's own.
pub fn outputs(report: &BuildReport) -> Vec<(String, String)> {
    let Some(first) = report.images.first() else {
        return Vec::new();
    };
    let platforms: serde_json::Map<String, serde_json::Value> = first
        .platforms
        .iter()
        .map(|p| (p.platform.clone(), json!(p.digest)))
        .collect();
    let imageid = first
        .platforms
        .iter()
        .find(|p| p.platform.starts_with("linux/"))
        .or(first.platforms.first())
        .map(|p| p.config_digest.to_string())
        .unwrap_or_default();
    let of_kind = |pred: &dyn Fn(&crate::sign::Attachment) -> bool| {
        let digests: Vec<&str> = report
            .images
            .iter()
            .flat_map(|i| i.attachments.iter())
            .filter(|a| pred(a))
            .map(|a| a.digest.as_str())
            .collect();
        json!(digests).to_string()
    };
    let is_sbom = |a: &crate::sign::Attachment| {
        a.predicate_type.as_deref().is_some_and(|p| {
            p.starts_with("https://spdx.dev") || p.starts_with("https://cyclonedx.org")
        })
    };
    vec![
        ("digest".into(), first.digest.to_string()),
        ("image".into(), first.reference.clone()),
        ("imageid".into(), imageid),
        (
            "tags".into(),
            first
                .tags
                .iter()
                .map(|t| format!("{}:{t}", first.repository))
                .collect::<Vec<_>>()
                .join("\n"),
        ),
        (
            "platforms".into(),
            serde_json::Value::Object(platforms).to_string(),
        ),
        (
            "metadata".into(),
            serde_json::to_string(report).unwrap_or_default(),
        ),
        ("sbom".into(), of_kind(&is_sbom)),
        (
            "attestations".into(),
            of_kind(&|a| a.kind == AttachmentKind::Attestation),
        ),
        (
            "signatures".into(),
            of_kind(&|a| a.kind == AttachmentKind::Signature),
        ),
        (
            "rekor-log-index".into(),
            first
                .attachments
                .iter()
                .find(|a| a.kind == AttachmentKind::Signature && a.subject == first.digest)
                .and_then(|a| a.rekor_log_index)
                .map(|i| i.to_string())
                .unwrap_or_default(),
        ),
    ]
}

/// The job summary: images, platforms, digests, tags, what was signed and attested,
/// and the commands that verify it.
pub fn summary(report: &BuildReport) -> String {
    let mut md = String::from("## gantry\n\n| image | platform | digest |\n| --- | --- | --- |\n");
    for image in &report.images {
        let _ = writeln!(
            md,
            "| `{}` | index | `{}` |",
            image.repository, image.digest
        );
        for p in &image.platforms {
            let _ = writeln!(md, "| | {} | `{}` |", p.platform, p.digest);
        }
    }
    for image in &report.images {
        let _ = write!(
            md,
            "\n**{}** tags: {}\n\n",
            image.repository,
            image
                .tags
                .iter()
                .map(|t| format!("`{t}`"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let (Some(signer), false) = (&report.signer, image.attachments.is_empty()) else {
            md.push_str("Not signed: no key was given and no OIDC token was available.\n");
            continue;
        };
        let count =
            |kind: AttachmentKind| image.attachments.iter().filter(|a| a.kind == kind).count();
        let _ = writeln!(
            md,
            "Signed ({}): {} signatures, {} attestations (SBOMs, provenance).\n",
            signer.method,
            count(AttachmentKind::Signature),
            count(AttachmentKind::Attestation)
        );
        md.push_str("```sh\n");
        md.push_str(&verify_commands(signer, &image.reference));
        md.push_str("```\n");
    }
    md
}

/// The commands that check this image's signature and provenance.
fn verify_commands(signer: &SignerIdentity, reference: &str) -> String {
    let by = match (
        &signer.certificate_identity,
        &signer.certificate_oidc_issuer,
    ) {
        (Some(identity), Some(issuer)) => {
            format!("--certificate-identity '{identity}' --certificate-oidc-issuer '{issuer}'")
        }
        _ => "--key cosign.pub".into(),
    };
    // Without a transparency log entry cosign must be told not to look for one.
    let tlog = if signer.rekor_url.is_some() {
        ""
    } else {
        " --insecure-ignore-tlog=true"
    };
    let mut out = format!(
        "cosign verify {by}{tlog} {reference}\ncosign verify-attestation {by}{tlog} --type slsaprovenance1 {reference}\n"
    );
    if signer.method == SigningMethod::Keyless {
        if let Ok(repo) = std::env::var("GITHUB_REPOSITORY") {
            let _ = writeln!(out, "gh attestation verify oci://{reference} --repo {repo}");
        }
    }
    out
}

/// Writes outputs and summary when the files are given.
pub fn report_to_actions(report: &BuildReport) -> Result<(), GithubError> {
    if let Some(path) = std::env::var_os("GITHUB_OUTPUT") {
        write_outputs(Path::new(&path), &outputs(report))?;
    }
    if let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY") {
        append(Path::new(&path), &summary(report))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads a GITHUB_OUTPUT file the way the runner does.
    fn parse(text: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut lines = text.lines();
        while let Some(line) = lines.next() {
            if let Some((key, delim)) = line.split_once("<<") {
                let mut value = Vec::new();
                for l in lines.by_ref() {
                    if l == delim {
                        break;
                    }
                    value.push(l);
                }
                out.push((key.to_string(), value.join("\n")));
            } else if let Some((k, v)) = line.split_once('=') {
                out.push((k.to_string(), v.to_string()));
            }
        }
        out
    }

    #[test]
    fn hostile_values_cannot_add_outputs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        let hostile = "v1\nimage=evil\nghadelimiter_00000000-0000-0000-0000-000000000000\ndigest<<EOF\nx\nEOF";
        write_outputs(
            &path,
            &[
                ("tags".into(), hostile.into()),
                ("digest".into(), "sha256:ab".into()),
            ],
        )
        .unwrap();
        let parsed = parse(&std::fs::read_to_string(&path).unwrap());
        assert_eq!(
            parsed,
            vec![
                ("tags".to_string(), hostile.to_string()),
                ("digest".to_string(), "sha256:ab".to_string())
            ]
        );
        assert!(write_outputs(&path, &[("a\nb".into(), "x".into())]).is_err());
        assert!(write_outputs(&path, &[("a=b".into(), "x".into())]).is_err());
    }

    #[test]
    fn escaping_and_annotations() {
        assert_eq!(escape_data("50%\r\nx"), "50%25%0D%0Ax");
        assert_eq!(escape_property("a:b,c"), "a%3Ab%2Cc");
        let stderr =
            "# example.com/broken\n./main.go:4:2: undefined: undefinedCall\nnot a go error\n";
        let a = compile_error_annotations(stderr, Path::new("/ws/cmd/app"), Path::new("/ws"));
        assert_eq!(
            a,
            vec!["::error file=cmd/app/main.go,line=4,col=2::undefined: undefinedCall"]
        );
    }
}

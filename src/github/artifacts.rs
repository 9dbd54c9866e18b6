//! Declaring what a build pushed to the Actions runner's artifact list, so a later
//! attestation step (GitHub's `actions/attest` from v4.2) finds its subjects without
//! being told them.
//!
//! The runner gives each step an empty file named by `GITHUB_ARTIFACTS` and reads it
//! once the step ends: one declaration a line, blank lines and `#` comments ignored.
//! An image is declared as `oci://NAME@sha256:HEX`; the runner keeps every step's
//! declarations for the job, keyed by NAME, and lists them for later steps as JSON
//! in the file `GITHUB_ARTIFACTS_LIST` names, which is what attest reads. The runner
//! fails the step on a line it cannot parse, on a line holding `=`, and on a NAME
//! declared again with another digest, so only lines it accepts are written:
//!
//! - one line per pushed image, index or single manifest, named by its repository
//!   without a tag (the digest pins the image; attest drops a tag anyway when it
//!   pushes its attestation next to the image);
//! - not the platform manifests inside an index, nor the CNCF Wasm artifact: they
//!   live in the same repository under other digests, so each would be a conflicting
//!   declaration of the same name;
//! - nothing for a layout-only build, which pushed nothing an attestation could be
//!   stored beside.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use super::GithubError;
use crate::image::Digest;
use crate::report::BuildReport;

/// The variable naming the step's declaration file.
pub const FILE_VARIABLE: &str = "GITHUB_ARTIFACTS";

/// One pushed image as the runner's artifact list takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Declaration {
    /// `registry/repository`, no tag, no digest.
    pub name: String,
    pub digest: Digest,
}

impl Declaration {
    /// The line appended to the file, newline included.
    pub fn line(&self) -> String {
        format!("oci://{}@{}\n", self.name, self.digest)
    }
}

/// What a build declares, and why anything it pushed is left out.
#[derive(Debug, Default)]
pub struct Declarations {
    pub declared: Vec<Declaration>,
    /// A sentence per image left out.
    pub skipped: Vec<String>,
}

/// The declarations for the images `report` pushed to a registry (in its order;
/// an image already declared with the same digest is declared once).
pub fn declarations(report: &BuildReport) -> Declarations {
    let mut out = Declarations::default();
    for image in &report.images {
        if image.repository.starts_with("oci:") || image.repository.starts_with("oci-archive:") {
            continue;
        }
        let declaration = Declaration {
            name: image.repository.clone(),
            digest: image.digest.clone(),
        };
        if !acceptable(&declaration) {
            out.skipped.push(format!(
                "{}@{} is not declared in {FILE_VARIABLE}: the runner takes only a name without `=`, `@` or whitespace",
                declaration.name, declaration.digest
            ));
            continue;
        }
        match out.declared.iter().find(|d| d.name == declaration.name) {
            Some(d) if d.digest == declaration.digest => {}
            Some(d) => out.skipped.push(format!(
                "{}@{} is not declared in {FILE_VARIABLE}: this build already declared {} for that repository, and the runner refuses a second digest under one name",
                declaration.name, declaration.digest, d.digest
            )),
            None => out.declared.push(declaration),
        }
    }
    out
}

/// Whether the runner would take the declaration as an image (and not, say, fail
/// the step looking for a file of that name).
fn acceptable(d: &Declaration) -> bool {
    !d.name.is_empty() && !d.name.contains(['=', '@']) && !d.name.chars().any(char::is_whitespace)
}

/// Appends the declarations to the file at `path` (created if missing), in one
/// write, starting on a line of their own even if the file does not end in a
/// newline.
pub fn append(path: &Path, declarations: &[Declaration]) -> Result<(), GithubError> {
    if declarations.is_empty() {
        return Ok(());
    }
    let io = |cause| GithubError::Io {
        path: path.display().to_string(),
        cause,
    };
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
        .map_err(io)?;
    let mut text = String::new();
    let len = file.seek(SeekFrom::End(0)).map_err(io)?;
    if len > 0 {
        let mut last = [0u8; 1];
        file.seek(SeekFrom::Start(len - 1)).map_err(io)?;
        file.read_exact(&mut last).map_err(io)?;
        if last[0] != b'\n' {
            text.push('\n');
        }
    }
    for d in declarations {
        text.push_str(&d.line());
    }
    // Append mode writes at the end, wherever the reads left the cursor.
    file.write_all(text.as_bytes()).map_err(io)?;
    file.flush().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::publish::PublishStats;
    use crate::report::PackageReport;

    fn image(repository: &str, digest: &Digest) -> PackageReport {
        PackageReport {
            import_path: "example.com/hello".into(),
            repository: repository.into(),
            digest: digest.clone(),
            media_type: "application/vnd.oci.image.index.v1+json".into(),
            reference: format!("{repository}@{digest}"),
            tags: vec!["latest".into()],
            platforms: Vec::new(),
            base_image: None,
            wasm_artifact: None,
            sboms: Vec::new(),
            attachments: Vec::new(),
        }
    }

    fn report(images: Vec<PackageReport>) -> BuildReport {
        BuildReport {
            images,
            publish: PublishStats::default(),
            go_version: "go1.24".into(),
            signer: None,
            registry_requests: 0,
        }
    }

    fn digest(c: char) -> Digest {
        Digest::parse(&format!("sha256:{}", c.to_string().repeat(64))).unwrap()
    }

    #[test]
    fn a_line_is_an_oci_reference_by_digest() {
        let d = Declaration {
            name: "ghcr.io/acme/hello".into(),
            digest: digest('a'),
        };
        assert_eq!(
            d.line(),
            format!("oci://ghcr.io/acme/hello@sha256:{}\n", "a".repeat(64))
        );
        // A registry port stays part of the name.
        let d = Declaration {
            name: "127.0.0.1:5000/hello".into(),
            digest: digest('b'),
        };
        assert_eq!(
            d.line(),
            format!("oci://127.0.0.1:5000/hello@sha256:{}\n", "b".repeat(64))
        );
    }

    #[test]
    fn one_declaration_per_pushed_image_and_none_for_a_layout() {
        let r = report(vec![
            image("ghcr.io/acme/a", &digest('a')),
            image("ghcr.io/acme/b", &digest('b')),
            image("ghcr.io/acme/a", &digest('a')),
            image("ghcr.io/acme/a", &digest('c')),
            image("oci:out/layout", &digest('d')),
            image("ghcr.io/acme/a=b", &digest('f')),
        ]);
        let d = declarations(&r);
        let names: Vec<(&str, &str)> = d
            .declared
            .iter()
            .map(|d| (d.name.as_str(), d.digest.as_str()))
            .collect();
        let (a, b) = (digest('a'), digest('b'));
        assert_eq!(
            names,
            [
                ("ghcr.io/acme/a", a.as_str()),
                ("ghcr.io/acme/b", b.as_str())
            ]
        );
        assert_eq!(d.skipped.len(), 2, "{:?}", d.skipped);
        assert!(d.skipped[0].contains("refuses a second digest"));
        assert!(d.skipped[1].contains("without `=`"));
        assert!(declarations(&report(vec![image("oci:x", &digest('e'))]))
            .declared
            .is_empty());
    }

    #[test]
    fn appends_on_a_line_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("artifacts");
        std::fs::write(&path, "dist/tool").unwrap();
        let d = Declaration {
            name: "ghcr.io/acme/hello".into(),
            digest: digest('a'),
        };
        append(&path, std::slice::from_ref(&d)).unwrap();
        append(&path, &[]).unwrap();
        append(&path, std::slice::from_ref(&d)).unwrap();
        let line = d.line();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("dist/tool\n{line}{line}")
        );
        let fresh = dir.path().join("new");
        append(&fresh, std::slice::from_ref(&d)).unwrap();
        assert_eq!(std::fs::read_to_string(&fresh).unwrap(), line);
    }
}

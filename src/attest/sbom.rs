//! SBOMs from Go build info: SPDX 2.3 JSON and CycloneDX 1.6 JSON, one per platform
//! image and one for the index (with the platform images as its variants).

use base64::Engine as _;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use crate::gobuild::buildinfo::{BuildInfo, Module};
use crate::image::rfc3339;
use crate::platform::Platform;

/// The SBOM formats gantry writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum SbomFormat {
    Spdx,
    Cyclonedx,
}

impl SbomFormat {
    /// The in-toto predicate type cosign expects for this format.
    pub fn predicate_type(self) -> &'static str {
        match self {
            SbomFormat::Spdx => "https://spdx.dev/Document",
            SbomFormat::Cyclonedx => "https://cyclonedx.org/bom",
        }
    }

    /// The document's media type, as an OCI artifact type.
    pub fn media_type(self) -> &'static str {
        match self {
            SbomFormat::Spdx => "application/spdx+json",
            SbomFormat::Cyclonedx => "application/vnd.cyclonedx+json",
        }
    }

    pub fn file_suffix(self) -> &'static str {
        match self {
            SbomFormat::Spdx => "spdx.json",
            SbomFormat::Cyclonedx => "cdx.json",
        }
    }
}

/// What an SBOM describes.
#[derive(Debug, Clone)]
pub struct SbomSubject<'a> {
    /// `registry/repo` (or the layout's name) of the image.
    pub repository: &'a str,
    /// Manifest digest (platform image) or index digest.
    pub digest: &'a str,
    pub platform: Option<&'a Platform>,
    /// The binary's build info; None for an index.
    pub build_info: Option<&'a BuildInfo>,
    /// The base image `(name, digest)`, which the image descends from.
    pub base: Option<(&'a str, &'a str)>,
    /// For an index: its platform images.
    pub variants: &'a [(Platform, String)],
    /// Unix time written as the creation time (SOURCE_DATE_EPOCH or 0).
    pub created: i64,
}

const TOOL: &str = concat!("gantry-", env!("CARGO_PKG_VERSION"));

/// `pkg:oci/<name>@sha256%3A<hex>?arch=…&os=…&repository_url=…`.
pub fn oci_purl(repository: &str, digest: &str, platform: Option<&Platform>) -> String {
    let name = repository
        .rsplit('/')
        .next()
        .unwrap_or(repository)
        .to_lowercase();
    let mut qualifiers = Vec::new();
    if let Some(p) = platform {
        qualifiers.push(format!("arch={}", p.architecture));
        qualifiers.push(format!("os={}", p.os));
        if let Some(v) = &p.variant {
            qualifiers.push(format!("variant={v}"));
        }
    }
    if repository.contains('/') {
        qualifiers.push(format!("repository_url={}", repository.replace(':', "%3A")));
    }
    let mut purl = format!("pkg:oci/{name}@{}", digest.replace(':', "%3A"));
    if !qualifiers.is_empty() {
        purl.push('?');
        purl.push_str(&qualifiers.join("&"));
    }
    purl
}

/// `pkg:golang/<module>@<version>`.
pub fn golang_purl(module: &Module) -> String {
    format!("pkg:golang/{}@{}", module.path, module.version)
}

/// The module that actually got built: the replacement when there is one.
fn effective(module: &Module) -> &Module {
    module.replace.as_deref().unwrap_or(module)
}

/// go.sum's `h1:<base64 sha256>` as hex.
fn h1_hex(sum: &str) -> Option<String> {
    let b64 = sum.strip_prefix("h1:")?;
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    (bytes.len() == 32).then(|| hex::encode(bytes))
}

fn spdx_id(kind: &str, n: usize) -> String {
    format!("SPDXRef-{kind}-{n}")
}

fn settings_text(info: &BuildInfo) -> String {
    info.settings
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// SPDX 2.3 JSON.
pub fn spdx(subject: &SbomSubject) -> Value {
    let image_id = "SPDXRef-Image".to_string();
    let mut packages = vec![json!({
        "SPDXID": image_id,
        "name": subject.repository,
        "versionInfo": subject.digest,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "primaryPackagePurpose": "CONTAINER",
        "checksums": [{"algorithm": "SHA256", "checksumValue": subject.digest.trim_start_matches("sha256:")}],
        "externalRefs": [{
            "referenceCategory": "PACKAGE-MANAGER",
            "referenceType": "purl",
            "referenceLocator": oci_purl(subject.repository, subject.digest, subject.platform),
        }],
    })];
    let mut relationships = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES",
        "relatedSpdxElement": image_id,
    })];
    let mut relate = |a: &str, kind: &str, b: &str| {
        relationships
            .push(json!({"spdxElementId": a, "relationshipType": kind, "relatedSpdxElement": b}));
    };

    for (n, (platform, digest)) in subject.variants.iter().enumerate() {
        let id = spdx_id("Variant", n);
        packages.push(json!({
            "SPDXID": id,
            "name": format!("{} ({platform})", subject.repository),
            "versionInfo": digest,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "primaryPackagePurpose": "CONTAINER",
            "externalRefs": [{
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": oci_purl(subject.repository, digest, Some(platform)),
            }],
        }));
        relate(&id, "VARIANT_OF", &image_id);
    }

    if let Some(info) = subject.build_info {
        let main_id = "SPDXRef-Main".to_string();
        let main = effective(&info.main);
        let mut comment = format!("Go package {}", info.path);
        if !info.go_version.is_empty() {
            comment.push_str(&format!(", built with {}", info.go_version));
        }
        comment.push_str(&format!("; build settings: {}", settings_text(info)));
        packages.push(json!({
            "SPDXID": main_id,
            "name": main.path,
            "versionInfo": main.version,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "primaryPackagePurpose": "APPLICATION",
            "comment": comment,
            "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl", "referenceLocator": golang_purl(main)}],
        }));
        relate(&image_id, "CONTAINS", &main_id);
        if !info.go_version.is_empty() {
            let stdlib = Module {
                path: "stdlib".into(),
                version: info.go_version.trim_start_matches("go").to_string(),
                sum: None,
                replace: None,
            };
            packages.push(spdx_module("SPDXRef-Stdlib", &stdlib, None));
            relate(&main_id, "DEPENDS_ON", "SPDXRef-Stdlib");
        }
        for (n, dep) in info.deps.iter().enumerate() {
            let id = spdx_id("Module", n);
            let replaced = dep.replace.is_some().then_some(dep);
            packages.push(spdx_module(&id, effective(dep), replaced));
            relate(&main_id, "DEPENDS_ON", &id);
        }
    }
    if let Some((name, digest)) = subject.base {
        packages.push(json!({
            "SPDXID": "SPDXRef-Base",
            "name": name,
            "versionInfo": digest,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "primaryPackagePurpose": "CONTAINER",
            "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl",
                "referenceLocator": oci_purl(base_repository(name), digest, subject.platform)}],
        }));
        relate(&image_id, "DESCENDANT_OF", "SPDXRef-Base");
    }

    json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": format!("{}@{}", subject.repository, subject.digest),
        "documentNamespace": format!("https://gantry.dev/spdx/{}/{}", subject.repository, subject.digest.trim_start_matches("sha256:")),
        "creationInfo": {"created": rfc3339(subject.created), "creators": [format!("Tool: {TOOL}")]},
        "packages": packages,
        "relationships": relationships,
    })
}

fn spdx_module(id: &str, module: &Module, replaced: Option<&Module>) -> Value {
    let mut p = json!({
        "SPDXID": id,
        "name": module.path,
        "versionInfo": module.version,
        "downloadLocation": format!("https://proxy.golang.org/{}/@v/{}.zip", module.path, module.version),
        "filesAnalyzed": false,
        "primaryPackagePurpose": "LIBRARY",
        "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl", "referenceLocator": golang_purl(module)}],
    });
    if module.path == "stdlib" {
        p["downloadLocation"] = json!("https://go.dev/dl/");
    }
    if let Some(hex) = module.sum.as_deref().and_then(h1_hex) {
        p["checksums"] = json!([{"algorithm": "SHA256", "checksumValue": hex}]);
    }
    if let Some(orig) = replaced {
        p["comment"] = json!(format!("replaces {}@{}", orig.path, orig.version));
    }
    p
}

/// `host/repo` of a reference (no tag or digest), for the base's purl.
fn base_repository(reference: &str) -> &str {
    let no_digest = reference.split('@').next().unwrap_or(reference);
    match no_digest.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => repo,
        _ => no_digest,
    }
}

/// A stable `urn:uuid:` from the subject digest, so the same image gets the same SBOM.
fn serial_number(digest: &str) -> String {
    let h = Sha256::digest(digest.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&h[..16]);
    b[6] = (b[6] & 0x0f) | 0x50;
    b[8] = (b[8] & 0x3f) | 0x80;
    let x = hex::encode(b);
    format!(
        "urn:uuid:{}-{}-{}-{}-{}",
        &x[..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..]
    )
}

/// CycloneDX 1.6 JSON.
pub fn cyclonedx(subject: &SbomSubject) -> Value {
    let image_ref = oci_purl(subject.repository, subject.digest, subject.platform);
    let mut components = Vec::new();
    let mut dependencies = Vec::new();
    let mut image_deps = Vec::new();

    for (platform, digest) in subject.variants {
        let purl = oci_purl(subject.repository, digest, Some(platform));
        components.push(
            json!({"type": "container", "bom-ref": purl, "name": subject.repository,
            "version": digest, "purl": purl, "description": format!("{platform} image")}),
        );
        image_deps.push(purl);
    }
    if let Some(info) = subject.build_info {
        let main = effective(&info.main);
        let main_ref = golang_purl(main);
        let mut properties = vec![json!({"name": "gantry:go:package", "value": info.path})];
        if !info.go_version.is_empty() {
            properties.push(json!({"name": "gantry:go:version", "value": info.go_version}));
        }
        for (k, v) in &info.settings {
            properties.push(json!({"name": format!("gantry:go:build:{k}"), "value": v}));
        }
        components.push(
            json!({"type": "application", "bom-ref": main_ref, "name": main.path,
            "version": main.version, "purl": main_ref, "properties": properties}),
        );
        image_deps.push(main_ref.clone());
        let mut main_deps = Vec::new();
        for dep in &info.deps {
            let m = effective(dep);
            let purl = golang_purl(m);
            let mut c = json!({"type": "library", "bom-ref": purl, "name": m.path, "version": m.version, "purl": purl});
            if let Some(hex) = m.sum.as_deref().and_then(h1_hex) {
                c["hashes"] = json!([{"alg": "SHA-256", "content": hex}]);
            }
            if dep.replace.is_some() {
                c["description"] = json!(format!("replaces {}@{}", dep.path, dep.version));
            }
            components.push(c);
            dependencies.push(json!({"ref": purl, "dependsOn": []}));
            main_deps.push(purl);
        }
        dependencies.push(json!({"ref": main_ref, "dependsOn": main_deps}));
    }
    if let Some((name, digest)) = subject.base {
        let purl = oci_purl(base_repository(name), digest, subject.platform);
        components.push(
            json!({"type": "container", "bom-ref": purl, "name": name, "version": digest,
            "purl": purl, "description": "base image"}),
        );
        image_deps.push(purl.clone());
        dependencies.push(json!({"ref": purl, "dependsOn": []}));
    }
    for d in &image_deps {
        if !dependencies.iter().any(|x| x["ref"] == d.as_str()) {
            dependencies.push(json!({"ref": d, "dependsOn": []}));
        }
    }
    dependencies.insert(0, json!({"ref": image_ref, "dependsOn": image_deps}));

    json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "serialNumber": serial_number(subject.digest),
        "version": 1,
        "metadata": {
            "timestamp": rfc3339(subject.created),
            "tools": {"components": [{"type": "application", "name": "gantry", "version": env!("CARGO_PKG_VERSION")}]},
            "component": {"type": "container", "bom-ref": image_ref, "name": subject.repository,
                "version": subject.digest, "purl": image_ref},
        },
        "components": components,
        "dependencies": dependencies,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> BuildInfo {
        BuildInfo {
            go_version: "go1.26.8".into(),
            path: "example.com/app".into(),
            main: Module {
                path: "example.com/app".into(),
                version: "(devel)".into(),
                sum: None,
                replace: None,
            },
            deps: vec![
                Module {
                    path: "github.com/google/uuid".into(),
                    version: "v1.6.0".into(),
                    sum: Some("h1:NIvaJDMOsjHA8n1jAhLSgzrAzy1Hgr+hNrb57e+94F0=".into()),
                    replace: None,
                },
                Module {
                    path: "example.com/old".into(),
                    version: "v1.0.0".into(),
                    sum: None,
                    replace: Some(Box::new(Module {
                        path: "example.com/new".into(),
                        version: "v1.1.0".into(),
                        sum: None,
                        replace: None,
                    })),
                },
            ],
            settings: vec![("GOOS".into(), "linux".into())],
        }
    }

    #[test]
    fn purls_and_checksums() {
        let p = Platform::new("linux", "arm", Some("v7"));
        assert_eq!(
            oci_purl("ghcr.io/acme/app", "sha256:ab", Some(&p)),
            "pkg:oci/app@sha256%3Aab?arch=arm&os=linux&variant=v7&repository_url=ghcr.io/acme/app"
        );
        assert_eq!(
            h1_hex("h1:NIvaJDMOsjHA8n1jAhLSgzrAzy1Hgr+hNrb57e+94F0=").as_deref(),
            Some("348bda24330eb231c0f27d630212d2833ac0cf2d4782bfa136b6f9edefbde05d")
        );
        assert_eq!(h1_hex("h1:short"), None);
        assert_eq!(
            base_repository("localhost:5000/base:v1"),
            "localhost:5000/base"
        );
        assert_eq!(
            base_repository("localhost:5000/base"),
            "localhost:5000/base"
        );
    }

    #[test]
    fn documents_name_modules_and_replacements() {
        let info = info();
        let platform = Platform::new("linux", "amd64", None);
        let subject = SbomSubject {
            repository: "ghcr.io/acme/app",
            digest: "sha256:00",
            platform: Some(&platform),
            build_info: Some(&info),
            base: Some(("cgr.dev/chainguard/static:latest", "sha256:11")),
            variants: &[],
            created: 0,
        };
        let s = spdx(&subject).to_string();
        assert!(s.contains("pkg:golang/github.com/google/uuid@v1.6.0"));
        assert!(s.contains("pkg:golang/example.com/new@v1.1.0"));
        assert!(s.contains("replaces example.com/old@v1.0.0"));
        assert!(s.contains("DESCENDANT_OF"));
        let c = cyclonedx(&subject);
        assert_eq!(c["specVersion"], "1.6");
        assert!(c["serialNumber"].as_str().unwrap().starts_with("urn:uuid:"));
        assert_eq!(c["components"].as_array().unwrap().len(), 4);
    }
}

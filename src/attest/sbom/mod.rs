//! SBOMs from Go build info: SPDX 2.3 JSON and CycloneDX 1.6 JSON, one per platform
//! image and one for the index (with the platform images as its variants).

use base64::Engine as _;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use super::purl;
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

/// The CycloneDX property that carries a module's go.sum hash.
const DIRHASH_PROPERTY: &str = "gantry:go:module:h1-dirhash";

/// `pkg:oci/<name>@sha256:<hex>?arch=…&os=…&repository_url=…&variant=…`.
pub fn oci_purl(repository: &str, digest: &str, platform: Option<&Platform>) -> String {
    let name = repository.rsplit('/').next().unwrap_or(repository);
    let mut qualifiers = Vec::new();
    if let Some(p) = platform {
        qualifiers.push(("arch", p.architecture.as_str()));
        qualifiers.push(("os", p.os.as_str()));
        if let Some(v) = &p.variant {
            qualifiers.push(("variant", v.as_str()));
        }
    }
    if repository.contains('/') {
        qualifiers.push(("repository_url", repository));
    }
    purl("oci", name, Some(digest), &qualifiers)
}

/// `pkg:golang/<module>@<version>`.
pub fn golang_purl(path: &str, version: Option<&str>) -> String {
    purl("golang", path, version, &[])
}

/// A Go module as the SBOMs list it.
#[derive(Debug)]
struct GoModule<'a> {
    /// Module path (Go's spelling: it is case-sensitive) and version.
    path: &'a str,
    version: Option<&'a str>,
    /// go.sum's `h1:` hash of what was built, when Go recorded one: a SHA-256 over
    /// the list of the module's file hashes, so not a hash of any one download.
    dirhash: Option<&'a str>,
    /// Where it can be downloaded; None for a local directory.
    download: Option<String>,
    /// What a `replace` directive did, when there was one.
    note: Option<String>,
}

impl<'a> GoModule<'a> {
    /// The module that actually got built: the replacement when there is one. A
    /// local directory has no module path of its own, so it keeps the path of the
    /// module it stands in for, with the version Go gave it.
    fn of(module: &'a Module) -> Self {
        let Some(replacement) = module.replace.as_deref() else {
            return GoModule::published(module, None);
        };
        if is_directory(&replacement.path) {
            // An absolute directory is this machine's, and says nothing to a reader.
            let note = if replacement.path.starts_with('/') || replacement.path.contains('\\') {
                format!(
                    "replaces {}@{} with a local directory",
                    module.path, module.version
                )
            } else {
                format!(
                    "replaces {}@{} with the local directory {}",
                    module.path, module.version, replacement.path
                )
            };
            return GoModule {
                path: &module.path,
                version: Some(replacement.version.as_str()).filter(|v| !v.is_empty()),
                dirhash: None,
                download: None,
                note: Some(note),
            };
        }
        GoModule::published(
            replacement,
            Some(format!("replaces {}@{}", module.path, module.version)),
        )
    }

    fn published(module: &'a Module, note: Option<String>) -> Self {
        let version = Some(module.version.as_str()).filter(|v| !v.is_empty());
        GoModule {
            path: &module.path,
            version,
            dirhash: module.sum.as_deref().filter(|s| is_h1(s)),
            // `(devel)` is a main module built from its source tree: not on a proxy.
            download: version.filter(|v| *v != "(devel)").map(|v| {
                format!(
                    "https://proxy.golang.org/{}/@v/{}.zip",
                    proxy_escape(&module.path),
                    proxy_escape(v)
                )
            }),
            note,
        }
    }

    /// The Go standard library of the toolchain `go_version` names.
    fn stdlib(go_version: &'a str, version: Option<&'a str>) -> Self {
        GoModule {
            path: "stdlib",
            version,
            dirhash: None,
            download: Some("https://go.dev/dl/".to_string()),
            note: version
                .is_none()
                .then(|| format!("the standard library of {go_version}")),
        }
    }

    fn purl(&self) -> String {
        golang_purl(self.path, self.version)
    }
}

/// Whether a `replace` target is a directory rather than a module path (Go's rule:
/// it starts with `./`, `../` or is absolute).
fn is_directory(path: &str) -> bool {
    path.starts_with('.')
        || path.starts_with('/')
        || path.contains('\\')
        || path.as_bytes().get(1) == Some(&b':')
}

/// The module proxy's spelling of a path or version: every uppercase letter as `!`
/// and its lowercase, so that case survives case-insensitive file systems.
fn proxy_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii_uppercase() {
            out.push('!');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Whether `sum` is go.sum's `h1:<base64 of 32 bytes>`.
fn is_h1(sum: &str) -> bool {
    sum.strip_prefix("h1:")
        .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
        .is_some_and(|bytes| bytes.len() == 32)
}

/// The standard library's version as a module version, as Go's vulnerability tools
/// spell it: `go1.22.3` is `v1.22.3`, `go1.22` is `v1.22.0`, `go1.22rc1` is
/// `v1.22.0-rc.1`. None for a development toolchain, which has no release.
fn stdlib_version(go_version: &str) -> Option<String> {
    let release = go_version.split_whitespace().next()?.strip_prefix("go")?;
    let end = release
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(release.len());
    let (numbers, pre) = release.split_at(end);
    let numbers: Vec<u32> = numbers
        .split('.')
        .map(|n| n.parse().ok())
        .collect::<Option<_>>()?;
    let mut version = match numbers.as_slice() {
        [major, minor] => format!("v{major}.{minor}.0"),
        [major, minor, patch] => format!("v{major}.{minor}.{patch}"),
        _ => return None,
    };
    if !pre.is_empty() {
        let (kind, n) = pre.split_at(pre.find(|c: char| c.is_ascii_digit())?);
        let n: u32 = n.parse().ok()?;
        if !matches!(kind, "rc" | "beta") {
            return None;
        }
        version.push_str(&format!("-{kind}.{n}"));
    }
    Some(version)
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
        "externalRefs": [purl_ref(oci_purl(subject.repository, subject.digest, subject.platform))],
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
            "externalRefs": [purl_ref(oci_purl(subject.repository, digest, Some(platform)))],
        }));
        relate(&id, "VARIANT_OF", &image_id);
    }

    if let Some(info) = subject.build_info {
        let main_id = "SPDXRef-Main".to_string();
        let main = GoModule::of(&info.main);
        let mut comment = format!("Go package {}", info.path);
        if !info.go_version.is_empty() {
            comment.push_str(&format!(", built with {}", info.go_version));
        }
        comment.push_str(&format!("; build settings: {}", settings_text(info)));
        if let Some(note) = &main.note {
            comment.push_str(&format!("; {note}"));
        }
        let mut package = json!({
            "SPDXID": main_id,
            "name": main.path,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "primaryPackagePurpose": "APPLICATION",
            "comment": comment,
            "externalRefs": [purl_ref(main.purl())],
        });
        if let Some(version) = main.version {
            package["versionInfo"] = json!(version);
        }
        packages.push(package);
        relate(&image_id, "CONTAINS", &main_id);
        let stdlib_release = stdlib_version(&info.go_version);
        if !info.go_version.is_empty() {
            let stdlib = GoModule::stdlib(&info.go_version, stdlib_release.as_deref());
            packages.push(spdx_module("SPDXRef-Stdlib", &stdlib, subject.created));
            relate(&main_id, "DEPENDS_ON", "SPDXRef-Stdlib");
        }
        for (n, dep) in info.deps.iter().enumerate() {
            let id = spdx_id("Module", n);
            packages.push(spdx_module(&id, &GoModule::of(dep), subject.created));
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
            "externalRefs": [purl_ref(oci_purl(base_repository(name), digest, subject.platform))],
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

/// An SPDX external reference holding a purl.
fn purl_ref(purl: String) -> Value {
    json!({"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl", "referenceLocator": purl})
}

/// A module as an SPDX package. Its go.sum hash is not a checksum of anything SPDX
/// could check (SPDX checksums are of the package's file), so it is an annotation
/// that says what it is.
fn spdx_module(id: &str, module: &GoModule, created: i64) -> Value {
    let mut p = json!({
        "SPDXID": id,
        "name": module.path,
        "downloadLocation": module.download.as_deref().unwrap_or("NOASSERTION"),
        "filesAnalyzed": false,
        "primaryPackagePurpose": "LIBRARY",
        "externalRefs": [purl_ref(module.purl())],
    });
    if let Some(version) = module.version {
        p["versionInfo"] = json!(version);
    }
    if let Some(sum) = module.dirhash {
        p["annotations"] = json!([{
            "annotationDate": rfc3339(created),
            "annotationType": "OTHER",
            "annotator": format!("Tool: {TOOL}"),
            "comment": format!("go module h1 dirhash (go.sum): {sum}"),
        }]);
    }
    if let Some(note) = &module.note {
        p["comment"] = json!(note);
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
        let main = GoModule::of(&info.main);
        let main_ref = main.purl();
        let mut properties = vec![json!({"name": "gantry:go:package", "value": info.path})];
        if !info.go_version.is_empty() {
            properties.push(json!({"name": "gantry:go:version", "value": info.go_version}));
        }
        for (k, v) in &info.settings {
            properties.push(json!({"name": format!("gantry:go:build:{k}"), "value": v}));
        }
        let mut c = cyclonedx_module("application", &main);
        if let Some(own) = c["properties"].as_array() {
            properties.extend(own.iter().cloned());
        }
        c["properties"] = json!(properties);
        components.push(c);
        image_deps.push(main_ref.clone());
        let mut modules = Vec::new();
        let stdlib_release = stdlib_version(&info.go_version);
        if !info.go_version.is_empty() {
            modules.push(GoModule::stdlib(
                &info.go_version,
                stdlib_release.as_deref(),
            ));
        }
        modules.extend(info.deps.iter().map(GoModule::of));
        let mut main_deps: Vec<String> = Vec::new();
        for module in &modules {
            let purl = module.purl();
            // Two modules replaced by the same one are one component.
            if purl == main_ref || main_deps.contains(&purl) {
                continue;
            }
            components.push(cyclonedx_module("library", module));
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

/// A module as a CycloneDX component. Its go.sum hash is a property, not a `hashes`
/// entry: those are hashes of the component's own bytes, which the h1 hash is not.
fn cyclonedx_module(kind: &str, module: &GoModule) -> Value {
    let purl = module.purl();
    let mut c = json!({"type": kind, "bom-ref": purl, "name": module.path, "purl": purl});
    if let Some(version) = module.version {
        c["version"] = json!(version);
    }
    if let Some(note) = &module.note {
        c["description"] = json!(note);
    }
    if let Some(sum) = module.dirhash {
        c["properties"] = json!([{"name": DIRHASH_PROPERTY, "value": sum}]);
    }
    if let Some(url) = &module.download {
        c["externalReferences"] = json!([{"type": "distribution", "url": url}]);
    }
    c
}

#[cfg(test)]
mod tests;

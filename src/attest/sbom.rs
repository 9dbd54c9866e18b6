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
mod tests {
    use super::*;

    const UUID_SUM: &str = "h1:NIvaJDMOsjHA8n1jAhLSgzrAzy1Hgr+hNrb57e+94F0=";

    fn module(path: &str, version: &str, sum: Option<&str>) -> Module {
        Module {
            path: path.into(),
            version: version.into(),
            sum: sum.map(str::to_string),
            replace: None,
        }
    }

    fn replaced(original: Module, replacement: Module) -> Module {
        Module {
            replace: Some(Box::new(replacement)),
            ..original
        }
    }

    fn info() -> BuildInfo {
        BuildInfo {
            go_version: "go1.26.8".into(),
            path: "example.com/app".into(),
            main: module("example.com/app", "(devel)", None),
            deps: vec![
                module("github.com/google/uuid", "v1.6.0", Some(UUID_SUM)),
                replaced(
                    module("example.com/old", "v1.0.0", None),
                    module("example.com/new", "v1.1.0", None),
                ),
                module("github.com/BurntSushi/toml", "v2.0.0+incompatible", None),
                replaced(
                    module("example.com/Local", "v1.2.0", None),
                    module("../local", "(devel)", None),
                ),
            ],
            settings: vec![("GOOS".into(), "linux".into())],
        }
    }

    fn subject<'a>(info: &'a BuildInfo, platform: &'a Platform) -> SbomSubject<'a> {
        SbomSubject {
            repository: "ghcr.io/acme/app",
            digest: "sha256:00",
            platform: Some(platform),
            build_info: Some(info),
            base: Some(("cgr.dev/chainguard/static:latest", "sha256:11")),
            variants: &[],
            created: 0,
        }
    }

    #[test]
    fn image_purls_and_references() {
        let p = Platform::new("linux", "arm", Some("v7"));
        assert_eq!(
            oci_purl("ghcr.io/acme/App", "sha256:ab", Some(&p)),
            "pkg:oci/app@sha256:ab?arch=arm&os=linux&repository_url=ghcr.io/acme/App&variant=v7"
        );
        assert_eq!(
            oci_purl("hello", "sha256:ab", None),
            "pkg:oci/hello@sha256:ab"
        );
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
    fn go_versions_as_stdlib_versions() {
        assert_eq!(stdlib_version("go1.26.8").as_deref(), Some("v1.26.8"));
        assert_eq!(stdlib_version("go1.20").as_deref(), Some("v1.20.0"));
        assert_eq!(stdlib_version("go1.22rc1").as_deref(), Some("v1.22.0-rc.1"));
        assert_eq!(
            stdlib_version("go1.18beta2").as_deref(),
            Some("v1.18.0-beta.2")
        );
        assert_eq!(
            stdlib_version("go1.25.1 X:nodwarf5").as_deref(),
            Some("v1.25.1")
        );
        assert_eq!(stdlib_version("devel go1.27-abcdef Mon Jan 1"), None);
        assert_eq!(stdlib_version("go1"), None);
        assert_eq!(stdlib_version(""), None);
    }

    #[test]
    fn modules_as_listed() {
        let info = info();
        let main = GoModule::of(&info.main);
        assert_eq!(main.purl(), "pkg:golang/example.com/app@%28devel%29");
        assert_eq!(main.download, None);
        let plain = GoModule::of(&info.deps[0]);
        assert_eq!(plain.purl(), "pkg:golang/github.com/google/uuid@v1.6.0");
        assert_eq!(plain.dirhash, Some(UUID_SUM));
        assert_eq!(
            plain.download.as_deref(),
            Some("https://proxy.golang.org/github.com/google/uuid/@v/v1.6.0.zip")
        );
        let swapped = GoModule::of(&info.deps[1]);
        assert_eq!(swapped.purl(), "pkg:golang/example.com/new@v1.1.0");
        assert_eq!(
            swapped.note.as_deref(),
            Some("replaces example.com/old@v1.0.0")
        );
        let upper = GoModule::of(&info.deps[2]);
        assert_eq!(
            upper.purl(),
            "pkg:golang/github.com/burntsushi/toml@v2.0.0%2Bincompatible"
        );
        assert_eq!(upper.path, "github.com/BurntSushi/toml");
        assert_eq!(
            upper.download.as_deref(),
            Some(
                "https://proxy.golang.org/github.com/!burnt!sushi/toml/@v/v2.0.0+incompatible.zip"
            )
        );
        // A local directory keeps the path it stands in for, and has no download.
        let local = GoModule::of(&info.deps[3]);
        assert_eq!(local.purl(), "pkg:golang/example.com/local@%28devel%29");
        assert_eq!(local.download, None);
        assert_eq!(
            local.note.as_deref(),
            Some("replaces example.com/Local@v1.2.0 with the local directory ../local")
        );
        // Only a well-formed h1 hash is recorded as one.
        assert!(is_h1(UUID_SUM));
        assert!(!is_h1("h1:short"));
        assert!(!is_h1("h2:NIvaJDMOsjHA8n1jAhLSgzrAzy1Hgr+hNrb57e+94F0="));
    }

    #[test]
    fn spdx_lists_stdlib_and_names_the_dirhash_for_what_it_is() {
        let info = info();
        let platform = Platform::new("linux", "amd64", None);
        let doc = spdx(&subject(&info, &platform));
        let packages = doc["packages"].as_array().unwrap();
        let by_name = |name: &str| packages.iter().find(|p| p["name"] == name).unwrap();
        assert_eq!(
            by_name("stdlib")["externalRefs"][0]["referenceLocator"],
            "pkg:golang/stdlib@v1.26.8"
        );
        let uuid = by_name("github.com/google/uuid");
        assert!(uuid.get("checksums").is_none(), "{uuid}");
        let note = uuid["annotations"][0]["comment"].as_str().unwrap();
        assert!(
            note.contains("go module h1 dirhash") && note.contains(UUID_SUM),
            "{note}"
        );
        assert_eq!(
            by_name("github.com/BurntSushi/toml")["externalRefs"][0]["referenceLocator"],
            "pkg:golang/github.com/burntsushi/toml@v2.0.0%2Bincompatible"
        );
        assert_eq!(
            by_name("example.com/app")["externalRefs"][0]["referenceLocator"],
            "pkg:golang/example.com/app@%28devel%29"
        );
        assert!(doc.to_string().contains("DESCENDANT_OF"));
        // Only the image's own digest is a checksum.
        let checksums = packages
            .iter()
            .filter(|p| p.get("checksums").is_some())
            .count();
        assert_eq!(checksums, 1);
    }

    #[test]
    fn cyclonedx_lists_stdlib_with_its_dependency_entry() {
        let info = info();
        let platform = Platform::new("linux", "amd64", None);
        let c = cyclonedx(&subject(&info, &platform));
        assert_eq!(c["specVersion"], "1.6");
        assert!(c["serialNumber"].as_str().unwrap().starts_with("urn:uuid:"));
        let components = c["components"].as_array().unwrap();
        // main, stdlib, four modules, the base.
        assert_eq!(components.len(), 7);
        let stdlib = components.iter().find(|c| c["name"] == "stdlib").unwrap();
        assert_eq!(stdlib["purl"], "pkg:golang/stdlib@v1.26.8");
        assert_eq!(stdlib["bom-ref"], stdlib["purl"]);
        let deps = c["dependencies"].as_array().unwrap();
        let entry = |r: &Value| deps.iter().find(|d| d["ref"] == *r).cloned();
        assert!(entry(&stdlib["bom-ref"]).is_some());
        let main = entry(&json!("pkg:golang/example.com/app@%28devel%29")).unwrap();
        assert!(main["dependsOn"]
            .as_array()
            .unwrap()
            .contains(&stdlib["bom-ref"]));
        // Every reference in the graph is a component or the image itself.
        let refs: Vec<&Value> = components
            .iter()
            .map(|c| &c["bom-ref"])
            .chain([&c["metadata"]["component"]["bom-ref"]])
            .collect();
        for d in deps {
            assert!(refs.contains(&&d["ref"]), "{d}");
            for on in d["dependsOn"].as_array().unwrap() {
                assert!(refs.contains(&on), "{on}");
            }
        }
        let uuid = components
            .iter()
            .find(|c| c["name"] == "github.com/google/uuid")
            .unwrap();
        assert!(uuid.get("hashes").is_none(), "{uuid}");
        assert_eq!(uuid["properties"][0]["name"], DIRHASH_PROPERTY);
        assert_eq!(uuid["properties"][0]["value"], UUID_SUM);
    }
}

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
        Some("https://proxy.golang.org/github.com/!burnt!sushi/toml/@v/v2.0.0+incompatible.zip")
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

//! Pure assembly: layers + config -> manifest, images -> index. No I/O.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::{
    annotation, canonical_json, media_type, rfc3339, Artifact, Blob, Descriptor, Digest, Image,
    Index, Manifest,
};
use crate::platform::Platform;

/// Where the binary lives in a Linux image, as ko puts it.
pub const APP_DIR: &str = "/ko-app";
/// Where `kodata/` lands, as ko puts it.
pub const KO_DATA_PATH: &str = "/var/run/ko";
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A base image for one platform: its config and its layers, still in the registry.
#[derive(Debug, Clone)]
pub struct BaseImage {
    /// The reference the user gave (`cgr.dev/chainguard/static:latest`).
    pub name: String,
    /// The digest of this platform's manifest.
    pub digest: Digest,
    pub config: Value,
    pub layers: Vec<Blob>,
}

/// What every image of one package shares.
#[derive(Debug, Clone)]
pub struct ImageSpec {
    /// The binary's name (last element of the import path).
    pub name: String,
    /// Unix time for `created` (SOURCE_DATE_EPOCH or 0).
    pub created: i64,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// The user the program runs as in Linux images (`UID[:GID]`), over the base's.
    pub user: Option<String>,
}

/// A Linux image: the base's layers, then ours (kodata, then the binary).
pub fn assemble_linux_image(
    spec: &ImageSpec,
    platform: &Platform,
    base: Option<&BaseImage>,
    layers: Vec<(Blob, Digest)>,
) -> Image {
    let mut config = base.map(|b| b.config.clone()).unwrap_or_else(
        || json!({"config": {}, "rootfs": {"type": "layers", "diff_ids": []}, "history": []}),
    );
    let created = rfc3339(spec.created);
    set_platform(&mut config, platform);
    config["created"] = json!(created);

    let run = ensure_object(&mut config, "config");
    let entrypoint = format!("{APP_DIR}/{}", spec.name);
    run.insert("Entrypoint".into(), json!([entrypoint]));
    run.remove("Cmd");
    let mut env: Vec<String> = run
        .get("Env")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    match env.iter_mut().find(|e| e.starts_with("PATH=")) {
        Some(path) => {
            if !path.split(':').any(|p| p == APP_DIR) {
                path.push(':');
                path.push_str(APP_DIR);
            }
        }
        None => env.push(format!("PATH={DEFAULT_PATH}:{APP_DIR}")),
    }
    env.retain(|e| !e.starts_with("KO_DATA_PATH="));
    env.push(format!("KO_DATA_PATH={KO_DATA_PATH}"));
    run.insert("Env".into(), json!(env));
    if let Some(user) = &spec.user {
        run.insert("User".into(), json!(user));
    }
    merge_labels(run, &spec.labels);

    let mut manifest_layers: Vec<Blob> = base.map(|b| b.layers.clone()).unwrap_or_default();
    for layer in &mut manifest_layers {
        // Same bytes, OCI name: an OCI manifest should list OCI layer types.
        if layer.descriptor.media_type == media_type::DOCKER_LAYER_GZIP {
            layer.descriptor.media_type = media_type::OCI_LAYER_GZIP.to_string();
        }
    }
    let has_history = config.get("history").and_then(Value::as_array).is_some();
    for (blob, diff_id) in layers {
        push_diff_id(&mut config, &diff_id);
        if has_history {
            push_history(
                &mut config,
                &created,
                &format!("gantry build {}", spec.name),
            );
        }
        manifest_layers.push(blob);
    }

    let mut annotations = spec.annotations.clone();
    if let Some(base) = base {
        annotations.insert(annotation::BASE_NAME.into(), base.name.clone());
        annotations.insert(annotation::BASE_DIGEST.into(), base.digest.to_string());
    }
    let config = Blob::from_bytes(media_type::OCI_CONFIG, canonical_json(&config));
    finish_image(
        platform,
        config,
        manifest_layers,
        annotations,
        base.map(|b| b.digest.clone()),
    )
}

/// The runnable wasm image, as containerd/runwasi shims and crun run it: one layer with `/<name>.wasm`, config
/// `architecture: wasm`, entrypoint the module, crun's `compat-smart` annotation.
pub fn assemble_wasm_image(spec: &ImageSpec, platform: &Platform, layer: (Blob, Digest)) -> Image {
    let created = rfc3339(spec.created);
    let mut config = json!({
        "architecture": "wasm",
        "os": platform.os,
        "created": created,
        "config": {"Entrypoint": [format!("/{}.wasm", spec.name)]},
        "rootfs": {"type": "layers", "diff_ids": [layer.1]},
        "history": [{"created": created, "created_by": format!("gantry build {}", spec.name)}],
    });
    merge_labels(ensure_object(&mut config, "config"), &spec.labels);
    let mut annotations = spec.annotations.clone();
    annotations.insert(annotation::WASM_VARIANT.into(), "compat-smart".into());
    let config = Blob::from_bytes(media_type::OCI_CONFIG, canonical_json(&config));
    finish_image(platform, config, vec![layer.0], annotations, None)
}

/// The CNCF Wasm OCI artifact: wasm config, the raw module as one `application/wasm`
/// layer. A separate output; never part of the runnable index.
pub fn assemble_wasm_artifact(spec: &ImageSpec, module: Blob) -> Image {
    let platform = Platform::new("wasip1", "wasm", None);
    let config = json!({
        "architecture": "wasm",
        "os": "wasip1",
        "created": rfc3339(spec.created),
        "layerDigests": [module.descriptor.digest],
    });
    let config = Blob::from_bytes(media_type::WASM_CONFIG, canonical_json(&config));
    finish_image(
        &platform,
        config,
        vec![module],
        spec.annotations.clone(),
        None,
    )
}

/// An index of `images`. One image needs no index: it is returned as it is.
pub fn assemble_index(mut images: Vec<Image>, annotations: BTreeMap<String, String>) -> Artifact {
    if images.len() == 1 {
        return Artifact::Image(images.remove(0));
    }
    let mut index = Index::new(images.iter().map(|i| i.descriptor.clone()).collect());
    index.annotations = annotations;
    let (descriptor, bytes) = index.encode();
    Artifact::Index {
        descriptor,
        bytes,
        images,
    }
}

/// How an index lists an image: its manifest's descriptor with the platform, and
/// the wasm variant annotation copied up from the manifest, since runtimes that pick
/// an entry of an index read it there.
pub fn index_entry(
    mut descriptor: Descriptor,
    platform: &Platform,
    manifest_annotations: &BTreeMap<String, String>,
) -> Descriptor {
    descriptor.platform = Some(platform.clone());
    if let Some(variant) = manifest_annotations.get(annotation::WASM_VARIANT) {
        descriptor
            .annotations
            .insert(annotation::WASM_VARIANT.into(), variant.clone());
    }
    descriptor
}

fn finish_image(
    platform: &Platform,
    config: Blob,
    layers: Vec<Blob>,
    annotations: BTreeMap<String, String>,
    base_digest: Option<Digest>,
) -> Image {
    let mut manifest = Manifest::new(
        config.descriptor.clone(),
        layers.iter().map(|l| l.descriptor.clone()).collect(),
    );
    manifest.annotations = annotations;
    let (descriptor, bytes) = manifest.encode();
    let descriptor = index_entry(descriptor, platform, &manifest.annotations);
    Image {
        platform: platform.clone(),
        descriptor,
        manifest: bytes,
        config,
        layers,
        base_digest,
    }
}

fn set_platform(config: &mut Value, platform: &Platform) {
    config["architecture"] = json!(platform.architecture);
    config["os"] = json!(platform.os);
    match &platform.variant {
        Some(v) => config["variant"] = json!(v),
        None => {
            if let Some(obj) = config.as_object_mut() {
                obj.remove("variant");
            }
        }
    }
}

/// The object at `key`, created when missing or not an object.
fn ensure_object<'a>(value: &'a mut Value, key: &str) -> &'a mut serde_json::Map<String, Value> {
    if !value[key].is_object() {
        value[key] = json!({});
    }
    match value[key].as_object_mut() {
        Some(obj) => obj,
        None => unreachable!("set to an object above"),
    }
}

fn merge_labels(run: &mut serde_json::Map<String, Value>, labels: &BTreeMap<String, String>) {
    if labels.is_empty() {
        return;
    }
    let entry = run.entry("Labels").or_insert_with(|| json!({}));
    if !entry.is_object() {
        *entry = json!({});
    }
    if let Some(obj) = entry.as_object_mut() {
        for (k, v) in labels {
            obj.insert(k.clone(), json!(v));
        }
    }
}

fn push_diff_id(config: &mut Value, diff_id: &str) {
    let rootfs = ensure_object(config, "rootfs");
    rootfs.insert("type".into(), json!("layers"));
    let ids = rootfs.entry("diff_ids").or_insert_with(|| json!([]));
    if let Some(a) = ids.as_array_mut() {
        a.push(json!(diff_id));
    }
}

fn push_history(config: &mut Value, created: &str, created_by: &str) {
    if let Some(h) = config.get_mut("history").and_then(Value::as_array_mut) {
        h.push(json!({"created": created, "created_by": created_by}));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::{BlobSource, Descriptor};
    use bytes::Bytes;

    /// A stand-in digest, named for what it stands for.
    fn digest(name: &str) -> Digest {
        Digest::of(name.as_bytes())
    }

    fn layer(name: &str, diff_id: &str) -> (Blob, Digest) {
        (
            Blob {
                descriptor: Descriptor::new(media_type::OCI_LAYER_GZIP, digest(name), 10),
                source: BlobSource::Bytes(Bytes::new()),
            },
            digest(diff_id),
        )
    }

    fn spec() -> ImageSpec {
        ImageSpec {
            name: "hello".into(),
            created: 0,
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            user: None,
        }
    }

    #[test]
    fn linux_image_on_base_keeps_base_and_sets_ko_layout() {
        let base = BaseImage {
            name: "example.com/base:1".into(),
            digest: Digest::of(b"base"),
            config: json!({"architecture": "arm", "os": "linux", "variant": "v7",
                "config": {"Env": ["PATH=/usr/bin", "TZ=UTC"], "Cmd": ["/bin/sh"], "User": "65532"},
                "rootfs": {"type": "layers", "diff_ids": ["sha256:d0"]},
                "history": [{"created_by": "base"}]}),
            layers: vec![Blob {
                descriptor: Descriptor::new(media_type::DOCKER_LAYER_GZIP, digest("l0"), 5),
                source: BlobSource::Remote {
                    repository: "example.com/base".into(),
                },
            }],
        };
        let platform = Platform::new("linux", "arm", Some("v7"));
        let image = assemble_linux_image(
            &spec(),
            &platform,
            Some(&base),
            vec![layer("sha256:l1", "sha256:d1")],
        );
        let BlobSource::Bytes(cfg) = &image.config.source else {
            panic!("config in memory")
        };
        let cfg: Value = serde_json::from_slice(cfg).unwrap();
        assert_eq!(cfg["config"]["Entrypoint"], json!(["/ko-app/hello"]));
        assert!(cfg["config"].get("Cmd").is_none());
        assert_eq!(cfg["config"]["User"], "65532");
        assert_eq!(
            cfg["config"]["Env"],
            json!([
                "PATH=/usr/bin:/ko-app",
                "TZ=UTC",
                "KO_DATA_PATH=/var/run/ko"
            ])
        );
        assert_eq!(
            cfg["rootfs"]["diff_ids"],
            json!(["sha256:d0", digest("sha256:d1")])
        );
        assert_eq!(cfg["history"].as_array().unwrap().len(), 2);
        assert_eq!(cfg["created"], "1970-01-01T00:00:00Z");

        let m: Value = serde_json::from_slice(&image.manifest).unwrap();
        assert_eq!(m["mediaType"], media_type::OCI_MANIFEST);
        assert_eq!(m["layers"][0]["mediaType"], media_type::OCI_LAYER_GZIP);
        assert_eq!(m["layers"][0]["digest"], json!(digest("l0")));
        assert_eq!(m["layers"][1]["digest"], json!(digest("sha256:l1")));
        assert_eq!(
            m["annotations"][annotation::BASE_DIGEST],
            Digest::of(b"base").to_string()
        );
        assert_eq!(image.descriptor.platform, Some(platform));
    }

    #[test]
    fn wasm_image_and_index() {
        let wasi = Platform::new("wasi", "wasm", None);
        let wasip1 = Platform::new("wasip1", "wasm", None);
        let l = layer("sha256:w", "sha256:wd");
        let a = assemble_wasm_image(&spec(), &wasi, l.clone());
        let b = assemble_wasm_image(&spec(), &wasip1, l);
        assert_eq!(a.layers[0].descriptor, b.layers[0].descriptor);
        let m: Value = serde_json::from_slice(&a.manifest).unwrap();
        assert_eq!(m["annotations"][annotation::WASM_VARIANT], "compat-smart");

        let Artifact::Index { bytes, images, .. } = assemble_index(vec![a, b], BTreeMap::new())
        else {
            panic!("two images make an index")
        };
        assert_eq!(images.len(), 2);
        let idx: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(idx["mediaType"], media_type::OCI_INDEX);
        assert_eq!(idx["manifests"][0]["platform"]["os"], "wasi");
        assert_eq!(idx["manifests"][1]["platform"]["os"], "wasip1");
        assert_eq!(idx["manifests"][0]["platform"]["architecture"], "wasm");
    }

    #[test]
    fn one_image_is_not_wrapped_in_an_index() {
        let wasi = Platform::new("wasi", "wasm", None);
        let a = assemble_wasm_image(&spec(), &wasi, layer("sha256:w", "sha256:wd"));
        assert!(matches!(
            assemble_index(vec![a], BTreeMap::new()),
            Artifact::Image(_)
        ));
    }
}

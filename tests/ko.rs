//! ko users switch with no edits: ko's environment variables and flag spellings.

mod common;

use common::*;

#[test]
fn ko_config_path_default_base_and_comma_separated_tags() {
    let registry = TestRegistry::start();
    // A base built from scratch, to build on.
    let base = format!("{}/base", registry.host);
    ok(&gantry(
        &example("hello"),
        &[
            "build",
            "--repo",
            &base,
            "--platform",
            "linux/arm64",
            "--base",
            "scratch",
            "--tag",
            "v1",
        ],
    ));
    // The config lives elsewhere (KO_CONFIG_PATH names its directory); its default base
    // does not exist, and KO_DEFAULTBASEIMAGE must win over it.
    let config = tempfile::tempdir().unwrap();
    std::fs::write(
        config.path().join(".ko.yaml"),
        "defaultBaseImage: base.gantry-test.invalid/none:latest\ndefaultPlatforms: [linux/arm64]\n",
    )
    .unwrap();
    let repo = format!("{}/app", registry.host);
    let base_ref = format!("{base}:v1");
    let refs = config.path().join("refs.txt");
    let printed = ok(&gantry_env(
        &example("hello"),
        &[
            "build",
            "--repo",
            &repo,
            "-t",
            "a,b",
            "--tags",
            "c",
            "--image-refs",
            refs.to_str().unwrap(),
        ],
        &[
            ("KO_CONFIG_PATH", config.path().to_str().unwrap()),
            ("KO_DEFAULTBASEIMAGE", &base_ref),
        ],
    ));
    let listed = json(&skopeo_ok(&["list-tags", &format!("docker://{repo}")]));
    // Besides the three tags, the fallback index listing the unsigned SBOMs and
    // provenance (this registry has no referrers API).
    let mut tags: Vec<&str> = listed["Tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .filter(|t| !t.starts_with("sha256-"))
        .collect();
    tags.sort();
    assert_eq!(tags, ["a", "b", "c"]);
    // --image-refs: the references printed, a line each, and the one the tags name.
    let written = std::fs::read_to_string(&refs).unwrap();
    assert_eq!(written, printed);
    let digest = sha256sum(&skopeo_ok(&[
        "inspect",
        "--raw",
        &format!("docker://{repo}:a"),
    ]));
    assert_eq!(written, format!("{repo}@{digest}\n"));
    // One platform, from the config found through KO_CONFIG_PATH, on the base the
    // variable named.
    let manifest = json(&skopeo_ok(&[
        "inspect",
        "--raw",
        &format!("docker://{repo}:a"),
    ]));
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.base.name"],
        base_ref.as_str(),
        "{manifest}"
    );
    let config = json(&skopeo_ok(&[
        "inspect",
        "--config",
        &format!("docker://{repo}:a"),
    ]));
    assert_eq!(config["architecture"], "arm64", "{config}");
}

#[test]
fn ko_naming_flags_give_kos_repository_names() {
    let registry = TestRegistry::start();
    let dest = format!("{}/team", registry.host);
    let pushed = |flag: &str| {
        let out = ok(&gantry(
            &example("hello"),
            &["build", "--repo", &dest, "--platform", "wasi/wasm", flag],
        ));
        out.trim().split('@').next().unwrap().to_string()
    };
    // md5("example.com/hello") = 124ec4359fcc3b362d8aa16b0f28dd36, computed independently.
    assert_eq!(
        pushed("--ko-names"),
        format!("{dest}/hello-124ec4359fcc3b362d8aa16b0f28dd36")
    );
    assert_eq!(pushed("-B"), format!("{dest}/hello"));
    assert_eq!(pushed("-P"), format!("{dest}/example.com/hello"));
    assert_eq!(pushed("--bare"), dest);
    let mut repos = registry.repositories();
    repos.sort();
    assert_eq!(
        repos,
        [
            "team",
            "team/example.com/hello",
            "team/hello",
            "team/hello-124ec4359fcc3b362d8aa16b0f28dd36",
        ]
    );
}

/// ko's build flags that shape the program and image: `--image-user`, `--ldflags`,
/// `--disable-optimizations`; read back by skopeo and by `go version -m` on the binary
/// from the image, and the program run. `--push=false` pushes nothing.
#[test]
fn ko_build_flags_shape_the_program_and_push_false_pushes_nothing() {
    let registry = TestRegistry::start();
    let repo = format!("{}/flags", registry.host);
    let printed = ok(&gantry(
        &example("hello"),
        &[
            "build",
            "--repo",
            &repo,
            "--platform",
            "linux/amd64",
            "--base",
            "scratch",
            "--image-user",
            "1234:5678",
            "--ldflags",
            "-s -w",
            "--disable-optimizations",
        ],
    ));
    let reference = printed.trim().to_string();
    let config = json(&skopeo_ok(&[
        "inspect",
        "--config",
        &format!("docker://{reference}"),
    ]));
    assert_eq!(config["config"]["User"], "1234:5678", "{config}");
    let (root, config) = pull_and_extract(&format!("docker://{reference}"), "linux", "amd64", None);
    let rootfs = root.path().join("rootfs");
    assert!(run_entrypoint(&rootfs, &config).contains("hello from linux/amd64"));
    let binary = rootfs.join("ko-app/hello");
    let out = std::process::Command::new(real_go())
        .args(["version", "-m"])
        .arg(&binary)
        .output()
        .expect("run go version -m");
    let info = String::from_utf8_lossy(&out.stdout);
    assert!(info.contains("-gcflags=\"all=-N -l\""), "{info}");
    // -trimpath keeps -ldflags out of the build info: its effect shows instead, a
    // binary without a symbol table.
    let symbols = std::process::Command::new(real_go())
        .args(["tool", "nm"])
        .arg(&binary)
        .output()
        .expect("run go tool nm");
    assert!(
        !symbols.status.success()
            && String::from_utf8_lossy(&symbols.stderr).contains("no symbols"),
        "--ldflags \"-s -w\" left the symbol table: {symbols:?}"
    );

    // --push=false: nothing reaches the registry; the layout holds the images.
    let before = registry.manifests_and_tags();
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let printed = ok(&gantry(
        &example("hello"),
        &[
            "build",
            "--repo",
            &repo,
            "--push=false",
            "--platform",
            "linux/amd64",
            "--base",
            "scratch",
            "--oci-layout",
            layout.to_str().unwrap(),
        ],
    ));
    assert_eq!(registry.manifests_and_tags(), before, "--push=false pushed");
    assert!(
        printed.starts_with(&format!("oci:{}@sha256:", layout.display())),
        "{printed}"
    );
    skopeo_ok(&[
        "inspect",
        "--raw",
        &format!("oci:{}:latest", layout.display()),
    ]);
}

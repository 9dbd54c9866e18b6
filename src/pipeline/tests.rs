use super::*;

#[test]
fn tags_follow_the_oci_grammar() {
    assert!(check_tag("v1.2.3").is_ok());
    assert!(check_tag("latest").is_ok());
    assert!(check_tag("_x").is_ok());
    assert!(check_tag("-x").is_err());
    assert!(check_tag("a/b").is_err());
    assert!(check_tag("a\nb").is_err());
    assert!(check_tag(&"a".repeat(129)).is_err());
}

/// A `go` that answers like Go and "builds" by running `build`.
fn fake_go(dir: &Path, build: &str) -> PathBuf {
    fake_go_listing(dir, "", build)
}

/// A `go` whose `list` first runs `before_list`.
fn fake_go_listing(dir: &Path, before_list: &str, build: &str) -> PathBuf {
    let go = dir.join("go");
    std::fs::write(
        &go,
        format!(
            "#!/bin/sh\ncase \"$1\" in\n  env) echo go1.22.0 ;;\n  list) {before_list}\n    printf 'main\\texample.com/app\\t%s\\n' \"$PWD\" ;;\n  build) {build} ;;\nesac\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&go, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    go
}

fn options(dir: &Path, go: PathBuf) -> BuildOptions {
    // As main does, before any client exists.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let package = dir.join("app");
    std::fs::create_dir_all(&package).unwrap();
    BuildOptions {
        packages: vec![".".into()],
        workdir: package,
        platforms: Some("linux/amd64,linux/arm64,wasi/wasm".into()),
        base: Some("scratch".into()),
        tags: vec!["v1".into(), "v1".into()],
        oci_layout: Some(dir.join("layout")),
        jobs: 2,
        go,
        signing: Some(Signing::Key(Box::new(
            crate::sign::Signer::with_key(
                crate::sign::keys::SigningKey::generate().unwrap(),
                &Default::default(),
            )
            .unwrap(),
        ))),
        ..BuildOptions::default()
    }
}

/// The layout's index.json entries: (ref.name, digest).
fn layout_refs(dir: &Path) -> Vec<(String, String)> {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("layout/index.json")).unwrap()).unwrap();
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["annotations"][image::annotation::REF_NAME]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                m["digest"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn every_stage_runs_in_process_with_a_fake_go_and_a_layout() {
    let dir = tempfile::tempdir().unwrap();
    let go = fake_go(
        dir.path(),
        "while [ \"$1\" != -o ]; do shift; done; printf 'built for %s/%s' \"$GOOS\" \"$GOARCH\" > \"$2\"",
    );
    let opts = options(dir.path(), go);
    let report = build(&opts, &|_, _| {}).await.unwrap();

    let image = &report.images[0];
    let platforms: Vec<&str> = image
        .platforms
        .iter()
        .map(|p| p.platform.as_str())
        .collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64", "wasi/wasm"]);
    assert_eq!(image.tags, ["v1"], "a repeated tag is applied once");
    let tagged: Vec<_> = layout_refs(dir.path())
        .into_iter()
        .filter(|(name, _)| name == "v1")
        .collect();
    assert_eq!(tagged, [("v1".to_string(), image.digest.to_string())]);

    // The arm64 image's last layer holds what `go build` wrote for arm64, at
    // ko-app/app; the blob's bytes hash to its digest.
    let blob = |digest: &str| {
        let bytes = std::fs::read(
            dir.path()
                .join("layout/blobs/sha256")
                .join(digest.trim_start_matches("sha256:")),
        )
        .unwrap();
        assert_eq!(image::Digest::of(&bytes), digest);
        bytes
    };
    let arm = &image.platforms[1];
    let layer = blob(&arm.layers.last().unwrap().digest);
    let mut tar = tar::Archive::new(flate2::read::MultiGzDecoder::new(&layer[..]));
    let mut found = None;
    for entry in tar.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap().to_str() == Some("ko-app/app") {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut entry, &mut text).unwrap();
            found = Some(text);
        }
    }
    assert_eq!(found.as_deref(), Some("built for linux/arm64"));

    // Signed: the index and each image.
    let signed: HashSet<&str> = image
        .attachments
        .iter()
        .filter(|a| a.kind == crate::sign::AttachmentKind::Signature)
        .map(|a| a.subject.as_str())
        .collect();
    assert_eq!(signed.len(), 4, "{:?}", image.attachments);

    // Again: nothing new to store, and the tag stays where it is.
    let again = build(&opts, &|_, _| {}).await.unwrap();
    assert_eq!(again.images[0].digest, image.digest, "reproducible");
    assert_eq!(
        (again.publish.manifests, again.publish.blobs_uploaded),
        (0, 0)
    );
}

/// A package named by its directory, or by an import path go.mod maps to a directory,
/// starts building while `go list` looks it up; one whose directory only go knows
/// waits for the answer.
#[tokio::test]
async fn builds_of_packages_whose_directory_is_known_start_while_they_are_looked_up() {
    for (arg, go_mod, early) in [
        (".", None, true),
        ("example.com/app", Some("module example.com/app\n"), true),
        ("example.com/app", None, false),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let marks = dir.path().join("marks");
        std::fs::create_dir(&marks).unwrap();
        let m = marks.display();
        let go = fake_go_listing(
            dir.path(),
            &format!("sleep 1; date +%s%N > {m}/listed"),
            &format!(
                "date +%s%N > {m}/built-$GOARCH; while [ \"$1\" != -o ]; do shift; done; printf 'built for %s' \"$GOARCH\" > \"$2\""
            ),
        );
        let mut opts = options(dir.path(), go);
        std::fs::write(opts.workdir.join("main.go"), "package main\n").unwrap();
        if let Some(text) = go_mod {
            std::fs::write(opts.workdir.join("go.mod"), text).unwrap();
        }
        opts.packages = vec![arg.into()];
        opts.signing = None;
        // All three at once (with fewer jobs, the first ones start early).
        opts.jobs = 3;
        let report = build(&opts, &|_, _| {}).await.unwrap();
        assert_eq!(report.images[0].platforms.len(), 3);
        let at = |name: &str| -> u128 {
            std::fs::read_to_string(marks.join(name))
                .unwrap()
                .trim()
                .parse()
                .unwrap()
        };
        for arch in ["amd64", "arm64", "wasm"] {
            let built = at(&format!("built-{arch}"));
            assert_eq!(built < at("listed"), early, "{arg}: {arch}");
        }
    }
}

#[tokio::test]
async fn a_failed_go_build_stores_nothing_and_names_the_package() {
    let dir = tempfile::tempdir().unwrap();
    let go = fake_go(dir.path(), "echo './main.go:3:1: syntax error' >&2; exit 1");
    let opts = options(dir.path(), go);
    let err = build(&opts, &|_, _| {}).await.unwrap_err().to_string();
    assert!(
        err.contains("example.com/app") && err.contains("syntax error"),
        "{err}"
    );
    assert!(
        !dir.path().join("layout").exists(),
        "a failed build wrote the layout"
    );
}

#[test]
fn packages_are_named_as_gantry_or_ko_would() {
    let dest = ImageName::parse("registry.test/acme").unwrap();
    let package = Package {
        import_path: "example.com/cmd/MyApp".into(),
        name: "MyApp".into(),
        dir: PathBuf::from("/src/cmd/MyApp"),
        kodata: None,
    };
    let named = |naming: Naming, count| naming.repository(&dest, &package, count).to_string();
    assert_eq!(named(Naming::Gantry, 1), "registry.test/acme");
    assert_eq!(named(Naming::Gantry, 2), "registry.test/acme/myapp");
    assert_eq!(named(Naming::Bare, 2), "registry.test/acme");
    assert_eq!(
        named(Naming::ImportPath, 1),
        "registry.test/acme/example.com/cmd/myapp"
    );
    assert_eq!(named(Naming::LastElement, 1), "registry.test/acme/myapp");
    // The md5 of "example.com/cmd/myapp", computed independently.
    assert_eq!(
        named(Naming::Md5Suffixed, 1),
        "registry.test/acme/myapp-4e40a62f024dc288f0b1d9c0e080ba2c"
    );
}

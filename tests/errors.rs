//! Bad input: a clear message naming what was wrong, a non-zero exit, no result on
//! stdout, and no tag moved.

mod common;

use std::path::Path;

use common::*;

/// A Go module in a temp dir with one file.
fn module(name: &str, source: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("go.mod"),
        format!("module example.com/{name}\n\ngo 1.21\n"),
    )
    .unwrap();
    std::fs::write(dir.path().join("main.go"), source).unwrap();
    dir
}

fn build_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["build", "--base", "scratch"];
    args.extend(extra);
    args
}

/// Runs gantry with a `go` that records what it is asked, asserts that the run failed
/// and that no `go build` ran; returns stderr.
fn fails_before_building(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let go = RecordingGo::new();
    let mut all = vec![go.env()];
    all.extend(env);
    let err = fails(&gantry_env(dir, args, &all));
    assert!(
        go.builds().is_empty(),
        "gantry ran {:?} before failing with: {err}",
        go.builds()
    );
    err
}

#[test]
fn platforms_that_cannot_be_images_are_explained() {
    let hello = example("hello");
    let refused =
        |platform: &str| fails_before_building(&hello, &build_args(&["--platform", platform]), &[]);
    let err = refused("js/wasm");
    assert!(
        err.contains("js/wasm cannot be a container image") && err.contains("wasi/wasm"),
        "{err}"
    );
    let err = refused("linux/sparc");
    assert!(err.contains("linux/sparc: unknown architecture"), "{err}");
    let err = refused("windows/amd64");
    assert!(err.contains("Linux and WASI images only"), "{err}");
    let err = refused("linux/arm/v9");
    assert!(err.contains("unknown variant \"v9\""), "{err}");
    let err = refused("linux");
    assert!(err.contains("os/arch[/variant]"), "{err}");
}

#[test]
fn a_library_package_is_not_a_program() {
    let lib = module("lib", "package lib\n\nfunc X() int { return 1 }\n");
    let err = fails_before_building(lib.path(), &build_args(&["--platform", "linux/amd64"]), &[]);
    assert!(
        err.contains("is `package lib`, not `package main`"),
        "{err}"
    );
    let err = fails_before_building(
        lib.path(),
        &build_args(&["--platform", "linux/amd64", "./nope"]),
        &[],
    );
    assert!(err.contains("cannot find Go package \"./nope\""), "{err}");
}

#[test]
fn missing_or_old_go_is_explained() {
    let empty = tempfile::tempdir().unwrap();
    let err = fails(&gantry_env(
        &example("hello"),
        &build_args(&["--platform", "linux/amd64"]),
        &[("PATH", empty.path().to_str().unwrap())],
    ));
    assert!(
        err.contains("no Go toolchain found") && err.contains("install Go"),
        "{err}"
    );

    // A `go` that says it is 1.20: the version gate must refuse wasm before building.
    let fake = empty.path().join("go");
    let calls = empty.path().join("calls");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{}'\necho go1.20.14\n",
            calls.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let err = fails(&gantry_env(
        &example("hello"),
        &build_args(&["--platform", "wasi/wasm"]),
        &[("GANTRY_GO", fake.to_str().unwrap())],
    ));
    assert!(
        err.contains("wasi/wasm needs Go 1.21 or newer") && err.contains("is 1.20"),
        "{err}"
    );
    let calls = std::fs::read_to_string(&calls).unwrap_or_default();
    assert!(
        !calls.is_empty() && !calls.lines().any(|c| c.starts_with("build")),
        "the fake go was asked: {calls:?}"
    );
}

#[test]
fn compile_errors_reach_the_user_as_go_printed_them_and_no_tag_moves() {
    let registry = TestRegistry::start();
    let repo = format!("{}/app", registry.host);
    let broken = module(
        "broken",
        "package main\n\nfunc main() {\n\tundefinedCall()\n}\n",
    );

    // Tag hello first; then a build of hello plus a broken package must not move it.
    ok(&gantry(
        &example("hello"),
        &build_args(&["--repo", &repo, "--platform", "linux/amd64"]),
    ));
    let before = registry.tag_digest("app", "latest").expect("tagged");
    let stored = registry.manifests_and_tags();
    let parent = broken.path().parent().unwrap();
    let hello_copy = parent.join(format!("hello-{}", std::process::id()));
    copy_dir(&example("hello"), &hello_copy);
    let go = RecordingGo::new();
    let err = fails(&gantry_env(
        parent,
        &build_args(&[
            "--repo",
            &repo,
            "--platform",
            "linux/amd64,linux/arm64",
            hello_copy.to_str().unwrap(),
            broken.path().to_str().unwrap(),
        ]),
        &[go.env()],
    ));
    std::fs::remove_dir_all(&hello_copy).unwrap();
    // The recording go sees builds when there are some (the other tests' "no build"
    // rests on that).
    assert!(
        go.builds()
            .iter()
            .any(|b| b.ends_with("example.com/broken")),
        "{:?}",
        go.calls()
    );
    assert!(
        err.contains("go build of example.com/broken for linux/"),
        "{err}"
    );
    assert!(
        err.contains("main.go:4:2: undefined: undefinedCall"),
        "{err}"
    );
    assert_eq!(
        registry.tag_digest("app", "latest").as_deref(),
        Some(before.as_str()),
        "a failed build moved the tag"
    );
    assert!(registry.tag_digest("app/hello", "latest").is_none());
    assert_eq!(
        registry.manifests_and_tags(),
        stored,
        "a failed build stored a manifest or moved a tag"
    );
}

#[test]
fn malformed_references_and_tags_are_refused_before_building() {
    let hello = example("hello");
    let err = fails_before_building(
        &hello,
        &build_args(&["--repo", "localhost:5000/Not Valid"]),
        &[],
    );
    assert!(
        err.contains("invalid image reference \"localhost:5000/Not Valid\""),
        "{err}"
    );
    let err = fails_before_building(
        &hello,
        &build_args(&["--repo", "localhost:5000/app:v1"]),
        &[],
    );
    assert!(err.contains("without a tag or digest"), "{err}");
    let err = fails_before_building(&hello, &build_args(&["--tag", "bad tag\nx"]), &[]);
    assert!(err.contains("is not a valid OCI tag"), "{err}");
    let err = fails_before_building(
        &hello,
        &["build", "--base", "not a ref!", "--platform", "linux/amd64"],
        &[],
    );
    assert!(
        err.contains("invalid image reference \"not a ref!\""),
        "{err}"
    );
}

#[test]
fn base_without_the_platform_names_what_it_has() {
    let registry = TestRegistry::start();
    let base = format!("{}/base", registry.host);
    ok(&gantry(
        &example("hello"),
        &build_args(&["--repo", &base, "--platform", "linux/amd64,linux/arm64"]),
    ));
    let stored = registry.contents();
    let err = fails(&gantry(
        &example("hello"),
        &[
            "build",
            "--base",
            &format!("{base}:latest"),
            "--platform",
            "linux/arm/v7",
        ],
    ));
    assert!(
        err.contains("has no linux/arm/v7 (it offers: linux/amd64, linux/arm64)"),
        "{err}"
    );

    // A single-manifest base says which platform it is.
    let single = format!("{}/single", registry.host);
    ok(&gantry(
        &example("hello"),
        &build_args(&["--repo", &single, "--platform", "linux/amd64"]),
    ));
    let stored_single = registry.contents();
    assert_eq!(
        stored_single.iter().find(|r| r.repo == "base"),
        stored.iter().find(|r| r.repo == "base"),
        "the failed build changed the base's repository"
    );
    let err = fails(&gantry(
        &example("hello"),
        &[
            "build",
            "--base",
            &format!("{single}:latest"),
            "--platform",
            "linux/arm64",
        ],
    ));
    assert!(
        err.contains("has no linux/arm64 (it offers: linux/amd64)"),
        "{err}"
    );

    let err = fails(&gantry(
        &example("hello"),
        &[
            "build",
            "--base",
            &format!("{base}:nosuchtag"),
            "--platform",
            "linux/amd64",
        ],
    ));
    assert!(
        err.contains(&format!("base image {base}:nosuchtag")),
        "{err}"
    );
    assert_eq!(
        registry.contents(),
        stored_single,
        "a failed build changed the registry"
    );
}

#[test]
fn unreachable_registry_is_named() {
    let port = closed_port();
    let repo = format!("127.0.0.1:{port}/app");
    let err = fails(&gantry(
        &example("hello"),
        &build_args(&["--repo", &repo, "--platform", "linux/amd64"]),
    ));
    assert!(
        err.contains(&format!("cannot reach registry 127.0.0.1:{port}")),
        "{err}"
    );
}

#[test]
fn refused_credentials_say_where_they_were_looked_for() {
    let registry = TestRegistry::start_with_auth("gantry", "s3cret-pass");
    let repo = format!("{}/app", registry.host);
    let home = tempfile::tempdir().unwrap();
    let docker = home.path().join(".docker");
    std::fs::create_dir_all(&docker).unwrap();
    let env = [
        ("HOME", home.path().to_str().unwrap()),
        ("DOCKER_CONFIG", docker.to_str().unwrap()),
    ];

    let err = fails(&gantry_env(
        &example("hello"),
        &build_args(&["--repo", &repo, "--platform", "linux/amd64"]),
        &env,
    ));
    assert!(
        err.contains(&format!("registry {} refused access to app", registry.host)),
        "{err}"
    );
    assert!(err.contains("config.json"), "{err}");

    let login = |user: &str, pass: &str| {
        use base64::Engine as _;
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        std::fs::write(
            docker.join("config.json"),
            format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, registry.host),
        )
        .unwrap();
    };
    login("gantry", "wrong-password");
    let err = fails(&gantry_env(
        &example("hello"),
        &build_args(&["--repo", &repo, "--platform", "linux/amd64"]),
        &env,
    ));
    assert!(err.contains("refused access"), "{err}");
    assert!(
        !err.contains("wrong-password"),
        "a password reached the error: {err}"
    );

    assert!(
        registry.repositories().is_empty(),
        "a refused run left something"
    );
    login("gantry", "s3cret-pass");
    let out = ok(&gantry_env(
        &example("hello"),
        &build_args(&["--repo", &repo, "--platform", "linux/amd64"]),
        &env,
    ));
    assert!(out.starts_with(&format!("{repo}@sha256:")));
    assert_eq!(registry.repositories(), ["app"], "what was pushed shows");
    assert!(
        registry.tag_digest("app", "latest").is_none(),
        "skopeo without credentials must be refused too"
    );
}

#[test]
fn malformed_config_names_file_line_and_key() {
    let dir = module("cfg", "package main\n\nfunc main() {}\n");
    std::fs::write(
        dir.path().join("gantry.yaml"),
        "defaultBaseImage: scratch\ndefaultPlatform: [linux/amd64]\n",
    )
    .unwrap();
    let err = fails_before_building(dir.path(), &["build"], &[]);
    assert!(
        err.contains("gantry.yaml:2") && err.contains("defaultPlatform"),
        "{err}"
    );
}

#[test]
fn a_signal_stops_the_builds_and_removes_the_work_directory() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    // A `go` that builds forever (its sleep is the go build to be stopped).
    let started = dir.path().join("build-started");
    let shim = dir.path().join("go");
    let real_go = String::from_utf8(
        std::process::Command::new("sh")
            .args(["-c", "command -v go"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    std::fs::write(
        &shim,
        format!(
            "#!/bin/sh\nif [ \"$1\" = build ]; then touch {}; exec sleep 617; fi\nexec {} \"$@\"\n",
            started.display(),
            real_go.trim()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755)).unwrap();
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let work_dirs = || -> Vec<String> {
        std::fs::read_dir(&tmp)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("gantry-"))
            .collect()
    };
    let layout = dir.path().join("out");
    let mut child = gantry_command(&example("hello"))
        .args([
            "build",
            "--platform",
            "linux/amd64",
            "--base",
            "scratch",
            "--oci-layout",
        ])
        .arg(&layout)
        .env("GANTRY_GO", &shim)
        .env("TMPDIR", &tmp)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !started.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the build never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(work_dirs().len(), 1, "no work directory while building");
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(143), "{stderr}");
    assert!(stderr.contains("stopped by SIGTERM"), "{stderr}");
    assert!(
        work_dirs().is_empty(),
        "the work directory stayed: {:?}",
        work_dirs()
    );
    // The go build was stopped with it.
    let running = std::process::Command::new("pgrep")
        .args(["-f", "sleep 617"])
        .output()
        .unwrap();
    assert!(
        running.stdout.is_empty(),
        "the go build outlived gantry: pid {}",
        String::from_utf8_lossy(&running.stdout)
    );
}

/// A `go` that is the real one except that its builds never finish: whatever gantry
/// reports must come while the builds would still be running.
fn go_that_never_finishes_building(dir: &std::path::Path) -> std::path::PathBuf {
    let real = real_go().display().to_string();
    let path = dir.join("go");
    std::fs::write(
        &path,
        format!("#!/bin/sh\n[ \"$1\" = build ] && exec sleep 300\nexec {real} \"$@\"\n"),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    path
}

#[test]
fn a_registry_that_cannot_be_pushed_to_fails_while_the_builds_run() {
    let scratch = tempfile::tempdir().unwrap();
    let go = go_that_never_finishes_building(scratch.path());
    let home = tempfile::tempdir().unwrap();
    let docker = home.path().join(".docker");
    std::fs::create_dir_all(&docker).unwrap();
    let run = |repo: &str| {
        let started = std::time::Instant::now();
        let err = fails(&gantry_env(
            &example("hello"),
            &build_args(&["--repo", repo, "--platform", "linux/amd64"]),
            &[
                ("GANTRY_GO", go.to_str().unwrap()),
                ("HOME", home.path().to_str().unwrap()),
                ("DOCKER_CONFIG", docker.to_str().unwrap()),
            ],
        ));
        // The builds would take 300 s: the answer came from the check beside them.
        assert!(
            started.elapsed() < std::time::Duration::from_secs(120),
            "{repo}: gantry waited for the builds ({:?}): {err}",
            started.elapsed()
        );
        err
    };

    // Nothing listening on a loopback port: no --insecure-registry advice (loopback is
    // plain HTTP already).
    let port = closed_port();
    let err = run(&format!("127.0.0.1:{port}/app"));
    assert!(
        err.contains(&format!("cannot reach registry 127.0.0.1:{port}"))
            && err.contains("nothing is listening"),
        "{err}"
    );
    assert!(!err.contains("--insecure-registry"), "{err}");

    // A host that does not resolve (.invalid never does).
    let err = run("registry.gantry-test.invalid/app");
    assert!(
        err.contains("cannot resolve host registry.gantry-test.invalid"),
        "{err}"
    );
    assert!(
        !err.contains("--insecure-registry") && !err.contains("Query {"),
        "{err}"
    );

    // No credentials for a registry that wants them: where they were looked for.
    let registry = TestRegistry::start_with_auth("gantry", "s3cret-pass");
    let err = run(&format!("{}/app", registry.host));
    assert!(
        err.contains(&format!("No credentials for {} were found", registry.host))
            && err.contains("config.json (absent"),
        "{err}"
    );

    // Wrong credentials: their source is named once, and the password never.
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode("gantry:wrong-s3cret");
    std::fs::write(
        docker.join("config.json"),
        format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, registry.host),
    )
    .unwrap();
    let err = run(&format!("{}/app", registry.host));
    assert!(
        err.contains("refused access to app")
            && err.contains("credentials sent came from")
            && err.matches("config.json").count() == 1,
        "{err}"
    );
    assert!(
        !err.contains("wrong-s3cret") && !err.contains(&auth),
        "{err}"
    );
    assert!(registry.repositories().is_empty());

    // Right credentials, but the token service grants only pull on that repository.
    let tokens = TestRegistry::start_with_token_service("gantry", "s3cret-pass", &["readonly"]);
    let auth = base64::engine::general_purpose::STANDARD.encode("gantry:s3cret-pass");
    std::fs::write(
        docker.join("config.json"),
        format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, tokens.host),
    )
    .unwrap();
    let err = run(&format!("{}/readonly", tokens.host));
    assert!(
        err.contains("refused access to readonly") && err.contains("grants pull there, not push"),
        "{err}"
    );
    assert!(
        !err.contains("s3cret-pass") && !err.contains(&auth),
        "{err}"
    );
    assert!(
        tokens.repositories().is_empty(),
        "{:?}",
        tokens.repositories()
    );
}

#[test]
fn an_unreachable_base_suggests_scratch_and_an_uppercase_repository_lowercase() {
    let err = fails(&gantry(
        &example("hello"),
        &[
            "build",
            "--base",
            "base.gantry-test.invalid/static:latest",
            "--platform",
            "linux/amd64",
        ],
    ));
    assert!(
        err.contains("base image base.gantry-test.invalid/static:latest: cannot resolve host base.gantry-test.invalid")
            && err.contains("--base scratch"),
        "{err}"
    );
    assert!(!err.contains("--insecure-registry"), "{err}");

    let err = fails_before_building(
        &example("hello"),
        &build_args(&["--repo", "localhost:5000/Acme/App"]),
        &[],
    );
    assert!(
        err.contains("repository names must be lowercase (\"Acme/App\"); use \"acme/app\""),
        "{err}"
    );
}

#[test]
fn keygen_asks_for_the_password_on_a_terminal_and_refuses_without_one() {
    require("setsid", "apt-get install util-linux");
    require("script", "apt-get install bsdutils");
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("k");
    let gantry_bin = env!("CARGO_BIN_EXE_gantry");

    // No COSIGN_PASSWORD and no terminal (setsid: no controlling terminal).
    let out = seal(&mut std::process::Command::new("setsid"))
        .args(["-w", gantry_bin, "keygen", "--output-prefix"])
        .arg(&prefix)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let err = fails(&out);
    assert!(
        err.contains("COSIGN_PASSWORD is not set and there is no terminal"),
        "{err}"
    );
    assert!(!prefix.with_extension("key").exists());

    // On a terminal (script gives it one): asked twice, without echo.
    let on_terminal = |answers: &'static str| {
        let mut child = seal(&mut std::process::Command::new("script"))
            .args(["-qec"])
            .arg(format!(
                "{gantry_bin} keygen --output-prefix {}",
                prefix.display()
            ))
            .arg("/dev/null")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        for line in answers.lines() {
            std::thread::sleep(std::time::Duration::from_millis(500));
            use std::io::Write as _;
            writeln!(stdin, "{line}").unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
        drop(stdin);
        child.wait_with_output().unwrap()
    };
    let out = on_terminal("first-pass\nsecond-pass");
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("differ") && !shown.contains("second-pass"),
        "{shown}"
    );
    assert!(!prefix.with_extension("key").exists());

    let out = on_terminal("typed-pass\ntyped-pass");
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("Enter password for private key again") && !shown.contains("typed-pass"),
        "the password was echoed, or not asked twice: {shown}"
    );
    // The real cosign opens the key with the typed password.
    let blob = dir.path().join("blob");
    std::fs::write(&blob, "x").unwrap();
    let signed = std::process::Command::new(tool("cosign-v2"))
        .args(["sign-blob", "--tlog-upload=false", "--yes", "--key"])
        .arg(prefix.with_extension("key"))
        .arg(&blob)
        .env("COSIGN_PASSWORD", "typed-pass")
        .output()
        .unwrap();
    assert!(
        signed.status.success(),
        "cosign: {}",
        String::from_utf8_lossy(&signed.stderr)
    );
}

#[test]
fn verify_tells_unsigned_from_signed_by_someone_else() {
    let registry = TestRegistry::start();
    let repo = format!("{}/unsigned", registry.host);
    let out = ok(&gantry(
        &example("hello"),
        &build_args(&[
            "--repo",
            &repo,
            "--platform",
            "linux/amd64",
            "--sign",
            "none",
        ]),
    ));
    let keys = tempfile::tempdir().unwrap();
    let (_, public) = cosign_key_pair(keys.path(), "pw");
    let stored = registry.contents();
    let err = fails(&gantry(
        &example("hello"),
        &["verify", "--key", public.to_str().unwrap(), out.trim()],
    ));
    assert!(err.contains("has no signatures"), "{err}");
    assert_eq!(registry.contents(), stored, "verify wrote to the registry");
}

#[test]
fn repeated_packages_and_tags_are_built_and_pushed_once() {
    let registry = TestRegistry::start();
    let proxy = FaultProxy::start(&registry.host);
    let repo = format!("{}/once", proxy.host);
    let hello = example("hello");
    let go = RecordingGo::new();
    let out = ok(&gantry_env(
        &hello,
        &build_args(&[
            "--repo",
            &repo,
            "--platform",
            "linux/amd64",
            ".",
            "./",
            hello.to_str().unwrap(),
            "--tag",
            "v1",
            "-t",
            "v1",
            "--tag",
            "v2",
        ]),
        &[go.env()],
    ));
    assert_eq!(out.lines().count(), 1, "{out}");
    assert_eq!(
        go.builds().len(),
        1,
        "built more than once: {:?}",
        go.builds()
    );
    let log = proxy.log();
    for tag in ["v1", "v2"] {
        let puts = log
            .iter()
            .filter(|e| e.method == "PUT" && e.path.ends_with(&format!("/manifests/{tag}")))
            .count();
        assert_eq!(puts, 1, "tag {tag} written {puts} times: {log:#?}");
    }
}

#[test]
fn a_closed_stdout_ends_gantry_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = gantry_command(&example("hello"))
        .args(["build", "--base", "scratch", "--platform", "linux/amd64"])
        .arg("--oci-layout")
        .arg(dir.path().join("layout"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !stderr.contains("panicked") && !stderr.contains("error"),
        "{}: {stderr}",
        out.status
    );
}

/// Every file under `dir`, gzip blobs unpacked: what a layout or work dir holds.
fn contents_under(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(contents_under(&path));
        } else {
            let mut bytes = std::fs::read(&path).unwrap();
            if bytes.starts_with(&[0x1f, 0x8b]) {
                let mut unpacked = Vec::new();
                if std::io::Read::read_to_end(
                    &mut flate2::read::MultiGzDecoder::new(&bytes[..]),
                    &mut unpacked,
                )
                .is_ok()
                {
                    bytes = unpacked;
                }
            }
            found.push((path, bytes));
        }
    }
    found
}

#[test]
fn kodata_links_out_of_it_and_special_files_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let pkg = tmp.path().join("hello");
    copy_dir(&example("hello"), &pkg);
    let work = tmp.path().join("tmp");
    std::fs::create_dir(&work).unwrap();
    let layout = tmp.path().join("layout");
    let args = build_args(&["--platform", "linux/amd64", "--oci-layout"]);
    let args: Vec<&str> = args
        .into_iter()
        .chain(std::iter::once(layout.to_str().unwrap()))
        .collect();

    let marker = "gantry-kodata-secret-4f1c";
    let secret = tmp.path().join("secret.json");
    std::fs::write(&secret, format!("{{\"auth\": \"{marker}\"}}")).unwrap();
    let link = pkg.join("kodata/c.json");
    std::os::unix::fs::symlink(&secret, &link).unwrap();
    let err = fails(&gantry_env(
        &pkg,
        &args,
        &[("TMPDIR", work.to_str().unwrap())],
    ));
    assert!(
        err.contains(&format!(
            "{} is a symlink to {}, outside kodata/",
            link.display(),
            std::fs::canonicalize(&secret).unwrap().display()
        )),
        "{err}"
    );
    for dir in [&layout, &work, &pkg.join("oci-layout")] {
        for (path, bytes) in contents_under(dir) {
            assert!(
                !bytes.windows(marker.len()).any(|w| w == marker.as_bytes()),
                "the secret reached {}",
                path.display()
            );
        }
    }

    // A FIFO nobody writes to: opening it to read would wait forever.
    std::fs::remove_file(&link).unwrap();
    let fifo = pkg.join("kodata/pipe");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let mut child = gantry_command(&pkg)
        .args(&args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("gantry hung on a FIFO in kodata/");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let err = fails(&child.wait_with_output().unwrap());
    assert!(
        err.contains(&format!(
            "{} is a FIFO: kodata may hold only regular files",
            fifo.display()
        )),
        "{err}"
    );
}

#[test]
fn a_source_date_epoch_past_year_9999_is_refused() {
    let err = fails_before_building(
        &example("hello"),
        &build_args(&["--platform", "linux/amd64"]),
        &[("SOURCE_DATE_EPOCH", "253402300800")],
    );
    assert!(
        err.contains("SOURCE_DATE_EPOCH=\"253402300800\" is out of range")
            && err.contains("253402300799"),
        "{err}"
    );
}

#[test]
fn a_config_whose_aliases_expand_to_a_gigabyte_is_refused_quickly() {
    // A 1 MB .ko.yaml with one string aliased 1,000 times (a gigabyte once expanded).
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&example("hello"), dir.path());
    let config = dir.path().join(".ko.yaml");
    let aliases = vec!["*a"; 1000].join(", ");
    std::fs::write(
        &config,
        format!(
            "defaultBaseImage: &a {}\ndefaultFlags: [{aliases}]\n",
            "x".repeat(1_000_000)
        ),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let err = fails_before_building(dir.path(), &build_args(&["--platform", "linux/amd64"]), &[]);
    assert!(
        err.contains(&config.display().to_string())
            && err.contains("write the values out or use fewer aliases"),
        "{err}"
    );
    assert!(
        started.elapsed().as_secs() < 5,
        "took {:?}",
        started.elapsed()
    );
}

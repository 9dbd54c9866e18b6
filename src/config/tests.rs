use super::*;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn gantry_yaml_wins_over_ko_yaml() {
    let d = tempfile::tempdir().unwrap();
    assert!(Config::discover(d.path()).unwrap().is_none());
    write(d.path(), ".ko.yaml", "defaultBaseImage: ko-base\n");
    assert_eq!(
        Config::discover(d.path())
            .unwrap()
            .unwrap()
            .config
            .default_base_image
            .as_deref(),
        Some("ko-base")
    );
    write(d.path(), "gantry.yaml", "defaultBaseImage: gantry-base\n");
    let c = Config::discover(d.path()).unwrap().unwrap();
    assert_eq!(c.config.base_image_for("x", None), Some("gantry-base"));
    write(d.path(), "gantry.yaml", "");
    assert!(Config::discover(d.path())
        .unwrap()
        .unwrap()
        .config
        .default_base_image
        .is_none());
}

#[test]
fn unknown_keys_name_file_line_and_key() {
    let d = tempfile::tempdir().unwrap();
    let p = write(
        d.path(),
        "gantry.yaml",
        "defaultBaseImage: x\nbuilds:\n  - id: a\n    mian: ./cmd/a\n",
    );
    let err = Config::load(&p).unwrap_err().to_string();
    assert!(
        err.contains("gantry.yaml:4:") && err.contains("unknown key `mian`"),
        "{err}"
    );
    let p = write(d.path(), "gantry.yaml", "defaultPlatforms: linux/amd64\n");
    let err = Config::load(&p).unwrap_err().to_string();
    assert!(err.contains("gantry.yaml:1:"), "{err}");
}

#[test]
fn a_ko_config_applies_to_its_package_with_ko_precedence() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("cmd/app")).unwrap();
    let p = write(
        d.path(),
        ".ko.yaml",
        concat!(
            "defaultBaseImage: cgr.dev/chainguard/static\n",
            "baseImageOverrides:\n",
            "  example.com/app/cmd/app: busybox\n",
            "defaultEnv: [A=1, B=2]\n",
            "defaultLdflags: [-s -w]\n",
            "builds:\n",
            "  - id: app\n",
            "    main: ./cmd/app\n",
            "    env: [B=3]\n",
            "    ldflags: [\"-X main.version={{.Env.VERSION}}\", \"-X main.commit={{ .Git.ShortCommit }}\"]\n",
        ),
    );
    let c = Config::load(&p).unwrap();
    assert_eq!(
        c.config.base_image_for("example.com/app/cmd/app", None),
        Some("busybox")
    );
    assert_eq!(
        c.config.base_image_for("example.com/other", None),
        Some("cgr.dev/chainguard/static")
    );
    // KO_DEFAULTBASEIMAGE beats defaultBaseImage, not an override.
    assert_eq!(
        c.config
            .base_image_for("example.com/other", Some("env-base")),
        Some("env-base")
    );
    assert_eq!(
        c.config
            .base_image_for("example.com/app/cmd/app", Some("env-base")),
        Some("busybox")
    );
    let s = c.settings_for(&d.path().join("cmd/app")).unwrap();
    assert_eq!(
        s.env,
        vec![("A".into(), "1".into()), ("B".into(), "3".into())]
    );
    let data = TemplateData {
        env: [("VERSION".to_string(), "1.2.3".to_string())].into(),
        git_short_commit: "abc1234".into(),
        ..Default::default()
    };
    let s = s.render(&data).unwrap();
    assert_eq!(
        s.ldflags,
        vec!["-X main.version=1.2.3", "-X main.commit=abc1234"]
    );
    let other = c.settings_for(d.path()).unwrap();
    assert_eq!(other.ldflags, vec!["-s -w"]);
    assert_eq!(other.dir, None);

    let p = write(d.path(), ".ko.yaml", "defaultEnv: [NOEQUALS]\n");
    let err = Config::load(&p)
        .unwrap()
        .settings_for(d.path())
        .unwrap_err()
        .to_string();
    assert!(err.contains("\"NOEQUALS\" is not KEY=VALUE"), "{err}");
}

/// `defaultBaseImage: &a <len bytes>` and `defaultFlags: [*a, …]` with `aliases`
/// aliases: one string repeated by reference.
fn alias_attack(scalar: &str, aliases: usize) -> String {
    let flags = vec!["*a"; aliases].join(", ");
    format!("defaultBaseImage: &a {scalar}\ndefaultFlags: [{flags}]\n")
}

fn assert_alias_error(p: &Path) {
    let started = std::time::Instant::now();
    let err = Config::load(p).unwrap_err();
    let elapsed = started.elapsed();
    assert!(matches!(err, ConfigError::AliasExpansion { .. }), "{err:?}");
    let err = err.to_string();
    assert!(
        err.contains(&p.display().to_string())
            && err.contains("aliases expand past 8 MiB")
            && err.contains("write the values out or use fewer aliases"),
        "{err}"
    );
    assert!(elapsed.as_secs() < 5, "took {elapsed:?}");
}

#[test]
fn one_big_string_aliased_a_thousand_times_fails_fast() {
    let d = tempfile::tempdir().unwrap();
    let text = alias_attack(&"x".repeat(1_000_000), 1000);
    assert!(text.len() as u64 <= MAX_CONFIG_BYTES, "{}", text.len());
    let p = write(d.path(), ".ko.yaml", &text);
    assert_alias_error(&p);
    // A number-looking scalar reaches a `String` field as all of its text.
    let text = alias_attack(&format!("0x{}1", "0".repeat(1_000_000)), 1000);
    let p = write(d.path(), ".ko.yaml", &text);
    assert_alias_error(&p);
}

#[test]
fn nested_aliases_fail_fast() {
    let d = tempfile::tempdir().unwrap();
    // Billion laughs: nine lists of nine of the list before.
    let mut text = String::from("defaultEnv: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    text.push_str("builds:\n");
    for i in 1..=9 {
        let prev = format!("*l{}", i - 1);
        text.push_str(&format!("  - &l{i} [{}]\n", [prev.as_str(); 9].join(", ")));
    }
    let p = write(d.path(), "gantry.yaml", &text);
    let started = std::time::Instant::now();
    let err = Config::load(&p).unwrap_err().to_string();
    assert!(err.contains("gantry.yaml"), "{err}");
    assert!(started.elapsed().as_secs() < 5);
    // The same in the shape of a config: builds of flags of one string.
    let flags = vec!["*s"; 100].join(", ");
    let mut text = format!(
        "defaultLdflags: [&s {}]\nbuilds:\n  - &b {{id: x, flags: [{flags}]}}\n",
        "x".repeat(100)
    );
    text.push_str(&"  - *b\n".repeat(1000));
    let p = write(d.path(), "gantry.yaml", &text);
    assert_alias_error(&p);
    // Many short values: the parser's own limit on alias jumps trips first.
    let flags = vec!["*s"; 1000].join(", ");
    let mut text = format!("defaultLdflags: [&s x]\nbuilds:\n  - &b {{flags: [{flags}]}}\n");
    text.push_str(&"  - *b\n".repeat(1000));
    let p = write(d.path(), "gantry.yaml", &text);
    assert_alias_error(&p);
}

#[test]
fn a_config_over_1_mib_is_refused_unread() {
    let d = tempfile::tempdir().unwrap();
    let mut text = String::from("defaultBaseImage: x\n");
    text.push_str(&"#".repeat(MAX_CONFIG_BYTES as usize + 10 - text.len() - 1));
    text.push('\n');
    let p = write(d.path(), "gantry.yaml", &text);
    let err = Config::load(&p).unwrap_err();
    assert!(matches!(err, ConfigError::TooLarge { .. }), "{err:?}");
    let err = err.to_string();
    assert!(
        err.contains(&p.display().to_string())
            && err.contains("1048586 bytes")
            && err.contains("1048576-byte (1 MiB) limit"),
        "{err}"
    );
    // Exactly at the limit is read.
    text.truncate(MAX_CONFIG_BYTES as usize - 1);
    text.push('\n');
    let p = write(d.path(), "gantry.yaml", &text);
    let c = Config::load(&p).unwrap();
    assert_eq!(c.config.default_base_image.as_deref(), Some("x"));
}

#[test]
fn a_config_with_a_few_aliases_loads() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("cmd/a")).unwrap();
    let p = write(
        d.path(),
        ".ko.yaml",
        concat!(
            "defaultBaseImage: &base cgr.dev/chainguard/static\n",
            "baseImageOverrides:\n",
            "  example.com/app/cmd/a: *base\n",
            "defaultEnv: &env [CGO_ENABLED=0, GOFLAGS=-mod=vendor]\n",
            "defaultFlags: &flags [-trimpath, -tags=netgo]\n",
            "builds:\n",
            "  - &a\n",
            "    id: a\n",
            "    main: ./cmd/a\n",
            "    env: *env\n",
            "    flags: *flags\n",
            "    ldflags: [&v \"-X main.version={{.Env.VERSION}}\", *v]\n",
            "  - *a\n",
        ),
    );
    let c = Config::load(&p).unwrap();
    assert_eq!(
        c.config.base_image_for("example.com/app/cmd/a", None),
        Some("cgr.dev/chainguard/static")
    );
    assert_eq!(c.config.builds.len(), 2);
    let s = c.settings_for(&d.path().join("cmd/a")).unwrap();
    assert_eq!(
        s.env,
        vec![
            ("CGO_ENABLED".into(), "0".into()),
            ("GOFLAGS".into(), "-mod=vendor".into())
        ]
    );
    assert_eq!(s.flags, vec!["-trimpath", "-tags=netgo"]);
    assert_eq!(s.ldflags.len(), 2);
}

#[test]
fn templates_fail_clearly() {
    let data = TemplateData::default();
    assert!(data
        .render("{{.Foo}}")
        .unwrap_err()
        .to_string()
        .contains("unknown field .Foo"));
    assert!(data
        .render("{{.Env.NOPE}}")
        .unwrap_err()
        .to_string()
        .contains("NOPE is not set"));
    assert!(data
        .render("{{.Date")
        .unwrap_err()
        .to_string()
        .contains("without"));
    assert_eq!(data.render("plain").unwrap(), "plain");
    let data = TemplateData::gather(Path::new("."), Some(0), Path::new("go"));
    assert_eq!(
        data.render("{{.Date}} {{.Timestamp}}").unwrap(),
        "1970-01-01T00:00:00Z 0"
    );
}

#[test]
fn templates_follow_ko_ldflags_is_defined_and_go_env_sees_the_build_env() {
    let data = TemplateData {
        env: BTreeMap::from([("LDFLAGS".into(), String::new())]),
        go_env: BTreeMap::from([
            ("GOOS".into(), "linux".into()),
            ("GOFLAGS".into(), String::new()),
        ]),
        ..TemplateData::default()
    };
    let settings = BuildSettings {
        env: vec![("GOFLAGS".into(), "-mod=vendor".into())],
        ldflags: vec![
            "-X main.extra={{.Env.LDFLAGS}}".into(),
            "-X main.os={{ .GoEnv.GOOS }} -X main.flags={{.GoEnv.GOFLAGS}}".into(),
        ],
        ..BuildSettings::default()
    };
    let rendered = settings.render(&data).unwrap();
    assert_eq!(
        rendered.ldflags,
        [
            "-X main.extra=",
            "-X main.os=linux -X main.flags=-mod=vendor"
        ]
    );
    for missing in ["{{.Env.NOPE}}", "{{.GoEnv.NOPE}}"] {
        let settings = BuildSettings {
            ldflags: vec![missing.into()],
            ..BuildSettings::default()
        };
        assert!(settings.render(&data).is_err(), "{missing}");
    }
}

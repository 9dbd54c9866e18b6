//! `gantry resolve` end to end: Kubernetes YAML that names two Go programs by `ko://`
//! import path is resolved against a real registry. The printed YAML is read with a
//! YAML parser and compared byte for byte with the input outside the references;
//! each digest is read back with skopeo, and the linux/amd64 program in each image's
//! layer is run.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::Stdio;

use common::*;
use serde_json::Value;

const CART: &str = "ko://example.com/shop/cmd/cart";
const CHECKOUT: &str = "ko://example.com/shop/cmd/checkout";

/// A Go module with two commands and a library package.
fn write_module(dir: &Path) {
    let write = |path: &str, text: &str| {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write("go.mod", "module example.com/shop\n\ngo 1.21\n");
    for name in ["cart", "checkout"] {
        write(
            &format!("cmd/{name}/main.go"),
            &format!(
                "package main\n\nimport (\n\t\"fmt\"\n\t\"runtime\"\n)\n\nfunc main() {{\n\tfmt.Printf(\"{name} on %s/%s\\n\", runtime.GOOS, runtime.GOARCH)\n}}\n"
            ),
        );
    }
    write(
        "internal/money/money.go",
        "// Package money is a library, not a program.\npackage money\n\nconst Cents = 100\n",
    );
}

/// Two documents, both references in several spellings, and text about them that must
/// stay as it is.
const APP_YAML: &str = "\
# The shop. ko://example.com/shop/cmd/cart in this comment stays as it is.
apiVersion: apps/v1
kind: Deployment
metadata:
  name: cart
  annotations:
    note: \"built from ko://example.com/shop/cmd/cart\"
spec:
  template:
    spec:
      containers:
      - name: cart
        image: ko://example.com/shop/cmd/cart   # built by gantry
        args: [\"--listen\", \":8080\"]
---
apiVersion: batch/v1
kind: Job
metadata: {name: checkout}
spec:
  template:
    spec:
      containers:
        - name: checkout
          image: \"ko://example.com/shop/cmd/checkout\"
          env:
            - name: CART_IMAGE
              value: 'ko://example.com/shop/cmd/cart'
      restartPolicy: Never
";

/// A second file in the directory: one more document naming a program already named.
const EXTRA_YML: &str =
    "kind: Pod\nspec:\n  containers: [{name: again, image: ko://example.com/shop/cmd/checkout}]\n";

/// Every document of a YAML stream, parsed by a YAML parser.
fn documents(text: &str) -> Vec<Value> {
    yaml_serde::Deserializer::from_str(text)
        .map(|d| serde::Deserialize::deserialize(d).expect("the output is YAML"))
        .collect()
}

/// Checks that `reference` (REPO@sha256:…) is in the registry, with skopeo: the bytes
/// it serves hash to that digest, and the linux/amd64 program of the image runs and
/// prints `expect`.
fn check_image(reference: &str, expect: &str) {
    let src = format!("docker://{reference}");
    let raw = skopeo_ok(&["inspect", "--raw", &src]);
    let digest = reference.rsplit_once('@').expect("a digest reference").1;
    assert_eq!(sha256sum(&raw), digest, "{reference} serves other bytes");
    let (root, config) = pull_and_extract(&src, "linux", "amd64", None);
    assert_eq!(config["architecture"], "amd64");
    let out = run_entrypoint(&root.path().join("rootfs"), &config);
    assert_eq!(out, format!("{expect} on linux/amd64\n"), "{reference}");
}

#[test]
fn a_directory_of_yaml_resolves_to_pushed_images_that_run() {
    let registry = TestRegistry::start();
    let dir = tempfile::tempdir().unwrap();
    write_module(dir.path());
    let config = dir.path().join("config");
    std::fs::create_dir_all(config.join("nested")).unwrap();
    std::fs::write(config.join("10-app.yaml"), APP_YAML).unwrap();
    std::fs::write(config.join("20-extra.yml"), EXTRA_YML).unwrap();
    std::fs::write(config.join("notes.txt"), "not YAML: [").unwrap();
    // Read only with -R, and it would fail the run: --strict and no such package.
    std::fs::write(
        config.join("nested/later.yaml"),
        "image: ko://example.com/shop/cmd/missing\n",
    )
    .unwrap();
    let repo = format!("{}/shop", registry.host);
    let refs_file = dir.path().join("refs.txt");
    let stdout = ok(&gantry(
        dir.path(),
        &[
            "resolve",
            "-f",
            "config",
            "--strict",
            "--repo",
            &repo,
            "--platform",
            "linux/amd64,linux/arm64",
            "--base",
            "scratch",
            "--image-refs",
            refs_file.to_str().unwrap(),
        ],
    ));

    // One run pushed both programs, as REPO/<name> like a build of two packages.
    let cart = format!(
        "{repo}/cart@{}",
        registry
            .tag_digest("shop/cart", "latest")
            .expect("cart pushed")
    );
    let checkout = format!(
        "{repo}/checkout@{}",
        registry
            .tag_digest("shop/checkout", "latest")
            .expect("checkout pushed")
    );
    let mut refs: Vec<String> = std::fs::read_to_string(&refs_file)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    refs.sort();
    assert_eq!(refs, [cart.clone(), checkout.clone()]);

    // Byte for byte: the two files with a `---` between them, and only the
    // references' values changed (not the comment, not the longer string).
    let want = format!("{APP_YAML}---\n{EXTRA_YML}")
        .replace(&format!("image: {CART}   #"), &format!("image: {cart}   #"))
        .replace(&format!("\"{CHECKOUT}\""), &format!("\"{checkout}\""))
        .replace(&format!("'{CART}'"), &format!("'{cart}'"))
        .replace(
            &format!("image: {CHECKOUT}}}"),
            &format!("image: {checkout}}}"),
        );
    assert_eq!(stdout, want);
    assert!(stdout.contains(&format!("# The shop. {CART} in this comment")));

    // And as a YAML parser reads it.
    let docs = documents(&stdout);
    assert_eq!(
        docs.len(),
        3,
        "two documents from one file, one from the other"
    );
    let containers = |doc: &Value| doc["spec"]["template"]["spec"]["containers"][0].clone();
    assert_eq!(containers(&docs[0])["image"], cart.as_str());
    assert_eq!(containers(&docs[0])["args"][1], ":8080");
    assert_eq!(
        docs[0]["metadata"]["annotations"]["note"],
        format!("built from {CART}")
    );
    assert_eq!(containers(&docs[1])["image"], checkout.as_str());
    assert_eq!(containers(&docs[1])["env"][0]["value"], cart.as_str());
    assert_eq!(docs[2]["spec"]["containers"][0]["image"], checkout.as_str());

    // Each digest is in the registry, an index of both platforms, and its program runs.
    for (reference, name) in [(&cart, "cart"), (&checkout, "checkout")] {
        let index = json(&skopeo_ok(&[
            "inspect",
            "--raw",
            &format!("docker://{reference}"),
        ]));
        assert_eq!(
            index["mediaType"],
            "application/vnd.oci.image.index.v1+json"
        );
        assert_eq!(index["manifests"].as_array().map(Vec::len), Some(2));
        check_image(reference, name);
    }

    // With -R the nested file is read too, and its reference fails --strict.
    let stderr = fails(&gantry(
        dir.path(),
        &[
            "resolve", "-f", "config", "-R", "--strict", "--repo", &repo, "--base", "scratch",
        ],
    ));
    assert!(
        stderr.contains(
            "config/nested/later.yaml: ko://example.com/shop/cmd/missing does not name a Go main package"
        ),
        "{stderr}"
    );
}

#[test]
fn standard_input_resolves_a_relative_import_path() {
    let registry = TestRegistry::start();
    let dir = tempfile::tempdir().unwrap();
    write_module(dir.path());
    let repo = format!("{}/cart", registry.host);
    let input = "# from a pipe\nimage: ko://./cmd/cart\nreplicas: 2\n";
    let mut child = gantry_command(dir.path())
        .args([
            "resolve",
            "-f",
            "-",
            "--repo",
            &repo,
            "--platform",
            "linux/amd64",
            "--base",
            "scratch",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run gantry");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("feed gantry");
    let stdout = ok(&child.wait_with_output().expect("gantry ends"));

    // One package: the image is REPO itself, a single manifest.
    let digest = registry.tag_digest("cart", "latest").expect("pushed");
    let cart = format!("{repo}@{digest}");
    assert_eq!(
        stdout,
        format!("# from a pipe\nimage: {cart}\nreplicas: 2\n")
    );
    assert_eq!(documents(&stdout)[0]["image"], cart.as_str());
    check_image(&cart, "cart");
}

#[test]
fn a_reference_that_is_no_main_package_fails_with_strict_and_stays_without() {
    let registry = TestRegistry::start();
    let dir = tempfile::tempdir().unwrap();
    write_module(dir.path());
    let input = "\
a: ko://example.com/shop/cmd/missing
b: ko://example.com/shop/internal/money
c: ko://example.com/shop/cmd/cart
";
    std::fs::write(dir.path().join("app.yaml"), input).unwrap();
    let repo = format!("{}/shop", registry.host);
    let args = |strict: bool| {
        let mut args = vec![
            "resolve",
            "-f",
            "app.yaml",
            "--repo",
            &repo,
            "--platform",
            "linux/amd64",
            "--base",
            "scratch",
        ];
        if strict {
            args.push("--strict");
        }
        args
    };

    let stderr = fails(&gantry(dir.path(), &args(true)));
    assert!(
        stderr.contains(
            "app.yaml: ko://example.com/shop/cmd/missing does not name a Go main package"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("fix the reference"),
        "says what to do: {stderr}"
    );
    assert!(
        registry.repositories().is_empty(),
        "nothing is pushed when a reference fails"
    );

    // Without --strict, as ko had it: those two stay as written (with a warning), and
    // the program is built.
    let out = gantry(dir.path(), &args(false));
    let stdout = ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    for left in [
        "ko://example.com/shop/cmd/missing",
        "ko://example.com/shop/internal/money",
    ] {
        assert!(
            stderr.contains(&format!("warning: app.yaml: {left} is left as it is")),
            "{stderr}"
        );
    }
    assert!(
        stderr.contains("`package money`, not `package main`"),
        "{stderr}"
    );
    let digest = registry.tag_digest("shop", "latest").expect("cart pushed");
    assert_eq!(
        stdout,
        input.replace(
            "ko://example.com/shop/cmd/cart",
            &format!("{repo}@{digest}")
        )
    );
    check_image(&format!("{repo}@{digest}"), "cart");
}

#[test]
fn inputs_that_cannot_be_read_are_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("broken.yaml"), "a: [1, 2\nb: c\n").unwrap();
    std::fs::create_dir(dir.path().join("empty")).unwrap();

    let stderr = fails(&gantry(dir.path(), &["resolve", "-f", "missing.yaml"]));
    assert!(
        stderr.contains("missing.yaml does not exist; -f takes a YAML or JSON file"),
        "{stderr}"
    );
    let stderr = fails(&gantry(dir.path(), &["resolve", "-f", "broken.yaml"]));
    assert!(
        stderr.contains("broken.yaml is not valid YAML") && stderr.contains("line"),
        "{stderr}"
    );
    let stderr = fails(&gantry(dir.path(), &["resolve", "-f", "empty"]));
    assert!(
        stderr.contains(
            "empty holds no .yaml, .yml or .json files (-R also reads its subdirectories)"
        ),
        "{stderr}"
    );
    let stderr = fails(&gantry(
        dir.path(),
        &["resolve", "-f", "broken.yaml", "./cmd/app"],
    ));
    assert!(stderr.contains("takes none as arguments"), "{stderr}");

    // References but no registry: nothing a cluster could pull.
    std::fs::write(dir.path().join("app.yaml"), "image: ko://example.com/x\n").unwrap();
    let stderr = fails(&gantry(dir.path(), &["resolve", "-f", "app.yaml"]));
    assert!(stderr.contains("needs a registry to push to"), "{stderr}");

    // No references: the input as it is, nothing built, no registry needed.
    std::fs::write(dir.path().join("plain.yaml"), "kind: Service # as is\n").unwrap();
    let stdout = ok(&gantry(dir.path(), &["resolve", "-f", "plain.yaml"]));
    assert_eq!(stdout, "kind: Service # as is\n");
}

use super::scalar::Style;
use super::scan::Scanner;
use super::*;

const A: &str = "registry.example/app-a@sha256:aaaa";
const B: &str = "registry.example/app-b@sha256:bbbb";

fn source(text: &str) -> Source {
    Source {
        name: "config/app.yaml".into(),
        text: text.into(),
    }
}

fn images() -> HashMap<String, String> {
    HashMap::from([
        ("ko://example.com/app/cmd/a".to_string(), A.to_string()),
        ("ko://example.com/app/cmd/b".to_string(), B.to_string()),
    ])
}

fn refs(text: &str) -> Vec<String> {
    references(&source(text)).expect("references")
}

fn resolved(text: &str) -> String {
    replace(&source(text), &images()).expect("replace")
}

#[test]
fn references_are_string_values_and_keys_starting_with_the_scheme() {
    let text = "\
# ko://example.com/app/cmd/comment is a comment
kind: Pod
spec:
  containers:
  - image: ko://example.com/app/cmd/a
    args: [\"see ko://example.com/x\", ' ko://example.com/leading-space']
  - image: \"ko://example.com/app/cmd/b \"
    env: !foo ko://example.com/local-tag
    other: !!str ko://example.com/core-tag
ko://example.com/key: 1
---
again: ko://example.com/app/cmd/a
";
    assert_eq!(
        refs(text),
        [
            "ko://example.com/app/cmd/a",
            "ko://example.com/app/cmd/b",
            "ko://example.com/core-tag",
            "ko://example.com/key",
        ]
    );
}

#[test]
fn aliases_repeat_a_reference_without_adding_one() {
    assert_eq!(
        refs("a: &img ko://example.com/app/cmd/a\nb: *img\n"),
        ["ko://example.com/app/cmd/a"]
    );
}

#[test]
fn a_file_that_is_not_yaml_is_named() {
    let err = references(&source("a: [1, 2\nb: c\n")).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ResolveError::NotYaml { .. }));
    assert!(
        text.starts_with("config/app.yaml is not valid YAML:"),
        "{text}"
    );
    assert!(text.contains("line"), "names the place: {text}");
}

#[test]
fn plain_references_are_replaced_and_every_other_byte_kept() {
    let text = "\
# The app. ko://example.com/app/cmd/a stays in this comment.
apiVersion: apps/v1   # trailing comment
kind: Deployment
spec:
  template:
    spec:
      containers:
        - name: a
          image: ko://example.com/app/cmd/a # keep me
          args:
          - ko://example.com/app/cmd/b
          - 'text with ko://example.com/app/cmd/a inside'
";
    let want = text
        .replace(
            "image: ko://example.com/app/cmd/a #",
            &format!("image: {A} #"),
        )
        .replace("- ko://example.com/app/cmd/b", &format!("- {B}"));
    assert_eq!(resolved(text), want);
}

#[test]
fn quoted_references_keep_their_quotes() {
    let text = "a: 'ko://example.com/app/cmd/a'\nb: \"ko://example.com/app/cmd/b\"\n";
    assert_eq!(resolved(text), format!("a: '{A}'\nb: \"{B}\"\n"));
}

#[test]
fn json_stays_json() {
    let text = "{\n  \"image\": \"ko://example.com/app/cmd/a\",\n  \"n\": [1, \"ko://example.com/app/cmd/b\"]\n}\n";
    let out = resolved(text);
    assert_eq!(
        out,
        format!("{{\n  \"image\": \"{A}\",\n  \"n\": [1, \"{B}\"]\n}}\n")
    );
    let v: serde_json::Value = serde_json::from_str(&out).expect("still JSON");
    assert_eq!(v["image"], A);
}

#[test]
fn flow_collections_keys_and_multi_document_streams() {
    let text = "\
%YAML 1.1
---
list: [ko://example.com/app/cmd/a, \"ko://example.com/app/cmd/b\", other]
map: {x: ko://example.com/app/cmd/a, y: 2}
...
---
ko://example.com/app/cmd/b: key
? ko://example.com/app/cmd/a
: explicit
";
    let want = text
        .replace("[ko://example.com/app/cmd/a,", &format!("[{A},"))
        .replace("\"ko://example.com/app/cmd/b\",", &format!("\"{B}\","))
        .replace("x: ko://example.com/app/cmd/a,", &format!("x: {A},"))
        .replace("ko://example.com/app/cmd/b: key", &format!("{B}: key"))
        .replace("? ko://example.com/app/cmd/a", &format!("? {A}"));
    assert_eq!(resolved(text), want);
}

#[test]
fn anchors_are_replaced_where_they_are_written_and_aliases_follow() {
    let text = "a: &img ko://example.com/app/cmd/a\nb: *img\n";
    assert_eq!(resolved(text), format!("a: &img {A}\nb: *img\n"));
}

#[test]
fn tags_decide_whether_a_value_is_a_string() {
    let text = "\
a: !!str ko://example.com/app/cmd/a
b: !local ko://example.com/app/cmd/b
c: !!str
  ko://example.com/app/cmd/b
";
    let want = format!("a: !!str {A}\nb: !local ko://example.com/app/cmd/b\nc: !!str\n  {B}\n");
    assert_eq!(resolved(text), want);
    // A tag on the line before a mapping is the mapping's, not its first key's.
    let text = "!!map\nko://example.com/app/cmd/a: 1\n";
    assert_eq!(resolved(text), format!("!!map\n{A}: 1\n"));
}

#[test]
fn a_one_line_block_scalar_becomes_the_image_without_a_line_break() {
    let text = "\
a: |  # the image
  ko://example.com/app/cmd/a
b: >+
    ko://example.com/app/cmd/b

c: |
  ko://example.com/app/cmd/a
  and more text
d: 1
";
    let want = format!(
            "a: |-  # the image\n  {A}\nb: >-\n    {B}\n\nc: |\n  ko://example.com/app/cmd/a\n  and more text\nd: 1\n"
        );
    assert_eq!(resolved(text), want);
}

#[test]
fn block_scalar_ends_are_found_by_indentation() {
    // The reference after the scripts is a value, the ones inside them are text.
    let text = "\
script: |
  echo ko://example.com/app/cmd/a
  ko://example.com/app/cmd/a
list:
- |
    ko://example.com/app/cmd/b
    ko://example.com/app/cmd/b
- ko://example.com/app/cmd/b
empty: |
next: ko://example.com/app/cmd/a
";
    let want = text
        .replace(
            "- ko://example.com/app/cmd/b\nempty",
            &format!("- {B}\nempty"),
        )
        .replace("next: ko://example.com/app/cmd/a", &format!("next: {A}"));
    assert_eq!(resolved(text), want);
}

#[test]
fn white_space_around_a_reference_in_quotes() {
    // ko trims after matching the scheme, so a leading space means no reference.
    let text = "a: \"ko://example.com/app/cmd/a  \"\nb: ' ko://example.com/app/cmd/b'\n";
    assert_eq!(
        resolved(text),
        format!("a: \"{A}\"\nb: ' ko://example.com/app/cmd/b'\n")
    );
}

#[test]
fn escapes_and_folded_lines_in_quoted_scalars_are_read_as_the_parser_reads_them() {
    let text = "a: \"ko:\\/\\/example.com/app/cmd/a\"\nb: \"ko://example.com/\\\n   app/cmd/b\"\nc: 'ko://example.com/app/cmd/a\n   trailing'\n";
    assert_eq!(
        resolved(text),
        format!("a: \"{A}\"\nb: \"{B}\"\nc: 'ko://example.com/app/cmd/a\n   trailing'\n")
    );
}

#[test]
fn a_multi_line_plain_scalar_is_one_value() {
    let text = "a: ko://example.com/app/cmd/a\n  continued\nb: ko://example.com/app/cmd/b\n";
    assert_eq!(
        resolved(text),
        format!("a: ko://example.com/app/cmd/a\n  continued\nb: {B}\n")
    );
}

#[test]
fn line_endings_and_byte_order_mark_are_kept() {
    // The parser alone would take the mark for indentation and fail on line 2.
    let text = "\u{feff}a: ko://example.com/app/cmd/a\r\nb: \"x\"\r\n";
    assert_eq!(refs(text), ["ko://example.com/app/cmd/a"]);
    assert_eq!(resolved(text), format!("\u{feff}a: {A}\r\nb: \"x\"\r\n"));
}

#[test]
fn references_without_an_image_are_left_alone() {
    let text = "a: ko://example.com/other\nb: ko://example.com/app/cmd/a\n";
    assert_eq!(
        resolved(text),
        format!("a: ko://example.com/other\nb: {A}\n")
    );
    // No images: the text as it was, even one the scanner would not follow.
    assert_eq!(
        replace(&source("a: b\n"), &HashMap::new()).unwrap(),
        "a: b\n"
    );
}

#[test]
fn an_image_that_cannot_be_plain_is_quoted() {
    let images = HashMap::from([(
        "ko://example.com/app/cmd/a".to_string(),
        "odd: [image]".to_string(),
    )]);
    let out = replace(&source("a: ko://example.com/app/cmd/a\n"), &images).unwrap();
    assert_eq!(out, "a: \"odd: [image]\"\n");
}

#[test]
fn the_parser_rejects_a_result_that_changed_more_than_the_references() {
    let src = source("a: ko://example.com/app/cmd/a\nb: 1\n");
    let images = images();
    let ok = format!("a: {A}\nb: 1\n");
    assert!(verify(&src, &src.text, &ok, &images).is_ok());
    for wrong in [
        format!("a: {A}\nb: 2\n"),
        "a: ko://example.com/app/cmd/a\nb: 1\n".to_string(),
        format!("a: {A}\nb: 1\n---\nc: 1\n"),
        format!("a: [{A}\nb: 1\n"),
    ] {
        let err = verify(&src, &src.text, &wrong, &images).unwrap_err();
        assert!(
            matches!(&err, ResolveError::Rewrite { file, .. } if file == "config/app.yaml"),
            "{wrong:?}: {err}"
        );
    }
}

/// Kubernetes configuration in the shapes it is written in.
const CORPUS: &str = r#"# Manifests for a demo.
apiVersion: v1
kind: Namespace
metadata:
  name: demo
  labels: {team: platform, "app.kubernetes.io/part-of": demo}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  annotations:
    description: >
      A folded description
      over two lines.
spec:
  replicas: 2
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels: &labels
        app: web
        tier: frontend
    spec:
      initContainers:
      - name: init
        image: busybox
        command: ["sh", "-c", 'echo "starting"']
      containers:
        - name: web
          image: web-image   # the image
          args:
            - --port=8080
            - "--verbose"
            - >-
              --long-flag-value
          ports:
          - containerPort: 8080
            protocol: TCP
          env:
          - {name: MODE, value: production}
          - name: LABELS
            value: "tier=frontend,app=web"
          readinessProbe:
            httpGet: {path: /healthz, port: 8080}
            periodSeconds: 10
          resources:
            limits: {cpu: 500m, memory: 128Mi}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: scripts
data:
  run.sh: |
    #!/bin/sh
    set -e
    exec web-server --config /etc/web.yaml
  web.yaml: |-
    listen: :8080
    upstreams: [a, b]
  single: 'it''s quoted'
  escaped: "tab\there"
  multi: "first
    second"
  plain-multi: first
    second
? complex-key
: complex-value
--- # A list at the top.
- &first item-one
- *first
- [nested, [deeper, list], {k: v}]
- key: value
  other: value2
-   - inner-a
    - inner-b
- !!str tagged-string
- !custom local-tag
...
%YAML 1.1
---
!!map
kind: List
items: []
"#;

#[test]
fn every_scalar_of_real_yaml_can_become_a_reference_and_be_replaced() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![
            ("corpus".to_string(), CORPUS.to_string()),
            (
                "json".to_string(),
                r#"{"kind": "Pod", "spec": {"containers": [{"name": "a", "image": "img", "args": ["x", 1, true, null]}]}}"#
                    .to_string(),
            ),
        ];
    for name in [
        "action.yml",
        ".github/workflows/ci.yml",
        ".github/workflows/release.yml",
        ".github/workflows/example-publish.yml",
    ] {
        if let Ok(text) = std::fs::read_to_string(root.join(name)) {
            files.push((name.to_string(), text));
        }
    }
    let image = "registry.example/img@sha256:0";
    for (name, text) in files {
        let scalars = Scanner::new(&text)
            .run()
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut tried = 0;
        for scalar in &scalars {
            let Some(value) = &scalar.value else { continue };
            let simple = !value.is_empty()
                && value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "./_-=".contains(c));
            if !simple || scalar.tag.is_some_and(|t| !t.string_like) {
                continue;
            }
            let reference = format!("{SCHEME}{value}");
            let (written, replaced) = match scalar.style {
                Style::Plain => (reference.clone(), image.to_string()),
                Style::SingleQuoted => (format!("'{reference}'"), format!("'{image}'")),
                Style::DoubleQuoted => (format!("\"{reference}\""), format!("\"{image}\"")),
                Style::Block { .. } => continue,
            };
            let around = |middle: &str| {
                format!(
                    "{}{middle}{}",
                    &text[..scalar.span.start],
                    &text[scalar.span.end..]
                )
            };
            let src = Source {
                name: name.clone(),
                text: around(&written),
            };
            let found = references(&src).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(
                found.contains(&reference),
                "{name}: {reference} not found in {found:?}"
            );
            let images = HashMap::from([(reference.clone(), image.to_string())]);
            let out = replace(&src, &images)
                .unwrap_or_else(|e| panic!("{name}: replacing {reference}: {e}"));
            assert_eq!(out, around(&replaced), "{name}: {reference}");
            tried += 1;
        }
        assert!(tried >= 5, "{name}: only {tried} scalars tried");
    }
}

#[test]
fn join_separates_files_as_one_stream() {
    let texts = [
        "a: 1\n".to_string(),
        "b: 2".to_string(),
        "%YAML 1.1\n---\nc: 3\n".to_string(),
        "\u{feff}# only a comment\n".to_string(),
    ];
    let out = join(&texts);
    assert_eq!(
        out,
        "a: 1\n---\nb: 2\n...\n%YAML 1.1\n---\nc: 3\n---\n# only a comment\n"
    );
    let docs: Vec<yaml_serde::Value> = yaml_serde::Deserializer::from_str(&out)
        .map(|d| serde::Deserialize::deserialize(d).expect("parses"))
        .collect();
    assert_eq!(docs.len(), 4);
    assert_eq!(join(&["x: 1\n".to_string()]), "x: 1\n");
}

//! What gantry says about the images it built: SBOMs (and, with signing, in-toto
//! statements about them), and the package URLs both of them name things by.

pub mod provenance;
pub mod sbom;

use crate::gobuild::buildinfo::BuildInfo;
use crate::image::Digest;
use crate::platform::Platform;
use sbom::{SbomFormat, SbomSubject};

/// A package URL, `pkg:TYPE/NAMESPACE/NAME@VERSION?KEY=VALUE&…`, in canonical form,
/// so that a consumer that parses and prints it again gets the same text and two
/// documents naming the same package compare equal as strings.
///
/// `path` is the namespace and name joined by `/`. Every part is percent-encoded
/// except letters, digits, `-._~`, `:` and (inside the version and qualifier values)
/// `/`; so `(devel)` is `%28devel%29` and `+incompatible` is `%2Bincompatible`.
/// Qualifiers come sorted by key, and empty ones are left out. The types gantry
/// writes are normalised as their definitions say: `golang` namespaces and names, and
/// `oci` names and versions, are lowercase (the SBOM's package name keeps Go's own
/// spelling of a module path, which is case-sensitive).
pub fn purl(kind: &str, path: &str, version: Option<&str>, qualifiers: &[(&str, &str)]) -> String {
    let kind = kind.to_ascii_lowercase();
    let mut out = format!("pkg:{kind}/");
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    for (n, segment) in segments.iter().enumerate() {
        if n > 0 {
            out.push('/');
        }
        let is_name = n + 1 == segments.len();
        if kind == "golang" || (kind == "oci" && is_name) {
            percent_encode(&segment.to_lowercase(), false, &mut out);
        } else {
            percent_encode(segment, false, &mut out);
        }
    }
    if let Some(version) = version.filter(|v| !v.is_empty()) {
        out.push('@');
        if kind == "oci" {
            percent_encode(&version.to_lowercase(), true, &mut out);
        } else {
            percent_encode(version, true, &mut out);
        }
    }
    let mut qualifiers: Vec<(String, &str)> = qualifiers
        .iter()
        .filter(|(_, value)| !value.is_empty())
        .map(|(key, value)| (key.to_ascii_lowercase(), *value))
        .collect();
    qualifiers.sort();
    for (n, (key, value)) in qualifiers.iter().enumerate() {
        out.push(if n == 0 { '?' } else { '&' });
        out.push_str(key);
        out.push('=');
        percent_encode(value, true, &mut out);
    }
    out
}

/// Appends `text` to `out`, percent-encoding (as UTF-8, uppercase hex) every byte but
/// letters, digits, `-._~` and `:`, and also `/` when `keep_slash`.
fn percent_encode(text: &str, keep_slash: bool, out: &mut String) {
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric()
            || matches!(byte, b'-' | b'.' | b'_' | b'~' | b':')
            || (keep_slash && byte == b'/')
        {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
}

/// One SBOM document about one image or index.
#[derive(Debug, Clone)]
pub struct SbomDocument {
    /// Digest of the manifest or index it describes.
    pub subject: Digest,
    /// None for the index's SBOM.
    pub platform: Option<Platform>,
    pub format: SbomFormat,
    pub json: Vec<u8>,
}

/// One platform image, as an SBOM describes it.
#[derive(Debug, Clone)]
pub struct ImageFacts<'a> {
    pub digest: &'a Digest,
    pub platform: &'a Platform,
    /// The base image's manifest digest for this platform, when built on one.
    pub base_digest: Option<&'a Digest>,
    pub build_info: &'a BuildInfo,
}

/// SBOMs for every platform image and, when there is one, for the index
/// (`index_digest`), which lists the images as its variants. `base` is the base
/// image's `(name, digest)`, which the images descend from.
pub fn sboms(
    repository: &str,
    index_digest: Option<&Digest>,
    images: &[ImageFacts],
    base: Option<(&str, &Digest)>,
    created: i64,
    formats: &[SbomFormat],
) -> Vec<SbomDocument> {
    let mut subjects = Vec::new();
    for image in images {
        subjects.push((
            image.digest,
            Some(image.platform),
            Some(image.build_info),
            base.map(|(name, _)| name).zip(image.base_digest),
            Vec::new(),
        ));
    }
    if let Some(index) = index_digest {
        let variants = images
            .iter()
            .map(|i| (i.platform.clone(), i.digest.to_string()))
            .collect();
        subjects.push((index, None, None, base, variants));
    }
    let mut out = Vec::new();
    for (digest, platform, info, base, variants) in &subjects {
        let subject = SbomSubject {
            repository,
            digest,
            platform: *platform,
            build_info: *info,
            base: base.map(|(name, digest)| (name, digest.as_str())),
            variants,
            created,
        };
        for format in formats {
            let doc = match format {
                SbomFormat::Spdx => sbom::spdx(&subject),
                SbomFormat::Cyclonedx => sbom::cyclonedx(&subject),
            };
            out.push(SbomDocument {
                subject: (*digest).clone(),
                platform: platform.cloned(),
                format: *format,
                json: crate::image::canonical_json(&doc),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::purl;

    #[test]
    fn purl_versions_are_percent_encoded() {
        assert_eq!(
            purl("golang", "example.com/app", Some("(devel)"), &[]),
            "pkg:golang/example.com/app@%28devel%29"
        );
        assert_eq!(
            purl("golang", "github.com/a/b", Some("v2.0.0+incompatible"), &[]),
            "pkg:golang/github.com/a/b@v2.0.0%2Bincompatible"
        );
        assert_eq!(
            purl(
                "golang",
                "example.com/x",
                Some("v0.0.0-20240101000000-abcdef012345"),
                &[]
            ),
            "pkg:golang/example.com/x@v0.0.0-20240101000000-abcdef012345"
        );
        // No version, no `@`.
        assert_eq!(
            purl("golang", "example.com/x", None, &[]),
            "pkg:golang/example.com/x"
        );
        assert_eq!(
            purl("golang", "example.com/x", Some(""), &[]),
            "pkg:golang/example.com/x"
        );
    }

    #[test]
    fn purl_golang_paths_are_lowercase_and_encoded_per_segment() {
        assert_eq!(
            purl("golang", "github.com/BurntSushi/toml", Some("v1.3.2"), &[]),
            "pkg:golang/github.com/burntsushi/toml@v1.3.2"
        );
        assert_eq!(
            purl("golang", "example.com/Odd+App/a~b", Some("v1.0.0"), &[]),
            "pkg:golang/example.com/odd%2Bapp/a~b@v1.0.0"
        );
        assert_eq!(
            purl("golang", "example.com/sp ace/é", None, &[]),
            "pkg:golang/example.com/sp%20ace/%C3%A9"
        );
        assert_eq!(
            purl("golang", "stdlib", Some("v1.22.3"), &[]),
            "pkg:golang/stdlib@v1.22.3"
        );
    }

    #[test]
    fn purl_oci_keeps_the_colon_and_sorts_qualifiers() {
        assert_eq!(
            purl(
                "oci",
                "App",
                Some("sha256:AB12"),
                &[
                    ("variant", "v7"),
                    ("repository_url", "localhost:5000/acme/App"),
                    ("os", "linux"),
                    ("arch", "arm"),
                    ("tag", ""),
                ]
            ),
            "pkg:oci/app@sha256:ab12?arch=arm&os=linux&repository_url=localhost:5000/acme/App&variant=v7"
        );
        assert_eq!(
            purl("oci", "x", Some("sha256:00"), &[("tag", "a b&c=d#e")]),
            "pkg:oci/x@sha256:00?tag=a%20b%26c%3Dd%23e"
        );
    }
}

//! Image names as users write them: `registry/repository` for a destination, and
//! references with a tag or digest for what is read; each error says what is wrong in
//! words a user can act on.
//!
//! The grammar (the distribution project's reference grammar, with Docker Hub's short
//! names) is parsed by hand here rather than by the OCI client crate's parser: that one
//! compiles a Unicode-aware regular expression on first use, which costs more start-up
//! time than everything else gantry does before its first `go build`.

use std::fmt;

use super::PublishError;

/// Docker Hub, as short names (`alpine`, `acme/app`) mean it.
const DOCKER_HUB: &str = "docker.io";
/// The longest repository path a registry must accept.
const MAX_REPOSITORY: usize = 255;

/// A repository in a registry, without tag or digest: `ghcr.io/acme/app`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageName {
    pub registry: String,
    pub repository: String,
}

impl ImageName {
    /// Parses `registry/repository` (Docker Hub short names allowed); a tag or digest
    /// here is an error, since gantry chooses those itself.
    pub fn parse(text: &str) -> Result<Self, PublishError> {
        let err = |reason: &str| PublishError::Reference {
            reference: text.to_string(),
            reason: reason.to_string(),
        };
        if text.contains('@')
            || text
                .rsplit('/')
                .next()
                .is_some_and(|last| last.contains(':'))
        {
            return Err(err(
                "give the repository without a tag or digest (use --tag for tags)",
            ));
        }
        split(text)
            .map(|(name, _)| name)
            .ok_or_else(|| err(&reference_problem(text)))
    }

    /// `REPO/<name>`, for builds of several packages.
    pub fn join(&self, name: &str) -> ImageName {
        ImageName {
            registry: self.registry.clone(),
            repository: format!("{}/{}", self.repository, name.to_lowercase()),
        }
    }
}

impl fmt::Display for ImageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)
    }
}

/// Splits a user's image reference (`host/repo:tag`, `host/repo@sha256:…`) into the
/// repository and the tag or digest to fetch (a digest wins over a tag; neither means
/// `latest`).
pub fn parse_reference(text: &str) -> Result<(ImageName, String), PublishError> {
    let (name, (tag, digest)) = split(text).ok_or_else(|| PublishError::Reference {
        reference: text.to_string(),
        reason: reference_problem(text),
    })?;
    let at = digest.or(tag).unwrap_or("latest").to_string();
    Ok((name, at))
}

/// A tag and a digest, each when the reference has one.
type Suffix<'a> = (Option<&'a str>, Option<&'a str>);

/// `[DOMAIN/]PATH[:TAG][@DIGEST]`, or None when `text` is not a reference.
fn split(text: &str) -> Option<(ImageName, Suffix<'_>)> {
    let (rest, digest) = match text.split_once('@') {
        Some((rest, digest)) if is_digest(digest) => (rest, Some(digest)),
        Some(_) => return None,
        None => (text, None),
    };
    // A `:` after the last `/` starts the tag; one before it is a registry's port.
    let (name, tag) = match rest.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => match is_tag(tag) {
            true => (name, Some(tag)),
            false => return None,
        },
        _ => (rest, None),
    };
    let (registry, path) = match name.split_once('/') {
        Some((first, path))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.chars().any(|c| c.is_ascii_uppercase()) =>
        {
            match is_domain(first) {
                true => (first, path),
                false => return None,
            }
        }
        _ => (DOCKER_HUB, name),
    };
    if !path.split('/').all(is_path_component) {
        return None;
    }
    let registry = if registry == "index.docker.io" {
        DOCKER_HUB
    } else {
        registry
    };
    let repository = if registry == DOCKER_HUB && !path.contains('/') {
        format!("library/{path}")
    } else {
        path.to_string()
    };
    (repository.len() <= MAX_REPOSITORY).then_some((
        ImageName {
            registry: registry.to_string(),
            repository,
        },
        (tag, digest),
    ))
}

/// `host[:port]`: dot-separated labels of letters, digits and inner hyphens, or a
/// bracketed IPv6 address.
fn is_domain(text: &str) -> bool {
    let (host, port) = match text.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(':') && !port.contains(']') => (host, Some(port)),
        _ => (text, None),
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    let host_ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => !v6.is_empty() && v6.bytes().all(|b| b.is_ascii_hexdigit() || b == b':'),
        None => host.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        }),
    };
    port_ok && host_ok
}

/// Lowercase letters and digits, in runs joined by `.`, `_`, `__` or any number of `-`.
fn is_path_component(text: &str) -> bool {
    let b = text.as_bytes();
    let alnum = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    if b.is_empty() || !alnum(&b[0]) || !alnum(&b[b.len() - 1]) {
        return false;
    }
    let mut separator = String::new();
    for c in b {
        if alnum(c) {
            let ok = separator.is_empty()
                || matches!(separator.as_str(), "." | "_" | "__")
                || separator.bytes().all(|s| s == b'-');
            if !ok {
                return false;
            }
            separator.clear();
        } else if matches!(c, b'.' | b'_' | b'-') {
            separator.push(char::from(*c));
        } else {
            return false;
        }
    }
    true
}

/// The OCI tag grammar: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn is_tag(text: &str) -> bool {
    let b = text.as_bytes();
    let word = |c: &u8| c.is_ascii_alphanumeric() || *c == b'_';
    !b.is_empty()
        && b.len() <= 128
        && word(&b[0])
        && b.iter().all(|c| word(c) || matches!(c, b'.' | b'-'))
}

/// `sha256:` and 64 hex digits (or sha384/sha512 at their lengths).
fn is_digest(text: &str) -> bool {
    let Some((algorithm, hex)) = text.split_once(':') else {
        return false;
    };
    let length = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return false,
    };
    hex.len() == length && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Why `text` is not a reference, in words a user can act on.
fn reference_problem(text: &str) -> String {
    // The first component names a registry when it looks like a host.
    let path = match text.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first != first.to_lowercase() =>
        {
            rest
        }
        _ => text,
    };
    let path = path.split(['@', ':']).next().unwrap_or(path);
    if text.is_empty() {
        "the reference is empty".into()
    } else if text.chars().any(char::is_whitespace) {
        "it contains whitespace".into()
    } else if path.chars().any(|c| c.is_ascii_uppercase()) {
        format!(
            "repository names must be lowercase ({path:?}); use {:?}",
            path.to_lowercase()
        )
    } else if path.split('/').any(str::is_empty) {
        "a path component is empty (`//`, or a leading or trailing `/`)".into()
    } else if text.split_once('@').is_some_and(|(_, d)| !is_digest(d)) {
        "the digest after `@` must be sha256: and 64 hex digits".into()
    } else {
        "expected [REGISTRY/]REPOSITORY[:TAG|@sha256:DIGEST], the repository in lowercase letters, digits and the separators . _ - /, a tag of up to 128 letters, digits, _ . -".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_names() {
        let n = ImageName::parse("localhost:5000/acme/app").unwrap();
        assert_eq!(n.registry, "localhost:5000");
        assert_eq!(n.repository, "acme/app");
        assert_eq!(n.join("Hello").to_string(), "localhost:5000/acme/app/hello");
        assert!(ImageName::parse("localhost:5000/acme/app:v1").is_err());
        assert!(ImageName::parse("ghcr.io/acme/app@sha256:abc").is_err());
        assert!(ImageName::parse("Not A Ref!").is_err());
        let (name, at) = parse_reference("localhost:5000/base:v1").unwrap();
        assert_eq!((name.repository.as_str(), at.as_str()), ("base", "v1"));
    }

    /// What each reference splits into: (registry, repository, tag or digest), or
    /// None when it is not a reference.
    #[test]
    fn references_follow_the_distribution_grammar() {
        let digest = format!("sha256:{}", "ab".repeat(32));
        let at = |text: &str| {
            parse_reference(text)
                .ok()
                .map(|(n, at)| (n.registry, n.repository, at))
        };
        let ok =
            |r: &str, repo: &str, at: &str| Some((r.to_string(), repo.to_string(), at.to_string()));
        assert_eq!(at("alpine"), ok("docker.io", "library/alpine", "latest"));
        assert_eq!(at("acme/app:v1"), ok("docker.io", "acme/app", "v1"));
        assert_eq!(
            at("index.docker.io/alpine"),
            ok("docker.io", "library/alpine", "latest")
        );
        assert_eq!(at("ghcr.io/acme/app"), ok("ghcr.io", "acme/app", "latest"));
        assert_eq!(at("localhost/app:1.0"), ok("localhost", "app", "1.0"));
        assert_eq!(
            at("127.0.0.1:5000/a/b-c__d.e:x_Y.z-1"),
            ok("127.0.0.1:5000", "a/b-c__d.e", "x_Y.z-1")
        );
        assert_eq!(at("[::1]:5000/app"), ok("[::1]:5000", "app", "latest"));
        assert_eq!(at("Registry/app"), ok("Registry", "app", "latest"));
        assert_eq!(at("a---b"), ok("docker.io", "library/a---b", "latest"));
        assert_eq!(
            at(&format!("ghcr.io/app:v1@{digest}")),
            ok("ghcr.io", "app", &digest)
        );
        assert_eq!(
            at(&format!("ghcr.io/app@{digest}")),
            ok("ghcr.io", "app", &digest)
        );
        for bad in [
            "",
            "app:",
            ":v1",
            "ghcr.io/Acme/app",
            "ghcr.io//app",
            "ghcr.io/app/",
            "/app",
            "ghcr.io/a..b",
            "ghcr.io/a_-b",
            "ghcr.io/-a",
            "ghcr.io/app:-v1",
            "ghcr.io/app@sha256:abc",
            "ghcr.io/app@md5:0123456789abcdef0123456789abcdef",
            "ghcr.io:x/app",
            "-host.io/app",
            "not a ref!",
            &format!("app:{}", "t".repeat(129)),
            &format!("ghcr.io/{}", "a".repeat(256)),
        ] {
            assert_eq!(at(bad), None, "{bad:?} parsed");
        }
    }
}

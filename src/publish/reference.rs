//! Image names as users write them: `registry/repository` for a destination, and
//! references with a tag or digest for what is read; each error says what is wrong in
//! words a user can act on.

use std::fmt;

use oci_client::Reference;

use super::PublishError;

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
        let reference: Reference = text
            .parse()
            .map_err(|e: oci_client::ParseError| err(&reference_problem(text, &e)))?;
        Ok(ImageName {
            registry: reference.registry().to_string(),
            repository: reference.repository().to_string(),
        })
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
/// repository and the tag or digest to fetch.
pub fn parse_reference(text: &str) -> Result<(ImageName, String), PublishError> {
    let reference: Reference =
        text.parse()
            .map_err(|e: oci_client::ParseError| PublishError::Reference {
                reference: text.to_string(),
                reason: reference_problem(text, &e),
            })?;
    let name = ImageName {
        registry: reference.registry().to_string(),
        repository: reference.repository().to_string(),
    };
    let at = reference
        .digest()
        .or(reference.tag())
        .unwrap_or("latest")
        .to_string();
    Ok((name, at))
}

/// Why `text` is not a reference, in words a user can act on: the parser's own
/// message ("invalid reference format") says neither what nor where.
fn reference_problem(text: &str, error: &oci_client::ParseError) -> String {
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
    } else {
        format!(
            "{error}: expected [REGISTRY/]REPOSITORY[:TAG|@sha256:DIGEST], the repository in lowercase letters, digits and the separators . _ - /"
        )
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
}

//! Platform strings: what a user types (`linux/arm/v7`, `wasi/wasm`), what an OCI
//! index says, and what `go build` needs (GOOS, GOARCH, GOARM, GOAMD64).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An OCI platform: `os/architecture[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// Why a platform string cannot be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlatformError {
    #[error("platform {0:?} is not of the form os/arch[/variant] (e.g. linux/amd64, linux/arm/v7, wasi/wasm)")]
    Malformed(String),
    #[error(
        "platform js/wasm cannot be a container image: Go's js/wasm output needs wasm_exec.js and a JavaScript host, \
         and no container runtime runs it; use wasi/wasm (GOOS=wasip1) for a runnable wasm image"
    )]
    JsWasm,
    #[error("platform {0}: gantry builds Linux and WASI images only (supported: {SUPPORTED})")]
    UnsupportedOs(String),
    #[error("platform {0}: unknown architecture (supported: {SUPPORTED})")]
    UnknownArch(String),
    #[error("platform {platform}: unknown variant {variant:?} (valid: {valid})")]
    UnknownVariant {
        platform: String,
        variant: String,
        valid: &'static str,
    },
}

const SUPPORTED: &str = "linux/386, linux/amd64[/v1-v4], linux/arm/v5|v6|v7, linux/arm64[/v8], \
linux/ppc64le, linux/s390x, linux/riscv64, linux/loong64, linux/mips64le, wasi/wasm, wasip1/wasm";

/// The Go architectures gantry will build for Linux.
const LINUX_ARCHES: &[&str] = &[
    "386", "amd64", "arm", "arm64", "ppc64le", "s390x", "riscv64", "loong64", "mips64le",
];

/// Spellings of the wasm OS that runtimes key on: `wasi` (most runtimes) and `wasip1` (Go's GOOS).
const WASM_OSES: &[&str] = &["wasi", "wasip1"];

impl Platform {
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Self {
        Platform {
            os: os.to_string(),
            architecture: architecture.to_string(),
            variant: variant.map(str::to_string),
        }
    }

    /// True for a WebAssembly (WASI) platform, which is built without a base image.
    pub fn is_wasm(&self) -> bool {
        self.architecture == "wasm"
    }

    /// The environment `go build` needs for this platform.
    pub fn go_env(&self) -> Vec<(&'static str, String)> {
        if self.is_wasm() {
            return vec![("GOOS", "wasip1".into()), ("GOARCH", "wasm".into())];
        }
        let mut env = vec![
            ("GOOS", self.os.clone()),
            ("GOARCH", self.architecture.clone()),
        ];
        match (self.architecture.as_str(), self.variant.as_deref()) {
            ("arm", Some(v)) => env.push(("GOARM", v.trim_start_matches('v').to_string())),
            ("amd64", Some(v)) => env.push(("GOAMD64", v.to_string())),
            _ => {}
        }
        env
    }

    /// Whether an entry of a base image's index serves this platform. `arm64` with and
    /// without `v8` are the same thing; so are `arm` without variant and `arm/v7`.
    pub fn matches(&self, other: &Platform) -> bool {
        fn norm(p: &Platform) -> (&str, &str, &str) {
            let v = p.variant.as_deref().unwrap_or("");
            let v = match (p.architecture.as_str(), v) {
                ("arm64", "") => "v8",
                ("arm", "") => "v7",
                ("amd64", "v1") => "",
                _ => v,
            };
            (p.os.as_str(), p.architecture.as_str(), v)
        }
        norm(self) == norm(other)
    }

    /// Checks that gantry can build an image for this platform.
    pub fn validate(&self) -> Result<(), PlatformError> {
        let text = self.to_string();
        if self.os == "js" && self.architecture == "wasm" {
            return Err(PlatformError::JsWasm);
        }
        if self.is_wasm() {
            if !WASM_OSES.contains(&self.os.as_str()) {
                return Err(PlatformError::UnsupportedOs(text));
            }
            if let Some(v) = &self.variant {
                return Err(PlatformError::UnknownVariant {
                    platform: text,
                    variant: v.clone(),
                    valid: "none",
                });
            }
            return Ok(());
        }
        if self.os != "linux" {
            return Err(PlatformError::UnsupportedOs(text));
        }
        if !LINUX_ARCHES.contains(&self.architecture.as_str()) {
            return Err(PlatformError::UnknownArch(text));
        }
        let valid: &'static str = match self.architecture.as_str() {
            "arm" => "v5, v6, v7",
            "arm64" => "v8",
            "amd64" => "v1, v2, v3, v4",
            _ => "none",
        };
        if let Some(v) = &self.variant {
            if !valid.split(", ").any(|ok| ok == v) {
                return Err(PlatformError::UnknownVariant {
                    platform: text,
                    variant: v.clone(),
                    valid,
                });
            }
        }
        Ok(())
    }
}

impl FromStr for Platform {
    type Err = PlatformError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.trim().split('/').collect();
        let platform = match parts.as_slice() {
            [os, arch] if !os.is_empty() && !arch.is_empty() => Platform::new(os, arch, None),
            [os, arch, variant] if !os.is_empty() && !arch.is_empty() && !variant.is_empty() => {
                Platform::new(os, arch, Some(variant))
            }
            _ => return Err(PlatformError::Malformed(s.to_string())),
        };
        // `wasm32` is a spelling crun accepts; the image says `wasm`, as runwasi needs.
        let platform = if platform.architecture == "wasm32" {
            Platform::new(&platform.os, "wasm", None)
        } else {
            platform
        };
        platform.validate()?;
        Ok(platform)
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// What the user asked for with `--platform`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlatformRequest {
    /// Exactly these platforms.
    List(Vec<Platform>),
    /// Every platform the base image offers, plus these wasm platforms.
    All { wasm: Vec<Platform> },
}

/// Which OS string the wasm image's config carries: runtimes disagree on the spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum WasmOs {
    /// `wasi/wasm`: Podman/crun, Docker Desktop, runwasi.
    #[default]
    Wasi,
    /// `wasip1/wasm`: the OCI image-spec's GOOS value.
    Wasip1,
    /// Both entries in the index, sharing one layer blob.
    Both,
}

impl PlatformRequest {
    /// Parses a comma-separated list; `all` may stand beside wasm platforms.
    /// A wasm entry is rewritten to the OS spelling(s) `wasm_os` asks for.
    pub fn parse(list: &str, wasm_os: WasmOs) -> Result<Self, PlatformError> {
        let mut all = false;
        let mut platforms: Vec<Platform> = Vec::new();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if item == "all" {
                all = true;
                continue;
            }
            let p: Platform = item.parse()?;
            if p.is_wasm() {
                for os in wasm_os_names(wasm_os, &p) {
                    let w = Platform::new(os, "wasm", None);
                    if !platforms.contains(&w) {
                        platforms.push(w);
                    }
                }
            } else if !platforms.contains(&p) {
                platforms.push(p);
            }
        }
        if all {
            platforms.retain(Platform::is_wasm);
            return Ok(PlatformRequest::All { wasm: platforms });
        }
        if platforms.is_empty() {
            return Err(PlatformError::Malformed(list.to_string()));
        }
        Ok(PlatformRequest::List(platforms))
    }
}

/// The explicit `--wasm-os` wins over the spelling in `--platform`, except that a user
/// who typed `wasip1/wasm` with the default `--wasm-os` gets `wasip1`.
fn wasm_os_names(wasm_os: WasmOs, asked: &Platform) -> Vec<&'static str> {
    match wasm_os {
        WasmOs::Both => vec!["wasi", "wasip1"],
        WasmOs::Wasip1 => vec!["wasip1"],
        WasmOs::Wasi if asked.os == "wasip1" => vec!["wasip1"],
        WasmOs::Wasi => vec!["wasi"],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_maps_to_go_env() {
        let p: Platform = "linux/arm/v7".parse().unwrap();
        assert_eq!(
            p.go_env(),
            vec![
                ("GOOS", "linux".to_string()),
                ("GOARCH", "arm".to_string()),
                ("GOARM", "7".to_string())
            ]
        );
        let p: Platform = "linux/amd64/v3".parse().unwrap();
        assert!(p.go_env().contains(&("GOAMD64", "v3".to_string())));
        let w: Platform = "wasi/wasm".parse().unwrap();
        assert_eq!(
            w.go_env(),
            vec![
                ("GOOS", "wasip1".to_string()),
                ("GOARCH", "wasm".to_string())
            ]
        );
        let w: Platform = "wasi/wasm32".parse().unwrap();
        assert_eq!(w.to_string(), "wasi/wasm");
    }

    #[test]
    fn rejects_bad_platforms_with_reasons() {
        assert_eq!("js/wasm".parse::<Platform>(), Err(PlatformError::JsWasm));
        assert!(matches!(
            "windows/amd64".parse::<Platform>(),
            Err(PlatformError::UnsupportedOs(_))
        ));
        assert!(matches!(
            "linux/sparc".parse::<Platform>(),
            Err(PlatformError::UnknownArch(_))
        ));
        assert!(matches!(
            "linux/arm/v9".parse::<Platform>(),
            Err(PlatformError::UnknownVariant { .. })
        ));
        assert!(matches!(
            "linux".parse::<Platform>(),
            Err(PlatformError::Malformed(_))
        ));
        assert!(PlatformError::JsWasm.to_string().contains("wasi/wasm"));
    }

    #[test]
    fn matches_normalises_variants() {
        let arm64: Platform = "linux/arm64".parse().unwrap();
        assert!(arm64.matches(&Platform::new("linux", "arm64", Some("v8"))));
        let armv7: Platform = "linux/arm/v7".parse().unwrap();
        assert!(armv7.matches(&Platform::new("linux", "arm", None)));
        assert!(!armv7.matches(&Platform::new("linux", "arm", Some("v6"))));
    }

    #[test]
    fn request_handles_all_and_wasm_os() {
        let r = PlatformRequest::parse("linux/amd64,wasi/wasm", WasmOs::Both).unwrap();
        assert_eq!(
            r,
            PlatformRequest::List(vec![
                Platform::new("linux", "amd64", None),
                Platform::new("wasi", "wasm", None),
                Platform::new("wasip1", "wasm", None),
            ])
        );
        let r = PlatformRequest::parse("all,wasi/wasm", WasmOs::Wasi).unwrap();
        assert_eq!(
            r,
            PlatformRequest::All {
                wasm: vec![Platform::new("wasi", "wasm", None)]
            }
        );
        let r = PlatformRequest::parse("wasip1/wasm", WasmOs::Wasi).unwrap();
        assert_eq!(
            r,
            PlatformRequest::List(vec![Platform::new("wasip1", "wasm", None)])
        );
    }
}

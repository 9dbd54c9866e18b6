//! The public-good Sigstore instance's trust material, its signing config and its
//! trusted root, as Sigstore's TUF repository serves them: sigstore-trust-root fetches
//! and verifies them from the TUF root built into it, and caches them under gantry's
//! cache directory. When the repository cannot be reached, the copies built into that
//! crate stand in, with a warning to print; any other failure (metadata that does not
//! verify, a rollback) is an error, since falling back would let whoever can break the
//! update choose the older trust.

use std::path::Path;

use serde::Serialize;
use sigstore_trust_root::{
    SigningConfig, TrustedRoot, TufConfig, SIGSTORE_PRODUCTION_SIGNING_CONFIG,
    SIGSTORE_PRODUCTION_TRUSTED_ROOT,
};

/// The public-good signing config (JSON), and a warning when it is the built-in copy.
pub async fn signing_config(cache_dir: Option<&Path>) -> Result<(Vec<u8>, Option<String>), String> {
    let fetched = SigningConfig::from_tuf(tuf(cache_dir)).await;
    settle(
        fetched,
        "signing config",
        SIGSTORE_PRODUCTION_SIGNING_CONFIG,
    )
}

/// The public-good trusted root (JSON), and a warning when it is the built-in copy.
pub async fn trusted_root(cache_dir: Option<&Path>) -> Result<(Vec<u8>, Option<String>), String> {
    let fetched = TrustedRoot::from_tuf(tuf(cache_dir)).await;
    settle(fetched, "trusted root", SIGSTORE_PRODUCTION_TRUSTED_ROOT)
}

fn tuf(cache_dir: Option<&Path>) -> TufConfig {
    let mut tuf = TufConfig::production();
    if let Some(dir) = cache_dir {
        tuf = tuf.with_cache_dir(dir.join("sigstore-tuf"));
    }
    // gantry's client: its timeouts bound a repository that answers slowly.
    if let Ok(client) = super::service::client() {
        tuf = tuf.with_http_client(client);
    }
    tuf
}

fn settle<T: Serialize, E: std::fmt::Display>(
    fetched: Result<T, E>,
    what: &str,
    built_in: &str,
) -> Result<(Vec<u8>, Option<String>), String> {
    let failure = match fetched {
        Ok(value) => {
            return serde_json::to_vec(&value)
                .map(|json| (json, None))
                .map_err(|e| format!("the public-good {what} does not encode as JSON: {e}"))
        }
        Err(e) => e.to_string(),
    };
    // The TUF crate reports an unreachable repository as a transport error.
    if !failure.contains("transport error") {
        return Err(format!(
            "the public-good {what} from Sigstore's TUF repository does not verify ({failure}); pass --signing-config or --trusted-root with files you trust"
        ));
    }
    Ok((
        built_in.as_bytes().to_vec(),
        Some(format!(
            "cannot reach Sigstore's TUF repository for the public-good {what} ({failure}); using the copy built into gantry"
        )),
    ))
}

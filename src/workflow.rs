//! GitHub Actions workflow commands at the bottom of the crate: escaping, and masking
//! secrets. Everything may use it (signing masks the OIDC token it fetches) without
//! depending on the reporting in [`crate::github`].

/// True when running as a GitHub Actions step.
pub fn in_actions() -> bool {
    std::env::var("GITHUB_ACTIONS").as_deref() == Ok("true")
}

/// Escapes a workflow command's message: `%`, CR, LF.
pub fn escape_data(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Escapes a workflow command's property value: also `:` and `,`.
pub fn escape_property(text: &str) -> String {
    escape_data(text).replace(':', "%3A").replace(',', "%2C")
}

/// `::add-mask::` lines for every secret the environment holds, so the runner hides
/// them from logs.
pub fn mask_commands() -> Vec<String> {
    [
        "GITHUB_TOKEN",
        "COSIGN_PASSWORD",
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
        "INPUT_GITHUB-TOKEN",
    ]
    .iter()
    .filter_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    .map(|v| format!("::add-mask::{}", escape_data(&v)))
    .collect()
}

/// Hides a secret learnt at run time (an OIDC token) from the job's log.
pub fn mask(secret: &str) {
    if in_actions() && !secret.is_empty() {
        eprintln!("::add-mask::{}", escape_data(secret));
    }
}

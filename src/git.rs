//! Facts about the source checkout, from the `git` on PATH: what templates (`.Git`) and
//! provenance (the commit and remote) record. Outside a checkout, or without git,
//! there are none, and nothing fails.

use std::path::Path;
use std::process::Command;

/// What `git ARGS` prints in `dir`, trimmed; None when git fails or prints nothing.
pub fn output(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}

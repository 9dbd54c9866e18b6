//! `gantry keygen`: a cosign-compatible key pair.

use anyhow::{bail, Context, Result};
use gantry::sign::keys::{Secret, SigningKey};

use super::Settings;

pub fn keygen(prefix: &std::path::Path, settings: &Settings) -> Result<()> {
    let password = match settings.cosign_password.clone() {
        Some(password) => password,
        None => ask_new_password()?,
    };
    let key = SigningKey::generate()?;
    let (private, public) = key.write_pair(prefix, &password)?;
    eprintln!(
        "gantry: wrote {} and {}",
        private.display(),
        public.display()
    );
    Ok(())
}

/// A new key's password, typed twice on the terminal without echo.
fn ask_new_password() -> Result<Secret> {
    if std::fs::File::open("/dev/tty").is_err() {
        bail!("COSIGN_PASSWORD is not set and there is no terminal to ask for a password: set COSIGN_PASSWORD to the new key's password (set and empty for a key without one)");
    }
    let first = rpassword::prompt_password("Enter password for private key: ")
        .context("reading the password from the terminal")?;
    let again = rpassword::prompt_password("Enter password for private key again: ")
        .context("reading the password from the terminal")?;
    if first != again {
        bail!("the two passwords differ; nothing was written");
    }
    Ok(Secret::new(first))
}

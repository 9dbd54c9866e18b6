//! `gantry sign`: sign and attest an image already published.

use anyhow::{bail, Context, Result};
use gantry::sign::published::ClaimOptions;
use gantry::sign::verify;
use gantry::sign::{Signer, Signing};

use super::args::{AttestArgs, NetworkArgs, SigningArgs};
use super::output::{print_result, report_attachments};
use super::Settings;

pub async fn sign(
    settings: &Settings,
    reference: &str,
    signing: &SigningArgs,
    attest: &AttestArgs,
    network: &NetworkArgs,
) -> Result<()> {
    let signer = match signing.signing(settings).await? {
        Some(Signing::Key(signer)) => *signer,
        Some(Signing::Keyless(keyless)) => Signer::keyless(&keyless).await?,
        None => bail!("nothing to sign with: pass --key PATH, or run where an OIDC token is available (--sign keyless)"),
    };
    let workdir = std::env::current_dir().context("reading the current directory")?;
    let options = ClaimOptions {
        sbom: &attest.sbom.0,
        provenance: !attest.no_provenance,
        created: settings.source_date_epoch()?.unwrap_or(0),
        workdir: &workdir,
    };
    let (digest, attached, skipped) = verify::sign_reference(
        reference,
        &signer,
        &network.options()?,
        &options,
        attest.legacy_attestations,
    )
    .await?;
    for note in &skipped {
        eprintln!("gantry: {note}");
    }
    report_attachments(&attached);
    // The reference by digest: what was signed, whatever tag named it.
    let name = match reference.rsplit_once('@') {
        Some((name, _)) => name,
        None => match reference.rsplit_once(':') {
            Some((name, tag)) if !tag.contains('/') && name.contains('/') => name,
            _ => reference,
        },
    };
    print_result(&format!("{name}@{digest}"))
}

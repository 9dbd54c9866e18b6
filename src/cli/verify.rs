//! `gantry verify` and `gantry sbom`: what an image's signatures and attestations say,
//! judged by a key or a keyless identity.

use anyhow::{bail, Result};
use gantry::attest::sbom::SbomFormat;
use gantry::sign::trust::Trust;
use gantry::sign::verify;

use super::args::{NetworkArgs, TrustArgs};
use super::output::print_result;

pub async fn verify(reference: &str, trust: &TrustArgs, network: &NetworkArgs) -> Result<()> {
    let registries = network.options()?;
    let Some(trust) = trust.trust().await? else {
        bail!("say whom to trust: --key cosign.pub, or --certificate-identity ID --certificate-oidc-issuer URL for keyless signatures");
    };
    let (digest, found) = verify::inspect_reference(reference, Some(&trust), &registries).await?;
    let whom = match &trust {
        Trust::Key(_) => "this key",
        Trust::Identity(_) => "this identity and issuer",
    };
    for f in &found {
        eprintln!(
            "gantry: {} {} ({}{}{}): {}",
            f.kind,
            f.predicate_type
                .as_deref()
                .unwrap_or("(cosign simplesigning)"),
            f.storage,
            f.certificate_identity
                .as_deref()
                .map(|i| format!(", signed by {i}"))
                .unwrap_or_default(),
            if f.tlog_entry {
                ", in the transparency log"
            } else {
                ""
            },
            match (&f.verified, &f.reason) {
                (Some(true), _) => "verified".to_string(),
                (_, Some(reason)) => format!("NOT verified: {reason}"),
                _ => format!("NOT verified by {whom}"),
            }
        );
    }
    if !found.iter().any(|f| f.kind == "signature") {
        bail!("{reference} ({digest}) has no signatures: sign it (`gantry sign`, or build with --key or keyless signing), then verify");
    }
    if !found
        .iter()
        .any(|f| f.kind == "signature" && f.verified == Some(true))
    {
        bail!(
            "{reference} ({digest}) is signed, but no signature verifies with {whom}{}",
            reasons(found.iter().filter(|f| f.kind == "signature"))
        );
    }
    // Each kind of attestation must have one that verifies: another signer's may sit
    // beside ours, but an altered one must not pass unnoticed.
    let failed: std::collections::BTreeSet<&str> = found
        .iter()
        .filter(|f| f.kind == "attestation")
        .filter_map(|f| f.predicate_type.as_deref())
        .filter(|t| {
            !found
                .iter()
                .any(|f| f.predicate_type.as_deref() == Some(*t) && f.verified == Some(true))
        })
        .collect();
    if !failed.is_empty() {
        bail!(
            "{reference} ({digest}): its signature verifies, but no attestation of type {} verifies with {whom}{}",
            failed.iter().copied().collect::<Vec<_>>().join(", "),
            reasons(found.iter().filter(|f| f
                .predicate_type
                .as_deref()
                .is_some_and(|t| failed.contains(t))))
        );
    }
    print_result(&serde_json::to_string_pretty(&found)?)
}

/// The distinct reasons these were not verified, in the order first met, as ": a; b"
/// (or nothing when none is known).
fn reasons<'a>(found: impl Iterator<Item = &'a verify::Found>) -> String {
    let mut distinct: Vec<String> = Vec::new();
    for reason in found.filter_map(|f| f.reason.as_ref()) {
        let reason = reason.to_string();
        if !distinct.contains(&reason) {
            distinct.push(reason);
        }
    }
    if distinct.is_empty() {
        String::new()
    } else {
        format!(": {}", distinct.join("; "))
    }
}

pub async fn sbom(
    reference: &str,
    format: SbomFormat,
    trust: &TrustArgs,
    unverified: bool,
    network: &NetworkArgs,
) -> Result<()> {
    let trust = trust.trust().await?;
    if trust.is_none() {
        if !unverified {
            bail!("say whom to trust: --key cosign.pub, or --certificate-identity ID --certificate-oidc-issuer URL; or --unverified to print an SBOM whose signer is not checked");
        }
        eprintln!("gantry: warning: --unverified: printing an SBOM without checking who signed it");
    }
    let (digest, found) =
        verify::inspect_reference(reference, trust.as_ref(), &network.options()?).await?;
    let sbom = found.iter().find(|f| {
        f.predicate_type.as_deref() == Some(format.predicate_type()) && f.verified != Some(false)
    });
    match sbom.and_then(|f| f.statement.as_ref()) {
        Some(statement) => print_result(&serde_json::to_string_pretty(&statement["predicate"])?),
        None => bail!(
            "no {} SBOM attestation{} found for {reference} ({digest})",
            format.predicate_type(),
            if trust.is_some() {
                " that verifies"
            } else {
                ""
            }
        ),
    }
}

//! `gantry verify` and `gantry sbom`: what an image's signatures and attestations say,
//! judged by a key or a keyless identity. `gantry sbom --platform` reads the index
//! to find that platform's image, whose SBOM it prints.

use anyhow::{bail, Context, Result};
use gantry::attest::sbom::SbomFormat;
use gantry::image::Digest;
use gantry::platform::{Platform, PlatformError};
use gantry::publish::RegistryOptions;
use gantry::sign::evidence::Evidence;
use gantry::sign::trust::Trust;
use gantry::sign::{verify, AttachmentKind};
use serde_json::Value;

use super::args::{NetworkArgs, TrustArgs};
use super::output::print_result;
use super::settings::Settings;

pub async fn verify(
    reference: &str,
    trust_args: &TrustArgs,
    network: &NetworkArgs,
    settings: &Settings,
) -> Result<()> {
    let registries = network.options()?;
    let (trust, evidence) = trust_args.policy(settings.cache_dir.as_deref()).await?;
    let Some(trust) = trust else {
        bail!("say whom to trust: --key cosign.pub, or --certificate-identity ID --certificate-oidc-issuer URL for keyless signatures");
    };
    let (digest, found) =
        verify::inspect_reference(reference, Some(&trust), evidence.as_ref(), &registries).await?;
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
            match (&f.witnessed, f.tlog_entry) {
                (Some(w), _) => format!(
                    ", backed by the trusted root ({}{} signing time{} checked)",
                    match (w.tlog, w.sct) {
                        (true, true) => "log inclusion, SCT, ",
                        (true, false) => "log inclusion, ",
                        (false, true) => "SCT, ",
                        (false, false) => "",
                    },
                    w.timestamps,
                    if w.timestamps == 1 { "" } else { "s" },
                ),
                (None, true) => ", in the transparency log".to_string(),
                (None, false) => String::new(),
            },
            match (&f.verified, &f.reason) {
                (Some(true), _) => "verified".to_string(),
                (_, Some(reason)) => format!("NOT verified: {reason}"),
                _ => format!("NOT verified by {whom}"),
            }
        );
    }
    if !found.iter().any(|f| f.kind == AttachmentKind::Signature) {
        bail!("{reference} ({digest}) has no signatures: sign it (`gantry sign`, or build with --key or keyless signing), then verify");
    }
    if !found
        .iter()
        .any(|f| f.kind == AttachmentKind::Signature && f.verified == Some(true))
    {
        bail!(
            "{reference} ({digest}) is signed, but no signature verifies with {whom}{}",
            reasons(found.iter().filter(|f| f.kind == AttachmentKind::Signature))
        );
    }
    // Each kind of attestation must have one that verifies: another signer's may sit
    // beside ours, but an altered one must not pass unnoticed.
    let failed: std::collections::BTreeSet<&str> = found
        .iter()
        .filter(|f| f.kind == AttachmentKind::Attestation)
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

/// Prints the attested SBOM of `reference`, or with `platform`, of that platform's
/// image in the index `reference` names.
pub async fn sbom(
    reference: &str,
    format: SbomFormat,
    platform: Option<&str>,
    trust_args: &TrustArgs,
    unverified: bool,
    network: &NetworkArgs,
    settings: &Settings,
) -> Result<()> {
    let wanted = platform.map(parse_platform).transpose()?;
    let (trust, evidence) = trust_args.policy(settings.cache_dir.as_deref()).await?;
    let evidence = evidence.as_ref();
    if trust.is_none() {
        if !unverified {
            bail!("say whom to trust: --key cosign.pub, or --certificate-identity ID --certificate-oidc-issuer URL; or --unverified to print an SBOM whose signer is not checked");
        }
        eprintln!("gantry: warning: --unverified: printing an SBOM without checking who signed it");
    }
    let registries = network.options()?;
    let (digest, found) = match &wanted {
        None => verify::inspect_reference(reference, trust.as_ref(), evidence, &registries).await?,
        Some(wanted) => {
            platform_image(reference, wanted, trust.as_ref(), evidence, &registries).await?
        }
    };
    let sbom = found.iter().find(|f| {
        f.predicate_type.as_deref() == Some(format.predicate_type()) && f.verified != Some(false)
    });
    match sbom.and_then(|f| f.statement.as_ref()) {
        Some(statement) => print_result(&serde_json::to_string_pretty(&statement["predicate"])?),
        None => bail!(
            "no {} SBOM attestation{} found for {}{reference} ({digest})",
            format.predicate_type(),
            if trust.is_some() {
                " that verifies"
            } else {
                ""
            },
            wanted
                .map(|p| format!("the {p} image of "))
                .unwrap_or_default(),
        ),
    }
}

/// A platform as `--platform` gives it: `os/arch[/variant]`. Any OS and architecture
/// may be asked for, since `gantry sign` attests images that gantry did not build.
fn parse_platform(text: &str) -> Result<Platform> {
    let parts: Vec<&str> = text.trim().split('/').collect();
    match parts.as_slice() {
        [os, arch] if !os.is_empty() && !arch.is_empty() => Ok(Platform::new(os, arch, None)),
        [os, arch, variant] if parts.iter().all(|p| !p.is_empty()) => {
            Ok(Platform::new(os, arch, Some(variant)))
        }
        _ => Err(PlatformError::Malformed(text.to_string()).into()),
    }
}

/// The digest of `wanted`'s image in the index `reference` names, and what is stored
/// about that image. A single image (not an index) will do when it is of `wanted`.
async fn platform_image(
    reference: &str,
    wanted: &Platform,
    trust: Option<&Trust>,
    evidence: Option<&Evidence>,
    registries: &RegistryOptions,
) -> Result<(Digest, Vec<verify::Found>)> {
    let root = verify::open(reference, registries).await?;
    let manifest: Value = serde_json::from_slice(&root.manifest)
        .with_context(|| format!("{reference} ({}) is not a JSON manifest", root.digest))?;
    let (store, repository) = (root.store(), root.repository());
    let Some(entries) = manifest["manifests"].as_array() else {
        let config = manifest["config"]["digest"].as_str().with_context(|| {
            format!(
                "{reference} ({}) is neither an index nor an image",
                root.digest
            )
        })?;
        let config: Value = serde_json::from_slice(&store.fetch_blob(repository, config).await?)
            .with_context(|| format!("the config of {reference} is not JSON"))?;
        let own = Platform::new(
            config["os"].as_str().unwrap_or_default(),
            config["architecture"].as_str().unwrap_or_default(),
            config["variant"].as_str(),
        );
        if !own.matches(wanted) {
            bail!(
                "{reference} ({}) is a single {own} image, not an index, so it has no {wanted} image",
                root.digest
            );
        }
        let found = verify::inspect(store, repository, &root.digest, trust, evidence).await?;
        return Ok((root.digest.clone(), found));
    };
    let listed: Vec<(Platform, Digest)> = entries
        .iter()
        .filter_map(|e| {
            let platform = serde_json::from_value(e["platform"].clone()).ok()?;
            Some((platform, Digest::parse(e["digest"].as_str()?).ok()?))
        })
        .collect();
    let Some((_, digest)) = listed.iter().find(|(p, _)| p.matches(wanted)) else {
        let platforms: Vec<String> = listed.iter().map(|(p, _)| p.to_string()).collect();
        bail!(
            "{reference} ({}) has no {wanted} image; its index lists {}",
            root.digest,
            if platforms.is_empty() {
                "no platforms".to_string()
            } else {
                platforms.join(", ")
            }
        );
    };
    let found = verify::inspect(store, repository, digest, trust, evidence).await?;
    Ok((digest.clone(), found))
}

#[cfg(test)]
mod tests {
    use super::parse_platform;

    #[test]
    fn platforms_are_read_as_given() {
        assert_eq!(
            parse_platform("linux/arm64").unwrap().to_string(),
            "linux/arm64"
        );
        assert_eq!(
            parse_platform("linux/arm/v7").unwrap().to_string(),
            "linux/arm/v7"
        );
        // Not one gantry builds, but one an index may hold.
        assert_eq!(
            parse_platform("windows/amd64").unwrap().to_string(),
            "windows/amd64"
        );
        for bad in ["linux", "linux/", "/amd64", "linux/arm/v7/x", "linux//v7"] {
            let err = parse_platform(bad).unwrap_err().to_string();
            assert!(err.contains("os/arch[/variant]"), "{bad}: {err}");
        }
    }
}

//! Flags shared by several commands: how to reach registries, whom to trust, how to
//! sign, and what to attest.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use gantry::attest::sbom::SbomFormat;
use gantry::publish::{NetworkSettings, RegistryOptions};
use gantry::sign::evidence::Evidence;
use gantry::sign::keyless::{self, TokenSource};
use gantry::sign::keys::{Secret, SigningKey};
use gantry::sign::public_good;
use gantry::sign::signing_config::{self, Services};
use gantry::sign::tlog::{LogService, RekorVersion, Witnesses};
use gantry::sign::trust::{Authorities, IdentityMatch, IdentityPolicy, PublicKey, Trust};
use gantry::sign::{rekor, Keyless, SignError, Signer, Signing};

use super::Settings;

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SignMode {
    /// A key when one is given, else GitHub OIDC keyless when available, else none.
    Auto,
    Keyless,
    Key,
    None,
}

/// How registries are reached: shared by every command that talks to one.
#[derive(Args, Clone)]
pub struct NetworkArgs {
    /// Registry host to reach over plain HTTP (repeatable; loopback hosts always are).
    #[arg(long = "insecure-registry")]
    pub insecure_registries: Vec<String>,
    /// Tries per registry request before giving up (408, 429, 5xx and broken
    /// connections are retried with backoff).
    #[arg(long, env = "GANTRY_REGISTRY_ATTEMPTS", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub registry_attempts: u32,
    /// Seconds without a byte moving either way after which a registry request fails.
    #[arg(long, env = "GANTRY_STALL_TIMEOUT", default_value_t = 60.0)]
    pub stall_timeout: f64,
}

impl NetworkArgs {
    pub fn options(&self) -> Result<RegistryOptions> {
        if !(self.stall_timeout.is_finite() && self.stall_timeout > 0.0) {
            bail!(
                "--stall-timeout {} is not a positive number of seconds",
                self.stall_timeout
            );
        }
        let mut network = NetworkSettings::default();
        network.retry.attempts = self.registry_attempts;
        network.stall_timeout = std::time::Duration::from_secs_f64(self.stall_timeout);
        Ok(RegistryOptions {
            insecure: self.insecure_registries.clone(),
            network,
        })
    }
}

/// Whom to trust: shared by `verify` and `sbom`.
#[derive(Args)]
pub struct TrustArgs {
    /// Public key (cosign.pub) the signatures must verify with.
    #[arg(long, conflicts_with_all = ["certificate_identity", "certificate_identity_regexp"])]
    pub key: Option<PathBuf>,
    /// Keyless: the identity the certificate must name; for GitHub Actions
    /// https://github.com/OWNER/REPO/.github/workflows/FILE@REF.
    #[arg(long, requires = "certificate_oidc_issuer")]
    pub certificate_identity: Option<String>,
    /// Keyless: a regular expression the identity must match.
    #[arg(
        long,
        conflicts_with = "certificate_identity",
        requires = "certificate_oidc_issuer"
    )]
    pub certificate_identity_regexp: Option<String>,
    /// Keyless: the OIDC issuer; for GitHub Actions https://token.actions.githubusercontent.com.
    #[arg(long)]
    pub certificate_oidc_issuer: Option<String>,
    /// Sigstore trusted root (trusted_root.json): the Fulcio CAs, transparency logs, CT
    /// logs and timestamp authorities that each Sigstore bundle's evidence (log
    /// inclusion, SCT, timestamps) is checked against. Default: the public-good one,
    /// from Sigstore's TUF repository (else the copy built in, with a warning); none
    /// when --fulcio-url names the CA, or for a key with --insecure-ignore-tlog.
    #[arg(long)]
    pub trusted_root: Option<PathBuf>,
    /// Accept bundles without a transparency-log entry (signed with --no-tlog-upload).
    #[arg(long)]
    pub insecure_ignore_tlog: bool,
    /// Accept certificates without an SCT (a Fulcio with no CT log).
    #[arg(long)]
    pub insecure_ignore_sct: bool,
    /// Keyless: the Fulcio whose CA (its trust bundle) certificates must chain to,
    /// instead of a trusted root's; then no evidence is checked.
    /// (Not read from SIGSTORE_FULCIO_URL, which signing reads: a variable set for
    /// signing must not turn the checks off.)
    #[arg(long, conflicts_with = "trusted_root")]
    pub fulcio_url: Option<String>,
}

impl TrustArgs {
    /// Whom to trust (None when none was asked for), and what each bundle's evidence
    /// is checked against (see the field docs for when there is none).
    pub async fn policy(
        &self,
        cache_dir: Option<&Path>,
    ) -> Result<(Option<Trust>, Option<Evidence>)> {
        let identity = match (
            &self.certificate_identity,
            &self.certificate_identity_regexp,
        ) {
            (Some(exact), _) => Some(IdentityMatch::Exact(exact.clone())),
            (None, Some(re)) => Some(IdentityMatch::Regex(
                regex::Regex::new(re)
                    .with_context(|| format!("--certificate-identity-regexp {re:?}"))?,
            )),
            (None, None) => {
                if self.certificate_oidc_issuer.is_some() {
                    bail!("--certificate-oidc-issuer needs --certificate-identity (or --certificate-identity-regexp)");
                }
                None
            }
        };
        let key = self.key.as_deref().map(PublicKey::load).transpose()?;
        if key.is_none() && identity.is_none() {
            return Ok((None, None));
        }
        let root: Option<(Vec<u8>, String)> = match (&self.trusted_root, &self.fulcio_url) {
            (Some(path), _) => Some((
                std::fs::read(path)
                    .with_context(|| format!("trusted root {}: cannot read it", path.display()))?,
                path.display().to_string(),
            )),
            (None, Some(url)) if key.is_none() && identity.is_some() => {
                eprintln!("gantry: warning: --fulcio-url {url}: certificates are checked against its CA only; no log entry, SCT or timestamp is checked (pass --trusted-root FILE instead to check them)");
                None
            }
            (None, _) if key.is_some() && self.insecure_ignore_tlog => None,
            (None, _) => {
                let (json, warning) = public_good::trusted_root(cache_dir)
                    .await
                    .map_err(|e| anyhow::anyhow!(e))?;
                if let Some(warning) = warning {
                    eprintln!(
                        "gantry: warning: {warning} (pass --trusted-root FILE to choose the roots)"
                    );
                }
                Some((json, "the public-good trusted root".to_string()))
            }
        };
        let evidence = root
            .as_ref()
            .map(|(json, source)| {
                Evidence::from_json(json, self.insecure_ignore_tlog, self.insecure_ignore_sct)
                    .map_err(|e| anyhow::anyhow!("trusted root {source}: {e}"))
            })
            .transpose()?;
        let trust = match (key, identity) {
            (Some(key), _) => Trust::Key(key),
            (None, Some(identity)) => {
                let authorities = match (&root, &self.fulcio_url) {
                    (Some((json, source)), _) => Authorities::from_trusted_root_json(json)
                        .map_err(|e| anyhow::anyhow!("trusted root {source}: {e}"))?,
                    (None, Some(url)) => Authorities::from_fulcio(url).await?,
                    (None, None) => unreachable!("keyless trust always has a root or a Fulcio"),
                };
                Trust::Identity(IdentityPolicy {
                    identity,
                    issuer: self.certificate_oidc_issuer.clone().unwrap_or_default(),
                    authorities,
                })
            }
            (None, None) => unreachable!("returned above"),
        };
        Ok((Some(trust), evidence))
    }
}

/// What to attest besides signatures: shared by `build` and `sign`.
#[derive(Args)]
pub struct AttestArgs {
    /// SBOM formats, comma-separated, or "none".
    #[arg(long, default_value = "spdx,cyclonedx", value_parser = parse_sbom_formats)]
    pub sbom: SbomFormats,
    /// Attach SLSA provenance (default on; signed when signing, else unsigned).
    #[arg(long, overrides_with = "no_provenance")]
    pub provenance: bool,
    /// Do not attach SLSA provenance.
    #[arg(long)]
    pub no_provenance: bool,
    /// Also store attestations under the legacy cosign `.att` tag.
    #[arg(long)]
    pub legacy_attestations: bool,
}

/// How to sign: shared by `build` and `sign`.
#[derive(Args)]
pub struct SigningArgs {
    /// How to sign the images and their attestations.
    #[arg(long, value_enum, default_value_t = SignMode::Auto)]
    pub sign: SignMode,
    /// cosign private key (password from COSIGN_PASSWORD).
    #[arg(long, env = "COSIGN_KEY")]
    pub key: Option<PathBuf>,
    /// Fulcio, which certifies keyless signing keys (default: the signing config's,
    /// else the public-good one Sigstore's TUF repository names).
    #[arg(long, env = "SIGSTORE_FULCIO_URL")]
    pub fulcio_url: Option<String>,
    /// Rekor v1, the transparency log that records signatures (default: the signing
    /// config's, which may be a Rekor v2 log, else the public-good one Sigstore's TUF
    /// repository names).
    #[arg(long, env = "SIGSTORE_REKOR_URL")]
    pub rekor_url: Option<String>,
    /// An RFC 3161 timestamp authority that countersigns each signature
    /// (`…/api/v1/timestamp`; default: the signing config's). A Rekor v2 log needs one
    /// for keyless signing.
    #[arg(long, value_name = "URL")]
    pub timestamp_server_url: Option<String>,
    /// A Sigstore signing config (signing_config.v0.2.json) naming the Fulcio, Rekor
    /// (v1 or v2) and timestamp authority to use; the URL flags win over it.
    #[arg(long, value_name = "FILE")]
    pub signing_config: Option<PathBuf>,
    /// Do not record signatures in the (public) transparency log: for private
    /// projects, and offline. Verifiers then need --insecure-ignore-tlog.
    #[arg(long)]
    pub no_tlog_upload: bool,
}

impl SigningArgs {
    /// Picks what the mode asks for, or says why there is nothing to sign with; then
    /// the services that witness it (see [`SigningArgs::services`]).
    pub async fn signing(&self, settings: &Settings) -> Result<Option<Signing>> {
        // A config given is read even when not signing: a wrong one is named at once.
        let configured = self
            .signing_config
            .as_deref()
            .map(|path| signing_config::load(path, unix_now()))
            .transpose()?;
        let key = match (self.sign, &self.key) {
            (SignMode::None, _) => return Ok(None),
            (SignMode::Keyless, _) => None,
            (SignMode::Key | SignMode::Auto, Some(path)) => {
                let password = settings.cosign_password.clone();
                match SigningKey::load(path, password.as_ref().unwrap_or(&Secret::default())) {
                    Ok(key) => Some(key),
                    Err(SignError::KeyPassword { .. }) if password.is_none() => bail!(
                        "signing key {}: it is encrypted and COSIGN_PASSWORD is not set; set COSIGN_PASSWORD to its password",
                        path.display()
                    ),
                    Err(e) => return Err(e.into()),
                }
            }
            (SignMode::Key, None) => bail!(
                "--sign key needs --key PATH (or COSIGN_KEY); create one with `gantry keygen`"
            ),
            (SignMode::Auto, None) => None,
        };
        let token = match (&key, TokenSource::from_env()) {
            (Some(_), _) => None,
            (None, Some(token)) => Some(token),
            (None, None) if self.sign == SignMode::Keyless => bail!("{}", TokenSource::MISSING),
            (None, None) => {
                eprintln!("gantry: not signing: no --key (or COSIGN_KEY) and no OIDC token for keyless signing (in GitHub Actions: `permissions: id-token: write`); SBOMs and provenance are attached unsigned");
                return Ok(None);
            }
        };
        let (fulcio_url, witnesses) = self.services(configured, token.is_some(), settings).await?;
        match (key, token) {
            (Some(key), _) => Ok(Some(Signing::Key(Box::new(Signer::with_key(
                key, &witnesses,
            )?)))),
            (None, Some(token)) => {
                // Refused before anything is built.
                witnesses.check_keyless()?;
                Ok(Some(Signing::Keyless(Keyless {
                    token,
                    fulcio_url,
                    witnesses,
                })))
            }
            (None, None) => Ok(None),
        }
    }

    /// Fulcio and the witnesses: the flags, else the signing config given (which must
    /// name what is still needed), else, for what is still needed, the public-good
    /// signing config (from Sigstore's TUF repository, or the copy built into gantry
    /// when that cannot be reached). A timestamp authority from the public-good config
    /// serves only a Rekor v2 log, which needs one: a v1 log gives its own signing time.
    async fn services(
        &self,
        configured: Option<Services>,
        keyless: bool,
        settings: &Settings,
    ) -> Result<(String, Witnesses)> {
        let needs_fulcio = keyless && self.fulcio_url.is_none();
        let needs_log = !self.no_tlog_upload && self.rekor_url.is_none();
        let given = configured.is_some();
        let configured = match configured {
            Some(services) => services,
            None if needs_fulcio || needs_log => {
                let (services, warning) =
                    signing_config::public_good(settings.cache_dir.as_deref(), unix_now())
                        .await
                        .map_err(|e| anyhow::anyhow!(e))?;
                if let Some(warning) = warning {
                    eprintln!("gantry: warning: {warning}");
                }
                services
            }
            None => Services::default(),
        };
        // A config given decides: what it lacks is not fetched from elsewhere.
        let named = |path: &Option<PathBuf>| {
            path.as_deref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        };
        if given && needs_log && configured.log.is_none() {
            bail!(
                "signing config {}: it names no transparency log valid now that gantry speaks (Rekor v1 or v2); pass --rekor-url, or --no-tlog-upload",
                named(&self.signing_config)
            );
        }
        if given && needs_fulcio && configured.fulcio.is_none() {
            bail!(
                "signing config {}: it names no Fulcio (v1) valid now; pass --fulcio-url",
                named(&self.signing_config)
            );
        }
        let fulcio_url = self
            .fulcio_url
            .clone()
            .or(configured.fulcio)
            .unwrap_or_else(|| keyless::PUBLIC_FULCIO.to_string());
        let log = match (&self.rekor_url, configured.log) {
            (Some(url), _) => LogService {
                url: url.clone(),
                version: RekorVersion::V1,
            },
            (None, Some(log)) => log,
            (None, None) => LogService {
                url: rekor::PUBLIC_REKOR.to_string(),
                version: RekorVersion::V1,
            },
        };
        let log = (!self.no_tlog_upload).then_some(log);
        let timestamp_authority = match &self.timestamp_server_url {
            Some(url) => Some(url.clone()),
            None if given => configured.timestamp_authority,
            None => configured
                .timestamp_authority
                .filter(|_| log.as_ref().is_some_and(|l| l.version == RekorVersion::V2)),
        };
        Ok((
            fulcio_url,
            Witnesses {
                log,
                timestamp_authority,
            },
        ))
    }
}

/// Seconds since the epoch, for choosing the services valid now.
fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[derive(Clone)]
pub struct SbomFormats(pub Vec<SbomFormat>);

pub fn parse_sbom_formats(text: &str) -> Result<SbomFormats, String> {
    if text == "none" {
        return Ok(SbomFormats(Vec::new()));
    }
    text.split(',')
        .map(|f| match f.trim() {
            "spdx" => Ok(SbomFormat::Spdx),
            "cyclonedx" => Ok(SbomFormat::Cyclonedx),
            other => Err(format!(
                "unknown SBOM format {other:?}: use spdx, cyclonedx, or none"
            )),
        })
        .collect::<Result<_, _>>()
        .map(SbomFormats)
}

pub fn key_values(flag: &str, items: &[String]) -> Result<BTreeMap<String, String>> {
    items
        .iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => bail!("{flag} {kv:?} is not of the form KEY=VALUE"),
        })
        .collect()
}

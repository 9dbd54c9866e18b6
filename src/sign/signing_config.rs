//! Sigstore's signing config (media type
//! `application/vnd.dev.sigstore.signingconfig.v0.2+json`): which certificate
//! authority (Fulcio), transparency log (Rekor) and timestamp authority a client signs
//! with, each listed with the API version it speaks and the time it is valid for.
//!
//! gantry picks, for each kind, a service that is valid now and speaks an API version
//! gantry speaks: Fulcio v1, Rekor v2 before v1 (the newest API a config offers, as
//! Sigstore's clients do), and timestamp authorities v1.
//!
//! The config comes from a file (`--signing-config`), or is the public-good
//! instance's: Sigstore's TUF repository serves it (sigstore-trust-root fetches and
//! verifies it), and a copy is built in for when that cannot be reached.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::tlog::{LogService, RekorVersion};

/// The media type of the one version gantry reads.
pub const MEDIA_TYPE: &str = "application/vnd.dev.sigstore.signingconfig.v0.2+json";

#[derive(Debug, thiserror::Error)]
#[error("signing config {}: {problem}", path.display())]
pub struct SigningConfigError {
    pub path: PathBuf,
    pub problem: String,
}

/// The services a signing config chose for this run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Services {
    /// Fulcio, when the config names a usable one.
    pub fulcio: Option<String>,
    /// The transparency log, when the config names a usable one.
    pub log: Option<LogService>,
    /// The timestamp authority, when the config names a usable one.
    pub timestamp_authority: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Document {
    media_type: String,
    #[serde(default)]
    ca_urls: Vec<Service>,
    #[serde(default)]
    rekor_tlog_urls: Vec<Service>,
    #[serde(default)]
    tsa_urls: Vec<Service>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Service {
    url: String,
    major_api_version: u32,
    valid_for: Validity,
}

#[derive(Deserialize)]
struct Validity {
    start: String,
    #[serde(default)]
    end: Option<String>,
}

impl Service {
    fn valid_at(&self, now: i64) -> bool {
        let start = unix_seconds(&self.valid_for.start);
        let end = self.valid_for.end.as_deref().map(unix_seconds);
        start.is_some_and(|s| s <= now) && end.is_none_or(|e| e.is_some_and(|e| now < e))
    }
}

/// Reads the config at `path` and picks its services for a signature made at `now`
/// (Unix seconds).
pub fn load(path: &Path, now: i64) -> Result<Services, SigningConfigError> {
    let text = std::fs::read(path).map_err(|e| SigningConfigError {
        path: path.to_path_buf(),
        problem: format!("cannot read it: {e}"),
    })?;
    parse(&text, now).map_err(|problem| SigningConfigError {
        path: path.to_path_buf(),
        problem,
    })
}

/// The public-good instance's signing config (see [`super::public_good`]), and the
/// warning to print when it is the built-in copy (also when the fetched one does not
/// read).
pub async fn public_good(
    cache_dir: Option<&Path>,
    now: i64,
) -> Result<(Services, Option<String>), String> {
    let hint = "(pass --signing-config FILE, or the URL flags, to choose the services)";
    let built_in = sigstore_trust_root::SIGSTORE_PRODUCTION_SIGNING_CONFIG.as_bytes();
    let (text, warning) = super::public_good::signing_config(cache_dir).await?;
    Ok(match (parse(&text, now), warning) {
        (Ok(services), warning) => (services, warning.map(|w| format!("{w} {hint}"))),
        (Err(problem), _) => (
            parse(built_in, now).unwrap_or_default(),
            Some(format!(
                "the public-good signing config does not read ({problem}); using the copy built into gantry {hint}"
            )),
        ),
    })
}

/// Picks a signing config's services valid at `now`; or says what is wrong with it.
fn parse(text: &[u8], now: i64) -> Result<Services, String> {
    let doc: Document =
        serde_json::from_slice(text).map_err(|e| format!("not a signing config: {e}"))?;
    if doc.media_type != MEDIA_TYPE {
        return Err(format!(
            "its mediaType is {:?}; gantry reads {MEDIA_TYPE}",
            doc.media_type
        ));
    }
    let pick = |services: &[Service], version: u32| -> Option<String> {
        services
            .iter()
            .find(|s| s.major_api_version == version && s.valid_at(now))
            .map(|s| s.url.trim_end_matches('/').to_string())
    };
    let log = [(2, RekorVersion::V2), (1, RekorVersion::V1)]
        .into_iter()
        .find_map(|(major, version)| {
            pick(&doc.rekor_tlog_urls, major).map(|url| LogService { url, version })
        });
    Ok(Services {
        fulcio: pick(&doc.ca_urls, 1),
        log,
        timestamp_authority: pick(&doc.tsa_urls, 1),
    })
}

/// Seconds since the epoch of an RFC 3339 time in UTC (`2025-01-02T03:04:05Z`,
/// fractions of a second and `+00:00` allowed); None for anything else.
fn unix_seconds(text: &str) -> Option<i64> {
    let text = text
        .strip_suffix('Z')
        .or_else(|| text.strip_suffix("+00:00"))?;
    let (date, time) = text.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (year, month, day) = (d.next()??, d.next()??, d.next()??);
    let time = time.split('.').next()?;
    let mut t = time.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (hour, minute, second) = (t.next()??, t.next()??, t.next()??);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    // Days from 1970-01-01 to the date (the proleptic Gregorian calendar).
    let (y, m) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let day_of_year = (153 * m + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    Some(days * 86_400 + hour * 3_600 + minute * 60 + second)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(rekor: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(
            file.path(),
            format!(
                r#"{{"mediaType":"{MEDIA_TYPE}",
                "caUrls":[
                  {{"url":"https://old.example","majorApiVersion":1,"validFor":{{"start":"2020-01-01T00:00:00Z","end":"2021-01-01T00:00:00Z"}}}},
                  {{"url":"https://fulcio.example/","majorApiVersion":1,"validFor":{{"start":"2021-01-01T00:00:00.5Z"}}}}],
                "oidcUrls":[],
                "rekorTlogUrls":[{rekor}],
                "tsaUrls":[{{"url":"https://tsa.example/api/v1/timestamp","majorApiVersion":1,"validFor":{{"start":"2021-01-01T00:00:00Z"}}}}],
                "rekorTlogConfig":{{"selector":"ANY"}},"tsaConfig":{{"selector":"ANY"}}}}"#
            ),
        )
        .unwrap();
        file
    }

    const NOW: i64 = 1_800_000_000; // 2027-01-15

    #[test]
    fn services_valid_now_that_gantry_speaks_are_chosen() {
        let v2 = r#"{"url":"https://log2025.example","majorApiVersion":2,"validFor":{"start":"2025-01-01T00:00:00Z"}}"#;
        let v1 = r#"{"url":"https://rekor.example","majorApiVersion":1,"validFor":{"start":"2021-01-01T00:00:00Z"}}"#;
        let file = config(&format!("{v1},{v2}"));
        assert_eq!(
            load(file.path(), NOW).unwrap(),
            Services {
                fulcio: Some("https://fulcio.example".into()),
                log: Some(LogService {
                    url: "https://log2025.example".into(),
                    version: RekorVersion::V2,
                }),
                timestamp_authority: Some("https://tsa.example/api/v1/timestamp".into()),
            }
        );
        // Before the current Fulcio's start, the old one was valid; before the v2
        // log's, the v1 one alone.
        let before = load(file.path(), 1_590_000_000).unwrap();
        assert_eq!(before.fulcio.as_deref(), Some("https://old.example"));
        assert_eq!(
            load(file.path(), 1_620_000_000).unwrap().log,
            Some(LogService {
                url: "https://rekor.example".into(),
                version: RekorVersion::V1,
            })
        );
        assert_eq!(load(config("").path(), NOW).unwrap().log, None);
    }

    #[test]
    fn the_built_in_public_good_config_names_fulcio_and_a_log() {
        let built_in = sigstore_trust_root::SIGSTORE_PRODUCTION_SIGNING_CONFIG.as_bytes();
        let services = parse(built_in, NOW).unwrap();
        assert_eq!(
            services.fulcio.as_deref(),
            Some("https://fulcio.sigstore.dev")
        );
        let log = services.log.expect("a transparency log");
        assert!(log.url.starts_with("https://"), "{log:?}");
    }

    #[test]
    fn rfc3339_times_are_read() {
        assert_eq!(unix_seconds("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(unix_seconds("2000-03-01T00:00:00Z"), Some(951_868_800));
        assert_eq!(
            unix_seconds("2024-02-29T12:34:56.789+00:00"),
            Some(1_709_210_096)
        );
        assert_eq!(unix_seconds("2024-02-29"), None);
        assert_eq!(unix_seconds("2024-13-01T00:00:00Z"), None);
    }
}

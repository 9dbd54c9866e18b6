//! Calls to Sigstore's services (Fulcio, Rekor) and the runner's token endpoint: JSON
//! over HTTPS, retried when the service is down or overloaded, with errors that name
//! the service and what to do.

use std::time::Duration;

use serde_json::Value;

use super::SignError;

/// How many times a request is tried before giving up.
const ATTEMPTS: u32 = 3;

/// One shared client: connection reuse across the many Rekor uploads of a run.
pub fn client() -> Result<reqwest::Client, SignError> {
    reqwest::Client::builder()
        .user_agent(concat!("gantry/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| SignError::Crypto(format!("cannot create an HTTP client: {e}")))
}

/// A request to make, possibly several times.
pub struct Call<'a> {
    /// The service, for messages: "Fulcio", "Rekor", "the GitHub OIDC token endpoint".
    pub service: &'static str,
    pub url: String,
    /// Sent as `Authorization: bearer …`; never printed.
    pub bearer: Option<&'a str>,
    /// POSTed as JSON when set; otherwise a GET.
    pub body: Option<&'a Value>,
    /// What to tell the user when the service says no (4xx).
    pub refused_hint: &'a str,
}

/// The response's status, `Location` header and JSON body.
pub struct Reply {
    pub status: u16,
    pub location: Option<String>,
    pub json: Value,
}

impl Call<'_> {
    /// The URL without its query, which may carry tokens.
    fn shown_url(&self) -> String {
        self.url.split('?').next().unwrap_or_default().to_string()
    }

    /// Sends the request; retries connection failures, 5xx and 429 with backoff.
    /// Statuses in `accept` (besides 2xx) are returned rather than reported as errors.
    pub async fn send(&self, client: &reqwest::Client, accept: &[u16]) -> Result<Reply, SignError> {
        let mut last = String::new();
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(500 << attempt)).await;
            }
            let mut request = match self.body {
                Some(body) => client.post(&self.url).json(body),
                None => client.get(&self.url),
            }
            .header("Accept", "application/json");
            if let Some(token) = self.bearer {
                request = request.header("Authorization", format!("bearer {token}"));
            }
            let response = match request.send().await {
                Ok(r) => r,
                Err(e) => {
                    last = format!("cannot reach it ({})", without_url(&e));
                    continue;
                }
            };
            let status = response.status().as_u16();
            let location = response
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let text = response.text().await.unwrap_or_default();
            if (200..300).contains(&status) || accept.contains(&status) {
                let json = serde_json::from_str(&text).map_err(|e| SignError::Service {
                    service: self.service,
                    url: self.shown_url(),
                    detail: format!("answered {status} with something that is not JSON ({e})"),
                })?;
                return Ok(Reply {
                    status,
                    location,
                    json,
                });
            }
            last = format!("answered {status}: {}", first_line(&text));
            if status != 429 && status < 500 {
                return Err(SignError::Service {
                    service: self.service,
                    url: self.shown_url(),
                    detail: format!("{last}; {}", self.refused_hint),
                });
            }
        }
        Err(SignError::Service {
            service: self.service,
            url: self.shown_url(),
            detail: format!(
                "{last}, after {ATTEMPTS} attempts; is the service up and the URL right?"
            ),
        })
    }
}

/// reqwest's error text, without the URL it appends (which may carry a query token).
fn without_url(error: &reqwest::Error) -> String {
    let mut source: Option<&dyn std::error::Error> = Some(error);
    let mut parts = Vec::new();
    while let Some(e) = source {
        let text = e.to_string();
        if !text.contains("http://") && !text.contains("https://") {
            parts.push(text);
        }
        source = e.source();
    }
    if parts.is_empty() {
        "connection failed".into()
    } else {
        parts.join(": ")
    }
}

fn first_line(text: &str) -> String {
    let line = text.trim().lines().next().unwrap_or("(empty body)");
    line.chars().take(300).collect()
}

//! Calls to Sigstore's services (Fulcio, Rekor) and the runner's token endpoint: JSON
//! over HTTPS, retried when the service is down or overloaded, with errors that name
//! the service and what to do.

use std::time::Duration;

use serde_json::Value;

use super::SignError;
use crate::retry::{self, RetryPolicy};

/// Sigstore's services are tried three times (a run waits on them, not on a queue).
const POLICY: RetryPolicy = RetryPolicy {
    attempts: 3,
    base: Duration::from_millis(500),
    max_wait: Duration::from_secs(20),
    budget: Duration::from_secs(60),
};

/// One shared client: connection reuse across the many Rekor uploads of a run.
pub fn client() -> Result<reqwest::Client, SignError> {
    reqwest::Client::builder()
        .user_agent(concat!("gantry/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(SignError::HttpClient)
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

/// What to say about a status worth another try, and the server's `Retry-After`.
type Retryable = (String, Option<Duration>);

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

    /// Sends the request; retries connection failures and retryable statuses as
    /// [`POLICY`] says. Statuses in `accept` (besides 2xx) are returned rather than
    /// reported as errors.
    pub async fn send(&self, client: &reqwest::Client, accept: &[u16]) -> Result<Reply, SignError> {
        let mut waited = Duration::ZERO;
        let mut attempt = 1;
        loop {
            let mut request = match self.body {
                Some(body) => client.post(&self.url).json(body),
                None => client.get(&self.url),
            }
            .header("Accept", "application/json");
            if let Some(token) = self.bearer {
                request = request.header("Authorization", format!("bearer {token}"));
            }
            let (last, retry_after) = match request.send().await {
                Err(e) => (format!("cannot reach it ({})", retry::describe(&e)), None),
                Ok(response) => match self.judge(response, accept).await? {
                    Ok(reply) => return Ok(reply),
                    Err(failed) => failed,
                },
            };
            match POLICY.wait_before(attempt, waited, retry_after) {
                Some(wait) => {
                    tokio::time::sleep(wait).await;
                    waited += wait;
                    attempt += 1;
                }
                None => {
                    return Err(SignError::Service {
                        service: self.service,
                        url: self.shown_url(),
                        detail: format!(
                            "{last}, after {attempt} attempts; is the service up and the URL right?"
                        ),
                    })
                }
            }
        }
    }

    /// A reply, or (for a status worth another try) what to say and `Retry-After`.
    async fn judge(
        &self,
        response: reqwest::Response,
        accept: &[u16],
    ) -> Result<Result<Reply, Retryable>, SignError> {
        let status = response.status().as_u16();
        let retry_after = retry::retry_after(response.headers());
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
            return Ok(Ok(Reply {
                status,
                location,
                json,
            }));
        }
        let last = format!("answered {status}: {}", first_line(&text));
        if !retry::retryable_status(status) {
            return Err(SignError::Service {
                service: self.service,
                url: self.shown_url(),
                detail: format!("{last}; {}", self.refused_hint),
            });
        }
        Ok(Err((last, retry_after)))
    }
}

fn first_line(text: &str) -> String {
    let line = text.trim().lines().next().unwrap_or("(empty body)");
    line.chars().take(300).collect()
}

/// Runs `attempt` (a call through another crate's client) until it succeeds, fails
/// in a way `retryable` says is final, or [`POLICY`] gives up.
pub async fn retried<T, E, F, Fut>(
    service: &'static str,
    url: &str,
    retryable: impl Fn(&E) -> bool,
    attempt: F,
) -> Result<T, SignError>
where
    E: std::fmt::Display,
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut waited = Duration::ZERO;
    let mut tries = 1;
    loop {
        let error = match attempt().await {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        let wait = retryable(&error)
            .then(|| POLICY.wait_before(tries, waited, None))
            .flatten();
        match wait {
            Some(wait) => {
                tokio::time::sleep(wait).await;
                waited += wait;
                tries += 1;
            }
            None => {
                return Err(SignError::Service {
                    service,
                    url: url.to_string(),
                    detail: format!("{error} (after {tries} attempts)"),
                })
            }
        }
    }
}

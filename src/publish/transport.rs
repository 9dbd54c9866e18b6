//! HTTP to registries, the way a real network needs it: authentication learnt once per
//! registry, retries with backoff, and timeouts that turn a silent registry into an
//! error instead of a hang.
//!
//! Why not `oci-client`'s transport: as of 0.18 it sends a `GET /v2/` ping before
//! every operation on a registry that needs no token (half of all requests), never
//! retries, has no way to notice a stalled upload, and cannot tell us whether a
//! registry answered a referrer push with `OCI-Subject`. Nor its reference parser
//! (see [`super::reference`]).
//!
//! - **No ping.** A request goes out as it is; a 401 carries the challenge (Basic or
//!   Bearer), which is remembered for the registry. A Bearer token is fetched once for
//!   every scope the run has declared on that registry (push+pull on targets, pull on
//!   mount sources) and reused until it expires.
//! - **Retries** follow [`crate::retry`]: 408/429/5xx and broken connections, with
//!   backoff, jitter and `Retry-After` (a refused connection only once the registry
//!   has answered this run: before that it is a wrong address, reported at once).
//!   The caller rebuilds the request for each try,
//!   so an upload is restarted from a new session, never resumed blindly.
//! - **Stalls**: a connect timeout, and a stall timeout (no bytes either way for that
//!   long) on every request, body and response alike. A stall is not retried: a
//!   registry that went silent once makes the user wait once, not five times.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use http::{HeaderMap, Method, StatusCode};
use tokio::sync::{OnceCell, Semaphore};

use super::token::{self, Auth};
use super::{ConnectFailure, PublishError};
use crate::auth::Credentials;
use crate::retry::{self, RetryPolicy};

/// How gantry treats the network: the retry policy and the two timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetworkSettings {
    pub retry: RetryPolicy,
    pub connect_timeout: Duration,
    /// No bytes sent or received for this long ends a request.
    pub stall_timeout: Duration,
    /// Requests in flight at once, over every registry.
    pub max_in_flight: usize,
}

impl Default for NetworkSettings {
    fn default() -> Self {
        NetworkSettings {
            retry: RetryPolicy::default(),
            connect_timeout: Duration::from_secs(30),
            stall_timeout: Duration::from_secs(60),
            max_in_flight: 32,
        }
    }
}

/// What one request sends: where, with which access, and with which body.
pub struct Request<'a> {
    pub method: Method,
    /// The repository whose access this needs (the token scope).
    pub repository: &'a str,
    pub push: bool,
    /// A path under the registry (`/v2/...`), or an absolute URL from `Location`.
    pub target: String,
    pub headers: Vec<(http::HeaderName, String)>,
}

impl Request<'_> {
    /// Needs push access (the token scope).
    pub fn pushing(mut self, push: bool) -> Self {
        self.push = push;
        self
    }

    pub fn header(mut self, name: http::HeaderName, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
}

/// A request body, made anew for each try.
pub enum Body {
    Empty,
    Bytes(Bytes),
    /// A stream: of known length (an upload from a file or another registry), or
    /// sent chunked (a layer still being written).
    Stream {
        stream: futures::stream::BoxStream<'static, std::io::Result<Bytes>>,
        length: Option<u64>,
    },
}

/// Why one try did not give a response worth returning.
pub enum Failure {
    /// Worth another try: the status (if any) and the server's `Retry-After`.
    Retry {
        detail: String,
        retry_after: Option<Duration>,
    },
    /// The token was renewed; try again at once (not counted as an attempt).
    Reauthorized,
    /// Not worth another try.
    Fatal(PublishError),
}

impl From<PublishError> for Failure {
    fn from(e: PublishError) -> Self {
        Failure::Fatal(e)
    }
}

/// The registries of one run, with what has been learnt about each.
pub struct Transport {
    http: reqwest::Client,
    settings: NetworkSettings,
    plain_http: Vec<String>,
    hosts: Mutex<HashMap<String, Arc<Host>>>,
    in_flight: Semaphore,
    started: Instant,
    requests: AtomicU64,
}

/// What is known about one registry.
pub(super) struct Host {
    pub(super) name: String,
    pub(super) base: String,
    pub(super) credentials: OnceCell<Option<Credentials>>,
    /// The repositories and actions this run needs: `repo -> {pull, push}`.
    pub(super) scopes: Mutex<BTreeMap<String, BTreeSet<&'static str>>>,
    pub(super) auth: Mutex<Auth>,
    /// One token request at a time per registry.
    pub(super) renewing: tokio::sync::Mutex<()>,
    /// Whether it has answered anything this run.
    pub(super) answered: std::sync::atomic::AtomicBool,
}

impl Transport {
    pub fn new(insecure: &[String], settings: NetworkSettings) -> Result<Self, PublishError> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("gantry/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(settings.connect_timeout)
            .read_timeout(settings.stall_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| PublishError::Io {
                context: "creating the HTTP client".into(),
                cause: std::io::Error::other(e.to_string()),
            })?;
        Ok(Transport {
            http,
            settings,
            plain_http: insecure.to_vec(),
            hosts: Mutex::new(HashMap::new()),
            in_flight: Semaphore::new(settings.max_in_flight.max(1)),
            started: Instant::now(),
            requests: AtomicU64::new(0),
        })
    }

    /// Requests sent so far (every try counts), for the report.
    pub fn request_count(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    fn host(&self, registry: &str) -> Arc<Host> {
        let mut hosts = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
        hosts
            .entry(registry.to_string())
            .or_insert_with(|| {
                let scheme =
                    if is_loopback(registry) || self.plain_http.iter().any(|h| h == registry) {
                        "http"
                    } else {
                        "https"
                    };
                let host = if registry == "docker.io" {
                    "registry-1.docker.io"
                } else {
                    registry
                };
                Arc::new(Host {
                    name: registry.to_string(),
                    base: format!("{scheme}://{host}"),
                    credentials: OnceCell::new(),
                    scopes: Mutex::new(BTreeMap::new()),
                    auth: Mutex::new(Auth::Open),
                    renewing: tokio::sync::Mutex::new(()),
                    answered: std::sync::atomic::AtomicBool::new(false),
                })
            })
            .clone()
    }

    /// Declares access the run will need, so one token covers it all.
    pub fn declare(&self, registry: &str, repository: &str, push: bool) {
        self.host(registry).add_scope(repository, push);
    }

    /// Runs `op` until it succeeds, fails for good, or the retry policy says stop.
    /// `what` names the request in the final error ("PUT /v2/app/manifests/…").
    pub async fn retrying<T, F, Fut>(
        &self,
        registry: &str,
        what: &str,
        mut op: F,
    ) -> Result<T, PublishError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        let policy = self.settings.retry;
        let mut attempt = 1;
        let mut reauthorized = 0;
        let mut waited = Duration::ZERO;
        loop {
            match op().await {
                Ok(value) => return Ok(value),
                Err(Failure::Fatal(e)) => return Err(e),
                Err(Failure::Reauthorized) if reauthorized < 2 => reauthorized += 1,
                Err(Failure::Reauthorized) => {
                    return Err(PublishError::Registry {
                        registry: registry.to_string(),
                        repository: String::new(),
                        action: what.to_string(),
                        detail: "the registry kept asking for new credentials".into(),
                    })
                }
                Err(Failure::Retry {
                    detail,
                    retry_after,
                }) => match policy.wait_before(attempt, waited, retry_after) {
                    Some(wait) => {
                        tokio::time::sleep(wait).await;
                        waited += wait;
                        attempt += 1;
                    }
                    None => {
                        return Err(PublishError::GaveUp {
                            registry: registry.to_string(),
                            request: what.to_string(),
                            detail,
                            attempts: attempt,
                        })
                    }
                },
            }
        }
    }

    /// Sends one request once, logged in as the registry asks. A 401 renews the
    /// credentials and asks for another try; retryable statuses and broken
    /// connections ask for a retry; a 403 is a refusal; any other status is the
    /// caller's to judge.
    pub async fn send(
        &self,
        registry: &str,
        request: &Request<'_>,
        body: Body,
    ) -> Result<Response, Failure> {
        let host = self.host(registry);
        host.add_scope(request.repository, request.push);
        let credentials = host.credentials().await?;
        if host.token_stale(request.repository, request.push) {
            self.renew(&host, request, credentials).await?;
        }
        // A Location on another host (a storage service the registry hands uploads
        // to) gets no credentials of the registry's.
        let sent_auth = host
            .authorization(request.repository, request.push, credentials)
            .filter(|_| same_origin(&request.target, &host.base));
        let response = self
            .exchange(&host, request, body, |b| match &sent_auth {
                Some(value) => b.header(http::header::AUTHORIZATION, value),
                None => b,
            })
            .await?;
        match response.status {
            StatusCode::UNAUTHORIZED => Err(self
                .challenge(
                    &host,
                    request,
                    credentials,
                    sent_auth.as_deref(),
                    &response.headers,
                )
                .await),
            StatusCode::FORBIDDEN => {
                let detail = response.describe().await;
                Err(Failure::Fatal(token::refusal(
                    &host,
                    request.repository,
                    credentials,
                    detail,
                )))
            }
            _ => Ok(response),
        }
    }

    /// One HTTP exchange with a registry (or its token service), under the stall
    /// watch; `customize` adds what the caller needs (credentials, a query).
    pub(super) async fn exchange(
        &self,
        host: &Host,
        request: &Request<'_>,
        body: Body,
        customize: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Result<Response, Failure> {
        let url = if request.target.starts_with("http://") || request.target.starts_with("https://")
        {
            request.target.clone()
        } else {
            format!("{}{}", host.base, request.target)
        };
        let mut builder = self.http.request(request.method.clone(), &url);
        for (name, value) in &request.headers {
            builder = builder.header(name, value);
        }
        builder = customize(builder);
        let progress = Progress::new(self.started);
        builder = match body {
            Body::Empty => builder,
            Body::Bytes(bytes) => builder.body(bytes),
            Body::Stream { stream, length } => {
                let builder = match length {
                    Some(length) => builder.header(http::header::CONTENT_LENGTH, length),
                    None => builder,
                };
                builder.body(reqwest::Body::wrap_stream(progress.track(stream)))
            }
        };
        let _permit = self.in_flight.acquire().await;
        self.requests.fetch_add(1, Ordering::Relaxed);
        let what = format!("{} {}", request.method, shown_path(&url));
        let response = match progress
            .watch(builder.send(), self.settings.stall_timeout)
            .await
        {
            None => return Err(Failure::Fatal(self.stalled(&host.name, &what))),
            Some(Err(e)) if e.is_timeout() && !e.is_connect() => {
                return Err(Failure::Fatal(self.stalled(&host.name, &what)))
            }
            // A registry that never answered this run is not there (a wrong host or
            // port): say so at once. One that did answer and now refuses is
            // restarting or overloaded: worth the retries.
            Some(Err(e)) if e.is_connect() && !host.answered.load(Ordering::Relaxed) => {
                return Err(Failure::Fatal(PublishError::Unreachable {
                    registry: host.name.clone(),
                    cause: connect_failure(&e),
                    detail: retry::describe(&e),
                }))
            }
            Some(Err(e)) => {
                return Err(Failure::Retry {
                    detail: retry::describe(&e),
                    retry_after: None,
                })
            }
            Some(Ok(r)) => r,
        };
        host.answered.store(true, Ordering::Relaxed);
        let response = Response {
            status: response.status(),
            headers: response.headers().clone(),
            inner: response,
            progress,
            stall: self.settings.stall_timeout,
            registry: host.name.clone(),
            what,
        };
        if retry::retryable_status(response.status.as_u16()) {
            let retry_after = retry::retry_after(&response.headers);
            return Err(Failure::Retry {
                detail: response.describe().await,
                retry_after,
            });
        }
        Ok(response)
    }

    fn stalled(&self, registry: &str, what: &str) -> PublishError {
        PublishError::Stalled {
            registry: registry.to_string(),
            request: what.to_string(),
            seconds: self.settings.stall_timeout.as_secs_f64(),
        }
    }
}

/// A response whose status the caller judges; reading its body keeps the stall watch.
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    inner: reqwest::Response,
    progress: Progress,
    stall: Duration,
    registry: String,
    what: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The whole body (manifests, configs, error documents).
    pub async fn bytes(self) -> Result<Bytes, Failure> {
        let stalled = PublishError::Stalled {
            registry: self.registry.clone(),
            request: self.what.clone(),
            seconds: self.stall.as_secs_f64(),
        };
        match self.progress.watch(self.inner.bytes(), self.stall).await {
            None => Err(Failure::Fatal(stalled)),
            Some(Ok(b)) => Ok(b),
            Some(Err(e)) if e.is_timeout() => Err(Failure::Fatal(stalled)),
            Some(Err(e)) => Err(Failure::Retry {
                detail: format!("the body was cut short ({})", retry::describe(&e)),
                retry_after: None,
            }),
        }
    }

    /// The body as a stream (blob downloads); the client's read timeout ends a stall.
    pub fn into_stream(self) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
        self.inner
            .bytes_stream()
            .map(|chunk| chunk.map_err(|e| std::io::Error::other(retry::describe(&e))))
    }

    /// A short text for an unexpected status: the status and the registry's message.
    pub async fn describe(self) -> String {
        let status = self.status;
        let text = match self.bytes().await {
            Ok(b) => summarize(&b),
            Err(_) => None,
        };
        format!(
            "{status}{}",
            text.map_or(String::new(), |t| format!(": {t}"))
        )
    }
}

/// The time of the last byte moved, for the stall watch.
#[derive(Clone)]
struct Progress {
    started: Instant,
    last: Arc<AtomicU64>,
}

impl Progress {
    fn new(started: Instant) -> Self {
        let p = Progress {
            started,
            last: Arc::new(AtomicU64::new(0)),
        };
        p.touch();
        p
    }

    fn touch(&self) {
        self.last
            .store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn idle(&self) -> Duration {
        let now = self.started.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.last.load(Ordering::Relaxed)))
    }

    fn track(
        &self,
        stream: futures::stream::BoxStream<'static, std::io::Result<Bytes>>,
    ) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
        let progress = self.clone();
        stream.inspect(move |_| progress.touch())
    }

    /// Runs `fut` until it ends (Some) or nothing has moved for `stall` (None).
    async fn watch<F: Future>(&self, fut: F, stall: Duration) -> Option<F::Output> {
        let mut fut = std::pin::pin!(fut);
        let tick = (stall / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
        self.touch();
        loop {
            tokio::select! {
                out = &mut fut => return Some(out),
                _ = tokio::time::sleep(tick) => {
                    if self.idle() >= stall {
                        return None;
                    }
                }
            }
        }
    }
}

/// What kind of connection failure `error` is, from its chain of causes.
fn connect_failure(error: &reqwest::Error) -> ConnectFailure {
    let mut source: Option<&dyn std::error::Error> = Some(error);
    while let Some(e) = source {
        if e.downcast_ref::<rustls::Error>().is_some() {
            return ConnectFailure::Tls;
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return ConnectFailure::Refused;
            }
        }
        let text = e.to_string();
        if text.contains("dns error") || text.contains("failed to lookup address") {
            return ConnectFailure::NoSuchHost;
        }
        source = e.source();
    }
    ConnectFailure::Other
}

/// Whether `target` (a path, or an absolute URL from a Location) is on the registry
/// at `base`: same scheme, host and port.
fn same_origin(target: &str, base: &str) -> bool {
    match (reqwest::Url::parse(target), reqwest::Url::parse(base)) {
        (Ok(target), Ok(base)) => target.origin() == base.origin(),
        // Not absolute: a path on the registry.
        (Err(_), _) => true,
        (Ok(_), Err(_)) => false,
    }
}

/// True for hosts reached over plain HTTP without asking: loopback only.
pub fn is_loopback(registry: &str) -> bool {
    let host = registry
        .rsplit_once(':')
        .filter(|(h, port)| !h.is_empty() && port.chars().all(|c| c.is_ascii_digit()))
        .map_or(registry, |(h, _)| h);
    matches!(host, "localhost" | "127.0.0.1" | "[::1]") || host.starts_with("127.")
}

/// A URL without scheme, host and query (upload URLs carry session state in the query).
fn shown_path(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let path = rest.find('/').map_or("/", |i| &rest[i..]);
    path.split('?').next().unwrap_or(path).to_string()
}

/// The registry's error message: the first `errors[].message`, else the first line.
fn summarize(body: &[u8]) -> Option<String> {
    if let Ok(json) = serde_json::from_slice::<serde_json::Value>(body) {
        if let Some(e) = json["errors"].as_array().and_then(|a| a.first()) {
            let code = e["code"].as_str().unwrap_or_default();
            let message = e["message"].as_str().unwrap_or_default();
            return Some(format!("{code} {message}").trim().to_string());
        }
    }
    let text = String::from_utf8_lossy(body);
    let line = text
        .trim()
        .lines()
        .next()?
        .chars()
        .take(200)
        .collect::<String>();
    (!line.is_empty()).then_some(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_go_only_to_the_registry_itself() {
        let base = "https://ghcr.io";
        assert!(same_origin("/v2/o/r/blobs/uploads/1", base));
        assert!(same_origin(
            "https://GHCR.io:443/v2/o/r/blobs/uploads/1?_state=x",
            base
        ));
        assert!(!same_origin("https://storage.example/upload?sig=1", base));
        assert!(!same_origin("http://ghcr.io/v2/o/r/blobs/uploads/1", base));
        assert!(!same_origin("https://ghcr.io:8443/v2/", base));
    }

    #[test]
    fn loopback_hosts_use_http() {
        assert!(is_loopback("localhost:5000"));
        assert!(is_loopback("127.0.0.1:1234"));
        assert!(is_loopback("[::1]:5000"));
        assert!(!is_loopback("ghcr.io"));
        assert!(!is_loopback("localhost.example.com"));
    }

    #[test]
    fn shown_paths_drop_host_and_query() {
        assert_eq!(
            shown_path("http://r:5000/v2/a/blobs/uploads/x?_state=secret"),
            "/v2/a/blobs/uploads/x"
        );
        assert_eq!(
            summarize(br#"{"errors":[{"code":"MANIFEST_INVALID","message":"manifest invalid"}]}"#)
                .as_deref(),
            Some("MANIFEST_INVALID manifest invalid")
        );
    }
}

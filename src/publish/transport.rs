//! HTTP to registries, the way a real network needs it: authentication learnt once per
//! registry, retries with backoff, and timeouts that turn a silent registry into an
//! error instead of a hang.
//!
//! Why not `oci-client`'s transport: as of 0.18 it sends a `GET /v2/` ping before
//! every operation on a registry that needs no token (half of all requests), never
//! retries, has no way to notice a stalled upload, and cannot tell us whether a
//! registry answered a referrer push with `OCI-Subject`. We keep its reference parser.
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

use super::PublishError;
use crate::auth::{self, Credentials};
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

/// A request body, made anew for each try.
pub enum Body {
    Empty,
    Bytes(Bytes),
    /// A stream of known length (an upload from a file or another registry).
    Stream {
        stream: futures::stream::BoxStream<'static, std::io::Result<Bytes>>,
        length: u64,
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
struct Host {
    name: String,
    base: String,
    credentials: OnceCell<Option<Credentials>>,
    /// The repositories and actions this run needs: `repo -> {pull, push}`.
    scopes: Mutex<BTreeMap<String, BTreeSet<&'static str>>>,
    auth: Mutex<Auth>,
    /// One token request at a time per registry.
    renewing: tokio::sync::Mutex<()>,
    /// Whether it has answered anything this run.
    answered: std::sync::atomic::AtomicBool,
}

#[derive(Clone)]
enum Auth {
    /// No challenge seen (yet): requests go out without credentials.
    Open,
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        token: Option<Token>,
    },
}

#[derive(Clone)]
struct Token {
    value: String,
    /// The scopes granted, as `repo -> actions`.
    scopes: BTreeMap<String, BTreeSet<&'static str>>,
    expires: Instant,
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

    /// Sends one request once. A 401 renews the credentials and asks for another try;
    /// retryable statuses and broken connections ask for a retry; any other status is
    /// the caller's to judge.
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
        let sent_auth = host.authorization(request.repository, request.push, credentials);
        if let Some(value) = &sent_auth {
            builder = builder.header(http::header::AUTHORIZATION, value);
        }
        let progress = Progress::new(self.started);
        builder = match body {
            Body::Empty => builder,
            Body::Bytes(bytes) => builder.body(bytes),
            Body::Stream { stream, length } => builder
                .header(http::header::CONTENT_LENGTH, length)
                .body(reqwest::Body::wrap_stream(progress.track(stream))),
        };
        let _permit = self.in_flight.acquire().await;
        self.requests.fetch_add(1, Ordering::Relaxed);
        let what = format!("{} {}", request.method, shown_path(&url));
        let response = match progress
            .watch(builder.send(), self.settings.stall_timeout)
            .await
        {
            None => return Err(Failure::Fatal(self.stalled(registry, &what))),
            Some(Err(e)) if e.is_timeout() && !e.is_connect() => {
                return Err(Failure::Fatal(self.stalled(registry, &what)))
            }
            // A registry that never answered this run is not there (a wrong host or
            // port): say so at once. One that did answer and now refuses is
            // restarting or overloaded: worth the retries.
            Some(Err(e)) if e.is_connect() && !host.answered.load(Ordering::Relaxed) => {
                return Err(Failure::Fatal(PublishError::Unreachable {
                    registry: registry.to_string(),
                    detail: connection_error(&e),
                }))
            }
            Some(Err(e)) => {
                return Err(Failure::Retry {
                    detail: connection_error(&e),
                    retry_after: None,
                })
            }
            Some(Ok(r)) => r,
        };
        host.answered.store(true, Ordering::Relaxed);
        let status = response.status();
        let headers = response.headers().clone();
        if status == StatusCode::UNAUTHORIZED {
            return Err(self
                .challenge(&host, request, credentials, sent_auth.as_deref(), &headers)
                .await);
        }
        if status == StatusCode::FORBIDDEN {
            let detail = self
                .body_text(response)
                .await
                .unwrap_or_else(|| status.to_string());
            return Err(Failure::Fatal(PublishError::AuthRefused {
                registry: host.name.clone(),
                repository: request.repository.to_string(),
                detail,
                used: credentials.map_or("none (anonymous)".into(), |c| c.source.clone()),
                searched: auth::searched_locations(&host.name),
            }));
        }
        if retry::retryable_status(status.as_u16()) {
            let text = self.body_text(response).await;
            return Err(Failure::Retry {
                detail: format!(
                    "{status}{}",
                    text.map_or(String::new(), |t| format!(": {t}"))
                ),
                retry_after: retry::retry_after(&headers),
            });
        }
        Ok(Response {
            status,
            headers,
            inner: response,
            progress,
            stall: self.settings.stall_timeout,
            registry: registry.to_string(),
            what,
        })
    }

    fn stalled(&self, registry: &str, what: &str) -> PublishError {
        PublishError::Stalled {
            registry: registry.to_string(),
            request: what.to_string(),
            seconds: self.settings.stall_timeout.as_secs_f64(),
        }
    }

    async fn body_text(&self, response: reqwest::Response) -> Option<String> {
        let bytes = tokio::time::timeout(self.settings.stall_timeout, response.bytes())
            .await
            .ok()?
            .ok()?;
        summarize(&bytes)
    }

    /// Learns from a 401: the scheme, and for Bearer a fresh token.
    async fn challenge(
        &self,
        host: &Host,
        request: &Request<'_>,
        credentials: Option<&Credentials>,
        sent: Option<&str>,
        headers: &HeaderMap,
    ) -> Failure {
        let refused = |detail: String| {
            Failure::Fatal(PublishError::AuthRefused {
                registry: host.name.clone(),
                repository: request.repository.to_string(),
                detail,
                used: credentials.map_or("none (anonymous)".into(), |c| c.source.clone()),
                searched: auth::searched_locations(&host.name),
            })
        };
        let Some(challenge) = headers
            .get(http::header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .map(parse_challenge)
        else {
            return refused("401 Unauthorized without a WWW-Authenticate challenge".into());
        };
        match challenge {
            Challenge::Basic => {
                if credentials.is_none() || sent.is_some() {
                    return refused("401 Unauthorized".into());
                }
                host.set_auth(Auth::Basic);
                Failure::Reauthorized
            }
            Challenge::Bearer { realm, service } => {
                let _one_at_a_time = host.renewing.lock().await;
                // Another request may have renewed it while this one waited.
                let current = host.authorization(request.repository, request.push, credentials);
                if current.is_some() && current.as_deref() != sent {
                    return Failure::Reauthorized;
                }
                if sent.is_some() && host.token_covers(request.repository, request.push) {
                    return refused("401 Unauthorized with a token for this repository".into());
                }
                match self
                    .fetch_token(host, &realm, service.as_deref(), credentials)
                    .await
                {
                    Ok(token) => {
                        host.set_auth(Auth::Bearer {
                            realm,
                            service,
                            token: Some(token),
                        });
                        Failure::Reauthorized
                    }
                    Err(f) => f,
                }
            }
        }
    }

    /// Renews a Bearer token that has expired or lacks a scope, before sending, so
    /// the request does not go out only to come back 401.
    async fn renew(
        &self,
        host: &Host,
        request: &Request<'_>,
        credentials: Option<&Credentials>,
    ) -> Result<(), Failure> {
        let _one_at_a_time = host.renewing.lock().await;
        if !host.token_stale(request.repository, request.push) {
            return Ok(());
        }
        let Auth::Bearer { realm, service, .. } = host.auth() else {
            return Ok(());
        };
        let token = self
            .fetch_token(host, &realm, service.as_deref(), credentials)
            .await?;
        host.set_auth(Auth::Bearer {
            realm,
            service,
            token: Some(token),
        });
        Ok(())
    }

    /// GET realm?service=…&scope=… with the user's credentials (if any).
    async fn fetch_token(
        &self,
        host: &Host,
        realm: &str,
        service: Option<&str>,
        credentials: Option<&Credentials>,
    ) -> Result<Token, Failure> {
        let scopes = host
            .scopes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut query: Vec<(&str, String)> = Vec::new();
        if let Some(s) = service {
            query.push(("service", s.to_string()));
        }
        for (repo, actions) in &scopes {
            let actions: Vec<&str> = actions.iter().copied().collect();
            query.push(("scope", format!("repository:{repo}:{}", actions.join(","))));
        }
        let what = format!("GET {} (token)", shown_path(realm));
        let policy = self.settings.retry;
        let mut waited = Duration::ZERO;
        for attempt in 1.. {
            let mut builder = self.http.get(realm).query(&query);
            if let Some(c) = credentials {
                builder = builder.basic_auth(&c.username, Some(c.password.expose()));
            }
            self.requests.fetch_add(1, Ordering::Relaxed);
            let mut retry_after = None;
            let last = match tokio::time::timeout(self.settings.stall_timeout, builder.send()).await
            {
                Err(_) => return Err(Failure::Fatal(self.stalled(&host.name, &what))),
                Ok(Err(e)) => connection_error(&e),
                Ok(Ok(r)) if r.status().is_success() => {
                    let json: serde_json::Value = r.json().await.map_err(|e| {
                        Failure::Fatal(PublishError::Registry {
                            registry: host.name.clone(),
                            repository: String::new(),
                            action: what.clone(),
                            detail: format!("the token answer is not JSON: {e}"),
                        })
                    })?;
                    let value = json["token"]
                        .as_str()
                        .or(json["access_token"].as_str())
                        .unwrap_or_default()
                        .to_string();
                    let lifetime = json["expires_in"].as_u64().unwrap_or(60).max(60);
                    return Ok(Token {
                        value,
                        scopes,
                        // Renewed a little before the registry would refuse it.
                        expires: Instant::now() + Duration::from_secs(lifetime - lifetime / 10),
                    });
                }
                Ok(Ok(r)) if retry::retryable_status(r.status().as_u16()) => {
                    retry_after = retry::retry_after(r.headers());
                    r.status().to_string()
                }
                Ok(Ok(r)) => {
                    return Err(Failure::Fatal(PublishError::AuthRefused {
                        registry: host.name.clone(),
                        repository: scopes.keys().cloned().collect::<Vec<_>>().join(", "),
                        detail: format!("the token service answered {}", r.status()),
                        used: credentials.map_or("none (anonymous)".into(), |c| c.source.clone()),
                        searched: auth::searched_locations(&host.name),
                    }))
                }
            };
            match policy.wait_before(attempt, waited, retry_after) {
                Some(wait) => {
                    tokio::time::sleep(wait).await;
                    waited += wait;
                }
                None => {
                    return Err(Failure::Fatal(PublishError::GaveUp {
                        registry: host.name.clone(),
                        request: what,
                        detail: last,
                        attempts: attempt,
                    }))
                }
            }
        }
        unreachable!("the retry loop returns")
    }
}

impl Host {
    fn add_scope(&self, repository: &str, push: bool) {
        let mut scopes = self.scopes.lock().unwrap_or_else(|e| e.into_inner());
        let actions = scopes.entry(repository.to_string()).or_default();
        actions.insert("pull");
        if push {
            actions.insert("push");
        }
    }

    async fn credentials(&self) -> Result<Option<&Credentials>, Failure> {
        let name = self.name.clone();
        self.credentials
            .get_or_try_init(|| async move { auth::lookup(&name) })
            .await
            .map(Option::as_ref)
            .map_err(|e| Failure::Fatal(e.into()))
    }

    fn set_auth(&self, auth: Auth) {
        *self.auth.lock().unwrap_or_else(|e| e.into_inner()) = auth;
    }

    fn auth(&self) -> Auth {
        self.auth.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// A Bearer registry whose token is missing, expired or lacks this scope.
    fn token_stale(&self, repository: &str, push: bool) -> bool {
        match self.auth() {
            Auth::Bearer { token, .. } => {
                !token.is_some_and(|t| t.expires > Instant::now() && t.covers(repository, push))
            }
            _ => false,
        }
    }

    fn token_covers(&self, repository: &str, push: bool) -> bool {
        match &*self.auth.lock().unwrap_or_else(|e| e.into_inner()) {
            Auth::Bearer { token: Some(t), .. } => t.covers(repository, push),
            _ => false,
        }
    }

    /// The Authorization header value for a request, when one is known to be needed.
    fn authorization(
        &self,
        repository: &str,
        push: bool,
        credentials: Option<&Credentials>,
    ) -> Option<String> {
        use base64::Engine as _;
        match &*self.auth.lock().unwrap_or_else(|e| e.into_inner()) {
            Auth::Open => None,
            Auth::Basic => credentials.map(|c| {
                let pair = format!("{}:{}", c.username, c.password.expose());
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(pair)
                )
            }),
            Auth::Bearer { token, .. } => token
                .as_ref()
                .filter(|t| t.expires > Instant::now() && t.covers(repository, push))
                .map(|t| format!("Bearer {}", t.value)),
        }
    }
}

impl Token {
    fn covers(&self, repository: &str, push: bool) -> bool {
        self.scopes
            .get(repository)
            .is_some_and(|a| a.contains("pull") && (!push || a.contains("push")))
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
                detail: format!("the body was cut short ({})", connection_error(&e)),
                retry_after: None,
            }),
        }
    }

    /// The body as a stream (blob downloads); the client's read timeout ends a stall.
    pub fn into_stream(self) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
        self.inner
            .bytes_stream()
            .map(|chunk| chunk.map_err(|e| std::io::Error::other(connection_error(&e))))
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

enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

/// `Bearer realm="…",service="…",scope="…"` or `Basic realm="…"`.
fn parse_challenge(text: &str) -> Challenge {
    let (scheme, params) = text.trim().split_once(' ').unwrap_or((text.trim(), ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Challenge::Basic;
    }
    let mut realm = String::new();
    let mut service = None;
    for part in split_params(params) {
        if let Some((k, v)) = part.split_once('=') {
            let v = v.trim().trim_matches('"').to_string();
            match k.trim().to_ascii_lowercase().as_str() {
                "realm" => realm = v,
                "service" => service = Some(v),
                _ => {}
            }
        }
    }
    Challenge::Bearer { realm, service }
}

/// Splits `a="x,y",b=z` at the commas outside quotes.
fn split_params(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    for (i, c) in text.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
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

/// reqwest's error, without the URL (which may carry a token in its query).
fn connection_error(error: &reqwest::Error) -> String {
    let mut source: Option<&dyn std::error::Error> = Some(error);
    let mut parts: Vec<String> = Vec::new();
    while let Some(e) = source {
        let text = e.to_string();
        if !text.contains("://") && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = e.source();
    }
    if parts.is_empty() {
        "the connection failed".into()
    } else {
        parts.join(": ")
    }
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
    fn challenges() {
        match parse_challenge(
            r#"Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:a/b:pull,push""#,
        ) {
            Challenge::Bearer { realm, service } => {
                assert_eq!(realm, "https://ghcr.io/token");
                assert_eq!(service.as_deref(), Some("ghcr.io"));
            }
            Challenge::Basic => panic!("bearer expected"),
        }
        assert!(matches!(
            parse_challenge(r#"Basic realm="r""#),
            Challenge::Basic
        ));
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

    #[test]
    fn tokens_cover_their_scopes() {
        let token = Token {
            value: String::new(),
            scopes: BTreeMap::from([
                ("a".to_string(), BTreeSet::from(["pull", "push"])),
                ("b".to_string(), BTreeSet::from(["pull"])),
            ]),
            expires: Instant::now(),
        };
        assert!(token.covers("a", true));
        assert!(token.covers("b", false));
        assert!(!token.covers("b", true));
        assert!(!token.covers("c", false));
    }
}

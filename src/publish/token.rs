//! Logging in to a registry the way it asks: the challenge of its first 401 (Basic or
//! Bearer) is remembered, and one Bearer token per registry covers every repository
//! the run declared (push+pull on targets, pull on bases), reused until it expires.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use http::HeaderMap;

use super::transport::{Body, Failure, Host, Request, Transport};
use super::PublishError;
use crate::auth::{self, Credentials};

#[derive(Clone)]
pub(super) enum Auth {
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
pub(super) struct Token {
    value: String,
    /// The scopes granted, as `repo -> actions`.
    scopes: BTreeMap<String, BTreeSet<&'static str>>,
    expires: Instant,
}

impl Transport {
    /// Learns from a 401: the scheme, and for Bearer a fresh token.
    pub(super) async fn challenge(
        &self,
        host: &Host,
        request: &Request<'_>,
        credentials: Option<&Credentials>,
        sent: Option<&str>,
        headers: &HeaderMap,
    ) -> Failure {
        let refused =
            |detail: String| Failure::Fatal(refusal(host, request.repository, credentials, detail));
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
    pub(super) async fn renew(
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

    /// One try at GET realm?service=…&scope=… with the user's credentials (if any);
    /// a failure worth another try is retried with the request that needed the token.
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
        let request = Request {
            method: http::Method::GET,
            repository: "",
            push: false,
            target: realm.to_string(),
            headers: Vec::new(),
        };
        let response = self
            .exchange(host, &request, Body::Empty, |b| {
                let b = b.query(&query);
                match credentials {
                    Some(c) => b.basic_auth(&c.username, Some(c.password.expose())),
                    None => b,
                }
            })
            .await?;
        if !response.status.is_success() {
            let detail = format!("the token service answered {}", response.status);
            return Err(Failure::Fatal(refusal(
                host,
                &scopes.keys().cloned().collect::<Vec<_>>().join(", "),
                credentials,
                detail,
            )));
        }
        let json: serde_json::Value =
            serde_json::from_slice(&response.bytes().await?).map_err(|e| {
                Failure::Fatal(PublishError::Registry {
                    registry: host.name.clone(),
                    repository: String::new(),
                    action: "fetching a token".into(),
                    detail: format!("the token answer is not JSON: {e}"),
                })
            })?;
        let value = json["token"]
            .as_str()
            .or(json["access_token"].as_str())
            .unwrap_or_default()
            .to_string();
        // A token service that says what it granted (a JWT `access` claim) tells a
        // push that would be refused now, before any build has run.
        if let Some(granted) = granted_access(&value) {
            for (repo, actions) in &scopes {
                if actions.contains("push")
                    && !granted.get(repo).is_some_and(|a| a.contains("push"))
                {
                    let got = granted
                        .get(repo)
                        .map(|a| a.iter().cloned().collect::<Vec<_>>().join(","));
                    return Err(Failure::Fatal(refusal(
                        host,
                        repo,
                        credentials,
                        format!(
                            "its token service grants {} there, not push",
                            got.filter(|g| !g.is_empty())
                                .unwrap_or_else(|| "nothing".into())
                        ),
                    )));
                }
            }
        }
        let lifetime = json["expires_in"].as_u64().unwrap_or(60).max(60);
        Ok(Token {
            value,
            scopes,
            // Renewed a little before the registry would refuse it.
            expires: Instant::now() + Duration::from_secs(lifetime - lifetime / 10),
        })
    }
}

/// The actions a JWT token grants per repository (its `access` claim), or None when
/// the token is opaque or does not say.
fn granted_access(token: &str) -> Option<BTreeMap<String, BTreeSet<String>>> {
    use base64::Engine as _;
    #[derive(serde::Deserialize)]
    struct Access {
        #[serde(rename = "type")]
        kind: String,
        name: String,
        actions: Vec<String>,
    }
    #[derive(serde::Deserialize)]
    struct Claims {
        access: Vec<Access>,
    }
    let claims = token.split('.').nth(1)?;
    let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(claims.trim_end_matches('='))
        .ok()?;
    let claims: Claims = serde_json::from_slice(&claims).ok()?;
    let mut granted: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for a in claims.access.into_iter().filter(|a| a.kind == "repository") {
        granted.entry(a.name).or_default().extend(a.actions);
    }
    Some(granted)
}

/// The registry said no: who asked, with which credentials, and where they came from.
pub(super) fn refusal(
    host: &Host,
    repository: &str,
    credentials: Option<&Credentials>,
    detail: String,
) -> PublishError {
    PublishError::AuthRefused {
        registry: host.name.clone(),
        repository: repository.to_string(),
        detail,
        used: credentials.map(|c| c.source.clone()),
        searched: auth::searched_locations(&host.name),
    }
}

impl Host {
    pub(super) fn add_scope(&self, repository: &str, push: bool) {
        let mut scopes = self.scopes.lock().unwrap_or_else(|e| e.into_inner());
        let actions = scopes.entry(repository.to_string()).or_default();
        actions.insert("pull");
        if push {
            actions.insert("push");
        }
    }

    pub(super) async fn credentials(&self) -> Result<Option<&Credentials>, Failure> {
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
    pub(super) fn token_stale(&self, repository: &str, push: bool) -> bool {
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
    pub(super) fn authorization(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwt_access_claims_are_read_and_opaque_tokens_say_nothing() {
        use base64::Engine as _;
        let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
            r#"{"access":[{"type":"repository","name":"acme/app","actions":["pull"]},{"type":"registry","name":"catalog","actions":["*"]}]}"#,
        );
        let granted = granted_access(&format!("e30.{claims}.sig")).unwrap();
        assert_eq!(granted.len(), 1);
        assert!(granted["acme/app"].contains("pull") && !granted["acme/app"].contains("push"));
        assert!(granted_access("opaque-token").is_none());
        assert!(granted_access("a.bm90IGpzb24.c").is_none());
    }

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

//! Network failures, for registries and Sigstore's services alike: which are worth
//! another try, how long to wait before it, and how to describe them.
//!
//! Retried: 408, 429, 500, 502, 503 and 504, and failures of the connection itself
//! (refused, reset, closed early). Waits grow exponentially with jitter, a
//! `Retry-After` from the server is honoured up to a cap, and the sum of all waits is
//! bounded, so a dead service ends the run in seconds, never minutes.

use std::time::Duration;

/// How many times to try, and how long to wait in between.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries in all (1 = no retry).
    pub attempts: u32,
    /// The first wait; each later one doubles it.
    pub base: Duration,
    /// No single wait is longer, `Retry-After` included.
    pub max_wait: Duration,
    /// The waits of one request add up to at most this.
    pub budget: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            base: Duration::from_millis(500),
            max_wait: Duration::from_secs(20),
            budget: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The wait before try number `next` (1 = the first retry), or None when the
    /// policy says stop: no tries left, or the budget would be exceeded.
    /// `retry_after` is the server's own request, which replaces the computed wait.
    pub fn wait_before(
        &self,
        next: u32,
        waited: Duration,
        retry_after: Option<Duration>,
    ) -> Option<Duration> {
        if next >= self.attempts {
            return None;
        }
        let exponential = self
            .base
            .saturating_mul(1u32 << (next - 1).min(16))
            .min(self.max_wait);
        // Full jitter on the upper half: between 50% and 100% of the computed wait, so
        // jobs that failed together do not come back together.
        let jittered = exponential.mul_f64(0.5 + 0.5 * unit_random());
        let wait = retry_after.map_or(jittered, |r| r.min(self.max_wait));
        (waited + wait <= self.budget).then_some(wait)
    }
}

/// Statuses worth another try: the request timed out, was throttled, or the server
/// (or a proxy before it) failed on its side.
pub fn retryable_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
}

/// `Retry-After` as seconds (the HTTP-date form is rare from registries and is ignored).
pub fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// reqwest's error and its causes, without any URL (a query may carry a token).
pub fn describe(error: &reqwest::Error) -> String {
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

/// A number in [0, 1) from the OS's randomness (through uuid's generator).
fn unit_random() -> f64 {
    (uuid::Uuid::new_v4().as_u128() >> 75) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_grow_and_stop() {
        let p = RetryPolicy::default();
        let first = p.wait_before(1, Duration::ZERO, None).unwrap();
        assert!(first >= Duration::from_millis(250) && first <= Duration::from_millis(500));
        let fourth = p.wait_before(4, Duration::ZERO, None).unwrap();
        assert!(fourth >= Duration::from_secs(2) && fourth <= Duration::from_secs(4));
        assert_eq!(
            p.wait_before(5, Duration::ZERO, None),
            None,
            "5 tries in all"
        );
        let told = p.wait_before(1, Duration::ZERO, Some(Duration::from_secs(3)));
        assert_eq!(
            told,
            Some(Duration::from_secs(3)),
            "Retry-After is honoured"
        );
        let capped = p.wait_before(1, Duration::ZERO, Some(Duration::from_secs(3600)));
        assert_eq!(capped, Some(p.max_wait), "but capped");
        assert_eq!(
            p.wait_before(1, Duration::from_secs(59), Some(Duration::from_secs(5))),
            None,
            "the total wait is bounded"
        );
    }

    #[test]
    fn which_statuses_are_retried() {
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(retryable_status(s), "{s}");
        }
        for s in [400, 401, 403, 404, 405, 409, 501] {
            assert!(!retryable_status(s), "{s}");
        }
    }
}

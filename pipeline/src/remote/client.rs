//! The HTTP client of one remote node for one run: POSTs JSON bodies with at most `concurrency`
//! in flight, a timeout per attempt, retries with exponential backoff and jitter (honouring
//! `Retry-After`) on 429, 408, 5xx, lost connections and timeouts, and a per-run budget of
//! requests and tokens. The bearer token is read once from the variable the DAG names and goes
//! nowhere but the `Authorization` header (marked sensitive): every reason this client gives has
//! it scrubbed out, and URLs are shown without their query or user info.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kelp_operators::remote::{Endpoint, Tokens};
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use reqwest::StatusCode;
use tokio::sync::Semaphore;
use tracing::debug;

use crate::error::{PipelineError, Result};

/// The first backoff; each retry doubles it (with jitter), up to [`MAX_BACKOFF`].
const BASE_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A `Retry-After` longer than this is cut to it.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

/// What one node's client sent, over the run in this process.
#[derive(Debug, Default)]
pub struct Counters {
    /// HTTP requests sent (retries included).
    pub requests: AtomicU64,
    /// Of those, the ones that were retried after a failure.
    pub retries: AtomicU64,
    pub prompt_tokens: AtomicU64,
    pub completion_tokens: AtomicU64,
}

pub struct Client {
    http: reqwest::Client,
    url: String,
    /// The URL as messages show it (no query, no user info).
    shown: String,
    auth: Option<HeaderValue>,
    /// The token itself, only to scrub it from reasons.
    secret: Option<String>,
    permits: Semaphore,
    timeout: Duration,
    retries: u32,
    max_requests: Option<u64>,
    max_tokens: Option<u64>,
    pub counters: Arc<Counters>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("url", &self.shown)
            .field("auth", &self.auth.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

/// How one attempt failed.
struct Failed {
    reason: String,
    retryable: bool,
    retry_after: Option<Duration>,
}

impl Client {
    /// The client of `node`'s endpoint; reads the API key from the variable it names.
    pub fn new(node: &str, e: &Endpoint) -> Result<Client> {
        let bad = |message: String| PipelineError::Other(format!("node \"{node}\": {message}"));
        let url = reqwest::Url::parse(&e.url).map_err(|err| bad(format!("endpoint: {err}")))?;
        let (auth, secret) = match &e.api_key_env {
            None => (None, None),
            Some(var) => {
                let key = std::env::var(var).map_err(|_| {
                    bad(format!(
                        "api_key_env = \"{var}\", but that environment variable is not set (or not UTF-8)"
                    ))
                })?;
                let mut value = HeaderValue::from_str(&format!("Bearer {key}")).map_err(|_| {
                    bad(format!(
                        "the API key in ${var} holds characters an HTTP header cannot carry"
                    ))
                })?;
                value.set_sensitive(true);
                (Some(value), (!key.is_empty()).then_some(key))
            }
        };
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(e.concurrency.max(1))
            .build()
            .map_err(|err| bad(format!("HTTP client: {}", err.without_url())))?;
        Ok(Client {
            http,
            shown: shown_url(&url),
            url: url.to_string(),
            auth,
            secret,
            permits: Semaphore::new(e.concurrency.max(1)),
            timeout: Duration::from_secs_f64(e.timeout_s.max(0.001)),
            retries: e.retries,
            max_requests: e.max_requests,
            max_tokens: e.max_tokens,
            counters: Arc::new(Counters::default()),
        })
    }

    pub fn shown_url(&self) -> &str {
        &self.shown
    }

    pub fn retries(&self) -> u32 {
        self.retries
    }

    /// Counts what a usable reply says it used against the token budget.
    pub fn spend(&self, tokens: Tokens) {
        self.counters
            .prompt_tokens
            .fetch_add(tokens.prompt, Ordering::Relaxed);
        self.counters
            .completion_tokens
            .fetch_add(tokens.completion, Ordering::Relaxed);
    }

    /// POSTs `body` until a 2xx reply comes (its body) or the retries are spent (the reason).
    pub async fn send(&self, body: &Arc<[u8]>) -> std::result::Result<Bytes, String> {
        let mut attempt = 0u32;
        loop {
            self.within_budget()?;
            let result = {
                let Ok(_permit) = self.permits.acquire().await else {
                    return Err("the client was closed".into());
                };
                self.counters.requests.fetch_add(1, Ordering::Relaxed);
                self.attempt(body).await
            };
            let failed = match result {
                Ok(reply) => return Ok(reply),
                Err(f) => f,
            };
            let reason = self.scrub(failed.reason);
            if !failed.retryable {
                return Err(reason);
            }
            if attempt >= self.retries {
                return Err(format!(
                    "{reason} (gave up after {} attempt{})",
                    attempt + 1,
                    if attempt == 0 { "" } else { "s" }
                ));
            }
            let wait = failed
                .retry_after
                .map(|d| d.min(MAX_RETRY_AFTER))
                .unwrap_or_else(|| backoff(attempt));
            debug!(url = %self.shown, attempt, wait_s = wait.as_secs_f64(), "retrying: {reason}");
            self.counters.retries.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    /// The wait before re-sending after an unusable reply (the same backoff as a failure).
    pub fn backoff(&self, attempt: u32) -> Duration {
        backoff(attempt)
    }

    fn within_budget(&self) -> std::result::Result<(), String> {
        let c = &self.counters;
        if let Some(max) = self.max_requests {
            if c.requests.load(Ordering::Relaxed) >= max {
                return Err(format!(
                    "the run's request budget is spent (max_requests = {max}); kelp run --resume retries this clip"
                ));
            }
        }
        if let Some(max) = self.max_tokens {
            let used = c.prompt_tokens.load(Ordering::Relaxed)
                + c.completion_tokens.load(Ordering::Relaxed);
            if used >= max {
                return Err(format!(
                    "the run's token budget is spent ({used} of max_total_tokens = {max}); kelp run --resume retries this clip"
                ));
            }
        }
        Ok(())
    }

    async fn attempt(&self, body: &Arc<[u8]>) -> std::result::Result<Bytes, Failed> {
        let mut request = self
            .http
            .post(&self.url)
            .header(CONTENT_TYPE, "application/json")
            .timeout(self.timeout)
            .body(Bytes::from_owner(ArcBytes(body.clone())));
        if let Some(auth) = &self.auth {
            request = request.header(AUTHORIZATION, auth.clone());
        }
        let response = request.send().await.map_err(|e| self.transport(e))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64);
        let reply = response.bytes().await.map_err(|e| self.transport(e))?;
        if status.is_success() {
            return Ok(reply);
        }
        let retryable = status == StatusCode::TOO_MANY_REQUESTS
            || status == StatusCode::REQUEST_TIMEOUT
            || status.is_server_error();
        Err(Failed {
            reason: format!(
                "{} answered HTTP {}{}",
                self.shown,
                status.as_u16(),
                excerpt(&reply)
            ),
            retryable,
            retry_after,
        })
    }

    /// A failure below HTTP: every one of them (refused, reset, timed out) may pass.
    fn transport(&self, e: reqwest::Error) -> Failed {
        let what = if e.is_timeout() {
            format!("no reply within {:.1} s", self.timeout.as_secs_f64())
        } else if e.is_connect() {
            "cannot connect".to_string()
        } else {
            "the connection failed".to_string()
        };
        let detail = std::error::Error::source(&e)
            .map(|s| format!(" ({s})"))
            .unwrap_or_default();
        Failed {
            reason: format!("{}: {what}{detail}", self.shown),
            retryable: true,
            retry_after: None,
        }
    }

    fn scrub(&self, reason: String) -> String {
        match &self.secret {
            Some(s) if reason.contains(s.as_str()) => reason.replace(s.as_str(), "[redacted]"),
            _ => reason,
        }
    }
}

/// An `Arc<[u8]>` as the owner of a `Bytes`, so a request body is never copied per attempt.
struct ArcBytes(Arc<[u8]>);

impl AsRef<[u8]> for ArcBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// Exponential backoff with "equal jitter": half the step, plus a random part of the other half.
fn backoff(attempt: u32) -> Duration {
    let step = BASE_BACKOFF
        .saturating_mul(1u32 << attempt.min(16))
        .min(MAX_BACKOFF);
    step / 2 + step.mul_f64(fastrand::f64() / 2.0)
}

/// `scheme://host:port/path`, without user info or query.
fn shown_url(url: &reqwest::Url) -> String {
    let host = url.host_str().unwrap_or("?");
    match url.port() {
        Some(p) => format!("{}://{host}:{p}{}", url.scheme(), url.path()),
        None => format!("{}://{host}{}", url.scheme(), url.path()),
    }
}

/// `: <the start of an error body>` when it has any text.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return String::new();
    }
    let cut: String = text.chars().take(200).collect();
    let more = if cut.len() < text.len() { "…" } else { "" };
    format!(": {}{more}", cut.replace(['\n', '\r'], " "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_stops_growing() {
        for attempt in 0..4 {
            let step = BASE_BACKOFF * (1 << attempt);
            let b = backoff(attempt);
            assert!(b >= step / 2 && b <= step, "{attempt}: {b:?}");
        }
        assert!(backoff(40) <= MAX_BACKOFF);
    }

    #[test]
    fn urls_are_shown_without_user_info_or_query() {
        let u = reqwest::Url::parse("http://user:pw@h:8000/v1/chat/completions?key=abc").unwrap();
        assert_eq!(shown_url(&u), "http://h:8000/v1/chat/completions");
    }
}

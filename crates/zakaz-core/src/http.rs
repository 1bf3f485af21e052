//! The HTTP client every loader uses: timeouts, retries with exponential backoff and jitter
//! for 429/5xx/network errors, `Retry-After` honoured, a per-run request budget, and logging
//! that never prints tokens (no headers, no query strings, registered secrets scrubbed).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use rand::Rng;
use reqwest::{RequestBuilder, Response, StatusCode};

/// HTTP behaviour shared by every loader.
#[derive(Debug, Clone, Args)]
pub struct HttpArgs {
    /// Timeout of one HTTP request, in seconds.
    #[arg(long, env = "HTTP_TIMEOUT_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub http_timeout_secs: u64,

    /// Attempts per request (the first try included) for 429, 5xx and network errors.
    #[arg(long, env = "HTTP_MAX_ATTEMPTS", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub http_max_attempts: u32,

    /// Most HTTP requests one run may make, retries included; protects remote quotas from a
    /// loop gone wrong.
    #[arg(long, env = "HTTP_REQUEST_BUDGET", default_value_t = 20_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub http_request_budget: u32,
}

impl Default for HttpArgs {
    fn default() -> Self {
        HttpArgs {
            http_timeout_secs: 60,
            http_max_attempts: 5,
            http_request_budget: 20_000,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    #[error("{service}: request budget of {limit} requests for this run is exhausted")]
    BudgetExhausted { service: &'static str, limit: u32 },
    #[error("{service}: {target} failed after {attempts} attempt(s): {reason}")]
    Network {
        service: &'static str,
        target: String,
        attempts: u32,
        reason: String,
        /// The connection was never made, so the server never saw the request (safe to send
        /// again even when it is not idempotent).
        connect: bool,
    },
    #[error("{service}: {target} answered HTTP {status}: {body}")]
    Status {
        service: &'static str,
        target: String,
        status: u16,
        body: String,
    },
    #[error("{service}: cannot build the request: {reason}")]
    Build {
        service: &'static str,
        reason: String,
    },
    #[error(
        "{service}: {target} answered HTTP {status} redirecting to {location}: not followed (a request carrying a secret is never sent to another address)"
    )]
    Redirect {
        service: &'static str,
        target: String,
        status: u16,
        location: String,
    },
    #[error("{service}: {target}: no time left before the run's deadline ({reason})")]
    Deadline {
        service: &'static str,
        target: String,
        reason: String,
    },
}

#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl RetryPolicy {
    /// Backoff before attempt `attempt + 1`: exponential with full jitter in its upper half.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)))
            .min(self.max_delay);
        let half = exp / 2;
        half + rand::rng().random_range(Duration::ZERO..=half)
    }
}

/// A client for one remote service.
#[derive(Clone)]
pub struct HttpClient {
    inner: reqwest::Client,
    service: &'static str,
    retry: RetryPolicy,
    used: Arc<AtomicU32>,
    budget: u32,
    /// When the run must be done: no request outlasts it and no back-off sleeps past it.
    deadline: Option<Instant>,
    /// Statuses that mean something to the caller and are returned at once, never retried
    /// (Direct's 502: the report is too large, split it).
    final_statuses: Vec<u16>,
}

impl HttpClient {
    pub fn new(service: &'static str, args: &HttpArgs) -> anyhow::Result<Self> {
        let inner = reqwest::Client::builder()
            .timeout(Duration::from_secs(args.http_timeout_secs))
            .connect_timeout(Duration::from_secs(args.http_timeout_secs.min(10)))
            .user_agent(concat!("zakaz-jobs/", env!("CARGO_PKG_VERSION")))
            // Every request carries a token, a client secret or a password: a redirect would
            // send it (form fields, a `Referer`) to whatever address the answer names.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(HttpClient {
            inner,
            service,
            retry: RetryPolicy {
                max_attempts: args.http_max_attempts,
                base_delay: Duration::from_millis(500),
                max_delay: Duration::from_secs(64),
            },
            used: Arc::new(AtomicU32::new(0)),
            budget: args.http_request_budget,
            deadline: None,
            final_statuses: Vec::new(),
        })
    }

    /// Return these statuses at once instead of retrying them.
    pub fn without_retry_on(mut self, statuses: &[u16]) -> Self {
        self.final_statuses = statuses.to_vec();
        self
    }

    /// Bound every request and every wait between retries by `deadline`.
    pub fn with_deadline(mut self, deadline: Instant) -> Self {
        self.deadline = Some(deadline);
        self
    }

    fn time_left(&self) -> Option<Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// Shorter delays, for tests that exercise retries.
    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    pub fn service(&self) -> &'static str {
        self.service
    }

    /// Requests made so far in this run.
    pub fn requests_made(&self) -> u32 {
        self.used.load(Ordering::Relaxed)
    }

    /// Send the request `build` makes, retrying 429/500/502/503/504 and network errors.
    /// Returns the final response whatever its status (callers handle vendor semantics);
    /// errors only for network failures after every attempt and for an exhausted budget.
    pub async fn send<F>(&self, build: F) -> Result<Response, HttpError>
    where
        F: Fn(&reqwest::Client) -> RequestBuilder,
    {
        let mut attempt = 1;
        loop {
            if self.used.fetch_add(1, Ordering::Relaxed) >= self.budget {
                return Err(HttpError::BudgetExhausted {
                    service: self.service,
                    limit: self.budget,
                });
            }
            let mut request = build(&self.inner).build().map_err(|e| HttpError::Build {
                service: self.service,
                reason: crate::secret::redact(&without_url(&e)),
            })?;
            let method = request.method().clone();
            let target = safe_target(request.url());
            if let Some(left) = self.time_left() {
                if left.is_zero() {
                    return Err(HttpError::Deadline {
                        service: self.service,
                        target,
                        reason: "the deadline has passed".into(),
                    });
                }
                let timeout = request.timeout().copied().unwrap_or(left).min(left);
                *request.timeout_mut() = Some(timeout);
            }
            let started = Instant::now();
            let result = self.inner.execute(request).await;
            let elapsed_ms = started.elapsed().as_millis() as u64;
            let last = attempt >= self.retry.max_attempts;
            match result {
                Ok(response) => {
                    let status = response.status();
                    tracing::debug!(service = self.service, %method, %target, status = status.as_u16(), elapsed_ms, "http");
                    if status.is_redirection() && status != StatusCode::NOT_MODIFIED {
                        let location = response
                            .headers()
                            .get(reqwest::header::LOCATION)
                            .and_then(|v| v.to_str().ok())
                            .and_then(|l| response.url().join(l).ok())
                            .map_or_else(
                                || "nowhere (no `Location`)".to_owned(),
                                |u| safe_target(&u),
                            );
                        return Err(HttpError::Redirect {
                            service: self.service,
                            target,
                            status: status.as_u16(),
                            location,
                        });
                    }
                    if !is_retryable(status)
                        || last
                        || self.final_statuses.contains(&status.as_u16())
                    {
                        return Ok(response);
                    }
                    let delay = retry_after(&response)
                        .map(|d| d.min(self.retry.max_delay))
                        .unwrap_or_else(|| self.retry.backoff(attempt));
                    if self.time_left().is_some_and(|left| delay >= left) {
                        return Err(HttpError::Deadline {
                            service: self.service,
                            target,
                            reason: format!(
                                "HTTP {} asks to wait {} ms",
                                status.as_u16(),
                                delay.as_millis()
                            ),
                        });
                    }
                    tracing::warn!(
                        service = self.service,
                        %target,
                        status = status.as_u16(),
                        attempt,
                        delay_ms = delay.as_millis() as u64,
                        "retrying after a temporary error"
                    );
                    tokio::time::sleep(delay).await;
                }
                Err(err) => {
                    let reason = crate::secret::redact(&without_url(&err));
                    if last {
                        return Err(HttpError::Network {
                            service: self.service,
                            target,
                            attempts: attempt,
                            reason,
                            connect: err.is_connect(),
                        });
                    }
                    let delay = self.retry.backoff(attempt);
                    if self.time_left().is_some_and(|left| delay >= left) {
                        return Err(HttpError::Deadline {
                            service: self.service,
                            target,
                            reason: format!("after a network error: {reason}"),
                        });
                    }
                    tracing::warn!(service = self.service, %target, attempt, delay_ms = delay.as_millis() as u64, "retrying after a network error: {reason}");
                    tokio::time::sleep(delay).await;
                }
            }
            attempt += 1;
        }
    }

    /// `send`, then turn any non-2xx status into `HttpError::Status` with a short body.
    pub async fn send_ok<F>(&self, build: F) -> Result<Response, HttpError>
    where
        F: Fn(&reqwest::Client) -> RequestBuilder,
    {
        let response = self.send(build).await?;
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(self.status_error(response).await)
        }
    }

    /// The error for an unwanted answer: status, where, and the start of the body.
    pub async fn status_error(&self, response: Response) -> HttpError {
        let status = response.status().as_u16();
        let target = safe_target(response.url());
        let body = text_limited(self.service, response, MAX_ERROR_BYTES)
            .await
            .unwrap_or_default();
        HttpError::Status {
            service: self.service,
            target,
            status,
            body: body_excerpt(&body),
        }
    }
}

/// The largest answer a JSON API page is read into memory for. A JSON tree takes up to ~25
/// times its text (an array of small numbers), so this bounds one page to ~100 MB even when
/// hostile, within the units' `MemoryMax=`; real pages are far smaller (a QTickets page of
/// 50 orders ~150 KB, a VK statistics page of 200 banners × 31 days ~2.5 MB).
pub const MAX_JSON_ANSWER_BYTES: usize = 4 * 1024 * 1024;
/// VK's statistics pages are the largest the loaders read.
pub const MAX_VK_ANSWER_BYTES: usize = 16 * 1024 * 1024;
/// An error answer is read only for its first few hundred characters.
pub const MAX_ERROR_BYTES: usize = 64 * 1024;

/// The body of `response` as text, at most `limit` bytes (read as it arrives; an answer that
/// declares or sends more is an error naming the service and the limit).
pub async fn text_limited(
    service: &str,
    response: Response,
    limit: usize,
) -> anyhow::Result<String> {
    let body = bytes_limited(service, response, limit).await?;
    Ok(match String::from_utf8(body) {
        Ok(text) => text,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}

/// [`text_limited`]'s bytes, as they came (a parser that reads bytes needs no copy).
pub async fn bytes_limited(
    service: &str,
    mut response: Response,
    limit: usize,
) -> anyhow::Result<Vec<u8>> {
    let target = safe_target(response.url());
    let too_big = || {
        anyhow::anyhow!(
            "{service}: the answer of {target} is larger than {} MiB: refused",
            limit / (1024 * 1024)
        )
    };
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(too_big());
    }
    let mut body = Vec::with_capacity(response.content_length().unwrap_or(0) as usize);
    while let Some(chunk) = response.chunk().await.map_err(|e| {
        anyhow::anyhow!(
            "{service}: reading the answer of {target} failed: {}",
            crate::secret::redact(&without_url(&e))
        )
    })? {
        if body.len() + chunk.len() > limit {
            return Err(too_big());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A base URL setting: `http` or `https` with a host, checked at start so that a typo is one
/// line naming the setting, never a retried request. Returned without a trailing `/`.
pub fn parse_base_url(s: &str) -> Result<String, String> {
    let url = url::Url::parse(s.trim()).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "scheme must be http or https, not `{}`",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("the URL has no host".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        // Never echoed: the message names the shape, not the credentials.
        return Err(
            "the URL carries a user name or password (`user:…@host`): credentials go in their own settings, never in a URL"
                .into(),
        );
    }
    // A URL is printed in errors and logs; a credential in its query would be too
    // (ClickHouse reads `?user=…&password=…`, APIs `?access_token=…`).
    if let Some((name, _)) = url.query_pairs().find(|(name, _)| {
        let name = name.to_ascii_lowercase();
        ["password", "passwd", "token", "secret", "user", "auth"]
            .iter()
            .any(|c| name.contains(c))
    }) {
        return Err(format!(
            "the URL's query carries `{name}`, a credential: credentials go in their own settings, never in a URL"
        ));
    }
    Ok(s.trim().trim_end_matches('/').to_owned())
}

pub fn is_retryable(status: StatusCode) -> bool {
    matches!(status.as_u16(), 429 | 500 | 502 | 503 | 504)
}

/// `Retry-After` as seconds or an HTTP date.
pub fn retry_after(response: &Response) -> Option<Duration> {
    let value = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?;
    parse_retry_after(value, chrono::Utc::now())
}

pub fn parse_retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    Some(
        (at.with_timezone(&chrono::Utc) - now)
            .to_std()
            .unwrap_or(Duration::ZERO),
    )
}

/// `host/path` with registered secrets scrubbed; never the query string (tokens live there
/// in some APIs) nor user info.
pub fn safe_target(url: &reqwest::Url) -> String {
    let host = url.host_str().unwrap_or_default();
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    crate::secret::redact(&format!("{host}{port}{}", url.path()))
}

/// A reqwest error's text without the URL it quotes (which may carry a query string).
fn without_url(err: &reqwest::Error) -> String {
    let mut text = err.to_string();
    if let Some(url) = err.url() {
        text = text.replace(url.as_str(), &safe_target(url));
    }
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// At most 300 characters of a body, on one line, secrets scrubbed.
pub fn body_excerpt(body: &str) -> String {
    // Redacted before it is cut: a secret across the cut would otherwise show its first half.
    let flat = crate::secret::redact(&body.split_whitespace().collect::<Vec<_>>().join(" "));
    let mut cut: String = flat.chars().take(300).collect();
    if flat.chars().count() > 300 {
        cut.push('…');
    }
    cut
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A loopback server answering from a script of (status, headers) and recording paths.
    fn serve(
        script: Vec<(u16, Vec<(&'static str, &'static str)>)>,
    ) -> (String, Arc<Mutex<Vec<String>>>) {
        let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
        let addr = server.server_addr().to_ip().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for (status, headers) in script {
                let Ok(req) = server.recv() else { return };
                log.lock().unwrap().push(req.url().to_owned());
                let mut resp =
                    tiny_http::Response::from_string("{\"error\":\"x\"}").with_status_code(status);
                for (k, v) in headers {
                    resp.add_header(tiny_http::Header::from_bytes(k, v).unwrap());
                }
                let _ = req.respond(resp);
            }
        });
        (format!("http://{addr}"), seen)
    }

    fn client(budget: u32) -> HttpClient {
        let args = HttpArgs {
            http_timeout_secs: 5,
            http_max_attempts: 4,
            http_request_budget: budget,
        };
        HttpClient::new("test", &args)
            .unwrap()
            .with_retry_policy(RetryPolicy {
                max_attempts: 4,
                base_delay: Duration::from_millis(1),
                max_delay: Duration::from_millis(5),
            })
    }

    #[tokio::test]
    async fn retries_5xx_and_429_then_succeeds() {
        let (base, seen) = serve(vec![
            (503, vec![]),
            (429, vec![("Retry-After", "0")]),
            (200, vec![]),
        ]);
        let resp = client(100)
            .send(|c| c.get(format!("{base}/orders")))
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(seen.lock().unwrap().len(), 3);
    }

    #[tokio::test]
    async fn does_not_retry_403() {
        let (base, seen) = serve(vec![(403, vec![]), (200, vec![])]);
        let err = client(100)
            .send_ok(|c| c.get(format!("{base}/orders")))
            .await
            .unwrap_err();
        assert_eq!(seen.lock().unwrap().len(), 1);
        assert!(err.to_string().contains("answered HTTP 403"), "{err}");
    }

    #[tokio::test]
    async fn no_back_off_sleeps_past_the_deadline() {
        // The server asks to wait a minute; the run has five seconds left.
        let (base, seen) = serve(vec![(503, vec![("Retry-After", "60")]); 4]);
        let mut c = client(100);
        c.retry.max_delay = Duration::from_secs(120);
        let err = c
            .with_deadline(Instant::now() + Duration::from_secs(5))
            .send(|c| c.get(format!("{base}/orders")))
            .await
            .unwrap_err();
        assert!(matches!(err, HttpError::Deadline { .. }), "{err}");
        assert!(
            err.to_string().contains("HTTP 503 asks to wait 60000 ms"),
            "{err}"
        );
        assert_eq!(seen.lock().unwrap().len(), 1, "no second attempt");
        // And a request after the deadline is not sent at all.
        let late = client(100)
            .with_deadline(Instant::now())
            .send(|c| c.get(format!("{base}/orders")))
            .await
            .unwrap_err();
        assert!(
            late.to_string().contains("the deadline has passed"),
            "{late}"
        );
        assert_eq!(seen.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn budget_stops_a_runaway_loop() {
        let (base, seen) = serve(vec![(503, vec![]); 10]);
        let err = client(2)
            .send(|c| c.get(format!("{base}/x")))
            .await
            .unwrap_err();
        assert!(
            matches!(err, HttpError::BudgetExhausted { limit: 2, .. }),
            "{err}"
        );
        assert_eq!(seen.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn network_errors_never_print_query_or_secret_path() {
        crate::secret::register("bot-secret-token-42");
        // Nothing listens on port 9 of loopback.
        let err = client(10)
            .send(|c| {
                c.get(
                    "http://127.0.0.1:9/botbot-secret-token-42/send?token=bot-secret-token-42&x=1",
                )
            })
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("failed after 4 attempt(s)"), "{text}");
        assert!(!text.contains("bot-secret-token-42"), "{text}");
        assert!(!text.contains("x=1"), "{text}");
    }

    #[tokio::test]
    async fn a_server_that_echoes_a_secret_in_its_error_never_gets_it_printed() {
        let secret = crate::Secret::new("echoed-secret-token-5150");
        // The secret straddles the 300-character cut of the excerpt.
        let body = format!("{}{}", "x".repeat(290), secret.expose());
        let base = serve_body(401, body);
        let err = client(10)
            .send_ok(|c| c.get(format!("{base}/x")).bearer_auth(secret.expose()))
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("answered HTTP 401"), "{text}");
        assert!(!text.contains("echoed"), "not even its first half: {text}");
    }

    /// A loopback server answering every request with `status` and `body`.
    fn serve_body(status: u16, body: String) -> String {
        let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
        let base = format!("http://{}", server.server_addr().to_ip().unwrap());
        std::thread::spawn(move || {
            for request in server.incoming_requests() {
                let _ = request.respond(
                    tiny_http::Response::from_string(body.clone()).with_status_code(status),
                );
            }
        });
        base
    }

    #[tokio::test]
    async fn an_answer_larger_than_the_limit_is_refused_whatever_it_declares() {
        let base = serve_body(200, "x".repeat(5000));
        let response = client(10)
            .send(|c| c.get(format!("{base}/big")))
            .await
            .unwrap();
        let err = text_limited("Test", response, 1024 * 1024 / 256)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("is larger than"), "{err}");
        let response = client(10)
            .send(|c| c.get(format!("{base}/big")))
            .await
            .unwrap();
        assert_eq!(
            text_limited("Test", response, 5000).await.unwrap().len(),
            5000
        );
    }

    #[test]
    fn retry_after_forms() {
        let now = chrono::DateTime::parse_from_rfc3339("2025-05-01T00:00:00Z")
            .unwrap()
            .to_utc();
        assert_eq!(parse_retry_after("41", now), Some(Duration::from_secs(41)));
        assert_eq!(
            parse_retry_after("Thu, 01 May 2025 00:00:10 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}

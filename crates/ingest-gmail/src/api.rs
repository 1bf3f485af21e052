//! The Gmail API v1 as the loader uses it: an access token from the refresh-token grant
//! (never interactive), message search paged by `nextPageToken`, full messages, attachments by
//! the id of the fetch that just returned them, labels. Rate limits (403
//! `userRateLimitExceeded`/`rateLimitExceeded`, 429) are waited out within the run's deadline;
//! no answer is read past a size limit.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use zakaz_core::Secret;
use zakaz_core::error::ConfigError;
use zakaz_core::http::{HttpClient, body_excerpt, parse_retry_after};
use zakaz_core::time::Clock;

/// Rate-limit waits per call before giving up (1 + 2 + … + 64 s without a hint).
const MAX_RATE_LIMIT_WAITS: u32 = 8;

/// Gmail answered a call with an error status.
#[derive(Debug)]
pub struct ApiError {
    pub status: u16,
    pub reason: String,
    message: String,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ApiError {}

/// Gmail cannot be asked any more in this run (its rate limit outlasts the deadline): the
/// run ends, no mail is blamed.
#[derive(Debug)]
pub struct GiveUp(pub String);

impl std::fmt::Display for GiveUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for GiveUp {}

/// When a rate-limit answer's message says to come back: `… Retry after
/// 2026-11-25T09:00:01.000Z`.
pub fn retry_after_in_message(
    message: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<Duration> {
    const KEY: &str = "retry after";
    let at = (0..message.len()).find(|&i| {
        message
            .get(i..i + KEY.len())
            .is_some_and(|s| s.eq_ignore_ascii_case(KEY))
    })?;
    let stamp = message[at + KEY.len()..]
        .split_whitespace()
        .next()?
        .trim_end_matches(['.', ',', ';', ')']);
    let at = chrono::DateTime::parse_from_rfc3339(stamp).ok()?;
    Some(
        (at.with_timezone(&chrono::Utc) - now)
            .to_std()
            .unwrap_or(Duration::ZERO),
    )
}

pub struct Gmail {
    http: HttpClient,
    base: String,
    token_url: String,
    client_id: String,
    client_secret: Secret,
    refresh_token: Secret,
    access: tokio::sync::Mutex<Option<String>>,
    deadline: Option<Instant>,
    clock: Clock,
    max_answer_bytes: usize,
}

impl Gmail {
    pub fn new(
        http: HttpClient,
        api_url: &str,
        token_url: &str,
        client_id: &str,
        client_secret: Secret,
        refresh_token: Secret,
    ) -> Self {
        Gmail {
            http,
            base: format!("{}/gmail/v1/users/me", api_url.trim_end_matches('/')),
            token_url: token_url.to_owned(),
            client_id: client_id.to_owned(),
            client_secret,
            refresh_token,
            access: tokio::sync::Mutex::new(None),
            deadline: None,
            clock: Clock::System,
            max_answer_bytes: usize::MAX,
        }
    }

    /// No rate-limit wait lasts past `deadline`.
    pub fn with_deadline(mut self, deadline: Instant) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// "Now" for the instants Gmail names (`Retry after …`, an HTTP-date `Retry-After`).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Refuse an answer larger than this (a message or an attachment of a hostile size).
    pub fn with_max_answer_bytes(mut self, bytes: usize) -> Self {
        self.max_answer_bytes = bytes;
        self
    }

    /// The body of an answer, refused past `max_answer_bytes` before it is all read.
    async fn read(&self, mut response: reqwest::Response, path: &str) -> anyhow::Result<String> {
        let limit = self.max_answer_bytes;
        let too_large = || {
            anyhow::anyhow!(
                "Gmail's answer for {path} is larger than {limit} bytes (twice `GMAIL_MAX_ATTACHMENT_BYTES`, plus 1 MiB)"
            )
        };
        if response.content_length().is_some_and(|n| n > limit as u64) {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| {
            anyhow::anyhow!("reading Gmail's answer for {path}: {}", e.without_url())
        })? {
            if body.len() + chunk.len() > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    pub fn requests_made(&self) -> u32 {
        self.http.requests_made()
    }

    /// A fresh access token from the refresh token.
    async fn refresh(&self) -> anyhow::Result<String> {
        let form = [
            ("grant_type", "refresh_token"),
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.client_secret.expose()),
            ("refresh_token", self.refresh_token.expose()),
        ];
        let response = self
            .http
            .send(|c| c.post(&self.token_url).form(&form))
            .await?;
        let status = response.status().as_u16();
        let text = self.read(response, "the token endpoint").await?;
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        match (status, body["error"].as_str()) {
            (200, _) => body["access_token"]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| anyhow::anyhow!("Google's token answer has no `access_token`")),
            (_, Some("invalid_grant")) => Err(ConfigError(
                "Google refused the refresh token (invalid_grant: revoked or expired): authorise the mailbox again (OAuth consent for the gmail.modify scope) and put the new token in `GMAIL_REFRESH_TOKEN`"
                    .into(),
            )
            .into()),
            (_, Some("invalid_client" | "unauthorized_client")) => Err(ConfigError(
                "Google rejected the OAuth client (invalid_client): check `GMAIL_CLIENT_ID` and `GMAIL_CLIENT_SECRET`".into(),
            )
            .into()),
            _ => anyhow::bail!(
                "Google's token endpoint answered HTTP {status}: {}",
                body_excerpt(&text)
            ),
        }
    }

    async fn token(&self, stale: Option<&str>) -> anyhow::Result<String> {
        let mut access = self.access.lock().await;
        if let Some(t) = access.as_ref()
            && Some(t.as_str()) != stale
        {
            return Ok(t.clone());
        }
        let fresh = self.refresh().await?;
        *access = Some(fresh.clone());
        Ok(fresh)
    }

    /// A call under `/gmail/v1/users/me`; a 401 gets one fresh token; a rate limit is waited
    /// out (its `Retry-After`, else the instant its message names, else 1, 2, 4 … 64 s) unless
    /// the wait would pass the run's deadline.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let mut token = self.token(None).await?;
        let (mut refreshed, mut waits) = (false, 0u32);
        loop {
            let response = self
                .http
                .send(|c| {
                    let r = c
                        .request(method.clone(), &url)
                        .bearer_auth(&token)
                        .query(query);
                    match body {
                        Some(b) => r.json(b),
                        None => r,
                    }
                })
                .await?;
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, self.clock.now()));
            let text = self.read(response, path).await?;
            if status == 401 && !refreshed {
                refreshed = true;
                token = self.token(Some(&token)).await?;
                continue;
            }
            if status == 200 {
                return serde_json::from_str(&text).map_err(|e| {
                    anyhow::anyhow!(
                        "Gmail answered invalid JSON for {path} ({e}); the answer may have been cut off"
                    )
                });
            }
            let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let e = &v["error"];
            let reason = e["errors"][0]["reason"].as_str().unwrap_or_default();
            let message = e["message"].as_str().unwrap_or(&text);
            let rate_limited = status == 429
                || status == 403 && matches!(reason, "userRateLimitExceeded" | "rateLimitExceeded");
            if rate_limited {
                let delay = retry_after
                    .or_else(|| retry_after_in_message(message, self.clock.now()))
                    .unwrap_or_else(|| Duration::from_secs(1 << waits.min(6)));
                if waits >= MAX_RATE_LIMIT_WAITS {
                    return Err(GiveUp(format!(
                        "Gmail kept answering HTTP {status} ({reason}) for {path} after {waits} waits: the next run tries again"
                    ))
                    .into());
                }
                if self.deadline.is_some_and(|d| Instant::now() + delay >= d) {
                    return Err(GiveUp(format!(
                        "Gmail's rate limit (HTTP {status} {reason}) for {path} asks to wait {} s, past the run's deadline: the next run tries again",
                        delay.as_secs()
                    ))
                    .into());
                }
                tracing::warn!(
                    status,
                    reason,
                    delay_ms = delay.as_millis() as u64,
                    "Gmail rate limit on {path}: waiting before asking again"
                );
                tokio::time::sleep(delay).await;
                waits += 1;
                continue;
            }
            if status == 401 {
                anyhow::bail!("Gmail refused a fresh access token for {path}");
            }
            // A refresh token consented with too narrow a scope (read-only): every run would
            // fail on its first label; only a new consent fixes it.
            if status == 403 && reason == "insufficientPermissions" {
                return Err(zakaz_core::error::config_error(format!(
                    "Gmail refuses {method} {path} for want of permission (insufficientPermissions): `GMAIL_REFRESH_TOKEN` needs the scope `https://www.googleapis.com/auth/gmail.modify`; authorise again"
                )));
            }
            return Err(ApiError {
                status,
                reason: reason.to_owned(),
                message: format!(
                    "Gmail: {method} {path} answered HTTP {status} {} ({reason}): {}",
                    e["status"].as_str().unwrap_or_default(),
                    body_excerpt(message)
                ),
            }
            .into());
        }
    }

    /// Every message id `q` finds, following `nextPageToken`.
    pub async fn search(&self, q: &str) -> anyhow::Result<Vec<String>> {
        let mut ids = Vec::new();
        let mut page: Option<String> = None;
        for _ in 0..10_000 {
            let mut query = vec![("q", q.to_owned()), ("maxResults", "100".to_owned())];
            if let Some(p) = &page {
                query.push(("pageToken", p.clone()));
            }
            let answer = self
                .call(reqwest::Method::GET, "/messages", &query, None)
                .await?;
            // No `messages` key at all when nothing matches.
            for m in answer["messages"].as_array().into_iter().flatten() {
                if let Some(id) = m["id"].as_str() {
                    ids.push(id.to_owned());
                }
            }
            match answer["nextPageToken"].as_str() {
                Some(p) => page = Some(p.to_owned()),
                None => return Ok(ids),
            }
        }
        anyhow::bail!("Gmail's search never reached its last page")
    }

    pub async fn message(&self, id: &str) -> anyhow::Result<Value> {
        self.call(
            reqwest::Method::GET,
            &format!("/messages/{id}"),
            &[("format", "full".to_owned())],
            None,
        )
        .await
    }

    /// An attachment's bytes, by the id the message fetch just gave out (ids change between
    /// fetches and expire).
    pub async fn attachment(&self, message: &str, attachment: &str) -> anyhow::Result<Vec<u8>> {
        let answer = self
            .call(
                reqwest::Method::GET,
                &format!("/messages/{message}/attachments/{attachment}"),
                &[],
                None,
            )
            .await?;
        crate::mime::base64url_decode(answer["data"].as_str().unwrap_or_default())
    }

    /// The id of the user label `name`, created when missing.
    pub async fn label_id(&self, name: &str, create: bool) -> anyhow::Result<Option<String>> {
        let labels = self
            .call(reqwest::Method::GET, "/labels", &[], None)
            .await?;
        let found = labels["labels"].as_array().into_iter().flatten().find(|l| {
            l["name"]
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
        });
        if let Some(l) = found {
            return Ok(l["id"].as_str().map(str::to_owned));
        }
        if !create {
            return Ok(None);
        }
        let created = self
            .call(
                reqwest::Method::POST,
                "/labels",
                &[],
                Some(&json!({"name": name, "labelListVisibility": "labelShow", "messageListVisibility": "show"})),
            )
            .await?;
        Ok(created["id"].as_str().map(str::to_owned))
    }

    pub async fn add_label(&self, message: &str, label_id: &str) -> anyhow::Result<()> {
        self.call(
            reqwest::Method::POST,
            &format!("/messages/{message}/modify"),
            &[],
            Some(&json!({"addLabelIds": [label_id]})),
        )
        .await
        .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_limit_message_names_when_to_retry() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-25T09:00:00Z")
            .unwrap()
            .to_utc();
        assert_eq!(
            retry_after_in_message(
                "User-rate limit exceeded.  Retry after 2026-11-25T09:00:01.500Z",
                now
            ),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            retry_after_in_message("retry AFTER 2026-11-25T08:00:00Z.", now),
            Some(Duration::ZERO),
            "a past instant: at once"
        );
        assert_eq!(retry_after_in_message("Rate Limit Exceeded", now), None);
        assert_eq!(retry_after_in_message("Retry after tomorrow", now), None);
        assert_eq!(retry_after_in_message("İİ Retry after", now), None);
    }
}

//! The VK Ads API v2 as the loader uses it: bearer calls with the stored token (refreshed or
//! replaced on 401, once), the rate-limit headers honoured (a pause when the per-second
//! budget runs out; a clear failure when the hourly or daily one does), listings paged by
//! `offset` until `count`, and the statistics' "unknown id" errors told apart so a batch can
//! be split around the bad id.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use zakaz_core::error::ConfigError;
use zakaz_core::http::{HttpClient, body_excerpt};
use zakaz_core::time::Clock;

use crate::token::{Refused, Tokens};

/// The largest page VK serves.
pub const PAGE: usize = 50;

/// The error codes of a statistics request naming an id VK does not know (for ad plans the
/// English docs say `ERR_WRONG_CAMPAIGNS`, the Russian ones `ERR_WRONG_ADPLANS`).
const WRONG_IDS: &[&str] = &[
    "ERR_WRONG_BANNERS",
    "ERR_WRONG_CAMPAIGNS",
    "ERR_WRONG_ADPLANS",
    "ERR_WRONG_AD_GROUPS",
];

#[derive(Debug, thiserror::Error)]
pub enum VkError {
    /// A statistics request named an id VK does not know (the whole request failed).
    #[error("VK Ads does not know an id of the request ({code})")]
    WrongIds { code: String },
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl VkError {
    /// As a plain error, keeping the inner error's classification (a `ConfigError` must still
    /// exit 78; wrapping it would hide it from `exit_code_for`).
    pub fn into_anyhow(self) -> anyhow::Error {
        match self {
            VkError::Other(e) => e,
            e @ VkError::WrongIds { .. } => anyhow::anyhow!("{e}"),
        }
    }
}

impl From<zakaz_core::http::HttpError> for VkError {
    fn from(e: zakaz_core::http::HttpError) -> Self {
        VkError::Other(e.into())
    }
}

#[derive(Clone)]
pub struct VkApi {
    http: HttpClient,
    base: String,
    tokens: Arc<Tokens>,
    clock: Clock,
    /// Per account, `X-RateLimit-Daily-Remaining` of its last answer: at 0 the account stops
    /// before sending what could only be refused (and retried) until midnight.
    daily_left: Arc<std::sync::Mutex<std::collections::HashMap<String, u64>>>,
}

impl VkApi {
    pub fn new(http: HttpClient, base: &str, tokens: Arc<Tokens>, clock: Clock) -> Self {
        VkApi {
            http,
            base: base.trim_end_matches('/').to_owned(),
            tokens,
            clock,
            daily_left: Arc::default(),
        }
    }

    pub fn requests_made(&self) -> u32 {
        self.http.requests_made()
    }

    /// `GET /api/v2/{path}` as `account`, the answer parsed.
    pub async fn get(
        &self,
        account: &str,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Value, VkError> {
        let text = self.get_text(account, path, query).await?;
        serde_json::from_str(&text).map_err(|e| {
            VkError::Other(anyhow::anyhow!(
                "VK Ads answered invalid JSON for `{path}` ({e}); the answer may have been cut off"
            ))
        })
    }

    /// The text of an answer (HTTP 200), unparsed: the token replaced when VK refuses it,
    /// rate limits kept, errors told apart (wrong ids, limits, refusals).
    pub async fn get_text(
        &self,
        account: &str,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<String, VkError> {
        let now = || self.clock.now().timestamp();
        let url = format!("{}/api/v2/{path}", self.base);
        let mut token = self.tokens.access(account, now()).await?;
        let mut replaced = false;
        loop {
            let used_up = self.daily_left.lock().unwrap().get(account) == Some(&0);
            if used_up {
                return Err(VkError::Other(anyhow::anyhow!(
                    "VK Ads daily request limit is used up (X-RateLimit-Daily-Remaining: 0) before `{path}`: it resets at Moscow midnight, re-run then"
                )));
            }
            let response = self
                .http
                .send(|c| c.get(&url).bearer_auth(&token).query(query))
                .await?;
            let status = response.status().as_u16();
            let limits = RateLimits::of(&response);
            if let Some(daily) = limits.daily {
                self.daily_left
                    .lock()
                    .unwrap()
                    .insert(account.to_owned(), daily);
            }
            let text = zakaz_core::http::text_limited(
                "VK Ads",
                response,
                zakaz_core::http::MAX_VK_ANSWER_BYTES,
            )
            .await?;
            if status == 200 {
                limits.pace().await;
                return Ok(text);
            }
            // An error's body, read once it is known not to be an answer.
            let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            match status {
                401 => {
                    let code = body.get("code").and_then(Value::as_str).unwrap_or_default();
                    let why = match code {
                        "expired_token" => Refused::Expired,
                        "invalid_token" => Refused::Invalid,
                        _ => {
                            return Err(VkError::Other(
                                ConfigError(format!(
                                    "VK Ads refused the token ({code}): the client's access was revoked or its credentials changed; check `VK_ADS_CLIENT_ID` and `VK_ADS_CLIENT_SECRET` in the VK Ads cabinet"
                                ))
                                .into(),
                            ));
                        }
                    };
                    if replaced {
                        return Err(VkError::Other(anyhow::anyhow!(
                            "VK Ads refused a fresh token for `{path}` ({code})"
                        )));
                    }
                    token = self.tokens.replace(account, &token, why, now()).await?;
                    replaced = true;
                }
                400 => {
                    let code = body["error"]["code"].as_str().unwrap_or_default();
                    if WRONG_IDS.contains(&code) {
                        return Err(VkError::WrongIds {
                            code: code.to_owned(),
                        });
                    }
                    return Err(VkError::Other(anyhow::anyhow!(
                        "VK Ads rejected `{path}`: {code}: {}",
                        body_excerpt(body["error"]["message"].as_str().unwrap_or(&text))
                    )));
                }
                429 => {
                    return Err(VkError::Other(anyhow::anyhow!(
                        "VK Ads rate limit: `{path}` still answered 429 after every retry{}",
                        limits.exhausted_note()
                    )));
                }
                _ => {
                    return Err(VkError::Other(anyhow::anyhow!(
                        "VK Ads: `{path}` answered HTTP {status}: {}",
                        body_excerpt(&text)
                    )));
                }
            }
        }
    }

    /// Every item of a listing, `PAGE` at a time, until `offset` reaches `count`.
    pub async fn list(
        &self,
        account: &str,
        path: &str,
        fields: &str,
    ) -> anyhow::Result<Vec<Value>> {
        let mut items: Vec<Value> = Vec::new();
        let mut offset = 0usize;
        // Bounded: a listing never has more pages than its count says (plus one).
        for _ in 0..100_000 {
            let page = self
                .get(
                    account,
                    path,
                    &[
                        ("fields", fields.to_owned()),
                        ("limit", PAGE.to_string()),
                        ("offset", offset.to_string()),
                    ],
                )
                .await
                .map_err(VkError::into_anyhow)?;
            // `count` may come as a string, like VK's other integers.
            let count = zakaz_core::loose::uint(&page["count"])
                .ok()
                .flatten()
                .unwrap_or(0) as usize;
            let Some(got) = page.get("items").and_then(Value::as_array).cloned() else {
                anyhow::bail!(
                    "VK Ads answered `{path}` without `items`: {}",
                    zakaz_core::http::body_excerpt(&page.to_string())
                );
            };
            // A server that ignores `offset` would serve the first page again and again.
            if offset > 0
                && let (Some(first), Some(earlier)) = (got.first(), items.first())
                && first.get("id") == earlier.get("id")
            {
                anyhow::bail!(
                    "VK Ads answered `{path}` at offset {offset} with its first page again: it ignores `offset`"
                );
            }
            let served = got.len();
            items.extend(got);
            // By what was served, not what was asked: VK may cap `limit`.
            offset += served;
            if served == 0 || offset >= count {
                return Ok(items);
            }
        }
        anyhow::bail!("VK Ads: `{path}` never reached its end")
    }
}

/// The `X-RateLimit-*-Remaining` headers of an answer.
#[derive(Debug, Default, Clone, Copy)]
struct RateLimits {
    rps: Option<u64>,
    hourly: Option<u64>,
    daily: Option<u64>,
}

impl RateLimits {
    fn of(response: &reqwest::Response) -> RateLimits {
        let get = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse().ok())
        };
        RateLimits {
            rps: get("X-RateLimit-RPS-Remaining"),
            hourly: get("X-RateLimit-Hourly-Remaining"),
            daily: get("X-RateLimit-Daily-Remaining"),
        }
    }

    /// Slow down before the per-second budget hits 0: the next request waits for the next
    /// second instead of being refused.
    async fn pace(&self) {
        if self.rps.is_some_and(|r| r <= 1) {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    fn exhausted_note(&self) -> String {
        if self.daily == Some(0) {
            "; the daily request limit is used up (X-RateLimit-Daily-Remaining: 0): it resets at Moscow midnight, re-run then".into()
        } else if self.hourly == Some(0) {
            "; the hourly request limit is used up (X-RateLimit-Hourly-Remaining: 0): re-run within the hour".into()
        } else {
            String::new()
        }
    }
}

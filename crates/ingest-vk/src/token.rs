//! VK's OAuth tokens, kept in the state directory: at most 5 live tokens per client and user,
//! so a token pair is obtained once, stored (0600, written atomically), reused, and refreshed
//! before it expires — never minted per run. The file is locked while a run reads or changes
//! it, so two runs at once neither corrupt it nor refresh the same pair twice (a refresh kills
//! the old access token).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use zakaz_core::Secret;
use zakaz_core::error::ConfigError;
use zakaz_core::http::{HttpClient, body_excerpt};
use zakaz_core::state::{Lock, write_private};

/// A token is refreshed when it has less than this left (VK's lifetime is a day).
const REFRESH_AHEAD_SECS: i64 = 3600;

pub const FILE: &str = "vk_ads_tokens.json";
/// Held while a run reads or changes [`FILE`].
pub const LOCK_FILE: &str = "vk_ads_tokens.lock";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Pair {
    pub access_token: String,
    pub refresh_token: String,
    /// Unix seconds.
    pub expires_at: i64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    /// `<client id>/<account>` → its pair (`account` is `""` for the client itself).
    tokens: BTreeMap<String, Pair>,
}

/// What happened to the token of a run (for the journal and the tests).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TokenEvents {
    pub minted: u32,
    pub refreshed: u32,
    pub limit_recoveries: u32,
}

/// The OAuth side of one VK client.
pub struct Tokens {
    http: HttpClient,
    base: String,
    client_id: String,
    secret: Secret,
    path: PathBuf,
    pub events: std::sync::Mutex<TokenEvents>,
    /// Pairs this run holds already: the file is locked and read once per account, not for
    /// every API call.
    held: std::sync::Mutex<BTreeMap<String, Pair>>,
}

/// Why the API refused a token (`code` of a 401).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// `expired_token`: refresh it.
    Expired,
    /// `invalid_token`: get a new one.
    Invalid,
}

impl Tokens {
    pub fn new(http: HttpClient, base: &str, client_id: &str, secret: Secret, dir: &Path) -> Self {
        Tokens {
            http,
            base: base.to_owned(),
            client_id: client_id.to_owned(),
            secret,
            path: dir.join(FILE),
            events: Default::default(),
            held: Default::default(),
        }
    }

    fn key(&self, account: &str) -> String {
        format!("{}/{account}", self.client_id)
    }

    async fn lock(&self) -> anyhow::Result<Lock> {
        let path = self.path.clone();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| {
                ConfigError(format!(
                    "cannot create the state directory `{}` (setting `VK_ADS_STATE_DIR`): {e}",
                    dir.display()
                ))
            })?;
        }
        tokio::task::spawn_blocking(move || Lock::acquire(&path)).await?
    }

    fn read(&self) -> File {
        // A missing or unreadable file means no token yet: one is obtained (and the limit
        // path recovers if old ones are still alive).
        std::fs::read(&self.path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    fn write(&self, file: &File) -> anyhow::Result<()> {
        write_private(&self.path, &serde_json::to_vec_pretty(file)?)
            .map_err(|e| ConfigError(format!("{e:#} (setting `VK_ADS_STATE_DIR`)")).into())
    }

    /// A live access token for `account`: the stored one, refreshed if it expires within
    /// the hour, or a new one.
    pub async fn access(&self, account: &str, now: i64) -> anyhow::Result<String> {
        let key = self.key(account);
        if let Some(p) = self.held.lock().unwrap().get(&key)
            && p.expires_at - now > REFRESH_AHEAD_SECS
        {
            return Ok(p.access_token.clone());
        }
        let _lock = self.lock().await?;
        let mut file = self.read();
        let pair = match file.tokens.get(&key) {
            Some(p) if p.expires_at - now > REFRESH_AHEAD_SECS => {
                self.held.lock().unwrap().insert(key, p.clone());
                return Ok(p.access_token.clone());
            }
            Some(p) => match self.refresh(p, now).await? {
                Some(fresh) => fresh,
                None => self.mint(account, now).await?,
            },
            None => self.mint(account, now).await?,
        };
        let access = pair.access_token.clone();
        file.tokens.insert(key.clone(), pair.clone());
        self.write(&file)?;
        self.held.lock().unwrap().insert(key, pair);
        Ok(access)
    }

    /// The API refused `used`: refresh or replace it, unless another run already did (the
    /// file then holds a different token, which is returned).
    pub async fn replace(
        &self,
        account: &str,
        used: &str,
        why: Refused,
        now: i64,
    ) -> anyhow::Result<String> {
        let _lock = self.lock().await?;
        let mut file = self.read();
        let key = self.key(account);
        let stored = file.tokens.get(&key).cloned();
        if let Some(p) = &stored
            && p.access_token != used
        {
            self.held.lock().unwrap().insert(key, p.clone());
            return Ok(p.access_token.clone());
        }
        let fresh = match (why, stored) {
            (Refused::Expired, Some(p)) => match self.refresh(&p, now).await? {
                Some(fresh) => fresh,
                None => self.mint(account, now).await?,
            },
            _ => self.mint(account, now).await?,
        };
        let access = fresh.access_token.clone();
        file.tokens.insert(key.clone(), fresh.clone());
        self.write(&file)?;
        self.held.lock().unwrap().insert(key, fresh);
        Ok(access)
    }

    fn url(&self, path: &str) -> String {
        format!("{}/api/v2/oauth2/{path}", self.base)
    }

    /// `Ok(None)`: the refresh token is dead; a new pair is needed.
    async fn refresh(&self, pair: &Pair, now: i64) -> anyhow::Result<Option<Pair>> {
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", pair.refresh_token.as_str()),
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.secret.expose()),
        ];
        let url = self.url("token.json");
        let response = self.http.send(|c| c.post(&url).form(&form)).await?;
        let status = response.status().as_u16();
        let text = zakaz_core::http::text_limited("VK Ads", response, ANSWER_LIMIT).await?;
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        match status {
            200 => {
                self.events.lock().unwrap().refreshed += 1;
                tracing::info!("refreshed the VK Ads access token");
                Ok(Some(parse_pair(&body, Some(&pair.refresh_token), now)?))
            }
            401 | 400 if oauth_error(&body) == "invalid_client" => Err(bad_client()),
            // Only a refresh token VK says is dead is replaced: a new pair on a passing error
            // (a 503, a 429) would leave the old one alive and walk towards the 5-token limit.
            400 | 401 => {
                tracing::warn!(
                    status,
                    "VK Ads refused to refresh the token ({}): obtaining a new one",
                    oauth_error(&body)
                );
                Ok(None)
            }
            _ => anyhow::bail!(
                "VK Ads could not refresh the token: HTTP {status}: {}",
                body_excerpt(&text)
            ),
        }
    }

    /// A new token pair. At VK's limit of 5 live tokens, the client's tokens are deleted and
    /// the request is made once more.
    async fn mint(&self, account: &str, now: i64) -> anyhow::Result<Pair> {
        let mut form = vec![
            ("client_id", self.client_id.clone()),
            ("client_secret", self.secret.expose().to_owned()),
        ];
        if account.is_empty() {
            form.push(("grant_type", "client_credentials".into()));
        } else {
            form.push(("grant_type", "agency_client_credentials".into()));
            form.push(("agency_client_name", account.to_owned()));
        }
        let url = self.url("token.json");
        for attempt in 0..2 {
            let response = self.http.send(|c| c.post(&url).form(&form)).await?;
            let status = response.status().as_u16();
            let text = zakaz_core::http::text_limited("VK Ads", response, ANSWER_LIMIT).await?;
            let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let error = oauth_error(&body);
            match status {
                200 => {
                    self.events.lock().unwrap().minted += 1;
                    tracing::info!(
                        account,
                        "obtained a VK Ads token pair (stored for later runs)"
                    );
                    return parse_pair(&body, None, now);
                }
                403 if attempt == 0 && is_token_limit(&body) => {
                    tracing::warn!(
                        account,
                        "VK Ads has 5 live tokens for this client (a lost state file?): deleting them and asking once more"
                    );
                    self.delete_all(account).await?;
                    self.events.lock().unwrap().limit_recoveries += 1;
                }
                401 | 400 if error == "invalid_client" => return Err(bad_client()),
                _ => {
                    let who = if account.is_empty() {
                        String::new()
                    } else {
                        format!(" for agency client `{account}` (setting `VK_ADS_AGENCY_CLIENTS`)")
                    };
                    anyhow::bail!(
                        "VK Ads refused a token{who}: HTTP {status}: {}",
                        body_excerpt(&text)
                    );
                }
            }
        }
        anyhow::bail!("VK Ads still refuses a token after its tokens were deleted")
    }

    async fn delete_all(&self, account: &str) -> anyhow::Result<()> {
        let mut form = vec![
            ("client_id", self.client_id.clone()),
            ("client_secret", self.secret.expose().to_owned()),
        ];
        if !account.is_empty() {
            form.push(("username", account.to_owned()));
        }
        let url = self.url("token/delete.json");
        self.http.send_ok(|c| c.post(&url).form(&form)).await?;
        Ok(())
    }
}

fn bad_client() -> anyhow::Error {
    ConfigError(
        "VK Ads rejected the client (invalid_client): check `VK_ADS_CLIENT_ID` and `VK_ADS_CLIENT_SECRET`"
            .into(),
    )
    .into()
}

fn oauth_error(body: &Value) -> &str {
    body.get("error")
        .and_then(Value::as_str)
        .or_else(|| body.get("code").and_then(Value::as_str))
        .unwrap_or_default()
}

/// VK's answer at the 5-token limit: `{"error": "token_limit_exceeded", ...}` (some answers
/// carry the code as `code`).
fn is_token_limit(body: &Value) -> bool {
    oauth_error(body) == "token_limit_exceeded"
}

/// A token answer is a few hundred bytes.
const ANSWER_LIMIT: usize = 64 * 1024;

/// `expires_in` is a string or a number.
/// The longest token lifetime believed (VK's are one day).
const MAX_LIFETIME_SECS: i64 = 30 * 86_400;
/// The shortest: a token is refreshed [`REFRESH_AHEAD_SECS`] before it ends, so a lifetime
/// shorter than that would refresh (and kill the last access token) on every call; one that
/// really ends sooner is refreshed on its `expired_token`.
const MIN_LIFETIME_SECS: i64 = 2 * REFRESH_AHEAD_SECS;

fn parse_pair(body: &Value, old_refresh: Option<&str>, now: i64) -> anyhow::Result<Pair> {
    let access = body
        .get("access_token")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow::anyhow!("VK Ads token answer has no `access_token`"))?;
    let refresh = body
        .get("refresh_token")
        .and_then(Value::as_str)
        .or(old_refresh)
        .unwrap_or_default();
    let expires_in = match body.get("expires_in") {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    }
    .unwrap_or(86_400)
    // VK's tokens live a day; an absurd lifetime (`i64::MAX` was seen from a proxy) is held
    // to a month so the arithmetic stays sound and the token is refreshed anyway.
    .clamp(MIN_LIFETIME_SECS, MAX_LIFETIME_SECS);
    Ok(Pair {
        access_token: access.to_owned(),
        refresh_token: refresh.to_owned(),
        expires_at: now.saturating_add(expires_in),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_absurd_lifetime_is_clamped_not_overflowed() {
        for huge in [
            serde_json::json!(9_223_372_036_854_775_807i64),
            serde_json::json!("9223372036854775807"),
        ] {
            let p = parse_pair(
                &serde_json::json!({"access_token": "a", "expires_in": huge}),
                None,
                1_800_000_000,
            )
            .unwrap();
            assert_eq!(p.expires_at, 1_800_000_000 + MAX_LIFETIME_SECS);
        }
        let negative = parse_pair(
            &serde_json::json!({"access_token": "a", "expires_in": -5}),
            None,
            100,
        )
        .unwrap();
        assert_eq!(negative.expires_at, 100 + MIN_LIFETIME_SECS);
    }

    #[test]
    fn expires_in_as_string_or_number() {
        let a = parse_pair(
            &serde_json::json!({"access_token": "a", "refresh_token": "r", "expires_in": "86400"}),
            None,
            100,
        )
        .unwrap();
        assert_eq!(a.expires_at, 86_500);
        let b = parse_pair(
            &serde_json::json!({"access_token": "a", "expires_in": 60}),
            Some("old"),
            0,
        )
        .unwrap();
        // A lifetime shorter than the refresh margin is held at twice the margin.
        assert_eq!(
            (b.expires_at, b.refresh_token.as_str()),
            (MIN_LIFETIME_SECS, "old")
        );
    }
}

//! The Gmail API v1 as the loader uses it: an access token from the refresh-token grant
//! (never interactive), message search paged by `nextPageToken`, full messages, attachments by
//! the id of the fetch that just returned them, labels.

use serde_json::{Value, json};
use zakaz_core::Secret;
use zakaz_core::error::ConfigError;
use zakaz_core::http::{HttpClient, body_excerpt};

pub struct Gmail {
    http: HttpClient,
    base: String,
    token_url: String,
    client_id: String,
    client_secret: Secret,
    refresh_token: Secret,
    access: tokio::sync::Mutex<Option<String>>,
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
        }
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
        let text = response.text().await.unwrap_or_default();
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

    /// A call under `/gmail/v1/users/me`; a 401 gets one fresh token.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let mut token = self.token(None).await?;
        for attempt in 0..2 {
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
            let text = response.text().await.unwrap_or_default();
            if status == 401 && attempt == 0 {
                token = self.token(Some(&token)).await?;
                continue;
            }
            if status != 200 {
                let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                let e = &v["error"];
                anyhow::bail!(
                    "Gmail: {method} {path} answered HTTP {status} {} ({}): {}",
                    e["status"].as_str().unwrap_or_default(),
                    e["errors"][0]["reason"].as_str().unwrap_or_default(),
                    body_excerpt(e["message"].as_str().unwrap_or(&text))
                );
            }
            return serde_json::from_str(&text).map_err(|e| {
                anyhow::anyhow!(
                    "Gmail answered invalid JSON for {path} ({e}); the answer may have been cut off"
                )
            });
        }
        anyhow::bail!("Gmail refused a fresh access token for {path}")
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

//! Delivery channels. Any subset may be configured; one failing never stops the others.
//! A channel that rejects a setting (Telegram 401, an SMTP login refused) is tried no more in
//! this run and is reported as the setting's fault (the run exits 78).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use clap::Args;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde_json::{Value, json};
use zakaz_core::Secret;
use zakaz_core::error::config_error;
use zakaz_core::http::{HttpArgs, HttpClient, HttpError, body_excerpt};

/// Telegram's limit for one message.
pub const TELEGRAM_LIMIT: usize = 4096;
const TELEGRAM_ATTEMPTS: u32 = 5;

/// Telegram's share of the alert unit's timeout, for every notice of a run together: the rest
/// stays for e-mail and the journal.
fn telegram_budget() -> Duration {
    zakaz_core::jobs::get("alerts")
        .timeout()
        .map_or(Duration::from_secs(60), |t| t / 2)
}

#[derive(Debug, Clone, Args)]
pub struct ChannelArgs {
    /// Telegram Bot API base URL.
    #[arg(
        long,
        env = "TELEGRAM_API_URL",
        default_value = "https://api.telegram.org",
        value_parser = zakaz_core::http::parse_base_url
    )]
    pub telegram_api_url: String,
    /// Telegram bot token (secret); Telegram is used when it and the chat id are set.
    #[arg(long, env = "TELEGRAM_BOT_TOKEN", hide_env_values = true)]
    pub telegram_bot_token: Option<Secret>,
    /// Telegram chat id to notify (e.g. -100123…).
    #[arg(long, env = "TELEGRAM_CHAT_ID")]
    pub telegram_chat_id: Option<String>,
    /// SMTP server; e-mail is used when it and `ALERT_EMAIL_TO` are set.
    #[arg(long, env = "SMTP_HOST")]
    pub smtp_host: Option<String>,
    /// SMTP port.
    #[arg(long, env = "SMTP_PORT", default_value_t = 587, value_parser = clap::value_parser!(u16).range(1..))]
    pub smtp_port: u16,
    /// SMTP user (optional).
    #[arg(long, env = "SMTP_USER")]
    pub smtp_user: Option<String>,
    /// SMTP password (secret).
    #[arg(long, env = "SMTP_PASSWORD", hide_env_values = true)]
    pub smtp_password: Option<Secret>,
    /// Upgrade the SMTP connection with STARTTLS (required unless false).
    #[arg(long, env = "SMTP_STARTTLS", default_value_t = true, action = clap::ArgAction::Set)]
    pub smtp_starttls: bool,
    /// Recipients, comma-separated.
    #[arg(long, env = "ALERT_EMAIL_TO")]
    pub alert_email_to: Option<String>,
    /// Sender address.
    #[arg(
        long,
        env = "ALERT_EMAIL_FROM",
        default_value = "zakaz-alerts@localhost"
    )]
    pub alert_email_from: String,
    /// Language of the alert texts: `ru` (the team on duty reads Russian) or `en`.
    #[arg(long, env = "ALERTS_LANGUAGE", value_enum, default_value_t = Language::Ru)]
    pub alerts_language: Language,
}

/// The language alerts are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Language {
    Ru,
    En,
}

impl Language {
    /// The text in this language, of an (English, Russian) pair.
    pub fn pick<T>(self, en: T, ru: T) -> T {
        match self {
            Language::En => en,
            Language::Ru => ru,
        }
    }

    /// `FIRING`, `REMINDER`, `RESOLVED` as people read them.
    pub fn kind(self, kind: &str) -> &'static str {
        match (self, kind) {
            (Language::Ru, "FIRING") => "ТРЕВОГА",
            (Language::Ru, "REMINDER") => "НАПОМИНАНИЕ",
            (Language::Ru, "RESOLVED") => "РЕШЕНО",
            (_, "FIRING") => "FIRING",
            (_, "REMINDER") => "REMINDER",
            (_, "RESOLVED") => "RESOLVED",
            _ => "ALERT",
        }
    }

    pub fn severity(self, severity: &str) -> &'static str {
        match (self, severity) {
            (Language::Ru, "critical") => "критично",
            (Language::Ru, "error") => "ошибка",
            (Language::Ru, "warning") => "внимание",
            (Language::Ru, "info") => "инфо",
            (_, "critical") => "critical",
            (_, "error") => "error",
            (_, "warning") => "warning",
            _ => "info",
        }
    }
}

/// What to send.
#[derive(Debug, Clone)]
pub struct Notice {
    /// `FIRING`, `REMINDER` or `RESOLVED` (shown in the notice's language).
    pub kind: &'static str,
    pub severity: &'static str,
    pub title: String,
    pub message: String,
}

/// Escape text for Telegram's HTML mode.
pub fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The Telegram text: escaped, and cut to the limit without breaking an entity.
pub fn telegram_text(n: &Notice, lang: Language) -> String {
    telegram_text_with(n, lang, None)
}

/// [`telegram_text`] with an operator's note (plain text) before the message.
pub fn telegram_text_with(n: &Notice, lang: Language, note: Option<&str>) -> String {
    let icon = match n.kind {
        "RESOLVED" => "✅",
        _ if n.severity == "critical" => "🔴",
        _ => "🟡",
    };
    let head = format!(
        "{icon} <b>{} {}</b>\n",
        lang.kind(n.kind),
        html_escape(&n.title)
    );
    let mut body = html_escape(&n.message);
    if let Some(note) = note {
        body = format!("⚠️ {}\n\n{body}", html_escape(note));
    }
    let room = TELEGRAM_LIMIT - head.chars().count();
    if body.chars().count() > room {
        let mut cut: String = body.chars().take(room - 1).collect();
        // Never leave half an entity such as `&am`.
        if let Some(amp) = cut.rfind('&')
            && !cut[amp..].contains(';')
        {
            cut.truncate(amp);
        }
        cut.push('…');
        body = cut;
    }
    head + &body
}

pub struct Channels {
    telegram: Option<Telegram>,
    email: Option<Email>,
    pub language: Language,
}

struct Telegram {
    http: HttpClient,
    url: String,
    /// Where messages go: `TELEGRAM_CHAT_ID`, or the supergroup it became.
    chat: Mutex<Chat>,
    /// Where a migration is remembered (the alerts' state directory).
    state_dir: PathBuf,
    /// When Telegram's share of this run's time is used up.
    deadline: Instant,
    /// The timeout of one request (`HTTP_TIMEOUT_SECS`), within the deadline.
    request_timeout: Duration,
}

struct Email {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
}

/// The chat messages go to.
#[derive(Debug, Clone)]
struct Chat {
    /// As `TELEGRAM_CHAT_ID` says.
    configured: String,
    /// The id sent: the configured one, or its supergroup's after a migration.
    id: Value,
}

impl Chat {
    /// What the operator should do, while the setting names a chat that moved.
    fn stale_setting_note(&self, lang: Language) -> Option<String> {
        let id = self
            .id
            .as_str()
            .map_or_else(|| self.id.to_string(), str::to_owned);
        (id != self.configured).then(|| match lang {
            Language::En => format!(
                "TELEGRAM_CHAT_ID is {}, but that group became the supergroup {}: set TELEGRAM_CHAT_ID={}",
                self.configured, self.id, self.id
            ),
            Language::Ru => format!(
                "TELEGRAM_CHAT_ID = {}, но эта группа стала супергруппой {}: укажите TELEGRAM_CHAT_ID={}",
                self.configured, self.id, self.id
            ),
        })
    }
}

/// The record of a migrated chat in the state directory.
pub const CHAT_FILE: &str = "telegram-chat.json";

#[derive(serde::Serialize, serde::Deserialize)]
struct ChatRecord {
    configured: String,
    migrated_to: i64,
}

/// The outcome of one delivery: which channels took it, which failed and why.
#[derive(Debug, Default, Clone)]
pub struct Delivery {
    pub delivered: Vec<&'static str>,
    pub errors: Vec<String>,
    /// Settings a channel rejected (one line each, naming the setting): the run exits 78.
    pub rejected_settings: Vec<String>,
    /// What the operator should know (a chat that moved).
    pub notes: Vec<String>,
}

/// How a Telegram send ended.
enum Sent {
    Confirmed,
    /// The request went out but no answer came: Telegram may have accepted it. Counted as
    /// delivered, so that no retry sends it twice.
    Unconfirmed(String),
}

impl Channels {
    /// `state_dir` keeps what a channel learnt (a Telegram group that became a supergroup).
    pub fn new(args: &ChannelArgs, http: &HttpArgs, state_dir: &Path) -> anyhow::Result<Channels> {
        // An empty variable (a blank line in an env file) counts as unset.
        let set = |v: &Option<String>| v.clone().filter(|s| !s.trim().is_empty());
        let token = args.telegram_bot_token.clone().filter(|t| !t.is_empty());
        let (chat, smtp_host, email_to) = (
            set(&args.telegram_chat_id),
            set(&args.smtp_host),
            set(&args.alert_email_to),
        );
        let telegram = match (&token, &chat) {
            (Some(token), Some(chat)) => {
                // Telegram's 429 carries `retry_after` in the body, and a POST must not be
                // repeated blindly: this client makes one attempt, `send_telegram` decides.
                let request_timeout = Duration::from_secs(http.http_timeout_secs);
                let http = HttpClient::new(
                    "Telegram",
                    &HttpArgs {
                        http_max_attempts: 1,
                        ..http.clone()
                    },
                )?;
                let configured = chat.trim().to_owned();
                let mut id = configured
                    .parse::<i64>()
                    .map(Value::from)
                    .unwrap_or_else(|_| Value::from(configured.clone()));
                // A migration an earlier run learnt, while the setting still names the old
                // group.
                if let Some(record) = std::fs::read_to_string(state_dir.join(CHAT_FILE))
                    .ok()
                    .and_then(|t| serde_json::from_str::<ChatRecord>(&t).ok())
                    .filter(|r| r.configured == configured)
                {
                    id = Value::from(record.migrated_to);
                }
                let chat = Chat { configured, id };
                if let Some(note) = chat.stale_setting_note(args.alerts_language) {
                    tracing::warn!("{note}");
                }
                Some(Telegram {
                    http,
                    url: format!(
                        "{}/bot{}/sendMessage",
                        args.telegram_api_url.trim_end_matches('/'),
                        token.expose()
                    ),
                    chat: Mutex::new(chat),
                    state_dir: state_dir.to_owned(),
                    deadline: Instant::now() + telegram_budget(),
                    request_timeout,
                })
            }
            (Some(_), None) | (None, Some(_)) => {
                return Err(config_error(
                    "set both `TELEGRAM_BOT_TOKEN` and `TELEGRAM_CHAT_ID`, or neither",
                ));
            }
            (None, None) => None,
        };
        let email = match (&smtp_host, &email_to) {
            (Some(host), Some(to)) => {
                let mut builder = if args.smtp_starttls {
                    AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host)
                        .map_err(|e| config_error(format!("`SMTP_HOST` {host}: {e}")))?
                } else {
                    AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
                };
                builder = builder
                    .port(args.smtp_port)
                    .timeout(Some(Duration::from_secs(30)));
                if let Some(user) = &args.smtp_user {
                    let password = args
                        .smtp_password
                        .as_ref()
                        .map(|p| p.expose().to_owned())
                        .unwrap_or_default();
                    builder = builder.credentials(Credentials::new(user.clone(), password));
                }
                let parse = |s: &str, setting: &str| {
                    s.trim()
                        .parse::<Mailbox>()
                        .map_err(|e| config_error(format!("`{setting}` `{}`: {e}", s.trim())))
                };
                Some(Email {
                    transport: builder.build(),
                    from: parse(&args.alert_email_from, "ALERT_EMAIL_FROM")?,
                    to: to
                        .split(',')
                        .filter(|s| !s.trim().is_empty())
                        .map(|s| parse(s, "ALERT_EMAIL_TO"))
                        .collect::<Result<_, _>>()?,
                })
            }
            (Some(_), None) | (None, Some(_)) => {
                return Err(config_error(
                    "set both `SMTP_HOST` and `ALERT_EMAIL_TO`, or neither",
                ));
            }
            (None, None) => None,
        };
        Ok(Channels {
            telegram,
            email,
            language: args.alerts_language,
        })
    }

    pub fn names(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.telegram.is_some() {
            out.push("telegram");
        }
        if self.email.is_some() {
            out.push("email");
        }
        out
    }

    /// Send to every configured channel; with none configured the log is the channel.
    pub async fn deliver(&self, notice: &Notice) -> Delivery {
        let mut d = Delivery::default();
        let failed = |d: &mut Delivery, channel: &str, e: anyhow::Error| {
            let line = zakaz_core::error::one_line(&e);
            if zakaz_core::error::exit_code_for(&e) == zakaz_core::error::exit::CONFIG {
                d.rejected_settings.push(line.clone());
            }
            d.errors.push(format!("{channel}: {line}"));
        };
        if let Some(t) = &self.telegram {
            match send_telegram(t, notice, self.language, &mut d.notes).await {
                Ok(Sent::Confirmed) => d.delivered.push("telegram"),
                Ok(Sent::Unconfirmed(why)) => {
                    tracing::warn!("Telegram may have received the message, not resending: {why}");
                    d.delivered.push("telegram?");
                }
                Err(e) => failed(&mut d, "telegram", e),
            }
        }
        if let Some(e) = &self.email {
            match send_email(e, notice, self.language).await {
                Ok(()) => d.delivered.push("email"),
                Err(err) => failed(&mut d, "email", err),
            }
        }
        if self.telegram.is_none() && self.email.is_none() {
            tracing::warn!(
                "{} {}: {} (no channel configured)",
                notice.kind,
                notice.title,
                notice.message
            );
            d.delivered.push("log");
        }
        for err in &d.errors {
            tracing::error!("alert delivery failed: {err}");
        }
        d
    }
}

/// The wait Telegram asks for: `parameters.retry_after`, or the number in the description.
pub fn telegram_retry_after(body: &Value) -> Option<u64> {
    body.pointer("/parameters/retry_after")
        .and_then(Value::as_u64)
        .or_else(|| {
            body.get("description")?
                .as_str()?
                .rsplit(' ')
                .next()?
                .parse()
                .ok()
        })
}

impl Telegram {
    fn chat(&self) -> Chat {
        self.chat.lock().expect("chat lock").clone()
    }

    /// The group became a supergroup: send there from now on, remember it for later runs
    /// (while `TELEGRAM_CHAT_ID` still names the old group), and tell the operator.
    fn migrate(&self, to: i64, lang: Language) -> String {
        let mut chat = self.chat.lock().expect("chat lock");
        chat.id = Value::from(to);
        let record = ChatRecord {
            configured: chat.configured.clone(),
            migrated_to: to,
        };
        let saved = serde_json::to_vec(&record)
            .map_err(anyhow::Error::from)
            .and_then(|bytes| {
                zakaz_core::state::write_private(&self.state_dir.join(CHAT_FILE), &bytes)
            });
        if let Err(e) = saved {
            tracing::warn!(
                "cannot remember the Telegram migration: {}",
                zakaz_core::error::one_line(&e)
            );
        }
        let note = chat.stale_setting_note(lang).unwrap_or_default();
        tracing::warn!("Telegram: {note}");
        note
    }
}

async fn send_telegram(
    t: &Telegram,
    n: &Notice,
    lang: Language,
    notes: &mut Vec<String>,
) -> anyhow::Result<Sent> {
    let body = |chat: &Chat| {
        json!({
            "chat_id": chat.id,
            "text": telegram_text_with(n, lang, chat.stale_setting_note(lang).as_deref()),
            "parse_mode": "HTML",
            "link_preview_options": {"is_disabled": true},
        })
    };
    for attempt in 1..=TELEGRAM_ATTEMPTS {
        let chat = t.chat();
        if let Some(note) = chat.stale_setting_note(lang)
            && !notes.contains(&note)
        {
            notes.push(note);
        }
        let body = body(&chat);
        let left = t.deadline.saturating_duration_since(Instant::now());
        anyhow::ensure!(
            !left.is_zero(),
            "no time left for Telegram in this run (its share of the unit's timeout is {} s)",
            telegram_budget().as_secs()
        );
        let timeout = t.request_timeout.min(left);
        let response = match t
            .http
            .send(|c| c.post(&t.url).json(&body).timeout(timeout))
            .await
        {
            Ok(r) => r,
            // Never connected: Telegram never saw it, so sending again cannot double it.
            Err(HttpError::Network {
                connect: true,
                reason,
                ..
            }) => {
                let wait = Duration::from_secs(1 << (attempt - 1).min(5));
                anyhow::ensure!(
                    attempt < TELEGRAM_ATTEMPTS && wait < left,
                    "Telegram is not reachable: {reason}"
                );
                tracing::warn!(
                    attempt,
                    wait_secs = wait.as_secs(),
                    "Telegram is not reachable, retrying: {reason}"
                );
                tokio::time::sleep(wait).await;
                continue;
            }
            Err(HttpError::Network { reason, .. }) => return Ok(Sent::Unconfirmed(reason)),
            Err(e) => return Err(e.into()),
        };
        let status = response.status().as_u16();
        let text = match zakaz_core::http::text_limited(
            "Telegram",
            response,
            zakaz_core::http::MAX_ERROR_BYTES,
        )
        .await
        {
            Ok(text) => text,
            Err(e) => return Ok(Sent::Unconfirmed(format!("the answer was cut off: {e}"))),
        };
        let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status == 200 && answer["ok"] == true {
            return Ok(Sent::Confirmed);
        }
        if status == 200 && answer.is_null() {
            return Ok(Sent::Unconfirmed("the answer was not JSON".into()));
        }
        // A group that became a supergroup: resend there at once.
        if let Some(to) = answer
            .pointer("/parameters/migrate_to_chat_id")
            .and_then(Value::as_i64)
            && Some(to) != chat.id.as_i64()
        {
            let note = t.migrate(to, lang);
            if !notes.contains(&note) {
                notes.push(note);
            }
            continue;
        }
        let wait = match status {
            429 => Duration::from_secs(telegram_retry_after(&answer).unwrap_or(1)),
            500..=599 => Duration::from_secs(1 << attempt.min(5)),
            401 => {
                return Err(config_error(format!(
                    "Telegram rejected the bot token (HTTP 401 {}): check `TELEGRAM_BOT_TOKEN`",
                    answer["description"].as_str().unwrap_or("Unauthorized")
                )));
            }
            // The chat does not exist, or the bot is not (or no longer) in it: the setting.
            400 | 403
                if status == 403
                    || answer["description"]
                        .as_str()
                        .is_some_and(|d| d.contains("chat not found")) =>
            {
                return Err(config_error(format!(
                    "Telegram cannot deliver to the chat (HTTP {status} {}): check `TELEGRAM_CHAT_ID` and that the bot is a member",
                    body_excerpt(answer["description"].as_str().unwrap_or_default())
                )));
            }
            _ => anyhow::bail!("Telegram answered HTTP {status}: {}", body_excerpt(&text)),
        };
        let left = t.deadline.saturating_duration_since(Instant::now());
        anyhow::ensure!(
            wait < left,
            "Telegram asks to wait {} s, more than the {} s left for it in this run",
            wait.as_secs(),
            left.as_secs()
        );
        if attempt < TELEGRAM_ATTEMPTS {
            tracing::warn!(
                status,
                attempt,
                wait_secs = wait.as_secs(),
                "Telegram asks to wait; retrying"
            );
            tokio::time::sleep(wait).await;
        }
    }
    anyhow::bail!("Telegram did not accept the message after {TELEGRAM_ATTEMPTS} attempts")
}

async fn send_email(e: &Email, n: &Notice, lang: Language) -> anyhow::Result<()> {
    let mut builder = Message::builder().from(e.from.clone()).subject(format!(
        "[zakaz] {} {}",
        lang.kind(n.kind),
        n.title
    ));
    for to in &e.to {
        builder = builder.to(to.clone());
    }
    let text = format!(
        "{} {} ({})\n\n{}\n",
        lang.kind(n.kind),
        n.title,
        lang.severity(n.severity),
        n.message
    );
    // Quoted-printable keeps Russian text readable in a raw mailbox (base64 would not).
    let body = lettre::message::Body::new_with_encoding(
        text,
        lettre::message::header::ContentTransferEncoding::QuotedPrintable,
    )
    .map_err(|_| anyhow::anyhow!("the alert's text cannot be encoded"))?;
    let message = builder.body(body)?;
    e.transport.send(message).await.map_err(|err| {
        // 535 and its kin: the server refused the login, which only a setting can fix.
        let login_refused = err
            .status()
            .is_some_and(|code| code.to_string().starts_with("53"));
        if login_refused {
            config_error(format!(
                "the SMTP server refused the login ({err}): check `SMTP_USER` and `SMTP_PASSWORD`"
            ))
        } else {
            anyhow::anyhow!("SMTP: {err}")
        }
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(message: &str) -> Notice {
        Notice {
            kind: "FIRING",
            severity: "critical",
            title: "qtickets <failed>".into(),
            message: message.into(),
        }
    }

    #[test]
    fn telegram_text_is_escaped_and_bounded() {
        let t = telegram_text(&notice("a < b & c > d"), Language::En);
        assert!(t.contains("qtickets &lt;failed&gt;"));
        assert!(t.ends_with("a &lt; b &amp; c &gt; d"));
        let long = telegram_text(&notice(&"&".repeat(5000)), Language::En);
        assert!(long.chars().count() <= TELEGRAM_LIMIT);
        assert!(long.ends_with("&amp;…"), "no half entity");
    }

    proptest::proptest! {
        /// Whatever Telegram (or something in its place) answers, reading it never panics.
        #[test]
        fn telegram_answers_are_read_totally(
            description in ".{0,40}",
            retry in proptest::prelude::any::<i64>(),
            migrate in proptest::prelude::any::<i64>(),
            shape in 0u8..4,
        ) {
            let answer = match shape {
                0 => json!({"description": description}),
                1 => json!({"parameters": {"retry_after": retry}, "description": description}),
                2 => json!({"parameters": {"migrate_to_chat_id": migrate}}),
                _ => json!([description, retry]),
            };
            let _ = telegram_retry_after(&answer);
            let _ = answer.pointer("/parameters/migrate_to_chat_id").and_then(Value::as_i64);
            let text = telegram_text(&notice(&description), Language::Ru);
            proptest::prop_assert!(text.chars().count() <= TELEGRAM_LIMIT);
        }
    }

    #[test]
    fn retry_after_from_parameters_or_description() {
        assert_eq!(
            telegram_retry_after(&json!({"parameters": {"retry_after": 41}})),
            Some(41)
        );
        assert_eq!(
            telegram_retry_after(&json!({"description": "Too Many Requests: retry after 7"})),
            Some(7)
        );
        assert_eq!(telegram_retry_after(&json!({})), None);
    }
}

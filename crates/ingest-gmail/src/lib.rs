//! `ingest-gmail`: the backup channel — sales reports that QTickets sends by e-mail, read from
//! Gmail into `stg_mail_sales`, so the dashboard has the days the QTickets API could not
//! deliver (`v_sales_daily`: API data wins on every date it covers).
//!
//! A run: an access token from the refresh token; a search (`GMAIL_QUERY`, not yet labelled
//! `GMAIL_PROCESSED_LABEL`, received in the last `GMAIL_LOOKBACK_DAYS` days — windows in
//! epoch seconds; `--since/--until` re-reads a window, processed or not); per message, the
//! report found in a CSV or XLSX attachment (fetched with the id of the fetch that just
//! returned the message) or in an HTML table of the body; every row parsed or reported. A
//! report whose every row parses is written (keyed by message and row, so re-processing
//! changes nothing) and its message labelled; any other is left unlabelled, counted in
//! `stg_mail_failures`, and retried next run — once it has failed `GMAIL_MAX_FAILURES` runs,
//! the run fails naming it, which alerts.

pub mod api;
pub mod mime;
pub mod report;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use clap::Parser;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use zakaz_core::Secret;
use zakaz_core::ads::{Stamp, quote};
use zakaz_core::ch::Ch;
use zakaz_core::cli::{CommonArgs, JobCli, LoaderArgs};
use zakaz_core::http::HttpClient;
use zakaz_core::journal::{Metrics, Outcome, PartialFailure, journaled};
use zakaz_core::time::{DateWindow, MOSCOW, ch_date, ch_datetime};

use crate::api::Gmail;
use crate::report::Parsed;

pub const JOB: &str = "gmail_ingest";

#[derive(Debug, Parser)]
#[command(
    name = "ingest-gmail",
    version,
    about = "Load sales reports sent by e-mail (Gmail, the backup channel) into ClickHouse"
)]
pub struct Cli {
    #[command(flatten)]
    pub base: LoaderArgs,
    #[command(flatten)]
    pub gmail: GmailArgs,

    /// Read and parse the reports, print what would be written; write nothing, label nothing
    /// (needs no ClickHouse).
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct GmailArgs {
    /// Gmail API base URL (the API lives under `/gmail/v1`).
    #[arg(long, env = "GMAIL_API_URL", default_value = "https://gmail.googleapis.com", value_parser = zakaz_core::http::parse_base_url)]
    pub gmail_api_url: String,

    /// Google's OAuth token endpoint.
    #[arg(long, env = "GOOGLE_TOKEN_URL", default_value = "https://oauth2.googleapis.com/token", value_parser = zakaz_core::http::parse_base_url)]
    pub google_token_url: String,

    /// OAuth client id of the Google Cloud project.
    #[arg(long, env = "GMAIL_CLIENT_ID")]
    pub gmail_client_id: String,

    /// OAuth client secret (secret).
    #[arg(long, env = "GMAIL_CLIENT_SECRET", hide_env_values = true)]
    pub gmail_client_secret: Secret,

    /// Refresh token of the mailbox, from a one-time consent for the gmail.modify scope
    /// (secret).
    #[arg(long, env = "GMAIL_REFRESH_TOKEN", hide_env_values = true)]
    pub gmail_refresh_token: Secret,

    /// Which mails are sales reports (Gmail search syntax).
    #[arg(
        long,
        env = "GMAIL_QUERY",
        default_value = "from:qtickets.ru subject:\"Отчёт о продажах\""
    )]
    pub gmail_query: String,

    /// Label given to a message once its report is loaded (created when missing).
    #[arg(long, env = "GMAIL_PROCESSED_LABEL", default_value = "zakaz-processed")]
    pub gmail_processed_label: String,

    /// Days of mail a run searches.
    #[arg(long, env = "GMAIL_LOOKBACK_DAYS", default_value_t = 14, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub gmail_lookback_days: u32,

    /// Runs in a row a message's report may fail to parse before the run fails (and alerts).
    #[arg(long, env = "GMAIL_MAX_FAILURES", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub gmail_max_failures: u32,
}

impl JobCli for Cli {
    fn common(&self) -> &CommonArgs {
        &self.base.common
    }
}

/// One row of `stg_mail_sales`.
#[derive(Debug, Clone, clickhouse::Row, Serialize, Deserialize)]
pub struct MailSaleRow {
    pub report_date: u16,
    pub event_name: String,
    pub city: String,
    pub tickets_sold: u64,
    /// Kopecks (`Decimal(18, 2)`).
    pub revenue: i64,
    pub refunds: i64,
    pub currency: String,
    pub message_id: String,
    pub row_no: u32,
    /// The e-mail's own date: a newer report of a date supersedes an older one by it.
    pub received_at: u32,
    pub loaded_at: u32,
    pub _version: u64,
}

#[derive(Debug, Clone, clickhouse::Row, Serialize, Deserialize)]
struct FailureRow {
    message_id: String,
    attempts: u32,
    last_error: String,
    last_at: u32,
    _version: u64,
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let clock = cli.base.clock.clock();
    let timeout = zakaz_core::jobs::get(JOB)
        .timeout()
        .unwrap_or(Duration::from_secs(300));
    let http = HttpClient::new("Gmail", &cli.base.http)?
        .with_deadline(Instant::now() + timeout.saturating_sub(Duration::from_secs(20)));
    let g = &cli.gmail;
    if g.gmail_client_id.trim().is_empty() {
        return Err(zakaz_core::error::config_error(
            "`GMAIL_CLIENT_ID` is empty",
        ));
    }
    let gmail = Gmail::new(
        http,
        &g.gmail_api_url,
        &g.google_token_url,
        g.gmail_client_id.trim(),
        g.gmail_client_secret.clone(),
        g.gmail_refresh_token.clone(),
    );
    let window = match (cli.base.window.since, cli.base.window.days) {
        (None, None) => None,
        _ => Some(DateWindow::resolve(
            &cli.base.window,
            clock.moscow_today(),
            1,
        )?),
    };
    let query = search_query(g, window, clock.now().timestamp());
    if cli.dry_run {
        let outcome = Loader::new(&gmail, None, g, query).run().await?;
        outcome.print()?;
        return Ok(());
    }
    let ch = Ch::connect(&cli.base.clickhouse).await?;
    zakaz_core::schema::ensure(&ch).await?;
    let job = zakaz_core::jobs::get(JOB);
    let (gmail, ch_ref) = (&gmail, &ch);
    journaled(&ch, job, window, |_run_id| async move {
        Loader::new(gmail, Some(ch_ref), g, query).run().await
    })
    .await?;
    Ok(())
}

/// The search: the configured query and a window in epoch seconds. The default run skips
/// processed mail; a `--since/--until` window reads everything in it again. `after:` starts a
/// second early, so a message stamped exactly at a window's start is found whether the service
/// counts `after:` inclusive or not (`before:` excludes its second either way).
pub fn search_query(args: &GmailArgs, window: Option<DateWindow>, now: i64) -> String {
    let midnight = |d: chrono::NaiveDate| {
        use chrono::TimeZone;
        MOSCOW
            .from_local_datetime(&d.and_hms_opt(0, 0, 0).expect("midnight"))
            .earliest()
            .map_or(0, |t| t.timestamp())
    };
    match window {
        // Gmail writes a label's spaces as hyphens in a search.
        None => format!(
            "{} -label:{} after:{}",
            args.gmail_query,
            args.gmail_processed_label.trim().replace(' ', "-"),
            now - i64::from(args.gmail_lookback_days) * 86_400 - 1
        ),
        Some(w) => format!(
            "{} after:{} before:{}",
            args.gmail_query,
            midnight(w.from) - 1,
            midnight(w.to + chrono::Days::new(1))
        ),
    }
}

/// What one message gave.
enum MessageResult {
    Loaded { rows: usize },
    Failed { reason: String, attempts: u32 },
}

pub struct Loader<'a> {
    gmail: &'a Gmail,
    ch: Option<&'a Ch>,
    args: &'a GmailArgs,
    query: String,
    stamp: Stamp,
}

impl<'a> Loader<'a> {
    pub fn new(gmail: &'a Gmail, ch: Option<&'a Ch>, args: &'a GmailArgs, query: String) -> Self {
        Loader {
            gmail,
            ch,
            args,
            query,
            stamp: Stamp::now(),
        }
    }

    pub async fn run(self) -> anyhow::Result<Outcome> {
        let label = self
            .gmail
            .label_id(&self.args.gmail_processed_label, self.ch.is_some())
            .await?;
        let mut ids = self.gmail.search(&self.query).await?;
        // A page boundary shifting under new mail may list a message twice: once is enough.
        let mut seen = HashSet::new();
        ids.retain(|id| seen.insert(id.clone()));
        let (mut loaded, mut rows) = (0usize, 0usize);
        let mut failures: Vec<(String, String, u32)> = Vec::new();
        for id in &ids {
            match self.message(id, label.as_deref()).await? {
                MessageResult::Loaded { rows: n } => {
                    loaded += 1;
                    rows += n;
                }
                MessageResult::Failed { reason, attempts } => {
                    tracing::warn!(message_id = %id, attempts, "report not loaded, left unlabelled for the next run: {reason}");
                    failures.push((id.clone(), reason, attempts));
                }
            }
        }
        let persistent: Vec<&(String, String, u32)> = failures
            .iter()
            .filter(|(_, _, a)| *a >= self.args.gmail_max_failures)
            .collect();
        let metrics = Metrics::new()
            .with("messages", ids.len())
            .with("messages_loaded", loaded)
            .with("rows", rows)
            .with("messages_failed", failures.len())
            .with(zakaz_core::journal::WARNINGS, failures.len())
            .with("http_requests", self.gmail.requests_made());
        let mut message = format!(
            "{loaded} report mail(s) loaded ({rows} rows) of {} found",
            ids.len()
        );
        if !failures.is_empty() {
            message.push_str(&format!(
                "; {} not loaded (left unlabelled, retried next run): {}",
                failures.len(),
                failures
                    .iter()
                    .map(|(id, reason, a)| format!("message {id} (attempt {a}): {reason}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            ));
        }
        if self.ch.is_none() {
            message = format!("dry run, nothing written or labelled: {message}");
        }
        let outcome = Outcome {
            rows: rows as u64,
            message,
            metrics,
        };
        if persistent.is_empty() {
            return Ok(outcome);
        }
        Err(PartialFailure {
            message: format!(
                "{} report mail(s) failed {} runs in a row ({}): fix the report or label the mail `{}` by hand to skip it; {}",
                persistent.len(),
                self.args.gmail_max_failures,
                persistent.iter().map(|(id, _, _)| id.as_str()).collect::<Vec<_>>().join(", "),
                self.args.gmail_processed_label,
                outcome.message
            ),
            outcome,
        }
        .into())
    }

    async fn message(&self, id: &str, label: Option<&str>) -> anyhow::Result<MessageResult> {
        let msg = self.gmail.message(id).await?;
        let received_at = received_at(&msg);
        let parsed = match self.report(id, &msg).await {
            Ok(p) if p.errors.is_empty() && !p.rows.is_empty() => p,
            Ok(p) if p.errors.is_empty() => {
                return self.failed(id, "the report has no rows".into()).await;
            }
            Ok(p) => {
                let reasons: Vec<String> = p
                    .errors
                    .iter()
                    .map(|e| format!("row {}: {}", e.row_no, e.reason))
                    .collect();
                return self.failed(id, reasons.join("; ")).await;
            }
            Err(e) => return self.failed(id, zakaz_core::error::one_line(&e)).await,
        };
        let rows: Vec<MailSaleRow> = parsed
            .rows
            .iter()
            .map(|r| MailSaleRow {
                report_date: ch_date(r.date),
                event_name: r.event.clone(),
                city: r.city.clone(),
                tickets_sold: r.tickets_sold,
                revenue: r.revenue,
                refunds: r.refunds,
                currency: r.currency.clone(),
                message_id: id.to_owned(),
                row_no: r.row_no,
                received_at,
                loaded_at: self.stamp.loaded_at,
                _version: self.stamp.version,
            })
            .collect();
        if let Some(ch) = self.ch {
            ch.insert_all("stg_mail_sales", &rows).await?;
            self.record_failures(ch, id, 0, "").await?;
            if let Some(label) = label {
                self.gmail.add_label(id, label).await?;
            }
        }
        tracing::info!(message_id = %id, rows = rows.len(), "report mail loaded");
        Ok(MessageResult::Loaded { rows: rows.len() })
    }

    /// The report of a message: a CSV or XLSX attachment, else an HTML table in the body.
    async fn report(&self, id: &str, msg: &Value) -> anyhow::Result<Parsed> {
        let parts = mime::leaves(&msg["payload"])?;
        let is = |p: &mime::Part, ext: &str, mime_type: &str| {
            p.filename.to_lowercase().ends_with(ext) || p.mime == mime_type
        };
        for p in &parts {
            let (csv, xlsx) = (
                is(p, ".csv", "text/csv"),
                is(
                    p,
                    ".xlsx",
                    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                ),
            );
            if !csv && !xlsx {
                continue;
            }
            let bytes = match (&p.data, &p.attachment_id) {
                (Some(d), _) => d.clone(),
                (None, Some(att)) => self.gmail.attachment(id, att).await?,
                (None, None) => anyhow::bail!("attachment `{}` has no data", p.filename),
            };
            let what = |e: anyhow::Error| e.context(format!("attachment `{}`", p.filename));
            return if csv {
                report::csv(&mime::text(&bytes, p.charset.as_deref())).map_err(what)
            } else {
                report::xlsx(&bytes).map_err(what)
            };
        }
        let html = parts
            .iter()
            .find(|p| p.mime == "text/html" && p.data.is_some())
            .ok_or_else(|| anyhow::anyhow!("no CSV or XLSX attachment and no HTML body"))?;
        let text = mime::text(
            html.data.as_deref().unwrap_or_default(),
            html.charset.as_deref(),
        );
        report::html(&text)
    }

    /// Count one more failure of `id` (or clear them with `attempts: 0`).
    async fn failed(&self, id: &str, reason: String) -> anyhow::Result<MessageResult> {
        let attempts = match self.ch {
            Some(ch) => {
                let previous: Vec<u32> = ch
                    .read("mail failures", |c| {
                        let sql = format!(
                            "SELECT attempts FROM stg_mail_failures FINAL WHERE message_id = {}",
                            quote(id)
                        );
                        async move { c.query(&sql).fetch_all::<u32>().await }
                    })
                    .await?;
                let attempts = previous.first().copied().unwrap_or(0) + 1;
                self.record_failures(ch, id, attempts, &reason).await?;
                attempts
            }
            None => 1,
        };
        Ok(MessageResult::Failed { reason, attempts })
    }

    async fn record_failures(
        &self,
        ch: &Ch,
        id: &str,
        attempts: u32,
        reason: &str,
    ) -> anyhow::Result<()> {
        let row = FailureRow {
            message_id: id.to_owned(),
            attempts,
            last_error: reason.chars().take(500).collect(),
            last_at: self.stamp.loaded_at,
            _version: self.stamp.version,
        };
        ch.insert_all("stg_mail_failures", &[row]).await
    }
}

/// The e-mail's own date: its `Date:` header, else when Gmail received it.
fn received_at(msg: &Value) -> u32 {
    let header = msg["payload"]["headers"].as_array().and_then(|hs| {
        hs.iter()
            .find(|h| {
                h["name"]
                    .as_str()
                    .is_some_and(|n| n.eq_ignore_ascii_case("Date"))
            })
            .and_then(|h| h["value"].as_str())
    });
    if let Some(t) = header.and_then(|h| chrono::DateTime::parse_from_rfc2822(h.trim()).ok()) {
        return ch_datetime(&t);
    }
    let ms: i64 = match &msg["internalDate"] {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_i64().unwrap_or(0),
        _ => 0,
    };
    u32::try_from(ms / 1000).unwrap_or(0)
}

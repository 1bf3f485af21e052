//! `ingest-gmail`: the backup channel — sales reports that QTickets sends by e-mail, read from
//! Gmail into `stg_mail_sales`, so the dashboard has the days the QTickets API could not
//! deliver (`v_sales_daily`: API data wins on every date it covers).
//!
//! A run: `GMAIL_QUERY` checked against Gmail's operators; an access token from the refresh
//! token; a search (`GMAIL_QUERY`, not yet labelled `GMAIL_PROCESSED_LABEL`, received in the
//! last `GMAIL_LOOKBACK_DAYS` days — windows in epoch seconds; `--since/--until` re-reads a
//! window, processed or not); per message: its sender checked (From a
//! `GMAIL_TRUSTED_SENDERS` domain that Google's DKIM or SPF check passed, else skipped with a
//! warning), then the report found in a CSV or XLSX attachment (fetched with the id of the
//! fetch that just returned the message) or in an HTML table of the body; every row parsed
//! or reported. A report whose every row parses is written (keyed by message and row, dated
//! by Gmail's `internalDate`, so re-processing changes nothing) and its message labelled; any
//! other is left unlabelled, counted in `stg_mail_failures`, and retried next run — once it
//! has failed `GMAIL_MAX_FAILURES` runs, the run fails naming it, which alerts. Whatever is
//! wrong with one mail (a hostile attachment, a parser panic) is that mail's failure; what is
//! wrong with the world (ClickHouse, the network, credentials, the deadline) ends the run.

pub mod api;
pub mod mime;
pub mod query;
pub mod report;
pub mod trust;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use clap::Parser;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use zakaz_core::Secret;
use zakaz_core::ads::{Stamp, quote};
use zakaz_core::ch::Ch;
use zakaz_core::cli::{CommonArgs, JobCli, LoaderArgs};
use zakaz_core::error::{ConfigError, UnavailableError, config_error, one_line};
use zakaz_core::http::{HttpClient, HttpError};
use zakaz_core::journal::{Metrics, Outcome, PartialFailure, journaled};
use zakaz_core::time::{DateWindow, MOSCOW, ch_date};

use crate::api::{ApiError, GiveUp, Gmail};
use crate::report::{Limits, Parsed};
use crate::trust::Sender;

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

    /// Domains whose report mails are loaded, comma-separated (subdomains count): the From
    /// address must be in one and Google's Authentication-Results must show a DKIM or SPF
    /// pass for it; any other mail is skipped with a warning, neither loaded nor labelled.
    #[arg(long, env = "GMAIL_TRUSTED_SENDERS", default_value = "qtickets.ru")]
    pub gmail_trusted_senders: String,

    /// Largest attachment or mail body read, in bytes; a larger one is that mail's failure
    /// (an XLSX may unpack to 8 times this).
    #[arg(long, env = "GMAIL_MAX_ATTACHMENT_BYTES", default_value_t = Limits::DEFAULT.attachment_bytes as u64, value_parser = clap::value_parser!(u64).range(1024..=256 * 1024 * 1024))]
    pub gmail_max_attachment_bytes: u64,

    /// Most cells a report's table may hold (for an XLSX sheet: the rows × columns its cells
    /// span); a larger one is that mail's failure.
    #[arg(long, env = "GMAIL_MAX_SHEET_CELLS", default_value_t = Limits::DEFAULT.table_cells as u64, value_parser = clap::value_parser!(u64).range(100..=50_000_000))]
    pub gmail_max_sheet_cells: u64,

    /// Most data rows of one report; a longer one is that mail's failure.
    #[arg(long, env = "GMAIL_MAX_REPORT_ROWS", default_value_t = Limits::DEFAULT.rows as u64, value_parser = clap::value_parser!(u64).range(1..=5_000_000))]
    pub gmail_max_report_rows: u64,
}

impl GmailArgs {
    pub fn limits(&self) -> Limits {
        let size = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        Limits {
            attachment_bytes: size(self.gmail_max_attachment_bytes),
            table_cells: size(self.gmail_max_sheet_cells),
            rows: size(self.gmail_max_report_rows),
        }
    }
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
    /// When Gmail received the mail (`internalDate`, never after the run's now; the `Date:`
    /// header is the sender's claim): a newer report of a date supersedes an older one by it.
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
    let g = &cli.gmail;
    if g.gmail_client_id.trim().is_empty() {
        return Err(config_error("`GMAIL_CLIENT_ID` is empty"));
    }
    // Before the first request: a typo in the query would find nothing, silently.
    query::check(&g.gmail_query).map_err(config_error)?;
    let trusted = trust::trusted_senders(&g.gmail_trusted_senders).map_err(config_error)?;
    let limits = g.limits();
    let timeout = zakaz_core::jobs::get(JOB)
        .timeout()
        .unwrap_or(Duration::from_secs(300));
    let deadline = Instant::now() + timeout.saturating_sub(Duration::from_secs(20));
    let http = HttpClient::new("Gmail", &cli.base.http)?.with_deadline(deadline);
    let gmail = Gmail::new(
        http,
        &g.gmail_api_url,
        &g.google_token_url,
        g.gmail_client_id.trim(),
        g.gmail_client_secret.clone(),
        g.gmail_refresh_token.clone(),
    )
    .with_deadline(deadline)
    .with_clock(clock)
    // An attachment arrives as base64 (4/3 of its size) inside JSON.
    .with_max_answer_bytes(
        limits
            .attachment_bytes
            .saturating_mul(2)
            .saturating_add(1 << 20),
    );
    let window = match (cli.base.window.since, cli.base.window.days) {
        (None, None) => None,
        _ => Some(DateWindow::resolve(
            &cli.base.window,
            clock.moscow_today(),
            1,
        )?),
    };
    let now = clock.now().timestamp();
    let query = search_query(g, window, now);
    let context = Context {
        trusted,
        limits,
        now,
    };
    if cli.dry_run {
        let outcome = Loader::new(&gmail, None, g, query, context).run().await?;
        outcome.print()?;
        return Ok(());
    }
    let ch = Ch::connect(&cli.base.clickhouse).await?;
    zakaz_core::schema::ensure(&ch).await?;
    let job = zakaz_core::jobs::get(JOB);
    let (gmail, ch_ref) = (&gmail, &ch);
    journaled(&ch, job, window, |_run_id| async move {
        Loader::new(gmail, Some(ch_ref), g, query, context)
            .run()
            .await
    })
    .await?;
    Ok(())
}

/// `f`, with a panic turned into an error: whatever a hostile mail does to a parser is that
/// mail's failure, never the run's end (the state `f` touched is dropped with it).
pub fn guarded<T>(what: &str, f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
    zakaz_core::panic::guarded(&format!("{what} failed on this mail"), f)
}

/// An error no mail is to blame for: the run ends (the mail is not counted as failing).
fn ends_run(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.is::<ConfigError>()
            || c.is::<UnavailableError>()
            || c.is::<GiveUp>()
            // Gmail's own trouble (5xx after the retries) is no fault of the mail: counting it
            // would, after a long outage, tell the operator to label good reports by hand.
            || c.downcast_ref::<ApiError>().is_some_and(|a| a.status >= 500)
            || matches!(
                c.downcast_ref::<HttpError>(),
                Some(
                    HttpError::Deadline { .. }
                        | HttpError::BudgetExhausted { .. }
                        | HttpError::Network { .. }
                )
            )
    })
}

/// Gmail says the message is gone (deleted since the search): nothing to do.
fn gone(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<ApiError>()
            .is_some_and(|a| a.status == 404)
    })
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
        // The configured query in parentheses: its `OR`s stay its own.
        None => format!(
            "({}) -label:{} after:{}",
            args.gmail_query,
            args.gmail_processed_label.trim().replace(' ', "-"),
            now - i64::from(args.gmail_lookback_days) * 86_400 - 1
        ),
        Some(w) => format!(
            "({}) after:{} before:{}",
            args.gmail_query,
            midnight(w.from) - 1,
            midnight(w.to + chrono::Days::new(1))
        ),
    }
}

/// What one message gave.
enum MessageResult {
    Loaded {
        rows: usize,
    },
    Failed {
        reason: String,
        attempts: u32,
    },
    /// Not from a trusted sender: left alone.
    Untrusted {
        from: String,
        reason: String,
    },
    /// Deleted since the search.
    Gone,
}

/// What a run judges mail by.
pub struct Context {
    /// `GMAIL_TRUSTED_SENDERS`, lower-case.
    pub trusted: Vec<String>,
    pub limits: Limits,
    /// The run's now (epoch seconds): no mail is dated after it.
    pub now: i64,
}

/// Where a message's report is.
enum Source {
    Csv {
        name: String,
        charset: Option<String>,
        data: Data,
    },
    Xlsx {
        name: String,
        data: Data,
    },
    Html(String),
}

enum Data {
    Inline(Vec<u8>),
    Fetch(String),
}

/// A file name for messages: the sender chose it.
fn shown(name: &str) -> String {
    name.chars().filter(|c| !c.is_control()).take(80).collect()
}

/// The report part of a message, its size checked against the limit before anything is
/// fetched: a CSV or XLSX attachment, else the first HTML body.
fn source(msg: &Value, limits: &Limits) -> anyhow::Result<Source> {
    let parts = mime::leaves(&msg["payload"])?;
    let too_large = |what: &str, size: u64| {
        anyhow::anyhow!(
            "{what} is {size} bytes, more than `GMAIL_MAX_ATTACHMENT_BYTES` ({})",
            limits.attachment_bytes
        )
    };
    let is = |p: &mime::Part, ext: &str, mime_type: &str| {
        p.filename.to_ascii_lowercase().ends_with(ext) || p.mime == mime_type
    };
    for p in &parts {
        let csv = is(p, ".csv", "text/csv");
        let xlsx = is(
            p,
            ".xlsx",
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        );
        if !csv && !xlsx {
            continue;
        }
        let name = shown(&p.filename);
        let size = p
            .data
            .as_ref()
            .map(|d| d.len() as u64)
            .into_iter()
            .chain(p.size)
            .max()
            .unwrap_or(0);
        if size > limits.attachment_bytes as u64 {
            return Err(too_large(&format!("attachment `{name}`"), size));
        }
        let data = match (&p.data, &p.attachment_id) {
            (Some(d), _) => Data::Inline(d.clone()),
            (None, Some(att)) => Data::Fetch(att.clone()),
            (None, None) => anyhow::bail!("attachment `{name}` has no data"),
        };
        return Ok(if csv {
            Source::Csv {
                name,
                charset: p.charset.clone(),
                data,
            }
        } else {
            Source::Xlsx { name, data }
        });
    }
    let html = parts
        .iter()
        .find(|p| p.mime == "text/html" && p.data.is_some())
        .ok_or_else(|| anyhow::anyhow!("no CSV or XLSX attachment and no HTML body"))?;
    let data = html.data.as_deref().unwrap_or_default();
    if data.len() > limits.attachment_bytes {
        return Err(too_large("the HTML body", data.len() as u64));
    }
    Ok(Source::Html(mime::text(data, html.charset.as_deref())))
}

pub struct Loader<'a> {
    gmail: &'a Gmail,
    ch: Option<&'a Ch>,
    args: &'a GmailArgs,
    query: String,
    context: Context,
    stamp: Stamp,
}

impl<'a> Loader<'a> {
    pub fn new(
        gmail: &'a Gmail,
        ch: Option<&'a Ch>,
        args: &'a GmailArgs,
        query: String,
        context: Context,
    ) -> Self {
        Loader {
            gmail,
            ch,
            args,
            query,
            context,
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
        let (mut loaded, mut rows, mut gone) = (0usize, 0usize, 0usize);
        let mut failures: Vec<(String, String, u32)> = Vec::new();
        let mut untrusted: Vec<(String, String)> = Vec::new();
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
                MessageResult::Untrusted { from, reason } => {
                    tracing::warn!(message_id = %id, from = %from, "mail skipped, not loaded nor labelled (sender not trusted): {reason}");
                    untrusted.push((id.clone(), from));
                }
                MessageResult::Gone => {
                    tracing::info!(message_id = %id, "message deleted since the search, skipped");
                    gone += 1;
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
            .with("messages_untrusted", untrusted.len())
            .with("messages_gone", gone)
            .with(
                zakaz_core::journal::WARNINGS,
                failures.len() + untrusted.len(),
            )
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
                    .map(|(id, reason, a)| format!(
                        "message {id} (attempt {a}): {}",
                        reason.chars().take(300).collect::<String>()
                    ))
                    .collect::<Vec<_>>()
                    .join("; ")
            ));
        }
        if !untrusted.is_empty() {
            message.push_str(&format!(
                "; {} skipped, sender not trusted (`GMAIL_TRUSTED_SENDERS`; left unlabelled): {}",
                untrusted.len(),
                untrusted
                    .iter()
                    .map(|(id, from)| format!("message {id} from {from}"))
                    .collect::<Vec<_>>()
                    .join(", ")
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
        let msg = match self.gmail.message(id).await {
            Ok(m) => m,
            Err(e) if gone(&e) => return Ok(MessageResult::Gone),
            Err(e) if ends_run(&e) => return Err(e),
            Err(e) => return self.failed(id, one_line(&e)).await,
        };
        let trusted = &self.context.trusted;
        match guarded("the sender check", || Ok(trust::sender(&msg, trusted))) {
            Ok(Sender::Trusted { .. }) => {}
            Ok(Sender::Untrusted { from, reason }) => {
                return Ok(MessageResult::Untrusted { from, reason });
            }
            Err(e) => return self.failed(id, one_line(&e)).await,
        }
        let Some(received_at) = trust::received_at(&msg, self.context.now) else {
            return self
                .failed(id, "Gmail gave no readable `internalDate`".into())
                .await;
        };
        let parsed = match self.report(id, &msg).await {
            Ok(p) => p,
            Err(e) if ends_run(&e) => return Err(e),
            Err(e) => return self.failed(id, one_line(&e)).await,
        };
        if !parsed.errors.is_empty() {
            // The first few rows say enough; a hostile report must not fill the journal.
            let mut reasons: Vec<String> = parsed
                .errors
                .iter()
                .take(5)
                .map(|e| format!("row {}: {}", e.row_no, e.reason))
                .collect();
            if parsed.errors.len() > 5 {
                reasons.push(format!("… and {} more rows", parsed.errors.len() - 5));
            }
            return self.failed(id, reasons.join("; ")).await;
        }
        if parsed.rows.is_empty() {
            return self.failed(id, "the report has no rows".into()).await;
        }
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
    /// Every parser runs guarded and within the limits.
    async fn report(&self, id: &str, msg: &Value) -> anyhow::Result<Parsed> {
        let limits = self.context.limits;
        let source = guarded("the MIME reader", || source(msg, &limits))?;
        let bytes = |data: Data| async {
            let bytes = match data {
                Data::Inline(d) => d,
                Data::Fetch(att) => self.gmail.attachment(id, &att).await?,
            };
            anyhow::ensure!(
                bytes.len() <= limits.attachment_bytes,
                "it is {} bytes, more than `GMAIL_MAX_ATTACHMENT_BYTES` ({})",
                bytes.len(),
                limits.attachment_bytes
            );
            Ok(bytes)
        };
        match source {
            Source::Csv {
                name,
                charset,
                data,
            } => {
                let what = |e: anyhow::Error| e.context(format!("attachment `{name}`"));
                let bytes = bytes(data).await.map_err(what)?;
                guarded("the CSV parser", || {
                    report::csv(&mime::text(&bytes, charset.as_deref()), &limits)
                })
                .map_err(what)
            }
            Source::Xlsx { name, data } => {
                let what = |e: anyhow::Error| e.context(format!("attachment `{name}`"));
                let bytes = bytes(data).await.map_err(what)?;
                guarded("the XLSX parser", || report::xlsx(&bytes, &limits)).map_err(what)
            }
            Source::Html(text) => guarded("the HTML parser", || report::html(&text, &limits)),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_in_a_parser_is_an_error_of_that_mail() {
        let e = guarded("the test parser", || -> anyhow::Result<()> {
            let cells: Vec<u8> = Vec::new();
            // An index out of bounds, as a parser bug would have it.
            let _ = cells[usize::from(cells.is_empty())];
            Ok(())
        })
        .unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with(
                "the test parser failed on this mail (it panicked at ingest-gmail/src/lib.rs:"
            ) && text.contains(": index out of bounds"),
            "{text}"
        );
        assert!(!ends_run(&e), "the mail's failure, not the run's");
        assert_eq!(guarded("x", || Ok(5)).unwrap(), 5);
        // What is wrong with the world ends the run instead.
        assert!(ends_run(&anyhow::Error::new(GiveUp("x".into()))));
        assert!(ends_run(&config_error("x")));
    }

    #[test]
    fn hostile_sizes_are_refused_before_anything_is_fetched() {
        let limits = Limits {
            attachment_bytes: 1000,
            ..Limits::DEFAULT
        };
        let msg = serde_json::json!({"payload": {"mimeType": "multipart/mixed", "parts": [
            {"mimeType": "application/octet-stream", "filename": "Sales.XLSX", "body": {"attachmentId": "A", "size": 3_000_000_000u64}}
        ]}});
        let Err(e) = source(&msg, &limits) else {
            panic!("accepted")
        };
        assert_eq!(
            e.to_string(),
            "attachment `Sales.XLSX` is 3000000000 bytes, more than `GMAIL_MAX_ATTACHMENT_BYTES` (1000)"
        );
        let body = api_sandbox::encode::base64url("<table>".repeat(200).as_bytes(), false);
        let msg = serde_json::json!({"payload": {"mimeType": "text/html", "body": {"data": body}}});
        assert!(
            source(&msg, &limits)
                .err()
                .unwrap()
                .to_string()
                .starts_with("the HTML body is 1400 bytes")
        );
    }
}

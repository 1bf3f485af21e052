//! `ingest-direct`: yesterday's Yandex Direct statistics per ad and day (Reports API v5) into
//! `fact_direct_daily`.
//!
//! A run, per login of `DIRECT_LOGINS` (or the token's own account): one CUSTOM_REPORT per
//! window piece (`DIRECT_CHUNK_DAYS` days at most; a piece the server finds too large is
//! split), with a unique `ReportName`, money as decimals (`returnMoneyInMicros: false`), the
//! offline mode waited out (201/202 → `retryIn`, bounded by `DIRECT_MAX_WAIT_SECS`), a full
//! queue (9000) and the retryable codes retried, fatal codes reported with the API's own
//! words. The TSV is parsed as it streams in and streamed into ClickHouse (a piece's months
//! spread over a few inserts open at once, ended together), so a large report is never
//! held in memory; the summary line is asked for and a report whose row count differs (or
//! lacks it: a cut answer) writes nothing. Rows whose ad
//! the report hides (`--`, Campaign Wizard campaigns) are summed per campaign and day, so
//! every served row counts; the report is asked in date order (`OrderBy`) so that a day's
//! sums are written when the next day begins, and a report served out of that order is asked
//! again and summed whole. Keys of the window this load did not see get zero rows, so a
//! re-run changes no total. A login that fails does not stop the others, but fails the run.

pub mod report;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use chrono::{Datelike, NaiveDate};
use clap::Parser;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use zakaz_core::Secret;
use zakaz_core::ads::{
    Before, Stamp, accounts_or_own, date_range, each_account, held_before, label, nightly_window,
    outcome_or_partial, quote, zero_stale,
};
use zakaz_core::ch::{Ch, SplitInsert};
use zakaz_core::cli::{CommonArgs, JobCli, LoaderArgs};
use zakaz_core::error::ConfigError;
use zakaz_core::http::{HttpClient, body_excerpt};
use zakaz_core::journal::{Metrics, Outcome, journaled};
use zakaz_core::time::{DateWindow, ch_date};

use crate::report::{FIELDS, ReportRow};

pub const JOB: &str = "direct";

/// Logins loaded at once: their offline waits overlap, within Direct's five queued reports
/// per user.
const LOGINS_AT_ONCE: usize = 4;

/// Error codes worth another try (temporary server trouble, a full offline queue).
const RETRY_CODES: &[i64] = &[52, 56, 152, 506, 1000, 1001, 1002, 9000];
/// `INSERT`s a report's rows are spread over, month by month (the table's partition, so each
/// partition still gets one part per report). ClickHouse takes each insert on a thread of its
/// own and sorts and writes its rows when it ends, so a report of several months is written on
/// several cores at once (a backfill with `DIRECT_CHUNK_DAYS` above 31; a year's report loads
/// about a fifth faster here, docs/performance.md).
const INSERTS_PER_REPORT: usize = 4;
/// Attempts for a report that keeps answering a retryable error code.
const CODE_ATTEMPTS: u32 = 5;
/// `retryIn` when the header is missing or malformed, and its cap.
const DEFAULT_RETRY_IN: u64 = 10;
const MAX_RETRY_IN: u64 = 60;

#[derive(Debug, Parser)]
#[command(
    name = "ingest-direct",
    version,
    about = "Load daily Yandex Direct statistics per ad (Reports API) into ClickHouse"
)]
pub struct Cli {
    #[command(flatten)]
    pub base: LoaderArgs,
    #[command(flatten)]
    pub direct: DirectArgs,

    /// Fetch and parse the reports, print what would be written, write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct DirectArgs {
    /// Yandex Direct API v5 base URL (reports are `<url>/reports`).
    #[arg(
        long,
        env = "DIRECT_API_URL",
        default_value = "https://api.direct.yandex.com/json/v5",
        value_parser = zakaz_core::http::parse_base_url
    )]
    pub direct_api_url: String,

    /// OAuth token of the Direct account or agency (secret).
    #[arg(long, env = "DIRECT_TOKEN", hide_env_values = true)]
    pub direct_token: Secret,

    /// `Client-Login` values, comma-separated (an agency's clients); empty: the token's own
    /// account.
    #[arg(long, env = "DIRECT_LOGINS", value_delimiter = ',', num_args = 0..)]
    pub direct_logins: Vec<String>,

    /// Days before yesterday fetched again every night (late conversions, corrections).
    #[arg(long, env = "DIRECT_REFRESH_DAYS", default_value_t = 3, value_parser = clap::value_parser!(u32).range(0..=60))]
    pub direct_refresh_days: u32,

    /// Longest period of one report, in days (longer windows are loaded in pieces).
    #[arg(long, env = "DIRECT_CHUNK_DAYS", default_value_t = 31, value_parser = clap::value_parser!(u32).range(1..=1100))]
    pub direct_chunk_days: u32,

    /// Seconds one report may wait in the offline queue before the login fails.
    #[arg(long, env = "DIRECT_MAX_WAIT_SECS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub direct_max_wait_secs: u64,

    /// Costs with VAT (`IncludeVAT: YES`); default without, like VK's `spent`.
    #[arg(long, env = "DIRECT_INCLUDE_VAT", default_value_t = false, action = clap::ArgAction::Set)]
    pub direct_include_vat: bool,
}

impl JobCli for Cli {
    fn common(&self) -> &CommonArgs {
        &self.base.common
    }
}

impl DirectArgs {
    /// The logins a run loads: `""` is the token's own account (no `Client-Login`).
    pub fn logins(&self) -> Vec<String> {
        accounts_or_own(&self.direct_logins)
    }
}

/// One row of `fact_direct_daily`.
#[derive(Debug, Clone, clickhouse::Row, Serialize, Deserialize)]
pub struct FactRow {
    pub stat_date: u16,
    pub client_login: String,
    pub campaign_id: u64,
    pub campaign_name: String,
    pub ad_group_id: u64,
    pub ad_group_name: String,
    pub ad_id: u64,
    pub impressions: u64,
    pub clicks: u64,
    /// Kopecks (`Decimal(18, 2)` on the wire).
    pub cost: i64,
    pub conversions: Option<u64>,
    pub city: String,
    pub loaded_at: u32,
    pub _version: u64,
}

/// [`FactRow`] as written: its text borrowed from the report line and the campaign.
#[derive(Debug, clickhouse::Row, Serialize)]
struct FactRowRef<'a> {
    stat_date: u16,
    client_login: &'a str,
    campaign_id: u64,
    campaign_name: &'a str,
    ad_group_id: u64,
    ad_group_name: &'a str,
    ad_id: u64,
    impressions: u64,
    clicks: u64,
    cost: i64,
    conversions: Option<u64>,
    city: &'a str,
    loaded_at: u32,
    _version: u64,
}

const COLUMNS: &[&str] = &[
    "stat_date",
    "client_login",
    "campaign_id",
    "campaign_name",
    "ad_group_id",
    "ad_group_name",
    "ad_id",
    "impressions",
    "clicks",
    "cost",
    "conversions",
    "city",
    "loaded_at",
    "_version",
];

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let clock = cli.base.clock.clock();
    let window = nightly_window(&cli.base.window, &clock, cli.direct.direct_refresh_days)?;
    let timeout = zakaz_core::jobs::get(JOB)
        .timeout()
        .unwrap_or(Duration::from_secs(600));
    let deadline = Instant::now() + timeout.saturating_sub(Duration::from_secs(20));
    // 502 means "the report is too large": it is split, not sent again as it is.
    let http = HttpClient::new("Yandex Direct", &cli.base.http)?
        .with_deadline(deadline)
        .without_retry_on(&[502]);
    let logins = cli.direct.logins();
    let loader = |ch| Loader {
        http: &http,
        ch,
        args: &cli.direct,
        window,
        stamp: Stamp::now(),
        deadline,
    };
    // A dry run needs no ClickHouse: it reads nothing there and writes nothing.
    if cli.dry_run {
        let outcome = loader(None).run(&logins).await?;
        outcome.print()?;
        return Ok(());
    }
    let ch = Ch::connect(&cli.base.clickhouse).await?;
    zakaz_core::schema::ensure(&ch).await?;
    let job = zakaz_core::jobs::get(JOB);
    let (loader, logins) = (loader(Some(&ch)), &logins);
    journaled(&ch, job, Some(window), |_run_id| async move {
        loader.run(logins).await
    })
    .await?;
    Ok(())
}

/// What one login's load produced.
#[derive(Debug, Default)]
struct LoginLoad {
    rows: u64,
    bytes: u64,
    reports: u32,
    offline_waits: u32,
    cost: i64,
}

/// One run; without ClickHouse (`ch: None`) a dry run.
pub struct Loader<'a> {
    http: &'a HttpClient,
    ch: Option<&'a Ch>,
    args: &'a DirectArgs,
    window: DateWindow,
    stamp: Stamp,
    deadline: Instant,
}

/// How one report request ended.
enum Answer {
    Done {
        rows: u64,
        bytes: u64,
        cost: i64,
    },
    /// HTTP 502: the period is too long for the server; split it.
    TooLarge,
    /// A hidden ad's row came after its day's sums were written (the rows are not in date
    /// order although `OrderBy` asked for it): nothing of the piece was written; ask again,
    /// summing hidden ads over the whole report.
    NotByDate,
}

/// How a report's hidden-ad sums are written.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Sums {
    /// A day's sums as soon as the next day begins: memory for one day of campaigns.
    PerDay,
    /// Every sum once the report is whole: for rows in no particular order.
    AtTheEnd,
}

impl Loader<'_> {
    pub async fn run(self, logins: &[String]) -> anyhow::Result<Outcome> {
        let this = &self;
        let (loads, failures) = each_account("login", logins, LOGINS_AT_ONCE, |l| async move {
            this.login(&l).await
        })
        .await?;
        let rows: u64 = loads.iter().map(|(_, l)| l.rows).sum();
        let by_login: BTreeMap<String, u64> =
            loads.iter().map(|(l, d)| (label(l), d.rows)).collect();
        let metrics = Metrics::new()
            .with("rows", rows)
            .with("rows_by_login", by_login)
            .with("reports", loads.iter().map(|(_, l)| l.reports).sum::<u32>())
            .with(
                "offline_waits",
                loads.iter().map(|(_, l)| l.offline_waits).sum::<u32>(),
            )
            .with("tsv_bytes", loads.iter().map(|(_, l)| l.bytes).sum::<u64>())
            .with("failed_logins", failures.len())
            .with("http_requests", self.http.requests_made());
        let mut message = format!(
            "{rows} ad-day rows for {} ({} login(s)), cost {}",
            self.window,
            loads.len(),
            zakaz_core::money::format_kopecks(loads.iter().map(|(_, l)| l.cost).sum())
        );
        if self.ch.is_none() {
            message = format!("dry run, nothing written: would write {message}");
        }
        let outcome = Outcome {
            rows,
            message,
            metrics,
        };
        outcome_or_partial("Yandex Direct login(s)", logins.len(), failures, outcome)
    }

    async fn login(&self, login: &str) -> anyhow::Result<LoginLoad> {
        let mut load = LoginLoad::default();
        let scope = format!(
            "client_login = {} AND {}",
            quote(login),
            date_range("stat_date", self.window)
        );
        let before = match self.ch {
            Some(ch) => held_before(ch, "fact_direct_daily", &scope).await?,
            None => Before::Held,
        };
        // Pieces still to load, earliest first; a piece too large is split in two.
        let mut pending: Vec<(DateWindow, Sums)> = self
            .window
            .chunks(self.args.direct_chunk_days)
            .into_iter()
            .rev()
            .map(|piece| (piece, Sums::PerDay))
            .collect();
        while let Some((piece, sums)) = pending.pop() {
            match self.report(login, piece, sums, &mut load).await? {
                Answer::Done { rows, bytes, cost } => {
                    load.rows += rows;
                    load.bytes += bytes;
                    load.cost += cost;
                    load.reports += 1;
                }
                Answer::TooLarge if piece.len_days() > 1 => {
                    let half = piece.len_days().div_ceil(2);
                    tracing::warn!(login = %label(login), window = %piece, "Yandex Direct says the report is too large: asking for it in two halves");
                    pending.extend(piece.chunks(half).into_iter().rev().map(|h| (h, sums)));
                }
                Answer::NotByDate if sums == Sums::PerDay => {
                    tracing::warn!(login = %label(login), window = %piece, "Yandex Direct sent the report out of date order although asked to sort it: asking again, summing hidden ads over the whole report");
                    pending.push((piece, Sums::AtTheEnd));
                }
                Answer::NotByDate => unreachable!("only a per-day load stops at the order"),
                Answer::TooLarge => anyhow::bail!(
                    "Yandex Direct cannot build the report of one day {} (HTTP 502 after every retry)",
                    piece.from
                ),
            }
        }
        if let Some(ch) = self.ch {
            zero_stale(
                ch,
                "fact_direct_daily",
                COLUMNS,
                &["impressions", "clicks", "cost", "conversions"],
                &scope,
                self.stamp,
                before,
            )
            .await?;
        }
        tracing::info!(login = %label(login), rows = load.rows, reports = load.reports, "Yandex Direct login loaded");
        Ok(load)
    }

    fn body(&self, piece: DateWindow, name: &str) -> Value {
        json!({"params": {
            "SelectionCriteria": {"DateFrom": piece.from.to_string(), "DateTo": piece.to.to_string()},
            "FieldNames": FIELDS,
            "ReportName": name,
            "ReportType": "CUSTOM_REPORT",
            "DateRangeType": "CUSTOM_DATE",
            "Format": "TSV",
            "IncludeVAT": if self.args.direct_include_vat { "YES" } else { "NO" },
            "IncludeDiscount": "NO",
            // Date by date, so that a day's hidden-ad sums can be written when the next begins.
            "OrderBy": [{"Field": "Date", "SortOrder": "ASCENDING"}]
        }})
    }

    /// One report, offline waits and retries included, streamed into ClickHouse.
    async fn report(
        &self,
        login: &str,
        piece: DateWindow,
        sums: Sums,
        load: &mut LoginLoad,
    ) -> anyhow::Result<Answer> {
        // Unique per request: the service refuses a known name with other parameters.
        let name = format!(
            "zakaz {} {piece} {}",
            label(login),
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let body = self.body(piece, &name);
        let url = format!("{}/reports", self.args.direct_api_url);
        let started = Instant::now();
        let max_wait = Duration::from_secs(self.args.direct_max_wait_secs);
        let mut code_attempts = 0;
        // Bounded by the wait limit below; the count only guards against a zero `retryIn`.
        for _ in 0..10_000 {
            let response = self
                .http
                .send(|c| {
                    let mut r = c
                        .post(&url)
                        .bearer_auth(self.args.direct_token.expose())
                        .header("Accept-Language", "en")
                        .header("processingMode", "auto")
                        .header("returnMoneyInMicros", "false")
                        .header("skipReportHeader", "true")
                        // The summary line is the only sign of a complete answer.
                        .header("skipReportSummary", "false")
                        .json(&body);
                    if !login.is_empty() {
                        r = r.header("Client-Login", login);
                    }
                    r
                })
                .await?;
            let status = response.status().as_u16();
            if let Some(units) = response
                .headers()
                .get("Units")
                .and_then(|v| v.to_str().ok())
            {
                tracing::debug!(login = %label(login), units, "Yandex Direct units (spent/remaining/limit)");
            }
            let retry_in = Duration::from_secs(
                response
                    .headers()
                    .get("retryIn")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .unwrap_or(DEFAULT_RETRY_IN)
                    .min(MAX_RETRY_IN),
            );
            let wait = |what: &str| -> anyhow::Result<()> {
                let waited = started.elapsed();
                if waited + retry_in > max_wait {
                    anyhow::bail!(
                        "the report {piece} is still {what} after {} s (`DIRECT_MAX_WAIT_SECS` is {})",
                        waited.as_secs(),
                        max_wait.as_secs()
                    );
                }
                if Instant::now() + retry_in >= self.deadline {
                    anyhow::bail!("the report {piece} is still {what} and the run's time is up");
                }
                Ok(())
            };
            match status {
                200 => return self.stream(login, piece, sums, response).await,
                201 | 202 => {
                    wait(if status == 201 {
                        "queued"
                    } else {
                        "being built"
                    })?;
                    load.offline_waits += 1;
                    tracing::info!(login = %label(login), window = %piece, status, retry_in_s = retry_in.as_secs(), "Yandex Direct builds the report offline: waiting");
                    tokio::time::sleep(retry_in).await;
                }
                502 => return Ok(Answer::TooLarge),
                _ => {
                    let text = zakaz_core::http::text_limited(
                        "Yandex Direct",
                        response,
                        zakaz_core::http::MAX_ERROR_BYTES,
                    )
                    .await
                    .unwrap_or_default();
                    let error = ApiError::parse(&text);
                    match error.code {
                        Some(53) => {
                            return Err(ConfigError(format!(
                                "Yandex Direct rejected the token ({}): check `DIRECT_TOKEN`",
                                error.describe(&text)
                            ))
                            .into());
                        }
                        // No rights to this login (a typo, or an advertiser the agency lost):
                        // a setting to fix, not a report to retry.
                        Some(54) if !login.is_empty() => {
                            return Err(ConfigError(format!(
                                "Yandex Direct refuses the login `{login}` ({}): check `DIRECT_LOGINS`",
                                error.describe(&text)
                            ))
                            .into());
                        }
                        Some(code)
                            if RETRY_CODES.contains(&code) && code_attempts + 1 < CODE_ATTEMPTS =>
                        {
                            code_attempts += 1;
                            let what = if code == 9000 {
                                "waiting for a place in the offline queue"
                            } else {
                                "retried"
                            };
                            wait(what)?;
                            tracing::warn!(login = %label(login), code, attempt = code_attempts, "Yandex Direct: {} ({what})", error.describe(&text));
                            tokio::time::sleep(retry_in.max(Duration::from_secs(1))).await;
                        }
                        _ => anyhow::bail!(
                            "Yandex Direct refused the report {piece}: HTTP {status}: {}",
                            error.describe(&text)
                        ),
                    }
                }
            }
        }
        anyhow::bail!("the report {piece} never came")
    }

    /// Parse the TSV as it arrives; rows go straight into the piece's inserts, committed at
    /// the end (a failure mid-way aborts them: nothing of a piece under ClickHouse's block size
    /// — about a million rows an insert — is written; a longer piece, or a failure while the
    /// inserts commit, may keep some rows, which the next run's rows and zero rows replace).
    async fn stream(
        &self,
        login: &str,
        piece: DateWindow,
        sums: Sums,
        mut response: reqwest::Response,
    ) -> anyhow::Result<Answer> {
        let mut parser = report::Parser::expecting_summary();
        let mut progress_rows = 0;
        let mut insert = self
            .ch
            .map(|ch| ch.split_insert::<FactRowRef<'_>>("fact_direct_daily", INSERTS_PER_REPORT));
        let mut cost = 0i64;
        // A live count on a terminal; nothing under systemd.
        let progress = zakaz_core::progress::Progress::counter(
            &format!("Direct {} {piece}", label(login)),
            "rows",
        );
        // A campaign's city, from its name, once per campaign.
        let mut cities: HashMap<u64, String> = HashMap::new();
        // Rows of hidden ads, summed per (date, campaign).
        let mut hidden = HiddenSums::default();
        // The latest day seen, and the latest whose hidden-ad sums are written.
        let (mut latest, mut written_through) = (None, None);
        let failed = |e: anyhow::Error, most_rows: u64| {
            e.context(format!(
                "Yandex Direct login {} report {piece}: {}",
                label(login),
                left_by_failure(most_rows)
            ))
        };
        let most_rows =
            |insert: &Option<SplitInsert<_>>| insert.as_ref().map_or(0, |i| i.most_rows());
        loop {
            let chunk = response
                .chunk()
                .await
                .map_err(|e| anyhow::anyhow!("Yandex Direct: the report {piece} broke off: {e}"))?;
            match &chunk {
                Some(bytes) => parser.feed(bytes),
                None => parser.end(),
            }
            while let Some(r) = parser
                .next_row()
                .map_err(|e| failed(e, most_rows(&insert)))?
            {
                if !piece.contains(r.date) {
                    let e = anyhow::anyhow!("the report for {piece} holds a row of {}", r.date);
                    return Err(failed(e, most_rows(&insert)));
                }
                if sums == Sums::PerDay {
                    if r.ad_hidden && written_through.is_some_and(|w| r.date <= w) {
                        // A sum of this day is written already. Dropping the insert
                        // unfinished aborts it.
                        return Ok(Answer::NotByDate);
                    }
                    if latest.is_some_and(|d| r.date > d) {
                        // Every sum held is of an earlier day.
                        match insert.as_mut() {
                            Some(insert) => {
                                hidden.write(insert, login, &cities, self.stamp).await?
                            }
                            None => hidden.sums.clear(),
                        }
                        written_through = latest;
                    }
                }
                latest = latest.max(Some(r.date));
                cost = cost.checked_add(r.cost).ok_or_else(|| {
                    let e = anyhow::anyhow!(
                        "its costs add up past what a sum can hold (a row of {})",
                        r.date
                    );
                    failed(e, most_rows(&insert))
                })?;
                let city = cities.entry(r.campaign_id).or_insert_with(|| {
                    zakaz_core::utm::city_in_name(r.campaign_name)
                        .name()
                        .to_owned()
                });
                if r.ad_hidden {
                    hidden.add(&r).map_err(|e| failed(e, most_rows(&insert)))?;
                } else if let Some(insert) = insert.as_mut() {
                    insert
                        .write(
                            partition(r.date),
                            &FactRowRef {
                                stat_date: ch_date(r.date),
                                client_login: login,
                                campaign_id: r.campaign_id,
                                campaign_name: r.campaign_name,
                                ad_group_id: r.ad_group_id,
                                ad_group_name: r.ad_group_name,
                                ad_id: r.ad_id,
                                impressions: r.impressions,
                                clicks: r.clicks,
                                cost: r.cost,
                                conversions: r.conversions,
                                city,
                                loaded_at: self.stamp.loaded_at,
                                _version: self.stamp.version,
                            },
                        )
                        .await?;
                }
            }
            progress.add(parser.rows - progress_rows);
            progress_rows = parser.rows;
            progress.message(format!("{:.1} MB", parser.bytes as f64 / 1e6));
            if chunk.is_none() {
                break;
            }
        }
        parser.finish().map_err(|e| failed(e, most_rows(&insert)))?;
        if let Some(mut insert) = insert {
            hidden
                .write(&mut insert, login, &cities, self.stamp)
                .await?;
            insert.end().await?;
        }
        Ok(Answer::Done {
            rows: parser.rows,
            bytes: parser.bytes,
            cost,
        })
    }
}

/// The table's partition of a row (`toYYYYMM(stat_date)`), as consecutive numbers.
fn partition(date: NaiveDate) -> u64 {
    date.year() as u64 * 12 + date.month0() as u64
}

/// Rows of hidden ads, summed per campaign and day: only the numbers per (date, campaign),
/// the text once per campaign, so a report of many such rows stays small in memory.
#[derive(Default)]
struct HiddenSums {
    sums: BTreeMap<(NaiveDate, u64), Sum>,
    /// Per campaign: its name, as the first of its hidden rows gave it.
    names: HashMap<u64, String>,
}

/// What a piece that failed left in ClickHouse, told truthfully: ClickHouse writes each
/// whole block of an insert as soon as it has gathered it.
fn left_by_failure(most_rows: u64) -> String {
    if most_rows < zakaz_core::ch::INSERT_BLOCK_ROWS {
        "nothing of it written".to_owned()
    } else {
        format!(
            "an insert of it had {most_rows} rows, so ClickHouse may have written its first blocks of {} (the next run's rows replace them)",
            zakaz_core::ch::INSERT_BLOCK_ROWS
        )
    }
}

#[derive(Default, Clone, Copy)]
struct Sum {
    impressions: u64,
    clicks: u64,
    cost: i64,
    conversions: Option<u64>,
}

impl Sum {
    /// This sum with a row added, or `None` when a figure would overflow.
    fn plus(self, r: &ReportRow<'_>) -> Option<Sum> {
        Some(Sum {
            impressions: self.impressions.checked_add(r.impressions)?,
            clicks: self.clicks.checked_add(r.clicks)?,
            cost: self.cost.checked_add(r.cost)?,
            conversions: match (self.conversions, r.conversions) {
                (None, None) => None,
                (a, b) => Some(a.unwrap_or(0).checked_add(b.unwrap_or(0))?),
            },
        })
    }
}

impl HiddenSums {
    /// Write every sum held, and forget them.
    async fn write(
        &mut self,
        insert: &mut SplitInsert<FactRowRef<'_>>,
        login: &str,
        cities: &HashMap<u64, String>,
        stamp: Stamp,
    ) -> anyhow::Result<()> {
        for ((date, campaign_id), sum) in std::mem::take(&mut self.sums) {
            insert
                .write(
                    partition(date),
                    &FactRowRef {
                        stat_date: ch_date(date),
                        client_login: login,
                        campaign_id,
                        campaign_name: &self.names[&campaign_id],
                        // The ad is unknown.
                        ad_group_id: 0,
                        ad_group_name: "",
                        ad_id: 0,
                        impressions: sum.impressions,
                        clicks: sum.clicks,
                        cost: sum.cost,
                        conversions: sum.conversions,
                        city: &cities[&campaign_id],
                        loaded_at: stamp.loaded_at,
                        _version: stamp.version,
                    },
                )
                .await?;
        }
        Ok(())
    }

    /// Adds a hidden row to its day's campaign sum; an error, never a wrapped number, when
    /// the report's figures add up past what a sum can hold.
    fn add(&mut self, r: &ReportRow<'_>) -> anyhow::Result<()> {
        let key = (r.date, r.campaign_id);
        let held = self.sums.get(&key).copied().unwrap_or_default();
        let sum = held.plus(r).ok_or_else(|| {
            anyhow::anyhow!(
                "the hidden ads of campaign {} on {} add up past what a sum can hold",
                r.campaign_id,
                r.date
            )
        })?;
        self.names
            .entry(r.campaign_id)
            .or_insert_with(|| r.campaign_name.to_owned());
        self.sums.insert(key, sum);
        Ok(())
    }
}

/// Direct's error body: `{"error": {"error_code", "error_string", "error_detail"}}`
/// (`error_code` an int or a string).
#[derive(Debug, Default)]
struct ApiError {
    code: Option<i64>,
    text: String,
    detail: String,
}

impl ApiError {
    fn parse(body: &str) -> ApiError {
        let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
        let e = &v["error"];
        ApiError {
            code: match &e["error_code"] {
                Value::Number(n) => n.as_i64(),
                Value::String(s) => s.trim().parse().ok(),
                _ => None,
            },
            text: e["error_string"].as_str().unwrap_or_default().to_owned(),
            detail: e["error_detail"].as_str().unwrap_or_default().to_owned(),
        }
    }

    /// `code 54: No rights: <detail>`, or the body itself when it is not Direct's error.
    fn describe(&self, body: &str) -> String {
        match self.code {
            Some(code) => {
                let mut s = format!("code {code}: {}", self.text);
                if !self.detail.is_empty() {
                    s.push_str(&format!(": {}", self.detail));
                }
                body_excerpt(&s)
            }
            None => body_excerpt(body),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hidden_row(
        date: &str,
        impressions: u64,
        cost: i64,
        conversions: Option<u64>,
    ) -> ReportRow<'static> {
        ReportRow {
            date: date.parse().unwrap(),
            campaign_id: 7,
            campaign_name: "Wizard",
            ad_group_id: 0,
            ad_group_name: "",
            ad_id: 0,
            impressions,
            clicks: 1,
            cost,
            conversions,
            ad_hidden: true,
        }
    }

    #[test]
    fn a_failure_says_nothing_was_written_only_below_a_block() {
        assert_eq!(left_by_failure(0), "nothing of it written");
        assert_eq!(left_by_failure(1_048_575), "nothing of it written");
        assert!(
            left_by_failure(1_048_576)
                .starts_with("an insert of it had 1048576 rows, so ClickHouse may have written"),
            "{}",
            left_by_failure(1_048_576)
        );
    }

    #[test]
    fn hidden_ads_sum_per_day_and_a_sum_that_would_wrap_is_an_error() {
        let mut hidden = HiddenSums::default();
        hidden.add(&hidden_row("2026-11-20", 5, 100, None)).unwrap();
        hidden
            .add(&hidden_row("2026-11-20", 7, 250, Some(2)))
            .unwrap();
        hidden
            .add(&hidden_row("2026-11-21", u64::MAX, 1, None))
            .unwrap();
        let day = |hidden: &HiddenSums, d: &str| hidden.sums[&(d.parse().unwrap(), 7)];
        let s = day(&hidden, "2026-11-20");
        assert_eq!(
            (s.impressions, s.clicks, s.cost, s.conversions),
            (12, 2, 350, Some(2))
        );
        let e = hidden
            .add(&hidden_row("2026-11-21", 1, 1, None))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "the hidden ads of campaign 7 on 2026-11-21 add up past what a sum can hold"
        );
        assert_eq!(
            day(&hidden, "2026-11-21").impressions,
            u64::MAX,
            "the sum held is unchanged"
        );
        let e = hidden
            .add(&hidden_row("2026-11-20", 1, i64::MAX, None))
            .unwrap_err();
        assert!(e.to_string().contains("2026-11-20"), "{e}");
        hidden
            .add(&hidden_row("2026-11-20", 1, 0, Some(u64::MAX)))
            .unwrap_err();
    }
}

//! `ingest-qtickets`: sales, events and inventory from QTickets into ClickHouse, every 15
//! minutes, exact and idempotent.
//!
//! A run: events → `dim_events`; orders → `stg_qtickets_orders` / `stg_qtickets_tickets`
//! (latest version wins); facts recomputed from the deduplicated staging for every date the
//! run touched; an inventory snapshot of every upcoming active show. Which orders a run
//! fetches:
//! - first run (no successful run yet): every order created in the last
//!   `QTICKETS_BACKFILL_DAYS` days;
//! - later runs: orders updated since the last successful run's watermark minus
//!   `QTICKETS_OVERLAP_MINUTES`, keyset-paged by id; if the server ignores that date filter
//!   (the real one may), every order created in the last `QTICKETS_REFRESH_DAYS` days and
//!   every newer one, filtered locally;
//! - `--since/--until`: every order created in that window (± a day), on demand.
//!
//! The watermark lives in the run journal (`metrics` of the last `ok` run), so a failed run
//! never advances it: the next run fetches at least what the failed one did.

/// In a serde `Visitor`: null, booleans, numbers and strings all read as `$value` (the
/// visitor says what an object or a list is).
macro_rules! other_values_are {
    ($ty:ty, $value:expr) => {
        fn visit_unit<E>(self) -> Result<$ty, E> {
            Ok($value)
        }
        fn visit_bool<E>(self, _: bool) -> Result<$ty, E> {
            Ok($value)
        }
        fn visit_i64<E>(self, _: i64) -> Result<$ty, E> {
            Ok($value)
        }
        fn visit_u64<E>(self, _: u64) -> Result<$ty, E> {
            Ok($value)
        }
        fn visit_f64<E>(self, _: f64) -> Result<$ty, E> {
            Ok($value)
        }
        fn visit_str<E>(self, _: &str) -> Result<$ty, E> {
            Ok($value)
        }
    };
}

pub mod api;
pub mod facts;
pub mod model;

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use clap::Parser;
use serde_json::{Value, json};
use zakaz_core::Secret;
use zakaz_core::ch::Ch;
use zakaz_core::cli::{CommonArgs, JobCli, LoaderArgs};
use zakaz_core::http::HttpClient;
use zakaz_core::journal::{Metrics, Outcome, journaled};
use zakaz_core::time::{Clock, DateWindow, MOSCOW, ch_datetime};

use crate::api::QTickets;
use crate::model::{EventRow, OrderRow, ShowRef, TicketRow, transform_event, transform_order};

pub const JOB: &str = "qtickets";

#[derive(Debug, Parser)]
#[command(
    name = "ingest-qtickets",
    version,
    about = "Load ticket sales, events and inventory from QTickets into ClickHouse"
)]
pub struct Cli {
    #[command(flatten)]
    pub base: LoaderArgs,
    #[command(flatten)]
    pub qtickets: QTicketsArgs,

    /// Call the API and transform, print what would be written, write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct QTicketsArgs {
    /// QTickets REST API base URL.
    #[arg(
        long,
        env = "QTICKETS_BASE_URL",
        default_value = "https://qtickets.ru/api/rest/v1",
        value_parser = zakaz_core::http::parse_base_url
    )]
    pub qtickets_base_url: String,

    /// QTickets API token (secret; selects the organizer).
    #[arg(long, env = "QTICKETS_TOKEN", hide_env_values = true)]
    pub qtickets_token: Secret,

    /// Days of orders the first run loads.
    #[arg(long, env = "QTICKETS_BACKFILL_DAYS", default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub qtickets_backfill_days: u32,

    /// Overlap subtracted from the `updated_at` watermark, in minutes (at most a week).
    #[arg(long, env = "QTICKETS_OVERLAP_MINUTES", default_value_t = 60, value_parser = clap::value_parser!(u32).range(0..=10_080))]
    pub qtickets_overlap_minutes: u32,

    /// Refund sweep: the paid orders of shows still ahead, or past by at most this many days,
    /// are read again every `QTICKETS_SWEEP_HOURS`, so that a refund that does not move an
    /// order's `updated_at` (a postponed show, weeks after the payment) is counted too.
    #[arg(long, env = "QTICKETS_SWEEP_DAYS_AFTER_SHOW", default_value_t = 7, value_parser = clap::value_parser!(u32).range(0..=365))]
    pub qtickets_sweep_days_after_show: u32,

    /// Hours between refund sweeps (0: never sweep). The default sweeps once a night or so,
    /// inside an ordinary run and its time budget.
    #[arg(long, env = "QTICKETS_SWEEP_HOURS", default_value_t = 20, value_parser = clap::value_parser!(u32).range(0..=720))]
    pub qtickets_sweep_hours: u32,

    /// When the server ignores date filters: days of orders re-read every run to see
    /// cancellations and refunds.
    #[arg(long, env = "QTICKETS_REFRESH_DAYS", default_value_t = 14, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub qtickets_refresh_days: u32,

    /// Order pages fetched at once when a run reads a known id range (backfill, rescan,
    /// window); incremental runs page one at a time.
    #[arg(long, env = "QTICKETS_CONCURRENCY", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=16))]
    pub qtickets_concurrency: u32,

    /// Orders staged per insert: fewer bound the memory of long backfills, more mean fewer
    /// inserts.
    #[arg(long, env = "QTICKETS_STAGE_BATCH_ORDERS", default_value_t = 5_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub qtickets_stage_batch_orders: u32,

    /// Seconds a run may fetch before it stops cleanly: it recomputes the facts of what it
    /// staged, records where it stopped, and the next run resumes a backfill from there.
    /// Default: the job table's timeout minus a minute for the facts.
    #[arg(long, env = "QTICKETS_TIME_BUDGET_SECS", default_value_t = default_time_budget(), value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub qtickets_time_budget_secs: u64,

    /// Snapshot seats of upcoming active shows into `fact_qtickets_inventory`.
    #[arg(long, env = "QTICKETS_INVENTORY", default_value_t = true, action = clap::ArgAction::Set)]
    pub qtickets_inventory: bool,

    /// Opt-in: store a salted SHA-256 of the client's e-mail (secret salt); without it no
    /// personal data is stored.
    #[arg(long, env = "QTICKETS_CLIENT_HASH_SALT", hide_env_values = true)]
    pub qtickets_client_hash_salt: Option<Secret>,
}

/// The job table's timeout less a minute for facts and the journal.
fn default_time_budget() -> u64 {
    zakaz_core::jobs::get(JOB)
        .timeout()
        .map_or(240, |t| t.as_secs().saturating_sub(60).max(30))
}

impl JobCli for Cli {
    fn common(&self) -> &CommonArgs {
        &self.base.common
    }
}

/// What the last successful incremental run had seen.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Watermark {
    pub updated_at: u32,
    pub max_order_id: u64,
}

/// How a run chose its orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Backfill,
    UpdatedSince,
    Rescan,
    Window,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Backfill => "backfill",
            Mode::UpdatedSince => "updated_since",
            Mode::Rescan => "rescan",
            Mode::Window => "window",
        }
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    // No request and no back-off outlasts the unit's timeout (less a margin to record why).
    let timeout = zakaz_core::jobs::get(JOB)
        .timeout()
        .unwrap_or(Duration::from_secs(300));
    let http = HttpClient::new("QTickets", &cli.base.http)?
        .with_deadline(Instant::now() + timeout.saturating_sub(Duration::from_secs(20)));
    let api = QTickets::new(
        http,
        &cli.qtickets.qtickets_base_url,
        cli.qtickets.qtickets_token.clone(),
    );
    let window = match (cli.base.window.since, cli.base.window.days) {
        (None, None) => None,
        _ => Some(DateWindow::resolve(
            &cli.base.window,
            cli.base.clock.clock().moscow_today(),
            1,
        )?),
    };
    let ch = Ch::connect(&cli.base.clickhouse).await?;
    if cli.dry_run {
        let outcome = Loader::new(
            &api,
            &ch,
            &cli.qtickets,
            window,
            None,
            cli.base.clock.clock(),
        )
        .run()
        .await?;
        outcome.print()?;
        return Ok(());
    }
    zakaz_core::schema::ensure(&ch).await?;
    let job = zakaz_core::jobs::get(JOB);
    let (api, ch_ref, args, clock) = (&api, &ch, &cli.qtickets, cli.base.clock.clock());
    journaled(&ch, job, window, |run_id| async move {
        Loader::new(api, ch_ref, args, window, Some(run_id), clock)
            .run()
            .await
    })
    .await?;
    Ok(())
}

/// One run. `run_id: None` is a dry run: reads only.
pub struct Loader<'a> {
    api: &'a QTickets,
    ch: &'a Ch,
    args: &'a QTicketsArgs,
    window: Option<DateWindow>,
    run_id: Option<String>,
    /// Business time (today, the run's start, upcoming shows); load stamps and versions use
    /// the system clock, so that they grow with real loads whatever a test pins.
    clock: Clock,
    loaded_at: u32,
    /// Version of this run's dirty marks; its clean marks are one above, so a later run's
    /// dirty mark always wins over this run's clean one.
    mark_version: u64,
    first_load: bool,
    touched: BTreeSet<NaiveDate>,
    /// Dates already marked dirty in ClickHouse by (or for) this run.
    marked: BTreeSet<NaiveDate>,
    orders: usize,
    tickets: usize,
    preview: Vec<TicketRow>,
    max_updated: u32,
    max_id: u64,
    /// When to stop fetching (`QTICKETS_TIME_BUDGET_SECS` after the start).
    budget_ends: Instant,
    /// Set when the budget stopped the run: every order id up to this one is staged.
    stopped_after: Option<u64>,
    /// Orders staged, live on a terminal (a backfill takes a while); nothing under systemd.
    progress: zakaz_core::progress::Progress,
    /// What the vendor sent in an unexpected shape (named, counted, the rest loaded).
    warnings: Vec<String>,
    /// Set when the refund sweep stopped at the time budget: every order id up to this one
    /// was swept.
    sweep_resume_after: Option<u64>,
    /// The inserts of the batch staged last, still running while paging and transforming go
    /// on. At most one batch is in flight: it is awaited before the next batch's dates are
    /// read or marked, and before anything reads staging.
    staging: Option<Staging>,
}

impl<'a> Loader<'a> {
    pub fn new(
        api: &'a QTickets,
        ch: &'a Ch,
        args: &'a QTicketsArgs,
        window: Option<DateWindow>,
        run_id: Option<String>,
        clock: Clock,
    ) -> Self {
        Loader {
            api,
            ch,
            args,
            window,
            run_id,
            clock,
            loaded_at: ch_datetime(&chrono::Utc::now()),
            mark_version: chrono::Utc::now().timestamp_micros().max(0) as u64 * 2,
            first_load: false,
            touched: BTreeSet::new(),
            marked: BTreeSet::new(),
            orders: 0,
            tickets: 0,
            preview: Vec::new(),
            max_updated: 0,
            max_id: 0,
            budget_ends: Instant::now() + Duration::from_secs(args.qtickets_time_budget_secs),
            stopped_after: None,
            progress: zakaz_core::progress::Progress::counter("QTickets", "orders"),
            warnings: Vec::new(),
            sweep_resume_after: None,
            staging: None,
        }
    }

    /// Note a shape the vendor should not have sent: logged, counted, named in the message.
    fn warn(&mut self, warning: String) {
        tracing::warn!("{warning}");
        self.warnings.push(warning);
    }

    /// The time budget is spent, and this run has something to stage (so every run makes
    /// progress).
    fn out_of_time(&self, pending: usize) -> bool {
        self.orders + pending > 0 && Instant::now() >= self.budget_ends
    }

    fn dry(&self) -> bool {
        self.run_id.is_none()
    }

    pub async fn run(mut self) -> anyhow::Result<Outcome> {
        let now = self.clock.now().timestamp();
        let started_at = ch_datetime(&self.clock.now());
        // Events first: facts take each event's city from `dim_events`.
        let event_rows = self.api.all_pages("/events", json!({})).await?;
        let mut events = Vec::with_capacity(event_rows.len());
        let mut shows: Vec<ShowRef> = Vec::new();
        for e in &event_rows {
            let (row, s, warnings) = transform_event(e, self.loaded_at, now)?;
            events.push(row);
            shows.extend(s);
            for w in warnings {
                self.warn(w);
            }
        }
        if !self.dry() {
            self.ch.insert_all("dim_events", &events).await?;
        }

        let previous = if self.dry() && !schema_present(self.ch).await? {
            None
        } else {
            last_watermark(self.ch).await?
        };
        if !self.dry() {
            // From the data, not the journal: a journal without a watermark (window runs only,
            // or a lost journal) does not mean staging is empty.
            self.first_load = staging_is_empty(self.ch).await?;
            let carried = dirty_dates(self.ch).await?;
            if !carried.is_empty() {
                tracing::warn!(
                    dates = %carried.iter().map(ToString::to_string).collect::<Vec<_>>().join(","),
                    "{} date(s) left dirty by a run that failed before its facts: recomputing them",
                    carried.len()
                );
            }
            self.marked.extend(carried.iter().copied());
            self.touched.extend(carried);
        }
        // What was handed to staging is staged even when a later page failed (the next run
        // finds it, its dates dirty), as when staging was waited for batch by batch.
        let fetched = self.fetch_orders(previous).await;
        let staged = self.staged().await;
        let mode = fetched?;
        staged?;
        let sweep = if self.dry() || self.window.is_some() {
            Ok(None)
        } else {
            self.sweep_if_due(mode, &event_rows, now).await
        };
        let staged = self.staged().await;
        let sweep = sweep?;
        staged?;

        // Dates in both modes; the fact rows only when they were written.
        let dates_recomputed = self.touched.len();
        let daily_fact_rows = if self.dry() {
            0
        } else {
            let n = facts::recompute(self.ch, &self.touched, self.loaded_at).await?;
            self.mark(&self.touched.clone(), false).await?;
            n
        };
        let (inventory_shows, inventory_failures) =
            if self.args.qtickets_inventory && self.stopped_after.is_none() {
                self.inventory(&shows).await?
            } else {
                (0, Vec::new())
            };
        let watermark = next_watermark(
            mode,
            self.stopped_after.is_some(),
            previous,
            Watermark {
                updated_at: self.max_updated,
                max_order_id: self.max_id,
            },
            started_at,
        );
        let inventory_warnings = inventory_failures.len();
        let metrics = Metrics::new()
            .with("mode", mode.name())
            .with("orders", self.orders)
            .with("tickets", self.tickets)
            .with("events", events.len())
            .with("dates_recomputed", dates_recomputed)
            .with("daily_fact_rows", daily_fact_rows)
            .with(
                "touched_dates",
                self.touched.iter().copied().collect::<Vec<_>>(),
            )
            .with("inventory_shows", inventory_shows)
            .with("inventory_failed_shows", inventory_failures.len())
            .with("shape_warnings", self.warnings.len())
            .with(
                zakaz_core::journal::WARNINGS,
                inventory_warnings + self.warnings.len(),
            )
            .with(SWEPT_AT, sweep.map_or(0, |(at, _)| at))
            .with("sweep_orders", sweep.map_or(0, |(_, n)| n))
            .with(SWEEP_RESUME_AFTER, self.sweep_resume_after.unwrap_or(0))
            .with("http_requests", self.api.requests_made())
            .with("watermark_updated_at", watermark.map(|w| w.updated_at))
            .with("max_order_id", watermark.map(|w| w.max_order_id))
            .with("complete", self.stopped_after.is_none())
            .with(RESUME_AFTER, self.stopped_after);
        let mut message = format!(
            "{} orders ({} tickets, mode {}), {} events, facts for {} date(s), inventory of {} show(s)",
            self.orders,
            self.tickets,
            mode.name(),
            events.len(),
            self.touched.len(),
            inventory_shows
        );
        if let Some(id) = self.stopped_after {
            message.push_str(&format!(
                "; stopped at the time budget (`QTICKETS_TIME_BUDGET_SECS`): every order up to id {id} is loaded, {}",
                if mode == Mode::Backfill {
                    "the next run resumes the backfill after it"
                } else {
                    "the watermark stays, so the next run reads the same window again"
                }
            ));
        }
        if let Some((_, n)) = sweep {
            message.push_str(&format!(
                "; refund sweep re-read {n} order(s) of shows not yet past"
            ));
        }
        if !self.warnings.is_empty() {
            const SHOWN: usize = 5;
            let mut shown = self.warnings[..self.warnings.len().min(SHOWN)].join("; ");
            if self.warnings.len() > SHOWN {
                shown.push_str(&format!("; and {} more", self.warnings.len() - SHOWN));
            }
            message.push_str(&format!(
                "; {} unexpected shape(s), loaded as noted: {shown}",
                self.warnings.len()
            ));
        }
        // Inventory is best-effort: a show whose seats keep failing must not turn a run that
        // loaded every sale into an error (which would hold the watermark back). The run is
        // `ok` with a warning, which alerts and the healthcheck report on their own.
        if !inventory_failures.is_empty() {
            message.push_str(&format!(
                "; inventory failed for {} show(s): {}",
                inventory_failures.len(),
                inventory_failures.join("; ")
            ));
        }
        if self.dry() {
            message = format!("dry run, nothing written: would write {message}");
            message.push_str(&format!("\n  {REVENUE_RULE}"));
            let cities: HashMap<u64, String> = events
                .iter()
                .map(|e: &EventRow| (e.event_id, e.city.clone()))
                .collect();
            let daily = facts::aggregate::<facts::SalesDailyRow>(&self.preview, &cities, 0, 0);
            for row in daily.into_values() {
                message.push_str(&format!(
                    "\n  {} event {} {}: tickets {} revenue {} refunds {} orders {} (from fetched orders only)",
                    zakaz_core::time::ch_date_to_naive(row.sales_date),
                    row.event_id,
                    row.city,
                    row.tickets_sold,
                    rubles(row.revenue),
                    rubles(row.refunds),
                    row.orders
                ));
            }
        }
        Ok(Outcome {
            rows: self.orders as u64,
            message,
            metrics,
        })
    }

    /// Fetch the orders this run needs and stage them; returns how they were chosen.
    async fn fetch_orders(&mut self, previous: Option<Watermark>) -> anyhow::Result<Mode> {
        let today = self.clock.moscow_today();
        // The newest order a previous run saw: the search for today's newest starts there.
        let known = previous.map_or(0, |w| w.max_order_id);
        if let Some(window) = self.window {
            let max_id = self.api.max_order_id(known).await?;
            // Payment follows creation within minutes; a day of margin on both sides.
            let from = self
                .api
                .first_id_created_since(
                    day_start(window.from.pred_opt().unwrap_or(window.from)),
                    max_id,
                )
                .await?;
            let to = self
                .api
                .first_id_created_since(day_start(window.to + chrono::Days::new(2)), max_id)
                .await?;
            self.fetch_range(from.saturating_sub(1), Some(to), max_id)
                .await?;
            return Ok(Mode::Window);
        }
        let Some(previous) = previous else {
            let resume = if self.dry() {
                None
            } else {
                resume_point(self.ch).await?
            };
            let max_id = self.api.max_order_id(resume.unwrap_or(0)).await?;
            let after = match resume {
                Some(id) => {
                    tracing::info!(
                        "resuming the backfill after order {id}, where the time budget stopped the last run"
                    );
                    id
                }
                None => {
                    let since =
                        today - chrono::Days::new(u64::from(self.args.qtickets_backfill_days - 1));
                    self.api
                        .first_id_created_since(day_start(since), max_id)
                        .await?
                        .saturating_sub(1)
                }
            };
            self.fetch_range(after, None, max_id).await?;
            return Ok(Mode::Backfill);
        };
        let since =
            i64::from(previous.updated_at) - i64::from(self.args.qtickets_overlap_minutes) * 60;
        let since_text = chrono::DateTime::from_timestamp(since, 0)
            .unwrap_or_default()
            .with_timezone(&MOSCOW)
            .format("%Y-%m-%dT%H:%M:%S%:z")
            .to_string();
        // The known orders changed since the last run, then every new order by id, whatever
        // its times: a sale synced late (a box office) arrives with times older than the
        // watermark's overlap, which the `updated_at` filter alone would never return.
        let filter = json!({"column": "updated_at", "operator": ">=", "value": since_text});
        let known_only = Some(previous.max_order_id + 1);
        if self.keyset(0, known_only, &[filter], Some(since)).await? {
            if self.stopped_after.is_none() {
                self.keyset(previous.max_order_id, None, &[], None).await?;
            }
            return Ok(Mode::UpdatedSince);
        }
        tracing::warn!(
            "QTickets ignored the `updated_at` filter; re-reading the last {} days of orders",
            self.args.qtickets_refresh_days
        );
        let max_id = self.api.max_order_id(known).await?;
        let refresh_from =
            today - chrono::Days::new(u64::from(self.args.qtickets_refresh_days - 1));
        let from = self
            .api
            .first_id_created_since(day_start(refresh_from), max_id)
            .await?
            .min(previous.max_order_id + 1);
        self.fetch_range(from.saturating_sub(1), None, max_id)
            .await?;
        Ok(Mode::Rescan)
    }

    /// Orders with `after < id < before` (`before: None`: up to the newest, including orders
    /// created meanwhile), in `QTICKETS_CONCURRENCY` disjoint id ranges keyset-paged at once.
    /// Pages arrive in any order; staging does not care.
    async fn fetch_range(
        &mut self,
        after: u64,
        before: Option<u64>,
        max_id: u64,
    ) -> anyhow::Result<()> {
        let n = u64::from(self.args.qtickets_concurrency);
        // The first page shows where the orders really start (ids need not start near 0); it
        // is read again below, one request spent for an even split.
        let first = self.api.orders_after(after, before, &[]).await?;
        let Some(first_id) = first.data.first().and_then(|o| o.id.as_u64()) else {
            return Ok(());
        };
        let after = first_id.saturating_sub(1);
        let span = before.unwrap_or(max_id + 1).saturating_sub(first_id);
        // Small ranges are not worth splitting.
        if n == 1 || span < n * 200 {
            self.keyset(after, before, &[], None).await?;
            return Ok(());
        }
        let step = span.div_ceil(n);
        let (tx, mut rx) = tokio::sync::mpsc::channel::<RangePage>(2 * n as usize);
        let mut producers = tokio::task::JoinSet::new();
        // Per range: the id every order up to which has been received (its start at first),
        // and whether it is exhausted.
        let mut progress: Vec<(u64, bool)> = Vec::with_capacity(n as usize);
        for i in 0..n {
            let lo = after + i * step;
            // The last range stays open: orders created during the run are read too.
            let hi = if i + 1 == n {
                before
            } else {
                Some(after + (i + 1) * step + 1)
            };
            progress.push((lo, false));
            producers.spawn(produce_range(
                self.api.clone(),
                i as usize,
                lo,
                hi,
                tx.clone(),
            ));
        }
        drop(tx);
        let mut batch = Vec::new();
        // An error here drops the JoinSet, which aborts the other ranges.
        while let Some(page) = rx.recv().await {
            for raw in page.rows? {
                batch.push(transform_order(
                    &raw,
                    self.loaded_at,
                    self.args.qtickets_client_hash_salt.as_ref(),
                )?);
            }
            progress[page.range] = (page.last_id.max(progress[page.range].0), page.done);
            if batch.len() >= self.stage_batch() {
                self.stage(std::mem::take(&mut batch)).await?;
            }
            // Every id up to the slowest unfinished range has arrived; the ranges above it are
            // read again by the next run (staging is idempotent). Stop only once that point
            // has moved, so that every run makes progress.
            let complete_up_to = progress
                .iter()
                .filter(|(_, done)| !done)
                .map(|(id, _)| *id)
                .min()
                .unwrap_or(max_id);
            if complete_up_to > after && self.out_of_time(batch.len()) {
                self.stage(std::mem::take(&mut batch)).await?;
                self.stopped_after = Some(complete_up_to);
                return Ok(());
            }
        }
        // The channel closed: every range must have ended by reading its last page. One that
        // did not (its task panicked or was cancelled) would leave a gap no later run reads.
        while let Some(joined) = producers.join_next().await {
            if let Err(e) = joined {
                return Err(if e.is_panic() {
                    zakaz_core::panic::into_error(e.into_panic())
                } else {
                    anyhow::anyhow!("QTickets: reading an order range was cancelled: {e}")
                });
            }
        }
        if let Some(range) = progress.iter().position(|(_, done)| !done) {
            anyhow::bail!(
                "QTickets: the order range starting after id {} ended before its last page",
                progress[range].0
            );
        }
        self.stage(batch).await
    }

    /// A window run owns only its own dates: the orders at its edges are paid on days whose
    /// other orders it did not read, so their facts (on a fresh database, from this window's
    /// orders alone) would be partial.
    fn own_dates(&self, dates: &mut BTreeSet<NaiveDate>) {
        if let Some(window) = self.window {
            dates.retain(|d| window.contains(*d));
        }
    }

    /// The dates a staged batch makes stale: a window run's own, and those at its edges
    /// that have facts already. Those facts were computed from the staging of earlier runs,
    /// which holds every order of the date; left alone, the newer rows staged now (say, a
    /// refund) would never reach them, since the staged row no longer looks refundable.
    async fn stale_dates(&self, dates: &mut BTreeSet<NaiveDate>) -> anyhow::Result<()> {
        let Some(window) = self.window else {
            return Ok(());
        };
        let edges: Vec<String> = dates
            .iter()
            .filter(|d| !window.contains(**d))
            .map(|d| zakaz_core::time::ch_date(*d).to_string())
            .collect();
        if edges.is_empty() {
            return Ok(());
        }
        let sql = format!(
            "SELECT DISTINCT sales_date FROM fact_qtickets_sales_daily WHERE sales_date IN ({})",
            edges.join(",")
        );
        let with_facts = read_dates(self.ch, "facts at the window's edges", &sql).await?;
        dates.retain(|d| window.contains(*d) || with_facts.contains(d));
        Ok(())
    }

    fn stage_batch(&self) -> usize {
        self.args.qtickets_stage_batch_orders as usize
    }

    /// Record `dates` as dirty (their facts are about to go stale) or clean (rewritten).
    async fn mark(&mut self, dates: &BTreeSet<NaiveDate>, dirty: bool) -> anyhow::Result<()> {
        let rows: Vec<DirtyDateRow> = dates
            .iter()
            .map(|d| DirtyDateRow {
                sales_date: zakaz_core::time::ch_date(*d),
                dirty: u8::from(dirty),
                run_id: self.run_id.clone().unwrap_or_default(),
                marked_at: ch_datetime(&chrono::Utc::now()),
                _version: self.mark_version + u64::from(!dirty),
            })
            .collect();
        self.ch
            .insert_all("stg_qtickets_dirty_dates", &rows)
            .await
            .map_err(|e| e.context("cannot record the dates whose facts must be recomputed"))
    }

    /// Keyset-page orders with `id > after` (`< before`) and `extra` filters, staging them in
    /// batches. With `updated_since`, checks the server honoured that filter: returns false at
    /// the first row that violates it (what was staged before stays valid).
    async fn keyset(
        &mut self,
        mut after: u64,
        before: Option<u64>,
        extra: &[Value],
        updated_since: Option<i64>,
    ) -> anyhow::Result<bool> {
        let mut batch: Vec<model::Transformed> = Vec::new();
        loop {
            let page = self.api.orders_after(after, before, extra).await?;
            for raw in &page.data {
                let t = transform_order(
                    raw,
                    self.loaded_at,
                    self.args.qtickets_client_hash_salt.as_ref(),
                )?;
                if let Some(since) = updated_since
                    && i64::from(t.order.updated_at) < since
                {
                    return Ok(false);
                }
                after = t.order.order_id;
                batch.push(t);
            }
            if batch.len() >= self.stage_batch() {
                self.stage(std::mem::take(&mut batch)).await?;
            }
            if page.is_last_keyset() {
                break;
            }
            if self.out_of_time(batch.len()) {
                self.stage(std::mem::take(&mut batch)).await?;
                self.stopped_after = Some(after);
                return Ok(true);
            }
        }
        self.stage(batch).await?;
        Ok(true)
    }

    /// Write one batch to staging and note the dates it touches (old payment dates included,
    /// in case an order's payment moved or it was un-paid). The dates are recorded as dirty in
    /// ClickHouse *before* the orders are staged: once staged, the old payment dates cannot be
    /// read back, so a run that dies before its facts leaves them for the next run.
    async fn stage(&mut self, batch: Vec<model::Transformed>) -> anyhow::Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        self.staged().await?;
        let mut orders: Vec<OrderRow> = Vec::with_capacity(batch.len());
        let mut tickets: Vec<TicketRow> = Vec::with_capacity(batch.len() * 2);
        let mut dates: BTreeSet<NaiveDate> = BTreeSet::new();
        let mut sale_dates: Vec<SaleDateRow> = Vec::new();
        for mut t in batch {
            for w in std::mem::take(&mut t.warnings) {
                self.warn(w);
            }
            dates.extend(t.sales_date);
            sale_dates.extend(t.sales_date.map(|d| SaleDateRow {
                sales_date: zakaz_core::time::ch_date(d),
                order_id: t.order.order_id,
                _version: u64::from(self.loaded_at),
            }));
            self.max_updated = self.max_updated.max(t.order.updated_at);
            self.max_id = self.max_id.max(t.order.order_id);
            orders.push(t.order);
            tickets.extend(t.tickets);
        }
        self.orders += orders.len();
        self.tickets += tickets.len();
        self.progress.add(orders.len() as u64);
        if self.dry() {
            self.own_dates(&mut dates);
            self.touched.extend(dates);
            self.preview.extend(tickets);
            return Ok(());
        }
        if !self.first_load {
            let ids: Vec<String> = orders.iter().map(|o| o.order_id.to_string()).collect();
            let sql = format!(
                "SELECT DISTINCT toDate(assumeNotNull(payed_at), 'Europe/Moscow') FROM stg_qtickets_orders \
                 WHERE payed = 1 AND payed_at IS NOT NULL AND order_id IN ({})",
                ids.join(",")
            );
            dates.extend(read_dates(self.ch, "previous payment dates", &sql).await?);
        }
        self.stale_dates(&mut dates).await?;
        let new: BTreeSet<NaiveDate> = dates.difference(&self.marked).copied().collect();
        if !new.is_empty() {
            self.mark(&new, true).await?;
            self.marked.extend(new);
        }
        self.touched.extend(dates);
        let ch = self.ch.clone();
        self.staging = Some(Staging(tokio::spawn(async move {
            // Before the orders: a recompute finds a date's orders through this index.
            ch.insert_all("stg_qtickets_sale_dates", &sale_dates)
                .await?;
            let (orders, tickets) = tokio::join!(
                ch.insert_all("stg_qtickets_orders", &orders),
                ch.insert_all("stg_qtickets_tickets", &tickets)
            );
            orders.and(tickets)
        })));
        Ok(())
    }

    /// Wait for the batch staged last (see `staging`).
    async fn staged(&mut self) -> anyhow::Result<()> {
        match self.staging.take() {
            None => Ok(()),
            Some(mut inserts) => (&mut inserts.0).await.map_err(|e| {
                if e.is_panic() {
                    zakaz_core::panic::into_error(e.into_panic())
                } else {
                    anyhow::anyhow!("staging a batch of orders was cancelled: {e}")
                }
            })?,
        }
    }

    /// Capacity, sold and free seats of every upcoming active show. A show that fails is
    /// named in the returned list, never skipped silently.
    async fn inventory(&mut self, shows: &[ShowRef]) -> anyhow::Result<(usize, Vec<String>)> {
        let mut rows = Vec::new();
        let mut failures = Vec::new();
        for show in shows {
            match self.api.seats(show.show_id).await {
                Ok(seats) => {
                    let (capacity, sold, free, warnings) = model::count_seats(show.show_id, &seats);
                    for w in warnings {
                        self.warn(w);
                    }
                    rows.push(InventoryRow {
                        snapshot_at: self.loaded_at,
                        event_id: show.event_id,
                        show_id: show.show_id,
                        city: show.city.clone(),
                        show_start: show.start,
                        capacity,
                        sold,
                        free,
                        run_id: self.run_id.clone().unwrap_or_default(),
                    });
                }
                Err(e) => {
                    tracing::warn!(
                        show_id = show.show_id,
                        "inventory of show failed: {}",
                        zakaz_core::error::one_line(&e)
                    );
                    failures.push(format!(
                        "show {}: {}",
                        show.show_id,
                        zakaz_core::error::one_line(&e)
                    ));
                }
            }
        }
        if !self.dry() {
            self.ch.insert_all("fact_qtickets_inventory", &rows).await?;
        }
        Ok((rows.len(), failures))
    }
}

/// How ticket money becomes revenue (docs/architecture.md, "Ticket money"; the vendor's
/// documentation settles `price` but not `ticket_amount` or `service_fee_amount`).
pub const REVENUE_RULE: &str = "revenue rule: revenue = Σ basket `price` × `quantity` of paid tickets; \
refunds = Σ `refunded_amount`; net = revenue − refunds; `service_fee_amount` (the buyer's fee) \
and `ticket_amount` are not used";

/// The journal metric of the last refund sweep (Unix seconds of the run's clock; 0: none).
const SWEPT_AT: &str = "swept_at";
/// The order id an unfinished sweep stopped after (0: none): the next sweep goes on there.
const SWEEP_RESUME_AFTER: &str = "sweep_resume_after";

/// Orders asked for at once by id (the server's order page size).
const ORDERS_PER_PAGE: usize = 50;

impl Loader<'_> {
    /// The refund sweep, when it is due: (when, orders re-read), or `None` when it was not
    /// due or the time budget ran out first (the next run tries again). A complete backfill
    /// counts as one: it has just read every order.
    async fn sweep_if_due(
        &mut self,
        mode: Mode,
        events: &[Value],
        now: i64,
    ) -> anyhow::Result<Option<(u64, usize)>> {
        self.sweep_resume_after = None;
        let every = i64::from(self.args.qtickets_sweep_hours) * 3600;
        if every == 0 || self.stopped_after.is_some() {
            return Ok(None);
        }
        let now_u = now.max(0) as u64;
        if mode == Mode::Backfill {
            return Ok(Some((now_u, 0)));
        }
        // When the last sweep finished, and where an unfinished one after it stopped.
        let (last, resume): (u64, u64) = self
            .ch
            .read("last refund sweep", |c| async move {
                c.query(
                    "SELECT max(visitParamExtractUInt(metrics, ?)), \
                            argMax(visitParamExtractUInt(metrics, ?), started_at) \
                     FROM meta_job_runs WHERE job = ? AND status = 'ok'",
                )
                .bind(SWEPT_AT)
                .bind(SWEEP_RESUME_AFTER)
                .bind(JOB)
                .fetch_one::<(u64, u64)>()
                .await
            })
            .await?;
        if (now_u as i64) - (last as i64) < every {
            return Ok(None);
        }
        if events.is_empty() {
            // An empty event list is no proof that nothing is ahead: sweep another time.
            self.warn("refund sweep skipped: QTickets listed no events".to_owned());
            return Ok(None);
        }
        let horizon = now - i64::from(self.args.qtickets_sweep_days_after_show) * 86_400;
        let shows: Vec<String> = events
            .iter()
            .flat_map(model::show_starts)
            .filter(|(_, start)| start.is_none_or(|t| t >= horizon))
            .map(|(id, _)| id.to_string())
            .collect();
        if shows.is_empty() {
            return Ok(Some((now_u, 0)));
        }
        // Paid tickets neither refunded nor cancelled yet: those a refund can still reach.
        // An unfinished sweep goes on after the order it stopped at.
        let sql = format!(
            "SELECT DISTINCT order_id FROM stg_qtickets_tickets FINAL \
             WHERE show_id IN ({}) AND is_paid = 1 AND is_refunded = 0 AND is_cancelled = 0 \
               AND order_id > {resume} ORDER BY order_id",
            shows.join(",")
        );
        let sql = sql.as_str();
        let ids: Vec<u64> = self
            .ch
            .read("orders of shows not yet past", |c| async move {
                c.query(sql).fetch_all::<u64>().await
            })
            .await?;
        tracing::info!(
            orders = ids.len(),
            shows = shows.len(),
            "refund sweep: reading the orders of shows not yet past again"
        );
        let mut batch = Vec::new();
        let mut done_up_to = resume;
        for chunk in ids.chunks(ORDERS_PER_PAGE) {
            if self.out_of_time(batch.len()) {
                self.stage(batch).await?;
                self.sweep_resume_after = Some(done_up_to);
                self.warn(format!(
                    "refund sweep stopped at the time budget (`QTICKETS_TIME_BUDGET_SECS`) after order {done_up_to}: the next run goes on from there"
                ));
                return Ok(None);
            }
            let (orders, missing) = self.api.orders_with_ids(chunk).await?;
            if !missing.is_empty() {
                self.warn(format!(
                    "refund sweep: QTickets did not return order(s) {} asked for by id",
                    missing
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(",")
                ));
            }
            for raw in orders {
                batch.push(transform_order(
                    &raw,
                    self.loaded_at,
                    self.args.qtickets_client_hash_salt.as_ref(),
                )?);
            }
            done_up_to = chunk.last().copied().unwrap_or(done_up_to);
            if batch.len() >= self.stage_batch() {
                self.stage(std::mem::take(&mut batch)).await?;
            }
        }
        self.stage(batch).await?;
        Ok(Some((now_u, ids.len())))
    }
}

/// The watermark a successful run leaves. A window run (or one the time budget stopped) saw
/// only part of the orders: it keeps
/// the previous one (and sets none before any full run, so the next run backfills). Otherwise
/// the newest `updated_at` seen, capped at the run's start: an order stamped in the future by
/// a vendor clock error must not move the watermark past orders not yet fetched (and would
/// freeze loading until that time).
pub fn next_watermark(
    mode: Mode,
    stopped: bool,
    previous: Option<Watermark>,
    seen: Watermark,
    started_at: u32,
) -> Option<Watermark> {
    // A run the time budget stopped did not see every order: nothing may advance.
    if mode == Mode::Window || stopped {
        return previous;
    }
    let prev = previous.unwrap_or_default();
    Some(Watermark {
        updated_at: seen.updated_at.max(prev.updated_at).min(started_at),
        max_order_id: seen.max_order_id.max(prev.max_order_id),
    })
}

/// One page of one of `fetch_range`'s concurrent id ranges.
struct RangePage {
    range: usize,
    rows: anyhow::Result<Vec<model::RawOrder>>,
    /// The last id of the page (the range's start for an empty one).
    last_id: u64,
    /// The range is exhausted.
    done: bool,
}

/// One id range of `fetch_range`: its pages, in order, until the range is exhausted.
async fn produce_range(
    api: QTickets,
    range: usize,
    mut after: u64,
    before: Option<u64>,
    tx: tokio::sync::mpsc::Sender<RangePage>,
) {
    loop {
        match api.orders_after(after, before, &[]).await {
            Ok(page) => {
                let done = page.is_last_keyset();
                if let Some(last) = page.data.last().and_then(|o| o.id.as_u64()) {
                    after = last;
                }
                // Debug builds only: the tests' way to make one range's task die mid-way.
                #[cfg(debug_assertions)]
                if !done
                    && std::env::var("ZAKAZ_TEST_PANIC_RANGE").is_ok_and(|r| r == range.to_string())
                {
                    panic!("test panic in order range {range}");
                }
                let sent = tx
                    .send(RangePage {
                        range,
                        rows: Ok(page.data),
                        last_id: after,
                        done,
                    })
                    .await;
                if sent.is_err() || done {
                    return;
                }
            }
            Err(e) => {
                let _ = tx
                    .send(RangePage {
                        range,
                        rows: Err(e),
                        last_id: after,
                        done: true,
                    })
                    .await;
                return;
            }
        }
    }
}

/// A batch's staging inserts in flight. A run that is cancelled (stopped, its lease lost)
/// stops them too: nothing of it goes on writing after it ended. (A run that fails waits for
/// them first, see `Loader::run`.)
struct Staging(tokio::task::JoinHandle<anyhow::Result<()>>);

impl Drop for Staging {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[derive(Debug, Clone, clickhouse::Row, serde::Serialize)]
struct SaleDateRow {
    sales_date: u16,
    order_id: u64,
    _version: u64,
}

#[derive(Debug, Clone, clickhouse::Row, serde::Serialize)]
struct DirtyDateRow {
    sales_date: u16,
    dirty: u8,
    run_id: String,
    marked_at: u32,
    _version: u64,
}

/// Dates a failed run marked dirty and no later run has recomputed.
async fn dirty_dates(ch: &Ch) -> anyhow::Result<BTreeSet<NaiveDate>> {
    let sql = "SELECT sales_date FROM stg_qtickets_dirty_dates FINAL WHERE dirty = 1";
    read_dates(ch, "dirty dates", sql).await
}

/// The dates `sql` selects (one `Date` column); `what` names the read in errors.
async fn read_dates(ch: &Ch, what: &str, sql: &str) -> anyhow::Result<BTreeSet<NaiveDate>> {
    let days: Vec<u16> = ch
        .read(what, |c| {
            let sql = sql.to_owned();
            async move { c.query(&sql).fetch_all::<u16>().await }
        })
        .await?;
    Ok(days
        .into_iter()
        .map(zakaz_core::time::ch_date_to_naive)
        .collect())
}

async fn staging_is_empty(ch: &Ch) -> anyhow::Result<bool> {
    let n: u64 = ch
        .read("staged orders", |c| async move {
            c.query("SELECT count() FROM stg_qtickets_orders")
                .fetch_one::<u64>()
                .await
        })
        .await?;
    Ok(n == 0)
}

#[derive(Debug, Clone, clickhouse::Row, serde::Serialize)]
struct InventoryRow {
    snapshot_at: u32,
    event_id: u64,
    show_id: u64,
    city: String,
    show_start: Option<u32>,
    capacity: u64,
    sold: u64,
    free: u64,
    run_id: String,
}

fn rubles(kopecks: i64) -> String {
    format!("{}.{:02}", kopecks / 100, (kopecks % 100).abs())
}

/// Midnight of a Moscow date, as Unix seconds.
fn day_start(d: NaiveDate) -> i64 {
    use chrono::TimeZone;
    MOSCOW
        .from_local_datetime(&d.and_hms_opt(0, 0, 0).unwrap_or_default())
        .earliest()
        .map_or(0, |t| t.timestamp())
}

/// The metric a run the time budget stopped leaves: every order id up to it is staged.
const RESUME_AFTER: &str = "resume_after_id";

/// Where the last run left a backfill it could not finish: the `resume_after_id` of the latest
/// `ok` run, when that run was an unfinished backfill.
async fn resume_point(ch: &Ch) -> anyhow::Result<Option<u64>> {
    let v = ok_run_metrics(ch, "last run's resume point", "ORDER BY started_at DESC").await?;
    Ok(v.and_then(|v| {
        (v.get("mode")?.as_str()? == "backfill")
            .then(|| v.get(RESUME_AFTER)?.as_u64())
            .flatten()
    }))
}

/// The metrics of this job's first `ok` run in `order` (which may start with `AND …`
/// conditions), parsed.
async fn ok_run_metrics(ch: &Ch, what: &str, order: &str) -> anyhow::Result<Option<Value>> {
    let sql = format!(
        "SELECT metrics FROM meta_job_runs WHERE job = ? AND status = 'ok' {order} LIMIT 1"
    );
    let metrics: Option<String> = ch
        .read(what, |c| {
            let sql = sql.clone();
            async move { c.query(&sql).bind(JOB).fetch_optional::<String>().await }
        })
        .await?;
    Ok(metrics.and_then(|m| serde_json::from_str(&m).ok()))
}

async fn schema_present(ch: &Ch) -> anyhow::Result<bool> {
    Ok(zakaz_core::schema::current_version(ch).await? >= 1)
}

/// The watermark of the successful runs, from the run journal; `None` before the first full
/// run. Watermarks only grow, so the largest is the latest (and start times that share a
/// second cannot confuse it).
pub async fn last_watermark(ch: &Ch) -> anyhow::Result<Option<Watermark>> {
    let v = ok_run_metrics(
        ch,
        "last successful run",
        "AND visitParamExtractUInt(metrics, 'watermark_updated_at') > 0 \
         ORDER BY visitParamExtractUInt(metrics, 'watermark_updated_at') DESC",
    )
    .await?;
    Ok(v.and_then(|v| {
        Some(Watermark {
            updated_at: v.get("watermark_updated_at")?.as_u64()? as u32,
            max_order_id: v.get("max_order_id")?.as_u64()?,
        })
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watermark_never_passes_the_runs_start() {
        let start = 1_781_514_000;
        let prev = Watermark {
            updated_at: start - 900,
            max_order_id: 10,
        };
        let seen = |updated_at, max_order_id| Watermark {
            updated_at,
            max_order_id,
        };
        // A vendor clock a day ahead.
        let w = next_watermark(
            Mode::UpdatedSince,
            false,
            Some(prev),
            seen(start + 86_400, 12),
            start,
        )
        .unwrap();
        assert_eq!(w, seen(start, 12));
        // A stored future watermark (from before this rule) is pulled back too.
        let w = next_watermark(
            Mode::UpdatedSince,
            false,
            Some(seen(start + 5, 12)),
            seen(0, 0),
            start,
        );
        assert_eq!(w, Some(seen(start, 12)));
        // Normal progress.
        let w = next_watermark(Mode::Backfill, false, None, seen(start - 60, 99), start);
        assert_eq!(w, Some(seen(start - 60, 99)));
        // A stopped run advances nothing.
        assert_eq!(
            next_watermark(
                Mode::UpdatedSince,
                true,
                Some(prev),
                seen(start - 60, 99),
                start
            ),
            Some(prev)
        );
        assert_eq!(
            next_watermark(Mode::Backfill, true, None, seen(start - 60, 99), start),
            None
        );
        // A window run keeps what was there, or sets none.
        assert_eq!(
            next_watermark(Mode::Window, false, None, seen(start - 60, 99), start),
            None
        );
        assert_eq!(
            next_watermark(Mode::Window, false, Some(prev), seen(start - 60, 99), start),
            Some(prev)
        );
    }
}

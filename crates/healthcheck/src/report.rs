//! What the healthcheck knows: the journal and freshness rows read from ClickHouse, judged by
//! the same rules as `alerts` (`zakaz_core::checks`) against the job table.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Days, NaiveDate, Utc};
use serde::Serialize;
use zakaz_core::ch::Ch;
use zakaz_core::checks::{self, Condition, FreshnessRow, JobState, OpenAlert};
use zakaz_core::jobs::{JOBS, Job, Schedule};
use zakaz_core::time::MOSCOW;

/// The status page's run timelines cover this many days up to now.
pub const TIMELINE_DAYS: i64 = 7;
/// The status page's source charts cover this many Moscow dates up to today.
pub const CHART_DAYS: u64 = 30;

/// ok < warning < error: the overall verdict is the worst of its parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Ok,
    Warning,
    Error,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Warning => "warning",
            Verdict::Error => "error",
        }
    }

    /// 0 ok, 1 warning, 2 error (the `/metrics` encoding).
    pub fn level(self) -> u8 {
        self as u8
    }

    fn of(condition: &Condition) -> Verdict {
        if condition.severity == "critical" {
            Verdict::Error
        } else {
            Verdict::Warning
        }
    }
}

/// Per job, what the journal says (one row of [`JOURNAL_QUERY`]).
#[derive(Debug, Clone, Default, clickhouse::Row, serde::Deserialize)]
pub struct JobRuns {
    pub job: String,
    pub run_id: String,
    pub status: String,
    pub started_at: u32,
    /// 0 while running or when the end never arrived.
    pub finished_at: u32,
    pub rows: u64,
    pub message: String,
    pub first_seen_at: u32,
    /// 0 when never.
    pub last_ok_at: u32,
    pub last_ok_duration: u32,
    pub ok_runs: u64,
    pub error_runs: u64,
    pub running_runs: u64,
    pub unfinished_runs: u64,
    pub warnings: u64,
    /// Start of the last run before the timelines' window (0 when none).
    pub before_window: u32,
}

/// Read from [`zakaz_core::journal::runs_as_of`] the refresh's instant (`{runs}`).
const JOURNAL_QUERY: &str = "SELECT job, argMax(run_id, started_at), argMax(status, started_at), \
    toUInt32(max(started_at)), argMax(ifNull(toUInt32(finished_at), 0), started_at), \
    argMax(rows_processed, started_at), argMax(message, started_at), toUInt32(min(started_at)), \
    toUInt32(maxIf(started_at, status = 'ok')), \
    toUInt32(argMaxIf(ifNull(toUInt32(finished_at), 0) - toUInt32(started_at), started_at, status = 'ok')), \
    countIf(status = 'ok'), countIf(status = 'error'), countIf(status = 'running'), \
    countIf(status = 'unfinished'), argMax(visitParamExtractUInt(metrics, 'warnings'), started_at), \
    toUInt32(maxIf(started_at, started_at < toDateTime({from}))) AS before_window \
    FROM {runs} GROUP BY job";

/// Per job and hour of the timelines' window, the runs that started in it (one row of
/// [`HOURS_QUERY`]): at most 24 × [`TIMELINE_DAYS`] rows per job however often it ran.
#[derive(Debug, Clone, Default, PartialEq, clickhouse::Row, serde::Deserialize)]
pub struct RunHour {
    pub job: String,
    /// The hour's start (Unix time; Moscow hours are whole UTC hours).
    pub hour: u32,
    /// `ok` without warnings.
    pub ok: u64,
    /// `ok` with problems worked around.
    pub warnings: u64,
    pub error: u64,
    /// `unfinished`: no end recorded before the deadline.
    pub killed: u64,
    pub running: u64,
    pub unknown: u64,
    /// The longest run that started in the hour, seconds: a running one until now, a killed
    /// one until its deadline.
    pub longest: u32,
    pub first_start: u32,
    pub last_start: u32,
    /// Gaps between consecutive starts inside the hour longer than the shortest missed-run
    /// window any job can have: where each ended, and how long it was.
    pub gap_ends: Vec<u32>,
    pub gap_lengths: Vec<u32>,
}

/// `{runs}`, `{from}`, `{now}`, `{gap}` are filled in by [`gather`].
const HOURS_QUERY: &str = "SELECT job, toUInt32(intDiv(toUInt32(started_at), 3600) * 3600) AS hour, \
    countIf(status = 'ok' AND w = 0) AS ok, countIf(status = 'ok' AND w > 0) AS warnings, \
    countIf(status = 'error') AS error, countIf(status = 'unfinished') AS killed, \
    countIf(status = 'running') AS running, \
    countIf(status NOT IN ('ok', 'error', 'unfinished', 'running')) AS unknown, \
    toUInt32(max(took)) AS longest, toUInt32(min(started_at)) AS first_start, \
    toUInt32(max(started_at)) AS last_start, \
    arrayFilter((e, d) -> d > {gap}, arraySort(groupArray(toUInt32(started_at))) AS s, arrayDifference(s)) AS gap_ends, \
    arrayMap(d -> toUInt32(d), arrayFilter(d -> d > {gap}, arrayDifference(s))) AS gap_lengths \
    FROM (SELECT job, status, started_at, visitParamExtractUInt(metrics, 'warnings') AS w, \
          greatest(toInt64(least(ifNull(toUInt32(finished_at), toUInt32(deadline_at)), {now})) - toInt64(toUInt32(started_at)), 0) AS took \
          FROM {runs} WHERE started_at >= toDateTime({from}) AND started_at <= toDateTime({now})) \
    GROUP BY job, hour ORDER BY job, hour";

/// What a source's chart shows per day, read from its table (the one `v_data_freshness`
/// reads for it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeriesSpec {
    pub source: &'static str,
    pub table: &'static str,
    pub date: &'static str,
    /// An aggregate over the day's rows.
    pub value: &'static str,
    /// What the value counts, for labels.
    pub unit: &'static str,
}

/// Sales for the ticket sources, loaded rows for the advertising ones.
pub const SERIES: &[SeriesSpec] = &[
    SeriesSpec {
        source: "qtickets",
        table: "fact_qtickets_sales_daily",
        date: "sales_date",
        value: "sum(tickets_sold)",
        unit: "tickets sold",
    },
    SeriesSpec {
        source: "vk_ads",
        table: "fact_vk_ads_daily",
        date: "stat_date",
        value: "count()",
        unit: "rows",
    },
    SeriesSpec {
        source: "direct",
        table: "fact_direct_daily",
        date: "stat_date",
        value: "count()",
        unit: "rows",
    },
    SeriesSpec {
        source: "gmail_ingest",
        table: "stg_mail_sales",
        date: "report_date",
        value: "sum(tickets_sold)",
        unit: "tickets sold",
    },
];

/// One source's value on one date (a row of [`series_query`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, clickhouse::Row, serde::Deserialize)]
pub struct DayValue {
    pub source: String,
    /// ClickHouse's `Date`: days since 1970-01-01.
    pub day: u16,
    pub value: u64,
}

/// One small aggregate per source over `from..=to`, in one read.
fn series_query(from: NaiveDate, to: NaiveDate) -> String {
    SERIES
        .iter()
        .map(|s| {
            format!(
                "SELECT '{source}' AS source, toUInt16({date}) AS day, toUInt64({value}) AS value \
                 FROM {table} FINAL WHERE {date} >= toDate('{from}') AND {date} <= toDate('{to}') \
                 GROUP BY {date}",
                source = s.source,
                date = s.date,
                value = s.value,
                table = s.table,
            )
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ")
}

/// The shortest missed-run window any timer job can have (at the lowest tolerance, 1.0):
/// gaps inside an hour shorter than this can never be a missed run.
fn gap_floor() -> u32 {
    JOBS.iter()
        .filter_map(|j| checks::missed_after(j, 1.0))
        .map(|d| d.as_secs() as u32)
        .min()
        .unwrap_or(3600)
}

/// Everything read from ClickHouse in one refresh.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    pub version: String,
    pub runs: Vec<JobRuns>,
    pub freshness: Vec<FreshnessRow>,
    pub firing: Vec<OpenAlert>,
    /// The campaign queue per shard, when it is configured.
    pub queue: Vec<camp_queue::status::ShardStatus>,
    /// Runs per job and hour of the timelines' window; `None` when they could not be read
    /// (the page says so; probes do not depend on them).
    pub hours: Option<Vec<RunHour>>,
    /// Per source and date of the charts' window; `None` when they could not be read.
    pub days: Option<Vec<DayValue>>,
    /// On a ClickHouse cluster, every replica's health, and its problems judged by the
    /// `CLICKHOUSE_REPLICA_MAX_*` thresholds (empty on one server).
    pub replicas: Vec<zakaz_core::replicas::ReplicaHealth>,
    pub replica_conditions: Vec<Condition>,
}

/// One refresh: small aggregate reads (the server's version, the journal per job and per hour
/// of the last days, `v_data_freshness`, each source's last days, open alerts), and the
/// queue's status when it is configured.
pub async fn gather(
    ch: &Ch,
    queue: Option<&camp_queue::db::Deployment>,
    now: chrono::NaiveDateTime,
) -> anyhow::Result<Inputs> {
    let version = ch
        .read("server version", |c| async move {
            c.query("SELECT version()").fetch_one::<String>().await
        })
        .await?;
    let runs_as_of = zakaz_core::journal::runs_as_of(&now.and_utc());
    let now_unix = zakaz_core::time::ch_datetime(&now.and_utc());
    let from = now_unix.saturating_sub((TIMELINE_DAYS * 86_400) as u32);
    let sql = JOURNAL_QUERY
        .replace("{runs}", &runs_as_of)
        .replace("{from}", &from.to_string());
    let sql = sql.as_str();
    let runs = ch
        .read("job runs", |c| async move {
            c.query(sql).fetch_all::<JobRuns>().await
        })
        .await?;
    // The page's history: a failed read leaves the charts out, never the probes' answers.
    let hours_sql = HOURS_QUERY
        .replace("{runs}", &runs_as_of)
        .replace("{from}", &from.to_string())
        .replace("{now}", &now_unix.to_string())
        .replace("{gap}", &gap_floor().to_string());
    let hours_sql = hours_sql.as_str();
    let today = zakaz_core::time::moscow_date(&now.and_utc());
    let days_sql = series_query(chart_start(today), today);
    let days_sql = days_sql.as_str();
    let (hours, days) = tokio::join!(
        ch.read("job runs per hour", |c| async move {
            c.query(hours_sql).fetch_all::<RunHour>().await
        }),
        ch.read("source rows per day", |c| async move {
            c.query(days_sql).fetch_all::<DayValue>().await
        }),
    );
    let hours = hours
        .inspect_err(|e| tracing::warn!("{}", zakaz_core::error::one_line(e)))
        .ok();
    let days = days
        .inspect_err(|e| tracing::warn!("{}", zakaz_core::error::one_line(e)))
        .ok();
    let freshness = checks::freshness_rows(ch).await?;
    // On a cluster: the replicas' health (a failure to read it goes to the log).
    let (replicas, replica_conditions) = zakaz_core::replicas::replica_problems(ch)
        .await
        .inspect_err(|e| tracing::warn!("{}", zakaz_core::error::one_line(e)))
        .unwrap_or_default();
    let mut firing: Vec<OpenAlert> = checks::open_alerts(ch)
        .await?
        .into_values()
        .filter(|a| a.state == "firing")
        .collect();
    firing.sort_by(|a, b| a.fingerprint.cmp(&b.fingerprint));
    Ok(Inputs {
        version,
        runs,
        freshness,
        firing,
        queue: match queue {
            Some(q) => camp_queue::status::collect(q, now).await,
            None => Vec::new(),
        },
        hours,
        days,
        replicas,
        replica_conditions,
    })
}

/// The first date of the charts' window ending `today`.
pub fn chart_start(today: NaiveDate) -> NaiveDate {
    today
        .checked_sub_days(Days::new(CHART_DAYS - 1))
        .unwrap_or(today)
}

/// What a verdict is judged against: the caller's clock, enablement and tolerance.
#[derive(Debug, Clone)]
pub struct Context {
    pub now: DateTime<Utc>,
    pub enabled: HashSet<&'static str>,
    pub tolerance: f64,
    /// Whether the report may carry free text from runs and databases (their messages,
    /// ClickHouse's and MySQL's error text, with table, host and account names): yes for
    /// `--once` on the operator's terminal, never over HTTP, where anyone may ask.
    pub show_messages: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub status: Verdict,
    pub generated_at: String,
    pub clickhouse: ClickHouseHealth,
    pub jobs: Vec<JobHealth>,
    pub sources: Vec<SourceHealth>,
    pub open_alerts: Vec<AlertSummary>,
    /// Per shard: queue ages, sizes, waiting clients, heartbeats (empty when not configured).
    pub queue: Vec<camp_queue::status::ShardStatus>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClickHouseHealth {
    pub reachable: bool,
    pub version: Option<String>,
    /// On a cluster: every replica (absent on one server).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<ReplicaReport>,
}

/// One replica of the cluster: whether it answers, its read-only tables, delay and queue
/// (`system.replicas`), and the verdict of the thresholds.
#[derive(Debug, Clone, Serialize)]
pub struct ReplicaReport {
    #[serde(flatten)]
    pub health: zakaz_core::replicas::ReplicaHealth,
    pub verdict: Verdict,
    pub reasons: Vec<String>,
}

fn replica_reports(inputs: &Inputs) -> Vec<ReplicaReport> {
    inputs
        .replicas
        .iter()
        .map(|health| {
            let mine: Vec<&Condition> = inputs
                .replica_conditions
                .iter()
                .filter(|c| c.details["replica"] == health.replica.as_str())
                .collect();
            ReplicaReport {
                health: health.clone(),
                verdict: mine
                    .iter()
                    .map(|c| Verdict::of(c))
                    .max()
                    .unwrap_or(Verdict::Ok),
                reasons: mine.iter().map(|c| c.message.clone()).collect(),
            }
        })
        .collect()
}

#[derive(Debug, Clone, Serialize)]
pub struct JobHealth {
    pub job: &'static str,
    pub kind: &'static str,
    pub enabled: bool,
    pub verdict: Verdict,
    pub reasons: Vec<String>,
    pub last_run: Option<LastRun>,
    pub last_success_at: Option<String>,
    pub last_success_duration_seconds: Option<u32>,
    pub next_run_at: Option<String>,
    pub runs: RunCounts,
    #[serde(skip)]
    pub last_success_unix: Option<u32>,
    #[serde(skip)]
    pub next_run_unix: Option<i64>,
    /// The status page's picture of its last days (not in the JSON).
    #[serde(skip)]
    pub timeline: Timeline,
}

/// Runs counted by what became of them (the words of [`category`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub ok: u64,
    pub warnings: u64,
    pub error: u64,
    pub killed: u64,
    pub running: u64,
    pub unknown: u64,
}

impl Tally {
    pub fn total(&self) -> u64 {
        self.ok + self.warnings + self.error + self.killed + self.running + self.unknown
    }

    /// The counts by category word, in the order the page lists them.
    pub fn by_category(&self) -> [(&'static str, u64); 6] {
        [
            ("ok", self.ok),
            ("warnings", self.warnings),
            ("error", self.error),
            ("killed", self.killed),
            ("running", self.running),
            ("unknown", self.unknown),
        ]
    }

    /// The category runs drawn together are shown in: the worst of them.
    pub fn worst(&self) -> &'static str {
        [
            ("killed", self.killed),
            ("error", self.error),
            ("unknown", self.unknown),
            ("warnings", self.warnings),
            ("running", self.running),
            ("ok", self.ok),
        ]
        .into_iter()
        .find(|(_, n)| *n > 0)
        .map_or("ok", |(word, _)| word)
    }

    fn add(&mut self, other: &Tally) {
        self.ok += other.ok;
        self.warnings += other.warnings;
        self.error += other.error;
        self.killed += other.killed;
        self.running += other.running;
        self.unknown += other.unknown;
    }
}

/// The runs that started in one hour.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HourBar {
    /// The hour's start (Unix time).
    pub start: i64,
    pub runs: Tally,
    /// The longest of them, seconds.
    pub longest: u32,
}

/// Expected runs that did not happen: no run started from `from` (the first expected
/// elapse) to `to` (the next run, or now).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Missed {
    pub from: i64,
    pub to: i64,
    /// Elapses of the job's calendar in the span (0 when its calendar cannot be read).
    pub expected: u32,
}

/// Where a job's timeline comes from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum History {
    /// The run journal: bars and missed spans.
    #[default]
    Runs,
    /// A service or the queue's workers: not in the run journal.
    NotJournaled,
    /// The journal could not be read.
    Unavailable,
}

/// A job's last [`TIMELINE_DAYS`]: its runs per hour and the spans where runs were missed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Timeline {
    /// The window, Unix time: `to` is now.
    pub from: i64,
    pub to: i64,
    pub history: History,
    /// Hours with runs, in order.
    pub hours: Vec<HourBar>,
    pub missed: Vec<Missed>,
    /// Whether missed runs are looked for (enabled timer jobs only).
    pub expected: bool,
    /// The job's timeout, seconds: a bar reaching the top ran that long.
    pub timeout: u32,
    pub total: Tally,
    pub longest: u32,
}

impl Timeline {
    pub fn missed_runs(&self) -> u32 {
        self.missed.iter().map(|m| m.expected).sum()
    }
}

/// The gaps between the starts of a job's runs: from `before` (its last start before the
/// window, or when the journal began) through the hours' starts (`hours` in order) to `now`.
pub fn gaps(before: Option<i64>, hours: &[RunHour], now: i64) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    let mut prev = before;
    for h in hours {
        if let Some(p) = prev {
            out.push((p, i64::from(h.first_start)));
        }
        for (end, len) in h.gap_ends.iter().zip(&h.gap_lengths) {
            out.push((i64::from(*end) - i64::from(*len), i64::from(*end)));
        }
        prev = Some(i64::from(h.last_start));
    }
    if let Some(p) = prev {
        out.push((p, now));
    }
    out
}

/// Where a timer job was expected and did not run: every gap longer than its missed-run
/// window ([`checks::missed_after`]), from the first elapse of its calendar after the gap's
/// start to the gap's end, with the elapses whose run should have started (elapse +
/// randomized delay) before that end; only what lies in `from..now`.
pub fn missed(job: &Job, gaps: &[(i64, i64)], from: i64, now: i64, tolerance: f64) -> Vec<Missed> {
    let (
        Schedule::Timer {
            on_calendar,
            randomized_delay,
            interval,
            ..
        },
        Some(window),
    ) = (job.schedule, checks::missed_after(job, tolerance))
    else {
        return Vec::new();
    };
    let window = window.as_secs() as i64;
    let delay = randomized_delay.as_secs() as i64;
    let calendar = zakaz_core::calendar::Calendar::parse(on_calendar);
    gaps.iter()
        .filter(|(start, end)| end - start > window)
        .filter_map(|&(start, end)| {
            let end = end.min(now);
            let Some(calendar) = &calendar else {
                // A calendar this build cannot read: the gap past one interval.
                let first = (start + interval.as_secs() as i64).max(from);
                return (first < end).then_some(Missed {
                    from: first,
                    to: end,
                    expected: 0,
                });
            };
            let mut after = DateTime::from_timestamp(start.max(from - 1), 0)?;
            let (mut first, mut expected) = (None, 0);
            while let Some(tick) = calendar.next_after(after) {
                if tick.timestamp() + delay >= end {
                    break;
                }
                first.get_or_insert(tick.timestamp());
                expected += 1;
                after = tick;
            }
            first.map(|first| Missed {
                from: first,
                to: end,
                expected,
            })
        })
        .collect()
}

/// A job's timeline from the hours read for it.
fn timeline(
    job: &Job,
    enabled: bool,
    inputs: Option<&Inputs>,
    runs: Option<&JobRuns>,
    journal_began: Option<u32>,
    ctx: &Context,
) -> Timeline {
    let to = ctx.now.timestamp();
    let from = to - TIMELINE_DAYS * 86_400;
    let base = Timeline {
        from,
        to,
        ..Timeline::default()
    };
    let Schedule::Timer { timeout, .. } = job.schedule else {
        return Timeline {
            history: History::NotJournaled,
            ..base
        };
    };
    let Some(all) = inputs.and_then(|i| i.hours.as_ref()) else {
        return Timeline {
            history: History::Unavailable,
            ..base
        };
    };
    let mine: Vec<RunHour> = all.iter().filter(|h| h.job == job.name).cloned().collect();
    let hours: Vec<HourBar> = mine
        .iter()
        .map(|h| HourBar {
            start: i64::from(h.hour),
            runs: Tally {
                ok: h.ok,
                warnings: h.warnings,
                error: h.error,
                killed: h.killed,
                running: h.running,
                unknown: h.unknown,
            },
            longest: h.longest,
        })
        .collect();
    let mut total = Tally::default();
    for h in &hours {
        total.add(&h.runs);
    }
    let before = runs
        .map(|r| r.before_window)
        .filter(|t| *t > 0)
        .or(journal_began)
        .map(i64::from);
    Timeline {
        missed: if enabled {
            missed(job, &gaps(before, &mine, to), from, to, ctx.tolerance)
        } else {
            Vec::new()
        },
        expected: enabled,
        timeout: timeout.as_secs() as u32,
        total,
        longest: hours.iter().map(|h| h.longest).max().unwrap_or(0),
        hours,
        ..base
    }
}

/// A source's last [`CHART_DAYS`] dates and its value on each (0 when it has no rows).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Chart {
    /// What the values count (`tickets sold`, `rows`).
    pub unit: &'static str,
    pub days: Vec<(NaiveDate, u64)>,
    /// False when the values could not be read.
    pub available: bool,
}

fn chart(source: &str, inputs: Option<&Inputs>, today: NaiveDate) -> Chart {
    let unit = SERIES
        .iter()
        .find(|s| s.source == source)
        .map_or("rows", |s| s.unit);
    let Some(values) = inputs.and_then(|i| i.days.as_ref()) else {
        return Chart {
            unit,
            ..Chart::default()
        };
    };
    let start = chart_start(today);
    let days = start
        .iter_days()
        .take_while(|d| *d <= today)
        .map(|d| {
            let day = zakaz_core::time::ch_date(d);
            let value = values
                .iter()
                .filter(|v| v.source == source && v.day == day)
                .map(|v| v.value)
                .sum();
            (d, value)
        })
        .collect();
    Chart {
        unit,
        days,
        available: true,
    }
}

/// A job's latest run. Its message stays in the journal (`meta_job_runs`, by `run_id`).
#[derive(Debug, Clone, Serialize)]
pub struct LastRun {
    pub run_id: String,
    pub status: String,
    /// What became of it: see [`category`].
    pub category: &'static str,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub duration_seconds: u32,
    pub rows: u64,
    #[serde(skip)]
    pub started_unix: u32,
}

/// A run's outcome in a fixed word, from its status and warnings: `ok`, `warnings` (ok, with
/// problems worked around), `running`, `error` (it ended with an error: the program's own,
/// a bad configuration, an unreachable service, or SIGTERM at systemd's timeout), `killed`
/// (it never recorded an end before its deadline: SIGKILL, OOM, reboot), `unknown`.
pub fn category(status: &str, warnings: u64) -> &'static str {
    match status {
        "ok" if warnings > 0 => "warnings",
        "ok" => "ok",
        "running" => "running",
        "error" => "error",
        "unfinished" => "killed",
        _ => "unknown",
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct RunCounts {
    pub ok: u64,
    pub error: u64,
    pub running: u64,
    pub unfinished: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SourceHealth {
    pub source: &'static str,
    pub job: &'static str,
    /// `fresh`, `stale`, `never` (no row at all) or `disabled` (its job is off).
    pub state: &'static str,
    pub latest_date: Option<String>,
    pub lag_days: Option<i64>,
    pub max_lag_days: u32,
    pub rows: u64,
    pub verdict: Verdict,
    pub reason: String,
    /// The status page's chart of its last days (not in the JSON).
    #[serde(skip)]
    pub chart: Chart,
}

#[derive(Debug, Clone, Serialize)]
pub struct AlertSummary {
    pub fingerprint: String,
    pub job: String,
    pub alert_type: String,
    pub title: String,
}

fn msk(unix: i64) -> String {
    DateTime::from_timestamp(unix, 0)
        .unwrap_or_default()
        .with_timezone(&MOSCOW)
        .to_rfc3339()
}

/// Judge `inputs` (`None`: ClickHouse did not answer). Pure: the same inputs and context give
/// the same report.
pub fn evaluate(inputs: Option<&Inputs>, ctx: &Context) -> Report {
    let now = zakaz_core::time::ch_datetime(&ctx.now);
    let runs: HashMap<&str, &JobRuns> = inputs
        .map(|i| i.runs.iter().map(|r| (r.job.as_str(), r)).collect())
        .unwrap_or_default();
    let states: HashMap<String, JobState> = runs
        .values()
        .map(|r| (r.job.clone(), job_state(r, ctx.show_messages)))
        .collect();
    let evidence = checks::oldest_evidence(&states);
    let jobs: Vec<JobHealth> = JOBS
        .iter()
        .map(|job| {
            let enabled = ctx.enabled.contains(job.name);
            let (verdict, reasons) = match (inputs, job.schedule) {
                (None, _) => (
                    Verdict::Error,
                    vec!["ClickHouse unreachable: the job's state is unknown".to_owned()],
                ),
                // The queue's health is its own section (age, heartbeats), not a run journal.
                (Some(_), Schedule::Service { .. } | Schedule::Workers { .. }) => {
                    (Verdict::Ok, Vec::new())
                }
                (Some(_), Schedule::Timer { .. }) => {
                    let state = states.get(job.name).cloned().unwrap_or_default();
                    let found =
                        checks::job_conditions(job, &state, enabled, now, ctx.tolerance, evidence);
                    (
                        found.iter().map(Verdict::of).max().unwrap_or(Verdict::Ok),
                        found.into_iter().map(|c| c.message).collect(),
                    )
                }
            };
            let mine = runs.get(job.name).copied();
            JobHealth {
                timeline: timeline(job, enabled, inputs, mine, evidence, ctx),
                ..job_health(job, enabled, verdict, reasons, mine, ctx)
            }
        })
        .collect();
    let today = zakaz_core::time::moscow_date(&ctx.now);
    let sources: Vec<SourceHealth> = JOBS
        .iter()
        .filter_map(|job| {
            let fresh = job.freshness?;
            let row = inputs.and_then(|i| i.freshness.iter().find(|r| r.source == fresh.source));
            let enabled = ctx.enabled.contains(job.name);
            let lag = row.and_then(|r| r.days_behind(today));
            let stale = row
                .map(|r| {
                    checks::stale_conditions(
                        std::slice::from_ref(r),
                        &|j| j.name == job.name,
                        today,
                    )
                })
                .unwrap_or_default();
            let (state, verdict, reason) = match (inputs, row) {
                (None, _) => (
                    "unknown",
                    Verdict::Error,
                    "ClickHouse unreachable".to_owned(),
                ),
                (Some(_), None) => (
                    "unknown",
                    Verdict::Warning,
                    "not in v_data_freshness".to_owned(),
                ),
                (Some(_), Some(_)) if !enabled => (
                    if lag.is_none() { "never" } else { "disabled" },
                    Verdict::Ok,
                    "its job is disabled".to_owned(),
                ),
                (Some(_), Some(_)) => match (stale.first(), lag) {
                    (Some(c), None) => ("never", Verdict::of(c), c.message.clone()),
                    (Some(c), Some(_)) => ("stale", Verdict::of(c), c.message.clone()),
                    (None, _) => ("fresh", Verdict::Ok, String::new()),
                },
            };
            Some(SourceHealth {
                source: fresh.source,
                job: job.name,
                state,
                latest_date: lag.and(row.map(|r| r.latest_date.clone())),
                lag_days: lag,
                max_lag_days: fresh.max_days_behind,
                rows: row.map_or(0, |r| r.total_rows),
                verdict,
                reason,
                chart: chart(fresh.source, inputs, today),
            })
        })
        .collect();
    let replicas = inputs.map(replica_reports).unwrap_or_default();
    let status = jobs
        .iter()
        .map(|j| j.verdict)
        .chain(sources.iter().map(|s| s.verdict))
        .chain(replicas.iter().map(|r| r.verdict))
        .chain(inputs.is_none().then_some(Verdict::Error))
        .max()
        .unwrap_or(Verdict::Ok);
    Report {
        status,
        generated_at: msk(ctx.now.timestamp()),
        clickhouse: ClickHouseHealth {
            reachable: inputs.is_some(),
            version: inputs.map(|i| i.version.clone()),
            replicas,
        },
        jobs,
        sources,
        queue: inputs
            .map(|i| {
                let mut queue = i.queue.clone();
                if !ctx.show_messages {
                    for shard in &mut queue {
                        if shard.error.is_some() {
                            shard.error = Some("unreachable".to_owned());
                        }
                    }
                }
                queue
            })
            .unwrap_or_default(),
        open_alerts: inputs
            .map(|i| {
                i.firing
                    .iter()
                    .map(|a| AlertSummary {
                        fingerprint: a.fingerprint.clone(),
                        job: a.job.clone(),
                        alert_type: a.alert_type.clone(),
                        title: a.title.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// The journal row as the shared rules see it: the current state only (no "since the last
/// check" counts: a probe has no last check). Without messages, the rules' reasons name the
/// run whose message tells more ("last error: see run …").
fn job_state(r: &JobRuns, show_messages: bool) -> JobState {
    JobState {
        job: r.job.clone(),
        last_status: r.status.clone(),
        last_message: if show_messages {
            r.message.clone()
        } else {
            format!("see run {}", r.run_id)
        },
        last_ok_at: r.last_ok_at,
        first_seen_at: r.first_seen_at,
        last_warnings: r.warnings,
        ..JobState::default()
    }
}

fn job_health(
    job: &'static Job,
    enabled: bool,
    verdict: Verdict,
    reasons: Vec<String>,
    runs: Option<&JobRuns>,
    ctx: &Context,
) -> JobHealth {
    let now = ctx.now.timestamp();
    let next = match job.schedule {
        Schedule::Timer { on_calendar, .. } if enabled => {
            zakaz_core::calendar::next_elapse(on_calendar, ctx.now).map(|t| t.timestamp())
        }
        _ => None,
    };
    let last_run = runs.map(|r| {
        let end = if r.finished_at > 0 {
            i64::from(r.finished_at)
        } else {
            now
        };
        LastRun {
            run_id: r.run_id.clone(),
            status: r.status.clone(),
            started_at: msk(i64::from(r.started_at)),
            finished_at: (r.finished_at > 0).then(|| msk(i64::from(r.finished_at))),
            duration_seconds: (end - i64::from(r.started_at)).clamp(0, i64::from(u32::MAX)) as u32,
            rows: r.rows,
            category: category(&r.status, r.warnings),
            started_unix: r.started_at,
        }
    });
    let last_ok = runs.map(|r| r.last_ok_at).filter(|t| *t > 0);
    JobHealth {
        job: job.name,
        kind: match job.schedule {
            Schedule::Timer { .. } => "timer",
            Schedule::Workers { .. } => "workers",
            Schedule::Service { .. } => "service",
        },
        enabled,
        verdict,
        reasons,
        last_run,
        last_success_at: last_ok.map(|t| msk(i64::from(t))),
        last_success_duration_seconds: last_ok.and(runs.map(|r| r.last_ok_duration)),
        next_run_at: next.map(msk),
        runs: runs
            .map(|r| RunCounts {
                ok: r.ok_runs,
                error: r.error_runs,
                running: r.running_runs,
                unfinished: r.unfinished_runs,
            })
            .unwrap_or_default(),
        last_success_unix: last_ok,
        next_run_unix: next,
        timeline: Timeline::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(now: i64) -> Context {
        Context {
            now: DateTime::from_timestamp(now, 0).unwrap(),
            enabled: JOBS
                .iter()
                .filter(|j| j.enabled_by_default)
                .map(|j| j.name)
                .collect(),
            tolerance: 1.5,
            show_messages: false,
        }
    }

    #[test]
    fn without_clickhouse_everything_is_an_error_but_every_job_is_listed() {
        let report = evaluate(None, &ctx(1_780_000_000));
        assert_eq!(report.status, Verdict::Error);
        assert!(!report.clickhouse.reachable);
        assert_eq!(report.jobs.len(), JOBS.len());
        assert!(report.jobs.iter().all(|j| j.verdict == Verdict::Error));
    }

    #[test]
    fn a_failed_last_run_is_an_error_and_a_disabled_source_is_fine() {
        let now = 1_780_000_000;
        let inputs = Inputs {
            version: "18.16.1".into(),
            runs: vec![JobRuns {
                job: "qtickets".into(),
                run_id: "r-1".into(),
                status: "error".into(),
                message: "QTickets answered HTTP 503".into(),
                started_at: (now - 60) as u32,
                finished_at: (now - 50) as u32,
                first_seen_at: (now - 60) as u32,
                error_runs: 1,
                ..JobRuns::default()
            }],
            freshness: vec![FreshnessRow {
                source: "gmail_ingest".into(),
                latest_date: String::new(),
                total_rows: 0,
            }],
            firing: vec![],
            ..Inputs::default()
        };
        let report = evaluate(Some(&inputs), &ctx(now));
        let q = report.jobs.iter().find(|j| j.job == "qtickets").unwrap();
        assert_eq!(q.verdict, Verdict::Error);
        assert_eq!(
            q.reasons[0],
            "1 failed run(s) since the last check; last error: see run r-1"
        );
        let last = q.last_run.as_ref().unwrap();
        assert_eq!((last.category, last.duration_seconds), ("error", 10));
        // On the operator's terminal the run's own words are shown.
        let terminal = evaluate(
            Some(&inputs),
            &Context {
                show_messages: true,
                ..ctx(now)
            },
        );
        let q = terminal.jobs.iter().find(|j| j.job == "qtickets").unwrap();
        assert!(
            q.reasons[0].ends_with("QTickets answered HTTP 503"),
            "{:?}",
            q.reasons
        );
        assert!(q.next_run_unix.unwrap() > now);
        let gmail = report
            .sources
            .iter()
            .find(|s| s.source == "gmail_ingest")
            .unwrap();
        assert_eq!((gmail.state, gmail.verdict), ("never", Verdict::Ok));
        assert_eq!(report.status, Verdict::Error);
    }
}

#[cfg(test)]
mod categories {
    use super::category;

    #[test]
    fn every_status_has_a_fixed_word() {
        for (status, warnings, word) in [
            ("ok", 0, "ok"),
            ("ok", 2, "warnings"),
            ("running", 0, "running"),
            ("error", 0, "error"),
            ("unfinished", 0, "killed"),
            ("DB::Exception", 0, "unknown"),
        ] {
            assert_eq!(category(status, warnings), word, "{status}");
        }
    }
}

#[cfg(test)]
mod timelines {
    use super::*;
    use zakaz_core::jobs;

    /// Monday 2026-06-15 12:00 MSK, as in the integration tests.
    const T: i64 = 1_781_514_000;
    const DAY: i64 = 86_400;

    fn ctx() -> Context {
        Context {
            now: DateTime::from_timestamp(T, 0).unwrap(),
            enabled: ["qtickets", "vk_ads", "direct", "alerts", "healthcheck"]
                .into_iter()
                .collect(),
            tolerance: 1.5,
            show_messages: false,
        }
    }

    /// One hour's row with a single run of `status` started at `start`.
    fn hour(job: &str, start: i64, tally: Tally, longest: u32) -> RunHour {
        RunHour {
            job: job.into(),
            hour: (start - start.rem_euclid(3600)) as u32,
            ok: tally.ok,
            warnings: tally.warnings,
            error: tally.error,
            killed: tally.killed,
            running: tally.running,
            unknown: tally.unknown,
            longest,
            first_start: start as u32,
            last_start: start as u32,
            ..RunHour::default()
        }
    }

    fn job<'a>(report: &'a Report, name: &str) -> &'a JobHealth {
        report.jobs.iter().find(|j| j.job == name).unwrap()
    }

    #[test]
    fn hours_become_bars_and_gaps_past_the_window_become_missed_spans() {
        let killed = Tally {
            killed: 1,
            ..Tally::default()
        };
        let ok_and_error = Tally {
            ok: 1,
            error: 1,
            ..Tally::default()
        };
        let mut mixed = hour("qtickets", T - 300, ok_and_error, 10);
        mixed.first_start = (T - 3000) as u32;
        let inputs = Inputs {
            version: "18.16.1".into(),
            runs: vec![JobRuns {
                job: "qtickets".into(),
                status: "ok".into(),
                started_at: (T - 300) as u32,
                first_seen_at: (T - 2 * DAY) as u32,
                ..JobRuns::default()
            }],
            hours: Some(vec![hour("qtickets", T - 2 * DAY, killed, 300), mixed]),
            days: Some(vec![]),
            ..Inputs::default()
        };
        let report = evaluate(Some(&inputs), &ctx());
        let q = &job(&report, "qtickets").timeline;
        assert_eq!((q.from, q.to, q.history), (T - 7 * DAY, T, History::Runs));
        assert_eq!(
            q.hours,
            vec![
                HourBar {
                    start: T - 2 * DAY,
                    runs: killed,
                    longest: 300
                },
                HourBar {
                    start: T - 3600,
                    runs: ok_and_error,
                    longest: 10
                },
            ]
        );
        assert_eq!(q.hours[1].runs.worst(), "error");
        assert_eq!((q.total.total(), q.longest, q.timeout), (3, 300, 300));
        // Nothing from Saturday 12:00 (the killed run) to 11:10 on Monday: every quarter hour
        // from Saturday 12:15 to Monday 11:00 (11:00 + the 60 s delay < 11:10) was missed.
        let quarters = ((T - 3000 - 60) - (T - 2 * DAY + 900)) / 900 + 1;
        assert_eq!(
            q.missed,
            vec![Missed {
                from: T - 2 * DAY + 900,
                to: T - 3000,
                expected: quarters as u32
            }]
        );
        assert_eq!(q.missed_runs(), 188);
        // vk_ads never ran since the journal began (Saturday 12:00): its midnights since.
        let vk = &job(&report, "vk_ads").timeline;
        assert!(vk.hours.is_empty());
        assert_eq!(
            vk.missed,
            vec![Missed {
                from: T - 12 * 3600 - DAY,
                to: T,
                expected: 2
            }]
        );
        // Disabled: nothing is expected of it.
        let gmail = &job(&report, "gmail_ingest").timeline;
        assert!(!gmail.expected && gmail.missed.is_empty());
        // No run journal for services and the queue's workers.
        assert_eq!(
            job(&report, "healthcheck").timeline.history,
            History::NotJournaled
        );
        assert_eq!(
            job(&report, "camp_queue").timeline.history,
            History::NotJournaled
        );
        // Unread history is said, not drawn as "no runs".
        let unread = evaluate(
            Some(&Inputs {
                hours: None,
                ..inputs.clone()
            }),
            &ctx(),
        );
        assert_eq!(
            job(&unread, "qtickets").timeline.history,
            History::Unavailable
        );
        assert_eq!(
            job(&evaluate(None, &ctx()), "qtickets").timeline.history,
            History::Unavailable
        );
    }

    #[test]
    fn a_gap_inside_one_hour_counts_and_a_short_one_does_not() {
        let q = jobs::get("qtickets");
        // Runs at 10:00:30 and 10:45:20 (MSK): 10:15 and 10:30 were missed; 10:45 was not yet
        // due (its run may start until 10:46).
        let a = T - 2 * 3600 + 30;
        let b = T - 2 * 3600 + 45 * 60 + 20;
        let in_hour = RunHour {
            hour: (T - 2 * 3600) as u32,
            first_start: a as u32,
            last_start: b as u32,
            gap_ends: vec![b as u32],
            gap_lengths: vec![(b - a) as u32],
            ..RunHour::default()
        };
        let gaps = gaps(Some(a - 600), std::slice::from_ref(&in_hour), T);
        assert_eq!(gaps, vec![(a - 600, a), (a, b), (b, T)]);
        let missed = missed(q, &gaps, T - 7 * DAY, T, 1.5);
        assert_eq!(
            missed,
            vec![
                Missed {
                    from: T - 2 * 3600 + 15 * 60,
                    to: b,
                    expected: 2
                },
                // From 10:45:20 to noon: 11:00 … 11:45.
                Missed {
                    from: T - 3600,
                    to: T,
                    expected: 4
                },
            ]
        );
        // 25 minutes between runs is within qtickets' 28.5 min window.
        assert!(super::missed(q, &[(T - 1500, T)], T - 7 * DAY, T, 1.5).is_empty());
        // A gap that began before the window counts only its part inside it.
        let vk = jobs::get("vk_ads");
        let long = super::missed(vk, &[(T - 30 * DAY, T - 3600)], T - 7 * DAY, T, 1.5);
        assert_eq!(long.len(), 1);
        assert_eq!(
            (long[0].from, long[0].expected),
            (T - 7 * DAY + 12 * 3600, 7),
            "the midnights from Tuesday 9 June to Monday 15 June"
        );
    }

    #[test]
    fn every_freshness_source_has_a_chart_and_charts_fill_days_without_rows() {
        for job in JOBS {
            if let Some(f) = job.freshness {
                assert!(
                    SERIES.iter().any(|s| s.source == f.source),
                    "{} has no chart",
                    f.source
                );
            }
        }
        let today = NaiveDate::from_ymd_opt(2026, 6, 15).unwrap();
        let day = |d: u64| zakaz_core::time::ch_date(today.checked_sub_days(Days::new(d)).unwrap());
        let inputs = Inputs {
            days: Some(vec![
                DayValue {
                    source: "qtickets".into(),
                    day: day(1),
                    value: 21,
                },
                DayValue {
                    source: "vk_ads".into(),
                    day: day(1),
                    value: 3,
                },
            ]),
            ..Inputs::default()
        };
        let c = chart("qtickets", Some(&inputs), today);
        assert_eq!(c.unit, "tickets sold");
        assert_eq!(c.days.len(), 30);
        assert_eq!(
            c.days.first().unwrap().0,
            NaiveDate::from_ymd_opt(2026, 5, 17).unwrap()
        );
        assert_eq!(
            c.days[28],
            (NaiveDate::from_ymd_opt(2026, 6, 14).unwrap(), 21)
        );
        assert_eq!(c.days.iter().map(|d| d.1).sum::<u64>(), 21);
        assert!(!chart("direct", None, today).available);
    }
}

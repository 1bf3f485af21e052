//! The run journal in `meta_job_runs`: a run is recorded when it starts (`running`) and when it
//! ends (`ok` or `error`). The view folds both rows into one; a run whose end never arrived
//! shows `unfinished` once its deadline (start + the job's timeout) has passed, so a killed
//! run (timeout, OOM, reboot) is told apart from one still running.

use std::collections::BTreeMap;
use std::future::Future;

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

use crate::ch::Ch;
use crate::error::one_line;
use crate::jobs::Job;
use crate::time::{DateWindow, ch_date, ch_datetime};

/// `meta_job_runs` as of `now` (a table expression for `FROM`): a `running` run whose
/// deadline is before `now` is `unfinished`. The view itself judges that by the server's
/// clock, which suits people's queries; a job judges by its own clock, which tests pin.
///
/// `skipped` runs (another host held the job's lease: `crate::lease`) did no work and are
/// left out: the health rules count them neither as failures nor as runs.
pub fn runs_as_of(now: &DateTime<Utc>) -> String {
    format!(
        "(SELECT job, run_id, started_at, finished_at, \
                 if(last_status = 'running' AND toDateTime({now}) > deadline_at, 'unfinished', last_status) AS status, \
                 rows_processed, message, metrics, window_from, window_to, host, pid, deadline_at \
          FROM meta_job_runs WHERE last_status != '{SKIPPED}')",
        now = ch_datetime(now)
    )
}

/// The status of a run that did not happen because another host held the job's lease.
pub const SKIPPED: &str = "skipped";

/// What a finished run reports.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub rows: u64,
    pub message: String,
    pub metrics: Metrics,
}

impl Outcome {
    /// What a dry run prints: its message, then its metrics as JSON.
    pub fn print(&self) -> anyhow::Result<()> {
        println!("{}", self.message);
        println!("{}", serde_json::to_string_pretty(&self.metrics.to_json())?);
        Ok(())
    }
}

/// The metric a run sets to the number of problems it worked around (a show whose inventory
/// failed, an id the API rejected): the run is `ok`, and alerts and the healthcheck warn.
pub const WARNINGS: &str = "warnings";

/// A run's metrics: counts, flags, dates and names fixed in code — never free text, so a
/// secret cannot enter them and they are stored exactly as they are (the redactor runs over
/// messages only: a short password that happens to appear inside a number must not corrupt
/// a watermark).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metrics(BTreeMap<&'static str, Metric>);

/// One metric value.
#[derive(Debug, Clone, PartialEq)]
pub enum Metric {
    Count(u64),
    Flag(bool),
    Name(&'static str),
    Names(Vec<&'static str>),
    Dates(Vec<NaiveDate>),
    /// A count per account, login or client: the keys come from settings (never from a
    /// remote answer), so they are names an operator chose, not free text.
    CountsBy(BTreeMap<String, u64>),
    /// Not known (JSON `null`).
    Missing,
}

impl From<u64> for Metric {
    fn from(v: u64) -> Self {
        Metric::Count(v)
    }
}
impl From<u32> for Metric {
    fn from(v: u32) -> Self {
        Metric::Count(u64::from(v))
    }
}
impl From<usize> for Metric {
    fn from(v: usize) -> Self {
        Metric::Count(v as u64)
    }
}
impl From<bool> for Metric {
    fn from(v: bool) -> Self {
        Metric::Flag(v)
    }
}
impl From<&'static str> for Metric {
    fn from(v: &'static str) -> Self {
        Metric::Name(v)
    }
}
impl From<Vec<&'static str>> for Metric {
    fn from(v: Vec<&'static str>) -> Self {
        Metric::Names(v)
    }
}
impl From<Vec<NaiveDate>> for Metric {
    fn from(v: Vec<NaiveDate>) -> Self {
        Metric::Dates(v)
    }
}
impl From<BTreeMap<String, u64>> for Metric {
    fn from(v: BTreeMap<String, u64>) -> Self {
        Metric::CountsBy(v)
    }
}
impl<T: Into<Metric>> From<Option<T>> for Metric {
    fn from(v: Option<T>) -> Self {
        v.map_or(Metric::Missing, Into::into)
    }
}

impl Metrics {
    pub fn new() -> Self {
        Metrics::default()
    }

    /// The same metrics with `key` set.
    pub fn with(mut self, key: &'static str, value: impl Into<Metric>) -> Self {
        self.0.insert(key, value.into());
        self
    }

    pub fn get(&self, key: &str) -> Option<&Metric> {
        self.0.get(key)
    }

    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        let value = |m: &Metric| match m {
            Metric::Count(n) => Value::from(*n),
            Metric::Flag(b) => Value::from(*b),
            Metric::Name(s) => Value::from(*s),
            Metric::Names(v) => Value::from(v.clone()),
            Metric::Dates(v) => Value::from(v.iter().map(ToString::to_string).collect::<Vec<_>>()),
            Metric::CountsBy(m) => Value::Object(
                m.iter()
                    .map(|(k, n)| (k.clone(), Value::from(*n)))
                    .collect(),
            ),
            Metric::Missing => Value::Null,
        };
        Value::Object(
            self.0
                .iter()
                .map(|(k, v)| ((*k).to_owned(), value(v)))
                .collect(),
        )
    }
}

#[derive(Debug, clickhouse::Row, Serialize)]
struct RunEventRow {
    job: String,
    run_id: String,
    seq: u8,
    status: String,
    started_at: u32,
    finished_at: Option<u32>,
    deadline_at: u32,
    rows_processed: u64,
    message: String,
    metrics: String,
    window_from: Option<u16>,
    window_to: Option<u16>,
    host: String,
    pid: u32,
}

/// A run in progress.
pub struct Run {
    ch: Ch,
    job: &'static str,
    pub run_id: String,
    started_at: DateTime<Utc>,
    deadline_at: DateTime<Utc>,
    window: Option<DateWindow>,
}

/// How long a job without a timeout (a manual tool) may take before it counts as unfinished.
const DEFAULT_DEADLINE: std::time::Duration = std::time::Duration::from_secs(3600);

const MESSAGE_LIMIT: usize = 1000;

impl Run {
    /// Record `running`; the deadline is the job's timeout.
    pub async fn start(
        ch: &Ch,
        job: &'static Job,
        window: Option<DateWindow>,
    ) -> anyhow::Result<Run> {
        Self::start_with_timeout(ch, job, window, job.timeout().unwrap_or(DEFAULT_DEADLINE)).await
    }

    /// Record `running` with an explicit deadline.
    pub async fn start_with_timeout(
        ch: &Ch,
        job: &'static Job,
        window: Option<DateWindow>,
        timeout: std::time::Duration,
    ) -> anyhow::Result<Run> {
        Self::start_at(ch, job, window, timeout, crate::time::Clock::System).await
    }

    /// Record `running`, started at `clock`'s now (tests pin it in the past instead of
    /// waiting for a deadline to pass).
    pub async fn start_at(
        ch: &Ch,
        job: &'static Job,
        window: Option<DateWindow>,
        timeout: std::time::Duration,
        clock: crate::time::Clock,
    ) -> anyhow::Result<Run> {
        let started_at = clock.now();
        let run = Run {
            ch: ch.clone(),
            job: job.name,
            run_id: uuid::Uuid::new_v4().to_string(),
            started_at,
            deadline_at: started_at + chrono::Duration::from_std(timeout)?,
            window,
        };
        run.write(0, "running", None, &Outcome::default()).await?;
        tracing::info!(job = run.job, run_id = %run.run_id, window = ?window.map(|w| w.to_string()), "run started");
        Ok(run)
    }

    /// Record a run of `job` that another host's lease kept from running: one `skipped` row
    /// (started and finished now) whose message says who holds the job.
    pub async fn skipped(ch: &Ch, job: &'static Job, message: &str) -> anyhow::Result<String> {
        let now = Utc::now();
        let run = Run {
            ch: ch.clone(),
            job: job.name,
            run_id: uuid::Uuid::new_v4().to_string(),
            started_at: now,
            deadline_at: now,
            window: None,
        };
        let outcome = Outcome {
            message: message.to_owned(),
            ..Outcome::default()
        };
        run.write(1, SKIPPED, Some(now), &outcome).await?;
        tracing::info!(job = run.job, run_id = %run.run_id, "run skipped: {message}");
        Ok(run.run_id)
    }

    /// Record `ok` with rows processed, a short message and metrics.
    pub async fn finish_ok(self, outcome: &Outcome) -> anyhow::Result<()> {
        self.write(1, "ok", Some(Utc::now()), outcome).await?;
        tracing::info!(job = self.job, run_id = %self.run_id, rows = outcome.rows, "run finished: {}", outcome.message);
        Ok(())
    }

    /// Record `error` with the one-line reason.
    pub async fn finish_error(self, err: &anyhow::Error, partial: &Outcome) -> anyhow::Result<()> {
        let outcome = Outcome {
            message: one_line(err),
            ..partial.clone()
        };
        self.write(1, "error", Some(Utc::now()), &outcome).await
    }

    async fn write(
        &self,
        seq: u8,
        status: &str,
        finished_at: Option<DateTime<Utc>>,
        outcome: &Outcome,
    ) -> anyhow::Result<()> {
        let message: String = crate::secret::redact(&outcome.message)
            .chars()
            .take(MESSAGE_LIMIT)
            .collect();
        // Metrics hold no free text by construction: stored as they are, never redacted.
        let metrics = outcome.metrics.to_json().to_string();
        let row = RunEventRow {
            job: self.job.to_owned(),
            run_id: self.run_id.clone(),
            seq,
            status: status.to_owned(),
            started_at: ch_datetime(&self.started_at),
            finished_at: finished_at.map(|t| ch_datetime(&t)),
            deadline_at: ch_datetime(&self.deadline_at),
            rows_processed: outcome.rows,
            message,
            metrics,
            window_from: self.window.map(|w| ch_date(w.from)),
            window_to: self.window.map(|w| ch_date(w.to)),
            host: hostname(),
            pid: std::process::id(),
        };
        self.ch
            .insert_all("meta_job_run_events", &[row])
            .await
            .map_err(|e| e.context(format!("cannot record run of `{}` as {status}", self.job)))
    }
}

/// A run that loaded some of its accounts and failed others: recorded as `error` (the
/// message names what failed) with the rows and metrics of what it did load.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct PartialFailure {
    pub message: String,
    pub outcome: Outcome,
}

/// Run `body` inside a journaled run: `running` first, then `ok` with its outcome or `error`
/// with its reason. SIGTERM/SIGINT (systemd's timeout or `systemctl stop`) end the run as
/// `error` too, so only SIGKILL, OOM and power loss leave a run `unfinished`.
///
/// With `ZOOKEEPER_HOSTS` set, the job's lease is taken first (`crate::lease`): when another
/// host holds it, or ran this tick already, the run is recorded as `skipped` ("held by
/// <host>") and `body` does not run (the result is `Ok`, exit 0). A run that loses its lease
/// (its ZooKeeper session expired) stops as `error`.
pub async fn journaled<F, Fut>(
    ch: &Ch,
    job: &'static Job,
    window: Option<DateWindow>,
    body: F,
) -> anyhow::Result<Outcome>
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = anyhow::Result<Outcome>>,
{
    let lease =
        match crate::lease::claim(ch.lease_args(), ch.db(), job, &hostname(), Utc::now()).await? {
            crate::lease::Claim::Off => None,
            crate::lease::Claim::Held(lease) => Some(lease),
            crate::lease::Claim::Busy { holder, tick } => {
                let message = crate::lease::Claim::skipped_message(&holder, tick);
                Run::skipped(ch, job, &message).await?;
                return Ok(Outcome {
                    message,
                    ..Outcome::default()
                });
            }
        };
    let result = journaled_run(ch, job, window, body, lease.as_ref()).await;
    if let Some(lease) = lease {
        lease.release().await;
    }
    result
}

async fn journaled_run<F, Fut>(
    ch: &Ch,
    job: &'static Job,
    window: Option<DateWindow>,
    body: F,
    lease: Option<&crate::lease::Lease>,
) -> anyhow::Result<Outcome>
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = anyhow::Result<Outcome>>,
{
    let lease_lost = async {
        match lease {
            Some(lease) => lease.lost().await,
            None => std::future::pending().await,
        }
    };
    let run = Run::start(ch, job, window).await?;
    // A panic in the run is recorded like any error (and exits 70), never left `running`.
    let work = async {
        // Debug builds only: the tests' way to make a real binary panic inside its run.
        #[cfg(debug_assertions)]
        if let Some(text) = std::env::var_os("ZAKAZ_TEST_PANIC") {
            panic!("{}", text.to_string_lossy());
        }
        body(run.run_id.clone()).await
    };
    let result = tokio::select! {
        result = crate::panic::catch(work) => result,
        signal = termination() => Err(anyhow::anyhow!("interrupted by {signal} before the run finished")),
        () = lease_lost => Err(crate::error::UnavailableError(format!(
            "lost the lease of `{}` in ZooKeeper (its session expired) before the run finished: another host may hold the job now",
            job.name
        )).into()),
    };
    match result {
        Ok(outcome) => {
            run.finish_ok(&outcome).await?;
            Ok(outcome)
        }
        Err(err) => {
            let partial = err
                .downcast_ref::<PartialFailure>()
                .map(|p| p.outcome.clone())
                .unwrap_or_default();
            if let Err(record_err) = run.finish_error(&err, &partial).await {
                tracing::warn!("{}", one_line(&record_err));
            }
            Err(err)
        }
    }
}

/// Resolves with the name of the first SIGTERM or SIGINT (never, where they cannot be caught).
pub async fn termination() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

/// This machine's name. The units' `ProcSubset=pid` hides `/proc/sys`, so then `uname -n`
/// (the uname(2) node name) answers; once per process.
pub fn hostname() -> String {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .or_else(|| {
                let out = std::process::Command::new("uname")
                    .arg("-n")
                    .output()
                    .ok()?;
                out.status
                    .success()
                    .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
            })
            .unwrap_or_default()
    })
    .clone()
}

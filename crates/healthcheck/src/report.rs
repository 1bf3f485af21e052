//! What the healthcheck knows: the journal and freshness rows read from ClickHouse, judged by
//! the same rules as `alerts` (`zakaz_core::checks`) against the job table.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde::Serialize;
use zakaz_core::ch::Ch;
use zakaz_core::checks::{self, Condition, FreshnessRow, JobState, OpenAlert};
use zakaz_core::jobs::{JOBS, Job, Schedule};
use zakaz_core::time::MOSCOW;

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
}

/// Read from [`zakaz_core::journal::runs_as_of`] the refresh's instant (`{runs}`).
const JOURNAL_QUERY: &str = "SELECT job, argMax(run_id, started_at), argMax(status, started_at), \
    toUInt32(max(started_at)), argMax(ifNull(toUInt32(finished_at), 0), started_at), \
    argMax(rows_processed, started_at), argMax(message, started_at), toUInt32(min(started_at)), \
    toUInt32(maxIf(started_at, status = 'ok')), \
    toUInt32(argMaxIf(ifNull(toUInt32(finished_at), 0) - toUInt32(started_at), started_at, status = 'ok')), \
    countIf(status = 'ok'), countIf(status = 'error'), countIf(status = 'running'), \
    countIf(status = 'unfinished'), argMax(visitParamExtractUInt(metrics, 'warnings'), started_at) \
    FROM {runs} GROUP BY job";

/// Everything read from ClickHouse in one refresh.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    pub version: String,
    pub runs: Vec<JobRuns>,
    pub freshness: Vec<FreshnessRow>,
    pub firing: Vec<OpenAlert>,
    /// The campaign queue per shard, when it is configured.
    pub queue: Vec<camp_queue::status::ShardStatus>,
}

/// One refresh: three reads of small aggregates, and the queue's status when it is configured.
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
    let sql = JOURNAL_QUERY.replace("{runs}", &zakaz_core::journal::runs_as_of(&now.and_utc()));
    let sql = sql.as_str();
    let runs = ch
        .read("job runs", |c| async move {
            c.query(sql).fetch_all::<JobRuns>().await
        })
        .await?;
    let freshness = checks::freshness_rows(ch).await?;
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
    })
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
            job_health(
                job,
                enabled,
                verdict,
                reasons,
                runs.get(job.name).copied(),
                ctx,
            )
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
            })
        })
        .collect();
    let status = jobs
        .iter()
        .map(|j| j.verdict)
        .chain(sources.iter().map(|s| s.verdict))
        .chain(inputs.is_none().then_some(Verdict::Error))
        .max()
        .unwrap_or(Verdict::Ok);
    Report {
        status,
        generated_at: msk(ctx.now.timestamp()),
        clickhouse: ClickHouseHealth {
            reachable: inputs.is_some(),
            version: inputs.map(|i| i.version.clone()),
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
            queue: vec![],
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

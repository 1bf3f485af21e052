//! The checks, each driven by the job table: failed runs, runs killed past their deadline,
//! missed runs, stale data. Each yields the conditions firing now, keyed by fingerprint.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::json;
use zakaz_core::ch::Ch;
use zakaz_core::jobs::{JOBS, Job, Schedule};

/// One problem that holds now.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// `check:job` (or `check:source`): one alert per problem, however often it is seen.
    pub fingerprint: String,
    pub job: String,
    pub alert_type: &'static str,
    pub severity: &'static str,
    pub title: String,
    pub message: String,
    pub details: serde_json::Value,
}

/// What the journal says about one job.
#[derive(Debug, Clone, Default, clickhouse::Row, serde::Deserialize)]
pub struct JobState {
    pub job: String,
    pub last_status: String,
    pub last_message: String,
    /// Seconds since the epoch; 0 when never.
    pub last_ok_at: u32,
    pub first_seen_at: u32,
    pub errors_since: u64,
    pub last_error_message: String,
    /// Runs that became `unfinished` (their deadline passed) since the last check.
    pub unfinished_since: u64,
}

pub fn failed_fingerprint(job: &str) -> String {
    format!("failed_run:{job}")
}

/// Per job: last status and message, last success, errors and unfinished runs since `since`.
pub async fn job_states(ch: &Ch, since: u32) -> anyhow::Result<HashMap<String, JobState>> {
    let rows: Vec<JobState> = ch
        .read("job states", |c| async move {
            c.query(
                "SELECT job, \
                        argMax(status, started_at), \
                        argMax(message, started_at), \
                        toUInt32(maxIf(started_at, status = 'ok')), \
                        toUInt32(min(started_at)), \
                        countIf(status = 'error' AND started_at >= toDateTime(?)), \
                        argMaxIf(message, started_at, status = 'error' AND started_at >= toDateTime(?)), \
                        countIf(status = 'unfinished' AND deadline_at >= toDateTime(?)) \
                 FROM meta_job_runs WHERE job != 'alerts' GROUP BY job",
            )
            .bind(since)
            .bind(since)
            .bind(since)
            .fetch_all::<JobState>()
            .await
        })
        .await?;
    Ok(rows.into_iter().map(|r| (r.job.clone(), r)).collect())
}

/// How long a job may go without a successful run before it counts as missed.
pub fn missed_after(job: &Job, tolerance: f64) -> Option<Duration> {
    match job.schedule {
        Schedule::Timer {
            interval,
            randomized_delay,
            timeout,
            ..
        } => Some(interval.mul_f64(tolerance) + randomized_delay + timeout),
        Schedule::Service { .. } => None,
    }
}

/// The conditions from the run journal. `enabled` says which jobs are switched on (a disabled
/// job is not "missed").
pub fn run_conditions(
    states: &HashMap<String, JobState>,
    enabled: &dyn Fn(&Job) -> bool,
    now: u32,
    tolerance: f64,
) -> Vec<Condition> {
    let mut out = Vec::new();
    let oldest_evidence = states
        .values()
        .map(|s| s.first_seen_at)
        .filter(|t| *t > 0)
        .min();
    for job in JOBS.iter().filter(|j| j.is_timer() && j.binary != "alerts") {
        let state = states.get(job.name).cloned().unwrap_or_default();
        if state.errors_since > 0 || state.last_status == "error" {
            let message = if state.last_error_message.is_empty() {
                state.last_message.clone()
            } else {
                state.last_error_message.clone()
            };
            out.push(Condition {
                fingerprint: failed_fingerprint(job.name),
                job: job.name.to_owned(),
                alert_type: "failed_run",
                severity: "critical",
                title: format!("{} failed", job.name),
                message: format!("{} failed run(s) since the last check; last error: {message}", state.errors_since.max(1)),
                details: json!({"errors_since_last_check": state.errors_since, "last_status": state.last_status}),
            });
        }
        if state.unfinished_since > 0 || state.last_status == "unfinished" {
            out.push(Condition {
                fingerprint: format!("killed_run:{}", job.name),
                job: job.name.to_owned(),
                alert_type: "killed_run",
                severity: "critical",
                title: format!("{} was killed", job.name),
                message: format!(
                    "{} run(s) of {} never finished within the timeout of {} s (killed by timeout, OOM or reboot)",
                    state.unfinished_since.max(1),
                    job.name,
                    job.timeout().map_or(0, |t| t.as_secs())
                ),
                details: json!({"unfinished_since_last_check": state.unfinished_since}),
            });
        }
        if !enabled(job) {
            continue;
        }
        let Some(window) = missed_after(job, tolerance) else {
            continue;
        };
        let window = window.as_secs() as u32;
        let reference = if state.last_ok_at > 0 {
            Some(state.last_ok_at)
        } else {
            oldest_evidence
        };
        if let Some(since) = reference.filter(|t| now.saturating_sub(*t) > window) {
            let last = if state.last_ok_at > 0 {
                format!("last successful run {} ago", human(now - state.last_ok_at))
            } else {
                "no successful run recorded".to_owned()
            };
            out.push(Condition {
                fingerprint: format!("missed_run:{}", job.name),
                job: job.name.to_owned(),
                alert_type: "missed_run",
                severity: "warning",
                title: format!("{} has not run", job.name),
                message: format!("{} expected at least every {}; {last}", job.name, human(window)),
                details: json!({"last_ok_at": state.last_ok_at, "window_secs": window, "since": since}),
            });
        }
    }
    out
}

/// Sources behind their freshness threshold in `v_data_freshness`.
pub async fn stale_conditions(
    ch: &Ch,
    enabled: &dyn Fn(&Job) -> bool,
) -> anyhow::Result<Vec<Condition>> {
    let rows: Vec<(String, String, i32, u64)> = ch
        .read("data freshness", |c| async move {
            c.query("SELECT source, toString(latest_date), toInt32(days_behind), toUInt64(total_rows) FROM v_data_freshness")
                .fetch_all::<(String, String, i32, u64)>()
                .await
        })
        .await?;
    let mut out = Vec::new();
    for job in JOBS.iter().filter(|j| enabled(j)) {
        let Some(fresh) = job.freshness else { continue };
        let Some((_, latest, behind, total)) = rows.iter().find(|r| r.0 == fresh.source) else {
            continue;
        };
        if *total == 0 || *behind > fresh.max_days_behind as i32 {
            let what = if *total == 0 {
                "has no data at all".to_owned()
            } else {
                format!("is {behind} day(s) behind (latest {latest})")
            };
            out.push(Condition {
                fingerprint: format!("stale_data:{}", fresh.source),
                job: job.name.to_owned(),
                alert_type: "stale_data",
                severity: "warning",
                title: format!("{} data is stale", fresh.source),
                message: format!(
                    "source {} {what}; allowed: {} day(s)",
                    fresh.source, fresh.max_days_behind
                ),
                details: json!({"latest_date": latest, "days_behind": behind, "total_rows": total}),
            });
        }
    }
    Ok(out)
}

pub fn human(secs: u32) -> String {
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3600),
        s => format!("{} days", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(job: &str, last: &str, last_ok_at: u32, errors: u64) -> (String, JobState) {
        (
            job.to_owned(),
            JobState {
                job: job.into(),
                last_status: last.into(),
                last_ok_at,
                first_seen_at: 1,
                errors_since: errors,
                ..Default::default()
            },
        )
    }

    #[test]
    fn healthy_jobs_raise_nothing() {
        let now = 1_000_000;
        let states: HashMap<_, _> = ["qtickets", "vk_ads", "direct", "gmail_ingest"]
            .iter()
            .map(|j| state(j, "ok", now - 60, 0))
            .collect();
        assert!(run_conditions(&states, &|_| true, now, 1.5).is_empty());
    }

    #[test]
    fn a_disabled_job_is_not_missed() {
        let now = 10_000_000;
        let states: HashMap<_, _> = [
            state("qtickets", "ok", now - 60, 0),
            state("gmail_ingest", "ok", now - 9 * 86_400, 0),
        ]
        .into_iter()
        .collect();
        let enabled =
            |j: &Job| j.name != "gmail_ingest" && j.name != "vk_ads" && j.name != "direct";
        assert!(run_conditions(&states, &enabled, now, 1.5).is_empty());
        let all = run_conditions(&states, &|_| true, now, 1.5);
        assert!(
            all.iter()
                .any(|c| c.fingerprint == "missed_run:gmail_ingest")
        );
    }

    #[test]
    fn missed_window_comes_from_the_job_table() {
        let q = zakaz_core::jobs::get("qtickets");
        assert_eq!(
            missed_after(q, 1.5).unwrap().as_secs(),
            15 * 60 * 3 / 2 + 60 + 300
        );
    }
}

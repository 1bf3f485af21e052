//! The health rules, each driven by the job table: failed runs, runs killed past their
//! deadline, missed runs, stale data. `alerts` turns the conditions into notices and
//! `healthcheck` into verdicts, so the two never disagree about what is wrong.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use chrono::NaiveDate;
use clap::Args;
use serde_json::json;

use crate::ch::Ch;
use crate::jobs::{self, JOBS, Job, Schedule};

/// Settings of the rules, shared by `alerts` and `healthcheck`.
#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    /// A job is missed after its interval × this, plus its randomized delay and timeout,
    /// without a successful run.
    #[arg(long, env = "ALERT_MISSED_TOLERANCE", default_value_t = 1.5, value_parser = parse_tolerance)]
    pub alert_missed_tolerance: f64,

    /// Unit directories whose `*.wants` links say which jobs are enabled (comma list).
    /// Default: `/etc/systemd/system` and, when `HOME` is set, `~/.config/systemd/user`.
    #[arg(
        long,
        env = "SYSTEMD_UNIT_DIRS",
        value_delimiter = ',',
        value_name = "DIR,..."
    )]
    pub systemd_unit_dirs: Vec<PathBuf>,
}

fn parse_tolerance(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
    if v >= 1.0 && v.is_finite() {
        Ok(v)
    } else {
        Err("must be at least 1.0".into())
    }
}

impl CheckArgs {
    /// The jobs switched on, from the configured unit directories.
    pub fn enabled_jobs(&self) -> HashSet<&'static str> {
        if !self.systemd_unit_dirs.is_empty() {
            return enabled_in(&self.systemd_unit_dirs);
        }
        let dirs = [
            Some(PathBuf::from("/etc/systemd/system")),
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config/systemd/user")),
        ];
        enabled_in(&dirs.into_iter().flatten().collect::<Vec<_>>())
    }
}

/// Jobs switched on. An installed unit is enabled when its `WantedBy=` link exists (read from
/// the unit directory: no D-Bus needed, which the sandboxed services do not have); a job
/// whose unit is not installed there counts by the job table's default.
pub fn enabled_in(unit_dirs: &[PathBuf]) -> HashSet<&'static str> {
    jobs::JOBS
        .iter()
        .filter(|j| {
            let (unit, target) = j.enablement_unit();
            match unit_dirs.iter().find(|d| d.join(&unit).exists()) {
                Some(dir) => {
                    dir.join(target).join(&unit).exists()
                        || dir.join("default.target.wants").join(&unit).exists()
                }
                None => j.enabled_by_default,
            }
        })
        .map(|j| j.name)
        .collect()
}

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
    /// The same in Russian, for the people on duty (`ALERTS_LANGUAGE=ru`).
    pub title_ru: String,
    pub message_ru: String,
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
    /// The `warnings` metric of the last run (problems an `ok` run worked around).
    pub last_warnings: u64,
}

pub fn failed_fingerprint(job: &str) -> String {
    format!("failed_run:{job}")
}

/// Per job: last status and message, last success, errors and unfinished runs since `since`,
/// as of `now` (a run past its deadline by then is `unfinished`).
pub async fn job_states(
    ch: &Ch,
    since: u32,
    now: &chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<HashMap<String, JobState>> {
    let runs = crate::journal::runs_as_of(now);
    let sql = format!(
        "SELECT job, \
                        argMax(status, started_at), \
                        argMax(message, started_at), \
                        toUInt32(maxIf(started_at, status = 'ok')), \
                        toUInt32(min(started_at)), \
                        countIf(status = 'error' AND started_at >= toDateTime(?)), \
                        argMaxIf(message, started_at, status = 'error' AND started_at >= toDateTime(?)), \
                        countIf(status = 'unfinished' AND deadline_at >= toDateTime(?)), \
                        argMax(visitParamExtractUInt(metrics, 'warnings'), started_at) \
                 FROM {runs} WHERE job != 'alerts' GROUP BY job"
    );
    let sql = sql.as_str();
    let rows: Vec<JobState> = ch
        .read("job states", |c| async move {
            c.query(sql)
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
        // Workers keep no run journal: the queue's own checks (age, heartbeat) watch them.
        Schedule::Service { .. } | Schedule::Workers { .. } => None,
    }
}

/// The conditions from the run journal for every timer job but `alerts` itself (which
/// cannot alert about itself). `enabled` says which jobs are switched on (a disabled job is
/// not "missed").
pub fn run_conditions(
    states: &HashMap<String, JobState>,
    enabled: &dyn Fn(&Job) -> bool,
    now: u32,
    tolerance: f64,
) -> Vec<Condition> {
    let oldest_evidence = oldest_evidence(states);
    JOBS.iter()
        .filter(|j| j.is_timer() && j.binary != "alerts")
        .flat_map(|job| {
            let state = states.get(job.name).cloned().unwrap_or_default();
            job_conditions(job, &state, enabled(job), now, tolerance, oldest_evidence)
        })
        .collect()
}

/// The earliest run of any job: "no successful run" counts as missed only once the journal
/// is older than the job's window.
pub fn oldest_evidence(states: &HashMap<String, JobState>) -> Option<u32> {
    states
        .values()
        .map(|s| s.first_seen_at)
        .filter(|t| *t > 0)
        .min()
}

/// The conditions of one timer job.
pub fn job_conditions(
    job: &Job,
    state: &JobState,
    enabled: bool,
    now: u32,
    tolerance: f64,
    oldest_evidence: Option<u32>,
) -> Vec<Condition> {
    let mut out = Vec::new();
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
            message: format!(
                "{} failed run(s) since the last check; last error: {message}",
                state.errors_since.max(1)
            ),
            title_ru: format!("{}: запуск завершился ошибкой", job.name),
            message_ru: format!(
                "неудачных запусков с последней проверки: {}; последняя ошибка: {message}",
                state.errors_since.max(1)
            ),
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
            title_ru: format!("{}: запуск прерван", job.name),
            message_ru: format!(
                "запусков {}, не завершившихся за отведённые {} с (прерваны тайм-аутом, нехваткой памяти или перезагрузкой): {}",
                job.name,
                job.timeout().map_or(0, |t| t.as_secs()),
                state.unfinished_since.max(1)
            ),
            details: json!({"unfinished_since_last_check": state.unfinished_since}),
        });
    }
    if state.last_status == "ok" && state.last_warnings > 0 {
        out.push(Condition {
            fingerprint: format!("run_warning:{}", job.name),
            job: job.name.to_owned(),
            alert_type: "run_warning",
            severity: "warning",
            title: format!("{} finished with warnings", job.name),
            message: format!(
                "{} problem(s) worked around in the last run: {}",
                state.last_warnings, state.last_message
            ),
            title_ru: format!("{}: завершился с предупреждениями", job.name),
            message_ru: format!(
                "проблем, обойдённых в последнем запуске: {}; {}",
                state.last_warnings, state.last_message
            ),
            details: json!({"warnings": state.last_warnings}),
        });
    }
    if !enabled {
        return out;
    }
    let Some(window) = missed_after(job, tolerance) else {
        return out;
    };
    let window = window.as_secs() as u32;
    let reference = if state.last_ok_at > 0 {
        Some(state.last_ok_at)
    } else {
        oldest_evidence
    };
    if let Some(since) = reference.filter(|t| now.saturating_sub(*t) > window) {
        let (last, last_ru) = if state.last_ok_at > 0 {
            let ago = now.saturating_sub(state.last_ok_at);
            (
                format!("last successful run {} ago", human(ago)),
                format!("последний успешный запуск {} назад", human_ru(ago)),
            )
        } else {
            (
                "no successful run recorded".to_owned(),
                "успешных запусков не записано".to_owned(),
            )
        };
        out.push(Condition {
            fingerprint: format!("missed_run:{}", job.name),
            job: job.name.to_owned(),
            alert_type: "missed_run",
            severity: "warning",
            title: format!("{} has not run", job.name),
            message: format!(
                "{} expected at least every {}; {last}",
                job.name,
                human(window)
            ),
            title_ru: format!("{}: не запускался", job.name),
            message_ru: format!(
                "{} должен успешно запускаться не реже чем раз в {}; {last_ru}",
                job.name,
                human_ru(window)
            ),
            details: json!({"last_ok_at": state.last_ok_at, "window_secs": window, "since": since}),
        });
    }
    out
}

/// One row of `v_data_freshness`.
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, serde::Deserialize)]
pub struct FreshnessRow {
    pub source: String,
    /// The latest business date, `YYYY-MM-DD`; empty when the source never loaded.
    pub latest_date: String,
    pub total_rows: u64,
}

impl FreshnessRow {
    pub fn latest(&self) -> Option<NaiveDate> {
        NaiveDate::parse_from_str(&self.latest_date, "%Y-%m-%d").ok()
    }

    /// Whole days between the latest date and `today`; `None` when never loaded.
    pub fn days_behind(&self, today: NaiveDate) -> Option<i64> {
        self.latest()
            .filter(|_| self.total_rows > 0)
            .map(|d| (today - d).num_days())
    }
}

/// Every source of `v_data_freshness`.
pub async fn freshness_rows(ch: &Ch) -> anyhow::Result<Vec<FreshnessRow>> {
    ch.read("data freshness", |c| async move {
        c.query(
            "SELECT source, ifNull(toString(latest_date), ''), toUInt64(total_rows) FROM v_data_freshness ORDER BY source",
        )
        .fetch_all::<FreshnessRow>()
        .await
    })
    .await
}

/// Sources behind their freshness threshold, for the enabled jobs. `today` is the Moscow date
/// of the caller's clock, so the rule does not depend on the server's.
pub fn stale_conditions(
    rows: &[FreshnessRow],
    enabled: &dyn Fn(&Job) -> bool,
    today: NaiveDate,
) -> Vec<Condition> {
    let mut out = Vec::new();
    for job in JOBS.iter().filter(|j| enabled(j)) {
        let Some(fresh) = job.freshness else { continue };
        let Some(row) = rows.iter().find(|r| r.source == fresh.source) else {
            continue;
        };
        let behind = row.days_behind(today);
        if behind.is_none_or(|b| b > i64::from(fresh.max_days_behind)) {
            let (what, what_ru) = match behind {
                None => (
                    "has no data at all".to_owned(),
                    "не содержит данных".to_owned(),
                ),
                Some(b) => (
                    format!("is {b} day(s) behind (latest {})", row.latest_date),
                    format!("отстаёт на {b} дн. (последняя дата {})", row.latest_date),
                ),
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
                title_ru: format!("данные {} устарели", fresh.source),
                message_ru: format!(
                    "источник {} {what_ru}; допустимо: {} дн.",
                    fresh.source, fresh.max_days_behind
                ),
                details: json!({"latest_date": row.latest_date, "days_behind": behind, "total_rows": row.total_rows}),
            });
        }
    }
    out
}

/// An alert's last recorded state in `zakaz.alerts`.
#[derive(Debug, Clone, clickhouse::Row, serde::Deserialize)]
pub struct OpenAlert {
    pub fingerprint: String,
    pub state: String,
    /// When a channel last accepted a firing notice (0: never).
    pub last_sent: u32,
    pub job: String,
    pub alert_type: String,
    pub title: String,
    /// When it last fired (whether or not a channel accepted it).
    pub fired_at: u32,
}

/// The latest state of every fingerprint ever alerted.
pub async fn open_alerts(ch: &Ch) -> anyhow::Result<HashMap<String, OpenAlert>> {
    let rows: Vec<OpenAlert> = ch
        .read("open alerts", |c| async move {
            c.query(
                "SELECT fingerprint, argMax(state, t), toUInt32(maxIf(created_at, state = 'firing' AND channels != '')), \
                        argMax(job, t), argMax(alert_type, t), argMax(title, t), \
                        toUInt32(maxIf(created_at, state = 'firing')) \
                 FROM (SELECT *, if(created_us > 0, created_us, toUInt64(created_at) * 1000000) AS t FROM alerts) \
                 GROUP BY fingerprint",
            )
            .fetch_all::<OpenAlert>()
            .await
        })
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| (r.fingerprint.clone(), r))
        .collect())
}

pub fn human(secs: u32) -> String {
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3600),
        s => format!("{} days", s / 86_400),
    }
}

/// [`human`] in Russian.
pub fn human_ru(secs: u32) -> String {
    match secs {
        s if s < 120 => format!("{s} с"),
        s if s < 7200 => format!("{} мин", s / 60),
        s if s < 172_800 => format!("{} ч", s / 3600),
        s => format!("{} дн.", s / 86_400),
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
    fn the_tolerance_is_a_number_of_at_least_one() {
        assert_eq!(parse_tolerance("1.5"), Ok(1.5));
        assert_eq!(parse_tolerance("1"), Ok(1.0));
        for bad in ["0.99", "-2", "inf", "NaN", "x", ""] {
            assert!(parse_tolerance(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_read_in_the_largest_fitting_unit() {
        for (secs, en, ru) in [
            (0, "0 s", "0 с"),
            (119, "119 s", "119 с"),
            (120, "2 min", "2 мин"),
            (7_199, "119 min", "119 мин"),
            (7_200, "2 h", "2 ч"),
            (172_799, "47 h", "47 ч"),
            (172_800, "2 days", "2 дн."),
        ] {
            assert_eq!(
                (human(secs), human_ru(secs)),
                (en.to_owned(), ru.to_owned()),
                "{secs}"
            );
        }
    }

    #[test]
    fn the_oldest_evidence_is_the_earliest_run_seen() {
        let mut states: HashMap<String, JobState> = HashMap::new();
        assert_eq!(oldest_evidence(&states), None);
        for (job, first) in [("a", 0), ("b", 500), ("c", 300)] {
            states.insert(
                job.into(),
                JobState {
                    first_seen_at: first,
                    ..Default::default()
                },
            );
        }
        assert_eq!(oldest_evidence(&states), Some(300), "0 means never seen");
    }

    #[test]
    fn each_condition_fires_on_its_own_evidence_and_names_the_job() {
        let job = crate::jobs::get("qtickets");
        let now = 10_000_000;
        let window = missed_after(job, 1.5).unwrap().as_secs() as u32;
        let base = JobState {
            job: "qtickets".into(),
            last_status: "ok".into(),
            last_ok_at: now - 60,
            first_seen_at: 1,
            ..Default::default()
        };
        let kinds = |s: &JobState, enabled: bool| -> Vec<&'static str> {
            job_conditions(job, s, enabled, now, 1.5, Some(1))
                .iter()
                .map(|c| c.alert_type)
                .collect()
        };
        assert!(kinds(&base, true).is_empty());
        // An error since the last check, though the last run is ok again.
        let errored = JobState {
            errors_since: 1,
            ..base.clone()
        };
        assert_eq!(kinds(&errored, true), ["failed_run"]);
        let c = &job_conditions(job, &errored, true, now, 1.5, Some(1))[0];
        assert_eq!(c.fingerprint, failed_fingerprint("qtickets"));
        assert_eq!(failed_fingerprint("qtickets"), "failed_run:qtickets");
        // The last run failed, no count.
        let last_error = JobState {
            last_status: "error".into(),
            ..base.clone()
        };
        assert_eq!(kinds(&last_error, true), ["failed_run"]);
        // Killed: counted, or the last one.
        let killed = JobState {
            unfinished_since: 2,
            ..base.clone()
        };
        assert_eq!(kinds(&killed, true), ["killed_run"]);
        let last_killed = JobState {
            last_status: "unfinished".into(),
            ..base.clone()
        };
        assert_eq!(kinds(&last_killed, true), ["killed_run"]);
        // Warnings only on an ok run.
        let warned = JobState {
            last_warnings: 3,
            ..base.clone()
        };
        assert_eq!(kinds(&warned, true), ["run_warning"]);
        let warned_error = JobState {
            last_warnings: 3,
            last_status: "error".into(),
            ..base.clone()
        };
        assert_eq!(kinds(&warned_error, true), ["failed_run"]);
        // Missed: exactly past the window, and only when enabled.
        let at_window = JobState {
            last_ok_at: now - window,
            ..base.clone()
        };
        assert!(kinds(&at_window, true).is_empty(), "at the window itself");
        let past = JobState {
            last_ok_at: now - window - 1,
            ..base.clone()
        };
        assert_eq!(kinds(&past, true), ["missed_run"]);
        let missed = &job_conditions(job, &past, true, now, 1.5, Some(1))[0].message;
        assert!(
            missed.contains(&format!("last successful run {} ago", human(window + 1))),
            "{missed}"
        );
        assert!(
            kinds(&past, false).is_empty(),
            "a disabled job is not missed"
        );
        // Never succeeded: missed once the journal is older than the window.
        let never = JobState {
            last_ok_at: 0,
            ..base.clone()
        };
        let young = job_conditions(job, &never, true, now, 1.5, Some(now - window));
        assert!(young.is_empty(), "{young:?}");
        let old = job_conditions(job, &never, true, now, 1.5, Some(now - window - 1));
        assert_eq!(old.len(), 1);
        assert!(
            old[0].message.contains("no successful run recorded"),
            "{}",
            old[0].message
        );
    }

    #[test]
    fn a_source_exactly_at_its_threshold_is_fresh() {
        let today = NaiveDate::from_ymd_opt(2026, 6, 10).unwrap();
        let row = FreshnessRow {
            source: "vk_ads".into(),
            latest_date: "2026-06-08".into(),
            total_rows: 1,
        };
        assert_eq!(row.days_behind(today), Some(2));
        let empty = FreshnessRow {
            total_rows: 0,
            ..row.clone()
        };
        assert_eq!(empty.days_behind(today), None, "no rows: never loaded");
        let only_vk = |j: &Job| j.name == "vk_ads";
        assert!(stale_conditions(std::slice::from_ref(&row), &only_vk, today).is_empty());
        let older = FreshnessRow {
            latest_date: "2026-06-07".into(),
            ..row
        };
        assert_eq!(stale_conditions(&[older], &only_vk, today).len(), 1);
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
        let q = crate::jobs::get("qtickets");
        assert_eq!(
            missed_after(q, 1.5).unwrap().as_secs(),
            15 * 60 * 3 / 2 + 60 + 300
        );
    }

    #[test]
    fn enablement_comes_from_the_wants_links_of_installed_units() {
        let dir = std::env::temp_dir().join(format!("zakaz-check-units-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("timers.target.wants")).unwrap();
        for unit in ["qtickets.timer", "gmail_ingest.timer", "vk_ads.timer"] {
            std::fs::write(dir.join(unit), "[Timer]\n").unwrap();
        }
        // gmail enabled by the operator, qtickets disabled; vk_ads installed but not linked.
        std::os::unix::fs::symlink(
            dir.join("gmail_ingest.timer"),
            dir.join("timers.target.wants/gmail_ingest.timer"),
        )
        .unwrap();
        let args = CheckArgs {
            alert_missed_tolerance: 1.5,
            systemd_unit_dirs: vec![dir.clone()],
        };
        let enabled = args.enabled_jobs();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(enabled.contains("gmail_ingest"));
        assert!(!enabled.contains("qtickets"));
        assert!(!enabled.contains("vk_ads"));
        assert!(
            enabled.contains("alerts") && enabled.contains("direct"),
            "not installed here: the job table's default"
        );
    }

    #[test]
    fn staleness_is_measured_from_the_callers_date() {
        let today = NaiveDate::from_ymd_opt(2026, 6, 10).unwrap();
        let row = |source: &str, latest: &str, total| FreshnessRow {
            source: source.into(),
            latest_date: latest.into(),
            total_rows: total,
        };
        let rows = [
            row("qtickets", "2026-06-09", 5),
            row("vk_ads", "2026-06-07", 5),
            row("direct", "", 0),
            row("gmail_ingest", "2026-06-01", 3),
        ];
        let only = |names: &'static [&'static str]| move |j: &Job| names.contains(&j.name);
        let fired: Vec<String> =
            stale_conditions(&rows, &only(&["qtickets", "vk_ads", "direct"]), today)
                .into_iter()
                .map(|c| c.message)
                .collect();
        assert_eq!(
            fired,
            [
                "source vk_ads is 3 day(s) behind (latest 2026-06-07); allowed: 2 day(s)",
                "source direct has no data at all; allowed: 2 day(s)",
            ]
        );
        assert_eq!(rows[0].days_behind(today), Some(1));
        assert_eq!(rows[2].days_behind(today), None);
    }
}

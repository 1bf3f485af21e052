//! Day-to-day commands: enable/disable/start/stop/restart, run, status, logs, schedule,
//! verify. Each says what it did, in the words of the seed's runbook.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use chrono::{NaiveDateTime, TimeZone, Utc};
use zakaz_core::ch::{Ch, ClickHouseArgs};
use zakaz_core::jobs::{JOBS, Schedule};
use zakaz_core::time::MOSCOW;

use crate::JobRef;
use crate::system::{self, Scope};
use crate::units::{self, MANAGED_MARKER};

/// The installed instance timers of a worker job (`camp_queue@1-copy:1.timer`, …).
pub fn worker_timers(job: &JobRef, scope: Scope) -> anyhow::Result<Vec<String>> {
    let pattern = format!("{}-*.timer", job.job.name);
    let listed = system::systemctl(
        scope,
        &["list-unit-files", "--no-legend", "--plain", &pattern],
    )?;
    let timers: Vec<String> = listed
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| units::is_worker_timer(n))
        .map(str::to_owned)
        .collect();
    anyhow::ensure!(
        !timers.is_empty(),
        "no `{pattern}` units are installed: run `manage-timers install --queue-shards N`"
    );
    Ok(timers)
}

/// The service a worker timer starts: `camp_queue-2-rest.timer` → `camp_queue@2-rest.service`.
/// A worker's service named by the operator (`camp_queue@2-rest.service`) stays as it is.
fn worker_service(unit: &str) -> String {
    match zakaz_core::jobs::worker_timer_instance(unit) {
        Some((job, instance)) => job.worker_service(instance),
        None => unit.to_owned(),
    }
}

/// The units a timer-or-service command acts on: a worker job's every instance timer.
fn units_of(job: &JobRef, scope: Scope) -> anyhow::Result<Vec<String>> {
    if job.explicit.is_none() && job.job.is_workers() {
        worker_timers(job, scope)
    } else {
        Ok(vec![job.unit()])
    }
}

pub fn enable(job: &JobRef, scope: Scope, on: bool) -> anyhow::Result<()> {
    let verb = if on { "enable" } else { "disable" };
    system::require_root(verb, scope)?;
    for unit in units_of(job, scope)? {
        enable_one(&unit, scope, on)?;
    }
    Ok(())
}

fn enable_one(unit: &str, scope: Scope, on: bool) -> anyhow::Result<()> {
    let verb = if on { "enable" } else { "disable" };
    let unit = unit.to_owned();
    system::systemctl(scope, &[verb, "--now", &unit])?;
    println!(
        "{verb}d {unit}{}",
        if on {
            " (started now and at every boot)"
        } else {
            " (stopped, stays off after reboot)"
        }
    );
    if on
        && unit.ends_with(".timer")
        && let Some(next) = next_elapse(scope, &unit)?
    {
        println!("next run: {next}");
    }
    Ok(())
}

pub fn control(verb: &str, job: &JobRef, scope: Scope) -> anyhow::Result<()> {
    system::require_root(verb, scope)?;
    for unit in units_of(job, scope)? {
        control_one(verb, &unit, scope)?;
    }
    Ok(())
}

fn control_one(verb: &str, unit: &str, scope: Scope) -> anyhow::Result<()> {
    let unit = unit.to_owned();
    system::systemctl(scope, &[verb, &unit])?;
    println!("{verb}{} {unit}", if verb == "stop" { "ped" } else { "ed" });
    if unit.ends_with(".timer")
        && verb != "stop"
        && let Some(next) = next_elapse(scope, &unit)?
    {
        println!("next run: {next}");
    }
    Ok(())
}

fn next_elapse(scope: Scope, timer: &str) -> anyhow::Result<Option<String>> {
    let props = system::show(scope, timer, &["NextElapseUSecRealtime"])?;
    Ok(props
        .into_iter()
        .map(|(_, v)| v)
        .find(|v| !v.is_empty() && v != "n/a"))
}

pub fn run_now(job: &JobRef, scope: Scope) -> anyhow::Result<()> {
    system::require_root("run", scope)?;
    if job.job.is_workers() {
        // Workers run for their lifetime: start them, do not wait.
        let timers = match &job.explicit {
            Some(u) => vec![u.clone()],
            None => worker_timers(job, scope)?,
        };
        for timer in timers {
            let service = worker_service(&timer);
            system::systemctl(scope, &["start", "--no-block", &service])?;
            println!("started {service}");
        }
        println!("`manage-timers logs {}` follows them", job.job.name);
        return Ok(());
    }
    let service = job.service();
    println!("running {service} now…");
    // For a oneshot job `systemctl start` returns when the run has ended.
    let started = system::systemctl(scope, &["start", &service]);
    let props: HashMap<String, String> = system::show(
        scope,
        &service,
        &["InvocationID", "Result", "ExecMainStatus"],
    )?
    .into_iter()
    .collect();
    let invocation = props.get("InvocationID").cloned().unwrap_or_default();
    if !invocation.is_empty() {
        // The run's result does not depend on reading its log: a user whose journal is not
        // split off (volatile storage) may not read it, and is told so instead.
        match system::journalctl(
            scope,
            &[
                &format!("_SYSTEMD_INVOCATION_ID={invocation}"),
                "-o",
                "cat",
                "--no-pager",
            ],
        ) {
            Ok(log) => print!("{log}"),
            Err(e) => println!(
                "(the run's log is not readable here: {})",
                zakaz_core::error::one_line(&e)
            ),
        }
    }
    match started {
        Ok(_) => {
            println!(
                "{service} finished: {}",
                props.get("Result").map_or("success", String::as_str)
            );
            Ok(())
        }
        Err(_) => anyhow::bail!(
            "{service} failed (result {}, exit status {}); `manage-timers logs {}` shows more",
            props.get("Result").map_or("unknown", String::as_str),
            props.get("ExecMainStatus").map_or("?", String::as_str),
            job.job.name
        ),
    }
}

pub fn logs(job: &JobRef, scope: Scope, follow: bool, lines: u32) -> anyhow::Result<()> {
    let service = match (&job.explicit, job.job.is_workers()) {
        (Some(u), true) => worker_service(u),
        (None, true) => format!("{}@*", job.job.name),
        _ => job.service(),
    };
    let n = lines.to_string();
    let mut args = vec!["-u", service.as_str(), "-n", n.as_str(), "--no-pager"];
    if follow {
        args.push("-f");
    }
    system::journalctl_interactive(scope, &args)
}

/// The last run of each job in `meta_job_runs`: status, start, rows, message.
async fn last_runs(
    args: &ClickHouseArgs,
) -> anyhow::Result<HashMap<String, (String, String, u64, String)>> {
    let ch = Ch::connect(args).await?;
    let rows: Vec<(String, String, String, u64, String)> = ch
        .read("last runs", |c| async move {
            c.query(
                "SELECT job, argMax(status, started_at), toString(max(started_at)), argMax(rows_processed, started_at), argMax(message, started_at) \
                 FROM meta_job_runs GROUP BY job",
            )
            .fetch_all()
            .await
        })
        .await?;
    Ok(rows
        .into_iter()
        .map(|(job, s, t, r, m)| (job, (s, t, r, m)))
        .collect())
}

fn shorten(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        format!("{}…", s.chars().take(n - 1).collect::<String>())
    }
}

pub async fn status(
    only: Option<&JobRef>,
    scope: Scope,
    clickhouse: &ClickHouseArgs,
) -> anyhow::Result<()> {
    let journal = match last_runs(clickhouse).await {
        Ok(map) => Some(map),
        Err(e) => {
            println!(
                "(last results unavailable: {})",
                zakaz_core::error::one_line(&e)
            );
            None
        }
    };
    println!(
        "{:<13} {:<22} {:<29} {:<29} {:<10} LAST RUN (meta_job_runs)",
        "JOB", "STATE", "LAST TRIGGER", "NEXT", "RESULT"
    );
    for job in JOBS
        .iter()
        .filter(|j| only.is_none_or(|o| o.job.name == j.name))
    {
        if job.is_workers() {
            worker_status(job, scope)?;
            continue;
        }
        let (unit, state, last, next) = if job.is_timer() {
            let unit = format!("{}.timer", job.name);
            let t = timer_state(scope, &unit)?;
            (unit, t.state, t.last, t.next)
        } else {
            let unit = format!("{}.service", job.name);
            let p: HashMap<String, String> = system::show(
                scope,
                &unit,
                &["LoadState", "UnitFileState", "ActiveState", "SubState"],
            )?
            .into_iter()
            .collect();
            let state = format!(
                "{}/{}",
                p.get("UnitFileState").cloned().unwrap_or_default(),
                p.get("SubState").cloned().unwrap_or_default()
            );
            (unit, state, "-".to_owned(), "-".to_owned())
        };
        let result: HashMap<String, String> =
            system::show(scope, &format!("{}.service", job.name), &["Result"])?
                .into_iter()
                .collect();
        let last_run = match journal.as_ref().and_then(|j| j.get(job.name)) {
            Some((status, at, rows, message)) => {
                format!("{status} at {at}, {rows} rows: {}", shorten(message, 60))
            }
            None if journal.is_some() => "no runs recorded".to_owned(),
            None => "-".to_owned(),
        };
        println!(
            "{:<13} {:<22} {:<29} {:<29} {:<10} {last_run}",
            job.name,
            format!("{} {state}", unit.rsplit('.').next().unwrap_or_default()),
            last,
            next,
            result.get("Result").cloned().unwrap_or_default(),
        );
    }
    Ok(())
}

/// A timer as `status` shows it: `enabled/active` (or `not installed`), last trigger
/// (`never`) and next elapse (`-`).
struct TimerState {
    state: String,
    last: String,
    next: String,
}

fn timer_state(scope: Scope, unit: &str) -> anyhow::Result<TimerState> {
    let p: HashMap<String, String> = system::show(
        scope,
        unit,
        &[
            "LoadState",
            "UnitFileState",
            "ActiveState",
            "LastTriggerUSec",
            "NextElapseUSecRealtime",
        ],
    )?
    .into_iter()
    .collect();
    let get = |k: &str| p.get(k).cloned().unwrap_or_default();
    let or = |v: String, none: &str| {
        if v.is_empty() || v == "n/a" {
            none.to_owned()
        } else {
            v
        }
    };
    Ok(TimerState {
        state: if get("LoadState") != "loaded" {
            "not installed".to_owned()
        } else {
            format!("{}/{}", get("UnitFileState"), get("ActiveState"))
        },
        last: or(get("LastTriggerUSec"), "never"),
        next: or(get("NextElapseUSecRealtime"), "-"),
    })
}

/// One line per installed worker timer; the queue itself is `camp-queue status`.
fn worker_status(job: &'static zakaz_core::jobs::Job, scope: Scope) -> anyhow::Result<()> {
    let job_ref = JobRef {
        job,
        explicit: None,
    };
    let Ok(timers) = worker_timers(&job_ref, scope) else {
        println!(
            "{:<13} {:<22} (no worker timers installed)",
            job.name, "not installed"
        );
        return Ok(());
    };
    for timer in timers {
        let t = timer_state(scope, &timer)?;
        let worker: HashMap<String, String> =
            system::show(scope, &worker_service(&timer), &["SubState", "Result"])?
                .into_iter()
                .collect();
        let get = |k: &str| worker.get(k).cloned().unwrap_or_default();
        println!(
            "{:<30} timer {}, worker {} ({}), last {}, next {}",
            timer.trim_end_matches(".timer"),
            t.state,
            get("SubState"),
            get("Result"),
            t.last,
            t.next,
        );
    }
    println!("(the queues themselves: `camp-queue status`)");
    Ok(())
}

/// Next elapse of a calendar expression per `systemd-analyze calendar` (needs no manager),
/// in UTC.
pub fn calendar_next(expr: &str) -> anyhow::Result<chrono::DateTime<Utc>> {
    // With TZ=UTC, "Next elapse" is printed in UTC whatever the host's zone.
    let out = std::process::Command::new("systemd-analyze")
        .args(["calendar", "--iterations=1", expr])
        .env("TZ", "UTC")
        .output()
        .map_err(|e| anyhow::anyhow!("cannot run `systemd-analyze`: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(
        out.status.success(),
        "invalid calendar `{expr}`: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let line = text
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("Next elapse:"))
        .ok_or_else(|| {
            anyhow::anyhow!("`systemd-analyze calendar {expr}` printed no next elapse")
        })?;
    // "Wed 2026-11-25 21:00:00 UTC"
    let naive =
        NaiveDateTime::parse_from_str(line.trim().trim_end_matches(" UTC"), "%a %Y-%m-%d %H:%M:%S")
            .map_err(|e| anyhow::anyhow!("cannot read `{}`: {e}", line.trim()))?;
    Ok(Utc.from_utc_datetime(&naive))
}

pub fn schedule() -> anyhow::Result<()> {
    println!(
        "{:<13} {:<44} {:<7} {:<26} {:<26}",
        "JOB", "CALENDAR", "DELAY", "NEXT (local)", "NEXT (MSK)"
    );
    for job in JOBS {
        match job.schedule {
            Schedule::Timer {
                on_calendar,
                randomized_delay,
                ..
            } => {
                let next = calendar_next(on_calendar)?;
                let local = next
                    .with_timezone(&chrono::Local)
                    .format("%a %Y-%m-%d %H:%M %Z")
                    .to_string();
                let msk = next
                    .with_timezone(&MOSCOW)
                    .format("%a %Y-%m-%d %H:%M MSK")
                    .to_string();
                println!(
                    "{:<13} {:<44} {:<7} {:<26} {:<26}",
                    job.name,
                    on_calendar,
                    format!("≤{}s", randomized_delay.as_secs()),
                    local,
                    msk
                );
            }
            Schedule::Service { port, .. } => println!(
                "{:<13} {:<44} {:<7} long-running service on port {port}",
                job.name, "-", "-"
            ),
            Schedule::Workers { lanes, .. } => {
                for lane in lanes {
                    let next = calendar_next(lane.on_calendar)?;
                    println!(
                        "{:<13} {:<44} {:<7} {:<26} {:<26}",
                        format!("{} {}", job.name, lane.par_id),
                        format!("{} (every shard)", lane.on_calendar),
                        "0s",
                        next.with_timezone(&chrono::Local)
                            .format("%a %Y-%m-%d %H:%M %Z")
                            .to_string(),
                        next.with_timezone(&MOSCOW)
                            .format("%a %Y-%m-%d %H:%M MSK")
                            .to_string()
                    );
                }
            }
        }
    }
    println!(
        "(a run starts at NEXT plus a random delay up to DELAY; `systemctl list-timers` shows the drawn time)"
    );
    Ok(())
}

/// Exposure of one unit file per `systemd-analyze security --offline=yes`.
pub fn exposure(path: &Path) -> anyhow::Result<f64> {
    // The command exits non-zero above its threshold; read the number either way.
    let out = std::process::Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--threshold=100"])
        .arg(path)
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| {
            l.split_once("Overall exposure level for ")
                .and_then(|(_, rest)| rest.split_once(": "))
                .and_then(|(_, v)| v.split_whitespace().next()?.parse().ok())
        })
        .ok_or_else(|| {
            anyhow::anyhow!(
                "`systemd-analyze security` printed no exposure for `{}`",
                path.display()
            )
        })
}

pub fn verify(unit_dir: &Path, threshold: f64) -> anyhow::Result<()> {
    let names: Vec<String> = units::render_all(&units::Layout::default())
        .into_iter()
        .map(|u| u.name)
        .collect();
    let mut present: Vec<std::path::PathBuf> = names
        .iter()
        .map(|n| unit_dir.join(n))
        .filter(|p| fs::read_to_string(p).is_ok_and(|c| c.contains(MANAGED_MARKER)))
        .collect();
    for timer in units::installed_worker_timers(unit_dir) {
        if !present.contains(&timer) {
            present.push(timer);
        }
    }
    anyhow::ensure!(
        !present.is_empty(),
        "no units of manage-timers in `{}`: run `manage-timers install` first",
        unit_dir.display()
    );
    let mut problems = Vec::new();
    for timer in present
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "timer"))
    {
        let name = timer
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        // A worker's timer starts an instance of its template (`camp_queue@.service`).
        let service = if let Some((job, _)) = zakaz_core::jobs::worker_timer_instance(&name) {
            unit_dir.join(job.worker_service(""))
        } else {
            timer.with_extension("service")
        };
        if !service.exists() {
            problems.push(format!("{} has no service", timer.display()));
        }
        let text = fs::read_to_string(timer)?;
        if let Some(expr) = text.lines().find_map(|l| l.strip_prefix("OnCalendar=")) {
            match calendar_next(expr) {
                Ok(next) => println!(
                    "calendar ok   {:<18} {expr} (next {} UTC)",
                    timer.file_name().unwrap_or_default().to_string_lossy(),
                    next.format("%Y-%m-%d %H:%M")
                ),
                Err(e) => problems.push(format!("{}: {e}", timer.display())),
            }
        }
    }
    let files: Vec<String> = present.iter().map(|p| p.display().to_string()).collect();
    let mut args = vec!["verify"];
    args.extend(files.iter().map(String::as_str));
    match system::run("systemd-analyze", &args) {
        Ok(_) => println!(
            "verify ok     systemd-analyze verify: {} units clean",
            present.len()
        ),
        Err(e) => problems.push(e.to_string()),
    }
    println!("{:<24} EXPOSURE", "SERVICE");
    for service in present
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "service"))
    {
        let level = exposure(service)?;
        let name = service.file_name().unwrap_or_default().to_string_lossy();
        let verdict = if level <= threshold { "OK" } else { "TOO HIGH" };
        println!("{name:<24} {level:.1} {verdict}");
        if level > threshold {
            problems.push(format!("{name}: exposure {level:.1} above {threshold:.1}"));
        }
    }
    anyhow::ensure!(
        problems.is_empty(),
        "verify found {} problem(s): {}",
        problems.len(),
        problems.join("; ")
    );
    Ok(())
}

//! Day-to-day commands: enable/disable/start/stop/restart, run, status, logs, schedule,
//! verify. Each says what it did, in the words of the seed's runbook.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs;
use std::path::Path;

use chrono::{NaiveDateTime, TimeZone, Utc};
use zakaz_core::ch::{Ch, ClickHouseArgs};
use zakaz_core::error::{UnavailableError, config_error};
use zakaz_core::jobs::{JOBS, Schedule};
use zakaz_core::time::MOSCOW;

use crate::JobRef;
use crate::front::{Exit, paint, silent};
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

/// The run's exit status as `manage-timers run` passes it on: the job's own code, else 1.
fn run_failed(what: &str, result: &str, status: Option<i32>, job: &str) -> anyhow::Error {
    let code = status
        .and_then(|s| u8::try_from(s).ok())
        .filter(|s| *s != 0)
        .unwrap_or(1);
    Exit {
        code,
        message: format!(
            "{what} failed (result {result}, exit status {}); `manage-timers logs {job}` shows more",
            status.map_or("?".to_owned(), |s| s.to_string())
        ),
    }
    .into()
}

/// Print the journal lines of one run (matched by `field=value`), once journald has written
/// everything it was sent (`journalctl --sync`).
fn print_run_log(scope: Scope, matches: &[&str]) {
    let _ = system::run_any("journalctl", &["--sync"]);
    let mut args: Vec<&str> = matches.to_vec();
    args.extend(["-o", "cat", "--no-pager"]);
    match system::journalctl(scope, &args) {
        Ok(log) => print!("{log}"),
        Err(e) => println!(
            "(the run's log is not readable here: {})",
            zakaz_core::error::one_line(&e)
        ),
    }
}

/// One finished run of a service, as systemd tells it.
struct Run<'a> {
    service: &'a str,
    invocation: &'a str,
    /// When the unit left `inactive` (CLOCK_MONOTONIC, µs): journald stamps entries on the
    /// same clock.
    started_monotonic: u64,
    /// The same instant as `@<seconds>`, rounded down (for `journalctl --since`).
    started_unix: Option<&'a str>,
    /// The run's main process (0: unknown).
    main_pid: u64,
}

/// How far before the run's start the journal is read: a wall clock stepped back during the
/// run must not hide its lines (the monotonic start decides which are the run's).
const SINCE_MARGIN_SECS: u64 = 60;

/// Print the lines of one run: those tagged with its invocation ID, and its main process's
/// lines with no invocation ID since the run began. journald reads the ID from the sender's
/// cgroup when a line arrives; a line that arrives after its process has exited (a run that
/// fails at once on a busy machine) keeps its sender's PID, and at most the unit its stream
/// was opened for. `--user` cannot `--sync`: an empty answer is asked again, briefly.
fn print_invocation_log(scope: Scope, run: &Run) {
    let query = run_log_query(run);
    let args: Vec<&str> = query.iter().map(String::as_str).collect();
    for attempt in 0..5 {
        let _ = system::run_any("journalctl", &["--sync"]);
        match system::journalctl(scope, &args) {
            Ok(entries) => {
                let lines = lines_of_run(&entries, run);
                if !lines.is_empty() || attempt == 4 {
                    print!("{lines}");
                    return;
                }
            }
            Err(e) => {
                println!(
                    "(the run's log is not readable here: {})",
                    zakaz_core::error::one_line(&e)
                );
                return;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// `journalctl` arguments for the entries that may be `run`'s (`lines_of_run` picks them):
/// this boot, from a margin before its start, tagged with its invocation ID or from its unit
/// or main process.
fn run_log_query(run: &Run) -> Vec<String> {
    let mut args = vec!["-b".to_owned()];
    if let Some(since) = run
        .started_unix
        .and_then(|t| t.strip_prefix('@')?.parse::<u64>().ok())
    {
        args.push("--since".to_owned());
        args.push(format!("@{}", since.saturating_sub(SINCE_MARGIN_SECS)));
    }
    args.push(format!("_SYSTEMD_INVOCATION_ID={}", run.invocation));
    for field in ["_SYSTEMD_UNIT", "_SYSTEMD_USER_UNIT"] {
        args.push("+".to_owned());
        args.push(format!("{field}={}", run.service));
    }
    if run.main_pid != 0 {
        args.push("+".to_owned());
        args.push(format!("_PID={}", run.main_pid));
    }
    for arg in [
        "-o",
        "json",
        "--all",
        "--output-fields=MESSAGE,_SYSTEMD_INVOCATION_ID,_PID",
        "--no-pager",
    ] {
        args.push(arg.to_owned());
    }
    args
}

/// The messages of `run` among journal entries (`journalctl -o json`, one per line): those
/// tagged with its invocation ID, and untagged ones of its main process (or, when that is
/// unknown, of its unit) since it began.
fn lines_of_run(entries: &str, run: &Run) -> String {
    let mut out = String::new();
    for entry in entries.lines() {
        let Ok(entry) = serde_json::from_str::<serde_json::Value>(entry) else {
            continue;
        };
        let field = |name: &str| entry.get(name).and_then(serde_json::Value::as_str);
        let ours = match field("_SYSTEMD_INVOCATION_ID") {
            Some(id) => id == run.invocation,
            None => {
                field("__MONOTONIC_TIMESTAMP")
                    .and_then(|t| t.parse::<u64>().ok())
                    .is_some_and(|t| t >= run.started_monotonic)
                    && (run.main_pid == 0
                        || field("_PID").and_then(|p| p.parse::<u64>().ok()) == Some(run.main_pid))
            }
        };
        if !ours {
            continue;
        }
        // journald gives a message that is not UTF-8 as a list of bytes.
        let message = match entry.get("MESSAGE") {
            Some(serde_json::Value::String(text)) => text.clone(),
            Some(serde_json::Value::Array(bytes)) => String::from_utf8_lossy(
                &bytes
                    .iter()
                    .filter_map(|b| u8::try_from(b.as_u64()?).ok())
                    .collect::<Vec<u8>>(),
            )
            .into_owned(),
            _ => continue,
        };
        out.push_str(&message);
        out.push('\n');
    }
    out
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
    let before = system::show(scope, &service, &["InvocationID"])?
        .into_iter()
        .find_map(|(k, v)| (k == "InvocationID").then_some(v))
        .unwrap_or_default();
    println!("running {service} now…");
    // For a oneshot job `systemctl start` returns when the run has ended.
    let started = system::systemctl(scope, &["start", &service]);
    if let Err(e) = &started
        && e.downcast_ref::<zakaz_core::error::UnavailableError>()
            .is_some()
    {
        return started.map(|_| ());
    }
    // One `show`, so that every value is of the same run; times as `@<seconds>`.
    let wanted = [
        "InvocationID",
        "Result",
        "ExecMainStatus",
        "ExecMainPID",
        "InactiveExitTimestamp",
        "InactiveExitTimestampMonotonic",
    ];
    let props: HashMap<String, String> =
        match system::show_with(scope, &service, &wanted, &["--timestamp=unix"]) {
            Ok(props) => props,
            // systemd before 247 has no `--timestamp`: the journal is then read without
            // `--since` (the monotonic start still decides).
            Err(_) => system::show(scope, &service, &wanted)?,
        }
        .into_iter()
        .collect();
    let invocation = props.get("InvocationID").cloned().unwrap_or_default();
    if let Err(refusal) = &started
        && invocation == before
    {
        // Refused before it ran (the start limit, a failed dependency): no run, no log of
        // one, and not the exit status of the run before. systemd's words may describe that
        // run (a refused start leaves the unit's result as it was), so the likeliest cause
        // is named too.
        let said = zakaz_core::error::one_line(refusal);
        let reset = match scope {
            Scope::System => format!("sudo systemctl reset-failed {service}"),
            Scope::User => format!("systemctl --user reset-failed {service}"),
        };
        let hint = format!(
            "; after several starts in a short time that is systemd's start limit: `{reset}` lets it start now"
        );
        return Err(anyhow::anyhow!(
            "{service} did not start, so no run of it is shown (systemd said: {said}){hint}"
        ));
    }
    if !invocation.is_empty() {
        // The run's result does not depend on reading its log: a user whose journal is not
        // split off (volatile storage) may not read it, and is told so instead.
        let number = |key: &str| props.get(key).and_then(|v| v.parse().ok()).unwrap_or(0);
        let run = Run {
            service: &service,
            invocation: &invocation,
            started_monotonic: number("InactiveExitTimestampMonotonic"),
            started_unix: props.get("InactiveExitTimestamp").map(String::as_str),
            main_pid: number("ExecMainPID"),
        };
        print_invocation_log(scope, &run);
    }
    match started {
        Ok(_) => {
            println!(
                "{service} finished: {}",
                props.get("Result").map_or("success", String::as_str)
            );
            Ok(())
        }
        Err(_) => Err(run_failed(
            &service,
            props.get("Result").map_or("unknown", String::as_str),
            props.get("ExecMainStatus").and_then(|s| s.parse().ok()),
            job.job.name,
        )),
    }
}

/// What a transient run takes over from the installed service: every `[Service]` setting
/// but the ones that make it a service (type, restarts, watchdog), and the binary of its
/// `ExecStart=`. Values as systemd-run takes them: without unit-file `%%` escapes.
pub fn transient_properties(unit_text: &str) -> (Option<String>, Vec<String>) {
    const DROPPED: &[&str] = &[
        "Type",
        "ExecStart",
        "Restart",
        "RestartSec",
        "RestartPreventExitStatus",
        "WatchdogSec",
        "NotifyAccess",
    ];
    let mut exec = None;
    let mut props = Vec::new();
    let mut in_service = false;
    for line in unit_text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_service = line == "[Service]";
            continue;
        }
        if !in_service || line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        // A drop-in's empty `ExecStart=` only clears the list before its own.
        if key == "ExecStart" && !value.trim().is_empty() {
            exec = first_word(value);
        }
        if DROPPED.contains(&key) {
            continue;
        }
        props.push(format!("{key}={}", value.replace("%%", "%")));
    }
    (exec, props)
}

/// The first word of an `ExecStart=` value, unquoted and unescaped.
fn first_word(value: &str) -> Option<String> {
    let value = value.trim_start_matches(['-', '@', ':', '+', '!']);
    let word = if let Some(rest) = value.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = rest.chars();
        while let Some(c) = chars.next() {
            match c {
                '"' => break,
                '\\' => out.extend(chars.next()),
                c => out.push(c),
            }
        }
        out
    } else {
        value.split_whitespace().next()?.to_owned()
    };
    Some(word.replace("%%", "%").replace("$$", "$"))
}

/// `run JOB -- ARGS`: the job's binary once with ARGS, as a transient unit with the
/// service's user, env file, sandboxing and journal identity; waits, prints its log and its
/// result, and exits with its exit status.
pub fn run_with_args(job: &JobRef, scope: Scope, args: &[OsString]) -> anyhow::Result<()> {
    system::require_root("run", scope)?;
    // The installed service (a worker job: its template, through any instance).
    let service = if job.job.is_workers() {
        job.job.worker_service("manual")
    } else {
        job.service()
    };
    let props: HashMap<String, String> = system::show(
        scope,
        &service,
        &["LoadState", "FragmentPath", "DropInPaths"],
    )?
    .into_iter()
    .collect();
    let fragment = props.get("FragmentPath").cloned().unwrap_or_default();
    if props.get("LoadState").map(String::as_str) != Some("loaded") || fragment.is_empty() {
        return Err(config_error(format!(
            "`{service}` is not installed: run `manage-timers install` first"
        )));
    }
    // The unit as systemd runs it: its file, then its drop-ins (`systemctl edit`) in order.
    let drop_ins = props.get("DropInPaths").map_or("", String::as_str);
    let mut text = String::new();
    for path in std::iter::once(fragment.as_str()).chain(drop_ins.split_whitespace()) {
        text +=
            &fs::read_to_string(path).map_err(|e| anyhow::anyhow!("cannot read `{path}`: {e}"))?;
        text.push('\n');
    }
    let (exec, properties) = transient_properties(&text);
    let exec = exec.ok_or_else(|| anyhow::anyhow!("`{fragment}` has no ExecStart="))?;
    let stamp = Utc::now().format("%Y%m%dT%H%M%S");
    let unit = format!("zakaz-run-{}-{stamp}-{}", job.job.name, std::process::id());
    let shown: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let description = format!("Manual run of {}: {}", job.job.name, shown.join(" "));
    let kind = if job.job.is_timer() {
        "--service-type=oneshot"
    } else {
        "--service-type=exec"
    };
    let mut cmd = std::process::Command::new("systemd-run");
    if scope == Scope::User {
        cmd.arg("--user");
    }
    cmd.args([
        "--wait",
        "--collect",
        "--unit",
        &unit,
        "--description",
        &description,
        kind,
    ]);
    for p in &properties {
        cmd.arg("-p").arg(p);
    }
    cmd.arg("--").arg(&exec).args(args);
    println!(
        "running {} {} as {unit}.service (settings from the unit, sandboxed as it is)…",
        job.job.name,
        shown.join(" ")
    );
    let out = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| UnavailableError(format!("cannot run `systemd-run`: {e}")))?;
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    if !said.contains("Running as unit") {
        let line = said
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        return Err(anyhow::anyhow!(
            "systemd-run could not start the run: {line}"
        ));
    }
    print_run_log(scope, &["-u", &format!("{unit}.service")]);
    let result = said
        .lines()
        .find_map(|l| l.trim().strip_prefix("Finished with result: "))
        .unwrap_or("unknown")
        .to_owned();
    let status = said.lines().find_map(|l| {
        l.split_once("status=")
            .and_then(|(_, s)| s.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
    });
    if out.status.success() {
        println!("{} ({unit}.service) finished: {result}", job.job.name);
        Ok(())
    } else {
        Err(run_failed(
            &format!("{} ({unit}.service)", job.job.name),
            &result,
            status.or(out.status.code()),
            job.job.name,
        ))
    }
}

/// Flags of `logs` passed on to journalctl.
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    pub follow: bool,
    pub lines: u32,
    pub since: Option<String>,
    pub priority: Option<String>,
    pub output: Option<String>,
}

/// The installed worker services of a worker job (exact names: a glob that matches nothing
/// makes journalctl fail).
fn worker_services(job: &'static zakaz_core::jobs::Job, scope: Scope) -> Vec<String> {
    let job_ref = JobRef {
        job,
        explicit: None,
    };
    worker_timers(&job_ref, scope)
        .unwrap_or_default()
        .iter()
        .map(|t| worker_service(t))
        .collect()
}

pub fn logs(job: Option<&JobRef>, scope: Scope, opts: &LogOptions) -> anyhow::Result<()> {
    let (units, what): (Vec<String>, String) = match job {
        Some(j) => {
            let units = match (&j.explicit, j.job.is_workers()) {
                (Some(u), true) => vec![worker_service(u)],
                (None, true) => worker_services(j.job, scope),
                _ => vec![j.service()],
            };
            (units, j.job.name.to_owned())
        }
        None => {
            let mut units = Vec::new();
            for j in JOBS {
                if j.is_workers() {
                    units.extend(worker_services(j, scope));
                } else {
                    units.push(format!("{}.service", j.name));
                }
            }
            (units, "any job".to_owned())
        }
    };
    if units.is_empty() {
        eprintln!(
            "no log lines of {what}: none of its units is installed (`manage-timers install`)"
        );
        return Ok(());
    }
    let n = opts.lines.to_string();
    let mut args: Vec<String> = Vec::new();
    for u in &units {
        args.push("-u".into());
        args.push(u.clone());
    }
    // Patterns journalctl refuses when nothing matches them, so added only once one did:
    // the manual runs (`zakaz-run-JOB-…`) and, for every job, the failure alerts.
    let mut patterns: Vec<String> = match job {
        Some(j) => vec![format!("zakaz-run-{}-*", j.job.name)],
        None => vec![
            "zakaz-run-*".to_owned(),
            format!("{}*", units::ALERT_TEMPLATE.trim_end_matches(".service")),
        ],
    };
    patterns.retain(|pattern| {
        let mut probe = Vec::new();
        if scope == Scope::User {
            probe.push("--user");
        }
        probe.extend(["-u", pattern.as_str(), "-n", "0", "--no-pager", "-q"]);
        system::run_any("journalctl", &probe).is_ok_and(|(code, _, _)| code == Some(0))
    });
    for pattern in patterns {
        args.push("-u".into());
        args.push(pattern);
    }
    args.extend(["-n".into(), n, "--no-pager".into()]);
    for (flag, value) in [
        ("--since", &opts.since),
        ("-p", &opts.priority),
        ("-o", &opts.output),
    ] {
        if let Some(v) = value {
            args.push(flag.into());
            args.push(v.clone());
        }
    }
    if opts.follow {
        args.push("-f".into());
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        return system::journalctl_interactive(scope, &refs);
    }
    let mut all: Vec<&str> = Vec::new();
    if scope == Scope::User {
        all.push("--user");
    }
    all.extend(args.iter().map(String::as_str));
    let (code, stdout, stderr) = system::run_any("journalctl", &all)?;
    let nothing = stdout.trim().is_empty() || stdout.trim() == "-- No entries --";
    // journalctl shows a user outside `systemd-journal`/`adm` only that user's own lines,
    // saying so on stderr: nothing found then is no sign that the job never ran.
    let partial = stderr.contains("insufficient permissions")
        || stderr.contains("not seeing messages from other users");
    if nothing && partial && scope == Scope::System {
        return Err(crate::front::noperm_error(format!(
            "no log lines of {what} that this user may read: the system journal is readable by root and the `systemd-journal` group (run `sudo manage-timers logs …`)"
        )));
    }
    if code != Some(0) && !stderr.contains("Failed to add filter for units") {
        let line = stderr
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        anyhow::bail!("`journalctl {}` failed: {line}", all.join(" "));
    }
    if nothing {
        eprintln!(
            "no log lines of {what} yet{}: it has not run since the journal began",
            if opts.since.is_some() || opts.priority.is_some() {
                " matching --since/-p"
            } else {
                ""
            }
        );
    } else {
        print!("{stdout}");
    }
    Ok(())
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

/// One row of `status`: a job's timer (or service, or one worker's timer) and its service.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StatusRow {
    pub job: &'static str,
    /// The timer (or long-running service) the row is about.
    pub unit: String,
    /// `enabled/active`, `disabled/inactive`, `not installed`.
    pub state: String,
    pub last_trigger: String,
    pub next: String,
    /// The service behind it, its state and the result of its last run.
    pub service: String,
    pub service_state: String,
    pub result: String,
    /// Why this row makes `status` exit 3.
    pub problem: Option<String>,
}

/// The last run a job recorded in `meta_job_runs`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LastRun {
    pub status: String,
    pub started_at: String,
    pub rows: u64,
    pub message: String,
}

fn props(scope: Scope, unit: &str, names: &[&str]) -> anyhow::Result<HashMap<String, String>> {
    Ok(system::show(scope, unit, names)?.into_iter().collect())
}

fn service_row(
    job: &'static zakaz_core::jobs::Job,
    scope: Scope,
    unit: String,
    timer: Option<TimerState>,
    service: String,
) -> anyhow::Result<StatusRow> {
    let s = props(
        scope,
        &service,
        &[
            "LoadState",
            "UnitFileState",
            "ActiveState",
            "SubState",
            "Result",
        ],
    )?;
    let get = |k: &str| s.get(k).cloned().unwrap_or_default();
    let mut problem = None;
    let (state, last, next) = match timer {
        Some(t) => {
            if !t.loaded {
                problem = Some(format!("{unit} is not installed"));
            }
            (t.state, t.last, t.next)
        }
        None => {
            let state = if get("LoadState") == "loaded" {
                format!("{}/{}", get("UnitFileState"), get("SubState"))
            } else {
                problem = Some(format!("{unit} is not installed"));
                "not installed".to_owned()
            };
            (state, "-".to_owned(), "-".to_owned())
        }
    };
    if problem.is_none() && get("ActiveState") == "failed" {
        problem = Some(format!(
            "the last run of {service} failed ({})",
            get("Result")
        ));
    }
    Ok(StatusRow {
        job: job.name,
        unit,
        state,
        last_trigger: last,
        next,
        service_state: format!("{}/{}", get("ActiveState"), get("SubState")),
        service,
        result: get("Result"),
        problem,
    })
}

/// Rows of one job: a timer job's timer, a service, or each installed worker timer.
fn job_rows(job: &'static zakaz_core::jobs::Job, scope: Scope) -> anyhow::Result<Vec<StatusRow>> {
    if job.is_workers() {
        let job_ref = JobRef {
            job,
            explicit: None,
        };
        let Ok(timers) = worker_timers(&job_ref, scope) else {
            let (unit, _) = job.enablement_unit();
            return Ok(vec![StatusRow {
                job: job.name,
                unit,
                state: "not installed".to_owned(),
                last_trigger: "-".to_owned(),
                next: "-".to_owned(),
                service: job.worker_service("*"),
                service_state: "-".to_owned(),
                result: String::new(),
                problem: Some("no worker timers are installed".to_owned()),
            }]);
        };
        return timers
            .into_iter()
            .map(|t| {
                let state = timer_state(scope, &t)?;
                let service = worker_service(&t);
                service_row(job, scope, t, Some(state), service)
            })
            .collect();
    }
    let service = format!("{}.service", job.name);
    if job.is_timer() {
        let unit = format!("{}.timer", job.name);
        let t = timer_state(scope, &unit)?;
        Ok(vec![service_row(job, scope, unit, Some(t), service)?])
    } else {
        Ok(vec![service_row(
            job,
            scope,
            service.clone(),
            None,
            service,
        )?])
    }
}

pub async fn status(
    only: Option<&JobRef>,
    scope: Scope,
    json: bool,
    clickhouse: &ClickHouseArgs,
) -> anyhow::Result<()> {
    let (journal, journal_note) = match last_runs(clickhouse).await {
        Ok(map) => (Some(map), None),
        Err(e) => (None, Some(zakaz_core::error::one_line(&e))),
    };
    let mut jobs = Vec::new();
    let mut problems = Vec::new();
    for job in JOBS
        .iter()
        .filter(|j| only.is_none_or(|o| o.job.name == j.name))
    {
        let mut rows = job_rows(job, scope)?;
        if let Some(o) = only.and_then(|o| o.explicit.as_ref())
            && job.is_workers()
        {
            // One worker named: its row only.
            let timer = o.replace('@', "-").replace(".service", ".timer");
            rows.retain(|r| r.unit == timer);
        }
        let last_run =
            journal
                .as_ref()
                .and_then(|j| j.get(job.name))
                .map(|(status, at, rows, message)| LastRun {
                    status: status.clone(),
                    started_at: at.clone(),
                    rows: *rows,
                    message: message.clone(),
                });
        let mut job_problems: Vec<String> = rows.iter().filter_map(|r| r.problem.clone()).collect();
        if let Some(run) = &last_run
            && (run.status == "error" || run.status == "unfinished")
        {
            job_problems.push(format!(
                "its last recorded run ({}) is `{}`: {}",
                run.started_at,
                run.status,
                shorten(&run.message, 80)
            ));
        }
        problems.extend(job_problems.iter().map(|p| format!("{}: {p}", job.name)));
        jobs.push((job, rows, last_run, job_problems));
    }
    if json {
        let doc = serde_json::json!({
            "ok": problems.is_empty(),
            "clickhouse": journal_note.clone().map_or("ok".to_owned(), |e| format!("unavailable: {e}")),
            "jobs": jobs.iter().map(|(job, rows, last_run, probs)| serde_json::json!({
                "job": job.name,
                "ok": probs.is_empty(),
                "problems": probs,
                "units": rows,
                "last_run": last_run,
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        if let Some(note) = &journal_note {
            println!("(last results unavailable: {note})");
        }
        let mut cells = Vec::new();
        for (job, rows, last_run, _) in &jobs {
            let last = match last_run {
                Some(r) => {
                    let text = format!(
                        "{} at {}, {} rows: {}",
                        r.status,
                        r.started_at,
                        r.rows,
                        shorten(&r.message, 60)
                    );
                    match r.status.as_str() {
                        "ok" => paint(&text, 2),
                        "error" | "unfinished" => paint(&text, 1),
                        _ => text,
                    }
                }
                None if journal.is_some() => "no runs recorded".to_owned(),
                None => "-".to_owned(),
            };
            for (i, r) in rows.iter().enumerate() {
                let kind = r.unit.rsplit('.').next().unwrap_or_default();
                let name = if job.is_workers() {
                    r.unit.trim_end_matches(".timer").to_owned()
                } else {
                    job.name.to_owned()
                };
                let result = match r.result.as_str() {
                    "success" => paint("success", 2),
                    "" => "-".to_owned(),
                    other => paint(other, 1),
                };
                cells.push([
                    if r.problem.is_some() {
                        paint(&name, 1)
                    } else {
                        name
                    },
                    format!("{kind} {}", r.state),
                    r.last_trigger.clone(),
                    r.next.clone(),
                    result,
                    if i == 0 {
                        last.clone()
                    } else {
                        "〃".to_owned()
                    },
                ]);
            }
        }
        print!(
            "{}",
            crate::front::table(
                &[
                    "JOB",
                    "STATE",
                    "LAST TRIGGER",
                    "NEXT",
                    "RESULT",
                    "LAST RUN (meta_job_runs)"
                ],
                &cells
            )
        );
        if jobs.iter().any(|(j, _, _, _)| j.is_workers()) {
            println!("(the queues themselves: `camp-queue status`)");
        }
        for p in &problems {
            println!("{}", paint(&format!("problem: {p}"), 1));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        // As `systemctl status` does for a unit that is not running well: exit 3.
        Err(silent(3))
    }
}

/// A timer as `status` shows it: `enabled/active` (or `not installed`), last trigger
/// (`never`) and next elapse (`-`).
struct TimerState {
    loaded: bool,
    state: String,
    last: String,
    next: String,
}

fn timer_state(scope: Scope, unit: &str) -> anyhow::Result<TimerState> {
    let p = props(
        scope,
        unit,
        &[
            "LoadState",
            "UnitFileState",
            "ActiveState",
            "LastTriggerUSec",
            "NextElapseUSecRealtime",
        ],
    )?;
    let get = |k: &str| p.get(k).cloned().unwrap_or_default();
    let or = |v: String, none: &str| {
        if v.is_empty() || v == "n/a" {
            none.to_owned()
        } else {
            v
        }
    };
    let loaded = get("LoadState") == "loaded";
    Ok(TimerState {
        loaded,
        state: if !loaded {
            "not installed".to_owned()
        } else {
            format!("{}/{}", get("UnitFileState"), get("ActiveState"))
        },
        last: or(get("LastTriggerUSec"), "never"),
        next: or(get("NextElapseUSecRealtime"), "-"),
    })
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

/// One line of `schedule`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ScheduleRow {
    pub job: &'static str,
    /// The queue's lane (`copy:1`), for a worker job.
    pub lane: Option<&'static str>,
    pub calendar: String,
    pub randomized_delay_secs: Option<u64>,
    pub next_utc: Option<String>,
    pub next_local: Option<String>,
    pub next_msk: Option<String>,
    pub note: Option<String>,
}

fn schedule_rows() -> anyhow::Result<Vec<ScheduleRow>> {
    let times = |expr: &str| -> anyhow::Result<(String, String, String)> {
        let next = calendar_next(expr)?;
        Ok((
            next.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            next.with_timezone(&chrono::Local)
                .format("%a %Y-%m-%d %H:%M %Z")
                .to_string(),
            next.with_timezone(&MOSCOW)
                .format("%a %Y-%m-%d %H:%M MSK")
                .to_string(),
        ))
    };
    let mut rows = Vec::new();
    for job in JOBS {
        match job.schedule {
            Schedule::Timer {
                on_calendar,
                randomized_delay,
                ..
            } => {
                let (utc, local, msk) = times(on_calendar)?;
                rows.push(ScheduleRow {
                    job: job.name,
                    lane: None,
                    calendar: on_calendar.to_owned(),
                    randomized_delay_secs: Some(randomized_delay.as_secs()),
                    next_utc: Some(utc),
                    next_local: Some(local),
                    next_msk: Some(msk),
                    note: None,
                });
            }
            Schedule::Service { port, .. } => rows.push(ScheduleRow {
                job: job.name,
                lane: None,
                calendar: "-".to_owned(),
                randomized_delay_secs: None,
                next_utc: None,
                next_local: None,
                next_msk: None,
                note: Some(format!("long-running service on port {port}")),
            }),
            Schedule::Workers { lanes, .. } => {
                for lane in lanes {
                    let (utc, local, msk) = times(lane.on_calendar)?;
                    rows.push(ScheduleRow {
                        job: job.name,
                        lane: Some(lane.par_id),
                        calendar: format!("{} (every shard)", lane.on_calendar),
                        randomized_delay_secs: Some(0),
                        next_utc: Some(utc),
                        next_local: Some(local),
                        next_msk: Some(msk),
                        note: None,
                    });
                }
            }
        }
    }
    Ok(rows)
}

pub fn schedule(json: bool) -> anyhow::Result<()> {
    let rows = schedule_rows()?;
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    let cells: Vec<[String; 5]> = rows
        .iter()
        .map(|r| {
            [
                match r.lane {
                    Some(lane) => format!("{} {lane}", r.job),
                    None => r.job.to_owned(),
                },
                r.calendar.clone(),
                r.randomized_delay_secs
                    .map_or("-".to_owned(), |d| format!("≤{d}s")),
                r.next_local
                    .clone()
                    .or_else(|| r.note.clone())
                    .unwrap_or_default(),
                r.next_msk.clone().unwrap_or_default(),
            ]
        })
        .collect();
    print!(
        "{}",
        crate::front::table(
            &["JOB", "CALENDAR", "DELAY", "NEXT (local)", "NEXT (MSK)"],
            &cells
        )
    );
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A run of qtickets that began at monotonic 1 000 µs (unix second 1796630359), PID 77.
    fn a_run() -> Run<'static> {
        Run {
            service: "qtickets.service",
            invocation: "ours",
            started_monotonic: 1_000,
            started_unix: Some("@1796630359"),
            main_pid: 77,
        }
    }

    #[test]
    fn a_runs_journal_query_starts_a_margin_early_and_asks_for_its_id_unit_and_process() {
        let mut run = a_run();
        let tail = "-o json --all --output-fields=MESSAGE,_SYSTEMD_INVOCATION_ID,_PID --no-pager";
        assert_eq!(
            run_log_query(&run).join(" "),
            format!(
                "-b --since @1796630299 _SYSTEMD_INVOCATION_ID=ours + _SYSTEMD_UNIT=qtickets.service \
                 + _SYSTEMD_USER_UNIT=qtickets.service + _PID=77 {tail}"
            )
        );
        // No start in `@<seconds>` (systemd before 247), no main process known.
        run.started_unix = Some("Mon 2026-12-07 08:54:03 UTC");
        run.main_pid = 0;
        assert_eq!(
            run_log_query(&run).join(" "),
            format!(
                "-b _SYSTEMD_INVOCATION_ID=ours + _SYSTEMD_UNIT=qtickets.service \
                 + _SYSTEMD_USER_UNIT=qtickets.service {tail}"
            )
        );
    }

    #[test]
    fn a_runs_lines_are_its_own_and_its_main_processs_untagged_ones_since_it_began() {
        let mut run = a_run();
        let entries = [
            r#"{"__MONOTONIC_TIMESTAMP":"900","_PID":"77","MESSAGE":"an earlier run, untagged"}"#,
            r#"{"__MONOTONIC_TIMESTAMP":"950","_SYSTEMD_INVOCATION_ID":"before","MESSAGE":"an earlier run"}"#,
            // Tagged lines are the run's whatever their stamp.
            r#"{"__MONOTONIC_TIMESTAMP":"990","_PID":"77","_SYSTEMD_INVOCATION_ID":"ours","MESSAGE":"started"}"#,
            r#"{"__MONOTONIC_TIMESTAMP":"1000","_PID":"77","MESSAGE":"at the very start, untagged"}"#,
            r#"{"__MONOTONIC_TIMESTAMP":"1200","_PID":"77","MESSAGE":"error: QTICKETS_TOKEN is missing"}"#,
            r#"{"__MONOTONIC_TIMESTAMP":"1250","_PID":"78","MESSAGE":"the next run, untagged"}"#,
            r#"{"__MONOTONIC_TIMESTAMP":"1300","_SYSTEMD_INVOCATION_ID":"next","MESSAGE":"the next run"}"#,
            r#"{"__MONOTONIC_TIMESTAMP":"1400","_SYSTEMD_INVOCATION_ID":"ours","MESSAGE":[104,105,255]}"#,
            r#"{"__MONOTONIC_TIMESTAMP":"1500","_SYSTEMD_INVOCATION_ID":"ours","MESSAGE":null}"#,
            "not json",
        ]
        .join("\n");
        assert_eq!(
            lines_of_run(&entries, &run),
            "started\nat the very start, untagged\nerror: QTICKETS_TOKEN is missing\nhi\u{fffd}\n"
        );
        // The main process unknown: every untagged line of the unit since the start.
        run.main_pid = 0;
        assert_eq!(
            lines_of_run(&entries, &run),
            "started\nat the very start, untagged\nerror: QTICKETS_TOKEN is missing\nthe next run, untagged\nhi\u{fffd}\n"
        );
    }

    #[test]
    fn a_transient_run_takes_the_services_settings_but_not_its_restarts() {
        let layout = crate::units::Layout {
            prefix: std::path::PathBuf::from("/srv/my 100% jobs"),
            ..Default::default()
        };
        let unit = crate::units::render_all(&layout)
            .into_iter()
            .find(|u| u.name == "qtickets.service")
            .unwrap();
        let (exec, props) = transient_properties(&unit.content);
        assert_eq!(
            exec.as_deref(),
            Some("/srv/my 100% jobs/bin/ingest-qtickets")
        );
        for wanted in [
            "User=etl",
            "EnvironmentFile=/srv/my 100% jobs/secrets/qtickets.env",
            "WorkingDirectory=/srv/my 100% jobs",
            "SyslogIdentifier=qtickets",
            "ProtectSystem=strict",
            "PrivateUsers=yes",
            "TimeoutStartSec=300",
            "CapabilityBoundingSet=",
        ] {
            assert!(props.iter().any(|p| p == wanted), "{wanted}: {props:?}");
        }
        for dropped in [
            "Type=",
            "Restart",
            "ExecStart=",
            "OnFailure",
            "Description=",
        ] {
            assert!(
                !props.iter().any(|p| p.starts_with(dropped)),
                "{dropped}: {props:?}"
            );
        }
        // With a drop-in that replaces the command (an empty `ExecStart=` clears it first)
        // and adds a setting: the drop-in's command, and the setting after the unit's.
        let with_drop_in = format!(
            "{}\n[Service]\nExecStart=\nExecStart=/opt/other/bin/ingest-qtickets --x\nEnvironment=LOG_LEVEL=debug\n",
            unit.content
        );
        let (exec, props) = transient_properties(&with_drop_in);
        assert_eq!(exec.as_deref(), Some("/opt/other/bin/ingest-qtickets"));
        assert_eq!(
            props.last().map(String::as_str),
            Some("Environment=LOG_LEVEL=debug")
        );
    }
}

//! `alerts`: every 2 hours (and at once when a unit fails) check that every job ran,
//! succeeded and delivered fresh data; tell the people on duty, once; record every state
//! change in `zakaz.alerts`.
//!
//! De-duplication: each problem has a fingerprint (`check:job`). An open alert is not sent
//! again within the cooldown (a reminder after it); when the problem clears, one "resolved"
//! notice goes out. A notice no channel accepted counts as not sent, so the next run retries.

pub mod fallback;
pub mod notify;

use std::collections::HashSet;

use clap::Parser;
use serde_json::json;
use zakaz_core::ch::{Ch, ClickHouseArgs};
use zakaz_core::checks::{self, CheckArgs, Condition, OpenAlert, open_alerts};
use zakaz_core::cli::{CommonArgs, JobCli};
use zakaz_core::http::HttpArgs;
use zakaz_core::jobs::{self, Job};
use zakaz_core::journal::{Metrics, Outcome, journaled};
use zakaz_core::time::ch_datetime;

use crate::notify::{ChannelArgs, Channels, Notice};

pub const JOB: &str = "alerts";

#[derive(Debug, Parser)]
#[command(
    name = "alerts",
    version,
    about = "Check job runs and data freshness; notify the people on duty"
)]
pub struct Cli {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub clickhouse: ClickHouseArgs,
    #[command(flatten)]
    pub http: HttpArgs,
    #[command(flatten)]
    pub channels: ChannelArgs,
    #[command(flatten)]
    pub clock: zakaz_core::time::ClockArgs,
    /// The campaign queue's databases (its checks run when they are set).
    #[command(flatten)]
    pub queue: camp_queue::db::DbArgs,

    /// Hours an open alert stays quiet before a reminder.
    #[arg(long, env = "ALERT_COOLDOWN_HOURS", default_value_t = 24, value_parser = clap::value_parser!(u32).range(1..=720))]
    pub alert_cooldown_hours: u32,

    #[command(flatten)]
    pub checks: CheckArgs,

    /// Alert at once that UNIT failed (systemd's `OnFailure=` runs this).
    #[arg(long, value_name = "UNIT")]
    pub unit_failed: Option<String>,

    /// Print what would be sent; send and write nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Writable directory for the small record that de-duplicates alerts while ClickHouse
    /// cannot be asked.
    #[arg(
        long,
        env = "ALERTS_STATE_DIR",
        default_value = "/opt/zakaz_dashboard/state"
    )]
    pub alerts_state_dir: std::path::PathBuf,
}

impl JobCli for Cli {
    fn common(&self) -> &CommonArgs {
        &self.common
    }
}

#[derive(Debug, Clone, clickhouse::Row, serde::Serialize)]
struct AlertRow {
    created_at: u32,
    created_us: u64,
    alert_id: String,
    fingerprint: String,
    job: String,
    alert_type: String,
    severity: String,
    state: String,
    title: String,
    message: String,
    details: String,
    channels: String,
    channel_errors: String,
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    // One alerts run at a time on this host (the periodic check and `--unit-failed` alike):
    // each reads what was sent, sends, and records it, which must not interleave.
    let _one_at_a_time = if cli.dry_run {
        None
    } else {
        Some(state_lock(&cli.alerts_state_dir)?)
    };
    let channels = Channels::new(&cli.channels, &cli.http, &cli.alerts_state_dir)?;
    if let Some(unit) = cli.unit_failed.clone() {
        return unit_failed(&cli, &channels, &unit).await;
    }
    let ch = match Ch::connect(&cli.clickhouse).await {
        Ok(ch) => ch,
        Err(err) => {
            // The one problem the journal cannot tell anyone about: say it directly.
            if !cli.dry_run {
                let notice = Notice {
                    kind: "FIRING",
                    severity: "critical",
                    title: cli
                        .channels
                        .alerts_language
                        .pick("ClickHouse unreachable", "ClickHouse недоступен")
                        .into(),
                    message: zakaz_core::error::one_line(&err),
                };
                deliver_without_clickhouse(&cli, &channels, "clickhouse_unreachable", &notice)
                    .await;
            }
            return Err(err);
        }
    };
    if cli.dry_run {
        // A dry run writes nothing, so it does not migrate either: without the schema there
        // is nothing to check.
        let version = zakaz_core::schema::current_version(&ch).await?;
        if version < zakaz_core::schema::latest_version() {
            return Err(zakaz_core::error::config_error(format!(
                "database `{}` has schema version {version} of {}: run `manage-timers migrate` first",
                cli.clickhouse.clickhouse_db,
                zakaz_core::schema::latest_version()
            )));
        }
        let plan = Checker::new(&cli, &ch, &channels).plan().await?;
        for (notice, _) in &plan {
            let lang = cli.channels.alerts_language;
            println!(
                "would send {} [{}] {}: {}",
                lang.kind(notice.kind),
                lang.severity(notice.severity),
                notice.title,
                notice.message
            );
        }
        println!("dry run: {} notice(s), nothing sent or written", plan.len());
        return Ok(());
    }
    let (cli_ref, ch_ref, channels_ref) = (&cli, &ch, &channels);
    let checked = async {
        zakaz_core::schema::ensure(&ch).await?;
        journaled(&ch, jobs::get(JOB), None, |_| async move {
            Checker::new(cli_ref, ch_ref, channels_ref).run().await
        })
        .await
    }
    .await;
    if let Err(err) = &checked {
        // ClickHouse answers but fails the checks' own queries: nobody would hear of it.
        let text = zakaz_core::error::one_line(err);
        if text.contains("ClickHouse") {
            let notice = Notice {
                kind: "FIRING",
                severity: "critical",
                title: cli
                    .channels
                    .alerts_language
                    .pick(
                        "ClickHouse fails queries",
                        "ClickHouse не выполняет запросы",
                    )
                    .into(),
                message: cli.channels.alerts_language.pick(
                    format!("the alert checks could not run: {text}"),
                    format!("проверки не смогли выполниться: {text}"),
                ),
            };
            deliver_without_clickhouse(&cli, &channels, "clickhouse_failing", &notice).await;
        }
    }
    checked.map(|_| ())
}

/// The lock of the alerts' state directory, held for a run; a directory the service cannot
/// use is a setting to fix.
fn state_lock(dir: &std::path::Path) -> anyhow::Result<zakaz_core::state::Lock> {
    zakaz_core::state::check_usable(
        dir,
        &["alerts.lock", fallback::FILE, notify::CHAT_FILE],
        "ALERTS_STATE_DIR",
    )?;
    zakaz_core::state::Lock::acquire(&dir.join("alerts")).map_err(|e| {
        zakaz_core::error::config_error(format!(
            "{}: the alerts' state directory must exist and be writable by the service's user (`ALERTS_STATE_DIR`, {})",
            zakaz_core::error::one_line(&e),
            dir.display()
        ))
    })
}

/// A run's end when a channel rejected a setting: the one line naming it (exit 78).
fn rejected(deliveries: &[&notify::Delivery]) -> anyhow::Result<()> {
    let mut settings: Vec<&String> = deliveries
        .iter()
        .flat_map(|d| &d.rejected_settings)
        .collect();
    settings.dedup();
    if settings.is_empty() {
        return Ok(());
    }
    Err(zakaz_core::error::config_error(
        settings
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("; "),
    ))
}

/// Deliver a notice that ClickHouse cannot de-duplicate, de-duplicated by the state file:
/// once per cooldown.
async fn deliver_without_clickhouse(
    cli: &Cli,
    channels: &Channels,
    fingerprint: &str,
    notice: &Notice,
) -> Option<notify::Delivery> {
    let now = ch_datetime(&cli.clock.clock().now());
    let mut log = fallback::SentLog::open(&cli.alerts_state_dir);
    if log.recently_sent(fingerprint, now, cli.alert_cooldown_hours * 3600) {
        tracing::info!(
            fingerprint,
            "already alerted within the cooldown (state file); not sending again"
        );
        return None;
    }
    let delivery = channels.deliver(notice).await;
    if !delivery.delivered.is_empty()
        && let Err(e) = log.record(fingerprint, now)
    {
        tracing::warn!("{}", zakaz_core::error::one_line(&e));
    }
    Some(delivery)
}

/// What each notice means for the alert's record.
#[derive(Debug, Clone)]
enum Change {
    Fire(Condition),
    Resolve(OpenAlert),
}

struct Checker<'a> {
    cli: &'a Cli,
    ch: &'a Ch,
    channels: &'a Channels,
    now: u32,
}

impl<'a> Checker<'a> {
    fn lang(&self) -> notify::Language {
        self.cli.channels.alerts_language
    }

    fn new(cli: &'a Cli, ch: &'a Ch, channels: &'a Channels) -> Self {
        Checker {
            cli,
            ch,
            channels,
            now: ch_datetime(&cli.clock.clock().now()),
        }
    }

    /// The notices this run owes: new problems, reminders, and problems that cleared.
    async fn plan(&self) -> anyhow::Result<Vec<(Notice, Change)>> {
        let since = last_check(self.ch, self.now).await?;
        let now = chrono::DateTime::from_timestamp(i64::from(self.now), 0).unwrap_or_default();
        let states = checks::job_states(self.ch, since, &now).await?;
        let enabled = self.cli.checks.enabled_jobs();
        let is_enabled = |j: &Job| enabled.contains(j.name);
        let mut conditions = checks::run_conditions(
            &states,
            &is_enabled,
            self.now,
            self.cli.checks.alert_missed_tolerance,
        );
        let freshness = checks::freshness_rows(self.ch).await?;
        let today = zakaz_core::time::moscow_date(
            &chrono::DateTime::from_timestamp(i64::from(self.now), 0).unwrap_or_default(),
        );
        conditions.extend(checks::stale_conditions(&freshness, &is_enabled, today));
        // On a cluster: every replica answers, none is read-only or lagging.
        conditions.extend(zakaz_core::replicas::replica_problems(self.ch).await?.1);
        if let Some(queue) = camp_queue::db::connect_if_configured(&self.cli.queue)? {
            let now = chrono::DateTime::from_timestamp(i64::from(self.now), 0)
                .unwrap_or_default()
                .naive_utc();
            let workers_on = is_enabled(jobs::get("camp_queue"));
            conditions.extend(camp_queue::checks::check(&queue, now, workers_on).await);
            queue.close().await;
        }
        let open = open_alerts(self.ch).await?;
        let cooldown = self.cli.alert_cooldown_hours * 3600;
        let mut plan = Vec::new();
        let firing_now: HashSet<String> =
            conditions.iter().map(|c| c.fingerprint.clone()).collect();
        for c in conditions {
            let kind = match open.get(&c.fingerprint) {
                Some(o) if o.state == "firing" && o.last_sent > 0 => {
                    if self.now.saturating_sub(o.last_sent) < cooldown {
                        continue;
                    }
                    "REMINDER"
                }
                _ => "FIRING",
            };
            plan.push((
                Notice {
                    kind,
                    severity: c.severity,
                    title: self.lang().pick(&c.title, &c.title_ru).clone(),
                    message: self.lang().pick(&c.message, &c.message_ru).clone(),
                },
                Change::Fire(c),
            ));
        }
        for o in open
            .into_values()
            .filter(|o| o.state == "firing" && !firing_now.contains(&o.fingerprint))
        {
            // Unit failures of units outside the job table have no check that could clear them.
            if o.alert_type == "unit_failed" && jobs::find(&o.job).is_none() {
                continue;
            }
            // A failure that never reached the journal (exit 78 before connecting, ClickHouse
            // down) leaves no error run for the check to see: only a successful run newer
            // than the alert proves the job is back.
            if o.alert_type == "failed_run"
                && states
                    .get(&o.job)
                    .is_none_or(|s| s.last_ok_at <= o.fired_at)
            {
                continue;
            }
            let notice = Notice {
                kind: "RESOLVED",
                severity: "info",
                title: o.title.clone(),
                message: self.lang().pick(
                    format!("{} is back to normal", o.job),
                    format!("{} снова в норме", o.job),
                ),
            };
            plan.push((notice, Change::Resolve(o)));
        }
        Ok(plan)
    }

    async fn run(&self) -> anyhow::Result<Outcome> {
        let plan = self.plan().await?;
        let mut sent = 0;
        let mut failed = 0;
        let mut deliveries = Vec::new();
        for (notice, change) in &plan {
            let delivery = self.channels.deliver(notice).await;
            deliveries.push(delivery.clone());
            if delivery.delivered.is_empty() {
                failed += 1;
                // A RESOLVED nobody heard is not recorded: the alert stays open and the next
                // run says it again. (An undelivered FIRING is recorded without channels,
                // which counts as never sent.)
                if matches!(change, Change::Resolve(_)) {
                    continue;
                }
            } else {
                sent += 1;
            }
            record(self.ch, self.cli.clock.clock(), notice, change, &delivery).await?;
        }
        let mut message = format!("{} notice(s) sent, {} undelivered", sent, failed);
        let mut notes: Vec<&String> = deliveries.iter().flat_map(|d| &d.notes).collect();
        notes.dedup();
        for note in notes {
            message.push_str(&format!("; {note}"));
        }
        rejected(&deliveries.iter().collect::<Vec<_>>())?;
        let outcome = Outcome {
            rows: sent as u64,
            message,
            metrics: Metrics::new()
                .with("notices", plan.len())
                .with("sent", sent as u64)
                .with("undelivered", failed as u64)
                .with("channels", self.channels.names()),
        };
        anyhow::ensure!(
            failed == 0 || sent > 0 || plan.is_empty(),
            "no channel accepted any of {failed} notice(s)"
        );
        Ok(outcome)
    }
}

/// Record a state change: `created_at` on the business clock (cooldowns compare it with
/// "now"), `created_us` on the system clock (it orders the records of one alert).
async fn record(
    ch: &Ch,
    clock: zakaz_core::time::Clock,
    notice: &Notice,
    change: &Change,
    delivery: &notify::Delivery,
) -> anyhow::Result<()> {
    let (fingerprint, job, alert_type, details, state) = match change {
        Change::Fire(c) => (
            c.fingerprint.clone(),
            c.job.clone(),
            c.alert_type.to_owned(),
            c.details.to_string(),
            "firing",
        ),
        Change::Resolve(o) => (
            o.fingerprint.clone(),
            o.job.clone(),
            o.alert_type.clone(),
            "{}".to_owned(),
            "resolved",
        ),
    };
    let row = AlertRow {
        created_at: ch_datetime(&clock.now()),
        created_us: chrono::Utc::now().timestamp_micros().max(0) as u64,
        alert_id: uuid::Uuid::new_v4().to_string(),
        fingerprint,
        job,
        alert_type,
        severity: notice.severity.to_owned(),
        state: state.to_owned(),
        title: notice.title.clone(),
        message: zakaz_core::secret::redact(&notice.message),
        details,
        channels: delivery.delivered.join(","),
        channel_errors: zakaz_core::secret::redact(&delivery.errors.join("; ")),
    };
    ch.insert_all("alerts", &[row]).await
}

/// The start of the previous successful check; two alert intervals back before the first.
async fn last_check(ch: &Ch, now: u32) -> anyhow::Result<u32> {
    let last: u32 = ch
        .read("last check", |c| async move {
            c.query("SELECT toUInt32(maxIf(started_at, status = 'ok')) FROM meta_job_runs WHERE job = ?").bind(JOB).fetch_one::<u32>().await
        })
        .await?;
    let interval = match jobs::get(JOB).schedule {
        zakaz_core::jobs::Schedule::Timer { interval, .. } => interval.as_secs() as u32,
        _ => 7200,
    };
    Ok(if last > 0 {
        last
    } else {
        now.saturating_sub(2 * interval)
    })
}

/// systemd's `OnFailure=`: alert now, with the unit's result and last log lines.
async fn unit_failed(cli: &Cli, channels: &Channels, unit: &str) -> anyhow::Result<()> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let result = env("MONITOR_SERVICE_RESULT").unwrap_or_else(|| "failed".to_owned());
    let exit = match (env("MONITOR_EXIT_CODE"), env("MONITOR_EXIT_STATUS")) {
        (Some(code), Some(status)) => format!(", {code} {status}"),
        _ => String::new(),
    };
    let mut args: Vec<String> = vec![
        "-n".into(),
        "15".into(),
        "-o".into(),
        "cat".into(),
        "--no-pager".into(),
    ];
    match env("MONITOR_INVOCATION_ID") {
        Some(id) => args.push(format!("_SYSTEMD_INVOCATION_ID={id}")),
        None => args.extend(["-u".to_owned(), unit.to_owned()]),
    }
    let log = match std::process::Command::new("journalctl")
        .args(&args)
        .output()
    {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        Ok(out) => format!(
            "(journal unavailable: {})",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => format!("(journal unavailable: {e})"),
    };
    let job = jobs::find(unit);
    let name = job.map_or(unit.to_owned(), |j| j.name.to_owned());
    let condition = Condition {
        fingerprint: match job {
            Some(j) => checks::failed_fingerprint(j.name),
            None => format!("unit_failed:{unit}"),
        },
        job: name.clone(),
        alert_type: if job.is_some() {
            "failed_run"
        } else {
            "unit_failed"
        },
        severity: "critical",
        title: format!("{unit} failed"),
        title_ru: format!("{unit}: сбой"),
        message_ru: format!(
            "unit systemd {unit} завершился сбоем (результат {result}{exit}) на {}. Последние строки журнала:\n{log}",
            zakaz_core::journal::hostname()
        ),
        message: format!(
            "systemd unit {unit} failed (result {result}{exit}) on {}. Last log lines:\n{log}",
            zakaz_core::journal::hostname()
        ),
        details: json!({"unit": unit, "result": result}),
    };
    let notice = Notice {
        kind: "FIRING",
        severity: "critical",
        title: cli
            .channels
            .alerts_language
            .pick(&condition.title, &condition.title_ru)
            .clone(),
        message: cli
            .channels
            .alerts_language
            .pick(&condition.message, &condition.message_ru)
            .clone(),
    };
    if cli.dry_run {
        let lang = cli.channels.alerts_language;
        println!(
            "would send {} [{}] {}: {}",
            lang.kind(notice.kind),
            lang.severity(notice.severity),
            notice.title,
            notice.message
        );
        return Ok(());
    }
    // De-duplicate through ClickHouse when it answers; through the state file when it does
    // not (or fails its queries).
    let ch = match Ch::connect(&cli.clickhouse).await {
        Ok(ch) => Some(ch),
        Err(e) => {
            tracing::warn!(
                "ClickHouse unreachable, de-duplicating through the state file: {}",
                zakaz_core::error::one_line(&e)
            );
            None
        }
    };
    let open = match &ch {
        Some(ch) => match async {
            zakaz_core::schema::ensure(ch).await?;
            open_alerts(ch).await
        }
        .await
        {
            Ok(open) => Some(open),
            Err(e) => {
                tracing::warn!(
                    "ClickHouse fails queries, de-duplicating through the state file: {}",
                    zakaz_core::error::one_line(&e)
                );
                None
            }
        },
        None => None,
    };
    let Some(open) = open else {
        let delivery =
            deliver_without_clickhouse(cli, channels, &condition.fingerprint, &notice).await;
        if let Some(delivery) = delivery {
            rejected(&[&delivery])?;
            anyhow::ensure!(
                !delivery.delivered.is_empty(),
                "no channel accepted the alert: {}",
                delivery.errors.join("; ")
            );
            tracing::info!(unit, channels = %delivery.delivered.join(","), "failure alert sent");
        }
        return Ok(());
    };
    let ch = ch.expect("queries answered, so connected");
    let cooldown = cli.alert_cooldown_hours * 3600;
    let now = ch_datetime(&cli.clock.clock().now());
    if let Some(o) = open.get(&condition.fingerprint).filter(|o| {
        o.state == "firing" && o.last_sent > 0 && now.saturating_sub(o.last_sent) < cooldown
    }) {
        tracing::info!(fingerprint = %o.fingerprint, "alert already sent within the cooldown; not sending again");
        return Ok(());
    }
    let delivery = channels.deliver(&notice).await;
    record(
        &ch,
        cli.clock.clock(),
        &notice,
        &Change::Fire(condition),
        &delivery,
    )
    .await?;
    rejected(&[&delivery])?;
    anyhow::ensure!(
        !delivery.delivered.is_empty(),
        "no channel accepted the alert: {}",
        delivery.errors.join("; ")
    );
    tracing::info!(unit, channels = %delivery.delivered.join(","), "failure alert sent");
    Ok(())
}

//! `camp-queue run --shard S --par-id copy:N|rest`: one worker of the spec.
//!
//! It decides whether (and as whom) it works from `camp_copy_queue_additional_workers`, takes
//! a `GET_LOCK` per identity on the shard's server (a second process exits at once, status
//! 0), then claims, executes and records jobs until its lifetime ends, SIGTERM arrives (the
//! job in hand is finished first), `--once` finds nothing due, or the configuration entry
//! that concerns it changes.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{DateTime, NaiveDateTime, Utc};
use clap::Args;
use sqlx::Connection as _;
use zakaz_core::error::config_error;

use crate::db::{Deployment, Shard};
use crate::ops::{self, CopyContext, Outcome, PauseAt};
use crate::props::{self, Activation, AdditionalWorkers, SleepCoef, Slot};
use crate::queue::{self, AfterFailure, Lane, Table};

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// The shard whose worker this is.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..), required_unless_present = "instance")]
    pub shard: Option<u32>,

    /// `copy:N` (the copy queue, N ≥ 1; 1 is the primary) or `rest` (archive/unarchive/delete).
    #[arg(
        long = "par-id",
        value_name = "copy:N|rest",
        required_unless_present = "instance"
    )]
    pub par_id: Option<Lane>,

    /// `S-copyN` (or `S-copy:N`) or `S-rest`: shard and par-id in one word (the systemd
    /// instance name, `camp_queue@2-copy1.service`).
    #[arg(long, value_name = "S-PARID", conflicts_with_all = ["shard", "par_id"])]
    pub instance: Option<String>,

    /// Drain what is due now and exit, instead of watching the queue.
    #[arg(long)]
    pub once: bool,

    /// Exit after this many jobs.
    #[arg(long, value_name = "N")]
    pub max_jobs: Option<u64>,

    /// The worker exits after this long (its timer starts it again).
    #[arg(
        long,
        env = "CAMP_QUEUE_LIFETIME_SECS",
        default_value = "1200",
        value_name = "SECS"
    )]
    pub lifetime_secs: u64,

    /// Pause between looks at an empty queue.
    #[arg(
        long,
        env = "CAMP_QUEUE_POLL_MS",
        default_value = "2000",
        value_name = "MS"
    )]
    pub poll_ms: u64,

    /// Seconds before the 2nd, 3rd, … attempt of a failed job; one more attempt than delays.
    #[arg(long, env = "CAMP_QUEUE_RETRY_DELAYS", default_value = "1,30,60,180", value_name = "SECS,…", value_parser = parse_delays)]
    pub retry_delays: Delays,

    /// Test hook: freeze at this point of a copy (tests kill the worker there).
    #[arg(long, hide = true, value_enum)]
    pub pause_at: Option<PauseAt>,
}

#[derive(Debug, Clone)]
pub struct Delays(pub Vec<u64>);

fn parse_delays(text: &str) -> Result<Delays, String> {
    let delays: Result<Vec<u64>, _> = text.split(',').map(|d| d.trim().parse::<u64>()).collect();
    match delays {
        Ok(d) if !d.is_empty() => Ok(Delays(d)),
        _ => Err(format!(
            "`{text}` is not a comma list of seconds like `1,30,60,180`"
        )),
    }
}

impl RunArgs {
    fn identity(&self) -> anyhow::Result<(u32, Lane)> {
        if let Some(instance) = &self.instance {
            let parsed = instance.split_once('-').and_then(|(s, l)| {
                // `copy1` in unit names (`:` is not welcome there), `copy:1` everywhere else.
                let lane = match l.strip_prefix("copy") {
                    Some(n) if !n.starts_with(':') => format!("copy:{n}"),
                    _ => l.to_owned(),
                };
                Some((
                    s.parse::<u32>().ok().filter(|&s| s > 0)?,
                    lane.parse::<Lane>().ok()?,
                ))
            });
            return parsed.ok_or_else(|| {
                config_error(format!(
                    "`--instance {instance}`: expected `S-copyN` or `S-rest`"
                ))
            });
        }
        Ok((
            self.shard.expect("clap requires it"),
            self.par_id.expect("clap requires it"),
        ))
    }
}

/// The clock of a run: the system's, or an instant pinned by the hidden `--now` (tests), which
/// then stays put for the whole run so queue times are exact; durations are always measured
/// on the monotonic clock.
#[derive(Debug, Clone, Copy)]
pub struct RunClock {
    pinned: Option<DateTime<Utc>>,
}

impl RunClock {
    pub fn new(pinned: Option<DateTime<Utc>>) -> Self {
        RunClock { pinned }
    }
    pub fn now(&self) -> NaiveDateTime {
        self.pinned.unwrap_or_else(Utc::now).naive_utc()
    }
}

/// `shard_<S>,par-id_<lane>`: the prefix of every line a worker logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefix {
    pub shard: u32,
    pub lane: Lane,
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "shard_{},par-id_{}", self.shard, self.lane)
    }
}

// Each line carries the prefix and the cid in its text and as fields (journal fields SHARD,
// PAR_ID, CID under systemd: `journalctl CID=123`).
macro_rules! job_log {
    ($level:ident, $p:expr, $cid:expr, $($msg:tt)+) => {
        tracing::$level!(shard = $p.shard, par_id = %$p.lane, cid = $cid, "{} cid={} {}", $p, $cid, format!($($msg)+))
    };
}
macro_rules! worker_log {
    ($level:ident, $p:expr, $($msg:tt)+) => {
        tracing::$level!(shard = $p.shard, par_id = %$p.lane, "{} {}", $p, format!($($msg)+))
    };
}

/// A `GET_LOCK` held on its own connection for the worker's life.
struct NamedLock {
    conn: sqlx::MySqlConnection,
    name: String,
}

/// The lock name of a worker identity: per database, so shards sharing a server differ.
pub fn lock_name(database: &str, lane: Lane) -> String {
    format!("{}{lane}", lock_prefix(database))
}

/// What every lock name of a database's workers starts with (`status` appends the lane in SQL).
pub fn lock_prefix(database: &str) -> String {
    format!("zakaz_camp_queue.{database}.")
}

impl NamedLock {
    async fn acquire(shard: &Shard, lane: Lane) -> anyhow::Result<Option<NamedLock>> {
        let mut conn = shard
            .pool
            .acquire()
            .await
            .with_context(|| format!("connecting to shard {}", shard.number))?
            .detach();
        let name = lock_name(&shard.database, lane);
        let (got,): (Option<i64>,) = sqlx::query_as("SELECT GET_LOCK(?, 0)")
            .bind(&name)
            .fetch_one(&mut conn)
            .await
            .context("taking the worker's named lock")?;
        Ok((got == Some(1)).then_some(NamedLock { conn, name }))
    }
    async fn release(mut self) {
        let _ = sqlx::query("SELECT RELEASE_LOCK(?)")
            .bind(&self.name)
            .execute(&mut self.conn)
            .await;
        let _ = self.conn.close().await;
    }
}

/// What a worker needs to know about the deployment.
pub struct Worker<'a> {
    pub deployment: &'a Deployment,
    pub args: &'a RunArgs,
    /// Copy workers launched per shard (`CAMP_QUEUE_COPY_WORKERS`).
    pub launched: u32,
    pub clock: RunClock,
}

fn workers_of(
    values: &props::Values,
    dep: &Deployment,
    launched: u32,
) -> Result<AdditionalWorkers, props::InvalidWorkers> {
    AdditionalWorkers::parse(
        values.get(props::ADDITIONAL_WORKERS),
        dep.shards.len() as u32,
        launched,
    )
}

/// What concerns one additional worker in the property: its entry, or that the whole value
/// is invalid. A worker exits when this changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Concern {
    Invalid,
    Entry(Option<Activation>),
}

fn concern(parsed: &Result<AdditionalWorkers, props::InvalidWorkers>, slot: Slot) -> Concern {
    match parsed {
        Ok(w) => Concern::Entry(w.entry(slot)),
        Err(_) => Concern::Invalid,
    }
}

impl Worker<'_> {
    pub async fn run(&self) -> anyhow::Result<()> {
        let (shard, lane) = self.args.identity()?;
        let dep = self.deployment;
        dep.shard(shard)?;
        let own = Prefix { shard, lane };
        let slot = Slot {
            shard,
            worker: match lane {
                Lane::Copy(n) => n,
                Lane::Rest => 0,
            },
        };
        let workers = match lane {
            Lane::Copy(_) => Some(workers_of(
                &props::get_all(&dep.ppcdict).await?,
                dep,
                self.launched,
            )),
            Lane::Rest => None,
        };
        let serve = match (&workers, lane) {
            (_, Lane::Rest) => own,
            (Some(Err(e)), Lane::Copy(1)) => {
                worker_log!(
                    error,
                    own,
                    "additional_workers_error: {e}; only the primary workers run"
                );
                own
            }
            (_, Lane::Copy(1)) => own,
            (Some(Err(e)), _) => {
                worker_log!(
                    error,
                    own,
                    "additional_workers_error: {e}; only the primary workers run, this one exits"
                );
                return Ok(());
            }
            (Some(Ok(w)), _) => match w.entry(slot) {
                None => {
                    worker_log!(
                        info,
                        own,
                        "not activated by {}; exiting",
                        props::ADDITIONAL_WORKERS
                    );
                    return Ok(());
                }
                Some(Activation::On) => own,
                Some(Activation::Remap(t)) => {
                    worker_log!(info, own, "remapping applied {slot} -> {t}");
                    Prefix {
                        shard: t.shard,
                        lane: Lane::Copy(t.worker),
                    }
                }
            },
            (None, _) => own,
        };
        let watched = match (lane, &workers) {
            (Lane::Copy(n), Some(parsed)) if n > 1 => Some(concern(parsed, slot)),
            _ => None,
        };
        let own_shard = dep.shard(own.shard)?;
        let Some(own_lock) = NamedLock::acquire(own_shard, own.lane).await? else {
            worker_log!(
                info,
                own,
                "another process already runs as this worker; exiting"
            );
            return Ok(());
        };
        let serve_shard = dep.shard(serve.shard)?;
        let serve_lock = if serve != own {
            match NamedLock::acquire(serve_shard, serve.lane).await? {
                Some(l) => Some(l),
                None => {
                    worker_log!(
                        info,
                        serve,
                        "another process already works as this identity; exiting"
                    );
                    own_lock.release().await;
                    return Ok(());
                }
            }
        } else {
            None
        };
        let result = self.serve(serve_shard, serve, slot, watched).await;
        if let Some(l) = serve_lock {
            l.release().await;
        }
        own_lock.release().await;
        result
    }

    async fn serve(
        &self,
        shard: &Shard,
        prefix: Prefix,
        slot: Slot,
        watched: Option<Concern>,
    ) -> anyhow::Result<()> {
        let dep = self.deployment;
        let args = self.args;
        let stop = stop_flag()?;
        let started = Instant::now();
        let lifetime = Duration::from_secs(args.lifetime_secs);
        let worker = prefix.lane.to_string();
        heartbeat(shard, &worker, &self.clock, true).await?;
        worker_log!(info, prefix, "started (lifetime {} s)", args.lifetime_secs);
        let mut coef_error = None;
        let mut settings = Settings::of(
            &props::get_all(&dep.ppcdict).await?,
            prefix.shard,
            &mut coef_error,
        );
        let mut last_check = Instant::now();
        let mut last_beat = Instant::now();
        let mut jobs = 0u64;
        // A live bar on a terminal (a drain by hand); nothing under systemd.
        let progress = if args.once {
            let due = queue::due_for(shard, prefix.lane, self.clock.now())
                .await
                .unwrap_or(0);
            zakaz_core::progress::Progress::bar(&prefix.to_string(), "jobs", due.max(0) as u64)
        } else {
            zakaz_core::progress::Progress::counter(&prefix.to_string(), "jobs")
        };
        let mut errors_in_a_row = 0u32;
        let mut once_looks = 0u32;
        let reason = loop {
            if stop.load(Ordering::SeqCst) {
                break "stopping on a signal".to_owned();
            }
            if started.elapsed() >= lifetime {
                break "lifetime reached".to_owned();
            }
            if args.max_jobs.is_some_and(|m| jobs >= m) {
                break format!("{jobs} jobs done (--max-jobs)");
            }
            if last_check.elapsed() >= Duration::from_secs(1) {
                last_check = Instant::now();
                let values = props::get_all(&dep.ppcdict).await?;
                if let Some(before) = &watched
                    && concern(&workers_of(&values, dep, self.launched), slot) != *before
                {
                    break format!(
                        "{} changed for {slot}; exiting (the timer starts it again)",
                        props::ADDITIONAL_WORKERS
                    );
                }
                settings = Settings::of(&values, prefix.shard, &mut coef_error);
            }
            if last_beat.elapsed() >= Duration::from_secs(10) {
                last_beat = Instant::now();
                if let Err(e) = heartbeat(shard, &worker, &self.clock, false).await {
                    worker_log!(warn, prefix, "heartbeat failed: {e:#}");
                }
            }
            let step = match prefix.lane {
                Lane::Copy(n) => self.copy_step(shard, prefix, n, &worker, &settings).await,
                Lane::Rest => self.rest_step(shard, prefix, &worker).await,
            };
            match step {
                Ok(Some(pause)) => {
                    errors_in_a_row = 0;
                    jobs += 1;
                    progress.add(1);
                    sleep_unless_stopped(pause, &stop).await;
                }
                Ok(None) => {
                    errors_in_a_row = 0;
                    if let Lane::Copy(_) = prefix.lane
                        && let Ok(n) = queue::repair_heads(shard).await
                        && n > 0
                    {
                        worker_log!(
                            warn,
                            prefix,
                            "gave {n} clients' waiting copies their head back"
                        );
                    }
                    if args.once {
                        // Nothing claimable, but due jobs may be held by another worker's claim
                        // (a client's next copy gets its time when that commits): look again.
                        let due = queue::due_for(shard, prefix.lane, self.clock.now())
                            .await
                            .unwrap_or(0);
                        if due == 0 || once_looks >= 600 {
                            break format!("queue drained ({jobs} jobs)");
                        }
                        once_looks += 1;
                        sleep_unless_stopped(Duration::from_millis(args.poll_ms.min(50)), &stop)
                            .await;
                        continue;
                    }
                    sleep_unless_stopped(Duration::from_millis(args.poll_ms), &stop).await;
                }
                Err(e) => {
                    errors_in_a_row += 1;
                    worker_log!(
                        error,
                        prefix,
                        "queue error: {}",
                        zakaz_core::error::one_line(&e)
                    );
                    if errors_in_a_row >= 10 {
                        return Err(e.context(format!("{prefix}: 10 queue errors in a row")));
                    }
                    sleep_unless_stopped(Duration::from_millis(args.poll_ms.max(500)), &stop).await;
                }
            }
        };
        let _ = heartbeat(shard, &worker, &self.clock, false).await;
        worker_log!(info, prefix, "exiting: {reason}");
        Ok(())
    }

    /// Claim and do one copy; `Some(pause)` when a job was handled.
    async fn copy_step(
        &self,
        shard: &Shard,
        prefix: Prefix,
        par_id: u32,
        worker: &str,
        settings: &Settings,
    ) -> anyhow::Result<Option<Duration>> {
        let Some(job) =
            retrying(|| queue::claim_copy(shard, par_id, worker, self.clock.now())).await?
        else {
            return Ok(None);
        };
        job_log!(
            info,
            prefix,
            job.cid,
            "claimed: copy to client {} (attempt {}, role {})",
            job.to_client,
            job.attempts,
            job.role.as_str()
        );
        let ctx = CopyContext {
            deployment: self.deployment,
            source: shard,
            worker,
            pause: self.args.pause_at,
            decay_secs: settings.decay_secs,
        };
        let started = Instant::now();
        // A deadlock victim is run again at once: the copy is idempotent on its new cid.
        let result = retrying(|| ops::copy(&ctx, &job, started, || self.clock.now())).await;
        let took = started.elapsed();
        self.report(
            shard,
            prefix,
            Table::Copy,
            job.id,
            job.cid,
            job.attempts,
            worker,
            result,
        )
        .await?;
        Ok(Some(took.mul_f64(settings.sleep_coef)))
    }

    async fn rest_step(
        &self,
        shard: &Shard,
        prefix: Prefix,
        worker: &str,
    ) -> anyhow::Result<Option<Duration>> {
        let Some(job) = retrying(|| queue::claim_rest(shard, worker, self.clock.now())).await?
        else {
            return Ok(None);
        };
        job_log!(
            info,
            prefix,
            job.cid,
            "claimed: {} (attempt {})",
            job.operation.as_str(),
            job.attempts
        );
        let result = retrying(|| ops::rest(shard, &job, worker, self.clock.now())).await;
        self.report(
            shard,
            prefix,
            Table::Rest,
            job.id,
            job.cid,
            job.attempts,
            worker,
            result,
        )
        .await?;
        Ok(Some(Duration::ZERO))
    }

    #[allow(clippy::too_many_arguments)]
    async fn report(
        &self,
        shard: &Shard,
        prefix: Prefix,
        table: Table,
        id: u64,
        cid: u64,
        attempt: u32,
        worker: &str,
        result: anyhow::Result<Outcome>,
    ) -> anyhow::Result<()> {
        match result {
            Ok(Outcome::Done(d)) => job_log!(info, prefix, cid, "done: {d}"),
            Ok(Outcome::Rejected(r)) => job_log!(warn, prefix, cid, "rejected: {r}"),
            Err(e) => {
                let error = zakaz_core::error::one_line(&e);
                let delays = &self.args.retry_delays.0;
                match queue::fail_job(
                    shard,
                    table,
                    id,
                    cid,
                    attempt,
                    delays,
                    worker,
                    &error,
                    self.clock.now(),
                )
                .await?
                {
                    AfterFailure::RetryAt(_, delay) => job_log!(
                        warn,
                        prefix,
                        cid,
                        "attempt {attempt} of {} failed: {error}; next try in {delay} s",
                        delays.len() + 1
                    ),
                    AfterFailure::GaveUp => {
                        job_log!(
                            error,
                            prefix,
                            cid,
                            "gave up after {attempt} attempts: {error}"
                        )
                    }
                }
            }
        }
        Ok(())
    }
}

/// Run a claim again when MariaDB chose it as a deadlock victim (bounded).
async fn retrying<T, F, Fut>(mut claim: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let mut tries = 0;
    loop {
        match claim().await {
            Err(e) if tries < 5 && queue::is_retryable(&e) => tries += 1,
            other => return other,
        }
    }
}

/// The properties a worker re-reads every second.
struct Settings {
    sleep_coef: f64,
    decay_secs: f64,
}

impl Settings {
    /// From the properties; an invalid coefficient is logged once per distinct error (not
    /// every second) and reads as the empty property's.
    fn of(values: &props::Values, shard: u32, last_error: &mut Option<String>) -> Settings {
        let sleep_coef = match SleepCoef::parse(values.get(props::SLEEP_COEF)) {
            Ok(c) => {
                *last_error = None;
                c.for_shard(shard)
            }
            Err(e) => {
                if last_error.as_deref() != Some(e.as_str()) {
                    tracing::error!(
                        "{} is invalid ({e}); using {}",
                        props::SLEEP_COEF,
                        props::EMPTY_SLEEP_COEF
                    );
                    *last_error = Some(e);
                }
                props::EMPTY_SLEEP_COEF
            }
        };
        let decay_secs = props::positive_number(values.get(props::ELA_DECAY))
            .ok()
            .flatten()
            .unwrap_or(3600.0);
        Settings {
            sleep_coef,
            decay_secs,
        }
    }
}

async fn heartbeat(
    shard: &Shard,
    worker: &str,
    clock: &RunClock,
    start: bool,
) -> anyhow::Result<()> {
    let now = clock.now();
    let host = zakaz_core::journal::hostname();
    let sql = if start {
        "INSERT INTO camp_queue_workers (par_id, host, pid, started_at, heartbeat_at) VALUES (?, ?, ?, ?, ?) \
         ON DUPLICATE KEY UPDATE host = VALUES(host), pid = VALUES(pid), started_at = VALUES(started_at), heartbeat_at = VALUES(heartbeat_at)"
    } else {
        "UPDATE camp_queue_workers SET host = ?, pid = ?, heartbeat_at = ? WHERE par_id = ?"
    };
    let query = if start {
        sqlx::query(sql)
            .bind(worker)
            .bind(host)
            .bind(std::process::id())
            .bind(now)
            .bind(now)
    } else {
        sqlx::query(sql)
            .bind(host)
            .bind(std::process::id())
            .bind(now)
            .bind(worker)
    };
    query
        .execute(&shard.pool)
        .await
        .with_context(|| format!("writing the heartbeat on shard {}", shard.number))?;
    Ok(())
}

/// Set on SIGTERM or SIGINT: the worker finishes the job in hand and exits.
fn stop_flag() -> anyhow::Result<Arc<AtomicBool>> {
    use tokio::signal::unix::{SignalKind, signal};
    let flag = Arc::new(AtomicBool::new(false));
    let mut term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
    let set = flag.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        set.store(true, Ordering::SeqCst);
    });
    Ok(flag)
}

async fn sleep_unless_stopped(total: Duration, stop: &AtomicBool) {
    let step = Duration::from_millis(50);
    let end = Instant::now() + total;
    while !stop.load(Ordering::SeqCst) {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        tokio::time::sleep(left.min(step)).await;
    }
}

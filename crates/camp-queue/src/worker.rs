//! `camp-queue run --shard S --par-id copy:N|rest`: one worker of the spec.
//!
//! It decides whether (and as whom) it works from `camp_copy_queue_additional_workers`, takes
//! a `GET_LOCK` per identity on the shard's server (a second process exits at once, status
//! 0), then claims, executes and records jobs until its lifetime ends, SIGTERM arrives (the
//! job in hand is finished first), `--once` finds nothing due, or the configuration entry
//! that concerns it changes.
//!
//! It stops with an error (exit 1: the unit fails, its timer starts it again) when it no
//! longer holds its named lock (checked before every claim, see [`crate::identity`]), after
//! ten queue errors in a row, or after ten failed reads of the properties in a row. MariaDB
//! deadlock victims are run again at once (at most 5 times) and lock-wait timeouts once; each
//! is logged and counted in the line the worker exits with.

use std::cell::Cell;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{DateTime, NaiveDateTime, Utc};
use clap::Args;
use zakaz_core::error::config_error;

use crate::db::{Deployment, Needs, Shard};
use crate::identity::{Identity, NamedLock, is_lock_lost};
pub use crate::identity::{lock_name, lock_prefix};
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

    /// How long a statement of the worker waits for a row lock before MariaDB gives up
    /// (`innodb_lock_wait_timeout`, error 1205); unset: the server's (50 s by default).
    #[arg(long, env = "CAMP_QUEUE_LOCK_WAIT_SECS", value_name = "SECS",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub lock_wait_secs: Option<u64>,

    /// Test hook: freeze at this point of a copy until SIGUSR1 (tests kill the worker there,
    /// or change something and let it go on).
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

/// Queue errors (or failed reads of the properties) in a row that end a run.
pub const ERRORS_IN_A_ROW: u32 = 10;
/// Times a deadlock victim is run again at once before its error counts.
const DEADLOCK_RERUNS: u32 = 5;
/// Times a statement that timed out waiting for a lock (it already waited
/// `innodb_lock_wait_timeout`) is run again before its error counts.
const LOCK_WAIT_RERUNS: u32 = 1;

/// What a run counts besides its jobs: said in the line it exits with.
#[derive(Default)]
struct RunStats {
    deadlocks: Cell<u64>,
    lock_waits: Cell<u64>,
}

impl RunStats {
    fn summary(&self, jobs: u64) -> String {
        let mut extra = Vec::new();
        let plural =
            |n: u64, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        if self.deadlocks.get() > 0 {
            extra.push(plural(self.deadlocks.get(), "deadlock", "deadlocks"));
        }
        if self.lock_waits.get() > 0 {
            extra.push(plural(
                self.lock_waits.get(),
                "lock-wait timeout",
                "lock-wait timeouts",
            ));
        }
        if extra.is_empty() {
            format!("{jobs} jobs")
        } else {
            format!("{jobs} jobs; {}", extra.join(", "))
        }
    }
}

impl Worker<'_> {
    pub async fn run(&self) -> anyhow::Result<()> {
        let (shard, lane) = self.args.identity()?;
        let dep = self.deployment;
        dep.shard(shard)?;
        // The first contact: a refused login or a server that cannot be reached is said
        // here, naming the database (exit 78 / 69), not as a failed claim later. (`rest`
        // never reads ppcdict.)
        if let Lane::Copy(_) = lane {
            dep.probe(Needs::Ppcdict, crate::db::CONNECT_TIMEOUT)
                .await?;
        }
        dep.shard(shard)?.probe(crate::db::CONNECT_TIMEOUT).await?;
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
        let mut locks = vec![own_lock];
        if serve != own {
            let acquired = match serve_shard.probe(crate::db::CONNECT_TIMEOUT).await {
                Ok(()) => NamedLock::acquire(serve_shard, serve.lane).await,
                Err(e) => Err(e),
            };
            match acquired {
                Ok(Some(l)) => locks.push(l),
                other => {
                    if let Ok(None) = other {
                        worker_log!(
                            info,
                            serve,
                            "another process already works as this identity; exiting"
                        );
                    }
                    Identity::new(locks).release().await;
                    return other.map(|_| ());
                }
            }
        }
        let identity = Identity::new(locks);
        let result = self
            .serve(serve_shard, serve, slot, watched, &identity)
            .await;
        identity.release().await;
        result
    }

    async fn serve(
        &self,
        shard: &Shard,
        prefix: Prefix,
        slot: Slot,
        watched: Option<Concern>,
        identity: &Identity,
    ) -> anyhow::Result<()> {
        let dep = self.deployment;
        let args = self.args;
        let stop = stop_flag(prefix)?;
        let stats = RunStats::default();
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
        let mut props_errors_in_a_row = 0u32;
        let mut once_looks = 0u32;
        let reason = loop {
            if stop.load(Ordering::SeqCst) {
                break format!("stopping on a signal ({})", stats.summary(jobs));
            }
            if started.elapsed() >= lifetime {
                break format!("lifetime reached ({})", stats.summary(jobs));
            }
            if args.max_jobs.is_some_and(|m| jobs >= m) {
                break format!("{} done (--max-jobs)", stats.summary(jobs));
            }
            if last_check.elapsed() >= Duration::from_secs(1) {
                last_check = Instant::now();
                // A failed read is tolerated as a queue error is: the values read last stay
                // in force, and ten failures in a row end the run.
                match props::get_all(&dep.ppcdict).await {
                    Ok(values) => {
                        props_errors_in_a_row = 0;
                        if let Some(before) = &watched
                            && concern(&workers_of(&values, dep, self.launched), slot) != *before
                        {
                            break format!(
                                "{} changed for {slot}; exiting (the timer starts it again; {})",
                                props::ADDITIONAL_WORKERS,
                                stats.summary(jobs)
                            );
                        }
                        settings = Settings::of(&values, prefix.shard, &mut coef_error);
                    }
                    Err(e) => {
                        props_errors_in_a_row += 1;
                        worker_log!(
                            error,
                            prefix,
                            "cannot read the queue's properties ({props_errors_in_a_row} in a row): {}; keeping the values read last",
                            zakaz_core::error::one_line(&e)
                        );
                        if props_errors_in_a_row >= ERRORS_IN_A_ROW {
                            return Err(e.context(format!(
                                "{prefix}: {ERRORS_IN_A_ROW} failed reads of the properties in a row"
                            )));
                        }
                    }
                }
            }
            if last_beat.elapsed() >= Duration::from_secs(10) {
                last_beat = Instant::now();
                if let Err(e) = heartbeat(shard, &worker, &self.clock, false).await {
                    worker_log!(warn, prefix, "heartbeat failed: {e:#}");
                }
            }
            let step = match prefix.lane {
                Lane::Copy(n) => {
                    self.copy_step(shard, prefix, n, &worker, &settings, identity, &stats)
                        .await
                }
                Lane::Rest => {
                    self.rest_step(shard, prefix, &worker, identity, &stats)
                        .await
                }
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
                            break format!("queue drained ({})", stats.summary(jobs));
                        }
                        once_looks += 1;
                        sleep_unless_stopped(Duration::from_millis(args.poll_ms.min(50)), &stop)
                            .await;
                        continue;
                    }
                    sleep_unless_stopped(Duration::from_millis(args.poll_ms), &stop).await;
                }
                Err(e) if is_lock_lost(&e) => {
                    // Another process may run as this worker now: do nothing more, and fail
                    // the unit so that the loss is seen (its timer starts it again).
                    worker_log!(
                        error,
                        prefix,
                        "{}; stopping at once: another process may be running as this worker ({})",
                        zakaz_core::error::one_line(&e),
                        stats.summary(jobs)
                    );
                    return Err(e.context(format!("{prefix}: stopped")));
                }
                Err(e) => {
                    errors_in_a_row += 1;
                    worker_log!(
                        error,
                        prefix,
                        "queue error ({errors_in_a_row} in a row): {}",
                        zakaz_core::error::one_line(&e)
                    );
                    if errors_in_a_row >= ERRORS_IN_A_ROW {
                        return Err(e.context(format!(
                            "{prefix}: {ERRORS_IN_A_ROW} queue errors in a row"
                        )));
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
    #[allow(clippy::too_many_arguments)]
    async fn copy_step(
        &self,
        shard: &Shard,
        prefix: Prefix,
        par_id: u32,
        worker: &str,
        settings: &Settings,
        identity: &Identity,
        stats: &RunStats,
    ) -> anyhow::Result<Option<Duration>> {
        identity.verify().await?;
        let Some(job) = rerunning(stats, prefix, None, "the claim", || {
            queue::claim_copy(shard, par_id, worker, self.clock.now())
        })
        .await?
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
            identity,
        };
        let started = Instant::now();
        // A deadlock victim is run again at once: the copy is idempotent on its new cid.
        let result = rerunning(stats, prefix, Some(job.cid), "the copy", || {
            ops::copy(&ctx, &job, started, || self.clock.now())
        })
        .await;
        let took = started.elapsed();
        self.report(
            shard,
            prefix,
            Table::Copy,
            job.id,
            job.cid,
            job.attempts,
            worker,
            identity,
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
        identity: &Identity,
        stats: &RunStats,
    ) -> anyhow::Result<Option<Duration>> {
        identity.verify().await?;
        let Some(job) = rerunning(stats, prefix, None, "the claim", || {
            queue::claim_rest(shard, worker, self.clock.now())
        })
        .await?
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
        let result = rerunning(stats, prefix, Some(job.cid), "the operation", || {
            ops::rest(shard, &job, worker, identity, self.clock.now())
        })
        .await;
        self.report(
            shard,
            prefix,
            Table::Rest,
            job.id,
            job.cid,
            job.attempts,
            worker,
            identity,
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
        identity: &Identity,
        result: anyhow::Result<Outcome>,
    ) -> anyhow::Result<()> {
        match result {
            Ok(Outcome::Done(d)) => job_log!(info, prefix, cid, "done: {d}"),
            Ok(Outcome::Rejected(r)) => job_log!(warn, prefix, cid, "rejected: {r}"),
            Ok(Outcome::Gone(why)) => job_log!(warn, prefix, cid, "not done here: {why}"),
            // Nothing is recorded in a job this worker may no longer own.
            Err(e) if is_lock_lost(&e) => return Err(e),
            Err(e) => {
                identity.verify().await?;
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

/// Run `work` (one or more whole transactions) again when MariaDB chose it as a deadlock
/// victim (1213: at once, at most [`DEADLOCK_RERUNS`] times) or a statement of it timed out
/// waiting for a lock (1205: it already waited, so at most [`LOCK_WAIT_RERUNS`] times). Each
/// is logged and counted; past the bound the error is returned (a queue error for a claim, a
/// failed attempt for a job).
async fn rerunning<T, F, Fut>(
    stats: &RunStats,
    prefix: Prefix,
    cid: Option<u64>,
    what: &str,
    mut work: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let (mut deadlocks, mut lock_waits) = (0, 0);
    loop {
        let e = match work().await {
            Err(e) => e,
            ok => return ok,
        };
        let (counter, done, bound, name) = match queue::lock_error(&e) {
            Some(queue::LockError::Deadlock) => (
                &stats.deadlocks,
                &mut deadlocks,
                DEADLOCK_RERUNS,
                "deadlock (MariaDB 1213): chosen as the victim",
            ),
            Some(queue::LockError::LockWaitTimeout) => (
                &stats.lock_waits,
                &mut lock_waits,
                LOCK_WAIT_RERUNS,
                "lock wait timeout (MariaDB 1205)",
            ),
            None => return Err(e),
        };
        counter.set(counter.get() + 1);
        let rerun = *done < bound;
        let then = if rerun {
            *done += 1;
            format!(
                "run again at once, not counted as an attempt ({} of at most {bound})",
                *done
            )
        } else {
            format!("not run again ({bound} reruns done)")
        };
        match cid {
            Some(cid) => job_log!(warn, prefix, cid, "{name} in {what}; {then}"),
            None => worker_log!(warn, prefix, "{name} in {what}; {then}"),
        }
        if !rerun {
            return Err(e);
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
fn stop_flag(prefix: Prefix) -> anyhow::Result<Arc<AtomicBool>> {
    use tokio::signal::unix::{SignalKind, signal};
    let flag = Arc::new(AtomicBool::new(false));
    let mut term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
    let set = flag.clone();
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        set.store(true, Ordering::SeqCst);
        worker_log!(
            info,
            prefix,
            "{name} received: finishing the job in hand, then exiting"
        );
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

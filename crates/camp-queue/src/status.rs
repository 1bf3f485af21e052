//! What operators, `alerts` and `healthcheck` read about the queues: per shard and queue the
//! age of the oldest due job, the size, distinct waiting clients, jobs pinned to lanes whose
//! worker is not running, and each worker's heartbeat.

use anyhow::Context as _;
use chrono::NaiveDateTime;
use serde::Serialize;

use crate::db::{Deployment, STATUS_CONNECT_TIMEOUT, Shard};
use crate::identity::lock_prefix;
use crate::queue::Lane;

#[derive(Debug, Clone, Serialize)]
pub struct QueueStatus {
    pub queue: &'static str,
    pub size: i64,
    pub due: i64,
    /// Minutes since the oldest due job was queued; `None` when nothing is due.
    pub oldest_due_age_minutes: Option<f64>,
    pub waiting_clients: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Pinned {
    pub par_id: String,
    pub jobs: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct WorkerBeat {
    pub par_id: String,
    pub host: String,
    pub pid: u32,
    pub heartbeat_at: NaiveDateTime,
    pub heartbeat_age_seconds: f64,
    /// Whether a process holds this identity's lock now.
    pub running: bool,
}

/// Why a shard could not be read: decides the exit code of `camp-queue status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// A setting is wrong (a refused login, TLS the server does not offer): exit 78.
    Config,
    /// The server cannot be reached or does not answer: exit 69.
    Unavailable,
    /// Anything else (a missing table, …): exit 1.
    Other,
}

#[derive(Debug, Clone, Serialize)]
pub struct ShardStatus {
    pub shard: u32,
    pub database: String,
    /// Set when the shard could not be read; the other fields are then empty.
    pub error: Option<String>,
    #[serde(skip)]
    pub failure: Option<Failure>,
    pub queues: Vec<QueueStatus>,
    /// Copies waiting for a lane whose worker is not running.
    pub pinned_to_stopped_lanes: Vec<Pinned>,
    pub workers: Vec<WorkerBeat>,
}

impl ShardStatus {
    pub fn queue(&self, name: &str) -> Option<&QueueStatus> {
        self.queues.iter().find(|q| q.queue == name)
    }
    /// The heartbeat of a primary (`copy:1` or `rest`).
    pub fn worker(&self, par_id: &str) -> Option<&WorkerBeat> {
        self.workers.iter().find(|w| w.par_id == par_id)
    }
}

fn minutes(now: NaiveDateTime, then: NaiveDateTime) -> f64 {
    (now - then).num_milliseconds().max(0) as f64 / 60_000.0
}

async fn queue(
    shard: &Shard,
    sql: &str,
    name: &'static str,
    now: NaiveDateTime,
) -> anyhow::Result<QueueStatus> {
    let (size, due, oldest, clients): (i64, i64, Option<NaiveDateTime>, i64) = sqlx::query_as(sql)
        .bind(now)
        .bind(now)
        .fetch_one(&shard.pool)
        .await
        .with_context(|| format!("reading the {name} queue of shard {}", shard.number))?;
    Ok(QueueStatus {
        queue: name,
        size,
        due,
        oldest_due_age_minutes: oldest.map(|t| minutes(now, t)),
        waiting_clients: clients,
    })
}

async fn shard_status(shard: &Shard, now: NaiveDateTime) -> anyhow::Result<ShardStatus> {
    let copy = queue(
        shard,
        "SELECT COUNT(*), CAST(COALESCE(SUM(next_try_at <= ?), 0) AS SIGNED), \
         MIN(IF(next_try_at <= ?, queue_time, NULL)), COUNT(DISTINCT ClientID) \
         FROM camp_operations_queue_copy",
        "copy",
        now,
    )
    .await?;
    let rest = queue(
        shard,
        "SELECT COUNT(*), CAST(COALESCE(SUM(q.next_try_at <= ?), 0) AS SIGNED), \
         MIN(IF(q.next_try_at <= ?, q.queue_time, NULL)), COUNT(DISTINCT c.ClientID) \
         FROM camp_operations_queue q LEFT JOIN campaigns c ON c.cid = q.cid",
        "rest",
        now,
    )
    .await?;
    // Whether a lane's worker runs is whether its named lock is held, asked in the same
    // query (`lock_name` = `lock_prefix` + the lane).
    let locks = lock_prefix(&shard.database);
    let lanes: Vec<(u32, i64)> = sqlx::query_as(
        "SELECT par_id, COUNT(*) FROM camp_operations_queue_copy WHERE par_id IS NOT NULL \
         GROUP BY par_id HAVING IS_USED_LOCK(CONCAT(?, 'copy:', par_id)) IS NULL",
    )
    .bind(&locks)
    .fetch_all(&shard.pool)
    .await?;
    let pinned = lanes
        .into_iter()
        .map(|(par_id, jobs)| Pinned {
            par_id: Lane::Copy(par_id).to_string(),
            jobs,
        })
        .collect();
    let beats: Vec<(String, String, u32, NaiveDateTime, i64)> = sqlx::query_as(
        "SELECT par_id, host, pid, heartbeat_at, IS_USED_LOCK(CONCAT(?, par_id)) IS NOT NULL \
         FROM camp_queue_workers ORDER BY par_id",
    )
    .bind(&locks)
    .fetch_all(&shard.pool)
    .await?;
    let mut workers = Vec::new();
    for (par_id, host, pid, at, running) in beats {
        workers.push(WorkerBeat {
            heartbeat_age_seconds: (now - at).num_milliseconds() as f64 / 1000.0,
            par_id,
            host,
            pid,
            heartbeat_at: at,
            running: running == 1,
        });
    }
    Ok(ShardStatus {
        shard: shard.number,
        database: shard.database.clone(),
        error: None,
        failure: None,
        queues: vec![copy, rest],
        pinned_to_stopped_lanes: pinned,
        workers,
    })
}

fn failure_of(err: &anyhow::Error) -> Failure {
    match zakaz_core::error::exit_code_for(err) {
        zakaz_core::error::exit::CONFIG => Failure::Config,
        zakaz_core::error::exit::UNAVAILABLE => Failure::Unavailable,
        _ => Failure::Other,
    }
}

/// One shard: first a connection of its own within [`STATUS_CONNECT_TIMEOUT`] (so that a
/// server that is down, or refuses the login, is said at once and by name), then the queries.
async fn shard_or_error(shard: Shard, now: NaiveDateTime) -> ShardStatus {
    let read = async {
        shard.probe(STATUS_CONNECT_TIMEOUT).await?;
        shard_status(&shard, now).await
    };
    match read.await {
        Ok(s) => s,
        Err(e) => ShardStatus {
            shard: shard.number,
            database: shard.database.clone(),
            error: Some(zakaz_core::error::one_line(&e)),
            failure: Some(failure_of(&e)),
            queues: Vec::new(),
            pinned_to_stopped_lanes: Vec::new(),
            workers: Vec::new(),
        },
    }
}

/// Every shard's status, the shards read at the same time; a shard that cannot be read is
/// reported with its error.
pub async fn collect(dep: &Deployment, now: NaiveDateTime) -> Vec<ShardStatus> {
    let mut tasks = tokio::task::JoinSet::new();
    for shard in &dep.shards {
        tasks.spawn(shard_or_error(shard.clone(), now));
    }
    let mut out = Vec::new();
    while let Some(done) = tasks.join_next().await {
        out.push(done.expect("a shard's status task does not panic"));
    }
    out.sort_by_key(|s| s.shard);
    out
}

/// The error `camp-queue status` exits with when a shard could not be read: the first such
/// shard's, classified (a setting → 78, a server that cannot be reached → 69).
pub fn failure(status: &[ShardStatus]) -> Option<anyhow::Error> {
    let bad: Vec<&ShardStatus> = status.iter().filter(|s| s.error.is_some()).collect();
    // A wrong setting first: it will not go away by waiting.
    let first = bad
        .iter()
        .find(|s| s.failure == Some(Failure::Config))
        .or_else(|| bad.first())?;
    let mut line = first.error.clone().unwrap_or_default();
    if bad.len() > 1 {
        line.push_str(&format!(
            " (and {} more shards cannot be read)",
            bad.len() - 1
        ));
    }
    Some(match first.failure {
        Some(Failure::Config) => zakaz_core::error::config_error(line),
        Some(Failure::Unavailable) => zakaz_core::error::UnavailableError(line).into(),
        _ => anyhow::anyhow!("shard {} cannot be read: {line}", first.shard),
    })
}

/// The human form of `camp-queue status`.
pub fn render(status: &[ShardStatus]) -> String {
    let mut out = String::new();
    for s in status {
        if let Some(e) = &s.error {
            out.push_str(&format!(
                "shard {} ({}): UNREADABLE: {e}\n",
                s.shard, s.database
            ));
            continue;
        }
        for q in &s.queues {
            let age = q
                .oldest_due_age_minutes
                .map_or("nothing due".to_owned(), |m| {
                    format!("oldest due {m:.1} min")
                });
            out.push_str(&format!(
                "shard {} {:<4}: {} queued, {} due, {age}, {} waiting clients\n",
                s.shard, q.queue, q.size, q.due, q.waiting_clients
            ));
        }
        for p in &s.pinned_to_stopped_lanes {
            out.push_str(&format!(
                "shard {} copy: {} jobs wait for {}, whose worker is not running\n",
                s.shard, p.jobs, p.par_id
            ));
        }
        for primary in ["copy:1", "rest"] {
            match s.worker(primary) {
                Some(w) => out.push_str(&format!(
                    "shard {} {primary}: {}, last heartbeat {} ({:.0} s ago, {} pid {})\n",
                    s.shard,
                    if w.running { "running" } else { "not running" },
                    w.heartbeat_at.format("%Y-%m-%d %H:%M:%S"),
                    w.heartbeat_age_seconds,
                    w.host,
                    w.pid
                )),
                None => out.push_str(&format!("shard {} {primary}: no heartbeat yet\n", s.shard)),
            }
        }
    }
    out
}

/// Every event of one campaign on every shard, oldest first.
pub async fn history(dep: &Deployment, cid: u64) -> anyhow::Result<Vec<String>> {
    let mut lines = Vec::new();
    for shard in &dep.shards {
        let rows: Vec<(NaiveDateTime, String, String, String, String, Option<u64>)> =
            sqlx::query_as(
                "SELECT at, queue, worker, event, detail, duration_ms FROM camp_queue_history \
             WHERE cid = ? ORDER BY at, id",
            )
            .bind(cid)
            .fetch_all(&shard.pool)
            .await
            .with_context(|| format!("reading the history of shard {}", shard.number))?;
        for (at, queue, worker, event, detail, ms) in rows {
            let took = ms.map(|m| format!(" ({m} ms)")).unwrap_or_default();
            let who = if worker == "enqueue" {
                format!("shard_{}", shard.number)
            } else {
                format!("shard_{},par-id_{worker}", shard.number)
            };
            lines.push(format!(
                "{} {who} {queue} {event}: {detail}{took}",
                at.format("%Y-%m-%d %H:%M:%S%.3f")
            ));
        }
    }
    lines.sort();
    Ok(lines)
}

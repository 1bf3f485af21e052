//! The two queues' rows: enqueue, claim, retry, finish.
//!
//! How fairness ("pessimisation") is stored: the rule is `effective_queue_time = queue_time +
//! accumulated(client)` for every queued copy of a client enqueued with role `client`. All of
//! one client's such copies share the same offset, so their order among themselves is their
//! `queue_time` order, and only the client's *first* waiting copy (its head) can be the next
//! one claimed. So only the head carries its effective time; the client's later copies carry
//! [`BEHIND_CLIENT_HEAD`](crate::schema::BEHIND_CLIENT_HEAD) and get their time when they become
//! the head (in the claim that takes the previous head). Finishing a copy updates the
//! client's accumulated time and rewrites one row (the head), never the whole backlog, and the
//! order of processing is exactly the rule's.
//!
//! Locks: enqueue and claim serialise per client on the `clients_options` row; a claim locks
//! only rows it takes (`SKIP LOCKED`) and a finish never waits for a queue row, so there is no
//! lock cycle.

use std::fmt;

use anyhow::Context as _;
use chrono::NaiveDateTime;
use sqlx::{MySql, Transaction};

use crate::db::Shard;
use crate::schema::BEHIND_CLIENT_HEAD;

/// Who asked for a copy: only `client` copies are pessimised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Client,
    Manager,
    Agency,
    Support,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Client => "client",
            Role::Manager => "manager",
            Role::Agency => "agency",
            Role::Support => "support",
        }
    }
    fn parse(s: &str) -> Role {
        match s {
            "client" => Role::Client,
            "manager" => Role::Manager,
            "agency" => Role::Agency,
            _ => Role::Support,
        }
    }
}

/// The operations of the other queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Operation {
    Arc,
    Unarc,
    Del,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Arc => "arc",
            Operation::Unarc => "unarc",
            Operation::Del => "del",
        }
    }
    fn parse(s: &str) -> Operation {
        match s {
            "arc" => Operation::Arc,
            "unarc" => Operation::Unarc,
            _ => Operation::Del,
        }
    }
}

/// The worker's lane on a shard: `copy:N` or `rest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lane {
    Copy(u32),
    Rest,
}

impl fmt::Display for Lane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Lane::Copy(n) => write!(f, "copy:{n}"),
            Lane::Rest => f.write_str("rest"),
        }
    }
}

impl std::str::FromStr for Lane {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "rest" {
            return Ok(Lane::Rest);
        }
        match s.strip_prefix("copy:").and_then(|n| n.parse::<u32>().ok()) {
            Some(n) if n >= 1 && s == format!("copy:{n}") => Ok(Lane::Copy(n)),
            _ => Err(format!("`{s}` is neither `copy:N` (N ≥ 1) nor `rest`")),
        }
    }
}

pub fn sentinel() -> NaiveDateTime {
    NaiveDateTime::parse_from_str(BEHIND_CLIENT_HEAD, "%Y-%m-%d %H:%M:%S").expect("valid")
}

/// `t + seconds`, at microsecond precision (what DATETIME(6) keeps).
pub fn plus_seconds(t: NaiveDateTime, seconds: f64) -> NaiveDateTime {
    t + chrono::Duration::microseconds((seconds * 1e6).round() as i64)
}

/// A lock conflict MariaDB ended a transaction (or statement) for: it may simply be run again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockError {
    /// 1213: chosen as a deadlock victim (the whole transaction was rolled back).
    Deadlock,
    /// 1205: waited `innodb_lock_wait_timeout` for a row lock.
    LockWaitTimeout,
}

pub fn lock_error(err: &anyhow::Error) -> Option<LockError> {
    err.chain()
        .find_map(|c| match c.downcast_ref::<sqlx::Error>() {
            Some(sqlx::Error::Database(d)) => d
                .try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
                .and_then(|m| match m.number() {
                    1213 => Some(LockError::Deadlock),
                    1205 => Some(LockError::LockWaitTimeout),
                    _ => None,
                }),
            _ => None,
        })
}

/// One event of a campaign's story (`camp-queue history --cid`).
pub struct Event<'a> {
    pub cid: u64,
    /// `copy` or `rest`.
    pub queue: &'a str,
    /// The worker's par-id, or `enqueue`.
    pub worker: &'a str,
    /// `queued`, `claimed`, `done`, `rejected`, `failed`, `gave_up`.
    pub event: &'a str,
    pub detail: &'a str,
}

pub async fn history(
    tx: &mut Transaction<'_, MySql>,
    at: NaiveDateTime,
    e: Event<'_>,
    duration_ms: Option<u64>,
) -> anyhow::Result<()> {
    let (cid, queue, worker, event) = (e.cid, e.queue, e.worker, e.event);
    let detail: String = e.detail.chars().take(1000).collect();
    sqlx::query(
        "INSERT INTO camp_queue_history (at, cid, queue, worker, event, detail, duration_ms) \
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(at)
    .bind(cid)
    .bind(queue)
    .bind(worker)
    .bind(event)
    .bind(detail)
    .bind(duration_ms)
    .execute(&mut **tx)
    .await
    .context("writing camp_queue_history")?;
    Ok(())
}

/// Lock (creating if needed) a client's `clients_options` row; returns its accumulated copy
/// seconds and when they were last updated.
async fn lock_client(
    tx: &mut Transaction<'_, MySql>,
    client: u64,
) -> anyhow::Result<(f64, Option<NaiveDateTime>)> {
    // Lock first, insert only when missing: `INSERT IGNORE` on an existing row takes a shared
    // lock, and two transactions upgrading theirs to exclusive deadlock each other.
    const LOCK: &str =
        "SELECT camp_copy_ela, camp_copy_ela_at FROM clients_options WHERE ClientID = ? FOR UPDATE";
    if let Some(row) = sqlx::query_as(LOCK)
        .bind(client)
        .fetch_optional(&mut **tx)
        .await?
    {
        return Ok(row);
    }
    sqlx::query("INSERT IGNORE INTO clients_options (ClientID) VALUES (?)")
        .bind(client)
        .execute(&mut **tx)
        .await?;
    Ok(sqlx::query_as(LOCK)
        .bind(client)
        .fetch_one(&mut **tx)
        .await?)
}

/// The client's first waiting copy in the shared lane (its head): by a non-locking read, or
/// locking it unless another transaction holds it (`skip_locked`).
async fn client_head(
    tx: &mut Transaction<'_, MySql>,
    client: u64,
    skip_locked: bool,
) -> anyhow::Result<Option<(u64, NaiveDateTime)>> {
    const HEAD: &str = "SELECT id, queue_time FROM camp_operations_queue_copy FORCE INDEX (client_head) \
         WHERE ClientID = ? AND role = 'client' AND par_id IS NULL \
         ORDER BY queue_time, id LIMIT 1";
    let sql = if skip_locked {
        format!("{HEAD} FOR UPDATE SKIP LOCKED")
    } else {
        HEAD.to_owned()
    };
    Ok(sqlx::query_as(&sql)
        .bind(client)
        .fetch_optional(&mut **tx)
        .await?)
}

async fn set_effective(
    tx: &mut Transaction<'_, MySql>,
    id: u64,
    effective: NaiveDateTime,
) -> anyhow::Result<()> {
    sqlx::query("UPDATE camp_operations_queue_copy SET effective_queue_time = ? WHERE id = ?")
        .bind(effective)
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// An enqueue's insert: a unique-key violation is the campaign already being queued (at
/// most once per queue), said in `already`'s words.
fn queued_once(
    inserted: Result<sqlx::mysql::MySqlQueryResult, sqlx::Error>,
    table: &str,
    already: impl FnOnce() -> String,
) -> anyhow::Result<()> {
    match inserted {
        Ok(_) => Ok(()),
        Err(e)
            if e.as_database_error()
                .is_some_and(|d| d.is_unique_violation()) =>
        {
            Err(anyhow::anyhow!(already()))
        }
        Err(e) => Err(e).with_context(|| format!("inserting into {table}")),
    }
}

/// What a copy request names.
#[derive(Debug, Clone)]
pub struct CopyRequest {
    pub cid: u64,
    pub client: u64,
    pub to_client: u64,
    pub role: Role,
}

/// Put one copy on the source campaign's shard. Errors (already queued) are one line.
pub async fn enqueue_copy(
    shard: &Shard,
    req: &CopyRequest,
    now: NaiveDateTime,
) -> anyhow::Result<()> {
    let mut tx = shard.pool.begin().await?;
    let effective = if req.role == Role::Client {
        let (acc, _) = lock_client(&mut tx, req.client).await?;
        match client_head(&mut tx, req.client, false).await? {
            None => plus_seconds(now, acc),
            Some((_, head_time)) if head_time <= now => sentinel(),
            // A copy queued "earlier" than the head (a clock step back) becomes the head.
            Some((head, _)) => {
                set_effective(&mut tx, head, sentinel()).await?;
                plus_seconds(now, acc)
            }
        }
    } else {
        now
    };
    let inserted = sqlx::query(
        "INSERT INTO camp_operations_queue_copy \
         (cid, ClientID, new_ClientID, role, queue_time, effective_queue_time, next_try_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(req.cid)
    .bind(req.client)
    .bind(req.to_client)
    .bind(req.role.as_str())
    .bind(now)
    .bind(effective)
    .bind(now)
    .execute(&mut *tx)
    .await;
    queued_once(inserted, "camp_operations_queue_copy", || {
        format!(
            "campaign {} is already in the copy queue of shard {}",
            req.cid, shard.number
        )
    })?;
    let detail = format!(
        "copy to client {} (role {})",
        req.to_client,
        req.role.as_str()
    );
    history(
        &mut tx,
        now,
        Event {
            cid: req.cid,
            queue: "copy",
            worker: "enqueue",
            event: "queued",
            detail: &detail,
        },
        None,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Queue every campaign of `client` at once (the flood the seed describes; also the
/// benchmark's backlog): one statement, the same effective times as one-by-one enqueues.
pub async fn enqueue_client_copies(
    shard: &Shard,
    client: u64,
    to_client: u64,
    role: Role,
    now: NaiveDateTime,
) -> anyhow::Result<u64> {
    let mut tx = shard.pool.begin().await?;
    let (acc, _) = lock_client(&mut tx, client).await?;
    // A client's copies wait behind its head; the head is given (or kept) below.
    let effective = if role == Role::Client {
        sentinel()
    } else {
        now
    };
    let inserted = sqlx::query(
        "INSERT IGNORE INTO camp_operations_queue_copy \
         (cid, ClientID, new_ClientID, role, queue_time, effective_queue_time, next_try_at) \
         SELECT cid, ClientID, ?, ?, ?, ?, ? FROM campaigns WHERE ClientID = ? ORDER BY cid",
    )
    .bind(to_client)
    .bind(role.as_str())
    .bind(now)
    .bind(effective)
    .bind(now)
    .bind(client)
    .execute(&mut *tx)
    .await
    .context("queueing the client's campaigns")?;
    if role == Role::Client {
        ensure_head(&mut tx, client, acc).await?;
    }
    tx.commit().await?;
    Ok(inserted.rows_affected())
}

/// Put an archive/unarchive/delete on the campaign's shard.
pub async fn enqueue_rest(
    shard: &Shard,
    cid: u64,
    op: Operation,
    now: NaiveDateTime,
) -> anyhow::Result<()> {
    let mut tx = shard.pool.begin().await?;
    let inserted = sqlx::query(
        "INSERT INTO camp_operations_queue (cid, operation, queue_time, next_try_at) VALUES (?, ?, ?, ?)",
    )
    .bind(cid)
    .bind(op.as_str())
    .bind(now)
    .bind(now)
    .execute(&mut *tx)
    .await;
    queued_once(inserted, "camp_operations_queue", || {
        format!(
            "campaign {cid} already has an operation queued on shard {} (at most one per campaign)",
            shard.number
        )
    })?;
    history(
        &mut tx,
        now,
        Event {
            cid,
            queue: "rest",
            worker: "enqueue",
            event: "queued",
            detail: op.as_str(),
        },
        None,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// A claimed copy job.
#[derive(Debug, Clone)]
pub struct CopyJob {
    pub id: u64,
    /// The lane that claimed it (`par_id`).
    pub par_id: u32,
    pub cid: u64,
    pub client: u64,
    pub to_client: u64,
    pub role: Role,
    pub attempts: u32,
}

/// The two claim queries, each served by the `claim` index in its order (a test checks
/// their EXPLAIN): the worker's own lane first (its crashed or retried jobs, or jobs an
/// operator pinned to it), then the shared lane.
pub const CLAIM_OWN: &str = "SELECT id, cid, ClientID, new_ClientID, role, attempts \
     FROM camp_operations_queue_copy FORCE INDEX (claim) \
     WHERE par_id = ? AND next_try_at <= ? \
     ORDER BY effective_queue_time, id LIMIT 1 FOR UPDATE SKIP LOCKED";
pub const CLAIM_SHARED: &str = "SELECT id, cid, ClientID, new_ClientID, role, attempts \
     FROM camp_operations_queue_copy FORCE INDEX (claim) \
     WHERE par_id IS NULL AND effective_queue_time < ? AND next_try_at <= ? \
     ORDER BY effective_queue_time, id LIMIT 1 FOR UPDATE SKIP LOCKED";

type CopyRow = (u64, u64, u64, u64, String, u32);

/// Claim the next due copy for worker `par_id`: sets `par_id`, counts the attempt, and (for a
/// client's copy taken from the shared lane) gives the client's next copy its time.
pub async fn claim_copy(
    shard: &Shard,
    par_id: u32,
    worker: &str,
    now: NaiveDateTime,
) -> anyhow::Result<Option<CopyJob>> {
    let mut tx = shard.pool.begin().await?;
    let own: Option<CopyRow> = sqlx::query_as(CLAIM_OWN)
        .bind(par_id)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await
        .context("claiming from the own lane")?;
    let (row, shared) = match own {
        Some(r) => (r, false),
        None => {
            let shared: Option<CopyRow> = sqlx::query_as(CLAIM_SHARED)
                .bind(sentinel())
                .bind(now)
                .fetch_optional(&mut *tx)
                .await
                .context("claiming from the shared lane")?;
            match shared {
                Some(r) => (r, true),
                None => {
                    tx.commit().await?;
                    return Ok(None);
                }
            }
        }
    };
    let job = CopyJob {
        id: row.0,
        par_id,
        cid: row.1,
        client: row.2,
        to_client: row.3,
        role: Role::parse(&row.4),
        attempts: row.5 + 1,
    };
    sqlx::query("UPDATE camp_operations_queue_copy SET par_id = ?, attempts = ? WHERE id = ?")
        .bind(par_id)
        .bind(job.attempts)
        .bind(job.id)
        .execute(&mut *tx)
        .await?;
    if shared && job.role == Role::Client {
        let (acc, _) = lock_client(&mut tx, job.client).await?;
        if let Some((next, queue_time)) = client_head(&mut tx, job.client, false).await? {
            set_effective(&mut tx, next, plus_seconds(queue_time, acc)).await?;
        }
    }
    let detail = format!(
        "attempt {} of a copy to client {} (role {})",
        job.attempts,
        job.to_client,
        job.role.as_str()
    );
    history(
        &mut tx,
        now,
        Event {
            cid: job.cid,
            queue: "copy",
            worker,
            event: "claimed",
            detail: &detail,
        },
        None,
    )
    .await?;
    tx.commit().await?;
    Ok(Some(job))
}

/// After a client's copy: decay and add to its accumulated time, and move its head.
pub async fn pessimise(
    tx: &mut Transaction<'_, MySql>,
    client: u64,
    duration_secs: f64,
    decay_secs: f64,
    now: NaiveDateTime,
) -> anyhow::Result<f64> {
    let (acc, at) = lock_client(tx, client).await?;
    let elapsed = at.map_or(f64::INFINITY, |at| {
        ((now - at).num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6).max(0.0)
    });
    let acc = acc * (-elapsed / decay_secs).exp() + duration_secs;
    sqlx::query(
        "UPDATE clients_options SET camp_copy_ela = ?, camp_copy_ela_at = ? WHERE ClientID = ?",
    )
    .bind(acc)
    .bind(now)
    .bind(client)
    .execute(&mut **tx)
    .await?;
    // SKIP LOCKED: a head being claimed right now is skipped; its claimer gives the next copy
    // its time after this commits (it waits for the client's row), with the new value.
    let head = client_head(tx, client, true).await?;
    if let Some((id, queue_time)) = head {
        set_effective(tx, id, plus_seconds(queue_time, acc)).await?;
    }
    Ok(acc)
}

/// If none of the client's waiting copies carries its time (a head), give it to the first:
/// `queue_time + accumulated`. The client's row must be locked. True when a head was given.
async fn ensure_head(
    tx: &mut Transaction<'_, MySql>,
    client: u64,
    acc: f64,
) -> anyhow::Result<bool> {
    let head: Option<(u64,)> = sqlx::query_as(
        "SELECT id FROM camp_operations_queue_copy FORCE INDEX (client_head) \
         WHERE ClientID = ? AND role = 'client' AND par_id IS NULL AND effective_queue_time < ? \
         LIMIT 1",
    )
    .bind(client)
    .bind(sentinel())
    .fetch_optional(&mut **tx)
    .await?;
    if head.is_some() {
        return Ok(false);
    }
    match client_head(tx, client, false).await? {
        Some((id, queue_time)) => {
            set_effective(tx, id, plus_seconds(queue_time, acc)).await?;
            Ok(true)
        }
        None => Ok(false),
    }
}

/// Give a head to every client whose waiting copies have none (a head pinned to a lane by
/// hand, or a claim rolled back after a finish skipped it). Run when the worker is idle.
pub async fn repair_heads(shard: &Shard) -> anyhow::Result<u64> {
    let orphans: Vec<(u64,)> = sqlx::query_as(
        "SELECT DISTINCT w.ClientID FROM camp_operations_queue_copy w FORCE INDEX (claim) \
         WHERE w.par_id IS NULL AND w.effective_queue_time = ? AND NOT EXISTS ( \
           SELECT 1 FROM camp_operations_queue_copy h \
           WHERE h.ClientID = w.ClientID AND h.role = 'client' AND h.par_id IS NULL \
             AND h.effective_queue_time < ?) LIMIT 100",
    )
    .bind(sentinel())
    .bind(sentinel())
    .fetch_all(&shard.pool)
    .await?;
    let mut repaired = 0;
    for (client,) in orphans {
        let mut tx = shard.pool.begin().await?;
        let (acc, _) = lock_client(&mut tx, client).await?;
        if ensure_head(&mut tx, client, acc).await? {
            repaired += 1;
        }
        tx.commit().await?;
    }
    Ok(repaired)
}

/// Due jobs a worker could take once no other claim holds them (`--once` waits for these).
pub async fn due_for(shard: &Shard, lane: Lane, now: NaiveDateTime) -> anyhow::Result<i64> {
    let (n,): (i64,) = match lane {
        Lane::Copy(par_id) => sqlx::query_as(
            "SELECT COUNT(*) FROM camp_operations_queue_copy \
             WHERE (par_id IS NULL OR par_id = ?) AND next_try_at <= ?",
        )
        .bind(par_id)
        .bind(now),
        Lane::Rest => {
            sqlx::query_as("SELECT COUNT(*) FROM camp_operations_queue WHERE next_try_at <= ?")
                .bind(now)
        }
    }
    .fetch_one(&shard.pool)
    .await?;
    Ok(n)
}

/// A claimed archive/unarchive/delete.
#[derive(Debug, Clone)]
pub struct RestJob {
    pub id: u64,
    pub cid: u64,
    pub operation: Operation,
    pub attempts: u32,
}

pub const CLAIM_REST: &str = "SELECT id, cid, operation, attempts FROM camp_operations_queue \
     FORCE INDEX (claim) WHERE next_try_at <= ? ORDER BY queue_time, id LIMIT 1 FOR UPDATE";

pub async fn claim_rest(
    shard: &Shard,
    worker: &str,
    now: NaiveDateTime,
) -> anyhow::Result<Option<RestJob>> {
    let mut tx = shard.pool.begin().await?;
    let row: Option<(u64, u64, String, u32)> = sqlx::query_as(CLAIM_REST)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await
        .context("claiming from camp_operations_queue")?;
    let Some(row) = row else {
        tx.commit().await?;
        return Ok(None);
    };
    let job = RestJob {
        id: row.0,
        cid: row.1,
        operation: Operation::parse(&row.2),
        attempts: row.3 + 1,
    };
    sqlx::query("UPDATE camp_operations_queue SET attempts = ? WHERE id = ?")
        .bind(job.attempts)
        .bind(job.id)
        .execute(&mut *tx)
        .await?;
    let detail = format!("attempt {} of {}", job.attempts, job.operation.as_str());
    history(
        &mut tx,
        now,
        Event {
            cid: job.cid,
            queue: "rest",
            worker,
            event: "claimed",
            detail: &detail,
        },
        None,
    )
    .await?;
    tx.commit().await?;
    Ok(Some(job))
}

/// Which queue table a job row is in.
#[derive(Debug, Clone, Copy)]
pub enum Table {
    Copy,
    Rest,
}

impl Table {
    pub fn name(self) -> &'static str {
        match self {
            Table::Copy => "camp_operations_queue_copy",
            Table::Rest => "camp_operations_queue",
        }
    }
    pub fn queue(self) -> &'static str {
        match self {
            Table::Copy => "copy",
            Table::Rest => "rest",
        }
    }
}

pub async fn delete_job(
    tx: &mut Transaction<'_, MySql>,
    table: Table,
    id: u64,
) -> anyhow::Result<()> {
    sqlx::query(&format!("DELETE FROM {} WHERE id = ?", table.name()))
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// What became of a failed attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum AfterFailure {
    RetryAt(NaiveDateTime, u64),
    GaveUp,
}

/// A failed attempt: schedule the next one after `delays[attempt − 1]`, or, after the last,
/// delete the job. Both are recorded in the campaign's history.
#[allow(clippy::too_many_arguments)]
pub async fn fail_job(
    shard: &Shard,
    table: Table,
    id: u64,
    cid: u64,
    attempt: u32,
    delays: &[u64],
    worker: &str,
    error: &str,
    now: NaiveDateTime,
) -> anyhow::Result<AfterFailure> {
    let mut tx = shard.pool.begin().await?;
    let error: String = error.chars().take(1000).collect();
    let outcome = match delays.get(attempt as usize - 1) {
        Some(&delay) => {
            let at = plus_seconds(now, delay as f64);
            sqlx::query(&format!(
                "UPDATE {} SET next_try_at = ?, last_error = ? WHERE id = ?",
                table.name()
            ))
            .bind(at)
            .bind(&error)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            let detail = format!(
                "attempt {attempt} of {} failed: {error}; next try in {delay} s",
                delays.len() + 1
            );
            history(
                &mut tx,
                now,
                Event {
                    cid,
                    queue: table.queue(),
                    worker,
                    event: "failed",
                    detail: &detail,
                },
                None,
            )
            .await?;
            AfterFailure::RetryAt(at, delay)
        }
        None => {
            delete_job(&mut tx, table, id).await?;
            let detail = format!("attempt {attempt} failed, giving up: {error}");
            history(
                &mut tx,
                now,
                Event {
                    cid,
                    queue: table.queue(),
                    worker,
                    event: "gave_up",
                    detail: &detail,
                },
                None,
            )
            .await?;
            AfterFailure::GaveUp
        }
    };
    tx.commit().await?;
    Ok(outcome)
}

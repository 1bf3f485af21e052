//! What the jobs do: copy a campaign with its banners and phrases (possibly into another
//! shard on another server), archive, unarchive, delete.
//!
//! A copy never happens twice: its new cid is allocated first and stored in the job row (only
//! if none is stored yet, so two processes working on one job agree on it), and the copy is
//! written in one transaction on the target shard that first checks whether that cid exists.
//! On one shard that transaction also deletes the job; across shards the job is deleted after
//! the target commits, and a worker killed in between finds the copy done.
//!
//! While it copies, a worker holds the job's row lock (a transaction on the source shard
//! that ends with the job's deletion), and under that lock it proves it still holds its named
//! lock ([`Identity::verify`]): a second process with the same identity (after the first lost
//! its lock) skips the row (`SKIP LOCKED`) until the first is done or gone, and a first that
//! lost its lock copies nothing.
//!
//! The source campaign, banners and phrases are read in one consistent snapshot, and a phrase
//! whose banner is not among the copied banners fails the copy, naming both: a phrase is
//! never written without its banner.

use anyhow::Context as _;
use chrono::NaiveDateTime;
use sqlx::{MySql, QueryBuilder};

use crate::db::{Deployment, Shard};
use crate::identity::Identity;
use crate::queue::{self, CopyJob, Event, Operation, RestJob, Role, Table};

/// Where a test may freeze a worker (hidden `--pause-at`): to kill it there, or to change
/// something and let it go on (SIGUSR1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PauseAt {
    /// The job claimed, its stored new cid read and found empty, none allocated yet.
    BeforeAllocate,
    /// The source campaign and its banners read, its phrases not yet.
    SourceRead,
    /// Inside the target transaction, the campaign and its banners written, not committed.
    MidCopy,
    /// After the target shard committed the copy, before the job row is deleted.
    AfterTargetCommit,
}

async fn pause_if(pause: Option<PauseAt>, here: PauseAt) {
    if pause == Some(here) {
        use tokio::signal::unix::{SignalKind, signal};
        // Listening before saying so: the test sends SIGUSR1 once it has read the line.
        let mut go_on = signal(SignalKind::user_defined1()).ok();
        eprintln!("camp-queue: paused at {here:?} (test hook)");
        // Bounded: the test kills the process, or lets it go on, long before.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(120), async {
            match go_on.as_mut() {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        })
        .await;
    }
}

/// How a job ended, when it did not fail.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Done(String),
    /// A permanent refusal: recorded and deleted, not retried.
    Rejected(String),
    /// The job is no longer this worker's (another process did it, or an operator moved it
    /// to another lane): nothing done, nothing recorded.
    Gone(String),
}

/// What a copy needs besides the job.
pub struct CopyContext<'a> {
    pub deployment: &'a Deployment,
    pub source: &'a Shard,
    pub worker: &'a str,
    pub pause: Option<PauseAt>,
    pub decay_secs: f64,
    /// The worker's named locks, proven held before anything is written.
    pub identity: &'a Identity,
}

type BannerRow = (u64, String, String, String);
type PhraseRow = (u64, u64, String, String);

/// The source campaign as one snapshot saw it.
struct Source {
    name: String,
    kind: String,
    banners: Vec<BannerRow>,
    phrases: Vec<PhraseRow>,
}

/// The job's stored new cid; `None` when the row is gone.
async fn stored_new_cid(source: &Shard, job: &CopyJob) -> anyhow::Result<Option<Option<u64>>> {
    let row: Option<(Option<u64>,)> =
        sqlx::query_as("SELECT new_cid FROM camp_operations_queue_copy WHERE id = ?")
            .bind(job.id)
            .fetch_optional(&source.pool)
            .await
            .context("reading the job's new cid")?;
    Ok(row.map(|r| r.0))
}

fn gone(job: &CopyJob, source: &Shard) -> Outcome {
    Outcome::Gone(format!(
        "the job is no longer in shard {}'s queue for copy:{} (done by another process, or moved by hand)",
        source.number, job.par_id
    ))
}

/// Copy the job's campaign. `Ok` means the job row is gone (copied, rejected, or no longer
/// this worker's), `Err` that the attempt failed and the job stays.
pub async fn copy(
    ctx: &CopyContext<'_>,
    job: &CopyJob,
    started: std::time::Instant,
    now: impl Fn() -> NaiveDateTime,
) -> anyhow::Result<Outcome> {
    let source = ctx.source;
    // Cheap refusals first, so that no cid is allocated for them (checked again below,
    // under the job's lock, before anything is written). One round trip: whether the
    // campaign is there, and the job's stored new cid (read from the row, not the claim: an
    // earlier try of this attempt may have stored it).
    let row: Option<(Option<u64>, Option<u64>)> = sqlx::query_as(
        "SELECT (SELECT cid FROM campaigns WHERE cid = ?), new_cid FROM camp_operations_queue_copy WHERE id = ?",
    )
    .bind(job.cid)
    .bind(job.id)
    .fetch_optional(&source.pool)
    .await
    .context("reading the source campaign and the job's new cid")?;
    let Some((exists, stored)) = row else {
        return Ok(gone(job, source));
    };
    let target = match target_of(ctx, job).await? {
        Ok(target) if exists.is_some() => target,
        Ok(_) => {
            let why = format!(
                "campaign {} is not on shard {} any more",
                job.cid, source.number
            );
            return reject(ctx, job, &why, now()).await;
        }
        Err(why) => return reject(ctx, job, &why, now()).await,
    };
    let new_cid = match stored {
        Some(c) => c,
        None => {
            pause_if(ctx.pause, PauseAt::BeforeAllocate).await;
            match allocate_cid(ctx.deployment, source, job).await? {
                Some(c) => c,
                None => return Ok(gone(job, source)),
            }
        }
    };

    // The job's row lock, held until the job is deleted; under it, the proof that this
    // process still is the worker.
    let mut guard = source
        .pool
        .begin()
        .await
        .with_context(|| format!("connecting to shard {}", source.number))?;
    let mine: Option<(u64,)> = sqlx::query_as(
        "SELECT id FROM camp_operations_queue_copy WHERE id = ? AND par_id = ? FOR UPDATE",
    )
    .bind(job.id)
    .bind(job.par_id)
    .fetch_optional(&mut *guard)
    .await
    .context("locking the job")?;
    if mine.is_none() {
        return Ok(gone(job, source));
    }
    ctx.identity.verify().await?;

    let Some(src) = read_source(source, job, ctx.pause).await? else {
        guard.rollback().await?;
        let why = format!(
            "campaign {} is not on shard {} any more",
            job.cid, source.number
        );
        return reject(ctx, job, &why, now()).await;
    };
    let bids: std::collections::HashSet<u64> = src.banners.iter().map(|b| b.0).collect();
    if let Some((ph_id, bid, phrase, _)) = src.phrases.iter().find(|p| !bids.contains(&p.1)) {
        anyhow::bail!(
            "phrase {ph_id} (`{}`) of campaign {} names banner {bid}, which is not one of the campaign's {} banners; nothing copied",
            phrase.chars().take(100).collect::<String>(),
            job.cid,
            src.banners.len()
        );
    }

    let same_shard = target.number == source.number;
    let mut other_tx = None;
    let tx = if same_shard {
        &mut guard
    } else {
        other_tx.insert(
            target
                .pool
                .begin()
                .await
                .with_context(|| format!("connecting to shard {}", target.number))?,
        )
    };
    let exists: Option<(u64,)> =
        sqlx::query_as("SELECT cid FROM campaigns WHERE cid = ? FOR UPDATE")
            .bind(new_cid)
            .fetch_optional(&mut **tx)
            .await?;
    let detail = if exists.is_some() {
        format!("already copied as cid {new_cid} on shard {}", target.number)
    } else {
        write_copy(tx, job, new_cid, &src, now()).await?;
        pause_if(ctx.pause, PauseAt::MidCopy).await;
        format!(
            "copied to cid {new_cid} of client {} on shard {} ({} banners, {} phrases)",
            job.to_client,
            target.number,
            src.banners.len(),
            src.phrases.len()
        )
    };
    if let Some(tx) = other_tx {
        tx.commit()
            .await
            .with_context(|| format!("committing the copy on shard {}", target.number))?;
        pause_if(ctx.pause, PauseAt::AfterTargetCommit).await;
    }
    finish_copy(&mut guard, ctx, job, &detail, started, now()).await?;
    guard.commit().await?;
    Ok(Outcome::Done(detail))
}

/// The shard of the job's target client, or why the copy is refused.
async fn target_of<'a>(
    ctx: &CopyContext<'a>,
    job: &CopyJob,
) -> anyhow::Result<Result<&'a Shard, String>> {
    let Some(number) = ctx.deployment.client_shard(job.to_client).await? else {
        return Ok(Err(format!(
            "target client {} does not exist",
            job.to_client
        )));
    };
    Ok(ctx.deployment.shard(number).map_err(|_| {
        format!(
            "target client {} is on shard {number}, which is not configured",
            job.to_client
        )
    }))
}

/// The campaign, its banners and its phrases, read in one consistent snapshot (a read-only
/// REPEATABLE READ transaction): what another session adds in between is not half-seen.
/// `None` when the campaign is gone.
async fn read_source(
    source: &Shard,
    job: &CopyJob,
    pause: Option<PauseAt>,
) -> anyhow::Result<Option<Source>> {
    // `SET TRANSACTION` (no scope) applies to the next transaction only: the session stays
    // READ COMMITTED.
    let mut snap = source
        .pool
        .begin_with(
            "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ;              START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY",
        )
        .await
        .context("starting a snapshot of the source campaign")?;
    let campaign: Option<(String, String)> =
        sqlx::query_as("SELECT name, type FROM campaigns WHERE cid = ?")
            .bind(job.cid)
            .fetch_optional(&mut *snap)
            .await
            .context("reading the source campaign")?;
    let Some((name, kind)) = campaign else {
        return Ok(None);
    };
    let banners: Vec<BannerRow> =
        sqlx::query_as("SELECT bid, title, body, href FROM banners WHERE cid = ? ORDER BY bid")
            .bind(job.cid)
            .fetch_all(&mut *snap)
            .await
            .context("reading the source banners")?;
    pause_if(pause, PauseAt::SourceRead).await;
    let phrases: Vec<PhraseRow> = sqlx::query_as(
        "SELECT ph_id, bid, phrase, CAST(price AS CHAR) FROM phrases WHERE cid = ? ORDER BY ph_id",
    )
    .bind(job.cid)
    .fetch_all(&mut *snap)
    .await
    .context("reading the source phrases")?;
    snap.commit().await?;
    Ok(Some(Source {
        name,
        kind,
        banners,
        phrases,
    }))
}

/// A new cid from the global allocator, stored in the job before anything is copied —
/// unless one is stored already (another process working on this job got there first):
/// then that one. `None` when the job row is gone.
async fn allocate_cid(
    deployment: &Deployment,
    source: &Shard,
    job: &CopyJob,
) -> anyhow::Result<Option<u64>> {
    let new_cid = sqlx::query("INSERT INTO shard_inc_cid (ClientID) VALUES (?)")
        .bind(job.to_client)
        .execute(&deployment.ppcdict)
        .await
        .context("allocating a cid in ppcdict.shard_inc_cid")?
        .last_insert_id();
    let stored = sqlx::query(
        "UPDATE camp_operations_queue_copy SET new_cid = ? WHERE id = ? AND new_cid IS NULL",
    )
    .bind(new_cid)
    .bind(job.id)
    .execute(&source.pool)
    .await
    .context("storing the new cid in the job")?
    .rows_affected();
    if stored == 1 {
        return Ok(Some(new_cid));
    }
    // Another process stored one first, or the row is gone: what the row says.
    Ok(stored_new_cid(source, job).await?.flatten())
}

async fn write_copy(
    tx: &mut sqlx::Transaction<'_, MySql>,
    job: &CopyJob,
    new_cid: u64,
    src: &Source,
    now: NaiveDateTime,
) -> anyhow::Result<()> {
    let Source {
        name,
        kind,
        banners,
        phrases,
    } = src;
    // A copy starts stopped and without money, as the platform's copies do.
    sqlx::query(
        "INSERT INTO campaigns (cid, ClientID, name, type, statusArchived, statusShow, sum, sum_spent, copied_from_cid, LastChange) \
         VALUES (?, ?, ?, ?, 'No', 'No', 0, 0, ?, ?)",
    )
    .bind(new_cid)
    .bind(job.to_client)
    .bind(name)
    .bind(kind)
    .bind(job.cid)
    .bind(now)
    .execute(&mut **tx)
    .await
    .context("writing the copied campaign")?;
    let mut bids = std::collections::HashMap::new();
    for (bid, title, body, href) in banners {
        let new_bid =
            sqlx::query("INSERT INTO banners (cid, title, body, href) VALUES (?, ?, ?, ?)")
                .bind(new_cid)
                .bind(title)
                .bind(body)
                .bind(href)
                .execute(&mut **tx)
                .await
                .context("writing a copied banner")?
                .last_insert_id();
        bids.insert(*bid, new_bid);
    }
    for chunk in phrases.chunks(500) {
        let mut insert: QueryBuilder<MySql> =
            QueryBuilder::new("INSERT INTO phrases (cid, bid, phrase, price) ");
        let mut rows = Vec::with_capacity(chunk.len());
        for (ph_id, bid, phrase, price) in chunk {
            // Checked by the caller; never a phrase without its banner.
            let new_bid = bids.get(bid).copied().with_context(|| {
                format!("phrase {ph_id} names banner {bid}, which was not copied")
            })?;
            rows.push((new_bid, phrase, price));
        }
        insert.push_values(rows, |mut row, (new_bid, phrase, price)| {
            row.push_bind(new_cid)
                .push_bind(new_bid)
                .push_bind(phrase)
                .push_bind(price);
        });
        insert
            .build()
            .execute(&mut **tx)
            .await
            .context("writing copied phrases")?;
    }
    Ok(())
}

async fn finish_copy(
    tx: &mut sqlx::Transaction<'_, MySql>,
    ctx: &CopyContext<'_>,
    job: &CopyJob,
    detail: &str,
    started: std::time::Instant,
    now: NaiveDateTime,
) -> anyhow::Result<()> {
    queue::delete_job(tx, Table::Copy, job.id).await?;
    let elapsed = started.elapsed();
    if job.role == Role::Client {
        queue::pessimise(tx, job.client, elapsed.as_secs_f64(), ctx.decay_secs, now).await?;
    }
    queue::history(
        tx,
        now,
        Event {
            cid: job.cid,
            queue: "copy",
            worker: ctx.worker,
            event: "done",
            detail,
        },
        Some(elapsed.as_millis() as u64),
    )
    .await
}

async fn reject(
    ctx: &CopyContext<'_>,
    job: &CopyJob,
    why: &str,
    now: NaiveDateTime,
) -> anyhow::Result<Outcome> {
    let mut tx = ctx.source.pool.begin().await?;
    let mine: Option<(u64,)> = sqlx::query_as(
        "SELECT id FROM camp_operations_queue_copy WHERE id = ? AND par_id = ? FOR UPDATE",
    )
    .bind(job.id)
    .bind(job.par_id)
    .fetch_optional(&mut *tx)
    .await
    .context("locking the job")?;
    if mine.is_none() {
        return Ok(gone(job, ctx.source));
    }
    ctx.identity.verify().await?;
    queue::delete_job(&mut tx, Table::Copy, job.id).await?;
    queue::history(
        &mut tx,
        now,
        Event {
            cid: job.cid,
            queue: "copy",
            worker: ctx.worker,
            event: "rejected",
            detail: why,
        },
        None,
    )
    .await?;
    tx.commit().await?;
    Ok(Outcome::Rejected(why.to_owned()))
}

/// Archive, unarchive or delete, with the job's deletion, in one transaction.
pub async fn rest(
    shard: &Shard,
    job: &RestJob,
    worker: &str,
    identity: &Identity,
    now: NaiveDateTime,
) -> anyhow::Result<Outcome> {
    let mut tx = shard.pool.begin().await?;
    // The job's row lock, then the proof that this process still is the worker: the job's
    // deletion below commits with the operation, so it is done once.
    let mine: Option<(u64,)> =
        sqlx::query_as("SELECT id FROM camp_operations_queue WHERE id = ? FOR UPDATE")
            .bind(job.id)
            .fetch_optional(&mut *tx)
            .await
            .context("locking the job")?;
    if mine.is_none() {
        return Ok(Outcome::Gone(format!(
            "the job is no longer in shard {}'s queue (done by another process)",
            shard.number
        )));
    }
    identity.verify().await?;
    let row: Option<(String, i64, String)> = sqlx::query_as(
        "SELECT statusArchived, (sum - sum_spent) > 0, CAST(sum - sum_spent AS CHAR) \
         FROM campaigns WHERE cid = ? FOR UPDATE",
    )
    .bind(job.cid)
    .fetch_optional(&mut *tx)
    .await
    .context("reading the campaign")?;
    let outcome = match (row, job.operation) {
        (None, _) => Outcome::Rejected(format!(
            "campaign {} does not exist on shard {}",
            job.cid, shard.number
        )),
        (Some((archived, _, _)), Operation::Arc) if archived == "Yes" => {
            Outcome::Done("already archived".to_owned())
        }
        (Some(_), Operation::Arc) => {
            set_status(&mut tx, job.cid, "Yes", now).await?;
            Outcome::Done("archived".to_owned())
        }
        (Some((archived, _, _)), Operation::Unarc) if archived == "No" => {
            Outcome::Done("not archived; nothing to do".to_owned())
        }
        (Some(_), Operation::Unarc) => {
            set_status(&mut tx, job.cid, "No", now).await?;
            Outcome::Done("unarchived".to_owned())
        }
        (Some((_, 1, money)), Operation::Del) => Outcome::Rejected(format!(
            "campaign {} still has {} of money; a campaign with money is not deleted",
            job.cid,
            money.trim_end_matches('0').trim_end_matches('.')
        )),
        (Some(_), Operation::Del) => {
            for table in ["phrases", "banners", "campaigns"] {
                sqlx::query(&format!("DELETE FROM {table} WHERE cid = ?"))
                    .bind(job.cid)
                    .execute(&mut *tx)
                    .await
                    .with_context(|| format!("deleting the campaign's {table}"))?;
            }
            Outcome::Done("deleted with its banners and phrases".to_owned())
        }
    };
    queue::delete_job(&mut tx, Table::Rest, job.id).await?;
    let (event, detail) = match &outcome {
        Outcome::Done(d) => ("done", format!("{}: {d}", job.operation.as_str())),
        Outcome::Rejected(d) | Outcome::Gone(d) => {
            ("rejected", format!("{}: {d}", job.operation.as_str()))
        }
    };
    queue::history(
        &mut tx,
        now,
        Event {
            cid: job.cid,
            queue: "rest",
            worker,
            event,
            detail: &detail,
        },
        None,
    )
    .await?;
    tx.commit().await?;
    Ok(outcome)
}

async fn set_status(
    tx: &mut sqlx::Transaction<'_, MySql>,
    cid: u64,
    archived: &str,
    now: NaiveDateTime,
) -> anyhow::Result<()> {
    sqlx::query("UPDATE campaigns SET statusArchived = ?, statusShow = IF(? = 'Yes', 'No', statusShow), LastChange = ? WHERE cid = ?")
        .bind(archived)
        .bind(archived)
        .bind(now)
        .bind(cid)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

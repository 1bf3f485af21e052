//! What the jobs do: copy a campaign with its banners and phrases (possibly into another
//! shard on another server), archive, unarchive, delete.
//!
//! A copy never happens twice: its new cid is allocated first and stored in the job row, and
//! the copy is written in one transaction on the target shard that first checks whether that
//! cid exists. On one shard that transaction also deletes the job; across shards the job is
//! deleted after the target commits, and a worker killed in between finds the copy done.

use anyhow::Context as _;
use chrono::NaiveDateTime;
use sqlx::{MySql, QueryBuilder};

use crate::db::{Deployment, Shard};
use crate::queue::{self, CopyJob, Event, Operation, RestJob, Role, Table};

/// Where a test may freeze a worker to kill it (hidden `--pause-at`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PauseAt {
    /// Inside the target transaction, the campaign and its banners written, not committed.
    MidCopy,
    /// After the target shard committed the copy, before the job row is deleted.
    AfterTargetCommit,
}

async fn pause_if(pause: Option<PauseAt>, here: PauseAt) {
    if pause == Some(here) {
        eprintln!("camp-queue: paused at {here:?} (test hook)");
        // Bounded: the test kills the process long before.
        tokio::time::sleep(std::time::Duration::from_secs(120)).await;
    }
}

/// How a job ended, when it did not fail.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Done(String),
    /// A permanent refusal: recorded and deleted, not retried.
    Rejected(String),
}

/// What a copy needs besides the job.
pub struct CopyContext<'a> {
    pub deployment: &'a Deployment,
    pub source: &'a Shard,
    pub worker: &'a str,
    pub pause: Option<PauseAt>,
    pub decay_secs: f64,
}

type CampaignRow = (String, String);
type BannerRow = (u64, String, String, String);
type PhraseRow = (u64, String, String);

/// Copy the job's campaign. `Ok` means the job row is gone (copied or rejected), `Err` that
/// the attempt failed and the job stays.
pub async fn copy(
    ctx: &CopyContext<'_>,
    job: &CopyJob,
    started: std::time::Instant,
    now: impl Fn() -> NaiveDateTime,
) -> anyhow::Result<Outcome> {
    let source = ctx.source;
    let campaign: Option<CampaignRow> =
        sqlx::query_as("SELECT name, type FROM campaigns WHERE cid = ?")
            .bind(job.cid)
            .fetch_optional(&source.pool)
            .await
            .context("reading the source campaign")?;
    let Some((name, kind)) = campaign else {
        return reject(
            ctx,
            job,
            &format!(
                "campaign {} is not on shard {} any more",
                job.cid, source.number
            ),
            now(),
        )
        .await;
    };
    let Some(target_number) = ctx.deployment.client_shard(job.to_client).await? else {
        return reject(
            ctx,
            job,
            &format!("target client {} does not exist", job.to_client),
            now(),
        )
        .await;
    };
    let Ok(target) = ctx.deployment.shard(target_number) else {
        return reject(
            ctx,
            job,
            &format!(
                "target client {} is on shard {target_number}, which is not configured",
                job.to_client
            ),
            now(),
        )
        .await;
    };
    // Read from the row, not the claim: an earlier try of this attempt may have stored it.
    let (stored,): (Option<u64>,) =
        sqlx::query_as("SELECT new_cid FROM camp_operations_queue_copy WHERE id = ?")
            .bind(job.id)
            .fetch_one(&source.pool)
            .await
            .context("reading the job's new cid")?;
    let new_cid = match stored {
        Some(c) => c,
        None => allocate_cid(ctx.deployment, source, job).await?,
    };
    let banners: Vec<BannerRow> =
        sqlx::query_as("SELECT bid, title, body, href FROM banners WHERE cid = ? ORDER BY bid")
            .bind(job.cid)
            .fetch_all(&source.pool)
            .await
            .context("reading the source banners")?;
    let phrases: Vec<PhraseRow> = sqlx::query_as(
        "SELECT bid, phrase, CAST(price AS CHAR) FROM phrases WHERE cid = ? ORDER BY ph_id",
    )
    .bind(job.cid)
    .fetch_all(&source.pool)
    .await
    .context("reading the source phrases")?;

    let same_shard = target.number == source.number;
    let mut tx = target
        .pool
        .begin()
        .await
        .with_context(|| format!("connecting to shard {}", target.number))?;
    let exists: Option<(u64,)> =
        sqlx::query_as("SELECT cid FROM campaigns WHERE cid = ? FOR UPDATE")
            .bind(new_cid)
            .fetch_optional(&mut *tx)
            .await?;
    let detail = if exists.is_some() {
        format!("already copied as cid {new_cid} on shard {}", target.number)
    } else {
        write_copy(
            &mut tx,
            job,
            new_cid,
            &name,
            &kind,
            &banners,
            &phrases,
            now(),
        )
        .await?;
        pause_if(ctx.pause, PauseAt::MidCopy).await;
        format!(
            "copied to cid {new_cid} of client {} on shard {} ({} banners, {} phrases)",
            job.to_client,
            target.number,
            banners.len(),
            phrases.len()
        )
    };
    if same_shard {
        finish_copy(&mut tx, ctx, job, &detail, started, now()).await?;
        tx.commit().await?;
    } else {
        tx.commit()
            .await
            .with_context(|| format!("committing the copy on shard {}", target.number))?;
        pause_if(ctx.pause, PauseAt::AfterTargetCommit).await;
        let mut tx = source.pool.begin().await?;
        finish_copy(&mut tx, ctx, job, &detail, started, now()).await?;
        tx.commit().await?;
    }
    Ok(Outcome::Done(detail))
}

/// A new cid from the global allocator, stored in the job before anything is copied.
async fn allocate_cid(
    deployment: &Deployment,
    source: &Shard,
    job: &CopyJob,
) -> anyhow::Result<u64> {
    let new_cid = sqlx::query("INSERT INTO shard_inc_cid (ClientID) VALUES (?)")
        .bind(job.to_client)
        .execute(&deployment.ppcdict)
        .await
        .context("allocating a cid in ppcdict.shard_inc_cid")?
        .last_insert_id();
    sqlx::query("UPDATE camp_operations_queue_copy SET new_cid = ? WHERE id = ?")
        .bind(new_cid)
        .bind(job.id)
        .execute(&source.pool)
        .await
        .context("storing the new cid in the job")?;
    Ok(new_cid)
}

#[allow(clippy::too_many_arguments)]
async fn write_copy(
    tx: &mut sqlx::Transaction<'_, MySql>,
    job: &CopyJob,
    new_cid: u64,
    name: &str,
    kind: &str,
    banners: &[BannerRow],
    phrases: &[PhraseRow],
    now: NaiveDateTime,
) -> anyhow::Result<()> {
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
        insert.push_values(chunk, |mut row, (bid, phrase, price)| {
            row.push_bind(new_cid)
                .push_bind(bids.get(bid).copied().unwrap_or(0))
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
    now: NaiveDateTime,
) -> anyhow::Result<Outcome> {
    let mut tx = shard.pool.begin().await?;
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
        Outcome::Rejected(d) => ("rejected", format!("{}: {d}", job.operation.as_str())),
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

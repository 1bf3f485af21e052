//! A worker's identity `(shard, par-id)`: a MySQL named lock (`GET_LOCK`) held on a
//! connection of its own for the worker's life.
//!
//! That connection can die while the worker goes on (`KILL`, `wait_timeout`, a server
//! restart, a proxy failover): the server then releases the lock, and the next start of the
//! worker's timer runs a second process as the same worker, which resumes the jobs claimed
//! under that identity. So a worker proves it still holds its lock (`IS_USED_LOCK(name) =
//! CONNECTION_ID()` on the lock's connection) before every claim, and again under the row
//! lock of the job it is about to do; when it does not, it does nothing more and stops
//! ([`LockLost`]).

use std::fmt;
use std::time::Duration;

use anyhow::Context as _;

use crate::db::Shard;
use crate::queue::Lane;

/// The lock name of a worker identity: per database, so shards sharing a server differ.
pub fn lock_name(database: &str, lane: Lane) -> String {
    format!("{}{lane}", lock_prefix(database))
}

/// What every lock name of a database's workers starts with (`status` appends the lane in SQL).
pub fn lock_prefix(database: &str) -> String {
    format!("zakaz_camp_queue.{database}.")
}

/// How long the check of a lock may take: a lock server that does not answer cannot prove
/// the lock is still ours.
const VERIFY_TIMEOUT: Duration = Duration::from_secs(10);

/// The worker no longer holds its named lock: another process may run as it now.
#[derive(Debug)]
pub struct LockLost(pub String);

impl fmt::Display for LockLost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LockLost {}

/// Whether an error chain says the worker lost its lock.
pub fn is_lock_lost(err: &anyhow::Error) -> bool {
    err.chain().any(|c| c.is::<LockLost>())
}

/// A `GET_LOCK` held on its own connection.
pub struct NamedLock {
    conn: sqlx::MySqlConnection,
    name: String,
    shard: u32,
}

impl NamedLock {
    /// Take the lock of `lane` on the shard's server; `None` when another connection has it.
    pub async fn acquire(shard: &Shard, lane: Lane) -> anyhow::Result<Option<NamedLock>> {
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
        Ok((got == Some(1)).then_some(NamedLock {
            conn,
            name,
            shard: shard.number,
        }))
    }

    /// `Ok` while this connection holds the lock.
    async fn verify(&mut self) -> Result<(), LockLost> {
        let asked = tokio::time::timeout(
            VERIFY_TIMEOUT,
            sqlx::query_as::<_, (Option<i64>, i64)>(
                "SELECT CAST(IS_USED_LOCK(?) AS SIGNED), CAST(CONNECTION_ID() AS SIGNED)",
            )
            .bind(&self.name)
            .fetch_one(&mut self.conn),
        )
        .await;
        let why = match asked {
            Ok(Ok((Some(holder), me))) if holder == me => return Ok(()),
            Ok(Ok((Some(holder), _))) => format!("connection {holder} holds it now"),
            Ok(Ok((None, _))) => "nobody holds it now".to_owned(),
            Ok(Err(e @ (sqlx::Error::Io(_) | sqlx::Error::Database(_)))) => format!(
                "its connection is gone ({}): killed, closed by `wait_timeout`, a server restart or a proxy failover",
                zakaz_core::error::one_line(&anyhow::Error::new(e))
            ),
            Ok(Err(e)) => format!(
                "it cannot be checked on its connection: {}",
                zakaz_core::error::one_line(&anyhow::Error::new(e))
            ),
            Err(_) => format!(
                "its connection did not answer within {} s",
                VERIFY_TIMEOUT.as_secs()
            ),
        };
        Err(LockLost(format!(
            "lost its named lock `{}` on shard {}: {why}",
            self.name, self.shard
        )))
    }

    async fn release(mut self) {
        use sqlx::Connection as _;
        let _ = sqlx::query("SELECT RELEASE_LOCK(?)")
            .bind(&self.name)
            .execute(&mut self.conn)
            .await;
        let _ = self.conn.close().await;
    }
}

/// The named locks a worker runs under: its own identity's and, for a remapped worker, the
/// one it works as.
pub struct Identity {
    locks: tokio::sync::Mutex<Vec<NamedLock>>,
}

impl Identity {
    pub fn new(locks: Vec<NamedLock>) -> Identity {
        Identity {
            locks: tokio::sync::Mutex::new(locks),
        }
    }

    /// `Ok` while every lock is still held by this process.
    pub async fn verify(&self) -> Result<(), LockLost> {
        for lock in self.locks.lock().await.iter_mut() {
            lock.verify().await?;
        }
        Ok(())
    }

    pub async fn release(self) {
        for lock in self.locks.into_inner() {
            lock.release().await;
        }
    }
}

//! Migrations of `ppcdict` and of every shard: numbered, recorded in `camp_queue_migrations`,
//! each statement idempotent, so `camp-queue migrate` is safe to run any number of times.

use anyhow::Context as _;
use sqlx::MySqlPool;

use crate::db::Deployment;

/// Far in the future: the `effective_queue_time` of a client's copy that waits behind the
/// same client's earlier copy (see `queue.rs`: only a client's first copy carries its time).
pub const BEHIND_CLIENT_HEAD: &str = "9999-12-31 00:00:00";

const PPCDICT: &[(u32, &[&str])] = &[(
    1,
    &[
        "CREATE TABLE IF NOT EXISTS ppc_properties (
            name VARCHAR(100) NOT NULL PRIMARY KEY,
            value TEXT NOT NULL,
            last_change TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6)
        ) ENGINE=InnoDB",
        "CREATE TABLE IF NOT EXISTS shard_client_id (
            ClientID BIGINT UNSIGNED NOT NULL PRIMARY KEY,
            shard INT UNSIGNED NOT NULL
        ) ENGINE=InnoDB",
        "CREATE TABLE IF NOT EXISTS shard_inc_cid (
            cid BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
            ClientID BIGINT UNSIGNED NOT NULL,
            KEY ClientID (ClientID)
        ) ENGINE=InnoDB",
    ],
)];

const SHARD: &[(u32, &[&str])] = &[(
    1,
    &[
        "CREATE TABLE IF NOT EXISTS clients (
            ClientID BIGINT UNSIGNED NOT NULL PRIMARY KEY,
            name VARCHAR(255) NOT NULL
        ) ENGINE=InnoDB",
        // camp_copy_ela: accumulated copy seconds; camp_copy_ela_at: when it was last updated.
        "CREATE TABLE IF NOT EXISTS clients_options (
            ClientID BIGINT UNSIGNED NOT NULL PRIMARY KEY,
            camp_copy_ela DOUBLE NOT NULL DEFAULT 0,
            camp_copy_ela_at DATETIME(6) NULL
        ) ENGINE=InnoDB",
        "CREATE TABLE IF NOT EXISTS campaigns (
            cid BIGINT UNSIGNED NOT NULL PRIMARY KEY,
            ClientID BIGINT UNSIGNED NOT NULL,
            name VARCHAR(255) NOT NULL,
            type VARCHAR(32) NOT NULL DEFAULT 'text',
            statusArchived ENUM('No','Yes') NOT NULL DEFAULT 'No',
            statusShow ENUM('Yes','No') NOT NULL DEFAULT 'Yes',
            sum DECIMAL(20,6) NOT NULL DEFAULT 0,
            sum_spent DECIMAL(20,6) NOT NULL DEFAULT 0,
            copied_from_cid BIGINT UNSIGNED NULL,
            LastChange DATETIME(6) NOT NULL,
            KEY ClientID (ClientID),
            KEY copied_from_cid (copied_from_cid)
        ) ENGINE=InnoDB",
        "CREATE TABLE IF NOT EXISTS banners (
            bid BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
            cid BIGINT UNSIGNED NOT NULL,
            title VARCHAR(255) NOT NULL,
            body TEXT NOT NULL,
            href VARCHAR(1024) NOT NULL,
            KEY cid (cid)
        ) ENGINE=InnoDB",
        "CREATE TABLE IF NOT EXISTS phrases (
            ph_id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
            cid BIGINT UNSIGNED NOT NULL,
            bid BIGINT UNSIGNED NOT NULL,
            phrase VARCHAR(1024) NOT NULL,
            price DECIMAL(10,2) NOT NULL,
            KEY cid (cid)
        ) ENGINE=InnoDB",
        // `claim` serves both claim queries in index order (own lane `par_id = n`, then
        // `par_id IS NULL`); `client_head` finds a client's next copy.
        "CREATE TABLE IF NOT EXISTS camp_operations_queue_copy (
            id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
            cid BIGINT UNSIGNED NOT NULL,
            ClientID BIGINT UNSIGNED NOT NULL,
            new_ClientID BIGINT UNSIGNED NOT NULL,
            role ENUM('client','manager','agency','support') NOT NULL,
            queue_time DATETIME(6) NOT NULL,
            effective_queue_time DATETIME(6) NOT NULL,
            par_id INT UNSIGNED NULL,
            attempts INT UNSIGNED NOT NULL DEFAULT 0,
            next_try_at DATETIME(6) NOT NULL,
            last_error VARCHAR(1024) NULL,
            new_cid BIGINT UNSIGNED NULL,
            UNIQUE KEY cid (cid),
            KEY claim (par_id, effective_queue_time, id),
            KEY client_head (ClientID, role, par_id, queue_time, id)
        ) ENGINE=InnoDB",
        "CREATE TABLE IF NOT EXISTS camp_operations_queue (
            id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
            cid BIGINT UNSIGNED NOT NULL,
            operation ENUM('arc','unarc','del') NOT NULL,
            queue_time DATETIME(6) NOT NULL,
            attempts INT UNSIGNED NOT NULL DEFAULT 0,
            next_try_at DATETIME(6) NOT NULL,
            last_error VARCHAR(1024) NULL,
            UNIQUE KEY cid (cid),
            KEY claim (queue_time, id)
        ) ENGINE=InnoDB",
        "CREATE TABLE IF NOT EXISTS camp_queue_history (
            id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
            at DATETIME(6) NOT NULL,
            cid BIGINT UNSIGNED NOT NULL,
            queue ENUM('copy','rest') NOT NULL,
            worker VARCHAR(64) NOT NULL,
            event VARCHAR(32) NOT NULL,
            detail VARCHAR(1024) NOT NULL,
            duration_ms BIGINT UNSIGNED NULL,
            KEY cid (cid, id)
        ) ENGINE=InnoDB",
        // One row per worker identity serving this shard's queues: its heartbeat.
        "CREATE TABLE IF NOT EXISTS camp_queue_workers (
            par_id VARCHAR(16) NOT NULL PRIMARY KEY,
            host VARCHAR(255) NOT NULL,
            pid INT UNSIGNED NOT NULL,
            started_at DATETIME(6) NOT NULL,
            heartbeat_at DATETIME(6) NOT NULL
        ) ENGINE=InnoDB",
    ],
)];

async fn apply(
    pool: &MySqlPool,
    what: &str,
    migrations: &[(u32, &[&str])],
) -> anyhow::Result<Vec<u32>> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS camp_queue_migrations (
            version INT UNSIGNED NOT NULL PRIMARY KEY,
            applied_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
        ) ENGINE=InnoDB",
    )
    .execute(pool)
    .await
    .with_context(|| format!("migrating {what}"))?;
    let done: Vec<(u32,)> = sqlx::query_as("SELECT version FROM camp_queue_migrations")
        .fetch_all(pool)
        .await?;
    let mut applied = Vec::new();
    for (version, statements) in migrations {
        if done.iter().any(|d| d.0 == *version) {
            continue;
        }
        for sql in *statements {
            sqlx::query(sql)
                .execute(pool)
                .await
                .with_context(|| format!("migrating {what} to version {version}"))?;
        }
        sqlx::query("INSERT IGNORE INTO camp_queue_migrations (version) VALUES (?)")
            .bind(version)
            .execute(pool)
            .await?;
        applied.push(*version);
    }
    Ok(applied)
}

/// Create the databases and bring every one to the newest version. Returns one line per
/// database for the operator.
pub async fn migrate(deployment: &Deployment) -> anyhow::Result<Vec<String>> {
    deployment.create_databases().await?;
    let mut report = Vec::new();
    let applied = apply(&deployment.ppcdict, &deployment.ppcdict_database, PPCDICT).await?;
    report.push(format!(
        "{}: applied {applied:?}",
        deployment.ppcdict_database
    ));
    for shard in &deployment.shards {
        let applied = apply(&shard.pool, &shard.database, SHARD).await?;
        report.push(format!(
            "shard {} ({}): applied {applied:?}",
            shard.number, shard.database
        ));
    }
    Ok(report)
}

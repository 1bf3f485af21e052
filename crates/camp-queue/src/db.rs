//! Where the databases are: `ppcdict` (global) and one database per shard, each shard with
//! its own DSN because each may live on its own server. Pools connect lazily, so a shard that
//! is down fails the jobs that need it (and they are retried), not the whole worker.

use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use zakaz_core::Secret;
use zakaz_core::error::config_error;

/// The databases of a deployment.
#[derive(Debug, Clone, Args)]
pub struct DbArgs {
    /// DSN of the global `ppcdict` database (properties, the client→shard map, the campaign id
    /// allocator), e.g. `mysql://user:password@db1:3306/ppcdict`.
    #[arg(long, env = "PPCDICT_DSN", hide_env_values = true, value_name = "DSN")]
    pub ppcdict_dsn: Option<Secret>,

    /// DSNs of the shards: a comma list (shard 1 first), or one template with `{shard}`
    /// (`mysql://u:p@db{shard}:3306/ppc{shard}`). A DSN without a database name means
    /// `ppc<N>`.
    #[arg(
        long,
        env = "PPC_SHARD_DSNS",
        hide_env_values = true,
        value_name = "DSNS"
    )]
    pub shard_dsns: Option<Secret>,

    /// Number of shards; required with a `{shard}` template, else the list's length.
    #[arg(long, env = "PPC_SHARDS", value_name = "N")]
    pub shards: Option<u32>,
}

/// One shard: its number, database name and pool.
#[derive(Debug, Clone)]
pub struct Shard {
    pub number: u32,
    pub database: String,
    pub pool: MySqlPool,
    /// The server without a database, for `CREATE DATABASE`.
    server: MySqlConnectOptions,
}

/// Every database of the deployment, connected lazily.
#[derive(Debug, Clone)]
pub struct Deployment {
    pub ppcdict: MySqlPool,
    ppcdict_server: MySqlConnectOptions,
    pub ppcdict_database: String,
    pub shards: Vec<Shard>,
}

impl Deployment {
    pub fn shard(&self, number: u32) -> anyhow::Result<&Shard> {
        self.shards
            .iter()
            .find(|s| s.number == number)
            .ok_or_else(|| {
                config_error(format!(
                    "shard {number} is not configured: `PPC_SHARDS` is {}",
                    self.shards.len()
                ))
            })
    }

    /// The shard a client lives on (`ppcdict.shard_client_id`).
    pub async fn client_shard(&self, client_id: u64) -> anyhow::Result<Option<u32>> {
        let shard: Option<(u32,)> =
            sqlx::query_as("SELECT shard FROM shard_client_id WHERE ClientID = ?")
                .bind(client_id)
                .fetch_optional(&self.ppcdict)
                .await
                .context("reading ppcdict.shard_client_id")?;
        Ok(shard.map(|s| s.0))
    }

    /// The owner and shard of a campaign (`shard_inc_cid` then `shard_client_id`).
    pub async fn campaign_home(&self, cid: u64) -> anyhow::Result<Option<(u64, u32)>> {
        let row: Option<(u64, Option<u32>)> = sqlx::query_as(
            "SELECT i.ClientID, s.shard FROM shard_inc_cid i \
             LEFT JOIN shard_client_id s ON s.ClientID = i.ClientID WHERE i.cid = ?",
        )
        .bind(cid)
        .fetch_optional(&self.ppcdict)
        .await
        .context("reading ppcdict.shard_inc_cid")?;
        Ok(match row {
            Some((client, Some(shard))) => Some((client, shard)),
            _ => None,
        })
    }
}

/// `None` when the queue is not configured here (neither DSN set): jobs that only report on
/// the queue (alerts, healthcheck) then skip it.
pub fn connect_if_configured(args: &DbArgs) -> anyhow::Result<Option<Deployment>> {
    let set = |s: &Option<Secret>| s.as_ref().is_some_and(|s| !s.is_empty());
    if !set(&args.ppcdict_dsn) && !set(&args.shard_dsns) {
        return Ok(None);
    }
    connect(args).map(Some)
}

/// Connect (lazily) to every configured database. Fails with a line naming the setting.
pub fn connect(args: &DbArgs) -> anyhow::Result<Deployment> {
    let dict = args
        .ppcdict_dsn
        .as_ref()
        .filter(|d| !d.is_empty())
        .ok_or_else(|| config_error("`PPCDICT_DSN` is not set (the DSN of ppcdict)"))?;
    let (ppcdict_server, ppcdict_database) = parse_dsn("PPCDICT_DSN", dict.expose(), "ppcdict")?;
    let list = args
        .shard_dsns
        .as_ref()
        .filter(|d| !d.is_empty())
        .ok_or_else(|| config_error("`PPC_SHARD_DSNS` is not set (the DSNs of the shards)"))?;
    let dsns = shard_dsns(list.expose(), args.shards)?;
    let mut shards = Vec::new();
    for (i, dsn) in dsns.iter().enumerate() {
        let number = i as u32 + 1;
        let (server, database) = parse_dsn("PPC_SHARD_DSNS", dsn, &format!("ppc{number}"))?;
        shards.push(Shard {
            number,
            pool: pool(server.clone().database(&database)),
            database,
            server,
        });
    }
    Ok(Deployment {
        ppcdict: pool(ppcdict_server.clone().database(&ppcdict_database)),
        ppcdict_server,
        ppcdict_database,
        shards,
    })
}

fn pool(options: MySqlConnectOptions) -> MySqlPool {
    MySqlPoolOptions::new()
        .max_connections(8)
        .acquire_timeout(Duration::from_secs(10))
        .after_connect(|conn, _| {
            Box::pin(async move {
                // Row locks only, no gap locks: claims and enqueues of different clients never
                // wait for each other. All times are UTC, written by the program's clock.
                sqlx::query("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
                    .execute(&mut *conn)
                    .await?;
                sqlx::query("SET time_zone = '+00:00'")
                    .execute(&mut *conn)
                    .await?;
                Ok(())
            })
        })
        .connect_lazy_with(options)
}

/// The shard DSNs from a comma list or a `{shard}` template.
fn shard_dsns(value: &str, count: Option<u32>) -> anyhow::Result<Vec<String>> {
    if value.contains("{shard}") {
        let n = count.ok_or_else(|| {
            config_error("`PPC_SHARDS` is required when `PPC_SHARD_DSNS` is a `{shard}` template")
        })?;
        if n == 0 {
            return Err(config_error("`PPC_SHARDS` must be at least 1"));
        }
        return Ok((1..=n)
            .map(|s| value.replace("{shard}", &s.to_string()))
            .collect());
    }
    let list: Vec<String> = value
        .split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    if list.is_empty() {
        return Err(config_error("`PPC_SHARD_DSNS` lists no DSN"));
    }
    if let Some(n) = count
        && n as usize != list.len()
    {
        return Err(config_error(format!(
            "`PPC_SHARDS` is {n} but `PPC_SHARD_DSNS` lists {} DSNs",
            list.len()
        )));
    }
    Ok(list)
}

/// `mysql://user:password@host:port/db` → server options and database name. The password is
/// registered as a secret so no log line can show it.
fn parse_dsn(
    setting: &str,
    dsn: &str,
    default_db: &str,
) -> anyhow::Result<(MySqlConnectOptions, String)> {
    let url = url::Url::parse(dsn).map_err(|e| {
        config_error(format!(
            "`{setting}`: not a DSN (`mysql://user:password@host:port/db`): {e}"
        ))
    })?;
    if url.scheme() != "mysql" && url.scheme() != "mariadb" {
        return Err(config_error(format!(
            "`{setting}`: the scheme must be `mysql://`, not `{}://`",
            url.scheme()
        )));
    }
    // User and password are percent-encoded in a URL (`p%40ss` is `p@ss`; `+` is a plus).
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    let password = url.password().map(|p| {
        zakaz_core::secret::register(p);
        let decoded = decode(p);
        zakaz_core::secret::register(&decoded);
        decoded
    });
    let host = url
        .host_str()
        .ok_or_else(|| config_error(format!("`{setting}`: the DSN names no host")))?;
    let database = match url.path().trim_start_matches('/') {
        "" => default_db.to_owned(),
        db => db.to_owned(),
    };
    if !database
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(config_error(format!(
            "`{setting}`: database name `{database}` must be letters, digits and `_`"
        )));
    }
    let mut options = MySqlConnectOptions::new()
        .host(host)
        .port(url.port().unwrap_or(3306))
        .username(&match url.username() {
            "" => "root".to_owned(),
            user => decode(user),
        })
        .charset("utf8mb4")
        .collation("utf8mb4_unicode_ci");
    if let Some(password) = &password {
        options = options.password(password);
    }
    Ok((options, database))
}

/// Create a database if missing (utf8mb4_unicode_ci: MariaDB has no `utf8mb4_0900_ai_ci`).
async fn create_database(server: &MySqlConnectOptions, database: &str) -> anyhow::Result<()> {
    use sqlx::Connection as _;
    let mut conn = sqlx::MySqlConnection::connect_with(server)
        .await
        .with_context(|| format!("connecting to the server of `{database}`"))?;
    sqlx::query(&format!(
        "CREATE DATABASE IF NOT EXISTS `{database}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
    ))
    .execute(&mut conn)
    .await
    .with_context(|| format!("creating database `{database}`"))?;
    conn.close().await.ok();
    Ok(())
}

impl Deployment {
    /// Close every pool (their connections say goodbye instead of being cut).
    pub async fn close(&self) {
        self.ppcdict.close().await;
        for shard in &self.shards {
            shard.pool.close().await;
        }
    }

    pub async fn create_databases(&self) -> anyhow::Result<()> {
        create_database(&self.ppcdict_server, &self.ppcdict_database).await?;
        for shard in &self.shards {
            create_database(&shard.server, &shard.database).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_lists_and_templates() {
        assert_eq!(
            shard_dsns("mysql://a/x, mysql://b/y", None).unwrap(),
            vec!["mysql://a/x", "mysql://b/y"]
        );
        assert_eq!(
            shard_dsns("mysql://db{shard}/ppc{shard}", Some(2)).unwrap(),
            vec!["mysql://db1/ppc1", "mysql://db2/ppc2"]
        );
        let err = shard_dsns("mysql://db{shard}/", None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("`PPC_SHARDS` is required"), "{err}");
        let err = shard_dsns("mysql://a,mysql://b", Some(3))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`PPC_SHARDS` is 3 but `PPC_SHARD_DSNS` lists 2"),
            "{err}"
        );
    }

    #[test]
    fn dsns_name_their_setting_and_keep_the_password_out_of_errors() {
        let (_, db) = parse_dsn("PPC_SHARD_DSNS", "mysql://root@127.0.0.1:3316", "ppc2").unwrap();
        assert_eq!(db, "ppc2");
        let err = parse_dsn("PPCDICT_DSN", "postgres://u:hunter2secret@h/x", "ppcdict")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("`PPCDICT_DSN`: the scheme must be"),
            "{err}"
        );
        assert!(!err.contains("hunter2secret"), "{err}");
        // A password is percent-decoded (not form-decoded: `+` stays a plus), and both
        // spellings are kept out of every log line.
        parse_dsn("PPCDICT_DSN", "mysql://u:pl%2Bus+pw%40x@h/x", "ppcdict").unwrap();
        assert_eq!(zakaz_core::secret::redact("pl+us+pw@x"), "***");
        assert_eq!(zakaz_core::secret::redact("pl%2Bus+pw%40x"), "***");
        let err = parse_dsn("PPCDICT_DSN", "mysql://h/bad-name", "ppcdict")
            .unwrap_err()
            .to_string();
        assert!(err.contains("database name `bad-name`"), "{err}");
    }
}

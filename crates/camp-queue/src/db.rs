//! Where the databases are: `ppcdict` (global) and one database per shard, each shard with
//! its own DSN because each may live on its own server. Pools connect lazily, so a shard that
//! is down fails the jobs that need it (and they are retried), not the whole worker.
//!
//! A DSN's query parameters are those of sqlx's `MySqlConnectOptions` (`ssl-mode`, `ssl-ca`,
//! `ssl-cert`, `ssl-key`, `socket`, `statement-cache-capacity`, and `charset`, `collation`,
//! `timezone` when they agree with what the queue sets itself); any other is refused with the
//! setting's name (exit 78), never dropped. Commands probe the databases they need with a
//! connection of their own before they start ([`probe`]), so a refused login is a
//! configuration error (exit 78) and a server that cannot be reached is "unavailable"
//! (exit 69), each naming the shard and its DSN (password hidden).

use std::fmt;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions, MySqlSslMode};
use zakaz_core::Secret;
use zakaz_core::error::{ConfigError, UnavailableError, config_error};

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

/// How a database is named in messages: ``shard 2 (`PPC_SHARD_DSNS` u:***@h:3316/ppc2)``
/// or ``ppcdict (`PPCDICT_DSN` …)`` — the setting, and the DSN (without its scheme) with its
/// password hidden.
#[derive(Debug, Clone)]
pub struct Label(String);

impl Label {
    /// For an error whose database is not known.
    pub fn unnamed() -> Label {
        Label("a MySQL server".to_owned())
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One shard: its number, database name and pool.
#[derive(Debug, Clone)]
pub struct Shard {
    pub number: u32,
    pub database: String,
    pub pool: MySqlPool,
    /// The server without a database, for `CREATE DATABASE`.
    server: MySqlConnectOptions,
    pub label: Label,
}

/// Every database of the deployment, connected lazily.
#[derive(Debug, Clone)]
pub struct Deployment {
    pub ppcdict: MySqlPool,
    ppcdict_server: MySqlConnectOptions,
    pub ppcdict_database: String,
    pub ppcdict_label: Label,
    pub shards: Vec<Shard>,
}

/// How the pools of a command connect.
#[derive(Debug, Clone, Copy)]
pub struct PoolSettings {
    /// How long a query waits for a connection (the pool retries refused connects meanwhile).
    pub acquire_timeout: Duration,
    /// `innodb_lock_wait_timeout` of every session, seconds (`None`: the server's).
    pub lock_wait_secs: Option<u64>,
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            acquire_timeout: Duration::from_secs(10),
            lock_wait_secs: None,
        }
    }
}

/// How long `status` (and `alerts`, `healthcheck`) waits for a server to answer: a shard
/// that does not is reported as unavailable, not waited for.
pub const STATUS_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long other commands wait for a server to answer their first connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

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
    connect_with(args, PoolSettings::default())
}

/// [`connect`] with pools set up as `settings` says.
pub fn connect_with(args: &DbArgs, settings: PoolSettings) -> anyhow::Result<Deployment> {
    let dict = args
        .ppcdict_dsn
        .as_ref()
        .filter(|d| !d.is_empty())
        .ok_or_else(|| config_error("`PPCDICT_DSN` is not set (the DSN of ppcdict)"))?;
    let ppcdict = parse_dsn("PPCDICT_DSN", None, dict.expose(), "ppcdict")?;
    let list = args
        .shard_dsns
        .as_ref()
        .filter(|d| !d.is_empty())
        .ok_or_else(|| config_error("`PPC_SHARD_DSNS` is not set (the DSNs of the shards)"))?;
    let dsns = shard_dsns(list.expose(), args.shards)?;
    let mut shards = Vec::new();
    for (i, dsn) in dsns.iter().enumerate() {
        let number = i as u32 + 1;
        let parsed = parse_dsn("PPC_SHARD_DSNS", Some(number), dsn, &format!("ppc{number}"))?;
        shards.push(Shard {
            number,
            pool: pool(parsed.server.clone().database(&parsed.database), settings),
            database: parsed.database,
            server: parsed.server,
            label: parsed.label,
        });
    }
    Ok(Deployment {
        ppcdict: pool(ppcdict.server.clone().database(&ppcdict.database), settings),
        ppcdict_server: ppcdict.server,
        ppcdict_database: ppcdict.database,
        ppcdict_label: ppcdict.label,
        shards,
    })
}

/// How long a pooled connection may sit unused and still be taken without a ping.
const IDLE_BEFORE_PING: std::time::Duration = std::time::Duration::from_secs(1);

fn pool(options: MySqlConnectOptions, settings: PoolSettings) -> MySqlPool {
    MySqlPoolOptions::new()
        .max_connections(8)
        .acquire_timeout(settings.acquire_timeout)
        // A connection handed back a moment ago was pinged on its way back (sqlx does that
        // on every release); pinging it again on every take was a round trip for each of the
        // nine a copy makes. One idle for a while (a restarted server, a dropped link) is
        // still tested before use.
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for > IDLE_BEFORE_PING {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        })
        .after_connect(move |conn, _| {
            Box::pin(async move {
                // Row locks only, no gap locks: claims and enqueues of different clients never
                // wait for each other. All times are UTC, written by the program's clock.
                sqlx::query("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
                    .execute(&mut *conn)
                    .await?;
                sqlx::query("SET time_zone = '+00:00'")
                    .execute(&mut *conn)
                    .await?;
                if let Some(secs) = settings.lock_wait_secs {
                    sqlx::query(&format!("SET SESSION innodb_lock_wait_timeout = {secs}"))
                        .execute(&mut *conn)
                        .await?;
                }
                Ok(())
            })
        })
        .connect_lazy_with(options)
}

/// MariaDB errors that mean the server refused the login (or this user on this database):
/// access denied (1044, 1045, 1698), host not allowed (1130), password expired (1862),
/// authentication plugin refused (1251).
const LOGIN_REFUSED: &[u32] = &[1044, 1045, 1130, 1251, 1698, 1862];
/// Unknown database: `camp-queue migrate` has not run against this DSN.
const UNKNOWN_DATABASE: u32 = 1049;

fn mysql_error_number(err: &sqlx::Error) -> Option<u32> {
    match err {
        sqlx::Error::Database(d) => d
            .try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
            .map(|m| u32::from(m.number())),
        _ => None,
    }
}

/// What a failed connection to `label` means for the exit code: a refused login, a TLS
/// requirement the server or this build cannot meet, or an unknown database is a
/// configuration error (78); a server that cannot be reached is unavailable (69). `None`
/// for other errors.
pub fn connect_failure(label: &Label, err: &sqlx::Error) -> Option<anyhow::Error> {
    let line = zakaz_core::secret::redact(&err.to_string());
    match err {
        sqlx::Error::Io(_) => Some(
            UnavailableError(format!("{label} cannot be reached: {line}")).into(),
        ),
        sqlx::Error::PoolTimedOut => Some(
            UnavailableError(format!(
                "{label} cannot be reached: no connection within the pool's timeout"
            ))
            .into(),
        ),
        sqlx::Error::Tls(_) => Some(
            ConfigError(format!(
                "{label}: TLS: {line} (`ssl-mode` asks for TLS; the server or this build of camp-queue does not offer it)"
            ))
            .into(),
        ),
        _ => match mysql_error_number(err) {
            Some(n) if LOGIN_REFUSED.contains(&n) => {
                Some(ConfigError(format!("login refused by {label}: {line}")).into())
            }
            Some(UNKNOWN_DATABASE) => Some(
                ConfigError(format!(
                    "{label}: the database does not exist (`camp-queue migrate` creates it): {line}"
                ))
                .into(),
            ),
            _ => None,
        },
    }
}

/// Connect once to `options` (no pool, no retries) within `timeout`: the first contact of a
/// command, so that its failure says which database and why.
async fn probe(
    options: &MySqlConnectOptions,
    label: &Label,
    timeout: Duration,
) -> anyhow::Result<()> {
    use sqlx::Connection as _;
    match tokio::time::timeout(timeout, sqlx::MySqlConnection::connect_with(options)).await {
        Err(_) => Err(UnavailableError(format!(
            "{label} cannot be reached: no answer within {} s",
            timeout.as_secs_f64()
        ))
        .into()),
        Ok(Ok(conn)) => {
            let _ = conn.close().await;
            Ok(())
        }
        Ok(Err(e)) => Err(connect_failure(label, &e)
            .unwrap_or_else(|| anyhow::Error::new(e).context(format!("connecting to {label}")))),
    }
}

impl Shard {
    /// Connect once to the shard's database (see [`probe`]).
    pub async fn probe(&self, timeout: Duration) -> anyhow::Result<()> {
        probe(
            &self.server.clone().database(&self.database),
            &self.label,
            timeout,
        )
        .await
    }
}

/// What a command needs before it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// The ppcdict database.
    Ppcdict,
    /// Every shard's database.
    Shards,
    /// The servers of ppcdict and of every shard (their databases may not exist yet).
    Servers,
}

impl Deployment {
    /// Connect once to what a command needs, each within `timeout`; the first failure names
    /// its database (see [`connect_failure`]).
    pub async fn probe(&self, needs: Needs, timeout: Duration) -> anyhow::Result<()> {
        let servers = needs == Needs::Servers;
        if needs != Needs::Shards {
            let dict = if servers {
                self.ppcdict_server.clone()
            } else {
                self.ppcdict_server.clone().database(&self.ppcdict_database)
            };
            probe(&dict, &self.ppcdict_label, timeout).await?;
        }
        if needs == Needs::Ppcdict {
            return Ok(());
        }
        for shard in &self.shards {
            if servers {
                probe(&shard.server, &shard.label, timeout).await?;
            } else {
                shard.probe(timeout).await?;
            }
        }
        Ok(())
    }
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

/// A parsed DSN.
#[derive(Debug)]
struct Parsed {
    server: MySqlConnectOptions,
    database: String,
    label: Label,
}

/// The DSN parameters honoured, as sqlx's `MySqlConnectOptions` reads them.
const KNOWN_PARAMETERS: &str = "ssl-mode, ssl-ca, ssl-cert, ssl-key, socket, statement-cache-capacity, \
     charset=utf8mb4, collation=utf8mb4_unicode_ci, timezone=UTC";

/// `mysql://user:password@host:port/db?ssl-mode=REQUIRED` → server options, database name and
/// label. The password is registered as a secret so no log line can show it. `shard` names
/// the shard in errors about a `PPC_SHARD_DSNS` entry.
fn parse_dsn(
    setting: &str,
    shard: Option<u32>,
    dsn: &str,
    default_db: &str,
) -> anyhow::Result<Parsed> {
    let what = match shard {
        Some(n) => format!("`{setting}` (shard {n})"),
        None => format!("`{setting}`"),
    };
    let url = url::Url::parse(dsn).map_err(|e| {
        config_error(format!(
            "{what}: not a DSN (`mysql://user:password@host:port/db`): {e}"
        ))
    })?;
    if url.scheme() != "mysql" && url.scheme() != "mariadb" {
        return Err(config_error(format!(
            "{what}: the scheme must be `mysql://`, not `{}://`",
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
    // The same rule as every secret setting: a short password guards nothing and would be
    // scrubbed from every log line (a password `2026` turns dates into `***-12-06`).
    if let Some(p) = &password
        && !p.is_empty()
        && p.chars().count() < zakaz_core::secret::MIN_SECRET_LEN
    {
        return Err(config_error(format!(
            "{what}: the password must be at least {} characters long",
            zakaz_core::secret::MIN_SECRET_LEN
        )));
    }
    let host = url
        .host_str()
        .ok_or_else(|| config_error(format!("{what}: the DSN names no host")))?;
    let database = match url.path().trim_start_matches('/') {
        "" => default_db.to_owned(),
        db => db.to_owned(),
    };
    if !database
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(config_error(format!(
            "{what}: database name `{database}` must be letters, digits and `_`"
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
    let mut ssl_mode = None;
    let mut tls_files = None;
    for (key, value) in url.query_pairs() {
        let bad = |why: &str| config_error(format!("{what}: `{key}={value}`: {why}"));
        match &*key {
            "ssl-mode" | "sslmode" => {
                let mode: MySqlSslMode = value.parse().map_err(|_| {
                    bad("not one of DISABLED, PREFERRED, REQUIRED, VERIFY_CA, VERIFY_IDENTITY")
                })?;
                ssl_mode = Some(mode);
            }
            "ssl-ca" | "sslca" => {
                options = options.ssl_ca(&*value);
                tls_files = Some(MySqlSslMode::VerifyCa);
            }
            "ssl-cert" | "sslcert" => {
                options = options.ssl_client_cert(&*value);
                tls_files.get_or_insert(MySqlSslMode::Required);
            }
            "ssl-key" | "sslkey" => {
                options = options.ssl_client_key(&*value);
                tls_files.get_or_insert(MySqlSslMode::Required);
            }
            "socket" => options = options.socket(&*value),
            "statement-cache-capacity" => {
                let n: usize = value
                    .parse()
                    .map_err(|_| bad("not a number of statements"))?;
                options = options.statement_cache_capacity(n);
            }
            // The queue's sessions are utf8mb4_unicode_ci in UTC (it sets both itself).
            "charset" if value.eq_ignore_ascii_case("utf8mb4") => {}
            "collation" if value.eq_ignore_ascii_case("utf8mb4_unicode_ci") => {}
            "timezone" | "time-zone" if matches!(&*value, "UTC" | "utc" | "+00:00" | "Z") => {}
            "charset" | "collation" | "timezone" | "time-zone" => {
                return Err(bad(
                    "the queue's sessions are utf8mb4 (utf8mb4_unicode_ci) in UTC; leave it out",
                ));
            }
            _ => {
                return Err(config_error(format!(
                    "{what}: unknown DSN parameter `{key}`; known: {KNOWN_PARAMETERS}"
                )));
            }
        }
    }
    // A CA or a client certificate without `ssl-mode` asks for TLS (as the MySQL client reads
    // `--ssl-ca`): never fall back to plain text then.
    if let Some(mode) = ssl_mode.or(tls_files) {
        options = options.ssl_mode(mode);
    }
    // The DSN without its scheme and with its password hidden: never the setting's whole value,
    // which is a registered secret and would be printed as `***`.
    let shown = format!(
        "{}{}{host}{}{}{}",
        url.username(),
        match (url.username().is_empty(), password.is_some()) {
            (_, true) => ":***@",
            (false, false) => "@",
            (true, false) => "",
        },
        url.port().map(|p| format!(":{p}")).unwrap_or_default(),
        url.path(),
        url.query().map(|q| format!("?{q}")).unwrap_or_default(),
    );
    let label = Label(match shard {
        Some(n) => format!("shard {n} (`{setting}` {shown})"),
        None => format!("{default_db} (`{setting}` {shown})"),
    });
    Ok(Parsed {
        server: options,
        database,
        label,
    })
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
        let parsed = parse_dsn(
            "PPC_SHARD_DSNS",
            Some(2),
            "mysql://root@127.0.0.1:3316",
            "ppc2",
        )
        .unwrap();
        assert_eq!(parsed.database, "ppc2");
        assert_eq!(
            parsed.label.to_string(),
            "shard 2 (`PPC_SHARD_DSNS` root@127.0.0.1:3316)"
        );
        let err = parse_dsn(
            "PPCDICT_DSN",
            None,
            "postgres://u:hunter2secret@h/x",
            "ppcdict",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("`PPCDICT_DSN`: the scheme must be"),
            "{err}"
        );
        assert!(!err.contains("hunter2secret"), "{err}");
        // A password is percent-decoded (not form-decoded: `+` stays a plus), and both
        // spellings are kept out of every log line.
        let parsed = parse_dsn(
            "PPCDICT_DSN",
            None,
            "mysql://u:pl%2Bus+pw%40x@h/x",
            "ppcdict",
        )
        .unwrap();
        assert_eq!(
            parsed.label.to_string(),
            "ppcdict (`PPCDICT_DSN` u:***@h/x)"
        );
        assert_eq!(zakaz_core::secret::redact("pl+us+pw@x"), "***");
        assert_eq!(zakaz_core::secret::redact("pl%2Bus+pw%40x"), "***");
        let err = parse_dsn("PPCDICT_DSN", None, "mysql://h/bad-name", "ppcdict")
            .unwrap_err()
            .to_string();
        assert!(err.contains("database name `bad-name`"), "{err}");
    }

    #[test]
    fn dsn_parameters_are_applied_or_refused() {
        let mode = |dsn: &str| {
            parse_dsn("PPC_SHARD_DSNS", Some(1), dsn, "ppc1")
                .map(|p| format!("{:?}", p.server.get_ssl_mode()))
                .map_err(|e| e.to_string())
        };
        assert_eq!(mode("mysql://h/x").unwrap(), "Preferred");
        assert_eq!(mode("mysql://h/x?ssl-mode=REQUIRED").unwrap(), "Required");
        assert_eq!(
            mode("mysql://h/x?sslmode=verify_identity").unwrap(),
            "VerifyIdentity"
        );
        assert_eq!(mode("mysql://h/x?ssl-mode=disabled").unwrap(), "Disabled");
        // A CA without a mode asks for TLS with the CA checked.
        assert_eq!(mode("mysql://h/x?ssl-ca=/etc/ca.pem").unwrap(), "VerifyCa");
        assert_eq!(
            mode("mysql://h/x?ssl-cert=/c.pem&ssl-key=/k.pem").unwrap(),
            "Required"
        );
        assert_eq!(
            mode("mysql://h/x?ssl-ca=/etc/ca.pem&ssl-mode=PREFERRED").unwrap(),
            "Preferred"
        );
        assert_eq!(
            mode("mysql://h/x?charset=utf8mb4&collation=utf8mb4_unicode_ci&timezone=UTC&statement-cache-capacity=5&socket=/run/mysqld.sock").unwrap(),
            "Preferred"
        );
        for (dsn, message) in [
            (
                "mysql://h/x?ssl-mode=on",
                "`PPC_SHARD_DSNS` (shard 1): `ssl-mode=on`: not one of",
            ),
            (
                "mysql://h/x?connect_timeout=3",
                "`PPC_SHARD_DSNS` (shard 1): unknown DSN parameter `connect_timeout`; known: ssl-mode",
            ),
            (
                "mysql://h/x?charset=latin1",
                "`charset=latin1`: the queue's sessions are utf8mb4",
            ),
            (
                "mysql://h/x?timezone=Europe/Moscow",
                "`timezone=Europe/Moscow`",
            ),
            ("mysql://h/x?statement-cache-capacity=many", "not a number"),
        ] {
            let err = mode(dsn).unwrap_err();
            assert!(err.contains(message), "{dsn}: {err}");
        }
    }
}

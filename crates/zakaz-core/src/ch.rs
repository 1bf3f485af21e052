//! ClickHouse access on the official `clickhouse` crate: settings, server version detection
//! (row-schema validation needs a new server), and retries for idempotent reads only.
//!
//! A cluster: `CLICKHOUSE_URL` may list several replicas (comma-separated). They are tried in
//! order when a run connects, and the run then stays on the one that answered: every read and
//! write of a run goes to one replica, so a run reads what it wrote (docs/architecture.md,
//! "ClickHouse clusters"). `CLICKHOUSE_CLUSTER` names the cluster the migrations apply to
//! (`ON CLUSTER`, `Replicated*` engines).

use std::future::Future;
use std::time::Duration;

use clap::Args;
use clickhouse::Client;

use crate::error::{ConfigError, UnavailableError};
use crate::secret::Secret;

/// Settings common to every binary that talks to ClickHouse.
#[derive(Debug, Clone, Args)]
pub struct ClickHouseArgs {
    /// ClickHouse HTTP endpoint; on a cluster, several replicas comma-separated, tried in order
    /// (a run stays on the first that answers).
    #[arg(long, env = "CLICKHOUSE_URL", default_value = "http://127.0.0.1:8123", value_parser = parse_http_urls)]
    pub clickhouse_url: String,

    /// ClickHouse cluster (a name in the servers' `remote_servers`) the schema is created on:
    /// `ON CLUSTER` DDL and `Replicated*` tables. Empty: one server.
    #[arg(long, env = "CLICKHOUSE_CLUSTER", default_value = "", value_parser = parse_cluster)]
    pub clickhouse_cluster: String,

    /// ClickHouse user.
    #[arg(long, env = "CLICKHOUSE_USER", default_value = "default")]
    pub clickhouse_user: String,

    /// ClickHouse password (secret).
    #[arg(long, env = "CLICKHOUSE_PASSWORD", hide_env_values = true)]
    pub clickhouse_password: Option<Secret>,

    /// ClickHouse database holding every table of the jobs.
    #[arg(long, env = "CLICKHOUSE_DB", default_value = "zakaz", value_parser = parse_identifier)]
    pub clickhouse_db: String,

    /// Seconds one ClickHouse request may take (a read, an insert, a statement).
    #[arg(long, env = "CLICKHOUSE_TIMEOUT_SECS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub clickhouse_timeout_secs: u64,

    /// Several hosts running the same timers: each run of a job takes a lease in ZooKeeper.
    #[command(flatten)]
    pub lease: crate::lease::LeaseArgs,

    /// On a cluster: when `alerts` and `healthcheck` call a replica lagging.
    #[command(flatten)]
    pub replicas: crate::replicas::ReplicaArgs,
}

/// LZ4 saves bytes on a network and costs CPU on both ends: on the loopback, where bytes are
/// free and the loader and the server share the cores, blocks go uncompressed.
fn compression_for(url: &str) -> clickhouse::Compression {
    let host = url
        .split_once("://")
        .map_or(url, |(_, rest)| rest)
        .split(['/', '?'])
        .next()
        .unwrap_or_default();
    // `host:port`, `[v6]:port` or a bare host.
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if loopback {
        clickhouse::Compression::None
    } else {
        clickhouse::Compression::Lz4
    }
}

/// `CLICKHOUSE_URL`: one URL or several, comma-separated; each is checked.
fn parse_http_urls(s: &str) -> Result<String, String> {
    let urls: Vec<String> = s
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(parse_http_url)
        .collect::<Result<_, _>>()?;
    if urls.is_empty() {
        return Err("give at least one URL".into());
    }
    Ok(urls.join(","))
}

fn parse_cluster(s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        return Ok(String::new());
    }
    parse_identifier(s.trim())
}

fn parse_http_url(s: &str) -> Result<String, String> {
    let url = crate::http::parse_base_url(s)?;
    if url.contains('@') {
        return Err(
            "put credentials in CLICKHOUSE_USER/CLICKHOUSE_PASSWORD, not in the URL".into(),
        );
    }
    Ok(url)
}

/// Database names go into DDL text, so only plain identifiers are accepted.
pub fn parse_identifier(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !s.starts_with(|c: char| c.is_ascii_digit());
    if ok {
        Ok(s.to_owned())
    } else {
        Err("use letters, digits and `_` only, not starting with a digit".into())
    }
}

/// A ClickHouse server version, e.g. 18.16.1 or 24.8.4.13.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServerVersion {
    pub major: u32,
    pub minor: u32,
}

impl ServerVersion {
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.trim().split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        Some(ServerVersion { major, minor })
    }

    /// `RowBinaryWithNamesAndTypes`, which the crate's validation reads, is new; old servers
    /// (Debian's 18.16) reject it.
    pub fn supports_validation(self) -> bool {
        self >= ServerVersion {
            major: 24,
            minor: 10,
        }
    }
}

/// A connected ClickHouse: one client bound to the jobs' database, one without a database
/// (to create it).
#[derive(Clone)]
pub struct Ch {
    client: Client,
    server: Client,
    db: String,
    /// The replica this connection uses (the first of `CLICKHOUSE_URL` that answered).
    url: String,
    /// Every URL of `CLICKHOUSE_URL`, in order.
    urls: Vec<String>,
    cluster: Option<String>,
    user: String,
    password: Option<Secret>,
    lease: crate::lease::LeaseArgs,
    replicas: crate::replicas::ReplicaArgs,
    timeout: Duration,
    pub version: ServerVersion,
}

impl Ch {
    /// Connect and detect the server version. Unreachable → `UnavailableError`; rejected
    /// credentials → `ConfigError`; both name the URL or setting. With several URLs, each is
    /// tried in order (a few rounds); the first that answers is used for the whole run.
    pub async fn connect(args: &ClickHouseArgs) -> anyhow::Result<Ch> {
        let urls: Vec<String> = args
            .clickhouse_url
            .split(',')
            .map(|u| u.trim().to_owned())
            .filter(|u| !u.is_empty())
            .collect();
        let timeout = Duration::from_secs(args.clickhouse_timeout_secs);
        let client_for = |url: &str| {
            let mut c = Client::default()
                .with_url(url)
                .with_compression(compression_for(url))
                .with_user(&args.clickhouse_user);
            if let Some(password) = &args.clickhouse_password {
                c = c.with_password(password.expose());
            }
            c
        };
        let (url, version_text) = if let [only] = urls.as_slice() {
            let probe = client_for(only).with_validation(false);
            let text = retry_read(only, "SELECT version()", timeout, || async {
                probe.query("SELECT version()").fetch_one::<String>().await
            })
            .await
            .map_err(|e| classify_connect_error(only, &args.clickhouse_user, e))?;
            (only.clone(), text)
        } else {
            first_answering(&urls, &args.clickhouse_user, timeout, |u| {
                client_for(u).with_validation(false)
            })
            .await?
        };
        let version = ServerVersion::parse(&version_text).ok_or_else(|| {
            anyhow::anyhow!("ClickHouse at `{url}` reported an unknown version `{version_text}`")
        })?;
        let server = client_for(&url).with_validation(version.supports_validation());
        let client = server.clone().with_database(&args.clickhouse_db);
        tracing::debug!(%url, version = %version_text, "connected to ClickHouse");
        let cluster =
            (!args.clickhouse_cluster.is_empty()).then(|| args.clickhouse_cluster.clone());
        let ch = Ch {
            client,
            server,
            db: args.clickhouse_db.clone(),
            url,
            urls,
            cluster,
            user: args.clickhouse_user.clone(),
            password: args.clickhouse_password.clone(),
            lease: args.lease.clone(),
            replicas: args.replicas.clone(),
            timeout,
            version,
        };
        if let Some(cluster) = &ch.cluster {
            ch.check_cluster_known(cluster).await?;
        }
        Ok(ch)
    }

    /// `CLICKHOUSE_CLUSTER` must name a cluster of the server's `remote_servers`.
    async fn check_cluster_known(&self, cluster: &str) -> anyhow::Result<()> {
        let name = cluster.to_owned();
        let known: u64 = self
            .read_server("cluster exists", |c| {
                let name = name.clone();
                async move {
                    c.query("SELECT count() FROM system.clusters WHERE cluster = ?")
                        .bind(name)
                        .fetch_one::<u64>()
                        .await
                }
            })
            .await?;
        if known == 0 {
            return Err(ConfigError(format!(
                "ClickHouse at `{}` has no cluster `{cluster}` in its `remote_servers` (setting `CLICKHOUSE_CLUSTER`; empty for one server)",
                self.url
            ))
            .into());
        }
        Ok(())
    }

    /// A connection like this one to another replica of `CLICKHOUSE_URL` (health checks
    /// and tests read each replica on its own). Not checked until used.
    pub fn to_replica(&self, url: &str) -> Ch {
        let mut server = Client::default()
            .with_url(url)
            .with_compression(compression_for(url))
            .with_user(&self.user);
        if let Some(password) = &self.password {
            server = server.with_password(password.expose());
        }
        let server = server.with_validation(self.version.supports_validation());
        Ch {
            client: server.clone().with_database(&self.db),
            server,
            url: url.to_owned(),
            ..self.clone()
        }
    }

    /// This connection with `name = value` on every request, as a server profile would set
    /// it (tests stand for a profile with it; a URL's own query is never sent).
    pub fn with_setting(mut self, name: &str, value: &str) -> Ch {
        self.client = self.client.with_setting(name, value);
        self.server = self.server.with_setting(name, value);
        self
    }

    /// The client bound to the jobs' database.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The client with no database selected (for `CREATE DATABASE`).
    pub fn server(&self) -> &Client {
        &self.server
    }

    pub fn db(&self) -> &str {
        &self.db
    }

    /// The replica this connection uses.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Every URL of `CLICKHOUSE_URL`, in order (one for a single server).
    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    /// `CLICKHOUSE_USER`.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// `CLICKHOUSE_PASSWORD`, when set.
    pub fn password(&self) -> Option<&Secret> {
        self.password.as_ref()
    }

    /// `CLICKHOUSE_CLUSTER`, when set.
    pub fn cluster(&self) -> Option<&str> {
        self.cluster.as_deref()
    }

    /// The ZooKeeper lease settings (`ZOOKEEPER_HOSTS`).
    pub fn lease_args(&self) -> &crate::lease::LeaseArgs {
        &self.lease
    }

    /// The replica health thresholds (`CLICKHOUSE_REPLICA_MAX_*`).
    pub fn replica_args(&self) -> &crate::replicas::ReplicaArgs {
        &self.replicas
    }

    /// Run an idempotent read, retrying network failures a few times.
    pub async fn read<T, F, Fut>(&self, what: &str, f: F) -> anyhow::Result<T>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = clickhouse::error::Result<T>>,
    {
        self.read_with(&self.client, what, f).await
    }

    /// `read` without a database selected: for `system.*` tables before the database exists.
    pub async fn read_server<T, F, Fut>(&self, what: &str, f: F) -> anyhow::Result<T>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = clickhouse::error::Result<T>>,
    {
        self.read_with(&self.server, what, f).await
    }

    async fn read_with<T, F, Fut>(&self, client: &Client, what: &str, f: F) -> anyhow::Result<T>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = clickhouse::error::Result<T>>,
    {
        retry_read(&self.url, what, self.timeout, || f(client.clone()))
            .await
            .map_err(|e| anyhow::anyhow!("ClickHouse query failed ({what}): {}", short(&e)))
    }

    /// Insert `rows` in one `INSERT` (one request, sent as [`StreamInsert`] sends it, so a
    /// failure writes nothing).
    ///
    /// On a cluster a network failure is retried with the same rows: the tables are
    /// `Replicated*`, whose block de-duplication (the last `replicated_deduplication_window`
    /// blocks' hashes) drops a block that did arrive although its answer was lost. A single
    /// server's `MergeTree` has no such memory (before 20.x), so there it is not retried.
    pub async fn insert_all<T>(&self, table: &str, rows: &[T]) -> anyhow::Result<()>
    where
        T: clickhouse::RowOwned + clickhouse::RowWrite,
    {
        if rows.is_empty() {
            return Ok(());
        }
        let fail = |e: clickhouse::error::Error| {
            anyhow::anyhow!("ClickHouse insert into `{table}` failed: {}", short(&e))
        };
        let all = || async {
            let mut insert = self.stream_insert::<T>(table);
            for row in rows {
                insert.send_row(row).await?;
            }
            insert.finish().await
        };
        if self.cluster.is_none() {
            // A timed-out insert is dropped: one still sending writes nothing (its last row is
            // cut short); one the server is already writing may still be written.
            return within(self.timeout, all()).await.map_err(fail);
        }
        let mut attempt = 1;
        loop {
            match within(self.timeout, all()).await {
                Err(clickhouse::error::Error::Network(e)) if attempt < READ_ATTEMPTS => {
                    tracing::warn!(url = %self.url, table, attempt, "ClickHouse network error during an insert, sending the same rows again (replicated tables drop a block they already have): {e}");
                    tokio::time::sleep(Duration::from_millis(200 * 2u64.pow(attempt - 1))).await;
                    attempt += 1;
                }
                other => return other.map_err(fail),
            }
        }
    }

    /// One `INSERT` fed row by row as the rows arrive (a large report is never held whole),
    /// committed by [`StreamInsert::end`]; dropped unfinished, or the process killed, it
    /// writes nothing (see [`StreamInsert`]).
    pub fn stream_insert<T>(&self, table: &str) -> StreamInsert<T>
    where
        T: clickhouse::RowWrite,
    {
        let columns: Vec<String> = T::COLUMN_NAMES.iter().map(|c| format!("`{c}`")).collect();
        let sql = format!(
            "INSERT INTO `{table}` ({}) FORMAT RowBinary",
            columns.join(",")
        );
        StreamInsert {
            // LZ4 even on loopback: see `StreamInsert`.
            insert: self
                .client
                .clone()
                .with_compression(clickhouse::Compression::Lz4)
                .insert_formatted_with(sql)
                // Ours, whatever the server's profile says (see `INSERT_BLOCK_ROWS`); and a
                // block a cluster's retry sends again is dropped as a duplicate.
                .with_setting("max_insert_block_size", INSERT_BLOCK_ROWS.to_string())
                .with_setting("min_insert_block_size_rows", INSERT_BLOCK_ROWS.to_string())
                .with_setting(
                    "min_insert_block_size_bytes",
                    INSERT_BLOCK_BYTES.to_string(),
                )
                .with_setting("insert_deduplicate", "1")
                // A chunk the server does not take, or an answer it does not give, within the
                // timeout fails the insert (once ended, the server may still write it).
                .with_timeouts(Some(self.timeout), Some(self.timeout)),
            buf: Vec::with_capacity(INSERT_CHUNK_BYTES + 4096),
            rows: 0,
            table: table.to_owned(),
            row: std::marker::PhantomData,
        }
    }

    /// `inserts` [`StreamInsert`]s into one table at once, fed row by row (see
    /// [`SplitInsert`]).
    pub fn split_insert<T>(&self, table: &str, inserts: usize) -> SplitInsert<T>
    where
        T: clickhouse::RowWrite,
    {
        SplitInsert {
            inserts: (0..inserts.max(1))
                .map(|_| self.stream_insert(table))
                .collect(),
        }
    }

    /// Run one statement (DDL or `INSERT … SELECT`), no retries: it may not be idempotent.
    pub async fn execute(&self, sql: &str) -> anyhow::Result<()> {
        within(self.timeout, self.client.query(sql).execute())
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "ClickHouse statement failed: {} (statement: {})",
                    short(&e),
                    first_words(sql)
                )
            })
    }
}

fn insert_failed(table: &str, e: &clickhouse::error::Error) -> anyhow::Error {
    match e {
        clickhouse::error::Error::TimedOut => anyhow::anyhow!(
            "ClickHouse insert into `{table}` failed: no progress within CLICKHOUSE_TIMEOUT_SECS (a server that was already writing it may still do so)"
        ),
        e => anyhow::anyhow!("ClickHouse insert into `{table}` failed: {}", short(e)),
    }
}

/// Bytes of rows sent to ClickHouse at a time.
const INSERT_CHUNK_BYTES: usize = 256 * 1024;

/// Rows of an insert ClickHouse gathers into one block before it writes it: set on every
/// insert (`max_insert_block_size`, `min_insert_block_size_rows`; their defaults), since a
/// server profile may set them lower. ClickHouse writes each gathered block as soon as it is
/// whole, so an insert that fails writes nothing only while it is below this (and below
/// [`INSERT_BLOCK_BYTES`]); beyond, its first blocks stay written (a loader's next run
/// replaces them).
pub const INSERT_BLOCK_ROWS: u64 = 1_048_576;

/// Bytes at which ClickHouse writes a gathered block whatever its rows
/// (`min_insert_block_size_bytes`, set on every insert; its default).
pub const INSERT_BLOCK_BYTES: u64 = 268_435_456;

/// An insert in progress (see [`Ch::stream_insert`]). Over HTTP, ClickHouse takes a request
/// body that stops (a dropped insert, a killed process, a closed connection) for the end of
/// the data and writes every whole row it got, wherever the stop fell. So the body is always
/// LZ4 blocks, which ClickHouse checks: a stop inside a block is an error. And what has been
/// sent always ends one byte short of a whole row, until [`StreamInsert::end`] sends that
/// byte, so a stop between blocks ends inside a row, an error too: either way, nothing is
/// written.
pub struct StreamInsert<T> {
    insert: clickhouse::insert_formatted::InsertFormatted,
    /// Rows not sent yet, after the last byte of the rows sent.
    buf: Vec<u8>,
    /// Rows written so far.
    rows: u64,
    table: String,
    row: std::marker::PhantomData<fn(&T)>,
}

/// `T` may borrow (`Row<'a>` with `&'a str` fields): a row is serialised as it is written.
impl<T: clickhouse::RowWrite> StreamInsert<T> {
    pub async fn write(&mut self, row: &T::Value<'_>) -> anyhow::Result<()> {
        self.send_row(row)
            .await
            .map_err(|e| insert_failed(&self.table, &e))
    }

    /// Commit every row written.
    pub async fn end(self) -> anyhow::Result<()> {
        let table = self.table.clone();
        self.finish().await.map_err(|e| insert_failed(&table, &e))
    }

    /// Rows written so far: beyond [`INSERT_BLOCK_ROWS`], a failure may leave some written.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    async fn send_row(&mut self, row: &T::Value<'_>) -> clickhouse::error::Result<()> {
        crate::rowbinary::write_row(&mut self.buf, row)
            .map_err(|e| clickhouse::error::Error::Custom(e.to_string()))?;
        self.rows += 1;
        if self.buf.len() >= INSERT_CHUNK_BYTES {
            // Everything but the last byte, which starts the next chunk.
            let mut chunk =
                std::mem::replace(&mut self.buf, Vec::with_capacity(INSERT_CHUNK_BYTES + 4096));
            self.buf.extend(chunk.pop());
            // Not cancel-safe: a `write` dropped here loses the chunk, and the insert must be
            // dropped too (every caller does: none ends an insert after a cancelled write).
            self.insert.send(chunk.into()).await?;
        }
        Ok(())
    }

    async fn finish(mut self) -> clickhouse::error::Result<()> {
        if !self.buf.is_empty() {
            self.insert
                .send(std::mem::take(&mut self.buf).into())
                .await?;
        }
        self.insert.end().await
    }
}

/// Several `INSERT`s into one table, open at once, each row sent to one of them by a key:
/// ClickHouse takes each insert on a thread of its own, so parsing, sorting and writing the
/// parts use as many cores. Rows of one key go to one insert in the order written, so rows
/// written in the table's key order stay in it within each insert (ClickHouse then skips the
/// sort). [`SplitInsert::end`] ends them all at once; dropped unfinished, nothing is
/// written. Each insert commits alone, though: when one fails at the end, the others' rows
/// are written (as a single insert longer than ClickHouse's block size keeps its first
/// blocks); a loader's next run replaces them.
pub struct SplitInsert<T> {
    inserts: Vec<StreamInsert<T>>,
}

impl<T: clickhouse::RowWrite> SplitInsert<T> {
    /// Write `row` into the insert of `key`.
    pub async fn write(&mut self, key: u64, row: &T::Value<'_>) -> anyhow::Result<()> {
        let n = self.inserts.len() as u64;
        self.inserts[(key % n) as usize].write(row).await
    }

    /// The rows of the fullest insert: beyond [`INSERT_BLOCK_ROWS`], a failure may leave
    /// some written.
    pub fn most_rows(&self) -> u64 {
        self.inserts
            .iter()
            .map(StreamInsert::rows)
            .max()
            .unwrap_or(0)
    }

    /// Commit every insert, all at once: each sends its last rows, then waits for the server.
    /// Every one is waited for, so none is left running when this returns, and every failure
    /// is reported.
    pub async fn end(self) -> anyhow::Result<()> {
        let results =
            futures_util::future::join_all(self.inserts.into_iter().map(StreamInsert::end)).await;
        let count = results.len();
        let failures: Vec<String> = results
            .into_iter()
            .filter_map(|r| r.err().map(|e| e.to_string()))
            .collect();
        match failures.as_slice() {
            [] => Ok(()),
            [only] if count == 1 => anyhow::bail!("{only}"),
            _ if failures.len() == count => {
                anyhow::bail!("all {count} inserts failed: {}", failures.join("; "))
            }
            _ => anyhow::bail!(
                "{} of {count} inserts failed (the others' rows are written): {}",
                failures.len(),
                failures.join("; ")
            ),
        }
    }
}

const READ_ATTEMPTS: u32 = 4;

/// `fut`, or `TimedOut` once `limit` has passed (the crate sets no request timeout).
async fn within<T>(
    limit: Duration,
    fut: impl Future<Output = clickhouse::error::Result<T>>,
) -> clickhouse::error::Result<T> {
    tokio::time::timeout(limit, fut)
        .await
        .unwrap_or(Err(clickhouse::error::Error::TimedOut))
}

async fn retry_read<T, F, Fut>(
    url: &str,
    what: &str,
    limit: Duration,
    f: F,
) -> clickhouse::error::Result<T>
where
    F: Fn() -> Fut,
    Fut: Future<Output = clickhouse::error::Result<T>>,
{
    let mut attempt = 1;
    loop {
        match within(limit, f()).await {
            Err(clickhouse::error::Error::Network(e)) if attempt < READ_ATTEMPTS => {
                let delay = Duration::from_millis(200 * 2u64.pow(attempt - 1));
                tracing::warn!(%url, what, attempt, "ClickHouse network error, retrying: {e}");
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// The first of `urls` that answers `SELECT version()`: each is tried once per round, for a
/// few rounds (a replica restarting answers soon). A rejected user ends the search at once.
async fn first_answering(
    urls: &[String],
    user: &str,
    limit: Duration,
    client: impl Fn(&str) -> Client,
) -> anyhow::Result<(String, String)> {
    let mut last: Option<(String, clickhouse::error::Error)> = None;
    for round in 0..READ_ATTEMPTS {
        if round > 0 {
            tokio::time::sleep(Duration::from_millis(200 * 2u64.pow(round - 1))).await;
        }
        for url in urls {
            let probe = client(url);
            match within(limit, probe.query("SELECT version()").fetch_one::<String>()).await {
                Ok(version) => {
                    if url != &urls[0] {
                        tracing::warn!(%url, "ClickHouse: earlier replicas of `CLICKHOUSE_URL` do not answer; this run uses {url}");
                    }
                    return Ok((url.clone(), version));
                }
                Err(
                    e @ (clickhouse::error::Error::Network(_) | clickhouse::error::Error::TimedOut),
                ) => {
                    tracing::warn!(%url, "ClickHouse replica does not answer, trying the next: {}", short(&e));
                    last = Some((url.clone(), e));
                }
                Err(e) => {
                    let err = classify_connect_error(url, user, e);
                    if err.downcast_ref::<ConfigError>().is_some() {
                        return Err(err);
                    }
                    tracing::warn!(%url, "ClickHouse replica answered unexpectedly, trying the next: {err:#}");
                    last = None;
                }
            }
        }
    }
    let why = last.map_or_else(
        || "none answered as expected".to_owned(),
        |(_, e)| short(&e),
    );
    Err(UnavailableError(format!(
        "no ClickHouse replica of `{}` (setting `CLICKHOUSE_URL`) is reachable: {why}",
        urls.join(",")
    ))
    .into())
}

fn classify_connect_error(url: &str, user: &str, e: clickhouse::error::Error) -> anyhow::Error {
    let text = short(&e);
    match e {
        clickhouse::error::Error::Network(_) | clickhouse::error::Error::TimedOut => {
            UnavailableError(format!(
                "ClickHouse at `{url}` (setting `CLICKHOUSE_URL`) is not reachable: {text}"
            ))
            .into()
        }
        // 192 unknown user, 193 wrong password, 516 authentication failed (newer servers).
        clickhouse::error::Error::BadResponse(ref body)
            if ["Code: 192", "Code: 193", "Code: 516"]
                .iter()
                .any(|c| body.contains(c)) =>
        {
            ConfigError(format!(
                "ClickHouse at `{url}` rejected user `{user}`: check `CLICKHOUSE_USER` and `CLICKHOUSE_PASSWORD`"
            ))
            .into()
        }
        // A proxy's 503, "too many simultaneous queries": it may answer next time.
        _ => UnavailableError(format!(
            "ClickHouse at `{url}` (setting `CLICKHOUSE_URL`) answered unexpectedly: {text}"
        ))
        .into(),
    }
}

/// The first line of a ClickHouse error, without the server's stack trace.
pub fn short(e: &clickhouse::error::Error) -> String {
    let text = e.to_string();
    let line = text.lines().next().unwrap_or_default();
    let line = line.split(", Stack trace").next().unwrap_or(line);
    crate::secret::redact(line.trim())
}

fn first_words(sql: &str) -> String {
    let flat: String = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    flat.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_go_uncompressed_on_the_loopback_only() {
        for url in [
            "http://127.0.0.1:8123",
            "http://127.0.0.2:8123/",
            "https://LOCALHOST:8443",
            "http://[::1]:8123",
            "http://localhost",
        ] {
            assert!(
                matches!(compression_for(url), clickhouse::Compression::None),
                "{url}"
            );
        }
        for url in [
            "http://10.0.0.5:8123",
            "https://ch.example.com:8443",
            "http://[2001:db8::1]:8123",
            "http://localhost.example.com",
            "http://128.0.0.1",
        ] {
            assert!(
                matches!(compression_for(url), clickhouse::Compression::Lz4),
                "{url}"
            );
        }
    }

    #[test]
    fn versions_parse_and_gate_validation() {
        let old = ServerVersion::parse("18.16.1").unwrap();
        assert!(!old.supports_validation());
        let new = ServerVersion::parse("25.3.2.39").unwrap();
        assert!(new.supports_validation());
        assert!(ServerVersion::parse("garbage").is_none());
    }

    #[test]
    fn url_and_identifier_validation() {
        assert!(parse_http_url("http://127.0.0.1:8123/").is_ok());
        assert!(parse_http_url("https://ch.example.org:8443").is_ok());
        assert!(parse_http_url("tcp://x").is_err());
        assert!(parse_http_url("http://u:p@x").is_err());
        let e = parse_http_url("http://x:8123/?user=default&password=hunter2").unwrap_err();
        assert!(e.contains("`user`") && !e.contains("hunter2"), "{e}");
        let e = parse_http_url("http://x:8123/?PASSWORD=hunter2").unwrap_err();
        assert!(e.contains("credential") && !e.contains("hunter2"), "{e}");
        assert!(parse_http_url("http://x:8123/?max_insert_block_size=3").is_ok());
        assert!(parse_identifier("zakaz_test_1").is_ok());
        assert!(parse_identifier("zakaz; DROP").is_err());
        assert!(parse_identifier("1abc").is_err());
    }

    #[test]
    fn several_replicas_are_one_setting() {
        assert_eq!(
            parse_http_urls("http://127.0.0.1:8124/, http://127.0.0.1:8125").unwrap(),
            "http://127.0.0.1:8124,http://127.0.0.1:8125"
        );
        assert!(parse_http_urls("http://a:1,tcp://b").is_err());
        assert!(parse_http_urls("http://a:1,http://u:p@b").is_err());
        assert!(parse_http_urls(" , ").is_err());
        assert_eq!(parse_cluster("").unwrap(), "");
        assert_eq!(parse_cluster("zakaz").unwrap(), "zakaz");
        assert!(parse_cluster("a b").is_err());
    }
}

//! Test support: a fresh ClickHouse database per test, so tests run in
//! parallel against the real server and never see each other's rows.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::ch::{Ch, ClickHouseArgs};

/// `program` with a clean environment: only `PATH`, and the shifted clock of
/// `scripts/test.sh`'s second pass (libfaketime's `LD_PRELOAD` and `FAKETIME*`), so that a
/// binary a test runs lives at the same time as the test.
pub fn clean_command(program: impl AsRef<std::ffi::OsStr>) -> std::process::Command {
    let mut cmd = std::process::Command::new(program);
    cmd.env_clear();
    for (k, v) in std::env::vars_os() {
        let name = k.to_string_lossy();
        if name == "PATH" || name == "LD_PRELOAD" || name.starts_with("FAKETIME") {
            cmd.env(k, v);
        }
    }
    cmd
}

/// The ClickHouse the tests use: `CLICKHOUSE_URL` or the local default.
pub fn clickhouse_url() -> String {
    std::env::var("CLICKHOUSE_URL").unwrap_or_else(|_| "http://127.0.0.1:8123".to_owned())
}

/// A uniquely named database, dropped when the value is dropped.
pub struct TestDb {
    pub name: String,
    pub args: ClickHouseArgs,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name part unique to this process and call — the process id, a counter and a random
/// number (for a recycled process id) — for test databases, directories and stands. Never
/// from the clock: no test takes anything from it.
pub fn unique_suffix() -> String {
    use std::hash::{BuildHasher, Hasher};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish() as u32;
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{}_{n}_{random:08x}", std::process::id())
}

/// Every test database's name starts so, followed by its creation time (Unix seconds, by the
/// ClickHouse server's clock).
const PREFIX: &str = "zakaz_test_";

/// Test databases older than this were left by a killed run (no test runs for so long).
const STALE_AFTER_SECS: u64 = 6 * 3600;

/// The ClickHouse server's clock, in Unix seconds. Test databases are named and judged by it,
/// never by the test's own clock: a pass with a shifted clock (scripts/test.sh) must not take
/// another pass's databases for old ones.
fn server_now() -> u64 {
    http_post(&clickhouse_url(), "SELECT toUnixTimestamp(now())")
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0)
}

/// Drop the test databases a killed run left behind: named with [`PREFIX`] and created
/// more than [`STALE_AFTER_SECS`] ago (names without a creation time are from before it was
/// part of the name, and are stale too). Best-effort: a failure leaves them for next time.
pub fn drop_stale_databases() {
    drop_stale_databases_at(&clickhouse_url());
}

fn drop_stale_databases_at(url: &str) {
    let Ok(list) = http_post(
        url,
        &format!(
            "SELECT name FROM system.databases WHERE startsWith(name, '{PREFIX}') FORMAT TabSeparated"
        ),
    ) else {
        return;
    };
    let now = server_now();
    if now == 0 {
        return;
    }
    for name in list.lines() {
        let created: u64 = name
            .trim_start_matches(PREFIX)
            .split('_')
            .next()
            .and_then(|t| t.parse().ok())
            .unwrap_or(0);
        // A creation time must look like one (after 2020): older names carried a pid here.
        let created = if created > 1_577_836_800 { created } else { 0 };
        if now.saturating_sub(created) > STALE_AFTER_SECS {
            let _ = http_post(url, &format!("DROP DATABASE IF EXISTS `{name}`"));
        }
    }
}

impl TestDb {
    /// A name and settings only; nothing is created (for tests of `migrate` itself).
    pub fn empty() -> TestDb {
        static SWEPT: std::sync::Once = std::sync::Once::new();
        SWEPT.call_once(drop_stale_databases);
        let name = format!(
            "{PREFIX}{}_{}_{}_{}",
            server_now(),
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            rand::random::<u16>()
        );
        TestDb {
            args: ClickHouseArgs {
                clickhouse_url: clickhouse_url(),
                clickhouse_user: "default".to_owned(),
                clickhouse_password: None,
                clickhouse_db: name.clone(),
                clickhouse_timeout_secs: 300,
                clickhouse_cluster: String::new(),
                lease: crate::lease::LeaseArgs::default(),
                replicas: crate::replicas::ReplicaArgs::default(),
            },
            name,
        }
    }

    /// A database with every migration applied, and a connection to it.
    pub async fn migrated() -> (TestDb, Ch) {
        let db = TestDb::empty();
        let ch = db.connect().await;
        crate::schema::migrate(&ch).await.expect("migrations apply");
        (db, ch)
    }

    /// [`TestDb::migrated`] for a test without a runtime of its own (one that drives
    /// binaries and blocking clients only).
    pub fn migrated_blocking() -> TestDb {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for the set-up");
        runtime.block_on(TestDb::migrated()).0
    }

    pub async fn connect(&self) -> Ch {
        Ch::connect(&self.args)
            .await
            .expect("the test ClickHouse is reachable (run scripts/setup.sh)")
    }

    /// `program` with a clean environment ([`clean_command`]) pointed at this database, so a
    /// test never inherits settings from the machine running it.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> std::process::Command {
        let mut cmd = clean_command(program);
        for (k, v) in self.env() {
            cmd.env(k, v);
        }
        cmd
    }

    /// A query's result as TSV, with `{db}` standing for this database.
    pub fn query(&self, sql: &str) -> String {
        query_tsv(&sql.replace("{db}", &format!("`{}`", self.name)))
    }

    /// Environment variables that point a binary at this database.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("CLICKHOUSE_URL", self.args.clickhouse_url.clone()),
            ("CLICKHOUSE_DB", self.name.clone()),
            // A query stuck behind the DDL of many parallel tests fails in a minute (and the
            // test is retried) instead of holding the run for the default five.
            ("CLICKHOUSE_TIMEOUT_SECS", "60".to_owned()),
        ]
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if std::env::var_os("KEEP_TEST_DB").is_some() {
            eprintln!("keeping test database {}", self.name);
            return;
        }
        let _ = http_post(
            &clickhouse_url(),
            &format!("DROP DATABASE IF EXISTS `{}`", self.name),
        );
    }
}

/// The replicated cluster of `scripts/clickhouse-cluster.sh` (two replicas of one shard):
/// `ZAKAZ_TEST_CLUSTER_URLS` or its default ports, replica 1 first.
pub fn cluster_urls() -> Vec<String> {
    std::env::var("ZAKAZ_TEST_CLUSTER_URLS")
        .unwrap_or_else(|_| "http://127.0.0.1:8124,http://127.0.0.1:8125".to_owned())
        .split(',')
        .map(|u| u.trim().to_owned())
        .collect()
}

/// The cluster's name in the replicas' `remote_servers`.
pub const TEST_CLUSTER: &str = "zakaz";

/// The cluster's ZooKeeper (`ZAKAZ_TEST_ZOOKEEPER`, default `127.0.0.1:2191`).
pub fn zookeeper_hosts() -> String {
    std::env::var("ZAKAZ_TEST_ZOOKEEPER").unwrap_or_else(|_| "127.0.0.1:2191".to_owned())
}

/// `scripts/clickhouse-cluster.sh ARGS` (start or stop a replica or ZooKeeper); it must
/// succeed.
pub fn cluster_script(args: &[&str]) -> String {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../scripts/clickhouse-cluster.sh");
    let out = std::process::Command::new("bash")
        .arg(script)
        .args(args)
        .env_remove("LD_PRELOAD")
        .output()
        .expect("bash runs");
    assert!(
        out.status.success(),
        "scripts/clickhouse-cluster.sh {} failed: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A uniquely named database on the test cluster (`CLICKHOUSE_URL` listing both replicas,
/// `CLICKHOUSE_CLUSTER`), dropped on every replica that answers when the value is dropped.
pub struct ClusterDb {
    pub name: String,
    pub args: ClickHouseArgs,
}

impl ClusterDb {
    /// A name and settings only; nothing is created.
    pub fn empty() -> ClusterDb {
        static SWEPT: std::sync::Once = std::sync::Once::new();
        SWEPT.call_once(|| {
            for url in cluster_urls() {
                drop_stale_databases_at(&url);
            }
        });
        let mut db = TestDb::empty();
        let name = std::mem::take(&mut db.name);
        let mut args = db.args.clone();
        std::mem::forget(db); // nothing was created on the single server
        args.clickhouse_url = cluster_urls().join(",");
        args.clickhouse_cluster = TEST_CLUSTER.to_owned();
        ClusterDb { name, args }
    }

    /// A database with every migration applied on the cluster, and a connection to it.
    pub async fn migrated() -> (ClusterDb, Ch) {
        let db = ClusterDb::empty();
        let ch = db.connect().await;
        crate::schema::migrate(&ch)
            .await
            .expect("migrations apply on the cluster");
        (db, ch)
    }

    pub async fn connect(&self) -> Ch {
        Ch::connect(&self.args)
            .await
            .expect("the test cluster is reachable (scripts/clickhouse-cluster.sh start)")
    }

    /// Environment variables that point a binary at this database on the cluster.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("CLICKHOUSE_URL", self.args.clickhouse_url.clone()),
            ("CLICKHOUSE_CLUSTER", TEST_CLUSTER.to_owned()),
            ("CLICKHOUSE_DB", self.name.clone()),
            ("CLICKHOUSE_TIMEOUT_SECS", "60".to_owned()),
        ]
    }

    /// `program` with a clean environment pointed at this database on the cluster.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> std::process::Command {
        let mut cmd = clean_command(program);
        for (k, v) in self.env() {
            cmd.env(k, v);
        }
        cmd
    }

    /// A query's result as TSV on replica `n` (1-based), with `{db}` standing for this
    /// database (a statement's answer for anything but a `SELECT`).
    pub fn query_on(&self, n: usize, sql: &str) -> String {
        let url = &cluster_urls()[n - 1];
        let sql = sql.replace("{db}", &format!("`{}`", self.name));
        // Statements (`SYSTEM …`, DDL) take no FORMAT on 18.16.
        let text = if sql.trim_start().starts_with("SELECT") {
            format!("{sql} FORMAT TabSeparated")
        } else {
            sql.clone()
        };
        http_post(url, &text).unwrap_or_else(|e| panic!("query on replica {n} failed: {sql}: {e}"))
    }

    /// `SYSTEM SYNC REPLICA` of every replicated table of this database on replica `n`:
    /// returns once it has fetched every part the other replicas have.
    pub fn sync_replica(&self, n: usize) {
        let tables = self.query_on(
            n,
            &format!(
                "SELECT name FROM system.tables WHERE database = '{}' AND engine LIKE 'Replicated%'",
                self.name
            ),
        );
        for table in tables.lines() {
            self.query_on(n, &format!("SYSTEM SYNC REPLICA {{db}}.{table}"));
        }
    }
}

impl Drop for ClusterDb {
    fn drop(&mut self) {
        if std::env::var_os("KEEP_TEST_DB").is_some() {
            eprintln!("keeping test database {} on the cluster", self.name);
            return;
        }
        // Replica by replica (not `ON CLUSTER`, which would wait for a stopped one).
        for url in cluster_urls() {
            let _ = http_post(&url, &format!("DROP DATABASE IF EXISTS `{}`", self.name));
        }
    }
}

/// Run a command that must succeed; its stderr is the failure message.
pub fn output_ok(cmd: &mut std::process::Command) -> std::process::Output {
    let out = cmd.output().expect("the command runs");
    assert!(
        out.status.success(),
        "{:?} failed: {}",
        cmd.get_program(),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A job binary as a test runs it: the test's environment builds the command (a clean
/// environment pointed at its sandbox and database); running it is the same for every job.
pub trait JobUnderTest {
    fn command(&self, args: &[&str]) -> std::process::Command;

    /// Run to the end with `extra_env` on top; whatever the outcome.
    fn run(&self, args: &[&str], extra_env: &[(&str, &str)]) -> std::process::Output {
        self.command(args)
            .envs(extra_env.iter().copied())
            .output()
            .expect("the job binary runs")
    }

    /// Run to the end; it must succeed.
    fn run_ok(&self, args: &[&str]) -> std::process::Output {
        output_ok(&mut self.command(args))
    }

    /// Run to the end; it must exit with `code`. Its stderr, for what the failure says.
    fn run_failing(&self, args: &[&str], extra_env: &[(&str, &str)], code: i32) -> String {
        let out = self.run(args, extra_env);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(code), "{stderr}");
        stderr
    }
}

/// The sandbox's request log under `prefix` (`GET <base>/_sandbox/requests`).
pub fn sandbox_requests(base_url: &str, prefix: &str) -> Vec<serde_json::Value> {
    let text = request(
        "GET",
        &format!(
            "{base_url}/_sandbox/requests?path_prefix={}",
            query_escape(prefix)
        ),
        "application/json",
        "",
    )
    .unwrap_or_else(|e| panic!("sandbox request log: {e}"));
    serde_json::from_str(&text).expect("the request log is JSON")
}

fn query_escape(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A blocking `POST /` of one query over plain HTTP/1.0 (no chunked answer to undo): usable from `Drop` inside or outside a
/// runtime. Returns the body, or the error text.
pub fn http_post(base: &str, query: &str) -> Result<String, String> {
    post(
        &format!("{}/", base.trim_end_matches('/')),
        "text/plain",
        query,
    )
}

/// A blocking JSON `POST` to `url` (plain http, loopback test servers such as the sandbox's
/// control API), without a client library or a `curl` on the machine. The body, or the
/// error text for a non-200 answer.
pub fn post_json(url: &str, body: &str) -> Result<String, String> {
    post(url, "application/json", body)
}

fn post(url: &str, content_type: &str, body: &str) -> Result<String, String> {
    request("POST", url, content_type, body)
}

fn request(method: &str, url: &str, content_type: &str, body: &str) -> Result<String, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or("only http:// is supported by the test client")?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let mut stream = TcpStream::connect(hostport).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let request = format!(
        "{method} {path} HTTP/1.0\r\nHost: {hostport}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| e.to_string())?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    if head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200") {
        Ok(body.to_owned())
    } else {
        Err(body.to_owned())
    }
}

/// `POST <base>/_sandbox<path>` with a JSON body: the sandbox's control API.
pub fn sandbox_control(base_url: &str, path: &str, body: &serde_json::Value) {
    if let Err(e) = post_json(&format!("{base_url}/_sandbox{path}"), &body.to_string()) {
        panic!("sandbox control {path}: {e}");
    }
}

/// A query's result as TSV text, for assertions.
pub fn query_tsv(query: &str) -> String {
    http_post(&clickhouse_url(), &format!("{query} FORMAT TabSeparated"))
        .unwrap_or_else(|e| panic!("query failed: {query}: {e}"))
}

/// A directory of the test's own under the temp dir, removed on drop.
pub struct TempDir {
    pub path: std::path::PathBuf,
}

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!(
            "zakaz-test-{label}-{}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&path).expect("temporary directory");
        TempDir { path }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A unit directory of the test's own (under the temp dir, removed on drop) in which every
/// job of the job table is installed, and exactly `enabled` ones are enabled: what
/// `SYSTEMD_UNIT_DIRS` points at, so no test depends on the host's `/etc` or on defaults.
pub struct UnitDir {
    pub path: std::path::PathBuf,
}

impl UnitDir {
    pub fn enabling(enabled: &[&str]) -> UnitDir {
        let path = std::env::temp_dir().join(format!(
            "zakaz-test-units-{}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            rand::random::<u32>()
        ));
        for target in ["timers.target.wants", "multi-user.target.wants"] {
            std::fs::create_dir_all(path.join(target)).expect("unit directory");
        }
        for job in crate::jobs::JOBS {
            let (unit, target) = job.enablement_unit();
            std::fs::write(path.join(&unit), "# test unit\n").expect("unit file");
            if enabled.contains(&job.name) {
                std::os::unix::fs::symlink(path.join(&unit), path.join(target).join(&unit))
                    .expect("wants link");
            }
        }
        UnitDir { path }
    }
}

impl Drop for UnitDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Poll `done` (bounded: 30 s) for a state another process reaches — never for time to pass.
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..600 {
        if done() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("timed out waiting until {what}");
}

/// Whether process `pid` is blocked on a file lock (`/proc/locks` lists a waiter after `->`).
pub fn waits_for_a_lock(pid: u32) -> bool {
    std::fs::read_to_string("/proc/locks").is_ok_and(|locks| {
        locks.lines().any(|l| {
            l.contains("->")
                && l.split_whitespace()
                    .nth(5)
                    .is_some_and(|p| p == pid.to_string())
        })
    })
}

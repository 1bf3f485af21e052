//! `healthcheck` against the real ClickHouse: seeded journal rows judged at a pinned instant,
//! every endpoint's status and body, ClickHouse going away and coming back (through a proxy
//! the test controls, so other tests keep their server), load and hostile clients, the
//! Prometheus format checked by promtool, and the page rendered by a real headless Chromium.

mod browser;
mod endpoints;
mod load;
mod page;
mod slow;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use healthcheck::server::{self, Config, Running};
use zakaz_core::ch::{Ch, ClickHouseArgs};
use zakaz_core::checks::CheckArgs;
use zakaz_core::testing::TestDb;
use zakaz_core::time::Clock;

/// The instant every scenario is judged at: Monday 2026-06-15 12:00 MSK.
pub const T: i64 = 1_781_514_000;

pub fn t() -> DateTime<Utc> {
    DateTime::from_timestamp(T, 0).unwrap()
}

/// The jobs the tests treat as switched on (the loaders included; gmail off).
pub const ENABLED: &[&str] = &["qtickets", "vk_ads", "direct", "alerts", "healthcheck"];

/// Settings of a server under test: the test's ClickHouse database, a pinned clock, a unit
/// directory of its own (never the host's), no cache unless a test wants one.
fn config(clickhouse: ClickHouseArgs, units: &std::path::Path) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        threads: 4,
        cache: Duration::ZERO,
        clickhouse_timeout: Duration::from_secs(2),
        client_timeout: Duration::from_secs(2),
        max_connections: server::DEFAULT_MAX_CONNECTIONS,
        clickhouse,
        checks: CheckArgs {
            alert_missed_tolerance: 1.5,
            systemd_unit_dirs: vec![units.to_owned()],
        },
        // The queue's gauges are tested end to end (tests/it/queue_observability.rs).
        queue: camp_queue::db::DbArgs {
            ppcdict_dsn: None,
            shard_dsns: None,
            shards: None,
        },
        clock: Clock::Fixed(t()),
    }
}

/// A database, and a server in this process reading it.
pub struct Env {
    pub db: TestDb,
    pub ch: Ch,
    pub server: Option<Running>,
    /// `SYSTEMD_UNIT_DIRS`: every job installed, `ENABLED` enabled.
    pub units: zakaz_core::testing::UnitDir,
}

impl Env {
    pub async fn new() -> Env {
        let (db, ch) = TestDb::migrated().await;
        Env {
            db,
            ch,
            server: None,
            units: zakaz_core::testing::UnitDir::enabling(ENABLED),
        }
    }

    /// The server settings for this test's database.
    pub fn config(&self) -> Config {
        config(self.db.args.clone(), &self.units.path)
    }

    /// The same, reaching ClickHouse through `clickhouse` instead.
    pub fn config_with(&self, clickhouse: ClickHouseArgs) -> Config {
        config(clickhouse, &self.units.path)
    }

    pub fn start(&mut self, config: Config) -> SocketAddr {
        let running = server::start(config, tokio::runtime::Handle::current()).unwrap();
        let addr = running.addr;
        self.server = Some(running);
        addr
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.as_ref().expect("started").addr
    }

    /// A run of `job` started `ago` seconds before `T`, lasting `took` seconds.
    pub async fn seed_run(
        &self,
        job: &str,
        status: &str,
        ago: i64,
        took: i64,
        rows: u64,
        message: &str,
    ) {
        let started = T - ago;
        let finished = if status == "running" {
            "NULL".to_owned()
        } else {
            format!("toDateTime({})", started + took)
        };
        // The view shows a `running` row whose deadline has passed (by ClickHouse's clock,
        // later than T) as `unfinished`: the killed-run case.
        self.ch
            .execute(&format!(
                "INSERT INTO meta_job_run_events (job, run_id, seq, status, started_at, finished_at, deadline_at, rows_processed, message, metrics, host, pid) \
                 SELECT '{job}', '{job}-{ago}-{status}', {seq}, '{status}', toDateTime({started}), {finished}, toDateTime({deadline}), {rows}, '{message}', '{{}}', 'test', 1",
                seq = u8::from(status != "running"),
                deadline = started + 300,
                message = message.replace('\'', "\\'"),
            ))
            .await
            .unwrap();
    }

    /// One fact row of `source` dated `days_behind` days before T's Moscow date.
    pub async fn seed_fresh(&self, source: &str, days_behind: u32) {
        let date = format!("toDate('2026-06-15') - {days_behind}");
        let sql = match source {
            "qtickets" => format!(
                "INSERT INTO fact_qtickets_sales_daily (sales_date, event_id, city, tickets_sold, _version) SELECT {date}, 1, 'Москва', 1, 1"
            ),
            "vk_ads" => format!(
                "INSERT INTO fact_vk_ads_daily (stat_date, ad_plan_id, _version) SELECT {date}, 1, 1"
            ),
            "direct" => format!(
                "INSERT INTO fact_direct_daily (stat_date, client_login, _version) SELECT {date}, 'a', 1"
            ),
            other => panic!("no seed for {other}"),
        };
        self.ch.execute(&sql).await.unwrap();
    }

    /// Every job enabled by default ran recently and every enabled source is fresh.
    pub async fn seed_healthy(&self) {
        self.seed_run("qtickets", "ok", 300, 10, 42, "mode incremental")
            .await;
        self.seed_run("vk_ads", "ok", 3600, 60, 7, "fine").await;
        self.seed_run("direct", "ok", 3000, 30, 5, "fine").await;
        self.seed_run("alerts", "ok", 600, 2, 0, "0 notice(s) sent")
            .await;
        self.seed_fresh("qtickets", 0).await;
        self.seed_fresh("vk_ads", 1).await;
        self.seed_fresh("direct", 1).await;
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            s.stop();
        }
    }
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Answer {
    pub code: u16,
    pub head: String,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// One request over a fresh HTTP/1.0 connection (the server closes it after answering).
pub fn request(addr: SocketAddr, method: &str, path: &str) -> Answer {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: localhost\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    parse(&String::from_utf8_lossy(&raw))
}

pub fn get(addr: SocketAddr, path: &str) -> Answer {
    request(addr, "GET", path)
}

fn parse(raw: &str) -> Answer {
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {raw:?}"));
    Answer {
        code,
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

/// A TCP proxy in front of the real ClickHouse that the test can take down and bring back,
/// so "ClickHouse stopped" never stops the server other tests use.
pub struct Proxy {
    pub addr: SocketAddr,
    up: Arc<AtomicBool>,
    hang: Arc<AtomicBool>,
    streams: Arc<Mutex<Vec<TcpStream>>>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    pub fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let hang = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let streams: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (up2, hang2, stop2, streams2) =
            (up.clone(), hang.clone(), stop.clone(), streams.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                // Down: accept and hang up at once, as a stopped server's port would refuse.
                if !up2.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                // Hanging: accept, read nothing, answer nothing (a stuck server).
                if hang2.load(Ordering::SeqCst) {
                    streams2.lock().unwrap().push(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(target) else {
                    continue;
                };
                let mut held = streams2.lock().unwrap();
                held.push(client.try_clone().unwrap());
                held.push(server.try_clone().unwrap());
                pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                pipe(server, client);
            }
        });
        Proxy {
            addr,
            up,
            hang,
            streams,
            stop,
        }
    }

    /// Refuse new connections and cut the open ones.
    pub fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.hang.store(false, Ordering::SeqCst);
        for s in self.streams.lock().unwrap().drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }

    pub fn up(&self) {
        self.hang.store(false, Ordering::SeqCst);
        self.up.store(true, Ordering::SeqCst);
    }

    /// Accept new connections but never answer; cut the open ones.
    pub fn hang(&self) {
        self.down();
        self.hang.store(true, Ordering::SeqCst);
        self.up.store(true, Ordering::SeqCst);
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.down();
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(std::net::Shutdown::Write);
    });
}

/// The real ClickHouse's address, from `CLICKHOUSE_URL` or the default.
pub fn clickhouse_addr() -> SocketAddr {
    let url = zakaz_core::testing::clickhouse_url();
    let hostport = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .replace("localhost", "127.0.0.1");
    hostport.parse().expect("CLICKHOUSE_URL is http://IP:PORT")
}

/// The real binary in a process of its own (its threads, descriptors and memory are its own),
/// judging at `T` like the in-process servers, its log in a file. Killed when dropped.
pub struct Binary {
    pub child: Child,
    pub addr: SocketAddr,
    pub log: PathBuf,
}

impl Binary {
    /// Start `healthcheck` for `env`'s database with `vars` set, under `prlimit --nofile=N:N`
    /// when `nofile` is given (the unit's `LimitNOFILE=`), and wait until it listens.
    pub fn start(env: &Env, nofile: Option<u64>, vars: &[(&str, &str)]) -> Binary {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let log =
            std::env::temp_dir().join(format!("healthcheck-it-{}-{port}.log", std::process::id()));
        let bin = env!("CARGO_BIN_EXE_healthcheck");
        let mut cmd = match nofile {
            Some(n) => {
                // prlimit sets the limit and execs the binary: same pid.
                let mut cmd = env.db.command("prlimit");
                cmd.arg(format!("--nofile={n}:{n}")).arg("--").arg(bin);
                cmd
            }
            None => env.db.command(bin),
        };
        let child = cmd
            .args(["--now", "2026-06-15T09:00:00Z"])
            .env("HEALTHCHECK_LISTEN", addr.to_string())
            .env("HEALTHCHECK_CACHE_SECONDS", "3600")
            .env("SYSTEMD_UNIT_DIRS", &env.units.path)
            .env("LOG_LEVEL", "warn")
            .envs(vars.iter().copied())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut binary = Binary { child, addr, log };
        for _ in 0..200 {
            if TcpStream::connect(addr).is_ok() {
                return binary;
            }
            if let Some(status) = binary.child.try_wait().unwrap() {
                panic!("healthcheck exited with {status}: {}", binary.log_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("healthcheck did not start listening: {}", binary.log_text());
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `Threads:` of /proc/<pid>/status; `None` once the process is gone.
    pub fn threads(&self) -> Option<u64> {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("Threads:"))
            .and_then(|v| v.trim().parse().ok())
    }

    /// Open descriptors (entries of /proc/<pid>/fd), in order; `None` once the process is gone.
    pub fn descriptors(&self) -> Option<Vec<u64>> {
        let dir = std::fs::read_dir(format!("/proc/{}/fd", self.pid())).ok()?;
        let mut fds: Vec<u64> = dir
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect();
        fds.sort_unstable();
        Some(fds)
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// The repository's root (the committed units live in `systemd/`).
pub fn repo_root() -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap()
        .to_owned()
}

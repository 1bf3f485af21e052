//! The HTTP server: tiny_http with a fixed set of worker threads, socket timeouts so slow
//! clients cannot hold a worker, and one cached report so a probe storm never becomes a
//! ClickHouse storm (one refresh at a time, at most once per cache period; while it runs,
//! other requests get the previous report).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, TryLockError};
use std::time::{Duration, Instant};

use tiny_http::{Header, Method, Request, Response};
use zakaz_core::ch::{Ch, ClickHouseArgs};
use zakaz_core::checks::CheckArgs;
use zakaz_core::time::Clock;

use crate::render;
use crate::report::{self, Context, Inputs, Report, Verdict};

/// How the server runs.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub threads: usize,
    /// How long a report from ClickHouse is served before the next refresh.
    pub cache: Duration,
    /// A refresh that takes longer counts as ClickHouse unreachable.
    pub clickhouse_timeout: Duration,
    /// Read and write timeout of a client connection.
    pub client_timeout: Duration,
    pub clickhouse: ClickHouseArgs,
    pub checks: CheckArgs,
    pub queue: camp_queue::db::DbArgs,
    pub clock: Clock,
}

/// A report and its rendered forms, built once per refresh.
pub struct Snapshot {
    pub report: Report,
    at: Instant,
    detailed: String,
    metrics: String,
}

impl Snapshot {
    fn new(report: Report) -> Snapshot {
        Snapshot {
            detailed: render::detailed(&report),
            metrics: render::metrics(&report),
            report,
            at: Instant::now(),
        }
    }
}

/// What every worker shares.
struct Shared {
    config: Config,
    runtime: tokio::runtime::Handle,
    cached: Mutex<Option<Arc<Snapshot>>>,
    /// Held during a refresh: one at a time. Keeps the connection between refreshes.
    connection: Mutex<Option<Ch>>,
    stats: Mutex<Stats>,
    /// The campaign queue's databases, when configured.
    queue: Option<camp_queue::db::Deployment>,
}

const ROUTES: &[&str] = &[
    "/",
    "/healthz",
    "/healthz/live",
    "/healthz/detailed",
    "/healthz/freshness",
    "/metrics",
];

/// Histogram bounds of the request latency, in seconds.
const BUCKETS: &[f64] = &[0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0];

#[derive(Default)]
struct Stats {
    counts: BTreeMap<(&'static str, u16), u64>,
    /// Per route: per-bucket counts (not cumulative), sum, count.
    latencies: BTreeMap<&'static str, ([u64; BUCKETS.len()], f64, u64)>,
}

impl Stats {
    fn record(&mut self, route: &'static str, code: u16, took: Duration) {
        *self.counts.entry((route, code)).or_default() += 1;
        let entry = self.latencies.entry(route).or_default();
        let secs = took.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            entry.0[i] += 1;
        }
        entry.1 += secs;
        entry.2 += 1;
    }

    fn render(&self, out: &mut String) {
        let counts: Vec<_> = self.counts.iter().map(|(k, v)| (*k, *v)).collect();
        let latencies: Vec<_> = self
            .latencies
            .iter()
            .map(|(route, (buckets, sum, count))| {
                let cumulative = buckets
                    .iter()
                    .scan(0, |acc, n| {
                        *acc += n;
                        Some(*acc)
                    })
                    .collect();
                (*route, cumulative, *sum, *count)
            })
            .collect();
        render::request_metrics(
            &render::RequestStats {
                counts: &counts,
                latencies: &latencies,
                buckets: BUCKETS,
            },
            out,
        );
    }
}

impl Shared {
    /// The cached report, refreshed when older than the cache period.
    fn snapshot(&self) -> Arc<Snapshot> {
        if let Some(s) = self.fresh() {
            return s;
        }
        let mut connection = match self.connection.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            // Another worker is refreshing: answer from the previous report rather than make
            // every probe wait for ClickHouse (only the very first requests wait).
            Err(TryLockError::WouldBlock) => match self.latest() {
                Some(s) => return s,
                None => self.connection.lock().unwrap_or_else(|p| p.into_inner()),
            },
        };
        // Another worker may have refreshed while this one waited.
        if let Some(s) = self.fresh() {
            return s;
        }
        let inputs = self.refresh(&mut connection);
        let enabled = self.config.checks.enabled_jobs();
        let report = report::evaluate(
            inputs.as_ref(),
            &Context {
                now: self.config.clock.now(),
                enabled,
                tolerance: self.config.checks.alert_missed_tolerance,
            },
        );
        let snapshot = Arc::new(Snapshot::new(report));
        *self.cached.lock().unwrap_or_else(|p| p.into_inner()) = Some(snapshot.clone());
        snapshot
    }

    fn fresh(&self) -> Option<Arc<Snapshot>> {
        self.latest().filter(|s| s.at.elapsed() < self.config.cache)
    }

    fn latest(&self) -> Option<Arc<Snapshot>> {
        self.cached
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Read ClickHouse within the timeout; `None` when it does not answer. The reason goes to
    /// the log only: it may name hosts or users, never to a client.
    fn refresh(&self, connection: &mut Option<Ch>) -> Option<Inputs> {
        let args = &self.config.clickhouse;
        let result = self.runtime.block_on(async {
            tokio::time::timeout(self.config.clickhouse_timeout, async {
                if connection.is_none() {
                    let ch = Ch::connect(args).await?;
                    // A read-only monitoring user cannot migrate: say so, go on reading.
                    if let Err(e) = zakaz_core::schema::ensure(&ch).await {
                        tracing::warn!("{}", zakaz_core::error::one_line(&e));
                    }
                    *connection = Some(ch);
                }
                let ch = connection.as_ref().expect("connected above");
                let now = self.config.clock.now().naive_utc();
                report::gather(ch, self.queue.as_ref(), now).await
            })
            .await
        });
        match result {
            Ok(Ok(inputs)) => Some(inputs),
            Ok(Err(e)) => {
                tracing::warn!(
                    "ClickHouse refresh failed: {}",
                    zakaz_core::error::one_line(&e)
                );
                *connection = None;
                None
            }
            Err(_) => {
                tracing::warn!(
                    timeout_ms = self.config.clickhouse_timeout.as_millis() as u64,
                    "ClickHouse did not answer within the timeout"
                );
                *connection = None;
                None
            }
        }
    }
}

/// A running server. Dropping it does not stop it: call [`Running::stop`].
pub struct Running {
    pub addr: SocketAddr,
    server: Arc<tiny_http::Server>,
    stopping: Arc<AtomicBool>,
    failure: Arc<Mutex<Option<String>>>,
    workers: Vec<std::thread::JoinHandle<()>>,
}

impl Running {
    /// Stop accepting, let the workers finish the requests they hold, and join them.
    pub fn stop(self) {
        self.stopping.store(true, Ordering::SeqCst);
        for _ in &self.workers {
            self.server.unblock();
        }
        for w in self.workers {
            let _ = w.join();
        }
    }

    /// Why the server stopped accepting connections, once it has. tiny_http's accept loop
    /// ends on its first error (e.g. out of file descriptors): the process must then exit so
    /// that systemd restarts it, instead of living on deaf.
    pub fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// One request to the server's own `/healthz/live`: proves a worker answers (the
    /// watchdog's probe).
    pub fn probe(&self, timeout: Duration) -> bool {
        probe(self.addr, timeout)
    }
}

/// Bind and start the workers. A port in use is a configuration error naming the setting.
pub fn start(config: Config, runtime: tokio::runtime::Handle) -> anyhow::Result<Running> {
    let listener = bind(config.listen, config.client_timeout)?;
    let addr = listener.local_addr()?;
    let server = Arc::new(
        tiny_http::Server::from_listener(listener, None)
            .map_err(|e| anyhow::anyhow!("cannot serve on {addr}: {e}"))?,
    );
    let threads = config.threads;
    let client_timeout = config.client_timeout;
    let queue = {
        // The pools are created (lazily) on the runtime that will drive them.
        let _inside = runtime.enter();
        camp_queue::db::connect_if_configured(&config.queue)?
    };
    let shared = Arc::new(Shared {
        config,
        runtime,
        cached: Mutex::new(None),
        connection: Mutex::new(None),
        stats: Mutex::new(Stats::default()),
        queue,
    });
    let stopping = Arc::new(AtomicBool::new(false));
    let failure = Arc::new(Mutex::new(None));
    let mut workers = (0..threads)
        .map(|i| {
            let (server, shared, stopping, failure) = (
                server.clone(),
                shared.clone(),
                stopping.clone(),
                failure.clone(),
            );
            std::thread::Builder::new()
                .name(format!("http-{i}"))
                .spawn(move || {
                    while !stopping.load(Ordering::SeqCst) {
                        match server.recv() {
                            Ok(request) => handle(&shared, request),
                            // `unblock()` from `stop`, or the accept loop's last word.
                            Err(e) if !stopping.load(Ordering::SeqCst) => {
                                tracing::error!(
                                    "the HTTP server stopped accepting connections: {e}"
                                );
                                *failure.lock().unwrap_or_else(|p| p.into_inner()) =
                                    Some(e.to_string());
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                })
                .map_err(anyhow::Error::from)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    workers.push(keeper(addr, client_timeout, stopping.clone())?);
    tracing::info!(%addr, threads, "healthcheck listening");
    Ok(Running {
        addr,
        server,
        stopping,
        failure,
        workers,
    })
}

/// The listening socket's read timeout (which its connections inherit) also bounds
/// `accept()`, and tiny_http's accept loop ends on the first timeout. This thread connects
/// (and hangs up) three times per timeout, so an idle `accept()` never runs out of time.
fn keeper(
    addr: SocketAddr,
    timeout: Duration,
    stopping: Arc<AtomicBool>,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let target = loopback(addr);
    Ok(std::thread::Builder::new()
        .name("accept-keeper".into())
        .spawn(move || {
            while !stopping.load(Ordering::SeqCst) {
                std::thread::sleep(timeout / 3);
                let _ = TcpStream::connect_timeout(&target, timeout);
            }
        })?)
}

/// The address to reach a listener on from this host.
fn loopback(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(a) if a.ip().is_unspecified() => {
            SocketAddr::from(([127, 0, 0, 1], a.port()))
        }
        SocketAddr::V6(a) if a.ip().is_unspecified() => {
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, a.port()))
        }
        other => other,
    }
}

/// The listening socket. Accepted connections inherit its read and write timeouts (Linux
/// copies them on accept), which is how tiny_http's connection threads time out slow clients
/// (tiny_http has no timeout of its own); see [`keeper`] for the cost.
fn bind(addr: SocketAddr, client_timeout: Duration) -> anyhow::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let setting = "`HEALTHCHECK_LISTEN`";
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_tcp_nodelay(true)?;
    socket.set_read_timeout(Some(client_timeout))?;
    socket.set_write_timeout(Some(client_timeout))?;
    socket.bind(&addr.into()).map_err(|e| {
        zakaz_core::error::config_error(format!("cannot listen on {addr} (setting {setting}): {e}"))
    })?;
    socket.listen(1024)?;
    Ok(socket.into())
}

fn handle(shared: &Shared, request: Request) {
    let started = Instant::now();
    let path = request.url().split('?').next().unwrap_or("").to_owned();
    let route = ROUTES
        .iter()
        .copied()
        .find(|r| *r == path)
        .unwrap_or("other");
    let (code, content_type, body) = match request.method() {
        Method::Get | Method::Head => answer(shared, route),
        _ => (
            405,
            "application/json",
            r#"{"error":"method not allowed: use GET or HEAD"}"#.to_owned(),
        ),
    };
    let mut response = Response::from_string(body)
        .with_status_code(code)
        .with_header(header("Content-Type", content_type))
        .with_header(header("Cache-Control", "no-store"));
    if code == 405 {
        response = response.with_header(header("Allow", "GET, HEAD"));
    }
    // A client that went away is not our error.
    let _ = request.respond(response);
    shared
        .stats
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .record(route, code, started.elapsed());
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("static header is valid")
}

const JSON: &str = "application/json";

fn answer(shared: &Shared, route: &'static str) -> (u16, &'static str, String) {
    let status = |ok: bool| if ok { 200 } else { 503 };
    match route {
        "/healthz/live" => (200, JSON, r#"{"status":"ok"}"#.to_owned()),
        "/healthz" => {
            let s = shared.snapshot();
            (
                status(s.report.clickhouse.reachable),
                JSON,
                render::healthz(&s.report),
            )
        }
        "/healthz/detailed" => {
            let s = shared.snapshot();
            (
                status(s.report.status == Verdict::Ok),
                JSON,
                s.detailed.clone(),
            )
        }
        "/healthz/freshness" => {
            let s = shared.snapshot();
            let (verdict, body) = render::freshness(&s.report);
            (status(verdict == Verdict::Ok), JSON, body)
        }
        "/metrics" => {
            let s = shared.snapshot();
            let mut body = s.metrics.clone();
            shared
                .stats
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .render(&mut body);
            (200, "text/plain; version=0.0.4; charset=utf-8", body)
        }
        "/" => {
            let s = shared.snapshot();
            (200, "text/html; charset=utf-8", render::html(&s.report))
        }
        _ => (404, JSON, r#"{"error":"not found"}"#.to_owned()),
    }
}

/// `GET /healthz/live` over a fresh connection; true on a 200.
pub fn probe(addr: SocketAddr, timeout: Duration) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&loopback(addr), timeout) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(timeout));
    let _ = stream.set_write_timeout(Some(timeout));
    if stream
        .write_all(b"GET /healthz/live HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && &head[9..12] == b"200"
}

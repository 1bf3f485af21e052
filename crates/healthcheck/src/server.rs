//! The HTTP server: the bounded front of [`crate::http`] (one thread for all connections,
//! a deadline per request, a connection cap, a fixed pool of workers), and one cached report
//! so a probe storm never becomes a ClickHouse storm (one refresh at a time, at most once per
//! cache period; while it runs, other requests get the previous report).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, TryLockError};
use std::time::{Duration, Instant};

use zakaz_core::ch::{Ch, ClickHouseArgs};
use zakaz_core::checks::CheckArgs;
use zakaz_core::time::Clock;

use crate::http::{self, Counters, Front, Request, Response};
use crate::render;
use crate::report::{self, Context, Inputs, Report, Verdict};

/// Connections open at once by default (`HEALTHCHECK_MAX_CONNECTIONS`).
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;
/// Descriptors the process needs besides its connections: standard streams, the listener,
/// the runtimes' epoll and wake-up descriptors, ClickHouse's and the queue's pools (up to 8
/// per MySQL database), the journal. The unit's `LimitNOFILE=` covers both.
pub const FD_RESERVE: usize = 128;

/// How the server runs.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub threads: usize,
    /// How long a report from ClickHouse is served before the next refresh.
    pub cache: Duration,
    /// A refresh that takes longer counts as ClickHouse unreachable.
    pub clickhouse_timeout: Duration,
    /// The deadline of a whole request (idle time, head and body), and of taking its answer.
    pub client_timeout: Duration,
    /// Connections open at once; at the cap the one waiting longest is closed for a new one.
    pub max_connections: usize,
    pub clickhouse: ClickHouseArgs,
    pub checks: CheckArgs,
    pub queue: camp_queue::db::DbArgs,
    pub clock: Clock,
}

/// A report and its rendered forms, built once per refresh.
pub struct Snapshot {
    pub report: Report,
    at: Instant,
    detailed: Arc<str>,
    metrics: Arc<str>,
    html: Arc<str>,
}

impl Snapshot {
    fn new(report: Report) -> Snapshot {
        Snapshot {
            detailed: render::detailed(&report).into(),
            metrics: render::metrics(&report).into(),
            html: render::html(&report).into(),
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
    /// The front's connection counters.
    front: Arc<Counters>,
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

/// Histogram bounds of the request latency, in seconds, with their `le` labels (written out:
/// `/metrics` does not format them on every request).
const BUCKETS: &[(f64, &str)] = &[
    (0.001, "0.001"),
    (0.005, "0.005"),
    (0.01, "0.01"),
    (0.05, "0.05"),
    (0.1, "0.1"),
    (0.5, "0.5"),
    (1.0, "1"),
    (5.0, "5"),
];

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
        if let Some(i) = BUCKETS.iter().position(|(b, _)| secs <= *b) {
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
            .map(|(route, (per_bucket, sum, count))| render::RouteLatency {
                route,
                per_bucket,
                sum_seconds: *sum,
                count: *count,
            })
            .collect();
        let buckets: [&str; BUCKETS.len()] = std::array::from_fn(|i| BUCKETS[i].1);
        render::request_metrics(
            &render::RequestStats {
                counts: &counts,
                latencies: &latencies,
                buckets: &buckets,
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
                // Anyone may ask: no text from runs or databases in any answer.
                show_messages: false,
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
            Ok(Ok(inputs)) => {
                // Answers say only that a shard is unreachable; why goes to the log.
                for shard in &inputs.queue {
                    if let Some(e) = &shard.error {
                        tracing::warn!(shard = shard.shard, "campaign queue shard unreadable: {e}");
                    }
                }
                Some(inputs)
            }
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
    front: Front,
}

impl Running {
    /// Stop accepting, let the workers finish the requests they hold, and join them.
    pub fn stop(self) {
        self.front.stop();
    }

    /// Why the server stopped accepting connections, once it has (say, out of descriptors
    /// for longer than a client timeout): the process must then exit so that systemd
    /// restarts it, instead of living on deaf.
    pub fn failure(&self) -> Option<String> {
        self.front.failure()
    }

    /// One request to the server's own `/healthz/live`: proves a worker answers (the
    /// watchdog's probe).
    pub fn probe(&self, timeout: Duration) -> bool {
        probe(self.addr, timeout)
    }
}

/// Bind and start the workers. A port in use is a configuration error naming the setting.
pub fn start(config: Config, runtime: tokio::runtime::Handle) -> anyhow::Result<Running> {
    let listener = bind(config.listen)?;
    let addr = listener.local_addr()?;
    let options = http::Options {
        workers: config.threads.max(1),
        max_connections: fitting_connections(config.max_connections),
        client_timeout: config.client_timeout,
    };
    let queue = {
        // The pools are created (lazily) on the runtime that will drive them.
        let _inside = runtime.enter();
        camp_queue::db::connect_if_configured(&config.queue)?
    };
    let front = Arc::new(Counters::default());
    let shared = Arc::new(Shared {
        config,
        runtime,
        cached: Mutex::new(None),
        connection: Mutex::new(None),
        stats: Mutex::new(Stats::default()),
        front: front.clone(),
        queue,
    });
    let (threads, max_connections) = (options.workers, options.max_connections);
    let front = Front::start(
        listener,
        options,
        front,
        Arc::new(move |request: &Request| handle(&shared, request)),
    )
    .map_err(|e| anyhow::anyhow!("cannot serve on {addr}: {e}"))?;
    tracing::info!(%addr, threads, max_connections, "healthcheck listening");
    Ok(Running { addr, front })
}

/// The connection cap, lowered to what the descriptor limit leaves beside the reserve.
fn fitting_connections(wanted: usize) -> usize {
    use nix::sys::resource::{Resource, getrlimit};
    let Ok((soft, _)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return wanted;
    };
    let room = usize::try_from(soft)
        .unwrap_or(usize::MAX)
        .saturating_sub(FD_RESERVE)
        .max(8);
    if wanted > room {
        tracing::warn!(
            "HEALTHCHECK_MAX_CONNECTIONS={wanted} does not fit the descriptor limit ({soft}, \
             {FD_RESERVE} kept for the rest): serving at most {room} connections"
        );
        room
    } else {
        wanted
    }
}

/// The listening socket (non-blocking: the front watches it).
fn bind(addr: SocketAddr) -> anyhow::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let setting = "`HEALTHCHECK_LISTEN`";
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_tcp_nodelay(true)?;
    socket.bind(&addr.into()).map_err(|e| {
        zakaz_core::error::config_error(format!("cannot listen on {addr} (setting {setting}): {e}"))
    })?;
    socket.listen(1024)?;
    Ok(socket.into())
}

fn handle(shared: &Shared, request: &Request) -> Response {
    let route = ROUTES
        .iter()
        .copied()
        .find(|r| *r == request.path)
        .unwrap_or("other");
    let mut response = match request.method.as_str() {
        "GET" | "HEAD" => {
            let (code, content_type, cached, body) = answer(shared, route);
            let mut response = Response::new(code, content_type, body);
            response.shared = cached;
            response
        }
        _ => Response::new(
            405,
            JSON,
            r#"{"error":"method not allowed: use GET or HEAD"}"#,
        ),
    };
    if response.code == 405 {
        response.headers.push(("Allow", "GET, HEAD"));
    }
    shared
        .stats
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .record(route, response.code, request.received.elapsed());
    response
}

const JSON: &str = "application/json";

/// An answer: its code, type, a cached part sent first, and the part made for this request.
type Answer = (u16, &'static str, Option<Arc<str>>, String);

fn answer(shared: &Shared, route: &'static str) -> Answer {
    let status = |ok: bool| if ok { 200 } else { 503 };
    match route {
        "/healthz/live" => {
            #[cfg(debug_assertions)]
            deaf_for_tests();
            (200, JSON, None, r#"{"status":"ok"}"#.to_owned())
        }
        "/healthz" => {
            let s = shared.snapshot();
            (
                status(s.report.clickhouse.reachable),
                JSON,
                None,
                render::healthz(&s.report),
            )
        }
        "/healthz/detailed" => {
            let s = shared.snapshot();
            (
                status(s.report.status == Verdict::Ok),
                JSON,
                Some(s.detailed.clone()),
                String::new(),
            )
        }
        "/healthz/freshness" => {
            let s = shared.snapshot();
            let (verdict, body) = render::freshness(&s.report);
            (status(verdict == Verdict::Ok), JSON, None, body)
        }
        "/metrics" => {
            let s = shared.snapshot();
            // The report's part was rendered with the snapshot; only the live counters are
            // written per request.
            let mut live = String::with_capacity(8 * 1024);
            shared
                .stats
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .render(&mut live);
            render::connection_metrics(
                &render::ConnectionStats {
                    open: shared.front.open.load(Ordering::Relaxed),
                    max: shared.front.max.load(Ordering::Relaxed),
                    evicted: shared.front.evicted.load(Ordering::Relaxed),
                    timed_out: shared.front.timed_out.load(Ordering::Relaxed),
                    rejected: shared.front.rejected.load(Ordering::Relaxed),
                    accept_errors: shared.front.accept_errors.load(Ordering::Relaxed),
                },
                &mut live,
            );
            (
                200,
                "text/plain; version=0.0.4; charset=utf-8",
                Some(s.metrics.clone()),
                live,
            )
        }
        "/" => {
            let s = shared.snapshot();
            (
                200,
                "text/html; charset=utf-8",
                Some(s.html.clone()),
                String::new(),
            )
        }
        _ => (404, JSON, None, r#"{"error":"not found"}"#.to_owned()),
    }
}

/// Debug builds only: with `ZAKAZ_TEST_DEAF` set, a worker that takes `/healthz/live` never
/// answers. The process lives on (it accepts, other routes answer while a worker is free),
/// deaf to the watchdog's probe: the end-to-end test sees systemd's watchdog restart it.
#[cfg(debug_assertions)]
fn deaf_for_tests() {
    if std::env::var_os("ZAKAZ_TEST_DEAF").is_some() {
        tracing::warn!("ZAKAZ_TEST_DEAF is set: this worker hangs on /healthz/live");
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
}

/// `GET /healthz/live` over a fresh connection; true on a 200.
pub fn probe(addr: SocketAddr, timeout: Duration) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&http::loopback(addr), timeout) else {
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

#[cfg(test)]
mod tests {
    use super::BUCKETS;

    #[test]
    fn each_bucket_label_is_its_bound_and_the_bounds_rise() {
        for (bound, label) in BUCKETS {
            assert_eq!(label.parse::<f64>().unwrap(), *bound, "{label}");
        }
        assert!(BUCKETS.windows(2).all(|w| w[0].0 < w[1].0));
    }
}

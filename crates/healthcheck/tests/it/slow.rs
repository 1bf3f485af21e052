//! Slow, idle and hostile clients against the server's bounds: a request has one deadline for
//! all of it (not one per read), open connections are capped (the oldest waiting one makes
//! room for a new one), the process keeps a fixed set of threads and its descriptors below
//! the unit's `LimitNOFILE=`, and when it can no longer accept it exits for systemd to restart
//! it. Pass/fail only: the numbers (latency under attack, throughput) are in
//! `examples/slow_clients.rs`.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use healthcheck::server::{DEFAULT_MAX_CONNECTIONS as CAP, FD_RESERVE as RESERVE};

use crate::{Answer, Binary, Env, repo_root};

/// Raise this process's soft descriptor limit to its hard one (the attack holds 1 000
/// sockets; a login shell's soft limit is often 1 024).
fn raise_own_fd_limit(at_least: u64) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
    }
    assert!(
        hard >= at_least,
        "the test needs {at_least} descriptors; the hard limit is {hard}"
    );
}

/// `LimitNOFILE=` of the committed healthcheck unit.
fn unit_limit_nofile() -> Option<u64> {
    let unit = std::fs::read_to_string(repo_root().join("systemd/healthcheck.service")).unwrap();
    unit.lines()
        .find_map(|l| l.strip_prefix("LimitNOFILE="))
        .map(|v| v.trim().parse().expect("LimitNOFILE= is a number"))
}

/// One GET over a fresh HTTP/1.0 connection, as a probe sends it; an error instead of a panic.
fn try_get(addr: SocketAddr, path: &str) -> std::io::Result<Answer> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(15)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let raw = String::from_utf8_lossy(&raw);
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status line in {raw:?}")))?;
    Ok(Answer {
        code,
        head: head.to_owned(),
        body: body.to_owned(),
    })
}

/// Send `first`, then `next(i)` every `every` until the server hangs up (or `give_up`
/// passes); how long the server took to hang up, and what it sent.
fn trickle(
    addr: SocketAddr,
    first: &[u8],
    next: impl Fn(usize) -> Vec<u8>,
    every: Duration,
    give_up: Duration,
) -> (Option<Duration>, String) {
    let started = Instant::now();
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(first).unwrap();
    s.set_read_timeout(Some(every)).unwrap();
    let mut got = Vec::new();
    let mut i = 0;
    while started.elapsed() < give_up {
        let mut buf = [0u8; 4096];
        match s.read(&mut buf) {
            Ok(0) => return (Some(started.elapsed()), lossy(&got)),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return (Some(started.elapsed()), lossy(&got)),
        }
        if s.write_all(&next(i)).is_err() {
            return (Some(started.elapsed()), lossy(&got));
        }
        i += 1;
    }
    (None, lossy(&got))
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Per-read timeouts never fire for a client that sends a little every 250 ms: the deadline
/// covers the whole request, head and body.
#[tokio::test(flavor = "multi_thread")]
async fn a_request_sent_a_line_at_a_time_is_cut_at_its_total_deadline() {
    let mut env = Env::new().await;
    env.seed_healthy().await;
    let mut cfg = env.config();
    cfg.cache = Duration::from_secs(60);
    cfg.client_timeout = Duration::from_secs(1);
    let addr = env.start(cfg);
    let every = Duration::from_millis(250);
    let give_up = Duration::from_secs(8);

    let head = std::thread::spawn(move || {
        trickle(
            addr,
            b"GET /healthz HTTP/1.1\r\nHost: x\r\n",
            |i| format!("X-Slow-{i}: y\r\n").into_bytes(),
            every,
            give_up,
        )
    });
    let body = std::thread::spawn(move || {
        trickle(
            addr,
            b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n",
            |_| b"x".to_vec(),
            every,
            give_up,
        )
    });
    for (what, (closed, got)) in [
        ("a head", head.join().unwrap()),
        ("a body", body.join().unwrap()),
    ] {
        let closed = closed.unwrap_or_else(|| {
            panic!("{what} sent a line at a time was still being read after {give_up:?}: {got:?}")
        });
        // 1 s deadline; the bound is generous for a loaded machine, the floor is not timing.
        assert!(
            closed >= Duration::from_millis(900) && closed <= Duration::from_secs(5),
            "{what}: the server hung up after {closed:?} (deadline 1 s)"
        );
        assert!(
            got.is_empty() || got.starts_with("HTTP/1.1 408 "),
            "{what}: an unfinished request is never answered but with a 408: {got:?}"
        );
    }
    assert_eq!(crate::get(addr, "/healthz").code, 200, "still serving");
}

/// What the attack did: connections opened in all, and how many were open at the end.
struct Attack {
    stop: Arc<AtomicBool>,
    opened: Arc<AtomicUsize>,
    thread: std::thread::JoinHandle<()>,
}

impl Attack {
    /// `n` clients on `addr`: half send a request head a header line every 2 s and never
    /// finish it, half connect and say nothing. Each one the server drops comes back.
    fn start(addr: SocketAddr, n: usize) -> Attack {
        let stop = Arc::new(AtomicBool::new(false));
        let opened = Arc::new(AtomicUsize::new(0));
        let (stop2, opened2) = (stop.clone(), opened.clone());
        let thread = std::thread::spawn(move || {
            let open = |slow: bool| -> Option<TcpStream> {
                let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
                opened2.fetch_add(1, Ordering::SeqCst);
                if slow {
                    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").ok()?;
                }
                s.set_nonblocking(true).ok()?;
                Some(s)
            };
            let mut clients: Vec<(bool, Option<TcpStream>)> =
                (0..n).map(|i| (i % 2 == 0, open(i % 2 == 0))).collect();
            let mut round = 0;
            while !stop2.load(Ordering::SeqCst) {
                let started = Instant::now();
                round += 1;
                for (slow, client) in &mut clients {
                    if stop2.load(Ordering::SeqCst) {
                        break;
                    }
                    let alive = match client {
                        Some(s) if *slow => s
                            .write_all(format!("X-Slow-{round}: y\r\n").as_bytes())
                            .is_ok(),
                        Some(s) => {
                            let mut buf = [0u8; 512];
                            matches!(s.read(&mut buf), Err(e) if e.kind() == ErrorKind::WouldBlock)
                        }
                        None => false,
                    };
                    if !alive {
                        *client = open(*slow);
                    }
                }
                while started.elapsed() < Duration::from_secs(2) && !stop2.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        });
        Attack {
            stop,
            opened,
            thread,
        }
    }

    fn stop(self) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap();
        self.opened.load(Ordering::SeqCst)
    }
}

/// 1 000 slow and idle clients against the real binary under the unit's descriptor limit:
/// it stays up, a probe is answered 200 every time while they are held, and its threads and
/// descriptors stay bounded by its fixed pool and its connection cap.
#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_slow_and_idle_clients_neither_starve_a_probe_nor_exhaust_the_process() {
    raise_own_fd_limit(2048);
    let env = Env::new().await;
    env.seed_healthy().await;
    // Without the directive a unit gets systemd's default soft limit, 1 024.
    let nofile = unit_limit_nofile().unwrap_or(1024);
    // The production settings: the default cap, the unit's limit.
    let mut server = Binary::start(&env, Some(nofile), &[]);
    let addr = server.addr;
    // The report is read once and cached (an hour): the attack never waits on ClickHouse.
    assert_eq!(try_get(addr, "/healthz").unwrap().code, 200);
    let base_threads = server.threads().unwrap();

    let attack = Attack::start(addr, 1000);
    let started = Instant::now();
    let (mut max_threads, mut max_fds, mut probes) = (base_threads, 0, 0);
    let mut slowest = Duration::ZERO;
    // Longer than two client timeouts: slow clients are cut (at the cap, or at their
    // deadline), come back and are cut again. No latency bound is asserted (a loaded machine
    // would make it flaky): every probe must be answered 200 while the attack goes on.
    while started.elapsed() < Duration::from_secs(12) {
        if let Some(status) = server.child.try_wait().unwrap() {
            panic!(
                "healthcheck exited ({status}) under slow clients: {}",
                server.log_text()
            );
        }
        max_threads = max_threads.max(server.threads().unwrap_or(0));
        max_fds = max_fds.max(server.descriptors().map_or(0, |d| d.len()));
        let path = if probes % 4 == 3 {
            "/healthz/detailed"
        } else {
            "/healthz"
        };
        let asked = Instant::now();
        match try_get(addr, path) {
            Ok(a) => assert_eq!(a.code, 200, "{path} under attack: {a:?}"),
            Err(e) => panic!(
                "{path} under attack after {:?}: {e}; log: {}",
                started.elapsed(),
                server.log_text()
            ),
        }
        slowest = slowest.max(asked.elapsed());
        probes += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    let held = server.descriptors().map_or(0, |d| d.len());
    let metrics = try_get(addr, "/metrics").unwrap().body;
    let opened = attack.stop();
    eprintln!(
        "{probes} probes answered, the slowest in {slowest:?}; threads {base_threads} → at most {max_threads}; at most \
         {max_fds} descriptors ({held} at the end); {opened} attacking connections; {}",
        metrics
            .lines()
            .filter(|l| l.starts_with("healthcheck_http_connections"))
            .collect::<Vec<_>>()
            .join("; ")
    );
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "exited at the end"
    );
    assert!(
        opened >= 1000,
        "the attack opened {opened} connections only"
    );
    // The attack was real: the server held about as many connections as it may.
    assert!(
        max_fds >= CAP / 2 && held >= CAP / 2,
        "at most {max_fds} descriptors open (at the end {held}): the slow clients were not held"
    );
    assert!(
        max_fds <= CAP + RESERVE,
        "{max_fds} descriptors open with a cap of {CAP} connections"
    );
    assert!(
        max_threads <= base_threads + 8,
        "threads grew from {base_threads} to {max_threads} with the clients"
    );
    assert!(probes >= 10, "only {probes} probes in 12 s");
    assert_eq!(
        try_get(addr, "/healthz").unwrap().code,
        200,
        "still serving"
    );
}

/// The committed unit gives the process the descriptors its connection cap needs.
#[test]
fn the_unit_gives_the_connection_cap_its_descriptors() {
    let nofile = unit_limit_nofile().expect("systemd/healthcheck.service sets LimitNOFILE=");
    let needed = CAP + RESERVE;
    assert!(
        nofile >= needed as u64,
        "LimitNOFILE={nofile} is below the cap and reserve ({needed})"
    );
}

/// The accept loop ending is fatal: when accepting fails for good (here: out of descriptors,
/// the limit lowered under the running process), the process logs why and exits 1, which
/// `Restart=on-failure` restarts (64 and 78 would not be).
#[tokio::test(flavor = "multi_thread")]
async fn when_accepting_fails_for_good_the_process_exits_1_saying_why() {
    let env = Env::new().await;
    env.seed_healthy().await;
    let mut server = Binary::start(&env, None, &[("HEALTHCHECK_CLIENT_TIMEOUT_SECONDS", "1")]);
    let addr = server.addr;
    assert_eq!(try_get(addr, "/healthz").unwrap().code, 200);
    // Once the probe's connection is closed, no new descriptor from here on: the lowest free
    // number is the limit.
    let mut open = server.descriptors().unwrap();
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let now = server.descriptors().unwrap();
        if now == open {
            break;
        }
        open = now;
    }
    let lowest_free = (0..).find(|n| !open.contains(n)).unwrap();
    let out = std::process::Command::new("prlimit")
        .args([
            "--pid",
            &server.pid().to_string(),
            &format!("--nofile={lowest_free}:{lowest_free}"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "prlimit: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A client arrives; accept() cannot give it a descriptor.
    let _client = TcpStream::connect(addr).unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "still running 30 s after accept() began to fail: {}",
            server.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let log = server.log_text();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains("stopped accepting connections")
            && log.contains("exiting so that it is restarted")
            && log.contains("Too many open files"),
        "{log}"
    );
}

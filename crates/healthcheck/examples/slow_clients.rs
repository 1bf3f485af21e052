//! What slow and idle clients cost a running healthcheck: probe latency (a fresh HTTP/1.0
//! connection per `GET /healthz`, as a load balancer probes) and keep-alive throughput, first
//! undisturbed, then while CLIENTS connections are held open (half send a header line every
//! 2 s and never finish, half say nothing; every one the server drops comes back at once).
//! Usage: `slow_clients ADDR [CLIENTS] [SECONDS]` (1000, 10 s per phase). The numbers belong in
//! docs/performance.md; the pass/fail properties are tests/it/slow.rs.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

fn main() {
    let mut args = std::env::args().skip(1);
    let addr: SocketAddr = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:8080".to_owned())
        .parse()
        .expect("ADDR is IP:PORT");
    let clients: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(1000);
    let seconds: u64 = args.next().and_then(|n| n.parse().ok()).unwrap_or(10);
    let phase = Duration::from_secs(seconds);
    raise_fd_limit();

    println!(
        "{:<22} {:>7} {:>9} {:>9} {:>9} {:>8} {:>12}",
        "phase", "probes", "p50 ms", "p99 ms", "max ms", "failed", "keep-alive/s"
    );
    report(
        "undisturbed",
        &probes(addr, phase / 2),
        throughput(addr, phase / 2),
    );
    let attack = Attack::start(addr, clients);
    // Let the attack fill the server's connections first.
    std::thread::sleep(Duration::from_secs(2));
    let p = probes(addr, phase / 2);
    let t = throughput(addr, phase / 2);
    let opened = attack.stop();
    report(&format!("{clients} slow/idle"), &p, t);
    println!("(the attack opened {opened} connections in all)");
}

fn report(phase: &str, probes: &Probes, per_second: f64) {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mut sorted = probes.latencies.clone();
    sorted.sort();
    let at = |q: f64| {
        sorted
            .get(((sorted.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or_default()
    };
    println!(
        "{:<22} {:>7} {:>9.2} {:>9.2} {:>9.2} {:>8} {:>12.0}",
        phase,
        sorted.len(),
        ms(at(0.5)),
        ms(at(0.99)),
        ms(at(1.0)),
        probes.failed,
        per_second
    );
}

struct Probes {
    latencies: Vec<Duration>,
    failed: usize,
}

/// Fresh-connection probes one after another for `d`.
fn probes(addr: SocketAddr, d: Duration) -> Probes {
    let started = Instant::now();
    let mut out = Probes {
        latencies: Vec::new(),
        failed: 0,
    };
    while started.elapsed() < d {
        let asked = Instant::now();
        match probe(addr) {
            Ok(true) => out.latencies.push(asked.elapsed()),
            _ => out.failed += 1,
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    out
}

fn probe(addr: SocketAddr) -> std::io::Result<bool> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(b"GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer)?;
    Ok(answer.starts_with(b"HTTP/1.1 200"))
}

/// Requests per second of 4 keep-alive clients asking `/healthz` for `d`.
fn throughput(addr: SocketAddr, d: Duration) -> f64 {
    let done = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let done = done.clone();
            std::thread::spawn(move || {
                let Ok(stream) = TcpStream::connect(addr) else {
                    return;
                };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                let mut reader = BufReader::new(stream);
                let mut line = String::new();
                while started.elapsed() < d {
                    let request = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n";
                    if reader.get_mut().write_all(request).is_err() {
                        return;
                    }
                    let mut length = 0;
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0; length];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

struct Attack {
    stop: Arc<AtomicBool>,
    opened: Arc<AtomicUsize>,
    thread: std::thread::JoinHandle<()>,
}

impl Attack {
    fn start(addr: SocketAddr, n: usize) -> Attack {
        let stop = Arc::new(AtomicBool::new(false));
        let opened = Arc::new(AtomicUsize::new(0));
        let (stop2, opened2) = (stop.clone(), opened.clone());
        let thread = std::thread::spawn(move || {
            let open = |slow: bool| -> Option<TcpStream> {
                let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
                opened2.fetch_add(1, Ordering::Relaxed);
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
        let _ = self.thread.join();
        self.opened.load(Ordering::Relaxed)
    }
}

fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
    {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

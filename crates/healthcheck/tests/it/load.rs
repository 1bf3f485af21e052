//! Many clients, slow and hostile ones among them, and a long run of requests: the server
//! neither stalls nor grows. Bounded in count and time, loopback only.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::{Binary, Env, get};

#[tokio::test(flavor = "multi_thread")]
async fn two_hundred_clients_beside_slow_loris_and_garbage_all_get_answers() {
    let mut env = Env::new().await;
    env.seed_healthy().await;
    let mut cfg = env.config();
    cfg.cache = Duration::from_secs(60);
    cfg.client_timeout = Duration::from_millis(500);
    let addr = env.start(cfg);

    // 50 slow-loris connections: half a request line, then silence.
    let loris: Vec<TcpStream> = (0..50)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                .unwrap();
            s
        })
        .collect();
    // 20 connections of garbage.
    let garbage: Vec<TcpStream> = (0..20)
        .map(|i| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(format!("\u{1}\u{2}garbage {i} \u{7f}\r\n\r\n").as_bytes())
                .unwrap();
            s
        })
        .collect();

    let clients: Vec<_> = (0..200)
        .map(|_| {
            std::thread::spawn(move || {
                (0..5)
                    .map(|_| get(addr, "/healthz").code)
                    .collect::<Vec<u16>>()
            })
        })
        .collect();
    let codes: Vec<u16> = clients
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    assert_eq!(codes.len(), 1000);
    assert!(codes.iter().all(|c| *c == 200), "{codes:?}");

    for mut s in garbage {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer:?}");
    }
    // The server hangs up on every slow client (after its client timeout).
    for mut s in loris {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut rest = Vec::new();
        let closed = s.read_to_end(&mut rest).is_ok();
        assert!(closed, "a slow client was not timed out");
        assert!(
            !String::from_utf8_lossy(&rest).contains("200 OK"),
            "half a request is never answered"
        );
    }
    assert_eq!(get(addr, "/healthz").code, 200, "still serving");
}

/// A keep-alive HTTP/1.1 client: one connection, many requests.
struct KeepAlive {
    reader: BufReader<TcpStream>,
}

impl KeepAlive {
    fn connect(addr: SocketAddr) -> KeepAlive {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        KeepAlive {
            reader: BufReader::new(stream),
        }
    }

    fn get(&mut self, path: &str) -> u16 {
        // One write: a request split over several segments waits for delayed ACKs.
        let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
        self.reader.get_mut().write_all(request.as_bytes()).unwrap();
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        let code = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        let mut length = 0;
        loop {
            line.clear();
            self.reader.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body).unwrap();
        code
    }
}

/// A 503 (ClickHouse unreachable here) is an answer like any other: the kept-alive
/// connection stays open for the next request.
#[tokio::test(flavor = "multi_thread")]
async fn a_kept_alive_connection_outlives_503_answers() {
    let mut env = Env::new().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut args = env.db.args.clone();
    args.clickhouse_url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let mut cfg = env.config_with(args);
    cfg.cache = Duration::from_secs(60);
    let addr = env.start(cfg);
    let mut client = KeepAlive::connect(addr);
    for path in ["/healthz", "/healthz/detailed", "/healthz", "/healthz/live"] {
        let expected = if path == "/healthz/live" { 200 } else { 503 };
        assert_eq!(client.get(path), expected, "{path}");
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

/// The real binary (its own process, so its memory is its own) over 100 000 requests, every
/// one of them answered in full with the 200 a healthy system earns on each route.
#[tokio::test(flavor = "multi_thread")]
async fn memory_stays_flat_over_100_000_requests() {
    let env = Env::new().await;
    env.seed_healthy().await;
    let server = Binary::start(&env, None, &[]);
    let addr = server.addr;

    let round = |requests: usize| {
        let threads: Vec<_> = (0..4)
            .map(|i| {
                let path = ["/healthz", "/metrics", "/healthz/detailed", "/"][i];
                std::thread::spawn(move || {
                    let mut client = KeepAlive::connect(addr);
                    let wrong: Vec<u16> = (0..requests / 4)
                        .map(|_| client.get(path))
                        .filter(|code| *code != 200)
                        .collect();
                    (path, wrong)
                })
            })
            .collect();
        for t in threads {
            let (path, wrong) = t.join().unwrap();
            assert!(
                wrong.is_empty(),
                "{path}: {} answer(s) were not 200, e.g. {:?}",
                wrong.len(),
                &wrong[..wrong.len().min(5)]
            );
        }
    };
    round(20_000);
    let warm = rss_kib(server.pid());
    round(80_000);
    let after = rss_kib(server.pid());
    assert!(
        after <= warm + 4 * 1024,
        "RSS grew from {warm} KiB to {after} KiB over 80 000 requests"
    );
}

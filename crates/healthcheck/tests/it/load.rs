//! Many clients, slow and hostile ones among them, and a long run of requests: the server
//! neither stalls nor grows. Bounded in count and time, loopback only.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::{Env, get};

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

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

/// The real binary (its own process, so its memory is its own) over 100 000 requests.
#[tokio::test(flavor = "multi_thread")]
async fn memory_stays_flat_over_100_000_requests() {
    let env = Env::new().await;
    env.seed_healthy().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut child = env
        .db
        .command(env!("CARGO_BIN_EXE_healthcheck"))
        .env("HEALTHCHECK_LISTEN", addr.to_string())
        .env("HEALTHCHECK_CACHE_SECONDS", "3600")
        .env("SYSTEMD_UNIT_DIRS", &env.units.path)
        .env("LOG_LEVEL", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut up = false;
    for _ in 0..100 {
        if TcpStream::connect(addr).is_ok() {
            up = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(up, "healthcheck did not start listening");

    let round = |requests: usize| {
        let threads: Vec<_> = (0..4)
            .map(|i| {
                let path = ["/healthz", "/metrics", "/healthz/detailed", "/"][i];
                std::thread::spawn(move || {
                    let mut client = KeepAlive::connect(addr);
                    (0..requests / 4).all(|_| client.get(path) != 0)
                })
            })
            .collect();
        assert!(threads.into_iter().all(|t| t.join().unwrap()));
    };
    round(20_000);
    let warm = rss_kib(child.id());
    round(80_000);
    let after = rss_kib(child.id());
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        after <= warm + 4 * 1024,
        "RSS grew from {warm} KiB to {after} KiB over 80 000 requests"
    );
}

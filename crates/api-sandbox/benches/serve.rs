//! How fast the sandbox serves QTickets order pages: it must never be the bottleneck of a
//! loader benchmark. `CLIENTS` (default 4) clients at once, each keyset-paging its own id
//! range as the loader's concurrent backfill does. Baseline, in the same process and through
//! the same request path (route, bearer check, request log, fault matching): the same
//! clients asking for an empty page (`id >` the newest id), so the ratio shows what building
//! pages costs. A warm-up, then `BENCH_REPS` (default 5) rounds of each, alternating which
//! goes first; median (min–max), each printed as `bench sandbox <figure> <median>
//! (<min>–<max>) n=<n>`.
//!
//! `cargo bench -p api-sandbox --bench serve` (scripts/bench.sh runs it); `ORDERS_PER_DAY`
//! and `DAYS` size the history (default 3 500 × 30 ≈ 105 000 orders).

use std::time::Instant;

use api_sandbox::{SandboxConfig, Server};
use serde_json::{Value, json};
use zakaz_core::bench::{env_u32, figure, ratio, reps};

#[derive(serde::Deserialize)]
struct IdPage {
    data: Vec<IdOnly>,
}

#[derive(serde::Deserialize)]
struct IdOnly {
    id: u64,
}

/// One order page (only the ids parsed: the number measures the server, not a client's JSON
/// tree) and its size.
fn page(http: &reqwest::blocking::Client, base: &str, body: &Value) -> (Vec<u64>, usize) {
    let bytes = http
        .get(format!("{base}/qtickets/api/rest/v1/orders"))
        .bearer_auth("sandbox-token")
        .json(body)
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    let page: IdPage = serde_json::from_slice(&bytes).unwrap();
    (page.data.into_iter().map(|o| o.id).collect(), bytes.len())
}

fn after(id: u64, before: u64) -> Value {
    json!({"where": [
        {"column": "id", "operator": ">", "value": id},
        {"column": "id", "operator": "<", "value": before}
    ], "orderBy": {"id": "asc"}, "page": 1})
}

/// `clients` threads keyset-paging disjoint id ranges of `lo..hi`: (pages, orders, bytes).
fn all_pages(base: &str, clients: u64, lo: u64, hi: u64) -> (u64, usize, usize) {
    let step = (hi - lo).div_ceil(clients);
    let threads: Vec<_> = (0..clients)
        .map(|i| {
            let base = base.to_owned();
            std::thread::spawn(move || {
                let http = reqwest::blocking::Client::new();
                let (mut last, before) = (lo + i * step, (lo + (i + 1) * step + 1).min(hi));
                let (mut pages, mut orders, mut bytes) = (0u64, 0usize, 0usize);
                loop {
                    let (ids, n) = page(&http, &base, &after(last, before));
                    pages += 1;
                    bytes += n;
                    let Some(id) = ids.last() else {
                        return (pages, orders, bytes);
                    };
                    orders += ids.len();
                    last = *id;
                }
            })
        })
        .collect();
    threads
        .into_iter()
        .map(|t| t.join().unwrap())
        .fold((0, 0, 0), |a, b| (a.0 + b.0, a.1 + b.1, a.2 + b.2))
}

/// `clients` threads asking `per_client` times for the empty page after `newest`.
fn empty_pages(base: &str, clients: u64, newest: u64, per_client: u64) -> u64 {
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let base = base.to_owned();
            std::thread::spawn(move || {
                let http = reqwest::blocking::Client::new();
                for _ in 0..per_client {
                    let (ids, _) = page(&http, &base, &after(newest, u64::MAX));
                    assert!(ids.is_empty());
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    clients * per_client
}

fn main() {
    let config = SandboxConfig {
        orders_per_day: env_u32("ORDERS_PER_DAY", 3_500),
        days: env_u32("DAYS", 30),
        future_days: 0,
        events: 50,
        now: Some("2026-11-25T12:00:00+03:00".into()),
        ..Default::default()
    };
    let clients = u64::from(env_u32("CLIENTS", 4));
    let started = Instant::now();
    let server = Server::start_local(config).unwrap();
    let generation = started.elapsed();
    let orders = server.sandbox().data.qtickets.orders.len();
    let base = server.base_url.clone();
    let http = reqwest::blocking::Client::new();
    // Id-filtered: the sandbox, like the real service, refuses an unfiltered listing.
    let (newest, _) = page(
        &http,
        &base,
        &json!({"where": [{"column": "id", "operator": ">", "value": 0}], "orderBy": {"id": "desc"}, "page": 1}),
    );
    let (first, _) = page(&http, &base, &after(0, u64::MAX));
    let (lo, hi) = (first[0] - 1, newest[0] + 1);

    // Warm-up of both.
    all_pages(&base, clients, lo, hi);
    empty_pages(&base, clients, newest[0], 200);

    let (mut baseline, mut pages_per_s, mut orders_per_s, mut mb_per_s) =
        (vec![], vec![], vec![], vec![]);
    let n = reps(5);
    println!(
        "api-sandbox serve: {orders} orders (generated in {:.2} s), {clients} clients at once; {n} repetitions, the two sides in rotating order",
        generation.as_secs_f64()
    );
    for i in 0..n {
        let mut rounds: Vec<Box<dyn FnMut()>> = vec![
            Box::new(|| {
                let t = Instant::now();
                let n = empty_pages(&base, clients, newest[0], 1_000);
                baseline.push(n as f64 / t.elapsed().as_secs_f64());
            }),
            Box::new(|| {
                let t = Instant::now();
                let (pages, seen, bytes) = all_pages(&base, clients, lo, hi);
                let secs = t.elapsed().as_secs_f64();
                assert_eq!(seen, orders);
                pages_per_s.push(pages as f64 / secs);
                orders_per_s.push(seen as f64 / secs);
                mb_per_s.push(bytes as f64 / secs / 1e6);
            }),
        ];
        if i % 2 == 1 {
            rounds.reverse();
        }
        for mut round in rounds {
            round();
        }
    }
    const NAME: &str = "sandbox";
    figure(NAME, "empty_pages_per_s", &baseline, 0);
    figure(NAME, "order_pages_per_s", &pages_per_s, 0);
    figure(NAME, "orders_per_s", &orders_per_s, 0);
    figure(NAME, "mb_per_s", &mb_per_s, 1);
    ratio(NAME, "order_vs_empty_pages", &pages_per_s, &baseline, 2);
}

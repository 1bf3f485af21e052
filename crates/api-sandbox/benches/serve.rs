//! How fast the sandbox serves QTickets order pages: it must never be the bottleneck of a
//! loader benchmark. Baseline, in the same process: the cheapest round trip through the same
//! HTTP stack (`GET /_sandbox/state`), so the ratio shows what page building costs.
//!
//! `cargo bench -p api-sandbox --bench serve` (scripts/bench.sh runs it); `ORDERS_PER_DAY`
//! and `DAYS` size the history (default 3 500 × 30 ≈ 105 000 orders).

use std::time::Instant;

use api_sandbox::{SandboxConfig, Server};
use serde_json::json;

#[derive(serde::Deserialize)]
struct IdPage {
    data: Vec<IdOnly>,
}

#[derive(serde::Deserialize)]
struct IdOnly {
    id: u64,
}

fn env_u32(key: &str, default: u32) -> u32 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
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
    let started = Instant::now();
    let server = Server::start_local(config).unwrap();
    let generation = started.elapsed();
    let orders = server.sandbox().data.qtickets.orders.len();
    let http = reqwest::blocking::Client::new();
    let base = server.base_url.clone();

    // Baseline: trivial round trips.
    let n = 2_000;
    let t = Instant::now();
    for _ in 0..n {
        http.get(format!("{base}/_sandbox/state"))
            .send()
            .unwrap()
            .bytes()
            .unwrap();
    }
    let baseline_rps = f64::from(n) / t.elapsed().as_secs_f64();

    // Keyset paging through every order, as a loader does.
    let t = Instant::now();
    let mut last_id = 0u64;
    let mut pages = 0u32;
    let mut seen = 0usize;
    let mut bytes = 0usize;
    loop {
        let body = json!({"where": [{"column": "id", "operator": ">", "value": last_id}], "orderBy": {"id": "asc"}, "page": 1});
        let resp = http
            .get(format!("{base}/qtickets/api/rest/v1/orders"))
            .bearer_auth("sandbox-token")
            .json(&body)
            .send()
            .unwrap()
            .bytes()
            .unwrap();
        bytes += resp.len();
        // Only the ids are read: the number measures the server, not a client's JSON tree.
        let page: IdPage = serde_json::from_slice(&resp).unwrap();
        pages += 1;
        if page.data.is_empty() {
            break;
        }
        seen += page.data.len();
        last_id = page.data.last().unwrap().id;
        assert!(pages < 1_000_000);
    }
    let elapsed = t.elapsed().as_secs_f64();
    assert_eq!(seen, orders);
    let pages_per_s = f64::from(pages) / elapsed;
    println!("api-sandbox serve benchmark");
    println!(
        "  orders generated:        {orders} in {:.2} s",
        generation.as_secs_f64()
    );
    println!("  baseline round trips:    {baseline_rps:.0} req/s (GET /_sandbox/state)");
    println!(
        "  order pages (50 each):   {pages_per_s:.0} pages/s = {:.0} orders/s, {:.1} MB/s",
        seen as f64 / elapsed,
        bytes as f64 / elapsed / 1e6
    );
    println!(
        "  ratio pages/baseline:    {:.2}",
        pages_per_s / baseline_rps
    );
}

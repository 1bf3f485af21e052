//! An incremental run's cost must follow what it touched, not the length of the staged
//! history: the release loader after 1 month vs after 12 months of backfilled orders (same
//! orders per day), each then running 15-minute increments. Prints the median time of an
//! incremental run for both and their ratio (the goal: within 1.5×).
//!
//! `scripts/bench.sh incremental` builds the release binary and runs this.

use std::process::Command;
use std::time::{Duration, Instant};

use api_sandbox::{SandboxConfig, Server};
use zakaz_core::testing::TestDb;

const ROUNDS: usize = 7;

fn run(server: &Server, db: &TestDb, days: u32) -> Duration {
    let mut cmd = Command::new(zakaz_core::bench::release_binary("ingest-qtickets"));
    cmd.env(
        "QTICKETS_BASE_URL",
        format!("{}/qtickets/api/rest/v1", server.base_url),
    )
    .env("QTICKETS_TOKEN", "sandbox-token")
    .env("QTICKETS_BACKFILL_DAYS", (days + 1).to_string())
    .env("QTICKETS_INVENTORY", "false")
    .env("LOG_LEVEL", "warn");
    for (k, v) in db.env() {
        cmd.env(k, v);
    }
    let t = Instant::now();
    let status = cmd.status().unwrap();
    assert!(status.success(), "the loader failed");
    t.elapsed()
}

fn median(mut v: Vec<Duration>) -> (Duration, Duration, Duration) {
    v.sort();
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

/// Backfill `days` of history, then time `ROUNDS` incremental runs 15 minutes apart (after
/// one untimed warm-up increment).
async fn history(days: u32, orders_per_day: u32) -> (usize, Vec<Duration>) {
    let server = Server::start_local(SandboxConfig {
        orders_per_day,
        days,
        future_days: 1,
        events: 50,
        ..Default::default()
    })
    .unwrap();
    let (db, _ch) = TestDb::migrated().await;
    run(&server, &db, days);
    let staged = server.sandbox().qtickets_orders().len();
    let mut times = Vec::new();
    for round in 0..=ROUNDS {
        server.sandbox().advance(15 * 60);
        let t = run(&server, &db, days);
        if round > 0 {
            times.push(t);
        }
    }
    (staged, times)
}

#[tokio::main]
async fn main() {
    let per_day = std::env::var("ORDERS_PER_DAY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(600);
    println!("ingest-qtickets incremental runs vs staged history ({per_day} orders/day)");
    let mut medians = Vec::new();
    for days in [30, 365] {
        let (staged, times) = history(days, per_day).await;
        let (med, lo, hi) = median(times);
        println!(
            "  {days:>3} days staged ({staged} orders): incremental run median {:.3} s (spread {:.3}–{:.3} s, {ROUNDS} runs)",
            med.as_secs_f64(),
            lo.as_secs_f64(),
            hi.as_secs_f64()
        );
        medians.push(med);
    }
    println!(
        "  ratio 12 months / 1 month: {:.2} (goal: at most 1.5)",
        medians[1].as_secs_f64() / medians[0].as_secs_f64()
    );
}

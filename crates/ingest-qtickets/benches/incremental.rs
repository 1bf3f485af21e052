//! An incremental run's cost must follow what it touched, not the length of the staged
//! history: the release loader after 1, 12 and 24 months of backfilled orders (same orders
//! per day), each history with its own sandbox and database, then 15-minute increments,
//! the three histories interleaved round by round in a rotating order (at least 9 rounds).
//! Prints each history's incremental run and the per-round ratios to the 1-month one (the
//! goal: within 1.5×), as `bench incremental <figure> <median> (<min>–<max>) n=<n>`.
//!
//! `scripts/bench.sh incremental` builds the release binary and runs this.

use std::process::Command;
use std::time::Duration;

use serde_json::json;
use zakaz_core::bench::{SandboxProcess, figure, ratio, release_binary, run_measuring_peak};
use zakaz_core::testing::TestDb;

/// The sandbox's clock now (the loader acts as of the same instant): what a zero advance
/// answers.
fn sandbox_now(sandbox: &SandboxProcess) -> String {
    let answer = zakaz_core::testing::post_json(
        &format!("{}/_sandbox/advance", sandbox.base_url),
        r#"{"seconds": 0}"#,
    )
    .unwrap();
    let state: serde_json::Value = serde_json::from_str(&answer).unwrap();
    state["now"].as_str().unwrap().to_owned()
}

fn run(sandbox: &SandboxProcess, db: &TestDb, days: u32) -> Duration {
    let mut cmd = Command::new(release_binary("ingest-qtickets"));
    cmd.env_clear()
        .arg(format!("--now={}", sandbox_now(sandbox)))
        .env(
            "QTICKETS_BASE_URL",
            format!("{}/qtickets/api/rest/v1", sandbox.base_url),
        )
        .env("QTICKETS_TOKEN", "sandbox-token")
        .env("QTICKETS_BACKFILL_DAYS", (days + 1).to_string())
        .env("QTICKETS_INVENTORY", "false")
        .env("LOG_LEVEL", "warn");
    for (k, v) in db.env() {
        cmd.env(k, v);
    }
    let (status, _, time) = run_measuring_peak(cmd);
    assert!(status.success(), "the loader failed");
    time
}

/// One history: its sandbox (in its own process) and database, backfilled.
struct History {
    days: u32,
    sandbox: SandboxProcess,
    db: TestDb,
    staged: u32,
}

async fn history(days: u32, orders_per_day: u32) -> History {
    let sandbox = SandboxProcess::start(&[
        "--orders-per-day",
        &orders_per_day.to_string(),
        "--days",
        &days.to_string(),
        "--future-days",
        "1",
        "--events",
        "50",
        "--now=2026-11-25T12:00:00+03:00",
    ]);
    let (db, _ch) = TestDb::migrated().await;
    run(&sandbox, &db, days);
    let staged: u32 = db
        .query("SELECT count() FROM {db}.stg_qtickets_orders FINAL")
        .trim()
        .parse()
        .unwrap();
    History {
        days,
        sandbox,
        db,
        staged,
    }
}

/// One incremental run of `h`, 15 minutes after its last.
fn increment(h: &History) -> f64 {
    h.sandbox.control("/advance", &json!({"minutes": 15}));
    run(&h.sandbox, &h.db, h.days).as_secs_f64()
}

const NAME: &str = "incremental";

#[tokio::main]
async fn main() {
    let per_day = zakaz_core::bench::env_u32("ORDERS_PER_DAY", 600);
    // At least 9 rounds: the medians of short runs on a shared machine need them.
    let rounds = zakaz_core::bench::reps(9).max(9);
    let mut histories = Vec::new();
    for days in [30, 365, 730] {
        histories.push(history(days, per_day).await);
    }
    println!(
        "ingest-qtickets incremental runs vs staged history ({per_day} orders/day): {}; one untimed increment each, then {rounds} rounds, the histories in rotating order",
        histories
            .iter()
            .map(|h| format!("{} days ({} orders)", h.days, h.staged))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for h in &histories {
        increment(h);
    }
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); histories.len()];
    for round in 0..rounds {
        for i in zakaz_core::bench::rotation(round, histories.len()) {
            times[i].push(increment(&histories[i]));
        }
    }
    figure(NAME, "run_1_month_s", &times[0], 3);
    figure(NAME, "run_12_months_s", &times[1], 3);
    figure(NAME, "run_24_months_s", &times[2], 3);
    ratio(NAME, "ratio_12_vs_1_month", &times[1], &times[0], 2);
    ratio(NAME, "ratio_24_vs_1_month", &times[2], &times[0], 2);
}

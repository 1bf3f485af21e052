//! An incremental run's cost must follow what it touched, not the length of the staged
//! history: the release loader after 1 month vs after 12 months of backfilled orders (same
//! orders per day), each then running 15-minute increments. Prints the median time of an
//! incremental run for both and their ratio (the goal: within 1.5×).
//!
//! `scripts/bench.sh incremental` builds the release binary and runs this.

use std::process::Command;
use std::time::Duration;

use serde_json::json;
use zakaz_core::bench::{SandboxProcess, Spread, release_binary, run_measuring_peak};
use zakaz_core::testing::TestDb;

const ROUNDS: usize = 7;

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

/// Backfill `days` of history, then time `ROUNDS` incremental runs 15 minutes apart (after
/// one untimed warm-up increment). The sandbox runs in its own process.
async fn history(days: u32, orders_per_day: u32) -> (u32, Vec<f64>) {
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
    let mut times = Vec::new();
    for round in 0..=ROUNDS {
        sandbox.control("/advance", &json!({"minutes": 15}));
        let t = run(&sandbox, &db, days);
        if round > 0 {
            times.push(t.as_secs_f64());
        }
    }
    (staged, times)
}

#[tokio::main]
async fn main() {
    let per_day = zakaz_core::bench::env_u32("ORDERS_PER_DAY", 600);
    println!("ingest-qtickets incremental runs vs staged history ({per_day} orders/day)");
    let mut medians = Vec::new();
    for days in [30, 365] {
        let (staged, times) = history(days, per_day).await;
        let spread = Spread::of(&times);
        println!(
            "  {days:>3} days staged ({staged} orders): incremental run {} s",
            spread.show(3)
        );
        medians.push(spread.median);
    }
    println!(
        "  ratio 12 months / 1 month (medians): {:.2} (goal: at most 1.5)",
        medians[1] / medians[0]
    );
}

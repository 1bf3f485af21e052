//! VK Ads: banner-day rows per second of the release loader (listings, statistics, UTM,
//! ClickHouse), against a sandbox in its own process, as a ratio to a plain bulk insert of the
//! same rows measured in the same run. A warm-up run first (token, caches), then `BENCH_REPS`
//! repetitions of each, interleaved; medians and spread printed.
//!
//! `scripts/bench.sh vk` builds the release binaries and runs this. `VK_PLANS` (default 50)
//! × 2 groups × `VK_BANNERS` (default 50) banners over `DAYS` (default 30) days.

use std::process::Command;
use std::time::Instant;

use ingest_vk::FactRow;
use serde_json::json;
use zakaz_core::bench::{SandboxProcess, Spread, release_binary, reps, run_measuring_peak};
use zakaz_core::testing::{TempDir, TestDb};

const NOW: &str = "2026-11-25T12:00:00+03:00";

fn env_u32(key: &str, default: u32) -> u32 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn loader(sandbox: &SandboxProcess, db: &TestDb, state: &TempDir, days: u32) -> Command {
    let mut cmd = Command::new(release_binary("ingest-vk"));
    cmd.env_clear()
        .arg(format!("--now={NOW}"))
        .args(["--days", &days.to_string()])
        .env("VK_ADS_BASE_URL", format!("{}/vk", sandbox.base_url))
        .env("VK_ADS_CLIENT_ID", "sandbox-client")
        .env("VK_ADS_CLIENT_SECRET", "sandbox-secret")
        .env("VK_ADS_STATE_DIR", &state.path)
        .env("LOG_LEVEL", "warn");
    for (k, v) in db.env() {
        cmd.env(k, v);
    }
    cmd
}

#[tokio::main]
async fn main() {
    let (plans, banners, days) = (
        env_u32("VK_PLANS", 50),
        env_u32("VK_BANNERS", 50),
        env_u32("DAYS", 30),
    );
    let sandbox = SandboxProcess::start(&[
        "--vk-campaigns",
        &plans.to_string(),
        "--vk-banners-per-group",
        &banners.to_string(),
        &format!("--now={NOW}"),
    ]);
    // The sandbox's per-second limit would measure the pacing, not the loader.
    sandbox.control("/config", &json!({"vk_rps_limit": 1_000_000}));
    let state = TempDir::new("vk-bench");
    let (warm_db, _) = TestDb::migrated().await;
    let (status, _, _) = run_measuring_peak(loader(&sandbox, &warm_db, &state, 1));
    assert!(status.success(), "the warm-up run failed");

    let n = reps(3);
    let (mut loader_rates, mut bulk_rates, mut peaks) = (Vec::new(), Vec::new(), Vec::new());
    let mut rows_total = 0;
    for _ in 0..n {
        let (db, ch) = TestDb::migrated().await;
        let (status, peak_kb, time) = run_measuring_peak(loader(&sandbox, &db, &state, days));
        assert!(status.success(), "the loader failed");
        let rows: Vec<FactRow> = ch
            .client()
            .query("SELECT ?fields FROM fact_vk_ads_daily FINAL")
            .fetch_all()
            .await
            .unwrap();
        rows_total = rows.len();
        assert_eq!(
            rows_total as u32,
            plans * 2 * banners * days,
            "every banner-day"
        );
        loader_rates.push(rows_total as f64 / time.as_secs_f64());
        peaks.push(peak_kb as f64 / 1024.0);
        // Baseline, interleaved with the loader runs: the same rows, one plain insert.
        let (_plain_db, plain) = TestDb::migrated().await;
        let t = Instant::now();
        plain.insert_all("fact_vk_ads_daily", &rows).await.unwrap();
        bulk_rates.push(rows_total as f64 / t.elapsed().as_secs_f64());
    }
    let (l, b) = (Spread::of(&loader_rates), Spread::of(&bulk_rates));
    println!(
        "ingest-vk benchmark: {rows_total} banner-day rows ({} banners × {days} days)",
        plans * 2 * banners
    );
    println!(
        "  loader (API → ClickHouse): {} rows/s, peak RSS {} MiB",
        l.show(0),
        Spread::of(&peaks).show(1)
    );
    println!("  plain bulk insert:         {} rows/s", b.show(0));
    println!("  ratio loader/bulk (median): {:.3}", l.median / b.median);
}

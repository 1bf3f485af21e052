//! Yandex Direct: one large report (≈100 MB of TSV by default) through the release loader —
//! rows/s and MB/s of TSV parsed into ClickHouse, and its peak memory (the report is streamed,
//! never held whole) — against a sandbox in its own process. Baselines measured in the same
//! run, interleaved: fetching the same bytes without parsing, and a plain bulk insert of the
//! same rows. A warm-up first, then `BENCH_REPS` repetitions; medians and spread printed.
//!
//! `scripts/bench.sh direct` builds the release binaries and runs this. `DIRECT_CAMPAIGNS`
//! (default 700, × 4 ads) over 365 days.

use std::process::Command;
use std::time::Instant;

use ingest_direct::FactRow;
use serde_json::json;
use zakaz_core::bench::{SandboxProcess, Spread, release_binary, reps, run_measuring_peak};
use zakaz_core::testing::TestDb;

const NOW: &str = "2026-11-25T12:00:00+03:00";
const FROM: &str = "2025-11-25";
const TO: &str = "2026-11-24";

fn loader(sandbox: &SandboxProcess, db: &TestDb, from: &str) -> Command {
    let mut cmd = Command::new(release_binary("ingest-direct"));
    cmd.env_clear()
        .arg(format!("--now={NOW}"))
        .args(["--since", from, "--until", TO])
        .env(
            "DIRECT_API_URL",
            format!("{}/direct/json/v5", sandbox.base_url),
        )
        .env("DIRECT_TOKEN", "sandbox-token")
        .env("DIRECT_LOGINS", "client-a")
        .env("DIRECT_CHUNK_DAYS", "366")
        .env("LOG_LEVEL", "warn");
    for (k, v) in db.env() {
        cmd.env(k, v);
    }
    cmd
}

/// The same report, downloaded and counted, not parsed.
async fn fetch_only(sandbox: &SandboxProcess, n: usize) -> u64 {
    let body = json!({"params": {
        "SelectionCriteria": {"DateFrom": FROM, "DateTo": TO},
        "FieldNames": ingest_direct::report::FIELDS,
        "ReportName": format!("fetch-only {n}"), "ReportType": "CUSTOM_REPORT",
        "DateRangeType": "CUSTOM_DATE", "Format": "TSV", "IncludeVAT": "NO", "IncludeDiscount": "NO"
    }});
    let resp = reqwest::Client::new()
        .post(format!("{}/direct/json/v5/reports", sandbox.base_url))
        .bearer_auth("sandbox-token")
        .header("Client-Login", "client-a")
        .header("processingMode", "auto")
        .header("returnMoneyInMicros", "false")
        .header("skipReportHeader", "true")
        .header("skipReportSummary", "true")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut resp = resp;
    let mut bytes = 0u64;
    while let Some(chunk) = resp.chunk().await.unwrap() {
        bytes += chunk.len() as u64;
    }
    bytes
}

#[tokio::main]
async fn main() {
    let campaigns = std::env::var("DIRECT_CAMPAIGNS").unwrap_or_else(|_| "700".into());
    let sandbox = SandboxProcess::start(&[
        "--direct-logins",
        "1",
        "--direct-campaigns",
        &campaigns,
        &format!("--now={NOW}"),
    ]);
    // Online at once: the offline queue's waits are the service's, not the loader's.
    sandbox.control("/config", &json!({"direct_online_days": 400}));
    let (warm_db, _) = TestDb::migrated().await;
    let (status, _, _) = run_measuring_peak(loader(&sandbox, &warm_db, TO));
    assert!(status.success(), "the warm-up run failed");

    let n = reps(3);
    let (mut rates, mut fetch_rates, mut bulk_rates, mut peaks) = (vec![], vec![], vec![], vec![]);
    let (mut rows_total, mut bytes) = (0usize, 0u64);
    for i in 0..n {
        // Order varies between repetitions, so no side always runs on a warmer cache.
        let fetch_first = i % 2 == 1;
        if fetch_first {
            let t = Instant::now();
            bytes = fetch_only(&sandbox, i * 2).await;
            fetch_rates.push(bytes as f64 / 1e6 / t.elapsed().as_secs_f64());
        }
        let (db, ch) = TestDb::migrated().await;
        let (status, peak_kb, time) = run_measuring_peak(loader(&sandbox, &db, FROM));
        assert!(status.success(), "the loader failed");
        let rows: Vec<FactRow> = ch
            .client()
            .query("SELECT ?fields FROM fact_direct_daily FINAL")
            .fetch_all()
            .await
            .unwrap();
        rows_total = rows.len();
        rates.push(rows_total as f64 / time.as_secs_f64());
        peaks.push(peak_kb as f64 / 1024.0);
        if !fetch_first {
            let t = Instant::now();
            bytes = fetch_only(&sandbox, i * 2 + 1).await;
            fetch_rates.push(bytes as f64 / 1e6 / t.elapsed().as_secs_f64());
        }
        let (_plain_db, plain) = TestDb::migrated().await;
        let t = Instant::now();
        plain.insert_all("fact_direct_daily", &rows).await.unwrap();
        bulk_rates.push(rows_total as f64 / t.elapsed().as_secs_f64());
    }
    let mb = bytes as f64 / 1e6;
    let (l, f, b) = (
        Spread::of(&rates),
        Spread::of(&fetch_rates),
        Spread::of(&bulk_rates),
    );
    let loader_mb: Vec<f64> = rates.iter().map(|r| r / rows_total as f64 * mb).collect();
    println!("ingest-direct benchmark: one report of {rows_total} rows, {mb:.1} MB of TSV");
    println!(
        "  loader (TSV → ClickHouse): {} rows/s, {} MB/s",
        l.show(0),
        Spread::of(&loader_mb).show(1)
    );
    println!(
        "  loader peak RSS:           {} MiB",
        Spread::of(&peaks).show(1)
    );
    println!("  fetch only (same bytes):   {} MB/s", f.show(1));
    println!("  plain bulk insert:         {} rows/s", b.show(0));
    println!("  ratio loader/bulk (median): {:.3}", l.median / b.median);
    println!(
        "  ratio loader/fetch MB/s:    {:.3}",
        Spread::of(&loader_mb).median / f.median
    );
}

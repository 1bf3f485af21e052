//! Yandex Direct: one large report (≈100 MB of TSV by default) through the release loader —
//! rows/s and MB/s of TSV parsed into ClickHouse, and its peak memory (the report is streamed,
//! never held whole) — against a sandbox in its own process. Baselines measured in the same
//! run, interleaved: fetching the same bytes without parsing, and a plain bulk insert of the
//! same rows (those of the warm-up load). A warm-up of each first, then `BENCH_REPS` (default
//! 5) repetitions, each running the three sides in an order rotated by one every repetition;
//! each figure printed as `bench direct <figure> <median> (<min>–<max>) n=<n>`.
//!
//! `scripts/bench.sh direct` builds the release binaries and runs this. `DIRECT_CAMPAIGNS`
//! (default 700, × 4 ads) over 365 days.

use std::process::Command;
use std::time::Instant;

use ingest_direct::FactRow;
use serde_json::json;
use zakaz_core::bench::{SandboxProcess, figure, ratio, release_binary, reps, run_measuring_peak};
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

/// The same report (as the loader asks it, in date order), downloaded and counted, not parsed:
/// its bytes, and the seconds until its first byte.
async fn fetch_only(sandbox: &SandboxProcess, n: usize) -> (u64, f64) {
    let asked = Instant::now();
    let body = json!({"params": {
        "SelectionCriteria": {"DateFrom": FROM, "DateTo": TO},
        "FieldNames": ingest_direct::report::FIELDS,
        "ReportName": format!("fetch-only {n}"), "ReportType": "CUSTOM_REPORT",
        "DateRangeType": "CUSTOM_DATE", "Format": "TSV", "IncludeVAT": "NO", "IncludeDiscount": "NO",
        "OrderBy": [{"Field": "Date", "SortOrder": "ASCENDING"}]
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
    let mut first_byte = None;
    let mut bytes = 0u64;
    while let Some(chunk) = resp.chunk().await.unwrap() {
        first_byte.get_or_insert_with(|| asked.elapsed().as_secs_f64());
        bytes += chunk.len() as u64;
    }
    (bytes, first_byte.unwrap_or_default())
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
    // A warm-up of each side; the warm-up load's rows are what the bulk baseline inserts.
    let (warm_db, warm) = TestDb::migrated().await;
    let (status, _, _) = run_measuring_peak(loader(&sandbox, &warm_db, FROM));
    assert!(status.success(), "the warm-up run failed");
    let warm_rows: Vec<FactRow> = warm
        .client()
        .query("SELECT ?fields FROM fact_direct_daily FINAL")
        .fetch_all()
        .await
        .unwrap();
    drop(warm_db);
    let (bytes, _) = fetch_only(&sandbox, 0).await;
    let (rows_total, mb) = (warm_rows.len(), bytes as f64 / 1e6);

    let n = reps(5);
    println!(
        "ingest-direct: one report of {rows_total} rows, {mb:.1} MB of TSV; {n} repetitions, sides in rotating order"
    );
    let (mut rates, mut fetch_rates, mut bulk_rates, mut peaks) = (vec![], vec![], vec![], vec![]);
    // Seconds: the fetch-only side's first byte, whole download, and the bulk insert.
    let (mut first_byte_s, mut fetch_s, mut bulk_s) = (vec![], vec![], vec![]);
    for rep in 0..n {
        for side in zakaz_core::bench::rotation(rep, 3) {
            match side {
                0 => {
                    let (db, ch) = TestDb::migrated().await;
                    let (status, peak_kb, time) = run_measuring_peak(loader(&sandbox, &db, FROM));
                    assert!(status.success(), "the loader failed");
                    let count: u64 = ch
                        .client()
                        .query("SELECT count() FROM fact_direct_daily FINAL")
                        .fetch_one()
                        .await
                        .unwrap();
                    assert_eq!(count as usize, rows_total, "every row");
                    rates.push(mb / time.as_secs_f64());
                    peaks.push(peak_kb as f64 / 1024.0);
                }
                1 => {
                    let t = Instant::now();
                    let (got, first_byte) = fetch_only(&sandbox, rep + 1).await;
                    assert_eq!(got, bytes, "the same report");
                    fetch_s.push(t.elapsed().as_secs_f64());
                    fetch_rates.push(mb / t.elapsed().as_secs_f64());
                    first_byte_s.push(first_byte);
                }
                _ => {
                    let (_plain_db, plain) = TestDb::migrated().await;
                    let t = Instant::now();
                    plain
                        .insert_all("fact_direct_daily", &warm_rows)
                        .await
                        .unwrap();
                    bulk_s.push(t.elapsed().as_secs_f64());
                    bulk_rates.push(mb / t.elapsed().as_secs_f64());
                }
            }
        }
    }
    // Rates in MB of TSV per second on every side (rows/s = MB/s × rows per MB).
    const NAME: &str = "direct";
    let rows_per_mb = rows_total as f64 / mb;
    figure(NAME, "loader_mb_per_s", &rates, 1);
    figure(
        NAME,
        "loader_rows_per_s",
        &rates.iter().map(|r| r * rows_per_mb).collect::<Vec<_>>(),
        0,
    );
    figure(NAME, "fetch_only_mb_per_s", &fetch_rates, 1);
    figure(
        NAME,
        "bulk_rows_per_s",
        &bulk_rates
            .iter()
            .map(|r| r * rows_per_mb)
            .collect::<Vec<_>>(),
        0,
    );
    ratio(NAME, "loader_vs_fetch", &rates, &fetch_rates, 3);
    ratio(NAME, "loader_vs_bulk", &rates, &bulk_rates, 3);
    figure(NAME, "peak_rss_mib", &peaks, 1);
    // A loader with one insert cannot beat waiting for the first byte and then ClickHouse's
    // own insert of the rows (the bulk side's, one insert sorted by the table's key: the
    // cheapest single insert of them). The loader's inserts, several at once, can.
    figure(NAME, "fetch_first_byte_s", &first_byte_s, 2);
    let ceiling: Vec<f64> = fetch_s
        .iter()
        .zip(first_byte_s.iter().zip(&bulk_s))
        .map(|(fetch, (first, bulk))| fetch / (first + bulk))
        .collect();
    figure(NAME, "loader_vs_fetch_ceiling", &ceiling, 3);
}

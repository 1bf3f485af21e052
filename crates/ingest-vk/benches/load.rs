//! VK Ads: banner-day rows per second of the release loader (listings, statistics, UTM,
//! ClickHouse), against a sandbox in its own process. Baselines measured in the same run,
//! interleaved: a fetch-only client making the same requests one after another (what the
//! sandbox and HTTP cost, so the rest is the loader's), and a plain bulk insert of the same
//! rows. A warm-up run first (token, caches), then `BENCH_REPS` repetitions of each; medians
//! and spread printed.
//!
//! `scripts/bench.sh vk` builds the release binaries and runs this. `VK_PLANS` (default 50)
//! × 2 groups × `VK_BANNERS` (default 50) banners over `DAYS` (default 30) days.

use std::process::Command;
use std::time::Instant;

use ingest_vk::FactRow;
use serde_json::json;
use zakaz_core::bench::{
    SandboxProcess, Spread, env_u32, release_binary, reps, run_measuring_peak,
};
use zakaz_core::testing::{TempDir, TestDb};

const NOW: &str = "2026-11-25T12:00:00+03:00";

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

/// The loader's requests — three listings 50 at a time, statistics in batches of 200 ids —
/// made one after another and read, not parsed or stored. Returns the bytes read.
async fn fetch_only(sandbox: &SandboxProcess, days: u32) -> u64 {
    let http = reqwest::Client::new();
    let base = format!("{}/vk/api/v2", sandbox.base_url);
    let token: serde_json::Value = http
        .post(format!("{base}/oauth2/token.json"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "sandbox-client"),
            ("client_secret", "sandbox-secret"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["access_token"].as_str().unwrap().to_owned();
    let get = |url: String| {
        let (http, token) = (http.clone(), token.clone());
        async move {
            let resp = http.get(url).bearer_auth(token).send().await.unwrap();
            assert_eq!(resp.status(), 200);
            resp.bytes().await.unwrap()
        }
    };
    let mut bytes = 0u64;
    let mut banner_ids = Vec::new();
    for (path, fields) in [
        ("ad_plans.json", "id,name,status"),
        ("ad_groups.json", "id,name,status,ad_plan_id,utm,enable_utm"),
        ("banners.json", "id,name,status,ad_group_id,urls"),
    ] {
        let mut offset = 0;
        loop {
            let page = get(format!(
                "{base}/{path}?fields={fields}&limit=50&offset={offset}"
            ))
            .await;
            bytes += page.len() as u64;
            let v: serde_json::Value = serde_json::from_slice(&page).unwrap();
            let items = v["items"].as_array().unwrap();
            if path == "banners.json" {
                banner_ids.extend(items.iter().map(|b| b["id"].as_u64().unwrap()));
            }
            offset += items.len();
            if items.is_empty() || offset as u64 >= v["count"].as_u64().unwrap() {
                break;
            }
        }
    }
    let to = chrono::NaiveDate::from_ymd_opt(2026, 11, 24).unwrap();
    let from = to - chrono::Days::new(u64::from(days - 1));
    for batch in banner_ids.chunks(200) {
        let ids: Vec<String> = batch.iter().map(ToString::to_string).collect();
        bytes += get(format!(
            "{base}/statistics/banners/day.json?id={}&date_from={from}&date_to={to}&metrics=base",
            ids.join(",")
        ))
        .await
        .len() as u64;
    }
    bytes
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
    let mut fetch_rates = Vec::new();
    let mut rows_total = 0;
    for i in 0..n {
        // The fetch-only client runs before the loader in odd repetitions, after it in even.
        let fetch = async || {
            let t = Instant::now();
            fetch_only(&sandbox, days).await;
            (plans * 2 * banners * days) as f64 / t.elapsed().as_secs_f64()
        };
        if i % 2 == 1 {
            fetch_rates.push(fetch().await);
        }
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
        if i % 2 == 0 {
            fetch_rates.push(fetch().await);
        }
        // Baseline, interleaved with the loader runs: the same rows, one plain insert.
        let (_plain_db, plain) = TestDb::migrated().await;
        let t = Instant::now();
        plain.insert_all("fact_vk_ads_daily", &rows).await.unwrap();
        bulk_rates.push(rows_total as f64 / t.elapsed().as_secs_f64());
    }
    let (l, b, f) = (
        Spread::of(&loader_rates),
        Spread::of(&bulk_rates),
        Spread::of(&fetch_rates),
    );
    println!(
        "ingest-vk benchmark: {rows_total} banner-day rows ({} banners × {days} days)",
        plans * 2 * banners
    );
    println!(
        "  loader (API → ClickHouse): {} rows/s, peak RSS {} MiB",
        l.show(0),
        Spread::of(&peaks).show(1)
    );
    println!("  fetch only (same requests): {} rows/s", f.show(0));
    println!("  plain bulk insert:         {} rows/s", b.show(0));
    println!("  ratio loader/bulk (median): {:.3}", l.median / b.median);
    println!("  ratio loader/fetch (median): {:.3}", l.median / f.median);
}

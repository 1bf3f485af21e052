//! VK Ads: banner-day rows per second of the release loader (listings, statistics, UTM,
//! ClickHouse), against a sandbox in its own process. Baselines measured in the same run,
//! interleaved: a fetch-only client making the same requests one after another (what the
//! sandbox and HTTP cost, so the rest is the loader's), and a plain bulk insert of the same
//! rows (those of the warm-up load). A warm-up run of each first (token, caches), then
//! `BENCH_REPS` (default 5) repetitions, each running the three sides in an order rotated by
//! one every repetition; each figure printed as `bench vk <figure> <median> (<min>–<max>) n=<n>`.
//!
//! `scripts/bench.sh vk` builds the release binaries and runs this. `VK_PLANS` (default 50)
//! × 2 groups × `VK_BANNERS` (default 50) banners over `DAYS` (default 30) days.

use std::process::Command;
use std::time::Instant;

use ingest_vk::FactRow;
use serde_json::json;
use zakaz_core::bench::{
    SandboxProcess, env_u32, figure, ratio, release_binary, reps, run_measuring_peak,
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

/// A token for the fetch-only client, minted once: VK keeps at most 5 live tokens per client
/// (the sandbox too), so a client that minted one per repetition would be refused.
async fn fetch_token(sandbox: &SandboxProcess) -> String {
    let token: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/vk/api/v2/oauth2/token.json", sandbox.base_url))
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
    token["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("a token: {token}"))
        .to_owned()
}

/// The loader's requests — three listings 50 at a time, statistics in batches of 200 ids —
/// made one after another and read, not parsed or stored. Returns the bytes read.
async fn fetch_only(sandbox: &SandboxProcess, token: &str, days: u32) -> u64 {
    let http = reqwest::Client::new();
    let base = format!("{}/vk/api/v2", sandbox.base_url);
    let token = token.to_owned();
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
    let (warm_db, warm) = TestDb::migrated().await;
    let (status, _, _) = run_measuring_peak(loader(&sandbox, &warm_db, &state, days));
    assert!(status.success(), "the warm-up run failed");

    // The warm-up load's rows are what the bulk baseline inserts (every load writes the same).
    let warm_rows: Vec<FactRow> = warm
        .client()
        .query("SELECT ?fields FROM fact_vk_ads_daily FINAL")
        .fetch_all()
        .await
        .unwrap();
    drop(warm_db);
    let expected = (plans * 2 * banners * days) as usize;
    assert_eq!(warm_rows.len(), expected, "every banner-day");
    let token = fetch_token(&sandbox).await;
    fetch_only(&sandbox, &token, days).await;

    let n = reps(5);
    println!(
        "ingest-vk: {expected} banner-day rows ({} banners × {days} days); {n} repetitions, sides in rotating order",
        plans * 2 * banners
    );
    let (mut loader_rates, mut bulk_rates, mut peaks) = (Vec::new(), Vec::new(), Vec::new());
    let mut fetch_rates = Vec::new();
    for rep in 0..n {
        for side in zakaz_core::bench::rotation(rep, 3) {
            match side {
                0 => {
                    let (db, ch) = TestDb::migrated().await;
                    let (status, peak_kb, time) =
                        run_measuring_peak(loader(&sandbox, &db, &state, days));
                    assert!(status.success(), "the loader failed");
                    let count: u64 = ch
                        .client()
                        .query("SELECT count() FROM fact_vk_ads_daily FINAL")
                        .fetch_one()
                        .await
                        .unwrap();
                    assert_eq!(count as usize, expected, "every banner-day");
                    loader_rates.push(expected as f64 / time.as_secs_f64());
                    peaks.push(peak_kb as f64 / 1024.0);
                }
                1 => {
                    let t = Instant::now();
                    fetch_only(&sandbox, &token, days).await;
                    fetch_rates.push(expected as f64 / t.elapsed().as_secs_f64());
                }
                _ => {
                    // The same rows, one plain insert.
                    let (_plain_db, plain) = TestDb::migrated().await;
                    let t = Instant::now();
                    plain
                        .insert_all("fact_vk_ads_daily", &warm_rows)
                        .await
                        .unwrap();
                    bulk_rates.push(expected as f64 / t.elapsed().as_secs_f64());
                }
            }
        }
    }
    const NAME: &str = "vk";
    figure(NAME, "loader_rows_per_s", &loader_rates, 0);
    figure(NAME, "fetch_only_rows_per_s", &fetch_rates, 0);
    figure(NAME, "bulk_rows_per_s", &bulk_rates, 0);
    ratio(NAME, "loader_vs_fetch", &loader_rates, &fetch_rates, 3);
    ratio(NAME, "loader_vs_bulk", &loader_rates, &bulk_rates, 3);
    figure(NAME, "peak_rss_mib", &peaks, 1);
}

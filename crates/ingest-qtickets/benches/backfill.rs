//! Backfill of ≈100 000 orders by the release loader, against a release sandbox in its own
//! process. From the same run, interleaved with the loader's repetitions (their order
//! alternating):
//! - a fetch-only client at the same concurrency against the same sandbox — the same id
//!   ranges keyset-paged at once, pages read and their ids parsed, nothing transformed or
//!   stored — so that "loader cost" is what the loader adds to fetching;
//! - a plain bulk insert of the very rows the loader stages (those of the warm-up run), into a
//!   fresh database, including
//!   the merges (`OPTIMIZE … FINAL`) that the loader's `FINAL` reads pay for;
//! - and, against a sandbox answering every order page 20 ms late (a far-away API), the
//!   loader at concurrency 1 and 4.
//!
//! A warm-up run first; `BENCH_REPS` (default 5) repetitions, each running the three sides in
//! an order rotated by one every repetition; median (min–max) and the per-repetition ratios,
//! each printed as `bench qtickets <figure> <median> (<min>–<max>) n=<n>`.
//! `scripts/bench.sh qtickets` rebuilds the release binaries and runs this.

use std::process::Command;
use std::time::Instant;

use ingest_qtickets::model::{OrderRow, TicketRow};
use serde_json::{Value, json};
use zakaz_core::bench::{
    CpuMeter, SandboxProcess, env_u32, figure, ratio, release_binary, reps, run_measuring_peak,
};
use zakaz_core::testing::TestDb;

const NOW: &str = "2026-11-25T12:00:00+03:00";

/// The release loader pointed at `sandbox` and `db`, backfilling everything.
fn loader(sandbox: &SandboxProcess, db: &TestDb, concurrency: u32) -> Command {
    let mut cmd = Command::new(release_binary("ingest-qtickets"));
    cmd.env_clear()
        .arg(format!("--now={NOW}"))
        .env(
            "QTICKETS_BASE_URL",
            format!("{}/qtickets/api/rest/v1", sandbox.base_url),
        )
        .env("QTICKETS_TOKEN", "sandbox-token")
        .env("QTICKETS_BACKFILL_DAYS", "40")
        .env("QTICKETS_INVENTORY", "false")
        .env("QTICKETS_CONCURRENCY", concurrency.to_string())
        .env("LOG_LEVEL", "warn");
    for (k, v) in db.env() {
        cmd.env(k, v);
    }
    cmd
}

#[derive(serde::Deserialize)]
struct IdPage {
    data: Vec<IdOnly>,
}

#[derive(serde::Deserialize)]
struct IdOnly {
    id: u64,
}

async fn page(http: &reqwest::Client, base: &str, body: Value) -> (Vec<u64>, usize) {
    let bytes = http
        .get(format!("{base}/qtickets/api/rest/v1/orders"))
        .bearer_auth("sandbox-token")
        .json(&body)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let page: IdPage = serde_json::from_slice(&bytes).unwrap();
    (page.data.into_iter().map(|o| o.id).collect(), bytes.len())
}

/// Every order, fetched as the loader fetches a backfill: the id span split into
/// `concurrency` ranges keyset-paged at once. Returns (orders, bytes).
async fn fetch_only(sandbox: &SandboxProcess, concurrency: u64) -> (usize, usize) {
    let http = reqwest::Client::new();
    let base = sandbox.base_url.clone();
    // Id-filtered (the sandbox, like the real service, refuses an unfiltered listing).
    let (newest, _) = page(
        &http,
        &base,
        json!({"where": [{"column": "id", "operator": ">", "value": 0}], "orderBy": {"id": "desc"}, "page": 1}),
    )
    .await;
    let (first, _) = page(
        &http,
        &base,
        json!({"where": [{"column": "id", "operator": ">", "value": 0}], "orderBy": {"id": "asc"}, "page": 1}),
    )
    .await;
    let (lo, hi) = (first[0] - 1, newest[0] + 1);
    let step = (hi - lo).div_ceil(concurrency);
    let mut ranges = tokio::task::JoinSet::new();
    for i in 0..concurrency {
        let (http, base) = (http.clone(), base.clone());
        let (mut after, before) = (lo + i * step, (lo + (i + 1) * step + 1).min(hi));
        ranges.spawn(async move {
            let (mut orders, mut bytes) = (0, 0);
            loop {
                let (ids, n) = page(
                    &http,
                    &base,
                    json!({"where": [
                        {"column": "id", "operator": ">", "value": after},
                        {"column": "id", "operator": "<", "value": before}
                    ], "orderBy": {"id": "asc"}, "page": 1}),
                )
                .await;
                bytes += n;
                let Some(last) = ids.last() else {
                    return (orders, bytes);
                };
                orders += ids.len();
                after = *last;
            }
        });
    }
    let (mut orders, mut bytes) = (0, 0);
    while let Some(r) = ranges.join_next().await {
        let (o, b) = r.unwrap();
        orders += o;
        bytes += b;
    }
    (orders, bytes)
}

/// The rows the loader staged into `ch`'s database (deduplicated).
async fn staged(ch: &zakaz_core::ch::Ch) -> (Vec<OrderRow>, Vec<TicketRow>) {
    let orders: Vec<OrderRow> = ch
        .client()
        .query("SELECT ?fields FROM stg_qtickets_orders FINAL")
        .fetch_all()
        .await
        .unwrap();
    let tickets: Vec<TicketRow> = ch
        .client()
        .query("SELECT ?fields FROM stg_qtickets_tickets FINAL")
        .fetch_all()
        .await
        .unwrap();
    (orders, tickets)
}

const NAME: &str = "qtickets";

#[tokio::main]
async fn main() {
    let n = reps(5);
    let sandbox = SandboxProcess::start(&[
        "--orders-per-day",
        &env_u32("ORDERS_PER_DAY", 3_500).to_string(),
        "--days",
        &env_u32("DAYS", 30).to_string(),
        "--future-days",
        "0",
        "--events",
        "50",
        &format!("--now={NOW}"),
    ]);
    // A warm-up of each side; the warm-up load's staging is what the bulk baseline inserts
    // (the same rows every load stages: the sandbox does not move between runs).
    let (warm_db, warm) = TestDb::migrated().await;
    assert!(
        run_measuring_peak(loader(&sandbox, &warm_db, 4))
            .0
            .success(),
        "warm-up"
    );
    let (orders, tickets) = staged(&warm).await;
    drop(warm_db);
    let (fetched, bytes) = fetch_only(&sandbox, 4).await;
    assert_eq!(fetched, orders.len(), "every order staged");
    println!(
        "ingest-qtickets backfill: {} orders, {} tickets, {:.1} MB of pages; {n} repetitions, sides in rotating order",
        orders.len(),
        tickets.len(),
        bytes as f64 / 1e6
    );

    let (mut loader_rates, mut fetch_rates, mut bulk_rates, mut peaks) =
        (vec![], vec![], vec![], vec![]);
    // Cores kept busy (loader or client, sandbox, ClickHouse) by each side.
    let (mut loader_busy, mut fetch_busy) = (vec![], vec![]);
    for rep in 0..n {
        for side in zakaz_core::bench::rotation(rep, 3) {
            match side {
                0 => {
                    let (db, ch) = TestDb::migrated().await;
                    let meter = CpuMeter::start();
                    let (status, peak_kb, time) = run_measuring_peak(loader(&sandbox, &db, 4));
                    loader_busy.push(meter.busy_cores());
                    assert!(status.success(), "the loader failed");
                    let count: u64 = ch
                        .client()
                        .query("SELECT count() FROM stg_qtickets_orders FINAL")
                        .fetch_one()
                        .await
                        .unwrap();
                    assert_eq!(count as usize, orders.len(), "every order staged");
                    loader_rates.push(orders.len() as f64 / time.as_secs_f64());
                    peaks.push(peak_kb as f64 / 1024.0);
                }
                1 => {
                    let (t, meter) = (Instant::now(), CpuMeter::start());
                    let (n, _) = fetch_only(&sandbox, 4).await;
                    fetch_busy.push(meter.busy_cores());
                    assert_eq!(n, orders.len());
                    fetch_rates.push(orders.len() as f64 / t.elapsed().as_secs_f64());
                }
                _ => {
                    // The same rows, plainly, merged as the loader's FINAL reads need them.
                    let (_plain_db, plain) = TestDb::migrated().await;
                    let t = Instant::now();
                    plain
                        .insert_all("stg_qtickets_orders", &orders)
                        .await
                        .unwrap();
                    plain
                        .insert_all("stg_qtickets_tickets", &tickets)
                        .await
                        .unwrap();
                    plain
                        .execute("OPTIMIZE TABLE stg_qtickets_orders FINAL")
                        .await
                        .unwrap();
                    plain
                        .execute("OPTIMIZE TABLE stg_qtickets_tickets FINAL")
                        .await
                        .unwrap();
                    bulk_rates.push(orders.len() as f64 / t.elapsed().as_secs_f64());
                }
            }
        }
    }
    figure(NAME, "loader_orders_per_s", &loader_rates, 0);
    figure(NAME, "fetch_only_orders_per_s", &fetch_rates, 0);
    figure(NAME, "bulk_merged_orders_per_s", &bulk_rates, 0);
    ratio(NAME, "loader_vs_fetch", &loader_rates, &fetch_rates, 3);
    ratio(NAME, "loader_vs_bulk", &loader_rates, &bulk_rates, 3);
    figure(NAME, "peak_rss_mib", &peaks, 1);
    figure(NAME, "loader_busy_cores", &loader_busy, 2);
    figure(NAME, "fetch_only_busy_cores", &fetch_busy, 2);

    // A far-away API: every order page 20 ms late. Concurrency 1 and 4, interleaved.
    let far = SandboxProcess::start(&[
        "--orders-per-day",
        "1000",
        "--days",
        "30",
        "--future-days",
        "0",
        "--events",
        "50",
        &format!("--now={NOW}"),
    ]);
    far.control(
        "/faults",
        &json!({"route": "/qtickets/api/rest/v1/orders", "delay_ms": 20}),
    );
    let (far_orders, _) = fetch_only(&far, 4).await;
    println!("far-away API: every order page 20 ms late, {far_orders} orders");
    let mut rates: [Vec<f64>; 2] = [vec![], vec![]];
    for rep in 0..n {
        for which in zakaz_core::bench::rotation(rep, 2) {
            let concurrency = [1, 4][which];
            let (db, _) = TestDb::migrated().await;
            let (status, _, time) = run_measuring_peak(loader(&far, &db, concurrency));
            assert!(status.success());
            rates[which].push(far_orders as f64 / time.as_secs_f64());
        }
    }
    figure(NAME, "far_c1_orders_per_s", &rates[0], 0);
    figure(NAME, "far_c4_orders_per_s", &rates[1], 0);
    ratio(NAME, "far_c4_vs_c1", &rates[1], &rates[0], 2);
}

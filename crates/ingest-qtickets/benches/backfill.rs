//! Backfill of ≈100 000 orders by the release loader, against a release sandbox in its own
//! process. From the same run, interleaved with the loader's repetitions (their order
//! alternating):
//! - a fetch-only client at the same concurrency against the same sandbox — the same id
//!   ranges keyset-paged at once, pages read and their ids parsed, nothing transformed or
//!   stored — so that "loader cost" is what the loader adds to fetching;
//! - a plain bulk insert of the very rows the loader staged, into a fresh database, including
//!   the merges (`OPTIMIZE … FINAL`) that the loader's `FINAL` reads pay for;
//! - and, against a sandbox answering every order page 20 ms late (a far-away API), the
//!   loader at concurrency 1 and 4.
//!
//! A warm-up run first; `BENCH_REPS` (default 3) repetitions of each; median (min–max).
//! `scripts/bench.sh qtickets` rebuilds the release binaries and runs this.

use std::process::Command;
use std::time::Instant;

use ingest_qtickets::model::{OrderRow, TicketRow};
use serde_json::{Value, json};
use zakaz_core::bench::{
    SandboxProcess, Spread, env_u32, release_binary, reps, run_measuring_peak,
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
    let (newest, _) = page(&http, &base, json!({"orderBy": {"id": "desc"}, "page": 1})).await;
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

#[tokio::main]
async fn main() {
    let n = reps(3);
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
    let (warm_db, _) = TestDb::migrated().await;
    assert!(
        run_measuring_peak(loader(&sandbox, &warm_db, 4))
            .0
            .success(),
        "warm-up"
    );
    drop(warm_db);

    let (mut loader_rates, mut fetch_rates, mut bulk_rates, mut peaks) =
        (vec![], vec![], vec![], vec![]);
    let (mut orders_total, mut tickets_total, mut mb) = (0, 0, 0.0);
    for i in 0..n {
        let fetch = async || {
            let t = Instant::now();
            let (orders, bytes) = fetch_only(&sandbox, 4).await;
            (orders, bytes, t.elapsed().as_secs_f64())
        };
        let mut fetched = None;
        if i % 2 == 1 {
            fetched = Some(fetch().await);
        }
        let (db, ch) = TestDb::migrated().await;
        let (status, peak_kb, time) = run_measuring_peak(loader(&sandbox, &db, 4));
        assert!(status.success(), "the loader failed");
        if fetched.is_none() {
            fetched = Some(fetch().await);
        }
        let (orders, bytes, fetch_secs) = fetched.unwrap();
        let staged: Vec<OrderRow> = ch
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
        assert_eq!(staged.len(), orders, "every order staged");
        (orders_total, tickets_total, mb) = (orders, tickets.len(), bytes as f64 / 1e6);
        loader_rates.push(orders as f64 / time.as_secs_f64());
        fetch_rates.push(orders as f64 / fetch_secs);
        peaks.push(peak_kb as f64 / 1024.0);
        // The same rows, plainly, merged as the loader's FINAL reads need them.
        let (_plain_db, plain) = TestDb::migrated().await;
        let t = Instant::now();
        plain
            .insert_all("stg_qtickets_orders", &staged)
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
        bulk_rates.push(orders as f64 / t.elapsed().as_secs_f64());
    }
    let (l, f, b) = (
        Spread::of(&loader_rates),
        Spread::of(&fetch_rates),
        Spread::of(&bulk_rates),
    );
    println!(
        "ingest-qtickets backfill benchmark: {orders_total} orders, {tickets_total} tickets, {mb:.1} MB of pages"
    );
    println!(
        "  loader (API → facts), concurrency 4: {} orders/s, peak RSS {} MiB",
        l.show(0),
        Spread::of(&peaks).show(1)
    );
    println!(
        "  fetch only, concurrency 4:           {} orders/s",
        f.show(0)
    );
    println!(
        "  plain bulk insert + merges:          {} orders/s",
        b.show(0)
    );
    println!(
        "  ratio loader/fetch (median):         {:.3}",
        l.median / f.median
    );
    println!(
        "  ratio loader/bulk (median):          {:.3}",
        l.median / b.median
    );

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
    let mut rates: [Vec<f64>; 2] = [vec![], vec![]];
    for i in 0..n {
        let order = if i % 2 == 0 { [0, 1] } else { [1, 0] };
        for which in order {
            let concurrency = [1, 4][which];
            let (db, _) = TestDb::migrated().await;
            let (status, _, time) = run_measuring_peak(loader(&far, &db, concurrency));
            assert!(status.success());
            rates[which].push(far_orders as f64 / time.as_secs_f64());
        }
    }
    let (one, four) = (Spread::of(&rates[0]), Spread::of(&rates[1]));
    println!(
        "  20 ms per page ({far_orders} orders), concurrency 1: {} orders/s",
        one.show(0)
    );
    println!(
        "  20 ms per page ({far_orders} orders), concurrency 4: {} orders/s",
        four.show(0)
    );
    println!(
        "  ratio concurrency 4/1 (median):      {:.2}",
        four.median / one.median
    );
}

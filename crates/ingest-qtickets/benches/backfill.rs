//! Backfill of ≥100 000 orders from `api-sandbox` into ClickHouse by the release binary,
//! reported as orders/s, as a ratio to a plain bulk insert of the same rows measured in the
//! same run, and with the loader's peak memory (VmHWM).
//!
//! `scripts/bench.sh qtickets` builds the release binary and runs this.

use std::process::Command;
use std::time::Instant;

use api_sandbox::{SandboxConfig, Server};
use ingest_qtickets::model::{OrderRow, TicketRow};
use zakaz_core::testing::TestDb;

fn env_u32(key: &str, default: u32) -> u32 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The release loader pointed at `server` and `db`, backfilling everything.
fn loader(server: &Server, db: &TestDb, concurrency: u32) -> Command {
    let mut cmd = Command::new(zakaz_core::bench::release_binary("ingest-qtickets"));
    cmd.env(
        "QTICKETS_BASE_URL",
        format!("{}/qtickets/api/rest/v1", server.base_url),
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

#[tokio::main]
async fn main() {
    let config = SandboxConfig {
        orders_per_day: env_u32("ORDERS_PER_DAY", 3_500),
        days: env_u32("DAYS", 30),
        future_days: 0,
        events: 50,
        ..Default::default()
    };
    let server = Server::start_local(config).unwrap();
    let orders_total = server.sandbox().data.qtickets.orders.len();
    let (db, ch) = TestDb::migrated().await;

    let (status, peak_kb, loader_time) =
        zakaz_core::bench::run_measuring_peak(loader(&server, &db, 4));
    assert!(status.success(), "the loader failed");

    // Baseline: the same staged rows, inserted plainly into a fresh database.
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
    assert_eq!(orders.len(), orders_total, "every order staged");
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
    let bulk_time = t.elapsed();

    let loader_rate = orders_total as f64 / loader_time.as_secs_f64();
    let bulk_rate = orders_total as f64 / bulk_time.as_secs_f64();
    println!("ingest-qtickets backfill benchmark");
    println!(
        "  orders / tickets:        {orders_total} / {}",
        tickets.len()
    );
    println!(
        "  loader (API → facts):    {:.2} s, {loader_rate:.0} orders/s, peak RSS {:.1} MiB",
        loader_time.as_secs_f64(),
        peak_kb as f64 / 1024.0
    );
    println!(
        "  plain bulk insert:       {:.2} s, {bulk_rate:.0} orders/s",
        bulk_time.as_secs_f64()
    );
    println!("  ratio loader/bulk:       {:.3}", loader_rate / bulk_rate);

    // A real API is far away: every order page here takes an extra 20 ms, as a round trip
    // to QTickets would. One page at a time vs QTICKETS_CONCURRENCY=4.
    let small = Server::start_local(SandboxConfig {
        orders_per_day: 1_000,
        days: 30,
        future_days: 0,
        events: 50,
        ..Default::default()
    })
    .unwrap();
    small.sandbox().add_fault(api_sandbox::Fault {
        route: "/qtickets/api/rest/v1/orders".into(),
        status: None,
        body: None,
        headers: vec![],
        delay_ms: 20,
        truncate: false,
        remaining: None,
        fraction: None,
        after: 0,
    });
    let small_orders = small.sandbox().data.qtickets.orders.len();
    let mut rates = Vec::new();
    for concurrency in [1, 4] {
        let (small_db, _) = TestDb::migrated().await;
        let (status, _, time) =
            zakaz_core::bench::run_measuring_peak(loader(&small, &small_db, concurrency));
        assert!(status.success());
        rates.push(small_orders as f64 / time.as_secs_f64());
        println!(
            "  20 ms per page, concurrency {concurrency}: {:.2} s, {:.0} orders/s ({small_orders} orders)",
            time.as_secs_f64(),
            rates.last().unwrap()
        );
    }
    println!("  ratio concurrency 4/1:   {:.2}", rates[1] / rates[0]);
}

//! Rows of one table spread over several `INSERT`s open at once ([`Ch::split_insert`]).

use std::time::Duration;

use zakaz_core::ch::{Ch, SplitInsert};
use zakaz_core::testing::TestDb;

#[derive(Debug, clickhouse::Row, serde::Serialize)]
struct Row {
    d: u16,
    k: u64,
    s: String,
}

/// Days since 1970 of three consecutive months: 2026-09-01, 2026-10-01, 2026-11-01.
const MONTHS: [u16; 3] = [20697, 20727, 20758];
/// Rows per month: enough bytes (≈ 2.4 MB) that ClickHouse 18.16, which reads an insert's
/// body 1 MiB at a time before it starts the query, has started each insert.
const ROWS_PER_MONTH: u64 = 40_000;

/// A table named `name`, unique among the tests, so that a test can find its own inserts
/// among those ClickHouse runs.
async fn table(name: &str) -> (TestDb, Ch) {
    let (db, ch) = TestDb::migrated().await;
    ch.execute(&format!(
        "CREATE TABLE {name} (d Date, k UInt64, s String) ENGINE = MergeTree \
         PARTITION BY toYYYYMM(d) ORDER BY (d, k)"
    ))
    .await
    .unwrap();
    (db, ch)
}

/// Every month's rows, keyed by month (0, 1, 2): into three inserts of two.
async fn write_months(insert: &mut SplitInsert<Row>) {
    for (month, d) in MONTHS.iter().enumerate() {
        for k in 0..ROWS_PER_MONTH {
            let row = Row {
                d: *d,
                k,
                s: format!("row {k} of a month, padded to a real row's length"),
            };
            insert.write(month as u64, &row).await.unwrap();
        }
    }
}

async fn count(ch: &Ch, sql: &str) -> u64 {
    ch.client().query(sql).fetch_one().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_land_once_each_insert_runs_beside_the_other_and_a_month_is_one_part() {
    let (db, ch) = table("spread").await;
    let mut insert = ch.split_insert::<Row>("spread", 2);
    write_months(&mut insert).await;
    // Both inserts are open in ClickHouse at once (each has sent rows; how soon the server
    // lists the second is its own, so asked again for a bounded while).
    let running = "SELECT count() FROM system.processes WHERE query LIKE 'INSERT INTO %spread%' AND query NOT LIKE '%system.processes%'";
    let mut seen = 0;
    for _ in 0..100 {
        seen = count(&ch, running).await;
        if seen == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen, 2, "two inserts open at once");
    assert_eq!(
        count(&ch, "SELECT count() FROM spread").await,
        0,
        "nothing before the end"
    );
    insert.end().await.unwrap();
    assert_eq!(
        count(&ch, "SELECT count() FROM spread").await,
        3 * ROWS_PER_MONTH
    );
    assert_eq!(
        count(&ch, "SELECT uniqExact(d, k) FROM spread").await,
        3 * ROWS_PER_MONTH,
        "no row twice"
    );
    // Parts written by inserts (level 0, merged ones included): one per month, as each
    // month's rows went to one insert.
    let parts = db.query(&format!(
        "SELECT partition, countIf(level = 0) FROM system.parts WHERE database = '{}' AND table = 'spread' GROUP BY partition ORDER BY partition",
        db.name
    ));
    assert_eq!(parts, "202609\t1\n202610\t1\n202611\t1\n");
}

/// Over HTTP, ClickHouse takes a body that stops for the end of the data; the rows it has
/// received must still not be written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inserts_dropped_unfinished_write_nothing_of_what_they_sent() {
    let (_db, ch) = table("dropped").await;
    let mut insert = ch.split_insert::<Row>("dropped", 2);
    write_months(&mut insert).await;
    drop(insert);
    // ClickHouse has had every byte sent and its inserts are over (asked again for a
    // bounded while: it learns of the closed connection on its own time).
    let running = "SELECT count() FROM system.processes WHERE query LIKE 'INSERT INTO %dropped%' AND query NOT LIKE '%system.processes%'";
    let mut left = u64::MAX;
    for _ in 0..100 {
        left = count(&ch, running).await;
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(left, 0, "the dropped inserts are over");
    assert_eq!(count(&ch, "SELECT count() FROM dropped").await, 0);
}

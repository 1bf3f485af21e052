//! Inserts: rows of one table spread over several `INSERT`s open at once
//! ([`Ch::split_insert`]), and what a stopped, cut, hanging or small-block insert writes.

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

/// Every month's rows, keyed by month (0, 1, 2): into three inserts of two. Their text is
/// made of pseudo-random numbers, which LZ4 cannot shrink much.
async fn write_months(insert: &mut SplitInsert<Row>) {
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    for (month, d) in MONTHS.iter().enumerate() {
        for k in 0..ROWS_PER_MONTH {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let row = Row {
                d: *d,
                k,
                s: format!("{x:016x}{:016x}", x.rotate_left(29)),
            };
            insert.write(month as u64, &row).await.unwrap();
        }
    }
}

async fn count(ch: &Ch, sql: &str) -> u64 {
    ch.client().query(sql).fetch_one().await.unwrap()
}

/// The inserts into `table` ClickHouse runs, once they are `want` (asked again for a bounded
/// while: the server learns of a new or closed connection on its own time), or the last count.
async fn inserts_running(ch: &Ch, table: &str, want: u64) -> u64 {
    let running =
        format!("SELECT count() FROM system.processes WHERE query LIKE 'INSERT INTO `{table}` %'");
    let mut seen = u64::MAX;
    for _ in 0..200 {
        seen = count(ch, &running).await;
        if seen == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_land_once_each_insert_runs_beside_the_other_and_a_month_is_one_part() {
    let (db, ch) = table("spread").await;
    let mut insert = ch.split_insert::<Row>("spread", 2);
    write_months(&mut insert).await;
    // Both inserts are open in ClickHouse at once (each has sent rows).
    assert_eq!(
        inserts_running(&ch, "spread", 2).await,
        2,
        "two inserts open at once"
    );
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
    assert_eq!(
        inserts_running(&ch, "dropped", 0).await,
        0,
        "the dropped inserts are over"
    );
    assert_eq!(count(&ch, "SELECT count() FROM dropped").await, 0);
}

/// What a proxy does with the bytes a client just sent.
enum Step {
    /// Pass the first n on to ClickHouse.
    Pass(usize),
    /// Pass the first n on, then end the connection to ClickHouse cleanly (FIN, as a killed
    /// client's kernel does).
    PassAndEnd(usize),
    /// Read them and pass nothing on: ClickHouse waits, and never answers.
    Hold,
}

/// A proxy to ClickHouse: each connection's bytes go through a `rule` of its own (made by
/// `rule()`), ClickHouse's answers straight back.
fn proxy<R>(rule: impl Fn() -> R + Send + 'static) -> String
where
    R: FnMut(&[u8]) -> Step + Send + 'static,
{
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpListener, TcpStream};
    let server = zakaz_core::testing::clickhouse_url()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        // The connect probe and the insert take one or two connections; the rest is bound.
        for client in listener.incoming().take(8) {
            let Ok(mut client) = client else { return };
            let (server, mut step) = (server.clone(), rule());
            std::thread::spawn(move || {
                let mut upstream = TcpStream::connect(&server).unwrap();
                // Bounded: the test ends long before; a leftover thread then ends too.
                let timeout = Some(Duration::from_secs(30));
                for s in [&client, &upstream] {
                    s.set_read_timeout(timeout).unwrap();
                }
                let (mut from_server, mut to_client) =
                    (upstream.try_clone().unwrap(), client.try_clone().unwrap());
                let answers = std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from_server, &mut to_client);
                });
                let mut buf = vec![0u8; 8192];
                loop {
                    let n = match client.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    let (pass, end) = match step(&buf[..n]) {
                        Step::Pass(k) => (k, false),
                        Step::PassAndEnd(k) => (k, true),
                        Step::Hold => (0, false),
                    };
                    if upstream.write_all(&buf[..pass]).is_err() || end {
                        break;
                    }
                }
                let _ = upstream.shutdown(Shutdown::Write);
                let _ = answers.join();
                let _ = client.shutdown(Shutdown::Both);
            });
        }
    });
    url
}

/// A proxy that passes the first `limit` bytes a client sends on a connection, then ends that
/// connection: ClickHouse sees a body that stops wherever `limit` falls, inside an HTTP chunk
/// or not.
fn cutting_proxy(limit: usize) -> String {
    proxy(move || {
        let mut sent = 0;
        move |bytes: &[u8]| {
            let n = bytes.len().min(limit - sent);
            sent += n;
            if sent == limit {
                Step::PassAndEnd(n)
            } else {
                Step::Pass(n)
            }
        }
    })
}

#[derive(Debug, clickhouse::Row, serde::Serialize)]
struct Short {
    v: u16,
}

/// `n` values by xorshift, which LZ4 cannot shrink: a body about as long as the rows.
fn noise(n: usize) -> Vec<u16> {
    let mut x = 0x2545_f491_u32;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u16
        })
        .collect()
}

/// Rows of two bytes (so that half of all places in the data are row ends) that LZ4 cannot
/// shrink, cut off at places spread over the body: none may be written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_insert_cut_anywhere_in_its_body_writes_nothing() {
    let (db, ch) = TestDb::migrated().await;
    ch.execute("CREATE TABLE cut (v UInt16) ENGINE = MergeTree ORDER BY tuple()")
        .await
        .unwrap();
    let rows = noise(1_000_000);
    for cut in (0..8).map(|k| 150_000 + k * 229_373) {
        let mut args = db.args.clone();
        args.clickhouse_url = cutting_proxy(cut);
        let via_proxy = zakaz_core::ch::Ch::connect(&args).await.unwrap();
        let mut insert = via_proxy.stream_insert::<Short>("cut");
        let mut failed = false;
        for v in &rows {
            if insert.write(&Short { v: *v }).await.is_err() {
                failed = true;
                break;
            }
        }
        if !failed {
            failed = insert.end().await.is_err();
        }
        assert!(
            failed,
            "cut after {cut} bytes: the insert cannot have succeeded"
        );
        assert_eq!(
            inserts_running(&ch, "cut", 0).await,
            0,
            "cut after {cut} bytes: the insert is over"
        );
        assert_eq!(
            count(&ch, "SELECT count() FROM cut").await,
            0,
            "cut after {cut} bytes"
        );
    }
}

/// A server whose profile sets small insert blocks writes each block as soon as it has
/// gathered it; every insert sets its own block sizes, so one dropped after its first chunks
/// were sent still writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_insert_is_one_block_whatever_the_servers_profile_says() {
    let (db, ch) = TestDb::migrated().await;
    ch.execute("CREATE TABLE small_blocks (v UInt16) ENGINE = MergeTree ORDER BY tuple()")
        .await
        .unwrap();
    // As such a profile would: every request carries the settings.
    let small = Ch::connect(&db.args)
        .await
        .unwrap()
        .with_setting("max_insert_block_size", "3")
        .with_setting("min_insert_block_size_rows", "3")
        .with_setting("min_insert_block_size_bytes", "4");
    let setting: String = small
        .client()
        .query("SELECT value FROM system.settings WHERE name = 'min_insert_block_size_rows'")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(setting, "3", "the profile's setting is in force");
    // 2 MB that LZ4 cannot shrink, all but the last chunk sent before the drop: more than
    // the 1 MiB that 18.16 reads before it starts the query.
    let rows = noise(1_000_000);
    let mut insert = small.stream_insert::<Short>("small_blocks");
    for v in &rows {
        insert.write(&Short { v: *v }).await.unwrap();
    }
    drop(insert);
    assert_eq!(inserts_running(&ch, "small_blocks", 0).await, 0);
    assert_eq!(count(&ch, "SELECT count() FROM small_blocks").await, 0);
    let mut insert = small.stream_insert::<Short>("small_blocks");
    for v in &rows {
        insert.write(&Short { v: *v }).await.unwrap();
    }
    insert.end().await.unwrap();
    assert_eq!(
        count(&ch, "SELECT count() FROM small_blocks").await,
        rows.len() as u64
    );
}

/// A proxy that passes a connection's requests until one is an `INSERT`, then reads on and
/// never answers: a server that hangs on an insert.
fn hanging_on_inserts_proxy() -> String {
    proxy(|| {
        let mut hanging = false;
        move |bytes: &[u8]| {
            hanging = hanging || bytes.windows(6).any(|w| w == b"INSERT");
            if hanging {
                Step::Hold
            } else {
                Step::Pass(bytes.len())
            }
        }
    })
}

/// An insert the server never answers fails once the timeout passes, with a message that
/// names the setting, instead of hanging the job until systemd kills it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_insert_the_server_never_answers_fails_at_the_timeout() {
    let (db, _ch) = TestDb::migrated().await;
    let mut args = db.args.clone();
    args.clickhouse_url = hanging_on_inserts_proxy();
    args.clickhouse_timeout_secs = 3;
    let hanging = Ch::connect(&args).await.unwrap();
    let mut insert = hanging.stream_insert::<Short>("never");
    for v in 0..10 {
        insert.write(&Short { v }).await.unwrap();
    }
    // Bounded, so that an insert without its timeout fails this test instead of hanging it.
    let ended = tokio::time::timeout(Duration::from_secs(120), insert.end())
        .await
        .expect("the insert ended by its own timeout");
    let e = ended.unwrap_err().to_string();
    assert!(
        e.contains("no progress within CLICKHOUSE_TIMEOUT_SECS"),
        "{e}"
    );
}

/// A server that refuses an insert while its rows are still being sent (here its memory
/// limit): the error is the server's own, not the client's "channel closed".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_insert_the_server_refuses_half_way_fails_with_the_servers_reason() {
    let (db, ch) = table("refused").await;
    let tight = Ch::connect(&db.args)
        .await
        .unwrap()
        .with_setting("max_memory_usage", "20000000");
    let mut insert = tight.split_insert::<Row>("refused", 1);
    // About 50 MB, more than twice the limit, in rows LZ4 cannot shrink much.
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    let mut failed = None;
    for k in 0..800_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let s = format!(
            "{x:016x}{:016x}{:016x}{:016x}",
            x.rotate_left(7),
            x.rotate_left(29),
            x.rotate_left(41)
        );
        if let Err(e) = insert.write(0, &Row { d: MONTHS[0], k, s }).await {
            failed = Some(e);
            break;
        }
    }
    let e = match failed {
        Some(e) => e,
        None => insert.end().await.unwrap_err(),
    }
    .to_string();
    assert!(e.contains("Memory limit (for query) exceeded"), "{e}");
    assert_eq!(inserts_running(&ch, "refused", 0).await, 0);
    assert_eq!(count(&ch, "SELECT count() FROM refused").await, 0);
}

/// Every insert of a split refused (here: no such table): the error says all failed, and
/// does not claim that some other insert's rows are written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_insert_that_fails_whole_says_so() {
    let (_db, ch) = table("present").await;
    let mut insert = ch.split_insert::<Row>("absent", 2);
    for k in 0..10 {
        let row = Row {
            d: MONTHS[0],
            k,
            s: String::new(),
        };
        insert.write(k, &row).await.unwrap();
    }
    let e = insert.end().await.unwrap_err().to_string();
    assert!(e.starts_with("all 2 inserts failed: "), "{e}");
    assert!(!e.contains("written"), "{e}");
    assert!(e.contains("absent"), "{e}");
}

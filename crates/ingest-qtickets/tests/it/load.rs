use serde_json::json;

use crate::{Env, stderr};
use zakaz_core::testing::JobUnderTest;

#[tokio::test]
async fn totals_equal_an_independent_computation_and_reruns_change_nothing() {
    let env = Env::new().await;
    env.run_ok(&[]);
    let facts = env.facts();
    assert!(
        facts.len() > 20,
        "several dates and events: {}",
        facts.len()
    );
    assert_eq!(facts, env.expected());
    // The run says how many daily fact rows it wrote (a fresh database: every row written
    // is in the table, zero rows too), over more than one week's chunk of dates.
    let said = env.query(
        "SELECT visitParamExtractUInt(metrics, 'daily_fact_rows') FROM {db}.meta_job_runs WHERE status = 'ok'",
    );
    let written = env.query("SELECT count() FROM {db}.fact_qtickets_sales_daily");
    assert_eq!(
        said, written,
        "daily fact rows the run reports, then in the table"
    );
    let dates = env.query("SELECT uniqExact(sales_date) FROM {db}.fact_qtickets_sales_daily");
    assert!(
        dates.trim().parse::<usize>().unwrap() > 7,
        "more than one chunk of dates: {dates}"
    );

    // Staging holds one row per order and per basket (latest version wins).
    let orders =
        env.query("SELECT count(), uniqExact(order_id) FROM {db}.stg_qtickets_orders FINAL");
    let (n, distinct) = orders.trim().split_once('\t').unwrap();
    assert_eq!(n, distinct);
    assert_eq!(
        n.parse::<usize>().unwrap(),
        env.sandbox.sandbox().qtickets_orders().len()
    );

    // The same window again, then an explicit re-load of a window: no total changes.
    env.run_ok(&[]);
    assert_eq!(env.facts(), facts);
    let today = env.sandbox.sandbox().today();
    let since = (today - chrono::Days::new(10)).to_string();
    let until = (today - chrono::Days::new(3)).to_string();
    assert!(
        facts
            .keys()
            .any(|(date, _, _)| *date >= since && *date <= until),
        "the re-loaded window holds sales"
    );
    env.run_ok(&["--since", &since, "--until", &until]);
    assert_eq!(env.facts(), facts);

    // The UTM breakdown adds up to the daily totals.
    let by_utm = env.query("SELECT sum(tickets_sold), sum(net_revenue), sum(orders) FROM {db}.fact_qtickets_sales_utm_daily FINAL");
    let daily = env.query("SELECT sum(tickets_sold), sum(net_revenue), sum(orders) FROM {db}.fact_qtickets_sales_daily FINAL");
    assert_eq!(by_utm, daily);
    let tagged = env.query(
        "SELECT count() > 0 FROM {db}.fact_qtickets_sales_utm_daily FINAL WHERE utm_source != ''",
    );
    assert_eq!(tagged, "1\n");

    // Events: city and time zone from the city object; deleted ones kept and marked.
    let sandbox = env.sandbox.sandbox();
    let deleted = sandbox
        .data
        .qtickets
        .events
        .iter()
        .filter(|e| e.deleted_at.is_some())
        .count();
    let dims = env.query("SELECT count(), countIf(is_deleted = 1), countIf(city_timezone = 'Asia/Novosibirsk' AND city = 'Новосибирск') > 0 FROM {db}.dim_events FINAL");
    assert_eq!(
        dims,
        format!("{}\t{deleted}\t1\n", sandbox.data.qtickets.events.len())
    );

    // No personal data in ClickHouse.
    let leaked = env.query("SELECT count() FROM {db}.stg_qtickets_orders WHERE client_hash != ''");
    assert_eq!(leaked.trim(), "0");

    // The seed's queries show the runs with rows processed.
    // Runs can start within the same second: find them by mode, not by order.
    let runs = env.query("SELECT job, status, rows_processed, message FROM {db}.meta_job_runs");
    let lines: Vec<&str> = runs.lines().collect();
    assert_eq!(lines.len(), 3, "{runs}");
    assert!(
        lines.iter().all(|l| l.starts_with("qtickets\tok\t")),
        "{runs}"
    );
    let backfill = lines
        .iter()
        .find(|l| l.contains("mode backfill"))
        .expect("a backfill run");
    let first_rows: usize = backfill.split('\t').nth(2).unwrap().parse().unwrap();
    assert_eq!(first_rows, env.sandbox.sandbox().qtickets_orders().len());
    assert!(lines.iter().any(|l| l.contains("mode window")), "{runs}");
    assert!(
        lines.iter().any(|l| l.contains("mode updated_since")),
        "{runs}"
    );
    let stats = env.query("SELECT job, status, count() as runs, max(started_at) as last_run FROM {db}.meta_job_runs GROUP BY job, status ORDER BY job, status");
    assert!(stats.starts_with("qtickets\tok\t3\t"), "{stats}");

    // Only GET requests, and the token never in a URL.
    let log = env.sandbox.sandbox().state().log.clone();
    assert!(
        log.iter().all(|r| r["method"] == "GET"),
        "non-GET request sent"
    );
    assert!(
        log.iter()
            .all(|r| !r["query"].as_str().unwrap().contains("sandbox-token")
                && !r["path"].as_str().unwrap().contains("sandbox-token"))
    );
}

#[tokio::test]
async fn a_later_run_picks_up_new_orders_and_refunds_of_old_ones() {
    let env = Env::new().await;
    env.run_ok(&[]);
    let before = env.facts();
    env.control("/advance", json!({"days": 2}));
    let out = env.run_ok(&[]);
    assert!(
        stderr(&out).contains("mode updated_since"),
        "{}",
        stderr(&out)
    );
    let after = env.facts();
    assert_ne!(after, before);
    assert_eq!(after, env.expected());
    // Refunds of orders paid before the advance show up on their old sales dates.
    let changed_old_dates = before
        .iter()
        .filter(|(k, v)| after.get(*k) != Some(*v))
        .count();
    assert!(
        changed_old_dates > 0,
        "refunds of old orders changed old dates"
    );
}

/// Sales a box office syncs late reach QTickets hours after they were made, with their own
/// (older) times: the `updated_at` filter of an incremental run cannot return them, so new
/// orders are read by id too.
#[tokio::test]
async fn orders_synced_late_with_old_times_are_loaded_by_the_next_run() {
    let env = Env::with(api_sandbox::SandboxConfig {
        qtickets_late_sync_every: 4,
        qtickets_late_sync_minutes: 240,
        ..Default::default()
    })
    .await;
    env.run_ok(&[]);
    let seen: std::collections::BTreeSet<u64> = env
        .sandbox
        .sandbox()
        .qtickets_orders()
        .iter()
        .map(|o| o["id"].as_u64().unwrap())
        .collect();
    let first_run_at = env.sandbox.sandbox().now();
    env.control("/advance", json!({"hours": 6}));
    // Orders that appeared since, stamped before the first run's overlap (an hour).
    let late = env
        .sandbox
        .sandbox()
        .qtickets_orders()
        .iter()
        .filter(|o| !seen.contains(&o["id"].as_u64().unwrap()))
        .filter(|o| instant(o, "updated_at").timestamp() < first_run_at - 3600)
        .count();
    assert!(late > 0, "the sandbox synced some orders late");
    let out = env.run_ok(&[]);
    assert!(
        stderr(&out).contains("mode updated_since"),
        "{}",
        stderr(&out)
    );
    assert_eq!(env.facts(), env.expected());
}

#[tokio::test]
async fn when_the_server_ignores_date_filters_the_loader_rescans_recent_orders() {
    let env = Env::new().await;
    env.run_ok(&[]);
    env.control("/config", json!({"qtickets_date_filters": "ignored"}));
    env.control("/advance", json!({"days": 1}));
    let out = env.run_ok(&[]);
    assert!(
        stderr(&out).contains("ignored the `updated_at` filter"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("mode rescan"), "{}", stderr(&out));
    assert_eq!(env.facts(), env.expected());
}

#[tokio::test]
async fn timestamps_in_each_citys_own_offset_give_the_same_moscow_dates() {
    let env = Env::with(api_sandbox::SandboxConfig {
        qtickets_city_offsets: true,
        ..Default::default()
    })
    .await;
    env.run_ok(&[]);
    assert_eq!(env.facts(), env.expected());
    let dims = env.query(
        "SELECT count() FROM {db}.dim_events FINAL WHERE city_timezone = 'Asia/Novosibirsk'",
    );
    assert_ne!(dims, "0\n");
}

#[tokio::test]
async fn a_backfill_longer_than_the_time_budget_resumes_where_it_stopped() {
    let env = Env::new().await;
    // Every order page takes 200 ms: the backfill needs far more than the 2 s budget.
    env.control(
        "/faults",
        json!({"route": "/qtickets/api/rest/v1/orders", "delay_ms": 200}),
    );
    let budget = [
        ("QTICKETS_TIME_BUDGET_SECS", "2"),
        ("QTICKETS_STAGE_BATCH_ORDERS", "100"),
    ];
    let first = env.run(&[], &budget);
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(
        stderr(&first).contains("stopped at the time budget (`QTICKETS_TIME_BUDGET_SECS`)"),
        "{}",
        stderr(&first)
    );
    let row = env.query(
        "SELECT visitParamExtractUInt(metrics, 'resume_after_id'), visitParamExtractUInt(metrics, 'watermark_updated_at'), visitParamExtractBool(metrics, 'complete') \
         FROM {db}.meta_job_runs WHERE status = 'ok'",
    );
    let fields: Vec<u64> = row.trim().split('\t').map(|f| f.parse().unwrap()).collect();
    let resume = fields[0];
    assert!(
        resume > 0 && fields[1] == 0 && fields[2] == 0,
        "no watermark yet: {row}"
    );

    env.sandbox.sandbox().state().faults.clear();
    let second = env.run_ok(&[]);
    assert!(
        stderr(&second).contains(&format!("resuming the backfill after order {resume}")),
        "{}",
        stderr(&second)
    );
    assert_eq!(env.facts(), env.expected());
    // The second run read only what the first had not (ids above the resume point).
    let above = env
        .sandbox
        .sandbox()
        .qtickets_orders()
        .iter()
        .filter(|o| o["id"].as_u64().unwrap() > resume)
        .count();
    let orders = env.query(
        "SELECT visitParamExtractUInt(metrics, 'orders'), visitParamExtractUInt(metrics, 'watermark_updated_at') > 0 \
         FROM {db}.meta_job_runs WHERE status = 'ok' AND visitParamExtractBool(metrics, 'complete')",
    );
    assert_eq!(orders, format!("{above}\t1\n"));
}

#[tokio::test]
async fn sigterm_mid_run_records_an_error_saying_so_and_exits_1() {
    let env = Env::new().await;
    // Slow pages keep the run busy long enough to be stopped the way systemd stops it.
    env.control(
        "/faults",
        json!({"route": "/qtickets/api/rest/v1/orders", "delay_ms": 200}),
    );
    let child = env
        .command(&[])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut running = false;
    for _ in 0..200 {
        if env.query("SELECT count() FROM {db}.meta_job_runs WHERE status = 'running'") == "1\n" {
            running = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(running, "the run never started");
    let pid = child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(
        env.query("SELECT status, message FROM {db}.meta_job_runs"),
        "error\tinterrupted by SIGTERM before the run finished\n"
    );
}

#[tokio::test]
async fn utm_facts_match_an_independent_count_per_date_event_and_all_five_tags() {
    let env = Env::new().await;
    env.run_ok(&[]);
    let expected = env.expected_by_tags(true);
    assert!(
        expected.keys().any(|(_, tags)| !tags[3].is_empty()),
        "some orders carry utm_content"
    );
    assert!(
        expected
            .keys()
            .any(|(_, tags)| tags.iter().all(String::is_empty)),
        "and some no tags at all"
    );
    assert_eq!(env.facts_by_tags(), expected);
}

#[tokio::test]
async fn a_window_run_on_a_fresh_database_writes_exactly_its_dates() {
    let env = Env::new().await;
    let today = env.sandbox.sandbox().today();
    let (since, until) = (today - chrono::Days::new(12), today - chrono::Days::new(5));
    env.run_ok(&["--since", &since.to_string(), "--until", &until.to_string()]);
    let in_window = |date: &str| {
        let d: chrono::NaiveDate = date.parse().unwrap();
        d >= since && d <= until
    };
    let expected: std::collections::BTreeMap<_, _> = env
        .expected()
        .into_iter()
        .filter(|((date, _, _), _)| in_window(date))
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(
        env.facts(),
        expected,
        "its dates, exactly, and nothing else"
    );
}

#[tokio::test]
async fn a_rescan_after_more_than_the_refresh_days_without_a_run_loses_no_new_order() {
    let env = Env::with(api_sandbox::SandboxConfig {
        future_days: 25,
        ..Default::default()
    })
    .await;
    let last_run_day = env.sandbox.sandbox().today();
    env.run_ok(&[]);
    let before: u64 = env
        .query("SELECT max(order_id) FROM {db}.stg_qtickets_orders")
        .trim()
        .parse()
        .unwrap();
    // Twenty days without a run, and a server that ignores date filters: the rescan reads the
    // last 14 days *and* everything after the last run's newest order.
    env.control("/config", json!({"qtickets_date_filters": "ignored"}));
    env.control("/advance", json!({"days": 20}));
    let out = env.run_ok(&[]);
    assert!(stderr(&out).contains("mode rescan"), "{}", stderr(&out));
    let served: Vec<u64> = env
        .sandbox
        .sandbox()
        .qtickets_orders()
        .iter()
        .map(|o| o["id"].as_u64().unwrap())
        .filter(|id| *id > before)
        .collect();
    assert!(
        served.len() > 500,
        "twenty days of new orders: {}",
        served.len()
    );
    let staged = env.query(&format!(
        "SELECT count() FROM {{db}}.stg_qtickets_orders FINAL WHERE order_id > {before}"
    ));
    assert_eq!(
        staged.trim(),
        served.len().to_string(),
        "every new order staged"
    );
    // Their facts are exact for every date after the last run's day.
    let first_new_day = (last_run_day + chrono::Days::new(1)).to_string();
    let recent = |m: std::collections::BTreeMap<crate::Key, crate::Totals>| {
        m.into_iter()
            .filter(|((date, _, _), _)| *date >= first_new_day)
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let expected = recent(env.expected());
    assert!(
        expected.len() > 20,
        "twenty days of facts: {}",
        expected.len()
    );
    assert_eq!(recent(env.facts()), expected);
}

#[tokio::test]
async fn the_watermark_overlap_catches_an_update_stamped_before_the_last_run() {
    let env = Env::new().await;
    env.run_ok(&[]);
    let watermark: i64 = env
        .query("SELECT visitParamExtractUInt(metrics, 'watermark_updated_at') FROM {db}.meta_job_runs WHERE status = 'ok'")
        .trim()
        .parse()
        .unwrap();
    // After that run the vendor records an un-payment stamped 30 minutes before the
    // watermark (inside the 60-minute overlap) — earlier, too, than the order's last
    // `updated_at`: its clock stepped back.
    let order: u64 = env
        .query("SELECT max(order_id) FROM {db}.stg_qtickets_orders FINAL WHERE payed = 1 AND deleted_at IS NULL")
        .trim()
        .parse()
        .unwrap();
    let late = chrono::DateTime::from_timestamp(watermark - 1800, 0)
        .unwrap()
        .with_timezone(&chrono_tz::Europe::Moscow)
        .to_rfc3339();
    env.control(
        "/qtickets/payment",
        json!({"order_id": order, "payed_at": null, "updated_at": late}),
    );
    let out = env.run_ok(&[]);
    assert!(
        stderr(&out).contains("mode updated_since"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        env.query(&format!(
            "SELECT payed FROM {{db}}.stg_qtickets_orders FINAL WHERE order_id = {order}"
        )),
        "0\n",
        "the late update was fetched"
    );
    assert_eq!(env.facts(), env.expected());
}

#[tokio::test]
async fn order_pages_without_paging_are_read_until_an_empty_page() {
    let env = Env::new().await;
    env.control("/config", json!({"qtickets_paging": "missing"}));
    let out = env.run_ok(&[]);
    assert!(stderr(&out).contains("mode backfill"), "{}", stderr(&out));
    assert_eq!(env.facts(), env.expected(), "the backfill read every page");
    env.control("/advance", json!({"days": 1}));
    let out = env.run_ok(&[]);
    assert!(
        stderr(&out).contains("mode updated_since"),
        "{}",
        stderr(&out)
    );
    assert_eq!(env.facts(), env.expected(), "so did the incremental run");
}

#[tokio::test]
async fn a_run_that_dies_after_staging_leaves_its_dates_for_the_next_run() {
    let env = Env::new().await;
    env.run_ok(&[]);
    // The two oldest paid orders: one is un-paid, the other paid on another date.
    let picked = env.query(
        "SELECT order_id, toString(toDate(assumeNotNull(payed_at), 'Europe/Moscow')), toUnixTimestamp(assumeNotNull(payed_at)) \
         FROM {db}.stg_qtickets_orders FINAL WHERE payed = 1 AND deleted_at IS NULL ORDER BY order_id LIMIT 2",
    );
    let rows: Vec<Vec<&str>> = picked.lines().map(|l| l.split('\t').collect()).collect();
    let (unpaid, moved) = (rows[0][0], rows[1][0]);
    let (unpaid_date, moved_date) = (rows[0][1], rows[1][1]);
    let moved_to =
        chrono::DateTime::from_timestamp(rows[1][2].parse::<i64>().unwrap() + 5 * 86_400, 0)
            .unwrap()
            .with_timezone(&chrono_tz::Europe::Moscow);
    env.control(
        "/qtickets/payment",
        json!({"order_id": unpaid.parse::<u64>().unwrap(), "payed_at": null}),
    );
    env.control(
        "/qtickets/payment",
        json!({"order_id": moved.parse::<u64>().unwrap(), "payed_at": moved_to.to_rfc3339()}),
    );
    // New orders after them (several pages); the second page fails on both attempts, after
    // the first (holding both changed orders, the oldest ids) was staged.
    env.control("/advance", json!({"days": 3}));
    env.control(
        "/faults",
        json!({"route": "/qtickets/api/rest/v1/orders", "status": 503, "after": 1, "count": 2}),
    );
    // Staging made slow by ClickHouse itself (a view on the sale-date index, written first,
    // that sleeps 3 s per block): the page fails while the first batch is still being staged,
    // so the run must wait for that batch before it exits.
    env.query(
        "CREATE MATERIALIZED VIEW {db}.slow_staging ENGINE = Null \
         AS SELECT sleep(3) AS slept FROM {db}.stg_qtickets_sale_dates",
    );
    let failed = env.run(&[], &[("QTICKETS_STAGE_BATCH_ORDERS", "50")]);
    env.query("DROP TABLE {db}.slow_staging");
    assert_eq!(failed.status.code(), Some(1), "{}", stderr(&failed));
    let staged = env.query(&format!(
        "SELECT order_id, payed FROM {{db}}.stg_qtickets_orders FINAL WHERE order_id IN ({unpaid}, {moved}) ORDER BY order_id"
    ));
    assert_eq!(
        staged,
        format!("{unpaid}\t0\n{moved}\t1\n"),
        "the failed run staged both"
    );
    let dirty = env.query("SELECT toString(sales_date) FROM {db}.stg_qtickets_dirty_dates FINAL WHERE dirty = 1 ORDER BY sales_date");
    for date in [unpaid_date, moved_date] {
        assert!(
            dirty.lines().any(|l| l == date),
            "{date} not left dirty: {dirty}"
        );
    }

    // ClickHouse merges the staged versions (as it does in the background, at any time):
    // the paid versions are gone, so the next run sees the orders in their new state only,
    // and must still correct the old dates.
    env.query("OPTIMIZE TABLE {db}.stg_qtickets_orders FINAL");
    let out = env.run_ok(&[]);
    assert!(
        stderr(&out).contains("left dirty by a run that failed"),
        "{}",
        stderr(&out)
    );
    assert_eq!(env.facts(), env.expected());
    assert_eq!(
        env.query("SELECT count() FROM {db}.stg_qtickets_dirty_dates FINAL WHERE dirty = 1"),
        "0\n"
    );
}

#[tokio::test]
async fn a_503_in_the_middle_of_paging_fails_the_run_and_leaves_facts_unchanged() {
    let env = Env::new().await;
    env.run_ok(&[]);
    let before = env.facts();
    // Three days of new orders: several pages; the second fails on both attempts
    // (HTTP_MAX_ATTEMPTS=2).
    env.control("/advance", json!({"days": 3}));
    env.control(
        "/faults",
        json!({"route": "/qtickets/api/rest/v1/orders", "status": 503, "after": 1, "count": 2}),
    );
    let failed = env.run(&[], &[]);
    assert_eq!(failed.status.code(), Some(1), "{}", stderr(&failed));
    assert!(
        stderr(&failed).contains("QTickets answered HTTP 503"),
        "{}",
        stderr(&failed)
    );
    assert_eq!(env.facts(), before, "facts untouched by the failed run");
    // The only run that is not `ok` (start times have one-second resolution).
    let last = env.query("SELECT status, message FROM {db}.meta_job_runs WHERE status != 'ok'");
    assert!(last.starts_with("error\t"), "{last}");
    assert!(last.contains("503"), "{last}");

    // The next run recovers everything the failed one missed.
    env.run_ok(&[]);
    assert_eq!(env.facts(), env.expected());
}

#[tokio::test]
async fn dry_run_prints_and_writes_nothing() {
    let env = Env::new().await;
    let out = env.run_ok(&["--dry-run"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("dry run, nothing written: would write"),
        "{stdout}"
    );
    assert!(stdout.contains("(from fetched orders only)"), "{stdout}");
    assert!(
        stdout.contains("revenue rule: revenue = Σ basket `price` × `quantity`"),
        "{stdout}"
    );
    for table in [
        "stg_qtickets_orders",
        "stg_qtickets_tickets",
        "fact_qtickets_sales_daily",
        "dim_events",
        "fact_qtickets_inventory",
        "meta_job_run_events",
    ] {
        assert_eq!(
            env.query(&format!("SELECT count() FROM {{db}}.{table}"))
                .trim(),
            "0",
            "{table}"
        );
    }
}

#[tokio::test]
async fn inventory_counts_quantities_and_reports_a_failing_show() {
    let env = Env::new().await;
    env.run_ok(&[]);
    // Independent: sum of the sandbox's seat quantities for one show.
    let sandbox = env.sandbox.sandbox();
    let event = sandbox
        .data
        .qtickets
        .events
        .iter()
        .find(|e| e.is_active && e.shows.iter().any(|s| s.is_active))
        .unwrap();
    let show = event.shows.iter().find(|s| s.is_active).unwrap();
    let seats = api_sandbox::qtickets::seats_json(sandbox.config.seed, show);
    let (mut capacity, mut free) = (0, 0);
    for seat in seats["data"].as_object().unwrap().values() {
        capacity += seat["max_quantity"].as_u64().unwrap();
        free += seat["free_quantity"].as_u64().unwrap();
    }
    let row = env.query(&format!(
        "SELECT capacity, free FROM {{db}}.fact_qtickets_inventory WHERE show_id = {}",
        show.id
    ));
    assert_eq!(row, format!("{capacity}\t{free}\n"));
    assert!(show.zones.iter().any(|z| z.admission) || capacity > 0);

    env.control("/faults", json!({"route": format!("/qtickets/api/rest/v1/shows/{}/seats", show.id), "status": 500, "count": 10}));
    let before = env.query("SELECT count() FROM {db}.fact_qtickets_inventory");
    // Sales go on: the run is `ok`, with the failing show named and counted as a warning.
    let out = env.run_ok(&[]);
    let last = env.query(
        "SELECT status, message, visitParamExtractUInt(metrics, 'warnings'), visitParamExtractUInt(metrics, 'inventory_failed_shows') \
         FROM {db}.meta_job_runs WHERE visitParamExtractUInt(metrics, 'warnings') > 0",
    );
    assert!(
        last.starts_with("ok\t") && last.contains("inventory failed for 1 show(s): show "),
        "{last}"
    );
    assert!(last.contains(&show.id.to_string()), "{last}");
    assert!(last.ends_with("\t1\t1\n"), "{last}");
    // The other shows' rows are written.
    let shows = env.query("SELECT count(DISTINCT show_id) FROM {db}.fact_qtickets_inventory");
    let after = env.query("SELECT count() FROM {db}.fact_qtickets_inventory");
    assert!(after.trim().parse::<u64>().unwrap() > before.trim().parse::<u64>().unwrap());
    assert!(shows.trim().parse::<u64>().unwrap() > 1, "{shows}");
    assert!(
        stderr(&out).contains("inventory of show failed"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn a_malformed_url_setting_is_one_line_and_never_tried() {
    let env = Env::new().await;
    for (value, why) in [
        ("ftp://x", "scheme must be http or https, not `ftp`"),
        ("not a url", "not a URL"),
    ] {
        let out = env.run(&[], &[("QTICKETS_BASE_URL", value)]);
        assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
        let err = stderr(&out);
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(
            err.contains("QTICKETS_BASE_URL") && err.contains(why),
            "{err}"
        );
    }
    assert!(
        env.sandbox.sandbox().state().log.is_empty(),
        "nothing was requested"
    );
}

#[tokio::test]
async fn a_bad_token_fails_clearly_and_never_prints_the_secret() {
    let env = Env::new().await;
    let secret = "qt-secret-5a6b7c8d9e";
    let out = env.run(&[], &[("QTICKETS_TOKEN", secret), ("LOG_LEVEL", "trace")]);
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("QTickets rejected the token (HTTP 403)") && err.contains("QTICKETS_TOKEN"),
        "{err}"
    );
    assert!(
        !err.contains(secret) && !String::from_utf8_lossy(&out.stdout).contains(secret),
        "{err}"
    );
    let journal = env.query("SELECT status, message FROM {db}.meta_job_runs");
    assert!(
        journal.starts_with("error\t") && !journal.contains(secret),
        "{journal}"
    );

    // A service (or proxy) that quotes the request's credentials in its error: the error is
    // printed and journaled, the token never.
    env.control("/config", json!({"echo_credentials": true}));
    env.control(
        "/faults",
        json!({"route": "/qtickets/api/rest/v1/events", "status": 503, "count": 10}),
    );
    let echoed = env.run(&[], &[("LOG_LEVEL", "trace")]);
    assert_eq!(echoed.status.code(), Some(1), "{}", stderr(&echoed));
    let err = stderr(&echoed);
    assert!(
        err.contains("authorization=Bearer ***"),
        "the answer quoted it: {err}"
    );
    assert!(!err.contains("sandbox-token"), "{err}");
    let journal =
        env.query("SELECT message FROM {db}.meta_job_runs WHERE message LIKE '%authorization=%'");
    assert!(
        journal.contains("authorization=Bearer ***") && !journal.contains("sandbox-token"),
        "{journal}"
    );

    // Without a token at all: one line naming the setting, before anything runs.
    let out = zakaz_core::testing::clean_command(env!("CARGO_BIN_EXE_ingest-qtickets"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let err = stderr(&out);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("QTICKETS_TOKEN"), "{err}");
}

#[tokio::test]
async fn a_window_run_before_any_full_run_leaves_the_backfill_to_the_next_run() {
    let env = Env::new().await;
    let today = env.sandbox.sandbox().today();
    let day = (today - chrono::Days::new(5)).to_string();
    let sales_that_day = env.expected().keys().filter(|(d, _, _)| *d == day).count();
    assert!(sales_that_day > 0, "the window holds sales");
    env.run_ok(&["--since", &day, "--until", &day]);
    assert_eq!(
        env.facts().keys().filter(|(d, _, _)| *d == day).count(),
        sales_that_day,
        "the window run wrote its day"
    );
    let out = env.run_ok(&[]);
    assert!(stderr(&out).contains("mode backfill"), "{}", stderr(&out));
    assert_eq!(env.facts(), env.expected());
}

#[tokio::test]
async fn a_failure_in_one_of_the_concurrent_ranges_fails_the_backfill_and_the_next_run_recovers() {
    let env = Env::new().await;
    // Several pages into the backfill (two ranges at once): the next four order requests fail,
    // that is both attempts (HTTP_MAX_ATTEMPTS=2) of both ranges.
    env.control(
        "/faults",
        json!({"route": "/qtickets/api/rest/v1/orders", "status": 503, "after": 30, "count": 4}),
    );
    let failed = env.run(&[], &[("QTICKETS_CONCURRENCY", "2")]);
    assert_eq!(failed.status.code(), Some(1), "{}", stderr(&failed));
    assert!(env.facts().is_empty(), "no facts from a failed backfill");
    // No watermark was recorded, so the next run backfills everything.
    let out = env.run_ok(&[]);
    assert!(stderr(&out).contains("mode backfill"), "{}", stderr(&out));
    assert_eq!(env.facts(), env.expected());
}

#[tokio::test]
async fn no_order_listing_goes_out_unfiltered_in_any_mode() {
    let env = Env::new().await;
    let out = env.run_ok(&[]);
    assert!(stderr(&out).contains("mode backfill"), "{}", stderr(&out));
    let today = env.sandbox.sandbox().today();
    let day = (today - chrono::Days::new(3)).to_string();
    let out = env.run_ok(&["--since", &day, "--until", &day]);
    assert!(stderr(&out).contains("mode window"), "{}", stderr(&out));
    env.control("/advance", json!({"days": 1}));
    let out = env.run_ok(&[]);
    assert!(
        stderr(&out).contains("mode updated_since"),
        "{}",
        stderr(&out)
    );
    env.control("/config", json!({"qtickets_date_filters": "ignored"}));
    env.control("/advance", json!({"days": 1}));
    let out = env.run_ok(&[]);
    assert!(stderr(&out).contains("mode rescan"), "{}", stderr(&out));
    assert_eq!(env.facts(), env.expected());

    let log = env.sandbox.sandbox().state().log.clone();
    let listings: Vec<&serde_json::Value> = log
        .iter()
        .filter(|r| r["path"] == "/qtickets/api/rest/v1/orders")
        .collect();
    assert!(listings.len() > 10, "{}", listings.len());
    for r in listings {
        let body: serde_json::Value =
            serde_json::from_str(r["body"].as_str().unwrap_or("{}")).unwrap_or_default();
        let conditions = body["where"].as_array().map_or(0, Vec::len);
        assert!(conditions > 0, "an unfiltered order listing was sent: {r}");
    }
}

/// A paid order with a ticket still to refund, of those `pick` takes (`what` they are, for
/// the message when there is none).
fn refundable_order(env: &Env, what: &str, pick: impl Fn(&serde_json::Value) -> bool) -> u64 {
    env.sandbox
        .sandbox()
        .qtickets_orders()
        .iter()
        .filter(|o| o["payed"] == true && o["deleted_at"].is_null())
        .filter(|o| pick(o))
        .find(|o| {
            o["baskets"]
                .as_array()
                .unwrap()
                .iter()
                .any(|b| b["refunded_at"].is_null() && b["deleted_at"].is_null())
        })
        .map(|o| o["id"].as_u64().unwrap())
        .unwrap_or_else(|| panic!("an order {what}, with a ticket to refund"))
}

/// An order's timestamp `key`.
fn instant(o: &serde_json::Value, key: &str) -> chrono::DateTime<chrono::FixedOffset> {
    chrono::DateTime::parse_from_rfc3339(o[key].as_str().unwrap()).unwrap()
}

/// A window run reads the orders created a day before its window and two after; a change
/// it stages for a date at its edges that has facts already (here a refund that never moved
/// `updated_at`, which no later run would see again) is counted there too.
#[tokio::test]
async fn a_window_run_counts_what_it_staged_for_the_dates_at_its_edges() {
    let env = Env::new().await;
    env.run_ok(&[]);
    let facts = env.facts();
    // An order paid and created on a past day, with a ticket still to refund.
    let day = env.sandbox.sandbox().today() - chrono::Days::new(10);
    let moscow_day = |o: &serde_json::Value, key: &str| {
        instant(o, key)
            .with_timezone(&zakaz_core::time::MOSCOW)
            .date_naive()
    };
    let order = refundable_order(&env, "paid and created on the day", |o| {
        moscow_day(o, "payed_at") == day && moscow_day(o, "created_at") == day
    });
    env.control(
        "/qtickets/refund",
        json!({"order_id": order, "bump_updated_at": false}),
    );
    assert_ne!(env.expected(), facts, "the refund changes the day's totals");
    let next = (day + chrono::Days::new(1)).to_string();
    env.run_ok(&["--since", &next, "--until", &next]);
    let refunded = env.query(&format!(
        "SELECT max(is_refunded) FROM {{db}}.stg_qtickets_tickets FINAL WHERE order_id = {order}"
    ));
    assert_eq!(refunded, "1\n", "the window run read the order");
    assert_eq!(env.facts(), env.expected());
}

#[tokio::test]
async fn the_refund_sweep_finds_a_refund_forty_days_late_that_never_moved_updated_at() {
    let env = Env::with(api_sandbox::SandboxConfig {
        days: 60,
        ..Default::default()
    })
    .await;
    env.run_ok(&[]);
    // A show was postponed: a ticket paid more than 40 days ago is refunded now, and the
    // order's `updated_at` does not move.
    let now = env.sandbox.sandbox().now();
    let order = refundable_order(&env, "paid long ago", |o| {
        instant(o, "payed_at").timestamp() < now - 40 * 86_400
    });
    env.control(
        "/qtickets/refund",
        json!({"order_id": order, "bump_updated_at": false}),
    );
    env.control("/advance", json!({"hours": 1}));
    let out = env.run_ok(&[]);
    assert!(
        stderr(&out).contains("mode updated_since"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("refund sweep"), "not due yet");
    assert_ne!(
        env.facts(),
        env.expected(),
        "an incremental run cannot see such a refund"
    );
    // Within a day the sweep reads the orders of shows not yet past again.
    env.control("/advance", json!({"hours": 20}));
    let out = env.run_ok(&[]);
    assert!(stderr(&out).contains("refund sweep"), "{}", stderr(&out));
    assert_eq!(env.facts(), env.expected());
    let swept = env.query(
        "SELECT count() FROM {db}.meta_job_runs WHERE visitParamExtractUInt(metrics, 'sweep_orders') > 0",
    );
    assert_eq!(swept, "1\n");
    let refunded = env.query(&format!(
        "SELECT max(is_refunded) FROM {{db}}.stg_qtickets_tickets FINAL WHERE order_id = {order}"
    ));
    assert_eq!(refunded, "1\n");
}

#[tokio::test]
async fn refunds_that_never_move_updated_at_are_counted_within_a_day() {
    let env = Env::new().await;
    env.control(
        "/config",
        json!({"qtickets_refunds_bump_updated_at": false}),
    );
    env.run_ok(&[]);
    // A day on: new orders, and refunds of older ones that did not touch `updated_at`.
    env.control("/advance", json!({"days": 1}));
    // Without the sweep, an incremental run misses them.
    let without = env.run(&[], &[("QTICKETS_SWEEP_HOURS", "0")]);
    assert!(without.status.success(), "{}", stderr(&without));
    assert_ne!(
        env.facts(),
        env.expected(),
        "refunds the updated_at filter misses"
    );
    let out = env.run_ok(&[]);
    assert!(stderr(&out).contains("refund sweep"), "{}", stderr(&out));
    assert_eq!(env.facts(), env.expected());
}

#[tokio::test]
async fn shapes_the_api_should_not_send_are_warnings_naming_the_field_and_the_rest_loads() {
    let env = Env::new().await;
    env.control(
        "/config",
        json!({"qtickets_shapes": ["nested_seats", "order_without_baskets", "event_without_shows", "quantity_as_text"]}),
    );
    let out = env.run_ok(&[]);
    let log = stderr(&out);
    for (what, needle) in [
        (
            "an order without baskets",
            "`baskets` is missing, not a list",
        ),
        (
            "a quantity as text",
            "`quantity` `1 шт.` is not a non-negative integer: taken as 1",
        ),
        ("an event without shows", "`shows` is missing, not a list"),
        (
            "seats nested by zone",
            "seats came nested by zone, not flat",
        ),
    ] {
        assert!(log.contains(needle), "{what}: {log}");
    }
    assert!(log.contains("basket ") && log.contains("order "), "{log}");
    let run = env.query(
        "SELECT status, visitParamExtractUInt(metrics, 'warnings') > 0, visitParamExtractUInt(metrics, 'shape_warnings') > 0 \
         FROM {db}.meta_job_runs",
    );
    assert_eq!(run, "ok\t1\t1\n");
    // Every served order is staged, the odd ones included.
    let staged = env.query("SELECT count() FROM {db}.stg_qtickets_orders FINAL");
    assert_eq!(
        staged.trim(),
        env.sandbox.sandbox().qtickets_orders().len().to_string()
    );
    // Nested seats still count: capacity of the shows equals the sandbox's seats.
    let capacity = env.query("SELECT sum(capacity) > 0 FROM {db}.fact_qtickets_inventory");
    assert_eq!(capacity, "1\n");
}

#[tokio::test]
async fn a_panic_in_the_run_is_recorded_as_an_error_with_a_redacted_line_and_exits_70() {
    let env = Env::new().await;
    let out = env.run(&[], &[("ZAKAZ_TEST_PANIC", "a bug met sandbox-token")]);
    assert_eq!(out.status.code(), Some(70), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("internal error (a bug; please report it): panicked at ")
            && err.contains("a bug met ***"),
        "{err}"
    );
    assert!(!err.contains("sandbox-token"), "{err}");
    assert!(!err.contains("stack backtrace"), "{err}");
    let journal = env.query("SELECT status, message FROM {db}.meta_job_runs");
    assert!(
        journal.starts_with("error\tinternal error (a bug; please report it): panicked at ")
            && journal.contains("a bug met ***"),
        "{journal}"
    );
}

#[tokio::test]
async fn a_secret_shorter_than_eight_characters_is_refused_naming_the_setting() {
    let env = Env::new().await;
    let out = env.run(&[], &[("QTICKETS_CLIENT_HASH_SALT", "2026")]);
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("QTICKETS_CLIENT_HASH_SALT") && err.contains("at least 8 characters"),
        "{err}"
    );
    assert!(!err.contains("2026"), "the value is not echoed: {err}");
    assert!(
        env.sandbox.sandbox().state().log.is_empty(),
        "nothing was requested"
    );
}

#[tokio::test]
async fn numbers_out_of_range_are_refused_naming_the_setting() {
    let env = Env::new().await;
    let said = env.run_failing(&[], &[("QTICKETS_OVERLAP_MINUTES", "4000000000")], 78);
    assert!(said.contains("QTICKETS_OVERLAP_MINUTES"), "{said}");
    assert!(
        env.sandbox.sandbox().state().log.is_empty(),
        "nothing was requested"
    );
}

#[tokio::test]
async fn a_range_whose_task_dies_fails_the_backfill_instead_of_leaving_a_gap() {
    let env = Env::new().await;
    let out = env.run(
        &[],
        &[
            ("QTICKETS_CONCURRENCY", "4"),
            ("ZAKAZ_TEST_PANIC_RANGE", "1"),
        ],
    );
    assert_eq!(out.status.code(), Some(70), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("test panic in order range 1"),
        "{}",
        stderr(&out)
    );
    let run = env.query("SELECT status FROM {db}.meta_job_runs");
    assert_eq!(run, "error\n");
    // No watermark: the next run backfills everything, gap or not.
    let again = env.run_ok(&[]);
    assert!(
        stderr(&again).contains("mode backfill"),
        "{}",
        stderr(&again)
    );
    assert_eq!(env.facts(), env.expected());
}

#[tokio::test]
async fn a_refund_sweep_cut_by_the_time_budget_goes_on_where_it_stopped() {
    let env = Env::new().await;
    env.control(
        "/config",
        json!({"qtickets_refunds_bump_updated_at": false}),
    );
    env.run_ok(&[]);
    env.control("/advance", json!({"days": 1}));
    // Slow order pages: the budget ends a few pages into the sweep.
    env.control(
        "/faults",
        json!({"route": "/qtickets/api/rest/v1/orders", "delay_ms": 300}),
    );
    let first = env.run(&[], &[("QTICKETS_TIME_BUDGET_SECS", "2")]);
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(
        stderr(&first).contains("refund sweep stopped at the time budget"),
        "{}",
        stderr(&first)
    );
    let cursor: u64 = env
        .query("SELECT max(visitParamExtractUInt(metrics, 'sweep_resume_after')) FROM {db}.meta_job_runs")
        .trim()
        .parse()
        .unwrap();
    assert!(cursor > 0, "the stop is recorded");
    let warned = env.query(
        "SELECT count() FROM {db}.meta_job_runs WHERE visitParamExtractUInt(metrics, 'sweep_resume_after') > 0 AND visitParamExtractUInt(metrics, 'warnings') > 0",
    );
    assert_eq!(warned, "1\n", "an unfinished sweep is a warning");
    env.sandbox.sandbox().state().faults.clear();
    let second = env.run_ok(&[]);
    assert!(
        stderr(&second).contains("refund sweep re-read"),
        "{}",
        stderr(&second)
    );
    // The second sweep read only orders after the cursor.
    let asked: Vec<u64> = env
        .sandbox
        .sandbox()
        .state()
        .log
        .iter()
        .rev()
        .take_while(|r| r["path"] != "/qtickets/api/rest/v1/events")
        .filter_map(|r| {
            let body: serde_json::Value = serde_json::from_str(r["body"].as_str()?).ok()?;
            let cond = body["where"].as_array()?.first()?.clone();
            (cond["operator"] == "in").then(|| cond["value"].as_array().cloned())?
        })
        .flatten()
        .filter_map(|v| v.as_u64())
        .collect();
    assert!(!asked.is_empty());
    assert!(asked.iter().all(|id| *id > cursor), "{cursor}: {asked:?}");
    assert_eq!(env.facts(), env.expected());
}

#[tokio::test]
async fn a_staging_insert_that_fails_fails_the_run_naming_its_table() {
    let env = Env::new().await;
    // Staging runs beside the paging: its failure must still end the run, as itself.
    env.query("DROP TABLE {db}.stg_qtickets_tickets");
    let said = env.run_failing(&[], &[("QTICKETS_STAGE_BATCH_ORDERS", "50")], 1);
    assert!(
        said.contains("insert into `stg_qtickets_tickets` failed"),
        "{said}"
    );
    assert_eq!(
        env.query("SELECT status FROM {db}.meta_job_runs"),
        "error\n"
    );
}

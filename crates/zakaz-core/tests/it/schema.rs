use zakaz_core::schema::{self, MigrationReport};
use zakaz_core::testing::{TestDb, query_tsv};

const TABLES: &[&str] = &[
    "alerts",
    "dim_events",
    "fact_direct_daily",
    "fact_qtickets_inventory",
    "fact_qtickets_sales_daily",
    "fact_qtickets_sales_utm_daily",
    "fact_vk_ads_daily",
    "meta_job_run_events",
    "meta_job_runs",
    "schema_migrations",
    "stg_mail_failures",
    "stg_mail_sales",
    "stg_qtickets_dirty_dates",
    "stg_qtickets_orders",
    "stg_qtickets_sale_dates",
    "stg_qtickets_tickets",
    "v_data_freshness",
    "v_marketing_daily",
    "v_sales_daily",
];

#[tokio::test]
async fn migrations_apply_to_an_empty_server_then_are_a_no_op() {
    let db = TestDb::empty();
    let ch = db.connect().await;
    assert_eq!(schema::current_version(&ch).await.unwrap(), 0);

    let first = schema::migrate(&ch).await.unwrap();
    let all: Vec<u32> = schema::MIGRATIONS.iter().map(|m| m.version).collect();
    assert_eq!(
        first,
        MigrationReport {
            applied: all.clone(),
            already: vec![]
        }
    );

    let tables = query_tsv(&format!(
        "SELECT name FROM system.tables WHERE database = '{}' ORDER BY name",
        db.name
    ));
    assert_eq!(tables.lines().collect::<Vec<_>>(), TABLES);

    let second = schema::migrate(&ch).await.unwrap();
    assert_eq!(
        second,
        MigrationReport {
            applied: vec![],
            already: all
        }
    );
    assert_eq!(
        schema::current_version(&ch).await.unwrap(),
        schema::latest_version()
    );
    let rows = query_tsv(&format!(
        "SELECT count() FROM `{}`.schema_migrations FINAL",
        db.name
    ));
    assert_eq!(rows.trim(), schema::MIGRATIONS.len().to_string());

    // `ensure` (what every binary calls at start) is a no-op on an up-to-date schema.
    schema::ensure(&ch).await.unwrap();
}

#[tokio::test]
async fn freshness_view_lists_every_source_even_when_empty() {
    let (db, _ch) = TestDb::migrated().await;
    let rows = query_tsv(&format!(
        "SELECT source, total_rows, isNull(latest_date), isNull(days_behind) FROM `{}`.v_data_freshness ORDER BY source",
        db.name
    ));
    // A source that never loaded has no date (not 1970 and 20 000 days behind).
    assert_eq!(
        rows,
        "direct\t0\t1\t1\ngmail_ingest\t0\t1\t1\nqtickets\t0\t1\t1\nvk_ads\t0\t1\t1\n"
    );
    // Every source named in the job table has a row in the view.
    for job in zakaz_core::jobs::JOBS {
        if let Some(f) = job.freshness {
            assert!(
                rows.contains(f.source),
                "{} missing from v_data_freshness",
                f.source
            );
        }
    }
}

#[tokio::test]
async fn freshness_view_counts_days_behind() {
    let (db, ch) = TestDb::migrated().await;
    ch.execute(
        "INSERT INTO fact_vk_ads_daily (stat_date, ad_plan_id, ad_group_id, banner_id, spent, _version)
         SELECT toDate(now(), 'Europe/Moscow') - 1, 1, 2, 3, toDecimal64(10.5, 2), 1",
    )
    .await
    .unwrap();
    let row = query_tsv(&format!(
        "SELECT days_behind, total_rows, latest_date = toDate(now(), 'Europe/Moscow') - 1 FROM `{}`.v_data_freshness WHERE source = 'vk_ads'",
        db.name
    ));
    assert_eq!(row, "1\t1\t1\n");
    // The shared freshness reader sees the same row.
    let rows = zakaz_core::checks::freshness_rows(&ch).await.unwrap();
    let vk = rows.iter().find(|r| r.source == "vk_ads").unwrap();
    assert_eq!(vk.total_rows, 1);
    assert!(vk.latest().is_some());
    let direct = rows.iter().find(|r| r.source == "direct").unwrap();
    assert_eq!((direct.latest_date.as_str(), direct.total_rows), ("", 0));
}

#[tokio::test]
async fn marketing_view_puts_spend_against_the_sales_attributed_by_utm_source() {
    let (db, ch) = TestDb::migrated().await;
    // One day, two cities. Moscow: VK spent 100.00 + 50.50 (two banners) and sold 3 tickets
    // for a net 400.00 through `utm_source=vk`, 1 ticket (80.00) through `VK` (case does not
    // matter); Direct cost 200.00 and sold 2 tickets (net 150.00) through `yandex`. Kazan: VK
    // spent 10.00 and sold nothing; a sale through `telegram` belongs to no ad source.
    for sql in [
        "INSERT INTO fact_vk_ads_daily (stat_date, ad_plan_id, ad_group_id, banner_id, shows, clicks, spent, city, _version) VALUES \
         ('2026-11-24', 1, 10, 100, 1000, 10, 100.00, 'Москва', 1), ('2026-11-24', 1, 10, 101, 500, 5, 50.50, 'Москва', 1), \
         ('2026-11-24', 2, 20, 200, 300, 3, 10.00, 'Казань', 1)",
        "INSERT INTO fact_direct_daily (stat_date, client_login, campaign_id, ad_group_id, ad_id, impressions, clicks, cost, city, _version) VALUES \
         ('2026-11-24', 'a', 5, 50, 500, 2000, 40, 200.00, 'Москва', 1)",
        "INSERT INTO fact_qtickets_sales_utm_daily (sales_date, event_id, city, utm_source, tickets_sold, revenue, refunds, net_revenue, orders, _version) VALUES \
         ('2026-11-24', 7, 'Москва', 'vk', 3, 450.00, 50.00, 400.00, 2, 1), ('2026-11-24', 8, 'Москва', 'VK', 1, 80.00, 0, 80.00, 1, 1), \
         ('2026-11-24', 7, 'Москва', 'yandex', 2, 150.00, 0, 150.00, 1, 1), ('2026-11-24', 7, 'Москва', 'telegram', 9, 900.00, 0, 900.00, 3, 1)",
    ] {
        ch.execute(sql).await.unwrap();
    }
    let rows = query_tsv(&format!(
        "SELECT date, city, source, spend, shows, clicks, tickets, net_revenue, romi FROM `{}`.v_marketing_daily ORDER BY city, source",
        db.name
    ));
    // ROMI = (net revenue − spend) / spend: VK Moscow (480 − 150.50) / 150.50 = 2.1894;
    // Direct Moscow (150 − 200) / 200 = −0.25; VK Kazan (0 − 10) / 10 = −1.
    assert_eq!(
        rows,
        "2026-11-24\tКазань\tvk\t10.00\t300\t3\t0\t0.00\t-1\n\
         2026-11-24\tМосква\tdirect\t200.00\t2000\t40\t2\t150.00\t-0.25\n\
         2026-11-24\tМосква\tvk\t150.50\t1500\t15\t4\t480.00\t2.1894\n"
    );
}

#[tokio::test]
async fn a_later_migration_adds_a_column_once_even_when_rerun() {
    use zakaz_core::schema::{Migration, Step, migrate_with};
    const STEPS: &[Step] = &[Step::AddColumn {
        table: "dim_events",
        column: "age_limit",
        definition: "UInt8 DEFAULT 0",
    }];
    let with = |extra: &[(u32, &'static str)]| -> Vec<Migration> {
        schema::MIGRATIONS
            .iter()
            .map(|m| Migration {
                version: m.version,
                name: m.name,
                steps: m.steps,
            })
            .chain(extra.iter().map(|(version, name)| Migration {
                version: *version,
                name,
                steps: STEPS,
            }))
            .collect()
    };
    let (db, ch) = TestDb::migrated().await;
    let report = migrate_with(&ch, &with(&[(999, "test: add a column")]))
        .await
        .unwrap();
    assert_eq!(report.applied, vec![999]);
    // The same column again (a second binary racing, or a re-shipped step): skipped, no error.
    let report = migrate_with(
        &ch,
        &with(&[(999, "test: add a column"), (1000, "test: add it again")]),
    )
    .await
    .unwrap();
    assert_eq!(report.applied, vec![1000]);
    let cols = query_tsv(&format!(
        "SELECT count() FROM system.columns WHERE database = '{}' AND table = 'dim_events' AND name = 'age_limit'",
        db.name
    ));
    assert_eq!(cols.trim(), "1");
}

#[test]
fn test_databases_a_killed_run_left_are_dropped_by_the_next_run() {
    // Test databases are named and judged by the server's clock, whatever the test's is.
    let now: u64 = query_tsv("SELECT toUnixTimestamp(now())")
        .trim()
        .parse()
        .unwrap();
    let stale = format!("zakaz_test_{}_1_0_0", now - 7 * 3600);
    let fresh = format!("zakaz_test_{now}_1_0_1");
    for db in [&stale, &fresh] {
        query_tsv(&format!("CREATE DATABASE IF NOT EXISTS `{db}`"));
    }
    zakaz_core::testing::drop_stale_databases();
    let left = query_tsv(&format!(
        "SELECT name FROM system.databases WHERE name IN ('{stale}', '{fresh}')"
    ));
    query_tsv(&format!("DROP DATABASE IF EXISTS `{fresh}`"));
    assert_eq!(
        left,
        format!("{fresh}\n"),
        "the stale one is gone, the fresh one kept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn binaries_migrating_at_once_all_succeed_with_one_schema() {
    // After an upgrade every timer may fire within the same second: each binary migrates.
    let db = TestDb::empty();
    let mut runs = tokio::task::JoinSet::new();
    for _ in 0..6 {
        let ch = db.connect().await;
        runs.spawn(async move { schema::migrate(&ch).await });
    }
    while let Some(run) = runs.join_next().await {
        let report = run.unwrap();
        assert!(report.is_ok(), "{:#}", report.unwrap_err());
    }
    let ch = db.connect().await;
    assert_eq!(
        schema::current_version(&ch).await.unwrap(),
        schema::latest_version()
    );
    let tables = query_tsv(&format!(
        "SELECT name FROM system.tables WHERE database = '{}' ORDER BY name",
        db.name
    ));
    assert_eq!(tables.lines().collect::<Vec<_>>(), TABLES);
    let columns = query_tsv(&format!(
        "SELECT count() FROM system.columns WHERE database = '{}' AND table = 'fact_vk_ads_daily' AND name = 'vk_goals'",
        db.name
    ));
    assert_eq!(columns, "1\n");
}

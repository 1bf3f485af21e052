//! Versioned, idempotent ClickHouse migrations, embedded in every binary.
//!
//! Every statement is `IF NOT EXISTS`-safe, so two binaries starting at once can both apply a
//! migration without harm. `{db}` in a statement is replaced by the configured database.
//! Written for Debian's ClickHouse 18.16 as much as for current releases: no LowCardinality,
//! DateTime64, TTL, Map or JSON types; `ADD COLUMN IF NOT EXISTS` is unavailable there, so
//! later migrations add columns through [`Step::AddColumn`], which checks `system.columns`.
//!
//! On a cluster (`CLICKHOUSE_CLUSTER`) the same migrations are rewritten as they are applied
//! ([`cluster_statement`]): `ON CLUSTER` on every statement, `Replicated*` engines whose
//! ZooKeeper path comes from the servers' macros (`/clickhouse/tables/{shard}/<db>/<table>`,
//! replica `{replica}`), views created on every replica. Before changing anything every
//! replica must answer; afterwards every replica is checked to hold every table and view
//! (what one lacks is created again, else the half-migrated state is the error).

use crate::ch::{Ch, short};
use crate::error::{ConfigError, UnavailableError};

pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub steps: &'static [Step],
}

pub enum Step {
    /// A statement that is safe to run twice (`CREATE … IF NOT EXISTS`).
    Sql(&'static str),
    /// `ALTER TABLE {db}.table ADD COLUMN name type`, skipped when the column exists.
    AddColumn {
        table: &'static str,
        column: &'static str,
        definition: &'static str,
    },
}

/// Every migration, in order. Append; never edit one that has shipped.
pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "initial schema: run journal, alerts, QTickets, VK Ads, Direct, mail, freshness",
    steps: &[
        // One row per state change of a run (`running`, then `ok`/`error`); the view below
        // folds them into one row per run and tells a run that never finished from a live one.
        Step::Sql(
            "CREATE TABLE IF NOT EXISTS {db}.meta_job_run_events (
                job String,
                run_id String,
                seq UInt8,
                status String,
                started_at DateTime('Europe/Moscow'),
                finished_at Nullable(DateTime('Europe/Moscow')),
                deadline_at DateTime('Europe/Moscow'),
                rows_processed UInt64,
                message String,
                metrics String,
                window_from Nullable(Date),
                window_to Nullable(Date),
                host String,
                pid UInt32
            ) ENGINE = MergeTree
            PARTITION BY toYYYYMM(started_at)
            ORDER BY (job, started_at, run_id, seq)",
        ),
        // Columns are renamed in the inner query so that aliases of the outer one never
        // shadow them (ClickHouse substitutes aliases inside other expressions).
        Step::Sql(
            "CREATE VIEW IF NOT EXISTS {db}.meta_job_runs AS
            SELECT
                job,
                run_id,
                min(e_started_at) AS started_at,
                argMax(e_finished_at, e_seq) AS finished_at,
                if(argMax(e_status, e_seq) = 'running' AND now() > max(e_deadline_at),
                   'unfinished', argMax(e_status, e_seq)) AS status,
                argMax(e_rows, e_seq) AS rows_processed,
                argMax(e_message, e_seq) AS message,
                argMax(e_metrics, e_seq) AS metrics,
                any(e_window_from) AS window_from,
                any(e_window_to) AS window_to,
                any(e_host) AS host,
                any(e_pid) AS pid,
                max(e_deadline_at) AS deadline_at
            FROM (
                SELECT job, run_id, seq AS e_seq, status AS e_status,
                       started_at AS e_started_at, finished_at AS e_finished_at,
                       deadline_at AS e_deadline_at, rows_processed AS e_rows,
                       message AS e_message, metrics AS e_metrics,
                       window_from AS e_window_from, window_to AS e_window_to,
                       host AS e_host, pid AS e_pid
                FROM {db}.meta_job_run_events
            )
            GROUP BY job, run_id",
        ),
        Step::Sql(
            "CREATE TABLE IF NOT EXISTS {db}.alerts (
                created_at DateTime('Europe/Moscow'),
                alert_id String,
                fingerprint String,
                job String,
                alert_type String,
                severity String,
                state String,
                title String,
                message String,
                details String,
                channels String,
                channel_errors String
            ) ENGINE = MergeTree
            PARTITION BY toYYYYMM(created_at)
            ORDER BY (fingerprint, created_at)",
        ),
        Step::Sql(
            "CREATE TABLE IF NOT EXISTS {db}.dim_events (
                event_id UInt64,
                name String,
                city String,
                city_timezone String,
                place_name String,
                place_address String,
                currency String,
                is_active UInt8,
                is_deleted UInt8,
                first_show_at Nullable(DateTime('Europe/Moscow')),
                last_show_at Nullable(DateTime('Europe/Moscow')),
                shows UInt32,
                loaded_at DateTime('Europe/Moscow'),
                _version UInt64
            ) ENGINE = ReplacingMergeTree(_version)
            ORDER BY event_id",
        ),
        Step::Sql(
            "CREATE TABLE IF NOT EXISTS {db}.stg_qtickets_orders (
                order_id UInt64,
                event_id UInt64,
                payed UInt8,
                payed_at Nullable(DateTime('Europe/Moscow')),
                created_at DateTime('Europe/Moscow'),
                updated_at DateTime('Europe/Moscow'),
                deleted_at Nullable(DateTime('Europe/Moscow')),
                price Decimal(18, 2),
                original_price Decimal(18, 2),
                currency String,
                tickets UInt32,
                utm_source String,
                utm_medium String,
                utm_campaign String,
                utm_content String,
                utm_term String,
                client_hash String,
                loaded_at DateTime('Europe/Moscow'),
                _version UInt64
            ) ENGINE = ReplacingMergeTree(_version)
            ORDER BY order_id",
        ),
        Step::Sql(
            "CREATE TABLE IF NOT EXISTS {db}.stg_qtickets_tickets (
                basket_id UInt64,
                order_id UInt64,
                event_id UInt64,
                show_id UInt64,
                seat_id String,
                seat_name String,
                price Decimal(18, 2),
                original_price Decimal(18, 2),
                discount_value Decimal(18, 2),
                quantity UInt32,
                refunded_amount Decimal(18, 2),
                is_paid UInt8,
                is_cancelled UInt8,
                is_refunded UInt8,
                payed_at Nullable(DateTime('Europe/Moscow')),
                created_at DateTime('Europe/Moscow'),
                deleted_at Nullable(DateTime('Europe/Moscow')),
                refunded_at Nullable(DateTime('Europe/Moscow')),
                utm_source String,
                utm_medium String,
                utm_campaign String,
                utm_content String,
                utm_term String,
                loaded_at DateTime('Europe/Moscow'),
                _version UInt64
            ) ENGINE = ReplacingMergeTree(_version)
            ORDER BY (order_id, basket_id)",
        ),
        Step::Sql(
            "CREATE TABLE IF NOT EXISTS {db}.fact_qtickets_sales_daily (
                sales_date Date,
                event_id UInt64,
                city String,
                tickets_sold UInt64,
                revenue Decimal(18, 2),
                refunds Decimal(18, 2),
                net_revenue Decimal(18, 2),
                orders UInt64,
                loaded_at DateTime('Europe/Moscow'),
                _version UInt64
            ) ENGINE = ReplacingMergeTree(_version)
            PARTITION BY toYYYYMM(sales_date)
            ORDER BY (sales_date, event_id, city)",
        ),
        Step::Sql(
            "CREATE TABLE IF NOT EXISTS {db}.fact_qtickets_sales_utm_daily (
                sales_date Date,
                event_id UInt64,
                city String,
                utm_source String,
                utm_medium String,
                utm_campaign String,
                utm_content String,
                utm_term String,
                tickets_sold UInt64,
                revenue Decimal(18, 2),
                refunds Decimal(18, 2),
                net_revenue Decimal(18, 2),
                orders UInt64,
                loaded_at DateTime('Europe/Moscow'),
                _version UInt64
            ) ENGINE = ReplacingMergeTree(_version)
            PARTITION BY toYYYYMM(sales_date)
            ORDER BY (sales_date, event_id, city, utm_source, utm_medium, utm_campaign, utm_content, utm_term)",
        ),
        Step::Sql(
            "CREATE TABLE IF NOT EXISTS {db}.fact_qtickets_inventory (
                snapshot_at DateTime('Europe/Moscow'),
                event_id UInt64,
                show_id UInt64,
                city String,
                show_start Nullable(DateTime('Europe/Moscow')),
                capacity UInt64,
                sold UInt64,
                free UInt64,
                run_id String
            ) ENGINE = MergeTree
            PARTITION BY toYYYYMM(snapshot_at)
            ORDER BY (event_id, show_id, snapshot_at)",
        ),
        Step::Sql(
            "CREATE TABLE IF NOT EXISTS {db}.fact_vk_ads_daily (
                stat_date Date,
                ad_plan_id UInt64,
                ad_group_id UInt64,
                banner_id UInt64,
                ad_plan_name String,
                banner_name String,
                shows UInt64,
                clicks UInt64,
                goals UInt64,
                spent Decimal(18, 2),
                utm_source String,
                utm_medium String,
                utm_campaign String,
                utm_content String,
                utm_term String,
                loaded_at DateTime('Europe/Moscow'),
                _version UInt64
            ) ENGINE = ReplacingMergeTree(_version)
            PARTITION BY toYYYYMM(stat_date)
            ORDER BY (stat_date, ad_plan_id, ad_group_id, banner_id)",
        ),
        Step::Sql(
            "CREATE TABLE IF NOT EXISTS {db}.fact_direct_daily (
                stat_date Date,
                client_login String,
                campaign_id UInt64,
                campaign_name String,
                ad_group_id UInt64,
                ad_id UInt64,
                impressions UInt64,
                clicks UInt64,
                cost Decimal(18, 2),
                loaded_at DateTime('Europe/Moscow'),
                _version UInt64
            ) ENGINE = ReplacingMergeTree(_version)
            PARTITION BY toYYYYMM(stat_date)
            ORDER BY (stat_date, client_login, campaign_id, ad_group_id, ad_id)",
        ),
        Step::Sql(
            "CREATE TABLE IF NOT EXISTS {db}.stg_mail_sales (
                report_date Date,
                event_name String,
                city String,
                tickets_sold UInt64,
                revenue Decimal(18, 2),
                refunds Decimal(18, 2),
                currency String,
                message_id String,
                row_no UInt32,
                received_at DateTime('Europe/Moscow'),
                loaded_at DateTime('Europe/Moscow'),
                _version UInt64
            ) ENGINE = ReplacingMergeTree(_version)
            PARTITION BY toYYYYMM(report_date)
            ORDER BY (message_id, row_no)",
        ),
        // One row per source, named as in the job table. An empty source shows 1970-01-01 and
        // total_rows = 0, which every freshness threshold treats as stale.
        Step::Sql(
            "CREATE VIEW IF NOT EXISTS {db}.v_data_freshness AS
            SELECT 'qtickets' AS source, max(sales_date) AS latest_date,
                   toInt32(toDate(now(), 'Europe/Moscow')) - toInt32(max(sales_date)) AS days_behind,
                   count() AS total_rows
            FROM {db}.fact_qtickets_sales_daily FINAL
            UNION ALL
            SELECT 'vk_ads', max(stat_date),
                   toInt32(toDate(now(), 'Europe/Moscow')) - toInt32(max(stat_date)), count()
            FROM {db}.fact_vk_ads_daily FINAL
            UNION ALL
            SELECT 'direct', max(stat_date),
                   toInt32(toDate(now(), 'Europe/Moscow')) - toInt32(max(stat_date)), count()
            FROM {db}.fact_direct_daily FINAL
            UNION ALL
            SELECT 'gmail_ingest', max(report_date),
                   toInt32(toDate(now(), 'Europe/Moscow')) - toInt32(max(report_date)), count()
            FROM {db}.stg_mail_sales FINAL",
        ),
    ],
},
Migration {
    version: 2,
    name: "v_data_freshness: a source that never loaded has NULL dates, not 1970",
    steps: &[
        // Views hold no data: replacing one is safe, and both steps can run twice.
        Step::Sql("DROP TABLE IF EXISTS {db}.v_data_freshness"),
        Step::Sql(
            "CREATE VIEW IF NOT EXISTS {db}.v_data_freshness AS
            SELECT 'qtickets' AS source,
                   if(count() = 0, NULL, toNullable(max(sales_date))) AS latest_date,
                   if(count() = 0, NULL, toNullable(toInt32(toDate(now(), 'Europe/Moscow')) - toInt32(max(sales_date)))) AS days_behind,
                   count() AS total_rows
            FROM {db}.fact_qtickets_sales_daily FINAL
            UNION ALL
            SELECT 'vk_ads', if(count() = 0, NULL, toNullable(max(stat_date))),
                   if(count() = 0, NULL, toNullable(toInt32(toDate(now(), 'Europe/Moscow')) - toInt32(max(stat_date)))), count()
            FROM {db}.fact_vk_ads_daily FINAL
            UNION ALL
            SELECT 'direct', if(count() = 0, NULL, toNullable(max(stat_date))),
                   if(count() = 0, NULL, toNullable(toInt32(toDate(now(), 'Europe/Moscow')) - toInt32(max(stat_date)))), count()
            FROM {db}.fact_direct_daily FINAL
            UNION ALL
            SELECT 'gmail_ingest', if(count() = 0, NULL, toNullable(max(report_date))),
                   if(count() = 0, NULL, toNullable(toInt32(toDate(now(), 'Europe/Moscow')) - toInt32(max(report_date)))), count()
            FROM {db}.stg_mail_sales FINAL",
        ),
    ],
},
Migration {
    version: 3,
    name: "stg_qtickets_dirty_dates: dates whose facts a run must recompute survive a failed run",
    steps: &[
        // A date is marked dirty (1) before the orders that touch it are staged, and clean (0)
        // once its facts are rewritten; the latest mark wins.
        Step::Sql(
            "CREATE TABLE IF NOT EXISTS {db}.stg_qtickets_dirty_dates (
                sales_date Date,
                dirty UInt8,
                run_id String,
                marked_at DateTime('Europe/Moscow'),
                _version UInt64
            ) ENGINE = ReplacingMergeTree(_version)
            ORDER BY sales_date",
        ),
    ],
},
Migration {
    version: 4,
    name: "stg_qtickets_sale_dates: which orders were paid on a date, so a fact recompute reads only those",
    steps: &[
        // One row per (payment date, order) ever staged. An order whose payment moved keeps
        // its old row too: the recompute filters by the staged payment date, so a stale row
        // costs a lookup, never a wrong total.
        Step::Sql(
            "CREATE TABLE IF NOT EXISTS {db}.stg_qtickets_sale_dates (
                sales_date Date,
                order_id UInt64,
                _version UInt64
            ) ENGINE = ReplacingMergeTree(_version)
            PARTITION BY toYYYYMM(sales_date)
            ORDER BY (sales_date, order_id)",
        ),
        // Orders staged before this migration; twice is harmless (same keys, replaced).
        Step::Sql(
            "INSERT INTO {db}.stg_qtickets_sale_dates (sales_date, order_id, _version)
            SELECT DISTINCT toDate(assumeNotNull(payed_at), 'Europe/Moscow'), order_id, 1
            FROM {db}.stg_qtickets_orders WHERE payed_at IS NOT NULL",
        ),
    ],
},
Migration {
    version: 5,
    name: "alerts.created_us: state changes ordered below the second",
    steps: &[
        // A firing and its resolution can land in the same second; the latest state must not
        // depend on which row a one-second `argMax` happens to pick.
        Step::AddColumn {
            table: "alerts",
            column: "created_us",
            definition: "UInt64 DEFAULT 0",
        },
    ],
},
Migration {
    version: 6,
    name: "ad statistics: account, group names, conversions and city; v_marketing_daily (spend against sales)",
    steps: &[
        // The VK account (agency client username, `""` for the client itself) and the city
        // from `utm_content`; Direct's conversions (NULL where a campaign has no goals) and
        // the city its campaign name gives.
        Step::AddColumn {
            table: "fact_vk_ads_daily",
            column: "account",
            definition: "String DEFAULT ''",
        },
        Step::AddColumn {
            table: "fact_vk_ads_daily",
            column: "ad_group_name",
            definition: "String DEFAULT ''",
        },
        Step::AddColumn {
            table: "fact_vk_ads_daily",
            column: "city",
            definition: "String DEFAULT ''",
        },
        Step::AddColumn {
            table: "fact_direct_daily",
            column: "ad_group_name",
            definition: "String DEFAULT ''",
        },
        Step::AddColumn {
            table: "fact_direct_daily",
            column: "conversions",
            definition: "Nullable(UInt64)",
        },
        Step::AddColumn {
            table: "fact_direct_daily",
            column: "city",
            definition: "String DEFAULT ''",
        },
        // Per date × city × source: what the ads cost and what QTickets attributes to them by
        // `utm_source` (docs/architecture.md, "Attribution"). ROMI = (net revenue − spend) /
        // spend, NULL without spend.
        Step::Sql(
            "CREATE VIEW IF NOT EXISTS {db}.v_marketing_daily AS
            SELECT day AS date, place AS city, channel AS source,
                   sum(x_spend) AS spend, sum(x_shows) AS shows, sum(x_clicks) AS clicks,
                   sum(x_tickets) AS tickets, sum(x_net) AS net_revenue,
                   if(sum(x_spend) > 0,
                      round((toFloat64(sum(x_net)) - toFloat64(sum(x_spend))) / toFloat64(sum(x_spend)), 4),
                      NULL) AS romi
            FROM (
                SELECT stat_date AS day, city AS place, 'vk' AS channel, spent AS x_spend,
                       shows AS x_shows, clicks AS x_clicks, toUInt64(0) AS x_tickets,
                       toDecimal64(0, 2) AS x_net
                FROM {db}.fact_vk_ads_daily FINAL
                UNION ALL
                SELECT stat_date AS day, city AS place, 'direct' AS channel, cost AS x_spend,
                       impressions AS x_shows, clicks AS x_clicks, toUInt64(0) AS x_tickets,
                       toDecimal64(0, 2) AS x_net
                FROM {db}.fact_direct_daily FINAL
                UNION ALL
                SELECT day, place, channel, x_spend, x_shows, x_clicks, x_tickets, x_net
                FROM (
                    SELECT sales_date AS day, city AS place,
                           multiIf(lower(utm_source) IN ('vk', 'vkontakte', 'vk_ads', 'mytarget'), 'vk',
                                   lower(utm_source) IN ('yandex', 'direct', 'yandex_direct', 'ya'), 'direct',
                                   '') AS channel,
                           toDecimal64(0, 2) AS x_spend, toUInt64(0) AS x_shows,
                           toUInt64(0) AS x_clicks, tickets_sold AS x_tickets, net_revenue AS x_net
                    FROM {db}.fact_qtickets_sales_utm_daily FINAL
                )
                WHERE channel != ''
            )
            GROUP BY day, place, channel",
        ),
    ],
},
Migration {
    version: 7,
    name: "mail channel: stg_mail_failures (reports that keep failing) and v_sales_daily (API first, mail where it is missing)",
    steps: &[
        // Per message: how many runs in a row failed to parse its report (0 once it loads).
        Step::Sql(
            "CREATE TABLE IF NOT EXISTS {db}.stg_mail_failures (
                message_id String,
                attempts UInt32,
                last_error String,
                last_at DateTime('Europe/Moscow'),
                _version UInt64
            ) ENGINE = ReplacingMergeTree(_version)
            ORDER BY message_id",
        ),
        // The daily sales a dashboard shows, per date and city, with the source of each
        // date: QTickets' facts for every date the API loader covered; for the other dates the
        // newest report e-mail of that date (by when Gmail received it: `received_at` is the
        // message's `internalDate`). docs/architecture.md, "The mail channel".
        Step::Sql(
            "CREATE VIEW IF NOT EXISTS {db}.v_sales_daily AS
            SELECT day AS date, place AS city, t AS tickets_sold, r AS revenue, f AS refunds,
                   n AS net_revenue, 'qtickets' AS source
            FROM (
                SELECT sales_date AS day, city AS place, sum(tickets_sold) AS t,
                       sum(revenue) AS r, sum(refunds) AS f, sum(net_revenue) AS n
                FROM {db}.fact_qtickets_sales_daily FINAL
                GROUP BY sales_date, city
            )
            UNION ALL
            SELECT day AS date, place AS city, t AS tickets_sold, r AS revenue, f AS refunds,
                   r - f AS net_revenue, 'mail' AS source
            FROM (
                SELECT report_date AS day, city AS place, sum(tickets_sold) AS t,
                       sum(revenue) AS r, sum(refunds) AS f
                FROM {db}.stg_mail_sales FINAL
                WHERE (report_date, message_id) IN (
                        SELECT report_date, argMax(message_id, received_at)
                        FROM {db}.stg_mail_sales FINAL GROUP BY report_date)
                  AND report_date NOT IN (SELECT sales_date FROM {db}.fact_qtickets_sales_daily FINAL)
                GROUP BY report_date, city
            )",
        ),
    ],
},
Migration {
    version: 8,
    name: "meta_job_runs: last_status, so a job judges killed runs by its own clock",
    steps: &[
        // `status` stays as people's queries expect it (a `running` run past its deadline is
        // `unfinished` by the server's clock); `last_status` is the recorded state, which the
        // jobs compare with their own clock (journal::runs_as_of).
        Step::Sql("DROP TABLE IF EXISTS {db}.meta_job_runs"),
        Step::Sql(
            "CREATE VIEW IF NOT EXISTS {db}.meta_job_runs AS
            SELECT
                job,
                run_id,
                min(e_started_at) AS started_at,
                argMax(e_finished_at, e_seq) AS finished_at,
                if(argMax(e_status, e_seq) = 'running' AND now() > max(e_deadline_at),
                   'unfinished', argMax(e_status, e_seq)) AS status,
                argMax(e_rows, e_seq) AS rows_processed,
                argMax(e_message, e_seq) AS message,
                argMax(e_metrics, e_seq) AS metrics,
                any(e_window_from) AS window_from,
                any(e_window_to) AS window_to,
                any(e_host) AS host,
                any(e_pid) AS pid,
                max(e_deadline_at) AS deadline_at,
                argMax(e_status, e_seq) AS last_status
            FROM (
                SELECT job, run_id, seq AS e_seq, status AS e_status,
                       started_at AS e_started_at, finished_at AS e_finished_at,
                       deadline_at AS e_deadline_at, rows_processed AS e_rows,
                       message AS e_message, metrics AS e_metrics,
                       window_from AS e_window_from, window_to AS e_window_to,
                       host AS e_host, pid AS e_pid
                FROM {db}.meta_job_run_events
            )
            GROUP BY job, run_id",
        ),
    ],
},
Migration {
    version: 9,
    name: "VK pixel conversions (vk_goals); v_marketing_daily gains conversions and VK's own utm_source spellings",
    steps: &[
        // `goals` stays Top@Mail.ru's counter goals (`base.goals`); `vk_goals` is VK's pixel
        // (`base.vk.goals`), which the cabinet shows as results.
        Step::AddColumn {
            table: "fact_vk_ads_daily",
            column: "vk_goals",
            definition: "UInt64 DEFAULT 0",
        },
        Step::Sql("DROP TABLE IF EXISTS {db}.v_marketing_daily"),
        // Conversions: VK's pixel conversions (`vk_goals`: the VK Ads cabinet's results, which
        // the business's pixel feeds; Top@Mail.ru goals need a counter it does not run) and
        // Direct's `Conversions` (goals of the campaign's Metrica counter). `vkads` is the
        // spelling VK's own help uses beside `vk_ads` (docs/vendor-facts.md).
        Step::Sql(
            "CREATE VIEW IF NOT EXISTS {db}.v_marketing_daily AS
            SELECT day AS date, place AS city, channel AS source,
                   sum(x_spend) AS spend, sum(x_shows) AS shows, sum(x_clicks) AS clicks,
                   sum(x_conversions) AS conversions,
                   sum(x_tickets) AS tickets, sum(x_net) AS net_revenue,
                   if(sum(x_spend) > 0,
                      round((toFloat64(sum(x_net)) - toFloat64(sum(x_spend))) / toFloat64(sum(x_spend)), 4),
                      NULL) AS romi
            FROM (
                SELECT stat_date AS day, city AS place, 'vk' AS channel, spent AS x_spend,
                       shows AS x_shows, clicks AS x_clicks, vk_goals AS x_conversions,
                       toUInt64(0) AS x_tickets, toDecimal64(0, 2) AS x_net
                FROM {db}.fact_vk_ads_daily FINAL
                UNION ALL
                SELECT stat_date AS day, city AS place, 'direct' AS channel, cost AS x_spend,
                       impressions AS x_shows, clicks AS x_clicks,
                       ifNull(conversions, toUInt64(0)) AS x_conversions,
                       toUInt64(0) AS x_tickets, toDecimal64(0, 2) AS x_net
                FROM {db}.fact_direct_daily FINAL
                UNION ALL
                SELECT day, place, channel, x_spend, x_shows, x_clicks, x_conversions, x_tickets, x_net
                FROM (
                    SELECT sales_date AS day, city AS place,
                           multiIf(lower(utm_source) IN ('vk', 'vkontakte', 'vk_ads', 'vkads', 'mytarget'), 'vk',
                                   lower(utm_source) IN ('yandex', 'direct', 'yandex_direct', 'ya'), 'direct',
                                   '') AS channel,
                           toDecimal64(0, 2) AS x_spend, toUInt64(0) AS x_shows,
                           toUInt64(0) AS x_clicks, toUInt64(0) AS x_conversions,
                           tickets_sold AS x_tickets, net_revenue AS x_net
                    FROM {db}.fact_qtickets_sales_utm_daily FINAL
                )
                WHERE channel != ''
            )
            GROUP BY day, place, channel",
        ),
    ],
}];

/// The schema version these binaries expect.
pub fn latest_version() -> u32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// What `migrate` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    pub applied: Vec<u32>,
    pub already: Vec<u32>,
}

/// Create the database and apply every missing migration, in order.
pub async fn migrate(ch: &Ch) -> anyhow::Result<MigrationReport> {
    migrate_with(ch, MIGRATIONS).await
}

/// `migrate` with an explicit list (tests exercise step kinds no shipped migration uses yet).
pub async fn migrate_with(ch: &Ch, migrations: &[Migration]) -> anyhow::Result<MigrationReport> {
    let db = ch.db();
    if let Some(cluster) = ch.cluster() {
        check_every_replica_answers(ch, cluster).await?;
        check_replicated(ch, cluster).await?;
    }
    run(
        ch,
        ch.server(),
        &format!("CREATE DATABASE IF NOT EXISTS `{db}`{}", on_cluster(ch)),
    )
    .await?;
    let journal_table = JOURNAL_TABLE;
    apply_sql(ch, journal_table).await?;
    let done = applied_versions(ch).await?;
    let mut report = MigrationReport {
        applied: Vec::new(),
        already: Vec::new(),
    };
    for migration in migrations {
        if done.contains(&migration.version) {
            report.already.push(migration.version);
            continue;
        }
        for step in migration.steps {
            apply_step(ch, step).await.map_err(|e| {
                e.context(format!(
                    "migration {} ({}) failed",
                    migration.version, migration.name
                ))
            })?;
        }
        run(
            ch,
            ch.server(),
            &format!(
                "INSERT INTO `{db}`.schema_migrations (version, name, applied_at) SELECT {}, '{}', now()",
                migration.version,
                migration.name.replace('\'', "")
            ),
        )
        .await?;
        tracing::info!(
            version = migration.version,
            name = migration.name,
            "applied ClickHouse migration"
        );
        report.applied.push(migration.version);
    }
    if let Some(cluster) = ch.cluster() {
        complete_every_replica(ch, cluster, migrations, journal_table).await?;
    }
    Ok(report)
}

/// On a cluster, every table of the database on the server this run uses must be
/// replicated: an insert whose answer was lost is sent again, which only a `Replicated*`
/// table drops as a duplicate. A database first migrated without `CLICKHOUSE_CLUSTER` keeps
/// its plain tables (`CREATE TABLE IF NOT EXISTS` leaves them), so it is refused by name.
async fn check_replicated(ch: &Ch, cluster: &str) -> anyhow::Result<()> {
    let db = ch.db().to_owned();
    let plain: Vec<(String, String)> = ch
        .read_server("table engines", |c| {
            let db = db.clone();
            async move {
                c.query(
                    "SELECT name, engine FROM system.tables WHERE database = ? \
                     AND engine LIKE '%MergeTree' AND engine NOT LIKE 'Replicated%' ORDER BY name",
                )
                .bind(db)
                .fetch_all()
                .await
            }
        })
        .await?;
    if plain.is_empty() {
        return Ok(());
    }
    let named: Vec<String> = plain
        .iter()
        .take(5)
        .map(|(name, engine)| format!("{name} ({engine})"))
        .collect();
    let more = match plain.len() {
        n if n > 5 => format!(" and {} more", n - 5),
        _ => String::new(),
    };
    Err(ConfigError(format!(
        "CLICKHOUSE_CLUSTER is `{cluster}`, but database `{db}` at `{}` holds tables that are not replicated: {}{more}. It was migrated without CLICKHOUSE_CLUSTER; a retried insert could double their rows. Use a database migrated on the cluster (CLICKHOUSE_DB) and move the data there",
        ch.url(),
        named.join(", ")
    ))
    .into())
}

/// The table of applied migrations, created before any migration runs.
pub const JOURNAL_TABLE: &str = "CREATE TABLE IF NOT EXISTS {db}.schema_migrations (
                version UInt32,
                name String,
                applied_at DateTime('Europe/Moscow')
            ) ENGINE = ReplacingMergeTree ORDER BY version";

/// Every statement of the single-server schema in the order `migrate` applies them, `{db}`
/// left for the caller: `JOURNAL_TABLE`, then each migration's steps (an added column as its
/// `ALTER TABLE … ADD COLUMN`). The CI's check on current ClickHouse releases applies it.
pub fn schema_statements(migrations: &[Migration]) -> Vec<(u32, String)> {
    let mut out = vec![(0, JOURNAL_TABLE.to_owned())];
    for m in migrations {
        for step in m.steps {
            out.push((
                m.version,
                match step {
                    Step::Sql(sql) => sql.trim().to_owned(),
                    Step::AddColumn {
                        table,
                        column,
                        definition,
                    } => format!("ALTER TABLE {{db}}.{table} ADD COLUMN {column} {definition}"),
                },
            ));
        }
    }
    out
}

/// ` ON CLUSTER `name`` on a cluster, nothing on one server.
fn on_cluster(ch: &Ch) -> String {
    ch.cluster()
        .map(|c| format!(" ON CLUSTER `{c}`"))
        .unwrap_or_default()
}

/// A migration statement as it is applied on cluster `cluster`: `ON CLUSTER` after the
/// object's name, and a `*MergeTree` engine replaced by its `Replicated*` form with the
/// ZooKeeper path `/clickhouse/tables/{shard}/<db>/<table>` and replica `{replica}` (both
/// macros of each server's config). `{db}` stays for the caller to fill in. Statements of
/// another kind are refused, so a migration nobody taught the cluster never half-applies.
pub fn cluster_statement(sql: &str, db: &str, cluster: &str) -> anyhow::Result<String> {
    let text = sql.trim_start();
    // Data (a backfill `INSERT … SELECT`) is written once, on the connected replica: the
    // tables are replicated, so the rows reach every replica (and a second run's identical
    // block is dropped by the de-duplication).
    if text.starts_with("INSERT INTO {db}.") {
        return Ok(text.to_owned());
    }
    let kinds = [
        "CREATE TABLE IF NOT EXISTS {db}.",
        "CREATE VIEW IF NOT EXISTS {db}.",
        "DROP TABLE IF EXISTS {db}.",
    ];
    let Some(head) = kinds.iter().find(|k| text.starts_with(**k)) else {
        anyhow::bail!(
            "this statement cannot be applied on a cluster yet: {}",
            text.split_whitespace()
                .take(6)
                .collect::<Vec<_>>()
                .join(" ")
        );
    };
    let rest = &text[head.len()..];
    let name_len = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    let (name, tail) = rest.split_at(name_len);
    anyhow::ensure!(!name.is_empty(), "no object name in `{}`", first_line(text));
    let mut out = format!("{head}{name} ON CLUSTER `{cluster}`{tail}");
    if head.starts_with("CREATE TABLE") {
        out = replicated_engine(&out, &format!("/clickhouse/tables/{{shard}}/{db}/{name}"))?;
    }
    Ok(out)
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or(text)
}

/// `ENGINE = XMergeTree[(args)]` → `ENGINE = ReplicatedXMergeTree('path', '{replica}'[, args])`.
fn replicated_engine(sql: &str, zk_path: &str) -> anyhow::Result<String> {
    const ENGINE: &str = "ENGINE = ";
    let at = sql
        .find(ENGINE)
        .ok_or_else(|| anyhow::anyhow!("no `ENGINE = ` in `{}`", first_line(sql)))?
        + ENGINE.len();
    let rest = &sql[at..];
    let name_len = rest
        .find(|c: char| !c.is_ascii_alphanumeric())
        .unwrap_or(rest.len());
    let engine = &rest[..name_len];
    anyhow::ensure!(
        engine.ends_with("MergeTree") && !engine.starts_with("Replicated"),
        "engine `{engine}` has no replicated form here (only *MergeTree engines)"
    );
    let after = &rest[name_len..];
    let (args, tail) = match after.strip_prefix('(') {
        Some(inner) => {
            let close = inner
                .find(')')
                .ok_or_else(|| anyhow::anyhow!("unclosed engine arguments of `{engine}`"))?;
            let args = inner[..close].trim();
            (
                if args.is_empty() {
                    String::new()
                } else {
                    format!(", {args}")
                },
                &inner[close + 1..],
            )
        }
        None => (String::new(), after),
    };
    Ok(format!(
        "{}Replicated{engine}('{zk_path}', '{{replica}}'{args}){tail}",
        &sql[..at]
    ))
}

/// One replica of the cluster, as `system.clusters` lists it (native protocol address).
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, serde::Deserialize)]
pub struct ClusterReplica {
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for ClusterReplica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// Every replica of every shard of `cluster`, as the connected server knows them.
pub async fn cluster_replicas(ch: &Ch, cluster: &str) -> anyhow::Result<Vec<ClusterReplica>> {
    let name = cluster.to_owned();
    ch.read_server("cluster replicas", |c| {
        let name = name.clone();
        async move {
            c.query("SELECT host_address, toUInt16(port) FROM system.clusters WHERE cluster = ? ORDER BY shard_num, replica_num")
                .bind(name)
                .fetch_all::<ClusterReplica>()
                .await
        }
    })
    .await
}

/// `remote('host:port', system.<table>, user[, password])`: a system table of one replica,
/// read through the connected server with the configured user.
pub(crate) fn remote_system(ch: &Ch, replica: &ClusterReplica, table: &str) -> String {
    let quote = |s: &str| s.replace('\\', "\\\\").replace('\'', "\\'");
    let credentials = match ch.password() {
        Some(p) => format!("'{}', '{}'", quote(ch.user()), quote(p.expose())),
        None => format!("'{}'", quote(ch.user())),
    };
    format!("remote('{replica}', system.{table}, {credentials})")
}

/// Schema changes on a cluster wait for every replica (`ON CLUSTER` DDL would hang on a dead
/// one, then leave the cluster half-migrated): every replica must answer first.
async fn check_every_replica_answers(ch: &Ch, cluster: &str) -> anyhow::Result<()> {
    let replicas = cluster_replicas(ch, cluster).await?;
    let mut down = Vec::new();
    for replica in &replicas {
        let sql = format!(
            "SELECT toUInt8(1) FROM {}",
            remote_system(ch, replica, "one")
        );
        if let Err(e) = ch.server().query(&sql).fetch_one::<u8>().await {
            down.push(format!(
                "{replica} ({})",
                short(&e).chars().take(160).collect::<String>()
            ));
        }
    }
    if !down.is_empty() {
        return Err(UnavailableError(format!(
            "cannot change the schema of `{}` on cluster `{cluster}`: replica(s) {} do not answer; every replica must be up (its `ON CLUSTER` statements would wait for it). Start it and run `manage-timers migrate` again",
            ch.db(),
            down.join(", ")
        ))
        .into());
    }
    Ok(())
}

/// The tables and views the migrations leave, each with the last statement that creates it.
pub fn final_objects<'a>(
    migrations: &'a [Migration],
    journal_table: &'a str,
) -> std::collections::BTreeMap<String, &'a str> {
    let mut objects = std::collections::BTreeMap::new();
    objects.insert("schema_migrations".to_owned(), journal_table);
    for step in migrations.iter().flat_map(|m| m.steps) {
        let Step::Sql(sql) = step else { continue };
        let text = sql.trim_start();
        let name = |prefix: &str| {
            text.strip_prefix(prefix).map(|rest| {
                rest.chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect::<String>()
            })
        };
        if let Some(n) = name("CREATE TABLE IF NOT EXISTS {db}.")
            .or_else(|| name("CREATE VIEW IF NOT EXISTS {db}."))
        {
            objects.insert(n, *sql);
        } else if let Some(n) = name("DROP TABLE IF EXISTS {db}.") {
            objects.remove(&n);
        }
    }
    objects
}

/// What each replica of the cluster lacks of the migrated schema.
pub async fn cluster_gaps(
    ch: &Ch,
    cluster: &str,
) -> anyhow::Result<Vec<(ClusterReplica, Vec<String>)>> {
    let expected = final_objects(MIGRATIONS, "");
    gaps(ch, cluster, &expected.keys().cloned().collect::<Vec<_>>()).await
}

async fn gaps(
    ch: &Ch,
    cluster: &str,
    expected: &[String],
) -> anyhow::Result<Vec<(ClusterReplica, Vec<String>)>> {
    let mut out = Vec::new();
    for replica in cluster_replicas(ch, cluster).await? {
        let sql = format!(
            "SELECT name FROM {} WHERE database = ?",
            remote_system(ch, &replica, "tables")
        );
        let present: Vec<String> = ch
            .server()
            .query(&sql)
            .bind(ch.db())
            .fetch_all::<String>()
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot list the tables of `{}` on replica {replica}: {}",
                    ch.db(),
                    short(&e)
                )
            })?;
        let missing: Vec<String> = expected
            .iter()
            .filter(|name| !present.contains(name))
            .cloned()
            .collect();
        if !missing.is_empty() {
            out.push((replica, missing));
        }
    }
    Ok(out)
}

/// After migrating a cluster: every replica must hold every table and view. One that lacks
/// some (it lost them, or missed a statement) gets them created again with their latest
/// definition; what still lacks is reported replica by replica.
async fn complete_every_replica(
    ch: &Ch,
    cluster: &str,
    migrations: &[Migration],
    journal_table: &str,
) -> anyhow::Result<()> {
    let objects = final_objects(migrations, journal_table);
    let names: Vec<String> = objects.keys().cloned().collect();
    let found = gaps(ch, cluster, &names).await?;
    if found.is_empty() {
        return Ok(());
    }
    let mut repaired = std::collections::BTreeSet::new();
    for (replica, missing) in &found {
        tracing::warn!(%replica, missing = ?missing, "cluster `{cluster}`: a replica lacks tables of `{}`; creating them", ch.db());
        repaired.extend(missing.iter().cloned());
    }
    for name in &repaired {
        if let Some(sql) = objects.get(name) {
            // Tables first would matter only for views over a missing table: every view here
            // reads tables that sort before it (`fact_`, `meta_job_run_events`, `stg_`).
            apply_sql(ch, sql).await.map_err(|e| {
                e.context(format!(
                    "the cluster `{cluster}` is half-migrated: `{name}` is missing on some replicas and could not be created again"
                ))
            })?;
        }
    }
    let left = gaps(ch, cluster, &names).await?;
    if left.is_empty() {
        tracing::warn!(
            "cluster `{cluster}`: created again on the replicas that lacked them: {}",
            repaired.into_iter().collect::<Vec<_>>().join(", ")
        );
        return Ok(());
    }
    let detail: Vec<String> = left
        .iter()
        .map(|(r, m)| format!("replica {r} lacks {}", m.join(", ")))
        .collect();
    Err(anyhow::anyhow!(
        "the cluster `{cluster}` is half-migrated: {} (schema version {} is recorded)",
        detail.join("; "),
        latest_version()
    ))
}

/// At start-up: apply what is missing, warn when the database is newer than this binary.
pub async fn ensure(ch: &Ch) -> anyhow::Result<()> {
    let current = current_version(ch).await.unwrap_or(0);
    if let Some(cluster) = ch.cluster()
        && current > 0
    {
        check_replicated(ch, cluster).await?;
    }
    if current >= latest_version() {
        if current > latest_version() {
            tracing::warn!(
                database = current,
                binary = latest_version(),
                "ClickHouse schema is newer than this binary; continuing"
            );
        }
        return Ok(());
    }
    migrate(ch).await.map(|_| ())
}

/// The highest applied migration, or 0 for an empty server.
pub async fn current_version(ch: &Ch) -> anyhow::Result<u32> {
    Ok(applied_versions(ch).await?.into_iter().max().unwrap_or(0))
}

async fn applied_versions(ch: &Ch) -> anyhow::Result<Vec<u32>> {
    let db = ch.db().to_owned();
    let exists: u8 = ch
        .read_server("schema_migrations exists", |c| {
            let db = db.clone();
            async move {
                c.query("SELECT toUInt8(count()) FROM system.tables WHERE database = ? AND name = 'schema_migrations'")
                    .bind(db)
                    .fetch_one::<u8>()
                    .await
            }
        })
        .await?;
    if exists == 0 {
        return Ok(Vec::new());
    }
    ch.read("applied migrations", |c| async move {
        c.query("SELECT DISTINCT version FROM schema_migrations ORDER BY version")
            .fetch_all::<u32>()
            .await
    })
    .await
}

/// One `Step::Sql` statement (rewritten for the cluster when there is one).
async fn apply_sql(ch: &Ch, sql: &str) -> anyhow::Result<()> {
    let sql = match ch.cluster() {
        Some(cluster) => cluster_statement(sql, ch.db(), cluster)?,
        None => sql.to_owned(),
    };
    let sql = sql.replace("{db}", &format!("`{}`", ch.db()));
    match run(ch, ch.server(), &sql).await {
        // Another binary migrating at the same moment got there first: its `IF [NOT]
        // EXISTS` was checked before ours acted (57: exists, 60: does not).
        Err(e) if lost_race(&sql, &e) => Ok(()),
        other => other,
    }
}

async fn apply_step(ch: &Ch, step: &Step) -> anyhow::Result<()> {
    let db = format!("`{}`", ch.db());
    match step {
        Step::Sql(sql) => apply_sql(ch, sql).await,
        Step::AddColumn {
            table,
            column,
            definition,
        } => {
            let (database, table_name, column_name) =
                (ch.db().to_owned(), table.to_string(), column.to_string());
            let present: u8 = ch
                .read_server("column exists", |c| {
                    let (d, t, n) = (database.clone(), table_name.clone(), column_name.clone());
                    async move {
                        c.query("SELECT toUInt8(count()) FROM system.columns WHERE database = ? AND table = ? AND name = ?")
                            .bind(d)
                            .bind(t)
                            .bind(n)
                            .fetch_one::<u8>()
                            .await
                    }
                })
                .await?;
            if present > 0 {
                return Ok(());
            }
            // On a cluster too, on the connected replica only: the table is replicated, and
            // its ALTER reaches every replica through ZooKeeper. (18.16's `ON CLUSTER` for a
            // replicated table's ALTER races between the replicas: one fails with "Node
            // exists" and the statement waits out its timeout.)
            match run(
                ch,
                ch.server(),
                &format!("ALTER TABLE {db}.{table} ADD COLUMN {column} {definition}"),
            )
            .await
            {
                // 44: another binary migrating at once added it between our check and now.
                Err(e) if format!("{e:#}").contains("Code: 44") => Ok(()),
                other => other,
            }
        }
    }
}

/// Whether `sql` failed only because a concurrent migration did the same thing first.
fn lost_race(sql: &str, e: &anyhow::Error) -> bool {
    let text = format!("{e:#}");
    let head = sql.trim_start();
    (head.starts_with("CREATE") && head.contains("IF NOT EXISTS") && text.contains("Code: 57"))
        || (head.starts_with("DROP") && head.contains("IF EXISTS") && text.contains("Code: 60"))
}

/// How long an `ON CLUSTER` statement waits for every replica before it fails (ClickHouse's
/// default is 180 s). Every replica answered just before, so a healthy cluster needs a second.
const DDL_TASK_TIMEOUT_SECS: &str = "60";

async fn run(ch: &Ch, client: &clickhouse::Client, sql: &str) -> anyhow::Result<()> {
    let query = if ch.cluster().is_some() {
        client
            .clone()
            .with_setting("distributed_ddl_task_timeout", DDL_TASK_TIMEOUT_SECS)
            .query(sql)
            .execute()
            .await
    } else {
        client.query(sql).execute().await
    };
    match query {
        Ok(()) => Ok(()),
        Err(e) => {
            let text = short(&e);
            // 164 readonly, 497 access denied: the operator must grant rights or migrate
            // with a privileged user; retrying will not help.
            if text.contains("Code: 164") || text.contains("Code: 497") {
                Err(ConfigError(format!(
                    "ClickHouse user lacks the rights to change the schema of `{}`: {text}",
                    ch.db()
                ))
                .into())
            } else if matches!(e, clickhouse::error::Error::Network(_)) {
                Err(UnavailableError(format!(
                    "ClickHouse at `{}` is not reachable: {text}",
                    ch.url()
                ))
                .into())
            } else if let Some(cluster) = ch.cluster()
                && text.contains("distributed_ddl_task_timeout")
            {
                // 159: some replica did not run the statement in time. It stays in the
                // cluster's DDL queue and runs when that replica is back.
                Err(anyhow::anyhow!(
                    "the cluster `{cluster}` is half-migrated: a statement did not finish on every replica within {DDL_TASK_TIMEOUT_SECS} s ({text}); it runs there when the replica is back: run `manage-timers migrate` again then to check"
                ))
            } else {
                Err(anyhow::anyhow!(
                    "ClickHouse schema statement failed: {text}"
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_migration_has_a_cluster_form() {
        for step in MIGRATIONS.iter().flat_map(|m| m.steps) {
            if let Step::Sql(sql) = step {
                let out = cluster_statement(sql, "zakaz", "zakaz").unwrap();
                if sql.trim_start().starts_with("INSERT") {
                    assert_eq!(out, sql.trim_start());
                    continue;
                }
                assert!(out.contains(" ON CLUSTER `zakaz`"), "{out}");
                if sql.contains("ENGINE = ") {
                    assert!(out.contains("ENGINE = Replicated"), "{out}");
                    assert!(out.contains("'/clickhouse/tables/{shard}/zakaz/"), "{out}");
                }
            }
        }
    }

    #[test]
    fn cluster_statements_keep_engine_arguments_and_clauses() {
        let sql = "CREATE TABLE IF NOT EXISTS {db}.t (a UInt8, _version UInt64) ENGINE = ReplacingMergeTree(_version)\n ORDER BY a";
        assert_eq!(
            cluster_statement(sql, "db1", "c").unwrap(),
            "CREATE TABLE IF NOT EXISTS {db}.t ON CLUSTER `c` (a UInt8, _version UInt64) ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/db1/t', '{replica}', _version)\n ORDER BY a"
        );
        let plain = "CREATE TABLE IF NOT EXISTS {db}.e (a UInt8) ENGINE = MergeTree\n PARTITION BY a ORDER BY a";
        assert_eq!(
            cluster_statement(plain, "db1", "c").unwrap(),
            "CREATE TABLE IF NOT EXISTS {db}.e ON CLUSTER `c` (a UInt8) ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/db1/e', '{replica}')\n PARTITION BY a ORDER BY a"
        );
        assert_eq!(
            cluster_statement("DROP TABLE IF EXISTS {db}.v", "db1", "c").unwrap(),
            "DROP TABLE IF EXISTS {db}.v ON CLUSTER `c`"
        );
        assert_eq!(
            cluster_statement("CREATE VIEW IF NOT EXISTS {db}.v AS SELECT 1", "db1", "c").unwrap(),
            "CREATE VIEW IF NOT EXISTS {db}.v ON CLUSTER `c` AS SELECT 1"
        );
        assert!(cluster_statement("ALTER TABLE {db}.t DELETE WHERE 1", "db1", "c").is_err());
        assert!(
            cluster_statement(
                "CREATE TABLE IF NOT EXISTS {db}.l (a UInt8) ENGINE = Log",
                "db1",
                "c"
            )
            .is_err()
        );
    }

    #[test]
    fn the_final_objects_follow_drops_and_redefinitions() {
        let objects = final_objects(MIGRATIONS, "J");
        assert_eq!(objects["schema_migrations"], "J");
        // Migration 8 dropped and redefined meta_job_runs: its definition is the last one.
        assert!(objects["meta_job_runs"].contains("last_status"));
        assert!(objects.contains_key("v_sales_daily") && objects.contains_key("fact_vk_ads_daily"));
    }
}

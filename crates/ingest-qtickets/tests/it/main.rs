//! `ingest-qtickets` end to end: the real binary, `api-sandbox` in-process, real ClickHouse.

mod load;
mod properties;

use std::collections::BTreeMap;
use std::process::{Command, Output};

use api_sandbox::{SandboxConfig, Server};
use serde_json::Value;
use zakaz_core::testing::{JobUnderTest, TestDb, query_tsv};

/// The sandbox's and the loader's "now" in these tests: late evening in Moscow, so that a
/// date computed in UTC instead of Moscow time would be wrong.
pub const NOW: &str = "2026-11-25T23:30:00+03:00";

/// (sales date, event id, city).
pub type Key = (String, u64, String);
/// (tickets sold, revenue, refunds, net revenue in kopecks, orders).
pub type Totals = (u64, i64, i64, i64, u64);

pub struct Env {
    pub sandbox: Server,
    pub db: TestDb,
}

impl Env {
    pub async fn new() -> Env {
        Env::with(SandboxConfig::default()).await
    }

    /// A sandbox whose clock starts at [`NOW`] unless the config says otherwise.
    pub async fn with(config: SandboxConfig) -> Env {
        let config = SandboxConfig {
            now: config.now.or_else(|| Some(NOW.into())),
            ..config
        };
        let (db, _ch) = TestDb::migrated().await;
        Env {
            sandbox: Server::start_local(config).unwrap(),
            db,
        }
    }

    pub fn query(&self, sql: &str) -> String {
        query_tsv(&sql.replace("{db}", &format!("`{}`", self.db.name)))
    }

    pub fn control(&self, path: &str, body: Value) {
        let url = format!("{}/_sandbox{path}", self.sandbox.base_url);
        if let Err(e) = zakaz_core::testing::post_json(&url, &body.to_string()) {
            panic!("control {path}: {e}");
        }
    }

    /// Facts per (date, event, city): tickets, revenue, refunds, net, orders — from ClickHouse.
    pub fn facts(&self) -> BTreeMap<Key, Totals> {
        self.query(
            "SELECT sales_date, event_id, city, tickets_sold, toInt64(revenue * 100), toInt64(refunds * 100), toInt64(net_revenue * 100), orders \
             FROM {db}.fact_qtickets_sales_daily FINAL WHERE tickets_sold + orders > 0 ORDER BY sales_date, event_id",
        )
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            ((f[0].to_owned(), f[1].parse().unwrap(), f[2].to_owned()), (f[3].parse().unwrap(), f[4].parse().unwrap(), f[5].parse().unwrap(), f[6].parse().unwrap(), f[7].parse().unwrap()))
        })
        .collect()
    }

    /// The same totals computed here, independently, from the orders the sandbox serves now.
    pub fn expected(&self) -> BTreeMap<Key, Totals> {
        self.expected_by_tags(false)
            .into_iter()
            .map(|((key, _), totals)| (key, totals))
            .collect()
    }

    /// Per (date, event, city) and the five UTM tags (`""` for a tag the order lacks, or all
    /// `""` with `by_tags` false), from the sandbox's raw orders.
    pub fn expected_by_tags(&self, by_tags: bool) -> BTreeMap<(Key, [String; 5]), Totals> {
        let sandbox = self.sandbox.sandbox();
        let cities: BTreeMap<u64, String> = sandbox
            .data
            .qtickets
            .events
            .iter()
            .map(|e| (e.id, api_sandbox::qtickets::CITIES[e.city].name.to_owned()))
            .collect();
        type Sums = (u64, i64, i64, std::collections::BTreeSet<u64>);
        let mut out: BTreeMap<(Key, [String; 5]), Sums> = BTreeMap::new();
        for o in sandbox.qtickets_orders() {
            if o["payed"] != true || !o["deleted_at"].is_null() {
                continue;
            }
            let paid =
                chrono::DateTime::parse_from_rfc3339(o["payed_at"].as_str().unwrap()).unwrap();
            let date = paid
                .with_timezone(&chrono_tz::Europe::Moscow)
                .date_naive()
                .to_string();
            let event = o["event_id"].as_u64().unwrap();
            let tag = |k: &str| {
                if by_tags {
                    o["utm"][k].as_str().unwrap_or_default().to_owned()
                } else {
                    String::new()
                }
            };
            let tags = [
                "utm_source",
                "utm_medium",
                "utm_campaign",
                "utm_content",
                "utm_term",
            ]
            .map(tag);
            let entry = out
                .entry(((date, event, cities[&event].clone()), tags))
                .or_default();
            for b in o["baskets"].as_array().unwrap() {
                if !b["deleted_at"].is_null() {
                    continue;
                }
                let kop = |v: &Value| (v.as_f64().unwrap_or(0.0) * 100.0).round() as i64;
                let refunded = !b["refunded_at"].is_null();
                if !refunded {
                    entry.0 += b["quantity"].as_u64().unwrap();
                }
                // `price` is per ticket (the API notes: order price = Σ price × quantity).
                entry.1 += kop(&b["price"]) * b["quantity"].as_i64().unwrap();
                if refunded {
                    entry.2 += kop(&b["refunded_amount"]);
                }
                entry.3.insert(o["id"].as_u64().unwrap());
            }
        }
        out.into_iter()
            .map(|(k, (t, r, rf, o))| (k, (t, r, rf, r - rf, o.len() as u64)))
            .collect()
    }

    /// The UTM facts per (date, event, city) and five tags, from ClickHouse.
    pub fn facts_by_tags(&self) -> BTreeMap<(Key, [String; 5]), Totals> {
        self.query(
            "SELECT sales_date, event_id, city, utm_source, utm_medium, utm_campaign, utm_content, utm_term, \
                    tickets_sold, toInt64(revenue * 100), toInt64(refunds * 100), toInt64(net_revenue * 100), orders \
             FROM {db}.fact_qtickets_sales_utm_daily FINAL WHERE tickets_sold + orders > 0",
        )
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            let tags = [f[3], f[4], f[5], f[6], f[7]].map(str::to_owned);
            (
                ((f[0].to_owned(), f[1].parse().unwrap(), f[2].to_owned()), tags),
                (f[8].parse().unwrap(), f[9].parse().unwrap(), f[10].parse().unwrap(), f[11].parse().unwrap(), f[12].parse().unwrap()),
            )
        })
        .collect()
    }
}

impl JobUnderTest for Env {
    /// The loader, acting as of the sandbox's "now" (one clock for both, also after a test
    /// advances the sandbox's).
    fn command(&self, args: &[&str]) -> Command {
        let now = chrono::DateTime::from_timestamp(self.sandbox.sandbox().now(), 0).unwrap();
        let mut cmd = self.db.command(env!("CARGO_BIN_EXE_ingest-qtickets"));
        cmd.args(args)
            .arg(format!("--now={}", now.to_rfc3339()))
            .env(
                "QTICKETS_BASE_URL",
                format!("{}/qtickets/api/rest/v1", self.sandbox.base_url),
            )
            .env("QTICKETS_TOKEN", "sandbox-token")
            .env("QTICKETS_BACKFILL_DAYS", "60")
            .env("HTTP_MAX_ATTEMPTS", "2")
            .env("LOG_LEVEL", "info");
        cmd
    }
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

//! The sales facts, recomputed from the deduplicated staging for every date a run touched, so
//! re-running any window gives the same totals. One rule, used for real runs and dry runs:
//! a ticket counts when its order is paid and neither the order nor the basket is cancelled;
//! revenue is gross, refunds are refunded amounts, net = revenue − refunds; tickets sold
//! exclude refunded baskets; the sales date is the Moscow date of the order's payment.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use zakaz_core::ch::Ch;
use zakaz_core::time::ch_date;

use crate::model::TicketRow;

#[derive(Debug, Clone, PartialEq, clickhouse::Row, Serialize, Deserialize)]
pub struct SalesDailyRow {
    pub sales_date: u16,
    pub event_id: u64,
    pub city: String,
    pub tickets_sold: u64,
    pub revenue: i64,
    pub refunds: i64,
    pub net_revenue: i64,
    pub orders: u64,
    pub loaded_at: u32,
    pub _version: u64,
}

#[derive(Debug, Clone, PartialEq, clickhouse::Row, Serialize, Deserialize)]
pub struct UtmDailyRow {
    pub sales_date: u16,
    pub event_id: u64,
    pub city: String,
    pub utm_source: String,
    pub utm_medium: String,
    pub utm_campaign: String,
    pub utm_content: String,
    pub utm_term: String,
    pub tickets_sold: u64,
    pub revenue: i64,
    pub refunds: i64,
    pub net_revenue: i64,
    pub orders: u64,
    pub loaded_at: u32,
    pub _version: u64,
}

#[derive(Default)]
pub struct Totals {
    tickets: u64,
    revenue: i64,
    refunds: i64,
    orders: BTreeSet<u64>,
}

impl Totals {
    fn add(&mut self, t: &TicketRow) {
        // Saturating: hostile numbers give a wrong-looking total, never a panic or a wrap
        // (each ticket's price is bounded when it is read, `model::MAX_PRICE_KOPECKS`).
        if t.is_refunded == 0 {
            self.tickets = self.tickets.saturating_add(u64::from(t.quantity));
        }
        // `price` is per ticket; a general-admission basket holds `quantity` of them.
        self.revenue = self
            .revenue
            .saturating_add(t.price.saturating_mul(i64::from(t.quantity)));
        self.refunds = self.refunds.saturating_add(t.refunded_amount);
        self.orders.insert(t.order_id);
    }
}

/// (sales date, event, city, UTM tags); the daily table leaves the tags empty.
pub type Key = (u16, u64, String, [String; 5]);

/// A fact table: its name, whether it splits by UTM, and how a row is built from totals.
pub trait Fact: clickhouse::RowOwned + clickhouse::RowWrite {
    const TABLE: &'static str;
    const BY_UTM: bool;
    fn build(key: Key, totals: &Totals, loaded_at: u32, version: u64) -> Self;
}

impl Fact for SalesDailyRow {
    const TABLE: &'static str = "fact_qtickets_sales_daily";
    const BY_UTM: bool = false;
    fn build(
        (sales_date, event_id, city, _): Key,
        s: &Totals,
        loaded_at: u32,
        version: u64,
    ) -> Self {
        SalesDailyRow {
            sales_date,
            event_id,
            city,
            tickets_sold: s.tickets,
            revenue: s.revenue,
            refunds: s.refunds,
            net_revenue: s.revenue - s.refunds,
            orders: s.orders.len() as u64,
            loaded_at,
            _version: version,
        }
    }
}

impl Fact for UtmDailyRow {
    const TABLE: &'static str = "fact_qtickets_sales_utm_daily";
    const BY_UTM: bool = true;
    fn build(
        (sales_date, event_id, city, tags): Key,
        s: &Totals,
        loaded_at: u32,
        version: u64,
    ) -> Self {
        let [utm_source, utm_medium, utm_campaign, utm_content, utm_term] = tags;
        UtmDailyRow {
            sales_date,
            event_id,
            city,
            utm_source,
            utm_medium,
            utm_campaign,
            utm_content,
            utm_term,
            tickets_sold: s.tickets,
            revenue: s.revenue,
            refunds: s.refunds,
            net_revenue: s.revenue - s.refunds,
            orders: s.orders.len() as u64,
            loaded_at,
            _version: version,
        }
    }
}

/// Totals per date × event × city (× UTM for the UTM table).
pub fn aggregate<'a, F: Fact>(
    tickets: impl IntoIterator<Item = &'a TicketRow>,
    cities: &HashMap<u64, String>,
    loaded_at: u32,
    version: u64,
) -> BTreeMap<Key, F> {
    // Grouped by borrowed text, owned once per group: a key cloned per ticket (city and five
    // tags) put malloc and memcmp on top of a backfill's profile.
    let mut totals: BTreeMap<(u16, u64, &str, [&str; 5]), Totals> = BTreeMap::new();
    for t in tickets {
        let Some(paid) = t.payed_at.filter(|_| t.is_paid == 1 && t.is_cancelled == 0) else {
            continue;
        };
        let city = cities.get(&t.event_id).map_or("", String::as_str);
        let tags = if F::BY_UTM {
            [
                t.utm_source.as_str(),
                t.utm_medium.as_str(),
                t.utm_campaign.as_str(),
                t.utm_content.as_str(),
                t.utm_term.as_str(),
            ]
        } else {
            [""; 5]
        };
        totals
            .entry((sales_date(paid), t.event_id, city, tags))
            .or_default()
            .add(t);
    }
    totals
        .into_iter()
        .map(|((date, event_id, city, tags), s)| {
            let key: Key = (date, event_id, city.to_owned(), tags.map(str::to_owned));
            (key.clone(), F::build(key, &s, loaded_at, version))
        })
        .collect()
}

/// The Moscow sales date of a payment instant, as ClickHouse `Date`.
pub fn sales_date(paid_at: u32) -> u16 {
    let t = chrono::DateTime::from_timestamp(i64::from(paid_at), 0).unwrap_or_default();
    ch_date(zakaz_core::time::moscow_date(&t))
}

fn date_list(dates: &[NaiveDate]) -> String {
    dates
        .iter()
        .map(|d| format!("'{d}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

const DATES_PER_CHUNK: usize = 7;

/// Recompute both fact tables for `dates` from `stg_qtickets_tickets FINAL`, reading only
/// the orders `stg_qtickets_sale_dates` lists for them. Keys that no
/// longer have sales get a zero row, so a fully refunded day reads 0, not its old total.
/// The daily table is written first and the UTM table second, each in one insert.
pub async fn recompute(
    ch: &Ch,
    dates: &BTreeSet<NaiveDate>,
    loaded_at: u32,
) -> anyhow::Result<usize> {
    let dates: Vec<NaiveDate> = dates.iter().copied().collect();
    let cities = event_cities(ch).await?;
    let version = chrono::Utc::now().timestamp_micros() as u64;
    let mut written = 0;
    // A week at a time: the tickets of a chunk are held in memory, so a long backfill's
    // recompute stays bounded (all 30 dates at once peaked at 160 MiB for 100 000 orders).
    for chunk in dates.chunks(DATES_PER_CHUNK) {
        let list = date_list(chunk);
        let tickets: Vec<TicketRow> = ch
            .read("staged tickets of touched dates", |c| {
                // Through the date → orders index, so the read follows the tickets' primary
                // key (order_id) instead of scanning all staging: its cost follows what the
                // run touched, not the length of the history.
                let sql = format!(
                    "SELECT ?fields FROM stg_qtickets_tickets FINAL \
                     WHERE order_id IN (SELECT order_id FROM stg_qtickets_sale_dates WHERE sales_date IN ({list})) \
                     AND payed_at IS NOT NULL AND toDate(assumeNotNull(payed_at), 'Europe/Moscow') IN ({list})"
                );
                async move { c.query(&sql).fetch_all::<TicketRow>().await }
            })
            .await?;
        written += write::<SalesDailyRow>(ch, &list, &tickets, &cities, loaded_at, version).await?;
        write::<UtmDailyRow>(ch, &list, &tickets, &cities, loaded_at, version).await?;
    }
    Ok(written)
}

/// Fresh rows for the dates in `list`, plus zero rows for keys that had sales before and
/// have none now; one insert.
async fn write<F: Fact>(
    ch: &Ch,
    list: &str,
    tickets: &[TicketRow],
    cities: &HashMap<u64, String>,
    loaded_at: u32,
    version: u64,
) -> anyhow::Result<usize> {
    let mut rows = aggregate::<F>(tickets, cities, loaded_at, version);
    let tags = if F::BY_UTM {
        "utm_source, utm_medium, utm_campaign, utm_content, utm_term"
    } else {
        "'', '', '', '', ''"
    };
    type KeyRow = (u16, u64, String, String, String, String, String, String);
    let existing: Vec<KeyRow> = ch
        .read("existing facts", |c| {
            let sql = format!(
                "SELECT sales_date, event_id, city, {tags} FROM {} FINAL \
                 WHERE sales_date IN ({list}) AND (tickets_sold != 0 OR orders != 0 OR revenue != 0 OR refunds != 0)",
                F::TABLE
            );
            async move { c.query(&sql).fetch_all::<KeyRow>().await }
        })
        .await?;
    for (date, event, city, source, medium, campaign, content, term) in existing {
        let key: Key = (date, event, city, [source, medium, campaign, content, term]);
        if !rows.contains_key(&key) {
            rows.insert(
                key.clone(),
                F::build(key, &Totals::default(), loaded_at, version),
            );
        }
    }
    let rows: Vec<F> = rows.into_values().collect();
    ch.insert_all(F::TABLE, &rows).await?;
    Ok(rows.len())
}

/// City of every known event (from `dim_events`).
pub async fn event_cities(ch: &Ch) -> anyhow::Result<HashMap<u64, String>> {
    let rows: Vec<(u64, String)> = ch
        .read("event cities", |c| async move {
            c.query("SELECT event_id, city FROM dim_events FINAL")
                .fetch_all::<(u64, String)>()
                .await
        })
        .await?;
    Ok(rows.into_iter().collect())
}

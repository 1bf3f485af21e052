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
    fn add(&mut self, t: &Sale<'_>) {
        // Saturating: hostile numbers give a wrong-looking total, never a panic or a wrap
        // (each ticket's price is bounded when the API's answer is read,
        // `model::MAX_PRICE_KOPECKS`).
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

/// What the facts read of a staged ticket: the columns of `stg_qtickets_tickets` the
/// recompute reads (never a whole ticket: its seat, times and other prices), borrowed from
/// the answer; a ticket in memory lends its own (`TicketRow::sale`).
#[derive(clickhouse::Row, Deserialize)]
pub struct Sale<'a> {
    order_id: u64,
    event_id: u64,
    price: i64,
    quantity: u32,
    refunded_amount: i64,
    is_paid: u8,
    is_cancelled: u8,
    is_refunded: u8,
    payed_at: Option<u32>,
    utm_source: &'a str,
    utm_medium: &'a str,
    utm_campaign: &'a str,
    utm_content: &'a str,
    utm_term: &'a str,
}

impl TicketRow {
    fn sale(&self) -> Sale<'_> {
        Sale {
            order_id: self.order_id,
            event_id: self.event_id,
            price: self.price,
            quantity: self.quantity,
            refunded_amount: self.refunded_amount,
            is_paid: self.is_paid,
            is_cancelled: self.is_cancelled,
            is_refunded: self.is_refunded,
            payed_at: self.payed_at,
            utm_source: &self.utm_source,
            utm_medium: &self.utm_medium,
            utm_campaign: &self.utm_campaign,
            utm_content: &self.utm_content,
            utm_term: &self.utm_term,
        }
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
            net_revenue: s.revenue.saturating_sub(s.refunds),
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
            net_revenue: s.revenue.saturating_sub(s.refunds),
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
    let mut grouping = Grouping::<F>::new(cities);
    for t in tickets {
        grouping.add(&t.sale());
    }
    grouping.rows_by_key(loaded_at, version)
}

/// One fact table's totals, fed a ticket at a time, so tickets read from staging are
/// counted as they arrive and never held. Keys hold numbers, one per distinct city or tag
/// (its text kept in `texts` and `numbers`), so a ticket adds no allocation unless it brings
/// new text.
struct Grouping<'c, F> {
    cities: &'c HashMap<u64, String>,
    texts: Vec<String>,
    numbers: HashMap<String, u32>,
    totals: HashMap<(u16, u64, u32, [u32; 5]), Totals>,
    fact: std::marker::PhantomData<F>,
}

impl<'c, F: Fact> Grouping<'c, F> {
    fn new(cities: &'c HashMap<u64, String>) -> Self {
        Grouping {
            cities,
            // Number 0 is the empty text.
            texts: vec![String::new()],
            numbers: HashMap::from([(String::new(), 0)]),
            totals: HashMap::new(),
            fact: std::marker::PhantomData,
        }
    }

    fn number(&mut self, text: &str) -> u32 {
        if let Some(n) = self.numbers.get(text) {
            return *n;
        }
        let n = u32::try_from(self.texts.len()).expect("fewer than 2^32 texts in memory");
        self.texts.push(text.to_owned());
        self.numbers.insert(text.to_owned(), n);
        n
    }

    fn add(&mut self, t: &Sale<'_>) {
        let Some(paid) = t.payed_at.filter(|_| t.is_paid == 1 && t.is_cancelled == 0) else {
            return;
        };
        let cities = self.cities;
        let city = self.number(cities.get(&t.event_id).map_or("", String::as_str));
        let tags = if F::BY_UTM {
            [
                t.utm_source,
                t.utm_medium,
                t.utm_campaign,
                t.utm_content,
                t.utm_term,
            ]
            .map(|tag| self.number(tag))
        } else {
            [0; 5]
        };
        self.totals
            .entry((sales_date(paid), t.event_id, city, tags))
            .or_default()
            .add(t);
    }

    /// A key that had sales before: a zero total unless it has sales now.
    fn keep(&mut self, date: u16, event_id: u64, city: &str, tags: [&str; 5]) {
        let city = self.number(city);
        let tags = tags.map(|tag| self.number(tag));
        self.totals.entry((date, event_id, city, tags)).or_default();
    }

    /// Each total with its key, the key's text owned.
    fn keyed(&self) -> impl Iterator<Item = (Key, &Totals)> {
        let text = |n: u32| self.texts[n as usize].clone();
        self.totals
            .iter()
            .map(move |((date, event_id, city, tags), s)| {
                ((*date, *event_id, text(*city), tags.map(text)), s)
            })
    }

    /// The fact rows, in no order; a row's text owned once.
    fn rows(self, loaded_at: u32, version: u64) -> Vec<F> {
        self.keyed()
            .map(|(key, s)| F::build(key, s, loaded_at, version))
            .collect()
    }

    /// The fact rows, by key.
    fn rows_by_key(self, loaded_at: u32, version: u64) -> BTreeMap<Key, F> {
        self.keyed()
            .map(|(key, s)| (key.clone(), F::build(key, s, loaded_at, version)))
            .collect()
    }
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

const DATES_PER_CHUNK: usize = 31;

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
    // A month of dates at a time: a chunk's totals are held in memory (its tickets are
    // counted as they are read, never held; the bench's backfill peaks at 47 MB), and each
    // chunk costs a `FINAL` read of staging and of both tables, so fewer chunks are faster.
    for chunk in dates.chunks(DATES_PER_CHUNK) {
        let list = date_list(chunk);
        let cities = &cities;
        let (daily, utm) = ch
            .read("staged tickets of touched dates", |c| {
                // Through the date → orders index, so the read follows the tickets' primary
                // key (order_id) instead of scanning all staging: its cost follows what the
                // run touched, not the length of the history.
                let sql = format!(
                    "SELECT ?fields FROM stg_qtickets_tickets FINAL \
                     WHERE order_id IN (SELECT order_id FROM stg_qtickets_sale_dates WHERE sales_date IN ({list})) \
                     AND payed_at IS NOT NULL AND toDate(assumeNotNull(payed_at), 'Europe/Moscow') IN ({list})"
                );
                async move {
                    let mut cursor = c.query(&sql).fetch::<Sale<'_>>()?;
                    // Both tables' totals from one read; a retried read starts them afresh.
                    let mut daily = Grouping::<SalesDailyRow>::new(cities);
                    let mut utm = Grouping::<UtmDailyRow>::new(cities);
                    while let Some(sale) = cursor.next().await? {
                        daily.add(&sale);
                        utm.add(&sale);
                    }
                    Ok((daily, utm))
                }
            })
            .await?;
        written += write(ch, &list, daily, loaded_at, version).await?;
        write(ch, &list, utm, loaded_at, version).await?;
    }
    Ok(written)
}

/// The rows of `totals` (fresh, for the dates in `list`), plus zero rows for keys that had
/// sales before and have none now; one insert.
async fn write<F: Fact>(
    ch: &Ch,
    list: &str,
    mut totals: Grouping<'_, F>,
    loaded_at: u32,
    version: u64,
) -> anyhow::Result<usize> {
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
        totals.keep(
            date,
            event,
            &city,
            [&source, &medium, &campaign, &content, &term],
        );
    }
    let rows = totals.rows(loaded_at, version);
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

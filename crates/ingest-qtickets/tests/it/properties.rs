//! Property tests: random orders, shaped as the API sends them, through the production
//! transform and aggregation equal a naive re-implementation of the documented rules written
//! here; and the Moscow sales date of any instant in any offset.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{FixedOffset, NaiveDate, TimeZone};
use ingest_qtickets::facts::{SalesDailyRow, aggregate};
use ingest_qtickets::model::{RawOrder, Transformed};
use proptest::prelude::*;
use serde_json::{Value, json};

/// An order as JSON, read as the loader reads a page's orders (an object only), then
/// transformed.
fn transform_order(
    v: &Value,
    loaded_at: u32,
    salt: Option<&zakaz_core::Secret>,
) -> anyhow::Result<Transformed> {
    let order: zakaz_core::loose::Object<RawOrder> = serde_json::from_value(v.clone())?;
    ingest_qtickets::model::transform_order(&order.0, loaded_at, salt)
}

/// 2026-11-20T00:00:00Z: the random instants fall within ten days of it.
const BASE: i64 = 1_795_132_800;

#[derive(Debug, Clone)]
struct Basket {
    quantity: u32,
    price_kopecks: i64,
    refunded: Option<i64>,
    deleted: bool,
    price_as_number: bool,
}

#[derive(Debug, Clone)]
struct Order {
    event_id: u64,
    payed: bool,
    /// Seconds after `BASE`.
    paid_after: i64,
    /// Offset of the timestamps, in hours.
    offset_hours: i32,
    deleted: bool,
    baskets: Vec<Basket>,
}

fn basket() -> impl Strategy<Value = Basket> {
    (
        1u32..=3,
        0i64..200_000,
        any::<bool>(),
        0u32..=100,
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(quantity, price_kopecks, refunded, refund_percent, deleted, price_as_number)| {
                let gross = price_kopecks * i64::from(quantity);
                Basket {
                    quantity,
                    price_kopecks,
                    // A part of the basket's amount, or all of it.
                    refunded: refunded.then(|| gross * i64::from(refund_percent) / 100),
                    deleted: deleted && refund_percent % 3 == 0,
                    price_as_number,
                }
            },
        )
}

fn order() -> impl Strategy<Value = Order> {
    (
        1u64..=4,
        any::<bool>(),
        0i64..10 * 86_400,
        prop::sample::select(vec![3, 7, 0, -5, 5]),
        prop::bool::weighted(0.1),
        prop::collection::vec(basket(), 1..4),
    )
        .prop_map(
            |(event_id, payed, paid_after, offset_hours, deleted, baskets)| Order {
                event_id,
                payed,
                paid_after,
                offset_hours,
                deleted,
                baskets,
            },
        )
}

fn iso(t: i64, offset_hours: i32) -> String {
    let offset = FixedOffset::east_opt(offset_hours * 3600).unwrap();
    offset
        .timestamp_opt(t, 0)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%S%:z")
        .to_string()
}

fn money(kopecks: i64, as_number: bool) -> Value {
    let text = format!("{}.{:02}", kopecks / 100, kopecks % 100);
    if as_number {
        json!(kopecks as f64 / 100.0)
    } else {
        json!(text)
    }
}

/// The order as the API serves it.
fn order_json(id: u64, o: &Order) -> Value {
    let paid_at = BASE + o.paid_after;
    let created = paid_at - 600;
    let baskets: Vec<Value> = o
        .baskets
        .iter()
        .enumerate()
        .map(|(i, b)| {
            json!({
                "id": id * 10 + i as u64,
                "show_id": o.event_id * 100,
                "price": money(b.price_kopecks, b.price_as_number),
                "quantity": b.quantity,
                "refunded_at": b.refunded.map(|_| iso(paid_at + 3600, o.offset_hours)),
                "refunded_amount": money(b.refunded.unwrap_or(0), false),
                "deleted_at": if b.deleted { json!(iso(paid_at + 60, o.offset_hours)) } else { Value::Null },
            })
        })
        .collect();
    json!({
        "id": id,
        "event_id": o.event_id,
        "payed": if o.payed { json!(1) } else { json!(0) },
        "payed_at": if o.payed { json!(iso(paid_at, o.offset_hours)) } else { Value::Null },
        "created_at": iso(created, o.offset_hours),
        "updated_at": iso(paid_at + 7200, o.offset_hours),
        "deleted_at": if o.deleted { json!(iso(paid_at + 100, o.offset_hours)) } else { Value::Null },
        "utm": [],
        "baskets": baskets,
    })
}

/// The Moscow date of an instant, by hand: Moscow is UTC+3 all year since 2014.
fn naive_moscow_date(t: i64) -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).unwrap()
        + chrono::Days::new((t + 3 * 3600).div_euclid(86_400) as u64)
}

/// (sales date, event, city).
type Key = (NaiveDate, u64, String);
/// Tickets, revenue, refunds, net revenue, orders.
type Naive = BTreeMap<Key, (u64, i64, i64, i64, u64)>;

/// The documented rules, written out: a paid, not cancelled order counts on the Moscow date of
/// its payment; a basket not cancelled adds price × quantity to revenue; a refunded one adds
/// its refunded amount to refunds and no tickets; any other adds its quantity.
fn naive(orders: &[Order], cities: &HashMap<u64, String>) -> Naive {
    let mut sums: BTreeMap<Key, (u64, i64, i64, BTreeSet<u64>)> = BTreeMap::new();
    for (i, o) in orders.iter().enumerate() {
        if !o.payed || o.deleted {
            continue;
        }
        let date = naive_moscow_date(BASE + o.paid_after);
        for b in o.baskets.iter().filter(|b| !b.deleted) {
            let e = sums
                .entry((date, o.event_id, cities[&o.event_id].clone()))
                .or_default();
            e.1 += b.price_kopecks * i64::from(b.quantity);
            match b.refunded {
                Some(amount) => e.2 += amount,
                None => e.0 += u64::from(b.quantity),
            }
            e.3.insert(i as u64 + 1);
        }
    }
    sums.into_iter()
        .map(|(k, (t, r, rf, o))| (k, (t, r, rf, r - rf, o.len() as u64)))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn aggregation_equals_the_rules_written_out(orders in prop::collection::vec(order(), 0..40)) {
        let cities: HashMap<u64, String> =
            (1..=4).map(|e| (e, format!("city-{e}"))).collect();
        let mut tickets = Vec::new();
        for (i, o) in orders.iter().enumerate() {
            let t = transform_order(&order_json(i as u64 + 1, o), 1, None).unwrap();
            tickets.extend(t.tickets);
        }
        // In any order: here each order's first baskets, then their second ones, and so on
        // (a basket's id is its order's id × 10 + its place), so an order's tickets are apart.
        tickets.sort_by_key(|t| t.basket_id % 10);
        let produced: Naive = aggregate::<SalesDailyRow>(&tickets, &cities, 0, 0)
            .into_values()
            .map(|r| {
                (
                    (zakaz_core::time::ch_date_to_naive(r.sales_date), r.event_id, r.city),
                    (r.tickets_sold, r.revenue, r.refunds, r.net_revenue, r.orders),
                )
            })
            .collect();
        prop_assert_eq!(produced, naive(&orders, &cities));
    }

    #[test]
    fn the_sales_date_is_the_moscow_date_in_any_offset(
        after in -400i64 * 86_400..400 * 86_400,
        offset in -12i32..=14,
    ) {
        let t = BASE + after;
        let parsed = zakaz_core::time::parse_offset_timestamp(&iso(t, offset)).unwrap();
        prop_assert_eq!(parsed.timestamp(), t);
        prop_assert_eq!(zakaz_core::time::moscow_date(&parsed), naive_moscow_date(t));
        let ch = zakaz_core::time::ch_datetime(&parsed);
        prop_assert_eq!(
            zakaz_core::time::ch_date_to_naive(ingest_qtickets::facts::sales_date(ch)),
            naive_moscow_date(t)
        );
    }
}

/// Any JSON, with the names the QTickets models read, in any shape anywhere.
fn qtickets_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,12}".prop_map(Value::from),
        "20[0-9]{2}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}[+-][0-9]{2}:[0-9]{2}"
            .prop_map(Value::from),
        "[0-9]{1,25}".prop_map(Value::from),
    ];
    let keys = prop::sample::select(vec![
        "id",
        "event_id",
        "payed",
        "payed_at",
        "created_at",
        "updated_at",
        "deleted_at",
        "price",
        "original_price",
        "discount_value",
        "quantity",
        "refunded_at",
        "refunded_amount",
        "baskets",
        "show_id",
        "utm",
        "utm_source",
        "client",
        "email",
        "shows",
        "start_date",
        "is_active",
        "city",
        "name",
        "timezone",
        "seats",
        "max_quantity",
        "payed_quantity",
        "free_quantity",
        "currency_id",
    ]);
    leaf.prop_recursive(5, 80, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(keys.clone(), inner, 0..8).prop_map(|m| Value::Object(
                m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
            )),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// Whatever JSON arrives, the models answer with rows, warnings or an error naming the
    /// field: never a panic, never an unbounded output.
    #[test]
    fn the_order_event_and_seat_models_are_total(order in qtickets_json(), event in qtickets_json(), seats in qtickets_json()) {
        if let Ok(t) = transform_order(&order, 1_800_000_000, None) {
            let baskets = order.get("baskets").and_then(Value::as_array).map_or(0, Vec::len);
            prop_assert!(t.tickets.len() <= baskets);
            // One per basket, one about the order's baskets, one about its currency.
            prop_assert!(t.warnings.len() <= baskets + 2);
        }
        let _ = ingest_qtickets::model::transform_event(&event, 1_800_000_000, 1_800_000_000);
        let _ = ingest_qtickets::model::show_starts(&event);
        let (_, _, _, warnings) = ingest_qtickets::model::count_seats(1, &seats);
        prop_assert!(warnings.len() <= 3);
    }
}

/// A refund of a hostile size (nothing bounds a refunded amount) saturates the net revenue
/// instead of overflowing it: a panic in a debug build, a wrapped number in release.
#[test]
fn a_hostile_refund_saturates_the_net_revenue() {
    let cities: HashMap<u64, String> = HashMap::from([(1, "city-1".to_owned())]);
    let refunded = Basket {
        quantity: 1,
        price_kopecks: 100_000,
        refunded: Some(-9_000_000_000_000_000_000),
        deleted: false,
        price_as_number: false,
    };
    let order = Order {
        event_id: 1,
        payed: true,
        paid_after: 0,
        offset_hours: 3,
        deleted: false,
        baskets: vec![refunded.clone(), refunded],
    };
    let t = transform_order(&order_json(1, &order), 1, None).unwrap();
    let rows = aggregate::<SalesDailyRow>(&t.tickets, &cities, 0, 0);
    let row = rows.values().next().unwrap();
    assert_eq!((row.revenue, row.refunds), (200_000, i64::MIN));
    assert_eq!(row.net_revenue, i64::MAX);
}

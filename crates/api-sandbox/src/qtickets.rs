//! QTickets REST API v1: lists are GET requests with a JSON body, query-string filters are
//! ignored, page sizes are the server's, `utm` is `[]` when empty, `reserved` is a bool or
//! 0/1, timestamps carry the event city's offset, a bad token answers 403 and unknown routes
//! an HTML 404. Every order's life (payment, cancellation, refunds) is generated up front;
//! the sandbox clock decides which part of it is visible.

use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};
use serde_json::{Value, json};
use std::sync::OnceLock;

use crate::http::{Req, Resp};
use crate::rng::Rng;
use crate::{Sandbox, SandboxConfig};

pub const TOKEN: &str = "sandbox-token";
pub const ORDERS_PER_PAGE: usize = 50;
pub const EVENTS_PER_PAGE: usize = 10;
pub const CLIENTS_PER_PAGE: usize = 100;

pub struct City {
    pub id: u64,
    pub name: &'static str,
    pub timezone: &'static str,
    /// These zones have had no daylight saving since 2014/2016: a fixed offset is exact.
    pub offset_hours: i32,
}

pub const CITIES: &[City] = &[
    City {
        id: 1,
        name: "Москва",
        timezone: "Europe/Moscow",
        offset_hours: 3,
    },
    City {
        id: 2,
        name: "Санкт-Петербург",
        timezone: "Europe/Moscow",
        offset_hours: 3,
    },
    City {
        id: 3,
        name: "Новосибирск",
        timezone: "Asia/Novosibirsk",
        offset_hours: 7,
    },
    City {
        id: 4,
        name: "Екатеринбург",
        timezone: "Asia/Yekaterinburg",
        offset_hours: 5,
    },
    City {
        id: 5,
        name: "Казань",
        timezone: "Europe/Moscow",
        offset_hours: 3,
    },
];

pub struct Zone {
    pub id: u64,
    pub name: String,
    pub admission: bool,
    pub rows: u32,
    pub places: u32,
    /// For general admission: one seat entry with this quantity.
    pub capacity: u32,
    pub price_cents: i64,
}

pub struct Show {
    pub id: u64,
    pub start: i64,
    pub is_active: bool,
    pub zones: Vec<Zone>,
}

pub struct Event {
    pub id: u64,
    pub name: String,
    pub name_is_object: bool,
    pub city: usize,
    pub is_active: bool,
    pub deleted_at: Option<i64>,
    pub created: i64,
    pub shows: Vec<Show>,
}

pub struct Basket {
    pub id: u64,
    pub show_id: u64,
    pub zone: usize,
    pub row: u32,
    pub place: u32,
    pub price_cents: i64,
    pub original_cents: i64,
    pub refunded_at: Option<i64>,
    pub refund_cents: i64,
    pub barcode: String,
    /// A refund a test scripted (`POST /_sandbox/qtickets/refund`), weeks after the payment
    /// perhaps (a postponed show). Once per basket.
    pub late_refund: OnceLock<LateRefund>,
}

/// From `at` on (sandbox time) the basket is refunded for `cents`; `bumps`: whether that
/// moved the order's `updated_at` (not documented either way).
#[derive(Debug, Clone, Copy)]
pub struct LateRefund {
    pub at: i64,
    pub cents: i64,
    pub bumps: bool,
}

impl Basket {
    /// The refund visible at `now`: (when, amount, whether it moved the order's
    /// `updated_at`). `generated_bumps`: whether the generated refunds move it.
    pub fn refund(&self, now: i64, generated_bumps: bool) -> Option<(i64, i64, bool)> {
        if let Some(r) = self.late_refund.get().filter(|r| r.at <= now) {
            return Some((r.at, r.cents, r.bumps));
        }
        self.refunded_at
            .filter(|t| *t <= now)
            .map(|t| (t, self.refund_cents, generated_bumps))
    }
}

pub struct Order {
    pub id: u64,
    pub event: usize,
    pub created: i64,
    /// When the service shows it: `created`, or later for a late-synced order.
    pub revealed: i64,
    pub payed_at: Option<i64>,
    pub deleted_at: Option<i64>,
    pub client_id: u64,
    pub utm: Option<[String; 5]>,
    pub reserved_style: u8,
    pub baskets: Vec<Basket>,
    /// A change of payment a test scripted (`POST /_sandbox/qtickets/payment`): from `at`
    /// on, the order is paid at another time, or not at all. Once per order.
    pub payment_change: OnceLock<PaymentChange>,
}

/// The payment of an order changed at `at` (sandbox time) to `payed_at` (`None`: un-paid).
#[derive(Debug, Clone, Copy)]
pub struct PaymentChange {
    pub at: i64,
    pub payed_at: Option<i64>,
}

/// An order as seen at one instant.
pub struct OrderView {
    pub payed_at: Option<i64>,
    pub deleted_at: Option<i64>,
    pub updated_at: i64,
}

impl Order {
    /// Every 19th basket of a paid order with several baskets is cancelled an hour after the
    /// payment while the order stays paid (one ticket given back).
    pub fn basket_cancelled_at(&self, b: &Basket, payed_at: Option<i64>) -> Option<i64> {
        let paid_at = payed_at?;
        (self.baskets.len() > 1 && b.id.is_multiple_of(19) && b.refunded_at.is_none())
            .then_some(paid_at + 3600)
    }

    /// `refunds_bump`: whether the generated refunds move `updated_at` ([`QData::refunds_bump`]).
    pub fn view(&self, now: i64, refunds_bump: bool) -> OrderView {
        let change = self.payment_change.get().filter(|c| c.at <= now);
        let payed_at = change
            .map_or(self.payed_at, |c| c.payed_at)
            .filter(|t| *t <= now);
        let deleted_at = self.deleted_at.filter(|t| *t <= now);
        let refunds = self
            .baskets
            .iter()
            .filter_map(|b| b.refund(now, refunds_bump))
            .filter(|(_, _, bumps)| *bumps)
            .map(|(t, _, _)| t);
        let cancellations = self
            .baskets
            .iter()
            .filter_map(|b| self.basket_cancelled_at(b, payed_at))
            .filter(|t| *t <= now);
        let updated_at = [
            Some(self.created),
            payed_at,
            deleted_at,
            change.map(|c| c.at),
        ]
        .into_iter()
        .flatten()
        .chain(refunds)
        .chain(cancellations)
        .max()
        .unwrap_or(self.created);
        OrderView {
            payed_at,
            deleted_at,
            updated_at,
        }
    }
}

/// Shapes the real service has been seen (or might be) sending besides the documented ones,
/// by name and bit: seats nested by zone (the original client handled `{zone: {seats}}`),
/// every 97th order without `baskets`, the first event without `shows`, every 53rd basket's
/// `quantity` as text.
pub const SHAPES: &[(&str, u8)] = &[
    ("nested_seats", 1),
    ("order_without_baskets", 2),
    ("event_without_shows", 4),
    ("quantity_as_text", 8),
];

pub struct QData {
    pub city_offsets: bool,
    /// Whether the generated refunds move their order's `updated_at` (`/_sandbox/config
    /// {"qtickets_refunds_bump_updated_at": false}`): the docs do not say, so both must load.
    pub refunds_bump: std::sync::atomic::AtomicBool,
    /// Shapes other than the documented ones, switched on by `/_sandbox/config
    /// {"qtickets_shapes": [...]}` ([`SHAPES`]).
    pub shapes: std::sync::atomic::AtomicU8,
    pub events: Vec<Event>,
    /// Sorted by `revealed` and `id` alike (and by `created`, unless orders sync late).
    pub orders: Vec<Order>,
}

const EVENT_WORDS: &[&str] = &[
    "Щелкунчик",
    "Лебединое озеро",
    "Джазовый вечер",
    "Стендап",
    "Органный концерт",
    "Рок-фестиваль",
    "Детский спектакль",
    "Симфония №5",
    "Мастер и Маргарита",
    "Квартирник",
];
const UTM_SOURCES: &[&str] = &["vk", "yandex", "telegram", "email", "google"];
const UTM_MEDIUMS: &[&str] = &["cpc", "social", "newsletter", "banner"];

impl QData {
    pub fn generate(cfg: &SandboxConfig, start: i64) -> QData {
        let mut rng = Rng::stream(cfg.seed, "qtickets");
        let day = 86_400;
        let history_from = start - i64::from(cfg.days) * day;
        let mut events = Vec::new();
        let mut zone_id = 1;
        for i in 0..cfg.events {
            let id = 1001 + u64::from(i);
            let city = (rng.next_u64() % CITIES.len() as u64) as usize;
            let deleted = rng.chance(8);
            let shows = (0..rng.range(1, 3))
                .map(|s| {
                    let zones = (0..rng.range(1, 3))
                        .map(|z| {
                            let admission = z == 2 || rng.chance(25);
                            let zone = Zone {
                                id: zone_id,
                                name: if admission {
                                    "Танцпол".into()
                                } else {
                                    format!("Партер {}", z + 1)
                                },
                                admission,
                                rows: if admission {
                                    1
                                } else {
                                    rng.range(4, 10) as u32
                                },
                                places: if admission {
                                    1
                                } else {
                                    rng.range(8, 20) as u32
                                },
                                capacity: if admission {
                                    rng.range(100, 400) as u32
                                } else {
                                    1
                                },
                                price_cents: rng.range(5, 50) as i64 * 10_000
                                    + if rng.chance(20) { 5_000 } else { 0 },
                            };
                            zone_id += 1;
                            zone
                        })
                        .collect();
                    Show {
                        id: id * 100 + s,
                        start: start + rng.range(2, 60) as i64 * day + 19 * 3600,
                        is_active: !deleted && rng.chance(90),
                        zones,
                    }
                })
                .collect();
            events.push(Event {
                id,
                name: format!("{} #{}", rng.pick(EVENT_WORDS), id),
                name_is_object: id % 7 == 0,
                city,
                is_active: !deleted,
                deleted_at: deleted.then(|| start - rng.range(1, 10) as i64 * day),
                created: history_from - 30 * day,
                shows,
            });
        }
        let sellable: Vec<usize> = (0..events.len())
            .filter(|i| events[*i].deleted_at.is_none())
            .collect();
        let mut orders = Vec::new();
        let total_days = cfg.days + cfg.future_days;
        let mut basket_id = 5_000_001;
        for d in 0..total_days {
            let day_start = history_from + i64::from(d) * day;
            let jitter = (cfg.orders_per_day / 5).max(1);
            let n = cfg.orders_per_day + rng.range(0, u64::from(jitter) * 2) as u32
                - jitter.min(cfg.orders_per_day);
            let mut created: Vec<i64> = (0..n)
                .map(|_| day_start + rng.range(0, day as u64 - 1) as i64)
                .collect();
            created.sort_unstable();
            for created in created {
                if sellable.is_empty() {
                    break;
                }
                let event = *rng.pick(&sellable);
                let roll = rng.range(0, 99);
                let paid_at = created + rng.range(60, 900) as i64;
                let (payed_at, deleted_at) = match roll {
                    0..=77 => (Some(paid_at), None),
                    78..=87 => (None, None),
                    88..=93 => (None, Some(created + rng.range(1800, 7200) as i64)),
                    _ => (
                        Some(paid_at),
                        Some(paid_at + rng.range(3600, 48 * 3600) as i64),
                    ),
                };
                let ev = &events[event];
                let mut baskets = Vec::new();
                for _ in 0..rng.range(1, 4) {
                    let show = rng.pick(&ev.shows);
                    let zone_idx = (rng.next_u64() % show.zones.len() as u64) as usize;
                    let zone = &show.zones[zone_idx];
                    let discounted = rng.chance(15);
                    let price = if discounted {
                        zone.price_cents * 93 / 100
                    } else {
                        zone.price_cents
                    };
                    let refunded_at = match (payed_at, deleted_at) {
                        (Some(p), None) if rng.chance(7) => {
                            Some(p + rng.range(3600, 72 * 3600) as i64)
                        }
                        _ => None,
                    };
                    let refund_cents = match refunded_at {
                        Some(_) if rng.chance(30) => price / 2,
                        Some(_) => price,
                        None => 0,
                    };
                    baskets.push(Basket {
                        id: basket_id,
                        show_id: show.id,
                        zone: zone_idx,
                        row: rng.range(1, u64::from(zone.rows)) as u32,
                        place: rng.range(1, u64::from(zone.places)) as u32,
                        price_cents: price,
                        original_cents: zone.price_cents,
                        refunded_at,
                        refund_cents,
                        barcode: format!("{:012}", rng.next_u64() % 1_000_000_000_000),
                        late_refund: OnceLock::new(),
                    });
                    basket_id += 1;
                }
                let utm = rng.chance(55).then(|| {
                    [
                        rng.pick(UTM_SOURCES).to_string(),
                        rng.pick(UTM_MEDIUMS).to_string(),
                        format!("camp_{}", rng.range(1, 6)),
                        format!("ad_{}", rng.range(1, 20)),
                        if rng.chance(50) {
                            "билеты".to_owned()
                        } else {
                            String::new()
                        },
                    ]
                });
                let late = cfg.qtickets_late_sync_every > 0
                    && orders.len() as u64 % u64::from(cfg.qtickets_late_sync_every)
                        == u64::from(cfg.qtickets_late_sync_every) - 1;
                orders.push(Order {
                    id: 0,
                    event,
                    created,
                    revealed: if late {
                        created + i64::from(cfg.qtickets_late_sync_minutes) * 60
                    } else {
                        created
                    },
                    payed_at,
                    deleted_at,
                    client_id: 70_000 + rng.range(1, 5_000),
                    utm,
                    reserved_style: (rng.next_u64() % 3) as u8,
                    baskets,
                    payment_change: OnceLock::new(),
                });
            }
        }
        // Ids in the order the service shows them.
        orders.sort_by_key(|o| (o.revealed, o.created));
        for (i, order) in orders.iter_mut().enumerate() {
            order.id = 100_001 + i as u64;
        }
        QData {
            events,
            orders,
            city_offsets: cfg.qtickets_city_offsets,
            refunds_bump: std::sync::atomic::AtomicBool::new(true),
            shapes: std::sync::atomic::AtomicU8::new(0),
        }
    }

    pub fn shape(&self, bit: u8) -> bool {
        self.shapes.load(std::sync::atomic::Ordering::Relaxed) & bit != 0
    }

    pub fn refunds_bump(&self) -> bool {
        self.refunds_bump.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Tickets in a basket: 2 or 3 for every third basket of a general-admission zone (one
    /// basket, several places), else 1. Derived from ids, so no other data shifts.
    pub fn quantity(&self, order: &Order, b: &Basket) -> u32 {
        let admission = self.events[order.event]
            .shows
            .iter()
            .find(|s| s.id == b.show_id)
            .is_some_and(|s| s.zones[b.zone].admission);
        if admission && b.id.is_multiple_of(3) {
            2 + (b.id % 2) as u32
        } else {
            1
        }
    }

    /// The UTC offset timestamps of a city's events carry: `+03:00`, as the real service was
    /// seen to send even for cities east of Moscow, or the city's own with
    /// `--qtickets-city-offsets`.
    pub fn offset(&self, city: usize) -> i32 {
        if self.city_offsets {
            CITIES[city].offset_hours
        } else {
            3
        }
    }

    /// Orders shown by `now`: a prefix of the list.
    pub fn visible(&self, now: i64) -> &[Order] {
        let n = self.orders.partition_point(|o| o.revealed <= now);
        &self.orders[..n]
    }

    fn show(&self, show_id: u64) -> Option<(&Event, &Show)> {
        self.events
            .iter()
            .find_map(|e| e.shows.iter().find(|s| s.id == show_id).map(|s| (e, s)))
    }
}

/// `2025-05-01T10:00:00+03:00` in the given offset.
pub fn iso(t: i64, offset_hours: i32) -> String {
    Iso(t, offset_hours).to_string()
}

/// A timestamp with its city's offset, written without chrono's format parser: order pages
/// carry about twenty of them per order.
#[derive(Clone, Copy)]
pub struct Iso(pub i64, pub i32);

impl std::fmt::Display for Iso {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let local = chrono::DateTime::from_timestamp(self.0 + i64::from(self.1) * 3600, 0)
            .expect("valid timestamp")
            .naive_utc();
        use chrono::{Datelike, Timelike};
        let sign = if self.1 < 0 { '-' } else { '+' };
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{sign}{:02}:00",
            local.year(),
            local.month(),
            local.day(),
            local.hour(),
            local.minute(),
            local.second(),
            self.1.abs()
        )
    }
}

impl Serialize for Iso {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Money as QTickets writes it: an integer when whole, a float otherwise.
#[derive(Clone, Copy)]
pub struct Money(pub i64);

impl Serialize for Money {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0 % 100 == 0 {
            s.serialize_i64(self.0 / 100)
        } else {
            s.serialize_f64(self.0 as f64 / 100.0)
        }
    }
}

pub fn money(cents: i64) -> Value {
    serde_json::to_value(Money(cents)).expect("money serialises")
}

fn opt_time(t: Option<i64>, offset: i32) -> Value {
    t.map_or(Value::Null, |t| json!(iso(t, offset)))
}

/// `utm`: an object when filled, `[]` when empty (the real quirk). Like the real orders seen
/// (25 of 26 filled ones), most carry only `utm_source`, `utm_medium` and `utm_campaign`;
/// every 26th also `utm_content` and `utm_term` (the latter when it has a value).
struct Utm<'a>(Option<&'a [String; 5]>, bool);

impl Serialize for Utm<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            None => s.serialize_seq(Some(0))?.end(),
            Some(tags) => {
                let keys = [
                    "utm_source",
                    "utm_medium",
                    "utm_campaign",
                    "utm_content",
                    "utm_term",
                ];
                let shown: Vec<(&str, &String)> = keys
                    .iter()
                    .copied()
                    .zip(tags)
                    .enumerate()
                    .filter(|(i, (_, v))| *i < 3 || (self.1 && !v.is_empty()))
                    .map(|(_, kv)| kv)
                    .collect();
                let mut m = s.serialize_map(Some(shown.len()))?;
                for (k, v) in shown {
                    m.serialize_entry(k, v)?;
                }
                m.end()
            }
        }
    }
}

/// `reserved`: a bool or 0/1; `integrations`: `[]` or an object.
enum Loose {
    Bool(bool),
    Int(u8),
    EmptyList,
    Lead(u64),
}

impl Serialize for Loose {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Loose::Bool(b) => s.serialize_bool(*b),
            Loose::Int(i) => s.serialize_u8(*i),
            Loose::EmptyList => s.serialize_seq(Some(0))?.end(),
            Loose::Lead(id) => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("amocrm", &json!({"lead_id": id}))?;
                m.end()
            }
        }
    }
}

#[derive(Serialize)]
struct ClientDetails {
    name: &'static str,
    surname: &'static str,
    /// `null` in every real order seen.
    middlename: Option<&'static str>,
    phone: String,
}

#[derive(Serialize)]
struct Client {
    id: u64,
    email: String,
    details: ClientDetails,
}

#[derive(Serialize)]
struct BasketOut {
    id: u64,
    show_id: u64,
    seat_id: String,
    seat_name: String,
    price: Money,
    original_price: Money,
    discount_value: Money,
    quantity: Value,
    barcode: Option<String>,
    checked_at: Option<Iso>,
    created_at: Iso,
    updated_at: Iso,
    deleted_at: Option<Iso>,
    refunded_at: Option<Iso>,
    refunded_amount: Option<Money>,
    ticket_amount: Money,
    service_fee_amount: Money,
    refunded_deduction_amount: Money,
    refunds: Vec<RefundOut>,
    client_name: &'static str,
    client_surname: &'static str,
    client_email: String,
    client_phone: String,
}

#[derive(Serialize)]
struct RefundOut {
    basket_id: u64,
    amount: Money,
    created_at: Option<Iso>,
}

/// An order as the API serves it (34 keys).
#[derive(Serialize)]
pub struct OrderOut<'a> {
    id: u64,
    uniqid: String,
    site_id: u32,
    payed: bool,
    payed_at: Option<Iso>,
    created_at: Iso,
    updated_at: Iso,
    deleted_at: Option<Iso>,
    client_id: u64,
    client: Client,
    event_id: u64,
    price: Money,
    original_price: Money,
    currency_id: &'static str,
    utm: Utm<'a>,
    custom: &'static str,
    fields: [(); 0],
    integrations: Loose,
    reserved: Loose,
    refunds: Vec<RefundOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    baskets: Option<Vec<BasketOut>>,
    payment_method: &'static str,
    card_mask: &'static str,
    promo_code: Option<()>,
    comment: Option<()>,
    lang: &'static str,
    source: &'static str,
    is_test: bool,
    ip: &'static str,
    user_agent: &'static str,
    referer: Option<()>,
    discount_id: Option<()>,
    tickets_count: usize,
    paid_amount: Money,
}

pub fn order_out<'a>(data: &QData, order: &'a Order, now: i64) -> OrderOut<'a> {
    let event = &data.events[order.event];
    let offset = data.offset(event.city);
    let at = |t: i64| Iso(t, offset);
    let bumps = data.refunds_bump();
    let view = order.view(now, bumps);
    let paid = view.payed_at.is_some();
    let email = format!("client{}@example.com", order.client_id);
    let phone = format!("+7999{:07}", order.client_id);
    let baskets = order
        .baskets
        .iter()
        .map(|b| {
            let refund = b.refund(now, bumps);
            let refunded_at = refund.map(|(t, _, _)| t);
            let refund_cents = refund.map_or(0, |(_, c, _)| c);
            let refund_bumps = refund.is_some_and(|(_, _, bumps)| bumps);
            let show = event
                .shows
                .iter()
                .find(|s| s.id == b.show_id)
                .expect("basket show");
            let zone = &show.zones[b.zone];
            let quantity = data.quantity(order, b);
            let basket_deleted = view.deleted_at.or(order
                .basket_cancelled_at(b, view.payed_at)
                .filter(|t| *t <= now));
            let updated = [
                Some(order.created),
                Some(view.updated_at).filter(|_| order.payment_change.get().is_some()),
                view.payed_at,
                basket_deleted,
                refunded_at.filter(|_| refund_bumps),
            ]
            .into_iter()
            .flatten()
            .max()
            .unwrap_or(order.created);
            BasketOut {
                id: b.id,
                show_id: b.show_id,
                seat_id: format!("{}-{};{}", zone.id, b.row, b.place),
                seat_name: if zone.admission {
                    zone.name.clone()
                } else {
                    format!("{}, ряд {}, место {}", zone.name, b.row, b.place)
                },
                price: Money(b.price_cents),
                original_price: Money(b.original_cents),
                discount_value: Money(b.original_cents - b.price_cents),
                quantity: if data.shape(8) && b.id.is_multiple_of(53) {
                    json!(format!("{quantity} шт."))
                } else {
                    json!(quantity)
                },
                barcode: paid.then(|| b.barcode.clone()),
                checked_at: None,
                created_at: at(order.created),
                updated_at: at(updated),
                deleted_at: basket_deleted.map(at),
                refunded_at: refunded_at.map(at),
                refunded_amount: refunded_at.map(|_| Money(refund_cents)),
                ticket_amount: Money(b.price_cents * i64::from(quantity)),
                // The buyer's service fee, on top of the ticket price (undocumented: every
                // fourth basket carries one, so a loader that adds it to revenue is caught).
                service_fee_amount: Money(if b.id.is_multiple_of(4) {
                    b.price_cents * i64::from(quantity) * 7 / 100
                } else {
                    0
                }),
                refunded_deduction_amount: Money(
                    refunded_at.map_or(0, |_| b.price_cents * i64::from(quantity) - refund_cents),
                ),
                refunds: refunded_at
                    .map(|t| RefundOut {
                        basket_id: b.id,
                        amount: Money(refund_cents),
                        created_at: Some(at(t)),
                    })
                    .into_iter()
                    .collect(),
                client_name: "Иван",
                client_surname: "Петров",
                client_email: email.clone(),
                client_phone: phone.clone(),
            }
        })
        .collect();
    let refunds = order
        .baskets
        .iter()
        .filter_map(|b| {
            b.refund(now, bumps).map(|(t, cents, _)| RefundOut {
                basket_id: b.id,
                amount: Money(cents),
                created_at: Some(at(t)),
            })
        })
        .collect();
    // `price` is per ticket: the order's is Σ price × quantity.
    let price: i64 = order
        .baskets
        .iter()
        .map(|b| b.price_cents * i64::from(data.quantity(order, b)))
        .sum();
    let original: i64 = order
        .baskets
        .iter()
        .map(|b| b.original_cents * i64::from(data.quantity(order, b)))
        .sum();
    OrderOut {
        id: order.id,
        uniqid: format!("{:x}", order.id * 2_654_435_761 % 0xffff_ffff),
        site_id: 1,
        payed: paid,
        payed_at: view.payed_at.map(at),
        created_at: at(order.created),
        updated_at: at(view.updated_at),
        deleted_at: view.deleted_at.map(at),
        client_id: order.client_id,
        client: Client {
            id: order.client_id,
            email,
            details: ClientDetails {
                name: "Иван",
                surname: "Петров",
                middlename: None,
                phone,
            },
        },
        event_id: event.id,
        price: Money(price),
        original_price: Money(original),
        currency_id: "RUB",
        utm: Utm(order.utm.as_ref(), order.id.is_multiple_of(26)),
        custom: "",
        fields: [],
        integrations: if order.id.is_multiple_of(2) {
            Loose::EmptyList
        } else {
            Loose::Lead(order.id)
        },
        reserved: match order.reserved_style {
            0 => Loose::Bool(false),
            1 => Loose::Int(0),
            _ => Loose::Bool(!paid && view.deleted_at.is_none()),
        },
        refunds,
        baskets: (!(data.shape(2) && order.id.is_multiple_of(97))).then_some(baskets),
        payment_method: "card",
        card_mask: "427600******1234",
        promo_code: None,
        comment: None,
        lang: "ru",
        source: "widget",
        is_test: false,
        ip: "192.0.2.10",
        user_agent: "Mozilla/5.0",
        referer: None,
        discount_id: None,
        tickets_count: order.baskets.len(),
        paid_amount: Money(if paid { price } else { 0 }),
    }
}

pub fn order_json(data: &QData, order: &Order, now: i64) -> Value {
    serde_json::to_value(order_out(data, order, now)).expect("orders serialise")
}

/// A page of orders, serialised straight from the typed rows.
fn order_page(
    data: &QData,
    orders: &mut dyn Iterator<Item = &Order>,
    now: i64,
    page: usize,
    total: usize,
    with_paging: bool,
) -> Resp {
    #[derive(Serialize)]
    struct Paging {
        #[serde(rename = "perPage")]
        per_page: usize,
        #[serde(rename = "currentPage")]
        current_page: usize,
        total: usize,
    }
    #[derive(Serialize)]
    struct PageOut<'a> {
        data: Vec<OrderOut<'a>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        paging: Option<Paging>,
    }
    let out = PageOut {
        data: orders
            .skip((page - 1) * ORDERS_PER_PAGE)
            .take(ORDERS_PER_PAGE)
            .map(|o| order_out(data, o, now))
            .collect(),
        paging: with_paging.then_some(Paging {
            per_page: ORDERS_PER_PAGE,
            current_page: page,
            total,
        }),
    };
    Resp {
        status: 200,
        headers: vec![(
            "Content-Type".into(),
            "application/json; charset=utf-8".into(),
        )],
        body: serde_json::to_vec(&out).expect("pages serialise"),
    }
}

fn event_json(data: &QData, event: &Event) -> Value {
    let city = &CITIES[event.city];
    let off = data.offset(event.city);
    let shows: Vec<Value> = event
        .shows
        .iter()
        .map(|s| {
            json!({
                "id": s.id,
                "is_active": u8::from(s.is_active),
                "start_date": iso(s.start, off),
                "finish_date": iso(s.start + 2 * 3600, off),
                // Seen `null` on real shows.
                "sale_start_date": if s.id % 4 == 0 { Value::Null } else { json!(iso(event.created, off)) },
                "sale_finish_date": iso(s.start, off),
                "prices": s.zones.iter().map(|z| json!({"id": z.id, "default_price": money(z.price_cents), "zone_id": z.id})).collect::<Vec<_>>(),
                "deleted_at": opt_time(event.deleted_at, off),
            })
        })
        .collect();
    let name = if event.name_is_object {
        json!({"ru": event.name, "en": format!("Event #{}", event.id)})
    } else {
        json!(event.name)
    };
    let mut out = json!({
        "id": event.id,
        "name": name,
        "is_active": u8::from(event.is_active),
        "city": {"id": city.id, "name": city.name, "timezone": city.timezone},
        "place_name": format!("Зал {}", event.id % 13 + 1),
        "place_address": format!("ул. Ленина, {}", event.id % 90 + 1),
        "currency_id": "RUB",
        "created_at": iso(event.created, off),
        "deleted_at": opt_time(event.deleted_at, off),
        "shows": shows,
    });
    if data.shape(4) && data.events.first().is_some_and(|e| e.id == event.id) {
        out.as_object_mut().expect("an object").remove("shows");
    }
    out
}

/// [`seats_json`], or nested by zone (`{"<zone id>": {"id", "name", "seats": {...}}}`) when
/// the `nested_seats` shape is on.
pub fn seats_answer(data: &QData, seed: u64, show: &Show) -> Value {
    let flat = seats_json(seed, show);
    if !data.shape(1) {
        return flat;
    }
    let mut zones = serde_json::Map::new();
    for zone in &show.zones {
        let seats: serde_json::Map<String, Value> = flat["data"]
            .as_object()
            .expect("flat seats")
            .iter()
            .filter(|(_, s)| s["zone_id"] == json!(zone.id))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        zones.insert(
            zone.id.to_string(),
            json!({"id": zone.id, "name": zone.name, "seats": seats}),
        );
    }
    json!({"data": zones})
}

/// Seats of a show, flat: `{"<seat_id>": Seat}`. Seated zones have one entry per seat,
/// general admission one entry with its whole quantity.
pub fn seats_json(seed: u64, show: &Show) -> Value {
    let mut rng = Rng::stream(seed, &format!("seats-{}", show.id));
    let mut map = serde_json::Map::new();
    for zone in &show.zones {
        for row in 1..=zone.rows {
            for place in 1..=zone.places {
                let max = if zone.admission { zone.capacity } else { 1 };
                let payed = if zone.admission {
                    rng.range(0, u64::from(max)) as u32
                } else {
                    u32::from(rng.chance(45))
                };
                let disabled = !zone.admission && payed == 0 && rng.chance(3);
                let free = if disabled { 0 } else { max - payed };
                let id = format!("{}-{};{}", zone.id, row, place);
                map.insert(
                    id.clone(),
                    json!({
                        "id": id, "zone_id": zone.id,
                        "name": if zone.admission { zone.name.clone() } else { format!("Ряд {row}, место {place}") },
                        "row": row, "place": place, "admission": zone.admission,
                        "max_quantity": max, "free_quantity": free, "payed_quantity": payed,
                        "available": free > 0, "disabled": disabled, "price": money(zone.price_cents),
                    }),
                );
            }
        }
    }
    json!({"data": Value::Object(map)})
}

fn qt_error(status: u16, code: &str, message: &str) -> Resp {
    Resp::json(
        status,
        &json!({"error": message, "status": status, "code": code, "info": []}),
    )
}

/// The JSON 404 of a missing object: `{"error":"Resource \"Event\" not found",…,"info":{"id":…}}`.
fn not_found(resource: &str, id: &str) -> Resp {
    let id: Value = id.parse::<u64>().map_or_else(|_| json!(id), |n| json!(n));
    Resp::json(
        404,
        &json!({"error": format!("Resource \"{resource}\" not found"), "status": 404, "code": "RESOURCE_NOT_FOUND", "info": {"id": id, "resource": resource}}),
    )
}

/// Every other 503 of the real service came without `info`.
static UNKNOWN_ERRORS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The vendor-shaped body for an injected fault of this status.
pub fn fault_body(status: u16) -> Resp {
    match status {
        404 => Resp::html_404(),
        403 => qt_error(403, "ACCESS_DENIED", "Access denied"),
        429 => qt_error(429, "TOO_MANY_REQUESTS", "Too many requests"),
        503 if UNKNOWN_ERRORS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 2 == 1 => {
            Resp::json(
                503,
                &json!({"error": "Unknown error", "status": 503, "code": "UNKNOWN_ERROR"}),
            )
        }
        s => qt_error(s, "UNKNOWN_ERROR", "Unknown error"),
    }
}

struct Cond {
    column: String,
    op: String,
    value: Value,
}

fn parse_where(body: &Value) -> Result<Vec<Cond>, String> {
    let Some(list) = body.get("where") else {
        return Ok(Vec::new());
    };
    let list = list.as_array().ok_or("`where` must be an array")?;
    list.iter()
        .map(|c| {
            Ok(Cond {
                column: c
                    .get("column")
                    .and_then(Value::as_str)
                    .ok_or("`column` is required")?
                    .to_owned(),
                op: c
                    .get("operator")
                    .and_then(Value::as_str)
                    .unwrap_or("=")
                    .to_owned(),
                value: c.get("value").cloned().unwrap_or(Value::Null),
            })
        })
        .collect()
}

/// A filter value's timestamp. The real service wants `+03:00`; `+0300` is refused.
fn time_value(v: &Value) -> Result<i64, String> {
    let s = v.as_str().ok_or("a date filter needs a string value")?;
    let tail = &s[s.len().saturating_sub(5)..];
    if tail.starts_with(['+', '-']) && !tail.contains(':') {
        return Err(format!("invalid date `{s}`: write the offset as +03:00"));
    }
    zakaz_core::time::parse_api_timestamp(s)
        .map(|t| t.timestamp())
        .map_err(|e| e.to_string())
}

fn compare<T: PartialOrd>(a: Option<T>, op: &str, b: &[T]) -> bool {
    match (op, a) {
        ("null", a) => a.is_none(),
        ("not null", a) => a.is_some(),
        (_, None) => false,
        ("=", Some(a)) => b.first().is_some_and(|b| a == *b),
        ("!=", Some(a)) => b.first().is_some_and(|b| a != *b),
        ("<", Some(a)) => b.first().is_some_and(|b| a < *b),
        (">", Some(a)) => b.first().is_some_and(|b| a > *b),
        ("<=", Some(a)) => b.first().is_some_and(|b| a <= *b),
        (">=", Some(a)) => b.first().is_some_and(|b| a >= *b),
        ("in", Some(a)) => b.contains(&a),
        ("not in", Some(a)) => !b.contains(&a),
        _ => false,
    }
}

fn ints(v: &Value) -> Vec<i64> {
    match v {
        Value::Array(items) => items.iter().filter_map(as_int).collect(),
        other => as_int(other).into_iter().collect(),
    }
}

fn as_int(v: &Value) -> Option<i64> {
    v.as_i64()
        .or_else(|| v.as_bool().map(i64::from))
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

fn matches(
    order: &Order,
    view: &OrderView,
    data: &QData,
    conds: &[Cond],
    honour_dates: bool,
) -> Result<bool, String> {
    for c in conds {
        let ok = match c.column.as_str() {
            "id" => compare(Some(order.id as i64), &c.op, &ints(&c.value)),
            "event_id" => compare(
                Some(data.events[order.event].id as i64),
                &c.op,
                &ints(&c.value),
            ),
            "client_id" => compare(Some(order.client_id as i64), &c.op, &ints(&c.value)),
            "payed" => compare(
                Some(i64::from(view.payed_at.is_some())),
                &c.op,
                &ints(&c.value),
            ),
            "deleted_at" if c.op == "null" || c.op == "not null" => {
                compare(view.deleted_at, &c.op, &[])
            }
            col @ ("payed_at" | "created_at" | "updated_at" | "deleted_at") => {
                let t = if c.value.is_null() {
                    None
                } else {
                    Some(time_value(&c.value)?)
                };
                if !honour_dates {
                    true
                } else {
                    let actual = match col {
                        "payed_at" => view.payed_at,
                        "created_at" => Some(order.created),
                        "updated_at" => Some(view.updated_at),
                        _ => view.deleted_at,
                    };
                    compare(actual, &c.op, &t.into_iter().collect::<Vec<_>>())
                }
            }
            // The real service ignores filters on columns it does not know.
            _ => true,
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

fn page_of(body: &Value) -> usize {
    body.get("page")
        .and_then(as_int)
        .filter(|p| *p >= 1)
        .unwrap_or(1) as usize
}

fn paged(items: Vec<Value>, per_page: usize, page: usize, total: usize) -> Value {
    json!({"data": items, "paging": {"perPage": per_page, "currentPage": page, "total": total}})
}

pub fn handle(sb: &Sandbox, req: &Req, path: &str) -> Resp {
    if req.bearer() != Some(TOKEN) {
        return qt_error(403, "ACCESS_DENIED", "Access denied");
    }
    // Seen on the real service: creating an order over the API is not possible.
    if req.method == "POST" && path.trim_matches('/') == "orders" {
        return qt_error(503, "UNKNOWN_ERROR", "Unknown error");
    }
    if req.method != "GET" {
        // Only `POST /shows/{id}/barcode/{bc}` exists (it marks a ticket scanned); our
        // loaders must never send it. It is answered and logged so tests can catch it.
        return Resp::json(200, &json!({"data": {"checked": true}}));
    }
    let body = match req.json() {
        Ok(v) => v,
        Err(e) => return qt_error(400, "BAD_REQUEST", &format!("Invalid JSON body: {e}")),
    };
    let now = sb.now();
    let data = &sb.data.qtickets;
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["orders"] => list_orders(sb, &body, now),
        ["orders", id] => match id
            .parse::<u64>()
            .ok()
            .and_then(|id| data.visible(now).iter().find(|o| o.id == id))
        {
            Some(order) => Resp::json(200, &json!({"data": order_json(data, order, now)})),
            None => not_found("Order", id),
        },
        ["events"] => {
            let page = page_of(&body);
            let conds = match parse_where(&body) {
                Ok(c) => c,
                Err(e) => return qt_error(400, "VALIDATION_ERROR", &e),
            };
            let all: Vec<&Event> = data
                .events
                .iter()
                .filter(|e| {
                    conds.iter().all(|c| {
                        c.column != "id" || compare(Some(e.id as i64), &c.op, &ints(&c.value))
                    })
                })
                .collect();
            let items = all
                .iter()
                .skip((page - 1) * EVENTS_PER_PAGE)
                .take(EVENTS_PER_PAGE)
                .map(|e| event_json(data, e))
                .collect();
            Resp::json(200, &paged(items, EVENTS_PER_PAGE, page, all.len()))
        }
        ["events", id] => match id
            .parse::<u64>()
            .ok()
            .and_then(|id| data.events.iter().find(|e| e.id == id))
        {
            Some(event) => Resp::json(200, &json!({"data": event_json(data, event)})),
            None => not_found("Event", id),
        },
        ["clients", id] => match id
            .parse::<u64>()
            .ok()
            .filter(|id| (70_001..=70_300).contains(id))
        {
            Some(id) => Resp::json(
                200,
                &json!({"data": {"id": id, "email": format!("client{id}@example.com")}}),
            ),
            None => not_found("Client", id),
        },
        ["shows", id, "seats"] => match id.parse::<u64>().ok().and_then(|id| data.show(id)) {
            Some((_, show)) => Resp::json(200, &seats_answer(data, sb.config.seed, show)),
            None => qt_error(404, "RESOURCE_NOT_FOUND", "Resource \"Show\" not found"),
        },
        ["shows", id, "barcodes"] => match id.parse::<u64>().ok() {
            Some(show_id) => {
                let list: Vec<Value> = data
                    .visible(now)
                    .iter()
                    .filter(|o| o.view(now, data.refunds_bump()).payed_at.is_some())
                    .flat_map(|o| o.baskets.iter().filter(move |b| b.show_id == show_id))
                    .map(|b| json!({"barcode": b.barcode, "basket_id": b.id, "checked_at": Value::Null}))
                    .collect();
                // A bare array, without the `data` envelope.
                Resp::json(200, &Value::Array(list))
            }
            None => Resp::html_404(),
        },
        ["clients"] => {
            let page = page_of(&body);
            let total = 300;
            let items = ((page - 1) * CLIENTS_PER_PAGE..(page * CLIENTS_PER_PAGE).min(total))
                .map(|i| json!({"id": 70_001 + i, "email": format!("client{}@example.com", 70_001 + i)}))
                .collect();
            Resp::json(200, &paged(items, CLIENTS_PER_PAGE, page, total))
        }
        ["discounts"] => Resp::json(
            200,
            &paged(
                vec![json!({"id": 1, "name": "Скидка 10%", "value": 10})],
                100,
                1,
                1,
            ),
        ),
        ["promo-codes"] => Resp::json(
            200,
            &paged(vec![json!({"id": 1, "code": "SPRING"})], 500, 1, 1),
        ),
        ["color-themes"] => Resp::json(200, &json!({"data": [{"id": 1, "name": "default"}]})),
        _ => Resp::html_404(),
    }
}

fn list_orders(sb: &Sandbox, body: &Value, now: i64) -> Resp {
    let data = &sb.data.qtickets;
    let conds = match parse_where(body) {
        Ok(c) => c,
        Err(e) => return qt_error(400, "VALIDATION_ERROR", &e),
    };
    // What the original project recorded: the whole order table, unfiltered, is too heavy
    // for the real service.
    if conds.is_empty() {
        return qt_error(503, "UNKNOWN_ERROR", "Unknown error");
    }
    let (honour_dates, with_paging) = {
        let state = sb.state();
        (state.qtickets_date_filters, state.qtickets_paging)
    };
    let mut candidates = data.visible(now);
    // Narrow by an id lower bound first: keyset paging stays cheap on large histories.
    for c in &conds {
        if c.column == "id"
            && (c.op == ">" || c.op == ">=")
            && let Some(v) = as_int(&c.value)
        {
            let start = candidates.partition_point(|o| {
                if c.op == ">" {
                    o.id as i64 <= v
                } else {
                    (o.id as i64) < v
                }
            });
            candidates = &candidates[start..];
        }
    }
    let page = page_of(body);
    let order_by_id = body
        .get("orderBy")
        .and_then(Value::as_object)
        .is_none_or(|o| o.keys().all(|k| k == "id"));
    let only_id_bounds = conds
        .iter()
        .all(|c| c.column == "id" && matches!(c.op.as_str(), ">" | ">=" | "<" | "<="));
    if only_id_bounds && order_by_id {
        // Keyset paging, the common case: the answer is a slice, no scan needed.
        for c in &conds {
            if let Some(v) = as_int(&c.value) {
                let end = match c.op.as_str() {
                    "<" => candidates.partition_point(|o| (o.id as i64) < v),
                    "<=" => candidates.partition_point(|o| o.id as i64 <= v),
                    _ => candidates.len(),
                };
                candidates = &candidates[..end];
            }
        }
        let desc = body.pointer("/orderBy/id").and_then(Value::as_str) == Some("desc");
        let mut ordered: Box<dyn Iterator<Item = &Order>> = if desc {
            Box::new(candidates.iter().rev())
        } else {
            Box::new(candidates.iter())
        };
        return order_page(data, &mut ordered, now, page, candidates.len(), with_paging);
    }
    let mut hits: Vec<(&Order, OrderView)> = Vec::new();
    for order in candidates {
        let view = order.view(now, data.refunds_bump());
        match matches(order, &view, data, &conds, honour_dates) {
            Ok(true) => hits.push((order, view)),
            Ok(false) => {}
            Err(e) => return qt_error(400, "VALIDATION_ERROR", &e),
        }
    }
    if let Some(order_by) = body.get("orderBy").and_then(Value::as_object)
        && let Some((key, dir)) = order_by.iter().next()
    {
        let desc = dir.as_str() == Some("desc");
        match key.as_str() {
            "updated_at" => hits.sort_by_key(|(o, v)| (v.updated_at, o.id)),
            "payed_at" => hits.sort_by_key(|(o, v)| (v.payed_at, o.id)),
            _ => {}
        }
        if desc {
            hits.reverse();
        }
    }
    let total = hits.len();
    order_page(
        data,
        &mut hits.iter().map(|(o, _)| *o),
        now,
        page,
        total,
        with_paging,
    )
}

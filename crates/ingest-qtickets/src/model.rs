//! From QTickets JSON to rows. Tolerant where the API is loose (`utm` is an object or `[]`,
//! `reserved` a bool or 0/1, money an integer or a float, an event name a string or an object
//! keyed by locale); strict where a wrong guess would corrupt totals (ids, timestamps).
//! Personal data (names, e-mails, phones, card masks) is never copied into rows; with a salt
//! configured, a salted SHA-256 of the client's e-mail is kept instead.

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use zakaz_core::Secret;
use zakaz_core::time::{ch_datetime, moscow_date, parse_offset_timestamp};

#[derive(Debug, Clone, PartialEq, clickhouse::Row, Serialize, Deserialize)]
pub struct OrderRow {
    pub order_id: u64,
    pub event_id: u64,
    pub payed: u8,
    pub payed_at: Option<u32>,
    pub created_at: u32,
    pub updated_at: u32,
    pub deleted_at: Option<u32>,
    /// Kopecks (`Decimal(18, 2)` on the wire).
    pub price: i64,
    pub original_price: i64,
    pub currency: String,
    pub tickets: u32,
    pub utm_source: String,
    pub utm_medium: String,
    pub utm_campaign: String,
    pub utm_content: String,
    pub utm_term: String,
    pub client_hash: String,
    pub loaded_at: u32,
    pub _version: u64,
}

#[derive(Debug, Clone, PartialEq, clickhouse::Row, Serialize, Deserialize)]
pub struct TicketRow {
    pub basket_id: u64,
    pub order_id: u64,
    pub event_id: u64,
    pub show_id: u64,
    pub seat_id: String,
    pub seat_name: String,
    pub price: i64,
    pub original_price: i64,
    pub discount_value: i64,
    pub quantity: u32,
    pub refunded_amount: i64,
    pub is_paid: u8,
    pub is_cancelled: u8,
    pub is_refunded: u8,
    pub payed_at: Option<u32>,
    pub created_at: u32,
    pub deleted_at: Option<u32>,
    pub refunded_at: Option<u32>,
    pub utm_source: String,
    pub utm_medium: String,
    pub utm_campaign: String,
    pub utm_content: String,
    pub utm_term: String,
    pub loaded_at: u32,
    pub _version: u64,
}

#[derive(Debug, Clone, PartialEq, clickhouse::Row, Serialize, Deserialize)]
pub struct EventRow {
    pub event_id: u64,
    pub name: String,
    pub city: String,
    pub city_timezone: String,
    pub place_name: String,
    pub place_address: String,
    pub currency: String,
    pub is_active: u8,
    pub is_deleted: u8,
    pub first_show_at: Option<u32>,
    pub last_show_at: Option<u32>,
    pub shows: u32,
    pub loaded_at: u32,
    pub _version: u64,
}

/// An active show worth an inventory snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct ShowRef {
    pub show_id: u64,
    pub event_id: u64,
    pub city: String,
    pub start: Option<u32>,
}

fn field<'a>(v: &'a Value, key: &str) -> &'a Value {
    v.get(key).unwrap_or(&Value::Null)
}

fn id(v: &Value, key: &str, what: &str) -> anyhow::Result<u64> {
    id_in(field(v, key), key, what)
}

/// `f`, the value of `key`, as an id: a number or a numeric string.
fn id_in(f: &Value, key: &str, what: &str) -> anyhow::Result<u64> {
    f.as_u64()
        .or_else(|| f.as_str().and_then(|s| s.parse().ok()))
        .ok_or_else(|| anyhow::anyhow!("{what}: `{key}` is missing or not an id ({f})"))
}

fn text(v: &Value, key: &str) -> String {
    text_of(field(v, key))
}

fn text_of(f: &Value) -> String {
    match f {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// `true`, `1`, `"1"` → true.
pub fn flag(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => matches!(s.as_str(), "1" | "true"),
        _ => false,
    }
}

/// Money as kopecks: integers, decimal numbers and numeric strings (with `.` or `,`), read
/// through their decimal text (`zakaz_core::money`), never a float; null is 0.
pub fn kopecks(v: &Value, what: &str) -> anyhow::Result<i64> {
    let text = match v {
        Value::Null => return Ok(0),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        other => anyhow::bail!("{what}: money `{other}` is not a number"),
    };
    zakaz_core::money::parse_kopecks(&text)
        .map_err(|_| anyhow::anyhow!("{what}: money `{text}` is not a number"))
}

/// `f`, the value of `key`, as an instant: `null` or `""` is none.
fn timestamp(f: &Value, key: &str, what: &str) -> anyhow::Result<Option<DateTime<FixedOffset>>> {
    match f {
        Value::Null => Ok(None),
        Value::String(s) if s.is_empty() => Ok(None),
        // QTickets always sends an offset; without one the instant is unknown.
        Value::String(s) => match parse_offset_timestamp(s) {
            // ClickHouse would hold another instant in its place.
            Ok(t) if !zakaz_core::time::fits_ch_datetime(&t) => anyhow::bail!(
                "{what}: `{key}`: {} is outside 1970 to 2106, the instants ClickHouse holds",
                t.to_rfc3339()
            ),
            Ok(t) => Ok(Some(t)),
            Err(e) => anyhow::bail!("{what}: `{key}`: {e}"),
        },
        other => anyhow::bail!("{what}: `{key}` is not a timestamp ({other})"),
    }
}

fn ch(t: Option<DateTime<FixedOffset>>) -> Option<u32> {
    t.map(|t| ch_datetime(&t))
}

/// UTM tags of an order (its `utm`): an object when filled, `[]` (or null) when empty.
pub fn utm(u: &Value) -> [String; 5] {
    let get = |k: &str| {
        u.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    [
        get("utm_source"),
        get("utm_medium"),
        get("utm_campaign"),
        get("utm_content"),
        get("utm_term"),
    ]
}

/// The row version: the later load wins (every load reads the order's current state, so a
/// vendor clock that steps back — an `updated_at` earlier than the last one seen — cannot
/// hide a change); within one load, the newer `updated_at`. Both halves are whole 32-bit
/// seconds, so the order holds for the table's life. Rows of the earlier schemes (`updated_at`
/// first, or a 20-bit load time that wrapped every 12 days) carry an update time no later
/// than their load, so any later load still outranks them.
pub fn version(updated_at: u32, loaded_at: u32) -> u64 {
    (u64::from(loaded_at) << 32) | u64::from(updated_at)
}

/// An order as the transform reads it. QTickets' orders carry much more (the client's
/// personal data, custom fields, integrations, refunds): skipped as they are read, never
/// built. Each value stays JSON, read by the same loose rules as ever; a missing key is
/// `null`.
#[derive(Debug, Default, Deserialize)]
pub struct RawOrder {
    #[serde(default)]
    pub id: Value,
    #[serde(default)]
    pub event_id: Value,
    #[serde(default)]
    pub payed: Value,
    #[serde(default)]
    pub payed_at: Value,
    #[serde(default)]
    pub created_at: Value,
    #[serde(default)]
    pub updated_at: Value,
    #[serde(default)]
    pub deleted_at: Value,
    #[serde(default)]
    pub utm: Value,
    /// Of the client, only the e-mail (hashed with a salt, when one is configured); a client
    /// that is not an object has none.
    #[serde(default, rename = "client", deserialize_with = "email_of_client")]
    pub client_email: Value,
    #[serde(default)]
    pub price: Value,
    #[serde(default)]
    pub original_price: Value,
    #[serde(default)]
    pub currency_id: Value,
    #[serde(default)]
    pub baskets: Baskets,
}

/// An order's `baskets`: a list, or what else it was (said in a warning; no tickets).
#[derive(Debug)]
pub enum Baskets {
    List(Vec<Basket>),
    Not(&'static str),
}

impl Default for Baskets {
    fn default() -> Self {
        Baskets::Not(shape(&Value::Null))
    }
}

/// One element of `baskets`: a basket, or `None` for a value that is not an object (an order
/// holding one fails: it has no id).
#[derive(Debug)]
pub struct Basket(pub Option<RawBasket>);

#[derive(Debug, Default, Deserialize)]
pub struct RawBasket {
    #[serde(default)]
    pub id: Value,
    #[serde(default)]
    pub show_id: Value,
    #[serde(default)]
    pub seat_id: Value,
    #[serde(default)]
    pub seat_name: Value,
    #[serde(default)]
    pub price: Value,
    #[serde(default)]
    pub original_price: Value,
    #[serde(default)]
    pub discount_value: Value,
    #[serde(default)]
    pub quantity: Value,
    #[serde(default)]
    pub refunded_at: Value,
    #[serde(default)]
    pub refunded_amount: Value,
    #[serde(default)]
    pub deleted_at: Value,
}

impl<'de> Deserialize<'de> for Baskets {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Anything but a list is skipped, named by its shape.
        struct ListOrNot;
        impl<'de> serde::de::Visitor<'de> for ListOrNot {
            type Value = Baskets;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list of baskets")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Baskets, A::Error> {
                let mut list = Vec::with_capacity(seq.size_hint().unwrap_or(2));
                while let Some(b) = seq.next_element()? {
                    list.push(b);
                }
                Ok(Baskets::List(list))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Baskets, A::Error> {
                while map
                    .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(Baskets::Not(shape(&Value::Object(Default::default()))))
            }
            fn visit_unit<E>(self) -> Result<Baskets, E> {
                Ok(Baskets::default())
            }
            fn visit_bool<E>(self, _: bool) -> Result<Baskets, E> {
                Ok(Baskets::Not(shape(&Value::Bool(false))))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Baskets, E> {
                Ok(Baskets::Not(shape(&Value::from(0))))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Baskets, E> {
                Ok(Baskets::Not(shape(&Value::from(0))))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Baskets, E> {
                Ok(Baskets::Not(shape(&Value::from(0))))
            }
            fn visit_str<E>(self, _: &str) -> Result<Baskets, E> {
                Ok(Baskets::Not(shape(&Value::String(String::new()))))
            }
        }
        d.deserialize_any(ListOrNot)
    }
}

impl<'de> Deserialize<'de> for Basket {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // An object is read as a basket; any other value skipped.
        struct ObjectOrNone;
        impl<'de> serde::de::Visitor<'de> for ObjectOrNone {
            type Value = Basket;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a basket")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Basket, A::Error> {
                RawBasket::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(|b| Basket(Some(b)))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Basket, A::Error> {
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(Basket(None))
            }
            other_values_are!(Basket, Basket(None));
        }
        d.deserialize_any(ObjectOrNone)
    }
}

/// Whether an object's key is `email` (read without allocating).
struct IsEmail;

impl<'de> serde::de::DeserializeSeed<'de> for IsEmail {
    type Value = bool;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_str(self)
    }
}

impl serde::de::Visitor<'_> for IsEmail {
    type Value = bool;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a key")
    }
    fn visit_str<E>(self, key: &str) -> Result<bool, E> {
        Ok(key == "email")
    }
}

/// A client's `email`; `null` for a client without one or one that is not an object.
fn email_of_client<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
    struct EmailOf;
    impl<'de> serde::de::Visitor<'de> for EmailOf {
        type Value = Value;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a client")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
            let mut email = Value::Null;
            while let Some(is_email) = map.next_key_seed(IsEmail)? {
                if is_email {
                    email = map.next_value()?;
                } else {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
            Ok(email)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
            while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
            Ok(Value::Null)
        }
        other_values_are!(Value, Value::Null);
    }
    d.deserialize_any(EmailOf)
}

pub struct Transformed {
    pub order: OrderRow,
    pub tickets: Vec<TicketRow>,
    /// Moscow date of payment: the sales date.
    pub sales_date: Option<chrono::NaiveDate>,
    /// Fields in a shape the API should not send, each named with its order and what was
    /// made of it (the run stays `ok`, with warnings).
    pub warnings: Vec<String>,
}

pub fn transform_order(
    v: &RawOrder,
    loaded_at: u32,
    salt: Option<&Secret>,
) -> anyhow::Result<Transformed> {
    let order_id = id_in(&v.id, "id", "order")?;
    let what = format!("order {order_id}");
    let event_id = id_in(&v.event_id, "event_id", &what)?;
    let payed = flag(&v.payed);
    let payed_at = timestamp(&v.payed_at, "payed_at", &what)?;
    let created_at = timestamp(&v.created_at, "created_at", &what)?
        .ok_or_else(|| anyhow::anyhow!("{what}: `created_at` is missing"))?;
    let updated_at = timestamp(&v.updated_at, "updated_at", &what)?.unwrap_or(created_at);
    let deleted_at = timestamp(&v.deleted_at, "deleted_at", &what)?;
    let [utm_source, utm_medium, utm_campaign, utm_content, utm_term] = utm(&v.utm);
    let updated = ch_datetime(&updated_at);
    let ver = version(updated, loaded_at);
    let client_hash = match salt {
        Some(salt) if !salt.is_empty() => {
            let email = v
                .client_email
                .as_str()
                .unwrap_or_default()
                .trim()
                .to_lowercase();
            if email.is_empty() {
                String::new()
            } else {
                let digest = Sha256::digest(format!("{}{email}", salt.expose()).as_bytes());
                digest.iter().map(|b| format!("{b:02x}")).collect()
            }
        }
        _ => String::new(),
    };
    let paid = payed && payed_at.is_some();
    let cancelled = deleted_at.is_some();
    let mut warnings = Vec::new();
    let baskets = match &v.baskets {
        Baskets::List(list) => list.as_slice(),
        Baskets::Not(shape) => {
            warnings.push(format!(
                "{what}: `baskets` is {shape}, not a list: no tickets counted for it"
            ));
            &[]
        }
    };
    let mut tickets = Vec::with_capacity(baskets.len());
    // What a basket that is not an object holds: nothing, so not even an id.
    let not_a_basket = RawBasket::default();
    for b in baskets {
        let b = b.0.as_ref().unwrap_or(&not_a_basket);
        let basket_id = id_in(&b.id, "id", &what)?;
        let bwhat = format!("{what} basket {basket_id}");
        let refunded_at = timestamp(&b.refunded_at, "refunded_at", &bwhat)?;
        let basket_deleted = timestamp(&b.deleted_at, "deleted_at", &bwhat)?;
        // One ticket per basket in every documented example; anything else is said aloud.
        let quantity = match zakaz_core::loose::uint(&b.quantity) {
            Ok(Some(q)) if q <= u64::from(MAX_QUANTITY) => q as u32,
            Ok(Some(q)) => {
                warnings.push(format!(
                    "{bwhat}: `quantity` {q} is implausible: taken as 1"
                ));
                1
            }
            Ok(None) => {
                warnings.push(format!("{bwhat}: no `quantity`: taken as 1"));
                1
            }
            Err(e) => {
                warnings.push(format!("{bwhat}: `quantity` {e}: taken as 1"));
                1
            }
        };
        tickets.push(TicketRow {
            basket_id,
            order_id,
            event_id,
            show_id: id_in(&b.show_id, "show_id", &bwhat)?,
            seat_id: text_of(&b.seat_id),
            seat_name: text_of(&b.seat_name),
            price: ticket_price(&b.price, &bwhat)?,
            original_price: kopecks(&b.original_price, &bwhat)?,
            discount_value: kopecks(&b.discount_value, &bwhat)?,
            quantity,
            refunded_amount: if refunded_at.is_some() {
                kopecks(&b.refunded_amount, &bwhat)?
            } else {
                0
            },
            is_paid: u8::from(paid),
            is_cancelled: u8::from(cancelled || basket_deleted.is_some()),
            is_refunded: u8::from(refunded_at.is_some()),
            payed_at: ch(payed_at),
            created_at: ch_datetime(&created_at),
            deleted_at: ch(basket_deleted.or(deleted_at)),
            refunded_at: ch(refunded_at),
            utm_source: utm_source.clone(),
            utm_medium: utm_medium.clone(),
            utm_campaign: utm_campaign.clone(),
            utm_content: utm_content.clone(),
            utm_term: utm_term.clone(),
            loaded_at,
            _version: ver,
        });
    }
    let currency = match text_of(&v.currency_id) {
        c if c.is_empty() => "RUB".to_owned(),
        c => c,
    };
    if payed && !currency.eq_ignore_ascii_case("RUB") {
        // The facts keep no currency: said, never summed silently.
        let shown: String = currency.chars().take(16).collect();
        warnings.push(format!(
            "{what}: paid in `{shown}`, which the facts sum with roubles (they keep no currency)"
        ));
    }
    let order = OrderRow {
        order_id,
        event_id,
        payed: u8::from(payed),
        payed_at: ch(payed_at),
        created_at: ch_datetime(&created_at),
        updated_at: updated,
        deleted_at: ch(deleted_at),
        price: kopecks(&v.price, &what)?,
        original_price: kopecks(&v.original_price, &what)?,
        currency,
        tickets: tickets
            .iter()
            .fold(0u32, |n, t| n.saturating_add(t.quantity)),
        utm_source,
        utm_medium,
        utm_campaign,
        utm_content,
        utm_term,
        client_hash,
        loaded_at,
        _version: ver,
    };
    Ok(Transformed {
        order,
        tickets,
        sales_date: payed_at.filter(|_| payed).map(|t| moscow_date(&t)),
        warnings,
    })
}

/// More tickets than this in one basket is a shape error, not a sale.
const MAX_QUANTITY: u32 = 10_000;

/// A ticket dearer than a billion roubles is a shape error, not a price (it would also make
/// totals overflow).
pub const MAX_PRICE_KOPECKS: i64 = 100_000_000_000;

fn ticket_price(v: &Value, what: &str) -> anyhow::Result<i64> {
    let price = kopecks(v, what)?;
    anyhow::ensure!(
        price.abs() <= MAX_PRICE_KOPECKS,
        "{what}: `price` {} is not a ticket price",
        zakaz_core::money::format_kopecks(price)
    );
    Ok(price)
}

/// What a JSON value is, for a warning (never the whole of it).
fn shape(v: &Value) -> &'static str {
    match v {
        Value::Null => "missing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Seats of one show as the API sends them: flat (`{"<seat id>": Seat}` or a list) or
/// nested by zone (`{"<zone>": {"seats": {...}}}`, as the original client saw). Returns
/// (capacity, sold, free) from the seats' quantities and a warning for every shape other
/// than flat.
pub fn count_seats(show_id: u64, seats: &Value) -> (u64, u64, u64, Vec<String>) {
    let mut totals = (0u64, 0u64, 0u64);
    let mut warnings = Vec::new();
    let mut nested = false;
    let mut odd = 0usize;
    fn entries(v: &Value) -> Vec<&Value> {
        match v {
            Value::Object(m) => m.values().collect(),
            Value::Array(a) => a.iter().collect(),
            _ => Vec::new(),
        }
    }
    // Bounded: a zone holds seats, never zones.
    for entry in entries(seats) {
        if entry.get("max_quantity").is_some() {
            add_seat(entry, &mut totals, &mut odd);
        } else if let Some(inner) = entry.get("seats") {
            nested = true;
            for seat in entries(inner) {
                add_seat(seat, &mut totals, &mut odd);
            }
        } else {
            odd += 1;
        }
    }
    if nested {
        warnings.push(format!(
            "show {show_id}: seats came nested by zone, not flat: read through the zones"
        ));
    }
    if odd > 0 {
        warnings.push(format!(
            "show {show_id}: {odd} seat entr(y/ies) without a count in `max_quantity`, `payed_quantity` or `free_quantity` (missing, not a number, or too large to add up): counted as 0"
        ));
    }
    if !seats.is_object() && !seats.is_array() {
        warnings.push(format!(
            "show {show_id}: seats are {}, not seats: counted as none",
            shape(seats)
        ));
    }
    (totals.0, totals.1, totals.2, warnings)
}

/// Adds one seat's quantities to the totals. A seat whose quantities are not numbers, or
/// would carry a total past `u64` (no hall has such a count: a hostile or broken answer),
/// is counted as odd and adds nothing, so the totals never wrap.
fn add_seat(seat: &Value, totals: &mut (u64, u64, u64), odd: &mut usize) {
    let n = |k: &str| zakaz_core::loose::uint(field(seat, k));
    let sum = match (n("max_quantity"), n("payed_quantity"), n("free_quantity")) {
        (Ok(Some(max)), Ok(sold), Ok(free)) => totals.0.checked_add(max).and_then(|capacity| {
            Some((
                capacity,
                totals.1.checked_add(sold.unwrap_or(0))?,
                totals.2.checked_add(free.unwrap_or(0))?,
            ))
        }),
        _ => None,
    };
    match sum {
        Some(sum) => *totals = sum,
        None => *odd += 1,
    }
}

/// An event name: a string, or an object keyed by locale (Russian first).
pub fn event_name(v: &Value) -> String {
    match field(v, "name") {
        Value::String(s) => s.clone(),
        Value::Object(m) => m
            .get("ru")
            .or_else(|| m.values().next())
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        _ => String::new(),
    }
}

/// An event's row, its shows worth an inventory snapshot, and warnings about its shape.
pub fn transform_event(
    v: &Value,
    loaded_at: u32,
    now: i64,
) -> anyhow::Result<(EventRow, Vec<ShowRef>, Vec<String>)> {
    let event_id = id(v, "id", "event")?;
    let what = format!("event {event_id}");
    let city = field(v, "city");
    let city_name = match city {
        Value::Object(_) => text(city, "name"),
        Value::String(s) => s.clone(),
        _ => String::new(),
    };
    let deleted = timestamp(field(v, "deleted_at"), "deleted_at", &what)?.is_some();
    let active = flag(field(v, "is_active")) && !deleted;
    let mut starts = Vec::new();
    let mut shows = Vec::new();
    let mut warnings = Vec::new();
    let list = match field(v, "shows") {
        Value::Array(list) => list.as_slice(),
        other => {
            warnings.push(format!(
                "{what}: `shows` is {}, not a list: its dates and inventory are unknown",
                shape(other)
            ));
            &[]
        }
    };
    for s in list {
        let show_id = id(s, "id", &what)?;
        let start = ch(timestamp(field(s, "start_date"), "start_date", &what)?);
        starts.extend(start);
        let show_deleted = timestamp(field(s, "deleted_at"), "deleted_at", &what)?.is_some();
        let upcoming = start.is_none_or(|t| i64::from(t) >= now);
        if active && flag(field(s, "is_active")) && !show_deleted && upcoming {
            shows.push(ShowRef {
                show_id,
                event_id,
                city: city_name.clone(),
                start,
            });
        }
    }
    Ok((
        EventRow {
            event_id,
            name: event_name(v),
            city: city_name,
            city_timezone: if city.is_object() {
                text(city, "timezone")
            } else {
                String::new()
            },
            place_name: text(v, "place_name"),
            place_address: text(v, "place_address"),
            currency: text(v, "currency_id"),
            is_active: u8::from(active),
            is_deleted: u8::from(deleted),
            first_show_at: starts.iter().min().copied(),
            last_show_at: starts.iter().max().copied(),
            shows: list.len() as u32,
            loaded_at,
            _version: u64::from(loaded_at),
        },
        shows,
        warnings,
    ))
}

/// Every show of an event with its start (Unix seconds; `None` when not given): what the
/// refund sweep chooses from. Shapes were checked by [`transform_event`].
pub fn show_starts(event: &Value) -> Vec<(u64, Option<i64>)> {
    field(event, "shows")
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|s| {
            let id = zakaz_core::loose::uint(field(s, "id")).ok().flatten()?;
            let start = field(s, "start_date")
                .as_str()
                .and_then(|t| parse_offset_timestamp(t).ok())
                .map(|t| t.timestamp());
            Some((id, start))
        })
        .collect()
}

#[cfg(test)]
mod tests {

    use super::*;
    use serde_json::json;

    /// An order as JSON, read as the loader reads a page's orders, then transformed.
    fn transform_order(
        v: &Value,
        loaded_at: u32,
        salt: Option<&Secret>,
    ) -> anyhow::Result<Transformed> {
        let order: zakaz_core::loose::Object<RawOrder> = serde_json::from_value(v.clone())?;
        super::transform_order(&order.0, loaded_at, salt)
    }

    #[test]
    fn versions_order_by_load_then_update_and_never_wrap() {
        let (u, l) = (1_781_514_000u32, 1_781_514_100u32);
        // The same order loaded 12 and 24 days later (the old 20-bit load part wrapped here).
        let later = l + (1 << 20);
        assert!(version(u, l) < version(u, later));
        assert!(version(u, later) < version(u, later + (1 << 20)));
        // A later load wins even when the vendor's `updated_at` went backwards.
        assert!(version(u - 3600, l + 1) > version(u, l));
        // Within one load, the newer update.
        assert!(version(u + 1, l) > version(u, l));
        // Above the rows of the earlier schemes (update time first, loaded after it).
        assert!(version(u, l) > (u64::from(u) << 32) | u64::from(l - 60));
        assert!(version(u, l) > (u64::from(u32::MAX) << 20) | 0xF_FFFF);
    }

    #[test]
    fn a_timestamp_without_an_offset_is_an_error_naming_the_field() {
        let mut o = order();
        o["updated_at"] = json!("2025-05-02 10:00:00");
        let err = transform_order(&o, 1, None).err().expect("refused");
        assert_eq!(
            err.to_string(),
            "order 7: `updated_at`: timestamp `2025-05-02 10:00:00` has no UTC offset"
        );
        o["updated_at"] = json!("2025-05-02T07:00:00Z");
        assert!(transform_order(&o, 1, None).is_ok());
        // An instant ClickHouse cannot hold is refused, never stored as 1970 or 2106.
        o["payed_at"] = json!("1969-12-31T23:00:00+00:00");
        let err = transform_order(&o, 1, None).err().expect("refused");
        assert_eq!(
            err.to_string(),
            "order 7: `payed_at`: 1969-12-31T23:00:00+00:00 is outside 1970 to 2106, the instants ClickHouse holds"
        );
        o["payed_at"] = json!("2200-01-01T00:00:00+03:00");
        assert!(transform_order(&o, 1, None).is_err());
        o["payed_at"] = json!("1970-01-01T03:00:00+03:00");
        assert!(transform_order(&o, 1, None).is_ok());
    }

    fn order() -> Value {
        json!({
            "id": 7, "event_id": 1001, "payed": 1, "payed_at": "2025-05-01T23:30:00+03:00",
            "created_at": "2025-05-01T23:20:00+03:00", "updated_at": "2025-05-02T10:00:00+03:00",
            "deleted_at": null, "price": 2450.5, "original_price": 2600, "currency_id": "RUB", "utm": [],
            "client": {"email": "Someone@Example.com", "details": {"phone": "+7999"}},
            "baskets": [
                {"id": 1, "show_id": 5, "seat_id": "1-2;3", "price": 1000, "original_price": 1000, "discount_value": 0, "quantity": 1, "refunded_at": null, "refunded_amount": null},
                {"id": 2, "show_id": 5, "seat_id": "1-2;4", "price": 1450.5, "original_price": 1600, "discount_value": 149.5, "quantity": 1, "refunded_at": "2025-05-02T10:00:00+03:00", "refunded_amount": "725,25"}
            ]
        })
    }

    #[test]
    fn orders_become_rows_without_personal_data() {
        let t = transform_order(&order(), 100, None).unwrap();
        assert_eq!(t.order.price, 245_050);
        assert_eq!(t.order.tickets, 2);
        assert_eq!(t.order.client_hash, "");
        assert_eq!(t.sales_date, Some("2025-05-01".parse().unwrap()));
        assert_eq!(t.tickets[1].refunded_amount, 72_525);
        assert_eq!(t.tickets[1].is_refunded, 1);
        assert_eq!(t.tickets[0].is_paid, 1);
        let dump = format!("{:?}", t.order) + &format!("{:?}", t.tickets);
        assert!(!dump.to_lowercase().contains("someone@example.com"));
        assert!(!dump.contains("+7999"));
    }

    #[test]
    fn what_the_transform_does_not_read_changes_nothing_and_is_never_built() {
        let salt = Secret::new("pepper-salt");
        let mut noisy = order();
        noisy["client"]["phone"] = json!("+7 900");
        noisy["client"]["name"] = json!({"first": "Иван", "list": [1, {"email": "other@x"}]});
        noisy["custom"] = json!({"deep": [1, 2, {"id": 99, "baskets": []}]});
        noisy["card_mask"] = json!("4111");
        noisy["baskets"][0]["barcode"] = json!("123");
        noisy["baskets"][0]["refunds"] = json!([{"id": 1, "price": 5}]);
        let (plain, noisy) = (
            transform_order(&order(), 100, Some(&salt)).unwrap(),
            transform_order(&noisy, 100, Some(&salt)).unwrap(),
        );
        assert_eq!(
            (&plain.order, &plain.tickets),
            (&noisy.order, &noisy.tickets)
        );
        assert_ne!(
            plain.order.client_hash, "",
            "the e-mail is read from the client"
        );
    }

    #[test]
    fn a_client_that_is_not_an_object_has_no_email() {
        let salt = Secret::new("pepper-salt");
        for client in [
            json!("a@b.c"),
            json!([]),
            json!(["a@b.c"]),
            json!(null),
            json!(5),
            json!({}),
        ] {
            let mut o = order();
            o["client"] = client.clone();
            let t = transform_order(&o, 100, Some(&salt)).unwrap();
            assert_eq!(t.order.client_hash, "", "{client}");
        }
    }

    #[test]
    fn baskets_that_are_not_a_list_are_named_by_their_shape() {
        for (baskets, shape) in [
            (Some(json!({"id": 1})), "an object"),
            (Some(json!("x")), "a string"),
            (Some(json!(3)), "a number"),
            (Some(json!(true)), "a boolean"),
            (Some(json!(null)), "missing"),
            (None, "missing"),
        ] {
            let mut o = order();
            match baskets {
                Some(b) => o["baskets"] = b,
                None => {
                    o.as_object_mut().unwrap().remove("baskets");
                }
            }
            let t = transform_order(&o, 100, None).unwrap();
            assert!(t.tickets.is_empty());
            assert_eq!(
                t.warnings,
                vec![format!(
                    "order 7: `baskets` is {shape}, not a list: no tickets counted for it"
                )]
            );
        }
    }

    #[test]
    fn a_basket_that_is_not_an_object_fails_its_order_for_want_of_an_id() {
        for odd in [json!("odd"), json!(5), json!([1, 2]), json!(null)] {
            let mut o = order();
            o["baskets"][1] = odd.clone();
            let e = transform_order(&o, 100, None).err().unwrap().to_string();
            assert_eq!(e, "order 7: `id` is missing or not an id (null)", "{odd}");
        }
    }

    #[test]
    fn client_hash_only_with_a_salt() {
        let salt = Secret::new("pepper-salt");
        let t = transform_order(&order(), 100, Some(&salt)).unwrap();
        assert_eq!(t.order.client_hash.len(), 64);
        let again = transform_order(&json!({"client": {"email": " someone@example.com "}, "id": 7, "event_id": 1, "created_at": "2025-05-01T00:00:00+03:00"}), 1, Some(&salt)).unwrap();
        assert_eq!(
            again.order.client_hash, t.order.client_hash,
            "normalised e-mail"
        );
        // The value is SHA-256 of salt + normalised e-mail, as `sha256sum` computes it
        // (`printf '%s' 'pepper-saltsomeone@example.com' | sha256sum`), and the salt matters.
        assert_eq!(
            t.order.client_hash,
            "fbd31d393b04bed2561b519608911233b3684ab09f5ddae2ea2dfadc015b088a"
        );
        let other = transform_order(&order(), 100, Some(&Secret::new("other-salt"))).unwrap();
        assert_eq!(
            other.order.client_hash,
            "7159c90cbb936d29211053ad2cfd3b42febfe0a2cc52c41ba2f9bd94afa920ef"
        );
    }

    #[test]
    fn utm_object_and_flags_are_tolerated() {
        let mut o = order();
        o["utm"] = json!({"utm_source": "vk", "utm_campaign": "spring"});
        o["payed"] = json!(true);
        let t = transform_order(&o, 1, None).unwrap();
        assert_eq!(
            (
                t.order.utm_source.as_str(),
                t.order.utm_campaign.as_str(),
                t.order.utm_medium.as_str()
            ),
            ("vk", "spring", "")
        );
        assert_eq!(t.tickets[0].utm_source, "vk");
        o["payed"] = json!(false);
        assert_eq!(
            transform_order(&o, 1, None).unwrap().sales_date,
            None,
            "unpaid: no sales date"
        );
    }

    #[test]
    fn bad_money_and_timestamps_name_the_order() {
        let mut o = order();
        o["baskets"][0]["price"] = json!("lots");
        let err = transform_order(&o, 1, None).err().unwrap().to_string();
        assert_eq!(err, "order 7 basket 1: money `lots` is not a number");
        let mut o = order();
        o["payed_at"] = json!("yesterday");
        assert!(
            transform_order(&o, 1, None)
                .err()
                .unwrap()
                .to_string()
                .starts_with("order 7: `payed_at`")
        );
    }

    #[test]
    fn newer_updates_win_then_later_loads() {
        assert!(
            version(100, 999_999) > version(200, 1),
            "the later load wins"
        );
        assert!(version(200, 2) > version(100, 2));
    }

    #[test]
    fn event_names_and_shows() {
        let e = json!({"id": 1001, "name": {"ru": "Щелкунчик", "en": "Nutcracker"}, "is_active": 1,
            "city": {"id": 3, "name": "Новосибирск", "timezone": "Asia/Novosibirsk"}, "deleted_at": null,
            "shows": [{"id": 5, "is_active": 1, "start_date": "2030-01-01T19:00:00+07:00", "deleted_at": null},
                      {"id": 6, "is_active": 1, "start_date": "2020-01-01T19:00:00+07:00", "deleted_at": null}]});
        let (row, shows, warnings) = transform_event(&e, 1, 1_700_000_000).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(row.name, "Щелкунчик");
        assert_eq!(row.city_timezone, "Asia/Novosibirsk");
        assert_eq!(row.shows, 2);
        assert_eq!(
            shows.iter().map(|s| s.show_id).collect::<Vec<_>>(),
            vec![5],
            "past shows need no inventory"
        );
    }
    #[test]
    fn flags_read_booleans_numbers_and_their_strings() {
        for yes in [json!(true), json!(1), json!(2.5), json!("1"), json!("true")] {
            assert!(flag(&yes), "{yes}");
        }
        for no in [
            json!(false),
            json!(0),
            json!("0"),
            json!("false"),
            json!(""),
            json!(null),
            json!([1]),
        ] {
            assert!(!flag(&no), "{no}");
        }
    }

    #[test]
    fn an_empty_timestamp_is_no_timestamp() {
        let mut o = order();
        o["deleted_at"] = json!("");
        o["baskets"][1]["refunded_at"] = json!("");
        let t = transform_order(&o, 1, None).unwrap();
        assert_eq!(
            (
                t.order.deleted_at,
                t.tickets[1].is_refunded,
                t.tickets[1].refunded_amount
            ),
            (None, 0, 0)
        );
        assert_eq!(t.tickets[0].is_cancelled, 0);
        o["payed_at"] = json!("");
        let t = transform_order(&o, 1, None).unwrap();
        assert_eq!(
            (t.order.payed_at, t.sales_date, t.tickets[0].is_paid),
            (None, None, 0)
        );
    }

    #[test]
    fn an_empty_salt_hashes_nothing() {
        let t = transform_order(&order(), 1, Some(&Secret::new(""))).unwrap();
        assert_eq!(t.order.client_hash, "");
    }

    #[test]
    fn paid_needs_both_the_flag_and_the_payment_time() {
        let paid = |payed: Value, payed_at: Value| {
            let mut o = order();
            o["payed"] = payed;
            o["payed_at"] = payed_at;
            let t = transform_order(&o, 1, None).unwrap();
            (t.tickets[0].is_paid, t.sales_date.is_some())
        };
        assert_eq!(
            paid(json!(1), json!("2025-05-01T23:30:00+03:00")),
            (1, true)
        );
        assert_eq!(paid(json!(1), json!(null)), (0, false));
        assert_eq!(
            paid(json!(0), json!("2025-05-01T23:30:00+03:00")),
            (0, false)
        );
        assert_eq!(paid(json!(0), json!(null)), (0, false));
    }

    #[test]
    fn a_quantity_up_to_the_bound_is_taken_and_beyond_it_is_one_with_a_warning() {
        let quantity = |q: Value| {
            let mut o = order();
            o["baskets"][0]["quantity"] = q;
            let t = transform_order(&o, 1, None).unwrap();
            (t.tickets[0].quantity, t.order.tickets, t.warnings.len())
        };
        assert_eq!(quantity(json!(3)), (3, 4, 0));
        assert_eq!(
            quantity(json!(MAX_QUANTITY)),
            (MAX_QUANTITY, MAX_QUANTITY + 1, 0)
        );
        assert_eq!(quantity(json!(MAX_QUANTITY + 1)), (1, 2, 1));
        assert_eq!(quantity(json!(null)), (1, 2, 1));
        assert_eq!(quantity(json!("many")), (1, 2, 1));
    }

    #[test]
    fn an_order_without_a_currency_is_in_roubles_and_any_other_is_kept() {
        let currency = |c: Value| {
            let mut o = order();
            o["currency_id"] = c;
            transform_order(&o, 1, None).unwrap().order.currency
        };
        assert_eq!(currency(json!("")), "RUB");
        assert_eq!(currency(json!(null)), "RUB");
        assert_eq!(currency(json!("USD")), "USD");
        // A paid order in another currency is said, never summed with roubles silently.
        let mut o = order();
        o["currency_id"] = json!("KZT");
        let warnings = transform_order(&o, 1, None).unwrap().warnings;
        assert!(
            warnings.contains(
                &"order 7: paid in `KZT`, which the facts sum with roubles (they keep no currency)"
                    .to_owned()
            ),
            "{warnings:?}"
        );
        o["currency_id"] = json!("rub");
        assert!(
            !transform_order(&o, 1, None)
                .unwrap()
                .warnings
                .iter()
                .any(|w| w.contains("paid in")),
        );
    }

    #[test]
    fn seats_are_counted_flat_as_a_list_or_nested_by_zone() {
        let seat = |max: u64, sold: u64, free: u64| json!({"max_quantity": max, "payed_quantity": sold, "free_quantity": free});
        let flat = json!({"a": seat(2, 1, 1), "b": seat(5, 3, 2)});
        assert_eq!(count_seats(9, &flat), (7, 4, 3, vec![]));
        let list = json!([seat(2, 1, 1), seat(5, 3, 2), {"max_quantity": "4"}]);
        assert_eq!(count_seats(9, &list), (11, 4, 3, vec![]));
        let nested = json!({"zone 1": {"seats": {"a": seat(2, 2, 0)}}, "zone 2": {"seats": [seat(3, 1, 2), seat(1, 0, 1)]}});
        let (max, sold, free, warnings) = count_seats(9, &nested);
        assert_eq!((max, sold, free), (6, 3, 3));
        assert_eq!(
            warnings,
            ["show 9: seats came nested by zone, not flat: read through the zones"]
        );
        let odd = json!({"a": seat(2, 1, 1), "b": {"name": "x"}, "c": {"max_quantity": "many"}});
        let (max, sold, free, warnings) = count_seats(9, &odd);
        assert_eq!((max, sold, free), (2, 1, 1));
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0].starts_with("show 9: 2 seat entr"),
            "{warnings:?}"
        );
        let huge = json!([
            seat(2, 1, 1),
            seat(u64::MAX, 0, 0),
            seat(1, u64::MAX, 0),
            seat(1, 0, 1)
        ]);
        let (max, sold, free, warnings) = count_seats(9, &huge);
        assert_eq!(
            (max, sold, free),
            (3, 1, 2),
            "a seat that would wrap is left out whole"
        );
        assert!(
            warnings[0].starts_with("show 9: 2 seat entr"),
            "{warnings:?}"
        );
        let (max, sold, free, warnings) = count_seats(9, &json!("sold out"));
        assert_eq!((max, sold, free), (0, 0, 0));
        assert_eq!(
            warnings,
            ["show 9: seats are a string, not seats: counted as none"]
        );
    }

    #[test]
    fn event_names_and_cities_may_be_plain_strings_and_only_a_flagged_live_event_is_active() {
        let event = |name: Value, city: Value, active: Value, deleted: Value| {
            let e = json!({"id": 1, "name": name, "city": city, "is_active": active, "deleted_at": deleted,
                "shows": [{"id": 5, "is_active": 1, "start_date": "2030-01-01T19:00:00+07:00"}]});
            let (row, shows, _) = transform_event(&e, 1, 1_700_000_000).unwrap();
            (
                row.name,
                row.city,
                row.is_active,
                row.is_deleted,
                shows.len(),
            )
        };
        let alive = || json!(null);
        assert_eq!(
            event(json!("Гамлет"), json!("Омск"), json!(1), alive()),
            ("Гамлет".into(), "Омск".into(), 1, 0, 1)
        );
        assert_eq!(
            event(
                json!({"en": "Hamlet"}),
                json!({"name": "Омск"}),
                json!(0),
                alive()
            ),
            ("Hamlet".into(), "Омск".into(), 0, 0, 0)
        );
        assert_eq!(
            event(
                json!(7),
                json!(7),
                json!(1),
                json!("2025-01-01T00:00:00+03:00")
            ),
            (String::new(), String::new(), 0, 1, 0)
        );
    }
}

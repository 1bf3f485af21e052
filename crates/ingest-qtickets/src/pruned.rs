//! Order pages read into JSON values that keep only what the transform looks at: an order's
//! personal data, custom fields, integrations and the like are skipped as they are read,
//! never built into a tree. What is kept is kept whole and as sent (any type), so the
//! transform's tolerance and its errors are those of the full answer.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// The keys of an order that [`crate::model::transform_order`] and the paging read.
const ORDER_KEYS: &[&str] = &[
    "id",
    "event_id",
    "payed",
    "payed_at",
    "created_at",
    "updated_at",
    "deleted_at",
    "utm",
    "client",
    "price",
    "original_price",
    "currency_id",
    "baskets",
];

/// The keys of a basket the transform reads.
const BASKET_KEYS: &[&str] = &[
    "id",
    "show_id",
    "seat_id",
    "seat_name",
    "price",
    "original_price",
    "discount_value",
    "quantity",
    "refunded_at",
    "refunded_amount",
    "deleted_at",
];

/// Of the client, only the e-mail (hashed with a salt, when one is configured).
const CLIENT_KEYS: &[&str] = &["email"];

/// What to keep of a value.
#[derive(Clone, Copy)]
enum Shape {
    Whole,
    /// An object's keys of its kind (a value of another type is kept whole).
    Object(Kind),
    /// A list of baskets (a value of another type is kept whole).
    Baskets,
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Order,
    Basket,
    Client,
}

impl Kind {
    /// What to keep of `key` in an object of this kind, and the key itself as a static
    /// string; `None`: skip it.
    fn key(self, key: &str) -> Option<(&'static str, Shape)> {
        let keys = match self {
            Kind::Order => ORDER_KEYS,
            Kind::Basket => BASKET_KEYS,
            Kind::Client => CLIENT_KEYS,
        };
        let name = *keys.iter().find(|k| **k == key)?;
        Some(match (self, name) {
            (Kind::Order, "client") => (name, Shape::Object(Kind::Client)),
            (Kind::Order, "baskets") => (name, Shape::Baskets),
            _ => (name, Shape::Whole),
        })
    }
}

/// Reads an object's key without allocating: what to keep of its value, or `None`.
struct KeyOf(Kind);

impl<'de> DeserializeSeed<'de> for KeyOf {
    type Value = Option<(&'static str, Shape)>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for KeyOf {
    type Value = Option<(&'static str, Shape)>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_str<E: de::Error>(self, key: &str) -> Result<Self::Value, E> {
        Ok(self.0.key(key))
    }
}

/// An order page's `data` list and `paging`: orders pruned, the rest as sent.
#[derive(Debug, Default)]
pub struct OrdersPage {
    /// `None` when the answer has no `data` list.
    pub data: Option<Vec<Value>>,
    pub paging: Value,
}

impl<'de> serde::Deserialize<'de> for OrdersPage {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct PageVisitor;
        impl<'de> Visitor<'de> for PageVisitor {
            type Value = OrdersPage;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object with `data`")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<OrdersPage, A::Error> {
                let mut page = OrdersPage::default();
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "data" => {
                            let orders = Keep(ListOf(Shape::Object(Kind::Order)));
                            page.data = match map.next_value_seed(orders)? {
                                Value::Array(list) => Some(list),
                                _ => None,
                            }
                        }
                        "paging" => page.paging = map.next_value()?,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(page)
            }
        }
        d.deserialize_map(PageVisitor)
    }
}

/// A list whose items have a shape; anything else is kept whole.
#[derive(Clone, Copy)]
struct ListOf(Shape);

struct Keep<S>(S);

impl<'de> DeserializeSeed<'de> for Keep<ListOf> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(Pruner {
            items: Some(self.0.0),
            kind: None,
        })
    }
}

impl<'de> DeserializeSeed<'de> for Keep<Shape> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        match self.0 {
            Shape::Whole => serde::Deserialize::deserialize(d),
            Shape::Object(kind) => d.deserialize_any(Pruner {
                items: None,
                kind: Some(kind),
            }),
            Shape::Baskets => d.deserialize_any(Pruner {
                items: Some(Shape::Object(Kind::Basket)),
                kind: None,
            }),
        }
    }
}

/// Builds a value: a list's items in their shape, an object's listed keys only; any other
/// value whole.
struct Pruner {
    items: Option<Shape>,
    kind: Option<Kind>,
}

impl<'de> Visitor<'de> for Pruner {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        serde::Deserialize::deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut list = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        match self.items {
            Some(shape) => {
                while let Some(item) = seq.next_element_seed(Keep(shape))? {
                    list.push(item);
                }
            }
            None => {
                while let Some(item) = seq.next_element::<Value>()? {
                    list.push(item);
                }
            }
        }
        Ok(Value::Array(list))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        let Some(kind) = self.kind else {
            while let Some(key) = map.next_key::<String>()? {
                object.insert(key, map.next_value()?);
            }
            return Ok(Value::Object(object));
        };
        while let Some(key) = map.next_key_seed(KeyOf(kind))? {
            match key {
                Some((name, shape)) => {
                    object.insert(name.to_owned(), map.next_value_seed(Keep(shape))?);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pruned(page: &Value) -> OrdersPage {
        serde_json::from_str(&page.to_string()).unwrap()
    }

    #[test]
    fn an_order_keeps_what_the_transform_reads_as_sent_and_drops_the_rest() {
        let order = json!({
            "id": "7", "event_id": 3, "payed": "1", "payed_at": "2025-05-01T12:00:00+03:00",
            "created_at": null, "utm": [], "price": 12.5, "currency_id": "RUB",
            "client": {"email": "A@b.c", "phone": "+7 900", "name": "Иван"},
            "baskets": [{"id": 1, "show_id": 2, "price": "5,5", "quantity": null,
                         "client_name": "Иван", "barcode": "123", "refunds": [{"x": 1}]},
                        "odd"],
            "card_mask": "4111", "custom": {"deep": [1, 2, {"a": 1}]}, "ip": "1.2.3.4",
        });
        let page = pruned(&json!({"data": [order, 5], "paging": {"perPage": 50}, "x": [1]}));
        assert_eq!(page.paging, json!({"perPage": 50}));
        assert_eq!(
            page.data.unwrap(),
            vec![
                json!({
                    "id": "7", "event_id": 3, "payed": "1",
                    "payed_at": "2025-05-01T12:00:00+03:00", "created_at": null, "utm": [],
                    "price": 12.5, "currency_id": "RUB", "client": {"email": "A@b.c"},
                    "baskets": [{"id": 1, "show_id": 2, "price": "5,5", "quantity": null},
                                "odd"],
                }),
                json!(5),
            ]
        );
    }

    #[test]
    fn baskets_and_clients_of_other_shapes_are_kept_whole() {
        let page = pruned(&json!({"data": [
            {"id": 1, "baskets": {"a": {"id": 1, "barcode": "x"}}, "client": "someone"},
            {"id": 2, "baskets": null},
        ]}));
        assert_eq!(
            page.data.unwrap(),
            vec![
                json!({"id": 1, "baskets": {"a": {"id": 1, "barcode": "x"}}, "client": "someone"}),
                json!({"id": 2, "baskets": null}),
            ]
        );
    }

    #[test]
    fn a_page_without_a_data_list_says_so() {
        assert!(pruned(&json!({"paging": {}})).data.is_none());
        assert!(pruned(&json!({"data": {"id": 1}})).data.is_none());
        assert!(serde_json::from_str::<OrdersPage>("[1]").is_err());
    }
}

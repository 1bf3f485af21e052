//! JSON read into a [`Value`] that holds only what a loader looks at: the keys a [`Shape`]
//! names, the rest skipped as it is read, never built into a tree (an order's personal data,
//! a statistics row's dozen derived metrics). What is kept is kept whole and as sent, of any
//! type, so a loader's tolerance and its errors are those of the full answer; a value of
//! another type than its shape expects (a list where an object was expected) is kept whole.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// What of a JSON value to build.
#[derive(Debug)]
pub enum Shape {
    /// All of it.
    Whole,
    /// An object's listed keys, each in its shape; the other keys are skipped, or kept whole
    /// with `others`.
    Object {
        keys: &'static [(&'static str, Shape)],
        others: bool,
    },
    /// A list, each item in this shape.
    Items(&'static Shape),
}

/// `text` parsed, keeping what `shape` names.
pub fn from_str(text: &str, shape: &'static Shape) -> serde_json::Result<Value> {
    let mut de = serde_json::Deserializer::from_str(text);
    let value = shape.deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

impl<'de> DeserializeSeed<'de> for &'static Shape {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        match self {
            Shape::Whole => serde::Deserialize::deserialize(d),
            _ => d.deserialize_any(Builder(self)),
        }
    }
}

/// Reads an object's key without allocating: the listed key and its shape, `Some(None)` for
/// a key to keep whole, `None` for one to skip.
struct KeyOf {
    keys: &'static [(&'static str, Shape)],
    others: bool,
}

enum Key {
    Listed(&'static str, &'static Shape),
    Other(String),
    Skip,
}

impl<'de> DeserializeSeed<'de> for KeyOf {
    type Value = Key;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Key, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for KeyOf {
    type Value = Key;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_str<E: de::Error>(self, key: &str) -> Result<Key, E> {
        Ok(match self.keys.iter().find(|(k, _)| *k == key) {
            Some((name, shape)) => Key::Listed(name, shape),
            None if self.others => Key::Other(key.to_owned()),
            None => Key::Skip,
        })
    }
}

/// Builds a value in its shape; a value of another type than the shape's is built whole.
struct Builder(&'static Shape);

impl<'de> Visitor<'de> for Builder {
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
        match self.0 {
            Shape::Items(item) => {
                while let Some(v) = seq.next_element_seed(*item)? {
                    list.push(v);
                }
            }
            _ => {
                while let Some(v) = seq.next_element::<Value>()? {
                    list.push(v);
                }
            }
        }
        Ok(Value::Array(list))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        let Shape::Object { keys, others } = self.0 else {
            while let Some(key) = map.next_key::<String>()? {
                object.insert(key, map.next_value()?);
            }
            return Ok(Value::Object(object));
        };
        let seed = || KeyOf {
            keys,
            others: *others,
        };
        while let Some(key) = map.next_key_seed(seed())? {
            match key {
                Key::Listed(name, shape) => {
                    object.insert(name.to_owned(), map.next_value_seed(shape)?);
                }
                Key::Other(name) => {
                    object.insert(name, map.next_value()?);
                }
                Key::Skip => {
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

    static INNER: Shape = Shape::Object {
        keys: &[("a", Shape::Whole), ("deep", Shape::Items(&ONLY_X))],
        others: false,
    };
    static ONLY_X: Shape = Shape::Object {
        keys: &[("x", Shape::Whole)],
        others: false,
    };
    static TOP: Shape = Shape::Object {
        keys: &[("list", Shape::Items(&INNER))],
        others: true,
    };

    fn read(v: Value) -> Value {
        from_str(&v.to_string(), &TOP).unwrap()
    }

    #[test]
    fn the_named_keys_are_kept_as_sent_and_the_rest_skipped() {
        let got = read(json!({
            "list": [
                {"a": {"any": [1, "2", null]}, "b": 1, "deep": [{"x": 1.5, "y": 2}, 7]},
                {"a": "text", "deep": {"x": 1, "y": 2}},
                [1, {"b": 2}],
                null,
            ],
            "error": {"code": "kept", "with": ["everything"]},
        }));
        assert_eq!(
            got,
            json!({
                "list": [
                    {"a": {"any": [1, "2", null]}, "deep": [{"x": 1.5}, 7]},
                    // Not a list where one was expected: whole.
                    {"a": "text", "deep": {"x": 1, "y": 2}},
                    [1, {"b": 2}],
                    null,
                ],
                "error": {"code": "kept", "with": ["everything"]},
            })
        );
    }

    #[test]
    fn values_of_another_shape_are_kept_whole_and_bad_json_is_an_error() {
        assert_eq!(read(json!([{"b": 1}])), json!([{"b": 1}]));
        assert_eq!(read(json!("x")), json!("x"));
        assert_eq!(read(json!({"list": 5})), json!({"list": 5}));
        assert!(from_str(r#"{"list": [1"#, &TOP).is_err());
        assert!(from_str(r#"{"list": []} trailing"#, &TOP).is_err());
    }

    #[test]
    fn numbers_keep_their_json_value() {
        // Whatever a full parse makes of a number, a pruned one makes too.
        let text =
            r#"{"list": [{"a": 12.50}, {"a": -3}, {"a": 18446744073709551615}, {"a": 1e400}]}"#;
        let full: Value = serde_json::from_str(text).unwrap_or(Value::Null);
        let pruned = from_str(text, &TOP);
        assert_eq!(pruned.ok(), (!full.is_null()).then_some(full));
    }
    /// What pruning means, written out on a whole tree.
    fn pruned_tree(v: Value, shape: &Shape) -> Value {
        match (shape, v) {
            (Shape::Object { keys, others }, Value::Object(m)) => m
                .into_iter()
                .filter_map(|(k, v)| match keys.iter().find(|(name, _)| *name == k) {
                    Some((_, inner)) => Some((k, pruned_tree(v, inner))),
                    None => others.then_some((k, v)),
                })
                .collect(),
            (Shape::Items(item), Value::Array(list)) => {
                list.into_iter().map(|v| pruned_tree(v, item)).collect()
            }
            (_, v) => v,
        }
    }

    /// Any JSON value, its keys mostly the ones the test shapes name.
    fn any_json() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            ".{0,8}".prop_map(Value::String),
        ];
        let key = prop_oneof![
            Just("list".to_owned()),
            Just("a".to_owned()),
            Just("deep".to_owned()),
            Just("x".to_owned()),
            Just("y".to_owned()),
            r#"[a-z\\"é]{0,4}"#,
        ];
        leaf.prop_recursive(5, 64, 6, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::vec((key.clone(), inner), 0..6)
                    .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        #[test]
        fn a_pruned_read_is_the_full_tree_pruned(v in any_json()) {
            let text = v.to_string();
            let full: Value = serde_json::from_str(&text).unwrap();
            proptest::prop_assert_eq!(from_str(&text, &TOP).unwrap(), pruned_tree(full, &TOP));
        }
    }
}

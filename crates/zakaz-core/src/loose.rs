//! JSON values as vendors really send them: integers and booleans sometimes as strings
//! (`"123"`, `"true"`, as VK's docs show them), `0`/`1` for booleans. A value that is
//! present but none of these is an error naming what it was, never a silent default.

use serde_json::Value;

/// A non-negative integer: `123` or `"123"`; `None` when absent or `null`.
pub fn uint(v: &Value) -> Result<Option<u64>, String> {
    match v {
        Value::Null => Ok(None),
        Value::Number(n) => n
            .as_u64()
            .map(Some)
            .ok_or_else(|| format!("`{n}` is not a non-negative integer")),
        Value::String(s) if s.trim().is_empty() => Ok(None),
        Value::String(s) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| format!("`{}` is not a non-negative integer", excerpt(s))),
        other => Err(format!("`{}` is not a non-negative integer", kind(other))),
    }
}

/// A boolean: `true`, `"true"`, `"True"`, `1`, `"1"` (and their opposites); `None` when
/// absent or `null`.
pub fn boolean(v: &Value) -> Result<Option<bool>, String> {
    match v {
        Value::Null => Ok(None),
        Value::Bool(b) => Ok(Some(*b)),
        Value::Number(n) if n.as_u64() == Some(0) => Ok(Some(false)),
        Value::Number(n) if n.as_u64() == Some(1) => Ok(Some(true)),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" => Ok(Some(true)),
            "false" | "0" => Ok(Some(false)),
            "" => Ok(None),
            _ => Err(format!("`{}` is not a boolean", excerpt(s))),
        },
        other => Err(format!("`{}` is not a boolean", kind(other))),
    }
}

/// The start of a vendor's text, for an error message (bounded, whatever was sent).
fn excerpt(s: &str) -> String {
    let mut out: String = s.chars().take(40).collect();
    if s.chars().count() > 40 {
        out.push('…');
    }
    out
}

/// What a value is, without repeating all of it.
fn kind(v: &Value) -> String {
    match v {
        Value::Array(_) => "an array".to_owned(),
        Value::Object(_) => "an object".to_owned(),
        other => excerpt(&other.to_string()),
    }
}

/// For `#[serde(deserialize_with = "...")]`: an object read as `T`; `null` and `[]` (how PHP
/// encodes an empty object) as an object without keys. Anything else is an error.
pub fn object<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de> + Default,
{
    use serde::de::{self, Visitor};
    struct ObjectOrEmpty<T>(std::marker::PhantomData<T>);
    impl<'de, T: serde::Deserialize<'de> + Default> Visitor<'de> for ObjectOrEmpty<T> {
        type Value = T;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an object, null or []")
        }
        fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
            T::deserialize(de::value::MapAccessDeserializer::new(map))
        }
        fn visit_unit<E: de::Error>(self) -> Result<T, E> {
            Ok(T::default())
        }
        fn visit_none<E: de::Error>(self) -> Result<T, E> {
            Ok(T::default())
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<T, A::Error> {
            match seq.next_element::<de::IgnoredAny>()? {
                None => Ok(T::default()),
                Some(_) => Err(de::Error::invalid_type(de::Unexpected::Seq, &self)),
            }
        }
    }
    d.deserialize_any(ObjectOrEmpty(std::marker::PhantomData))
}

/// `T` read from an object only. A struct derived with serde also reads a list, field by
/// field in order (`[7, []]` as `{"id": 7, "rows": []}`): a vendor's answer of another shape
/// must fail, not be read by position.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Object<T>(pub T);

impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for Object<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{self, Visitor};
        struct MapOnly<T>(std::marker::PhantomData<T>);
        impl<'de, T: serde::Deserialize<'de>> Visitor<'de> for MapOnly<T> {
            type Value = T;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_map(MapOnly(std::marker::PhantomData))
            .map(Object)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(serde::Deserialize, Default, Debug, PartialEq)]
    struct Inner {
        #[serde(default)]
        a: Value,
    }

    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct Outer {
        #[serde(default, deserialize_with = "object")]
        inner: Inner,
    }

    #[test]
    fn a_struct_is_read_from_an_object_never_from_a_list_by_position() {
        let read = |text: &str| serde_json::from_str::<Object<Inner>>(text);
        assert_eq!(read(r#"{"a": 7, "b": 1}"#).unwrap().0.a, json!(7));
        // A derived struct alone takes a list as its fields in order.
        assert_eq!(serde_json::from_str::<Inner>("[7]").unwrap().a, json!(7));
        for bad in ["[7]", "[]", "null", "7", r#""x""#] {
            let e = read(bad).unwrap_err().to_string();
            assert!(e.contains("expected an object"), "{bad}: {e}");
        }
    }

    #[test]
    fn an_object_is_read_and_null_or_an_empty_list_is_an_empty_one() {
        let read = |text: &str| serde_json::from_str::<Outer>(text).map(|o| o.inner);
        assert_eq!(read(r#"{"inner": {"a": 5, "b": 6}}"#).unwrap().a, json!(5));
        for empty in [r#"{"inner": null}"#, r#"{"inner": []}"#, "{}"] {
            assert_eq!(read(empty).unwrap(), Inner::default(), "{empty}");
        }
        for bad in [r#"{"inner": [1]}"#, r#"{"inner": 5}"#, r#"{"inner": "x"}"#] {
            let e = read(bad).unwrap_err().to_string();
            assert!(e.contains("expected an object, null or []"), "{bad}: {e}");
        }
    }

    #[test]
    fn integers_as_numbers_or_strings() {
        assert_eq!(uint(&json!(123)), Ok(Some(123)));
        assert_eq!(uint(&json!("123")), Ok(Some(123)));
        assert_eq!(uint(&json!(" 7 ")), Ok(Some(7)));
        assert_eq!(uint(&Value::Null), Ok(None));
        assert_eq!(uint(&json!("")), Ok(None));
        for bad in [
            json!(-1),
            json!(1.5),
            json!("12a"),
            json!([]),
            json!({}),
            json!(true),
        ] {
            assert!(uint(&bad).is_err(), "{bad}");
        }
        assert!(uint(&json!("x".repeat(500))).unwrap_err().len() < 100);
    }

    #[test]
    fn booleans_in_every_spelling() {
        for t in [
            json!(true),
            json!("true"),
            json!("True"),
            json!(1),
            json!("1"),
        ] {
            assert_eq!(boolean(&t), Ok(Some(true)), "{t}");
        }
        for f in [
            json!(false),
            json!("false"),
            json!("False"),
            json!(0),
            json!("0"),
        ] {
            assert_eq!(boolean(&f), Ok(Some(false)), "{f}");
        }
        assert_eq!(boolean(&Value::Null), Ok(None));
        for bad in [json!(2), json!("yes"), json!([]), json!(0.5)] {
            assert!(boolean(&bad).is_err(), "{bad}");
        }
    }
}

//! Rows in ClickHouse's `RowBinary` format, written by serde: each field in order, numbers
//! little-endian, strings as a LEB128 length and the bytes, `Option` as a null byte (1 for
//! `None`) and the value. Our own, not the `clickhouse` crate's (which keeps its serialiser
//! to itself), so that [`crate::ch::StreamInsert`] decides which bytes reach the server when.

use serde::Serialize;
use serde::ser::{self, Impossible};

/// A value serde cannot write as `RowBinary` (an enum, a map or sequence of unknown length).
#[derive(Debug)]
pub struct Error(String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot write a RowBinary row: {}", self.0)
    }
}

impl std::error::Error for Error {}

impl ser::Error for Error {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        Error(msg.to_string())
    }
}

/// Append `row` to `buf`; on an error, `buf` is left as it was (no half row).
pub fn write_row<T: Serialize + ?Sized>(buf: &mut Vec<u8>, row: &T) -> Result<(), Error> {
    let len = buf.len();
    row.serialize(&mut Writer { buf })
        .inspect_err(|_| buf.truncate(len))
}

struct Writer<'a> {
    buf: &'a mut Vec<u8>,
}

impl Writer<'_> {
    fn len(&mut self, mut n: usize) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                self.buf.push(byte);
                return;
            }
            self.buf.push(byte | 0x80);
        }
    }
}

fn unsupported(what: &str) -> Error {
    Error(format!("{what} has no RowBinary form here"))
}

macro_rules! numbers {
    ($($method:ident: $t:ty),*) => {
        $(fn $method(self, v: $t) -> Result<(), Error> {
            self.buf.extend_from_slice(&v.to_le_bytes());
            Ok(())
        })*
    };
}

impl ser::Serializer for &mut Writer<'_> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Impossible<(), Error>;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = Impossible<(), Error>;

    numbers!(serialize_i8: i8, serialize_i16: i16, serialize_i32: i32, serialize_i64: i64,
        serialize_i128: i128, serialize_u8: u8, serialize_u16: u16, serialize_u32: u32,
        serialize_u64: u64, serialize_u128: u128, serialize_f32: f32, serialize_f64: f64);

    /// Binary: types with two forms (UUIDs, dates of other crates) take the binary one.
    fn is_human_readable(&self) -> bool {
        false
    }

    fn serialize_bool(self, v: bool) -> Result<(), Error> {
        self.buf.push(u8::from(v));
        Ok(())
    }
    fn serialize_char(self, v: char) -> Result<(), Error> {
        self.serialize_str(v.encode_utf8(&mut [0; 4]))
    }
    fn serialize_str(self, v: &str) -> Result<(), Error> {
        self.serialize_bytes(v.as_bytes())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), Error> {
        self.len(v.len());
        self.buf.extend_from_slice(v);
        Ok(())
    }
    fn serialize_none(self) -> Result<(), Error> {
        self.buf.push(1);
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<(), Error> {
        self.buf.push(0);
        v.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), Error> {
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Error> {
        Ok(())
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, v: &'static str) -> Result<(), Error> {
        Err(unsupported(&format!("enum variant `{v}`")))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        v: &T,
    ) -> Result<(), Error> {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        v: &'static str,
        _: &T,
    ) -> Result<(), Error> {
        Err(unsupported(&format!("enum variant `{v}`")))
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<Self, Error> {
        self.len(len.ok_or_else(|| unsupported("a sequence of unknown length"))?);
        Ok(self)
    }
    fn serialize_tuple(self, _: usize) -> Result<Self, Error> {
        Ok(self)
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self, Error> {
        Ok(self)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        v: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Error> {
        Err(unsupported(&format!("enum variant `{v}`")))
    }
    fn serialize_map(self, len: Option<usize>) -> Result<Self, Error> {
        self.len(len.ok_or_else(|| unsupported("a map of unknown length"))?);
        Ok(self)
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self, Error> {
        Ok(self)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        v: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Error> {
        Err(unsupported(&format!("enum variant `{v}`")))
    }
}

/// The parts of a compound value (elements, fields, keys and values) are written in turn;
/// nothing marks where it ends.
macro_rules! in_turn {
    ($($part:ident: $($method:ident($($name:ty)?)),+;)*) => {$(
        impl ser::$part for &mut Writer<'_> {
            type Ok = ();
            type Error = Error;
            $(fn $method<T: Serialize + ?Sized>(&mut self, $(_: $name,)? v: &T) -> Result<(), Error> {
                v.serialize(&mut **self)
            })+
            fn end(self) -> Result<(), Error> {
                Ok(())
            }
        }
    )*};
}

in_turn! {
    SerializeSeq: serialize_element();
    SerializeTuple: serialize_element();
    SerializeTupleStruct: serialize_field();
    SerializeMap: serialize_key(), serialize_value();
    SerializeStruct: serialize_field(&'static str);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Row<'a> {
        d: u16,
        s: &'a str,
        n: Option<u64>,
        m: Option<u64>,
        i: i64,
        b: bool,
    }

    #[test]
    fn fields_in_order_little_endian_strings_with_their_length_and_nulls_flagged() {
        let mut buf = Vec::new();
        let long = "ы".repeat(100);
        write_row(
            &mut buf,
            &Row {
                d: 0x0102,
                s: "hé",
                n: None,
                m: Some(7),
                i: -2,
                b: true,
            },
        )
        .unwrap();
        let mut want = vec![0x02, 0x01, 3, b'h', 0xc3, 0xa9, 1, 0];
        want.extend_from_slice(&7u64.to_le_bytes());
        want.extend_from_slice(&(-2i64).to_le_bytes());
        want.push(1);
        assert_eq!(buf, want);
        // A length of 200 bytes takes two LEB128 bytes.
        buf.clear();
        write_row(&mut buf, long.as_str()).unwrap();
        assert_eq!(&buf[..2], &[0xc8, 0x01]);
        assert_eq!(buf.len(), 202);
        // An array is its length and its elements; a tuple, its elements.
        buf.clear();
        write_row(&mut buf, &(vec![1u8, 2], 3u16)).unwrap();
        assert_eq!(buf, [2, 1, 2, 3, 0]);
    }

    #[test]
    fn what_has_no_rowbinary_form_is_an_error_not_a_wrong_row() {
        #[derive(Serialize)]
        enum E {
            A,
        }
        let mut buf = vec![9];
        let err = write_row(&mut buf, &(7u8, E::A)).unwrap_err();
        assert!(err.to_string().contains("enum variant `A`"), "{err}");
        assert_eq!(buf, [9], "no half row left behind");
    }
}

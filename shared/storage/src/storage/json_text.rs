//! Sessions' JSON as text: written to and read from `jsonb` columns as it is, without building
//! a tree of it.

use std::error::Error as StdError;

use bytes::{BufMut, BytesMut};
use postgres_types::{to_sql_checked, FromSql, IsNull, ToSql, Type};
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use tokio_postgres::Row;

use crate::error::{Error, Result};

/// JSON text as a `jsonb` value, as it is: a session is written out once, and that text is
/// measured, checked and stored; a stored one is read as its text, without building a tree.
#[derive(Debug)]
pub(super) struct JsonText<'a>(pub(super) &'a str);

impl ToSql for JsonText<'_> {
    fn to_sql(
        &self,
        _: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        // jsonb's binary form: a version byte, then the text.
        out.put_u8(1);
        out.put_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSONB
    }

    to_sql_checked!();
}

impl<'a> FromSql<'a> for JsonText<'a> {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn StdError + Sync + Send>> {
        let text = match (ty, raw.split_first()) {
            (&Type::JSON, _) => raw,
            (_, Some((1, text))) => text,
            _ => return Err("an unknown jsonb format version".into()),
        };
        Ok(JsonText(std::str::from_utf8(text)?))
    }

    fn accepts(ty: &Type) -> bool {
        matches!(*ty, Type::JSON | Type::JSONB)
    }
}

/// The JSON text in column `index` (a session's `data`), checked to be what the storage can answer: jsonb can hold
/// numbers beyond a double (written by other software, e.g. `1e400`), which a caller's JSON
/// parser cannot represent either: an error of the call, never a panic. Also tells whether
/// the text is an object with an `id` of its own.
pub(super) fn stored_text<'a>(row: &'a Row, index: usize, what: &str) -> Result<(&'a str, Shape)> {
    let unreadable = || {
        Error::internal(format!(
            "the stored {what} is not JSON this storage can read (a number beyond the range of a double?)"
        ))
    };
    let JsonText(text) = row.try_get(index).map_err(|_| unreadable())?;
    let shape = serde_json::from_str(text).map_err(|_| unreadable())?;
    Ok((text, shape))
}

/// What `stored_text` found at the top of the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Shape {
    Object { has_id: bool },
    Other,
}

/// Reads JSON through, keeping nothing: it fails where serde_json fails (a number out of
/// range), and allocates nothing.
struct Walk;

impl<'de> Deserialize<'de> for Walk {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(WalkVisitor)
    }
}

struct WalkVisitor;

impl<'de> Visitor<'de> for WalkVisitor {
    type Value = Walk;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("JSON")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Walk, E> {
        Ok(Walk)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Walk, E> {
        Ok(Walk)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Walk, E> {
        Ok(Walk)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Walk, E> {
        Ok(Walk)
    }
    fn visit_str<E>(self, _: &str) -> Result<Walk, E> {
        Ok(Walk)
    }
    fn visit_unit<E>(self) -> Result<Walk, E> {
        Ok(Walk)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Walk, A::Error> {
        while seq.next_element::<Walk>()?.is_some() {}
        Ok(Walk)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Walk, A::Error> {
        while map.next_key::<Walk>()?.is_some() {
            map.next_value::<Walk>()?;
        }
        Ok(Walk)
    }
}

impl<'de> Deserialize<'de> for Shape {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ShapeVisitor)
    }
}

struct ShapeVisitor;

/// A top-level key: whether it is `id`.
struct IsId(bool);

impl<'de> Deserialize<'de> for IsId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = IsId;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E>(self, key: &str) -> Result<IsId, E> {
                Ok(IsId(key == "id"))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

impl<'de> Visitor<'de> for ShapeVisitor {
    type Value = Shape;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("JSON")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Shape, A::Error> {
        let mut has_id = false;
        while let Some(IsId(is_id)) = map.next_key()? {
            has_id |= is_id;
            map.next_value::<Walk>()?;
        }
        Ok(Shape::Object { has_id })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Shape, A::Error> {
        WalkVisitor.visit_seq(seq).map(|_| Shape::Other)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Shape, E> {
        Ok(Shape::Other)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Shape, E> {
        Ok(Shape::Other)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Shape, E> {
        Ok(Shape::Other)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Shape, E> {
        Ok(Shape::Other)
    }
    fn visit_str<E>(self, _: &str) -> Result<Shape, E> {
        Ok(Shape::Other)
    }
    fn visit_unit<E>(self) -> Result<Shape, E> {
        Ok(Shape::Other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(text: &str) -> std::result::Result<Shape, serde_json::Error> {
        serde_json::from_str(text)
    }

    #[test]
    fn an_object_tells_whether_it_has_an_id_at_its_top() {
        assert_eq!(shape("{}").unwrap(), Shape::Object { has_id: false });
        let nested = r#"{"user": {"id": 1}, "ids": [{"id": 2}]}"#;
        assert_eq!(shape(nested).unwrap(), Shape::Object { has_id: false });
        let own = r#"{"a": 1, "id": "x"}"#;
        assert_eq!(shape(own).unwrap(), Shape::Object { has_id: true });
        // An escaped key is the key it spells.
        let escaped = r#"{"i\u0064": "x"}"#;
        assert_eq!(shape(escaped).unwrap(), Shape::Object { has_id: true });
    }

    #[test]
    fn anything_else_is_other() {
        for text in [r#"[{"id": 1}]"#, "1", "-2.5", r#""id""#, "true", "null"] {
            assert_eq!(shape(text).unwrap(), Shape::Other, "{text}");
        }
    }

    #[test]
    fn a_number_beyond_a_double_anywhere_is_refused() {
        for text in [
            r#"{"n": 1e400}"#,
            r#"{"deep": [{"n": -1e400}]}"#,
            "[1, 2, 1e999]",
            "1e400",
        ] {
            assert!(shape(text).is_err(), "{text}");
        }
    }
}

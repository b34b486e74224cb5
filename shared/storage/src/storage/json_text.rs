//! Sessions' JSON as text: written to `jsonb` columns as it is, and read back written out
//! compact as it is read, without building a tree of it.

use std::error::Error as StdError;

use bytes::{BufMut, BytesMut};
use postgres_types::{to_sql_checked, FromSql, IsNull, ToSql, Type};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::ser::{Error as _, Serialize, SerializeMap, Serializer};
use serde_json::value::RawValue;
use serde_transcode::Transcoder;
use tokio_postgres::Row;
use uuid::Uuid;

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

/// The stored JSON in column `index` (a session's `data`) as an answer's text: written out
/// compact in one pass, with no tree built. With `id`, an object is answered with that id
/// first and any `id` of its own left out (other software may keep one in the data); any
/// other value is answered as it is. jsonb can hold numbers beyond a double (written by other
/// software, e.g. `1e400`), which a caller's JSON parser cannot represent either: an error of
/// the call, never a panic.
pub(super) fn stored_answer(
    row: &Row,
    index: usize,
    id: Option<Uuid>,
    what: &str,
) -> Result<Box<RawValue>> {
    let unreadable = || {
        Error::internal(format!(
            "the stored {what} is not JSON this storage can read (a number beyond the range of \
             a double?)"
        ))
    };
    let JsonText(data) = row.try_get(index).map_err(|_| unreadable())?;
    serde_json::value::to_raw_value(&Stored { data, id }).map_err(|_| unreadable())
}

/// Stored JSON text, written out through a serializer as it is read.
struct Stored<'a> {
    data: &'a str,
    id: Option<Uuid>,
}

impl Serialize for Stored<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let mut data = serde_json::Deserializer::from_str(self.data);
        let written = match self.id {
            Some(id) if self.data.trim_start().starts_with('{') => data
                .deserialize_map(WithId { id, serializer })
                .map_err(S::Error::custom)??,
            _ => Transcoder::new(&mut data).serialize(serializer)?,
        };
        data.end().map_err(S::Error::custom)?;
        Ok(written)
    }
}

/// Writes an object with `id` first, leaving out the object's own `id`.
struct WithId<S> {
    id: Uuid,
    serializer: S,
}

impl<'de, S: Serializer> Visitor<'de> for WithId<S> {
    type Value = std::result::Result<S::Ok, S::Error>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(
        self,
        mut fields: A,
    ) -> std::result::Result<Self::Value, A::Error> {
        let mut out = match self.serializer.serialize_map(None) {
            Ok(out) => out,
            Err(err) => return Ok(Err(err)),
        };
        if let Err(err) = out.serialize_entry("id", &self.id) {
            return Ok(Err(err));
        }
        while let Some(own_id) = fields.next_key_seed(Key(&mut out))? {
            if own_id {
                fields.next_value::<IgnoredAny>()?;
            } else {
                fields.next_value_seed(Value(&mut out))?;
            }
        }
        Ok(out.end())
    }
}

/// A field's key, written out unless it is `id`; tells whether it was.
struct Key<'a, M>(&'a mut M);

impl<'de, M: SerializeMap> DeserializeSeed<'de> for Key<'_, M> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, key: D) -> std::result::Result<bool, D::Error> {
        key.deserialize_str(self)
    }
}

impl<'de, M: SerializeMap> Visitor<'de> for Key<'_, M> {
    type Value = bool;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> std::result::Result<bool, E> {
        if key == "id" {
            return Ok(true);
        }
        self.0.serialize_key(key).map_err(E::custom)?;
        Ok(false)
    }
}

/// A field's value, written out as it is read.
struct Value<'a, M>(&'a mut M);

impl<'de, M: SerializeMap> DeserializeSeed<'de> for Value<'_, M> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, value: D) -> std::result::Result<(), D::Error> {
        self.0
            .serialize_value(&Transcoder::new(value))
            .map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "6f1c2d4e-8a9b-4c3d-9e8f-7a6b5c4d3e2f";

    fn answer(data: &str, id: bool) -> std::result::Result<String, serde_json::Error> {
        let id = id.then(|| Uuid::parse_str(ID).unwrap());
        serde_json::value::to_raw_value(&Stored { data, id }).map(|text| text.get().to_owned())
    }

    #[test]
    fn an_object_is_written_compact_with_the_rows_id_first() {
        // jsonb's own text: spaces, keys by length.
        let stored = r#"{"b": 1, "aa": [1, 2], "ccc": {"d": null}}"#;
        let want = format!(r#"{{"id":"{ID}","b":1,"aa":[1,2],"ccc":{{"d":null}}}}"#);
        assert_eq!(answer(stored, true).unwrap(), want);
        assert_eq!(answer("{}", true).unwrap(), format!(r#"{{"id":"{ID}"}}"#));
    }

    #[test]
    fn an_id_of_the_objects_own_is_left_out_and_nested_ones_kept() {
        let stored = r#"{"id": 3, "x": {"id": 4}, "id": "escaped"}"#;
        let want = format!(r#"{{"id":"{ID}","x":{{"id":4}}}}"#);
        assert_eq!(answer(stored, true).unwrap(), want);
    }

    #[test]
    fn anything_else_is_answered_as_it_is_compact() {
        assert_eq!(
            answer(r#"[1, {"id": 2}]"#, true).unwrap(),
            r#"[1,{"id":2}]"#
        );
        assert_eq!(answer(r#""text""#, true).unwrap(), r#""text""#);
        let registration = r#"{"id": "kept", "n": 1.5}"#;
        assert_eq!(
            answer(registration, false).unwrap(),
            r#"{"id":"kept","n":1.5}"#
        );
    }

    #[test]
    fn numbers_are_written_short_as_a_double_is() {
        // jsonb writes 5e-324 out in full: 326 characters.
        let stored = format!(
            r#"{{"n": 0.{}5, "m": 1{}}}"#,
            "0".repeat(323),
            "0".repeat(300)
        );
        let written = answer(&stored, false).unwrap();
        assert!(written.len() < 30, "{written}");
        let read: serde_json::Value = serde_json::from_str(&written).unwrap();
        assert_eq!(read, serde_json::json!({"n": 5e-324, "m": 1e300}));
    }

    #[test]
    fn a_number_beyond_a_double_anywhere_is_refused() {
        for text in [
            r#"{"n": 1e400}"#,
            r#"{"deep": [{"n": -1e400}]}"#,
            "[1, 2, 1e999]",
            "1e400",
        ] {
            assert!(answer(text, true).is_err(), "{text}");
            assert!(answer(text, false).is_err(), "{text}");
        }
    }
}

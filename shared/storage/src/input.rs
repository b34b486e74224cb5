//! Checks on the values of a call, made before anything reaches the database, so bad input
//! gets an error naming the field rather than a database error.

use serde::de::{self, Deserializer};
use serde::Deserialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::{Error, Result};

/// The limit of the schema's `varchar(255)` columns, in characters as PostgreSQL counts them.
const VARCHAR_LIMIT: usize = 255;

/// An internal id: must be a UUID. The message does not quote the value: a session id is
/// part of the session's contents.
pub fn uuid(field: &str, value: &str) -> Result<Uuid> {
    Uuid::parse_str(value).map_err(|_| {
        Error::invalid_input(format!(
            "{field} must be a UUID (like 123e4567-e89b-12d3-a456-426614174000), got a string of {} characters",
            value.chars().count()
        ))
    })
}

/// The longest URL a client may hold (`authUrl`, `tokenUrl`, `jwksUrl`): far above real
/// endpoints, and it bounds what each cached launch config can weigh.
pub const URL_LIMIT: usize = 2048;

/// Text for a `varchar(255)` column: no NUL, at most 255 characters, never truncated.
pub fn short_text<'a>(field: &str, value: &'a str) -> Result<&'a str> {
    bounded_text(field, value, VARCHAR_LIMIT)
}

/// A URL: text of at most `URL_LIMIT` characters.
pub fn url<'a>(field: &str, value: &'a str) -> Result<&'a str> {
    bounded_text(field, value, URL_LIMIT)
}

fn bounded_text<'a>(field: &str, value: &'a str, limit: usize) -> Result<&'a str> {
    let value = text(field, value)?;
    let length = value.chars().count();
    if length > limit {
        return Err(Error::invalid_input(format!(
            "{field} is {length} characters long; the limit is {limit}"
        )));
    }
    Ok(value)
}

/// Text for a `text` column: PostgreSQL text cannot hold NUL characters.
pub fn text<'a>(field: &str, value: &'a str) -> Result<&'a str> {
    if value.contains('\0') {
        return Err(Error::invalid_input(format!(
            "{field} contains a NUL character, which PostgreSQL text cannot store"
        )));
    }
    Ok(value)
}

/// Session contents as the JSON text that is stored: at most `limit` bytes (what the caller
/// sent, near enough, so that no session can take a container's memory), and no NUL in any
/// string or key (`\u0000`, which PostgreSQL's jsonb refuses). One pass over the text.
pub fn session_json(field: &str, value: &serde_json::Value, limit: usize) -> Result<String> {
    let text = serde_json::to_string(value)
        .map_err(|_| Error::invalid_input(format!("{field} cannot be written as JSON")))?;
    if text.len() > limit {
        return Err(Error::invalid_input(format!(
            "{field} is {} bytes as JSON; the limit is {limit} (MAX_SESSION_BYTES)",
            text.len()
        )));
    }
    if has_escaped_nul(&text) {
        return Err(Error::invalid_input(format!(
            "{field} contains a NUL character (\\u0000), which PostgreSQL jsonb cannot store"
        )));
    }
    Ok(text)
}

/// Whether JSON text holds `\u0000`: outside strings there is no backslash, and inside one
/// each backslash begins an escape, so escapes are stepped over whole (`\\u0000` is a
/// backslash and `u0000`).
fn has_escaped_nul(json: &str) -> bool {
    let bytes = json.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            if bytes[i + 1..].starts_with(b"u0000") {
                return true;
            }
            i += 2;
        } else {
            i += 1;
        }
    }
    false
}

/// An `expiresAt` argument: an RFC 3339 string (what `JSON.stringify(new Date())` gives) or
/// integer epoch milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamp(pub OffsetDateTime);

impl Timestamp {
    fn from_epoch_millis(millis: i64) -> Option<Self> {
        let time =
            OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000).ok()?;
        // timestamptz holds years 4713 BC to 294276 AD; keep to sane dates.
        (1970..=9999)
            .contains(&time.year())
            .then_some(Timestamp(time))
    }

    pub fn parse_rfc3339(text: &str) -> Option<Self> {
        OffsetDateTime::parse(text, &Rfc3339).ok().map(Timestamp)
    }
}

impl Timestamp {
    /// Reads a timestamp out of a JSON value, with the message serde would give.
    pub fn deserialize_value(value: &serde_json::Value) -> Result<Self, String> {
        Timestamp::deserialize(value).map_err(|err| err.to_string())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        const EXPECTED: &str =
            "an RFC 3339 date-time string (e.g. \"2026-01-31T12:00:00.000Z\") or integer epoch milliseconds";
        match serde_json::Value::deserialize(deserializer)? {
            serde_json::Value::String(text) => Timestamp::parse_rfc3339(&text).ok_or_else(|| {
                de::Error::custom(format!("invalid date-time, expected {EXPECTED}"))
            }),
            serde_json::Value::Number(number) => number
                .as_i64()
                .and_then(Timestamp::from_epoch_millis)
                .ok_or_else(|| {
                    de::Error::custom(format!(
                        "epoch milliseconds out of range (years 1970 to 9999), expected {EXPECTED}"
                    ))
                }),
            other => Err(de::Error::custom(format!(
                "invalid type: {}, expected {EXPECTED}",
                json_type(&other)
            ))),
        }
    }
}

/// The JSON type of a value, in words, for error messages that must not quote the value.
pub fn json_type(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Decodes %-escapes (URL paths, query values); `None` when malformed or not UTF-8.
pub fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text
                .get(i + 1..i + 3)
                .filter(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()))?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_uuid_is_accepted_in_any_case_and_anything_else_is_named_without_its_value() {
        let id = "123e4567-e89b-12d3-a456-426614174000";
        assert_eq!(uuid("sessionId", id).unwrap().to_string(), id);
        assert_eq!(
            uuid("sessionId", &id.to_uppercase()).unwrap().to_string(),
            id
        );
        let err = uuid("sessionId", "secret-session-42").unwrap_err();
        assert!(err.message.starts_with("sessionId must be a UUID"), "{err}");
        assert!(err.message.contains("17 characters"), "{err}");
        assert!(!err.message.contains("secret-session-42"), "{err}");
    }

    #[test]
    fn short_text_counts_characters_not_bytes() {
        let at_limit = "é".repeat(VARCHAR_LIMIT);
        assert_eq!(short_text("client.name", &at_limit).unwrap(), at_limit);
        let over = "a".repeat(VARCHAR_LIMIT + 1);
        let err = short_text("client.name", &over).unwrap_err();
        assert_eq!(
            err.message,
            "client.name is 256 characters long; the limit is 255"
        );
        // A backslash and a zero are text; the NUL character is not.
        assert!(short_text("client.name", "a\\0b").is_ok());
        assert!(short_text("client.name", "a\u{0}b").is_err());
    }

    #[test]
    fn nul_is_refused_in_text_and_anywhere_in_json_keys_and_values() {
        assert!(text("nonce", "no nul here").is_ok());
        let err = text("nonce", "a\u{0}").unwrap_err();
        assert!(err.message.starts_with("nonce contains a NUL"), "{err}");
        let fine = json!({"a": [1, {"b": "ok"}], "c": null, "d": "\\u0000 as text"});
        assert_eq!(
            session_json("session", &fine, 1024).unwrap(),
            fine.to_string(),
            "the text stored is the session's JSON"
        );
        for bad in [
            json!("a\u{0}"),
            json!({"deep": [{"x": "a\u{0}"}]}),
            json!({"key\u{0}": 1}),
            json!({"after": "\\\u{0}"}),
        ] {
            let err = session_json("session", &bad, 1024).unwrap_err();
            assert!(err.message.starts_with("session contains a NUL"), "{bad}");
        }
    }

    #[test]
    fn a_session_over_the_limit_is_refused_naming_its_size_never_its_contents() {
        let session = json!({"secret": "x".repeat(100)});
        let size = session.to_string().len();
        assert!(session_json("session", &session, size).is_ok());
        let err = session_json("session", &session, size - 1).unwrap_err();
        assert_eq!(
            err.message,
            format!(
                "session is {size} bytes as JSON; the limit is {} (MAX_SESSION_BYTES)",
                size - 1
            )
        );
    }

    #[test]
    fn timestamps_are_rfc3339_strings_or_epoch_millis_from_1970_to_9999() {
        let from_text = Timestamp::deserialize_value(&json!("2026-01-31T12:00:00.000Z")).unwrap();
        let from_millis = Timestamp::deserialize_value(&json!(1_769_860_800_000i64)).unwrap();
        assert_eq!(from_text, from_millis);
        assert_eq!(
            Timestamp::deserialize_value(&json!("2026-01-31T13:00:00+01:00")).unwrap(),
            from_text
        );
        assert!(Timestamp::deserialize_value(&json!(0)).is_ok());
        assert!(Timestamp::deserialize_value(&json!(253_402_300_799_999i64)).is_ok());
        for (value, problem) in [
            (json!(-1), "out of range"),
            (json!(253_402_300_800_000i64), "out of range"),
            (json!(1.5), "out of range"),
            (json!("tomorrow"), "invalid date-time"),
            (json!("2026-01-31"), "invalid date-time"),
            (json!(true), "invalid type: a boolean"),
            (json!(null), "invalid type: null"),
        ] {
            let err = Timestamp::deserialize_value(&value).unwrap_err();
            assert!(err.contains(problem), "{value}: {err}");
            assert!(
                err.contains("RFC 3339"),
                "{value}: says what is expected: {err}"
            );
        }
    }

    #[test]
    fn json_type_names_each_type() {
        for (value, name) in [
            (json!(null), "null"),
            (json!(false), "a boolean"),
            (json!(1), "a number"),
            (json!("x"), "a string"),
            (json!([]), "an array"),
            (json!({}), "an object"),
        ] {
            assert_eq!(json_type(&value), name);
        }
    }

    #[test]
    fn percent_decode_decodes_escapes_and_refuses_malformed_ones() {
        assert_eq!(
            percent_decode("/path%20x%2Fy").as_deref(),
            Some("/path x/y")
        );
        assert_eq!(percent_decode("%C3%A9+").as_deref(), Some("é+"));
        assert_eq!(percent_decode("plain").as_deref(), Some("plain"));
        for malformed in ["%", "%2", "%zz", "%ff", "100%"] {
            assert_eq!(percent_decode(malformed), None, "{malformed}");
        }
    }
}

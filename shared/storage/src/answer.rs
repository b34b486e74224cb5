//! An operation's answer: its JSON text, the operation's own or shared with a cache, so that
//! a cache hit hands on what the cache keeps without copying it.

use std::ops::Deref;
use std::sync::Arc;

use serde::{Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::Value;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::model::{CleanupCounts, LaunchConfig};

/// JSON text: written for this answer, or shared with a cache.
#[derive(Debug, Clone)]
pub enum Answer {
    Own(Box<RawValue>),
    Shared(Arc<RawValue>),
}

impl Answer {
    /// The text in a box of its own (a copy when it is shared).
    pub fn into_owned(self) -> Box<RawValue> {
        match self {
            Answer::Own(text) => text,
            Answer::Shared(text) => RawValue::to_owned(&text),
        }
    }

    fn null() -> Result<Answer> {
        to_json(Value::Null).map(Answer::Own)
    }
}

impl Deref for Answer {
    type Target = RawValue;

    fn deref(&self) -> &RawValue {
        match self {
            Answer::Own(text) => text,
            Answer::Shared(text) => text,
        }
    }
}

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        (**self).fmt(f)
    }
}

/// Written out as the text it is.
impl Serialize for Answer {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        (**self).serialize(serializer)
    }
}

/// What an operation's result becomes as its answer.
pub trait IntoAnswer {
    fn into_answer(self) -> Result<Answer>;
}

impl IntoAnswer for Box<RawValue> {
    fn into_answer(self) -> Result<Answer> {
        Ok(Answer::Own(self))
    }
}

impl IntoAnswer for Option<Box<RawValue>> {
    fn into_answer(self) -> Result<Answer> {
        self.map_or_else(Answer::null, IntoAnswer::into_answer)
    }
}

impl IntoAnswer for Option<Arc<RawValue>> {
    fn into_answer(self) -> Result<Answer> {
        self.map_or_else(Answer::null, |text| Ok(Answer::Shared(text)))
    }
}

/// Results that are data, not text yet: written out.
macro_rules! written_out {
    ($($result:ty),*) => {$(
        impl IntoAnswer for $result {
            fn into_answer(self) -> Result<Answer> {
                to_json(self).map(Answer::Own)
            }
        }
    )*};
}

written_out!(
    Uuid,
    String,
    (),
    bool,
    Value,
    Option<LaunchConfig>,
    CleanupCounts
);

/// JSON text written straight from what the operation read.
pub(crate) fn to_json(value: impl Serialize) -> Result<Box<RawValue>> {
    serde_json::value::to_raw_value(&value)
        .map_err(|_| Error::internal("the result could not be turned into JSON"))
}

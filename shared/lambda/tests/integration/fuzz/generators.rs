//! What callers may send: text of every kind, ids, JSON values, expiry times, and each op's
//! arguments, well-formed or not.

use lti_storage::request::OPS;
use proptest::prelude::*;
use serde_json::{json, Map, Value};
use time::OffsetDateTime;
use uuid::Uuid;

/// Text of every kind: arbitrary unicode (NUL included), id-like, empty, over the limits.
pub(super) fn text() -> BoxedStrategy<String> {
    prop_oneof![
        3 => any::<String>(),
        2 => "[a-zA-Z0-9:/._ -]{0,24}",
        1 => Just(String::new()),
        1 => Just("default".to_string()),
        1 => Just("a\u{0}b".to_string()),
        1 => (250usize..260).prop_map(|n| "é".repeat(n)),
        1 => "[\\PC]{0,8}",
    ]
    .boxed()
}

/// A UUID in some spelling: one of the world's ids, a random one, or another form.
pub(super) fn uuid_text(ids: &[String]) -> BoxedStrategy<String> {
    prop_oneof![
        4 => proptest::sample::select(ids.to_vec()),
        2 => any::<u128>().prop_map(|n| Uuid::from_u128(n).to_string()),
        1 => proptest::sample::select(ids.to_vec()).prop_map(|id| id.to_uppercase()),
        1 => proptest::sample::select(ids.to_vec()).prop_map(|id| format!("{{{id}}}")),
        1 => proptest::sample::select(ids.to_vec()).prop_map(|id| id.replace('-', "")),
        1 => text(),
    ]
    .boxed()
}

/// Arbitrary JSON: null, booleans, integers and floats of every size, strings of every
/// kind, nested arrays and objects.
pub(super) fn json_value() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
            .map(Value::Number)),
        prop_oneof![Just(0.0), Just(-0.0), Just(1e308), Just(5e-324), Just(0.1)]
            .prop_map(|f: f64| json!(f)),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(text(), inner, 0..6)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
    .boxed()
}

/// An `expiresAt`: RFC 3339 strings (valid or nearly), epoch milliseconds of any size, or
/// anything else.
pub(super) fn expires_at() -> BoxedStrategy<Value> {
    let rfc3339 = (
        0u32..=10000,
        0u32..=13,
        0u32..=32,
        0u32..=24,
        0u32..=60,
        0u32..=61,
        prop::option::of(0u32..1_000_000_000),
        prop_oneof![
            Just("Z".to_string()),
            (-24i32..=24, 0u32..60).prop_map(|(h, m)| format!("{h:+03}:{m:02}")),
            Just(String::new()),
        ],
    )
        .prop_map(|(y, mo, d, h, mi, s, frac, offset)| {
            let frac = frac.map(|f| format!(".{f}")).unwrap_or_default();
            format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{frac}{offset}")
        });
    let now_ms = OffsetDateTime::now_utc().unix_timestamp() * 1000;
    prop_oneof![
        3 => rfc3339.prop_map(Value::String),
        2 => (now_ms - 86_400_000..now_ms + 86_400_000 * 365).prop_map(Value::from),
        1 => any::<i64>().prop_map(Value::from),
        1 => any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f).map(Value::Number)),
        1 => json_value(),
    ]
    .boxed()
}

/// An object with some of `fields` (each drawn from its strategy), maybe an unknown one.
pub(super) fn object_of(fields: Vec<(&'static str, BoxedStrategy<Value>)>) -> BoxedStrategy<Value> {
    let present: Vec<BoxedStrategy<Option<(String, Value)>>> = fields
        .into_iter()
        .map(|(name, value)| {
            prop::option::weighted(0.85, value)
                .prop_map(move |value| value.map(|value| (name.to_string(), value)))
                .boxed()
        })
        .collect();
    (present, prop::option::weighted(0.1, (text(), json_value())))
        .prop_map(|(present, extra)| {
            let mut map: Map<String, Value> = present.into_iter().flatten().collect();
            if let Some((key, value)) = extra {
                map.insert(key, value);
            }
            Value::Object(map)
        })
        .boxed()
}

fn string_or_any(strings: BoxedStrategy<String>) -> BoxedStrategy<Value> {
    prop_oneof![8 => strings.prop_map(Value::String), 1 => json_value()].boxed()
}

/// The value of an argument named `field`, as a caller might (mis)send it.
pub(super) fn argument(field: &'static str, ids: &[String]) -> BoxedStrategy<Value> {
    let nonce = prop_oneof![
        proptest::sample::select(vec!["n-1", "n-2", "n-3"]).prop_map(str::to_string),
        text()
    ]
    .boxed();
    match field {
        "clientId" | "deploymentId" | "sessionId" => string_or_any(uuid_text(ids)),
        "iss" => string_or_any(
            prop_oneof![Just("https://canvas.instructure.com".to_string()), text()].boxed(),
        ),
        "lmsClientId" => {
            string_or_any(prop_oneof![Just("10000000000001".to_string()), text()].boxed())
        }
        "nonce" => string_or_any(nonce),
        "expiresAt" => expires_at(),
        "client" => prop_oneof![
            8 => object_of(
                ["name", "iss", "clientId", "authUrl", "tokenUrl", "jwksUrl"]
                    .into_iter()
                    .map(|name| (name, string_or_any(text())))
                    .collect()
            ),
            1 => json_value(),
        ]
        .boxed(),
        "deployment" => prop_oneof![
            8 => object_of(vec![
                ("deploymentId", string_or_any(text())),
                ("name", string_or_any(text())),
                ("description", string_or_any(text())),
            ]),
            1 => json_value(),
        ]
        .boxed(),
        "session" => prop_oneof![
            8 => (
                object_of(vec![
                    ("id", string_or_any(uuid_text(ids))),
                    ("expiresAt", expires_at()),
                ]),
                prop::collection::btree_map(text(), json_value(), 0..5),
            )
                .prop_map(|(mut session, more)| {
                    let map = session.as_object_mut().unwrap();
                    for (key, value) in more {
                        map.entry(key).or_insert(value);
                    }
                    session
                }),
            1 => json_value(),
        ]
        .boxed(),
        _ => json_value(),
    }
}

/// The arguments each op takes (`lmsClientId` is getLaunchConfig's `clientId`).
fn arguments_of(op: &str) -> &'static [&'static str] {
    match op {
        "getClientById" | "deleteClient" | "listDeployments" => &["clientId"],
        "addClient" => &["client"],
        "updateClient" => &["clientId", "client"],
        "getDeployment" | "deleteDeployment" => &["clientId", "deploymentId"],
        "addDeployment" => &["clientId", "deployment"],
        "updateDeployment" => &["clientId", "deploymentId", "deployment"],
        "storeNonce" => &["nonce", "expiresAt"],
        "validateNonce" => &["nonce"],
        "addSession" => &["session"],
        "getSession" | "getRegistrationSession" | "deleteRegistrationSession" => &["sessionId"],
        "getLaunchConfig" => &["iss", "lmsClientId", "deploymentId"],
        "saveLaunchConfig" => &["launchConfig"],
        "setRegistrationSession" => &["sessionId", "session"],
        _ => &[],
    }
}

const ALL_ARGUMENTS: &[&str] = &[
    "clientId",
    "deploymentId",
    "client",
    "deployment",
    "nonce",
    "expiresAt",
    "session",
    "sessionId",
    "iss",
    "launchConfig",
];

/// A direct-invocation payload: mostly `{"op": <known op>, ...its arguments}` with each
/// argument usually present and of the right kind, sometimes missing, mistyped or extra;
/// sometimes an unknown op or not an object at all. `migrate` is included: on a migrated
/// schema it applies nothing.
pub(super) fn payload(ids: Vec<String>) -> BoxedStrategy<Value> {
    let op = prop_oneof![
        9 => proptest::sample::select(OPS.to_vec()).prop_map(str::to_string),
        1 => text(),
    ];
    let object = op
        .prop_flat_map(move |op| {
            let takes = arguments_of(&op);
            let wanted: Vec<BoxedStrategy<Option<(String, Value)>>> = takes
                .iter()
                .map(|field| {
                    let name = if *field == "lmsClientId" {
                        "clientId"
                    } else {
                        field
                    };
                    prop::option::weighted(0.9, argument(field, &ids))
                        .prop_map(move |value| value.map(|value| (name.to_string(), value)))
                        .boxed()
                })
                .collect();
            let unwanted: Vec<BoxedStrategy<Option<(String, Value)>>> = ALL_ARGUMENTS
                .iter()
                .filter(|field| !takes.contains(field))
                .map(|field| {
                    prop::option::weighted(0.02, argument(field, &ids))
                        .prop_map(move |value| value.map(|value| (field.to_string(), value)))
                        .boxed()
                })
                .collect();
            (
                Just(op),
                wanted,
                unwanted,
                prop::option::weighted(0.05, json_value()),
            )
        })
        .prop_map(|(op, wanted, unwanted, op_value)| {
            let mut map: Map<String, Value> =
                wanted.into_iter().chain(unwanted).flatten().collect();
            map.insert("op".into(), op_value.unwrap_or(Value::String(op)));
            Value::Object(map)
        });
    prop_oneof![19 => object, 1 => json_value()].boxed()
}

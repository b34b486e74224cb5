//! The rows of the tables: for each operation, the payloads of its calls, on rows they can
//! act on, what each call is expected to cost, and the operation's own SQL with the
//! parameters of as many calls of its own (on rows of their own where a call uses its row up).

use lti_storage::input::Timestamp;
use lti_storage::storage::sql;
use postgres_types::{Json, ToSql, Type};
use serde_json::value::RawValue;
use serde_json::{json, Value};
use test_support::{client_json, epoch_ms_in, new_client, session_data};
use time::OffsetDateTime;
use uuid::Uuid;

/// What a call is expected to cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// One statement: exactly one round trip, at most `ratio_target` bare round trips.
    Database,
    /// Served from the container's cache: no round trip, a few microseconds.
    CacheHit,
    /// Nothing to do (saveLaunchConfig): no round trip.
    NoOp,
}

/// One row of the table: the payloads to send, in order.
pub(super) struct Case {
    pub(super) label: String,
    pub(super) kind: Kind,
    pub(super) payloads: Vec<Value>,
    /// Every call must find something (a result that is neither null nor false).
    pub(super) must_find: bool,
    /// The operation's SQL run bare beside each call; none for a row that sends none.
    pub(super) raw: Option<Raw>,
}

/// An operation's own statement, run through tokio-postgres directly (prepared, on the
/// storage's connection): what the operation would cost if the storage added nothing.
pub(super) struct Raw {
    pub(super) sql: &'static str,
    pub(super) types: Vec<Type>,
    /// Each call's parameters, in the statement's order.
    pub(super) params: Vec<Vec<Param>>,
}

pub(super) type Param = Box<dyn ToSql + Sync + Send>;

fn param(value: impl ToSql + Sync + Send + 'static) -> Param {
    Box::new(value)
}

impl Case {
    fn new(
        label: &str,
        kind: Kind,
        must_find: bool,
        calls: usize,
        payload: impl Fn(usize) -> Value,
    ) -> Case {
        Case {
            label: label.to_owned(),
            kind,
            payloads: (0..calls).map(payload).collect(),
            must_find,
            raw: None,
        }
    }

    /// Adds the raw statement: `sql` with parameters of `types`, `params(i)` for call `i`.
    fn raw<const N: usize>(
        mut self,
        sql: &'static str,
        types: [Type; N],
        params: impl Fn(usize) -> [Param; N],
    ) -> Case {
        let calls = self.payloads.len();
        self.raw = Some(Raw {
            sql,
            types: types.into(),
            params: (0..calls).map(|i| params(i).into()).collect(),
        });
        self
    }
}

/// Rows every case can use: clients (the first with a few deployments).
pub(super) struct Fixture {
    clients: Vec<String>,
    deployments: Vec<String>,
}

impl Fixture {
    pub(super) async fn create(sql: &tokio_postgres::Client) -> Fixture {
        let clients = ids(
            sql,
            "INSERT INTO clients (name, iss, client_id, auth_url, token_url, jwks_url)
             SELECT 'LMS ' || g, 'https://lms-' || g || '.example.com', 'client-' || g,
                    'https://lms.example.com/auth', 'https://lms.example.com/token',
                    'https://lms.example.com/jwks'
             FROM generate_series(1, 50) g RETURNING id",
        )
        .await;
        let deployments = ids(
            sql,
            &format!(
                "INSERT INTO deployments (client_id, deployment_id, name)
                 SELECT '{}', 'deployment-' || g, 'Deployment ' || g
                 FROM generate_series(1, 5) g RETURNING id",
                clients[0]
            ),
        )
        .await;
        Fixture {
            clients,
            deployments,
        }
    }
}

/// The rows measured for `op`: the operation itself, uncached, on rows it can act on (fresh
/// ones where a call uses its row up), and, for cached operations, a cache-hit row.
/// `n` calls each.
pub(super) async fn cases(
    op: &str,
    fx: &Fixture,
    sql: &tokio_postgres::Client,
    n: usize,
) -> Vec<Case> {
    use Kind::*;
    let (client, deployment) = (&fx.clients[0], &fx.deployments[0]);
    match op {
        "listClients" => vec![
            Case::new(op, Database, false, n, |_| json!({"op": op})).raw(
                sql::LIST_CLIENTS,
                [],
                |_| [],
            ),
        ],
        "getClientById" => vec![Case::new(
            op,
            Database,
            true,
            n,
            |_| json!({"op": op, "clientId": client}),
        )
        .raw(sql::GET_CLIENT_BY_ID, [Type::UUID], |_| [uuid(client)])],
        "addClient" => vec![Case::new(
            op,
            Database,
            true,
            n,
            |i| json!({"op": op, "client": client_json(&new_client("https://added.example.com", &format!("added-{i}")))}),
        )
        .raw(
            sql::ADD_CLIENT,
            [Type::UUID, Type::VARCHAR, Type::VARCHAR, Type::VARCHAR, Type::TEXT, Type::TEXT, Type::TEXT],
            |i| {
                let c = new_client("https://raw.example.com", &format!("raw-{i}"));
                [param(Uuid::new_v4()), param(c.name), param(c.iss), param(c.client_id),
                 param(c.auth_url), param(c.token_url), param(c.jwks_url)]
            },
        )],
        "updateClient" => vec![Case::new(
            op,
            Database,
            false,
            n,
            |i| json!({"op": op, "clientId": fx.clients[1], "client": {"name": format!("Renamed {i}")}}),
        )
        .raw(
            sql::UPDATE_CLIENT,
            [Type::UUID, Type::VARCHAR, Type::VARCHAR, Type::VARCHAR, Type::TEXT, Type::TEXT, Type::TEXT],
            |i| {
                let unchanged = || param(None::<String>);
                [uuid(&fx.clients[1]), param(Some(format!("Raw {i}"))), unchanged(),
                 unchanged(), unchanged(), unchanged(), unchanged()]
            },
        )],
        "deleteClient" => {
            // Each with a deployment, which goes too; as many again for the raw statement.
            let doomed = ids(
                sql,
                &format!(
                    "WITH c AS (
                         INSERT INTO clients (name, iss, client_id, auth_url, token_url, jwks_url)
                         SELECT 'Doomed', 'https://doomed.example.com', 'doomed-' || g, 'a', 't', 'j'
                         FROM generate_series(1, 2 * {n}) g RETURNING id),
                     d AS (INSERT INTO deployments (client_id, deployment_id)
                           SELECT id, 'default' FROM c)
                     SELECT id FROM c"
                ),
            )
            .await;
            vec![Case::new(
                op,
                Database,
                false,
                n,
                |i| json!({"op": op, "clientId": doomed[i]}),
            )
            .raw(sql::DELETE_CLIENT, [Type::UUID], |i| [uuid(&doomed[n + i])])]
        }
        "listDeployments" => vec![Case::new(
            op,
            Database,
            false,
            n,
            |_| json!({"op": op, "clientId": client}),
        )
        .raw(sql::LIST_DEPLOYMENTS, [Type::UUID], |_| [uuid(client)])],
        "getDeployment" => vec![Case::new(
            op,
            Database,
            true,
            n,
            |_| json!({"op": op, "clientId": client, "deploymentId": deployment}),
        )
        .raw(sql::GET_DEPLOYMENT, [Type::UUID, Type::UUID], |_| {
            [uuid(deployment), uuid(client)]
        })],
        "addDeployment" => vec![Case::new(op, Database, true, n, |i| {
            json!({"op": op, "clientId": fx.clients[2],
                   "deployment": {"deploymentId": format!("added-{i}"), "name": "Added"}})
        })
        .raw(
            sql::ADD_DEPLOYMENT,
            [Type::UUID, Type::UUID, Type::VARCHAR, Type::VARCHAR, Type::TEXT],
            |i| {
                [param(Uuid::new_v4()), uuid(&fx.clients[2]), param(format!("raw-{i}")),
                 param(Some("Added")), param(None::<String>)]
            },
        )],
        "updateDeployment" => vec![Case::new(op, Database, false, n, |i| {
            json!({"op": op, "clientId": client, "deploymentId": fx.deployments[1],
                   "deployment": {"name": format!("Renamed {i}")}})
        })
        .raw(
            sql::UPDATE_DEPLOYMENT,
            [Type::UUID, Type::UUID, Type::VARCHAR, Type::BOOL, Type::VARCHAR, Type::BOOL, Type::TEXT],
            |i| {
                [uuid(client), uuid(&fx.deployments[1]), param(None::<String>), param(true),
                 param(Some(format!("Raw {i}"))), param(false), param(None::<String>)]
            },
        )],
        "deleteDeployment" => {
            let owner = &fx.clients[3];
            let doomed = ids(
                sql,
                &format!(
                    "INSERT INTO deployments (client_id, deployment_id)
                     SELECT '{owner}', 'doomed-' || g FROM generate_series(1, 2 * {n}) g RETURNING id"
                ),
            )
            .await;
            vec![Case::new(
                op,
                Database,
                false,
                n,
                |i| json!({"op": op, "clientId": owner, "deploymentId": doomed[i]}),
            )
            .raw(sql::DELETE_DEPLOYMENT, [Type::UUID, Type::UUID], |i| {
                [uuid(owner), uuid(&doomed[n + i])]
            })]
        }
        "storeNonce" => {
            let expires_at = epoch_ms_in(600);
            vec![Case::new(
                op,
                Database,
                false,
                n,
                |i| json!({"op": op, "nonce": format!("stored-{i}"), "expiresAt": expires_at}),
            )
            .raw(sql::STORE_NONCE, [Type::VARCHAR, Type::TIMESTAMPTZ], |i| {
                [param(format!("raw-{i}")), param(epoch_ms(expires_at))]
            })]
        }
        "validateNonce" => {
            sql.batch_execute(&format!(
                "INSERT INTO nonces (nonce, expires_at)
                 SELECT 'fresh-' || g, now() + interval '10 minutes' FROM generate_series(1, 2 * {n}) g"
            ))
            .await
            .expect("store nonces");
            vec![Case::new(
                op,
                Database,
                true,
                n,
                |i| json!({"op": op, "nonce": format!("fresh-{}", i + 1)}),
            )
            .raw(sql::VALIDATE_NONCE, [Type::VARCHAR, Type::TIMESTAMPTZ], |i| {
                [param(format!("fresh-{}", n + i + 1)), param(OffsetDateTime::now_utc())]
            })]
        }
        "addSession" => vec![Case::new(op, Database, true, n, |_| {
            let mut session = session_data();
            session["id"] = json!(Uuid::new_v4());
            json!({"op": op, "session": session})
        })
        .raw(
            sql::ADD_SESSION,
            [Type::UUID, Type::JSONB, Type::FLOAT8],
            |_| [param(Uuid::new_v4()), json_text(&session_data()), param(3600.0f64)],
        )],
        "getSession" => {
            // Stored behind the storage's back, so none is in its cache: every call misses.
            let sessions = ids(
                sql,
                &format!(
                    "INSERT INTO sessions (id, data, expires_at)
                     SELECT gen_random_uuid(), '{}', now() + interval '1 hour'
                     FROM generate_series(1, {n}) RETURNING id",
                    session_data()
                ),
            )
            .await;
            // A session near the 64 KiB limit: a hit on it costs what a hit on a small one
            // does when the cache hands out its text without copying it.
            let large = ids(
                sql,
                "INSERT INTO sessions (id, data, expires_at)
                 VALUES (gen_random_uuid(), jsonb_build_object('padding', repeat('x', 60000)),
                         now() + interval '1 hour')
                 RETURNING id",
            )
            .await;
            vec![
                Case::new(
                    op,
                    Database,
                    true,
                    n,
                    |i| json!({"op": op, "sessionId": sessions[i]}),
                )
                .raw(sql::GET_SESSION, [Type::UUID], |i| [uuid(&sessions[i])]),
                Case::new(
                    "getSession (cache hit)",
                    CacheHit,
                    true,
                    n,
                    |_| json!({"op": op, "sessionId": sessions[0]}),
                ),
                Case::new(
                    "getSession (cache hit, 60 KB)",
                    CacheHit,
                    true,
                    n,
                    |_| json!({"op": op, "sessionId": large[0]}),
                ),
            ]
        }
        "getLaunchConfig" => {
            // A deployment per call: each key is asked once, so every call misses the cache.
            let (iss, client_id) = ("https://launch.example.com", "launch");
            sql.batch_execute(&format!(
                "WITH c AS (
                     INSERT INTO clients (name, iss, client_id, auth_url, token_url, jwks_url)
                     VALUES ('Launch', '{iss}', '{client_id}', 'https://launch.example.com/auth',
                             'https://launch.example.com/token', 'https://launch.example.com/jwks')
                     RETURNING id)
                 INSERT INTO deployments (client_id, deployment_id)
                 SELECT c.id, 'launch-' || g FROM c, generate_series(0, {n}) g"
            ))
            .await
            .expect("store deployments");
            let key = |deployment: String| json!({"op": op, "iss": iss, "clientId": client_id, "deploymentId": deployment});
            vec![
                Case::new(op, Database, true, n, |i| key(format!("launch-{}", i + 1))).raw(
                    sql::GET_LAUNCH_CONFIG,
                    [Type::VARCHAR, Type::VARCHAR, Type::VARCHAR, Type::VARCHAR],
                    |i| {
                        [param(iss), param(client_id), param(format!("launch-{}", i + 1)),
                         param(sql::DEFAULT_DEPLOYMENT)]
                    },
                ),
                Case::new("getLaunchConfig (cache hit)", CacheHit, true, n, |_| {
                    key("launch-0".to_owned())
                }),
            ]
        }
        "saveLaunchConfig" => vec![Case::new(
            "saveLaunchConfig (a no-op)",
            NoOp,
            false,
            n,
            |_| {
                json!({"op": op, "launchConfig": {
                "iss": "https://lms-1.example.com", "clientId": "client-1",
                "deploymentId": "deployment-1", "authUrl": "https://lms.example.com/auth",
                "tokenUrl": "https://lms.example.com/token", "jwksUrl": "https://lms.example.com/jwks"}})
            },
        )],
        "setRegistrationSession" => {
            let expires_at = epoch_ms_in(600);
            let session = json!({"expiresAt": expires_at, "openidConfiguration": {
                "issuer": "https://lms.example.com",
                "registrationEndpoint": "https://lms.example.com/register"},
                "registrationToken": "token"});
            vec![Case::new(op, Database, false, n, |_| {
                json!({"op": op, "sessionId": Uuid::new_v4(), "session": session})
            })
            .raw(
                sql::SET_REGISTRATION_SESSION,
                [Type::UUID, Type::JSONB, Type::TIMESTAMPTZ],
                |_| [param(Uuid::new_v4()), json_text(&session), param(epoch_ms(expires_at))],
            )]
        }
        "getRegistrationSession" | "deleteRegistrationSession" => {
            let sessions = ids(
                sql,
                &format!(
                    "INSERT INTO registration_sessions (id, data, expires_at)
                     SELECT gen_random_uuid(), '{{\"state\": \"pending\"}}', now() + interval '10 minutes'
                     FROM generate_series(1, 2 * {n}) RETURNING id"
                ),
            )
            .await;
            let (must_find, statement) = match op {
                "getRegistrationSession" => (true, sql::GET_REGISTRATION_SESSION),
                _ => (false, sql::DELETE_REGISTRATION_SESSION),
            };
            vec![Case::new(
                op,
                Database,
                must_find,
                n,
                |i| json!({"op": op, "sessionId": sessions[i]}),
            )
            .raw(statement, [Type::UUID], |i| [uuid(&sessions[n + i])])]
        }
        other => panic!("no benchmark case for op {other}: add one"),
    }
}

/// The `id` column of what `sql` returns, as text.
async fn ids(sql: &tokio_postgres::Client, query: &str) -> Vec<String> {
    let rows = sql.query(query, &[]).await.expect("fixture rows");
    rows.iter()
        .map(|row| row.get::<_, Uuid>("id").to_string())
        .collect()
}

fn uuid(id: &str) -> Param {
    param(Uuid::parse_str(id).expect("a fixture id is a UUID"))
}

/// An `expiresAt` argument as the storage reads it.
fn epoch_ms(ms: i64) -> OffsetDateTime {
    Timestamp::deserialize_value(&json!(ms))
        .expect("a time the storage accepts")
        .0
}

/// A JSON value as a `jsonb` parameter written out before the call, as the storage sends a
/// session: its text copied into the message, not serialized during the call.
fn json_text(value: &Value) -> Param {
    param(Json(
        RawValue::from_string(value.to_string()).expect("JSON text"),
    ))
}

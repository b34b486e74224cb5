//! The rows of the tables: for each operation, the payloads of its calls, on rows they can
//! act on, and what each call is expected to cost.

use serde_json::{json, Value};
use test_support::{client_json, epoch_ms_in, new_client, session_data};

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
        }
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
        "listClients" => vec![Case::new(op, Database, false, n, |_| json!({"op": op}))],
        "getClientById" => vec![Case::new(
            op,
            Database,
            true,
            n,
            |_| json!({"op": op, "clientId": client}),
        )],
        "addClient" => vec![Case::new(
            op,
            Database,
            true,
            n,
            |i| json!({"op": op, "client": client_json(&new_client("https://added.example.com", &format!("added-{i}")))}),
        )],
        "updateClient" => vec![Case::new(
            op,
            Database,
            false,
            n,
            |i| json!({"op": op, "clientId": fx.clients[1], "client": {"name": format!("Renamed {i}")}}),
        )],
        "deleteClient" => {
            // Each with a deployment, which goes too.
            let doomed = ids(
                sql,
                &format!(
                    "WITH c AS (
                         INSERT INTO clients (name, iss, client_id, auth_url, token_url, jwks_url)
                         SELECT 'Doomed', 'https://doomed.example.com', 'doomed-' || g, 'a', 't', 'j'
                         FROM generate_series(1, {n}) g RETURNING id),
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
            )]
        }
        "listDeployments" => vec![Case::new(
            op,
            Database,
            false,
            n,
            |_| json!({"op": op, "clientId": client}),
        )],
        "getDeployment" => vec![Case::new(
            op,
            Database,
            true,
            n,
            |_| json!({"op": op, "clientId": client, "deploymentId": deployment}),
        )],
        "addDeployment" => vec![Case::new(op, Database, true, n, |i| {
            json!({"op": op, "clientId": fx.clients[2],
                   "deployment": {"deploymentId": format!("added-{i}"), "name": "Added"}})
        })],
        "updateDeployment" => vec![Case::new(op, Database, false, n, |i| {
            json!({"op": op, "clientId": client, "deploymentId": fx.deployments[1],
                   "deployment": {"name": format!("Renamed {i}")}})
        })],
        "deleteDeployment" => {
            let owner = &fx.clients[3];
            let doomed = ids(
                sql,
                &format!(
                    "INSERT INTO deployments (client_id, deployment_id)
                     SELECT '{owner}', 'doomed-' || g FROM generate_series(1, {n}) g RETURNING id"
                ),
            )
            .await;
            vec![Case::new(
                op,
                Database,
                false,
                n,
                |i| json!({"op": op, "clientId": owner, "deploymentId": doomed[i]}),
            )]
        }
        "storeNonce" => {
            let expires_at = epoch_ms_in(600);
            vec![Case::new(
                op,
                Database,
                false,
                n,
                |i| json!({"op": op, "nonce": format!("stored-{i}"), "expiresAt": expires_at}),
            )]
        }
        "validateNonce" => {
            sql.batch_execute(&format!(
                "INSERT INTO nonces (nonce, expires_at)
                 SELECT 'fresh-' || g, now() + interval '10 minutes' FROM generate_series(1, {n}) g"
            ))
            .await
            .expect("store nonces");
            vec![Case::new(
                op,
                Database,
                true,
                n,
                |i| json!({"op": op, "nonce": format!("fresh-{}", i + 1)}),
            )]
        }
        "addSession" => vec![Case::new(op, Database, true, n, |_| {
            let mut session = session_data();
            session["id"] = json!(uuid::Uuid::new_v4());
            json!({"op": op, "session": session})
        })],
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
                ),
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
                Case::new(op, Database, true, n, |i| key(format!("launch-{}", i + 1))),
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
            vec![Case::new(op, Database, false, n, |_| {
                json!({"op": op, "sessionId": uuid::Uuid::new_v4(),
                       "session": {"expiresAt": expires_at, "openidConfiguration": {
                           "issuer": "https://lms.example.com",
                           "registrationEndpoint": "https://lms.example.com/register"},
                           "registrationToken": "token"}})
            })]
        }
        "getRegistrationSession" | "deleteRegistrationSession" => {
            let sessions = ids(
                sql,
                &format!(
                    "INSERT INTO registration_sessions (id, data, expires_at)
                     SELECT gen_random_uuid(), '{{\"state\": \"pending\"}}', now() + interval '10 minutes'
                     FROM generate_series(1, {n}) RETURNING id"
                ),
            )
            .await;
            let must_find = op == "getRegistrationSession";
            vec![Case::new(
                op,
                Database,
                must_find,
                n,
                |i| json!({"op": op, "sessionId": sessions[i]}),
            )]
        }
        other => panic!("no benchmark case for op {other}: add one"),
    }
}

/// The `id` column of what `sql` returns, as text.
async fn ids(sql: &tokio_postgres::Client, query: &str) -> Vec<String> {
    let rows = sql.query(query, &[]).await.expect("fixture rows");
    rows.iter()
        .map(|row| row.get::<_, uuid::Uuid>("id").to_string())
        .collect()
}

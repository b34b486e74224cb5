//! The README's tables say what the code does: each row is checked against the code, and each
//! cause the errors table lists is produced for real and gives the errorType it is listed under.

use lti_storage::access::{Access, Surface};
use lti_storage::request::{LaunchConfigRef, Request, OPS, ROUTES};
use lti_storage::route::Reply;
use lti_storage::ErrorKind;
use lti_storage_lambda::http::{route, status_of, NoRoute};
use serde_json::{json, Value};
use test_support::{
    add_client, call, client_json, fails, json_of, new_client, ok, payload_for, TestDb,
};

const README: &str = include_str!("../../../../README.md");

/// The cells of each row of the README's first table after `heading`.
fn table_after(heading: &str) -> Vec<Vec<&'static str>> {
    test_support::table_after(README, heading)
}

#[test]
fn the_operations_table_lists_every_op_in_order_with_its_alias() {
    let rows = table_after("### Direct invocation");
    let documented: Vec<&str> = rows.iter().map(|row| row[0]).collect();
    assert_eq!(documented, OPS);
    for row in rows {
        let alias = match access_of(row[0]) {
            Access::Runtime => "runtime",
            Access::Registration => "registration",
            Access::Admin => "admin",
        };
        assert_eq!(row.get(3).copied(), Some(alias), "{}", row[0]);
    }
}

/// The access of `op`, from a payload every op accepts.
fn access_of(op: &str) -> Access {
    Request::from_payload(payload_for(op))
        .expect("a payload every op accepts")
        .access()
}

#[test]
fn the_http_table_is_the_route_table() {
    let rows = table_after("### HTTP (function URL)");
    let mut documented: Vec<&str> = rows.iter().map(|row| row[2]).collect();
    documented.sort_unstable();
    let mut ops = OPS.to_vec();
    ops.sort_unstable();
    assert_eq!(documented, ops, "one row per op");
    for row in rows {
        let [method, path, op, success] = row[..] else {
            panic!("an HTTP table row has 4 cells: {row:?}");
        };
        let (_, route) = ROUTES.iter().find(|(name, _)| *name == op).unwrap();
        // The path cell may add a note (" (body ...)") or the query ("?iss=...").
        let path = path.split([' ', '?']).next().unwrap_or_default();
        assert_eq!((method, path), (route.method, route.path), "{op}");
        let status = match route.reply {
            Reply::Found(_) | Reply::Ok | Reply::Valid => "200",
            Reply::CreatedId | Reply::Created => "201",
            Reply::NoContent => "204",
        };
        assert!(
            success.starts_with(status),
            "{op}: {success} is not {status}"
        );
    }
}

#[test]
fn the_errors_table_names_every_error_type_and_its_http_status() {
    let documented: Vec<&str> = table_after("### Errors").iter().map(|row| row[0]).collect();
    let kinds: Vec<&str> = ErrorKind::ALL.iter().map(|kind| kind.as_str()).collect();
    assert_eq!(documented, kinds);
    let statuses: Vec<String> = ErrorKind::ALL
        .iter()
        .map(|kind| format!("{} {kind}", status_of(*kind)))
        .collect();
    let line = format!("Error statuses: {};", statuses.join(", "));
    assert!(README.contains(&line), "the README says {line:?}");
}

/// The errors table's row for `kind` lists `cause`.
fn listed(kind: ErrorKind, cause: &str) {
    let rows = table_after("### Errors");
    let row = rows.iter().find(|row| row[0] == kind.as_str()).unwrap();
    assert!(
        row[1].contains(cause),
        "{kind} lists {cause:?}: {:?}",
        row[1]
    );
}

#[tokio::test]
async fn every_cause_in_the_errors_table_gives_its_error_type() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    let platform = new_client("https://canvas.example.edu", "c1");
    let client = add_client(&storage, &platform).await;
    let unknown = uuid::Uuid::new_v4().to_string();
    use ErrorKind::*;
    let causes = [
        (InvalidInput, "unknown op", json!({"op": "getSesion"})),
        (
            InvalidInput,
            "missing or mistyped field",
            json!({"op": "validateNonce"}),
        ),
        (
            InvalidInput,
            "missing or mistyped field",
            json!({"op": "getSession", "sessionId": 42}),
        ),
        (
            InvalidInput,
            "not a UUID in a write",
            json!({"op": "deleteClient", "clientId": "x"}),
        ),
        (
            InvalidInput,
            "text over 255 characters",
            json!({"op": "storeNonce",
            "nonce": "n".repeat(256), "expiresAt": 4102444800000u64}),
        ),
        (
            InvalidInput,
            "a NUL character",
            json!({"op": "storeNonce",
            "nonce": "a\u{0}b", "expiresAt": 4102444800000u64}),
        ),
        (
            InvalidInput,
            "a bad date",
            json!({"op": "storeNonce",
            "nonce": "n", "expiresAt": "tomorrow"}),
        ),
        (
            NotFound,
            "the client or deployment to update",
            json!({"op": "updateClient",
            "clientId": unknown, "client": {"name": "x"}}),
        ),
        (
            NotFound,
            "to add a deployment to",
            json!({"op": "addDeployment",
            "clientId": unknown, "deployment": {"deploymentId": "d"}}),
        ),
        (
            Conflict,
            "same (iss, clientId)",
            json!({"op": "addClient", "client": client_json(&platform)}),
        ),
        (
            Conflict,
            "a nonce stored twice",
            json!({"op": "storeNonce",
            "nonce": "once", "expiresAt": 4102444800000u64}),
        ),
    ];
    ok(
        &storage,
        json!({"op": "storeNonce", "nonce": "once", "expiresAt": 4102444800000u64}),
    )
    .await;
    for (kind, cause, payload) in causes {
        listed(kind, cause);
        let err = fails(&storage, payload.clone()).await;
        assert_eq!(err.kind, kind, "{cause}: {payload} gave {err:?}");
    }
    ok(
        &storage,
        json!({"op": "addDeployment", "clientId": client,
        "deployment": {"deploymentId": "d1"}}),
    )
    .await;
    listed(Conflict, "same deploymentId on a client");
    let again = json!({"op": "addDeployment", "clientId": client,
        "deployment": {"deploymentId": "d1"}});
    assert_eq!(fails(&storage, again).await.kind, Conflict);

    // "a lookup by such an id answers null"
    for op in ["getSession", "getRegistrationSession"] {
        assert_eq!(
            call(&storage, json!({"op": op, "sessionId": "x"})).await,
            Ok(Value::Null)
        );
    }
    let lookup = json!({"op": "getClientById", "clientId": "x"});
    assert_eq!(call(&storage, lookup).await, Ok(Value::Null));

    listed(Forbidden, "an admin op through `runtime`");
    let admin_op = Request::from_payload(json!({"op": "listClients"})).unwrap();
    let err = storage
        .handle_on(Surface::Runtime, admin_op)
        .await
        .unwrap_err();
    assert_eq!(err.kind, Forbidden);

    // Unavailable: the database cannot be reached.
    listed(Unavailable, "could not be reached");
    let unreachable = "postgres://nobody@127.0.0.1:1/none?connect_timeout=1";
    let config = lti_storage_lambda::Config::from_lookup(|name| {
        (name == "DATABASE_URL").then(|| unreachable.to_string())
    })
    .unwrap();
    let offline = lti_storage_lambda::storage(&config).unwrap();
    assert_eq!(
        fails(&offline, json!({"op": "listClients"})).await.kind,
        Unavailable
    );

    // Internal: migrations not applied.
    listed(Internal, "migrations not applied");
    let bare = TestDb::empty().await.storage();
    assert_eq!(
        fails(&bare, json!({"op": "listClients"})).await.kind,
        Internal
    );
}

/// What the sentences under the HTTP table say.
#[test]
fn http_errors_and_queries_are_what_the_readme_says() {
    let no_route = |method: &str, path: &str| match route(method, path, &[], Value::Null) {
        Err(NoRoute(response)) => (
            response.status,
            json_of(&response.body.unwrap())["errorType"].clone(),
        ),
        Ok(_) => panic!("{method} {path} has a route"),
    };
    assert!(README.contains("an unknown path is 404 NotFound"));
    assert_eq!(no_route("GET", "/nowhere"), (404, json!("NotFound")));
    assert!(README.contains("a known path with another method 405 InvalidInput"));
    assert_eq!(no_route("PUT", "/clients"), (405, json!("InvalidInput")));

    let query = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    assert!(README.contains("Query\nvalues are taken whole (commas included)"));
    let whole = query(&[("iss", "a,b"), ("clientId", "c"), ("deploymentId", "d")]);
    let (request, _) = route("GET", "/launch-config", &whole, Value::Null)
        .unwrap()
        .unwrap();
    let expected = LaunchConfigRef {
        iss: "a,b".into(),
        client_id: "c".into(),
        deployment_id: "d".into(),
    };
    assert_eq!(request, Request::GetLaunchConfig(expected));
    assert!(README.contains("a query parameter given twice is InvalidInput"));
    let twice = query(&[
        ("iss", "a"),
        ("iss", "b"),
        ("clientId", "c"),
        ("deploymentId", "d"),
    ]);
    let err = route("GET", "/launch-config", &twice, Value::Null)
        .unwrap()
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidInput);
}

/// Every variable the configuration reads, whichever way it logs in to the database, is in
/// the README's table, and each documented default is the one the code applies.
#[test]
fn the_configuration_table_is_every_variable_with_its_default() {
    let rows = table_after("## Configuration");
    let documented: Vec<&str> = rows.iter().map(|row| row[0]).collect();
    let url = "postgres://u@127.0.0.1:5432/db";
    let aws = [
        ("AWS_REGION", "eu-west-1"),
        ("AWS_ACCESS_KEY_ID", "ASIAEXAMPLE"),
        ("AWS_SECRET_ACCESS_KEY", "secret"),
    ];
    let secret = [&aws[..], &[("DATABASE_SECRET_ARN", "lti/db")]].concat();
    let iam_url = "postgres://u@db.example.com/db?sslmode=verify-full";
    let iam = [
        &aws[..],
        &[("DATABASE_IAM_AUTH", "true"), ("DATABASE_URL", iam_url)],
    ]
    .concat();
    let read = std::cell::RefCell::new(Vec::new());
    for vars in [&[("DATABASE_URL", url)][..], &secret, &iam] {
        lti_storage_lambda::Config::from_lookup(|name| {
            read.borrow_mut().push(name.to_string());
            vars.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.to_string())
        })
        .unwrap();
    }
    for name in read.borrow().iter() {
        assert!(
            documented.contains(&name.as_str()),
            "{name} is not in the table"
        );
    }
    let config_with = |var: &str, value: &str| {
        lti_storage_lambda::Config::from_lookup(|name| match name {
            "DATABASE_URL" => Some(url.to_string()),
            _ if name == var => Some(value.to_string()),
            _ => None,
        })
    };
    let defaults = format!("{:?}", config_with("", "").unwrap());
    for row in &rows {
        let (variable, default) = (row[0], row[1]);
        assert!(
            read.borrow().iter().any(|name| name == variable),
            "{variable} is never read"
        );
        // "–" (nothing) or "(required ...)", "(set by Lambda)": no default to check.
        if default == "–" || default.starts_with('(') {
            continue;
        }
        let documented = config_with(variable, default).unwrap();
        assert_eq!(format!("{documented:?}"), defaults, "{variable}={default}");
        let err = config_with(variable, "not a value").unwrap_err();
        assert_eq!(err.variable, variable);
    }
}

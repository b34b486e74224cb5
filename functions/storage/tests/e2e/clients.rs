//! Clients, deployments and launch configs, through direct invocations and function-URL
//! events, in the order a tool's life goes; it deletes every client it added.

use serde_json::{json, Value};

use crate::e2e;
use crate::events::{Events, CLIENT_PLACEHOLDER, DEPLOYMENT_PLACEHOLDER};
use crate::lambda::{http_reply, uuid_string};

#[test]
fn clients_deployments_and_launch_configs_from_add_to_delete() {
    let e2e = e2e();
    let lambda = &e2e.lambda;
    let mut events = Events::new();
    let listed = lambda.ok("storage", "list-clients", &events.raw("list-clients.json"));
    assert_eq!(listed, json!([]));

    // Before addClient the placeholder id names no client.
    let missing = lambda.ok(
        "storage",
        "get-client-by-id with the placeholder",
        &events.raw("get-client-by-id.json"),
    );
    assert_eq!(missing, Value::Null);

    let add_client = events.raw("add-client.json");
    let client = uuid_string(
        "add-client",
        &lambda.ok("storage", "add-client", &add_client),
    );
    events.substitute(CLIENT_PLACEHOLDER, &client);
    lambda.fails("storage", "add-client twice", &add_client, "Conflict");

    let found = lambda.ok(
        "storage",
        "get-client-by-id",
        &events.get("get-client-by-id.json"),
    );
    let mut expected = add_client["client"].clone();
    expected["id"] = json!(client);
    expected["deployments"] = json!([]);
    assert_eq!(found, expected);

    let update = events.get("update-client.json");
    assert_eq!(lambda.ok("storage", "update-client", &update), Value::Null);
    let found = lambda.ok(
        "storage",
        "get-client-by-id after update",
        &events.get("get-client-by-id.json"),
    );
    assert_eq!(found["name"], update["client"]["name"]);
    assert_eq!(found["clientId"], add_client["client"]["clientId"]);

    let add_deployment = events.get("add-deployment.json");
    let deployment = uuid_string(
        "add-deployment",
        &lambda.ok("storage", "add-deployment", &add_deployment),
    );
    events.substitute(DEPLOYMENT_PLACEHOLDER, &deployment);
    lambda.fails(
        "storage",
        "add-deployment twice",
        &add_deployment,
        "Conflict",
    );

    let mut expected = add_deployment["deployment"].clone();
    expected["id"] = json!(deployment);
    expected["clientId"] = json!(client);
    let listed = lambda.ok(
        "storage",
        "list-deployments",
        &events.get("list-deployments.json"),
    );
    assert_eq!(listed, json!([expected.clone()]));
    let found = lambda.ok(
        "storage",
        "get-deployment",
        &events.get("get-deployment.json"),
    );
    assert_eq!(found, expected);

    let update = events.get("update-deployment.json");
    assert_eq!(
        lambda.ok("storage", "update-deployment", &update),
        Value::Null
    );
    let found = lambda.ok(
        "storage",
        "get-deployment after update",
        &events.get("get-deployment.json"),
    );
    assert_eq!(found["description"], update["deployment"]["description"]);
    assert_eq!(found["deploymentId"], "default");

    // add-client, add-deployment ("default"), get-launch-config: the deployment the launch
    // names has no row of its own, so it resolves through `default`.
    let launch = events.raw("get-launch-config.json");
    let config = lambda.ok("storage", "get-launch-config", &launch);
    let registered = &add_client["client"];
    assert_eq!(
        config,
        json!({
            "iss": launch["iss"],
            "clientId": launch["clientId"],
            "deploymentId": "default",
            "authUrl": registered["authUrl"],
            "tokenUrl": registered["tokenUrl"],
            "jwksUrl": registered["jwksUrl"],
        })
    );
    assert_eq!(config["iss"], "https://canvas.instructure.com");
    assert_eq!(
        config["authUrl"],
        "https://sso.canvaslms.com/api/lti/authorize_redirect"
    );

    let saved = lambda.ok(
        "storage",
        "save-launch-config",
        &events.raw("save-launch-config.json"),
    );
    assert_eq!(saved, Value::Null);

    // --- Function URL events ---------------------------------------------------------------
    let response = lambda.ok(
        "storage",
        "http-list-clients",
        &events.raw("http-list-clients.json"),
    );
    let (status, body) = http_reply("http-list-clients", &response);
    assert_eq!(status, 200, "{response}");
    assert_eq!(body.as_array().map(Vec::len), Some(1), "{body}");
    assert_eq!(body[0]["id"], client.as_str());

    let add_event = events.raw("http-add-client.json");
    let response = lambda.ok("storage", "http-add-client", &add_event);
    let (status, body) = http_reply("http-add-client", &response);
    assert_eq!(status, 201, "{response}");
    let second_client = uuid_string("http-add-client id", &body["id"]);
    let response = lambda.ok("storage", "http-add-client twice", &add_event);
    let (status, body) = http_reply("http-add-client twice", &response);
    assert_eq!(status, 409, "{response}");
    assert_eq!(body["errorType"], "Conflict", "{body}");
    let found = lambda.ok(
        "storage",
        "getClientById of the HTTP-added client",
        &json!({"op": "getClientById", "clientId": second_client}),
    );
    let sent: Value =
        serde_json::from_str(add_event["body"].as_str().expect("a body")).expect("JSON body");
    assert_eq!(found["iss"], sent["iss"]);
    assert_eq!(found["clientId"], sent["clientId"]);

    let response = lambda.ok(
        "storage",
        "http-get-launch-config",
        &events.raw("http-get-launch-config.json"),
    );
    let (status, body) = http_reply("http-get-launch-config", &response);
    assert_eq!(status, 200, "{response}");
    assert_eq!(body, config, "the same config as the direct invocation");

    // --- Deletes -----------------------------------------------------------------------------
    let delete = events.get("delete-deployment.json");
    assert_eq!(
        lambda.ok("storage", "delete-deployment", &delete),
        Value::Null
    );
    assert_eq!(
        lambda.ok("storage", "delete-deployment again", &delete),
        Value::Null,
        "deleting what does not exist succeeds"
    );
    assert_eq!(
        lambda.ok(
            "storage",
            "get-deployment after delete",
            &events.get("get-deployment.json")
        ),
        Value::Null
    );
    assert_eq!(
        lambda.ok("storage", "get-launch-config without deployments", &launch),
        Value::Null
    );
    lambda.fails(
        "storage",
        "update-deployment after delete",
        &events.get("update-deployment.json"),
        "NotFound",
    );
    assert_eq!(
        lambda.ok(
            "storage",
            "delete-client",
            &events.get("delete-client.json")
        ),
        Value::Null
    );
    assert_eq!(
        lambda.ok(
            "storage",
            "get-client-by-id after delete",
            &events.get("get-client-by-id.json")
        ),
        Value::Null
    );

    // The client the HTTP event added goes too, so the next test finds no client.
    let gone = lambda.ok(
        "storage",
        "deleteClient of the HTTP-added client",
        &json!({"op": "deleteClient", "clientId": second_client}),
    );
    assert_eq!(gone, Value::Null);
    let listed = lambda.ok(
        "storage",
        "list-clients at the end",
        &events.raw("list-clients.json"),
    );
    assert_eq!(listed, json!([]));
}

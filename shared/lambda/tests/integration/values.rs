//! Values are data, never SQL, and come back exactly as they went in: quotes, backslashes,
//! SQL fragments, placeholders, emoji, CJK, combining characters, control characters,
//! whitespace, in every text a client, a deployment or a nonce holds. NUL, which PostgreSQL
//! text and jsonb cannot hold, is refused with a message naming the field, and nothing is
//! written. (Session JSON: `session_values`.)

use lti_storage::model::{Client, LaunchConfig, NewClient};
use lti_storage::{Error, ErrorKind};
use serde_json::{json, Value};
use test_support::{
    client_by_id, client_json, fails, far_future, json_of, listed_clients, ok, TestDb,
};

/// Strings a careless storage would break, interpret or normalise.
pub(crate) const NASTY: &[&str] = &[
    "O'Reilly's \"quoted\" back\\slash \\\\ \\' \\\"",
    "'; DROP TABLE clients; --",
    "\"; DROP TABLE nonces; -- ') OR ('1'='1",
    "$1 $2::text $$dollar$$ $tag$ quoted $tag$ E'\\x41'",
    "100% %s %d %% %n %1$s {} {{}} {0}",
    "emoji 🎓📚👩🏽‍🏫🏳️‍🌈 and CJK 東京大学 학교 ありがとう",
    "e\u{301} is not \u{e9}; a\u{308}\u{332} Å Å",
    "  leading and trailing spaces\t\r\n",
    "\u{feff}BOM \u{200b}zero-width \u{2028}line-sep \u{202e}RTL-override",
    "control \u{1}\u{7}\u{8}\u{1b}[31m \u{7f} \u{85} \u{9f}",
    "\\x00 \\u0000 \\0 (escaped text, no NUL)",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 \u{10ffff} \u{fffd} \u{e000}",
];

/// A registration whose every field holds `text` (the clientId also `i`, to keep it unique).
fn client_of(i: usize, text: &str) -> NewClient {
    NewClient {
        name: text.to_string(),
        iss: format!("https://{text}"),
        client_id: format!("{text}#{i}"),
        auth_url: format!("https://lms.example/auth?q={text}"),
        token_url: format!("https://lms.example/token/{text}"),
        jwks_url: text.to_string(),
    }
}

fn assert_same_client(got: &Client, want: &NewClient) {
    // String equality is byte equality; the bytes are shown on failure.
    for (field, got, want) in [
        ("name", &got.name, &want.name),
        ("iss", &got.iss, &want.iss),
        ("clientId", &got.client_id, &want.client_id),
        ("authUrl", &got.auth_url, &want.auth_url),
        ("tokenUrl", &got.token_url, &want.token_url),
        ("jwksUrl", &got.jwks_url, &want.jwks_url),
    ] {
        assert_eq!(
            got.as_bytes(),
            want.as_bytes(),
            "{field} came back altered: {got:?} instead of {want:?}"
        );
    }
}

#[tokio::test]
async fn client_and_deployment_text_round_trips_byte_for_byte() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    let mut added = Vec::new();
    for (i, text) in NASTY.iter().enumerate() {
        let client = client_of(i, text);
        let id = ok(
            &storage,
            json!({"op": "addClient", "client": client_json(&client)}),
        )
        .await;
        let id = id.as_str().unwrap().to_string();
        ok(
            &storage,
            json!({"op": "addDeployment", "clientId": id,
                   "deployment": {"deploymentId": text, "name": text, "description": text}}),
        )
        .await;
        added.push((id, client));
    }
    // Nothing was executed: every table is there, with every row.
    assert_eq!(
        db.count("SELECT count(*) FROM clients").await,
        NASTY.len() as i64
    );
    assert_eq!(
        db.count("SELECT count(*) FROM deployments").await,
        NASTY.len() as i64
    );
    assert_eq!(db.count("SELECT count(*) FROM nonces").await, 0);

    // A fresh instance: nothing from a cache.
    let reader = db.storage();
    let listed = listed_clients(&reader).await.unwrap();
    assert_eq!(listed.len(), NASTY.len());
    for ((id, want), text) in added.iter().zip(NASTY) {
        let got: Client = serde_json::from_value(
            ok(&reader, json!({"op": "getClientById", "clientId": id})).await,
        )
        .unwrap();
        assert_same_client(&got, want);
        let deployments = got.deployments.as_ref().unwrap();
        assert_eq!(deployments.len(), 1);
        assert_eq!(deployments[0].deployment_id.as_bytes(), text.as_bytes());
        assert_eq!(deployments[0].name.as_deref(), Some(*text));
        assert_eq!(deployments[0].description.as_deref(), Some(*text));

        let in_list = listed
            .iter()
            .find(|client| client.id.to_string() == *id)
            .expect("listed");
        assert_same_client(in_list, want);

        let deployment = ok(&reader, json!({"op": "listDeployments", "clientId": id})).await;
        assert_eq!(deployment[0]["deploymentId"], json!(text));

        let launch: LaunchConfig = serde_json::from_value(
            ok(
                &reader,
                json!({"op": "getLaunchConfig", "iss": want.iss, "clientId": want.client_id,
                       "deploymentId": text}),
            )
            .await,
        )
        .unwrap();
        assert_eq!(launch.iss.as_bytes(), want.iss.as_bytes());
        assert_eq!(launch.client_id.as_bytes(), want.client_id.as_bytes());
        assert_eq!(launch.deployment_id.as_bytes(), text.as_bytes());
        assert_eq!(launch.auth_url.as_bytes(), want.auth_url.as_bytes());
        assert_eq!(launch.token_url.as_bytes(), want.token_url.as_bytes());
        assert_eq!(launch.jwks_url.as_bytes(), want.jwks_url.as_bytes());
    }

    // What a user sees with psql: the very bytes.
    let sql = db.sql().await;
    for (id, want) in &added {
        let row = sql
            .query_one(
                "SELECT convert_to(name, 'UTF8'), convert_to(client_id, 'UTF8'),
                        char_length(name) FROM clients WHERE id = $1::text::uuid",
                &[id],
            )
            .await
            .unwrap();
        let name: Vec<u8> = row.get(0);
        let client_id: Vec<u8> = row.get(1);
        let chars: i32 = row.get(2);
        assert_eq!(name, want.name.as_bytes());
        assert_eq!(client_id, want.client_id.as_bytes());
        assert_eq!(chars as usize, want.name.chars().count());
    }
}

#[tokio::test]
async fn updates_keep_text_byte_for_byte() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    let id = storage
        .add_client(None, &client_of(0, "plain"))
        .await
        .unwrap()
        .to_string();
    let deployment = ok(
        &storage,
        json!({"op": "addDeployment", "clientId": id, "deployment": {"deploymentId": "1"}}),
    )
    .await;
    for (i, text) in NASTY.iter().enumerate() {
        let want = client_of(i, text);
        ok(
            &storage,
            json!({"op": "updateClient", "clientId": id, "client": client_json(&want)}),
        )
        .await;
        ok(
            &storage,
            json!({"op": "updateDeployment", "clientId": id, "deploymentId": deployment,
                   "deployment": {"deploymentId": text, "name": text, "description": text}}),
        )
        .await;
        let got = client_by_id(&db.storage(), &id).await.unwrap().unwrap();
        assert_same_client(&got, &want);
        let deployments = got.deployments.unwrap();
        assert_eq!(deployments[0].deployment_id, *text);
        assert_eq!(deployments[0].name.as_deref(), Some(*text));
        assert_eq!(deployments[0].description.as_deref(), Some(*text));
    }
}

#[tokio::test]
async fn unicode_is_never_normalised() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    let iss = "https://lms.example";
    // "é" decomposed and precomposed: two different registrations.
    let decomposed = "e\u{301}";
    let precomposed = "\u{e9}";
    let mut ids = Vec::new();
    for client_id in [decomposed, precomposed] {
        let client = NewClient {
            client_id: client_id.into(),
            iss: iss.into(),
            ..client_of(0, client_id)
        };
        let id = storage.add_client(None, &client).await.unwrap().to_string();
        ok(
            &storage,
            json!({"op": "addDeployment", "clientId": id, "deployment": {"deploymentId": client_id}}),
        )
        .await;
        ids.push(id);
    }
    for (client_id, id) in [decomposed, precomposed].iter().zip(&ids) {
        let launch = storage
            .get_launch_config(iss, client_id, client_id)
            .await
            .unwrap()
            .expect("each finds its own");
        assert_eq!(launch.client_id, *client_id);
        let client = client_by_id(&storage, id).await.unwrap().unwrap();
        assert_eq!(client.client_id, *client_id);
    }
    assert_eq!(
        storage
            .get_launch_config(iss, decomposed, precomposed)
            .await
            .unwrap(),
        None
    );

    let far = far_future();
    storage.store_nonce(decomposed, far).await.unwrap();
    assert!(!storage.validate_nonce(precomposed).await.unwrap());
    assert!(storage.validate_nonce(decomposed).await.unwrap());
}

#[tokio::test]
async fn length_limits_count_characters_not_bytes() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    // 255 four-byte characters: 1020 bytes, within varchar(255).
    let emoji = "🎓".repeat(255);
    // 2048 characters (the URL limit), more than 2048 bytes.
    let long_url: String = format!("https://lms.example/{}", "東🎓x\"'\\".repeat(400))
        .chars()
        .take(2048)
        .collect();
    let client = NewClient {
        name: emoji.clone(),
        auth_url: long_url.clone(),
        ..client_of(0, "limits")
    };
    let id = storage.add_client(None, &client).await.unwrap().to_string();
    let got = client_by_id(&db.storage(), &id).await.unwrap().unwrap();
    assert_eq!(got.name, emoji);
    assert_eq!(got.auth_url, long_url);

    let far = far_future();
    storage.store_nonce(&emoji, far).await.unwrap();
    assert!(storage.validate_nonce(&emoji).await.unwrap());

    // One character more is refused, never truncated: also when it is a combining mark.
    for (field, value) in [
        ("client.name", "🎓".repeat(256)),
        ("client.name", "e\u{301}".repeat(128)),
        ("client.iss", "東".repeat(256)),
        ("client.authUrl", format!("{long_url}🎓")),
    ] {
        let characters = value.chars().count();
        let mut fields = client_json(&client_of(1, "over"));
        fields[field.trim_start_matches("client.")] = json!(value);
        let err = fails(&storage, json!({"op": "addClient", "client": fields})).await;
        assert_eq!(err.kind, ErrorKind::InvalidInput, "{err}");
        assert!(err.message.contains(field), "{err}");
        let length = format!("is {characters} characters long");
        assert!(err.message.contains(&length), "{err}");
    }
    let err = storage
        .store_nonce(&"🎓".repeat(256), far)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidInput);
    assert_eq!(db.count("SELECT count(*) FROM clients").await, 1);
    assert_eq!(db.count("SELECT count(*) FROM nonces").await, 1);
}

#[tokio::test]
async fn nonces_round_trip_byte_for_byte() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    for text in NASTY {
        ok(
            &storage,
            json!({"op": "storeNonce", "nonce": text, "expiresAt": "2099-01-01T00:00:00.000Z"}),
        )
        .await;
    }
    assert_eq!(
        db.count("SELECT count(*) FROM nonces").await,
        NASTY.len() as i64
    );
    let stored: Vec<Vec<u8>> = db
        .sql()
        .await
        .query("SELECT convert_to(nonce, 'UTF8') FROM nonces", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    for text in NASTY {
        assert!(
            stored.iter().any(|nonce| nonce == text.as_bytes()),
            "{text:?} not stored as it is"
        );
        let valid = ok(&storage, json!({"op": "validateNonce", "nonce": text})).await;
        assert_eq!(valid, json!(true), "{text:?}");
        let again = ok(&storage, json!({"op": "validateNonce", "nonce": text})).await;
        assert_eq!(again, json!(false), "{text:?}");
    }
}

fn assert_nul_refused(err: &Error, field: &str) {
    assert_eq!(err.kind, ErrorKind::InvalidInput, "{err}");
    assert!(
        err.message.contains(field) && err.message.contains("NUL"),
        "the message must name {field} and the NUL character: {err}"
    );
}

/// A payload with a NUL, parsed from JSON text as a caller sends it.
fn with_nul(json_text: &str) -> Value {
    assert!(json_text.contains("\\u0000"));
    serde_json::from_str(json_text).unwrap()
}

#[tokio::test]
async fn nul_in_client_and_deployment_fields_is_refused_and_nothing_written() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    let good = client_json(&client_of(0, "good"));
    for field in ["name", "iss", "clientId", "authUrl", "tokenUrl", "jwksUrl"] {
        let mut client = good.clone();
        client[field] = with_nul(r#""before\u0000after""#);
        let err = fails(&storage, json!({"op": "addClient", "client": client})).await;
        assert_nul_refused(&err, &format!("client.{field}"));
    }
    assert_eq!(db.count("SELECT count(*) FROM clients").await, 0);

    let id = ok(&storage, json!({"op": "addClient", "client": good})).await;
    for field in ["name", "iss", "clientId", "authUrl", "tokenUrl", "jwksUrl"] {
        let err = fails(
            &storage,
            json!({"op": "updateClient", "clientId": id,
                   "client": {field: with_nul(r#""\u0000""#)}}),
        )
        .await;
        assert_nul_refused(&err, &format!("client.{field}"));
    }
    let unchanged = client_by_id(&storage, id.as_str().unwrap()).await.unwrap();
    assert_same_client(&unchanged.unwrap(), &client_of(0, "good"));

    for field in ["deploymentId", "name", "description"] {
        let mut deployment = json!({"deploymentId": "1", "name": "n", "description": "d"});
        deployment[field] = with_nul(r#""x\u0000""#);
        let err = fails(
            &storage,
            json!({"op": "addDeployment", "clientId": id, "deployment": deployment}),
        )
        .await;
        assert_nul_refused(&err, &format!("deployment.{field}"));
    }
    assert_eq!(db.count("SELECT count(*) FROM deployments").await, 0);
    let deployment = ok(
        &storage,
        json!({"op": "addDeployment", "clientId": id, "deployment": {"deploymentId": "1"}}),
    )
    .await;
    for field in ["deploymentId", "name", "description"] {
        let err = fails(
            &storage,
            json!({"op": "updateDeployment", "clientId": id, "deploymentId": deployment,
                   "deployment": {field: with_nul(r#""\u0000""#)}}),
        )
        .await;
        assert_nul_refused(&err, &format!("deployment.{field}"));
    }
    let listed = json_of(
        &storage
            .list_deployments(id.as_str().unwrap())
            .await
            .unwrap(),
    );
    assert_eq!(listed.as_array().map(Vec::len), Some(1));
    assert_eq!(listed[0]["deploymentId"], "1");
    assert_eq!(listed[0].get("name"), None);

    // A lookup with a NUL cannot match anything: null, not an error.
    let launch = ok(
        &storage,
        with_nul(
            r#"{"op":"getLaunchConfig","iss":"https://good","clientId":"good#0","deploymentId":"1\u0000"}"#,
        ),
    )
    .await;
    assert_eq!(launch, Value::Null);
}

#[tokio::test]
async fn nul_in_a_nonce_is_refused_and_nothing_written() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    let err = fails(
        &storage,
        with_nul(
            r#"{"op":"storeNonce","nonce":"abc\u0000def","expiresAt":"2099-01-01T00:00:00Z"}"#,
        ),
    )
    .await;
    assert_nul_refused(&err, "nonce");
    assert_eq!(db.count("SELECT count(*) FROM nonces").await, 0);
    let valid = ok(
        &storage,
        with_nul(r#"{"op":"validateNonce","nonce":"abc\u0000def"}"#),
    )
    .await;
    assert_eq!(valid, json!(false));
}

#[tokio::test]
async fn nul_anywhere_in_session_json_is_refused_and_nothing_written() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    let id = uuid::Uuid::new_v4().to_string();
    let sessions = [
        r#"{"user":"a\u0000b"}"#,
        r#"{"a\u0000b":1}"#,
        r#"{"nested":{"deeper":[1,{"x":"\u0000"}]}}"#,
        r#"{"nested":[{"\u0000":null}]}"#,
    ];
    for data in sessions {
        let mut session = with_nul(data);
        session["id"] = json!(id);
        let err = fails(&storage, json!({"op": "addSession", "session": session})).await;
        assert_nul_refused(&err, "session");

        let mut registration = with_nul(data);
        registration["expiresAt"] = json!("2099-01-01T00:00:00Z");
        let err = fails(
            &storage,
            json!({"op": "setRegistrationSession", "sessionId": id, "session": registration}),
        )
        .await;
        assert_nul_refused(&err, "session");
    }
    assert_eq!(db.count("SELECT count(*) FROM sessions").await, 0);
    assert_eq!(
        db.count("SELECT count(*) FROM registration_sessions").await,
        0
    );
    assert!(storage.get_session(&id).await.unwrap().is_none());
}

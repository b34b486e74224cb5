use serde_json::json;

use super::event::Action;
use super::*;

const FUNCTION: &str = "arn:aws:lambda:us-east-1:123456789012:function:stack-cleanup";
const STACK: &str = "arn:aws:cloudformation:us-east-1:123456789012:stack/stack/1f2e";
const TARGET: &str = "/arn%3Aaws%3Acloudformation%3Aus-east-1%3A123456789012%3Astack/stack/1f2e%7CMigrations%7Cabc?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=0f0f";

#[test]
fn cloudformations_response_urls_are_accepted_in_every_form_and_partition() {
    for (function, stack, host) in [
        (
            FUNCTION,
            STACK,
            "cloudformation-custom-resource-response-useast1.s3.amazonaws.com",
        ),
        (
            FUNCTION,
            STACK,
            "cloudformation-custom-resource-response-useast1.s3.us-east-1.amazonaws.com",
        ),
        (
            "arn:aws:lambda:eu-west-1:123456789012:function:stack-cleanup:live",
            "arn:aws:cloudformation:eu-west-1:123456789012:stack/s/1",
            "cloudformation-custom-resource-response-euwest1.s3-eu-west-1.amazonaws.com",
        ),
        (
            "arn:aws:lambda:eu-central-1:123456789012:function:f",
            "arn:aws:cloudformation:eu-central-1:123456789012:stack/s/1",
            "cloudformation-custom-resource-response-eucentral1.s3.eu-central-1.amazonaws.com",
        ),
        (
            "arn:aws-cn:lambda:cn-north-1:123456789012:function:f",
            "arn:aws-cn:cloudformation:cn-north-1:123456789012:stack/s/1",
            "cloudformation-custom-resource-response-cnnorth1.s3.cn-north-1.amazonaws.com.cn",
        ),
        (
            "arn:aws-us-gov:lambda:us-gov-west-1:123456789012:function:f",
            "arn:aws-us-gov:cloudformation:us-gov-west-1:123456789012:stack/s/1",
            "cloudformation-custom-resource-response-usgovwest1.s3-us-gov-west-1.amazonaws.com",
        ),
    ] {
        for authority in [host.to_owned(), format!("{host}:443")] {
            let url = format!("https://{authority}{TARGET}");
            let checked = check_origin(&url, stack, function)
                .unwrap_or_else(|problem| panic!("{url}: {problem}"));
            assert_eq!(checked.host, host);
            assert_eq!(checked.target, TARGET, "path and query as given");
        }
    }
    let bare = |url: &str| check_origin(url, STACK, FUNCTION).map(|url| url.target);
    let host = "https://cloudformation-custom-resource-response-useast1.s3.amazonaws.com";
    assert_eq!(bare(&format!("{host}?q=1")), Ok("/?q=1".to_owned()));
    assert_eq!(bare(host), Ok("/".to_owned()));
}

#[test]
fn any_other_event_is_refused_naming_the_check_and_never_the_url() {
    let host = "cloudformation-custom-resource-response-useast1.s3.us-east-1.amazonaws.com";
    let url = format!("https://{host}{TARGET}");
    let other_stack = "arn:aws:cloudformation:us-east-1:999999999999:stack/stack/1f2e";
    for (what, url, stack, function, check) in [
        ("http", format!("http://{host}{TARGET}"), STACK, FUNCTION, "an https URL"),
        ("no URL", String::new(), STACK, FUNCTION, "an https URL"),
        ("other port", format!("https://{host}:8443{TARGET}"), STACK, FUNCTION, "port 443"),
        ("bad port", format!("https://{host}:x{TARGET}"), STACK, FUNCTION, "port 443"),
        ("user info", format!("https://u:p@{host}{TARGET}"), STACK, FUNCTION, "user info"),
        ("IPv4", format!("https://127.0.0.1{TARGET}"), STACK, FUNCTION, "not an IP address"),
        ("IPv6", format!("https://[::1]:443{TARGET}"), STACK, FUNCTION, "not an IP address"),
        ("other host", format!("https://h.example{TARGET}"), STACK, FUNCTION, "response bucket"),
        (
            "a look-alike",
            format!("https://{host}.h.example{TARGET}"),
            STACK,
            FUNCTION,
            "response bucket",
        ),
        (
            "another region's bucket",
            format!("https://cloudformation-custom-resource-response-uswest2.s3-us-west-2.amazonaws.com{TARGET}"),
            STACK,
            FUNCTION,
            "response bucket",
        ),
        (
            "a CRLF",
            format!("https://{host}{TARGET}\r\nX-Injected: 1"),
            STACK,
            FUNCTION,
            "control characters",
        ),
        ("another account", url.clone(), other_stack, FUNCTION, "StackId"),
        (
            "another region",
            url.clone(),
            "arn:aws:cloudformation:us-west-2:123456789012:stack/stack/1f2e",
            FUNCTION,
            "StackId",
        ),
        ("no stack", url.clone(), "", FUNCTION, "StackId"),
        (
            "not a stack",
            url.clone(),
            "arn:aws:cloudformation:us-east-1:123456789012:changeSet/x/1",
            FUNCTION,
            "StackId",
        ),
        ("no function ARN", url.clone(), STACK, "function-arn", "function's ARN"),
        (
            "another partition",
            url.clone(),
            STACK,
            "arn:aws-iso:lambda:us-east-1:123456789012:function:f",
            "partition aws-iso",
        ),
    ] {
        let problem = check_origin(&url, stack, function).expect_err(what);
        assert!(problem.contains(check), "{what}: {problem}");
        assert!(!problem.contains("X-Amz-Signature"), "{what}: {problem}");
        assert!(!problem.contains("999999999999"), "{what}: {problem}");
    }
}

#[test]
fn the_test_endpoint_is_only_ever_on_the_loopback() {
    for value in ["http://127.0.0.1:8080", "http://127.0.0.1:8080/"] {
        let endpoint = parse_test_endpoint(value).map(|endpoint| endpoint.to_string());
        assert_eq!(endpoint.as_deref(), Ok("http://127.0.0.1:8080"), "{value}");
    }
    for value in [
        "",
        "127.0.0.1:8080",
        "https://127.0.0.1:8080",
        "http://10.0.0.1:8080",
        "http://169.254.169.254:80",
        "http://localhost:8080",
        "http://127.0.0.1",
        "http://127.0.0.1:0",
        "http://127.0.0.1:8080/path",
    ] {
        let problem = parse_test_endpoint(value).expect_err(value);
        assert!(problem.contains(TEST_ENDPOINT_VAR), "{problem}");
    }
}

#[test]
fn a_long_reason_is_cut_on_a_character_boundary() {
    assert_eq!(truncate("ééé", 2), "éé");
    assert_eq!(truncate("abc", 10), "abc");
}

/// A request as CloudFormation sends it for the template's `Migrations` resource.
fn request(request_type: &str) -> Value {
    let mut request = json!({
        "RequestType": request_type,
        "ServiceToken": FUNCTION,
        "ResponseURL": format!("https://cloudformation-custom-resource-response-useast1.s3.amazonaws.com{TARGET}"),
        "StackId": STACK,
        "RequestId": "5d4c-req",
        "LogicalResourceId": "Migrations",
        "ResourceType": "Custom::Migrations",
        "ResourceProperties": {"ServiceToken": FUNCTION, "Versions": ["0001_schema"]},
    });
    if request_type != "Create" {
        request["PhysicalResourceId"] = json!(PHYSICAL_ID);
    }
    if request_type == "Update" {
        request["OldResourceProperties"] = json!({"ServiceToken": FUNCTION, "Versions": []});
    }
    request
}

#[test]
fn schedule_payloads_are_not_custom_resource_events() {
    for payload in [
        include_str!("../../../../events/schedule-empty.json"),
        include_str!("../../../../events/schedule-events-rule.json"),
        include_str!("../../../../events/schedule-scheduler.json"),
        "null",
        "[]",
        "\"RequestType\"",
        r#"{"op": "cleanup"}"#,
    ] {
        let payload: Value = serde_json::from_str(payload).unwrap();
        assert!(Event::of(&payload).is_none(), "{payload}");
    }
}

#[test]
fn cloudformations_requests_read_as_their_types() {
    let event = |payload: &Value| Event::of(payload).expect("an event");

    let create = event(&request("Create"));
    assert!(matches!(&create.action, Action::Apply(versions) if versions == &["0001_schema"]));
    assert_eq!(create.ids.request_id, "5d4c-req");
    assert_eq!(create.ids.logical_resource_id, "Migrations");
    assert_eq!(create.ids.stack_id, STACK);
    assert!(create.ids.response_url.ends_with(TARGET));
    assert_eq!(create.ids.physical_resource_id, None);

    let update = event(&request("Update"));
    assert!(matches!(update.action, Action::Apply(_)));
    assert_eq!(
        update.ids.physical_resource_id.as_deref(),
        Some(PHYSICAL_ID)
    );
    // Old properties are not read, so not required either.
    let mut without_old = request("Update");
    without_old
        .as_object_mut()
        .unwrap()
        .remove("OldResourceProperties");
    assert!(matches!(event(&without_old).action, Action::Apply(_)));

    // A Delete succeeds whatever the properties hold: a stack whose template lists no
    // versions can still be deleted.
    for properties in [json!({}), json!({"Versions": "0001_schema"}), Value::Null] {
        let mut delete = request("Delete");
        delete["ResourceProperties"] = properties;
        let delete = event(&delete);
        assert!(
            matches!(delete.action, Action::Delete),
            "{:?}",
            delete.action
        );
        assert_eq!(
            delete.ids.physical_resource_id.as_deref(),
            Some(PHYSICAL_ID)
        );
    }
}

#[test]
fn a_malformed_event_keeps_what_its_answer_needs_and_names_the_field_not_the_value() {
    type Change = fn(&mut Value);
    let cases: [(&str, Change, &str); 9] = [
        (
            "Create",
            |e| e["RequestType"] = json!("Upsert-VALUE"),
            "RequestType must be",
        ),
        (
            "Create",
            |e| e["RequestType"] = json!(7),
            "RequestType must be",
        ),
        (
            "Create",
            |e| drop(e.as_object_mut().unwrap().remove("RequestType")),
            "RequestType must be",
        ),
        (
            "Create",
            |e| e["RequestId"] = json!(12345),
            "RequestId must be a string",
        ),
        (
            "Create",
            |e| e["ResourceType"] = Value::Null,
            "ResourceType must be a string",
        ),
        (
            "Delete",
            |e| drop(e.as_object_mut().unwrap().remove("PhysicalResourceId")),
            "PhysicalResourceId must be a string",
        ),
        (
            "Update",
            |e| e["ServiceToken"] = json!(["VALUE"]),
            "ServiceToken must be a string",
        ),
        (
            "Create",
            |e| e["ResourceProperties"]["Versions"] = json!("0001-VALUE"),
            "ResourceProperties.Versions",
        ),
        (
            "Update",
            |e| drop(e.as_object_mut().unwrap().remove("ResourceProperties")),
            "ResourceProperties.Versions",
        ),
    ];
    for (request_type, change, expected) in cases {
        let mut payload = request(request_type);
        change(&mut payload);
        let event = Event::of(&payload).unwrap_or_else(|| panic!("an event: {payload}"));
        let Action::Malformed(problem) = &event.action else {
            panic!("malformed: {payload}: {:?}", event.action);
        };
        assert!(problem.contains(expected), "{payload}: {problem}");
        assert!(
            !problem.contains("VALUE") && !problem.contains("12345"),
            "{problem}"
        );
        // What the answer needs, where the event has it.
        assert_eq!(event.ids.stack_id, STACK, "{payload}");
        assert!(event.ids.response_url.ends_with(TARGET), "{payload}");
        assert_eq!(event.ids.logical_resource_id, "Migrations");
    }
    // A ResponseURL alone makes it CloudFormation's: it is answered (or refused), not cleaned.
    let event = Event::of(&json!({"ResponseURL": "https://h.example/"})).expect("an event");
    assert!(matches!(event.action, Action::Malformed(_)));
    assert_eq!(event.ids.request_id, "");
    assert_eq!(event.ids.physical_resource_id, None);
}

#[test]
fn the_answer_is_cloudformations_response_document() {
    let ids = Event::of(&request("Update")).unwrap().ids;
    let document = |answer: &Answer| -> Value {
        serde_json::from_slice(&answer.document(&ids)).expect("JSON")
    };

    let success = document(&Answer::success(vec!["0001_schema".to_owned()]));
    let latest = MIGRATIONS.last().unwrap().0;
    assert_eq!(success["Status"], "SUCCESS");
    assert_eq!(success["Data"], json!({ "SchemaVersion": latest }));
    assert_eq!(success["PhysicalResourceId"], PHYSICAL_ID);
    assert_eq!(success["StackId"], STACK);
    assert_eq!(success["RequestId"], "5d4c-req");
    assert_eq!(success["LogicalResourceId"], "Migrations");
    assert_eq!(success["NoEcho"], false);

    let failed = document(&Answer::failed(Error::internal("é".repeat(5000))));
    assert_eq!(failed["Status"], "FAILED");
    assert_eq!(failed["Reason"], "é".repeat(MAX_REASON_CHARS));
    assert_eq!(failed["Data"], json!({}));
    assert_eq!(failed["RequestId"], "5d4c-req");

    // Create has no physical id yet: the resource's own.
    let create = Event::of(&request("Create")).unwrap().ids;
    let answer = Answer::success(Vec::new()).document(&create);
    let answer: Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(answer["PhysicalResourceId"], PHYSICAL_ID);
}

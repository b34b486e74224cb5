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

//! template.yaml agrees with the code and the README: the migrations its custom resource lists,
//! the alarms the README explains, the metrics they watch. (cfn-lint and `sam validate --lint`
//! check the rest: scripts/check-template.sh.)

use std::collections::BTreeSet;

use lti_storage::migrate::MIGRATIONS;

const TEMPLATE: &str = include_str!("../../../../template.yaml");
const README: &str = include_str!("../../../../README.md");

/// The first cells of the README's first table after `heading`, without backticks.
fn first_column(heading: &str) -> BTreeSet<String> {
    test_support::table_after(README, heading)
        .iter()
        .map(|row| row[0].trim_matches('`').to_owned())
        .collect()
}

#[test]
fn the_custom_resource_lists_every_migration_in_order() {
    let start = TEMPLATE
        .find("\n  Migrations:\n")
        .expect("the template has the Migrations resource");
    let listed: Vec<&str> = TEMPLATE[start..]
        .lines()
        .skip_while(|line| line.trim() != "Versions:")
        .skip(1)
        .map_while(|line| line.trim().strip_prefix("- "))
        .collect();
    let versions: Vec<&str> = MIGRATIONS.iter().map(|(version, _)| *version).collect();
    assert_eq!(listed, versions);
}

/// The variable that sends the custom resource's answers to a local endpoint is the tests'
/// alone: a deployed stack answers CloudFormation only.
#[test]
fn the_template_never_sets_the_custom_resource_test_endpoint() {
    let variable = lti_storage_lambda::custom_resource::TEST_ENDPOINT_VAR;
    assert!(
        !TEMPLATE.contains(variable),
        "template.yaml sets {variable}"
    );
    assert!(README.contains(variable), "the README explains {variable}");
}

#[test]
fn the_readme_explains_every_alarm_of_the_template() {
    let alarms: BTreeSet<String> = TEMPLATE
        .lines()
        .filter_map(|line| {
            line.trim()
                .strip_prefix("AlarmName: !Sub '${AWS::StackName}-")
        })
        .map(|rest| format!("<stack>-{}", rest.trim_end_matches('\'')))
        .collect();
    assert_eq!(alarms.len(), 4, "{alarms:?}");
    assert_eq!(first_column("### Alarms"), alarms);
}

#[test]
fn the_alarms_watch_metrics_the_readme_documents() {
    let lines: Vec<&str> = TEMPLATE.lines().map(str::trim).collect();
    let watched: BTreeSet<String> = lines
        .windows(2)
        .filter(|pair| pair[0] == "Namespace: LtiStorage")
        .filter_map(|pair| pair[1].strip_prefix("MetricName: "))
        .map(str::to_owned)
        .collect();
    assert_eq!(
        watched,
        ["Calls", "Errors", "StoppedEarly"].map(String::from).into()
    );
    let documented = first_column("### Metrics");
    assert!(
        watched.is_subset(&documented),
        "{watched:?} not all in {documented:?}"
    );
}

/// Python's `re` (as cfn-lint checks the template's defaults) on each URL: whether
/// `pattern` matches all of it, as CloudFormation's AllowedPattern must.
const FULL_MATCHES: &str = r#"
import json, re, sys
c = json.load(sys.stdin)
print(json.dumps([re.fullmatch(c["pattern"], url) is not None for url in c["urls"]]))
"#;

#[test]
fn the_database_url_parameter_refuses_a_password_as_the_functions_do() {
    let start = TEMPLATE
        .find("\n  DatabaseUrl:\n")
        .expect("the template has the DatabaseUrl parameter");
    let pattern = TEMPLATE[start..]
        .lines()
        .find_map(|line| line.trim().strip_prefix("AllowedPattern: '"))
        .and_then(|pattern| pattern.strip_suffix('\''))
        .expect("DatabaseUrl has an AllowedPattern");
    let cases = [
        ("postgres://?sslmode=verify-full", true),
        (
            "postgres://db.example.com:5432/lti?sslmode=verify-full",
            true,
        ),
        (
            "postgresql://lti@db.example.com/lti?application_name=tool&sslmode=verify-full",
            true,
        ),
        (
            "postgres://lti:pw@db.example.com/lti?sslmode=verify-full",
            false,
        ),
        (
            "postgres://lti@db.example.com/lti?password=pw&sslmode=verify-full",
            false,
        ),
        (
            "postgres://db.example.com/lti?sslmode=verify-full&password=pw",
            false,
        ),
        ("postgres://?password=pw", false),
    ];
    let urls: Vec<&str> = cases.iter().map(|(url, _)| *url).collect();
    let matched = test_support::moto::python(
        FULL_MATCHES,
        &serde_json::json!({"pattern": pattern, "urls": urls}),
    );
    // The functions agree, given a secret as the template gives them one.
    let secret = [
        ("DATABASE_SECRET_ARN", "lti/db"),
        ("AWS_REGION", "eu-west-1"),
        ("AWS_ACCESS_KEY_ID", "ASIAEXAMPLE"),
        ("AWS_SECRET_ACCESS_KEY", "secret"),
    ];
    for ((url, allowed), matched) in cases.iter().zip(matched.as_array().unwrap()) {
        assert_eq!(matched.as_bool(), Some(*allowed), "the template on {url}");
        let config = test_support::config_at(url, &secret);
        assert_eq!(config.is_ok(), *allowed, "the functions on {url}");
    }
}

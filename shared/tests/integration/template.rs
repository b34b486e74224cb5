//! template.yaml agrees with the code and the README: the migrations its custom resource lists,
//! the alarms the README explains, the metrics they watch. (cfn-lint and `sam validate --lint`
//! check the rest: scripts/check-template.sh.)

use std::collections::BTreeSet;

use lti_storage::migrate::MIGRATIONS;

const TEMPLATE: &str = include_str!("../../../template.yaml");
const README: &str = include_str!("../../../README.md");

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
    let variable = lti_storage::custom_resource::TEST_ENDPOINT_VAR;
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

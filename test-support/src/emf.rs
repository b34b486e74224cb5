//! What CloudWatch Logs checks before it turns a log line into metrics: the Embedded Metric
//! Format's rules, for the tests of the functions' lines.

use serde_json::{Map, Value};

/// The units CloudWatch accepts.
const UNITS: &[&str] = &[
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Count",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
    "None",
];

/// One metric of a line: its name, unit, value and the dimension sets it is published under
/// (each as the dimensions' names and values).
#[derive(Debug, Clone, PartialEq)]
pub struct Published {
    pub namespace: String,
    pub name: String,
    pub unit: Option<String>,
    pub value: f64,
    pub dimensions: Vec<Vec<(String, String)>>,
}

/// Checks that `line` is one valid EMF document (one JSON object on one line, an `_aws` block
/// whose every metric and dimension names a member of the right type) and returns it with the
/// metrics it publishes. `Err` says what is wrong.
pub fn check(line: &str) -> Result<(Map<String, Value>, Vec<Published>), String> {
    if line.trim_end_matches('\n').contains('\n') {
        return Err("more than one line".into());
    }
    let root: Map<String, Value> =
        serde_json::from_str(line).map_err(|err| format!("not a JSON object: {err}"))?;
    let aws = root
        .get("_aws")
        .and_then(Value::as_object)
        .ok_or("no _aws object")?;
    let timestamp = aws
        .get("Timestamp")
        .and_then(Value::as_u64)
        .ok_or("_aws.Timestamp is not a whole number")?;
    // Milliseconds since the epoch, not seconds: after 2020.
    if timestamp < 1_577_836_800_000 {
        return Err(format!(
            "_aws.Timestamp {timestamp} is not epoch milliseconds"
        ));
    }
    let directives = aws
        .get("CloudWatchMetrics")
        .and_then(Value::as_array)
        .filter(|directives| !directives.is_empty())
        .ok_or("_aws.CloudWatchMetrics is not a non-empty array")?;
    let mut published = Vec::new();
    for directive in directives {
        let directive = directive
            .as_object()
            .ok_or("a directive is not an object")?;
        let namespace = directive
            .get("Namespace")
            .and_then(Value::as_str)
            .filter(|namespace| !namespace.is_empty() && namespace.len() <= 255)
            .ok_or("a directive's Namespace is not a string of 1 to 255 characters")?;
        let mut dimension_sets = Vec::new();
        for set in directive
            .get("Dimensions")
            .and_then(Value::as_array)
            .ok_or("a directive's Dimensions is not an array")?
        {
            let set = set.as_array().ok_or("a dimension set is not an array")?;
            if set.len() > 30 {
                return Err("a dimension set of more than 30 dimensions".into());
            }
            let mut dimensions = Vec::new();
            for name in set {
                let name = name.as_str().ok_or("a dimension name is not a string")?;
                let value = root
                    .get(name)
                    .and_then(Value::as_str)
                    .filter(|value| !value.is_empty() && value.len() <= 1024)
                    .ok_or(format!(
                        "dimension {name} is not a member holding a string of 1 to 1024 characters"
                    ))?;
                dimensions.push((name.to_owned(), value.to_owned()));
            }
            dimension_sets.push(dimensions);
        }
        let metrics = directive
            .get("Metrics")
            .and_then(Value::as_array)
            .filter(|metrics| !metrics.is_empty() && metrics.len() <= 100)
            .ok_or("a directive's Metrics is not an array of 1 to 100 definitions")?;
        for metric in metrics {
            let metric = metric
                .as_object()
                .ok_or("a metric definition is not an object")?;
            if let Some(key) = metric
                .keys()
                .find(|key| !["Name", "Unit", "StorageResolution"].contains(&key.as_str()))
            {
                return Err(format!("a metric definition has the unknown member {key}"));
            }
            let name = metric
                .get("Name")
                .and_then(Value::as_str)
                .ok_or("a metric definition's Name is not a string")?;
            let unit = match metric.get("Unit") {
                None => None,
                Some(unit) => Some(
                    unit.as_str()
                        .filter(|unit| UNITS.contains(unit))
                        .ok_or(format!("metric {name}: {unit} is not a CloudWatch unit"))?
                        .to_owned(),
                ),
            };
            let value = root
                .get(name)
                .and_then(Value::as_f64)
                .ok_or(format!("metric {name} is not a member holding a number"))?;
            if dimension_sets
                .iter()
                .flatten()
                .any(|(dimension, _)| dimension == name)
            {
                return Err(format!("{name} is both a metric and a dimension"));
            }
            published.push(Published {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                unit,
                value,
                dimensions: dimension_sets.clone(),
            });
        }
    }
    Ok((root, published))
}

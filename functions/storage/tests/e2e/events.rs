//! The example payloads of `events/`, as the README tells users to send them.

use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;

use serde_json::Value;

use crate::lambda::workspace_root;

/// Placeholders in `events/` for ids that exist only after addClient / addDeployment.
pub const CLIENT_PLACEHOLDER: &str = "11111111-1111-4111-8111-111111111111";
pub const DEPLOYMENT_PLACEHOLDER: &str = "22222222-2222-4222-8222-222222222222";
/// Fixed ids the session examples use as they are.
pub const SESSION_ID: &str = "33333333-3333-4333-8333-333333333333";
pub const REGISTRATION_SESSION_ID: &str = "44444444-4444-4444-8444-444444444444";

/// The example payloads, with the placeholder ids a test has substituted.
pub struct Events {
    substitutions: Vec<(String, String)>,
}

fn dir() -> PathBuf {
    workspace_root().join("events")
}

impl Events {
    pub fn new() -> Events {
        Events {
            substitutions: Vec::new(),
        }
    }

    /// The file's text as it is.
    pub fn text(&self, name: &str) -> String {
        let path = dir().join(name);
        fs::read_to_string(&path).unwrap_or_else(|err| panic!("read {}: {err}", path.display()))
    }

    /// The file as it is.
    pub fn raw(&self, name: &str) -> Value {
        parse(name, &self.text(name))
    }

    /// The file with the placeholders replaced by the real ids (the `sed` of the README).
    pub fn get(&self, name: &str) -> Value {
        let mut text = self.text(name);
        for (placeholder, real) in &self.substitutions {
            text = text.replace(placeholder, real);
        }
        parse(name, &text)
    }

    pub fn substitute(&mut self, placeholder: &str, real: &str) {
        self.substitutions
            .push((placeholder.to_owned(), real.to_owned()));
    }
}

fn parse(name: &str, text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|err| panic!("events/{name}: {err}"))
}

/// The sources of the tests that send the examples.
const TESTS: [(&str, &str); 5] = [
    ("main.rs", include_str!("main.rs")),
    ("clients.rs", include_str!("clients.rs")),
    ("nonces_sessions.rs", include_str!("nonces_sessions.rs")),
    ("errors.rs", include_str!("errors.rs")),
    ("cleanup.rs", include_str!("cleanup.rs")),
];

#[test]
fn every_example_event_is_sent_by_a_test() {
    let present: BTreeSet<String> = fs::read_dir(dir())
        .expect("list events/")
        .map(|entry| entry.expect("read events/").file_name())
        .map(|name| name.to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".json"))
        .collect();
    assert!(!present.is_empty(), "no examples in events/");
    let quoted = |name: &str| format!("\"{name}\"");
    let unused: Vec<&String> = present
        .iter()
        .filter(|name| {
            !TESTS
                .iter()
                .any(|(_, source)| source.contains(&quoted(name)))
        })
        .collect();
    assert!(
        unused.is_empty(),
        "events/ files no test sends: {unused:?}; add them to functions/storage/tests/e2e/"
    );
    // And every name a test sends is an example (a renamed file fails here, not mid-run).
    for (file, source) in TESTS {
        for name in source.split('"').filter(|part| part.ends_with(".json")) {
            assert!(
                present.contains(name),
                "{file} sends {name}, not in events/"
            );
        }
    }
}

//! A missing or malformed configuration stops the function at init, with a message naming
//! the variable and never the password.

use std::process::Command;

fn start_with(vars: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_storage"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (name, value) in vars {
        command.env(name, value);
    }
    let output = command.output().expect("run the storage binary");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_missing_database_url_stops_the_function_naming_it() {
    let (code, stderr) = start_with(&[]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("DATABASE_URL"), "{stderr}");
    assert!(stderr.contains("is not set"), "{stderr}");
}

#[test]
fn a_malformed_database_url_stops_the_function_without_showing_the_password() {
    let (code, stderr) = start_with(&[(
        "DATABASE_URL",
        "postgres://lti:Zq8-init-SECRET@db.example:notaport/lti",
    )]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("DATABASE_URL"), "{stderr}");
    assert!(!stderr.contains("Zq8-init-SECRET"), "{stderr}");
}

#[test]
fn a_malformed_number_stops_the_function_naming_the_variable() {
    let (code, stderr) = start_with(&[
        ("DATABASE_URL", "postgres://lti@db.example/lti"),
        ("SESSION_TTL_SECS", "-5"),
    ]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("SESSION_TTL_SECS"), "{stderr}");
}

#[test]
fn a_malformed_admin_on_any_qualifier_stops_the_function_naming_it() {
    let (code, stderr) = start_with(&[
        ("DATABASE_URL", "postgres://lti@db.example/lti"),
        ("ADMIN_ON_ANY_QUALIFIER", "yes"),
    ]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("ADMIN_ON_ANY_QUALIFIER"), "{stderr}");
}

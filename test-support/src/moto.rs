//! AWS as the tests have it: the project's Python tools (scripts/ensure-tools.sh installs them
//! in target/tools/venv), for botocore's reference signatures, and Secrets Manager served by
//! moto on 127.0.0.1, with IAM enforced (every request's signature checked, every action
//! allowed or not by the caller's policies).

use std::io::Write;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::free_port;

fn venv_bin(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/tools/venv/bin")
        .join(name);
    assert!(
        path.exists(),
        "{} is missing: run scripts/ensure-tools.sh (scripts/test.sh does)",
        path.display()
    );
    path
}

/// Runs `script` in the project's Python with `input` as JSON on stdin; its stdout, as JSON.
pub fn python(script: &str, input: &Value) -> Value {
    let mut child = Command::new(venv_bin("python"))
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the project's Python");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.to_string().as_bytes())
        .expect("write the script's input");
    let output = child.wait_with_output().expect("wait for Python");
    assert!(
        output.status.success(),
        "the Python script failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("the script prints JSON")
}

/// AWS credentials as Lambda gives them to a function.
#[derive(Clone, Debug)]
pub struct Keys {
    pub id: String,
    pub secret: String,
    pub token: Option<String>,
}

impl Keys {
    fn from_json(keys: &Value) -> Keys {
        let text = |name: &str| keys[name].as_str().map(str::to_owned);
        Keys {
            id: text("id").expect("key id"),
            secret: text("secret").expect("secret key"),
            token: text("token"),
        }
    }

    fn json(&self) -> Value {
        json!({"id": self.id, "secret": self.secret, "token": self.token})
    }
}

/// A moto server on a port of its own, stopped when dropped.
pub struct Moto {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
    pub region: &'static str,
    /// Allowed everything; what the tests set secrets up with.
    pub admin: Keys,
    /// A role allowed `secretsmanager:GetSecretValue`: the storage function's.
    pub storage: Keys,
    /// A role allowed nothing.
    pub other: Keys,
}

const ADMIN_SCRIPT: &str = include_str!("moto_admin.py");

impl Moto {
    pub fn start() -> Moto {
        let port = free_port();
        let mut child = Command::new(venv_bin("moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if started.elapsed() > Duration::from_secs(60) {
                let _ = child.kill();
                let _ = child.wait();
                panic!("moto_server did not listen within 60 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let unset = Keys {
            id: String::new(),
            secret: String::new(),
            token: None,
        };
        // Built first, so that a failed set-up stops the server too (Drop).
        let mut moto = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            region: "eu-west-1",
            admin: unset.clone(),
            storage: unset.clone(),
            other: unset,
        };
        let keys = python(
            ADMIN_SCRIPT,
            &json!({"op": "setup", "endpoint": moto.endpoint, "region": moto.region}),
        );
        moto.admin = Keys::from_json(&keys["admin"]);
        moto.storage = Keys::from_json(&keys["storage"]);
        moto.other = Keys::from_json(&keys["other"]);
        moto
    }

    fn admin_op(&self, op: &str, args: Value) -> Value {
        let mut command = json!({"op": op, "endpoint": self.endpoint, "region": self.region,
            "keys": self.admin.json()});
        for (key, value) in args.as_object().expect("arguments") {
            command[key] = value.clone();
        }
        python(ADMIN_SCRIPT, &command)
    }

    /// Creates secret `name` holding `value`; its ARN.
    pub fn create_secret(&self, name: &str, value: &str) -> String {
        let arn = self.admin_op("create-secret", json!({"name": name, "value": value}));
        arn.as_str().expect("an ARN").to_owned()
    }

    /// Stores a new current version of secret `id`, as a rotation does.
    pub fn put_secret_value(&self, id: &str, value: &str) {
        self.admin_op("put-secret-value", json!({"id": id, "value": value}));
    }

    /// The variables Lambda sets for a function with `keys`, and the endpoint of this server.
    pub fn env(&self, keys: &Keys) -> Vec<(&'static str, String)> {
        let mut vars = vec![
            ("AWS_REGION", self.region.to_owned()),
            ("AWS_ACCESS_KEY_ID", keys.id.clone()),
            ("AWS_SECRET_ACCESS_KEY", keys.secret.clone()),
            ("AWS_ENDPOINT_URL_SECRETS_MANAGER", self.endpoint.clone()),
        ];
        if let Some(token) = &keys.token {
            vars.push(("AWS_SESSION_TOKEN", token.clone()));
        }
        vars
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

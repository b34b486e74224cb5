//! End to end: both functions under `cargo lambda watch` (the real Lambda runtime loop, the
//! Runtime API emulated), called through the Lambda Invoke API with every example payload in
//! `events/`, on a database schema of this test's own.
//!
//! Needs cargo-lambda (`pip install cargo-lambda`; scripts/ensure-tools.sh installs it) and a
//! PostgreSQL server in TEST_DATABASE_URL:
//!
//!     scripts/with-postgres.sh cargo test -p storage --test e2e -- --nocapture
//!
//! The first invocation compiles the functions (in target/lambda-watch, because `cargo test`
//! holds the lock of the main target dir), which takes minutes on a cold cache. Every file in
//! `events/` must be used here: a new example payload needs a test.

#[path = "../../../shared/tests/support/mod.rs"]
mod support;

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::fs;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::TestDb;
use uuid::Uuid;

/// Placeholders in `events/` for ids that exist only after addClient / addDeployment.
const CLIENT_PLACEHOLDER: &str = "11111111-1111-4111-8111-111111111111";
const DEPLOYMENT_PLACEHOLDER: &str = "22222222-2222-4222-8222-222222222222";
/// Fixed ids the session examples use as they are.
const SESSION_ID: &str = "33333333-3333-4333-8333-333333333333";
const REGISTRATION_SESSION_ID: &str = "44444444-4444-4444-8444-444444444444";

/// How long the first invocation may take: it compiles the functions.
const STARTUP_LIMIT: Duration = Duration::from_secs(20 * 60);
/// Any later invocation.
const CALL_LIMIT: Duration = Duration::from_secs(120);

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the workspace root exists")
}

/// PATH with the directories rustup and `pip install --user` use, as scripts/ensure-tools.sh
/// does: a fresh shell may not have them yet.
fn tool_path() -> String {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(home) = std::env::var_os("HOME") {
        let home = PathBuf::from(home);
        dirs.push(home.join(".cargo/bin"));
        dirs.push(home.join(".local/bin"));
    }
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    std::env::join_paths(dirs)
        .expect("PATH entries are joinable")
        .into_string()
        .expect("PATH is UTF-8")
}

fn cargo() -> Command {
    let mut command = Command::new(env!("CARGO"));
    command.env("PATH", tool_path());
    command
}

fn require_cargo_lambda() {
    let version = cargo()
        .args(["lambda", "--version"])
        .stdin(Stdio::null())
        .output();
    match version {
        Ok(output) if output.status.success() => {}
        _ => panic!(
            "this test runs the functions with `cargo lambda watch`, and cargo-lambda is not \
             installed: pip install cargo-lambda   (or run scripts/ensure-tools.sh)"
        ),
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free local port")
}

/// `cargo lambda watch`, stopped with everything it started when dropped (also on panic).
struct Watch {
    child: Child,
    log: PathBuf,
}

impl Watch {
    fn start(root: &Path, port: u16, database_url: &str) -> Watch {
        let target = root.join("target/lambda-watch");
        fs::create_dir_all(&target).expect("create target/lambda-watch");
        let log = target.join(format!("e2e-watch-{port}.log"));
        let out = fs::File::create(&log).expect("create the watch log");
        let err = out.try_clone().expect("clone the log handle");
        let child = cargo()
            .args(["lambda", "watch", "--ignore-changes"])
            .args(["--invoke-address", "127.0.0.1"])
            .args(["--invoke-port", &port.to_string()])
            .current_dir(root)
            // The functions inherit cargo-lambda's environment.
            .env("DATABASE_URL", database_url)
            .env("CARGO_TARGET_DIR", &target)
            .env("LOG_LEVEL", "info")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0) // its own group, so Drop can stop all of it
            .spawn()
            .expect("start cargo lambda watch");
        println!("cargo lambda watch on port {port}, log: {}", log.display());
        Watch { child, log }
    }

    /// The last lines of the log, for failure messages.
    fn log_tail(&self, lines: usize) -> String {
        let Ok(file) = fs::File::open(&self.log) else {
            return String::new();
        };
        let all: Vec<String> = BufReader::new(file).lines().map_while(Result::ok).collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// How often cargo lambda has reported a function process exiting.
    fn function_exits(&self) -> usize {
        fs::read_to_string(&self.log)
            .map(|log| {
                // "ERROR command exited code=101" (a failed build, an exit),
                // "ERROR command killed code=Custom(6)" (a crash: abort, stack overflow).
                log.lines()
                    .filter(|line| {
                        line.contains("command exited") || line.contains("command killed")
                    })
                    .count()
            })
            .unwrap_or_default()
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

/// The pids of every descendant of `pid`, from /proc (empty where there is none).
fn descendants(pid: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let parents: Vec<(u32, u32)> = entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|child| {
            let stat = fs::read_to_string(format!("/proc/{child}/stat")).ok()?;
            // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
            let after_comm = &stat[stat.rfind(')')? + 1..];
            let parent = after_comm.split_whitespace().nth(1)?.parse().ok()?;
            Some((child, parent))
        })
        .collect();
    let mut found = vec![pid];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parents
                .iter()
                .filter(|(_, p)| *p == parent)
                .map(|(child, _)| *child),
        );
        i += 1;
    }
    found.remove(0);
    found
}

fn signal(signal: &str, targets: &[String]) {
    if targets.is_empty() {
        return;
    }
    let _ = Command::new("kill")
        .arg(signal)
        .arg("--")
        .args(targets)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

impl Drop for Watch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- last lines of {} ---\n{}\n---",
                self.log.display(),
                self.log_tail(60)
            );
        }
        let pid = self.child.id();
        // The group, and any descendant that moved to a group of its own (the file watcher
        // may start the function that way): collected before the parents go away.
        let mut targets = vec![format!("-{pid}")];
        targets.extend(descendants(pid).iter().map(u32::to_string));
        signal("-TERM", &targets);
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.exited().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        signal("-KILL", &targets);
        let _ = self.child.wait();
        if !std::thread::panicking() {
            let _ = fs::remove_file(&self.log); // kept only when the test failed
        }
    }
}

/// What an invocation gave back.
#[derive(Debug)]
enum Outcome {
    Ok(Value),
    /// A function error: `errorType`, `errorMessage`.
    Failed(String, String),
}

/// A client of the Invoke API of `cargo lambda watch`; owns the watch process.
struct Lambda {
    base: String,
    agent: ureq::Agent,
    watch: RefCell<Watch>,
}

fn agent(limit: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(limit))
        .build()
        .into()
}

/// One Invoke API call. `Err` is a transport problem (nothing listening yet, a time limit).
fn post(agent: &ureq::Agent, url: &str, payload: String) -> Result<Outcome, String> {
    let mut response = agent
        .post(url)
        .header("content-type", "application/json")
        .send(payload)
        .map_err(|err| format!("POST {url}: {err}"))?;
    let status = response.status().as_u16();
    let function_error = response.headers().get("x-amz-function-error").is_some();
    let text = response
        .body_mut()
        .read_to_string()
        .map_err(|err| format!("reading the answer of {url}: {err}"))?;
    let body: Value = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("{url} answered {status} with a body that is not JSON: {text}"));
    // AWS answers 200 with X-Amz-Function-Error: Unhandled; cargo lambda watch answers 500
    // without that header. Both carry the function's {errorType, errorMessage}.
    match (status, function_error) {
        (200, false) => Ok(Outcome::Ok(body)),
        (200, true) | (500, _) => {
            match (body["errorType"].as_str(), body["errorMessage"].as_str()) {
                (Some(error_type), Some(message)) => {
                    Ok(Outcome::Failed(error_type.to_owned(), message.to_owned()))
                }
                _ => {
                    panic!("{url}: function error {status} without errorType/errorMessage: {body}")
                }
            }
        }
        _ => panic!("{url} answered {status}: {body}"),
    }
}

impl Lambda {
    fn new(port: u16, watch: Watch) -> Lambda {
        Lambda {
            base: format!("http://127.0.0.1:{port}/2015-03-31/functions"),
            agent: agent(CALL_LIMIT),
            watch: RefCell::new(watch),
        }
    }

    /// Sends one invocation and, while it is under way, watches cargo lambda: when the
    /// function's process exits (a failed build, a crash), cargo lambda does not start it again
    /// and the call would hang, so that fails the test at once.
    fn send(
        &self,
        agent: &ureq::Agent,
        function: &str,
        payload: &Value,
    ) -> Result<Outcome, String> {
        let exits_before = self.watch.borrow().function_exits();
        let (sender, receiver) = mpsc::channel();
        let (agent, url) = (
            agent.clone(),
            format!("{}/{function}/invocations", self.base),
        );
        let payload = payload.to_string();
        std::thread::spawn(move || {
            let _ = sender.send(std::panic::catch_unwind(AssertUnwindSafe(|| {
                post(&agent, &url, payload)
            })));
        });
        loop {
            match receiver.recv_timeout(Duration::from_millis(250)) {
                Ok(Ok(result)) => return result,
                Ok(Err(panic)) => std::panic::resume_unwind(panic),
                Err(RecvTimeoutError::Disconnected) => panic!("the request thread vanished"),
                Err(RecvTimeoutError::Timeout) => {
                    let mut watch = self.watch.borrow_mut();
                    if let Some(status) = watch.exited() {
                        panic!("cargo lambda watch exited ({status}) while {function} was called");
                    }
                    if watch.function_exits() > exits_before {
                        panic!(
                            "the {function} function's process exited while it was called \
                             (a failed build or a crash; log tail below)"
                        );
                    }
                }
            }
        }
    }

    fn invoke(&self, function: &str, payload: &Value) -> Outcome {
        self.send(&self.agent, function, payload)
            .unwrap_or_else(|problem| panic!("{problem}"))
    }

    /// Invokes until the function answers `Ok`: the first call compiles it.
    fn wait_until_ready(&self, function: &str, payload: &Value) {
        let started = Instant::now();
        let slow = agent(STARTUP_LIMIT);
        let mut last = String::new();
        while started.elapsed() < STARTUP_LIMIT {
            match self.send(&slow, function, payload) {
                Ok(Outcome::Ok(_)) => {
                    println!("{function} ready after {:.1?}", started.elapsed());
                    return;
                }
                Ok(other) => last = format!("{other:?}"),
                Err(problem) => last = problem, // not listening yet
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        panic!("{function} did not answer within {STARTUP_LIMIT:?}; last: {last}");
    }

    fn ok(&self, function: &str, what: &str, payload: &Value) -> Value {
        match self.invoke(function, payload) {
            Outcome::Ok(value) => value,
            Outcome::Failed(error_type, message) => {
                panic!("{what}: function error {error_type}: {message}")
            }
        }
    }

    /// Asserts a function error of `error_type`; returns its message.
    fn fails(&self, function: &str, what: &str, payload: &Value, error_type: &str) -> String {
        match self.invoke(function, payload) {
            Outcome::Failed(found, message) => {
                assert_eq!(found, error_type, "{what}: {message}");
                assert!(!message.is_empty(), "{what}: empty errorMessage");
                message
            }
            Outcome::Ok(value) => panic!("{what}: succeeded with {value}, expected {error_type}"),
        }
    }
}

/// The example payloads, with the placeholder ids replaced; remembers which were used.
struct Events {
    dir: PathBuf,
    used: BTreeSet<String>,
    substitutions: Vec<(String, String)>,
}

impl Events {
    fn text(&mut self, name: &str) -> String {
        let path = self.dir.join(name);
        let text = fs::read_to_string(&path)
            .unwrap_or_else(|err| panic!("read {}: {err}", path.display()));
        self.used.insert(name.to_owned());
        text
    }

    /// The file as it is.
    fn raw(&mut self, name: &str) -> Value {
        let text = self.text(name);
        serde_json::from_str(&text).unwrap_or_else(|err| panic!("events/{name}: {err}"))
    }

    /// The file with the placeholders replaced by the real ids (the `sed` of the README).
    fn get(&mut self, name: &str) -> Value {
        let mut text = self.text(name);
        for (placeholder, real) in &self.substitutions {
            text = text.replace(placeholder, real);
        }
        serde_json::from_str(&text).unwrap_or_else(|err| panic!("events/{name}: {err}"))
    }

    fn substitute(&mut self, placeholder: &str, real: &str) {
        self.substitutions
            .push((placeholder.to_owned(), real.to_owned()));
    }

    fn assert_all_used(&self) {
        let mut present = BTreeSet::new();
        for entry in fs::read_dir(&self.dir).expect("list events/") {
            let name = entry.expect("read events/").file_name();
            let name = name.to_string_lossy().into_owned();
            if name.ends_with(".json") {
                present.insert(name);
            }
        }
        let unused: Vec<&String> = present.difference(&self.used).collect();
        assert!(
            unused.is_empty(),
            "events/ files no test invokes: {unused:?}; add them to functions/storage/tests/e2e.rs"
        );
        let missing: Vec<&String> = self.used.difference(&present).collect();
        assert!(missing.is_empty(), "used but not in events/: {missing:?}");
    }
}

fn uuid_string(what: &str, value: &Value) -> String {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("{what}: {value} is not a string"));
    Uuid::parse_str(text).unwrap_or_else(|_| panic!("{what}: {text} is not a UUID"));
    text.to_owned()
}

/// An HTTP response event: status and the parsed JSON body (`Null` when there is none).
fn http_reply(what: &str, response: &Value) -> (u64, Value) {
    let status = response["statusCode"]
        .as_u64()
        .unwrap_or_else(|| panic!("{what}: no statusCode in {response}"));
    let body = match response["body"].as_str() {
        None | Some("") => Value::Null,
        Some(text) => {
            assert_eq!(
                response["headers"]["content-type"], "application/json",
                "{what}: {response}"
            );
            serde_json::from_str(text)
                .unwrap_or_else(|err| panic!("{what}: body is not JSON ({err}): {text}"))
        }
    };
    (status, body)
}

#[test]
fn every_example_event_through_the_lambda_runtime() {
    require_cargo_lambda();
    let started = Instant::now();
    let root = workspace_root();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let db = runtime.block_on(TestDb::migrated());
    let port = free_port();
    let lambda = Lambda::new(port, Watch::start(&root, port, &db.url));
    let mut events = Events {
        dir: root.join("events"),
        used: BTreeSet::new(),
        substitutions: Vec::new(),
    };

    lambda.wait_until_ready("storage", &json!({"op": "listClients"}));
    // Compiles the cleanup function too; nothing has expired yet, so it deletes nothing.
    lambda.wait_until_ready("cleanup", &json!({}));

    // --- Direct invocations, in the order a tool's life goes ---------------------------------
    let applied = lambda.ok("storage", "migrate", &events.raw("migrate.json"));
    assert_eq!(
        applied,
        json!({"applied": []}),
        "the schema was migrated already"
    );

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

    let store = events.raw("store-nonce.json");
    let validate = events.raw("validate-nonce.json");
    assert_eq!(
        store["nonce"], validate["nonce"],
        "the two examples go together"
    );
    assert_eq!(lambda.ok("storage", "store-nonce", &store), Value::Null);
    assert_eq!(
        lambda.ok("storage", "validate-nonce", &validate),
        json!(true)
    );
    assert_eq!(
        lambda.ok("storage", "validate-nonce again", &validate),
        json!(false)
    );
    let message = lambda.fails("storage", "store-nonce twice", &store, "Conflict");
    let nonce = store["nonce"].as_str().expect("a nonce string");
    assert!(
        !message.contains(nonce),
        "the error message never holds the nonce: {message}"
    );

    let add_session = events.raw("add-session.json");
    let id = lambda.ok("storage", "add-session", &add_session);
    assert_eq!(id, json!(SESSION_ID));
    let session = lambda.ok("storage", "get-session", &events.raw("get-session.json"));
    assert_eq!(session, add_session["session"]);

    let set = events.raw("set-registration-session.json");
    assert_eq!(set["sessionId"], REGISTRATION_SESSION_ID);
    assert_eq!(
        lambda.ok("storage", "set-registration-session", &set),
        Value::Null
    );
    let get = events.raw("get-registration-session.json");
    let found = lambda.ok("storage", "get-registration-session", &get);
    assert_eq!(
        found["openIdConfiguration"],
        set["session"]["openIdConfiguration"]
    );
    assert_eq!(found["expiresAt"], set["session"]["expiresAt"]);
    let delete = events.raw("delete-registration-session.json");
    assert_eq!(
        lambda.ok("storage", "delete-registration-session", &delete),
        Value::Null
    );
    assert_eq!(
        lambda.ok("storage", "get-registration-session after delete", &get),
        Value::Null
    );

    // --- Invalid payloads: InvalidInput, naming the problem -----------------------------------
    let message = lambda.fails(
        "storage",
        "unknown op",
        &json!({"op": "nope"}),
        "InvalidInput",
    );
    assert!(message.contains("nope"), "{message}");
    lambda.fails("storage", "array payload", &json!([1, 2]), "InvalidInput");
    lambda.fails("storage", "no op", &json!({"nonce": "x"}), "InvalidInput");
    let message = lambda.fails(
        "storage",
        "getSession without sessionId",
        &json!({"op": "getSession"}),
        "InvalidInput",
    );
    assert!(
        message.contains("getSession") && message.contains("sessionId"),
        "{message}"
    );

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

    // The example's nonce was consumed above by validate-nonce.
    let validate_event = events.raw("http-validate-nonce.json");
    let response = lambda.ok("storage", "http-validate-nonce (used)", &validate_event);
    let (status, body) = http_reply("http-validate-nonce (used)", &response);
    assert_eq!((status, body), (200, json!({"valid": false})), "{response}");
    // A fresh nonce, in the same event.
    let fresh = format!("{}", Uuid::new_v4().simple());
    let mut fresh_store = store.clone();
    fresh_store["nonce"] = json!(fresh);
    lambda.ok("storage", "store a fresh nonce", &fresh_store);
    let fresh_event: Value = serde_json::from_str(
        &events
            .text("http-validate-nonce.json")
            .replace(nonce, &fresh),
    )
    .expect("still JSON");
    let response = lambda.ok("storage", "http-validate-nonce (fresh)", &fresh_event);
    let (status, body) = http_reply("http-validate-nonce (fresh)", &response);
    assert_eq!((status, body), (200, json!({"valid": true})), "{response}");

    // Unknown path and wrong method, and the function is still there after them.
    let mut unknown = events.raw("http-list-clients.json");
    unknown["rawPath"] = json!("/nope");
    unknown["requestContext"]["http"]["path"] = json!("/nope");
    let response = lambda.ok("storage", "HTTP unknown path", &unknown);
    let (status, body) = http_reply("HTTP unknown path", &response);
    assert_eq!(status, 404, "{response}");
    assert_eq!(body["errorType"], "NotFound", "{body}");
    let mut wrong_method = events.raw("http-list-clients.json");
    wrong_method["requestContext"]["http"]["method"] = json!("DELETE");
    let response = lambda.ok("storage", "HTTP wrong method", &wrong_method);
    assert_eq!(
        http_reply("HTTP wrong method", &response).0,
        405,
        "{response}"
    );

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

    // --- Cleanup: every schedule payload, each deleting what expired since the last run ------
    let counts = |nonces: u64, sessions: u64, registration_sessions: u64| {
        json!({
            "noncesDeleted": nonces,
            "sessionsDeleted": sessions,
            "registrationSessionsDeleted": registration_sessions,
        })
    };
    let execute = |statements: &str| {
        runtime.block_on(async {
            db.sql()
                .await
                .batch_execute(statements)
                .await
                .expect("insert expired rows");
        })
    };
    execute(
        "INSERT INTO nonces (nonce, expires_at) VALUES ('expired-unused', now() - interval '1 hour');
         INSERT INTO nonces (nonce, expires_at, used_at)
             VALUES ('expired-used', now() - interval '1 minute', now() - interval '2 minutes');
         INSERT INTO sessions (id, data, expires_at)
             VALUES ('55555555-5555-4555-8555-555555555555', '{}', now() - interval '1 second');
         INSERT INTO registration_sessions (id, data, expires_at)
             VALUES ('66666666-6666-4666-8666-666666666666', '{\"expiresAt\": 0}',
                     now() - interval '1 day');",
    );
    let rule = lambda.ok(
        "cleanup",
        "schedule-events-rule",
        &events.raw("schedule-events-rule.json"),
    );
    assert_eq!(
        rule,
        counts(2, 1, 1),
        "the expired rows are counted (if all are 0: cargo lambda watch sends \
         Lambda-Runtime-Deadline-Ms: 600000, a constant, not an epoch time; a deadline already \
         past must not stop the run before it starts)"
    );
    execute(
        "INSERT INTO nonces (nonce, expires_at) VALUES ('expired-3', now() - interval '1 hour')",
    );
    let scheduler = lambda.ok(
        "cleanup",
        "schedule-scheduler",
        &events.raw("schedule-scheduler.json"),
    );
    assert_eq!(scheduler, counts(1, 0, 0));
    let empty = lambda.ok(
        "cleanup",
        "schedule-empty",
        &events.raw("schedule-empty.json"),
    );
    assert_eq!(empty, counts(0, 0, 0), "nothing expired since the last run");

    // Unexpired rows stay: both nonces of the examples, and the session.
    let (nonces, sessions): (i64, i64) = runtime.block_on(async {
        let sql = db.sql().await;
        let row = sql
            .query_one(
                "SELECT (SELECT count(*) FROM nonces), (SELECT count(*) FROM sessions)",
                &[],
            )
            .await
            .expect("count rows");
        (row.get(0), row.get(1))
    });
    assert_eq!(
        (nonces, sessions),
        (2, 1),
        "cleanup deletes only expired rows"
    );
    let session = lambda.ok(
        "storage",
        "get-session after cleanup",
        &events.raw("get-session.json"),
    );
    assert_eq!(session, add_session["session"]);

    events.assert_all_used();
    println!("e2e passed in {:.1?}", started.elapsed());
}

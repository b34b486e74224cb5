//! The functions under `cargo lambda watch` and a client of its Invoke API.

use std::cell::RefCell;
use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use test_support::free_port;
use uuid::Uuid;

/// How long the first invocation may take: it compiles the functions.
const STARTUP_LIMIT: Duration = Duration::from_secs(20 * 60);
/// Any later invocation.
const CALL_LIMIT: Duration = Duration::from_secs(120);

pub fn workspace_root() -> PathBuf {
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

/// `cargo lambda watch`, stopped with everything it started when dropped (also on panic).
struct Watch {
    child: Child,
    log: PathBuf,
    /// Set when a test failed: the log stays for a look.
    keep_log: bool,
}

impl Watch {
    fn start(root: &Path, port: u16, database_url: &str, vars: &[(&str, &str)]) -> Watch {
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
            .envs(vars.iter().copied())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0) // its own group, so Drop can stop all of it
            .spawn()
            .expect("start cargo lambda watch");
        println!("cargo lambda watch on port {port}, log: {}", log.display());
        Watch {
            child,
            log,
            keep_log: false,
        }
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
        if !(std::thread::panicking() || self.keep_log) {
            let _ = fs::remove_file(&self.log); // kept only when a test failed
        }
    }
}

/// What an invocation gave back.
#[derive(Debug)]
pub enum Outcome {
    Ok(Value),
    /// A function error: `errorType`, `errorMessage`.
    Failed(String, String),
}

/// A client of the Invoke API of `cargo lambda watch`; owns the watch process.
pub struct Lambda {
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
fn post(agent: &ureq::Agent, url: &str, payload: Vec<u8>) -> Result<Outcome, String> {
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
    /// Both functions under `cargo lambda watch` with `database_url` and the variables `vars`,
    /// ready: the first call of each compiles it.
    pub fn start(database_url: &str, vars: &[(&str, &str)]) -> Lambda {
        require_cargo_lambda();
        let started = Instant::now();
        let port = free_port();
        let lambda = Lambda {
            base: format!("http://127.0.0.1:{port}/2015-03-31/functions"),
            agent: agent(CALL_LIMIT),
            watch: RefCell::new(Watch::start(&workspace_root(), port, database_url, vars)),
        };
        // An op every alias answers: a session nobody stored.
        let session = Uuid::new_v4().to_string();
        lambda.wait_until_ready(
            "storage",
            &json!({"op": "getSession", "sessionId": session}),
        );
        // Nothing has expired yet, so the cleanup deletes nothing.
        lambda.wait_until_ready("cleanup", &json!({}));
        println!("both functions ready after {:.1?}", started.elapsed());
        lambda
    }

    /// Where the watch log ends now: the lines of what follows come after it.
    pub fn log_mark(&self) -> u64 {
        fs::metadata(&self.watch.borrow().log).map_or(0, |meta| meta.len())
    }

    /// The lines the functions (and cargo lambda) wrote since `mark`.
    pub fn log_since(&self, mark: u64) -> Vec<String> {
        let log = fs::read(&self.watch.borrow().log).expect("read the watch log");
        let start = (mark as usize).min(log.len());
        String::from_utf8_lossy(&log[start..])
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// A test failed: shows the end of the watch log, and keeps the log.
    pub fn show_log(&self) {
        let mut watch = self.watch.borrow_mut();
        eprintln!(
            "--- last lines of {} ---\n{}\n---",
            watch.log.display(),
            watch.log_tail(60)
        );
        watch.keep_log = true;
    }

    /// Sends one invocation and, while it is under way, watches cargo lambda: when the
    /// function's process exits (a failed build, a crash), cargo lambda does not start it again
    /// and the call would hang, so that fails the test at once.
    fn send(
        &self,
        agent: &ureq::Agent,
        function: &str,
        qualifier: Option<&str>,
        payload: Vec<u8>,
    ) -> Result<Outcome, String> {
        let exits_before = self.watch.borrow().function_exits();
        let (sender, receiver) = mpsc::channel();
        let mut url = format!("{}/{function}/invocations", self.base);
        if let Some(qualifier) = qualifier {
            // As the AWS SDKs send it: `$LATEST` escaped.
            url += &format!("?Qualifier={}", qualifier.replace('$', "%24"));
        }
        let agent = agent.clone();
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
        self.invoke_qualified(function, None, payload)
    }

    /// An Invoke API call with `Qualifier` (an alias or version) when given.
    pub fn invoke_qualified(
        &self,
        function: &str,
        qualifier: Option<&str>,
        payload: &Value,
    ) -> Outcome {
        self.invoke_with_bytes(function, qualifier, payload.to_string().into_bytes())
    }

    fn invoke_with_bytes(
        &self,
        function: &str,
        qualifier: Option<&str>,
        payload: Vec<u8>,
    ) -> Outcome {
        self.send(&self.agent, function, qualifier, payload)
            .unwrap_or_else(|problem| panic!("{problem}"))
    }

    /// Invokes until the function answers `Ok`: the first call compiles it.
    fn wait_until_ready(&self, function: &str, payload: &Value) {
        let started = Instant::now();
        let slow = agent(STARTUP_LIMIT);
        let mut last = String::new();
        while started.elapsed() < STARTUP_LIMIT {
            match self.send(&slow, function, None, payload.to_string().into_bytes()) {
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

    pub fn ok(&self, function: &str, what: &str, payload: &Value) -> Value {
        match self.invoke(function, payload) {
            Outcome::Ok(value) => value,
            Outcome::Failed(error_type, message) => {
                panic!("{what}: function error {error_type}: {message}")
            }
        }
    }

    /// Asserts a function error of `error_type`; returns its message.
    pub fn fails(&self, function: &str, what: &str, payload: &Value, error_type: &str) -> String {
        self.fails_with_bytes(function, what, payload.to_string().into_bytes(), error_type)
    }

    /// `fails` for a payload given as bytes, whatever they are.
    pub fn fails_with_bytes(
        &self,
        function: &str,
        what: &str,
        payload: Vec<u8>,
        error_type: &str,
    ) -> String {
        match self.invoke_with_bytes(function, None, payload) {
            Outcome::Failed(found, message) => {
                assert_eq!(found, error_type, "{what}: {message}");
                assert!(!message.is_empty(), "{what}: empty errorMessage");
                message
            }
            Outcome::Ok(value) => panic!("{what}: succeeded with {value}, expected {error_type}"),
        }
    }
}

/// `value`, checked to be a UUID string.
pub fn uuid_string(what: &str, value: &Value) -> String {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("{what}: {value} is not a string"));
    Uuid::parse_str(text).unwrap_or_else(|_| panic!("{what}: {text} is not a UUID"));
    text.to_owned()
}

/// An HTTP response event: status and the parsed JSON body (`Null` when there is none).
pub fn http_reply(what: &str, response: &Value) -> (u64, Value) {
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

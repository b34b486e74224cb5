//! The functions as Lambda runs them: a release binary started as a process with the
//! environment Lambda gives it, polling a minimal Lambda Runtime API emulator for its
//! invocations.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::timeout;

/// A function process: a release binary with the environment Lambda gives it. Killed when
/// dropped.
pub(super) struct Function(Child);

impl Function {
    /// `spawn` with DATABASE_URL and more variables.
    pub(super) fn spawn_with(
        binary: &Path,
        name: &str,
        api: &RuntimeApi,
        database_url: &str,
        vars: &[(&str, &str)],
    ) -> Function {
        let mut env = vec![("DATABASE_URL", database_url.to_owned())];
        env.extend(vars.iter().map(|(key, value)| (*key, value.to_string())));
        Function::spawn(binary, name, api, &env)
    }

    /// Starts `binary` with Lambda's variables and `env` (the login).
    pub(super) fn spawn(
        binary: &Path,
        name: &str,
        api: &RuntimeApi,
        env: &[(&str, String)],
    ) -> Function {
        let child = Command::new(binary)
            .env_clear()
            .env("AWS_LAMBDA_RUNTIME_API", format!("127.0.0.1:{}", api.port))
            .env("AWS_LAMBDA_FUNCTION_NAME", name)
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .envs(env.iter().map(|(name, value)| (name, value)))
            .stdout(Stdio::null()) // its log lines
            .spawn()
            .unwrap_or_else(|err| panic!("start {}: {err}", binary.display()));
        Function(child)
    }

    pub(super) fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Whether the process is still running (it never exits by itself: an exit is a crash).
    pub(super) fn running(&mut self) -> bool {
        matches!(self.0.try_wait(), Ok(None))
    }

    /// A memory figure of /proc/PID/status (VmRSS: now, VmHWM: peak), in MiB.
    pub(super) fn memory_mib(&self, field: &str) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.0.id()))
            .expect("the function's /proc status");
        let kib: f64 = status
            .lines()
            .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc status"));
        kib / 1024.0
    }
}

impl Drop for Function {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What a function answered: its result, or its error body.
pub(super) type Outcome = Result<Value, Value>;

struct Invocation {
    id: String,
    payload: String,
    deadline_ms: u128,
    reply: oneshot::Sender<Outcome>,
}

/// A minimal Lambda Runtime API: the HTTP/1.1 interface a function's runtime polls for
/// invocations (`GET .../invocation/next`) and answers (`POST .../invocation/{id}/response`
/// or `/error`). One per function process.
pub(super) struct RuntimeApi {
    port: u16,
    queue: mpsc::UnboundedSender<Invocation>,
    shared: Arc<Shared>,
    next_id: AtomicU64,
    acceptor: JoinHandle<()>,
}

/// What the connections share: the queued invocations, those handed out and waiting for their
/// answer, and when the first poll came.
struct Shared {
    queued: tokio::sync::Mutex<mpsc::UnboundedReceiver<Invocation>>,
    waiting: Mutex<HashMap<String, oneshot::Sender<Outcome>>>,
    first_poll: OnceLock<Instant>,
}

const API: &str = "/2018-06-01/runtime";

impl RuntimeApi {
    pub(super) async fn start() -> RuntimeApi {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let (queue, queued) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            queued: tokio::sync::Mutex::new(queued),
            waiting: Mutex::new(HashMap::new()),
            first_poll: OnceLock::new(),
        });
        let acceptor = tokio::spawn({
            let shared = shared.clone();
            async move {
                while let Ok((stream, _)) = listener.accept().await {
                    tokio::spawn(serve(stream, shared.clone()));
                }
            }
        });
        RuntimeApi {
            port,
            queue,
            shared,
            next_id: AtomicU64::new(1),
            acceptor,
        }
    }

    /// Queues an invocation that must be answered within `time_limit`; the receiver gets
    /// the answer.
    pub(super) fn queue(&self, payload: &Value, time_limit: Duration) -> Reply {
        let (reply, answer) = oneshot::channel();
        let deadline = SystemTime::now() + time_limit;
        let id = format!("bench-{}", self.next_id.fetch_add(1, Ordering::Relaxed));
        self.queue
            .send(Invocation {
                id,
                payload: payload.to_string(),
                deadline_ms: deadline
                    .duration_since(UNIX_EPOCH)
                    .expect("clock")
                    .as_millis(),
                reply,
            })
            .expect("the API is running");
        Reply { answer, time_limit }
    }

    pub(super) async fn invoke(&self, payload: &Value, time_limit: Duration) -> Outcome {
        outcome(self.queue(payload, time_limit)).await
    }

    pub(super) fn first_poll(&self) -> Option<Instant> {
        self.shared.first_poll.get().copied()
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

pub(super) struct Reply {
    answer: oneshot::Receiver<Outcome>,
    time_limit: Duration,
}

pub(super) async fn outcome(reply: Reply) -> Outcome {
    timeout(reply.time_limit + Duration::from_secs(30), reply.answer)
        .await
        .expect("the function answers in time")
        .expect("the function answers")
}

/// One keep-alive connection of the runtime.
async fn serve(stream: TcpStream, shared: Arc<Shared>) {
    stream.set_nodelay(true).expect("nodelay");
    let (reader, mut writer) = stream.into_split();
    let mut reader = BufReader::new(reader);
    while let Some((method, path, body)) = read_request(&mut reader).await {
        let response = if method == "GET" && path == format!("{API}/invocation/next") {
            shared.first_poll.get_or_init(Instant::now);
            // None: the benchmark is done with this function.
            let Some(invocation) = shared.queued.lock().await.recv().await else {
                return;
            };
            let headers = format!(
                "Lambda-Runtime-Aws-Request-Id: {}\r\n\
                 Lambda-Runtime-Deadline-Ms: {}\r\n\
                 Lambda-Runtime-Invoked-Function-Arn: arn:aws:lambda:us-east-1:123456789012:function:bench\r\n\
                 Lambda-Runtime-Trace-Id: Root=1-00000000-000000000000000000000000;Sampled=0\r\n",
                invocation.id, invocation.deadline_ms
            );
            let response = http_response("200 OK", &headers, &invocation.payload);
            shared
                .waiting
                .lock()
                .expect("lock")
                .insert(invocation.id, invocation.reply);
            response
        } else if let Some((id, kind)) = path
            .strip_prefix(&format!("{API}/invocation/"))
            .and_then(|rest| rest.split_once('/'))
            .filter(|_| method == "POST")
        {
            let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let answer = if kind == "response" {
                Ok(body)
            } else {
                Err(body)
            };
            if let Some(reply) = shared.waiting.lock().expect("lock").remove(id) {
                let _ = reply.send(answer);
            }
            http_response("202 Accepted", "", r#"{"status":"OK"}"#)
        } else if method == "POST" && path == format!("{API}/init/error") {
            eprintln!(
                "the function failed to start: {}",
                String::from_utf8_lossy(&body)
            );
            http_response("202 Accepted", "", r#"{"status":"OK"}"#)
        } else {
            http_response("404 Not Found", "", "{}")
        };
        if writer.write_all(response.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// Reads one request: method, path, body (sized by Content-Length, which the runtime
/// client always sends). None when the connection closes.
async fn read_request(reader: &mut BufReader<OwnedReadHalf>) -> Option<(String, String, Vec<u8>)> {
    let mut line = String::new();
    if reader.read_line(&mut line).await.ok()? == 0 {
        return None;
    }
    let mut words = line.split_whitespace();
    let (method, path) = (words.next()?.to_owned(), words.next()?.to_owned());
    let mut length = 0;
    loop {
        line.clear();
        if reader.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        let Some((name, value)) = line.trim_end().split_once(':') else {
            break; // the blank line that ends the headers
        };
        if name.eq_ignore_ascii_case("content-length") {
            length = value.trim().parse().ok()?;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).await.ok()?;
    Some((method, path, body))
}

fn http_response(status: &str, headers: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{headers}\r\n{body}",
        body.len()
    )
}

//! A stand-in for CloudFormation's pre-signed response URL: plain HTTP on 127.0.0.1, recording
//! every connection and request it gets and answering with a status of the test's choosing,
//! or with whole answers of the test's making (an AWS endpoint's, a hostile one's). The cleanup
//! function sends its answers here only when `CUSTOM_RESOURCE_TEST_ENDPOINT` names it
//! (`origin`); the events still carry a URL of CloudFormation's own (`response_url`).

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use serde_json::Value;

/// A request the endpoint received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    /// Path and query as sent.
    pub target: String,
    /// The headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body, parsed (`Null` when it is not JSON).
    pub body: Value,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

pub struct ResponseEndpoint {
    port: u16,
    received: Arc<Mutex<Vec<Received>>>,
    connections: Arc<AtomicUsize>,
    status: Arc<AtomicU16>,
    answers: Arc<Mutex<VecDeque<Vec<u8>>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// The path and query of the URL: a pre-signed URL's shape, percent-escapes included.
pub const TARGET: &str =
    "/arn%3Aaws%3Acloudformation%3Aus-east-1%3A123456789012%3Astack/test/1%7CMigrations%7Cr1?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=SIGNATURE-SECRET";

/// The host of CloudFormation's response bucket of us-east-1, as its pre-signed URLs name it.
pub const RESPONSE_HOST: &str =
    "cloudformation-custom-resource-response-useast1.s3.us-east-1.amazonaws.com";

/// A pre-signed URL as CloudFormation puts it in the events of a stack in us-east-1.
pub fn response_url() -> String {
    format!("https://{RESPONSE_HOST}{TARGET}")
}

impl ResponseEndpoint {
    /// Listening on 127.0.0.1, answering 200.
    pub fn start() -> ResponseEndpoint {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the response endpoint");
        let port = listener.local_addr().expect("its address").port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let status = Arc::new(AtomicU16::new(200));
        let answers = Arc::new(Mutex::new(VecDeque::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let (received, connections, status, answers, stop) = (
                received.clone(),
                connections.clone(),
                status.clone(),
                answers.clone(),
                stop.clone(),
            );
            move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    // Counted before the request is read, so before any answer is sent.
                    connections.fetch_add(1, Ordering::SeqCst);
                    if let Ok(stream) = stream {
                        serve(stream, &received, &status, &answers);
                    }
                }
            }
        });
        ResponseEndpoint {
            port,
            received,
            connections,
            status,
            answers,
            stop,
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT`: the value of `CUSTOM_RESOURCE_TEST_ENDPOINT` that sends the
    /// answers here, or where to point a client that adds its own path.
    pub fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Its own URL: what a forged event would name to reach it directly.
    pub fn url(&self) -> String {
        format!("{}{TARGET}", self.origin())
    }

    /// Answers the next requests, one each in order, with `answers` as they are (status line,
    /// headers and body), closing the connection after each; then with the status again.
    pub fn answer_raw(&self, answers: impl IntoIterator<Item = Vec<u8>>) {
        self.answers.lock().expect("lock").extend(answers);
    }

    /// Answers `status` from now on.
    pub fn answer_with(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    /// What it received so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("lock").clone()
    }

    /// How many connections it accepted so far, a request sent on them or not.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for ResponseEndpoint {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop, which then sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(
    stream: TcpStream,
    received: &Mutex<Vec<Received>>,
    status: &AtomicU16,
    answers: &Mutex<VecDeque<Vec<u8>>>,
) {
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(stream) => stream,
        Err(_) => return,
    });
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return; // the wake-up connection of Drop
    }
    let mut words = line.split_whitespace();
    let (method, target) = (
        words.next().unwrap_or_default().to_owned(),
        words.next().unwrap_or_default().to_owned(),
    );
    let mut headers = Vec::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        match line.trim_end().split_once(':') {
            Some((name, value)) => {
                headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()))
            }
            None => break, // the blank line that ends the headers
        }
    }
    let length = headers
        .iter()
        .find(|(name, _)| name == "content-length")
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    let _ = reader.read_exact(&mut body);
    received.lock().expect("lock").push(Received {
        method,
        target,
        headers,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    });
    let answer = answers
        .lock()
        .expect("lock")
        .pop_front()
        .unwrap_or_else(|| {
            let status = status.load(Ordering::SeqCst);
            format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").into()
        });
    // The client may hang up part-way through an answer it refuses.
    let mut stream = stream;
    let _ = stream.write_all(&answer);
}

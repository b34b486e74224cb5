//! A TCP proxy between the storage and PostgreSQL. It counts the round trips the client asks
//! for and notes when the first byte came (for the benchmarks), and can misbehave the way
//! networks do (for the fault tests): go silent (a NAT or proxy that forgot the connection),
//! or cut a connection right after forwarding a given statement, so the server applies it but
//! its answer is lost. It can also hold every byte for a while each way, as a network distance
//! does, without holding up the bytes behind it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;

use crate::{host_and_port, with_param};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Forward,
    /// Accept and read, forward nothing either way.
    Silent,
    /// Forward the client's bytes holding this text, then cut the connection before any
    /// answer comes back; then go back to forwarding.
    CutAfter(String),
}

/// What the proxy and its connections share.
struct Shared {
    mode: Mutex<Mode>,
    /// Wakes connections to close them.
    cut_all: Notify,
    /// Connections the proxy has accepted so far.
    accepted: AtomicU64,
    /// Sync and Query messages the clients sent: each is one round trip.
    round_trips: AtomicU64,
    /// When the first byte from a client came.
    first_byte: OnceLock<Instant>,
    /// Per open connection: set to stop forwarding on it.
    silencers: Mutex<Vec<Arc<AtomicBool>>>,
    /// How long bytes take each way through the proxy.
    one_way_delay: Duration,
}

pub struct Proxy {
    pub port: u16,
    upstream: (String, u16),
    shared: Arc<Shared>,
    acceptor: JoinHandle<()>,
}

impl Proxy {
    /// A proxy to the server `url` names.
    pub async fn start(url: &str) -> Proxy {
        Proxy::start_delayed(url, Duration::ZERO).await
    }

    /// A proxy that delivers each byte `one_way_delay` after it came, both ways, as a network
    /// that far would (bytes keep flowing meanwhile: pipelined requests are not serialised).
    pub async fn start_delayed(url: &str, one_way_delay: Duration) -> Proxy {
        let upstream = host_and_port(url);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let shared = Arc::new(Shared {
            mode: Mutex::new(Mode::Forward),
            cut_all: Notify::new(),
            accepted: AtomicU64::new(0),
            round_trips: AtomicU64::new(0),
            first_byte: OnceLock::new(),
            silencers: Mutex::new(Vec::new()),
            one_way_delay,
        });
        let acceptor = tokio::spawn({
            let (shared, upstream) = (shared.clone(), upstream.clone());
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    shared.accepted.fetch_add(1, Ordering::SeqCst);
                    let Ok(server) = TcpStream::connect(&upstream).await else {
                        continue;
                    };
                    // Nagle would add its delay to every round trip the benchmark measures.
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let silenced = Arc::new(AtomicBool::new(false));
                    shared.silencers.lock().unwrap().push(silenced.clone());
                    tokio::spawn(relay(client, server, shared.clone(), silenced));
                }
            }
        });
        Proxy {
            port,
            upstream,
            shared,
            acceptor,
        }
    }

    /// `url` (of the server behind the proxy) rewritten to go through the proxy, without TLS
    /// (the proxy reads the protocol).
    pub fn redirect(&self, url: &str) -> String {
        let (host, port) = &self.upstream;
        let proxy = format!("@127.0.0.1:{}", self.port);
        let with_port = format!("@{host}:{port}");
        let redirected = if url.contains(&with_port) {
            url.replacen(&with_port, &proxy, 1)
        } else {
            url.replacen(&format!("@{host}"), &proxy, 1)
        };
        assert_ne!(redirected, url, "{url} is not postgres://user@host...");
        with_param(&redirected, "sslmode=disable")
    }

    /// Stops forwarding on every connection open now, leaving them open; new connections
    /// are forwarded as the mode says.
    pub fn silence_open_connections(&self) {
        for silenced in self.shared.silencers.lock().unwrap().iter() {
            silenced.store(true, Ordering::SeqCst);
        }
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.shared.mode.lock().unwrap() = mode;
    }

    /// Closes every open connection (as a database restart would).
    pub fn cut_all(&self) {
        self.shared.cut_all.notify_waiters();
    }

    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// The round trips clients have asked for so far: the Sync ('S') and simple Query ('Q')
    /// messages they sent, each of which the server answers with one ReadyForQuery.
    pub fn round_trips(&self) -> u64 {
        self.shared.round_trips.load(Ordering::SeqCst)
    }

    pub fn first_byte(&self) -> Option<Instant> {
        self.shared.first_byte.get().copied()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.acceptor.abort();
        self.cut_all();
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty()
        && haystack
            .windows(needle.len())
            .any(|window| window == needle)
}

async fn relay(
    client: TcpStream,
    server: TcpStream,
    shared: Arc<Shared>,
    silenced: Arc<AtomicBool>,
) {
    let (mut client_read, client_write) = client.into_split();
    let (mut server_read, server_write) = server.into_split();
    let mut client_write = Outlet::new(client_write, shared.one_way_delay);
    let mut server_write = Outlet::new(server_write, shared.one_way_delay);
    // Set once the statement to lose has gone up: nothing comes back down after it.
    let answer_lost = Arc::new(AtomicBool::new(false));
    let upstream = {
        let (shared, answer_lost, silenced) =
            (shared.clone(), answer_lost.clone(), silenced.clone());
        async move {
            let mut stream = FrontendStream::default();
            let mut buffer = vec![0u8; 64 * 1024];
            loop {
                let n = client_read.read(&mut buffer).await?;
                if n == 0 {
                    return Ok::<(), std::io::Error>(());
                }
                shared.first_byte.get_or_init(Instant::now);
                // Counted before forwarding: the count is in place before any answer.
                let round_trips = stream.round_trips(&buffer[..n]);
                shared.round_trips.fetch_add(round_trips, Ordering::SeqCst);
                let current = shared.mode.lock().unwrap().clone();
                if silenced.load(Ordering::SeqCst) {
                    continue;
                }
                match current {
                    Mode::Silent => continue,
                    Mode::Forward => server_write.write_all(&buffer[..n]).await?,
                    Mode::CutAfter(text) => {
                        let trigger = contains(&buffer[..n], text.as_bytes());
                        if trigger {
                            answer_lost.store(true, Ordering::SeqCst);
                            *shared.mode.lock().unwrap() = Mode::Forward;
                        }
                        server_write.write_all(&buffer[..n]).await?;
                        if trigger {
                            // Let the server apply it, then cut the connection.
                            tokio::time::sleep(Duration::from_millis(300)).await;
                            return Ok(());
                        }
                    }
                }
            }
        }
    };
    let downstream = {
        let shared = shared.clone();
        async move {
            let mut buffer = vec![0u8; 64 * 1024];
            loop {
                let n = server_read.read(&mut buffer).await?;
                if n == 0 {
                    return Ok::<(), std::io::Error>(());
                }
                let silent =
                    *shared.mode.lock().unwrap() == Mode::Silent || silenced.load(Ordering::SeqCst);
                if !silent && !answer_lost.load(Ordering::SeqCst) {
                    client_write.write_all(&buffer[..n]).await?;
                }
            }
        }
    };
    // Whichever side ends first (or a cut of all) drops both sockets.
    tokio::select! {
        _ = upstream => {}
        _ = downstream => {}
        _ = shared.cut_all.notified() => {}
    }
}

/// Where one direction's bytes go: written at once, or `delay` after they came. Delayed bytes
/// wait on a thread of their own, which sleeps to the microsecond (Tokio's timer counts whole
/// milliseconds), then hand them in order to a task that writes them.
enum Outlet {
    Now(OwnedWriteHalf),
    Later {
        delay: Duration,
        queue: std::sync::mpsc::Sender<(Instant, Vec<u8>)>,
        writer: JoinHandle<()>,
    },
}

impl Outlet {
    fn new(mut socket: OwnedWriteHalf, delay: Duration) -> Outlet {
        if delay.is_zero() {
            return Outlet::Now(socket);
        }
        let (queue, queued) = std::sync::mpsc::channel::<(Instant, Vec<u8>)>();
        let (due, mut due_now) = mpsc::unbounded_channel::<Vec<u8>>();
        std::thread::spawn(move || {
            fine_timer_slack();
            // Ends when the outlet is dropped (queue closed) or its writer is gone.
            let mut next = queued.recv().ok();
            while let Some((at, mut bytes)) = next.take() {
                std::thread::sleep(at.saturating_duration_since(Instant::now()));
                // Whatever else is due by now goes in the same write, as a network delivers
                // the segments of one reply together rather than one wake-up apart.
                let now = Instant::now();
                while let Ok((at, more)) = queued.try_recv() {
                    if at > now {
                        next = Some((at, more));
                        break;
                    }
                    bytes.extend_from_slice(&more);
                }
                if due.send(bytes).is_err() {
                    return;
                }
                if next.is_none() {
                    next = queued.recv().ok();
                }
            }
        });
        let writer = tokio::spawn(async move {
            while let Some(bytes) = due_now.recv().await {
                if socket.write_all(&bytes).await.is_err() {
                    return;
                }
            }
        });
        Outlet::Later {
            delay,
            queue,
            writer,
        }
    }

    async fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Outlet::Now(socket) => socket.write_all(bytes).await,
            Outlet::Later { delay, queue, .. } => queue
                .send((Instant::now() + *delay, bytes.to_vec()))
                .map_err(|_| std::io::ErrorKind::BrokenPipe.into()),
        }
    }
}

impl Drop for Outlet {
    fn drop(&mut self) {
        // A cut connection delivers nothing more.
        if let Outlet::Later { writer, .. } = self {
            writer.abort();
        }
    }
}

/// Lets this thread's sleeps end when asked rather than up to 50 µs later (Linux's default
/// timer slack), which would otherwise lengthen a 300 µs delay by a sixth.
fn fine_timer_slack() {
    // SAFETY: PR_SET_TIMERSLACK takes one integer argument and changes only this thread.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong);
    }
}

/// Where a client's byte stream stands in the PostgreSQL frontend protocol: the startup phase
/// sends untyped messages (length, body: the startup packet, and an SSLRequest before it);
/// after it every message is a type byte, then a length that counts itself but not the type.
#[derive(Default)]
struct FrontendStream {
    typed: bool,
    header: Vec<u8>,
    /// Body bytes of the current message still to come.
    skip: usize,
}

impl FrontendStream {
    /// Reads the next bytes of the stream; returns how many Sync and Query messages began.
    fn round_trips(&mut self, mut bytes: &[u8]) -> u64 {
        let mut count = 0;
        while !bytes.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(bytes.len());
                (self.skip, bytes) = (self.skip - n, &bytes[n..]);
                continue;
            }
            let header_len = if self.typed { 5 } else { 4 };
            let n = (header_len - self.header.len()).min(bytes.len());
            self.header.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if self.header.len() < header_len {
                break;
            }
            let length = &self.header[header_len - 4..];
            let length = u32::from_be_bytes(length.try_into().expect("4 bytes")) as usize;
            self.skip = length.saturating_sub(4);
            if self.typed {
                count += u64::from(matches!(self.header[0], b'S' | b'Q'));
            } else if length != 8 {
                // 8 bytes is an SSLRequest or GSSENCRequest; anything else is the startup
                // packet, after which messages are typed.
                self.typed = true;
            }
            self.header.clear();
        }
        count
    }
}

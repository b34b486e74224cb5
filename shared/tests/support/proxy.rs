//! A TCP proxy between the storage and PostgreSQL that can misbehave the way networks do:
//! go silent (a NAT or proxy that forgot the connection), or cut a connection right after
//! forwarding a given statement, so the server applies it but its answer is lost.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Forward,
    /// Accept and read, forward nothing either way.
    Silent,
    /// Forward the client's bytes holding this text, then cut the connection before any
    /// answer comes back; then go back to forwarding.
    CutAfter(String),
}

pub struct Proxy {
    pub port: u16,
    mode: Arc<Mutex<Mode>>,
    /// Wakes connections to close them.
    cut_all: Arc<Notify>,
    acceptor: JoinHandle<()>,
    /// Connections the proxy has accepted so far.
    accepted: Arc<Mutex<u32>>,
    /// Per open connection: set to stop forwarding on it.
    silencers: Arc<Mutex<Vec<Arc<AtomicBool>>>>,
}

impl Proxy {
    pub async fn start(upstream_port: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let mode = Arc::new(Mutex::new(Mode::Forward));
        let cut_all = Arc::new(Notify::new());
        let accepted = Arc::new(Mutex::new(0));
        let silencers = Arc::new(Mutex::new(Vec::new()));
        let acceptor = tokio::spawn({
            let (mode, cut_all, accepted, silencers) = (
                mode.clone(),
                cut_all.clone(),
                accepted.clone(),
                silencers.clone(),
            );
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    *accepted.lock().unwrap() += 1;
                    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream_port)).await else {
                        continue;
                    };
                    let silenced = Arc::new(AtomicBool::new(false));
                    silencers.lock().unwrap().push(silenced.clone());
                    tokio::spawn(relay(
                        client,
                        server,
                        mode.clone(),
                        silenced,
                        cut_all.clone(),
                    ));
                }
            }
        });
        Proxy {
            port,
            mode,
            cut_all,
            acceptor,
            accepted,
            silencers,
        }
    }

    /// Stops forwarding on every connection open now, leaving them open; new connections
    /// are forwarded as the mode says.
    pub fn silence_open_connections(&self) {
        for silenced in self.silencers.lock().unwrap().iter() {
            silenced.store(true, Ordering::SeqCst);
        }
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    /// Closes every open connection (as a database restart would).
    pub fn cut_all(&self) {
        self.cut_all.notify_waiters();
    }

    pub fn accepted(&self) -> u32 {
        *self.accepted.lock().unwrap()
    }

    /// `url` (of the server behind the proxy) rewritten to go through the proxy.
    pub fn url(&self, url: &str, upstream_port: u16) -> String {
        url.replacen(
            &format!(":{upstream_port}/"),
            &format!(":{}/", self.port),
            1,
        )
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
    mode: Arc<Mutex<Mode>>,
    silenced: Arc<AtomicBool>,
    cut_all: Arc<Notify>,
) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    // Set once the statement to lose has gone up: nothing comes back down after it.
    let answer_lost = Arc::new(AtomicBool::new(false));
    let upstream = {
        let (mode, answer_lost, silenced) = (mode.clone(), answer_lost.clone(), silenced.clone());
        async move {
            let mut buffer = vec![0u8; 64 * 1024];
            loop {
                let n = client_read.read(&mut buffer).await?;
                if n == 0 {
                    return Ok::<(), std::io::Error>(());
                }
                let current = mode.lock().unwrap().clone();
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
                            *mode.lock().unwrap() = Mode::Forward;
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
    let downstream = async move {
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let n = server_read.read(&mut buffer).await?;
            if n == 0 {
                return Ok::<(), std::io::Error>(());
            }
            let silent = *mode.lock().unwrap() == Mode::Silent || silenced.load(Ordering::SeqCst);
            if !silent && !answer_lost.load(Ordering::SeqCst) {
                client_write.write_all(&buffer[..n]).await?;
            }
        }
    };
    // Whichever side ends first (or a cut of all) drops both sockets.
    tokio::select! {
        _ = upstream => {}
        _ = downstream => {}
        _ = cut_all.notified() => {}
    }
}

//! The password guard: the connection's stream, which reads the server's messages until
//! authentication is over and refuses to let a server whose identity was not checked ask for
//! the password in a form that reveals it.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsStream};
use tokio_postgres::Socket;
use tokio_postgres_rustls::MakeRustlsConnect;

/// What the stream runs over: the socket, or TLS on it.
pub(crate) enum Transport {
    Plain(Socket),
    /// Boxed: a TLS session's buffers are a kilobyte, the socket a few words.
    Tls(Box<RustlsStream>),
}

/// The TLS stream of tokio-postgres-rustls over the socket.
pub(crate) type RustlsStream = <MakeRustlsConnect as MakeTlsConnect<Socket>>::Stream;

/// Why a connection was given up before tokio-postgres could go on; `attempt::connect_error`
/// maps it to the caller's error.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Refused {
    #[error("server does not support TLS")]
    ServerWithoutTls,
    /// The method the server asked for: "cleartext" or "MD5".
    #[error("the server asked for the password in {0} without being verified")]
    PasswordRevealed(&'static str),
}

impl Refused {
    /// The refusal behind a failed connect, if that is what it was.
    pub(crate) fn of(err: &tokio_postgres::Error) -> Option<&Refused> {
        std::error::Error::source(err)?
            .downcast_ref::<io::Error>()?
            .get_ref()?
            .downcast_ref::<Refused>()
    }
}

/// The connection's stream. Until authentication is over it reads the server's messages
/// as they pass; when a server that was not verified asks for the password in cleartext or
/// MD5, the read fails and tokio-postgres ends the connection without answering. SCRAM is
/// let through: it never reveals the password. MD5 is not: its answer, an MD5 of the
/// password's MD5 and a salt the server picks, lets a fake server guess the password offline
/// at MD5 speed.
pub struct Guarded {
    transport: Transport,
    /// `None` once authentication is over, or from the start when the server was verified.
    watch: Option<AuthWatch>,
}

impl Guarded {
    pub(crate) fn new(transport: Transport, guard: bool) -> Guarded {
        Guarded {
            transport,
            watch: guard.then(AuthWatch::default),
        }
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match &mut this.transport {
            Transport::Plain(socket) => ready!(Pin::new(socket).poll_read(cx, buf))?,
            Transport::Tls(stream) => ready!(Pin::new(stream).poll_read(cx, buf))?,
        }
        if let Some(watch) = &mut this.watch {
            match watch.scan(&buf.filled()[before..]) {
                Scan::Authenticating => {}
                Scan::Over => this.watch = None,
                Scan::PasswordAsked(method) => {
                    // The request never reaches tokio-postgres.
                    buf.set_filled(before);
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::PermissionDenied,
                        Refused::PasswordRevealed(method),
                    )));
                }
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().transport {
            Transport::Plain(socket) => Pin::new(socket).poll_write(cx, buf),
            Transport::Tls(stream) => Pin::new(stream).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().transport {
            Transport::Plain(socket) => Pin::new(socket).poll_flush(cx),
            Transport::Tls(stream) => Pin::new(stream).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().transport {
            Transport::Plain(socket) => Pin::new(socket).poll_shutdown(cx),
            Transport::Tls(stream) => Pin::new(stream).poll_shutdown(cx),
        }
    }
}

impl TlsStream for Guarded {
    fn channel_binding(&self) -> ChannelBinding {
        match &self.transport {
            Transport::Plain(_) => ChannelBinding::none(),
            Transport::Tls(stream) => stream.channel_binding(),
        }
    }
}

/// Where the server's messages stand, read in pieces of any size. Each message is a type
/// byte, a 4-byte length that counts itself, and a body; an Authentication message ('R')
/// starts its body with a 4-byte code.
#[derive(Default)]
struct AuthWatch {
    /// Type, length, and for 'R' the code, as far as received.
    header: [u8; 9],
    have: usize,
    /// Bytes of the current message's body still to pass unread.
    skip: usize,
}

#[derive(Debug, PartialEq, Eq)]
enum Scan {
    Authenticating,
    /// AuthenticationOk, or a message tokio-postgres will refuse anyway (a length too short).
    Over,
    PasswordAsked(&'static str),
}

impl AuthWatch {
    fn scan(&mut self, mut bytes: &[u8]) -> Scan {
        loop {
            let skipped = self.skip.min(bytes.len());
            self.skip -= skipped;
            bytes = &bytes[skipped..];
            if bytes.is_empty() {
                return Scan::Authenticating;
            }
            let wanted = if self.have > 0 && self.header[0] == b'R' {
                9
            } else {
                5
            };
            let taken = (wanted - self.have).min(bytes.len());
            self.header[self.have..self.have + taken].copy_from_slice(&bytes[..taken]);
            self.have += taken;
            bytes = &bytes[taken..];
            if self.have < 5 || (self.header[0] == b'R' && self.have < 9) {
                continue;
            }
            let length = u32::from_be_bytes([
                self.header[1],
                self.header[2],
                self.header[3],
                self.header[4],
            ]) as usize;
            let read = if self.header[0] == b'R' { 8 } else { 4 };
            if length < read {
                return Scan::Over;
            }
            if self.header[0] == b'R' {
                match u32::from_be_bytes([
                    self.header[5],
                    self.header[6],
                    self.header[7],
                    self.header[8],
                ]) {
                    0 => return Scan::Over,
                    3 => return Scan::PasswordAsked("cleartext"),
                    5 => return Scan::PasswordAsked("MD5"),
                    _ => {}
                }
            }
            self.skip = length - read;
            self.have = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An Authentication message with `code` and `extra` body bytes.
    fn auth(code: u32, extra: usize) -> Vec<u8> {
        let mut message = vec![b'R'];
        message.extend((8 + extra as u32).to_be_bytes());
        message.extend(code.to_be_bytes());
        message.extend(std::iter::repeat_n(7, extra));
        message
    }

    fn message(kind: u8, body: usize) -> Vec<u8> {
        let mut message = vec![kind];
        message.extend((4 + body as u32).to_be_bytes());
        message.extend(std::iter::repeat_n(b'R', body));
        message
    }

    /// The outcome of reading `stream` in pieces of `piece` bytes.
    fn scan_in_pieces(stream: &[u8], piece: usize) -> Scan {
        let mut watch = AuthWatch::default();
        for chunk in stream.chunks(piece) {
            match watch.scan(chunk) {
                Scan::Authenticating => {}
                done => return done,
            }
        }
        Scan::Authenticating
    }

    #[test]
    fn the_watch_finds_a_password_request_wherever_the_reads_split_it() {
        let negotiate = message(b'v', 9);
        let cases = [
            ([auth(3, 0)].concat(), Scan::PasswordAsked("cleartext")),
            (
                [negotiate.clone(), auth(5, 4)].concat(),
                Scan::PasswordAsked("MD5"),
            ),
            // SCRAM: mechanisms, continue, final, then OK; a later cleartext request is
            // authentication's business no more.
            (
                [
                    auth(10, 14),
                    auth(11, 30),
                    auth(12, 20),
                    auth(0, 0),
                    auth(3, 0),
                ]
                .concat(),
                Scan::Over,
            ),
            // Trust: OK at once.
            ([auth(0, 0), message(b'S', 20)].concat(), Scan::Over),
            // A body full of 'R' bytes and codes is skipped, not read as messages.
            (
                [message(b'N', 40), auth(3, 0)].concat(),
                Scan::PasswordAsked("cleartext"),
            ),
        ];
        for (stream, expected) in cases {
            for piece in 1..=stream.len() {
                assert_eq!(scan_in_pieces(&stream, piece), expected, "piece {piece}");
            }
        }
    }

    #[test]
    fn the_watch_stops_at_a_length_too_short_to_be_a_message() {
        let mut short = auth(3, 0);
        short[4] = 7;
        assert_eq!(scan_in_pieces(&short, 1), Scan::Over);
    }
}

//! One HTTP/1.1 request at a time, over TLS (or plain HTTP to a loopback endpoint, for tests,
//! local emulators and a container credentials endpoint): all the storage asks of AWS, on the
//! rustls it already carries for the database. One connection per request: requests are rare
//! (a cold start, a rotation, credentials about to expire), so keeping one open would buy
//! nothing.

use std::fmt;
use std::io;
use std::net::IpAddr;
use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Where an API is served: `https://host[:port]`, or `http://` to a loopback address.
#[derive(Clone, PartialEq, Eq)]
pub struct Endpoint {
    tls: bool,
    host: String,
    port: u16,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        write!(f, "{scheme}://{}", self.authority())
    }
}

impl Endpoint {
    pub(crate) fn https(host: String) -> Endpoint {
        Endpoint {
            tls: true,
            host,
            port: 443,
        }
    }

    /// Parses an endpoint URL as the AWS SDKs take it (`AWS_ENDPOINT_URL...`): scheme, host,
    /// optional port, no path. The problem, in words, when it is not one.
    pub(crate) fn parse(url: &str) -> Result<Endpoint, &'static str> {
        let (tls, rest) = if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err("must start with https:// (or http:// for a loopback address)");
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#', '@']) || rest.is_empty() {
            return Err("must be scheme://host[:port], without a path, query or user");
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) if !port.contains(']') => {
                let port = port.parse().map_err(|_| "has a malformed port")?;
                (host, port)
            }
            _ => (rest, if tls { 443 } else { 80 }),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let valid = |c: char| c.is_ascii_alphanumeric() || "-.:".contains(c);
        if host.is_empty() || !host.chars().all(valid) {
            return Err("has a malformed host");
        }
        // A signed request and the secret it fetches never cross a network in clear.
        if !tls && !host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback()) && host != "localhost" {
            return Err("must use https:// unless it is a loopback address");
        }
        Ok(Endpoint {
            tls,
            host: host.to_owned(),
            port,
        })
    }

    /// Parses a URL with a path (`AWS_CONTAINER_CREDENTIALS_FULL_URI`): the endpoint as
    /// `parse` takes it, and the path and query to request (`/` when there is none).
    pub(crate) fn parse_with_path(url: &str) -> Result<(Endpoint, String), &'static str> {
        let after_scheme = url.find("://").map_or(0, |at| at + 3);
        let (base, path) = match url[after_scheme..].find('/') {
            Some(at) => url.split_at(after_scheme + at),
            None => (url, "/"),
        };
        // The path goes on the request line as it is.
        if !path.chars().all(|c| c.is_ascii_graphic()) || path.contains('#') {
            return Err("has a malformed path");
        }
        Ok((Endpoint::parse(base)?, path.to_owned()))
    }

    /// The Host header (and what SigV4 signs): the port only when not the scheme's default.
    pub(crate) fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        match (self.tls, self.port) {
            (true, 443) | (false, 80) => host,
            _ => format!("{host}:{}", self.port),
        }
    }
}

/// A response: its status and body.
pub(crate) struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// The most a response may hold, head and framing included. The largest answer asked for is a
/// secret's: Secrets Manager keeps at most 64 KiB, which JSON escaping (`\u0000` for a control
/// character) grows at most six-fold, to 384 KiB with its ARN and version around it. Anything
/// larger is not the answer asked for, and is refused before it is held in memory.
const MAX_RESPONSE_BYTES: usize = 512 * 1024;

fn too_large() -> io::Error {
    malformed("response larger than 512 KiB")
}

/// Sends `method` `path` with `headers` (Host included) and `body` to `endpoint`. Errors
/// describe the transport, never the request or the response body.
pub(crate) async fn request(
    endpoint: &Endpoint,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> io::Result<Response> {
    let mut request = format!("{method} {path} HTTP/1.1\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!(
        "content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    ));
    let mut message = request.into_bytes();
    message.extend_from_slice(body);

    let socket = TcpStream::connect((endpoint.host.as_str(), endpoint.port)).await?;
    socket.set_nodelay(true)?;
    if !endpoint.tls {
        return exchange(socket, &message).await;
    }
    let name = ServerName::try_from(endpoint.host.clone())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "malformed host name"))?;
    let stream = TlsConnector::from(Arc::new(tls_config()))
        .connect(name, socket)
        .await?;
    exchange(stream, &message).await
}

/// The Mozilla root set: AWS endpoints have Amazon Trust Services certificates.
fn tls_config() -> ClientConfig {
    let roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    message: &[u8],
) -> io::Result<Response> {
    stream.write_all(message).await?;
    stream.flush().await?;
    let mut received = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        // Complete as soon as the framing says so: a server may close without TLS's
        // close_notify, which rustls reports as an error.
        if let Some(response) = parse(&received)? {
            return Ok(response);
        }
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            return parse_at_end(&received);
        }
        received.extend_from_slice(&chunk[..read]);
        if received.len() > MAX_RESPONSE_BYTES {
            return Err(too_large());
        }
    }
}

fn malformed(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// How the body of a response is delimited.
enum Framing {
    Length(usize),
    Chunked,
    /// Until the server closes the connection.
    Close,
}

/// The status, framing and where the body starts, once the whole head has arrived.
fn head(received: &[u8]) -> io::Result<Option<(u16, Framing, usize)>> {
    let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let text = std::str::from_utf8(&received[..end]).map_err(|_| malformed("non-UTF-8 head"))?;
    let mut lines = text.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.strip_prefix("HTTP/1."))
        .and_then(|line| line.get(2..5))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| malformed("malformed status line"))?;
    let mut framing = Framing::Close;
    for line in lines {
        let (name, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.trim();
        if name.eq_ignore_ascii_case("transfer-encoding") && value.eq_ignore_ascii_case("chunked") {
            framing = Framing::Chunked;
        } else if name.eq_ignore_ascii_case("content-length") {
            let length: usize = value
                .parse()
                .map_err(|_| malformed("malformed content-length"))?;
            if length > MAX_RESPONSE_BYTES {
                return Err(too_large());
            }
            if !matches!(framing, Framing::Chunked) {
                framing = Framing::Length(length);
            }
        }
    }
    Ok(Some((status, framing, end + 4)))
}

/// The response, when all of it has arrived.
fn parse(received: &[u8]) -> io::Result<Option<Response>> {
    let Some((status, framing, start)) = head(received)? else {
        return Ok(None);
    };
    let body = &received[start..];
    let body = match framing {
        Framing::Length(length) if body.len() >= length => body[..length].to_vec(),
        Framing::Chunked => match dechunk(body)? {
            Some(body) => body,
            None => return Ok(None),
        },
        _ => return Ok(None),
    };
    Ok(Some(Response { status, body }))
}

/// The response when the server has closed the connection.
fn parse_at_end(received: &[u8]) -> io::Result<Response> {
    match head(received)? {
        Some((status, Framing::Close, start)) => Ok(Response {
            status,
            body: received[start..].to_vec(),
        }),
        _ => Err(malformed("connection closed before the whole response")),
    }
}

/// A chunked body decoded, or `None` while its last chunk has not arrived.
fn dechunk(mut body: &[u8]) -> io::Result<Option<Vec<u8>>> {
    let mut out = Vec::new();
    loop {
        let Some(line_end) = body.windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let size = std::str::from_utf8(&body[..line_end])
            .ok()
            .map(|line| line.split(';').next().unwrap_or_default().trim())
            .and_then(|size| usize::from_str_radix(size, 16).ok())
            .ok_or_else(|| malformed("malformed chunk size"))?;
        // A hostile size (`ffffffffffffffff`) is refused before it enters any sum.
        if size > MAX_RESPONSE_BYTES - out.len() {
            return Err(too_large());
        }
        if size == 0 {
            return Ok(Some(out));
        }
        let data = line_end + 2;
        let data_end = data.checked_add(size).ok_or_else(too_large)?;
        let next = data_end.checked_add(2).ok_or_else(too_large)?;
        if body.len() < next {
            return Ok(None);
        }
        out.extend_from_slice(&body[data..data_end]);
        body = &body[next..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_as_the_sdks_take_them() {
        let parsed = Endpoint::parse("https://secretsmanager.eu-west-1.amazonaws.com").unwrap();
        assert_eq!(
            parsed,
            Endpoint::https("secretsmanager.eu-west-1.amazonaws.com".into())
        );
        assert_eq!(parsed.authority(), "secretsmanager.eu-west-1.amazonaws.com");
        let local = Endpoint::parse("http://127.0.0.1:5000/").unwrap();
        assert_eq!(local.authority(), "127.0.0.1:5000");
        assert_eq!(local.to_string(), "http://127.0.0.1:5000");
        assert_eq!(
            Endpoint::parse("http://[::1]:4566").unwrap().authority(),
            "[::1]:4566"
        );
        assert_eq!(
            Endpoint::parse("https://vpce.example:8443")
                .unwrap()
                .authority(),
            "vpce.example:8443"
        );
        assert_eq!(
            Endpoint::parse_with_path("http://127.0.0.1:5000/2018-06-01/credentials?a=1").unwrap(),
            (local.clone(), "/2018-06-01/credentials?a=1".to_owned())
        );
        assert_eq!(
            Endpoint::parse_with_path("http://127.0.0.1:5000").unwrap(),
            (local.clone(), "/".to_owned())
        );
        for bad in [
            "http://10.0.0.1/credentials",
            "http://127.0.0.1/a b",
            "http://127.0.0.1/a#b",
            "127.0.0.1/credentials",
        ] {
            assert!(Endpoint::parse_with_path(bad).is_err(), "{bad}");
        }
        for bad in [
            "secretsmanager.amazonaws.com",
            "http://secretsmanager.eu-west-1.amazonaws.com",
            "http://10.0.0.1:4566",
            "https://host/path",
            "https://user@host",
            "https://host:port",
            "https://",
            "https://ho st",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_response_is_complete_when_its_framing_says_so() {
        let whole = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        for cut in 0..whole.len() {
            assert!(parse(&whole[..cut]).unwrap().is_none(), "{cut}");
        }
        let response = parse(whole).unwrap().unwrap();
        assert_eq!((response.status, &response.body[..]), (200, &b"hello"[..]));

        let chunked = b"HTTP/1.1 400 Bad\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n";
        for cut in 0..chunked.len() - 2 {
            assert!(parse(&chunked[..cut]).unwrap().is_none(), "{cut}");
        }
        let response = parse(chunked).unwrap().unwrap();
        assert_eq!((response.status, &response.body[..]), (400, &b"abcde"[..]));

        let unframed = b"HTTP/1.0 200 OK\r\n\r\nuntil the end";
        assert!(parse(unframed).unwrap().is_none());
        assert_eq!(parse_at_end(unframed).unwrap().body, b"until the end");
        assert!(parse_at_end(&whole[..40]).is_err());
        assert!(parse(b"HTTP/1.1 2x0 OK\r\n\r\n").is_err());
    }
}

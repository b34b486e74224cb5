//! The one HTTP client of the workspace: one HTTP/1.1 request at a time, over TLS (or plain
//! HTTP to a loopback endpoint, for tests, local emulators and a container credentials
//! endpoint), on hyper's connection and tokio-rustls, both already linked by lambda_runtime and
//! the database's TLS. One connection per request: requests are rare (a cold start, a rotation,
//! credentials about to expire, a deploy's answer), so keeping one open would buy nothing.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::{Body, Incoming};
use hyper::header::{HeaderName, HeaderValue, CONNECTION};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncRead, AsyncWrite};
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
    /// `https://host` on port 443.
    pub fn https(host: String) -> Endpoint {
        Endpoint {
            tls: true,
            host,
            port: 443,
        }
    }

    /// `http://address`, if `address` is on this machine's loopback (plain HTTP goes nowhere
    /// else).
    pub fn loopback(address: SocketAddr) -> Option<Endpoint> {
        address.ip().is_loopback().then(|| Endpoint {
            tls: false,
            host: address.ip().to_string(),
            port: address.port(),
        })
    }

    /// Parses an endpoint URL as the AWS SDKs take it (`AWS_ENDPOINT_URL...`): scheme, host,
    /// optional port, no path. The problem, in words, when it is not one.
    pub fn parse(url: &str) -> Result<Endpoint, &'static str> {
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
    pub fn parse_with_path(url: &str) -> Result<(Endpoint, String), &'static str> {
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
    pub fn authority(&self) -> String {
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
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// The most a response body may hold. The largest answer asked for is a secret's: Secrets
/// Manager keeps at most 64 KiB, which JSON escaping (`\u0000` for a control character) grows
/// at most six-fold, to 384 KiB with its ARN and version around it. Anything larger is not the
/// answer asked for, and is refused before it is held in memory.
const MAX_RESPONSE_BYTES: usize = 512 * 1024;

/// A transport error, with the causes hyper keeps behind its own words.
fn transport(err: &dyn std::error::Error) -> io::Error {
    let mut message = err.to_string();
    let mut cause = err.source();
    while let Some(err) = cause {
        message.push_str(&format!(": {err}"));
        cause = err.source();
    }
    io::Error::other(message)
}

fn too_large() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "response larger than 512 KiB")
}

/// Sends `method` `target` (path and query, as they go on the request line) with `headers`
/// (Host included) and `body` to `endpoint`, and reads the whole response. Errors describe the
/// transport, never the request or the response body.
pub async fn request(
    endpoint: &Endpoint,
    method: Method,
    target: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> io::Result<Response> {
    let request = build(method, target, headers, body)?;
    exchange(endpoint, request, |response| async move {
        let status = response.status().as_u16();
        let body = response.into_body();
        // An announced length is refused before anything of it is read.
        if body.size_hint().lower() > MAX_RESPONSE_BYTES as u64 {
            return Err(too_large());
        }
        let body = Limited::new(body, MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|err| {
                if err.is::<LengthLimitError>() {
                    too_large()
                } else {
                    transport(&*err)
                }
            })?
            .to_bytes()
            .to_vec();
        Ok(Response { status, body })
    })
    .await
}

/// `request`, of which only the status is of interest: the body is never read.
pub async fn status_of(
    endpoint: &Endpoint,
    method: Method,
    target: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> io::Result<u16> {
    let request = build(method, target, headers, body)?;
    exchange(endpoint, request, |response| async move {
        Ok(response.status().as_u16())
    })
    .await
}

fn build(
    method: Method,
    target: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> io::Result<Request<Full<Bytes>>> {
    let invalid = |what: &'static str| io::Error::new(io::ErrorKind::InvalidInput, what);
    let target: Uri = target
        .parse()
        .map_err(|_| invalid("malformed request target"))?;
    let mut request = Request::new(Full::new(Bytes::from(body)));
    *request.method_mut() = method;
    *request.uri_mut() = target;
    let fields = request.headers_mut();
    for (name, value) in headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| invalid("malformed header name"))?;
        let value = HeaderValue::from_str(value).map_err(|_| invalid("malformed header value"))?;
        fields.append(name, value);
    }
    // One request per connection: hyper closes it once the response is in.
    fields.insert(CONNECTION, HeaderValue::from_static("close"));
    Ok(request)
}

/// Connects to `endpoint`, sends `request` and hands the response head to `read`, driving the
/// connection until both are done.
async fn exchange<T, F>(
    endpoint: &Endpoint,
    request: Request<Full<Bytes>>,
    read: impl FnOnce(hyper::Response<Incoming>) -> F,
) -> io::Result<T>
where
    F: std::future::Future<Output = io::Result<T>>,
{
    let socket = TcpStream::connect((endpoint.host.as_str(), endpoint.port)).await?;
    socket.set_nodelay(true)?;
    // One stream type, so hyper's connection is built once into the binary, not per transport.
    let stream: Box<dyn Stream> = if endpoint.tls {
        let name = ServerName::try_from(endpoint.host.clone())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "malformed host name"))?;
        let stream = TlsConnector::from(Arc::new(tls_config()))
            .connect(name, socket)
            .await?;
        Box::new(stream)
    } else {
        Box::new(socket)
    };
    // A head may not outgrow the cap on a body either.
    let (mut sender, connection) = hyper::client::conn::http1::Builder::new()
        .max_buf_size(MAX_RESPONSE_BYTES)
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|err| transport(&err))?;
    let exchange = async move {
        let response = sender.send_request(request).await.map_err(|err| {
            // A head beyond the buffer, or a Content-Length beyond what hyper counts.
            if err.is_parse_too_large() {
                too_large()
            } else {
                transport(&err)
            }
        })?;
        read(response).await
    };
    // The connection's own end (closed, or broken part-way) shows in the exchange's result.
    let (result, _) = tokio::join!(exchange, connection);
    result
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Stream for S {}

/// The Mozilla root set: AWS endpoints have Amazon Trust Services certificates, and S3 (the
/// deploy's answers) too.
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
        assert_eq!(
            Endpoint::loopback("127.0.0.1:5000".parse().unwrap()),
            Some(local.clone())
        );
        assert_eq!(
            Endpoint::loopback("[::1]:4566".parse().unwrap()).map(|e| e.to_string()),
            Some("http://[::1]:4566".to_owned())
        );
        assert_eq!(Endpoint::loopback("10.0.0.1:5000".parse().unwrap()), None);
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
}

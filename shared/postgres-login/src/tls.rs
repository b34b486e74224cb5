//! TLS to the database with the guarantees libpq gives for each `sslmode`, and one libpq does
//! not give: the password is never revealed to a server whose identity was not checked.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_postgres::config::{Host, SslNegotiation};
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::{CancelToken, Client, Connection, Socket};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::config::{ConfigError, DatabaseConfig, SslMode};
use crate::guard::{Guarded, Refused, Transport};

/// The Amazon RDS, Aurora and RDS Proxy CA certificates (scripts/refresh-rds-ca.sh), trusted
/// beside the Mozilla set when no root certificate is configured, so `verify-full` works
/// against RDS without shipping a bundle.
const AWS_RDS_ROOTS: &str = include_str!("../../certs/aws-rds.pem");

/// Opens the database connection as `sslmode` asks.
///
/// tokio-postgres sends the password as soon as the server asks for it, in cleartext or MD5
/// too, and has no hook between the request and the answer. So it is told to use "direct" TLS,
/// which makes it hand the bare socket to this module before it says anything; the SSLRequest
/// exchange is done here, and every connection, TLS or plain, goes through a [`Guarded`]
/// stream that ends it when a server not verified asks for the password in a form that
/// reveals it.
#[derive(Clone)]
pub struct Connector {
    postgres: tokio_postgres::Config,
    negotiation: Negotiation,
}

impl Connector {
    pub(crate) fn new(config: &DatabaseConfig) -> Result<Self, ConfigError> {
        // tokio-postgres gives a Unix-domain socket no host name, and then refuses "direct"
        // TLS; Lambda has no such socket anyway.
        if config
            .postgres
            .get_hosts()
            .iter()
            .any(|host| !matches!(host, Host::Tcp(_)))
        {
            return Err(ConfigError {
                variable: "DATABASE_URL",
                problem: "names a Unix-domain socket; use a TCP host name or address".into(),
            });
        }
        let direct = config.postgres.get_ssl_negotiation() == SslNegotiation::Direct;
        if direct && config.ssl_mode == SslMode::Prefer {
            // As libpq and tokio-postgres: with nothing to fall back to, `prefer` would
            // silently mean `require`.
            return Err(ConfigError {
                variable: "DATABASE_URL",
                problem: "sslnegotiation=direct needs sslmode=require, verify-ca or verify-full"
                    .into(),
            });
        }
        let mut postgres = config.postgres.clone();
        postgres
            .ssl_mode(tokio_postgres::config::SslMode::Require)
            .ssl_negotiation(SslNegotiation::Direct);
        Ok(Connector {
            postgres,
            negotiation: Negotiation {
                tls: tls_config(config)?.map(MakeRustlsConnect::new),
                rules: Rules {
                    ssl_mode: config.ssl_mode,
                    direct,
                    // Only the host name ties the certificate to this server: a chain that
                    // ends at a configured root (require or verify-ca with sslrootcert) is
                    // still any holder of a certificate from that CA, e.g. any RDS instance
                    // under Amazon's bundle. Not enough for a password or an IAM token.
                    verifies_server: config.ssl_mode == SslMode::VerifyFull,
                },
            },
        })
    }

    pub(crate) async fn connect(
        &self,
    ) -> Result<(Client, Connection<Socket, Guarded>), tokio_postgres::Error> {
        self.postgres.connect(self.negotiation.clone()).await
    }

    /// `connect` with a password of this connection's own (an RDS IAM auth token).
    pub(crate) async fn connect_with_password(
        &self,
        password: &str,
    ) -> Result<(Client, Connection<Socket, Guarded>), tokio_postgres::Error> {
        let mut postgres = self.postgres.clone();
        postgres.password(password);
        postgres.connect(self.negotiation.clone()).await
    }

    /// Asks the server to cancel the statement that the connection of `token` is running,
    /// over a connection of its own made as this one makes them.
    pub(crate) async fn cancel(&self, token: &CancelToken) -> Result<(), tokio_postgres::Error> {
        token.cancel_query(self.negotiation.clone()).await
    }
}

/// The rustls set-up for `config`, or `None` when TLS is disabled.
fn tls_config(config: &DatabaseConfig) -> Result<Option<ClientConfig>, ConfigError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions");
    let roots = || root_store(config);
    let client_config = match config.ssl_mode {
        SslMode::Disable => return Ok(None),
        // As libpq: with a root certificate configured, `require` also verifies the chain.
        SslMode::Prefer | SslMode::Require if config.ssl_root_cert.is_none() => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(EncryptOnly(provider)))
            .with_no_client_auth(),
        SslMode::Prefer | SslMode::Require | SslMode::VerifyCa => {
            let verifier =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots()?), provider)
                    .build()
                    .map_err(|err| root_cert_error(config, format!("unusable: {err}")))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(ChainOnly(verifier)))
                .with_no_client_auth()
        }
        SslMode::VerifyFull => builder
            .with_root_certificates(roots()?)
            .with_no_client_auth(),
    };
    Ok(Some(client_config))
}

/// The configured root certificates, or when none are configured the Mozilla set (managed
/// databases with a public CA) and Amazon RDS's.
fn root_store(config: &DatabaseConfig) -> Result<RootCertStore, ConfigError> {
    let Some(path) = &config.ssl_root_cert else {
        let mut store = RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        // Every one parses (a unit test checks): nothing to report at run time.
        store.add_parsable_certificates(
            CertificateDer::pem_slice_iter(AWS_RDS_ROOTS.as_bytes()).flatten(),
        );
        return Ok(store);
    };
    let mut store = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|err| root_cert_error(config, format!("cannot be read: {err}")))?;
    for cert in certs {
        let cert = cert.map_err(|err| root_cert_error(config, format!("is not PEM: {err}")))?;
        store
            .add(cert)
            .map_err(|err| root_cert_error(config, format!("holds a bad certificate: {err}")))?;
    }
    if store.is_empty() {
        return Err(root_cert_error(config, "holds no certificate"));
    }
    Ok(store)
}

fn root_cert_error(config: &DatabaseConfig, problem: impl Into<String>) -> ConfigError {
    let path = config
        .ssl_root_cert
        .as_deref()
        .unwrap_or_else(|| "".as_ref());
    ConfigError {
        variable: "PGSSLROOTCERT",
        problem: format!(
            "root certificate file {} (from PGSSLROOTCERT or sslrootcert=) {}",
            path.display(),
            problem.into()
        ),
    }
}

/// `sslmode=prefer|require` without a root certificate: encrypted, server not authenticated.
#[derive(Debug)]
struct EncryptOnly(Arc<CryptoProvider>);

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `sslmode=verify-ca`: the chain must lead to a trusted root; the host name is not checked.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// What one connection attempt does before tokio-postgres speaks: the SSLRequest, TLS or not.
#[derive(Clone)]
struct Negotiation {
    /// `None` with `sslmode=disable`.
    tls: Option<MakeRustlsConnect>,
    rules: Rules,
}

#[derive(Clone, Copy)]
struct Rules {
    ssl_mode: SslMode,
    /// TLS from the first byte, without SSLRequest (`sslnegotiation=direct`).
    direct: bool,
    /// Whether a TLS connection checks the server's host name (`verify-full`): only then
    /// may a password be revealed to it (see `Connector::new`).
    verifies_server: bool,
}

type RustlsConnect = <MakeRustlsConnect as MakeTlsConnect<Socket>>::TlsConnect;

impl MakeTlsConnect<Socket> for Negotiation {
    type Stream = Guarded;
    type TlsConnect = Negotiate;
    type Error = std::convert::Infallible;

    fn make_tls_connect(&mut self, host: &str) -> Result<Negotiate, Self::Error> {
        let tls = self.tls.as_mut().map(|tls| {
            let Ok(connect) = MakeTlsConnect::<Socket>::make_tls_connect(tls, host);
            connect
        });
        Ok(Negotiate {
            tls,
            rules: self.rules,
        })
    }
}

/// `Negotiation` for one host.
struct Negotiate {
    tls: Option<RustlsConnect>,
    rules: Rules,
}

/// PostgreSQL's SSLRequest message: its length (8), then the code 80877103.
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

impl TlsConnect<Socket> for Negotiate {
    type Stream = Guarded;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Guarded>> + Send>>;

    fn connect(self, socket: Socket) -> Self::Future {
        Box::pin(self.negotiate(socket))
    }
}

impl Negotiate {
    async fn negotiate(self, mut socket: Socket) -> io::Result<Guarded> {
        let Some(tls) = self.tls else {
            return Ok(Guarded::new(Transport::Plain(socket), true));
        };
        if !self.rules.direct {
            socket.write_all(&SSL_REQUEST).await?;
            // One byte, read straight off the socket: nothing the server sends after it can
            // slip into the TLS session unencrypted.
            if socket.read_u8().await? != b'S' {
                return match self.rules.ssl_mode {
                    SslMode::Prefer => Ok(Guarded::new(Transport::Plain(socket), true)),
                    _ => Err(io::Error::other(Refused::ServerWithoutTls)),
                };
            }
        }
        let stream = tls.connect(socket).await?;
        Ok(Guarded::new(
            Transport::Tls(Box::new(stream)),
            !self.rules.verifies_server,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_in_rds_certificate_parses_and_the_count_is_the_one_stated() {
        let stated: usize = AWS_RDS_ROOTS
            .lines()
            .next()
            .and_then(|line| line.split(": ").nth(1))
            .and_then(|rest| rest.strip_suffix(" certificates."))
            .and_then(|count| count.parse().ok())
            .expect("the first line says how many certificates the file holds");
        let certs: Vec<_> = CertificateDer::pem_slice_iter(AWS_RDS_ROOTS.as_bytes())
            .collect::<Result<_, _>>()
            .expect("every PEM section parses");
        assert_eq!(certs.len(), stated);
        let mut store = RootCertStore::empty();
        let (added, ignored) = store.add_parsable_certificates(certs);
        assert_eq!(
            (added, ignored),
            (stated, 0),
            "every certificate is a usable root"
        );
    }

    #[test]
    fn without_a_root_certificate_the_mozilla_and_rds_roots_are_trusted() {
        let config =
            DatabaseConfig::parse("postgres://u@db.example.com/db", None, "lti-storage").unwrap();
        let store = root_store(&config).unwrap();
        let rds = CertificateDer::pem_slice_iter(AWS_RDS_ROOTS.as_bytes()).count();
        assert_eq!(store.len(), webpki_roots::TLS_SERVER_ROOTS.len() + rds);
    }
}

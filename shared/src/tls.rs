//! TLS to the database with the guarantees libpq gives for each `sslmode`.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::config::{ConfigError, DatabaseConfig, SslMode};

/// The connector for `config`, or `None` when TLS is disabled.
pub(crate) fn connector(config: &DatabaseConfig) -> Result<Option<MakeRustlsConnect>, ConfigError> {
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
    Ok(Some(MakeRustlsConnect::new(client_config)))
}

/// The configured root certificates, or the Mozilla set when none are configured (managed
/// databases with a public CA work without a bundle).
fn root_store(config: &DatabaseConfig) -> Result<RootCertStore, ConfigError> {
    let Some(path) = &config.ssl_root_cert else {
        return Ok(RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        });
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

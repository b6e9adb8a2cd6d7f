//! TLS of the connections to the server, as the connection string's
//! `sslmode` asks, with libpq's meanings:
//!
//! - `disable`: no TLS.
//! - `prefer` (the default) and `require`: TLS (`prefer` falls back to
//!   plain text when the server offers none), the server's certificate
//!   not checked: encryption against eavesdroppers, not against a server
//!   impersonated (libpq does the same when it has no root certificate).
//! - `verify-ca`: the certificate must chain to a trusted root;
//!   `verify-full`: and name the host connected to. Roots are those of
//!   the file `sslrootcert` names, else the system's.
//!
//! The client library parses only `disable`, `prefer` and `require`, so
//! [`split`] takes `sslmode` and `sslrootcert` out of the string first.

use std::sync::Arc;

use postgres::config::SslMode;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::{Error, Result};

/// What `sslmode` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl Mode {
    fn parse(s: &str) -> Result<Mode> {
        Ok(match s {
            "disable" => Mode::Disable,
            // libpq's `allow` tries plain text first; TLS when offered is
            // no weaker.
            "allow" | "prefer" => Mode::Prefer,
            "require" => Mode::Require,
            "verify-ca" => Mode::VerifyCa,
            "verify-full" => Mode::VerifyFull,
            other => {
                return Err(Error::invalid(
                    "sslmode",
                    format!(
                    "{other:?} is not one; use disable, prefer, require, verify-ca or verify-full"
                ),
                ))
            }
        })
    }

    /// The mode the client library is configured with.
    pub fn client_mode(self) -> SslMode {
        match self {
            Mode::Disable => SslMode::Disable,
            Mode::Prefer => SslMode::Prefer,
            Mode::Require | Mode::VerifyCa | Mode::VerifyFull => SslMode::Require,
        }
    }
}

/// A connection string without `sslmode` and `sslrootcert`, with what
/// they said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    pub rest: String,
    pub mode: Mode,
    pub root_cert: Option<String>,
}

/// Take `sslmode` and `sslrootcert` out of a `postgres://` URL's query or
/// a `key=value` string.
pub fn split(conn: &str) -> Result<Split> {
    let mut mode = None;
    let mut root_cert = None;
    let mut take = |key: &str, value: &str| -> Result<bool> {
        match key {
            "sslmode" => mode = Some(Mode::parse(value)?),
            "sslrootcert" => root_cert = Some(value.to_string()),
            _ => return Ok(false),
        }
        Ok(true)
    };
    let rest = if conn.contains("://") {
        match conn.split_once('?') {
            Some((base, query)) => {
                let mut kept = Vec::new();
                for pair in query.split('&').filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    if !take(k, v)? {
                        kept.push(pair);
                    }
                }
                if kept.is_empty() {
                    base.to_string()
                } else {
                    format!("{base}?{}", kept.join("&"))
                }
            }
            None => conn.to_string(),
        }
    } else {
        // key=value pairs; values with spaces are quoted, which this
        // does not split (such strings keep their sslmode as given).
        let mut kept = Vec::new();
        for word in conn.split_whitespace() {
            match word.split_once('=') {
                Some((k, v)) if !v.starts_with('\'') && take(k, v)? => {}
                _ => kept.push(word),
            }
        }
        kept.join(" ")
    };
    Ok(Split {
        rest,
        mode: mode.unwrap_or(Mode::Prefer),
        root_cert,
    })
}

/// The TLS connector for `mode`; `None` for `disable`.
pub fn connector(mode: Mode, root_cert: Option<&str>) -> Result<Option<MakeRustlsConnect>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::invalid("TLS", e.to_string()))?;
    let config = match mode {
        Mode::Disable => return Ok(None),
        Mode::Prefer | Mode::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unchecked(provider)))
            .with_no_client_auth(),
        Mode::VerifyCa | Mode::VerifyFull => {
            let roots = Arc::new(roots(root_cert)?);
            let webpki = WebPkiServerVerifier::builder_with_provider(roots, Arc::clone(&provider))
                .build()
                .map_err(|e| Error::invalid("sslrootcert", e.to_string()))?;
            if mode == Mode::VerifyFull {
                builder.with_webpki_verifier(webpki).with_no_client_auth()
            } else {
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(AnyName(webpki)))
                    .with_no_client_auth()
            }
        }
    };
    Ok(Some(MakeRustlsConnect::new(config)))
}

/// The trusted roots: those in the PEM file `path`, else the system's.
fn roots(path: Option<&str>) -> Result<RootCertStore> {
    let mut store = RootCertStore::empty();
    match path {
        Some(p) => {
            let certs = CertificateDer::pem_file_iter(p)
                .map_err(|e| Error::invalid("sslrootcert", format!("{p}: {e}")))?;
            for cert in certs {
                let cert = cert.map_err(|e| Error::invalid("sslrootcert", format!("{p}: {e}")))?;
                store
                    .add(cert)
                    .map_err(|e| Error::invalid("sslrootcert", format!("{p}: {e}")))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(Error::invalid(
                    "sslmode",
                    "no trusted root certificates on this system; name one with sslrootcert=PATH",
                ));
            }
        }
    }
    Ok(store)
}

/// Accepts any certificate (`prefer`, `require`), still checking the
/// handshake's signatures.
#[derive(Debug)]
struct Unchecked(Arc<CryptoProvider>);

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
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
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
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

/// `verify-ca`: the chain is checked, the name in it is not.
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName))
            | Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_is_taken_out() {
        let s = split("postgres://u@h/db?sslmode=verify-full&application_name=x").unwrap();
        assert_eq!(s.rest, "postgres://u@h/db?application_name=x");
        assert_eq!(s.mode, Mode::VerifyFull);
        let s = split("postgres://u@h/db?sslrootcert=/r.pem&sslmode=disable").unwrap();
        assert_eq!(s.rest, "postgres://u@h/db");
        assert_eq!(
            (s.mode, s.root_cert.as_deref()),
            (Mode::Disable, Some("/r.pem"))
        );
        let s = split("host=h sslmode=require user=u").unwrap();
        assert_eq!(s.rest, "host=h user=u");
        assert_eq!(s.mode, Mode::Require);
        assert_eq!(split("postgres://h/db").unwrap().mode, Mode::Prefer);
        assert!(split("postgres://h/db?sslmode=maybe").is_err());
    }
}

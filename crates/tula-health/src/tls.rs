//! TLS client settings of https probes (rustls with the ring provider):
//! one that verifies the backend's certificate against the system's trusted
//! roots, and one that accepts any certificate (`tls_verify = false`, the
//! default: the probe checks that the backend is alive, not who it is). Both
//! still check the handshake's signatures.

use std::sync::Arc;

use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::{self, CryptoProvider};
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{
    ClientConfig, DigitallySignedStruct, Error as TlsError, RootCertStore, SignatureScheme,
};
use tracing::{info, warn};

pub(crate) struct TlsClients {
    pub verify: Arc<ClientConfig>,
    pub no_verify: Arc<ClientConfig>,
}

impl TlsClients {
    /// With the system's trusted roots (loads them from disk: call off the async threads).
    pub(crate) fn with_system_roots() -> TlsClients {
        let found = rustls_native_certs::load_native_certs();
        for error in &found.errors {
            warn!(%error, "reading the system's trusted certificates for https checks");
        }
        let mut roots = RootCertStore::empty();
        let (added, ignored) = roots.add_parsable_certificates(found.certs);
        info!(
            added,
            ignored, "loaded trusted roots for https checks with tls_verify"
        );
        TlsClients::with_roots(roots)
    }

    pub(crate) fn with_roots(roots: RootCertStore) -> TlsClients {
        let provider = Arc::new(crypto::ring::default_provider());
        let builder = || {
            ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .expect("the ring provider supports the default protocol versions")
        };
        let verify = builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let no_verify = builder()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider.clone())))
            .with_no_client_auth();
        TlsClients {
            verify: Arc::new(verify),
            no_verify: Arc::new(no_verify),
        }
    }

    pub(crate) fn config(&self, verify: bool) -> Arc<ClientConfig> {
        if verify {
            self.verify.clone()
        } else {
            self.no_verify.clone()
        }
    }
}

/// The name TLS sends (SNI) and verifies: the Host header's host when it is
/// a DNS name or an address, else the backend's address (no SNI is sent for an address).
pub(crate) fn server_name(host: &str, backend: std::net::IpAddr) -> ServerName<'static> {
    let host_only = match host.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, port)| {
            if port.chars().all(|c| c.is_ascii_digit()) {
                name
            } else {
                host
            }
        }),
    };
    ServerName::try_from(host_only.to_string()).unwrap_or(ServerName::IpAddress(backend.into()))
}

/// Accepts any certificate chain; checks the handshake signatures it makes.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        crypto::verify_tls12_signature(
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
    ) -> Result<HandshakeSignatureValid, TlsError> {
        crypto::verify_tls13_signature(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_name_comes_from_the_host_header() {
        let backend = "198.18.1.2".parse().unwrap();
        let dns = |name: &str| ServerName::try_from(name.to_string()).unwrap();
        assert_eq!(
            server_name("www.example.com", backend),
            dns("www.example.com")
        );
        assert_eq!(
            server_name("www.example.com:8443", backend),
            dns("www.example.com")
        );
        assert_eq!(
            server_name("198.18.1.2:8443", backend),
            ServerName::IpAddress(backend.into())
        );
        assert_eq!(
            server_name("[2001:db8::1]:443", backend),
            dns("2001:db8::1")
        );
        assert_eq!(
            server_name("bad name!", backend),
            ServerName::IpAddress(backend.into())
        );
    }
}

//! TLS for every peer the master calls (SMTP relays, IRC servers, HTTP endpoints, Lua
//! sources' requests): the system's roots (which honour `SSL_CERT_FILE` and
//! `SSL_CERT_DIR`), and a certificate that is itself in the store trusted as itself, as
//! OpenSSL does, so a self-signed relay or HTTP endpoint can be trusted by adding it there.

use std::sync::Arc;

use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::client::WebPkiServerVerifier;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::server::ParsedCertificate;
use tokio_rustls::rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, Error as TlsError, RootCertStore,
    SignatureScheme,
};

/// TLS verified against the system's roots (which honour `SSL_CERT_FILE` and
/// `SSL_CERT_DIR`), a certificate in the store trusted as itself.
pub fn tls_config() -> Result<Arc<ClientConfig>, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(found.certs.iter().cloned());
    if roots.is_empty() {
        let errors: Vec<String> = found.errors.iter().map(ToString::to_string).collect();
        return Err(format!(
            "no trusted certificate found in the system store ({})",
            errors.join("; ")
        ));
    }
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| e.to_string())?;
    let verifier = TrustedAsItself {
        webpki,
        trusted: found.certs,
    };
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// webpki's verification, and OpenSSL's rule for a certificate that is itself in the trust
/// store: it is trusted as it is, its name and validity still checked. A self-signed
/// certificate made by `openssl req -x509` says it is a CA, which webpki refuses as a
/// server's certificate (`CaUsedAsEndEntity`) even when it is the very one trusted.
#[derive(Debug)]
struct TrustedAsItself {
    webpki: Arc<WebPkiServerVerifier>,
    trusted: Vec<CertificateDer<'static>>,
}

impl ServerCertVerifier for TrustedAsItself {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        let verified = self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        match verified {
            // webpki checks the validity period before refusing a CA as the end entity: this
            // refusal means the dates are good.
            Err(TlsError::InvalidCertificate(CertificateError::Other(why)))
                if why.to_string() == "CaUsedAsEndEntity" =>
            {
                if !self
                    .trusted
                    .iter()
                    .any(|c| c.as_ref() == end_entity.as_ref())
                {
                    // A self-signed certificate that is not the one trusted: say so rather
                    // than webpki's puzzle.
                    return Err(CertificateError::UnknownIssuer.into());
                }
                tokio_rustls::rustls::client::verify_server_name(
                    &ParsedCertificate::try_from(end_entity)?,
                    server_name,
                )?;
                Ok(ServerCertVerified::assertion())
            }
            verified => verified,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

//! TLS to PostgreSQL servers (`sslmode=` and `sslrootcert=` in a `postgres://` URL), with rustls
//! on the `ring` provider, in libpq's meanings:
//!
//! | `sslmode` | encrypted | chain checked | host name checked |
//! | --- | --- | --- | --- |
//! | `prefer` (`allow`) | when the server offers it | no | no |
//! | `require` | yes | no (yes with `sslrootcert`: `verify-ca`) | no |
//! | `verify-ca` | yes | yes | no |
//! | `verify-full` | yes | yes | yes |
//!
//! The roots are `sslrootcert=` (a PEM file) when given, else the system's (which honour
//! `SSL_CERT_FILE` and `SSL_CERT_DIR`). Redis over TLS (`rediss://`) is the redis crate's own,
//! with the system's roots; [`install_provider`] gives it its crypto provider.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::location::SslMode;

// rustls 0.23.48 deprecates its ring provider for lacking post-quantum key exchange; the
// alternative, aws-lc-rs, compiles a C library with cmake (minutes on a small machine, and a
// C toolchain for every user), while ring is already in the tree (libsql's TLS).
#[allow(deprecated)]
fn ring() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring())
}

/// Makes `ring` the process's rustls provider (the redis crate builds its TLS configuration
/// with the process default). Harmless when one is installed already.
pub(crate) fn install_provider() {
    let _ = ring().install_default();
}

/// The connector for `mode` (`None`: no TLS), or why it cannot be made (an unreadable or empty
/// `sslrootcert`, no system roots).
pub(crate) fn postgres(mode: SslMode, root_cert: Option<&Path>) -> Result<Option<MakeRustlsConnect>, String> {
    let checks = match mode {
        SslMode::Disable => return Ok(None),
        SslMode::Prefer | SslMode::Require => None,
        SslMode::VerifyCa => Some(false),
        SslMode::VerifyFull => Some(true),
    };
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?;
    let config = match checks {
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Relaxed { chain: None }))
            .with_no_client_auth(),
        Some(host_name) => {
            let roots = Arc::new(roots(root_cert)?);
            let chain = WebPkiServerVerifier::builder_with_provider(roots.clone(), provider())
                .build()
                .map_err(|e| format!("TLS setup: {e}"))?;
            if host_name {
                builder.with_webpki_verifier(chain).with_no_client_auth()
            } else {
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(Relaxed { chain: Some(chain) }))
                    .with_no_client_auth()
            }
        }
    };
    Ok(Some(MakeRustlsConnect::new(config)))
}

fn roots(root_cert: Option<&Path>) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    match root_cert {
        Some(path) if path.as_os_str() != "system" => {
            let shown = crate::location::shown_path(path);
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("sslrootcert {shown}: {e}"))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("sslrootcert {shown}: {e}"))?;
            let (added, _) = store.add_parsable_certificates(certs);
            if added == 0 {
                return Err(format!("sslrootcert {shown}: holds no certificate"));
            }
        }
        _ => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err("no system root certificates found: give the server's CA with sslrootcert=PATH".to_owned());
            }
        }
    }
    Ok(store)
}

/// The verifier of the modes that check less than `verify-full`; the handshake's signatures are
/// always checked (the channel is encrypted to whoever holds the certificate's key).
/// - `chain: None` (`prefer`, `require`): the certificate itself is not checked.
/// - `chain: Some` (`verify-ca`): the chain is checked against the roots, the host name is not.
#[derive(Debug)]
struct Relaxed {
    chain: Option<Arc<WebPkiServerVerifier>>,
}

impl ServerCertVerifier for Relaxed {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
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
        verify_tls12_signature(message, cert, dss, &provider().signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &provider().signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider().signature_verification_algorithms.supported_schemes()
    }
}

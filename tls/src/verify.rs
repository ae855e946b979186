//! Certificate checks beyond rustls's own chain verification.
//!
//! [`ClientVerifier`] is what a listener runs on a client's (or peer's)
//! certificate: webpki's chain check against the trusted CA, then etcd's
//! extra checks — the serial number is not in the CRL file (re-read for every
//! connection, as etcd does, so a new CRL takes effect without a restart),
//! and the common name or a SAN matches `--peer-cert-allowed-cn` /
//! `--peer-cert-allowed-hostname`. [`AcceptAnyServer`] is how etcd's members
//! dial each other without a trusted CA (auto TLS): no chain check, but the
//! handshake signature still is.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};

/// A certificate's subject common name; empty when it has none (Go's
/// `Subject.CommonName`, which keeps the last CN attribute).
pub fn common_name(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let cn = parsed.subject().iter_common_name().last().and_then(|cn| cn.as_str().ok().map(str::to_string));
    Some(cn.unwrap_or_default())
}

#[derive(Debug)]
pub struct ClientVerifier {
    webpki: Arc<dyn ClientCertVerifier>,
    crl_file: Option<PathBuf>,
    allowed_cn: Option<String>,
    allowed_hostname: Option<String>,
}

impl ClientVerifier {
    pub fn new(
        webpki: Arc<dyn ClientCertVerifier>,
        crl_file: Option<PathBuf>,
        allowed_cn: Option<String>,
        allowed_hostname: Option<String>,
    ) -> Self {
        ClientVerifier { webpki, crl_file, allowed_cn, allowed_hostname }
    }

    /// etcd's `checkCRL`: refuses a chain any of whose serial numbers the
    /// CRL lists. Like etcd, it compares serials only.
    fn check_crl(&self, chain: &[&CertificateDer<'_>]) -> Result<(), rustls::Error> {
        let Some(path) = &self.crl_file else { return Ok(()) };
        let revoked = revoked_serials(path).map_err(|e| {
            tracing::warn!(crl_file = %path.display(), error = %e, "cannot read the CRL; refusing the connection");
            other_error(e)
        })?;
        for cert in chain {
            let serial = x509_parser::parse_x509_certificate(cert.as_ref())
                .map(|(_, c)| magnitude(c.raw_serial()).to_vec())
                .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
            if revoked.contains(&serial) {
                return Err(rustls::Error::InvalidCertificate(CertificateError::Revoked));
            }
        }
        Ok(())
    }

    /// `--peer-cert-allowed-cn` / `--peer-cert-allowed-hostname`.
    fn check_allowed(&self, end_entity: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        let allowed = match (&self.allowed_cn, &self.allowed_hostname) {
            (Some(cn), _) => common_name(end_entity).as_deref() == Some(cn.as_str()),
            (None, Some(host)) => {
                let parsed = ParsedCertificate::try_from(end_entity)?;
                let name = ServerName::try_from(host.as_str()).map_err(|e| other_error(e.to_string()))?;
                rustls::client::verify_server_name(&parsed, &name).is_ok()
            }
            (None, None) => true,
        };
        if allowed {
            return Ok(());
        }
        // etcd's words; Go answers with a bad_certificate alert, and so do we.
        tracing::warn!(
            common_name = common_name(end_entity).unwrap_or_default(),
            allowed_cn = self.allowed_cn.as_deref().unwrap_or_default(),
            allowed_hostname = self.allowed_hostname.as_deref().unwrap_or_default(),
            "rejected connection: client certificate authentication failed"
        );
        Err(rustls::Error::InvalidCertificate(CertificateError::NotValidForName))
    }
}

impl ClientCertVerifier for ClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.webpki.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.webpki.verify_client_cert(end_entity, intermediates, now)?;
        let chain: Vec<&CertificateDer<'_>> = std::iter::once(end_entity).chain(intermediates).collect();
        self.check_crl(&chain)?;
        self.check_allowed(end_entity)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

fn other_error(message: String) -> rustls::Error {
    #[derive(Debug)]
    struct Message(String);
    impl std::fmt::Display for Message {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(&self.0)
        }
    }
    impl std::error::Error for Message {}
    rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(Arc::new(Message(message)))))
}

/// The serial numbers a CRL file (PEM or DER, as Go's `x509.ParseCRL`) lists.
fn revoked_serials(path: &std::path::Path) -> Result<Vec<Vec<u8>>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("open {}: {e}", path.display()))?;
    let der = match CertificateRevocationListDer::from_pem_slice(&bytes) {
        Ok(der) => der.as_ref().to_vec(),
        Err(_) => bytes,
    };
    let (_, crl) =
        x509_parser::parse_x509_crl(&der).map_err(|e| format!("parse the CRL {}: {e}", path.display()))?;
    Ok(crl.iter_revoked_certificates().map(|r| magnitude(r.raw_serial()).to_vec()).collect())
}

/// A DER integer's magnitude without leading zero bytes (Go's `big.Int.Bytes`).
fn magnitude(serial: &[u8]) -> &[u8] {
    let start = serial.iter().position(|b| *b != 0).unwrap_or(serial.len());
    &serial[start..]
}

/// The system's CAs (what Go uses when no CA file is given).
pub fn system_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for error in &found.errors {
        tracing::debug!(%error, "loading the system's CA certificates");
    }
    roots.add_parsable_certificates(found.certs);
    roots
}

/// Accepts any server certificate (etcd's members without a trusted CA, and
/// `--insecure-skip-tls-verify`). The handshake signature is still checked,
/// except one by a P-521 key, which ring cannot verify and etcd's auto-TLS
/// certificates use: when any certificate is accepted, that signature proves
/// nothing an impostor could not produce with a certificate of its own.
#[derive(Debug)]
pub struct AcceptAnyServer(pub Arc<CryptoProvider>);

impl AcceptAnyServer {
    fn check(
        &self,
        dss: &DigitallySignedStruct,
        verify: impl FnOnce() -> Result<HandshakeSignatureValid, rustls::Error>,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        if dss.scheme == SignatureScheme::ECDSA_NISTP521_SHA512 {
            return Ok(HandshakeSignatureValid::assertion());
        }
        verify()
    }
}

impl ServerCertVerifier for AcceptAnyServer {
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
        self.check(dss, || verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.check(dss, || verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms))
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        let mut schemes = self.0.signature_verification_algorithms.supported_schemes();
        schemes.push(SignatureScheme::ECDSA_NISTP521_SHA512);
        schemes
    }
}

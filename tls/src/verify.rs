//! Certificate checks beyond rustls's own chain verification.
//!
//! [`ClientVerifier`] is what a listener runs on a client's (or peer's)
//! certificate: webpki's chain check against the trusted CA, then etcd's
//! extra checks — the serial number is not in the CRL file (re-read for every
//! connection, as etcd does, so a new CRL takes effect without a restart),
//! and the common name or a SAN matches `--peer-cert-allowed-cn` /
//! `--peer-cert-allowed-hostname`. [`ServerVerifier`] is the dialing side's
//! check (a member dialing its peers, hubctl): the chain against the trusted
//! CA, or none at all without one (auto TLS, `--insecure-skip-tls-verify`),
//! then the same allowed CN/hostname. [`check_san`] is etcd's check that a
//! peer's certificate names the address it connects from. Like Go, both
//! sides trust a certificate that the CA file itself lists.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::ParsedCertificate;
use x509_parser::extensions::GeneralName;
use crate::{TlsError, Trusted};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};

/// A certificate's subject common name; empty when it has none (Go's
/// `Subject.CommonName`, which keeps the last CN attribute).
pub fn common_name(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let cn = parsed.subject().iter_common_name().last().and_then(|cn| cn.as_str().ok().map(str::to_string));
    Some(cn.unwrap_or_default())
}

/// `--peer-cert-allowed-cn` / `--peer-cert-allowed-hostname` (etcd's
/// `VerifyPeerCertificate`): whom a member lets in, and whom it dials. Each
/// is a list since etcd 3.6: a certificate passes if it has one of the
/// common names, or matches one of the hostnames.
#[derive(Debug, Clone, Default)]
pub struct Allowed {
    pub cn: Vec<String>,
    pub hostname: Vec<String>,
}

impl Allowed {
    pub fn is_set(&self) -> bool {
        !self.cn.is_empty() || !self.hostname.is_empty()
    }

    /// Whether the verified certificate `end_entity` matches.
    pub fn check(&self, end_entity: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        let allowed = if !self.cn.is_empty() {
            let cn = common_name(end_entity);
            self.cn.iter().any(|allowed| cn.as_deref() == Some(allowed.as_str()))
        } else if !self.hostname.is_empty() {
            let parsed = ParsedCertificate::try_from(end_entity)?;
            self.hostname.iter().any(|host| {
                ServerName::try_from(host.as_str()).is_ok_and(|name| rustls::client::verify_server_name(&parsed, &name).is_ok())
            })
        } else {
            true
        };
        if allowed {
            return Ok(());
        }
        // etcd's words; Go answers with a bad_certificate alert, and so do we.
        tracing::warn!(
            common_name = common_name(end_entity).unwrap_or_default(),
            allowed_cn = self.cn.join(","),
            allowed_hostname = self.hostname.join(","),
            "rejected connection: client certificate authentication failed"
        );
        Err(rustls::Error::InvalidCertificate(CertificateError::NotValidForName))
    }
}

#[derive(Debug)]
pub struct ClientVerifier {
    webpki: Arc<dyn ClientCertVerifier>,
    trusted: Trusted,
    crl_file: Option<PathBuf>,
    allowed: Allowed,
}

impl ClientVerifier {
    pub fn new(
        webpki: Arc<dyn ClientCertVerifier>,
        trusted: Trusted,
        crl_file: Option<PathBuf>,
        allowed: Allowed,
    ) -> Self {
        ClientVerifier { webpki, trusted, crl_file, allowed }
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
        if let Err(e) = self.webpki.verify_client_cert(end_entity, intermediates, now) {
            // Go trusts a certificate the CA file lists, whatever it is.
            if !self.trusted.lists(end_entity, now) {
                return Err(e);
            }
        }
        let chain: Vec<&CertificateDer<'_>> = std::iter::once(end_entity).chain(intermediates).collect();
        self.check_crl(&chain)?;
        self.allowed.check(end_entity)?;
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

/// etcd's `checkCertSAN` on a peer listener: a client certificate with
/// SANs must name the IP address the connection comes from, by an IP SAN or
/// by a DNS SAN that resolves to it. (etcd also tries a reverse lookup of the
/// address, which only adds matches of wildcard names; hub does not.)
/// Connections over Unix sockets have no address and are not checked.
pub async fn check_san(cert: &CertificateDer<'_>, remote: std::net::IpAddr) -> Result<(), String> {
    let remote = remote.to_canonical();
    let (ips, dns_names) = {
        let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).map_err(|e| e.to_string())?;
        let (mut ips, mut dns_names) = (Vec::new(), Vec::new());
        if let Ok(Some(san)) = parsed.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::IPAddress(bytes) => ips.extend(ip_from_bytes(bytes)),
                    GeneralName::DNSName(name) => dns_names.push(name.to_string()),
                    _ => {}
                }
            }
        }
        (ips, dns_names)
    };
    if (ips.is_empty() && dns_names.is_empty()) || ips.contains(&remote) {
        return Ok(());
    }
    if dns_names.is_empty() {
        return Err(format!("x509: certificate is valid for {}, not {remote}", join(&ips)));
    }
    let mut lookup_error = String::new();
    for name in dns_names.iter().filter(|n| !n.starts_with("*.")) {
        match tokio::net::lookup_host((name.as_str(), 0)).await {
            Ok(mut addrs) => {
                if addrs.any(|a| a.ip().to_canonical() == remote) {
                    return Ok(());
                }
            }
            Err(e) => lookup_error = format!(" (lookup {name}: {e})"),
        }
    }
    Err(format!("tls: \"{remote}\" does not match any of DNSNames {dns_names:?}{lookup_error}"))
}

fn ip_from_bytes(bytes: &[u8]) -> Option<std::net::IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(std::net::IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(|b| std::net::IpAddr::from(b).to_canonical()),
        _ => None,
    }
}

fn join(ips: &[std::net::IpAddr]) -> String {
    ips.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
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

/// How hubd (dialing its peers) and hubctl check a server's certificate:
/// against a trusted CA file (a certificate the file lists is trusted
/// itself, as Go does), or not at all (etcd's members without a trusted CA,
/// and `--insecure-skip-tls-verify`); then the [`Allowed`] check.
#[derive(Debug)]
pub struct ServerVerifier {
    /// `None`: any certificate (the handshake signature is still checked).
    chain: Option<(Arc<WebPkiServerVerifier>, Trusted)>,
    provider: Arc<CryptoProvider>,
    allowed: Allowed,
}

impl ServerVerifier {
    pub fn new(trusted: &Trusted, provider: Arc<CryptoProvider>, allowed: Allowed) -> Result<Self, TlsError> {
        let webpki = WebPkiServerVerifier::builder_with_provider(trusted.store.clone(), provider.clone())
            .build()
            .map_err(|e| TlsError(format!("trusted CA: {e}")))?;
        Ok(ServerVerifier { chain: Some((webpki, trusted.clone())), provider, allowed })
    }

    pub fn any(provider: Arc<CryptoProvider>, allowed: Allowed) -> Self {
        ServerVerifier { chain: None, provider, allowed }
    }

    /// A signature by a P-521 key, which ring cannot verify and etcd's
    /// auto-TLS certificates use, is let through when any certificate is
    /// accepted: that signature then proves nothing an impostor could not
    /// produce with a certificate of its own.
    fn check_signature(
        &self,
        dss: &DigitallySignedStruct,
        verify: impl FnOnce() -> Result<HandshakeSignatureValid, rustls::Error>,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        if self.chain.is_none() && dss.scheme == SignatureScheme::ECDSA_NISTP521_SHA512 {
            return Ok(HandshakeSignatureValid::assertion());
        }
        verify()
    }
}

impl ServerCertVerifier for ServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some((webpki, trusted)) = &self.chain {
            if let Err(e) = webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
                let names_server = || {
                    ParsedCertificate::try_from(end_entity)
                        .is_ok_and(|c| rustls::client::verify_server_name(&c, server_name).is_ok())
                };
                if !(trusted.lists(end_entity, now) && names_server()) {
                    return Err(e);
                }
            }
        }
        self.allowed.check(end_entity)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.check_signature(dss, || {
            verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
        })
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.check_signature(dss, || {
            verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
        })
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        let mut schemes = self.provider.signature_verification_algorithms.supported_schemes();
        if self.chain.is_none() {
            schemes.push(SignatureScheme::ECDSA_NISTP521_SHA512);
        }
        schemes
    }
}

/// Whether `cert` is within its validity period at `now`.
pub fn valid_at(cert: &CertificateDer<'_>, now: UnixTime) -> bool {
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert.as_ref()) else { return false };
    i64::try_from(now.as_secs())
        .ok()
        .and_then(|secs| x509_parser::time::ASN1Time::from_timestamp(secs).ok())
        .is_some_and(|at| parsed.validity().is_valid_at(at))
}

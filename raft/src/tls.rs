//! TLS on the peer transport (`--peer-cert-file`, `--peer-key-file`,
//! `--peer-trusted-ca-file`, `--peer-client-cert-auth`, `--peer-auto-tls`),
//! with rustls.
//!
//! The server side is tonic's rustls acceptor. The client side is our own
//! rustls connector, because etcd's `--peer-auto-tls` peers present
//! self-signed certificates that a peer accepts without verifying (as etcd's
//! auto TLS does), which tonic's client configuration cannot express.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// The peer TLS flags.
#[derive(Debug, Clone, Default)]
pub struct PeerTlsOptions {
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub trusted_ca_file: Option<PathBuf>,
    pub client_cert_auth: bool,
    pub auto_tls: bool,
    /// Where auto TLS keeps its generated certificate (`<data-dir>/fixtures/peer`, as etcd).
    pub auto_tls_dir: PathBuf,
    /// Host names and IPs the auto-TLS certificate is for.
    pub hosts: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("peer TLS: {0}")]
pub struct TlsError(String);

fn err(what: &str, e: impl std::fmt::Display) -> TlsError {
    TlsError(format!("{what}: {e}"))
}

/// PEM material for the server side, and the client side's rustls config.
#[derive(Clone)]
pub struct PeerTls {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    /// CA that client certificates must chain to (`--peer-client-cert-auth`).
    pub client_ca_pem: Option<Vec<u8>>,
    pub client: Arc<ClientConfig>,
}

impl std::fmt::Debug for PeerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerTls").field("client_cert_auth", &self.client_ca_pem.is_some()).finish()
    }
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| err(&format!("read {what} {}", path.display()), e))
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl PeerTls {
    /// Builds the peer TLS setup, or `None` when no peer TLS flag is set.
    pub fn from_options(o: &PeerTlsOptions) -> Result<Option<PeerTls>, TlsError> {
        let (cert_pem, key_pem, verify) = match (&o.cert_file, &o.key_file) {
            (Some(c), Some(k)) => (read(c, "--peer-cert-file")?, read(k, "--peer-key-file")?, true),
            _ if o.auto_tls => {
                let (c, k) = self_signed(&o.auto_tls_dir, &o.hosts)?;
                (c, k, false)
            }
            _ => return Ok(None),
        };
        let ca_pem = o.trusted_ca_file.as_deref().map(|p| read(p, "--peer-trusted-ca-file")).transpose()?;
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<_, _>>()
            .map_err(|e| err("parse the peer certificate", e))?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| err("parse the peer key", e))?;
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| err("protocol versions", e))?;
        let builder = match (&ca_pem, verify) {
            (Some(ca), true) => {
                let mut roots = RootCertStore::empty();
                for c in CertificateDer::pem_slice_iter(ca) {
                    roots.add(c.map_err(|e| err("parse the trusted CA", e))?).map_err(|e| err("trusted CA", e))?;
                }
                builder.with_root_certificates(roots)
            }
            // etcd's peers do not verify each other without a trusted CA
            // (auto TLS, or a certificate without --peer-trusted-ca-file).
            _ => builder.dangerous().with_custom_certificate_verifier(Arc::new(AcceptAny(provider()))),
        };
        let mut client = builder.with_client_auth_cert(certs, key).map_err(|e| err("client certificate", e))?;
        client.alpn_protocols = vec![b"h2".to_vec()];
        let client_ca_pem = if o.client_cert_auth { ca_pem } else { None };
        Ok(Some(PeerTls { cert_pem, key_pem, client_ca_pem, client: Arc::new(client) }))
    }

    /// tonic's server TLS for the peer listener.
    pub fn server_config(&self) -> tonic::transport::ServerTlsConfig {
        let identity = tonic::transport::Identity::from_pem(&self.cert_pem, &self.key_pem);
        let config = tonic::transport::ServerTlsConfig::new().identity(identity);
        match &self.client_ca_pem {
            Some(ca) => config.client_ca_root(tonic::transport::Certificate::from_pem(ca)),
            None => config,
        }
    }
}

/// etcd's auto TLS: a self-signed certificate for `hosts`, generated once and
/// kept in `dir`.
fn self_signed(dir: &Path, hosts: &[String]) -> Result<(Vec<u8>, Vec<u8>), TlsError> {
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    if cert_path.exists() && key_path.exists() {
        return Ok((read(&cert_path, "auto TLS certificate")?, read(&key_path, "auto TLS key")?));
    }
    let mut names: Vec<String> = hosts.to_vec();
    if names.is_empty() {
        names.push("localhost".into());
    }
    let key = rcgen::KeyPair::generate().map_err(|e| err("generate a key", e))?;
    let params = rcgen::CertificateParams::new(names).map_err(|e| err("certificate parameters", e))?;
    let cert = params.self_signed(&key).map_err(|e| err("self-sign", e))?;
    std::fs::create_dir_all(dir).map_err(|e| err(&format!("create {}", dir.display()), e))?;
    let (cert_pem, key_pem) = (cert.pem().into_bytes(), key.serialize_pem().into_bytes());
    std::fs::write(&cert_path, &cert_pem).map_err(|e| err("write the certificate", e))?;
    std::fs::write(&key_path, &key_pem).map_err(|e| err("write the key", e))?;
    Ok((cert_pem, key_pem))
}

/// Accepts any server certificate while still checking the handshake
/// signatures (etcd's auto-TLS peers skip verification).
#[derive(Debug)]
struct AcceptAny(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
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
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

//! etcd's TLS, on rustls, for both of hubd's sides: the client listeners
//! (`--cert-file`, `--key-file`, `--trusted-ca-file`, `--client-cert-auth`,
//! `--auto-tls`, `--client-crl-file`) and the peer transport (the same flags
//! with `--peer-` in front, plus `--peer-cert-allowed-cn` and
//! `--peer-cert-allowed-hostname`; and each side's `--(peer-)client-cert-file`
//! and `--(peer-)client-key-file`), with `--cipher-suites`,
//! `--tls-min-version` and `--tls-max-version` for both.
//!
//! Place in the request path: the socket, before any gRPC. [`Tls::from_flags`]
//! turns one side's flags into a rustls server config (what the listeners of
//! that side present and whom they let in) and a client config (how a member
//! dials its peers). [`net`] binds etcd's listen URLs (`http`, `https`,
//! `unix`, `unixs`) and hands tonic handshaken connections that carry the
//! verified client certificate's common name. This crate knows nothing of
//! etcd's requests; it must never let a connection through that etcd's TLS
//! setup would refuse.
//!
//! - [`verify`]: certificate checks on both sides (CRL, allowed CN/hostname,
//!   a peer's SANs against its address, the unverified server check of auto
//!   TLS).
//! - [`reload`]: the certificate and key files, read again for each
//!   handshake as etcd does.
//! - [`cipher`]: Go's cipher-suite names to rustls suites.
//! - [`net`]: listen and dial URLs, the accept loop, [`net::ConnInfo`].
//! - [`alert`]: TLS failures worded as Go's `crypto/tls` words them.

pub mod alert;
pub mod cipher;
pub mod net;
pub mod reload;
pub mod verify;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::client::danger::ServerCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// One side's TLS flags (client or peer).
#[derive(Debug, Clone, Default)]
pub struct TlsFlags {
    /// `client` or `peer`: names the flags in error messages.
    pub side: &'static str,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub trusted_ca_file: Option<PathBuf>,
    pub client_cert_auth: bool,
    pub auto_tls: bool,
    /// Where auto TLS keeps its certificate (`<data-dir>/fixtures/<side>`, as etcd).
    pub auto_tls_dir: PathBuf,
    /// Host names and IPs an auto-TLS certificate is for (the listen URLs' hosts).
    pub hosts: Vec<String>,
    pub crl_file: Option<PathBuf>,
    /// `--peer-cert-allowed-cn` and `--(peer-)cert-allowed-hostname`, lists
    /// since etcd 3.6.
    pub allowed_cn: Vec<String>,
    pub allowed_hostname: Vec<String>,
    /// `--(peer-)client-cert-file` and `--(peer-)client-key-file` (etcd 3.5):
    /// the certificate this side presents when it dials, instead of its
    /// server certificate.
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
    /// `--cipher-suites`, Go's names; empty for rustls's defaults.
    pub cipher_suites: Vec<String>,
    /// Whether a listener checks that a client certificate's SANs name the
    /// address it connects from (etcd's peer listeners, unless
    /// `--peer-skip-client-san-verification`).
    pub check_san: bool,
    /// `--tls-min-version` and `--tls-max-version` (both sides): the TLS
    /// versions offered and accepted; none: TLS 1.2 and 1.3.
    pub min_version: Option<TlsVersion>,
    pub max_version: Option<TlsVersion>,
}

/// A TLS version etcd lets `--tls-min-version`/`--tls-max-version` name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

impl TlsFlags {
    /// The protocol versions from `min_version` to `max_version`.
    fn protocol_versions(&self) -> Vec<&'static rustls::SupportedProtocolVersion> {
        let min = self.min_version.unwrap_or(TlsVersion::Tls12);
        let max = self.max_version.unwrap_or(TlsVersion::Tls13);
        [(TlsVersion::Tls12, &rustls::version::TLS12), (TlsVersion::Tls13, &rustls::version::TLS13)]
            .into_iter()
            .filter(|(v, _)| (min..=max).contains(v))
            .map(|(_, p)| p)
            .collect()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(String);

fn err(what: impl std::fmt::Display, e: impl std::fmt::Display) -> TlsError {
    TlsError(format!("{what}: {e}"))
}

/// One side's TLS: what its listeners present and check, how it dials.
#[derive(Clone)]
pub struct Tls {
    pub server: Arc<ServerConfig>,
    pub client: Arc<ClientConfig>,
    /// Whether the listeners verify client certificates *for authentication*
    /// (`--client-cert-auth`): only then is a certificate's common name the
    /// user, as in etcd.
    pub client_cert_auth: bool,
    /// See [`TlsFlags::check_san`]; only with a trusted CA (without one,
    /// no client certificate is asked for).
    pub check_san: bool,
    /// [`TlsFlags::side`]: names the endpoint in the log of a refused handshake.
    pub side: &'static str,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("client_cert_auth", &self.client_cert_auth)
            .field("check_san", &self.check_san)
            .finish()
    }
}

impl Tls {
    /// Builds one side's TLS, or `None` when neither a certificate nor auto
    /// TLS is configured (that side then has no `https`/`unixs` listeners).
    pub fn from_flags(f: &TlsFlags) -> Result<Option<Tls>, TlsError> {
        let side = f.side;
        let flag = |name: &str| if side == "peer" { format!("--peer-{name}") } else { format!("--{name}") };
        let show = |p: &Option<PathBuf>| p.as_deref().map_or(String::new(), |p| p.display().to_string());
        let (cert_file, key_file, self_signed) = match (&f.cert_file, &f.key_file) {
            (Some(c), Some(k)) => (c.clone(), k.clone(), false),
            (Some(_), None) | (None, Some(_)) => {
                // etcd's TLSInfo check, word for word (auto TLS does not apply then).
                return Err(TlsError(format!(
                    "KeyFile and CertFile must both be present[key: {}, cert: {}]",
                    show(&f.key_file),
                    show(&f.cert_file)
                )));
            }
            _ if f.auto_tls => {
                let (c, k) = self_signed(&f.auto_tls_dir, &f.hosts)?;
                (c, k, true)
            }
            _ => return Ok(None),
        };
        if f.client_cert_file.is_some() != f.client_key_file.is_some() {
            return Err(TlsError(format!(
                "ClientKeyFile and ClientCertFile must both be present or both absent: key: {}, cert: {}]",
                show(&f.client_key_file),
                show(&f.client_cert_file)
            )));
        }
        if !f.allowed_cn.is_empty() && !f.allowed_hostname.is_empty() {
            let list = |l: &[String]| format!("[{}]", l.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(" "));
            return Err(TlsError(format!(
                "AllowedCNs and AllowedHostnames are mutually exclusive (cns={}, hostnames={})",
                list(&f.allowed_cn),
                list(&f.allowed_hostname)
            )));
        }
        let provider = Arc::new(cipher::provider(&f.cipher_suites)?);
        // Read again for every handshake, so a rotated certificate takes effect.
        let cert = reload::CertFiles::new(&cert_file, &key_file, (flag("cert-file"), flag("key-file")), provider.clone())?;
        let client_cert = match (&f.client_cert_file, &f.client_key_file) {
            (Some(c), Some(k)) if !self_signed => {
                let flags = (flag("client-cert-file"), flag("client-key-file"));
                reload::CertFiles::new(c, k, flags, provider.clone())?
            }
            _ => cert.clone(),
        };
        // Auto TLS replaces the whole TLS setup with the self-signed
        // certificate: no CA, so no client verification (etcd's SelfCert).
        let roots = match &f.trusted_ca_file {
            Some(path) if !self_signed => Some(Trusted::read(path, &flag("trusted-ca-file"))?),
            _ => None,
        };
        let allowed = verify::Allowed { cn: f.allowed_cn.clone(), hostname: f.allowed_hostname.clone() };

        // etcd's TLSInfo.ServerConfig: a trusted CA or --client-cert-auth
        // means every client must present a certificate that chains to it.
        let client_cert_auth = f.client_cert_auth && !self_signed;
        let versions = f.protocol_versions();
        let server = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions)
            .map_err(|e| err("TLS versions", e))?;
        let server = match (&roots, client_cert_auth) {
            (Some(roots), _) => {
                let webpki = WebPkiClientVerifier::builder_with_provider(roots.store.clone(), provider.clone())
                    .build()
                    .map_err(|e| err(flag("trusted-ca-file"), e))?;
                server.with_client_cert_verifier(Arc::new(verify::ClientVerifier::new(
                    webpki,
                    roots.clone(),
                    f.crl_file.clone(),
                    allowed.clone(),
                )))
            }
            (None, true) => {
                return Err(TlsError(format!(
                    "{} needs {} (the CA client certificates must chain to)",
                    flag("client-cert-auth"),
                    flag("trusted-ca-file")
                )))
            }
            (None, false) => server.with_no_client_auth(),
        };
        let mut server = server.with_cert_resolver(cert.clone());
        // h2 for gRPC; http/1.1 for the JSON gateway and /metrics on the same port.
        server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];

        let client = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions)
            .map_err(|e| err("TLS versions", e))?;
        let server_verifier: Arc<dyn ServerCertVerifier> = match &roots {
            Some(roots) => Arc::new(verify::ServerVerifier::new(roots, provider.clone(), allowed)?),
            // etcd's members do not verify each other without a trusted CA
            // (auto TLS, or a certificate without a CA file); the allowed
            // CN/hostname still applies (etcd's check is in the TLS config
            // both sides share).
            None => Arc::new(verify::ServerVerifier::any(provider.clone(), allowed)),
        };
        let mut client =
            client.dangerous().with_custom_certificate_verifier(server_verifier).with_client_cert_resolver(client_cert);
        client.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Some(Tls {
            server: Arc::new(server),
            client: Arc::new(client),
            client_cert_auth,
            check_san: f.check_san && roots.is_some(),
            side,
        }))
    }
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| err(format!("{what}: open {}", path.display()), e))
}

/// The certificates of a trusted CA file (`--trusted-ca-file`, `--cacert`).
///
/// Besides the CAs rustls chains to, it keeps the certificates whole: Go
/// trusts a certificate that is itself in the CA file even when it is a CA
/// certificate used as a leaf (as etcd's `CommonName-root` fixture is),
/// which webpki refuses on its own.
#[derive(Debug, Clone)]
pub struct Trusted {
    pub store: Arc<RootCertStore>,
    certs: Arc<Vec<CertificateDer<'static>>>,
}

impl Trusted {
    pub fn read(path: &Path, what: &str) -> Result<Trusted, TlsError> {
        let pem = read(path, what)?;
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<_, _>>()
            .map_err(|e| err(format!("parse {what}"), e))?;
        let mut store = RootCertStore::empty();
        for cert in &certs {
            store.add(cert.clone()).map_err(|e| err(what, e))?;
        }
        if store.is_empty() {
            return Err(TlsError(format!("{what}: no certificate found in {}", path.display())));
        }
        Ok(Trusted { store: Arc::new(store), certs: Arc::new(certs) })
    }

    /// Whether `cert` is one of the file's certificates and valid at `now`.
    pub fn lists(&self, cert: &CertificateDer<'_>, now: rustls::pki_types::UnixTime) -> bool {
        self.certs.iter().any(|c| c.as_ref() == cert.as_ref()) && verify::valid_at(cert, now)
    }
}

/// etcd's `TLSInfo.EmptyCN` check of a certificate a proxy dials members
/// with: one whose Common Name is set is refused (a member taking client
/// certificates would run every proxied call as that user).
pub fn require_empty_cn(cert_file: &Path) -> Result<(), TlsError> {
    let pem = read(cert_file, "--cert")?;
    let cert = CertificateDer::pem_slice_iter(&pem)
        .next()
        .ok_or_else(|| TlsError(format!("--cert: no certificate found in {}", cert_file.display())))?
        .map_err(|e| err("parse --cert", e))?;
    match verify::common_name(&cert) {
        Some(cn) if !cn.is_empty() => {
            Err(TlsError(format!("cert has non empty Common Name ({cn}): {}", cert_file.display())))
        }
        _ => Ok(()),
    }
}

/// A TLS client config as etcdctl builds one from `--cacert`, `--cert`,
/// `--key` and `--insecure-skip-tls-verify` (hubctl's connections).
pub fn client_config(
    ca_file: Option<&Path>,
    identity: Option<(&Path, &Path)>,
    skip_verify: bool,
) -> Result<ClientConfig, TlsError> {
    let provider: Arc<CryptoProvider> = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| err("TLS versions", e))?;
    let builder = match (skip_verify, ca_file) {
        (true, _) => builder.dangerous().with_custom_certificate_verifier(Arc::new(verify::ServerVerifier::any(
            provider.clone(),
            verify::Allowed::default(),
        ))),
        (false, Some(path)) => builder.dangerous().with_custom_certificate_verifier(Arc::new(
            verify::ServerVerifier::new(&Trusted::read(path, "--cacert")?, provider.clone(), verify::Allowed::default())?,
        )),
        (false, None) => builder.with_root_certificates(verify::system_roots()),
    };
    let mut config = match identity {
        Some((cert, key)) => builder.with_client_cert_resolver(reload::CertFiles::new(
            cert,
            key,
            ("--cert".into(), "--key".into()),
            provider,
        )?),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// etcd's auto TLS: a self-signed certificate for `hosts`, generated once and
/// kept in `dir` (`cert.pem`, `key.pem`, as etcd names them).
fn self_signed(dir: &Path, hosts: &[String]) -> Result<(PathBuf, PathBuf), TlsError> {
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    if cert_path.exists() && key_path.exists() {
        return Ok((cert_path, key_path));
    }
    let mut names: Vec<String> = hosts.to_vec();
    if names.is_empty() {
        names.push("localhost".into());
    }
    let key = rcgen::KeyPair::generate().map_err(|e| err("generate a key", e))?;
    let mut params = rcgen::CertificateParams::new(names).map_err(|e| err("certificate parameters", e))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(rcgen::DnType::OrganizationName, "etcd");
    let now = std::time::SystemTime::now();
    params.not_before = now.into();
    params.not_after = (now + std::time::Duration::from_secs(365 * 24 * 3600)).into();
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature, rcgen::KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages =
        vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth, rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.self_signed(&key).map_err(|e| err("self-sign", e))?;
    std::fs::create_dir_all(dir).map_err(|e| err(format!("create {}", dir.display()), e))?;
    std::fs::write(&cert_path, cert.pem()).map_err(|e| err("write the auto TLS certificate", e))?;
    write_private(&key_path, key.serialize_pem().as_bytes()).map_err(|e| err("write the auto TLS key", e))?;
    tracing::info!(cert = %cert_path.display(), "generated a self-signed certificate (auto TLS)");
    Ok((cert_path, key_path))
}

/// Writes a private key readable by its owner only.
fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    file.write_all(data)
}

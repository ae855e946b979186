//! Certificates read again for each handshake, as etcd's `GetCertificate`
//! and `GetClientCertificate` do: a certificate and key rotated on disk take
//! effect on the next connection, without a restart.
//!
//! [`CertFiles`] presents the certificate of `--cert-file`/`--key-file`
//! (or their `--peer-` twins, or auto TLS's) on the listeners and when a
//! member dials its peers. The files are parsed again only when their size or
//! modification time changed. Like etcd, a handshake fails (and a warning is
//! logged) while the files cannot be read or do not match; the certificate of
//! the last good read is not used then.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::SignatureScheme;

use crate::TlsError;

/// What identifies one version of the two files.
type Stamp = [(Option<SystemTime>, u64); 2];

/// A certificate and key file pair, loaded (again) when a handshake needs it.
#[derive(Debug)]
pub struct CertFiles {
    cert: PathBuf,
    key: PathBuf,
    /// The flags that name the files, for error messages.
    flags: (String, String),
    provider: Arc<CryptoProvider>,
    cached: Mutex<Option<(Stamp, Arc<CertifiedKey>)>>,
}

impl CertFiles {
    /// Loads the pair once, so a bad file stops the start (etcd's
    /// `baseConfig` does the same), and keeps it for the next handshakes.
    pub fn new(
        cert: &Path,
        key: &Path,
        flags: (String, String),
        provider: Arc<CryptoProvider>,
    ) -> Result<Arc<CertFiles>, TlsError> {
        let files = CertFiles {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            flags,
            provider,
            cached: Mutex::new(None),
        };
        files.current()?;
        Ok(Arc::new(files))
    }

    /// The certificate as the files hold it now.
    pub fn current(&self) -> Result<Arc<CertifiedKey>, TlsError> {
        let stamp = [stamp(&self.cert), stamp(&self.key)];
        let mut cached = self.cached.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((at, key)) = cached.as_ref() {
            if *at == stamp {
                return Ok(key.clone());
            }
        }
        let key = Arc::new(self.load()?);
        *cached = Some((stamp, key.clone()));
        Ok(key)
    }

    fn load(&self) -> Result<CertifiedKey, TlsError> {
        let (cert_flag, key_flag) = (&self.flags.0, &self.flags.1);
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&crate::read(&self.cert, cert_flag)?)
            .collect::<Result<_, _>>()
            .map_err(|e| crate::err(format!("parse {cert_flag}"), e))?;
        if certs.is_empty() {
            return Err(TlsError(format!("{cert_flag}: no certificate found in {}", self.cert.display())));
        }
        let key = PrivateKeyDer::from_pem_slice(&crate::read(&self.key, key_flag)?)
            .map_err(|e| crate::err(format!("parse {key_flag}"), e))?;
        CertifiedKey::from_der(certs, key, &self.provider).map_err(|e| crate::err(format!("{cert_flag} and {key_flag}"), e))
    }

    /// For a handshake: the certificate, or `None` (the handshake fails)
    /// with etcd's warning.
    fn for_handshake(&self) -> Option<Arc<CertifiedKey>> {
        self.current()
            .inspect_err(|e| {
                tracing::warn!(cert_file = %self.cert.display(), key_file = %self.key.display(), error = %e, "failed to create certificate");
            })
            .ok()
    }
}

fn stamp(path: &Path) -> (Option<SystemTime>, u64) {
    std::fs::metadata(path).map_or((None, 0), |m| (m.modified().ok(), m.len()))
}

impl ResolvesServerCert for CertFiles {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.for_handshake()
    }
}

impl ResolvesClientCert for CertFiles {
    fn resolve(&self, _root_hint_subjects: &[&[u8]], _sigschemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        self.for_handshake()
    }

    fn has_certs(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap().self_signed(&key).unwrap();
        let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }

    #[test]
    fn a_rotated_certificate_is_used_from_the_next_handshake() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = write_pair(dir.path(), "one.example");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let files = CertFiles::new(&c, &k, ("--cert-file".into(), "--key-file".into()), provider).unwrap();
        let first = files.current().unwrap();
        assert!(Arc::ptr_eq(&first, &files.current().unwrap()), "unchanged files are not parsed again");
        // A new pair (a different size is enough for the stamp to change even
        // within the file system's time granularity).
        write_pair(dir.path(), "two.longer.example");
        let second = files.current().unwrap();
        assert_ne!(first.cert, second.cert);
        // A broken key fails the handshake rather than using the old pair.
        std::fs::write(&k, "not a key").unwrap();
        assert!(files.for_handshake().is_none());
    }
}

//! `--cipher-suites`: Go's cipher-suite names (what etcd accepts) mapped to
//! rustls's suites.
//!
//! As in Go (and so in etcd), the list restricts the TLS 1.2 suites; TLS 1.3
//! suites stay on unless the list names some of them. Go names rustls does
//! not implement (CBC, RC4, 3DES, non-ECDHE key exchange: all weak) are
//! dropped with a warning; a list left with no TLS 1.2 suite at all is refused,
//! and a name Go does not know gets etcd's error.

use rustls::crypto::ring::{cipher_suite as suite, default_provider};
use rustls::crypto::CryptoProvider;
use rustls::SupportedCipherSuite;

use crate::TlsError;

/// Go's names of the suites rustls implements.
const RUSTLS_SUITES: &[(&str, &SupportedCipherSuite)] = &[
    ("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", &suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256),
    ("TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", &suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384),
    ("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", &suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256),
    ("TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", &suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384),
    ("TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", &suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256),
    ("TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305", &suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256),
    ("TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", &suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256),
    ("TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305", &suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256),
    ("TLS_AES_128_GCM_SHA256", &suite::TLS13_AES_128_GCM_SHA256),
    ("TLS_AES_256_GCM_SHA384", &suite::TLS13_AES_256_GCM_SHA384),
    ("TLS_CHACHA20_POLY1305_SHA256", &suite::TLS13_CHACHA20_POLY1305_SHA256),
];

/// The rest of Go's `tls.CipherSuites()` and `tls.InsecureCipherSuites()`.
const GO_ONLY_SUITES: &[&str] = &[
    "TLS_RSA_WITH_AES_128_CBC_SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    "TLS_RSA_WITH_RC4_128_SHA",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_RSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
];

/// ring's provider limited to the suites `names` allows (all of ring's for none).
pub fn provider(names: &[String]) -> Result<CryptoProvider, TlsError> {
    let mut provider = default_provider();
    if names.is_empty() {
        return Ok(provider);
    }
    let mut chosen: Vec<SupportedCipherSuite> = Vec::new();
    for name in names {
        match RUSTLS_SUITES.iter().find(|(go, _)| go == name) {
            Some((_, s)) if !chosen.contains(s) => chosen.push(**s),
            Some(_) => {}
            None if GO_ONLY_SUITES.contains(&name.as_str()) => {
                tracing::warn!(cipher_suite = %name, "--cipher-suites: suite not implemented by rustls (a weak one); skipped");
            }
            None => return Err(TlsError(format!("unexpected TLS cipher suite {name:?}"))),
        }
    }
    let is_tls13 = |s: &SupportedCipherSuite| matches!(s, SupportedCipherSuite::Tls13(_));
    if !chosen.iter().any(|s| !is_tls13(s)) {
        return Err(TlsError(format!(
            "--cipher-suites: none of {} is a TLS 1.2 suite hub implements",
            names.join(",")
        )));
    }
    if !chosen.iter().any(is_tls13) {
        chosen.extend(provider.cipher_suites.iter().copied().filter(is_tls13));
    }
    provider.cipher_suites = chosen;
    Ok(provider)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(p: &CryptoProvider) -> Vec<String> {
        p.cipher_suites.iter().map(|s| format!("{:?}", s.suite())).collect()
    }

    #[test]
    fn go_names_restrict_tls12_and_keep_tls13() {
        let p = provider(&["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256".into(), "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA".into()])
            .unwrap();
        assert_eq!(
            names(&p),
            ["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "TLS13_AES_256_GCM_SHA384", "TLS13_AES_128_GCM_SHA256", "TLS13_CHACHA20_POLY1305_SHA256"]
        );
    }

    #[test]
    fn tls13_names_restrict_tls13() {
        let p = provider(&["TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305".into(), "TLS_AES_128_GCM_SHA256".into()]).unwrap();
        assert_eq!(names(&p), ["TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", "TLS13_AES_128_GCM_SHA256"]);
    }

    #[test]
    fn unknown_and_unusable_lists_are_refused() {
        assert_eq!(provider(&["TLS_FOO".into()]).unwrap_err().to_string(), "unexpected TLS cipher suite \"TLS_FOO\"");
        assert!(provider(&["TLS_RSA_WITH_RC4_128_SHA".into()]).is_err());
        assert_eq!(provider(&[]).unwrap().cipher_suites.len(), default_provider().cipher_suites.len());
    }
}

//! hubd's sockets: etcd's TLS flags of each side turned into `hub_tls`
//! settings, and the listeners of `--listen-client-urls` and
//! `--listen-peer-urls` bound with etcd's checks and warnings.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use hub_tls::net::{listen_specs, ListenSpec, Listener, Url};
use hub_tls::{Tls, TlsFlags};

use crate::config::Config;

/// The hosts of `urls`, for an auto-TLS certificate.
fn hosts<'a>(urls: impl IntoIterator<Item = &'a String>) -> Vec<String> {
    let hosts: std::collections::BTreeSet<String> =
        urls.into_iter().filter_map(|u| Url::parse(u).ok()).map(|u| u.host).collect();
    hosts.into_iter().collect()
}

/// Client TLS from `--cert-file`, `--key-file`, `--trusted-ca-file`,
/// `--client-cert-auth`, `--auto-tls` (certificate in
/// `<data-dir>/fixtures/client`, as etcd), `--client-crl-file`,
/// `--client-cert-allowed-hostname`, `--client-cert-file`, `--client-key-file`,
/// `--cipher-suites` and the TLS versions.
pub fn client_tls(config: &Config) -> anyhow::Result<Option<Arc<Tls>>> {
    let flags = TlsFlags {
        side: "client",
        cert_file: config.cert_file.clone(),
        key_file: config.key_file.clone(),
        trusted_ca_file: config.trusted_ca_file.clone(),
        client_cert_auth: config.client_cert_auth,
        auto_tls: config.auto_tls,
        auto_tls_dir: fixtures(&config.data_dir, "client"),
        hosts: hosts(config.listen_client_urls.iter().chain(&config.listen_client_http_urls)),
        crl_file: config.client_crl_file.clone(),
        allowed_cn: Vec::new(),
        allowed_hostname: config.client_cert_allowed_hostname.clone(),
        client_cert_file: config.client_cert_file.clone(),
        client_key_file: config.client_key_file.clone(),
        cipher_suites: config.cipher_suites.clone(),
        // etcd checks the SANs of peers only.
        check_san: false,
        min_version: Some(config.tls_min_version),
        max_version: config.tls_max_version,
    };
    warn_auto_tls_ignored(&flags);
    Ok(Tls::from_flags(&flags).context("client TLS")?.map(Arc::new))
}

/// Peer TLS from the `--peer-*` flags, `--cipher-suites` and the TLS versions.
pub fn peer_tls(config: &Config) -> anyhow::Result<Option<Arc<Tls>>> {
    let flags = TlsFlags {
        side: "peer",
        cert_file: config.peer_cert_file.clone(),
        key_file: config.peer_key_file.clone(),
        trusted_ca_file: config.peer_trusted_ca_file.clone(),
        client_cert_auth: config.peer_client_cert_auth,
        auto_tls: config.peer_auto_tls,
        auto_tls_dir: fixtures(&config.data_dir, "peer"),
        hosts: hosts(config.listen_peer_urls.iter().chain(&config.initial_advertise_peer_urls)),
        crl_file: config.peer_crl_file.clone(),
        allowed_cn: config.peer_cert_allowed_cn.clone(),
        allowed_hostname: config.peer_cert_allowed_hostname.clone(),
        client_cert_file: config.peer_client_cert_file.clone(),
        client_key_file: config.peer_client_key_file.clone(),
        cipher_suites: config.cipher_suites.clone(),
        check_san: !config.peer_skip_client_san_verification,
        min_version: Some(config.tls_min_version),
        max_version: config.tls_max_version,
    };
    warn_auto_tls_ignored(&flags);
    Ok(Tls::from_flags(&flags).context("peer TLS")?.map(Arc::new))
}

fn fixtures(data_dir: &Path, side: &str) -> std::path::PathBuf {
    data_dir.join("fixtures").join(side)
}

fn warn_auto_tls_ignored(flags: &TlsFlags) {
    if flags.auto_tls && (flags.cert_file.is_some() || flags.key_file.is_some()) {
        tracing::warn!(side = flags.side, "ignoring auto TLS since certs given");
    }
}

/// Binds every address of `urls` (`flag` names them in errors). An `https`
/// or `unixs` URL needs `tls`; an `http` URL beside TLS settings is served in
/// the clear with etcd's warning.
pub async fn bind(urls: &[String], flag: &str, tls: Option<&Tls>) -> anyhow::Result<Vec<(ListenSpec, Listener)>> {
    if tls.is_none() {
        if let Some(url) = urls.iter().find(|u| u.starts_with("https://") || u.starts_with("unixs://")) {
            // etcd's words for each kind of listener.
            match flag {
                "--listen-peer-urls" => anyhow::bail!(
                    "TLS key/cert (--peer-cert-file, --peer-key-file) must be provided for {flag} {url} with HTTPS scheme"
                ),
                "--listen-metrics-urls" => {
                    anyhow::bail!("client TLS key/cert (--cert-file, --key-file) must be provided for metrics secure url")
                }
                _ => anyhow::bail!("TLS key/cert (--cert-file, --key-file) must be provided for client url {url} with HTTPS scheme"),
            }
        }
    }
    let specs = listen_specs(urls).map_err(|e| anyhow::anyhow!("{flag}: {e}"))?;
    let mut listeners = Vec::new();
    for spec in specs {
        if spec.plain && tls.is_some() {
            tracing::warn!(address = %spec.address, "scheme is HTTP while key and cert files are present; ignoring key and cert files");
        }
        let listener =
            Listener::bind(&spec.address).await.with_context(|| format!("{flag}: listen on {}", spec.address))?;
        listeners.push((spec, listener));
    }
    Ok(listeners)
}

//! Real handshakes over loopback between hub-tls listeners and dialers, with
//! certificates made here: the checks etcd makes beyond the chain (a peer's
//! SANs against its address, the allowed hostname when dialing) and the
//! certificates Go accepts that webpki alone would not (a CA certificate used
//! as its own leaf, as etcd's `CommonName-root` fixture is).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hub_tls::net::{self, Address, ListenSpec, Listener, Url};
use hub_tls::{Tls, TlsFlags};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use tokio_stream::StreamExt;

/// A certificate and key written as PEM files.
struct Pair {
    cert: PathBuf,
    key: PathBuf,
}

fn write(dir: &Path, name: &str, cert: &rcgen::Certificate, key: &KeyPair) -> Pair {
    let pair = Pair { cert: dir.join(format!("{name}.crt")), key: dir.join(format!("{name}.key")) };
    std::fs::write(&pair.cert, cert.pem()).unwrap();
    std::fs::write(&pair.key, key.serialize_pem()).unwrap();
    pair
}

fn params(names: &[&str], cn: &str) -> CertificateParams {
    let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    params
}

/// A CA, and certificates it issues.
struct Ca {
    pair: Pair,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new(dir: &Path) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut p = params(&[], "test CA");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = p.self_signed(&key).unwrap();
        let pair = write(dir, "ca", &cert, &key);
        Ca { pair, issuer: Issuer::new(p, key) }
    }

    fn issue(&self, dir: &Path, name: &str, sans: &[&str], cn: &str) -> Pair {
        let key = KeyPair::generate().unwrap();
        let cert = params(sans, cn).signed_by(&key, &self.issuer).unwrap();
        write(dir, name, &cert, &key)
    }
}

fn peer_flags(pair: &Pair, ca: &Path) -> TlsFlags {
    TlsFlags {
        side: "peer",
        cert_file: Some(pair.cert.clone()),
        key_file: Some(pair.key.clone()),
        trusted_ca_file: Some(ca.to_path_buf()),
        client_cert_auth: true,
        check_san: true,
        ..TlsFlags::default()
    }
}

fn tls(flags: &TlsFlags) -> Tls {
    Tls::from_flags(flags).unwrap().unwrap()
}

/// A TLS listener on a free loopback port: its URL and the connections it
/// lets through.
async fn listen(tls: &Tls) -> (Url, tokio_stream::wrappers::ReceiverStream<std::io::Result<net::Conn>>) {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = Address::Tcp(probe.local_addr().unwrap().to_string());
    drop(probe);
    let listener = Listener::bind(&address).await.unwrap();
    let spec = ListenSpec { address: address.clone(), plain: false, secure: true };
    let url = Url::parse(&format!("https://{address}")).unwrap();
    (url, net::incoming(listener, &spec, Some(tls)))
}

/// Whether the listener hands on a connection dialed with `client`.
async fn accepted(server: &Tls, client: &Arc<rustls::ClientConfig>) -> Result<Option<String>, String> {
    let (url, mut conns) = listen(server).await;
    let dialed = net::dial(&url, Some(client)).await.map_err(|e| e.to_string())?;
    let conn = tokio::time::timeout(Duration::from_secs(2), conns.next()).await;
    drop(dialed);
    match conn {
        Ok(Some(Ok(conn))) => Ok(conn.info().common_name.clone()),
        _ => Err("the listener refused the connection".into()),
    }
}

#[tokio::test]
async fn a_peer_certificate_must_name_the_address_it_connects_from() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path());
    let server = tls(&peer_flags(&ca.issue(dir.path(), "server", &["127.0.0.1"], "server"), &ca.pair.cert));

    let here = tls(&peer_flags(&ca.issue(dir.path(), "here", &["127.0.0.1"], "here"), &ca.pair.cert));
    assert_eq!(accepted(&server, &here.client).await, Ok(Some("here".into())));
    // A DNS SAN that resolves to the address will do too.
    let named = tls(&peer_flags(&ca.issue(dir.path(), "named", &["localhost"], "named"), &ca.pair.cert));
    assert!(accepted(&server, &named.client).await.is_ok());

    let elsewhere = tls(&peer_flags(&ca.issue(dir.path(), "elsewhere", &["10.9.9.9"], "x"), &ca.pair.cert));
    assert!(accepted(&server, &elsewhere.client).await.is_err());
    // --experimental-peer-skip-client-san-verification.
    let lax = tls(&TlsFlags { check_san: false, ..peer_flags(&ca.issue(dir.path(), "lax", &["127.0.0.1"], "s"), &ca.pair.cert) });
    assert!(accepted(&lax, &elsewhere.client).await.is_ok());
}

#[tokio::test]
async fn a_member_does_not_dial_a_peer_outside_its_allowed_hostname() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path());
    let server = tls(&peer_flags(&ca.issue(dir.path(), "server", &["localhost", "127.0.0.1"], "a"), &ca.pair.cert));
    let pair = ca.issue(dir.path(), "client", &["localhost", "127.0.0.1"], "b");
    let picky = tls(&TlsFlags { allowed_hostname: vec!["example2.com".into()], ..peer_flags(&pair, &ca.pair.cert) });
    let (url, _conns) = listen(&server).await;
    let refused = net::dial(&url, Some(&picky.client)).await.err().expect("the dial is refused");
    assert!(net::HandshakeError::is(&refused), "{refused}");
    let content = tls(&TlsFlags { allowed_hostname: vec!["localhost".into()], ..peer_flags(&pair, &ca.pair.cert) });
    assert!(net::dial(&url, Some(&content.client)).await.is_ok());
}

#[tokio::test]
async fn a_ca_certificate_listed_in_the_ca_file_is_trusted_as_a_leaf() {
    let dir = tempfile::tempdir().unwrap();
    let key = KeyPair::generate().unwrap();
    let mut p = params(&["localhost", "127.0.0.1"], "root");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let root = write(dir.path(), "root", &p.self_signed(&key).unwrap(), &key);
    let server = tls(&TlsFlags { side: "client", check_san: false, ..peer_flags(&root, &root.cert) });
    let client = hub_tls::client_config(Some(&root.cert), Some((&root.cert, &root.key)), false).unwrap();
    // The certificate's common name is the user, as with etcd's fixture.
    assert_eq!(accepted(&server, &Arc::new(client)).await, Ok(Some("root".into())));
}

/// etcd 3.6's lists: a peer gets in with any of `--peer-cert-allowed-cn`'s
/// names; and a member dials with `--peer-client-cert-file` when given.
#[tokio::test]
async fn allowed_common_names_are_a_list_and_a_member_dials_with_its_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path());
    let flags = |name: &str, cn: &str| peer_flags(&ca.issue(dir.path(), name, &["127.0.0.1"], cn), &ca.pair.cert);
    let allowed = vec!["a.example".to_string(), "b.example".to_string()];
    let server = tls(&TlsFlags { allowed_cn: allowed.clone(), ..flags("server", "a.example") });
    for (name, cn, lets_in) in [("first", "a.example", true), ("second", "b.example", true), ("other", "c.example", false)] {
        let dialer = tls(&flags(name, cn));
        assert_eq!(accepted(&server, &dialer.client).await.is_ok(), lets_in, "{cn}");
    }
    // Its server certificate is c.example's, its client certificate b.example's.
    let client = ca.issue(dir.path(), "client", &["127.0.0.1"], "b.example");
    let dialer = TlsFlags { client_cert_file: Some(client.cert), client_key_file: Some(client.key), ..flags("own", "c.example") };
    assert_eq!(accepted(&server, &tls(&dialer).client).await, Ok(Some("b.example".into())));
    let half = TlsFlags { client_key_file: None, ..dialer };
    let refused = Tls::from_flags(&half).err().expect("a client certificate without its key").to_string();
    assert!(refused.starts_with("ClientKeyFile and ClientCertFile must both be present or both absent: key: , cert: "), "{refused}");
}

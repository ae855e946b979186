//! Client TLS end to end: hubd (and etcd 3.4.23, the reference) serving
//! clients over https and unix sockets, driven by etcdctl and openssl, with a
//! PKI made by rcgen for each run (no key is committed): a CA, a server
//! certificate, a client certificate, one revoked by a CRL, and one from a CA
//! the server does not trust.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::free_port;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, RevokedCertParams, SerialNumber,
};

/// The certificates of one test run, as files.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        let write = |name: &str, data: &str| std::fs::write(dir.path().join(name), data).expect("write pem");
        let (ca_key, ca_params) = ca("hub-test-ca");
        write("ca.crt", &ca_params.self_signed(&ca_key).expect("self-sign").pem());
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf = |name: &str, cn: &str, serial: u64, issuer: &Issuer<'_, KeyPair>| {
            let key = KeyPair::generate().expect("key");
            let mut params =
                CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).expect("params");
            params.distinguished_name.push(DnType::CommonName, cn);
            params.serial_number = Some(SerialNumber::from(serial));
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
            let cert = params.signed_by(&key, issuer).expect("sign");
            write(&format!("{name}.crt"), &cert.pem());
            write(&format!("{name}.key"), &key.serialize_pem());
        };
        leaf("server", "hub-server", 1, &issuer);
        leaf("alice", "alice", 2, &issuer);
        leaf("revoked", "mallory", 3, &issuer);
        let (other_key, other) = ca("someone-else");
        leaf("stranger", "alice", 4, &Issuer::new(other, other_key));
        let crl = CertificateRevocationListParams {
            this_update: rcgen::date_time_ymd(2024, 1, 1),
            next_update: rcgen::date_time_ymd(2099, 1, 1),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: vec![RevokedCertParams {
                serial_number: SerialNumber::from(3u64),
                revocation_time: rcgen::date_time_ymd(2024, 1, 1),
                reason_code: None,
                invalidity_date: None,
            }],
            key_identifier_method: KeyIdMethod::Sha256,
        };
        write("revoke.crl", &crl.signed_by(&issuer).expect("sign the CRL").pem().expect("CRL pem"));
        Pki { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_string_lossy().into_owned()
    }

    /// etcdctl/hubctl flags presenting `who`'s certificate.
    fn client_flags(&self, who: &str) -> Vec<String> {
        vec![
            format!("--cacert={}", self.path("ca.crt")),
            format!("--cert={}", self.path(&format!("{who}.crt"))),
            format!("--key={}", self.path(&format!("{who}.key"))),
        ]
    }

    fn server_flags(&self) -> Vec<String> {
        [
            ("--cert-file", "server.crt"),
            ("--key-file", "server.key"),
            ("--trusted-ca-file", "ca.crt"),
            ("--client-crl-file", "revoke.crl"),
        ]
        .iter()
        .flat_map(|(flag, file)| [flag.to_string(), self.path(file)])
        .chain(["--client-cert-auth".to_string()])
        .collect()
    }
}

fn ca(name: &str) -> (KeyPair, CertificateParams) {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    (key, params)
}

/// One member (hubd or etcd) with the given client URLs and flags.
struct Server {
    child: Child,
    /// The data directory's parent, also the working directory.
    dir: tempfile::TempDir,
}

impl Server {
    fn start(bin: &Path, client_urls: &str, extra: &[String]) -> Server {
        let data = tempfile::tempdir().expect("tempdir");
        let peer = format!("http://127.0.0.1:{}", free_port());
        let mut child = Command::new(bin)
            .args(["--name", "m", "--data-dir", &data.path().join("d").to_string_lossy()])
            .args(["--listen-client-urls", client_urls, "--advertise-client-urls", client_urls])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("m={peer}")])
            .args(extra)
            .current_dir(data.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the server");
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("ready to serve client requests") {
                    let _ = tx.send(());
                }
                if std::env::var_os("HUB_TEST_LOG").is_some() {
                    eprintln!("[server] {line}");
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(20)).expect("server did not become ready");
        Server { child, dir: data }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs etcdctl with short timeouts.
fn ctl(endpoint: &str, flags: &[String], args: &[&str]) -> Output {
    ctl_in(Path::new("."), endpoint, flags, args)
}

/// [`ctl`] in `dir` (where `unix://` endpoints are).
fn ctl_in(dir: &Path, endpoint: &str, flags: &[String], args: &[&str]) -> Output {
    Command::new("etcdctl")
        .current_dir(dir)
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", endpoint, "--dial-timeout=2s", "--command-timeout=3s"])
        .args(flags)
        .args(args)
        .output()
        .expect("run the client")
}

fn ok(out: &Output) -> bool {
    out.status.success()
}

/// Who may put a key over https with `--client-cert-auth` and a CRL: the same
/// answers from hubd and etcd.
#[test]
fn client_certificates_are_checked_as_etcd_checks_them() {
    let pki = Pki::new();
    let no_cert = vec![format!("--cacert={}", pki.path("ca.crt"))];
    let cases: [(&str, Vec<String>, bool); 4] = [
        ("alice", pki.client_flags("alice"), true),
        ("revoked", pki.client_flags("revoked"), false),
        ("stranger", pki.client_flags("stranger"), false),
        ("no certificate", no_cert, false),
    ];
    let mut servers = vec![("etcd", common::etcd_bin())];
    servers.push(("hubd", common::hubd_bin()));
    for (server_name, bin) in servers {
        let port = free_port();
        let endpoint = format!("https://127.0.0.1:{port}");
        let _server = Server::start(&bin, &endpoint, &pki.server_flags());
        for (who, flags, allowed) in &cases {
            let out = ctl(&endpoint, flags, &["put", "k", who]);
            assert_eq!(ok(&out), *allowed, "etcdctl as {who} against {server_name}: {out:?}");
        }
        let out = ctl(&endpoint, &pki.client_flags("alice"), &["get", "k", "--print-value-only"]);
        assert_eq!(String::from_utf8_lossy(&out.stdout), "alice\n", "{server_name}");
    }
}

/// `http://` and `https://` on one address share a listener (as etcd's cmux),
/// and TLS 1.2 and 1.3 both work.
#[test]
fn http_and_https_share_one_port() {
    let pki = Pki::new();
    let port = free_port();
    let urls = format!("http://127.0.0.1:{port},https://127.0.0.1:{port}");
    let _server = Server::start(&common::hubd_bin(), &urls, &pki.server_flags());
    let plain = ctl(&format!("http://127.0.0.1:{port}"), &[], &["put", "k", "clear"]);
    assert!(ok(&plain), "{plain:?}");
    let secure = ctl(&format!("https://127.0.0.1:{port}"), &pki.client_flags("alice"), &["get", "k"]);
    assert_eq!(String::from_utf8_lossy(&secure.stdout), "k\nclear\n", "{secure:?}");
    for version in ["-tls1_2", "-tls1_3"] {
        let out = openssl_connect(port, &pki, &[version]);
        assert!(ok(&out), "openssl {version}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

/// `openssl s_client` presenting alice's certificate.
fn openssl_connect(port: u16, pki: &Pki, extra: &[&str]) -> Output {
    Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}"), "-CAfile", &pki.path("ca.crt")])
        .args(["-cert", &pki.path("alice.crt"), "-key", &pki.path("alice.key"), "-verify_return_error"])
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .expect("openssl (apt-get install openssl)")
}

/// `--cipher-suites` (Go's names) limits TLS 1.2: a client offering none of
/// them fails the handshake, one offering a listed suite gets in.
#[test]
fn cipher_suites_limit_tls12() {
    let pki = Pki::new();
    let port = free_port();
    let mut flags = pki.server_flags();
    flags.extend(["--cipher-suites".to_string(), "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384".to_string()]);
    let _server = Server::start(&common::hubd_bin(), &format!("https://127.0.0.1:{port}"), &flags);
    let listed = openssl_connect(port, &pki, &["-tls1_2", "-cipher", "ECDHE-ECDSA-AES256-GCM-SHA384"]);
    assert!(ok(&listed), "{}", String::from_utf8_lossy(&listed.stderr));
    let unlisted = openssl_connect(port, &pki, &["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"]);
    assert!(!ok(&unlisted), "a suite not in --cipher-suites was accepted");
    assert!(String::from_utf8_lossy(&unlisted.stderr).contains("handshake failure"), "{unlisted:?}");
}

/// `--tls-min-version` and `--tls-max-version` (etcd 3.6) choose the TLS
/// versions a client may use, as etcd 3.6.16 lets it.
#[test]
fn tls_versions_are_limited_as_etcd_36_limits_them() {
    let Some(etcd) = common::etcd36_bin() else { return };
    let pki = Pki::new();
    for limits in [["--tls-min-version=TLS1.3"], ["--tls-max-version=TLS1.2"]] {
        let mut answers = Vec::new();
        for bin in [&etcd, &common::hubd_bin()] {
            let port = free_port();
            let mut flags = pki.server_flags();
            flags.extend(limits.map(String::from));
            let _server = Server::start(bin, &format!("https://127.0.0.1:{port}"), &flags);
            let connects = |version| ok(&openssl_connect(port, &pki, &[version]));
            answers.push((connects("-tls1_2"), connects("-tls1_3")));
        }
        let expected = if limits[0].contains("min") { (false, true) } else { (true, false) };
        assert_eq!(answers, [expected, expected], "{limits:?}: (TLS 1.2, TLS 1.3) accepted by etcd 3.6.16, hubd");
    }
}

/// `unix://` and `unixs://` client sockets: as in etcd, the URL's
/// `host:port` is the socket's file name in the working directory.
#[test]
fn unix_sockets_serve_clients() {
    let pki = Pki::new();
    let plain = format!("unix://localhost:{}", free_port());
    let secure = format!("unixs://localhost:{}", free_port());
    let server = Server::start(&common::hubd_bin(), &format!("{plain},{secure}"), &pki.server_flags());
    let dir = server.dir.path();
    let out = ctl_in(dir, &plain, &[], &["put", "k", "v"]);
    assert!(ok(&out), "over {plain}: {out:?}");
    let out = ctl_in(dir, &secure, &pki.client_flags("alice"), &["get", "k", "--print-value-only"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "v\n", "over {secure}: {out:?}");
    let out = ctl_in(dir, &secure, &pki.client_flags("revoked"), &["get", "k"]);
    assert!(!ok(&out), "a revoked certificate got in over {secure}");
}

/// `--auto-tls`: a self-signed certificate in `<data-dir>/fixtures/client`;
/// clients get in with `--insecure-skip-tls-verify` and not without.
#[test]
fn auto_tls_serves_a_self_signed_certificate() {
    let port = free_port();
    let endpoint = format!("https://127.0.0.1:{port}");
    let _server = Server::start(&common::hubd_bin(), &endpoint, &["--auto-tls".to_string()]);
    let skip = ["--insecure-transport=false".to_string(), "--insecure-skip-tls-verify".to_string()];
    let out = ctl(&endpoint, &skip, &["put", "k", "v"]);
    assert!(ok(&out), "{out:?}");
    let out = ctl(&endpoint, &["--insecure-transport=false".to_string()], &["put", "k", "v"]);
    assert!(!ok(&out), "etcdctl trusted a self-signed certificate");
}

/// A certificate replaced on disk is served from the next handshake on, as
/// etcd re-reads its files for each one: no restart for a rotation.
#[test]
fn a_rotated_server_certificate_is_served_without_a_restart() {
    let pki = Pki::new();
    let port = free_port();
    let endpoint = format!("https://127.0.0.1:{port}");
    let _server = Server::start(&common::hubd_bin(), &endpoint, &pki.server_flags());
    let subject = || {
        let out = openssl_connect(port, &pki, &[]);
        assert!(ok(&out), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.lines().find(|l| l.starts_with("subject=")).map(str::to_string).unwrap_or_default()
    };
    assert!(subject().contains("hub-server"));
    // Alice's certificate is also good for serving (same CA, same names).
    for ext in ["crt", "key"] {
        std::fs::copy(pki.path(&format!("alice.{ext}")), pki.path(&format!("server.{ext}"))).expect("rotate");
    }
    assert!(subject().contains("alice"), "the rotated certificate is served");
    let out = ctl(&endpoint, &pki.client_flags("alice"), &["put", "k", "after rotation"]);
    assert!(ok(&out), "{out:?}");
}

//! TLS: hubctl and etcdctl against an etcd that serves clients over https and
//! requires client certificates (`--cacert`, `--cert`, `--key`). Certificates
//! are made with the `openssl` command for each run. Runs against etcd only:
//! hubd does not serve client TLS yet.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::{Server, ServerKind, Tool};

/// A CA and a certificate for 127.0.0.1 signed by it, usable by both sides.
fn make_certificates(dir: &Path) {
    let run = |args: &[&str]| {
        let status = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("openssl (apt-get install openssl)");
        assert!(status.success(), "openssl {args:?}");
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    run(&[
        &["req", "-x509"],
        &ec[..],
        &["-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=hub-test-ca"],
    ]
    .concat());
    run(&[&["req"], &ec[..], &["-keyout", "member.key", "-out", "member.csr", "-subj", "/CN=localhost"]].concat());
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n",
    )
    .expect("write ext.cnf");
    run(&[
        "x509",
        "-req",
        "-in",
        "member.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "member.crt",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
}

#[test]
fn client_certificates_work_as_with_etcdctl() {
    let certs = tempfile::tempdir().expect("tempdir");
    make_certificates(certs.path());
    let file = |name: &str| certs.path().join(name).to_string_lossy().into_owned();
    let tls_flags = format!("--cacert {} --cert {} --key {}", file("ca.crt"), file("member.crt"), file("member.key"));
    let script = format!(
        "put foo bar {tls_flags}\nget foo -w json {tls_flags}\n\
         --endpoints https://$SERVER get foo {tls_flags}\n\
         get foo --cacert {ca} --command-timeout 1s\n\
         get foo --cert {cert} {tls_flags}\n\
         get foo --cacert=\n",
        ca = file("ca.crt"),
        cert = file("member.crt"),
    );
    let extra = [
        "--cert-file".to_string(),
        file("member.crt"),
        "--key-file".to_string(),
        file("member.key"),
        "--client-cert-auth".to_string(),
        "--trusted-ca-file".to_string(),
        file("ca.crt"),
    ];
    let (client_port, peer_port) = (common::free_port(), common::free_port());
    let mut results = Vec::new();
    for tool in [Tool::Etcdctl, Tool::Hubctl] {
        let server = Server::start_with(&common::etcd_bin(), client_port, peer_port, "https", &extra);
        let script = script.replace("$SERVER", &server.endpoint());
        results.push(common::run_script(tool, ServerKind::Etcd, &server.endpoint(), &script));
    }
    let (etcdctl, hubctl) = (&results[0], &results[1]);
    for ((line, want), (_, got)) in etcdctl.iter().zip(hubctl) {
        // Where etcd refuses the handshake, etcdctl retries until its timeout and
        // hubctl names the TLS failure: only the exit code must agree there.
        if line.contains("--command-timeout 1s") {
            assert_eq!(want.exit, got.exit, "{line}");
            continue;
        }
        assert_eq!(want, got, "{line}");
    }
}

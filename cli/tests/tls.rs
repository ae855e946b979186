//! TLS: hubctl and etcdctl against an etcd and a hubd that serve clients over
//! https and require client certificates (`--cacert`, `--cert`, `--key`), and
//! that serve a self-signed certificate (`--auto-tls`, which clients accept
//! with `--insecure-skip-tls-verify`). Certificates are made with the
//! `openssl` command for each run.

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
    compare_tools(&script, &extra, |line| line.contains("--command-timeout 1s"));
}

#[test]
fn insecure_skip_tls_verify_works_as_with_etcdctl() {
    let script = "put foo bar --insecure-transport=false --insecure-skip-tls-verify\n\
                  --endpoints https://$SERVER get foo --insecure-skip-tls-verify\n\
                  --endpoints https://$SERVER get foo --command-timeout 1s\n";
    compare_tools(script, &["--auto-tls".to_string()], |line| line.contains("--command-timeout 1s"));
}

/// Runs `script` with etcdctl and with hubctl against etcd and against hubd,
/// each started over https with `extra`, and compares hubctl's answers with
/// etcdctl's. Where the server refuses the handshake (`refused` lines),
/// etcdctl retries until its timeout and hubctl may word the failure
/// differently: only the exit codes must agree there.
fn compare_tools(script: &str, extra: &[String], refused: impl Fn(&str) -> bool) {
    for (bin, kind) in [(common::etcd_bin(), ServerKind::Etcd), (common::hubd_bin(), ServerKind::Hubd)] {
        let (client_port, peer_port) = (common::free_port(), common::free_port());
        let mut results = Vec::new();
        for tool in [Tool::Etcdctl, Tool::Hubctl] {
            let server = Server::start_with(&bin, client_port, peer_port, "https", extra);
            let script = script.replace("$SERVER", &server.endpoint());
            results.push(common::run_script(tool, kind, &server.endpoint(), &script));
        }
        let (etcdctl, hubctl) = (&results[0], &results[1]);
        for ((line, want), (_, got)) in etcdctl.iter().zip(hubctl) {
            if refused(line) {
                assert_eq!(want.exit, got.exit, "{kind:?}: {line}");
                continue;
            }
            assert_eq!(want, got, "{kind:?}: {line}");
        }
    }
}

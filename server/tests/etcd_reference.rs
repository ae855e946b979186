//! Differential test: the same etcdctl session against etcd 3.4.23 and against
//! hubd must print the same thing, byte for byte, errors and exit codes included.
//!
//! Both members are started with the same flags, so even the cluster and member
//! IDs in the JSON headers must agree.

mod common;

use common::{etcd_bin, free_port, hubd_bin, Member};

/// One etcdctl call: arguments and optional stdin.
struct Call(&'static [&'static str], Option<&'static str>);

const SESSION: &[Call] = &[
    Call(&["put", "a", "1"], None),
    Call(&["put", "a", "1", "-w", "json"], None),
    Call(&["get", "a", "-w", "json"], None),
    Call(&["put", "b", "2", "--prev-kv", "-w", "json"], None),
    Call(&["put", "b", "3", "--prev-kv"], None),
    Call(&["put", "c/x", "4"], None),
    Call(&["put", "c/y", "5"], None),
    Call(&["get", "c/", "--prefix", "-w", "json"], None),
    Call(&["get", "a", "--from-key", "--limit", "2", "-w", "json"], None),
    Call(&["get", "a", "--from-key", "--sort-by", "VALUE", "--order", "DESCEND"], None),
    Call(&["get", "a", "--from-key", "--sort-by", "MODIFY", "--order", "ASCEND", "--limit", "2", "-w", "json"], None),
    Call(&["get", "a", "--from-key", "--count-only", "-w", "json"], None),
    Call(&["get", "a", "--from-key", "--keys-only"], None),
    Call(&["get", "a", "--rev", "2", "-w", "json"], None),
    Call(&["get", "a", "--rev", "1", "-w", "json"], None),
    Call(&["get", "a", "--rev", "100"], None),
    Call(&["get", "nothing", "-w", "json"], None),
    Call(&["get", "", "--prefix", "--min-mod-rev", "4", "--max-mod-rev", "6", "-w", "json"], None),
    Call(&["get", "", "--prefix", "--min-create-rev", "5", "-w", "json"], None),
    Call(&["del", "nothing", "-w", "json"], None),
    Call(&["del", "c/", "--prefix", "--prev-kv", "-w", "json"], None),
    Call(&["put", "missing", "--ignore-value"], None),
    Call(&["put", "missing", "--ignore-lease"], None),
    Call(&["put", "a", "v", "--lease", "1234"], None),
    Call(&["put", "a", "--ignore-value", "-w", "json"], None),
    Call(&["put", "", "v"], None),
    Call(&["txn", "-w", "json"], Some("value(\"a\") = \"1\"\n\nput t1 x\nget a\n\nput t2 y\n\n")),
    Call(&["txn"], Some("mod(\"a\") > \"0\"\n\nput d 1\nput d 2\n\n\n")),
    Call(&["txn"], Some("version(\"zz\") = \"0\"\n\nput z 1\ndel z\n\n\n")),
    Call(&["txn"], Some("create(\"a\") = \"2\"\n\nput z 1\ndel y z\n\n\n")),
    Call(&["txn", "-w", "json"], Some("version(\"a\") = \"9\"\n\n\nget a\ndel nothing\n\n")),
    Call(&["compaction", "3"], None),
    Call(&["compaction", "3"], None),
    Call(&["compaction", "1000"], None),
    Call(&["get", "a", "--rev", "2"], None),
    Call(&["get", "a", "--rev", "3", "-w", "json"], None),
    Call(&["get", "", "--prefix", "-w", "json"], None),
    Call(&["lease", "timetolive", "3039"], None),
    Call(&["lease", "revoke", "3039"], None),
    Call(&["lease", "keep-alive", "--once", "3039"], None),
    Call(&["member", "list", "-w", "json"], None),
];

fn transcript(m: &Member) -> Vec<String> {
    SESSION
        .iter()
        .map(|Call(args, stdin)| {
            let out = m.etcdctl_stdin(args, *stdin);
            // etcdctl's own retry warnings carry a timestamp and a random client ID.
            let stderr: String = String::from_utf8_lossy(&out.stderr)
                .lines()
                .filter(|l| !l.starts_with("{\"level\":\"warn\""))
                .map(|l| format!("{l}\n"))
                .collect();
            format!(
                "$ etcdctl {}\n{}{}exit {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout),
                stderr,
                out.status.code().unwrap_or(-1)
            )
        })
        .collect()
}

#[test]
fn etcdctl_session_matches_etcd() {
    let (client_port, peer_port) = (free_port(), free_port());
    let etcd = Member::start_on(&etcd_bin(), client_port, peer_port, &[]);
    let want = transcript(&etcd);
    drop(etcd);
    let hub = Member::start_on(&hubd_bin(), client_port, peer_port, &[]);
    let got = transcript(&hub);
    let mut mismatches = Vec::new();
    for (w, g) in want.iter().zip(&got) {
        if w != g {
            mismatches.push(format!("--- etcd\n{w}\n+++ hubd\n{g}"));
        }
    }
    assert!(mismatches.is_empty(), "{} of {} calls differ:\n{}", mismatches.len(), SESSION.len(), mismatches.join("\n\n"));
}

//! The permission matrix: users × operations × key ranges, run with etcdctl
//! against etcd 3.4.23 and against hubd, which must give the same answer
//! (allowed, or the same error) in every cell. Then etcd's holes, where hub
//! answers as for the plain request and etcd does not (nested txns, prev_kv
//! and lease attachment inside a txn, TimeToLive's key list), driven with the
//! etcd-client crate, which can build what etcdctl cannot; both answers are
//! listed.

mod common;

use std::collections::BTreeMap;

use common::{etcd_bin, free_port, hubd_bin, Member};
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, LeaseTimeToLiveOptions, PutOptions, Txn, TxnOp,
};

/// Users and passwords; `anon` means no `--user`.
const USERS: &[&str] = &["anon", "root", "alice", "bob", "carol", "nobody"];

/// Run as root before the matrix, the same on both servers.
const SETUP: &[&[&str]] = &[
    &["user", "add", "root:rootpw"],
    &["auth", "enable"],
    &["role", "add", "prefix-reader"],
    &["role", "grant-permission", "prefix-reader", "read", "a/", "--prefix"],
    &["role", "add", "key-writer"],
    &["role", "grant-permission", "key-writer", "write", "w"],
    &["role", "add", "range-rw"],
    &["role", "grant-permission", "range-rw", "readwrite", "r1", "r5"],
    &["role", "add", "from-reader"],
    &["role", "grant-permission", "from-reader", "read", "z", "--from-key"],
    &["user", "add", "alice:alicepw"],
    &["user", "grant-role", "alice", "prefix-reader"],
    &["user", "grant-role", "alice", "key-writer"],
    &["user", "add", "bob:bobpw"],
    &["user", "grant-role", "bob", "range-rw"],
    &["user", "add", "carol:carolpw"],
    &["user", "grant-role", "carol", "from-reader"],
    &["user", "add", "nobody:nobodypw"],
    &["put", "a/x", "1"],
    &["put", "w", "1"],
    &["put", "r3", "1"],
    &["put", "zz", "1"],
];

/// One operation: etcdctl arguments and stdin.
struct Op(&'static [&'static str], Option<&'static str>);

const OPS: &[Op] = &[
    Op(&["get", "a/x"], None),
    Op(&["get", "a/", "--prefix"], None),
    Op(&["get", "a", "--prefix"], None),
    Op(&["put", "a/x", "v"], None),
    Op(&["put", "w", "v"], None),
    Op(&["put", "w", "v", "--prev-kv"], None),
    Op(&["get", "r2"], None),
    Op(&["get", "r1", "r5"], None),
    Op(&["get", "r1", "r6"], None),
    Op(&["put", "r3", "v"], None),
    Op(&["del", "r4"], None),
    Op(&["del", "r1", "r5", "--prev-kv"], None),
    Op(&["get", "z", "--from-key"], None),
    Op(&["get", "zz"], None),
    Op(&["get", "y", "--from-key"], None),
    Op(&["put", "zz", "v"], None),
    // A txn: compare on a/x, then put w; the else-branch writes r3.
    Op(&["txn"], Some("value(\"a/x\") = \"1\"\n\nput w v\n\nput r3 v\n\n")),
    Op(&["txn"], Some("value(\"a/x\") = \"nope\"\n\nget a/x\n\nget a/x\n\n")),
    Op(&["user", "list"], None),
    Op(&["role", "list"], None),
    Op(&["role", "get", "range-rw"], None),
    Op(&["user", "get", "bob"], None),
    Op(&["auth", "enable"], None),
    Op(&["defrag"], None),
    Op(&["member", "list", "-w", "json"], None),
    Op(&["alarm", "list"], None),
    Op(&["lease", "grant", "60"], None),
];

fn password(user: &str) -> String {
    format!("{user}pw")
}

fn etcdctl(m: &Member, user: &str, args: &[&str], stdin: Option<&str>) -> String {
    let mut all: Vec<String> = Vec::new();
    if user != "anon" {
        all.push(format!("--user={user}:{}", password(user)));
    }
    all.extend(args.iter().map(|s| s.to_string()));
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    let out = m.etcdctl_stdin(&all, stdin);
    if out.status.success() {
        return "OK".into();
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    stderr.lines().filter(|l| l.starts_with("Error:")).collect::<Vec<_>>().join("; ")
}

/// Every cell's answer on one server.
fn matrix(m: &Member) -> BTreeMap<(String, usize), String> {
    for args in SETUP {
        let user = if args[0] == "user" && args[1] == "add" && args[2].starts_with("root") { "anon" } else { "root" };
        let user = if args == &["auth", "enable"] { "anon" } else { user };
        let got = etcdctl(m, user, args, None);
        assert_eq!(got, "OK", "setup {args:?}");
    }
    let mut cells = BTreeMap::new();
    for user in USERS {
        for (i, Op(args, stdin)) in OPS.iter().enumerate() {
            cells.insert((user.to_string(), i), etcdctl(m, user, args, *stdin));
        }
    }
    cells
}

async fn client(m: &Member, user: &str) -> Client {
    let options = ConnectOptions::new().with_user(user, password(user));
    Client::connect([m.endpoint()], Some(options)).await.expect("connect")
}

/// What the holes let alice (read a/*, write w) do; each entry is the
/// answer, "OK" or the error text.
async fn holes(m: &Member) -> Vec<(&'static str, String)> {
    let answer = |r: Result<String, etcd_client::Error>| match r {
        Ok(s) => s,
        Err(etcd_client::Error::GRpcStatus(s)) => s.message().to_string(),
        Err(e) => e.to_string(),
    };
    let mut alice = client(m, "alice").await;
    let mut bob = client(m, "bob").await;
    let mut out = Vec::new();

    // GHSA-rfx7-8w68-q57q: a put of a key alice may not write, in a nested txn.
    let nested = Txn::new().and_then([TxnOp::txn(Txn::new().and_then([TxnOp::put("r3", "stolen", None)]))]);
    out.push(("nested txn writes r3", answer(alice.txn(nested).await.map(|_| "OK".to_string()))));
    let nested_read = Txn::new().and_then([TxnOp::txn(Txn::new().and_then([TxnOp::get("r3", None)]))]);
    out.push((
        "nested txn reads r3",
        answer(alice.txn(nested_read).await.map(|r| format!("OK {} responses", r.op_responses().len()))),
    ));

    // CVE-2026-44283: prev_kv of a key alice may write but not read.
    let prev = Txn::new().and_then([TxnOp::put("w", "v2", Some(PutOptions::new().with_prev_key()))]);
    out.push(("txn put w with prev_kv", answer(alice.txn(prev).await.map(|_| "OK".to_string()))));

    // ... and attaching a lease that holds a key alice may not write.
    let lease = bob.lease_grant(60, None).await.expect("grant").id();
    bob.put("r3", "leased", Some(PutOptions::new().with_lease(lease))).await.expect("bob puts r3");
    let attach = Txn::new().and_then([TxnOp::put("w", "v3", Some(PutOptions::new().with_lease(lease)))]);
    out.push(("txn put w with bob's lease", answer(alice.txn(attach).await.map(|_| "OK".to_string()))));
    out.push((
        "put w with bob's lease",
        answer(alice.put("w", "v4", Some(PutOptions::new().with_lease(lease))).await.map(|_| "OK".to_string())),
    ));

    // CVE-2023-32082: the key names of a lease alice may not read.
    let ttl = alice.lease_time_to_live(lease, Some(LeaseTimeToLiveOptions::new().with_keys())).await;
    out.push(("time-to-live keys of bob's lease", answer(ttl.map(|r| format!("OK {} keys", r.keys().len())))));
    out.push(("revoke bob's lease", answer(alice.lease_revoke(lease).await.map(|_| "OK".to_string()))));

    // The else-branch of a plain txn: checked by both.
    let txn = Txn::new()
        .when([Compare::value("a/x", CompareOp::Equal, "never")])
        .and_then([TxnOp::put("w", "v", None)])
        .or_else([TxnOp::put("r3", "v", None)]);
    out.push(("txn else-branch writes r3", answer(alice.txn(txn).await.map(|_| "OK".to_string()))));
    out
}

/// The holes of etcd 3.4.23 that hub closes: (case, etcd's answer, hub's).
const HOLES: &[(&str, &str, &str)] = &[
    ("nested txn writes r3", "OK", "etcdserver: permission denied"),
    ("nested txn reads r3", "OK 1 responses", "etcdserver: permission denied"),
    ("txn put w with prev_kv", "OK", "etcdserver: permission denied"),
    ("txn put w with bob's lease", "OK", "etcdserver: permission denied"),
    ("put w with bob's lease", "etcdserver: permission denied", "etcdserver: permission denied"),
    // On etcd the lease holds r3 and, by the hole above, w too.
    ("time-to-live keys of bob's lease", "OK 2 keys", "etcdserver: permission denied"),
    ("revoke bob's lease", "etcdserver: permission denied", "etcdserver: permission denied"),
    ("txn else-branch writes r3", "etcdserver: permission denied", "etcdserver: permission denied"),
];

fn run(bin: &std::path::Path, ports: (u16, u16)) -> (BTreeMap<(String, usize), String>, Vec<(&'static str, String)>) {
    let m = Member::start_on(bin, ports.0, ports.1, &["--bcrypt-cost", "4"]);
    let cells = matrix(&m);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let holes = rt.block_on(holes(&m));
    (cells, holes)
}

#[test]
fn permission_matrix_matches_etcd_and_closes_its_holes() {
    let ports = (free_port(), free_port());
    let (etcd_cells, etcd_holes) = run(&etcd_bin(), ports);
    let (hub_cells, hub_holes) = run(&hubd_bin(), ports);

    let mut report = Vec::new();
    for ((user, i), want) in &etcd_cells {
        let got = &hub_cells[&(user.clone(), *i)];
        let line = format!("{user:6} {:45} etcd: {want:40} hub: {got}", OPS[*i].0.join(" "));
        if got != want {
            report.push(format!("MISMATCH {line}"));
        }
        eprintln!("{line}");
    }
    for (case, etcd_answer, hub_answer) in HOLES {
        let etcd_got = etcd_holes.iter().find(|(c, _)| c == case).map(|(_, a)| a.as_str());
        let hub_got = hub_holes.iter().find(|(c, _)| c == case).map(|(_, a)| a.as_str());
        eprintln!("hole {case:35} etcd: {etcd_got:?} hub: {hub_got:?}");
        if etcd_got != Some(etcd_answer) || hub_got != Some(hub_answer) {
            report.push(format!("HOLE {case}: etcd {etcd_got:?} (want {etcd_answer}), hub {hub_got:?} (want {hub_answer})"));
        }
    }
    assert!(report.is_empty(), "{}", report.join("\n"));
    // Sanity: the matrix has both answers in it.
    assert!(hub_cells.values().any(|a| a == "OK"));
    assert!(hub_cells.values().any(|a| a.contains("permission denied")));
}

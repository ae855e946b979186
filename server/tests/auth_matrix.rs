//! The permission matrix: users × operations × key ranges, run against etcd
//! 3.6.16 (the reference; `HUB_ETCD36`, see `common::etcd36_bin`) and against
//! hubd, which must give the same answer (allowed, or the same error) in
//! every cell. Three kinds of cell:
//! - etcdctl commands (KV, Lease, Maintenance, Cluster, Auth): OK or the error line;
//! - gRPC calls etcdctl cannot make, with the etcd-client crate (lease
//!   keep-alive and time-to-live of a lease holding a key, revoke, hashes,
//!   snapshot, Election, Lock): OK or the status code and message;
//! - the JSON gateway's Election and Lock with the user's token: the HTTP
//!   status and etcd's message.
//!
//! - etcd 3.4's holes, which 3.6.16 closed as hub does: requests refused
//!   plainly and let through by 3.4 when wrapped in a txn (nested txns,
//!   prev_kv and lease attachment inside a txn), a lease's key names.

mod common;

use std::collections::BTreeMap;

use std::future::Future;
use std::process::Command;
use std::time::Duration;

use common::{etcd36_bin, free_port, hubd_bin, Member};
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, LeaderKey, LeaseTimeToLiveOptions, LockOptions, ProclaimOptions,
    PutOptions, ResignOptions, Txn, TxnOp,
};
use serde_json::Value;

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
    Op(&["alarm", "disarm"], None),
    Op(&["lease", "grant", "60"], None),
    Op(&["lease", "list"], None),
    Op(&["compaction", "1"], None),
    Op(&["endpoint", "status"], None),
    Op(&["endpoint", "hashkv"], None),
    Op(&["move-leader", "1234"], None),
    Op(&["member", "remove", "1234"], None),
    Op(&["member", "update", "1234", "--peer-urls=http://127.0.0.1:1"], None),
    Op(&["member", "promote", "1234"], None),
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
    let options = (user != "anon").then(|| ConnectOptions::new().with_user(user, password(user)));
    Client::connect([m.endpoint()], options).await.expect("connect")
}

/// A call's answer: "OK", or the status code and message.
fn answer<T>(r: Result<T, etcd_client::Error>) -> String {
    match r {
        Ok(_) => "OK".into(),
        Err(etcd_client::Error::GRpcStatus(s)) => format!("{:?}: {}", s.code(), s.message()),
        Err(e) => e.to_string(),
    }
}

/// `call`'s answer, or "no answer" if it takes more than a few seconds (a
/// campaign or lock that waits for someone else).
async fn within<T>(call: impl Future<Output = Result<T, etcd_client::Error>>) -> Result<T, String> {
    match tokio::time::timeout(Duration::from_secs(5), call).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(answer::<()>(Err(e))),
        Err(_) => Err("no answer".into()),
    }
}

fn said<T>(r: &Result<T, String>) -> String {
    r.as_ref().map_or_else(Clone::clone, |_| "OK".into())
}

/// The lease every user's keep-alive and time-to-live cells ask about: root's,
/// holding key r4 (bob may read and write it, alice and carol neither).
async fn root_lease(m: &Member) -> i64 {
    let mut root = client(m, "root").await;
    let lease = root.lease_grant(600, None).await.expect("grant").id();
    root.put("r4", "leased", Some(PutOptions::new().with_lease(lease))).await.expect("put r4");
    lease
}

/// One user's answers to the gRPC cells.
async fn rpc_cells(m: &Member, user: &str, lease: i64) -> Vec<(&'static str, String)> {
    let mut c = client(m, user).await;
    let mut out = Vec::new();

    // Lease: keep-alive (a lease's keys must be writable), time-to-live with
    // keys (readable), revoke of one's own lease.
    let keep_alive = within(async {
        let (mut keeper, mut stream) = c.lease_keep_alive(lease).await?;
        keeper.keep_alive().await?;
        stream.message().await
    })
    .await;
    out.push(("lease keep-alive of root's lease", said(&keep_alive)));
    let ttl = within(c.lease_time_to_live(lease, Some(LeaseTimeToLiveOptions::new().with_keys()))).await;
    out.push(("lease time-to-live keys of root's lease", said(&ttl)));
    out.push(("lease list (root's holds r4)", said(&within(c.leases()).await)));
    let own = within(c.lease_grant(60, None)).await.map_or(lease, |r| r.id());
    out.push(("lease revoke (own, else root's)", said(&within(c.lease_revoke(own)).await)));

    // Maintenance calls etcdctl makes only after others.
    out.push(("hash", said(&within(c.hash()).await)));
    let snapshot = within(async { c.snapshot().await?.message().await }).await;
    out.push(("snapshot", said(&snapshot)));

    // Election: on "r2" (in bob's range r1..r5), with a lease the server grants.
    let campaign = within(c.campaign("r2", "v", 0)).await;
    out.push(("election campaign r2", said(&campaign)));
    let leader = campaign.ok().and_then(|mut r| r.take_leader()).unwrap_or_else(|| {
        LeaderKey::new().with_name("r2").with_key("r2/1").with_rev(1).with_lease(1)
    });
    out.push(("election leader r2", said(&within(c.leader("r2")).await)));
    let proclaim = within(c.proclaim("v2", Some(ProclaimOptions::new().with_leader(leader.clone())))).await;
    out.push(("election proclaim", said(&proclaim)));
    let resign = within(c.resign(Some(ResignOptions::new().with_leader(leader)))).await;
    out.push(("election resign", said(&resign)));

    // Lock: on "r3l" (in bob's range), with a lease the server grants.
    let lock = within(c.lock("r3l", None)).await;
    out.push(("lock r3l", said(&lock)));
    let key = lock.map_or(b"r3l/1".to_vec(), |r| r.key().to_vec());
    out.push(("unlock", said(&within(c.unlock(key)).await)));
    let with_lease = within(c.lock("r3l", Some(LockOptions::new().with_lease(lease)))).await;
    out.push(("lock r3l with root's lease", said(&with_lease)));
    if let Ok(r) = with_lease {
        let _ = within(c.unlock(r.key().to_vec())).await;
    }
    out
}

/// POSTs `body` to the JSON gateway with `token`; the HTTP status and body.
fn post(m: &Member, path: &str, body: &Value, token: Option<&str>) -> (u16, Value) {
    let mut curl = Command::new("curl");
    curl.args(["-s", "-m", "5", "-w", "\n%{http_code}", "-X", "POST", "-d", &body.to_string()]);
    if let Some(token) = token {
        curl.args(["-H", &format!("Authorization: {token}")]);
    }
    let out = curl.arg(format!("http://{}{path}", m.endpoint())).output().expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or((&text, "0"));
    (code.trim().parse().unwrap_or(0), serde_json::from_str(body).unwrap_or(Value::Null))
}

/// A gateway answer as a cell: "200", or the status and etcd's message.
fn gateway_cell((code, body): &(u16, Value)) -> String {
    if *code == 200 {
        return "200".into();
    }
    format!("{code} {}", body["message"].as_str().unwrap_or("(no message)"))
}

/// base64 of a short ASCII string, as the gateway's JSON carries bytes.
fn b64(s: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in s.as_bytes().chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (*b as u32) << (16 - 8 * i));
        for i in 0..4 {
            out.push(if i <= chunk.len() { ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char } else { '=' });
        }
    }
    out
}

/// One user's answers to the gateway's Election and Lock, with its token
/// (none for anon).
fn gateway_cells(m: &Member, user: &str) -> Vec<(&'static str, String)> {
    let token = (user != "anon").then(|| {
        let (_, body) = post(m, "/v3/auth/authenticate", &serde_json::json!({"name": user, "password": password(user)}), None);
        body["token"].as_str().unwrap_or_default().to_string()
    });
    let token = token.as_deref();
    let mut out = Vec::new();
    let campaign = post(m, "/v3/election/campaign", &serde_json::json!({"name": b64("r2"), "value": b64("g")}), token);
    out.push(("POST /v3/election/campaign", gateway_cell(&campaign)));
    if campaign.0 == 200 {
        let resign = post(m, "/v3/election/resign", &serde_json::json!({"leader": campaign.1["leader"]}), token);
        out.push(("POST /v3/election/resign", gateway_cell(&resign)));
    }
    let lock = post(m, "/v3/lock/lock", &serde_json::json!({"name": b64("r3l")}), token);
    out.push(("POST /v3/lock/lock", gateway_cell(&lock)));
    let key = lock.1["key"].as_str().map_or_else(|| b64("r3l/1"), str::to_string);
    let unlock = post(m, "/v3/lock/unlock", &serde_json::json!({"key": key}), token);
    out.push(("POST /v3/lock/unlock", gateway_cell(&unlock)));
    out
}

/// What etcd 3.4's holes let alice (read a/*, write w) do; each entry is the
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

/// Every cell's answer on one server, by (user, what): etcdctl's, the gRPC
/// calls', the gateway's and the old holes'.
type Cells = BTreeMap<(String, String), String>;

fn run(bin: &std::path::Path, ports: (u16, u16)) -> Cells {
    let m = Member::start_on(bin, ports.0, ports.1, &["--bcrypt-cost", "4"]);
    let mut cells: Cells = matrix(&m)
        .into_iter()
        .map(|((user, i), answer)| ((user, format!("etcdctl {}", OPS[i].0.join(" "))), answer))
        .collect();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let lease = rt.block_on(root_lease(&m));
    for user in USERS {
        for (what, answer) in rt.block_on(rpc_cells(&m, user, lease)) {
            cells.insert((user.to_string(), format!("grpc {what}")), answer);
        }
        for (what, answer) in gateway_cells(&m, user) {
            cells.insert((user.to_string(), what.to_string()), answer);
        }
    }
    for (what, answer) in rt.block_on(holes(&m)) {
        cells.insert(("alice".into(), format!("hole {what}")), answer);
    }
    cells
}

#[test]
fn permission_matrix_matches_etcd36() {
    let Some(etcd) = etcd36_bin() else { return };
    let ports = (free_port(), free_port());
    let etcd_cells = run(&etcd, ports);
    let hub_cells = run(&hubd_bin(), ports);

    let mut report = Vec::new();
    for (key @ (user, what), want) in &etcd_cells {
        let got = hub_cells.get(key).map_or("(no cell)", String::as_str);
        let line = format!("{user:6} {what:50} etcd: {want:50} hub: {got}");
        if got != want {
            report.push(format!("MISMATCH {line}"));
        }
        eprintln!("{line}");
    }
    assert!(report.is_empty(), "{}", report.join("\n"));
    // Sanity: the matrix has both answers in it, and a caller whose
    // campaign and lock went through.
    assert!(hub_cells.values().any(|a| a == "OK"));
    assert!(hub_cells.values().any(|a| a.contains("permission denied")));
    assert_eq!(hub_cells[&("bob".into(), "POST /v3/election/campaign".into())], "200");
    assert_eq!(hub_cells[&("bob".into(), "grpc lock r3l".into())], "OK");
}

//! hubd's log as etcd 3.6.16 writes its own (zap): one JSON object a line on
//! stderr by default, keys in zap's order, and etcd's messages for the events
//! operators and etcd's e2e tests look for; `--log-format console` and
//! `--log-outputs` as etcd reads them. The same life (start, election,
//! publish, serve, a compaction, SIGTERM) is lived by etcd 3.6.16 and by hubd,
//! and both logs are held to the same expectations.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{etcd36_bin, free_port, hubd_bin};

/// What a member printed in its life, and what its log file holds.
struct Life {
    stdout: String,
    stderr: String,
    file: String,
}

/// Runs `bin` as a single member with `extra` flags: waits until it serves
/// clients, puts a key twice and compacts, then stops it with SIGTERM.
async fn live(bin: &Path, extra: &[&str], log_file: Option<&Path>) -> Life {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (client, peer) = (format!("http://127.0.0.1:{}", free_port()), format!("http://127.0.0.1:{}", free_port()));
    let mut child = Command::new(bin)
        .args(["--name", "m1", "--data-dir", &tmp.path().join("data").to_string_lossy()])
        .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
        .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
        .args(["--initial-cluster", &format!("m1={peer}")])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn member");
    let collect = |pipe: Box<dyn Read + Send>| {
        let text = Arc::new(Mutex::new(String::new()));
        let sink = text.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut text = sink.lock().expect("output");
                text.push_str(&line);
                text.push('\n');
            }
        });
        text
    };
    let stdout = collect(Box::new(child.stdout.take().expect("stdout")));
    let stderr = collect(Box::new(child.stderr.take().expect("stderr")));
    // Ready when it answers, whatever its log says (or does not, at --log-level warn).
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut c = loop {
        if let Ok(mut c) = etcd_client::Client::connect([client.as_str()], None).await {
            if c.put("k", "v1", None).await.is_ok() {
                break c;
            }
        }
        assert!(Instant::now() < deadline, "{} never served: {}", bin.display(), stderr.lock().expect("stderr"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    c.put("k", "v2", None).await.expect("put");
    c.compact(2, None).await.expect("compact");
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    tokio::task::block_in_place(|| child.wait()).expect("wait");
    // The readers end with the pipes; give them a moment to take the last lines.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let text = |t: &Arc<Mutex<String>>| t.lock().expect("output").clone();
    let file = log_file.map(|f| std::fs::read_to_string(f).expect("log file")).unwrap_or_default();
    Life { stdout: text(&stdout), stderr: text(&stderr), file }
}

/// Every line as JSON with zap's keys first and in zap's order (etcd adds
/// `logger` before `caller` for its raft and bbolt lines).
fn json_lines(text: &str, who: &str) -> Vec<serde_json::Value> {
    assert!(!text.is_empty(), "{who} logged nothing");
    text.lines()
        .map(|line| {
            let value: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{who}: not JSON ({e}): {line}"));
            let keys = ["{\"level\":\"", "\",\"ts\":\"", "\",\"caller\":\"", "\",\"msg\":\""];
            let mut at = 0;
            for key in keys {
                let found = line[at..].find(key).unwrap_or_else(|| panic!("{who}: no {key} after byte {at}: {line}"));
                at += found + key.len();
            }
            assert!(line.starts_with("{\"level\":\""), "{who}: {line}");
            assert!(["debug", "info", "warn", "error"].contains(&value["level"].as_str().unwrap_or("")), "{who}: {line}");
            value
        })
        .collect()
}

/// The messages of one life that operators and etcd's e2e tests grep for,
/// each a part of a message both etcd 3.6.16 and hubd log.
const LIFE: &[&str] = &[
    "starting local member",
    "restore consistentIndex",
    "kvstore restored",
    " became leader at term ",
    " elected leader ",
    "published local member to cluster through raft",
    "ready to serve client requests",
    "serving client traffic insecurely; this is strongly discouraged!",
    "finished scheduled compaction",
    "received signal; shutting down",
    "closing etcd server",
    "closed etcd server",
];

fn assert_life(lines: &[serde_json::Value], who: &str) {
    let messages: Vec<&str> = lines.iter().filter_map(|l| l["msg"].as_str()).collect();
    for want in LIFE {
        assert!(messages.iter().any(|m| m.contains(want)), "{who} never logged {want:?}: {messages:#?}");
    }
    let field = |msg: &str, key: &str| {
        let line = lines.iter().find(|l| l["msg"] == msg).unwrap_or_else(|| panic!("{who}: no {msg:?}"));
        line[key].clone()
    };
    assert_eq!(field("finished scheduled compaction", "compact-revision"), 2, "{who}");
    assert!(field("published local member to cluster through raft", "local-member-id").is_string(), "{who}");
    assert_eq!(field("received signal; shutting down", "signal"), "terminated", "{who}");
    // etcd's own e2e test (TestNoErrorLogsDuringNormalOperations) allows this one at shutdown.
    let allowed = |l: &serde_json::Value| l["msg"] == "setting up serving from embedded etcd failed.";
    assert!(lines.iter().all(|l| l["level"] != "error" || allowed(l)), "{who} logged an error in a normal life");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_log_is_etcds_json_on_stderr() {
    let hub = live(&hubd_bin(), &[], None).await;
    assert_eq!(hub.stdout, "", "hubd wrote to stdout");
    assert_life(&json_lines(&hub.stderr, "hubd"), "hubd");
    // The reference: etcd 3.6.16 meets the same expectations.
    if let Some(etcd) = etcd36_bin() {
        let etcd = live(&etcd, &[], None).await;
        assert_life(&json_lines(&etcd.stderr, "etcd"), "etcd");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_level_warn_keeps_only_warnings_and_errors() {
    let mut warned = Vec::new();
    for bin in [Some(hubd_bin()), etcd36_bin()].into_iter().flatten() {
        let who = bin.display().to_string();
        let life = live(&bin, &["--log-level", "warn"], None).await;
        // etcd still warns (no cryptographically signed tokens, say); hubd may say nothing.
        let lines = if life.stderr.is_empty() { Vec::new() } else { json_lines(&life.stderr, &who) };
        assert!(lines.iter().all(|l| l["level"] == "warn" || l["level"] == "error"), "{who}: {}", life.stderr);
        warned.push(lines.iter().map(|l| l["msg"].as_str().unwrap_or_default().to_string()).collect::<Vec<_>>());
    }
    // Normal operation (two puts, a compaction, a stop) repeats no warning
    // etcd does not (a warning on every write went unnoticed once).
    if let [hub, etcd] = &warned[..] {
        let repeated: Vec<_> =
            hub.iter().filter(|m| !etcd.contains(m) && hub.iter().filter(|n| n == m).count() > 1).collect();
        assert!(repeated.is_empty(), "hubd warned again and again where etcd 3.6.16 did not: {repeated:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_format_is_zaps_console_encoder() {
    for bin in [Some(hubd_bin()), etcd36_bin()].into_iter().flatten() {
        let who = bin.display().to_string();
        let life = live(&bin, &["--log-format", "console"], None).await;
        let ready = life.stderr.lines().find(|l| l.contains("ready to serve client requests")).expect("ready");
        let parts: Vec<&str> = ready.split('\t').collect();
        assert_eq!(parts.len(), 4, "{who}: {ready}");
        assert!(parts[0].len() == 27 && parts[0].ends_with('Z') || parts[0].len() == 31, "{who}: {ready}");
        assert_eq!(parts[1], "info", "{who}");
        assert!(parts[2].contains(".go:") || parts[2].contains(".rs:"), "{who}: {ready}");
        let compacted = life.stderr.lines().find(|l| l.contains("\tfinished scheduled compaction\t")).expect("compaction");
        let fields = compacted.rsplit('\t').next().expect("fields");
        let fields: serde_json::Value = serde_json::from_str(fields).expect("fields as JSON");
        assert_eq!(fields["compact-revision"], 2, "{who}: {compacted}");
        assert!(compacted.contains("{\"compact-revision\": 2, "), "{who}: {compacted}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_outputs_write_to_files_and_stdout() {
    for bin in [Some(hubd_bin()), etcd36_bin()].into_iter().flatten() {
        let who = bin.display().to_string();
        let dir = tempfile::tempdir().expect("tempdir");
        let file: PathBuf = dir.path().join("member.log");
        let outputs = format!("{},stdout", file.display());
        // hubd's default logger is still etcd 3.4's capnslog, which takes one output only.
        let life = live(&bin, &["--logger", "zap", "--log-outputs", &outputs], Some(&file)).await;
        assert_eq!(life.stderr, "", "{who} wrote to stderr");
        assert_life(&json_lines(&life.file, &who), &who);
        // Each line goes to each output in turn: two lines may cross.
        let sorted = |t: &str| {
            let mut lines: Vec<&str> = t.lines().collect();
            lines.sort();
            lines.join("\n")
        };
        assert_eq!(sorted(&life.stdout), sorted(&life.file), "{who}: stdout and the file differ");
    }
}

/// What a member must not log while it starts and publishes itself: an error,
/// or openraft refusing the publish because the first membership was not
/// committed yet (its "the first step error", and the warning before it).
fn start_up_complaints(m: &common::Member) -> Vec<String> {
    let complaint = |l: &&String| {
        l.contains("\"level\":\"error\"")
            || l.contains("first step error")
            || l.contains("already undergoing a configuration change")
    };
    m.log_lines().iter().filter(complaint).cloned().collect()
}

/// One member and three: each publishes itself once the membership it
/// starts with is committed, without openraft's start-up error (hubd logged
/// "the first step error" and retried the publish 500 ms later).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_at_start_logs_no_error() {
    for n in [1, 3] {
        let members = common::start_cluster(&hubd_bin(), n);
        for m in &members {
            assert!(m.wait_for_log("published local member to cluster through raft", Duration::from_secs(10)), "{}", m.name);
        }
        // Anything logged late (a retried publish's follow-up) has its moment.
        tokio::time::sleep(Duration::from_millis(500)).await;
        for m in &members {
            let complaints = start_up_complaints(m);
            assert!(complaints.is_empty(), "{} of {n}: {complaints:#?}", m.name);
        }
    }
}

/// The calls whose slow-request lines are compared, as etcdctl makes them:
/// a put, a range, a txn with a put, a read-only txn, a range refused (a
/// future revision), a lease grant, a member list, a delete.
const SLOW_CALLS: &[(&[&str], Option<&str>)] = &[
    (&["put", "foo", "bar"], None),
    (&["get", "foo"], None),
    (&["txn"], Some("value(\"foo\") = \"bar\"\n\nput foo baz\nget foo\n\ndel nothing\n\n")),
    (&["txn"], Some("mod(\"foo\") > \"0\"\n\nget foo --prefix\n\nget zz\n\n")),
    (&["get", "foo", "--rev", "100"], None),
    (&["lease", "grant", "60"], None),
    (&["member", "list"], None),
    (&["del", "foo"], None),
];

/// What a member logged of [`SLOW_CALLS`] (and a range through the JSON
/// gateway) with every request slower than 1µs reported: its "request stats"
/// and its "apply request took too long" lines, and its
/// `etcd_server_slow_apply_total`.
struct SlowLog {
    stats: Vec<String>,
    applies: Vec<String>,
    slow_applies: u64,
}

fn slow_log(bin: &Path) -> SlowLog {
    let who = bin.display().to_string();
    let mut m = common::Member::start_with(bin, &["--warning-unary-request-duration=1us", "--warning-apply-duration=1us"]);
    for (args, stdin) in SLOW_CALLS {
        // Only the range at a future revision fails.
        let out = m.etcdctl_stdin(args, *stdin);
        assert_eq!(out.status.success(), !args.contains(&"--rev"), "{who}: etcdctl {args:?}: {out:?}");
    }
    let (code, _) = common::curl_post(&m, "/v3/kv/range", r#"{"key":"Zm9v"}"#);
    assert_eq!(code, 200, "{who}: the gateway's range");
    let metrics = common::curl_get(&format!("http://{}/metrics", m.endpoint()));
    let slow_applies = metrics
        .lines()
        .find_map(|l| l.strip_prefix("etcd_server_slow_apply_total "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("{who}: no etcd_server_slow_apply_total"));
    m.terminate();
    std::thread::sleep(Duration::from_millis(200));
    let lines = m.log_lines();
    // Every line is zap's JSON, the slow requests' too.
    json_lines(&lines.join("\n"), &who);
    let with = |msg: &str| lines.iter().filter(|l| l.contains(&format!(",\"msg\":\"{msg}\""))).cloned().collect();
    SlowLog { stats: with("request stats"), applies: with("apply request took too long"), slow_applies }
}

fn parse(line: &str) -> serde_json::Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
}

/// The keys of a JSON line, in the order they are written.
fn keys(line: &str) -> Vec<String> {
    let mut keys: Vec<String> = parse(line).as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default();
    keys.sort_by_key(|k| line.find(&format!("\"{k}\":")));
    keys
}

/// A "request stats" line without what differs by nature: times, ports, the
/// response's size (its header carries the member's IDs) but not its sign.
fn stats_compared(line: &str) -> serde_json::Value {
    let line = parse(line);
    let size = line["response size"].as_i64().unwrap_or(-2);
    serde_json::json!({
        "level": line["level"],
        "response type": line["response type"],
        "request count": line["request count"],
        "request size": line["request size"],
        "response count": line["response count"],
        "response size": size.signum(),
        "request content": line["request content"],
    })
}

/// An "apply request took too long" line of a client's request, without the
/// request ID, the lease ID and the error's wording; none for a member's own
/// entries (etcd publishes its member and cluster version through raft).
fn apply_compared(line: &str) -> Option<serde_json::Value> {
    let line = parse(line);
    let request = line["request"].as_str().unwrap_or_default();
    if request.contains("cluster_member_attr_set:<") || request.contains("cluster_version_set:<") {
        return None;
    }
    let mask = |text: &str, after: &str, end: char| match text.split_once(after) {
        Some((head, tail)) => format!("{head}{after}N{}", &tail[tail.find(end).unwrap_or(tail.len())..]),
        None => text.to_string(),
    };
    let request = mask(&mask(request, "header:<ID:", ' '), " id:", '>');
    let response = line["response"].as_str().unwrap_or_default();
    // A lease grant's answer carries the lease ID, of the member's making.
    let response = if request.contains("lease_grant:<") { mask(response, "size:", ' ') } else { response.to_string() };
    Some(serde_json::json!({
        "prefix": line["prefix"],
        "request": request,
        "response": response,
        "expected-duration": line["expected-duration"],
        "error": line.get("error").is_some(),
    }))
}

/// `--warning-unary-request-duration` and `--warning-apply-duration`: every
/// unary call slower is logged as "request stats", every request slower to
/// apply as "apply request took too long" and counted, as etcd 3.6.16 logs
/// and counts the same calls: same fields in the same order, same request
/// texts (values as sizes), counts and sizes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_requests_are_logged_as_etcd_logs_them() {
    let hub = slow_log(&hubd_bin());
    let stats_keys = [
        "level", "ts", "caller", "msg", "start time", "time spent", "remote", "response type", "request count",
        "request size", "response count", "response size", "request content",
    ];
    for line in &hub.stats {
        assert_eq!(keys(line), stats_keys, "{line}");
        assert_eq!(parse(line)["level"], "warn", "{line}");
    }
    let types: Vec<serde_json::Value> = hub.stats.iter().map(|l| parse(l)["response type"].clone()).collect();
    for method in ["KV/Put", "KV/Range", "KV/Txn", "KV/DeleteRange", "Lease/LeaseGrant", "Cluster/MemberList"] {
        assert!(types.iter().any(|t| *t == format!("/etcdserverpb.{method}")), "no {method}: {types:?}");
    }
    let put = parse(&hub.stats[0]);
    assert_eq!(put["request content"], r#"key:"foo" value_size:3 "#, "{put}");
    assert!(put["remote"].as_str().is_some_and(|r| r.starts_with("127.0.0.1:")), "{put}");
    let apply_keys = ["level", "ts", "caller", "msg", "took", "expected-duration", "prefix", "request", "response"];
    for line in &hub.applies {
        let mut want = apply_keys.map(String::from).to_vec();
        if parse(line).get("error").is_some() {
            want.push("error".into());
        }
        assert_eq!(keys(line), want, "{line}");
    }
    // The put, the txn, the lease grant and the delete applied; the three
    // ranges and the read-only txn answered without the log.
    assert!(hub.applies.len() >= 8, "{:#?}", hub.applies);
    assert!(hub.slow_applies >= hub.applies.len() as u64, "{} counted, {} logged", hub.slow_applies, hub.applies.len());

    let Some(etcd) = etcd36_bin() else { return };
    let etcd = slow_log(&etcd);
    let compared = |log: &SlowLog| log.stats.iter().map(|l| stats_compared(l)).collect::<Vec<_>>();
    assert_eq!(compared(&hub), compared(&etcd));
    let compared = |log: &SlowLog| log.applies.iter().filter_map(|l| apply_compared(l)).collect::<Vec<_>>();
    assert_eq!(compared(&hub), compared(&etcd));
    for (h, e) in hub.stats.iter().zip(&etcd.stats) {
        assert_eq!(keys(h), keys(e));
    }
    assert!(etcd.slow_applies >= etcd.applies.len() as u64);
}

/// At `--log-level debug`, every unary call is logged at debug, slow or
/// not, and none as a warning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_debug_level_every_call_has_request_stats() {
    for bin in [Some(hubd_bin()), etcd36_bin()].into_iter().flatten() {
        let who = bin.display().to_string();
        let mut m = common::Member::start_with(&bin, &["--log-level", "debug"]);
        assert!(m.etcdctl(&["put", "foo", "bar"]).status.success(), "{who}");
        m.terminate();
        std::thread::sleep(Duration::from_millis(200));
        let lines = json_lines(&m.log_lines().join("\n"), &who);
        let stats: Vec<_> = lines.iter().filter(|l| l["msg"] == "request stats").collect();
        let put = stats.iter().find(|l| l["response type"] == "/etcdserverpb.KV/Put").expect("the put's line");
        assert_eq!((&put["level"], &put["request content"]), (&"debug".into(), &r#"key:"foo" value_size:3 "#.into()), "{who}");
        assert!(stats.iter().all(|l| l["level"] == "debug"), "{who}: {stats:?}");
    }
}

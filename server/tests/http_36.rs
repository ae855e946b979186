//! etcd 3.6's HTTP endpoints against etcd 3.6.16: `/livez` and `/readyz`
//! (their checks, `?verbose`, `?exclude=`, a path per check, other methods)
//! on the client URL and on `--listen-metrics-urls`, healthy and without a
//! quorum; `/health`'s status codes; `/debug/vars`; and
//! `--listen-client-http-urls`, which moves the HTTP endpoints off the
//! client URLs (those then serve gRPC only).

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{etcd36_bin, free_port, hubd_bin, start_cluster, Member};

/// An HTTP answer as compared: the status, the headers etcd's health
/// handlers set, and the body (a body of check lines as a set: etcd runs
/// its checks in a random order).
#[derive(Debug, PartialEq)]
struct Answer {
    status: u16,
    headers: Vec<String>,
    body: BTreeSet<String>,
}

/// The headers compared (lower-cased `name: value`).
const HEADERS: &[&str] = &["content-type", "x-content-type-options", "allow"];

/// `method url` with curl; status 0 when no HTTP answer came.
fn request(method: &str, url: &str) -> Answer {
    // `-X HEAD` would wait for a body that never comes.
    let method = if method == "HEAD" { ["-I"].as_slice() } else { &["-X", method] };
    let out = Command::new("curl").args(["-s", "-i", "--max-time", "15"]).args(method).arg(url).output().expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n");
    let (head, body) = text.split_once("\n\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut headers: Vec<String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .filter(|(k, _)| HEADERS.contains(&k.as_str()))
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    headers.sort();
    Answer { status, headers, body: body.split_inclusive('\n').map(str::to_string).collect() }
}

/// The requests compared on a client or metrics URL.
const REQUESTS: &[(&str, &str)] = &[
    ("GET", "/livez"),
    ("GET", "/livez?verbose"),
    ("GET", "/livez/serializable_read?verbose"),
    ("GET", "/readyz"),
    ("GET", "/readyz?verbose"),
    ("GET", "/readyz?verbose=false"),
    ("GET", "/readyz?exclude=linearizable_read&exclude=non_learner&verbose"),
    ("GET", "/readyz?exclude=nosuch&exclude=&verbose"),
    ("GET", "/readyz/linearizable_read"),
    ("GET", "/readyz/data_corruption?verbose"),
    ("GET", "/readyz/non_learner?verbose&exclude=non_learner"),
    ("GET", "/readyz/nosuch"),
    ("GET", "/livez/linearizable_read"),
    ("GET", "/livez/"),
    ("POST", "/livez"),
    ("PUT", "/readyz/serializable_read"),
    ("HEAD", "/readyz"),
];

/// Each of `requests` to etcd's and hub's URL: the ones answered otherwise.
fn differences(requests: &[(&str, &str)], etcd: &str, hub: &str) -> Vec<String> {
    // No body line starts with a NUL.
    differences_but(requests, etcd, hub, "\0")
}

fn start_with_metrics_url(bin: &std::path::Path) -> (Member, String) {
    let metrics = format!("http://127.0.0.1:{}", free_port());
    (Member::start_with(bin, &["--listen-metrics-urls", &metrics]), metrics)
}

#[test]
fn livez_and_readyz_answer_as_etcd_36() {
    let Some(etcd) = etcd36_bin() else { return };
    let (etcd, etcd_metrics) = start_with_metrics_url(&etcd);
    let (hub, hub_metrics) = start_with_metrics_url(&hubd_bin());
    let mut wrong = differences(REQUESTS, &format!("http://{}", etcd.endpoint()), &format!("http://{}", hub.endpoint()));
    wrong.extend(differences(REQUESTS, &etcd_metrics, &hub_metrics));
    assert!(wrong.is_empty(), "answered unlike etcd 3.6.16:\n{}", wrong.join("\n"));
    // The checks are counted as etcd counts them.
    let metrics = common::curl_get(&format!("{hub_metrics}/metrics"));
    for row in [
        r#"etcd_server_healthcheck{name="linearizable_read",type="readyz"} 1"#,
        r#"etcd_server_healthchecks_total{name="serializable_read",status="success",type="livez"}"#,
    ] {
        assert!(metrics.contains(row), "no {row} in\n{metrics}");
    }
}

/// `/health`: etcd 3.6's status codes, headers and bodies
/// (`{"health":"true","reason":""}`), with `?serializable` and `?exclude`.
#[test]
fn health_answers_as_etcd_36() {
    let Some(etcd) = etcd36_bin() else { return };
    let (etcd, etcd_metrics) = start_with_metrics_url(&etcd);
    let (hub, hub_metrics) = start_with_metrics_url(&hubd_bin());
    let requests = [("GET", "/health"), ("GET", "/health?serializable=true&exclude=NOSPACE"), ("POST", "/health")];
    for (etcd_url, hub_url) in [(format!("http://{}", etcd.endpoint()), format!("http://{}", hub.endpoint())), (etcd_metrics, hub_metrics)] {
        for (method, path) in requests {
            let (e, h) = (request(method, &format!("{etcd_url}{path}")), request(method, &format!("{hub_url}{path}")));
            assert_eq!((e.status, &e.headers, &e.body), (h.status, &h.headers, &h.body), "{method} {path}");
        }
    }
}

#[test]
fn readyz_without_a_quorum_answers_as_etcd_36() {
    let Some(etcd) = etcd36_bin() else { return };
    let mut etcd = start_cluster(&etcd, 3);
    let mut hub = start_cluster(&hubd_bin(), 3);
    for cluster in [&mut etcd, &mut hub] {
        cluster[1].kill9();
        cluster[2].kill9();
    }
    let url = |m: &Member| format!("http://{}", m.endpoint());
    // Until the survivor notices, a read may still succeed.
    let deadline = Instant::now() + Duration::from_secs(30);
    for m in [&etcd[0], &hub[0]] {
        while request("GET", &format!("{}/readyz", url(m))).status != 503 {
            assert!(Instant::now() < deadline, "{} stays ready without a quorum", url(m));
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    let requests =
        [("GET", "/readyz?verbose"), ("GET", "/readyz/linearizable_read"), ("GET", "/readyz?exclude=linearizable_read"), ("GET", "/livez")];
    for (method, path) in [("GET", "/health"), ("GET", "/health?serializable=true")] {
        let (e, h) = (request(method, &format!("{}{path}", url(&etcd[0]))), request(method, &format!("{}{path}", url(&hub[0]))));
        assert_eq!((e.status, &e.headers), (h.status, &h.headers), "{path} without a quorum");
    }
    let wrong = differences_but(&requests, &url(&etcd[0]), &url(&hub[0]), LINEARIZABLE_READ_FAILED);
    assert!(wrong.is_empty(), "answered unlike etcd 3.6.16:\n{}", wrong.join("\n"));
    // Why the read fails: etcd's ReadIndex waits for a leader until its
    // request timeout, hub's answers at once that there is none (a
    // difference of the raft layer's reads, which clients see as well).
    let hub_reason = request("GET", &format!("{}/readyz/linearizable_read", url(&hub[0]))).body;
    assert!(
        hub_reason.contains("[-]linearizable_read failed: etcdserver: no leader\n")
            || hub_reason.contains("[-]linearizable_read failed: etcdserver: request timed out\n"),
        "{hub_reason:?}"
    );
}

/// The start of the line a failed linearizable read gives in `/readyz`.
const LINEARIZABLE_READ_FAILED: &str = "[-]linearizable_read failed: ";

/// [`differences`], with the text after `prefix` on a body line left out.
fn differences_but(requests: &[(&str, &str)], etcd: &str, hub: &str, prefix: &str) -> Vec<String> {
    let cut = |mut a: Answer| {
        a.body = a.body.into_iter().map(|l| if l.starts_with(prefix) { prefix.to_string() } else { l }).collect();
        a
    };
    requests
        .iter()
        .filter_map(|(method, path)| {
            let e = cut(request(method, &format!("{etcd}{path}")));
            let h = cut(request(method, &format!("{hub}{path}")));
            (e != h).then(|| format!("{method} {path}:\n  etcd {e:?}\n  hub  {h:?}"))
        })
        .collect()
}

/// `/debug/vars`, Go's expvar page: JSON with etcd's variables, on the
/// client URL only.
#[test]
fn debug_vars_are_etcds() {
    let Some(etcd) = etcd36_bin() else { return };
    let (etcd, etcd_metrics) = start_with_metrics_url(&etcd);
    let (hub, hub_metrics) = start_with_metrics_url(&hubd_bin());
    let client = |m: &Member| format!("http://{}/debug/vars", m.endpoint());
    for (method, etcd_url, hub_url) in [
        ("GET", client(&etcd), client(&hub)),
        ("POST", client(&etcd), client(&hub)),
        ("GET", format!("{etcd_metrics}/debug/vars"), format!("{hub_metrics}/debug/vars")),
    ] {
        let (e, h) = (request(method, &etcd_url), request(method, &hub_url));
        assert_eq!((e.status, &e.headers), (h.status, &h.headers), "{method} {hub_url}");
    }
    let vars = |m: &Member| -> serde_json::Value {
        serde_json::from_str(&common::curl_get(&client(m))).expect("/debug/vars is JSON")
    };
    let (e, h) = (vars(&etcd), vars(&hub));
    for v in [&e, &h] {
        assert!(v["cmdline"].as_array().is_some_and(|a| a.iter().any(|s| s == "--data-dir")), "{v}");
        assert!(v["file_descriptor_limit"].is_u64(), "{v}");
        assert_eq!(v["raft.status"]["raftState"], "StateLeader", "{v}");
        assert_eq!(v["raft.status"]["id"], v["raft.status"]["lead"], "{v}");
        assert!(v["raft.status"]["term"].is_u64() && v["raft.status"]["applied"].is_u64(), "{v}");
    }
    assert_eq!(e["file_descriptor_limit"], h["file_descriptor_limit"]);
}

/// A member of `bin` with its HTTP endpoints on a URL of their own.
fn start_split(bin: &std::path::Path) -> (Member, String) {
    let http = format!("http://127.0.0.1:{}", free_port());
    (Member::start_with(bin, &["--listen-client-http-urls", &http]), http)
}

/// etcdctl 3.6.16 (beside etcd 3.6.16) against `endpoint`: whether it succeeded, and its output.
fn etcdctl(etcd: &std::path::Path, endpoint: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(etcd.with_file_name("etcdctl"))
        .args(["--endpoints", endpoint, "--dial-timeout=2s", "--command-timeout=3s"])
        .args(args)
        .output()
        .expect("etcdctl");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).to_string())
}

#[test]
fn listen_client_http_urls_take_the_http_endpoints_as_in_etcd_36() {
    let Some(etcd_bin) = etcd36_bin() else { return };
    let (etcd, etcd_http) = start_split(&etcd_bin);
    let (hub, hub_http) = start_split(&hubd_bin());
    for (m, http) in [(&etcd, &etcd_http), (&hub, &hub_http)] {
        let grpc = m.endpoint();
        let http_host = http.trim_start_matches("http://");
        assert_eq!(etcdctl(&etcd_bin, &grpc, &["put", "k", "v"]), (true, "OK\n".to_string()), "gRPC on {grpc}");
        // gRPC only on the client URL, HTTP only on the HTTP URL.
        assert_eq!(request("GET", &format!("http://{grpc}/readyz")).status, 0, "HTTP on {grpc}");
        assert!(!etcdctl(&etcd_bin, http_host, &["get", "k"]).0, "gRPC on {http}");
        let (status, body) = common::curl_post_url(&format!("{http}/v3/kv/range"), r#"{"key":"aw=="}"#);
        assert_eq!(status, 200, "the gateway on {http}: {body}");
        let kvs = common::json_blanking(&body, &["header"]);
        assert_eq!(kvs["kvs"][0]["value"], "dg==", "{body}");
        for path in ["/version", "/metrics", "/health"] {
            assert_eq!(request("GET", &format!("{http}{path}")).status, 200, "{http}{path}");
        }
    }
    let wrong = differences(REQUESTS, &etcd_http, &hub_http);
    assert!(wrong.is_empty(), "answered unlike etcd 3.6.16:\n{}", wrong.join("\n"));
}

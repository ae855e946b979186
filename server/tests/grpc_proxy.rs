//! `hubd grpc-proxy start` on real processes: a client (the etcd-client
//! crate) works on a hub cluster through the proxy: KV and its errors, Watch
//! (events of writes made beside the proxy), Lease keep-alives, Cluster,
//! Maintenance, and auth (the token passes through); the proxy's HTTP
//! endpoints answer as etcd's; with `--endpoints-auto-sync-interval` it
//! follows the members and keeps serving when the member it used is gone.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{curl_get, free_port, hubd_bin, start_cluster, Member};
use etcd_client::{Client, ConnectOptions, GetOptions};

/// A running `hubd grpc-proxy start`, killed when dropped.
struct Proxy {
    child: Child,
    address: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Proxy {
    /// Starts the proxy in front of `endpoints` and waits until it serves.
    fn start(endpoints: &str, extra: &[&str]) -> Proxy {
        let address = format!("127.0.0.1:{}", free_port());
        let mut child = Command::new(hubd_bin())
            .args(["grpc-proxy", "start", "--listen-addr", &address, "--endpoints", endpoints])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn hubd grpc-proxy");
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let stderr = child.stderr.take().expect("stderr");
        let lines = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                lines.lock().expect("log").push(line);
            }
        });
        let proxy = Proxy { child, address, log };
        assert!(proxy.wait_for_log("started gRPC proxy", Duration::from_secs(10)), "{:?}", proxy.lines());
        proxy
    }

    fn lines(&self) -> Vec<String> {
        self.log.lock().expect("log").clone()
    }

    fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.lines().iter().any(|l| l.contains(needle)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    async fn client(&self, options: Option<ConnectOptions>) -> Client {
        let options = options.unwrap_or_default().with_timeout(Duration::from_secs(5));
        Client::connect([self.address.as_str()], Some(options)).await.expect("connect to the proxy")
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn direct(m: &Member) -> Client {
    Client::connect([m.endpoint()], None).await.expect("connect")
}

#[tokio::test]
async fn calls_pass_through_to_the_cluster() {
    let m = Member::start(&hubd_bin());
    let proxy = Proxy::start(&format!("http://{}", m.endpoint()), &[]);
    let mut c = proxy.client(None).await;
    let mut member = direct(&m).await;

    // KV: a write through the proxy is the cluster's, with the cluster's header.
    let put = c.put("k", "v", None).await.expect("put");
    let got = member.get("k", None).await.expect("get");
    assert_eq!(got.kvs()[0].value(), b"v");
    assert_eq!(put.header().map(|h| h.revision()), got.header().map(|h| h.revision()));
    // An error comes back unchanged: code and message.
    match c.get("k", Some(GetOptions::new().with_revision(1000))).await {
        Err(etcd_client::Error::GRpcStatus(status)) => {
            assert_eq!(status.code(), tonic::Code::OutOfRange);
            assert_eq!(status.message(), "etcdserver: mvcc: required revision is a future revision");
        }
        other => panic!("a read of a future revision answered {other:?}"),
    }

    // Watch: a stream through the proxy hears writes made beside it.
    let mut events = c.watch("w", None).await.expect("watch");
    member.put("w", "1", None).await.expect("put beside the proxy");
    let event = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let response = events.message().await.expect("watch stream").expect("a response");
            if let Some(event) = response.events().first() {
                return event.clone();
            }
        }
    })
    .await
    .expect("the event in time");
    assert_eq!(event.kv().map(|kv| kv.value()), Some(&b"1"[..]));

    // Lease: a keep-alive stream through the proxy.
    let lease = c.lease_grant(30, None).await.expect("grant");
    let (mut keeper, mut answers) = c.lease_keep_alive(lease.id()).await.expect("keep-alive");
    keeper.keep_alive().await.expect("send");
    let answer = answers.message().await.expect("stream").expect("an answer");
    assert_eq!((answer.id(), answer.ttl()), (lease.id(), 30));

    // Cluster and Maintenance answer as the member does.
    let through = c.member_list().await.expect("member list");
    let beside = member.member_list().await.expect("member list");
    assert_eq!(through.members()[0].id(), beside.members()[0].id());
    assert_eq!(c.status().await.expect("status").version(), member.status().await.expect("status").version());

    // The proxy's HTTP endpoints.
    let url = |path: &str| format!("http://{}{path}", proxy.address);
    assert_eq!(curl_get(&url("/health")), r#"{"health":"true","reason":""}"#);
    assert_eq!(curl_get(&url("/proxy/health")), r#"{"health":"true","reason":""}"#);
    assert!(curl_get(&url("/proxy/metrics")).contains("\netcd_grpc_proxy_cache_hits_total 0\n"));
    assert!(curl_get(&url("/metrics")).contains("etcd_server_has_leader 1"));
    assert_eq!(curl_get(&url("/nope")), "404 page not found\n");
}

#[tokio::test]
async fn auth_tokens_pass_through() {
    let m = Member::start(&hubd_bin());
    for args in [&["user", "add", "root:rootpw"][..], &["auth", "enable"]] {
        let out = m.etcdctl(args);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let proxy = Proxy::start(&format!("http://{}", m.endpoint()), &[]);
    let mut anonymous = proxy.client(None).await;
    let refused = anonymous.put("k", "v", None).await.unwrap_err();
    assert!(refused.to_string().contains("etcdserver: user name is empty"), "{refused}");
    let mut root = proxy.client(Some(ConnectOptions::new().with_user("root", "rootpw"))).await;
    root.put("k", "v", None).await.expect("put as root through the proxy");
    // The proxy's own read has no user, which etcd's proxy reports as unhealthy
    // in the server's words (only a permission refusal counts as healthy).
    assert_eq!(
        curl_get(&format!("http://{}/health", proxy.address)),
        "{\"health\":\"false\",\"reason\":\"GET ERROR:etcdserver: user name is empty\"}\n"
    );
}

#[tokio::test]
async fn auto_sync_follows_the_members_past_a_stopped_one() {
    let mut members = start_cluster(&hubd_bin(), 3);
    let first = format!("http://{}", members[0].endpoint());
    let proxy = Proxy::start(&first, &["--endpoints-auto-sync-interval", "1s"]);
    assert!(
        proxy.wait_for_log(&members[2].endpoint(), Duration::from_secs(10)),
        "the proxy did not learn the other members: {:?}",
        proxy.lines()
    );
    let mut c = proxy.client(None).await;
    c.put("k", "before", None).await.expect("put");
    members[0].kill9();
    // The first call may meet the dead member (Unavailable, as clientv3
    // retries it); the pin moves on and the next is served.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match c.put("k", "after", None).await {
            Ok(_) => break,
            Err(e) => assert!(Instant::now() < deadline, "no member served through the proxy: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let got = c.get("k", None).await.expect("get");
    assert_eq!(got.kvs()[0].value(), b"after");
}

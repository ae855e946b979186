//! Test harness: real member processes (hubd, or etcd as the reference) on free
//! loopback ports, each in its own temporary data directory.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use etcd_client::{Client, GetOptions};

pub use hub_testkit::free_port;

pub fn hubd_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_hubd"))
}

/// hubd built with `--features failpoints` (crash points set by `HUB_FAILPOINTS`,
/// see `raft/src/failpoints.rs`), in its own target directory beside this
/// test's (`target/failpoints`), so the plain hubd the other tests run is left
/// as it is. Built once per test process; cargo makes it a no-op when it is
/// up to date.
pub fn failpoints_hubd() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            // target/<profile>/hubd
            let plain = hubd_bin();
            let profile_dir = plain.parent().expect("target/<profile>");
            let target = profile_dir.parent().expect("target").join("failpoints");
            let release = profile_dir.file_name().is_some_and(|p| p == "release");
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut build = Command::new(cargo);
            build.current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
            build.args(["build", "-p", "hub-server", "--bin", "hubd", "--features", "failpoints", "--target-dir"]);
            build.arg(&target);
            if release {
                build.arg("--release");
            }
            let status = build.status().expect("run cargo build");
            assert!(status.success(), "cargo build --features failpoints: {status}");
            target.join(profile_dir.file_name().expect("profile")).join("hubd")
        })
        .clone()
}

/// etcd 3.4.23 from Debian, the reference (installed by .ci/run).
pub fn etcd_bin() -> PathBuf {
    PathBuf::from("/usr/bin/etcd")
}

/// etcd 3.6.16, the reference for behaviour, built from the Go module proxy by
/// `tests/etcd36/build.sh` (scripts/test builds it and sets `HUB_ETCD36`). None
/// when `HUB_ETCD36` is unset and the default build is missing: a test then
/// says so and skips. When `HUB_ETCD36` is set, the binary must be there.
pub fn etcd36_bin() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("HUB_ETCD36") {
        let path = PathBuf::from(path);
        assert!(path.is_file(), "HUB_ETCD36={} is not a file", path.display());
        return Some(path);
    }
    let path = PathBuf::from(std::env::var_os("HOME")?).join(".cache/hub-etcd/v3.6.16/etcd");
    if path.is_file() {
        Some(path)
    } else {
        eprintln!("skipped: etcd 3.6.16 not found at {} (run tests/etcd36/build.sh)", path.display());
        None
    }
}

pub struct Member {
    child: Option<Child>,
    bin: PathBuf,
    pub client_port: u16,
    pub peer_port: u16,
    pub data_dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    extra: Vec<String>,
    pub name: String,
    /// `--initial-cluster`; empty means this member alone, `None` none at all
    /// (the member bootstraps by discovery).
    initial_cluster: Option<String>,
    /// Environment variables of the next start (e.g. `HUB_FAILPOINTS`).
    pub env: Vec<(String, String)>,
    /// Every line the running process printed.
    log: Arc<Mutex<Vec<String>>>,
}

impl Member {
    /// Starts `bin` as a single member and waits until it serves clients.
    pub fn start(bin: &Path) -> Member {
        Self::start_with(bin, &[])
    }

    pub fn start_with(bin: &Path, extra: &[&str]) -> Member {
        Self::start_on(bin, free_port(), free_port(), extra)
    }

    /// Starts on the given ports (to compare two servers under the same flags).
    pub fn start_on(bin: &Path, client_port: u16, peer_port: u16, extra: &[&str]) -> Member {
        let extra = extra.iter().map(|s| s.to_string()).collect();
        let mut m = Member::unstarted(bin, "default", client_port, peer_port, String::new(), extra);
        m.spawn();
        m
    }

    /// A member in a fresh temporary data directory, not started yet.
    fn unstarted(
        bin: &Path,
        name: &str,
        client_port: u16,
        peer_port: u16,
        initial_cluster: String,
        extra: Vec<String>,
    ) -> Member {
        let tmp = tempfile::tempdir().expect("tempdir");
        Member {
            child: None,
            bin: bin.to_path_buf(),
            client_port,
            peer_port,
            data_dir: tmp.path().join("data"),
            _tmp: Some(tmp),
            extra,
            name: name.to_string(),
            initial_cluster: Some(initial_cluster),
            env: Vec::new(),
            log: Arc::default(),
        }
    }

    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    /// The member's command line, on its ports and data directory.
    fn command(&self) -> Command {
        let client = format!("http://127.0.0.1:{}", self.client_port);
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let initial_cluster = match &self.initial_cluster {
            Some(c) if c.is_empty() => vec!["--initial-cluster".to_string(), format!("{}={peer}", self.name)],
            Some(c) => vec!["--initial-cluster".to_string(), c.clone()],
            None => Vec::new(),
        };
        let mut command = Command::new(&self.bin);
        command
            .args(["--name", &self.name])
            .args(["--data-dir", &self.data_dir.to_string_lossy()])
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(&initial_cluster)
            .args(&self.extra)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        command
    }

    /// Runs the member (stopped) with `extra` flags on top of its own until
    /// it exits, which it must do within `timeout`; returns its status and
    /// everything it printed.
    pub fn run_to_exit(&self, extra: &[&str], timeout: Duration) -> (std::process::ExitStatus, String) {
        let child = self.command().args(extra).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn member");
        let pid = child.id().to_string();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        let text = |out: &std::process::Output| {
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
        };
        let Ok(out) = rx.recv_timeout(timeout) else {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
            let printed = rx.recv().ok().and_then(Result::ok).map(|out| text(&out)).unwrap_or_default();
            panic!("member still running after {timeout:?}; it printed:\n{printed}");
        };
        let out = out.expect("member output");
        (out.status, text(&out))
    }

    /// Runs `bin` from the next start on (the same member by another server).
    pub fn set_bin(&mut self, bin: &Path) {
        self.bin = bin.to_path_buf();
    }

    /// Adds flags to every later start.
    pub fn add_flags(&mut self, flags: &[&str]) {
        self.extra.extend(flags.iter().map(|f| f.to_string()));
    }

    /// (Re)starts the process on the same ports and data directory.
    pub fn spawn(&mut self) {
        let ready = self.start_process();
        ready.recv_timeout(Duration::from_secs(20)).expect("member did not become ready");
    }

    /// Starts the process without waiting for it to serve; the receiver hears
    /// when it does.
    pub fn start_process(&mut self) -> mpsc::Receiver<()> {
        self.log.lock().expect("log").clear();
        let mut child = self
            .command()
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn member");
        let (tx, rx) = mpsc::channel();
        for pipe in [
            child.stdout.take().map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
            child.stderr.take().map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let tx = tx.clone();
            let log = self.log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    if line.contains("ready to serve client requests") {
                        let _ = tx.send(());
                    }
                    if std::env::var_os("HUB_TEST_LOG").is_some() {
                        eprintln!("[member] {line}");
                    }
                    log.lock().expect("log").push(line);
                }
            });
        }
        self.child = Some(child);
        rx
    }

    /// Every line the running process (the last one started) has printed so far.
    pub fn log_lines(&self) -> Vec<String> {
        self.log.lock().expect("log").clone()
    }

    /// Waits until the running process has printed a line containing `needle`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.log.lock().expect("log").iter().any(|l| l.contains(needle)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Waits until the process exits on its own; its status, or none if it
    /// still runs after `timeout`.
    pub fn wait_for_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// SIGKILL: no chance to flush or clean up.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for a clean exit; returns the exit status.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
        c.wait().ok()
    }

    /// Runs etcdctl (API v3) against this member.
    pub fn etcdctl(&self, args: &[&str]) -> Output {
        self.etcdctl_stdin(args, None)
    }

    pub fn etcdctl_stdin(&self, args: &[&str], stdin: Option<&str>) -> Output {
        use std::io::Write;
        let mut child = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &self.endpoint()])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("etcdctl (apt-get install etcd-client)");
        if let Some(mut s) = child.stdin.take() {
            if let Some(input) = stdin {
                let _ = s.write_all(input.as_bytes());
            }
        }
        child.wait_with_output().expect("etcdctl output")
    }
}

/// A member joining a running cluster (`--initial-cluster-state existing`)
/// after `member add` gave it `peer_port`; not started yet.
pub fn joining_member(bin: &Path, name: &str, client_port: u16, peer_port: u16, initial_cluster: &str) -> Member {
    let extra = vec!["--initial-cluster-state".into(), "existing".into()];
    Member::unstarted(bin, name, client_port, peer_port, initial_cluster.to_string(), extra)
}

/// A member of a new cluster that finds the others by v3 discovery
/// (`--discovery-token`, `--discovery-endpoints`); not started yet.
pub fn discovering_member(bin: &Path, name: &str, token: &str, endpoints: &str) -> Member {
    let extra = vec![format!("--discovery-token={token}"), format!("--discovery-endpoints={endpoints}")];
    let mut m = Member::unstarted(bin, name, free_port(), free_port(), String::new(), extra);
    m.initial_cluster = None;
    m
}

/// Restarts stopped members together (each waits for a quorum to be ready).
pub fn spawn_all(members: &mut [Member]) {
    std::thread::scope(|s| {
        for m in members.iter_mut() {
            s.spawn(move || m.spawn());
        }
    });
}

/// `--initial-cluster` of the given members.
pub fn initial_cluster(members: &[&Member]) -> String {
    members
        .iter()
        .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
        .collect::<Vec<_>>()
        .join(",")
}

/// Starts `n` members of one new cluster at once (they wait for each other)
/// and returns them once each serves clients.
pub fn start_cluster(bin: &Path, n: usize) -> Vec<Member> {
    start_cluster_with(bin, n, &[])
}

/// [`start_cluster`] with extra flags for every member.
pub fn start_cluster_with(bin: &Path, n: usize, extra: &[&str]) -> Vec<Member> {
    let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    start_cluster_each(bin, n, |_| extra.clone())
}

/// [`start_cluster`] with `extra(i)` flags for member `i`.
pub fn start_cluster_each(bin: &Path, n: usize, extra: impl Fn(usize) -> Vec<String>) -> Vec<Member> {
    let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
    let initial_cluster = ports
        .iter()
        .enumerate()
        .map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}"))
        .collect::<Vec<_>>()
        .join(",");
    let handles: Vec<_> = ports
        .into_iter()
        .enumerate()
        .map(|(i, (client_port, peer_port))| {
            let bin = bin.to_path_buf();
            let initial_cluster = initial_cluster.clone();
            let extra = extra(i);
            std::thread::spawn(move || {
                let mut m = Member::unstarted(&bin, &format!("m{i}"), client_port, peer_port, initial_cluster, extra);
                m.spawn();
                m
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().expect("member start")).collect()
}

impl Drop for Member {
    fn drop(&mut self) {
        self.kill9();
    }
}

// Cluster views through real clients.

/// Index of the member that currently leads, asked of every live member.
pub async fn leader(members: &[Member]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        for (i, m) in members.iter().enumerate() {
            if let Ok(mut c) = Client::connect([m.endpoint()], None).await {
                if let Ok(s) = c.status().await {
                    if s.leader() != 0 && s.header().map(|h| h.member_id()) == Some(s.leader()) {
                        return i;
                    }
                }
            }
        }
        assert!(Instant::now() < deadline, "no leader");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every key and value one member holds, read locally (serializable).
pub async fn contents(m: &Member) -> Option<(i64, BTreeMap<Vec<u8>, Vec<u8>>)> {
    let mut c = Client::connect([m.endpoint()], None).await.ok()?;
    let resp = c.get("", Some(GetOptions::new().with_all_keys().with_serializable())).await.ok()?;
    let rev = resp.header()?.revision();
    Some((rev, resp.kvs().iter().map(|kv| (kv.key().to_vec(), kv.value().to_vec())).collect()))
}

/// The first (key, value) of `a` that `b` lacks or holds with another value.
fn first_not_in(a: &BTreeMap<Vec<u8>, Vec<u8>>, b: &BTreeMap<Vec<u8>, Vec<u8>>) -> Option<(String, String)> {
    let (k, v) = a.iter().find(|(k, v)| b.get(*k) != Some(*v))?;
    Some((String::from_utf8_lossy(k).into_owned(), String::from_utf8_lossy(v).into_owned()))
}

/// Waits until every member holds the same keys; returns them.
pub async fn converged(members: &[Member]) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let mut all = Vec::new();
        for m in members {
            all.push(contents(m).await);
        }
        let mut hashes = Vec::new();
        if all.iter().all(|c| c.is_some() && c == &all[0]) {
            // Same keys, and the same history: HashKV covers every kept revision.
            for m in members {
                let mut c = Client::connect([m.endpoint()], None).await.expect("connect");
                hashes.push(c.hash_kv(0).await.ok().map(|h| h.hash()));
            }
            if hashes.iter().all(|h| h.is_some() && *h == hashes[0]) {
                return all[0].clone().map(|c| c.1).unwrap_or_default();
            }
        }
        if Instant::now() >= deadline {
            let first = all[0].as_ref().map(|c| &c.1);
            // Per member: its first pair member 0 lacks, and member 0's first pair it lacks.
            let differ: Vec<_> = all
                .iter()
                .map(|c| {
                    let (mine, first) = (c.as_ref().map(|c| &c.1)?, first?);
                    Some((first_not_in(mine, first), first_not_in(first, mine)))
                })
                .collect();
            panic!(
                "members did not converge: revisions {:?}, keys {:?}, HashKV {hashes:?}, first difference from member 0 {differ:?}",
                all.iter().map(|c| c.as_ref().map(|c| c.0)).collect::<Vec<_>>(),
                all.iter().map(|c| c.as_ref().map(|c| c.1.len())).collect::<Vec<_>>(),
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}


/// POSTs `body` to `path` on `m`'s client URL with curl (the JSON gateway): the
/// HTTP status and the body.
pub fn curl_post(m: &Member, path: &str, body: &str) -> (u16, String) {
    curl_post_url(&format!("http://{}{path}", m.endpoint()), body)
}

/// POSTs `body` to `url` with curl: the HTTP status and the body.
pub fn curl_post_url(url: &str, body: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}", "-X", "POST", "-d", body])
        .arg(url)
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or((&text, "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// GETs `url` with curl: the body.
pub fn curl_get(url: &str) -> String {
    let out = Command::new("curl").args(["-s", url]).output().expect("curl");
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// `body` as JSON, with the values of `keys` (anywhere in it) blanked out: what
/// differs between two clusters by nature (IDs, terms).
pub fn json_blanking(body: &str, keys: &[&str]) -> serde_json::Value {
    use serde_json::Value;
    fn walk(v: &mut Value, keys: &[&str]) {
        match v {
            Value::Object(map) => {
                for (k, val) in map.iter_mut() {
                    if keys.contains(&k.as_str()) {
                        *val = Value::String("*".into());
                    } else {
                        walk(val, keys);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| walk(v, keys)),
            _ => {}
        }
    }
    let mut v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    walk(&mut v, keys);
    v
}

//! `snapshot save|status|restore` with real files: hubctl and etcdctl side by
//! side on snapshots of etcd 3.4 and of hubd, damaged snapshots, and the
//! migration of an etcd member's data to hubd (restore, then start hubd on
//! the restored data directory and compare what etcd and hubd serve).
//! Argument and flag mistakes are in `scripts/snapshot.txt`.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::{free_port, Server, Tool};
use serde_json::Value;

/// What a command printed: stdout, its `Error:` lines, and the exit code.
#[derive(Debug, PartialEq)]
struct Printed {
    stdout: String,
    errors: Vec<String>,
    code: Option<i32>,
}

impl From<Output> for Printed {
    fn from(o: Output) -> Self {
        Printed {
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            errors: String::from_utf8_lossy(&o.stderr)
                .lines()
                .filter(|l| l.starts_with("Error:"))
                .map(str::to_string)
                .collect(),
            code: o.status.code(),
        }
    }
}

fn run(tool: Tool, args: &[&str]) -> Output {
    tool.command().args(args).output().expect("run the client")
}

fn printed(tool: Tool, args: &[&str]) -> Printed {
    run(tool, args).into()
}

fn hubctl(args: &[&str]) -> Printed {
    printed(Tool::Hubctl, args)
}

fn etcdctl(args: &[&str]) -> Printed {
    printed(Tool::Etcdctl, args)
}

/// An etcdctl answer in `-w json`, on an endpoint.
fn json(endpoint: &str, args: &[&str]) -> Value {
    let mut all = vec!["--endpoints", endpoint, "-w", "json"];
    all.extend_from_slice(args);
    let out = etcdctl(&all);
    assert_eq!(out.code, Some(0), "etcdctl {args:?}: {out:?}");
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("etcdctl {args:?}: {e}: {}", out.stdout))
}

fn ok(tool: Tool, args: &[&str]) -> String {
    let out = printed(tool, args);
    assert_eq!((out.code, &out.errors), (Some(0), &Vec::new()), "{tool:?} {args:?}: {out:?}");
    out.stdout
}

fn text(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// Saves a snapshot of `endpoint` with hubctl and checks what save leaves.
fn hubctl_save(endpoint: &str, path: &Path) {
    let out = run(Tool::Hubctl, &["--endpoints", endpoint, "snapshot", "save", text(path)]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("Snapshot saved at {}\n", path.display()));
    // etcdctl's log lines, and no progress line: stderr is not a terminal here.
    assert!(stderr.contains(r#""msg":"saved""#) && !stderr.contains("Receiving"), "{stderr}");
    let mode = std::fs::metadata(path).expect("saved file").permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "a snapshot is private, as etcdctl makes it");
    assert!(!PathBuf::from(format!("{}.part", path.display())).exists());
}

fn put(endpoint: &str, key: &str, value: &str) {
    ok(Tool::Etcdctl, &["--endpoints", endpoint, "put", key, value]);
}

/// Some history: overwrites, a delete, a key on a lease.
fn fill(endpoint: &str) -> i64 {
    put(endpoint, "a", "1");
    put(endpoint, "b", "2");
    put(endpoint, "a", "3");
    put(endpoint, "needle", "corrupt-me-please");
    ok(Tool::Etcdctl, &["--endpoints", endpoint, "del", "b"]);
    let lease = json(endpoint, &["lease", "grant", "900"])["ID"].as_i64().expect("lease ID");
    ok(Tool::Etcdctl, &["--endpoints", endpoint, "put", "leased", "x", &format!("--lease={lease:x}")]);
    lease
}

#[test]
fn saves_an_etcd_snapshot_that_both_tools_read_alike() {
    let etcd = Server::start(&common::etcd_bin(), free_port(), free_port());
    fill(&etcd.endpoint());
    let dir = tempfile::tempdir().expect("tempdir");
    let by_hubctl = dir.path().join("by-hubctl.db");
    let by_etcdctl = dir.path().join("by-etcdctl.db");
    hubctl_save(&etcd.endpoint(), &by_hubctl);
    ok(Tool::Etcdctl, &["--endpoints", &etcd.endpoint(), "snapshot", "save", text(&by_etcdctl)]);

    for format in ["simple", "json", "table", "fields", "protobuf"] {
        for file in [&by_hubctl, &by_etcdctl] {
            let args = ["snapshot", "status", text(file), "-w", format];
            assert_eq!(hubctl(&args), etcdctl(&args), "-w {format} {}", file.display());
        }
    }
    // Nothing was written in between: the same state, the same figures.
    let status = |file: &Path| hubctl(&["snapshot", "status", text(file), "-w", "json"]).stdout;
    assert_eq!(status(&by_hubctl), status(&by_etcdctl));
    let figures: Value = serde_json::from_str(&status(&by_hubctl)).expect("json");
    assert_eq!(figures["revision"], 7);
}

/// A copy of `from` with one byte flipped at each of `offsets(bytes)`.
fn damaged(from: &Path, to: &Path, offsets: impl Fn(&[u8]) -> Vec<usize>) -> PathBuf {
    let mut bytes = std::fs::read(from).expect("read snapshot");
    for offset in offsets(&bytes) {
        bytes[offset] ^= 0xff;
    }
    std::fs::write(to, bytes).expect("write damaged copy");
    to.to_path_buf()
}

/// Restores `file` with both tools (each into a directory of its own) and
/// returns what they printed; checks hubctl leaves nothing behind on failure.
fn restore_both(file: &Path, extra: &[&str]) -> (Printed, Printed) {
    let dir = tempfile::tempdir().expect("tempdir");
    let restore = |tool: Tool, data: &Path| {
        let mut args = vec!["snapshot", "restore", text(file), "--data-dir", text(data)];
        args.extend_from_slice(extra);
        printed(tool, &args)
    };
    let want = restore(Tool::Etcdctl, &dir.path().join("etcd"));
    let hub_dir = dir.path().join("hub");
    let got = restore(Tool::Hubctl, &hub_dir);
    if got.code != Some(0) {
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .filter(|name| name != "etcd")
            .collect();
        assert!(left.is_empty(), "hubctl left {left:?} after a failed restore");
    } else {
        assert!(hub_dir.join("member/snap/db").exists());
    }
    (want, got)
}

#[test]
fn a_corrupted_or_truncated_snapshot_is_refused_by_both() {
    let etcd = Server::start(&common::etcd_bin(), free_port(), free_port());
    fill(&etcd.endpoint());
    let dir = tempfile::tempdir().expect("tempdir");
    let good = dir.path().join("good.db");
    hubctl_save(&etcd.endpoint(), &good);

    // A byte of a value: the sha256 trailer no longer matches. (Every copy of
    // it: bbolt's freed pages may still hold an older one.)
    let value = damaged(&good, &dir.path().join("value.db"), |b| {
        let at: Vec<usize> =
            b.windows(17).enumerate().filter(|(_, w)| *w == b"corrupt-me-please").map(|(i, _)| i + 3).collect();
        assert!(!at.is_empty(), "the value is in the file");
        at
    });
    let (want, got) = restore_both(&value, &[]);
    assert_eq!(got, want);
    assert_eq!(got.code, Some(1));
    assert!(got.errors[0].starts_with("Error: expected sha256 ["), "{got:?}");
    // etcdctl's status does not check the trailer (a data directory's
    // database has none): both print the figures, the hash shows the change.
    let status = ["snapshot", "status", text(&value), "-w", "json"];
    assert_eq!(hubctl(&status), etcdctl(&status));
    assert_ne!(hubctl(&status), hubctl(&["snapshot", "status", text(&good), "-w", "json"]));
    // With --skip-hash-check both take it as it is.
    let (want, got) = restore_both(&value, &["--skip-hash-check"]);
    assert_eq!((got.code, want.code), (Some(0), Some(0)));

    // Both bbolt meta pages: the file is no database at all.
    let meta_path = damaged(&good, &dir.path().join("meta.db"), |_| vec![16, 4096 + 16]);
    let status = ["snapshot", "status", text(&meta_path)];
    let (want, got) = (etcdctl(&status), hubctl(&status));
    assert_eq!((got.code, want.code), (Some(1), Some(1)), "{got:?} {want:?}");
    assert_eq!(got.errors.len(), 1);
    let (want, got) = restore_both(&meta_path, &[]);
    assert_eq!(got, want);
    // etcdctl panics on such a file once told to skip the check; hubctl says why in one line.
    let (_, got) = restore_both(&meta_path, &["--skip-hash-check"]);
    assert_eq!(got.code, Some(1));
    assert_eq!(got.errors.len(), 1, "{got:?}");

    // Truncated: no trailer where one belongs.
    let bytes = std::fs::read(&good).expect("read");
    let truncated = dir.path().join("truncated.db");
    std::fs::write(&truncated, &bytes[..bytes.len() - 100]).expect("write");
    let (want, got) = restore_both(&truncated, &[]);
    assert_eq!(got, want);
    assert_eq!(got.errors, ["Error: snapshot missing hash but --skip-hash-check=false"]);
    // etcdctl restores what is left; hubctl finds the database cut short.
    let (_, got) = restore_both(&truncated, &["--skip-hash-check"]);
    assert_eq!(got.code, Some(1));
    assert!(got.errors[0].contains("truncated"), "{got:?}");
}

#[test]
fn save_fails_as_etcdctl_does() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Port 1: nothing listens there, and no test's server can take it (a free
    // port from the kernel could be handed to a server started in parallel).
    let unreachable = "127.0.0.1:1";
    let target = dir.path().join("x.db");
    let args = ["--endpoints", unreachable, "--command-timeout", "1s", "snapshot", "save", text(&target)];
    let want = etcdctl(&args);
    assert_eq!(hubctl(&args), want);
    assert_eq!(want.errors, ["Error: context deadline exceeded"]);
    assert_eq!(want.code, Some(5));
    // Without --command-timeout etcdctl waits for the member forever; hubctl
    // gives up connecting after --dial-timeout.
    let got = hubctl(&["--endpoints", unreachable, "--dial-timeout", "300ms", "snapshot", "save", text(&target)]);
    assert_eq!((got.errors.as_slice(), got.code), (&["Error: context deadline exceeded".to_string()][..], Some(5)));
    assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 0, "no file, no .part left");

    // A directory where the file should go.
    let etcd = Server::start(&common::etcd_bin(), free_port(), free_port());
    let taken = dir.path().join("taken");
    std::fs::create_dir(&taken).expect("mkdir");
    let args = ["--endpoints", &etcd.endpoint(), "snapshot", "save", text(&taken)];
    assert_eq!(hubctl(&args), etcdctl(&args));
}

/// One member's flags for `snapshot restore` and for the server started on
/// the restored directory.
struct Member {
    name: &'static str,
    token: &'static str,
    peer: String,
    client: String,
    client_port: u16,
}

impl Member {
    fn new(name: &'static str, token: &'static str) -> Self {
        let client_port = free_port();
        Member {
            name,
            token,
            peer: format!("http://127.0.0.1:{}", free_port()),
            client: format!("http://127.0.0.1:{client_port}"),
            client_port,
        }
    }

    fn cluster_flags(&self) -> Vec<String> {
        [
            ("--name", self.name.to_string()),
            ("--initial-cluster", format!("{}={}", self.name, self.peer)),
            ("--initial-cluster-token", self.token.to_string()),
            ("--initial-advertise-peer-urls", self.peer.clone()),
        ]
        .into_iter()
        .flat_map(|(flag, value)| [flag.to_string(), value])
        .collect()
    }

    /// Restores `snapshot` into `data_dir` with hubctl; returns the member ID
    /// it logged (etcdctl's "added member" line).
    fn restore(&self, snapshot: &Path, data_dir: &Path) -> String {
        let mut args = vec!["snapshot".to_string(), "restore".into(), text(snapshot).into()];
        args.extend(["--data-dir".to_string(), text(data_dir).to_string()]);
        args.extend(self.cluster_flags());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run(Tool::Hubctl, &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "", "restore prints on stderr only, as etcdctl");
        let added = stderr.lines().find(|l| l.contains(r#""msg":"added member""#)).expect("added member line");
        let line: Value = serde_json::from_str(added).expect("json log line");
        assert!(stderr.contains(r#""msg":"restored snapshot""#), "{stderr}");
        line["added-peer-id"].as_str().expect("added-peer-id").to_string()
    }

    /// hubd on the restored directory, with the same membership flags.
    fn start_hubd(&self, data: tempfile::TempDir, data_dir: &Path) -> Server {
        let mut args = vec!["--data-dir".to_string(), text(data_dir).to_string()];
        args.extend(self.cluster_flags());
        args.extend(["--listen-peer-urls".to_string(), self.peer.clone()]);
        args.extend(["--listen-client-urls".to_string(), self.client.clone()]);
        args.extend(["--advertise-client-urls".to_string(), self.client.clone()]);
        Server::start_args(&common::hubd_bin(), self.client_port, &args, data)
    }
}

/// What a member serves: every key with its revisions and version, the store
/// revision, an old revision, the lease and its keys, the KV hash.
#[derive(Debug, PartialEq)]
struct Served {
    kvs: Value,
    revision: Value,
    at_revision_3: Value,
    /// Every key at every revision from the compaction (3) to the current one.
    history: Vec<Value>,
    compacted: Printed,
    lease_keys: Value,
    hash: Value,
}

fn served(endpoint: &str, lease: i64) -> Served {
    let all = json(endpoint, &["get", "", "--prefix"]);
    let ttl = json(endpoint, &["lease", "timetolive", &format!("{lease:x}"), "--keys"]);
    let hash = json(endpoint, &["endpoint", "hashkv"]);
    let served = Served {
        kvs: all["kvs"].clone(),
        revision: all["header"]["revision"].clone(),
        at_revision_3: json(endpoint, &["get", "a", "--rev", "3"])["kvs"].clone(),
        history: (3..=all["header"]["revision"].as_i64().unwrap_or(3))
            .map(|rev| json(endpoint, &["get", "", "--prefix", "--rev", &rev.to_string()])["kvs"].clone())
            .collect(),
        compacted: etcdctl(&["--endpoints", endpoint, "get", "a", "--rev", "2"]),
        lease_keys: ttl["keys"].clone(),
        hash: hash[0]["HashKV"]["hash"].clone(),
    };
    // Something to compare: `fill`'s keys (b deleted), a's first value, the leased key.
    assert!(served.kvs.as_array().is_some_and(|kvs| kvs.len() >= 3), "{served:?}");
    assert!(served.revision.is_i64() && served.hash.is_u64(), "{served:?}");
    assert_eq!(served.at_revision_3[0]["value"], "MQ==", "a was 1 at revision 3");
    assert_eq!(served.lease_keys, serde_json::json!(["bGVhc2Vk"]), "the key \"leased\" on the lease");
    served
}

#[test]
fn migrates_an_etcd_cluster_to_hub() {
    let dir = tempfile::tempdir().expect("tempdir");
    let snapshot = dir.path().join("etcd.db");
    let (lease, before) = {
        let etcd = Server::start(&common::etcd_bin(), free_port(), free_port());
        let ep = etcd.endpoint();
        let lease = fill(&ep);
        ok(Tool::Etcdctl, &["--endpoints", &ep, "compaction", "3"]);
        put(&ep, "after-compaction", "y");
        hubctl_save(&ep, &snapshot);
        (lease, served(&ep, lease))
        // etcd stops here: the migration moves a stopped member's data.
    };
    assert_eq!(before.compacted.errors, ["Error: etcdserver: mvcc: required revision has been compacted"]);

    let member = Member::new("n1", "migration-token");
    let data = tempfile::tempdir().expect("tempdir");
    let data_dir = data.path().join("n1.hub");
    let logged_id = member.restore(&snapshot, &data_dir);
    let hubd = member.start_hubd(data, &data_dir);
    let ep = hubd.endpoint();

    assert_eq!(served(&ep, lease), before);
    // The member hubd became is the one restore announced.
    let members = json(&ep, &["member", "list"]);
    let members = members["members"].as_array().expect("members");
    assert_eq!(members.len(), 1);
    assert_eq!(format!("{:x}", members[0]["ID"].as_u64().expect("ID")), logged_id);
    assert_eq!(members[0]["name"], "n1");
    assert_eq!(members[0]["peerURLs"][0].as_str(), Some(member.peer.as_str()));
    // And it carries on from etcd's revision.
    let put = json(&ep, &["put", "new", "z"]);
    assert_eq!(put["header"]["revision"].as_i64(), before.revision.as_i64().map(|r| r + 1));
}

#[test]
fn saves_and_restores_a_hub_snapshot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let by_hubctl = dir.path().join("hub.db");
    let by_etcdctl = dir.path().join("hub-by-etcdctl.db");
    let (lease, before) = {
        let hubd = Server::start(&common::hubd_bin(), free_port(), free_port());
        let ep = hubd.endpoint();
        let lease = fill(&ep);
        ok(Tool::Etcdctl, &["--endpoints", &ep, "compaction", "3"]);
        hubctl_save(&ep, &by_hubctl);
        ok(Tool::Etcdctl, &["--endpoints", &ep, "snapshot", "save", text(&by_etcdctl)]);
        (lease, served(&ep, lease))
    };
    for format in ["simple", "json", "table", "fields"] {
        for file in [&by_hubctl, &by_etcdctl] {
            let args = ["snapshot", "status", text(file), "-w", format];
            assert_eq!(hubctl(&args), etcdctl(&args), "-w {format} {}", file.display());
        }
    }

    // A new one-member cluster from the old cluster's data: the old
    // membership and raft position stay behind.
    let member = Member::new("restored", "another-token");
    let data = tempfile::tempdir().expect("tempdir");
    let data_dir = data.path().join("restored.hub");
    let logged_id = member.restore(&by_hubctl, &data_dir);
    let hubd = member.start_hubd(data, &data_dir);
    assert_eq!(served(&hubd.endpoint(), lease), before);
    let members = json(&hubd.endpoint(), &["member", "list"]);
    assert_eq!(members["members"].as_array().map(Vec::len), Some(1));
    assert_eq!(format!("{:x}", members["members"][0]["ID"].as_u64().expect("ID")), logged_id);

    // The data directory exists now: a second restore refuses, as etcdctl does.
    let again = hubctl(&["snapshot", "restore", text(&by_hubctl), "--data-dir", text(&data_dir)]);
    assert_eq!(again.errors, [format!("Error: data-dir \"{}\" exists", data_dir.display())]);
}

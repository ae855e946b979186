//! Real hubd processes on loopback, each behind a peer proxy and a client
//! proxy, with the operations the nemeses need (kill -9, restart, pause,
//! replace a member) and clients that talk to one member through its proxy.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use hub_proto::etcdserverpb::{
    cluster_client::ClusterClient, kv_client::KvClient, lease_client::LeaseClient,
    maintenance_client::MaintenanceClient, watch_client::WatchClient, MemberAddRequest, MemberListRequest,
    MemberRemoveRequest, StatusRequest,
};
use hub_testkit::free_port;
use tonic::transport::{Channel, Endpoint};

use crate::proxy::Net;

pub struct Member {
    pub name: String,
    client_port: u16,
    peer_port: u16,
    pub client_proxy: u16,
    pub peer_proxy: u16,
    data_dir: PathBuf,
    child: Option<Child>,
    pub paused: bool,
    /// Joins a running cluster (after a remove and re-add) instead of bootstrapping.
    joining: bool,
    /// Flags added to hubd's at the next start (a nemesis's, e.g. a tiny quota).
    pub extra_args: Vec<String>,
}

impl Member {
    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }
}

/// How hubd is started.
#[derive(Debug, Clone)]
pub struct HubdOptions {
    pub bin: PathBuf,
    /// `HUB_CHAOS_BUG` for every member (needs a `failpoints` build).
    pub bugs: Vec<String>,
}

pub struct Cluster {
    pub members: Vec<Member>,
    pub net: Net,
    opts: HubdOptions,
    dir: PathBuf,
    /// One client channel per member, through its client proxy.
    channels: Vec<Channel>,
}

/// Whether `bin` is a `failpoints` build: any other hubd refuses to start,
/// even for `--version`, with `HUB_FAILPOINTS` set.
pub fn has_failpoints(bin: &Path) -> anyhow::Result<bool> {
    let out = Command::new(bin).arg("--version").env("HUB_FAILPOINTS", "none").output()?;
    Ok(out.status.success())
}

fn url(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

impl Cluster {
    /// Starts `n` members in `dir` and waits until every one answers.
    pub async fn start(n: usize, opts: HubdOptions, dir: &Path) -> anyhow::Result<Cluster> {
        std::fs::create_dir_all(dir)?;
        let net = Net::new(n);
        let mut members = Vec::new();
        let mut channels = Vec::new();
        for i in 0..n {
            let (client_port, peer_port) = (free_port(), free_port());
            let client_proxy = net.proxy(i, client_port, false).await?;
            let peer_proxy = net.proxy(i, peer_port, true).await?;
            channels.push(Endpoint::from_shared(url(client_proxy))?.connect_timeout(Duration::from_secs(1)).connect_lazy());
            members.push(Member {
                name: format!("m{i}"),
                client_port,
                peer_port,
                client_proxy,
                peer_proxy,
                data_dir: dir.join(format!("m{i}")),
                child: None,
                paused: false,
                joining: false,
                extra_args: Vec::new(),
            });
        }
        let mut cluster = Cluster { members, net, opts, dir: dir.to_path_buf(), channels };
        for i in 0..n {
            cluster.spawn(i)?;
        }
        cluster.wait_healthy(Duration::from_secs(60)).await?;
        Ok(cluster)
    }

    fn initial_cluster(&self) -> String {
        self.members.iter().map(|m| format!("{}={}", m.name, url(m.peer_proxy))).collect::<Vec<_>>().join(",")
    }

    fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        let initial_cluster = self.initial_cluster();
        let m = &mut self.members[i];
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join(format!("{}.log", m.name)))?;
        let mut cmd = Command::new(&self.opts.bin);
        cmd.args(["--name", &m.name])
            .arg("--data-dir")
            .arg(&m.data_dir)
            .args(["--listen-client-urls", &url(m.client_port), "--advertise-client-urls", &url(m.client_proxy)])
            .args(["--listen-peer-urls", &url(m.peer_port), "--initial-advertise-peer-urls", &url(m.peer_proxy)])
            .args(["--initial-cluster", &initial_cluster, "--initial-cluster-token", "hub-chaos"])
            .args(["--initial-cluster-state", if m.joining { "existing" } else { "new" }])
            .args(["--experimental-watch-progress-notify-interval", "1s"])
            .args(&m.extra_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if !self.opts.bugs.is_empty() {
            cmd.env("HUB_CHAOS_BUG", self.opts.bugs.join(","));
        }
        let child = cmd.spawn()?;
        self.net.set_pid(i, Some(child.id()));
        m.child = Some(child);
        m.paused = false;
        Ok(())
    }

    /// kill -9.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.net.set_pid(i, None);
        self.members[i].paused = false;
    }

    pub fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        if self.members[i].running() {
            return Ok(());
        }
        self.spawn(i)
    }

    pub fn signal(&self, i: usize, sig: &str) {
        if let Some(pid) = self.members[i].pid() {
            let _ = Command::new("kill").args([&format!("-{sig}"), &pid.to_string()]).status();
        }
    }

    pub fn pause(&mut self, i: usize) {
        if self.members[i].running() {
            self.signal(i, "STOP");
            self.members[i].paused = true;
        }
    }

    pub fn resume(&mut self, i: usize) {
        if self.members[i].paused {
            self.signal(i, "CONT");
            self.members[i].paused = false;
        }
    }

    pub fn channel(&self, i: usize) -> Channel {
        self.channels[i].clone()
    }

    pub fn channels(&self) -> Vec<Channel> {
        self.channels.clone()
    }

    /// `(member id, leader id)` as member `i` sees them.
    async fn status(&self, i: usize) -> Option<(u64, u64)> {
        let mut c = MaintenanceClient::new(self.channel(i));
        let r = tokio::time::timeout(Duration::from_secs(1), c.status(StatusRequest {})).await.ok()?.ok()?;
        let r = r.into_inner();
        Some((r.header.map_or(0, |h| h.member_id), r.leader))
    }

    /// The member that leads, as a majority of the answering members see it.
    pub async fn leader(&self) -> Option<usize> {
        let mut ids = Vec::new();
        let mut leaders = Vec::new();
        for i in 0..self.members.len() {
            if self.members[i].running() && !self.members[i].paused {
                if let Some((id, leader)) = self.status(i).await {
                    ids.push((id, i));
                    leaders.push(leader);
                }
            }
        }
        leaders.sort();
        let leader = *leaders.get(leaders.len() / 2)?;
        ids.iter().find(|(id, _)| *id == leader).map(|(_, i)| *i)
    }

    /// Waits until every running member answers a linearizable read.
    pub async fn wait_healthy(&self, limit: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + limit;
        for i in 0..self.members.len() {
            if !self.members[i].running() {
                continue;
            }
            loop {
                let mut kv = KvClient::new(self.channel(i));
                let req = hub_proto::etcdserverpb::RangeRequest { key: b"health".to_vec(), ..Default::default() };
                if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(2), kv.range(req)).await {
                    break;
                }
                if tokio::time::Instant::now() > deadline {
                    let m = &self.members[i];
                    let log = std::fs::read_to_string(self.dir.join(format!("{}.log", m.name))).unwrap_or_default();
                    let lines: Vec<&str> = log.lines().collect();
                    let tail = lines[lines.len().saturating_sub(20)..].join("\n");
                    anyhow::bail!("member {} did not become healthy within {limit:?}; its log ends:\n{tail}", m.name);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        Ok(())
    }

    /// Removes member `i` from the cluster (through another member), wipes its
    /// data, adds it back and starts it as a new member joining the cluster.
    pub async fn replace(&mut self, i: usize) -> anyhow::Result<()> {
        let via = (0..self.members.len()).find(|&j| j != i && self.members[j].running() && !self.members[j].paused);
        let via = via.ok_or_else(|| anyhow::anyhow!("no member to ask"))?;
        let mut cc = ClusterClient::new(self.channel(via));
        let t = Duration::from_secs(10);
        let list = tokio::time::timeout(t, cc.member_list(MemberListRequest { linearizable: true })).await??.into_inner();
        let peer = url(self.members[i].peer_proxy);
        let id = list.members.iter().find(|m| m.peer_ur_ls.contains(&peer)).map(|m| m.id);
        if let Some(id) = id {
            tokio::time::timeout(t, cc.member_remove(MemberRemoveRequest { id })).await??;
        }
        self.kill(i);
        let _ = std::fs::remove_dir_all(&self.members[i].data_dir);
        tokio::time::timeout(t, cc.member_add(MemberAddRequest { peer_ur_ls: vec![peer], is_learner: false }))
            .await??;
        self.members[i].joining = true;
        self.spawn(i)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.resume(i);
            self.kill(i);
        }
    }
}

/// The gRPC clients of one member.
pub fn kv(ch: &Channel) -> KvClient<Channel> {
    KvClient::new(ch.clone())
}

pub fn lease(ch: &Channel) -> LeaseClient<Channel> {
    LeaseClient::new(ch.clone())
}

pub fn watch(ch: &Channel) -> WatchClient<Channel> {
    WatchClient::new(ch.clone())
}

//! Fault-injecting TCP proxies. Every member's peer and client port sits behind
//! one; members advertise the proxy addresses, so all peer traffic crosses them.
//! A proxy tells which member opened a peer connection from the kernel's socket
//! table (`/proc/net/tcp` and each member's `/proc/<pid>/fd`).
//!
//! A partition blackholes a direction: bytes stop flowing (TCP keeps them, as
//! it retransmits dropped packets) until the partition heals. Latency delays
//! every chunk; loss delays a chunk by a retransmission timeout.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Added delay and loss on every link.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Degrade {
    pub delay: Duration,
    /// Probability that a chunk is "lost" and retransmitted 200 ms later.
    pub loss: f64,
}

#[derive(Default)]
struct State {
    /// `(from, to)`: `to` receives nothing `from` sends.
    blocked: HashSet<(usize, usize)>,
    degrade: Degrade,
    /// The process of each member, to tell who opened a connection.
    pids: Vec<Option<u32>>,
}

/// The network between members, shared by all proxies.
#[derive(Clone)]
pub struct Net {
    state: Arc<RwLock<State>>,
    changed: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Net {
    pub fn new(members: usize) -> Net {
        let state = State { pids: vec![None; members], ..Default::default() };
        Net { state: Arc::new(RwLock::new(state)), changed: Arc::new(tokio::sync::watch::Sender::new(0)) }
    }

    fn bump(&self) {
        self.changed.send_modify(|v| *v += 1);
    }

    pub fn set_pid(&self, member: usize, pid: Option<u32>) {
        self.state.write().pids[member] = pid;
    }

    /// Replaces the set of blocked directed links.
    pub fn block(&self, links: HashSet<(usize, usize)>) {
        self.state.write().blocked = links;
        self.bump();
    }

    pub fn degrade(&self, d: Degrade) {
        self.state.write().degrade = d;
        self.bump();
    }

    pub fn heal(&self) {
        {
            let mut s = self.state.write();
            s.blocked.clear();
            s.degrade = Degrade::default();
        }
        self.bump();
    }

    fn is_blocked(&self, from: Option<usize>, to: Option<usize>) -> bool {
        match (from, to) {
            (Some(f), Some(t)) => self.state.read().blocked.contains(&(f, t)),
            _ => false,
        }
    }

    /// Starts a proxy on a free loopback port forwarding to `target`; `member`
    /// is the member behind it, `peer` whether it carries peer traffic (which
    /// partitions cut; client traffic only gets latency and loss).
    pub async fn proxy(&self, member: usize, target: u16, peer: bool) -> anyhow::Result<u16> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let net = self.clone();
        tokio::spawn(async move {
            while let Ok((conn, from_addr)) = listener.accept().await {
                let net = net.clone();
                tokio::spawn(async move {
                    let source = if peer { net.source_of(from_addr.port(), port) } else { None };
                    let Ok(upstream) = TcpStream::connect(("127.0.0.1", target)).await else { return };
                    let _ = conn.set_nodelay(true);
                    let _ = upstream.set_nodelay(true);
                    let to = peer.then_some(member);
                    let (cr, cw) = conn.into_split();
                    let (ur, uw) = upstream.into_split();
                    let mut a = tokio::spawn(pump(net.clone(), cr, uw, source, to));
                    let mut b = tokio::spawn(pump(net, ur, cw, to, source));
                    // When either direction ends, the connection is over.
                    tokio::select! { _ = &mut a => {}, _ = &mut b => {} }
                    a.abort();
                    b.abort();
                });
            }
        });
        Ok(port)
    }

    /// Which member owns the socket connected from `port` to `proxy_port`.
    fn source_of(&self, port: u16, proxy_port: u16) -> Option<usize> {
        let inode = socket_inode(port, proxy_port)?;
        let needle = format!("socket:[{inode}]");
        let pids = self.state.read().pids.clone();
        pids.iter().position(|pid| {
            let Some(pid) = pid else { return false };
            let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return false };
            fds.flatten().any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l.to_string_lossy() == needle))
        })
    }
}

/// The inode of the IPv4 socket with local port `local` and remote port `remote`.
fn socket_inode(local: u16, remote: u16) -> Option<String> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let (l, r) = (format!(":{local:04X}"), format!(":{remote:04X}"));
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        (f.len() > 9 && f[1].ends_with(&l) && f[2].ends_with(&r)).then(|| f[9].to_string())
    })
}

async fn pump(
    net: Net,
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    src: Option<usize>,
    dst: Option<usize>,
) {
    let mut changed = net.changed.subscribe();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        // Blackholed: hold the bytes until the link heals.
        while net.is_blocked(src, dst) {
            if changed.changed().await.is_err() {
                return;
            }
        }
        let degrade = net.state.read().degrade;
        let mut delay = degrade.delay;
        if degrade.loss > 0.0 && rand::rng().random_bool(degrade.loss.min(1.0)) {
            delay += Duration::from_millis(200);
        }
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

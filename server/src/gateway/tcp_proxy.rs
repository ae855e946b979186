//! etcd's `proxy/tcpproxy`: each accepted connection is joined to a new
//! connection to one endpoint, picked by SRV priority and weight (round robin
//! among endpoints without weight, which is every endpoint of `--endpoints`).
//! An endpoint that refuses a dial is skipped until a dial every
//! `--retry-delay` succeeds again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::net::{TcpListener, TcpStream};

use super::srv::Srv;

struct Remote {
    srv: Srv,
    address: String,
    inactive: AtomicBool,
}

impl Remote {
    fn is_active(&self) -> bool {
        !self.inactive.load(Ordering::Relaxed)
    }
}

pub struct TcpProxy {
    remotes: Vec<Remote>,
    /// For round robin.
    pick_count: Mutex<usize>,
    monitor_interval: Duration,
}

impl TcpProxy {
    pub fn new(srvs: Vec<Srv>, monitor_interval: Duration) -> Arc<TcpProxy> {
        let remotes = srvs.into_iter().map(|srv| Remote { address: srv.address(), srv, inactive: AtomicBool::new(false) }).collect();
        // etcd's default when the interval is zero.
        let monitor_interval = if monitor_interval.is_zero() { Duration::from_secs(300) } else { monitor_interval };
        Arc::new(TcpProxy { remotes, pick_count: Mutex::new(0), monitor_interval })
    }

    /// Serves `listener` until accepting fails.
    pub async fn run(self: Arc<Self>, listener: TcpListener) {
        let endpoints: Vec<&str> = self.remotes.iter().map(|r| r.address.as_str()).collect();
        tracing::info!(?endpoints, "ready to proxy client requests");
        tokio::spawn(self.clone().monitor());
        loop {
            match listener.accept().await {
                Ok((conn, _)) => {
                    tokio::spawn(self.clone().serve(conn));
                }
                Err(e) => {
                    tracing::error!(error = %e, "gateway stopped accepting connections");
                    return;
                }
            }
        }
    }

    /// etcd's `pick`: among the active remotes of the best (lowest) priority,
    /// a weighted random choice when some have weight (those without have a
    /// 1% chance), else the next active remote in round robin.
    fn pick(&self) -> Option<&Remote> {
        let mut count = self.pick_count.lock();
        let active = || self.remotes.iter().filter(|r| r.is_active());
        let best = active().map(|r| r.srv.priority).min()?;
        let (weighted, unweighted): (Vec<&Remote>, Vec<&Remote>) =
            active().filter(|r| r.srv.priority == best).partition(|r| r.srv.weight > 0);
        if !weighted.is_empty() {
            if !unweighted.is_empty() && rand::random_range(0..100) == 1 {
                let r = unweighted[*count % unweighted.len()];
                *count += 1;
                return Some(r);
            }
            let total: i64 = weighted.iter().map(|r| i64::from(r.srv.weight)).sum();
            let mut choose = rand::random_range(0..total);
            for r in &weighted {
                choose -= i64::from(r.srv.weight);
                if choose <= 0 {
                    return Some(r);
                }
            }
        }
        for _ in 0..self.remotes.len() {
            let r = &self.remotes[*count % self.remotes.len()];
            *count += 1;
            if r.is_active() {
                return Some(r);
            }
        }
        None
    }

    /// Joins `conn` to the first remote that takes a connection; closes it
    /// when none does.
    async fn serve(self: Arc<Self>, mut conn: TcpStream) {
        let mut upstream = loop {
            let Some(remote) = self.pick() else { return };
            match TcpStream::connect(&remote.address).await {
                Ok(up) => break up,
                Err(e) => {
                    remote.inactive.store(true, Ordering::Relaxed);
                    tracing::warn!(address = %remote.address, interval = ?self.monitor_interval, error = %e, "deactivated endpoint");
                }
            }
        };
        let _ = conn.set_nodelay(true);
        let _ = upstream.set_nodelay(true);
        // Either side closing ends both, as etcd's two io.Copy do.
        let _ = tokio::io::copy_bidirectional(&mut conn, &mut upstream).await;
    }

    /// Every interval, dials the inactive remotes and reactivates those that answer.
    async fn monitor(self: Arc<Self>) {
        loop {
            tokio::time::sleep(self.monitor_interval).await;
            for (i, remote) in self.remotes.iter().enumerate() {
                if remote.is_active() {
                    continue;
                }
                let proxy = self.clone();
                tokio::spawn(async move {
                    let remote = &proxy.remotes[i];
                    match TcpStream::connect(&remote.address).await {
                        Ok(_) => {
                            remote.inactive.store(false, Ordering::Relaxed);
                            tracing::info!(address = %remote.address, "activated");
                        }
                        Err(e) => tracing::warn!(
                            address = %remote.address, interval = ?proxy.monitor_interval, error = %e,
                            "failed to activate endpoint (stay inactive for another interval)"
                        ),
                    }
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn srv(port: u16, priority: u16, weight: u16) -> Srv {
        Srv { target: "127.0.0.1".into(), port, priority, weight }
    }

    fn picks(proxy: &TcpProxy, n: usize) -> Vec<u16> {
        (0..n).map(|_| proxy.pick().map_or(0, |r| r.srv.port)).collect()
    }

    #[test]
    fn endpoints_take_turns_and_inactive_ones_are_skipped() {
        let proxy = TcpProxy::new(vec![srv(1, 0, 0), srv(2, 0, 0), srv(3, 0, 0)], Duration::ZERO);
        assert_eq!(picks(&proxy, 4), [1, 2, 3, 1]);
        proxy.remotes[2].inactive.store(true, Ordering::Relaxed);
        assert_eq!(picks(&proxy, 3), [2, 1, 2]);
        for r in &proxy.remotes {
            r.inactive.store(true, Ordering::Relaxed);
        }
        assert!(proxy.pick().is_none());
    }

    #[test]
    fn the_best_priority_wins_by_weight() {
        let proxy = TcpProxy::new(vec![srv(1, 10, 5), srv(2, 20, 100), srv(3, 10, 5)], Duration::ZERO);
        let got = picks(&proxy, 200);
        assert!(got.iter().all(|p| *p == 1 || *p == 3), "{got:?}");
        assert!(got.contains(&1) && got.contains(&3), "{got:?}");
        proxy.remotes[0].inactive.store(true, Ordering::Relaxed);
        proxy.remotes[2].inactive.store(true, Ordering::Relaxed);
        assert_eq!(picks(&proxy, 2), [2, 2]);
    }

    #[tokio::test]
    async fn a_connection_goes_to_the_endpoint_that_answers() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let dead = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dead_port = dead.local_addr().unwrap().port();
        drop(dead);
        let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let echo_port = echo.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut c, _)) = echo.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = c.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let proxy = TcpProxy::new(vec![srv(dead_port, 0, 0), srv(echo_port, 0, 0)], Duration::from_secs(60));
        tokio::spawn(proxy.clone().run(listener));
        for _ in 0..3 {
            let mut c = TcpStream::connect(addr).await.unwrap();
            c.write_all(b"ping").await.unwrap();
            let mut buf = [0; 4];
            c.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"ping");
        }
        assert!(!proxy.remotes[0].is_active(), "the dead endpoint is skipped from then on");
    }
}

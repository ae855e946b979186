//! The cluster behind the proxy: its client endpoints and the one connection
//! the proxy's calls go over (the pinned endpoint), moved to the next
//! endpoint when a call cannot reach it, as clientv3 leaves a dead endpoint;
//! with `--endpoints-auto-sync-interval`, the list follows the cluster's
//! members as clientv3's `autoSync` keeps it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use hub_proto::etcdserverpb::cluster_client::ClusterClient;
use hub_proto::etcdserverpb::MemberListRequest;
use hub_tls::net::Url;
use parking_lot::Mutex;
use tonic::transport::{Channel, Endpoint};

/// etcd's proxy client gives up dialing an endpoint after 5 seconds.
const DIAL_TIMEOUT: Duration = Duration::from_secs(5);

/// How the proxy dials: its TLS files and keepalive settings.
pub struct Dial {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub ca: Option<PathBuf>,
    pub skip_verify: bool,
    /// Whether an endpoint without a scheme is dialed with TLS.
    pub tls_for_bare: bool,
    pub keepalive_time: Duration,
    pub keepalive_timeout: Duration,
    pub keepalive_while_idle: bool,
}

/// One endpoint: as given, and how to dial it.
#[derive(Clone)]
struct Target {
    address: String,
    url: Url,
    endpoint: Endpoint,
}

struct State {
    targets: Vec<Target>,
    pinned: usize,
    channel: Option<Channel>,
    /// Counts the moves of the pin, so that several calls failing on one
    /// connection move it once.
    generation: u64,
}

/// The connection a call goes over, and which one it is.
pub struct Pinned {
    pub channel: Channel,
    pub generation: u64,
}

pub struct Backends {
    tls: Arc<rustls::ClientConfig>,
    tls_for_bare: bool,
    keepalive: (Duration, Duration, bool),
    state: Mutex<State>,
    /// One dial at a time: calls arriving meanwhile wait for its connection.
    dialing: tokio::sync::Mutex<()>,
}

impl Backends {
    pub fn new(addresses: &[String], dial: &Dial) -> anyhow::Result<Backends> {
        let identity = match (&dial.cert, &dial.key) {
            (Some(cert), Some(key)) => Some((cert.as_path(), key.as_path())),
            _ => None,
        };
        let tls = hub_tls::client_config(dial.ca.as_deref(), identity, dial.skip_verify)?;
        let backends = Backends {
            tls: Arc::new(tls),
            tls_for_bare: dial.tls_for_bare,
            keepalive: (dial.keepalive_time, dial.keepalive_timeout, dial.keepalive_while_idle),
            state: Mutex::new(State { targets: Vec::new(), pinned: 0, channel: None, generation: 0 }),
            dialing: tokio::sync::Mutex::new(()),
        };
        let targets = backends.targets(addresses).map_err(|e| anyhow!(e))?;
        if targets.is_empty() {
            return Err(anyhow!("no endpoints available"));
        }
        backends.state.lock().targets = targets;
        Ok(backends)
    }

    fn targets(&self, addresses: &[String]) -> Result<Vec<Target>, String> {
        let (time, timeout, while_idle) = self.keepalive;
        addresses
            .iter()
            .map(|address| {
                let (url, endpoint) = hub_tls::net::client_endpoint(address, self.tls_for_bare)?;
                let mut endpoint = endpoint.connect_timeout(DIAL_TIMEOUT);
                if !time.is_zero() {
                    // grpc-go raises keepalive times below 10s to 10s.
                    endpoint = endpoint
                        .http2_keep_alive_interval(time.max(Duration::from_secs(10)))
                        .keep_alive_timeout(timeout)
                        .keep_alive_while_idle(while_idle);
                }
                Ok(Target { address: address.clone(), url, endpoint })
            })
            .collect()
    }

    /// The connection to the pinned endpoint, dialed if there is none; an
    /// endpoint that cannot be dialed passes the pin to the next, until
    /// each was tried once.
    pub async fn pinned(&self) -> Result<Pinned, String> {
        let mut last_error = String::from("no endpoints available");
        let tries = self.state.lock().targets.len();
        for _ in 0..tries {
            if let Some(pinned) = self.connected() {
                return Ok(pinned);
            }
            let _dialing = self.dialing.lock().await;
            let (target, generation) = {
                let state = self.state.lock();
                if let Some(channel) = &state.channel {
                    return Ok(Pinned { channel: channel.clone(), generation: state.generation });
                }
                (state.targets[state.pinned].clone(), state.generation)
            };
            match hub_tls::net::connect(&target.endpoint, &target.url, &self.tls).await {
                Ok(channel) => {
                    let mut state = self.state.lock();
                    if state.generation == generation {
                        state.channel = Some(channel.clone());
                        return Ok(Pinned { channel, generation });
                    }
                }
                Err(e) => {
                    last_error = format!("{}: {e}", target.address);
                    tracing::warn!(endpoint = %target.address, error = %e, "cannot reach an endpoint; trying the next");
                    self.failed(generation);
                }
            }
        }
        Err(last_error)
    }

    fn connected(&self) -> Option<Pinned> {
        let state = self.state.lock();
        state.channel.as_ref().map(|channel| Pinned { channel: channel.clone(), generation: state.generation })
    }

    /// A call could not reach the endpoint of connection `generation`: the
    /// next call goes to the next endpoint.
    pub fn failed(&self, generation: u64) {
        let mut state = self.state.lock();
        if state.generation != generation {
            return;
        }
        state.channel = None;
        state.pinned = (state.pinned + 1) % state.targets.len();
        state.generation += 1;
        tracing::info!(endpoint = %state.targets[state.pinned].address, "switched to another endpoint");
    }

    /// Where the pinned endpoint is, and the TLS to dial it with (for the
    /// HTTP requests passed through, `/metrics`).
    pub fn pinned_url(&self) -> (Url, Arc<rustls::ClientConfig>) {
        let state = self.state.lock();
        (state.targets[state.pinned].url.clone(), self.tls.clone())
    }

    /// clientv3's `autoSync`: every `every`, the client URLs of the cluster's
    /// started voting members become the endpoints.
    pub async fn auto_sync(self: Arc<Self>, every: Duration) {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            if let Err(e) = self.sync().await {
                tracing::info!(error = %e, "Auto sync endpoints failed.");
            }
        }
    }

    /// clientv3's `Sync`.
    async fn sync(&self) -> Result<(), String> {
        let pinned = self.pinned().await?;
        let request = MemberListRequest { linearizable: true };
        let answer = tokio::time::timeout(DIAL_TIMEOUT, ClusterClient::new(pinned.channel).member_list(request)).await;
        let members = match answer {
            Ok(Ok(response)) => response.into_inner().members,
            Ok(Err(status)) => {
                if status.code() == tonic::Code::Unavailable {
                    self.failed(pinned.generation);
                }
                return Err(status.message().to_string());
            }
            Err(_) => return Err("context deadline exceeded".to_string()),
        };
        let addresses: Vec<String> = members
            .into_iter()
            .filter(|m| !m.name.is_empty() && !m.is_learner)
            .flat_map(|m| m.client_ur_ls)
            .collect();
        if addresses.is_empty() {
            return Err("etcdclient: no available endpoints".to_string());
        }
        self.set_endpoints(addresses)
    }

    /// clientv3's `SetEndpoints`: the pin stays where it is if its endpoint
    /// is still among them.
    fn set_endpoints(&self, addresses: Vec<String>) -> Result<(), String> {
        let targets = self.targets(&addresses)?;
        let mut state = self.state.lock();
        let current: Vec<&str> = state.targets.iter().map(|t| t.address.as_str()).collect();
        if current == addresses.iter().map(String::as_str).collect::<Vec<_>>() {
            return Ok(());
        }
        let pinned_address = state.targets[state.pinned].address.clone();
        match addresses.iter().position(|a| *a == pinned_address) {
            Some(i) => state.pinned = i,
            None => {
                state.pinned = 0;
                state.channel = None;
                state.generation += 1;
            }
        }
        state.targets = targets;
        tracing::info!(endpoints = ?addresses, "updated endpoints");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dial() -> Dial {
        Dial {
            cert: None,
            key: None,
            ca: None,
            skip_verify: false,
            tls_for_bare: false,
            keepalive_time: Duration::ZERO,
            keepalive_timeout: Duration::from_secs(20),
            keepalive_while_idle: false,
        }
    }

    fn addresses(b: &Backends) -> (Vec<String>, usize) {
        let state = b.state.lock();
        (state.targets.iter().map(|t| t.address.clone()).collect(), state.pinned)
    }

    #[test]
    fn a_failure_moves_the_pin_once_per_connection() {
        let b = Backends::new(&["http://a:1".into(), "b:2".into(), "c:3".into()], &dial()).unwrap();
        b.failed(0);
        b.failed(0);
        assert_eq!(addresses(&b).1, 1);
        b.failed(1);
        b.failed(2);
        assert_eq!(addresses(&b).1, 0);
    }

    #[test]
    fn synced_endpoints_keep_the_pin_where_it_can_stay() {
        let b = Backends::new(&["http://a:1".into(), "http://b:2".into()], &dial()).unwrap();
        b.failed(0);
        b.set_endpoints(vec!["http://c:3".into(), "http://b:2".into()]).unwrap();
        assert_eq!(addresses(&b), (vec!["http://c:3".to_string(), "http://b:2".to_string()], 1));
        assert_eq!(b.state.lock().generation, 1);
        b.set_endpoints(vec!["http://d:4".into()]).unwrap();
        assert_eq!(addresses(&b), (vec!["http://d:4".to_string()], 0));
        assert_eq!(b.state.lock().generation, 2);
        assert!(Backends::new(&[], &dial()).is_err());
    }
}

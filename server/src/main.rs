//! hubd: one member of a hub cluster.
//!
//! Place in the request path: the process around everything. It reads etcd's
//! flags and `ETCD_*` variables ([`config`]), opens the state machine in the data
//! directory, starts the raft node, mounts the gRPC services on every
//! `--listen-client-urls` listener, and revokes expired leases. It owns no
//! request semantics.

mod config;
mod identity;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use hub_grpc_api::{Context, ServiceConfig};
use hub_raft::{Membership, Node};
use hub_store::StateMachine;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

fn main() {
    let config = match config::parse() {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    init_logging(&config.log_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hubd: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = runtime.block_on(run(config)) {
        tracing::error!("{e:#}");
        eprintln!("hubd: {e:#}");
        std::process::exit(1);
    }
}

fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// etcd's minimum lease TTL: 1.5 election timeouts, rounded up to a second.
fn min_lease_ttl(election_timeout_ms: u64) -> i64 {
    (election_timeout_ms * 3 / 2).div_ceil(1000) as i64
}

/// `http://host:port` → `host:port`; hub serves only plain http clients so far.
fn socket_addr(url: &str, flag: &str) -> anyhow::Result<String> {
    match url.split_once("://") {
        Some(("http", rest)) => Ok(rest.trim_end_matches('/').to_string()),
        Some((scheme, _)) => anyhow::bail!("{flag}: {scheme}:// listeners are not supported yet ({url})"),
        None => anyhow::bail!("{flag}: URL scheme must be http, https, unix or unixs: {url}"),
    }
}

async fn run(config: config::Config) -> anyhow::Result<()> {
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    for flag in &config.unhonoured {
        tracing::warn!(flag = %flag, "flag accepted for etcd compatibility but not honoured by hub yet");
    }
    let member_dir = config.data_dir.join("member");
    std::fs::create_dir_all(&member_dir).with_context(|| format!("create {}", member_dir.display()))?;

    let peer_urls = config.initial_advertise_peer_urls.clone();
    let identity = identity::load_or_create(&member_dir, || {
        // Every member of --initial-cluster gets etcd's ID, so the cluster ID
        // matches what etcd would compute for the same flags.
        let mut ids = Vec::new();
        let mut mine = identity::member_id(&peer_urls, &config.initial_cluster_token);
        let mut by_name: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
        for (name, url) in &config.initial_cluster {
            by_name.entry(name).or_default().push(url.clone());
        }
        for (name, urls) in by_name {
            let id = identity::member_id(&urls, &config.initial_cluster_token);
            if name == config.name {
                mine = id;
            }
            ids.push(id);
        }
        if !ids.contains(&mine) {
            ids.push(mine);
        }
        (mine, identity::cluster_id(&ids))
    })
    .context("member identity")?;

    let state = StateMachine::open(&member_dir, min_lease_ttl(config.election_timeout_ms))
        .context("open the backend")?;
    tracing::info!(
        member = format_args!("{:x}", identity.member_id),
        cluster = format_args!("{:x}", identity.cluster_id),
        revision = state.current_revision(),
        applied_index = state.applied_index(),
        data_dir = %config.data_dir.display(),
        "opened member"
    );
    let membership = Membership {
        cluster_id: identity.cluster_id,
        member_id: identity.member_id,
        name: config.name.clone(),
        peer_urls: config.initial_advertise_peer_urls.clone(),
        client_urls: config.advertise_client_urls.clone(),
    };
    let node = Arc::new(Node::new(state, membership, identity.term));
    let ctx = Context::new(
        node,
        ServiceConfig {
            max_request_bytes: config.max_request_bytes as usize,
            max_txn_ops: config.max_txn_ops as usize,
            watch_progress_notify_interval: config.experimental_watch_progress_notify_interval,
        },
    );

    // Peers are not served until replication exists, but the port is held as
    // etcd holds it, so a clash shows at start.
    let mut peer_listeners = Vec::new();
    for url in &config.listen_peer_urls {
        let addr = match url.split_once("://") {
            Some(("http" | "https", rest)) => rest.trim_end_matches('/').to_string(),
            _ => anyhow::bail!("--listen-peer-urls: unsupported URL {url}"),
        };
        peer_listeners.push(TcpListener::bind(&addr).await.with_context(|| format!("listen on peer URL {url}"))?);
    }

    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let mut servers = Vec::new();
    for url in &config.listen_client_urls {
        let addr = socket_addr(url, "--listen-client-urls")?;
        let listener = TcpListener::bind(&addr).await.with_context(|| format!("listen on client URL {url}"))?;
        tracing::info!(address = %addr, "serving insecure client requests, this is strongly discouraged!");
        let routes = ctx.routes();
        let mut shutdown = shutdown_rx.clone();
        servers.push(tokio::spawn(async move {
            tonic::transport::Server::builder()
                .http2_keepalive_interval(Some(Duration::from_secs(7200)))
                .add_routes(routes)
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async move {
                    let _ = shutdown.changed().await;
                })
                .await
        }));
    }
    tokio::spawn(hub_grpc_api::lease::run_expiry(ctx.clone()));
    tracing::info!(name = %config.name, "ready to serve client requests");

    wait_for_signal().await;
    tracing::info!("received a stop signal; shutting down");
    let _ = shutdown_tx.send(true);
    for s in servers {
        // Streams (watches, keep-alives) may hold a server open; do not wait forever.
        let _ = tokio::time::timeout(Duration::from_secs(2), s).await;
    }
    drop(peer_listeners);
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

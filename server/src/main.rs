//! hubd: one member of a hub cluster.
//!
//! Place in the request path: the process around everything. It reads etcd's
//! flags and `ETCD_*` variables ([`config`]), opens the state machine in the data
//! directory, starts the raft node (peer transport on `--listen-peer-urls`),
//! mounts the gRPC services on every `--listen-client-urls` listener once the
//! cluster has a leader, and revokes expired leases. It owns no request
//! semantics.

#[cfg(feature = "failpoints")]
mod chaos;
mod config;
mod discovery;
mod gateway;
mod grpc_proxy;
mod identity;
mod log;
mod migrate;
mod subcommand;
mod transport;

use std::time::Duration;

use anyhow::Context as _;
use std::collections::BTreeMap;

use hub_etcdserver::ServerConfig;
use hub_grpc_api::{Context, ServiceConfig};
use hub_proto::hubpeer::peer_server::PeerServer;
use hub_raft::cluster_id::CheckCluster;
use hub_raft::{Member, Node, NodeConfig, PeerService};
use tonic::service::interceptor::InterceptedService;
use hub_store::{CompactionConfig, StateMachine};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The variables that switch on injected bugs and failpoints.
const FAILPOINT_VARIABLES: [&str; 2] = ["HUB_CHAOS_BUG", "HUB_FAILPOINTS"];

fn main() {
    // A build without the hooks would ignore them and run clean, so a test that
    // must see a failure would pass for the wrong reason: refuse instead, before
    // anything else (`hubd --version` too, which is how hub-chaos checks a build).
    if !cfg!(feature = "failpoints") {
        for var in FAILPOINT_VARIABLES {
            if std::env::var_os(var).is_some_and(|v| !v.is_empty()) {
                eprintln!("hubd: {var} is set, but this hubd was built without `--features failpoints`");
                std::process::exit(1);
            }
        }
    }
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if gateway::requested(&args) {
        std::process::exit(gateway::main(args));
    }
    if grpc_proxy::requested(&args) {
        std::process::exit(grpc_proxy::main(args));
    }
    let config = match config::parse() {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    if let Err(e) = log::init(&config.log_level, log::Format::from_flag(&config.log_format), &config.log_outputs) {
        config::ConfigError::Invalid(e).exit();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hubd: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = runtime.block_on(run(config)) {
        // In the log only, as etcd's fatal errors: stderr keeps one shape.
        tracing::error!("{e:#}");
        std::process::exit(1);
    }
}

/// etcd's minimum lease TTL: 1.5 election timeouts, rounded up to a second.
fn min_lease_ttl(election_timeout_ms: u64) -> i64 {
    (election_timeout_ms * 3 / 2).div_ceil(1000) as i64
}

/// `--bootstrap-defrag-threshold-megabytes`: defragments the backend before
/// the member starts when that frees at least `threshold` bytes (etcd's
/// `maybeDefragBackend`).
fn bootstrap_defrag(state: &StateMachine, threshold: u64) -> anyhow::Result<()> {
    let (size, in_use) = (state.db_size(), state.db_size_in_use()?);
    if size.saturating_sub(in_use) < threshold {
        tracing::info!(
            current_db_size_bytes = size,
            current_db_size_in_use_bytes = in_use,
            bootstrap_defrag_threshold_bytes = threshold,
            "Skipping defragmentation"
        );
        return Ok(());
    }
    Ok(state.defragment()?)
}

/// The members of `--initial-cluster` with etcd's member IDs, and the cluster ID.
fn initial_members(config: &config::Config) -> (BTreeMap<u64, Member>, u64, u64) {
    let mut by_name: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (name, url) in &config.initial_cluster {
        by_name.entry(name).or_default().push(url.clone());
    }
    let mut members = BTreeMap::new();
    let mut mine = identity::member_id(&config.initial_advertise_peer_urls, &config.initial_cluster_token);
    for (name, urls) in by_name {
        let id = identity::member_id(&urls, &config.initial_cluster_token);
        if name == config.name {
            mine = id;
        }
        // Client URLs are published by each member once it runs (as etcd does),
        // so every member bootstraps the very same first log entry.
        members.insert(id, Member { name: name.to_string(), peer_urls: urls, client_urls: Vec::new() });
    }
    members.entry(mine).or_insert_with(|| Member {
        name: config.name.clone(),
        peer_urls: config.initial_advertise_peer_urls.clone(),
        client_urls: Vec::new(),
    });
    let ids: Vec<u64> = members.keys().copied().collect();
    (members, mine, identity::cluster_id(&ids))
}

/// The initial cluster found by v3 discovery (etcd's `bootstrapNewClusterNoWAL`).
/// A member the discovery service does not take exits as etcd's does.
async fn discover(config: &config::Config, settings: &discovery::Settings) -> anyhow::Result<Vec<(String, String)>> {
    tracing::info!("Bootstrapping cluster using v3 discovery.");
    let my_id = identity::member_id(&config.initial_advertise_peer_urls, &config.initial_cluster_token);
    // etcd's `URLsMap.String()` of this member alone: `name=url` pairs, sorted.
    let mut me: Vec<String> = config.initial_advertise_peer_urls.iter().map(|u| format!("{}={u}", config.name)).collect();
    me.sort();
    let cluster = match discovery::join_cluster(settings, my_id, &me.join(",")).await {
        Ok(cluster) => cluster,
        Err(e) => {
            // etcdmain's words for a failed discovery; etcd exits without a fatal line.
            let error = format!("failed to join discovery cluster ({e})");
            tracing::warn!(discovery_token = "", error = %error, "failed to bootstrap; discovery token was already used");
            tracing::warn!("do not reuse discovery token; generate a new one to bootstrap a cluster");
            std::process::exit(1);
        }
    };
    let members = config::parse_initial_cluster(&cluster).map_err(|e| anyhow::anyhow!(e))?;
    let mut urls: Vec<&str> = members.iter().map(|(_, u)| u.as_str()).collect();
    urls.sort_unstable();
    if urls.windows(2).any(|w| w[0] == w[1]) {
        anyhow::bail!("discovery cluster {cluster} has duplicate url");
    }
    Ok(members)
}

async fn run(mut config: config::Config) -> anyhow::Result<()> {
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    for flag in &config.unhonoured {
        tracing::warn!(flag = %flag, "flag accepted for etcd compatibility but not honoured by hub yet");
    }
    // etcd's start-up line with the configuration it runs with (a subset of
    // its fields; etcd's e2e tests look for "v2-deprecation" here).
    tracing::info!(
        etcd_version = %hub_etcdserver::version::ETCD_VERSION,
        name = %config.name,
        data_dir = %config.data_dir.display(),
        heartbeat_interval = ?Duration::from_millis(config.heartbeat_interval_ms),
        election_timeout = ?Duration::from_millis(config.election_timeout_ms),
        snapshot_count = config.snapshot_count,
        max_learners = config.max_learners,
        listen_client_urls = ?config.listen_client_urls,
        initial_cluster_state = %config.initial_cluster_state,
        quota_backend_bytes = config.quota_backend_bytes,
        max_request_bytes = config.max_request_bytes,
        auto_compaction_mode = %config.auto_compaction_mode,
        auto_compaction_retention = %config.auto_compaction_retention,
        // etcd 3.6 enforces its default whatever --v2-deprecation says.
        v2_deprecation = "write-only",
        "starting an etcd server"
    );
    let member_dir = config.data_dir.join("member");
    std::fs::create_dir_all(&member_dir).with_context(|| format!("create {}", member_dir.display()))?;
    migrate::import_etcd_backend(&member_dir).context("import the backend of `etcdctl snapshot restore`")?;

    let tls = transport::peer_tls(&config)?;
    let client_tls = transport::client_tls(&config)?;
    // Every port is taken before raft or anything else dials out (as etcd's
    // embed does): an outgoing connection's ephemeral port can otherwise be
    // the one a listener is about to bind. Connections wait in the backlog
    // until their server starts.
    let peer_listeners = transport::bind(&config.listen_peer_urls, "--listen-peer-urls", tls.as_deref()).await?;
    let client_listeners = transport::bind(&config.listen_client_urls, "--listen-client-urls", client_tls.as_deref()).await?;
    let client_http_listeners =
        transport::bind(&config.listen_client_http_urls, "--listen-client-http-urls", client_tls.as_deref()).await?;
    let metrics_listeners =
        transport::bind(&config.listen_metrics_urls, "--listen-metrics-urls", client_tls.as_deref()).await?;
    if let Some(flag) = config.discovery.filter(|_| !identity::exists(&member_dir)) {
        let Some(settings) = &config.discovery_v3 else {
            // Alone, this member would make a cluster of its own beside the
            // members it was meant to find: refuse rather than split.
            anyhow::bail!("bootstrapping by --{flag} is not implemented by hub; bootstrap with --initial-cluster");
        };
        config.initial_cluster = discover(&config, settings).await?;
    } else if config.discovery_v3.is_some() {
        tracing::warn!(
            data_dir = %config.data_dir.display(),
            "discovery token is ignored since cluster already initialized; valid logs are found"
        );
    }
    let (members, mut my_id, mut cluster_id) = initial_members(&config);
    let joining = config.initial_cluster_state == "existing";
    if joining && !identity::exists(&member_dir) {
        // A member added to a running cluster takes the ID the cluster gave it.
        let others: Vec<String> = members
            .iter()
            .filter(|(id, _)| **id != my_id)
            .flat_map(|(_, m)| m.peer_urls.clone())
            .collect();
        (my_id, cluster_id) = hub_raft::membership::discover(&others, &config.initial_advertise_peer_urls, tls.as_deref())
            .await
            .map_err(|e| anyhow::anyhow!("join the existing cluster: {e}"))?;
    }
    // On restart the data directory decides, whatever the flags say (as etcd).
    let (identity, created) = identity::load_or_create(&member_dir, || (my_id, cluster_id)).context("member identity")?;

    let tokens = hub_etcdserver::token::Tokens::parse(&config.auth_token).map_err(|e| {
        tracing::warn!(error = %e, "failed to create token provider");
        anyhow::anyhow!("auth: invalid auth options")
    })?;
    let compaction = CompactionConfig::background(config.compaction_batch_limit, config.compaction_sleep_interval);
    let mut state = StateMachine::open_compacting(&member_dir, min_lease_ttl(config.election_timeout_ms), compaction)
        .context("open the backend")?;
    state.auth_mut().set_token_ttl(config.auth_token_ttl);
    if config.bootstrap_defrag_threshold_bytes != 0 {
        bootstrap_defrag(&state, config.bootstrap_defrag_threshold_bytes).context("defragment the backend")?;
    }
    tracing::info!(
        local_member_id = %format_args!("{:x}", identity.member_id),
        cluster_id = %format_args!("{:x}", identity.cluster_id),
        data_dir = %config.data_dir.display(),
        "{}",
        if created { "starting local member" } else { "restarting local member" }
    );
    tracing::info!(index = state.applied_index(), "restore consistentIndex");
    tracing::info!(current_rev = state.current_revision(), "kvstore restored");
    // Not `member/wal`: that is where etcd (and `etcdctl snapshot restore`) keep
    // etcd's own WAL, which hub does not read.
    let wal_dir = config.wal_dir.clone().unwrap_or_else(|| member_dir.join("hub-wal"));
    let node = Node::start(
        NodeConfig {
            id: identity.member_id,
            cluster_id: identity.cluster_id,
            wal_dir,
            initial_members: members,
            bootstrap: created && config.initial_cluster_state == "new",
            heartbeat_interval_ms: config.heartbeat_interval_ms,
            election_timeout_ms: config.election_timeout_ms,
            snapshot_count: config.snapshot_count,
            tls: tls.clone(),
            strict_reconfig_check: config.strict_reconfig_check,
            max_learners: config.max_learners,
            force_new_cluster: config.force_new_cluster,
            warning_apply_duration: config.warning_apply_duration,
        },
        state,
    )
    .await
    .context("start raft")?;
    #[cfg(feature = "failpoints")]
    chaos::arm_disk_faults(node.clone());
    let failing = node.clone();
    tokio::spawn(async move {
        // As etcd, which exits when its backend cannot commit: nothing this
        // member holds can be trusted any more, so it must not serve.
        let reason = failing.failed().await;
        tracing::error!(reason = %reason, "the member cannot go on; exiting");
        std::process::exit(1);
    });
    if config.initial_corrupt_check {
        // Before serving anything, as etcd: a member whose data differs from
        // its peers' does not start.
        node.check_initial_hash_kv().await.map_err(|e| anyhow::anyhow!(e))?;
    }
    if !config.corrupt_check_time.is_zero() {
        tokio::spawn(node.clone().monitor_kv_hash(config.corrupt_check_time));
    }
    if let Some(every) = config.compact_hash_check_time {
        tokio::spawn(node.clone().monitor_compact_hash(every));
    }

    let ctx = Context::new(
        node.clone(),
        ServiceConfig {
            server: ServerConfig {
                max_request_bytes: config.max_request_bytes as usize,
                max_txn_ops: config.max_txn_ops as usize,
                tokens: std::sync::Arc::new(tokens),
                bcrypt_cost: config.bcrypt_cost,
                etcd_version: config.report_etcd_version.clone(),
                quota_backend_bytes: hub_etcdserver::quota::quota_bytes(config.quota_backend_bytes),
                db_size_quota: match config.quota_backend_bytes {
                    0 => hub_etcdserver::quota::DEFAULT_QUOTA_BYTES,
                    flag => flag,
                },
            },
            watch_progress_notify_interval: config.watch_progress_notify_interval,
            client_cert_auth: config.client_cert_auth,
            max_concurrent_streams: config.max_concurrent_streams,
            metrics_extensive: config.metrics_extensive,
            warning_unary_request_duration: config.warning_unary_request_duration,
            feature_gates: config.feature_gates.all(),
        },
    );
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let mut servers = Vec::new();
    for (spec, listener) in peer_listeners {
        let peer = PeerServer::new(PeerService::new(node.clone(), ctx.server().clone())).max_decoding_message_size(usize::MAX);
        // Another cluster's members on the same peer URLs are refused, as etcd's rafthttp refuses them.
        let peer = InterceptedService::new(peer, CheckCluster::new(node.cluster_id()));
        let incoming = hub_tls::net::incoming(listener, &spec, tls.as_deref());
        let mut shutdown = shutdown_rx.clone();
        servers.push(tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(peer)
                .serve_with_incoming_shutdown(incoming, async move {
                    let _ = shutdown.changed().await;
                })
                .await
        }));
    }

    // etcd serves clients once it has published itself through the cluster's
    // leader; a member the cluster removed never will, and stops.
    tokio::select! {
        () = node.clone().publish(config.name.clone(), config.advertise_client_urls.clone()) => {}
        () = node.removed() => {
            tracing::warn!("{MUST_REMOVE_DATA_DIR}");
            let _ = shutdown_tx.send(true);
            node.shutdown().await;
            return Ok(());
        }
    }
    let max_streams = Some(config.max_concurrent_streams);
    // As etcd: with --listen-client-http-urls, the client URLs serve gRPC
    // only and those URLs the HTTP endpoints only.
    let split_http = !client_http_listeners.is_empty();
    let client = client_listeners.into_iter().map(|l| (l, if split_http { "grpc" } else { "grpc+http" }));
    let client_http = client_http_listeners.into_iter().map(|l| (l, "http"));
    for ((spec, listener), traffic) in client.chain(client_http) {
        if spec.plain {
            tracing::info!(traffic, address = %spec.address, "serving client traffic insecurely; this is strongly discouraged!");
        }
        if spec.secure {
            tracing::info!(traffic, address = %spec.address, "serving client traffic securely");
        }
        let incoming = hub_tls::net::incoming(listener, &spec, client_tls.as_deref());
        let routes = match traffic {
            "grpc" => ctx.routes(),
            "http" => hub_grpc_api::http::http_only(ctx.clone()),
            _ => ctx.client_routes(),
        };
        let mut shutdown = shutdown_rx.clone();
        servers.push(tokio::spawn(async move {
            tonic::transport::Server::builder()
                .accept_http1(traffic != "grpc")
                .max_concurrent_streams(max_streams)
                .add_routes(routes)
                .serve_with_incoming_shutdown(incoming, async move {
                    let _ = shutdown.changed().await;
                })
                .await
        }));
    }
    for (spec, listener) in metrics_listeners {
        tracing::info!(address = %spec.address, "serving metrics");
        let incoming = hub_tls::net::incoming(listener, &spec, client_tls.as_deref());
        let routes = hub_grpc_api::http::metrics_only(ctx.clone());
        let mut shutdown = shutdown_rx.clone();
        servers.push(tokio::spawn(async move {
            tonic::transport::Server::builder()
                .accept_http1(true)
                .add_routes(routes)
                .serve_with_incoming_shutdown(incoming, async move {
                    let _ = shutdown.changed().await;
                })
                .await
        }));
    }
    tokio::spawn(hub_etcdserver::lease::run_expiry(ctx.server().clone()));
    tokio::spawn(hub_grpc_api::metrics::run(ctx.clone()));
    tracing::info!("ready to serve client requests");

    tokio::select! {
        signal = wait_for_signal() => {
            tracing::info!(signal, "received signal; shutting down");
            node.transfer_leadership_on_shutdown().await;
        }
        _ = node.removed() => {
            tracing::warn!("{MUST_REMOVE_DATA_DIR}");
            // Let the answer to the request that removed this member go out first.
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    let closing = |what: &str| {
        tracing::info!(
            name = %config.name,
            data_dir = %config.data_dir.display(),
            advertise_peer_urls = %config.initial_advertise_peer_urls.join(","),
            advertise_client_urls = %config.advertise_client_urls.join(","),
            "{what}"
        )
    };
    closing("closing etcd server");
    let _ = shutdown_tx.send(true);
    node.shutdown().await;
    for s in servers {
        // Streams (watches, keep-alives) may hold a server open; do not wait forever.
        let _ = tokio::time::timeout(Duration::from_secs(2), s).await;
    }
    closing("closed etcd server");
    Ok(())
}

/// What etcd logs as a removed member stops.
const MUST_REMOVE_DATA_DIR: &str = "data-dir used by this member must be removed";

/// Waits for SIGTERM or SIGINT; the signal's name as Go prints it.
async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => "terminated",
                _ = int.recv() => "interrupt",
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
            "interrupt"
        }
    }
}

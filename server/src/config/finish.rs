//! From parsed flags to a [`Config`]: etcd's checks on the result and its
//! derived defaults.

use super::*;

pub(super) const DEFAULT_NAME: &str = "default";
pub(super) const DEFAULT_INITIAL_CLUSTER: &str = "default=http://localhost:2380";
/// etcd's limit on `--election-timeout`, in milliseconds.
pub(super) const MAX_ELECTION_MS: u64 = 50_000;
/// What etcd does with a watch progress interval of 0, and its floor.
pub(super) const DEFAULT_WATCH_PROGRESS_NOTIFY_INTERVAL: Duration = Duration::from_secs(600);
pub(super) const MIN_WATCH_PROGRESS_NOTIFY_INTERVAL: Duration = Duration::from_millis(100);
/// etcd's `DefaultWarningUnaryRequestDuration`, for neither flag set (0s).
pub(super) const DEFAULT_WARNING_UNARY_REQUEST_DURATION: Duration = Duration::from_millis(300);

/// Builds the [`Config`] from parsed flags, with etcd's checks (in etcd
/// 3.6's order) and derived defaults.
pub(super) fn finish(
    cmd: &Command,
    f: Flags,
    m: &ArgMatches,
    config_file: Option<PathBuf>,
    mut warnings: Vec<String>,
) -> Result<Config, ConfigError> {
    // Flags the user gave (on the command line, in the environment or in
    // the config file: all of them reach clap as command-line arguments).
    let explicit: Vec<&str> = long_names(cmd)
        .filter(|(arg, _)| m.value_source(arg.get_id().as_str()) == Some(ValueSource::CommandLine))
        .map(|(_, long)| long)
        .collect();
    let is_set = |flag: &str| explicit.contains(&flag);
    let mut unhonoured = Vec::new();
    for &long in &explicit {
        if IGNORED.contains(&long) {
            warnings.push(format!("flag \"-{long}\" is no longer supported - ignoring."));
        } else if !HONOURED.contains(&long) {
            unhonoured.push(long.to_string());
        }
        if let Some((_, message)) = DEPRECATED.iter().find(|(flag, _)| *flag == long) {
            warnings.push(message.to_string());
        }
    }
    let invalid = ConfigError::Invalid;

    let feature_gates = feature_gates_of(&f, &is_set).map_err(invalid)?;
    // Gates hub lacks, as --feature-gates set them (an --experimental-* flag
    // that sets a gate is reported under its own name above).
    unhonoured.extend(
        feature_gates_of(&f, |_| false)
            .map_err(invalid)?
            .changed()
            .filter(|gate| !HONOURED_GATES.contains(gate))
            .map(|gate| format!("feature-gates={gate}")),
    );
    // etcd's Validate from here on.
    if let Some((old, new)) = RENAMED.iter().find(|(old, new)| is_set(old) && is_set(new)) {
        return Err(invalid(format!(
            "cannot set --{old} and --{new} at the same time, please use --{new} only"
        )));
    }
    let log_outputs = check_logging(&f, &is_set).map_err(invalid)?;

    // URLs: an empty value keeps etcd's default.
    let listen_peer_urls = or_default(&f.listen_peer_urls, "http://localhost:2380");
    let listen_client_urls = or_default(&f.listen_client_urls, "http://localhost:2379");
    let listen_client_http_urls = f.v36.listen_client_http_urls.0.clone();
    let initial_advertise_peer_urls = or_default(&f.initial_advertise_peer_urls, "http://localhost:2380");
    let advertise_client_urls = or_default(&f.advertise_client_urls, "http://localhost:2379");
    for list in [&listen_peer_urls, &listen_client_urls, &listen_client_http_urls, &f.listen_metrics_urls.0] {
        for url in list {
            check_bind_url(url).map_err(invalid)?;
        }
    }
    for (flag, list) in [
        ("initial-advertise-peer-urls", &initial_advertise_peer_urls),
        ("advertise-client-urls", &advertise_client_urls),
    ] {
        if let Some(err) = list.iter().find_map(|u| check_host_url(u).err()) {
            return Err(invalid(format!(
                "--{flag} {} must be \"host:port\" ({err})",
                hub_go::quote(list.join(",").as_bytes())
            )));
        }
    }

    // Bootstrapping: discovery replaces the default initial cluster.
    let discovery_endpoints = f.v36.discovery_endpoints.clone().unwrap_or_default().0;
    let discovery = !f.discovery.is_empty()
        || !f.discovery_srv.is_empty()
        || !f.discovery_srv_name.is_empty()
        || !discovery_endpoints.is_empty();
    let mut initial_cluster = f.initial_cluster.clone();
    if discovery && !is_set("initial-cluster") {
        initial_cluster.clear();
    }
    check_bootstrap(&f, &initial_cluster, &discovery_endpoints).map_err(invalid)?;
    let discovery_flag = [
        ("discovery", !f.discovery.is_empty()),
        ("discovery-endpoints", !discovery_endpoints.is_empty()),
        ("discovery-srv", !f.discovery_srv.is_empty() || !f.discovery_srv_name.is_empty()),
    ]
    .into_iter()
    .find_map(|(flag, set)| (set && initial_cluster.is_empty()).then_some(flag));
    let v36 = &f.v36;
    let discovery_v3 = (discovery_flag == Some("discovery-endpoints")).then(|| crate::discovery::Settings {
        token: v36.discovery_token.clone(),
        endpoints: discovery_endpoints.clone(),
        dial_timeout: v36.discovery_dial_timeout,
        request_timeout: v36.discovery_request_timeout,
        keepalive_time: v36.discovery_keepalive_time,
        keepalive_timeout: v36.discovery_keepalive_timeout,
        insecure_transport: v36.discovery_insecure_transport,
        insecure_skip_tls_verify: v36.discovery_insecure_skip_tls_verify,
        cert: v36.discovery_cert.clone(),
        key: v36.discovery_key.clone(),
        cacert: v36.discovery_cacert.clone(),
        user: v36.discovery_user.clone(),
        password: v36.discovery_password.clone(),
    });

    // Raft timing.
    let (tick, election) = (f.heartbeat_interval, f.election_timeout);
    if tick == 0 {
        return Err(invalid(format!("--heartbeat-interval must be >0 (set to {tick}ms)")));
    }
    if election == 0 {
        return Err(invalid(format!("--election-timeout must be >0 (set to {election}ms)")));
    }
    if tick.saturating_mul(5) > election {
        return Err(invalid(format!(
            "--election-timeout[{election}ms] should be at least as 5 times as --heartbeat-interval[{tick}ms]"
        )));
    }
    if election > MAX_ELECTION_MS {
        return Err(invalid(format!(
            "--election-timeout[{election}ms] is too long, and should be set less than {MAX_ELECTION_MS}ms"
        )));
    }

    // On the command line, listening on chosen client URLs requires saying
    // which to advertise (unless this member may act as a v2 proxy).
    let may_be_proxy = f.proxy != "off" || (!f.discovery.is_empty() && f.discovery_fallback == "proxy");
    if config_file.is_none() && is_set("listen-client-urls") && !is_set("advertise-client-urls") && !may_be_proxy {
        return Err(invalid(
            "--advertise-client-urls is required when --listen-client-urls is set explicitly".to_string(),
        ));
    }

    // Compaction (etcd 3.4 takes an empty mode as periodic; 3.6 refuses it).
    match f.auto_compaction_mode.as_str() {
        "" | "periodic" | "revision" => {}
        mode => return Err(invalid(format!("unknown auto-compaction-mode {}", hub_go::quote(mode.as_bytes())))),
    }
    let retention = &f.auto_compaction_retention;
    if !retention.parse::<i64>().is_ok_and(|hours| hours >= 0) {
        go_duration(retention).map_err(|e| invalid(format!("error parsing CompactionRetention: {e}")))?;
    }

    let tracing = renamed(
        is_set("experimental-enable-distributed-tracing"),
        v36.experimental_enable_distributed_tracing,
        v36.enable_distributed_tracing,
    );
    let sampling_rate = renamed(
        is_set("experimental-distributed-tracing-sampling-rate"),
        v36.experimental_distributed_tracing_sampling_rate,
        v36.distributed_tracing_sampling_rate,
    );
    if tracing {
        check_sampling_rate(sampling_rate)
            .map_err(|e| invalid(format!("distributed tracing configurition is not valid: ({e})")))?;
    }
    if feature_gates.enabled(LEASE_CHECKPOINT) && !feature_gates.enabled(LEASE_CHECKPOINT_PERSIST) {
        warnings.push(
            "Detected that checkpointing is enabled without persistence. Consider enabling feature gate LeaseCheckpointPersist"
                .to_string(),
        );
    }
    if feature_gates.enabled(LEASE_CHECKPOINT_PERSIST) && !feature_gates.enabled(LEASE_CHECKPOINT) {
        return Err(invalid(
            "enabling feature gate LeaseCheckpointPersist requires enabling feature gate LeaseCheckpoint".to_string(),
        ));
    }
    for (flag, time) in [
        ("experimental-compact-hash-check-time", v36.experimental_compact_hash_check_time),
        ("compact-hash-check-time", v36.compact_hash_check_time),
    ] {
        if time.is_zero() {
            return Err(invalid(format!("--{flag} must be >0 (set to 0s)")));
        }
    }
    let (tls_min_version, tls_max_version) =
        tls_versions(&v36.tls_min_version, &v36.tls_max_version, !f.cipher_suites.is_empty()).map_err(invalid)?;
    // etcd's parseWarningUnaryRequestDuration: set means not 0s.
    let warning_unary_request_duration =
        match (v36.warning_unary_request_duration, v36.experimental_warning_unary_request_duration) {
            (Duration::ZERO, Duration::ZERO) => DEFAULT_WARNING_UNARY_REQUEST_DURATION,
            (Duration::ZERO, experimental) => {
                warnings.push(
                    "--experimental-warning-unary-request-duration is deprecated, and will be decommissioned in v3.7. \
                     Use --warning-unary-request-duration instead."
                        .to_string(),
                );
                experimental
            }
            (_, Duration::ZERO) => v36.warning_unary_request_duration,
            _ => {
                return Err(invalid(
                    "both --experimental-warning-unary-request-duration and --warning-unary-request-duration flags are set. \
                     Use only --warning-unary-request-duration"
                        .to_string(),
                ))
            }
        };
    // Checked by etcd when it binds its listeners.
    if let Some(url) = listen_client_http_urls.iter().find(|u| listen_client_urls.iter().any(|c| same_address(c, u))) {
        return Err(invalid(format!(
            "cannot bind both --listen-client-urls and --listen-client-http-urls on the same url {url}"
        )));
    }

    // What etcd's main derives: `--name n1` alone means a cluster of n1.
    if f.name != DEFAULT_NAME && initial_cluster == DEFAULT_INITIAL_CLUSTER {
        let name = if f.name.is_empty() { DEFAULT_NAME } else { f.name.as_str() };
        initial_cluster =
            initial_advertise_peer_urls.iter().map(|u| format!("{name}={u}")).collect::<Vec<_>>().join(",");
    }
    let initial_cluster = parse_initial_cluster(&initial_cluster)
        .map_err(|e| invalid(format!("error setting up initial cluster: {e}")))?;
    let data_dir = if f.data_dir.is_empty() { PathBuf::from(format!("{}.hub", f.name)) } else { PathBuf::from(f.data_dir) };
    hub_etcdserver::version::check_reportable(&f.report_etcd_version).map_err(invalid)?;
    let watch_interval = match renamed(
        is_set("experimental-watch-progress-notify-interval"),
        f.experimental_watch_progress_notify_interval,
        v36.watch_progress_notify_interval,
    ) {
        Duration::ZERO => DEFAULT_WATCH_PROGRESS_NOTIFY_INTERVAL,
        d => d.max(MIN_WATCH_PROGRESS_NOTIFY_INTERVAL),
    };
    let corrupt_check_time =
        renamed(is_set("experimental-corrupt-check-time"), f.experimental_corrupt_check_time, v36.corrupt_check_time);
    let peer_skip_client_san_verification = renamed(
        is_set("experimental-peer-skip-client-san-verification"),
        f.experimental_peer_skip_client_san_verification,
        v36.peer_skip_client_san_verification,
    );
    let path = |s: String| Some(PathBuf::from(s)).filter(|p| !p.as_os_str().is_empty());

    Ok(Config {
        name: f.name,
        data_dir,
        wal_dir: path(f.wal_dir),
        listen_client_urls,
        listen_client_http_urls,
        advertise_client_urls,
        listen_peer_urls,
        initial_advertise_peer_urls,
        initial_cluster,
        discovery: discovery_flag,
        // etcd's `PeerURLsMapAndToken`: member and cluster IDs come from the discovery token.
        initial_cluster_token: discovery_v3.as_ref().map_or(f.initial_cluster_token, |d| d.token.clone()),
        discovery_v3,
        initial_cluster_state: f.initial_cluster_state,
        max_request_bytes: f.max_request_bytes,
        max_txn_ops: f.max_txn_ops,
        quota_backend_bytes: f.quota_backend_bytes,
        initial_corrupt_check: feature_gates.enabled(INITIAL_CORRUPT_CHECK),
        compact_hash_check_time: feature_gates.enabled(COMPACT_HASH_CHECK).then(|| {
            renamed(
                is_set("experimental-compact-hash-check-time"),
                v36.experimental_compact_hash_check_time,
                v36.compact_hash_check_time,
            )
        }),
        feature_gates,
        corrupt_check_time,
        snapshot_count: f.snapshot_count,
        strict_reconfig_check: f.strict_reconfig_check,
        max_learners: usize::try_from(v36.max_learners).unwrap_or(0),
        force_new_cluster: f.force_new_cluster,
        bootstrap_defrag_threshold_bytes: renamed(
            is_set("experimental-bootstrap-defrag-threshold-megabytes"),
            v36.experimental_bootstrap_defrag_threshold_megabytes,
            v36.bootstrap_defrag_threshold_megabytes,
        )
        .saturating_mul(1024 * 1024),
        heartbeat_interval_ms: tick,
        election_timeout_ms: election,
        auto_compaction_mode: f.auto_compaction_mode,
        auto_compaction_retention: f.auto_compaction_retention,
        compaction_batch_limit: renamed(
            is_set("experimental-compaction-batch-limit"),
            f.experimental_compaction_batch_limit,
            v36.compaction_batch_limit,
        ),
        compaction_sleep_interval: renamed(
            is_set("experimental-compaction-sleep-interval"),
            v36.experimental_compaction_sleep_interval,
            v36.compaction_sleep_interval,
        ),
        log_level: if f.debug { "debug".to_string() } else { f.log_level },
        logger: f.logger,
        log_outputs,
        log_format: f.v36.log_format.clone(),
        enable_pprof: f.enable_pprof,
        auth_token: f.auth_token,
        bcrypt_cost: match u32::try_from(f.bcrypt_cost) {
            Ok(c @ 4..=31) => c,
            _ => {
                warnings.push(format!("use default bcrypt cost 10 instead of the invalid given cost {}", f.bcrypt_cost));
                10
            }
        },
        auth_token_ttl: Duration::from_secs(f.auth_token_ttl),
        listen_metrics_urls: f.listen_metrics_urls.0.clone(),
        metrics_extensive: f.metrics == "extensive",
        max_concurrent_streams: f.max_concurrent_streams,
        report_etcd_version: f.report_etcd_version,
        watch_progress_notify_interval: watch_interval,
        warning_unary_request_duration,
        warning_apply_duration: renamed(
            is_set("experimental-warning-apply-duration"),
            f.experimental_warning_apply_duration,
            v36.warning_apply_duration,
        ),
        cert_file: path(f.cert_file),
        key_file: path(f.key_file),
        trusted_ca_file: path(f.trusted_ca_file),
        client_cert_auth: f.client_cert_auth,
        auto_tls: f.auto_tls,
        peer_cert_file: path(f.peer_cert_file),
        peer_key_file: path(f.peer_key_file),
        peer_trusted_ca_file: path(f.peer_trusted_ca_file),
        peer_client_cert_auth: f.peer_client_cert_auth,
        peer_auto_tls: f.peer_auto_tls,
        client_crl_file: path(f.client_crl_file),
        client_cert_allowed_hostname: go_strings(&f.client_cert_allowed_hostname),
        peer_crl_file: path(f.peer_crl_file),
        peer_cert_allowed_cn: go_strings(&f.peer_cert_allowed_cn),
        peer_cert_allowed_hostname: go_strings(&f.peer_cert_allowed_hostname),
        client_cert_file: path(f.v36.client_cert_file.clone()),
        client_key_file: path(f.v36.client_key_file.clone()),
        peer_client_cert_file: path(f.v36.peer_client_cert_file.clone()),
        peer_client_key_file: path(f.v36.peer_client_key_file.clone()),
        peer_skip_client_san_verification,
        cipher_suites: go_strings(&f.cipher_suites),
        tls_min_version,
        tls_max_version,
        config_file,
        unhonoured,
        warnings,
    })
}

/// The value of a flag 3.6 renamed: the old spelling's when it is set.
fn renamed<T>(old_is_set: bool, old_value: T, new_value: T) -> T {
    if old_is_set {
        old_value
    } else {
        new_value
    }
}

/// `--feature-gates` (each occurrence in turn, as Go's flag package sets
/// it), then the `--experimental-*` booleans among `is_set` that set gates.
fn feature_gates_of(f: &Flags, is_set: impl Fn(&str) -> bool) -> Result<FeatureGates, String> {
    let mut gates = FeatureGates::default();
    for value in &f.v36.feature_gates {
        gates.set(value)?;
    }
    let values = [
        ("experimental-compact-hash-check-enabled", f.v36.experimental_compact_hash_check_enabled),
        ("experimental-enable-lease-checkpoint", f.experimental_enable_lease_checkpoint),
        ("experimental-enable-lease-checkpoint-persist", f.experimental_enable_lease_checkpoint_persist),
        ("experimental-initial-corrupt-check", f.experimental_initial_corrupt_check),
        ("experimental-stop-grpc-service-on-defrag", f.v36.experimental_stop_grpc_service_on_defrag),
        ("experimental-txn-mode-write-with-shared-buffer", f.v36.experimental_txn_mode_write_with_shared_buffer),
    ];
    let set: Vec<(&str, bool)> = values.into_iter().filter(|(flag, _)| is_set(flag)).collect();
    gates.add_experimental_flags(&set)?;
    Ok(gates)
}

/// etcd's checks of the ways to bootstrap: one of a static initial
/// cluster, v2 discovery, v3 discovery or DNS; v3 discovery complete.
fn check_bootstrap(f: &Flags, initial_cluster: &str, discovery_endpoints: &[String]) -> Result<(), String> {
    let ways = [!f.discovery.is_empty(), !initial_cluster.is_empty(), !f.discovery_srv.is_empty(), !discovery_endpoints.is_empty()];
    if ways.iter().filter(|&&w| w).count() > 1 {
        return Err("multiple discovery or bootstrap flags are set. Choose one of \"initial-cluster\", \"discovery\", \
                    \"discovery-endpoints\" or \"discovery-srv\""
            .to_string());
    }
    let v36 = &f.v36;
    let v3_discovery = !discovery_endpoints.is_empty()
        || [&v36.discovery_token, &v36.discovery_cert, &v36.discovery_key, &v36.discovery_cacert, &v36.discovery_user, &v36.discovery_password]
            .iter()
            .any(|s| !s.is_empty());
    if !f.discovery_proxy.is_empty() && v3_discovery {
        return Err("both v2 discovery settings (discovery, discovery-proxy) and v3 discovery settings (discovery-token, \
                    discovery-endpoints, discovery-cert, discovery-key, discovery-cacert, discovery-user, discovery-password) are set"
            .to_string());
    }
    if v36.discovery_token.is_empty() != discovery_endpoints.is_empty() {
        return Err("both --discovery-token and --discovery-endpoints must be set".to_string());
    }
    if discovery_endpoints.iter().any(|e| e.trim().is_empty()) {
        return Err("--discovery-endpoints must not contain empty endpoints".to_string());
    }
    Ok(())
}

/// etcd's `validateTracingConfig`.
fn check_sampling_rate(rate: i64) -> Result<(), String> {
    const MAX_SAMPLING_RATE_PER_MILLION: i64 = 1_000_000;
    if rate < 0 {
        return Err("tracing sampling rate must be positive".to_string());
    }
    if rate > MAX_SAMPLING_RATE_PER_MILLION {
        return Err(format!("tracing sampling rate must be less than {MAX_SAMPLING_RATE_PER_MILLION}"));
    }
    Ok(())
}

/// `--tls-min-version` and `--tls-max-version` as etcd reads them (an
/// empty value leaves the choice to Go: TLS 1.2 to 1.3).
pub(crate) fn tls_versions(min: &str, max: &str, cipher_suites: bool) -> Result<(TlsVersion, Option<TlsVersion>), String> {
    let parse = |v: &str| match v {
        "" => Ok(None),
        "TLS1.2" => Ok(Some(TlsVersion::Tls12)),
        "TLS1.3" => Ok(Some(TlsVersion::Tls13)),
        _ => Err(format!("unexpected TLS version {} (must be one of: TLS1.2, TLS1.3)", hub_go::quote(v.as_bytes()))),
    };
    let (min_version, max_version) = (parse(min)?, parse(max)?);
    if let (Some(lo), Some(hi)) = (min_version, max_version) {
        if lo > hi {
            return Err(format!("min version ({min}) is greater than max version ({max})"));
        }
    }
    // Go offers no way to choose TLS 1.3's suites.
    if min_version == Some(TlsVersion::Tls13) && cipher_suites {
        return Err("cipher suites cannot be configured when only TLS1.3 is enabled".to_string());
    }
    Ok((min_version.unwrap_or(TlsVersion::Tls12), max_version))
}

/// Whether two listen URLs name the same address (etcd compares their hosts
/// with ports, or their socket paths).
fn same_address(a: &str, b: &str) -> bool {
    let address = |u: &str| u.split_once("://").map(|(_, rest)| rest.to_string());
    address(a) == address(b)
}

pub(super) fn or_default(urls: &Urls, default: &str) -> Vec<String> {
    if urls.0.is_empty() {
        vec![default.to_string()]
    } else {
        urls.0.clone()
    }
}

/// etcd's `StringsValue`: a comma-separated list (empty when the value is).
fn go_strings(s: &str) -> Vec<String> {
    if s.is_empty() {
        Vec::new()
    } else {
        s.split(',').map(str::to_string).collect()
    }
}

pub(super) fn sorted_unique(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v.dedup();
    v
}

/// `a=http://h:1,b=http://h:2` → pairs, each URL checked.
pub(crate) fn parse_initial_cluster(s: &str) -> Result<Vec<(String, String)>, String> {
    s.split(',')
        .filter(|item| !item.is_empty())
        .map(|item| {
            let (name, url) = item.split_once('=').unwrap_or((item, ""));
            Ok((name.to_string(), check_url(url)?))
        })
        .collect()
}


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
pub(super) const LOG_LEVELS: &[&str] = &["debug", "info", "warn", "error", "dpanic", "panic", "fatal"];

/// Builds the [`Config`] from parsed flags, with etcd's checks and derived
/// defaults.
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
            warnings.push(format!(
                "flag \"-{long}\" is no longer supported - ignoring."
            ));
        } else if !HONOURED.contains(&long) {
            unhonoured.push(long.to_string());
        }
    }
    let invalid = ConfigError::Invalid;

    // Logging (etcd checks it first).
    if !matches!(f.logger.as_str(), "capnslog" | "zap") {
        return Err(invalid(format!("unknown logger option {:?}", f.logger)));
    }
    if !LOG_LEVELS.contains(&f.log_level.as_str()) {
        return Err(invalid(format!("unknown level {:?}", f.log_level)));
    }
    if !matches!(f.log_format.as_str(), "json" | "console") {
        return Err(invalid(format!(
            "unknown log format: {}, supported values json, console",
            f.log_format
        )));
    }
    let outputs = if is_set("log-output") && !is_set("log-outputs") {
        &f.log_output
    } else {
        &f.log_outputs
    };
    let log_outputs = sorted_unique(
        outputs
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
    );
    if f.logger == "capnslog" && log_outputs.len() != 1 {
        return Err(invalid(format!(
            "--logger=capnslog supports only 1 value in '--log-outputs', got {log_outputs:?}"
        )));
    }

    // URLs: an empty value keeps etcd's default.
    let listen_peer_urls = or_default(f.listen_peer_urls, "http://localhost:2380");
    let listen_client_urls = or_default(f.listen_client_urls, "http://localhost:2379");
    let initial_advertise_peer_urls =
        or_default(f.initial_advertise_peer_urls, "http://localhost:2380");
    let advertise_client_urls = or_default(f.advertise_client_urls, "http://localhost:2379");
    for list in [
        &listen_peer_urls,
        &listen_client_urls,
        &f.listen_metrics_urls.0,
    ] {
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
                "--{flag} {:?} must be \"host:port\" ({err})",
                list.join(",")
            )));
        }
    }

    // Bootstrapping: discovery replaces the default initial cluster.
    let discovery =
        !f.discovery.is_empty() || !f.discovery_srv.is_empty() || !f.discovery_srv_name.is_empty();
    let mut initial_cluster = f.initial_cluster.clone();
    if discovery && !is_set("initial-cluster") {
        initial_cluster.clear();
    }
    let bootstrap_flags = [&f.discovery, &initial_cluster, &f.discovery_srv];
    if bootstrap_flags.iter().filter(|s| !s.is_empty()).count() > 1 {
        return Err(invalid(
            "multiple discovery or bootstrap flags are set. Choose one of \"initial-cluster\", \"discovery\" or \"discovery-srv\""
                .to_string(),
        ));
    }

    // Raft timing.
    let (tick, election) = (f.heartbeat_interval, f.election_timeout);
    if tick == 0 {
        return Err(invalid(format!(
            "--heartbeat-interval must be >0 (set to {tick}ms)"
        )));
    }
    if election == 0 {
        return Err(invalid(format!(
            "--election-timeout must be >0 (set to {election}ms)"
        )));
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
    let may_be_proxy =
        f.proxy != "off" || (!f.discovery.is_empty() && f.discovery_fallback == "proxy");
    if config_file.is_none()
        && is_set("listen-client-urls")
        && !is_set("advertise-client-urls")
        && !may_be_proxy
    {
        return Err(invalid(
            "--advertise-client-urls is required when --listen-client-urls is set explicitly"
                .to_string(),
        ));
    }

    // Compaction.
    match f.auto_compaction_mode.as_str() {
        "" | "periodic" | "revision" => {}
        mode => return Err(invalid(format!("unknown auto-compaction-mode {mode:?}"))),
    }
    let retention = &f.auto_compaction_retention;
    if !retention.parse::<i64>().is_ok_and(|hours| hours >= 0) {
        go_duration(retention)
            .map_err(|e| invalid(format!("error parsing CompactionRetention: {e}")))?;
    }

    if f.experimental_enable_lease_checkpoint_persist && !f.experimental_enable_lease_checkpoint {
        return Err(invalid(
            "setting experimental-enable-lease-checkpoint-persist requires experimental-enable-lease-checkpoint".to_string(),
        ));
    }

    // What etcd's main derives: `--name n1` alone means a cluster of n1.
    if f.name != DEFAULT_NAME && initial_cluster == DEFAULT_INITIAL_CLUSTER {
        let name = if f.name.is_empty() {
            DEFAULT_NAME
        } else {
            f.name.as_str()
        };
        initial_cluster = initial_advertise_peer_urls
            .iter()
            .map(|u| format!("{name}={u}"))
            .collect::<Vec<_>>()
            .join(",");
    }
    let initial_cluster = parse_initial_cluster(&initial_cluster)
        .map_err(|e| invalid(format!("error setting up initial cluster: {e}")))?;
    let data_dir = if f.data_dir.is_empty() {
        PathBuf::from(format!("{}.hub", f.name))
    } else {
        PathBuf::from(f.data_dir)
    };
    check_report_etcd_version(&f.report_etcd_version).map_err(invalid)?;
    let watch_interval = match f.experimental_watch_progress_notify_interval {
        Duration::ZERO => DEFAULT_WATCH_PROGRESS_NOTIFY_INTERVAL,
        d => d.max(MIN_WATCH_PROGRESS_NOTIFY_INTERVAL),
    };
    let path = |s: String| Some(PathBuf::from(s)).filter(|p| !p.as_os_str().is_empty());

    Ok(Config {
        name: f.name,
        data_dir,
        wal_dir: path(f.wal_dir),
        listen_client_urls,
        advertise_client_urls,
        listen_peer_urls,
        initial_advertise_peer_urls,
        initial_cluster,
        initial_cluster_state: f.initial_cluster_state,
        initial_cluster_token: f.initial_cluster_token,
        max_request_bytes: f.max_request_bytes,
        max_txn_ops: f.max_txn_ops,
        quota_backend_bytes: f.quota_backend_bytes,
        experimental_initial_corrupt_check: f.experimental_initial_corrupt_check,
        experimental_corrupt_check_time: f.experimental_corrupt_check_time,
        snapshot_count: f.snapshot_count,
        heartbeat_interval_ms: tick,
        election_timeout_ms: election,
        auto_compaction_mode: f.auto_compaction_mode,
        auto_compaction_retention: f.auto_compaction_retention,
        log_level: if f.debug {
            "debug".to_string()
        } else {
            f.log_level
        },
        logger: f.logger,
        log_format: f.log_format,
        log_outputs,
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
        experimental_watch_progress_notify_interval: watch_interval,
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
        client_cert_allowed_hostname: Some(f.client_cert_allowed_hostname).filter(|s| !s.is_empty()),
        peer_crl_file: path(f.peer_crl_file),
        peer_cert_allowed_cn: Some(f.peer_cert_allowed_cn).filter(|s| !s.is_empty()),
        peer_cert_allowed_hostname: Some(f.peer_cert_allowed_hostname).filter(|s| !s.is_empty()),
        peer_skip_client_san_verification: f.experimental_peer_skip_client_san_verification,
        cipher_suites: f.cipher_suites.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect(),
        config_file,
        unhonoured,
        warnings,
    })
}

pub(super) fn or_default(urls: Urls, default: &str) -> Vec<String> {
    if urls.0.is_empty() {
        vec![default.to_string()]
    } else {
        urls.0
    }
}

pub(super) fn sorted_unique(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v.dedup();
    v
}

/// `a=http://h:1,b=http://h:2` → pairs, each URL checked.
pub(super) fn parse_initial_cluster(s: &str) -> Result<Vec<(String, String)>, String> {
    s.split(',')
        .filter(|item| !item.is_empty())
        .map(|item| {
            let (name, url) = item.split_once('=').unwrap_or((item, ""));
            Ok((name.to_string(), check_url(url)?))
        })
        .collect()
}

// ---- value parsers: Go's syntax, etcd's messages ----

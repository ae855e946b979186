//! etcd 3.6's flags, variables and config-file keys against etcd 3.6.16's
//! behaviour; the error texts are etcd 3.6.16's, as it printed them.

use super::tests::{err, is_flag, ok, parse_args, parse_env};
use super::*;

/// Every flag `etcd --help` of etcd 3.6.16 lists.
const ETCD36_HELP: &str = "advertise-client-urls auth-token auth-token-ttl auto-compaction-mode \
    auto-compaction-retention auto-tls backend-batch-interval backend-batch-limit backend-bbolt-freelist-type \
    bcrypt-cost bootstrap-defrag-threshold-megabytes cert-file cipher-suites client-cert-allowed-hostname \
    client-cert-auth client-cert-file client-crl-file client-key-file compact-hash-check-time \
    compaction-batch-limit compaction-sleep-interval corrupt-check-time cors data-dir discovery \
    discovery-cacert discovery-cert discovery-dial-timeout discovery-endpoints discovery-fallback \
    discovery-insecure-skip-tls-verify discovery-insecure-transport discovery-keepalive-time \
    discovery-keepalive-timeout discovery-key discovery-password discovery-proxy discovery-request-timeout \
    discovery-srv discovery-srv-name discovery-token discovery-user distributed-tracing-address \
    distributed-tracing-instance-id distributed-tracing-sampling-rate distributed-tracing-service-name \
    downgrade-check-time election-timeout enable-distributed-tracing enable-grpc-gateway enable-log-rotation \
    enable-pprof experimental-bootstrap-defrag-threshold-megabytes experimental-compact-hash-check-enabled \
    experimental-compact-hash-check-time experimental-compaction-batch-limit \
    experimental-compaction-sleep-interval experimental-corrupt-check-time \
    experimental-distributed-tracing-address experimental-distributed-tracing-instance-id \
    experimental-distributed-tracing-sampling-rate experimental-distributed-tracing-service-name \
    experimental-downgrade-check-time experimental-enable-distributed-tracing \
    experimental-enable-lease-checkpoint experimental-enable-lease-checkpoint-persist \
    experimental-initial-corrupt-check experimental-memory-mlock \
    experimental-peer-skip-client-san-verification experimental-snapshot-catchup-entries \
    experimental-stop-grpc-service-on-defrag experimental-txn-mode-write-with-shared-buffer \
    experimental-warning-apply-duration experimental-warning-unary-request-duration \
    experimental-watch-progress-notify-interval feature-gates force-new-cluster grpc-keepalive-interval \
    grpc-keepalive-min-time grpc-keepalive-timeout heartbeat-interval host-whitelist \
    initial-advertise-peer-urls initial-cluster initial-cluster-state initial-cluster-token \
    initial-election-tick-advance key-file listen-client-http-urls listen-client-urls listen-metrics-urls \
    listen-peer-urls log-format log-level log-outputs log-rotation-config-json logger max-concurrent-streams \
    max-learners max-request-bytes max-snapshots max-txn-ops max-wals memory-mlock metrics name peer-auto-tls \
    peer-cert-allowed-cn peer-cert-allowed-hostname peer-cert-file peer-client-cert-auth peer-client-cert-file \
    peer-client-key-file peer-crl-file peer-key-file peer-skip-client-san-verification peer-trusted-ca-file \
    pre-vote quota-backend-bytes raft-read-timeout raft-write-timeout self-signed-cert-validity \
    snapshot-catchup-entries snapshot-count socket-reuse-address socket-reuse-port strict-reconfig-check \
    tls-max-version tls-min-version trusted-ca-file unsafe-no-fsync v2-deprecation wal-dir \
    warning-apply-duration warning-unary-request-duration watch-progress-notify-interval config-file version";

#[test]
fn every_etcd36_flag_exists() {
    let cmd = command();
    for name in ETCD36_HELP.split_whitespace() {
        assert!(is_flag(&cmd, name), "{name}");
    }
    for (old, new) in RENAMED {
        assert!(is_flag(&cmd, old) && is_flag(&cmd, new), "{old} {new}");
    }
    for (flag, _) in DEPRECATED.iter().chain(EXPERIMENTAL_FLAG_GATES) {
        assert!(is_flag(&cmd, flag), "{flag}");
    }
    // Each takes a value of its kind, on the command line and from ETCD_*.
    let c = ok(&[
        "--memory-mlock",
        "--socket-reuse-port=true",
        "--raft-read-timeout=1s",
        "--max-learners=2",
        "--self-signed-cert-validity=3",
        "--snapshot-catchup-entries=10",
        "--discovery-dial-timeout=1m",
        "--distributed-tracing-sampling-rate=5",
        "--bootstrap-defrag-threshold-megabytes=0x10",
    ]);
    let mut unhonoured = c.unhonoured.clone();
    unhonoured.sort();
    assert_eq!(
        unhonoured,
        [
            "discovery-dial-timeout",
            "distributed-tracing-sampling-rate",
            "memory-mlock",
            "raft-read-timeout",
            "self-signed-cert-validity",
            "snapshot-catchup-entries",
            "socket-reuse-port",
        ]
    );
    assert_eq!(c.max_learners, 2);
    let c = parse_env(&[], &[("ETCD_MAX_WALS", "3"), ("ETCD_LOG_FORMAT", "console")]).unwrap();
    assert_eq!(c.unhonoured, ["max-wals"], "hubd writes console lines");
    assert_eq!(c.log_format, "console");
    let c = parse_env(&[], &[("ETCD_MAX_LEARNERS", "-1"), ("ETCD_STRICT_RECONFIG_CHECK", "false")]).unwrap();
    assert!(c.max_learners == 0 && !c.strict_reconfig_check && !c.force_new_cluster);
    assert!(c.unhonoured.is_empty(), "{:?}", c.unhonoured);
}

#[test]
fn version_names_the_etcd_release_hub_follows() {
    let Err(ConfigError::Version(text)) = parse_args(&["--version"]) else { panic!("--version") };
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "etcd Version: 3.6.16");
    assert!(lines[1].starts_with("Git SHA: ") && lines[2].starts_with("Go Version: "), "{text}");
    assert!(lines[3].starts_with("Go OS/Arch: linux/") || !cfg!(target_os = "linux"), "{text}");
    assert_eq!(lines[4], format!("hub Version: {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn feature_gates_parse_as_etcd_parses_them() {
    let gates = |args: &[&str]| ok(args).feature_gates;
    let g = gates(&[]);
    assert!(g.enabled("TxnModeWriteWithSharedBuffer") && !g.enabled("CompactHashCheck"));
    assert_eq!(g.to_string(), "");
    // Go's flag package sets a Var flag once per occurrence: gates add up.
    let g = gates(&["--feature-gates=CompactHashCheck=true", "--feature-gates", "StopGRPCServiceOnDefrag=1, LeaseCheckpoint=T"]);
    assert_eq!(g.to_string(), "CompactHashCheck=true,LeaseCheckpoint=true,StopGRPCServiceOnDefrag=true");
    assert_eq!(gates(&["--feature-gates=AllAlpha=true,CompactHashCheck=false"]).to_string(),
        "AllAlpha=true,CompactHashCheck=false,InitialCorruptCheck=true,LeaseCheckpoint=true,\
         LeaseCheckpointPersist=true,SetMemberLocalAddr=true,StopGRPCServiceOnDefrag=true");
    assert!(!gates(&["--feature-gates=AllBeta=false"]).enabled("TxnModeWriteWithSharedBuffer"));
    let c = ok(&["--feature-gates=InitialCorruptCheck=true"]);
    assert!(c.initial_corrupt_check && c.unhonoured.is_empty(), "{:?}", c.unhonoured);
    assert!(ok(&["--experimental-initial-corrupt-check"]).initial_corrupt_check);
    let c = ok(&["--feature-gates=CompactHashCheck=true,InitialCorruptCheck=true", "--compact-hash-check-time=3s"]);
    assert!(c.unhonoured.is_empty(), "{:?}", c.unhonoured);
    assert_eq!(c.compact_hash_check_time, Some(Duration::from_secs(3)));
    assert_eq!(ok(&["--experimental-compact-hash-check-enabled"]).compact_hash_check_time, Some(Duration::from_secs(60)));
    assert_eq!(ok(&["--compact-hash-check-time=3s"]).compact_hash_check_time, None, "only with the gate");
    assert!(ok(&["--feature-gates=LeaseCheckpoint=true"]).unhonoured == ["feature-gates=LeaseCheckpoint"]);
    let env = parse_env(&[], &[("ETCD_FEATURE_GATES", "LeaseCheckpoint=true")]).unwrap();
    assert!(env.feature_gates.enabled("LeaseCheckpoint"));
    assert_eq!(env.feature_gates.all().len(), 9);

    for (args, text) in [
        (&["--feature-gates=Foo=true"][..], "invalid value \"Foo=true\" for flag -feature-gates: unrecognized feature gate: Foo"),
        (&["--feature-gates=CompactHashCheck=x"], "invalid value \"CompactHashCheck=x\" for flag -feature-gates: invalid value of CompactHashCheck=x, err: strconv.ParseBool: parsing \"x\": invalid syntax"),
        (&["--feature-gates=CompactHashCheck"], "invalid value \"CompactHashCheck\" for flag -feature-gates: missing bool value for CompactHashCheck"),
        (&["--experimental-initial-corrupt-check=true", "--feature-gates=InitialCorruptCheck=true"],
            "cannot specify both flags: --experimental-initial-corrupt-check=true and --feature-gates=InitialCorruptCheck=true at the same time, please just use --feature-gates=InitialCorruptCheck=true"),
        // etcd finds a gate's name in the gates' text: LeaseCheckpointPersist names LeaseCheckpoint.
        (&["--experimental-enable-lease-checkpoint=true", "--feature-gates=LeaseCheckpointPersist=true"],
            "cannot specify both flags: --experimental-enable-lease-checkpoint=true and --feature-gates=LeaseCheckpoint=false at the same time, please just use --feature-gates=LeaseCheckpoint=false"),
        (&["--feature-gates=AllAlpha=true", "--experimental-compact-hash-check-enabled"],
            "cannot specify both flags: --experimental-compact-hash-check-enabled=true and --feature-gates=CompactHashCheck=true at the same time, please just use --feature-gates=CompactHashCheck=true"),
        (&["--experimental-enable-lease-checkpoint-persist"], "enabling feature gate LeaseCheckpointPersist requires enabling feature gate LeaseCheckpoint"),
        (&["--feature-gates=LeaseCheckpointPersist=true,LeaseCheckpoint=false"], "enabling feature gate LeaseCheckpointPersist requires enabling feature gate LeaseCheckpoint"),
    ] {
        assert_eq!(err(args), text, "{args:?}");
    }
    assert_eq!(
        parse_env(&[], &[("ETCD_FEATURE_GATES", "Nope=true")]).unwrap_err().to_string(),
        "invalid value \"Nope=true\" for ETCD_FEATURE_GATES: unrecognized feature gate: Nope"
    );
    let c = ok(&["--experimental-enable-lease-checkpoint"]);
    assert!(c.warnings.iter().any(|w| w.starts_with("Detected that checkpointing is enabled without persistence")));
}

#[test]
fn renamed_experimental_flags_are_one_setting() {
    let interval = |args: &[&str]| ok(args).watch_progress_notify_interval;
    assert_eq!(interval(&["--watch-progress-notify-interval=2s"]), Duration::from_secs(2));
    assert_eq!(interval(&["--experimental-watch-progress-notify-interval=3s"]), Duration::from_secs(3));
    assert_eq!(interval(&[]), Duration::from_secs(600));
    assert_eq!(ok(&["--corrupt-check-time=5s"]).corrupt_check_time, Duration::from_secs(5));
    assert_eq!(ok(&["--experimental-bootstrap-defrag-threshold-megabytes=2"]).bootstrap_defrag_threshold_bytes, 2 << 20);
    assert_eq!(ok(&["--bootstrap-defrag-threshold-megabytes=3"]).bootstrap_defrag_threshold_bytes, 3 << 20);
    assert_eq!(ok(&["--experimental-corrupt-check-time=6s"]).corrupt_check_time, Duration::from_secs(6));
    assert!(ok(&["--peer-skip-client-san-verification"]).peer_skip_client_san_verification);
    assert!(ok(&["--experimental-peer-skip-client-san-verification"]).peer_skip_client_san_verification);
    let apply = |args: &[&str]| ok(args).warning_apply_duration;
    assert_eq!(apply(&[]), Duration::from_millis(100));
    assert_eq!(apply(&["--warning-apply-duration=1us"]), Duration::from_micros(1));
    assert_eq!(apply(&["--experimental-warning-apply-duration=2ms"]), Duration::from_millis(2));
    // Not renamed in etcd's table: 0s is unset, and the old name warns.
    let unary = |args: &[&str]| ok(args).warning_unary_request_duration;
    assert_eq!(unary(&[]), Duration::from_millis(300));
    assert_eq!(unary(&["--warning-unary-request-duration=0s"]), Duration::from_millis(300));
    assert_eq!(unary(&["--warning-unary-request-duration=1us"]), Duration::from_micros(1));
    let c = ok(&["--experimental-warning-unary-request-duration=2ms", "--warning-unary-request-duration=0s"]);
    assert_eq!(c.warning_unary_request_duration, Duration::from_millis(2));
    assert!(c.unhonoured.is_empty(), "{:?}", c.unhonoured);
    assert_eq!(
        c.warnings,
        ["--experimental-warning-unary-request-duration is deprecated, and will be decommissioned in v3.7. Use --warning-unary-request-duration instead."]
    );
    let compaction = |args: &[&str]| {
        let c = ok(args);
        assert!(c.unhonoured.is_empty(), "{:?}", c.unhonoured);
        (c.compaction_batch_limit, c.compaction_sleep_interval)
    };
    let slow = compaction(&["--compaction-batch-limit=1", "--compaction-sleep-interval=1h"]);
    assert_eq!(slow, (1, Duration::from_secs(3600)));
    assert_eq!(compaction(&["--experimental-compaction-batch-limit=2"]).0, 2);
    assert_eq!(compaction(&["--experimental-compaction-sleep-interval=5ms"]).1, Duration::from_millis(5));
    // Unset: etcd's defaults, which the store applies to 0.
    assert_eq!(compaction(&[]), (0, Duration::ZERO));
    for (old, new) in RENAMED {
        let value = if old.contains("address") || old.contains("instance") { "x" } else if old.ends_with("tracing") || old.contains("mlock") || old.contains("verification") { "true" } else if old.contains("time") || old.contains("interval") || old.contains("duration") { "1s" } else { "1" };
        assert_eq!(
            err(&[&format!("--{old}={value}"), &format!("--{new}={value}")]),
            format!("cannot set --{old} and --{new} at the same time, please use --{new} only")
        );
    }
    // etcd 3.6 warns about each deprecated flag set.
    let c = ok(&["--experimental-corrupt-check-time=1s", "--max-snapshots=2", "--v2-deprecation=write-only"]);
    for warning in [
        "--max-snapshots is deprecated in 3.6 and will be decommissioned in 3.8.",
        "--v2-deprecation is deprecated and scheduled for removal in v3.8. The default value is enforced, ignoring user input.",
        "--experimental-corrupt-check-time is deprecated in v3.6 and will be decommissioned in v3.7. Use '--corrupt-check-time' instead.",
    ] {
        assert!(c.warnings.iter().any(|w| w == warning), "{warning}: {:?}", c.warnings);
    }
    assert_eq!(c.warnings.len(), 3, "{:?}", c.warnings);
}

#[test]
fn etcd36_checks() {
    for (args, text) in [
        (&["--v2-deprecation=bad"][..], "invalid value \"bad\" for flag -v2-deprecation: invalid value \"bad\""),
        (&["--max-learners=x"], "invalid value \"x\" for flag -max-learners: parse error"),
        (&["--tls-min-version=TLS1.1"], "unexpected TLS version \"TLS1.1\" (must be one of: TLS1.2, TLS1.3)"),
        (&["--tls-max-version=TLS1.1"], "unexpected TLS version \"TLS1.1\" (must be one of: TLS1.2, TLS1.3)"),
        (&["--tls-min-version=TLS1.3", "--tls-max-version=TLS1.2"], "min version (TLS1.3) is greater than max version (TLS1.2)"),
        (&["--tls-min-version=TLS1.3", "--cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"], "cipher suites cannot be configured when only TLS1.3 is enabled"),
        (&["--logger=zap", "--log-format=xml"], "unknown log format: xml, supported values json, console"),
        (&["--logger=zap", "--log-outputs=default,stderr"], "multi logoutput for \"default\" is not supported yet"),
        (&["--logger=zap", "--enable-log-rotation"], "--log-outputs requires a single file path when --log-rotate-config-json is defined"),
        (&["--logger=zap", "--enable-log-rotation", "--log-outputs=/tmp/a.log,/tmp/b.log"], "--log-outputs requires a single file path when --log-rotate-config-json is defined"),
        (&["--logger=zap", "--enable-log-rotation", "--log-outputs=/tmp/a.log", "--log-rotation-config-json={\"maxsize\":100"], "improperly formatted log rotation config: unexpected end of JSON input"),
        (&["--logger=zap", "--enable-log-rotation", "--log-outputs=/tmp/a.log", "--log-rotation-config-json={\"maxsize\":\"x\"}"], "invalid log rotation config: json: cannot unmarshal string into Go struct field logRotationConfig.Logger.maxsize of type int"),
        (&["--logger=zap", "--enable-log-rotation", "--log-outputs=/tmp/a.log", "--log-rotation-config-json={\"compress\":1}"], "invalid log rotation config: json: cannot unmarshal number into Go struct field logRotationConfig.Logger.compress of type bool"),
        (&["--logger=zap", "--enable-log-rotation", "--log-outputs=/tmp/a.log", "--log-rotation-config-json=[1]"], "invalid log rotation config: json: cannot unmarshal array into Go value of type embed.logRotationConfig"),
        (&["--logger=zap", "--log-outputs=systemd/journal,stderr"], "running with systemd/journal but other '--log-outputs' values ([\"stderr\" \"systemd/journal\"]) are configured with 'default'; override 'default' value with something else"),
        (&["--logger=foo"], "unknown logger option \"foo\""),
        (&["--enable-distributed-tracing", "--distributed-tracing-sampling-rate=-1"], "distributed tracing configurition is not valid: (tracing sampling rate must be positive)"),
        (&["--experimental-enable-distributed-tracing", "--experimental-distributed-tracing-sampling-rate=2000000"], "distributed tracing configurition is not valid: (tracing sampling rate must be less than 1000000)"),
        (&["--discovery-token=x"], "both --discovery-token and --discovery-endpoints must be set"),
        (&["--discovery-endpoints=http://d:1"], "both --discovery-token and --discovery-endpoints must be set"),
        (&["--discovery-endpoints=a,,b", "--discovery-token=t"], "--discovery-endpoints must not contain empty endpoints"),
        (&["--discovery-proxy=x", "--discovery-token=t"], "both v2 discovery settings (discovery, discovery-proxy) and v3 discovery settings (discovery-token, discovery-endpoints, discovery-cert, discovery-key, discovery-cacert, discovery-user, discovery-password) are set"),
        (&["--discovery-endpoints=http://x:1", "--discovery-token=t", "--initial-cluster=a=http://x:2"], "multiple discovery or bootstrap flags are set. Choose one of \"initial-cluster\", \"discovery\", \"discovery-endpoints\" or \"discovery-srv\""),
        (&["--compact-hash-check-time=0"], "--compact-hash-check-time must be >0 (set to 0s)"),
        (&["--experimental-compact-hash-check-time=0"], "--experimental-compact-hash-check-time must be >0 (set to 0s)"),
        (&["--warning-unary-request-duration=1s", "--experimental-warning-unary-request-duration=2s"], "both --experimental-warning-unary-request-duration and --warning-unary-request-duration flags are set. Use only --warning-unary-request-duration"),
        (&["--listen-client-http-urls=http://example.com:1"], "expected IP in URL for binding (http://example.com:1)"),
        (&["--listen-client-urls=http://127.0.0.1:1", "--advertise-client-urls=http://127.0.0.1:1", "--listen-client-http-urls=http://127.0.0.1:1"],
            "cannot bind both --listen-client-urls and --listen-client-http-urls on the same url http://127.0.0.1:1"),
    ] {
        assert_eq!(err(args), text, "{args:?}");
    }
    // A v3 discovery replaces the default initial cluster, and its token
    // the cluster token (member IDs derive from it, as etcd's).
    let c = ok(&["--discovery-endpoints=http://d:1", "--discovery-token=t", "--discovery-user=u"]);
    assert!(c.initial_cluster.is_empty());
    assert_eq!(c.discovery, Some("discovery-endpoints"));
    assert_eq!(c.initial_cluster_token, "t");
    let d = c.discovery_v3.expect("v3 discovery settings");
    assert_eq!((d.endpoints, d.user, d.request_timeout), (vec!["http://d:1".to_string()], "u".to_string(), Duration::from_secs(5)));
    assert!(d.insecure_transport);
    assert_eq!(ok(&[]).discovery_v3, None);
    assert_eq!(ok(&["--discovery=https://d.example/x"]).discovery, Some("discovery"));
    assert_eq!(ok(&[]).discovery, None);
    assert!(ok(&["--logger=zap", "--enable-log-rotation", "--log-outputs=/tmp/a.log"]).unhonoured.contains(&"enable-log-rotation".into()));
    let c = ok(&["--tls-min-version=TLS1.3", "--tls-max-version=TLS1.3", "--listen-client-http-urls=http://127.0.0.1:2,http://127.0.0.1:3"]);
    assert_eq!((c.tls_min_version, c.tls_max_version), (TlsVersion::Tls13, Some(TlsVersion::Tls13)));
    assert_eq!(c.listen_client_http_urls, ["http://127.0.0.1:2", "http://127.0.0.1:3"]);
    assert!(c.unhonoured.is_empty(), "{:?}", c.unhonoured);
    let c = ok(&[]);
    assert_eq!((c.tls_min_version, c.tls_max_version, c.listen_client_http_urls.len()), (TlsVersion::Tls12, None, 0));
}

#[test]
fn config_file_takes_etcd36_keys() {
    let path = std::env::temp_dir().join(format!("hub-config36-test-{}.yaml", std::process::id()));
    std::fs::write(
        &path,
        "listen-client-http-urls: http://127.0.0.1:3380\n\
         feature-gates: InitialCorruptCheck=true,CompactHashCheck=true\n\
         corrupt-check-time: 3000000000\n\
         tls-min-version: TLS1.3\n\
         experimental-snapshot-catch-up-entries: 7\n\
         client-transport-security:\n  client-cert-file: cc.pem\n  allowed-cn: x\n  allowed-hostname: h.example\n\
         peer-transport-security:\n  allowed-cn: [a.example, b.example]\n  skip-client-san-verification: true\n\
         discovery-config:\n  token: t\n  client:\n    endpoints: [http://127.0.0.1:9]\n    dial-timeout: 1000000000\n    secure:\n      insecure-transport: false\n\
         socket-options:\n  reuse-port: true\n",
    )
    .unwrap();
    let c = parse_args(&["--config-file", path.to_str().unwrap()]);
    std::fs::remove_file(&path).unwrap();
    let c = c.unwrap();
    assert_eq!(c.listen_client_http_urls, ["http://127.0.0.1:3380"]);
    assert!(c.initial_corrupt_check && c.feature_gates.enabled("CompactHashCheck"));
    assert_eq!(c.corrupt_check_time, Duration::from_secs(3));
    assert_eq!(c.tls_min_version, TlsVersion::Tls13);
    assert_eq!(c.client_cert_allowed_hostname, ["h.example"]);
    assert_eq!(c.peer_cert_allowed_cn, ["a.example", "b.example"]);
    assert_eq!(c.client_cert_file, Some(PathBuf::from("cc.pem")));
    assert!(c.peer_skip_client_san_verification);
    assert!(c.initial_cluster.is_empty(), "v3 discovery from the file: {:?}", c.initial_cluster);
    let mut unhonoured = c.unhonoured.clone();
    unhonoured.sort();
    assert_eq!(
        unhonoured,
        [
            "discovery-dial-timeout",
            "discovery-endpoints",
            "discovery-insecure-transport",
            "discovery-token",
            "experimental-snapshot-catchup-entries",
            "socket-reuse-port",
        ]
    );
    assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
    assert!(c.warnings[0].contains("\"client-transport-security.allowed-cn\"") && c.warnings[0].contains("not honoured"));
    // etcd counts the file's misspelt key as the deprecated flag.
    assert!(c.warnings[1].starts_with("--experimental-snapshot-catchup-entries is deprecated"));
}

//! The configuration against etcd's behaviour, flag by flag.

use super::*;

pub(super) fn is_flag(cmd: &Command, name: &str) -> bool {
    long_names(cmd).any(|(_, l)| l == name)
}

const NO_ENV: [(&str, &str); 0] = [];

pub(super) fn parse_args(args: &[&str]) -> Result<Config, ConfigError> {
    parse_env(args, &NO_ENV)
}

pub(super) fn parse_env(args: &[&str], env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let argv = std::iter::once("hubd").chain(args.iter().copied());
    parse_from_env(argv, env.iter().copied())
}

#[test]
fn tls_flags_come_from_flags_and_etcd_variables() {
    let c = parse_env(
        &["--cipher-suites", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_AES_128_GCM_SHA256", "--client-crl-file", "r.crl"],
        &[("ETCD_PEER_CERT_ALLOWED_CN", "example.com"), ("ETCD_PEER_CRL_FILE", "p.crl")],
    )
    .unwrap();
    assert_eq!(c.cipher_suites, ["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "TLS_AES_128_GCM_SHA256"]);
    assert_eq!(c.client_crl_file, Some(PathBuf::from("r.crl")));
    assert_eq!(c.peer_crl_file, Some(PathBuf::from("p.crl")));
    assert_eq!(c.peer_cert_allowed_cn, ["example.com"]);
    assert!(c.peer_cert_allowed_hostname.is_empty() && c.client_cert_allowed_hostname.is_empty());
    assert!(c.unhonoured.is_empty(), "{:?}", c.unhonoured);
}

pub(super) fn ok(args: &[&str]) -> Config {
    match parse_args(args) {
        Ok(c) => c,
        Err(e) => panic!("{args:?}: {e}"),
    }
}

pub(super) fn err(args: &[&str]) -> String {
    match parse_args(args) {
        Ok(c) => panic!("{args:?} parsed: {c:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn defaults_match_etcd() {
    let c = ok(&[]);
    assert_eq!(c.name, "default");
    assert_eq!(c.data_dir, PathBuf::from("default.hub"));
    assert_eq!(c.wal_dir, None);
    assert_eq!(c.listen_client_urls, ["http://localhost:2379"]);
    assert_eq!(c.advertise_client_urls, ["http://localhost:2379"]);
    assert_eq!(c.listen_peer_urls, ["http://localhost:2380"]);
    assert_eq!(c.initial_advertise_peer_urls, ["http://localhost:2380"]);
    assert_eq!(
        c.initial_cluster,
        [("default".to_string(), "http://localhost:2380".to_string())]
    );
    assert_eq!(c.initial_cluster_state, "new");
    assert_eq!(c.initial_cluster_token, "etcd-cluster");
    assert_eq!(c.max_request_bytes, 1_572_864);
    assert_eq!(c.max_txn_ops, 128);
    assert_eq!(c.quota_backend_bytes, 0);
    assert_eq!(c.snapshot_count, 100_000);
    assert_eq!(c.heartbeat_interval_ms, 100);
    assert_eq!(c.election_timeout_ms, 1000);
    assert_eq!(c.auto_compaction_mode, "periodic");
    assert_eq!(c.auto_compaction_retention, "0");
    assert_eq!(c.log_level, "info");
    assert_eq!(c.logger, "capnslog");
    assert_eq!(c.log_outputs, ["default"]);
    assert_eq!(c.log_format, "json");
    assert!(!c.enable_pprof);
    assert_eq!(
        c.watch_progress_notify_interval,
        Duration::from_secs(600)
    );
    assert_eq!(
        (c.cert_file, c.key_file, c.trusted_ca_file),
        (None, None, None)
    );
    assert!(!c.client_cert_auth && !c.auto_tls && !c.peer_client_cert_auth && !c.peer_auto_tls);
    assert_eq!(c.peer_cert_file, None);
    assert!(c.unhonoured.is_empty() && c.warnings.is_empty());
    assert_eq!(c.config_file, None);
}

#[test]
fn name_sets_data_dir_and_initial_cluster() {
    let c = ok(&["--name", "n1"]);
    assert_eq!(c.data_dir, PathBuf::from("n1.hub"));
    assert_eq!(
        c.initial_cluster,
        [("n1".to_string(), "http://localhost:2380".to_string())]
    );
    let c = ok(&[
        "--name=n2",
        "--initial-advertise-peer-urls=http://127.0.0.1:12380",
        "--data-dir",
        "/tmp/d",
    ]);
    assert_eq!(c.data_dir, PathBuf::from("/tmp/d"));
    assert_eq!(
        c.initial_cluster,
        [("n2".to_string(), "http://127.0.0.1:12380".to_string())]
    );
    assert_eq!(ok(&["--data-dir="]).data_dir, PathBuf::from("default.hub"));
}

#[test]
fn value_forms() {
    for args in [
        &["--max-txn-ops", "7"][..],
        &["--max-txn-ops=7"],
        &["-max-txn-ops", "7"],
        &["-max-txn-ops=7"],
        &["--max-txn-ops=0x7"],
        &["--max-txn-ops", "1", "--max-txn-ops", "7"],
    ] {
        assert_eq!(ok(args).max_txn_ops, 7, "{args:?}");
    }
    assert_eq!(ok(&["--quota-backend-bytes", "-1"]).quota_backend_bytes, -1);
    assert_eq!(ok(&["--name", "-odd"]).name, "-odd");
    assert_eq!(
        ok(&["--initial-cluster-token", ""]).initial_cluster_token,
        ""
    );
    assert_eq!(
        ok(&["--experimental-watch-progress-notify-interval", "1h30m"])
            .watch_progress_notify_interval,
        Duration::from_secs(5400)
    );
    assert_eq!(
        ok(&["--experimental-watch-progress-notify-interval=1ms"])
            .watch_progress_notify_interval,
        Duration::from_millis(100)
    );
}

#[test]
fn bool_forms() {
    assert_eq!(ok(&[]).report_etcd_version, "3.6.16");
    assert_eq!(ok(&["--report-etcd-version=3.4.31"]).report_etcd_version, "3.4.31");
    assert_eq!(ok(&["--report-etcd-version=3.6.0"]).report_etcd_version, "3.6.0");
    for bad in ["3.4.32", "3.4.22", "3.5.0", "3.6.17", "3.4.031", "x"] {
        assert!(err(&["--report-etcd-version", bad]).contains("must be a release from 3.6.0 to 3.6.16"), "{bad}");
    }
    assert!(ok(&["--enable-pprof"]).enable_pprof);
    assert!(ok(&["--enable-pprof=true"]).enable_pprof);
    assert!(ok(&["-enable-pprof=1"]).enable_pprof);
    assert!(!ok(&["--enable-pprof=false"]).enable_pprof);
    assert!(!ok(&["--enable-pprof", "--enable-pprof=F"]).enable_pprof);
    assert!(ok(&["--client-cert-auth", "--name", "x"]).client_cert_auth);
    assert_eq!(ok(&["--debug"]).log_level, "debug");
    assert_eq!(
        ok(&["--debug=false", "--log-level", "warn"]).log_level,
        "warn"
    );
    assert_eq!(ok(&["--log-format", "console"]).log_format, "console");
    assert_eq!(
        err(&["--log-format", "xml"]),
        "unknown log format: xml, supported values json, console"
    );
    // As in Go, a boolean never takes the next argument.
    assert_eq!(err(&["--auto-tls", "false"]), "'false' is not a valid flag");
    assert_eq!(
        err(&["--enable-pprof=maybe"]),
        "invalid boolean value \"maybe\" for -enable-pprof: parse error"
    );
    assert!(ok(&["--initial-election-tick-advance=false"])
        .unhonoured
        .contains(&"initial-election-tick-advance".into()));
}

#[test]
fn environment() {
    let c = parse_env(
        &["--name", "n1"],
        &[
            ("ETCD_MAX_TXN_OPS", "9"),
            ("ETCD_ENABLE_PPROF", "true"),
            ("ETCD_DATA_DIR", ""),
            ("ETCD_BOGUS", "1"),
            ("PATH", "/bin"),
        ],
    )
    .unwrap();
    assert_eq!(c.max_txn_ops, 9);
    assert!(c.enable_pprof);
    assert_eq!(c.data_dir, PathBuf::from("n1.hub"));
    assert_eq!(c.unhonoured, ["enable-pprof"]);
    assert_eq!(
        c.warnings,
        ["unrecognized environment variable ETCD_BOGUS=1"]
    );

    let e = parse_env(&["--name", "x"], &[("ETCD_NAME", "y")]).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("conflicting environment variable \"ETCD_NAME\""),
        "{e}"
    );
    let e = parse_env(&[], &[("ETCD_INITIAL_CLUSTER_STATE", "bad")]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid value \"bad\" for ETCD_INITIAL_CLUSTER_STATE: invalid value"
    );
    let e = parse_env(&[], &[("ETCD_ENABLE_PPROF", "maybe")]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid value \"maybe\" for ETCD_ENABLE_PPROF: parse error"
    );
}

#[test]
fn initial_cluster_parsing() {
    let c = ok(&[
        "--name=a",
        "--initial-cluster",
        "a=http://10.0.0.1:2380,b=https://h:2380, c=http://[::1]:2380",
    ]);
    let pairs: Vec<(&str, &str)> = c
        .initial_cluster
        .iter()
        .map(|(n, u)| (n.as_str(), u.as_str()))
        .collect();
    assert_eq!(
        pairs,
        [
            ("a", "http://10.0.0.1:2380"),
            ("b", "https://h:2380"),
            (" c", "http://[::1]:2380")
        ]
    );
    assert_eq!(
        err(&["--initial-cluster=default=foo"]),
        "error setting up initial cluster: URL scheme must be http, https, unix, or unixs: foo"
    );
    assert!(ok(&["--discovery=https://d.example/x"])
        .initial_cluster
        .is_empty());
    assert!(
        err(&["--discovery=https://d:1", "--initial-cluster=a=http://h:1"])
            .starts_with("multiple discovery")
    );
}

#[test]
fn unhonoured_flags() {
    let c = parse_env(
        &[
            "--max-wals=3",
            "--name",
            "n",
            "--pre-vote",
            "--cert-file=c.pem",
            "-v",
            "--metrics",
            "extensive",
        ],
        &[("ETCD_CORS", "*"), ("ETCD_SNAPSHOT_COUNT", "5")],
    )
    .unwrap();
    let mut names = c.unhonoured.clone();
    names.sort();
    assert_eq!(names, ["cors", "max-wals", "metrics", "pre-vote"]);
    assert_eq!(c.cert_file, Some(PathBuf::from("c.pem")));
    assert_eq!(c.snapshot_count, 5);
    assert_eq!(
        c.warnings,
        ["flag \"-v\" is no longer supported - ignoring."]
    );
}

#[test]
fn etcd_validation() {
    assert_eq!(
        err(&["--initial-cluster-state=x"]),
        "invalid value \"x\" for flag -initial-cluster-state: invalid value"
    );
    assert_eq!(
        err(&["--listen-client-urls=foo"]),
        "invalid value \"foo\" for flag -listen-client-urls: URL scheme must be http, https, unix, or unixs: foo"
    );
    assert_eq!(
        err(&["--listen-peer-urls", "http://127.0.0.1:2380/x"]),
        "invalid value \"http://127.0.0.1:2380/x\" for flag -listen-peer-urls: URL must not contain a path: http://127.0.0.1:2380/x"
    );
    assert_eq!(
        err(&["--experimental-watch-progress-notify-interval=abc"]),
        "invalid value \"abc\" for flag -experimental-watch-progress-notify-interval: parse error"
    );
    assert_eq!(
        err(&["--heartbeat-interval=abc"]),
        "invalid value \"abc\" for flag -heartbeat-interval: parse error"
    );
    assert_eq!(err(&["--name"]), "flag needs an argument: -name");
    assert_eq!(err(&["extra"]), "'extra' is not a valid flag");
    assert_eq!(
        err(&["--listen-client-urls=http://127.0.0.1:2379"]),
        "--advertise-client-urls is required when --listen-client-urls is set explicitly"
    );
    assert_eq!(
        err(&[
            "--listen-client-urls=http://example.com:2379",
            "--advertise-client-urls=http://x:1"
        ]),
        "expected IP in URL for binding (http://example.com:2379)"
    );
    assert_eq!(
        err(&["--election-timeout=100"]),
        "--election-timeout[100ms] should be at least as 5 times as --heartbeat-interval[100ms]"
    );
    assert_eq!(
        err(&["--auto-compaction-mode=foo"]),
        "unknown auto-compaction-mode \"foo\""
    );
    assert!(err(&["--auto-compaction-retention=5x"])
        .starts_with("error parsing CompactionRetention"));
    assert_eq!(
        ok(&["--auto-compaction-retention=5m"]).auto_compaction_retention,
        "5m"
    );
    assert_eq!(
        err(&["--nosuch=1"]),
        "flag provided but not defined: -nosuch"
    );
    assert_eq!(
        err(&["-nme", "x"]),
        "flag provided but not defined: -nme (did you mean --name?)"
    );
    let c = ok(&[
        "--listen-client-urls=http://127.0.0.1:2379,unix://localhost:1",
        "--advertise-client-urls=HTTP://127.0.0.1:2379,http://127.0.0.1:2379",
    ]);
    assert_eq!(
        c.listen_client_urls,
        ["http://127.0.0.1:2379", "unix://localhost:1"]
    );
    assert_eq!(c.advertise_client_urls, ["http://127.0.0.1:2379"]);
    // A socket by path, as Kubernetes' integration tests start etcd.
    let c = ok(&["--listen-client-urls=unix:///tmp/hub.sock", "--advertise-client-urls=http://127.0.0.111:0"]);
    assert_eq!(c.listen_client_urls, ["unix:///tmp/hub.sock"]);
    assert!(err(&["--listen-client-urls=http:///tmp/hub.sock"]).contains("host:port"));
}

#[test]
fn help_and_version() {
    match parse_args(&["--help"]) {
        Err(ConfigError::Clap(e)) => assert_eq!(e.kind(), ErrorKind::DisplayHelp),
        other => panic!("{other:?}"),
    }
    assert!(matches!(parse_args(&["-help"]), Err(ConfigError::Clap(_))));
    match parse_args(&["--version"]) {
        Err(e @ ConfigError::Version(_)) => {
            assert_eq!(e.exit_code(), 0);
            assert!(e.to_string().starts_with("etcd Version: 3.6.16\n"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(ok(&["--version=false"]).name, "default");
}

#[test]
fn config_file() {
    let path =
        std::env::temp_dir().join(format!("hub-config-test-{}.yaml", std::process::id()));
    std::fs::write(
        &path,
        "name: f1\n\
         listen-client-urls: http://127.0.0.1:3379\n\
         max-txn-ops: 64\n\
         enable-pprof: true\n\
         experimental-watch-progress-notify-interval: 2000000000\n\
         log-outputs: [stderr]\n\
         peer-transport-security:\n  cert-file: p.pem\n  client-cert-auth: true\n\
         no-such-key: 1\n",
    )
    .unwrap();
    let file = path.to_str().unwrap();
    // Other flags and the environment are ignored.
    let c = parse_env(
        &["--config-file", file, "--name=ignored"],
        &[("ETCD_MAX_TXN_OPS", "1")],
    );
    let from_env = parse_env(&[], &[("ETCD_CONFIG_FILE", file)]);
    std::fs::remove_file(&path).unwrap();
    let c = c.unwrap();
    assert_eq!(c, from_env.unwrap());
    assert_eq!(c.name, "f1");
    assert_eq!(c.data_dir, PathBuf::from("f1.hub"));
    assert_eq!(c.listen_client_urls, ["http://127.0.0.1:3379"]);
    assert_eq!(c.advertise_client_urls, ["http://localhost:2379"]);
    assert_eq!(c.max_txn_ops, 64);
    assert_eq!(
        c.watch_progress_notify_interval,
        Duration::from_secs(2)
    );
    assert_eq!(c.log_outputs, ["stderr"]);
    assert_eq!(c.peer_cert_file, Some(PathBuf::from("p.pem")));
    assert!(c.peer_client_cert_auth);
    assert_eq!(c.unhonoured, ["enable-pprof"]);
    assert_eq!(c.config_file, Some(path.clone()));
    assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
    assert!(c.warnings[1].starts_with("--experimental-watch-progress-notify-interval is deprecated in v3.6"));
    assert!(matches!(
        parse_args(&["--config-file=/nonexistent/x.yaml"]),
        Err(ConfigError::ConfigFile { .. })
    ));
}

#[test]
fn go_syntax() {
    assert_eq!(go_u64("0x10"), Ok(16));
    assert_eq!(go_u64("010"), Ok(8));
    assert_eq!(go_u64("0b1_0"), Ok(2));
    assert_eq!(go_u64("1_0"), Err(PARSE_ERROR.into()));
    assert_eq!(go_u64("+1"), Err(PARSE_ERROR.into()));
    assert_eq!(
        go_u64("99999999999999999999"),
        Err("value out of range".into())
    );
    assert_eq!(go_i64("-0x10"), Ok(-16));
    assert_eq!(go_u32("4294967296"), Err("value out of range".into()));
    assert_eq!(go_duration("1h30m"), Ok(Duration::from_secs(5400)));
    assert_eq!(go_duration("1.5s"), Ok(Duration::from_millis(1500)));
    assert_eq!(go_duration("200ms"), Ok(Duration::from_millis(200)));
    assert_eq!(go_duration(".5us"), Ok(Duration::from_nanos(500)));
    assert_eq!(go_duration("5µs"), Ok(Duration::from_micros(5)));
    assert_eq!(go_duration("0"), Ok(Duration::ZERO));
    assert_eq!(go_duration("-1s"), Ok(Duration::ZERO));
    for bad in ["", "5", "1x", ".s", "1.2.3s", "s"] {
        assert!(go_duration(bad).is_err(), "{bad}");
    }
    assert_eq!(check_url(" http://h:1 "), Ok("http://h:1".into()));
    assert_eq!(check_url("http://h:1?x#y"), Ok("http://h:1?x#y".into()));
    assert!(check_url("http://h").unwrap_err().contains("host:port"));
    assert!(check_url("http://a:b:1").is_err());
    assert!(check_url("http://h:x")
        .unwrap_err()
        .contains("invalid port"));
    assert_eq!(flag_of_arg_display("--debug[=<DEBUG>]"), "debug");
}

#[test]
fn flag_tables_name_real_flags() {
    let cmd = command();
    for name in HONOURED.iter().chain(IGNORED) {
        assert!(is_flag(&cmd, name), "{name}");
    }
    // Every flag in etcd's --help exists.
    let help = "name data-dir wal-dir snapshot-count heartbeat-interval election-timeout \
        initial-election-tick-advance listen-peer-urls listen-client-urls max-snapshots max-wals \
        quota-backend-bytes backend-batch-interval backend-batch-limit max-txn-ops max-request-bytes \
        max-concurrent-streams grpc-keepalive-min-time grpc-keepalive-interval grpc-keepalive-timeout \
        initial-advertise-peer-urls initial-cluster initial-cluster-state initial-cluster-token \
        advertise-client-urls discovery discovery-fallback discovery-proxy discovery-srv discovery-srv-name \
        strict-reconfig-check pre-vote auto-compaction-retention auto-compaction-mode enable-v2 cert-file \
        key-file client-cert-auth client-crl-file client-cert-allowed-hostname trusted-ca-file auto-tls \
        peer-cert-file peer-key-file peer-client-cert-auth peer-trusted-ca-file peer-cert-allowed-cn \
        peer-cert-allowed-hostname peer-auto-tls peer-crl-file cipher-suites cors host-whitelist auth-token \
        bcrypt-cost auth-token-ttl enable-pprof metrics listen-metrics-urls logger log-outputs log-level \
        proxy proxy-failure-wait proxy-refresh-interval proxy-dial-timeout proxy-write-timeout \
        proxy-read-timeout experimental-initial-corrupt-check experimental-corrupt-check-time \
        experimental-enable-v2v3 experimental-backend-bbolt-freelist-type experimental-enable-lease-checkpoint \
        experimental-compaction-batch-limit experimental-peer-skip-client-san-verification \
        experimental-watch-progress-notify-interval experimental-warning-apply-duration force-new-cluster \
        debug log-package-levels config-file version unsafe-no-fsync enable-grpc-gateway log-output \
        experimental-enable-lease-checkpoint-persist";
    for name in help.split_whitespace() {
        assert!(is_flag(&cmd, name), "{name}");
    }
    cmd.debug_assert();
}

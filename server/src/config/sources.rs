//! Where values come from besides the command line: `ETCD_*` variables and
//! etcd's `--config-file` YAML, both turned into `--flag=value` arguments.

use super::*;

/// Prefix of the environment variable of each flag.
pub(super) const ENV_PREFIX: &str = "ETCD_";

/// The environment variable etcd reads for `flag`.
pub(super) fn env_name(flag: &str) -> String {
    format!("{ENV_PREFIX}{}", flag.to_uppercase().replace('-', "_"))
}

pub(super) fn env_value(env: &[(OsString, OsString)], name: &str) -> Option<String> {
    env.iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.to_string_lossy().into_owned())
}

/// The `--flag=value` arguments that the environment adds to the command
/// line, the flags they set, and etcd's checks: a variable may not shadow a
/// flag given on the command line, and unknown `ETCD_*` variables are noted.
pub(super) fn env_args(
    cmd: &Command,
    cmdline: &ArgMatches,
    env: &[(OsString, OsString)],
    warnings: &mut Vec<String>,
) -> Result<(Vec<OsString>, HashSet<String>), ConfigError> {
    let by_env: HashMap<String, (&Arg, &str)> = long_names(cmd)
        .map(|(a, l)| (env_name(l), (a, l)))
        .collect();
    let mut args = Vec::new();
    let mut from_env = HashSet::new();
    for (key, value) in env {
        let key_text = key.to_string_lossy();
        let Some(&(arg, long)) = by_env.get(key_text.as_ref()) else {
            if key_text.starts_with(ENV_PREFIX) {
                warnings.push(format!(
                    "unrecognized environment variable {key_text}={}",
                    value.to_string_lossy()
                ));
            }
            continue;
        };
        if matches!(long, "config-file" | "version") {
            continue; // read before the environment, as etcd does
        }
        if cmdline.value_source(arg.get_id().as_str()) == Some(ValueSource::CommandLine) {
            return Err(ConfigError::ShadowedEnv(key_text.into_owned()));
        }
        if value.is_empty() || !from_env.insert(long.to_string()) {
            continue;
        }
        let mut flag = OsString::from(format!("--{long}="));
        flag.push(value);
        args.push(flag);
    }
    Ok((args, from_env))
}

/// Reads etcd's YAML configuration file into `--key=value` arguments. Keys are
/// flag names, except the nested sections and the spelling of [`FILE_KEYS`];
/// lists may be YAML sequences; durations are integers of nanoseconds (Go's
/// encoding) or Go duration strings.
pub(super) fn config_file_args(
    cmd: &Command,
    path: &Path,
    warnings: &mut Vec<String>,
) -> Result<Vec<OsString>, ConfigError> {
    let file_error = |reason: String| ConfigError::ConfigFile {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| file_error(e.to_string()))?;
    let doc: serde_yaml::Value =
        serde_yaml::from_str(&text).map_err(|e| file_error(e.to_string()))?;
    let entries = match doc {
        serde_yaml::Value::Null => return Ok(Vec::new()),
        serde_yaml::Value::Mapping(m) => m,
        _ => {
            return Err(file_error(
                "not a mapping of flag names to values".to_string(),
            ))
        }
    };
    let args: HashMap<&str, &Arg> = long_names(cmd).map(|(a, l)| (l, a)).collect();
    let mut file = FileArgs { args: &args, path, out: Vec::new(), warnings };
    file.add_mapping("", &entries).map_err(file_error)?;
    Ok(file.out)
}

/// The config-file keys that are not flag names, with the flag each sets:
/// the nested sections of etcd 3.6's file (dotted here), and the spelling
/// its file keeps for one flag. An empty flag: a key etcd reads but hub has
/// no flag for, reported as not honoured.
pub(super) const FILE_KEYS: &[(&str, &str)] = &[
    ("client-transport-security.cert-file", "cert-file"),
    ("client-transport-security.key-file", "key-file"),
    ("client-transport-security.client-cert-file", "client-cert-file"),
    ("client-transport-security.client-key-file", "client-key-file"),
    ("client-transport-security.client-cert-auth", "client-cert-auth"),
    ("client-transport-security.trusted-ca-file", "trusted-ca-file"),
    ("client-transport-security.auto-tls", "auto-tls"),
    ("client-transport-security.allowed-cn", ""),
    ("client-transport-security.allowed-hostname", "client-cert-allowed-hostname"),
    ("client-transport-security.skip-client-san-verification", ""),
    ("peer-transport-security.cert-file", "peer-cert-file"),
    ("peer-transport-security.key-file", "peer-key-file"),
    ("peer-transport-security.client-cert-file", "peer-client-cert-file"),
    ("peer-transport-security.client-key-file", "peer-client-key-file"),
    ("peer-transport-security.client-cert-auth", "peer-client-cert-auth"),
    ("peer-transport-security.trusted-ca-file", "peer-trusted-ca-file"),
    ("peer-transport-security.auto-tls", "peer-auto-tls"),
    ("peer-transport-security.allowed-cn", "peer-cert-allowed-cn"),
    ("peer-transport-security.allowed-hostname", "peer-cert-allowed-hostname"),
    ("peer-transport-security.skip-client-san-verification", "peer-skip-client-san-verification"),
    ("discovery-config.token", "discovery-token"),
    ("discovery-config.client.endpoints", "discovery-endpoints"),
    ("discovery-config.client.dial-timeout", "discovery-dial-timeout"),
    ("discovery-config.client.request-timeout", "discovery-request-timeout"),
    ("discovery-config.client.keepalive-time", "discovery-keepalive-time"),
    ("discovery-config.client.keepalive-timeout", "discovery-keepalive-timeout"),
    ("discovery-config.client.secure.cert", "discovery-cert"),
    ("discovery-config.client.secure.key", "discovery-key"),
    ("discovery-config.client.secure.cacert", "discovery-cacert"),
    ("discovery-config.client.secure.insecure-transport", "discovery-insecure-transport"),
    ("discovery-config.client.secure.insecure-skip-tls-verify", "discovery-insecure-skip-tls-verify"),
    ("discovery-config.client.auth.username", "discovery-user"),
    ("discovery-config.client.auth.password", "discovery-password"),
    ("socket-options.reuse-port", "socket-reuse-port"),
    ("socket-options.reuse-address", "socket-reuse-address"),
    // The file's key has kept a misspelling since etcd 3.5 (etcd reads both).
    ("experimental-snapshot-catch-up-entries", "experimental-snapshot-catchup-entries"),
];

/// The walk over a config file's keys.
struct FileArgs<'a> {
    args: &'a HashMap<&'a str, &'a Arg>,
    path: &'a Path,
    out: Vec<OsString>,
    warnings: &'a mut Vec<String>,
}

impl FileArgs<'_> {
    /// The keys of `mapping`, at dotted `prefix` (`""` at the top).
    fn add_mapping(&mut self, prefix: &str, mapping: &serde_yaml::Mapping) -> Result<(), String> {
        for (key, value) in mapping {
            let key = yaml_scalar(key).ok_or("keys must be strings")?;
            let key = if prefix.is_empty() { key } else { format!("{prefix}.{key}") };
            let section = format!("{key}.");
            if FILE_KEYS.iter().any(|(k, _)| k.starts_with(&section)) {
                match value {
                    serde_yaml::Value::Mapping(inner) => self.add_mapping(&key, inner)?,
                    serde_yaml::Value::Null => {}
                    _ => return Err(format!("\"{key}\" must be a mapping")),
                }
                continue;
            }
            let flag = match FILE_KEYS.iter().find(|(k, _)| *k == key) {
                Some((_, flag)) => flag,
                None if prefix.is_empty() && !matches!(key.as_str(), "config-file" | "version") => key.as_str(),
                None => "",
            };
            let Some(arg) = self.args.get(flag) else {
                let path = self.path.display();
                self.warnings.push(if FILE_KEYS.iter().any(|(k, _)| *k == key) {
                    format!("key \"{key}\" in {path} accepted for etcd compatibility but not honoured by hub")
                } else {
                    format!("unknown key \"{key}\" in {path} ignored")
                });
                continue;
            };
            let is_duration = arg.get_value_parser().type_id() == std::any::TypeId::of::<Duration>();
            if let Some(value) = yaml_flag_value(value, is_duration).map_err(|r| format!("\"{key}\": {r}"))? {
                self.out.push(OsString::from(format!("--{flag}={value}")));
            }
        }
        Ok(())
    }
}

/// A YAML value as the text of a flag value; `None` for null.
pub(super) fn yaml_flag_value(value: &serde_yaml::Value, is_duration: bool) -> Result<Option<String>, String> {
    use serde_yaml::Value;
    Ok(match value {
        Value::Null => None,
        Value::Number(n) if is_duration && (n.is_i64() || n.is_u64()) => Some(format!("{n}ns")),
        Value::Sequence(items) => {
            let items: Option<Vec<String>> = items.iter().map(yaml_scalar).collect();
            Some(items.ok_or("list items must be scalars")?.join(","))
        }
        other => Some(yaml_scalar(other).ok_or("must be a scalar or a list")?),
    })
}

pub(super) fn yaml_scalar(value: &serde_yaml::Value) -> Option<String> {
    match value {
        serde_yaml::Value::String(s) => Some(s.clone()),
        serde_yaml::Value::Number(n) => Some(n.to_string()),
        serde_yaml::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

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
/// flag names, except that TLS settings sit under `client-transport-security`
/// and `peer-transport-security`; lists may be YAML sequences; durations are
/// integers of nanoseconds (Go's encoding) or Go duration strings.
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
    let mut out = Vec::new();
    let mut add = |key: String,
                   value: &serde_yaml::Value,
                   warnings: &mut Vec<String>|
     -> Result<(), ConfigError> {
        let Some(arg) = args
            .get(key.as_str())
            .filter(|_| !matches!(key.as_str(), "config-file" | "version"))
        else {
            warnings.push(format!(
                "unknown key \"{key}\" in {} ignored",
                path.display()
            ));
            return Ok(());
        };
        let is_duration = arg.get_value_parser().type_id() == std::any::TypeId::of::<Duration>();
        if let Some(value) = yaml_flag_value(value, is_duration)
            .map_err(|r| file_error(format!("\"{key}\": {r}")))?
        {
            out.push(OsString::from(format!("--{key}={value}")));
        }
        Ok(())
    };
    for (key, value) in &entries {
        let key = yaml_scalar(key).ok_or_else(|| file_error("keys must be strings".to_string()))?;
        let prefix = match key.as_str() {
            "client-transport-security" => "",
            "peer-transport-security" => "peer-",
            _ => {
                add(key, value, warnings)?;
                continue;
            }
        };
        let serde_yaml::Value::Mapping(tls) = value else {
            if !value.is_null() {
                return Err(file_error(format!("\"{key}\" must be a mapping")));
            }
            continue;
        };
        for (tls_key, tls_value) in tls {
            let tls_key = yaml_scalar(tls_key).unwrap_or_default();
            if TLS_KEYS.contains(&tls_key.as_str()) {
                add(format!("{prefix}{tls_key}"), tls_value, warnings)?;
            } else {
                warnings.push(format!(
                    "unknown key \"{key}.{tls_key}\" in {} ignored",
                    path.display()
                ));
            }
        }
    }
    Ok(out)
}

/// The keys of etcd's `*-transport-security` YAML sections.
pub(super) const TLS_KEYS: &[&str] = &[
    "cert-file",
    "key-file",
    "client-cert-auth",
    "trusted-ca-file",
    "auto-tls",
];

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

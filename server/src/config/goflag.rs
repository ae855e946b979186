//! Go's `flag` syntax on top of clap: `-flag` and `--flag value` rewritten,
//! clap's complaints worded as Go's flag package words them.



use super::*;

/// True for flags that take their value as the next argument.
pub(super) fn takes_separate_value(arg: &Arg) -> bool {
    arg.get_long().is_some() && !arg.is_require_equals_set()
}

/// Rewrites Go `flag` syntax into what clap parses: `-flag` becomes `--flag`
/// (so `-x` is the unknown flag `x`, not clap's short `x`), `-h`/`-help`
/// become `--help`, and a non-boolean flag and its separate value become
/// `--flag=value` (so values may start with `-`, as in Go). Like Go,
/// rewriting stops at the first operand or at `--`.
pub(super) fn normalize_args(cmd: &Command, args: &[OsString]) -> Result<Vec<OsString>, ConfigError> {
    let known: HashMap<&str, bool> = long_names(cmd)
        .map(|(a, l)| (l, takes_separate_value(a)))
        .collect();
    let mut out = Vec::with_capacity(args.len());
    out.push(
        args.first()
            .cloned()
            .unwrap_or_else(|| OsString::from("hubd")),
    );
    let mut rest = args.iter().skip(1);
    while let Some(arg) = rest.next() {
        let Some(text) = arg.to_str() else {
            out.push(arg.clone());
            continue;
        };
        let body = match text.strip_prefix("--").or_else(|| text.strip_prefix('-')) {
            Some(body) if !body.is_empty() && !body.starts_with('-') => body,
            _ => {
                // An operand, "-", "--" or "---x": Go stops parsing flags here.
                out.push(arg.clone());
                out.extend(rest.cloned());
                break;
            }
        };
        let (name, value) = match body.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (body, None),
        };
        if name == "h" || name == "help" {
            out.push(OsString::from("--help"));
            continue;
        }
        match known.get(name) {
            Some(true) if value.is_none() => {
                let next = rest
                    .next()
                    .ok_or_else(|| ConfigError::MissingValue(name.to_string()))?;
                let mut joined = OsString::from(format!("--{name}="));
                joined.push(next);
                out.push(joined);
            }
            _ => out.push(OsString::from(format!("--{body}"))),
        }
    }
    Ok(out)
}

/// Where the values of one clap run came from, to word errors as etcd does.
pub(super) enum Origin<'a> {
    CommandLine,
    /// The command line plus variables; the set holds the flags set from the environment.
    Env(&'a HashSet<String>),
    File(&'a Path),
}

pub(super) fn run_clap(
    cmd: &Command,
    argv: Vec<OsString>,
    origin: &Origin,
) -> Result<(Flags, ArgMatches), ConfigError> {
    let matches = cmd
        .clone()
        .try_get_matches_from(argv)
        .map_err(|e| clap_error(e, origin))?;
    let flags = Flags::from_arg_matches(&matches)?;
    Ok((flags, matches))
}

/// Turns clap's complaint about a value into etcd's wording.
pub(super) fn clap_error(e: clap::Error, origin: &Origin) -> ConfigError {
    if e.kind() == ErrorKind::UnknownArgument {
        if let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg) {
            let suggestion = match e.get(ContextKind::SuggestedArg) {
                Some(ContextValue::String(s)) => format!(" (did you mean {s}?)"),
                _ => String::new(),
            };
            return ConfigError::UnknownFlag(format!("{}{suggestion}", flag_of_arg_display(arg)));
        }
    }
    if !matches!(
        e.kind(),
        ErrorKind::ValueValidation | ErrorKind::InvalidValue
    ) {
        return ConfigError::Clap(e);
    }
    let (Some(ContextValue::String(arg)), Some(ContextValue::String(value))) = (
        e.get(ContextKind::InvalidArg),
        e.get(ContextKind::InvalidValue),
    ) else {
        return ConfigError::Clap(e);
    };
    let flag = flag_of_arg_display(arg);
    let value = value.clone();
    let mut reason = std::error::Error::source(&e)
        .map_or_else(|| "invalid value".to_string(), |s| s.to_string());
    let boolean = reason == GO_BOOL_ERROR_MARK;
    if boolean {
        reason = PARSE_ERROR.to_string();
    }
    match origin {
        Origin::Env(from_env) if from_env.contains(&flag) => ConfigError::InvalidValue {
            value,
            origin: env_name(&flag),
            reason,
        },
        Origin::File(path) => ConfigError::InvalidValue {
            value,
            origin: format!("\"{flag}\" in {}", path.display()),
            reason,
        },
        _ if boolean => ConfigError::InvalidBool {
            value,
            flag,
            reason,
        },
        _ => ConfigError::InvalidValue {
            value,
            origin: format!("flag -{flag}"),
            reason,
        },
    }
}

/// `--name <NAME>` or `--debug[=<DEBUG>]` → `name` / `debug`.
pub(super) fn flag_of_arg_display(display: &str) -> String {
    display
        .trim_start_matches('-')
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .collect()
}

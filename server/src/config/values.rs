//! Flag values in Go's syntax with etcd's messages: booleans, numbers,
//! durations, URLs.



use super::*;

/// A comma-separated URL list, checked as etcd checks it.
#[derive(Debug, Clone, Default)]
pub(super) struct Urls(pub(super) Vec<String>);

/// Go's `flag` package reports every malformed number, boolean and duration so.
pub(super) const PARSE_ERROR: &str = "parse error";
/// [`go_bool`]'s error, so that [`clap_error`] can word it as Go does for booleans.
pub(super) const GO_BOOL_ERROR_MARK: &str = "parse error (boolean)";

pub(crate) fn go_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(GO_BOOL_ERROR_MARK.to_string()),
    }
}

/// Go's `strconv.ParseUint(s, 0, 64)`: decimal, `0x`/`0o`/`0b`/leading-0
/// octal, underscores only after a base prefix.
pub(super) fn go_u64(s: &str) -> Result<u64, String> {
    let (digits, radix) = if let Some(d) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        (d, 16)
    } else if let Some(d) = s.strip_prefix("0o").or_else(|| s.strip_prefix("0O")) {
        (d, 8)
    } else if let Some(d) = s.strip_prefix("0b").or_else(|| s.strip_prefix("0B")) {
        (d, 2)
    } else if s.len() > 1 && s.starts_with('0') {
        (&s[1..], 8)
    } else {
        (s, 10)
    };
    let digits = if radix == 10 {
        digits.to_string()
    } else {
        digits.replace('_', "")
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return Err(PARSE_ERROR.to_string());
    }
    u64::from_str_radix(&digits, radix).map_err(|_| "value out of range".to_string())
}

pub(super) fn go_u32(s: &str) -> Result<u32, String> {
    u32::try_from(go_u64(s)?).map_err(|_| "value out of range".to_string())
}

/// Go's `strconv.ParseInt(s, 0, 64)`.
pub(super) fn go_i64(s: &str) -> Result<i64, String> {
    let (negative, magnitude) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let n = i128::from(go_u64(magnitude)?);
    i64::try_from(if negative { -n } else { n }).map_err(|_| "value out of range".to_string())
}

/// A duration flag: Go's `time.ParseDuration` (`hub_go::duration`), with Go's
/// flag package's "parse error" for any refusal. Negative durations become
/// zero, which etcd treats alike.
pub(crate) fn go_duration(s: &str) -> Result<Duration, String> {
    let nanos = hub_go::duration::parse(s).map_err(|_| PARSE_ERROR.to_string())?;
    Ok(Duration::from_nanos(u64::try_from(nanos).unwrap_or(0)))
}

pub(super) fn urls(s: &str) -> Result<Urls, String> {
    if s.is_empty() {
        return Ok(Urls::default());
    }
    let list: Result<Vec<String>, String> = s.split(',').map(check_url).collect();
    Ok(Urls(sorted_unique(list?)))
}

pub(super) fn cors_urls(s: &str) -> Result<Urls, String> {
    if s == "*" {
        Ok(Urls(vec!["*".to_string()]))
    } else {
        urls(s)
    }
}

/// Checks one URL as etcd's `types.NewURLs` does: scheme http, https, unix or
/// unixs, a `host:port` address, no path. Returns it trimmed, scheme lower-cased.
/// A unix URL may also name a socket by its path (`unix:///run/etcd.sock`), as
/// from etcd 3.5 on: Kubernetes' integration tests start etcd that way.
pub(super) fn check_url(raw: &str) -> Result<String, String> {
    let s = raw.trim();
    let scheme_error = || format!("URL scheme must be http, https, unix, or unixs: {s}");
    let (scheme, rest) = s.split_once("://").ok_or_else(scheme_error)?;
    let scheme = scheme.to_ascii_lowercase();
    if !matches!(scheme.as_str(), "http" | "https" | "unix" | "unixs") {
        return Err(scheme_error());
    }
    if scheme.starts_with("unix") && rest.starts_with('/') && rest.len() > 1 {
        return Ok(format!("{scheme}://{rest}"));
    }
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (_, port) = split_host_port(host_port)
        .ok_or_else(|| format!("URL address does not have the form \"host:port\": {s}"))?;
    if !port.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!("parse {s:?}: invalid port \":{port}\" after host"));
    }
    let path = tail.split(['?', '#']).next().unwrap_or("");
    if !path.is_empty() {
        return Err(format!("URL must not contain a path: {s}"));
    }
    Ok(format!("{scheme}://{rest}"))
}

/// Go's `net.SplitHostPort`: `host:port` or `[v6]:port`; the port may be empty.
pub(super) fn split_host_port(s: &str) -> Option<(&str, &str)> {
    let (host, port) = match s.strip_prefix('[') {
        Some(inner) => {
            let (host, after) = inner.split_once(']')?;
            (host, after.strip_prefix(':')?)
        }
        None => {
            let (host, port) = s.rsplit_once(':')?;
            if host.contains([':', '[', ']']) {
                return None;
            }
            (host, port)
        }
    };
    if port.contains([':', '[', ']']) {
        return None;
    }
    Some((host, port))
}

/// etcd binds only to IP addresses and `localhost` (unix sockets aside).
pub(super) fn check_bind_url(url: &str) -> Result<(), String> {
    if url.starts_with("unix://") || url.starts_with("unixs://") {
        return Ok(());
    }
    let host = url_host(url).unwrap_or_default();
    if host == "localhost" || host.parse::<IpAddr>().is_ok() {
        Ok(())
    } else {
        Err(format!("expected IP in URL for binding ({url})"))
    }
}

/// Advertised URLs need a host.
pub(super) fn check_host_url(url: &str) -> Result<(), String> {
    match url_host(url) {
        Some(host) if !host.is_empty() => Ok(()),
        _ => Err(format!("unexpected empty host ({url})")),
    }
}

/// The host of a URL that passed [`check_url`].
pub(super) fn url_host(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    split_host_port(host_port).map(|(h, _)| h)
}

//! Go's text conventions that etcdctl's output and flags are made of.
//!
//! etcdctl is a Go program, so its output uses `strconv.Quote` (`%q`),
//! `time.Duration.String`, go-humanize's byte sizes, and its flags parse with
//! `strconv.ParseBool`, `strconv.ParseInt` and `time.ParseDuration`. Matching
//! etcdctl byte for byte means reproducing exactly those: here, and in `hub-go`
//! for what hubd shares (quoting, durations, byte sizes).

pub use hub_go::duration::format as duration;
/// `time.ParseDuration` of a flag that takes no negative duration.
pub use hub_go::duration::parse_unsigned as parse_duration;
pub use hub_go::humanize::bytes as humanize_bytes;
pub use hub_go::quote;

/// etcdctl's `--hex` rendering: every byte as `\xNN`.
pub fn hex_escaped(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("\\x{b:02x}")).collect()
}

/// Go's `%v` of a `[]byte`: `[1 2 255]`.
pub fn byte_list(bytes: &[u8]) -> String {
    let items: Vec<String> = bytes.iter().map(u8::to_string).collect();
    format!("[{}]", items.join(" "))
}

/// Go's `%q` of a `[]string`: `["a" "b"]`.
pub fn quote_list(items: &[String]) -> String {
    let items: Vec<String> = items.iter().map(|s| quote(s.as_bytes())).collect();
    format!("[{}]", items.join(" "))
}

/// Go's `*os.PathError` text, `<op> <path>: <errno text>`, e.g.
/// `open x.db: no such file or directory`.
pub fn path_error(op: &str, path: &str, e: &std::io::Error) -> String {
    format!("{op} {path}: {}", errno_text(e))
}

/// Go's text for an OS error: the C library's message in lower case, as
/// `syscall.Errno.Error()` has it, without Rust's ` (os error N)`.
pub fn errno_text(e: &std::io::Error) -> String {
    let text = e.to_string();
    let text = match (e.raw_os_error(), text.rfind(" (os error ")) {
        (Some(_), Some(i)) => &text[..i],
        _ => text.as_str(),
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// `strconv.ParseBool`.
pub fn parse_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!("strconv.ParseBool: parsing {}: invalid syntax", quote(s.as_bytes()))),
    }
}

/// `strconv.ParseInt(s, base, 64)` with Go's error text.
pub fn parse_int(s: &str, base: u32) -> Result<i64, String> {
    i64::from_str_radix(s, base).map_err(|e| {
        let why = match e.kind() {
            std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow => "value out of range",
            _ => "invalid syntax",
        };
        format!("strconv.ParseInt: parsing {}: {why}", quote(s.as_bytes()))
    })
}

/// `strconv.ParseUint(s, base, 64)` with Go's error text.
pub fn parse_uint(s: &str, base: u32) -> Result<u64, String> {
    if s.starts_with('+') || s.starts_with('-') {
        return Err(format!("strconv.ParseUint: parsing {}: invalid syntax", quote(s.as_bytes())));
    }
    u64::from_str_radix(s, base).map_err(|e| {
        let why = match e.kind() {
            std::num::IntErrorKind::PosOverflow => "value out of range",
            _ => "invalid syntax",
        };
        format!("strconv.ParseUint: parsing {}: {why}", quote(s.as_bytes()))
    })
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_errors_read_as_go_prints_them() {
        let e = std::io::Error::from_raw_os_error(2);
        assert_eq!(path_error("open", "x.db", &e), "open x.db: no such file or directory");
        assert_eq!(byte_list(&[1, 0, 255]), "[1 0 255]");
        assert_eq!(quote_list(&["a".to_string(), "b\"".to_string()]), r#"["a" "b\""]"#);
    }

    #[test]
    fn integers_fail_with_go_text() {
        assert_eq!(parse_int("zz", 16), Err(r#"strconv.ParseInt: parsing "zz": invalid syntax"#.to_string()));
        assert_eq!(parse_int("ff", 16), Ok(255));
        assert_eq!(parse_uint("-1", 16), Err(r#"strconv.ParseUint: parsing "-1": invalid syntax"#.to_string()));
    }
}

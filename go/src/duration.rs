//! Go's `time.Duration` as text: `time.ParseDuration` (etcd's duration flags,
//! etcdctl's) and `Duration.String` (etcdctl's output).

use std::time::Duration;

use crate::quote;

/// `time.ParseDuration` of a duration that cannot be negative (a timeout, a
/// TTL, a run's length), as a std `Duration`; a negative one is refused with
/// Go's invalid-duration text.
pub fn parse_unsigned(text: &str) -> Result<Duration, String> {
    match parse(text)? {
        nanos if nanos < 0 => Err(format!("time: invalid duration {}", quote(text.as_bytes()))),
        nanos => Ok(Duration::from_nanos(nanos as u64)),
    }
}

/// `time.ParseDuration`, step for step: signed nanoseconds, or Go's error text
/// (`time: invalid duration "x"`, `time: missing unit in duration "5"`,
/// `time: unknown unit "d" in duration "1d"`). A sequence of decimal numbers,
/// each with an optional fraction and a unit (`ns`, `us`, `µs`, `μs`, `ms`,
/// `s`, `m`, `h`), with an optional sign: `300ms`, `-1.5h`, `2h45m`, `0`.
pub fn parse(text: &str) -> Result<i64, String> {
    let invalid = || format!("time: invalid duration {}", quote(text.as_bytes()));
    let (negative, mut s) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    const TOO_BIG: u64 = 1 << 63;
    let mut total: u64 = 0;
    while !s.is_empty() {
        if !(s.as_bytes()[0] == b'.' || s.as_bytes()[0].is_ascii_digit()) {
            return Err(invalid());
        }
        // The integer part: digits, refused when they overflow.
        let int_len = s.bytes().take_while(u8::is_ascii_digit).count();
        let mut v: u64 = 0;
        for b in s[..int_len].bytes() {
            v = v
                .checked_mul(10)
                .and_then(|v| v.checked_add(u64::from(b - b'0')))
                .filter(|&v| v <= TOO_BIG)
                .ok_or_else(invalid)?;
        }
        s = &s[int_len..];
        // The fraction: digits past what fits are dropped, as Go does.
        let (mut f, mut scale, mut frac_len) = (0u64, 1f64, 0);
        if let Some(rest) = s.strip_prefix('.') {
            frac_len = rest.bytes().take_while(u8::is_ascii_digit).count();
            let mut overflow = false;
            for b in rest[..frac_len].bytes() {
                if overflow {
                    continue;
                }
                match f.checked_mul(10).and_then(|f| f.checked_add(u64::from(b - b'0'))).filter(|&f| f <= TOO_BIG) {
                    Some(next) => {
                        f = next;
                        scale *= 10.0;
                    }
                    None => overflow = true,
                }
            }
            s = &rest[frac_len..];
        }
        if int_len == 0 && frac_len == 0 {
            return Err(invalid());
        }
        let unit_len = s.find(|c: char| c == '.' || c.is_ascii_digit()).unwrap_or(s.len());
        let unit = &s[..unit_len];
        s = &s[unit_len..];
        let nanos: u64 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err(format!("time: missing unit in duration {}", quote(text.as_bytes()))),
            other => {
                return Err(format!(
                    "time: unknown unit {} in duration {}",
                    quote(other.as_bytes()),
                    quote(text.as_bytes())
                ))
            }
        };
        if v > TOO_BIG / nanos {
            return Err(invalid());
        }
        v *= nanos;
        if f > 0 {
            // Go computes the fraction in float64 (exact to the nanosecond
            // for fractions of an hour).
            v += (f as f64 * (nanos as f64 / scale)) as u64;
            if v > TOO_BIG {
                return Err(invalid());
            }
        }
        total = total.checked_add(v).filter(|&t| t <= TOO_BIG).ok_or_else(invalid)?;
    }
    if negative {
        return Ok((total as i64).wrapping_neg());
    }
    i64::try_from(total).map_err(|_| invalid())
}

/// `time.Duration.String()`: `1.930082ms`, `2s`, `1m30s`, `0s`.
pub fn format(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_string();
    }
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return format!("{}µs", decimal(nanos, 3));
    }
    if nanos < 1_000_000_000 {
        return format!("{}ms", decimal(nanos, 6));
    }
    let mut out = String::new();
    let secs_total = nanos / 1_000_000_000;
    let frac = nanos % 1_000_000_000;
    let hours = secs_total / 3600;
    let minutes = (secs_total % 3600) / 60;
    let secs = secs_total % 60;
    if hours > 0 {
        out.push_str(&format!("{hours}h"));
    }
    if hours > 0 || minutes > 0 {
        out.push_str(&format!("{minutes}m"));
    }
    out.push_str(&decimal(secs * 1_000_000_000 + frac, 9));
    out.push('s');
    out
}

/// `value / 10^digits` printed with trailing fractional zeros dropped.
fn decimal(value: u128, digits: u32) -> String {
    let unit = 10u128.pow(digits);
    let (int, frac) = (value / unit, value % unit);
    if frac == 0 {
        return int.to_string();
    }
    let frac = format!("{:0width$}", frac, width = digits as usize);
    format!("{int}.{}", frac.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_as_go_parses() {
        let ok = [
            ("0", 0),
            ("5s", 5_000_000_000),
            ("+5s", 5_000_000_000),
            ("-5s", -5_000_000_000),
            ("1.5s", 1_500_000_000),
            (".5us", 500),
            ("5µs", 5_000),
            ("1h30m", 5_400_000_000_000),
            ("1.000000001s", 1_000_000_001),
            ("1.0000000001s", 1_000_000_000),
            ("0.5h", 1_800_000_000_000),
            ("-9223372036854775808ns", i64::MIN),
            ("9223372036854775807ns", i64::MAX),
        ];
        for (text, nanos) in ok {
            assert_eq!(parse(text), Ok(nanos), "{text}");
        }
        let refused = [
            ("", "time: invalid duration \"\""),
            ("5", "time: missing unit in duration \"5\""),
            ("1d", "time: unknown unit \"d\" in duration \"1d\""),
            (".", "time: invalid duration \".\""),
            ("-", "time: invalid duration \"-\""),
            ("s", "time: invalid duration \"s\""),
            ("9223372036854775808ns", "time: invalid duration \"9223372036854775808ns\""),
        ];
        for (text, err) in refused {
            assert_eq!(parse(text), Err(err.to_string()), "{text}");
        }
    }

    #[test]
    fn durations_print_as_go_prints_them() {
        let cases = [
            (Duration::from_nanos(1_930_082), "1.930082ms"),
            (Duration::from_millis(2), "2ms"),
            (Duration::from_nanos(1_500), "1.5µs"),
            (Duration::from_nanos(999), "999ns"),
            (Duration::from_secs(5), "5s"),
            (Duration::from_millis(1500), "1.5s"),
            (Duration::from_secs(90), "1m30s"),
            (Duration::from_secs(3600), "1h0m0s"),
            (Duration::ZERO, "0s"),
        ];
        for (d, want) in cases {
            assert_eq!(format(d), want);
        }
    }
}

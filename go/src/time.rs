//! Go's `time.Time.Format` in the one layout etcd's log writes times in,
//! `2006-01-02T15:04:05.000000Z0700` (zap's `ts` key, and time fields such
//! as "request stats"' `start time`): local time, `Z` in UTC, else the
//! offset (`+0100`).

use std::time::Duration;

use chrono::{DateTime, FixedOffset, Local};

/// `t` in etcd's log layout.
pub fn format(t: DateTime<FixedOffset>) -> String {
    let zone = if t.offset().local_minus_utc() == 0 { "Z".to_string() } else { t.format("%z").to_string() };
    format!("{}{zone}", t.format("%Y-%m-%dT%H:%M:%S%.6f"))
}

/// The local time `ago` before now, in etcd's log layout.
pub fn local_before(ago: Duration) -> String {
    let now = Local::now().fixed_offset();
    format(chrono::Duration::from_std(ago).ok().and_then(|d| now.checked_sub_signed(d)).unwrap_or(now))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn etcds_layout() {
        let utc = FixedOffset::east_opt(0).unwrap();
        let t = utc.with_ymd_and_hms(2026, 12, 7, 1, 2, 3).unwrap() + chrono::Duration::microseconds(456_780);
        assert_eq!(format(t), "2026-12-07T01:02:03.456780Z");
        let cet = FixedOffset::east_opt(3600).unwrap();
        assert_eq!(format(t.with_timezone(&cet)), "2026-12-07T02:02:03.456780+0100");
        let nst = FixedOffset::west_opt(3 * 3600 + 1800).unwrap();
        assert_eq!(format(t.with_timezone(&nst)), "2026-12-06T21:32:03.456780-0330");
    }

    #[test]
    fn before_now() {
        let (a, b) = (local_before(Duration::from_secs(3600)), local_before(Duration::ZERO));
        assert_eq!(a.len(), b.len());
        assert!(a < b, "{a} {b}");
    }
}

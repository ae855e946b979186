//! What a load run measured, and the one line `hub-load` prints for it.
//!
//! Owns the latency histogram every client loop records into and the result line's
//! format, which `benches/compare.sh` parses (`key=value` fields, one run a line).
//! Knows nothing of etcd or the network: pure data, so `cargo test -p hub-benches`
//! checks it without servers.

use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;

/// Longest latency tracked exactly; slower samples are clamped to it (and still
/// counted) rather than dropped, so a stall shows up as a 60 s max, not as nothing.
const MAX_TRACKED_MICROS: u64 = 60_000_000;

/// Request latencies of one client loop (or, merged, of a whole run), in microseconds.
#[derive(Clone, Debug)]
pub struct LatencyHistogram {
    micros: Histogram<u64>,
}

impl LatencyHistogram {
    pub fn new() -> Self {
        // 3 significant digits: p99 of 1.234 ms is reported as 1.234 ms, not 1.2 ms.
        // The bounds are constants, so construction cannot fail at run time.
        let micros = Histogram::new_with_bounds(1, MAX_TRACKED_MICROS, 3).unwrap_or_else(|_| unreachable!("constant bounds are valid"));
        Self { micros }
    }

    pub fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX).max(1);
        self.micros.saturating_record(micros);
    }

    /// Adds another loop's samples. Both have the same bounds, so this cannot fail.
    pub fn merge(&mut self, other: &LatencyHistogram) {
        let _ = self.micros.add(&other.micros);
    }

    pub fn count(&self) -> u64 {
        self.micros.len()
    }

    /// The latency below which `quantile` (0.0..=1.0) of the samples fall; zero when empty.
    pub fn quantile(&self, quantile: f64) -> Duration {
        if self.micros.is_empty() {
            return Duration::ZERO;
        }
        Duration::from_micros(self.micros.value_at_quantile(quantile))
    }

    pub fn max(&self) -> Duration {
        if self.micros.is_empty() {
            return Duration::ZERO;
        }
        Duration::from_micros(self.micros.max())
    }
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

/// The outcome of one run: what was asked, how many operations completed, how fast.
#[derive(Clone, Debug)]
pub struct RunReport {
    pub workload: String,
    pub endpoints: usize,
    pub clients: usize,
    pub conns: usize,
    /// Completed operations (for `watch`: events delivered, summed over watchers).
    pub ops: u64,
    /// Requests that failed; they are not in the histogram.
    pub errors: u64,
    /// Wall time from the first request to the last completion.
    pub elapsed: Duration,
    pub latency: LatencyHistogram,
    /// Workload-specific counters, printed after the common fields (e.g. `cas_ok=…`).
    pub extra: Vec<(String, String)>,
}

impl RunReport {
    pub fn ops_per_sec(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs == 0.0 {
            return 0.0;
        }
        self.ops as f64 / secs
    }
}

fn millis(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

/// `hub-load workload=put endpoints=3 clients=16 conns=3 ops=… errors=0 elapsed=10.00s
/// ops_per_sec=… p50_ms=… p99_ms=… max_ms=…` followed by the extra fields.
impl fmt::Display for RunReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "hub-load workload={} endpoints={} clients={} conns={} ops={} errors={} elapsed={:.2}s ops_per_sec={:.1} p50_ms={} p99_ms={} max_ms={}",
            self.workload,
            self.endpoints,
            self.clients,
            self.conns,
            self.ops,
            self.errors,
            self.elapsed.as_secs_f64(),
            self.ops_per_sec(),
            millis(self.latency.quantile(0.50)),
            millis(self.latency.quantile(0.99)),
            millis(self.latency.max()),
        )?;
        for (key, value) in &self.extra {
            write!(f, " {key}={value}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn histogram_of(millis: impl IntoIterator<Item = u64>) -> LatencyHistogram {
        let mut h = LatencyHistogram::new();
        for ms in millis {
            h.record(Duration::from_millis(ms));
        }
        h
    }

    #[test]
    fn percentiles_of_one_to_a_hundred_ms() {
        let h = histogram_of(1..=100);
        assert_eq!(h.count(), 100);
        // 3 significant digits: values are exact to within 0.1%.
        let p50 = h.quantile(0.50).as_secs_f64() * 1000.0;
        let p99 = h.quantile(0.99).as_secs_f64() * 1000.0;
        assert!((p50 - 50.0).abs() <= 0.05, "p50 {p50}");
        assert!((p99 - 99.0).abs() <= 0.1, "p99 {p99}");
        assert!((h.max().as_secs_f64() * 1000.0 - 100.0).abs() <= 0.1);
    }

    #[test]
    fn merging_loops_equals_recording_in_one() {
        let mut merged = histogram_of(1..=50);
        merged.merge(&histogram_of(51..=100));
        let single = histogram_of(1..=100);
        assert_eq!(merged.count(), single.count());
        for q in [0.5, 0.9, 0.99, 1.0] {
            assert_eq!(merged.quantile(q), single.quantile(q), "quantile {q}");
        }
    }

    #[test]
    fn empty_histogram_reports_zero_and_stalls_are_clamped_not_lost() {
        let mut h = LatencyHistogram::new();
        assert_eq!(h.quantile(0.99), Duration::ZERO);
        assert_eq!(h.max(), Duration::ZERO);
        h.record(Duration::from_secs(3600));
        h.record(Duration::ZERO);
        assert_eq!(h.count(), 2);
        assert!(h.max() >= Duration::from_secs(59));
    }

    #[test]
    fn result_line_has_the_fields_compare_sh_parses() {
        let report = RunReport {
            workload: "txn-cas".into(),
            endpoints: 3,
            clients: 16,
            conns: 3,
            ops: 2500,
            errors: 1,
            elapsed: Duration::from_millis(2500),
            // Below 2.048 ms a 3-digit histogram is exact, so the text can be too.
            latency: histogram_of([1, 1, 2, 2]),
            extra: vec![("cas_ok".into(), "2400".into())],
        };
        let line = report.to_string();
        assert!(line.starts_with("hub-load workload=txn-cas endpoints=3 clients=16 conns=3 ops=2500 errors=1 elapsed=2.50s ops_per_sec=1000.0 "), "{line}");
        assert!(line.contains(" p50_ms=1.000 "), "{line}");
        assert!(line.contains(" p99_ms=2.000 "), "{line}");
        assert!(line.ends_with(" max_ms=2.000 cas_ok=2400"), "{line}");
    }

    #[test]
    fn zero_elapsed_gives_zero_rate_not_infinity() {
        let report = RunReport {
            workload: "put".into(),
            endpoints: 1,
            clients: 1,
            conns: 1,
            ops: 0,
            errors: 0,
            elapsed: Duration::ZERO,
            latency: LatencyHistogram::new(),
            extra: vec![],
        };
        assert_eq!(report.ops_per_sec(), 0.0);
    }
}

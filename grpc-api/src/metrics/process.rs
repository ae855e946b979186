//! The process's own families as etcd exports them: client_golang's process
//! collector (`process_*`, with its network counters and address-space
//! limit) and etcd's file-descriptor gauges (`os_fd_*`), read from `/proc`
//! when scraped.
//!
//! The prometheus crate's collector supplies the common `process_*` families;
//! it adds `process_threads`, which Go's does not export, and lacks the rest,
//! so this wraps it.

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::process_collector::ProcessCollector;
use prometheus::{Gauge, IntCounter, IntGauge};

/// Go's `process_virtual_memory_max_bytes` for "unlimited": the largest uint64.
const UNLIMITED: f64 = u64::MAX as f64;

pub(super) struct ProcessFamilies {
    common: ProcessCollector,
    virtual_memory_max: Gauge,
    network_receive: IntCounter,
    network_transmit: IntCounter,
    fd_used: IntGauge,
    fd_limit: IntGauge,
    descs: Vec<Desc>,
}

/// The prometheus crate's family that Go's collector does not have.
const NOT_IN_GO: &str = "process_threads";

impl ProcessFamilies {
    pub(super) fn new() -> prometheus::Result<Self> {
        let common = ProcessCollector::for_self();
        let virtual_memory_max =
            Gauge::new("process_virtual_memory_max_bytes", "Maximum amount of virtual memory available in bytes.")?;
        let network_receive =
            IntCounter::new("process_network_receive_bytes_total", "Number of bytes received by the process over the network.")?;
        let network_transmit =
            IntCounter::new("process_network_transmit_bytes_total", "Number of bytes sent by the process over the network.")?;
        let fd_used = IntGauge::new("os_fd_used", "The number of used file descriptors.")?;
        let fd_limit = IntGauge::new("os_fd_limit", "The file descriptor limit.")?;
        let mut descs: Vec<Desc> =
            common.desc().into_iter().filter(|d| d.fq_name != NOT_IN_GO).cloned().collect();
        for c in [&virtual_memory_max as &dyn Collector, &network_receive, &network_transmit, &fd_used, &fd_limit] {
            descs.extend(c.desc().into_iter().cloned());
        }
        Ok(ProcessFamilies { common, virtual_memory_max, network_receive, network_transmit, fd_used, fd_limit, descs })
    }

    fn refresh(&self) {
        if let Ok(limits) = std::fs::read_to_string("/proc/self/limits") {
            self.virtual_memory_max.set(soft_limit(&limits, "Max address space").unwrap_or(UNLIMITED));
            if let Some(fds) = soft_limit(&limits, "Max open files") {
                self.fd_limit.set(fds as i64);
            }
        }
        if let Ok(dev) = std::fs::read_to_string("/proc/self/net/dev") {
            let (rx, tx) = network_bytes(&dev);
            // The kernel's counters are totals: catch up to them.
            self.network_receive.inc_by(rx.saturating_sub(self.network_receive.get()));
            self.network_transmit.inc_by(tx.saturating_sub(self.network_transmit.get()));
        }
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            self.fd_used.set(dir.count() as i64);
        }
    }
}

impl Collector for ProcessFamilies {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.refresh();
        let mut families: Vec<MetricFamily> =
            self.common.collect().into_iter().filter(|f| f.name() != NOT_IN_GO).collect();
        for c in [&self.virtual_memory_max as &dyn Collector, &self.network_receive, &self.network_transmit, &self.fd_used, &self.fd_limit] {
            families.extend(c.collect());
        }
        families
    }
}

/// The soft limit on the `name` line of `/proc/<pid>/limits`; None when unlimited.
fn soft_limit(limits: &str, name: &str) -> Option<f64> {
    let line = limits.lines().find(|l| l.starts_with(name))?;
    line[name.len()..].split_whitespace().next()?.parse().ok()
}

/// Bytes received and sent over every interface (`/proc/<pid>/net/dev`), as
/// Go's procfs totals them.
fn network_bytes(dev: &str) -> (u64, u64) {
    dev.lines()
        .skip(2)
        .filter_map(|l| {
            let (_, counters) = l.split_once(':')?;
            let fields: Vec<u64> = counters.split_whitespace().filter_map(|f| f.parse().ok()).collect();
            Some((*fields.first()?, *fields.get(8)?))
        })
        .fold((0, 0), |(rx, tx), (r, t)| (rx + r, tx + t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_proc_files() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max open files            20000                20000                files     \n\
                      Max address space         unlimited            unlimited            bytes     \n";
        assert_eq!(soft_limit(limits, "Max open files"), Some(20000.0));
        assert_eq!(soft_limit(limits, "Max address space"), None);
        let dev = "Inter-|   Receive                                                |  Transmit\n \
                   face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
                   lo: 100 2 0 0 0 0 0 0 300 2 0 0 0 0 0 0\n  \
                   eth0: 1000 5 0 0 0 0 0 0 20 1 0 0 0 0 0 0\n";
        assert_eq!(network_bytes(dev), (1100, 320));
    }
}

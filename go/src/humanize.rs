//! go-humanize's `Bytes`, in which etcd logs sizes and etcdctl prints them.

/// go-humanize's `Bytes`: SI units, one decimal below 10 (`20 kB`, `1.5 MB`).
pub fn bytes(size: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    if size < 10 {
        return format!("{size} B");
    }
    let exp = ((size as f64).ln() / 1000f64.ln()).floor() as usize;
    let exp = exp.min(UNITS.len() - 1);
    let value = (size as f64 / 1000f64.powi(exp as i32) * 10.0 + 0.5).floor() / 10.0;
    if value < 10.0 {
        format!("{value:.1} {}", UNITS[exp])
    } else {
        format!("{value:.0} {}", UNITS[exp])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes_read_as_humanize() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(9), "9 B");
        assert_eq!(bytes(20480), "20 kB");
        assert_eq!(bytes(1500), "1.5 kB");
        assert_eq!(bytes(2_500_000), "2.5 MB");
        assert_eq!(bytes(999), "999 B");
    }
}

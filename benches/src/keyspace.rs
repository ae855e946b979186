//! The keys and values `hub-load` writes: a fixed key space under one prefix per
//! workload, keys padded to `--key-size`, values of `--value-size` bytes.
//!
//! Watch values carry the writer's send time in their first 8 bytes, so a watcher can
//! tell each event's delivery latency; that encoding lives here with its decoder.

use std::time::{Duration, Instant};

/// Every key `hub-load` touches starts with this, so a run never disturbs other data.
pub const ROOT_PREFIX: &str = "/hub-load/";

/// `keys` distinct keys under `ROOT_PREFIX` + `<workload>/`.
#[derive(Clone, Debug)]
pub struct KeySpace {
    prefix: String,
    keys: u64,
    key_size: usize,
    value_size: usize,
}

impl KeySpace {
    pub fn new(workload: &str, keys: u64, key_size: usize, value_size: usize) -> Self {
        Self { prefix: format!("{ROOT_PREFIX}{workload}/"), keys: keys.max(1), key_size, value_size }
    }

    /// The prefix every key of this space starts with (what watchers watch).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// How many distinct keys there are (at least one).
    pub fn key_count(&self) -> u64 {
        self.keys
    }

    /// Key number `index % keys`: the prefix, the number, then `-` padding up to
    /// `key_size` (never shorter than prefix + number, so keys stay distinct).
    pub fn key(&self, index: u64) -> Vec<u8> {
        let mut key = format!("{}{:012}", self.prefix, index % self.keys).into_bytes();
        if key.len() < self.key_size {
            key.resize(self.key_size, b'-');
        }
        key
    }

    /// How many bytes a value has.
    pub fn value_size(&self) -> usize {
        self.value_size
    }

    /// A value of `value_size` bytes.
    pub fn value(&self) -> Vec<u8> {
        vec![b'v'; self.value_size]
    }

    /// A value of `value_size` bytes (at least 8) whose first 8 bytes are the time
    /// since `epoch` at which it is being sent.
    pub fn stamped_value(&self, epoch: Instant) -> Vec<u8> {
        let nanos = u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let mut value = nanos.to_le_bytes().to_vec();
        value.resize(self.value_size.max(8), b'v');
        value
    }
}

/// The send time encoded by `stamped_value`, as a duration since its epoch.
pub fn sent_at(value: &[u8]) -> Option<Duration> {
    let stamp: [u8; 8] = value.get(..8)?.try_into().ok()?;
    Some(Duration::from_nanos(u64::from_le_bytes(stamp)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_padded_distinct_and_wrap_around_the_key_space() {
        let space = KeySpace::new("put", 10, 40, 16);
        let k3 = space.key(3);
        assert_eq!(k3.len(), 40);
        assert!(k3.starts_with(b"/hub-load/put/000000000003"));
        assert_eq!(space.key(13), k3);
        assert_ne!(space.key(4), k3);
        // A key size below prefix + number keeps the number rather than truncating it.
        assert_eq!(KeySpace::new("put", 10, 1, 16).key(7), b"/hub-load/put/000000000007");
    }

    #[test]
    fn stamped_values_carry_their_send_time() {
        let epoch = Instant::now();
        let space = KeySpace::new("watch", 1, 0, 4);
        let value = space.stamped_value(epoch);
        assert_eq!(value.len(), 8, "a stamp needs 8 bytes even if --value-size is smaller");
        let sent = sent_at(&value).unwrap();
        assert!(sent <= epoch.elapsed());
        assert_eq!(sent_at(b"short"), None);
    }
}

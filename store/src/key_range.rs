//! A range of keys as etcd's requests name one (`key`, `range_end`): the one
//! owned key-range type, for permissions (`auth/permission.rs`) and watchers
//! (`watch.rs`). The key index reads ranges through its borrowed view,
//! [`crate::key_index::RangeEnd`].

/// `[start, end)`; `end` None: every key from `start` on.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct KeyRange {
    pub start: Vec<u8>,
    pub end: Option<Vec<u8>>,
}

impl KeyRange {
    /// etcd's reading of a request's `key` and `range_end`: the key alone when
    /// `range_end` is empty, every key from `key` on when it is `"\0"`, else
    /// `[key, range_end)`.
    pub fn new(key: &[u8], range_end: &[u8]) -> Self {
        let end = match range_end {
            [] => {
                let mut end = key.to_vec();
                end.push(0);
                Some(end)
            }
            [0] => None,
            end => Some(end.to_vec()),
        };
        KeyRange { start: key.to_vec(), end }
    }

    pub fn contains(&self, key: &[u8]) -> bool {
        key >= self.start.as_slice() && self.end.as_ref().is_none_or(|end| key < end.as_slice())
    }

    /// Holds no key: it ends at or before its start (etcd refuses such a
    /// watch, and no permission covers it).
    pub fn is_empty(&self) -> bool {
        matches!(&self.end, Some(end) if *end <= self.start)
    }
}

#[cfg(test)]
mod tests {
    use super::KeyRange;

    #[test]
    fn reads_a_request_as_etcd() {
        let single = KeyRange::new(b"a", b"");
        assert!(single.contains(b"a") && !single.contains(b"a\0") && !single.contains(b""));
        let from = KeyRange::new(b"b", b"\0");
        assert!(from.contains(b"b") && from.contains(b"\xff\xff") && !from.contains(b"a"));
        let range = KeyRange::new(b"b", b"d");
        assert!(range.contains(b"c") && !range.contains(b"d"));
        assert!(KeyRange::new(b"b", b"a").is_empty() && KeyRange::new(b"b", b"b").is_empty());
        assert!(!single.is_empty() && !from.is_empty());
    }
}

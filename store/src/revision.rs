//! A revision names one change of the key space: `main` is the store revision a
//! write transaction created, `sub` orders the changes inside it.
//!
//! The on-disk form is etcd's (`mvcc/revision.go`): 8 bytes big-endian main, `_`, 8
//! bytes big-endian sub, and a trailing `t` when the change is a deletion
//! (tombstone). Keeping etcd's bytes makes the backend's key table sort by revision
//! and lets a snapshot be written in etcd's bbolt layout without re-encoding.

/// Length of an encoded revision without the tombstone mark.
pub const REV_BYTES_LEN: usize = 17;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Revision {
    pub main: i64,
    pub sub: i64,
}

impl Revision {
    pub fn new(main: i64, sub: i64) -> Self {
        Revision { main, sub }
    }

    /// Encodes as etcd does; `tombstone` appends the deletion mark.
    pub fn to_bytes(self, tombstone: bool) -> Vec<u8> {
        let mut b = Vec::with_capacity(REV_BYTES_LEN + 1);
        b.extend_from_slice(&self.main.to_be_bytes());
        b.push(b'_');
        b.extend_from_slice(&self.sub.to_be_bytes());
        if tombstone {
            b.push(b't');
        }
        b
    }

    /// Decodes an encoded revision; returns it with its tombstone mark, or `None`
    /// when the bytes are not a revision.
    pub fn from_bytes(b: &[u8]) -> Option<(Revision, bool)> {
        if b.len() < REV_BYTES_LEN || b[8] != b'_' {
            return None;
        }
        let main = i64::from_be_bytes(b[0..8].try_into().ok()?);
        let sub = i64::from_be_bytes(b[9..17].try_into().ok()?);
        let tombstone = match b.len() {
            REV_BYTES_LEN => false,
            18 if b[17] == b't' => true,
            _ => return None,
        };
        Some((Revision { main, sub }, tombstone))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_sort_by_revision_and_round_trip() {
        let a = Revision::new(2, 0).to_bytes(false);
        let b = Revision::new(2, 1).to_bytes(true);
        let c = Revision::new(10, 0).to_bytes(false);
        assert!(a < b && b < c);
        assert_eq!(Revision::from_bytes(&b), Some((Revision::new(2, 1), true)));
        assert_eq!(Revision::from_bytes(&a), Some((Revision::new(2, 0), false)));
        assert_eq!(Revision::from_bytes(b"short"), None);
    }
}

//! The key-range convention of etcd's wire protocol: a request's `range_end`
//! names the end of `[key, range_end)`; `"\0"` means every key from `key` on.

/// The first key after every key that starts with `prefix` (clientv3's
/// `GetPrefixRangeEnd`): the prefix with its last byte below 0xff incremented
/// and what follows it dropped; `"\0"` (to the end of the keyspace) when every
/// byte is 0xff or the prefix is empty.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn increments_the_last_byte_below_0xff() {
        assert_eq!(prefix_end(b"abc"), b"abd");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), b"\0");
        assert_eq!(prefix_end(b""), b"\0");
    }
}

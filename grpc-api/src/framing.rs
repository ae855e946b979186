//! gRPC's message framing on the wire: each message is a 5-byte prefix (a
//! compression flag and a big-endian u32 length) and its bytes, and the call's
//! status in the trailers. The body wrappers that look at messages as they
//! stream by (the size limit in `limit.rs`, the message counters in
//! `metrics/grpc.rs`, the request log in `request_stats.rs`) follow it here,
//! however the HTTP/2 frames split it.

/// The bytes before each gRPC message.
pub const PREFIX_LEN: usize = 5;

/// The status a response's headers (a refusal, alone) or trailers carry.
pub fn status_of(headers: &http::HeaderMap) -> Option<tonic::Code> {
    let code = headers.get("grpc-status")?.to_str().ok()?.parse::<i32>().ok()?;
    Some(tonic::Code::from(code))
}

/// Where a body stands in its stream of messages.
#[derive(Default)]
pub struct Framing {
    /// Prefix bytes of the current message seen so far.
    prefix: [u8; PREFIX_LEN],
    prefix_len: usize,
    /// Bytes of the current message still to come.
    remaining: usize,
}

impl Framing {
    /// Follows the framing through `data`: calls `on_prefix` with each message's
    /// announced length as its prefix completes (before any of its bytes), and
    /// answers how many messages `data` completed. Stops at the first error of
    /// `on_prefix`.
    pub fn feed<E>(&mut self, mut data: &[u8], mut on_prefix: impl FnMut(usize) -> Result<(), E>) -> Result<u64, E> {
        let mut done = 0;
        while !data.is_empty() {
            if self.remaining > 0 {
                let n = self.remaining.min(data.len());
                self.remaining -= n;
                data = &data[n..];
                done += u64::from(self.remaining == 0);
                continue;
            }
            let n = (PREFIX_LEN - self.prefix_len).min(data.len());
            self.prefix[self.prefix_len..self.prefix_len + n].copy_from_slice(&data[..n]);
            self.prefix_len += n;
            data = &data[n..];
            if self.prefix_len == PREFIX_LEN {
                self.prefix_len = 0;
                let [_, a, b, c, d] = self.prefix;
                let len = u32::from_be_bytes([a, b, c, d]) as usize;
                on_prefix(len)?;
                self.remaining = len;
                done += u64::from(len == 0);
            }
        }
        Ok(done)
    }
}

/// A framed message of `len` bytes, for tests of what follows the framing.
#[cfg(test)]
pub(crate) fn message(len: usize) -> Vec<u8> {
    let mut m = vec![0];
    m.extend_from_slice(&(len as u32).to_be_bytes());
    m.extend(std::iter::repeat_n(7, len));
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_messages_and_announces_lengths_split_anyhow() {
        let stream: Vec<u8> = [message(3), message(0), message(10)].concat();
        for chunk in [1, 2, 3, 7, stream.len()] {
            let mut f = Framing::default();
            let mut lengths = Vec::new();
            let mut n = 0;
            for c in stream.chunks(chunk) {
                n += f.feed(c, |len| Ok::<_, ()>(lengths.push(len))).unwrap_or_default();
            }
            assert_eq!((n, lengths), (3, vec![3, 0, 10]), "chunks of {chunk}");
        }
    }
}

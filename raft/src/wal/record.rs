//! One WAL record: the kinds of record and how each is framed on disk.
//!
//! A frame is `[u32 LE payload length][u32 LE crc32 of the payload][payload]`, and a
//! payload's first byte is its kind tag. Every payload carries at least its tag, so a
//! zero length never frames a record: the run of zero bytes a file system can leave
//! when a crash extended a file without writing its data never parses as one.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::{LogEntry, LogId};

/// Bytes in front of each payload: its length and its crc32.
pub(crate) const FRAME_HEADER_BYTES: usize = 8;

/// The largest payload a frame can describe (the length field is a u32).
pub(crate) const MAX_PAYLOAD_BYTES: usize = u32::MAX as usize;

// Kind tags. Zero is never a tag (see the module comment); never reuse a retired tag.
const ENTRY: u8 = 1;
const VOTE: u8 = 2;
const TRUNCATE: u8 = 3;
const PURGE: u8 = 4;
const META: u8 = 5;
const HEADER: u8 = 6;

/// Everything about the log that is not an entry, as of one point in the record
/// stream. Each segment opens with one, so deleting older segments never loses the
/// vote, the purge point or the metadata written into them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LogHeader {
    pub vote: Option<Vec<u8>>,
    pub purged: Option<LogId>,
    pub meta: BTreeMap<String, Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Record {
    /// A raft log entry; its payload is opaque here.
    Entry(LogEntry),
    /// The serialized vote, replacing any earlier one.
    Vote(Vec<u8>),
    /// Entries from `from_index` on are discarded (a conflicting suffix).
    Truncate { from_index: u64 },
    /// Entries up to and including `upto` are covered by a snapshot.
    Purge { upto: LogId },
    /// An opaque named value (e.g. openraft's committed log id), replacing any earlier one.
    Meta { key: String, value: Vec<u8> },
    /// The first record of every segment.
    Header(LogHeader),
}

impl Record {
    /// The payload size `encode_frame` will produce, to refuse a record too large to frame
    /// before anything is written.
    pub(crate) fn payload_len(&self) -> usize {
        1 + match self {
            Record::Entry(entry) => 16 + entry.data.len(),
            Record::Vote(vote) => vote.len(),
            Record::Truncate { .. } => 8,
            Record::Purge { .. } => 16,
            Record::Meta { key, value } => 4 + key.len() + value.len(),
            Record::Header(header) => {
                1 + header.vote.as_ref().map_or(0, |v| 4 + v.len())
                    + 1
                    + header.purged.map_or(0, |_| 16)
                    + 4
                    + header.meta.iter().map(|(k, v)| 8 + k.len() + v.len()).sum::<usize>()
            }
        }
    }

    /// Appends this record's frame to `out`. The caller has checked `payload_len()`
    /// against `MAX_PAYLOAD_BYTES`.
    pub(crate) fn encode_frame(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; FRAME_HEADER_BYTES]);
        match self {
            Record::Entry(entry) => {
                out.push(ENTRY);
                out.extend_from_slice(&entry.index.to_le_bytes());
                out.extend_from_slice(&entry.term.to_le_bytes());
                out.extend_from_slice(&entry.data);
            }
            Record::Vote(vote) => {
                out.push(VOTE);
                out.extend_from_slice(vote);
            }
            Record::Truncate { from_index } => {
                out.push(TRUNCATE);
                out.extend_from_slice(&from_index.to_le_bytes());
            }
            Record::Purge { upto } => {
                out.push(PURGE);
                put_log_id(out, *upto);
            }
            Record::Meta { key, value } => {
                out.push(META);
                put_sized(out, key.as_bytes());
                out.extend_from_slice(value);
            }
            Record::Header(header) => {
                out.push(HEADER);
                match &header.vote {
                    Some(vote) => {
                        out.push(1);
                        put_sized(out, vote);
                    }
                    None => out.push(0),
                }
                match header.purged {
                    Some(purged) => {
                        out.push(1);
                        put_log_id(out, purged);
                    }
                    None => out.push(0),
                }
                out.extend_from_slice(&(header.meta.len() as u32).to_le_bytes());
                for (key, value) in &header.meta {
                    put_sized(out, key.as_bytes());
                    put_sized(out, value);
                }
            }
        }
        let payload = &out[start + FRAME_HEADER_BYTES..];
        let len = payload.len() as u32;
        let crc = crc32fast::hash(payload);
        out[start..start + 4].copy_from_slice(&len.to_le_bytes());
        out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    }

    /// Decodes a payload whose crc matched. `None` means the bytes are not a record
    /// this version writes.
    pub(crate) fn decode(payload: &[u8]) -> Option<Record> {
        let (&tag, body) = payload.split_first()?;
        let mut body = Reader(body);
        let record = match tag {
            ENTRY => {
                let index = body.u64()?;
                let term = body.u64()?;
                let data = Bytes::copy_from_slice(body.rest());
                Record::Entry(LogEntry { index, term, data })
            }
            VOTE => Record::Vote(body.rest().to_vec()),
            TRUNCATE => Record::Truncate { from_index: body.u64()? },
            PURGE => Record::Purge { upto: body.log_id()? },
            META => {
                let key = String::from_utf8(body.sized()?.to_vec()).ok()?;
                Record::Meta { key, value: body.rest().to_vec() }
            }
            HEADER => {
                let vote = match body.u8()? {
                    0 => None,
                    1 => Some(body.sized()?.to_vec()),
                    _ => return None,
                };
                let purged = match body.u8()? {
                    0 => None,
                    1 => Some(body.log_id()?),
                    _ => return None,
                };
                let mut meta = BTreeMap::new();
                for _ in 0..body.u32()? {
                    let key = String::from_utf8(body.sized()?.to_vec()).ok()?;
                    meta.insert(key, body.sized()?.to_vec());
                }
                Record::Header(LogHeader { vote, purged, meta })
            }
            _ => return None,
        };
        body.is_empty().then_some(record)
    }
}

/// Why no frame starts at an offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FrameError {
    /// The buffer ends inside the frame's header or payload.
    Short,
    /// A zero length: no record is empty.
    Empty,
    /// The payload does not match its crc.
    Checksum,
}

/// The payload of the frame starting at `at`, and the offset just past it.
pub(crate) fn frame_at(buf: &[u8], at: usize) -> Result<(&[u8], usize), FrameError> {
    let rest = buf.get(at..).unwrap_or_default();
    let (Some(len), Some(crc)) = (le_u32(rest, 0), le_u32(rest, 4)) else {
        return Err(FrameError::Short);
    };
    let len = len as usize;
    if len == 0 {
        return Err(FrameError::Empty);
    }
    let payload = rest.get(FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + len).ok_or(FrameError::Short)?;
    if crc32fast::hash(payload) != crc {
        return Err(FrameError::Checksum);
    }
    Ok((payload, at + FRAME_HEADER_BYTES + len))
}

fn le_u32(buf: &[u8], at: usize) -> Option<u32> {
    let bytes = buf.get(at..at + 4)?;
    Some(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

fn put_sized(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

fn put_log_id(out: &mut Vec<u8>, id: LogId) {
    out.extend_from_slice(&id.index.to_le_bytes());
    out.extend_from_slice(&id.term.to_le_bytes());
}

/// Reads little-endian fields off the front of a payload; `None` when it runs out.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    fn u32(&mut self) -> Option<u32> {
        let mut bytes = [0; 4];
        bytes.copy_from_slice(self.take(4)?);
        Some(u32::from_le_bytes(bytes))
    }

    fn u64(&mut self) -> Option<u64> {
        let mut bytes = [0; 8];
        bytes.copy_from_slice(self.take(8)?);
        Some(u64::from_le_bytes(bytes))
    }

    fn log_id(&mut self) -> Option<LogId> {
        Some(LogId { index: self.u64()?, term: self.u64()? })
    }

    fn sized(&mut self) -> Option<&'a [u8]> {
        let len = self.u32()? as usize;
        self.take(len)
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.0)
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

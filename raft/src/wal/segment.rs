//! Segment files: naming, listing, reading back, and repairing a torn tail.
//!
//! A segment is `<seq>-<first index>.wal` (16 hex digits each, as etcd names its WAL
//! files); `seq` counts up from 0 without gaps, and the first index is the index the
//! next entry was expected to have when the file was created — a hint for people
//! reading a directory listing, since a later truncation can append lower indexes
//! into the same file. Every segment opens with a `Header` record; its records end
//! where only zeros follow (the writer zero-fills the newest segment ahead of them).

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use super::record::{frame_at, Record};
use super::WalError;

const SUFFIX: &str = ".wal";

/// What the WAL knows about one segment file.
#[derive(Debug)]
pub(crate) struct Segment {
    pub seq: u64,
    pub path: PathBuf,
    /// Where its records end, counting bytes written but not yet synced (the
    /// newest segment's file holds zeros after them, see `writer.rs`).
    pub bytes: u64,
    /// Length of the header record that opens it: a segment holding only its
    /// header is never rolled past, however small the size limit.
    pub header_bytes: u64,
    /// The highest index of an entry in this file that no later truncation
    /// discarded; `None` if there is none. Once the log is purged up to it, the file
    /// holds nothing needed and may be deleted (oldest first).
    pub max_index: Option<u64>,
}

impl Segment {
    /// Keeps `max_index` in step with a record written to (or replayed from) the
    /// newest of `segments`.
    pub(crate) fn note_record(segments: &mut [Segment], record: &Record) {
        match record {
            Record::Entry(entry) => {
                if let Some(newest) = segments.last_mut() {
                    newest.max_index = Some(newest.max_index.map_or(entry.index, |m| m.max(entry.index)));
                }
            }
            Record::Truncate { from_index } => {
                for segment in segments {
                    if segment.max_index.is_some_and(|m| m >= *from_index) {
                        segment.max_index = from_index.checked_sub(1);
                    }
                }
            }
            _ => {}
        }
    }
}

pub(crate) fn file_name(seq: u64, first_index: u64) -> String {
    format!("{seq:016x}-{first_index:016x}{SUFFIX}")
}

fn parse_file_name(name: &str) -> Option<u64> {
    let (seq, first_index) = name.strip_suffix(SUFFIX)?.split_once('-')?;
    if seq.len() != 16 || first_index.len() != 16 {
        return None;
    }
    u64::from_str_radix(first_index, 16).ok()?;
    u64::from_str_radix(seq, 16).ok()
}

/// The segments in `dir`, oldest first. A gap in the sequence means a file was lost
/// or deleted by hand, which replay cannot make up for.
pub(crate) fn list(dir: &Path) -> Result<Vec<Segment>, WalError> {
    let mut segments = Vec::new();
    for dirent in fs::read_dir(dir).map_err(io_error("read directory", dir))? {
        let dirent = dirent.map_err(io_error("read directory", dir))?;
        let name = dirent.file_name();
        let Some(name) = name.to_str().filter(|n| n.ends_with(SUFFIX)) else { continue };
        let path = dirent.path();
        let seq = parse_file_name(name).ok_or_else(|| WalError::Inconsistent {
            path: path.clone(),
            reason: "not a segment name (<seq>-<first index>.wal, 16 hex digits each)".into(),
        })?;
        segments.push(Segment { seq, path, bytes: 0, header_bytes: 0, max_index: None });
    }
    segments.sort_by_key(|s| s.seq);
    for pair in segments.windows(2) {
        if pair[1].seq != pair[0].seq + 1 {
            return Err(WalError::Inconsistent {
                path: pair[1].path.clone(),
                reason: format!("segment {} is missing", pair[0].seq + 1),
            });
        }
    }
    Ok(segments)
}

/// The records of one segment, each with the offset where its frame starts.
#[derive(Debug)]
pub(crate) struct SegmentContents {
    pub records: Vec<(u64, Record)>,
    /// Where the records end (after any repair): the file's length, less the
    /// zeros after the last record.
    pub bytes: u64,
    /// Length of the opening header record (0 if the file is empty).
    pub header_bytes: u64,
}

/// Reads a segment. In the newest segment (`newest`), a damaged record with nothing
/// valid after it is what a crash in the middle of a write leaves: the file is cut
/// back to the last good record and the loss logged. Anywhere else a damaged record
/// is corruption, and the WAL refuses to open rather than skip what it cannot read.
pub(crate) fn read(path: &Path, newest: bool) -> Result<SegmentContents, WalError> {
    let buf = fs::read(path).map_err(io_error("read segment", path))?;
    let corrupt = |offset: usize| WalError::Corrupt { segment: path.to_path_buf(), offset: offset as u64 };
    let mut records = Vec::new();
    let mut header_bytes = 0;
    let mut at = 0;
    while at < buf.len() {
        match frame_at(&buf, at) {
            Ok((payload, next)) => {
                // The crc matched, so these bytes were written as they are: a payload
                // we cannot decode is a bug or a newer format, never a torn write.
                let record = Record::decode(payload).ok_or_else(|| corrupt(at))?;
                if records.is_empty() {
                    if !matches!(record, Record::Header(_)) {
                        return Err(corrupt(at));
                    }
                    header_bytes = (next - at) as u64;
                }
                records.push((at as u64, record));
                at = next;
            }
            // The zeros the writer keeps ahead of the records (or that a crash left
            // after extending the file): the records end here.
            Err(_) if buf[at..].iter().all(|&b| b == 0) => break,
            Err(_) if newest && !valid_record_after(&buf, at + 1) => {
                repair_torn_tail(path, at as u64, buf.len() as u64)?;
                break;
            }
            Err(_) => return Err(corrupt(at)),
        }
    }
    // Only a crash right after creating the newest segment leaves one without a header.
    if records.is_empty() && !newest {
        return Err(corrupt(0));
    }
    Ok(SegmentContents { records, bytes: at as u64, header_bytes })
}

/// Whether any offset from `from` on starts a frame with a matching crc and a
/// decodable payload. A torn write leaves none; damage in the middle of a file
/// does. (A payload that itself contains a WAL frame could fool this, making a torn
/// tail look like corruption: the WAL then refuses to open, never loses data.)
fn valid_record_after(buf: &[u8], from: usize) -> bool {
    (from..buf.len()).any(|at| matches!(frame_at(buf, at), Ok((payload, _)) if Record::decode(payload).is_some()))
}

fn repair_torn_tail(path: &Path, offset: u64, file_len: u64) -> Result<(), WalError> {
    tracing::warn!(
        segment = %path.display(),
        offset,
        bytes_dropped = file_len - offset,
        "wal: torn record at the end of the newest segment, truncating to the last good record"
    );
    let file = OpenOptions::new().write(true).open(path).map_err(io_error("open segment", path))?;
    file.set_len(offset).map_err(io_error("truncate segment", path))?;
    file.sync_all().map_err(io_error("sync segment", path))
}

/// Creates segment `seq` (which must not exist) and makes its name durable.
pub(crate) fn create(dir: &Path, seq: u64, first_index: u64) -> Result<(Segment, File), WalError> {
    let path = dir.join(file_name(seq, first_index));
    let file =
        OpenOptions::new().create_new(true).write(true).open(&path).map_err(io_error("create segment", &path))?;
    sync_dir(dir)?;
    Ok((Segment { seq, path, bytes: 0, header_bytes: 0, max_index: None }, file))
}

/// Makes creations and removals of files in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_error("sync directory", dir))
}

pub(crate) fn io_error<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> WalError + 'a {
    move |source| WalError::Io { op, path: path.to_path_buf(), source: source.into() }
}

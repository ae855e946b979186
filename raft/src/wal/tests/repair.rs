//! What `open` does with damaged files: a torn tail of the newest segment is cut off;
//! any other damage is `Corrupt` and nothing is skipped.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::super::record::{frame_at, Record};
use super::{append, copy_dir, entries, ids, open, records_end, segment_files};
use crate::wal::{LogId, Wal, WalError, WalOptions};

/// The frames of a segment file: (start, end, record).
fn frames(path: &Path) -> Vec<(usize, usize, Record)> {
    let buf = fs::read(path).unwrap();
    let mut frames = Vec::new();
    let mut at = 0;
    while buf[at..].iter().any(|&b| b != 0) {
        let (payload, next) = frame_at(&buf, at).unwrap();
        frames.push((at, next, Record::decode(payload).unwrap()));
        at = next;
    }
    frames
}

fn entry_index(record: &Record) -> Option<u64> {
    match record {
        Record::Entry(entry) => Some(entry.index),
        _ => None,
    }
}

/// A WAL of entries 1..=last (term 1, last >= 30) over several 200-byte segments,
/// with a vote, whose newest segment holds at least five records.
fn sample_wal() -> (tempfile::TempDir, u64) {
    let dir = tempfile::tempdir().unwrap();
    let wal = open(dir.path(), 200);
    wal.save_vote(b"vote".to_vec()).unwrap();
    let mut last = 0;
    while last < 30 || frames(&newest_segment(dir.path())).len() < 5 {
        last += 1;
        append(&wal, entries(last..=last, 1)).unwrap();
    }
    drop(wal);
    assert!(segment_files(dir.path()).len() >= 3);
    (dir, last)
}

fn flip_byte(path: &Path, offset: usize) {
    let mut bytes = fs::read(path).unwrap();
    bytes[offset] ^= 0xff;
    fs::write(path, bytes).unwrap();
}

fn newest_segment(dir: &Path) -> std::path::PathBuf {
    segment_files(dir).pop().unwrap()
}

#[test]
fn a_cut_anywhere_in_the_newest_segment_keeps_every_record_before_it() {
    let (sample, _) = sample_wal();
    let newest_name = newest_segment(sample.path()).file_name().unwrap().to_owned();
    let frames = frames(&newest_segment(sample.path()));
    let first_in_newest = frames.iter().find_map(|(_, _, r)| entry_index(r)).unwrap();
    let file_len = frames.last().unwrap().1;
    for cut in 0..=file_len {
        let dir = copy_dir(sample.path());
        let path = dir.path().join(&newest_name);
        OpenOptions::new().write(true).open(&path).unwrap().set_len(cut as u64).unwrap();

        let wal =
            Wal::open(dir.path(), WalOptions { segment_bytes: 200, metrics: None }).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        let last_whole = frames.iter().filter(|(_, end, _)| *end <= cut).filter_map(|(_, _, r)| entry_index(r)).last();
        let expected_last = last_whole.unwrap_or(first_in_newest - 1);
        assert_eq!(ids(&wal), (1..=expected_last).map(|i| (i, 1)).collect::<Vec<_>>(), "cut at {cut}");
        assert_eq!(wal.vote(), Some(b"vote".to_vec()), "cut at {cut}");
        // The log goes on from there, and the repair does not need repeating.
        append(&wal, entries(expected_last + 1..=expected_last + 1, 2)).unwrap();
        drop(wal);
        let wal = open(dir.path(), 200);
        assert_eq!(wal.last_entry(), Some(LogId { index: expected_last + 1, term: 2 }), "cut at {cut}");
    }
}

#[test]
fn a_damaged_record_with_valid_records_after_it_is_corruption() {
    let (sample, _) = sample_wal();
    let newest = newest_segment(sample.path());
    let frames = frames(&newest);
    assert!(frames.len() >= 4, "{} frames", frames.len());
    let (start, end, _) = frames[1];
    // Every byte: length, crc, kind tag and body.
    for offset in start..end {
        let dir = copy_dir(sample.path());
        let path = dir.path().join(newest.file_name().unwrap());
        flip_byte(&path, offset);
        match Wal::open(dir.path(), WalOptions::default()) {
            Err(WalError::Corrupt { segment, offset: at }) => {
                assert_eq!((segment, at), (path.clone(), start as u64), "flipped byte {offset}")
            }
            other => panic!("flipped byte {offset}: {other:?}"),
        }
        // Nothing was repaired away.
        assert_eq!(fs::metadata(&path).unwrap().len(), fs::metadata(&newest).unwrap().len());
    }
}

#[test]
fn a_damaged_last_record_is_a_torn_tail() {
    let (sample, last) = sample_wal();
    let newest = newest_segment(sample.path());
    let (start, end, _) = *frames(&newest).last().unwrap();
    flip_byte(&newest, end - 1);
    let wal = open(sample.path(), 200);
    assert_eq!(wal.last_entry(), Some(LogId { index: last - 1, term: 1 }));
    assert_eq!(fs::metadata(&newest).unwrap().len(), start as u64);
}

#[test]
fn damage_in_an_older_segment_is_corruption_even_at_its_end() {
    let (sample, _) = sample_wal();
    let oldest = segment_files(sample.path())[0].clone();
    let len = fs::metadata(&oldest).unwrap().len();
    let last_start = frames(&oldest).last().unwrap().0 as u64;

    let dir = copy_dir(sample.path());
    let path = dir.path().join(oldest.file_name().unwrap());
    flip_byte(&path, len as usize - 1);
    assert!(matches!(
        Wal::open(dir.path(), WalOptions::default()),
        Err(WalError::Corrupt { segment, offset }) if segment == path && offset == last_start
    ));

    let dir = copy_dir(sample.path());
    let path = dir.path().join(oldest.file_name().unwrap());
    OpenOptions::new().write(true).open(&path).unwrap().set_len(len - 1).unwrap();
    assert!(matches!(
        Wal::open(dir.path(), WalOptions::default()),
        Err(WalError::Corrupt { segment, offset }) if segment == path && offset == last_start
    ));
}

#[test]
fn the_newest_segment_is_zero_filled_ahead_and_older_ones_end_at_their_records() {
    let (sample, _) = sample_wal();
    let files = segment_files(sample.path());
    let (newest, older) = files.split_last().unwrap();
    let end = frames(newest).last().unwrap().1 as u64;
    assert!(fs::metadata(newest).unwrap().len() > end, "zeros written ahead");
    assert_eq!(records_end(newest), end);
    for path in older {
        assert_eq!(fs::metadata(path).unwrap().len(), frames(path).last().unwrap().1 as u64, "{}", path.display());
    }
}

#[test]
fn zeros_after_the_records_end_them_without_a_repair() {
    // The writer's own zeros, or what ext4 and others leave when a crash persisted
    // a file's new size but not its data; in an older segment too (a crash before
    // a finished segment was cut to its records).
    let (sample, last) = sample_wal();
    let files = segment_files(sample.path());
    let newest = files.last().unwrap();
    let newest_len = fs::metadata(newest).unwrap().len();
    OpenOptions::new().append(true).open(&files[0]).unwrap().write_all(&[0; 4096]).unwrap();
    let wal = open(sample.path(), 200);
    assert_eq!(wal.last_entry(), Some(LogId { index: last, term: 1 }));
    assert_eq!(fs::metadata(newest).unwrap().len(), newest_len, "nothing cut off");
    // The next records go where the old ones end, not after the zeros.
    append(&wal, entries(last + 1..=last + 1, 2)).unwrap();
    drop(wal);
    let wal = open(sample.path(), 200);
    assert_eq!(wal.last_entry(), Some(LogId { index: last + 1, term: 2 }));
    assert_eq!(ids(&wal).len() as u64, last + 1);
}

#[test]
fn a_torn_record_before_the_zeros_is_cut_off() {
    let (sample, last) = sample_wal();
    let newest = newest_segment(sample.path());
    let (start, end, _) = *frames(&newest).last().unwrap();
    // The record's second half never reached the disk; the zeros after it did.
    let mut bytes = fs::read(&newest).unwrap();
    bytes[(start + end) / 2..end].fill(0);
    fs::write(&newest, bytes).unwrap();
    let wal = open(sample.path(), 200);
    assert_eq!(wal.last_entry(), Some(LogId { index: last - 1, term: 1 }));
    assert_eq!(fs::metadata(&newest).unwrap().len(), start as u64);
}

#[test]
fn a_record_with_a_valid_crc_but_unknown_kind_is_corruption() {
    // Written whole, so not a torn write: a bug or a newer format. Never cut it off.
    let (sample, _) = sample_wal();
    let newest = newest_segment(sample.path());
    let len = records_end(&newest);
    let payload = [0x7f, 1, 2, 3];
    let mut frame = (payload.len() as u32).to_le_bytes().to_vec();
    frame.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    frame.extend_from_slice(&payload);
    OpenOptions::new().write(true).open(&newest).unwrap().write_all_at(&frame, len).unwrap();
    assert!(matches!(
        Wal::open(sample.path(), WalOptions::default()),
        Err(WalError::Corrupt { offset, .. }) if offset == len
    ));
}

#[test]
fn a_missing_segment_is_refused() {
    let (sample, _) = sample_wal();
    fs::remove_file(&segment_files(sample.path())[1]).unwrap();
    assert!(matches!(Wal::open(sample.path(), WalOptions::default()), Err(WalError::Inconsistent { .. })));
}

#[test]
fn a_stray_wal_file_is_refused() {
    let (sample, _) = sample_wal();
    fs::write(sample.path().join("backup.wal"), b"").unwrap();
    assert!(matches!(Wal::open(sample.path(), WalOptions::default()), Err(WalError::Inconsistent { .. })));
}

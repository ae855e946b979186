//! Crash consistency, checked against a model: run random operations, pretend a
//! crash hit while the last few were still being written — cut the bytes written
//! after the last acknowledged one anywhere (cut off, or zeros where the writer had
//! zero-filled ahead), dropping the segments created after the cut — and reopen. The WAL must come back as the model stood after every
//! acknowledged operation plus some prefix of the unacknowledged records.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::FileFailurePersistence;

use super::{append, open, records_end, segment_files};
use crate::wal::{LogEntry, LogId, Wal};

const META_KEYS: [&str; 3] = ["committed", "applied", "cluster"];

/// Everything the WAL promises to keep.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Observed {
    entries: Vec<(u64, u64, Vec<u8>)>,
    purged: Option<LogId>,
    vote: Option<Vec<u8>>,
    meta: BTreeMap<String, Vec<u8>>,
}

fn observe(wal: &Wal) -> Observed {
    Observed {
        entries: wal.entries(..).into_iter().map(|e| (e.index, e.term, e.data.to_vec())).collect(),
        purged: wal.purged(),
        vote: wal.vote(),
        meta: META_KEYS.iter().filter_map(|k| Some((k.to_string(), wal.meta(k)?))).collect(),
    }
}

#[derive(Debug, Clone)]
enum Op {
    Append {
        count: u64,
        new_term: bool,
    },
    /// Truncate `back` entries before the last one (clamped to the first).
    Truncate {
        back: u64,
    },
    /// Purge up to `back` entries before the last one; negative reaches past it.
    Purge {
        back: i64,
    },
    Vote(u8),
    Meta {
        key: usize,
        value: u8,
    },
}

fn op(with_purge: bool) -> impl Strategy<Value = Op> {
    let purge_weight = if with_purge { 2 } else { 0 };
    prop_oneof![
        6 => (1..4u64, any::<bool>()).prop_map(|(count, new_term)| Op::Append { count, new_term }),
        2 => (0..4u64).prop_map(|back| Op::Truncate { back }),
        purge_weight => (-2..6i64).prop_map(|back| Op::Purge { back }),
        1 => any::<u8>().prop_map(Op::Vote),
        1 => (0..META_KEYS.len(), any::<u8>()).prop_map(|(key, value)| Op::Meta { key, value }),
    ]
}

struct Model {
    state: Observed,
    term: u64,
}

impl Model {
    fn last(&self) -> Option<LogId> {
        self.state.entries.last().map(|&(index, term, _)| LogId { index, term })
    }

    /// Applies `op` to the WAL and the model; pushes the model's state after each
    /// record the WAL writes for it onto `states`.
    fn run(&mut self, op: &Op, wal: &Wal, states: &mut Vec<Observed>) {
        match *op {
            Op::Append { count, new_term } => {
                self.term += new_term as u64;
                let next = self.last().or(self.state.purged).map_or(1, |id| id.index + 1);
                let batch: Vec<LogEntry> = (next..next + count)
                    .map(|index| LogEntry { index, term: self.term, data: format!("{index}@{}", self.term).into() })
                    .collect();
                for e in &batch {
                    self.state.entries.push((e.index, e.term, e.data.to_vec()));
                    states.push(self.state.clone());
                }
                append(wal, batch).unwrap();
            }
            Op::Truncate { back } => {
                let (Some(first), Some(last)) = (self.state.entries.first(), self.last()) else { return };
                let from = last.index.saturating_sub(back).max(first.0);
                self.state.entries.retain(|e| e.0 < from);
                states.push(self.state.clone());
                wal.truncate(from).unwrap();
            }
            Op::Purge { back } => {
                let Some(base) = self.last().or(self.state.purged) else { return };
                let upto_index = base.index.saturating_add_signed(-back);
                if self.state.purged.is_some_and(|p| p.index >= upto_index) {
                    return;
                }
                let term = self.state.entries.iter().find(|e| e.0 == upto_index).map_or(self.term, |e| e.1);
                let upto = LogId { index: upto_index, term };
                self.state.entries.retain(|e| e.0 > upto_index);
                self.state.purged = Some(upto);
                states.push(self.state.clone());
                wal.purge(upto).unwrap();
            }
            Op::Vote(v) => {
                self.state.vote = Some(vec![v; 3]);
                states.push(self.state.clone());
                wal.save_vote(vec![v; 3]).unwrap();
            }
            Op::Meta { key, value } => {
                self.state.meta.insert(META_KEYS[key].to_string(), vec![value]);
                states.push(self.state.clone());
                wal.set_meta(META_KEYS[key], vec![value]).unwrap();
            }
        }
    }
}

fn sizes() -> impl Strategy<Value = u64> {
    prop_oneof![Just(96u64), Just(300), Just(4096)]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 40,
        // Beside this file, not in a directory of its own at the crate root.
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn a_crash_loses_only_unacknowledged_records(
        segment_bytes in sizes(),
        acked in prop::collection::vec(op(true), 0..40),
        in_flight in prop::collection::vec(op(false), 0..8),
        cut in any::<Index>(),
        zeros_stay in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let wal = open(dir.path(), segment_bytes);
        let mut model = Model { state: Observed::default(), term: 1 };
        let mut ignored = Vec::new();
        for op in &acked {
            model.run(op, &wal, &mut ignored);
        }
        prop_assert_eq!(observe(&wal), model.state.clone());
        let durable: BTreeMap<PathBuf, u64> =
            segment_files(dir.path()).into_iter().map(|p| { let n = records_end(&p); (p, n) }).collect();

        // Segments are synced before the next one is created (so a crash never tears
        // an older one), and purges are excluded here, which delete files only after
        // their record is synced: so any cut of the bytes written after `durable` is a
        // state a crash can leave.
        let mut states = vec![model.state.clone()];
        for op in &in_flight {
            model.run(op, &wal, &mut states);
        }
        drop(wal);
        // Older segments were complete before the crash point.
        let newest_durable = durable.keys().next_back().cloned().unwrap_or_default();
        let written: Vec<(PathBuf, u64, u64)> = segment_files(dir.path())
            .into_iter()
            .filter(|p| *p >= newest_durable)
            .map(|p| { let start = durable.get(&p).copied().unwrap_or(0); let end = records_end(&p); (p, start, end) })
            .collect();
        let total: u64 = written.iter().map(|(_, start, end)| end - start).sum();
        let mut left = cut.index(total as usize + 1) as u64;
        let mut cut_done = false;
        for (path, start, end) in &written {
            if cut_done {
                fs::remove_file(path).unwrap();
            } else if left <= end - start {
                let file = OpenOptions::new().write(true).open(path).unwrap();
                if zeros_stay {
                    // The file's length reached the disk, the data after the cut did not.
                    file.write_all_at(&vec![0; (end - start - left) as usize], start + left).unwrap();
                } else {
                    file.set_len(start + left).unwrap();
                }
                cut_done = true;
            } else {
                left -= end - start;
            }
        }

        let wal = open(dir.path(), segment_bytes);
        let recovered = observe(&wal);
        prop_assert!(states.contains(&recovered), "recovered {:?}\nnot among {:?}", recovered, states);
    }
}

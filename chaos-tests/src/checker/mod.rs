//! Checkers over a recorded history: linearizability per key (registers),
//! sets, watches, leases and the Kubernetes storage pattern.

pub mod linear;

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use serde_json::Value;

use crate::history::{Op, Status};
use crate::workload::lease::{Fate, LeaseRecord};
use crate::workload::watch::{Ev, Item, Watcher};
use crate::workload::{k8s, register, set};
use linear::{Call, RegOp, Verdict};

/// Something the history shows hub did wrong, with the smallest sub-history
/// that shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Anomaly {
    pub kind: String,
    pub key: String,
    pub detail: String,
    pub ops: Vec<Op>,
}

fn anomaly(kind: &str, key: &str, detail: String, ops: Vec<Op>) -> Anomaly {
    Anomaly { kind: kind.into(), key: key.into(), detail, ops }
}

/// Search steps per key before the linearizability check gives up.
const BUDGET: u64 = 20_000_000;

fn int(v: &Value, field: &str) -> Option<i64> {
    v.get(field).and_then(Value::as_i64)
}

/// One register call from a recorded op, or `None` if it cannot matter
/// (a failed op, a read with no answer).
fn reg_call(op: &Op, id: usize) -> Option<Call> {
    let end = match op.status {
        Status::Ok => op.end,
        Status::Info => u64::MAX,
        Status::Fail => return None,
    };
    let reg = match op.op.as_str() {
        "register/read" if op.status == Status::Ok => RegOp::Read(int(&op.output, "value")),
        "register/write" => RegOp::Write(int(&op.input, "value")?),
        "register/cas" => RegOp::Cas {
            from: int(&op.input, "from"),
            to: int(&op.input, "to")?,
            ok: (op.status == Status::Ok).then(|| op.output.get("ok").and_then(Value::as_bool).unwrap_or(false)),
        },
        _ => return None,
    };
    Some(Call { op: reg, start: op.start, end, id })
}

/// Linearizability of every register key; also returns the keys the search
/// could not decide within its budget.
pub fn registers(ops: &[Op]) -> (Vec<Anomaly>, Vec<String>) {
    let mut by_key: BTreeMap<&str, Vec<Call>> = BTreeMap::new();
    for (i, op) in ops.iter().enumerate() {
        if op.key.starts_with(register::PREFIX) {
            if let Some(c) = reg_call(op, i) {
                by_key.entry(&op.key).or_default().push(c);
            }
        }
    }
    let mut anomalies = Vec::new();
    let mut unknown = Vec::new();
    for (key, calls) in by_key {
        match linear::check(&calls, BUDGET) {
            Verdict::Linearizable => {}
            Verdict::Unknown => unknown.push(key.to_string()),
            Verdict::NotLinearizable => {
                let min = linear::minimize(&calls, BUDGET / 10);
                let mut sub: Vec<Op> = min.iter().map(|c| ops[c.id].clone()).collect();
                sub.sort_by_key(|o| o.start);
                anomalies.push(anomaly("not-linearizable", key, format!("{} ops on the key, {} needed to show it", calls.len(), sub.len()), sub));
            }
        }
    }
    (anomalies, unknown)
}

/// The keys' final state, by replaying the reference watch: key → event.
pub fn replay(reference: &[Ev]) -> BTreeMap<String, Ev> {
    let mut state = BTreeMap::new();
    for e in reference {
        if e.delete {
            state.remove(&e.key);
        } else {
            state.insert(e.key.clone(), e.clone());
        }
    }
    state
}

/// Every acknowledged add is present at the end; nothing is that was never tried.
pub fn sets(ops: &[Op], state: &BTreeMap<String, Ev>) -> Vec<Anomaly> {
    let mut out = Vec::new();
    let mut tried: HashMap<&str, &Op> = HashMap::new();
    for op in ops.iter().filter(|o| o.op == "set/add") {
        if op.status == Status::Ok && !state.contains_key(&op.key) {
            out.push(anomaly("set-lost", &op.key, "acknowledged add missing at the end".into(), vec![op.clone()]));
        }
        if op.status != Status::Fail {
            tried.insert(&op.key, op);
        }
    }
    for key in state.keys().filter(|k| k.starts_with(set::PREFIX)) {
        if !tried.contains_key(key.as_str()) {
            out.push(anomaly("set-phantom", key, "present but never added (or the add failed)".into(), Vec::new()));
        }
    }
    out
}

/// Every acknowledged write is in the reference watch at the revision it was
/// acknowledged with.
pub fn durability(ops: &[Op], reference: &[Ev]) -> Vec<Anomaly> {
    let mut at: HashMap<(i64, &str), &Ev> = HashMap::new();
    for e in reference {
        at.insert((e.revision, &e.key), e);
    }
    let mut out = Vec::new();
    for op in ops.iter().filter(|o| o.status == Status::Ok) {
        let wrote = match op.op.as_str() {
            "register/write" | "set/add" => true,
            "register/cas" | "k8s/create" | "k8s/update" => op.output.get("ok").and_then(Value::as_bool) == Some(true),
            _ => false,
        };
        let Some(rev) = int(&op.output, "revision").filter(|_| wrote) else { continue };
        match at.get(&(rev, op.key.as_str())) {
            Some(e) if !e.delete => {}
            _ => out.push(anomaly("lost-write", &op.key, format!("acknowledged at revision {rev}, not in the final history"), vec![op.clone()])),
        }
    }
    out
}

/// The reference history itself: revisions never go back, and each event's
/// prev_kv is the key's previous state.
pub fn reference(reference: &[Ev]) -> Vec<Anomaly> {
    let mut out = Vec::new();
    let mut state: HashMap<&str, (String, i64)> = HashMap::new();
    let mut last = 0;
    for e in reference {
        if e.revision < last {
            out.push(anomaly("watch-order", &e.key, format!("revision {} after {last}", e.revision), Vec::new()));
        }
        last = e.revision;
        let expected = state.get(e.key.as_str()).cloned();
        if e.prev != expected {
            out.push(anomaly("watch-prev-kv", &e.key, format!("revision {}: prev_kv {:?}, expected {expected:?}", e.revision, e.prev), Vec::new()));
        }
        if e.delete {
            state.remove(e.key.as_str());
        } else {
            state.insert(&e.key, (e.value.clone(), e.mod_revision));
        }
    }
    out
}

/// A watcher saw exactly the reference's events under its prefix, in order,
/// each once, a revision never split across responses, and no event at or
/// below a progress notification's revision after it. It had to reach `until`.
pub fn watcher(w: &Watcher, reference: &[Ev], until: i64) -> Vec<Anomaly> {
    let expected: Vec<&Ev> = reference.iter().filter(|e| e.key.starts_with(&w.prefix)).collect();
    let got: Vec<Ev> = w.events().into_iter().filter(|e| e.revision <= until).collect();
    let mut out = Vec::new();
    let kind = |k: &str| format!("watch-{k}");
    if let Some(i) = (0..got.len().min(expected.len())).find(|&i| &got[i] != expected[i]) {
        out.push(anomaly(&kind("mismatch"), &w.name, format!("event {i}: got {:?}, expected {:?}", got[i], expected[i]), Vec::new()));
    } else if got.len() > expected.len() {
        out.push(anomaly(&kind("extra"), &w.name, format!("{} events beyond the reference, first {:?}", got.len() - expected.len(), got[expected.len()]), Vec::new()));
    } else if got.len() < expected.len() {
        out.push(anomaly(&kind("missed"), &w.name, format!("saw {} of {} events; first missing {:?}", got.len(), expected.len(), expected[got.len()]), Vec::new()));
    }
    let items = w.items.lock().clone();
    let mut prev_last = None;
    let mut progress = 0;
    for item in &items {
        match item {
            Item::Progress(rev) => progress = progress.max(*rev),
            Item::Events(evs) => {
                let (first, last) = (evs[0].revision, evs[evs.len() - 1].revision);
                if prev_last == Some(first) {
                    out.push(anomaly(&kind("split-revision"), &w.name, format!("revision {first} split across responses"), Vec::new()));
                }
                if first <= progress {
                    out.push(anomaly(&kind("after-progress"), &w.name, format!("event at revision {first} after a progress notification at {progress}"), Vec::new()));
                }
                prev_last = Some(last);
            }
        }
    }
    out
}

/// Keys of a lease vanish together; revoked and expired leases' keys are gone
/// at the end; kept-alive leases' keys stay.
pub fn leases(leases: &[LeaseRecord], reference: &[Ev], state: &BTreeMap<String, Ev>, now: u64) -> Vec<Anomaly> {
    let mut deleted: HashMap<&str, Vec<i64>> = HashMap::new();
    for e in reference.iter().filter(|e| e.delete) {
        deleted.entry(&e.key).or_default().push(e.revision);
    }
    let mut out = Vec::new();
    for l in leases.iter().filter(|l| l.attached.is_some()) {
        let key = format!("lease {:x}", l.id);
        let revs: Vec<Option<&Vec<i64>>> = l.keys.iter().map(|k| deleted.get(k.as_str())).collect();
        let present = l.keys.iter().filter(|k| state.contains_key(*k)).count();
        if revs.iter().any(Option::is_some) && (revs.iter().any(Option::is_none) || revs.windows(2).any(|w| w[0] != w[1])) {
            out.push(anomaly("lease-not-atomic", &key, format!("keys deleted at revisions {revs:?}"), Vec::new()));
        }
        let ttl_ns = l.ttl as u64 * 1_000_000_000;
        match l.fate {
            Fate::Revoke { acked: true } if present > 0 => {
                out.push(anomaly("lease-revoked-keys-remain", &key, format!("{present} keys remain"), Vec::new()))
            }
            Fate::Expire if present > 0 && now > l.granted_at + ttl_ns + 10_000_000_000 => {
                out.push(anomaly("lease-expired-keys-remain", &key, format!("{present} keys remain"), Vec::new()))
            }
            Fate::KeepAlive if !l.lost && present < l.keys.len() && l.max_gap < ttl_ns / 3 && now < l.last_renewal + ttl_ns / 3 => {
                out.push(anomaly("lease-kept-alive-lost", &key, format!("renewed at most {} ms apart, yet {} keys gone", l.max_gap / 1_000_000, l.keys.len() - present), Vec::new()))
            }
            _ => {}
        }
    }
    out
}

/// Kubernetes pattern: at most one create succeeds per object; each object's
/// counter counts its acknowledged updates (plus some of the unknown ones);
/// every paginated list agreed with the whole list at its revision.
pub fn k8s(ops: &[Op], state: &BTreeMap<String, Ev>) -> Vec<Anomaly> {
    let mut out = Vec::new();
    let mut by_key: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
    for op in ops.iter().filter(|o| o.op.starts_with("k8s/")) {
        if op.op == "k8s/list" && op.status == Status::Ok && op.output.get("agree").and_then(Value::as_bool) == Some(false) {
            out.push(anomaly("k8s-list-disagrees", &op.key, format!("{}", op.output), vec![op.clone()]));
        }
        by_key.entry(&op.key).or_default().push(op);
    }
    for (key, ops) in by_key.iter().filter(|(k, _)| k.starts_with(k8s::PREFIX) && **k != k8s::PREFIX) {
        let ok = |o: &&&Op| o.status == Status::Ok && o.output.get("ok").and_then(Value::as_bool) == Some(true);
        let creates = ops.iter().filter(|o| o.op == "k8s/create").filter(ok).count();
        let updates = ops.iter().filter(|o| o.op == "k8s/update").filter(ok).count() as i64;
        let unknown = ops.iter().filter(|o| o.op == "k8s/update" && o.status == Status::Info).count() as i64;
        let sub = || ops.iter().filter(|o| o.op != "k8s/get" && o.status != Status::Fail).map(|o| (*o).clone()).collect();
        if creates > 1 {
            out.push(anomaly("k8s-double-create", key, format!("{creates} creates succeeded"), sub()));
        }
        let counter = state.get(*key).and_then(|e| e.value.parse::<i64>().ok());
        if let Some(c) = counter {
            if c < updates || c > updates + unknown {
                out.push(anomaly("k8s-lost-update", key, format!("counter {c}, {updates} updates acknowledged, {unknown} unknown"), sub()));
            }
        } else if creates > 0 {
            out.push(anomaly("k8s-object-lost", key, "created, missing at the end".into(), sub()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn op(name: &str, key: &str, status: Status, output: Value) -> Op {
        Op { process: "p".into(), op: name.into(), key: key.into(), input: json!(null), output, status, start: 0, end: 1, member: 0 }
    }

    fn put(revision: i64, key: &str, value: &str, prev: Option<(&str, i64)>) -> Ev {
        Ev {
            revision,
            key: key.into(),
            delete: false,
            value: value.into(),
            mod_revision: revision,
            lease: 0,
            prev: prev.map(|(v, r)| (v.to_string(), r)),
        }
    }

    #[test]
    fn set_lost_and_phantom_adds_are_caught() {
        let ops = [
            op("set/add", "set/a", Status::Ok, json!({"revision": 2})),
            op("set/add", "set/b", Status::Info, json!("timeout")),
            op("set/add", "set/c", Status::Ok, json!({"revision": 3})),
        ];
        let reference = [put(2, "set/a", "1", None), put(3, "set/c", "1", None)];
        assert!(sets(&ops, &replay(&reference)).is_empty(), "the unknown add may be missing");
        assert!(durability(&ops, &reference).is_empty());
        let lost = [put(2, "set/a", "1", None), put(4, "set/x", "1", None)];
        let kinds: Vec<String> = sets(&ops, &replay(&lost)).into_iter().map(|a| a.kind).collect();
        assert_eq!(kinds, ["set-lost", "set-phantom"]);
        assert_eq!(durability(&ops, &lost).len(), 1, "set/c acknowledged at 3 is not there");
    }

    #[test]
    fn watch_gaps_duplicates_and_wrong_prev_kv_are_caught() {
        let reference = vec![put(2, "a", "1", None), put(3, "a", "2", Some(("1", 2))), put(4, "b", "1", None)];
        assert!(super::reference(&reference).is_empty());
        let w = Watcher::new("w", "");
        w.items.lock().extend([Item::Events(reference[..2].to_vec()), Item::Progress(3), Item::Events(reference[2..].to_vec())]);
        assert!(watcher(&w, &reference, 4).is_empty());

        let gap = Watcher::new("gap", "");
        gap.items.lock().extend([Item::Events(vec![reference[0].clone()]), Item::Events(vec![reference[2].clone()])]);
        assert_eq!(watcher(&gap, &reference, 4)[0].kind, "watch-mismatch");

        let late = Watcher::new("late", "");
        late.items.lock().extend([Item::Events(vec![reference[0].clone()]), Item::Progress(3), Item::Events(reference[1..].to_vec())]);
        assert_eq!(watcher(&late, &reference, 4)[0].kind, "watch-after-progress");

        let short = Watcher::new("short", "");
        short.items.lock().push(Item::Events(reference[..1].to_vec()));
        assert_eq!(watcher(&short, &reference, 4)[0].kind, "watch-missed");

        let bad_prev = vec![put(2, "a", "1", None), put(3, "a", "2", None)];
        assert_eq!(super::reference(&bad_prev)[0].kind, "watch-prev-kv");
    }
}

//! Linearizability of one register (one key): the Wing–Gong–Lowe search with
//! Lowe's memoization, as porcupine implements it. Operations whose outcome is
//! unknown (`info`) are treated as Jepsen does: they may take effect at any
//! point after their invocation, or never — modelled by a return at infinity
//! and a step that accepts either outcome.

use std::collections::HashSet;

/// A register operation with what the client saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegOp {
    /// A read and its value (`None`: the key was absent).
    Read(Option<i64>),
    Write(i64),
    /// Compare-and-set from `from` to `to`; `ok` is whether it succeeded,
    /// `None` when unknown.
    Cas { from: Option<i64>, to: i64, ok: Option<bool> },
}

/// One completed (or unknown) call on the register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub op: RegOp,
    pub start: u64,
    /// `u64::MAX` for an operation that never returned (`info`).
    pub end: u64,
    /// Where it came from (an index into the caller's history).
    pub id: usize,
}

type State = Option<i64>;

fn step(state: State, op: &RegOp) -> Option<State> {
    match *op {
        RegOp::Read(v) => (state == v).then_some(state),
        RegOp::Write(v) => Some(Some(v)),
        RegOp::Cas { from, to, ok: Some(true) } => (state == from).then_some(Some(to)),
        RegOp::Cas { from, ok: Some(false), .. } => (state != from).then_some(state),
        RegOp::Cas { from, to, ok: None } => Some(if state == from { Some(to) } else { state }),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    NotLinearizable,
    /// The search gave up after its step budget.
    Unknown,
}

const NIL: usize = usize::MAX;

/// Checks `calls` (one register starting absent) within `budget` search steps.
pub fn check(calls: &[Call], budget: u64) -> Verdict {
    let n = calls.len();
    if n == 0 {
        return Verdict::Linearizable;
    }
    // Events: (time, is_return, call). Calls sort before returns at equal times.
    let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * n);
    for (i, c) in calls.iter().enumerate() {
        events.push((c.start, false, i));
        events.push((c.end, true, i));
    }
    events.sort();
    // A doubly linked list over the events; node 0 is the head.
    let m = events.len() + 1;
    let mut next = vec![NIL; m];
    let mut prev = vec![NIL; m];
    let mut ret_node = vec![0usize; n];
    for (k, &(_, is_ret, i)) in events.iter().enumerate() {
        let node = k + 1;
        prev[node] = k;
        next[k] = node;
        if is_ret {
            ret_node[i] = node;
        }
    }
    let event_at = |node: usize| events[node - 1];
    let unlink = |next: &mut Vec<usize>, prev: &mut Vec<usize>, node: usize| {
        let (p, nx) = (prev[node], next[node]);
        next[p] = nx;
        if nx != NIL {
            prev[nx] = p;
        }
    };
    let relink = |next: &mut Vec<usize>, prev: &mut Vec<usize>, node: usize| {
        let (p, nx) = (prev[node], next[node]);
        next[p] = node;
        if nx != NIL {
            prev[nx] = node;
        }
    };

    let words = n.div_ceil(64);
    let mut linearized = vec![0u64; words];
    let mut cache: HashSet<(Vec<u64>, State)> = HashSet::new();
    let mut stack: Vec<(usize, State)> = Vec::new();
    let mut state: State = None;
    let mut node = next[0];
    let mut steps = 0u64;
    while next[0] != NIL {
        steps += 1;
        if steps > budget {
            return Verdict::Unknown;
        }
        if node == NIL {
            // Cannot happen: a return event always ends the list.
            return Verdict::NotLinearizable;
        }
        let (_, is_ret, i) = event_at(node);
        if !is_ret {
            if let Some(new_state) = step(state, &calls[i].op) {
                let mut lin = linearized.clone();
                lin[i / 64] |= 1 << (i % 64);
                if cache.insert((lin.clone(), new_state)) {
                    stack.push((node, state));
                    state = new_state;
                    linearized = lin;
                    unlink(&mut next, &mut prev, node);
                    unlink(&mut next, &mut prev, ret_node[i]);
                    node = next[0];
                    continue;
                }
            }
            node = next[node];
        } else {
            // A return whose call is not linearized yet: backtrack.
            let Some((call_node, old_state)) = stack.pop() else {
                return Verdict::NotLinearizable;
            };
            let (_, _, j) = event_at(call_node);
            state = old_state;
            linearized[j / 64] &= !(1 << (j % 64));
            relink(&mut next, &mut prev, ret_node[j]);
            relink(&mut next, &mut prev, call_node);
            node = next[call_node];
        }
    }
    Verdict::Linearizable
}

/// The smallest sub-history still not linearizable that removing single
/// operations greedily finds (every remaining operation is needed).
/// Every value read or compared against still has an operation that could
/// have written it: a sub-history must not fail merely because its writes
/// were dropped.
pub fn minimize(calls: &[Call], budget: u64) -> Vec<Call> {
    let mut kept: Vec<Call> = calls.to_vec();
    let mut i = 0;
    while i < kept.len() {
        let mut without = kept.clone();
        without.remove(i);
        if self_contained(&without) && check(&without, budget) == Verdict::NotLinearizable {
            kept = without;
        } else {
            i += 1;
        }
    }
    kept
}

fn self_contained(calls: &[Call]) -> bool {
    let written = |v: i64| {
        calls.iter().any(|c| matches!(c.op, RegOp::Write(w) | RegOp::Cas { to: w, ok: Some(true) | None, .. } if w == v))
    };
    calls.iter().all(|c| match c.op {
        RegOp::Read(Some(v)) | RegOp::Cas { from: Some(v), ok: Some(true), .. } => written(v),
        _ => true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(op: RegOp, start: u64, end: u64) -> Call {
        Call { op, start, end, id: 0 }
    }

    const B: u64 = 1_000_000;

    #[test]
    fn sequential_history_is_linearizable() {
        let h = [
            call(RegOp::Write(1), 0, 1),
            call(RegOp::Read(Some(1)), 2, 3),
            call(RegOp::Cas { from: Some(1), to: 2, ok: Some(true) }, 4, 5),
            call(RegOp::Cas { from: Some(1), to: 3, ok: Some(false) }, 6, 7),
            call(RegOp::Read(Some(2)), 8, 9),
        ];
        assert_eq!(check(&h, B), Verdict::Linearizable);
    }

    #[test]
    fn concurrent_read_may_see_either_value() {
        let h = [
            call(RegOp::Write(1), 0, 1),
            call(RegOp::Write(2), 2, 10),
            call(RegOp::Read(Some(2)), 3, 4),
            call(RegOp::Read(Some(2)), 5, 6),
        ];
        assert_eq!(check(&h, B), Verdict::Linearizable);
    }

    #[test]
    fn stale_read_is_caught() {
        // The write of 2 completed before the read began, yet the read saw 1.
        let h = [
            call(RegOp::Write(1), 0, 1),
            call(RegOp::Write(2), 2, 3),
            call(RegOp::Read(Some(1)), 4, 5),
        ];
        assert_eq!(check(&h, B), Verdict::NotLinearizable);
        // The write of 1 explains the read; the write of 2 makes it stale.
        let min = minimize(&h, B);
        assert_eq!(min.len(), 3, "every op is needed: {min:?}");
        // A read of a value never written is not linearizable on its own,
        // but minimizing never reduces a history to that.
        let mut padded = h.to_vec();
        padded.insert(0, call(RegOp::Read(None), 0, 0));
        assert_eq!(minimize(&padded, B).len(), 3);
    }

    #[test]
    fn reads_may_not_go_back_in_time() {
        let h = [
            call(RegOp::Write(1), 0, 1),
            call(RegOp::Write(2), 2, 20),
            call(RegOp::Read(Some(2)), 3, 4),
            call(RegOp::Read(Some(1)), 5, 6),
        ];
        assert_eq!(check(&h, B), Verdict::NotLinearizable);
    }

    #[test]
    fn lost_acknowledged_write_is_caught() {
        let h = [call(RegOp::Write(7), 0, 1), call(RegOp::Read(None), 2, 3)];
        assert_eq!(check(&h, B), Verdict::NotLinearizable);
    }

    #[test]
    fn unknown_write_may_or_may_not_happen() {
        let info = u64::MAX;
        // Seen by a later read: it happened.
        let seen = [call(RegOp::Write(1), 0, 1), call(RegOp::Write(2), 2, info), call(RegOp::Read(Some(2)), 10, 11)];
        assert_eq!(check(&seen, B), Verdict::Linearizable);
        // Never seen: it did not happen (or not yet).
        let unseen = [call(RegOp::Write(1), 0, 1), call(RegOp::Write(2), 2, info), call(RegOp::Read(Some(1)), 10, 11)];
        assert_eq!(check(&unseen, B), Verdict::Linearizable);
        // But it cannot take effect before it was invoked.
        let early = [call(RegOp::Read(Some(2)), 0, 1), call(RegOp::Write(2), 2, info)];
        assert_eq!(check(&early, B), Verdict::NotLinearizable);
    }

    #[test]
    fn unknown_cas_applies_only_if_it_could() {
        let info = u64::MAX;
        let h = [
            call(RegOp::Write(1), 0, 1),
            call(RegOp::Cas { from: Some(5), to: 9, ok: None }, 2, info),
            call(RegOp::Read(Some(9)), 10, 11),
        ];
        assert_eq!(check(&h, B), Verdict::NotLinearizable);
    }
}

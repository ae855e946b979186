//! Who may touch which keys: etcd's permission intervals (`[key, range_end)`,
//! merged per user as `unifiedRangePermissions` merges them), the gate each
//! kind of call passes ([`Access`]), which commands need the root role, and
//! the walk that checks one request's keys ([`Checker`]).

use hub_proto::etcdserverpb::{request_op::Request, DeleteRangeRequest, PutRequest, TxnRequest};

use crate::command::{AuthCommand, Command};
use crate::error::EtcdError;
use crate::key_range::KeyRange;
use crate::lease::Lessor;

/// Sorts and merges intervals that overlap or touch.
pub(super) fn merge(mut ivs: Vec<KeyRange>) -> Vec<KeyRange> {
    ivs.sort();
    let mut out: Vec<KeyRange> = Vec::with_capacity(ivs.len());
    for KeyRange { start: b, end: e } in ivs {
        if let Some(KeyRange { end: last_end, .. }) = out.last_mut() {
            let touches = match last_end {
                None => true,
                Some(le) => b <= *le,
            };
            if touches {
                if let (Some(le), new) = (last_end.as_ref(), &e) {
                    *last_end = match new {
                        None => None,
                        Some(ne) => Some(if ne > le { ne.clone() } else { le.clone() }),
                    };
                }
                continue;
            }
        }
        out.push(KeyRange { start: b, end: e });
    }
    out
}

/// Whether the merged intervals cover all of `want`.
pub(super) fn covers(merged: &[KeyRange], want: &KeyRange) -> bool {
    if want.is_empty() {
        return false;
    }
    let (begin, end) = (&want.start, &want.end);
    // Merged intervals neither overlap nor touch: one must hold all of `want`.
    merged.iter().take_while(|r| r.start <= *begin).any(|r| match (&r.end, end) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(e), Some(want_end)) => e >= want_end,
    })
}

/// A user's permissions from all its roles, merged (etcd's `unifiedRangePermissions`).
#[derive(Debug, Default)]
pub(super) struct Ranges {
    pub(super) read: Vec<KeyRange>,
    pub(super) write: Vec<KeyRange>,
}

/// Commands only the root role may have applied.
pub(super) fn needs_root(c: Command<'_>) -> bool {
    match c {
        // Changes (and lists) of users, roles and the enabled flag.
        Command::Auth(a) => match a {
            AuthCommand::Enable
            | AuthCommand::Disable
            | AuthCommand::UserAdd(_)
            | AuthCommand::UserDelete(_)
            | AuthCommand::UserChangePassword(_)
            | AuthCommand::UserGrantRole(_)
            | AuthCommand::UserRevokeRole(_)
            | AuthCommand::RoleAdd(_)
            | AuthCommand::RoleGrantPermission(_)
            | AuthCommand::RoleRevokePermission(_)
            | AuthCommand::RoleDelete(_)
            | AuthCommand::UserList
            | AuthCommand::RoleList => true,
            // A password was checked; a user may read its own user and roles.
            AuthCommand::Authenticate(_) | AuthCommand::UserGet(_) | AuthCommand::RoleGet(_) => false,
        },
        // etcd 3.6 compacts only for root (3.4 did for any user); a
        // downgrade is the root role's too.
        Command::Compaction(_) | Command::DowngradeInfoSet(_) => true,
        // Arming or disarming an alarm; listing them needs a user.
        Command::Alarm(a) => a.action != 0,
        Command::Range(_)
        | Command::Put(_)
        | Command::DeleteRange(_)
        | Command::Txn(_)
        | Command::LeaseGrant(_)
        | Command::LeaseRevoke(_)
        | Command::Unknown => false,
    }
}

/// What a call needs of its caller before anything else is looked at (etcd
/// 3.6's API-layer gates); what it reads or writes is authorized on top.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No gate: its keys are checked where it is read or applied, an auth
    /// change where it is applied, Authenticate checks a password.
    Anyone,
    /// A user, any user (etcd's `requireAuthInfo`): leases, Status, alarm
    /// lists, the member list.
    User,
    /// The root role (etcd's `AuthAdmin.isPermitted`, `IsAdminPermitted`):
    /// compaction, defragmentation, hashes, snapshots, leader moves,
    /// arming alarms, membership changes.
    Admin,
}

/// Checks one non-root user's access, request by request.
pub(super) struct Checker<'a> {
    pub(super) ranges: Option<&'a Ranges>,
    pub(super) lessor: &'a Lessor,
}

impl Checker<'_> {
    fn allowed(&self, write: bool, key: &[u8], range_end: &[u8]) -> Result<(), EtcdError> {
        let Some(r) = self.ranges else { return Err(EtcdError::PermissionDenied) };
        let merged = if write { &r.write } else { &r.read };
        if covers(merged, &KeyRange::new(key, range_end)) {
            Ok(())
        } else {
            Err(EtcdError::PermissionDenied)
        }
    }

    pub(super) fn read(&self, key: &[u8], range_end: &[u8]) -> Result<(), EtcdError> {
        self.allowed(false, key, range_end)
    }

    /// A lease may be attached or revoked only by who may write all its keys.
    pub(super) fn lease(&self, id: i64) -> Result<(), EtcdError> {
        match self.lessor.lookup(id) {
            Some(lease) => lease.keys.iter().try_for_each(|k| self.allowed(true, k, &[])),
            None => Ok(()),
        }
    }

    pub(super) fn put(&self, p: &PutRequest) -> Result<(), EtcdError> {
        self.allowed(true, &p.key, &[])?;
        self.lease(p.lease)?;
        if p.prev_kv {
            self.read(&p.key, &[])?;
        }
        Ok(())
    }

    pub(super) fn delete(&self, d: &DeleteRangeRequest) -> Result<(), EtcdError> {
        self.allowed(true, &d.key, &d.range_end)?;
        if d.prev_kv {
            self.read(&d.key, &d.range_end)?;
        }
        Ok(())
    }

    /// Every compare, and every op of both branches, nested txns included.
    pub(super) fn txn(&self, t: &TxnRequest) -> Result<(), EtcdError> {
        for c in &t.compare {
            self.read(&c.key, &c.range_end)?;
        }
        for op in t.success.iter().chain(&t.failure) {
            match &op.request {
                Some(Request::RequestRange(q)) => self.read(&q.key, &q.range_end)?,
                Some(Request::RequestPut(p)) => self.put(p)?,
                Some(Request::RequestDeleteRange(d)) => self.delete(d)?,
                Some(Request::RequestTxn(nested)) => self.txn(nested)?,
                None => {}
            }
        }
        Ok(())
    }

    /// The keys `c` reads or writes.
    pub(super) fn command(&self, c: Command<'_>) -> Result<(), EtcdError> {
        match c {
            Command::Range(q) => self.read(&q.key, &q.range_end),
            Command::Put(p) => self.put(p),
            Command::DeleteRange(d) => self.delete(d),
            Command::Txn(t) => self.txn(t),
            Command::LeaseRevoke(l) => self.lease(l.id),
            Command::Compaction(_)
            | Command::LeaseGrant(_)
            | Command::Alarm(_)
            | Command::Auth(_)
            | Command::DowngradeInfoSet(_)
            | Command::Unknown => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iv(k: &str, e: &str) -> KeyRange {
        KeyRange::new(k.as_bytes(), e.as_bytes())
    }

    #[test]
    fn coverage_follows_etcds_intervals() {
        let merged = merge(vec![iv("a", "c"), iv("c", "e"), iv("x", ""), iv("z", "\0")]);
        assert_eq!(merged.len(), 3);
        assert!(covers(&merged, &iv("a", "e")));
        assert!(covers(&merged, &iv("b", "")));
        assert!(covers(&merged, &iv("x", "")));
        assert!(!covers(&merged, &iv("x", "y")));
        assert!(covers(&merged, &iv("z", "\0")));
        assert!(covers(&merged, &iv("zz", "zzz")));
        assert!(!covers(&merged, &iv("a", "f")));
        assert!(!covers(&merged, &iv("y", "")));
        assert!(!covers(&merged, &iv("c", "b")), "an empty range is refused, as etcd does");
        assert!(!covers(&[], &iv("a", "")));
    }
}

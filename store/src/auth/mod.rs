//! etcd's auth store: users, roles, key-range permissions, the enabled flag
//! and the auth revision, plus the simple tokens each member keeps in memory.
//!
//! Semantics are etcd 3.4's `auth/store.go`; records are etcd's (`authpb.User`
//! and `authpb.Role` under the user or role name, `authEnabled` and
//! `authRevision` in `auth`), so snapshots carry them to and from etcd.
//!
//! Authorization has one entry point per kind of access, all built on one
//! walk (the checker in `permission.rs`, with etcd's permission intervals): a request is checked whole — every compare and every op
//! of both branches of every txn, nested or not, with what each op reads
//! (`prev_kv`) and attaches (a lease whose keys it may not write) — so a
//! request wrapped in a txn is checked exactly as the same request sent
//! plainly. etcd skipped some of these (GHSA-rfx7-8w68-q57q, CVE-2026-44283);
//! hub does not.
//!
//! Before that, a call passes the gate of its [`Access`]: etcd 3.6's rule
//! that leases, Status, alarm lists and the member list need a user, and
//! compaction and the maintenance and membership changes need the root role
//! (etcd 3.4 answered several of them to anyone).
//!
//! Passwords never reach this module: the service layer hashes them with
//! bcrypt before proposing and checks them against [`AuthStore::user`].

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use hub_proto::authpb::{permission::Type as PermType, Permission, Role, User, UserAddOptions};
use hub_proto::etcdserverpb::RequestHeader;
use prost::Message;

use crate::backend::{Backend, Table, WriteBatch};
use crate::command::{AuthCommand, Command};
use crate::error::{EtcdError, StoreError};
use crate::lease::Lessor;

mod permission;

pub use permission::Access;
use crate::key_range::KeyRange;
use permission::{merge, needs_root, Checker, Ranges};

/// The user and the role that may do everything.
pub const ROOT: &str = "root";
const ENABLED_KEY: &[u8] = b"authEnabled";
const REVISION_KEY: &[u8] = b"authRevision";
/// etcd's default `--auth-token-ttl`.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(300);

/// Who sends a request (etcd's `AuthInfo`): the user, and the auth revision
/// its credentials were checked at. Revision 0 means no user at all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthInfo {
    pub username: String,
    pub revision: u64,
}

impl AuthInfo {
    pub fn from_header(h: &RequestHeader) -> Self {
        AuthInfo { username: h.username.clone(), revision: h.auth_revision }
    }

    /// The header a proposal carries, so the apply path checks it again.
    pub fn header(&self) -> RequestHeader {
        RequestHeader { id: 0, username: self.username.clone(), auth_revision: self.revision }
    }
}

struct SimpleToken {
    user: String,
    deadline: Instant,
}

pub struct AuthStore {
    enabled: bool,
    revision: u64,
    users: BTreeMap<String, User>,
    roles: BTreeMap<String, Role>,
    ranges: HashMap<String, Ranges>,
    tokens: HashMap<String, SimpleToken>,
    token_ttl: Duration,
}

fn corrupt(what: &str, key: &[u8], e: prost::DecodeError) -> StoreError {
    StoreError::Corrupt(format!("{what} {:?}: {e}", String::from_utf8_lossy(key)))
}

fn has_root_role(user: &User) -> bool {
    user.roles.iter().any(|r| r == ROOT)
}

impl AuthStore {
    /// Reads the auth tables; a fresh backend is etcd's fresh store (disabled, revision 1).
    pub fn load(backend: &dyn Backend) -> Result<Self, StoreError> {
        let mut store = AuthStore {
            enabled: false,
            revision: 1,
            users: BTreeMap::new(),
            roles: BTreeMap::new(),
            ranges: HashMap::new(),
            tokens: HashMap::new(),
            token_ttl: DEFAULT_TOKEN_TTL,
        };
        let mut failure = None;
        backend.scan(Table::Auth, &[], None, &mut |k, v| {
            match k {
                ENABLED_KEY => store.enabled = v == [1],
                REVISION_KEY => match v.try_into() {
                    Ok(b) => store.revision = u64::from_be_bytes(b),
                    Err(_) => failure = Some(StoreError::Corrupt(format!("auth revision {v:?}"))),
                },
                _ => {}
            }
            true
        })?;
        backend.scan(Table::AuthUsers, &[], None, &mut |k, v| {
            match User::decode(v) {
                Ok(u) => drop(store.users.insert(String::from_utf8_lossy(k).into_owned(), u)),
                Err(e) => failure = Some(corrupt("user", k, e)),
            }
            true
        })?;
        backend.scan(Table::AuthRoles, &[], None, &mut |k, v| {
            match Role::decode(v) {
                Ok(r) => drop(store.roles.insert(String::from_utf8_lossy(k).into_owned(), r)),
                Err(e) => failure = Some(corrupt("role", k, e)),
            }
            true
        })?;
        if let Some(e) = failure {
            return Err(e);
        }
        store.refresh_ranges();
        Ok(store)
    }

    /// Takes over the simple tokens (and their TTL) of the store this one
    /// replaces, for the users that still exist.
    pub(crate) fn keep_tokens_of(&mut self, old: AuthStore) {
        self.token_ttl = old.token_ttl;
        self.tokens = old.tokens;
        let users = &self.users;
        self.tokens.retain(|_, t| users.contains_key(&t.user));
        if !self.enabled {
            self.tokens.clear();
        }
    }

    pub fn set_token_ttl(&mut self, ttl: Duration) {
        self.token_ttl = ttl;
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    pub fn revision(&self) -> u64 {
        self.revision
    }

    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.get(name)
    }

    /// Users in name order.
    pub fn users(&self) -> impl Iterator<Item = &User> {
        self.users.values()
    }

    pub fn role(&self, name: &str) -> Option<&Role> {
        self.roles.get(name)
    }

    /// Roles in name order.
    pub fn roles(&self) -> impl Iterator<Item = &Role> {
        self.roles.values()
    }

    /// Who a simple token stands for, renewing its TTL as etcd does on each use.
    pub fn simple_token_user(&mut self, token: &str, now: Instant) -> Option<AuthInfo> {
        let ttl = self.token_ttl;
        let entry = self.tokens.get_mut(token)?;
        if entry.deadline <= now {
            self.tokens.remove(token);
            return None;
        }
        entry.deadline = now + ttl;
        Some(AuthInfo { username: entry.user.clone(), revision: self.revision })
    }

    fn refresh_ranges(&mut self) {
        self.ranges = self
            .users
            .iter()
            .map(|(name, user)| {
                let (mut read, mut write) = (Vec::new(), Vec::new());
                for perm in user.roles.iter().filter_map(|r| self.roles.get(r)).flat_map(|r| &r.key_permission) {
                    let iv = KeyRange::new(&perm.key, &perm.range_end);
                    match PermType::try_from(perm.perm_type) {
                        Ok(PermType::Read) => read.push(iv),
                        Ok(PermType::Write) => write.push(iv),
                        Ok(PermType::Readwrite) => {
                            read.push(iv.clone());
                            write.push(iv);
                        }
                        Err(_) => {}
                    }
                }
                (name.clone(), Ranges { read: merge(read), write: merge(write) })
            })
            .collect();
    }

    /// etcd's `IsAdminPermitted`: the user must hold the root role.
    pub fn check_admin(&self, who: &AuthInfo) -> Result<(), EtcdError> {
        if !self.enabled {
            return Ok(());
        }
        if who.username.is_empty() {
            return Err(EtcdError::UserEmpty);
        }
        let user = self.users.get(&who.username).ok_or(EtcdError::UserNotFound)?;
        if has_root_role(user) {
            Ok(())
        } else {
            Err(EtcdError::PermissionDenied)
        }
    }

    /// The gate of [`Access`], while auth is enabled.
    pub fn check_access(&self, who: &AuthInfo, access: Access) -> Result<(), EtcdError> {
        match access {
            Access::Anyone => Ok(()),
            Access::User if self.enabled && who.username.is_empty() => Err(EtcdError::UserEmpty),
            Access::User => Ok(()),
            Access::Admin => self.check_admin(who),
        }
    }

    /// Runs `check` for a known user with a current auth revision; root
    /// passes without it. Nothing is checked while auth is disabled.
    fn as_user(&self, who: &AuthInfo, lessor: &Lessor, check: impl FnOnce(&Checker) -> Result<(), EtcdError>)
        -> Result<(), EtcdError> {
        if !self.enabled {
            return Ok(());
        }
        if who.revision == 0 {
            return Err(EtcdError::UserEmpty);
        }
        if who.revision < self.revision {
            tracing::warn!(
                user = %who.username, request_revision = who.revision, current = self.revision,
                "request auth revision is older than the auth store's"
            );
            return Err(EtcdError::AuthOldRevision);
        }
        let user = self.users.get(&who.username).ok_or(EtcdError::PermissionDenied)?;
        if has_root_role(user) {
            return Ok(());
        }
        check(&Checker { ranges: self.ranges.get(&who.username), lessor })
    }

    /// Whether `who` may have `req` applied: the one check every proposal
    /// passes at apply time (and reads before they are answered).
    pub fn authorize(&self, who: &AuthInfo, c: Command<'_>, lessor: &Lessor) -> Result<(), EtcdError> {
        if needs_root(c) {
            return self.check_admin(who);
        }
        if matches!(c, Command::Auth(AuthCommand::Authenticate(_)) | Command::LeaseGrant(_)) {
            // The password was checked before proposing. A lease is granted
            // to any user (the service checked there is one), as by etcd: it
            // holds no key until a put the writer may make attaches one.
            return Ok(());
        }
        // Everything else (alarm reads) needs a known user at least; the key-range checks come on top.
        self.as_user(who, lessor, |checker| checker.command(c))
    }

    /// Read permission on `[key, range_end)` (a watch, a lease's keys).
    pub fn authorize_read(&self, who: &AuthInfo, key: &[u8], range_end: &[u8], lessor: &Lessor)
        -> Result<(), EtcdError> {
        self.as_user(who, lessor, |c| c.read(key, range_end))
    }

    /// Renewing lease `id`: who may write all its keys (etcd's `checkLeaseRenew`).
    pub fn authorize_lease_renew(&self, who: &AuthInfo, id: i64, lessor: &Lessor) -> Result<(), EtcdError> {
        self.as_user(who, lessor, |c| c.lease(id))
    }

    /// Listing the leases: who may read every key of every lease (etcd 3.6's `checkLeaseLeases`).
    pub fn authorize_lease_list(&self, who: &AuthInfo, lessor: &Lessor) -> Result<(), EtcdError> {
        self.as_user(who, lessor, |c| lessor.leases().flat_map(|l| &l.keys).try_for_each(|k| c.read(k, &[])))
    }

    /// Any known user with a current revision (a lease's time to live).
    pub fn authorize_user(&self, who: &AuthInfo, lessor: &Lessor) -> Result<(), EtcdError> {
        self.as_user(who, lessor, |_| Ok(()))
    }

    /// Whether `user` holds `role` (a user may read its own roles).
    pub fn has_role(&self, user: &str, role: &str) -> bool {
        self.users.get(user).is_some_and(|u| u.roles.iter().any(|r| r == role))
    }

    fn bump_revision(&mut self, batch: &mut WriteBatch) {
        self.revision += 1;
        batch.put(Table::Auth, REVISION_KEY.to_vec(), self.revision.to_be_bytes().to_vec());
    }

    fn put_user(&mut self, user: User, batch: &mut WriteBatch) {
        batch.put(Table::AuthUsers, user.name.clone(), user.encode_to_vec());
        self.users.insert(String::from_utf8_lossy(&user.name).into_owned(), user);
    }

    fn put_role(&mut self, role: Role, batch: &mut WriteBatch) {
        batch.put(Table::AuthRoles, role.name.clone(), role.encode_to_vec());
        self.roles.insert(String::from_utf8_lossy(&role.name).into_owned(), role);
    }

    fn existing_user(&self, name: &str) -> Result<User, EtcdError> {
        self.users.get(name).cloned().ok_or(EtcdError::UserNotFound)
    }

    fn existing_role(&self, name: &str) -> Result<Role, EtcdError> {
        self.roles.get(name).cloned().ok_or(EtcdError::RoleNotFound)
    }

    /// Applies an auth command into `batch`; the in-memory state changes at
    /// once, so the caller commits the batch or reloads. Returns the simple
    /// token an Authenticate assigned.
    pub(crate) fn apply(&mut self, c: AuthCommand<'_>, index: u64, now: Instant, batch: &mut WriteBatch)
        -> Result<Option<String>, EtcdError> {
        match c {
            AuthCommand::Enable => {
                if !self.enabled {
                    let root = self.users.get(ROOT).ok_or(EtcdError::RootUserNotExist)?;
                    if !has_root_role(root) {
                        return Err(EtcdError::RootRoleNotExist);
                    }
                    batch.put(Table::Auth, ENABLED_KEY.to_vec(), vec![1]);
                    self.enabled = true;
                    tracing::info!("enabled authentication");
                }
            }
            AuthCommand::Disable => {
                if self.enabled {
                    batch.put(Table::Auth, ENABLED_KEY.to_vec(), vec![0]);
                    self.bump_revision(batch);
                    self.enabled = false;
                    self.tokens.clear();
                    tracing::info!("disabled authentication");
                }
            }
            AuthCommand::Authenticate(a) => {
                if !self.enabled {
                    return Err(EtcdError::AuthNotEnabled);
                }
                let user = self.users.get(&a.name).ok_or(EtcdError::AuthFailed)?;
                if user.options.as_ref().is_some_and(|o| o.no_password) {
                    return Err(EtcdError::AuthFailed);
                }
                if a.simple_token.is_empty() {
                    return Ok(None);
                }
                self.tokens.retain(|_, t| t.deadline > now);
                let token = format!("{}.{index}", a.simple_token);
                self.tokens.insert(token.clone(), SimpleToken { user: a.name.clone(), deadline: now + self.token_ttl });
                return Ok(Some(token));
            }
            AuthCommand::UserAdd(a) => {
                if a.name.is_empty() {
                    return Err(EtcdError::UserEmpty);
                }
                if self.users.contains_key(&a.name) {
                    return Err(EtcdError::UserAlreadyExist);
                }
                let options = a.options.clone().unwrap_or(UserAddOptions { no_password: false });
                let password = if options.no_password { Vec::new() } else { a.hashed_password.clone().into_bytes() };
                self.put_user(User { name: a.name.clone().into_bytes(), password, roles: Vec::new(), options: Some(options) }, batch);
                self.bump_revision(batch);
                tracing::info!(user = %a.name, "added a user");
            }
            AuthCommand::UserDelete(a) => {
                if self.enabled && a.name == ROOT {
                    return Err(EtcdError::InvalidAuthMgmt);
                }
                self.existing_user(&a.name)?;
                self.users.remove(&a.name);
                batch.delete(Table::AuthUsers, a.name.clone().into_bytes());
                self.tokens.retain(|_, t| t.user != a.name);
                self.bump_revision(batch);
                tracing::info!(user = %a.name, "deleted a user");
            }
            AuthCommand::UserChangePassword(a) => {
                let mut user = self.existing_user(&a.name)?;
                user.password = a.hashed_password.clone().into_bytes();
                self.put_user(user, batch);
                self.tokens.retain(|_, t| t.user != a.name);
                self.bump_revision(batch);
                tracing::info!(user = %a.name, "changed a user's password");
            }
            AuthCommand::UserGrantRole(a) => {
                let mut user = self.existing_user(&a.user)?;
                if a.role != ROOT {
                    self.existing_role(&a.role)?;
                }
                if !user.roles.contains(&a.role) {
                    user.roles.push(a.role.clone());
                    user.roles.sort();
                    self.put_user(user, batch);
                    self.bump_revision(batch);
                    tracing::info!(user = %a.user, role = %a.role, "granted a role to a user");
                }
            }
            AuthCommand::UserRevokeRole(a) => {
                if self.enabled && a.name == ROOT && a.role == ROOT {
                    return Err(EtcdError::InvalidAuthMgmt);
                }
                let mut user = self.existing_user(&a.name)?;
                let before = user.roles.len();
                user.roles.retain(|r| *r != a.role);
                if user.roles.len() == before {
                    return Err(EtcdError::RoleNotGranted);
                }
                self.put_user(user, batch);
                self.bump_revision(batch);
                tracing::info!(user = %a.name, role = %a.role, "revoked a role from a user");
            }
            AuthCommand::RoleAdd(a) => {
                if a.name.is_empty() {
                    return Err(EtcdError::RoleEmpty);
                }
                if self.roles.contains_key(&a.name) {
                    return Err(EtcdError::RoleAlreadyExist);
                }
                self.put_role(Role { name: a.name.clone().into_bytes(), key_permission: Vec::new() }, batch);
                self.bump_revision(batch);
                tracing::info!(role = %a.name, "added a role");
            }
            AuthCommand::RoleDelete(a) => {
                if self.enabled && a.role == ROOT {
                    return Err(EtcdError::InvalidAuthMgmt);
                }
                self.existing_role(&a.role)?;
                self.roles.remove(&a.role);
                batch.delete(Table::AuthRoles, a.role.clone().into_bytes());
                let holders: Vec<User> = self.users.values().filter(|u| u.roles.contains(&a.role)).cloned().collect();
                for mut user in holders {
                    user.roles.retain(|r| *r != a.role);
                    self.put_user(user, batch);
                }
                self.bump_revision(batch);
                tracing::info!(role = %a.role, "deleted a role");
            }
            AuthCommand::RoleGrantPermission(a) => {
                let mut role = self.existing_role(&a.name)?;
                let perm = a.perm.clone().unwrap_or_default();
                match role.key_permission.iter_mut().find(|p| p.key == perm.key && p.range_end == perm.range_end) {
                    Some(existing) => existing.perm_type = perm.perm_type,
                    None => {
                        role.key_permission.push(Permission { perm_type: perm.perm_type, key: perm.key, range_end: perm.range_end });
                        role.key_permission.sort_by(|x, y| x.key.cmp(&y.key));
                    }
                }
                self.put_role(role, batch);
                self.bump_revision(batch);
                tracing::info!(role = %a.name, "granted a permission to a role");
            }
            AuthCommand::RoleRevokePermission(a) => {
                let mut role = self.existing_role(&a.role)?;
                let before = role.key_permission.len();
                role.key_permission.retain(|p| p.key != a.key || p.range_end != a.range_end);
                if role.key_permission.len() == before {
                    return Err(EtcdError::PermissionNotGranted);
                }
                self.put_role(role, batch);
                self.bump_revision(batch);
                tracing::info!(role = %a.role, "revoked a permission from a role");
            }
            // Read locally by the service: proposed for their check only.
            AuthCommand::UserGet(_) | AuthCommand::RoleGet(_) | AuthCommand::UserList | AuthCommand::RoleList => {}
        }
        self.refresh_ranges();
        Ok(None)
    }
}

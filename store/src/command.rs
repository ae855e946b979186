//! One raft command, decoded once.
//!
//! The log holds etcd's `InternalRaftRequest`: a message with one optional
//! field per request kind. [`Command::of`] picks the field that is set, in the
//! order etcd's applier dispatches on them, and every place that acts on a
//! command — apply (`apply.rs`), authorization and the auth store (`auth.rs`),
//! the alarms (`alarm.rs`), the apply metrics (`metrics.rs`) — matches the
//! result exhaustively: a new kind of request does not compile until each of
//! them says what it does with it.

use hub_proto::etcdserverpb::{
    AlarmRequest, AuthRoleAddRequest, AuthRoleDeleteRequest, AuthRoleGetRequest, AuthRoleGrantPermissionRequest,
    AuthRoleRevokePermissionRequest, AuthUserAddRequest, AuthUserChangePasswordRequest, AuthUserDeleteRequest,
    AuthUserGetRequest, AuthUserGrantRoleRequest, AuthUserRevokeRoleRequest, CompactionRequest, DeleteRangeRequest,
    DowngradeInfoSetRequest,
    InternalAuthenticateRequest, InternalRaftRequest, LeaseGrantRequest, LeaseRevokeRequest, PutRequest, RangeRequest,
    TxnRequest,
};

/// What one log entry asks the state machine to do.
#[derive(Debug, Clone, Copy)]
pub enum Command<'a> {
    Range(&'a RangeRequest),
    Put(&'a PutRequest),
    DeleteRange(&'a DeleteRangeRequest),
    Txn(&'a TxnRequest),
    Compaction(&'a CompactionRequest),
    LeaseGrant(&'a LeaseGrantRequest),
    LeaseRevoke(&'a LeaseRevokeRequest),
    Alarm(&'a AlarmRequest),
    /// A downgrade enabled or cancelled ([`crate::schema`]).
    DowngradeInfoSet(&'a DowngradeInfoSetRequest),
    /// Applied by the auth store (`auth.rs`).
    Auth(AuthCommand<'a>),
    /// No field hub proposes (an empty entry, etcd's v2 or lease checkpoint
    /// requests): applied as nothing, as hub never proposes one.
    Unknown,
}

/// The commands the auth store applies.
#[derive(Debug, Clone, Copy)]
pub enum AuthCommand<'a> {
    /// A password checked before proposing; the entry assigns a simple token.
    Authenticate(&'a InternalAuthenticateRequest),
    Enable,
    Disable,
    UserAdd(&'a AuthUserAddRequest),
    UserDelete(&'a AuthUserDeleteRequest),
    UserChangePassword(&'a AuthUserChangePasswordRequest),
    UserGrantRole(&'a AuthUserGrantRoleRequest),
    UserGet(&'a AuthUserGetRequest),
    UserRevokeRole(&'a AuthUserRevokeRoleRequest),
    RoleAdd(&'a AuthRoleAddRequest),
    RoleGrantPermission(&'a AuthRoleGrantPermissionRequest),
    RoleGet(&'a AuthRoleGetRequest),
    RoleRevokePermission(&'a AuthRoleRevokePermissionRequest),
    RoleDelete(&'a AuthRoleDeleteRequest),
    UserList,
    RoleList,
}

impl<'a> Command<'a> {
    /// The request `r` carries: its first field set, in etcd's dispatch order
    /// (`uberApplier.dispatch`).
    pub fn of(r: &'a InternalRaftRequest) -> Command<'a> {
        use AuthCommand as A;
        use Command::Auth;
        if let Some(x) = &r.range {
            return Command::Range(x);
        }
        if let Some(x) = &r.put {
            return Command::Put(x);
        }
        if let Some(x) = &r.delete_range {
            return Command::DeleteRange(x);
        }
        if let Some(x) = &r.txn {
            return Command::Txn(x);
        }
        if let Some(x) = &r.compaction {
            return Command::Compaction(x);
        }
        if let Some(x) = &r.lease_grant {
            return Command::LeaseGrant(x);
        }
        if let Some(x) = &r.lease_revoke {
            return Command::LeaseRevoke(x);
        }
        if let Some(x) = &r.alarm {
            return Command::Alarm(x);
        }
        if let Some(x) = &r.downgrade_info_set {
            return Command::DowngradeInfoSet(x);
        }
        if let Some(x) = &r.authenticate {
            return Auth(A::Authenticate(x));
        }
        if let Some(_) = &r.auth_enable {
            return Auth(A::Enable);
        }
        if let Some(_) = &r.auth_disable {
            return Auth(A::Disable);
        }
        if let Some(x) = &r.auth_user_add {
            return Auth(A::UserAdd(x));
        }
        if let Some(x) = &r.auth_user_delete {
            return Auth(A::UserDelete(x));
        }
        if let Some(x) = &r.auth_user_change_password {
            return Auth(A::UserChangePassword(x));
        }
        if let Some(x) = &r.auth_user_grant_role {
            return Auth(A::UserGrantRole(x));
        }
        if let Some(x) = &r.auth_user_get {
            return Auth(A::UserGet(x));
        }
        if let Some(x) = &r.auth_user_revoke_role {
            return Auth(A::UserRevokeRole(x));
        }
        if let Some(x) = &r.auth_role_add {
            return Auth(A::RoleAdd(x));
        }
        if let Some(x) = &r.auth_role_grant_permission {
            return Auth(A::RoleGrantPermission(x));
        }
        if let Some(x) = &r.auth_role_get {
            return Auth(A::RoleGet(x));
        }
        if let Some(x) = &r.auth_role_revoke_permission {
            return Auth(A::RoleRevokePermission(x));
        }
        if let Some(x) = &r.auth_role_delete {
            return Auth(A::RoleDelete(x));
        }
        if let Some(_) = &r.auth_user_list {
            return Auth(A::UserList);
        }
        if let Some(_) = &r.auth_role_list {
            return Auth(A::RoleList);
        }
        Command::Unknown
    }

    /// etcd's name of the request (the `op` label of
    /// `etcd_server_apply_duration_seconds`).
    pub fn name(&self) -> &'static str {
        match self {
            Command::Range(_) => "Range",
            Command::Put(_) => "Put",
            Command::DeleteRange(_) => "DeleteRange",
            Command::Txn(_) => "Txn",
            Command::Compaction(_) => "Compaction",
            Command::LeaseGrant(_) => "LeaseGrant",
            Command::LeaseRevoke(_) => "LeaseRevoke",
            Command::Alarm(_) => "Alarm",
            Command::DowngradeInfoSet(_) => "DowngradeInfoSet",
            Command::Auth(a) => a.name(),
            Command::Unknown => "unknown",
        }
    }
}

impl AuthCommand<'_> {
    pub fn name(&self) -> &'static str {
        match self {
            AuthCommand::Authenticate(_) => "Authenticate",
            AuthCommand::Enable => "AuthEnable",
            AuthCommand::Disable => "AuthDisable",
            AuthCommand::UserAdd(_) => "AuthUserAdd",
            AuthCommand::UserDelete(_) => "AuthUserDelete",
            AuthCommand::UserChangePassword(_) => "AuthUserChangePassword",
            AuthCommand::UserGrantRole(_) => "AuthUserGrantRole",
            AuthCommand::UserGet(_) => "AuthUserGet",
            AuthCommand::UserRevokeRole(_) => "AuthUserRevokeRole",
            AuthCommand::RoleAdd(_) => "AuthRoleAdd",
            AuthCommand::RoleGrantPermission(_) => "AuthRoleGrantPermission",
            AuthCommand::RoleGet(_) => "AuthRoleGet",
            AuthCommand::RoleRevokePermission(_) => "AuthRoleRevokePermission",
            AuthCommand::RoleDelete(_) => "AuthRoleDelete",
            AuthCommand::UserList => "AuthUserList",
            AuthCommand::RoleList => "AuthRoleList",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hub_proto::etcdserverpb::{AuthEnableRequest, AuthUserListRequest};

    #[test]
    fn the_first_field_set_in_etcds_order_decides() {
        let put = PutRequest::default();
        let range = RangeRequest::default();
        let both = InternalRaftRequest { put: Some(put), range: Some(range), ..Default::default() };
        assert!(matches!(Command::of(&both), Command::Range(_)));
        let auth = InternalRaftRequest {
            auth_user_list: Some(AuthUserListRequest {}),
            auth_enable: Some(AuthEnableRequest {}),
            ..Default::default()
        };
        assert_eq!(Command::of(&auth).name(), "AuthEnable");
        assert!(matches!(Command::of(&InternalRaftRequest::default()), Command::Unknown));
    }
}

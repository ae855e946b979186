//! What each call of the API needs of its caller before it runs: the one
//! table of etcd 3.6's API-layer gates ([`Access`], checked by
//! [`Context::caller`](crate::Context::caller) for every request it resolves).
//!
//! The gate only asks whether there is a user, or whether it holds the root
//! role; what a call reads or writes is authorized on top of it, where it is
//! read or applied (`hub_store::auth`). Classifying by request type makes the
//! compiler refuse a handler whose request is in no row.
//!
//! Election and Lock make their calls for their own caller ([`relay`]), so
//! each is gated and authorized as that caller's.

use hub_proto::etcdserverpb::{
    alarm_request::AlarmAction, AlarmRequest, AuthDisableRequest, AuthStatusRequest, AuthEnableRequest, AuthRoleAddRequest,
    AuthRoleDeleteRequest, AuthRoleGetRequest, AuthRoleGrantPermissionRequest, AuthRoleListRequest,
    AuthRoleRevokePermissionRequest, AuthUserAddRequest, AuthUserChangePasswordRequest, AuthUserDeleteRequest,
    AuthUserGetRequest, AuthUserGrantRoleRequest, AuthUserListRequest, AuthUserRevokeRoleRequest, CompactionRequest,
    DefragmentRequest, DeleteRangeRequest, DowngradeRequest, HashKvRequest, HashRequest, LeaseGrantRequest,
    LeaseKeepAliveRequest, LeaseLeasesRequest, LeaseRevokeRequest, LeaseTimeToLiveRequest, MemberAddRequest, MemberListRequest,
    MemberPromoteRequest, MemberRemoveRequest, MemberUpdateRequest, MoveLeaderRequest, PutRequest, RangeRequest,
    SnapshotRequest, StatusRequest, TxnRequest,
};
use hub_proto::v3electionpb::{CampaignRequest, LeaderRequest, ProclaimRequest, ResignRequest};
use hub_proto::v3lockpb::{LockRequest, UnlockRequest};
pub use hub_store::auth::Access;
use hub_store::AuthInfo;
use tonic::Streaming;

/// The caller a service makes a call for. Request extensions never come from
/// the wire, so only the server itself can set one.
#[derive(Debug, Clone)]
pub(crate) struct Relayed(pub AuthInfo);

/// `message` as a request made for `who`: [`Context::caller`](crate::Context::caller) answers `who`.
pub fn relay<T>(who: &AuthInfo, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.extensions_mut().insert(Relayed(who.clone()));
    request
}

/// A request of the API, with the gate its call passes.
pub trait Gated {
    fn access(&self) -> Access;
}

macro_rules! gated {
    ($access:expr => $($request:ty),+ $(,)?) => {
        $(impl Gated for $request {
            fn access(&self) -> Access {
                $access
            }
        })+
    };
}

// Key reads and writes: their keys are checked. Election and Lock are made
// of such reads and writes (and a lease grant), each checked as the caller's.
gated!(Access::Anyone => RangeRequest, PutRequest, DeleteRangeRequest, TxnRequest);
gated!(Access::Anyone => CampaignRequest, ProclaimRequest, LeaderRequest, ResignRequest, LockRequest, UnlockRequest);

// Auth changes: the state machine checks the root role when it applies them
// (AuthEnable needs none while auth is off); a user may get its own user and roles.
gated!(Access::Anyone =>
    AuthEnableRequest, AuthDisableRequest, AuthUserAddRequest, AuthUserGetRequest, AuthUserListRequest,
    AuthUserDeleteRequest, AuthUserChangePasswordRequest, AuthUserGrantRoleRequest, AuthUserRevokeRoleRequest,
    AuthRoleAddRequest, AuthRoleGetRequest, AuthRoleListRequest, AuthRoleDeleteRequest,
    AuthRoleGrantPermissionRequest, AuthRoleRevokePermissionRequest,
);

// etcd 3.6's `requireAuthInfo`. A lease's keys are checked on top (revoke,
// renew, time-to-live with keys, list).
gated!(Access::User =>
    LeaseGrantRequest, LeaseRevokeRequest, Streaming<LeaseKeepAliveRequest>, LeaseTimeToLiveRequest,
    LeaseLeasesRequest, StatusRequest, MemberListRequest,
);

// etcd 3.6's `AuthAdmin.isPermitted` and `checkMembershipOperationPermission`.
gated!(Access::Admin =>
    CompactionRequest, DefragmentRequest, HashRequest, HashKvRequest, SnapshotRequest, MoveLeaderRequest, AuthStatusRequest,
    DowngradeRequest, MemberAddRequest, MemberRemoveRequest, MemberUpdateRequest, MemberPromoteRequest,
);

/// Listing alarms needs a user; arming or disarming one, the root role.
impl Gated for AlarmRequest {
    fn access(&self) -> Access {
        if self.action == AlarmAction::Get as i32 {
            Access::User
        } else {
            Access::Admin
        }
    }
}

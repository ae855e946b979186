//! The one place where hub's errors become gRPC statuses, with etcd's codes.

use hub_raft::{MemberChangeError, MoveLeaderError};
use hub_store::{EtcdError, StoreError};
use tonic::{Code, Status};

pub fn from_etcd(e: EtcdError) -> Status {
    use EtcdError::*;
    let code = match e {
        EmptyKey | KeyNotFound | ValueProvided | LeaseProvided | TooManyOps | DuplicateKey | InvalidSortOption
        | RequestTooLarge | MemberBadUrls => {
            Code::InvalidArgument
        }
        Compacted | FutureRev | LeaseTtlTooLarge => Code::OutOfRange,
        NoSpace => Code::ResourceExhausted,
        LeaseNotFound | MemberNotFound => Code::NotFound,
        LeaseExist => Code::FailedPrecondition,
        Stopped | NoLeader | LeaderChanged | Timeout => Code::Unavailable,
        Corrupt => Code::DataLoss,
        RootUserNotExist | RootRoleNotExist | UserAlreadyExist | UserNotFound | RoleAlreadyExist | RoleNotFound
        | RoleNotGranted | PermissionNotGranted | AuthNotEnabled => Code::FailedPrecondition,
        UserEmpty | RoleEmpty | AuthFailed | InvalidAuthMgmt | AuthOldRevision => Code::InvalidArgument,
        NoPasswordUser => Code::Unknown,
        PermissionDenied => Code::PermissionDenied,
        InvalidAuthToken => Code::Unauthenticated,
    };
    Status::new(code, e.to_string())
}

/// How Go's gRPC prints `status` as an error (`rpc error: code = ... desc =
/// ...`), which etcd puts in texts such as a watch's cancel reason.
pub fn go_error_text(status: &Status) -> String {
    // Go's code names are tonic's, but for the spelling of one.
    let code = match status.code() {
        Code::Cancelled => "Canceled".to_string(),
        code => format!("{code:?}"),
    };
    format!("rpc error: code = {code} desc = {}", status.message())
}

/// A server-layer operation's failure.
pub fn from_server(e: hub_etcdserver::Error) -> Status {
    use hub_etcdserver::Error;
    match e {
        Error::Store(e) => from_store(e),
        Error::Member(e) => from_member_change(e),
        Error::MoveLeader(e @ (MoveLeaderError::NotLeader | MoveLeaderError::BadTransferee)) => {
            Status::failed_precondition(e.to_string())
        }
        Error::MoveLeader(e @ (MoveLeaderError::Timeout | MoveLeaderError::Unhealthy)) => Status::unavailable(e.to_string()),
        Error::Downgrade(e) => {
            use hub_etcdserver::version::DowngradeError::*;
            let code = match e {
                WrongFormat | InvalidTarget => Code::InvalidArgument,
                InProgress | NoInflight => Code::FailedPrecondition,
                UnknownMethod => Code::Unknown,
            };
            Status::new(code, e.to_string())
        }
        Error::Internal(text) => Status::internal(format!("hub: {text}")),
    }
}

/// etcd's gRPC codes for membership errors (`rpctypes`).
fn from_member_change(e: MemberChangeError) -> Status {
    use MemberChangeError::*;
    let code = match e {
        IdExists | PeerUrlExists | NotLearner | LearnerNotReady | TooManyLearners | NotLeader => Code::FailedPrecondition,
        // etcd maps it to its client-side error value, not a gRPC status.
        NotEnoughStarted => Code::Unknown,
        NotFound => Code::NotFound,
        Unhealthy | Timeout | Other(_) => Code::Unavailable,
    };
    Status::new(code, e.to_string())
}

pub fn from_store(e: StoreError) -> Status {
    match e {
        StoreError::Etcd(e) => from_etcd(e),
        other => {
            tracing::error!(error = %other, "storage failure");
            Status::new(Code::Internal, other.to_string())
        }
    }
}

//! etcd's errors, with etcd's exact message strings (`api/v3rpc/rpctypes`).
//!
//! Every layer reports etcd-visible failures through [`EtcdError`]; grpc-api maps
//! each to its gRPC code in one function. Clients match on these strings, so they
//! must never change.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EtcdError {
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    #[error("etcdserver: key not found")]
    KeyNotFound,
    #[error("etcdserver: value is provided")]
    ValueProvided,
    #[error("etcdserver: lease is provided")]
    LeaseProvided,
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps,
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    #[error("etcdserver: invalid sort option")]
    InvalidSortOption,
    #[error("etcdserver: mvcc: required revision has been compacted")]
    Compacted,
    #[error("etcdserver: mvcc: required revision is a future revision")]
    FutureRev,
    #[error("etcdserver: mvcc: database space exceeded")]
    NoSpace,
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    #[error("etcdserver: lease already exists")]
    LeaseExist,
    #[error("etcdserver: too large lease TTL")]
    LeaseTtlTooLarge,
    #[error("etcdserver: request is too large")]
    RequestTooLarge,
    #[error("etcdserver: member not found")]
    MemberNotFound,
    #[error("etcdserver: given member URLs are invalid")]
    MemberBadUrls,
    #[error("etcdserver: server stopped")]
    Stopped,
    #[error("etcdserver: no leader")]
    NoLeader,
    #[error("etcdserver: leader changed")]
    LeaderChanged,
    #[error("etcdserver: request timed out")]
    Timeout,
    #[error("etcdserver: corrupt cluster")]
    Corrupt,
    #[error("etcdserver: root user does not exist")]
    RootUserNotExist,
    #[error("etcdserver: root user does not have root role")]
    RootRoleNotExist,
    #[error("etcdserver: user name already exists")]
    UserAlreadyExist,
    #[error("etcdserver: user name is empty")]
    UserEmpty,
    #[error("etcdserver: user name not found")]
    UserNotFound,
    #[error("etcdserver: role name already exists")]
    RoleAlreadyExist,
    #[error("etcdserver: role name not found")]
    RoleNotFound,
    #[error("etcdserver: role name is empty")]
    RoleEmpty,
    #[error("etcdserver: authentication failed, invalid user ID or password")]
    AuthFailed,
    /// etcd has no gRPC status for this one: it reaches clients as its
    /// internal `auth:` text with code Unknown.
    #[error("auth: authentication failed, password was given for no password user")]
    NoPasswordUser,
    #[error("etcdserver: permission denied")]
    PermissionDenied,
    #[error("etcdserver: role is not granted to the user")]
    RoleNotGranted,
    #[error("etcdserver: permission is not granted to the role")]
    PermissionNotGranted,
    #[error("etcdserver: authentication is not enabled")]
    AuthNotEnabled,
    #[error("etcdserver: invalid auth token")]
    InvalidAuthToken,
    #[error("etcdserver: invalid auth management")]
    InvalidAuthMgmt,
    #[error("etcdserver: revision of auth store is old")]
    AuthOldRevision,
}

impl EtcdError {
    const ALL: [EtcdError; 38] = [
        EtcdError::EmptyKey,
        EtcdError::KeyNotFound,
        EtcdError::ValueProvided,
        EtcdError::LeaseProvided,
        EtcdError::TooManyOps,
        EtcdError::DuplicateKey,
        EtcdError::InvalidSortOption,
        EtcdError::Compacted,
        EtcdError::FutureRev,
        EtcdError::NoSpace,
        EtcdError::LeaseNotFound,
        EtcdError::LeaseExist,
        EtcdError::LeaseTtlTooLarge,
        EtcdError::RequestTooLarge,
        EtcdError::MemberNotFound,
        EtcdError::MemberBadUrls,
        EtcdError::Stopped,
        EtcdError::NoLeader,
        EtcdError::LeaderChanged,
        EtcdError::Timeout,
        EtcdError::Corrupt,
        EtcdError::RootUserNotExist,
        EtcdError::RootRoleNotExist,
        EtcdError::UserAlreadyExist,
        EtcdError::UserEmpty,
        EtcdError::UserNotFound,
        EtcdError::RoleAlreadyExist,
        EtcdError::RoleNotFound,
        EtcdError::RoleEmpty,
        EtcdError::AuthFailed,
        EtcdError::NoPasswordUser,
        EtcdError::PermissionDenied,
        EtcdError::RoleNotGranted,
        EtcdError::PermissionNotGranted,
        EtcdError::AuthNotEnabled,
        EtcdError::InvalidAuthToken,
        EtcdError::InvalidAuthMgmt,
        EtcdError::AuthOldRevision,
    ];

    /// The error whose message this is (errors cross the peer wire as text).
    pub fn from_message(message: &str) -> Option<EtcdError> {
        Self::ALL.into_iter().find(|e| e.to_string() == message)
    }
}

/// A failure of the storage engine itself (I/O, corruption), not of a request.
#[derive(Debug, thiserror::Error)]
#[error("backend: {0}")]
pub struct BackendError(String);

impl BackendError {
    pub fn new(msg: impl Into<String>) -> Self {
        BackendError(msg.into())
    }
}

/// What applying a command or serving a read can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The request is refused with etcd's error; nothing was changed.
    #[error(transparent)]
    Etcd(#[from] EtcdError),
    /// The backend failed; the member cannot go on safely.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// Bytes in the backend that do not decode: corruption.
    #[error("corrupt backend record: {0}")]
    Corrupt(String),
    /// A snapshot that cannot be written, read or trusted (I/O, a bbolt file
    /// that does not parse, a failed sha256 check), saying what was being done.
    #[error("snapshot: {0}")]
    Snapshot(String),
}

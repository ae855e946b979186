//! How hubctl fails: one `Error: <message>` line on stderr and etcdctl's exit codes.
//!
//! Every command returns [`CtlError`]; only `main` prints it and exits. Server
//! errors are turned into etcdctl's text in exactly one place, [`CtlError::from_status`],
//! following etcd's clientv3: a status whose description is one of etcd's own
//! error strings prints as that string, a deadline prints as Go's
//! `context deadline exceeded`, anything else as grpc-go's `rpc error: ...` line.

use std::fmt;

/// etcdctl's exit codes (`ctlv3/command/error.go`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitCode {
    Error = 1,
    BadConnection = 2,
    InvalidInput = 3,
    BadFeature = 4,
    Interrupted = 5,
    Io = 6,
    BadArgs = 128,
}

/// A failed command: the code to exit with and, usually, the line to print.
#[derive(Debug)]
pub struct CtlError {
    pub code: ExitCode,
    /// `None` when the command already reported its failure itself (etcdctl's
    /// `os.Exit(ExitError)` after per-endpoint messages, e.g. `defrag`).
    pub message: Option<String>,
}

impl CtlError {
    pub fn new(code: ExitCode, message: impl Into<String>) -> Self {
        CtlError { code, message: Some(message.into()) }
    }

    /// ExitError (1): the server or the connection said no.
    pub fn error(message: impl Into<String>) -> Self {
        Self::new(ExitCode::Error, message)
    }

    /// ExitBadArgs (128): the command line does not make sense.
    pub fn bad_args(message: impl Into<String>) -> Self {
        Self::new(ExitCode::BadArgs, message)
    }

    /// ExitBadFeature (4): a valid flag with a value etcdctl does not support.
    pub fn bad_feature(message: impl Into<String>) -> Self {
        Self::new(ExitCode::BadFeature, message)
    }

    /// ExitInvalidInput (3): bad `txn` or interactive `watch` input.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::new(ExitCode::InvalidInput, message)
    }

    /// Exit with `code` and print nothing more.
    pub fn silent(code: ExitCode) -> Self {
        CtlError { code, message: None }
    }

    /// Go's `context.DeadlineExceeded`, which etcdctl prints for every timeout,
    /// including "could not connect within --command-timeout".
    pub fn deadline_exceeded() -> Self {
        Self::error(DEADLINE_EXCEEDED)
    }

    /// A failed RPC, worded as etcd's clientv3 `toErr` words it.
    pub fn from_status(status: &tonic::Status) -> Self {
        Self::error(status_text(status))
    }

    /// The same with another exit code (e.g. `lease timetolive` uses 2).
    pub fn from_status_with(code: ExitCode, status: &tonic::Status) -> Self {
        Self::new(code, status_text(status))
    }
}

impl fmt::Display for CtlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message.as_deref().unwrap_or(""))
    }
}

impl From<std::io::Error> for CtlError {
    /// Writing the output failed: etcdctl's ExitIO. A reader that went away
    /// (`hubctl get ... | head`) ends hubctl quietly, as SIGPIPE ends etcdctl.
    fn from(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            return CtlError::silent(ExitCode::Io);
        }
        CtlError::new(ExitCode::Io, e.to_string())
    }
}

pub const DEADLINE_EXCEEDED: &str = "context deadline exceeded";

/// etcdctl's text for a gRPC status.
pub fn status_text(status: &tonic::Status) -> String {
    let desc = status.message();
    if ETCD_ERRORS.contains(&desc) {
        return desc.to_string();
    }
    if status.code() == tonic::Code::DeadlineExceeded {
        return DEADLINE_EXCEEDED.to_string();
    }
    // A failure of the connection itself (TLS refused, connection reset): tonic
    // says only "transport error", so name the cause. (etcdctl retries these
    // until its timeout and reports `context deadline exceeded`.)
    let mut desc = desc.to_string();
    let mut cause = std::error::Error::source(status);
    while let Some(err) = cause {
        let text = err.to_string();
        if !desc.contains(&text) {
            desc = format!("{desc}: {text}");
        }
        cause = err.source();
    }
    format!("rpc error: code = {} desc = {}", go_code_name(status.code()), desc)
}

/// grpc-go's names for status codes (`codes.Code.String()`).
fn go_code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "Canceled",
        Unknown => "Unknown",
        InvalidArgument => "InvalidArgument",
        DeadlineExceeded => "DeadlineExceeded",
        NotFound => "NotFound",
        AlreadyExists => "AlreadyExists",
        PermissionDenied => "PermissionDenied",
        ResourceExhausted => "ResourceExhausted",
        FailedPrecondition => "FailedPrecondition",
        Aborted => "Aborted",
        OutOfRange => "OutOfRange",
        Unimplemented => "Unimplemented",
        Internal => "Internal",
        Unavailable => "Unavailable",
        DataLoss => "DataLoss",
        Unauthenticated => "Unauthenticated",
    }
}

/// The descriptions etcd's clientv3 recognises (`rpctypes.errStringToError`);
/// a status carrying one of them prints as the bare description.
const ETCD_ERRORS: &[&str] = &[
    "etcdserver: key is not provided",
    "etcdserver: key not found",
    "etcdserver: value is provided",
    "etcdserver: lease is provided",
    "etcdserver: too many operations in txn request",
    "etcdserver: duplicate key given in txn request",
    "etcdserver: mvcc: required revision has been compacted",
    "etcdserver: mvcc: required revision is a future revision",
    "etcdserver: mvcc: database space exceeded",
    "etcdserver: requested lease not found",
    "etcdserver: lease already exists",
    "etcdserver: too large lease TTL",
    "etcdserver: watch canceled",
    "etcdserver: member ID already exist",
    "etcdserver: Peer URLs already exists",
    "etcdserver: re-configuration failed due to not enough started members",
    "etcdserver: given member URLs are invalid",
    "etcdserver: member not found",
    "etcdserver: can only promote a learner member",
    "etcdserver: can only promote a learner member which is in sync with leader",
    "etcdserver: too many learner members in cluster",
    "etcdserver: request is too large",
    "etcdserver: too many requests",
    "etcdserver: root user does not exist",
    "etcdserver: root user does not have root role",
    "etcdserver: user name already exists",
    "etcdserver: user name is empty",
    "etcdserver: user name not found",
    "etcdserver: role name already exists",
    "etcdserver: role name not found",
    "etcdserver: role name is empty",
    "etcdserver: authentication failed, invalid user ID or password",
    "etcdserver: permission denied",
    "etcdserver: role is not granted to the user",
    "etcdserver: permission is not granted to the role",
    "etcdserver: authentication is not enabled",
    "etcdserver: invalid auth token",
    "etcdserver: invalid auth management",
    "etcdserver: revision of auth store is old",
    "etcdserver: no leader",
    "etcdserver: not leader",
    "etcdserver: leader changed",
    "etcdserver: not capable",
    "etcdserver: server stopped",
    "etcdserver: request timed out",
    "etcdserver: request timed out, possibly due to previous leader failure",
    "etcdserver: request timed out, possibly due to connection lost",
    "etcdserver: request timed out, waiting for the applied index took too long",
    "etcdserver: unhealthy cluster",
    "etcdserver: corrupt cluster",
    "etcdserver: rpc not supported for learner",
    "etcdserver: bad leader transferee",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_read_as_etcdctl_prints_them() {
        let cases = [
            (
                tonic::Status::not_found("etcdserver: requested lease not found"),
                "etcdserver: requested lease not found",
            ),
            (tonic::Status::deadline_exceeded("whatever"), "context deadline exceeded"),
            (tonic::Status::unimplemented("hub: nope"), "rpc error: code = Unimplemented desc = hub: nope"),
            (tonic::Status::cancelled("x"), "rpc error: code = Canceled desc = x"),
        ];
        for (status, want) in cases {
            assert_eq!(status_text(&status), want);
        }
    }
}

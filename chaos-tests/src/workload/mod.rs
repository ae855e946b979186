//! The workloads: clients that run operations against random members and
//! record each one in the history.

pub mod k8s;
pub mod lease;
pub mod register;
pub mod set;
pub mod watch;

use std::future::Future;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::Rng;
use serde_json::Value;
use tonic::transport::Channel;
use tonic::{Code, Status as GrpcStatus};

use crate::history::{Op, Recorder, Status};

/// What every worker gets.
#[derive(Clone)]
pub struct Ctx {
    pub rec: Recorder,
    pub channels: Vec<Channel>,
    pub op_timeout: Duration,
    pub stop: tokio::sync::watch::Receiver<bool>,
}

impl Ctx {
    pub fn stopped(&self) -> bool {
        *self.stop.borrow()
    }

    /// A random member and its channel.
    pub fn pick(&self, rng: &mut StdRng) -> (usize, Channel) {
        let i = rng.random_range(0..self.channels.len());
        (i, self.channels[i].clone())
    }

    /// Runs one operation and records it. `write` says whether an error leaves
    /// the outcome unknown (a write may have happened) or is a plain failure.
    pub async fn run<T, F>(
        &self,
        process: &str,
        op: &str,
        key: &str,
        member: usize,
        input: Value,
        write: bool,
        call: F,
        output: impl FnOnce(&T) -> Value,
    ) -> Result<T, Status>
    where
        F: Future<Output = Result<T, GrpcStatus>>,
    {
        let start = self.rec.now();
        let result = tokio::time::timeout(self.op_timeout, call).await;
        let end = self.rec.now();
        let (status, out, ret) = match result {
            Ok(Ok(v)) => (Status::Ok, output(&v), Ok(v)),
            Ok(Err(e)) => {
                let s = if write && !definite(&e) { Status::Info } else { Status::Fail };
                (s, Value::String(format!("{:?}: {}", e.code(), e.message())), Err(s))
            }
            Err(_) => {
                let s = if write { Status::Info } else { Status::Fail };
                (s, Value::String("timeout".into()), Err(s))
            }
        };
        self.rec.record(Op {
            process: process.to_string(),
            op: op.to_string(),
            key: key.to_string(),
            input,
            output: out,
            status,
            start,
            end,
            member,
        });
        if ret.is_err() {
            // Back off, as a client does: hammering a member that is down only
            // piles up indeterminate operations.
            tokio::time::sleep(Duration::from_millis(100 + (end % 200_000_000) / 1_000_000)).await;
        }
        ret
    }
}

/// Errors after which the request certainly had no effect.
fn definite(e: &GrpcStatus) -> bool {
    matches!(
        e.code(),
        Code::InvalidArgument
            | Code::FailedPrecondition
            | Code::NotFound
            | Code::PermissionDenied
            | Code::Unauthenticated
            | Code::OutOfRange
            | Code::ResourceExhausted
    )
}


/// A short pause between operations so a worker does not spin on errors.
pub async fn breathe(rng: &mut StdRng) {
    tokio::time::sleep(Duration::from_millis(rng.random_range(0..10))).await;
}

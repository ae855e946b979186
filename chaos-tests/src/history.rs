//! The history: every operation a client invoked, with what it asked, what it
//! got back and when, written as JSON lines as it completes.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// How an operation ended, as Jepsen names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// It happened, with this output.
    Ok,
    /// It certainly did not happen.
    Fail,
    /// Unknown (a timeout, a lost connection): it may or may not have happened.
    Info,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Op {
    /// The client (worker) that ran it; one operation at a time per process.
    pub process: String,
    /// The workload and operation, e.g. `register/cas`.
    pub op: String,
    pub key: String,
    pub input: Value,
    pub output: Value,
    pub status: Status,
    /// Nanoseconds since the run started.
    pub start: u64,
    pub end: u64,
    /// The member the client talked to.
    pub member: usize,
}

/// Collects operations in memory and appends each to the history file.
#[derive(Clone)]
pub struct Recorder {
    inner: Arc<Mutex<Inner>>,
    epoch: Instant,
}

struct Inner {
    ops: Vec<Op>,
    file: Option<std::io::BufWriter<std::fs::File>>,
}

impl Recorder {
    pub fn new(path: Option<&Path>) -> anyhow::Result<Recorder> {
        let file = match path {
            Some(p) => Some(std::io::BufWriter::new(std::fs::File::create(p)?)),
            None => None,
        };
        Ok(Recorder { inner: Arc::new(Mutex::new(Inner { ops: Vec::new(), file })), epoch: Instant::now() })
    }

    /// Nanoseconds since the run started.
    pub fn now(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    pub fn epoch(&self) -> Instant {
        self.epoch
    }

    pub fn record(&self, op: Op) {
        let mut inner = self.inner.lock();
        if let Some(f) = inner.file.as_mut() {
            if let Ok(line) = serde_json::to_string(&op) {
                let _ = writeln!(f, "{line}");
            }
        }
        inner.ops.push(op);
    }

    pub fn flush(&self) {
        if let Some(f) = self.inner.lock().file.as_mut() {
            let _ = f.flush();
        }
    }

    pub fn ops(&self) -> Vec<Op> {
        self.inner.lock().ops.clone()
    }
}

/// Reads a history file back (for re-checking a recorded run).
pub fn load(path: &Path) -> anyhow::Result<Vec<Op>> {
    let text = std::fs::read_to_string(path)?;
    text.lines().filter(|l| !l.trim().is_empty()).map(|l| Ok(serde_json::from_str(l)?)).collect()
}

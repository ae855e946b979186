//! The log lines etcdctl writes on stderr while it saves or restores a
//! snapshot: its `zap.NewProduction()` logger's JSON, one object a line with
//! `level`, `ts` (Unix seconds), `msg` and the fields. hubctl writes the same
//! messages and fields (without Go's `caller`), so whoever watched etcdctl's
//! stderr sees the same events. Nothing here goes to stdout.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::output::json::Json;

/// Writes one `"level":"info"` line.
pub fn info(msg: &str, fields: Vec<(&'static str, Json)>) {
    let ts = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
    let mut line = vec![("level", Json::Str("info".into())), ("ts", Json::Float(ts)), ("msg", Json::Str(msg.into()))];
    line.extend(fields);
    // A closed stderr must not fail the command: the log is a courtesy.
    let _ = writeln!(std::io::stderr(), "{}", Json::Object(line).encode());
}

pub fn text(s: impl Into<String>) -> Json {
    Json::Str(s.into())
}

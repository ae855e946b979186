//! hubd's log lines, as etcd 3.6 writes them with zap.
//!
//! Place: installed once by `main`, before anything logs; every crate logs with
//! `tracing` and knows nothing of this. It owns the line format, the level
//! filter and the outputs (`--log-format`, `--log-level`, `--log-outputs`).
//!
//! etcd's default (`--log-format json`) is one JSON object a line, keys in
//! zap's order: `{"level":"info","ts":"2026-12-07T01:37:28.364924Z",
//! "caller":"embed/serve.go:139","msg":"ready to serve client requests",...}`
//! and then the event's fields. `--log-format console` is zap's console
//! encoder: ts, level, caller and msg separated by tabs, then the fields as one
//! JSON object. Log pipelines and etcd's own e2e tests parse these lines, so:
//! - `level` is zap's name (`debug`, `info`, `warn`, `error`; tracing's
//!   `TRACE` is `debug`, zap has nothing finer);
//! - `ts` is etcd's layout `2006-01-02T15:04:05.000000Z0700`, local time
//!   (`Z` in UTC, else `+0100`);
//! - `caller` is zap's short caller, the last directory and the file, with
//!   Rust's `src` left out (`node/mod.rs:399`, `server/main.rs:272`);
//! - fields keep their types (numbers, booleans; everything else a string)
//!   and take etcd's kebab-case spelling: a field written `local_member_id` in
//!   Rust is logged `local-member-id`, so hub's code needs no quoted names.
//!
//! `--logger` does not change any of this: etcd 3.6 has only zap, and hub
//! writes no capnslog (etcd 3.4's default) text.
//!
//! Filtering: `--log-level` for hub's crates and its dependencies, openraft
//! never below `warn` (it narrates every election step at info). `RUST_LOG`,
//! when set, replaces all of that with its own directives.

use std::fmt;
use std::fs::File;
use std::sync::Arc;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::EnvFilter;

/// `--log-format`: zap's two encoders.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Console,
}

impl Format {
    /// The flag's value, already checked by the config (`json` or `console`).
    pub fn from_flag(value: &str) -> Format {
        if value == "console" {
            Format::Console
        } else {
            Format::Json
        }
    }
}

/// Installs the global subscriber: lines in `format`, events at `level` (an
/// etcd level name) and above, written to every one of `outputs`
/// (`--log-outputs`). The error is etcd's text for outputs it refuses.
pub fn init(level: &str, format: Format, outputs: &[String]) -> Result<(), String> {
    let outputs = Outputs::open(outputs)?;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| default_filter(level));
    let lines = tracing_subscriber::fmt::layer()
        .event_format(ZapFormat { format })
        .with_writer(outputs)
        // A failed write must not put a line of another shape on stderr.
        .log_internal_errors(false);
    tracing_subscriber::registry()
        .with(filter)
        .with(lines)
        .try_init()
        .map_err(|e| format!("cannot install the logger: {e}"))
}

/// `--log-level` as tracing directives: zap's `dpanic`, `panic` and `fatal`
/// keep errors (hub never panics on purpose); openraft at `warn` or above.
fn default_filter(level: &str) -> EnvFilter {
    let level = match level {
        "debug" | "info" | "warn" => level,
        _ => "error",
    };
    let openraft = if matches!(level, "debug" | "info") { "warn" } else { level };
    EnvFilter::new(format!("{level},openraft={openraft}"))
}

/// zap's production encoders (etcd's `logutil.DefaultZapLoggerConfig`).
struct ZapFormat {
    format: Format,
}

impl<S, N> FormatEvent<S, N> for ZapFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, _ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        // Records from the `log` crate (rustls) carry their real place in fields.
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        let mut fields = Fields::default();
        event.record(&mut fields);
        let line = Line {
            level: level_name(meta),
            ts: &hub_go::time::format(chrono::Local::now().fixed_offset()),
            caller: &caller(meta.file(), meta.line()),
            msg: &fields.msg,
            fields: &fields.pairs,
        };
        match self.format {
            Format::Json => line.write_json(&mut writer),
            Format::Console => line.write_console(&mut writer),
        }
    }
}

/// One event, ready to be written in either format.
struct Line<'a> {
    level: &'static str,
    ts: &'a str,
    caller: &'a str,
    msg: &'a str,
    /// `(key, value as JSON)`, in the order the event gave them.
    fields: &'a [(String, String)],
}

impl Line<'_> {
    fn write_json(&self, w: &mut impl fmt::Write) -> fmt::Result {
        write!(w, "{{\"level\":\"{}\",\"ts\":\"{}\",\"caller\":", self.level, self.ts)?;
        write_json_string(w, self.caller)?;
        w.write_str(",\"msg\":")?;
        write_json_string(w, self.msg)?;
        for (key, value) in self.fields {
            w.write_char(',')?;
            write_json_string(w, key)?;
            write!(w, ":{value}")?;
        }
        w.write_str("}\n")
    }

    /// zap's console encoder: the message as it is, the fields as a spaced
    /// JSON object after one more tab (none when there are no fields).
    fn write_console(&self, w: &mut impl fmt::Write) -> fmt::Result {
        write!(w, "{}\t{}\t{}\t{}", self.ts, self.level, self.caller, self.msg)?;
        for (i, (key, value)) in self.fields.iter().enumerate() {
            w.write_str(if i == 0 { "\t{" } else { ", " })?;
            write_json_string(w, key)?;
            write!(w, ": {value}")?;
        }
        if !self.fields.is_empty() {
            w.write_char('}')?;
        }
        w.write_char('\n')
    }
}

/// The message and the fields of one event, each value already JSON.
#[derive(Default)]
struct Fields {
    msg: String,
    pairs: Vec<(String, String)>,
}

impl Fields {
    fn push(&mut self, field: &Field, json: String) {
        let name = field.name();
        // The `log` crate's place, already taken into the metadata.
        if name.starts_with("log.") {
            return;
        }
        self.pairs.push((name.replace('_', "-"), json));
    }

    fn push_string(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.msg = value.to_string();
            return;
        }
        let mut json = String::with_capacity(value.len() + 2);
        // Writing into a String cannot fail.
        let _ = write_json_string(&mut json, value);
        self.push(field, json);
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.push_string(field, &format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.push_string(field, value);
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.push_string(field, &value.to_string());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push(field, value.to_string());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.push(field, value.to_string());
    }
    fn record_i128(&mut self, field: &Field, value: i128) {
        self.push(field, value.to_string());
    }
    fn record_u128(&mut self, field: &Field, value: u128) {
        self.push(field, value.to_string());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push(field, value.to_string());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        // JSON has no NaN or infinities; zap writes them as strings.
        if value.is_finite() {
            self.push(field, value.to_string());
        } else {
            self.push_string(field, &value.to_string());
        }
    }
}

/// zap's lowercase level names. openraft's errors are warnings here: it
/// reports a peer it cannot reach (one starting or stopping) as an error,
/// where etcd's raft transport warns ("lost TCP streaming connection with
/// remote peer"), and an error line in etcd's log means the member is in
/// trouble. hub's own failures are logged by hub's code.
fn level_name(meta: &Metadata<'_>) -> &'static str {
    if meta.target().starts_with("openraft") && *meta.level() == Level::ERROR {
        return "warn";
    }
    match *meta.level() {
        Level::ERROR => "error",
        Level::WARN => "warn",
        Level::INFO => "info",
        Level::DEBUG | Level::TRACE => "debug",
    }
}

/// zap's short caller: the file's directory and name, and the line. Rust's
/// `src` directory is left out, so the directory is the crate or the module
/// (`server/main.rs:272`, `node/mod.rs:399`) as Go's is the package.
fn caller(file: Option<&str>, line: Option<u32>) -> String {
    let parts: Vec<&str> = file.unwrap_or("?").split('/').filter(|p| *p != "src").collect();
    let short = parts[parts.len().saturating_sub(2)..].join("/");
    format!("{short}:{}", line.unwrap_or(0))
}

/// `s` as a JSON string: quotes, backslashes and control characters escaped.
fn write_json_string(w: &mut impl fmt::Write, s: &str) -> fmt::Result {
    w.write_char('"')?;
    for c in s.chars() {
        match c {
            '"' => w.write_str("\\\"")?,
            '\\' => w.write_str("\\\\")?,
            '\n' => w.write_str("\\n")?,
            '\r' => w.write_str("\\r")?,
            '\t' => w.write_str("\\t")?,
            c if (c as u32) < 0x20 => write!(w, "\\u{:04x}", c as u32)?,
            c => w.write_char(c)?,
        }
    }
    w.write_char('"')
}

/// Where lines go: `--log-outputs`.
#[derive(Clone)]
struct Outputs(Arc<Vec<Sink>>);

enum Sink {
    Stderr,
    Stdout,
    File(File),
}

impl Outputs {
    /// etcd's rules: `default` is stderr and stands alone, `/dev/null`
    /// silences every output, anything else but `stderr` and `stdout` is a file
    /// appended to. hub has no journald writer: `systemd/journal` is stderr,
    /// which systemd puts in the journal anyway.
    fn open(outputs: &[String]) -> Result<Outputs, String> {
        if outputs.len() > 1 && outputs.iter().any(|o| o == "default") {
            return Err("multi logoutput for \"default\" is not supported yet".to_string());
        }
        if outputs.iter().any(|o| o == "/dev/null") {
            return Ok(Outputs(Arc::new(Vec::new())));
        }
        let mut sinks = Vec::new();
        for output in outputs {
            sinks.push(match output.as_str() {
                "default" | "stderr" | "systemd/journal" => Sink::Stderr,
                "stdout" => Sink::Stdout,
                path => File::options()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map(Sink::File)
                    .map_err(|e| format!("open sink {path:?}: {e}"))?,
            });
        }
        if sinks.is_empty() {
            sinks.push(Sink::Stderr);
        }
        Ok(Outputs(Arc::new(sinks)))
    }
}

impl<'a> MakeWriter<'a> for Outputs {
    type Writer = &'a Outputs;
    fn make_writer(&'a self) -> &'a Outputs {
        self
    }
}

/// One formatted line (the fmt layer writes each event with one `write_all`)
/// to every sink; a sink that fails does not keep the line from the others.
impl std::io::Write for &Outputs {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let mut result = Ok(line.len());
        for sink in self.0.iter() {
            let written = match sink {
                Sink::Stderr => std::io::stderr().lock().write_all(line),
                Sink::Stdout => std::io::stdout().lock().write_all(line),
                Sink::File(f) => (&*f).write_all(line),
            };
            if let Err(e) = written {
                result = Err(e);
            }
        }
        result
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stdout().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// The lines `log` writes through a subscriber with `format`, at info.
    fn lines(format: Format, log: impl FnOnce()) -> Vec<String> {
        #[derive(Clone, Default)]
        struct Buffer(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buffer {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::registry().with(default_filter("info")).with(
            tracing_subscriber::fmt::layer().event_format(ZapFormat { format }).with_writer(move || writer.clone()),
        );
        tracing::subscriber::with_default(subscriber, log);
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        text.lines().map(str::to_string).collect()
    }

    #[test]
    fn json_lines_have_zaps_keys_in_zaps_order_and_typed_fields() {
        let got = lines(Format::Json, || {
            tracing::info!(
                local_member_id = %format_args!("{:x}", 0xbdae9bbc11dd390du64),
                term = 2u64,
                rev = -1i64,
                learner = false,
                ratio = 0.5,
                error = "a \"quoted\"\nline",
                "published local member to cluster through raft"
            );
            tracing::debug!("not at info");
            tracing::warn!("warned");
        });
        assert_eq!(got.len(), 2, "{got:?}");
        let line = &got[0];
        let keys = ["level", "ts", "caller", "msg", "local-member-id", "term", "rev", "learner", "ratio", "error"];
        let at: Vec<usize> = keys.iter().map(|k| line.find(&format!("\"{k}\":")).expect(k)).collect();
        assert!(at.windows(2).all(|w| w[0] < w[1]), "keys out of order: {line}");
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["level"], "info");
        assert!(v["caller"].as_str().unwrap().starts_with("server/log.rs:"), "{line}");
        assert_eq!(v["msg"], "published local member to cluster through raft");
        assert_eq!(v["local-member-id"], "bdae9bbc11dd390d");
        assert_eq!(v["term"], 2);
        assert_eq!(v["rev"], -1);
        assert_eq!(v["learner"], false);
        assert_eq!(v["ratio"], 0.5);
        assert_eq!(v["error"], "a \"quoted\"\nline");
        // etcd's layout, as etcd's own e2e test parses it.
        let (time, zone) = v["ts"].as_str().unwrap().split_at(26);
        assert!(chrono::NaiveDateTime::parse_from_str(time, "%Y-%m-%dT%H:%M:%S%.6f").is_ok(), "{line}");
        assert!(zone == "Z" || chrono::DateTime::parse_from_str(&format!("2026-01-01 00:00{zone}"), "%F %R%z").is_ok(), "{line}");
        let w: serde_json::Value = serde_json::from_str(&got[1]).unwrap();
        assert_eq!((w["level"].as_str(), w["msg"].as_str()), (Some("warn"), Some("warned")));
    }

    #[test]
    fn console_lines_are_tab_separated_with_spaced_json_fields() {
        let got = lines(Format::Console, || {
            tracing::info!(address = "127.0.0.1:2379", traffic = "grpc+http", "serving client traffic securely");
            tracing::info!("ready to serve client requests");
        });
        let parts: Vec<&str> = got[0].split('\t').collect();
        assert_eq!(parts.len(), 5, "{got:?}");
        assert_eq!(parts[1], "info");
        assert!(parts[2].starts_with("server/log.rs:"));
        assert_eq!(parts[3], "serving client traffic securely");
        assert_eq!(parts[4], r#"{"address": "127.0.0.1:2379", "traffic": "grpc+http"}"#);
        assert_eq!(got[1].split('\t').skip(1).collect::<Vec<_>>()[2..], ["ready to serve client requests"]);
    }

    #[test]
    fn openraft_errors_are_warnings() {
        let got = lines(Format::Json, || {
            tracing::error!(target: "openraft::replication", "while requesting vote");
            tracing::error!("the member cannot go on; exiting");
        });
        assert!(got[0].starts_with(r#"{"level":"warn","#), "{got:?}");
        assert!(got[1].starts_with(r#"{"level":"error","#), "{got:?}");
    }

    #[test]
    fn callers_are_zaps_short_form_without_src() {
        assert_eq!(caller(Some("server/src/main.rs"), Some(272)), "server/main.rs:272");
        assert_eq!(caller(Some("raft/src/node/mod.rs"), Some(9)), "node/mod.rs:9");
        assert_eq!(caller(Some("/root/.cargo/registry/src/x/openraft-0.9/src/core/raft_core.rs"), Some(1)), "core/raft_core.rs:1");
        assert_eq!(caller(Some("main.rs"), None), "main.rs:0");
        assert_eq!(caller(None, None), "?:0");
    }

    #[test]
    fn strings_are_escaped_as_json() {
        let mut s = String::new();
        write_json_string(&mut s, "a\"b\\c\n\t\u{1}é").unwrap();
        assert_eq!(s, r#""a\"b\\c\n\t\u0001é""#);
        assert_eq!(serde_json::from_str::<String>(&s).unwrap(), "a\"b\\c\n\t\u{1}é");
    }

    #[test]
    fn outputs_follow_etcds_rules() {
        let err = |o: &[&str]| Outputs::open(&o.iter().map(|s| s.to_string()).collect::<Vec<_>>()).err();
        assert_eq!(err(&["default", "stdout"]).as_deref(), Some("multi logoutput for \"default\" is not supported yet"));
        assert!(err(&["/nonexistent/dir/f"]).unwrap().starts_with("open sink \"/nonexistent/dir/f\": "));
        let dir = tempfile::tempdir().unwrap();
        let files = [dir.path().join("a.log"), dir.path().join("b.log")];
        std::fs::write(&files[0], "kept\n").unwrap();
        let outputs = Outputs::open(&files.iter().map(|f| f.to_str().unwrap().to_string()).collect::<Vec<_>>()).unwrap();
        std::io::Write::write_all(&mut &outputs, b"one line\n").unwrap();
        assert_eq!(std::fs::read_to_string(&files[0]).unwrap(), "kept\none line\n");
        assert_eq!(std::fs::read_to_string(&files[1]).unwrap(), "one line\n");
        assert!(matches!(Outputs::open(&["stdout".to_string()]).unwrap().0[..], [Sink::Stdout]));
        assert!(Outputs::open(&["/dev/null".to_string(), "stderr".to_string()]).unwrap().0.is_empty());
    }
}

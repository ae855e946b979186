//! `watch`: prints events as they come; `watch ... -- cmd args` also runs a
//! command per event (with `ETCD_WATCH_*` variables), and `watch -i` reads
//! `watch ...` and `progress` lines from stdin, one watcher per `watch` line.
//!
//! Each watcher has its own gRPC stream on one connection. A watch the server
//! cancels (e.g. its start revision was compacted) ends `watch` with exit
//! code 5, as in etcdctl.

use std::ffi::{OsStr, OsString};
use std::io::{BufRead, Write};
use std::os::unix::ffi::OsStrExt;

use clap::{ArgAction, Args, Parser};
use hub_proto::etcdserverpb::watch_client::WatchClient;
use hub_proto::etcdserverpb::{watch_request, WatchCreateRequest, WatchProgressRequest, WatchRequest, WatchResponse};
use tokio::sync::mpsc;
use crate::client::Conn;

use hub_proto::range::prefix_end;
use super::line::argify;
use super::Ctx;
use crate::error::{status_text, CtlError, ExitCode};
use crate::flags::{go_bool, go_int64};
use crate::gofmt::quote;
use crate::output::Printer;

#[derive(Args, Debug, Clone)]
pub struct WatchArgs {
    /// Interactive mode
    #[arg(short = 'i', long, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool)]
    pub interactive: bool,
    /// Watch on a prefix if prefix is set
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool)]
    pub prefix: bool,
    /// Revision to start watching
    #[arg(long, default_value = "0", allow_hyphen_values = true, value_parser = go_int64)]
    pub rev: i64,
    /// get the previous key-value pair before the event happens
    #[arg(long = "prev-kv", action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool)]
    pub prev_kv: bool,
    /// [key or prefix] [range_end] [--] [exec-command arg1 arg2 ...]
    #[arg(value_name = "KEY")]
    pub args: Vec<OsString>,
}

/// A `watch ...` line of interactive mode, parsed with the command's flags.
#[derive(Parser, Debug)]
#[command(no_binary_name = true)]
struct WatchLine {
    #[command(flatten)]
    args: WatchArgs,
}

/// `ETCDCTL_WATCH_KEY` / `ETCDCTL_WATCH_RANGE_END` (or `HUBCTL_...`).
struct EnvRange {
    key: Option<OsString>,
    range_end: Option<OsString>,
}

impl EnvRange {
    fn from_process() -> Self {
        let var = |suffix: &str| {
            ["HUBCTL", "ETCDCTL"]
                .iter()
                .filter_map(|p| std::env::var_os(format!("{p}_{suffix}")))
                .find(|v| !v.is_empty())
        };
        EnvRange { key: var("WATCH_KEY"), range_end: var("WATCH_RANGE_END") }
    }
}

const BAD_ARGS_NUM: &str = "bad number of arguments";
const BAD_ARGS_CONFLICT_ENV: &str = "bad number of arguments (found conflicting environment key)";
const BAD_ARGS_SEPARATOR: &str = "bad number of arguments (found separator --, but no commands)";

pub async fn run(args: WatchArgs, ctx: &Ctx) -> Result<(), CtlError> {
    let env = EnvRange::from_process();
    if env.key.is_none() {
        if let Some(range_end) = &env.range_end {
            return Err(CtlError::bad_args(format!(
                "ETCDCTL_WATCH_KEY is empty but got ETCDCTL_WATCH_RANGE_END={}",
                quote(range_end.as_bytes())
            )));
        }
    }
    if args.interactive {
        return interactive(ctx, &env).await;
    }
    // clap drops the `--`; find it on the real command line, as etcdctl does.
    let raw: Vec<OsString> = std::env::args_os().collect();
    let exec = raw.iter().position(|a| a == "--").map(|i| raw[i + 1..].to_vec());
    let (positional, exec) = split_exec(&args.args, exec)?;
    let range = watch_range(&positional, &env, args.prefix)?;
    let create = create_request(range, &args);

    let connector = ctx.connector()?;
    let channel = connector.connect(connector.dial_deadline()).await?;
    let (_progress_tx, progress_rx) = mpsc::channel(1);
    match watch_stream(channel, create, exec, ctx.printer, progress_rx).await? {
        WatchEnd::Canceled | WatchEnd::Closed => {
            Err(CtlError::new(ExitCode::Interrupted, "watch is canceled by the server"))
        }
    }
}

/// Separates `key [range_end]` from the command after `--`.
fn split_exec(args: &[OsString], exec: Option<Vec<OsString>>) -> Result<(Vec<OsString>, Vec<OsString>), CtlError> {
    match exec {
        None => Ok((args.to_vec(), Vec::new())),
        Some(exec) if exec.is_empty() => Err(CtlError::bad_args(BAD_ARGS_SEPARATOR)),
        Some(exec) => {
            let keep = args.len().saturating_sub(exec.len());
            Ok((args[..keep].to_vec(), exec))
        }
    }
}

/// `[key, range_end)` from the arguments or the environment (etcdctl's
/// `parseWatchArgs` and `getWatchChan` checks).
fn watch_range(positional: &[OsString], env: &EnvRange, prefix: bool) -> Result<(Vec<u8>, Vec<u8>), CtlError> {
    let mut words: Vec<Vec<u8>> = Vec::new();
    if let Some(key) = &env.key {
        if !positional.is_empty() {
            return Err(CtlError::bad_args(BAD_ARGS_CONFLICT_ENV));
        }
        words.push(key.as_bytes().to_vec());
        if let Some(end) = &env.range_end {
            words.push(end.as_bytes().to_vec());
        }
    }
    words.extend(positional.iter().map(|a| a.as_bytes().to_vec()));
    let Some(key) = words.first().cloned() else {
        return Err(CtlError::bad_args(BAD_ARGS_NUM));
    };
    if words.len() == 2 {
        if prefix {
            return Err(CtlError::bad_args("`range_end` and `--prefix` are mutually exclusive"));
        }
        return Ok((key, words[1].clone()));
    }
    if prefix {
        if key.is_empty() {
            return Ok((vec![0], vec![0]));
        }
        let end = prefix_end(&key);
        return Ok((key, end));
    }
    Ok((key, Vec::new()))
}

fn create_request((key, range_end): (Vec<u8>, Vec<u8>), args: &WatchArgs) -> WatchCreateRequest {
    WatchCreateRequest { key, range_end, start_revision: args.rev, prev_kv: args.prev_kv, ..Default::default() }
}

enum WatchEnd {
    /// The server canceled the watch (compaction, future revision, ...).
    Canceled,
    /// The server closed the stream.
    Closed,
}

/// Runs one watcher until the server ends it; `progress` asks for a progress
/// notification each time it yields.
async fn watch_stream(
    channel: Conn,
    create: WatchCreateRequest,
    exec: Vec<OsString>,
    printer: Printer,
    mut progress: mpsc::Receiver<()>,
) -> Result<WatchEnd, CtlError> {
    let (tx, rx) = mpsc::channel(4);
    let create = WatchRequest { request_union: Some(watch_request::RequestUnion::CreateRequest(create)) };
    tx.send(create).await.map_err(|_| CtlError::error("watch stream closed"))?;
    let mut request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    // clientv3.WithRequireLeader: the server cancels the watch if it loses its leader.
    request.metadata_mut().insert("hasleader", tonic::metadata::MetadataValue::from_static("true"));
    let mut responses =
        WatchClient::new(channel).watch(request).await.map_err(|s| CtlError::from_status(&s))?.into_inner();
    tokio::spawn(async move {
        while progress.recv().await.is_some() {
            let req = WatchRequest {
                request_union: Some(watch_request::RequestUnion::ProgressRequest(WatchProgressRequest {})),
            };
            if tx.send(req).await.is_err() {
                break;
            }
        }
        // Keep the request stream open for as long as the watcher lives.
        tx.closed().await;
    });
    loop {
        let resp = match responses.message().await {
            Ok(Some(resp)) => resp,
            Ok(None) => return Ok(WatchEnd::Closed),
            Err(status) => return Err(CtlError::from_status(&status)),
        };
        if resp.created && !resp.canceled {
            continue;
        }
        if resp.canceled {
            eprintln!("watch was canceled ({})", cancel_error(&resp));
            print_response(printer, &resp)?;
            return Ok(WatchEnd::Canceled);
        }
        print_response(printer, &resp)?;
        if !exec.is_empty() {
            run_exec(&exec, &resp).await?;
        }
    }
}

/// Prints one response whole (watchers share stdout), progress notifications
/// announced as etcdctl does.
fn print_response(printer: Printer, resp: &WatchResponse) -> Result<(), CtlError> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let revision = resp.header.as_ref().map(|h| h.revision).unwrap_or(0);
    let progress_notify = resp.events.is_empty() && !resp.canceled && resp.compact_revision == 0 && revision != 0;
    if progress_notify {
        writeln!(out, "progress notify: {revision}")?;
    }
    printer.watch(&mut out, resp)?;
    out.flush()?;
    Ok(())
}

/// clientv3's `WatchResponse.Err()` for a canceled watch.
fn cancel_error(resp: &WatchResponse) -> String {
    if resp.compact_revision != 0 {
        return "etcdserver: mvcc: required revision has been compacted".to_string();
    }
    if !resp.cancel_reason.is_empty() {
        return status_text(&tonic::Status::failed_precondition(resp.cancel_reason.clone()));
    }
    "etcdserver: mvcc: required revision is a future revision".to_string()
}

/// Runs the `-- command` once per event; a failing command ends hubctl with 1.
async fn run_exec(exec: &[OsString], resp: &WatchResponse) -> Result<(), CtlError> {
    let revision = resp.header.as_ref().map(|h| h.revision).unwrap_or(0);
    for event in &resp.events {
        let kv = event.kv.clone().unwrap_or_default();
        let event_type = crate::output::simple::event_type_name(event.r#type);
        let status = tokio::process::Command::new(&exec[0])
            .args(&exec[1..])
            .env("ETCD_WATCH_REVISION", revision.to_string())
            .env("ETCD_WATCH_EVENT_TYPE", quote(event_type.as_bytes()))
            .env("ETCD_WATCH_KEY", OsStr::from_bytes(quote(&kv.key).as_bytes()))
            .env("ETCD_WATCH_VALUE", OsStr::from_bytes(quote(&kv.value).as_bytes()))
            .status()
            .await;
        let failure = match status {
            Ok(s) if s.success() => continue,
            Ok(s) => match s.code() {
                Some(code) => format!("exit status {code}"),
                None => format!("signal: {s}"),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                format!("exec: {}: executable file not found in $PATH", quote(exec[0].as_bytes()))
            }
            Err(e) => e.to_string(),
        };
        let words: Vec<String> = exec.iter().map(|a| quote(a.as_bytes())).collect();
        eprintln!("command [{}] error ({failure})", words.join(" "));
        return Err(CtlError::silent(ExitCode::Error));
    }
    Ok(())
}

/// `watch -i`: one watcher per `watch ...` line, `progress` asks all of them.
async fn interactive(ctx: &Ctx, env: &EnvRange) -> Result<(), CtlError> {
    let connector = ctx.connector()?;
    let channel = connector.connect(connector.dial_deadline()).await?;
    let (line_tx, mut lines) = mpsc::unbounded_channel::<Option<Vec<u8>>>();
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        let mut input = stdin.lock();
        loop {
            let mut line = Vec::new();
            match input.read_until(b'\n', &mut line) {
                Ok(_) if line.last() == Some(&b'\n') => {
                    if line_tx.send(Some(line)).is_err() {
                        return;
                    }
                }
                _ => {
                    let _ = line_tx.send(None);
                    return;
                }
            }
        }
    });
    let (fatal_tx, mut fatal) = mpsc::unbounded_channel::<CtlError>();
    let mut watchers: Vec<mpsc::Sender<()>> = Vec::new();
    loop {
        let line = tokio::select! {
            line = lines.recv() => line.flatten(),
            Some(err) = fatal.recv() => return Err(err),
        };
        let Some(mut line) = line else {
            return Err(CtlError::invalid_input("Error reading watch request line: EOF"));
        };
        line.pop();
        let text = String::from_utf8_lossy(&line).into_owned();
        let words = argify(&line)?;
        let Some(command) = words.first() else {
            eprintln!("Invalid command: {text} (watch and progress supported)");
            continue;
        };
        if command == "progress" {
            watchers.retain(|w| !w.is_closed());
            for w in &watchers {
                let _ = w.try_send(());
            }
            continue;
        }
        if command != "watch" {
            eprintln!("Invalid command {text} (only support watch)");
            continue;
        }
        if words.len() < 2 && env.key.is_none() {
            eprintln!("Invalid command {text} (command type or key is not provided)");
            continue;
        }
        let rest = &words[1..];
        let separator = rest.iter().position(|w| w == "--");
        let (flag_words, exec) = match separator {
            Some(i) if i + 1 == rest.len() => return Err(CtlError::bad_args(BAD_ARGS_SEPARATOR)),
            Some(i) => (&rest[..i], rest[i + 1..].to_vec()),
            None => (rest, Vec::new()),
        };
        let parsed =
            WatchLine::try_parse_from(flag_words).map_err(|e| CtlError::bad_args(first_line(&e.to_string())))?;
        if parsed.args.args.is_empty() && env.key.is_none() {
            return Err(CtlError::bad_args(BAD_ARGS_NUM));
        }
        let range = match watch_range(&parsed.args.args, env, parsed.args.prefix) {
            Ok(range) => range,
            Err(e) => {
                eprintln!("Invalid command {text} ({e})");
                continue;
            }
        };
        let create = create_request(range, &parsed.args);
        let (progress_tx, progress_rx) = mpsc::channel(4);
        watchers.push(progress_tx);
        let (channel, printer, fatal_tx) = (channel.clone(), ctx.printer, fatal_tx.clone());
        tokio::spawn(async move {
            // A canceled watcher just ends here; other watchers go on.
            if let Err(e) = watch_stream(channel, create, exec, printer, progress_rx).await {
                let _ = fatal_tx.send(e);
            }
        });
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().trim_start_matches("error: ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    #[test]
    fn exec_args_are_split_off_at_the_separator() {
        let (pos, exec) = split_exec(&os(&["foo", "echo", "hi"]), Some(os(&["echo", "hi"]))).expect("split");
        assert_eq!((pos, exec), (os(&["foo"]), os(&["echo", "hi"])));
        let err = split_exec(&os(&["foo"]), Some(Vec::new())).expect_err("no command");
        assert_eq!(err.message.as_deref(), Some(BAD_ARGS_SEPARATOR));
    }

    #[test]
    fn ranges_follow_etcdctl() {
        let none = EnvRange { key: None, range_end: None };
        assert_eq!(watch_range(&os(&["a"]), &none, true).expect("prefix"), (b"a".to_vec(), b"b".to_vec()));
        assert_eq!(watch_range(&os(&["a", "c"]), &none, false).expect("range"), (b"a".to_vec(), b"c".to_vec()));
        assert!(watch_range(&os(&["a", "c"]), &none, true).is_err());
        assert!(watch_range(&[], &none, false).is_err());
        let env = EnvRange { key: Some("k".into()), range_end: None };
        assert_eq!(watch_range(&[], &env, false).expect("env"), (b"k".to_vec(), Vec::new()));
        assert!(watch_range(&os(&["x"]), &env, false).is_err());
    }
}

//! `txn`: reads compares, success ops and failure ops from stdin, each block
//! ended by an empty line, in etcdctl's grammar:
//!
//! ```text
//! mod("key1") > "0"          <target>("<key>") <op> "<value>"; target is
//! val("key2") = "x"          ver|version, c|create, m|mod, val|value, lease
//!
//! put key1 "new value"       put/get/del with their command-line flags
//! get key2 --prefix
//!
//! del key1
//!
//! ```
//!
//! With `-i` the three prompts are printed first. Bad input exits with 3.

use std::ffi::OsString;
use std::io::{BufRead, Write};

use clap::{ArgAction, Args, Parser, Subcommand};
use hub_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use hub_proto::etcdserverpb::kv_client::KvClient;
use hub_proto::etcdserverpb::{request_op, Compare, RequestOp, TxnRequest};

use super::kv::{self, DelArgs, GetArgs, PutArgs};
use super::line::{argify, GoScanner};
use super::Ctx;
use crate::client::call_unbounded;
use crate::error::CtlError;
use crate::flags::go_bool;
use crate::gofmt::{self, quote};

#[derive(Args, Debug)]
pub struct TxnArgs {
    /// Input transaction in interactive mode
    #[arg(short = 'i', long, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool)]
    pub interactive: bool,
    #[arg(hide = true)]
    pub args: Vec<OsString>,
}

pub async fn run(args: TxnArgs, ctx: &Ctx, out: &mut dyn Write) -> Result<(), CtlError> {
    if !args.args.is_empty() {
        return Err(CtlError::bad_args("txn command does not accept argument"));
    }
    let connector = ctx.connector()?;
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let prompt = |out: &mut dyn Write, text: &str| -> Result<(), CtlError> {
        if args.interactive {
            writeln!(out, "{text}")?;
            out.flush()?;
        }
        Ok(())
    };
    prompt(out, "compares:")?;
    let compare = read_block(&mut input, parse_compare)?;
    prompt(out, "success requests (get, put, del):")?;
    let success = read_block(&mut input, parse_op)?;
    prompt(out, "failure requests (get, put, del):")?;
    let failure = read_block(&mut input, parse_op)?;

    let mut kv = KvClient::new(connector.connect(connector.dial_deadline()).await?);
    let resp = call_unbounded(kv.txn(TxnRequest { compare, success, failure }))
        .await
        .map_err(|s| CtlError::from_status(&s))?;
    ctx.printer.txn(out, &resp)
}

/// Reads lines until an empty one; the input must not end before it (Go's
/// `ReadString` reports `EOF`, which etcdctl prints).
fn read_block<T>(input: &mut dyn BufRead, parse: fn(&[u8]) -> Result<T, CtlError>) -> Result<Vec<T>, CtlError> {
    let mut items = Vec::new();
    loop {
        let mut line = Vec::new();
        let n = input.read_until(b'\n', &mut line).map_err(|e| CtlError::invalid_input(e.to_string()))?;
        if n == 0 || line.last() != Some(&b'\n') {
            return Err(CtlError::invalid_input("EOF"));
        }
        let line = line.trim_ascii();
        if line.is_empty() {
            return Ok(items);
        }
        items.push(parse(line)?);
    }
}

/// etcdctl's `parseCompare`: `<target>("<key>") <op> "<value>"`.
pub fn parse_compare(line: &[u8]) -> Result<Compare, CtlError> {
    let text = String::from_utf8_lossy(line);
    let malformed = || CtlError::invalid_input(format!("malformed comparison: {text}"));
    let open = line.iter().position(|&b| b == b'(').ok_or_else(malformed)?;
    let target = String::from_utf8_lossy(&line[..open]).into_owned();

    // fmt.Sscanf(rest, "%q) %s %q", &key, &op, &val), counting what was read.
    let mut scanner = GoScanner::new(&line[open + 1..]);
    let key = scanner.quoted();
    let op =
        key.as_ref().and_then(|_| scanner.literal(b')')).and_then(|_| scanner.space()).and_then(|_| scanner.word());
    let value = op.as_ref().and_then(|_| scanner.space()).and_then(|_| scanner.quoted());
    let (Some(key), Some(op), Some(value)) = (key.clone(), op.clone(), value.clone()) else {
        return Err(CtlError::invalid_input(format!(
            "malformed comparison: {text}; got {target}({}) {} {}",
            quote(&key.unwrap_or_default()),
            op.unwrap_or_default(),
            quote(&value.unwrap_or_default())
        )));
    };

    let invalid = || CtlError::invalid_input(format!("invalid txn compare request: {text}"));
    let number = || gofmt::parse_int(&String::from_utf8_lossy(&value), 10).map_err(|_| invalid());
    let (target, union) = match target.as_str() {
        "ver" | "version" => (CompareTarget::Version, TargetUnion::Version(number()?)),
        "c" | "create" => (CompareTarget::Create, TargetUnion::CreateRevision(number()?)),
        "m" | "mod" => (CompareTarget::Mod, TargetUnion::ModRevision(number()?)),
        "val" | "value" => (CompareTarget::Value, TargetUnion::Value(value.clone())),
        // etcdctl 3.4 panics on lease compares; hubctl reads the lease ID in hex,
        // as every other etcdctl lease argument is written.
        "lease" => {
            let id = gofmt::parse_int(&String::from_utf8_lossy(&value), 16).map_err(|_| invalid())?;
            (CompareTarget::Lease, TargetUnion::Lease(id))
        }
        other => return Err(CtlError::invalid_input(format!("malformed comparison: {text} (unknown target {other})"))),
    };
    let result = match op.as_str() {
        "=" => CompareResult::Equal,
        "!=" => CompareResult::NotEqual,
        "<" => CompareResult::Less,
        ">" => CompareResult::Greater,
        // etcdctl panics here ("Unknown result op").
        _ => return Err(CtlError::invalid_input(format!("malformed comparison: {text} (unknown operator {op})"))),
    };
    Ok(Compare { result: result as i32, target: target as i32, key, range_end: Vec::new(), target_union: Some(union) })
}

/// The commands allowed inside a txn, parsed with their usual flags.
#[derive(Parser, Debug)]
#[command(no_binary_name = true, infer_subcommands = true, disable_help_subcommand = true)]
struct TxnOp {
    #[command(subcommand)]
    op: TxnOpCommand,
}

#[derive(Subcommand, Debug)]
enum TxnOpCommand {
    Get(GetArgs),
    Put(PutArgs),
    Del(DelArgs),
}

/// etcdctl's `parseRequestUnion`: one `get`/`put`/`del` line.
pub fn parse_op(line: &[u8]) -> Result<RequestOp, CtlError> {
    let text = String::from_utf8_lossy(line);
    let args = argify(line)?;
    if args.len() < 2 {
        return Err(CtlError::invalid_input(format!("invalid txn compare request: {text}")));
    }
    let parsed =
        TxnOp::try_parse_from(args).map_err(|_| CtlError::invalid_input(format!("invalid txn request: {text}")))?;
    let request = match parsed.op {
        TxnOpCommand::Get(a) => request_op::Request::RequestRange(kv::range_request(&a)?),
        // No value from stdin here: stdin is the transaction itself.
        TxnOpCommand::Put(a) => request_op::Request::RequestPut(kv::put_request(&a, || None)?),
        TxnOpCommand::Del(a) => request_op::Request::RequestDeleteRange(kv::delete_request(&a)?),
    };
    Ok(RequestOp { request: Some(request) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compare_err(line: &str) -> String {
        match parse_compare(line.as_bytes()) {
            Ok(c) => panic!("{line} parsed as {c:?}"),
            Err(e) => e.message.unwrap_or_default(),
        }
    }

    #[test]
    fn compares_parse_into_requests() {
        let c = parse_compare(br#"mod("k1") > "0""#).expect("compare");
        assert_eq!(c.key, b"k1");
        assert_eq!(c.result, CompareResult::Greater as i32);
        assert_eq!(c.target_union, Some(TargetUnion::ModRevision(0)));
        let c = parse_compare(br#"value("k2") != "v2""#).expect("compare");
        assert_eq!(c.target_union, Some(TargetUnion::Value(b"v2".to_vec())));
    }

    #[test]
    fn bad_compares_fail_with_etcdctl_text() {
        assert_eq!(compare_err(r#"mod("k1" > "0""#), r#"malformed comparison: mod("k1" > "0"; got mod("k1")  """#);
        assert_eq!(compare_err(r#"mod("k1") > "a""#), r#"invalid txn compare request: mod("k1") > "a""#);
        assert_eq!(compare_err(r#"mox("k1") > "a""#), r#"malformed comparison: mox("k1") > "a" (unknown target mox)"#);
        assert_eq!(compare_err("nothing"), "malformed comparison: nothing");
    }

    #[test]
    fn ops_parse_with_their_command_flags() {
        let op = parse_op(b"get k1 --prefix").expect("op");
        let Some(request_op::Request::RequestRange(r)) = op.request else { panic!("{op:?}") };
        assert_eq!((r.key.as_slice(), r.range_end.as_slice()), (&b"k1"[..], &b"k2"[..]));
        let err = parse_op(b"foo k3 v3").expect_err("unknown op");
        assert_eq!(err.message.as_deref(), Some("invalid txn request: foo k3 v3"));
        let err = parse_op(b"put").expect_err("too short");
        assert_eq!(err.message.as_deref(), Some("invalid txn compare request: put"));
    }
}

//! `get`, `put`, `del`: flags, etcdctl's argument checks, and the requests
//! they become (also used for the operations inside `txn`).

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;

use clap::{ArgAction, Args};
use hub_proto::etcdserverpb::kv_client::KvClient;
use hub_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use hub_proto::etcdserverpb::{DeleteRangeRequest, PutRequest, RangeRequest};
use hub_proto::range::prefix_end;

use super::Ctx;
use crate::client::{call, request};
use crate::error::CtlError;
use crate::flags::{self, go_bool, go_int64};
use crate::gofmt;
use crate::output::Format;

#[derive(Args, Debug, Clone)]
pub struct GetArgs {
    /// Linearizable(l) or Serializable(s)
    #[arg(long, default_value = "l")]
    pub consistency: String,
    /// Order of results; ASCEND or DESCEND (ASCEND by default)
    #[arg(long, default_value = "")]
    pub order: String,
    /// Sort target; CREATE, KEY, MODIFY, VALUE, or VERSION
    #[arg(long = "sort-by", default_value = "")]
    pub sort_by: String,
    /// Maximum number of results
    #[arg(long, default_value = "0", allow_hyphen_values = true, value_parser = go_int64)]
    pub limit: i64,
    /// Get keys with matching prefix
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool)]
    pub prefix: bool,
    /// Get keys that are greater than or equal to the given key using byte compare
    #[arg(long = "from-key", action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool)]
    pub from_key: bool,
    /// Specify the kv revision
    #[arg(long, default_value = "0", allow_hyphen_values = true, value_parser = go_int64)]
    pub rev: i64,
    /// Get only the keys
    #[arg(long = "keys-only", action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool)]
    pub keys_only: bool,
    /// Only write values when using the "simple" output format
    #[arg(long = "print-value-only", action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool)]
    pub print_value_only: bool,
    /// Get only the count (etcdctl 3.5; only with -w fields)
    #[arg(long = "count-only", action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool)]
    pub count_only: bool,
    /// Only keys modified at or after this revision (hubctl extension)
    #[arg(long = "min-mod-revision", default_value = "0", allow_hyphen_values = true, value_parser = go_int64)]
    pub min_mod_revision: i64,
    /// Only keys modified at or before this revision (hubctl extension)
    #[arg(long = "max-mod-revision", default_value = "0", allow_hyphen_values = true, value_parser = go_int64)]
    pub max_mod_revision: i64,
    /// Only keys created at or after this revision (hubctl extension)
    #[arg(long = "min-create-revision", default_value = "0", allow_hyphen_values = true, value_parser = go_int64)]
    pub min_create_revision: i64,
    /// Only keys created at or before this revision (hubctl extension)
    #[arg(long = "max-create-revision", default_value = "0", allow_hyphen_values = true, value_parser = go_int64)]
    pub max_create_revision: i64,
    /// <key> [range_end]
    #[arg(value_name = "KEY")]
    pub args: Vec<OsString>,
}

#[derive(Args, Debug, Clone)]
pub struct PutArgs {
    /// lease ID (in hexadecimal) to attach to the key
    #[arg(long, default_value = "0", allow_hyphen_values = true)]
    pub lease: String,
    /// return the previous key-value pair before modification
    #[arg(long = "prev-kv", action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool)]
    pub prev_kv: bool,
    /// updates the key using its current value
    #[arg(long = "ignore-value", action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool)]
    pub ignore_value: bool,
    /// updates the key using its current lease
    #[arg(long = "ignore-lease", action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool)]
    pub ignore_lease: bool,
    /// <key> <value> (<value> can also be given from stdin)
    #[arg(value_name = "KEY")]
    pub args: Vec<OsString>,
}

#[derive(Args, Debug, Clone)]
pub struct DelArgs {
    /// delete keys with matching prefix
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool)]
    pub prefix: bool,
    /// return deleted key-value pairs
    #[arg(long = "prev-kv", action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool)]
    pub prev_kv: bool,
    /// delete keys that are greater than or equal to the given key using byte compare
    #[arg(long = "from-key", action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool)]
    pub from_key: bool,
    /// <key> [range_end]
    #[arg(value_name = "KEY")]
    pub args: Vec<OsString>,
}

fn bytes(s: &OsString) -> Vec<u8> {
    s.as_bytes().to_vec()
}


/// `[key, range_end)` for `--prefix` / `--from-key`, as clientv3 spells them.
fn key_range(mut key: Vec<u8>, range_end: Vec<u8>, prefix: bool, from_key: bool) -> (Vec<u8>, Vec<u8>) {
    if prefix {
        if key.is_empty() {
            return (vec![0], vec![0]);
        }
        let end = prefix_end(&key);
        return (key, end);
    }
    if from_key {
        if key.is_empty() {
            key = vec![0];
        }
        return (key, vec![0]);
    }
    (key, range_end)
}

/// etcdctl's `getGetOp`.
pub fn range_request(a: &GetArgs) -> Result<RangeRequest, CtlError> {
    if a.args.is_empty() {
        return Err(CtlError::bad_args("get command needs one argument as key and an optional argument as range_end"));
    }
    if a.prefix && a.from_key {
        return Err(CtlError::bad_args("`--prefix` and `--from-key` cannot be set at the same time, choose one"));
    }
    if a.keys_only && a.count_only {
        return Err(CtlError::bad_args("`--keys-only` and `--count-only` cannot be set at the same time, choose one"));
    }
    let serializable = flags::serializable(&a.consistency)?;
    let range_end = range_end_arg(&a.args, a.prefix, a.from_key)?;
    let mut order = match a.order.to_uppercase().as_str() {
        "ASCEND" => SortOrder::Ascend,
        "DESCEND" => SortOrder::Descend,
        "" => SortOrder::None,
        _ => return Err(CtlError::bad_feature(format!("bad sort order {}", a.order))),
    };
    let target = match a.sort_by.to_uppercase().as_str() {
        "CREATE" => SortTarget::Create,
        "KEY" | "" => SortTarget::Key,
        "MODIFY" => SortTarget::Mod,
        "VALUE" => SortTarget::Value,
        "VERSION" => SortTarget::Version,
        _ => return Err(CtlError::bad_feature(format!("bad sort target {}", a.sort_by))),
    };
    // clientv3's WithSort: keys already come back ascending, so no sort is asked for.
    if target == SortTarget::Key && order == SortOrder::Ascend {
        order = SortOrder::None;
    }
    let (key, range_end) = key_range(bytes(&a.args[0]), range_end, a.prefix, a.from_key);
    Ok(RangeRequest {
        key,
        range_end,
        limit: a.limit,
        revision: a.rev.max(0),
        sort_order: order as i32,
        sort_target: target as i32,
        serializable,
        keys_only: a.keys_only,
        count_only: a.count_only,
        min_mod_revision: a.min_mod_revision,
        max_mod_revision: a.max_mod_revision,
        min_create_revision: a.min_create_revision,
        max_create_revision: a.max_create_revision,
    })
}

/// etcdctl's `getPutOp`; `stdin` supplies the value when only a key is given.
pub fn put_request(a: &PutArgs, stdin: impl FnOnce() -> Option<Vec<u8>>) -> Result<PutRequest, CtlError> {
    const USAGE: &str = "put command needs 1 argument and input from stdin or 2 arguments";
    let Some(key) = a.args.first() else {
        return Err(CtlError::bad_args(USAGE));
    };
    if a.ignore_value && a.args.len() > 1 {
        return Err(CtlError::bad_args("put command needs only 1 argument when 'ignore-value' is set"));
    }
    let value = if a.ignore_value {
        Vec::new()
    } else {
        match a.args.get(1) {
            Some(v) => bytes(v),
            None => stdin().filter(|v| !v.is_empty()).ok_or_else(|| CtlError::bad_args(USAGE))?,
        }
    };
    let lease = gofmt::parse_int(&a.lease, 16)
        .map_err(|e| CtlError::bad_args(format!("bad lease ID ({e}), expecting ID in Hex")))?;
    Ok(PutRequest {
        key: bytes(key),
        value,
        lease,
        prev_kv: a.prev_kv,
        ignore_value: a.ignore_value,
        ignore_lease: a.ignore_lease,
    })
}

/// etcdctl's `getDelOp`.
/// The optional second argument of get and del: an explicit range end, which
/// `--prefix` and `--from-key` exclude.
fn range_end_arg(args: &[OsString], prefix: bool, from_key: bool) -> Result<Vec<u8>, CtlError> {
    let Some(end) = args.get(1) else { return Ok(Vec::new()) };
    if prefix || from_key {
        return Err(CtlError::bad_args(
            "too many arguments, only accept one argument when `--prefix` or `--from-key` is set",
        ));
    }
    Ok(bytes(end))
}

pub fn delete_request(a: &DelArgs) -> Result<DeleteRangeRequest, CtlError> {
    if a.args.is_empty() || a.args.len() > 2 {
        return Err(CtlError::bad_args("del command needs one argument as key and an optional argument as range_end"));
    }
    if a.prefix && a.from_key {
        return Err(CtlError::bad_args("`--prefix` and `--from-key` cannot be set at the same time, choose one"));
    }
    let range_end = range_end_arg(&a.args, a.prefix, a.from_key)?;
    let (key, range_end) = key_range(bytes(&a.args[0]), range_end, a.prefix, a.from_key);
    Ok(DeleteRangeRequest { key, range_end, prev_kv: a.prev_kv })
}

pub async fn get(args: GetArgs, ctx: &Ctx, out: &mut dyn Write) -> Result<(), CtlError> {
    let req = range_request(&args)?;
    if args.count_only && ctx.opts.format != Format::Fields {
        return Err(CtlError::bad_args("--count-only is only for `--write-out=fields`"));
    }
    let connector = ctx.connector()?;
    let deadline = connector.command_deadline();
    let mut kv = KvClient::new(connector.connect(deadline).await?);
    let resp = call(deadline, kv.range(request(req, deadline))).await?;
    let mut printer = ctx.printer;
    if args.print_value_only {
        if ctx.opts.format != Format::Simple {
            return Err(CtlError::bad_args("print-value-only is only for `--write-out=simple`"));
        }
        printer.style.value_only = true;
    }
    printer.get(out, &resp)
}

pub async fn put(args: PutArgs, ctx: &Ctx, out: &mut dyn Write) -> Result<(), CtlError> {
    let req = put_request(&args, || {
        let mut value = Vec::new();
        std::io::stdin().read_to_end(&mut value).ok().map(|_| value)
    })?;
    let connector = ctx.connector()?;
    let deadline = connector.command_deadline();
    let mut kv = KvClient::new(connector.connect(deadline).await?);
    let resp = call(deadline, kv.put(request(req, deadline))).await?;
    ctx.printer.put(out, &resp)
}

pub async fn del(args: DelArgs, ctx: &Ctx, out: &mut dyn Write) -> Result<(), CtlError> {
    let req = delete_request(&args)?;
    let connector = ctx.connector()?;
    let deadline = connector.command_deadline();
    let mut kv = KvClient::new(connector.connect(deadline).await?);
    let resp = call(deadline, kv.delete_range(request(req, deadline))).await?;
    ctx.printer.del(out, &resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_prefix_means_the_whole_keyspace() {
        assert_eq!(key_range(Vec::new(), Vec::new(), true, false), (vec![0], vec![0]));
        assert_eq!(key_range(b"a".to_vec(), Vec::new(), false, true), (b"a".to_vec(), vec![0]));
    }
}

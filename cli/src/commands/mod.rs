//! One module per etcdctl command group; each parses its own arguments (clap
//! `Args`), checks them the way etcdctl does, makes the RPCs and hands the
//! responses to the [`Printer`].
//!
//! - [`kv`]: `get`, `put`, `del` (their flag handling is shared with `txn`)
//! - [`txn`]: `txn`, interactive or from stdin, etcdctl's compare/op grammar
//! - [`watch`]: `watch`, interactive `-i`, and `watch ... -- command`
//! - [`lease`]: `lease grant|revoke|timetolive|list|keep-alive`
//! - [`member`]: `member list|add|remove|update|promote`
//! - [`endpoint`]: `endpoint status|health|hashkv` (`--cluster`)
//! - [`maintenance`]: `compaction`, `defrag`, `alarm list|disarm`, `move-leader`
//! - [`snapshot`]: `snapshot save|status|restore`, on top of `hub_store::snapshot`
//! - [`concurrency`]: `elect` and `lock`, through the server's Election and Lock services
//! - [`auth`]: `auth enable|disable`, `user ...`, `role ...`
//! - [`line`]: etcdctl's splitting of an input line into arguments

pub mod auth;
pub mod concurrency;
pub mod endpoint;
pub mod kv;
pub mod lease;
pub mod line;
pub mod maintenance;
pub mod member;
pub mod snapshot;
pub mod txn;
pub mod watch;

use std::io::Write;

use crate::client::Connector;
use crate::error::CtlError;
use crate::flags::{Command, GlobalOptions};
use crate::output::Printer;

/// What every command gets: the resolved global options and the printer.
pub struct Ctx {
    pub opts: GlobalOptions,
    pub printer: Printer,
}

impl Ctx {
    pub fn new(opts: GlobalOptions) -> Self {
        let printer = Printer::new(opts.format, opts.hex);
        Ctx { opts, printer }
    }

    /// The connection settings; checked only once a command needs the cluster,
    /// after its own arguments (etcdctl's order of complaints).
    pub fn connector(&self) -> Result<Connector, CtlError> {
        Connector::new(&self.opts)
    }
}

/// Runs one command; stdout is where responses go.
pub async fn run(command: Command, ctx: &Ctx, out: &mut dyn Write) -> Result<(), CtlError> {
    match command {
        Command::Get(args) => kv::get(args, ctx, out).await,
        Command::Put(args) => kv::put(args, ctx, out).await,
        Command::Del(args) => kv::del(args, ctx, out).await,
        Command::Txn(args) => txn::run(args, ctx, out).await,
        Command::Compaction(args) => maintenance::compaction(args, ctx, out).await,
        Command::Alarm(cmd) => maintenance::alarm(cmd, ctx, out).await,
        Command::Defrag(args) => maintenance::defrag(args, ctx, out).await,
        Command::Endpoint(args) => endpoint::run(args, ctx, out).await,
        Command::MoveLeader(args) => maintenance::move_leader(args, ctx, out).await,
        Command::Watch(args) => watch::run(args, ctx).await,
        Command::Version => version(out),
        Command::Lease(cmd) => lease::run(cmd, ctx, out).await,
        Command::Member(cmd) => member::run(cmd, ctx, out).await,
        Command::Snapshot(cmd) => snapshot::run(cmd, ctx, out).await,
        Command::Auth(cmd) => auth::auth(cmd, ctx, out).await,
        Command::User(cmd) => auth::user(cmd, ctx, out).await,
        Command::Role(cmd) => auth::role(cmd, ctx, out).await,
        Command::Elect(args) => concurrency::elect(args, ctx, out).await,
        Command::Lock(args) => concurrency::lock(args, ctx, out).await,
    }
}

/// hubctl's own version, and the etcd API version it speaks.
fn version(out: &mut dyn Write) -> Result<(), CtlError> {
    writeln!(out, "hubctl version: {}", env!("CARGO_PKG_VERSION"))?;
    writeln!(out, "API version: 3.4")?;
    Ok(())
}

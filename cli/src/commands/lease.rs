//! `lease grant|revoke|timetolive|list|keep-alive`.
//!
//! Lease IDs are read and printed in hex, TTLs in seconds. As in etcdctl,
//! `timetolive`, `list` and `keep-alive` fail with exit code 2 (ExitBadConnection).

use std::io::Write;
use std::time::Duration;

use clap::{ArgAction, Args, Subcommand};
use hub_proto::etcdserverpb::lease_client::LeaseClient;
use hub_proto::etcdserverpb::{
    LeaseGrantRequest, LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseLeasesRequest, LeaseRevokeRequest,
    LeaseTimeToLiveRequest,
};
use crate::client::Conn;

use super::Ctx;
use crate::client::{call, call_unbounded, request};
use crate::error::{CtlError, ExitCode};
use crate::flags::go_bool;
use crate::gofmt;
use crate::output::Format;

#[derive(Subcommand, Debug)]
pub enum LeaseCommand {
    /// Creates leases
    Grant(PositionalArgs),
    /// Revokes leases
    Revoke(PositionalArgs),
    /// Get lease information
    Timetolive(TimeToLiveArgs),
    /// List all active leases
    List(PositionalArgs),
    /// Keeps leases alive (renew)
    KeepAlive(KeepAliveArgs),
}

#[derive(Args, Debug)]
pub struct PositionalArgs {
    #[arg(value_name = "ARG")]
    pub args: Vec<String>,
}

#[derive(Args, Debug)]
pub struct TimeToLiveArgs {
    /// Get keys attached to this lease
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool)]
    pub keys: bool,
    #[arg(value_name = "LEASE_ID")]
    pub args: Vec<String>,
}

#[derive(Args, Debug)]
pub struct KeepAliveArgs {
    /// Resets the keep-alive time to its original value and exits immediately
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool)]
    pub once: bool,
    #[arg(value_name = "LEASE_ID")]
    pub args: Vec<String>,
}

/// etcdctl's `leaseFromArgs`.
fn lease_id(arg: &str) -> Result<i64, CtlError> {
    gofmt::parse_int(arg, 16).map_err(|e| CtlError::bad_args(format!("bad lease ID arg ({e}), expecting ID in Hex")))
}

fn single<'a>(args: &'a [String], usage: &str) -> Result<&'a str, CtlError> {
    match args {
        [one] => Ok(one),
        _ => Err(CtlError::bad_args(usage)),
    }
}

pub async fn run(cmd: LeaseCommand, ctx: &Ctx, out: &mut dyn Write) -> Result<(), CtlError> {
    match cmd {
        LeaseCommand::Grant(a) => grant(a, ctx, out).await,
        LeaseCommand::Revoke(a) => revoke(a, ctx, out).await,
        LeaseCommand::Timetolive(a) => time_to_live(a, ctx, out).await,
        LeaseCommand::List(_) => list(ctx, out).await,
        LeaseCommand::KeepAlive(a) => keep_alive(a, ctx, out).await,
    }
}

async fn grant(a: PositionalArgs, ctx: &Ctx, out: &mut dyn Write) -> Result<(), CtlError> {
    let ttl = single(&a.args, "lease grant command needs TTL argument")?;
    let ttl = gofmt::parse_int(ttl, 10).map_err(|e| CtlError::bad_args(format!("bad TTL ({e})")))?;
    let connector = ctx.connector()?;
    let deadline = connector.command_deadline();
    let mut lease = LeaseClient::new(connector.connect(deadline).await?);
    let resp = call(deadline, lease.lease_grant(request(LeaseGrantRequest { ttl, id: 0 }, deadline)))
        .await
        .map_err(|e| CtlError::error(format!("failed to grant lease ({e})")))?;
    // clientv3 turns an error carried in the response into a failed call.
    if !resp.error.is_empty() {
        return Err(CtlError::error(format!("failed to grant lease ({})", resp.error)));
    }
    ctx.printer.grant(out, &resp)
}

async fn revoke(a: PositionalArgs, ctx: &Ctx, out: &mut dyn Write) -> Result<(), CtlError> {
    let id = lease_id(single(&a.args, "lease revoke command needs 1 argument")?)?;
    let connector = ctx.connector()?;
    let deadline = connector.command_deadline();
    let mut lease = LeaseClient::new(connector.connect(deadline).await?);
    let resp = call(deadline, lease.lease_revoke(request(LeaseRevokeRequest { id }, deadline)))
        .await
        .map_err(|e| CtlError::error(format!("failed to revoke lease ({e})")))?;
    ctx.printer.revoke(out, id, &resp)
}

/// A client for the commands etcdctl runs without a timeout; failing to
/// connect is ExitBadConnection for them.
async fn unbounded_client(ctx: &Ctx) -> Result<LeaseClient<Conn>, CtlError> {
    let connector = ctx.connector()?;
    let channel = connector
        .connect(connector.dial_deadline())
        .await
        .map_err(|e| CtlError { code: ExitCode::BadConnection, ..e })?;
    Ok(LeaseClient::new(channel))
}

async fn time_to_live(a: TimeToLiveArgs, ctx: &Ctx, out: &mut dyn Write) -> Result<(), CtlError> {
    let id = lease_id(single(&a.args, "lease timetolive command needs lease ID as argument")?)?;
    let mut lease = unbounded_client(ctx).await?;
    let resp = call_unbounded(lease.lease_time_to_live(LeaseTimeToLiveRequest { id, keys: a.keys }))
        .await
        .map_err(|s| CtlError::from_status_with(ExitCode::BadConnection, &s))?;
    ctx.printer.time_to_live(out, &resp, a.keys)
}

async fn list(ctx: &Ctx, out: &mut dyn Write) -> Result<(), CtlError> {
    let mut lease = unbounded_client(ctx).await?;
    let resp = call_unbounded(lease.lease_leases(LeaseLeasesRequest {}))
        .await
        .map_err(|s| CtlError::from_status_with(ExitCode::BadConnection, &s))?;
    ctx.printer.leases(out, &resp)
}

async fn keep_alive(a: KeepAliveArgs, ctx: &Ctx, out: &mut dyn Write) -> Result<(), CtlError> {
    let id = lease_id(single(&a.args, "lease keep-alive command needs lease ID as argument")?)?;
    let mut lease = unbounded_client(ctx).await?;
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let stream_err = |s: tonic::Status| CtlError::from_status_with(ExitCode::BadConnection, &s);
    // The first request goes out with the stream: servers answer the call
    // (headers included) only once a message has arrived.
    tx.send(LeaseKeepAliveRequest { id }).await.map_err(|_| CtlError::error("keep-alive stream closed"))?;
    let mut responses =
        lease.lease_keep_alive(tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx))).await.map_err(stream_err)?.into_inner();
    loop {
        let resp: LeaseKeepAliveResponse = match responses.message().await.map_err(stream_err)? {
            Some(resp) => resp,
            None => break,
        };
        if resp.ttl <= 0 {
            if a.once {
                // clientv3's KeepAliveOnce reports a lease that is gone as ErrLeaseNotFound.
                return Err(CtlError::new(ExitCode::BadConnection, "etcdserver: requested lease not found"));
            }
            break;
        }
        ctx.printer.keep_alive(out, &resp)?;
        out.flush()?;
        if a.once {
            return Ok(());
        }
        // clientv3 renews a third of the TTL after each answer.
        tokio::time::sleep(Duration::from_secs(resp.ttl as u64) / 3).await;
        if tx.send(LeaseKeepAliveRequest { id }).await.is_err() {
            break;
        }
    }
    if ctx.opts.format == Format::Simple {
        writeln!(out, "lease {id:016x} expired or revoked.")?;
    }
    Ok(())
}

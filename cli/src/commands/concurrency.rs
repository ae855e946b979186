//! `elect` and `lock`: etcdctl's leader election and distributed lock.
//!
//! etcdctl runs clientv3's `concurrency` recipes in the client; hubctl asks
//! the server's `v3election`/`v3lock` services (which run those recipes
//! server-side, in etcd as in hub) under a session lease it keeps alive, so the
//! keys, revisions and waiting order are the same. Output and errors are
//! etcdctl's: the key and value once elected or locked, each new leader with
//! `elect -l`, and `Error: session expired` when the lease is lost.

use std::io::Write;
use std::time::Duration;

use clap::Args;
use hub_proto::etcdserverpb::kv_client::KvClient;
use hub_proto::etcdserverpb::lease_client::LeaseClient;
use hub_proto::etcdserverpb::{LeaseGrantRequest, LeaseKeepAliveRequest, RangeRequest, RangeResponse};
use hub_proto::v3electionpb::election_client::ElectionClient;
use hub_proto::v3electionpb::{CampaignRequest, LeaderKey, LeaderRequest, ResignRequest};
use hub_proto::v3lockpb::lock_client::LockClient;
use hub_proto::v3lockpb::{LockRequest, UnlockRequest};

use super::Ctx;
use crate::client::{call_unbounded, Conn};
use crate::error::{CtlError, ExitCode};
use crate::flags::{go_bool, go_int64};

/// clientv3 concurrency's default session TTL, which `elect` uses.
const ELECT_SESSION_TTL: i64 = 60;

#[derive(Args, Debug)]
pub struct ElectArgs {
    /// observation mode
    #[arg(short = 'l', long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool)]
    listen: bool,
    #[arg(value_name = "ARG")]
    args: Vec<String>,
}

#[derive(Args, Debug)]
pub struct LockArgs {
    /// timeout for session
    #[arg(long, default_value_t = 10, value_parser = go_int64)]
    ttl: i64,
    /// <lockname> [exec-command arg1 arg2 ...]; flags of the command go after `--`, as with etcdctl
    #[arg(value_name = "ARG")]
    args: Vec<String>,
}

fn status_error(s: tonic::Status) -> CtlError {
    CtlError::from_status(&s)
}

async fn channel(ctx: &Ctx) -> Result<Conn, CtlError> {
    let connector = ctx.connector()?;
    connector.connect(connector.dial_deadline()).await.map_err(|e| CtlError { code: ExitCode::BadConnection, ..e })
}

/// Resolves on SIGINT or SIGTERM, as etcdctl's `signal.Notify`.
async fn interrupted() {
    use tokio::signal::unix::{signal, SignalKind};
    match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
        (Ok(mut int), Ok(mut term)) => {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// A lease kept alive until it is lost: clientv3's `concurrency.Session`.
struct Session {
    lease: i64,
    lost: tokio::sync::oneshot::Receiver<()>,
}

impl Session {
    async fn new(channel: Conn, ttl: i64) -> Result<Session, CtlError> {
        let mut leases = LeaseClient::new(channel);
        let grant = call_unbounded(leases.lease_grant(tonic::Request::new(LeaseGrantRequest { ttl, id: 0 })))
            .await
            .map_err(status_error)?;
        if !grant.error.is_empty() {
            return Err(CtlError::error(grant.error));
        }
        let lease = grant.id;
        let (lost_tx, lost) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let (tx, rx) = tokio::sync::mpsc::channel(1);
            if tx.send(LeaseKeepAliveRequest { id: lease }).await.is_ok() {
                let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
                if let Ok(resp) = leases.lease_keep_alive(tonic::Request::new(stream)).await {
                    let mut responses = resp.into_inner();
                    // clientv3 renews a third of the TTL after each answer.
                    while let Ok(Some(r)) = responses.message().await {
                        if r.ttl <= 0 {
                            break;
                        }
                        tokio::time::sleep(Duration::from_secs(r.ttl as u64) / 3).await;
                        if tx.send(LeaseKeepAliveRequest { id: lease }).await.is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = lost_tx.send(());
        });
        Ok(Session { lease, lost })
    }
}

/// A fresh read of `key`, which etcdctl prints once elected or locked.
async fn read_key(channel: Conn, key: &[u8]) -> Result<RangeResponse, CtlError> {
    let request = RangeRequest { key: key.to_vec(), ..Default::default() };
    call_unbounded(KvClient::new(channel).range(tonic::Request::new(request))).await.map_err(status_error)
}

pub async fn elect(a: ElectArgs, ctx: &Ctx, out: &mut dyn Write) -> Result<(), CtlError> {
    if a.args.len() != 1 && a.args.len() != 2 {
        return Err(CtlError::new(
            ExitCode::BadArgs,
            "elect takes one election name argument and an optional proposal argument",
        ));
    }
    if a.args.len() == 1 && !a.listen {
        return Err(CtlError::new(ExitCode::BadArgs, "no proposal argument but -l not set"));
    }
    if a.args.len() == 2 && a.listen {
        return Err(CtlError::new(ExitCode::BadArgs, "proposal given but -l is set"));
    }
    let channel = channel(ctx).await?;
    let name = a.args[0].as_bytes().to_vec();
    if a.listen {
        return observe(ctx, channel, name, out).await;
    }
    let mut session = Session::new(channel.clone(), ELECT_SESSION_TTL).await?;
    let mut election = ElectionClient::new(channel.clone());
    let campaign = CampaignRequest { name, lease: session.lease, value: a.args[1].as_bytes().to_vec() };
    let leader = tokio::select! {
        r = call_unbounded(election.campaign(tonic::Request::new(campaign))) => r.map_err(status_error)?,
        _ = interrupted() => return Err(CtlError::error("context canceled")),
    };
    let leader: LeaderKey = leader.leader.ok_or_else(|| CtlError::error("campaign answered without a leader key"))?;
    ctx.printer.get(out, &read_key(channel, &leader.key).await?)?;
    out.flush()?;
    tokio::select! {
        _ = interrupted() => {}
        _ = &mut session.lost => return Err(CtlError::error("elect: session expired")),
    }
    call_unbounded(election.resign(tonic::Request::new(ResignRequest { leader: Some(leader) })))
        .await
        .map_err(status_error)?;
    Ok(())
}

/// `elect -l`: every leader of the election, as it comes, until interrupted.
async fn observe(ctx: &Ctx, channel: Conn, name: Vec<u8>, out: &mut dyn Write) -> Result<(), CtlError> {
    let mut election = ElectionClient::new(channel);
    let watch = async {
        let mut leaders = election
            .observe(tonic::Request::new(LeaderRequest { name }))
            .await
            .map_err(status_error)?
            .into_inner();
        while let Ok(Some(leader)) = leaders.message().await {
            let kvs: Vec<_> = leader.kv.into_iter().collect();
            let resp = RangeResponse { header: leader.header, count: kvs.len() as i64, kvs, more: false };
            ctx.printer.get(out, &resp)?;
            out.flush()?;
        }
        Err(CtlError::error("elect: observer lost"))
    };
    tokio::select! {
        r = watch => r,
        _ = interrupted() => Ok(()),
    }
}

pub async fn lock(a: LockArgs, ctx: &Ctx, out: &mut dyn Write) -> Result<(), CtlError> {
    let Some((name, command)) = a.args.split_first() else {
        return Err(CtlError::new(ExitCode::BadArgs, "lock takes a lock name argument and an optional command to execute"));
    };
    let channel = channel(ctx).await?;
    let mut session = Session::new(channel.clone(), a.ttl).await?;
    let mut locks = LockClient::new(channel.clone());
    let request = LockRequest { name: name.as_bytes().to_vec(), lease: session.lease };
    let locked = tokio::select! {
        r = call_unbounded(locks.lock(tonic::Request::new(request))) => r.map_err(status_error)?,
        _ = interrupted() => return Err(CtlError::error("context canceled")),
    };
    let key = locked.key;
    let unlock = |mut locks: LockClient<Conn>, key: Vec<u8>| async move {
        call_unbounded(locks.unlock(tonic::Request::new(UnlockRequest { key }))).await.map_err(status_error)
    };
    if let Some((program, args)) = command.split_first() {
        let revision = locked.header.map_or(0, |h| h.revision);
        out.flush()?;
        let status = tokio::process::Command::new(program)
            .args(args)
            .env("ETCD_LOCK_KEY", String::from_utf8_lossy(&key).as_ref())
            .env("ETCD_LOCK_REV", revision.to_string())
            .status()
            .await;
        unlock(locks, key).await?;
        return match status {
            Ok(s) if s.success() => Ok(()),
            // Go's *exec.ExitError text.
            Ok(s) => Err(CtlError::error(match s.code() {
                Some(code) => format!("exit status {code}"),
                None => format!("signal: {}", s),
            })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(CtlError::error(format!("exec: \"{program}\": executable file not found in $PATH")))
            }
            Err(e) => Err(CtlError::error(e.to_string())),
        };
    }
    let held = read_key(channel, &key).await?;
    if held.kvs.is_empty() {
        return Err(CtlError::error("lock lost on init"));
    }
    ctx.printer.get(out, &held)?;
    out.flush()?;
    tokio::select! {
        _ = interrupted() => {
            unlock(locks, key).await?;
            Ok(())
        }
        _ = &mut session.lost => Err(CtlError::error("session expired")),
    }
}

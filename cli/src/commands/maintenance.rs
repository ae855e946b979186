//! `compaction`, `defrag`, `alarm list|disarm`, `move-leader`: the operator
//! commands of etcd's KV.Compact and Maintenance service.

use std::io::Write;

use clap::{ArgAction, Args, Subcommand};
use hub_proto::etcdserverpb::alarm_request::AlarmAction;
use hub_proto::etcdserverpb::kv_client::KvClient;
use hub_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use hub_proto::etcdserverpb::{
    AlarmRequest, AlarmResponse, CompactionRequest, DefragmentRequest, MoveLeaderRequest, StatusRequest,
};
use tokio::time::Instant;
use crate::client::Conn;

use super::{endpoint, Ctx};
use crate::client::{call, request};
use crate::error::{CtlError, ExitCode};
use crate::flags::go_bool;
use crate::gofmt;

#[derive(Args, Debug)]
pub struct CompactionArgs {
    /// 'true' to wait for compaction to physically remove all old revisions
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool)]
    pub physical: bool,
    #[arg(value_name = "REVISION")]
    pub args: Vec<String>,
}

#[derive(Args, Debug)]
pub struct DefragArgs {
    /// use all endpoints from the cluster member list
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool)]
    pub cluster: bool,
    /// Optional. If present, defragments a data directory not in use by etcd (not supported by hubctl yet).
    #[arg(long = "data-dir", default_value = "")]
    pub data_dir: String,
}

#[derive(Subcommand, Debug)]
pub enum AlarmCommand {
    /// Disarms all alarms
    Disarm(NoArgs),
    /// Lists all alarms
    List(NoArgs),
}

#[derive(Args, Debug)]
pub struct NoArgs {
    #[arg(hide = true)]
    pub args: Vec<String>,
}

#[derive(Args, Debug)]
pub struct MoveLeaderArgs {
    #[arg(value_name = "TRANSFEREE_MEMBER_ID")]
    pub args: Vec<String>,
}

pub async fn compaction(a: CompactionArgs, ctx: &Ctx, out: &mut dyn Write) -> Result<(), CtlError> {
    let [revision] = a.args.as_slice() else {
        return Err(CtlError::bad_args("compaction command needs 1 argument"));
    };
    let revision = gofmt::parse_int(revision, 10).map_err(CtlError::error)?;
    let connector = ctx.connector()?;
    let deadline = connector.command_deadline();
    let mut kv = KvClient::new(connector.connect(deadline).await?);
    call(deadline, kv.compact(request(CompactionRequest { revision, physical: a.physical }, deadline))).await?;
    writeln!(out, "compacted revision {revision}")?;
    Ok(())
}

pub async fn defrag(a: DefragArgs, ctx: &Ctx, out: &mut dyn Write) -> Result<(), CtlError> {
    if !a.data_dir.is_empty() {
        return Err(CtlError::error("defrag --data-dir is not supported by hubctl yet"));
    }
    let connector = ctx.connector()?;
    let mut failures = 0;
    for ep in endpoint::endpoints(&connector, a.cluster).await? {
        let deadline = connector.command_deadline();
        let result = async {
            let mut client = MaintenanceClient::new(connector.connect_to(&ep, deadline).await?);
            call(deadline, client.defragment(request(DefragmentRequest {}, deadline))).await
        }
        .await;
        match result {
            Ok(_) => writeln!(out, "Finished defragmenting etcd member[{ep}]")?,
            Err(e) => {
                eprintln!("Failed to defragment etcd member[{ep}] ({e})");
                failures += 1;
            }
        }
    }
    if failures > 0 {
        return Err(CtlError::silent(ExitCode::Error));
    }
    Ok(())
}

async fn maintenance_client(ctx: &Ctx) -> Result<(MaintenanceClient<Conn>, Instant), CtlError> {
    let connector = ctx.connector()?;
    let deadline = connector.command_deadline();
    Ok((MaintenanceClient::new(connector.connect(deadline).await?), deadline))
}

pub async fn alarm(cmd: AlarmCommand, ctx: &Ctx, out: &mut dyn Write) -> Result<(), CtlError> {
    match cmd {
        AlarmCommand::List(a) => {
            if !a.args.is_empty() {
                return Err(CtlError::bad_args("alarm list command accepts no arguments"));
            }
            let (mut client, deadline) = maintenance_client(ctx).await?;
            let resp = call(deadline, client.alarm(request(alarm_request(AlarmAction::Get, 0, 0), deadline))).await?;
            ctx.printer.alarm(out, &resp)
        }
        AlarmCommand::Disarm(a) => {
            if !a.args.is_empty() {
                return Err(CtlError::bad_args("alarm disarm command accepts no arguments"));
            }
            let (mut client, deadline) = maintenance_client(ctx).await?;
            // clientv3's AlarmDisarm of "every alarm": list them, disarm each, and
            // answer with the disarmed alarms only (no header).
            let listed = call(deadline, client.alarm(request(alarm_request(AlarmAction::Get, 0, 0), deadline))).await?;
            let mut resp = AlarmResponse::default();
            for alarm in listed.alarms {
                let req = alarm_request(AlarmAction::Deactivate, alarm.member_id, alarm.alarm);
                let disarmed = call(deadline, client.alarm(request(req, deadline))).await?;
                resp.alarms.extend(disarmed.alarms);
            }
            ctx.printer.alarm(out, &resp)
        }
    }
}

fn alarm_request(action: AlarmAction, member_id: u64, alarm: i32) -> AlarmRequest {
    AlarmRequest { action: action as i32, member_id, alarm }
}

pub async fn move_leader(a: MoveLeaderArgs, ctx: &Ctx, out: &mut dyn Write) -> Result<(), CtlError> {
    let [target] = a.args.as_slice() else {
        return Err(CtlError::bad_args("move-leader command needs 1 argument"));
    };
    let target = gofmt::parse_uint(target, 16).map_err(CtlError::bad_args)?;
    let connector = ctx.connector()?;
    let deadline = connector.command_deadline();
    // Find the endpoint that is the leader: only it can hand leadership over.
    let mut leader = None;
    for ep in connector.endpoints() {
        let mut client = MaintenanceClient::new(connector.connect_to(ep, deadline).await?);
        let status = call(deadline, client.status(request(StatusRequest {}, deadline))).await?;
        let member_id = status.header.as_ref().map(|h| h.member_id).unwrap_or(0);
        if member_id == status.leader {
            leader = Some((client, status.leader));
            break;
        }
    }
    let Some((mut client, leader_id)) = leader else {
        return Err(CtlError::bad_args(format!("no leader endpoint given at [{}]", connector.endpoints().join(" "))));
    };
    let resp = call(deadline, client.move_leader(request(MoveLeaderRequest { target_id: target }, deadline))).await?;
    ctx.printer.move_leader(out, leader_id, target, &resp)
}

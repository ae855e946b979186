//! `endpoint status|health|hashkv`: ask each endpoint about itself. With
//! `--cluster` the endpoints are every member's client URLs from `member list`.

use std::io::Write;

use clap::{ArgAction, Args, Subcommand};
use hub_proto::etcdserverpb::cluster_client::ClusterClient;
use hub_proto::etcdserverpb::kv_client::KvClient;
use hub_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use hub_proto::etcdserverpb::{HashKvRequest, MemberListRequest, RangeRequest, StatusRequest};
use tokio::time::Instant;

use super::Ctx;
use crate::client::{call, request, Connector};
use crate::error::{CtlError, ExitCode};
use crate::flags::{go_bool, go_int64};
use crate::gofmt;
use crate::output::{EndpointHashKv, EndpointHealth, EndpointStatus};

#[derive(Args, Debug)]
#[command(arg_required_else_help = true)]
pub struct EndpointArgs {
    /// use all endpoints from the cluster member list
    #[arg(long, global = true, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool)]
    pub cluster: bool,
    #[command(subcommand)]
    pub command: EndpointCommand,
}

#[derive(Subcommand, Debug)]
pub enum EndpointCommand {
    /// Checks the healthiness of endpoints specified in `--endpoints` flag
    Health,
    /// Prints out the status of endpoints specified in `--endpoints` flag
    Status,
    /// Prints the KV history hash for each endpoint in --endpoints
    Hashkv(HashKvArgs),
}

#[derive(Args, Debug)]
pub struct HashKvArgs {
    /// maximum revision to hash (default: all revisions)
    #[arg(long, default_value = "0", allow_hyphen_values = true, value_parser = go_int64)]
    pub rev: i64,
}

pub async fn run(args: EndpointArgs, ctx: &Ctx, out: &mut dyn Write) -> Result<(), CtlError> {
    let connector = ctx.connector()?;
    let endpoints = endpoints(&connector, args.cluster).await?;
    match args.command {
        EndpointCommand::Health => health(&connector, &endpoints, ctx, out).await,
        EndpointCommand::Status => status(&connector, &endpoints, ctx, out).await,
        EndpointCommand::Hashkv(a) => hashkv(&connector, &endpoints, a.rev, ctx, out).await,
    }
}

/// etcdctl's `endpointsFromCluster`: `--endpoints`, or with `--cluster` the
/// client URLs of every member.
pub async fn endpoints(connector: &Connector, cluster: bool) -> Result<Vec<String>, CtlError> {
    if !cluster {
        return Ok(connector.endpoints().to_vec());
    }
    let deadline = connector.command_deadline();
    let fetch = async {
        let mut client = ClusterClient::new(connector.connect(deadline).await?);
        call(deadline, client.member_list(request(MemberListRequest { linearizable: true }, deadline))).await
    };
    let members = fetch
        .await
        .map_err(|e| CtlError::error(format!("failed to fetch endpoints from etcd cluster member list: {e}")))?;
    Ok(members.members.into_iter().flat_map(|m| m.client_ur_ls).collect())
}

async fn health(connector: &Connector, endpoints: &[String], ctx: &Ctx, out: &mut dyn Write) -> Result<(), CtlError> {
    // Concurrent as in etcdctl, but listed in --endpoints order rather than
    // in order of completion.
    let list = join_all(endpoints.iter().map(|ep| check_health(connector, ep)).collect()).await;
    ctx.printer.endpoint_health(out, &list)?;
    if list.iter().any(|h| !h.error.is_empty()) {
        return Err(CtlError::error("unhealthy cluster"));
    }
    Ok(())
}

/// An endpoint is healthy if it answers a linearizable read (which goes
/// through consensus); "permission denied" counts as an answer.
async fn check_health(connector: &Connector, endpoint: &str) -> EndpointHealth {
    let started = Instant::now();
    let deadline = connector.command_deadline();
    let result = async {
        let mut kv = KvClient::new(connector.connect_to(endpoint, deadline).await?);
        let req = RangeRequest { key: b"health".to_vec(), ..Default::default() };
        call(deadline, kv.range(request(req, deadline))).await
    }
    .await;
    let took = gofmt::duration(started.elapsed());
    let error = match result {
        Ok(_) => String::new(),
        Err(e) if e.message.as_deref() == Some("etcdserver: permission denied") => String::new(),
        Err(e) => e.to_string(),
    };
    EndpointHealth { endpoint: endpoint.to_string(), health: error.is_empty(), took, error }
}

/// Awaits all futures concurrently; outputs keep the futures' order.
async fn join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    use std::pin::Pin;
    use std::task::Poll;
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut done = true;
        for (i, f) in futures.iter_mut().enumerate() {
            if outputs[i].is_none() {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => outputs[i] = Some(v),
                    Poll::Pending => done = false,
                }
            }
        }
        if done {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

async fn status(connector: &Connector, endpoints: &[String], ctx: &Ctx, out: &mut dyn Write) -> Result<(), CtlError> {
    let mut list = Vec::new();
    let mut failed = false;
    for ep in endpoints {
        let deadline = connector.command_deadline();
        let result = async {
            let mut client = MaintenanceClient::new(connector.connect_to(ep, deadline).await?);
            call(deadline, client.status(request(StatusRequest {}, deadline))).await
        }
        .await;
        match result {
            Ok(status) => list.push(EndpointStatus { endpoint: ep.clone(), status }),
            Err(e) => {
                failed = true;
                eprintln!("Failed to get the status of endpoint {ep} ({e})");
            }
        }
    }
    ctx.printer.endpoint_status(out, &list)?;
    if failed {
        return Err(CtlError::silent(ExitCode::Error));
    }
    Ok(())
}

async fn hashkv(
    connector: &Connector,
    endpoints: &[String],
    revision: i64,
    ctx: &Ctx,
    out: &mut dyn Write,
) -> Result<(), CtlError> {
    let mut list = Vec::new();
    let mut last_error = None;
    for ep in endpoints {
        let deadline = connector.command_deadline();
        let result = async {
            let mut client = MaintenanceClient::new(connector.connect_to(ep, deadline).await?);
            call(deadline, client.hash_kv(request(HashKvRequest { revision }, deadline))).await
        }
        .await;
        match result {
            Ok(hash) => list.push(EndpointHashKv { endpoint: ep.clone(), hash }),
            Err(e) => {
                eprintln!("Failed to get the hash of endpoint {ep} ({e})");
                last_error = Some(e);
            }
        }
    }
    ctx.printer.endpoint_hashkv(out, &list)?;
    match last_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

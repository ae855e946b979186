//! `member list|add|remove|update|promote`. Member IDs are hex; peer URLs are
//! checked on the client first, as clientv3 does, before the cluster is asked.

use std::io::Write;

use clap::{ArgAction, Args, Subcommand};
use hub_proto::etcdserverpb::cluster_client::ClusterClient;
use hub_proto::etcdserverpb::{
    MemberAddRequest, MemberListRequest, MemberPromoteRequest, MemberRemoveRequest, MemberUpdateRequest,
};
use tokio::time::Instant;
use crate::client::Conn;

use super::Ctx;
use crate::client::{call, request};
use crate::error::CtlError;
use crate::flags::{self, go_bool};
use crate::gofmt::{self, quote};
use crate::output::Format;

#[derive(Subcommand, Debug)]
pub enum MemberCommand {
    /// Adds a member into the cluster
    Add(AddArgs),
    /// Removes a member from the cluster
    Remove(IdArgs),
    /// Updates a member in the cluster
    Update(UpdateArgs),
    /// Lists all members in the cluster
    List(ListArgs),
    /// Promotes a non-voting member in the cluster
    Promote(IdArgs),
}

#[derive(Args, Debug)]
pub struct AddArgs {
    /// comma separated peer URLs for the new member.
    #[arg(long = "peer-urls", default_value = "")]
    pub peer_urls: String,
    /// indicates if the new member is raft learner
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool)]
    pub learner: bool,
    #[arg(value_name = "NAME")]
    pub args: Vec<String>,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// Linearizable(l) or Serializable(s)
    #[arg(long, default_value = "l")]
    pub consistency: String,
}

#[derive(Args, Debug)]
pub struct UpdateArgs {
    /// comma separated peer URLs for the updated member.
    #[arg(long = "peer-urls", default_value = "")]
    pub peer_urls: String,
    #[arg(value_name = "MEMBER_ID")]
    pub args: Vec<String>,
}

#[derive(Args, Debug)]
pub struct IdArgs {
    #[arg(value_name = "MEMBER_ID")]
    pub args: Vec<String>,
}

pub async fn run(cmd: MemberCommand, ctx: &Ctx, out: &mut dyn Write) -> Result<(), CtlError> {
    match cmd {
        MemberCommand::Add(a) => add(a, ctx, out).await,
        MemberCommand::Remove(a) => {
            let id = member_id(&a.args)?;
            let (mut cluster, deadline) = client(ctx).await?;
            let resp = call(deadline, cluster.member_remove(request(MemberRemoveRequest { id }, deadline))).await?;
            ctx.printer.member_changed(out, id, "removed from", &resp.header, &resp.members, &resp)
        }
        MemberCommand::Update(a) => {
            let id = member_id(&a.args)?;
            if a.peer_urls.is_empty() {
                return Err(CtlError::bad_args("member peer urls not provided"));
            }
            let peer_ur_ls = checked_urls(&a.peer_urls)?;
            let (mut cluster, deadline) = client(ctx).await?;
            let resp = call(deadline, cluster.member_update(request(MemberUpdateRequest { id, peer_ur_ls }, deadline)))
                .await?;
            ctx.printer.member_changed(out, id, "updated in", &resp.header, &resp.members, &resp)
        }
        MemberCommand::List(a) => {
            let linearizable = !flags::serializable(&a.consistency)?;
            let (mut cluster, deadline) = client(ctx).await?;
            let resp = call(deadline, cluster.member_list(request(MemberListRequest { linearizable }, deadline))).await?;
            ctx.printer.member_list(out, &resp)
        }
        MemberCommand::Promote(a) => {
            let id = member_id(&a.args)?;
            let (mut cluster, deadline) = client(ctx).await?;
            let resp = call(deadline, cluster.member_promote(request(MemberPromoteRequest { id }, deadline))).await?;
            ctx.printer.member_changed(out, id, "promoted in", &resp.header, &resp.members, &resp)
        }
    }
}

async fn client(ctx: &Ctx) -> Result<(ClusterClient<Conn>, Instant), CtlError> {
    let connector = ctx.connector()?;
    let deadline = connector.command_deadline();
    Ok((ClusterClient::new(connector.connect(deadline).await?), deadline))
}

fn member_id(args: &[String]) -> Result<u64, CtlError> {
    let [arg] = args else {
        return Err(CtlError::bad_args("member ID is not provided"));
    };
    gofmt::parse_uint(arg, 16).map_err(|e| CtlError::bad_args(format!("bad member ID arg ({e}), expecting ID in Hex")))
}

async fn add(a: AddArgs, ctx: &Ctx, out: &mut dyn Write) -> Result<(), CtlError> {
    let name = match a.args.as_slice() {
        [] => return Err(CtlError::bad_args("member name not provided")),
        [name] => name.clone(),
        args => {
            let mut message = "too many arguments".to_string();
            for s in args.iter().filter(|s| s.to_lowercase().starts_with("http")) {
                message.push_str(&format!(", did you mean --peer-urls={s}"));
            }
            return Err(CtlError::bad_args(message));
        }
    };
    if a.peer_urls.is_empty() {
        return Err(CtlError::bad_args("member peer urls not provided"));
    }
    let peer_ur_ls = checked_urls(&a.peer_urls)?;
    let (mut cluster, deadline) = client(ctx).await?;
    let resp =
        call(deadline, cluster.member_add(request(MemberAddRequest { peer_ur_ls, is_learner: a.learner }, deadline)))
            .await?;
    ctx.printer.member_add(out, &resp)?;
    if ctx.opts.format == Format::Simple {
        // The settings the new member must start with, as etcdctl prints them.
        let new_id = resp.member.as_ref().map(|m| m.id);
        let mut cluster_conf = Vec::new();
        for m in &resp.members {
            let member_name = if Some(m.id) == new_id { name.as_str() } else { m.name.as_str() };
            for url in &m.peer_ur_ls {
                cluster_conf.push(format!("{member_name}={url}"));
            }
        }
        writeln!(out)?;
        writeln!(out, "ETCD_NAME={}", quote(name.as_bytes()))?;
        writeln!(out, "ETCD_INITIAL_CLUSTER={}", quote(cluster_conf.join(",").as_bytes()))?;
        writeln!(out, "ETCD_INITIAL_ADVERTISE_PEER_URLS={}", quote(a.peer_urls.as_bytes()))?;
        writeln!(out, "ETCD_INITIAL_CLUSTER_STATE=\"existing\"")?;
    }
    Ok(())
}

/// Splits `--peer-urls` and checks each as etcd's `types.NewURLs` does
/// (a client-side failure, so ExitError like a server one).
fn checked_urls(list: &str) -> Result<Vec<String>, CtlError> {
    let urls: Vec<String> = list.split(',').map(str::to_string).collect();
    for url in &urls {
        let url = url.trim();
        let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
        if !matches!(scheme, "http" | "https" | "unix" | "unixs") {
            return Err(CtlError::error(format!("URL scheme must be http, https, unix, or unixs: {url}")));
        }
        let host_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (host, after) = rest.split_at(host_end);
        if !has_port(host) {
            return Err(CtlError::error(format!("URL address does not have the form \"host:port\": {url}")));
        }
        let path = after.split(['?', '#']).next().unwrap_or("");
        if !path.is_empty() {
            return Err(CtlError::error(format!("URL must not contain a path: {url}")));
        }
    }
    Ok(urls)
}

/// Whether `net.SplitHostPort` accepts `host`.
fn has_port(host: &str) -> bool {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split_once(']').is_some_and(|(_, port)| port.starts_with(':') && !port[1..].contains(':'));
    }
    host.matches(':').count() == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_urls_are_checked_like_types_new_urls() {
        assert!(checked_urls("http://127.0.0.1:2380,https://[::1]:2380").is_ok());
        let err = |s: &str| checked_urls(s).expect_err(s).message.unwrap_or_default();
        assert_eq!(err("bad"), "URL scheme must be http, https, unix, or unixs: bad");
        assert_eq!(err("http://host"), "URL address does not have the form \"host:port\": http://host");
        assert_eq!(err("http://h:1/p"), "URL must not contain a path: http://h:1/p");
    }
}

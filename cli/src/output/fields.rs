//! `-w fields`: etcdctl's `printer_fields.go`, one `"Name" : value` per line.
//! Strings are Go-quoted (`%q`), numbers and booleans as Go's `Println` writes them.

use std::io::{self, Write};

use hub_proto::etcdserverpb::{
    response_op, AlarmResponse, DeleteRangeResponse, LeaseGrantResponse, LeaseKeepAliveResponse, LeaseLeasesResponse,
    LeaseTimeToLiveResponse, MemberListResponse, PutResponse, RangeResponse, ResponseHeader, TxnResponse,
    WatchResponse,
};
use hub_proto::mvccpb::KeyValue;
use hub_store::snapshot::SnapshotInfo;

use super::simple::{alarm_type_name, event_type_name};
use super::{EndpointHashKv, EndpointHealth, EndpointStatus};
use crate::gofmt::quote;

fn kv(out: &mut dyn Write, prefix: &str, kv: &KeyValue) -> io::Result<()> {
    writeln!(out, "\"{prefix}Key\" : {}", quote(&kv.key))?;
    writeln!(out, "\"{prefix}CreateRevision\" : {}", kv.create_revision)?;
    writeln!(out, "\"{prefix}ModRevision\" : {}", kv.mod_revision)?;
    writeln!(out, "\"{prefix}Version\" : {}", kv.version)?;
    writeln!(out, "\"{prefix}Value\" : {}", quote(&kv.value))?;
    writeln!(out, "\"{prefix}Lease\" : {}", kv.lease)
}

/// etcdctl dereferences the header unconditionally (and panics without one);
/// a missing header prints as zeros here.
fn hdr(out: &mut dyn Write, h: Option<&ResponseHeader>) -> io::Result<()> {
    let h = h.copied().unwrap_or_default();
    writeln!(out, "\"ClusterID\" : {}", h.cluster_id)?;
    writeln!(out, "\"MemberID\" : {}", h.member_id)?;
    writeln!(out, "\"Revision\" : {}", h.revision)?;
    writeln!(out, "\"RaftTerm\" : {}", h.raft_term)
}

pub fn del(out: &mut dyn Write, r: &DeleteRangeResponse) -> io::Result<()> {
    hdr(out, r.header.as_ref())?;
    writeln!(out, "\"Deleted\" : {}", r.deleted)?;
    r.prev_kvs.iter().try_for_each(|x| kv(out, "Prev", x))
}

pub fn get(out: &mut dyn Write, r: &RangeResponse) -> io::Result<()> {
    hdr(out, r.header.as_ref())?;
    r.kvs.iter().try_for_each(|x| kv(out, "", x))?;
    writeln!(out, "\"More\" : {}", r.more)?;
    writeln!(out, "\"Count\" : {}", r.count)
}

pub fn put(out: &mut dyn Write, r: &PutResponse) -> io::Result<()> {
    hdr(out, r.header.as_ref())?;
    match &r.prev_kv {
        Some(prev) => kv(out, "Prev", prev),
        None => Ok(()),
    }
}

pub fn txn(out: &mut dyn Write, r: &TxnResponse) -> io::Result<()> {
    hdr(out, r.header.as_ref())?;
    writeln!(out, "\"Succeeded\" : {}", r.succeeded)?;
    for op in &r.responses {
        match &op.response {
            Some(response_op::Response::ResponseDeleteRange(d)) => del(out, d)?,
            Some(response_op::Response::ResponsePut(p)) => put(out, p)?,
            Some(response_op::Response::ResponseRange(g)) => get(out, g)?,
            other => writeln!(out, "\"Unknown\" : {}", quote(format!("{other:?}").as_bytes()))?,
        }
    }
    Ok(())
}

pub fn watch(out: &mut dyn Write, r: &WatchResponse) -> io::Result<()> {
    hdr(out, r.header.as_ref())?;
    for e in &r.events {
        writeln!(out, "\"Type\" : {}", event_type_name(e.r#type))?;
        if let Some(prev) = &e.prev_kv {
            kv(out, "Prev", prev)?;
        }
        kv(out, "", e.kv.as_ref().unwrap_or(&KeyValue::default()))?;
    }
    Ok(())
}

pub fn grant(out: &mut dyn Write, r: &LeaseGrantResponse) -> io::Result<()> {
    hdr(out, r.header.as_ref())?;
    writeln!(out, "\"ID\" : {}", r.id)?;
    writeln!(out, "\"TTL\" : {}", r.ttl)
}

pub fn header_only(out: &mut dyn Write, h: Option<&ResponseHeader>) -> io::Result<()> {
    hdr(out, h)
}

pub fn keep_alive(out: &mut dyn Write, r: &LeaseKeepAliveResponse) -> io::Result<()> {
    hdr(out, r.header.as_ref())?;
    writeln!(out, "\"ID\" : {}", r.id)?;
    writeln!(out, "\"TTL\" : {}", r.ttl)
}

pub fn time_to_live(out: &mut dyn Write, r: &LeaseTimeToLiveResponse) -> io::Result<()> {
    hdr(out, r.header.as_ref())?;
    writeln!(out, "\"ID\" : {}", r.id)?;
    writeln!(out, "\"TTL\" : {}", r.ttl)?;
    writeln!(out, "\"GrantedTTL\" : {}", r.granted_ttl)?;
    r.keys.iter().try_for_each(|k| writeln!(out, "\"Key\" : {}", quote(k)))
}

pub fn leases(out: &mut dyn Write, r: &LeaseLeasesResponse) -> io::Result<()> {
    hdr(out, r.header.as_ref())?;
    r.leases.iter().try_for_each(|l| writeln!(out, "\"ID\" : {}", l.id))
}

pub fn member_list(out: &mut dyn Write, r: &MemberListResponse) -> io::Result<()> {
    hdr(out, r.header.as_ref())?;
    for m in &r.members {
        writeln!(out, "\"ID\" : {}", m.id)?;
        writeln!(out, "\"Name\" : {}", quote(m.name.as_bytes()))?;
        for u in &m.peer_ur_ls {
            writeln!(out, "\"PeerURL\" : {}", quote(u.as_bytes()))?;
        }
        for u in &m.client_ur_ls {
            writeln!(out, "\"ClientURL\" : {}", quote(u.as_bytes()))?;
        }
        writeln!(out, "\"IsLearner\" : {}", m.is_learner)?;
        writeln!(out)?;
    }
    Ok(())
}

pub fn endpoint_health(out: &mut dyn Write, list: &[EndpointHealth]) -> io::Result<()> {
    for h in list {
        writeln!(out, "\"Endpoint\" : {}", quote(h.endpoint.as_bytes()))?;
        writeln!(out, "\"Health\" : {}", h.health)?;
        writeln!(out, "\"Took\" : {}", h.took)?;
        writeln!(out, "\"Error\" : {}", h.error)?;
        writeln!(out)?;
    }
    Ok(())
}

pub fn endpoint_status(out: &mut dyn Write, list: &[EndpointStatus]) -> io::Result<()> {
    for ep in list {
        let s = &ep.status;
        hdr(out, s.header.as_ref())?;
        writeln!(out, "\"Version\" : {}", quote(s.version.as_bytes()))?;
        writeln!(out, "\"DBSize\" : {}", s.db_size)?;
        writeln!(out, "\"Leader\" : {}", s.leader)?;
        writeln!(out, "\"IsLearner\" : {}", s.is_learner)?;
        writeln!(out, "\"RaftIndex\" : {}", s.raft_index)?;
        writeln!(out, "\"RaftTerm\" : {}", s.raft_term)?;
        writeln!(out, "\"RaftAppliedIndex\" : {}", s.raft_applied_index)?;
        writeln!(out, "\"Errors\" : [{}]", s.errors.join(" "))?;
        writeln!(out, "\"Endpoint\" : {}", quote(ep.endpoint.as_bytes()))?;
        writeln!(out)?;
    }
    Ok(())
}

pub fn endpoint_hashkv(out: &mut dyn Write, list: &[EndpointHashKv]) -> io::Result<()> {
    for h in list {
        hdr(out, h.hash.header.as_ref())?;
        writeln!(out, "\"Endpoint\" : {}", quote(h.endpoint.as_bytes()))?;
        writeln!(out, "\"Hash\" : {}", h.hash.hash)?;
        writeln!(out)?;
    }
    Ok(())
}

pub fn alarm(out: &mut dyn Write, r: &AlarmResponse) -> io::Result<()> {
    hdr(out, r.header.as_ref())?;
    for a in &r.alarms {
        writeln!(out, "\"MemberID\" : {}", a.member_id)?;
        writeln!(out, "\"AlarmType\" : {}", alarm_type_name(a.alarm))?;
        writeln!(out)?;
    }
    Ok(())
}

pub fn snapshot_status(out: &mut dyn Write, s: &SnapshotInfo) -> io::Result<()> {
    writeln!(out, "\"Hash\" : {}", s.hash)?;
    writeln!(out, "\"Revision\" : {}", s.revision)?;
    writeln!(out, "\"Keys\" : {}", s.total_keys)?;
    writeln!(out, "\"Size\" : {}", s.total_size)
}

/// What etcdctl's `fields` printer shows of an Auth response past its header.
pub enum AuthFields<'a> {
    /// The header alone.
    Header,
    /// `role list`: `"Roles" : "a" "b"`.
    Roles(&'a [String]),
    /// `role get`: each permission's type, key and range end.
    Perms(&'a [hub_proto::authpb::Permission]),
    /// `user get` and `user list`, which etcdctl cannot print as fields.
    Unsupported,
}

pub fn auth(out: &mut dyn Write, h: Option<&ResponseHeader>, fields: &AuthFields) -> io::Result<()> {
    hdr(out, h)?;
    match fields {
        AuthFields::Header | AuthFields::Unsupported => Ok(()),
        AuthFields::Roles(roles) => {
            write!(out, "\"Roles\" :")?;
            roles.iter().try_for_each(|r| write!(out, " {}", quote(r.as_bytes())))?;
            writeln!(out)
        }
        AuthFields::Perms(perms) => perms.iter().try_for_each(|p| {
            let name = hub_proto::authpb::permission::Type::try_from(p.perm_type).map_or("READ", |t| t.as_str_name());
            writeln!(out, "\"PermType\" :  {name}")?;
            writeln!(out, "\"Key\" : {}", quote(&p.key))?;
            writeln!(out, "\"RangeEnd\" : {}", quote(&p.range_end))
        }),
    }
}

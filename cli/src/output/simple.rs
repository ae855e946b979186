//! `-w simple` (the default): etcdctl's `printer_simple.go` line for line.
//! Keys and values are written as raw bytes, as Go's `fmt.Println(string(b))` does.

use std::io::{self, Write};

use hub_proto::etcdserverpb::{
    response_op, AlarmResponse, DeleteRangeResponse, LeaseKeepAliveResponse, LeaseLeasesResponse,
    LeaseTimeToLiveResponse, MemberListResponse, PutResponse, RangeResponse, TxnResponse, WatchResponse,
};
use hub_proto::mvccpb::{event::EventType, KeyValue};

use super::{table, EndpointHashKv, EndpointStatus};
use crate::gofmt;

/// How keys and values are shown: `--hex`, and `get --print-value-only`.
#[derive(Clone, Copy, Debug, Default)]
pub struct KvStyle {
    pub hex: bool,
    pub value_only: bool,
}

fn kv(out: &mut dyn Write, style: KvStyle, kv: &KeyValue) -> io::Result<()> {
    if style.hex {
        if !style.value_only {
            writeln!(out, "{}", gofmt::hex_escaped(&kv.key))?;
        }
        return writeln!(out, "{}", gofmt::hex_escaped(&kv.value));
    }
    if !style.value_only {
        out.write_all(&kv.key)?;
        out.write_all(b"\n")?;
    }
    out.write_all(&kv.value)?;
    out.write_all(b"\n")
}

pub fn get(out: &mut dyn Write, style: KvStyle, r: &RangeResponse) -> io::Result<()> {
    r.kvs.iter().try_for_each(|x| kv(out, style, x))
}

pub fn put(out: &mut dyn Write, style: KvStyle, r: &PutResponse) -> io::Result<()> {
    writeln!(out, "OK")?;
    match &r.prev_kv {
        Some(prev) => kv(out, style, prev),
        None => Ok(()),
    }
}

pub fn del(out: &mut dyn Write, style: KvStyle, r: &DeleteRangeResponse) -> io::Result<()> {
    writeln!(out, "{}", r.deleted)?;
    r.prev_kvs.iter().try_for_each(|x| kv(out, style, x))
}

pub fn txn(out: &mut dyn Write, style: KvStyle, r: &TxnResponse) -> io::Result<()> {
    writeln!(out, "{}", if r.succeeded { "SUCCESS" } else { "FAILURE" })?;
    for op in &r.responses {
        writeln!(out)?;
        match &op.response {
            Some(response_op::Response::ResponseDeleteRange(d)) => del(out, style, d)?,
            Some(response_op::Response::ResponsePut(p)) => put(out, style, p)?,
            Some(response_op::Response::ResponseRange(g)) => get(out, style, g)?,
            other => writeln!(out, "unexpected response {other:?}")?,
        }
    }
    Ok(())
}

pub fn watch(out: &mut dyn Write, style: KvStyle, r: &WatchResponse) -> io::Result<()> {
    for e in &r.events {
        writeln!(out, "{}", event_type_name(e.r#type))?;
        if let Some(prev) = &e.prev_kv {
            kv(out, style, prev)?;
        }
        kv(out, style, e.kv.as_ref().unwrap_or(&KeyValue::default()))?;
    }
    Ok(())
}

/// Go's `String()` of `mvccpb.Event_EventType`.
pub fn event_type_name(t: i32) -> String {
    EventType::try_from(t).map(|t| t.as_str_name().to_string()).unwrap_or_else(|_| t.to_string())
}

/// Go's `String()` of `etcdserverpb.AlarmType`.
pub fn alarm_type_name(t: i32) -> String {
    match t {
        0 => "NONE".to_string(),
        1 => "NOSPACE".to_string(),
        2 => "CORRUPT".to_string(),
        other => other.to_string(),
    }
}

pub fn grant(out: &mut dyn Write, id: i64, ttl: i64) -> io::Result<()> {
    writeln!(out, "lease {id:016x} granted with TTL({ttl}s)")
}

pub fn revoke(out: &mut dyn Write, id: i64) -> io::Result<()> {
    writeln!(out, "lease {id:016x} revoked")
}

pub fn keep_alive(out: &mut dyn Write, r: &LeaseKeepAliveResponse) -> io::Result<()> {
    writeln!(out, "lease {:016x} keepalived with TTL({})", r.id, r.ttl)
}

pub fn time_to_live(out: &mut dyn Write, r: &LeaseTimeToLiveResponse, keys: bool) -> io::Result<()> {
    if r.granted_ttl == 0 && r.ttl == -1 {
        return writeln!(out, "lease {:016x} already expired", r.id);
    }
    write!(out, "lease {:016x} granted with TTL({}s), remaining({}s)", r.id, r.granted_ttl, r.ttl)?;
    if keys {
        // Go's %v of a []string: [a b c], the keys as raw bytes.
        out.write_all(b", attached keys([")?;
        for (i, k) in r.keys.iter().enumerate() {
            if i > 0 {
                out.write_all(b" ")?;
            }
            out.write_all(k)?;
        }
        out.write_all(b"])")?;
    }
    writeln!(out)
}

pub fn leases(out: &mut dyn Write, r: &LeaseLeasesResponse) -> io::Result<()> {
    writeln!(out, "found {} leases", r.leases.len())?;
    r.leases.iter().try_for_each(|l| writeln!(out, "{:016x}", l.id))
}

/// `fmt.Printf("%+v\n", alarm)`: gogo's compact text form of `AlarmMember`.
pub fn alarm(out: &mut dyn Write, r: &AlarmResponse) -> io::Result<()> {
    for a in &r.alarms {
        let mut line = String::new();
        if a.member_id != 0 {
            line.push_str(&format!("memberID:{} ", a.member_id));
        }
        if a.alarm != 0 {
            line.push_str(&format!("alarm:{} ", alarm_type_name(a.alarm)));
        }
        writeln!(out, "{line}")?;
    }
    Ok(())
}

/// `Member %16x added to cluster %16x` and friends (`%16x` pads with spaces).
pub fn member_changed(out: &mut dyn Write, id: u64, verb: &str, cluster_id: u64) -> io::Result<()> {
    writeln!(out, "Member {id:>16x} {verb} cluster {cluster_id:>16x}")
}

pub fn member_list(out: &mut dyn Write, r: &MemberListResponse) -> io::Result<()> {
    let (_, rows) = table::member_list_rows(r);
    rows.iter().try_for_each(|row| writeln!(out, "{}", row.join(", ")))
}

pub fn endpoint_status(out: &mut dyn Write, list: &[EndpointStatus]) -> io::Result<()> {
    let (_, rows) = table::endpoint_status_rows(list);
    rows.iter().try_for_each(|row| writeln!(out, "{}", row.join(", ")))
}

pub fn endpoint_hashkv(out: &mut dyn Write, list: &[EndpointHashKv]) -> io::Result<()> {
    let (_, rows) = table::endpoint_hashkv_rows(list);
    rows.iter().try_for_each(|row| writeln!(out, "{}", row.join(", ")))
}

//! Output: `-w simple|json|fields|table|protobuf`, exactly as etcdctl prints them.
//!
//! Commands hand a response to [`Printer`], which picks the format module.
//! The formats own nothing but text: [`simple`], [`json`], [`fields`] and
//! [`table`] mirror etcdctl's `printer_*.go`; `protobuf` writes the raw message
//! bytes. Combinations etcdctl refuses (e.g. `put -w table`) fail here with
//! its `... not supported as output format` error.

pub mod fields;
pub mod json;
pub mod simple;
pub mod table;

use std::io::Write;

use hub_proto::etcdserverpb::{
    AlarmResponse, DeleteRangeResponse, HashKvResponse, LeaseGrantResponse, LeaseKeepAliveResponse,
    LeaseLeasesResponse, LeaseRevokeResponse, LeaseTimeToLiveResponse, MemberAddResponse, MemberListResponse,
    MoveLeaderResponse, PutResponse, RangeResponse, ResponseHeader, StatusResponse, TxnResponse, WatchResponse,
};
use hub_store::snapshot::SnapshotInfo;
use prost::Message;

use crate::error::CtlError;
use simple::KvStyle;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Simple,
    Json,
    Fields,
    Table,
    Protobuf,
}

impl Format {
    pub fn parse(name: &str) -> Result<Format, CtlError> {
        match name {
            "simple" => Ok(Format::Simple),
            "json" => Ok(Format::Json),
            "fields" => Ok(Format::Fields),
            "table" => Ok(Format::Table),
            "protobuf" => Ok(Format::Protobuf),
            _ => Err(CtlError::bad_feature("unsupported output format")),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Format::Simple => "simple",
            Format::Json => "json",
            Format::Fields => "fields",
            Format::Table => "table",
            Format::Protobuf => "protobuf",
        }
    }
}

/// One endpoint's answer to `endpoint health` (etcdctl's `epHealth`).
#[derive(Clone, Debug)]
pub struct EndpointHealth {
    pub endpoint: String,
    pub health: bool,
    pub took: String,
    pub error: String,
}

/// One endpoint's answer to `endpoint status` (etcdctl's `epStatus`).
#[derive(Clone, Debug)]
pub struct EndpointStatus {
    pub endpoint: String,
    pub status: StatusResponse,
}

/// One endpoint's answer to `endpoint hashkv` (etcdctl's `epHashKV`).
#[derive(Clone, Debug)]
pub struct EndpointHashKv {
    pub endpoint: String,
    pub hash: HashKvResponse,
}

/// Prints responses in the chosen format.
#[derive(Clone, Copy, Debug)]
pub struct Printer {
    pub format: Format,
    pub style: KvStyle,
}

type Out<'a> = &'a mut dyn Write;

impl Printer {
    pub fn new(format: Format, hex: bool) -> Self {
        Printer { format, style: KvStyle { hex, value_only: false } }
    }

    fn unsupported(&self) -> CtlError {
        CtlError::bad_feature(format!("{} not supported as output format", self.format.name()))
    }

    fn json(out: Out, value: json::Json) -> Result<(), CtlError> {
        writeln!(out, "{}", value.encode())?;
        Ok(())
    }

    fn protobuf(out: Out, message: &impl Message) -> Result<(), CtlError> {
        out.write_all(&message.encode_to_vec())?;
        Ok(())
    }

    /// clientv3's lease responses embed `*pb.ResponseHeader`, so etcdctl's
    /// protobuf printer marshals just the header for them.
    fn protobuf_header(out: Out, header: &Option<ResponseHeader>) -> Result<(), CtlError> {
        Self::protobuf(out, &header.unwrap_or_default())
    }

    pub fn get(&self, out: Out, r: &RangeResponse) -> Result<(), CtlError> {
        match self.format {
            Format::Simple => simple::get(out, self.style, r)?,
            Format::Json => Self::json(out, json::range(r))?,
            Format::Fields => fields::get(out, r)?,
            Format::Protobuf => Self::protobuf(out, r)?,
            Format::Table => return Err(self.unsupported()),
        }
        Ok(())
    }

    pub fn put(&self, out: Out, r: &PutResponse) -> Result<(), CtlError> {
        match self.format {
            Format::Simple => simple::put(out, self.style, r)?,
            Format::Json => Self::json(out, json::put(r))?,
            Format::Fields => fields::put(out, r)?,
            Format::Protobuf => Self::protobuf(out, r)?,
            Format::Table => return Err(self.unsupported()),
        }
        Ok(())
    }

    pub fn del(&self, out: Out, r: &DeleteRangeResponse) -> Result<(), CtlError> {
        match self.format {
            Format::Simple => simple::del(out, self.style, r)?,
            Format::Json => Self::json(out, json::delete_range(r))?,
            Format::Fields => fields::del(out, r)?,
            Format::Protobuf => Self::protobuf(out, r)?,
            Format::Table => return Err(self.unsupported()),
        }
        Ok(())
    }

    pub fn txn(&self, out: Out, r: &TxnResponse) -> Result<(), CtlError> {
        match self.format {
            Format::Simple => simple::txn(out, self.style, r)?,
            Format::Json => Self::json(out, json::txn(r))?,
            Format::Fields => fields::txn(out, r)?,
            Format::Protobuf => Self::protobuf(out, r)?,
            Format::Table => return Err(self.unsupported()),
        }
        Ok(())
    }

    /// A watch response as clientv3 hands it to etcdctl (no watch ID or cancel reason).
    pub fn watch(&self, out: Out, r: &WatchResponse) -> Result<(), CtlError> {
        match self.format {
            Format::Simple => simple::watch(out, self.style, r)?,
            Format::Json => Self::json(out, json::watch(r))?,
            Format::Fields => fields::watch(out, r)?,
            Format::Protobuf => {
                let seen = WatchResponse {
                    header: Some(r.header.unwrap_or_default()),
                    events: r.events.clone(),
                    compact_revision: r.compact_revision,
                    canceled: r.canceled,
                    created: r.created,
                    ..Default::default()
                };
                Self::protobuf(out, &seen)?
            }
            Format::Table => return Err(self.unsupported()),
        }
        Ok(())
    }

    pub fn grant(&self, out: Out, r: &LeaseGrantResponse) -> Result<(), CtlError> {
        match self.format {
            Format::Simple => simple::grant(out, r.id, r.ttl)?,
            Format::Json => Self::json(out, json::lease_grant(r))?,
            Format::Fields => fields::grant(out, r)?,
            Format::Protobuf => Self::protobuf_header(out, &r.header)?,
            Format::Table => return Err(self.unsupported()),
        }
        Ok(())
    }

    pub fn revoke(&self, out: Out, id: i64, r: &LeaseRevokeResponse) -> Result<(), CtlError> {
        match self.format {
            Format::Simple => simple::revoke(out, id)?,
            Format::Json => Self::json(out, json::lease_revoke(r))?,
            Format::Fields => fields::header_only(out, r.header.as_ref())?,
            Format::Protobuf => {
                return Err(CtlError::bad_feature("marshal unsupported for type clientv3.LeaseRevokeResponse"))
            }
            Format::Table => return Err(self.unsupported()),
        }
        Ok(())
    }

    pub fn keep_alive(&self, out: Out, r: &LeaseKeepAliveResponse) -> Result<(), CtlError> {
        match self.format {
            Format::Simple => simple::keep_alive(out, r)?,
            Format::Json => Self::json(out, json::lease_keep_alive(r))?,
            Format::Fields => fields::keep_alive(out, r)?,
            Format::Protobuf => Self::protobuf_header(out, &r.header)?,
            Format::Table => return Err(self.unsupported()),
        }
        Ok(())
    }

    pub fn time_to_live(&self, out: Out, r: &LeaseTimeToLiveResponse, keys: bool) -> Result<(), CtlError> {
        match self.format {
            Format::Simple => simple::time_to_live(out, r, keys)?,
            Format::Json => Self::json(out, json::lease_time_to_live(r))?,
            Format::Fields => fields::time_to_live(out, r)?,
            Format::Protobuf => Self::protobuf_header(out, &r.header)?,
            Format::Table => return Err(self.unsupported()),
        }
        Ok(())
    }

    pub fn leases(&self, out: Out, r: &LeaseLeasesResponse) -> Result<(), CtlError> {
        match self.format {
            Format::Simple => simple::leases(out, r)?,
            Format::Json => Self::json(out, json::lease_leases(r))?,
            Format::Fields => fields::leases(out, r)?,
            Format::Protobuf => Self::protobuf_header(out, &r.header)?,
            Format::Table => return Err(self.unsupported()),
        }
        Ok(())
    }

    pub fn member_add(&self, out: Out, r: &MemberAddResponse) -> Result<(), CtlError> {
        match self.format {
            Format::Simple => {
                let id = r.member.as_ref().map(|m| m.id).unwrap_or(0);
                let cluster = r.header.as_ref().map(|h| h.cluster_id).unwrap_or(0);
                simple::member_changed(out, id, "added to", cluster)?
            }
            Format::Json => Self::json(out, json::member_add(r))?,
            Format::Protobuf => Self::protobuf(out, r)?,
            Format::Fields | Format::Table => return Err(self.unsupported()),
        }
        Ok(())
    }

    /// `member remove|update|promote`: `verb` completes "Member <id> ... cluster <id>".
    pub fn member_changed<M: Message>(
        &self,
        out: Out,
        id: u64,
        verb: &str,
        header: &Option<ResponseHeader>,
        members: &[hub_proto::etcdserverpb::Member],
        message: &M,
    ) -> Result<(), CtlError> {
        match self.format {
            Format::Simple => {
                simple::member_changed(out, id, verb, header.as_ref().map(|h| h.cluster_id).unwrap_or(0))?
            }
            Format::Json => Self::json(out, json::members(header, members))?,
            Format::Protobuf => Self::protobuf(out, message)?,
            Format::Fields | Format::Table => return Err(self.unsupported()),
        }
        Ok(())
    }

    pub fn member_list(&self, out: Out, r: &MemberListResponse) -> Result<(), CtlError> {
        match self.format {
            Format::Simple => simple::member_list(out, r)?,
            Format::Json => Self::json(out, json::member_list(r))?,
            Format::Fields => fields::member_list(out, r)?,
            Format::Protobuf => Self::protobuf(out, r)?,
            Format::Table => {
                let (header, rows) = table::member_list_rows(r);
                table::render(out, &header, &rows)?
            }
        }
        Ok(())
    }

    /// Simple format writes health lines to stderr, as etcdctl does.
    pub fn endpoint_health(&self, out: Out, list: &[EndpointHealth]) -> Result<(), CtlError> {
        match self.format {
            Format::Simple => {
                for h in list {
                    if h.error.is_empty() {
                        eprintln!("{} is healthy: successfully committed proposal: took = {}", h.endpoint, h.took);
                    } else {
                        eprintln!("{} is unhealthy: failed to commit proposal: {}", h.endpoint, h.error);
                    }
                }
            }
            Format::Json => Self::json(out, json::endpoint_health(list))?,
            Format::Fields => fields::endpoint_health(out, list)?,
            Format::Table => {
                let (header, rows) = table::endpoint_health_rows(list);
                table::render(out, &header, &rows)?
            }
            Format::Protobuf => return Err(self.unsupported()),
        }
        Ok(())
    }

    pub fn endpoint_status(&self, out: Out, list: &[EndpointStatus]) -> Result<(), CtlError> {
        match self.format {
            Format::Simple => simple::endpoint_status(out, list)?,
            Format::Json => Self::json(out, json::endpoint_status(list))?,
            Format::Fields => fields::endpoint_status(out, list)?,
            Format::Table => {
                let (header, rows) = table::endpoint_status_rows(list);
                table::render(out, &header, &rows)?
            }
            Format::Protobuf => return Err(self.unsupported()),
        }
        Ok(())
    }

    pub fn endpoint_hashkv(&self, out: Out, list: &[EndpointHashKv]) -> Result<(), CtlError> {
        match self.format {
            Format::Simple => simple::endpoint_hashkv(out, list)?,
            Format::Json => Self::json(out, json::endpoint_hashkv(list))?,
            Format::Fields => fields::endpoint_hashkv(out, list)?,
            Format::Table => {
                let (header, rows) = table::endpoint_hashkv_rows(list);
                table::render(out, &header, &rows)?
            }
            Format::Protobuf => return Err(self.unsupported()),
        }
        Ok(())
    }

    /// An Auth service response: etcdctl's `simple` text, the response as
    /// JSON (with its one `list`) or protobuf, or its `fields`.
    pub fn auth<M: Message>(
        &self,
        out: Out,
        r: &M,
        header: &Option<ResponseHeader>,
        list: Option<(&'static str, Vec<json::Json>)>,
        fields: fields::AuthFields,
        simple: impl FnOnce(Out) -> std::io::Result<()>,
    ) -> Result<(), CtlError> {
        match self.format {
            Format::Simple => simple(out)?,
            Format::Json => Self::json(out, json::auth(header, list))?,
            Format::Fields if matches!(fields, fields::AuthFields::Unsupported) => return Err(self.unsupported()),
            Format::Fields => fields::auth(out, header.as_ref(), &fields)?,
            Format::Protobuf => Self::protobuf(out, r)?,
            Format::Table => return Err(self.unsupported()),
        }
        Ok(())
    }

    pub fn alarm(&self, out: Out, r: &AlarmResponse) -> Result<(), CtlError> {
        match self.format {
            Format::Simple => simple::alarm(out, r)?,
            Format::Json => Self::json(out, json::alarm(r))?,
            Format::Fields => fields::alarm(out, r)?,
            Format::Protobuf => Self::protobuf(out, r)?,
            Format::Table => return Err(self.unsupported()),
        }
        Ok(())
    }

    pub fn move_leader(&self, out: Out, leader: u64, target: u64, r: &MoveLeaderResponse) -> Result<(), CtlError> {
        match self.format {
            Format::Simple => writeln!(out, "Leadership transferred from {leader:x} to {target:x}")?,
            Format::Json => Self::json(out, json::move_leader(r))?,
            Format::Protobuf => Self::protobuf(out, r)?,
            Format::Fields | Format::Table => return Err(self.unsupported()),
        }
        Ok(())
    }

    /// `snapshot status`; simple is the table's row joined with ", ".
    pub fn snapshot_status(&self, out: Out, s: &SnapshotInfo) -> Result<(), CtlError> {
        match self.format {
            Format::Simple => {
                let (_, rows) = table::snapshot_status_rows(s);
                for row in rows {
                    writeln!(out, "{}", row.join(", "))?;
                }
            }
            Format::Json => Self::json(out, json::snapshot_status(s))?,
            Format::Fields => fields::snapshot_status(out, s)?,
            Format::Table => {
                let (header, rows) = table::snapshot_status_rows(s);
                table::render(out, &header, &rows)?
            }
            Format::Protobuf => return Err(self.unsupported()),
        }
        Ok(())
    }
}

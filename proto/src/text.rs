//! Go's protobuf text format, the one etcd writes requests in when it logs
//! them: golang/protobuf's `proto.CompactTextString` (v1.5's text writer),
//! which every etcd message's `String()` is.
//!
//! Fields come in declaration order, each as `name:value` followed by a
//! space; a field left at its zero value (an absent message, an empty list)
//! is left out, but the member set in a oneof is written even when zero.
//! A message is `name:<...>`, strings and bytes are quoted with Go's octal
//! escapes, enums are their names. `key:"foo" range_end:"fop" limit:3 `
//! is a RangeRequest. etcd's loggable forms of requests, which replace
//! values by their sizes, are built from these pieces (`loggable.rs`).

use std::fmt::{Display, Write as _};
use std::sync::OnceLock;

use prost_reflect::{DescriptorPool, DynamicMessage, FieldDescriptor, Kind, OneofDescriptor, ReflectMessage, Value};

/// `m` in Go's compact text format.
pub fn compact_text<M: prost::Message + prost::Name>(m: &M) -> String {
    let mut text = Text::default();
    text.message_fields(&M::full_name(), &m.encode_to_vec());
    text.into_string()
}

/// The message named `full_name` (`etcdserverpb.PutRequest`), encoded in
/// `encoded`, in Go's compact text format; empty if it does not decode.
pub fn compact_text_encoded(full_name: &str, encoded: &[u8]) -> String {
    let mut text = Text::default();
    text.message_fields(full_name, encoded);
    text.into_string()
}

/// Every message's descriptor, decoded once (only requests that are logged
/// are written in text, so only they pay for it).
fn pool() -> Option<&'static DescriptorPool> {
    static POOL: OnceLock<Option<DescriptorPool>> = OnceLock::new();
    POOL.get_or_init(|| DescriptorPool::decode(crate::FILE_DESCRIPTOR_SET).ok()).as_ref()
}

/// Text being written, field by field.
#[derive(Default)]
pub struct Text {
    out: String,
}

impl Text {
    pub fn into_string(self) -> String {
        self.out
    }

    /// `name:value `, for a value Go prints as Rust displays it (integers,
    /// booleans, enum names).
    pub fn field(&mut self, name: &str, value: impl Display) {
        // Writing into a String cannot fail.
        let _ = write!(self.out, "{name}:{value} ");
    }

    /// `name:"..." `: bytes or a string, quoted as Go quotes them.
    pub fn quoted(&mut self, name: &str, bytes: &[u8]) {
        self.out.push_str(name);
        self.out.push(':');
        self.quote(bytes);
        self.out.push(' ');
    }

    /// `name:<...> `: a message whose fields `inner` writes.
    pub fn message(&mut self, name: &str, inner: impl FnOnce(&mut Text)) {
        self.out.push_str(name);
        self.out.push_str(":<");
        inner(self);
        self.out.push_str("> ");
    }

    /// The fields of the message `full_name` encoded in `encoded`.
    pub fn message_fields(&mut self, full_name: &str, encoded: &[u8]) {
        let Some(desc) = pool().and_then(|p| p.get_message_by_name(full_name)) else { return };
        if let Ok(m) = DynamicMessage::decode(desc, encoded) {
            self.dynamic(&m);
        }
    }

    fn dynamic(&mut self, m: &DynamicMessage) {
        let desc = m.descriptor();
        // A oneof is written where its first member is declared, once.
        let mut oneofs_done: Vec<OneofDescriptor> = Vec::new();
        for declared in &desc.descriptor_proto().field {
            let Some(field) = declared.number.and_then(|n| desc.get_field(n as u32)) else { continue };
            let field = match field.containing_oneof() {
                Some(oneof) if oneofs_done.contains(&oneof) => continue,
                Some(oneof) => {
                    let set = oneof.fields().find(|f| m.has_field(f));
                    oneofs_done.push(oneof);
                    match set {
                        Some(f) => f,
                        None => continue,
                    }
                }
                None if !m.has_field(&field) => continue,
                None => field,
            };
            match &*m.get_field(&field) {
                Value::List(values) => values.iter().for_each(|v| self.value(field.name(), &field, v)),
                value => self.value(field.name(), &field, value),
            }
        }
    }

    /// One value of `field` (an element, for a list), as `name:value `.
    fn value(&mut self, name: &str, field: &FieldDescriptor, value: &Value) {
        match value {
            Value::Bool(b) => self.field(name, b),
            Value::I32(n) => self.field(name, n),
            Value::I64(n) => self.field(name, n),
            Value::U32(n) => self.field(name, n),
            Value::U64(n) => self.field(name, n),
            Value::String(s) => self.quoted(name, s.as_bytes()),
            Value::Bytes(b) => self.quoted(name, b),
            Value::EnumNumber(n) => match field.kind() {
                Kind::Enum(e) => match e.get_value(*n) {
                    Some(v) => self.field(name, v.name()),
                    None => self.field(name, n),
                },
                _ => self.field(name, n),
            },
            Value::Message(m) => self.message(name, |t| t.dynamic(m)),
            // etcd's messages have no floating-point or map fields (and a
            // list is never a list's element).
            Value::F32(_) | Value::F64(_) | Value::Map(_) | Value::List(_) => {}
        }
    }

    /// golang/protobuf's `writeQuotedString`: byte by byte, `\n`, `\r`,
    /// `\t`, `\"` and `\\` escaped, printable ASCII as it is, every other
    /// byte in octal (`\377`).
    fn quote(&mut self, bytes: &[u8]) {
        self.out.push('"');
        for &b in bytes {
            match b {
                b'\n' => self.out.push_str("\\n"),
                b'\r' => self.out.push_str("\\r"),
                b'\t' => self.out.push_str("\\t"),
                b'"' => self.out.push_str("\\\""),
                b'\\' => self.out.push_str("\\\\"),
                0x20..0x7f => self.out.push(b as char),
                _ => {
                    let _ = write!(self.out, "\\{b:03o}");
                }
            }
        }
        self.out.push('"');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::etcdserverpb::{
        compare::{CompareResult, CompareTarget, TargetUnion},
        range_request::{SortOrder, SortTarget},
        request_op, Compare, RangeRequest, RequestHeader, RequestOp,
    };

    // The expected texts are etcd 3.6.16's, from its log.

    #[test]
    fn fields_in_declaration_order_zero_ones_left_out() {
        let r = RangeRequest {
            key: b"k\xff\x01\"x".to_vec(),
            range_end: b"k\xff\x01\"y".to_vec(),
            limit: 3,
            sort_order: SortOrder::Descend as i32,
            sort_target: SortTarget::Mod as i32,
            ..Default::default()
        };
        assert_eq!(
            compact_text(&r),
            r#"key:"k\377\001\"x" range_end:"k\377\001\"y" limit:3 sort_order:DESCEND sort_target:MOD "#
        );
        assert_eq!(
            compact_text(&RangeRequest { key: b"foo".to_vec(), revision: 100, ..Default::default() }),
            r#"key:"foo" revision:100 "#
        );
        assert_eq!(compact_text(&RangeRequest::default()), "");
        let h = RequestHeader { id: 11547407911478597910, username: "root".into(), auth_revision: 4 };
        assert_eq!(compact_text(&h), r#"ID:11547407911478597910 username:"root" auth_revision:4 "#);
    }

    #[test]
    fn a_oneof_member_is_written_even_when_zero() {
        let c = Compare {
            result: CompareResult::Greater as i32,
            target: CompareTarget::Mod as i32,
            key: b"foo".to_vec(),
            target_union: Some(TargetUnion::ModRevision(0)),
            ..Default::default()
        };
        assert_eq!(compact_text(&c), r#"result:GREATER target:MOD key:"foo" mod_revision:0 "#);
    }

    #[test]
    fn messages_nest_in_angle_brackets() {
        let op = RequestOp {
            request: Some(request_op::Request::RequestRange(RangeRequest {
                key: b"foo".to_vec(),
                ..Default::default()
            })),
        };
        assert_eq!(compact_text(&op), r#"request_range:<key:"foo" > "#);
        let empty = RequestOp { request: Some(request_op::Request::RequestRange(RangeRequest::default())) };
        assert_eq!(compact_text(&empty), "request_range:<> ");
    }

    #[test]
    fn quotes_as_go_does() {
        let mut t = Text::default();
        t.quoted("v", b"a\nb\r\t\"\\\x00\x7f\xc3\xa9~ ");
        assert_eq!(t.into_string(), r#"v:"a\nb\r\t\"\\\000\177\303\251~ " "#);
    }
}

//! How a follower's forwarded request and the leader's answer cross the peer
//! wire: the command as etcd's protobuf, the answer as a tagged protobuf
//! response or etcd's error text.

use hub_proto::etcdserverpb::{
    AlarmResponse, AuthenticateResponse, CompactionResponse, DeleteRangeResponse, LeaseGrantResponse, LeaseRevokeResponse, PutResponse, RangeResponse,
    TxnResponse,
};
use hub_store::{EtcdError, Response};
use prost::Message;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
enum Answer {
    Ok { kind: u8, body: Vec<u8> },
    Refused(String),
}

pub fn encode_answer(result: &Result<Response, EtcdError>) -> Result<Vec<u8>, bincode::Error> {
    let answer = match result {
        Ok(r) => {
            let (kind, body) = match r {
                Response::Put(m) => (1, m.encode_to_vec()),
                Response::DeleteRange(m) => (2, m.encode_to_vec()),
                Response::Txn(m) => (3, m.encode_to_vec()),
                Response::Compaction(m) => (4, m.encode_to_vec()),
                Response::LeaseGrant(m) => (5, m.encode_to_vec()),
                Response::LeaseRevoke(m) => (6, m.encode_to_vec()),
                Response::Range(m) => (7, m.encode_to_vec()),
                Response::Auth(m) => (8, m.encode_to_vec()),
                Response::Alarm(m) => (9, m.encode_to_vec()),
                Response::AlreadyApplied => (0, Vec::new()),
            };
            Answer::Ok { kind, body }
        }
        Err(e) => Answer::Refused(e.to_string()),
    };
    bincode::serialize(&answer)
}

/// Decodes the leader's answer; `Err(text)` when it is unreadable.
pub fn decode_answer(bytes: &[u8]) -> Result<Result<Response, EtcdError>, String> {
    let answer: Answer = bincode::deserialize(bytes).map_err(|e| e.to_string())?;
    let (kind, body) = match answer {
        Answer::Refused(text) => return Ok(Err(EtcdError::from_message(&text).ok_or(text)?)),
        Answer::Ok { kind, body } => (kind, body),
    };
    let b = body.as_slice();
    let bad = |e: prost::DecodeError| e.to_string();
    Ok(Ok(match kind {
        1 => Response::Put(PutResponse::decode(b).map_err(bad)?),
        2 => Response::DeleteRange(DeleteRangeResponse::decode(b).map_err(bad)?),
        3 => Response::Txn(TxnResponse::decode(b).map_err(bad)?),
        4 => Response::Compaction(CompactionResponse::decode(b).map_err(bad)?),
        5 => Response::LeaseGrant(LeaseGrantResponse::decode(b).map_err(bad)?),
        6 => Response::LeaseRevoke(LeaseRevokeResponse::decode(b).map_err(bad)?),
        7 => Response::Range(RangeResponse::decode(b).map_err(bad)?),
        8 => Response::Auth(AuthenticateResponse::decode(b).map_err(bad)?),
        9 => Response::Alarm(AlarmResponse::decode(b).map_err(bad)?),
        0 => Response::AlreadyApplied,
        other => return Err(format!("unknown answer kind {other}")),
    }))
}

//! How a follower's forwarded request and the leader's answer cross the peer
//! wire: the command as etcd's protobuf, the answer as `hubpeer.ProposeAnswer`
//! (the state machine's response, or etcd's error text).

use hub_proto::hubpeer::propose_answer::{AlreadyApplied, Answer};
use hub_proto::hubpeer::ProposeAnswer;
use hub_store::{EtcdError, Response};
use prost::Message;

pub fn encode_answer(result: Result<Response, EtcdError>) -> Vec<u8> {
    let answer = match result {
        Ok(Response::Put(m)) => Answer::Put(m),
        Ok(Response::DeleteRange(m)) => Answer::DeleteRange(m),
        Ok(Response::Txn(m)) => Answer::Txn(m),
        Ok(Response::Compaction(m)) => Answer::Compaction(m),
        Ok(Response::LeaseGrant(m)) => Answer::LeaseGrant(m),
        Ok(Response::LeaseRevoke(m)) => Answer::LeaseRevoke(m),
        Ok(Response::Range(m)) => Answer::Range(m),
        Ok(Response::Auth(m)) => Answer::Auth(m),
        Ok(Response::Alarm(m)) => Answer::Alarm(m),
        Ok(Response::AlreadyApplied) => Answer::AlreadyApplied(AlreadyApplied {}),
        Err(e) => Answer::Refused(e.to_string()),
    };
    ProposeAnswer { answer: Some(answer) }.encode_to_vec()
}

/// Decodes the leader's answer; `Err(text)` when it is unreadable.
pub fn decode_answer(bytes: &[u8]) -> Result<Result<Response, EtcdError>, String> {
    let answer = ProposeAnswer::decode(bytes).map_err(|e| e.to_string())?;
    Ok(Ok(match answer.answer.ok_or("an empty answer")? {
        Answer::Refused(text) => return Ok(Err(EtcdError::from_message(&text).ok_or(text)?)),
        Answer::AlreadyApplied(_) => Response::AlreadyApplied,
        Answer::Put(m) => Response::Put(m),
        Answer::DeleteRange(m) => Response::DeleteRange(m),
        Answer::Txn(m) => Response::Txn(m),
        Answer::Compaction(m) => Response::Compaction(m),
        Answer::LeaseGrant(m) => Response::LeaseGrant(m),
        Answer::LeaseRevoke(m) => Response::LeaseRevoke(m),
        Answer::Range(m) => Response::Range(m),
        Answer::Auth(m) => Response::Auth(m),
        Answer::Alarm(m) => Response::Alarm(m),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hub_proto::etcdserverpb::{PutResponse, ResponseHeader};

    #[test]
    fn answers_cross_the_wire_unchanged() {
        let put = PutResponse { header: Some(ResponseHeader { revision: 7, ..Default::default() }), prev_kv: None };
        let bytes = encode_answer(Ok(Response::Put(put.clone())));
        assert!(matches!(decode_answer(&bytes), Ok(Ok(Response::Put(p))) if p == put));
        let bytes = encode_answer(Err(EtcdError::Compacted));
        assert!(matches!(decode_answer(&bytes), Ok(Err(EtcdError::Compacted))));
        assert!(decode_answer(&[0xff]).is_err());
    }
}

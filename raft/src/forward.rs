//! How a follower's forwarded requests and the leader's answers cross the peer
//! wire: each command as etcd's protobuf, each answer as a `hubpeer.ProposeAnswer`
//! (the state machine's response, or etcd's error text).

use hub_proto::hubpeer::propose_answer::{AlreadyApplied, Answer};
use hub_proto::hubpeer::ProposeAnswer;
use hub_store::{EtcdError, Response};

pub fn answer_of(result: Result<Response, EtcdError>) -> ProposeAnswer {
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
    ProposeAnswer { answer: Some(answer) }
}

/// The leader's answer as a result; `Err(text)` when it is unreadable.
pub fn result_of(answer: ProposeAnswer) -> Result<Result<Response, EtcdError>, String> {
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
    use prost::Message;
    use hub_proto::etcdserverpb::{PutResponse, ResponseHeader};

    #[test]
    fn answers_cross_the_wire_unchanged() {
        let put = PutResponse { header: Some(ResponseHeader { revision: 7, ..Default::default() }), prev_kv: None };
        let cross = |a: ProposeAnswer| ProposeAnswer::decode(a.encode_to_vec().as_slice()).unwrap();
        let answer = cross(answer_of(Ok(Response::Put(put.clone()))));
        assert!(matches!(result_of(answer), Ok(Ok(Response::Put(p))) if p == put));
        let answer = cross(answer_of(Err(EtcdError::Compacted)));
        assert!(matches!(result_of(answer), Ok(Err(EtcdError::Compacted))));
        assert!(result_of(ProposeAnswer::default()).is_err());
    }
}

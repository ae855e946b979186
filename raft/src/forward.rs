//! How a follower's forwarded requests and the leader's answers cross the peer
//! wire: each command as etcd's protobuf, each answer as a `hubpeer.ProposeAnswer`
//! (the state machine's response, or etcd's error text).

use hub_proto::hubpeer::propose_answer::{AlreadyApplied, Answer};
use hub_proto::hubpeer::ProposeAnswer;
use hub_store::{EtcdError, Response};

use crate::types::ApplyOutput;

/// The leader's answer to one forwarded write: what the entry at its log
/// index answered, or the error it was not proposed with.
pub fn answer_of(proposed: Result<ApplyOutput, EtcdError>) -> ProposeAnswer {
    let output = match proposed {
        Ok(output) => output,
        Err(e) => return ProposeAnswer { answer: Some(Answer::NotProposed(e.to_string())), request_id: 0 },
    };
    let answer = output.result.map(|result| match result {
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
    });
    ProposeAnswer { answer, request_id: output.request_id }
}

/// The leader's answer as [`answer_of`] took it; `Err(text)` when it is
/// unreadable.
pub fn result_of(answer: ProposeAnswer) -> Result<Result<ApplyOutput, EtcdError>, String> {
    let etcd_error = |text: String| EtcdError::from_message(&text).ok_or(text);
    let response = match answer.answer {
        None => None,
        Some(Answer::NotProposed(text)) => return Ok(Err(etcd_error(text)?)),
        Some(Answer::Refused(text)) => Some(Err(etcd_error(text)?)),
        Some(Answer::AlreadyApplied(_)) => Some(Ok(Response::AlreadyApplied)),
        Some(Answer::Put(m)) => Some(Ok(Response::Put(m))),
        Some(Answer::DeleteRange(m)) => Some(Ok(Response::DeleteRange(m))),
        Some(Answer::Txn(m)) => Some(Ok(Response::Txn(m))),
        Some(Answer::Compaction(m)) => Some(Ok(Response::Compaction(m))),
        Some(Answer::LeaseGrant(m)) => Some(Ok(Response::LeaseGrant(m))),
        Some(Answer::LeaseRevoke(m)) => Some(Ok(Response::LeaseRevoke(m))),
        Some(Answer::Range(m)) => Some(Ok(Response::Range(m))),
        Some(Answer::Auth(m)) => Some(Ok(Response::Auth(m))),
        Some(Answer::Alarm(m)) => Some(Ok(Response::Alarm(m))),
    };
    Ok(Ok(ApplyOutput { request_id: answer.request_id, result: response }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;
    use hub_proto::etcdserverpb::{PutResponse, ResponseHeader};

    #[test]
    fn answers_cross_the_wire_unchanged() {
        let put = PutResponse { header: Some(ResponseHeader { revision: 7, ..Default::default() }), prev_kv: None };
        let cross = |a: ProposeAnswer| result_of(ProposeAnswer::decode(a.encode_to_vec().as_slice()).unwrap());
        let applied = |result| Ok(ApplyOutput { request_id: 9, result });
        let answer = cross(answer_of(applied(Some(Ok(Response::Put(put.clone()))))));
        assert!(matches!(answer, Ok(Ok(ApplyOutput { request_id: 9, result: Some(Ok(Response::Put(p))) })) if p == put));
        let answer = cross(answer_of(applied(Some(Err(EtcdError::Compacted)))));
        assert!(matches!(answer, Ok(Ok(ApplyOutput { request_id: 9, result: Some(Err(EtcdError::Compacted)) }))));
        let answer = cross(answer_of(applied(None)));
        assert!(matches!(answer, Ok(Ok(ApplyOutput { request_id: 9, result: None }))));
        let answer = cross(answer_of(Err(EtcdError::LeaderChanged)));
        assert!(matches!(answer, Ok(Err(EtcdError::LeaderChanged))));
    }
}

//! Request checks whose answers etcd 3.6 defines, each sent to etcd 3.6.16 and to
//! hubd: the same answer, code and text (issue 16, items 1, 2 and 6).

mod common;

use common::{curl_post, etcd36_bin, hubd_bin, json_blanking, Member};
use hub_proto::etcdserverpb::{kv_client::KvClient, PutRequest};
use serde_json::Value;

/// POSTs `body` to the gateway at `path`; the HTTP status and the JSON with
/// what differs between two clusters by nature blanked out.
fn post(m: &Member, path: &str, body: &str) -> (u16, Value) {
    let (code, body) = curl_post(m, path, body);
    (code, json_blanking(&body, &["cluster_id", "member_id", "raft_term"]))
}

#[test]
fn gateway_answers_as_etcd_3_6() {
    let Some(etcd36) = etcd36_bin() else { return };
    let etcd = Member::start(&etcd36);
    let hub = Member::start(&hubd_bin());
    let calls: &[(&str, &str)] = &[
        // A put of one key in both branches of a txn nested two deep: allowed
        // (hubd refused it before), and a nested txn's header is empty.
        (
            "/v3/kv/txn",
            r#"{"success":[{"request_txn":{"success":[{"request_txn":{"success":[{"request_put":{"key":"ay8yMQ==","value":"dg=="}}],"failure":[{"request_put":{"key":"ay8yMQ==","value":"dw=="}}]}}]}}]}"#,
        ),
        (
            "/v3/kv/txn",
            r#"{"success":[{"request_txn":{"success":[{"request_range":{"key":"ay8yMQ=="}},{"request_put":{"key":"eA==","value":"dg=="}}]}}]}"#,
        ),
        // ... but not beside a put of the same key one level up.
        (
            "/v3/kv/txn",
            r#"{"success":[{"request_txn":{"success":[{"request_txn":{"success":[{"request_put":{"key":"ay8yMQ=="}}],"failure":[{"request_put":{"key":"ay8yMQ=="}}]}}]}},{"request_put":{"key":"ay8yMQ=="}}]}"#,
        ),
        // Unknown sort options: refused, alone and inside a txn (hubd sorted anyway).
        ("/v3/kv/range", r#"{"key":"YQ==","sort_order":3}"#),
        ("/v3/kv/range", r#"{"key":"YQ==","sort_target":5}"#),
        ("/v3/kv/range", r#"{"key":"YQ==","sort_order":-1,"sort_target":1}"#),
        ("/v3/kv/range", r#"{"key":"YQ==","sort_order":2,"sort_target":4}"#),
        ("/v3/kv/txn", r#"{"success":[{"request_range":{"key":"YQ==","sort_target":9}}]}"#),
        // An alarm list has a header in 3.6 (3.4's had none; etcd's e2e tests wait
        // for it in `etcdctl alarm list -w json`), and so does a defragmentation.
        ("/v3/maintenance/alarm", r#"{"action":"GET"}"#),
        ("/v3/maintenance/defragment", "{}"),
        // etcd 3.5's AuthStatus, and HashKV at its own 3.6 path.
        ("/v3/auth/status", "{}"),
        ("/v3/maintenance/hashkv", "{}"),
    ];
    for (path, body) in calls {
        let want = post(&etcd, path, body);
        let got = post(&hub, path, body);
        assert_eq!(got, want, "{path} {body}");
    }
}

#[tokio::test]
async fn a_message_over_the_limit_gets_grpcs_resource_exhausted() {
    let Some(etcd36) = etcd36_bin() else { return };
    let etcd = Member::start(&etcd36);
    let hub = Member::start(&hubd_bin());
    let mut answers = Vec::new();
    for m in [&etcd, &hub] {
        let mut kv = KvClient::connect(format!("http://{}", m.endpoint())).await.expect("connect");
        // Just over --max-request-bytes (1.5 MiB) + gRPC's 512 KiB: the transport refuses it.
        let put = PutRequest { key: b"big".to_vec(), value: vec![7; 2 * 1024 * 1024 + 16], ..Default::default() };
        let status = kv.put(put).await.expect_err("refused");
        answers.push((status.code(), status.message().to_string()));
    }
    assert_eq!(answers[0].0, tonic::Code::ResourceExhausted, "{answers:?}");
    assert_eq!(answers[1], answers[0]);
}

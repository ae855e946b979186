//! Pins hubd's client API as the Rust `etcd-client` crate (0.21) sees it: KV
//! (prefixes, range options, revisions and versions), Txn (compares, branches,
//! nesting), Watch (history, live events, prev_kv, filters, cancel, compacted
//! start) and Lease (grant, keep-alive, time-to-live, list, revoke, expiry),
//! and the exact gRPC code and message of etcd 3.4's errors.
//!
//! Every expectation is etcd 3.4's behaviour: `HUB_TEST_REFERENCE=etcd` runs
//! the same tests against /usr/bin/etcd to check them.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{etcd_bin, hubd_bin, Member};
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, Error, EventType, GetOptions, KeyValue,
    LeaseTimeToLiveOptions, PutOptions, SortOrder, SortTarget, Txn, TxnOp, TxnOpResponse, WatchFilterType,
    WatchOptions, WatchResponse, WatchStream,
};
use tonic::Code;

/// The binary under test: hubd, or etcd itself when HUB_TEST_REFERENCE=etcd.
fn bin() -> PathBuf {
    if std::env::var("HUB_TEST_REFERENCE").as_deref() == Ok("etcd") {
        etcd_bin()
    } else {
        hubd_bin()
    }
}

async fn connect(m: &Member) -> Client {
    let opts = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(3))
        .with_timeout(Duration::from_secs(5));
    Client::connect([m.endpoint()], Some(opts)).await.expect("connect")
}

/// Asserts that `r` failed with exactly this gRPC code and message.
#[track_caller]
fn assert_status<T: std::fmt::Debug>(r: Result<T, Error>, code: Code, message: &str) {
    match r {
        Err(Error::GRpcStatus(s)) => {
            assert_eq!((s.code(), s.message()), (code, message), "status {s:?}");
        }
        other => panic!("expected gRPC status {code:?} {message:?}, got {other:?}"),
    }
}

fn rev(h: Option<&etcd_client::ResponseHeader>) -> i64 {
    h.expect("response header").revision()
}

fn keys(kvs: &[KeyValue]) -> Vec<&str> {
    kvs.iter().map(|kv| kv.key_str().unwrap()).collect()
}

fn values(kvs: &[KeyValue]) -> Vec<&str> {
    kvs.iter().map(|kv| kv.value_str().unwrap()).collect()
}

/// (create_revision, mod_revision, version) of a key-value.
fn revs(kv: &KeyValue) -> (i64, i64, i64) {
    (kv.create_revision(), kv.mod_revision(), kv.version())
}

#[tokio::test]
async fn kv_put_get_delete_with_options_revisions_and_versions() {
    let m = Member::start(&bin());
    let mut c = connect(&m).await;

    // An empty store is at revision 1; the first put makes revision 2.
    let r = c.get("a", None).await.unwrap();
    assert_eq!(rev(r.header()), 1);
    assert!(r.kvs().is_empty());
    assert_eq!(r.count(), 0);

    let r = c.put("a", "1", None).await.unwrap();
    assert_eq!(rev(r.header()), 2);
    assert!(r.prev_key().is_none());
    let r = c.get("a", None).await.unwrap();
    assert_eq!(values(r.kvs()), ["1"]);
    assert_eq!(revs(&r.kvs()[0]), (2, 2, 1));
    assert_eq!(r.kvs()[0].lease(), 0);

    // prev_kv returns the value being replaced; the version goes up.
    let r = c.put("a", "2", Some(PutOptions::new().with_prev_key())).await.unwrap();
    assert_eq!(rev(r.header()), 3);
    let prev = r.prev_key().expect("prev_kv");
    assert_eq!((prev.key(), prev.value()), (&b"a"[..], &b"1"[..]));
    assert_eq!(revs(prev), (2, 2, 1));
    let r = c.get("a", None).await.unwrap();
    assert_eq!(revs(&r.kvs()[0]), (2, 3, 2));

    // Reads at an older revision see the older value.
    let r = c.get("a", Some(GetOptions::new().with_revision(2))).await.unwrap();
    assert_eq!(values(r.kvs()), ["1"]);
    assert_eq!(rev(r.header()), 3, "the header carries the current revision");

    // Prefix: p/1=c (rev 4), p/2=a (rev 5), p/3=b (rev 6); "p0" and "q" are outside.
    for (k, v) in [("p/1", "c"), ("p/2", "a"), ("p/3", "b"), ("p0", "x"), ("q", "y")] {
        c.put(k, v, None).await.unwrap();
    }
    let r = c.get("p/", Some(GetOptions::new().with_prefix())).await.unwrap();
    assert_eq!(keys(r.kvs()), ["p/1", "p/2", "p/3"]);
    assert_eq!(values(r.kvs()), ["c", "a", "b"]);
    assert_eq!((r.count(), r.more()), (3, false));
    assert_eq!(rev(r.header()), 8);

    let r = c.get("p/", Some(GetOptions::new().with_prefix().with_keys_only())).await.unwrap();
    assert_eq!(keys(r.kvs()), ["p/1", "p/2", "p/3"]);
    assert!(r.kvs().iter().all(|kv| kv.value().is_empty()), "keys_only drops values");
    assert_eq!(revs(&r.kvs()[1]), (5, 5, 1), "keys_only keeps revisions");

    let r = c.get("p/", Some(GetOptions::new().with_prefix().with_count_only())).await.unwrap();
    assert!(r.kvs().is_empty());
    assert_eq!(r.count(), 3);

    let r = c.get("p/", Some(GetOptions::new().with_prefix().with_limit(2))).await.unwrap();
    assert_eq!(keys(r.kvs()), ["p/1", "p/2"]);
    assert_eq!((r.count(), r.more()), (3, true));
    let r = c.get("p/", Some(GetOptions::new().with_prefix().with_limit(3))).await.unwrap();
    assert_eq!((r.kvs().len(), r.more()), (3, false));

    let sorted = |target, order| GetOptions::new().with_prefix().with_sort(target, order);
    let r = c.get("p/", Some(sorted(SortTarget::Value, SortOrder::Ascend))).await.unwrap();
    assert_eq!(keys(r.kvs()), ["p/2", "p/3", "p/1"]);
    let r = c.get("p/", Some(sorted(SortTarget::Value, SortOrder::Descend))).await.unwrap();
    assert_eq!(keys(r.kvs()), ["p/1", "p/3", "p/2"]);
    let r = c.get("p/", Some(sorted(SortTarget::Key, SortOrder::Descend))).await.unwrap();
    assert_eq!(keys(r.kvs()), ["p/3", "p/2", "p/1"]);
    let r = c.get("p/", Some(sorted(SortTarget::Mod, SortOrder::Descend))).await.unwrap();
    assert_eq!(keys(r.kvs()), ["p/3", "p/2", "p/1"]);
    // Sort then limit: the two largest values.
    let r = c
        .get("p/", Some(sorted(SortTarget::Value, SortOrder::Descend).with_limit(2)))
        .await
        .unwrap();
    assert_eq!(keys(r.kvs()), ["p/1", "p/3"]);
    assert_eq!((r.count(), r.more()), (3, true));

    // Explicit range [p/2, q) and from-key.
    let r = c.get("p/2", Some(GetOptions::new().with_range("q"))).await.unwrap();
    assert_eq!(keys(r.kvs()), ["p/2", "p/3", "p0"]);
    let r = c.get("p0", Some(GetOptions::new().with_from_key())).await.unwrap();
    assert_eq!(keys(r.kvs()), ["p0", "q"]);
    let r = c.get("", Some(GetOptions::new().with_all_keys())).await.unwrap();
    assert_eq!(keys(r.kvs()), ["a", "p/1", "p/2", "p/3", "p0", "q"]);

    // Deleting a prefix is one revision for all its keys.
    let r = c.delete("p/", Some(DeleteOptions::new().with_prefix().with_prev_key())).await.unwrap();
    assert_eq!(r.deleted(), 3);
    assert_eq!(rev(r.header()), 9);
    assert_eq!(keys(r.prev_kvs()), ["p/1", "p/2", "p/3"]);
    assert_eq!(values(r.prev_kvs()), ["c", "a", "b"]);
    let r = c.get("p/", Some(GetOptions::new().with_prefix())).await.unwrap();
    assert_eq!(r.count(), 0);
    // ... and the deleted keys are still visible at older revisions.
    let r = c.get("p/", Some(GetOptions::new().with_prefix().with_revision(8))).await.unwrap();
    assert_eq!(r.count(), 3);

    // Deleting nothing does not make a revision.
    let r = c.delete("nothing", None).await.unwrap();
    assert_eq!(r.deleted(), 0);
    assert_eq!(rev(r.header()), 9);
    let r = c.delete("p/", Some(DeleteOptions::new().with_prefix())).await.unwrap();
    assert_eq!(r.deleted(), 0);
    assert_eq!(rev(r.header()), 9);

    // A key created again after a delete starts over at version 1.
    c.delete("a", None).await.unwrap();
    let r = c.put("a", "3", Some(PutOptions::new().with_prev_key())).await.unwrap();
    assert_eq!(rev(r.header()), 11);
    assert!(r.prev_key().is_none());
    let r = c.get("a", None).await.unwrap();
    assert_eq!(revs(&r.kvs()[0]), (11, 11, 1));

    // ignore_value keeps the value and bumps the version.
    let r = c.put("a", "", Some(PutOptions::new().with_ignore_value())).await.unwrap();
    assert_eq!(rev(r.header()), 12);
    let r = c.get("a", None).await.unwrap();
    assert_eq!(values(r.kvs()), ["3"]);
    assert_eq!(revs(&r.kvs()[0]), (11, 12, 2));
}

#[tokio::test]
async fn txn_compares_branches_and_nesting() {
    let m = Member::start(&bin());
    let mut c = connect(&m).await;
    c.put("k", "v1", None).await.unwrap(); // rev 2

    // value == v1: success branch; its put and get see each other.
    let r = c
        .txn(
            Txn::new()
                .when([Compare::value("k", CompareOp::Equal, "v1")])
                .and_then([TxnOp::put("k", "v2", None), TxnOp::get("k", None)])
                .or_else([TxnOp::put("failed", "1", None)]),
        )
        .await
        .unwrap();
    assert!(r.succeeded());
    assert_eq!(rev(r.header()), 3);
    let ops = r.op_responses();
    assert_eq!(ops.len(), 2);
    match &ops[0] {
        TxnOpResponse::Put(p) => assert_eq!(rev(p.header()), 3),
        other => panic!("expected a put response, got {other:?}"),
    }
    match &ops[1] {
        TxnOpResponse::Get(g) => {
            assert_eq!(values(g.kvs()), ["v2"]);
            assert_eq!(revs(&g.kvs()[0]), (2, 3, 2));
        }
        other => panic!("expected a range response, got {other:?}"),
    }

    // version == 1 is false now (version 2): failure branch.
    let r = c
        .txn(
            Txn::new()
                .when([Compare::version("k", CompareOp::Equal, 1)])
                .and_then([TxnOp::put("k", "never", None)])
                .or_else([TxnOp::get("k", None), TxnOp::put("fail", "yes", None)]),
        )
        .await
        .unwrap();
    assert!(!r.succeeded());
    assert_eq!(rev(r.header()), 4);
    let ops = r.op_responses();
    assert_eq!(ops.len(), 2);
    match &ops[0] {
        TxnOpResponse::Get(g) => assert_eq!(values(g.kvs()), ["v2"]),
        other => panic!("expected a range response, got {other:?}"),
    }
    assert_eq!(values(c.get("fail", None).await.unwrap().kvs()), ["yes"]);

    // A txn that only reads makes no revision.
    let r = c
        .txn(
            Txn::new()
                .when([Compare::version("k", CompareOp::Greater, 1)])
                .and_then([TxnOp::get("k", None)]),
        )
        .await
        .unwrap();
    assert!(r.succeeded());
    assert_eq!(rev(r.header()), 4);

    // mod_revision, several compares (all must hold), NotEqual and Less.
    let when = |mod_rev| {
        Txn::new()
            .when([
                Compare::mod_revision("k", CompareOp::Equal, mod_rev),
                Compare::create_revision("k", CompareOp::Equal, 2),
                Compare::value("k", CompareOp::NotEqual, "v1"),
                Compare::version("k", CompareOp::Less, 3),
            ])
            .and_then([TxnOp::put("k", "v3", None)])
    };
    assert!(!c.txn(when(2)).await.unwrap().succeeded());
    let r = c.txn(when(3)).await.unwrap();
    assert!(r.succeeded());
    assert_eq!(rev(r.header()), 5);

    // A missing key compares as version 0 / create_revision 0.
    let r = c
        .txn(
            Txn::new()
                .when([Compare::version("missing", CompareOp::Equal, 0)])
                .and_then([TxnOp::put("missing", "created", None)]),
        )
        .await
        .unwrap();
    assert!(r.succeeded());
    assert_eq!(rev(r.header()), 6);

    // Nested txn: one revision in all. etcd evaluates every compare of the
    // txn tree before applying any op, so the inner compare does not see the
    // outer put of "n" and the inner txn takes its failure branch.
    let inner = |then: &str, other: &str| {
        Txn::new()
            .when([Compare::value("n", CompareOp::Equal, "outer")])
            .and_then([TxnOp::put("m", then, None)])
            .or_else([TxnOp::put("m", other, None), TxnOp::get("n", None)])
    };
    let r = c
        .txn(
            Txn::new()
                .when([Compare::value("k", CompareOp::Equal, "v3")])
                .and_then([TxnOp::put("n", "outer", None), TxnOp::txn(inner("then", "else"))]),
        )
        .await
        .unwrap();
    assert!(r.succeeded());
    assert_eq!(rev(r.header()), 7);
    match &r.op_responses()[1] {
        TxnOpResponse::Txn(t) => {
            assert!(!t.succeeded());
            let ops = t.op_responses();
            assert_eq!(ops.len(), 2);
            match &ops[1] {
                TxnOpResponse::Get(g) => assert_eq!(values(g.kvs()), ["outer"], "ops do see earlier ops"),
                other => panic!("expected a range response, got {other:?}"),
            }
        }
        other => panic!("expected a txn response, got {other:?}"),
    }
    let m_kv = c.get("m", None).await.unwrap();
    assert_eq!(values(m_kv.kvs()), ["else"]);
    assert_eq!(revs(&m_kv.kvs()[0]), (7, 7, 1));
    // Now "n" is "outer" before the txn: the inner success branch.
    let r = c.txn(Txn::new().and_then([TxnOp::txn(inner("then", "else"))])).await.unwrap();
    match &r.op_responses()[0] {
        TxnOpResponse::Txn(t) => assert!(t.succeeded()),
        other => panic!("expected a txn response, got {other:?}"),
    }
    assert_eq!(rev(r.header()), 8);
    assert_eq!(values(c.get("m", None).await.unwrap().kvs()), ["then"]);

    // A txn without compares takes its success branch.
    let r = c
        .txn(Txn::new().and_then([TxnOp::delete("m", Some(DeleteOptions::new().with_prev_key()))]))
        .await
        .unwrap();
    assert!(r.succeeded(), "no compares: success branch");
    match &r.op_responses()[0] {
        TxnOpResponse::Delete(d) => {
            assert_eq!(d.deleted(), 1);
            assert_eq!(values(d.prev_kvs()), ["then"]);
        }
        other => panic!("expected a delete response, got {other:?}"),
    }
    assert_eq!(rev(r.header()), 9);
}

#[tokio::test]
async fn errors_have_etcds_codes_and_messages() {
    let m = Member::start(&bin());
    let mut c = connect(&m).await;
    c.put("k", "v", None).await.unwrap(); // rev 2

    // Two puts of one key in one txn.
    assert_status(
        c.txn(Txn::new().and_then([TxnOp::put("dup", "1", None), TxnOp::put("dup", "2", None)])).await,
        Code::InvalidArgument,
        "etcdserver: duplicate key given in txn request",
    );
    // A put and a delete covering it in the same branch, too.
    assert_status(
        c.txn(Txn::new().or_else([
            TxnOp::put("dup/a", "1", None),
            TxnOp::delete("dup/", Some(DeleteOptions::new().with_prefix())),
        ]))
        .await,
        Code::InvalidArgument,
        "etcdserver: duplicate key given in txn request",
    );

    // 128 ops (etcd's default --max-txn-ops) pass; 129 do not.
    let gets = |n: usize| (0..n).map(|i| TxnOp::get(format!("g{i}"), None)).collect::<Vec<_>>();
    assert!(c.txn(Txn::new().and_then(gets(128))).await.unwrap().succeeded());
    assert_status(
        c.txn(Txn::new().and_then(gets(129))).await,
        Code::InvalidArgument,
        "etcdserver: too many operations in txn request",
    );

    assert_status(
        c.put("missing", "", Some(PutOptions::new().with_ignore_value())).await,
        Code::InvalidArgument,
        "etcdserver: key not found",
    );
    assert_status(
        c.put("missing", "v", Some(PutOptions::new().with_ignore_lease())).await,
        Code::InvalidArgument,
        "etcdserver: key not found",
    );
    assert_status(
        c.put("leased", "v", Some(PutOptions::new().with_lease(0x1234_5678))).await,
        Code::NotFound,
        "etcdserver: requested lease not found",
    );
    assert_status(
        c.get("k", Some(GetOptions::new().with_revision(100))).await,
        Code::OutOfRange,
        "etcdserver: mvcc: required revision is a future revision",
    );
    assert_status(
        c.txn(Txn::new().and_then([TxnOp::get("k", Some(GetOptions::new().with_revision(3)))])).await,
        Code::OutOfRange,
        "etcdserver: mvcc: required revision is a future revision",
    );

    // etcd's --max-request-bytes defaults to 1.5 MiB.
    let big = vec![b'x'; 1536 * 1024 + 1024];
    assert_status(c.put("big", big, None).await, Code::InvalidArgument, "etcdserver: request is too large");

    // Compacted reads, and compacting again at or below the compacted revision.
    for i in 0..3 {
        c.put("k", format!("v{i}"), None).await.unwrap(); // revs 3, 4, 5
    }
    assert_status(c.compact(6, None).await, Code::OutOfRange, "etcdserver: mvcc: required revision is a future revision");
    c.compact(4, None).await.unwrap();
    assert_status(
        c.get("k", Some(GetOptions::new().with_revision(3))).await,
        Code::OutOfRange,
        "etcdserver: mvcc: required revision has been compacted",
    );
    assert_status(c.compact(4, None).await, Code::OutOfRange, "etcdserver: mvcc: required revision has been compacted");
    assert_eq!(values(c.get("k", Some(GetOptions::new().with_revision(4))).await.unwrap().kvs()), ["v1"]);

    // None of the failed requests made a revision.
    assert_eq!(rev(c.get("k", None).await.unwrap().header()), 5);
}

/// The next response on a watch stream, within a few seconds.
async fn next(stream: &mut WatchStream) -> WatchResponse {
    tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("watch response in time")
        .expect("watch stream error")
        .expect("watch stream ended")
}

/// Creates a watch on `stream` (already sent) and returns its ID from the created response.
async fn created(stream: &mut WatchStream) -> i64 {
    let r = next(stream).await;
    assert!(r.created(), "expected a created response, got {r:?}");
    assert!(!r.canceled(), "{r:?}");
    r.watch_id()
}

/// (type, key, value, mod_revision, prev value) of the next `n` events of `watch_id`.
async fn events(stream: &mut WatchStream, watch_id: i64, n: usize) -> Vec<(EventType, String, String, i64, Option<String>)> {
    let mut out = Vec::new();
    while out.len() < n {
        let r = next(stream).await;
        assert_eq!(r.watch_id(), watch_id, "{r:?}");
        assert!(!r.canceled(), "{r:?}");
        for e in r.events() {
            let kv = e.kv().expect("event kv");
            out.push((
                e.event_type(),
                kv.key_str().unwrap().to_string(),
                kv.value_str().unwrap().to_string(),
                kv.mod_revision(),
                e.prev_kv().map(|p| p.value_str().unwrap().to_string()),
            ));
        }
    }
    assert_eq!(out.len(), n, "more events than expected: {out:?}");
    out
}

/// Nothing arrives on `stream` for a short while.
async fn quiet(stream: &mut WatchStream) {
    if let Ok(r) = tokio::time::timeout(Duration::from_millis(400), stream.message()).await {
        panic!("expected no watch response, got {r:?}");
    }
}

fn ev(t: EventType, k: &str, v: &str, rev: i64, prev: Option<&str>) -> (EventType, String, String, i64, Option<String>) {
    (t, k.to_string(), v.to_string(), rev, prev.map(str::to_string))
}

#[tokio::test]
async fn watch_history_live_prev_kv_filters_cancel_and_compacted() {
    use EventType::{Delete, Put};
    let m = Member::start(&bin());
    let mut c = connect(&m).await;
    c.put("a", "1", None).await.unwrap(); // 2
    c.put("a", "2", None).await.unwrap(); // 3
    c.delete("a", None).await.unwrap(); // 4
    c.put("other", "x", None).await.unwrap(); // 5

    // History from revision 2, with prev_kv, then live events.
    let mut w = c.watch("a", Some(WatchOptions::new().with_start_revision(2).with_prev_key())).await.unwrap();
    let id = created(&mut w).await;
    assert_eq!(
        events(&mut w, id, 3).await,
        [ev(Put, "a", "1", 2, None), ev(Put, "a", "2", 3, Some("1")), ev(Delete, "a", "", 4, Some("2"))]
    );
    c.put("a", "3", None).await.unwrap(); // 6: a create, so no prev_kv
    c.put("a", "4", None).await.unwrap(); // 7
    c.put("b", "ignored", None).await.unwrap(); // 8: not watched
    c.delete("a", None).await.unwrap(); // 9
    assert_eq!(
        events(&mut w, id, 3).await,
        [ev(Put, "a", "3", 6, None), ev(Put, "a", "4", 7, Some("3")), ev(Delete, "a", "", 9, Some("4"))]
    );

    // The events of one txn arrive with one revision.
    let mut pw = c.watch("t/", Some(WatchOptions::new().with_prefix())).await.unwrap();
    let pid = created(&mut pw).await;
    c.txn(Txn::new().and_then([TxnOp::put("t/1", "x", None), TxnOp::put("t/2", "y", None)])).await.unwrap(); // 10
    assert_eq!(events(&mut pw, pid, 2).await, [ev(Put, "t/1", "x", 10, None), ev(Put, "t/2", "y", 10, None)]);

    // Filters, two watches on one stream.
    let mut f = c.watch("f/", Some(WatchOptions::new().with_prefix().with_filters([WatchFilterType::NoPut]))).await.unwrap();
    let no_put = created(&mut f).await;
    f.watch("f/", Some(WatchOptions::new().with_prefix().with_filters([WatchFilterType::NoDelete]))).await.unwrap();
    let no_delete = created(&mut f).await;
    assert_ne!(no_put, no_delete);
    c.put("f/1", "p", None).await.unwrap(); // 11
    c.delete("f/1", None).await.unwrap(); // 12
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let r = next(&mut f).await;
        for e in r.events() {
            seen.push((r.watch_id(), e.event_type(), e.kv().unwrap().mod_revision()));
        }
    }
    seen.sort_by_key(|s| s.2);
    assert_eq!(seen, [(no_delete, Put, 11), (no_put, Delete, 12)]);
    quiet(&mut f).await;

    // Cancel: a canceled response, then nothing more for that watch.
    w.cancel(id).await.unwrap();
    let r = next(&mut w).await;
    assert!(r.canceled(), "{r:?}");
    assert_eq!(r.watch_id(), id);
    c.put("a", "after-cancel", None).await.unwrap(); // 13
    quiet(&mut w).await;

    // A watch from a compacted revision: created, then canceled with compact_revision.
    c.compact(10, None).await.unwrap();
    let mut cw = c.watch("a", Some(WatchOptions::new().with_start_revision(3))).await.unwrap();
    let cid = created(&mut cw).await;
    let r = next(&mut cw).await;
    assert!(r.canceled(), "{r:?}");
    assert!(!r.created(), "{r:?}");
    assert_eq!(r.watch_id(), cid);
    assert_eq!(r.compact_revision(), 10, "{r:?}");
    assert!(r.events().is_empty());

    // From exactly the compacted revision is still fine.
    let mut ok = c.watch("a", Some(WatchOptions::new().with_start_revision(10))).await.unwrap();
    let oid = created(&mut ok).await;
    assert_eq!(events(&mut ok, oid, 1).await, [ev(Put, "a", "after-cancel", 13, None)]);
}

#[tokio::test]
async fn leases_grant_keep_alive_ttl_list_revoke() {
    let m = Member::start(&bin());
    let mut c = connect(&m).await;

    let g = c.lease_grant(10, None).await.unwrap();
    assert_eq!(g.ttl(), 10);
    assert!(g.id() > 0);
    assert_eq!(g.error(), "");
    let id = g.id();
    // Granting does not make a revision.
    assert_eq!(rev(g.header()), 1);

    let r = c.put("l/1", "a", Some(PutOptions::new().with_lease(id))).await.unwrap();
    assert_eq!(rev(r.header()), 2);
    c.put("l/2", "b", Some(PutOptions::new().with_lease(id))).await.unwrap();
    c.put("plain", "c", None).await.unwrap();
    assert_eq!(c.get("l/1", None).await.unwrap().kvs()[0].lease(), id);

    let t = c.lease_time_to_live(id, Some(LeaseTimeToLiveOptions::new().with_keys())).await.unwrap();
    assert_eq!((t.id(), t.granted_ttl()), (id, 10));
    assert!((9..=10).contains(&t.ttl()), "ttl {}", t.ttl());
    let mut attached: Vec<&[u8]> = t.keys().iter().map(|k| k.as_slice()).collect();
    attached.sort();
    assert_eq!(attached, [&b"l/1"[..], &b"l/2"[..]]);
    let t = c.lease_time_to_live(id, None).await.unwrap();
    assert!(t.keys().is_empty(), "keys only when asked for");

    let other = c.lease_grant(30, None).await.unwrap().id();
    let mut listed: Vec<i64> = c.leases().await.unwrap().leases().iter().map(|l| l.id()).collect();
    listed.sort();
    let mut want = vec![id, other];
    want.sort();
    assert_eq!(listed, want);

    // Keep-alive restores the full TTL.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let t = c.lease_time_to_live(id, None).await.unwrap();
    assert!(t.ttl() <= 9, "ttl after 1.2 s: {}", t.ttl());
    let (mut keeper, mut responses) = c.lease_keep_alive(id).await.unwrap();
    assert_eq!(keeper.id(), id);
    keeper.keep_alive().await.unwrap();
    let ka = tokio::time::timeout(Duration::from_secs(5), responses.message())
        .await
        .expect("keep-alive response in time")
        .unwrap()
        .expect("keep-alive response");
    assert_eq!((ka.id(), ka.ttl()), (id, 10));
    let t = c.lease_time_to_live(id, None).await.unwrap();
    assert!((9..=10).contains(&t.ttl()), "ttl after keep-alive: {}", t.ttl());

    // Revoking deletes the attached keys, in one revision.
    let before = rev(c.get("plain", None).await.unwrap().header());
    let r = c.lease_revoke(id).await.unwrap();
    assert_eq!(rev(r.header()), before + 1);
    let r = c.get("l/", Some(GetOptions::new().with_prefix())).await.unwrap();
    assert_eq!(r.count(), 0);
    assert_eq!(values(c.get("plain", None).await.unwrap().kvs()), ["c"]);
    let listed: Vec<i64> = c.leases().await.unwrap().leases().iter().map(|l| l.id()).collect();
    assert_eq!(listed, [other]);

    // A revoked lease: TimeToLive answers TTL -1, the rest NotFound.
    let t = c.lease_time_to_live(id, None).await.unwrap();
    assert_eq!((t.id(), t.ttl()), (id, -1));
    assert_status(c.lease_revoke(id).await, Code::NotFound, "etcdserver: requested lease not found");
    assert_status(
        c.put("l/3", "x", Some(PutOptions::new().with_lease(id))).await,
        Code::NotFound,
        "etcdserver: requested lease not found",
    );
    match c.lease_keep_alive(id).await {
        Err(Error::LeaseKeepAliveError(msg)) => assert_eq!(msg, "lease not found"),
        other => panic!("keep-alive of a revoked lease: {:?}", other.map(|_| ())),
    }
}

#[tokio::test]
async fn short_lease_expires_and_its_keys_disappear() {
    let m = Member::start(&bin());
    let mut c = connect(&m).await;
    let start = Instant::now();
    let g = c.lease_grant(2, None).await.unwrap();
    assert_eq!(g.ttl(), 2);
    let id = g.id();
    c.put("ephemeral", "v", Some(PutOptions::new().with_lease(id))).await.unwrap();
    c.put("durable", "v", None).await.unwrap();
    let mut w = c.watch("ephemeral", None).await.unwrap();
    let wid = created(&mut w).await;
    assert_eq!(c.get("ephemeral", None).await.unwrap().count(), 1);

    loop {
        let r = c.get("ephemeral", None).await.unwrap();
        if r.count() == 0 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(4), "key of a TTL 2 lease still there after 4 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(start.elapsed() >= Duration::from_millis(1500), "expired too early: {:?}", start.elapsed());

    // The expiry is a delete event at the revision after the two puts.
    let r = next(&mut w).await;
    assert_eq!(r.watch_id(), wid);
    assert_eq!(r.events().len(), 1);
    assert_eq!(r.events()[0].event_type(), EventType::Delete);
    assert_eq!(r.events()[0].kv().unwrap().mod_revision(), 4);

    assert_eq!(c.lease_time_to_live(id, None).await.unwrap().ttl(), -1);
    assert!(c.leases().await.unwrap().leases().is_empty());
    assert_eq!(c.get("durable", None).await.unwrap().count(), 1);
}

/// A watch that starts far back gets the history in responses of at most 1000
/// revisions (etcd's watchBatchMaxRevs), not in one response that a client's
/// receive limit may refuse (found by hub-chaos).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_catch_up_comes_in_batches_of_at_most_1000_revisions() {
    let m = Member::start(&bin());
    let mut c = connect(&m).await;
    for i in 0..2500 {
        c.put(format!("k{i}"), "v", None).await.unwrap();
    }
    let mut w = c.watch("k", Some(WatchOptions::new().with_prefix().with_start_revision(1))).await.unwrap();
    created(&mut w).await;
    let mut revisions_per_response = Vec::new();
    let mut seen = 0;
    while seen < 2500 {
        let r = next(&mut w).await;
        let revs: std::collections::BTreeSet<i64> = r.events().iter().filter_map(|e| e.kv().map(|kv| kv.mod_revision())).collect();
        revisions_per_response.push(revs.len());
        seen += r.events().len();
    }
    assert_eq!(seen, 2500);
    assert!(revisions_per_response.len() >= 3, "{revisions_per_response:?}");
    assert!(revisions_per_response.iter().all(|&n| n <= 1000), "{revisions_per_response:?}");
}

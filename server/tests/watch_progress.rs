//! Watch progress requests are ordered with events, as in etcd 3.4.31+ (the
//! version hub reports): the Kubernetes API server turns on progress requests
//! for that version and builds its consistent reads from cache on them. A
//! progress response at revision R must come after every event up to R
//! (etcd-io/etcd#15220), and a stream never reports a revision older than one
//! it already reported or than a watcher's start (etcd-io/etcd#20229).
//! Etcd 3.4.23 fails these, so they run against hubd only.

mod common;

use std::time::Duration;

use common::{hubd_bin, Member};
use etcd_client::{Client, ConnectOptions, WatchOptions, WatchResponse, WatchStream};

async fn connect(m: &Member) -> Client {
    let opts = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(3))
        .with_timeout(Duration::from_secs(5));
    Client::connect([m.endpoint()], Some(opts)).await.expect("connect")
}

async fn next(w: &mut WatchStream) -> WatchResponse {
    tokio::time::timeout(Duration::from_secs(10), w.message())
        .await
        .expect("a watch response within 10s")
        .expect("watch stream")
        .expect("watch stream open")
}

fn revision(r: &WatchResponse) -> i64 {
    r.header().expect("header").revision()
}

/// A progress response: no events, for no watcher (-1), neither created nor canceled.
fn is_progress(r: &WatchResponse) -> bool {
    r.events().is_empty() && r.watch_id() == -1 && !r.created() && !r.canceled()
}

#[tokio::test]
async fn progress_responses_never_run_ahead_of_events() {
    let m = Member::start(&hubd_bin());
    let mut c = connect(&m).await;
    c.put("a/0", "", None).await.unwrap();
    let start = c.put("b/0", "", None).await.unwrap().header().unwrap().revision();

    // Two watchers on one stream, the second catching up from history, then
    // eight writers keep the store ahead of the stream.
    let mut w = c.watch("a/", Some(WatchOptions::new().with_prefix())).await.unwrap();
    assert!(next(&mut w).await.created());
    w.watch("b/", Some(WatchOptions::new().with_prefix().with_start_revision(start))).await.unwrap();
    assert!(next(&mut w).await.created());
    let r = next(&mut w).await;
    assert_eq!(r.events()[0].kv().unwrap().mod_revision(), start);
    let writers: Vec<_> = (0..8)
        .map(|i| {
            let mut c = c.clone();
            tokio::spawn(async move {
                for j in 0..100 {
                    let key = if j % 2 == 0 { format!("a/{i}") } else { format!("b/{i}") };
                    c.put(key, j.to_string(), None).await.unwrap();
                }
            })
        })
        .collect();

    // Every revision after `start` is one event of one of the two watchers, so
    // a progress response at R is right only once every event up to R arrived.
    let last = start + 800;
    let (mut seen, mut reported, mut progress_responses) = (start, 0, 0);
    w.request_progress().await.unwrap();
    while seen < last || reported < last {
        let r = next(&mut w).await;
        if is_progress(&r) {
            let rev = revision(&r);
            assert!(rev <= seen, "progress at {rev} before the event of revision {}", seen + 1);
            assert!(rev >= reported, "progress went back from {reported} to {rev}");
            reported = rev;
            progress_responses += 1;
            w.request_progress().await.unwrap();
        }
        for e in r.events() {
            let rev = e.kv().unwrap().mod_revision();
            assert_eq!(rev, seen + 1, "events in revision order, none missing");
            seen = rev;
        }
    }
    for writer in writers {
        writer.await.unwrap();
    }
    assert!(progress_responses > 1);
}

#[tokio::test]
async fn progress_waits_for_a_watcher_that_starts_in_the_future() {
    let m = Member::start(&hubd_bin());
    let mut c = connect(&m).await;
    let current = c.put("k", "0", None).await.unwrap().header().unwrap().revision();

    // The watcher starts at current + 3: nothing before current + 2 may be reported.
    let opts = WatchOptions::new().with_start_revision(current + 3).with_progress_notify();
    let mut w = c.watch("k", Some(opts)).await.unwrap();
    assert!(next(&mut w).await.created());
    w.request_progress().await.unwrap();
    c.put("other", "1", None).await.unwrap();
    c.put("other", "2", None).await.unwrap();
    let r = next(&mut w).await;
    assert!(is_progress(&r), "{r:?}");
    assert_eq!(revision(&r), current + 2);

    // From then on the watcher is synced: its event, then progress at its revision.
    c.put("k", "3", None).await.unwrap();
    let r = next(&mut w).await;
    assert_eq!(r.events().len(), 1);
    assert_eq!(r.events()[0].kv().unwrap().mod_revision(), current + 3);
    w.request_progress().await.unwrap();
    let r = next(&mut w).await;
    assert!(is_progress(&r), "{r:?}");
    assert_eq!(revision(&r), current + 3);
}

//! Watchers: each watches a prefix from revision 1 with prev_kv and progress
//! notifications, through a random member. When the stream breaks or stays
//! silent (a partitioned or paused member), it resumes on another member from
//! the revision after the last event or progress notification it saw.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use hub_proto::etcdserverpb::{watch_request::RequestUnion, WatchCreateRequest, WatchRequest};
use hub_proto::mvccpb::event::EventType;
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::Serialize;
use serde_json::json;

use hub_proto::range::prefix_end;

use super::Ctx;
use crate::cluster::watch;
use crate::history::{Op, Status};

/// One event as a watcher saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ev {
    pub revision: i64,
    pub key: String,
    pub delete: bool,
    pub value: String,
    pub mod_revision: i64,
    pub lease: i64,
    /// prev_kv: (value, mod_revision).
    pub prev: Option<(String, i64)>,
}

/// What a watcher received, response by response.
#[derive(Debug, Clone, Serialize)]
pub enum Item {
    Events(Vec<Ev>),
    Progress(i64),
}

#[derive(Clone)]
pub struct Watcher {
    pub name: String,
    pub prefix: String,
    pub items: Arc<Mutex<Vec<Item>>>,
    /// The next revision it waits for.
    pub next: Arc<Mutex<i64>>,
}

impl Watcher {
    pub fn new(name: &str, prefix: &str) -> Watcher {
        Watcher {
            name: name.to_string(),
            prefix: prefix.to_string(),
            items: Arc::new(Mutex::new(Vec::new())),
            next: Arc::new(Mutex::new(1)),
        }
    }

    pub fn events(&self) -> Vec<Ev> {
        self.items
            .lock()
            .iter()
            .flat_map(|i| match i {
                Item::Events(e) => e.clone(),
                Item::Progress(_) => Vec::new(),
            })
            .collect()
    }
}

fn convert(e: &hub_proto::mvccpb::Event) -> Ev {
    let kv = e.kv.clone().unwrap_or_default();
    Ev {
        revision: kv.mod_revision,
        key: String::from_utf8_lossy(&kv.key).into_owned(),
        delete: e.r#type == EventType::Delete as i32,
        value: String::from_utf8_lossy(&kv.value).into_owned(),
        mod_revision: kv.mod_revision,
        lease: kv.lease,
        prev: e.prev_kv.as_ref().map(|p| (String::from_utf8_lossy(&p.value).into_owned(), p.mod_revision)),
    }
}

/// Silence longer than this (progress notifications come every second) means
/// the member is cut off: resume elsewhere.
const SILENCE: Duration = Duration::from_secs(5);

/// Watches until `done` says a revision it has passed.
pub async fn run(ctx: Ctx, w: Watcher, seed: u64, done: tokio::sync::watch::Receiver<Option<i64>>) {
    let mut rng = StdRng::seed_from_u64(seed);
    loop {
        let next = *w.next.lock();
        if done.borrow().is_some_and(|target| next > target) {
            return;
        }
        let (member, ch) = ctx.pick(&mut rng);
        let create = WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                key: w.prefix.clone().into_bytes(),
                range_end: prefix_end(w.prefix.as_bytes()),
                start_revision: next,
                progress_notify: true,
                prev_kv: true,
                ..Default::default()
            })),
        };
        let requests = futures::stream::iter(vec![create]).chain(futures::stream::pending());
        let start = ctx.rec.now();
        let mut client = watch(&ch);
        let opened = tokio::time::timeout(ctx.op_timeout, client.watch(requests)).await;
        let (status, output) = match &opened {
            Ok(Ok(_)) => (Status::Ok, json!(null)),
            Ok(Err(e)) => (Status::Fail, json!(e.message())),
            Err(_) => (Status::Fail, json!("timeout")),
        };
        ctx.rec.record(Op {
            process: w.name.clone(),
            op: "watch/open".into(),
            key: w.prefix.clone(),
            input: json!({"start_revision": next}),
            output,
            status,
            start,
            end: ctx.rec.now(),
            member,
        });
        let Ok(Ok(stream)) = opened else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let mut stream = stream.into_inner();
        loop {
            if done.borrow().is_some_and(|target| *w.next.lock() > target) {
                return;
            }
            let msg = match tokio::time::timeout(SILENCE, stream.message()).await {
                Ok(Ok(Some(m))) => m,
                _ => break,
            };
            if msg.canceled {
                break;
            }
            if msg.created && msg.events.is_empty() {
                continue;
            }
            let mut next = w.next.lock();
            if msg.events.is_empty() {
                let rev = msg.header.map_or(0, |h| h.revision);
                w.items.lock().push(Item::Progress(rev));
                *next = (*next).max(rev + 1);
            } else {
                let evs: Vec<Ev> = msg.events.iter().map(convert).collect();
                *next = (*next).max(evs[evs.len() - 1].revision + 1);
                w.items.lock().push(Item::Events(evs));
            }
        }
    }
}

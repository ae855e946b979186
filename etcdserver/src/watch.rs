//! etcd's watch streams (its `v3rpc/watch.go` and the watchable store's
//! synced and unsynced watcher groups): one task per client stream serves all
//! of its watchers. What a watcher selects and how it catches up from the
//! backend are the store's (`hub_store::watch`); the feed of applied events is
//! the raft node's ([`EtcdServer::subscribe`]); the wire (`hub-grpc-api`)
//! hands requests in and responses out.
//!
//! A watcher is *synced* once it has seen every change up to the store's current
//! revision; from then on it takes changes from the node's commit feed as they
//! are applied. A new watcher whose start revision is in the past, or a stream
//! that fell behind the feed, catches up from the store first, under the same
//! lock that reads the current revision, so no change is missed or repeated.
//! Responses follow etcd's `v3rpc/watch.go`: a `created` response first, events
//! of one revision never split (unless the client asked for fragments), a
//! compacted start revision answered with `compact_revision` and a cancel.
//!
//! Progress is ordered with events, as in etcd 3.4.31+ (etcd-io/etcd#15220,
//! #17507, #20229), which the Kubernetes API server's consistent reads from its
//! watch cache rely on: a progress response at revision R promises that every
//! event up to R was already sent on the stream, and a stream never reports a
//! revision older than one it reported (or a watcher asked to start after).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use hub_proto::etcdserverpb::{
    watch_create_request::FilterType, watch_request::RequestUnion, ResponseHeader, WatchCreateRequest, WatchRequest,
    WatchResponse,
};
use hub_proto::mvccpb::Event;
use hub_raft::Committed;
use hub_store::watch::{CatchUp, WatchFilter};
use hub_store::EtcdError;
use prometheus::{IntCounter, IntGauge};
use prost::Message;
use tokio::sync::{broadcast, mpsc};

use crate::{Credentials, Error, EtcdServer};

/// The watch ID etcd uses in responses that belong to no watcher.
const INVALID_WATCH_ID: i64 = -1;

/// etcd's `watchBatchMaxRevs`: a catching-up watcher gets at most this many
/// revisions a response, so a long catch-up never becomes one response over a
/// client's receive limit (found by hub-chaos: a watch from revision 1 over
/// 99k revisions was one ~25 MB response, refused by a 4 MB client).
const CATCH_UP_MAX_REVS: usize = 1000;

/// How the watch streams are served.
#[derive(Debug, Clone, Copy)]
pub struct WatchOptions {
    /// `--experimental-watch-progress-notify-interval`.
    pub progress_notify_interval: Duration,
    /// The `cancel_reason` of a refused create: etcd's is its gRPC error as
    /// Go prints it, code included, which is the wire's to word.
    pub reason: fn(Error) -> String,
}

impl EtcdServer {
    /// Serves one client's watch stream: takes its requests from `requests`
    /// and sends the responses to `out` until the client goes away (`out`
    /// closed, or an error from `requests`). A client that only stops sending
    /// keeps its watchers, as in etcd.
    pub fn serve_watch<E: Send + 'static>(
        self: &Arc<Self>,
        credentials: Credentials,
        requests: impl Stream<Item = Result<WatchRequest, E>> + Unpin + Send + 'static,
        out: mpsc::Sender<WatchResponse>,
        options: WatchOptions,
    ) {
        let stream = WatchStream {
            server: self.clone(),
            options,
            credentials,
            out,
            watchers: BTreeMap::new(),
            next_id: 0,
            canceled_by_server: BTreeSet::new(),
            progress_pending: false,
            reported: 0,
        };
        let committed = self.subscribe();
        tokio::spawn(stream.run(requests, committed));
    }
}

#[derive(Debug)]
struct Watcher {
    id: i64,
    /// What it selects (`hub_store::watch`).
    filter: WatchFilter,
    /// The first revision this watcher has not seen yet.
    next_rev: i64,
    progress_notify: bool,
    fragment: bool,
    /// Whether anything was sent since the last progress tick.
    sent_since_tick: bool,
}

struct WatchStream {
    server: Arc<EtcdServer>,
    options: WatchOptions,
    /// Who opened the stream; each create is authorized as etcd does.
    credentials: Credentials,
    out: mpsc::Sender<WatchResponse>,
    watchers: BTreeMap<i64, Watcher>,
    next_id: i64,
    /// Watchers the server cancelled (their start revision was compacted): as
    /// in etcd, their IDs stay on the stream until the client cancels them,
    /// and that cancel is answered.
    canceled_by_server: BTreeSet<i64>,
    /// A progress request waits for an answer.
    progress_pending: bool,
    /// The newest revision the stream has reported: in an event, a progress
    /// response, or as a watcher's start revision minus one.
    reported: i64,
}

/// The stream's client went away; stop serving it.
struct Gone;

impl WatchStream {
    async fn run<E>(
        mut self,
        mut incoming: impl Stream<Item = Result<WatchRequest, E>> + Unpin,
        mut committed: broadcast::Receiver<Arc<Committed>>,
    ) {
        let period = self.options.progress_notify_interval;
        let mut progress = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        // As etcd, a client that closes its sending side keeps its watchers;
        // the stream ends when the client goes away.
        let mut client_sending = true;
        let out = self.out.clone();
        let mut counted = self.server.metrics.watch.watch_stream();
        loop {
            let step = tokio::select! {
                msg = incoming.next(), if client_sending => match msg {
                    Some(Ok(req)) => self.handle_request(req).await,
                    None => {
                        client_sending = false;
                        Ok(())
                    }
                    Some(Err(_)) => Err(Gone),
                },
                _ = out.closed() => Err(Gone),
                batch = committed.recv() => match batch {
                    Ok(batch) => self.deliver(&batch).await,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::debug!(missed = n, "watch stream fell behind; catching up from the store");
                        counted.catching_up(self.watchers.len());
                        self.catch_up_all().await
                    }
                    Err(broadcast::error::RecvError::Closed) => Err(Gone),
                },
                _ = progress.tick() => self.notify_progress().await,
            };
            let step = match step {
                Ok(()) => self.answer_progress().await,
                gone => gone,
            };
            counted.watchers(self.watchers.len());
            if step.is_err() {
                return;
            }
        }
    }

    async fn send(&self, resp: WatchResponse) -> Result<(), Gone> {
        self.out.send(resp).await.map_err(|_| Gone)
    }

    async fn handle_request(&mut self, req: WatchRequest) -> Result<(), Gone> {
        match req.request_union {
            Some(RequestUnion::CreateRequest(c)) => self.create(c).await,
            Some(RequestUnion::CancelRequest(c)) => {
                if self.watchers.remove(&c.watch_id).is_some() || self.canceled_by_server.remove(&c.watch_id) {
                    let header = self.server.header(0);
                    self.send(WatchResponse { header, watch_id: c.watch_id, canceled: true, ..Default::default() })
                        .await?;
                }
                Ok(())
            }
            Some(RequestUnion::ProgressRequest(_)) => {
                // Answered by `answer_progress` once the stream has caught up.
                self.progress_pending = true;
                Ok(())
            }
            None => Ok(()),
        }
    }

    async fn create(&mut self, c: WatchCreateRequest) -> Result<(), Gone> {
        let filters = |f: FilterType| c.filters.contains(&(f as i32));
        let filter =
            WatchFilter::new(&c.key, &c.range_end, filters(FilterType::Noput), filters(FilterType::Nodelete), c.prev_kv);
        let who = self.server.who(&self.credentials).await;
        let (current, denied) = self.server.read_state(|sm| {
            // Read permission on the whole watched range (etcd checked a
            // from-key watch as its first key alone).
            let denied = match who {
                Ok(who) => sm.authorize_read(&who, filter.key(), &c.range_end).err().map(Error::from),
                Err(e) => Some(e),
            };
            (sm.current_revision(), denied.map(self.options.reason))
        });
        let refuse = |reason: &str| WatchResponse {
            header: self.server.header(current),
            watch_id: INVALID_WATCH_ID,
            created: true,
            canceled: true,
            cancel_reason: reason.to_string(),
            ..Default::default()
        };
        // etcd refuses a negative start revision before anything else.
        if c.start_revision < 0 {
            return self.send(refuse(&EtcdError::Compacted.to_string())).await;
        }
        if let Some(reason) = denied {
            return self.send(refuse(&reason)).await;
        }
        if filter.is_empty() {
            return self.send(refuse("mvcc: watcher range is empty")).await;
        }
        let id = if c.watch_id == 0 {
            while self.watchers.contains_key(&self.next_id) {
                self.next_id += 1;
            }
            self.next_id += 1;
            self.next_id - 1
        } else if self.watchers.contains_key(&c.watch_id) {
            return self.send(refuse("mvcc: duplicate watch ID provided on the WatchStream")).await;
        } else {
            c.watch_id
        };
        let watcher = Watcher {
            id,
            filter,
            next_rev: if c.start_revision == 0 { current + 1 } else { c.start_revision },
            progress_notify: c.progress_notify,
            fragment: c.fragment,
            sent_since_tick: false,
        };
        self.send(WatchResponse { header: self.server.header(current), watch_id: id, created: true, ..Default::default() })
            .await?;
        self.reported = self.reported.max(watcher.next_rev - 1);
        self.watchers.insert(id, watcher);
        self.catch_up(id).await
    }

    /// Brings one watcher up to the store's current revision.
    async fn catch_up(&mut self, id: i64) -> Result<(), Gone> {
        let Some(w) = self.watchers.get_mut(&id) else { return Ok(()) };
        match self.server.read_state(|sm| sm.catch_up(&w.filter, w.next_rev)) {
            Ok(CatchUp::Synced) => Ok(()),
            Ok(CatchUp::Compacted { current, compact_revision }) => {
                self.watchers.remove(&id);
                self.canceled_by_server.insert(id);
                // etcd's watchable store sends this one with revision 0.
                let header = self.server.header(current).map(|h| ResponseHeader { revision: 0, ..h });
                self.send(WatchResponse { header, watch_id: id, compact_revision, canceled: true, ..Default::default() })
                    .await
            }
            Ok(CatchUp::Events { current, events }) => {
                w.next_rev = current + 1;
                for batch in by_revisions(events, CATCH_UP_MAX_REVS) {
                    self.send_events(id, current, batch).await?;
                }
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, "watch catch-up failed to read the store");
                self.watchers.remove(&id);
                let header = self.server.header(0);
                self.send(WatchResponse {
                    header,
                    watch_id: id,
                    canceled: true,
                    cancel_reason: e.to_string(),
                    ..Default::default()
                })
                .await
            }
        }
    }

    async fn catch_up_all(&mut self) -> Result<(), Gone> {
        let ids: Vec<i64> = self.watchers.keys().copied().collect();
        for id in ids {
            self.catch_up(id).await?;
        }
        Ok(())
    }

    /// Hands one applied command's events to every synced watcher that wants them.
    async fn deliver(&mut self, batch: &Committed) -> Result<(), Gone> {
        let mut out = Vec::new();
        for w in self.watchers.values_mut() {
            if batch.revision < w.next_rev {
                continue;
            }
            w.next_rev = batch.revision + 1;
            let events: Vec<Event> = batch.events.iter().filter(|e| w.filter.wants(e)).cloned().collect();
            if !events.is_empty() {
                out.push((w.id, w.filter.prev_kv, events));
            }
        }
        for (id, prev_kv, mut events) in out {
            if prev_kv {
                if let Err(e) = self.server.read_state(|sm| sm.attach_prev_kvs(&mut events)) {
                    tracing::error!(error = %e, "watch failed to read previous values");
                }
            }
            self.send_events(id, batch.revision, events).await?;
        }
        Ok(())
    }

    async fn send_events(&mut self, id: i64, revision: i64, events: Vec<Event>) -> Result<(), Gone> {
        if events.is_empty() {
            return Ok(());
        }
        let Some(w) = self.watchers.get_mut(&id) else { return Ok(()) };
        self.server.metrics.watch.events.inc_by(events.len() as u64);
        w.sent_since_tick = true;
        self.reported = self.reported.max(revision);
        let fragment = w.fragment;
        let header = self.server.header(revision);
        let limit = self.server.config.max_request_bytes;
        let whole = WatchResponse { header, watch_id: id, events, ..Default::default() };
        if !fragment || whole.encoded_len() <= limit {
            return self.send(whole).await;
        }
        // Split into responses under the limit; all but the last say `fragment`.
        let mut chunks: Vec<Vec<Event>> = vec![Vec::new()];
        let mut size = 0;
        for e in whole.events {
            let len = e.encoded_len();
            if size + len > limit && chunks.last().is_some_and(|c| !c.is_empty()) {
                chunks.push(Vec::new());
                size = 0;
            }
            size += len;
            if let Some(c) = chunks.last_mut() {
                c.push(e);
            }
        }
        let n = chunks.len();
        for (i, events) in chunks.into_iter().enumerate() {
            self.send(WatchResponse {
                header: whole.header,
                watch_id: id,
                events,
                fragment: i + 1 < n,
                ..Default::default()
            })
            .await?;
        }
        Ok(())
    }

    /// etcd's progress notification: an empty response carrying the current
    /// revision, to synced watchers that asked for it and got nothing lately.
    /// A watcher that starts after the current revision gets none (etcd#20229).
    async fn notify_progress(&mut self) -> Result<(), Gone> {
        let current = self.server.current_revision();
        let mut due = Vec::new();
        for w in self.watchers.values_mut() {
            if w.progress_notify && !w.sent_since_tick && w.next_rev == current + 1 {
                due.push(w.id);
            }
            w.sent_since_tick = false;
        }
        if !due.is_empty() {
            self.reported = self.reported.max(current);
        }
        for id in due {
            self.send(WatchResponse { header: self.server.header(current), watch_id: id, ..Default::default() }).await?;
        }
        Ok(())
    }

    /// Answers a pending progress request (watch ID -1, for every watcher of
    /// the stream) with the newest revision that every watcher has been given
    /// all its events up to, once that is no older than what the stream
    /// already reported; until then the request waits, as in etcd.
    async fn answer_progress(&mut self) -> Result<(), Gone> {
        if !self.progress_pending {
            return Ok(());
        }
        let current = self.server.current_revision();
        let revision = self.watchers.values().map(|w| w.next_rev - 1).fold(current, i64::min);
        if revision < self.reported && !self.watchers.is_empty() {
            return Ok(());
        }
        self.progress_pending = false;
        self.reported = self.reported.max(revision);
        let header = self.server.header(revision);
        self.send(WatchResponse { header, watch_id: INVALID_WATCH_ID, ..Default::default() }).await
    }
}

/// The watch streams' metrics (etcd's mvcc watch gauges), part of
/// [`crate::ServerMetrics`].
#[derive(Clone)]
pub(crate) struct WatchMetrics {
    streams: IntGauge,
    watchers: IntGauge,
    slow_watchers: IntGauge,
    events: IntCounter,
}

impl WatchMetrics {
    pub(crate) fn new() -> prometheus::Result<Self> {
        Ok(WatchMetrics {
            streams: IntGauge::new("etcd_debugging_mvcc_watch_stream_total", "Total number of watch streams.")?,
            watchers: IntGauge::new("etcd_debugging_mvcc_watcher_total", "Total number of watchers.")?,
            slow_watchers: IntGauge::new(
                "etcd_debugging_mvcc_slow_watcher_total",
                "Total number of unsynced slow watchers.",
            )?,
            events: IntCounter::new("etcd_debugging_mvcc_events_total", "Total number of events sent by this member.")?,
        })
    }

    pub(crate) fn register(&self, registry: &prometheus::Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.streams.clone()))?;
        registry.register(Box::new(self.watchers.clone()))?;
        registry.register(Box::new(self.slow_watchers.clone()))?;
        registry.register(Box::new(self.events.clone()))
    }

    /// Counts a watch stream and its watchers while it lives.
    fn watch_stream(&self) -> WatchStreamCount {
        self.streams.inc();
        WatchStreamCount {
            watchers: self.watchers.clone(),
            streams: self.streams.clone(),
            slow: self.slow_watchers.clone(),
            counted: 0,
            counted_slow: 0,
        }
    }
}

/// One watch stream in `etcd_debugging_mvcc_watch_stream_total`, and its
/// watchers in `etcd_debugging_mvcc_watcher_total` (and, while they catch up
/// from the store, in `etcd_debugging_mvcc_slow_watcher_total`), until dropped.
struct WatchStreamCount {
    watchers: IntGauge,
    streams: IntGauge,
    slow: IntGauge,
    counted: i64,
    counted_slow: i64,
}

impl WatchStreamCount {
    /// The stream now has `n` watchers, all in sync.
    fn watchers(&mut self, n: usize) {
        let n = n as i64;
        self.watchers.add(n - self.counted);
        self.counted = n;
        self.catching_up(0);
    }

    /// `n` watchers fell behind the commit feed and catch up from the store
    /// (etcd's unsynced slow watchers), until the next [`Self::watchers`].
    fn catching_up(&mut self, n: usize) {
        let n = n as i64;
        self.slow.add(n - self.counted_slow);
        self.counted_slow = n;
    }
}

impl Drop for WatchStreamCount {
    fn drop(&mut self) {
        self.watchers.sub(self.counted);
        self.slow.sub(self.counted_slow);
        self.streams.dec();
    }
}

/// Splits events (in revision order) into runs of at most `max` revisions,
/// never splitting one revision.
fn by_revisions(events: Vec<Event>, max: usize) -> Vec<Vec<Event>> {
    let mut batches: Vec<Vec<Event>> = Vec::new();
    let mut revs = 0;
    let mut last = None;
    for e in events {
        let rev = e.kv.as_ref().map_or(0, |kv| kv.mod_revision);
        if last != Some(rev) {
            last = Some(rev);
            revs += 1;
            if revs > max || batches.is_empty() {
                batches.push(Vec::new());
                revs = 1;
            }
        }
        if let Some(b) = batches.last_mut() {
            b.push(e);
        }
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;
    use hub_proto::mvccpb::KeyValue;

    fn ev(rev: i64) -> Event {
        Event { kv: Some(KeyValue { mod_revision: rev, ..Default::default() }), ..Default::default() }
    }

    #[test]
    fn catch_up_batches_hold_whole_revisions() {
        let events: Vec<Event> = [1, 1, 2, 3, 3, 3, 4].into_iter().map(ev).collect();
        let revs: Vec<Vec<i64>> = by_revisions(events, 2)
            .iter()
            .map(|b| b.iter().map(|e| e.kv.as_ref().map_or(0, |kv| kv.mod_revision)).collect())
            .collect();
        assert_eq!(revs, vec![vec![1, 1, 2], vec![3, 3, 3, 4]]);
        assert!(by_revisions(Vec::new(), 2).is_empty());
    }
}

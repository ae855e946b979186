//! The Election service (etcd's `v3election`): leader election per name.
//! A candidate's key holds its value under the name, bound to its lease; the
//! oldest key leads. Campaign waits until the candidate leads, Proclaim
//! changes the leader's value, Resign deletes its key, Leader reads the
//! current leader and Observe streams every leader value as it changes.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use hub_proto::etcdserverpb::{TxnRequest, TxnResponse};
use hub_proto::mvccpb::{event::EventType, KeyValue};
use hub_proto::range::prefix_end;
use hub_proto::v3electionpb::{
    election_server::Election, CampaignRequest, CampaignResponse, LeaderKey, LeaderRequest, LeaderResponse,
    ProclaimRequest, ProclaimResponse, ResignRequest, ResignResponse,
};
use hub_store::AuthInfo;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::concurrency::{
    create_revision_is, delete_op, get_first_created, get_key, get_op, participant_key, put_op, range_kvs,
    Client,
};
use crate::lock::Withdraw;
use crate::Context;

/// etcd's `v3election.ErrMissingLeaderKey`.
const MISSING_LEADER_KEY: &str = "\"leader\" field must be provided";
/// `concurrency.ErrElectionNotLeader`.
const NOT_LEADER: &str = "election: not leader";
/// `concurrency.ErrElectionNoLeader`.
const NO_LEADER: &str = "election: no leader";

pub struct ElectionService {
    client: Arc<Client>,
}

impl ElectionService {
    pub fn new(ctx: Context) -> Self {
        ElectionService { client: Arc::new(Client::new(ctx)) }
    }
}

fn prefix_of(name: &[u8]) -> Vec<u8> {
    [name, b"/"].concat()
}

/// The txn that deletes a leader key only if it is still the same key.
fn resign_txn(key: &[u8], rev: i64) -> TxnRequest {
    TxnRequest { compare: vec![create_revision_is(key, rev)], success: vec![delete_op(key)], failure: Vec::new() }
}

/// `Election.Proclaim`: a new value on the leader key if it is still ours.
async fn proclaim(client: &Client, who: &AuthInfo, leader: &LeaderKey, value: &[u8]) -> Result<TxnResponse, Status> {
    let resp = client
        .txn(who, TxnRequest {
            compare: vec![create_revision_is(&leader.key, leader.rev)],
            success: vec![put_op(&leader.key, value, leader.lease)],
            failure: Vec::new(),
        })
        .await?;
    if !resp.succeeded {
        return Err(Status::unknown(NOT_LEADER));
    }
    Ok(resp)
}

type ObserveStream = Pin<Box<dyn Stream<Item = Result<LeaderResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Election for ElectionService {
    async fn campaign(&self, req: Request<CampaignRequest>) -> Result<Response<CampaignResponse>, Status> {
        let who = self.client.ctx.caller(&req).await?;
        let r = req.into_inner();
        let lease = self.client.session_lease(&who, r.lease).await?;
        let prefix = prefix_of(&r.name);
        let key = participant_key(&prefix, lease);
        let resp = self
            .client
            .txn(&who, TxnRequest {
                compare: vec![create_revision_is(&key, 0)],
                success: vec![put_op(&key, &r.value, lease)],
                failure: vec![get_op(get_key(&key))],
            })
            .await?;
        let mut rev = resp.header.as_ref().map_or(0, |h| h.revision);
        let mut withdraw = Withdraw { client: self.client.clone(), who: who.clone(), txn: None };
        if !resp.succeeded {
            if let Some(kv) = range_kvs(&resp, 0).first() {
                rev = kv.create_revision;
                withdraw.txn = Some(resign_txn(&key, rev));
                if kv.value != r.value {
                    let leader = LeaderKey { name: r.name.clone(), key: key.clone(), rev, lease };
                    proclaim(&self.client, &who, &leader, &r.value).await?;
                }
            }
        }
        withdraw.txn = Some(resign_txn(&key, rev));
        self.client.wait_deletes(&who, &prefix, rev - 1).await?;
        withdraw.txn = None;
        Ok(Response::new(CampaignResponse {
            header: resp.header,
            leader: Some(LeaderKey { name: r.name, key, rev, lease }),
        }))
    }

    async fn proclaim(&self, req: Request<ProclaimRequest>) -> Result<Response<ProclaimResponse>, Status> {
        let who = self.client.ctx.caller(&req).await?;
        let r = req.into_inner();
        let leader = r.leader.ok_or_else(|| Status::unknown(MISSING_LEADER_KEY))?;
        let resp = proclaim(&self.client, &who, &leader, &r.value).await?;
        Ok(Response::new(ProclaimResponse { header: resp.header }))
    }

    async fn leader(&self, req: Request<LeaderRequest>) -> Result<Response<LeaderResponse>, Status> {
        let who = self.client.ctx.caller(&req).await?;
        let prefix = prefix_of(&req.into_inner().name);
        let resp = self.client.range(&who, get_first_created(&prefix)).await?;
        let kv = resp.kvs.into_iter().next().ok_or_else(|| Status::unknown(NO_LEADER))?;
        Ok(Response::new(LeaderResponse { header: resp.header, kv: Some(kv) }))
    }

    type ObserveStream = ObserveStream;

    async fn observe(&self, req: Request<LeaderRequest>) -> Result<Response<Self::ObserveStream>, Status> {
        let who = self.client.ctx.caller(&req).await?;
        let prefix = prefix_of(&req.into_inner().name);
        let (tx, rx) = mpsc::channel(16);
        let client = self.client.clone();
        tokio::spawn(async move {
            let done = tx.clone();
            tokio::select! {
                r = observe(&client, &who, &prefix, &tx) => if let Err(e) = r { let _ = tx.send(Err(e)).await; },
                _ = done.closed() => {}
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn resign(&self, req: Request<ResignRequest>) -> Result<Response<ResignResponse>, Status> {
        let who = self.client.ctx.caller(&req).await?;
        let leader = req.into_inner().leader.ok_or_else(|| Status::unknown(MISSING_LEADER_KEY))?;
        let resp = self.client.txn(&who, resign_txn(&leader.key, leader.rev)).await?;
        Ok(Response::new(ResignResponse { header: resp.header }))
    }
}

/// `Election.observe`: sends the leader's key-value, then each change of it,
/// until its key is deleted; then the next leader's, for ever. Returns
/// when the client has gone away.
async fn observe(
    client: &Client,
    who: &AuthInfo,
    prefix: &[u8],
    tx: &mpsc::Sender<Result<LeaderResponse, Status>>,
) -> Result<(), Status> {
    let end = prefix_end(prefix);
    'leaders: loop {
        // Subscribed before the read: every change after it comes through the feed.
        let mut feed = client.ctx.server().subscribe();
        let resp = client.range(who, get_first_created(prefix)).await?;
        let mut seen = resp.header.as_ref().map_or(0, |h| h.revision);
        let mut leader: Option<KeyValue> = resp.kvs.into_iter().next();
        if let Some(kv) = &leader {
            let msg = LeaderResponse { header: resp.header.clone(), kv: Some(kv.clone()) };
            if tx.send(Ok(msg)).await.is_err() {
                return Ok(());
            }
        }
        loop {
            let batch = match feed.recv().await {
                Ok(b) => b,
                Err(RecvError::Lagged(_)) => continue 'leaders,
                Err(RecvError::Closed) => return Err(Status::unavailable("etcdserver: server stopped")),
            };
            if batch.revision <= seen {
                continue;
            }
            seen = batch.revision;
            for ev in &batch.events {
                let Some(kv) = &ev.kv else { continue };
                let is_delete = ev.r#type == EventType::Delete as i32;
                let header = match &leader {
                    // No leader yet: the first key put under the prefix leads.
                    None if !is_delete && kv.key.as_slice() >= prefix && kv.key < end => {
                        let mut h = client.ctx.header(batch.revision);
                        if let Some(h) = h.as_mut() {
                            h.revision = kv.mod_revision;
                        }
                        h
                    }
                    Some(l) if l.key == kv.key => {
                        if is_delete {
                            continue 'leaders;
                        }
                        client.ctx.header(batch.revision)
                    }
                    _ => continue,
                };
                leader = Some(kv.clone());
                if tx.send(Ok(LeaderResponse { header, kv: Some(kv.clone()) })).await.is_err() {
                    return Ok(());
                }
            }
        }
    }
}

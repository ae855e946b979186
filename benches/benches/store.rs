//! The state machine alone: how fast `apply` takes puts and txns (each a durable
//! backend commit) and how fast ranges are served from the index and backend.

use std::time::Instant;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use hub_proto::etcdserverpb::{InternalRaftRequest, PutRequest, RangeRequest};
use hub_store::StateMachine;

fn put(i: u64) -> InternalRaftRequest {
    let req = PutRequest { key: format!("/registry/pods/ns/p{:06}", i % 10_000).into_bytes(), value: vec![b'v'; 256], ..Default::default() };
    InternalRaftRequest { put: Some(req), ..Default::default() }
}

fn bench_store(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sm = StateMachine::open(dir.path(), 2).expect("open");
    let mut index = 0u64;
    c.bench_function("apply_put_256B", |b| {
        b.iter(|| {
            index += 1;
            sm.apply(index, &put(index), Instant::now()).expect("apply")
        })
    });
    let range = RangeRequest { key: b"/registry/pods/".to_vec(), range_end: b"/registry/pods0".to_vec(), limit: 500, ..Default::default() };
    c.bench_function("range_500_of_10k", |b| {
        b.iter_batched(|| range.clone(), |r| sm.range(&r).expect("range"), BatchSize::SmallInput)
    });
}

criterion_group!(benches, bench_store);
criterion_main!(benches);

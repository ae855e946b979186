//! Disk faults on demand for the chaos suite (only with the `failpoints`
//! feature): SIGUSR1 makes the next WAL fsync fail, SIGUSR2 tears the next WAL
//! record. Either stops the WAL as a real I/O error would.

use std::sync::Arc;

use hub_raft::Node;
use tokio::signal::unix::{signal, SignalKind};

pub fn arm_disk_faults(node: Arc<Node>) {
    let (Ok(mut usr1), Ok(mut usr2)) = (signal(SignalKind::user_defined1()), signal(SignalKind::user_defined2())) else {
        tracing::warn!("chaos: cannot install the disk-fault signal handlers");
        return;
    };
    tokio::spawn(async move {
        loop {
            tokio::select! {
                Some(()) = usr1.recv() => {
                    tracing::warn!("chaos: the next WAL fsync will fail");
                    node.wal_failpoints().fail_next_sync();
                }
                Some(()) = usr2.recv() => {
                    tracing::warn!("chaos: the next WAL record will be torn");
                    node.wal_failpoints().tear_next_record();
                }
                else => return,
            }
        }
    });
}

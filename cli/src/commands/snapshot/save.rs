//! `snapshot save <file>`: one member's Maintenance.Snapshot stream into a file.
//!
//! As etcdctl (`clientv3/snapshot/v3_snapshot.go`, `Save`): exactly one
//! endpoint (a snapshot is one member's point-in-time state), the stream goes
//! to `<file>.part`, which is fsynced and then renamed to `<file>`, so `<file>`
//! is either absent or whole; the partial file is removed on failure; every
//! failure exits with ExitInterrupted (5). etcdctl only checks that the size
//! leaves room for the 32-byte sha256 trailer the server appends; hubctl also
//! checks the trailer against the bytes before it, so a snapshot damaged in
//! transit is refused here rather than at restore time.

use std::fs::{File, OpenOptions};
use std::io::{IsTerminal, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant as StdInstant};

use hub_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use hub_proto::etcdserverpb::SnapshotRequest;
use hub_store::snapshot::SHA256_LEN;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::zap::{self, text};
use super::{has_sha256_trailer, SaveArgs};
use crate::client::Connector;
use crate::commands::Ctx;
use crate::error::{status_text, CtlError, ExitCode};
use crate::gofmt;
use crate::output::json::Json;

pub async fn run(a: SaveArgs, ctx: &Ctx, out: &mut dyn Write) -> Result<(), CtlError> {
    let [path] = a.args.as_slice() else {
        return Err(CtlError::bad_args("snapshot save expects one argument"));
    };
    let connector = ctx.connector()?;
    let [endpoint] = connector.endpoints() else {
        return Err(interrupted(format!(
            "snapshot must be requested to one selected node, not multiple [{}]",
            connector.endpoints().join(" ")
        )));
    };
    // etcdctl's save has no timeout unless --command-timeout is given; then it
    // bounds the whole download. Without it, connecting gives up after
    // --dial-timeout (etcdctl would wait forever for an unreachable member).
    let deadline = ctx.opts.command_timeout_set.then(|| connector.command_deadline());
    let part = format!("{path}.part");
    let saved = save(&connector, endpoint, &part, path, deadline).await;
    if saved.is_err() {
        let _ = std::fs::remove_file(&part);
    }
    saved?;
    writeln!(out, "Snapshot saved at {path}")?;
    Ok(())
}

/// ExitInterrupted: etcdctl's exit code for every failure of `snapshot save`.
fn interrupted(message: impl Into<String>) -> CtlError {
    CtlError::new(ExitCode::Interrupted, message)
}

async fn save(
    connector: &Connector,
    endpoint: &str,
    part: &str,
    path: &str,
    deadline: Option<Instant>,
) -> Result<(), CtlError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(part)
        .map_err(|e| interrupted(format!("could not open {part} ({})", gofmt::path_error("open", part, &e))))?;
    zap::info("created temporary db file", vec![("path", text(part))]);

    let started = StdInstant::now();
    let download = download(connector, endpoint, &mut file, part, deadline);
    let size = match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline, download)
            .await
            .map_err(|_| interrupted(crate::error::DEADLINE_EXCEEDED))??,
        None => download.await?,
    };
    file.sync_all().map_err(|e| interrupted(gofmt::path_error("sync", part, &e)))?;
    drop(file);
    zap::info(
        "fetched snapshot",
        vec![
            ("endpoint", text(endpoint)),
            ("size", text(gofmt::humanize_bytes(size))),
            ("took", Json::Float(started.elapsed().as_secs_f64())),
        ],
    );

    let rename_failed =
        |why: String| interrupted(format!("could not rename {part} to {path} (rename {part} {path}: {why})"));
    // Go's os.Rename refuses to replace a directory with EEXIST (rename(2) says EISDIR).
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir()) {
        return Err(rename_failed("file exists".into()));
    }
    std::fs::rename(part, path).map_err(|e| rename_failed(gofmt::errno_text(&e)))?;
    // Make the rename itself durable (etcdctl does not; a crash could lose it).
    let parent = Path::new(path).parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if let Ok(dir) = File::open(parent) {
        let _ = dir.sync_all();
    }
    zap::info("saved", vec![("path", text(path))]);
    Ok(())
}

/// Streams the snapshot into `file`; returns its size once the trailer checks out.
async fn download(
    connector: &Connector,
    endpoint: &str,
    file: &mut File,
    part: &str,
    deadline: Option<Instant>,
) -> Result<u64, CtlError> {
    let connect_deadline = deadline.unwrap_or_else(|| connector.dial_deadline());
    let channel = connector
        .connect_to(endpoint, connect_deadline)
        .await
        .map_err(|e| CtlError { code: ExitCode::Interrupted, ..e })?;
    let mut client = MaintenanceClient::new(channel);
    let rpc_error = |status: tonic::Status| interrupted(status_text(&status));
    let mut stream = client.snapshot(tonic::Request::new(SnapshotRequest {})).await.map_err(rpc_error)?.into_inner();
    zap::info("opened snapshot stream; downloading", Vec::new());
    zap::info("fetching snapshot", vec![("endpoint", text(endpoint))]);

    let mut trailer = TrailerCheck::default();
    let mut progress = Progress::new();
    while let Some(message) = stream.message().await.map_err(rpc_error)? {
        file.write_all(&message.blob).map_err(|e| interrupted(gofmt::path_error("write", part, &e)))?;
        trailer.update(&message.blob);
        progress.update(trailer.len, message.remaining_bytes);
    }
    progress.finish(trailer.len);
    zap::info("completed snapshot read; closing", Vec::new());

    let size = trailer.len;
    if !has_sha256_trailer(size) {
        return Err(interrupted(format!("sha256 checksum not found [bytes: {size}]")));
    }
    if !trailer.matches() {
        return Err(interrupted(format!(
            "sha256 checksum mismatch: the snapshot received is corrupted [bytes: {size}]"
        )));
    }
    Ok(size)
}

/// The sha256 of everything received except the last 32 bytes, and those
/// bytes: at the end of the stream they must be the sha256 of the rest.
struct TrailerCheck {
    hasher: Sha256,
    tail: Vec<u8>,
    len: u64,
}

impl Default for TrailerCheck {
    fn default() -> Self {
        TrailerCheck { hasher: Sha256::new(), tail: Vec::with_capacity(2 * SHA256_LEN), len: 0 }
    }
}

impl TrailerCheck {
    fn update(&mut self, data: &[u8]) {
        self.len += data.len() as u64;
        if data.len() >= SHA256_LEN {
            // Whatever was held back is followed by at least 32 more bytes.
            self.hasher.update(&self.tail);
            self.tail.clear();
            let (body, tail) = data.split_at(data.len() - SHA256_LEN);
            self.hasher.update(body);
            self.tail.extend_from_slice(tail);
        } else {
            self.tail.extend_from_slice(data);
            let surplus = self.tail.len().saturating_sub(SHA256_LEN);
            self.hasher.update(&self.tail[..surplus]);
            self.tail.drain(..surplus);
        }
    }

    fn matches(&self) -> bool {
        self.tail.len() == SHA256_LEN && self.hasher.clone().finalize().as_slice() == self.tail.as_slice()
    }
}

/// One line on stderr, redrawn in place, while the snapshot comes in; only
/// when stderr is a terminal, so logs and pipes see none of it.
struct Progress {
    shown: bool,
    started: StdInstant,
    drawn: Option<StdInstant>,
}

const REDRAW_EVERY: Duration = Duration::from_millis(200);

impl Progress {
    fn new() -> Self {
        Progress { shown: std::io::stderr().is_terminal(), started: StdInstant::now(), drawn: None }
    }

    /// `remaining` is what the server still has to send of the database (etcd
    /// says so in every message), which makes a total and a percentage.
    fn update(&mut self, received: u64, remaining: u64) {
        let now = StdInstant::now();
        if !self.shown || self.drawn.is_some_and(|last| now.duration_since(last) < REDRAW_EVERY) {
            return;
        }
        let line = if remaining > 0 {
            let total = received + remaining;
            format!(
                "Receiving snapshot: {} of {} ({}%), {}/s",
                gofmt::humanize_bytes(received),
                gofmt::humanize_bytes(total),
                received * 100 / total,
                self.rate(received)
            )
        } else {
            format!("Receiving snapshot: {}, {}/s", gofmt::humanize_bytes(received), self.rate(received))
        };
        self.draw(&line);
        self.drawn = Some(now);
    }

    fn finish(&mut self, received: u64) {
        if self.shown {
            let line = format!("Received snapshot: {}, {}/s", gofmt::humanize_bytes(received), self.rate(received));
            self.draw(&line);
            let _ = writeln!(std::io::stderr());
            self.drawn = None;
        }
    }

    fn rate(&self, received: u64) -> String {
        let seconds = self.started.elapsed().as_secs_f64().max(1e-3);
        gofmt::humanize_bytes((received as f64 / seconds) as u64)
    }

    fn draw(&self, line: &str) {
        // \r and "erase line": the new text replaces the old, whatever its length.
        let _ = write!(std::io::stderr(), "\r\x1b[2K{line}");
    }
}

impl Drop for Progress {
    /// A download that failed midway leaves the line; end it so the error
    /// message starts on a line of its own.
    fn drop(&mut self) {
        if self.drawn.is_some() {
            let _ = writeln!(std::io::stderr());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream_of(db: &[u8], chunk: usize) -> TrailerCheck {
        let mut bytes = db.to_vec();
        bytes.extend_from_slice(&Sha256::digest(db));
        let mut check = TrailerCheck::default();
        for piece in bytes.chunks(chunk) {
            check.update(piece);
        }
        check
    }

    #[test]
    fn the_trailer_is_checked_whatever_the_message_sizes() {
        let db: Vec<u8> = (0..1024u32).map(|i| (i * 7) as u8).collect();
        for chunk in [1, 5, 31, 32, 33, 100, 512, 4096] {
            let check = stream_of(&db, chunk);
            assert_eq!(check.len, 1024 + 32);
            assert!(check.matches(), "chunk {chunk}");
        }
    }

    #[test]
    fn a_changed_byte_or_a_missing_trailer_fails() {
        let db = vec![9u8; 512];
        let mut bytes = db.clone();
        bytes.extend_from_slice(&Sha256::digest(&db));
        bytes[100] ^= 1;
        let mut check = TrailerCheck::default();
        check.update(&bytes);
        assert!(!check.matches());

        let mut short = TrailerCheck::default();
        short.update(&[1, 2, 3]);
        assert!(!short.matches());
    }
}

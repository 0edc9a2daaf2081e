//! The bridge's counters, and the JSON file they are written to.
//!
//! The file (default `/dev/shm/shmq-bridge.<queue>.<direction>.json`, next to the queues'
//! own shared-memory objects) is replaced atomically (write then rename) at most once a
//! second and when the bridge stops normally, so a reader such as `shmq stat` never sees a
//! half-written one. Its fields: `queue`, `direction` (`to-nats` or `from-nats`), `pid`,
//! `updated_unix_ms`, `forwarded`, `redelivered`, `duplicates`, `errors`, `connected`.

use std::cell::Cell;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Counters of one bridge process (only its one working thread updates them).
pub struct Stats {
    path: PathBuf,
    queue: String,
    direction: &'static str,
    /// Messages forwarded: released from shmq after JetStream's ack, or acked to JetStream
    /// after the shmq send.
    pub forwarded: Cell<u64>,
    /// to-nats: messages published again (a retry after a failed or timed-out publish, or a
    /// message the previous bridge process had published but not released). from-nats:
    /// messages JetStream delivered more than once.
    pub redelivered: Cell<u64>,
    /// to-nats: publishes JetStream answered as duplicates of a stored message (dropped by
    /// it). from-nats: redeliveries of messages this process had sent to the queue already
    /// (acked, not sent again).
    pub duplicates: Cell<u64>,
    /// Failures retried: publish/ack/fetch errors and timeouts, reconnects.
    pub errors: Cell<u64>,
    last: Cell<Option<Instant>>,
}

impl Stats {
    pub fn new(path: PathBuf, queue: &str, direction: &'static str) -> Stats {
        Stats {
            path,
            queue: queue.to_owned(),
            direction,
            forwarded: Cell::new(0),
            redelivered: Cell::new(0),
            duplicates: Cell::new(0),
            errors: Cell::new(0),
            last: Cell::new(None),
        }
    }

    pub fn add(c: &Cell<u64>, n: u64) {
        c.set(c.get() + n);
    }

    /// Writes the file if a second has passed since the last write; returns whether it wrote.
    pub fn maybe_write(&self, connected: bool) -> bool {
        if self.last.get().is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
            return false;
        }
        self.write(connected);
        true
    }

    /// Writes the file now. A failure to write is logged once per call and otherwise ignored:
    /// the counters are a view, not part of the delivery.
    pub fn write(&self, connected: bool) {
        self.last.set(Some(Instant::now()));
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64;
        let v = serde_json::json!({
            "queue": self.queue,
            "direction": self.direction,
            "pid": std::process::id(),
            "updated_unix_ms": now,
            "forwarded": self.forwarded.get(),
            "redelivered": self.redelivered.get(),
            "duplicates": self.duplicates.get(),
            "errors": self.errors.get(),
            "connected": connected,
        });
        let tmp = self.path.with_extension(format!("tmp.{}", std::process::id()));
        let r = std::fs::write(&tmp, format!("{v}\n")).and_then(|()| std::fs::rename(&tmp, &self.path));
        if let Err(e) = r {
            crate::log::warn(format_args!("cannot write the stats file {}: {e}", self.path.display()));
        }
    }

    /// One line for the log.
    pub fn summary(&self) -> String {
        format!(
            "forwarded {} redelivered {} duplicates {} errors {}",
            self.forwarded.get(),
            self.redelivered.get(),
            self.duplicates.get(),
            self.errors.get()
        )
    }
}

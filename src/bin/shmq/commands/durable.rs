//! The durable part of `shmq stat`: where a durable queue's log is, its policy, and where the
//! log stands (written, durable, the id ceiling, syncs).

use serde::Serialize;
use shmq::{Fsync, Retain, Snapshot};

use crate::args::{format_fsync, format_size};

/// `stat --json`'s `durable` object (`null` for a volatile queue). Positions are message ids
/// (byte positions in the queue's stream).
#[derive(Serialize)]
pub struct DurableJson {
    log_dir: String,
    /// "never", "always" or "interval".
    fsync: &'static str,
    /// With "interval" only.
    fsync_interval_ns: Option<u64>,
    max_log_bytes: u64,
    /// "acked" or "bytes".
    retain: &'static str,
    /// With "bytes" only.
    retain_bytes: Option<u64>,
    /// Bytes of stream per log segment file.
    segment_bytes: u64,
    /// Everything below is written to the log files.
    written: u64,
    /// Everything below is synced to disk.
    durable: u64,
    /// No id at or above it has been handed out.
    ceiling: u64,
    /// Where the ring started (a restored queue's messages below it are in the log only).
    base: u64,
    /// `fdatasync` calls on the log, by every process.
    syncs: u64,
    /// Journal writes to the log, by every process.
    writes: u64,
    /// A write or sync failed: the queue is read-only.
    failed: bool,
}

/// The durable part of `s`, if the queue is durable.
pub fn json(s: &Snapshot) -> Option<DurableJson> {
    let c = s.config.durable.as_ref()?;
    let d = s.durable?;
    let (fsync, fsync_interval_ns) = match c.fsync {
        Fsync::Never => ("never", None),
        Fsync::Always => ("always", None),
        Fsync::Interval(i) => ("interval", Some(u64::try_from(i.as_nanos()).unwrap_or(u64::MAX))),
    };
    let (retain, retain_bytes) = match c.retain {
        Retain::Acked => ("acked", None),
        Retain::Bytes(n) => ("bytes", Some(n)),
    };
    Some(DurableJson {
        log_dir: c.dir.display().to_string(),
        fsync,
        fsync_interval_ns,
        max_log_bytes: c.max_log_bytes,
        retain,
        retain_bytes,
        segment_bytes: c.seg_size,
        written: d.written,
        durable: d.durable,
        ceiling: d.ceiling,
        base: d.base,
        syncs: d.syncs,
        writes: d.writes,
        failed: d.failed,
    })
}

/// The text lines of `stat` for a durable queue; nothing for a volatile one.
pub fn print(s: &Snapshot) {
    let (Some(c), Some(d)) = (&s.config.durable, &s.durable) else { return };
    let retain = match c.retain {
        Retain::Acked => "acked".to_owned(),
        Retain::Bytes(n) => format_size(n),
    };
    println!(
        "durable      log in {}, fsync {}, max log {}, retain {}",
        c.dir.display(),
        format_fsync(c.fsync),
        format_size(c.max_log_bytes),
        retain
    );
    println!(
        "log          written {}, durable {}, ceiling {}, base {} (ids: byte positions)",
        d.written, d.durable, d.ceiling, d.base
    );
    println!(
        "journal      {} syncs, {} writes{}",
        d.syncs,
        d.writes,
        if d.failed { "; FAILED: a write or sync of the log failed, the queue is read-only" } else { "" }
    );
}

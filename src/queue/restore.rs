//! Creating a durable queue: a new log, or the queue restored from the log a previous
//! incarnation left (after a host restart, shared memory is gone but the directory is not).
//!
//! A restored queue's stream resumes at the id ceiling, rounded up to a log segment: every
//! id ever handed out is below the ceiling (producers never claim past it, and it is raised
//! only after the log's meta record holds the new value on disk), so none is handed out
//! twice. The recovered log ends at `end` (the rest of its segment stays unwritten, which
//! readers take as that segment's end), and the new ring starts at `base`, the start of a
//! fresh segment. Messages below `base` are in the log files only: the default
//! consumer reads them from there (its position is checkpointed in `<dir>/CURSORS` at each
//! sync), then goes on in the ring.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::options::{Durability, Options};
use crate::error::{Error, Result};
use crate::layout;
use crate::log::fs::{Fs, RealFs};
use crate::log::{Log, LogParams};
use crate::segment::{Config, DurableConfig, DurableInit, Segment, Spec};

use super::backlog::checkpoint;

/// Bytes of stream per log segment: 64 MiB, or the capacity if larger (a multiple of it
/// either way: both are powers of two).
pub(crate) fn seg_size_for(capacity: u64) -> u64 {
    capacity.max(64 << 20)
}

/// The log directory as recorded: absolute, within the header's room.
fn absolute(dir: &Path) -> Result<PathBuf> {
    if dir.as_os_str().is_empty() {
        return Err(Error::InvalidArgument("a durable queue needs a log directory".into()));
    }
    let dir = std::path::absolute(dir)
        .map_err(|e| Error::Io { context: format!("log directory {}", dir.display()), source: e })?;
    if dir.as_os_str().len() > layout::LOG_DIR_MAX || dir.to_str().is_none() {
        return Err(Error::InvalidArgument(format!(
            "log directory {} must be valid UTF-8 of at most {} bytes",
            dir.display(),
            layout::LOG_DIR_MAX
        )));
    }
    Ok(dir)
}

/// A random log identity.
fn new_identity(name: &str) -> [u8; 16] {
    use std::hash::{BuildHasher, Hasher};
    let mut id = [0u8; 16];
    for (i, chunk) in id.chunks_mut(8).enumerate() {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write(name.as_bytes());
        h.write_u64(crate::segment::now_unix_ns());
        h.write_usize(i);
        chunk.copy_from_slice(&h.finish().to_le_bytes());
    }
    id
}

/// Whether `dir` holds a log.
fn has_log(fs: &dyn Fs, dir: &Path) -> bool {
    Log::holds_log(fs, dir)
}

/// What the creator of a durable queue writes into its segment: a new log's, or the one
/// recovered from `dir`.
pub(crate) fn prepare(name: &str, options: &Options, d: &Durability) -> Result<DurableInit> {
    let dir = absolute(&d.dir)?;
    let fs: Arc<dyn Fs> = Arc::new(RealFs);
    let mut config = DurableConfig {
        dir: dir.clone(),
        fsync: d.fsync,
        max_log_bytes: d.max_log_bytes,
        retain: d.retain,
        seg_size: seg_size_for(options.capacity),
        identity: [0; 16],
    };
    if !has_log(&*fs, &dir) {
        let identity = new_identity(name);
        let params = LogParams {
            identity,
            seg_size: config.seg_size,
            wrap: options.capacity,
            mode: options.permissions & 0o660,
        };
        let log = Log::create(fs, &dir, params)?;
        log.set_ceiling(config.seg_size)?;
        config.identity = identity;
        return Ok(DurableInit { config, start: 0, ceiling: log.ceiling(), head: 0, restoring: false });
    }
    let (log, rec) = Log::recover(fs, &dir)?;
    if rec.wrap != options.capacity {
        return Err(Error::InvalidArgument(format!(
            "the log in {} belongs to a queue of capacity {}, not {}",
            dir.display(),
            rec.wrap,
            options.capacity
        )));
    }
    let seg = rec.seg_size;
    let start = rec.end.max(rec.ceiling).div_ceil(seg) * seg;
    log.set_ceiling(start + seg)?;
    log.bridge(rec.end, start)?;
    config.seg_size = seg;
    config.identity = rec.identity;
    let saved = checkpoint::read(&dir);
    let head = saved.as_ref().map_or(rec.start, |c| c.default.clamp(rec.start, start));
    let restoring = saved.is_some_and(|c| !c.subs.is_empty());
    Ok(DurableInit { config, start, ceiling: start + seg, head, restoring })
}

/// [`Queue::create`](super::Queue::create) of a durable queue.
pub(crate) fn create(name: &str, options: &Options, d: &Durability) -> Result<Config> {
    crate::segment::validate_name(name)?;
    let init = prepare(name, options, d)?;
    let spec = Spec {
        mode: options.mode,
        capacity: options.capacity,
        max_message: options.max_message,
        permissions: options.permissions,
        durable: Some(init),
    };
    let restored = spec.durable.as_ref().is_some_and(|d| d.start > 0);
    let config = Segment::create_spec(name, &spec)?;
    if restored {
        crate::failpoint::hit("restore-subscriptions");
        let r = restore_subscriptions(name, &config);
        // Done (or given up): retention may go on. Release: pairs with its Acquire load.
        if let Ok(seg) = Segment::open(name, crate::segment::Access::ReadWrite) {
            seg.header().durable.restoring_until.store(0, crate::sync::atomic::Ordering::Release);
        }
        r?;
    }
    Ok(config)
}

/// Creates again the named subscriptions a restored queue's checkpoint lists. Each resumes
/// where it stood: a position below the ring's start is spilled (its cursor detached), so its
/// members read the log from there, then go on in the ring. A subscription with explicit
/// acks gets back what it had in flight, to be delivered again with its counts, and the
/// spans its members had claimed but not handed out.
fn restore_subscriptions(name: &str, config: &Config) -> Result<()> {
    let Some(d) = &config.durable else { return Ok(()) };
    let Some(saved) = checkpoint::read(&d.dir) else { return Ok(()) };
    let seg = Segment::open(name, crate::segment::Access::ReadWrite)?;
    // Relaxed: fixed at creation.
    let base = seg.header().durable.base.load(crate::sync::atomic::Ordering::Relaxed);
    for sub in saved.subs {
        let mut opts = super::SubscriptionOptions::new().lag_limit((sub.lag != 0).then_some(sub.lag));
        if let Some(a) = &sub.acks {
            opts = opts
                .ack(super::Ack::Explicit)
                .ack_wait(std::time::Duration::from_nanos(a.ack_wait_ns))
                .max_in_flight(a.max_in_flight)
                .max_deliveries(a.max_deliveries);
        }
        if super::Subscription::create(name, &sub.name, opts).is_err() {
            continue;
        }
        let Some(i) = super::subscription::find(&seg, &sub.name) else { continue };
        let mut pos = sub.pos;
        if let Some(a) = &sub.acks {
            pos = restore_in_flight(&seg, i, a, base, pos)?;
        }
        if crate::ring::plausible(pos) && pos < base {
            detach_at(&seg, i, pos);
        }
    }
    Ok(())
}

/// Detaches subscription entry `i`'s cursor at `pos` (below the ring's start): its members
/// read the log from there.
fn detach_at(seg: &Segment, i: usize, pos: u64) {
    use crate::sync::atomic::Ordering;
    let word = seg.cursor(i);
    // Acquire: as any read of a cursor word.
    let w = word.load(Ordering::Acquire);
    // AcqRel: producers read the detach through the cursor. Failure: a member that already
    // joined and claimed (it started at the tail): leave it.
    let _ = word.compare_exchange(w, pos | crate::layout::CURSOR_DETACHED, Ordering::AcqRel, Ordering::Relaxed);
}

/// Writes back what subscription entry `i` had in flight (released, to be delivered again;
/// doomed ones to be moved), then the messages of the spans its members had claimed (never
/// handed out), read from the log. Returns where the subscription resumes: its saved
/// position, or lower if the table cannot take every message back (those are then
/// dispatched again from there: some may be delivered again).
fn restore_in_flight(seg: &Segment, i: usize, a: &checkpoint::SavedAcks, base: u64, pos: u64) -> Result<u64> {
    use crate::layout::{IF_DOOMED, IF_RELEASED, IN_FLIGHT_ENTRIES};
    use crate::ring::inflight;
    use crate::sync::atomic::Ordering;
    let Some(t) = seg.acks(i) else { return Ok(pos) };
    let Some(d) = &seg.config().durable else { return Ok(pos) };
    let cap = seg.config().capacity;
    let ok = |p: u64, e: u64| crate::ring::plausible(p) && p < e && e - p <= cap && e <= base;
    let mut k = 0usize;
    let mut put = |p: u64, e: u64, deliveries: u32, doomed: bool, reason: &[u8]| -> bool {
        if k == IN_FLIGHT_ENTRIES {
            return false;
        }
        let entry = &t.entries[k];
        k += 1;
        inflight::fill(
            entry,
            &inflight::Fields {
                pos: p,
                end: e,
                deliveries,
                deadline_ns: 0,
                first_unix_ns: crate::segment::now_unix_ns(),
                pid: 0,
            },
        );
        inflight::set_reason(entry, reason);
        // Relaxed: nobody uses the queue yet (we restore it under the log's exclusive
        // lock, before it is opened); its openers map it after we are done.
        let w = entry.owner.load(Ordering::Relaxed);
        entry.owner.store(inflight::next(w, 0, if doomed { IF_DOOMED } else { IF_RELEASED }), Ordering::Relaxed);
        true
    };
    for e in a.entries.iter().filter(|e| ok(e.pos, e.end)) {
        if !put(e.pos, e.end, e.deliveries, e.doomed, &e.reason) {
            break;
        }
    }
    let mut resume = pos;
    let log = super::journal::shared_log(&d.dir, d.identity)?;
    let mut b = super::backlog::Backlog::new(log, cap, d.seg_size);
    for &(p, e) in a.pending.iter().filter(|(p, e)| ok(*p, *e)) {
        let mut at = p;
        while let super::backlog::Step::Frame(f) = b.next(at, e)? {
            if !put(f.pos, f.next, 0, false, b"") {
                resume = resume.min(f.pos);
                break;
            }
            at = f.next;
        }
    }
    // Release: pairs with the members' Acquire load: they look through the table.
    t.meta.released.fetch_add(1, Ordering::Release);
    Ok(resume)
}

/// [`Queue::open_or_create`](super::Queue::open_or_create) of a durable queue: opens the
/// queue if it exists (it must use the same log directory), restores it from its log
/// otherwise.
pub(crate) fn open_or_create(name: &str, options: &Options, d: &Durability) -> Result<Config> {
    let dir = absolute(&d.dir)?;
    for _ in 0..100 {
        match Segment::open(name, crate::segment::Access::ReadOnly) {
            Ok(seg) => {
                let c = seg.config().clone();
                let same = c.mode == options.mode
                    && c.capacity == options.capacity
                    && c.max_message == options.max_message
                    && c.durable.as_ref().is_some_and(|x| x.dir == dir);
                if !same {
                    return Err(Error::InvalidArgument(format!(
                        "queue {name:?} exists as {} with capacity {}, max_message {} and log {:?}",
                        c.mode,
                        c.capacity,
                        c.max_message,
                        c.durable.as_ref().map(|x| x.dir.display().to_string())
                    )));
                }
                return Ok(c);
            }
            Err(crate::segment::OpenError::Other(Error::NotFound(_))) => {}
            Err(e) => return Err(e.into()),
        }
        match create(name, options, d) {
            Err(Error::Exists(_)) => {}
            // Another process is restoring it now (it holds the log's lock).
            Err(Error::Busy(_)) => std::thread::sleep(std::time::Duration::from_millis(10)),
            other => return other,
        }
    }
    Err(Error::Busy(format!("queue {name:?} keeps being removed and created again by other processes")))
}

//! The write-ahead log of durable queues: the file side.
//!
//! A durable queue keeps every message in a log on disk; the ring in shared memory is a
//! window on it. This module owns the files: where each byte of the stream goes, how a
//! write becomes durable, and what a cold start finds after a crash. It knows nothing of
//! shared memory: the queue hands it framed bytes at their positions and asks for syncs.
//!
//! # Layout
//! A message's id is its byte position in the queue's stream. The log is deterministic:
//! segment `k` (file `<dir>/<k as %016x>.seg`) holds positions `[k·S, (k+1)·S)` after a
//! 4096-byte header, position `p` at file offset `4096 + p − k·S`. `S` (`seg_size`) is a
//! multiple of the ring capacity `wrap`, and ring records never cross a multiple of `wrap`,
//! so frames never cross a segment. Two processes that write the same range write the same
//! bytes at the same offsets: writes are idempotent and need no coordination here.
//!
//! `<dir>/META` holds the identity, geometry and id ceiling in two alternating slots;
//! `<dir>/LOCK` is the OFD lock file: live participants hold it shared, a cold recovery
//! exclusive. `docs/LOG_FORMAT.md` gives every field.
//!
//! # Durability
//! * A segment is born complete: written to a temporary name, its header written, its
//!   blocks allocated (`fallocate`, so a full disk shows as [`Error::NoSpace`] there and
//!   not later), `fdatasync`ed, renamed into place with `RENAME_NOREPLACE` (a process that
//!   loses that race opens the winner's file) and the directory `fsync`ed. A name that
//!   exists is therefore a whole header on disk.
//! * [`Log::sync`] `fdatasync`s every segment of a range, the earlier ones first, and
//!   writes the caller's `mark` into the last one's mark slot before syncing it. The mark
//!   must be a position that was durable *before* this sync (the previous sync's end):
//!   a sync is not atomic, so a mark written with the data could reach the disk before
//!   the data. Everything below the highest mark found is known to have been durable.
//! * A failed `fdatasync` (or write) makes the `Log` fail for good: every later write and
//!   sync returns the same [`Error::Log`] and nothing is retried, because after a failed
//!   `fdatasync` Linux may have dropped the dirty pages and a retry would report success
//!   for data that is gone.
//!
//! # Recovery
//! [`Log::recover`] takes the lock exclusive, checks every header, finds the highest mark
//! and walks the frames from the oldest segment. At the first position that is not a valid
//! frame (or a missing segment):
//! * below the mark it is damage to data that was durable: [`Error::Corrupt`] naming the
//!   file and offset, and nothing is changed;
//! * otherwise it is the end of the log: the rest of that segment is zeroed, later segments
//!   are removed (both synced), and the valid-looking frames found beyond the cut are
//!   counted in [`Recovered::dropped`].
//!
//! # Trust
//! Log files are read with `pread` into private buffers and every frame is validated
//! (exact position, sizes within the segment and the wrap, crc32c) before use; they are
//! never mapped. `attach` and `recover` refuse a directory or file owned by another user,
//! or writable by group or others beyond the log's `mode` ([`Error::Permission`]).

pub mod format;
pub mod fs;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::{Error, Result};
use format::{Decoded, HEADER_LEN, HeaderError, Invalid, MARK_SLOTS, Mark, Meta, SegmentHeader};
use fs::{Fs, FsFile, LockKind};

/// Name of the META file in a log directory.
pub const META_FILE: &str = "META";
/// Name of the lock file in a log directory.
pub const LOCK_FILE: &str = "LOCK";

/// How to make a new log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogParams {
    /// The queue's identity: a log of another queue is refused.
    pub identity: [u8; 16],
    /// Positions per segment: a multiple of `wrap`.
    pub seg_size: u64,
    /// The ring capacity: a power of two of at least 8.
    pub wrap: u64,
    /// Permission bits of the files: `0o600` (the default) or with group read (`0o640`) or
    /// group read-write (`0o660`). The directory gets the same plus search bits.
    pub mode: u32,
}

impl LogParams {
    /// Parameters with the default mode `0o600`.
    pub fn new(identity: [u8; 16], seg_size: u64, wrap: u64) -> LogParams {
        LogParams { identity, seg_size, wrap, mode: 0o600 }
    }
}

/// What a cold start found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recovered {
    /// The queue identity.
    pub identity: [u8; 16],
    /// Positions per segment.
    pub seg_size: u64,
    /// The ring capacity.
    pub wrap: u64,
    /// Oldest retained position: the first position of the oldest segment (0 for a log
    /// without segments).
    pub start: u64,
    /// The position just past the last valid frame: writing resumes here.
    pub end: u64,
    /// The highest mark found: everything below it had been durable.
    pub synced_through: u64,
    /// Valid-looking message frames found beyond the cut (reported, not kept).
    pub dropped: u64,
    /// The id ceiling from META.
    pub ceiling: u64,
    /// Whether every byte after `end` was zero (nothing to cut). Always true after
    /// [`Log::recover`] returns; [`Log::inspect`] reports what it found.
    pub tail_clean: bool,
    /// Message frames in `[start, end)`.
    pub messages: u64,
}

/// A message read back from the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Its id: the stream position of its frame.
    pub id: u64,
    /// Producer timestamp, ns since the Unix epoch.
    pub ts: u64,
    /// The user payload.
    pub payload: Vec<u8>,
    /// Bytes the frame occupies in the stream.
    pub size: u64,
}

/// Sizes of a log on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogStats {
    /// Bytes of all segment files.
    pub bytes: u64,
    /// Number of segment files.
    pub segments: u64,
    /// First position of the oldest segment, if any.
    pub oldest: Option<u64>,
}

/// A log directory opened by one process. `Send + Sync`: share it between threads; every
/// process opens its own.
#[derive(Debug)]
pub struct Log {
    fs: Arc<dyn Fs>,
    dir: PathBuf,
    identity: [u8; 16],
    seg_size: u64,
    wrap: u64,
    mode: u32,
    /// Holds the OFD lock on LOCK for as long as the `Log` lives.
    lock_file: Arc<dyn FsFile>,
    meta_file: Arc<dyn FsFile>,
    /// The last META this process read or wrote; the mutex also serializes META writes.
    meta: Mutex<Meta>,
    /// The highest ceiling this process has seen on disk after its own `fdatasync` of META
    /// (0: none yet). Written and read under `meta`'s lock.
    synced_ceiling: AtomicU64,
    /// Open segments by index.
    segs: Mutex<HashMap<u64, Arc<dyn FsFile>>>,
    /// Serializes segment creation (lookups go on meanwhile).
    creating: Mutex<()>,
    /// Serializes this process's mark writes.
    marking: Mutex<()>,
    /// Set by the first failed write or sync: the text of every later `Error::Log`.
    failed: Mutex<Option<String>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Whether an OS error means the disk, quota or file-size limit is full.
fn is_space(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT) | Some(libc::EFBIG))
}

/// Maps an OS error from `what` outside the write path.
fn os_err(e: io::Error, what: String) -> Error {
    if is_space(&e) {
        return Error::NoSpace;
    }
    match e.raw_os_error() {
        Some(libc::ENOENT) => Error::NotFound(what),
        Some(libc::EEXIST) => Error::Exists(what),
        Some(libc::EACCES) | Some(libc::EPERM) => Error::Permission(what),
        _ => Error::Io { context: what, source: e },
    }
}

/// Permission bits of the directory for files of `mode`.
fn dir_mode(mode: u32) -> u32 {
    let group = mode & 0o060;
    0o700 | group | if group != 0 { 0o010 } else { 0 }
}

/// How many times [`Log::set_ceiling`] writes before it gives up: each failure means another
/// process wrote the same slot in between, which takes a rare race every time.
const SET_CEILING_TRIES: u32 = 1000;

/// The name of the retired-floor record for `floor`.
fn retired_name(floor: u64) -> String {
    format!("RETIRED.{floor:016x}")
}

/// The floor a retired-floor record's name gives.
fn parse_retired_name(name: &str) -> Option<u64> {
    let hex = name.strip_prefix("RETIRED.")?;
    if hex.len() != 16 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// The segment index of a file name `%016x.seg`.
fn parse_segment_name(name: &str) -> Option<u64> {
    let hex = name.strip_suffix(".seg")?;
    if hex.len() != 16 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

fn now_ns() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// One step of a walk over the frames.
enum Step {
    Message {
        pos: u64,
        ts: u64,
        size: u64,
        payload: Option<Vec<u8>>,
    },
    Skip,
    /// The segment holding `pos` does not exist.
    Missing {
        pos: u64,
    },
    /// No valid frame at `pos`.
    Invalid {
        pos: u64,
        what: String,
    },
}

/// A buffered reader of frames, position by position.
struct Cursor<'a> {
    log: &'a Log,
    pos: u64,
    buf: Vec<u8>,
    /// Stream position of `buf[0]`, and how many bytes of `buf` are valid.
    buf_pos: u64,
    buf_len: usize,
    /// The stream position up to which the kernel was asked to read ahead.
    advised: u64,
}

const READ_CHUNK: usize = 1 << 20;
/// How far ahead of its reads a cursor that has met the disk asks the kernel to read in the
/// background.
const READ_AHEAD: u64 = 2 * READ_CHUNK as u64;

impl<'a> Cursor<'a> {
    fn new(log: &'a Log, pos: u64) -> Cursor<'a> {
        Cursor { log, pos, buf: Vec::new(), buf_pos: 0, buf_len: 0, advised: 0 }
    }

    /// Makes the buffer hold `[pos, pos + want)` (clipped to the segment). `Ok(false)` if
    /// the segment is missing.
    fn fill(&mut self, pos: u64, want: u64) -> Result<bool> {
        let log = self.log;
        let seg_end = (pos / log.seg_size + 1) * log.seg_size;
        let want = want.min(seg_end - pos);
        if pos >= self.buf_pos && pos + want <= self.buf_pos + self.buf_len as u64 {
            return Ok(true);
        }
        let Some(f) = log.segment(pos / log.seg_size, false)? else { return Ok(false) };
        // Keep the bytes from `pos` already read and read on from where the last read
        // ended: sequential, non-overlapping reads keep the kernel's readahead going.
        let keep = if pos >= self.buf_pos && pos < self.buf_pos + self.buf_len as u64 {
            let from = (pos - self.buf_pos) as usize;
            self.buf.copy_within(from..self.buf_len, 0);
            self.buf_len - from
        } else {
            0
        };
        let n = (want.max(READ_CHUNK as u64)).min(seg_end - pos) as usize;
        if self.buf.len() < n {
            self.buf.resize(n, 0);
        }
        let at = log.file_off(pos + keep as u64);
        let cached = f.pread_cached(at, &mut self.buf[keep..n]);
        // Reading from disk: have the kernel read the next chunks while this one is checked,
        // and once this scan has met the disk, keep that window ahead of it at every chunk,
        // cached or not. The kernel's own readahead (even 8 MiB of it, or
        // `POSIX_FADV_SEQUENTIAL`) left the disk idle while the crc32c of each frame was
        // computed: a cold 1 GiB scan took 1.0-1.3 s. Advice only when a chunk missed the
        // cache left it idle again for the chunks the advice had brought in: 1.34-1.57 s
        // against 0.53-0.73 s for `cat` of the same files. Kept ahead, 0.66-0.85 s against
        // 0.52-0.56 s (`examples/log_scan.rs`, five runs, December 2026). The price: pages read in this
        // way are cached as small folios, and a later scan of them from the cache takes
        // longer (0.20 s instead of 0.13 s, measured when the advice was first added). A scan
        // that never misses (a log read soon after it was written, by a spilled reader, say)
        // gives no advice.
        let missed = keep + cached < n;
        if missed || self.advised != 0 {
            let next = pos + n as u64;
            let (from, to) = (next.max(self.advised), (next + READ_AHEAD).min(seg_end));
            if from < to {
                f.will_need(log.file_off(from), to - from);
                self.advised = to;
            }
        }
        let got = if !missed {
            cached
        } else {
            let rest = f
                .pread(at + cached as u64, &mut self.buf[keep + cached..n])
                .map_err(|e| os_err(e, format!("read {}", log.seg_path(pos / log.seg_size).display())))?;
            cached + rest
        };
        self.buf_pos = pos;
        self.buf_len = keep + got;
        Ok(true)
    }

    fn step(&mut self, want_payload: bool) -> Result<Step> {
        let log = self.log;
        let pos = self.pos;
        let seg_end = (pos / log.seg_size + 1) * log.seg_size;
        let mut want = 64u64;
        loop {
            if !self.fill(pos, want)? {
                return Ok(Step::Missing { pos });
            }
            let off = (pos - self.buf_pos) as usize;
            let avail = &self.buf[off..self.buf_len];
            match format::decode(avail, pos, log.wrap, seg_end) {
                Ok(d) => {
                    let next = d.next(pos);
                    self.pos = next;
                    return Ok(match d {
                        Decoded::Message { ts, payload, size } => {
                            Step::Message { pos, ts, size, payload: want_payload.then(|| payload.to_vec()) }
                        }
                        _ => Step::Skip,
                    });
                }
                Err(Invalid::Short(n)) => {
                    if (avail.len() as u64) < want.min(seg_end - pos) || n <= avail.len() as u64 {
                        // The file ends before the frame does.
                        return Ok(Step::Invalid { pos, what: "the file ends inside the frame".into() });
                    }
                    want = n;
                }
                Err(Invalid::Bad(what)) => return Ok(Step::Invalid { pos, what }),
            }
        }
    }
}

/// The iterator of [`Log::frames`].
pub struct Frames<'a> {
    cur: Cursor<'a>,
    to: u64,
    done: bool,
}

impl Iterator for Frames<'_> {
    type Item = Result<Frame>;

    fn next(&mut self) -> Option<Result<Frame>> {
        while !self.done && self.cur.pos < self.to {
            match self.cur.step(true) {
                Ok(Step::Message { pos, ts, size, payload }) => {
                    return Some(Ok(Frame { id: pos, ts, payload: payload.unwrap_or_default(), size }));
                }
                Ok(Step::Skip) => {}
                Ok(Step::Missing { pos }) => {
                    self.done = true;
                    let log = self.cur.log;
                    return Some(Err(Error::Corrupt(format!(
                        "{}: missing (position {pos} was expected there)",
                        log.seg_path(pos / log.seg_size).display()
                    ))));
                }
                Ok(Step::Invalid { pos, what }) => {
                    self.done = true;
                    return Some(Err(self.cur.log.corrupt_at(pos, &what)));
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        None
    }
}

/// What [`Log::scan`] found.
struct Scan {
    messages: u64,
    start: u64,
    end: u64,
    mark: u64,
    dropped: u64,
    tail_clean: bool,
    /// Existing segments, ascending, but for those below the retired floor.
    segs: Vec<u64>,
    /// Segments below the retired floor: made again by a writer that came late (before
    /// this version checked the floor, or killed between making one and checking again).
    /// Not part of the log.
    junk: Vec<u64>,
}

impl Log {
    // -----------------------------------------------------------------------------------
    // Opening

    /// Makes a new log in `dir`, which must not exist: the directory (`0700`, or with the
    /// group bits of `p.mode`), LOCK and META (id ceiling 0), all synced. The returned
    /// `Log` holds the lock shared.
    pub fn create(fs: Arc<dyn Fs>, dir: &Path, p: LogParams) -> Result<Log> {
        if !p.wrap.is_power_of_two() || p.wrap < 8 {
            return Err(Error::InvalidArgument(format!("log wrap {} is not a power of two >= 8", p.wrap)));
        }
        if p.seg_size == 0 || p.seg_size % p.wrap != 0 || p.seg_size > u64::MAX / 2 {
            return Err(Error::InvalidArgument(format!(
                "log segment size {} is not a positive multiple of wrap {}",
                p.seg_size, p.wrap
            )));
        }
        if p.mode & 0o600 != 0o600 || p.mode & !0o660 != 0 {
            return Err(Error::InvalidArgument(format!(
                "log mode {:o} must include 600 and allow at most 660",
                p.mode
            )));
        }
        let shown = dir.display().to_string();
        let lock_path = dir.join(LOCK_FILE);
        let meta_path = dir.join(META_FILE);
        let lock_file = match fs.mkdir(dir, dir_mode(p.mode)) {
            Ok(()) => {
                if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                    fs.fsync_dir(parent).map_err(|e| os_err(e, format!("fsync {}", parent.display())))?;
                }
                let lock_file =
                    fs.create(&lock_path, p.mode).map_err(|e| os_err(e, format!("create {}", lock_path.display())))?;
                // Exclusive while META is not there yet: an attach in between gets Busy.
                if !lock_file
                    .lock(LockKind::Exclusive)
                    .map_err(|e| os_err(e, format!("lock {}", lock_path.display())))?
                {
                    return Err(Error::Busy(format!("log {shown} is locked by another process")));
                }
                lock_file
            }
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Log::adopt_unfinished(&*fs, dir, &p)?,
            Err(e) => return Err(os_err(e, format!("log directory {shown}"))),
        };
        let meta_file =
            fs.create(&meta_path, p.mode).map_err(|e| os_err(e, format!("create {}", meta_path.display())))?;
        let meta = Meta {
            version: format::VERSION,
            mode: p.mode,
            seq: 1,
            identity: p.identity,
            ceiling: 0,
            seg_size: p.seg_size,
            wrap: p.wrap,
        };
        let slot = Log::meta_slot_off(meta.seq);
        meta_file.pwrite(slot, &meta.encode()).map_err(|e| os_err(e, format!("write {}", meta_path.display())))?;
        meta_file
            .fallocate(2 * format::META_SLOT)
            .map_err(|e| os_err(e, format!("allocate {}", meta_path.display())))?;
        meta_file.fdatasync().map_err(|e| Error::Log(format!("fdatasync {}: {e}", meta_path.display())))?;
        fs.fsync_dir(dir).map_err(|e| Error::Log(format!("fsync {shown}: {e}")))?;
        lock_file.lock(LockKind::Shared).map_err(|e| os_err(e, format!("lock {}", lock_path.display())))?;
        Ok(Log::assemble(fs, dir, meta, lock_file, meta_file))
    }

    /// Whether `dir` holds a log, finished or damaged: a META with a valid record, or any
    /// segment. A directory a creator killed part-way left (nothing, LOCK, or a META not
    /// written yet) holds none: [`Log::create`] takes it over.
    pub fn holds_log(fs: &dyn Fs, dir: &Path) -> bool {
        let meta_path = dir.join(META_FILE);
        if fs.open(&meta_path).is_ok_and(|f| Log::read_meta(&*f, &meta_path).is_ok()) {
            return true;
        }
        match fs.list_dir(dir) {
            Ok(names) => names.iter().any(|n| parse_segment_name(n).is_some()),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => false,
            // Unreadable: not ours to take over; opening it says why.
            Err(_) => true,
        }
    }

    /// [`Log::create`] in a directory that exists: one a creator killed part-way left (it
    /// makes the directory, then LOCK, then META, synced last), or an empty one made for the
    /// log. Taken if it is ours, writable by no one beyond `p.mode`, and holds nothing but
    /// LOCK and an unfinished META; returns LOCK, held exclusive, with any unfinished META
    /// removed. A directory holding a log (a valid META, or any segment) is
    /// [`Error::Exists`]: a creator may have finished meanwhile, so the caller should open
    /// it instead. [`Error::Busy`] while another process holds LOCK (a creator at work).
    fn adopt_unfinished(fs: &dyn Fs, dir: &Path, p: &LogParams) -> Result<Arc<dyn FsFile>> {
        let shown = dir.display().to_string();
        let st = fs.stat(dir).map_err(|e| os_err(e, format!("log directory {shown}")))?;
        if !st.is_dir {
            return Err(Error::InvalidArgument(format!("{shown} is not a directory")));
        }
        let euid = rustix::process::geteuid().as_raw();
        if st.uid != euid {
            return Err(Error::Permission(format!(
                "log directory {shown} is owned by uid {}, not by uid {euid}",
                st.uid
            )));
        }
        if st.mode & 0o022 & !(p.mode & 0o020) != 0 {
            return Err(Error::Permission(format!("log directory {shown} is writable by others (mode {:o})", st.mode)));
        }
        let names = fs.list_dir(dir).map_err(|e| os_err(e, format!("list {shown}")))?;
        if let Some(other) = names.iter().find(|n| *n != LOCK_FILE && *n != META_FILE) {
            return Err(Error::Exists(format!("log directory {shown} is not empty (it holds {other})")));
        }
        let lock_path = dir.join(LOCK_FILE);
        let lock_file = match fs.open(&lock_path) {
            Ok(f) => f,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                fs.create(&lock_path, p.mode).map_err(|e| os_err(e, format!("create {}", lock_path.display())))?
            }
            Err(e) => return Err(os_err(e, format!("open {}", lock_path.display()))),
        };
        if !lock_file.lock(LockKind::Exclusive).map_err(|e| os_err(e, format!("lock {}", lock_path.display())))? {
            return Err(Error::Busy(format!("log {shown} is locked by another process")));
        }
        // Alone now: a META is either a finished log's (its creator went on, or finished
        // after we looked) or one its creator did not finish.
        let meta_path = dir.join(META_FILE);
        if let Ok(f) = fs.open(&meta_path) {
            let finished = Log::read_meta(&*f, &meta_path).is_ok();
            if finished {
                return Err(Error::Exists(format!("log directory {shown} holds a log")));
            }
            fs.unlink(&meta_path).map_err(|e| os_err(e, format!("unlink {}", meta_path.display())))?;
        }
        Ok(lock_file)
    }

    /// Opens the log of a live queue: takes the lock shared ([`Error::Busy`] while a
    /// recovery holds it), checks ownership and permissions and that the log belongs to the
    /// queue `identity` ([`Error::Incompatible`] otherwise). Scans nothing.
    pub fn attach(fs: Arc<dyn Fs>, dir: &Path, identity: [u8; 16]) -> Result<Log> {
        let log = Log::open_locked(fs, dir, LockKind::Shared)?;
        if log.identity != identity {
            return Err(Error::Incompatible(format!("log {} belongs to another queue", dir.display())));
        }
        Ok(log)
    }

    /// Cold start: takes the lock exclusive ([`Error::Busy`] if any process has the log
    /// open), removes leftover temporary files, checks every segment header, finds the mark
    /// and the end, cuts a torn tail (synced), then downgrades the lock to shared and
    /// returns the log with what it found. Damage below the mark is [`Error::Corrupt`] and
    /// changes nothing.
    pub fn recover(fs: Arc<dyn Fs>, dir: &Path) -> Result<(Log, Recovered)> {
        let log = Log::open_locked(fs, dir, LockKind::Exclusive)?;
        log.remove_temporaries()?;
        let scan = log.scan(&mut |_, _| {})?;
        log.remove_junk(&scan)?;
        if !scan.tail_clean {
            log.cut(&scan)?;
        }
        let ok = log.lock_file.lock(LockKind::Shared).map_err(|e| os_err(e, format!("lock {}", dir.display())))?;
        debug_assert!(ok, "converting our own exclusive lock to shared cannot conflict");
        let rec = log.recovered(&scan, true);
        Ok((log, rec))
    }

    /// Reads a log without changing it (for `shmq log verify` and `dump`): takes the lock
    /// shared, checks like [`Log::recover`] and reports what a recovery would find
    /// (`tail_clean == false`: it would cut). Damage below the mark is [`Error::Corrupt`].
    /// On a live log the tail may be in flight.
    pub fn inspect(fs: Arc<dyn Fs>, dir: &Path) -> Result<(Log, Recovered)> {
        Log::inspect_with_progress(fs, dir, &mut |_, _| {})
    }

    /// [`Log::inspect`], calling `progress(done, total)` (stream bytes walked, bytes in the
    /// segments) now and then.
    pub fn inspect_with_progress(
        fs: Arc<dyn Fs>,
        dir: &Path,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<(Log, Recovered)> {
        let log = Log::open_locked(fs, dir, LockKind::Shared)?;
        let scan = log.scan(progress)?;
        let rec = log.recovered(&scan, false);
        Ok((log, rec))
    }

    /// Opens a log to read it, whatever queue it belongs to: checks ownership, permissions
    /// and META, takes the lock shared. Scans nothing (for `shmq log dump`).
    pub fn open_read(fs: Arc<dyn Fs>, dir: &Path) -> Result<Log> {
        Log::open_locked(fs, dir, LockKind::Shared)
    }

    fn recovered(&self, s: &Scan, after_cut: bool) -> Recovered {
        Recovered {
            identity: self.identity,
            seg_size: self.seg_size,
            wrap: self.wrap,
            start: s.start,
            end: s.end,
            synced_through: s.mark,
            dropped: s.dropped,
            ceiling: self.ceiling(),
            tail_clean: after_cut || s.tail_clean,
            messages: s.messages,
        }
    }

    fn assemble(
        fs: Arc<dyn Fs>,
        dir: &Path,
        meta: Meta,
        lock_file: Arc<dyn FsFile>,
        meta_file: Arc<dyn FsFile>,
    ) -> Log {
        Log {
            fs,
            dir: dir.to_path_buf(),
            identity: meta.identity,
            seg_size: meta.seg_size,
            wrap: meta.wrap,
            mode: meta.mode,
            lock_file,
            meta_file,
            meta: Mutex::new(meta),
            synced_ceiling: AtomicU64::new(0),
            segs: Mutex::new(HashMap::new()),
            creating: Mutex::new(()),
            marking: Mutex::new(()),
            failed: Mutex::new(None),
        }
    }

    /// Checks owner and permissions, takes the lock, reads META.
    fn open_locked(fs: Arc<dyn Fs>, dir: &Path, kind: LockKind) -> Result<Log> {
        let shown = dir.display().to_string();
        let euid = rustix::process::geteuid().as_raw();
        let st = fs.stat(dir).map_err(|e| os_err(e, format!("log directory {shown}")))?;
        if !st.is_dir {
            return Err(Error::InvalidArgument(format!("{shown} is not a directory")));
        }
        let owned = |what: &str, m: &fs::FileMeta, allowed: u32| -> Result<()> {
            if m.uid != euid {
                return Err(Error::Permission(format!("{what} is owned by uid {}, not by uid {euid}", m.uid)));
            }
            let extra = m.mode & 0o022 & !allowed;
            if extra != 0 {
                return Err(Error::Permission(format!(
                    "{what} is writable by {} (mode {:o})",
                    if extra & 0o002 != 0 { "others" } else { "its group" },
                    m.mode
                )));
            }
            Ok(())
        };
        // Before META is trusted: nobody but the owner may write the directory or META.
        owned(&shown, &st, 0o020)?;
        let meta_path = dir.join(META_FILE);
        let mst = fs.stat(&meta_path).map_err(|e| os_err(e, meta_path.display().to_string()))?;
        owned(&meta_path.display().to_string(), &mst, 0o020)?;
        let lock_path = dir.join(LOCK_FILE);
        let lock_file = match fs.open(&lock_path) {
            Ok(f) => f,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                // As META's mode (checked above: at most group-writable).
                fs.create(&lock_path, 0o600 | (mst.mode & 0o060))
                    .map_err(|e| os_err(e, format!("create {}", lock_path.display())))?
            }
            Err(e) => return Err(os_err(e, format!("open {}", lock_path.display()))),
        };
        let got = lock_file.lock(kind).map_err(|e| os_err(e, format!("lock {}", lock_path.display())))?;
        if !got {
            return Err(Error::Busy(match kind {
                LockKind::Exclusive => format!("log {shown} is in use by a live process"),
                _ => format!("log {shown} is being recovered by another process"),
            }));
        }
        let meta_file = fs.open(&meta_path).map_err(|e| os_err(e, format!("open {}", meta_path.display())))?;
        let meta = Log::read_meta(&*meta_file, &meta_path)?;
        let mode = meta.mode & 0o660;
        owned(&shown, &st, dir_mode(mode))?;
        owned(&meta_path.display().to_string(), &mst, mode)?;
        owned(
            &lock_path.display().to_string(),
            &lock_file.meta().map_err(|e| os_err(e, lock_path.display().to_string()))?,
            mode,
        )?;
        let log = Log::assemble(fs.clone(), dir, meta, lock_file, meta_file);
        for k in log.list_segments()? {
            let p = log.seg_path(k);
            let m = fs.stat(&p).map_err(|e| os_err(e, p.display().to_string()))?;
            owned(&p.display().to_string(), &m, mode)?;
        }
        if meta.seg_size == 0 || !meta.wrap.is_power_of_two() || meta.seg_size % meta.wrap != 0 {
            return Err(Error::Corrupt(format!(
                "{}: bad geometry (seg_size {}, wrap {})",
                meta_path.display(),
                meta.seg_size,
                meta.wrap
            )));
        }
        Ok(log)
    }

    fn meta_slot_off(seq: u64) -> u64 {
        (seq % 2) * format::META_SLOT
    }

    /// The valid META slot with the higher seq.
    fn read_meta(f: &dyn FsFile, path: &Path) -> Result<Meta> {
        let mut b = vec![0u8; 2 * format::META_SLOT as usize];
        let n = f.pread(0, &mut b).map_err(|e| os_err(e, format!("read {}", path.display())))?;
        b.truncate(n);
        b.resize(2 * format::META_SLOT as usize, 0);
        let a = Meta::decode(&b[..format::META_SLOT as usize]);
        let c = Meta::decode(&b[format::META_SLOT as usize..]);
        match (a, c) {
            (Ok(a), Ok(c)) => Ok(if c.seq > a.seq { c } else { a }),
            (Ok(m), Err(_)) | (Err(_), Ok(m)) => Ok(m),
            (Err(HeaderError::Newer(v)), _) | (_, Err(HeaderError::Newer(v))) => Err(Error::Incompatible(format!(
                "{} has log format version {v}; this shmq reads version {}",
                path.display(),
                format::VERSION
            ))),
            (Err(HeaderError::Bad(a)), Err(HeaderError::Bad(_))) => {
                Err(Error::Corrupt(format!("{} at offset 0: no valid slot ({a})", path.display())))
            }
        }
    }

    // -----------------------------------------------------------------------------------
    // Accessors and helpers

    /// The queue identity.
    pub fn identity(&self) -> [u8; 16] {
        self.identity
    }
    /// Positions per segment.
    pub fn seg_size(&self) -> u64 {
        self.seg_size
    }
    /// The ring capacity.
    pub fn wrap(&self) -> u64 {
        self.wrap
    }
    /// The log directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of segment `k`.
    pub fn seg_path(&self, k: u64) -> PathBuf {
        self.dir.join(format!("{k:016x}.seg"))
    }

    fn file_off(&self, pos: u64) -> u64 {
        HEADER_LEN + pos % self.seg_size
    }

    fn corrupt_at(&self, pos: u64, what: &str) -> Error {
        let k = pos / self.seg_size;
        Error::Corrupt(format!("{} at offset {}: {what}", self.seg_path(k).display(), self.file_off(pos)))
    }

    fn check_failed(&self) -> Result<()> {
        match &*lock(&self.failed) {
            Some(msg) => Err(Error::Log(msg.clone())),
            None => Ok(()),
        }
    }

    /// Turns the log sticky-failed (the first failure's text wins) and returns the error.
    fn fail(&self, msg: String) -> Error {
        let mut f = lock(&self.failed);
        Error::Log(f.get_or_insert(msg).clone())
    }

    /// A failure on the write or sync path: no space is [`Error::NoSpace`] (nothing changed,
    /// retry later), anything else fails the log for good.
    fn write_err(&self, e: io::Error, what: String) -> Error {
        if is_space(&e) { Error::NoSpace } else { self.fail(format!("{what}: {e}")) }
    }

    /// The first segment on disk numbered `k` or above, if any (a directory listing: for
    /// readers that find a segment missing, so that they skip what retention or a restart
    /// left out in one step rather than one segment at a time).
    pub fn next_segment(&self, k: u64) -> Result<Option<u64>> {
        Ok(self.list_segments()?.into_iter().find(|&s| s >= k))
    }

    fn list_segments(&self) -> Result<Vec<u64>> {
        let names = self.fs.list_dir(&self.dir).map_err(|e| os_err(e, format!("list {}", self.dir.display())))?;
        let mut ks: Vec<u64> = names.iter().filter_map(|n| parse_segment_name(n)).collect();
        ks.sort_unstable();
        Ok(ks)
    }

    fn check_header(&self, k: u64, f: &dyn FsFile) -> Result<Vec<u8>> {
        let path = self.seg_path(k);
        let mut b = vec![0u8; HEADER_LEN as usize];
        let n = f.pread(0, &mut b).map_err(|e| os_err(e, format!("read {}", path.display())))?;
        if n < HEADER_LEN as usize {
            return Err(Error::Corrupt(format!("{} at offset {n}: shorter than its header", path.display())));
        }
        let h = match SegmentHeader::decode(&b) {
            Ok(h) => h,
            Err(HeaderError::Newer(v)) => {
                return Err(Error::Incompatible(format!(
                    "{} has log format version {v}; this shmq reads version {}",
                    path.display(),
                    format::VERSION
                )));
            }
            Err(HeaderError::Bad(what)) => {
                return Err(Error::Corrupt(format!("{} at offset 0: {what}", path.display())));
            }
        };
        if h.identity != self.identity {
            return Err(Error::Incompatible(format!("{} belongs to another queue", path.display())));
        }
        if h.seg_size != self.seg_size || h.wrap != self.wrap || h.index != k {
            return Err(Error::Corrupt(format!(
                "{} at offset 32: header says segment {} of size {} and wrap {}, expected segment {k} of size {} and wrap {}",
                path.display(),
                h.index,
                h.seg_size,
                h.wrap,
                self.seg_size,
                self.wrap
            )));
        }
        Ok(b)
    }

    /// The open segment `k`: from the cache, or opened (header checked), or with `create`
    /// made if missing. `None` if missing and not `create`.
    fn segment(&self, k: u64, create: bool) -> Result<Option<Arc<dyn FsFile>>> {
        if let Some(f) = lock(&self.segs).get(&k) {
            return Ok(Some(f.clone()));
        }
        let _creating = create.then(|| lock(&self.creating));
        if let Some(f) = lock(&self.segs).get(&k) {
            return Ok(Some(f.clone()));
        }
        let path = self.seg_path(k);
        let f = match self.fs.open(&path) {
            Ok(f) => {
                self.check_header(k, &*f)?;
                if create {
                    // Another process made it and may not have fsynced the directory yet:
                    // our data in it must not depend on that.
                    self.fs
                        .fsync_dir(&self.dir)
                        .map_err(|e| self.fail(format!("fsync {}: {e}", self.dir.display())))?;
                }
                f
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                if !create || self.is_retired(k)? {
                    return Ok(None);
                }
                let f = self.create_segment(k)?;
                // Retired while we made it (we were stopped after the check above, and the
                // stream moved on and was retired past it): the file is junk; a recovery
                // ignores it, and we write nothing into it.
                if self.is_retired(k)? {
                    let _ = self.fs.unlink(&path);
                    return Ok(None);
                }
                f
            }
            Err(e) => return Err(os_err(e, format!("open {}", path.display()))),
        };
        lock(&self.segs).insert(k, f.clone());
        Ok(Some(f))
    }

    /// Whether segment `k` lies wholly below the retired floor: retention removed it (or
    /// is about to), so the stream is past it. A writer or a sync that comes to it late
    /// (stopped between its copy and its write while others journaled, synced and retired
    /// the range) must not make it again. Unlike "a segment older than the newest on disk
    /// is missing", this does not depend on the order in which writers make segments.
    fn is_retired(&self, k: u64) -> Result<bool> {
        Ok((k + 1).saturating_mul(self.seg_size) <= self.retired_floor()?)
    }

    /// The retired floor: the highest `RETIRED.<hex>` record in the directory that this
    /// user owns (0: none). Retention makes one, durably, before it removes segments.
    pub fn retired_floor(&self) -> Result<u64> {
        let names = self.fs.list_dir(&self.dir).map_err(|e| os_err(e, format!("list {}", self.dir.display())))?;
        let euid = rustix::process::geteuid().as_raw();
        let mut floor = 0;
        for (name, at) in names.iter().filter_map(|n| parse_retired_name(n).map(|at| (n, at))) {
            // A record planted by another user (a group-writable directory) is not trusted.
            if at > floor && self.fs.stat(&self.dir.join(name)).is_ok_and(|m| m.uid == euid) {
                floor = at;
            }
        }
        Ok(floor)
    }

    /// Makes segment `k` complete under a temporary name, then renames it into place.
    fn create_segment(&self, k: u64) -> Result<Arc<dyn FsFile>> {
        let path = self.seg_path(k);
        let tmp = self.dir.join(format!(
            ".{k:016x}.seg.tmp.{}.{}",
            std::process::id(),
            // Unique per process; no ordering with anything else.
            TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let shown = tmp.display().to_string();
        let f = self.fs.create(&tmp, self.mode).map_err(|e| match os_err(e, format!("create {shown}")) {
            Error::Io { context, source } => self.fail(format!("{context}: {source}")),
            other => other,
        })?;
        let result = (|| {
            let hdr = SegmentHeader {
                version: format::VERSION,
                identity: self.identity,
                seg_size: self.seg_size,
                wrap: self.wrap,
                index: k,
                created_ns: now_ns(),
            };
            f.pwrite(0, &hdr.encode()).map_err(|e| self.write_err(e, format!("write {shown}")))?;
            f.fallocate(HEADER_LEN + self.seg_size).map_err(|e| self.write_err(e, format!("allocate {shown}")))?;
            f.fdatasync().map_err(|e| self.fail(format!("fdatasync {shown}: {e}")))?;
            Ok(())
        })();
        if let Err(e) = result {
            let _ = self.fs.unlink(&tmp);
            return Err(e);
        }
        let f = match self.fs.rename_noreplace(&tmp, &path) {
            Ok(()) => f,
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                // Another process made it first: same bytes by construction; use theirs.
                let _ = self.fs.unlink(&tmp);
                let theirs = self.fs.open(&path).map_err(|e| os_err(e, format!("open {}", path.display())))?;
                self.check_header(k, &*theirs)?;
                theirs
            }
            Err(e) => {
                let _ = self.fs.unlink(&tmp);
                return Err(self.fail(format!("rename {shown}: {e}")));
            }
        };
        self.fs.fsync_dir(&self.dir).map_err(|e| self.fail(format!("fsync {}: {e}", self.dir.display())))?;
        Ok(f)
    }

    /// After a write of `[from, to)`: if it passed the middle of its segment, makes the
    /// next segment, and raises the id ceiling in META to `ceiling`, in a background
    /// thread, so that the writer that reaches that segment finds it made and the raise
    /// that the journal asks for next (`ceiling`, its caller's choice) finds it synced.
    /// Each syncs: a segment twice (the file, then the directory), 0.7-1 ms on the
    /// development VM, and META once, 0.5-1 ms, once per segment, that a writer spent
    /// waiting, and the producers behind it with it.
    ///
    /// What the thread does is what that writer would have done, with the same guards
    /// (see [`segment`](Self::segment) and [`set_ceiling`](Self::set_ceiling)). A full
    /// disk is left for that writer, which meets it itself; a failed sync (or rename, or
    /// directory sync) fails the log for good, as it would have for that writer. A higher
    /// ceiling only makes a restart skip more ids. A process that exits or dies while the
    /// thread works leaves at most a temporary file, which the next cold recovery removes.
    /// A segment made but never written (the process stopped short of it) is an empty one
    /// beyond the end of the log: a recovery finds its bytes zero, a clean tail, as after a
    /// writer killed just after making one; a restored queue writes on into it if it is
    /// where the restored stream starts, and otherwise removes it with its gap frame
    /// ([`bridge`](Self::bridge)).
    pub fn prepare_ahead(self: &Arc<Self>, from: u64, to: u64, ceiling: u64) {
        let k = from / self.seg_size;
        let middle = k * self.seg_size + self.seg_size / 2;
        if from >= middle || to < middle {
            return;
        }
        // Weak: a queue closed meanwhile must not have its log (and the log's lock, which a
        // cold recovery of the directory needs exclusive) kept open by this thread.
        let log = Arc::downgrade(self);
        // No thread, no harm: the writer makes the segment when it gets there.
        let _ = std::thread::Builder::new().name("shmq-segment".into()).spawn(move || {
            let Some(log) = log.upgrade() else { return };
            if log.prepare(k + 1).is_ok() {
                let _ = log.set_ceiling(ceiling);
            }
        });
    }

    /// Makes segment `k` now if it is missing (and not retired).
    fn prepare(&self, k: u64) -> Result<()> {
        self.segment(k, true).map(|_| ())
    }

    // -----------------------------------------------------------------------------------
    // Writing

    /// Writes framed bytes at their stream positions (`bytes[0]` at `pos`), splitting at
    /// segment boundaries and creating missing segments. Writes are idempotent: writing the
    /// same range twice (from any process) leaves the same bytes. Nothing is written into a
    /// segment that retention removed (see [`is_retired`](Self::is_retired)): such a
    /// writer is stale, and the range is in the log already.
    pub fn write(&self, pos: u64, bytes: &[u8]) -> Result<()> {
        self.check_failed()?;
        let mut p = pos;
        let mut rest = bytes;
        while !rest.is_empty() {
            let k = p / self.seg_size;
            let n = (((k + 1) * self.seg_size - p) as usize).min(rest.len());
            let Some(f) = self.segment(k, true)? else {
                p += n as u64;
                rest = &rest[n..];
                continue;
            };
            f.pwrite(self.file_off(p), &rest[..n])
                .map_err(|e| self.write_err(e, format!("write {}", self.seg_path(k).display())))?;
            p += n as u64;
            rest = &rest[n..];
        }
        Ok(())
    }

    /// Bridges a restart's gap: a restored stream starts at `start`, a segment boundary,
    /// above the recovered end `end` (every id ever handed out lies below `start`). Writes
    /// at `end` a gap frame that goes on at `start` ([`format::encode_gap`]; first a
    /// pad-end to the next multiple of `wrap` if the gap frame does not fit before it), and
    /// syncs it. Without it the positions in between, never written, would read as damage
    /// to the next recovery (below the synced mark) or as the end of the log. Then removes
    /// the segments lying wholly inside the gap if their bytes are zero (made ahead, never
    /// written: see [`prepare_ahead`](Self::prepare_ahead)). Harmless when repeated; a
    /// crash before its sync leaves nothing the next recovery does not cut.
    pub fn bridge(&self, end: u64, start: u64) -> Result<()> {
        if start <= end {
            return Ok(());
        }
        debug_assert!(start % self.seg_size == 0 && end % 8 == 0);
        let mut p = end;
        let mut wrote = Vec::new();
        let window_end = (p / self.wrap + 1) * self.wrap;
        if p % self.wrap != 0 && window_end - p < format::GAP_LEN {
            self.write(p, &format::encode_pad_end(p))?;
            wrote.push(p / self.seg_size);
            p = window_end;
        }
        if p < start {
            self.write(p, &format::encode_gap(p, start))?;
            wrote.push(p / self.seg_size);
        }
        wrote.dedup();
        for &k in &wrote {
            let f = self
                .segment(k, false)?
                .ok_or_else(|| self.fail(format!("{}: vanished", self.seg_path(k).display())))?;
            f.fdatasync().map_err(|e| self.fail(format!("fdatasync {}: {e}", self.seg_path(k).display())))?;
        }
        // Segments inside the gap hold nothing (a recovery found them zero: made ahead of
        // writes that never came). Left there, retention could remove the segment holding
        // the gap frame and keep them, and the next recovery would read the first of them
        // as the log's start: zeros where a frame must be.
        let mut empty = Vec::new();
        for k in self.list_segments()? {
            let inside = k > end / self.seg_size && k < start / self.seg_size && !wrote.contains(&k);
            if inside && self.tail_is_zero(&[k], k * self.seg_size)? {
                empty.push(k);
            }
        }
        self.remove_segments(&empty)
    }

    /// Unlinks segments `ks` (forgetting their open files), then syncs the directory if
    /// there were any.
    fn remove_segments(&self, ks: &[u64]) -> Result<()> {
        for &k in ks {
            lock(&self.segs).remove(&k);
            let p = self.seg_path(k);
            self.fs.unlink(&p).map_err(|e| os_err(e, format!("unlink {}", p.display())))?;
        }
        if !ks.is_empty() {
            self.fs.fsync_dir(&self.dir).map_err(|e| self.fail(format!("fsync {}: {e}", self.dir.display())))?;
        }
        Ok(())
    }

    /// Makes `[from, to)` durable: `fdatasync`s each segment overlapping it, the last one
    /// after writing `mark` into its mark slot (if higher than the mark there). `mark` must
    /// be a position already durable before this call (typically the previous sync's `to`).
    /// Covers data written by any process. A failure fails the log for good.
    pub fn sync(&self, from: u64, to: u64, mark: u64) -> Result<()> {
        self.check_failed()?;
        if to <= from {
            return Ok(());
        }
        let k0 = from / self.seg_size;
        let k1 = (to - 1) / self.seg_size;
        // A segment retention removed was synced by another process (the queue retires
        // only what is synced): a sync that went stale over it has nothing to do there.
        let seg =
            |k: u64| -> Result<Option<Arc<dyn FsFile>>> {
                match self.segment(k, false)? {
                    Some(f) => Ok(Some(f)),
                    None if self.is_retired(k)? => Ok(None),
                    None => Err(self
                        .fail(format!("sync: {} is missing (nothing was written there)", self.seg_path(k).display()))),
                }
            };
        for k in k0..k1 {
            if let Some(f) = seg(k)? {
                f.fdatasync().map_err(|e| self.fail(format!("fdatasync {}: {e}", self.seg_path(k).display())))?;
            }
        }
        if let Some(last) = seg(k1)? {
            self.write_mark(k1, &*last, mark)?;
            last.fdatasync().map_err(|e| self.fail(format!("fdatasync {}: {e}", self.seg_path(k1).display())))?;
        }
        Ok(())
    }

    /// Writes `mark` into the older mark slot of segment `k` if it raises the mark there.
    fn write_mark(&self, k: u64, f: &dyn FsFile, mark: u64) -> Result<()> {
        let _g = lock(&self.marking);
        let path = self.seg_path(k);
        let mut b = vec![0u8; (MARK_SLOTS[1] as usize) + format::MARK_LEN];
        f.pread(0, &mut b).map_err(|e| self.fail(format!("read {}: {e}", path.display())))?;
        let best = Mark::best(&b);
        if mark <= best.map_or(0, |m| m.synced_through) {
            return Ok(());
        }
        let seq = best.map_or(1, |m| m.seq + 1);
        let m = Mark { seq, synced_through: mark };
        f.pwrite(MARK_SLOTS[(seq % 2) as usize], &m.encode())
            .map_err(|e| self.write_err(e, format!("write mark {}", path.display())))
    }

    /// Raises the id ceiling in META (never lowers it: a lower `c` keeps the current one),
    /// synced before it returns. Returns at once if this process has already synced META
    /// with `c` or more in it (a ceiling read without a sync of ours, at attach, say, may be
    /// a write that a power cut still takes back).
    pub fn set_ceiling(&self, c: u64) -> Result<()> {
        self.check_failed()?;
        let mut meta = lock(&self.meta);
        // Relaxed: read and written under `meta`'s lock.
        if self.synced_ceiling.load(Ordering::Relaxed) >= c {
            return Ok(());
        }
        let path = self.dir.join(META_FILE);
        // Another process may raise it at the same moment: both read the same record and
        // write the next one into the same slot, and the write that lands last wins it,
        // maybe with the lower ceiling. So: write, sync, read back, until the record on
        // disk (synced by our own `fdatasync`, whoever wrote it) holds `c` or more.
        for _ in 0..SET_CEILING_TRIES {
            // Start from what is on disk: another process may have raised it.
            let cur = Log::read_meta(&*self.meta_file, &path)?;
            if cur.ceiling < c {
                let seq = cur.seq.max(meta.seq) + 1;
                let next = Meta { seq, ceiling: c.max(cur.ceiling).max(meta.ceiling), ..*meta };
                self.meta_file
                    .pwrite(Log::meta_slot_off(seq), &next.encode())
                    .map_err(|e| self.write_err(e, format!("write {}", path.display())))?;
            }
            self.meta_file.fdatasync().map_err(|e| self.fail(format!("fdatasync {}: {e}", path.display())))?;
            let now = Log::read_meta(&*self.meta_file, &path)?;
            if now.ceiling >= c {
                // Relaxed: under `meta`'s lock. `c`, not what was read back: a higher
                // ceiling there may be another process's write, made after our sync and
                // not synced yet.
                self.synced_ceiling.store(c, Ordering::Relaxed);
                *meta = now;
                return Ok(());
            }
        }
        Err(Error::Log(format!("{}: the id ceiling did not hold after {SET_CEILING_TRIES} writes", path.display())))
    }

    /// The id ceiling as this process last read or wrote it.
    pub fn ceiling(&self) -> u64 {
        lock(&self.meta).ceiling
    }

    /// Retention: removes every segment that lies wholly below `pos`, except the newest
    /// segment (so that a recovery always finds where the stream stands), and syncs the
    /// directory. Returns the oldest position still retained.
    pub fn delete_before(&self, pos: u64) -> Result<u64> {
        let ks = self.list_segments()?;
        let newest = ks.last().copied();
        // First, durably, the record of what goes: a late writer must not make a removed
        // segment again, nor a recovery read one that was (see `is_retired`).
        let floor = ks
            .iter()
            .filter(|&&k| (k + 1).saturating_mul(self.seg_size) <= pos && Some(k) != newest)
            .map(|&k| (k + 1) * self.seg_size)
            .max();
        let old = self.retired_floor()?;
        if let Some(floor) = floor.filter(|&f| f > old) {
            let p = self.dir.join(retired_name(floor));
            match self.fs.create(&p, self.mode) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                Err(e) => return Err(os_err(e, format!("create {}", p.display()))),
            }
            self.fs.fsync_dir(&self.dir).map_err(|e| os_err(e, format!("fsync {}", self.dir.display())))?;
        }
        let mut removed = false;
        let mut oldest = None;
        for &k in &ks {
            if (k + 1).saturating_mul(self.seg_size) <= pos && Some(k) != newest {
                lock(&self.segs).remove(&k);
                match self.fs.unlink(&self.seg_path(k)) {
                    Ok(()) => removed = true,
                    Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                    Err(e) => return Err(os_err(e, format!("unlink {}", self.seg_path(k).display()))),
                }
            } else if oldest.is_none() {
                oldest = Some(k * self.seg_size);
            }
        }
        if removed {
            self.fs.fsync_dir(&self.dir).map_err(|e| os_err(e, format!("fsync {}", self.dir.display())))?;
        }
        self.remove_old_retired_records()?;
        Ok(oldest.unwrap_or(0))
    }

    /// Removes the `RETIRED.<hex>` records below the highest (which alone counts).
    fn remove_old_retired_records(&self) -> Result<()> {
        let floor = self.retired_floor()?;
        let names = self.fs.list_dir(&self.dir).map_err(|e| os_err(e, format!("list {}", self.dir.display())))?;
        for n in names.iter().filter(|n| parse_retired_name(n).is_some_and(|at| at < floor)) {
            match self.fs.unlink(&self.dir.join(n)) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => return Err(os_err(e, format!("unlink {}", self.dir.join(n).display()))),
            }
        }
        Ok(())
    }

    /// Bytes, segment count and oldest position on disk.
    pub fn stats(&self) -> Result<LogStats> {
        let ks = self.list_segments()?;
        let mut bytes = 0;
        for &k in &ks {
            match self.fs.stat(&self.seg_path(k)) {
                Ok(m) => bytes += m.len,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => return Err(os_err(e, format!("stat {}", self.seg_path(k).display()))),
            }
        }
        Ok(LogStats { bytes, segments: ks.len() as u64, oldest: ks.first().map(|k| k * self.seg_size) })
    }

    // -----------------------------------------------------------------------------------
    // Reading

    /// Raw bytes from position `pos`; returns how many were read (fewer at the end of the
    /// last segment, 0 past it or at a missing segment).
    pub fn read(&self, pos: u64, buf: &mut [u8]) -> Result<usize> {
        let mut done = 0;
        while done < buf.len() {
            let p = pos + done as u64;
            let k = p / self.seg_size;
            let n = (((k + 1) * self.seg_size - p) as usize).min(buf.len() - done);
            let Some(f) = self.segment(k, false)? else { break };
            let got = f
                .pread(self.file_off(p), &mut buf[done..done + n])
                .map_err(|e| os_err(e, format!("read {}", self.seg_path(k).display())))?;
            done += got;
            if got < n {
                break;
            }
        }
        Ok(done)
    }

    /// The messages whose frames start in `[from, to)`, validated, padding skipped. `from`
    /// must be a frame boundary. An invalid frame or a missing segment before `to` yields
    /// one [`Error::Corrupt`] and ends the iteration.
    pub fn frames(&self, from: u64, to: u64) -> impl Iterator<Item = Result<Frame>> + '_ {
        Frames { cur: Cursor::new(self, from), to, done: false }
    }

    // -----------------------------------------------------------------------------------
    // Recovery

    fn remove_temporaries(&self) -> Result<()> {
        let names = self.fs.list_dir(&self.dir).map_err(|e| os_err(e, format!("list {}", self.dir.display())))?;
        let mut removed = false;
        for n in names.iter().filter(|n| n.starts_with('.') && n.contains(".seg.tmp.")) {
            let p = self.dir.join(n);
            self.fs.unlink(&p).map_err(|e| os_err(e, format!("unlink {}", p.display())))?;
            removed = true;
        }
        if removed {
            self.fs.fsync_dir(&self.dir).map_err(|e| os_err(e, format!("fsync {}", self.dir.display())))?;
        }
        Ok(())
    }

    /// Checks the headers, finds the mark, walks the frames to the end and looks at what
    /// lies beyond. Changes nothing.
    fn scan(&self, progress: &mut dyn FnMut(u64, u64)) -> Result<Scan> {
        let floor = self.retired_floor()?;
        let (junk, segs): (Vec<u64>, Vec<u64>) =
            self.list_segments()?.into_iter().partition(|&k| (k + 1).saturating_mul(self.seg_size) <= floor);
        let mut mark = 0;
        for &k in &segs {
            let Some(f) = self.segment(k, false)? else {
                return Err(Error::Corrupt(format!("{}: vanished during recovery", self.seg_path(k).display())));
            };
            let hdr = self.check_header(k, &*f)?;
            if let Some(m) = Mark::best(&hdr) {
                mark = mark.max(m.synced_through);
            }
        }
        let Some(&first) = segs.first() else {
            return Ok(Scan { messages: 0, start: 0, end: 0, mark, dropped: 0, tail_clean: true, segs, junk });
        };
        let start = first * self.seg_size;
        let total = (segs[segs.len() - 1] + 1) * self.seg_size - start;
        let mut cur = Cursor::new(self, start);
        let mut messages = 0;
        let mut reported = start;
        let end = loop {
            if cur.pos - reported >= 1 << 24 {
                reported = cur.pos;
                progress(cur.pos - start, total);
            }
            match cur.step(false)? {
                Step::Message { .. } => messages += 1,
                Step::Skip => {}
                Step::Missing { pos } => {
                    if pos < mark {
                        return Err(Error::Corrupt(format!(
                            "{}: missing, but the log was synced through position {mark}",
                            self.seg_path(pos / self.seg_size).display()
                        )));
                    }
                    break pos;
                }
                Step::Invalid { pos, what } => {
                    if pos < mark {
                        return Err(self.corrupt_at(pos, &format!("{what} (below the synced mark {mark})")));
                    }
                    break pos;
                }
            }
        };
        let tail_clean = self.tail_is_zero(&segs, end)?;
        let dropped = if tail_clean { 0 } else { self.count_beyond(&segs, end)? };
        progress(total, total);
        Ok(Scan { messages, start, end, mark, dropped, tail_clean, segs, junk })
    }

    /// Whether every byte of the existing segments from `end` on is zero.
    fn tail_is_zero(&self, segs: &[u64], end: u64) -> Result<bool> {
        let mut buf = vec![0u8; READ_CHUNK];
        for &k in segs.iter().filter(|&&k| (k + 1) * self.seg_size > end) {
            let Some(f) = self.segment(k, false)? else { continue };
            let mut p = end.max(k * self.seg_size);
            let seg_end = (k + 1) * self.seg_size;
            while p < seg_end {
                let n = ((seg_end - p) as usize).min(buf.len());
                let got = f
                    .pread(self.file_off(p), &mut buf[..n])
                    .map_err(|e| os_err(e, format!("read {}", self.seg_path(k).display())))?;
                if buf[..got].iter().any(|&b| b != 0) {
                    return Ok(false);
                }
                if got < n {
                    break;
                }
                p += n as u64;
            }
        }
        Ok(true)
    }

    /// Valid-looking message frames after the cut at `end`: every 8-aligned position of the
    /// existing segments from `end + 8` on is tried; a valid frame is counted and skipped.
    fn count_beyond(&self, segs: &[u64], end: u64) -> Result<u64> {
        let mut count = 0;
        for &k in segs.iter().filter(|&&k| (k + 1) * self.seg_size > end + 8) {
            let seg_end = (k + 1) * self.seg_size;
            let mut cur = Cursor::new(self, (end + 8).max(k * self.seg_size));
            while cur.pos < seg_end {
                let at = cur.pos;
                match cur.step(false)? {
                    Step::Message { .. } => count += 1,
                    Step::Skip => {}
                    Step::Missing { .. } => break,
                    Step::Invalid { .. } => cur.pos = at + 8,
                }
            }
        }
        Ok(count)
    }

    /// Removes the segments below the retired floor that a late writer made again, synced.
    fn remove_junk(&self, s: &Scan) -> Result<()> {
        for &k in &s.junk {
            lock(&self.segs).remove(&k);
            let p = self.seg_path(k);
            self.fs.unlink(&p).map_err(|e| os_err(e, format!("unlink {}", p.display())))?;
        }
        if !s.junk.is_empty() {
            self.fs.fsync_dir(&self.dir).map_err(|e| os_err(e, format!("fsync {}", self.dir.display())))?;
        }
        Ok(())
    }

    /// Zeroes everything after `s.end` in its segment and removes later segments, synced.
    fn cut(&self, s: &Scan) -> Result<()> {
        let k = s.end / self.seg_size;
        let later: Vec<u64> = s.segs.iter().copied().filter(|&j| j > k).collect();
        self.remove_segments(&later)?;
        if s.segs.contains(&k) {
            let f = self.segment(k, false)?.expect("listed");
            let shown = self.seg_path(k).display().to_string();
            f.truncate(self.file_off(s.end)).map_err(|e| self.write_err(e, format!("truncate {shown}")))?;
            f.fallocate(HEADER_LEN + self.seg_size).map_err(|e| self.write_err(e, format!("allocate {shown}")))?;
            f.fdatasync().map_err(|e| self.fail(format!("fdatasync {shown}: {e}")))?;
        }
        Ok(())
    }
}

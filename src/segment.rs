//! The shared-memory object behind a queue: create, open and validate, remove, list;
//! participant slots and their liveness.
//!
//! Every value read from the header is validated once and copied into [`Config`]; nothing
//! here trusts the segment after that. Liveness comes from the kernel: each participant
//! holds an OFD (open file description) write lock on one byte of the object, which the
//! kernel drops when the process dies (and keeps while it is stopped).
//!
//! ## `fork()` without `exec`
//! A child made by `fork()` inherits its parent's descriptors, and with them the open file
//! descriptions that hold the parent's slot locks: without care, a dead parent's slot would
//! stay "alive" for as long as the child lives (the mapping keeps the description too).
//! So every segment's descriptor and mapping are entered in a fixed, lock-free table of
//! this process, and a `pthread_atfork` child handler (no lock, no allocation: atomics,
//! `dup3` and `mmap`) replaces them in the child: the descriptor by one of an empty
//! placeholder file, the mapping by private zero pages. The child then holds
//! nothing of its parent's locks: when the parent dies its slots are free, and when the
//! child exits the parent's slots stay its own. The same handler bumps a fork generation;
//! every segment remembers the generation it was opened in, and
//! [`Segment::check_same_process`] compares the two with one relaxed load, so a handle
//! used in a forked child refuses with a clear error instead of working on a slot it does
//! not own. A child opens handles of its own. (`std::process::Command` and `posix_spawn`
//! start programs with `exec`; inherited handles are never used there.)

use std::os::fd::{AsRawFd, OwnedFd};
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use rustix::fs::{AtFlags, CWD, FallocateFlags, Mode as FileMode, OFlags};
use rustix::io::Errno;
use rustix::mm::{MapFlags, ProtFlags};
use rustix::shm;

use crate::error::{Error, Result};
use crate::layout::{self, Counters, Header, Slot};
use crate::ring::{Geometry, PtrRegion};
use crate::sync::atomic::Ordering;

/// Directory where Linux keeps POSIX shared-memory objects.
pub(crate) const SHM_DIR: &str = "/dev/shm";
/// Prefix of every queue's object name.
pub(crate) const PREFIX: &str = "shmq.";
/// Longest queue name, in bytes.
pub const MAX_NAME_LEN: usize = 200;
/// How long an opener waits for a creator that holds the creation lock.
const READY_WAIT: Duration = Duration::from_secs(2);
/// How long an opener watches an unfinished object whose creation lock nobody holds
/// before it calls the creator dead. This build never shows an unfinished object under a
/// queue's name (see [`Segment::create`]); builds before it took the lock just after
/// creating the object, and this covers that gap.
const ABANDONED_GRACE: Duration = Duration::from_millis(20);

/// Single-producer or multi-producer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Mode {
    /// One producer at a time: the fast path.
    Spsc,
    /// Any number of producers (up to the participant table): the default.
    #[default]
    Mpsc,
}

impl Mode {
    pub(crate) fn to_raw(self) -> u32 {
        match self {
            Mode::Spsc => layout::MODE_SPSC,
            Mode::Mpsc => layout::MODE_MPSC,
        }
    }

    fn from_raw(raw: u32) -> Option<Mode> {
        match raw {
            layout::MODE_SPSC => Some(Mode::Spsc),
            layout::MODE_MPSC => Some(Mode::Mpsc),
            _ => None,
        }
    }
}

impl std::str::FromStr for Mode {
    type Err = Error;

    /// Parses `spsc` or `mpsc`.
    ///
    /// ```
    /// assert_eq!("spsc".parse::<shmq::Mode>()?, shmq::Mode::Spsc);
    /// # Ok::<(), shmq::Error>(())
    /// ```
    fn from_str(s: &str) -> Result<Mode> {
        match s {
            "spsc" => Ok(Mode::Spsc),
            "mpsc" => Ok(Mode::Mpsc),
            _ => Err(Error::InvalidArgument(format!("mode {s:?}: use spsc or mpsc"))),
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Spsc => "spsc",
            Mode::Mpsc => "mpsc",
        })
    }
}

/// The validated, private copy of a queue's configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The queue's name (without the `shmq.` prefix).
    pub name: String,
    /// Single- or multi-producer.
    pub mode: Mode,
    /// Size of the data region in bytes.
    pub capacity: u64,
    /// Largest message in bytes.
    pub max_message: u32,
    /// Permission bits given at creation.
    pub permissions: u32,
    /// Pid of the creator.
    pub creator_pid: u32,
    /// Creation time, nanoseconds since the Unix epoch.
    pub created_unix_ns: u64,
    /// Mixed into every record stamp (validated: low 3 bits zero).
    pub(crate) salt: u64,
    /// The log of a durable queue; `None` for a volatile one.
    pub durable: Option<DurableConfig>,
}

/// The log of a durable queue, as its segment records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DurableConfig {
    /// The log directory.
    pub dir: std::path::PathBuf,
    /// When the log is synced.
    pub fsync: crate::queue::Fsync,
    /// The most bytes the log holds.
    pub max_log_bytes: u64,
    /// What is kept once released.
    pub retain: crate::queue::Retain,
    /// Bytes of stream per log segment file.
    pub seg_size: u64,
    /// The log's identity.
    pub(crate) identity: [u8; 16],
}

/// Bytes a durable queue's records carry before the message: the producer's timestamp and
/// a word the journal fills with the checksum in the log (`docs/LOG_FORMAT.md`).
pub const DURABLE_PREFIX: u32 = 16;

impl Config {
    /// What names the space of this queue's message ids: it stays the same for as long as
    /// an id names the same message. A durable queue's ids continue across restores from its
    /// log, so this is its log's identity (32 hex digits), which a restore keeps; a volatile
    /// queue's ids start over when it is made again, so this is its creation time (decimal
    /// nanoseconds since the Unix epoch). `(name, id_space, id)` names one message, on this
    /// host, for good (`shmq-bridge` makes its JetStream message ids of it).
    pub fn id_space(&self) -> String {
        match &self.durable {
            Some(d) => d.identity.iter().map(|b| format!("{b:02x}")).collect(),
            None => self.created_unix_ns.to_string(),
        }
    }

    pub(crate) fn geometry(&self) -> Geometry {
        Geometry { capacity: self.capacity, max_message: self.max_message + self.prefix(), salt: self.salt }
    }

    /// Bytes each record carries before the message: 0, or [`DURABLE_PREFIX`] on a durable queue.
    #[inline]
    pub(crate) fn prefix(&self) -> u32 {
        if self.durable.is_some() { DURABLE_PREFIX } else { 0 }
    }
}

/// What a durable queue's creator writes into its segment.
#[derive(Clone, Debug)]
pub(crate) struct DurableInit {
    pub(crate) config: DurableConfig,
    /// Where the stream starts: 0 for a new log, the end of the recovered log on a restart.
    pub(crate) start: u64,
    /// The id ceiling the log's meta record holds.
    pub(crate) ceiling: u64,
    /// Where the default consumer resumes (at most `start`; below it, it reads the log).
    pub(crate) head: u64,
    /// The creator makes the checkpoint's subscriptions again after creating the segment:
    /// retention waits for it (see [`DurableLine::restoring_until`](layout::DurableLine)).
    pub(crate) restoring: bool,
}

/// The options of [`Segment::create`].
#[derive(Clone, Debug)]
pub(crate) struct Spec {
    pub(crate) mode: Mode,
    pub(crate) capacity: u64,
    pub(crate) max_message: u32,
    pub(crate) permissions: u32,
    pub(crate) durable: Option<DurableInit>,
}

/// Writes a durable queue's options and starting positions (before `state` turns ready).
fn init_durable(h: &Header, d: &DurableInit) {
    use crate::queue::{Fsync, Retain};
    let l = &h.durable;
    let c = &d.config;
    let (fsync, interval) = match c.fsync {
        Fsync::Never => (layout::FSYNC_NEVER, 0),
        Fsync::Interval(i) => (layout::FSYNC_INTERVAL, u64::try_from(i.as_nanos()).unwrap_or(u64::MAX).max(1)),
        Fsync::Always => (layout::FSYNC_ALWAYS, 0),
    };
    // Relaxed, all: published by the creator's Release store of `state`.
    l.flags.store(layout::DURABLE_FLAG, Ordering::Relaxed);
    l.fsync.store(fsync, Ordering::Relaxed);
    l.interval_ns.store(interval, Ordering::Relaxed);
    l.max_log_bytes.store(c.max_log_bytes, Ordering::Relaxed);
    l.retain_bytes.store(
        match c.retain {
            Retain::Acked => 0,
            Retain::Bytes(n) => n.max(1),
        },
        Ordering::Relaxed,
    );
    l.seg_size.store(c.seg_size, Ordering::Relaxed);
    l.identity[0].store(u64::from_le_bytes(c.identity[..8].try_into().unwrap()), Ordering::Relaxed);
    l.identity[1].store(u64::from_le_bytes(c.identity[8..].try_into().unwrap()), Ordering::Relaxed);
    for w in [&l.written, &l.durable, &l.journal, &l.base] {
        w.store(d.start, Ordering::Relaxed);
    }
    l.ceiling.store(d.ceiling, Ordering::Relaxed);
    if d.restoring {
        let until = now_unix_ns() / 1_000_000_000 + crate::queue::RESTORE_GRACE.as_secs();
        l.restoring_until.store(u32::try_from(until).unwrap_or(u32::MAX), Ordering::Relaxed);
    }
    h.producer.tail.store(d.start, Ordering::Relaxed);
    // A consumer position below the ring's start reads the log: detached (spilled).
    let head = if d.head < d.start { d.head | layout::CURSOR_DETACHED } else { d.start };
    h.consumer.head.store(head, Ordering::Relaxed);
    let path = c.dir.as_os_str().as_encoded_bytes();
    h.log_dir.len.store(path.len() as u32, Ordering::Relaxed);
    for (i, chunk) in path.chunks(8).enumerate() {
        let mut w = [0u8; 8];
        w[..chunk.len()].copy_from_slice(chunk);
        h.log_dir.bytes[i].store(u64::from_le_bytes(w), Ordering::Relaxed);
    }
}

/// Reads a durable queue's options from its header, once, validating them.
fn read_durable(h: &Header) -> std::result::Result<Option<DurableConfig>, String> {
    use crate::queue::{Fsync, Retain};
    let l = &h.durable;
    // Relaxed, all: the caller's Acquire load of `state` ordered the creator's stores.
    match l.flags.load(Ordering::Relaxed) {
        0 => return Ok(None),
        layout::DURABLE_FLAG => {}
        f => return Err(format!("unknown durable flags {f:#x}")),
    }
    let fsync = match (l.fsync.load(Ordering::Relaxed), l.interval_ns.load(Ordering::Relaxed)) {
        (layout::FSYNC_NEVER, _) => Fsync::Never,
        (layout::FSYNC_ALWAYS, _) => Fsync::Always,
        (layout::FSYNC_INTERVAL, ns) if ns > 0 => Fsync::Interval(std::time::Duration::from_nanos(ns)),
        (f, ns) => return Err(format!("unknown fsync policy {f} (interval {ns} ns)")),
    };
    let retain = match l.retain_bytes.load(Ordering::Relaxed) {
        0 => Retain::Acked,
        n => Retain::Bytes(n),
    };
    let seg_size = l.seg_size.load(Ordering::Relaxed);
    let capacity = h.identity.capacity.load(Ordering::Relaxed);
    if capacity == 0 || seg_size == 0 || seg_size % capacity != 0 || seg_size > 1 << 50 {
        return Err(format!("log segment size {seg_size} is not a multiple of the capacity {capacity}"));
    }
    let len = h.log_dir.len.load(Ordering::Relaxed) as usize;
    if len == 0 || len > layout::LOG_DIR_MAX {
        return Err(format!("log directory path of {len} bytes"));
    }
    let mut path = Vec::with_capacity(len);
    for w in &h.log_dir.bytes {
        path.extend_from_slice(&w.load(Ordering::Relaxed).to_le_bytes());
        if path.len() >= len {
            break;
        }
    }
    path.truncate(len);
    let dir = std::path::PathBuf::from(std::ffi::OsString::from(
        String::from_utf8(path).map_err(|_| "log directory path is not UTF-8".to_string())?,
    ));
    let mut identity = [0u8; 16];
    identity[..8].copy_from_slice(&l.identity[0].load(Ordering::Relaxed).to_le_bytes());
    identity[8..].copy_from_slice(&l.identity[1].load(Ordering::Relaxed).to_le_bytes());
    Ok(Some(DurableConfig {
        dir,
        fsync,
        max_log_bytes: l.max_log_bytes.load(Ordering::Relaxed),
        retain,
        seg_size,
        identity,
    }))
}

/// A random salt for a new queue's record stamps: 61 random bits, low 3 bits zero. The
/// standard library's hasher keys come from the OS's random source once per process; the
/// time and pid make two queues of one process differ.
fn new_salt() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(now_unix_ns());
    h.write_u32(std::process::id());
    h.finish() & !crate::layout::record::KIND_MASK
}

/// Checks a queue name: 1–200 bytes of `[A-Za-z0-9._-]`, not starting with `.`
/// (`Error::InvalidName` otherwise, saying which rule the name breaks). Every call that
/// takes a name checks it this way.
///
/// ```
/// assert!(shmq::validate_name("orders.eu-1_a").is_ok());
/// assert!(shmq::validate_name(".hidden").is_err());
/// ```
pub fn validate_name(name: &str) -> Result<()> {
    let broken = if name.is_empty() {
        "is empty".to_owned()
    } else if name.len() > MAX_NAME_LEN {
        format!("is longer than {MAX_NAME_LEN} bytes")
    } else if name.starts_with('.') {
        "starts with '.'".to_owned()
    } else if let Some((i, c)) =
        name.char_indices().find(|&(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        format!("has {c:?} at byte {i}")
    } else {
        return Ok(());
    };
    Err(Error::InvalidName(format!(
        "{} {broken}: use 1-{MAX_NAME_LEN} bytes of [A-Za-z0-9._-], not starting with '.'",
        shown(name)
    )))
}

fn object_name(name: &str) -> String {
    format!("/{PREFIX}{name}")
}

/// `/dev/shm/shmq.NAME`.
fn object_path(name: &str) -> String {
    format!("{SHM_DIR}/{PREFIX}{name}")
}

/// The name as messages show it: quoted, and cut to its first 40 bytes if longer (saying so).
pub(crate) fn shown(name: &str) -> String {
    const MAX: usize = 40;
    if name.len() <= MAX {
        return format!("{name:?}");
    }
    let mut end = MAX;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    format!("{:?} (the first {end} of {} bytes)", &name[..end], name.len())
}

/// The command that removes queue `name`, for messages.
fn rm_command(name: &str) -> String {
    if name.len() > 40 {
        "shmq rm NAME".into()
    } else if name.starts_with('-') {
        format!("shmq rm -- {name}")
    } else {
        format!("shmq rm {name}")
    }
}

/// Checks the creation options (`InvalidArgument` with what is wrong).
fn check_options(capacity: u64, max_message: u32, permissions: u32) -> Result<()> {
    if max_message == 0 {
        return Err(Error::InvalidArgument(
            "max_message must be at least 1 byte (a queue with max_message 0 carries only empty messages)".into(),
        ));
    }
    if Geometry::new(capacity, max_message, 0).is_none() {
        return Err(Error::InvalidArgument(format!(
            "capacity must be a power of two in {}..={} and max_message at most capacity/2 \
             (got capacity {capacity}, max_message {max_message})",
            layout::MIN_CAPACITY,
            layout::MAX_CAPACITY
        )));
    }
    if permissions & !0o777 != 0 || permissions & 0o600 != 0o600 {
        return Err(Error::InvalidArgument(format!(
            "permissions {permissions:o}: give octal bits within 0777 that include 0600"
        )));
    }
    Ok(())
}

/// Whether the object's owner and mode make it safe to use (`Permission` otherwise). The
/// kernel already refuses what the mode bits refuse; this refuses what they allow but a
/// careful program should not trust: a queue another user could have created under the
/// expected name (to read what we send, or feed us messages), or one anyone may write.
///
/// The rule, for the effective user `me`:
/// 1. An object writable by every user (`o+w`, e.g. mode `0666`) is used only by
///    processes of its owner: anyone else refuses it, root included.
/// 2. Otherwise an object owned by `me` or by root is accepted, and root accepts any owner.
/// 3. An object of another user is accepted only if it is shared through a group: its
///    group is `me`'s effective group or one of its supplementary groups, and the group
///    bits grant what we ask (read for `inspect`, read and write for producers and
///    consumers). This is the supported multi-user setup: create with
///    `permissions(0o660)` while the shared group is the creator's effective group (or
///    `chgrp` the object `/dev/shm/shmq.NAME` afterwards); every member may then use it.
///
/// Anything else (another user's object readable through the "others" bits) is refused.
fn check_owner(name: &str, uid: u32, gid: u32, mode: u32, access: Access) -> Result<()> {
    let me = rustix::process::geteuid().as_raw();
    let mode = mode & 0o7777;
    let who = || format!("queue {} is owned by uid {uid}, group {gid}, mode {mode:04o}", shown(name));
    if mode & 0o002 != 0 && uid != me {
        return Err(Error::Permission(format!(
            "{}: writable by every user and not created by this user (uid {me}), so anyone could \
             have made or changed it; remove it (`{}`) and create it with group access (0660)",
            who(),
            rm_command(name)
        )));
    }
    if uid == me || uid == 0 || me == 0 {
        return Ok(());
    }
    let need = match access {
        Access::ReadOnly => 0o040,
        Access::ReadWrite => 0o060,
    };
    let in_group = gid == rustix::process::getegid().as_raw()
        || rustix::process::getgroups().is_ok_and(|g| g.iter().any(|g| g.as_raw() == gid));
    if mode & need == need && in_group {
        return Ok(());
    }
    Err(Error::Permission(format!(
        "{}: it belongs to neither this user (uid {me}) nor root and is not shared with a group of \
         this user, so another user could have created it under this name; share queues through a \
         group (create with 0660 and a common group)",
        who()
    )))
}

/// Links the nameless object `fd` (opened with `O_TMPFILE`) at `path`; `EEXIST` if the
/// name is taken. Through `/proc/self/fd` (needs no privilege), else with `AT_EMPTY_PATH`
/// (needs `CAP_DAC_READ_SEARCH`).
fn publish_nameless(fd: &OwnedFd, path: &str) -> std::result::Result<(), Errno> {
    let proc_path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    match rustix::fs::linkat(CWD, &proc_path, CWD, path, AtFlags::SYMLINK_FOLLOW) {
        Err(Errno::NOENT | Errno::PERM | Errno::ACCESS | Errno::NOTDIR) => {
            rustix::fs::linkat(fd, "", CWD, path, AtFlags::EMPTY_PATH)
        }
        other => other,
    }
}

/// `CLOCK_REALTIME` now, in ns since the Unix epoch (0 for a clock before 1970).
#[inline]
pub(crate) fn now_unix_ns() -> u64 {
    // A durable queue's producer stamps every message with it on the path to its
    // publication: through `SystemTime` (a `Duration` and 128-bit arithmetic on the way) a
    // call took 41 ns on the 2-vCPU VM of the figures, through `clock_ns` 24.
    clock_ns(libc::CLOCK_REALTIME)
}

/// Clock `id` now, in ns (0 for a negative time). Through libc, which reads it in the vDSO;
/// not through rustix, whose own lookup of the vDSO crashes programs run under valgrind.
#[inline]
pub(crate) fn clock_ns(id: libc::clockid_t) -> u64 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `t` is a valid, writable timespec; the clocks asked for always exist, and on
    // the impossible failure `t` stays zero.
    unsafe { libc::clock_gettime(id, &mut t) };
    timespec_ns(&t)
}

/// Clock `id`'s resolution in ns (0 if unknown).
pub(crate) fn clock_res_ns(id: libc::clockid_t) -> u64 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: as in `clock_ns`.
    unsafe { libc::clock_getres(id, &mut t) };
    timespec_ns(&t)
}

fn timespec_ns(t: &libc::timespec) -> u64 {
    u64::try_from(t.tv_sec).map_or(0, |s| s.saturating_mul(1_000_000_000).saturating_add(t.tv_nsec as u64))
}

/// Start time of this process in clock ticks after boot (`/proc/self/stat` field 22):
/// with the pid, it names a process uniquely (pids are reused, start times are not).
pub(crate) fn self_start_time() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Field 2 (comm) may contain spaces and parentheses: parse after the last ')'.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(19))
        .and_then(|f| f.parse().ok())
        .unwrap_or(0)
}

/// `fcntl(fd, F_OFD_SETLK, {type, SEEK_SET, byte, 1})`: takes (`F_WRLCK`) or drops
/// (`F_UNLCK`) an OFD lock on one byte. `Ok(false)` if another open file description holds it.
///
/// OFD locks belong to the open file description, not the process: two handles in one
/// process conflict like two processes, closing one fd does not drop the other's lock, and
/// the kernel drops them when the last fd of the description closes (process death
/// included). A stopped process keeps them.
fn ofd_setlk(fd: &OwnedFd, byte: u64, kind: libc::c_short) -> std::io::Result<bool> {
    // SAFETY: `flock` is a plain C struct; all-zero is a valid value (l_pid must be 0).
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = byte as libc::off_t;
    fl.l_len = 1;
    // SAFETY: `fd` is an open descriptor; `fl` is a valid flock that outlives the call.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_OFD_SETLK, &mut fl) };
    if r == 0 {
        return Ok(true);
    }
    let err = std::io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EAGAIN) | Some(libc::EACCES) => Ok(false),
        _ => Err(err),
    }
}

/// `fcntl(fd, F_OFD_GETLK, ...)`: whether another open file description holds a lock on
/// `byte`: the kernel's word that its holder is alive.
fn ofd_held(fd: &OwnedFd, byte: u64) -> bool {
    // SAFETY: as in `ofd_setlk`.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = byte as libc::off_t;
    fl.l_len = 1;
    // SAFETY: as in `ofd_setlk`.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_OFD_GETLK, &mut fl) };
    r == 0 && fl.l_type != libc::F_UNLCK as libc::c_short
}

/// Read-only (inspect) or read-write (producers, consumers, remove) access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    ReadOnly,
    ReadWrite,
}

/// Why an open failed, with the one case `open_or_create` may repair kept apart.
pub(crate) enum OpenError {
    /// The creator died before the header was ready; the object may be replaced.
    CreatorDied,
    /// Anything else.
    Other(Error),
}

impl From<Error> for OpenError {
    fn from(e: Error) -> Self {
        OpenError::Other(e)
    }
}

impl From<OpenError> for Error {
    fn from(e: OpenError) -> Self {
        match e {
            OpenError::CreatorDied => Error::Corrupt(
                "it is unfinished: the process that created it died before it was ready; remove it \
                 with `shmq rm NAME` (Queue::remove), or open it with open_or_create, which replaces it"
                    .into(),
            ),
            OpenError::Other(e) => e,
        }
    }
}

/// A subscription's ack area: its options and statistics, and its in-flight table.
#[derive(Clone, Copy)]
pub(crate) struct Acks<'a> {
    /// Options and statistics.
    pub meta: &'a layout::AckMeta,
    /// The in-flight table ([`layout::IN_FLIGHT_ENTRIES`] entries).
    pub entries: &'a [layout::InFlight],
}

/// A mapped queue segment. Each handle has its own: its own file description (so its own
/// OFD locks) and its own mapping.
///
/// A segment belongs to the process that opened it: in a child made by `fork()` it holds
/// no lock, and [`Segment::check_same_process`] fails (see the module documentation).
pub(crate) struct Segment {
    fd: OwnedFd,
    base: NonNull<u8>,
    len: usize,
    config: Config,
    /// Entry of `fd` in the fork table.
    fork_entry: usize,
    /// The fork generation this segment was opened in.
    generation: u64,
    /// Pid of the process that opened it (for messages).
    opener_pid: u32,
}

// SAFETY: the mapping is shared memory used only through atomics and protocol-guarded
// copies; the fd and the pointer carry no thread affinity.
unsafe impl Send for Segment {}
// SAFETY: as above; `&Segment` only hands out atomics and bounds-checked regions.
unsafe impl Sync for Segment {}

/// Maps `len` bytes of `fd` shared.
fn map(fd: &OwnedFd, len: usize, access: Access) -> Result<NonNull<u8>> {
    let prot = match access {
        Access::ReadOnly => ProtFlags::READ,
        Access::ReadWrite => ProtFlags::READ | ProtFlags::WRITE,
    };
    // SAFETY: a fresh mapping at an address the kernel picks; it aliases nothing of ours.
    let p = unsafe { rustix::mm::mmap(std::ptr::null_mut(), len, prot, MapFlags::SHARED, fd, 0) }.map_err(|e| {
        Error::Io { context: "mmap of the queue".into(), source: std::io::Error::from_raw_os_error(e.raw_os_error()) }
    })?;
    NonNull::new(p.cast::<u8>()).ok_or_else(|| Error::Corrupt("mmap returned null".into()))
}

impl Segment {
    /// Creates a new queue object, race-free: the object is made nameless (`O_TMPFILE` in
    /// `/dev/shm`), given its exact permissions, its memory reserved and its header written
    /// with `state` ready, and only then linked under its name with `linkat`, which fails
    /// with `EEXIST` if the name is taken. So no other process ever sees this creator's
    /// object unfinished, and a creator that dies leaves nothing behind (a nameless object
    /// vanishes with its last descriptor). Where `O_TMPFILE` or the `/proc/self/fd` link
    /// is unavailable, a hidden temporary name (`/dev/shm/.shmq-new.*`) stands in for the
    /// nameless object: the publication is still one atomic `link`.
    pub fn create(name: &str, mode: Mode, capacity: u64, max_message: u32, permissions: u32) -> Result<Config> {
        Self::create_spec(name, &Spec { mode, capacity, max_message, permissions, durable: None })
    }

    /// [`Segment::create`] with every option.
    pub(crate) fn create_spec(name: &str, spec: &Spec) -> Result<Config> {
        validate_name(name)?;
        let prefix = if spec.durable.is_some() { DURABLE_PREFIX } else { 0 };
        check_options(spec.capacity, spec.max_message.saturating_add(prefix), spec.permissions).map_err(
            |e| match e {
                Error::InvalidArgument(m) if prefix > 0 => Error::InvalidArgument(format!(
                    "{m}: a durable queue's records carry {prefix} bytes more than the message, so its \
                     max_message may be at most capacity/2 - {prefix}"
                )),
                e => e,
            },
        )?;
        match Self::create_nameless(name, spec) {
            Some(result) => result,
            None => Self::create_named(name, spec),
        }
    }

    /// [`Segment::create`] through `O_TMPFILE`; `None` where that is unavailable.
    fn create_nameless(name: &str, spec: &Spec) -> Option<Result<Config>> {
        let io = |what: &str, e: Errno| Error::os(e, what, name);
        let flags = OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC;
        let fd = match rustix::fs::open(SHM_DIR, flags, FileMode::from_raw_mode(0o600)) {
            Ok(fd) => fd,
            // Kernels or filesystems without O_TMPFILE.
            Err(Errno::OPNOTSUPP | Errno::ISDIR | Errno::INVAL | Errno::NOENT) => return None,
            Err(e) => return Some(Err(io("create", e))),
        };
        let config = match Self::initialize(&fd, name, spec) {
            Ok(config) => config,
            Err(e) => return Some(Err(e)),
        };
        match publish_nameless(&fd, &object_path(name)) {
            Ok(()) => Some(Ok(config)),
            // No /proc and no CAP_DAC_READ_SEARCH.
            Err(Errno::NOENT | Errno::PERM | Errno::ACCESS | Errno::NOTDIR) => None,
            Err(e) => Some(Err(io("create", e))),
        }
    }

    /// [`Segment::create`] through a hidden temporary name, published by an atomic `link`.
    fn create_named(name: &str, spec: &Spec) -> Result<Config> {
        let io = |what: &str, e: Errno| Error::os(e, what, name);
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        // Relaxed: a counter that only has to differ between calls of this process.
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = format!("{SHM_DIR}/.shmq-new.{}.{n}.{}", std::process::id(), now_unix_ns());
        let flags = OFlags::CREATE | OFlags::EXCL | OFlags::RDWR | OFlags::CLOEXEC | OFlags::NOFOLLOW;
        let fd = rustix::fs::open(&tmp, flags, FileMode::from_raw_mode(0o600)).map_err(|e| io("create", e))?;
        let result = Self::initialize(&fd, name, spec)
            .and_then(|config| rustix::fs::link(&tmp, object_path(name)).map(|()| config).map_err(|e| io("create", e)));
        let _ = rustix::fs::unlink(&tmp);
        result
    }

    /// Opens the queue if it exists, creates it otherwise; an existing queue must have the
    /// same mode, capacity and `max_message` (else `InvalidArgument`). An object left
    /// unfinished by a creator that died (only builds older than this one could leave one:
    /// this build publishes complete objects) is replaced, see [`Segment::remove_abandoned`].
    /// A name that is removed and recreated meanwhile is retried for a bounded time.
    pub fn open_or_create(name: &str, mode: Mode, capacity: u64, max_message: u32, permissions: u32) -> Result<Config> {
        validate_name(name)?;
        check_options(capacity, max_message, permissions)?;
        let deadline = Instant::now() + READY_WAIT;
        loop {
            match Self::create(name, mode, capacity, max_message, permissions) {
                Err(Error::Exists(_)) => {}
                other => return other,
            }
            match Self::open(name, Access::ReadOnly) {
                Ok(seg) => {
                    let c = seg.config().clone();
                    if c.mode != mode || c.capacity != capacity || c.max_message != max_message {
                        return Err(Error::InvalidArgument(format!(
                            "queue {} exists as {} with capacity {} and max_message {}",
                            shown(name),
                            c.mode,
                            c.capacity,
                            c.max_message
                        )));
                    }
                    return Ok(c);
                }
                Err(OpenError::CreatorDied) => Self::remove_abandoned(name)?,
                // Removed between our create and our open: try again.
                Err(OpenError::Other(Error::NotFound(_))) => {}
                Err(OpenError::Other(e)) => return Err(e),
            }
            if Instant::now() > deadline {
                return Err(Error::Busy(format!(
                    "queue {} keeps being removed and created again by other processes",
                    shown(name)
                )));
            }
            std::thread::yield_now();
        }
    }

    fn initialize(fd: &OwnedFd, name: &str, spec: &Spec) -> Result<Config> {
        let Spec { mode, capacity, max_message, permissions, .. } = *spec;
        let io = |what: &str, e: Errno| Error::os(e, what, name);
        // The umask masked shm_open's mode; fchmod sets exactly what was asked.
        rustix::fs::fchmod(fd, FileMode::from_raw_mode(permissions)).map_err(|e| io("chmod", e))?;
        let ring_total = layout::HEADER_SIZE as u64 + capacity;
        // A durable queue has its subscriptions' ack areas after the data region; only
        // those of subscriptions with explicit acks get memory, when they are created.
        let total = ring_total + if spec.durable.is_some() { layout::ACKS_SIZE as u64 } else { 0 };
        rustix::fs::ftruncate(fd, total).map_err(|e| io("resize", e))?;
        // Reserve the pages now: a /dev/shm too small fails here, not as a SIGBUS later.
        match rustix::fs::fallocate(fd, FallocateFlags::empty(), 0, ring_total) {
            Ok(()) | Err(Errno::OPNOTSUPP) => {}
            Err(Errno::NOSPC) => {
                return Err(Error::Io {
                    context: format!(
                        "create {name:?}: {SHM_DIR} has no room for {total} bytes (capacity plus {} header); \
                         see `df -h {SHM_DIR}` (containers often give it only 64 MiB)",
                        layout::HEADER_SIZE
                    ),
                    source: std::io::Error::from_raw_os_error(libc::ENOSPC),
                });
            }
            Err(e) => return Err(io("reserve memory for", e)),
        }
        let len = usize::try_from(total).map_err(|_| Error::InvalidArgument("capacity too large".into()))?;
        let base = map(fd, len, Access::ReadWrite)?;
        let config = Config {
            name: name.to_owned(),
            mode,
            capacity,
            max_message,
            permissions,
            creator_pid: std::process::id(),
            created_unix_ns: now_unix_ns(),
            salt: new_salt(),
            durable: spec.durable.as_ref().map(|d| d.config.clone()),
        };
        {
            // SAFETY: the mapping is `len >= HEADER_SIZE` bytes, page aligned, and Header is
            // made of atomics (valid for any bytes, here all zero).
            let h = unsafe { &*base.as_ptr().cast::<Header>() };
            let id = &h.identity;
            // Relaxed: published by the Release store of `state` below.
            id.magic.store(layout::MAGIC, Ordering::Relaxed);
            id.layout_version.store(layout::LAYOUT_VERSION, Ordering::Relaxed);
            id.layout_hash.store(layout::layout_hash(), Ordering::Relaxed);
            id.mode.store(mode.to_raw(), Ordering::Relaxed);
            id.max_message.store(max_message, Ordering::Relaxed);
            id.capacity.store(capacity, Ordering::Relaxed);
            id.data_offset.store(layout::HEADER_SIZE as u64, Ordering::Relaxed);
            id.total_size.store(total, Ordering::Relaxed);
            id.creator_pid.store(config.creator_pid, Ordering::Relaxed);
            id.permissions.store(permissions, Ordering::Relaxed);
            id.created_unix_ns.store(config.created_unix_ns, Ordering::Relaxed);
            id.salt.store(config.salt, Ordering::Relaxed);
            // SAFETY: entry 0 of the subscription table lies within the mapping (HEADER_SIZE
            // covers the table), 128-byte aligned; SubMeta is made of atomics.
            let meta0 = unsafe {
                &*base
                    .as_ptr()
                    .add(layout::SUBS_OFFSET + std::mem::offset_of!(layout::SubEntry, meta))
                    .cast::<layout::SubMeta>()
            };
            crate::queue::init_default_subscription(h, meta0);
            if let Some(d) = &spec.durable {
                init_durable(h, d);
            }
            // SYNC POINT: Release pairs with the opener's Acquire load of `state`.
            id.state.store(layout::STATE_READY, Ordering::Release);
        }
        // SAFETY: `base`/`len` are the mapping made above, unused after this.
        let _ = unsafe { rustix::mm::munmap(base.as_ptr().cast(), len) };
        Ok(config)
    }

    /// Opens and validates an existing queue. An unfinished object is waited for while some
    /// process holds its creation lock (builds before this one created objects in place,
    /// under that lock); one whose lock is free is given [`ABANDONED_GRACE`] to change, then
    /// reported as [`OpenError::CreatorDied`].
    ///
    /// The segment's descriptor is entered in the fork table before it can hold any lock;
    /// if a `fork()` ran meanwhile (the child may have a copy of the descriptor that the
    /// table does not know), the segment is dropped and opened anew.
    pub fn open(name: &str, access: Access) -> std::result::Result<Segment, OpenError> {
        validate_name(name)?;
        for _ in 0..100 {
            let forks = fork::forks_started();
            let mut seg = Self::open_unregistered(name, access)?;
            seg.fork_entry = fork::enter(&seg.fd, seg.base.as_ptr(), seg.len)?;
            seg.generation = fork::generation();
            seg.opener_pid = std::process::id();
            if fork::forks_started() == forks {
                return Ok(seg);
            }
        }
        Err(Error::Busy("this process keeps forking: no open got through between two forks".into()).into())
    }

    fn open_unregistered(name: &str, access: Access) -> std::result::Result<Segment, OpenError> {
        let oname = object_name(name);
        // Anyone may make `/dev/shm/shmq.NAME`: a FIFO, whose read-only open waits for a
        // writer (forever, in a monitoring tool), or a symbolic link to a file of ours. So
        // non-blocking (no effect on a shared-memory object) and not through a link (which
        // glibc's `shm_open` does not follow either; `rustix::shm` passes the flags on to
        // `open` of `/dev/shm/NAME`); `try_validate` refuses what is not a regular file.
        let guard = rustix::fs::OFlags::NONBLOCK.bits() | rustix::fs::OFlags::NOFOLLOW.bits();
        let flags = match access {
            Access::ReadOnly => shm::OFlags::RDONLY,
            Access::ReadWrite => shm::OFlags::RDWR,
        };
        let flags = shm::OFlags::from_bits_retain(flags.bits() | guard);
        let fd = shm::open(&oname, flags, FileMode::empty()).map_err(|e| Error::os(e, "open", name))?;
        let started = Instant::now();
        let mut unlocked_since = None;
        loop {
            match Self::try_validate(&fd, name, access)? {
                Some(seg) => return Ok(seg),
                None => {
                    // Unfinished: wait while its creator lives and holds the lock.
                    if !ofd_held(&fd, layout::CREATOR_LOCK_BYTE) {
                        let since = *unlocked_since.get_or_insert_with(Instant::now);
                        if since.elapsed() > ABANDONED_GRACE {
                            return Err(OpenError::CreatorDied);
                        }
                    } else {
                        unlocked_since = None;
                    }
                    if started.elapsed() > READY_WAIT {
                        return Err(Error::Busy(format!(
                            "queue {} is still being created by another process",
                            shown(name)
                        ))
                        .into());
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
    }

    /// `Ok(None)` while the object is unfinished (too small, or not ready).
    fn try_validate(fd: &OwnedFd, name: &str, access: Access) -> Result<Option<Segment>> {
        let corrupt = |what: String| Error::Corrupt(format!("{}: {what}", shown(name)));
        let st = rustix::fs::fstat(fd).map_err(|e| Error::os(e, "stat", name))?;
        let kind = rustix::fs::FileType::from_raw_mode(st.st_mode);
        if kind != rustix::fs::FileType::RegularFile {
            return Err(corrupt(format!("not a shared-memory object but a {kind:?}")));
        }
        check_owner(name, st.st_uid, st.st_gid, st.st_mode, access)?;
        let size = u64::try_from(st.st_size).unwrap_or(0);
        if size < layout::HEADER_SIZE as u64 {
            return if size == 0 {
                Ok(None)
            } else {
                Err(corrupt(format!("object of {size} bytes is smaller than a header")))
            };
        }
        let hbase = map(fd, layout::HEADER_SIZE, access)?;
        // SAFETY: HEADER_SIZE bytes are mapped (the object is at least that large), page
        // aligned; Header is made of atomics, valid for any bytes.
        let h = unsafe { &*hbase.as_ptr().cast::<Header>() };
        let id = &h.identity;
        // Read every field once, into locals. SYNC POINT: Acquire pairs with the creator's
        // Release store of `state`.
        let state = id.state.load(Ordering::Acquire);
        // Relaxed: ordered after the Acquire above.
        let magic = id.magic.load(Ordering::Relaxed);
        let version = id.layout_version.load(Ordering::Relaxed);
        let hash = id.layout_hash.load(Ordering::Relaxed);
        let mode = id.mode.load(Ordering::Relaxed);
        let max_message = id.max_message.load(Ordering::Relaxed);
        let capacity = id.capacity.load(Ordering::Relaxed);
        let data_offset = id.data_offset.load(Ordering::Relaxed);
        let total_size = id.total_size.load(Ordering::Relaxed);
        let salt = id.salt.load(Ordering::Relaxed);
        let config = Config {
            name: name.to_owned(),
            mode: Mode::Spsc,
            capacity,
            max_message,
            permissions: id.permissions.load(Ordering::Relaxed),
            creator_pid: id.creator_pid.load(Ordering::Relaxed),
            created_unix_ns: id.created_unix_ns.load(Ordering::Relaxed),
            salt,
            durable: None,
        };
        // Relaxed: ordered after the Acquire above; validated below, once the version is known.
        let durable = read_durable(h);
        // SAFETY: the header mapping made above; `h` is not used after this.
        let _ = unsafe { rustix::mm::munmap(hbase.as_ptr().cast(), layout::HEADER_SIZE) };

        if state == layout::STATE_INITIALIZING && magic == 0 {
            return Ok(None); // nothing written yet
        }
        if magic != layout::MAGIC {
            return Err(corrupt(format!(
                "not a shmq queue: its first 8 bytes are {:?}, not shmq's magic {:?}",
                String::from_utf8_lossy(&magic.to_le_bytes()),
                String::from_utf8_lossy(&layout::MAGIC.to_le_bytes())
            )));
        }
        if state == layout::STATE_INITIALIZING {
            return Ok(None);
        }
        if state != layout::STATE_READY {
            return Err(corrupt(format!("unknown state {state} (expected 0 or 1)")));
        }
        if version != layout::LAYOUT_VERSION {
            return Err(Error::Incompatible(format!(
                "queue {} has layout version {version}, this build reads version {}",
                shown(name),
                layout::LAYOUT_VERSION
            )));
        }
        if hash != layout::layout_hash() {
            return Err(Error::Incompatible(format!("queue {} was made by a build with another layout", shown(name))));
        }
        let mode = Mode::from_raw(mode).ok_or_else(|| corrupt(format!("unknown mode {mode}")))?;
        let durable = durable.map_err(corrupt)?;
        let prefix = if durable.is_some() { DURABLE_PREFIX } else { 0 };
        if Geometry::new(capacity, max_message.saturating_add(prefix), salt).is_none() {
            return Err(corrupt(format!(
                "capacity {capacity} / max_message {max_message} / salt {salt:#x} out of bounds"
            )));
        }
        if data_offset != layout::HEADER_SIZE as u64 {
            return Err(corrupt(format!("data offset {data_offset}")));
        }
        let acks = if durable.is_some() { layout::ACKS_SIZE as u64 } else { 0 };
        let expect = layout::HEADER_SIZE as u64 + capacity + acks;
        if total_size != expect {
            return Err(corrupt(format!("total size {total_size} does not match capacity {capacity}")));
        }
        if size != expect {
            return Err(corrupt(format!("object is {size} bytes, its header says {expect} (truncated or resized?)")));
        }
        let len = usize::try_from(expect).map_err(|_| corrupt("too large to map".into()))?;
        let base = map(fd, len, access)?;
        let fd = fd.try_clone().map_err(|e| Error::Io { context: "dup".into(), source: e })?;
        Ok(Some(Segment {
            fd,
            base,
            len,
            config: Config { mode, durable, ..config },
            fork_entry: usize::MAX,
            generation: 0,
            opener_pid: 0,
        }))
    }

    /// Marks the queue closed, wakes every waiter, and unlinks its name.
    pub fn remove(name: &str) -> Result<()> {
        validate_name(name)?;
        let seg = match Segment::open(name, Access::ReadWrite) {
            Ok(seg) => Some(seg),
            // A broken or unfinished object is still ours to unlink.
            Err(OpenError::Other(Error::NotFound(n))) => return Err(Error::NotFound(n)),
            Err(_) => None,
        };
        // Unlink first: a user who may write the queue but not remove it (a group member:
        // /dev/shm is sticky) gets the refusal and leaves the queue working, not closed.
        shm::unlink(object_name(name)).map_err(|e| Error::os(e, "remove", name))?;
        if let Some(seg) = seg {
            let h = seg.header();
            // Release: a waiter that sees `closed` sees everything before the removal.
            h.identity.closed.store(1, Ordering::Release);
            let futex = crate::sync::futex::OsFutex;
            crate::sync::wait::wake_unconditionally(seg.data_words(), &futex);
            crate::sync::wait::wake_unconditionally(seg.space_words(), &futex);
            for i in 1..layout::SUBSCRIPTIONS {
                crate::sync::wait::wake_unconditionally(seg.wait_words(&seg.sub(i).wait), &futex);
            }
        }
        Ok(())
    }

    /// Names of every queue on the host, sorted.
    pub fn list() -> Result<Vec<String>> {
        let dir =
            std::fs::read_dir(SHM_DIR).map_err(|e| Error::Io { context: format!("read {SHM_DIR}"), source: e })?;
        let mut names: Vec<String> = dir
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter_map(|n| n.strip_prefix(PREFIX).map(str::to_owned))
            .filter(|n| validate_name(n).is_ok())
            .collect();
        names.sort();
        // A directory read while others create and remove entries may return one twice
        // (`shmq top` once showed a queue twice in one refresh while a test made and removed
        // queues): each name once.
        names.dedup();
        Ok(names)
    }

    /// Unlinks `name` if it is an unfinished object whose creator is dead (used by
    /// `open_or_create`). Death is proven, not guessed: we take the creation lock ourselves
    /// (so no creator holds it, and no second replacer can run this on the same object at
    /// once), then, under that lock, check that the object is still unfinished and that the
    /// name still refers to the object we locked (same inode and device), and only then
    /// unlink. A concurrent replacer that already swapped in a fresh object makes the
    /// inode differ, so we never unlink someone else's new queue. The one thing this cannot
    /// exclude is a `Queue::remove` plus a `create` by others between our inode check and
    /// our unlink (microseconds); a remove racing a create is a race at the caller's level.
    pub fn remove_abandoned(name: &str) -> Result<()> {
        let oname = object_name(name);
        let fd = match shm::open(&oname, shm::OFlags::RDWR, FileMode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(()),
            Err(e) => return Err(Error::os(e, "open", name)),
        };
        let got = ofd_setlk(&fd, layout::CREATOR_LOCK_BYTE, libc::F_WRLCK as libc::c_short)
            .map_err(|e| Error::Io { context: format!("lock queue {}", shown(name)), source: e })?;
        if !got {
            return Ok(()); // a creator (or another replacer) holds it: the caller retries
        }
        if !matches!(Self::try_validate(&fd, name, Access::ReadOnly), Ok(None)) {
            return Ok(()); // finished meanwhile, or broken in a way we do not repair
        }
        let ours = rustix::fs::fstat(&fd).map_err(|e| Error::os(e, "stat", name))?;
        match rustix::fs::stat(object_path(name)) {
            Ok(now) if now.st_ino == ours.st_ino && now.st_dev == ours.st_dev => {}
            _ => return Ok(()), // the name moved on to another object (or is gone)
        }
        match shm::unlink(&oname) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(Error::os(e, "remove", name)),
        }
        // `fd` closes here, releasing the creation lock of the unlinked object.
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// `Err(InvalidArgument)` if this segment was opened by a parent of this process and
    /// inherited through `fork()`: its locks stayed with the parent, so a handle on it must
    /// not be used here (open a new one). One relaxed load; no system call.
    #[inline]
    pub fn check_same_process(&self) -> Result<()> {
        if fork::generation() == self.generation {
            return Ok(());
        }
        Err(self.inherited())
    }

    #[cold]
    fn inherited(&self) -> Error {
        Error::InvalidArgument(format!(
            "this handle on queue {} was opened by process {} and inherited through fork(); \
             a forked child must open its own handles",
            shown(&self.config.name),
            self.opener_pid
        ))
    }

    pub fn header(&self) -> &Header {
        // SAFETY: the mapping is at least HEADER_SIZE bytes (validated), page aligned, and
        // lives as long as `self`; Header is made of atomics, valid for any bytes.
        unsafe { &*self.base.as_ptr().cast::<Header>() }
    }

    /// Participant slot `i < SLOTS`.
    pub fn slot(&self, i: usize) -> &Slot {
        assert!(i < layout::SLOTS);
        // SAFETY: the table lies within the header (HEADER_SIZE = TABLE_OFFSET + SLOTS *
        // LINE), each slot 128-byte aligned; Slot is made of atomics.
        unsafe { &*self.base.as_ptr().add(layout::TABLE_OFFSET + i * layout::LINE).cast::<Slot>() }
    }

    /// Subscription entry `i < SUBSCRIPTIONS`.
    pub fn sub(&self, i: usize) -> &layout::SubEntry {
        assert!(i < layout::SUBSCRIPTIONS);
        // SAFETY: the subscription table lies within the header (HEADER_SIZE covers it),
        // each entry 128-byte aligned; SubEntry is made of atomics.
        unsafe {
            &*self
                .base
                .as_ptr()
                .add(layout::SUBS_OFFSET + i * std::mem::size_of::<layout::SubEntry>())
                .cast::<layout::SubEntry>()
        }
    }

    /// Member table entry `j < MEMBERS` (that of participant slot `j`).
    pub fn member(&self, j: usize) -> &layout::MemberSlot {
        assert!(j < layout::MEMBERS);
        // SAFETY: the member table lies within the header, each entry 128-byte aligned;
        // MemberSlot is made of atomics.
        unsafe { &*self.base.as_ptr().add(layout::MEMBERS_OFFSET + j * layout::LINE).cast::<layout::MemberSlot>() }
    }

    /// The cursor word of subscription entry `i`: the default subscription's is the
    /// consumer position.
    #[inline]
    pub fn cursor(&self, i: usize) -> &crate::sync::atomic::AtomicU64 {
        if i == 0 { &self.header().consumer.head } else { &self.sub(i).cursor.cursor }
    }

    /// Takes the admin lock (which serializes creating and removing subscriptions), waiting
    /// at most `timeout` for a live holder; `Busy` after that.
    pub fn lock_admin(&self, timeout: std::time::Duration) -> Result<AdminLock<'_>> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let got = ofd_setlk(&self.fd, layout::ADMIN_LOCK_BYTE, libc::F_WRLCK as libc::c_short).map_err(|e| {
                Error::Io {
                    context: format!("lock the subscriptions of queue {}", shown(&self.config.name)),
                    source: e,
                }
            })?;
            if got {
                return Ok(AdminLock { seg: self });
            }
            if std::time::Instant::now() >= deadline {
                return Err(Error::Busy(format!(
                    "another process has been creating or removing a subscription of queue {} for {timeout:?}",
                    shown(&self.config.name)
                )));
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    /// Takes the checkpoint writer's lock if nobody holds it (never waits): `true` if
    /// taken; give it back with [`unlock_checkpoint`](Self::unlock_checkpoint).
    pub fn try_lock_checkpoint(&self) -> bool {
        matches!(ofd_setlk(&self.fd, layout::CHECKPOINT_LOCK_BYTE, libc::F_WRLCK as libc::c_short), Ok(true))
    }

    /// Drops the lock taken with [`try_lock_checkpoint`](Self::try_lock_checkpoint).
    pub fn unlock_checkpoint(&self) {
        let _ = ofd_setlk(&self.fd, layout::CHECKPOINT_LOCK_BYTE, libc::F_UNLCK as libc::c_short);
    }

    /// Takes participant slot `j`'s lock if nobody holds it (its holder died, or it is
    /// free): `true` if taken. Used to take over a dead member's claim; give it back with
    /// [`unlock_slot`](Self::unlock_slot).
    pub fn try_lock_slot(&self, j: usize) -> bool {
        matches!(ofd_setlk(&self.fd, layout::SLOT_LOCK_BASE + j as u64, libc::F_WRLCK as libc::c_short), Ok(true))
    }

    /// Drops a lock taken with [`try_lock_slot`](Self::try_lock_slot).
    pub fn unlock_slot(&self, j: usize) {
        let _ = ofd_setlk(&self.fd, layout::SLOT_LOCK_BASE + j as u64, libc::F_UNLCK as libc::c_short);
    }

    /// Tries to take the journal role (never waits): `true` if taken. It only elects one
    /// writer for efficiency; give it back with [`unlock_journal`](Self::unlock_journal).
    pub fn try_lock_journal(&self) -> bool {
        matches!(ofd_setlk(&self.fd, layout::JOURNAL_LOCK_BYTE, libc::F_WRLCK as libc::c_short), Ok(true))
    }

    /// Drops the journal role taken with [`try_lock_journal`](Self::try_lock_journal).
    pub fn unlock_journal(&self) {
        let _ = ofd_setlk(&self.fd, layout::JOURNAL_LOCK_BYTE, libc::F_UNLCK as libc::c_short);
    }

    /// The futex pair producers waiting for their messages' sync sleep on.
    pub fn durable_words(&self) -> crate::sync::wait::WaitWords<'_> {
        self.wait_words(&self.header().durable_wait)
    }

    /// The futex pair of `line`, a wait line of this segment's header.
    #[inline]
    pub fn wait_words<'a>(&'a self, line: &'a layout::WaitLine) -> crate::sync::wait::WaitWords<'a> {
        // The line's offset names it in the sleep table, the same in every process.
        let offset = (line as *const layout::WaitLine as usize).wrapping_sub(self.base.as_ptr() as usize);
        debug_assert!(offset < layout::HEADER_SIZE && offset % layout::LINE == 0);
        crate::sync::wait::WaitWords {
            waiters: &line.waiters,
            epoch: &line.epoch,
            asleep: &line.asleep,
            tags: &self.header().sleeping.tags,
            line: offset,
        }
    }

    /// The data region.
    pub fn region(&self) -> PtrRegion {
        // SAFETY: `len = HEADER_SIZE + capacity` bytes are mapped for the life of `self`;
        // the region (and anything borrowed from it) is used only while `self` lives.
        unsafe { PtrRegion::new(self.base.as_ptr().add(layout::HEADER_SIZE), self.config.capacity as usize) }
    }

    /// The ack area of subscription entry `i` (its options and in-flight table): `None` on
    /// a volatile queue, which has none.
    pub fn acks(&self, i: usize) -> Option<Acks<'_>> {
        assert!(i < layout::SUBSCRIPTIONS);
        self.config.durable.as_ref()?;
        let off = layout::HEADER_SIZE + self.config.capacity as usize + i * layout::ACK_AREA;
        debug_assert!(off + layout::ACK_AREA <= self.len);
        // SAFETY: a durable queue's mapping is `HEADER_SIZE + capacity + ACKS_SIZE` bytes
        // (validated at open), so the area lies within it, 128-byte aligned (the capacity
        // is a power of two of at least 1024, ACK_AREA a multiple of 128); AckMeta and
        // InFlight are made of atomics, valid for any bytes.
        unsafe {
            let base = self.base.as_ptr().add(off);
            Some(Acks {
                meta: &*base.cast::<layout::AckMeta>(),
                entries: std::slice::from_raw_parts(
                    base.add(layout::LINE).cast::<layout::InFlight>(),
                    layout::IN_FLIGHT_ENTRIES,
                ),
            })
        }
    }

    /// Gives subscription entry `i`'s ack area its memory (a subscription with explicit
    /// acks is being created): a /dev/shm too small fails here, never as a SIGBUS later.
    pub fn reserve_acks(&self, i: usize) -> Result<()> {
        let off = layout::HEADER_SIZE as u64 + self.config.capacity + (i * layout::ACK_AREA) as u64;
        match rustix::fs::fallocate(&self.fd, FallocateFlags::empty(), off, layout::ACK_AREA as u64) {
            Ok(()) | Err(Errno::OPNOTSUPP) => Ok(()),
            Err(Errno::NOSPC) => Err(Error::Io {
                context: format!(
                    "queue {}: {SHM_DIR} has no room for a subscription's in-flight table ({} bytes)",
                    shown(&self.config.name),
                    layout::ACK_AREA
                ),
                source: std::io::Error::from_raw_os_error(libc::ENOSPC),
            }),
            Err(e) => Err(Error::os(e, "reserve memory for", &self.config.name)),
        }
    }

    #[inline]
    pub fn data_words(&self) -> crate::sync::wait::WaitWords<'_> {
        self.wait_words(&self.header().data_wait)
    }

    #[inline]
    pub fn space_words(&self) -> crate::sync::wait::WaitWords<'_> {
        self.wait_words(&self.header().space_wait)
    }

    pub fn is_closed(&self) -> bool {
        // Acquire: pairs with the Release in `remove`.
        self.header().identity.closed.load(Ordering::Acquire) != 0
    }

    /// Whether some process holds slot `i`'s lock (alive, possibly stopped).
    pub fn slot_alive(&self, i: usize) -> bool {
        ofd_held(&self.fd, layout::SLOT_LOCK_BASE + i as u64)
    }

    /// Takes the first free slot in `range` for `role`: the kernel arbitrates through the
    /// slot's OFD lock. A slot whose holder died is taken over (its counters are folded into
    /// the retired totals first).
    pub fn register(&self, range: std::ops::Range<usize>, role: u32) -> Result<usize> {
        self.register_if(range, role, |_| false)
    }

    /// [`register`](Self::register), where a slot whose member table entry records a claim
    /// (a member that died holding messages) is taken only if `adopt` says so (a member of
    /// the same subscription, which then delivers them); others skip it.
    pub fn register_if(
        &self,
        range: std::ops::Range<usize>,
        role: u32,
        adopt: impl Fn(&layout::MemberSlot) -> bool,
    ) -> Result<usize> {
        for i in range.clone() {
            let got = ofd_setlk(&self.fd, layout::SLOT_LOCK_BASE + i as u64, libc::F_WRLCK as libc::c_short).map_err(
                |e| Error::Io { context: format!("lock a slot of queue {}", shown(&self.config.name)), source: e },
            )?;
            if !got {
                continue;
            }
            let slot = self.slot(i);
            let m = self.member(i);
            // Relaxed: the lock orders us after the previous holder's stores.
            let claimed = |m: &layout::MemberSlot| {
                crate::ring::cursors::claim_state(m.claim_state.load(Ordering::Relaxed)) != layout::CLAIM_NONE
            };
            if claimed(m) && self.stale_claim(m) {
                // Its subscription is gone (removed, maybe made anew in the same entry):
                // nobody will take the claim over, and producers no longer wait for it.
                crate::ring::cursors::release(crate::ring::cursors::Cursors::claim(self, i));
            }
            if claimed(m) && !adopt(m) {
                let _ = ofd_setlk(&self.fd, layout::SLOT_LOCK_BASE + i as u64, libc::F_UNLCK as libc::c_short);
                continue;
            }
            if self.unresolved_claim(i) {
                // A producer that held this slot died holding a claim readers have not
                // passed yet: they need its record to pass it (and its lock free, to know it
                // dead), so this slot serves nobody until they have, whatever the new
                // participant's role (a member's would clear the record, too).
                let _ = ofd_setlk(&self.fd, layout::SLOT_LOCK_BASE + i as u64, libc::F_UNLCK as libc::c_short);
                continue;
            }
            // Relaxed throughout: the lock (a system call) orders us after the previous
            // holder; readers (inspect) take these as a snapshot.
            slot.claim_pos.store(layout::NO_CLAIM, Ordering::Relaxed);
            if slot.state.load(Ordering::Relaxed) != layout::SLOT_FREE {
                self.retire(i);
            }
            // What a dead member held unacknowledged is delivered again.
            crate::queue::acks::release_orphans(self, i);
            self.leave_subscription(i);
            self.clear_dead_sleepers(i);
            slot.role.store(role, Ordering::Relaxed);
            slot.pid.store(std::process::id(), Ordering::Relaxed);
            slot.start_time.store(self_start_time(), Ordering::Relaxed);
            slot.heartbeat_unix_ns.store(now_unix_ns(), Ordering::Relaxed);
            // Release: `inspect` reads the fields above after its Acquire load of `state`.
            slot.state.store(layout::SLOT_ACTIVE, Ordering::Release);
            return Ok(i);
        }
        let what = if range.len() == 1 {
            // Relaxed: for the message only.
            let pid = self.slot(range.start).pid.load(Ordering::Relaxed);
            let who = if range.start == 0 { "consumer" } else { "producer" };
            format!("queue {} already has a live {who} (pid {pid})", shown(&self.config.name))
        } else {
            format!("participant table of queue {} is full ({} producers)", shown(&self.config.name), range.len())
        };
        Err(Error::Busy(what))
    }

    /// Whether member entry `m` (whose slot's lock we hold) belongs to a subscription that no
    /// longer exists.
    fn stale_claim(&self, m: &layout::MemberSlot) -> bool {
        // Relaxed: the slot's lock orders us after its holder; the entry's state is changed
        // under the admin lock, and a stale read only keeps a claim one registration longer.
        let sub = m.sub.load(Ordering::Relaxed) as usize;
        if !(1..layout::SUBSCRIPTIONS).contains(&sub) {
            return true;
        }
        let meta = &self.sub(sub).meta;
        meta.state.load(Ordering::Relaxed) != layout::SUB_ACTIVE
            || meta.generation.load(Ordering::Relaxed) != m.generation.load(Ordering::Relaxed)
    }

    /// Takes slot `i` (whose lock we hold) out of the subscription its member table entry
    /// names, if any: a member that died, or one leaving. An entry that still records a
    /// claim stays as it is: the claim keeps its bytes from producers until a member of the
    /// subscription adopts it (a registrant taking the slot, or a member finding it).
    pub fn leave_subscription(&self, i: usize) {
        let m = self.member(i);
        // Relaxed: the slot's lock orders us after its previous holder.
        if m.state.load(Ordering::Relaxed) != layout::SLOT_ACTIVE
            || crate::ring::cursors::claim_state(m.claim_state.load(Ordering::Relaxed)) != layout::CLAIM_NONE
        {
            return;
        }
        let sub = m.sub.load(Ordering::Relaxed) as usize;
        if (1..layout::SUBSCRIPTIONS).contains(&sub) {
            // Relaxed: producers read the mask after an Acquire load of the cursor; a bit
            // cleared late only makes them read one more claim (ours, none).
            self.sub(sub).cursor.members.fetch_and(!(1u64 << i), Ordering::Relaxed);
            // Relaxed: this slot sleeps no more on that line.
            self.sub(sub).wait.waiters.fetch_and(!(1u64 << i), Ordering::Relaxed);
            for set in &self.sub(sub).wait.asleep {
                set.fetch_and(!(1u64 << i), Ordering::Relaxed);
            }
        }
        m.state.store(layout::SLOT_FREE, Ordering::Relaxed);
    }

    /// Whether slot `i` (whose lock we hold) records a claim that readers have not passed:
    /// its end is above the published consumer position.
    fn unresolved_claim(&self, i: usize) -> bool {
        let slot = self.slot(i);
        // Relaxed: the lock orders us after the previous holder's stores; `head` is read
        // with Acquire so that a claim the consumer already passed is seen as passed.
        let pos = slot.claim_pos.load(Ordering::Relaxed);
        let end = slot.claim_end.load(Ordering::Relaxed);
        let head = self.header().consumer.head.load(Ordering::Acquire) & !crate::ring::cursors::FLAGS;
        pos != layout::NO_CLAIM && end > head && pos <= end && end - pos <= self.config.capacity
    }

    /// The claim records of the producer slots, for a reader stuck behind a claim. Read
    /// after an Acquire load of `tail` (see `ring::reclaim`).
    pub fn claims(&self) -> Vec<crate::ring::reclaim::Claim> {
        (1..layout::SLOTS)
            .filter_map(|i| {
                let s = self.slot(i);
                // Relaxed: ordered after the caller's Acquire load of `tail` (the claim's
                // Release CAS made them visible); copied once, validated by the ring.
                let pos = s.claim_pos.load(Ordering::Relaxed);
                let end = s.claim_end.load(Ordering::Relaxed);
                (pos != layout::NO_CLAIM && end != 0).then_some(crate::ring::reclaim::Claim { slot: i, pos, end })
            })
            .collect()
    }

    /// Clears slot `i`'s claim record if it still says `pos` (its holder was proven dead
    /// and the claim passed); a new holder's record is left alone.
    pub fn clear_claim(&self, i: usize, pos: u64) {
        // Relaxed: a tidy-up; the registration check reads it under the slot's lock.
        let _ = self.slot(i).claim_pos.compare_exchange(pos, layout::NO_CLAIM, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// The producer slots' claim words, for the MPSC ring.
    pub fn claim_words(&self, i: usize) -> crate::ring::mpsc::ClaimWords<'_> {
        let s = self.slot(i);
        crate::ring::mpsc::ClaimWords { pos: &s.claim_pos, end: &s.claim_end }
    }

    /// Clears the waiter-set bits of participants that died asleep (ours, `mine`, and on an
    /// MPSC queue any other producer slot whose lock nobody holds): otherwise every waker
    /// would make a system call for them on every message. A bit may be cleared only while
    /// its slot cannot be in use, so we hold the slot's lock while clearing it. Single-holder
    /// slots (the consumer's, the SPSC producer's) are left to their next holder: holding
    /// their lock even briefly would make a concurrent open fail with `Busy`; a producer
    /// registering meanwhile at worst moves on to the next free slot.
    fn clear_dead_sleepers(&self, mine: usize) {
        let h = self.header();
        let reapable = match self.config.mode {
            Mode::Mpsc => !1u64 & !(1u64 << mine), // producer slots but ours
            Mode::Spsc => 0,
        };
        let lines = [&h.data_wait, &h.space_wait];
        let sets = lines.iter().flat_map(|l| l.asleep.iter());
        for words in lines.iter().map(|l| &l.waiters).chain(sets) {
            // Relaxed: only a slot's holder sets its bit, and we hold (or take) the lock of
            // every slot whose bit we clear; the lock's system calls order the rest.
            words.fetch_and(!(1u64 << mine), Ordering::Relaxed);
            let others = words.load(Ordering::Relaxed) & reapable;
            for j in (0..layout::SLOTS).filter(|j| others & (1u64 << j) != 0) {
                let byte = layout::SLOT_LOCK_BASE + j as u64;
                if let Ok(true) = ofd_setlk(&self.fd, byte, libc::F_WRLCK as libc::c_short) {
                    words.fetch_and(!(1u64 << j), Ordering::Relaxed);
                    let _ = ofd_setlk(&self.fd, byte, libc::F_UNLCK as libc::c_short);
                }
            }
        }
    }

    /// Folds slot `i`'s counters into the retired totals and zeroes them. Only the slot's
    /// lock holder calls this.
    fn retire(&self, i: usize) {
        let slot = self.slot(i);
        let retired = &self.header().retired;
        // By index, not by the slot's `role` word: slot 0 is the consumer's.
        let to = if i == 0 { &retired.consumers } else { &retired.producers };
        // Relaxed: the slot's lock orders us after its holder.
        if i != 0 && slot.role.load(Ordering::Relaxed) == layout::ROLE_MEMBER {
            // A member's counters go to its subscription's totals (if it still has one).
            let m = self.member(i);
            let sub = m.sub.load(Ordering::Relaxed) as usize;
            let c = &slot.counters;
            // Relaxed: statistics; `swap` so that a value is never counted twice.
            let (msgs, bytes) = (c.messages.swap(0, Ordering::Relaxed), c.bytes.swap(0, Ordering::Relaxed));
            for w in [&c.full_events, &c.wake_calls, &c.wait_calls] {
                w.store(0, Ordering::Relaxed);
            }
            if (1..layout::SUBSCRIPTIONS).contains(&sub) {
                let meta = &self.sub(sub).meta;
                meta.retired_messages.fetch_add(msgs, Ordering::Relaxed);
                meta.retired_bytes.fetch_add(bytes, Ordering::Relaxed);
            }
            return;
        }
        fold(&slot.counters, to);
    }

    /// Gives slot `i` back (its counters to the retired totals) and drops its lock.
    /// Does nothing in a forked child: the slot is the parent's.
    pub fn deregister(&self, i: usize) {
        if self.check_same_process().is_err() {
            return;
        }
        self.retire(i);
        self.leave_subscription(i);
        let slot = self.slot(i);
        // Relaxed: information for `inspect`; the unlock orders it for a successor. A
        // producer leaving normally has no claim left open (its grants are finished).
        slot.claim_pos.store(layout::NO_CLAIM, Ordering::Relaxed);
        slot.pid.store(0, Ordering::Relaxed);
        slot.state.store(layout::SLOT_FREE, Ordering::Release);
        let _ = ofd_setlk(&self.fd, layout::SLOT_LOCK_BASE + i as u64, libc::F_UNLCK as libc::c_short);
    }
}

/// The admin lock of a segment, from [`Segment::lock_admin`]: dropped, it is given back.
pub(crate) struct AdminLock<'a> {
    seg: &'a Segment,
}

impl Drop for AdminLock<'_> {
    fn drop(&mut self) {
        let _ = ofd_setlk(&self.seg.fd, layout::ADMIN_LOCK_BYTE, libc::F_UNLCK as libc::c_short);
    }
}

/// Adds `from` into `to` (RMW: several participants may retire at once) and zeroes `from`.
fn fold(from: &Counters, to: &Counters) {
    let pairs = [
        (&from.messages, &to.messages),
        (&from.bytes, &to.bytes),
        (&from.full_events, &to.full_events),
        (&from.wake_calls, &to.wake_calls),
        (&from.wait_calls, &to.wait_calls),
    ];
    for (f, t) in pairs {
        // Relaxed: statistics; `swap` so that a value is never counted twice.
        let v = f.swap(0, Ordering::Relaxed);
        t.fetch_add(v, Ordering::Relaxed);
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        // Out of the fork table before the mapping goes and `fd` closes (after this
        // function), so that the table never names memory or a descriptor number that
        // something else may reuse.
        fork::leave(self.fork_entry, &self.fd);
        // SAFETY: the mapping made in `try_validate`; nothing borrowed from it outlives
        // `self` (handles borrow their segment).
        let _ = unsafe { rustix::mm::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

/// The fork table: the descriptors of this process's segments, and what a forked child does
/// with them. See the module documentation.
mod fork {
    use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd};
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicI32, AtomicU64, AtomicUsize, Ordering};

    use crate::error::{Error, Result};

    /// Segments open at once in one process, at most.
    const ENTRIES: usize = 4096;
    /// An entry nobody uses.
    const EMPTY: i32 = -1;
    /// An entry being filled in.
    const FILLING: i32 = -2;

    /// One live segment: its descriptor (or `EMPTY`/`FILLING`) and its mapping.
    struct Entry {
        fd: AtomicI32,
        base: AtomicUsize,
        len: AtomicUsize,
    }

    static TABLE: [Entry; ENTRIES] =
        [const { Entry { fd: AtomicI32::new(EMPTY), base: AtomicUsize::new(0), len: AtomicUsize::new(0) } }; ENTRIES];
    /// A descriptor of an empty memfd (or /dev/null): what inherited descriptors become.
    static PLACEHOLDER: AtomicI32 = AtomicI32::new(EMPTY);
    /// Bumped in the child by every `fork()`: a segment opened in another generation was
    /// inherited.
    static GENERATION: AtomicU64 = AtomicU64::new(0);
    /// Bumped in the parent before every `fork()`.
    static FORKS: AtomicU64 = AtomicU64::new(0);

    extern "C" fn prepare() {
        // SeqCst, with `enter` and `forks_started`: either the fork's copy of memory holds
        // a segment's table entry, or the opener's second `forks_started` sees this
        // increment (and opens anew).
        FORKS.fetch_add(1, Ordering::SeqCst);
    }

    /// Runs in the child, right after `fork()`, on its only thread. Async-signal-safe in
    /// practice: atomics and two plain system calls (`dup3`, `mmap`), no lock, no
    /// allocation.
    ///
    /// Both the descriptor and the mapping of a segment hold a reference to the parent's
    /// open file description, and the description's OFD locks live as long as any
    /// reference does: so both are replaced, the descriptor by the placeholder and the
    /// mapping by private zero pages at the same address (an inherited handle that is
    /// used anyway then touches only the child's own memory, never the queue, and never
    /// faults).
    extern "C" fn child() {
        // Relaxed: the child has one thread now; threads it starts later are ordered
        // after this by their creation.
        GENERATION.fetch_add(1, Ordering::Relaxed);
        let placeholder = PLACEHOLDER.load(Ordering::Relaxed);
        for e in &TABLE {
            // Relaxed: this thread's view of memory is the fork's copy; `enter` stored
            // `base` and `len` before `fd` in program order.
            let fd = e.fd.load(Ordering::Relaxed);
            if fd < 0 {
                continue;
            }
            let (base, len) = (e.base.load(Ordering::Relaxed), e.len.load(Ordering::Relaxed));
            // SAFETY: `base..base + len` is the segment's mapping (entries leave the table
            // before their mapping goes), so MAP_FIXED replaces only that; it is never
            // accessed through references the kernel could invalidate (all accesses are
            // atomics or raw copies).
            unsafe {
                libc::mmap(
                    base as *mut libc::c_void,
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_FIXED | libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            if placeholder >= 0 {
                // SAFETY: plain system call on descriptor numbers. `fd` is open (entries
                // leave the table before their descriptor closes); replacing it drops the
                // child's reference to the parent's open file description. The number
                // stays taken (by the placeholder), so the inherited segment's eventual
                // close is harmless.
                unsafe { libc::dup3(placeholder, fd, libc::O_CLOEXEC) };
            }
        }
    }

    /// Opens the placeholder and installs the handlers, once; the OS error if that failed.
    fn install() -> Result<()> {
        static INSTALLED: OnceLock<Option<i32>> = OnceLock::new();
        let error = INSTALLED.get_or_init(|| {
            let placeholder = rustix::fs::memfd_create("shmq-fork-placeholder", rustix::fs::MemfdFlags::CLOEXEC)
                .or_else(|_| {
                    rustix::fs::open("/dev/null", rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC, 0.into())
                });
            match placeholder {
                Ok(fd) => {
                    // Relaxed: published to other threads by the `OnceLock`, to a child by
                    // the fork itself.
                    PLACEHOLDER.store(fd.into_raw_fd(), Ordering::Relaxed);
                    // SAFETY: the handlers are `extern "C" fn()` that never unwind.
                    let r = unsafe { libc::pthread_atfork(Some(prepare), None, Some(child)) };
                    (r != 0).then_some(r)
                }
                Err(e) => Some(e.raw_os_error()),
            }
        });
        match *error {
            None => Ok(()),
            Some(e) => Err(Error::Io {
                context: "prepare for fork() (placeholder file, pthread_atfork)".into(),
                source: std::io::Error::from_raw_os_error(e),
            }),
        }
    }

    /// Enters a segment (its descriptor and mapping) in the table; returns its entry.
    pub(super) fn enter(fd: &OwnedFd, base: *mut u8, len: usize) -> Result<usize> {
        install()?;
        for (i, e) in TABLE.iter().enumerate() {
            // SeqCst here and below: see `prepare`.
            if e.fd.compare_exchange(EMPTY, FILLING, Ordering::SeqCst, Ordering::Relaxed).is_ok() {
                e.base.store(base as usize, Ordering::SeqCst);
                e.len.store(len, Ordering::SeqCst);
                e.fd.store(fd.as_raw_fd(), Ordering::SeqCst);
                return Ok(i);
            }
        }
        Err(Error::Busy(format!("this process has {ENTRIES} queue handles open, the most it may")))
    }

    /// Takes the segment of `fd` (entered at `entry`) out of the table; before its mapping
    /// and descriptor go.
    pub(super) fn leave(entry: usize, fd: &OwnedFd) {
        if let Some(e) = TABLE.get(entry) {
            // SeqCst: a fork after our munmap or close must not copy the entry (the child
            // would replace memory or a descriptor number that something else may have
            // taken by then). Only this segment's owner clears its own entry.
            let _ = e.fd.compare_exchange(fd.as_raw_fd(), EMPTY, Ordering::SeqCst, Ordering::Relaxed);
        }
    }

    /// How many forks this process began (as a parent).
    pub(super) fn forks_started() -> u64 {
        // SeqCst: see `prepare`.
        FORKS.load(Ordering::SeqCst)
    }

    /// The fork generation of this process.
    #[inline]
    pub(super) fn generation() -> u64 {
        // Relaxed: changed only in a forked child before it has a second thread.
        GENERATION.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_unix_ns_reads_the_same_clock_as_system_time() {
        let ns = |t: std::time::SystemTime| t.duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
        let before = ns(std::time::SystemTime::now());
        let now = now_unix_ns();
        let after = ns(std::time::SystemTime::now());
        // Both read CLOCK_REALTIME: ours lies between two readings around it (a step of the
        // clock between them aside, which a test run does not see).
        assert!(before <= now && now <= after, "{before} <= {now} <= {after}");
    }

    #[test]
    fn the_named_fallback_creates_publishes_once_and_leaves_no_temporary_behind() {
        let name = format!("unit-named-{}", std::process::id());
        let _ = shm::unlink(object_name(&name));
        let temporaries = || {
            std::fs::read_dir(SHM_DIR)
                .unwrap()
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.starts_with(&format!(".shmq-new.{}.", std::process::id())))
                .count()
        };
        let spec = Spec { mode: Mode::Spsc, capacity: 4096, max_message: 64, permissions: 0o600, durable: None };
        let c = Segment::create_named(&name, &spec).unwrap();
        assert!(matches!(Segment::create_named(&name, &spec), Err(Error::Exists(_))));
        let seg = Segment::open(&name, Access::ReadOnly).map_err(Error::from).unwrap();
        assert_eq!(seg.config(), &c);
        assert_eq!(temporaries(), 0);
        drop(seg);
        shm::unlink(object_name(&name)).unwrap();
    }

    #[test]
    fn in_a_forked_child_the_segment_refuses_and_its_descriptor_is_no_longer_the_queue() {
        let name = format!("unit-fork-{}", std::process::id());
        let _ = shm::unlink(object_name(&name));
        Segment::create(&name, Mode::Mpsc, 4096, 64, 0o600).unwrap();
        let seg = Segment::open(&name, Access::ReadWrite).map_err(Error::from).unwrap();
        assert_eq!(seg.register(0..1, layout::ROLE_CONSUMER).unwrap(), 0);
        let ino = rustix::fs::fstat(&seg.fd).unwrap().st_ino;
        // SAFETY: the child only loads atomics, makes system calls, formats one error
        // (glibc's malloc is fork-safe) and leaves with `_exit`.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
        if pid == 0 {
            let refused = matches!(seg.check_same_process(), Err(Error::InvalidArgument(_)));
            let replaced = rustix::fs::fstat(&seg.fd).map(|st| st.st_ino != ino).unwrap_or(false);
            // Relaxed: a plain look; the child's mapping is private zero pages now.
            let unmapped = seg.header().identity.magic.load(Ordering::Relaxed) == 0;
            // SAFETY: leaves the child without running the parent's destructors.
            unsafe { libc::_exit(if refused && replaced && unmapped { 0 } else { 1 }) };
        }
        let mut status = 0;
        // SAFETY: waits for our own child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "child status {status:#x}");
        seg.check_same_process().unwrap();
        let other = Segment::open(&name, Access::ReadOnly).map_err(Error::from).unwrap();
        assert!(other.slot_alive(0), "the parent still holds its slot after the child exited");
        seg.deregister(0);
        assert!(!other.slot_alive(0));
        drop((seg, other));
        shm::unlink(object_name(&name)).unwrap();
    }
}

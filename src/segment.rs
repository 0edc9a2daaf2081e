//! The shared-memory object behind a queue: create, open and validate, remove, list;
//! participant slots and their liveness.
//!
//! Every value read from the header is validated once and copied into [`Config`]; nothing
//! here trusts the segment after that. Liveness comes from the kernel: each participant
//! holds an OFD (open file description) write lock on one byte of the object, which the
//! kernel drops when the process dies (and keeps while it is stopped).

use std::os::fd::{AsRawFd, OwnedFd};
use std::ptr::NonNull;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rustix::fs::{FallocateFlags, Mode as FileMode};
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
}

impl Config {
    pub(crate) fn geometry(&self) -> Geometry {
        Geometry { capacity: self.capacity, max_message: self.max_message, salt: self.salt }
    }
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
/// (`Error::InvalidName` otherwise). Every call that takes a name checks it this way.
///
/// ```
/// assert!(shmq::validate_name("orders.eu-1_a").is_ok());
/// assert!(shmq::validate_name(".hidden").is_err());
/// ```
pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok { Ok(()) } else { Err(Error::InvalidName(name.to_owned())) }
}

fn object_name(name: &str) -> String {
    format!("/{PREFIX}{name}")
}

pub(crate) fn now_unix_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
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
            OpenError::CreatorDied => {
                Error::Corrupt("its creator died before finishing it; remove it or use open_or_create".into())
            }
            OpenError::Other(e) => e,
        }
    }
}

/// A mapped queue segment. Each handle has its own: its own file description (so its own
/// OFD locks) and its own mapping.
pub(crate) struct Segment {
    fd: OwnedFd,
    base: NonNull<u8>,
    len: usize,
    config: Config,
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
    /// Creates a new queue object: `O_CREAT|O_EXCL`, exact permissions, memory reserved,
    /// header written, then `ready` stored with Release.
    pub fn create(name: &str, mode: Mode, capacity: u64, max_message: u32, permissions: u32) -> Result<Config> {
        validate_name(name)?;
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
        let oname = object_name(name);
        let fd = shm::open(
            &oname,
            shm::OFlags::CREATE | shm::OFlags::EXCL | shm::OFlags::RDWR,
            FileMode::from_raw_mode(0o600),
        )
        .map_err(|e| Error::os(e, "create", name))?;
        let result = Self::initialize(&fd, name, mode, capacity, max_message, permissions);
        if result.is_err() {
            let _ = shm::unlink(&oname);
        }
        result
    }

    fn initialize(
        fd: &OwnedFd,
        name: &str,
        mode: Mode,
        capacity: u64,
        max_message: u32,
        permissions: u32,
    ) -> Result<Config> {
        let io = |what: &str, e: Errno| Error::os(e, what, name);
        // Held until the header is ready: an opener that finds the object unfinished and
        // this lock free knows the creator died.
        ofd_setlk(fd, layout::CREATOR_LOCK_BYTE, libc::F_WRLCK as libc::c_short)
            .map_err(|e| Error::Io { context: format!("lock {name:?}"), source: e })?;
        // The umask masked shm_open's mode; fchmod sets exactly what was asked.
        rustix::fs::fchmod(fd, FileMode::from_raw_mode(permissions)).map_err(|e| io("chmod", e))?;
        let total = layout::HEADER_SIZE as u64 + capacity;
        rustix::fs::ftruncate(fd, total).map_err(|e| io("resize", e))?;
        // Reserve the pages now: a /dev/shm too small fails here, not as a SIGBUS later.
        match rustix::fs::fallocate(fd, FallocateFlags::empty(), 0, total) {
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
            // SYNC POINT: Release pairs with the opener's Acquire load of `state`.
            id.state.store(layout::STATE_READY, Ordering::Release);
        }
        // SAFETY: `base`/`len` are the mapping made above, unused after this.
        let _ = unsafe { rustix::mm::munmap(base.as_ptr().cast(), len) };
        let _ = ofd_setlk(fd, layout::CREATOR_LOCK_BYTE, libc::F_UNLCK as libc::c_short);
        Ok(config)
    }

    /// Opens and validates an existing queue.
    pub fn open(name: &str, access: Access) -> std::result::Result<Segment, OpenError> {
        validate_name(name)?;
        let oname = object_name(name);
        let flags = match access {
            Access::ReadOnly => shm::OFlags::RDONLY,
            Access::ReadWrite => shm::OFlags::RDWR,
        };
        let fd = shm::open(&oname, flags, FileMode::empty()).map_err(|e| Error::os(e, "open", name))?;
        let started = Instant::now();
        loop {
            match Self::try_validate(&fd, name, access)? {
                Some(seg) => return Ok(seg),
                None => {
                    // Unfinished: wait while its creator lives and holds the lock.
                    if !ofd_held(&fd, layout::CREATOR_LOCK_BYTE) {
                        // Re-check once: the creator may have finished just now.
                        return match Self::try_validate(&fd, name, access)? {
                            Some(seg) => Ok(seg),
                            None => Err(OpenError::CreatorDied),
                        };
                    }
                    if started.elapsed() > READY_WAIT {
                        return Err(Error::Busy(format!("queue {name:?} is still being created")).into());
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
    }

    /// `Ok(None)` while the object is unfinished (too small, or not ready).
    fn try_validate(fd: &OwnedFd, name: &str, access: Access) -> Result<Option<Segment>> {
        let corrupt = |what: String| Error::Corrupt(format!("{name:?}: {what}"));
        let st = rustix::fs::fstat(fd).map_err(|e| Error::os(e, "stat", name))?;
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
        };
        // SAFETY: the header mapping made above; `h` is not used after this.
        let _ = unsafe { rustix::mm::munmap(hbase.as_ptr().cast(), layout::HEADER_SIZE) };

        if state != layout::STATE_READY {
            if state == layout::STATE_INITIALIZING && magic == 0 {
                return Ok(None);
            }
            if state != layout::STATE_INITIALIZING {
                return Err(corrupt(format!("unknown state {state}")));
            }
        }
        if magic != layout::MAGIC {
            return Err(corrupt("not a shmq queue (bad magic)".into()));
        }
        if state != layout::STATE_READY {
            return Ok(None);
        }
        if version != layout::LAYOUT_VERSION {
            return Err(Error::Incompatible(format!(
                "{name:?} has layout version {version}, this build reads version {}",
                layout::LAYOUT_VERSION
            )));
        }
        if hash != layout::layout_hash() {
            return Err(Error::Incompatible(format!("{name:?} was made by a build with another layout")));
        }
        let mode = Mode::from_raw(mode).ok_or_else(|| corrupt(format!("unknown mode {mode}")))?;
        if Geometry::new(capacity, max_message, salt).is_none() {
            return Err(corrupt(format!(
                "capacity {capacity} / max_message {max_message} / salt {salt:#x} out of bounds"
            )));
        }
        if data_offset != layout::HEADER_SIZE as u64 {
            return Err(corrupt(format!("data offset {data_offset}")));
        }
        let expect = layout::HEADER_SIZE as u64 + capacity;
        if total_size != expect {
            return Err(corrupt(format!("total size {total_size} does not match capacity {capacity}")));
        }
        if size != expect {
            return Err(corrupt(format!("object is {size} bytes, its header says {expect} (truncated or resized?)")));
        }
        let len = usize::try_from(expect).map_err(|_| corrupt("too large to map".into()))?;
        let base = map(fd, len, access)?;
        let fd = fd.try_clone().map_err(|e| Error::Io { context: "dup".into(), source: e })?;
        Ok(Some(Segment { fd, base, len, config: Config { mode, ..config } }))
    }

    /// Marks the queue closed, wakes every waiter, and unlinks its name.
    pub fn remove(name: &str) -> Result<()> {
        validate_name(name)?;
        match Segment::open(name, Access::ReadWrite) {
            Ok(seg) => {
                let h = seg.header();
                // Release: a waiter that sees `closed` sees everything before the removal.
                h.identity.closed.store(1, Ordering::Release);
                let futex = crate::sync::futex::OsFutex;
                crate::sync::wait::wake_unconditionally(seg.data_words(), &futex);
                crate::sync::wait::wake_unconditionally(seg.space_words(), &futex);
            }
            // A broken or unfinished object is still ours to unlink.
            Err(OpenError::Other(Error::NotFound(n))) => return Err(Error::NotFound(n)),
            Err(_) => {}
        }
        shm::unlink(object_name(name)).map_err(|e| Error::os(e, "remove", name))
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
        Ok(names)
    }

    /// Unlinks `name` if it is an unfinished object whose creator is dead (used by
    /// `open_or_create`). We take the creator lock ourselves, so no creator can still be
    /// working on it, and unlink only if the name still refers to the object we locked.
    /// What remains is a narrow window in which another process replaces the object between
    /// our check and the unlink; the loser of that race then gets `NotFound` and retries.
    pub fn remove_abandoned(name: &str) -> Result<()> {
        let oname = object_name(name);
        let fd = match shm::open(&oname, shm::OFlags::RDWR, FileMode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(()),
            Err(e) => return Err(Error::os(e, "open", name)),
        };
        let lock = |k| {
            ofd_setlk(&fd, layout::CREATOR_LOCK_BYTE, k)
                .map_err(|e| Error::Io { context: format!("lock {name:?}"), source: e })
        };
        if !lock(libc::F_WRLCK as libc::c_short)? {
            return Ok(()); // a creator is alive: leave it alone, the caller retries
        }
        let unfinished = matches!(Self::try_validate(&fd, name, Access::ReadOnly), Ok(None));
        let same = match shm::open(&oname, shm::OFlags::RDONLY, FileMode::empty()) {
            Ok(again) => {
                let (a, b) = (rustix::fs::fstat(&fd), rustix::fs::fstat(&again));
                matches!((a, b), (Ok(a), Ok(b)) if a.st_ino == b.st_ino && a.st_dev == b.st_dev)
            }
            Err(_) => false,
        };
        if unfinished && same {
            shm::unlink(&oname)
                .or_else(|e| if e == Errno::NOENT { Ok(()) } else { Err(e) })
                .map_err(|e| Error::os(e, "remove", name))?;
        }
        Ok(())
    }

    pub fn config(&self) -> &Config {
        &self.config
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

    /// The data region.
    pub fn region(&self) -> PtrRegion {
        // SAFETY: `len = HEADER_SIZE + capacity` bytes are mapped for the life of `self`;
        // the region (and anything borrowed from it) is used only while `self` lives.
        unsafe { PtrRegion::new(self.base.as_ptr().add(layout::HEADER_SIZE), self.len - layout::HEADER_SIZE) }
    }

    pub fn data_words(&self) -> crate::sync::wait::WaitWords<'_> {
        let w = &self.header().data_wait;
        crate::sync::wait::WaitWords { waiters: &w.waiters, epoch: &w.epoch }
    }

    pub fn space_words(&self) -> crate::sync::wait::WaitWords<'_> {
        let w = &self.header().space_wait;
        crate::sync::wait::WaitWords { waiters: &w.waiters, epoch: &w.epoch }
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
        for i in range.clone() {
            let got = ofd_setlk(&self.fd, layout::SLOT_LOCK_BASE + i as u64, libc::F_WRLCK as libc::c_short)
                .map_err(|e| Error::Io { context: format!("lock a slot of {:?}", self.config.name), source: e })?;
            if !got {
                continue;
            }
            let slot = self.slot(i);
            if role == layout::ROLE_PRODUCER && self.unresolved_claim(i) {
                // A predecessor died holding a claim readers have not passed yet: they need
                // its record to pass it, so this slot waits until they have.
                let _ = ofd_setlk(&self.fd, layout::SLOT_LOCK_BASE + i as u64, libc::F_UNLCK as libc::c_short);
                continue;
            }
            // Relaxed throughout: the lock (a system call) orders us after the previous
            // holder; readers (inspect) take these as a snapshot.
            slot.claim_pos.store(layout::NO_CLAIM, Ordering::Relaxed);
            if slot.state.load(Ordering::Relaxed) != layout::SLOT_FREE {
                self.retire(i);
            }
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
            format!("queue {:?} already has a live {who} (pid {pid})", self.config.name)
        } else {
            format!("participant table of {:?} is full ({} producers)", self.config.name, range.len())
        };
        Err(Error::Busy(what))
    }

    /// Whether slot `i` (whose lock we hold) records a claim that readers have not passed:
    /// its end is above the published consumer position.
    fn unresolved_claim(&self, i: usize) -> bool {
        let slot = self.slot(i);
        // Relaxed: the lock orders us after the previous holder's stores; `head` is read
        // with Acquire so that a claim the consumer already passed is seen as passed.
        let pos = slot.claim_pos.load(Ordering::Relaxed);
        let end = slot.claim_end.load(Ordering::Relaxed);
        let head = self.header().consumer.head.load(Ordering::Acquire);
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
        for words in [&h.data_wait.waiters, &h.space_wait.waiters] {
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
        fold(&slot.counters, to);
    }

    /// Gives slot `i` back (its counters to the retired totals) and drops its lock.
    pub fn deregister(&self, i: usize) {
        self.retire(i);
        let slot = self.slot(i);
        // Relaxed: information for `inspect`; the unlock orders it for a successor. A
        // producer leaving normally has no claim left open (its grants are finished).
        slot.claim_pos.store(layout::NO_CLAIM, Ordering::Relaxed);
        slot.pid.store(0, Ordering::Relaxed);
        slot.state.store(layout::SLOT_FREE, Ordering::Release);
        let _ = ofd_setlk(&self.fd, layout::SLOT_LOCK_BASE + i as u64, libc::F_UNLCK as libc::c_short);
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
        // SAFETY: the mapping made in `try_validate`; nothing borrowed from it outlives
        // `self` (handles borrow their segment).
        let _ = unsafe { rustix::mm::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

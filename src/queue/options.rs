//! [`Options`] for creating a queue, and the defaults Rust, C and the CLI share.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::segment::Mode;

/// Default capacity of the data region: 1 MiB.
pub const DEFAULT_CAPACITY: u64 = 1 << 20;
/// Default largest message: 64 KiB.
pub const DEFAULT_MAX_MESSAGE: u32 = 64 << 10;
/// Default permission bits: owner read and write.
pub const DEFAULT_PERMISSIONS: u32 = 0o600;

/// Options for [`Queue::create`](super::Queue::create). The defaults are the same in Rust, C and the CLI.
///
/// ```
/// use shmq::{Mode, Options};
/// let o = Options::new().capacity(1 << 16).max_message(1024).mode(Mode::Spsc).permissions(0o660);
/// assert_eq!(o.get_capacity(), 65536);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    pub(super) capacity: u64,
    pub(super) max_message: u32,
    pub(super) mode: Mode,
    pub(super) permissions: u32,
    pub(super) durable: Option<Durability>,
}

/// When a durable queue's log is synced to disk (`fdatasync`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Fsync {
    /// Never by shmq: the kernel writes the log back when it likes. Messages survive any
    /// process crash; a power cut or kernel crash loses what was not yet written back.
    #[default]
    Never,
    /// Within this long of being written: a power cut loses at most about that much.
    Interval(Duration),
    /// Every send returns only once its message is on disk, and readers see only
    /// messages that are: nothing a reader saw or a sender was told is lost to a power cut.
    Always,
}

/// How much of the log a durable queue keeps after every subscription released it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Retain {
    /// Nothing: log segments go once every subscription released them.
    #[default]
    Acked,
    /// At least this many bytes of the most recent stream, for replay and audit.
    Bytes(u64),
}

/// The durable part of [`Options`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Durability {
    pub(crate) dir: PathBuf,
    pub(crate) fsync: Fsync,
    pub(crate) max_log_bytes: u64,
    pub(crate) retain: Retain,
}

/// Default [`Options::max_log_bytes`]: 8 GiB.
pub const DEFAULT_MAX_LOG_BYTES: u64 = 8 << 30;

impl Default for Options {
    fn default() -> Self {
        Options {
            capacity: DEFAULT_CAPACITY,
            max_message: DEFAULT_MAX_MESSAGE,
            mode: Mode::Mpsc,
            permissions: DEFAULT_PERMISSIONS,
            durable: None,
        }
    }
}

impl Options {
    /// The defaults: 1 MiB capacity, 64 KiB `max_message`, MPSC, `0600`.
    pub fn new() -> Options {
        Options::default()
    }
    /// Bytes in the data region: a power of two from 1 KiB to 1 TiB (not rounded: anything
    /// else is `InvalidArgument`). Each message takes 16 header bytes plus its length rounded
    /// up to 8.
    pub fn capacity(mut self, bytes: u64) -> Options {
        self.capacity = bytes;
        self
    }
    /// Largest message in bytes: at most half the capacity.
    pub fn max_message(mut self, bytes: u32) -> Options {
        self.max_message = bytes;
        self
    }
    /// [`Mode::Spsc`] (one producer, the fast path) or [`Mode::Mpsc`].
    pub fn mode(mut self, mode: Mode) -> Options {
        self.mode = mode;
        self
    }
    /// Permission bits of the shared-memory object, e.g. `0o660` for group access. Must
    /// include `0o600`. Applied exactly (the umask does not apply).
    pub fn permissions(mut self, bits: u32) -> Options {
        self.permissions = bits;
        self
    }
    /// Makes the queue durable: every message is also written to a log in directory `dir`
    /// (created owner-only if missing), from which the queue is restored after a host
    /// restart ([`Queue::open_or_create`](super::Queue::open_or_create) with the same
    /// directory). See [`fsync`](Self::fsync) for what survives what. Without it the queue
    /// lives in memory only.
    pub fn durable(mut self, dir: impl AsRef<Path>) -> Options {
        let d = self.durable.take();
        self.durable = Some(Durability {
            dir: dir.as_ref().to_path_buf(),
            fsync: d.as_ref().map_or(Fsync::Never, |d| d.fsync),
            max_log_bytes: d.as_ref().map_or(DEFAULT_MAX_LOG_BYTES, |d| d.max_log_bytes),
            retain: d.as_ref().map_or(Retain::Acked, |d| d.retain),
        });
        self
    }
    /// When a durable queue syncs its log ([`Fsync::Never`] by default). Ignored unless
    /// [`durable`](Self::durable) is set (before or after).
    pub fn fsync(mut self, fsync: Fsync) -> Options {
        self.with_durability(|d| d.fsync = fsync);
        self
    }
    /// The most bytes a durable queue's log holds (default 8 GiB): producers wait there
    /// ([`try_send`](crate::Producer::try_send) gets `Full`).
    pub fn max_log_bytes(mut self, bytes: u64) -> Options {
        self.with_durability(|d| d.max_log_bytes = bytes);
        self
    }
    /// What a durable queue keeps of its log once released ([`Retain::Acked`] by default).
    pub fn retain(mut self, retain: Retain) -> Options {
        self.with_durability(|d| d.retain = retain);
        self
    }
    fn with_durability(&mut self, f: impl FnOnce(&mut Durability)) {
        let d = self.durable.get_or_insert_with(|| Durability {
            dir: PathBuf::new(),
            fsync: Fsync::Never,
            max_log_bytes: DEFAULT_MAX_LOG_BYTES,
            retain: Retain::Acked,
        });
        f(d);
    }
    /// The log directory set, if the queue is durable.
    pub fn get_durable(&self) -> Option<&Path> {
        self.durable.as_ref().map(|d| d.dir.as_path()).filter(|p| !p.as_os_str().is_empty())
    }
    /// The fsync policy set.
    pub fn get_fsync(&self) -> Fsync {
        self.durable.as_ref().map_or(Fsync::Never, |d| d.fsync)
    }
    /// The capacity set.
    pub fn get_capacity(&self) -> u64 {
        self.capacity
    }
    /// The `max_message` set.
    pub fn get_max_message(&self) -> u32 {
        self.max_message
    }
    /// The largest `max_message` the capacity set allows: half of it, less the 16 bytes each
    /// record of a durable queue carries before the message (its timestamp and checksum).
    ///
    /// ```
    /// use shmq::Options;
    /// assert_eq!(Options::new().capacity(1 << 16).max_message_limit(), 32768);
    /// assert_eq!(Options::new().capacity(1 << 16).durable("/var/lib/q").max_message_limit(), 32752);
    /// ```
    pub fn max_message_limit(&self) -> u64 {
        let prefix = if self.durable.is_some() { crate::segment::DURABLE_PREFIX } else { 0 };
        (self.capacity / 2).saturating_sub(u64::from(prefix))
    }
    /// The mode set.
    pub fn get_mode(&self) -> Mode {
        self.mode
    }
    /// The permissions set.
    pub fn get_permissions(&self) -> u32 {
        self.permissions
    }
}

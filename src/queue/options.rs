//! [`Options`] for creating a queue, and the defaults Rust, C and the CLI share.

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
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    pub(super) capacity: u64,
    pub(super) max_message: u32,
    pub(super) mode: Mode,
    pub(super) permissions: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            capacity: DEFAULT_CAPACITY,
            max_message: DEFAULT_MAX_MESSAGE,
            mode: Mode::Mpsc,
            permissions: DEFAULT_PERMISSIONS,
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
    /// The capacity set.
    pub fn get_capacity(&self) -> u64 {
        self.capacity
    }
    /// The `max_message` set.
    pub fn get_max_message(&self) -> u32 {
        self.max_message
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

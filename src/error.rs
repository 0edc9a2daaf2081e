//! The one error type of the crate.
//!
//! Every variant maps one to one onto a C code `SHMQ_ERR_*` (see
//! `bindings/c/include/shmq.h`); [`Error::code`] gives it.

use std::io;

/// Everything that can go wrong in shmq.
///
/// The variants are stable: the C ABI maps each one onto a negative code.
/// An empty queue on `try_recv` is not an error: it is `Ok(None)`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The queue is full and the call was not allowed to wait (`try_send`, `try_reserve`).
    #[error("queue is full")]
    Full,
    /// A positive timeout expired before the call could complete.
    #[error("timed out")]
    Timeout,
    /// The message is larger than the queue's `max_message`.
    #[error("message of {len} bytes exceeds the queue's max_message of {max} bytes")]
    TooLarge {
        /// Length of the rejected message.
        len: usize,
        /// The queue's `max_message`.
        max: usize,
    },
    /// No queue (or subscription) of that name exists. The text names what was looked for,
    /// e.g. `queue "orders"` or `subscription "billing" of queue "orders"`.
    #[error("not found: {0}")]
    NotFound(String),
    /// `create` of a name that already exists.
    #[error("a queue named {0:?} already exists")]
    Exists(String),
    /// The name is not 1–200 bytes of `[A-Za-z0-9._-]` not starting with `.`. The text
    /// shows the name (cut if long) and the rule it breaks.
    #[error("invalid queue name {0}")]
    InvalidName(String),
    /// A bad option, length or call order.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The slot is held by a live process (a second consumer, or a second producer on an
    /// SPSC queue), or the participant table is full.
    #[error("busy: {0}")]
    Busy(String),
    /// The operating system refused access.
    #[error("permission denied: {0}")]
    Permission(String),
    /// The segment failed validation: it is not a well-formed shmq queue, or another process
    /// wrote nonsense into its control words.
    #[error("corrupt queue: {0}")]
    Corrupt(String),
    /// The segment was made by an incompatible layout version of shmq.
    #[error("incompatible queue layout: {0}")]
    Incompatible(String),
    /// The queue was removed and (for a consumer) everything in it has been received.
    #[error("queue is closed")]
    Closed,
    /// A call that was waiting (or about to wait) was woken by
    /// [`Interrupter::interrupt`](crate::Interrupter::interrupt) on its handle. Nothing was
    /// sent, reserved or received, and the interruption is used up: the handle works as
    /// before and the next call waits normally.
    #[error("interrupted")]
    Interrupted,
    /// A subscription with a lag limit fell that far behind and producers went on without
    /// it: `missed_bytes` bytes of the stream (records with their headers and padding) were
    /// never delivered to it. The call that returns this has already rejoined the
    /// subscription at the producers' position: the next receive goes on from there.
    #[error("lapped: this subscription fell behind its lag limit and missed {missed_bytes} bytes of messages")]
    Lapped {
        /// Bytes of the stream the subscription missed.
        missed_bytes: u64,
    },
    /// An ack, nack or reject came too late: the message with this id had been released
    /// meanwhile (its member held it past the subscription's `ack_wait`, or was taken for
    /// dead), so it is delivered again (or was already). Nothing changed.
    #[error("ack expired: message {0} was released to be delivered again")]
    AckExpired(u64),
    /// A durable queue's log failed to write or sync (an I/O error, a failed `fdatasync`).
    /// The text says what failed. After a failed sync nothing is retried: every later write
    /// or sync of that log returns this same error, and the queue is read-only.
    #[error("the log failed: {0}; the queue is read-only")]
    Log(String),
    /// The disk (or the user's quota, or the process's file-size limit) has no room for the
    /// log of a durable queue. Nothing was written; the call may be retried once there is
    /// room.
    #[error("no space left for the log")]
    NoSpace,
    /// Any other operating-system error. Its text is what shmq was doing; the OS error is
    /// its [`source`](std::error::Error::source) (print the chain, e.g. `{:#}` with
    /// `anyhow`, to see both).
    #[error("{context}")]
    Io {
        /// What shmq was doing.
        context: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// Shorthand for `Result<T, shmq::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The C codes. Negative, stable once published; kept here so that Rust and C agree.
pub mod code {
    /// Success.
    pub const OK: i32 = 0;
    /// See [`Error::Full`](super::Error::Full).
    pub const FULL: i32 = -1;
    /// A try-receive found the queue empty.
    pub const EMPTY: i32 = -2;
    /// See [`Error::Timeout`](super::Error::Timeout).
    pub const TIMEOUT: i32 = -3;
    /// See [`Error::TooLarge`](super::Error::TooLarge).
    pub const TOO_LARGE: i32 = -4;
    /// C only: the caller's buffer is too small; `*len` holds the size needed.
    pub const BUFFER_TOO_SMALL: i32 = -5;
    /// See [`Error::NotFound`](super::Error::NotFound).
    pub const NOT_FOUND: i32 = -6;
    /// See [`Error::Exists`](super::Error::Exists).
    pub const EXISTS: i32 = -7;
    /// See [`Error::InvalidName`](super::Error::InvalidName) and
    /// [`Error::InvalidArgument`](super::Error::InvalidArgument).
    pub const INVALID: i32 = -8;
    /// See [`Error::Busy`](super::Error::Busy).
    pub const BUSY: i32 = -9;
    /// See [`Error::Permission`](super::Error::Permission).
    pub const PERMISSION: i32 = -10;
    /// See [`Error::Corrupt`](super::Error::Corrupt).
    pub const CORRUPT: i32 = -11;
    /// See [`Error::Incompatible`](super::Error::Incompatible).
    pub const INCOMPATIBLE: i32 = -12;
    /// See [`Error::Closed`](super::Error::Closed).
    pub const CLOSED: i32 = -13;
    /// See [`Error::Io`](super::Error::Io).
    pub const IO: i32 = -14;
    /// C only: a panic was caught at the ABI boundary.
    pub const INTERNAL: i32 = -15;
    /// See [`Error::Interrupted`](super::Error::Interrupted).
    pub const INTERRUPTED: i32 = -16;
    /// See [`Error::Lapped`](super::Error::Lapped).
    pub const LAPPED: i32 = -17;
    /// See [`Error::Log`](super::Error::Log).
    pub const LOG: i32 = -18;
    /// See [`Error::NoSpace`](super::Error::NoSpace).
    pub const NO_SPACE: i32 = -19;
    /// See [`Error::AckExpired`](super::Error::AckExpired).
    pub const ACK_EXPIRED: i32 = -20;
}

impl Error {
    /// The C code of this error (`SHMQ_ERR_*`), always negative.
    ///
    /// ```
    /// assert_eq!(shmq::Error::Full.code(), shmq::error::code::FULL);
    /// ```
    pub fn code(&self) -> i32 {
        match self {
            Error::Full => code::FULL,
            Error::Timeout => code::TIMEOUT,
            Error::TooLarge { .. } => code::TOO_LARGE,
            Error::NotFound(_) => code::NOT_FOUND,
            Error::Exists(_) => code::EXISTS,
            Error::InvalidName(_) | Error::InvalidArgument(_) => code::INVALID,
            Error::Busy(_) => code::BUSY,
            Error::Permission(_) => code::PERMISSION,
            Error::Corrupt(_) => code::CORRUPT,
            Error::Incompatible(_) => code::INCOMPATIBLE,
            Error::Closed => code::CLOSED,
            Error::Interrupted => code::INTERRUPTED,
            Error::Lapped { .. } => code::LAPPED,
            Error::Log(_) => code::LOG,
            Error::NoSpace => code::NO_SPACE,
            Error::AckExpired(_) => code::ACK_EXPIRED,
            Error::Io { .. } => code::IO,
        }
    }

    /// Wraps an OS error from `what` on queue `name`, mapping the errno values that have a
    /// variant of their own.
    #[cfg(not(loom))] // used by `segment`, which loom builds leave out
    pub(crate) fn os(err: rustix::io::Errno, what: &str, name: &str) -> Error {
        use rustix::io::Errno;
        match err {
            Errno::NOENT => Error::NotFound(format!("queue {}", crate::segment::shown(name))),
            Errno::EXIST => Error::Exists(name.to_owned()),
            Errno::ACCESS | Errno::PERM => Error::Permission(format!("{what} {name:?}")),
            _ => Error::Io {
                context: format!("{what} {name:?}"),
                source: io::Error::from_raw_os_error(err.raw_os_error()),
            },
        }
    }
}

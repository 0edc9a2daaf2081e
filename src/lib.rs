//! # shmq: message queues in shared memory between processes on one Linux host
//!
//! A queue is a named object in POSIX shared memory holding a lock-free ring of
//! variable-length messages, FIFO. Producers append, one consumer takes. A side that must
//! wait spins, sleeps on a futex, or spins then sleeps; a busy queue makes no system call.
//!
//! ```
//! use shmq::{Consumer, Options, Producer, Queue};
//! # let name = format!("doc-lib-{}", std::process::id());
//! Queue::create(&name, Options::new().capacity(1 << 20).max_message(64 << 10))?;
//! let mut tx = Producer::open(&name)?;   // in one process
//! let mut rx = Consumer::open(&name)?;   // in another (here the same, for the example)
//! tx.send(b"order 42")?;
//! let msg = rx.recv()?;                  // borrows the ring; released on drop
//! assert_eq!(&*msg, b"order 42");
//! # drop(msg); drop((tx, rx));
//! Queue::remove(&name)?;
//! # Ok::<(), shmq::Error>(())
//! ```
//!
//! ## The API
//! * [`Queue`]: create, open-or-create, remove, list and inspect queues by name.
//! * [`Producer`] and [`Consumer`]: send and receive, copying or zero-copy ([`Grant`],
//!   [`Message`]), one message or a batch, waiting by a [`Wait`] policy; an [`Interrupter`]
//!   wakes a blocked call.
//! * [`Subscription`]: several readers per queue. Each subscription gets every message sent
//!   after its creation (fan-out); the processes that join one with
//!   [`Consumer::subscribe`] share its messages, each message going to one of them.
//!   [`Consumer::open`] reads the [default](Subscription::DEFAULT) subscription, one process
//!   at a time. [`SubscriptionOptions`] set a lag limit, past which a subscription is left
//!   behind (its next receive returns [`Error::Lapped`]) rather than holding producers back;
//!   [`Message::id`] is the same for a message in every subscription, and
//!   [`Message::delivery_count`] tells a message handed out again after its member died.
//!   [`Subscription::list`] reports them ([`SubscriptionInfo`], [`MemberInfo`]);
//!   `docs/SUBSCRIPTIONS.md` explains them.
//! * [`Error`]: every failure, each with its C code.
//!
//! Inside, from the bottom: `layout` (the on-memory contract, offsets in `docs/LAYOUT.md`),
//! `sync` (atomics that loom can swap, the futex wait/wake protocol), `ring` (the SPSC and
//! MPSC ring algorithms over any memory region, no system calls), `segment` (the
//! shared-memory object: create, validate, remove, participants) and `queue` (the API).
//!
//! ## Trust
//! Another process with access to the segment can write anything into it at any time.
//! shmq reads every control word once, validates it, and uses its private copy: bad values
//! give [`Error::Corrupt`], never a crash, an out-of-bounds access or a wait past a timeout.
//! Payload bytes are opaque: a message is only as intact as its writers are honest.
//! Shrinking the object under a mapping (`ftruncate`) cannot be prevented for named POSIX
//! shared memory and is out of scope (the process would get `SIGBUS`).

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs, clippy::undocumented_unsafe_blocks)]

pub mod error;
mod failpoint;
// `layout`, `ring` and `sync` are internals, not API: hidden from the documentation and
// free to change in any release. They stay `pub` only because tests (tests/loom.rs,
// tests/hostile.rs, tests/corrupt.rs) and the benchmarks drive them directly.
#[doc(hidden)]
pub mod layout;
#[doc(hidden)]
pub mod ring;
#[doc(hidden)]
pub mod sync;

// The write-ahead log of durable queues (files only). Internal like `ring`: `pub` for its
// integration tests (tests/log_files.rs) and the `shmq log` commands.
#[cfg(not(loom))]
#[doc(hidden)]
pub mod log;
#[cfg(not(loom))]
mod queue;
#[cfg(not(loom))]
mod segment;

pub use error::{Error, Result};
#[cfg(not(loom))]
pub use queue::{
    Ack, Config, Consumer, CounterValues, DEFAULT_CAPACITY, DEFAULT_MAX_LOG_BYTES, DEFAULT_MAX_MESSAGE,
    DEFAULT_PERMISSIONS, DeadLetter, DurableConfig, DurableStats, From, Fsync, Grant, Interrupter, Journaler,
    MemberInfo, Message, Mode, Options, Participant, Producer, Progress, Queue, RawGrant, Reader, Replayed, Retain,
    Role, Snapshot, Subscription, SubscriptionInfo, SubscriptionOptions, Watch, dlq_name,
};
#[cfg(not(loom))]
pub use segment::{MAX_NAME_LEN, validate_name};
pub use sync::wait::{ADAPTIVE_SPIN, Wait};

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// The examples of `docs/DURABLE.md`, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../docs/DURABLE.md")]
pub struct DurableDoctests;

/// The examples of `docs/ACKS.md`, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../docs/ACKS.md")]
pub struct AcksDoctests;

/// The examples of `docs/SUBSCRIPTIONS.md`, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../docs/SUBSCRIPTIONS.md")]
pub struct SubscriptionsDoctests;

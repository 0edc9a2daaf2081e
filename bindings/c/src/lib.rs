//! # libshmq: the C ABI of shmq
//!
//! The functions, types and constants of `include/shmq.h`, which cbindgen generates from
//! this file (`SHMQ_BLESS=1 cargo test -p shmq-c --test header` rewrites it; without the
//! variable that test fails when the checked-in header differs). Everything here is a thin
//! wrapper over the Rust crate `shmq` (renamed `shmq_core` in this crate, whose own library
//! is also called `shmq`).
//!
//! Every exported function
//! * checks every pointer and length it is given: `SHMQ_ERR_INVALID` for bad ones;
//! * catches panics ([`std::panic::catch_unwind`]): `SHMQ_ERR_INTERNAL`, no unwinding
//!   crosses the ABI;
//! * saves `errno` on entry and restores it on exit, whatever happened in between;
//! * returns `SHMQ_OK` (0) or a negative `SHMQ_ERR_*` code (the `void` ones excepted).
//!
//! The C handle structs keep the zero-copy state (an outstanding reservation, a peeked
//! message), so calls out of order are refused with `SHMQ_ERR_INVALID` before they reach
//! the ring.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs, clippy::undocumented_unsafe_blocks)]
#![allow(non_camel_case_types)]

use std::cell::UnsafeCell;
use std::collections::VecDeque;
use std::ffi::{CStr, c_char, c_int, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use shmq_core::error::code;
use shmq_core::{
    Ack, Consumer, DeadLetter, Error, Fsync, Interrupter, Mode, Options, Producer, Queue, RawGrant, Retain,
    Subscription, SubscriptionOptions, Wait,
};

/// The version of this C interface. It is the major number of the shared library's SONAME
/// (`libshmq.so.1`): it changes only when a function, type or constant changes
/// incompatibly. Additions (new functions, fields appended to `shmq_options` or
/// `shmq_subscription_options`) keep it.
/// Segments carry their own layout version: opening one made by an incompatible layout
/// fails with `SHMQ_ERR_INCOMPATIBLE`.
pub const SHMQ_ABI_VERSION: c_int = 1;

/// Success.
pub const SHMQ_OK: c_int = 0;
/// The queue is full and the call was not allowed to wait (timeout 0).
pub const SHMQ_ERR_FULL: c_int = -1;
/// The queue is empty and the call was not allowed to wait (timeout 0).
pub const SHMQ_ERR_EMPTY: c_int = -2;
/// A positive timeout expired before the call could complete.
pub const SHMQ_ERR_TIMEOUT: c_int = -3;
/// The message is larger than the queue's `max_message`.
pub const SHMQ_ERR_TOO_LARGE: c_int = -4;
/// `shmq_recv`: the buffer is too small; `*len` holds the size needed and the message
/// stays in the queue.
pub const SHMQ_ERR_BUFFER_TOO_SMALL: c_int = -5;
/// No queue of that name exists.
pub const SHMQ_ERR_NOT_FOUND: c_int = -6;
/// `shmq_create` of a name that already exists.
pub const SHMQ_ERR_EXISTS: c_int = -7;
/// A bad name, option, pointer, length, wait policy or call order.
pub const SHMQ_ERR_INVALID: c_int = -8;
/// The slot is held by a live process (a second consumer, or a second producer on an SPSC
/// queue), or the participant table is full; or, from a call on a handle, another thread
/// is inside a call on that same handle (a handle serves one call at a time).
pub const SHMQ_ERR_BUSY: c_int = -9;
/// The operating system refused access.
pub const SHMQ_ERR_PERMISSION: c_int = -10;
/// The segment failed validation (not a shmq queue, or nonsense in its control words).
pub const SHMQ_ERR_CORRUPT: c_int = -11;
/// The segment was made by another layout version of shmq.
pub const SHMQ_ERR_INCOMPATIBLE: c_int = -12;
/// The queue was removed (`shmq_remove`) and, for a consumer, everything in it received.
pub const SHMQ_ERR_CLOSED: c_int = -13;
/// Any other operating-system error.
pub const SHMQ_ERR_IO: c_int = -14;
/// A bug in libshmq was caught at the boundary (a Rust panic); the handle may be unusable.
pub const SHMQ_ERR_INTERNAL: c_int = -15;
/// A call waiting for room or for a message (or about to wait) was woken by
/// `shmq_producer_interrupt` / `shmq_consumer_interrupt` on its handle. Nothing was sent,
/// reserved or received; the handle works as before.
pub const SHMQ_ERR_INTERRUPTED: c_int = -16;
/// A receive on a subscription with a lag limit (`shmq_subscription_options.lag_limit`):
/// the subscription fell more than its limit behind, and producers went on without it.
/// The messages it missed are gone for it (`shmq_msg_info.missed_bytes` of
/// `shmq_recv_info` says how many bytes of the stream); the subscription has already
/// rejoined at the producers' position, so the next receive goes on from there. Nothing
/// was received by this call.
pub const SHMQ_ERR_LAPPED: c_int = -17;
/// The log of a durable queue failed to write or sync (an I/O error, a failed `fdatasync`).
/// Nothing is retried: every later write or sync of that log fails the same way, and the
/// queue is read-only. `shmq_last_error` says what failed.
pub const SHMQ_ERR_LOG: c_int = -18;
/// No space left for the log of a durable queue (disk, quota or file-size limit). Nothing
/// was written; the call may be retried once there is room.
pub const SHMQ_ERR_NO_SPACE: c_int = -19;
/// `shmq_ack`, `shmq_nack` or `shmq_reject` came too late: the message had been released
/// meanwhile (this member held it past the subscription's `ack_wait_ns`, or was taken for
/// dead), so it is delivered again, or already was, possibly to another member. Nothing
/// changed; the message is no longer this member's to acknowledge.
pub const SHMQ_ERR_ACK_EXPIRED: c_int = -20;

// The codes are defined once, in the Rust crate; the literals above exist for cbindgen.
const _: () = {
    assert!(SHMQ_OK == code::OK);
    assert!(SHMQ_ERR_FULL == code::FULL);
    assert!(SHMQ_ERR_EMPTY == code::EMPTY);
    assert!(SHMQ_ERR_TIMEOUT == code::TIMEOUT);
    assert!(SHMQ_ERR_TOO_LARGE == code::TOO_LARGE);
    assert!(SHMQ_ERR_BUFFER_TOO_SMALL == code::BUFFER_TOO_SMALL);
    assert!(SHMQ_ERR_NOT_FOUND == code::NOT_FOUND);
    assert!(SHMQ_ERR_EXISTS == code::EXISTS);
    assert!(SHMQ_ERR_INVALID == code::INVALID);
    assert!(SHMQ_ERR_BUSY == code::BUSY);
    assert!(SHMQ_ERR_PERMISSION == code::PERMISSION);
    assert!(SHMQ_ERR_CORRUPT == code::CORRUPT);
    assert!(SHMQ_ERR_INCOMPATIBLE == code::INCOMPATIBLE);
    assert!(SHMQ_ERR_CLOSED == code::CLOSED);
    assert!(SHMQ_ERR_IO == code::IO);
    assert!(SHMQ_ERR_INTERNAL == code::INTERNAL);
    assert!(SHMQ_ERR_INTERRUPTED == code::INTERRUPTED);
    assert!(SHMQ_ERR_LAPPED == code::LAPPED);
    assert!(SHMQ_ERR_LOG == code::LOG);
    assert!(SHMQ_ERR_NO_SPACE == code::NO_SPACE);
    assert!(SHMQ_ERR_ACK_EXPIRED == code::ACK_EXPIRED);
};

/// `shmq_options.mode`: one producer at a time (the fast path).
pub const SHMQ_MODE_SPSC: c_int = 1;
/// `shmq_options.mode`: up to 63 producers at once (the default).
pub const SHMQ_MODE_MPSC: c_int = 2;

/// Wait policy: busy-poll. The lowest latency; one core at 100% while waiting.
pub const SHMQ_WAIT_SPIN: c_int = 1;
/// Wait policy: sleep on a futex, after giving the CPU once to whoever is ready to run
/// (`sched_yield`). No CPU while waiting; a wakeup costs microseconds.
pub const SHMQ_WAIT_BLOCK: c_int = 2;
/// Wait policy: spin for up to 50 microseconds, then sleep (the default of every handle).
pub const SHMQ_WAIT_ADAPTIVE: c_int = 3;

/// Default `shmq_options.capacity`: 1 MiB.
pub const SHMQ_DEFAULT_CAPACITY: u64 = 1 << 20;
/// Default `shmq_options.max_message`: 64 KiB.
pub const SHMQ_DEFAULT_MAX_MESSAGE: u32 = 64 << 10;
/// Default `shmq_options.permissions`: `0600`, owner read and write.
pub const SHMQ_DEFAULT_PERMISSIONS: u32 = 0o600;

const _: () = {
    assert!(SHMQ_DEFAULT_CAPACITY == shmq_core::DEFAULT_CAPACITY);
    assert!(SHMQ_DEFAULT_MAX_MESSAGE == shmq_core::DEFAULT_MAX_MESSAGE);
    assert!(SHMQ_DEFAULT_PERMISSIONS == shmq_core::DEFAULT_PERMISSIONS);
};

/// Options for `shmq_create` and `shmq_open_or_create`. Always start from
/// `shmq_options_init`, then change the fields you need:
///
/// ```c
/// shmq_options o;
/// shmq_options_init(&o);
/// o.capacity = 1 << 16;
/// o.mode = SHMQ_MODE_SPSC;
/// int rc = shmq_create("orders", &o);
/// ```
///
/// A durable queue (its messages also kept in a log on disk) sets `log_dir`:
///
/// ```c
/// o.log_dir = "/var/lib/myapp/orders";
/// o.fsync = SHMQ_FSYNC_ALWAYS;
/// ```
///
/// The struct only grows: later versions append fields after `retain_bytes`, and `size`
/// tells the library which fields the caller knows. Programs compiled against the first
/// header (a 32-byte struct that ends at `reserved`) keep working: their queues are
/// volatile.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct shmq_options {
    /// `sizeof(shmq_options)` as the caller compiled it; set by `shmq_options_init`: 72
    /// for this header, 32 for the first one (without the durable fields). Any other size
    /// below 72 is `SHMQ_ERR_INVALID`.
    pub size: usize,
    /// Bytes in the data region: a power of two from 1 KiB to 1 TiB, not rounded.
    /// Each message takes 16 header bytes plus its length rounded up to 8.
    pub capacity: u64,
    /// Largest message in bytes: at most half the capacity.
    pub max_message: u32,
    /// `SHMQ_MODE_SPSC` or `SHMQ_MODE_MPSC`.
    pub mode: c_int,
    /// Permission bits of the shared-memory object, e.g. `0660` for group access; must
    /// include `0600`. Applied exactly (the umask does not apply).
    pub permissions: u32,
    /// Must be 0 (`shmq_options_init` sets it).
    pub reserved: u32,
    /// Makes the queue durable: every message is also written to a log in this directory
    /// (created owner-only if missing), from which `shmq_create` or `shmq_open_or_create`
    /// restores the queue once its shared-memory object is gone (a host restart). An
    /// absolute or relative path; the library keeps its own copy. NULL (the default): a
    /// volatile queue, in memory only, and every field below must keep its default.
    pub log_dir: *const c_char,
    /// When a durable queue's log is synced: `SHMQ_FSYNC_NEVER` (the default),
    /// `SHMQ_FSYNC_INTERVAL` or `SHMQ_FSYNC_ALWAYS`.
    pub fsync: c_int,
    /// Must be 0 (`shmq_options_init` sets it).
    pub reserved2: u32,
    /// `SHMQ_FSYNC_INTERVAL` only, and then required: how often the log is synced, in
    /// nanoseconds (more than 0). Must be 0 under the other policies.
    pub fsync_interval_ns: u64,
    /// The most bytes a durable queue's log holds: producers wait there (`SHMQ_ERR_FULL`
    /// with a timeout of 0). 0 (the default): `SHMQ_DEFAULT_MAX_LOG_BYTES`.
    pub max_log_bytes: u64,
    /// How much of a durable queue's log is kept once every subscription released it: 0
    /// (the default) keeps nothing (segments go once released); `n > 0` keeps at least the
    /// last `n` bytes of the stream, for replay and audit.
    pub retain_bytes: u64,
}

/// `shmq_options.fsync`: the log is never synced by shmq (the kernel writes it back when it
/// likes). Messages survive any process crash; a power cut or kernel crash loses what was
/// not yet written back. The default.
pub const SHMQ_FSYNC_NEVER: c_int = 0;
/// `shmq_options.fsync`: the log is synced every `fsync_interval_ns`, by a thread in each
/// process that holds a producer of the queue (and by `shmq journal`): a power cut loses
/// at most about that much.
pub const SHMQ_FSYNC_INTERVAL: c_int = 1;
/// `shmq_options.fsync`: every send returns only once its message is synced to disk, and
/// consumers see only synced messages: nothing a consumer saw or a sender was told is lost
/// to a power cut. Concurrent senders (in any process) share their syncs.
pub const SHMQ_FSYNC_ALWAYS: c_int = 2;

/// What `shmq_options.max_log_bytes` = 0 stands for: 8 GiB (written out: `8 << 30` would
/// overflow an `int` in C).
pub const SHMQ_DEFAULT_MAX_LOG_BYTES: u64 = 8_589_934_592;

const _: () = assert!(SHMQ_DEFAULT_MAX_LOG_BYTES == shmq_core::DEFAULT_MAX_LOG_BYTES);

/// This version's defaults (`size`: this version's struct).
const DEFAULT_OPTIONS: shmq_options = shmq_options {
    size: OPTIONS_V2_SIZE,
    capacity: SHMQ_DEFAULT_CAPACITY,
    max_message: SHMQ_DEFAULT_MAX_MESSAGE,
    mode: SHMQ_MODE_MPSC,
    permissions: SHMQ_DEFAULT_PERMISSIONS,
    reserved: 0,
    log_dir: std::ptr::null(),
    fsync: SHMQ_FSYNC_NEVER,
    reserved2: 0,
    fsync_interval_ns: 0,
    max_log_bytes: 0,
    retain_bytes: 0,
};

/// The size of the first version of `shmq_options` (up to `reserved`): what programs
/// compiled against the first header pass.
const OPTIONS_V1_SIZE: usize = std::mem::offset_of!(shmq_options, log_dir);
/// The size of this version's `shmq_options` (up to `retain_bytes`, the durable fields).
const OPTIONS_V2_SIZE: usize = std::mem::size_of::<shmq_options>();
/// Larger sizes are surely garbage (an uninitialised struct): refuse them rather than read
/// that far.
const OPTIONS_MAX_SIZE: usize = 4096;
const _: () = assert!(OPTIONS_V1_SIZE == 32 && OPTIONS_V2_SIZE == 72);

/// Whether `size` is the size of some version of `shmq_options`: the first (32 bytes),
/// this one (72), or a later one (more, up to [`OPTIONS_MAX_SIZE`]). Sizes in between
/// would cut a field in two.
fn options_size_ok(size: usize) -> bool {
    size == OPTIONS_V1_SIZE || (OPTIONS_V2_SIZE..=OPTIONS_MAX_SIZE).contains(&size)
}

/// `shmq_subscription_options.start`: the subscription sees every message sent after
/// `shmq_subscription_create` returns (the only start a volatile queue has).
pub const SHMQ_START_NOW: c_int = 0;

/// `shmq_subscription_options.ack`: a message is done with once a member has received it
/// (the only mode of volatile queues, and the default).
pub const SHMQ_ACK_AUTO: c_int = 0;
/// `shmq_subscription_options.ack`: a message is done with only once the member that
/// received it acknowledges it (`shmq_ack`). Durable queues only, and not the default
/// subscription. Members receive with `shmq_recv_info` (for the id to acknowledge); a
/// message nacked (`shmq_nack`), held past `ack_wait_ns`, or held by a member that died is
/// delivered again, and after `max_deliveries` deliveries (or on `shmq_reject`) it moves
/// to the subscription's dead-letter queue `<queue>.<subscription>.dlq`, which
/// `shmq_subscription_create` creates with the subscription.
pub const SHMQ_ACK_EXPLICIT: c_int = 1;

/// What `shmq_subscription_options.ack_wait_ns` = 0 stands for: 30 seconds.
pub const SHMQ_DEFAULT_ACK_WAIT_NS: i64 = 30_000_000_000;
/// What `shmq_subscription_options.max_in_flight` = 0 stands for.
pub const SHMQ_DEFAULT_MAX_IN_FLIGHT: u32 = 256;
/// The largest `shmq_subscription_options.max_in_flight`.
pub const SHMQ_MAX_IN_FLIGHT: u32 = 1024;
/// What `shmq_subscription_options.max_deliveries` = 0 stands for.
pub const SHMQ_DEFAULT_MAX_DELIVERIES: u32 = 5;

// The library's own limit (the in-flight table's size); the defaults are checked against
// `SubscriptionOptions::new()` by a unit test (its getters are not `const`).
const _: () = assert!(SHMQ_MAX_IN_FLIGHT == shmq_core::layout::MAX_IN_FLIGHT);

/// Most subscriptions a queue can have at once, the default one included.
pub const SHMQ_SUBSCRIPTIONS_MAX: u32 = 64;
/// Longest subscription name, in bytes (without the terminating NUL).
pub const SHMQ_SUBSCRIPTION_NAME_MAX: u32 = 48;

const _: () = {
    assert!(SHMQ_SUBSCRIPTIONS_MAX as usize == Subscription::MAX);
    assert!(SHMQ_SUBSCRIPTION_NAME_MAX as usize == Subscription::MAX_NAME_LEN);
};

/// Options for `shmq_subscription_create`, fixed when the subscription is created. Always
/// start from `shmq_subscription_options_init`, then change the fields you need:
///
/// ```c
/// shmq_subscription_options o;
/// shmq_subscription_options_init(&o);
/// o.lag_limit = 1 << 20;
/// int rc = shmq_subscription_create("orders", "audit", &o);
/// ```
///
/// A subscription of a durable queue whose members acknowledge each message:
///
/// ```c
/// o.ack = SHMQ_ACK_EXPLICIT;
/// o.ack_wait_ns = 10 * 1000000000LL;  // 10 s; 0: SHMQ_DEFAULT_ACK_WAIT_NS
/// rc = shmq_subscription_create("orders", "workers", &o);
/// ```
///
/// Every field's default is 0. The struct only grows: later versions append fields after
/// `max_deliveries`, and `size` tells the library which fields the caller knows. The last
/// four fields (`ack` to `max_deliveries`) are for explicit acknowledgements
/// (`SHMQ_ACK_EXPLICIT`); with `SHMQ_ACK_AUTO` the other three must stay 0.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct shmq_subscription_options {
    /// `sizeof(shmq_subscription_options)` as the caller compiled it; set by
    /// `shmq_subscription_options_init`. A size below this version's struct (40 bytes) is
    /// `SHMQ_ERR_INVALID`.
    pub size: usize,
    /// Where the subscription starts: `SHMQ_START_NOW` (the default, and the only start
    /// of a volatile queue).
    pub start: c_int,
    /// `SHMQ_ACK_AUTO` (the default: a message is done with once received) or
    /// `SHMQ_ACK_EXPLICIT` (durable queues only; then `lag_limit` must be 0: such a
    /// subscription misses nothing).
    pub ack: c_int,
    /// 0 (the default): producers wait for this subscription, and it never misses a
    /// message. `n > 0`: it never holds producers back by more than `n` bytes of the
    /// stream (values above the queue's capacity count as the capacity): a producer that
    /// needs space it still holds, while it is more than `n` bytes behind, goes on without
    /// it, and its next receive returns `SHMQ_ERR_LAPPED`. Messages a member has already
    /// claimed (or is peeking at) are never taken from under it.
    pub lag_limit: u64,
    /// `SHMQ_ACK_EXPLICIT` only: how long a member may hold a message unacknowledged, in
    /// nanoseconds, from 1 ms to 7 days; after that it is delivered again (to any member)
    /// and the late `shmq_ack` gets `SHMQ_ERR_ACK_EXPIRED`. 0 (the default):
    /// `SHMQ_DEFAULT_ACK_WAIT_NS` (30 s).
    pub ack_wait_ns: i64,
    /// `SHMQ_ACK_EXPLICIT` only: how many messages the members of the subscription may
    /// hold unacknowledged at once, 1 to `SHMQ_MAX_IN_FLIGHT` (1024); a member that would
    /// hold more waits in its receive for an ack or an expiry. 0 (the default):
    /// `SHMQ_DEFAULT_MAX_IN_FLIGHT` (256).
    pub max_in_flight: u32,
    /// `SHMQ_ACK_EXPLICIT` only: how often a message is delivered at most; one not
    /// acknowledged after that many deliveries moves to the dead-letter queue. 0 (the
    /// default): `SHMQ_DEFAULT_MAX_DELIVERIES` (5).
    pub max_deliveries: u32,
}

/// This version's defaults (all zero but the size).
const DEFAULT_SUBSCRIPTION_OPTIONS: shmq_subscription_options = shmq_subscription_options {
    size: SUBSCRIPTION_OPTIONS_V1_SIZE,
    start: SHMQ_START_NOW,
    ack: SHMQ_ACK_AUTO,
    lag_limit: 0,
    ack_wait_ns: 0,
    max_in_flight: 0,
    max_deliveries: 0,
};

/// The size of the first version of `shmq_subscription_options`.
const SUBSCRIPTION_OPTIONS_V1_SIZE: usize = std::mem::size_of::<shmq_subscription_options>();
const _: () = assert!(SUBSCRIPTION_OPTIONS_V1_SIZE == 40);

/// What `shmq_recv_info` says about the message it received.
///
/// The struct has a fixed size: information added later comes through new functions.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct shmq_msg_info {
    /// The message's id: its position in the queue's stream of bytes. Ids increase in the
    /// order messages were sent; they are sparse (the gaps are the records' sizes) and
    /// never reused within the queue's life. Every subscription sees the same id for the
    /// same message.
    pub id: u64,
    /// How many times the message has been handed out: 1, or more when a member of a
    /// subscription died holding it and it was handed to another member, or (explicit
    /// acks) it was nacked or held past `ack_wait_ns`.
    pub delivery_count: u32,
    /// 0.
    pub reserved: u32,
    /// After `SHMQ_ERR_LAPPED`: the bytes of the stream the subscription missed (records
    /// with their headers and padding). 0 otherwise.
    pub missed_bytes: u64,
}

/// A producer handle: appends messages to one queue. Opaque; from `shmq_producer_open`,
/// freed by `shmq_producer_close`.
pub struct shmq_producer {
    // Never instantiated: the pointer C holds is a `Handle<ProducerState>`.
    _opaque: [u8; 0],
}

/// A consumer handle: takes the messages of one queue (or its share of a subscription's),
/// in order. Opaque; from `shmq_consumer_open` or `shmq_consumer_subscribe`, freed by
/// `shmq_consumer_close`.
pub struct shmq_consumer {
    // Never instantiated: the pointer C holds is a `Handle<ConsumerState>`.
    _opaque: [u8; 0],
}

/// What a producer handle holds while open.
struct ProducerState {
    inner: Producer,
    /// The reservation made by `shmq_reserve`, until `shmq_commit` or `shmq_abort`.
    grant: Option<RawGrant>,
}

/// What a consumer handle holds while open.
struct ConsumerState {
    inner: Consumer,
    /// `shmq_peek` returned the head message and `shmq_release` has not taken it yet.
    peeked: bool,
    /// A member of a subscription with explicit acks (fixed when it joined): it receives
    /// only with `shmq_recv_info`, and cannot peek.
    explicit: bool,
    /// Explicit acks: a message received for a buffer too small for it. It is in flight
    /// to this member already (a member cannot peek), so the next `shmq_recv_info` hands
    /// it out from here rather than from the queue.
    pending: Option<Pending>,
}

impl ConsumerState {
    fn new(inner: Consumer, explicit: bool) -> ConsumerState {
        ConsumerState { inner, peeked: false, explicit, pending: None }
    }
}

/// A message received by a member with explicit acks that did not fit the caller's buffer.
struct Pending {
    id: u64,
    delivery_count: u32,
    bytes: Vec<u8>,
}

/// The two kinds of handle, and the words and messages that tell them apart.
trait Kind: Sized + 'static {
    /// `magic` of an open handle of this kind.
    const OPEN: u64;
    /// `magic` of a closed one (poisoned by its close).
    const CLOSED: u64;
    /// `magic` of an open handle of the other kind.
    const OTHER: u64;
    const NULL: &'static CStr;
    const USED_AFTER_CLOSE: &'static CStr;
    const WRONG_KIND: &'static CStr;
    const NOT_A_HANDLE: &'static CStr;
    const IN_USE: &'static CStr;
    const NOT_CLOSED: &'static CStr;
}

const PRODUCER_OPEN: u64 = u64::from_le_bytes(*b"shmqPRO+");
const PRODUCER_CLOSED: u64 = u64::from_le_bytes(*b"shmqPRO-");
const CONSUMER_OPEN: u64 = u64::from_le_bytes(*b"shmqCON+");
const CONSUMER_CLOSED: u64 = u64::from_le_bytes(*b"shmqCON-");

impl Kind for ProducerState {
    const OPEN: u64 = PRODUCER_OPEN;
    const CLOSED: u64 = PRODUCER_CLOSED;
    const OTHER: u64 = CONSUMER_OPEN;
    const NULL: &'static CStr = c"invalid argument: NULL producer handle";
    const USED_AFTER_CLOSE: &'static CStr = c"invalid argument: this producer handle was closed (shmq_producer_close)";
    const WRONG_KIND: &'static CStr = c"invalid argument: a consumer handle was passed where a producer is expected";
    const NOT_A_HANDLE: &'static CStr =
        c"invalid argument: not a producer handle (not from shmq_producer_open, or closed long ago)";
    const IN_USE: &'static CStr = c"busy: this producer handle is in a call on another thread (or in the call a \
signal handler interrupted): a handle serves one call at a time";
    const NOT_CLOSED: &'static CStr =
        c"shmq_producer_close: the handle is in a call on another thread; it was NOT closed";
}

impl Kind for ConsumerState {
    const OPEN: u64 = CONSUMER_OPEN;
    const CLOSED: u64 = CONSUMER_CLOSED;
    const OTHER: u64 = PRODUCER_OPEN;
    const NULL: &'static CStr = c"invalid argument: NULL consumer handle";
    const USED_AFTER_CLOSE: &'static CStr = c"invalid argument: this consumer handle was closed (shmq_consumer_close)";
    const WRONG_KIND: &'static CStr = c"invalid argument: a producer handle was passed where a consumer is expected";
    const NOT_A_HANDLE: &'static CStr =
        c"invalid argument: not a consumer handle (not from shmq_consumer_open or shmq_consumer_subscribe, or closed \
long ago)";
    const IN_USE: &'static CStr = c"busy: this consumer handle is in a call on another thread (or in the call a \
signal handler interrupted): a handle serves one call at a time";
    const NOT_CLOSED: &'static CStr =
        c"shmq_consumer_close: the handle is in a call on another thread; it was NOT closed";
}

/// What a `shmq_producer *` / `shmq_consumer *` points to. `repr(C)`: `magic` is the first
/// word of both kinds, so a pointer of either kind (or of neither) can be told apart by
/// reading it before anything else.
#[repr(C)]
struct Handle<S> {
    /// `S::OPEN` while open, `S::CLOSED` after the close.
    magic: AtomicU64,
    /// The re-entry guard: lets one call at a time inside.
    guard: reentry::Guard,
    /// `*_interrupt` calls in progress (from other threads or signal handlers): the close
    /// drops the interrupter only when none is.
    interrupting: AtomicU32,
    /// Made at open (so interrupting allocates nothing), dropped at close.
    interrupter: UnsafeCell<Option<Interrupter>>,
    /// `None` once closed. Only the thread that set `busy` touches it.
    state: UnsafeCell<Option<S>>,
}

/// The shells of the last [`QUARANTINE`] closed handles, kept allocated (and poisoned) so
/// that a handle used right after its close finds `CLOSED` in its magic word, and so that
/// the allocator cannot hand the same address to the next open (a closed producer's
/// pointer then silently naming another queue's producer).
struct Closed {
    shell: *mut c_void,
    /// Frees `shell` (a `Box<Handle<S>>` for the right `S`).
    free: unsafe fn(*mut c_void),
}

// SAFETY: a closed shell's state and interrupter are `None` and the rest are atomics:
// nothing in it is tied to a thread; it is only freed, by whichever thread evicts it.
unsafe impl Send for Closed {}

impl Drop for Closed {
    fn drop(&mut self) {
        // SAFETY: `free` matches the shell's type (`Closed::new`), and the shell is freed
        // once, here.
        unsafe { (self.free)(self.shell) }
    }
}

impl Closed {
    /// # Safety
    /// `shell` was made by `new_handle::<S>`, is closed, and is given up by the caller.
    unsafe fn new<S: Kind>(shell: *mut Handle<S>) -> Closed {
        /// # Safety
        /// `p` is a `Box<Handle<S>>` leaked by `new_handle`, freed once.
        unsafe fn free<S>(p: *mut c_void) {
            // SAFETY: the function's contract.
            drop(unsafe { Box::from_raw(p.cast::<Handle<S>>()) });
        }
        Closed { shell: shell.cast(), free: free::<S> }
    }
}

/// How many closed handles stay allocated.
const QUARANTINE: usize = 64;

static CLOSED_HANDLES: Mutex<VecDeque<Closed>> = Mutex::new(VecDeque::new());

fn quarantine(shell: Closed) {
    let evicted = {
        let mut q = CLOSED_HANDLES.lock().unwrap_or_else(|e| e.into_inner());
        q.push_back(shell);
        if q.len() > QUARANTINE { q.pop_front() } else { None }
    };
    // Freed outside the lock.
    drop(evicted);
}

/// The per-handle re-entry guard: one call at a time inside a handle, a second one refused.
///
/// An atomic exchange on a flag at every entry would do, but on x86 a locked instruction
/// waits for the store buffer to drain, and right after a send that buffer holds the ring's
/// stores to lines the peer is reading: measured with `pingpong` (three calls per hop),
/// 40 ns more one-way latency at p50 (about 320 ns to 360 ns). So the guard is biased
/// towards the thread that used the handle last, its *owner*:
///
/// * Each thread has a cell (pooled, never freed) whose `slot` names the handle the thread
///   is inside, written only by that thread.
/// * The owner enters with plain stores: it writes the handle into its slot, then (after a
///   compiler fence) checks that it is still the owner; it leaves by clearing its slot.
/// * Any other thread takes the slow path: it takes the handle's `slow` flag (an exchange:
///   a second slow caller is refused), makes itself the owner, and runs
///   `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)` (a full barrier on every CPU running a
///   thread of this process) before it reads the old owner's slot. Either the old owner's
///   slot store came before that barrier, and the slow path sees the handle there and
///   refuses (handing ownership back), or the old owner's re-check comes after it, sees the
///   new owner and backs out into the slow path, where `slow` refuses it.
///
/// This is the asymmetric-fence pattern of `membarrier(2)` (the core uses it for wakeups).
/// A stale owner only ever writes its own slot, so it cannot clobber anyone's state. A
/// handle used by one thread pays no barrier; one that changes threads pays one
/// (microseconds). Where the kernel has no private expedited membarrier (or seccomp forbids
/// it), nobody ever becomes owner and `slow` alone is the guard: correct, and slower.
///
/// The fast path finds the caller's cell without thread-local storage, which from a shared
/// library is a call into the dynamic loader (`__tls_get_addr`): with `errno`'s call into
/// libc, that put C 70 ns behind Rust per hop at p50 on a VM where a call into another
/// library's pages costs that much. Each cell records the [`thread_pointer`] of the thread
/// that took it, so a caller whose thread pointer is the one in the owner's cell is taken
/// for the owner. That is never wrong, because a cell's record is always one of:
///
/// * 0: nobody holds it (a thread zeroes it at its end, before the cell goes back to the
///   pool for another thread to take);
/// * the thread pointer of its live holder, which no other live thread has;
/// * the thread pointer of a holder that ended without running its thread-local destructors
///   (the other threads of a process that forked, a raw `exit` system call): such a cell
///   never went back to the pool, so a later thread given the same thread pointer is the
///   only one that can match it, and may use it as its own.
///
/// A thread that reuses an ended thread's thread pointer was created after that thread
/// ended, so it sees the zero written at the end.
mod reentry {
    use std::ptr;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, AtomicUsize, Ordering, compiler_fence};

    pub(crate) struct Guard {
        /// The cell of the thread that may enter on the fast path; null: none.
        owner: AtomicPtr<Cell>,
        /// A slow-path call holds the handle (or is deciding whether it may).
        slow: AtomicBool,
    }

    /// A thread's record of the handle it is inside.
    struct Cell {
        /// The `Guard` of the handle this thread is inside, or null. Written only by the
        /// thread that has the cell.
        slot: AtomicPtr<Guard>,
        /// The [`thread_pointer`] of the thread that has the cell; 0 while nobody has it (see
        /// the module docs). Written only by that thread (when it takes the cell and when it
        /// ends).
        thread: AtomicUsize,
    }

    /// The calling thread's thread pointer, read with one instruction: the TCB's pointer
    /// to itself at `%fs:0` on x86_64, `TPIDR_EL0` on aarch64 (the ELF TLS ABI of both).
    /// Every live thread has its own. `None` on other architectures (the fast path then
    /// looks its cell up in thread-local storage).
    #[inline(always)]
    pub(crate) fn thread_pointer() -> Option<usize> {
        #[cfg(target_arch = "x86_64")]
        {
            let tp: usize;
            // SAFETY: reads the word at `%fs:0`, which the x86_64 TLS ABI (glibc, musl)
            // keeps pointing at the thread's own TCB; no other memory or flag is touched.
            unsafe {
                std::arch::asm!("mov {}, qword ptr fs:[0]", out(reg) tp, options(nostack, readonly, preserves_flags))
            };
            Some(tp)
        }
        #[cfg(target_arch = "aarch64")]
        {
            let tp: usize;
            // SAFETY: reads the thread pointer register; touches no memory.
            unsafe { std::arch::asm!("mrs {}, tpidr_el0", out(reg) tp, options(nomem, nostack, preserves_flags)) };
            Some(tp)
        }
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        {
            None
        }
    }

    /// A call inside the handle; leaves it when dropped.
    pub(crate) struct Inside<'a> {
        guard: &'a Guard,
        /// The cell whose slot this call filled, if it did.
        cell: Option<&'static Cell>,
        /// Entered by the slow path: holds `slow`.
        slow: bool,
    }

    impl Guard {
        pub(crate) const fn new() -> Guard {
            Guard { owner: AtomicPtr::new(ptr::null_mut()), slow: AtomicBool::new(false) }
        }

        /// The owner's cell if the caller is the owner (see the module docs).
        #[inline]
        fn owned_by_me(&self) -> Option<&'static Cell> {
            // Relaxed: the owner is only compared with this thread; a change by another
            // thread is caught by the re-check in `enter` (see the module).
            let owner = self.owner.load(Ordering::Relaxed);
            let Some(tp) = thread_pointer() else {
                return my_cell().filter(|c| ptr::eq(owner, *c));
            };
            if owner.is_null() {
                return None;
            }
            // SAFETY: cells are never freed.
            let cell: &'static Cell = unsafe { &*owner };
            // Relaxed: equal only if this thread wrote it (see the module docs); the end of
            // any earlier thread with this thread pointer, which zeroed it, happened before
            // this thread began.
            (cell.thread.load(Ordering::Relaxed) == tp).then_some(cell)
        }

        /// Enters, or `None` if another call is inside (or might be: see `enter_slow`).
        #[inline]
        pub(crate) fn enter(&self) -> Option<Inside<'_>> {
            if let Some(cell) = self.owned_by_me() {
                let this = self as *const Guard as *mut Guard;
                // Relaxed: only this thread writes its slot.
                if cell.slot.load(Ordering::Relaxed).is_null() {
                    // SYNC POINT (asymmetric, with the barrier in `enter_slow`): fill the
                    // slot, then re-read the owner, in this order for the compiler; the CPU
                    // order is enforced by the slow path's membarrier, not here. Release:
                    // a slow path that reads this slot also sees this thread's earlier
                    // writes to the handle's state (every store to a slot is Release).
                    cell.slot.store(this, Ordering::Release);
                    compiler_fence(Ordering::SeqCst);
                    if ptr::eq(self.owner.load(Ordering::Relaxed), cell) {
                        return Some(Inside { guard: self, cell: Some(cell), slow: false });
                    }
                    // Another thread took over meanwhile: back out and queue behind it.
                    cell.slot.store(ptr::null_mut(), Ordering::Release);
                }
            }
            self.enter_slow(my_cell())
        }

        #[cold]
        fn enter_slow(&self, me: Option<&'static Cell>) -> Option<Inside<'_>> {
            // Acquire: pairs with the Release in `Inside::drop` of the last slow-path call.
            if self.slow.swap(true, Ordering::Acquire) {
                return None;
            }
            let refuse = || {
                // Release: as in `Inside::drop`.
                self.slow.store(false, Ordering::Release);
                None
            };
            let this = self as *const Guard as *mut Guard;
            if registered() {
                let new = me.map_or(ptr::null_mut(), |c| c as *const Cell as *mut Cell);
                // Relaxed: only slow-path calls, which hold `slow`, write `owner`.
                let old = self.owner.swap(new, Ordering::Relaxed);
                if !old.is_null() {
                    // SYNC POINT: see the module docs. The old owner is inside or not; its
                    // slot says which once the barrier has run.
                    let inside = !barrier() || {
                        // SAFETY: cells are never freed.
                        let old = unsafe { &*old };
                        // Acquire: pairs with the old owner's Release stores to its slot,
                        // so its writes to the state are visible here.
                        ptr::eq(old.slot.load(Ordering::Acquire), this)
                    };
                    if inside {
                        // Hand the handle back: the old owner may be inside it.
                        self.owner.store(old, Ordering::Relaxed);
                        return refuse();
                    }
                }
            }
            // Symmetric mode, or the handle is ours now: `slow` keeps everyone else out.
            // Fill this thread's slot if it is free (Relaxed: only this thread writes it),
            // so that the next slow path of another thread sees where this one is.
            let cell = me.filter(|c| c.slot.load(Ordering::Relaxed).is_null());
            if let Some(c) = cell {
                // Release: see `enter`.
                c.slot.store(this, Ordering::Release);
            }
            Some(Inside { guard: self, cell, slow: true })
        }
    }

    impl Drop for Inside<'_> {
        #[inline]
        fn drop(&mut self) {
            if let Some(cell) = self.cell {
                // Release: this call's writes to the state happen before whatever reads
                // the slot next (a slow path's Acquire load).
                cell.slot.store(ptr::null_mut(), Ordering::Release);
            }
            if self.slow {
                // Release: pairs with the Acquire exchange of the next slow-path call.
                self.guard.slow.store(false, Ordering::Release);
            }
        }
    }

    /// Cells of threads that ended, for new threads to take: a cell is written only by its
    /// thread, so once that thread is gone nobody writes it and it can be handed on.
    static FREE_CELLS: Mutex<Vec<&'static Cell>> = Mutex::new(Vec::new());

    /// This thread's hold on its cell; gives it back when the thread ends.
    struct Held(&'static Cell);

    impl Drop for Held {
        fn drop(&mut self) {
            // Release: as in `Inside::drop`.
            self.0.slot.store(ptr::null_mut(), Ordering::Release);
            // Relaxed: whoever compares it with its own thread pointer began after this
            // thread ended, or is the next holder (which writes its own first).
            self.0.thread.store(0, Ordering::Relaxed);
            FREE_CELLS.lock().unwrap_or_else(|e| e.into_inner()).push(self.0);
        }
    }

    thread_local! {
        static CELL: Held = {
            let cell: &'static Cell = FREE_CELLS.lock().unwrap_or_else(|e| e.into_inner()).pop().unwrap_or_else(|| {
                Box::leak(Box::new(Cell { slot: AtomicPtr::new(ptr::null_mut()), thread: AtomicUsize::new(0) }))
            });
            // Relaxed: read only to compare with a thread pointer (see `owned_by_me`).
            cell.thread.store(thread_pointer().unwrap_or(0), Ordering::Relaxed);
            super::errno::check_this_thread();
            Held(cell)
        };
    }

    /// This thread's cell; `None` while thread-local storage is being torn down (a call from
    /// a thread-exit destructor), which then takes the slow path without a cell.
    #[inline]
    fn my_cell() -> Option<&'static Cell> {
        CELL.try_with(|h| h.0).ok()
    }

    const MEMBARRIER_CMD_PRIVATE_EXPEDITED: libc::c_int = 1 << 3;
    const MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_int = 1 << 4;

    /// The pid that registered for private expedited barriers (a forked child registers
    /// again), negated if it could not; 0: not tried yet.
    static REGISTERED_PID: AtomicI32 = AtomicI32::new(0);

    /// Whether this process may use `barrier` (registers on first use). Only slow paths ask.
    fn registered() -> bool {
        // SAFETY: getpid has no preconditions.
        let pid = unsafe { libc::getpid() };
        // Relaxed: a flag about this process; the syscall orders itself.
        match REGISTERED_PID.load(Ordering::Relaxed) {
            p if p == pid => return true,
            p if p == -pid => return false,
            _ => {}
        }
        // `SHMQ_C_NO_MEMBARRIER=1` (for the tests of the fallback) acts as a kernel without it.
        let refused = std::env::var_os("SHMQ_C_NO_MEMBARRIER").is_some_and(|v| v == "1");
        // SAFETY: membarrier takes integer arguments and touches no memory of ours.
        let ok = !refused
            && unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) } == 0;
        // Relaxed: as above; racing registrations are harmless.
        REGISTERED_PID.store(if ok { pid } else { -pid }, Ordering::Relaxed);
        ok
    }

    /// A full memory barrier on every CPU running a thread of this process.
    fn barrier() -> bool {
        // SAFETY: as in `registered`.
        unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) == 0 }
    }
}

/// Makes a handle for C.
fn new_handle<S: Kind>(state: S, interrupter: Interrupter) -> *mut Handle<S> {
    Box::into_raw(Box::new(Handle {
        magic: AtomicU64::new(S::OPEN),
        guard: reentry::Guard::new(),
        interrupting: AtomicU32::new(0),
        interrupter: UnsafeCell::new(Some(interrupter)),
        state: UnsafeCell::new(Some(state)),
    }))
}

/// The shell behind a C pointer, after checking its magic word.
///
/// # Safety
/// `h` is NULL or points to at least 8 readable bytes that no one writes non-atomically
/// meanwhile (a handle from this library, open or in the quarantine, qualifies).
unsafe fn shell<'a, S: Kind>(h: *mut c_void) -> Res<&'a Handle<S>> {
    // SAFETY: the caller's contract.
    unsafe { classify(h) }.map_err(invalid)
}

/// [`shell`] without side effects: the reason is returned, not recorded (async-signal-safe).
///
/// # Safety
/// As [`shell`].
unsafe fn classify<'a, S: Kind>(h: *mut c_void) -> Result<&'a Handle<S>, &'static CStr> {
    if h.is_null() {
        return Err(S::NULL);
    }
    if (h as usize) % std::mem::align_of::<Handle<S>>() != 0 {
        return Err(S::NOT_A_HANDLE);
    }
    // SAFETY: aligned, and 8 readable bytes by the caller's contract; read as an atomic
    // because a handle's magic word is one.
    let magic = unsafe { &*h.cast::<AtomicU64>() };
    // Relaxed: the word only sorts out what the pointer is; who may use the state is
    // decided by the Acquire on `busy` and the `Option` behind it.
    match magic.load(Ordering::Relaxed) {
        m if m == S::OPEN => {}
        m if m == S::CLOSED => return Err(S::USED_AFTER_CLOSE),
        m if m == S::OTHER => return Err(S::WRONG_KIND),
        _ => return Err(S::NOT_A_HANDLE),
    }
    // SAFETY: the magic word says this is a live `Handle<S>` made by `new_handle` (or one
    // in the quarantine, which stays allocated); only shared references to it are made.
    Ok(unsafe { &*h.cast::<Handle<S>>() })
}

/// Interrupts the handle's current or next waiting call. Async-signal-safe: atomics, one
/// `FUTEX_WAKE`, errno restored; no allocation, no lock, no thread-local, no last error.
///
/// # Safety
/// As [`shell`].
unsafe fn interrupt<S: Kind>(h: *mut c_void) -> c_int {
    let _errno = ErrnoGuard::save();
    // SAFETY: the caller's contract.
    let Ok(shell) = (unsafe { classify::<S>(h) }) else { return SHMQ_ERR_INVALID };
    // SYNC POINT: SeqCst on this increment, the magic re-check below, the close's poison
    // store and its read of `interrupting`: in their single total order either this
    // increment comes first (the close waits for the decrement before dropping the
    // interrupter) or the poison does (this re-check sees it and touches nothing).
    shell.interrupting.fetch_add(1, Ordering::SeqCst);
    let rc = if shell.magic.load(Ordering::SeqCst) == S::OPEN {
        // SAFETY: set at open and only taken by the close, which waits until
        // `interrupting` is 0 first (see above); shared reads only.
        match unsafe { &*shell.interrupter.get() } {
            Some(i) => {
                i.interrupt();
                SHMQ_OK
            }
            None => SHMQ_ERR_INVALID,
        }
    } else {
        SHMQ_ERR_INVALID
    };
    // Release: this call's reads of the interrupter happen before the close, which loads
    // the counter (SeqCst, so also Acquire), drops it.
    shell.interrupting.fetch_sub(1, Ordering::Release);
    rc
}

/// Runs `f` on the state of the handle `h`, one call at a time: a second caller meanwhile
/// gets `SHMQ_ERR_BUSY` rather than a share of the state.
///
/// # Safety
/// As [`shell`].
unsafe fn with<S: Kind, R>(h: *mut c_void, f: impl FnOnce(&mut S) -> Res<R>) -> Res<R> {
    // SAFETY: the caller's contract.
    let shell = unsafe { shell::<S>(h)? };
    // The guard's entry orders this call after the previous one (see `reentry`).
    let Some(_inside) = shell.guard.enter() else { return Err(fail(SHMQ_ERR_BUSY, S::IN_USE)) };
    // SAFETY: the guard let this call in alone: no other reference to the state exists
    // until `_inside` is dropped.
    let state = unsafe { &mut *shell.state.get() };
    // A close that ran between the magic check and the swap left `None`.
    f(state.as_mut().ok_or_else(|| invalid(S::USED_AFTER_CLOSE))?)
}

/// Closes the handle `h`: poisons its magic word, drops its state (after `before_drop`)
/// and puts the shell in the quarantine. Records a last-error message and does nothing if
/// the handle is not an open one or is in a call on another thread.
///
/// # Safety
/// As [`shell`].
unsafe fn close<S: Kind>(h: *mut c_void, before_drop: impl FnOnce(&mut S)) {
    if h.is_null() {
        return;
    }
    // SAFETY: the caller's contract.
    let Ok(shell) = (unsafe { shell::<S>(h) }) else { return };
    let Some(inside) = shell.guard.enter() else {
        last_error::set_static(S::NOT_CLOSED);
        return;
    };
    // SAFETY: as in `with`: the guard let this call in alone.
    let state = unsafe { &mut *shell.state.get() };
    let Some(mut state) = state.take() else {
        last_error::set_static(S::USED_AFTER_CLOSE);
        return;
    };
    // SYNC POINT: SeqCst, paired with `interrupt` (see there); for every other call the
    // state is already gone.
    shell.magic.store(S::CLOSED, Ordering::SeqCst);
    // SeqCst: see `interrupt`. An interrupt in progress is a few instructions and one
    // system call away from its decrement; one running in a signal handler on this very
    // thread has finished before this line runs again.
    while shell.interrupting.load(Ordering::SeqCst) != 0 {
        std::thread::yield_now();
    }
    // SAFETY: no interrupt call is inside (above) and none can enter (the poison).
    let interrupter = unsafe { (*shell.interrupter.get()).take() };
    drop(inside);
    before_drop(&mut state);
    drop(state);
    drop(interrupter);
    // SAFETY: made by `new_handle::<S>` (its magic word said so), closed just now, and
    // from here on owned by the quarantine, which keeps it allocated and frees it only
    // after QUARANTINE later closes.
    quarantine(unsafe { Closed::new::<S>(h.cast()) });
}

/// A C error code on its way out; `?` converts a Rust error into it. Every way of making
/// one records the reason in this thread's last-error message first ([`shmq_last_error`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Code(c_int);

impl From<Error> for Code {
    fn from(e: Error) -> Code {
        // The errors a polling loop meets all the time have fixed texts: no allocation.
        match e {
            Error::Full => last_error::set_static(c"queue is full"),
            Error::Timeout => last_error::set_static(c"timed out"),
            Error::Closed => last_error::set_static(c"queue is closed"),
            Error::Interrupted => last_error::set_static(c"interrupted (shmq_*_interrupt)"),
            ref other => last_error::set(with_causes(other)),
        }
        Code(e.code())
    }
}

/// An error's text followed by its causes (`context: OS error`), each once: the Rust error
/// displays only its own text and keeps the OS error as its source.
fn with_causes(e: &Error) -> String {
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        let c_text = c.to_string();
        if !text.ends_with(&c_text) {
            text.push_str(": ");
            text.push_str(&c_text);
        }
        cause = c.source();
    }
    text
}

/// `SHMQ_ERR_INVALID`, with `why` as the last-error message.
fn invalid(why: &'static CStr) -> Code {
    fail(SHMQ_ERR_INVALID, why)
}

/// `SHMQ_ERR_INVALID`, with `why` as the last-error message.
fn invalid_owned(why: String) -> Code {
    last_error::set(why);
    Code(SHMQ_ERR_INVALID)
}

/// The code `code`, with `why` as the last-error message.
fn fail(code: c_int, why: &'static CStr) -> Code {
    last_error::set_static(why);
    Code(code)
}

/// The calling thread's last-error message: set by every failing call, read by
/// [`shmq_last_error`]. Never touched by the async-signal-safe functions.
mod last_error {
    use std::cell::RefCell;
    use std::ffi::{CStr, CString, c_char};

    enum Message {
        Static(&'static CStr),
        Owned(CString),
    }

    thread_local! {
        static LAST: RefCell<Message> = const { RefCell::new(Message::Static(c"")) };
    }

    pub(crate) fn set_static(msg: &'static CStr) {
        // `try_with`: a call from a thread-local destructor after ours was dropped records
        // nothing rather than panicking; `try_borrow_mut`: never panics either.
        let _ = LAST.try_with(|m| m.try_borrow_mut().map(|mut m| *m = Message::Static(msg)));
    }

    pub(crate) fn set(msg: String) {
        // A NUL inside (a name echoed back, say) would cut the C string short: replace it.
        let msg = CString::new(msg).unwrap_or_else(|e| {
            let bytes: Vec<u8> = e.into_vec().into_iter().map(|b| if b == 0 { b'?' } else { b }).collect();
            CString::new(bytes).unwrap_or_default()
        });
        let _ = LAST.try_with(|m| m.try_borrow_mut().map(|mut m| *m = Message::Owned(msg)));
    }

    /// The current message; valid until the next `set*` on this thread.
    pub(crate) fn get() -> *const c_char {
        LAST.try_with(|m| match m.try_borrow().as_deref() {
            Ok(Message::Static(s)) => s.as_ptr(),
            Ok(Message::Owned(s)) => s.as_ptr(),
            Err(_) => c"".as_ptr(),
        })
        .unwrap_or(c"".as_ptr())
    }
}

type Res<T = ()> = Result<T, Code>;

/// Restores the caller's `errno` when dropped.
struct ErrnoGuard {
    at: *mut c_int,
    saved: c_int,
}

impl ErrnoGuard {
    #[inline]
    fn save() -> ErrnoGuard {
        let at = errno::location();
        // SAFETY: the calling thread's errno, valid for reads and writes while the thread
        // lives (the guard does not leave it: it is neither `Send` nor `Sync`).
        ErrnoGuard { at, saved: unsafe { *at } }
    }
}

impl Drop for ErrnoGuard {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: as in `save`.
        unsafe { *self.at = self.saved };
    }
}

/// Where the calling thread's `errno` is, without a call into libc (`__errno_location`),
/// which on some VMs costs tens of nanoseconds per exported call.
///
/// `errno` is a static thread-local of libc (initial-exec), so by the ELF TLS ABI it lies at
/// the same offset from the [`reentry::thread_pointer`] in every thread, within the static
/// TLS area next to it. The offset is learned from `__errno_location` on the first call, and
/// checked again by each thread when it first takes a re-entry cell. Should any thread ever
/// disagree, or `__errno_location` answer with an address outside the static TLS area (a
/// library that interposes it to keep an `errno` per coroutine, say), every later call asks
/// libc.
mod errno {
    use std::ffi::c_int;
    use std::sync::atomic::{AtomicIsize, Ordering};

    use super::reentry::thread_pointer;

    /// Nothing learned yet.
    const UNKNOWN: isize = isize::MIN;
    /// The offset is not the same in every thread, or not one of the static TLS area:
    /// always ask libc.
    const UNUSABLE: isize = isize::MIN + 1;
    /// The farthest from the thread pointer that a static thread-local can be: the static
    /// TLS area holds the thread-locals of the libraries loaded at start, kilobytes.
    const STATIC_TLS_REACH: isize = 1 << 20;
    /// `errno`'s address minus the thread pointer, or one of the above.
    static OFFSET: AtomicIsize = AtomicIsize::new(UNKNOWN);

    /// The calling thread's `errno`.
    #[inline]
    pub(super) fn location() -> *mut c_int {
        if let Some(tp) = thread_pointer() {
            // Relaxed: a value, the same whoever wrote it (or UNUSABLE).
            let off = OFFSET.load(Ordering::Relaxed);
            if off != UNKNOWN && off != UNUSABLE {
                return std::ptr::with_exposed_provenance_mut::<c_int>(tp.wrapping_add_signed(off));
            }
        }
        learn()
    }

    /// Asks libc, and learns (or checks) the offset.
    #[cold]
    fn learn() -> *mut c_int {
        // SAFETY: no preconditions; returns the calling thread's errno.
        let at = unsafe { libc::__errno_location() };
        if let Some(tp) = thread_pointer() {
            let off = (at as isize).wrapping_sub(tp as isize);
            // Below the thread pointer on x86_64 (TLS variant II), above it on aarch64.
            let static_tls = if cfg!(target_arch = "x86_64") {
                (-STATIC_TLS_REACH..0).contains(&off)
            } else {
                (0..STATIC_TLS_REACH).contains(&off)
            };
            if !static_tls {
                // Relaxed: as in `location`.
                OFFSET.store(UNUSABLE, Ordering::Relaxed);
                return at;
            }
            // Relaxed: as in `location`.
            match OFFSET.compare_exchange(UNKNOWN, off, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => {}
                Err(seen) if seen == off || seen == UNUSABLE => {}
                // Relaxed: as above.
                Err(_) => OFFSET.store(UNUSABLE, Ordering::Relaxed),
            }
        }
        at
    }

    /// Checks the offset for the calling thread (once per thread).
    pub(super) fn check_this_thread() {
        learn();
    }
}

/// Runs the body of an exported function: `errno` preserved, panics caught, the result
/// turned into a C code.
fn guard(f: impl FnOnce() -> Res) -> c_int {
    let _errno = ErrnoGuard::save();
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => SHMQ_OK,
        Ok(Err(Code(c))) => c,
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            last_error::set(format!("internal error in libshmq (a bug, please report it): {what}"));
            SHMQ_ERR_INTERNAL
        }
    }
}

/// [`guard`] for the functions that return nothing: a panic is swallowed.
fn guard_void(f: impl FnOnce()) {
    let _errno = ErrnoGuard::save();
    let _ = catch_unwind(AssertUnwindSafe(f));
}

/// How long a call may wait, from a C timeout in nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Timeout {
    /// `0`: try once.
    Try,
    /// Negative: wait forever.
    Forever,
    /// Positive: at most this long.
    For(Duration),
}

fn timeout(ns: i64) -> Timeout {
    match ns {
        0 => Timeout::Try,
        n if n < 0 => Timeout::Forever,
        n => Timeout::For(Duration::from_nanos(n as u64)),
    }
}

fn wait_policy(w: c_int) -> Res<Wait> {
    match w {
        SHMQ_WAIT_SPIN => Ok(Wait::Spin),
        SHMQ_WAIT_BLOCK => Ok(Wait::Block),
        SHMQ_WAIT_ADAPTIVE => Ok(Wait::Adaptive),
        _ => Err(invalid(c"invalid wait policy: use SHMQ_WAIT_SPIN, SHMQ_WAIT_BLOCK or SHMQ_WAIT_ADAPTIVE")),
    }
}

/// The queue name behind a C string: NULL or not UTF-8 is `SHMQ_ERR_INVALID` (the Rust
/// crate checks the characters).
///
/// # Safety
/// `name` is NULL or a NUL-terminated string that lives for `'a`.
unsafe fn name_arg<'a>(name: *const c_char) -> Res<&'a str> {
    if name.is_null() {
        return Err(invalid(c"invalid queue name: NULL"));
    }
    // SAFETY: non-null, and NUL-terminated by the caller's contract.
    let name = unsafe { CStr::from_ptr(name) };
    name.to_str().map_err(|_| invalid(c"invalid queue name: not UTF-8 (use 1-200 bytes of [A-Za-z0-9._-])"))
}

/// The Rust options from a C `shmq_options`, reading only the fields its `size` covers.
///
/// # Safety
/// `o` is NULL or points to `o->size` readable bytes.
unsafe fn options_arg(o: *const shmq_options) -> Res<Options> {
    if o.is_null() {
        return Err(invalid(c"invalid options: NULL"));
    }
    // SAFETY: `size` is the first field, and every caller's struct has it.
    let size = unsafe { std::ptr::addr_of!((*o).size).read_unaligned() };
    if !options_size_ok(size) {
        return Err(invalid_owned(format!(
            "invalid options: size {size} is not a shmq_options size ({OPTIONS_V1_SIZE}, or {OPTIONS_V2_SIZE} to \
             {OPTIONS_MAX_SIZE}); initialise the struct with shmq_options_init"
        )));
    }
    // The fields the caller's size covers; the defaults for the rest (a first-version
    // caller's struct ends at `reserved`).
    let mut v = DEFAULT_OPTIONS;
    // SAFETY: the caller vouches for `size` readable bytes, of which the first
    // `min(size, OPTIONS_V2_SIZE)` are fields of this version's struct (whole fields:
    // `options_size_ok`); `v` is a local struct of OPTIONS_V2_SIZE bytes.
    unsafe { std::ptr::copy_nonoverlapping(o.cast::<u8>(), (&raw mut v).cast::<u8>(), size.min(OPTIONS_V2_SIZE)) };
    // A caller that knows fields this library does not: refuse unless they are zero
    // (their meaning would be ignored otherwise).
    if size > OPTIONS_V2_SIZE {
        // SAFETY: the caller vouches for `size` readable bytes.
        let all = unsafe { std::slice::from_raw_parts(o.cast::<u8>(), size) };
        if let Some(at) = all[OPTIONS_V2_SIZE..].iter().position(|&b| b != 0) {
            return Err(invalid_owned(format!(
                "invalid options: byte {} of the caller's {size}-byte shmq_options is not zero, and this \
                 libshmq knows only the first {OPTIONS_V2_SIZE} bytes: the program was compiled against a newer \
                 shmq.h and uses an option this library does not have",
                OPTIONS_V2_SIZE + at
            )));
        }
    }
    if v.reserved != 0 || v.reserved2 != 0 {
        return Err(invalid(c"invalid options: `reserved` and `reserved2` must be 0"));
    }
    let mode = match v.mode {
        SHMQ_MODE_SPSC => Mode::Spsc,
        SHMQ_MODE_MPSC => Mode::Mpsc,
        m => return Err(invalid_owned(format!("invalid options: mode {m}: use SHMQ_MODE_SPSC or SHMQ_MODE_MPSC"))),
    };
    let options = Options::new().capacity(v.capacity).max_message(v.max_message).mode(mode).permissions(v.permissions);
    // SAFETY: `log_dir` is NULL or a NUL-terminated string, by the caller's contract.
    unsafe { durable_options(options, &v) }
}

/// Adds the durable fields of `v` to `options`: a log directory makes the queue durable;
/// without one every durable field must keep its default.
///
/// # Safety
/// `v.log_dir` is NULL or a NUL-terminated string.
unsafe fn durable_options(options: Options, v: &shmq_options) -> Res<Options> {
    use std::os::unix::ffi::OsStrExt;
    if v.log_dir.is_null() {
        let set = [
            ("fsync", v.fsync != SHMQ_FSYNC_NEVER),
            ("fsync_interval_ns", v.fsync_interval_ns != 0),
            ("max_log_bytes", v.max_log_bytes != 0),
            ("retain_bytes", v.retain_bytes != 0),
        ];
        return match set.iter().find(|(_, is_set)| *is_set) {
            Some((field, _)) => Err(invalid_owned(format!(
                "invalid options: {field} is set but log_dir is NULL: only a durable queue (log_dir set) has a log"
            ))),
            None => Ok(options),
        };
    }
    // SAFETY: non-null, and NUL-terminated by the caller's contract.
    let dir = unsafe { CStr::from_ptr(v.log_dir) };
    if dir.is_empty() {
        return Err(invalid(c"invalid options: log_dir is empty (NULL makes a volatile queue)"));
    }
    let fsync = match (v.fsync, v.fsync_interval_ns) {
        (SHMQ_FSYNC_NEVER, 0) => Fsync::Never,
        (SHMQ_FSYNC_ALWAYS, 0) => Fsync::Always,
        (SHMQ_FSYNC_INTERVAL, 0) => {
            return Err(invalid(
                c"invalid options: SHMQ_FSYNC_INTERVAL needs fsync_interval_ns (more than 0 nanoseconds)",
            ));
        }
        (SHMQ_FSYNC_INTERVAL, ns) => Fsync::Interval(Duration::from_nanos(ns)),
        (SHMQ_FSYNC_NEVER | SHMQ_FSYNC_ALWAYS, ns) => {
            return Err(invalid_owned(format!(
                "invalid options: fsync_interval_ns {ns} applies only to SHMQ_FSYNC_INTERVAL (set it to 0)"
            )));
        }
        (f, _) => {
            return Err(invalid_owned(format!(
                "invalid options: fsync {f}: use SHMQ_FSYNC_NEVER, SHMQ_FSYNC_INTERVAL or SHMQ_FSYNC_ALWAYS"
            )));
        }
    };
    let max_log_bytes = if v.max_log_bytes == 0 { SHMQ_DEFAULT_MAX_LOG_BYTES } else { v.max_log_bytes };
    let retain = if v.retain_bytes == 0 { Retain::Acked } else { Retain::Bytes(v.retain_bytes) };
    Ok(options
        .durable(std::ffi::OsStr::from_bytes(dir.to_bytes()))
        .fsync(fsync)
        .max_log_bytes(max_log_bytes)
        .retain(retain))
}

/// The subscription name behind a C string: NULL or not UTF-8 is `SHMQ_ERR_INVALID` (the
/// Rust crate checks the characters and the length).
///
/// # Safety
/// `name` is NULL or a NUL-terminated string that lives for `'a`.
unsafe fn subscription_name_arg<'a>(name: *const c_char) -> Res<&'a str> {
    if name.is_null() {
        return Err(invalid(c"invalid subscription name: NULL"));
    }
    // SAFETY: non-null, and NUL-terminated by the caller's contract.
    let name = unsafe { CStr::from_ptr(name) };
    name.to_str().map_err(|_| invalid(c"invalid subscription name: not UTF-8 (use 1-48 bytes of [A-Za-z0-9._-])"))
}

/// The Rust options from a C `shmq_subscription_options` (NULL: the defaults), reading
/// only the fields its `size` covers.
///
/// # Safety
/// `o` is NULL or points to `o->size` readable bytes.
unsafe fn subscription_options_arg(o: *const shmq_subscription_options) -> Res<SubscriptionOptions> {
    if o.is_null() {
        return Ok(SubscriptionOptions::new());
    }
    // SAFETY: `size` is the first field, and every caller's struct has it.
    let size = unsafe { std::ptr::addr_of!((*o).size).read_unaligned() };
    if !(SUBSCRIPTION_OPTIONS_V1_SIZE..=OPTIONS_MAX_SIZE).contains(&size) {
        return Err(invalid_owned(format!(
            "invalid subscription options: size {size} is not a shmq_subscription_options size \
             ({SUBSCRIPTION_OPTIONS_V1_SIZE} to {OPTIONS_MAX_SIZE}); initialise the struct with \
             shmq_subscription_options_init"
        )));
    }
    // SAFETY: the caller's struct has at least the v1 fields (its size says so).
    let v1 = unsafe { o.read_unaligned() };
    // SAFETY: the caller vouches for `size` readable bytes.
    let all = unsafe { std::slice::from_raw_parts(o.cast::<u8>(), size) };
    if let Some(at) = all[SUBSCRIPTION_OPTIONS_V1_SIZE..].iter().position(|&b| b != 0) {
        return Err(invalid_owned(format!(
            "invalid subscription options: byte {} of the caller's {size}-byte shmq_subscription_options is \
             not zero, and this libshmq knows only the first {SUBSCRIPTION_OPTIONS_V1_SIZE} bytes: the program \
             was compiled against a newer shmq.h and uses an option this library does not have",
            SUBSCRIPTION_OPTIONS_V1_SIZE + at
        )));
    }
    if v1.start != SHMQ_START_NOW {
        return Err(invalid_owned(format!(
            "invalid subscription options: start {}: a volatile queue has only SHMQ_START_NOW",
            v1.start
        )));
    }
    let lag_limit = (v1.lag_limit != 0).then_some(v1.lag_limit);
    let options = SubscriptionOptions::new().start(shmq_core::From::Now).lag_limit(lag_limit);
    match v1.ack {
        SHMQ_ACK_AUTO => {
            let set = [
                ("ack_wait_ns", v1.ack_wait_ns != 0),
                ("max_in_flight", v1.max_in_flight != 0),
                ("max_deliveries", v1.max_deliveries != 0),
            ];
            match set.iter().find(|(_, is_set)| *is_set) {
                Some((field, _)) => Err(invalid_owned(format!(
                    "invalid subscription options: {field} is set but ack is SHMQ_ACK_AUTO: it applies only to \
                     SHMQ_ACK_EXPLICIT"
                ))),
                None => Ok(options),
            }
        }
        SHMQ_ACK_EXPLICIT => {
            // 0 is the library's default; the Rust crate checks the ranges (and that the
            // queue is durable).
            let ack_wait = match v1.ack_wait_ns {
                0 => SHMQ_DEFAULT_ACK_WAIT_NS,
                ns if ns < 0 => {
                    return Err(invalid_owned(format!(
                        "invalid subscription options: ack_wait_ns {ns} is negative (0: the default, \
                         SHMQ_DEFAULT_ACK_WAIT_NS)"
                    )));
                }
                ns => ns,
            };
            let or = |v: u32, default: u32| if v == 0 { default } else { v };
            Ok(options
                .ack(Ack::Explicit)
                .ack_wait(Duration::from_nanos(ack_wait as u64))
                .max_in_flight(or(v1.max_in_flight, SHMQ_DEFAULT_MAX_IN_FLIGHT))
                .max_deliveries(or(v1.max_deliveries, SHMQ_DEFAULT_MAX_DELIVERIES)))
        }
        a => {
            Err(invalid_owned(format!("invalid subscription options: ack {a}: use SHMQ_ACK_AUTO or SHMQ_ACK_EXPLICIT")))
        }
    }
}

/// Writes `value` through `out` if `out` is not NULL.
///
/// # Safety
/// `out` is NULL or valid for a write of `T`.
unsafe fn put<T>(out: *mut T, value: T) {
    if !out.is_null() {
        // SAFETY: non-null and writable by the caller's contract.
        unsafe { out.write(value) };
    }
}

/// Sets the first 32 bytes of `*o` (the fields of the first `shmq_options`, up to
/// `reserved`) to the defaults (capacity 1 MiB, `max_message` 64 KiB, `SHMQ_MODE_MPSC`,
/// permissions `0600`) and `o->size` to 32. Does nothing if `o` is NULL. Thread-safe;
/// does not block.
///
/// The header defines a macro of the same name, `shmq_options_init(o)`, which calls
/// `shmq_options_init_sized(o, sizeof *(o))` instead: that is what programs compiled
/// against this header use. This function stays for programs compiled against the first
/// header; it writes exactly 32 bytes, now and in later versions.
///
/// # Safety
/// `o` is NULL or points to a writable `shmq_options`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmq_options_init(o: *mut shmq_options) {
    guard_void(|| {
        if !o.is_null() {
            let v1 = shmq_options { size: OPTIONS_V1_SIZE, ..DEFAULT_OPTIONS };
            // SAFETY: the caller's struct has at least the first version's 32 bytes
            // (writable by its contract); only those are written; byte copies have no
            // alignment needs.
            unsafe { std::ptr::copy_nonoverlapping((&raw const v1).cast::<u8>(), o.cast::<u8>(), OPTIONS_V1_SIZE) };
        }
    })
}

/// Sets up the caller's `shmq_options` of `size` bytes: the fields this library knows get
/// their defaults (those `shmq_options_init` sets, and the durable fields: `log_dir`
/// NULL, `SHMQ_FSYNC_NEVER`, everything else 0), `o->size` becomes `size`, and any bytes
/// beyond the fields this library knows (a newer header's fields) become 0. Call it
/// through the macro `shmq_options_init(o)`, which passes `sizeof *(o)`: the size then
/// always comes from the struct the program was compiled with, so a field appended by a
/// newer header is never silently ignored by an older library (`shmq_create` refuses it:
/// `SHMQ_ERR_INVALID`).
///
/// Returns `SHMQ_OK`; `SHMQ_ERR_INVALID` for a NULL `o` or a `size` that is no
/// `shmq_options` (32, the first version's struct, or 72 to 4096 bytes; `*o` is then left
/// alone). Thread-safe; does not block.
///
/// # Safety
/// `o` is NULL or points to `size` writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmq_options_init_sized(o: *mut shmq_options, size: usize) -> c_int {
    guard(|| {
        if o.is_null() {
            return Err(invalid(c"invalid argument: NULL options"));
        }
        if !options_size_ok(size) {
            return Err(invalid_owned(format!(
                "invalid argument: size {size} is not a shmq_options size ({OPTIONS_V1_SIZE}, or {OPTIONS_V2_SIZE} to \
                 {OPTIONS_MAX_SIZE})"
            )));
        }
        let known = size.min(OPTIONS_V2_SIZE);
        let v = shmq_options { size, ..DEFAULT_OPTIONS };
        // SAFETY: `size` writable bytes at `o` by the caller's contract, of which the first
        // `known` are fields of this version's struct (whole fields: `options_size_ok`);
        // byte copies have no alignment needs.
        unsafe {
            std::ptr::copy_nonoverlapping((&raw const v).cast::<u8>(), o.cast::<u8>(), known);
            std::ptr::write_bytes(o.cast::<u8>().add(known), 0, size - known);
        }
        Ok(())
    })
}

/// Sets up the caller's `shmq_subscription_options` of `size` bytes: every field this
/// library knows gets its default (0: start now, no lag limit, automatic acknowledgement),
/// `o->size` becomes `size`, and any bytes beyond (a newer header's fields) become 0. Call
/// it through the macro `shmq_subscription_options_init(o)`, which passes `sizeof *(o)`,
/// as with `shmq_options_init`.
///
/// Returns `SHMQ_OK`; `SHMQ_ERR_INVALID` for a NULL `o` or a `size` that is no
/// `shmq_subscription_options` (below 40 or above 4096 bytes; `*o` is then left alone).
/// Thread-safe; does not block.
///
/// # Safety
/// `o` is NULL or points to `size` writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmq_subscription_options_init_sized(o: *mut shmq_subscription_options, size: usize) -> c_int {
    guard(|| {
        if o.is_null() {
            return Err(invalid(c"invalid argument: NULL subscription options"));
        }
        if !(SUBSCRIPTION_OPTIONS_V1_SIZE..=OPTIONS_MAX_SIZE).contains(&size) {
            return Err(invalid_owned(format!(
                "invalid argument: size {size} is not a shmq_subscription_options size \
                 ({SUBSCRIPTION_OPTIONS_V1_SIZE} to {OPTIONS_MAX_SIZE})"
            )));
        }
        // SAFETY: `size` writable bytes at `o` by the caller's contract, of which the first
        // SUBSCRIPTION_OPTIONS_V1_SIZE are this version's struct; unaligned-safe writes.
        unsafe {
            o.write_unaligned(shmq_subscription_options { size, ..DEFAULT_SUBSCRIPTION_OPTIONS });
            std::ptr::write_bytes(
                o.cast::<u8>().add(SUBSCRIPTION_OPTIONS_V1_SIZE),
                0,
                size - SUBSCRIPTION_OPTIONS_V1_SIZE,
            );
        }
        Ok(())
    })
}

/// The `SHMQ_ABI_VERSION` this library was built with: compare it with the header's to
/// detect a program compiled against another major version. Thread-safe; does not block.
///
/// # Safety
/// None: any thread may call it at any time.
#[unsafe(no_mangle)]
pub extern "C" fn shmq_abi_version() -> c_int {
    SHMQ_ABI_VERSION
}

/// Creates the queue `name` (1-200 bytes of `[A-Za-z0-9._-]`, not starting with `.`) as
/// the POSIX shared-memory object `/shmq.<name>`, with the options `o`. Its memory is
/// reserved now: a full `/dev/shm` fails here, not later.
///
/// With `o->log_dir` set the queue is durable: its log is created in that directory, or,
/// if the directory holds the log of a queue that no longer exists in memory (after a host
/// restart, or `shmq_remove`), the queue is restored from it: ids continue above every id
/// handed out before, and the default consumer resumes after what it had received.
///
/// Returns `SHMQ_OK`; `SHMQ_ERR_EXISTS` if the name is taken; `SHMQ_ERR_INVALID` for a
/// NULL `name` or `o`, a bad name, or bad options (a log of another capacity);
/// `SHMQ_ERR_PERMISSION` (also for a log directory owned by another user or writable by
/// others), `SHMQ_ERR_IO`; durable queues also `SHMQ_ERR_CORRUPT` (a damaged log),
/// `SHMQ_ERR_INCOMPATIBLE` (a newer log format), `SHMQ_ERR_BUSY` (another process is
/// restoring it), `SHMQ_ERR_LOG`, `SHMQ_ERR_NO_SPACE`. Thread-safe; does not block (a
/// durable queue's creation writes and syncs its log files).
///
/// # Safety
/// `name` is NULL or a NUL-terminated string; `o` is NULL or points to `o->size` readable
/// bytes (a `shmq_options` set up by `shmq_options_init`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmq_create(name: *const c_char, o: *const shmq_options) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract.
        let (name, options) = unsafe { (name_arg(name)?, options_arg(o)?) };
        Queue::create(name, options)?;
        Ok(())
    })
}

/// Opens the queue `name` if it exists, creates it with the options `o` otherwise (a
/// durable one restored from its log, as `shmq_create` says). An existing queue must have
/// the same mode, capacity and `max_message`, and the same `log_dir` if one is given
/// (`SHMQ_ERR_INVALID` otherwise). A queue left unfinished by a creator that died is
/// replaced. Errors as `shmq_create`, but never `SHMQ_ERR_EXISTS`. Thread-safe; may wait
/// up to 2 seconds for a queue another process is creating at that moment.
///
/// # Safety
/// As `shmq_create`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmq_open_or_create(name: *const c_char, o: *const shmq_options) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract.
        let (name, options) = unsafe { (name_arg(name)?, options_arg(o)?) };
        Queue::open_or_create(name, options)?;
        Ok(())
    })
}

/// Removes the queue `name`: unlinks the name, marks the queue closed and wakes every
/// waiter. Handles still open keep working on the memory: producers then get
/// `SHMQ_ERR_CLOSED`; the consumer receives what is left, then gets `SHMQ_ERR_CLOSED`.
/// The memory is freed when the last handle is closed.
///
/// Returns `SHMQ_OK`; `SHMQ_ERR_NOT_FOUND`; `SHMQ_ERR_INVALID` for a NULL or bad name;
/// `SHMQ_ERR_PERMISSION`, `SHMQ_ERR_IO`. Thread-safe; does not block.
///
/// # Safety
/// `name` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmq_remove(name: *const c_char) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract.
        let name = unsafe { name_arg(name)? };
        Queue::remove(name)?;
        Ok(())
    })
}

/// Creates the subscription `name` on the queue `queue`, with the options `o` (NULL: the
/// defaults). Names follow the queue-name rule (`[A-Za-z0-9._-]`, not starting with `.`)
/// and have at most `SHMQ_SUBSCRIPTION_NAME_MAX` (48) bytes.
///
/// A subscription sees every message sent after this call returns (fan-out: every
/// subscription gets its own copy of the stream). Processes join it with
/// `shmq_consumer_subscribe` and share its messages: each message goes to one member. The
/// queue's default subscription, `"default"`, exists from its creation; it is the one
/// `shmq_consumer_open` reads. Producers wait for the slowest subscription that has no
/// lag limit.
///
/// Creating a subscription that exists with the same options does nothing (`SHMQ_OK`):
/// every process may create the subscription it is about to join.
///
/// With `o->ack` = `SHMQ_ACK_EXPLICIT` (durable queues only) the subscription's
/// dead-letter queue `<queue>.<name>.dlq` is created first (or opened, or restored from
/// its log): a durable MPSC queue whose log is the directory `<name>.dlq` inside the
/// queue's `log_dir`, with room for the queue's largest message plus a dead letter's
/// header and reason. Read it with `shmq_consumer_open` and `shmq_dead_letter_decode`;
/// remove it with `shmq_remove` once it is no longer needed (removing the queue or the
/// subscription leaves it).
///
/// Returns `SHMQ_OK`; `SHMQ_ERR_NOT_FOUND` if there is no queue `queue`;
/// `SHMQ_ERR_INVALID` for a NULL or bad queue or subscription name, bad options (out of
/// range, `ack_wait_ns`, `max_in_flight` or `max_deliveries` set without
/// `SHMQ_ACK_EXPLICIT`, `SHMQ_ACK_EXPLICIT` on a volatile queue, on `"default"` or with a
/// lag limit, a dead-letter queue name above 200 bytes), options that differ from those
/// of an existing subscription of that name; `SHMQ_ERR_BUSY` when the queue has
/// `SHMQ_SUBSCRIPTIONS_MAX` subscriptions; `SHMQ_ERR_CLOSED` if the queue was removed;
/// `SHMQ_ERR_CORRUPT`, `SHMQ_ERR_INCOMPATIBLE`, `SHMQ_ERR_PERMISSION`, `SHMQ_ERR_IO`;
/// with `SHMQ_ACK_EXPLICIT` also the errors of creating a durable queue
/// (`SHMQ_ERR_LOG`, `SHMQ_ERR_NO_SPACE`). Thread-safe; does not block (beyond the 2
/// seconds an open may wait for a queue being created; creating a dead-letter queue
/// writes and syncs its log files).
///
/// # Safety
/// `queue` and `name` are NULL or NUL-terminated strings; `o` is NULL or points to
/// `o->size` readable bytes (a `shmq_subscription_options` set up by
/// `shmq_subscription_options_init`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmq_subscription_create(
    queue: *const c_char,
    name: *const c_char,
    o: *const shmq_subscription_options,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract.
        let (queue, name, options) =
            unsafe { (name_arg(queue)?, subscription_name_arg(name)?, subscription_options_arg(o)?) };
        Subscription::create(queue, name, options)?;
        Ok(())
    })
}

/// Removes the subscription `name` of the queue `queue` (the default one too): producers
/// stop waiting for it, and its members' next receive (or the one they are blocked in)
/// returns `SHMQ_ERR_CLOSED`. Once `"default"` is removed, `shmq_consumer_open` of the
/// queue returns `SHMQ_ERR_NOT_FOUND`.
///
/// Returns `SHMQ_OK`; `SHMQ_ERR_NOT_FOUND` if there is no such queue or subscription;
/// `SHMQ_ERR_INVALID` for a NULL or bad name; `SHMQ_ERR_CORRUPT`,
/// `SHMQ_ERR_INCOMPATIBLE`, `SHMQ_ERR_PERMISSION`, `SHMQ_ERR_IO`. Thread-safe; does not
/// block.
///
/// # Safety
/// `queue` and `name` are NULL or NUL-terminated strings.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmq_subscription_remove(queue: *const c_char, name: *const c_char) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract.
        let (queue, name) = unsafe { (name_arg(queue)?, subscription_name_arg(name)?) };
        Subscription::remove(queue, name)?;
        Ok(())
    })
}

/// Opens a producer on the queue `name` and stores it in `*out` (NULL on failure). The
/// handle waits adaptively (`SHMQ_WAIT_ADAPTIVE`) until `shmq_producer_set_wait`.
///
/// Returns `SHMQ_OK`; `SHMQ_ERR_NOT_FOUND`; `SHMQ_ERR_BUSY` if the queue is SPSC and a
/// live process already produces, or 63 producers are attached; `SHMQ_ERR_INVALID` for a
/// NULL `out` or a NULL or bad name; `SHMQ_ERR_CORRUPT`, `SHMQ_ERR_INCOMPATIBLE`,
/// `SHMQ_ERR_PERMISSION`, `SHMQ_ERR_IO`.
///
/// Ownership: the caller owns the handle and frees it with `shmq_producer_close`.
/// Threads: a handle may move between threads but serves one call at a time: a call
/// made while another thread is inside a call on the same handle is refused with
/// `SHMQ_ERR_BUSY` (nothing happens), so give each thread its own handle; different
/// handles are independent. Processes: a handle does not survive `fork()`: the
/// child must neither use nor close its parent's handles, and opens its own.
/// Blocking: may wait up to 2 seconds for a queue another process is creating.
///
/// # Safety
/// `name` is NULL or a NUL-terminated string; `out` is NULL or valid for a write of a
/// pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmq_producer_open(name: *const c_char, out: *mut *mut shmq_producer) -> c_int {
    guard(|| {
        if out.is_null() {
            return Err(invalid(c"invalid argument: NULL out-pointer"));
        }
        // SAFETY: non-null `out` is writable by the caller's contract.
        unsafe { out.write(std::ptr::null_mut()) };
        // SAFETY: the caller's contract.
        let name = unsafe { name_arg(name)? };
        let inner = Producer::open(name)?;
        let interrupter = inner.interrupter();
        let h = new_handle(ProducerState { inner, grant: None }, interrupter).cast::<shmq_producer>();
        // SAFETY: as above.
        unsafe { out.write(h) };
        Ok(())
    })
}

/// Opens the consumer of the queue `name` and stores it in `*out` (NULL on failure). The
/// handle waits adaptively (`SHMQ_WAIT_ADAPTIVE`) until `shmq_consumer_set_wait`.
///
/// Returns `SHMQ_OK`; `SHMQ_ERR_NOT_FOUND`; `SHMQ_ERR_BUSY` while another live process
/// (a stopped one included) is the consumer; the slot of a dead one is taken over.
/// `SHMQ_ERR_INVALID`, `SHMQ_ERR_CORRUPT`, `SHMQ_ERR_INCOMPATIBLE`,
/// `SHMQ_ERR_PERMISSION`, `SHMQ_ERR_IO` as for `shmq_producer_open`.
///
/// Ownership, threads, processes and blocking: as for `shmq_producer_open`; free the
/// handle with `shmq_consumer_close`.
///
/// # Safety
/// As `shmq_producer_open`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmq_consumer_open(name: *const c_char, out: *mut *mut shmq_consumer) -> c_int {
    guard(|| {
        if out.is_null() {
            return Err(invalid(c"invalid argument: NULL out-pointer"));
        }
        // SAFETY: non-null `out` is writable by the caller's contract.
        unsafe { out.write(std::ptr::null_mut()) };
        // SAFETY: the caller's contract.
        let name = unsafe { name_arg(name)? };
        let inner = Consumer::open(name)?;
        let interrupter = inner.interrupter();
        // The default subscription acknowledges by receiving.
        let h = new_handle(ConsumerState::new(inner, false), interrupter).cast::<shmq_consumer>();
        // SAFETY: as above.
        unsafe { out.write(h) };
        Ok(())
    })
}

/// Joins the subscription `name` of the queue `queue` as one of its members and stores the
/// consumer handle in `*out` (NULL on failure). The handle waits adaptively
/// (`SHMQ_WAIT_ADAPTIVE`) until `shmq_consumer_set_wait`.
///
/// Every consumer call works on it (`shmq_recv`, `shmq_recv_info`, `shmq_peek`,
/// `shmq_release`, `shmq_consumer_interrupt`, ...). The members of a subscription share
/// its messages: each message goes to one member (members claim small batches of up to
/// 16 messages in turn), so messages reach one member in order but are spread over all of
/// them. A member killed (even by `kill -9`) in the middle of a batch has the rest of it
/// handed to another member (typically within 50 ms): the messages it had not received
/// and one it was peeking at (`shmq_peek` without `shmq_release`), each with
/// `shmq_msg_info.delivery_count` >= 2. A message `shmq_recv` or `shmq_recv_info` returned
/// was released before the call returned and is not delivered again; a peeked one may be
/// handled twice (and, in one rare case, a member killed in the instant it takes a batch
/// has the whole batch delivered again): delivery is at least once around a member's
/// death, exactly once otherwise. A stopped member (`SIGSTOP`) keeps its batch.
///
/// On a subscription with explicit acks (`SHMQ_ACK_EXPLICIT`) a member receives with
/// `shmq_recv_info` only (`shmq_recv`, `shmq_peek` and `shmq_release` are
/// `SHMQ_ERR_INVALID`: every message it takes must be acknowledged by its id), and
/// acknowledges each message with `shmq_ack`, `shmq_nack` or `shmq_reject`. A message it
/// holds unacknowledged past the subscription's `ack_wait_ns`, or when it dies or closes
/// the handle, is delivered again with a higher `delivery_count`.
///
/// Returns `SHMQ_OK`; `SHMQ_ERR_NOT_FOUND` if there is no such queue or subscription;
/// `SHMQ_ERR_BUSY` if the queue has its most members (63 participant slots over all its
/// subscriptions, shared with the producers); `SHMQ_ERR_INVALID`, `SHMQ_ERR_CORRUPT`, `SHMQ_ERR_INCOMPATIBLE`,
/// `SHMQ_ERR_PERMISSION`, `SHMQ_ERR_IO` as for `shmq_consumer_open`.
///
/// Ownership, threads, processes and blocking: as for `shmq_consumer_open`; free the
/// handle with `shmq_consumer_close`, which leaves the subscription (the messages of its
/// batch it had not received go to another member, their `delivery_count` unchanged).
///
/// # Safety
/// `queue` and `name` are NULL or NUL-terminated strings; `out` is NULL or valid for a
/// write of a pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmq_consumer_subscribe(
    queue: *const c_char,
    name: *const c_char,
    out: *mut *mut shmq_consumer,
) -> c_int {
    guard(|| {
        if out.is_null() {
            return Err(invalid(c"invalid argument: NULL out-pointer"));
        }
        // SAFETY: non-null `out` is writable by the caller's contract.
        unsafe { out.write(std::ptr::null_mut()) };
        // SAFETY: the caller's contract.
        let (queue, name) = unsafe { (name_arg(queue)?, subscription_name_arg(name)?) };
        let inner = Consumer::subscribe(queue, name)?;
        let explicit = explicit_acks(queue, name)?;
        let interrupter = inner.interrupter();
        let h = new_handle(ConsumerState::new(inner, explicit), interrupter).cast::<shmq_consumer>();
        // SAFETY: as above.
        unsafe { out.write(h) };
        Ok(())
    })
}

/// Whether the subscription `name` of `queue`, which the caller has just joined, has
/// explicit acks. The mode is fixed at the subscription's creation; a subscription removed
/// (and perhaps made again) since the join closes its members, so what is found now holds
/// for as long as the member can receive.
fn explicit_acks(queue: &str, name: &str) -> Res<bool> {
    match Subscription::list(queue)?.into_iter().find(|s| s.name == name) {
        Some(s) => Ok(s.ack == Ack::Explicit),
        // Removed right after the join: the member's next call says `SHMQ_ERR_CLOSED`.
        None => Ok(false),
    }
}

/// Sets how the producer waits when the queue is full: `SHMQ_WAIT_SPIN`,
/// `SHMQ_WAIT_BLOCK` or `SHMQ_WAIT_ADAPTIVE`. `SHMQ_ERR_INVALID` for a NULL handle or
/// another value. Does not block.
///
/// # Safety
/// `p` is NULL or an open producer handle (see `shmq_producer_open`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmq_producer_set_wait(p: *mut shmq_producer, wait: c_int) -> c_int {
    guard(|| {
        let wait = wait_policy(wait)?;
        // SAFETY: the caller's contract.
        unsafe {
            with(p.cast(), |p: &mut ProducerState| {
                p.inner.set_wait(wait);
                Ok(())
            })
        }
    })
}

/// Sets how the consumer waits when the queue is empty: `SHMQ_WAIT_SPIN`,
/// `SHMQ_WAIT_BLOCK` or `SHMQ_WAIT_ADAPTIVE`. `SHMQ_ERR_INVALID` for a NULL handle or
/// another value. Does not block.
///
/// # Safety
/// `c` is NULL or an open consumer handle (see `shmq_consumer_open`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmq_consumer_set_wait(c: *mut shmq_consumer, wait: c_int) -> c_int {
    guard(|| {
        let wait = wait_policy(wait)?;
        // SAFETY: the caller's contract.
        unsafe {
            with(c.cast(), |c: &mut ConsumerState| {
                c.inner.set_wait(wait);
                Ok(())
            })
        }
    })
}

/// Stores the queue's `max_message` in `*out`: the largest message a producer may send, and
/// so the receive buffer that always suffices. `SHMQ_ERR_INVALID` for a NULL argument.
/// Does not block.
///
/// # Safety
/// `p` is NULL or an open producer handle (see `shmq_producer_open`); `out` is NULL or
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmq_producer_max_message(p: *mut shmq_producer, out: *mut u32) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract.
        let max = unsafe { with(p.cast(), |p: &mut ProducerState| Ok(p.inner.config().max_message))? };
        if out.is_null() {
            return Err(invalid(c"invalid argument: NULL out-pointer"));
        }
        // SAFETY: non-null and writable by the caller's contract.
        unsafe { out.write(max) };
        Ok(())
    })
}

/// Stores the queue's `max_message` in `*out`. As `shmq_producer_max_message`.
///
/// # Safety
/// `c` is NULL or an open consumer handle (see `shmq_consumer_open`); `out` is NULL or
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmq_consumer_max_message(c: *mut shmq_consumer, out: *mut u32) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract.
        let max = unsafe { with(c.cast(), |c: &mut ConsumerState| Ok(c.inner.config().max_message))? };
        if out.is_null() {
            return Err(invalid(c"invalid argument: NULL out-pointer"));
        }
        // SAFETY: non-null and writable by the caller's contract.
        unsafe { out.write(max) };
        Ok(())
    })
}

/// Closes the producer and frees the handle; NULL is ignored. An outstanding reservation
/// is aborted first (nothing of it reaches the consumer). Messages already sent stay in
/// the queue. Does not block.
///
/// After the close the pointer `p` must not be used again, not even to close it twice:
/// its memory may be reused for another handle. libshmq keeps the last 64 closed handles
/// allocated and marked closed, so a use within that window is refused with
/// `SHMQ_ERR_INVALID` ("was closed"); beyond it the behaviour is undefined. If another
/// thread is inside a call on `p`, nothing is closed and `shmq_last_error()` says so.
///
/// # Safety
/// `p` is NULL or an open producer handle (see `shmq_producer_open`); it is invalid
/// afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmq_producer_close(p: *mut shmq_producer) {
    guard_void(|| {
        // SAFETY: the caller's contract.
        unsafe {
            close(p.cast(), |p: &mut ProducerState| {
                if let Some(g) = p.grant.take() {
                    let _ = p.inner.abort_raw(g);
                }
            })
        }
    })
}

/// Closes the consumer and frees the handle; NULL is ignored. A message peeked and not
/// released stays in the queue for the next consumer. Does not block. Using `c` after the
/// close, and closing it while another thread is inside a call on it: as for
/// `shmq_producer_close`.
///
/// # Safety
/// `c` is NULL or an open consumer handle (see `shmq_consumer_open`); it is invalid
/// afterwards, and so is any pointer `shmq_peek` returned through it.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmq_consumer_close(c: *mut shmq_consumer) {
    guard_void(|| {
        // SAFETY: the caller's contract.
        unsafe { close(c.cast(), |_: &mut ConsumerState| {}) }
    })
}

/// Sends the `len` bytes at `data` (a copy; `len` may be 0, and `data` may then be NULL).
///
/// `timeout_ns`: while the queue is full, `0` gives up at once (`SHMQ_ERR_FULL`), a
/// negative value waits forever, a positive one waits at most that long
/// (`SHMQ_ERR_TIMEOUT`). Waiting follows the handle's policy (`shmq_producer_set_wait`).
///
/// Returns `SHMQ_OK`; `SHMQ_ERR_FULL`, `SHMQ_ERR_TIMEOUT`; `SHMQ_ERR_TOO_LARGE` if
/// `len` exceeds the queue's `max_message`; `SHMQ_ERR_CLOSED` once the queue was
/// removed; `SHMQ_ERR_INVALID` for a NULL handle, NULL `data` with a non-zero `len`, or
/// a reservation outstanding (`shmq_reserve` without `shmq_commit`/`shmq_abort`);
/// `SHMQ_ERR_CORRUPT`. On a durable queue with `SHMQ_FSYNC_ALWAYS` it returns once the
/// message is synced to disk, and may also return `SHMQ_ERR_LOG` and `SHMQ_ERR_NO_SPACE`:
/// see `shmq_send_id`, which also says the message's id.
///
/// # Safety
/// `p` is NULL or an open producer handle (see `shmq_producer_open`); `data` is NULL or
/// points to `len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmq_send(p: *mut shmq_producer, data: *const c_void, len: usize, timeout_ns: i64) -> c_int {
    // SAFETY: the caller's contract.
    guard(|| unsafe {
        with(p.cast(), |p: &mut ProducerState| send(p, data, len, timeout_ns, AwaitSync::Yes).map(drop))
    })
}

/// `shmq_send`, and the message's id in `*id` (if `id` is not NULL; left alone on
/// failure).
///
/// The id is the message's position in the queue's stream of bytes (the `id` of
/// `shmq_msg_info` on the receiving side): ids increase in the order messages were sent,
/// are sparse, and are never handed out twice, not even by a durable queue across a crash
/// or a restart.
///
/// On a durable queue with `SHMQ_FSYNC_ALWAYS` the call returns once the message is
/// synced to disk (it leads the sync itself, for every message waiting, when no other
/// process does). A positive `timeout_ns` then bounds that wait too: `SHMQ_ERR_TIMEOUT`
/// may mean the message was sent but is not yet synced (`shmq_send_nowait` and
/// `shmq_wait_durable` tell the two apart). With `timeout_ns` 0 only the room is not
/// waited for; the sync is. Errors as `shmq_send`, and `SHMQ_ERR_LOG` (a write or sync of
/// the log failed: the queue is read-only), `SHMQ_ERR_NO_SPACE`.
///
/// # Safety
/// As `shmq_send`; `id` is NULL or valid for a write of a `uint64_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmq_send_id(
    p: *mut shmq_producer,
    data: *const c_void,
    len: usize,
    timeout_ns: i64,
    id: *mut u64,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract.
        let sent = unsafe { with(p.cast(), |p: &mut ProducerState| send(p, data, len, timeout_ns, AwaitSync::Yes))? };
        // SAFETY: the caller's contract.
        unsafe { put(id, sent) };
        Ok(())
    })
}

/// Sends like `shmq_send_id` but never waits for the sync: the message is in the queue
/// when it returns, and its id in `*id` (if `id` is not NULL). On a durable queue with
/// `SHMQ_FSYNC_ALWAYS` consumers see it once it is synced: `shmq_wait_durable` waits for
/// that (and leads the sync). One producer can so keep many messages in flight and wait
/// once for the last. Elsewhere (other policies, volatile queues) the same as
/// `shmq_send_id`.
///
/// `timeout_ns` bounds only the wait for room: `SHMQ_ERR_FULL` (0) or `SHMQ_ERR_TIMEOUT`
/// mean nothing was sent. Errors as `shmq_send_id`.
///
/// ```c
/// uint64_t id;
/// for (i = 0; i < n; i++) shmq_send_nowait(p, msg[i], len[i], -1, &id);
/// rc = shmq_wait_durable(p, id, -1);  // all n are on disk now
/// ```
///
/// # Safety
/// As `shmq_send_id`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmq_send_nowait(
    p: *mut shmq_producer,
    data: *const c_void,
    len: usize,
    timeout_ns: i64,
    id: *mut u64,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract.
        let sent = unsafe { with(p.cast(), |p: &mut ProducerState| send(p, data, len, timeout_ns, AwaitSync::No))? };
        // SAFETY: the caller's contract.
        unsafe { put(id, sent) };
        Ok(())
    })
}

/// Waits until the message `id` (from `shmq_send_nowait`, `shmq_send_id` or
/// `shmq_commit_id`) and every message sent before it are durable: synced to disk, or,
/// under `SHMQ_FSYNC_NEVER`, written to the log files (they then survive any process crash,
/// not a power cut). The caller leads the sync itself when no other process is doing it (a
/// group commit: one sync for every message waiting, from any process). On a volatile
/// queue it returns `SHMQ_OK` at once. While another process syncs, it waits by the
/// handle's wait policy: `SHMQ_WAIT_BLOCK` sleeps; `SHMQ_WAIT_ADAPTIVE` polls, yielding the
/// CPU, for up to twice as long as the handle's last wait for a sync took (if that was at
/// most 1 ms), then sleeps; `SHMQ_WAIT_SPIN` polls.
///
/// `timeout_ns`: `0` checks (and may journal) once, a negative value waits forever, a
/// positive one at most that long; `SHMQ_ERR_TIMEOUT` when the message is not durable by
/// then (with 0 too: there is no "empty" here). Returns `SHMQ_OK`; `SHMQ_ERR_TIMEOUT`;
/// `SHMQ_ERR_LOG` if a write or sync of the log failed (the queue is read-only from then
/// on); `SHMQ_ERR_INVALID` for a NULL handle; `SHMQ_ERR_NO_SPACE`, `SHMQ_ERR_CORRUPT`.
///
/// # Safety
/// `p` is NULL or an open producer handle (see `shmq_producer_open`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmq_wait_durable(p: *mut shmq_producer, id: u64, timeout_ns: i64) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract.
        unsafe {
            with(p.cast(), |p: &mut ProducerState| {
                let t = match timeout(timeout_ns) {
                    Timeout::Try => Some(Duration::ZERO),
                    Timeout::Forever => None,
                    Timeout::For(d) => Some(d),
                };
                p.inner.wait_durable(id, t)?;
                Ok(())
            })
        }
    })
}

/// Whether a send waits for its message's sync (`SHMQ_FSYNC_ALWAYS`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum AwaitSync {
    Yes,
    No,
}

/// Sends; returns the message's id.
///
/// # Safety
/// `data` is NULL or points to `len` readable bytes.
#[inline(always)]
unsafe fn send(p: &mut ProducerState, data: *const c_void, len: usize, timeout_ns: i64, sync: AwaitSync) -> Res<u64> {
    if p.grant.is_some() {
        return Err(reservation_outstanding());
    }
    if data.is_null() && len > 0 {
        return Err(invalid(c"invalid argument: NULL data with a non-zero length"));
    }
    // A slice above `isize::MAX` bytes is undefined behaviour even unread: refused before
    // the slice is made. Any other length is checked against `max_message` by the send.
    if len > isize::MAX as usize {
        return Err(too_large(p, len));
    }
    let msg: &[u8] = if len == 0 {
        &[]
    } else {
        // SAFETY: `len` readable bytes at the non-null `data`, by the caller's contract;
        // `len` is at most `isize::MAX` (above).
        unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) }
    };
    // The common case first: `shmq_send` waiting as long as it takes.
    if timeout_ns < 0 && sync == AwaitSync::Yes {
        return Ok(p.inner.send(msg)?);
    }
    let id = match (timeout(timeout_ns), sync) {
        (Timeout::Try, AwaitSync::Yes) => p.inner.try_send(msg)?,
        (Timeout::Forever, AwaitSync::Yes) => p.inner.send(msg)?,
        (Timeout::For(d), AwaitSync::Yes) => p.inner.send_timeout(msg, d)?,
        (Timeout::Try, AwaitSync::No) => p.inner.try_send_nowait(msg)?,
        (Timeout::Forever, AwaitSync::No) => p.inner.send_nowait(msg)?,
        (Timeout::For(d), AwaitSync::No) => p.inner.send_nowait_timeout(msg, d)?,
    };
    Ok(id)
}

/// `SHMQ_ERR_TOO_LARGE` for a message of `len` bytes.
#[cold]
fn too_large(p: &ProducerState, len: usize) -> Code {
    Error::TooLarge { len, max: p.inner.config().max_message as usize }.into()
}

/// `shmq_send` or `shmq_reserve` while a reservation is outstanding.
fn reservation_outstanding() -> Code {
    invalid(c"invalid call order: a reservation is outstanding (shmq_reserve): shmq_commit or shmq_abort it first")
}

/// Reserves `len` bytes in the ring for zero-copy writing and stores their address in
/// `*buf` (NULL on failure). Write the message there, then publish it with `shmq_commit`
/// (or `shmq_commit_len` for fewer bytes), or drop it with `shmq_abort`. Until then the
/// producer accepts no other `shmq_send` or `shmq_reserve` (`SHMQ_ERR_INVALID`), and on
/// an MPSC queue the consumer cannot read past it: finish it soon.
///
/// The `len` bytes at `*buf` are shared memory, valid until the commit, abort or close;
/// they start with whatever was there before. `*buf` is 8-byte aligned, no more (as for
/// `shmq_peek`). `timeout_ns` and errors as `shmq_send`.
///
/// # Safety
/// `p` is NULL or an open producer handle (see `shmq_producer_open`); `buf` is NULL or
/// valid for a write of a pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmq_reserve(
    p: *mut shmq_producer,
    len: usize,
    buf: *mut *mut c_void,
    timeout_ns: i64,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract.
        unsafe { put(buf, std::ptr::null_mut()) };
        // SAFETY: the caller's contract.
        unsafe {
            with(p.cast(), |p: &mut ProducerState| {
                if p.grant.is_some() {
                    return Err(reservation_outstanding());
                }
                if buf.is_null() {
                    return Err(invalid(c"invalid argument: NULL buf"));
                }
                let grant = match timeout(timeout_ns) {
                    Timeout::Try => p.inner.try_reserve(len)?,
                    Timeout::Forever => p.inner.reserve(len)?,
                    Timeout::For(d) => p.inner.reserve_timeout(len, d)?,
                }
                .into_raw();
                // SAFETY: non-null and writable by the caller's contract.
                buf.write(grant.as_mut_ptr().cast());
                p.grant = Some(grant);
                Ok(())
            })
        }
    })
}

/// Publishes the reservation made by `shmq_reserve`, all of its bytes, and wakes the
/// consumer if it sleeps. `SHMQ_ERR_INVALID` for a NULL handle or no reservation
/// outstanding. Does not block, except on a durable queue with `SHMQ_FSYNC_ALWAYS`, where
/// it returns once the message is synced (`SHMQ_ERR_LOG` if the sync failed: the message
/// was published, the queue is read-only).
///
/// # Safety
/// `p` is NULL or an open producer handle (see `shmq_producer_open`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmq_commit(p: *mut shmq_producer) -> c_int {
    // SAFETY: the caller's contract.
    unsafe { shmq_commit_id(p, std::ptr::null_mut()) }
}

/// `shmq_commit`, and the message's id in `*id` (if `id` is not NULL; left alone on
/// failure). Ids as `shmq_send_id` describes.
///
/// # Safety
/// `p` is NULL or an open producer handle (see `shmq_producer_open`); `id` is NULL or
/// valid for a write of a `uint64_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmq_commit_id(p: *mut shmq_producer, id: *mut u64) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract.
        let committed = unsafe {
            with(p.cast(), |p: &mut ProducerState| {
                let len = p.grant.as_ref().ok_or_else(no_reservation)?.len();
                commit(p, len)
            })?
        };
        // SAFETY: the caller's contract.
        unsafe { put(id, committed) };
        Ok(())
    })
}

/// Publishes the first `len` bytes of the reservation made by `shmq_reserve`
/// (`len` <= the reserved length; the rest is skipped). `SHMQ_ERR_INVALID` for a NULL
/// handle, no reservation outstanding, or a `len` above the reserved length (the
/// reservation then stays outstanding). Blocks as `shmq_commit` does.
///
/// # Safety
/// `p` is NULL or an open producer handle (see `shmq_producer_open`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmq_commit_len(p: *mut shmq_producer, len: usize) -> c_int {
    // SAFETY: the caller's contract.
    unsafe { shmq_commit_len_id(p, len, std::ptr::null_mut()) }
}

/// `shmq_commit_len`, and the message's id in `*id` (if `id` is not NULL; left alone on
/// failure).
///
/// # Safety
/// As `shmq_commit_id`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmq_commit_len_id(p: *mut shmq_producer, len: usize, id: *mut u64) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract.
        let committed = unsafe { with(p.cast(), |p: &mut ProducerState| commit(p, len))? };
        // SAFETY: the caller's contract.
        unsafe { put(id, committed) };
        Ok(())
    })
}

/// Commits the first `len` bytes of the outstanding reservation; returns the message's id.
fn commit(p: &mut ProducerState, len: usize) -> Res<u64> {
    match &p.grant {
        Some(g) if len <= g.len() => {}
        Some(g) => {
            return Err(invalid_owned(format!(
                "invalid argument: commit of {len} bytes exceeds the reservation of {} bytes",
                g.len()
            )));
        }
        None => return Err(no_reservation()),
    }
    let g = p.grant.take().ok_or_else(no_reservation)?;
    Ok(p.inner.commit_raw(g, len)?)
}

fn no_reservation() -> Code {
    invalid(c"invalid call order: no reservation outstanding (shmq_reserve first)")
}

/// Drops the reservation made by `shmq_reserve`: nothing of it reaches the consumer.
/// `SHMQ_ERR_INVALID` for a NULL handle or no reservation outstanding. Does not block.
///
/// # Safety
/// `p` is NULL or an open producer handle (see `shmq_producer_open`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmq_abort(p: *mut shmq_producer) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract.
        unsafe {
            with(p.cast(), |p: &mut ProducerState| {
                let g = p.grant.take().ok_or_else(no_reservation)?;
                p.inner.abort_raw(g)?;
                Ok(())
            })
        }
    })
}

/// Receives the next message into `buf` (`cap` bytes) and stores its length in `*len`.
///
/// If the message is longer than `cap`, returns `SHMQ_ERR_BUFFER_TOO_SMALL`, stores the
/// size needed in `*len` and leaves the message in the queue: call again with a larger
/// buffer (the queue's `max_message` always suffices: `shmq_consumer_max_message`).
/// A message peeked with `shmq_peek` and not yet released is the one received; the
/// pointer `shmq_peek` gave is then invalid.
///
/// `timeout_ns`: while the queue is empty, `0` gives up at once (`SHMQ_ERR_EMPTY`), a
/// negative value waits forever, a positive one at most that long (`SHMQ_ERR_TIMEOUT`).
/// Waiting follows the handle's policy (`shmq_consumer_set_wait`).
///
/// Returns `SHMQ_OK`; `SHMQ_ERR_EMPTY`, `SHMQ_ERR_TIMEOUT`, `SHMQ_ERR_BUFFER_TOO_SMALL`;
/// `SHMQ_ERR_CLOSED` once the queue was removed and everything in it received (a waiting
/// call returns it at once when the queue is removed); `SHMQ_ERR_INVALID` for a NULL
/// handle or `len`, or a NULL `buf` with a non-zero `cap`; `SHMQ_ERR_CORRUPT`.
/// `*len` is 0 after any other error. A member of a subscription with explicit acks gets
/// `SHMQ_ERR_INVALID` (nothing received): it receives with `shmq_recv_info`, which gives
/// the id to acknowledge.
///
/// The copy is overlap-safe (memmove): `buf` may even be queue memory, such as the pointer
/// an earlier `shmq_peek` gave.
///
/// # Safety
/// `c` is NULL or an open consumer handle (see `shmq_consumer_open`); `buf` is NULL or
/// points to `cap` writable bytes; `len` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmq_recv(
    c: *mut shmq_consumer,
    buf: *mut c_void,
    cap: usize,
    len: *mut usize,
    timeout_ns: i64,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract.
        unsafe { put(len, 0) };
        // SAFETY: the caller's contract.
        unsafe {
            with(c.cast(), |c: &mut ConsumerState| {
                if len.is_null() {
                    return Err(invalid(c"invalid argument: NULL len"));
                }
                if buf.is_null() && cap > 0 {
                    return Err(invalid(c"invalid argument: NULL buf with a non-zero cap"));
                }
                if c.explicit {
                    return Err(invalid(
                        c"invalid call: shmq_recv on a member of a subscription with explicit acks: receive with \
shmq_recv_info, which gives the id to pass to shmq_ack",
                    ));
                }
                let msg = peek(c, timeout_ns)?;
                let (src, n) = (msg.as_ptr(), msg.len());
                // SAFETY: `len` is non-null and writable by the caller's contract.
                len.write(n);
                if n > cap {
                    last_error::set(format!("buffer of {cap} bytes too small for the message of {n} bytes"));
                    return Err(Code(SHMQ_ERR_BUFFER_TOO_SMALL));
                }
                if n > 0 {
                    // SAFETY: `buf` holds `cap >= n` writable bytes (the caller's contract;
                    // non-null since `cap > 0`); `src` is `n` readable bytes of the mapping.
                    // `copy` (memmove), not `copy_nonoverlapping`: `buf` may be queue memory,
                    // e.g. the very pointer an earlier `shmq_peek` returned.
                    std::ptr::copy(src, buf.cast::<u8>(), n);
                }
                release(c)
            })
        }
    })
}

/// Receives the next message as `shmq_recv` does and, if `info` is not NULL, stores what is
/// known about it in `*info`: its id (the same in every subscription) and how many times
/// it was delivered.
///
/// Everything else is as for `shmq_recv`: `SHMQ_ERR_BUFFER_TOO_SMALL` stores the size
/// needed in `*len` and leaves the message in the queue; a message peeked with
/// `shmq_peek` is the one received. On a subscription with a lag limit it may return
/// `SHMQ_ERR_LAPPED` (nothing received; `info->missed_bytes` says how many bytes of the
/// stream the subscription missed; the next call goes on with the newest messages).
/// After any other error `*info` is all zero, as is `*len` (but for
/// `SHMQ_ERR_BUFFER_TOO_SMALL`).
///
/// A member of a subscription with explicit acks receives with this call: each message it
/// returns is in flight to this member until `shmq_ack`, `shmq_nack` or `shmq_reject` with
/// `info->id` (pass a non-NULL `info`), and `info->delivery_count` counts its deliveries
/// (2 or more: nacked, held past `ack_wait_ns`, or held by a member that died). Messages
/// to deliver again come before new ones. There `SHMQ_ERR_BUFFER_TOO_SMALL` keeps the
/// message in the handle rather than in the queue: it is in flight to this member already,
/// its `ack_wait_ns` running, and the next `shmq_recv_info` on the handle returns it
/// (closing the handle gives it back to be delivered again). While the members hold
/// `max_in_flight` messages unacknowledged, a receive waits (by its timeout) for an ack
/// or an expiry.
///
/// # Safety
/// As `shmq_recv`; `info` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmq_recv_info(
    c: *mut shmq_consumer,
    buf: *mut c_void,
    cap: usize,
    len: *mut usize,
    info: *mut shmq_msg_info,
    timeout_ns: i64,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract.
        unsafe {
            put(len, 0);
            put(info, shmq_msg_info::default());
        }
        // SAFETY: the caller's contract.
        unsafe {
            with(c.cast(), |c: &mut ConsumerState| {
                if len.is_null() {
                    return Err(invalid(c"invalid argument: NULL len"));
                }
                if buf.is_null() && cap > 0 {
                    return Err(invalid(c"invalid argument: NULL buf with a non-zero cap"));
                }
                if c.explicit {
                    return recv_explicit(c, buf, cap, len, info, timeout_ns);
                }
                let lapped = |e: &Error| {
                    if let Error::Lapped { missed_bytes } = *e {
                        // SAFETY: `info` is NULL or writable by the caller's contract.
                        put(info, shmq_msg_info { missed_bytes, ..shmq_msg_info::default() });
                    }
                };
                // A buffer smaller than `max_message` may be too small: look at the message
                // first, and leave it in the queue if it does not fit. The receive below then
                // takes this same message at once (the head stays until it is taken).
                if cap < c.inner.config().max_message as usize {
                    let n = peek_noting(c, timeout_ns, lapped)?.len();
                    if n > cap {
                        // SAFETY: `len` is non-null and writable by the caller's contract.
                        len.write(n);
                        last_error::set(format!("buffer of {cap} bytes too small for the message of {n} bytes"));
                        return Err(Code(SHMQ_ERR_BUFFER_TOO_SMALL));
                    }
                }
                let received = match timeout(timeout_ns) {
                    Timeout::Try => c.inner.try_recv().map(|m| m.ok_or(())),
                    Timeout::Forever => c.inner.recv().map(Ok),
                    Timeout::For(d) => c.inner.recv_timeout(d).map(Ok),
                };
                c.peeked = false;
                let msg = match received {
                    Ok(Ok(msg)) => msg,
                    Ok(Err(())) => return Err(fail(SHMQ_ERR_EMPTY, c"queue is empty")),
                    Err(e) => {
                        lapped(&e);
                        return Err(e.into());
                    }
                };
                let n = msg.len();
                if n > cap {
                    // The message grew between the look and the receive: only a process
                    // writing into the segment can do that (it is released as received).
                    return Err(fail(
                        SHMQ_ERR_CORRUPT,
                        c"corrupt queue: the message just looked at changed (another process wrote the queue)",
                    ));
                }
                if n > 0 {
                    // SAFETY: `buf` holds `cap >= n` writable bytes (the caller's contract;
                    // non-null since `cap > 0`); the message is `n` readable bytes of the
                    // mapping. `copy` (memmove): `buf` may be queue memory, as in `shmq_recv`.
                    std::ptr::copy(msg.as_ptr(), buf.cast::<u8>(), n);
                }
                // SAFETY: `len` is non-null and writable by the caller's contract.
                len.write(n);
                // SAFETY: `info` is NULL or writable by the caller's contract.
                put(info, shmq_msg_info { id: msg.id(), delivery_count: msg.delivery_count(), ..Default::default() });
                // Dropping the message takes it: its space goes back to the producers.
                drop(msg);
                Ok(())
            })
        }
    })
}

/// `shmq_recv_info` for a member with explicit acks (`buf`, `len` checked by the caller):
/// no peeking, so a message too large for `buf` waits in `c.pending`.
///
/// # Safety
/// `buf` points to `cap` writable bytes (or `cap` is 0); `len` is writable; `info` is NULL
/// or writable.
unsafe fn recv_explicit(
    c: &mut ConsumerState,
    buf: *mut c_void,
    cap: usize,
    len: *mut usize,
    info: *mut shmq_msg_info,
    timeout_ns: i64,
) -> Res {
    let too_small = |n: usize| {
        // SAFETY: `len` is writable by the function's contract.
        unsafe { len.write(n) };
        last_error::set(format!(
            "buffer of {cap} bytes too small for the message of {n} bytes (it stays with this handle for the next \
             shmq_recv_info)"
        ));
        Err(Code(SHMQ_ERR_BUFFER_TOO_SMALL))
    };
    let deliver = |src: &[u8], id: u64, delivery_count: u32| {
        if !src.is_empty() {
            // SAFETY: `buf` holds `cap >= src.len()` writable bytes (checked by the callers;
            // non-null since `cap > 0`). `copy` (memmove): `buf` may be queue memory.
            unsafe { std::ptr::copy(src.as_ptr(), buf.cast::<u8>(), src.len()) };
        }
        // SAFETY: `len` is writable, `info` NULL or writable, by the function's contract.
        unsafe {
            len.write(src.len());
            put(info, shmq_msg_info { id, delivery_count, ..Default::default() });
        }
    };
    if let Some(p) = c.pending.take() {
        let n = p.bytes.len();
        if n > cap {
            c.pending = Some(p);
            return too_small(n);
        }
        deliver(&p.bytes, p.id, p.delivery_count);
        return Ok(());
    }
    let received = match timeout(timeout_ns) {
        Timeout::Try => c.inner.try_recv().map(|m| m.ok_or(())),
        Timeout::Forever => c.inner.recv().map(Ok),
        Timeout::For(d) => c.inner.recv_timeout(d).map(Ok),
    };
    let msg = match received {
        Ok(Ok(msg)) => msg,
        Ok(Err(())) => return Err(fail(SHMQ_ERR_EMPTY, c"queue is empty")),
        Err(e) => return Err(e.into()),
    };
    let (id, delivery_count, n) = (msg.id(), msg.delivery_count(), msg.len());
    if n > cap {
        // Copied once out of the queue (shared memory is read once); the message is in
        // flight to this member now.
        let bytes = msg.to_vec();
        drop(msg);
        c.pending = Some(Pending { id, delivery_count, bytes });
        return too_small(n);
    }
    deliver(&msg[..], id, delivery_count);
    // Dropping the message releases its record; it stays in flight until acknowledged.
    drop(msg);
    Ok(())
}

/// Shows the next message without taking it: stores its address in `*data` and its length
/// in `*len`. The `*len` bytes at `*data` are valid until `shmq_release` (which takes the
/// message), `shmq_recv` or `shmq_consumer_close`; do not write them. Peeking again
/// before releasing shows the same message. On failure `*data` is NULL and `*len` 0.
///
/// `*data` is 8-byte aligned (records start at multiples of 8 in the page-aligned data
/// region, and the payload follows an 8-byte header); there is no alignment guarantee
/// beyond 8 bytes: copy the message out for types that need more. The bytes are shared
/// memory: any process allowed to write the queue can change them while you read them,
/// so read a field once and check it before you trust it.
///
/// `timeout_ns` and errors as `shmq_recv` (without `SHMQ_ERR_BUFFER_TOO_SMALL`);
/// `SHMQ_ERR_INVALID` also for a NULL `data` or `len`, and on a member of a subscription
/// with explicit acks (which receives with `shmq_recv_info`).
///
/// # Safety
/// `c` is NULL or an open consumer handle (see `shmq_consumer_open`); `data` and `len`
/// are NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmq_peek(
    c: *mut shmq_consumer,
    data: *mut *const c_void,
    len: *mut usize,
    timeout_ns: i64,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract.
        unsafe {
            put(data, std::ptr::null());
            put(len, 0);
        }
        // SAFETY: the caller's contract.
        unsafe {
            with(c.cast(), |c: &mut ConsumerState| {
                if data.is_null() || len.is_null() {
                    return Err(invalid(c"invalid argument: NULL data or len"));
                }
                if c.explicit {
                    return Err(invalid(
                        c"invalid call: shmq_peek on a member of a subscription with explicit acks: every message it \
takes must be acknowledged by id; receive with shmq_recv_info",
                    ));
                }
                let msg = peek(c, timeout_ns)?;
                let (p, n) = (msg.as_ptr(), msg.len());
                c.peeked = true;
                // SAFETY: non-null and writable by the caller's contract.
                data.write(p.cast());
                len.write(n);
                Ok(())
            })
        }
    })
}

/// The head message, waiting by `timeout_ns`.
#[inline(always)]
fn peek(c: &mut ConsumerState, timeout_ns: i64) -> Res<&[u8]> {
    peek_noting(c, timeout_ns, |_| {})
}

/// [`peek`], showing `note` the Rust error (if any) before it becomes a code.
#[inline(always)]
fn peek_noting(c: &mut ConsumerState, timeout_ns: i64, note: impl FnOnce(&Error)) -> Res<&[u8]> {
    let peeked = match timeout(timeout_ns) {
        Timeout::Try => match c.inner.try_peek() {
            Ok(Some(m)) => Ok(m),
            Ok(None) => return Err(fail(SHMQ_ERR_EMPTY, c"queue is empty")),
            Err(e) => Err(e),
        },
        Timeout::Forever => c.inner.peek(None),
        Timeout::For(d) => c.inner.peek(Some(d)),
    };
    peeked.map_err(|e| {
        note(&e);
        e.into()
    })
}

/// Takes the message shown by `shmq_peek`: its space goes back to the producers and the
/// pointer `shmq_peek` gave becomes invalid. `SHMQ_ERR_INVALID` for a NULL handle or no
/// peeked message. Does not block.
///
/// # Safety
/// `c` is NULL or an open consumer handle (see `shmq_consumer_open`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmq_release(c: *mut shmq_consumer) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract.
        unsafe {
            with(c.cast(), |c: &mut ConsumerState| {
                if !c.peeked {
                    return Err(invalid(c"invalid call order: no message peeked (shmq_peek first)"));
                }
                release(c)
            })
        }
    })
}

/// Acknowledges the message `id` (`info->id` from `shmq_recv_info`) on a member of a
/// subscription with explicit acks: it is done and never delivered again, and its place in
/// flight goes to the next message.
///
/// Returns `SHMQ_OK`; `SHMQ_ERR_ACK_EXPIRED` if the message was released meanwhile (held
/// past the subscription's `ack_wait_ns`, or this member was taken for dead): it is
/// delivered again, or already was, and no longer this member's; `SHMQ_ERR_INVALID` for a
/// NULL handle, a consumer that is no member of a subscription with explicit acks
/// (`shmq_consumer_open`'s, or one of an `SHMQ_ACK_AUTO` subscription), or an `id` this
/// member does not hold (never handed to it, or already acknowledged, nacked, rejected, or
/// answered with `SHMQ_ERR_ACK_EXPIRED`); `SHMQ_ERR_CORRUPT`. Does not block.
///
/// Threads and processes: as every call on a consumer handle (see
/// `shmq_consumer_subscribe`): one call at a time; the member that received the message
/// acknowledges it, through the same handle.
///
/// # Safety
/// `c` is NULL or an open consumer handle (see `shmq_consumer_subscribe`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmq_ack(c: *mut shmq_consumer, id: u64) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract.
        unsafe {
            with(c.cast(), |c: &mut ConsumerState| {
                forget_pending(c, id);
                c.inner.ack(id)?;
                Ok(())
            })
        }
    })
}

/// Gives the message `id` back on a member of a subscription with explicit acks, to be
/// delivered again at once (to any member, before new messages) with a `delivery_count`
/// one higher; `reason` (a NUL-terminated string; NULL: none) travels with it, its first
/// 72 bytes, and a dead letter keeps the last reason given. A message nacked at its
/// `max_deliveries`-th delivery is not delivered again: the next receive of any member
/// moves it to the dead-letter queue.
///
/// Returns as `shmq_ack` (`SHMQ_ERR_ACK_EXPIRED`, `SHMQ_ERR_INVALID`,
/// `SHMQ_ERR_CORRUPT`). Bytes of `reason` that are not UTF-8 are replaced with U+FFFD.
/// Does not block.
///
/// # Safety
/// `c` is NULL or an open consumer handle (see `shmq_consumer_subscribe`); `reason` is
/// NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmq_nack(c: *mut shmq_consumer, id: u64, reason: *const c_char) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract.
        let reason = unsafe { reason_arg(reason) };
        // SAFETY: the caller's contract.
        unsafe {
            with(c.cast(), |c: &mut ConsumerState| {
                forget_pending(c, id);
                c.inner.nack(id, &reason)?;
                Ok(())
            })
        }
    })
}

/// Moves the message `id` to the subscription's dead-letter queue now, on a member of a
/// subscription with explicit acks: it is sent to `<queue>.<subscription>.dlq` as a dead
/// letter (`shmq_dead_letter_decode`) with its id, delivery count, `reason` (a
/// NUL-terminated string, at most 1024 bytes kept; NULL: none) and payload, and never
/// delivered again.
///
/// Returns as `shmq_ack`, and the errors of sending to the dead-letter queue
/// (`SHMQ_ERR_LOG`, `SHMQ_ERR_NO_SPACE`, `SHMQ_ERR_CLOSED` if it was removed, ...): the
/// message then stays in flight, released to be delivered (or moved) again. Bytes of
/// `reason` that are not UTF-8 are replaced with U+FFFD. Blocks while it writes the dead
/// letter: the dead-letter queue's `fsync` policy is its queue's, so under
/// `SHMQ_FSYNC_ALWAYS` until the dead letter is synced, and while that queue has no room.
///
/// # Safety
/// As `shmq_nack`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmq_reject(c: *mut shmq_consumer, id: u64, reason: *const c_char) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract.
        let reason = unsafe { reason_arg(reason) };
        // SAFETY: the caller's contract.
        unsafe {
            with(c.cast(), |c: &mut ConsumerState| {
                forget_pending(c, id);
                c.inner.reject(id, &reason)?;
                Ok(())
            })
        }
    })
}

/// Stores in `*out` how many messages this member holds unacknowledged (a message answered
/// with `SHMQ_ERR_ACK_EXPIRED` no longer counts; one whose `ack_wait_ns` ran out still
/// does until then). 0 on a consumer without explicit acks. `SHMQ_ERR_INVALID` for a NULL
/// argument. Does not block.
///
/// # Safety
/// `c` is NULL or an open consumer handle (see `shmq_consumer_open`); `out` is NULL or
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmq_consumer_in_flight(c: *mut shmq_consumer, out: *mut u32) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract.
        let n = unsafe { with(c.cast(), |c: &mut ConsumerState| Ok(c.inner.in_flight()))? };
        if out.is_null() {
            return Err(invalid(c"invalid argument: NULL out-pointer"));
        }
        // SAFETY: non-null and writable by the caller's contract. At most the in-flight
        // table's size, far below `u32::MAX`.
        unsafe { out.write(u32::try_from(n).unwrap_or(u32::MAX)) };
        Ok(())
    })
}

/// An acknowledgement of message `id` settles the message waiting in the handle too, if it
/// is that one (received for a buffer too small, then acknowledged by its id).
fn forget_pending(c: &mut ConsumerState, id: u64) {
    if c.pending.as_ref().is_some_and(|p| p.id == id) {
        c.pending = None;
    }
}

/// The reason behind a C string: NULL is none; bytes that are not UTF-8 become U+FFFD (a
/// reason is information: a nack must not fail over its wording).
///
/// # Safety
/// `reason` is NULL or a NUL-terminated string.
unsafe fn reason_arg(reason: *const c_char) -> String {
    if reason.is_null() {
        return String::new();
    }
    // SAFETY: non-null, and NUL-terminated by the caller's contract.
    unsafe { CStr::from_ptr(reason) }.to_string_lossy().into_owned()
}

/// A dead letter, as `shmq_dead_letter_decode` reads it from a message of a dead-letter
/// queue (`<queue>.<subscription>.dlq`). `reason` and `payload` point into the caller's
/// bytes: valid as long as those are.
///
/// The struct has a fixed size: information added later comes through new functions.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct shmq_dead_letter_info {
    /// The message's id in the original queue (`shmq_msg_info.id` of its deliveries).
    pub id: u64,
    /// When it was moved to the dead-letter queue, nanoseconds since the Unix epoch.
    pub unix_ns: u64,
    /// How often it was delivered.
    pub deliveries: u32,
    /// 0.
    pub reserved: u32,
    /// The last reason given (`shmq_nack`, `shmq_reject`), or why shmq moved it: UTF-8,
    /// `reason_len` bytes, NOT NUL-terminated.
    pub reason: *const c_char,
    /// Bytes at `reason`.
    pub reason_len: usize,
    /// The original message: `payload_len` bytes.
    pub payload: *const c_void,
    /// Bytes at `payload`.
    pub payload_len: usize,
}

const NO_DEAD_LETTER: shmq_dead_letter_info = shmq_dead_letter_info {
    id: 0,
    unix_ns: 0,
    deliveries: 0,
    reserved: 0,
    reason: std::ptr::null(),
    reason_len: 0,
    payload: std::ptr::null(),
    payload_len: 0,
};

/// Reads the `len` bytes at `data`, a message of a dead-letter queue (received with
/// `shmq_recv_info`, or shown by `shmq_peek`), into `*out`: the original id, the delivery
/// count, when it was moved, and pointers to its reason and payload inside `data` (nothing
/// is copied or allocated for the caller: they are valid as long as `data` is).
///
/// ```c
/// shmq_consumer *dlq;
/// shmq_consumer_open("orders.workers.dlq", &dlq);
/// rc = shmq_recv_info(dlq, buf, sizeof buf, &len, NULL, -1);
/// shmq_dead_letter_info d;
/// rc = shmq_dead_letter_decode(buf, len, &d);
/// printf("%" PRIu64 " after %u deliveries: %.*s\n", d.id, d.deliveries, (int)d.reason_len, d.reason);
/// ```
///
/// Returns `SHMQ_OK`; `SHMQ_ERR_CORRUPT` if the bytes are not a dead letter;
/// `SHMQ_ERR_INVALID` for a NULL `out`, or a NULL `data` with a non-zero `len`. `*out` is
/// all zero after an error. Thread-safe; does not block.
///
/// # Safety
/// `data` is NULL or points to `len` readable bytes; `out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmq_dead_letter_decode(
    data: *const c_void,
    len: usize,
    out: *mut shmq_dead_letter_info,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract.
        unsafe { put(out, NO_DEAD_LETTER) };
        if out.is_null() {
            return Err(invalid(c"invalid argument: NULL out-pointer"));
        }
        if data.is_null() && len > 0 {
            return Err(invalid(c"invalid argument: NULL data with a non-zero length"));
        }
        let bytes: &[u8] = if len == 0 {
            &[]
        } else {
            // SAFETY: `len` readable bytes at the non-null `data`, by the caller's contract.
            unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) }
        };
        // Read once (and checked) by the Rust crate; the pointers below are offsets into
        // the caller's bytes derived from the lengths it found, not a second read.
        let d = DeadLetter::decode(bytes)?;
        // Where the reason starts: after the fixed header, whose length the format's own
        // encoder says (an empty dead letter is exactly its header).
        let head =
            DeadLetter { id: 0, deliveries: 0, reason: String::new(), unix_ns: 0, payload: Vec::new() }.encode().len();
        let payload_at = len - d.payload.len();
        let Some(reason_len) = payload_at.checked_sub(head) else {
            return Err(fail(SHMQ_ERR_CORRUPT, c"corrupt dead letter: its reason ends before its header"));
        };
        let base = data.cast::<u8>();
        // SAFETY: `head <= payload_at <= len` (both `add`s), so each pointer is within (or
        // one past the end of) the caller's `len` bytes; with `len` 0 `decode` fails above.
        let (reason, payload) = unsafe { (base.add(head), base.add(payload_at)) };
        // SAFETY: `out` is non-null and writable by the caller's contract.
        unsafe {
            out.write(shmq_dead_letter_info {
                id: d.id,
                unix_ns: d.unix_ns,
                deliveries: d.deliveries,
                reserved: 0,
                reason: reason.cast(),
                reason_len,
                payload: payload.cast(),
                payload_len: d.payload.len(),
            })
        };
        Ok(())
    })
}

/// Takes the head message, which the caller has just peeked.
#[inline(always)]
fn release(c: &mut ConsumerState) -> Res {
    c.peeked = false;
    if c.inner.advance()? {
        Ok(())
    } else {
        // The message we saw is gone: only a process writing into the segment can do that.
        Err(fail(SHMQ_ERR_CORRUPT, c"corrupt queue: the message just read is gone (another process wrote the queue)"))
    }
}

/// A static, NUL-terminated English description of the code `err`: for every `int`,
/// known or not. Never NULL; do not free it. Thread-safe; does not block.
///
/// # Safety
/// None: any thread may call it with any value.
#[unsafe(no_mangle)]
pub extern "C" fn shmq_strerror(err: c_int) -> *const c_char {
    let s: &'static CStr = match err {
        SHMQ_OK => c"success",
        SHMQ_ERR_FULL => c"queue is full",
        SHMQ_ERR_EMPTY => c"queue is empty",
        SHMQ_ERR_TIMEOUT => c"timed out",
        SHMQ_ERR_TOO_LARGE => c"message exceeds the queue's max_message",
        SHMQ_ERR_BUFFER_TOO_SMALL => c"buffer too small for the message (*len holds the size needed)",
        SHMQ_ERR_NOT_FOUND => c"no such queue",
        SHMQ_ERR_EXISTS => c"a queue of that name already exists",
        SHMQ_ERR_INVALID => c"invalid argument, name, option or call order",
        SHMQ_ERR_BUSY => c"busy: slot held by a live process, or participant table full",
        SHMQ_ERR_PERMISSION => c"permission denied",
        SHMQ_ERR_CORRUPT => c"corrupt queue",
        SHMQ_ERR_INCOMPATIBLE => c"incompatible queue layout version",
        SHMQ_ERR_CLOSED => c"queue is closed",
        SHMQ_ERR_IO => c"operating-system error",
        SHMQ_ERR_INTERNAL => c"internal error in libshmq",
        SHMQ_ERR_INTERRUPTED => c"interrupted",
        SHMQ_ERR_LAPPED => c"lapped: the subscription fell behind its lag limit and missed messages",
        SHMQ_ERR_LOG => c"the log failed; the queue is read-only",
        SHMQ_ERR_NO_SPACE => c"no space left for the log",
        SHMQ_ERR_ACK_EXPIRED => c"ack expired: the message was released to be delivered again",
        _ => c"unknown shmq error code",
    };
    s.as_ptr()
}

/// Makes the call waiting in the producer `p` (`shmq_send` or `shmq_reserve` on a full
/// queue) return `SHMQ_ERR_INTERRUPTED` at once, from another thread or from a signal
/// handler. If no call is waiting, the next call on `p` that has to wait returns it
/// instead (so an interrupt that lands just before the call goes to sleep is not lost);
/// a call that can complete at once completes and leaves it pending. Several interrupts
/// before a wait are reported once. Interrupting a handle wakes the other producers of an
/// MPSC queue too; they find no room and wait again.
///
/// Async-signal-safe: it only uses atomics and one `FUTEX_WAKE` system call, allocates
/// nothing, takes no lock, and leaves `errno` and `shmq_last_error()` alone. It is the
/// only libshmq call a signal handler may make. It does not wait for the re-entry guard:
/// it is meant for a handle another thread is blocked in.
///
/// Returns `SHMQ_OK`, or `SHMQ_ERR_INVALID` for a NULL pointer, a closed handle or one that
/// is not a producer. An interrupt racing the handle's close is safe (the close waits for
/// it); one after the close is a use after close, as `shmq_producer_close` describes.
///
/// # Safety
/// `p` is NULL or a producer handle from `shmq_producer_open`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmq_producer_interrupt(p: *mut shmq_producer) -> c_int {
    // SAFETY: the caller's contract.
    unsafe { interrupt::<ProducerState>(p.cast()) }
}

/// Makes the call waiting in the consumer `c` (`shmq_recv` or `shmq_peek` on an empty
/// queue) return `SHMQ_ERR_INTERRUPTED` at once, from another thread or from a signal
/// handler; if none is waiting, the next call on `c` that has to wait. Async-signal-safe.
/// Everything else as `shmq_producer_interrupt`.
///
/// ```c
/// static shmq_consumer *rx;
/// static void on_sigint(int sig) { (void)sig; shmq_consumer_interrupt(rx); }
/// ...
/// rc = shmq_recv(rx, buf, sizeof buf, &len, -1);
/// if (rc == SHMQ_ERR_INTERRUPTED) { ... shut down ... }
/// ```
///
/// # Safety
/// `c` is NULL or a consumer handle from `shmq_consumer_open`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmq_consumer_interrupt(c: *mut shmq_consumer) -> c_int {
    // SAFETY: the caller's contract.
    unsafe { interrupt::<ConsumerState>(c.cast()) }
}

/// Why the last failing libshmq call on the calling thread failed: a NUL-terminated
/// English sentence with the details the code alone cannot give (the queue's name, the
/// options an existing queue has, the OS error, which argument was bad), e.g.
/// `invalid argument: queue "q" exists as spsc with capacity 4096 ...`.
///
/// Every call that returns an error code sets it (`shmq_options_init`,
/// `shmq_abi_version`, `shmq_strerror`, `shmq_last_error` and the async-signal-safe
/// `*_interrupt` calls never touch it); a successful call leaves it as it was, so read
/// it only right after a call failed, as with `errno`. Before any failure it is "".
///
/// Never NULL; do not free it. The string belongs to the calling thread and stays valid
/// until the next libshmq call on that thread: copy it to keep it. Thread-safe; does not
/// block. Not async-signal-safe.
///
/// # Safety
/// None: any thread may call it at any time.
#[unsafe(no_mangle)]
pub extern "C" fn shmq_last_error() -> *const c_char {
    last_error::get()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errno() -> c_int {
        // SAFETY: this thread's errno.
        unsafe { *libc::__errno_location() }
    }

    fn set_errno(v: c_int) {
        // SAFETY: this thread's errno.
        unsafe { *libc::__errno_location() = v };
    }

    #[test]
    fn the_last_error_of_an_os_error_carries_the_os_error_once() {
        let e = Error::Io { context: "chmod \"q\"".into(), source: std::io::Error::from_raw_os_error(libc::EPERM) };
        let text = with_causes(&e);
        assert!(text.starts_with("chmod \"q\": "), "{text}");
        assert_eq!(text.matches("Operation not permitted").count(), 1, "{text}");
        let plain = Error::InvalidArgument("bad".into());
        assert_eq!(with_causes(&plain), plain.to_string());
    }

    #[test]
    fn a_panic_becomes_internal_and_errno_survives() {
        set_errno(libc::EAGAIN);
        let rc = guard(|| {
            set_errno(libc::ENOENT);
            panic!("boom (this panic is expected by the test)");
        });
        assert_eq!(rc, SHMQ_ERR_INTERNAL);
        assert_eq!(errno(), libc::EAGAIN);
    }

    #[test]
    fn a_panic_in_a_void_function_is_swallowed() {
        set_errno(libc::EINTR);
        guard_void(|| panic!("boom (this panic is expected by the test)"));
        assert_eq!(errno(), libc::EINTR);
    }

    #[test]
    fn errors_map_to_their_codes() {
        assert_eq!(guard(|| Err(Error::Full.into())), SHMQ_ERR_FULL);
        assert_eq!(guard(|| Err(Error::Closed.into())), SHMQ_ERR_CLOSED);
        assert_eq!(guard(|| Ok(())), SHMQ_OK);
    }

    fn last_error() -> String {
        // SAFETY: shmq_last_error returns a NUL-terminated string valid until the next call.
        unsafe { CStr::from_ptr(shmq_last_error()) }.to_string_lossy().into_owned()
    }

    #[test]
    fn every_failure_path_leaves_a_message_and_success_leaves_it_alone() {
        assert_eq!(guard(|| Err(Error::InvalidArgument("bad \0 thing".into()).into())), SHMQ_ERR_INVALID);
        assert_eq!(last_error(), "invalid argument: bad ? thing");
        assert_eq!(guard(|| Ok(())), SHMQ_OK);
        assert_eq!(last_error(), "invalid argument: bad ? thing");
        assert_eq!(guard(|| Err(Error::Full.into())), SHMQ_ERR_FULL);
        assert_eq!(last_error(), "queue is full");
        assert_eq!(guard(|| panic!("kaboom (this panic is expected by the test)")), SHMQ_ERR_INTERNAL);
        assert!(last_error().contains("kaboom"), "{}", last_error());
        assert_eq!(guard(|| Err(invalid(c"why not"))), SHMQ_ERR_INVALID);
        assert_eq!(last_error(), "why not");
    }

    #[test]
    fn lapped_maps_to_its_code_and_says_how_much_was_missed() {
        assert_eq!(guard(|| Err(Error::Lapped { missed_bytes: 4096 }.into())), SHMQ_ERR_LAPPED);
        assert!(last_error().starts_with("lapped: "), "{}", last_error());
        assert!(last_error().contains("missed 4096 bytes"), "{}", last_error());
        // SAFETY: shmq_strerror returns a static C string.
        let text = unsafe { CStr::from_ptr(shmq_strerror(SHMQ_ERR_LAPPED)) };
        assert!(text.to_str().unwrap().starts_with("lapped"), "{text:?}");
    }

    #[test]
    fn subscription_options_are_zero_by_default_and_ack_fields_need_explicit_acks() {
        let read = |o: &shmq_subscription_options| {
            // SAFETY: a whole struct of this version.
            unsafe { subscription_options_arg(o) }
        };
        // SAFETY: NULL means the defaults.
        assert_eq!(unsafe { subscription_options_arg(std::ptr::null()) }, Ok(SubscriptionOptions::new()));
        let mut o = DEFAULT_SUBSCRIPTION_OPTIONS;
        assert_eq!(read(&o), Ok(SubscriptionOptions::new()));
        o.lag_limit = 4096;
        assert_eq!(read(&o), Ok(SubscriptionOptions::new().lag_limit(Some(4096))));
        let refused = [
            (shmq_subscription_options { ack: 7, ..DEFAULT_SUBSCRIPTION_OPTIONS }, "ack 7"),
            (shmq_subscription_options { ack_wait_ns: 1, ..DEFAULT_SUBSCRIPTION_OPTIONS }, "ack_wait_ns is set"),
            (shmq_subscription_options { max_in_flight: 1, ..DEFAULT_SUBSCRIPTION_OPTIONS }, "max_in_flight is set"),
            (shmq_subscription_options { max_deliveries: 1, ..DEFAULT_SUBSCRIPTION_OPTIONS }, "max_deliveries is set"),
            (
                shmq_subscription_options { ack: SHMQ_ACK_EXPLICIT, ack_wait_ns: -1, ..DEFAULT_SUBSCRIPTION_OPTIONS },
                "ack_wait_ns -1 is negative",
            ),
        ];
        for (o, why) in refused {
            assert_eq!(read(&o), Err(Code(SHMQ_ERR_INVALID)), "{o:?}");
            assert!(last_error().contains(why), "{}", last_error());
        }
        let o = shmq_subscription_options { start: 1, ..DEFAULT_SUBSCRIPTION_OPTIONS };
        assert_eq!(read(&o), Err(Code(SHMQ_ERR_INVALID)));
        let o = shmq_subscription_options { size: 16, ..DEFAULT_SUBSCRIPTION_OPTIONS };
        assert_eq!(read(&o), Err(Code(SHMQ_ERR_INVALID)));
    }

    #[test]
    fn explicit_acks_take_zero_as_the_librarys_defaults_and_pass_the_rest_on() {
        let read = |o: &shmq_subscription_options| {
            // SAFETY: a whole struct of this version.
            unsafe { subscription_options_arg(o) }
        };
        let rust = SubscriptionOptions::new();
        assert_eq!(rust.get_ack_wait(), Duration::from_nanos(SHMQ_DEFAULT_ACK_WAIT_NS as u64));
        assert_eq!(rust.get_max_in_flight(), SHMQ_DEFAULT_MAX_IN_FLIGHT);
        assert_eq!(rust.get_max_deliveries(), SHMQ_DEFAULT_MAX_DELIVERIES);
        let explicit = shmq_subscription_options { ack: SHMQ_ACK_EXPLICIT, ..DEFAULT_SUBSCRIPTION_OPTIONS };
        assert_eq!(read(&explicit), Ok(SubscriptionOptions::new().ack(Ack::Explicit)));
        let set = shmq_subscription_options {
            ack_wait_ns: 1_500_000,
            max_in_flight: 3,
            max_deliveries: 9,
            lag_limit: 8,
            ..explicit
        };
        let want = SubscriptionOptions::new()
            .ack(Ack::Explicit)
            .ack_wait(Duration::from_micros(1500))
            .max_in_flight(3)
            .max_deliveries(9)
            .lag_limit(Some(8));
        // Passed on as given: the Rust crate judges the ranges (and refuses the lag limit).
        assert_eq!(read(&set), Ok(want));
    }

    #[test]
    fn ack_expired_maps_to_its_code_and_names_the_message() {
        assert_eq!(guard(|| Err(Error::AckExpired(4096).into())), SHMQ_ERR_ACK_EXPIRED);
        assert!(last_error().contains("ack expired: message 4096"), "{}", last_error());
        // SAFETY: shmq_strerror returns a static C string.
        let text = unsafe { CStr::from_ptr(shmq_strerror(SHMQ_ERR_ACK_EXPIRED)) };
        assert!(text.to_str().unwrap().starts_with("ack expired"), "{text:?}");
    }

    #[test]
    fn a_dead_letter_is_decoded_in_place_and_anything_else_is_refused() {
        let d =
            DeadLetter { id: 77, deliveries: 3, reason: "bad amount".into(), unix_ns: 5, payload: b"order".to_vec() };
        let bytes = d.encode();
        let mut out = NO_DEAD_LETTER;
        // SAFETY: `bytes` is readable, `out` writable.
        let rc = unsafe { shmq_dead_letter_decode(bytes.as_ptr().cast(), bytes.len(), &mut out) };
        assert_eq!(rc, SHMQ_OK);
        assert_eq!((out.id, out.deliveries, out.unix_ns, out.reserved), (77, 3, 5, 0));
        let base = bytes.as_ptr() as usize;
        let (r, p) = (out.reason as usize - base, out.payload as usize - base);
        assert_eq!(&bytes[r..r + out.reason_len], b"bad amount");
        assert_eq!(&bytes[p..p + out.payload_len], b"order");
        assert_eq!(p + out.payload_len, bytes.len(), "the payload runs to the end");
        // An empty reason and payload: both pointers at the end of their parts.
        let bytes = DeadLetter { reason: String::new(), payload: Vec::new(), ..d }.encode();
        // SAFETY: as above.
        let rc = unsafe { shmq_dead_letter_decode(bytes.as_ptr().cast(), bytes.len(), &mut out) };
        assert_eq!((rc, out.reason_len, out.payload_len), (SHMQ_OK, 0, 0));
        assert_eq!(out.payload as usize, bytes.as_ptr() as usize + bytes.len());
        // Not a dead letter: refused, and `*out` cleared.
        for bad in [&b"SHMQDLQ1"[..], b"hello, world, this is not a dead letter", &bytes[..bytes.len() - 1]] {
            // SAFETY: as above.
            let rc = unsafe { shmq_dead_letter_decode(bad.as_ptr().cast(), bad.len(), &mut out) };
            assert_eq!(rc, SHMQ_ERR_CORRUPT, "{bad:?}");
            assert_eq!(out, NO_DEAD_LETTER);
            assert!(last_error().contains("not a dead letter"), "{}", last_error());
        }
        // SAFETY: NULL data with length 0 reads nothing; NULL `out` is refused.
        unsafe {
            assert_eq!(shmq_dead_letter_decode(std::ptr::null(), 0, &mut out), SHMQ_ERR_CORRUPT);
            assert_eq!(shmq_dead_letter_decode(std::ptr::null(), 8, &mut out), SHMQ_ERR_INVALID);
            assert_eq!(
                shmq_dead_letter_decode(bytes.as_ptr().cast(), bytes.len(), std::ptr::null_mut()),
                SHMQ_ERR_INVALID
            );
        }
    }

    #[test]
    fn timeouts_follow_the_sign_convention() {
        assert_eq!(timeout(0), Timeout::Try);
        assert_eq!(timeout(-1), Timeout::Forever);
        assert_eq!(timeout(i64::MIN), Timeout::Forever);
        assert_eq!(timeout(1), Timeout::For(Duration::from_nanos(1)));
        assert_eq!(timeout(i64::MAX), Timeout::For(Duration::from_nanos(i64::MAX as u64)));
    }

    #[test]
    fn strerror_answers_every_int() {
        for e in [i32::MIN, -21, -20, -19, -18, -17, -16, -1, 0, 1, i32::MAX] {
            // SAFETY: shmq_strerror returns a static C string.
            let s = unsafe { CStr::from_ptr(shmq_strerror(e)) };
            assert!(!s.is_empty());
        }
        for known in SHMQ_ERR_ACK_EXPIRED..=SHMQ_OK {
            // SAFETY: as above.
            let s = unsafe { CStr::from_ptr(shmq_strerror(known)) };
            assert_ne!(s, c"unknown shmq error code", "{known}");
        }
        // SAFETY: as above.
        let unknown = unsafe { CStr::from_ptr(shmq_strerror(-21)) };
        assert_eq!(unknown, c"unknown shmq error code");
    }
}

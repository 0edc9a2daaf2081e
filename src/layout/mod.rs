//! The on-memory contract: the header of a queue's shared-memory segment.
//!
//! Nothing here does anything; it only says where things are. `docs/LAYOUT.md` draws the
//! same offsets, and the `const` assertions at the bottom keep the structs equal to it.
//! Every field another process may write is an atomic; every hot field sits on its own
//! 128-byte line (two 64-byte lines: the adjacent-line prefetcher pairs them).

pub mod record;

use crate::sync::atomic::{AtomicU32, AtomicU64};

/// `b"SHMQ\0RNG"` read as a little-endian `u64`: the first word of every segment.
pub const MAGIC: u64 = u64::from_le_bytes(*b"SHMQ\0RNG");
/// Bumped whenever the meaning of any byte in the segment changes.
pub const LAYOUT_VERSION: u32 = 10;
/// Size of one header line.
pub const LINE: usize = 128;
/// Number of participant slots: slot 0 is the consumer, slots 1.. are producers.
pub const SLOTS: usize = 64;
/// Offset of the participant table.
pub const TABLE_OFFSET: usize = 4096;
/// Number of subscription entries: entry 0 is the default subscription.
pub const SUBSCRIPTIONS: usize = 64;
/// Offset of the subscription table (after the participant table).
pub const SUBS_OFFSET: usize = TABLE_OFFSET + SLOTS * LINE;
/// Number of member table entries: one per participant slot.
pub const MEMBERS: usize = SLOTS;
/// Offset of the member table (after the subscription table).
pub const MEMBERS_OFFSET: usize = SUBS_OFFSET + SUBSCRIPTIONS * 3 * LINE;
/// Size of the whole header; the data region starts here (page aligned).
pub const HEADER_SIZE: usize = MEMBERS_OFFSET + MEMBERS * LINE;
/// Smallest capacity accepted.
pub const MIN_CAPACITY: u64 = 1024;
/// Largest capacity accepted (1 TiB): keeps every index and size far from overflow.
pub const MAX_CAPACITY: u64 = 1 << 40;
/// Largest `max_message` accepted regardless of capacity (the record length is a `u32`).
pub const MAX_MESSAGE_LIMIT: u64 = 1 << 30;

/// `Identity::state` before the creator has finished writing the header.
pub const STATE_INITIALIZING: u32 = 0;
/// `Identity::state` once the header is complete (stored with Release).
pub const STATE_READY: u32 = 1;

/// `Identity::mode` of a single-producer queue.
pub const MODE_SPSC: u32 = 1;
/// `Identity::mode` of a multi-producer queue.
pub const MODE_MPSC: u32 = 2;

/// `Slot::state` of a free slot (or one whose holder deregistered).
pub const SLOT_FREE: u32 = 0;
/// `Slot::state` of a slot taken by a participant. Whether it still lives is answered by
/// its OFD lock, never by this word.
pub const SLOT_ACTIVE: u32 = 1;
/// `Slot::role` of the consumer.
pub const ROLE_CONSUMER: u32 = 1;
/// `Slot::role` of a producer.
pub const ROLE_PRODUCER: u32 = 2;

/// Byte of the segment's file that the creator locks (OFD write lock) until the header is
/// ready. Lock bytes are advisory ranges; they do not overlap any data the queue reads.
pub const CREATOR_LOCK_BYTE: u64 = 0;
/// Byte locked by the holder of participant slot `i` is `SLOT_LOCK_BASE + i`.
pub const SLOT_LOCK_BASE: u64 = 1;
/// Byte locked (briefly) by whoever creates or removes a subscription: it serializes those.
pub const ADMIN_LOCK_BYTE: u64 = 256;

/// `SubMeta::state`: the entry is unused.
pub const SUB_FREE: u32 = 0;
/// `SubMeta::state`: being created by the holder of the admin lock (left so by a creator
/// that died: the next admin-lock holder frees it).
pub const SUB_CREATING: u32 = 1;
/// `SubMeta::state`: a live subscription; its bit is set in `SubsLine::active`.
pub const SUB_ACTIVE: u32 = 2;
/// A bit of a cursor word: the subscription was detached for falling behind its lag
/// limit; producers no longer wait for it.
pub const CURSOR_DETACHED: u64 = 1;
/// A bit of a cursor word: the cursor is being made to count again (created, or rejoining
/// after being lapped) and may not be claimed from yet; producers wait for it at the
/// position it holds. Whoever finds it so may finish the join.
pub const CURSOR_JOINING: u64 = 2;
/// A bit of a cursor word (a durable queue's default consumer only): the consumer is reading
/// messages in the ring at the position the word holds (a borrow): producers wait for it
/// there rather than detach it (spill it to the log).
pub const CURSOR_PINNED: u64 = 4;
/// `Slot::role` of a member of a named subscription.
pub const ROLE_MEMBER: u32 = 3;

/// A bit of a cursor word (a subscription's): a member's compare-and-swap took the span
/// from the cursor's position and locked the cursor until its claim is marked held; the
/// rest of the word says whose claim ([`cursor_locked`]), whose end is where the cursor
/// stands. Whoever finds it so may finish it (mark the claim held, then store its end).
pub const CURSOR_LOCKED: u64 = 1 << 63;
/// The bits of a locked cursor word that hold the claim's sequence number (its low 54 bits).
pub const LOCK_SEQ_MASK: u64 = (1 << 54) - 1;

/// The locked cursor word of the claim with sequence number `seq` of member `slot`
/// (`detached`: a claim in the log of a detached subscription, whose cursor stays detached).
pub const fn cursor_locked(slot: usize, seq: u64, detached: bool) -> u64 {
    CURSOR_LOCKED | ((seq & LOCK_SEQ_MASK) << 9) | ((slot as u64 & 63) << 3) | (detached as u64 * CURSOR_DETACHED)
}

/// The low two bits of `MemberSlot::claim_state`: no claim.
pub const CLAIM_NONE: u64 = 0;
/// Claim recorded; its compare-and-swap on the cursor not known to have succeeded yet.
pub const CLAIM_CLAIMING: u64 = 1;
/// The span is the member's.
pub const CLAIM_HELD: u64 = 2;
/// The state bits of `MemberSlot::claim_state`; the bits above hold the claim's sequence
/// number.
pub const CLAIM_STATE_MASK: u64 = 3;

/// A `MemberSlot::claim_state` word: claim number `seq` in `state`.
pub const fn claim_word(seq: u64, state: u64) -> u64 {
    (seq << 2) | state
}

/// Line 0: identity and configuration, written once by the creator before `state` turns
/// ready, then only read (and copied into private memory after validation). `closed` is
/// the one field that changes later.
#[repr(C, align(128))]
pub struct Identity {
    /// [`MAGIC`].
    pub magic: AtomicU64,
    /// [`LAYOUT_VERSION`].
    pub layout_version: AtomicU32,
    /// [`STATE_INITIALIZING`] or [`STATE_READY`].
    pub state: AtomicU32,
    /// [`layout_hash`] of the creator's build.
    pub layout_hash: AtomicU64,
    /// [`MODE_SPSC`] or [`MODE_MPSC`].
    pub mode: AtomicU32,
    /// Largest message in bytes.
    pub max_message: AtomicU32,
    /// Size of the data region in bytes, a power of two.
    pub capacity: AtomicU64,
    /// Offset of the data region: [`HEADER_SIZE`].
    pub data_offset: AtomicU64,
    /// Size of the whole object: `HEADER_SIZE + capacity`.
    pub total_size: AtomicU64,
    /// Pid of the creator (information only).
    pub creator_pid: AtomicU32,
    /// Permission bits given at creation (information only; the OS holds the real ones).
    pub permissions: AtomicU32,
    /// Creation time, nanoseconds since the Unix epoch (information only).
    pub created_unix_ns: AtomicU64,
    /// Non-zero once `Queue::remove` ran: waiters wake and return `Closed` when drained.
    pub closed: AtomicU32,
    _pad: AtomicU32,
    /// Random at creation, low 3 bits zero: mixed into every record stamp
    /// (`record::stamp`) so that payload bytes do not read as stamps.
    pub salt: AtomicU64,
    _reserved: [u64; 5],
}

/// Line 1: the producer position (SPSC: the committed end; MPSC: the claimed end).
#[repr(C, align(128))]
pub struct ProducerLine {
    /// Bytes ever appended (claimed in MPSC); index into the ring is `tail & (capacity - 1)`.
    pub tail: AtomicU64,
    _reserved: [u64; 15],
}

/// Line 2: the consumer position.
#[repr(C, align(128))]
pub struct ConsumerLine {
    /// Bytes ever consumed; everything below it is free for producers.
    pub head: AtomicU64,
    _reserved: [u64; 15],
}

/// How many `asleep` sets a wait line has: as many as fit in its 128 bytes. Sleeper and
/// waker both compute the set from the same epoch value (`e % ASLEEP_SETS`), so any count
/// is correct; more sets mean a waker reads fewer [`SleepLines`] entries of sleepers on
/// other epochs (woken, not yet run) before it knows it owes nobody a wake call.
pub const ASLEEP_SETS: usize = 13;

/// Lines 3 and 4: a futex pair for one direction (data available, space available).
#[repr(C, align(128))]
pub struct WaitLine {
    /// Participants about to sleep or sleeping on `epoch`: bit `i` for slot `i`.
    pub waiters: AtomicU64,
    /// The futex word: bumped by a waker that saw `waiters != 0`.
    pub epoch: AtomicU32,
    _pad: AtomicU32,
    /// Participants inside (or entering) `FUTEX_WAIT` on `epoch`, by the epoch they wait
    /// on: bit `i` of set `e % ASLEEP_SETS` for slot `i` waiting on `e`. A waker that bumped
    /// `epoch` from `e` makes the `FUTEX_WAKE` system call only if set `e % ASLEEP_SETS` is
    /// not empty: a sleeper on an older epoch was woken by the waker that bumped past it (or
    /// finds `epoch` changed and returns at once), so it needs no second system call.
    pub asleep: [AtomicU64; ASLEEP_SETS],
    _reserved: [u64; 14 - ASLEEP_SETS],
}

/// Counters of one participant, or the sum of those that left (line 5).
#[repr(C)]
pub struct Counters {
    /// Messages sent (producer) or received (consumer).
    pub messages: AtomicU64,
    /// Payload bytes sent or received.
    pub bytes: AtomicU64,
    /// Calls that found the queue full (producer) - counted once per call.
    pub full_events: AtomicU64,
    /// `FUTEX_WAKE` system calls made.
    pub wake_calls: AtomicU64,
    /// `FUTEX_WAIT` system calls made.
    pub wait_calls: AtomicU64,
}

/// Line 5: counters folded in from participants that left or died, so totals survive them.
#[repr(C, align(128))]
pub struct RetiredLine {
    /// Sums over departed producers.
    pub producers: Counters,
    /// Sums over departed consumers.
    pub consumers: Counters,
    /// MPSC: claims of producers that died before committing, turned into padding by a
    /// reader (each was a message that was never sent).
    pub reclaimed: AtomicU64,
    _reserved: [u64; 5],
}

/// The first 4096 bytes of the segment.
#[repr(C)]
pub struct Header {
    /// Line 0.
    pub identity: Identity,
    /// Line 1.
    pub producer: ProducerLine,
    /// Line 2.
    pub consumer: ConsumerLine,
    /// Line 3: the consumer sleeps here until data is available.
    pub data_wait: WaitLine,
    /// Line 4: producers sleep here until space is available.
    pub space_wait: WaitLine,
    /// Line 5.
    pub retired: RetiredLine,
    /// Line 6.
    pub subs: SubsLine,
    /// Line 7: a durable queue's log positions and options (all zero on a volatile queue).
    pub durable: DurableLine,
    /// Line 8: producers waiting for their messages to be durable sleep here.
    pub durable_wait: WaitLine,
    /// Lines 9 to 16: the log directory of a durable queue.
    pub log_dir: LogDirLines,
    /// Lines 17 to 20: what each participant slot went to sleep on last.
    pub sleeping: SleepLines,
    _reserved: [u8; TABLE_OFFSET - 21 * LINE],
}

/// Lines 17 to 20: entry `i` is [`sleep_tag`]`(line, epoch)` for the wait line and epoch that
/// participant slot `i` last registered on to sleep, written by that slot before it raises its
/// bit in the line's `waiters` (and later its `asleep` set). A waker bumps the epoch only for
/// a waiter whose entry names this line and the current epoch, and makes the `FUTEX_WAKE`
/// system call only for a slot in the `asleep` set it looks in whose entry names the epoch it
/// bumped from: the bits of a sleeper that was woken but has not run yet name an older epoch,
/// and cost later wakers a load instead of an increment, a fence and a system call.
#[repr(C, align(128))]
pub struct SleepLines {
    /// By participant slot.
    pub tags: [AtomicU64; SLOTS],
}

/// The [`SleepLines`] entry of a sleeper on epoch `epoch` of the wait line at byte offset
/// `line_offset` in the segment: the line's number in the high half, the epoch in the low.
#[inline]
pub const fn sleep_tag(line_offset: usize, epoch: u32) -> u64 {
    (((line_offset / LINE) as u64) << 32) | epoch as u64
}

/// `DurableLine::flags`: the queue keeps a log on disk.
pub const DURABLE_FLAG: u32 = 1;
/// `DurableLine::fsync`: never synced by shmq (the kernel writes back when it likes).
pub const FSYNC_NEVER: u32 = 0;
/// `DurableLine::fsync`: synced every `interval_ns` by a timer.
pub const FSYNC_INTERVAL: u32 = 1;
/// `DurableLine::fsync`: every send returns once its message is synced.
pub const FSYNC_ALWAYS: u32 = 2;
/// Byte of the segment's file locked (OFD write lock, never waited for) by the process
/// journaling now: it only elects one writer for efficiency; writes are idempotent, and a
/// process stalled waiting past a bound journals alongside.
pub const JOURNAL_LOCK_BYTE: u64 = 257;
/// Byte of the segment's file locked (OFD write lock, never waited for) by a process
/// writing the checkpoint of a durable queue's readers into its log directory: one
/// writer at a time, so the newest snapshot is the one written last.
pub const CHECKPOINT_LOCK_BYTE: u64 = 258;

/// Line 7: what a durable queue's participants share about its log. Options are written
/// once by the creator; positions only rise (compare-and-swap to a maximum).
#[repr(C, align(128))]
pub struct DurableLine {
    /// [`DURABLE_FLAG`] or 0.
    pub flags: AtomicU32,
    /// [`FSYNC_NEVER`], [`FSYNC_INTERVAL`] or [`FSYNC_ALWAYS`].
    pub fsync: AtomicU32,
    /// `FSYNC_INTERVAL`: the longest a written message waits for its sync, in nanoseconds.
    pub interval_ns: AtomicU64,
    /// The most bytes the log may hold; producers wait (or get `Full`) there.
    pub max_log_bytes: AtomicU64,
    /// Bytes of released messages kept for replay; 0 keeps only what a subscription has not
    /// released.
    pub retain_bytes: AtomicU64,
    /// Bytes of stream per log segment file (a multiple of the capacity).
    pub seg_size: AtomicU64,
    /// The log's identity (its segment files carry it).
    pub identity: [AtomicU64; 2],
    /// Everything below is written to the log files (`pwrite` returned).
    pub written: AtomicU64,
    /// Everything below is synced (`fdatasync` returned).
    pub durable: AtomicU64,
    /// The journal's cursor: producers overwrite nothing at or above it. `durable` under
    /// `FSYNC_ALWAYS` (readers read only below it), `written` otherwise.
    pub journal: AtomicU64,
    /// No message id at or above it is handed out before it is raised; it is raised only
    /// after the log's meta record says so on disk, so ids are never reused after a crash.
    pub ceiling: AtomicU64,
    /// Where the ring started (after a restart, the end of the recovered log): messages
    /// below it are in the log files only.
    pub base: AtomicU64,
    /// Non-zero once a sync failed: the queue is read-only from then on.
    pub failed: AtomicU32,
    /// A restored queue's creator is still making the checkpoint's subscriptions again,
    /// until this time at the latest (Unix seconds; 0: no restore in progress): retention
    /// waits, since a subscription not made yet holds no position.
    pub restoring_until: AtomicU32,
    /// `fdatasync` calls made on the log (a statistic).
    pub syncs: AtomicU64,
    /// Journal passes that wrote to the log (a statistic).
    pub writes: AtomicU64,
}

/// Lines 9 to 16: the log directory, an absolute path of at most [`LOG_DIR_MAX`] bytes.
#[repr(C, align(128))]
pub struct LogDirLines {
    /// Length of the path.
    pub len: AtomicU32,
    _pad: AtomicU32,
    /// The path's bytes.
    pub bytes: [AtomicU64; 127],
}

/// The longest log directory path a queue records.
pub const LOG_DIR_MAX: usize = 127 * 8;

/// Line 6: what producers read to find the subscriptions they must wait for and wake.
#[repr(C, align(128))]
pub struct SubsLine {
    /// Bit `i`: subscription entry `i` is active (producers gate on its cursor). Changed only
    /// under the admin lock.
    pub active: AtomicU64,
    /// Bit `i` (`i >= 1`): some member of subscription `i` has slept; producers look at its
    /// wait line after publishing. Set by sleepers, cleared only when the entry is freed.
    pub sleepers: AtomicU64,
    /// Bumped by every process that makes a subscription's cursor count again (create,
    /// rejoin after being lapped), after storing the cursor and before reading the
    /// producers' `gate_min` words: a producer that sees it unchanged across its own store
    /// of `gate_min` knows no cursor appeared behind its back.
    pub joins: AtomicU64,
    _reserved: [u64; 13],
}

/// One subscription entry of the table at [`SUBS_OFFSET`]: three lines.
#[repr(C, align(128))]
pub struct SubEntry {
    /// Line 0: the hot words.
    pub cursor: SubCursor,
    /// Line 1: the members' futex pair (waiter bit `j` for participant slot `j`).
    pub wait: WaitLine,
    /// Line 2: name, options and statistics.
    pub meta: SubMeta,
}

/// The hot line of a subscription entry.
#[repr(C, align(128))]
pub struct SubCursor {
    /// `position | CURSOR_DETACHED?`: the next position to hand out; members claim spans by
    /// compare-and-swap on it. Entry 0 (the default subscription) uses
    /// `ConsumerLine::head` instead.
    pub cursor: AtomicU64,
    /// Bit `j`: participant slot `j` is a member of this subscription (producers read its
    /// member table entry's claim).
    pub members: AtomicU64,
    _reserved: [u64; 14],
}

/// The name, options and statistics of a subscription entry.
#[repr(C, align(128))]
pub struct SubMeta {
    /// [`SUB_FREE`], [`SUB_CREATING`] or [`SUB_ACTIVE`].
    pub state: AtomicU32,
    /// Bumped each time the entry is (re)used, so that a member of a removed subscription
    /// never mistakes a new one in the same entry for its own.
    pub generation: AtomicU32,
    /// The lag limit in bytes, 0 for none.
    pub lag_limit: AtomicU64,
    /// Length of `name`.
    pub name_len: AtomicU32,
    _pad: AtomicU32,
    /// Creation time, nanoseconds since the Unix epoch (information only).
    pub created_unix_ns: AtomicU64,
    /// Times detached for falling behind the lag limit.
    pub lapped: AtomicU64,
    /// Bytes missed over those times.
    pub missed_bytes: AtomicU64,
    /// Messages handed out again after the member holding them died.
    pub redelivered: AtomicU64,
    /// Messages received by members that left.
    pub retired_messages: AtomicU64,
    /// Bytes received by members that left.
    pub retired_bytes: AtomicU64,
    /// The name, `name_len` bytes of `[A-Za-z0-9._-]`.
    pub name: [AtomicU64; 6],
    _reserved: u64,
}

/// One entry of the member table at [`MEMBERS_OFFSET`]: entry `j` belongs to participant
/// slot `j` while its holder is a member of a named subscription (its liveness is that
/// slot's OFD lock). It holds what the member claimed.
#[repr(C, align(128))]
pub struct MemberSlot {
    /// [`SLOT_FREE`] or [`SLOT_ACTIVE`] (a member of subscription `sub`).
    pub state: AtomicU32,
    /// The subscription entry it joined.
    pub sub: AtomicU32,
    /// The entry's `generation` when it joined.
    pub generation: AtomicU32,
    /// How often the claimed span's messages have been handed out (1, or more after the
    /// members holding it died).
    pub deliveries: AtomicU32,
    /// Start of the span claimed (valid unless `claim_state` is [`CLAIM_NONE`]).
    pub claim_pos: AtomicU64,
    /// End of that span.
    pub claim_end: AtomicU64,
    /// [`claim_word`]`(seq, state)`: the number of the member's latest claim (counting on
    /// across the slot's holders), and its state, [`CLAIM_NONE`], [`CLAIM_CLAIMING`] or
    /// [`CLAIM_HELD`].
    pub claim_state: AtomicU64,
    /// A subscription with explicit acks: every message of the claimed span below this
    /// position has its in-flight entry (outside `(claim_pos, claim_end]`: none has).
    pub entered: AtomicU64,
    _reserved: [u64; 10],
}

/// One participant slot of the table at [`TABLE_OFFSET`]. Written only by its holder
/// (and by a successor that proved the holder dead); read by `inspect`.
#[repr(C, align(128))]
pub struct Slot {
    /// [`SLOT_FREE`] or [`SLOT_ACTIVE`].
    pub state: AtomicU32,
    /// [`ROLE_CONSUMER`] or [`ROLE_PRODUCER`].
    pub role: AtomicU32,
    /// Pid of the holder (information only: pids are reused).
    pub pid: AtomicU32,
    _pad: AtomicU32,
    /// Start time of the holder in clock ticks after boot (`/proc/PID/stat` field 22).
    pub start_time: AtomicU64,
    /// Last sign of life, nanoseconds since the Unix epoch (information only).
    pub heartbeat_unix_ns: AtomicU64,
    /// The holder's counters.
    pub counters: Counters,
    /// MPSC producers: the start of the space this producer is claiming or has claimed,
    /// stored before its claim's compare-and-swap on `tail`, so that a reader stuck behind
    /// the claim of a producer that died can find the claim's extent ([`NO_CLAIM`]: none).
    pub claim_pos: AtomicU64,
    /// The end of that space.
    pub claim_end: AtomicU64,
    /// The lowest subscription cursor this producer saw when it last computed how far it
    /// may write (it overwrites nothing at or above it): a process making a cursor count
    /// again starts it no lower than any producer's `gate_min`.
    pub gate_min: AtomicU64,
    _reserved: [u64; 4],
}

/// Entries of a subscription's in-flight table (explicit acks, durable queues only).
/// [`MAX_IN_FLIGHT`] of them take messages members receive; the rest take what a restart
/// finds claimed but not yet received.
pub const IN_FLIGHT_ENTRIES: usize = 2048;
/// The largest `max_in_flight` a subscription may have.
pub const MAX_IN_FLIGHT: u32 = 1024;
/// Bytes of a reason a shared in-flight entry keeps (longer ones are cut there).
pub const REASON_MAX: usize = 72;
/// Bytes of one subscription's ack area: its [`AckMeta`] line, then its in-flight table.
pub const ACK_AREA: usize = LINE + IN_FLIGHT_ENTRIES * LINE;
/// Bytes of a durable queue's ack areas (after its data region; a volatile queue has none).
/// Only the areas of subscriptions with explicit acks are given memory (at their creation).
pub const ACKS_SIZE: usize = SUBSCRIPTIONS * ACK_AREA;
/// `AckMeta::mode`: the members' receiving is the acknowledgement.
pub const ACK_AUTO: u32 = 0;
/// `AckMeta::mode`: members acknowledge each message; unacknowledged ones are delivered again.
pub const ACK_EXPLICIT: u32 = 1;

/// `InFlight::owner` state: free for a member to take.
pub const IF_FREE: u64 = 0;
/// `InFlight::owner` state: taken by a member for the next message it hands out, not
/// filled yet (its fields are a former holder's: a dead owner's is simply freed).
pub const IF_RESERVED: u64 = 1;
/// `InFlight::owner` state: handed out to its owner, not yet acknowledged.
pub const IF_ACQUIRED: u64 = 2;
/// `InFlight::owner` state: to be delivered again (nacked, expired, or its owner died).
pub const IF_RELEASED: u64 = 3;
/// `InFlight::owner` state: its owner is taking it again (writing its new deadline).
pub const IF_RETAKING: u64 = 4;
/// `InFlight::owner` state: its owner is moving it to the dead-letter queue.
pub const IF_MOVING: u64 = 5;
/// `InFlight::owner` state: to be moved to the dead-letter queue (its mover died).
pub const IF_DOOMED: u64 = 6;
/// `InFlight::owner` state: reserved and filled with the message a member is handing out
/// (its fields valid; resolved with the member's claim if it dies).
pub const IF_FILLED: u64 = 7;

/// Line 0 of a subscription's ack area: its ack options (fixed at its creation, under the
/// admin lock) and statistics.
#[repr(C, align(128))]
pub struct AckMeta {
    /// [`ACK_AUTO`] or [`ACK_EXPLICIT`].
    pub mode: AtomicU32,
    /// Deliveries after which a message goes to the dead-letter queue.
    pub max_deliveries: AtomicU32,
    /// How long a member may hold a message unacknowledged, in nanoseconds.
    pub ack_wait_ns: AtomicU64,
    /// Messages the members may hold unacknowledged at once (entries `0..max_in_flight`).
    pub max_in_flight: AtomicU32,
    _pad: AtomicU32,
    /// Bumped whenever an entry is released (or doomed): members look for work there.
    pub released: AtomicU64,
    /// Messages acknowledged.
    pub acked: AtomicU64,
    /// Messages nacked.
    pub nacked: AtomicU64,
    /// Entries that expired (held past `ack_wait`).
    pub expired: AtomicU64,
    /// Messages moved to the dead-letter queue.
    pub dead_lettered: AtomicU64,
    /// Messages delivered again from the in-flight table.
    pub redelivered: AtomicU64,
    /// Non-zero when a member found no free entry (it waits): an ack wakes the members.
    pub starved: AtomicU64,
    _reserved: [u64; 6],
}

/// One entry of a subscription's in-flight table: a message a member holds unacknowledged
/// (or one to deliver again). Only its owner writes the fields while it holds the entry;
/// every change of hands is a compare-and-swap on `owner`.
#[repr(C, align(128))]
pub struct InFlight {
    /// `tag << 16 | slot << 8 | state` (`IF_*`); the tag rises with every change, so a
    /// late compare-and-swap of a former owner fails.
    pub owner: AtomicU64,
    /// The message's position (its id).
    pub pos: AtomicU64,
    /// The end of its record.
    pub end: AtomicU64,
    /// When it expires, `CLOCK_MONOTONIC` nanoseconds (acquired entries).
    pub deadline_ns: AtomicU64,
    /// When it was first handed out, nanoseconds since the Unix epoch.
    pub first_unix_ns: AtomicU64,
    /// Times handed out so far.
    pub deliveries: AtomicU32,
    /// Pid of the owner (with the slot, it tells a dead owner from the slot's next holder).
    pub pid: AtomicU32,
    /// Length of `reason`.
    pub reason_len: AtomicU32,
    _pad: AtomicU32,
    /// The last reason given (nack or reject), cut at [`REASON_MAX`] bytes.
    pub reason: [AtomicU64; REASON_MAX / 8],
}

/// `Slot::claim_pos` of a slot with no claim to resolve.
pub const NO_CLAIM: u64 = u64::MAX;

/// A hash of every constant and offset above: two builds agree on it only if they agree on
/// the layout. FNV-1a over the numbers, computed at compile time.
pub const fn layout_hash() -> u64 {
    let parts: [u64; 64] = [
        LAYOUT_VERSION as u64,
        LINE as u64,
        SLOTS as u64,
        TABLE_OFFSET as u64,
        HEADER_SIZE as u64,
        std::mem::offset_of!(Header, producer) as u64,
        std::mem::offset_of!(Header, consumer) as u64,
        std::mem::offset_of!(Header, data_wait) as u64,
        std::mem::offset_of!(Header, space_wait) as u64,
        std::mem::offset_of!(Header, retired) as u64,
        std::mem::offset_of!(Identity, salt) as u64,
        std::mem::offset_of!(RetiredLine, reclaimed) as u64,
        std::mem::offset_of!(Slot, claim_pos) as u64,
        std::mem::offset_of!(Slot, claim_end) as u64,
        std::mem::offset_of!(WaitLine, epoch) as u64,
        std::mem::offset_of!(Slot, counters) as u64,
        std::mem::size_of::<Slot>() as u64,
        record::HEADER as u64,
        record::ALIGN as u64,
        record::KIND_MASK,
        record::KIND_MESSAGE,
        record::KIND_PADDING,
        record::KIND_PAD_END,
        record::KIND_RECLAIMING,
        NO_CLAIM,
        MODE_SPSC as u64,
        MODE_MPSC as u64,
        SLOT_LOCK_BASE,
        SUBSCRIPTIONS as u64,
        SUBS_OFFSET as u64,
        MEMBERS as u64,
        MEMBERS_OFFSET as u64,
        ADMIN_LOCK_BYTE,
        std::mem::offset_of!(Header, subs) as u64,
        std::mem::offset_of!(Slot, gate_min) as u64,
        std::mem::offset_of!(SubMeta, name) as u64,
        std::mem::offset_of!(MemberSlot, claim_state) as u64,
        std::mem::size_of::<SubEntry>() as u64,
        CURSOR_DETACHED,
        CURSOR_JOINING,
        CURSOR_PINNED,
        ROLE_MEMBER as u64,
        std::mem::offset_of!(WaitLine, asleep) as u64,
        ASLEEP_SETS as u64,
        std::mem::offset_of!(Header, durable) as u64,
        std::mem::offset_of!(Header, durable_wait) as u64,
        std::mem::offset_of!(Header, log_dir) as u64,
        std::mem::offset_of!(Header, sleeping) as u64,
        std::mem::offset_of!(DurableLine, journal) as u64,
        std::mem::offset_of!(DurableLine, writes) as u64,
        JOURNAL_LOCK_BYTE,
        std::mem::offset_of!(MemberSlot, entered) as u64,
        IN_FLIGHT_ENTRIES as u64,
        MAX_IN_FLIGHT as u64,
        CURSOR_LOCKED,
        LOCK_SEQ_MASK,
        CLAIM_STATE_MASK,
        ACK_AREA as u64,
        std::mem::size_of::<AckMeta>() as u64,
        std::mem::size_of::<InFlight>() as u64,
        std::mem::offset_of!(InFlight, reason) as u64,
        IF_DOOMED,
        CHECKPOINT_LOCK_BYTE,
        IF_FILLED,
    ];
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < parts.len() {
        let bytes = parts[i].to_le_bytes();
        let mut j = 0;
        while j < 8 {
            hash ^= bytes[j] as u64;
            hash = hash.wrapping_mul(0x0100_0000_01b3);
            j += 1;
        }
        i += 1;
    }
    hash
}

// The offsets of docs/LAYOUT.md. Under loom the atomics are loom's (larger) types and the
// header is never mapped, so the assertions apply to real builds only.
#[cfg(not(loom))]
const _: () = {
    use std::mem::{offset_of, size_of};
    assert!(size_of::<Identity>() == 128);
    assert!(offset_of!(Identity, magic) == 0);
    assert!(offset_of!(Identity, layout_version) == 8);
    assert!(offset_of!(Identity, state) == 12);
    assert!(offset_of!(Identity, layout_hash) == 16);
    assert!(offset_of!(Identity, mode) == 24);
    assert!(offset_of!(Identity, max_message) == 28);
    assert!(offset_of!(Identity, capacity) == 32);
    assert!(offset_of!(Identity, data_offset) == 40);
    assert!(offset_of!(Identity, total_size) == 48);
    assert!(offset_of!(Identity, creator_pid) == 56);
    assert!(offset_of!(Identity, permissions) == 60);
    assert!(offset_of!(Identity, created_unix_ns) == 64);
    assert!(offset_of!(Identity, closed) == 72);
    assert!(offset_of!(Identity, salt) == 80);
    assert!(offset_of!(Header, identity) == 0);
    assert!(offset_of!(Header, producer) == 128);
    assert!(offset_of!(Header, consumer) == 256);
    assert!(offset_of!(ConsumerLine, head) == 0);
    assert!(offset_of!(Header, data_wait) == 384);
    assert!(offset_of!(Header, space_wait) == 512);
    assert!(offset_of!(Header, retired) == 640);
    assert!(size_of::<Header>() == TABLE_OFFSET);
    assert!(offset_of!(WaitLine, waiters) == 0);
    assert!(offset_of!(WaitLine, epoch) == 8);
    assert!(offset_of!(WaitLine, asleep) == 16);
    assert!(size_of::<WaitLine>() == LINE);
    assert!(size_of::<Counters>() == 40);
    assert!(offset_of!(RetiredLine, producers) == 0);
    assert!(offset_of!(RetiredLine, consumers) == 40);
    assert!(offset_of!(RetiredLine, reclaimed) == 80);
    assert!(size_of::<RetiredLine>() == LINE);
    assert!(size_of::<Slot>() == LINE);
    assert!(offset_of!(Slot, state) == 0);
    assert!(offset_of!(Slot, role) == 4);
    assert!(offset_of!(Slot, pid) == 8);
    assert!(offset_of!(Slot, start_time) == 16);
    assert!(offset_of!(Slot, heartbeat_unix_ns) == 24);
    assert!(offset_of!(Slot, counters) == 32);
    assert!(offset_of!(Slot, claim_pos) == 72);
    assert!(offset_of!(Slot, claim_end) == 80);
    assert!(offset_of!(Slot, gate_min) == 88);
    assert!(offset_of!(Header, subs) == 768);
    assert!(offset_of!(SubsLine, active) == 0);
    assert!(offset_of!(SubsLine, sleepers) == 8);
    assert!(offset_of!(SubsLine, joins) == 16);
    assert!(size_of::<SubsLine>() == LINE);
    assert!(offset_of!(Header, durable) == 896);
    assert!(size_of::<DurableLine>() == LINE);
    assert!(offset_of!(DurableLine, flags) == 0);
    assert!(offset_of!(DurableLine, fsync) == 4);
    assert!(offset_of!(DurableLine, interval_ns) == 8);
    assert!(offset_of!(DurableLine, max_log_bytes) == 16);
    assert!(offset_of!(DurableLine, retain_bytes) == 24);
    assert!(offset_of!(DurableLine, seg_size) == 32);
    assert!(offset_of!(DurableLine, identity) == 40);
    assert!(offset_of!(DurableLine, written) == 56);
    assert!(offset_of!(DurableLine, durable) == 64);
    assert!(offset_of!(DurableLine, journal) == 72);
    assert!(offset_of!(DurableLine, ceiling) == 80);
    assert!(offset_of!(DurableLine, base) == 88);
    assert!(offset_of!(DurableLine, failed) == 96);
    assert!(offset_of!(DurableLine, restoring_until) == 100);
    assert!(offset_of!(DurableLine, syncs) == 104);
    assert!(offset_of!(DurableLine, writes) == 112);
    assert!(offset_of!(Header, durable_wait) == 1024);
    assert!(offset_of!(Header, log_dir) == 1152);
    assert!(offset_of!(Header, sleeping) == 2176);
    assert!(size_of::<SleepLines>() == 512);
    assert!(size_of::<LogDirLines>() == 8 * LINE);
    assert!(size_of::<SubEntry>() == 3 * LINE);
    assert!(offset_of!(SubEntry, cursor) == 0);
    assert!(offset_of!(SubEntry, wait) == 128);
    assert!(offset_of!(SubEntry, meta) == 256);
    assert!(offset_of!(SubCursor, cursor) == 0);
    assert!(offset_of!(SubCursor, members) == 8);
    assert!(offset_of!(SubMeta, state) == 0);
    assert!(offset_of!(SubMeta, generation) == 4);
    assert!(offset_of!(SubMeta, lag_limit) == 8);
    assert!(offset_of!(SubMeta, name_len) == 16);
    assert!(offset_of!(SubMeta, created_unix_ns) == 24);
    assert!(offset_of!(SubMeta, lapped) == 32);
    assert!(offset_of!(SubMeta, missed_bytes) == 40);
    assert!(offset_of!(SubMeta, redelivered) == 48);
    assert!(offset_of!(SubMeta, retired_messages) == 56);
    assert!(offset_of!(SubMeta, retired_bytes) == 64);
    assert!(offset_of!(SubMeta, name) == 72);
    assert!(size_of::<SubMeta>() == LINE);
    assert!(size_of::<MemberSlot>() == LINE);
    assert!(offset_of!(MemberSlot, state) == 0);
    assert!(offset_of!(MemberSlot, sub) == 4);
    assert!(offset_of!(MemberSlot, generation) == 8);
    assert!(offset_of!(MemberSlot, deliveries) == 12);
    assert!(offset_of!(MemberSlot, claim_pos) == 16);
    assert!(offset_of!(MemberSlot, claim_end) == 24);
    assert!(offset_of!(MemberSlot, claim_state) == 32);
    assert!(offset_of!(MemberSlot, entered) == 40);
    assert!(size_of::<AckMeta>() == LINE);
    assert!(offset_of!(AckMeta, mode) == 0);
    assert!(offset_of!(AckMeta, max_deliveries) == 4);
    assert!(offset_of!(AckMeta, ack_wait_ns) == 8);
    assert!(offset_of!(AckMeta, max_in_flight) == 16);
    assert!(offset_of!(AckMeta, released) == 24);
    assert!(offset_of!(AckMeta, redelivered) == 64);
    assert!(size_of::<InFlight>() == LINE);
    assert!(offset_of!(InFlight, owner) == 0);
    assert!(offset_of!(InFlight, pos) == 8);
    assert!(offset_of!(InFlight, end) == 16);
    assert!(offset_of!(InFlight, deadline_ns) == 24);
    assert!(offset_of!(InFlight, first_unix_ns) == 32);
    assert!(offset_of!(InFlight, deliveries) == 40);
    assert!(offset_of!(InFlight, pid) == 44);
    assert!(offset_of!(InFlight, reason_len) == 48);
    assert!(offset_of!(InFlight, reason) == 56);
    assert!(SUBS_OFFSET == 12288);
    assert!(MEMBERS_OFFSET == 36864);
    assert!(HEADER_SIZE == 45056);
    assert!(SUBSCRIPTIONS <= 64 && MEMBERS <= 64);
    assert!(HEADER_SIZE % 4096 == 0);
};

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn magic_reads_shmq_rng_as_docs_layout_says() {
        assert_eq!(MAGIC, 0x474e_5200_514d_4853);
        assert_eq!(&MAGIC.to_le_bytes(), b"SHMQ\0RNG");
    }

    /// The hash of this build's layout, computed once by hand-checked means: if an offset or
    /// constant changes, this fails and reminds the author to bump `LAYOUT_VERSION` (and
    /// docs/LAYOUT.md) before updating the value.
    #[test]
    fn layout_hash_changes_only_with_the_layout() {
        assert_eq!(layout_hash(), LAYOUT_V10_HASH, "the layout changed: bump LAYOUT_VERSION, then update this");
    }

    const LAYOUT_V10_HASH: u64 = 13945524706306407543;
}

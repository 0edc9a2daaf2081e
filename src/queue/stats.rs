//! What [`Queue::inspect`](super::Queue::inspect) reports ([`Snapshot`], [`CounterValues`],
//! [`Participant`], [`Role`]), and the counters each handle keeps for it ([`Local`]).

use crate::layout::{self, Counters, Slot};
use crate::segment::{Config, Segment};
use crate::sync::atomic::Ordering;

/// How often (in messages) a handle refreshes its heartbeat without waiting.
const HEARTBEAT_EVERY: u64 = 4096;
const _: () = assert!(HEARTBEAT_EVERY.is_power_of_two());

/// Counter values of a snapshot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CounterValues {
    /// Messages sent (producers) or received (consumer). A batch call
    /// ([`send_batch`](crate::Producer::send_batch),
    /// [`recv_batch`](crate::Consumer::recv_batch)) counts its messages when it ends.
    pub messages: u64,
    /// Payload bytes.
    pub bytes: u64,
    /// Calls that found the queue full.
    pub full_events: u64,
    /// `FUTEX_WAKE` calls made.
    pub wake_calls: u64,
    /// `FUTEX_WAIT` calls made.
    pub wait_calls: u64,
}

impl CounterValues {
    pub(super) fn read(c: &Counters) -> CounterValues {
        // Relaxed: statistics, a snapshot.
        CounterValues {
            messages: c.messages.load(Ordering::Relaxed),
            bytes: c.bytes.load(Ordering::Relaxed),
            full_events: c.full_events.load(Ordering::Relaxed),
            wake_calls: c.wake_calls.load(Ordering::Relaxed),
            wait_calls: c.wait_calls.load(Ordering::Relaxed),
        }
    }

    /// Saturating: the values come from shared memory, which anyone may have scribbled on.
    pub(super) fn add(&mut self, o: CounterValues) {
        self.messages = self.messages.saturating_add(o.messages);
        self.bytes = self.bytes.saturating_add(o.bytes);
        self.full_events = self.full_events.saturating_add(o.full_events);
        self.wake_calls = self.wake_calls.saturating_add(o.wake_calls);
        self.wait_calls = self.wait_calls.saturating_add(o.wait_calls);
    }
}

/// Producer or consumer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Appends messages.
    Producer,
    /// Takes messages.
    Consumer,
}

/// One registered participant, as the table records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Participant {
    /// Slot index: 0 is the consumer.
    pub slot: usize,
    /// Producer or consumer.
    pub role: Role,
    /// Pid at registration (information: pids are reused).
    pub pid: u32,
    /// Start time in clock ticks after boot.
    pub start_time: u64,
    /// Last heartbeat, nanoseconds since the Unix epoch.
    pub heartbeat_unix_ns: u64,
    /// Whether the kernel says its holder lives (its slot lock is held; a stopped process
    /// is alive). A dead participant's slot is reclaimed by the next one to register.
    pub alive: bool,
    /// Its counters since registration.
    pub counters: CounterValues,
    /// Consumers and members: whether it takes the messages it holds. Always
    /// [`Progress::Unknown`](super::Progress::Unknown) from
    /// [`Queue::inspect`](super::Queue::inspect), which looks once; a
    /// [`Watch`](super::Watch) fills it in by looking over time.
    pub progress: super::Progress,
}

impl Participant {
    /// Whether the kernel says its process ended (its slot lock was dropped). A stopped
    /// process is not dead.
    pub fn is_dead(&self) -> bool {
        !self.alive
    }
}

/// A snapshot of a queue, from [`Queue::inspect`](super::Queue::inspect). Values may change at once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// The configuration.
    pub config: Config,
    /// Producer position (SPSC: committed; MPSC: claimed).
    pub tail: u64,
    /// Consumer position.
    pub head: u64,
    /// Bytes between the positions (headers and padding included).
    pub used_bytes: u64,
    /// Messages sent and not yet received.
    pub messages: u64,
    /// Whether the queue was removed.
    pub closed: bool,
    /// Totals over every producer, past and present.
    pub sent: CounterValues,
    /// Totals over every consumer, past and present.
    pub received: CounterValues,
    /// MPSC: claims of producers that died between claiming space and committing it, which a
    /// consumer proved dead and passed (each a message that was never sent).
    pub reclaimed_claims: u64,
    /// The registered participants.
    pub participants: Vec<Participant>,
    /// The subscriptions, the default one first if it exists.
    pub subscriptions: Vec<crate::SubscriptionInfo>,
    /// When this snapshot was read, nanoseconds since the Unix epoch.
    pub taken_unix_ns: u64,
    /// A durable queue's log positions; `None` for a volatile queue.
    pub durable: Option<DurableStats>,
}

/// Where a durable queue's log stands (positions are message ids: byte positions).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DurableStats {
    /// Everything below is written to the log files.
    pub written: u64,
    /// Everything below is synced to disk.
    pub durable: u64,
    /// No id at or above it has been handed out.
    pub ceiling: u64,
    /// Where the ring started (a restored queue's messages below it are in the log only).
    pub base: u64,
    /// `fdatasync` calls made on the log.
    pub syncs: u64,
    /// Journal writes to the log.
    pub writes: u64,
    /// A sync failed: the queue is read-only.
    pub failed: bool,
}

impl DurableStats {
    fn read(seg: &Segment) -> Option<DurableStats> {
        seg.config().durable.as_ref()?;
        let d = &seg.header().durable;
        // Relaxed, all: a snapshot.
        Some(DurableStats {
            written: d.written.load(Ordering::Relaxed),
            durable: d.durable.load(Ordering::Relaxed),
            ceiling: d.ceiling.load(Ordering::Relaxed),
            base: d.base.load(Ordering::Relaxed),
            syncs: d.syncs.load(Ordering::Relaxed),
            writes: d.writes.load(Ordering::Relaxed),
            failed: d.failed.load(Ordering::Relaxed) != 0,
        })
    }
}

impl Snapshot {
    pub(super) fn read(seg: &Segment) -> Snapshot {
        let h = seg.header();
        let mut sent = CounterValues::read(&h.retired.producers);
        let mut received = CounterValues::read(&h.retired.consumers);
        let mut participants = Vec::new();
        for i in 0..layout::SLOTS {
            let s = seg.slot(i);
            // Acquire: pairs with the Release store of `state` at registration.
            if s.state.load(Ordering::Acquire) != layout::SLOT_ACTIVE {
                continue;
            }
            let counters = CounterValues::read(&s.counters);
            // Relaxed: ordered after the Acquire load of `state`.
            let member = i != 0 && s.role.load(Ordering::Relaxed) == layout::ROLE_MEMBER;
            let role = if i == 0 || member { Role::Consumer } else { Role::Producer };
            match (role, member) {
                // A member's messages are its subscription's (see `subscriptions`).
                (_, true) => {}
                (Role::Consumer, _) => received.add(counters),
                (Role::Producer, _) => sent.add(counters),
            }
            participants.push(Participant {
                slot: i,
                role,
                // Relaxed: information only.
                pid: s.pid.load(Ordering::Relaxed),
                start_time: s.start_time.load(Ordering::Relaxed),
                heartbeat_unix_ns: s.heartbeat_unix_ns.load(Ordering::Relaxed),
                alive: seg.slot_alive(i),
                counters,
                progress: super::Progress::Unknown,
            });
        }
        let (head, tail) = positions(seg);
        let subscriptions = super::subscription::infos(seg);
        let capacity = seg.config().capacity;
        let (mut used_bytes, mut messages) =
            (tail.saturating_sub(head).min(capacity), sent.messages.saturating_sub(received.messages));
        if !subscriptions.iter().any(|s| s.name == super::Subscription::DEFAULT) {
            // The default subscription was removed: its position and counters stand still.
            // What the queue holds is what its slowest subscription has not read.
            (used_bytes, messages) = subscriptions.iter().filter(|s| !s.detached).fold((0, 0), |(u, m), s| {
                (u.max(s.lag_bytes.min(capacity)), m.max(sent.messages.saturating_sub(s.received.messages)))
            });
        }
        Snapshot {
            config: seg.config().clone(),
            tail,
            head,
            used_bytes,
            messages,
            closed: seg.is_closed(),
            sent,
            received,
            // Relaxed: a snapshot.
            reclaimed_claims: h.retired.reclaimed.load(Ordering::Relaxed),
            participants,
            subscriptions,
            durable: DurableStats::read(seg),
            taken_unix_ns: crate::segment::now_unix_ns(),
        }
    }
}

/// The consumer's and the producers' positions now (a durable queue's consumer position
/// without its flags).
fn positions(seg: &Segment) -> (u64, u64) {
    let h = seg.header();
    // Relaxed: a snapshot.
    let tail = h.producer.tail.load(Ordering::Relaxed);
    let mut head = h.consumer.head.load(Ordering::Relaxed);
    if seg.config().durable.is_some() {
        // A durable queue's consumer position carries flags (spilled, pinned).
        head &= !crate::ring::cursors::FLAGS;
    }
    (head, tail)
}

/// Checks the ring's positions (shared memory: anything may be there) before a snapshot
/// reports them: both record-aligned and plausible, the consumer never ahead of the
/// producers, and (the default consumer of a volatile queue, while its subscription
/// exists: it holds the producers back) never more than the capacity behind.
/// Read in the order that makes a live queue pass: the consumer's, the producers', the
/// consumer's again (both only grow; the producers never get more than the capacity past
/// the consumer).
pub(super) fn check_positions(seg: &Segment) -> crate::Result<()> {
    let h = seg.header();
    let flags = if seg.config().durable.is_some() { crate::ring::cursors::FLAGS } else { 0 };
    // Acquire, all three: keeps them in this order.
    let head0 = h.consumer.head.load(Ordering::Acquire) & !flags;
    let tail = h.producer.tail.load(Ordering::Acquire);
    let head1 = h.consumer.head.load(Ordering::Acquire) & !flags;
    // Relaxed: a hint (removing the default subscription only ever clears it).
    let gates = flags == 0 && h.subs.active.load(Ordering::Relaxed) & 1 != 0;
    let ok = crate::ring::plausible(head0)
        && crate::ring::plausible(tail)
        && head0 <= tail
        && (!gates || tail - head1.min(tail) <= seg.config().capacity);
    if ok {
        return Ok(());
    }
    Err(crate::Error::Corrupt(format!(
        "{}: ring positions out of bounds (consumer {head0:#x}, producers {tail:#x}, capacity {})",
        crate::segment::shown(&seg.config().name),
        seg.config().capacity
    )))
}

/// A handle's own counters, mirrored into its slot (its own cache line, so each update is
/// a plain store that stays in this core's cache).
#[derive(Default)]
pub(super) struct Local {
    messages: u64,
    bytes: u64,
    pub(super) full_events: u64,
    pub(super) wake_calls: u64,
    pub(super) wait_calls: u64,
}

impl Local {
    /// Counts `messages` messages of `bytes` payload bytes, and refreshes the heartbeat
    /// whenever the count passes a multiple of [`HEARTBEAT_EVERY`].
    #[inline]
    pub(super) fn count(&mut self, slot: &Slot, messages: u64, bytes: usize) {
        let before = self.messages;
        self.messages += messages;
        self.bytes += bytes as u64;
        let c = &slot.counters;
        // Relaxed: statistics; only this handle writes its slot.
        c.messages.store(self.messages, Ordering::Relaxed);
        c.bytes.store(self.bytes, Ordering::Relaxed);
        // Whether the count passed a multiple of `HEARTBEAT_EVERY`, a power of two: for one
        // message (a constant where this is inlined), whether it is one; for more, whether
        // the bits above it changed (`self.messages / HEARTBEAT_EVERY != before /
        // HEARTBEAT_EVERY` without the divisions).
        let passed = if messages == 1 {
            self.messages % HEARTBEAT_EVERY == 0
        } else {
            (self.messages ^ before) >= HEARTBEAT_EVERY
        };
        if passed {
            heartbeat(slot);
        }
    }

    pub(super) fn store_rare(&self, slot: &Slot) {
        let c = &slot.counters;
        // Relaxed: statistics.
        c.full_events.store(self.full_events, Ordering::Relaxed);
        c.wake_calls.store(self.wake_calls, Ordering::Relaxed);
        c.wait_calls.store(self.wait_calls, Ordering::Relaxed);
    }
}

/// Stamps `slot` with the time: participants that wait or send rarely still show when they
/// were last active.
#[cold]
pub(super) fn heartbeat(slot: &Slot) {
    // Relaxed: information only.
    slot.heartbeat_unix_ns.store(crate::segment::now_unix_ns(), Ordering::Relaxed);
}

//! [`Subscription`]: named readers of a queue, created with fixed [`SubscriptionOptions`];
//! what [`Subscription::list`] and [`Queue::inspect`](super::Queue::inspect) report of them
//! ([`SubscriptionInfo`], [`MemberInfo`]).
//!
//! Every subscription sees every message sent after it was created (fan-out); the processes
//! that join one with [`Consumer::subscribe`](super::Consumer::subscribe) share its messages,
//! each message going to one of them. The default subscription, [`Subscription::DEFAULT`],
//! exists from the queue's creation and is read by [`Consumer::open`](super::Consumer::open),
//! one consumer at a time.

use std::time::Duration;

use super::gate;
use super::stats::CounterValues;
use crate::error::{Error, Result};
use crate::layout;
use crate::segment::{Access, Segment, shown};
use crate::sync::atomic::Ordering;
use crate::sync::futex::OsFutex;
use crate::sync::wait;

/// Where a new subscription starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum From {
    /// With the next message sent: a subscription sees what is sent after its creation.
    #[default]
    Now,
    /// A durable queue's oldest message still in its log ([`Reader::open`](crate::Reader::open)).
    Start,
    /// A durable queue's message with this id, or the first after it
    /// ([`Reader::open`](crate::Reader::open)).
    Id(u64),
}

/// How a subscription's members acknowledge messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Ack {
    /// Receiving is acknowledging: a message a member received (and released) is done. A
    /// member that dies holding messages it had claimed but not received has them delivered
    /// to another member.
    #[default]
    Auto,
    /// Durable queues only: every message stays in flight until its member acknowledges it
    /// ([`Consumer::ack`](super::Consumer::ack)); one nacked, held past `ack_wait`, or held
    /// by a member that died is delivered again, and after `max_deliveries` (or on
    /// [`reject`](super::Consumer::reject)) it moves to the subscription's dead-letter queue.
    /// See `docs/ACKS.md`.
    Explicit,
}

/// The options of a subscription, fixed when it is created: every member of a subscription
/// agrees on them.
///
/// ```
/// use shmq::{Ack, From, SubscriptionOptions};
/// use std::time::Duration;
/// let o = SubscriptionOptions::new().start(From::Now).lag_limit(Some(64 << 10));
/// assert_eq!(o.get_lag_limit(), Some(65536));
/// let w = SubscriptionOptions::new().ack(Ack::Explicit).ack_wait(Duration::from_secs(30))
///     .max_in_flight(1024).max_deliveries(5);
/// assert_eq!(w.get_max_deliveries(), 5);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubscriptionOptions {
    pub(super) start: From,
    pub(super) lag_limit: Option<u64>,
    pub(super) ack: Ack,
    pub(super) ack_wait: Duration,
    pub(super) max_in_flight: u32,
    pub(super) max_deliveries: u32,
}

impl Default for SubscriptionOptions {
    fn default() -> SubscriptionOptions {
        SubscriptionOptions {
            start: From::Now,
            lag_limit: None,
            ack: Ack::Auto,
            ack_wait: Duration::from_secs(30),
            max_in_flight: 256,
            max_deliveries: 5,
        }
    }
}

impl SubscriptionOptions {
    /// The defaults: start now, no lag limit (a slow subscription holds producers back),
    /// [`Ack::Auto`]; for [`Ack::Explicit`]: `ack_wait` 30 s, `max_in_flight` 256,
    /// `max_deliveries` 5.
    pub fn new() -> SubscriptionOptions {
        SubscriptionOptions::default()
    }

    /// How members acknowledge: [`Ack::Auto`] (the default) or [`Ack::Explicit`] (durable
    /// queues only; no lag limit).
    pub fn ack(mut self, ack: Ack) -> Self {
        self.ack = ack;
        self
    }

    /// [`Ack::Explicit`]: how long a member may hold a message without acknowledging it;
    /// after that it is delivered again (to any member). At least 1 ms.
    pub fn ack_wait(mut self, wait: Duration) -> Self {
        self.ack_wait = wait;
        self
    }

    /// [`Ack::Explicit`]: how many messages the members may hold unacknowledged at once
    /// (1 to 1024); a member that would hold more waits for an ack or an expiry.
    pub fn max_in_flight(mut self, n: u32) -> Self {
        self.max_in_flight = n;
        self
    }

    /// [`Ack::Explicit`]: how often a message is delivered at most; one not acknowledged
    /// after that many deliveries moves to the dead-letter queue. At least 1.
    pub fn max_deliveries(mut self, n: u32) -> Self {
        self.max_deliveries = n;
        self
    }

    /// The ack mode.
    pub fn get_ack(&self) -> Ack {
        self.ack
    }

    /// The ack wait.
    pub fn get_ack_wait(&self) -> Duration {
        self.ack_wait
    }

    /// The most messages in flight.
    pub fn get_max_in_flight(&self) -> u32 {
        self.max_in_flight
    }

    /// The most deliveries.
    pub fn get_max_deliveries(&self) -> u32 {
        self.max_deliveries
    }

    /// Where the subscription starts: only [`From::Now`] for now (a durable queue's log is
    /// read from an earlier id with [`Reader::open`](crate::Reader::open)).
    pub fn start(mut self, start: From) -> Self {
        self.start = start;
        self
    }

    /// `Some(bytes)`: the subscription never holds producers back by more than `bytes`
    /// (at most the queue's capacity; larger values count as the capacity). When a producer
    /// needs space that the subscription still holds and it is that far behind, the producer
    /// detaches it and goes on; the subscription's next receive returns
    /// [`Error::Lapped`] with the number of bytes it missed and continues with the newest
    /// messages. Messages a member has claimed (and borrowed ones) are never taken from
    /// under it. `None` (the default): producers wait for it, nothing is ever missed.
    pub fn lag_limit(mut self, bytes: Option<u64>) -> Self {
        self.lag_limit = bytes;
        self
    }

    /// The start option.
    pub fn get_start(&self) -> From {
        self.start
    }

    /// The lag limit.
    pub fn get_lag_limit(&self) -> Option<u64> {
        self.lag_limit
    }
}

/// Operations on a queue's subscriptions by name. Names follow the queue-name rule and are
/// at most [`MAX_SUBSCRIPTION_NAME`](Subscription::MAX_NAME_LEN) bytes.
#[derive(Debug)]
pub struct Subscription {
    _private: (),
}

/// A member of a subscription (a process that joined it with
/// [`Consumer::subscribe`](super::Consumer::subscribe), or the default subscription's
/// consumer), as [`Subscription::list`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberInfo {
    /// Its participant slot (0: the default subscription's consumer).
    pub slot: usize,
    /// Pid at joining (information: pids are reused).
    pub pid: u32,
    /// Whether the kernel says it lives (a stopped process is alive).
    pub alive: bool,
    /// The span of positions `[start, end)` it has claimed and not released yet, if any.
    pub claimed: Option<(u64, u64)>,
    /// Messages and bytes it received since joining, and its wake and wait calls.
    pub counters: CounterValues,
    /// Last heartbeat, nanoseconds since the Unix epoch.
    pub heartbeat_unix_ns: u64,
    /// Whether it takes the messages it holds: always [`Progress::Unknown`](super::Progress)
    /// from one look; a [`Watch`](super::Watch) fills it in by looking over time.
    pub progress: super::Progress,
}

/// A snapshot of one subscription. Values may change at once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscriptionInfo {
    /// Its name ([`Subscription::DEFAULT`] for the default subscription).
    pub name: String,
    /// Its lag limit in bytes (`None`: it holds producers back).
    pub lag_limit: Option<u64>,
    /// The position (message id) of the next message it will hand out.
    pub position: u64,
    /// Bytes between the oldest position it still holds (claimed by a member, or not yet
    /// handed out) and the producers' position: records, headers and padding.
    pub lag_bytes: u64,
    /// About how many messages that is (estimated from the queue's average record size).
    pub lag_messages: u64,
    /// Whether it is detached now (lapped, not yet rejoined by a member; or, on a durable
    /// queue, spilled: its readers read the log).
    pub detached: bool,
    /// How often it was detached for falling behind its lag limit (or, on a durable queue,
    /// spilled to the log, which misses nothing).
    pub lapped: u64,
    /// Bytes it missed over all those times.
    pub missed_bytes: u64,
    /// Messages handed out again: because the member holding them died, or (explicit acks)
    /// nacked, held past `ack_wait`.
    pub redelivered: u64,
    /// How its members acknowledge.
    pub ack: Ack,
    /// Explicit acks: messages handed out and not yet acknowledged (or waiting to be
    /// handed out again).
    pub in_flight: u64,
    /// Explicit acks: messages acknowledged, nacked, expired (held past `ack_wait`), and
    /// moved to the dead-letter queue.
    pub acked: u64,
    /// See `acked`.
    pub nacked: u64,
    /// See `acked`.
    pub expired: u64,
    /// See `acked`.
    pub dead_lettered: u64,
    /// Explicit acks: when the oldest message in flight was first handed out, nanoseconds
    /// since the Unix epoch.
    pub oldest_unacked_unix_ns: Option<u64>,
    /// Totals over its members, past and present.
    pub received: CounterValues,
    /// Its members now.
    pub members: Vec<MemberInfo>,
    /// When it was created, nanoseconds since the Unix epoch: a subscription removed and
    /// created again under the same name is another one (its counters start from zero).
    pub created_unix_ns: u64,
}

impl Subscription {
    /// The name of the default subscription, which every queue has from its creation and
    /// [`Consumer::open`](super::Consumer::open) reads.
    pub const DEFAULT: &'static str = "default";
    /// Longest subscription name, in bytes.
    pub const MAX_NAME_LEN: usize = 48;
    /// Most subscriptions a queue can have at once, the default one included.
    pub const MAX: usize = layout::SUBSCRIPTIONS;

    /// Creates subscription `name` on queue `queue`, starting with the next message sent.
    /// Creating one that exists with the same options does nothing; with other options it is
    /// `InvalidArgument`. `Busy` when the queue has [`MAX`](Self::MAX) subscriptions.
    ///
    /// ```
    /// use shmq::{Consumer, Options, Producer, Queue, Subscription, SubscriptionOptions};
    /// # let q = format!("doc-sub-create-{}", std::process::id());
    /// Queue::create(&q, Options::new())?;
    /// Subscription::create(&q, "billing", SubscriptionOptions::new())?;
    /// Subscription::create(&q, "billing", SubscriptionOptions::new())?; // the same: nothing to do
    /// let mut billing = Consumer::subscribe(&q, "billing")?;
    /// let mut tx = Producer::open(&q)?;
    /// tx.send(b"order 42")?;
    /// assert_eq!(&*billing.recv()?, b"order 42");
    /// # drop((tx, billing));
    /// Queue::remove(&q)?;
    /// # Ok::<(), shmq::Error>(())
    /// ```
    pub fn create(queue: &str, name: &str, options: SubscriptionOptions) -> Result<()> {
        validate_name(name)?;
        if options.start != From::Now {
            return Err(Error::InvalidArgument(
                "a subscription starts now; read a durable queue's log from an earlier id with Reader::open".into(),
            ));
        }
        if options.lag_limit == Some(0) {
            return Err(Error::InvalidArgument("a lag limit of 0 bytes: use None for no limit".into()));
        }
        let explicit = options.ack == Ack::Explicit;
        if explicit {
            check_ack_options(&options)?;
        }
        let seg = Segment::open(queue, Access::ReadWrite)?;
        if explicit && name == Subscription::DEFAULT {
            return Err(Error::InvalidArgument(
                "the default subscription acknowledges by receiving; create a named one for explicit acks".into(),
            ));
        }
        let _admin = seg.lock_admin(ADMIN_TIMEOUT)?;
        tidy(&seg);
        let limit = options.lag_limit.unwrap_or(0);
        if let Some(i) = find(&seg, name) {
            // Relaxed: fixed at creation, which the admin lock orders before us.
            let have = if i == 0 { 0 } else { seg.sub(i).meta.lag_limit.load(Ordering::Relaxed) };
            if have != limit {
                return Err(Error::InvalidArgument(format!(
                    "subscription {} of queue {} exists with lag limit {}, not {}",
                    shown(name),
                    shown(queue),
                    show_limit(have),
                    show_limit(limit)
                )));
            }
            let have = ack_options(&seg, i);
            let want = (options.ack, options.ack_wait, options.max_in_flight, options.max_deliveries);
            if have.0 != options.ack || (explicit && have != want) {
                return Err(Error::InvalidArgument(format!(
                    "subscription {} of queue {} exists with acks {:?}, not {:?}",
                    shown(name),
                    shown(queue),
                    have,
                    want
                )));
            }
            return Ok(());
        }
        if name == Subscription::DEFAULT {
            return Err(Error::InvalidArgument(format!(
                "the default subscription of queue {} was removed; it cannot be made again (create the queue anew)",
                shown(queue)
            )));
        }
        if explicit {
            // Its dead-letter queue first: a subscription never exists without it. Only
            // once the subscription is known to be new: a refused `create` makes nothing.
            super::dlq::ensure(seg.config(), name)?;
        }
        let Some(i) = (1..layout::SUBSCRIPTIONS).find(|&i| {
            // Relaxed: only admin-lock holders change `state`.
            seg.sub(i).meta.state.load(Ordering::Relaxed) == layout::SUB_FREE
        }) else {
            return Err(Error::Busy(format!(
                "queue {} has {} subscriptions, the most it can have",
                shown(queue),
                layout::SUBSCRIPTIONS
            )));
        };
        let e = seg.sub(i);
        if let Some(a) = seg.acks(i) {
            if explicit {
                seg.reserve_acks(i)?;
            }
            init_acks(a, &options);
        }
        // Relaxed throughout: published by the Release `fetch_or` of `active` below, and
        // the admin lock orders later admin-lock holders after us.
        e.meta.state.store(layout::SUB_CREATING, Ordering::Relaxed);
        crate::failpoint::hit("sub-creating");
        e.meta.generation.fetch_add(1, Ordering::Relaxed);
        e.meta.lag_limit.store(limit, Ordering::Relaxed);
        write_name(&e.meta, name);
        e.meta.created_unix_ns.store(crate::segment::now_unix_ns(), Ordering::Relaxed);
        for c in
            [&e.meta.lapped, &e.meta.missed_bytes, &e.meta.redelivered, &e.meta.retired_messages, &e.meta.retired_bytes]
        {
            c.store(0, Ordering::Relaxed);
        }
        // The producers' position, flagged JOINING: nobody claims from it until the join
        // below has found a start no producer is about to overwrite.
        // Acquire: pairs with the producers' Release publication of `tail`.
        let t0 = seg.header().producer.tail.load(Ordering::Acquire);
        let joining = (t0 & !gate::FLAGS) | layout::CURSOR_JOINING;
        e.cursor.cursor.store(joining, Ordering::Relaxed);
        e.meta.state.store(layout::SUB_ACTIVE, Ordering::Relaxed);
        // SYNC POINT: Release (in AcqRel) pairs with the producers' Acquire load of
        // `active`: the entry's words above are visible before they gate on it.
        seg.header().subs.active.fetch_or(1 << i, Ordering::AcqRel);
        crate::failpoint::hit("sub-joining");
        // A member that subscribed meanwhile may have finished the join already.
        let _ = gate::finish_join(&seg, i, joining);
        // A durable queue's restore makes again the subscriptions of its last checkpoint:
        // one is written now, so that this one survives a restart from here on.
        super::journal::maybe_checkpoint(&seg, true);
        Ok(())
    }

    /// The queue's subscriptions, the default one first if it exists.
    pub fn list(queue: &str) -> Result<Vec<SubscriptionInfo>> {
        let seg = Segment::open(queue, Access::ReadOnly)?;
        Ok(infos(&seg))
    }

    /// Removes subscription `name` (the default one too): producers stop waiting for it,
    /// and its members' calls return `Closed`. `NotFound` if there is none of that name.
    ///
    /// Messages its members hold borrowed at that moment are no longer protected: producers
    /// may overwrite them. Remove a subscription once its readers have stopped.
    pub fn remove(queue: &str, name: &str) -> Result<()> {
        validate_name(name)?;
        let seg = Segment::open(queue, Access::ReadWrite)?;
        let _admin = seg.lock_admin(ADMIN_TIMEOUT)?;
        tidy(&seg);
        let Some(i) = find(&seg, name) else {
            return Err(Error::NotFound(format!("subscription {} of queue {}", shown(name), shown(queue))));
        };
        free_entry(&seg, i);
        // Nor is a removed one made again by a restore.
        super::journal::maybe_checkpoint(&seg, true);
        Ok(())
    }
}

/// Checks the options of a subscription with explicit acks.
fn check_ack_options(o: &SubscriptionOptions) -> Result<()> {
    if o.lag_limit.is_some() {
        return Err(Error::InvalidArgument(
            "a subscription with explicit acks misses nothing: it has no lag limit".into(),
        ));
    }
    if o.ack_wait < Duration::from_millis(1) || o.ack_wait > Duration::from_secs(7 * 24 * 3600) {
        return Err(Error::InvalidArgument(format!("ack_wait {:?}: from 1 ms to 7 days", o.ack_wait)));
    }
    if !(1..=layout::MAX_IN_FLIGHT).contains(&o.max_in_flight) {
        return Err(Error::InvalidArgument(format!(
            "max_in_flight {}: from 1 to {}",
            o.max_in_flight,
            layout::MAX_IN_FLIGHT
        )));
    }
    if o.max_deliveries == 0 {
        return Err(Error::InvalidArgument("max_deliveries 0: at least 1".into()));
    }
    Ok(())
}

/// Writes a new subscription's ack area (the admin lock held, before the entry is active):
/// its options, zeroed statistics, every in-flight entry free.
fn init_acks(a: crate::segment::Acks<'_>, o: &SubscriptionOptions) {
    let explicit = o.ack == Ack::Explicit;
    // Relaxed throughout: published by the Release `fetch_or` of `active` in `create`; the
    // entries' former holders (members of a removed subscription) check the generation
    // before touching them, and any word they still write is one this entry's members
    // validate.
    let m = a.meta;
    m.mode.store(if explicit { layout::ACK_EXPLICIT } else { layout::ACK_AUTO }, Ordering::Relaxed);
    if !explicit {
        return;
    }
    m.max_deliveries.store(o.max_deliveries, Ordering::Relaxed);
    m.ack_wait_ns.store(o.ack_wait.as_nanos() as u64, Ordering::Relaxed);
    m.max_in_flight.store(o.max_in_flight, Ordering::Relaxed);
    for c in [&m.released, &m.acked, &m.nacked, &m.expired, &m.dead_lettered, &m.redelivered, &m.starved] {
        c.store(0, Ordering::Relaxed);
    }
    for e in a.entries {
        // Free, the tag kept rising (a former holder's late word stays stale).
        let w = e.owner.load(Ordering::Relaxed);
        e.owner.store(crate::ring::inflight::next(w, 0, layout::IF_FREE), Ordering::Relaxed);
    }
}

/// Entry `i`'s ack options as its ack area says (Auto on a volatile queue).
pub(super) fn ack_options(seg: &Segment, i: usize) -> (Ack, Duration, u32, u32) {
    let Some(a) = seg.acks(i) else { return (Ack::Auto, Duration::ZERO, 0, 0) };
    // Relaxed, all: fixed at creation, which the Acquire load of `active` (or the admin
    // lock) orders before us.
    let m = a.meta;
    if m.mode.load(Ordering::Relaxed) != layout::ACK_EXPLICIT {
        return (Ack::Auto, Duration::ZERO, 0, 0);
    }
    (
        Ack::Explicit,
        Duration::from_nanos(m.ack_wait_ns.load(Ordering::Relaxed)),
        m.max_in_flight.load(Ordering::Relaxed),
        m.max_deliveries.load(Ordering::Relaxed),
    )
}

/// How long `create` and `remove` wait for another process's create or remove.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);

fn show_limit(limit: u64) -> String {
    if limit == 0 { "none".into() } else { format!("{limit} bytes") }
}

/// Frees entry `i` (the admin lock held): producers stop gating on it, its members find it
/// gone (their next call returns `Closed`) and are woken.
fn free_entry(seg: &Segment, i: usize) {
    let h = seg.header();
    let meta = if i == 0 { &seg.sub(0).meta } else { &seg.sub(i).meta };
    // Release: a member that reads FREE (Acquire) and then our cursor below sees both.
    meta.state.store(layout::SUB_FREE, Ordering::Release);
    // SYNC POINT: AcqRel: producers that no longer see the bit no longer wait for the entry.
    h.subs.active.fetch_and(!(1u64 << i), Ordering::AcqRel);
    if i != 0 {
        // Its members' claims stop holding producers back (and a new subscription in this
        // entry starts without them). Dead members' claims go: their slots are free for
        // anyone again. Live members clear theirs when they see the subscription gone.
        // AcqRel: producers that read the empty mask no longer read those claims.
        let mask = seg.sub(i).cursor.members.swap(0, Ordering::AcqRel);
        for j in gate::bits(mask).filter(|&j| j < layout::MEMBERS) {
            if seg.try_lock_slot(j) {
                gate::clear_dead_claim(seg, i, j);
                seg.leave_subscription(j);
                seg.unlock_slot(j);
            }
        }
        // Detached for good: members' claims (CAS from a tethered word) fail and they look
        // at the state. AcqRel: as any change of a cursor word.
        let _ = seg.sub(i).cursor.cursor.fetch_or(layout::CURSOR_DETACHED, Ordering::AcqRel);
        // Relaxed: sleepers are woken below, and a new entry starts without the bit.
        h.subs.sleepers.fetch_and(!(1u64 << i), Ordering::Relaxed);
        wait::wake_unconditionally(gate::sub_words(seg, i), &OsFutex);
    } else {
        wait::wake_unconditionally(seg.data_words(), &OsFutex);
    }
    // Producers waiting for space it held may go on.
    wait::wake_unconditionally(seg.space_words(), &OsFutex);
}

/// Under the admin lock: frees entries left `CREATING` by a creator that died.
fn tidy(seg: &Segment) {
    for i in 1..layout::SUBSCRIPTIONS {
        // Relaxed: only admin-lock holders write `state`; we hold the lock.
        if seg.sub(i).meta.state.load(Ordering::Relaxed) == layout::SUB_CREATING {
            free_entry(seg, i);
        }
    }
}

/// The active entry named `name`, if any.
pub(super) fn find(seg: &Segment, name: &str) -> Option<usize> {
    // Acquire: pairs with the Release `fetch_or` of an entry's creation.
    let active = seg.header().subs.active.load(Ordering::Acquire);
    (0..layout::SUBSCRIPTIONS).find(|&i| {
        active & (1 << i) != 0
            // Relaxed: ordered after the Acquire load of `active`.
            && seg.sub(i).meta.state.load(Ordering::Relaxed) == layout::SUB_ACTIVE
            && entry_name(seg, i).as_deref() == Some(name)
    })
}

/// Entry `i`'s name, if it is a valid one.
pub(super) fn entry_name(seg: &Segment, i: usize) -> Option<String> {
    let meta = &seg.sub(i).meta;
    // Relaxed: fixed at creation; validated here, as anything read from shared memory.
    let len = meta.name_len.load(Ordering::Relaxed) as usize;
    if len == 0 || len > Subscription::MAX_NAME_LEN {
        return None;
    }
    let mut bytes = Vec::with_capacity(48);
    for w in &meta.name {
        // Relaxed: as above.
        bytes.extend_from_slice(&w.load(Ordering::Relaxed).to_le_bytes());
    }
    bytes.truncate(len);
    let name = String::from_utf8(bytes).ok()?;
    validate_name(&name).ok()?;
    Some(name)
}

fn write_name(meta: &layout::SubMeta, name: &str) {
    let mut bytes = [0u8; 48];
    bytes[..name.len()].copy_from_slice(name.as_bytes());
    for (k, w) in meta.name.iter().enumerate() {
        let mut b = [0u8; 8];
        b.copy_from_slice(&bytes[k * 8..k * 8 + 8]);
        // Relaxed: published with the entry (see `create`).
        w.store(u64::from_le_bytes(b), Ordering::Relaxed);
    }
    // Relaxed: as above.
    meta.name_len.store(name.len() as u32, Ordering::Relaxed);
}

/// What `list` and `inspect` report.
pub(super) fn infos(seg: &Segment) -> Vec<SubscriptionInfo> {
    let h = seg.header();
    // Relaxed: a snapshot.
    let tail = h.producer.tail.load(Ordering::Relaxed);
    let active = h.subs.active.load(Ordering::Relaxed);
    let avg = average_record(seg);
    let mut out = Vec::new();
    for i in gate::bits(active).filter(|&i| i < layout::SUBSCRIPTIONS) {
        let Some(name) = (if i == 0 { Some(Subscription::DEFAULT.to_owned()) } else { entry_name(seg, i) }) else {
            continue;
        };
        let meta = &seg.sub(i).meta;
        // Relaxed: a snapshot.
        let w = seg.cursor(i).load(Ordering::Relaxed);
        let position = crate::ring::cursors::position(seg, w);
        // Entry 0 is detached only on a durable queue, reading the log (spilled).
        let detached = w & layout::CURSOR_DETACHED != 0;
        // A lapped subscription misses what it was behind; a spilled one (a durable
        // queue's) still reads it.
        let spilled = detached && seg.config().durable.is_some();
        let mut oldest = if detached && !spilled { tail } else { position };
        let mut members = Vec::new();
        let mut received = CounterValues::default();
        if i == 0 {
            let s = seg.slot(0);
            // Acquire: pairs with the Release store of `state` at registration.
            if s.state.load(Ordering::Acquire) == layout::SLOT_ACTIVE {
                members.push(member_info(seg, 0, None));
            }
            received = CounterValues::read(&h.retired.consumers);
        } else {
            let mask = seg.sub(i).cursor.members.load(Ordering::Relaxed);
            for j in gate::bits(mask).filter(|&j| j < layout::MEMBERS) {
                let m = seg.member(j);
                let state = crate::ring::cursors::claim_state(m.claim_state.load(Ordering::Relaxed));
                let claimed = (state != layout::CLAIM_NONE)
                    .then(|| (m.claim_pos.load(Ordering::Relaxed), m.claim_end.load(Ordering::Relaxed)));
                if let Some((p, _)) = claimed {
                    oldest = oldest.min(p);
                }
                // A member that left (its slot given back, or another participant's now)
                // leaves the rest of its batch for the next member to take over: counted
                // in the lag above, but no member (nor a dead one).
                let s = seg.slot(j);
                // Acquire: pairs with the Release store of `state` at registration; `role`
                // is ordered after it.
                if s.state.load(Ordering::Acquire) != layout::SLOT_ACTIVE
                    || s.role.load(Ordering::Relaxed) != layout::ROLE_MEMBER
                {
                    continue;
                }
                members.push(member_info(seg, j, claimed));
            }
            received.messages = meta.retired_messages.load(Ordering::Relaxed);
            received.bytes = meta.retired_bytes.load(Ordering::Relaxed);
        }
        for m in &members {
            received.add(m.counters);
        }
        // A durable queue's subscription may be any distance behind (it reads the log); a
        // volatile one's is at most the ring.
        let lag = tail.saturating_sub(oldest);
        let lag_bytes = if seg.config().durable.is_some() { lag } else { lag.min(seg.config().capacity) };
        let (ack, ..) = ack_options(seg, i);
        let (in_flight, oldest_unacked_unix_ns) = super::acks::in_flight(seg, i);
        let stat = |f: fn(&layout::AckMeta) -> &crate::sync::atomic::AtomicU64| {
            // Relaxed: a snapshot.
            seg.acks(i).filter(|_| ack == Ack::Explicit).map_or(0, |a| f(a.meta).load(Ordering::Relaxed))
        };
        let ack_redelivered = stat(|m| &m.redelivered);
        out.push(SubscriptionInfo {
            name,
            lag_limit: (i != 0).then(|| meta.lag_limit.load(Ordering::Relaxed)).filter(|&l| l != 0),
            position,
            lag_bytes,
            lag_messages: lag_bytes.checked_div(avg).unwrap_or(0),
            detached,
            lapped: meta.lapped.load(Ordering::Relaxed),
            missed_bytes: if i == 0 { 0 } else { meta.missed_bytes.load(Ordering::Relaxed) },
            redelivered: if i == 0 { 0 } else { meta.redelivered.load(Ordering::Relaxed).max(ack_redelivered) },
            ack,
            in_flight,
            acked: stat(|m| &m.acked),
            nacked: stat(|m| &m.nacked),
            expired: stat(|m| &m.expired),
            dead_lettered: stat(|m| &m.dead_lettered),
            oldest_unacked_unix_ns,
            received,
            members,
            // Relaxed: fixed at creation; information only.
            created_unix_ns: meta.created_unix_ns.load(Ordering::Relaxed),
        });
    }
    out
}

/// The average size of a record so far (payload, header and alignment), for estimates.
fn average_record(seg: &Segment) -> u64 {
    let mut sent = CounterValues::read(&seg.header().retired.producers);
    for i in 1..layout::SLOTS {
        let s = seg.slot(i);
        // Relaxed: a snapshot.
        if s.state.load(Ordering::Relaxed) == layout::SLOT_ACTIVE
            && s.role.load(Ordering::Relaxed) == layout::ROLE_PRODUCER
        {
            sent.add(CounterValues::read(&s.counters));
        }
    }
    if sent.messages == 0 {
        return 0;
    }
    (sent.bytes / sent.messages + layout::record::HEADER as u64).next_multiple_of(layout::record::ALIGN as u64)
}

fn member_info(seg: &Segment, j: usize, claimed: Option<(u64, u64)>) -> MemberInfo {
    let s = seg.slot(j);
    // Relaxed: information only.
    MemberInfo {
        slot: j,
        pid: s.pid.load(Ordering::Relaxed),
        alive: seg.slot_alive(j),
        claimed,
        counters: CounterValues::read(&s.counters),
        heartbeat_unix_ns: s.heartbeat_unix_ns.load(Ordering::Relaxed),
        progress: super::Progress::Unknown,
    }
}

/// Checks a subscription name: the queue-name rule, at most
/// [`Subscription::MAX_NAME_LEN`] bytes.
pub(crate) fn validate_name(name: &str) -> Result<()> {
    crate::segment::validate_name(name)?;
    if name.len() > Subscription::MAX_NAME_LEN {
        return Err(Error::InvalidName(format!(
            "subscription name {} is longer than {} bytes",
            shown(name),
            Subscription::MAX_NAME_LEN
        )));
    }
    Ok(())
}

/// Writes the default subscription into a new header (entry 0: active, named
/// [`Subscription::DEFAULT`], no lag limit; its cursor is the consumer position). Called by
/// the creator before the header is marked ready (which publishes it).
pub(crate) fn init_default_subscription(h: &layout::Header, meta0: &layout::SubMeta) {
    // Relaxed throughout: published by the Release store of the header's `state`.
    meta0.generation.store(1, Ordering::Relaxed);
    write_name(meta0, Subscription::DEFAULT);
    meta0.created_unix_ns.store(crate::segment::now_unix_ns(), Ordering::Relaxed);
    meta0.state.store(layout::SUB_ACTIVE, Ordering::Relaxed);
    h.subs.active.store(1, Ordering::Relaxed);
}

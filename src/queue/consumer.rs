//! [`Consumer`]: receives, peeks and batches, and the borrowed [`Message`].

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::attach::{Handle, Until, corrupt, until};
use super::member::{self, Member};
use super::stats::{Role, Snapshot};
use super::subscription::{Subscription, find};
use crate::error::{Error, Result};
use crate::layout;
use crate::ring::consumer::{self, Look};
use crate::ring::reclaim::{Outcome, reclaim};
use crate::segment::{Access, Config, Mode, Segment, shown};
use crate::sync::atomic::Ordering;
use crate::sync::futex::OsFutex;
use crate::sync::wait::{self, Wait};

/// Takes messages from a queue, in order. One per queue.
///
/// Dropping it deregisters it.
///
/// It is `Send` but not `Sync`: move it to another thread, but use it from one thread at
/// a time (wrap it in a `Mutex` to share it). A child process after `fork()` opens its own.
/// To wake a call blocked in it from another thread or a signal handler, use an
/// [`Interrupter`](crate::Interrupter) from [`interrupter`](Self::interrupter).
///
/// ```compile_fail,E0277
/// fn shared_between_threads<T: Sync>() {}
/// shared_between_threads::<shmq::Consumer>();
/// ```
///
/// ```
/// fn moved_between_threads<T: Send>() {}
/// moved_between_threads::<shmq::Consumer>();
/// ```
pub struct Consumer {
    h: Handle,
    ring: consumer::Consumer,
    /// MPSC: where and since when the consumer has found a claim it cannot pass.
    stuck: Option<(u64, Instant)>,
    /// A member of a named subscription (`None`: the default subscription's consumer).
    member: Option<Member>,
    /// The default consumer of a durable queue: it reads in the ring only with its cursor
    /// pinned, and reads the log when it was detached (see `spill.rs`).
    spill: bool,
    /// Its cursor is pinned now (`CURSOR_PINNED`): producers wait for it.
    pinned: bool,
    /// The default consumer of a durable queue while it was detached (spilled): it reads
    /// the log files.
    backlog: Option<Box<super::backlog::Backlog>>,
    /// The default consumer of a durable queue: it journals when it would otherwise wait.
    journal: Option<super::journal::Journal>,
    /// Messages received with [`recv_held_timeout`](Self::recv_held_timeout) and not yet
    /// released: the id (position) of each, in order. The ring publishes no position past
    /// the first.
    held: VecDeque<u64>,
    /// A member of a subscription with explicit acks: its in-flight state (see `acks.rs`).
    acks: Option<Box<acks::AckState>>,
    /// The ring record the last peek returned (a volatile queue's default consumer only),
    /// for `advance` to take without reading and checking its header again. Used only
    /// while `head` still stands at it: positions only grow, so that is the same record,
    /// and unreleased, producers have not reused its space.
    peeked: Option<consumer::Record>,
}

/// MPSC: a waiting consumer looks this often whether it is stuck behind a claim (a claim
/// whose producer died is never committed, and no commit then wakes the consumer for it).
const STUCK_CHECK: Duration = Duration::from_millis(50);
/// MPSC: how long the consumer must be stuck at one position before it asks the kernel
/// whether the claimant lives (a live producer normally commits within microseconds; asking
/// costs a system call per claimant).
const STUCK_AFTER: Duration = Duration::from_millis(20);
/// How many times a spinning receive looks at the head in line before its general wait
/// ([`Consumer::look_or_spin`]): 1-4 µs of `pause` (25 ns each on the 2-vCPU EPYC the
/// figures come from; longer on most Intel cores), so that an interruption, a removal or a
/// deadline is seen at most that much later.
const SPIN_IN_LINE: u32 = 64;

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer").field("queue", &self.h.shared.seg.config().name).field("wait", &self.h.wait).finish()
    }
}

impl Consumer {
    /// Attaches to queue `name` as its consumer, with the default wait policy. `Busy` while
    /// another live process (stopped ones included) is the consumer.
    pub fn open(name: &str) -> Result<Consumer> {
        Consumer::open_with(name, Wait::default())
    }

    /// Attaches with the given wait policy.
    pub fn open_with(name: &str, wait: Wait) -> Result<Consumer> {
        let (h, ring) = Handle::open(name, Role::Consumer, wait, |seg, _slot| Self::attach(seg))?;
        let journal = super::journal::Journal::attach(&h.shared.seg)?;
        let spill = journal.is_some();
        let mut c = Consumer {
            h,
            ring,
            stuck: None,
            member: None,
            spill,
            pinned: false,
            backlog: None,
            journal,
            held: VecDeque::new(),
            acks: None,
            peeked: None,
        };
        if spill {
            c.spill_attach()?;
        }
        Ok(c)
    }

    /// Joins subscription `subscription` of queue `name` as one of its members, with the
    /// default wait policy. Members share the subscription's messages: each message goes to
    /// one member (they claim small batches in turn). A member that dies holding messages it
    /// had not received yet has them handed to another member (they are delivered again,
    /// with a higher [`Message::delivery_count`]). `NotFound` if the subscription does not
    /// exist; `Busy` if the queue's member table is full.
    pub fn subscribe(name: &str, subscription: &str) -> Result<Consumer> {
        Consumer::subscribe_with(name, subscription, Wait::default())
    }

    /// Joins with the given wait policy.
    pub fn subscribe_with(name: &str, subscription: &str, wait: Wait) -> Result<Consumer> {
        super::subscription::validate_name(subscription)?;
        if subscription == Subscription::DEFAULT {
            return Err(Error::InvalidArgument(
                "the default subscription has one consumer: open it with Consumer::open".into(),
            ));
        }
        let seg = Segment::open(name, Access::ReadWrite)?;
        crate::sync::membarrier::register();
        let not_found = || Error::NotFound(format!("subscription {} of queue {}", shown(subscription), shown(name)));
        let sub = find(&seg, subscription).ok_or_else(not_found)?;
        // Relaxed: ordered after `find`'s Acquire load of `active`.
        let generation = seg.sub(sub).meta.generation.load(Ordering::Relaxed);
        let first = match seg.config().mode {
            Mode::Spsc => 2, // slot 1 is the SPSC producer's
            Mode::Mpsc => 1,
        };
        let slot = seg.register_if(first..layout::SLOTS, layout::ROLE_MEMBER, |m| {
            // Relaxed: the slot's lock orders us after its previous holder.
            m.sub.load(Ordering::Relaxed) as usize == sub && m.generation.load(Ordering::Relaxed) == generation
        })?;
        let geo = seg.config().geometry();
        let mut ring = consumer::Consumer::new(geo, 0).map_err(|e| corrupt(&seg, e))?;
        ring.set_prefix(seg.config().prefix());
        let mut backlog = None;
        let member = match member::join(&seg, slot, sub, generation, &mut ring, &mut backlog) {
            Ok(m) => m,
            Err(e) => {
                seg.deregister(slot);
                return Err(e);
            }
        };
        let acks = acks::state_for(&seg, sub, slot);
        let h = Handle::new(seg, slot, Role::Consumer, wait, Some(sub));
        Ok(Consumer {
            h,
            ring,
            stuck: None,
            member: Some(member),
            spill: false,
            pinned: false,
            backlog,
            journal: None,
            held: VecDeque::new(),
            acks,
            peeked: None,
        })
    }

    /// The name of the subscription this consumer reads ([`Subscription::DEFAULT`] for
    /// [`Consumer::open`]).
    pub fn subscription(&self) -> String {
        match &self.member {
            None => Subscription::DEFAULT.to_owned(),
            Some(m) => super::subscription::entry_name(&self.h.shared.seg, m.sub).unwrap_or_default(),
        }
    }

    /// Resumes at the published `head`: messages a predecessor took but had not published
    /// yet are delivered again (nothing in the ring needs repair: consumers write nothing
    /// into it).
    fn attach(seg: &Segment) -> Result<consumer::Consumer> {
        if !default_subscribed(seg) {
            return Err(Error::NotFound(format!(
                "the default subscription of queue {} (it was removed)",
                shown(&seg.config().name)
            )));
        }
        // Relaxed: we are the only writer of `head` (but for producers setting a durable
        // queue's flags, which `spill_attach` reads again); its last writer handed us the slot.
        let mut head = seg.header().consumer.head.load(Ordering::Relaxed);
        if seg.config().durable.is_some() {
            head &= !super::gate::FLAGS;
        }
        let mut ring = consumer::Consumer::new(seg.config().geometry(), head).map_err(|e| corrupt(seg, e))?;
        ring.set_prefix(seg.config().prefix());
        ring.set_limit(super::journal::visible(seg));
        Ok(ring)
    }

    /// The queue's configuration.
    pub fn config(&self) -> &Config {
        self.h.shared.seg.config()
    }

    /// Changes how this handle waits.
    pub fn set_wait(&mut self, wait: Wait) {
        self.h.wait = wait;
    }

    /// The current wait policy.
    pub fn wait(&self) -> Wait {
        self.h.wait
    }

    /// A handle on this consumer's blocking calls: its
    /// [`interrupt`](crate::Interrupter::interrupt) makes a receive or peek waiting for a message (now, or the next that has
    /// to wait) return [`Error::Interrupted`]. Any number may be made; each is `Send` and
    /// `Sync` and safe to use from a signal handler.
    pub fn interrupter(&self) -> crate::Interrupter {
        self.h.interrupter()
    }

    /// Receives the next message, waiting while the queue is empty. `Err(Closed)` once the
    /// queue was removed and everything in it received.
    #[inline]
    pub fn recv(&mut self) -> Result<Message<'_>> {
        self.recv_until(Until::Deadline(None))
    }

    /// [`recv`](Self::recv) and [`recv_timeout`](Self::recv_timeout): a receive that waits
    /// by `until`, which matters only once it waits.
    #[inline(always)]
    fn recv_until(&mut self, until: Until) -> Result<Message<'_>> {
        if self.acks.is_some() {
            return self.acks_recv(until).map(|m| m.expect("waiting recv returns a message"));
        }
        self.h.shared.seg.check_same_process()?;
        // The common case first, its record kept in registers: a message is there (now, or
        // after a short spin in line), taken without reading the clock.
        let nothing = match self.look_or_spin() {
            Look::Message(rec) => return Ok(Message::from_ring(self, rec)),
            Look::Nothing => true,
            Look::Other => false,
        };
        let rec = self.next_slow(until, nothing)?;
        Ok(Message::new(self, rec.expect("waiting recv returns a record")))
    }

    /// The next message if there is one now: `Ok(None)` when empty.
    ///
    /// ```
    /// # use shmq::{Options, Consumer, Queue};
    /// # let name = format!("doc-try-recv-{}", std::process::id());
    /// # Queue::create(&name, Options::new())?;
    /// let mut rx = Consumer::open(&name)?;
    /// assert!(rx.try_recv()?.is_none());
    /// # drop(rx); Queue::remove(&name)?;
    /// # Ok::<(), shmq::Error>(())
    /// ```
    #[inline]
    pub fn try_recv(&mut self) -> Result<Option<Message<'_>>> {
        if self.acks.is_some() {
            return self.acks_recv(Until::Now);
        }
        self.h.shared.seg.check_same_process()?;
        // As in `recv`.
        let nothing = match self.ring.look(&self.h.region) {
            Look::Message(rec) => return Ok(Some(Message::from_ring(self, rec))),
            Look::Nothing => true,
            Look::Other => false,
        };
        Ok(self.next_slow(Until::Now, nothing)?.map(|rec| Message::new(self, rec)))
    }

    /// Receives the next message, waiting at most `timeout`: `Err(Timeout)` when it expires.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Message<'_>> {
        self.recv_until(until(timeout))
    }

    /// The next message without taking it: the same message again on the next call, until
    /// [`advance`](Self::advance). `Ok(None)` when empty now.
    pub fn try_peek(&mut self) -> Result<Option<&[u8]>> {
        self.not_explicit("try_peek")?;
        match self.next(Until::Now)? {
            Some(rec) => Ok(Some(self.peeked(rec))),
            None => Ok(None),
        }
    }

    /// Like [`try_peek`](Self::try_peek), but waits by the handle's policy: forever for
    /// `None`, at most the duration otherwise (`Err(Timeout)`).
    #[inline]
    pub fn peek(&mut self, timeout: Option<Duration>) -> Result<&[u8]> {
        // The common case first, as in `recv`: a message in the ring now (or after the short
        // spin in line), whatever the timeout, which matters only once the call waits. A C
        // `shmq_peek` or `shmq_recv` that may wait comes here on every message.
        if self.acks.is_none() {
            self.h.shared.seg.check_same_process()?;
            let nothing = match self.look_or_spin() {
                Look::Message(rec) => {
                    // `look` reads the ring only: the record is there, not in a log file.
                    self.peeked = (self.member.is_none() && !self.spill).then_some(rec);
                    return Ok(self.ring_payload(rec));
                }
                Look::Nothing => true,
                Look::Other => false,
            };
            let until = timeout.map_or(Until::Deadline(None), until);
            let rec = self.next_slow(until, nothing)?.expect("waiting peek returns a record");
            return Ok(self.peeked(rec));
        }
        self.peek_general(timeout)
    }

    /// [`peek`](Self::peek) when the common case did not apply.
    #[inline(never)]
    fn peek_general(&mut self, timeout: Option<Duration>) -> Result<&[u8]> {
        self.not_explicit("peek")?;
        let until = timeout.map_or(Until::Deadline(None), until);
        let rec = self.next(until)?.expect("waiting peek returns a record");
        Ok(self.peeked(rec))
    }

    /// The payload of `rec`, which a peek found; remembered for `advance` (see `peeked`).
    #[inline]
    fn peeked(&mut self, rec: consumer::Record) -> &[u8] {
        self.peeked = (self.member.is_none() && !self.spill).then_some(rec);
        self.payload(rec)
    }

    /// Takes (releases) the message at the head, as last returned by a peek. Returns
    /// `false` if there is none.
    #[inline]
    pub fn advance(&mut self) -> Result<bool> {
        // The common case first: the record a peek just found in the ring is still at the
        // head. (`peeked` is only ever set for a ring record of a plain consumer.)
        if let Some(rec) = self.peeked
            && rec.pos == self.ring.head()
            && !self.spill
            && self.acks.is_none()
        {
            self.h.shared.seg.check_same_process()?;
            self.peeked = None;
            self.release(rec);
            // A message record is at least a header long: `head` moved.
            self.publish_moved();
            return Ok(true);
        }
        self.advance_general()
    }

    /// [`advance`](Self::advance) when the common case did not apply.
    #[inline(never)]
    fn advance_general(&mut self) -> Result<bool> {
        self.not_explicit("advance")?;
        self.h.shared.seg.check_same_process()?;
        if self.spill {
            return self.spill_advance();
        }
        let peeked = self.peeked.take().filter(|r| r.pos == self.ring.head());
        match peeked.map_or_else(|| self.peek_ring(), |r| Ok(Some(r)))? {
            Some(rec) => {
                self.release(rec);
                self.publish();
                Ok(true)
            }
            None => Ok(false),
        }
    }

    #[inline]
    fn peek_ring(&mut self) -> Result<Option<consumer::Record>> {
        match self.ring.peek(&self.h.region) {
            Ok(r) => Ok(r),
            Err(e) => Err(corrupt(&self.h.shared.seg, e)),
        }
    }

    /// [`peek_ring`](Self::peek_ring) for the wait loops, which lend the segment only.
    fn peek_ring_in(ring: &mut consumer::Consumer, seg: &Segment) -> Result<Option<consumer::Record>> {
        ring.peek(&seg.region()).map_err(|e| corrupt(seg, e))
    }

    /// Peeks; when there is nothing, hands back padding skipped on the way (producers may be
    /// waiting for that space: a producer that padded to the end of the region and then
    /// found the ring full is one) and, on an MPSC queue, passes a dead producer's claim.
    #[inline]
    fn peek_or_unstick(&mut self) -> Result<Option<consumer::Record>> {
        if let Some(rec) = self.peek_ring()? {
            return Ok(Some(rec));
        }
        self.nothing_at_head()
    }

    /// [`peek_or_unstick`](Self::peek_or_unstick) when the peek found nothing.
    #[inline]
    fn nothing_at_head(&mut self) -> Result<Option<consumer::Record>> {
        self.publish();
        if self.unstick()? {
            return self.peek_ring();
        }
        Ok(None)
    }

    /// MPSC: whether the consumer is stuck behind a claim (nothing readable at `head`, yet
    /// `tail` is past it) whose producer is proven dead, in which case the claim becomes
    /// padding and this returns `true`. A live claimant, stopped ones included, is waited
    /// for; the kernel is asked only after [`STUCK_AFTER`] at one position.
    #[inline]
    fn unstick(&mut self) -> Result<bool> {
        if self.h.shared.seg.config().mode != Mode::Mpsc {
            return Ok(false);
        }
        self.unstick_mpsc()
    }

    /// [`unstick`](Self::unstick) on an MPSC queue.
    #[inline(never)]
    fn unstick_mpsc(&mut self) -> Result<bool> {
        self.unstick_at(self.ring.head())
    }

    /// [`unstick_mpsc`](Self::unstick_mpsc) for a reader stuck at `head`.
    fn unstick_at(&mut self, head: u64) -> Result<bool> {
        let seg = &self.h.shared.seg;
        // SYNC POINT: Acquire pairs with the Release of the claim's CAS on `tail`: the claim
        // records stored before it are visible to `seg.claims()` below.
        let tail = seg.header().producer.tail.load(Ordering::Acquire);
        if tail <= head {
            self.stuck = None;
            return Ok(false);
        }
        let now = Instant::now();
        match self.stuck {
            Some((pos, since)) if pos == head => {
                if now.duration_since(since) < STUCK_AFTER {
                    return Ok(false);
                }
            }
            _ => {
                self.stuck = Some((head, now));
                return Ok(false);
            }
        }
        let claims = seg.claims();
        let outcome =
            reclaim(&seg.config().geometry(), &seg.region(), head, tail, &claims, |slot| seg.slot_alive(slot))
                .map_err(|e| corrupt(seg, e))?;
        match outcome {
            Outcome::Reclaimed { dead, .. } => {
                for c in claims.iter().filter(|c| dead & (1 << c.slot) != 0) {
                    seg.clear_claim(c.slot, c.pos);
                }
                // Relaxed: a statistic.
                seg.header().retired.reclaimed.fetch_add(1, Ordering::Relaxed);
                self.stuck = None;
                Ok(true)
            }
            Outcome::NotStuck => {
                self.stuck = None;
                Ok(true)
            }
            Outcome::Wait(_) => {
                // Ask again after another STUCK_AFTER, not on every poll.
                self.stuck = Some((head, now));
                Ok(false)
            }
        }
    }

    /// The next record; `None` only for `Until::Now` on an empty queue.
    #[inline]
    fn next(&mut self, until: Until) -> Result<Option<consumer::Record>> {
        self.h.shared.seg.check_same_process()?;
        let look = match until {
            Until::Now => self.ring.look(&self.h.region),
            _ => self.look_or_spin(),
        };
        let nothing = match look {
            Look::Message(rec) => return Ok(Some(rec)),
            Look::Nothing => true,
            Look::Other => false,
        };
        self.next_slow(until, nothing)
    }

    /// The head, for a receive that may wait (forever or until a deadline): if nothing is
    /// there and the handle waits by spinning ([`Wait::Spin`], or [`Wait::Adaptive`], which
    /// spins first), looks again up to [`SPIN_IN_LINE`] times before the general wait. A
    /// message that comes within that spin (a reply in a request/response exchange, a
    /// producer a little ahead) is taken by the same few instructions as one found at once. The general wait
    /// (`next_slow`), which also watches for interruptions, a closed queue, padding and
    /// dead claimants, took 30-40 ns longer from the stamp's arrival to the return: in
    /// `shmq bench --transport shmq,spin-floor --wait spin --size 64`, one-way p50 116-130
    /// ns (1.20-1.51 of the floor) without this spin, 81-90 ns (0.95-1.13) with it. A
    /// receive with a timeout spins in line too (it did not until December 2026, and so
    /// took the general wait for every reply). Members and readers of a log read spans and
    /// files, not the bare head: they go straight on.
    #[inline(always)]
    fn look_or_spin(&self) -> Look {
        let look = self.ring.look(&self.h.region);
        if !matches!(look, Look::Nothing)
            || self.h.wait == Wait::Block
            || self.member.is_some()
            || self.spill
            || self.ring.head() >= self.ring.limit()
        {
            return look;
        }
        for _ in 0..SPIN_IN_LINE {
            std::hint::spin_loop();
            match self.ring.look(&self.h.region) {
                Look::Nothing => {}
                other => return other,
            }
        }
        Look::Nothing
    }

    /// [`next`](Self::next) when no valid message is at the head now (`nothing`: nothing
    /// at all was stamped there, so there is nothing to peek at): peeks at whatever is
    /// there (skipping padding, reporting a corrupt header), hands back padding passed,
    /// passes a dead claim (MPSC), then waits by `until`.
    #[inline(never)]
    fn next_slow(&mut self, until: Until, nothing: bool) -> Result<Option<consumer::Record>> {
        if self.member.is_some() {
            return self.member_next(until);
        }
        if self.spill {
            return self.spill_next(until);
        }
        let found = if nothing { self.nothing_at_head()? } else { self.peek_or_unstick()? };
        if let Some(rec) = found {
            return Ok(Some(rec));
        }
        let closed = |ring: &mut consumer::Consumer, seg: &Segment| -> Result<Option<consumer::Record>> {
            // Drain what was sent before the removal, then report it.
            match Self::peek_ring_in(ring, seg)? {
                Some(r) => Ok(Some(r)),
                None => Err(Error::Closed),
            }
        };
        let deadline = match until.deadline() {
            None if self.h.is_closed() => return closed(&mut self.ring, &self.h.shared.seg),
            None => return Ok(None),
            Some(d) => d,
        };
        let mpsc = self.h.shared.seg.config().mode == Mode::Mpsc;
        loop {
            // MPSC: wait in slices, to look whether a dead claim blocks the head.
            let slice = mpsc.then(|| Instant::now() + if self.stuck.is_some() { STUCK_AFTER } else { STUCK_CHECK });
            let until = match (deadline, slice) {
                (Some(d), Some(s)) => Some(d.min(s)),
                (d, s) => d.or(s),
            };
            let (ring, mut woke) = (&mut self.ring, 0u64);
            let r = self.h.wait_for(until, |seg| match Self::peek_ring_in(ring, seg) {
                Ok(Some(r)) => Some(Ok(Some(r))),
                Ok(None) if seg.is_closed() => Some(closed(ring, seg)),
                Ok(None) if !default_subscribed(seg) => Some(Err(Error::Closed)),
                Ok(None) => {
                    if ring.has_unpublished() {
                        // Padding passed while waiting: hand it back at once, or a producer
                        // waiting for that space would wait for us while we wait for it.
                        ring.publish(&seg.header().consumer.head);
                        woke += u64::from(wait::wake(seg.space_words(), &OsFutex));
                    }
                    None
                }
                Err(e) => Some(Err(e)),
            });
            if woke > 0 {
                self.h.local.wake_calls += woke;
                self.h.store_rare();
            }
            match r {
                Err(Error::Timeout) if deadline.is_none_or(|d| Instant::now() < d) => {
                    if let Some(rec) = self.peek_or_unstick()? {
                        return Ok(Some(rec));
                    }
                }
                r => return r,
            }
        }
    }

    /// Stores `head` if it moved, and wakes producers waiting for space.
    #[inline]
    fn publish(&mut self) {
        if self.ring.has_unpublished() || self.pinned {
            self.publish_moved();
        }
    }

    /// Stores `head`, which moved, and wakes producers waiting for space.
    #[inline]
    fn publish_moved(&mut self) {
        if self.member.is_some() {
            return self.member_publish();
        }
        if self.spill {
            return self.spill_publish();
        }
        self.ring.publish(&self.h.header().consumer.head);
        if wait::wake(self.h.space_words(), &OsFutex) {
            self.woke();
        }
    }

    /// Counts a wake call.
    #[cold]
    fn woke(&mut self) {
        self.h.local.wake_calls += 1;
        self.h.store_rare();
    }

    /// Releases one message and counts it.
    #[inline]
    fn release(&mut self, rec: consumer::Record) {
        self.ring.release(rec);
        self.h.count(1, rec.len as usize);
    }

    /// Takes up to `max` messages that are in the queue now, calling `f` on each, and
    /// publishes the consumer position once. Returns how many; `Ok(0)` when empty.
    pub fn try_recv_batch(&mut self, max: usize, f: impl FnMut(&[u8])) -> Result<usize> {
        self.recv_batch_until(max, Until::Now, f)
    }

    /// Like [`try_recv_batch`](Self::try_recv_batch), but waits (by the handle's policy)
    /// for at least one message.
    pub fn recv_batch(&mut self, max: usize, f: impl FnMut(&[u8])) -> Result<usize> {
        self.recv_batch_until(max, Until::Deadline(None), f)
    }

    /// Like [`recv_batch`](Self::recv_batch), waiting at most `timeout` for the first.
    pub fn recv_batch_timeout(&mut self, max: usize, timeout: Duration, f: impl FnMut(&[u8])) -> Result<usize> {
        self.recv_batch_until(max, until(timeout), f)
    }

    fn recv_batch_until(&mut self, max: usize, until: Until, mut f: impl FnMut(&[u8])) -> Result<usize> {
        self.not_explicit("recv_batch")?;
        self.h.shared.seg.check_same_process()?;
        if max == 0 {
            return Ok(0);
        }
        let Some(mut rec) = self.next(until)? else {
            return Ok(0);
        };
        if self.backlog.is_some() {
            return self.log_batch(max, rec, &mut f);
        }
        // Counts and publishes when the batch ends, however it ends (`f` may panic), and
        // on the way every quarter of the ring: a batch may span the whole ring (1024
        // messages of 1 KiB fill a 1 MiB one), and producers must not wait for its end to
        // reuse what it read. (With one publication per batch, `shmq bench --fanout`'s
        // default consumer delivered half a subscription member's rate at 1 KiB.) The look
        // costs about 5 instructions per message (`examples/icount.rs`: 76 instead of 71).
        let every = self.h.shared.seg.config().capacity / 4;
        let mut publish_at = self.ring.head().saturating_add(every);
        let mut batch = Batch { consumer: self, messages: 0, bytes: 0 };
        f(batch.consumer.ring_payload(rec));
        loop {
            batch.consumer.ring.release(rec);
            batch.messages += 1;
            batch.bytes += rec.len as usize;
            if batch.messages == max as u64 {
                break;
            }
            let c = &mut *batch.consumer;
            if c.ring.head() >= publish_at {
                c.publish();
                // From the head: a member's publication moves its claim, not `published`.
                publish_at = c.ring.head().saturating_add(every);
            }
            rec = match c.ring.peek_message(&c.h.region) {
                Some(r) => r,
                None => match c.ring.peek(&c.h.region) {
                    Ok(Some(r)) => r,
                    Ok(None) => break,
                    Err(e) => {
                        let e = corrupt(&batch.consumer.h.shared.seg, e);
                        drop(batch);
                        return Err(e);
                    }
                },
            };
            f(batch.consumer.ring_payload(rec));
        }
        Ok(batch.messages as usize)
    }

    /// [`recv_batch_until`](Self::recv_batch_until) of a durable queue's consumer reading
    /// the log, from its first record `rec`.
    #[cold]
    fn log_batch(&mut self, max: usize, mut rec: consumer::Record, f: &mut impl FnMut(&[u8])) -> Result<usize> {
        let mut batch = Batch { consumer: self, messages: 0, bytes: 0 };
        loop {
            f(batch.consumer.log_payload(rec));
            batch.consumer.ring.release(rec);
            batch.messages += 1;
            batch.bytes += rec.len as usize;
            if batch.messages == max as u64 {
                break;
            }
            rec = match batch.consumer.log_frame() {
                Ok(Some(r)) => r,
                Ok(None) => break,
                Err(e) => {
                    drop(batch);
                    return Err(e);
                }
            };
        }
        Ok(batch.messages as usize)
    }

    #[inline]
    fn payload(&self, rec: consumer::Record) -> &[u8] {
        if self.is_log_record(rec) {
            return self.log_payload(rec);
        }
        self.ring_payload(rec)
    }

    /// [`payload`](Self::payload) of a record known to be in the ring.
    #[inline]
    fn ring_payload(&self, rec: consumer::Record) -> &[u8] {
        let len = rec.len as usize;
        let p = self.h.region.ptr(rec.payload, len);
        // SAFETY: in bounds (checked by `ptr`); a committed record belongs to the consumer
        // until it releases it, and the mapping lives as long as `self`.
        unsafe { std::slice::from_raw_parts(p, len) }
    }

    /// Whether `rec` was read from the log: a durable queue's consumer reading the log
    /// reads nothing in the ring.
    #[inline]
    fn is_log_record(&self, _rec: consumer::Record) -> bool {
        self.backlog.is_some()
    }

    /// A member's next record in its span: in the log if the span is there.
    fn peek_member(&mut self) -> Result<Option<consumer::Record>> {
        if self.backlog.is_some() {
            return self.log_frame();
        }
        self.peek_ring()
    }

    /// The record after one just released, for a batch: the next in the log while reading
    /// it, else the next in the ring (padding passed).
    fn peek_more(&mut self) -> Result<Option<consumer::Record>> {
        if self.backlog.is_some() {
            return self.log_frame();
        }
        self.peek_ring()
    }

    /// The payload of a record read from the log.
    #[cold]
    fn log_payload(&self, rec: consumer::Record) -> &[u8] {
        let b = self.backlog.as_ref().expect("a record from the log").bytes();
        &b[rec.payload..rec.payload + rec.len as usize]
    }

    /// Messages waiting (a snapshot from the counters: may change at once).
    pub fn len(&self) -> usize {
        Snapshot::read(&self.h.shared.seg).messages as usize
    }

    /// Whether no message waits at the head now (a snapshot: may change at once).
    pub fn is_empty(&self) -> bool {
        if self.spill {
            return self.spill_is_empty();
        }
        if !self.ring.is_empty(&self.h.region) {
            return false;
        }
        let Some(m) = &self.member else { return true };
        // A member: nothing left in its span; is anything at the subscription's cursor?
        let seg = &self.h.shared.seg;
        // A claim in the middle of being taken is finished first.
        let Ok(w) = crate::ring::cursors::settled(seg, m.sub) else { return false };
        if w & layout::CURSOR_DETACHED != 0 && seg.config().durable.is_some() {
            // Spilled: whatever the log holds past the cursor.
            return log_end(seg) <= w & !super::gate::FLAGS;
        }
        match consumer::Consumer::new(seg.config().geometry(), w & !super::gate::FLAGS) {
            Ok(mut probe) => w & super::gate::FLAGS != 0 || probe.peek(&self.h.region).map_or(true, |r| r.is_none()),
            Err(_) => true,
        }
    }
}

impl Consumer {
    /// Receives up to `max` messages that are in the queue now, calling `f(id, payload)` on
    /// each, and **holds** them: they stay in the queue until
    /// [`release_held`](Self::release_held) releases them. Returns how many; `Ok(0)` when
    /// empty. See [`recv_held_timeout`](Self::recv_held_timeout).
    pub fn try_recv_held(&mut self, max: usize, f: impl FnMut(u64, &[u8])) -> Result<usize> {
        self.recv_held_until(max, Until::Now, f)
    }

    /// Receives up to `max` messages, waiting at most `timeout` for the first
    /// (`Err(Timeout)`), calling `f(id, payload)` on each (`id` as [`Message::id`]), and
    /// **holds** them: the queue's consumer position, which the next consumer resumes at and
    /// which gives the space back to producers, stops at the first held message until
    /// [`release_held`](Self::release_held) releases it. The next receive (held or not)
    /// goes on after them.
    ///
    /// This is an acknowledgement for a consumer that hands messages on (to a network, a
    /// file) and must not lose one if it dies meanwhile: a consumer killed while it holds
    /// messages leaves them in the queue, and the next [`Consumer::open`] receives them
    /// again (with the same ids), together with whatever it received after them. Dropping
    /// the consumer does the same (what it holds stays in the queue). Producers cannot reuse
    /// the space of held messages: holding much of the queue makes them wait.
    ///
    /// Only for the default subscription's consumer ([`Consumer::open`]): a member of a
    /// subscription gets `InvalidArgument`.
    ///
    /// ```
    /// # use shmq::{Consumer, Options, Producer, Queue};
    /// # let name = format!("doc-held-{}", std::process::id());
    /// # Queue::create(&name, Options::new())?;
    /// # let mut tx = Producer::open(&name)?;
    /// tx.send(b"one")?;
    /// tx.send(b"two")?;
    /// let mut rx = Consumer::open(&name)?;
    /// let mut ids = Vec::new();
    /// rx.try_recv_held(16, |id, _payload| ids.push(id))?; // hand them on somewhere...
    /// rx.release_held(ids[0])?; // ...the first is safe there: release it
    /// drop(rx); // as if it died: "two" is still in the queue
    /// let mut rx = Consumer::open(&name)?;
    /// assert_eq!(&*rx.recv()?, b"two");
    /// # drop((tx, rx)); Queue::remove(&name)?;
    /// # Ok::<(), shmq::Error>(())
    /// ```
    pub fn recv_held_timeout(&mut self, max: usize, timeout: Duration, f: impl FnMut(u64, &[u8])) -> Result<usize> {
        self.recv_held_until(max, until(timeout), f)
    }

    fn recv_held_until(&mut self, max: usize, until: Until, mut f: impl FnMut(u64, &[u8])) -> Result<usize> {
        if self.member.is_some() {
            return Err(Error::InvalidArgument(
                "holding messages is for the default subscription's consumer (Consumer::open) only".into(),
            ));
        }
        self.h.shared.seg.check_same_process()?;
        if max == 0 {
            return Ok(0);
        }
        let Some(mut rec) = self.next(until)? else {
            return Ok(0);
        };
        let (mut messages, mut bytes) = (0u64, 0usize);
        let r = loop {
            f(rec.pos, self.payload(rec));
            if self.held.is_empty() {
                self.ring.set_hold(rec.pos);
            }
            self.held.push_back(rec.pos);
            self.ring.release(rec);
            messages += 1;
            bytes += rec.len as usize;
            if messages == max as u64 {
                break Ok(());
            }
            match self.peek_more() {
                Ok(Some(r)) => rec = r,
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        self.h.count(messages, bytes);
        // Padding passed before the first held message goes back to producers.
        self.publish();
        r.map(|()| messages as usize)
    }

    /// Releases every held message up to and including the one with id `id` (received with
    /// [`recv_held_timeout`](Self::recv_held_timeout) or
    /// [`try_recv_held`](Self::try_recv_held)), handing their space back to producers.
    /// Returns how many it released. `InvalidArgument` if no held message has that id.
    pub fn release_held(&mut self, id: u64) -> Result<usize> {
        let Ok(i) = self.held.binary_search(&id) else {
            return Err(Error::InvalidArgument(format!("no held message has id {id}")));
        };
        self.held.drain(..=i);
        self.ring.set_hold(self.held.front().copied().unwrap_or(u64::MAX));
        self.publish();
        Ok(i + 1)
    }

    /// How many messages this consumer holds ([`recv_held_timeout`](Self::recv_held_timeout)).
    pub fn held(&self) -> usize {
        self.held.len()
    }
}

/// The messages of a [`Consumer::recv_batch`] released so far: counted and published when
/// it drops.
struct Batch<'a> {
    consumer: &'a mut Consumer,
    messages: u64,
    bytes: usize,
}

impl Drop for Batch<'_> {
    #[inline]
    fn drop(&mut self) {
        self.consumer.h.count(self.messages, self.bytes);
        self.consumer.publish();
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        // What it holds unacknowledged goes back, to be delivered again at once.
        self.acks_leave();
        match &mut self.member {
            // A span not fully read stays claimed, for another member to take over.
            Some(m) => m.leave(&self.h.shared.seg, &self.ring),
            None => self.publish(),
        }
        // A durable queue: where this consumer stands, for a restart to resume from.
        if self.h.shared.seg.config().durable.is_some() {
            super::journal::maybe_checkpoint(&self.h.shared.seg, true);
        }
        // Then the handle deregisters (and stores the counters).
    }
}

#[path = "spill.rs"]
mod spill;

#[path = "acks.rs"]
pub(crate) mod acks;

impl Consumer {
    /// [`recv`](Self::recv) and friends for a member with explicit acks.
    #[cold]
    fn acks_recv(&mut self, until: Until) -> Result<Option<Message<'_>>> {
        Ok(match self.acks_next(until)? {
            None => None,
            Some(acks::Delivery::Fresh(rec)) => Some(Message::new(self, rec)),
            Some(acks::Delivery::Again(id)) => Some(Message::again(self, id)),
        })
    }

    /// `InvalidArgument` for calls a member with explicit acks cannot make (every message
    /// it takes must enter the in-flight table: it receives with `recv` and its variants).
    fn not_explicit(&self, call: &str) -> Result<()> {
        if self.acks.is_some() {
            return Err(Error::InvalidArgument(format!(
                "{call}: a member of a subscription with explicit acks receives with recv, try_recv or recv_timeout"
            )));
        }
        Ok(())
    }

    /// Acknowledges message `id` (a member of a subscription with
    /// [`Ack::Explicit`](crate::Ack::Explicit)): it is done and never delivered again.
    /// `AckExpired` if it was released meanwhile (held past `ack_wait`, or this member was
    /// taken for dead): it is delivered again, or was. `InvalidArgument` if this member does
    /// not hold it (or the subscription acknowledges by receiving).
    ///
    /// ```
    /// # use shmq::{Ack, Consumer, Options, Producer, Queue, Subscription, SubscriptionOptions};
    /// # let q = format!("doc-ack-{}", std::process::id());
    /// # let dir = std::env::temp_dir().join(&q);
    /// Queue::create(&q, Options::new().durable(&dir))?;
    /// Subscription::create(&q, "workers", SubscriptionOptions::new().ack(Ack::Explicit))?;
    /// let mut rx = Consumer::subscribe(&q, "workers")?;
    /// Producer::open(&q)?.send(b"job 1")?;
    /// let msg = rx.recv()?;
    /// let id = msg.id();
    /// // ... do the work ...
    /// drop(msg);
    /// rx.ack(id)?;
    /// # drop(rx); Queue::remove(&q)?; Queue::remove(&format!("{q}.workers.dlq"))?; std::fs::remove_dir_all(&dir).ok();
    /// # Ok::<(), shmq::Error>(())
    /// ```
    pub fn ack(&mut self, id: u64) -> Result<()> {
        self.acks_ack(id)
    }

    /// Gives message `id` back to be delivered again at once (to any member), keeping
    /// `reason` (its first 72 bytes travel with it; a dead letter keeps the last one). Its
    /// next delivery counts one more; after `max_deliveries` it moves to the dead-letter
    /// queue. Errors as [`ack`](Self::ack).
    pub fn nack(&mut self, id: u64, reason: &str) -> Result<()> {
        self.acks_nack(id, reason)
    }

    /// Moves message `id` to the subscription's dead-letter queue now
    /// (`<queue>.<subscription>.dlq`, see [`DeadLetter`](crate::DeadLetter)) with `reason`.
    /// Errors as [`ack`](Self::ack), and the dead-letter queue's (the message then stays in
    /// flight, to be moved again).
    pub fn reject(&mut self, id: u64, reason: &str) -> Result<()> {
        self.acks_reject(id, reason)
    }

    /// How many messages this member holds unacknowledged (explicit acks; 0 otherwise).
    pub fn in_flight(&self) -> usize {
        self.acks_held()
    }

    /// Whether this consumer reads from a durable queue's log files now (it fell more than
    /// a ring behind, or a member's batch is there) rather than from shared memory. The
    /// slice a [`peek`](Self::peek) returns then lives in this handle's own buffer, which
    /// its next call reuses: a binding that keeps the address beyond the borrow (Python's
    /// `recv_view`) copies the message then.
    pub fn reads_log(&self) -> bool {
        self.backlog.is_some()
    }
}

/// Where a durable queue's log can be read up to: what the journal wrote, and under
/// `Fsync::Always` only what is synced.
pub(super) fn log_end(seg: &Segment) -> u64 {
    // Acquire: pairs with the journal's Release raise of `written` after its writes: the
    // records below are in the files.
    let written = seg.header().durable.written.load(Ordering::Acquire);
    // Acquire: pairs with the producers' Release publication of `tail`. An honest `written`
    // is never above it; a scribbled one must not send readers past what was sent.
    let tail = seg.header().producer.tail.load(Ordering::Acquire);
    written.min(super::journal::visible(seg)).min(tail)
}

/// Whether the default subscription exists (it can be removed).
fn default_subscribed(seg: &Segment) -> bool {
    // Acquire: pairs with the Release store in `Subscription::remove`.
    seg.sub(0).meta.state.load(Ordering::Acquire) == layout::SUB_ACTIVE
}

impl Consumer {
    /// A member's [`next_slow`](Self::next_slow): reads its span, hands it back when done,
    /// claims the next (or a dead member's), waits by `until`.
    fn member_next(&mut self, mut until: Until) -> Result<Option<consumer::Record>> {
        loop {
            if let Some(rec) = self.peek_member()? {
                return Ok(Some(rec));
            }
            if self.member.as_ref().is_some_and(|m| self.ring.head() < m.end) {
                // Nothing where our own span promised records: a hostile writer was here.
                let (seg, m) = (&self.h.shared.seg, self.member.as_mut().expect("a member"));
                m.abandon(seg, &mut self.ring);
                return Err(Error::Corrupt(format!("{:?}: a claimed span lost its records", seg.config().name)));
            }
            self.member_publish();
            let seg = &self.h.shared.seg;
            let m = self.member.as_mut().expect("a member");
            if let member::Claimed::Span = m.claim(seg, &mut self.ring, false, &mut self.backlog)? {
                continue;
            }
            if self.unstick_member()? {
                continue;
            }
            if self.h.is_closed() {
                return Err(Error::Closed);
            }
            let Some(d) = until.fix() else { return Ok(None) };
            // Wait in slices: a dead member's span, or a dead producer's claim, wakes nobody.
            let slice = Instant::now() + member::ADOPT_EVERY;
            let until = Some(d.map_or(slice, |d| d.min(slice)));
            let (ring, m, log) = (&mut self.ring, self.member.as_mut().expect("a member"), &mut self.backlog);
            // Explicit acks: a message released to be delivered again ends the wait (the
            // caller takes it: `Timeout` before the deadline).
            let again = self.acks.as_ref().map(|a| (m.sub, a.seen_released));
            let mut released = false;
            let r = self.h.wait_for(until, |seg| {
                if let Some((sub, seen)) = again {
                    // Relaxed: a hint; the caller looks with Acquire.
                    if seg.acks(sub).is_some_and(|t| t.meta.released.load(Ordering::Relaxed) != seen) {
                        released = true;
                        return Some(Err(Error::Timeout));
                    }
                }
                match m.claim(seg, ring, false, log) {
                    Ok(member::Claimed::Span) => Some(Ok(())),
                    Ok(member::Claimed::Nothing) if seg.is_closed() => Some(Err(Error::Closed)),
                    Ok(member::Claimed::Nothing) => None,
                    Err(e) => Some(Err(e)),
                }
            });
            match r {
                Ok(()) => continue,
                Err(Error::Timeout) if released => return Err(Error::Timeout),
                Err(Error::Timeout) if self.acks.is_some() || d.is_none_or(|d| Instant::now() < d) => {
                    let seg = &self.h.shared.seg;
                    let m = self.member.as_mut().expect("a member");
                    if let member::Claimed::Span = m.claim(seg, &mut self.ring, true, &mut self.backlog)? {
                        continue;
                    }
                    if self.acks.is_some() {
                        // Explicit acks: back to the caller, which looks through its table
                        // (and waits on).
                        return Err(Error::Timeout);
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// A member hands its span back if it has read all of it, and wakes producers.
    fn member_publish(&mut self) {
        let seg = &self.h.shared.seg;
        let Some(m) = self.member.as_mut() else { return };
        // A span finished, or a part of it released: producers may have that space.
        m.finish_span(seg, &self.ring);
        if super::gate::wake_space(seg) {
            self.woke();
        }
    }

    /// A member stuck at its subscription's cursor behind a dead producer's claim (MPSC):
    /// as [`unstick`](Self::unstick).
    fn unstick_member(&mut self) -> Result<bool> {
        let seg = &self.h.shared.seg;
        if seg.config().mode != Mode::Mpsc {
            return Ok(false);
        }
        let m = self.member.as_ref().expect("a member");
        // Acquire: as in `Member::claim`.
        let w = seg.cursor(m.sub).load(Ordering::Acquire);
        if w & super::gate::FLAGS != 0 || crate::ring::cursors::locked(w).is_some() {
            return Ok(false);
        }
        self.unstick_at(w)
    }
}

/// A received message, borrowed from the ring: it dereferences to `&[u8]` and is released
/// (its space handed back to producers) when dropped.
pub struct Message<'a> {
    consumer: &'a mut Consumer,
    rec: consumer::Record,
    /// The first payload byte (`rec.len` bytes, bounds-checked when the message was made).
    payload: *const u8,
    /// A message handed out again (explicit acks): its payload is in the consumer's buffer
    /// and nothing in the ring or the log is released with it.
    again: bool,
}

// SAFETY: a `Message` is a `&mut Consumer` (which is `Send`) and a pointer to bytes that
// consumer owns until the message drops; sending it is sending that borrow. (It is not
// `Sync`, like `&mut Consumer`: the consumer is not `Sync`.)
unsafe impl Send for Message<'_> {}

impl<'a> Message<'a> {
    /// A message of a record read in the ring (what `look` finds).
    #[inline]
    fn from_ring(consumer: &'a mut Consumer, rec: consumer::Record) -> Message<'a> {
        let payload = consumer.h.region.ptr(rec.payload, rec.len as usize);
        Message { consumer, rec, payload, again: false }
    }

    /// A message of a record from anywhere: the ring, or a durable queue's log.
    #[inline]
    fn new(consumer: &'a mut Consumer, rec: consumer::Record) -> Message<'a> {
        let payload = if consumer.is_log_record(rec) {
            consumer.log_payload(rec).as_ptr()
        } else {
            consumer.h.region.ptr(rec.payload, rec.len as usize)
        };
        Message { consumer, rec, payload, again: false }
    }

    /// A message handed out again by a member with explicit acks: message `id`, whose
    /// payload is in the consumer's ack buffer.
    #[cold]
    fn again(consumer: &'a mut Consumer, id: u64) -> Message<'a> {
        let buf = &consumer.acks.as_ref().expect("explicit acks").buf;
        let rec = consumer::Record { pos: id, payload: 0, len: buf.len() as u32, size: 0 };
        let payload = buf.as_ptr();
        Message { consumer, rec, payload, again: true }
    }
}

impl std::ops::Deref for Message<'_> {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        // SAFETY: `payload` points to `rec.len` bytes in the consumer's mapping (checked by
        // `ptr` in `new`); the record belongs to the consumer until this message releases it
        // on drop, and the mapping lives as long as the consumer we borrow.
        unsafe { std::slice::from_raw_parts(self.payload, self.rec.len as usize) }
    }
}

impl Message<'_> {
    /// The message's id: its position in the queue's stream of bytes. Ids increase in the
    /// order messages were sent (claimed, on an MPSC queue); they are sparse (the gaps are
    /// the records' sizes) and never reused within the queue's life.
    #[inline]
    pub fn id(&self) -> u64 {
        self.rec.pos
    }

    /// How many times this message has been handed out: 1, or more when a member of a
    /// subscription died holding it and it was handed to another member (or a consumer died
    /// before releasing it and its successor received it again: then this still says 1, as
    /// shmq cannot know).
    #[inline]
    pub fn delivery_count(&self) -> u32 {
        if let Some(a) = &self.consumer.acks {
            return a.deliveries;
        }
        self.consumer.member.as_ref().map_or(1, |m| m.deliveries)
    }
}

impl AsRef<[u8]> for Message<'_> {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl Drop for Message<'_> {
    #[inline]
    fn drop(&mut self) {
        let rec = self.rec;
        if self.again {
            self.consumer.h.count(1, rec.len as usize);
            return;
        }
        self.consumer.release(rec);
        // A message record is at least a header long: `head` moved.
        self.consumer.publish_moved();
    }
}

impl std::fmt::Debug for Message<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message").field("len", &self.rec.len).finish()
    }
}

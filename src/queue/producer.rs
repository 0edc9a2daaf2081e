//! [`Producer`]: sends, zero-copy [`Grant`]s (and their detached form, [`RawGrant`]) and
//! batches.

use std::time::{Duration, Instant};

use super::attach::{Handle, Until, corrupt, until};
use super::gate::{QueueGate, wake_readers, wake_subscriptions};
use super::stats::{Role, Snapshot};
use crate::error::{Error, Result};
use crate::ring::mpsc::ClaimWords;
use crate::ring::{Gate, Region, Reservation, RingError, mpsc, spsc};
use crate::segment::{Config, Mode, Segment};
use crate::sync::atomic::Ordering;
use crate::sync::futex::OsFutex;
use crate::sync::wait::{self, Wait};

/// How often an MPSC producer waiting for room looks again without being woken (see
/// `reserve_full`): what it may wait at most for another producer's finished claim.
const CLAIM_RECHECK: Duration = Duration::from_millis(50);

enum ProducerRing {
    Spsc(spsc::Producer),
    Mpsc(mpsc::Producer),
}

/// Appends messages to a queue. One per SPSC queue; up to 63 per MPSC queue.
///
/// Dropping it aborts an outstanding [`RawGrant`] and deregisters it.
///
/// It is `Send` but not `Sync`: move it to another thread, but use it from one thread at
/// a time (wrap it in a `Mutex` to share it). A child process after `fork()` opens its own.
/// To wake a call blocked in it from another thread or a signal handler, use an
/// [`Interrupter`](crate::Interrupter) from [`interrupter`](Self::interrupter).
///
/// ```compile_fail,E0277
/// fn shared_between_threads<T: Sync>() {}
/// shared_between_threads::<shmq::Producer>();
/// ```
///
/// ```
/// fn moved_between_threads<T: Send>() {}
/// moved_between_threads::<shmq::Producer>();
/// ```
pub struct Producer {
    h: Handle,
    ring: ProducerRing,
    /// The reservation of the [`RawGrant`] that is out, if one is: until it is committed or
    /// aborted, every send is refused (SPSC would hand out the same space twice, and a
    /// commit after it would move the position back over what was sent meanwhile).
    raw: Option<Reservation>,
    /// The queue's `max_message` (the validated private copy), kept at hand for the
    /// per-message check.
    max_message: u32,
    /// Bytes each record carries before the message (a durable queue's timestamp and
    /// checksum word; 0 on a volatile queue).
    prefix: u32,
    /// A durable queue's log, and whether sends wait for their sync.
    journal: Option<super::journal::Journal>,
    /// Whether a publication wakes the readers: not under `Fsync::Always`, where readers
    /// read only what is synced and the journal wakes them after each sync (a wake per
    /// send would only wake them to find nothing new).
    wakes_readers: bool,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("queue", &self.h.shared.seg.config().name)
            .field("slot", &self.h.slot)
            .field("wait", &self.h.wait)
            .finish()
    }
}

impl Producer {
    /// Attaches to queue `name` with the default wait policy ([`Wait::Adaptive`]).
    /// `Busy` if the queue is SPSC and a live process already produces, or the table is full.
    pub fn open(name: &str) -> Result<Producer> {
        Producer::open_with(name, Wait::default())
    }

    /// Attaches with the given wait policy.
    pub fn open_with(name: &str, wait: Wait) -> Result<Producer> {
        let (h, ring) = Handle::open(name, Role::Producer, wait, Self::attach)?;
        let max_message = h.shared.seg.config().max_message;
        let prefix = h.shared.seg.config().prefix();
        let journal = super::journal::Journal::attach(&h.shared.seg)?;
        let wakes_readers = !journal.as_ref().is_some_and(|j| j.always());
        Ok(Producer { h, ring, raw: None, max_message, prefix, journal, wakes_readers })
    }

    fn attach(seg: &Segment, slot: usize) -> Result<ProducerRing> {
        let h = seg.header();
        let geo = seg.config().geometry();
        // Acquire: pairs with a predecessor's Release store of `tail`.
        let tail = h.producer.tail.load(Ordering::Acquire);
        // The gate as this producer will rely on it (published in its slot first).
        let head = QueueGate { seg, slot: seg.slot(slot), me: slot }.head(tail, 0).map_err(|e| corrupt(seg, e))?;
        Ok(match seg.config().mode {
            Mode::Spsc => {
                let p = spsc::Producer::attach(geo, tail, head, &seg.region()).map_err(|e| corrupt(seg, e))?;
                p.publish(&h.producer.tail);
                ProducerRing::Spsc(p)
            }
            Mode::Mpsc => ProducerRing::Mpsc(mpsc::Producer::new(geo, head).map_err(|e| corrupt(seg, e))?),
        })
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

    /// A handle on this producer's blocking calls: its
    /// [`interrupt`](crate::Interrupter::interrupt) makes a send or reserve waiting for room (now, or the next that has
    /// to wait) return [`Error::Interrupted`]. Any number may be made; each is `Send` and
    /// `Sync` and safe to use from a signal handler.
    pub fn interrupter(&self) -> crate::Interrupter {
        self.h.interrupter()
    }

    /// Sends `msg`, waiting while the queue is full.
    ///
    /// ```
    /// # use shmq::{Options, Producer, Consumer, Queue};
    /// # let name = format!("doc-send-{}", std::process::id());
    /// # Queue::create(&name, Options::new())?;
    /// let mut tx = Producer::open(&name)?;
    /// tx.send(b"order 1")?;
    /// let mut rx = Consumer::open(&name)?;
    /// assert_eq!(&*rx.recv()?, b"order 1");
    /// # drop((tx, rx)); Queue::remove(&name)?;
    /// # Ok::<(), shmq::Error>(())
    /// ```
    ///
    /// Returns the message's id: its position in the queue's stream (ids increase, are
    /// sparse, and are never handed out twice). On a durable queue with
    /// [`Fsync::Always`](crate::Fsync::Always) it returns once the message is on disk.
    #[inline]
    pub fn send(&mut self, msg: &[u8]) -> Result<u64> {
        self.send_until(msg, Until::Deadline(None))
    }

    /// Sends `msg` if there is room now; `Err(Full)` otherwise. Returns its id.
    #[inline]
    pub fn try_send(&mut self, msg: &[u8]) -> Result<u64> {
        self.send_until(msg, Until::Now)
    }

    /// Sends `msg`, waiting at most `timeout` for room (and, under
    /// [`Fsync::Always`](crate::Fsync::Always), for its sync); `Err(Timeout)` when it
    /// expires. Returns its id.
    pub fn send_timeout(&mut self, msg: &[u8], timeout: Duration) -> Result<u64> {
        self.send_until(msg, until(timeout))
    }

    /// Sends `msg` (waiting while full) and returns its id without waiting for the sync:
    /// on a durable queue with [`Fsync::Always`](crate::Fsync::Always), readers see it once
    /// it is synced; [`wait_durable`](Self::wait_durable) waits for that. Lets one producer
    /// keep many messages in flight. Elsewhere the same as [`send`](Self::send).
    pub fn send_nowait(&mut self, msg: &[u8]) -> Result<u64> {
        if self.prefix == 0 {
            return self.send(msg);
        }
        self.send_durable(msg, Until::Deadline(None), false)
    }

    /// [`send_nowait`](Self::send_nowait) if there is room now; `Err(Full)` otherwise.
    pub fn try_send_nowait(&mut self, msg: &[u8]) -> Result<u64> {
        if self.prefix == 0 {
            return self.try_send(msg);
        }
        self.send_durable(msg, Until::Now, false)
    }

    /// [`send_nowait`](Self::send_nowait), waiting at most `timeout` for room;
    /// `Err(Timeout)` when it expires (nothing was sent).
    pub fn send_nowait_timeout(&mut self, msg: &[u8], timeout: Duration) -> Result<u64> {
        if self.prefix == 0 {
            return self.send_timeout(msg, timeout);
        }
        self.send_durable(msg, until(timeout), false)
    }

    /// Waits until the message `id` (from [`send_nowait`](Self::send_nowait), or any id
    /// of this queue) and everything sent before it is on disk, leading the sync itself
    /// when no other process is doing it (a group commit: one sync for every message
    /// waiting). At most `timeout` (`None`: no limit), then `Err(Timeout)`. On a volatile
    /// queue, or one never synced ([`Fsync::Never`](crate::Fsync::Never)), it waits only
    /// until the message is in the log files (for `Never`) or returns at once (volatile).
    /// `Err(Log)` if a sync failed: the queue is read-only from then on.
    ///
    /// While another process syncs, it waits by the handle's policy: [`Wait::Block`]
    /// sleeps; [`Wait::Adaptive`] polls, yielding the CPU, for up to twice as long as this
    /// handle's last wait for a sync took (if that was at most 1 ms), then sleeps;
    /// [`Wait::Spin`] polls. (So does a blocking `send` under `Fsync::Always`.)
    pub fn wait_durable(&mut self, id: u64, timeout: Option<Duration>) -> Result<()> {
        let Some(j) = &self.journal else { return Ok(()) };
        let deadline = timeout.map(|t| Instant::now() + t);
        j.wait_durable(&self.h.shared.seg, self.h.slot, id + 1, deadline, self.h.wait)
    }

    /// A durable queue's send: the record carries the prefix, and under `Fsync::Always`
    /// (and `wait`) the call returns once the record is synced. Out of line, so that a
    /// volatile queue's send stays as it was; its common case is that send's
    /// ([`try_append`](Self::try_append)), with the prefix written before the message.
    #[inline(never)]
    fn send_durable(&mut self, msg: &[u8], until: Until, wait: bool) -> Result<u64> {
        // A queue whose log failed is read-only.
        super::journal::check_failed(&self.h.shared.seg)?;
        let len = self.check_send(msg.len())? + self.prefix;
        let id = match self.try_append(len, &durable_prefix(), msg) {
            Ok(id) => {
                self.h.count(1, msg.len());
                self.wake_consumer();
                id
            }
            Err(RingError::Full) => {
                // Padding to the end of the region may have been published on the way:
                // readers must pass it (and hand the space back) before the record fits.
                wake_readers(&self.h.shared.seg);
                let res = self.reserve_full(len, until)?;
                self.h.region.write(res.payload() + self.prefix as usize, msg);
                self.commit_reserved(res, msg.len() as u32)?
            }
            Err(e) => return Err(corrupt(&self.h.shared.seg, e)),
        };
        if wait {
            self.after_commit(id, until)?;
        }
        Ok(id)
    }

    /// Under `Fsync::Always`: waits until record `id` is synced.
    fn after_commit(&mut self, id: u64, until: Until) -> Result<()> {
        match &self.journal {
            Some(j) if j.always() => {
                // A `try_send` (no deadline): the message is sent; its sync is waited for
                // without limit, as a send that found room would. A timed send's deadline
                // bounds the sync too: `Timeout` then means sent but not yet durable.
                let deadline = until.deadline().unwrap_or_default();
                j.wait_durable(&self.h.shared.seg, self.h.slot, id + 1, deadline, self.h.wait)
            }
            _ => Ok(()),
        }
    }

    /// The common case inline: the checks every send makes, then the message appended
    /// where it fits at once; the rest ([`send_slow`](Self::send_slow)) out of line.
    #[inline(always)]
    fn send_until(&mut self, msg: &[u8], until: Until) -> Result<u64> {
        if self.prefix != 0 {
            return self.send_durable(msg, until, true);
        }
        let len = self.check_send(msg.len())?;
        match self.try_append(len, &[], msg) {
            Ok(id) => {
                self.h.count(1, msg.len());
                self.wake_consumer();
                Ok(id)
            }
            Err(e) => self.send_slow(msg, until, e),
        }
    }

    /// The common case of every send: a record of `len` bytes (`prefix`, then `msg`)
    /// appended where it fits at once, published; returns its position. An empty `prefix`
    /// (a volatile queue's), known at compile time, costs nothing. `Full` when it does not
    /// fit now (padding to the end of the region may have been published on the way).
    #[inline(always)]
    fn try_append(&mut self, len: u32, prefix: &[u8], msg: &[u8]) -> std::result::Result<u64, RingError> {
        debug_assert_eq!(len as usize, prefix.len() + msg.len());
        let h = self.h.header();
        match &mut self.ring {
            ProducerRing::Spsc(p) => p.try_push(&h.producer.tail, &self.h, &self.h.region, prefix, msg),
            ProducerRing::Mpsc(p) => {
                let mine = ClaimWords { pos: &self.h.my_slot().claim_pos, end: &self.h.my_slot().claim_end };
                let res = p.try_reserve(&h.producer.tail, &self.h, mine, &self.h.region, len)?;
                if !prefix.is_empty() {
                    self.h.region.write(res.payload(), prefix);
                }
                self.h.region.write(res.payload() + prefix.len(), msg);
                let r = p.commit(&self.h.region, res, len).map(|()| res.pos);
                crate::failpoint::hit("mpsc-committed");
                mine.clear();
                r
            }
        }
    }

    /// A send whose first attempt failed with `e`: `Full` waits (by `until`) for room, then
    /// sends; anything else is reported.
    #[cold]
    #[inline(never)]
    fn send_slow(&mut self, msg: &[u8], until: Until, e: RingError) -> Result<u64> {
        if e != RingError::Full {
            return Err(corrupt(&self.h.shared.seg, e));
        }
        // Padding to the end of the region may have been published on the way: the
        // consumer must pass it (and hand the space back) before the record can fit.
        self.wake_consumer();
        let res = self.reserve_full(msg.len() as u32, until)?;
        self.h.region.write(res.payload(), msg);
        self.commit_reserved(res, msg.len() as u32)
    }

    /// Reserves `len` bytes in the ring for zero-copy writing, waiting while full. Write the
    /// message into the [`Grant`], then [`commit`](Grant::commit) it; dropping the grant
    /// uncommitted aborts it.
    ///
    /// ```
    /// # use shmq::{Options, Producer, Consumer, Queue};
    /// # let name = format!("doc-reserve-{}", std::process::id());
    /// # Queue::create(&name, Options::new())?;
    /// let mut tx = Producer::open(&name)?;
    /// let mut grant = tx.reserve(16)?;
    /// grant[..5].copy_from_slice(b"hello");
    /// grant.truncate(5);
    /// grant.commit()?;
    /// let mut rx = Consumer::open(&name)?;
    /// assert_eq!(&*rx.recv()?, b"hello");
    /// # drop((tx, rx)); Queue::remove(&name)?;
    /// # Ok::<(), shmq::Error>(())
    /// ```
    pub fn reserve(&mut self, len: usize) -> Result<Grant<'_>> {
        let res = self.reserve_until(len, Until::Deadline(None))?;
        Ok(Grant { producer: self, res, len, done: false })
    }

    /// Reserves if there is room now; `Err(Full)` otherwise.
    pub fn try_reserve(&mut self, len: usize) -> Result<Grant<'_>> {
        let res = self.reserve_until(len, Until::Now)?;
        Ok(Grant { producer: self, res, len, done: false })
    }

    /// Reserves, waiting at most `timeout`; `Err(Timeout)` when it expires.
    pub fn reserve_timeout(&mut self, len: usize, timeout: Duration) -> Result<Grant<'_>> {
        let res = self.reserve_until(len, until(timeout))?;
        Ok(Grant { producer: self, res, len, done: false })
    }

    /// Refuses any send while a [`RawGrant`] is out.
    #[inline]
    fn check_no_raw(&self) -> Result<()> {
        if self.raw.is_some() {
            return Err(raw_outstanding());
        }
        Ok(())
    }

    #[inline]
    fn check_len(&self, len: usize) -> Result<u32> {
        if len > self.max_message as usize {
            return Err(Error::TooLarge { len, max: self.max_message as usize });
        }
        Ok(len as u32)
    }

    /// What every send and reserve checks first: the handle was opened by this process
    /// (not inherited through `fork`), no raw grant is out, the message is not too large,
    /// and the queue is not closed. Returns the length as `u32`.
    #[inline]
    fn check_send(&self, len: usize) -> Result<u32> {
        self.h.shared.seg.check_same_process()?;
        self.check_no_raw()?;
        let len = self.check_len(len)?;
        if self.h.is_closed() {
            return Err(Error::Closed);
        }
        Ok(len)
    }

    #[inline]
    fn try_reserve_ring(
        ring: &mut ProducerRing,
        seg: &Segment,
        slot: usize,
        len: u32,
    ) -> std::result::Result<Reservation, RingError> {
        let h = seg.header();
        let gate = QueueGate { seg, slot: seg.slot(slot), me: slot };
        let r = match ring {
            ProducerRing::Spsc(p) => p.try_reserve(&h.producer.tail, &gate, &seg.region(), len),
            ProducerRing::Mpsc(p) => p.try_reserve(&h.producer.tail, &gate, seg.claim_words(slot), &seg.region(), len),
        };
        if r == Err(RingError::Full) {
            // Padding to the end of the region may have been published on the way: readers
            // must pass it (and hand the space back) before the record can fit.
            wake_readers(seg);
        }
        r
    }

    /// Reserves a record for a message of `len` bytes (plus the queue's prefix).
    #[inline]
    fn reserve_until(&mut self, len: usize, until: Until) -> Result<Reservation> {
        let len = self.check_send(len)? + self.prefix;
        match Self::try_reserve_ring(&mut self.ring, &self.h.shared.seg, self.h.slot, len) {
            Ok(r) => Ok(r),
            Err(RingError::Full) => self.reserve_full(len, until),
            Err(e) => Err(corrupt(&self.h.shared.seg, e)),
        }
    }

    /// After a reservation of `len` found the ring full: counts it, then waits (by
    /// `until`) for room and reserves.
    #[cold]
    fn reserve_full(&mut self, len: u32, until: Until) -> Result<Reservation> {
        self.h.local.full_events += 1;
        self.h.store_rare();
        let slot = self.h.slot;
        if let Some(j) = &self.journal {
            // Whoever needs progress makes it: the journal may be what holds the ring, or
            // the id ceiling may need raising. A step at a time (an eighth of the ring), for
            // as long as steps move and the record does not fit yet: only what the journal
            // cannot free (a reader that holds the ring, another journaler's role) makes a
            // `try_send` find the queue full.
            while j.step(&self.h.shared.seg, false)? {
                if let Ok(r) = Self::try_reserve_ring(&mut self.ring, &self.h.shared.seg, slot, len) {
                    return Ok(r);
                }
            }
        }
        let Some(deadline) = until.deadline() else {
            return Err(Error::Full);
        };
        let Some(journal) = self.journal.clone() else {
            if self.h.shared.seg.config().mode == Mode::Spsc {
                return self.wait_for_space(deadline, |ring, seg| Self::try_reserve_ring(ring, seg, slot, len));
            }
            // MPSC: room may be held by another producer's claim record (when no reader
            // bounds us further: a record committed, its producer not yet past clearing it),
            // and a producer that clears its record, or dies, wakes nobody. So in slices: a
            // producer that slept without them waited for its whole timeout beside an empty
            // ring (tests/reclaim.rs's chaos test, about once in 150 runs on a loaded
            // machine, both before and after the loser's claim was cleared).
            loop {
                let slice = Instant::now() + CLAIM_RECHECK;
                let until = deadline.map_or(slice, |d| d.min(slice));
                match self.wait_for_space(Some(until), |ring, seg| Self::try_reserve_ring(ring, seg, slot, len)) {
                    Err(Error::Timeout) if deadline.is_none_or(|d| Instant::now() < d) => {}
                    r => return r,
                }
            }
        };
        // A durable queue: room may wait for the journal, whose role's holder may have died
        // or stopped (no wake comes then), so in slices; once a slice has passed without
        // room, journal alongside the holder (harmless if it is alive and well).
        let mut force = false;
        loop {
            let slice = Instant::now() + super::journal::ALONGSIDE_AFTER;
            let until = deadline.map_or(slice, |d| d.min(slice));
            let r = self.wait_for_space(Some(until), |ring, seg| match Self::try_reserve_ring(ring, seg, slot, len) {
                Err(RingError::Full) => match journal.step(seg, force) {
                    Ok(true) => Self::try_reserve_ring(ring, seg, slot, len),
                    Ok(false) => Err(RingError::Full),
                    Err(_) => Err(RingError::Corrupt("the log failed")),
                },
                r => r,
            });
            match r {
                Err(Error::Timeout) if deadline.is_none_or(|d| Instant::now() < d) => force = true,
                r => return r,
            }
        }
    }

    /// Waits (by the handle's policy) until `attempt` stops reporting `Full`.
    fn wait_for_space<T>(
        &mut self,
        deadline: Option<Instant>,
        mut attempt: impl FnMut(&mut ProducerRing, &Segment) -> std::result::Result<T, RingError>,
    ) -> Result<T> {
        let ring = &mut self.ring;
        self.h.wait_for(deadline, |seg| match attempt(ring, seg) {
            Ok(r) => Some(Ok(r)),
            Err(RingError::Full) if seg.is_closed() => Some(Err(Error::Closed)),
            Err(RingError::Full) => None,
            Err(e) => Some(Err(corrupt(seg, e))),
        })
    }

    /// Publishes a written reservation and wakes a sleeping consumer. An SPSC reservation
    /// that is not at the producer position is refused, never applied: committing it would
    /// move the position backwards over messages already sent.
    #[inline]
    fn commit_reserved(&mut self, res: Reservation, len: u32) -> Result<u64> {
        let region = &self.h.region;
        let user_len = len;
        let len = len + self.prefix;
        if self.prefix != 0 {
            region.write(res.payload(), &durable_prefix());
        }
        let r = match &mut self.ring {
            ProducerRing::Spsc(p) => p.commit(region, res, len).map(|()| p.publish(&self.h.header().producer.tail)),
            ProducerRing::Mpsc(p) => {
                let r = p.commit(region, res, len);
                self.h.shared.seg.claim_words(self.h.slot).clear();
                r
            }
        };
        r.map_err(|e| corrupt(&self.h.shared.seg, e))?;
        self.h.count(1, user_len as usize);
        self.wake_consumer();
        Ok(res.pos)
    }

    /// Wakes the consumer if it sleeps (or is about to): after every publication, unless
    /// the journal does it (`wakes_readers`).
    #[inline]
    fn wake_consumer(&mut self) {
        if !self.wakes_readers {
            return;
        }
        if wait::wake(self.h.data_words(), &OsFutex) {
            self.woke();
        }
        // Relaxed: read after the fence in `wake` above, which orders our publication
        // before it; each subscription's own wake below fences again before its waiter set.
        let subs = self.h.header().subs.sleepers.load(Ordering::Relaxed);
        if subs != 0 {
            self.wake_subscribers(subs);
        }
    }

    /// Wakes the members of the subscriptions in `subs` that sleep.
    #[inline(never)]
    fn wake_subscribers(&mut self, subs: u64) {
        let n = wake_subscriptions(&self.h.shared.seg, subs, &OsFutex);
        if n > 0 {
            self.h.local.wake_calls += n;
            self.h.store_rare();
        }
    }

    /// Counts a wake call.
    #[cold]
    fn woke(&mut self) {
        self.h.local.wake_calls += 1;
        self.h.store_rare();
    }

    fn abort_reserved(&mut self, res: Reservation) {
        if let ProducerRing::Mpsc(p) = &self.ring {
            // The claimed space becomes padding; the consumer may be waiting behind it.
            // `Reclaimed` needs nothing more: a reader made it padding already.
            let _ = p.abort(&self.h.region, res);
            self.h.shared.seg.claim_words(self.h.slot).clear();
            self.wake_consumer();
        }
        // SPSC: nothing was published; the space is simply reused.
    }

    /// Commits a [`RawGrant`] made by [`Grant::into_raw`] on this producer, with `len <=`
    /// its reserved length. A grant that is not this producer's outstanding one is refused
    /// with `InvalidArgument` and this producer's own grant, if any, stays outstanding; a
    /// `len` above the reserved length aborts the grant and returns `InvalidArgument`, so no
    /// grant is ever left outstanding by a failed commit.
    pub fn commit_raw(&mut self, grant: RawGrant, len: usize) -> Result<u64> {
        self.h.shared.seg.check_same_process()?;
        self.check_raw(&grant)?;
        self.raw = None;
        if len > grant.len {
            self.abort_reserved(grant.res);
            return Err(Error::InvalidArgument(format!(
                "commit of {len} bytes into a grant of {} (the grant was aborted)",
                grant.len
            )));
        }
        let id = self.commit_reserved(grant.res, len as u32)?;
        self.after_commit(id, Until::Deadline(None))?;
        Ok(id)
    }

    /// Aborts a [`RawGrant`] made on this producer: nothing reaches the consumer. A grant
    /// that is not this producer's outstanding one is refused as in
    /// [`commit_raw`](Self::commit_raw).
    pub fn abort_raw(&mut self, grant: RawGrant) -> Result<()> {
        self.h.shared.seg.check_same_process()?;
        self.check_raw(&grant)?;
        self.raw = None;
        self.abort_reserved(grant.res);
        Ok(())
    }

    /// Whether `grant` is exactly the reservation this producer handed out last and has not
    /// seen committed or aborted (the same position, in this producer's own mapping).
    fn check_raw(&self, grant: &RawGrant) -> Result<()> {
        let ours = self.raw == Some(grant.res)
            && grant.slot == self.h.slot
            && grant.ptr == self.h.region.ptr(grant.res.payload() + self.prefix as usize, grant.len);
        if ours { Ok(()) } else { Err(Error::InvalidArgument("not the outstanding grant of this producer".into())) }
    }

    /// Sends every message of `msgs` in order, waiting while the queue is full. Messages
    /// that fit are written together and the consumer is woken once per batch (MPSC: one
    /// claim per batch). If a message is too large nothing is sent.
    ///
    /// ```
    /// # use shmq::{Options, Producer, Consumer, Queue};
    /// # let name = format!("doc-batch-{}", std::process::id());
    /// # Queue::create(&name, Options::new())?;
    /// let mut tx = Producer::open(&name)?;
    /// tx.send_batch(&[&b"a"[..], b"bc", b""])?;
    /// let mut rx = Consumer::open(&name)?;
    /// let mut got = Vec::new();
    /// rx.try_recv_batch(10, |m| got.push(m.to_vec()))?;
    /// assert_eq!(got, [&b"a"[..], b"bc", b""]);
    /// # drop((tx, rx)); Queue::remove(&name)?;
    /// # Ok::<(), shmq::Error>(())
    /// ```
    pub fn send_batch<M: AsRef<[u8]>>(&mut self, msgs: &[M]) -> Result<()> {
        self.check_no_raw()?;
        for m in msgs {
            self.check_len(m.as_ref().len())?;
        }
        if self.prefix != 0 {
            // One sync for the whole batch.
            let mut last = None;
            for m in msgs {
                last = Some(self.send_durable(m.as_ref(), Until::Deadline(None), false)?);
            }
            if let Some(id) = last {
                self.after_commit(id, Until::Deadline(None))?;
            }
            return Ok(());
        }
        let mut sent = 0;
        while sent < msgs.len() {
            match self.try_send_batch(&msgs[sent..]) {
                Ok(n) => sent += n,
                Err(Error::Full) => {
                    // Wait for room for the next message, then send it alone.
                    self.send(msgs[sent].as_ref())?;
                    sent += 1;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Sends as many messages of `msgs`, from the first, as fit now, and returns how many.
    /// `Err(Full)` if not even the first fits.
    pub fn try_send_batch<M: AsRef<[u8]>>(&mut self, msgs: &[M]) -> Result<usize> {
        self.h.shared.seg.check_same_process()?;
        self.check_no_raw()?;
        for m in msgs {
            self.check_len(m.as_ref().len())?;
        }
        if msgs.is_empty() {
            return Ok(0);
        }
        if self.h.is_closed() {
            return Err(Error::Closed);
        }
        if self.prefix != 0 {
            return self.try_send_batch_durable(msgs);
        }
        let region = &self.h.region;
        let h = self.h.header();
        let mut count = 0;
        let mut bytes = 0;
        let outcome = match &mut self.ring {
            ProducerRing::Spsc(p) => {
                let mut outcome = Ok(());
                for m in msgs {
                    let m = m.as_ref();
                    if let Err(e) = p.push(&h.producer.tail, &self.h, region, m) {
                        outcome = Err(e);
                        break;
                    }
                    count += 1;
                    bytes += m.len();
                }
                p.publish(&h.producer.tail);
                outcome
            }
            ProducerRing::Mpsc(p) => {
                let lens = msgs.iter().map(|m| m.as_ref().len() as u32);
                let mine = ClaimWords { pos: &self.h.my_slot().claim_pos, end: &self.h.my_slot().claim_end };
                match p.try_reserve_many(&h.producer.tail, &self.h, mine, region, lens) {
                    Ok((mut pos, n)) => {
                        let mut outcome = Ok(());
                        for m in &msgs[..n] {
                            let m = m.as_ref();
                            let res = p.reservation_at(region, pos, m.len() as u32);
                            region.write(res.payload(), m);
                            if let Err(e) = p.commit(region, res, m.len() as u32) {
                                // Give the rest of the claim back as padding, or the
                                // consumer would wait behind it for a producer that lives.
                                pos += res.size;
                                for m in &msgs[count + 1..n] {
                                    let rest = p.reservation_at(region, pos, m.as_ref().len() as u32);
                                    let _ = p.abort(region, rest);
                                    pos += rest.size;
                                }
                                outcome = Err(e);
                                break;
                            }
                            pos += res.size;
                            bytes += m.len();
                            count += 1;
                            crate::failpoint::hit("mpsc-batch-committed-one");
                        }
                        mine.clear();
                        outcome
                    }
                    Err(e) => Err(e),
                }
            }
        };
        if count > 0 {
            self.h.count(count as u64, bytes);
            self.wake_consumer();
            if let Err(e @ (RingError::Reclaimed | RingError::Corrupt(_))) = outcome {
                return Err(corrupt(&self.h.shared.seg, e));
            }
            return Ok(count);
        }
        if outcome == Err(RingError::Full) {
            // Padding may have been published: see `try_reserve_ring`.
            self.wake_consumer();
        }
        match outcome {
            Err(RingError::Full) | Ok(()) => {
                self.h.local.full_events += 1;
                self.h.store_rare();
                Err(Error::Full)
            }
            Err(e) => Err(corrupt(&self.h.shared.seg, e)),
        }
    }

    /// [`try_send_batch`](Self::try_send_batch) on a durable queue: message by message, one
    /// sync at the end.
    fn try_send_batch_durable<M: AsRef<[u8]>>(&mut self, msgs: &[M]) -> Result<usize> {
        let mut last = None;
        let mut n = 0;
        for m in msgs {
            match self.send_durable(m.as_ref(), Until::Now, false) {
                Ok(id) => last = Some(id),
                Err(Error::Full) if n > 0 => break,
                Err(e) => return Err(e),
            }
            n += 1;
        }
        if let Some(id) = last {
            self.after_commit(id, Until::Deadline(None))?;
        }
        Ok(n)
    }

    /// Messages waiting in the queue (a snapshot from the counters: may change at once).
    pub fn len(&self) -> usize {
        Snapshot::read(&self.h.shared.seg).messages as usize
    }

    /// Whether the queue holds no message (a snapshot: may change at once).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The error of a send while a raw grant is out (out of line: it allocates).
#[cold]
fn raw_outstanding() -> Error {
    Error::InvalidArgument("a raw grant is outstanding: commit or abort it first".into())
}

impl Drop for Producer {
    fn drop(&mut self) {
        // A raw grant left outstanding would otherwise stay claimed forever (MPSC), and the
        // consumer would wait behind it. Then the handle deregisters.
        if let Some(res) = self.raw.take() {
            self.abort_reserved(res);
        }
        // A durable queue: what this producer sent goes to the log (and is synced, unless
        // the policy is `Never`) before it leaves.
        if let Some(j) = &self.journal {
            let _ = j.flush(&self.h.shared.seg);
        }
    }
}

/// Space reserved in the ring by [`Producer::reserve`]: write the message into it (it
/// dereferences to `&mut [u8]` of the reserved length), then [`commit`](Grant::commit).
/// Dropping it without committing aborts: nothing reaches the consumer.
///
/// The bytes are shared memory: initially they hold whatever was there (zeros or an older
/// message), and a process that ignores the protocol could write them too.
pub struct Grant<'a> {
    producer: &'a mut Producer,
    res: Reservation,
    len: usize,
    done: bool,
}

impl Grant<'_> {
    /// Publishes the message (its first `len()` bytes). On an MPSC queue this
    /// fails (`Corrupt`, the message not sent) only if a reader took this producer for dead
    /// and turned its claim into padding, which a live process's lock prevents.
    ///
    /// Returns the message's id (as [`Producer::send`] does, also in when it returns).
    pub fn commit(mut self) -> Result<u64> {
        self.done = true;
        let (res, len) = (self.res, self.len as u32);
        let id = self.producer.commit_reserved(res, len)?;
        self.producer.after_commit(id, Until::Deadline(None))?;
        Ok(id)
    }

    /// Shortens the message to `len` bytes (no-op if not shorter). Committing fewer bytes
    /// than reserved is allowed; the rest of the space is skipped.
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }
}

impl Grant<'_> {
    /// Detaches the reservation from its borrow, for FFI and other callers that must keep
    /// it across calls: neither committed nor aborted on drop. Finish it with
    /// [`Producer::commit_raw`] or [`Producer::abort_raw`]; until then the producer refuses
    /// new reservations.
    pub fn into_raw(mut self) -> RawGrant {
        self.done = true;
        self.producer.raw = Some(self.res);
        let ptr = self.producer.h.region.ptr(self.res.payload() + self.producer.prefix as usize, self.len);
        RawGrant { res: self.res, ptr, len: self.len, slot: self.producer.h.slot }
    }
}

/// A reservation detached from its [`Grant`]: `len` writable bytes at `as_mut_ptr()`,
/// valid until the grant is committed or aborted, or its producer dropped.
#[derive(Debug)]
pub struct RawGrant {
    res: Reservation,
    ptr: *mut u8,
    len: usize,
    slot: usize,
}

impl RawGrant {
    /// The first reserved byte.
    pub fn as_mut_ptr(&self) -> *mut u8 {
        self.ptr
    }
    /// Bytes reserved.
    pub fn len(&self) -> usize {
        self.len
    }
    /// Whether zero bytes were reserved.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl std::ops::Deref for Grant<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        let p = self.producer.h.region.ptr(self.res.payload() + self.producer.prefix as usize, self.len);
        // SAFETY: in bounds (checked by `ptr`); the reserved bytes belong to this producer
        // until it commits (the ring protocol), and the mapping lives as long as the
        // producer we borrow.
        unsafe { std::slice::from_raw_parts(p, self.len) }
    }
}

impl std::ops::DerefMut for Grant<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        let p = self.producer.h.region.ptr(self.res.payload() + self.producer.prefix as usize, self.len);
        // SAFETY: as in `deref`; `&mut self` makes this the only view.
        unsafe { std::slice::from_raw_parts_mut(p, self.len) }
    }
}

impl Drop for Grant<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.producer.abort_reserved(self.res);
        }
    }
}

impl std::fmt::Debug for Grant<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grant").field("len", &self.len).finish()
    }
}

/// A durable queue's record prefix for a message sent now: the producer's timestamp, then a
/// word the journal fills in the log. The time is read when the send starts; a send that
/// had to wait for room reads it again once it has its reservation (`commit_reserved`).
#[inline]
fn durable_prefix() -> [u8; crate::segment::DURABLE_PREFIX as usize] {
    let mut prefix = [0u8; crate::segment::DURABLE_PREFIX as usize];
    prefix[..8].copy_from_slice(&crate::segment::now_unix_ns().to_le_bytes());
    prefix
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Consumer, Options, Queue};

    /// The queue-layer check itself: the safe API can no longer move the position while a
    /// raw grant is out, so the test forges that state.
    #[test]
    fn an_spsc_commit_not_at_the_producer_position_is_refused_and_loses_nothing() {
        let name = format!("unit-commit-behind-{}", std::process::id());
        let _ = Queue::remove(&name);
        Queue::create(&name, Options::new().mode(Mode::Spsc).capacity(4096).max_message(1024)).unwrap();
        let mut tx = Producer::open(&name).unwrap();
        let mut rx = Consumer::open(&name).unwrap();
        let g = tx.reserve(16).unwrap().into_raw();
        let forged = tx.raw.take();
        tx.send(b"x").unwrap();
        tx.raw = forged;
        assert!(matches!(tx.commit_raw(g, 16), Err(Error::InvalidArgument(_))));
        assert_eq!(&*rx.try_recv().unwrap().expect("the message sent meanwhile"), b"x");
        assert!(rx.try_recv().unwrap().is_none(), "the refused reservation was not applied");
        tx.send(b"y").unwrap();
        assert_eq!(&*rx.try_recv().unwrap().expect("the producer still works"), b"y");
        drop((tx, rx));
        Queue::remove(&name).unwrap();
    }

    /// A durable 64 KiB SPSC queue (`Fsync::Never`) with its log in a fresh directory; both
    /// removed when dropped.
    struct DurableQueue {
        name: String,
        dir: std::path::PathBuf,
    }

    impl DurableQueue {
        const CAPACITY: u64 = 64 << 10;

        fn create(tag: &str, max_message: u32) -> DurableQueue {
            let name = format!("unit-{tag}-{}", std::process::id());
            let dir = std::env::temp_dir().join(format!("shmq-unit-{tag}-{}", std::process::id()));
            let _ = Queue::remove(&name);
            let _ = std::fs::remove_dir_all(&dir);
            let options = Options::new().mode(Mode::Spsc).capacity(Self::CAPACITY).max_message(max_message);
            Queue::create(&name, options.durable(&dir)).unwrap();
            DurableQueue { name, dir }
        }
    }

    impl Drop for DurableQueue {
        fn drop(&mut self) {
            let _ = Queue::remove(&self.name);
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    /// A producer that finds the ring full (or a consumer about to wait) journals one pass,
    /// at most an eighth of the ring, and goes back to what it was doing; a handle closing
    /// or a member needing its span journals everything.
    #[test]
    fn a_step_journals_an_eighth_of_the_ring_and_catching_up_everything() {
        let q = DurableQueue::create("journal-step", 1024);
        let cap = DurableQueue::CAPACITY;
        let mut tx = Producer::open(&q.name).unwrap();
        // Three quarters of the ring: no send found it full, so nobody journaled yet.
        for i in 0..48u32 {
            tx.try_send(&[i as u8; 1000]).unwrap();
        }
        let seg = &tx.h.shared.seg;
        let d = &seg.header().durable;
        let tail = seg.header().producer.tail.load(Ordering::Relaxed);
        assert_eq!(d.written.load(Ordering::Relaxed), 0, "nothing journaled before the step");
        let j = tx.journal.as_ref().expect("a durable queue's producer has a journal");
        assert!(j.step(seg, false).unwrap(), "the step journals");
        let step = d.written.load(Ordering::Relaxed);
        // A pass stops at the first record that reaches an eighth of the ring.
        assert!(step > 0 && step < cap / 8 + 1100, "one step journaled {step} of {tail} bytes");
        assert!(j.catch_up(seg, false).unwrap(), "catching up journals the rest");
        assert_eq!(d.written.load(Ordering::Relaxed), tail, "caught up: everything sent is in the log");
    }

    /// A consumer writing ahead journals nothing it has not read (further, the producers
    /// could overwrite it), takes a second pass while the journal is half a ring behind and
    /// the records are large, and one pass only for small records.
    #[test]
    fn a_consumer_writes_ahead_only_what_it_has_read_and_a_second_pass_of_large_records() {
        let cap = DurableQueue::CAPACITY;
        let q = DurableQueue::create("journal-ahead", 1024);
        let mut tx = Producer::open(&q.name).unwrap();
        // Ids are positions: the eleventh message's is where a reader of ten stands.
        let mut ids = Vec::new();
        for i in 0..10u32 {
            ids.push(tx.try_send(&[i as u8; 1000]).unwrap());
        }
        {
            let (seg, j) = (&tx.h.shared.seg, tx.journal.as_ref().unwrap());
            let read = seg.header().producer.tail.load(Ordering::Relaxed);
            assert!(!j.write_ahead(seg, Some(read)).unwrap(), "under a quarter ring: not worth a write");
        }
        // Seven eighths of the ring, nobody journaling.
        for i in 10..56u32 {
            ids.push(tx.try_send(&[i as u8; 1000]).unwrap());
        }
        let (seg, j) = (&tx.h.shared.seg, tx.journal.as_ref().unwrap());
        let written = || seg.header().durable.written.load(Ordering::Relaxed);
        let end = seg.header().producer.tail.load(Ordering::Relaxed);
        assert!(j.write_ahead(seg, Some(ids[10])).unwrap(), "the journal is behind and the role free");
        assert_eq!(written(), ids[10], "two passes, the second stopped at what the reader has read");
        let before = written();
        assert!(j.write_ahead(seg, Some(end)).unwrap());
        let two = written() - before;
        // Each pass stops at the record that reaches an eighth of the ring.
        assert!(two >= cap / 4 && two < cap / 4 + 2 * 1100, "two passes journaled {two} bytes");
        // Still a quarter ring behind, not half after one pass: one pass.
        let before = written();
        assert!(end - before >= cap / 4 && end - before < cap / 2 + cap / 8, "{before} of {end} journaled");
        assert!(j.write_ahead(seg, Some(end)).unwrap());
        let one = written() - before;
        assert!(one >= cap / 8 && one < cap / 8 + 1100, "the journal not half a ring behind: one pass, {one} bytes");
        drop(tx);
        drop(q);

        let q = DurableQueue::create("journal-ahead-small", 1024);
        let mut tx = Producer::open(&q.name).unwrap();
        let mut n = 0u32;
        while tx.try_send(&[n as u8; 64]).unwrap() < cap / 8 * 7 {
            n += 1;
        }
        let (seg, j) = (&tx.h.shared.seg, tx.journal.as_ref().unwrap());
        let end = seg.header().producer.tail.load(Ordering::Relaxed);
        assert!(j.write_ahead(seg, Some(end)).unwrap());
        let one = seg.header().durable.written.load(Ordering::Relaxed);
        assert!(one >= cap / 8 && one < cap / 8 + 128, "small records: one pass, {one} bytes");
    }

    /// A consumer that finds nothing to read while the journal role is taken (a producer
    /// journaling a pass, here this test) keeps offering to write ahead while it waits, and
    /// journals as soon as the role comes free, before its wait ends.
    #[test]
    fn a_waiting_consumer_journals_once_the_role_comes_free() {
        use crate::segment::{Access, Segment};
        let q = DurableQueue::create("journal-waiting", 1024);
        let mut tx = Producer::open(&q.name).unwrap();
        let mut rx = Consumer::open_with(&q.name, crate::Wait::Spin).unwrap();
        // Three quarters of the ring: no send found it full, so nobody journaled.
        for i in 0..48u32 {
            tx.try_send(&[i as u8; 1000]).unwrap();
        }
        let Ok(holder) = Segment::open(&q.name, Access::ReadWrite) else { panic!("open the segment") };
        assert!(holder.try_lock_journal(), "the role was free");
        for _ in 0..48 {
            assert_eq!(rx.try_recv().unwrap().expect("a message").len(), 1000);
        }
        let seg = &tx.h.shared.seg;
        let written = || seg.header().durable.written.load(Ordering::Relaxed);
        let waiting = std::thread::spawn(move || {
            let r = rx.recv_timeout(Duration::from_secs(3));
            (r.map(|m| m.len()), rx)
        });
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(written(), 0, "nobody journaled while the role was taken");
        holder.unlock_journal();
        let deadline = Instant::now() + Duration::from_secs(2);
        while written() == 0 {
            assert!(Instant::now() < deadline, "the waiting consumer did not journal");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(!waiting.is_finished(), "it journaled while waiting, not after");
        let (r, rx) = waiting.join().unwrap();
        assert!(matches!(r, Err(Error::Timeout)), "nothing was sent: {r:?}");
        let tail = seg.header().producer.tail.load(Ordering::Relaxed);
        assert!(tail - written() < DurableQueue::CAPACITY / 4, "it journaled pass after pass: {} of {tail}", written());
        drop((tx, rx));
    }

    /// `Full` from a `try_send` means a reader holds the ring, never that the journal (which
    /// the producer can move itself) has not taken enough yet: a record larger than a pass
    /// is journaled room for, a pass at a time.
    #[test]
    fn a_try_send_held_back_only_by_the_journal_journals_until_it_fits() {
        let q = DurableQueue::create("journal-try-send", 30000);
        let mut tx = Producer::open(&q.name).unwrap();
        let mut rx = Consumer::open(&q.name).unwrap();
        for round in 0..8u8 {
            for _ in 0..56 {
                tx.try_send(&[round; 1000]).unwrap();
            }
            // The consumer reads everything (it holds nothing back) and, polling, journals
            // nothing: the ring is held by the journal alone.
            for _ in 0..56 {
                assert_eq!(rx.try_recv().unwrap().expect("a message").len(), 1000);
            }
            tx.try_send(&[round; 30000]).unwrap_or_else(|e| panic!("round {round}: {e}"));
            assert_eq!(rx.try_recv().unwrap().expect("the large message").len(), 30000);
        }
        drop((tx, rx));
    }
}

//! [`Producer`]: sends, zero-copy [`Grant`]s (and their detached form, [`RawGrant`]) and
//! batches.

use std::time::{Duration, Instant};

use super::attach::{Handle, Until, corrupt, until};
use super::stats::{Role, Snapshot};
use crate::error::{Error, Result};
use crate::layout;
use crate::ring::{Region, Reservation, RingError, mpsc, spsc};
use crate::segment::{Config, Mode, Segment};
use crate::sync::atomic::Ordering;
use crate::sync::futex::OsFutex;
use crate::sync::wait::{self, Wait};

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
        Ok(Producer { h, ring, raw: None })
    }

    fn attach(seg: &Segment, slot: usize) -> Result<ProducerRing> {
        let h = seg.header();
        let geo = seg.config().geometry();
        // SYNC POINT: Acquire pairs with the consumer's Release store of `head`.
        let head = h.consumer.head.load(Ordering::Acquire);
        Ok(match seg.config().mode {
            Mode::Spsc => {
                // Acquire: pairs with a predecessor's Release store of `tail`.
                let tail = h.producer.tail.load(Ordering::Acquire);
                let p = spsc::Producer::attach(geo, tail, head, &seg.region()).map_err(|e| corrupt(seg, e))?;
                p.publish(&h.producer.tail);
                ProducerRing::Spsc(p)
            }
            Mode::Mpsc => ProducerRing::Mpsc(mpsc::Producer::new(geo, slot as u8, head).map_err(|e| corrupt(seg, e))?),
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
    #[inline]
    pub fn send(&mut self, msg: &[u8]) -> Result<()> {
        self.send_until(msg, Until::Deadline(None))
    }

    /// Sends `msg` if there is room now; `Err(Full)` otherwise.
    #[inline]
    pub fn try_send(&mut self, msg: &[u8]) -> Result<()> {
        self.send_until(msg, Until::Now)
    }

    /// Sends `msg`, waiting at most `timeout` for room; `Err(Timeout)` when it expires.
    pub fn send_timeout(&mut self, msg: &[u8], timeout: Duration) -> Result<()> {
        self.send_until(msg, until(timeout))
    }

    #[inline]
    fn send_until(&mut self, msg: &[u8], until: Until) -> Result<()> {
        let res = self.reserve_until(msg.len(), until)?;
        self.h.shared.seg.region().write(res.payload(), msg);
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
    /// grant.commit();
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
            return Err(Error::InvalidArgument("a raw grant is outstanding: commit or abort it first".into()));
        }
        Ok(())
    }

    #[inline]
    fn check_len(&self, len: usize) -> Result<u32> {
        let max = self.h.shared.seg.config().max_message;
        if len > max as usize {
            return Err(Error::TooLarge { len, max: max as usize });
        }
        Ok(len as u32)
    }

    #[inline]
    fn try_reserve_ring(
        ring: &mut ProducerRing,
        seg: &Segment,
        len: u32,
    ) -> std::result::Result<Reservation, RingError> {
        let h = seg.header();
        match ring {
            ProducerRing::Spsc(p) => p.try_reserve(&h.producer.tail, &h.consumer.head, &seg.region(), len),
            ProducerRing::Mpsc(p) => p.try_reserve(&h.producer.tail, &h.consumer.head, &seg.region(), len),
        }
    }

    #[inline]
    fn reserve_until(&mut self, len: usize, until: Until) -> Result<Reservation> {
        self.check_no_raw()?;
        let len = self.check_len(len)?;
        if self.h.shared.seg.is_closed() {
            return Err(Error::Closed);
        }
        match Self::try_reserve_ring(&mut self.ring, &self.h.shared.seg, len) {
            Ok(r) => return Ok(r),
            Err(RingError::Full) => {}
            Err(e) => return Err(corrupt(&self.h.shared.seg, e)),
        }
        self.h.local.full_events += 1;
        self.h.local.store_rare(&self.h.shared.seg, self.h.slot);
        let Until::Deadline(deadline) = until else {
            return Err(Error::Full);
        };
        self.wait_for_space(deadline, |ring, seg| Self::try_reserve_ring(ring, seg, len))
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
    fn commit_reserved(&mut self, res: Reservation, len: u32) -> Result<()> {
        let region = self.h.shared.seg.region();
        match &mut self.ring {
            ProducerRing::Spsc(p) => {
                if res.pos != p.tail() {
                    return Err(Error::InvalidArgument(format!(
                        "a reservation at position {} is not at the producer position {}: refused",
                        res.pos,
                        p.tail()
                    )));
                }
                p.commit(&region, res, len);
                p.publish(&self.h.shared.seg.header().producer.tail);
            }
            ProducerRing::Mpsc(p) => p.commit(&region, res, len),
        }
        self.h.local.count(&self.h.shared.seg, self.h.slot, len as usize);
        self.wake_consumer();
        Ok(())
    }

    #[inline]
    fn wake_consumer(&mut self) {
        if wait::wake(self.h.shared.seg.data_words(), &OsFutex) {
            self.h.local.wake_calls += 1;
            self.h.local.store_rare(&self.h.shared.seg, self.h.slot);
        }
    }

    fn abort_reserved(&mut self, res: Reservation) {
        if let ProducerRing::Mpsc(p) = &self.ring {
            // The claimed space becomes padding; the consumer may be waiting behind it.
            p.abort(&self.h.shared.seg.region(), res);
            self.wake_consumer();
        }
        // SPSC: nothing was published; the space is simply reused.
    }

    /// Commits a [`RawGrant`] made by [`Grant::into_raw`] on this producer, with `len <=`
    /// its reserved length. A grant that is not this producer's outstanding one is refused
    /// with `InvalidArgument` and this producer's own grant, if any, stays outstanding; a
    /// `len` above the reserved length aborts the grant and returns `InvalidArgument`, so no
    /// grant is ever left outstanding by a failed commit.
    pub fn commit_raw(&mut self, grant: RawGrant, len: usize) -> Result<()> {
        self.check_raw(&grant)?;
        self.raw = None;
        if len > grant.len {
            self.abort_reserved(grant.res);
            return Err(Error::InvalidArgument(format!(
                "commit of {len} bytes into a grant of {} (the grant was aborted)",
                grant.len
            )));
        }
        self.commit_reserved(grant.res, len as u32)
    }

    /// Aborts a [`RawGrant`] made on this producer: nothing reaches the consumer. A grant
    /// that is not this producer's outstanding one is refused as in
    /// [`commit_raw`](Self::commit_raw).
    pub fn abort_raw(&mut self, grant: RawGrant) -> Result<()> {
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
            && grant.ptr == self.h.shared.seg.region().ptr(grant.res.payload(), grant.len);
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
        self.check_no_raw()?;
        for m in msgs {
            self.check_len(m.as_ref().len())?;
        }
        if msgs.is_empty() {
            return Ok(0);
        }
        if self.h.shared.seg.is_closed() {
            return Err(Error::Closed);
        }
        let region = self.h.shared.seg.region();
        let h = self.h.shared.seg.header();
        let mut count = 0;
        let mut bytes = 0;
        let outcome = match &mut self.ring {
            ProducerRing::Spsc(p) => {
                let mut outcome = Ok(());
                for m in msgs {
                    let m = m.as_ref();
                    match p.try_reserve(&h.producer.tail, &h.consumer.head, &region, m.len() as u32) {
                        Ok(res) => {
                            region.write(res.payload(), m);
                            p.commit(&region, res, m.len() as u32);
                            count += 1;
                            bytes += m.len();
                        }
                        Err(e) => {
                            outcome = Err(e);
                            break;
                        }
                    }
                }
                p.publish(&h.producer.tail);
                outcome
            }
            ProducerRing::Mpsc(p) => {
                let lens = msgs.iter().map(|m| m.as_ref().len() as u32);
                match p.try_reserve_many(&h.producer.tail, &h.consumer.head, &region, lens) {
                    Ok((first, n)) => {
                        let (mut pos, mut index) = (first.pos, first.index);
                        for m in &msgs[..n] {
                            let m = m.as_ref();
                            let res = Reservation { pos, index, len: m.len() as u32 };
                            region.write(res.payload(), m);
                            p.commit(&region, res, m.len() as u32);
                            let size = layout::record::size(m.len() as u64);
                            pos += size;
                            index += size as usize;
                            bytes += m.len();
                        }
                        count = n;
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            }
        };
        if count > 0 {
            self.h.local.count_many(&self.h.shared.seg, self.h.slot, count as u64, bytes);
            self.wake_consumer();
            return Ok(count);
        }
        match outcome {
            Err(RingError::Full) | Ok(()) => {
                self.h.local.full_events += 1;
                self.h.local.store_rare(&self.h.shared.seg, self.h.slot);
                Err(Error::Full)
            }
            Err(e) => Err(corrupt(&self.h.shared.seg, e)),
        }
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

impl Drop for Producer {
    fn drop(&mut self) {
        // A raw grant left outstanding would otherwise stay claimed forever (MPSC), and the
        // consumer would wait behind it. Then the handle deregisters.
        if let Some(res) = self.raw.take() {
            self.abort_reserved(res);
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
    /// Publishes the message: the grant's bytes, as many as its length (the reserved
    /// length, or less after [`truncate`](Self::truncate)).
    pub fn commit(mut self) {
        self.done = true;
        let (res, len) = (self.res, self.len as u32);
        // Cannot be refused: the grant borrows its producer mutably, so the producer
        // position has not moved since the reservation was made.
        let r = self.producer.commit_reserved(res, len);
        debug_assert!(r.is_ok(), "{r:?}");
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
        let ptr = self.producer.h.shared.seg.region().ptr(self.res.payload(), self.len);
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
        let p = self.producer.h.shared.seg.region().ptr(self.res.payload(), self.len);
        // SAFETY: in bounds (checked by `ptr`); the reserved bytes belong to this producer
        // until it commits (the ring protocol), and the mapping lives as long as the
        // producer we borrow.
        unsafe { std::slice::from_raw_parts(p, self.len) }
    }
}

impl std::ops::DerefMut for Grant<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        let p = self.producer.h.shared.seg.region().ptr(self.res.payload(), self.len);
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
}

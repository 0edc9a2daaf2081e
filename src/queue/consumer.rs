//! [`Consumer`]: receives, peeks and batches, and the borrowed [`Message`].

use std::time::Duration;

use super::attach::{Handle, Until, corrupt, until};
use super::stats::{Role, Snapshot};
use crate::error::{Error, Result};
use crate::ring::consumer;
use crate::segment::{Config, Mode, Segment};
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
}

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
        Ok(Consumer { h, ring })
    }

    fn attach(seg: &Segment) -> Result<consumer::Consumer> {
        let h = seg.header();
        let cfg = seg.config();
        // Relaxed: we are the only writer of `head`; its last writer handed us the slot.
        let mut head = h.consumer.head.load(Ordering::Relaxed);
        if cfg.mode == Mode::Mpsc {
            // A predecessor that died mid-release may have zeroed records it delivered.
            let releasing = h.consumer.releasing.load(Ordering::Relaxed);
            let tail = h.producer.tail.load(Ordering::Relaxed);
            if releasing > head && releasing <= tail && releasing - head <= cfg.capacity && releasing % 8 == 0 {
                head = releasing;
            }
        }
        let mut ring =
            consumer::Consumer::new(cfg.geometry(), head, cfg.mode == Mode::Mpsc).map_err(|e| corrupt(seg, e))?;
        ring.publish(&h.consumer.head);
        // Relaxed: read only by a successor, after the kernel hands it our slot lock.
        h.consumer.releasing.store(head, Ordering::Relaxed);
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
        let rec = self.next(Until::Deadline(None))?;
        Ok(Message { consumer: self, rec: rec.expect("waiting recv returns a record") })
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
        Ok(self.next(Until::Now)?.map(|rec| Message { consumer: self, rec }))
    }

    /// Receives the next message, waiting at most `timeout`: `Err(Timeout)` when it expires.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Message<'_>> {
        let rec = self.next(until(timeout))?;
        Ok(Message { consumer: self, rec: rec.expect("waiting recv returns a record") })
    }

    /// The next message without taking it: the same message again on the next call, until
    /// [`advance`](Self::advance). `Ok(None)` when empty now.
    pub fn try_peek(&mut self) -> Result<Option<&[u8]>> {
        match self.next(Until::Now)? {
            Some(rec) => Ok(Some(self.payload(rec))),
            None => Ok(None),
        }
    }

    /// Like [`try_peek`](Self::try_peek), but waits by the handle's policy: forever for
    /// `None`, at most the duration otherwise (`Err(Timeout)`).
    pub fn peek(&mut self, timeout: Option<Duration>) -> Result<&[u8]> {
        let until = timeout.map_or(Until::Deadline(None), until);
        let rec = self.next(until)?.expect("waiting peek returns a record");
        Ok(self.payload(rec))
    }

    /// Takes (releases) the message at the head, as last returned by a peek. Returns
    /// `false` if there is none.
    pub fn advance(&mut self) -> Result<bool> {
        match Self::peek_ring(&mut self.ring, &self.h.shared.seg)? {
            Some(rec) => {
                self.release(rec);
                self.publish();
                Ok(true)
            }
            None => Ok(false),
        }
    }

    #[inline]
    fn peek_ring(ring: &mut consumer::Consumer, seg: &Segment) -> Result<Option<consumer::Record>> {
        ring.peek(&seg.region(), &seg.header().consumer.releasing).map_err(|e| corrupt(seg, e))
    }

    /// The next record; `None` only for `Until::Now` on an empty queue.
    #[inline]
    fn next(&mut self, until: Until) -> Result<Option<consumer::Record>> {
        if let Some(rec) = Self::peek_ring(&mut self.ring, &self.h.shared.seg)? {
            return Ok(Some(rec));
        }
        // Padding skipped on the way is space the producers may be waiting for.
        self.publish();
        let closed = |ring: &mut consumer::Consumer, seg: &Segment| -> Result<Option<consumer::Record>> {
            // Drain what was sent before the removal, then report it.
            match Self::peek_ring(ring, seg)? {
                Some(r) => Ok(Some(r)),
                None => Err(Error::Closed),
            }
        };
        let deadline = match until {
            Until::Now if self.h.shared.seg.is_closed() => return closed(&mut self.ring, &self.h.shared.seg),
            Until::Now => return Ok(None),
            Until::Deadline(d) => d,
        };
        let ring = &mut self.ring;
        self.h.wait_for(deadline, |seg| match Self::peek_ring(ring, seg) {
            Ok(Some(r)) => Some(Ok(Some(r))),
            Ok(None) if seg.is_closed() => Some(closed(ring, seg)),
            Ok(None) => None,
            Err(e) => Some(Err(e)),
        })
    }

    /// Stores `head` if it moved, and wakes producers waiting for space.
    #[inline]
    fn publish(&mut self) {
        if !self.ring.has_unpublished() {
            return;
        }
        self.ring.publish(&self.h.shared.seg.header().consumer.head);
        if wait::wake(self.h.shared.seg.space_words(), &OsFutex) {
            self.h.local.wake_calls += 1;
            self.h.local.store_rare(&self.h.shared.seg, self.h.slot);
        }
    }

    #[inline]
    fn release(&mut self, rec: consumer::Record) {
        self.ring.release(&self.h.shared.seg.region(), rec, &self.h.shared.seg.header().consumer.releasing);
        self.h.local.count(&self.h.shared.seg, self.h.slot, rec.len as usize);
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
        if max == 0 {
            return Ok(0);
        }
        let Some(mut rec) = self.next(until)? else {
            return Ok(0);
        };
        let mut n = 0;
        loop {
            f(self.payload(rec));
            self.release(rec);
            n += 1;
            if n == max {
                break;
            }
            match Self::peek_ring(&mut self.ring, &self.h.shared.seg) {
                Ok(Some(r)) => rec = r,
                Ok(None) => break,
                Err(e) => {
                    self.publish();
                    return Err(e);
                }
            }
        }
        self.publish();
        Ok(n)
    }

    fn payload(&self, rec: consumer::Record) -> &[u8] {
        let len = rec.len as usize;
        let p = self.h.shared.seg.region().ptr(rec.payload, len);
        // SAFETY: in bounds (checked by `ptr`); a committed record belongs to the consumer
        // until it releases it, and the mapping lives as long as `self`.
        unsafe { std::slice::from_raw_parts(p, len) }
    }

    /// Messages waiting (a snapshot from the counters: may change at once).
    pub fn len(&self) -> usize {
        Snapshot::read(&self.h.shared.seg).messages as usize
    }

    /// Whether no message waits at the head now (a snapshot: may change at once).
    pub fn is_empty(&self) -> bool {
        self.ring.is_empty(&self.h.shared.seg.region())
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        // Then the handle deregisters (and stores the counters).
        self.publish();
    }
}

/// A received message, borrowed from the ring: it dereferences to `&[u8]` and is released
/// (its space handed back to producers) when dropped.
pub struct Message<'a> {
    consumer: &'a mut Consumer,
    rec: consumer::Record,
}

impl std::ops::Deref for Message<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.consumer.payload(self.rec)
    }
}

impl AsRef<[u8]> for Message<'_> {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl Drop for Message<'_> {
    fn drop(&mut self) {
        let rec = self.rec;
        self.consumer.release(rec);
        self.consumer.publish();
    }
}

impl std::fmt::Debug for Message<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message").field("len", &self.rec.len).finish()
    }
}

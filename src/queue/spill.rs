//! The default consumer of a durable queue: it never holds producers back for long. Every
//! message is in the log files once the journal passed it, so a producer that needs the
//! ring space this consumer still stands on detaches it (spills it) instead of waiting,
//! and the consumer reads on from the log, in order, from exactly where it was. When it
//! has read everything the log holds it rejoins the ring at that position
//! ([`cursors::rejoin_at`]), if no producer may be overwriting there; otherwise the log
//! has grown meanwhile and it reads on.
//!
//! In the ring it reads only with its cursor word pinned (`CURSOR_PINNED`, set by a
//! compare-and-swap that fails if a producer detached it first): producers wait for a
//! pinned cursor, so a borrowed [`Message`](super::Message) is never overwritten under its
//! reader. The pin lasts while a message (or a peek, or a batch) is borrowed, and ends
//! when the position is published; a consumer waiting for messages is not pinned. Hence a
//! consumer that is stopped (SIGSTOP) or slow while it holds no message costs producers
//! nothing, and one stopped while holding a message holds them until it goes on.
//!
//! Producers still stay within `max_log_bytes` of a detached consumer: it bounds the log.
//!
//! Kill points, and what a successor (the next `Consumer::open`) finds:
//! - pinned (killed while reading in the ring): the position is intact (producers waited);
//!   it unpins and goes on in the ring;
//! - detached (killed while reading the log): it reads the log from the position;
//! - plain in the middle of a rejoin (between the swap to a plain cursor and the check of
//!   the producers' `gate_min`, failpoint `spill-rejoining`): it makes the check itself
//!   ([`cursors::confirm`]) and reads the log if the check fails.

use std::time::{Duration, Instant};

use super::Consumer;
use crate::error::{Error, Result};
use crate::layout::{CURSOR_DETACHED, CURSOR_PINNED};
use crate::queue::attach::Until;
use crate::queue::backlog::{Backlog, Step};
use crate::queue::gate::{FLAGS, wake_space};
use crate::queue::journal::visible;
use crate::ring::consumer::{self, Look, Record};
use crate::ring::cursors;
use crate::segment::{Mode, Segment, shown};
use crate::sync::atomic::Ordering;
use crate::sync::wait::Wait;

/// Rejoins in a row that find the log grown (each one means more to read there) before
/// the consumer waits instead: bounds the work a hostile `gate_min` can cause.
const ROUNDS: usize = 64;
/// A consumer waiting for messages offers to write ahead once every this many polls (see
/// `spill_next`).
const WRITE_AHEAD_EVERY: u32 = 16;

/// How long a consumer reading the log sleeps at most before it looks again: the journal
/// writes the log without waking readers, and producers may have stopped publishing.
const LOG_POLL: Duration = Duration::from_millis(5);

/// What [`Consumer::spill_look`] found at the head.
enum Spot {
    /// A message, the cursor pinned.
    Record(Record),
    /// Nothing readable there yet (nothing sent, or under `Fsync::Always` nothing synced).
    Empty,
    /// Anything else: the general path decides.
    General,
}

/// What one step of reading the log found.
enum LogStep {
    /// A message.
    Record(Record),
    /// The consumer is back in the ring.
    Rejoined,
    /// The log grew while the consumer tried to rejoin: read on.
    Behind,
    /// Nothing more to read in the log now, and no rejoin (held messages below the
    /// position, or a failed check with nothing new written).
    Stay,
}

impl Consumer {
    /// After attaching: decides where the consumer reads, from its cursor word (see the
    /// module docs' kill points).
    pub(super) fn spill_attach(&mut self) -> Result<()> {
        let seg = &self.h.shared.seg;
        let cap = seg.config().capacity;
        // Relaxed: fixed at creation. Read once and checked: a `base` above the producers'
        // position is no restored queue's (it would send the reader through the log's
        // whole id space).
        let base = seg.header().durable.base.load(Ordering::Relaxed);
        // Acquire: pairs with the producers' Release publication of `tail`.
        let tail = seg.header().producer.tail.load(Ordering::Acquire);
        if !crate::ring::plausible(base) || base > tail {
            return Err(Error::Corrupt(format!(
                "{}: ring start {base} above the producers' {tail}",
                shown(&seg.config().name)
            )));
        }
        self.ring.set_limit(0);
        let pos = self.ring.head();
        let word = seg.cursor(0);
        // Acquire: pairs with the producers' detach (a compare-and-swap).
        let w = word.load(Ordering::Acquire);
        if w & !FLAGS != pos {
            return Err(Error::Corrupt(format!("{}: consumer position changed under it", shown(&seg.config().name))));
        }
        if w & CURSOR_DETACHED == 0 && pos >= base {
            // A predecessor killed while pinned: producers waited for it, the ring is intact
            // from `pos`. AcqRel: as a publication; failure means a producer changed it.
            let plain =
                w & CURSOR_PINNED == 0 || word.compare_exchange(w, pos, Ordering::AcqRel, Ordering::Acquire).is_ok();
            if plain && cursors::confirm(seg, cap, 0, pos) {
                return Ok(());
            }
        }
        // The log: make sure the cursor says so, and nothing else (a position below the
        // ring's start that is not flagged; a dead predecessor's pin), then read from the
        // position.
        let mut w = word.load(Ordering::Acquire);
        while w != pos | CURSOR_DETACHED {
            // AcqRel: producers read the detach through the cursor.
            match word.compare_exchange(w, pos | CURSOR_DETACHED, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => break,
                Err(now) => w = now,
            }
        }
        self.enter_log();
        Ok(())
    }

    /// From now on the consumer reads the log (its cursor is detached).
    fn enter_log(&mut self) {
        self.pinned = false;
        self.ring.set_limit(0);
        if self.backlog.is_none() {
            let seg = &self.h.shared.seg;
            let j = self.journal.as_ref().expect("a durable queue's consumer has a journal handle");
            let seg_size = seg.config().durable.as_ref().map_or(1 << 20, |d| d.seg_size);
            // Relaxed: fixed at creation (checked when the consumer attached).
            let base = seg.header().durable.base.load(Ordering::Relaxed);
            let b = Backlog::new(j.log().clone(), seg.config().capacity, seg_size).strict_from(base);
            self.backlog = Some(Box::new(b));
        }
    }

    /// Pins the cursor before reading in the ring. `false` if a producer detached it first:
    /// the consumer reads the log from now on.
    fn pin(&mut self) -> Result<bool> {
        let seg = &self.h.shared.seg;
        let at = self.ring.published();
        // SYNC POINT: Acquire pairs with the producers' detach (AcqRel CAS): success means
        // no producer detached the cursor since it stood at `at`, so nothing at or above
        // `at` was overwritten, and none will be while it is pinned (producers wait for a
        // pinned cursor). Failure: Acquire, as a read of the detach.
        match seg.cursor(0).compare_exchange(at, at | CURSOR_PINNED, Ordering::Acquire, Ordering::Acquire) {
            Ok(_) => {
                self.pinned = true;
                self.ring.set_limit(visible(seg));
                Ok(true)
            }
            Err(now) if now == at | CURSOR_DETACHED => {
                self.enter_log();
                Ok(false)
            }
            Err(now) => Err(Error::Corrupt(format!(
                "{}: consumer cursor {now:#x} changed under it (it published {at})",
                shown(&seg.config().name)
            ))),
        }
    }

    /// Stores the consumer's position (unpinning it: its reads in the ring are done) and
    /// wakes producers waiting for space.
    pub(super) fn spill_publish(&mut self) {
        let seg = &self.h.shared.seg;
        let at = self.ring.publishable();
        let old = self.ring.published();
        let word = seg.cursor(0);
        let (from, to) = if self.backlog.is_some() {
            (old | CURSOR_DETACHED, at | CURSOR_DETACHED)
        } else if self.pinned {
            (old | CURSOR_PINNED, at)
        } else {
            (old, at)
        };
        // SYNC POINT: Release pairs with the producers' Acquire load of the cursor: our reads
        // of the bytes released are done before anyone overwrites them. Acquire on failure:
        // a read of the producer's detach.
        if let Err(now) = word.compare_exchange(from, to, Ordering::Release, Ordering::Acquire) {
            if now == old | CURSOR_DETACHED && self.backlog.is_none() && !self.pinned {
                // Detached while not pinned (we read nothing in the ring meanwhile): the log
                // from here on. Release: as above.
                let _ = word.compare_exchange(now, at | CURSOR_DETACHED, Ordering::Release, Ordering::Relaxed);
                self.enter_log();
            }
            // Anything else is a scribble: the next pin reports it (and `published` below
            // no longer matches the word, so every later swap fails until then).
        }
        let seg = &self.h.shared.seg;
        self.pinned = false;
        self.ring.set_limit(0);
        self.ring.mark_published(at);
        if wake_space(seg) {
            self.woke();
        }
    }

    /// The next message in the log, without rejoining the ring (the rest of a batch; a
    /// member's span in the log).
    pub(super) fn log_frame(&mut self) -> Result<Option<Record>> {
        let end = match &self.member {
            Some(m) => m.end,
            None => super::log_end(&self.h.shared.seg),
        };
        let b = self.backlog.as_mut().expect("reading the log");
        match b.next(self.ring.head(), end)? {
            Step::Frame(f) => Ok(Some(self.log_record(f))),
            Step::End(at) => {
                // Padding (or a restart's gap) passed: a member's span ends there.
                self.ring.skip_to(at);
                Ok(None)
            }
        }
    }

    fn log_record(&mut self, f: crate::queue::backlog::Frame) -> Record {
        self.ring.skip_to(f.pos);
        // The log's reader strips the prefix (timestamp, checksum) itself.
        Record { pos: f.pos, payload: f.offset, len: f.len, size: f.next - f.pos }
    }

    /// Reads the next message from the log; when it has no more, rejoins the ring there.
    fn log_step(&mut self) -> Result<LogStep> {
        let end = super::log_end(&self.h.shared.seg);
        let b = self.backlog.as_mut().expect("reading the log");
        let at = match b.next(self.ring.head(), end)? {
            Step::Frame(f) => return Ok(LogStep::Record(self.log_record(f))),
            Step::End(at) => at,
        };
        self.ring.skip_to(at);
        let pos = self.ring.head();
        if self.ring.publishable() < pos {
            // Messages held below: the ring does not have them any more, the cursor must
            // stay where they are. The log until they are released.
            return Ok(LogStep::Stay);
        }
        if self.ring.has_unpublished() {
            self.spill_publish();
        }
        let seg = &self.h.shared.seg;
        crate::failpoint::hit("spill-rejoin");
        if cursors::rejoin_at(seg, seg.config().capacity, 0, pos | CURSOR_DETACHED, pos) {
            self.backlog = None;
            return Ok(LogStep::Rejoined);
        }
        Ok(if super::log_end(seg) > pos { LogStep::Behind } else { LogStep::Stay })
    }

    /// The next record, from the log or (pinned) the ring; `None` when there is none now,
    /// and then the cursor is not pinned.
    fn spill_try(&mut self) -> Result<Option<Record>> {
        for _ in 0..ROUNDS {
            if self.backlog.is_some() {
                match self.log_step()? {
                    LogStep::Record(r) => return Ok(Some(r)),
                    LogStep::Behind => continue,
                    LogStep::Stay => return Ok(None),
                    LogStep::Rejoined => {}
                }
            }
            if self.pinned {
                // Pinned already (a peek): under `Fsync::Always`, what is synced now.
                self.ring.set_limit(visible(&self.h.shared.seg));
            } else if !self.pin()? {
                continue;
            }
            if let Some(rec) = self.peek_ring()? {
                return Ok(Some(rec));
            }
            // Pinned, the ring is ours to look at: a dead producer's claim (MPSC) is passed.
            if self.unstick()? {
                if let Some(rec) = self.peek_ring()? {
                    return Ok(Some(rec));
                }
            }
            // Unpin (handing back padding passed) before waiting.
            self.spill_publish();
            return Ok(None);
        }
        Ok(None)
    }

    /// The common case of a durable queue's consumer reading in the ring, as
    /// [`Consumer::look_or_spin`] is a volatile queue's: looks at the head without pinning
    /// the cursor, and if nothing is there yet and `spin`, looks again up to
    /// [`SPIN_IN_LINE`](super::SPIN_IN_LINE) times. A look decides nothing by itself: it
    /// reads the stamp at the head (as [`ready`] does), and only once the cursor is pinned
    /// is the record read, by a second look. A pin that fails means a producer detached the
    /// cursor meanwhile: the consumer reads the log from then on (the caller's general path).
    /// [`Spot::Empty`]: the ring holds nothing at the head (on an MPSC queue, nothing is
    /// claimed there either), and the cursor was not detached (so the head was not
    /// overwritten: nothing was sent there yet) and has nothing to hand back; a receive
    /// that does not wait is done. [`Spot::General`]: anything else (padding, a record
    /// from the log, a peek that pinned already, a claim at an MPSC head, which may be a
    /// dead producer's); the caller goes on with the general path.
    ///
    /// The general path pins and peeks for every receive, and when it finds nothing unpins,
    /// offers to journal, pins, peeks and unpins again before it waits; this look spares a
    /// reply in a request/response exchange (`pingpong --durable` in the examples) and an
    /// empty `try_recv` that work. `Err` only for a cursor word that changed under us.
    #[inline]
    fn spill_look(&mut self, spin: bool) -> Result<Spot> {
        if self.pinned || self.backlog.is_some() {
            return Ok(Spot::General);
        }
        let seg = &self.h.shared.seg;
        // Looks only (the limit goes back to 0 below unless the cursor is pinned): under
        // `Fsync::Always`, at what is synced now.
        self.ring.set_limit(visible(seg));
        let mut look = self.ring.look(&self.h.region);
        if spin && self.h.wait != Wait::Block {
            for _ in 0..super::SPIN_IN_LINE {
                if !matches!(look, Look::Nothing) {
                    break;
                }
                std::hint::spin_loop();
                self.ring.set_limit(visible(seg));
                look = self.ring.look(&self.h.region);
            }
        }
        if !matches!(look, Look::Message(_)) {
            self.ring.set_limit(0);
            let empty = matches!(look, Look::Nothing)
                && !self.ring.has_unpublished()
                // SYNC POINT: Acquire, after the look's Acquire load of the head's word
                // (a look that stopped at the limit read no word, and needs none: nothing
                // is readable below it). A producer writes over our head only after its
                // `cursors::gate` detached this cursor and then ran that function's SeqCst
                // fence: whatever it wrote there (a later lap's stamp, or payload bytes,
                // which carry no Release of their own), the fence orders the detach before
                // it, so a word from a later lap read by the look comes with the detach
                // read here. `cursors::gate` says that this relies on its fence.
                && seg.cursor(0).load(Ordering::Acquire) == self.ring.published()
                // MPSC: nothing claimed at the head either (a claim there may be a dead
                // producer's, which the general path passes). Acquire: as every read of
                // `tail`, though only its value is used.
                && (seg.config().mode == Mode::Spsc
                    || seg.header().producer.tail.load(Ordering::Acquire) <= self.ring.head());
            return Ok(if empty { Spot::Empty } else { Spot::General });
        }
        // A pin that fails leaves the limit at 0: detached (the log from now on), or a
        // scribbled cursor (reported).
        let pinned = self.pin();
        if !matches!(pinned, Ok(true)) {
            self.ring.set_limit(0);
            return pinned.map(|_| Spot::General);
        }
        // Pinned (the limit is `visible` again): the record cannot change under us now.
        Ok(match self.ring.look(&self.h.region) {
            Look::Message(rec) => Spot::Record(rec),
            // Pinned, with nothing readable: the general path goes on from the pin.
            _ => Spot::General,
        })
    }

    /// [`Consumer::next_slow`] of a durable queue's consumer.
    #[inline(never)]
    pub(super) fn spill_next(&mut self, mut until: Until) -> Result<Option<Record>> {
        let mpsc = self.h.shared.seg.config().mode == Mode::Mpsc;
        match self.spill_look(!matches!(until, Until::Now))? {
            Spot::Record(rec) => return Ok(Some(rec)),
            Spot::Empty if matches!(until, Until::Now) => {
                if self.h.is_closed() || !super::default_subscribed(&self.h.shared.seg) {
                    return Err(Error::Closed);
                }
                return Ok(None);
            }
            Spot::Empty | Spot::General => {}
        }
        loop {
            if let Some(rec) = self.spill_try()? {
                return Ok(Some(rec));
            }
            if self.h.is_closed() || !super::default_subscribed(&self.h.shared.seg) {
                return Err(Error::Closed);
            }
            let Some(d) = until.fix() else { return Ok(None) };
            if let Some(j) = &self.journal {
                let seg = &self.h.shared.seg;
                // About to wait: write what producers sent to the log (if the role is free),
                // so producers rarely stop to. Reading the log, make the journal move: the
                // ring may hold what we wait for.
                let read_to = self.backlog.is_none().then(|| self.ring.head());
                let _ = j.write_ahead(seg, read_to);
                if self.backlog.is_some() {
                    let _ = j.step(seg, false);
                }
            }
            if let Some(rec) = self.spill_try()? {
                return Ok(Some(rec));
            }
            let log = self.backlog.is_some();
            let slice = if log {
                Some(LOG_POLL)
            } else if mpsc {
                Some(if self.stuck.is_some() { super::STUCK_AFTER } else { super::STUCK_CHECK })
            } else {
                None
            };
            let slice = slice.map(|s| Instant::now() + s);
            let until = match (d, slice) {
                (Some(d), Some(s)) => Some(d.min(s)),
                (d, s) => d.or(s),
            };
            let (head, prefix) = (self.ring.head(), self.h.shared.seg.config().prefix());
            let journal = &self.journal;
            let mut polls = 0u32;
            let r = self.h.wait_for(until, |seg| {
                if ready(seg, head, prefix, log) {
                    return Some(Ok(()));
                }
                // Waiting, keep offering to write ahead (every few polls: an offer that
                // finds the backlog large and the role taken costs a system call): a
                // producer that found the ring full holds the role for a pass, then sends
                // again into the room it made, and this consumer, idle meanwhile, can
                // journal the next pass while it does. Without these offers the two
                // alternated: the producer journaled nearly every pass itself, and the
                // queue streamed at the rate of one process doing all the work. A pass
                // ends the wait only if there is something to read now: the wait's
                // deadline is checked only while it goes on, and a journal that reports
                // progress without reaching anything readable (a stopped producer's claim
                // holding it) must not keep a timed receive going for ever.
                polls = polls.wrapping_add(1);
                let j = journal.as_ref().filter(|_| polls % WRITE_AHEAD_EVERY == 0)?;
                let _ = j.write_ahead(seg, (!log).then_some(head));
                ready(seg, head, prefix, log).then_some(Ok(()))
            });
            match r {
                Ok(()) => {}
                Err(Error::Timeout) if d.is_none_or(|d| Instant::now() < d) => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// [`Consumer::advance`] of a durable queue's consumer.
    pub(super) fn spill_advance(&mut self) -> Result<bool> {
        match self.next(Until::Now)? {
            Some(rec) => {
                self.release(rec);
                self.publish();
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// [`Consumer::is_empty`] of a durable queue's consumer: a look, not pinned.
    pub(super) fn spill_is_empty(&self) -> bool {
        let seg = &self.h.shared.seg;
        !ready(seg, self.ring.head(), seg.config().prefix(), self.backlog.is_some())
    }
}

/// Whether a durable queue's consumer at `head` has something to do: its cursor was
/// detached, or there is a message to read (in the log while `log`, else in the ring: a
/// look without pinning, at stamps only, so a record overwritten meanwhile reads as none).
fn ready(seg: &Segment, head: u64, prefix: u32, log: bool) -> bool {
    if seg.is_closed() {
        return true;
    }
    if log {
        return super::log_end(seg) > head;
    }
    // Acquire: as the consumer's other reads of its cursor.
    if seg.cursor(0).load(Ordering::Acquire) & CURSOR_DETACHED != 0 {
        return true;
    }
    match consumer::Consumer::new(seg.config().geometry(), head) {
        Ok(mut probe) => {
            probe.set_prefix(prefix);
            probe.set_limit(visible(seg));
            !probe.is_empty(&seg.region())
        }
        Err(_) => true,
    }
}

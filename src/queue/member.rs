//! A member of a named subscription: how it joins, claims spans of messages (the algorithm
//! is `ring::cursors::claim`), hands back what it has read, takes over what a dead member
//! left, and learns it was lapped.
//!
//! A member that dies leaves its entry's claim: another
//! member takes the dead slot's lock (the kernel grants it only once the holder is dead, and
//! to one taker), delivers the span again (one more delivery) and clears it. A claim still
//! `CLAIMING` is ambiguous (the member died around its compare-and-swap): if the cursor
//! still stands at its start, the member never took it; otherwise it is delivered again
//! (at-least-once).
//!
//! On a durable queue a subscription spills like the default consumer (see `spill.rs`):
//! producers detach its cursor rather than wait for it, and its members claim spans in the
//! log from the detached cursor's position (recorded in their claim words, then the cursor
//! moved past them by compare-and-swap, as in the ring), until the log has no more; then
//! one of them rejoins the ring there ([`cursors::rejoin_at`]). A dead member's span is not
//! waited for by producers (it is in the log): the member that takes it over reads it from
//! the log, after journaling it if the journal had not yet.

use std::sync::Arc;
use std::time::Duration;

use super::backlog::{Backlog, Step};
use super::gate;
use crate::error::{Error, Result};
use crate::layout::{self, CLAIM_HELD, CLAIM_NONE, CURSOR_DETACHED};
use crate::ring::consumer;
use crate::ring::cursors::claim_state;
use crate::ring::cursors::{self, Claim, Cursors};
use crate::segment::Segment;
use crate::sync::atomic::Ordering;

/// Most messages a member claims at once.
pub(super) const BATCH: usize = 16;
/// Most messages a member claims at once when it is its subscription's only member and the
/// subscription's messages are released by reading them (not explicitly acknowledged):
/// there is nobody to share them with, and each claim costs three compare-and-swaps. (A
/// claimed span is still released as it is read, so producers are not held back by it, and
/// a member that joins meanwhile gets the next claim; a member killed mid-span has only its
/// unread part delivered again, as with any batch.) With [`BATCH`] a single member
/// delivered 48 M msgs/s at 64 B where the default consumer delivered 88-94 M; with this,
/// 68 M (`shmq bench --fanout`).
pub(super) const SOLO_BATCH: usize = 256;
/// How often a waiting member looks for dead members' claims (it waits in slices of this
/// length).
pub(super) const ADOPT_EVERY: Duration = Duration::from_millis(50);
/// A member with work looks for dead members' claims every this many claims (a dead
/// member's span holds producers back, so the ring fills and members come to wait within a
/// lap at the latest; this only makes it sooner, without a clock read per claim).
const ADOPT_EVERY_CLAIMS: u32 = 256;
/// A member's claim that keeps having to start again (a hostile writer flipping the cursor's
/// flags) gives up.
const MAX_RETRIES: u32 = 1 << 16;

/// A member's private state.
pub(super) struct Member {
    /// Its subscription entry.
    pub(super) sub: usize,
    /// The entry's generation when it joined.
    pub(super) generation: u32,
    /// Its participant slot (and member table entry).
    pub(super) slot: usize,
    /// The member table entry whose claim it is reading: its own, or a dead member's whose
    /// lock it holds. `None`: no span.
    pub(super) span_of: Option<usize>,
    /// Deliveries of the span being read.
    pub(super) deliveries: u32,
    /// Claims since it last looked for dead members' claims.
    pub(super) since_adopt: u32,
    /// A durable queue's log and journal (members read spans there when spilled).
    durable: Option<(Arc<crate::log::Log>, super::journal::Journal)>,
    /// The log reader while a span in the ring is being read (kept for the next log span).
    spare: Option<Box<Backlog>>,
    /// A log reader for single messages (explicit acks deliver them again from the log).
    random: Option<Box<Backlog>>,
    /// The end of the span being read. For a span in the ring it is also the ring reader's
    /// limit; for one in the log the ring reader's limit stays at the span's start, so that
    /// nothing is read in the ring (the consumer reads the log up to here).
    pub(super) end: u64,
}

/// Where the consumer keeps the log reader of the span it reads: `Some` while that span is in
/// the log.
pub(super) type LogSlot = Option<Box<Backlog>>;

/// What [`Member::log_claim`] found.
enum LogClaimed {
    Span,
    Nothing,
    Retry,
}

/// What a claim attempt found.
pub(super) enum Claimed {
    /// A span is set in the ring reader.
    Span,
    /// Nothing to claim now.
    Nothing,
}

impl Member {
    /// Whether the subscription it joined still exists.
    pub(super) fn subscribed(&self, seg: &Segment) -> bool {
        let meta = &seg.sub(self.sub).meta;
        // Acquire: pairs with the Release store of FREE in `free_entry`.
        meta.state.load(Ordering::Acquire) == layout::SUB_ACTIVE
            // Relaxed: ordered after the Acquire load above.
            && meta.generation.load(Ordering::Relaxed) == self.generation
    }

    /// Called when the ring reader reached the end of its span (or has none): hands the
    /// span back. Returns whether one was handed back (the caller then wakes producers).
    pub(super) fn finish_span(&mut self, seg: &Segment, ring: &consumer::Consumer) -> bool {
        let Some(j) = self.span_of else { return false };
        if ring.head() < self.end {
            // Part read: what is released no longer needs delivering again if we die, and
            // producers may have its space (the caller wakes them).
            // SYNC POINT: Release pairs with the producers' Acquire load of `claim_pos`: our
            // reads of the records below the new start are done.
            seg.member(j).claim_pos.store(ring.head(), Ordering::Release);
            return false;
        }
        crate::failpoint::hit("member-span-read");
        cursors::release(seg.claim(j));
        if j != self.slot {
            // A dead member's slot, adopted: it leaves the subscription now, and its lock
            // goes back for the next process to take the slot.
            seg.leave_subscription(j);
            seg.unlock_slot(j);
        }
        self.span_of = None;
        self.deliveries = 1;
        true
    }

    /// On leaving: a span not fully read stays claimed from the first unread record, in
    /// our entry (or the adopted one), for another member to take over.
    pub(super) fn leave(&mut self, seg: &Segment, ring: &consumer::Consumer) {
        if self.finish_span(seg, ring) {
            return;
        }
        if let Some(j) = self.span_of.take() {
            // Relaxed: the unlock (or our death) orders it for the adopter, which takes the
            // slot's lock first. Nobody received the rest: the adopter's delivery makes the
            // count what it is now.
            seg.member(j).deliveries.store(self.deliveries.saturating_sub(1), Ordering::Relaxed);
            if j != self.slot {
                seg.unlock_slot(j);
            }
        }
    }

    /// Claims the next span: adopts a dead member's first (every [`ADOPT_EVERY_CLAIMS`]
    /// claims, or when `force`), then claims from the cursor. `Err(Lapped)` when the subscription
    /// was detached (it has rejoined), `Err(Closed)` when it was removed.
    pub(super) fn claim(
        &mut self,
        seg: &Segment,
        ring: &mut consumer::Consumer,
        force: bool,
        log: &mut LogSlot,
    ) -> Result<Claimed> {
        debug_assert!(self.span_of.is_none());
        if !self.subscribed(seg) {
            return Err(Error::Closed);
        }
        // Our own slot's claim words may still hold a claim our slot's dead predecessor left
        // and `join` could not deliver yet (not all in the log then): it goes first, and it
        // must not be overwritten by a new claim. Relaxed: we hold the slot's lock.
        if claim_state(seg.member(self.slot).claim_state.load(Ordering::Relaxed)) != CLAIM_NONE {
            match take_over(seg, self.sub, self.slot, self.durable.as_ref())? {
                TakeOver::Deliver { pos, end, deliveries, in_log } => {
                    self.set_span(ring, pos, end, in_log);
                    if in_log {
                        self.in_log(seg, log);
                    } else {
                        self.in_ring(log);
                    }
                    self.span_of = Some(self.slot);
                    self.deliveries = deliveries;
                    return Ok(Claimed::Span);
                }
                TakeOver::Later => return Ok(Claimed::Nothing),
                TakeOver::Nothing => {}
            }
        }
        self.since_adopt = self.since_adopt.saturating_add(1);
        if force || self.since_adopt >= ADOPT_EVERY_CLAIMS {
            self.since_adopt = 0;
            if self.adopt(seg, ring, log)? {
                return Ok(Claimed::Span);
            }
        }
        let geo = seg.config().geometry();
        let mine = seg.claim(self.slot);
        // Explicit acks: nothing of the next claim is entered yet. Relaxed: published with
        // the claim record by the cursor's compare-and-swap (Release).
        seg.member(self.slot).entered.store(0, Ordering::Relaxed);
        // Relaxed: a hint; a member joining meanwhile waits at most for this claim's span.
        let alone = seg.sub(self.sub).cursor.members.load(Ordering::Relaxed) == 1 << self.slot;
        let batch = if alone && !super::acks::explicit(seg, self.sub) { SOLO_BATCH } else { BATCH };
        for _ in 0..MAX_RETRIES {
            let got = cursors::claim(seg, &geo, &seg.region(), self.sub, mine, batch, super::journal::visible(seg))
                .map_err(|e| super::attach::corrupt(seg, e))?;
            match got {
                Claim::Span(start, end) => {
                    // Relaxed: read by an adopter only, under our slot's lock.
                    seg.member(self.slot).deliveries.store(1, Ordering::Relaxed);
                    self.set_span(ring, start, end, false);
                    self.span_of = Some(self.slot);
                    self.deliveries = 1;
                    self.in_ring(log);
                    return Ok(Claimed::Span);
                }
                Claim::Nothing => return Ok(Claimed::Nothing),
                Claim::Retry => continue,
                Claim::Spilled => match self.log_claim(seg, ring, log)? {
                    LogClaimed::Span => return Ok(Claimed::Span),
                    LogClaimed::Nothing => return Ok(Claimed::Nothing),
                    LogClaimed::Retry => continue,
                },
                Claim::Lapped { pos, start } => {
                    if !self.subscribed(seg) {
                        // Removed meanwhile: leave it detached, as the remover did.
                        // AcqRel: as any change of a cursor word.
                        let _ = seg.cursor(self.sub).fetch_or(CURSOR_DETACHED, Ordering::AcqRel);
                        return Err(Error::Closed);
                    }
                    let missed = start.saturating_sub(pos);
                    // Relaxed: a statistic.
                    seg.sub(self.sub).meta.missed_bytes.fetch_add(missed, Ordering::Relaxed);
                    return Err(Error::Lapped { missed_bytes: missed });
                }
            }
        }
        Err(Error::Corrupt(format!("{:?}: subscription cursor keeps changing", seg.config().name)))
    }

    /// Makes `[pos, end)` the span the consumer reads: in the ring reader, or (`in_log`) with
    /// the ring reader held at its start while the consumer reads the log.
    fn set_span(&mut self, ring: &mut consumer::Consumer, pos: u64, end: u64, in_log: bool) {
        ring.set_span(pos, end);
        if in_log {
            ring.set_limit(pos);
        }
        self.end = end;
    }

    /// The span being read is in the ring: the log reader goes back to the spare.
    fn in_ring(&mut self, log: &mut LogSlot) {
        if let Some(b) = log.take() {
            self.spare = Some(b);
        }
    }

    /// The span being read is in the log: the log reader (made once) goes to `log`.
    fn in_log(&mut self, seg: &Segment, log: &mut LogSlot) {
        if log.is_none() {
            let b = self.spare.take().unwrap_or_else(|| {
                let (l, _) = self.durable.as_ref().expect("a durable queue's member");
                let seg_size = seg.config().durable.as_ref().map_or(1 << 20, |d| d.seg_size);
                Box::new(Backlog::new(l.clone(), seg.config().capacity, seg_size).strict_from(ring_start(seg)))
            });
            *log = Some(b);
        }
    }

    /// Claims the next span of a spilled subscription in the log: up to [`BATCH`] messages
    /// from its cursor's position, recorded in our claim words before the cursor moves past
    /// them by compare-and-swap (as in the ring). When the log has no more, rejoins the ring
    /// there.
    fn log_claim(&mut self, seg: &Segment, ring: &mut consumer::Consumer, log: &mut LogSlot) -> Result<LogClaimed> {
        let word = seg.cursor(self.sub);
        // A claim in the middle of being taken is finished first.
        let w = cursors::settled(seg, self.sub).map_err(|e| super::attach::corrupt(seg, e))?;
        if w & CURSOR_DETACHED == 0 {
            return Ok(LogClaimed::Retry);
        }
        let p = w & !cursors::FLAGS;
        if !crate::ring::plausible(p) {
            return Err(Error::Corrupt(format!("{:?}: subscription cursor {w:#x}", seg.config().name)));
        }
        let end = super::consumer::log_end(seg);
        self.in_log(seg, log);
        let b = log.as_mut().expect("made above");
        let (mut e, mut n) = (p, 0);
        while n < BATCH {
            match b.next(e, end)? {
                Step::Frame(f) => {
                    e = f.next;
                    n += 1;
                }
                Step::End(at) => {
                    e = e.max(at);
                    break;
                }
            }
        }
        if e == p {
            // Everything in the log is claimed: back to the ring here, if no producer may be
            // overwriting it (else the log has grown: claim on).
            if cursors::rejoin_at(seg, seg.config().capacity, self.sub, w, p) {
                self.in_ring(log);
                return Ok(LogClaimed::Retry);
            }
            return Ok(if super::consumer::log_end(seg) > p { LogClaimed::Retry } else { LogClaimed::Nothing });
        }
        if n == 0 {
            // Only padding (or a restart's gap): nothing to deliver, move the cursor past it.
            // AcqRel: as the claim's swap below.
            let _ = word.compare_exchange(w, e | CURSOR_DETACHED, Ordering::AcqRel, Ordering::Acquire);
            return Ok(LogClaimed::Retry);
        }
        // As in the ring: recorded, then taken by a compare-and-swap that locks the cursor
        // (kept detached) until the claim is marked held.
        if !cursors::take(seg, self.sub, seg.claim(self.slot), w, e).map_err(|e| super::attach::corrupt(seg, e))? {
            return Ok(LogClaimed::Retry);
        }
        // Relaxed: read by an adopter only, under our slot's lock.
        seg.member(self.slot).deliveries.store(1, Ordering::Relaxed);
        self.set_span(ring, p, e, true);
        self.span_of = Some(self.slot);
        self.deliveries = 1;
        Ok(LogClaimed::Span)
    }

    /// Reads message `[pos, end)` from the log into `out`, journaling it first if the
    /// journal has not written it yet. `Ok(None)`: not in the log yet (an earlier claim of a
    /// live producer holds the journal back); `Corrupt` if the log has no message there.
    pub(super) fn read_message(&mut self, seg: &Segment, pos: u64, end: u64, out: &mut Vec<u8>) -> Result<Option<()>> {
        let (log, journal) = self.durable.as_ref().expect("a durable queue's member");
        if super::consumer::log_end(seg) < end {
            journal.catch_up(seg, true)?;
            if super::consumer::log_end(seg) < end {
                return Ok(None);
            }
        }
        let b = self.random.get_or_insert_with(|| {
            let seg_size = seg.config().durable.as_ref().map_or(1 << 20, |d| d.seg_size);
            Box::new(Backlog::new(log.clone(), seg.config().capacity, seg_size).strict_from(ring_start(seg)))
        });
        match b.next(pos, end)? {
            Step::Frame(f) if f.pos == pos && f.next == end => {
                out.clear();
                out.extend_from_slice(&b.bytes()[f.offset..f.offset + f.len as usize]);
                Ok(Some(()))
            }
            _ => Err(Error::Corrupt(format!(
                "{:?}: the log holds no message at [{pos}, {end}) for an in-flight entry",
                seg.config().name
            ))),
        }
    }

    /// Gives up the span being read, whose records are not all there any more (a hostile
    /// writer): hands it back as if read.
    pub(super) fn abandon(&mut self, seg: &Segment, ring: &mut consumer::Consumer) {
        let end = self.end;
        self.set_span(ring, end, end, false);
        self.finish_span(seg, ring);
    }

    /// Takes over the claim of a member of our subscription that died (or left with a span
    /// not fully read). Returns whether a span is now set in `ring` (and `log` says where).
    fn adopt(&mut self, seg: &Segment, ring: &mut consumer::Consumer, log: &mut LogSlot) -> Result<bool> {
        // Acquire: pairs with the Release `fetch_or` of a member's bit.
        let mask = seg.sub(self.sub).cursor.members.load(Ordering::Acquire);
        for j in gate::bits(mask).filter(|&j| j != self.slot && j < layout::MEMBERS) {
            let m = seg.member(j);
            // Acquire: pairs with a member's stores of its claim (Release when it clears it).
            if claim_state(m.claim_state.load(Ordering::Acquire)) == CLAIM_NONE {
                continue;
            }
            // The kernel grants the lock only when nobody holds it: its holder died (or left).
            if !seg.try_lock_slot(j) {
                continue;
            }
            // Relaxed: the lock orders us after the previous holder's stores.
            let ours = m.sub.load(Ordering::Relaxed) as usize == self.sub
                && m.generation.load(Ordering::Relaxed) == self.generation;
            if !ours {
                seg.unlock_slot(j);
                continue;
            }
            let (pos, end, deliveries, in_log) = match take_over(seg, self.sub, j, self.durable.as_ref())? {
                TakeOver::Deliver { pos, end, deliveries, in_log } => (pos, end, deliveries, in_log),
                TakeOver::Nothing => {
                    seg.leave_subscription(j);
                    seg.unlock_slot(j);
                    continue;
                }
                TakeOver::Later => {
                    seg.unlock_slot(j);
                    continue;
                }
            };
            self.set_span(ring, pos, end, in_log);
            if in_log {
                self.in_log(seg, log);
            } else {
                self.in_ring(log);
            }
            self.span_of = Some(j);
            self.deliveries = deliveries;
            crate::failpoint::hit("member-adopted");
            return Ok(true);
        }
        Ok(false)
    }
}

/// Joins subscription entry `sub` (generation `generation`) as the holder of participant
/// slot `slot` (registered, its lock held). A claim left in the slot's member table entry
/// by a dead member of the same subscription (the registration allowed it) is taken over.
pub(super) fn join(
    seg: &Segment,
    slot: usize,
    sub: usize,
    generation: u32,
    ring: &mut consumer::Consumer,
    log: &mut LogSlot,
) -> Result<Member> {
    let m = seg.member(slot);
    let durable = match &seg.config().durable {
        Some(d) => {
            let l = super::journal::shared_log(&d.dir, d.identity)?;
            let j = super::journal::Journal::attach_untimed(seg)?.expect("a durable queue");
            Some((l, j))
        }
        None => None,
    };
    let mut member = Member {
        sub,
        generation,
        slot,
        span_of: None,
        deliveries: 1,
        since_adopt: ADOPT_EVERY_CLAIMS,
        durable,
        spare: None,
        random: None,
        end: 0,
    };
    // A claim the previous holder (a member of this subscription that died) left. One that
    // must wait for the journal is left for a later adoption (by us or another member).
    match take_over(seg, sub, slot, member.durable.as_ref())? {
        TakeOver::Deliver { pos, end, deliveries, in_log } => {
            member.set_span(ring, pos, end, in_log);
            if in_log {
                member.in_log(seg, log);
            }
            member.span_of = Some(slot);
            member.deliveries = deliveries;
            crate::failpoint::hit("member-adopted");
        }
        TakeOver::Nothing | TakeOver::Later => member.set_span(ring, 0, 0, false),
    }
    // Relaxed: published by the Release `fetch_or` of our bit below.
    m.sub.store(sub as u32, Ordering::Relaxed);
    m.generation.store(generation, Ordering::Relaxed);
    m.state.store(layout::SLOT_ACTIVE, Ordering::Relaxed);
    let e = seg.sub(sub);
    // SYNC POINT: Release (in AcqRel) pairs with the producers' Acquire load of the mask:
    // our entry is visible before they read its claims.
    e.cursor.members.fetch_or(1 << slot, Ordering::AcqRel);
    // Relaxed: sticky; producers look at the entry's waiter set after every publication
    // from now on, long before we first sleep (the Dekker pair is on the waiter set).
    seg.header().subs.sleepers.fetch_or(1 << sub, Ordering::Relaxed);
    if !member.subscribed(seg) {
        // Removed meanwhile (the remover may have emptied the mask before our bit went in):
        // nothing of ours may stay behind to hold producers back.
        cursors::release(seg.claim(slot));
        // Relaxed: as in `leave_subscription`.
        e.cursor.members.fetch_and(!(1 << slot), Ordering::Relaxed);
        return Err(Error::NotFound("the subscription was removed while joining".into()));
    }
    Ok(member)
}

/// What [`take_over`] decided.
enum TakeOver {
    /// Deliver `[pos, end)` again (from the log if `in_log`).
    Deliver { pos: u64, end: u64, deliveries: u32, in_log: bool },
    /// Nothing to deliver: the claim is cleared.
    Nothing,
    /// Not yet: the span is not all in the log (a durable queue), and it stays claimed.
    Later,
}

/// Resolves the claim left in member table entry `j` (whose slot's lock we hold: its holder
/// died, or left with a span not fully read) by a member of entry `sub`: deliver the span
/// again (the entry then says so), or nothing to deliver (the entry's claim is cleared), or
/// later.
///
/// On a durable queue (`durable`) the span is read from the log, never the ring: producers
/// do not wait for a dead member's claim there, so the ring may be overwriting it. A span
/// the journal has not written yet is journaled first (producers cannot have overwritten
/// it then); if it still is not in the log, later.
///
/// A claim marked claiming was the dead member's only if its compare-and-swap locked the
/// cursor with it ([`cursors::claim_taken`], which finishes such a claim): otherwise it lost
/// the race for the span (another member has it, and may have acked it) or never tried,
/// and nothing is delivered.
fn take_over(
    seg: &Segment,
    sub: usize,
    j: usize,
    durable: Option<&(Arc<crate::log::Log>, super::journal::Journal)>,
) -> Result<TakeOver> {
    let m = seg.member(j);
    let cap = seg.config().capacity;
    // Relaxed throughout: the slot's lock orders us after the previous holder's stores.
    let cw = m.claim_state.load(Ordering::Relaxed);
    let (pos, end) = (m.claim_pos.load(Ordering::Relaxed), m.claim_end.load(Ordering::Relaxed));
    if claim_state(cw) == CLAIM_NONE {
        return Ok(TakeOver::Nothing);
    }
    // Also for a claim marked held: the member may have died before unlocking the cursor,
    // which must not stay locked with a claim we are about to hand back.
    let never_taken = !cursors::claim_taken(seg, sub, seg.claim(j), cw).map_err(|e| super::attach::corrupt(seg, e))?;
    let valid = crate::ring::plausible(pos) && crate::ring::plausible(end) && pos < end && end - pos <= cap;
    let in_log = durable.is_some();
    // Explicit acks: the messages below the member's `entered` are in the in-flight table
    // (handed out); the rest were never handed out.
    let explicit = valid && !never_taken && super::acks::explicit(seg, sub);
    let pos = if explicit {
        // Relaxed: the slot's lock orders us after the previous holder's stores.
        let entered = m.entered.load(Ordering::Relaxed);
        super::acks::take_over_claim(seg, sub, pos, end, entered)
    } else {
        pos
    };
    if explicit && pos == end {
        cursors::release(seg.claim(j));
        return Ok(TakeOver::Nothing);
    }
    // The span must still hold its records, stamped for their positions, up to its end
    // exactly (a claim recorded by a member that lost the race may name bytes producers
    // have since reused); on a durable queue, in the log.
    let messages = match durable {
        _ if !valid || never_taken => None,
        None => intact(seg, pos, end),
        Some((log, journal)) => {
            if super::consumer::log_end(seg) < end {
                journal.catch_up(seg, true)?;
                if super::consumer::log_end(seg) < end {
                    return Ok(TakeOver::Later);
                }
            }
            in_the_log(seg, log, pos, end)?
        }
    };
    let Some(messages) = messages else {
        cursors::release(seg.claim(j));
        return Ok(TakeOver::Nothing);
    };
    // Explicit acks: none of them was handed out yet.
    let deliveries = if explicit { 0 } else { m.deliveries.load(Ordering::Relaxed) }.saturating_add(1);
    m.deliveries.store(deliveries, Ordering::Relaxed);
    // HELD: whatever it was, it is delivered now. Release: as every store of a claim word
    // (see `cursors::take`).
    m.claim_state.store(layout::claim_word(cw >> 2, CLAIM_HELD), Ordering::Release);
    if deliveries >= 2 {
        // Relaxed: a statistic.
        seg.sub(sub).meta.redelivered.fetch_add(messages, Ordering::Relaxed);
    }
    Ok(TakeOver::Deliver { pos, end, deliveries, in_log })
}

/// Where the ring started (a restored queue's; 0 otherwise): the log is whole above it.
fn ring_start(seg: &Segment) -> u64 {
    // Relaxed: fixed at creation, validated with the header.
    seg.header().durable.base.load(Ordering::Relaxed)
}

/// How many messages `[pos, end)` holds in the log, if it holds frames ending exactly at
/// `end`; `None` otherwise.
fn in_the_log(seg: &Segment, log: &Arc<crate::log::Log>, pos: u64, end: u64) -> Result<Option<u64>> {
    let seg_size = seg.config().durable.as_ref().map_or(1 << 20, |d| d.seg_size);
    let mut b = Backlog::new(log.clone(), seg.config().capacity, seg_size).strict_from(ring_start(seg));
    let (mut at, mut messages) = (pos, 0u64);
    loop {
        match b.next(at, end)? {
            Step::Frame(f) => {
                messages += 1;
                at = f.next;
            }
            Step::End(e) => return Ok((e == end && at <= end).then_some(messages)),
        }
    }
}

/// How many messages `[pos, end)` holds, if it holds committed records (messages or
/// padding) stamped for their positions, ending exactly at `end`; `None` otherwise.
fn intact(seg: &Segment, pos: u64, end: u64) -> Option<u64> {
    let (geo, region) = (seg.config().geometry(), seg.region());
    let (mut at, mut messages) = (pos, 0u64);
    while at < end {
        match crate::ring::read_record(&geo, &region, at) {
            Ok(crate::ring::Found::Message { size, .. }) => {
                messages += 1;
                at += size;
            }
            Ok(crate::ring::Found::Skip { size }) => at += size,
            _ => return None,
        }
    }
    (at == end).then_some(messages)
}

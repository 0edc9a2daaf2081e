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

use std::time::Duration;

use super::gate;
use crate::error::{Error, Result};
use crate::layout::{self, CLAIM_CLAIMING, CLAIM_HELD, CLAIM_NONE, CURSOR_DETACHED};
use crate::ring::consumer;
use crate::ring::cursors::{self, Claim, Cursors};
use crate::segment::Segment;
use crate::sync::atomic::Ordering;

/// Most messages a member claims at once.
pub(super) const BATCH: usize = 16;
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
#[derive(Debug)]
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
        if ring.head() < ring.limit() {
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
    pub(super) fn claim(&mut self, seg: &Segment, ring: &mut consumer::Consumer, force: bool) -> Result<Claimed> {
        debug_assert!(self.span_of.is_none());
        if !self.subscribed(seg) {
            return Err(Error::Closed);
        }
        self.since_adopt = self.since_adopt.saturating_add(1);
        if force || self.since_adopt >= ADOPT_EVERY_CLAIMS {
            self.since_adopt = 0;
            if self.adopt(seg, ring) {
                return Ok(Claimed::Span);
            }
        }
        let geo = seg.config().geometry();
        let mine = seg.claim(self.slot);
        for _ in 0..MAX_RETRIES {
            let got = cursors::claim(seg, &geo, &seg.region(), self.sub, mine, BATCH, super::journal::visible(seg))
                .map_err(|e| super::attach::corrupt(seg, e))?;
            match got {
                Claim::Span(start, end) => {
                    // Relaxed: read by an adopter only, under our slot's lock.
                    seg.member(self.slot).deliveries.store(1, Ordering::Relaxed);
                    ring.set_span(start, end);
                    self.span_of = Some(self.slot);
                    self.deliveries = 1;
                    return Ok(Claimed::Span);
                }
                Claim::Nothing => return Ok(Claimed::Nothing),
                Claim::Retry => continue,
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

    /// Gives up the span being read, whose records are not all there any more (a hostile
    /// writer): hands it back as if read.
    pub(super) fn abandon(&mut self, seg: &Segment, ring: &mut consumer::Consumer) {
        let end = ring.limit();
        ring.set_span(end, end);
        self.finish_span(seg, ring);
    }

    /// Takes over the claim of a member of our subscription that died (or left with a span
    /// not fully read). Returns whether a span is now set in `ring`.
    fn adopt(&mut self, seg: &Segment, ring: &mut consumer::Consumer) -> bool {
        // Acquire: pairs with the Release `fetch_or` of a member's bit.
        let mask = seg.sub(self.sub).cursor.members.load(Ordering::Acquire);
        for j in gate::bits(mask).filter(|&j| j != self.slot && j < layout::MEMBERS) {
            let m = seg.member(j);
            // Acquire: pairs with a member's stores of its claim (Release when it clears it).
            if m.claim_state.load(Ordering::Acquire) == CLAIM_NONE {
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
            let Some((pos, end, deliveries)) = take_over(seg, self.sub, j) else {
                seg.leave_subscription(j);
                seg.unlock_slot(j);
                continue;
            };
            ring.set_span(pos, end);
            self.span_of = Some(j);
            self.deliveries = deliveries;
            crate::failpoint::hit("member-adopted");
            return true;
        }
        false
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
) -> Result<Member> {
    let m = seg.member(slot);
    let mut member = Member { sub, generation, slot, span_of: None, deliveries: 1, since_adopt: ADOPT_EVERY_CLAIMS };
    // A claim the previous holder (a member of this subscription that died) left.
    match take_over(seg, sub, slot) {
        Some((pos, end, deliveries)) => {
            ring.set_span(pos, end);
            member.span_of = Some(slot);
            member.deliveries = deliveries;
            crate::failpoint::hit("member-adopted");
        }
        None => ring.set_span(0, 0),
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

/// Resolves the claim left in member table entry `j` (whose slot's lock we hold: its holder
/// died, or left with a span not fully read) by a member of entry `sub`: `Some((start, end,
/// deliveries))` if the span is to be delivered again (the entry then says so), `None` if
/// there is nothing to deliver (the entry's claim is cleared).
///
/// A claim marked claiming is ambiguous (the holder died around its compare-and-swap on
/// the cursor): if the cursor still stands at its start (and is not flagged) the swap never
/// happened and the span is not the dead member's; otherwise it is delivered again
/// (at-least-once).
fn take_over(seg: &Segment, sub: usize, j: usize) -> Option<(u64, u64, u32)> {
    let m = seg.member(j);
    let cap = seg.config().capacity;
    // Relaxed throughout: the slot's lock orders us after the previous holder's stores.
    let state = m.claim_state.load(Ordering::Relaxed);
    let (pos, end) = (m.claim_pos.load(Ordering::Relaxed), m.claim_end.load(Ordering::Relaxed));
    if state == CLAIM_NONE {
        return None;
    }
    let valid = crate::ring::plausible(pos) && crate::ring::plausible(end) && pos < end && end - pos <= cap;
    // Acquire: as in `cursors::claim`.
    let w = seg.cursor(sub).load(Ordering::Acquire);
    let never_taken = state == CLAIM_CLAIMING && w & !cursors::FLAGS == pos;
    // The span must still hold its records, stamped for their positions, up to its end
    // exactly (a claim recorded by a member that lost the race may name bytes producers
    // have since reused).
    let messages = if valid && !never_taken { intact(seg, pos, end) } else { None };
    let Some(messages) = messages else {
        // Release: as in `cursors::release`.
        m.claim_state.store(CLAIM_NONE, Ordering::Release);
        return None;
    };
    let deliveries = m.deliveries.load(Ordering::Relaxed).saturating_add(1);
    m.deliveries.store(deliveries, Ordering::Relaxed);
    // HELD: whatever it was, it is delivered now.
    m.claim_state.store(CLAIM_HELD, Ordering::Relaxed);
    if deliveries >= 2 {
        // Relaxed: a statistic.
        seg.sub(sub).meta.redelivered.fetch_add(messages, Ordering::Relaxed);
    }
    Some((pos, end, deliveries))
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

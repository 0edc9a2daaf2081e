//! How far producers may write when a queue has subscriptions, and how a subscription's
//! cursor starts to count (the join).
//!
//! Every active subscription entry holds a cursor word, `position | flags`; a named
//! subscription's members also record the spans they claimed. A producer may overwrite
//! only bytes below the lowest of them (the **gate**). It computes the gate only when its
//! cached value says the ring is full ([`QueueGate::head`]); on the way it detaches any
//! subscription with a lag limit that the write would leave further behind than its limit.
//!
//! **The join.** A cursor that starts to count (a new subscription, or one rejoining after
//! it was lapped) must start at a position that no producer is about to overwrite, though a
//! producer may have computed its gate before the cursor existed. Each producer publishes
//! in its participant slot the lowest cursor it saw (`gate_min`) before relying on it; a
//! joiner publishes its cursor (flagged `JOINING`, so that nobody claims from it yet),
//! bumps `joins`, and only then reads every producer's `gate_min`, starting at or above the
//! highest. A producer re-reads `joins` after storing `gate_min`: the two full barriers
//! make it a Dekker pair, so either the producer sees the bump (and scans again, now seeing
//! the cursor) or the joiner sees the producer's `gate_min` (and starts above it). Anyone
//! who finds a cursor `JOINING` may finish the join, so a joiner that dies or stops holds
//! nobody hostage.

use crate::layout::{self, CLAIM_NONE, CURSOR_DETACHED, CURSOR_JOINING, Slot};
use crate::ring::{Gate, RingError};
use crate::segment::Segment;
use crate::sync::atomic::{Ordering, fence};
use crate::sync::futex::OsFutex;
use crate::sync::wait::{self, WaitWords};

/// A producer gives up on a gate that keeps changing under it (a hostile writer bumping
/// `joins`) after this many scans.
const MAX_SCANS: u32 = 1 << 16;

/// The flag bits of a cursor word.
pub(super) const FLAGS: u64 = CURSOR_DETACHED | CURSOR_JOINING;

/// Iterates over the set bits of `mask`, lowest first.
pub(super) fn bits(mut mask: u64) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        if mask == 0 {
            return None;
        }
        let i = mask.trailing_zeros() as usize;
        mask &= mask - 1;
        Some(i)
    })
}

/// The window of a subscription entry: how far behind the producers it may fall (its lag
/// limit, at most the capacity; the capacity if it has none). Entry 0 has none.
pub(super) fn window(seg: &Segment, i: usize) -> u64 {
    let cap = seg.config().capacity;
    if i == 0 {
        return cap;
    }
    // Relaxed: fixed before the entry turned active (whose Acquire load of `active` the
    // caller made); a value scribbled on later only changes how early it is detached.
    let limit = seg.sub(i).meta.lag_limit.load(Ordering::Relaxed);
    if limit == 0 || limit >= cap { cap } else { limit.max(seg.config().geometry().max_record()) }
}

/// What a scan found.
struct Scan {
    /// The position below which this producer may overwrite: the lowest tethered cursor or
    /// claim, with a lag-limited cursor counting as `position + window - capacity`.
    head: u64,
    /// The lowest tethered cursor or claim itself: what the producer publishes as `gate_min`.
    min_pos: u64,
}

/// Computes the gate for a producer whose view of the tail is `tail` and which needs `need`
/// bytes past it, detaching lag-limited subscriptions in the way.
fn scan(seg: &Segment, tail: u64, need: u64) -> Result<Scan, RingError> {
    let h = seg.header();
    let cap = seg.config().capacity;
    let (mut head, mut min_pos) = (tail, tail);
    // SYNC POINT: Acquire pairs with the Release of the admin lock holder's `fetch_or` that
    // activated an entry: its cursor and options are visible.
    let active = h.subs.active.load(Ordering::Acquire);
    for i in bits(active).filter(|&i| i < layout::SUBSCRIPTIONS) {
        let word = seg.cursor(i);
        let window = window(seg, i);
        // SYNC POINT: Acquire pairs with the Release stores (default consumer) and CASes
        // (members, joiners) of the cursor: the readers' reads of bytes below it are done,
        // and the claim records members stored before their CAS are visible below.
        let mut w = word.load(Ordering::Acquire);
        loop {
            if w & CURSOR_DETACHED != 0 {
                break;
            }
            let pos = w & !FLAGS;
            // A cursor above our view of the tail (on an MPSC queue our `tail` may be older
            // than what readers have seen) holds nothing we are about to overwrite.
            if !crate::ring::plausible(pos) || (pos <= tail && tail - pos > cap) {
                return Err(RingError::Corrupt("subscription cursor outside the ring"));
            }
            if window < cap && w & CURSOR_JOINING == 0 && (tail + need).saturating_sub(pos) > window {
                // AcqRel: the detach is a decision others read (the members, through the
                // cursor); on failure Acquire, as the load above.
                match word.compare_exchange(w, w | CURSOR_DETACHED, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => {
                        // Relaxed: a statistic.
                        seg.sub(i).meta.lapped.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    Err(now) => {
                        w = now;
                        continue;
                    }
                }
            }
            head = head.min((pos + window).saturating_sub(cap));
            min_pos = min_pos.min(pos);
            break;
        }
        if i == 0 {
            continue;
        }
        // Acquire: ordered after the cursor's Acquire load above (a member sets its bit
        // before its first claim's CAS).
        let members = seg.sub(i).cursor.members.load(Ordering::Acquire);
        for j in bits(members).filter(|&j| j < layout::MEMBERS) {
            let m = seg.member(j);
            // SYNC POINT: Acquire pairs with the member's Release store of `CLAIM_NONE` when
            // it is done with a span: its reads of the span are done before we overwrite it.
            if m.claim_state.load(Ordering::Acquire) == CLAIM_NONE {
                continue;
            }
            // Relaxed: stored before the claim's CAS on the cursor, which our Acquire load
            // of the cursor ordered; a stale (older, lower) value only holds us back more.
            let pos = m.claim_pos.load(Ordering::Relaxed);
            // A claim recorded after its span was freed (a member that lost the race for it)
            // is below every cursor: ignoring it is right. One outside the ring is nonsense.
            if crate::ring::plausible(pos) && pos <= tail && tail - pos <= cap {
                head = head.min(pos);
                min_pos = min_pos.min(pos);
            }
        }
    }
    Ok(Scan { head, min_pos })
}

/// A producer's view of the gate; see the module docs.
pub(super) struct QueueGate<'a> {
    pub(super) seg: &'a Segment,
    /// The producer's participant slot (for `gate_min`).
    pub(super) slot: &'a Slot,
}

impl Gate for QueueGate<'_> {
    fn head(&self, tail: u64, need: u64) -> Result<u64, RingError> {
        let joins_word = &self.seg.header().subs.joins;
        for _ in 0..MAX_SCANS {
            // SYNC POINT: Acquire pairs with a joiner's Release bump: its cursor, stored
            // before, is visible to the scan.
            let joins = joins_word.load(Ordering::Acquire);
            let scan = scan(self.seg, tail, need)?;
            // Relaxed: ordered before the re-read of `joins` by the fence below.
            self.slot.gate_min.store(scan.min_pos, Ordering::Relaxed);
            // SYNC POINT: pairs with the joiner's fence between its bump of `joins` and its
            // reads of `gate_min` (the module docs' Dekker pair).
            fence(Ordering::SeqCst);
            // Relaxed: ordered by the fence above; a changed value sends us round again.
            if joins_word.load(Ordering::Relaxed) == joins {
                return Ok(scan.head);
            }
        }
        Err(RingError::Corrupt("subscriptions keep joining"))
    }
}

/// Finishes the join of entry `i`, whose cursor word was seen as `w` (flagged `JOINING`):
/// finds the position to start at and stores it. Returns the cursor word as it is
/// afterwards (`None` if another process changed it first: it finished the join, or the
/// entry was removed).
pub(super) fn finish_join(seg: &Segment, i: usize, w: u64) -> Option<u64> {
    let h = seg.header();
    let word = seg.cursor(i);
    // Release (in AcqRel): a producer that reads the new count sees the cursor stored
    // before it.
    h.subs.joins.fetch_add(1, Ordering::AcqRel);
    // SYNC POINT: pairs with the fence in `QueueGate::head`.
    fence(Ordering::SeqCst);
    let mut v = w & !FLAGS;
    for j in 1..layout::SLOTS {
        let s = seg.slot(j);
        // Relaxed: ordered by the fence above; a dead or free slot's value is old and low.
        let g = s.gate_min.load(Ordering::Relaxed);
        if crate::ring::plausible(g) && g > v {
            v = g;
        }
    }
    // Acquire: pairs with the producers' Release publication of `tail`; the newest position.
    let t = h.producer.tail.load(Ordering::Acquire);
    if crate::ring::plausible(t) && t > v {
        v = t;
    }
    // A `gate_min` far above the tail is nonsense (a scribbler): start at the tail then.
    if v > t && v - t > seg.config().capacity && crate::ring::plausible(t) {
        v = t.max(w & !FLAGS);
    }
    // AcqRel: publishes the start; members then claim from it.
    match word.compare_exchange(w, v, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => Some(v),
        Err(_) => None,
    }
}

/// Makes entry `i`'s cursor count again from word `w` (detached, or the entry's first):
/// stores the producers' position flagged `JOINING`, then [`finish_join`]. Returns the
/// start, or `None` if another process changed the word first.
pub(super) fn join(seg: &Segment, i: usize, w: u64) -> Option<u64> {
    let h = seg.header();
    // Acquire: pairs with the producers' Release publication of `tail`.
    let t0 = h.producer.tail.load(Ordering::Acquire);
    let t0 = if crate::ring::plausible(t0) { t0 } else { w & !FLAGS };
    let joining = t0 | CURSOR_JOINING;
    // AcqRel: the JOINING word is what producers must see before we read their `gate_min`
    // (the bump in `finish_join` orders it); Acquire on failure: we report what won.
    if seg.cursor(i).compare_exchange(w, joining, Ordering::AcqRel, Ordering::Acquire).is_err() {
        return None;
    }
    finish_join(seg, i, joining)
}

/// Wakes the sleeping members of the subscriptions in `subs` (bits of `SubsLine::sleepers`);
/// call after publishing. Returns how many wake calls were made.
pub(super) fn wake_subscriptions(seg: &Segment, subs: u64) -> u64 {
    let mut n = 0;
    for i in bits(subs).filter(|&i| (1..layout::SUBSCRIPTIONS).contains(&i)) {
        n += u64::from(wait::wake(sub_words(seg, i), &OsFutex));
    }
    n
}

/// Wakes every sleeping reader: the default consumer and the members of every
/// subscription. Returns how many wake calls were made.
pub(super) fn wake_readers(seg: &Segment) -> u64 {
    let n = u64::from(wait::wake(seg.data_words(), &OsFutex));
    // Relaxed: read after the fence in `wake`, which orders our publication before it.
    let subs = seg.header().subs.sleepers.load(Ordering::Relaxed);
    n + if subs != 0 { wake_subscriptions(seg, subs) } else { 0 }
}

/// The futex pair the members of subscription entry `i >= 1` sleep on.
pub(super) fn sub_words(seg: &Segment, i: usize) -> WaitWords<'_> {
    let w = &seg.sub(i).wait;
    WaitWords { waiters: &w.waiters, epoch: &w.epoch }
}

/// Wakes producers waiting for space; call after handing space back. Returns whether a
/// wake call was made.
pub(super) fn wake_space(seg: &Segment) -> bool {
    wait::wake(seg.space_words(), &OsFutex)
}

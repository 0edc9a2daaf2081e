//! The queue's side of [`ring::cursors`](crate::ring::cursors): where a segment keeps its
//! readers' words ([`Cursors`] for [`Segment`]), the producers' [`QueueGate`], and waking
//! the readers of every subscription.

use crate::layout::{self, Slot};
use crate::ring::cursors::{self, ClaimWords, Cursors};
use crate::ring::{Gate, RingError};
use crate::segment::Segment;
use crate::sync::atomic::{AtomicU64, Ordering};
use crate::sync::futex::{FencedFutex, Futex, OsFutex};
use crate::sync::wait::{self, WaitWords};

pub(super) use crate::ring::cursors::{FLAGS, bits};

impl Cursors for Segment {
    fn active(&self) -> &AtomicU64 {
        &self.header().subs.active
    }

    fn joins(&self) -> &AtomicU64 {
        &self.header().subs.joins
    }

    fn tail(&self) -> &AtomicU64 {
        &self.header().producer.tail
    }

    fn cursor(&self, i: usize) -> &AtomicU64 {
        Segment::cursor(self, i)
    }

    fn window(&self, i: usize) -> u64 {
        if i == 0 {
            return cursors::NO_LIMIT;
        }
        // Relaxed: fixed before the entry turned active (whose Acquire load of `active` the
        // caller made); a value scribbled on later only changes how early it is detached.
        let limit = self.sub(i).meta.lag_limit.load(Ordering::Relaxed);
        if limit == 0 {
            cursors::NO_LIMIT
        } else {
            limit.clamp(self.config().geometry().max_record(), self.config().capacity)
        }
    }

    fn members(&self, i: usize) -> u64 {
        if i == 0 {
            return 0;
        }
        // Acquire: pairs with the Release `fetch_or` of a member's bit (before its first
        // claim); ordered after the caller's Acquire load of the cursor.
        let mask = self.sub(i).cursor.members.load(Ordering::Acquire);
        if layout::MEMBERS >= 64 { mask } else { mask & ((1 << layout::MEMBERS) - 1) }
    }

    fn claim(&self, j: usize) -> ClaimWords<'_> {
        let m = self.member(j);
        ClaimWords { slot: j, pos: &m.claim_pos, end: &m.claim_end, state: &m.claim_state }
    }

    fn gate_mins(&self) -> impl Iterator<Item = &AtomicU64> {
        (1..layout::SLOTS).map(|j| &self.slot(j).gate_min)
    }

    fn lapped(&self, i: usize) {
        // Relaxed: a statistic.
        self.sub(i).meta.lapped.fetch_add(1, Ordering::Relaxed);
        // Other producers may be asleep behind the subscription we just detached.
        wake_space(self);
    }

    fn producer_claims(&self) -> impl Iterator<Item = (usize, &AtomicU64)> {
        let first = match self.config().mode {
            crate::segment::Mode::Spsc => layout::SLOTS, // one producer: nobody else's claims
            crate::segment::Mode::Mpsc => 1,
        };
        (first..layout::SLOTS).map(|j| (j, &self.slot(j).claim_pos))
    }

    fn floor(&self) -> u64 {
        super::journal::floor(self)
    }

    fn base(&self) -> u64 {
        // Relaxed: fixed at creation (validated with the header's Acquire).
        self.header().durable.base.load(Ordering::Relaxed)
    }

    fn spills(&self, _i: usize) -> bool {
        // Every reader of a durable queue reads what it missed from the log.
        self.config().durable.is_some()
    }

    fn log_limit(&self) -> u64 {
        match &self.config().durable {
            Some(d) => d.max_log_bytes.max(2 * self.config().capacity),
            None => u64::MAX,
        }
    }

    fn reader_alive(&self, i: usize) -> bool {
        // Entry 0's reader is the consumer in slot 0; no other entry pins.
        i != 0 || self.slot_alive(0)
    }

    fn producer_alive(&self, j: usize) -> bool {
        self.slot_alive(j)
    }

    fn drop_dead_claim(&self, i: usize, j: usize) -> bool {
        if !self.try_lock_slot(j) {
            return false; // alive (or another process is at it)
        }
        let m = self.member(j);
        // Relaxed: the slot's lock orders us after its dead holder's stores.
        let ours = m.sub.load(Ordering::Relaxed) as usize == i
            && cursors::claim_state(m.claim_state.load(Ordering::Relaxed)) != layout::CLAIM_NONE
            && m.generation.load(Ordering::Relaxed) == self.sub(i).meta.generation.load(Ordering::Relaxed);
        if ours {
            // Relaxed: as above (read once, for the statistic below).
            let (pos, end) = (m.claim_pos.load(Ordering::Relaxed), m.claim_end.load(Ordering::Relaxed));
            // A claim that lost the race for its span missed nothing.
            if clear_dead_claim(self, i, j) {
                // Relaxed: a statistic.
                self.sub(i).meta.missed_bytes.fetch_add(end.saturating_sub(pos), Ordering::Relaxed);
            }
            // Relaxed: a statistic.
            self.sub(i).meta.lapped.fetch_add(1, Ordering::Relaxed);
            self.leave_subscription(j);
        }
        self.unlock_slot(j);
        ours
    }
}

/// Clears the claim of member `j` of entry `i`, whose slot's lock we hold (its holder
/// died), without delivering it; returns whether it had taken its span (one in the middle
/// of being taken is finished first: nothing may stay locked with a claim that is gone).
pub(super) fn clear_dead_claim(seg: &Segment, i: usize, j: usize) -> bool {
    let m = seg.claim(j);
    // Relaxed: the slot's lock orders us after its dead holder's stores.
    let cw = m.state.load(Ordering::Relaxed);
    let taken = cursors::claim_state(cw) != layout::CLAIM_NONE && cursors::claim_taken(seg, i, m, cw).unwrap_or(false);
    cursors::release(m);
    taken
}

/// A producer's view of the gate.
pub(super) struct QueueGate<'a> {
    pub(super) seg: &'a Segment,
    /// The producer's participant slot (for `gate_min`).
    pub(super) slot: &'a Slot,
    /// Its index.
    pub(super) me: usize,
}

impl Gate for QueueGate<'_> {
    fn head(&self, tail: u64, need: u64) -> Result<u64, RingError> {
        let cap = self.seg.config().capacity;
        cursors::gate(self.seg, cap, layout::SUBSCRIPTIONS, self.me, &self.slot.gate_min, tail, need)
    }
}

/// [`cursors::finish_join`] on a segment.
pub(super) fn finish_join(seg: &Segment, i: usize, w: u64) -> Option<u64> {
    cursors::finish_join(seg, seg.config().capacity, i, w)
}

/// Wakes the sleeping members of the subscriptions in `subs` (bits of `SubsLine::sleepers`);
/// call after publishing. Returns how many wake calls were made.
pub(super) fn wake_subscriptions(seg: &Segment, subs: u64, futex: &impl Futex) -> u64 {
    let mut n = 0;
    for i in bits(subs).filter(|&i| (1..layout::SUBSCRIPTIONS).contains(&i)) {
        n += u64::from(wait::wake(sub_words(seg, i), futex));
    }
    n
}

/// Wakes every sleeping reader: the default consumer and the members of every
/// subscription. Returns how many wake calls were made. With a full fence
/// ([`FencedFutex`]): called off the per-message path (after a sync, at the wrap), and the
/// readers of an `Fsync::Always` queue sleep without the heavy barrier that a light wake
/// relies on (see `Handle::wait_for`).
pub(super) fn wake_readers(seg: &Segment) -> u64 {
    let n = u64::from(wait::wake(seg.data_words(), &FencedFutex));
    // Relaxed: read after the fence in `wake`, which orders our publication before it.
    let subs = seg.header().subs.sleepers.load(Ordering::Relaxed);
    n + if subs != 0 { wake_subscriptions(seg, subs, &FencedFutex) } else { 0 }
}

/// The futex pair the members of subscription entry `i >= 1` sleep on.
pub(super) fn sub_words(seg: &Segment, i: usize) -> WaitWords<'_> {
    seg.wait_words(&seg.sub(i).wait)
}

/// Wakes producers waiting for space; call after handing space back. Returns whether a
/// wake call was made.
pub(super) fn wake_space(seg: &Segment) -> bool {
    wait::wake(seg.space_words(), &OsFutex)
}

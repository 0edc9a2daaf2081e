//! One of the producers of an MPSC ring.
//!
//! A producer records the space it is about to claim in its participant slot
//! ([`ClaimWords`]), claims it with a compare-and-swap on the shared `tail`, reads the stamp
//! word of the claimed record as it is then (stale bytes of an earlier lap), writes the info
//! word and the payload, and publishes the record with a compare-and-swap of the stamp from
//! that stale value to the message stamp. A reader that proved this producer dead
//! ([`reclaim`](super::reclaim)) replaces the same stale value instead, so exactly one of
//! the two wins: a late commit can never overwrite padding, nor padding a message.

use super::{Gate, Geometry, Region, Reservation, RingError};
use crate::layout::record;
use crate::sync::atomic::{AtomicU64, Ordering};

/// How many times a claim may lose the race or find a changed `head` before we call the
/// control words corrupt. Honest contention ends far sooner; a hostile writer that keeps
/// moving `tail` must not keep us here forever.
const MAX_CLAIM_ATTEMPTS: u32 = 1 << 20;

/// A producer's claim record in its participant slot (`layout::Slot::claim_pos/claim_end`).
#[derive(Clone, Copy)]
pub struct ClaimWords<'a> {
    /// Start of the claim.
    pub pos: &'a AtomicU64,
    /// End of the claim.
    pub end: &'a AtomicU64,
}

impl ClaimWords<'_> {
    /// Records `[pos, end)` as the space this producer is about to claim.
    #[inline]
    fn record(&self, pos: u64, end: u64) {
        // Relaxed: the claim's Release CAS on `tail` follows, and a reader looks at claims
        // only after an Acquire load of `tail` that shows the claim made; for a producer
        // that died, every store it made is visible anyway.
        self.end.store(end, Ordering::Relaxed);
        self.pos.store(pos, Ordering::Relaxed);
    }

    /// Says this producer holds no claim any more: everything it claimed is committed (or
    /// aborted into padding). Producers that find no reader to pace them wait for the
    /// claims of others instead (`ring::cursors`), so a claim must not stay recorded once done.
    #[inline]
    pub fn clear(&self) {
        // Release: a producer that reads the cleared word (Acquire) and then overwrites the
        // space does so after our commit's writes.
        self.pos.store(crate::layout::NO_CLAIM, Ordering::Release);
    }
}

/// Producer state; see the module docs.
#[derive(Debug)]
pub struct Producer {
    geo: Geometry,
    /// A value `head` held at some point; `head_cache <= head <= tail` in an honest ring.
    head_cache: u64,
}

impl Producer {
    /// Attaches with a `head` read by the caller (validated here).
    pub fn new(geo: Geometry, head: u64) -> Result<Producer, RingError> {
        if !super::plausible(head) {
            return Err(RingError::Corrupt("consumer position not aligned or out of range"));
        }
        Ok(Producer { geo, head_cache: head })
    }

    /// Re-reads `head` after the cached value showed too little room (`used` bytes in use
    /// by the cached value). `Full` if it has not moved.
    #[inline]
    fn refresh_head<G: Gate + ?Sized>(&mut self, head: &G, tail: u64, used: u64, need: u64) -> Result<(), RingError> {
        // The gate's Acquire pairs with the readers' Release stores of their positions: their
        // reads of the bytes they consumed are done before we claim and overwrite them.
        let h = head.head(tail, need)?;
        if !super::plausible(h) {
            return Err(RingError::Corrupt("consumer position not aligned or out of range"));
        }
        // Never backwards: a lower value (a subscription that joined since, with a lag
        // limit) leaves the cache, which was true when read.
        if h <= self.head_cache {
            return if used > self.geo.capacity {
                Err(RingError::Corrupt("producer position outside the ring"))
            } else {
                Err(RingError::Full)
            };
        }
        self.head_cache = h;
        Ok(())
    }

    /// Claims space at the tail: `want(index, free)` says how many bytes to claim at that
    /// index given `free` bytes before the end of the region or the consumer, `None` if
    /// nothing fits. Returns `(position, index, claimed)`.
    #[inline]
    fn claim<G: Gate + ?Sized>(
        &mut self,
        tail: &AtomicU64,
        head: &G,
        need: u64,
        mine: ClaimWords<'_>,
        mut want: impl FnMut(u64, u64) -> Option<u64>,
    ) -> Result<(u64, usize, u64), RingError> {
        let cap = self.geo.capacity;
        for _ in 0..MAX_CLAIM_ATTEMPTS {
            // SYNC POINT: Acquire pairs with the Release of the CAS that stored `t`: its
            // producer had seen `head >= t - capacity` before it, so our own (later) reads of
            // `head` see at least that much. Relaxed would let a producer whose `head_cache`
            // is stale read a `tail` more than a capacity above it and then an old `head`,
            // and call an honest ring corrupt (found by tests/loom.rs).
            let t = tail.load(Ordering::Acquire);
            if !super::plausible(t) {
                return Err(RingError::Corrupt("producer position not aligned or out of range"));
            }
            // `head_cache` may be stale (it only grows), so `used` may overstate; an honest
            // `tail` is never more than a capacity above the current `head`.
            let used = t.wrapping_sub(self.head_cache);
            let index = self.geo.index(t);
            let to_end = cap - index as u64;
            let claim = if used > cap { None } else { want(to_end, (cap - used).min(to_end)) };
            let Some(claim) = claim else {
                // No room. Our record may still hold a claim whose compare-and-swap lost the
                // race below: should the winner of that position die before committing, a
                // reader stuck there would see us among the candidates, alive, and wait for
                // us, while we wait (on `Full`) for room only that reader can make. We hold
                // nothing: say so before we look for room (the record is written again
                // before the next compare-and-swap).
                mine.clear();
                self.refresh_head(head, t, used, need)?;
                continue; // re-read tail: it may have moved past our stale copy
            };
            mine.record(t, t + claim);
            crate::failpoint::hit("mpsc-claim-recorded");
            // SYNC POINT: Release pairs with the Acquire load of `tail` above, in the other
            // producers, and in a reader looking for the claimant of a stuck position (it
            // then sees our claim record). On failure Relaxed: we load again. Weak: we loop.
            if tail.compare_exchange_weak(t, t + claim, Ordering::Release, Ordering::Relaxed).is_ok() {
                return Ok((t, index, claim));
            }
        }
        Err(RingError::Corrupt("producer position keeps changing"))
    }

    /// The reservation of a record of `len` bytes at `pos`, inside a claim of ours: remembers
    /// the stamp word's current (stale) value for the commit's compare-and-swap.
    #[inline]
    pub fn reservation_at<R: Region + ?Sized>(&self, region: &R, pos: u64, len: u32) -> Reservation {
        let index = self.geo.index(pos);
        // Relaxed: the value only serves as the CAS's expected value; nobody but a reclaiming
        // reader writes a claimed stamp word, and the CAS settles that race.
        let old_stamp = region.word(index).load(Ordering::Relaxed);
        Reservation { pos, index, len, size: record::size(u64::from(len)), old_stamp }
    }

    /// Publishes the padding that fills a claim to the end of the region.
    fn pad_to_end<R: Region + ?Sized>(&self, region: &R, pos: u64, index: usize) -> Result<(), RingError> {
        // Relaxed load: as in `reservation_at`.
        let old = region.word(index).load(Ordering::Relaxed);
        // SYNC POINT: Release pairs with the reader's Acquire load of the stamp. Failure
        // (Relaxed): a reader reclaimed the space; it is padding either way.
        let _ = region.word(index).compare_exchange(
            old,
            self.geo.stamp(pos, record::KIND_PAD_END),
            Ordering::Release,
            Ordering::Relaxed,
        );
        Ok(())
    }

    /// Reserves space for a record of `len` payload bytes (`len <= max_message`, checked by
    /// the caller). When the record does not fit before the end of the region, the rest of
    /// the region is claimed and published as padding first; that padding stays published
    /// even if the ring then turns out full, so the caller must wake the consumer on `Full`.
    #[inline]
    pub fn try_reserve<G: Gate + ?Sized, R: Region + ?Sized>(
        &mut self,
        tail: &AtomicU64,
        head: &G,
        mine: ClaimWords<'_>,
        region: &R,
        len: u32,
    ) -> Result<Reservation, RingError> {
        debug_assert!(len <= self.geo.max_message);
        let size = record::size(u64::from(len));
        loop {
            let (pos, index, claimed) = self.claim(tail, head, size, mine, |to_end, free| {
                let want = if size > to_end { to_end } else { size };
                (want <= free).then_some(want)
            })?;
            if claimed == size {
                crate::failpoint::hit("mpsc-claimed");
                return Ok(self.reservation_at(region, pos, len));
            }
            crate::failpoint::hit("mpsc-pad-claimed");
            self.pad_to_end(region, pos, index)?;
            mine.clear();
        }
    }

    /// Reserves consecutive records for as many of `lens` as fit now (at least one, or
    /// `Full`), in one claim that does not cross the end of the region. Returns the
    /// position of the first record and the count; make each record's reservation with
    /// [`reservation_at`](Self::reservation_at), in order, and commit it.
    pub fn try_reserve_many<G: Gate + ?Sized, R: Region + ?Sized>(
        &mut self,
        tail: &AtomicU64,
        head: &G,
        mine: ClaimWords<'_>,
        region: &R,
        lens: impl Iterator<Item = u32> + Clone,
    ) -> Result<(u64, usize), RingError> {
        let first = lens.clone().next().ok_or(RingError::Full)?;
        let mut count = 0usize;
        let claimed = self.claim(tail, head, record::size(u64::from(first)), mine, |_, free| {
            let (mut total, mut n) = (0u64, 0usize);
            for len in lens.clone() {
                let size = record::size(u64::from(len));
                if total + size > free {
                    break;
                }
                total += size;
                n += 1;
            }
            count = n;
            (n > 0).then_some(total)
        });
        match claimed {
            Ok((pos, _, _)) => {
                crate::failpoint::hit("mpsc-claimed");
                Ok((pos, count))
            }
            // Not even the first fits before the end (or at all): the single-record path
            // pads at the wrap and sorts out `head`.
            Err(RingError::Full) => {
                let res = self.try_reserve(tail, head, mine, region, first)?;
                Ok((res.pos, 1))
            }
            Err(e) => Err(e),
        }
    }

    /// Publishes a record whose payload (`len <= reservation.len` bytes) has been written.
    /// The record keeps its reserved size (a shorter commit leaves the rest unused).
    /// `Reclaimed` if a reader turned the claim into padding first (it took this producer
    /// for dead): the message was not published.
    #[inline]
    pub fn commit<R: Region + ?Sized>(&self, region: &R, res: Reservation, len: u32) -> Result<(), RingError> {
        if len > res.len {
            return Err(RingError::Misuse("commit longer than the reservation"));
        }
        self.publish(region, res, record::info(len, res.size), record::KIND_MESSAGE)
    }

    /// Gives a reservation back: the whole record becomes padding.
    pub fn abort<R: Region + ?Sized>(&self, region: &R, res: Reservation) -> Result<(), RingError> {
        self.publish(region, res, record::info(0, res.size), record::KIND_PADDING)
    }

    #[inline]
    fn publish<R: Region + ?Sized>(&self, region: &R, res: Reservation, info: u64, kind: u64) -> Result<(), RingError> {
        // Relaxed: ordered before the stamp's Release CAS below.
        region.word(res.index + 8).store(info, Ordering::Relaxed);
        // SYNC POINT: Release pairs with the reader's Acquire load of the stamp: the info
        // word and the payload are visible before the record is. Failure (Relaxed): a
        // reclaiming reader replaced the stale value first; we read nothing after it.
        match region.word(res.index).compare_exchange(
            res.old_stamp,
            self.geo.stamp(res.pos, kind),
            Ordering::Release,
            Ordering::Relaxed,
        ) {
            Ok(_) => Ok(()),
            Err(_) => Err(RingError::Reclaimed),
        }
    }
}

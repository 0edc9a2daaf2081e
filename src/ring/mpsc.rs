//! One of the producers of an MPSC ring.
//!
//! Producers claim space with a compare-and-swap on the shared `tail`, mark the header
//! claimed (naming their slot), write the payload, then store the header as a message with
//! Release. The consumer takes only committed records, in position order, and zeroes what it
//! consumed before publishing `head`, so every header a producer has not yet written reads
//! as empty.

use super::{Geometry, Region, Reservation, RingError};
use crate::layout::record;
use crate::sync::atomic::{AtomicU64, Ordering};

/// How many times a claim may lose the race or find a changed `head` before we call the
/// control words corrupt. Honest contention ends far sooner; a hostile writer that keeps
/// moving `tail` must not keep us here forever.
const MAX_CLAIM_ATTEMPTS: u32 = 1 << 20;

/// Producer state; see the module docs.
#[derive(Debug)]
pub struct Producer {
    geo: Geometry,
    /// Our participant slot, written into claimed headers.
    slot: u8,
    /// A value `head` held at some point; `head_cache <= head <= tail` in an honest ring.
    head_cache: u64,
}

impl Producer {
    /// Attaches with a `head` read by the caller (validated here).
    pub fn new(geo: Geometry, slot: u8, head: u64) -> Result<Producer, RingError> {
        if !super::plausible(head) {
            return Err(RingError::Corrupt("consumer position not aligned or out of range"));
        }
        Ok(Producer { geo, slot, head_cache: head })
    }

    /// Re-reads `head` after the cached value showed too little room (`used` bytes in use
    /// by the cached value). `Full` if it has not moved.
    #[inline]
    fn refresh_head(&mut self, head: &AtomicU64, used: u64) -> Result<(), RingError> {
        // SYNC POINT: Acquire pairs with the consumer's Release store of `head`: the bytes it
        // consumed and zeroed are done with before we claim and overwrite them.
        let h = head.load(Ordering::Acquire);
        if h == self.head_cache {
            return if used > self.geo.capacity {
                Err(RingError::Corrupt("producer position outside the ring"))
            } else {
                Err(RingError::Full)
            };
        }
        if !super::plausible(h) || h < self.head_cache {
            return Err(RingError::Corrupt("consumer position moved backwards"));
        }
        self.head_cache = h;
        Ok(())
    }

    /// Claims `size` bytes at the tail, or a padding record up to the end of the region if
    /// `size` does not fit before it. Returns `(position, index, is_padding)`.
    #[inline]
    fn claim(&mut self, tail: &AtomicU64, head: &AtomicU64, size: u64) -> Result<(u64, usize, u64), RingError> {
        let cap = self.geo.capacity;
        for _ in 0..MAX_CLAIM_ATTEMPTS {
            // SYNC POINT: Acquire pairs with the Release of the CAS that stored `t`: its
            // producer had seen `head >= t - capacity` before it, so our own (later) reads of
            // `head` see at least that much. Relaxed would let a producer whose `head_cache`
            // is stale read a `tail` more than a capacity above it and then an old `head`,
            // and call an honest ring corrupt (found by tests/loom.rs). The memory we write
            // was handed back by the consumer, which our Acquire load of `head` established.
            let t = tail.load(Ordering::Acquire);
            // `head_cache` may be stale (it only grows), so `used` may overstate; an honest
            // `tail` is never more than a capacity above the current `head`.
            let used = t.wrapping_sub(self.head_cache);
            if !super::plausible(t) {
                return Err(RingError::Corrupt("producer position not aligned or out of range"));
            }
            let index = self.geo.index(t);
            let to_end = cap - index as u64;
            let claim = if size > to_end { to_end } else { size };
            if used > cap || used + claim > cap {
                self.refresh_head(head, used)?;
                continue; // re-read tail: it may have moved past our stale copy
            }
            // SYNC POINT: Release pairs with the Acquire load of `tail` above, in the other
            // producers. On failure Relaxed: we load again. Weak: we loop anyway.
            if tail.compare_exchange_weak(t, t + claim, Ordering::Release, Ordering::Relaxed).is_ok() {
                return Ok((t, index, claim));
            }
        }
        Err(RingError::Corrupt("producer position keeps changing"))
    }

    /// Reserves space for a record of `len` payload bytes (`len <= max_message`, checked by
    /// the caller) and marks it claimed. Padding to the end of the region is claimed and
    /// committed first when the record does not fit before it.
    #[inline]
    pub fn try_reserve<R: Region + ?Sized>(
        &mut self,
        tail: &AtomicU64,
        head: &AtomicU64,
        region: &R,
        len: u32,
    ) -> Result<Reservation, RingError> {
        debug_assert!(len <= self.geo.max_message);
        let size = record::size(u64::from(len));
        loop {
            let (pos, index, claimed) = self.claim(tail, head, size)?;
            if claimed == size {
                // Relaxed: "claimed" is information for the consumer (it is not ready
                // either way); the Release store at commit publishes the record.
                region.word(index).store(record::encode(record::KIND_CLAIMED, len, self.slot), Ordering::Relaxed);
                return Ok(Reservation { pos, index, len });
            }
            let pad = record::encode(record::KIND_PADDING, (claimed - record::HEADER as u64) as u32, self.slot);
            // SYNC POINT: Release pairs with the consumer's Acquire load of the header.
            region.word(index).store(pad, Ordering::Release);
        }
    }

    /// Reserves consecutive records for as many of `lens` as fit now (at least one, or
    /// `Full`), in one claim. The records are not marked claimed; commit each with
    /// [`commit`](Self::commit). Returns the reservation of the first and the count.
    pub fn try_reserve_many<R: Region + ?Sized>(
        &mut self,
        tail: &AtomicU64,
        head: &AtomicU64,
        region: &R,
        lens: impl Iterator<Item = u32> + Clone,
    ) -> Result<(Reservation, usize), RingError> {
        let cap = self.geo.capacity;
        for _ in 0..MAX_CLAIM_ATTEMPTS {
            // Acquire: as in `claim`.
            let t = tail.load(Ordering::Acquire);
            let used = t.wrapping_sub(self.head_cache);
            if used > cap || !super::plausible(t) {
                // Stale cache or bad words: the single-record path sorts it out.
                let first = lens.clone().next().ok_or(RingError::Full)?;
                return self.try_reserve(tail, head, region, first).map(|r| (r, 1));
            }
            let index = self.geo.index(t);
            let to_end = cap - index as u64;
            let room = (cap - used).min(to_end);
            let mut total = 0u64;
            let mut count = 0usize;
            let mut first = 0u32;
            for len in lens.clone() {
                let size = record::size(u64::from(len));
                if total + size > room {
                    break;
                }
                if count == 0 {
                    first = len;
                }
                total += size;
                count += 1;
            }
            if count == 0 {
                // Not even the first fits: the single-record path handles padding and head.
                let first = lens.clone().next().ok_or(RingError::Full)?;
                return self.try_reserve(tail, head, region, first).map(|r| (r, 1));
            }
            // Release: as in `claim`.
            if tail.compare_exchange_weak(t, t + total, Ordering::Release, Ordering::Relaxed).is_ok() {
                return Ok((Reservation { pos: t, index, len: first }, count));
            }
        }
        Err(RingError::Corrupt("producer position keeps changing"))
    }

    /// Publishes a record whose payload (`len <= reservation.len` bytes) has been written.
    /// The unused end of the reservation, if any, becomes padding.
    #[inline]
    pub fn commit<R: Region + ?Sized>(&self, region: &R, res: Reservation, len: u32) {
        debug_assert!(len <= res.len);
        let size = record::size(u64::from(len));
        let reserved = record::size(u64::from(res.len));
        if reserved > size {
            let pad = record::encode(record::KIND_PADDING, (reserved - size - record::HEADER as u64) as u32, self.slot);
            // Relaxed: the consumer reaches it only after the Release store below.
            region.word(res.index + size as usize).store(pad, Ordering::Relaxed);
        }
        // SYNC POINT: Release pairs with the consumer's Acquire load of the header.
        region.word(res.index).store(record::encode(record::KIND_MESSAGE, len, self.slot), Ordering::Release);
    }

    /// Gives a reservation back: the whole record becomes padding.
    pub fn abort<R: Region + ?Sized>(&self, region: &R, res: Reservation) {
        let reserved = record::size(u64::from(res.len));
        let pad = record::encode(record::KIND_PADDING, (reserved - record::HEADER as u64) as u32, self.slot);
        // Release: as in commit (nothing was written, but the consumer may skip at once).
        region.word(res.index).store(pad, Ordering::Release);
    }
}

//! The single producer of an SPSC ring.
//!
//! It owns `tail`: it keeps the true value privately, publishes it for observers, and reads
//! the shared copy only once, when it attaches. It caches `head` and re-reads it only when
//! the cached value says the ring is full.

use super::{Geometry, Region, Reservation, RingError};
use crate::layout::record;
use crate::sync::atomic::{AtomicU64, Ordering};

/// Producer state; see the module docs.
#[derive(Debug)]
pub struct Producer {
    geo: Geometry,
    /// Invariant: the header word at `tail` is zero (kind empty), and `tail` only grows.
    tail: u64,
    /// A value `head` held at some point: `head_cache <= head <= tail`.
    head_cache: u64,
}

/// Checks a `head` read from shared memory against our private `tail`.
#[inline]
pub(super) fn checked_head(geo: &Geometry, head: u64, tail: u64) -> Result<u64, RingError> {
    if !super::plausible(head) || head > tail || tail - head > geo.capacity {
        return Err(RingError::Corrupt("consumer position outside the ring"));
    }
    Ok(head)
}

impl Producer {
    /// Attaches to a ring whose shared positions are `tail` and `head` (read once by the
    /// caller, validated here).
    pub fn new(geo: Geometry, tail: u64, head: u64) -> Result<Producer, RingError> {
        let head = checked_head(&geo, head, tail)?;
        if !super::plausible(tail) {
            return Err(RingError::Corrupt("producer position not aligned or out of range"));
        }
        Ok(Producer { geo, tail, head_cache: head })
    }

    /// Attaches to a ring as its new producer, recovering from a predecessor that died
    /// between committing records and publishing `tail`: starting from the larger of the
    /// shared `tail` and `head` (the consumer may have taken such records already), it
    /// walks over committed records up to the zero word that marks the true end.
    pub fn attach<R: Region + ?Sized>(
        geo: Geometry,
        shared_tail: u64,
        head: u64,
        region: &R,
    ) -> Result<Producer, RingError> {
        if !super::plausible(head) || !super::plausible(shared_tail) {
            return Err(RingError::Corrupt("position not aligned or out of range"));
        }
        let mut tail = shared_tail.max(head);
        loop {
            if tail - head > geo.capacity {
                return Err(RingError::Corrupt("producer position outside the ring"));
            }
            let index = geo.index(tail);
            // Acquire: we read records the predecessor committed with Release.
            let d = record::decode(region.word(index).load(Ordering::Acquire));
            let room = geo.capacity - index as u64;
            tail += match d.kind {
                record::KIND_EMPTY => break,
                record::KIND_MESSAGE if d.len <= geo.max_message && record::size(u64::from(d.len)) <= room => {
                    record::size(u64::from(d.len))
                }
                record::KIND_PADDING if d.len % record::ALIGN as u32 == 0 && u64::from(d.len) + 8 <= room => {
                    record::HEADER as u64 + u64::from(d.len)
                }
                _ => return Err(RingError::Corrupt("bad record header after the producer position")),
            };
        }
        Producer::new(geo, tail, head)
    }

    /// The committed producer position.
    pub fn tail(&self) -> u64 {
        self.tail
    }

    /// Makes sure `need` bytes starting at `tail` are free.
    #[inline]
    fn ensure_free(&mut self, head: &AtomicU64, need: u64) -> Result<(), RingError> {
        if self.tail + need - self.head_cache <= self.geo.capacity {
            return Ok(());
        }
        // SYNC POINT: Acquire pairs with the consumer's Release store of `head`: the bytes
        // it consumed (and in MPSC zeroed) are done with before we overwrite them.
        let h = checked_head(&self.geo, head.load(Ordering::Acquire), self.tail)?;
        self.head_cache = h;
        if self.tail + need - h <= self.geo.capacity { Ok(()) } else { Err(RingError::Full) }
    }

    /// Reserves space for a record of `len` payload bytes (`len <= max_message`, checked by
    /// the caller). If the record does not fit before the end of the region, a padding
    /// record is published first, so that the reservation starts at index 0.
    #[inline]
    pub fn try_reserve<R: Region + ?Sized>(
        &mut self,
        shared_tail: &AtomicU64,
        head: &AtomicU64,
        region: &R,
        len: u32,
    ) -> Result<Reservation, RingError> {
        debug_assert!(len <= self.geo.max_message);
        let size = record::size(u64::from(len));
        let index = self.geo.index(self.tail);
        let to_end = self.geo.capacity - index as u64;
        if size > to_end {
            // Pad to the end; the header after the padding (index 0) must be free to zero.
            self.ensure_free(head, to_end + record::HEADER as u64)?;
            // Relaxed: ordered before the consumer's read of it by the Release store below.
            region.word(0).store(0, Ordering::Relaxed);
            let pad = record::encode(record::KIND_PADDING, (to_end - record::HEADER as u64) as u32, 0);
            // SYNC POINT: Release pairs with the consumer's Acquire load of the header.
            region.word(index).store(pad, Ordering::Release);
            self.tail += to_end;
            // Release: observers (len, inspect) see committed bytes only.
            shared_tail.store(self.tail, Ordering::Release);
            return self.try_reserve(shared_tail, head, region, len);
        }
        // The record plus the next header, which commit zeroes.
        self.ensure_free(head, size + record::HEADER as u64)?;
        Ok(Reservation { pos: self.tail, index, len })
    }

    /// Publishes a record whose payload (`len <= reservation.len` bytes) has been written.
    /// Does not publish `tail`: call [`publish`](Self::publish) after one or many commits.
    #[inline]
    pub fn commit<R: Region + ?Sized>(&mut self, region: &R, res: Reservation, len: u32) {
        debug_assert!(len <= res.len && res.pos == self.tail);
        let size = record::size(u64::from(len));
        // Keep the invariant: the word at the new tail is zero. It is free (try_reserve
        // checked room for it). Relaxed: ordered by the Release store below.
        region.word(self.geo.index(res.pos + size)).store(0, Ordering::Relaxed);
        // SYNC POINT: Release pairs with the consumer's Acquire load of this header: the
        // payload and the zeroed next header are visible before the record is.
        region.word(res.index).store(record::encode(record::KIND_MESSAGE, len, 0), Ordering::Release);
        self.tail = res.pos + size;
    }

    /// Stores the private `tail` into shared memory (for `len`, `inspect`, a successor).
    #[inline]
    pub fn publish(&self, shared_tail: &AtomicU64) {
        // Release: whoever reads tail may rely on the records below it being committed.
        shared_tail.store(self.tail, Ordering::Release);
    }
}

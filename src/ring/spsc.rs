//! The single producer of an SPSC ring.
//!
//! It owns `tail`: it keeps the true value privately, publishes it for observers, and reads
//! the shared copy only once, when it attaches. It caches `head` and re-reads it only when
//! the cached value says the ring is full. A record is published by one Release store of its
//! stamp; nothing after it needs clearing (layout v2: stale bytes never carry the stamp of a
//! position they were not written for).

use super::{Found, Gate, Geometry, Region, Reservation, RingError};
use crate::layout::record;
use crate::sync::atomic::{AtomicU64, Ordering};

/// Producer state; see the module docs.
#[derive(Debug)]
pub struct Producer {
    geo: Geometry,
    /// Everything below is committed; only grows.
    tail: u64,
    /// A value `head` held at some point: `head_cache <= head <= tail`.
    head_cache: u64,
    /// A record may end at or below this position without further checks: the smaller of
    /// the end of the region's lap that `tail` was in and `head_cache + capacity`, as they
    /// were at some earlier `(tail, head_cache)`. Both only grow, so a stale value is only
    /// too low (sending the record down the general path, which refreshes it), never too high.
    limit: u64,
}

/// See [`Producer::limit`](Producer).
#[inline]
fn limit(geo: &Geometry, tail: u64, head_cache: u64) -> u64 {
    ((tail | geo.mask()) + 1).min(head_cache + geo.capacity)
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
        if !super::plausible(tail) {
            return Err(RingError::Corrupt("producer position not aligned or out of range"));
        }
        let head = checked_head(&geo, head, tail)?;
        Ok(Producer { geo, tail, head_cache: head, limit: limit(&geo, tail, head) })
    }

    /// Attaches to a ring as its new producer, recovering from a predecessor that died
    /// between committing records and publishing `tail`: starting from the larger of the
    /// shared `tail` and `head` (the consumer may have taken such records already), it
    /// walks over records stamped for their positions up to the first position that holds
    /// none: the true end.
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
            if tail - head == geo.capacity {
                break; // full: the stamp there belongs to the record at `head`, a lap ago
            }
            tail += match super::read_record(&geo, region, tail)? {
                Found::Nothing => break,
                Found::Message { size, .. } | Found::Skip { size } => size,
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
    fn ensure_free<G: Gate + ?Sized>(&mut self, shared_tail: &AtomicU64, head: &G, need: u64) -> Result<(), RingError> {
        if self.tail + need - self.head_cache <= self.geo.capacity {
            return Ok(());
        }
        // Publish `tail` first (the slow path only): a subscription starting meanwhile takes
        // the published tail as its lowest start, and it must not be below what the gate
        // lets us overwrite (in a batch, `tail` is otherwise published only at its end).
        self.publish(shared_tail);
        // The gate's Acquire pairs with the readers' Release stores of their positions.
        let h = checked_head(&self.geo, head.head(self.tail, need)?, self.tail)?;
        // Never backwards: a value below the cached one (a subscription that joined since,
        // with a lag limit) leaves the cache as it is; the cache was true when read.
        self.head_cache = self.head_cache.max(h);
        let h = self.head_cache;
        if self.tail + need - h <= self.geo.capacity { Ok(()) } else { Err(RingError::Full) }
    }

    /// Reserves space for a record of `len` payload bytes (`len <= max_message`, checked by
    /// the caller). If the record does not fit before the end of the region, the rest of the
    /// region is published as padding first (and `tail` with it), so that the reservation
    /// starts at index 0; that padding stays published even if the reservation then finds
    /// the ring full, so the caller must wake the consumer on `Full` too.
    #[inline]
    pub fn try_reserve<G: Gate + ?Sized, R: Region + ?Sized>(
        &mut self,
        shared_tail: &AtomicU64,
        head: &G,
        region: &R,
        len: u32,
    ) -> Result<Reservation, RingError> {
        debug_assert!(len <= self.geo.max_message);
        let size = record::size(u64::from(len));
        let index = self.geo.index(self.tail);
        let to_end = self.geo.capacity - index as u64;
        if size > to_end {
            self.ensure_free(shared_tail, head, to_end)?;
            // SYNC POINT: Release pairs with the reader's Acquire load of the stamp.
            region.word(index).store(self.geo.stamp(self.tail, record::KIND_PAD_END), Ordering::Release);
            self.tail += to_end;
            // Release: observers (len, inspect, a successor) see committed records only.
            shared_tail.store(self.tail, Ordering::Release);
            return self.try_reserve(shared_tail, head, region, len);
        }
        self.ensure_free(shared_tail, head, size)?;
        Ok(Reservation { pos: self.tail, index, len, size, old_stamp: 0 })
    }

    /// Publishes a record whose payload (`len <= reservation.len` bytes) has been written.
    /// Does not publish `tail`: call [`publish`](Self::publish) after one or many commits.
    /// A reservation that is not this producer's current one is refused (`Misuse`) and
    /// changes nothing: positions never move backwards.
    #[inline]
    pub fn commit<R: Region + ?Sized>(&mut self, region: &R, res: Reservation, len: u32) -> Result<(), RingError> {
        if res.pos != self.tail || len > res.len || res.index != self.geo.index(res.pos) {
            return Err(RingError::Misuse("commit of a reservation that is not the producer's current one"));
        }
        self.publish_record(region, res.index, len, record::size(u64::from(len)));
        Ok(())
    }

    /// Writes the header of a message record of `len` payload bytes (already written) and
    /// `size = record::size(len)` bytes at `tail` (whose index is `index`, with room for the
    /// record checked) and moves `tail`.
    #[inline]
    fn publish_record<R: Region + ?Sized>(&mut self, region: &R, index: usize, len: u32, size: u64) {
        let (stamp, info) = region.header(index);
        // Relaxed: ordered before the stamp's Release store below.
        info.store(record::info(len, size), Ordering::Relaxed);
        // SYNC POINT: Release pairs with the reader's Acquire load of the stamp: the info
        // word and the payload are visible before the record is.
        stamp.store(self.geo.stamp(self.tail, record::KIND_MESSAGE), Ordering::Release);
        self.tail += size;
    }

    /// Appends a message holding `msg` (`msg.len() <= max_message`, checked by the caller)
    /// and returns its position (its id):
    /// [`try_reserve`](Self::try_reserve), a copy and [`commit`](Self::commit) in one, with the common case (the record ends within
    /// `limit`: before the end of the region, and within a capacity of the cached `head`)
    /// one comparison. `Full` as `try_reserve`, which may have published padding on the
    /// way. Does not publish `tail` (a wrap's padding excepted): call
    /// [`publish`](Self::publish) after one or many.
    #[inline]
    pub fn push<G: Gate + ?Sized, R: Region + ?Sized>(
        &mut self,
        shared_tail: &AtomicU64,
        head: &G,
        region: &R,
        msg: &[u8],
    ) -> Result<u64, RingError> {
        self.push_prefixed(shared_tail, head, region, &[], msg)
    }

    /// [`push`](Self::push) of a record whose payload is `prefix` then `msg` (a durable
    /// queue's record: its prefix, then the message; `prefix.len() + msg.len() <=
    /// max_message`, checked by the caller). With an empty `prefix`, known at compile time,
    /// the code is `push`'s own.
    #[inline(always)]
    pub fn push_prefixed<G: Gate + ?Sized, R: Region + ?Sized>(
        &mut self,
        shared_tail: &AtomicU64,
        head: &G,
        region: &R,
        prefix: &[u8],
        msg: &[u8],
    ) -> Result<u64, RingError> {
        let len = (prefix.len() + msg.len()) as u32;
        debug_assert!(len <= self.geo.max_message && prefix.len() + msg.len() <= u32::MAX as usize);
        let size = record::size(u64::from(len));
        let index = if self.tail + size <= self.limit {
            self.geo.index(self.tail)
        } else {
            self.reserve_slow(shared_tail, head, region, len)?
        };
        if !prefix.is_empty() {
            region.write(index + record::HEADER, prefix);
        }
        region.write(index + record::HEADER + prefix.len(), msg);
        let pos = self.tail;
        self.publish_record(region, index, len, size);
        Ok(pos)
    }

    /// [`push_prefixed`](Self::push_prefixed), then [`publish`](Self::publish): one message
    /// (with an empty `prefix`, known at compile time, [`push`](Self::push)'s code). Returns
    /// its position.
    #[inline(always)]
    pub fn try_push<G: Gate + ?Sized, R: Region + ?Sized>(
        &mut self,
        shared_tail: &AtomicU64,
        head: &G,
        region: &R,
        prefix: &[u8],
        msg: &[u8],
    ) -> Result<u64, RingError> {
        let pos = self.push_prefixed(shared_tail, head, region, prefix, msg)?;
        self.publish(shared_tail);
        Ok(pos)
    }

    /// [`try_reserve`](Self::try_reserve) out of line, for [`push`](Self::push)'s
    /// uncommon case (a wrap, or the cached `head` says full): returns the reservation's
    /// index, and refreshes `limit`.
    #[cold]
    #[inline(never)]
    fn reserve_slow<G: Gate + ?Sized, R: Region + ?Sized>(
        &mut self,
        shared_tail: &AtomicU64,
        head: &G,
        region: &R,
        len: u32,
    ) -> Result<usize, RingError> {
        let res = self.try_reserve(shared_tail, head, region, len)?;
        self.limit = limit(&self.geo, self.tail, self.head_cache);
        Ok(res.index)
    }

    /// Stores the private `tail` into shared memory (for `len`, `inspect`, a successor).
    #[inline]
    pub fn publish(&self, shared_tail: &AtomicU64) {
        // Release: whoever reads tail may rely on the records below it being committed.
        shared_tail.store(self.tail, Ordering::Release);
    }
}

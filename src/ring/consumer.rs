//! The consumer of a ring (SPSC or MPSC).
//!
//! It owns `head`: it keeps the true value privately (read from shared memory once, when it
//! attaches), polls the header word at `head`, and publishes `head` after releasing records,
//! once per message or once per batch.

use super::{Geometry, Region, RingError};
use crate::layout::record;
use crate::sync::atomic::{AtomicU64, Ordering};

/// A committed message at the head of the ring, validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    /// Index of the first payload byte in the data region.
    pub payload: usize,
    /// Payload length (`<= max_message`, and within the region).
    pub len: u32,
    /// Bytes the whole record occupies.
    pub size: u64,
}

/// Announces, before zeroing, the position up to which bytes are consumed (MPSC): a
/// successor after a crash resumes there rather than at a published `head` whose records
/// have already been zeroed away.
#[inline]
fn announce(releasing: &AtomicU64, pos: u64) {
    // Relaxed: read only by a successor, after the kernel handed it our slot lock.
    releasing.store(pos, Ordering::Relaxed);
}

/// Consumer state; see the module docs.
#[derive(Debug)]
pub struct Consumer {
    geo: Geometry,
    /// Everything below is consumed. Private: never re-read from shared memory.
    head: u64,
    /// The value last stored into the shared `head`.
    published: u64,
    /// MPSC: zero consumed bytes before publishing (see the ring module docs).
    zero_consumed: bool,
}

impl Consumer {
    /// Attaches at `head` (read once by the caller from shared memory).
    pub fn new(geo: Geometry, head: u64, zero_consumed: bool) -> Result<Consumer, RingError> {
        if !super::plausible(head) {
            return Err(RingError::Corrupt("consumer position not aligned or out of range"));
        }
        Ok(Consumer { geo, head, published: head, zero_consumed })
    }

    /// The private consumer position.
    pub fn head(&self) -> u64 {
        self.head
    }

    /// The record at the head, if one is committed. Skips padding. Never waits.
    #[inline]
    /// `releasing` is the shared word announcing what is about to be zeroed (MPSC).
    pub fn peek<R: Region + ?Sized>(&mut self, region: &R, releasing: &AtomicU64) -> Result<Option<Record>, RingError> {
        // Honest padding never covers more than the region in one pass; more skips than
        // that means a writer keeps planting padding ahead of us.
        let mut skips_left = self.geo.capacity / record::HEADER as u64 + 1;
        loop {
            let index = self.geo.index(self.head);
            // SYNC POINT: Acquire pairs with the producer's Release store of the header: the
            // payload (and in SPSC the zeroed next header) is visible once the header is.
            let word = region.word(index).load(Ordering::Acquire);
            let d = record::decode(word);
            let room = self.geo.capacity - index as u64;
            match d.kind {
                record::KIND_EMPTY | record::KIND_CLAIMED => return Ok(None),
                record::KIND_MESSAGE => {
                    let size = record::size(u64::from(d.len));
                    if d.len > self.geo.max_message || size > room {
                        return Err(RingError::Corrupt("message header out of bounds"));
                    }
                    return Ok(Some(Record { payload: index + record::HEADER, len: d.len, size }));
                }
                record::KIND_PADDING => {
                    let size = record::HEADER as u64 + u64::from(d.len);
                    if d.len % record::ALIGN as u32 != 0 || size > room {
                        return Err(RingError::Corrupt("padding header out of bounds"));
                    }
                    if skips_left == 0 {
                        return Err(RingError::Corrupt("endless padding"));
                    }
                    skips_left -= 1;
                    self.head += size;
                    if self.zero_consumed {
                        announce(releasing, self.head);
                        region.zero(index, size as usize);
                    }
                }
                _ => return Err(RingError::Corrupt("unknown record kind")),
            }
        }
    }

    /// Consumes the record last returned by [`peek`](Self::peek). Does not publish.
    #[inline]
    pub fn release<R: Region + ?Sized>(&mut self, region: &R, rec: Record, releasing: &AtomicU64) {
        self.head += rec.size;
        if self.zero_consumed {
            announce(releasing, self.head);
            region.zero(rec.payload - record::HEADER, rec.size as usize);
        }
    }

    /// Whether no committed message waits at the head (padding is looked through). Does
    /// not move `head`; a snapshot.
    pub fn is_empty<R: Region + ?Sized>(&self, region: &R) -> bool {
        let mut head = self.head;
        for _ in 0..=self.geo.capacity / record::HEADER as u64 {
            let index = self.geo.index(head);
            // Acquire: as in `peek`.
            let d = record::decode(region.word(index).load(Ordering::Acquire));
            let room = self.geo.capacity - index as u64;
            match d.kind {
                record::KIND_MESSAGE => return false,
                record::KIND_PADDING if d.len % 8 == 0 && u64::from(d.len) + 8 <= room => head += 8 + u64::from(d.len),
                _ => return true,
            }
        }
        true
    }

    /// Whether `head` moved since the last [`publish`](Self::publish).
    #[inline]
    pub fn has_unpublished(&self) -> bool {
        self.head != self.published
    }

    /// Stores the private `head` into shared memory, handing the consumed space back.
    #[inline]
    pub fn publish(&mut self, shared_head: &AtomicU64) {
        // SYNC POINT: Release pairs with the producers' Acquire load of `head`: our reads
        // (and zeroing) of the consumed bytes happen before anyone overwrites them.
        shared_head.store(self.head, Ordering::Release);
        self.published = self.head;
    }
}

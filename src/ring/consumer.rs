//! The consumer of a ring (SPSC or MPSC).
//!
//! It owns `head`: it keeps the true value privately (read from shared memory once, when it
//! attaches), reads the record at `head` when its stamp is the one for that position, and
//! publishes `head` after releasing records, once per message or once per batch. It writes
//! nothing into the data region: a consumer killed at any point leaves its successor a ring
//! that needs no repair (it resumes at the published `head`, so messages taken but not yet
//! published are delivered again).

use super::{Found, Geometry, Region, RingError};
use crate::layout::record;
use crate::sync::atomic::{AtomicU64, Ordering};

/// A committed message at the head of the ring, validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    /// Position of the record (the message's id).
    pub pos: u64,
    /// Index of the first payload byte in the data region.
    pub payload: usize,
    /// Payload length (`<= max_message`, and within the region).
    pub len: u32,
    /// Bytes the whole record occupies.
    pub size: u64,
}

/// What [`Consumer::look`] found at the head.
pub enum Look {
    /// A valid message.
    Message(Record),
    /// Nothing stamped for this position.
    Nothing,
    /// Padding, another kind, or a header that fails validation: see `peek_general`.
    Other,
}

/// Consumer state; see the module docs.
#[derive(Debug)]
pub struct Consumer {
    geo: Geometry,
    /// `geo.max_record()`, kept at hand for the per-message validation.
    max_record: u64,
    /// Everything below is consumed. Private: never re-read from shared memory.
    head: u64,
    /// The value last stored into the shared `head`.
    published: u64,
    /// Records at or above it are not this reader's: the end of a subscription member's
    /// claimed span (`u64::MAX` for a queue's one consumer), or where a durable queue's
    /// synced records end.
    limit: u64,
    /// Bytes each record carries before the message (a durable queue's prefix), skipped.
    prefix: u32,
    /// [`publish`](Self::publish) stores no position past it: the first message the reader
    /// took but holds for later release (`u64::MAX`: none held).
    hold: u64,
}

impl Consumer {
    /// Attaches at `head` (read once by the caller from shared memory).
    pub fn new(geo: Geometry, head: u64) -> Result<Consumer, RingError> {
        if !super::plausible(head) {
            return Err(RingError::Corrupt("consumer position not aligned or out of range"));
        }
        Ok(Consumer {
            geo,
            max_record: geo.max_record(),
            head,
            published: head,
            limit: u64::MAX,
            prefix: 0,
            hold: u64::MAX,
        })
    }

    /// Records carry `prefix` bytes before the message (a durable queue's): messages start
    /// after them, and a record shorter than that is corrupt.
    pub fn set_prefix(&mut self, prefix: u32) {
        self.prefix = prefix;
    }

    /// Reads nothing at or above `limit` (the queue's one consumer of a durable queue
    /// synced on every send: records not yet synced).
    pub fn set_limit(&mut self, limit: u64) {
        self.limit = limit;
    }

    /// Makes `[start, end)` (a span a member of a subscription claimed: records from
    /// `start` up to `end`) what this reader reads; it reads nothing once at `end`.
    pub fn set_span(&mut self, start: u64, end: u64) {
        self.head = start;
        self.published = start;
        self.limit = end;
    }

    /// Moves `head` forward to `pos` (records between were read elsewhere: a durable
    /// queue's log). Does not publish.
    pub fn skip_to(&mut self, pos: u64) {
        self.head = self.head.max(pos);
    }

    /// The end of the span (see [`set_span`](Self::set_span)).
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// The private consumer position.
    pub fn head(&self) -> u64 {
        self.head
    }

    /// The record at the head, if one is committed. Skips padding (moving `head`, which the
    /// caller should then publish even if no message follows: producers may be waiting for
    /// that space). Never waits.
    #[inline]
    pub fn peek<R: Region + ?Sized>(&mut self, region: &R) -> Result<Option<Record>, RingError> {
        match self.look(region) {
            Look::Message(rec) => Ok(Some(rec)),
            Look::Nothing => Ok(None),
            Look::Other => self.peek_general(region),
        }
    }

    /// The common case of [`peek`](Self::peek), straight-line: a valid message at the head.
    /// `None` for anything else (not there yet, padding, a record that fails validation),
    /// which [`peek`](Self::peek) then reads afresh and decides on.
    #[inline]
    pub fn peek_message<R: Region + ?Sized>(&self, region: &R) -> Option<Record> {
        match self.look(region) {
            Look::Message(rec) => Some(rec),
            Look::Nothing | Look::Other => None,
        }
    }

    /// One read of the stamp at the head: a valid message, nothing stamped for this
    /// position (a record not yet there: what `read_record` calls `Nothing`; `head` did not
    /// move), or anything else, for [`peek`](Self::peek) to decide.
    #[inline]
    pub fn look<R: Region + ?Sized>(&self, region: &R) -> Look {
        if self.head >= self.limit {
            return Look::Nothing;
        }
        let index = self.geo.index(self.head);
        let room = self.geo.capacity - index as u64;
        if room < record::HEADER as u64 {
            return Look::Other;
        }
        let (stamp, info) = region.header(index);
        // SYNC POINT: Acquire pairs with the producer's Release store (SPSC) or CAS (MPSC)
        // of the stamp: the info word and the payload written before it are visible.
        let stamp = stamp.load(Ordering::Acquire);
        if stamp != self.geo.stamp(self.head, record::KIND_MESSAGE) {
            // As in `read_record`: a stamp whose high bits are not this position's is not
            // a record (stale bytes of an earlier lap, a record being written).
            let nothing = stamp ^ self.geo.stamp(self.head, 0) > record::KIND_MASK;
            return if nothing { Look::Nothing } else { Look::Other };
        }
        // Relaxed: ordered after the stamp's Acquire load; read once, validated here as in
        // `read_record`.
        let (len, size) = record::decode_info(info.load(Ordering::Relaxed));
        let valid = len <= self.geo.max_message
            && record::size(u64::from(len)) <= size
            && size <= room.min(self.max_record)
            && len >= self.prefix;
        if valid {
            let payload = index + record::HEADER + self.prefix as usize;
            Look::Message(Record { pos: self.head, payload, len: len - self.prefix, size })
        } else {
            Look::Other
        }
    }

    /// [`peek`](Self::peek) for any record: padding, nothing, corrupt headers.
    #[inline(never)]
    fn peek_general<R: Region + ?Sized>(&mut self, region: &R) -> Result<Option<Record>, RingError> {
        // Honest padding never covers more than the region in one pass; more skips than
        // that means a writer keeps planting padding ahead of us.
        let mut skips_left = self.geo.capacity / record::ALIGN as u64 + 1;
        loop {
            if self.head >= self.limit {
                return Ok(None);
            }
            match super::read_record(&self.geo, region, self.head)? {
                Found::Nothing => return Ok(None),
                Found::Message { len, size } => {
                    if len < self.prefix {
                        return Err(RingError::Corrupt("record shorter than the queue's prefix"));
                    }
                    let payload = self.geo.index(self.head) + record::HEADER + self.prefix as usize;
                    return Ok(Some(Record { pos: self.head, payload, len: len - self.prefix, size }));
                }
                Found::Skip { size } => {
                    if skips_left == 0 {
                        return Err(RingError::Corrupt("endless padding"));
                    }
                    skips_left -= 1;
                    self.head += size;
                }
            }
        }
    }

    /// Consumes the record last returned by [`peek`](Self::peek). Does not publish.
    #[inline]
    pub fn release(&mut self, rec: Record) {
        debug_assert_eq!(rec.pos, self.head);
        self.head += rec.size;
    }

    /// Whether no committed message waits at the head (padding is looked through). Does
    /// not move `head`; a snapshot.
    pub fn is_empty<R: Region + ?Sized>(&self, region: &R) -> bool {
        let mut head = self.head;
        for _ in 0..=self.geo.capacity / record::ALIGN as u64 {
            if head >= self.limit {
                return true;
            }
            match super::read_record(&self.geo, region, head) {
                Ok(Found::Skip { size }) => head += size,
                Ok(Found::Message { .. }) => return false,
                Ok(Found::Nothing) | Err(_) => return true,
            }
        }
        true
    }

    /// Makes [`publish`](Self::publish) store no position past `hold` (the first record
    /// still held; `u64::MAX` for none), so that a successor resumes there.
    pub fn set_hold(&mut self, hold: u64) {
        self.hold = hold;
    }

    /// The position [`publish`](Self::publish) would store: `head`, or the first held record.
    #[inline]
    pub fn publishable(&self) -> u64 {
        self.head.min(self.hold)
    }

    /// Whether the position to publish moved since the last [`publish`](Self::publish).
    #[inline]
    pub fn has_unpublished(&self) -> bool {
        self.publishable() != self.published
    }

    /// The position last published.
    pub fn published(&self) -> u64 {
        self.published
    }

    /// Records that the caller stored `at` (its own way: a durable queue's consumer swaps
    /// its cursor word, flags and all).
    pub fn mark_published(&mut self, at: u64) {
        self.published = at;
    }

    /// Stores the private `head` (or the first held record, if that is before it) into
    /// shared memory, handing the consumed space back.
    #[inline]
    pub fn publish(&mut self, shared_head: &AtomicU64) {
        let at = self.publishable();
        // SYNC POINT: Release pairs with the producers' Acquire load of `head`: our reads of
        // the consumed bytes happen before anyone overwrites them.
        shared_head.store(at, Ordering::Release);
        self.published = at;
    }
}

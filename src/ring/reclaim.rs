//! Passing the claim of an MPSC producer that died between claiming space and committing it.
//!
//! A reader stuck at position `at` (no record there, but `tail` is past it) looks for the
//! claimant among the producers' claim records ([`Claim`], copied from the participant
//! slots). A producer records `[pos, end)` *before* its claim's compare-and-swap on `tail`,
//! so the producer whose claim covers `at` has such a record until it finishes (a producer
//! that lost the race may have one too, until its next attempt records another claim or
//! finds no room and clears it before it waits; which is why a dead claimant is only acted
//! on when the evidence is unambiguous):
//!
//! * candidates are the records with `pos <= at < end`; if none, or any candidate's process
//!   is alive (a stopped process is alive), the reader waits;
//! * the claimant is the candidate with the greatest `pos` (a producer that lost the race
//!   for that space read `tail` no later than the winner did); of candidates tied on `pos`
//!   with different ends, the claimant's is the smallest end that is a record boundary (a
//!   loser's smaller end would lie inside the winner's uncommitted claim, where no boundary
//!   can be); if none is, the reader waits rather than guess;
//! * `[at, end)` becomes padding in three steps, each harmless to repeat: a compare-and-swap
//!   of the stamp from what the reader saw to `RECLAIMING` (so a late commit, which swaps
//!   from the same stale value, cannot also succeed), the info word, then the padding stamp
//!   (Release). A reader that finds `RECLAIMING` (its predecessor died half-way) redoes the
//!   last two steps with the same values.
//!
//! Proving death (the slot's lock is free) and clearing the dead claim records are the
//! caller's, which has the system calls and the participant table.

use super::{Found, Geometry, Region, RingError};
use crate::layout::record;
use crate::sync::atomic::Ordering;

/// A claim record copied from a producer's participant slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Claim {
    /// The participant slot.
    pub slot: usize,
    /// Start of the claimed space.
    pub pos: u64,
    /// End of the claimed space.
    pub end: u64,
}

/// What [`reclaim`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A record is readable at `at`, or nothing is claimed there: nothing to do.
    NotStuck,
    /// The claimant lives (maybe stopped), cannot be identified yet, or is ambiguous.
    Wait(&'static str),
    /// `[at, end)` is padding now. `dead` has a bit per slot whose claim covered `at`: their
    /// holders were dead, and their claim records can be cleared.
    Reclaimed {
        /// End of the padding.
        end: u64,
        /// Bit `i` for slot `i`.
        dead: u64,
    },
}

/// Looks at position `at` of a ring whose `tail` (read with Acquire before `claims` were
/// copied) is past it, and turns a dead claimant's space into padding. `alive(slot)` asks
/// the kernel whether a slot's holder lives.
pub fn reclaim<R: Region + ?Sized>(
    geo: &Geometry,
    region: &R,
    at: u64,
    tail: u64,
    claims: &[Claim],
    mut alive: impl FnMut(usize) -> bool,
) -> Result<Outcome, RingError> {
    if !super::plausible(at) || !super::plausible(tail) || tail.wrapping_sub(at) > geo.capacity {
        return Err(RingError::Corrupt("positions outside the ring"));
    }
    if at >= tail || super::read_record(geo, region, at)? != Found::Nothing {
        return Ok(Outcome::NotStuck);
    }
    let index = geo.index(at);
    let room = geo.capacity - index as u64;
    let covers = |c: &&Claim| {
        super::plausible(c.pos) && super::plausible(c.end) && c.pos <= at && at < c.end && c.end <= tail && c.slot < 64
    };
    let candidates: Vec<Claim> = claims.iter().filter(covers).copied().collect();
    if candidates.is_empty() {
        return Ok(Outcome::Wait("no claim record covers the position"));
    }
    if candidates.iter().any(|c| alive(c.slot)) {
        return Ok(Outcome::Wait("the claimant is alive"));
    }
    let top = candidates.iter().map(|c| c.pos).max().unwrap_or(at);
    let mut ends: Vec<u64> = candidates.iter().filter(|c| c.pos == top).map(|c| c.end).collect();
    ends.sort_unstable();
    ends.dedup();
    let end = match ends[..] {
        [e] => e,
        _ => {
            // A dead loser and a dead winner that read the same `tail`: the true end is
            // where the next record starts.
            let boundary = |e: u64| {
                e == tail
                    || claims.iter().any(|c| c.pos == e)
                    || matches!(super::read_record(geo, region, e), Ok(Found::Message { .. } | Found::Skip { .. }))
            };
            // The winner's end is always one (the next claim starts there, or `tail` is
            // there). A loser's end below it would lie inside the winner's claim, past the
            // uncommitted `at`, where nothing is committed, no claim starts (`tail` jumped
            // over it) and `tail` is not: never a boundary. So the smallest boundary is the
            // winner's end, however many later records line up with a loser's end.
            match ends.iter().copied().filter(|&e| boundary(e)).min() {
                Some(e) => e,
                None => return Ok(Outcome::Wait("ambiguous dead claims")),
            }
        }
    };
    let span = end - at;
    if span > room || (span < record::HEADER as u64 && span != room) {
        return Err(RingError::Corrupt("claim record out of bounds"));
    }
    let word = region.word(index);
    // Acquire: pairs with a producer's Release CAS of the stamp, so that a commit seen here
    // is reported as `NotStuck` consistently with `read_record`. (No data is read after it:
    // the CAS below, not this load, decides who owns the stale value.)
    let seen = word.load(Ordering::Acquire);
    let reclaiming = geo.stamp(at, record::KIND_RECLAIMING);
    if seen != reclaiming {
        if seen & record::KIND_MASK != 0 && seen == geo.stamp(at, seen & record::KIND_MASK) {
            return Ok(Outcome::NotStuck); // committed meanwhile
        }
        // Relaxed both ways: the CAS only decides who owns the stale value (a late commit
        // swaps from the same one); the padding is published by the Release store below.
        if word.compare_exchange(seen, reclaiming, Ordering::Relaxed, Ordering::Relaxed).is_err() {
            return Ok(Outcome::Wait("the record changed while reclaiming"));
        }
    }
    let stamp = if span == room {
        geo.stamp(at, record::KIND_PAD_END)
    } else {
        // Relaxed: published by the Release store of the stamp below.
        region.word(index + 8).store(record::info(0, span), Ordering::Relaxed);
        geo.stamp(at, record::KIND_PADDING)
    };
    // SYNC POINT: Release pairs with the readers' Acquire load of the stamp (the info word
    // is visible before the padding is).
    word.store(stamp, Ordering::Release);
    let dead = candidates.iter().fold(0u64, |m, c| m | 1 << c.slot);
    Ok(Outcome::Reclaimed { end, dead })
}

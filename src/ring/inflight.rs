//! The in-flight table of a subscription with explicit acks: how its entries change hands.
//!
//! An entry holds one message a member was handed and has not acknowledged (or one to hand
//! out again). Its `owner` word says who holds it and in which state (`IF_*` in
//! [`crate::layout`]); every change of hands is one compare-and-swap on that word, and every change
//! raises the word's tag, so a compare-and-swap expecting what a former owner saw fails.
//! A holder's own steps from `RESERVED` or `RETAKING` on to `ACQUIRED` (`filled`, `commit`)
//! hand nothing to anyone: they are plain Release stores (see [`filled`]).
//!
//! ```text
//!   FREE --reserve--> RESERVED --filled--> FILLED --commit--> ACQUIRED --ack--> FREE
//!                                              |  \--reject--> MOVING --moved--> FREE
//!           nack, expiry, the owner's death    v                 ^ (its mover died: DOOMED)
//!                                          RELEASED --retake--> RETAKING --commit--> ACQUIRED
//!                                              \-(too many deliveries)--> MOVING
//! ```
//!
//! A nack goes `ACQUIRED` → `RETAKING` (its owner's still, out of expiry's reach) → writes
//! its reason → `RELEASED`; a reject goes `ACQUIRED` → `MOVING` → writes its reason. Either
//! first proves by its compare-and-swap that the entry is still the caller's, so one that
//! comes too late writes nothing.
//!
//! Only the holder writes an entry's fields, between the compare-and-swap that made it the
//! holder (Acquire: the previous holder's accesses are done) and the one that hands it on
//! (Release: the fields are visible to whoever takes it next). Fields are read once and
//! validated by their users: a hostile writer can put anything here.
//!
//! What is *not* decided here: whether an owner is dead (the queue asks the kernel about
//! its slot's lock), and `RESERVED` entries of a dead owner (they are resolved with its
//! claim, by the member that takes the claim over).

use crate::layout::{
    IF_ACQUIRED, IF_DOOMED, IF_FILLED, IF_FREE, IF_MOVING, IF_RELEASED, IF_RESERVED, IF_RETAKING, InFlight, REASON_MAX,
};
use crate::sync::atomic::Ordering;

/// The tag's bits (the word's top 48).
const TAG_MASK: u64 = (1 << 48) - 1;

/// The state of owner word `w` (`IF_*`).
#[inline]
pub fn state(w: u64) -> u64 {
    w & 0xff
}

/// The participant slot of owner word `w`.
#[inline]
pub fn slot(w: u64) -> usize {
    ((w >> 8) & 0xff) as usize
}

/// The owner word after `w`: tag raised, held by `slot` in `state`.
#[inline]
pub fn next(w: u64, slot: usize, state: u64) -> u64 {
    ((((w >> 16) + 1) & TAG_MASK) << 16) | ((slot as u64 & 0xff) << 8) | state
}

/// What a member writes into an entry it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fields {
    /// The message's position.
    pub pos: u64,
    /// The end of its record.
    pub end: u64,
    /// Times handed out, this one included.
    pub deliveries: u32,
    /// When it expires (`CLOCK_MONOTONIC` nanoseconds).
    pub deadline_ns: u64,
    /// When it was first handed out (Unix nanoseconds).
    pub first_unix_ns: u64,
    /// The holder's pid.
    pub pid: u32,
}

/// Reads an entry's fields (once each; the caller validates them).
pub fn fields(e: &InFlight) -> Fields {
    // Relaxed, all: the caller loaded `owner` with Acquire (or holds the entry).
    Fields {
        pos: e.pos.load(Ordering::Relaxed),
        end: e.end.load(Ordering::Relaxed),
        deliveries: e.deliveries.load(Ordering::Relaxed),
        deadline_ns: e.deadline_ns.load(Ordering::Relaxed),
        first_unix_ns: e.first_unix_ns.load(Ordering::Relaxed),
        pid: e.pid.load(Ordering::Relaxed),
    }
}

/// Writes the fields of an entry the caller holds (`RESERVED` or `RETAKING`).
pub fn fill(e: &InFlight, f: &Fields) {
    // Relaxed, all: published by the Release of the `commit` that follows.
    e.pos.store(f.pos, Ordering::Relaxed);
    e.end.store(f.end, Ordering::Relaxed);
    e.deliveries.store(f.deliveries, Ordering::Relaxed);
    e.deadline_ns.store(f.deadline_ns, Ordering::Relaxed);
    e.first_unix_ns.store(f.first_unix_ns, Ordering::Relaxed);
    e.pid.store(f.pid, Ordering::Relaxed);
}

/// Writes the reason of an entry the caller holds (cut at [`REASON_MAX`] bytes).
pub fn set_reason(e: &InFlight, reason: &[u8]) {
    let r = &reason[..reason.len().min(REASON_MAX)];
    let mut words = [0u64; REASON_MAX / 8];
    for (i, b) in r.iter().enumerate() {
        words[i / 8] |= (*b as u64) << (8 * (i % 8));
    }
    // Relaxed, all: published by the Release of the hand-on that follows.
    for (w, v) in e.reason.iter().zip(words) {
        w.store(v, Ordering::Relaxed);
    }
    e.reason_len.store(r.len() as u32, Ordering::Relaxed);
}

/// The reason an entry keeps (what a nack or reject gave), read once.
pub fn reason(e: &InFlight) -> Vec<u8> {
    // Relaxed, all: the caller holds the entry, or loaded `owner` with Acquire.
    let len = (e.reason_len.load(Ordering::Relaxed) as usize).min(REASON_MAX);
    let mut out = Vec::with_capacity(REASON_MAX);
    for w in &e.reason {
        out.extend_from_slice(&w.load(Ordering::Relaxed).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The owner word now.
#[inline]
pub fn load(e: &InFlight) -> u64 {
    // Acquire: pairs with the Release of the last hand-on: its fields are visible.
    e.owner.load(Ordering::Acquire)
}

/// Swaps `from` (what the caller saw) for `to`.
#[inline]
fn swap(e: &InFlight, from: u64, to: u64) -> bool {
    // SYNC POINT: AcqRel. Release: the fields (and reason) the caller wrote while holding the
    // entry are visible to its next holder, and the caller's reads of them are done.
    // Acquire: the previous holder's writes are visible to the caller, which may now
    // write the fields.
    e.owner.compare_exchange(from, to, Ordering::AcqRel, Ordering::Relaxed).is_ok()
}

/// Takes entry `e` if it is free, for `slot`: the new owner word (`RESERVED`).
pub fn reserve(e: &InFlight, slot: usize) -> Option<u64> {
    let w = load(e);
    if state(w) != IF_FREE {
        return None;
    }
    let to = next(w, slot, IF_RESERVED);
    swap(e, w, to).then_some(to)
}

/// Marks a `RESERVED` entry the caller holds (word `w`) as filled: its fields are the
/// message's from now on (a `RESERVED` one's are a former holder's). The new word (`FILLED`).
///
/// A load and a store, not a compare-and-swap: while its holder lives, nobody else writes
/// the word of a `RESERVED`, `FILLED` or `RETAKING` entry (others change those only once
/// the holder's slot lock says it died), so the word is still `w`. The load catches a stale
/// `w` and a hostile writer's change made before it (one made between the two is simply
/// overwritten: the entry stays the holder's). This and [`commit`] were two of the five
/// atomic read-modify-writes a fresh message cost; as stores, an explicit member keeps up
/// with a producer at 64 B (`shmq bench --acks`).
pub fn filled(e: &InFlight, w: u64) -> Option<u64> {
    if state(w) != IF_RESERVED {
        return None;
    }
    hand_on_self(e, w, IF_FILLED)
}

/// The holder's own step from word `w` to `state` (see [`filled`]).
#[inline]
fn hand_on_self(e: &InFlight, w: u64, state: u64) -> Option<u64> {
    // Relaxed: the holder's own last store (or a hostile one); only compared.
    if e.owner.load(Ordering::Relaxed) != w {
        return None;
    }
    let to = next(w, slot(w), state);
    // Release: the fields written while holding the entry are visible to whoever loads the
    // new word with Acquire (a dead holder's filled entry is resolved from them; an
    // acquired one's deadline is what expiry compares).
    e.owner.store(to, Ordering::Release);
    Some(to)
}

/// Hands an entry the caller holds (`FILLED`, `RESERVED` or `RETAKING`, word `w`) out to
/// itself: the new word (`ACQUIRED`), or `None` if the word is not `w` (stale, or a hostile
/// writer). A store, as [`filled`]: from `ACQUIRED` on others may take the entry (expiry),
/// and this Release publishes its fields to them.
pub fn commit(e: &InFlight, w: u64) -> Option<u64> {
    if !matches!(state(w), IF_FILLED | IF_RESERVED | IF_RETAKING) {
        return None;
    }
    hand_on_self(e, w, IF_ACQUIRED)
}

/// Acknowledges a message: `ACQUIRED` by the caller (word `w`) to `FREE`. `false`: the
/// entry was released meanwhile (expired, or taken for a dead owner's): too late.
pub fn ack(e: &InFlight, w: u64) -> bool {
    state(w) == IF_ACQUIRED && swap(e, w, next(w, 0, IF_FREE))
}

/// Takes an `ACQUIRED` entry the caller holds (word `w`) out of expiry's reach before it
/// writes its reason and hands it back (a nack): `RETAKING`, which only the owner's death
/// takes from it. The new word, or `None` if the entry was released meanwhile (too late:
/// the caller must then change nothing in it).
pub fn begin_hand_back(e: &InFlight, w: u64) -> Option<u64> {
    if state(w) != IF_ACQUIRED {
        return None;
    }
    let to = next(w, slot(w), IF_RETAKING);
    swap(e, w, to).then_some(to)
}

/// Releases an `ACQUIRED` or `RETAKING` entry (word `w`: a nack by its owner, or its owner
/// dead) to be delivered again; a `MOVING` one to `DOOMED` (its mover died). The new word,
/// or `None` if it changed meanwhile.
pub fn release(e: &InFlight, w: u64) -> Option<u64> {
    let to = match state(w) {
        IF_ACQUIRED | IF_RETAKING => next(w, slot(w), IF_RELEASED),
        IF_MOVING => next(w, slot(w), IF_DOOMED),
        _ => return None,
    };
    swap(e, w, to).then_some(to)
}

/// Releases an `ACQUIRED` entry whose deadline has passed at `now_ns` (any member may):
/// whether it did.
pub fn expire(e: &InFlight, now_ns: u64) -> bool {
    let w = load(e);
    if state(w) != IF_ACQUIRED {
        return false;
    }
    // Relaxed: ordered after the Acquire load of `w`; the swap fails if the entry changed
    // hands since (a new owner writes a new deadline before its commit).
    let deadline = e.deadline_ns.load(Ordering::Relaxed);
    deadline <= now_ns && swap(e, w, next(w, slot(w), IF_RELEASED))
}

/// Takes a `RELEASED` entry to hand it out again (`RETAKING`), or a `DOOMED` one to move it
/// (`MOVING`), for `slot`: the new word.
pub fn retake(e: &InFlight, slot: usize) -> Option<u64> {
    let w = load(e);
    let to = match state(w) {
        IF_RELEASED => next(w, slot, IF_RETAKING),
        IF_DOOMED => next(w, slot, IF_MOVING),
        _ => return None,
    };
    swap(e, w, to).then_some(to)
}

/// Starts moving an entry the caller holds (`ACQUIRED` for a reject, `RETAKING` past its
/// last delivery) to the dead-letter queue: the new word (`MOVING`).
pub fn begin_move(e: &InFlight, w: u64) -> Option<u64> {
    if !matches!(state(w), IF_ACQUIRED | IF_RETAKING) {
        return None;
    }
    let to = next(w, slot(w), IF_MOVING);
    swap(e, w, to).then_some(to)
}

/// Frees an entry the caller holds (`MOVING` once moved, `RESERVED` or `FILLED` not handed
/// out, or `RETAKING` what turned out not to be a message).
pub fn free(e: &InFlight, w: u64) -> bool {
    matches!(state(w), IF_MOVING | IF_RESERVED | IF_FILLED | IF_RETAKING) && swap(e, w, next(w, 0, IF_FREE))
}

/// Releases a `FILLED` entry whose message its dead owner had handed out (the taker of the
/// owner's claim decides so): to be delivered again.
pub fn release_filled(e: &InFlight, w: u64) -> bool {
    state(w) == IF_FILLED && swap(e, w, next(w, slot(w), IF_RELEASED))
}

/// A free entry, all its words zero, made of loom's atomics (which, unlike std's, cannot
/// be zeroed in place): the loom models (`tests/loom_inflight.rs`) build entries with it.
#[cfg(loom)]
pub fn loom_entry() -> Box<InFlight> {
    use crate::sync::atomic::{AtomicU32, AtomicU64};
    // `InFlight` is `repr(C)`: its private `_pad` (an `AtomicU32`) directly follows
    // `reason_len`, and `reason` comes after both.
    const _: () = assert!(
        std::mem::offset_of!(InFlight, reason)
            >= std::mem::offset_of!(InFlight, reason_len) + 2 * std::mem::size_of::<AtomicU32>()
    );
    let mut b = Box::<InFlight>::new_uninit();
    let p = b.as_mut_ptr();
    // SAFETY: `p` points to memory allocated for one `InFlight`; every field is written
    // once, through raw pointers (no reference to uninitialized memory), before
    // `assume_init`: the public ones by name, `_pad` one `AtomicU32` past `reason_len`
    // (`repr(C)`, checked above); the bytes left are padding.
    unsafe {
        (&raw mut (*p).owner).write(AtomicU64::new(0));
        (&raw mut (*p).pos).write(AtomicU64::new(0));
        (&raw mut (*p).end).write(AtomicU64::new(0));
        (&raw mut (*p).deadline_ns).write(AtomicU64::new(0));
        (&raw mut (*p).first_unix_ns).write(AtomicU64::new(0));
        (&raw mut (*p).deliveries).write(AtomicU32::new(0));
        (&raw mut (*p).pid).write(AtomicU32::new(0));
        let len = &raw mut (*p).reason_len;
        len.write(AtomicU32::new(0));
        len.add(1).write(AtomicU32::new(0));
        let reason = (&raw mut (*p).reason).cast::<AtomicU64>();
        for i in 0..REASON_MAX / 8 {
            reason.add(i).write(AtomicU64::new(0));
        }
        b.assume_init()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn entry() -> Box<InFlight> {
        // SAFETY: InFlight is made of atomics, for which all-zero bytes are valid.
        unsafe { Box::new(std::mem::zeroed()) }
    }

    #[test]
    fn an_entry_goes_round_and_a_former_owner_cannot_ack_it() {
        let e = entry();
        let r = reserve(&e, 3).expect("free");
        assert!(reserve(&e, 4).is_none(), "held");
        fill(&e, &Fields { pos: 64, end: 128, deliveries: 1, deadline_ns: 10, first_unix_ns: 1, pid: 7 });
        let a = commit(&e, r).expect("ours");
        assert_eq!((state(a), slot(a)), (IF_ACQUIRED, 3));
        assert!(!expire(&e, 9), "not yet");
        assert!(expire(&e, 10), "expired");
        assert!(!ack(&e, a), "a late ack fails");
        let t = retake(&e, 5).expect("released");
        assert_eq!(slot(t), 5);
        let a2 = commit(&e, t).expect("ours");
        assert!(!ack(&e, a), "the first owner's word is stale");
        set_reason(&e, &[b'x'; 100]);
        assert_eq!(reason(&e), vec![b'x'; REASON_MAX]);
        assert!(ack(&e, a2));
        assert_eq!(state(load(&e)), IF_FREE);
        let r = reserve(&e, 1).expect("free again");
        assert!(free(&e, r));
    }

    #[test]
    fn a_hand_back_is_refused_once_the_entry_expired_and_keeps_expiry_away_otherwise() {
        let e = entry();
        let a = commit(&e, reserve(&e, 3).unwrap()).unwrap();
        assert!(expire(&e, u64::MAX));
        assert!(begin_hand_back(&e, a).is_none(), "expired: too late");
        let a = commit(&e, retake(&e, 4).unwrap()).unwrap();
        let h = begin_hand_back(&e, a).expect("still ours");
        assert_eq!((state(h), slot(h)), (IF_RETAKING, 4));
        assert!(!expire(&e, u64::MAX), "a hand-back in progress does not expire");
        assert_eq!(state(release(&e, h).unwrap()), IF_RELEASED);
    }

    #[test]
    fn a_dead_mover_leaves_the_entry_doomed_and_the_next_taker_moves_it() {
        let e = entry();
        let r = reserve(&e, 2).unwrap();
        let a = commit(&e, r).unwrap();
        let m = begin_move(&e, a).unwrap();
        assert!(!expire(&e, u64::MAX), "a move never expires");
        let d = release(&e, m).unwrap();
        assert_eq!(state(d), IF_DOOMED);
        let m2 = retake(&e, 9).unwrap();
        assert_eq!((state(m2), slot(m2)), (IF_MOVING, 9));
        assert!(free(&e, m2));
    }

    #[test]
    fn the_tag_wraps_round_without_touching_the_slot_or_the_state() {
        let top = (TAG_MASK << 16) | (7 << 8) | IF_ACQUIRED;
        let w = next(top, 9, IF_RELEASED);
        assert_eq!((w >> 16, slot(w), state(w)), (0, 9, IF_RELEASED));
        assert_eq!(next(w, 9, IF_RELEASED) >> 16, 1);
        assert_eq!(slot(next(0, 0x1ff, IF_FREE)), 0xff, "a slot keeps its byte");
    }

    #[test]
    fn a_call_for_another_state_fails_and_leaves_the_word_alone() {
        let e = entry();
        let unchanged = |e: &InFlight, w: u64| assert_eq!(load(e), w);
        let r = reserve(&e, 1).unwrap();
        assert!(!ack(&e, r) && release(&e, r).is_none() && begin_move(&e, r).is_none());
        assert!(retake(&e, 2).is_none() && !expire(&e, u64::MAX));
        unchanged(&e, r);
        let a = commit(&e, r).unwrap();
        assert!(commit(&e, r).is_none(), "a word used once is stale");
        assert!(!free(&e, a) && retake(&e, 2).is_none() && reserve(&e, 2).is_none());
        unchanged(&e, a);
        let d = release(&e, a).unwrap();
        assert!(!ack(&e, d) && release(&e, d).is_none() && !free(&e, d) && begin_move(&e, d).is_none());
        assert!(!expire(&e, u64::MAX) && commit(&e, a).is_none() && !ack(&e, a));
        unchanged(&e, d);
        // Past its last delivery: retaken, then moved (never handed out).
        let t = retake(&e, 2).unwrap();
        assert!(!ack(&e, t), "a retake is not handed out yet");
        let m = begin_move(&e, t).unwrap();
        assert!(begin_move(&e, m).is_none() && retake(&e, 3).is_none() && commit(&e, t).is_none());
        unchanged(&e, m);
        assert!(free(&e, m) && !free(&e, m));
        assert_eq!(state(load(&e)), IF_FREE);
    }

    #[test]
    fn a_reason_is_read_back_and_a_hostile_length_is_cut() {
        let e = entry();
        set_reason(&e, b"no such customer");
        assert_eq!(reason(&e), b"no such customer");
        set_reason(&e, b"");
        assert_eq!(reason(&e), b"");
        // Relaxed: one thread (a hostile writer's length).
        e.reason_len.store(u32::MAX, Ordering::Relaxed);
        assert_eq!(reason(&e).len(), REASON_MAX);
    }
}

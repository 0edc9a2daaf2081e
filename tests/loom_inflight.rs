//! loom models of the in-flight table of a subscription with explicit acks (`ring::inflight`):
//! how an entry changes hands between members acknowledging, expiring, retaking, reserving
//! and moving it.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test --test loom_inflight --release`. Under
//! `--cfg loom` the library's atomics are loom's, so the very code of
//! `src/ring/inflight.rs` is explored; entries are built with `inflight::loom_entry` (loom's
//! atomics cannot be zeroed in place as the shared table's are). Threads stand for members
//! in different processes; slots are their participant slots.
//!
//! As in `tests/loom.rs`, each model lists the outcomes it may have and checks after the
//! exploration that exactly those were seen, so that an interleaving the model is about
//! that stopped being explored fails as loudly as a bug. The negative controls run a
//! deliberately broken variant and check that the invariant would have caught it in some
//! interleaving (the violation is recorded outside loom, not panicked on, so the exploration
//! runs to the end and the control cannot pass by crashing for another reason).
//!
//! The models: (1) an owner acks while another member expires its entry and a third retakes,
//! refills, commits and acks it, with a negative control (an ack that stores `FREE` after a
//! load instead of a compare-and-swap); (2) two members retake a released entry while a
//! third reads it, with a negative control (a commit without Release); (3) a member
//! reserves, fills and commits an entry while another scans it for a free one; (4) a mover
//! whose entry is doomed (its mover died) races an expirer, and two members retake the
//! doomed entry; (5) an owner nacks its entry with a reason while another member expires
//! and retakes it, with a negative control (a nack that writes its reason before it knows it
//! still holds the entry). The models are explored exhaustively (no preemption bound: all five take
//! a few seconds together in `--release`); the controls are bounded at 2 preemptions,
//! enough to find the violation.
//!
//! Where a model records what another thread had done when one acted (model 1's `stage`),
//! it uses std atomics outside loom's view, set right after the loom access they describe:
//! loom switches threads only at its own accesses, so such a flag is set in the same step
//! as that access.
//!
//! What loom cannot see (see `tests/loom.rs` for the details): it never lets a load read a
//! value from the future (no load buffering); and it is not complete around a load followed
//! by another thread's load and store of the same word (tokio-rs/loom#166): the threads that
//! look once yield first, and the outcome sets show the interleavings each model is about
//! are reached. A yield has a cost: loom never shows a thread a value older than one it saw
//! before it yielded, so a thread that yields before reading fields must not have written
//! or read their old values before (model 2's reader is a thread of its own for that; model
//! 3's scanner does not yield). Deadlines are numbers passed in (`now`), not clocks; whether an owner is dead
//! is the queue's business (the kernel's lock on its slot), so a death is modelled by
//! another member acting on the dead member's word.

#![cfg(loom)]

mod loom_support;

use loom_support::{Outcomes, STD, builder, violated};

use std::fmt::Debug;
use std::sync::atomic::{AtomicU32 as StdAtomicU32, AtomicUsize as StdAtomicUsize};

use loom::sync::Arc;
use loom::thread;

use shmq::layout::{IF_ACQUIRED, IF_DOOMED, IF_FREE, IF_MOVING, IF_RELEASED, IF_RESERVED, IF_RETAKING, InFlight};
use shmq::ring::inflight::{self, Fields, slot, state};
use shmq::sync::atomic::Ordering;

// ---------------------------------------------------------------------------------------
// Outcome sets (as in tests/loom.rs)
// ---------------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------------
// Entries
// ---------------------------------------------------------------------------------------

/// The slot of the member a message is first handed to.
const OWNER: usize = 1;
/// The first owner's deadline.
const DEADLINE: u64 = 10;
/// The time the expirers see: [`DEADLINE`] has passed (a deadline is inclusive).
const NOW: u64 = 10;

/// What the first owner (`slot`) writes: the message at 64, its first delivery, due at
/// [`DEADLINE`].
fn first(slot: usize) -> Fields {
    Fields { pos: 64, end: 128, deliveries: 1, deadline_ns: DEADLINE, first_unix_ns: 1_000, pid: 100 + slot as u32 }
}

/// What a member (`slot`) writes when it retakes the message of [`first`]: its second
/// delivery, a deadline after [`NOW`] that tells the members apart.
fn second(slot: usize) -> Fields {
    Fields { deliveries: 2, deadline_ns: 20 + slot as u64, pid: 100 + slot as u32, ..first(slot) }
}

/// An entry handed out to `slot` with `f` (before the model's threads start): the entry
/// and the owner's word.
fn handed_out(slot: usize, f: &Fields) -> (Arc<InFlight>, u64) {
    let e = Arc::new(*inflight::loom_entry());
    let r = inflight::reserve(&e, slot).expect("a new entry is free");
    inflight::fill(&e, f);
    let a = inflight::commit(&e, r).expect("held");
    (e, a)
}

/// The entry's owner word once every thread is joined.
fn word(e: &InFlight) -> u64 {
    // Relaxed: the threads have been joined.
    e.owner.load(Ordering::Relaxed)
}

// ---------------------------------------------------------------------------------------
// (1) An ack against an expiry
// ---------------------------------------------------------------------------------------

/// Negative control: an ack that checks the word and then stores `FREE`, instead of
/// swapping it: what another member did between the load and the store is overwritten.
fn ack_without_cas(e: &InFlight, w: u64) -> bool {
    if state(w) != IF_ACQUIRED || inflight::load(e) != w {
        return false;
    }
    // Release: as the honest ack's; the missing compare-and-swap is the fault.
    e.owner.store(inflight::next(w, 0, IF_FREE), Ordering::Release);
    true
}

/// How far the retaker of model 1 had gone when the first owner's ack ran: nothing,
/// retaken (`RETAKING`), committed (`ACQUIRED` in the owner's own slot: the owner's word
/// differs only in its tag), acked (`FREE`).
const STAGES: [&str; 4] = ["nothing", "retaken", "committed", "acked"];

/// What one execution of [`ack_against_expiry`] gave: the first owner's ack, the retaker's
/// stage when it ran ([`STAGES`]), the expiry, whether the retaker retook the entry and
/// acked it, and the final state.
type AckOutcome = (bool, usize, bool, bool, bool, u64);

/// The first owner ([`OWNER`]) acks its entry (due at [`DEADLINE`]) while a second member
/// expires it at [`NOW`] and a third retakes it for the owner's slot (the owner's own
/// process receiving again, or the slot's next holder: then only the tag tells the two
/// words apart), fills it, commits and acks it. `broken`: the owner acks with
/// [`ack_without_cas`]. Returns the outcome and whether the invariant held: the message is
/// acked at most once, never both acked and released (expired or retaken); it ends `FREE`
/// exactly when an ack succeeded, and `RELEASED` exactly when it expired and nobody took it.
fn ack_against_expiry(broken: bool) -> (AckOutcome, bool) {
    let (e, a) = handed_out(OWNER, &first(OWNER));
    let stage = std::sync::Arc::new(StdAtomicUsize::new(0));
    let owner = {
        let (e, stage) = (e.clone(), stage.clone());
        thread::spawn(move || {
            let acked = if broken { ack_without_cas(&e, a) } else { inflight::ack(&e, a) };
            (acked, stage.load(STD))
        })
    };
    let expirer = {
        let e = e.clone();
        thread::spawn(move || inflight::expire(&e, NOW))
    };
    // The retaker looks once: it yields first (see the module's docs).
    thread::yield_now();
    let (mut retaken, mut acked2) = (false, false);
    if let Some(t) = inflight::retake(&e, OWNER) {
        stage.store(1, STD);
        retaken = true;
        assert_eq!((state(t), slot(t)), (IF_RETAKING, OWNER));
        inflight::fill(&e, &second(OWNER));
        // A broken ack may have freed the entry under the retaker: no `expect` (the
        // invariant below catches it).
        if let Some(a2) = inflight::commit(&e, t) {
            stage.store(2, STD);
            // The owner's word and this one differ in their tags only.
            assert_eq!((state(a2), slot(a2)), (state(a), slot(a)));
            acked2 = inflight::ack(&e, a2);
            if acked2 {
                stage.store(3, STD);
            }
        }
    }
    let (acked, at) = owner.join().unwrap();
    let expired = expirer.join().unwrap();
    let end = state(word(&e));
    let acks = acked as u32 + acked2 as u32;
    let held = acks <= 1
        && !(acked && (expired || retaken))
        && (end == IF_FREE) == (acks == 1)
        && (end == IF_RELEASED) == (expired && !retaken)
        && (!retaken || expired);
    ((acked, at, expired, retaken, acked2, end), held)
}

/// The owner's ack and an expiry: exactly one wins. If the expiry did, the ack fails, the
/// entry is `RELEASED` until a member retakes it, and the owner's stale word fails at every
/// stage of the retaker (retaking, committed in the owner's own slot, acked): the message
/// is acked once, by its last holder. Explored exhaustively.
#[test]
fn an_ack_and_an_expiry_never_both_win() {
    let outcomes: Outcomes<AckOutcome> = Outcomes::new();
    let record = outcomes.recorder();
    builder(None).check(move || {
        let (outcome, held) = ack_against_expiry(false);
        assert!(held, "the message was lost or acked and released: {outcome:?}");
        let (_, _, _, retaken, acked2, _) = outcome;
        assert_eq!(retaken, acked2, "the retaker's commit and ack never fail");
        record(outcome);
    });
    // (owner acked, retaker's stage then, expired, retaken, retaker acked, final state)
    let mut want = vec![
        // The ack won: the expiry finds the entry free (or its swap fails), so does the
        // retaker.
        (true, 0, false, false, false, IF_FREE),
        // The expiry won; the retaker looked before it: the message waits to be delivered
        // again.
        (false, 0, true, false, false, IF_RELEASED),
    ];
    // The expiry won and the retaker took it: the owner's ack fails at whatever stage.
    want.extend((0..STAGES.len()).map(|s| (false, s, true, true, true, IF_FREE)));
    outcomes.assert(&want);
}

/// Negative control for the model above: an ack that loads the word and stores `FREE`
/// (no compare-and-swap) is caught acking a message the expiry released (it loaded the word
/// before the expiry's swap and stored after it).
#[test]
fn an_ack_without_compare_and_swap_is_caught() {
    assert!(violated(Some(2), move || ack_against_expiry(true).1), "the model missed the ack that overwrote an expiry");
}

// ---------------------------------------------------------------------------------------
// (2) Two members retake a released entry
// ---------------------------------------------------------------------------------------

/// Negative control: a commit whose store is Relaxed (the real one is a Release store). The
/// fields are written after the retake's Release, so a reader that sees the commit is not
/// shown them.
fn commit_relaxed(e: &InFlight, w: u64) -> Option<u64> {
    let to = inflight::next(w, slot(w), IF_ACQUIRED);
    // Relaxed: the fault.
    e.owner.store(to, Ordering::Relaxed);
    Some(to)
}

/// What one execution of [`two_retakers_and_a_reader`] gave: the winner's slot, and the
/// state and slot the reader saw.
type RetakeOutcome = (usize, u64, usize);

/// Slots of model 2's retakers.
const RETAKERS: [usize; 2] = [2, 3];

/// The entry of [`OWNER`], nacked (`RELEASED`), is retaken by two members at once; the one
/// that gets it writes [`second`] and commits (with [`commit_relaxed`] if `broken`). A
/// third member (the reader) loads the word once and, if it is `ACQUIRED`, reads the
/// fields. Returns the outcome and whether the invariant held: the reader that saw the
/// winner's `ACQUIRED` read exactly the fields the winner wrote (never the first owner's).
fn two_retakers_and_a_reader(broken: bool) -> (RetakeOutcome, bool) {
    let (e, a) = handed_out(OWNER, &first(OWNER));
    inflight::release(&e, a).expect("the owner's nack");
    let retake = move |e: &InFlight, s: usize| {
        let t = inflight::retake(e, s)?;
        assert_eq!((state(t), slot(t)), (IF_RETAKING, s));
        inflight::fill(e, &second(s));
        let a2 = if broken { commit_relaxed(e, t) } else { inflight::commit(e, t) };
        assert!(a2.is_some(), "nobody changes a held entry");
        Some(s)
    };
    let other = {
        let e = e.clone();
        thread::spawn(move || retake(&e, RETAKERS[1]))
    };
    // The reader is a thread of its own: loom never shows a thread a value older than one
    // it saw before it yielded, and this thread wrote the first owner's fields.
    let reader = {
        let e = e.clone();
        thread::spawn(move || {
            // The reader looks once: it yields first (see the module's docs).
            thread::yield_now();
            let w = inflight::load(&e);
            (w, (state(w) == IF_ACQUIRED).then(|| inflight::fields(&e)))
        })
    };
    let mine = retake(&e, RETAKERS[0]);
    let (w, read) = reader.join().unwrap();
    let won: Vec<usize> = [mine, other.join().unwrap()].into_iter().flatten().collect();
    assert_eq!(won.len(), 1, "exactly one retaker gets the entry: {won:?}");
    let winner = won[0];
    let end = word(&e);
    assert_eq!((state(end), slot(end)), (IF_ACQUIRED, winner), "the winner holds it");
    let held = read.is_none_or(|f| slot(w) == winner && f == second(winner));
    ((winner, state(w), slot(w)), held)
}

/// Two members retake the same released entry: exactly one gets it, and a reader that
/// Acquire-loads the winner's `ACQUIRED` reads the winner's deadline and delivery count,
/// never the first owner's. Explored exhaustively.
#[test]
fn one_of_two_retakers_gets_a_released_entry_and_readers_see_its_fields() {
    let outcomes: Outcomes<RetakeOutcome> = Outcomes::new();
    let record = outcomes.recorder();
    builder(None).check(move || {
        let (outcome, held) = two_retakers_and_a_reader(false);
        assert!(held, "the reader saw fields the winner did not write: {outcome:?}");
        record(outcome);
    });
    // (winner, state the reader saw, its slot): either retaker wins; the reader looks
    // before the retake (the first owner's slot stays in a released word), while the winner
    // writes, or after its commit.
    let mut want = Vec::new();
    for w in RETAKERS {
        want.extend([(w, IF_RELEASED, OWNER), (w, IF_RETAKING, w), (w, IF_ACQUIRED, w)]);
    }
    outcomes.assert(&want);
}

/// Negative control for the model above: with a Relaxed commit, a reader that sees the
/// winner's `ACQUIRED` is caught reading the first owner's fields.
#[test]
fn a_commit_without_release_is_caught() {
    assert!(violated(Some(2), move || two_retakers_and_a_reader(true).1), "the model missed the unpublished fields");
}

// ---------------------------------------------------------------------------------------
// (3) Reserve, fill and commit against a scan
// ---------------------------------------------------------------------------------------

/// What one execution of [`a_reserve_and_a_scan_never_both_hold_an_entry`] gave: whether
/// the member that hands a message out got the entry, whether the scanner did, the state
/// the scanner then saw (if it did not), and the final state.
type ReserveOutcome = (bool, bool, Option<u64>, u64);

/// The fields of the message model 3's member hands out.
fn third() -> Fields {
    Fields { pos: 256, end: 320, deliveries: 1, deadline_ns: 50, first_unix_ns: 2_000, pid: 101 }
}

/// A free entry that held an acked message (its fields still there) is reserved, filled
/// and committed by one member ([`OWNER`]) while another (slot 2) scans the table: it
/// reserves the entry, and frees it (it had nothing to hand out); if it could not, it loads
/// the word and, seeing it `ACQUIRED`, reads the fields. The two never hold the entry at
/// once (counted outside loom right after each reserve and before the free), and the
/// scanner reads the whole of what the member published, none of the old message.
/// Explored exhaustively.
#[test]
fn a_reserve_and_a_scan_never_both_hold_an_entry() {
    let outcomes: Outcomes<ReserveOutcome> = Outcomes::new();
    let record = outcomes.recorder();
    builder(None).check(move || {
        let (e, a) = handed_out(3, &first(3));
        assert!(inflight::ack(&e, a), "acked before the threads start");
        let holders = std::sync::Arc::new(StdAtomicU32::new(0));
        let member = {
            let (e, holders) = (e.clone(), holders.clone());
            thread::spawn(move || {
                let Some(r) = inflight::reserve(&e, OWNER) else { return false };
                assert_eq!(holders.fetch_add(1, STD), 0, "the scanner holds the entry too");
                inflight::fill(&e, &third());
                let w = inflight::commit(&e, r).expect("nobody changes a held entry");
                assert_eq!((state(w), slot(w)), (IF_ACQUIRED, OWNER));
                true
            })
        };
        let (got, saw) = match inflight::reserve(&e, 2) {
            Some(r) => {
                assert_eq!(holders.fetch_add(1, STD), 0, "the member holds the entry too");
                holders.fetch_sub(1, STD);
                assert!(inflight::free(&e, r), "nobody changes a held entry");
                (true, None)
            }
            None => {
                let w = inflight::load(&e);
                if state(w) == IF_ACQUIRED {
                    assert_eq!(slot(w), OWNER);
                    assert_eq!(inflight::fields(&e), third(), "the commit published the fields");
                }
                (false, Some(state(w)))
            }
        };
        let took = member.join().unwrap();
        record((took, got, saw, state(word(&e))));
    });
    // (member got it, scanner got it, what the scanner then saw, final state)
    outcomes.assert(&[
        // The member reserved first: the scanner sees it reserved or handed out.
        (true, false, Some(IF_RESERVED), IF_ACQUIRED),
        (true, false, Some(IF_ACQUIRED), IF_ACQUIRED),
        // The scanner reserved first: the member finds it taken, or free again.
        (false, true, None, IF_FREE),
        (true, true, None, IF_ACQUIRED),
    ]);
}

// ---------------------------------------------------------------------------------------
// (4) A doomed move against an expiry
// ---------------------------------------------------------------------------------------

/// What a member of model 4 did with the entry it retook.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Took {
    /// Nothing: not released or doomed when it looked, or another member was first.
    Nothing,
    /// A doomed entry (`MOVING`): it moved the message and freed the entry.
    Moved,
    /// A released entry (`RETAKING`): it delivered the message again and acked it.
    Redelivered,
}

/// Retakes the entry for `slot` and finishes what it finds: moves a doomed one, delivers a
/// released one again (and acks it).
fn retake_and_finish(e: &InFlight, slot: usize) -> Took {
    let Some(t) = inflight::retake(e, slot) else { return Took::Nothing };
    match state(t) {
        IF_MOVING => {
            assert!(inflight::free(e, t), "nobody changes a MOVING entry but its mover");
            Took::Moved
        }
        IF_RETAKING => {
            inflight::fill(e, &second(slot));
            let a = inflight::commit(e, t).expect("nobody changes a held entry");
            assert!(inflight::ack(e, a), "not expired (deadline after NOW), not released");
            Took::Redelivered
        }
        s => panic!("retake gave state {s}"),
    }
}

/// What one execution of [`a_doomed_entry_is_never_expired_and_moved_once`] gave: whether
/// the move began, whether the entry expired, what the expirer and the third member took,
/// and the final state.
type MoveOutcome = (bool, bool, Took, Took, u64);

/// The entry of [`OWNER`] (deadline passed) is rejected: its owner begins to move it to the
/// dead-letter queue and dies (another member releases its `MOVING` word: `DOOMED`), while
/// a second member expires it at [`NOW`] and then retakes it, and a third retakes it.
/// Exactly one of the move and the expiry wins (expire never touches `MOVING` or
/// `DOOMED`); a doomed entry is moved by exactly one member or stays `DOOMED` (both looked
/// too early), never delivered again; an expired one is delivered again by exactly one,
/// never moved. Explored exhaustively.
#[test]
fn a_doomed_entry_is_never_expired_and_moved_once() {
    let outcomes: Outcomes<MoveOutcome> = Outcomes::new();
    let record = outcomes.recorder();
    builder(None).check(move || {
        let (e, a) = handed_out(OWNER, &first(OWNER));
        let mover = {
            let e = e.clone();
            thread::spawn(move || {
                let Some(m) = inflight::begin_move(&e, a) else { return false };
                assert_eq!((state(m), slot(m)), (IF_MOVING, OWNER));
                // The mover dies here; the member that finds it dead releases its word.
                let d = inflight::release(&e, m).expect("nobody changes a MOVING entry but its mover");
                assert_eq!(state(d), IF_DOOMED);
                true
            })
        };
        let expirer = {
            let e = e.clone();
            thread::spawn(move || {
                let expired = inflight::expire(&e, NOW);
                (expired, retake_and_finish(&e, 2))
            })
        };
        // The third member looks once: it yields first (see the module's docs).
        thread::yield_now();
        let third = retake_and_finish(&e, 3);
        let began = mover.join().unwrap();
        let (expired, second) = expirer.join().unwrap();
        let end = state(word(&e));
        let took = [second, third];
        let count = |t| took.iter().filter(|&&x| x == t).count();
        assert!(began != expired, "exactly one of the move and the expiry wins");
        if began {
            assert_eq!(count(Took::Redelivered), 0, "a rejected message is never delivered again");
            assert!(count(Took::Moved) <= 1, "moved twice");
            assert_eq!(end == IF_FREE, count(Took::Moved) == 1, "freed only by its move");
            assert!(end == IF_FREE || end == IF_DOOMED, "left {end}");
        } else {
            assert_eq!(count(Took::Moved), 0, "an expired message is never moved");
            assert_eq!(count(Took::Redelivered), 1, "the expirer retakes it unless the third was first");
            assert_eq!(end, IF_FREE);
        }
        record((began, expired, second, third, end));
    });
    // (move began, expired, the expirer's retake, the third member's, final state)
    outcomes.assert(&[
        (true, false, Took::Moved, Took::Nothing, IF_FREE),
        (true, false, Took::Nothing, Took::Moved, IF_FREE),
        (true, false, Took::Nothing, Took::Nothing, IF_DOOMED),
        (false, true, Took::Redelivered, Took::Nothing, IF_FREE),
        (false, true, Took::Nothing, Took::Redelivered, IF_FREE),
    ]);
}

// ---------------------------------------------------------------------------------------
// (5) A late nack against an expiry
// ---------------------------------------------------------------------------------------

/// What the retaker of model 5 read as the entry's reason: nothing retaken, no reason, or
/// the owner's (`N`).
const NO_RETAKE: u8 = 255;

/// What one execution of [`late_nack`] gave: whether the owner's nack went through, whether
/// the entry expired, the reason the retaker read ([`NO_RETAKE`], 0 for none, `b'N'`), and
/// the final state.
type NackOutcome = (bool, bool, u8, u64);

/// The owner ([`OWNER`], deadline passed) nacks its entry with reason `N` while a second
/// member expires it at [`NOW`] and retakes it. The honest nack takes the entry out of
/// expiry's reach first (`begin_hand_back`), then writes the reason, then releases it;
/// `broken`: it writes the reason first and then releases (what a nack did before). Returns
/// the outcome and whether the invariant held: exactly one of the nack and the expiry wins,
/// and a nack that lost changed nothing (the retaker never reads its reason).
fn late_nack(broken: bool) -> (NackOutcome, bool) {
    let (e, a) = handed_out(OWNER, &first(OWNER));
    let owner = {
        let e = e.clone();
        thread::spawn(move || {
            if broken {
                inflight::set_reason(&e, b"N");
                return inflight::release(&e, a).is_some();
            }
            let Some(h) = inflight::begin_hand_back(&e, a) else { return false };
            assert_eq!((state(h), slot(h)), (IF_RETAKING, OWNER));
            inflight::set_reason(&e, b"N");
            inflight::release(&e, h).expect("nobody changes an entry being handed back but its owner");
            true
        })
    };
    let expired = inflight::expire(&e, NOW);
    let read = match inflight::retake(&e, 2) {
        Some(t) => {
            let r = inflight::reason(&e).first().copied().unwrap_or(0);
            inflight::fill(&e, &second(2));
            let a2 = inflight::commit(&e, t).expect("nobody changes a held entry");
            assert!(inflight::ack(&e, a2), "not expired (deadline after NOW), not released");
            r
        }
        None => NO_RETAKE,
    };
    let nacked = owner.join().unwrap();
    let held = nacked != expired && (nacked || read != b'N');
    ((nacked, expired, read, state(word(&e))), held)
}

/// Model 5, explored exhaustively: a nack that comes after the expiry says so (the caller
/// gets `AckExpired`) and leaves the entry to whoever took it, reason and all.
#[test]
fn a_late_nack_changes_nothing_in_an_entry_another_member_took() {
    let outcomes: Outcomes<NackOutcome> = Outcomes::new();
    let record = outcomes.recorder();
    builder(None).check(move || {
        let (outcome, held) = late_nack(false);
        assert!(held, "a late nack changed the entry, or both won: {outcome:?}");
        record(outcome);
    });
    // (nacked, expired, reason the retaker read, final state)
    outcomes.assert(&[
        // The nack won: the retaker looked while it was being handed back, or after.
        (true, false, NO_RETAKE, IF_RELEASED),
        (true, false, b'N', IF_FREE),
        // The expiry won: the nack changed nothing.
        (false, true, 0, IF_FREE),
    ]);
}

/// Negative control for model 5: a nack that writes its reason before it knows it still
/// holds the entry is caught writing into an entry the expiry released.
#[test]
fn a_nack_that_writes_before_it_holds_is_caught() {
    assert!(violated(Some(2), move || late_nack(true).1), "the model missed the late nack's reason");
}

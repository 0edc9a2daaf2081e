//! loom models of the subscription algorithms of `ring::cursors`: the producers' gate over
//! several cursors, a cursor joining (a new subscription, or one rejoining after it was
//! lapped) against a producer's gate, the lag-limit detach, members claiming and handing
//! back spans, and a durable queue's spilled reader rejoining and pinning its cursor.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test --test loom_cursors --release`. Under
//! `--cfg loom` the library's atomics are loom's, so the very code of `src/ring/cursors.rs`
//! is explored; [`Subs`] supplies its words through the [`Cursors`] trait, as the queue's
//! `Segment` does in shared memory.
//!
//! As in `tests/loom.rs`, each model lists the outcomes it may have and checks after the
//! exploration that exactly those were seen, so that an interleaving the model is about
//! that stopped being explored fails as loudly as a bug. The negative controls run a
//! deliberately broken variant and check that the invariant's assertion would have caught
//! it in some interleaving (the violation is recorded outside loom, not panicked on, so the
//! exploration runs to the end and the control cannot pass by crashing for another reason).
//!
//! The models: (1) a cursor joining (rejoining, or created) while a producer computes its
//! gate, with another cursor ahead of the published tail, and a join finished by two
//! processes at once; (2) a producer detaching a lag-limited entry while a member claims
//! from it; (3) two members claiming concurrently (each finishing the other's locked
//! cursor where it finds one; a Relaxed store of the claim word in `take` failed it, with a
//! cursor locked by a claim a helper could not find); (3b) a member dying around its
//! claim's compare-and-swap while another claims, and the member taking its slot over
//! deciding whether to deliver the claim again, with a negative control (the rule before
//! claims locked the cursor); (4) a member handing a span back while a producer gates on it
//! and writes over it; (4b) a producer gating while two members race for a span (the gate
//! ignores a lost claim, never a winner's); (5) findings: models that failed against the
//! library at 4d79c22 or b74794e (their docs give the interleavings), all passing against
//! 8675238 (producers finish a joining cursor they find and gate on where it starts; an
//! SPSC producer publishes its tail before computing its gate); (6) spill: a spilled reader
//! rejoining at its log position (`rejoin_at`) and pinning its cursor while a producer
//! writes, with a negative control, and a pin racing a producer's detach; (7) a look at the
//! head before the pin: a look that reads a later lap's word there also reads the detach,
//! with a negative control. A producer's scan may
//! finish a join, so a joiner's own `finish_join` may lose its compare-and-swap: the models
//! take the start from the cursor, whoever finished the join. The models explore
//! exhaustively within loom's model (their preemption bounds are past the point where
//! raising them finds more executions), except the three-thread one (two finishers of a
//! join), bounded at 4 preemptions (6 finds no further outcome).
//!
//! What loom cannot see (see `tests/loom.rs` for the details): it never lets a load read a
//! value from the future (no load buffering), so a Release/Acquire pair that orders a
//! reader's loads before a later overwrite could be weakened to Relaxed unnoticed (model
//! (4) checks that the producer's gate waits for the hand-back, not the orderings that
//! make the reads done); and it is not complete around a load followed by another thread's
//! load and store of the same word (tokio-rs/loom#166), which the outcome sets guard
//! against (model (3) shows the workaround).

#![cfg(loom)]

mod loom_support;

use loom_support::{Outcomes, STD, builder, violated};

use std::fmt::Debug;
use std::sync::atomic::{AtomicU32 as StdAtomicU32, AtomicUsize as StdAtomicUsize};

use loom::sync::Arc;
use loom::sync::atomic::AtomicU64;
use loom::thread;

use shmq::layout::record;
use shmq::layout::{
    CLAIM_CLAIMING, CLAIM_HELD, CLAIM_NONE, CURSOR_DETACHED, CURSOR_JOINING, CURSOR_PINNED, claim_word, cursor_locked,
};
use shmq::ring::cursors::{self, Claim, ClaimWords, Cursors, NO_LIMIT};
use shmq::ring::{Found, Gate, Geometry, Region, RingError, read_record, spsc};
use shmq::sync::atomic::Ordering;

// ---------------------------------------------------------------------------------------
// A data region made of loom atomics (as in tests/loom.rs)
// ---------------------------------------------------------------------------------------

/// A [`Region`] of loom `AtomicU64` words, copied from `tests/loom.rs` (see its docs there):
/// payload copies are word-by-word Relaxed accesses, so a read the protocol fails to order
/// before an overwrite shows up as a wrong value.
struct LoomRegion {
    words: Vec<AtomicU64>,
}

impl LoomRegion {
    fn new(len: usize) -> LoomRegion {
        LoomRegion { words: (0..len / 8).map(|_| AtomicU64::new(0)).collect() }
    }

    /// Calls `f(word, offset in word, byte count, offset in the slice)` for each word
    /// touched by `len` bytes at `index`.
    fn each_word(index: usize, len: usize, mut f: impl FnMut(usize, usize, usize, usize)) {
        let mut done = 0;
        while done < len {
            let at = index + done;
            let off = at % 8;
            let n = (8 - off).min(len - done);
            f(at / 8, off, n, done);
            done += n;
        }
    }

    fn merge(&self, w: usize, off: usize, src: &[u8]) {
        let bytes = if off == 0 && src.len() == 8 {
            let mut b = [0; 8];
            b.copy_from_slice(src);
            b
        } else {
            let mut b = self.words[w].load(Ordering::Relaxed).to_le_bytes();
            b[off..off + src.len()].copy_from_slice(src);
            b
        };
        self.words[w].store(u64::from_le_bytes(bytes), Ordering::Relaxed);
    }
}

impl Region for LoomRegion {
    fn word(&self, index: usize) -> &AtomicU64 {
        assert!(index % 8 == 0, "unaligned header index");
        &self.words[index / 8]
    }

    fn write(&self, index: usize, src: &[u8]) {
        LoomRegion::each_word(index, src.len(), |w, off, n, at| self.merge(w, off, &src[at..at + n]));
    }

    fn read(&self, index: usize, dst: &mut [u8]) {
        LoomRegion::each_word(index, dst.len(), |w, off, n, at| {
            let b = self.words[w].load(Ordering::Relaxed).to_le_bytes();
            dst[at..at + n].copy_from_slice(&b[off..off + n]);
        });
    }
}

/// The models' salt (as in `tests/loom.rs`): payload bytes made by [`msg`] never read as a
/// stamp at the small positions used here.
const SALT: u64 = 0x5a5a_5a5a_5a5a_5a58;

/// The payload of message `seq` of producer `who`: distinct in every byte, top bit set.
fn msg(who: u8, seq: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| 0x80 | (who << 4) | ((seq & 3) << 2) | (i as u8 & 3)).collect()
}

/// A ring's bytes: the region and its geometry (capacity below the library's minimum, which
/// exists for segments, not for the algorithms).
struct Ring {
    geo: Geometry,
    region: LoomRegion,
}

impl Ring {
    fn new(capacity: u64, max_message: u32) -> Ring {
        Ring { geo: Geometry { capacity, max_message, salt: SALT }, region: LoomRegion::new(capacity as usize) }
    }

    /// Writes and commits `msgs` from position `pos` with an SPSC producer before the
    /// model's threads start (nothing reads them yet). Returns the tail after them.
    fn prewrite(&self, pos: u64, msgs: &[Vec<u8>]) -> u64 {
        let (tail, head) = (AtomicU64::new(pos), AtomicU64::new(pos));
        let mut p = spsc::Producer::new(self.geo, pos, pos).unwrap();
        for m in msgs {
            let res = p.try_reserve(&tail, &head, &self.region, m.len() as u32).unwrap();
            self.region.write(res.payload(), m);
            p.commit(&self.region, res, m.len() as u32).unwrap();
        }
        p.tail()
    }

    /// The messages of span `[start, end)`, read as a member reads its span: every record
    /// header and payload word, from the region as it is now. `None` if a record is not
    /// there any more (its stamp was overwritten).
    fn read_span(&self, start: u64, end: u64) -> Option<Vec<Vec<u8>>> {
        let (mut at, mut got) = (start, Vec::new());
        while at < end {
            match read_record(&self.geo, &self.region, at).expect("honest ring") {
                Found::Message { len, size } => {
                    let mut v = vec![0; len as usize];
                    self.region.read(self.geo.index(at) + record::HEADER, &mut v);
                    got.push(v);
                    at += size;
                }
                Found::Skip { size } => at += size,
                Found::Nothing => return None,
            }
        }
        Some(got)
    }
}

// ---------------------------------------------------------------------------------------
// The readers' words
// ---------------------------------------------------------------------------------------

/// Subscription entries in the models: 0 stands for the default subscription (window = the
/// capacity, no members), 1 for a named one.
const ENTRIES: usize = 2;
/// Member table entries.
const MEMBERS: usize = 2;
/// Producers' `gate_min` words: 0 is the running producer's, 1 a dead producer's (an old,
/// low value, which a joiner must not be misled by).
const GATE_MINS: usize = 2;

/// A member's claim words.
struct MemberWords {
    pos: AtomicU64,
    end: AtomicU64,
    state: AtomicU64,
}

/// The words of a queue's readers, in loom memory: what `Segment` keeps in its header,
/// subscription table, member table and participant slots.
struct Subs {
    cap: u64,
    active: AtomicU64,
    joins: AtomicU64,
    tail: AtomicU64,
    cursors: [AtomicU64; ENTRIES],
    windows: [u64; ENTRIES],
    members: [AtomicU64; ENTRIES],
    claims: [MemberWords; MEMBERS],
    gate_mins: [AtomicU64; GATE_MINS],
    /// `lapped` statistics, outside loom (the segment's are Relaxed counters: no ordering).
    lapped: [StdAtomicU32; ENTRIES],
    /// Bookkeeping: how many scans producers made (one `active()` load per scan).
    scans: StdAtomicUsize,
    /// [`Cursors::spills`] per entry (model (6): a durable queue's default consumer).
    spills: [bool; ENTRIES],
    /// [`Cursors::floor`]: the journal's position (`u64::MAX`: a volatile queue).
    floor: AtomicU64,
    /// [`Cursors::log_limit`] (`u64::MAX`: no bound).
    log_limit: u64,
}

/// One entry's initial state: cursor word, window, member mask.
#[derive(Clone, Copy)]
struct Entry {
    word: u64,
    window: u64,
    members: u64,
}

impl Subs {
    /// Readers' words with the producers' published `tail`, the `active` mask, and each
    /// entry's initial state. Claims are `NONE`, `gate_min` words 0.
    fn new(cap: u64, tail: u64, active: u64, entries: [Entry; ENTRIES]) -> Subs {
        Subs {
            cap,
            active: AtomicU64::new(active),
            joins: AtomicU64::new(0),
            tail: AtomicU64::new(tail),
            cursors: entries.map(|e| AtomicU64::new(e.word)),
            windows: entries.map(|e| e.window),
            members: entries.map(|e| AtomicU64::new(e.members)),
            claims: std::array::from_fn(|_| MemberWords {
                pos: AtomicU64::new(0),
                end: AtomicU64::new(0),
                state: AtomicU64::new(CLAIM_NONE),
            }),
            gate_mins: std::array::from_fn(|_| AtomicU64::new(0)),
            lapped: Default::default(),
            scans: StdAtomicUsize::new(0),
            spills: [false; ENTRIES],
            floor: AtomicU64::new(u64::MAX),
            log_limit: u64::MAX,
        }
    }

    /// The gate of producer 0 (`gate_min` word 0), as `QueueGate` computes it.
    fn gate(&self, tail: u64, need: u64) -> u64 {
        cursors::gate(self, self.cap, ENTRIES, 0, &self.gate_mins[0], tail, need).expect("honest words")
    }

    fn lapped(&self, i: usize) -> u32 {
        self.lapped[i].load(STD)
    }

    fn scans(&self) -> usize {
        self.scans.load(STD)
    }
}

impl Cursors for Subs {
    fn active(&self) -> &AtomicU64 {
        self.scans.fetch_add(1, STD);
        &self.active
    }

    fn joins(&self) -> &AtomicU64 {
        &self.joins
    }

    fn tail(&self) -> &AtomicU64 {
        &self.tail
    }

    fn cursor(&self, i: usize) -> &AtomicU64 {
        &self.cursors[i]
    }

    fn window(&self, i: usize) -> u64 {
        self.windows[i]
    }

    fn members(&self, i: usize) -> u64 {
        // Acquire: as the segment's load of the entry's member mask.
        self.members[i].load(Ordering::Acquire)
    }

    fn claim(&self, j: usize) -> ClaimWords<'_> {
        let m = &self.claims[j];
        ClaimWords { slot: j, pos: &m.pos, end: &m.end, state: &m.state }
    }

    fn gate_mins(&self) -> impl Iterator<Item = &AtomicU64> {
        self.gate_mins.iter()
    }

    fn lapped(&self, i: usize) {
        self.lapped[i].fetch_add(1, STD);
    }

    fn floor(&self) -> u64 {
        // Acquire: as `journal::floor` (pairs with the journal's Release raise).
        self.floor.load(Ordering::Acquire)
    }

    fn spills(&self, i: usize) -> bool {
        self.spills[i]
    }

    fn log_limit(&self) -> u64 {
        self.log_limit
    }
}

/// Negative controls: the words of [`Subs`], broken in one way. `blind`: a joiner finds no
/// producer's `gate_min` (the join then relies on the published `tail` alone). `deaf`: a
/// producer reads (and bumps) `joins` in this word instead, which no joiner bumps: it never
/// scans again for a join that started during its scan (the producer's side of the Dekker
/// pair broken, as the joiner's is by `blind`).
struct Faulty<'a> {
    subs: &'a Subs,
    blind: bool,
    deaf: Option<&'a AtomicU64>,
}

impl Cursors for Faulty<'_> {
    fn active(&self) -> &AtomicU64 {
        self.subs.active()
    }

    fn joins(&self) -> &AtomicU64 {
        self.deaf.unwrap_or(&self.subs.joins)
    }

    fn tail(&self) -> &AtomicU64 {
        self.subs.tail()
    }

    fn cursor(&self, i: usize) -> &AtomicU64 {
        self.subs.cursor(i)
    }

    fn window(&self, i: usize) -> u64 {
        self.subs.window(i)
    }

    fn members(&self, i: usize) -> u64 {
        Cursors::members(self.subs, i)
    }

    fn claim(&self, j: usize) -> ClaimWords<'_> {
        self.subs.claim(j)
    }

    fn gate_mins(&self) -> impl Iterator<Item = &AtomicU64> {
        self.subs.gate_mins.iter().filter(|_| !self.blind)
    }

    fn lapped(&self, i: usize) {
        Cursors::lapped(self.subs, i)
    }

    fn floor(&self) -> u64 {
        Cursors::floor(self.subs)
    }

    fn spills(&self, i: usize) -> bool {
        self.subs.spills(i)
    }

    fn log_limit(&self) -> u64 {
        self.subs.log_limit()
    }
}

/// Which [`Faulty`] words a model's joiner or producer uses (none: the honest [`Subs`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    None,
    Blind,
    Deaf,
}

/// An SPSC producer's [`Gate`] over [`Subs`] (producer 0), as `QueueGate`.
struct SubsGate<'a>(&'a Subs);

impl Gate for SubsGate<'_> {
    fn head(&self, tail: u64, need: u64) -> Result<u64, RingError> {
        cursors::gate(self.0, self.0.cap, ENTRIES, 0, &self.0.gate_mins[0], tail, need)
    }
}

/// A ring and the readers' words.
struct World {
    ring: Ring,
    subs: Subs,
}

// ---------------------------------------------------------------------------------------
// Outcome sets (as in tests/loom.rs)
// ---------------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------------
// (1) A cursor joining against a producer's gate
// ---------------------------------------------------------------------------------------

/// Model 1's ring: 64 bytes.
const CAP1: u64 = 64;
/// The producers' published `tail`.
const PUBLISHED: u64 = 64;
/// The default subscription's cursor: its consumer read records the SPSC producer has
/// committed but not yet published (readers poll stamps, not `tail`).
const AHEAD: u64 = 80;
/// The SPSC producer's private tail, the one it gates with.
const PRIVATE: u64 = 96;
/// The joining entry's window when it has a lag limit: the rejoined cursor is never far
/// enough behind `PRIVATE + 8` to be detached again.
const WINDOW1: u64 = 48;

// Finding 4 (at b74794e; fixed on main by 8675238). Producers skipped `JOINING` cursors
// instead of counting them, so the Dekker pair did not cover the case where the producer
// sees the joiner's bump but the joiner does not see the producer's `gate_min`: the
// producer's rescan found the cursor still `JOINING`, skipped it again, and returned the
// same head, while the joiner started at the published tail, below it. Interleaving (model
// 1, rejoin; the same for a new entry and for two finishers), one step at a time: producer
// loads `joins` 0; joiner loads `tail` 64, CASes the cursor to `64|JOINING`, bumps `joins`
// to 1, fence, loads the producer's `gate_min` 0 (not stored yet) and `tail` 64;
// producer scans (entry 0 at 80, entry 1 `JOINING`: skipped; head 80), stores `gate_min`
// 80, fence, re-reads `joins` 1, rescans (entry 1 still `JOINING`: skipped, head 80),
// stores `gate_min` 80, fence, re-reads `joins` 1, returns 80; joiner CASes the cursor to
// 64 and starts below 80. Now the producer's rescan finishes the join itself (reading its
// own `gate_min` 80, after the fence of its own bump) and gates on where it starts; the
// joiner's compare-and-swap then fails, and `join` reports the cursor's start.

/// Where entry 1's cursor started, whoever finished its join: the joiner's own
/// `finish_join` may lose its compare-and-swap to a producer's scan, which finishes a join it
/// finds (then `finish_join` returns `None`, and `join` the cursor's position). Checks that the
/// cursor is joined (no flags) and that a start the joiner was given is the cursor's.
fn started(subs: &Subs, mine: Option<u64>) -> u64 {
    // Relaxed: every thread has been joined.
    let start = subs.cursors[1].load(Ordering::Relaxed);
    assert_eq!(start & cursors::FLAGS, 0, "the join is finished once everyone is done: {start:#x}");
    assert!(mine.is_none_or(|m| m == start), "the joiner was given {mine:?}, the cursor started at {start}");
    start
}

/// What one execution of [`join_against_a_gate`] gave: the producer's scans, its head, and
/// the joiner's start.
type JoinOutcome = (usize, u64, u64);

/// A producer computes its gate (`tail` = [`PRIVATE`], 8 bytes needed) while entry 1 joins:
/// rejoins from `DETACHED` (`join`, a lag-limited entry), or, if `new_entry`, is created
/// (cursor stored `JOINING` at the published tail, activated, `finish_join`, as
/// `Subscription::create` does). Entry 0 is tethered at [`AHEAD`], above the published
/// tail [`PUBLISHED`]: a joiner that started at the published tail without seeing the
/// producer's `gate_min` would start below the head the producer computed without it.
/// `fault`: the joiner ([`Fault::Blind`]) or the producer ([`Fault::Deaf`]) reads the words
/// through [`Faulty`]. Returns the
/// outcome and whether the invariant held: the joiner starts at or above the producer's
/// head (the producer either saw the joiner, or the joiner saw its `gate_min`).
fn join_against_a_gate(new_entry: bool, fault: Fault) -> (JoinOutcome, bool) {
    let tethered = Entry { word: AHEAD, window: NO_LIMIT, members: 0 };
    let joining = if new_entry {
        // FREE: not active, its word whatever a removed entry left.
        Entry { word: CURSOR_DETACHED, window: NO_LIMIT, members: 0 }
    } else {
        Entry { word: CURSOR_DETACHED, window: WINDOW1, members: 0 }
    };
    let active = if new_entry { 0b01 } else { 0b11 };
    let subs = Arc::new(Subs::new(CAP1, PUBLISHED, active, [tethered, joining]));
    let producer = {
        let subs = subs.clone();
        thread::spawn(move || {
            if fault != Fault::Deaf {
                return subs.gate(PRIVATE, 8);
            }
            let own = AtomicU64::new(0);
            let deaf = Faulty { subs: &subs, blind: false, deaf: Some(&own) };
            cursors::gate(&deaf, CAP1, ENTRIES, 0, &subs.gate_mins[0], PRIVATE, 8).expect("honest words")
        })
    };
    let start = {
        let blinded = Faulty { subs: &subs, blind: true, deaf: None };
        let c: &dyn Fn(u64) -> Option<u64> = if fault == Fault::Blind {
            &|w| {
                if new_entry { cursors::finish_join(&blinded, CAP1, 1, w) } else { cursors::join(&blinded, CAP1, 1, w) }
            }
        } else {
            &|w| if new_entry { cursors::finish_join(&*subs, CAP1, 1, w) } else { cursors::join(&*subs, CAP1, 1, w) }
        };
        if new_entry {
            // As `Subscription::create`. Acquire: pairs with the producers' Release of `tail`.
            let t0 = subs.tail.load(Ordering::Acquire);
            let joining = t0 | CURSOR_JOINING;
            // Relaxed: published by the Release of `active` below.
            subs.cursors[1].store(joining, Ordering::Relaxed);
            // Release (in AcqRel): producers that see the bit see the cursor.
            subs.active.fetch_or(0b10, Ordering::AcqRel);
            c(joining)
        } else {
            c(CURSOR_DETACHED)
        }
    };
    let head = producer.join().unwrap();
    let start = started(&subs, start);
    assert_eq!(subs.lapped(1), 0, "the joined cursor is never far enough behind to be detached again");
    ((subs.scans(), head, start), head <= start)
}

/// Finding 4 on any queue (no unpublished records): entry 0's consumer has read everything
/// (cursor at the published tail, 64) and entry 1 rejoins. Meanwhile the producers publish
/// 96, the consumer reads up to 96, and a producer computes its gate at 96 (these steps in
/// one thread: one interleaving of those processes). Interleaving that broke it at b74794e:
/// the joiner loads `tail` 64, CASes `64|JOINING`, bumps `joins`, fence, loads `gate_min` 0
/// and `tail` 64 (start 64), then stalls; the producer's gate loads `joins` (already
/// bumped), skips the `JOINING` cursor, returns 96; the joiner CASes the cursor to 64, a
/// start the producer may now overwrite. At 4d79c22 the producer waited for the `JOINING`
/// cursor at 64; on main it finishes the join and gates on where it starts.
#[test]
fn a_joiner_stalled_before_its_final_cas_never_starts_below_a_producers_head() {
    let outcomes: Outcomes<JoinOutcome> = Outcomes::new();
    let record = outcomes.recorder();
    builder(11).check(move || {
        let caught_up = Entry { word: PUBLISHED, window: NO_LIMIT, members: 0 };
        let detached = Entry { word: CURSOR_DETACHED, window: WINDOW1, members: 0 };
        let subs = Arc::new(Subs::new(CAP1, PUBLISHED, 0b11, [caught_up, detached]));
        let others = {
            let subs = subs.clone();
            thread::spawn(move || {
                // Release: the producers' publication, then the consumer's.
                subs.tail.store(96, Ordering::Release);
                subs.cursors[0].store(96, Ordering::Release);
                subs.gate(96, 8)
            })
        };
        let start = cursors::join(&*subs, CAP1, 1, CURSOR_DETACHED);
        let head = others.join().unwrap();
        let start = started(&subs, start);
        assert!(head <= start, "the joiner starts at {start}, below the producer's head {head}");
        record((subs.scans(), head, start));
    });
    // (scans, head, start): the joiner starts at the tail it reads (64 before the
    // publication, 96 after; or the producer's gate_min 96); the joined cursor holds the
    // head at `start - 16` (lag limit 48), unless the producer's only scan found entry 1
    // still detached (head 96, the consumer's; the joiner then reads 96). The old finding,
    // head 96 over a start of 64, is gone: a producer that finds the cursor JOINING at 64
    // finishes the join and gates on it. Scans as in model 1.
    outcomes.assert(&[(1, 48, 64), (1, 80, 96), (1, 96, 96), (2, 48, 64), (2, 80, 96), (3, 48, 64), (3, 80, 96)]);
}

/// A lapped subscription rejoins while a producer computes its gate: whichever runs first,
/// and however the Dekker pair on `joins` and `gate_min` interleaves, the joiner starts at
/// or above the head the producer returns.
#[test]
fn a_rejoining_cursor_never_starts_below_a_producers_head() {
    let outcomes: Outcomes<JoinOutcome> = Outcomes::new();
    let record = outcomes.recorder();
    builder(8).check(move || {
        let (outcome, held) = join_against_a_gate(false, Fault::None);
        assert!(held, "the joiner starts below the producer's head: {outcome:?}");
        record(outcome);
    });
    // (scans, head, start). A tethered cursor with a lag limit holds the head at
    // `pos + 48 - 64`; a producer that finds it JOINING finishes the join and gates on
    // where it starts, so the head follows from the start in every outcome. A second scan
    // when `joins` changed under the first (the joiner's bump, or the producer's own when
    // it finished the join itself), a third when both did.
    outcomes.assert(&[
        (1, 80, 80), // the producer scanned first (entry 1 detached); the joiner saw its gate_min
        (1, 48, 64), // the producer's one scan saw the entry joined at the published tail
        (2, 48, 64), // ... after a second scan (or it finished the join there itself)
        (2, 64, 80), // the joiner saw gate_min 80 (or the producer, finishing it, its own)
        (3, 48, 64),
        (3, 64, 80),
    ]);
}

/// The same for a new subscription (activated by its creator, then joined).
#[test]
fn a_new_cursor_never_starts_below_a_producers_head() {
    let outcomes: Outcomes<JoinOutcome> = Outcomes::new();
    let record = outcomes.recorder();
    builder(8).check(move || {
        let (outcome, held) = join_against_a_gate(true, Fault::None);
        assert!(held, "the joiner starts below the producer's head: {outcome:?}");
        record(outcome);
    });
    // (scans, head, start); without a lag limit a tethered cursor holds the head at `pos`.
    // A producer that finds the entry JOINING finishes the join and gates on its start, so
    // the head is the start in every outcome (at 4d79c22 it waited at the JOINING position,
    // 64, while the joiner could start at 80). Scans as in the model above.
    outcomes.assert(&[
        (1, 80, 80), // the producer scanned before the entry was active; the joiner saw its gate_min
        (1, 64, 64), // the producer's one scan saw the entry (joined at 64, or it finished it there)
        (2, 64, 64), // the same after a second scan
        (2, 80, 80), // ... joined at 80 (the joiner saw gate_min 80, or the producer its own)
        (3, 64, 64),
        (3, 80, 80),
    ]);
}

/// Negative control for the two models above: a joiner that cannot see the producers'
/// `gate_min` words (it starts at the published tail) is caught starting below the head of
/// a producer that scanned before it joined.
#[test]
fn a_join_blind_to_the_producers_gate_min_is_caught() {
    for new_entry in [false, true] {
        assert!(
            violated(8, move || join_against_a_gate(new_entry, Fault::Blind).1),
            "the model missed the blind join (new entry: {new_entry})"
        );
    }
}

/// Negative control for the same models, the other side of the Dekker pair: a producer that
/// never sees a joiner's bump of `joins` (so never scans again) is caught relying on a head
/// above the start of a joiner that read its `gate_min` before the producer stored it.
#[test]
fn a_producer_deaf_to_the_joiners_bumps_is_caught() {
    for new_entry in [false, true] {
        assert!(
            violated(8, move || join_against_a_gate(new_entry, Fault::Deaf).1),
            "the model missed the deaf producer (new entry: {new_entry})"
        );
    }
}

/// A new entry's join finished by two processes at once, as `Subscription::create` and a
/// member's `claim` (which finishes a join it finds and retries) do, while a producer
/// computes its gate (model 1's positions). The creator stores the cursor `JOINING`,
/// activates the entry and finishes the join; the member, if it finds the entry active,
/// loads the cursor and finishes the join if it finds it `JOINING`. (A member that loads
/// the cursor without having seen the entry's bit in `active` can start it below the
/// producer's head: its bump of `joins` does not carry the creator's activation, so the
/// producer's rescan may still miss the entry. The queue's members find the entry through
/// `active` first; the model does the same.) The producer is a third finisher: its scan
/// finishes a join it finds. At most one compare-and-swap of the creator and the member
/// wins (none when the producer's did), the cursor holds the start, and that start is at
/// or above the producer's head.
#[test]
fn two_finishers_of_a_join_agree_on_one_start_at_or_above_a_producers_head() {
    let outcomes: Outcomes<(JoinOutcome, u8)> = Outcomes::new();
    let record = outcomes.recorder();
    builder(4).check(move || {
        let tethered = Entry { word: AHEAD, window: NO_LIMIT, members: 0 };
        let free = Entry { word: CURSOR_DETACHED, window: NO_LIMIT, members: 0 };
        let subs = Arc::new(Subs::new(CAP1, PUBLISHED, 0b01, [tethered, free]));
        let producer = {
            let subs = subs.clone();
            thread::spawn(move || subs.gate(PRIVATE, 8))
        };
        let member = {
            let subs = subs.clone();
            thread::spawn(move || {
                // A member finds the entry by its bit in `active` (Acquire: as
                // `subscription::find`), then claims: it loads the cursor (Acquire, as
                // `claim`) and finishes a join it finds.
                if subs.active.load(Ordering::Acquire) & 0b10 == 0 {
                    return None;
                }
                let w = subs.cursors[1].load(Ordering::Acquire);
                (w & CURSOR_JOINING != 0).then(|| cursors::finish_join(&*subs, CAP1, 1, w))
            })
        };
        // As `Subscription::create`. Acquire: pairs with the producers' Release of `tail`.
        let joining = subs.tail.load(Ordering::Acquire) | CURSOR_JOINING;
        // Relaxed: published by the Release of `active` below.
        subs.cursors[1].store(joining, Ordering::Relaxed);
        // Release (in AcqRel): producers that see the bit see the cursor.
        subs.active.fetch_or(0b10, Ordering::AcqRel);
        let creator = cursors::finish_join(&*subs, CAP1, 1, joining);
        let member = member.join().unwrap();
        let head = producer.join().unwrap();
        // Who finished the join: 0 the creator, 1 the member, 2 the producer (its scan finishes
        // a join it finds; neither the creator nor the member then wins its compare-and-swap).
        let winner = match (creator, member) {
            (Some(_), None | Some(None)) => 0,
            (None, Some(Some(_))) => 1,
            (None, None | Some(None)) => 2,
            other => panic!("at most one finisher wins: {other:?}"),
        };
        let start = started(&subs, creator.or(member.flatten()));
        assert!(head <= start, "the joiner starts at {start}, below the producer's head {head}");
        record(((subs.scans(), head, start), winner));
    });
    // ((scans, head, start), winner): up to four scans (each finisher bumps `joins`, the
    // producer too when it finishes the join itself); the head is the start in every
    // outcome: 80 where the producer's last scan missed the entry (the start is then its
    // gate_min), else where the entry started (a JOINING entry is finished and gated on).
    // The creator or the member may win with either start, from one scan on; the producer
    // (2) from two scans on with 64 (it found the entry JOINING in its first scan, before
    // its gate_min 80 was stored, and rescanned for its own bump), from three with 80 (its
    // first scan missed the entry: a bump sent it round again, then its own).
    let starts: [JoinOutcome; 8] =
        [(1, 64, 64), (1, 80, 80), (2, 64, 64), (2, 80, 80), (3, 64, 64), (3, 80, 80), (4, 64, 64), (4, 80, 80)];
    let mut acceptable: Vec<_> = starts.iter().flat_map(|&o| [(o, 0), (o, 1)]).collect();
    acceptable.extend([(2, 64, 64), (3, 64, 64), (3, 80, 80), (4, 64, 64), (4, 80, 80)].map(|o| (o, 2)));
    outcomes.assert(&acceptable);
}

// ---------------------------------------------------------------------------------------
// (2) A producer detaching a lag-limited entry while a member claims from it
// ---------------------------------------------------------------------------------------

/// What one execution of [`detach_against_a_claim`] gave: the member's claim, the
/// producer's head and scans, and the entry's cursor word at the end.
type DetachOutcome = (Got, u64, usize, u64);

/// A member's [`Claim`], ordered (for outcome sets).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Got {
    /// `Claim::Span(start, end)`.
    Span(u64, u64),
    /// `Claim::Lapped { pos, start }`.
    Lapped(u64, u64),
}

/// A 64-byte ring holds two committed 16-byte messages at [64, 96) and [96, 128) (`tail`
/// 128). Entry 1 has a lag limit of 32 bytes and its cursor at 64, and one member. The
/// producer gates for 32 bytes past 128: the entry is 96 bytes behind the end of that write,
/// so the producer detaches it. Meanwhile the member claims one message. Invariants: a span
/// the member got is never below the producer's head; a member that finds the entry
/// detached learns it was detached at 64 and rejoins at or above both that and the
/// producer's head; whoever wins, the entry is detached exactly once.
#[test]
fn a_detach_never_takes_a_claimed_span_and_a_lapped_member_rejoins_above_the_head() {
    let outcomes: Outcomes<DetachOutcome> = Outcomes::new();
    let record = outcomes.recorder();
    builder(12).check(move || {
        let ring = Ring::new(64, 16);
        assert_eq!(ring.prewrite(64, &[msg(1, 0, 16), msg(1, 1, 16)]), 128);
        let limited = Entry { word: 64, window: 32, members: 0b01 };
        let unused = Entry { word: CURSOR_DETACHED, window: NO_LIMIT, members: 0 };
        let w = Arc::new(World { ring, subs: Subs::new(64, 128, 0b10, [unused, limited]) });
        let producer = {
            let w = w.clone();
            thread::spawn(move || w.subs.gate(128, 32))
        };
        let me = w.subs.claim(0);
        let got = cursors::claim(&w.subs, &w.ring.geo, &w.ring.region, 1, me, 1, u64::MAX).expect("honest ring");
        let head = producer.join().unwrap();
        let word = w.subs.cursors[1].load(Ordering::Relaxed);
        let state = cursors::claim_state(me.state.load(Ordering::Relaxed));
        match got {
            Claim::Span(start, end) => {
                assert_eq!((start, end), (64, 96));
                assert!(head <= start, "the producer may overwrite the claimed span: head {head}");
                assert_eq!(state, CLAIM_HELD);
                assert_eq!(w.ring.read_span(start, end), Some(vec![msg(1, 0, 16)]));
            }
            Claim::Lapped { pos, start } => {
                assert_eq!(pos, 64, "detached where it was");
                assert!(start >= pos && head <= start, "rejoined at {start}, below the head {head}");
                assert_eq!(word, start, "rejoined, tethered");
                assert_eq!(state, CLAIM_NONE, "the lost claim is cleared");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(w.subs.lapped(1), 1, "detached exactly once");
        let got = match got {
            Claim::Span(start, end) => Got::Span(start, end),
            Claim::Lapped { pos, start } => Got::Lapped(pos, start),
            _ => unreachable!(),
        };
        record((got, head, w.subs.scans(), word));
    });
    // (claim, head, scans, cursor word at the end).
    outcomes.assert(&[
        // The member's CAS came first: the producer detached the entry at 96, and the
        // claim record (read after the cursor) held the head at the span's start.
        (Got::Span(64, 96), 64, 1, 96 | CURSOR_DETACHED),
        // The producer detached at 64 first; the member's CAS failed, it found the entry
        // detached and rejoined at the tail. The producer's head: the member's claim record
        // still CLAIMING (conservative); or not, with one scan; or a second one (the bump
        // seen) that found the cursor joined at 128 (128 + 32 - 64); or found it JOINING,
        // finished the join itself (the start is 128 either way) and gated on it, scanning a
        // third time for its own bump. (At 4d79c22 and b74794e a rescan that found it
        // JOINING gave 128: skipped, or waited for at the JOINING position 128.)
        (Got::Lapped(64, 128), 64, 1, 128),
        (Got::Lapped(64, 128), 128, 1, 128),
        (Got::Lapped(64, 128), 96, 2, 128),
        (Got::Lapped(64, 128), 96, 3, 128),
    ]);
}

// ---------------------------------------------------------------------------------------
// (3) Two members claiming concurrently
// ---------------------------------------------------------------------------------------

/// What one member did in [`two_members_claim_disjoint_spans_covering_every_record`]: the
/// spans it got, and whether its last claim lost a compare-and-swap before it found nothing.
type MemberOutcome = (Vec<(u64, u64)>, bool);

/// A member claims spans of at most 2 messages until there is nothing (after a yield if
/// `yield_first`), reading and handing back each one. Returns its spans, their messages,
/// and whether its final `Nothing` came after a lost compare-and-swap (its claim words then
/// hold that attempt).
fn member_loop(w: &World, j: usize, yield_first: bool) -> (Vec<(u64, u64)>, Vec<Vec<u8>>, bool) {
    let me = w.subs.claim(j);
    let (mut spans, mut msgs) = (Vec::new(), Vec::new());
    if yield_first {
        // Lets the other member go first without a preemption: otherwise loom never
        // schedules its load and CAS of the cursor before our first load of it (see the
        // module docs; the outcome set showed the executions missing).
        thread::yield_now();
    }
    loop {
        match cursors::claim(&w.subs, &w.ring.geo, &w.ring.region, 1, me, 2, u64::MAX).expect("honest ring") {
            Claim::Span(start, end) => {
                // Relaxed: our own stores.
                assert_eq!(cursors::claim_state(me.state.load(Ordering::Relaxed)), CLAIM_HELD);
                assert_eq!((me.pos.load(Ordering::Relaxed), me.end.load(Ordering::Relaxed)), (start, end));
                msgs.extend(w.ring.read_span(start, end).expect("nobody overwrites the ring here"));
                spans.push((start, end));
                cursors::release(me);
            }
            Claim::Nothing => break,
            other => panic!("{other:?}"),
        }
    }
    // Relaxed: our own stores.
    assert_eq!(
        cursors::claim_state(me.state.load(Ordering::Relaxed)),
        CLAIM_NONE,
        "a member that found nothing holds no claim"
    );
    let last_end = spans.last().map_or(0, |s| s.1);
    let lost = me.end.load(Ordering::Relaxed) != last_end;
    (spans, msgs, lost)
}

/// Three committed 8-byte messages at [0, 72) of a 128-byte ring, one entry, two members
/// claiming (batches of at most 2) until there is nothing. Whatever the interleaving: the
/// spans are disjoint and contiguous from 0 to 72, every message is in exactly one span
/// (read intact, in order), and a member whose claim lost the race holds no claim.
///
/// Explored twice, the main thread's member yielding first or not: loom never schedules one
/// member's load and CAS of the cursor before the other's first load of it (see the module
/// docs), so each exploration alone misses the executions where the member that looks
/// first gets nothing without having lost a race; the outcome set is over both.
#[test]
fn two_members_claim_disjoint_spans_covering_every_record() {
    let outcomes: Outcomes<(MemberOutcome, MemberOutcome)> = Outcomes::new();
    for main_yields in [false, true] {
        let record = outcomes.recorder();
        builder(8).check(move || {
            let sent: Vec<_> = (0..3).map(|seq| msg(1, seq, 8)).collect();
            let ring = Ring::new(128, 16);
            assert_eq!(ring.prewrite(0, &sent), 72);
            let entry = Entry { word: 0, window: NO_LIMIT, members: 0b11 };
            let unused = Entry { word: CURSOR_DETACHED, window: NO_LIMIT, members: 0 };
            let w = Arc::new(World { ring, subs: Subs::new(128, 72, 0b10, [unused, entry]) });
            let other = {
                let w = w.clone();
                thread::spawn(move || member_loop(&w, 1, false))
            };
            let (spans0, msgs0, lost0) = member_loop(&w, 0, main_yields);
            let (spans1, msgs1, lost1) = other.join().unwrap();
            let mut all: Vec<_> = spans0.iter().map(|&s| (s, 0)).chain(spans1.iter().map(|&s| (s, 1))).collect();
            all.sort();
            let (mut at, mut got) = (0, Vec::new());
            let (mut m0, mut m1) = (msgs0.into_iter(), msgs1.into_iter());
            for ((start, end), who) in all {
                assert_eq!(start, at, "spans contiguous and disjoint");
                assert!(end > start, "no empty span");
                let n = w.ring.read_span(start, end).unwrap().len();
                got.extend((if who == 0 { &mut m0 } else { &mut m1 }).take(n));
                at = end;
            }
            assert_eq!(at, 72, "every record claimed");
            assert_eq!(got, sent, "each message exactly once, intact, in order");
            assert_eq!(w.subs.cursors[1].load(Ordering::Relaxed), 72);
            record(((spans0, lost0), (spans1, lost1)));
        });
    }
    // Per member: its spans, and whether its last claim lost the CAS (then found nothing).
    // A batch from 0 is always [0, 48) (two messages), the next [48, 72).
    let (both, first, second) = (vec![(0, 48), (48, 72)], vec![(0, 48)], vec![(48, 72)]);
    outcomes.assert(&[
        // One member took both; the other looked after it, or lost a race for each span.
        ((both.clone(), false), (vec![], false)),
        ((both.clone(), false), (vec![], true)),
        ((vec![], false), (both.clone(), false)),
        ((vec![], true), (both, false)),
        // One span each; the one with the first span lost the race for the second, or
        // looked after the other had taken it.
        ((first.clone(), false), (second.clone(), false)),
        ((first.clone(), true), (second.clone(), false)),
        ((second.clone(), false), (first.clone(), false)),
        ((second, false), (first, true)),
    ]);
}

// ---------------------------------------------------------------------------------------
// (3b) A member dying around its claim, and the member that takes its slot over
// ---------------------------------------------------------------------------------------

/// How the adopter in [`a_dead_members_claim_is_delivered_again_only_if_it_took_the_span`]
/// decides whether the dead member's claim took its span.
#[derive(Clone, Copy, PartialEq)]
enum Adopter {
    /// The library's rule, `cursors::claim_taken`.
    Library,
    /// The rule before the cursor was locked during a claim (the negative control): a claim
    /// still claiming took its span if the cursor moved from the claim's start.
    CursorMoved,
}

/// Two committed 8-byte messages at [0, 48) of a 128-byte ring, one entry, two members.
/// Member 0 records its claim of [0, 48) and makes its compare-and-swap of the cursor from
/// 0 (the steps of `cursors::take` up to the swap), then dies whatever the swap's outcome:
/// it neither clears a lost claim nor finishes a won one. Member 1 claims at the same time
/// (`cursors::claim`, finishing a lock it finds). Once member 0 is dead, a third process
/// takes its slot over while member 1 may still be claiming and decides, by `adopter`,
/// whether the dead claim is to be delivered again. Whatever the interleaving: the dead
/// claim is delivered again exactly when member 0's swap took the span, so no message is
/// delivered by member 1 and again for member 0 (for a message member 1 acked, that would
/// be an acked message delivered again), and none is lost. Returns what happened and
/// whether the invariant held.
fn dead_claim(adopter: Adopter) -> (DeadClaim, bool) {
    let ring = Ring::new(128, 16);
    let sent: Vec<_> = (0..2).map(|seq| msg(1, seq, 8)).collect();
    assert_eq!(ring.prewrite(0, &sent), 48);
    let entry = Entry { word: 0, window: NO_LIMIT, members: 0b11 };
    let unused = Entry { word: CURSOR_DETACHED, window: NO_LIMIT, members: 0 };
    let w = Arc::new(World { ring, subs: Subs::new(128, 48, 0b10, [unused, entry]) });
    let other = {
        let w = w.clone();
        thread::spawn(move || {
            let me = w.subs.claim(1);
            match cursors::claim(&w.subs, &w.ring.geo, &w.ring.region, 1, me, 2, u64::MAX).expect("honest") {
                Claim::Span(start, end) => Some((start, end)),
                Claim::Nothing => None,
                other => panic!("{other:?}"),
            }
        })
    };
    // Member 0: `cursors::take` up to its compare-and-swap, then death.
    let dead = w.subs.claim(0);
    dead.pos.store(0, Ordering::Relaxed);
    dead.end.store(48, Ordering::Relaxed);
    dead.state.store(claim_word(1, CLAIM_CLAIMING), Ordering::Relaxed);
    let won =
        w.subs.cursors[1].compare_exchange(0, cursor_locked(0, 1, false), Ordering::AcqRel, Ordering::Acquire).is_ok();
    // The adopter (holding the dead member's slot: its stores are visible).
    let cw = dead.state.load(Ordering::Relaxed);
    let again = match cursors::claim_state(cw) {
        CLAIM_CLAIMING => match adopter {
            Adopter::Library => cursors::claim_taken(&w.subs, 1, dead, cw).expect("honest"),
            // Acquire: as any read of the cursor.
            Adopter::CursorMoved => w.subs.cursors[1].load(Ordering::Acquire) & !cursors::FLAGS != 0,
        },
        state => state == CLAIM_HELD,
    };
    let got = other.join().unwrap();
    // Whatever was delivered: member 1's span, and the dead claim's if delivered again.
    let mut delivered: Vec<(u64, u64)> = got.into_iter().chain(again.then_some((0, 48))).collect();
    delivered.sort();
    let once = delivered == [(0, 48)];
    ((won, got, again), once && again == won)
}

/// Member 0's swap won, member 1's span, the dead claim delivered again.
type DeadClaim = (bool, Option<(u64, u64)>, bool);

#[test]
fn a_dead_members_claim_is_delivered_again_only_if_it_took_the_span() {
    let outcomes: Outcomes<DeadClaim> = Outcomes::new();
    let record = outcomes.recorder();
    builder(None).check(move || {
        let (seen, ok) = dead_claim(Adopter::Library);
        assert!(ok, "(won, member 1's span, delivered again): {seen:?}");
        record(seen);
    });
    outcomes.assert(&[
        // The dead member's swap took the span: it is delivered again; member 1 found the
        // cursor locked (and finished the claim), or at its end.
        (true, None, true),
        // Member 1 took it first: the dead member's claim lost, and is not delivered again.
        (false, Some((0, 48)), false),
    ]);
}

/// The negative control: the adopter's rule before the fix (a claim still claiming took
/// its span if the cursor has moved) delivers member 1's span a second time when the dead
/// member lost the race.
#[test]
fn an_adopter_that_trusts_a_moved_cursor_is_caught_delivering_the_winners_span_again() {
    assert!(
        violated(None, move || dead_claim(Adopter::CursorMoved).1),
        "no interleaving delivered a span twice: the control no longer tests anything"
    );
}

// ---------------------------------------------------------------------------------------
// (4) A member handing back a span while a producer gates on it
// ---------------------------------------------------------------------------------------

/// Two committed 16-byte messages at [0, 32) and [32, 64) of a full 64-byte ring, one entry
/// with one member, which has claimed the first (before the threads start). The member
/// reads its span (every header and payload word) and hands it back, then claims, reads and
/// hands back the second; if `release_first`, it hands each span back before reading it
/// (the negative control). A producer sends two 16-byte messages, each over one of the
/// spans, writing only once its gate (over the cursor and the member's claim) lets it, and
/// waiting (yielding) on `Full`. Returns, per message, whether the producer found the ring
/// full, and whether every span the member read was intact.
fn release_against_a_gate(release_first: bool) -> ((bool, bool), bool) {
    let ring = Ring::new(64, 16);
    assert_eq!(ring.prewrite(0, &[msg(1, 0, 16), msg(1, 1, 16)]), 64);
    let entry = Entry { word: 0, window: NO_LIMIT, members: 0b01 };
    let unused = Entry { word: CURSOR_DETACHED, window: NO_LIMIT, members: 0 };
    let w = Arc::new(World { ring, subs: Subs::new(64, 64, 0b10, [unused, entry]) });
    let me = w.subs.claim(0);
    let first = cursors::claim(&w.subs, &w.ring.geo, &w.ring.region, 1, me, 1, u64::MAX).unwrap();
    assert_eq!(first, Claim::Span(0, 32));
    let producer = {
        let w = w.clone();
        thread::spawn(move || {
            let mut p = spsc::Producer::new(w.ring.geo, 64, 0).unwrap();
            let mut waited = [false; 2];
            for (k, waited) in waited.iter_mut().enumerate() {
                let m = msg(2, k as u8, 16);
                let res = loop {
                    match p.try_reserve(&w.subs.tail, &SubsGate(&w.subs), &w.ring.region, 16) {
                        Ok(res) => break res,
                        Err(RingError::Full) => {
                            *waited = true;
                            thread::yield_now();
                        }
                        Err(e) => panic!("{e:?}"),
                    }
                };
                w.ring.region.write(res.payload(), &m);
                p.commit(&w.ring.region, res, 16).unwrap();
                p.publish(&w.subs.tail);
            }
            (waited[0], waited[1])
        })
    };
    let mut intact = true;
    let mut span = first;
    for k in 0..2u8 {
        let Claim::Span(start, end) = span else { panic!("{span:?}") };
        assert_eq!((start, end), (32 * u64::from(k), 32 * u64::from(k) + 32));
        if release_first {
            cursors::release(me);
        }
        intact &= w.ring.read_span(start, end) == Some(vec![msg(1, k, 16)]);
        if !release_first {
            cursors::release(me);
        }
        if k == 0 {
            span = cursors::claim(&w.subs, &w.ring.geo, &w.ring.region, 1, me, 1, u64::MAX).unwrap();
        }
    }
    let waited = producer.join().unwrap();
    (waited, intact)
}

/// The member's reads of a span are done before a producer overwrites it: the producer's
/// gate (Acquire on the claim state) sees the span handed back (Release) only after them.
/// Every span the member reads is intact.
#[test]
fn a_producer_never_overwrites_a_span_before_its_member_hands_it_back() {
    let outcomes: Outcomes<(bool, bool)> = Outcomes::new();
    let record = outcomes.recorder();
    builder(12).check(move || {
        let (waited, intact) = release_against_a_gate(false);
        assert!(intact, "the member read a span the producer had overwritten");
        record(waited);
    });
    // Whether the producer found the ring full before its first and second message: the
    // first waits exactly when its gate ran before the member handed the first span back
    // (the cursor is past it from the start: the claim alone holds the producer); the
    // second when its gate ran before the second span was claimed and handed back.
    outcomes.assert(&[(false, false), (false, true), (true, false), (true, true)]);
}

/// Two committed 16-byte messages at [0, 32) and [32, 64) of a full 64-byte ring, one entry
/// with two members, each claiming once (batches of 1), reading its span and handing it
/// back, while a producer sends one 16-byte message over [0, 32) once its gate lets it. A
/// member that loses the race for a span leaves its claim recorded (claiming) below the
/// cursor until it clears it, and the gate ignores such a claim: whatever the interleaving,
/// every span a member reads is intact (the gate never takes the winner's claim, or a claim
/// about to win, for a lost one). Returns the spans taken and whether all reads were intact.
fn two_members_against_a_gate() -> (Vec<(u64, u64)>, bool) {
    let ring = Ring::new(64, 16);
    assert_eq!(ring.prewrite(0, &[msg(1, 0, 16), msg(1, 1, 16)]), 64);
    let entry = Entry { word: 0, window: NO_LIMIT, members: 0b11 };
    let unused = Entry { word: CURSOR_DETACHED, window: NO_LIMIT, members: 0 };
    let w = Arc::new(World { ring, subs: Subs::new(64, 64, 0b10, [unused, entry]) });
    let one = |w: &World, j: usize| {
        let me = w.subs.claim(j);
        match cursors::claim(&w.subs, &w.ring.geo, &w.ring.region, 1, me, 1, u64::MAX).expect("honest") {
            Claim::Span(start, end) => {
                let k = (start / 32) as u8;
                let ok = w.ring.read_span(start, end) == Some(vec![msg(1, k, 16)]);
                cursors::release(me);
                (Some((start, end)), ok)
            }
            Claim::Nothing => (None, true),
            other => panic!("{other:?}"),
        }
    };
    let producer = {
        let w = w.clone();
        thread::spawn(move || {
            let mut p = spsc::Producer::new(w.ring.geo, 64, 0).unwrap();
            let res = loop {
                match p.try_reserve(&w.subs.tail, &SubsGate(&w.subs), &w.ring.region, 16) {
                    Ok(res) => break res,
                    Err(RingError::Full) => thread::yield_now(),
                    Err(e) => panic!("{e:?}"),
                }
            };
            w.ring.region.write(res.payload(), &msg(2, 0, 16));
            p.commit(&w.ring.region, res, 16).unwrap();
            p.publish(&w.subs.tail);
        })
    };
    let other = {
        let w = w.clone();
        thread::spawn(move || one(&w, 1))
    };
    let (a, ok_a) = one(&w, 0);
    let (b, ok_b) = other.join().unwrap();
    producer.join().unwrap();
    let mut spans: Vec<_> = a.into_iter().chain(b).collect();
    spans.sort();
    (spans, ok_a && ok_b)
}

/// The preemption bound of model (4b): 3 explores 3.2 million executions (about 100 s in
/// a release build) and finds the same outcomes as 2.
const PREEMPTIONS_4B: usize = 2;

#[test]
fn a_producer_never_takes_a_winning_claim_for_a_lost_one() {
    let outcomes: Outcomes<Vec<(u64, u64)>> = Outcomes::new();
    let record = outcomes.recorder();
    builder(PREEMPTIONS_4B).check(move || {
        let (spans, intact) = two_members_against_a_gate();
        assert!(intact, "a member read a span the producer had overwritten: {spans:?}");
        record(spans);
    });
    // One span each; or member 1 looked with an old view of the cursor (0: nothing orders
    // its first load after member 0's move) once the producer had written its new record
    // there, and found nothing to claim now (it would look again later).
    outcomes.assert(&[vec![(0, 32)], vec![(0, 32), (32, 64)]]);
}

/// Negative control for the model above: a member that hands a span back before reading it
/// is caught reading overwritten bytes.
#[test]
fn a_member_handing_a_span_back_before_reading_it_is_caught() {
    assert!(violated(2, move || release_against_a_gate(true).1), "the model missed the early release");
}

// ---------------------------------------------------------------------------------------
// (5) Findings: a joiner against an SPSC producer in the middle of a batch
// ---------------------------------------------------------------------------------------
//
// These models failed against the library at 4d79c22 or b74794e and pass against 8675238.
// An SPSC producer published `tail` after a batch of pushes (and at a wrap that needs
// padding), not after each record, while readers take records by their stamps: within a
// batch, cursors run ahead of the published tail, and with records that tile the region
// exactly (no padding) the private tail could run more than a capacity ahead of it. The
// join takes the published tail as its floor, which was then too low (findings 1 and 2).
// Now the producer publishes its tail before it computes a gate, so every head it relies
// on is at most a tail it published, and its private tail at most a capacity past it. And
// the position a joiner stores `JOINING` is the tail it loaded before its compare-and-swap,
// which a stall can make more than a capacity old (finding 3): now whoever finishes the
// join raises it to the tail, and producers finish a `JOINING` cursor before their range
// check.

/// [`join_against_a_gate`], with the producer relying on a head it computed earlier: before
/// the threads start it computed its gate once (entry 1 not counting: head [`AHEAD`],
/// published as its `gate_min`), and, as `spsc::Producer::ensure_free` does, it never
/// lowers its cached head: in the model it computes the gate again and relies on the larger
/// of the two. Returns (scans in the model, the head it relies on, the joiner's start) and
/// whether the joiner starts at or above that head.
fn join_against_a_cached_gate(new_entry: bool) -> (JoinOutcome, bool) {
    let tethered = Entry { word: AHEAD, window: NO_LIMIT, members: 0 };
    let window = if new_entry { NO_LIMIT } else { WINDOW1 };
    let joining = Entry { word: CURSOR_DETACHED, window, members: 0 };
    let active = if new_entry { 0b01 } else { 0b11 };
    let subs = Arc::new(Subs::new(CAP1, PUBLISHED, active, [tethered, joining]));
    let cached = subs.gate(PRIVATE, 8);
    assert_eq!(cached, AHEAD);
    let producer = {
        let subs = subs.clone();
        thread::spawn(move || cached.max(subs.gate(PRIVATE, 8)))
    };
    let start = if new_entry {
        // As `Subscription::create`. Acquire: pairs with the producers' Release of `tail`.
        let t0 = subs.tail.load(Ordering::Acquire);
        let joining = t0 | CURSOR_JOINING;
        // Relaxed: published by the Release of `active` below.
        subs.cursors[1].store(joining, Ordering::Relaxed);
        // Release (in AcqRel): producers that see the bit see the cursor.
        subs.active.fetch_or(0b10, Ordering::AcqRel);
        cursors::finish_join(&*subs, CAP1, 1, joining)
    } else {
        cursors::join(&*subs, CAP1, 1, CURSOR_DETACHED)
    };
    let head = producer.join().unwrap();
    let start = started(&subs, start);
    ((subs.scans() - 1, head, start), head <= start)
}

/// Finding 1 (found at 4d79c22, fixed on main by b74794e: `gate_min` is never lowered).
/// The producer relies on its cached head (80) but its second scan, seeing the joiner
/// `JOINING` at the published tail (64), published `gate_min` 64; the joiner read that
/// and started at 64, below 80: the producer could overwrite [64, 80) under the new
/// cursor. Interleaving: joiner CASes the cursor to `64|JOINING`; producer loads `joins`,
/// scans (head 64), stores `gate_min` 64, fence, re-reads `joins` unchanged, keeps 80;
/// joiner bumps `joins`, fence, reads `gate_min` 64 and `tail` 64, starts at 64.
#[test]
fn a_rejoining_cursor_never_starts_below_a_producers_cached_head() {
    let outcomes: Outcomes<JoinOutcome> = Outcomes::new();
    let record = outcomes.recorder();
    builder(8).check(move || {
        let (outcome, held) = join_against_a_cached_gate(false);
        assert!(held, "(scans, head relied on, start) = {outcome:?}: the start is below the head");
        record(outcome);
    });
    // The gate_min published before the threads (80) is never lowered: the joiner starts
    // at 80 whether the producer scanned once, twice (a bump seen: the joiner's, or its own
    // when it finished the join) or three times (both).
    outcomes.assert(&[(1, 80, 80), (2, 80, 80), (3, 80, 80)]);
}

/// Finding 1 for a new subscription (`Subscription::create`'s sequence).
#[test]
fn a_new_cursor_never_starts_below_a_producers_cached_head() {
    let outcomes: Outcomes<JoinOutcome> = Outcomes::new();
    let record = outcomes.recorder();
    builder(8).check(move || {
        let (outcome, held) = join_against_a_cached_gate(true);
        assert!(held, "(scans, head relied on, start) = {outcome:?}: the start is below the head");
        record(outcome);
    });
    // The gate_min published before the threads (80) is never lowered: the joiner starts
    // at 80 whether the producer scanned once, twice (a bump seen: the joiner's, or its own
    // when it finished the join) or three times (both).
    outcomes.assert(&[(1, 80, 80), (2, 80, 80), (3, 80, 80)]);
}

/// Finding 1 end to end, with the library's SPSC producer (its cached head never goes
/// down) in a batch over a 128-byte ring of 32-byte records (16-byte payloads). Before the
/// threads start: it pushed records at 0, 32 and published 64, then pushed at 64 and 96
/// (unpublished); the default consumer read up to 96; its push at 128 computed the gate
/// (entry 1 detached: head 96, `gate_min` 96; on main it published 128 first). In the
/// model it pushes at 160, tries a 48-byte record at 192 (its gate runs, on main after
/// publishing 192: `Full` unless the consumer moved, which it does not here), then a
/// 32-byte one, which its cached head lets it write over [64, 96); and entry 1 rejoins
/// meanwhile. Invariant: where the cursor stays tethered at its start below the producer's
/// final tail, the record there is intact (the one committed there, before the threads or
/// by the producer in the model). Interleaving that broke it at b74794e: as in
/// [`a_rejoining_cursor_never_starts_below_a_producers_cached_head`], the producer's gate
/// at 192 sees the cursor `JOINING` at 64 and publishes `gate_min` 64; the joiner starts at
/// 64; the producer writes its record at 192 over it (the stamp at index 64 now says 192:
/// members wait at 64 for a record that never comes, and a later gate finds the cursor
/// more than a capacity behind and calls the queue `Corrupt`).
#[test]
fn a_rejoined_cursors_first_record_is_never_overwritten_by_an_spsc_batch() {
    let outcomes: Outcomes<(u64, u64, usize)> = Outcomes::new();
    let record = outcomes.recorder();
    builder(12).check(move || {
        let ring = Ring::new(128, 32);
        let tethered = Entry { word: 0, window: NO_LIMIT, members: 0 };
        let detached = Entry { word: CURSOR_DETACHED, window: 96, members: 0 };
        let w = Arc::new(World { ring, subs: Subs::new(128, 0, 0b11, [tethered, detached]) });
        let (geo, region, subs) = (w.ring.geo, &w.ring.region, &w.subs);
        let mut p = spsc::Producer::new(geo, 0, 0).unwrap();
        for seq in 0..4u8 {
            p.push(&subs.tail, &SubsGate(subs), region, &msg(1, seq, 16)).unwrap();
            if seq == 1 {
                p.publish(&subs.tail);
            }
        }
        // The default consumer read [0, 96). Release: as a consumer publishing its head.
        subs.cursors[0].store(96, Ordering::Release);
        p.push(&subs.tail, &SubsGate(subs), region, &msg(1, 4, 16)).unwrap();
        assert_eq!((p.tail(), subs.gate_mins[0].load(Ordering::Relaxed)), (160, 96));
        let producer = {
            let w = w.clone();
            thread::spawn(move || {
                let (region, gate) = (&w.ring.region, SubsGate(&w.subs));
                p.push(&w.subs.tail, &gate, region, &msg(2, 0, 16)).unwrap();
                let second = match p.push(&w.subs.tail, &gate, region, &msg(2, 1, 32)) {
                    Ok(_) => 32,
                    Err(RingError::Full) => {
                        p.push(&w.subs.tail, &gate, region, &msg(2, 1, 16)).unwrap();
                        16
                    }
                    Err(e) => panic!("{e:?}"),
                };
                p.publish(&w.subs.tail);
                (second, p.tail())
            })
        };
        let start = cursors::join(subs, 128, 1, CURSOR_DETACHED).unwrap();
        let (second, end) = producer.join().unwrap();
        // Relaxed: the producer has been joined.
        let word = subs.cursors[1].load(Ordering::Relaxed);
        // The message committed at the start (the pushes before the threads every 32 bytes
        // up to 160, then the model's two), if the cursor is tethered there and one is.
        if word == start && start < end {
            let (m, size) = match start {
                160 => (msg(2, 0, 16), 32),
                192 => (msg(2, 1, second), if second == 32 { 48 } else { 32 }),
                _ => (msg(1, (start / 32) as u8, 16), 32),
            };
            assert_eq!(w.ring.read_span(start, start + size), Some(vec![m]), "the record at the start {start} is gone");
        }
        record((start, word, second));
    });
    // (start, cursor word at the end, the payload of the producer's second message: its
    // 32-byte one always finds the ring full, the default consumer being at 96). The
    // producer's gate at 128 (before the threads) published 128, its later ones 192: the
    // joiner starts at or above 128. At 128 the lag limit (96) has the producer detach it
    // again before its write at 192 (the word `128 | DETACHED`); at 192 the record there
    // is the producer's and intact; at 224 there is none yet. (At b74794e, with the tail
    // published only after a batch, the joiner could start at 64 and the record there be
    // overwritten.)
    outcomes.assert(&[(128, 128 | CURSOR_DETACHED, 16), (192, 192, 16), (224, 224, 16)]);
}

/// Finding 2 (at b74794e; fixed on main by 8675238: an SPSC producer publishes its tail
/// before it computes a gate, so its private tail is never more than a capacity past its
/// published one). At b74794e the producer could have published 0 and committed up to 96 of
/// a 64-byte ring; a joiner then either found a `JOINING` cursor more than a capacity
/// behind the producer's tail (`Corrupt`), or had its `gate_min` (80) taken for a
/// scribbler's and started at the published tail 0, in overwritten space.
///
/// The model now starts from a state the library can reach: the producer published 32 when
/// it last computed its gate (head 32, its `gate_min` 32), which let it push on, unpublished,
/// up to 96; the default consumer has read up to 80. In the model the producer publishes 96
/// and computes its gate (as `ensure_free`) while entry 1 rejoins; then it computes it again.
/// Invariants: every gate succeeds, and the joiner starts at or above the head the producer
/// relies on (the larger of its cached 32 and the new gate), so above everything it has
/// overwritten.
#[test]
fn a_joiner_behind_a_producers_unpublished_batch_neither_breaks_the_gate_nor_starts_in_overwritten_space() {
    let outcomes: Outcomes<JoinOutcome> = Outcomes::new();
    let record = outcomes.recorder();
    builder(11).check(move || {
        let tethered = Entry { word: AHEAD, window: NO_LIMIT, members: 0 };
        let joining = Entry { word: CURSOR_DETACHED, window: WINDOW1, members: 0 };
        let subs = Arc::new(Subs::new(CAP1, 32, 0b11, [tethered, joining]));
        // Relaxed: before the threads start.
        subs.gate_mins[0].store(32, Ordering::Relaxed);
        let producer = {
            let subs = subs.clone();
            thread::spawn(move || {
                // Release: as `spsc::Producer::publish`, before the gate (`ensure_free`).
                subs.tail.store(PRIVATE, Ordering::Release);
                cursors::gate(&*subs, CAP1, ENTRIES, 0, &subs.gate_mins[0], PRIVATE, 8).map(|h| h.max(32))
            })
        };
        let start = cursors::join(&*subs, CAP1, 1, CURSOR_DETACHED);
        let head = producer.join().unwrap();
        // Relaxed: the producer has been joined.
        let word = subs.cursors[1].load(Ordering::Relaxed);
        let scans = subs.scans();
        let again = cursors::gate(&*subs, CAP1, ENTRIES, 0, &subs.gate_mins[0], PRIVATE, 8);
        assert!(head.is_ok() && again.is_ok(), "an honest queue called corrupt: {head:?}, then {again:?}");
        let head = head.unwrap();
        if word & CURSOR_DETACHED != 0 {
            // Joined at 32 (the tail before the publication), the lag limit had the producer
            // detach it again at once: its members learn it from the cursor.
            assert_eq!((word, start, subs.lapped(1)), (32 | CURSOR_DETACHED, Some(32), 1));
            record((scans, head, word));
            return;
        }
        let start = started(&subs, start);
        assert!(start >= head, "started at {start}, below the head {head}");
        record((scans, head, start));
    });
    // (scans in the model's first gate, head relied on, start): the joiner starts at the
    // tail it reads (32 before the publication, 96 after) or at the `gate_min` 80 (the
    // producer's scan published it first); a lag-limited cursor joined at `pos` holds the
    // head at `pos - 16`; one joined at 32 is detached (the word `32 | DETACHED`) and holds
    // nothing: the head is the default consumer's 80. A second scan when `joins` changed
    // under the first (the joiner's bump, or the producer's own when it finished the join
    // itself), a third when both did.
    let detached = 32 | CURSOR_DETACHED;
    outcomes.assert(&[
        (1, 80, detached),
        (1, 80, 96),
        (2, 64, 80),
        (2, 80, detached),
        (2, 80, 96),
        (3, 64, 80),
        (3, 80, detached),
        (3, 80, 96),
    ]);
}

/// Finding 3 (at 4d79c22; b74794e skipped `JOINING` cursors before its range check, which
/// removed this failure, but the model then failed through finding 4: the producer's
/// rescan skipped the `JOINING` cursor, the joiner started at 0 and the producer overwrote
/// it, and its next gate found the tethered cursor outside the ring; passes against
/// 8675238, whose producers finish the join). A joiner stalled between its load of
/// `tail` and its compare-and-swap to `JOINING` publishes a stale position. Entry 0 is
/// removed and entry 1 (lag-limited) detached, so nothing holds the producer back; it
/// publishes its tail (64, then 128) before each gate, and writes a lap's worth of records
/// after a gate only if that gate lets it. Interleaving: the joiner loads
/// `tail` 0; the producer publishes 64 and 128; the joiner CASes the cursor to `0|JOINING`;
/// the producer's gate at 128 finds a cursor more than a capacity behind it and calls the
/// honest queue `Corrupt` (until `finish_join` replaces the word). The same with
/// `Subscription::create` stalled between its load of `tail` and its `fetch_or` of `active`.
#[test]
fn a_joiner_stalled_before_its_cas_never_makes_the_gate_fail() {
    let outcomes: Outcomes<(Vec<u64>, u64)> = Outcomes::new();
    let record = outcomes.recorder();
    builder(14).check(move || {
        let removed = Entry { word: CURSOR_DETACHED, window: NO_LIMIT, members: 0 };
        let detached = Entry { word: CURSOR_DETACHED, window: WINDOW1, members: 0 };
        let subs = Arc::new(Subs::new(CAP1, 0, 0b10, [removed, detached]));
        let producer = {
            let subs = subs.clone();
            thread::spawn(move || {
                let mut heads = Vec::new();
                for t in [64, 128] {
                    // Release: as `spsc::Producer::publish`.
                    subs.tail.store(t, Ordering::Release);
                    // A lap's worth of records next: it goes on only if nothing is below `t`.
                    let head = cursors::gate(&*subs, CAP1, ENTRIES, 0, &subs.gate_mins[0], t, CAP1);
                    heads.push(head);
                    if head != Ok(t) {
                        break;
                    }
                }
                heads
            })
        };
        let start = cursors::join(&*subs, CAP1, 1, CURSOR_DETACHED).unwrap();
        let heads = producer.join().unwrap();
        assert!(heads.iter().all(|h| h.is_ok()), "an honest queue called corrupt: {heads:?} (start {start})");
        // Relaxed: the producer has been joined.
        let word = subs.cursors[1].load(Ordering::Relaxed);
        assert_eq!(word & !CURSOR_DETACHED, start, "the cursor is where the join started it");
        let heads: Vec<u64> = heads.into_iter().map(Result::unwrap).collect();
        if word == start {
            assert!(heads.iter().all(|&h| h <= start), "the cursor starts at {start}, below a head: {heads:?}");
        }
        record((heads, word));
    });
    // (heads, cursor word at the end): no gate fails, and nothing holds the producer back
    // (its gates need a lap past the tail, which the lag limit of 48 never waits for). The
    // cursor starts at the tail read by whoever finishes the join (0, 64 or 128; a stale
    // JOINING position is raised to the tail) and a later gate of the producer detaches it
    // (`0 | DETACHED`, `64 | DETACHED`, `128 | DETACHED`), or it starts at 128 after the
    // producer's last gate and stays tethered (128).
    let d = CURSOR_DETACHED;
    outcomes.assert(&[(vec![64, 128], d), (vec![64, 128], 64 | d), (vec![64, 128], 128), (vec![64, 128], 128 | d)]);
}

/// The fix for findings 1 and 2 (main at 8675238), modelled with the library's gate and
/// join: the SPSC producer publishes its tail before it computes a gate (a Release store
/// on the slow path only, as `ensure_free`). Then every head it relies on is at most a tail it had
/// published before the scan, and its private tail is at most a capacity past its
/// published one. The producer published 96 and computed its gate (head 80) before the
/// threads start, then pushed on to 128 unpublished, the default consumer reading up to
/// 112; in the model it publishes 128 and computes its gate again while entry 1 joins
/// (rejoins, or is created if `new_entry`). The joiner starts at or above the head the
/// producer relies on, and no gate fails.
fn join_against_a_gate_after_publishing(new_entry: bool) -> (JoinOutcome, bool) {
    let tethered = Entry { word: AHEAD, window: NO_LIMIT, members: 0 };
    let window = if new_entry { NO_LIMIT } else { WINDOW1 };
    let joining = Entry { word: CURSOR_DETACHED, window, members: 0 };
    let active = if new_entry { 0b01 } else { 0b11 };
    let subs = Arc::new(Subs::new(CAP1, PRIVATE, active, [tethered, joining]));
    let cached = subs.gate(PRIVATE, 8);
    assert_eq!(cached, AHEAD);
    // Pushed on, unpublished (up to `cached + CAP1` allowed); the consumer followed.
    let (private, read) = (128, 112);
    subs.cursors[0].store(read, Ordering::Release);
    let producer = {
        let subs = subs.clone();
        thread::spawn(move || {
            // Release: as `spsc::Producer::publish`.
            subs.tail.store(private, Ordering::Release);
            cached.max(subs.gate(private, 8))
        })
    };
    let start = if new_entry {
        // As `Subscription::create`. Acquire: pairs with the producers' Release of `tail`.
        let t0 = subs.tail.load(Ordering::Acquire);
        let joining = t0 | CURSOR_JOINING;
        // Relaxed: published by the Release of `active` below.
        subs.cursors[1].store(joining, Ordering::Relaxed);
        // Release (in AcqRel): producers that see the bit see the cursor.
        subs.active.fetch_or(0b10, Ordering::AcqRel);
        cursors::finish_join(&*subs, CAP1, 1, joining)
    } else {
        cursors::join(&*subs, CAP1, 1, CURSOR_DETACHED)
    };
    let head = producer.join().unwrap();
    let start = started(&subs, start);
    ((subs.scans() - 1, head, start), head <= start)
}

#[test]
fn with_the_tail_published_before_each_gate_a_join_never_starts_below_a_cached_head() {
    // (scans, head relied on, start): the joiner starts at 96 or 128 (the tails it may
    // read) or at the gate_min 112, whoever finishes its join (a producer that finds it
    // JOINING finishes it and gates on its start). The head is the larger of the cached 80
    // and what the scan found: the consumer at 112 and the joined cursor (with the lag
    // limit, `start - 16`). A second scan when `joins` changed under the first (the
    // joiner's bump, or the producer's own when it finished the join), a third when both.
    let rejoin: &[JoinOutcome] = &[
        (1, 80, 96),
        (1, 112, 128),
        (2, 80, 96),
        (2, 96, 112),
        (2, 112, 128),
        (3, 80, 96),
        (3, 96, 112),
        (3, 112, 128),
    ];
    let create: &[JoinOutcome] = &[
        (1, 96, 96),
        (1, 112, 128),
        (2, 96, 96),
        (2, 112, 112),
        (2, 112, 128),
        (3, 96, 96),
        (3, 112, 112),
        (3, 112, 128),
    ];
    for (new_entry, acceptable) in [(false, rejoin), (true, create)] {
        let outcomes: Outcomes<JoinOutcome> = Outcomes::new();
        let record = outcomes.recorder();
        builder(14).check(move || {
            let (outcome, held) = join_against_a_gate_after_publishing(new_entry);
            assert!(held, "(scans, head relied on, start) = {outcome:?}: the start is below the head");
            record(outcome);
        });
        outcomes.assert(acceptable);
    }
}

// ---------------------------------------------------------------------------------------
// (6) Spill: a durable queue's default consumer detached, rejoining at its log position,
// and pinning its cursor
// ---------------------------------------------------------------------------------------

/// Model 6's ring: 64 bytes, a producer writing 32-byte records.
const CAP6: u64 = 64;
/// The producer's records.
const NEED6: u64 = 32;
/// The durable queue's `max_log_bytes`: producers stay within 128 bytes of a spilled
/// reader's position, so they can lap it by more than a capacity.
const LOG_LIMIT6: u64 = 128;

/// The words of a durable queue whose default consumer (entry 0, spilling) has the cursor
/// word `word`, with the ring [0, 64) full (`tail` 64) and the journal at `floor`.
fn durable_subs(word: u64, floor: u64) -> Subs {
    let reader = Entry { word, window: NO_LIMIT, members: 0 };
    let unused = Entry { word: CURSOR_DETACHED, window: NO_LIMIT, members: 0 };
    let mut subs = Subs::new(CAP6, 64, 0b01, [reader, unused]);
    subs.spills[0] = true;
    subs.log_limit = LOG_LIMIT6;
    // Relaxed: before the threads start.
    subs.floor.store(floor, Ordering::Relaxed);
    subs
}

/// The consumer detached at 0, the journal having logged [0, 32) (the floor 32).
fn spilled_subs() -> Subs {
    durable_subs(CURSOR_DETACHED, 32)
}

/// What the producer of [`rejoin_against_a_producer`] did: every head it relied on (its
/// cache after each gate), the end of the highest range it overwrote (writing `[t, t + 32)`
/// overwrites `[t - 64, t - 32)`; 0 if it wrote nothing), and whether a gate failed.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Wrote {
    heads: Vec<u64>,
    over: u64,
    failed: Option<&'static str>,
}

/// A producer's three 32-byte records from 64, each after the journal logged everything
/// before it (the floor raised to the tail: one interleaving of the journal and the
/// producer), gating (and keeping the highest head, as `ensure_free`) only when its cached
/// head is too low; it stops at a gate that does not let it write (it would wait).
fn spill_producer(subs: &Subs) -> Wrote {
    let (mut tail, mut head) = (64, 0);
    let mut wrote = Wrote { heads: Vec::new(), over: 0, failed: None };
    for _ in 0..3 {
        // Release: as the journal's raise after it read (logged) the bytes below.
        subs.floor.store(tail, Ordering::Release);
        if tail + NEED6 - CAP6 > head {
            match cursors::gate(subs, CAP6, ENTRIES, 0, &subs.gate_mins[0], tail, NEED6) {
                Ok(h) => head = head.max(h),
                Err(RingError::Corrupt(why)) => {
                    wrote.failed = Some(why);
                    return wrote;
                }
                Err(e) => panic!("{e:?}"),
            }
            wrote.heads.push(head);
            if tail + NEED6 - CAP6 > head {
                return wrote;
            }
        }
        wrote.over = tail + NEED6 - CAP6;
        tail += NEED6;
        // Release: as `spsc::Producer::publish`.
        subs.tail.store(tail, Ordering::Release);
    }
    wrote
}

/// What one execution of [`rejoin_against_a_producer`] gave: the position the reader
/// rejoined at (the floor it read: it read the log up to there), whether `rejoin_at`
/// returned true, whether its pin then succeeded, the producer's record, and the cursor word
/// at the end.
type RejoinOutcome = (u64, bool, bool, Wrote, u64);

/// The spilled reader of [`spilled_subs`] reads the log up to the journal's position (it
/// loads the floor), rejoins there (`rejoin_at`, or if `broken` a bare compare-and-swap to
/// the plain position, reported as rejoined), then pins its cursor to read the message
/// there; meanwhile [`spill_producer`] writes. Returns the outcome and whether the safety
/// property held: a reader whose pin succeeded reads at a position no producer ever
/// overwrote (nor relied on a head above: it would overwrite it next).
fn rejoin_against_a_producer(broken: bool) -> (RejoinOutcome, bool) {
    let subs = Arc::new(spilled_subs());
    let producer = {
        let subs = subs.clone();
        thread::spawn(move || spill_producer(&subs))
    };
    // Acquire: as the producers' load of the floor: the log holds everything below it.
    let pos = subs.floor.load(Ordering::Acquire);
    let rejoined = if broken {
        // AcqRel, Acquire: as `rejoin_at`'s compare-and-swap.
        subs.cursors[0].compare_exchange(CURSOR_DETACHED, pos, Ordering::AcqRel, Ordering::Acquire).is_ok()
    } else {
        cursors::rejoin_at(&*subs, CAP6, 0, CURSOR_DETACHED, pos)
    };
    // AcqRel: as the consumer's pin (a producer that sees it waits); Acquire on failure.
    let pinned = rejoined
        && subs.cursors[0].compare_exchange(pos, pos | CURSOR_PINNED, Ordering::AcqRel, Ordering::Acquire).is_ok();
    let wrote = producer.join().unwrap();
    // Relaxed: the producer has been joined.
    let word = subs.cursors[0].load(Ordering::Relaxed);
    let held = !pinned || (wrote.over <= pos && wrote.heads.iter().all(|&h| h <= pos));
    ((pos, rejoined, pinned, wrote, word), held)
}

/// A [`Wrote`] without a failure (outcome sets).
fn wrote(heads: &[u64], over: u64) -> Wrote {
    Wrote { heads: heads.to_vec(), over, failed: None }
}

/// A spilled reader rejoins at the position it read the log up to while a producer writes
/// (journalling before each record). If its pin succeeds, no producer overwrote anything at
/// or above that position, nor relied on a head above it: either the producer's scan saw
/// the plain cursor (and gated on it, or detached it again, failing the pin), or the
/// reader's `confirm` saw the producer's `gate_min` above the position (and detached it
/// again). No gate calls the honest queue corrupt, and no head is more than `log_limit`
/// past the reader's position less a capacity (it was detached at 0, then at most at its
/// rejoin position). Explored exhaustively (from 12 preemptions on loom finds no further
/// execution; from 3 on no further outcome).
///
/// Finding (in the lead's first version of the spill protocol): a producer's scan called
/// the queue corrupt when it found the reader's plain cursor more than a capacity behind its
/// tail, which a detached reader's rejoin allows (producers may run `log_limit` past it):
/// the reader loads the floor 32; the producer (head 64: the log limit past 0) writes up to
/// 128; the reader CASes its cursor to 32; the producer's gate at 128 fails ("subscription
/// cursor outside the ring") before the reader's `confirm` detaches it again. Now the scan
/// detaches such a cursor; and then bounds its head by the log limit past it (96), which a
/// producer's own detach skipped (the head was 128 here, past 32 + 128 - 64).
#[test]
fn a_spilled_reader_that_rejoins_and_pins_is_never_overwritten() {
    let outcomes: Outcomes<RejoinOutcome> = Outcomes::new();
    let record = outcomes.recorder();
    builder(12).check(move || {
        let (outcome, held) = rejoin_against_a_producer(false);
        assert!(held, "the pinned reader's position was overwritten: {outcome:?}");
        assert_eq!(outcome.3.failed, None, "an honest queue called corrupt: {outcome:?}");
        let bound = outcome.0 + LOG_LIMIT6 - CAP6;
        assert!(outcome.3.heads.iter().all(|&h| h <= bound), "past the log limit of the reader: {outcome:?}");
        record(outcome);
    });
    // (position, rejoin_at's answer, pinned, the producer's heads and overwrite end, the
    // cursor word at the end). The reader rejoins at the floor it read: 32 (before the
    // producer ran), or 64, 96, 128 (raised before each of its records). The producer's
    // first gate (tail 64) finds the cursor detached at 0 (head 64: the log limit past 0,
    // and the floor) or plain at 32 (head 32); it gates again when its cached head is too
    // low for a record, at 96 or 128.
    let (d, p) = (CURSOR_DETACHED, CURSOR_PINNED);
    outcomes.assert(&[
        // At 32: pinned only if the producer gated on the cursor (32) and then waited for
        // the pin. Otherwise the producer had relied on 64 (confirm saw its gate_min and
        // detached the cursor again: 32 | DETACHED) or found the plain cursor in its way
        // and detached it at 32 (head 96: the log limit past 32), before the pin (which
        // fails, also after a `rejoin_at` that returned true) ...
        (32, true, true, wrote(&[32, 32], 32), 32 | p),
        (32, true, false, wrote(&[32, 96], 96), 32 | d),
        (32, false, false, wrote(&[32, 96], 96), 32 | d),
        (32, false, false, wrote(&[64, 64], 64), 32 | d),
        (32, false, false, wrote(&[64, 96], 96), 32 | d),
        // At 64 (the producer's first gate relied on 64): pinned if the producer then
        // waited for it; else detached at 64 (by confirm, the gate_min of a later gate
        // being above it, or by the producer in its way: head 128, the log limit past 64).
        (64, true, true, wrote(&[64, 64], 64), 64 | p),
        (64, true, false, wrote(&[64, 128], 96), 64 | d),
        (64, false, false, wrote(&[64, 64], 64), 64 | d),
        (64, false, false, wrote(&[64, 128], 96), 64 | d),
        // At 96 or 128: the producer wrote [64, 128) on its first head; its second gate
        // (at 128) published gate_min 128 when it found the cursor detached (then a rejoin
        // at 96 fails; its head is the log limit past 0 or 96), or waited for it.
        (96, true, true, wrote(&[64, 96], 96), 96 | p),
        (96, false, false, wrote(&[64, 64], 64), 96 | d),
        (96, false, false, wrote(&[64, 96], 96), 96 | d),
        (96, false, false, wrote(&[64, 128], 96), 96 | d),
        (128, true, true, wrote(&[64, 64], 64), 128 | p),
        (128, true, true, wrote(&[64, 128], 96), 128 | p),
    ]);
}

/// Negative control for the model above: a rejoin that only stores the plain cursor (no
/// bump of `joins`, no fence, no look at the producers' `gate_min`) is caught pinning a
/// position the producer overwrote (it relied on head 64, the log limit past 0, with the
/// cursor still detached, and the reader rejoined at 32).
#[test]
fn a_rejoin_that_does_not_confirm_is_caught() {
    assert!(violated(2, move || rejoin_against_a_producer(true).1), "the model missed the unconfirmed rejoin");
}

/// The consumer's plain cursor at 32, the journal at 64.
fn plain_at_32() -> Subs {
    durable_subs(32, 64)
}

/// What one execution of [`a_pin_and_a_detach_never_both_win`] gave: whether the pin
/// succeeded, the producer's head, the cursor word at the end, and how often the entry was
/// detached.
type PinOutcome = (bool, u64, u64, u32);

/// The spilling reader's plain cursor at 32 (the ring [0, 64) full, the journal at 64): it
/// pins the cursor to read the message there while a producer gates for 48 bytes past 64
/// (the cursor is in its way: 112 - 32 > 64). Exactly one wins: the pin (the producer then
/// gates on the cursor: head 32) or the detach (the pin fails, the cursor is `32 |
/// DETACHED`, counted once, and the producer's head is the log limit past 32, capped by the
/// tail: 64). Explored exhaustively (from 2 preemptions on loom finds no further execution).
#[test]
fn a_pin_and_a_detach_never_both_win() {
    let outcomes: Outcomes<PinOutcome> = Outcomes::new();
    let record = outcomes.recorder();
    builder(4).check(move || {
        let subs = Arc::new(plain_at_32());
        let producer = {
            let subs = subs.clone();
            thread::spawn(move || cursors::gate(&*subs, CAP6, ENTRIES, 0, &subs.gate_mins[0], 64, 48))
        };
        // AcqRel: as the consumer's pin; Acquire on failure.
        let pinned = subs.cursors[0].compare_exchange(32, 32 | CURSOR_PINNED, Ordering::AcqRel, Ordering::Acquire);
        let head = producer.join().unwrap().expect("honest words");
        // Relaxed: the producer has been joined.
        let word = subs.cursors[0].load(Ordering::Relaxed);
        match pinned {
            Ok(_) => {
                assert!(head <= 32, "the producer may overwrite the pinned message: head {head}");
                assert_eq!((word, subs.lapped(0)), (32 | CURSOR_PINNED, 0), "pinned, never detached");
            }
            Err(now) => {
                assert_eq!(now, 32 | CURSOR_DETACHED, "only the producer's detach beats the pin");
                assert_eq!((word, subs.lapped(0)), (32 | CURSOR_DETACHED, 1), "detached exactly once");
            }
        }
        record((pinned.is_ok(), head, word, subs.lapped(0)));
    });
    outcomes.assert(&[(true, 32, 32 | CURSOR_PINNED, 0), (false, 64, 32 | CURSOR_DETACHED, 1)]);
}

/// What one execution of [`a_look_before_the_pin`] gave: the word the reader's look read at
/// its head, and the cursor word it read after.
type LookOutcome = (u64, u64);

/// The word a later lap leaves at the reader's head (a record's stamp, or payload bytes).
const LATER_LAP: u64 = 0xBEEF;

/// The spilling reader's plain cursor at 32, as in [`a_pin_and_a_detach_never_both_win`],
/// and the head's word holding its record's stamp (`STAMP32`); the reader looks at that word
/// without pinning and then reads its cursor (`spill_look` in `src/queue/spill.rs`: a look
/// that finds nothing is "nothing there yet" only if the cursor still reads plain). A
/// producer gates for 48 bytes past 64 (the cursor is in its way: it detaches it) and then,
/// if its head lets it, writes over position 32 with a Relaxed store: a later lap's bytes
/// carry no Release of their own (payload bytes are plain copies), so only the gate's fence
/// orders the detach before them. With `broken` the producer writes before it gates (the
/// order a detach outside `gate` might take). Returns the outcome and whether the property
/// held: a reader that read the later lap's word also read the detach.
fn a_look_before_the_pin(broken: bool) -> (LookOutcome, bool) {
    const STAMP32: u64 = 0x32;
    let subs = Arc::new(plain_at_32());
    let head_word = Arc::new(AtomicU64::new(STAMP32));
    let producer = {
        let (subs, head_word) = (subs.clone(), head_word.clone());
        thread::spawn(move || {
            if broken {
                // Relaxed: the later lap's bytes (see above).
                head_word.store(LATER_LAP, Ordering::Relaxed);
                let _ = cursors::gate(&*subs, CAP6, ENTRIES, 0, &subs.gate_mins[0], 64, 48);
                return;
            }
            let head = cursors::gate(&*subs, CAP6, ENTRIES, 0, &subs.gate_mins[0], 64, 48).expect("honest words");
            // Writing [64, 112) overwrites [0, 48): allowed only past the head it was given.
            if head >= 48 {
                // Relaxed: the later lap's bytes (see above).
                head_word.store(LATER_LAP, Ordering::Relaxed);
            }
        })
    };
    // Acquire, both: as the look's load of the stamp and `spill_look`'s load of the cursor.
    let seen = head_word.load(Ordering::Acquire);
    let word = subs.cursors[0].load(Ordering::Acquire);
    producer.join().unwrap();
    let held = seen != LATER_LAP || word & CURSOR_DETACHED != 0;
    ((seen, word), held)
}

/// A durable queue's consumer may look at its head without pinning its cursor: a look that
/// read a later lap's word there (the producer detached the cursor, then wrote) always reads
/// the detach in the cursor after it, so it never takes what it saw for "nothing sent yet"
/// at a position whose record the producer overwrote. Explored exhaustively (from 2
/// preemptions on loom finds no further execution).
#[test]
fn a_look_that_sees_a_later_lap_also_sees_the_detach() {
    let outcomes: Outcomes<LookOutcome> = Outcomes::new();
    let record = outcomes.recorder();
    builder(4).check(move || {
        let ((seen, word), held) = a_look_before_the_pin(false);
        assert!(held, "the look read the later lap ({seen:#x}) but a plain cursor ({word:#x})");
        record((seen, word));
    });
    let d = CURSOR_DETACHED;
    outcomes.assert(&[(0x32, 32), (0x32, 32 | d), (LATER_LAP, 32 | d)]);
}

/// Negative control for the model above: a producer that writes over the head before it
/// detaches the cursor is caught (a look reads the later lap with the cursor still plain).
#[test]
fn a_write_before_the_detach_is_caught_by_the_look() {
    assert!(violated(2, move || a_look_before_the_pin(true).1), "the model missed the write before the detach");
}

//! `ring::cursors` over plain memory: the gate with several cursors, a lag-limited cursor
//! detached and rejoined, joins starting above the producers' `gate_min`, members claiming
//! spans, and two threads of members sharing one stream. Runs under Miri like the ring
//! tests (`cargo +nightly miri test --lib ring::`).

use std::sync::atomic::{AtomicU64, Ordering};

use super::RingError;
use super::cursors::{self, Claim, ClaimWords, Cursors, FLAGS};
use super::{Geometry, HeapRegion, spsc};
use crate::layout::{
    CLAIM_CLAIMING, CLAIM_HELD, CLAIM_NONE, CURSOR_DETACHED, CURSOR_JOINING, CURSOR_PINNED, claim_word, cursor_locked,
};

const SALT: u64 = 0x0f1e_2d3c_4b5a_6978;
const CAP: u64 = 1024;

/// Readers' words as a segment holds them: 4 entries, 4 members, 2 producers.
struct Words {
    active: AtomicU64,
    joins: AtomicU64,
    tail: AtomicU64,
    cursors: [AtomicU64; 4],
    windows: [u64; 4],
    members: [u64; 4],
    claims: [(AtomicU64, AtomicU64, AtomicU64); 4],
    gate_mins: [AtomicU64; 2],
    lapped: AtomicU64,
    spills: [bool; 4],
    floor: AtomicU64,
    log_limit: u64,
    /// Participant slots (readers and members) whose process is dead.
    dead: u64,
}

impl Words {
    fn new() -> Words {
        Words {
            active: AtomicU64::new(0),
            joins: AtomicU64::new(0),
            tail: AtomicU64::new(0),
            cursors: Default::default(),
            windows: [cursors::NO_LIMIT; 4],
            members: [0; 4],
            claims: Default::default(),
            gate_mins: Default::default(),
            lapped: AtomicU64::new(0),
            spills: [false; 4],
            floor: AtomicU64::new(u64::MAX),
            log_limit: u64::MAX,
            dead: 0,
        }
    }
}

impl Cursors for Words {
    fn active(&self) -> &AtomicU64 {
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
        self.members[i]
    }
    fn claim(&self, j: usize) -> ClaimWords<'_> {
        let c = &self.claims[j];
        ClaimWords { slot: j, pos: &c.0, end: &c.1, state: &c.2 }
    }
    fn gate_mins(&self) -> impl Iterator<Item = &AtomicU64> {
        self.gate_mins.iter()
    }
    fn lapped(&self, _i: usize) {
        self.lapped.fetch_add(1, Ordering::Relaxed);
    }
    fn reader_alive(&self, i: usize) -> bool {
        self.dead & (1 << i) == 0
    }
    fn producer_alive(&self, j: usize) -> bool {
        self.dead & (1 << j) == 0
    }
    fn floor(&self) -> u64 {
        self.floor.load(Ordering::Relaxed)
    }
    fn spills(&self, i: usize) -> bool {
        self.spills[i]
    }
    fn log_limit(&self) -> u64 {
        self.log_limit
    }
}

fn gate(w: &Words, producer: usize, tail: u64, need: u64) -> u64 {
    cursors::gate(w, CAP, 4, producer, &w.gate_mins[producer], tail, need).expect("honest words")
}

#[test]
fn the_gate_is_the_lowest_tethered_cursor_or_claim() {
    let w = Words::new();
    w.active.store(0b111, Ordering::Relaxed);
    w.cursors[0].store(800, Ordering::Relaxed);
    w.cursors[1].store(640, Ordering::Relaxed);
    w.cursors[2].store(960 | CURSOR_DETACHED, Ordering::Relaxed);
    assert_eq!(gate(&w, 0, 1000, 16), 640);
    assert_eq!(w.gate_mins[0].load(Ordering::Relaxed), 640, "published before it is relied on");
    // A member of entry 1 holds a span from 600.
    let mut w = w;
    w.members[1] = 1 << 2;
    w.claims[2].0.store(600, Ordering::Relaxed);
    w.claims[2].2.store(crate::layout::claim_word(1, crate::layout::CLAIM_HELD), Ordering::Relaxed);
    assert_eq!(gate(&w, 0, 1000, 16), 600);
    // Done with it: it no longer counts.
    cursors::release(w.claim(2));
    assert_eq!(gate(&w, 0, 1000, 16), 640);
    // Nothing active: the producer may write anywhere.
    w.active.store(0, Ordering::Relaxed);
    assert_eq!(gate(&w, 0, 1000, 16), 1000);
}

#[test]
fn a_lag_limited_cursor_is_detached_only_when_a_write_would_leave_it_too_far_behind() {
    let mut w = Words::new();
    w.active.store(0b11, Ordering::Relaxed);
    w.windows[1] = 256;
    w.cursors[0].store(1000, Ordering::Relaxed);
    w.cursors[1].store(800, Ordering::Relaxed);
    // 200 behind, 16 more is 216 <= 256: it holds, counting as 800 + 256 - 1024.
    assert_eq!(gate(&w, 0, 1000, 16), 32);
    assert_eq!(w.cursors[1].load(Ordering::Relaxed), 800);
    // 272 bytes would be 272 > 256 behind: detached, and no longer counted.
    assert_eq!(gate(&w, 0, 1000, 72), 1000);
    assert_eq!(w.cursors[1].load(Ordering::Relaxed), 800 | CURSOR_DETACHED);
    assert_eq!(w.lapped.load(Ordering::Relaxed), 1);
    // A joining cursor is finished by the producer: it starts above every gate_min (ours
    // says 1000), and is then gated on like any other (1000 + 256 - 1024).
    w.cursors[1].store(200 | CURSOR_JOINING, Ordering::Relaxed);
    assert_eq!(gate(&w, 0, 1000, 72), 232);
    assert_eq!(w.cursors[1].load(Ordering::Relaxed), 1000);
}

#[test]
fn a_join_starts_at_or_above_every_producers_gate_min_and_the_tail() {
    let w = Words::new();
    w.active.store(0b11, Ordering::Relaxed);
    w.cursors[0].store(4000, Ordering::Relaxed);
    w.cursors[1].store(2000 | CURSOR_DETACHED, Ordering::Relaxed);
    w.tail.store(3000, Ordering::Relaxed); // an SPSC producer's published tail lags
    // A producer relied on the default cursor at 4000 (its private tail is beyond 3000).
    assert_eq!(gate(&w, 0, 4096, 16), 4000);
    let start = cursors::join(&w, CAP, 1, 2000 | CURSOR_DETACHED).expect("nobody raced");
    assert_eq!(start, 4000, "not below what the producer may overwrite");
    assert_eq!(w.cursors[1].load(Ordering::Relaxed), 4000);
    assert_eq!(w.joins.load(Ordering::Relaxed), 1);
    // A stale word: someone else changed it first.
    assert_eq!(cursors::join(&w, CAP, 1, 2000 | CURSOR_DETACHED), None);
    // A scribbled gate_min far above the tail is ignored.
    w.gate_mins[1].store(1 << 40, Ordering::Relaxed);
    w.cursors[2].store(3000 | CURSOR_JOINING, Ordering::Relaxed);
    assert_eq!(cursors::finish_join(&w, CAP, 2, 3000 | CURSOR_JOINING), Some(3000));
}

/// A durable queue's default consumer (entry 0, spilling) and, for contrast, a lag-limited
/// named subscription (entry 1, window 256), with `max_log_bytes` 2048.
fn spilling() -> Words {
    let mut w = Words::new();
    w.spills[0] = true;
    w.windows[1] = 256;
    w.log_limit = 2 * CAP;
    w
}

#[test]
fn a_spilling_reader_in_the_way_is_detached_but_waited_for_while_pinned() {
    let w = spilling();
    w.active.store(0b1, Ordering::Relaxed);
    w.cursors[0].store(200, Ordering::Relaxed);
    // 1016 - 200 <= 1024: not in the way, gated on like any cursor.
    assert_eq!(gate(&w, 0, 1000, 16), 200);
    assert_eq!(w.cursors[0].load(Ordering::Relaxed), 200);
    // Pinned (reading the message at 200): waited for however far the write would go.
    w.cursors[0].store(200 | CURSOR_PINNED, Ordering::Relaxed);
    assert_eq!(gate(&w, 0, 1000, 300), 200);
    assert_eq!(w.cursors[0].load(Ordering::Relaxed), 200 | CURSOR_PINNED, "not detached");
    assert_eq!(w.gate_mins[0].load(Ordering::Relaxed), 200);
    assert_eq!(w.lapped.load(Ordering::Relaxed), 0);
    // Not pinned: 1300 - 200 > 1024, detached rather than waited for (within the log limit
    // past 200, 200 + 2048 - 1024, the tail is the head).
    w.cursors[0].store(200, Ordering::Relaxed);
    assert_eq!(gate(&w, 0, 1000, 300), 1000);
    assert_eq!(w.cursors[0].load(Ordering::Relaxed), 200 | CURSOR_DETACHED);
    assert_eq!(w.lapped.load(Ordering::Relaxed), 1);
}

#[test]
fn a_detached_spilling_reader_bounds_the_head_by_the_log_limit_and_others_do_not() {
    let w = spilling();
    w.active.store(0b1, Ordering::Relaxed);
    w.cursors[0].store(200 | CURSOR_DETACHED, Ordering::Relaxed);
    // The log may hold at most 2048 bytes past 200: overwrite nothing at or above 1224.
    assert_eq!(gate(&w, 0, 4000, 16), 200 + 2 * CAP - CAP);
    assert_eq!(w.gate_mins[0].load(Ordering::Relaxed), 4000, "a detached cursor is not counted in gate_min");
    // A detached lag-limited subscription rejoins at the tail: it holds nothing back.
    w.active.store(0b10, Ordering::Relaxed);
    w.cursors[1].store(200 | CURSOR_DETACHED, Ordering::Relaxed);
    assert_eq!(gate(&w, 0, 4000, 16), 4000);
    // Neither does a spilled reader when there is no log limit.
    let mut w = w;
    w.log_limit = u64::MAX;
    w.active.store(0b1, Ordering::Relaxed);
    assert_eq!(gate(&w, 0, 4000, 16), 4000);
}

#[test]
fn a_spilling_readers_plain_cursor_lapped_by_more_than_a_capacity_is_detached_not_corrupt() {
    // A reader rejoining at a position producers lapped meanwhile (its confirm will fail),
    // or one that died in the middle of its rejoin.
    let w = spilling();
    w.active.store(0b1, Ordering::Relaxed);
    w.cursors[0].store(200, Ordering::Relaxed);
    assert_eq!(gate(&w, 0, 2000, 16), 200 + 2 * CAP - CAP, "detached, and bounded by the log limit past it");
    assert_eq!(w.cursors[0].load(Ordering::Relaxed), 200 | CURSOR_DETACHED);
    assert_eq!(w.lapped.load(Ordering::Relaxed), 1);
    // Pinned that far behind, or a cursor that does not spill: nonsense.
    let corrupt = Err(RingError::Corrupt("subscription cursor outside the ring"));
    w.cursors[0].store(200 | CURSOR_PINNED, Ordering::Relaxed);
    assert_eq!(cursors::gate(&w, CAP, 4, 0, &w.gate_mins[0], 2000, 16), corrupt);
    w.active.store(0b10, Ordering::Relaxed);
    w.cursors[1].store(200, Ordering::Relaxed);
    assert_eq!(cursors::gate(&w, CAP, 4, 0, &w.gate_mins[0], 2000, 16), corrupt);
}

#[test]
fn the_journals_floor_bounds_the_head_and_counts_in_gate_min() {
    let w = spilling();
    w.floor.store(800, Ordering::Relaxed);
    // Nothing active: the floor alone.
    assert_eq!(gate(&w, 0, 1000, 16), 800);
    assert_eq!(w.gate_mins[0].load(Ordering::Relaxed), 800);
    // A spilled reader that read the log up to the floor may rejoin there.
    w.active.store(0b1, Ordering::Relaxed);
    w.cursors[0].store(100 | CURSOR_DETACHED, Ordering::Relaxed);
    w.tail.store(1000, Ordering::Relaxed);
    assert_eq!(gate(&w, 1, 1000, 16), 800);
    assert_eq!(w.gate_mins[1].load(Ordering::Relaxed), 800);
    assert!(cursors::rejoin_at(&w, CAP, 0, 100 | CURSOR_DETACHED, 800));
    assert_eq!(w.cursors[0].load(Ordering::Relaxed), 800);
    // A cursor below the floor counts instead.
    w.cursors[0].store(600, Ordering::Relaxed);
    assert_eq!(gate(&w, 0, 1000, 16), 600);
    assert_eq!(w.gate_mins[0].load(Ordering::Relaxed), 800, "gate_min is never lowered");
}

#[test]
fn rejoin_at_succeeds_only_where_no_producer_may_be_overwriting() {
    let w = spilling();
    w.active.store(0b1, Ordering::Relaxed);
    w.tail.store(1000, Ordering::Relaxed);
    // Producer 0 relied on a head up to 896; producer 1's slot holds an old value.
    w.gate_mins[0].store(896, Ordering::Relaxed);
    w.gate_mins[1].store(0, Ordering::Relaxed);
    w.cursors[0].store(500 | CURSOR_DETACHED, Ordering::Relaxed);
    assert!(cursors::rejoin_at(&w, CAP, 0, 500 | CURSOR_DETACHED, 896), "every gate_min at or below 896");
    assert_eq!(w.cursors[0].load(Ordering::Relaxed), 896);
    assert_eq!(w.joins.load(Ordering::Relaxed), 1, "producers rescan");
    // Below a gate_min: detached again, at the position (the log has it).
    w.cursors[0].store(500 | CURSOR_DETACHED, Ordering::Relaxed);
    assert!(!cursors::rejoin_at(&w, CAP, 0, 500 | CURSOR_DETACHED, 800));
    assert_eq!(w.cursors[0].load(Ordering::Relaxed), 800 | CURSOR_DETACHED);
    assert_eq!(w.joins.load(Ordering::Relaxed), 2);
    // More than a capacity behind the producers' tail, or past it: the same.
    w.gate_mins[0].store(0, Ordering::Relaxed);
    w.tail.store(3000, Ordering::Relaxed);
    assert!(!cursors::rejoin_at(&w, CAP, 0, 800 | CURSOR_DETACHED, 800));
    assert_eq!(w.cursors[0].load(Ordering::Relaxed), 800 | CURSOR_DETACHED);
    w.tail.store(700, Ordering::Relaxed);
    assert!(!cursors::rejoin_at(&w, CAP, 0, 800 | CURSOR_DETACHED, 800));
    assert_eq!(w.cursors[0].load(Ordering::Relaxed), 800 | CURSOR_DETACHED);
    // A stale word or an implausible position: nothing changes.
    w.tail.store(1000, Ordering::Relaxed);
    let joins = w.joins.load(Ordering::Relaxed);
    assert!(!cursors::rejoin_at(&w, CAP, 0, 500 | CURSOR_DETACHED, 896));
    assert!(!cursors::rejoin_at(&w, CAP, 0, 800 | CURSOR_DETACHED, 901));
    assert_eq!((w.cursors[0].load(Ordering::Relaxed), w.joins.load(Ordering::Relaxed)), (800 | CURSOR_DETACHED, joins));
}

#[test]
fn confirm_detaches_a_plain_cursor_a_producer_may_be_overwriting() {
    // A reader attaching finds the cursor plain: its predecessor may have died between the
    // compare-and-swap of `rejoin_at` and its confirm.
    let w = spilling();
    w.active.store(0b1, Ordering::Relaxed);
    w.tail.store(1000, Ordering::Relaxed);
    w.gate_mins[1].store(960, Ordering::Relaxed);
    w.cursors[0].store(960, Ordering::Relaxed);
    assert!(cursors::confirm(&w, CAP, 0, 960));
    assert_eq!(w.cursors[0].load(Ordering::Relaxed), 960, "left as it is");
    w.gate_mins[1].store(1000, Ordering::Relaxed);
    assert!(!cursors::confirm(&w, CAP, 0, 960));
    assert_eq!(w.cursors[0].load(Ordering::Relaxed), 960 | CURSOR_DETACHED);
    assert_eq!(w.joins.load(Ordering::Relaxed), 2);
    // Detached by a producer first: the same answer, the word as the producer left it.
    assert!(!cursors::confirm(&w, CAP, 0, 960));
    assert_eq!(w.cursors[0].load(Ordering::Relaxed), 960 | CURSOR_DETACHED);
}

/// A ring holding `n` committed messages of `len` bytes from position 0.
fn ring_with(n: usize, len: usize) -> (Geometry, HeapRegion) {
    let geo = Geometry::new(1 << 16, 512, SALT).unwrap();
    let region = HeapRegion::new(geo.capacity as usize);
    let mut p = spsc::Producer::new(geo, 0, 0).unwrap();
    let (tail, head) = (AtomicU64::new(0), AtomicU64::new(0));
    for i in 0..n {
        p.try_push(&tail, &head, &*region, &[], &vec![i as u8; len]).unwrap();
    }
    (geo, region)
}

#[test]
fn members_claim_consecutive_spans_of_at_most_a_batch() {
    let (geo, region) = ring_with(40, 24);
    let w = Words::new();
    w.active.store(0b10, Ordering::Relaxed);
    let rec = crate::layout::record::size(24);
    let got = cursors::claim(&w, &geo, &*region, 1, w.claim(0), 16, u64::MAX).unwrap();
    assert_eq!(got, Claim::Span(0, 16 * rec));
    assert_eq!(w.claims[0].2.load(Ordering::Relaxed), crate::layout::claim_word(1, crate::layout::CLAIM_HELD));
    let got = cursors::claim(&w, &geo, &*region, 1, w.claim(1), 16, u64::MAX).unwrap();
    assert_eq!(got, Claim::Span(16 * rec, 32 * rec));
    let got = cursors::claim(&w, &geo, &*region, 1, w.claim(2), 16, u64::MAX).unwrap();
    assert_eq!(got, Claim::Span(32 * rec, 40 * rec), "what is there");
    assert_eq!(cursors::claim(&w, &geo, &*region, 1, w.claim(3), 16, u64::MAX).unwrap(), Claim::Nothing);
    assert_eq!(w.claims[3].2.load(Ordering::Relaxed), CLAIM_NONE, "nothing recorded");
    assert_eq!(w.cursors[1].load(Ordering::Relaxed), 40 * rec, "unlocked at the end of the last span");
}

#[test]
fn a_member_finding_its_subscription_detached_rejoins_at_the_producers_position() {
    let (geo, region) = ring_with(4, 24);
    let w = Words::new();
    w.active.store(0b10, Ordering::Relaxed);
    w.tail.store(4 * crate::layout::record::size(24), Ordering::Relaxed);
    w.cursors[1].store(CURSOR_DETACHED, Ordering::Relaxed);
    let got = cursors::claim(&w, &geo, &*region, 1, w.claim(0), 16, u64::MAX).unwrap();
    assert_eq!(got, Claim::Lapped { pos: 0, start: 4 * crate::layout::record::size(24) });
    assert_eq!(w.cursors[1].load(Ordering::Relaxed) & FLAGS, 0, "tethered again");
}

#[test]
fn two_threads_of_members_take_every_message_exactly_once() {
    let n = if cfg!(miri) { 40 } else { 2000 };
    let (geo, region) = ring_with(n, 8);
    let w = Words::new();
    w.active.store(0b10, Ordering::Relaxed);
    let spans: Vec<Vec<(u64, u64)>> = std::thread::scope(|s| {
        let member = |j: usize| {
            let (w, region) = (&w, &region);
            s.spawn(move || {
                let mut mine = Vec::new();
                loop {
                    match cursors::claim(w, &geo, &**region, 1, w.claim(j), 3, u64::MAX).unwrap() {
                        Claim::Span(a, b) => {
                            mine.push((a, b));
                            cursors::release(w.claim(j));
                        }
                        Claim::Nothing => return mine,
                        other => panic!("{other:?}"),
                    }
                }
            })
        };
        let (a, b) = (member(0), member(1));
        vec![a.join().unwrap(), b.join().unwrap()]
    });
    let mut all: Vec<(u64, u64)> = spans.concat();
    all.sort();
    let mut at = 0;
    for (a, b) in all {
        assert_eq!(a, at, "spans are contiguous and disjoint");
        at = b;
    }
    assert_eq!(at, n as u64 * crate::layout::record::size(8));
}

#[test]
fn a_member_finding_its_spilling_subscription_detached_reads_the_log_not_the_tail() {
    let (geo, region) = ring_with(4, 24);
    let mut w = Words::new();
    w.spills[1] = true;
    w.active.store(0b10, Ordering::Relaxed);
    w.tail.store(4 * crate::layout::record::size(24), Ordering::Relaxed);
    w.cursors[1].store(8 | CURSOR_DETACHED, Ordering::Relaxed);
    let got = cursors::claim(&w, &geo, &*region, 1, w.claim(0), 16, u64::MAX).unwrap();
    assert_eq!(got, Claim::Spilled);
    assert_eq!(w.cursors[1].load(Ordering::Relaxed), 8 | CURSOR_DETACHED, "left where it was");
}

#[test]
fn a_dead_members_claim_in_the_way_of_a_spilling_subscription_is_passed_not_dropped() {
    let mut w = Words::new();
    w.spills[1] = true;
    w.windows[1] = cursors::NO_LIMIT;
    w.members[1] = 0b1;
    w.active.store(0b10, Ordering::Relaxed);
    w.cursors[1].store(640, Ordering::Relaxed);
    w.claims[0].0.store(512, Ordering::Relaxed);
    w.claims[0].1.store(640, Ordering::Relaxed);
    w.claims[0].2.store(crate::layout::claim_word(1, crate::layout::CLAIM_HELD), Ordering::Relaxed);
    // Alive: waited for.
    assert_eq!(gate(&w, 0, 1512, 64), 512);
    // Dead: producers pass it (the member that takes it over reads it from the log), and the
    // claim stays for that member.
    w.dead = 1 << 0;
    assert_eq!(gate(&w, 0, 1512, 64), 640, "past the claim, at the cursor");
    assert_eq!(
        w.claims[0].2.load(Ordering::Relaxed),
        crate::layout::claim_word(1, crate::layout::CLAIM_HELD),
        "not dropped"
    );
}

#[test]
fn a_dead_readers_pinned_cursor_in_the_way_is_detached_without_its_pin() {
    let mut w = Words::new();
    w.spills[0] = true;
    w.active.store(0b1, Ordering::Relaxed);
    w.cursors[0].store(512 | CURSOR_PINNED, Ordering::Relaxed);
    assert_eq!(gate(&w, 0, 1536, 64), 512, "alive: waited for");
    w.dead = 1 << 0;
    assert_eq!(gate(&w, 0, 1536, 64), 1536, "dead: nothing holds the producer");
    assert_eq!(w.cursors[0].load(Ordering::Relaxed), 512 | CURSOR_DETACHED, "detached, the pin gone");
}

/// Claim number `seq` of member `j`, recorded claiming `[pos, end)`.
fn recorded(w: &Words, j: usize, seq: u64, pos: u64, end: u64) {
    w.claims[j].0.store(pos, Ordering::Relaxed);
    w.claims[j].1.store(end, Ordering::Relaxed);
    w.claims[j].2.store(claim_word(seq, CLAIM_CLAIMING), Ordering::Relaxed);
}

#[test]
fn a_member_that_loses_the_race_for_a_span_clears_its_claim_and_the_winner_keeps_it() {
    let (geo, region) = ring_with(8, 24);
    let w = Words::new();
    w.active.store(0b10, Ordering::Relaxed);
    let rec = crate::layout::record::size(24);
    // Member 0 saw the cursor at 0; member 1 claims first.
    assert_eq!(cursors::claim(&w, &geo, &*region, 1, w.claim(1), 16, u64::MAX).unwrap(), Claim::Span(0, 8 * rec));
    assert!(!cursors::take(&w, 1, w.claim(0), 0, 8 * rec).unwrap(), "the cursor moved: lost");
    assert_eq!(w.claims[0].2.load(Ordering::Relaxed), claim_word(1, CLAIM_NONE), "cleared, numbered");
    assert_eq!(w.claims[1].2.load(Ordering::Relaxed), claim_word(1, CLAIM_HELD));
    assert_eq!(w.cursors[1].load(Ordering::Relaxed), 8 * rec);
}

#[test]
fn a_claim_left_claiming_was_taken_only_if_the_cursor_is_locked_with_it_or_it_is_held() {
    let w = Words::new();
    w.active.store(0b10, Ordering::Relaxed);
    // Lost the race (died before clearing): the cursor moved past its span without it.
    recorded(&w, 0, 5, 0, 640);
    w.cursors[1].store(640, Ordering::Relaxed);
    let cw = w.claims[0].2.load(Ordering::Relaxed);
    assert!(!cursors::claim_taken(&w, 1, w.claim(0), cw).unwrap(), "another member's span");
    // Never tried: the cursor still at its start.
    w.cursors[1].store(0, Ordering::Relaxed);
    assert!(!cursors::claim_taken(&w, 1, w.claim(0), cw).unwrap());
    // Locked with it (died after the swap): taken, and finished by the asker.
    w.cursors[1].store(cursor_locked(0, 5, false), Ordering::Relaxed);
    assert!(cursors::claim_taken(&w, 1, w.claim(0), cw).unwrap());
    assert_eq!(w.cursors[1].load(Ordering::Relaxed), 640, "unlocked at the claim's end");
    assert_eq!(w.claims[0].2.load(Ordering::Relaxed), claim_word(5, CLAIM_HELD));
    // Locked with an older claim of the same member (no honest writer leaves that): not
    // this claim, and finishing that lock is refused, not done with this claim's end.
    recorded(&w, 0, 6, 640, 960);
    w.cursors[1].store(cursor_locked(0, 5, false), Ordering::Relaxed);
    let cw = w.claims[0].2.load(Ordering::Relaxed);
    assert!(!cursors::claim_taken(&w, 1, w.claim(0), cw).unwrap());
    assert!(matches!(cursors::settled(&w, 1), Err(crate::ring::RingError::Corrupt(_))));
    assert_eq!(w.cursors[1].load(Ordering::Relaxed), cursor_locked(0, 5, false), "left as it was");
}

#[test]
fn a_producer_finishes_a_claim_that_has_the_cursor_locked_and_keeps_a_detached_one_detached() {
    let mut w = Words::new();
    w.active.store(0b10, Ordering::Relaxed);
    w.tail.store(960, Ordering::Relaxed);
    recorded(&w, 2, 9, 320, 640);
    w.members[1] = 0b100;
    w.cursors[1].store(cursor_locked(2, 9, false), Ordering::Relaxed);
    let g = AtomicU64::new(0);
    // The claim holds the producer at its start; the cursor stands at its end.
    assert_eq!(cursors::gate(&w, CAP, 4, 1, &g, 960, 64).unwrap(), 320);
    assert_eq!(w.cursors[1].load(Ordering::Relaxed), 640);
    assert_eq!(w.claims[2].2.load(Ordering::Relaxed), claim_word(9, CLAIM_HELD));
    // In the log of a detached subscription: unlocked detached.
    recorded(&w, 2, 10, 640, 800);
    w.cursors[1].store(cursor_locked(2, 10, true), Ordering::Relaxed);
    assert_eq!(cursors::settled(&w, 1).unwrap(), 800 | CURSOR_DETACHED);
    assert_eq!(cursors::position(&w, cursor_locked(2, 10, true)), 800);
}

#[test]
fn a_claim_still_claiming_below_the_cursor_lost_its_race_and_holds_no_producer() {
    let mut w = Words::new();
    w.active.store(0b10, Ordering::Relaxed);
    w.tail.store(960, Ordering::Relaxed);
    w.members[1] = 0b11;
    w.cursors[1].store(640, Ordering::Relaxed);
    // Member 0 recorded [320, 640) and stopped; member 1 took it (the cursor is past it).
    recorded(&w, 0, 3, 320, 640);
    let g = AtomicU64::new(0);
    assert_eq!(cursors::gate(&w, CAP, 4, 1, &g, 960, 64).unwrap(), 640, "only the cursor holds");
    // The same claim held (taken, being read) holds the producer at its start.
    w.claims[0].2.store(claim_word(3, CLAIM_HELD), Ordering::Relaxed);
    assert_eq!(cursors::gate(&w, CAP, 4, 1, &g, 960, 64).unwrap(), 320);
    // Still claiming at the cursor (about to make its compare-and-swap): it holds too.
    recorded(&w, 0, 4, 640, 800);
    assert_eq!(cursors::gate(&w, CAP, 4, 1, &g, 960, 64).unwrap(), 640);
}

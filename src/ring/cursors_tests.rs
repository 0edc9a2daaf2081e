//! `ring::cursors` over plain memory: the gate with several cursors, a lag-limited cursor
//! detached and rejoined, joins starting above the producers' `gate_min`, members claiming
//! spans, and two threads of members sharing one stream. Runs under Miri like the ring
//! tests (`cargo +nightly miri test --lib ring::`).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use super::cursors::{self, Claim, ClaimWords, Cursors, FLAGS};
use super::{Geometry, HeapRegion, spsc};
use crate::layout::{CLAIM_NONE, CURSOR_DETACHED, CURSOR_JOINING};

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
    claims: [(AtomicU64, AtomicU64, AtomicU32); 4],
    gate_mins: [AtomicU64; 2],
    lapped: AtomicU64,
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
        ClaimWords { pos: &c.0, end: &c.1, state: &c.2 }
    }
    fn gate_mins(&self) -> impl Iterator<Item = &AtomicU64> {
        self.gate_mins.iter()
    }
    fn lapped(&self, _i: usize) {
        self.lapped.fetch_add(1, Ordering::Relaxed);
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
    w.claims[2].2.store(crate::layout::CLAIM_HELD, Ordering::Relaxed);
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

/// A ring holding `n` committed messages of `len` bytes from position 0.
fn ring_with(n: usize, len: usize) -> (Geometry, HeapRegion) {
    let geo = Geometry::new(1 << 16, 512, SALT).unwrap();
    let region = HeapRegion::new(geo.capacity as usize);
    let mut p = spsc::Producer::new(geo, 0, 0).unwrap();
    let (tail, head) = (AtomicU64::new(0), AtomicU64::new(0));
    for i in 0..n {
        p.try_push(&tail, &head, &*region, &vec![i as u8; len]).unwrap();
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
    assert_eq!(w.claims[0].2.load(Ordering::Relaxed), crate::layout::CLAIM_HELD);
    let got = cursors::claim(&w, &geo, &*region, 1, w.claim(1), 16, u64::MAX).unwrap();
    assert_eq!(got, Claim::Span(16 * rec, 32 * rec));
    let got = cursors::claim(&w, &geo, &*region, 1, w.claim(2), 16, u64::MAX).unwrap();
    assert_eq!(got, Claim::Span(32 * rec, 40 * rec), "what is there");
    assert_eq!(cursors::claim(&w, &geo, &*region, 1, w.claim(3), 16, u64::MAX).unwrap(), Claim::Nothing);
    assert_eq!(w.claims[3].2.load(Ordering::Relaxed), CLAIM_NONE, "nothing recorded");
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

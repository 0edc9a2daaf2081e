//! The ring algorithms over a heap buffer: single-threaded behaviour, hostile control words,
//! and two or more threads with std's atomics. Everything here runs under Miri:
//! `cargo +nightly miri test --lib ring::` (counts shrink under `cfg(miri)`).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};

use super::consumer::{Consumer, Record};
use super::{Geometry, HeapRegion, MAX_POSITION, PtrRegion, Region, Reservation, RingError, mpsc, spsc};
use crate::layout::record::{self, KIND_CLAIMED, KIND_MESSAGE, KIND_PADDING, encode};

// ---------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------

/// xorshift64*: deterministic and dependency-free.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform enough in `0..n` (`n > 0`).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, one_in: u64) -> bool {
        self.below(one_in) == 0
    }
}

/// The payload of message `seq` of producer `who`: `len` bytes, all of them checked.
fn payload(who: u8, seq: u64, len: usize) -> Vec<u8> {
    let mut v: Vec<u8> = (0..len)
        .map(|i| (i as u8).wrapping_mul(7) ^ (seq as u8).wrapping_mul(13) ^ who.wrapping_mul(101) ^ 0x5a)
        .collect();
    // Long enough messages carry their identity, so a consumer of many producers knows
    // what to expect.
    if len >= 9 {
        v[0] = who;
        v[1..9].copy_from_slice(&seq.to_le_bytes());
    }
    v
}

/// Scales a count down under Miri, which runs code a few thousand times slower.
fn scaled(n: u64) -> u64 {
    if cfg!(miri) { (n / 100).max(20) } else { n }
}

/// A data region and the three shared control words, as a segment would hold them.
struct Ring {
    geo: Geometry,
    region: HeapRegion,
    tail: AtomicU64,
    head: AtomicU64,
    releasing: AtomicU64,
}

impl Ring {
    fn new(capacity: u64, max_message: u32) -> Ring {
        Ring::with(Geometry::new(capacity, max_message).expect("valid geometry"))
    }

    /// Any geometry, also ones below `MIN_CAPACITY`: the ring algorithms only need a
    /// power of two and `max_message <= capacity / 2`.
    fn with(geo: Geometry) -> Ring {
        Ring {
            geo,
            region: HeapRegion::new(geo.capacity as usize),
            tail: AtomicU64::new(0),
            head: AtomicU64::new(0),
            releasing: AtomicU64::new(0),
        }
    }

    /// Moves the empty ring's positions to `pos` (an honest ring may be anywhere).
    fn at(self, pos: u64) -> Ring {
        self.tail.store(pos, Ordering::Relaxed);
        self.head.store(pos, Ordering::Relaxed);
        self.releasing.store(pos, Ordering::Relaxed);
        self
    }

    fn r(&self) -> &PtrRegion {
        &self.region
    }

    fn word(&self, index: usize) -> u64 {
        self.r().word(index).load(Ordering::Relaxed)
    }

    fn set_word(&self, index: usize, value: u64) {
        self.r().word(index).store(value, Ordering::Relaxed);
    }

    fn bytes(&self, index: usize, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        self.r().read(index, &mut v);
        v
    }

    fn spsc(&self) -> spsc::Producer {
        spsc::Producer::new(self.geo, self.tail.load(Ordering::Relaxed), self.head.load(Ordering::Relaxed))
            .expect("honest positions")
    }

    fn mpsc(&self, slot: u8) -> mpsc::Producer {
        mpsc::Producer::new(self.geo, slot, self.head.load(Ordering::Relaxed)).expect("honest head")
    }

    fn consumer(&self, zero_consumed: bool) -> Consumer {
        Consumer::new(self.geo, self.head.load(Ordering::Relaxed), zero_consumed).expect("honest head")
    }

    /// SPSC: reserve, write, commit, publish.
    fn send_spsc(&self, p: &mut spsc::Producer, msg: &[u8]) -> Result<Reservation, RingError> {
        let res = p.try_reserve(&self.tail, &self.head, self.r(), msg.len() as u32)?;
        self.r().write(res.payload(), msg);
        p.commit(self.r(), res, msg.len() as u32);
        p.publish(&self.tail);
        Ok(res)
    }

    /// MPSC: reserve, write, commit.
    fn send_mpsc(&self, p: &mut mpsc::Producer, msg: &[u8]) -> Result<Reservation, RingError> {
        let res = p.try_reserve(&self.tail, &self.head, self.r(), msg.len() as u32)?;
        self.r().write(res.payload(), msg);
        p.commit(self.r(), res, msg.len() as u32);
        Ok(res)
    }

    fn peek(&self, c: &mut Consumer) -> Result<Option<Record>, RingError> {
        c.peek(self.r(), &self.releasing)
    }

    /// Takes the next message without publishing `head`.
    fn take(&self, c: &mut Consumer) -> Result<Option<Vec<u8>>, RingError> {
        let Some(rec) = self.peek(c)? else { return Ok(None) };
        assert!(rec.payload + rec.len as usize <= self.geo.capacity as usize, "record outside the region");
        let v = self.bytes(rec.payload, rec.len as usize);
        c.release(self.r(), rec, &self.releasing);
        Ok(Some(v))
    }

    /// Takes the next message and publishes `head` (also after skipping padding only).
    fn recv(&self, c: &mut Consumer) -> Result<Option<Vec<u8>>, RingError> {
        let m = self.take(c);
        if c.has_unpublished() {
            c.publish(&self.head);
        }
        m
    }

    fn recv_all(&self, c: &mut Consumer) -> Vec<Vec<u8>> {
        let mut v = Vec::new();
        while let Some(m) = self.recv(c).expect("honest ring") {
            v.push(m);
        }
        v
    }
}

/// Counts a thread out when dropped, panicking or not, so that its peer stops waiting for it
/// (and the test fails on the panic instead of hanging).
struct Leaving<'a>(&'a std::sync::atomic::AtomicUsize);

impl Drop for Leaving<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn corrupt<T: std::fmt::Debug>(r: Result<T, RingError>) -> bool {
    matches!(r, Err(RingError::Corrupt(_)))
}

// ---------------------------------------------------------------------------------------
// Geometry
// ---------------------------------------------------------------------------------------

#[test]
fn geometry_accepts_powers_of_two_and_rejects_the_rest() {
    assert!(Geometry::new(1024, 512).is_some());
    assert!(Geometry::new(1 << 20, 64 << 10).is_some());
    assert!(Geometry::new(1 << 40, 1 << 30).is_some());
    assert!(Geometry::new(1023, 8).is_none(), "not a power of two");
    assert!(Geometry::new(1025, 8).is_none(), "not a power of two");
    assert!(Geometry::new(512, 8).is_none(), "below MIN_CAPACITY");
    assert!(Geometry::new(1 << 41, 8).is_none(), "above MAX_CAPACITY");
    assert!(Geometry::new(1024, 513).is_none(), "max_message above half the capacity");
    assert!(Geometry::new(1 << 40, (1 << 30) + 1).is_none(), "max_message above the limit");
    assert!(Geometry::new(0, 0).is_none());
    assert!(Geometry::new(u64::MAX, 0).is_none());
    let g = Geometry::new(1024, 8).unwrap();
    assert_eq!(g.mask(), 1023);
    assert_eq!(g.index(1024 + 16), 16);
    assert_eq!(g.index(u64::MAX), 1023);
}

// ---------------------------------------------------------------------------------------
// SPSC, one thread
// ---------------------------------------------------------------------------------------

/// Random sizes from 0 to `max_message`, random interleaving of sends and receives, checked
/// against a model queue; `Full` only when the model agrees there is no room.
#[test]
fn spsc_is_fifo_with_random_sizes_including_empty_and_max() {
    for (capacity, max) in [(1024u64, 512u32), (1024, 8), (4096, 1000)] {
        let ring = Ring::new(capacity, max);
        let mut p = ring.spsc();
        let mut c = ring.consumer(false);
        let mut rng = Rng::new(capacity + u64::from(max));
        let mut model: VecDeque<Vec<u8>> = VecDeque::new();
        let mut seq = 0u64;
        let (mut sent, mut fulls) = (0u64, 0u64);
        for _ in 0..scaled(20_000) {
            if rng.below(100) < 55 {
                let len = match rng.below(8) {
                    0 => 0,
                    1 => max as usize,
                    _ => rng.below(u64::from(max) + 1) as usize,
                };
                let msg = payload(1, seq, len);
                // Full exactly when the record, the next header and (at the wrap) the
                // padding do not fit into what the consumer has handed back.
                let used = p.tail() - ring.head.load(Ordering::Relaxed);
                let size = record::size(len as u64);
                let to_end = capacity - (p.tail() % capacity);
                let need = if size > to_end { to_end + size + 8 } else { size + 8 };
                match ring.send_spsc(&mut p, &msg) {
                    Ok(_) => {
                        assert!(used + need <= capacity);
                        model.push_back(msg);
                        seq += 1;
                        sent += 1;
                    }
                    Err(RingError::Full) => {
                        assert!(used + need > capacity, "Full with {used} used, {need} needed");
                        fulls += 1;
                    }
                    Err(e) => panic!("{e:?}"),
                }
            } else {
                let got = ring.recv(&mut c).unwrap();
                assert_eq!(got, model.pop_front());
            }
        }
        assert_eq!(ring.recv_all(&mut c), Vec::from(model));
        assert!(c.is_empty(ring.r()));
        assert!(sent > 0 && (cfg!(miri) || fulls > 0), "sent {sent}, full {fulls}");
    }
}

#[test]
fn spsc_pads_to_the_end_of_the_region_when_a_record_does_not_fit() {
    let ring = Ring::new(1024, 512);
    let mut p = ring.spsc();
    let mut c = ring.consumer(false);
    for i in 0..3 {
        ring.send_spsc(&mut p, &payload(1, i, 296)).unwrap(); // 304 bytes each
    }
    assert_eq!(ring.recv_all(&mut c).len(), 3);
    assert_eq!(p.tail(), 912);
    // 208 bytes do not fit into the 112 left before the end.
    let res = ring.send_spsc(&mut p, &payload(1, 3, 200)).unwrap();
    assert_eq!((res.pos, res.index), (1024, 0));
    assert_eq!(record::decode(ring.word(912)), record::decode(encode(KIND_PADDING, 104, 0)));
    assert_eq!(record::decode(ring.word(0)), record::decode(encode(KIND_MESSAGE, 200, 0)));
    assert_eq!(ring.word(208), 0, "the word at the tail is zero");
    assert_eq!(ring.tail.load(Ordering::Relaxed), 1024 + 208);
    assert_eq!(ring.recv(&mut c).unwrap(), Some(payload(1, 3, 200)));
    assert_eq!(c.head(), 1024 + 208);
}

#[test]
fn spsc_record_that_ends_exactly_at_the_end_needs_no_padding() {
    let ring = Ring::new(1024, 512).at(1024 - 64);
    let mut p = ring.spsc();
    let mut c = ring.consumer(false);
    let res = ring.send_spsc(&mut p, &payload(1, 0, 56)).unwrap();
    assert_eq!(res.index, 960);
    assert_eq!(p.tail(), 1024);
    assert_eq!(ring.word(0), 0, "the next header, at index 0, is zeroed");
    assert_eq!(ring.recv(&mut c).unwrap(), Some(payload(1, 0, 56)));
    let res = ring.send_spsc(&mut p, &payload(1, 1, 1)).unwrap();
    assert_eq!(res.index, 0);
    assert_eq!(ring.recv(&mut c).unwrap(), Some(payload(1, 1, 1)));
}

#[test]
fn spsc_commit_shorter_than_reserved_takes_only_what_was_committed() {
    let ring = Ring::new(1024, 512);
    let mut p = ring.spsc();
    let mut c = ring.consumer(false);
    let res = p.try_reserve(&ring.tail, &ring.head, ring.r(), 100).unwrap();
    ring.r().write(res.payload(), &[0xee; 100]);
    ring.r().write(res.payload(), &payload(1, 0, 40));
    p.commit(ring.r(), res, 40);
    p.publish(&ring.tail);
    assert_eq!(p.tail(), record::size(40));
    assert_eq!(ring.word(48), 0, "the next header is zeroed, whatever the payload held");
    ring.send_spsc(&mut p, &payload(1, 1, 7)).unwrap();
    assert_eq!(ring.recv_all(&mut c), vec![payload(1, 0, 40), payload(1, 1, 7)]);
    // Committing zero bytes of a reservation is an empty message.
    let res = p.try_reserve(&ring.tail, &ring.head, ring.r(), 64).unwrap();
    p.commit(ring.r(), res, 0);
    p.publish(&ring.tail);
    assert_eq!(ring.recv_all(&mut c), vec![Vec::<u8>::new()]);
}

#[test]
fn spsc_abort_is_a_reservation_never_committed() {
    let ring = Ring::new(1024, 512);
    let mut p = ring.spsc();
    let mut c = ring.consumer(false);
    let a = p.try_reserve(&ring.tail, &ring.head, ring.r(), 300).unwrap();
    // Garbage that looks like headers, where the next records will go.
    for i in (a.payload()..a.payload() + 296).step_by(8) {
        ring.set_word(i, encode(KIND_MESSAGE, 8, 0));
    }
    assert_eq!(ring.recv(&mut c).unwrap(), None, "nothing committed");
    let b = ring.send_spsc(&mut p, &payload(1, 0, 10)).unwrap();
    assert_eq!(b.pos, a.pos, "the aborted space is reused");
    assert_eq!(ring.recv_all(&mut c), vec![payload(1, 0, 10)]);
    assert!(c.is_empty(ring.r()));
}

#[test]
fn spsc_is_full_until_the_consumer_publishes() {
    let ring = Ring::new(1024, 512);
    let mut p = ring.spsc();
    let mut c = ring.consumer(false);
    // 64-byte records: 15 of them and the zero header after them fit in 1024 bytes.
    let mut n = 0;
    while ring.send_spsc(&mut p, &payload(1, n, 56)).is_ok() {
        n += 1;
    }
    assert_eq!(n, 15);
    assert_eq!(ring.send_spsc(&mut p, &payload(1, n, 56)), Err(RingError::Full));
    assert_eq!(ring.send_spsc(&mut p, &payload(1, n, 49)), Err(RingError::Full), "64 + 8 > 64 left");
    assert_eq!(ring.take(&mut c).unwrap(), Some(payload(1, 0, 56)));
    assert_eq!(ring.send_spsc(&mut p, &payload(1, n, 56)), Err(RingError::Full), "head not published");
    c.publish(&ring.head);
    ring.send_spsc(&mut p, &payload(1, n, 56)).unwrap();
    let got = ring.recv_all(&mut c);
    assert_eq!(got.len(), 15);
    assert_eq!(got.last(), Some(&payload(1, n, 56)));
}

/// The padding fits but the record after it does not: the padding is published (it is
/// space the consumer can skip), `Full` is returned, and a retry after the consumer moved
/// places the record at index 0.
#[test]
fn spsc_is_full_when_only_the_padding_fits() {
    let ring = Ring::new(1024, 512);
    let mut p = ring.spsc();
    let mut c = ring.consumer(false);
    ring.send_spsc(&mut p, &payload(1, 0, 8)).unwrap(); // 0..16
    ring.send_spsc(&mut p, &payload(1, 1, 440)).unwrap(); // 16..464
    ring.send_spsc(&mut p, &payload(1, 2, 480)).unwrap(); // 464..952
    assert_eq!(ring.recv(&mut c).unwrap(), Some(payload(1, 0, 8)));
    // 112 bytes do not fit into the 72 before the end; the padding (and the header after
    // it) fit into what the consumer freed, the record does not.
    assert_eq!(ring.send_spsc(&mut p, &payload(1, 3, 100)), Err(RingError::Full));
    assert_eq!(ring.tail.load(Ordering::Relaxed), 1024, "the padding is published");
    assert_eq!(record::decode(ring.word(952)).kind, KIND_PADDING);
    assert_eq!(ring.recv(&mut c).unwrap(), Some(payload(1, 1, 440)));
    let res = ring.send_spsc(&mut p, &payload(1, 3, 100)).unwrap();
    assert_eq!(res.index, 0);
    assert_eq!(ring.recv_all(&mut c), vec![payload(1, 2, 480), payload(1, 3, 100)]);
}

#[test]
fn spsc_batch_of_commits_is_published_once() {
    let ring = Ring::new(1024, 512);
    let mut p = ring.spsc();
    let mut c = ring.consumer(false);
    for i in 0..5 {
        let res = p.try_reserve(&ring.tail, &ring.head, ring.r(), 20).unwrap();
        ring.r().write(res.payload(), &payload(1, i, 20));
        p.commit(ring.r(), res, 20);
    }
    assert_eq!(ring.tail.load(Ordering::Relaxed), 0, "not published yet");
    // The consumer polls headers, not `tail`: it sees the records already.
    assert!(!c.is_empty(ring.r()));
    p.publish(&ring.tail);
    assert_eq!(ring.tail.load(Ordering::Relaxed), 5 * 32);
    for i in 0..5 {
        assert_eq!(ring.take(&mut c).unwrap(), Some(payload(1, i, 20)));
    }
    assert!(c.has_unpublished());
    c.publish(&ring.head);
    assert!(!c.has_unpublished());
    assert_eq!(ring.head.load(Ordering::Relaxed), 5 * 32);
}

/// A producer that died after committing records but before publishing `tail`: its
/// successor finds the true end by walking the committed headers.
#[test]
fn spsc_attach_recovers_records_committed_but_not_published() {
    let ring = Ring::new(1024, 512);
    let mut p = ring.spsc();
    ring.send_spsc(&mut p, &payload(1, 0, 3)).unwrap();
    for i in 1..4 {
        let res = p.try_reserve(&ring.tail, &ring.head, ring.r(), 30).unwrap();
        ring.r().write(res.payload(), &payload(1, i, 30));
        p.commit(ring.r(), res, 30);
    }
    // It also reserved and wrote a fifth record but never committed it.
    let res = p.try_reserve(&ring.tail, &ring.head, ring.r(), 30).unwrap();
    ring.r().write(res.payload(), &payload(1, 4, 30));
    let true_tail = p.tail();
    // The producer dies here: only the shared memory is left.
    let shared = ring.tail.load(Ordering::Relaxed);
    assert!(shared < true_tail);
    let mut p2 = spsc::Producer::attach(ring.geo, shared, 0, ring.r()).unwrap();
    assert_eq!(p2.tail(), true_tail);
    ring.send_spsc(&mut p2, &payload(2, 0, 11)).unwrap();
    let mut c = ring.consumer(false);
    let got = ring.recv_all(&mut c);
    let want: Vec<_> = (0..4).map(|i| payload(1, i, if i == 0 { 3 } else { 30 })).chain([payload(2, 0, 11)]).collect();
    assert_eq!(got, want);
}

#[test]
fn spsc_attach_starts_from_head_when_the_consumer_is_ahead_of_the_published_tail() {
    let ring = Ring::new(1024, 512).at(1024 - 48);
    let mut p = ring.spsc();
    let mut c = ring.consumer(false);
    for i in 0..4 {
        // 40 bytes each; the second wraps (padding of 8 at the end... then at 0).
        let res = p.try_reserve(&ring.tail, &ring.head, ring.r(), 32).unwrap();
        ring.r().write(res.payload(), &payload(1, i, 32));
        p.commit(ring.r(), res, 32);
    }
    let true_tail = p.tail();
    // The producer dies here: only the shared memory is left.
    // The wrap published `tail` once (at the padding); the consumer took two records.
    let shared = ring.tail.load(Ordering::Relaxed);
    assert_eq!(shared, 1024);
    assert_eq!(ring.recv(&mut c).unwrap(), Some(payload(1, 0, 32)));
    assert_eq!(ring.recv(&mut c).unwrap(), Some(payload(1, 1, 32)));
    let head = ring.head.load(Ordering::Relaxed);
    assert!(head > shared);
    let mut p2 = spsc::Producer::attach(ring.geo, shared, head, ring.r()).unwrap();
    assert_eq!(p2.tail(), true_tail);
    ring.send_spsc(&mut p2, &payload(2, 0, 0)).unwrap();
    assert_eq!(ring.recv_all(&mut c), vec![payload(1, 2, 32), payload(1, 3, 32), payload(2, 0, 0)]);
}

#[test]
fn spsc_attach_to_an_idle_ring_keeps_its_tail() {
    let ring = Ring::new(1024, 512).at(5000);
    let p = spsc::Producer::attach(ring.geo, 5000, 5000, ring.r()).unwrap();
    assert_eq!(p.tail(), 5000);
}

// ---------------------------------------------------------------------------------------
// Consumer
// ---------------------------------------------------------------------------------------

#[test]
fn consumer_is_empty_looks_through_padding_and_ignores_claims() {
    let ring = Ring::new(1024, 512).at(1024 - 16);
    let mut c = ring.consumer(true);
    assert!(c.is_empty(ring.r()));
    let mut a = ring.mpsc(1);
    let mut b = ring.mpsc(2);
    // 24 bytes do not fit into 16: padding, then the claim at 0.
    let ra = a.try_reserve(&ring.tail, &ring.head, ring.r(), 16).unwrap();
    assert_eq!(ra.index, 0);
    assert!(c.is_empty(ring.r()), "padding then a claim");
    ring.send_mpsc(&mut b, &payload(2, 0, 5)).unwrap();
    assert!(c.is_empty(ring.r()), "a committed record behind a claim is not available");
    assert_eq!(ring.peek(&mut c).unwrap(), None);
    assert_eq!(c.head(), 1024, "peek skipped (and released) the padding");
    assert_eq!(ring.releasing.load(Ordering::Relaxed), 1024);
    ring.r().write(ra.payload(), &payload(1, 0, 16));
    a.commit(ring.r(), ra, 16);
    assert!(!c.is_empty(ring.r()));
    assert_eq!(ring.recv_all(&mut c), vec![payload(1, 0, 16), payload(2, 0, 5)]);
    assert!(c.is_empty(ring.r()));
}

#[test]
fn spsc_consumer_neither_zeroes_nor_announces() {
    let ring = Ring::new(1024, 512);
    let mut p = ring.spsc();
    let mut c = ring.consumer(false);
    ring.send_spsc(&mut p, &payload(1, 0, 16)).unwrap();
    assert_eq!(ring.recv(&mut c).unwrap(), Some(payload(1, 0, 16)));
    assert_eq!(ring.bytes(8, 16), payload(1, 0, 16));
    assert_eq!(ring.releasing.load(Ordering::Relaxed), 0);
}

#[test]
fn mpsc_consumer_zeroes_what_it_consumed_and_announces_it_first() {
    let ring = Ring::new(1024, 512).at(1024 - 40);
    let mut p = ring.mpsc(7);
    let mut c = ring.consumer(true);
    ring.send_mpsc(&mut p, &payload(7, 0, 20)).unwrap(); // 32 bytes at 984
    ring.send_mpsc(&mut p, &payload(7, 1, 20)).unwrap(); // padding of 8 at 1016, then 0..32
    let rec = ring.peek(&mut c).unwrap().unwrap();
    assert_eq!(rec, Record { payload: 992, len: 20, size: 32 });
    c.release(ring.r(), rec, &ring.releasing);
    assert_eq!(ring.releasing.load(Ordering::Relaxed), 1016, "announced");
    assert_eq!(ring.bytes(984, 32), vec![0; 32], "zeroed, header included");
    assert_eq!(ring.head.load(Ordering::Relaxed), 984, "not published yet");
    let rec = ring.peek(&mut c).unwrap().unwrap();
    assert_eq!(rec.payload, 8);
    assert_eq!(ring.releasing.load(Ordering::Relaxed), 1024, "the padding is announced too");
    assert_eq!(ring.word(1016), 0, "and zeroed");
    c.release(ring.r(), rec, &ring.releasing);
    c.publish(&ring.head);
    assert_eq!(ring.head.load(Ordering::Relaxed), 1024 + 32);
    assert_eq!(ring.releasing.load(Ordering::Relaxed), 1024 + 32);
    assert!(ring.bytes(0, 1024).iter().all(|&b| b == 0), "the whole region is zero again");
}

// ---------------------------------------------------------------------------------------
// MPSC, one thread
// ---------------------------------------------------------------------------------------

/// What the test will do with an open reservation.
#[derive(Clone, Debug)]
enum Plan {
    Commit(Vec<u8>),
    Abort,
}

/// Three producers interleaved at random, with short commits, aborts, batches and claims
/// left open for a while: the consumer sees exactly the committed messages, in claim order,
/// and `Full` comes exactly when the claim does not fit.
#[test]
fn mpsc_is_fifo_in_claim_order_with_random_sizes() {
    for (capacity, max) in [(1024u64, 512u32), (1024, 8), (2048, 100)] {
        let ring = Ring::new(capacity, max);
        let mut producers: Vec<mpsc::Producer> = (1..=3).map(|s| ring.mpsc(s)).collect();
        let mut seqs = [0u64; 3];
        let mut c = ring.consumer(true);
        let mut rng = Rng::new(capacity ^ u64::from(max));
        let mut open: Vec<(usize, Reservation, Plan)> = Vec::new();
        // Every claim in position order, with the message it delivers (None: aborted).
        let mut model: VecDeque<(u64, Option<Vec<u8>>)> = VecDeque::new();
        let (mut received, mut fulls) = (0, 0);
        for _ in 0..scaled(20_000) {
            let w = rng.below(3) as usize;
            match rng.below(10) {
                0..=4 => {
                    let len = match rng.below(8) {
                        0 => 0,
                        1 => max,
                        _ => rng.below(u64::from(max) + 1) as u32,
                    };
                    let used = ring.tail.load(Ordering::Relaxed) - ring.head.load(Ordering::Relaxed);
                    let size = record::size(u64::from(len));
                    let to_end = capacity - ring.tail.load(Ordering::Relaxed) % capacity;
                    let need = if size > to_end { to_end + size } else { size };
                    let msg = payload(w as u8, seqs[w], len as usize);
                    match producers[w].try_reserve(&ring.tail, &ring.head, ring.r(), len) {
                        Ok(res) => {
                            assert!(used + need <= capacity);
                            assert_eq!(res.len, len);
                            seqs[w] += 1;
                            let plan = match rng.below(6) {
                                0 => Plan::Abort,
                                1 => Plan::Commit(msg[..rng.below(u64::from(len) + 1) as usize].to_vec()),
                                _ => Plan::Commit(msg.clone()),
                            };
                            // An aborted reservation may have been written anyway.
                            ring.r().write(res.payload(), &msg);
                            model
                                .push_back((res.pos, if let Plan::Commit(m) = &plan { Some(m.clone()) } else { None }));
                            open.push((w, res, plan));
                        }
                        Err(RingError::Full) => {
                            assert!(used + need > capacity, "Full with {used} used, {need} needed");
                            fulls += 1;
                        }
                        Err(e) => panic!("{e:?}"),
                    }
                }
                5 => {
                    // A batch of 1 to 4 messages from one producer.
                    let lens: Vec<u32> = (0..1 + rng.below(4)).map(|_| rng.below(u64::from(max) + 1) as u32).collect();
                    match producers[w].try_reserve_many(&ring.tail, &ring.head, ring.r(), lens.iter().copied()) {
                        Ok((first, n)) => {
                            assert!(n >= 1 && n <= lens.len());
                            assert_eq!(first.len, lens[0]);
                            let (mut pos, mut index) = (first.pos, first.index);
                            for &len in &lens[..n] {
                                let res = Reservation { pos, index, len };
                                let msg = payload(w as u8, seqs[w], len as usize);
                                seqs[w] += 1;
                                ring.r().write(res.payload(), &msg);
                                model.push_back((pos, Some(msg.clone())));
                                open.push((w, res, Plan::Commit(msg)));
                                pos += record::size(u64::from(len));
                                index += record::size(u64::from(len)) as usize;
                            }
                        }
                        Err(RingError::Full) => fulls += 1,
                        Err(e) => panic!("{e:?}"),
                    }
                }
                6 | 7 if !open.is_empty() => {
                    // Finish one open reservation, not necessarily the oldest.
                    let (w, res, plan) = open.swap_remove(rng.below(open.len() as u64) as usize);
                    match plan {
                        Plan::Commit(m) => producers[w].commit(ring.r(), res, m.len() as u32),
                        Plan::Abort => producers[w].abort(ring.r(), res),
                    }
                }
                _ => {
                    if let Some(got) = ring.recv(&mut c).unwrap() {
                        loop {
                            let (pos, want) = model.pop_front().expect("a message the model knows");
                            assert!(open.iter().all(|o| o.1.pos != pos), "passed a reservation still open");
                            if let Some(want) = want {
                                assert_eq!(got, want);
                                received += 1;
                                break;
                            }
                        }
                    }
                }
            }
        }
        for (w, res, plan) in open.drain(..) {
            match plan {
                Plan::Commit(m) => producers[w].commit(ring.r(), res, m.len() as u32),
                Plan::Abort => producers[w].abort(ring.r(), res),
            }
        }
        let rest: Vec<Vec<u8>> = model.into_iter().filter_map(|(_, m)| m).collect();
        assert_eq!(ring.recv_all(&mut c), rest);
        assert!(received > 0 && (cfg!(miri) || fulls > 0), "received {received}, full {fulls}");
        assert!(c.is_empty(ring.r()));
        assert_eq!(c.head(), ring.tail.load(Ordering::Relaxed));
    }
}

#[test]
fn mpsc_later_commit_waits_for_an_earlier_claim() {
    let ring = Ring::new(1024, 512);
    let (mut a, mut b) = (ring.mpsc(1), ring.mpsc(2));
    let mut c = ring.consumer(true);
    let ra = a.try_reserve(&ring.tail, &ring.head, ring.r(), 10).unwrap();
    assert_eq!(record::decode(ring.word(0)), record::Decoded { kind: KIND_CLAIMED, len: 10, slot: 1 });
    ring.send_mpsc(&mut b, &payload(2, 0, 10)).unwrap();
    assert_eq!(ring.recv(&mut c).unwrap(), None);
    ring.r().write(ra.payload(), &payload(1, 0, 10));
    a.commit(ring.r(), ra, 10);
    assert_eq!(ring.recv_all(&mut c), vec![payload(1, 0, 10), payload(2, 0, 10)]);
}

#[test]
fn mpsc_short_commit_and_abort_leave_padding_the_consumer_skips() {
    let ring = Ring::new(1024, 512);
    let (mut a, mut b) = (ring.mpsc(1), ring.mpsc(2));
    let mut c = ring.consumer(true);
    let ra = a.try_reserve(&ring.tail, &ring.head, ring.r(), 100).unwrap(); // 112 bytes
    let rb = b.try_reserve(&ring.tail, &ring.head, ring.r(), 50).unwrap();
    ring.send_mpsc(&mut a, &payload(1, 1, 1)).unwrap();
    ring.r().write(ra.payload(), &payload(1, 0, 30));
    a.commit(ring.r(), ra, 30);
    assert_eq!(record::decode(ring.word(40)), record::Decoded { kind: KIND_PADDING, len: 64, slot: 1 });
    b.abort(ring.r(), rb);
    assert_eq!(record::decode(ring.word(112)), record::Decoded { kind: KIND_PADDING, len: 56, slot: 2 });
    assert_eq!(ring.recv_all(&mut c), vec![payload(1, 0, 30), payload(1, 1, 1)]);
    assert_eq!(c.head(), 112 + 64 + 16);
    // Aborting a zero-length reservation, and committing zero of 8 bytes.
    let r0 = a.try_reserve(&ring.tail, &ring.head, ring.r(), 0).unwrap();
    a.abort(ring.r(), r0);
    let r8 = a.try_reserve(&ring.tail, &ring.head, ring.r(), 8).unwrap();
    a.commit(ring.r(), r8, 0);
    assert_eq!(ring.recv_all(&mut c), vec![Vec::<u8>::new()]);
    assert!(c.is_empty(ring.r()));
}

#[test]
fn mpsc_pads_at_the_wrap_with_the_claimants_slot() {
    let ring = Ring::new(1024, 512).at(1024 - 24);
    let mut p = ring.mpsc(9);
    let mut c = ring.consumer(true);
    let res = ring.send_mpsc(&mut p, &payload(9, 0, 17)).unwrap(); // 32 > 24
    assert_eq!((res.pos, res.index), (1024, 0));
    assert_eq!(record::decode(ring.word(1000)), record::Decoded { kind: KIND_PADDING, len: 16, slot: 9 });
    assert_eq!(ring.tail.load(Ordering::Relaxed), 1024 + 32);
    assert_eq!(ring.recv_all(&mut c), vec![payload(9, 0, 17)]);
}

#[test]
fn mpsc_is_full_at_exactly_the_capacity_and_frees_after_publish() {
    let ring = Ring::new(1024, 512);
    let mut p = ring.mpsc(1);
    let mut c = ring.consumer(true);
    // MPSC needs no spare header: 16 records of 64 bytes fill 1024.
    let mut n = 0;
    while ring.send_mpsc(&mut p, &payload(1, n, 56)).is_ok() {
        n += 1;
    }
    assert_eq!(n, 16);
    assert_eq!(ring.send_mpsc(&mut p, &payload(1, n, 0)), Err(RingError::Full));
    assert_eq!(ring.take(&mut c).unwrap(), Some(payload(1, 0, 56)));
    assert_eq!(ring.send_mpsc(&mut p, &payload(1, n, 0)), Err(RingError::Full), "head not published");
    c.publish(&ring.head);
    // A fresh producer has a stale cache of head: it re-reads it.
    let mut q = ring.mpsc(2);
    let mut q_stale = mpsc::Producer::new(ring.geo, 2, 0).unwrap();
    ring.send_mpsc(&mut q, &payload(2, 0, 56)).unwrap();
    assert_eq!(ring.send_mpsc(&mut q_stale, &payload(2, 1, 0)), Err(RingError::Full));
    let got = ring.recv_all(&mut c);
    assert_eq!(got.len(), 16);
    assert_eq!(got.last(), Some(&payload(2, 0, 56)));
}

#[test]
fn mpsc_batch_claims_what_fits_and_commits_in_any_order() {
    let ring = Ring::new(1024, 512).at(1024 - 96);
    let mut p = ring.mpsc(3);
    let mut c = ring.consumer(true);
    let lens = [10u32, 20, 0, 30, 40];
    // 24 + 32 + 8 + 40 = 104 > 96: three fit before the end.
    let (first, n) = p.try_reserve_many(&ring.tail, &ring.head, ring.r(), lens.iter().copied()).unwrap();
    assert_eq!((first.pos, first.index, first.len, n), (1024 - 96, 928, 10, 3));
    assert_eq!(ring.tail.load(Ordering::Relaxed), 1024 - 96 + 64);
    let mut res = Vec::new();
    let (mut pos, mut index) = (first.pos, first.index);
    for (i, &len) in lens[..n].iter().enumerate() {
        let r = Reservation { pos, index, len };
        assert_eq!(ring.word(index), 0, "batch records are not marked claimed");
        ring.r().write(r.payload(), &payload(3, i as u64, len as usize));
        res.push(r);
        pos += record::size(u64::from(len));
        index += record::size(u64::from(len)) as usize;
    }
    for r in res.iter().rev().take(2) {
        p.commit(ring.r(), *r, r.len);
    }
    assert_eq!(ring.recv(&mut c).unwrap(), None, "the first is not committed yet");
    p.commit(ring.r(), res[0], res[0].len);
    // The rest: the first of them does not fit before the end (32 bytes left), so the
    // single-record path pads and claims it alone at 0.
    let (first, n) = p.try_reserve_many(&ring.tail, &ring.head, ring.r(), lens[3..].iter().copied()).unwrap();
    assert_eq!((first.index, n), (0, 1));
    ring.r().write(first.payload(), &payload(3, 3, 30));
    p.commit(ring.r(), first, 30);
    let (second, n) = p.try_reserve_many(&ring.tail, &ring.head, ring.r(), lens[4..].iter().copied()).unwrap();
    assert_eq!((second.index, n), (40, 1));
    ring.r().write(second.payload(), &payload(3, 4, 40));
    p.commit(ring.r(), second, 40);
    let want: Vec<_> = lens.iter().enumerate().map(|(i, &l)| payload(3, i as u64, l as usize)).collect();
    assert_eq!(ring.recv_all(&mut c), want);
}

#[test]
fn mpsc_batch_is_limited_by_the_free_space_and_full_when_none_fits() {
    let ring = Ring::new(1024, 512);
    let mut p = ring.mpsc(1);
    let mut c = ring.consumer(true);
    let big = [504u32, 504, 504]; // 512 bytes each
    let (_, n) = p.try_reserve_many(&ring.tail, &ring.head, ring.r(), big.iter().copied()).unwrap();
    assert_eq!(n, 2);
    assert_eq!(p.try_reserve_many(&ring.tail, &ring.head, ring.r(), big.iter().copied()), Err(RingError::Full));
    assert_eq!(p.try_reserve_many(&ring.tail, &ring.head, ring.r(), std::iter::empty()), Err(RingError::Full));
    for (i, index) in [0usize, 512].into_iter().enumerate() {
        let r = Reservation { pos: index as u64, index, len: 504 };
        ring.r().write(r.payload(), &payload(1, i as u64, 504));
        p.commit(ring.r(), r, 504);
    }
    assert_eq!(ring.recv(&mut c).unwrap(), Some(payload(1, 0, 504)));
    let (first, n) = p.try_reserve_many(&ring.tail, &ring.head, ring.r(), [8u32, 504].into_iter()).unwrap();
    assert_eq!((first.index, n), (0, 1), "the second would not fit");
    p.abort(ring.r(), first);
    assert_eq!(ring.recv_all(&mut c), vec![payload(1, 1, 504)]);
}

// ---------------------------------------------------------------------------------------
// Hostile control words
// ---------------------------------------------------------------------------------------

/// Headers no honest producer writes, at the consumer's position: each is `Corrupt` or
/// harmless (nothing yet / a message within bounds), and `is_empty` answers without hanging.
#[test]
fn consumer_reports_hostile_headers_as_corrupt() {
    let max = 64u32;
    let cases: &[(usize, u64, Option<bool>)] = &[
        // (index, word, Some(true) = Corrupt, Some(false) = a message, None = nothing yet)
        (0, encode(4, 0, 0), Some(true)),
        (0, encode(0xff, 8, 0xff), Some(true)),
        (0, u64::MAX, Some(true)),
        (0, 0x0000_0001_0000_0000 | 0xffff_ffff, None), // claimed, absurd length
        (0, encode(KIND_MESSAGE, max + 1, 0), Some(true)),
        (0, encode(KIND_MESSAGE, u32::MAX, 0), Some(true)),
        (1024 - 8, encode(KIND_MESSAGE, 1, 0), Some(true)), // straddles the end
        (1024 - 16, encode(KIND_MESSAGE, 9, 0), Some(true)), // 24 > 16
        (1024 - 16, encode(KIND_MESSAGE, 8, 0), Some(false)), // exactly to the end
        (1024 - 8, encode(KIND_MESSAGE, 0, 0), Some(false)),
        (0, encode(KIND_PADDING, 3, 0), Some(true)),
        (0, encode(KIND_PADDING, 1024, 0), Some(true)), // 8 + 1024 past the end
        (1024 - 16, encode(KIND_PADDING, 16, 0), Some(true)),
        (0, encode(KIND_PADDING, !7u32, 0), Some(true)),
        (0, encode(KIND_PADDING, u32::MAX, 0), Some(true)),
        (0, encode(KIND_MESSAGE, 8, 200) | 0xffff << 48, Some(false)), // reserved bits: ignored
    ];
    for &(index, word, want) in cases {
        for zero_consumed in [false, true] {
            let ring = Ring::new(1024, max).at(4096 + index as u64);
            ring.set_word(index, word);
            let mut c = ring.consumer(zero_consumed);
            let _ = c.is_empty(ring.r());
            let got = ring.peek(&mut c);
            match want {
                Some(true) => assert!(corrupt(got), "{word:#x} at {index}: {got:?}"),
                Some(false) => {
                    let rec = got.unwrap().unwrap();
                    assert!(rec.payload + rec.len as usize <= 1024);
                    c.release(ring.r(), rec, &ring.releasing);
                }
                None => assert_eq!(got, Ok(None)),
            }
        }
    }
}

#[test]
fn consumer_stops_walking_endless_padding() {
    let ring = Ring::new(1024, 64);
    for i in (0..1024).step_by(8) {
        ring.set_word(i, encode(KIND_PADDING, 0, 0));
    }
    assert!(ring.consumer(false).is_empty(ring.r()), "gives up after a lap of padding");
    let mut c = ring.consumer(false);
    assert_eq!(ring.peek(&mut c), Err(RingError::Corrupt("endless padding")));
    // The MPSC consumer zeroes each padding record it passes: after one lap it finds an
    // empty header, which is harmless.
    let mut c = ring.consumer(true);
    assert_eq!(ring.peek(&mut c), Ok(None));
    assert_eq!(c.head(), 1024);
}

#[test]
fn consumer_rejects_an_unaligned_position() {
    let geo = Geometry::new(1024, 64).unwrap();
    for head in [1, 7, 1025, u64::MAX] {
        assert!(corrupt(Consumer::new(geo, head, false)), "{head}");
    }
}

#[test]
fn spsc_producer_rejects_hostile_positions() {
    let geo = Geometry::new(1024, 64).unwrap();
    let bad: &[(u64, u64)] = &[
        (0, 8),               // head above tail
        (0, u64::MAX),        // head above tail
        (1025, 0),            // tail - head > capacity
        (2048, 1016),         // capacity + 8
        (!7u64, 0),           // far past the capacity
        (4, 0),               // unaligned tail
        (1023, 0),            // capacity - 1, unaligned
        (u64::MAX, u64::MAX), // unaligned
    ];
    for &(tail, head) in bad {
        assert!(corrupt(spsc::Producer::new(geo, tail, head)), "tail {tail} head {head}");
    }
    for &(tail, head) in &[(1024u64, 0u64), (0, 0), (4096, 4096 - 1024)] {
        assert!(spsc::Producer::new(geo, tail, head).is_ok(), "tail {tail} head {head}");
    }
}

/// `head` changes under a working producer: it is read only when the ring looks full, and
/// then checked against the private `tail`.
#[test]
fn spsc_producer_reports_a_hostile_head_when_it_reads_it() {
    for hostile in [u64::MAX, 4096, 8192 + 8, 520, 1, 0] {
        let ring = Ring::new(1024, 64);
        let mut p = ring.spsc();
        for i in 0..8 {
            ring.send_spsc(&mut p, &payload(1, i, 56)).unwrap(); // 512 bytes in all
        }
        ring.head.store(hostile, Ordering::Relaxed);
        let mut outcome = Ok(());
        for i in 8..40 {
            if let Err(e) = ring.send_spsc(&mut p, &payload(1, i, 56)) {
                outcome = Err(e);
                break;
            }
        }
        match hostile {
            // Above the private tail, or unaligned: rejected when read.
            u64::MAX | 4096 | 8200 | 1 => assert!(corrupt(outcome), "{hostile}: {outcome:?}"),
            // Below it, within a capacity, aligned: believed (a stale-looking head only
            // costs room).
            _ => assert_eq!(outcome, Err(RingError::Full), "{hostile}"),
        }
    }
}

#[test]
fn spsc_attach_rejects_hostile_positions_and_headers() {
    let geo = Geometry::new(1024, 64).unwrap();
    let ring = Ring::with(geo);
    for (tail, head) in [(4u64, 0u64), (0, 4), (2048, 1016), (1023, 0), (u64::MAX, 0), (0, u64::MAX), (!7u64, 0)] {
        assert!(corrupt(spsc::Producer::attach(geo, tail, head, ring.r())), "tail {tail} head {head}");
    }
    let headers = [
        encode(4, 0, 0),
        u64::MAX,
        encode(KIND_CLAIMED, 8, 1), // not an SPSC kind
        encode(KIND_MESSAGE, 65, 0),
        encode(KIND_MESSAGE, u32::MAX, 0),
        encode(KIND_PADDING, 5, 0),
        encode(KIND_PADDING, 2048, 0),
    ];
    for word in headers {
        let ring = Ring::with(geo);
        ring.set_word(64, word);
        assert!(corrupt(spsc::Producer::attach(geo, 64, 64, ring.r())), "{word:#x}");
    }
    // Near the end, records that straddle it.
    let ring = Ring::with(geo);
    ring.set_word(1016, encode(KIND_MESSAGE, 8, 0));
    assert!(corrupt(spsc::Producer::attach(geo, 1016, 0, ring.r())));
    ring.set_word(1016, encode(KIND_PADDING, 8, 0));
    assert!(corrupt(spsc::Producer::attach(geo, 1016, 0, ring.r())));
    // Valid-looking records all the way round: more than a capacity of them.
    let ring = Ring::with(geo);
    for i in (0..1024).step_by(8) {
        ring.set_word(i, encode(KIND_MESSAGE, 0, 0));
    }
    assert!(corrupt(spsc::Producer::attach(geo, 0, 0, ring.r())));
    assert!(corrupt(spsc::Producer::attach(geo, 512, 0, ring.r())));
    let ring = Ring::with(geo);
    for i in (0..1024).step_by(8) {
        ring.set_word(i, encode(KIND_PADDING, 0, 0));
    }
    assert!(corrupt(spsc::Producer::attach(geo, 8, 0, ring.r())));
}

#[test]
fn mpsc_producer_reports_a_hostile_tail() {
    let geo = Geometry::new(1024, 64).unwrap();
    for hostile in [4u64, 1023, 1025, 1024 + 8, u64::MAX, !7u64, 1 << 63] {
        let ring = Ring::with(geo).at(0);
        let mut p = ring.mpsc(1);
        ring.tail.store(hostile, Ordering::Relaxed);
        assert!(corrupt(ring.send_mpsc(&mut p, &payload(1, 0, 8))), "tail {hostile}");
        let got = p.try_reserve_many(&ring.tail, &ring.head, ring.r(), [8u32, 8].into_iter());
        assert!(corrupt(got), "tail {hostile}: {got:?}");
    }
    // `tail` moved backwards under a producer whose cached head is ahead of it.
    let ring = Ring::with(geo).at(4096);
    let mut p = ring.mpsc(1);
    ring.tail.store(4000, Ordering::Relaxed);
    assert!(corrupt(ring.send_mpsc(&mut p, &payload(1, 0, 8))));
}

#[test]
fn mpsc_producer_reports_a_hostile_head() {
    let geo = Geometry::new(1024, 64).unwrap();
    // Moved backwards after the producer saw a larger value.
    let ring = Ring::with(geo).at(2048);
    let mut p = ring.mpsc(1);
    ring.head.store(0, Ordering::Relaxed);
    ring.tail.store(2048 + 1024, Ordering::Relaxed); // looks full: head is re-read
    assert!(corrupt(ring.send_mpsc(&mut p, &payload(1, 0, 8))));
    // Ahead of the tail: believed once, then the ring looks overfull.
    for hostile in [3072 + 8, 2048 + 4096, u64::MAX / 4] {
        let ring = Ring::with(geo).at(2048);
        let mut p = ring.mpsc(1);
        ring.tail.store(2048 + 1024, Ordering::Relaxed);
        ring.head.store(hostile, Ordering::Relaxed);
        assert!(corrupt(ring.send_mpsc(&mut p, &payload(1, 0, 8))), "head {hostile}");
    }
}

/// Positions that no ring reaches honestly, as a hostile writer can leave them for the
/// next participant to attach to: at or above `MAX_POSITION` they are refused, below it the
/// arithmetic on them has room to spare (no overflow: a panic in debug builds, a wrap in
/// release builds).
#[test]
fn positions_near_the_top_of_the_range_are_refused_or_harmless() {
    let geo = Geometry::new(1024, 64).unwrap();
    let top = !7u64;
    for pos in [top, top - 1024, 1 << 63, MAX_POSITION, MAX_POSITION + 8, MAX_POSITION - 8, MAX_POSITION - 1024] {
        let refused = pos >= MAX_POSITION;
        let ring = Ring::with(geo).at(pos);
        ring.set_word(geo.index(pos), encode(KIND_MESSAGE, 0, 0));
        match Consumer::new(geo, pos, true) {
            Ok(mut c) => {
                assert!(!refused);
                assert_eq!(ring.recv(&mut c), Ok(Some(vec![])));
                assert_eq!(c.head(), pos + 8);
            }
            Err(e) => assert!(refused, "{pos}: {e:?}"),
        }
        assert_eq!(corrupt(spsc::Producer::attach(geo, pos, pos, ring.r())), refused);
        assert!(corrupt(spsc::Producer::attach(geo, pos, 0, ring.r())));
        assert_eq!(corrupt(spsc::Producer::attach(geo, 0, pos, ring.r())), refused);
        assert_eq!(corrupt(mpsc::Producer::new(geo, 1, pos)), refused);

        let ring = Ring::with(geo).at(pos);
        match spsc::Producer::new(geo, pos, pos) {
            Ok(mut p) => {
                assert!(!refused);
                for i in 0..300 {
                    // An honest ring that reaches MAX_POSITION is refused there too.
                    if let Err(e) = ring.send_spsc(&mut p, &payload(1, i, 8)) {
                        assert!(corrupt::<()>(Err(e)) && p.tail() + 32 >= MAX_POSITION, "{pos}: {e:?}");
                        break;
                    }
                    ring.head.store(p.tail(), Ordering::Relaxed);
                }
            }
            Err(e) => assert!(refused, "{pos}: {e:?}"),
        }
        // MPSC: a producer attached at a sane head finds the hostile tail.
        let ring = Ring::with(geo).at(pos);
        let mut p = mpsc::Producer::new(geo, 1, if refused { 0 } else { pos }).unwrap();
        for i in 0..300 {
            let near_the_top = |ring: &Ring| ring.tail.load(Ordering::Relaxed) + 64 >= MAX_POSITION;
            match ring.send_mpsc(&mut p, &payload(1, i, 8)) {
                Ok(_) => assert!(!refused),
                Err(e) => {
                    assert!(corrupt::<()>(Err(e)) && (refused || near_the_top(&ring)), "{pos}: {e:?}");
                    break;
                }
            }
            match p.try_reserve_many(&ring.tail, &ring.head, ring.r(), [8u32, 16].into_iter()) {
                Ok((first, n)) => {
                    p.abort(ring.r(), first);
                    if n == 2 {
                        p.abort(ring.r(), Reservation { pos: first.pos + 16, index: first.index + 16, len: 16 });
                    }
                }
                Err(e) => {
                    assert!(corrupt::<()>(Err(e)) && near_the_top(&ring), "{pos}: {e:?}");
                    break;
                }
            }
            ring.head.store(ring.tail.load(Ordering::Relaxed), Ordering::Relaxed);
        }
    }
}

/// Random garbage in headers and positions, then every operation: the only assertions are
/// that nothing panics or leaves the region, and that a record handed out lies inside it.
#[test]
fn random_garbage_never_panics() {
    let geo = Geometry::new(1024, 256).unwrap();
    let mut rng = Rng::new(0xbad);
    let edge = |rng: &mut Rng| -> u64 {
        match rng.below(12) {
            0 => 0,
            1 => 8,
            2 => 1024 - 8,
            3 => 1024,
            4 => 1024 + 8,
            5 => 1023,
            6 => 1025,
            7 => u64::MAX,
            8 => !7u64,
            9 => 1 << 63,
            10 => rng.below(1 << 20) & !7,
            _ => rng.next(),
        }
    };
    let garbage = |rng: &mut Rng| -> u64 {
        let kind = match rng.below(6) {
            0 => rng.below(256),
            k => (k - 1).min(3),
        };
        let len = match rng.below(5) {
            0 => rng.next() as u32,
            1 => rng.below(300) as u32 & !7,
            2 => 0,
            _ => rng.below(300) as u32,
        };
        encode(kind, len, rng.below(256) as u8) | if rng.chance(8) { rng.next() << 48 } else { 0 }
    };
    for _ in 0..scaled(3000) {
        let ring = Ring::with(geo);
        for _ in 0..rng.below(40) {
            ring.set_word(rng.below(128) as usize * 8, garbage(&mut rng));
        }
        let (tail, head) = if rng.chance(2) {
            let h = edge(&mut rng);
            (h.wrapping_add(rng.below(1100) & !7), h)
        } else {
            (edge(&mut rng), edge(&mut rng))
        };
        ring.tail.store(tail, Ordering::Relaxed);
        ring.head.store(head, Ordering::Relaxed);
        let zero = rng.chance(2);
        if let Ok(mut c) = Consumer::new(geo, head, zero) {
            let _ = c.is_empty(ring.r());
            for _ in 0..4 {
                match ring.recv(&mut c) {
                    Ok(Some(_)) => {}
                    _ => break,
                }
            }
        }
        let garble = |ring: &Ring, rng: &mut Rng| {
            if rng.chance(3) {
                ring.head.store(edge(rng), Ordering::Relaxed);
            }
            if rng.chance(3) {
                ring.tail.store(edge(rng), Ordering::Relaxed);
            }
        };
        if let Ok(mut p) = spsc::Producer::attach(geo, tail, head, ring.r()) {
            for i in 0..4 {
                let _ = ring.send_spsc(&mut p, &payload(1, i, rng.below(257) as usize));
                garble(&ring, &mut rng);
            }
        }
        let Ok(mut p) = mpsc::Producer::new(geo, 1, edge(&mut rng)) else { continue };
        for i in 0..4 {
            let len = rng.below(257) as u32;
            match p.try_reserve(&ring.tail, &ring.head, ring.r(), len) {
                Ok(res) => {
                    assert!(res.payload() + len as usize <= 1024);
                    ring.r().write(res.payload(), &payload(1, i, len as usize));
                    if rng.chance(2) { p.commit(ring.r(), res, len) } else { p.abort(ring.r(), res) }
                }
                Err(_) => garble(&ring, &mut rng),
            }
            let lens = [rng.below(257) as u32, rng.below(257) as u32];
            if let Ok((first, n)) = p.try_reserve_many(&ring.tail, &ring.head, ring.r(), lens.iter().copied()) {
                let (mut pos, mut index) = (first.pos, first.index);
                for &len in &lens[..n] {
                    let res = Reservation { pos, index, len };
                    assert!(res.payload() + len as usize <= 1024);
                    p.commit(ring.r(), res, len);
                    pos += record::size(u64::from(len));
                    index += record::size(u64::from(len)) as usize;
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Threads (std atomics; Miri checks the data races)
// ---------------------------------------------------------------------------------------

#[test]
fn spsc_two_threads_deliver_everything_in_order() {
    let n = scaled(50_000);
    let ring = Ring::new(1024, 200);
    let lens = |rng: &mut Rng| match rng.below(10) {
        0 => 0,
        1 => 200,
        _ => rng.below(201) as usize,
    };
    let live = std::sync::atomic::AtomicUsize::new(1);
    std::thread::scope(|s| {
        s.spawn(|| {
            let _leaving = Leaving(&live);
            let mut p = ring.spsc();
            let mut sizes = Rng::new(42);
            let mut rng = Rng::new(43);
            let mut unpublished = 0;
            for seq in 0..n {
                let len = lens(&mut sizes);
                let msg = payload(1, seq, len);
                // Sometimes reserve more than is committed.
                let extra = if rng.chance(4) { rng.below(200 - len as u64 + 1) as u32 } else { 0 };
                let res = loop {
                    match p.try_reserve(&ring.tail, &ring.head, ring.r(), len as u32 + extra) {
                        Ok(res) => break res,
                        Err(RingError::Full) => {
                            p.publish(&ring.tail);
                            std::thread::yield_now()
                        }
                        Err(e) => panic!("{e:?}"),
                    }
                };
                ring.r().write(res.payload(), &msg);
                p.commit(ring.r(), res, len as u32);
                unpublished += 1;
                // Publish in batches of 1 to 4.
                if unpublished > rng.below(4) {
                    p.publish(&ring.tail);
                    unpublished = 0;
                }
            }
            p.publish(&ring.tail);
        });
        s.spawn(|| {
            let mut c = ring.consumer(false);
            let mut sizes = Rng::new(42);
            let mut batch = Rng::new(7);
            let mut seq = 0;
            while seq < n {
                match ring.take(&mut c).unwrap() {
                    Some(got) => {
                        let len = lens(&mut sizes);
                        assert_eq!(got, payload(1, seq, len), "message {seq}");
                        seq += 1;
                        if batch.chance(3) {
                            c.publish(&ring.head);
                        }
                    }
                    None => {
                        c.publish(&ring.head);
                        if live.load(Ordering::SeqCst) == 0 && ring.peek(&mut c).unwrap().is_none() {
                            panic!("the producer stopped after {seq} of {n} messages");
                        }
                        std::thread::yield_now();
                    }
                }
            }
            c.publish(&ring.head);
            assert!(c.is_empty(ring.r()));
        });
    });
}

/// Three producers (one sending batches, one committing short and aborting) and a
/// consumer: each producer's messages arrive intact, in its order, none lost or doubled.
#[test]
fn mpsc_three_producers_and_a_consumer_deliver_everything() {
    let per = scaled(20_000);
    let ring = Ring::new(1024, 120);
    let live = std::sync::atomic::AtomicUsize::new(3);
    std::thread::scope(|s| {
        for who in 0u8..3 {
            let (ring, live) = (&ring, &live);
            s.spawn(move || {
                let _leaving = Leaving(live);
                let mut p = ring.mpsc(who + 1);
                let mut rng = Rng::new(u64::from(who) + 100);
                let mut seq = 0;
                while seq < per {
                    let len = 9 + rng.below(112) as u32;
                    let outcome = match who {
                        0 => {
                            let lens: Vec<u32> = (0..1 + rng.below(4).min(per - seq - 1))
                                .map(|i| if i == 0 { len } else { 9 + rng.below(112) as u32 })
                                .collect();
                            p.try_reserve_many(&ring.tail, &ring.head, ring.r(), lens.iter().copied()).map(
                                |(first, n)| {
                                    let (mut pos, mut index) = (first.pos, first.index);
                                    for &len in &lens[..n] {
                                        let res = Reservation { pos, index, len };
                                        ring.r().write(res.payload(), &payload(who, seq, len as usize));
                                        p.commit(ring.r(), res, len);
                                        seq += 1;
                                        pos += record::size(u64::from(len));
                                        index += record::size(u64::from(len)) as usize;
                                    }
                                },
                            )
                        }
                        _ => p.try_reserve(&ring.tail, &ring.head, ring.r(), len).map(|res| {
                            if who == 2 && rng.chance(5) {
                                ring.r().write(res.payload(), &payload(who, u64::MAX, len as usize));
                                p.abort(ring.r(), res);
                                return;
                            }
                            let short = if who == 2 { 9 + rng.below(u64::from(len) - 8) as u32 } else { len };
                            ring.r().write(res.payload(), &payload(who, seq, short as usize));
                            p.commit(ring.r(), res, short);
                            seq += 1;
                        }),
                    };
                    match outcome {
                        Ok(()) => {}
                        Err(RingError::Full) => std::thread::yield_now(),
                        Err(e) => panic!("{e:?}"),
                    }
                }
            });
        }
        s.spawn(|| {
            let mut c = ring.consumer(true);
            let mut next = [0u64; 3];
            let mut total = 0;
            while total < 3 * per {
                match ring.take(&mut c).unwrap() {
                    Some(got) => {
                        let who = got[0];
                        let seq = u64::from_le_bytes(got[1..9].try_into().unwrap());
                        assert!(who < 3, "unknown producer {who}");
                        assert_eq!(seq, next[who as usize], "producer {who}: lost, doubled or reordered");
                        assert_eq!(got, payload(who, seq, got.len()), "producer {who} message {seq}");
                        next[who as usize] += 1;
                        total += 1;
                        if total % 3 == 0 {
                            c.publish(&ring.head);
                        }
                    }
                    None => {
                        if c.has_unpublished() {
                            c.publish(&ring.head);
                        }
                        if live.load(Ordering::SeqCst) == 0 && ring.peek(&mut c).unwrap().is_none() {
                            panic!("the producers stopped after {next:?} of {per} messages each");
                        }
                        std::thread::yield_now();
                    }
                }
            }
            // Padding after the last message (a short commit, an abort) is skipped here.
            assert_eq!(ring.recv(&mut c), Ok(None));
            assert_eq!(next, [per; 3]);
            assert!(c.is_empty(ring.r()));
        });
    });
    // Everything consumed was zeroed, so the region holds only zeros.
    assert!(ring.bytes(0, 1024).iter().all(|&b| b == 0));
}

//! The ring algorithms over a heap buffer: single-threaded behaviour, hostile control words,
//! and two or more threads with std's atomics. Everything here runs under Miri:
//! `cargo +nightly miri test --lib ring::` (counts shrink under `cfg(miri)`).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};

use super::consumer::{Consumer, Record};
use super::reclaim::{Claim, Outcome, reclaim};
use super::{Geometry, HeapRegion, MAX_POSITION, PtrRegion, Region, Reservation, RingError, mpsc, spsc};
use crate::layout::record::{self, KIND_MESSAGE, KIND_PAD_END, KIND_PADDING, KIND_RECLAIMING};

/// The salt of the test rings: any value with its low 3 bits clear.
const SALT: u64 = 0x1f2e_3d4c_5b6a_7980;

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

/// A data region, the shared positions and the producers' claim records, as a segment
/// would hold them.
struct Ring {
    geo: Geometry,
    region: HeapRegion,
    tail: AtomicU64,
    head: AtomicU64,
    claims: [(AtomicU64, AtomicU64); 4],
}

impl Ring {
    fn new(capacity: u64, max_message: u32) -> Ring {
        Ring::with(Geometry::new(capacity, max_message, SALT).expect("valid geometry"))
    }

    /// Any geometry, also ones below `MIN_CAPACITY`: the ring algorithms only need a
    /// power of two and `max_message <= capacity / 2`.
    fn with(geo: Geometry) -> Ring {
        Ring {
            geo,
            region: HeapRegion::new(geo.capacity as usize),
            tail: AtomicU64::new(0),
            head: AtomicU64::new(0),
            claims: Default::default(),
        }
    }

    /// Producer `slot`'s claim record (slots 0..4 in these tests).
    fn mine(&self, slot: usize) -> mpsc::ClaimWords<'_> {
        mpsc::ClaimWords { pos: &self.claims[slot].0, end: &self.claims[slot].1 }
    }

    /// The claim records as a reader copies them.
    fn claim_list(&self) -> Vec<Claim> {
        self.claims
            .iter()
            .enumerate()
            .map(|(slot, (p, e))| Claim { slot, pos: p.load(Ordering::Relaxed), end: e.load(Ordering::Relaxed) })
            .filter(|c| c.end != 0)
            .collect()
    }

    /// The stamp of a record of `kind` at `pos`.
    fn stamp(&self, pos: u64, kind: u64) -> u64 {
        self.geo.stamp(pos, kind)
    }

    /// Moves the empty ring's positions to `pos` (an honest ring may be anywhere).
    fn at(self, pos: u64) -> Ring {
        self.tail.store(pos, Ordering::Relaxed);
        self.head.store(pos, Ordering::Relaxed);
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

    fn mpsc(&self) -> mpsc::Producer {
        mpsc::Producer::new(self.geo, self.head.load(Ordering::Relaxed)).expect("honest head")
    }

    fn consumer(&self) -> Consumer {
        Consumer::new(self.geo, self.head.load(Ordering::Relaxed)).expect("honest head")
    }

    /// SPSC: reserve, write, commit, publish.
    fn send_spsc(&self, p: &mut spsc::Producer, msg: &[u8]) -> Result<Reservation, RingError> {
        let res = p.try_reserve(&self.tail, &self.head, self.r(), msg.len() as u32)?;
        self.r().write(res.payload(), msg);
        p.commit(self.r(), res, msg.len() as u32)?;
        p.publish(&self.tail);
        Ok(res)
    }

    /// MPSC (as producer slot 0): reserve, write, commit.
    fn send_mpsc(&self, p: &mut mpsc::Producer, msg: &[u8]) -> Result<Reservation, RingError> {
        self.send_mpsc_as(p, 0, msg)
    }

    /// MPSC as producer `slot`: reserve, write, commit.
    fn send_mpsc_as(&self, p: &mut mpsc::Producer, slot: usize, msg: &[u8]) -> Result<Reservation, RingError> {
        let res = self.reserve_mpsc(p, slot, msg.len() as u32)?;
        self.r().write(res.payload(), msg);
        p.commit(self.r(), res, msg.len() as u32)?;
        Ok(res)
    }

    /// MPSC as producer `slot`: reserve only.
    fn reserve_mpsc(&self, p: &mut mpsc::Producer, slot: usize, len: u32) -> Result<Reservation, RingError> {
        p.try_reserve(&self.tail, &self.head, self.mine(slot), self.r(), len)
    }

    fn peek(&self, c: &mut Consumer) -> Result<Option<Record>, RingError> {
        c.peek(self.r())
    }

    /// Takes the next message without publishing `head`.
    fn take(&self, c: &mut Consumer) -> Result<Option<Vec<u8>>, RingError> {
        let Some(rec) = self.peek(c)? else { return Ok(None) };
        assert!(rec.payload + rec.len as usize <= self.geo.capacity as usize, "record outside the region");
        let v = self.bytes(rec.payload, rec.len as usize);
        c.release(rec);
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
    assert!(Geometry::new(1024, 512, SALT).is_some());
    assert!(Geometry::new(1 << 20, 64 << 10, SALT).is_some());
    assert!(Geometry::new(1 << 40, 1 << 30, SALT).is_some());
    assert!(Geometry::new(1023, 8, SALT).is_none(), "not a power of two");
    assert!(Geometry::new(1025, 8, SALT).is_none(), "not a power of two");
    assert!(Geometry::new(512, 8, SALT).is_none(), "below MIN_CAPACITY");
    assert!(Geometry::new(1 << 41, 8, SALT).is_none(), "above MAX_CAPACITY");
    assert!(Geometry::new(1024, 513, SALT).is_none(), "max_message above half the capacity");
    assert!(Geometry::new(1 << 40, (1 << 30) + 1, SALT).is_none(), "max_message above the limit");
    assert!(Geometry::new(0, 0, SALT).is_none());
    assert!(Geometry::new(u64::MAX, 0, SALT).is_none());
    assert!(Geometry::new(1024, 8, SALT | 4).is_none(), "salt with kind bits");
    let g = Geometry::new(1024, 8, SALT).unwrap();
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
        let mut c = ring.consumer();
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
                // Full exactly when the record (and at the wrap the padding before it) does
                // not fit into what the consumer has handed back.
                let used = p.tail() - ring.head.load(Ordering::Relaxed);
                let size = record::size(len as u64);
                let to_end = capacity - (p.tail() % capacity);
                let need = if size > to_end { to_end + size } else { size };
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
    let mut c = ring.consumer();
    for i in 0..3 {
        ring.send_spsc(&mut p, &payload(1, i, 288)).unwrap(); // 304 bytes each
    }
    assert_eq!(ring.recv_all(&mut c).len(), 3);
    assert_eq!(p.tail(), 912);
    // 216 bytes do not fit into the 112 left before the end.
    let res = ring.send_spsc(&mut p, &payload(1, 3, 200)).unwrap();
    assert_eq!((res.pos, res.index), (1024, 0));
    assert_eq!(ring.word(912), ring.stamp(912, KIND_PAD_END));
    assert_eq!(ring.word(0), ring.stamp(1024, KIND_MESSAGE));
    assert_eq!(record::decode_info(ring.word(8)), (200, 216));
    assert_eq!(ring.tail.load(Ordering::Relaxed), 1024 + 216);
    assert_eq!(ring.recv(&mut c).unwrap(), Some(payload(1, 3, 200)));
    assert_eq!(c.head(), 1024 + 216);
}

/// The last 8 bytes of the region cannot hold a 16-byte header: the wrap padding there is
/// a stamp alone.
#[test]
fn spsc_pads_the_last_eight_bytes_with_a_stamp_alone() {
    let ring = Ring::new(1024, 512).at(1024 - 8);
    let mut p = ring.spsc();
    let mut c = ring.consumer();
    let res = ring.send_spsc(&mut p, &payload(1, 0, 0)).unwrap();
    assert_eq!((res.pos, res.index), (1024, 0));
    assert_eq!(ring.word(1016), ring.stamp(1016, KIND_PAD_END));
    assert_eq!(ring.recv_all(&mut c), vec![Vec::<u8>::new()]);
    assert_eq!(c.head(), 1024 + 16);
}

#[test]
fn spsc_record_that_ends_exactly_at_the_end_needs_no_padding() {
    let ring = Ring::new(1024, 512).at(1024 - 64);
    let mut p = ring.spsc();
    let mut c = ring.consumer();
    let res = ring.send_spsc(&mut p, &payload(1, 0, 48)).unwrap();
    assert_eq!(res.index, 960);
    assert_eq!(p.tail(), 1024);
    assert_eq!(ring.recv(&mut c).unwrap(), Some(payload(1, 0, 48)));
    let res = ring.send_spsc(&mut p, &payload(1, 1, 1)).unwrap();
    assert_eq!(res.index, 0);
    assert_eq!(ring.recv(&mut c).unwrap(), Some(payload(1, 1, 1)));
}

#[test]
fn spsc_commit_shorter_than_reserved_takes_only_what_was_committed() {
    let ring = Ring::new(1024, 512);
    let mut p = ring.spsc();
    let mut c = ring.consumer();
    let res = p.try_reserve(&ring.tail, &ring.head, ring.r(), 100).unwrap();
    ring.r().write(res.payload(), &[0xee; 100]);
    ring.r().write(res.payload(), &payload(1, 0, 40));
    p.commit(ring.r(), res, 40).unwrap();
    p.publish(&ring.tail);
    assert_eq!(p.tail(), record::size(40));
    ring.send_spsc(&mut p, &payload(1, 1, 7)).unwrap();
    assert_eq!(ring.recv_all(&mut c), vec![payload(1, 0, 40), payload(1, 1, 7)]);
    // Committing zero bytes of a reservation is an empty message.
    let res = p.try_reserve(&ring.tail, &ring.head, ring.r(), 64).unwrap();
    p.commit(ring.r(), res, 0).unwrap();
    p.publish(&ring.tail);
    assert_eq!(ring.recv_all(&mut c), vec![Vec::<u8>::new()]);
}

/// A commit that is not of the producer's current reservation (a stale one, one committed
/// twice, one longer than reserved) is refused and moves nothing, in release builds too.
#[test]
fn spsc_commit_of_a_stale_reservation_is_refused_and_moves_nothing() {
    let ring = Ring::new(1024, 512);
    let mut p = ring.spsc();
    let mut c = ring.consumer();
    let stale = p.try_reserve(&ring.tail, &ring.head, ring.r(), 16).unwrap();
    ring.send_spsc(&mut p, &payload(1, 0, 1)).unwrap(); // reuses the same space
    let tail = p.tail();
    assert!(matches!(p.commit(ring.r(), stale, 16), Err(RingError::Misuse(_))));
    assert_eq!(p.tail(), tail, "the position did not move backwards");
    let res = p.try_reserve(&ring.tail, &ring.head, ring.r(), 8).unwrap();
    assert!(matches!(p.commit(ring.r(), res, 9), Err(RingError::Misuse(_))));
    ring.r().write(res.payload(), &payload(1, 1, 8));
    p.commit(ring.r(), res, 8).unwrap();
    assert!(matches!(p.commit(ring.r(), res, 8), Err(RingError::Misuse(_))), "committed twice");
    p.publish(&ring.tail);
    assert_eq!(ring.recv_all(&mut c), vec![payload(1, 0, 1), payload(1, 1, 8)]);
}

#[test]
fn spsc_abort_is_a_reservation_never_committed() {
    let ring = Ring::new(1024, 512);
    let mut p = ring.spsc();
    let mut c = ring.consumer();
    let a = p.try_reserve(&ring.tail, &ring.head, ring.r(), 300).unwrap();
    // Garbage that looks like records of other positions, where the next records will go.
    for i in (a.index..a.payload() + 296).step_by(8) {
        ring.set_word(i, ring.stamp(i as u64 + 1024, KIND_MESSAGE));
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
    let mut c = ring.consumer();
    // 64-byte records: exactly 16 fill 1024 bytes (no spare header is needed).
    let mut n = 0;
    while ring.send_spsc(&mut p, &payload(1, n, 48)).is_ok() {
        n += 1;
    }
    assert_eq!(n, 16);
    assert_eq!(ring.send_spsc(&mut p, &payload(1, n, 0)), Err(RingError::Full));
    assert_eq!(ring.take(&mut c).unwrap(), Some(payload(1, 0, 48)));
    assert_eq!(ring.send_spsc(&mut p, &payload(1, n, 48)), Err(RingError::Full), "head not published");
    c.publish(&ring.head);
    ring.send_spsc(&mut p, &payload(1, n, 48)).unwrap();
    let got = ring.recv_all(&mut c);
    assert_eq!(got.len(), 16);
    assert_eq!(got.last(), Some(&payload(1, n, 48)));
}

/// The padding fits but the record after it does not: the padding is published (it is
/// space the consumer can skip), `Full` is returned, and a retry after the consumer moved
/// places the record at index 0.
#[test]
fn spsc_is_full_when_only_the_padding_fits() {
    let ring = Ring::new(1024, 512);
    let mut p = ring.spsc();
    let mut c = ring.consumer();
    ring.send_spsc(&mut p, &payload(1, 0, 8)).unwrap(); // 0..24
    ring.send_spsc(&mut p, &payload(1, 1, 440)).unwrap(); // 24..480
    ring.send_spsc(&mut p, &payload(1, 2, 464)).unwrap(); // 480..960
    assert_eq!(ring.recv(&mut c).unwrap(), Some(payload(1, 0, 8)));
    // 120 bytes do not fit into the 64 before the end; the padding fits into what the
    // consumer freed, the record does not.
    assert_eq!(ring.send_spsc(&mut p, &payload(1, 3, 100)), Err(RingError::Full));
    assert_eq!(ring.tail.load(Ordering::Relaxed), 1024, "the padding is published");
    assert_eq!(ring.word(960), ring.stamp(960, KIND_PAD_END));
    assert_eq!(ring.recv(&mut c).unwrap(), Some(payload(1, 1, 440)));
    let res = ring.send_spsc(&mut p, &payload(1, 3, 100)).unwrap();
    assert_eq!(res.index, 0);
    assert_eq!(ring.recv_all(&mut c), vec![payload(1, 2, 464), payload(1, 3, 100)]);
}

/// `max_message = capacity / 2` streams forever: every record fits once the consumer has
/// passed the padding before it, whatever the phase of the ring.
#[test]
fn spsc_and_mpsc_stream_forever_at_the_largest_message() {
    for len in [512u32, 504, 496, 8, 0] {
        let ring = Ring::new(1024, 512);
        let mut p = ring.spsc();
        let mut c = ring.consumer();
        let mut q = ring.mpsc();
        for i in 0..scaled(300) {
            let msg = payload(1, i, [len as usize, 504, 512][i as usize % 3]);
            let sent = if i % 2 == 0 { ring.send_spsc(&mut p, &msg).map(|_| ()) } else { Err(RingError::Full) };
            let mut sent = sent;
            for _ in 0..3 {
                if sent.is_ok() {
                    break;
                }
                assert_eq!(sent, Err(RingError::Full));
                ring.recv_all(&mut c); // the consumer passes the padding and publishes
                sent = ring.send_spsc(&mut p, &msg).map(|_| ());
            }
            sent.unwrap_or_else(|e| panic!("message {i} of {len}: {e:?}"));
            assert_eq!(ring.recv_all(&mut c), vec![msg]);
        }
        // The same with an MPSC producer on a fresh ring.
        let ring = Ring::new(1024, 512);
        let mut c = ring.consumer();
        for i in 0..scaled(300) {
            let msg = payload(2, i, [len as usize, 504, 512][i as usize % 3]);
            let mut sent = ring.send_mpsc(&mut q, &msg).map(|_| ());
            for _ in 0..3 {
                if sent.is_ok() {
                    break;
                }
                ring.recv_all(&mut c);
                q = ring.mpsc();
                sent = ring.send_mpsc(&mut q, &msg).map(|_| ());
            }
            sent.unwrap_or_else(|e| panic!("mpsc message {i} of {len}: {e:?}"));
            assert_eq!(ring.recv_all(&mut c), vec![msg]);
        }
    }
}

#[test]
fn spsc_batch_of_commits_is_published_once() {
    let ring = Ring::new(1024, 512);
    let mut p = ring.spsc();
    let mut c = ring.consumer();
    for i in 0..5 {
        let res = p.try_reserve(&ring.tail, &ring.head, ring.r(), 16).unwrap();
        ring.r().write(res.payload(), &payload(1, i, 16));
        p.commit(ring.r(), res, 16).unwrap();
    }
    assert_eq!(ring.tail.load(Ordering::Relaxed), 0, "not published yet");
    // The consumer reads stamps, not `tail`: it sees the records already.
    assert!(!c.is_empty(ring.r()));
    p.publish(&ring.tail);
    assert_eq!(ring.tail.load(Ordering::Relaxed), 5 * 32);
    for i in 0..5 {
        assert_eq!(ring.take(&mut c).unwrap(), Some(payload(1, i, 16)));
    }
    assert!(c.has_unpublished());
    c.publish(&ring.head);
    assert!(!c.has_unpublished());
    assert_eq!(ring.head.load(Ordering::Relaxed), 5 * 32);
}

/// A producer that died after committing records but before publishing `tail`: its
/// successor finds the true end by walking the stamped records.
#[test]
fn spsc_attach_recovers_records_committed_but_not_published() {
    let ring = Ring::new(1024, 512);
    let mut p = ring.spsc();
    ring.send_spsc(&mut p, &payload(1, 0, 3)).unwrap();
    for i in 1..4 {
        let res = p.try_reserve(&ring.tail, &ring.head, ring.r(), 30).unwrap();
        ring.r().write(res.payload(), &payload(1, i, 30));
        p.commit(ring.r(), res, 30).unwrap();
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
    let mut c = ring.consumer();
    let got = ring.recv_all(&mut c);
    let want: Vec<_> = (0..4).map(|i| payload(1, i, if i == 0 { 3 } else { 30 })).chain([payload(2, 0, 11)]).collect();
    assert_eq!(got, want);
}

#[test]
fn spsc_attach_starts_from_head_when_the_consumer_is_ahead_of_the_published_tail() {
    let ring = Ring::new(1024, 512).at(1024 - 56);
    let mut p = ring.spsc();
    let mut c = ring.consumer();
    for i in 0..4 {
        // 48 bytes each; the second wraps (padding of 8 at the end, then at 0).
        let res = p.try_reserve(&ring.tail, &ring.head, ring.r(), 32).unwrap();
        ring.r().write(res.payload(), &payload(1, i, 32));
        p.commit(ring.r(), res, 32).unwrap();
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

/// A full ring: the stamp at `tail`'s index is the one of the record at `head`, a lap
/// earlier; the walk stops there.
#[test]
fn spsc_attach_to_a_full_ring_stops_at_the_capacity() {
    let ring = Ring::new(1024, 512);
    let mut p = ring.spsc();
    while ring.send_spsc(&mut p, &payload(1, 0, 48)).is_ok() {}
    assert_eq!(p.tail(), 1024);
    let p2 = spsc::Producer::attach(ring.geo, 0, 0, ring.r()).unwrap();
    assert_eq!(p2.tail(), 1024);
}

// ---------------------------------------------------------------------------------------
// Consumer
// ---------------------------------------------------------------------------------------

#[test]
fn consumer_is_empty_looks_through_padding_and_ignores_claims() {
    let ring = Ring::new(1024, 512).at(1024 - 16);
    let mut c = ring.consumer();
    assert!(c.is_empty(ring.r()));
    let mut a = ring.mpsc();
    let mut b = ring.mpsc();
    // 32 bytes do not fit into 16: padding, then the claim at 0.
    let ra = ring.reserve_mpsc(&mut a, 1, 16).unwrap();
    assert_eq!(ra.index, 0);
    assert!(c.is_empty(ring.r()), "padding then a claim");
    ring.send_mpsc_as(&mut b, 2, &payload(2, 0, 5)).unwrap();
    assert!(c.is_empty(ring.r()), "a committed record behind a claim is not available");
    assert_eq!(ring.peek(&mut c).unwrap(), None);
    assert_eq!(c.head(), 1024, "peek skipped the padding");
    assert!(c.has_unpublished(), "and the caller should publish that");
    ring.r().write(ra.payload(), &payload(1, 0, 16));
    a.commit(ring.r(), ra, 16).unwrap();
    assert!(!c.is_empty(ring.r()));
    assert_eq!(ring.recv_all(&mut c), vec![payload(1, 0, 16), payload(2, 0, 5)]);
    assert!(c.is_empty(ring.r()));
}

/// The consumer writes nothing into the region: consumed bytes stay as they were, and
/// a second reader at the same position reads the same messages (what subscriptions need).
#[test]
fn consumers_write_nothing_and_two_readers_see_the_same_records() {
    let ring = Ring::new(1024, 512);
    let mut p = ring.mpsc();
    let mut c = ring.consumer();
    let mut d = ring.consumer();
    for i in 0..40 {
        ring.send_mpsc(&mut p, &payload(1, i, 40)).unwrap();
        let before = ring.bytes(0, 1024);
        assert_eq!(ring.take(&mut c).unwrap(), Some(payload(1, i, 40)));
        assert_eq!(ring.bytes(0, 1024), before, "the consumer changed the region");
        assert_eq!(ring.take(&mut d).unwrap(), Some(payload(1, i, 40)));
        c.publish(&ring.head);
    }
}

/// A record of an earlier lap at the consumer's position is not taken: its stamp names
/// another position.
#[test]
fn consumer_never_takes_a_record_of_an_earlier_lap() {
    let ring = Ring::new(1024, 512);
    let mut p = ring.spsc();
    let mut c = ring.consumer();
    for i in 0..16 {
        ring.send_spsc(&mut p, &payload(1, i, 48)).unwrap();
    }
    assert_eq!(ring.recv_all(&mut c).len(), 16);
    // The consumer is at 1024, index 0, where the record of position 0 still lies.
    assert_eq!(ring.word(0), ring.stamp(0, KIND_MESSAGE));
    assert_eq!(ring.peek(&mut c), Ok(None));
    assert!(c.is_empty(ring.r()));
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
        let mut producers: Vec<mpsc::Producer> = (0..3).map(|_| ring.mpsc()).collect();
        let mut seqs = [0u64; 3];
        let mut c = ring.consumer();
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
                    match ring.reserve_mpsc(&mut producers[w], w, len) {
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
                    let got = producers[w].try_reserve_many(
                        &ring.tail,
                        &ring.head,
                        ring.mine(w),
                        ring.r(),
                        lens.iter().copied(),
                    );
                    match got {
                        Ok((mut pos, n)) => {
                            assert!(n >= 1 && n <= lens.len());
                            for &len in &lens[..n] {
                                let res = producers[w].reservation_at(ring.r(), pos, len);
                                let msg = payload(w as u8, seqs[w], len as usize);
                                seqs[w] += 1;
                                ring.r().write(res.payload(), &msg);
                                model.push_back((pos, Some(msg.clone())));
                                open.push((w, res, Plan::Commit(msg)));
                                pos += record::size(u64::from(len));
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
                        Plan::Commit(m) => producers[w].commit(ring.r(), res, m.len() as u32).unwrap(),
                        Plan::Abort => producers[w].abort(ring.r(), res).unwrap(),
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
                Plan::Commit(m) => producers[w].commit(ring.r(), res, m.len() as u32).unwrap(),
                Plan::Abort => producers[w].abort(ring.r(), res).unwrap(),
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
    let (mut a, mut b) = (ring.mpsc(), ring.mpsc());
    let mut c = ring.consumer();
    let ra = ring.reserve_mpsc(&mut a, 1, 10).unwrap();
    assert_eq!(
        (ring.claims[1].0.load(Ordering::Relaxed), ring.claims[1].1.load(Ordering::Relaxed)),
        (0, 32),
        "the claim is recorded in the producer's slot"
    );
    ring.send_mpsc_as(&mut b, 2, &payload(2, 0, 10)).unwrap();
    assert_eq!(ring.recv(&mut c).unwrap(), None);
    ring.r().write(ra.payload(), &payload(1, 0, 10));
    a.commit(ring.r(), ra, 10).unwrap();
    assert_eq!(ring.recv_all(&mut c), vec![payload(1, 0, 10), payload(2, 0, 10)]);
}

#[test]
fn mpsc_short_commit_and_abort_are_skipped() {
    let ring = Ring::new(1024, 512);
    let (mut a, mut b) = (ring.mpsc(), ring.mpsc());
    let mut c = ring.consumer();
    let ra = ring.reserve_mpsc(&mut a, 1, 100).unwrap(); // 120 bytes
    let rb = ring.reserve_mpsc(&mut b, 2, 50).unwrap(); // 72 bytes
    ring.send_mpsc_as(&mut a, 1, &payload(1, 1, 1)).unwrap();
    ring.r().write(ra.payload(), &payload(1, 0, 30));
    a.commit(ring.r(), ra, 30).unwrap();
    assert_eq!(record::decode_info(ring.word(8)), (30, 120), "the record keeps its reserved size");
    b.abort(ring.r(), rb).unwrap();
    assert_eq!(ring.word(120), ring.stamp(120, KIND_PADDING));
    assert_eq!(record::decode_info(ring.word(128)), (0, 72));
    assert_eq!(ring.recv_all(&mut c), vec![payload(1, 0, 30), payload(1, 1, 1)]);
    assert_eq!(c.head(), 120 + 72 + 24);
    // Aborting a zero-length reservation, and committing zero of 8 bytes.
    let r0 = ring.reserve_mpsc(&mut a, 1, 0).unwrap();
    a.abort(ring.r(), r0).unwrap();
    let r8 = ring.reserve_mpsc(&mut a, 1, 8).unwrap();
    a.commit(ring.r(), r8, 0).unwrap();
    assert_eq!(ring.recv_all(&mut c), vec![Vec::<u8>::new()]);
    assert!(c.is_empty(ring.r()));
    assert!(matches!(a.commit(ring.r(), r8, 9), Err(RingError::Misuse(_))));
}

#[test]
fn mpsc_pads_at_the_wrap() {
    let ring = Ring::new(1024, 512).at(1024 - 24);
    let mut p = ring.mpsc();
    let mut c = ring.consumer();
    let res = ring.send_mpsc(&mut p, &payload(9, 0, 17)).unwrap(); // 40 > 24
    assert_eq!((res.pos, res.index), (1024, 0));
    assert_eq!(ring.word(1000), ring.stamp(1000, KIND_PAD_END));
    assert_eq!(ring.tail.load(Ordering::Relaxed), 1024 + 40);
    assert_eq!(ring.recv_all(&mut c), vec![payload(9, 0, 17)]);
}

#[test]
fn mpsc_is_full_at_exactly_the_capacity_and_frees_after_publish() {
    let ring = Ring::new(1024, 512);
    let mut p = ring.mpsc();
    let mut c = ring.consumer();
    let mut n = 0;
    while ring.send_mpsc(&mut p, &payload(1, n, 48)).is_ok() {
        n += 1;
    }
    assert_eq!(n, 16);
    assert_eq!(ring.send_mpsc(&mut p, &payload(1, n, 0)), Err(RingError::Full));
    assert_eq!(ring.take(&mut c).unwrap(), Some(payload(1, 0, 48)));
    assert_eq!(ring.send_mpsc(&mut p, &payload(1, n, 0)), Err(RingError::Full), "head not published");
    c.publish(&ring.head);
    // A fresh producer has a stale cache of head: it re-reads it.
    let mut q = ring.mpsc();
    let mut q_stale = mpsc::Producer::new(ring.geo, 0).unwrap();
    ring.send_mpsc_as(&mut q, 2, &payload(2, 0, 48)).unwrap();
    assert_eq!(ring.send_mpsc_as(&mut q_stale, 3, &payload(2, 1, 0)), Err(RingError::Full));
    let got = ring.recv_all(&mut c);
    assert_eq!(got.len(), 16);
    assert_eq!(got.last(), Some(&payload(2, 0, 48)));
}

#[test]
fn mpsc_batch_claims_what_fits_and_commits_in_any_order() {
    let ring = Ring::new(1024, 512).at(1024 - 96);
    let mut p = ring.mpsc();
    let mut c = ring.consumer();
    let lens = [10u32, 16, 0, 30, 40];
    // 32 + 32 + 16 + 48 = 128 > 96: three fit before the end.
    let (first, n) = p.try_reserve_many(&ring.tail, &ring.head, ring.mine(3), ring.r(), lens.iter().copied()).unwrap();
    assert_eq!((first, n), (1024 - 96, 3));
    assert_eq!(ring.tail.load(Ordering::Relaxed), 1024 - 96 + 80);
    assert_eq!(ring.claims[3].1.load(Ordering::Relaxed), 1024 - 96 + 80, "one claim record for the batch");
    let mut res = Vec::new();
    let mut pos = first;
    for (i, &len) in lens[..n].iter().enumerate() {
        let r = p.reservation_at(ring.r(), pos, len);
        ring.r().write(r.payload(), &payload(3, i as u64, len as usize));
        res.push(r);
        pos += record::size(u64::from(len));
    }
    for r in res.iter().rev().take(2) {
        p.commit(ring.r(), *r, r.len).unwrap();
    }
    assert_eq!(ring.recv(&mut c).unwrap(), None, "the first is not committed yet");
    p.commit(ring.r(), res[0], res[0].len).unwrap();
    // The rest: the first of them does not fit before the end (16 bytes left), so the
    // single-record path pads and claims it alone at 0.
    let (first, n) =
        p.try_reserve_many(&ring.tail, &ring.head, ring.mine(3), ring.r(), lens[3..].iter().copied()).unwrap();
    assert_eq!((first, n), (1024, 1));
    let r = p.reservation_at(ring.r(), first, 30);
    ring.r().write(r.payload(), &payload(3, 3, 30));
    p.commit(ring.r(), r, 30).unwrap();
    let (second, n) =
        p.try_reserve_many(&ring.tail, &ring.head, ring.mine(3), ring.r(), lens[4..].iter().copied()).unwrap();
    assert_eq!((second, n), (1024 + 48, 1));
    let r = p.reservation_at(ring.r(), second, 40);
    ring.r().write(r.payload(), &payload(3, 4, 40));
    p.commit(ring.r(), r, 40).unwrap();
    let want: Vec<_> = lens.iter().enumerate().map(|(i, &l)| payload(3, i as u64, l as usize)).collect();
    assert_eq!(ring.recv_all(&mut c), want);
}

#[test]
fn mpsc_batch_is_limited_by_the_free_space_and_full_when_none_fits() {
    let ring = Ring::new(1024, 512);
    let mut p = ring.mpsc();
    let mut c = ring.consumer();
    let big = [496u32, 496, 496]; // 512 bytes each
    let many = |p: &mut mpsc::Producer, lens: &[u32]| {
        p.try_reserve_many(&ring.tail, &ring.head, ring.mine(1), ring.r(), lens.iter().copied())
    };
    let (_, n) = many(&mut p, &big).unwrap();
    assert_eq!(n, 2);
    assert_eq!(many(&mut p, &big), Err(RingError::Full));
    assert_eq!(many(&mut p, &[]), Err(RingError::Full));
    for (i, pos) in [0u64, 512].into_iter().enumerate() {
        let r = p.reservation_at(ring.r(), pos, 496);
        ring.r().write(r.payload(), &payload(1, i as u64, 496));
        p.commit(ring.r(), r, 496).unwrap();
    }
    assert_eq!(ring.recv(&mut c).unwrap(), Some(payload(1, 0, 496)));
    let (first, n) = many(&mut p, &[8, 496]).unwrap();
    assert_eq!((first, n), (1024, 1), "the second would not fit");
    p.abort(ring.r(), p.reservation_at(ring.r(), first, 8)).unwrap();
    assert_eq!(ring.recv_all(&mut c), vec![payload(1, 1, 496)]);
}

// ---------------------------------------------------------------------------------------
// Reclaiming a dead producer's claim
// ---------------------------------------------------------------------------------------

/// Runs `reclaim` for a consumer stuck at its head, with `dead` the slots whose holders are
/// gone.
fn reclaim_at(ring: &Ring, c: &Consumer, dead: &[usize]) -> Outcome {
    let tail = ring.tail.load(Ordering::Acquire);
    reclaim(&ring.geo, ring.r(), c.head(), tail, &ring.claim_list(), |s| !dead.contains(&s)).unwrap()
}

/// The four places a producer can die: after its claim's CAS before anything is written,
/// with a reservation written but not committed, in the middle of a batch, and in the
/// padding claim at the wrap. Each time the consumer passes the dead claim, delivers the
/// live producer's later message, and nothing committed is lost.
#[test]
fn a_dead_claim_becomes_padding_and_the_consumer_moves_on() {
    for case in 0..4 {
        let ring = Ring::new(1024, 512).at(if case == 3 { 1024 - 24 } else { 0 });
        let (mut dead, mut live) = (ring.mpsc(), ring.mpsc());
        let mut c = ring.consumer();
        let mut want = Vec::new();
        match case {
            0 => {
                // Claimed; died before reading the stamp or writing anything.
                let _ = ring.reserve_mpsc(&mut dead, 1, 40).unwrap();
            }
            1 => {
                let r = ring.reserve_mpsc(&mut dead, 1, 40).unwrap();
                ring.r().write(r.payload(), &payload(1, 0, 40));
            }
            2 => {
                let (pos, n) = dead
                    .try_reserve_many(&ring.tail, &ring.head, ring.mine(1), ring.r(), [8u32, 16, 24].into_iter())
                    .unwrap();
                assert_eq!(n, 3);
                let r = dead.reservation_at(ring.r(), pos, 8);
                ring.r().write(r.payload(), &payload(1, 0, 8));
                dead.commit(ring.r(), r, 8).unwrap();
                want.push(payload(1, 0, 8));
                // Died before the second and third records.
            }
            _ => {
                // 40 bytes do not fit into 24: the padding claim is recorded, then death.
                let t = ring.tail.load(Ordering::Relaxed);
                ring.mine(1).pos.store(t, Ordering::Relaxed);
                ring.mine(1).end.store(t + 24, Ordering::Relaxed);
                ring.tail.store(t + 24, Ordering::Release);
            }
        }
        ring.send_mpsc_as(&mut live, 2, &payload(2, 0, 20)).unwrap();
        want.push(payload(2, 0, 20));
        let mut got = ring.recv_all(&mut c);
        assert_eq!(reclaim_at(&ring, &c, &[]), Outcome::Wait("the claimant is alive"), "case {case}");
        assert_eq!(ring.recv_all(&mut c), Vec::<Vec<u8>>::new(), "case {case}: still stuck");
        match reclaim_at(&ring, &c, &[1]) {
            Outcome::Reclaimed { dead, .. } => assert_eq!(dead, 1 << 1, "case {case}"),
            other => panic!("case {case}: {other:?}"),
        }
        got.extend(ring.recv_all(&mut c));
        assert_eq!(got, want, "case {case}");
        assert_eq!(reclaim_at(&ring, &c, &[1]), Outcome::NotStuck);
        assert!(c.is_empty(ring.r()));
    }
}

/// A late commit from a producer taken for dead fails cleanly (its CAS finds the reclaimed
/// stamp), and the padding stays intact.
#[test]
fn a_late_commit_after_reclaim_fails_and_the_padding_stays() {
    let ring = Ring::new(1024, 512);
    let mut p = ring.mpsc();
    let mut c = ring.consumer();
    let r = ring.reserve_mpsc(&mut p, 1, 40).unwrap();
    assert!(matches!(reclaim_at(&ring, &c, &[1]), Outcome::Reclaimed { end: 56, .. }));
    ring.r().write(r.payload(), &payload(1, 0, 40));
    assert_eq!(p.commit(ring.r(), r, 40), Err(RingError::Reclaimed));
    assert_eq!(ring.word(0), ring.stamp(0, KIND_PADDING));
    assert_eq!(ring.recv_all(&mut c), Vec::<Vec<u8>>::new());
    assert_eq!(c.head(), 56);
}

/// A reclaim interrupted after its first step (the reader died) is finished by the next.
#[test]
fn a_reclaim_left_half_done_is_finished_by_the_next_reader() {
    let ring = Ring::new(1024, 512);
    let mut p = ring.mpsc();
    let mut c = ring.consumer();
    let _ = ring.reserve_mpsc(&mut p, 1, 40).unwrap();
    ring.set_word(0, ring.stamp(0, KIND_RECLAIMING));
    assert_eq!(ring.recv_all(&mut c), Vec::<Vec<u8>>::new(), "RECLAIMING is not readable");
    assert!(matches!(reclaim_at(&ring, &c, &[1]), Outcome::Reclaimed { end: 56, .. }));
    assert_eq!(ring.recv_all(&mut c), Vec::<Vec<u8>>::new());
    assert_eq!(c.head(), 56);
}

/// A producer that lost the race for the space (its claim record names the same start)
/// and died is not mistaken for the claimant: with the winner alive the reader waits; with
/// both dead, the end that is a record boundary decides.
#[test]
fn a_dead_loser_of_the_claim_race_is_told_apart_from_the_winner() {
    let ring = Ring::new(1024, 512);
    let mut winner = ring.mpsc();
    let mut later = ring.mpsc();
    let c = ring.consumer();
    let _ = ring.reserve_mpsc(&mut winner, 1, 40).unwrap(); // [0, 56)
    // The loser recorded [0, 24) and died before its CAS could fail.
    ring.mine(2).pos.store(0, Ordering::Relaxed);
    ring.mine(2).end.store(24, Ordering::Relaxed);
    assert_eq!(reclaim_at(&ring, &c, &[2]), Outcome::Wait("the claimant is alive"));
    // Both dead and nothing after the claim yet: `tail` (56) marks the winner's end.
    assert!(matches!(reclaim_at(&ring, &c, &[1, 2]), Outcome::Reclaimed { end: 56, dead: 0b110 }));
    // Both dead with a later record: the same, through the later record's stamp.
    let ring2 = Ring::new(1024, 512);
    let _ = ring2.reserve_mpsc(&mut winner, 1, 40).unwrap();
    ring2.mine(2).pos.store(0, Ordering::Relaxed);
    ring2.mine(2).end.store(24, Ordering::Relaxed);
    ring2.send_mpsc_as(&mut later, 3, &payload(3, 0, 4)).unwrap();
    let c2 = ring2.consumer();
    assert!(matches!(reclaim_at(&ring2, &c2, &[1, 2]), Outcome::Reclaimed { end: 56, .. }));
    // The loser's recorded end beyond the winner's, on a later record boundary (records of
    // one size line up): both ends are boundaries, and the smaller, the winner's, is taken.
    let ring3 = Ring::new(1024, 512);
    let _ = ring3.reserve_mpsc(&mut winner, 1, 40).unwrap(); // [0, 56)
    ring3.mine(2).pos.store(0, Ordering::Relaxed);
    ring3.mine(2).end.store(112, Ordering::Relaxed);
    ring3.send_mpsc_as(&mut later, 3, &payload(3, 0, 40)).unwrap(); // [56, 112)
    ring3.send_mpsc_as(&mut later, 3, &payload(3, 1, 40)).unwrap(); // [112, 168)
    let mut c3 = ring3.consumer();
    assert!(matches!(reclaim_at(&ring3, &c3, &[1, 2]), Outcome::Reclaimed { end: 56, .. }));
    assert_eq!(ring3.recv_all(&mut c3), vec![payload(3, 0, 40), payload(3, 1, 40)]);
}

#[test]
fn reclaim_waits_when_no_claim_covers_the_position_and_rejects_bad_records() {
    let ring = Ring::new(1024, 512);
    let c = ring.consumer();
    ring.tail.store(64, Ordering::Release);
    assert_eq!(reclaim_at(&ring, &c, &[1]), Outcome::Wait("no claim record covers the position"));
    // A claim record past `tail`, or longer than the ring: ignored.
    ring.mine(1).pos.store(0, Ordering::Relaxed);
    ring.mine(1).end.store(4096, Ordering::Relaxed);
    assert_eq!(reclaim_at(&ring, &c, &[1]), Outcome::Wait("no claim record covers the position"));
    // A claim that crosses the end of the region: corrupt.
    let ring = Ring::new(1024, 512).at(1000);
    let c = ring.consumer();
    ring.tail.store(1100, Ordering::Release);
    ring.mine(1).pos.store(1000, Ordering::Relaxed);
    ring.mine(1).end.store(1100, Ordering::Relaxed);
    let tail = ring.tail.load(Ordering::Acquire);
    let got = reclaim(&ring.geo, ring.r(), c.head(), tail, &ring.claim_list(), |_| false);
    assert!(corrupt(got));
}

// ---------------------------------------------------------------------------------------
// Hostile control words
// ---------------------------------------------------------------------------------------

/// Records no honest producer writes, at the consumer's position: each is `Corrupt` or
/// harmless (nothing yet / a message within bounds), and `is_empty` answers without hanging.
#[test]
fn consumer_reports_hostile_records_as_corrupt() {
    let max = 64u32;
    let info = record::info;
    // (index, kind, info word, Some(true) = Corrupt, Some(false) = a message, None = nothing)
    let cases: &[(usize, u64, u64, Option<bool>)] = &[
        (0, 5, 0, None), // unknown kind: not readable
        (0, 7, u64::MAX, None),
        (0, KIND_RECLAIMING, u64::MAX, None),
        (0, KIND_MESSAGE, info(max + 1, 96), Some(true)),
        (0, KIND_MESSAGE, info(u32::MAX, 96), Some(true)),
        (0, KIND_MESSAGE, info(8, 8), Some(true)),    // smaller than a header
        (0, KIND_MESSAGE, info(8, 16), Some(true)),   // payload past the record
        (0, KIND_MESSAGE, info(0, 2048), Some(true)), // past the end
        (0, KIND_MESSAGE, info(0, 96), Some(true)),   // larger than any record
        (1024 - 8, KIND_MESSAGE, 0, Some(true)),      // header across the end
        (1024 - 16, KIND_MESSAGE, info(1, 24), Some(true)), // 24 > 16 left
        (1024 - 24, KIND_MESSAGE, info(8, 24), Some(false)), // exactly to the end
        (0, KIND_MESSAGE, info(64, 80), Some(false)),
        (0, KIND_MESSAGE, info(0, 80), Some(false)), // a short commit
        (0, KIND_PADDING, info(0, 8), Some(true)),
        (0, KIND_PADDING, info(0, 2048), Some(true)),
        (1024 - 8, KIND_PADDING, 0, Some(true)),
    ];
    for &(index, kind, word, want) in cases {
        let pos = 4096 + index as u64;
        let ring = Ring::new(1024, max).at(pos);
        ring.set_word(index, ring.stamp(pos, kind));
        if index + 8 < 1024 {
            ring.set_word(index + 8, word);
        }
        let mut c = ring.consumer();
        let _ = c.is_empty(ring.r());
        let got = ring.peek(&mut c);
        match want {
            Some(true) => assert!(corrupt(got), "kind {kind} info {word:#x} at {index}: {got:?}"),
            Some(false) => {
                let rec = got.unwrap().unwrap();
                assert!(rec.payload + rec.len as usize <= 1024);
                c.release(rec);
            }
            None => assert_eq!(got, Ok(None)),
        }
    }
}

#[test]
fn consumer_stops_walking_endless_padding() {
    let ring = Ring::new(1024, 64);
    // Padding stamped for every position of many laps ahead: a hostile writer.
    for i in (0..1024).step_by(16) {
        ring.set_word(i, ring.stamp(i as u64, KIND_PADDING));
        ring.set_word(i + 8, record::info(0, 16));
    }
    assert!(ring.consumer().is_empty(ring.r()), "gives up after a lap of padding");
    let mut c = ring.consumer();
    // One lap of padding is honest-looking; then the stamps name the previous lap.
    assert_eq!(ring.peek(&mut c), Ok(None));
    assert_eq!(c.head(), 1024);
}

#[test]
fn consumer_rejects_an_unaligned_position() {
    let geo = Geometry::new(1024, 64, SALT).unwrap();
    for head in [1, 7, 1025, u64::MAX] {
        assert!(corrupt(Consumer::new(geo, head)), "{head}");
    }
}

#[test]
fn spsc_producer_rejects_hostile_positions() {
    let geo = Geometry::new(1024, 64, SALT).unwrap();
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
            ring.send_spsc(&mut p, &payload(1, i, 48)).unwrap(); // 512 bytes in all
        }
        ring.head.store(hostile, Ordering::Relaxed);
        let mut outcome = Ok(());
        for i in 8..40 {
            if let Err(e) = ring.send_spsc(&mut p, &payload(1, i, 48)) {
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
fn spsc_attach_rejects_hostile_positions_and_records() {
    let geo = Geometry::new(1024, 64, SALT).unwrap();
    let ring = Ring::with(geo);
    for (tail, head) in [(4u64, 0u64), (0, 4), (2048, 1016), (1023, 0), (u64::MAX, 0), (0, u64::MAX), (!7u64, 0)] {
        assert!(corrupt(spsc::Producer::attach(geo, tail, head, ring.r())), "tail {tail} head {head}");
    }
    for (kind, info) in [(KIND_MESSAGE, record::info(65, 96)), (KIND_MESSAGE, u64::MAX), (KIND_PADDING, 5)] {
        let ring = Ring::with(geo);
        ring.set_word(64, ring.stamp(64, kind));
        ring.set_word(72, info);
        assert!(corrupt(spsc::Producer::attach(geo, 64, 64, ring.r())), "{kind} {info:#x}");
    }
    // Near the end, a record that straddles it.
    let ring = Ring::with(geo);
    ring.set_word(1016, ring.stamp(1016, KIND_MESSAGE));
    assert!(corrupt(spsc::Producer::attach(geo, 1016, 0, ring.r())));
    // Valid records all the way round and beyond: the walk stops at a capacity.
    let ring = Ring::with(geo);
    for i in (0..1024).step_by(16) {
        ring.set_word(i, ring.stamp(i as u64, KIND_MESSAGE));
        ring.set_word(i + 8, record::info(0, 16));
    }
    assert_eq!(spsc::Producer::attach(geo, 0, 0, ring.r()).unwrap().tail(), 1024);
}

#[test]
fn mpsc_producer_reports_a_hostile_tail() {
    let geo = Geometry::new(1024, 64, SALT).unwrap();
    for hostile in [4u64, 1023, 1025, 1024 + 8, u64::MAX, !7u64, 1 << 63] {
        let ring = Ring::with(geo).at(0);
        let mut p = ring.mpsc();
        ring.tail.store(hostile, Ordering::Relaxed);
        assert!(corrupt(ring.send_mpsc(&mut p, &payload(1, 0, 8))), "tail {hostile}");
        let got = p.try_reserve_many(&ring.tail, &ring.head, ring.mine(1), ring.r(), [8u32, 8].into_iter());
        assert!(corrupt(got), "tail {hostile}: {got:?}");
    }
    // `tail` moved backwards under a producer whose cached head is ahead of it.
    let ring = Ring::with(geo).at(4096);
    let mut p = ring.mpsc();
    ring.tail.store(4000, Ordering::Relaxed);
    assert!(corrupt(ring.send_mpsc(&mut p, &payload(1, 0, 8))));
}

#[test]
fn mpsc_producer_reports_a_hostile_head() {
    let geo = Geometry::new(1024, 64, SALT).unwrap();
    // Moved backwards after the producer saw a larger value: the producer keeps what it
    // saw (a gate may legitimately read lower later: a subscription with a lag limit that
    // joined since) and finds the ring full, overwriting nothing.
    let ring = Ring::with(geo).at(2048);
    let mut p = ring.mpsc();
    ring.head.store(0, Ordering::Relaxed);
    ring.tail.store(2048 + 1024, Ordering::Relaxed); // looks full: head is re-read
    assert!(matches!(ring.send_mpsc(&mut p, &payload(1, 0, 8)), Err(RingError::Full)));
    assert_eq!(ring.tail.load(Ordering::Relaxed), 2048 + 1024);
    // Ahead of the tail: believed once, then the ring looks overfull.
    for hostile in [3072 + 8, 2048 + 4096, u64::MAX / 4] {
        let ring = Ring::with(geo).at(2048);
        let mut p = ring.mpsc();
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
    let geo = Geometry::new(1024, 64, SALT).unwrap();
    let top = !7u64;
    for pos in [top, top - 1024, 1 << 63, MAX_POSITION, MAX_POSITION + 8, MAX_POSITION - 8, MAX_POSITION - 1024] {
        let refused = pos >= MAX_POSITION;
        let ring = Ring::with(geo).at(pos);
        let index = geo.index(pos);
        ring.set_word(index, ring.stamp(pos, if index == 1016 { KIND_PAD_END } else { KIND_MESSAGE }));
        if index != 1016 {
            ring.set_word(index + 8, record::info(0, 16));
        }
        match Consumer::new(geo, pos) {
            Ok(mut c) => {
                assert!(!refused);
                let got = ring.recv(&mut c);
                assert!(got == Ok(Some(vec![])) || got == Ok(None), "{pos}: {got:?}");
                assert!(c.head() > pos);
            }
            Err(e) => assert!(refused, "{pos}: {e:?}"),
        }
        // The walk over the planted record ends at MAX_POSITION for the last one: refused too.
        let walks_to_the_top = pos.saturating_add(16) >= MAX_POSITION;
        assert_eq!(corrupt(spsc::Producer::attach(geo, pos, pos, ring.r())), refused || walks_to_the_top);
        assert!(corrupt(spsc::Producer::attach(geo, pos, 0, ring.r())));
        assert_eq!(corrupt(spsc::Producer::attach(geo, 0, pos, ring.r())), refused || walks_to_the_top);
        assert_eq!(corrupt(mpsc::Producer::new(geo, pos)), refused);

        let ring = Ring::with(geo).at(pos);
        match spsc::Producer::new(geo, pos, pos) {
            Ok(mut p) => {
                assert!(!refused);
                for i in 0..300 {
                    // An honest ring that reaches MAX_POSITION is refused there too.
                    if let Err(e) = ring.send_spsc(&mut p, &payload(1, i, 8)) {
                        assert!(corrupt::<()>(Err(e)) && p.tail() + 48 >= MAX_POSITION, "{pos}: {e:?}");
                        break;
                    }
                    ring.head.store(p.tail(), Ordering::Relaxed);
                }
            }
            Err(e) => assert!(refused, "{pos}: {e:?}"),
        }
        // MPSC: a producer attached at a sane head finds the hostile tail.
        let ring = Ring::with(geo).at(pos);
        let mut p = mpsc::Producer::new(geo, if refused { 0 } else { pos }).unwrap();
        for i in 0..300 {
            let near_the_top = |ring: &Ring| ring.tail.load(Ordering::Relaxed) + 80 >= MAX_POSITION;
            match ring.send_mpsc(&mut p, &payload(1, i, 8)) {
                Ok(_) => assert!(!refused),
                Err(e) => {
                    assert!(corrupt::<()>(Err(e)) && (refused || near_the_top(&ring)), "{pos}: {e:?}");
                    break;
                }
            }
            match p.try_reserve_many(&ring.tail, &ring.head, ring.mine(1), ring.r(), [8u32, 16].into_iter()) {
                Ok((first, n)) => {
                    p.abort(ring.r(), p.reservation_at(ring.r(), first, 8)).unwrap();
                    if n == 2 {
                        p.abort(ring.r(), p.reservation_at(ring.r(), first + 24, 16)).unwrap();
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

/// Random garbage in records, positions and claim records, then every operation: the only
/// assertions are that nothing panics or leaves the region, and that a record handed out
/// lies inside it.
#[test]
fn random_garbage_never_panics() {
    let geo = Geometry::new(1024, 256, SALT).unwrap();
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
    for _ in 0..scaled(3000) {
        let ring = Ring::with(geo);
        for _ in 0..rng.below(40) {
            let i = rng.below(128) as usize * 8;
            let w = match rng.below(4) {
                0 => rng.next(),
                1 => ring.stamp(i as u64 + 1024 * rng.below(3), rng.below(8)),
                2 => record::info(rng.below(300) as u32, rng.below(400) & !7),
                _ => record::info(rng.next() as u32, rng.next()),
            };
            ring.set_word(i, w);
        }
        for (p, e) in &ring.claims {
            p.store(edge(&mut rng), Ordering::Relaxed);
            e.store(edge(&mut rng), Ordering::Relaxed);
        }
        let (tail, head) = if rng.chance(2) {
            let h = edge(&mut rng);
            (h.wrapping_add(rng.below(1100) & !7), h)
        } else {
            (edge(&mut rng), edge(&mut rng))
        };
        ring.tail.store(tail, Ordering::Relaxed);
        ring.head.store(head, Ordering::Relaxed);
        if let Ok(mut c) = Consumer::new(geo, head) {
            let _ = c.is_empty(ring.r());
            for _ in 0..4 {
                match ring.recv(&mut c) {
                    Ok(Some(_)) => {}
                    _ => break,
                }
                let dead = [rng.below(4) as usize];
                let _ = reclaim(&geo, ring.r(), c.head(), tail, &ring.claim_list(), |s| !dead.contains(&s));
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
        let Ok(mut p) = mpsc::Producer::new(geo, edge(&mut rng)) else { continue };
        for i in 0..4 {
            let len = rng.below(257) as u32;
            match ring.reserve_mpsc(&mut p, 1, len) {
                Ok(res) => {
                    assert!(res.payload() + len as usize <= 1024);
                    ring.r().write(res.payload(), &payload(1, i, len as usize));
                    let _ = if rng.chance(2) { p.commit(ring.r(), res, len) } else { p.abort(ring.r(), res) };
                }
                Err(_) => garble(&ring, &mut rng),
            }
            let lens = [rng.below(257) as u32, rng.below(257) as u32];
            if let Ok((mut pos, n)) =
                p.try_reserve_many(&ring.tail, &ring.head, ring.mine(1), ring.r(), lens.iter().copied())
            {
                for &len in &lens[..n] {
                    let res = p.reservation_at(ring.r(), pos, len);
                    assert!(res.payload() + len as usize <= 1024);
                    let _ = p.commit(ring.r(), res, len);
                    pos += record::size(u64::from(len));
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
                p.commit(ring.r(), res, len as u32).unwrap();
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
            let mut c = ring.consumer();
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
                let mut p = ring.mpsc();
                let slot = who as usize;
                let mut rng = Rng::new(u64::from(who) + 100);
                let mut seq = 0;
                while seq < per {
                    let len = 9 + rng.below(112) as u32;
                    let outcome = match who {
                        0 => {
                            let lens: Vec<u32> = (0..1 + rng.below(4).min(per - seq - 1))
                                .map(|i| if i == 0 { len } else { 9 + rng.below(112) as u32 })
                                .collect();
                            p.try_reserve_many(&ring.tail, &ring.head, ring.mine(slot), ring.r(), lens.iter().copied())
                                .map(|(mut pos, n)| {
                                    for &len in &lens[..n] {
                                        let res = p.reservation_at(ring.r(), pos, len);
                                        ring.r().write(res.payload(), &payload(who, seq, len as usize));
                                        p.commit(ring.r(), res, len).unwrap();
                                        seq += 1;
                                        pos += record::size(u64::from(len));
                                    }
                                })
                        }
                        _ => ring.reserve_mpsc(&mut p, slot, len).map(|res| {
                            if who == 2 && rng.chance(5) {
                                ring.r().write(res.payload(), &payload(who, u64::MAX, len as usize));
                                p.abort(ring.r(), res).unwrap();
                                return;
                            }
                            let short = if who == 2 { 9 + rng.below(u64::from(len) - 8) as u32 } else { len };
                            ring.r().write(res.payload(), &payload(who, seq, short as usize));
                            p.commit(ring.r(), res, short).unwrap();
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
            let mut c = ring.consumer();
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
}

/// `read_append` appends exactly the bytes asked for, after what the buffer held, whether or
/// not the buffer must grow; out of bounds it panics rather than read past the region.
#[test]
fn read_append_copies_exactly_the_bytes_asked_for() {
    let region = HeapRegion::new(64);
    let bytes: Vec<u8> = (0..64u8).collect();
    region.write(0, &bytes);
    let mut buf = vec![0xee; 3];
    region.read_append(8, 20, &mut buf);
    assert_eq!(buf[..3], [0xee; 3]);
    assert_eq!(buf[3..], bytes[8..28]);
    let mut roomy = Vec::with_capacity(100);
    region.read_append(60, 4, &mut roomy);
    region.read_append(0, 0, &mut roomy);
    assert_eq!(roomy, bytes[60..]);
    let past = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| region.read_append(60, 5, &mut roomy)));
    assert!(past.is_err(), "a read past the region panics");
    assert_eq!(roomy, bytes[60..], "and appends nothing");
}

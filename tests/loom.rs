//! loom models of the ring algorithms and of the futex wait/wake protocol.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test --test loom --release`. Under `--cfg loom`
//! the library's atomics (`shmq::sync::atomic`) are loom's, so the very code of
//! `src/ring` and `src/sync/wait.rs` is explored here, interleaving by interleaving.
//!
//! Each model lists the outcomes it may have, Agrona-style, and checks after the
//! exploration that exactly those were seen: a model that silently stopped exploring an
//! interleaving (or a protocol change that made one impossible) fails as loudly as a bug.
//!
//! The rings use layout v2: every record header is stamped with its own (salted) position,
//! nothing is ever zeroed, and the region holds the bytes of earlier laps. Several models
//! start after a lap has been written and read, so that every header word holds an old
//! stamp a careless reader could take.
//!
//! What loom cannot see: it never lets a load read a value from the future (no load
//! buffering), its SeqCst loads and stores are weaker than C++'s (the protocol relies on
//! `fence(SeqCst)`, which loom does model), and it bounds preemptions (set per model below).
//! The futex is modelled with a mutex and a condition variable; deadlines are not modelled.
//!
//! And loom's exploration is not complete (tokio-rs/loom#166, #392): it remembers one last
//! access per atomic, so when thread A loads a word, then B loads it too and then writes it
//! (an MPSC producer reads the stale stamp of its claim and later swaps it), loom never
//! schedules B's write before A's load. A consumer that looks once, first thing, never sees
//! the message then (found here through the outcome sets: the executions where it does were
//! missing). Models whose threads look once therefore yield first, which lets the other
//! threads run before the look without a preemption; the outcome sets show that the
//! interleavings each model is about are reached.

#![cfg(loom)]

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::sync::Mutex as StdMutex;
use std::time::Instant;

use loom::sync::atomic::{AtomicBool, AtomicU32, AtomicU64};
use loom::sync::{Arc, Condvar, Mutex};
use loom::thread;

use shmq::layout::record::{self, KIND_MESSAGE};
use shmq::ring::consumer::Consumer;
use shmq::ring::reclaim::{self, Claim, Outcome};
use shmq::ring::{Geometry, Region, RingError, mpsc, spsc};
use shmq::sync::Futex;
use shmq::sync::atomic::Ordering;
use shmq::sync::futex::Woke;
use shmq::sync::wait::{self, WaitWords};

mod loom_support;
use loom_support::WaitLine;

// ---------------------------------------------------------------------------------------
// A data region made of loom atomics
// ---------------------------------------------------------------------------------------

/// A [`Region`] of loom `AtomicU64` words.
///
/// The real region copies payload bytes with plain (non-atomic) `memcpy`. Here every copy is
/// done word by word with Relaxed loads and stores of the packed little-endian bytes. That is
/// faithful enough for what the models check: a Relaxed access carries no ordering of its own,
/// so the payload is visible to the other side only through the Release/Acquire pairs of the
/// protocol, exactly as for a plain copy; and where the protocol fails to order a copy,
/// loom lets the load return an older value of the word (zero, or a previous lap's bytes),
/// which the models see as a wrong payload or header. What the word model cannot show is a
/// torn read of a word being written (a data race proper); loom would need its `UnsafeCell`
/// for that, and a race there always shows up here first as a stale value.
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
            // A partial word: keep the other bytes (they belong to this record too, but a
            // copy must not invent values).
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

/// The models' salt. Its top byte is 0x5a, so at the small positions used here no stamp
/// has the top bit set, while every payload byte [`msg`] writes does: payload words (whole
/// or partly written) and info words never read as a stamp, and neither does a zero word.
const SALT: u64 = 0x5a5a_5a5a_5a5a_5a58;

/// Producer claim records (MPSC), one per participant slot as in a segment.
const SLOTS: usize = 3;

/// A ring in loom memory: the region, the two shared positions and the producers' claim
/// records.
struct Ring {
    geo: Geometry,
    region: LoomRegion,
    tail: AtomicU64,
    head: AtomicU64,
    claims: [(AtomicU64, AtomicU64); SLOTS],
}

impl Ring {
    /// A tiny ring (below the library's `MIN_CAPACITY`, which exists for the segment, not
    /// for the algorithms, hence no `Geometry::new`) so that few messages wrap it, starting
    /// at position `pos`. The region holds zeros.
    fn new(capacity: u64, max_message: u32, pos: u64) -> Ring {
        Ring {
            geo: Geometry { capacity, max_message, salt: SALT },
            region: LoomRegion::new(capacity as usize),
            tail: AtomicU64::new(pos),
            head: AtomicU64::new(pos),
            claims: Default::default(),
        }
    }

    /// A ring at position `capacity` whose region holds a whole earlier lap: messages of
    /// `len` bytes (and padding at the wrap), written and read before the model's threads
    /// start. Every header word holds a valid stamp of that lap's positions.
    fn after_a_lap(capacity: u64, max_message: u32, len: u32) -> Ring {
        let ring = Ring::new(capacity, max_message, 0);
        let mut p = spsc::Producer::new(ring.geo, 0, 0).unwrap();
        let mut c = Consumer::new(ring.geo, 0).unwrap();
        let mut seq = 0;
        while p.tail() < capacity {
            let to_end = capacity - p.tail();
            assert!(to_end >= record::HEADER as u64, "choose a length that leaves no 8-byte tail");
            let len = if record::size(u64::from(len)) <= to_end { len } else { (to_end - 16) as u32 };
            let res = p.try_reserve(&ring.tail, &ring.head, &ring.region, len).unwrap();
            ring.region.write(res.payload(), &msg(0, seq, len as usize));
            p.commit(&ring.region, res, len).unwrap();
            p.publish(&ring.tail);
            assert_eq!(ring.recv(&mut c), Some(msg(0, seq, len as usize)));
            seq += 1;
        }
        assert_eq!(c.head(), capacity);
        ring
    }

    /// Producer `slot`'s claim record.
    fn mine(&self, slot: usize) -> mpsc::ClaimWords<'_> {
        mpsc::ClaimWords { pos: &self.claims[slot].0, end: &self.claims[slot].1 }
    }

    /// The claim records as a reader copies them (after an Acquire load of `tail`).
    fn claim_list(&self) -> Vec<Claim> {
        self.claims
            .iter()
            .enumerate()
            .map(|(slot, (p, e))| Claim { slot, pos: p.load(Ordering::Relaxed), end: e.load(Ordering::Relaxed) })
            .filter(|c| c.end != 0)
            .collect()
    }

    /// An MPSC producer attached with the `head` of now.
    fn mpsc(&self) -> mpsc::Producer {
        // SYNC POINT (as the queue's attach): Acquire pairs with the consumer's Release
        // store of `head`, so the `tail` this producer reads next is at least the one the
        // consumer had passed. (Relaxed here let a producer read a `head` newer than any
        // `tail` it could see, and call the honest ring corrupt: loom showed it.)
        mpsc::Producer::new(self.geo, self.head.load(Ordering::Acquire)).unwrap()
    }

    /// Peeks, copies and releases one message (publishing `head` after it), or `None`
    /// after publishing any padding skipped on the way.
    fn recv(&self, c: &mut Consumer) -> Option<Vec<u8>> {
        self.recv_into(c, &self.head)
    }

    /// [`recv`](Self::recv) for a reader that publishes its position into `head`.
    fn recv_into(&self, c: &mut Consumer, head: &AtomicU64) -> Option<Vec<u8>> {
        match c.peek(&self.region).expect("honest ring") {
            Some(rec) => {
                let mut v = vec![0; rec.len as usize];
                self.region.read(rec.payload, &mut v);
                c.release(rec);
                c.publish(head);
                Some(v)
            }
            None => {
                if c.has_unpublished() {
                    c.publish(head);
                }
                None
            }
        }
    }

    /// Receives `n` messages into `head`, yielding while there is none.
    fn recv_n(&self, c: &mut Consumer, head: &AtomicU64, n: usize) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        while got.len() < n {
            match self.recv_into(c, head) {
                Some(m) => got.push(m),
                None => thread::yield_now(),
            }
        }
        got
    }

    /// MPSC as producer `slot`: reserve, write, commit.
    fn send_mpsc(&self, p: &mut mpsc::Producer, slot: usize, m: &[u8]) -> Result<(), RingError> {
        let res = p.try_reserve(&self.tail, &self.head, self.mine(slot), &self.region, m.len() as u32)?;
        self.region.write(res.payload(), m);
        p.commit(&self.region, res, m.len() as u32)
    }
}

/// The payload of message `seq` of producer `who`: distinct in every byte, top bit set.
fn msg(who: u8, seq: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| 0x80 | (who << 4) | ((seq & 3) << 2) | (i as u8 & 3)).collect()
}

/// Who sent a payload made by [`msg`].
fn sender(m: &[u8]) -> u8 {
    (m[0] >> 4) & 7
}

/// A loom builder with the given preemption bound.
fn builder(preemptions: usize) -> loom::model::Builder {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(preemptions);
    b.max_branches = 100_000;
    b
}

/// Collects the outcomes of a model's executions; [`Outcomes::assert`] compares the set with
/// the acceptable ones after the exploration.
struct Outcomes<T>(std::sync::Arc<StdMutex<BTreeSet<T>>>);

impl<T: Ord + Debug + Clone> Outcomes<T> {
    fn new() -> Outcomes<T> {
        Outcomes(std::sync::Arc::new(StdMutex::new(BTreeSet::new())))
    }

    fn recorder(&self) -> impl Fn(T) + Send + Sync + 'static
    where
        T: Send + 'static,
    {
        let set = self.0.clone();
        move |t| {
            set.lock().unwrap().insert(t);
        }
    }

    fn assert(&self, acceptable: &[T]) {
        let seen = self.0.lock().unwrap().clone();
        let want: BTreeSet<T> = acceptable.iter().cloned().collect();
        assert_eq!(seen, want, "the outcomes explored differ from the acceptable ones");
    }
}

// ---------------------------------------------------------------------------------------
// (a) SPSC
// ---------------------------------------------------------------------------------------

/// One producer sends three messages through a 64-byte ring starting at position 32: the
/// second does not fit before the end (padding, wrap to index 0), and the third fits only
/// once the consumer has taken the first and published `head` (the producer sees `Full`
/// until then); it then lands where the first lies, whose stale stamp (position 32) the
/// consumer, waiting at position 96, must not take. The consumer gets all three, in order,
/// byte for byte.
#[test]
fn spsc_messages_arrive_in_order_across_the_wrap_and_a_full_ring() {
    let outcomes = Outcomes::new();
    let record = outcomes.recorder();
    builder(6).check(move || {
        let ring = Arc::new(Ring::new(64, 32, 32));
        let sent = [msg(1, 0, 8), msg(1, 1, 12), msg(1, 2, 5)];
        let producer = {
            let ring = ring.clone();
            let sent = sent.clone();
            thread::spawn(move || {
                let mut p = spsc::Producer::new(ring.geo, 32, 32).unwrap();
                let mut saw_full = false;
                for m in &sent {
                    let res = loop {
                        match p.try_reserve(&ring.tail, &ring.head, &ring.region, m.len() as u32) {
                            Ok(res) => break res,
                            Err(RingError::Full) => {
                                saw_full = true;
                                thread::yield_now();
                            }
                            Err(e) => panic!("{e:?}"),
                        }
                    };
                    ring.region.write(res.payload(), m);
                    p.commit(&ring.region, res, m.len() as u32).unwrap();
                    p.publish(&ring.tail);
                }
                saw_full
            })
        };
        let mut c = Consumer::new(ring.geo, 32).unwrap();
        let mut got = Vec::new();
        while got.len() < sent.len() {
            match ring.recv(&mut c) {
                Some(m) => got.push(m),
                None => thread::yield_now(),
            }
        }
        let saw_full = producer.join().unwrap();
        assert_eq!(got, sent);
        assert_eq!(ring.recv(&mut c), None, "nothing more");
        // 24 + 8 (padding) + 32 + 24 bytes.
        assert_eq!(c.head(), 32 + 24 + 8 + 32 + 24);
        record(saw_full);
    });
    // Both: the consumer was quick enough, or it was not.
    outcomes.assert(&[false, true]);
}

/// The consumer publishes `head` once per batch; the producer commits twice and publishes
/// `tail` once. The consumer polls stamps, not `tail`, so it may take a record before the
/// producer publishes it.
#[test]
fn spsc_batched_commits_and_releases() {
    let outcomes = Outcomes::new();
    let record = outcomes.recorder();
    builder(6).check(move || {
        let ring = Arc::new(Ring::new(64, 32, 32));
        let sent = [msg(1, 0, 16), msg(1, 1, 3)];
        let producer = {
            let ring = ring.clone();
            let sent = sent.clone();
            thread::spawn(move || {
                let mut p = spsc::Producer::new(ring.geo, 32, 32).unwrap();
                for m in &sent {
                    let res = p.try_reserve(&ring.tail, &ring.head, &ring.region, m.len() as u32).unwrap();
                    ring.region.write(res.payload(), m);
                    p.commit(&ring.region, res, m.len() as u32).unwrap();
                }
                p.publish(&ring.tail);
            })
        };
        let mut c = Consumer::new(ring.geo, 32).unwrap();
        let mut got = Vec::new();
        let mut before_tail = false;
        while got.len() < sent.len() {
            match c.peek(&ring.region).unwrap() {
                Some(rec) => {
                    before_tail |= ring.tail.load(Ordering::Relaxed) == 32;
                    let mut v = vec![0; rec.len as usize];
                    ring.region.read(rec.payload, &mut v);
                    c.release(rec);
                    got.push(v);
                }
                None => thread::yield_now(),
            }
        }
        c.publish(&ring.head);
        producer.join().unwrap();
        assert_eq!(got, sent);
        assert_eq!(c.head(), 32 + 32 + 24);
        record(before_tail);
    });
    outcomes.assert(&[false, true]);
}

/// What [`two_readers_each_read_every_message_across_a_lap`] saw: how many messages each
/// reader took in its two tries, and whether the producer's second message went in.
type ReadersOutcome = (usize, usize, bool);

/// Two readers over one ring, as subscriptions will have: each keeps its own position and
/// publishes it into its own word, and the producer may reuse space only below the smaller
/// of the two. A 32-byte ring from 0, straight-line threads (no retry loops, so the
/// exploration stays small):
/// * the producer sends one message, then tries once to send a second: it does not fit
///   before the end (padding), and it lands over the first, so it goes in only if both
///   readers have taken the first;
/// * each reader tries twice to take a message; a reader that took the first and then finds
///   padding skips it to position 32, where the first message's stale stamp (position 0)
///   lies unless the second has been written: it must not take it.
///
/// After joining, each reader drains the ring: both got exactly what was sent, intact, in
/// order, and nothing else. (The producer's Acquire loads of the readers' positions keep it
/// from overwriting bytes a reader is still copying; that hazard needs load buffering,
/// which loom does not model, so this model cannot show it.)
#[test]
fn two_readers_each_read_every_message_across_a_lap() {
    let outcomes: Outcomes<ReadersOutcome> = Outcomes::new();
    let record = outcomes.recorder();
    builder(5).check(move || {
        let ring = Arc::new(Ring::new(32, 16, 0));
        let heads = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
        let sent = [msg(1, 0, 8), msg(1, 1, 6)];
        let producer = {
            let (ring, heads, sent) = (ring.clone(), heads.clone(), sent.clone());
            thread::spawn(move || {
                // The position below which both readers are done, as this producer saw it.
                let gate = AtomicU64::new(0);
                let mut p = spsc::Producer::new(ring.geo, 0, 0).unwrap();
                let mut sent_all = true;
                for m in &sent {
                    // Acquire (both): each reader's reads of the space it passed end before
                    // we overwrite it; `try_reserve` then reads `gate` only.
                    let h = heads[0].load(Ordering::Acquire).min(heads[1].load(Ordering::Acquire));
                    gate.store(h, Ordering::Relaxed);
                    match p.try_reserve(&ring.tail, &gate, &ring.region, m.len() as u32) {
                        Ok(res) => {
                            ring.region.write(res.payload(), m);
                            p.commit(&ring.region, res, m.len() as u32).unwrap();
                            p.publish(&ring.tail);
                        }
                        Err(RingError::Full) => sent_all = false,
                        Err(e) => panic!("{e:?}"),
                    }
                }
                sent_all
            })
        };
        let tries = |ring: &Ring, c: &mut Consumer, head: &AtomicU64| {
            let mut got = Vec::new();
            for _ in 0..2 {
                got.extend(ring.recv_into(c, head));
            }
            got
        };
        let other = {
            let (ring, heads) = (ring.clone(), heads.clone());
            thread::spawn(move || {
                let mut c = Consumer::new(ring.geo, 0).unwrap();
                let got = tries(&ring, &mut c, &heads[1]);
                (c, got)
            })
        };
        let mut c0 = Consumer::new(ring.geo, 0).unwrap();
        let got0 = tries(&ring, &mut c0, &heads[0]);
        let sent_all = producer.join().unwrap();
        let (c1, got1) = other.join().unwrap();
        let want = &sent[..if sent_all { 2 } else { 1 }];
        let mut taken = [0; 2];
        for (who, (mut c, mut got)) in [(c0, got0), (c1, got1)].into_iter().enumerate() {
            taken[who] = got.len();
            while let Some(m) = ring.recv_into(&mut c, &heads[who]) {
                got.push(m);
            }
            assert_eq!(got, want, "reader {who}");
            // 24, 8 (padding) [, 24].
            assert_eq!(c.head(), if sent_all { 56 } else { 32 }, "reader {who}");
        }
        record((taken[0], taken[1], sent_all));
    });
    outcomes.assert(&[
        // The second message did not go in: a reader was not past the first yet.
        (0, 0, false),
        (0, 1, false),
        (1, 0, false),
        (1, 1, false),
        // It did: both had taken the first; either may have taken the second too.
        (1, 1, true),
        (1, 2, true),
        (2, 1, true),
        (2, 2, true),
    ]);
}

// ---------------------------------------------------------------------------------------
// (b) MPSC
// ---------------------------------------------------------------------------------------

/// What one MPSC model execution looked like: the order in which the consumer received the
/// producers' messages, and whether it saw the later record committed while the one at its
/// position was still claimed.
type MpscOutcome = (Vec<u8>, bool);

/// Whether a record other than the one at `head` is committed: a header word, anywhere in
/// the lap ahead of `head`, holding the message stamp of its position. Payload and info
/// words never look like one (see [`SALT`]).
fn committed_elsewhere(ring: &Ring, head: u64) -> bool {
    (8..ring.geo.capacity)
        .step_by(8)
        .map(|ahead| head + ahead)
        .any(|pos| ring.region.word(ring.geo.index(pos)).load(Ordering::Acquire) == ring.geo.stamp(pos, KIND_MESSAGE))
}

/// Two producers claim, write and commit one message each, concurrently, into a 64-byte
/// ring starting at 32 that holds an earlier lap: whichever claims second wraps (with
/// padding). The consumer receives both, intact, once each, in claim order; every order
/// and the overtaking case (the later record committed while the earlier claim is still
/// being written) are explored.
#[test]
fn mpsc_two_producers_commit_concurrently() {
    let outcomes: Outcomes<MpscOutcome> = Outcomes::new();
    let record = outcomes.recorder();
    builder(4).check(move || {
        let ring = Arc::new(Ring::new(64, 32, 32));
        let producers: Vec<_> = [(1u8, 8usize), (2, 3)]
            .into_iter()
            .map(|(who, len)| {
                let ring = ring.clone();
                thread::spawn(move || {
                    let mut p = ring.mpsc();
                    ring.send_mpsc(&mut p, who as usize, &msg(who, 0, len)).unwrap();
                })
            })
            .collect();
        let mut c = Consumer::new(ring.geo, 32).unwrap();
        let mut order = Vec::new();
        let mut overtaken = false;
        while order.len() < 2 {
            match ring.recv(&mut c) {
                None => {
                    overtaken |= committed_elsewhere(&ring, c.head());
                    thread::yield_now();
                }
                Some(m) => {
                    let who = sender(&m);
                    assert_eq!(m, msg(who, 0, if who == 1 { 8 } else { 3 }), "intact");
                    assert!(!order.contains(&who), "delivered twice");
                    order.push(who);
                }
            }
        }
        for p in producers {
            p.join().unwrap();
        }
        assert_eq!(ring.recv(&mut c), None, "nothing more");
        // 24, padding 8, 24.
        assert_eq!(c.head(), 32 + 24 + 8 + 24);
        assert_eq!(c.head(), ring.tail.load(Ordering::Relaxed));
        record((order, overtaken));
    });
    outcomes.assert(&[(vec![1, 2], false), (vec![1, 2], true), (vec![2, 1], false), (vec![2, 1], true)]);
}

/// The outcome of [`mpsc_stale_head_cache_and_reuse_of_space_without_zeroing`]: whether the
/// consumer's one attempt took A's first message, whether A's second claim succeeded, and
/// whether B's (made with the `head` it attached with) did.
type ReuseOutcome = (bool, bool, bool);

/// A 64-byte ring from 0, straight-line threads (no retry loops, so the exploration stays
/// small):
/// * A sends 24 bytes (a 40-byte record), then tries once to send 16 (32): that needs the
///   padding to the end and the space of the first record, so it succeeds only if the
///   consumer has taken the first one and published `head`; it then writes over the first
///   record's bytes, which nobody cleared.
/// * B attached when the ring was empty (`head_cache` 0) and tries once to reserve an empty
///   message, which it aborts. By then `tail` may be more than a capacity above its cache:
///   it must re-read `head` and answer `Full` or succeed, never call the ring corrupt.
///   (With a Relaxed load of `tail` in `mpsc::Producer::claim` it could read the new
///   `tail` and an old `head`, and did: loom found it with this model.)
/// * The consumer tries once, then, after joining both, drains the ring: exactly A's
///   committed messages, intact, in order. When A's second claim failed, the consumer ends
///   at position 64, where the first lap's record (A's first message or B's padding) still
///   lies, stamped for position 0: it must not take it.
#[test]
fn mpsc_stale_head_cache_and_reuse_of_space_without_zeroing() {
    let outcomes: Outcomes<ReuseOutcome> = Outcomes::new();
    let record = outcomes.recorder();
    builder(5).check(move || {
        let ring = Arc::new(Ring::new(64, 32, 0));
        let a = {
            let ring = ring.clone();
            thread::spawn(move || {
                let mut p = ring.mpsc();
                ring.send_mpsc(&mut p, 1, &msg(1, 0, 24)).unwrap();
                match ring.send_mpsc(&mut p, 1, &msg(1, 1, 16)) {
                    Ok(()) => true,
                    Err(RingError::Full) => false,
                    Err(e) => panic!("A: {e:?}"),
                }
            })
        };
        let b = {
            let ring = ring.clone();
            thread::spawn(move || {
                let mut p = mpsc::Producer::new(ring.geo, 0).unwrap();
                match p.try_reserve(&ring.tail, &ring.head, ring.mine(2), &ring.region, 0) {
                    Ok(res) => {
                        p.abort(&ring.region, res).unwrap();
                        true
                    }
                    Err(RingError::Full) => false,
                    Err(e) => panic!("B called an honest ring corrupt: {e:?}"),
                }
            })
        };
        let mut c = Consumer::new(ring.geo, 0).unwrap();
        let mut got = Vec::new();
        // Let the producers go first (see the module docs on what loom misses).
        thread::yield_now();
        got.extend(ring.recv(&mut c));
        let took_first = !got.is_empty();
        let a_second = a.join().unwrap();
        let b_ok = b.join().unwrap();
        while let Some(m) = ring.recv(&mut c) {
            got.push(m);
        }
        let mut want = vec![msg(1, 0, 24)];
        if a_second {
            want.push(msg(1, 1, 16));
        }
        assert_eq!(got, want);
        assert_eq!(c.head(), ring.tail.load(Ordering::Relaxed));
        record((took_first, a_second, b_ok));
    });
    outcomes.assert(&[
        (false, false, false),
        (false, false, true),
        (true, false, false),
        (true, false, true),
        (true, true, false),
        (true, true, true),
    ]);
}

/// A batch claim (`try_reserve_many`) against a single claim: the batch's records are
/// committed in reverse order, and the consumer takes them in claim order whichever is
/// committed first.
#[test]
fn mpsc_batch_claim_against_a_single_claim() {
    let outcomes: Outcomes<Vec<u8>> = Outcomes::new();
    let record = outcomes.recorder();
    builder(4).check(move || {
        let ring = Arc::new(Ring::new(128, 32, 0));
        let a = {
            let ring = ring.clone();
            thread::spawn(move || {
                let mut p = ring.mpsc();
                let lens = [8u32, 4];
                let (first, n) = p
                    .try_reserve_many(&ring.tail, &ring.head, ring.mine(1), &ring.region, lens.iter().copied())
                    .unwrap();
                assert_eq!(n, 2);
                let rs = [p.reservation_at(&ring.region, first, 8), p.reservation_at(&ring.region, first + 24, 4)];
                // Commit the second record first.
                for (seq, res) in rs.into_iter().enumerate().rev() {
                    ring.region.write(res.payload(), &msg(1, seq as u8, res.len as usize));
                    p.commit(&ring.region, res, res.len).unwrap();
                }
            })
        };
        let b = {
            let ring = ring.clone();
            thread::spawn(move || {
                let mut p = ring.mpsc();
                ring.send_mpsc(&mut p, 2, &msg(2, 0, 3)).unwrap();
            })
        };
        let mut c = Consumer::new(ring.geo, 0).unwrap();
        let got = ring.recv_n(&mut c, &ring.head, 3);
        a.join().unwrap();
        b.join().unwrap();
        let a_msgs: Vec<_> = got.iter().filter(|m| sender(m) == 1).cloned().collect();
        assert_eq!(a_msgs, [msg(1, 0, 8), msg(1, 1, 4)], "the batch in its order");
        assert!(got.contains(&msg(2, 0, 3)));
        assert_eq!(ring.recv(&mut c), None, "nothing more");
        record(got.iter().map(|m| sender(m)).collect());
    });
    outcomes.assert(&[vec![1, 1, 2], vec![2, 1, 1]]);
}

// ---------------------------------------------------------------------------------------
// (c) Reclaiming a dead producer's claim
// ---------------------------------------------------------------------------------------

/// How a reader got past a claim, as [`late_commit_and_reclaim_of_one_claim_exactly_one_wins`]
/// records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Passed {
    /// The message was there at the first look: no reclaim.
    Message,
    /// `reclaim` found the record committed (`NotStuck`).
    CommittedFirst,
    /// `reclaim` lost the stamp's compare-and-swap to the commit.
    LostTheSwap,
    /// `reclaim` turned the claim into padding.
    Reclaimed,
}

/// A producer's claim taken for dead while the producer still lives (the worst case death
/// detection could produce): the producer writes and commits (a CAS of the stamp from the
/// stale value it saw after claiming) while a reader, finding nothing at its position, runs
/// `reclaim` with every slot dead. The ring holds an earlier lap, so the stale value is a
/// valid stamp of position 0. In every interleaving exactly one side wins: the commit
/// returns `Ok` exactly when the reader delivers the message, `Err(Reclaimed)` exactly when
/// the reader skips the claim as padding, and nothing else is ever delivered.
#[test]
fn late_commit_and_reclaim_of_one_claim_exactly_one_wins() {
    let outcomes: Outcomes<(bool, Passed)> = Outcomes::new();
    let record = outcomes.recorder();
    builder(7).check(move || {
        let ring = Arc::new(Ring::after_a_lap(64, 32, 8));
        // Claimed before the threads start: [64, 88), recorded in slot 1.
        let mut p = ring.mpsc();
        let res = p.try_reserve(&ring.tail, &ring.head, ring.mine(1), &ring.region, 8).unwrap();
        assert_eq!((res.pos, res.old_stamp), (64, ring.geo.stamp(0, KIND_MESSAGE)));
        let producer = {
            let ring = ring.clone();
            thread::spawn(move || {
                ring.region.write(res.payload(), &msg(1, 0, 8));
                match p.commit(&ring.region, res, 8) {
                    Ok(()) => true,
                    Err(RingError::Reclaimed) => false,
                    Err(e) => panic!("{e:?}"),
                }
            })
        };
        let mut c = Consumer::new(ring.geo, 64).unwrap();
        let (got, passed) = match ring.recv(&mut c) {
            Some(m) => (Some(m), Passed::Message),
            None => {
                // SYNC POINT (as the queue's consumer): Acquire pairs with the claim's CAS.
                let tail = ring.tail.load(Ordering::Acquire);
                let outcome =
                    reclaim::reclaim(&ring.geo, &ring.region, c.head(), tail, &ring.claim_list(), |_| false).unwrap();
                let passed = match outcome {
                    Outcome::NotStuck => Passed::CommittedFirst,
                    Outcome::Wait("the record changed while reclaiming") => Passed::LostTheSwap,
                    Outcome::Reclaimed { end: 88, dead: 0b10 } => Passed::Reclaimed,
                    other => panic!("{other:?}"),
                };
                (ring.recv(&mut c), passed)
            }
        };
        let committed = producer.join().unwrap();
        assert_eq!(c.head(), 88, "the reader passed the claim either way");
        assert_eq!(got.is_some(), committed, "delivered exactly when the commit returned Ok");
        if let Some(m) = got {
            assert_eq!(m, msg(1, 0, 8));
        }
        assert_eq!(committed, passed != Passed::Reclaimed, "exactly one side won");
        assert_eq!(ring.recv(&mut c), None, "nothing else, ever");
        assert_eq!(c.head(), 88);
        record((committed, passed));
    });
    outcomes.assert(&[
        (false, Passed::Reclaimed),
        (true, Passed::Message),
        (true, Passed::CommittedFirst),
        (true, Passed::LostTheSwap),
    ]);
}

/// The claim record is visible to a reader that saw the claim: a producer commits one
/// message, then claims a second record and dies before writing it (its claim record is
/// rewritten for the new claim just before the `tail` CAS). The reader takes the first,
/// then, stuck at the second, runs `reclaim` only once its Acquire load of `tail` shows the
/// claim made: it must find the new claim record (the Release CAS on `tail` carries it),
/// never the first claim's stale one ("no claim record covers the position"), and pass.
#[test]
fn reclaim_after_tail_moved_always_finds_the_claim_record() {
    let outcomes: Outcomes<bool> = Outcomes::new();
    let record = outcomes.recorder();
    builder(7).check(move || {
        let ring = Arc::new(Ring::after_a_lap(64, 32, 8));
        let producer = {
            let ring = ring.clone();
            thread::spawn(move || {
                let mut p = ring.mpsc();
                ring.send_mpsc(&mut p, 1, &msg(1, 0, 8)).unwrap();
                // Claims [88, 112), then dies.
                let res = p.try_reserve(&ring.tail, &ring.head, ring.mine(1), &ring.region, 4).unwrap();
                assert_eq!(res.pos, 88);
            })
        };
        let mut c = Consumer::new(ring.geo, 64).unwrap();
        assert_eq!(ring.recv_n(&mut c, &ring.head, 1), [msg(1, 0, 8)]);
        let mut waited = false;
        loop {
            assert_eq!(ring.recv(&mut c), None);
            // SYNC POINT (as the queue's consumer): Acquire pairs with the claim's CAS.
            let tail = ring.tail.load(Ordering::Acquire);
            if tail <= c.head() {
                waited = true;
                thread::yield_now();
                continue;
            }
            let outcome =
                reclaim::reclaim(&ring.geo, &ring.region, c.head(), tail, &ring.claim_list(), |_| false).unwrap();
            assert_eq!(outcome, Outcome::Reclaimed { end: 112, dead: 0b10 });
            break;
        }
        assert_eq!(ring.recv(&mut c), None, "padding only");
        assert_eq!(c.head(), 112);
        producer.join().unwrap();
        record(waited);
    });
    outcomes.assert(&[false, true]);
}

/// Two producers race for the last room of a 64-byte ring at position 24 (one 40-byte
/// record fits, ending at the end of the region, and the 24 bytes left at its start are too
/// few for another); each tries once. The winner keeps its reservation and dies (never commits); the loser, which
/// may have recorded a claim of the same position before its compare-and-swap failed, gets
/// `Full` and lives on, waiting for room. A reader stuck at the winner's claim then asks
/// `reclaim` with only the loser alive: it must pass the claim. A loser that kept its lost
/// claim recorded would look like a live claimant, and the reader would wait for it while
/// it waits for room (the two processes waited for each other in `tests/reclaim.rs`).
#[test]
fn a_producer_that_finds_no_room_leaves_no_claim_recorded() {
    let outcomes: Outcomes<usize> = Outcomes::new();
    let record = outcomes.recorder();
    builder(4).check(move || {
        let ring = Arc::new(Ring::new(64, 32, 24));
        let racers: Vec<_> = [1usize, 2]
            .into_iter()
            .map(|slot| {
                let ring = ring.clone();
                thread::spawn(move || {
                    let mut p = ring.mpsc();
                    match p.try_reserve(&ring.tail, &ring.head, ring.mine(slot), &ring.region, 24) {
                        Ok(res) => {
                            assert_eq!(res.pos, 24);
                            true // and dies holding it
                        }
                        Err(RingError::Full) => false,
                        Err(e) => panic!("{e:?}"),
                    }
                })
            })
            .collect();
        let won: Vec<bool> = racers.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(won.iter().filter(|w| **w).count(), 1, "exactly one claim fits");
        let (winner, loser) = if won[0] { (1, 2) } else { (2, 1) };
        // SYNC POINT (as the queue's consumer): Acquire pairs with the claim's CAS.
        let tail = ring.tail.load(Ordering::Acquire);
        assert_eq!(tail, 64);
        let outcome = reclaim::reclaim(&ring.geo, &ring.region, 24, tail, &ring.claim_list(), |s| s == loser).unwrap();
        assert_eq!(outcome, Outcome::Reclaimed { end: 64, dead: 1 << winner }, "the live loser holds nothing");
        record(winner);
    });
    outcomes.assert(&[1, 2]);
}

// ---------------------------------------------------------------------------------------
// (d) The wait/wake protocol
// ---------------------------------------------------------------------------------------

/// `FUTEX_WAIT`/`FUTEX_WAKE` as a mutex and a condition variable. The kernel checks the
/// word and queues the sleeper atomically with respect to wakers; the mutex does the same
/// here: a waker that changed the word before locking is seen by a sleeper that locks after
/// it, and a sleeper that locked first is already waiting when the waker notifies.
#[derive(Default)]
struct LoomFutex {
    lock: Mutex<()>,
    cv: Condvar,
    /// Bookkeeping: did anyone block on the condition variable (outside loom's view).
    blocked: std::sync::atomic::AtomicBool,
}

impl Futex for LoomFutex {
    fn wait(&self, word: &AtomicU32, expected: u32, deadline: Option<Instant>) -> Woke {
        assert!(deadline.is_none(), "deadlines are not modelled");
        let guard = self.lock.lock().unwrap();
        if word.load(Ordering::Relaxed) == expected {
            self.blocked.store(true, std::sync::atomic::Ordering::Relaxed);
            drop(self.cv.wait(guard).unwrap());
        }
        Woke::Maybe
    }

    fn wake_all(&self, _word: &AtomicU32) {
        let _guard = self.lock.lock().unwrap();
        self.cv.notify_all();
    }
}

/// One direction's wait words, a flag standing for "the condition", and the futex.
struct Waiting {
    line: WaitLine,
    flag: AtomicBool,
    /// For the models with more than one publication: how many were made.
    count: AtomicU32,
    futex: LoomFutex,
}

impl Default for Waiting {
    fn default() -> Waiting {
        Waiting {
            line: WaitLine::default(),
            flag: AtomicBool::new(false),
            count: AtomicU32::new(0),
            futex: LoomFutex::default(),
        }
    }
}

impl Waiting {
    fn words(&self) -> WaitWords<'_> {
        self.line.words()
    }

    /// The sleeper: `block` until the count is at least `n`.
    fn sleep_until_count(&self, n: u32) {
        let got = wait::block(
            self.words(),
            1,
            &self.futex,
            None,
            || (self.count.load(Ordering::Acquire) >= n).then_some(()),
            &mut || {},
        );
        assert_eq!(got, Some(()));
    }

    /// The sleeper: `block` until the flag is set. Returns whether it slept on the futex.
    fn sleep_until_flag(&self) -> bool {
        let mut sleeps = 0;
        let got = wait::block(
            self.words(),
            1,
            &self.futex,
            None,
            || self.flag.load(Ordering::Acquire).then_some(()),
            &mut || sleeps += 1,
        );
        assert_eq!(got, Some(()));
        sleeps > 0
    }
}

/// A sleeper waits for a flag that a waker sets and then announces with `wake`: the sleeper
/// always returns (loom reports a lost wakeup as a deadlock). Every path is taken: the
/// re-check sees the flag; the futex wait finds the epoch changed; the sleeper blocks and
/// the wake reaches it; and `wake` skips the system call when nobody is inside the futex
/// wait (its `asleep` set is empty).
#[test]
fn wait_protocol_never_loses_a_wakeup() {
    let outcomes = Outcomes::new();
    let record = outcomes.recorder();
    builder(5).check(move || {
        let w = Arc::new(Waiting::default());
        let waker = {
            let w = w.clone();
            thread::spawn(move || {
                w.flag.store(true, Ordering::Release);
                wait::wake(w.words(), &w.futex)
            })
        };
        let slept = w.sleep_until_flag();
        let woke = waker.join().unwrap();
        let blocked = w.futex.blocked.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(w.line.waiters.load(Ordering::Relaxed), 0, "the count goes back to zero");
        // (called FUTEX_WAIT, blocked in it, the waker called FUTEX_WAKE)
        record((slept, blocked, woke));
    });
    outcomes.assert(&[
        // The flag was set before the sleeper counted itself, or it counted itself and a
        // re-check saw the flag: a waker that saw the bit bumped the epoch but made no
        // system call (nobody was inside FUTEX_WAIT).
        (false, false, false),
        (true, false, false), // the epoch moved before FUTEX_WAIT: no system call needed
        (true, false, true),  // the same, but the waker saw the `asleep` bit and called
        (true, true, true),   // blocked, and the wake reached it
    ]);
}

/// A thread that sets the flag (Release), then announces it with `wake`.
fn set_flag_then(w: &Arc<Waiting>, wake: fn(WaitWords<'_>, &LoomFutex)) -> thread::JoinHandle<()> {
    let w = w.clone();
    thread::spawn(move || {
        w.flag.store(true, Ordering::Release);
        wake(w.words(), &w.futex);
    })
}

/// A waiter for a sync first polls, registered as a waiter (`wait::poll_registered`, as a
/// producer waiting for another process's sync under `Wait::Adaptive`), and, its polling
/// bound passed, sleeps (`wait::block`), while a waker sets the flag and wakes: the waiter
/// always returns (loom reports a lost wakeup as a deadlock), whether the waker's wake meets
/// the poller's registration, the gap between the two, or the sleeper; and the waiter set
/// ends empty.
#[test]
fn a_poller_that_then_sleeps_never_loses_a_wakeup() {
    builder(4).check(|| {
        let w = Arc::new(Waiting::default());
        let waker = set_flag_then(&w, |words, futex| {
            wait::wake(words, futex);
        });
        // A bound already passed: one look, registered, then the sleep.
        let polled =
            wait::poll_registered(w.words(), 1, Instant::now(), || w.flag.load(Ordering::Acquire).then_some(()));
        if polled.is_none() {
            w.sleep_until_flag();
        }
        waker.join().unwrap();
        assert_eq!(w.line.waiters.load(Ordering::Relaxed), 0, "the waiter set goes back to zero");
    });
}

/// The waker publishes twice (a count to 1, then 2, each followed by `wake`), and the
/// sleeper waits for each in turn: the model of [`a_sleeper_that_waits_again_is_woken_again`].
fn publish_twice_and_wait_for_each(wake: fn(WaitWords<'_>, &LoomFutex)) {
    builder(3).check(move || {
        let w = Arc::new(Waiting::default());
        let waker = {
            let w = w.clone();
            thread::spawn(move || {
                for n in 1..=2 {
                    w.count.store(n, Ordering::Release);
                    wake(w.words(), &w.futex);
                }
            })
        };
        for n in 1..=2 {
            w.sleep_until_count(n);
        }
        waker.join().unwrap();
        assert_eq!(w.line.waiters.load(Ordering::Relaxed), 0, "the waiter set goes back to zero");
    });
}

/// Two wakes and a sleeper that waits again: the second wake skips the system call for a
/// sleeper still registered on the first epoch (woken, not yet run) and makes it for one
/// that waits on the second. Whichever epoch the sleeper waits on, it always returns (loom
/// reports a lost wakeup as a deadlock).
#[test]
fn a_sleeper_that_waits_again_is_woken_again() {
    publish_twice_and_wait_for_each(|words, futex| {
        wait::wake(words, futex);
    });
}

/// Negative control for the model above: a waker that looks in the set of the epoch it
/// bumped *to* (not from) misses the sleeper inside the wait on the old one.
#[test]
#[should_panic(expected = "deadlock")]
fn a_waker_looking_in_the_wrong_asleep_set_loses_a_wakeup() {
    publish_twice_and_wait_for_each(wake_in_the_new_set);
}

/// [`wait::wake`] with its fault: it looks in the `asleep` set of the new epoch.
fn wake_in_the_new_set(words: WaitWords<'_>, futex: &LoomFutex) {
    shmq::sync::atomic::fence(Ordering::SeqCst);
    if words.waiters.load(Ordering::Relaxed) == 0 {
        return;
    }
    let old = words.epoch.fetch_add(1, Ordering::Release);
    shmq::sync::atomic::fence(Ordering::SeqCst);
    if words.asleep[wait::asleep_set(old.wrapping_add(1))].load(Ordering::Relaxed) != 0 {
        futex.wake_all(words.epoch);
    }
}

/// The waker's half of the protocol as it would be without its fence: a copy of
/// [`wait::wake`] minus `fence(SeqCst)`.
fn wake_without_fence(words: WaitWords<'_>, futex: &impl Futex) -> bool {
    if words.waiters.load(Ordering::Relaxed) == 0 {
        return false;
    }
    words.epoch.fetch_add(1, Ordering::Release);
    futex.wake_all(words.epoch);
    true
}

/// Negative control: the model has teeth. Without the waker's fence the waker may read a
/// stale waiter count of zero while the sleeper's re-check reads a stale flag (the
/// store-buffering pattern), the wakeup is lost, and loom reports the deadlock.
#[test]
#[should_panic(expected = "deadlock")]
fn wait_protocol_without_the_wakers_fence_loses_a_wakeup() {
    builder(3).check(|| {
        let w = Arc::new(Waiting::default());
        let waker = {
            let w = w.clone();
            thread::spawn(move || {
                w.flag.store(true, Ordering::Release);
                wake_without_fence(w.words(), &w.futex);
            })
        };
        w.sleep_until_flag();
        waker.join().unwrap();
    });
}

/// The same, with the sleeper's fence missing (a local copy of [`wait::block`] without it).
#[test]
#[should_panic(expected = "deadlock")]
fn wait_protocol_without_the_sleepers_fence_loses_a_wakeup() {
    builder(3).check(|| {
        let w = Arc::new(Waiting::default());
        let waker = {
            let w = w.clone();
            thread::spawn(move || {
                w.flag.store(true, Ordering::Release);
                wait::wake(w.words(), &w.futex);
            })
        };
        loop {
            let epoch = w.line.epoch.load(Ordering::Acquire);
            w.line.waiters.fetch_or(1, Ordering::Relaxed);
            // fence(SeqCst) omitted
            if w.flag.load(Ordering::Acquire) {
                w.line.waiters.fetch_and(!1, Ordering::Relaxed);
                break;
            }
            w.futex.wait(&w.line.epoch, epoch, None);
            w.line.waiters.fetch_and(!1, Ordering::Relaxed);
        }
        waker.join().unwrap();
    });
}

/// Closing: the closer stores the flag and calls `wake_unconditionally` (no fence, no
/// waiter check): a sleeper still always wakes, through its Acquire load of the epoch.
#[test]
fn wake_unconditionally_reaches_a_sleeper() {
    builder(5).check(|| {
        let w = Arc::new(Waiting::default());
        let closer = set_flag_then(&w, wait::wake_unconditionally);
        w.sleep_until_flag();
        closer.join().unwrap();
    });
}

/// The protocol and the ring together, as the queue uses them: the consumer blocks with the
/// ring's `peek` as its condition, the producer commits, publishes and wakes; the producer
/// blocks for space the other way round. Records of 40 bytes in a 64-byte ring from 32:
/// the first does not fit before the end, so the producer publishes padding and then finds
/// the ring full (the padding holds the space it needs). The consumer skips the padding
/// while polling and must hand that space back (publish `head`, wake the producer) even
/// though no message follows: otherwise each waits for the other (the wedge the negative
/// control below shows). The second message wraps again and needs the first taken.
#[test]
fn consumer_sleeping_on_an_spsc_ring_is_woken_by_the_producer() {
    builder(3).check(|| ring_and_wait_protocol(true));
}

/// Negative control for the model above: a consumer that keeps padding it skipped while
/// waiting to itself (publishes `head` only after taking a message) deadlocks with a
/// producer that needs that space.
#[test]
#[should_panic(expected = "deadlock")]
fn consumer_keeping_skipped_padding_to_itself_wedges_the_producer() {
    builder(3).check(|| ring_and_wait_protocol(false));
}

/// The body of the two models above. It shares its state through `std::sync::Arc`, not
/// loom's: when loom reports the deadlock (a panic), dropping a loom `Arc` while unwinding
/// panics again inside loom and aborts the test binary.
fn ring_and_wait_protocol(publish_padding: bool) {
    let ring = std::sync::Arc::new(Ring::new(64, 32, 32));
    let data = std::sync::Arc::new(Waiting::default());
    let space = std::sync::Arc::new(Waiting::default());
    let sent = [msg(1, 0, 20), msg(1, 1, 20)];
    let producer = {
        let (ring, data, space, sent) = (ring.clone(), data.clone(), space.clone(), sent.clone());
        thread::spawn(move || {
            let mut p = spsc::Producer::new(ring.geo, 32, 32).unwrap();
            for m in &sent {
                let res = wait::block(
                    space.words(),
                    1,
                    &space.futex,
                    None,
                    || match p.try_reserve(&ring.tail, &ring.head, &ring.region, m.len() as u32) {
                        Ok(r) => Some(r),
                        Err(RingError::Full) => {
                            // Padding may have been published: the consumer must see it.
                            wait::wake(data.words(), &data.futex);
                            None
                        }
                        Err(e) => panic!("{e:?}"),
                    },
                    &mut || {},
                )
                .unwrap();
                ring.region.write(res.payload(), m);
                p.commit(&ring.region, res, m.len() as u32).unwrap();
                p.publish(&ring.tail);
                wait::wake(data.words(), &data.futex);
            }
        })
    };
    let mut c = Consumer::new(ring.geo, 32).unwrap();
    for m in &sent {
        let rec = wait::block(
            data.words(),
            1,
            &data.futex,
            None,
            || match c.peek(&ring.region).unwrap() {
                Some(rec) => Some(rec),
                None => {
                    if publish_padding && c.has_unpublished() {
                        c.publish(&ring.head);
                        wait::wake(space.words(), &space.futex);
                    }
                    None
                }
            },
            &mut || {},
        )
        .unwrap();
        let mut v = vec![0; rec.len as usize];
        ring.region.read(rec.payload, &mut v);
        assert_eq!(&v, m);
        c.release(rec);
        c.publish(&ring.head);
        wait::wake(space.words(), &space.futex);
    }
    producer.join().unwrap();
    // 24 (padding), 40, 24 (padding), 40.
    assert_eq!(c.head(), 32 + 32 + 40 + 24 + 40);
}

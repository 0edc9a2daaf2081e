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
//! What loom cannot see: it never lets a load read a value from the future (no load
//! buffering), its SeqCst loads and stores are weaker than C++'s (the protocol relies on
//! `fence(SeqCst)`, which loom does model), and it bounds preemptions (set per model below).
//! The futex is modelled with a mutex and a condition variable; deadlines are not modelled.

#![cfg(loom)]

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::sync::Mutex as StdMutex;
use std::time::Instant;

use loom::sync::atomic::{AtomicBool, AtomicU32, AtomicU64};
use loom::sync::{Arc, Condvar, Mutex};
use loom::thread;

use shmq::ring::consumer::Consumer;
use shmq::ring::{Geometry, Region, Reservation, RingError, mpsc, spsc};
use shmq::sync::Futex;
use shmq::sync::atomic::Ordering;
use shmq::sync::futex::Woke;
use shmq::sync::wait::{self, WaitWords};

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

    fn zero(&self, index: usize, len: usize) {
        LoomRegion::each_word(index, len, |w, off, n, _| self.merge(w, off, &[0; 8][..n]));
    }
}

/// A ring in loom memory: the region and the three shared control words.
struct Ring {
    geo: Geometry,
    region: LoomRegion,
    tail: AtomicU64,
    head: AtomicU64,
    releasing: AtomicU64,
}

impl Ring {
    /// A tiny ring (below the library's `MIN_CAPACITY`, which exists for the segment, not
    /// for the algorithms) so that few messages wrap it, starting at position `pos`.
    fn new(capacity: u64, max_message: u32, pos: u64) -> Ring {
        Ring {
            geo: Geometry { capacity, max_message },
            region: LoomRegion::new(capacity as usize),
            tail: AtomicU64::new(pos),
            head: AtomicU64::new(pos),
            releasing: AtomicU64::new(pos),
        }
    }

    /// Peeks, copies and releases one message (publishing `head` after it), or `None`
    /// after publishing any padding skipped on the way.
    fn recv(&self, c: &mut Consumer) -> Option<Vec<u8>> {
        match c.peek(&self.region, &self.releasing).expect("honest ring") {
            Some(rec) => {
                let mut v = vec![0; rec.len as usize];
                self.region.read(rec.payload, &mut v);
                c.release(&self.region, rec, &self.releasing);
                c.publish(&self.head);
                Some(v)
            }
            None => {
                if c.has_unpublished() {
                    c.publish(&self.head);
                }
                None
            }
        }
    }
}

/// The payload of message `seq` of producer `who`: distinct in every byte, non-zero.
fn msg(who: u8, seq: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| 0x80 | (who << 4) | (seq << 2) | (i as u8 & 3)).collect()
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
/// until then). The consumer gets all three, in order, byte for byte.
#[test]
fn spsc_messages_arrive_in_order_across_the_wrap_and_a_full_ring() {
    let outcomes = Outcomes::new();
    let record = outcomes.recorder();
    builder(3).check(move || {
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
                    p.commit(&ring.region, res, m.len() as u32);
                    p.publish(&ring.tail);
                }
                saw_full
            })
        };
        let mut c = Consumer::new(ring.geo, 32, false).unwrap();
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
        assert_eq!(c.head(), 32 + 16 + 16 + 24 + 16);
        record(saw_full);
    });
    // Both: the consumer was quick enough, or it was not.
    outcomes.assert(&[false, true]);
}

/// The consumer publishes `head` once per batch; the producer commits twice and publishes
/// `tail` once. The consumer polls headers, not `tail`, so it may take a record before the
/// producer publishes it.
#[test]
fn spsc_batched_commits_and_releases() {
    let outcomes = Outcomes::new();
    let record = outcomes.recorder();
    builder(3).check(move || {
        let ring = Arc::new(Ring::new(64, 32, 40));
        let sent = [msg(1, 0, 16), msg(1, 1, 3)];
        let producer = {
            let ring = ring.clone();
            let sent = sent.clone();
            thread::spawn(move || {
                let mut p = spsc::Producer::new(ring.geo, 40, 40).unwrap();
                for m in &sent {
                    let res = p.try_reserve(&ring.tail, &ring.head, &ring.region, m.len() as u32).unwrap();
                    ring.region.write(res.payload(), m);
                    p.commit(&ring.region, res, m.len() as u32);
                }
                p.publish(&ring.tail);
            })
        };
        let mut c = Consumer::new(ring.geo, 40, false).unwrap();
        let mut got = Vec::new();
        let mut before_tail = false;
        while got.len() < sent.len() {
            match c.peek(&ring.region, &ring.releasing).unwrap() {
                Some(rec) => {
                    before_tail |= ring.tail.load(Ordering::Relaxed) < 40 + 24;
                    let mut v = vec![0; rec.len as usize];
                    ring.region.read(rec.payload, &mut v);
                    c.release(&ring.region, rec, &ring.releasing);
                    got.push(v);
                }
                None => thread::yield_now(),
            }
        }
        c.publish(&ring.head);
        producer.join().unwrap();
        assert_eq!(got, sent);
        record(before_tail);
    });
    outcomes.assert(&[false, true]);
}

// ---------------------------------------------------------------------------------------
// (b) MPSC
// ---------------------------------------------------------------------------------------

/// What one MPSC model execution looked like: the order in which the consumer received the
/// producers' messages, and whether it saw the later record committed while the one at its
/// position was still claimed (or not yet marked).
type MpscOutcome = (Vec<u8>, bool);

/// Whether any header other than the one at `head` holds a committed message. Payload bytes
/// never look like one (`msg` sets the top bit of every byte, so their kind byte is not 2).
fn committed_elsewhere(ring: &Ring, head: u64) -> bool {
    (0..ring.geo.capacity as usize).step_by(8).filter(|&i| i != ring.geo.index(head)).any(|i| {
        shmq::layout::record::decode(ring.region.word(i).load(Ordering::Acquire)).kind
            == shmq::layout::record::KIND_MESSAGE
    })
}

/// Two producers claim, write and commit one message each, concurrently, into a 64-byte
/// ring starting at 40: whichever claims second wraps (with padding, if it is the smaller
/// one). The consumer receives both, intact, once each, in claim order; every order and the
/// overtaking case (the later record committed while the earlier claim is still being
/// written) are explored.
#[test]
fn mpsc_two_producers_commit_concurrently() {
    let outcomes: Outcomes<MpscOutcome> = Outcomes::new();
    let record = outcomes.recorder();
    builder(3).check(move || {
        let ring = Arc::new(Ring::new(64, 32, 40));
        let producers: Vec<_> = [(1u8, 8usize), (2, 12)]
            .into_iter()
            .map(|(who, len)| {
                let ring = ring.clone();
                thread::spawn(move || {
                    let mut p = mpsc::Producer::new(ring.geo, who, 40).unwrap();
                    let res = p.try_reserve(&ring.tail, &ring.head, &ring.region, len as u32).unwrap();
                    ring.region.write(res.payload(), &msg(who, 0, len));
                    p.commit(&ring.region, res, len as u32);
                })
            })
            .collect();
        let mut c = Consumer::new(ring.geo, 40, true).unwrap();
        let mut order = Vec::new();
        let mut overtaken = false;
        while order.len() < 2 {
            match ring.recv(&mut c) {
                None => {
                    overtaken |= committed_elsewhere(&ring, c.head());
                    thread::yield_now();
                }
                Some(m) => {
                    let who = (m[0] >> 4) & 7;
                    assert_eq!(m, msg(who, 0, if who == 1 { 8 } else { 12 }), "intact");
                    assert!(!order.contains(&who), "delivered twice");
                    order.push(who);
                }
            }
        }
        for p in producers {
            p.join().unwrap();
        }
        assert_eq!(ring.recv(&mut c), None, "nothing more");
        assert_eq!(c.head(), ring.tail.load(Ordering::Relaxed));
        // Everything consumed was zeroed: the next lap starts from empty headers.
        for w in &ring.region.words {
            assert_eq!(w.load(Ordering::Relaxed), 0);
        }
        record((order, overtaken));
    });
    outcomes.assert(&[(vec![1, 2], false), (vec![1, 2], true), (vec![2, 1], false), (vec![2, 1], true)]);
}

/// The outcome of [`mpsc_stale_head_cache_and_reuse_of_zeroed_space`]: whether the
/// consumer's one attempt took A's first message, whether A's second claim succeeded, and
/// whether B's (made with the `head` it attached with) did.
type ReuseOutcome = (bool, bool, bool);

/// A 32-byte ring, straight-line threads (no retry loops, so loom explores everything):
/// * A sends a 16-byte message (24 bytes), then tries once to send 8 bytes: that needs the
///   padding to the end and the space of the first record, so it succeeds only if the
///   consumer has taken, zeroed and published the first one, and it then writes over the
///   zeroed bytes (a zeroing not ordered before the publication would wipe it);
/// * B attached when the ring was empty (`head_cache` 0) and tries once to reserve an empty
///   message, which it aborts. By then `tail` may be more than a capacity above its cache:
///   it must re-read `head` and answer `Full` or succeed, never call the ring corrupt.
///   (With a Relaxed load of `tail` in `mpsc::Producer::claim` it could read the new
///   `tail` and an old `head`, and did: loom found it with this model.)
/// * The consumer tries once, then, after joining both, drains the ring: exactly A's
///   committed messages, intact, in order.
#[test]
fn mpsc_stale_head_cache_and_reuse_of_zeroed_space() {
    let outcomes: Outcomes<ReuseOutcome> = Outcomes::new();
    let record = outcomes.recorder();
    builder(3).check(move || {
        let ring = Arc::new(Ring::new(32, 16, 0));
        let a = {
            let ring = ring.clone();
            thread::spawn(move || {
                let mut p = mpsc::Producer::new(ring.geo, 1, 0).unwrap();
                let res = p.try_reserve(&ring.tail, &ring.head, &ring.region, 16).unwrap();
                ring.region.write(res.payload(), &msg(1, 0, 16));
                p.commit(&ring.region, res, 16);
                match p.try_reserve(&ring.tail, &ring.head, &ring.region, 8) {
                    Ok(res) => {
                        ring.region.write(res.payload(), &msg(1, 1, 8));
                        p.commit(&ring.region, res, 8);
                        true
                    }
                    Err(RingError::Full) => false,
                    Err(e) => panic!("A: {e:?}"),
                }
            })
        };
        let b = {
            let ring = ring.clone();
            thread::spawn(move || {
                let mut p = mpsc::Producer::new(ring.geo, 2, 0).unwrap();
                match p.try_reserve(&ring.tail, &ring.head, &ring.region, 0) {
                    Ok(res) => {
                        p.abort(&ring.region, res);
                        true
                    }
                    Err(RingError::Full) => false,
                    Err(e) => panic!("B called an honest ring corrupt: {e:?}"),
                }
            })
        };
        let mut c = Consumer::new(ring.geo, 0, true).unwrap();
        let mut got = Vec::new();
        got.extend(ring.recv(&mut c));
        let took_first = !got.is_empty();
        let a_second = a.join().unwrap();
        let b_ok = b.join().unwrap();
        while let Some(m) = ring.recv(&mut c) {
            got.push(m);
        }
        let mut want = vec![msg(1, 0, 16)];
        if a_second {
            want.push(msg(1, 1, 8));
        }
        assert_eq!(got, want);
        assert_eq!(c.head(), ring.tail.load(Ordering::Relaxed));
        record((took_first, a_second, b_ok));
    });
    outcomes.assert(&[
        (false, false, false), // B claimed after A's padding: Full
        (false, false, true),  // B claimed first, or between A's two claims
        (true, false, false),
        (true, false, true),
        (true, true, false), // B came after A's second claim (its stale cache re-read)
        (true, true, true),  // the consumer handed back enough for both
    ]);
}

/// A batch claim (`try_reserve_many`, headers left empty) against a single claim: the
/// consumer takes the batch's records in order whichever of them is committed first.
#[test]
fn mpsc_batch_claim_against_a_single_claim() {
    let outcomes: Outcomes<Vec<u8>> = Outcomes::new();
    let record = outcomes.recorder();
    builder(2).check(move || {
        let ring = Arc::new(Ring::new(64, 32, 0));
        let a = {
            let ring = ring.clone();
            thread::spawn(move || {
                let mut p = mpsc::Producer::new(ring.geo, 1, 0).unwrap();
                let lens = [8u32, 4];
                let (first, n) =
                    p.try_reserve_many(&ring.tail, &ring.head, &ring.region, lens.iter().copied()).unwrap();
                assert_eq!(n, 2);
                let second = Reservation { pos: first.pos + 16, index: first.index + 16, len: 4 };
                // Commit the second record first.
                for (res, seq) in [(second, 1), (first, 0)] {
                    ring.region.write(res.payload(), &msg(1, seq, res.len as usize));
                    p.commit(&ring.region, res, res.len);
                }
            })
        };
        let b = {
            let ring = ring.clone();
            thread::spawn(move || {
                let mut p = mpsc::Producer::new(ring.geo, 2, 0).unwrap();
                let res = p.try_reserve(&ring.tail, &ring.head, &ring.region, 3).unwrap();
                ring.region.write(res.payload(), &msg(2, 0, 3));
                p.commit(&ring.region, res, 3);
            })
        };
        let mut c = Consumer::new(ring.geo, 0, true).unwrap();
        let mut got = Vec::new();
        while got.len() < 3 {
            match ring.recv(&mut c) {
                Some(m) => got.push(m),
                None => thread::yield_now(),
            }
        }
        a.join().unwrap();
        b.join().unwrap();
        let a_msgs: Vec<_> = got.iter().filter(|m| m[0] >> 4 & 7 == 1).cloned().collect();
        assert_eq!(a_msgs, [msg(1, 0, 8), msg(1, 1, 4)], "the batch in its order");
        assert!(got.contains(&msg(2, 0, 3)));
        record(got.iter().map(|m| m[0] >> 4 & 7).collect());
    });
    outcomes.assert(&[vec![1, 1, 2], vec![2, 1, 1]]);
}

// ---------------------------------------------------------------------------------------
// (c) The wait/wake protocol
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
#[derive(Default)]
struct Waiting {
    waiters: AtomicU64,
    epoch: AtomicU32,
    flag: AtomicBool,
    futex: LoomFutex,
}

impl Waiting {
    fn words(&self) -> WaitWords<'_> {
        WaitWords { waiters: &self.waiters, epoch: &self.epoch }
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
/// the wake reaches it; and `wake` skips the system call when nobody is counted.
#[test]
fn wait_protocol_never_loses_a_wakeup() {
    let outcomes = Outcomes::new();
    let record = outcomes.recorder();
    builder(3).check(move || {
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
        assert_eq!(w.waiters.load(Ordering::Relaxed), 0, "the count goes back to zero");
        // (called FUTEX_WAIT, blocked in it, the waker called FUTEX_WAKE)
        record((slept, blocked, woke));
    });
    outcomes.assert(&[
        (false, false, false), // the flag was set before the sleeper counted itself
        (false, false, true),  // counted, then the re-check saw the flag
        (true, false, true),   // the epoch moved before FUTEX_WAIT
        (true, true, true),    // blocked, and the wake reached it
    ]);
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
            let epoch = w.epoch.load(Ordering::Acquire);
            w.waiters.fetch_or(1, Ordering::Relaxed);
            // fence(SeqCst) omitted
            if w.flag.load(Ordering::Acquire) {
                w.waiters.fetch_and(!1, Ordering::Relaxed);
                break;
            }
            w.futex.wait(&w.epoch, epoch, None);
            w.waiters.fetch_and(!1, Ordering::Relaxed);
        }
        waker.join().unwrap();
    });
}

/// Closing: the closer stores the flag and calls `wake_unconditionally` (no fence, no
/// waiter check): a sleeper still always wakes, through its Acquire load of the epoch.
#[test]
fn wake_unconditionally_reaches_a_sleeper() {
    builder(3).check(|| {
        let w = Arc::new(Waiting::default());
        let closer = {
            let w = w.clone();
            thread::spawn(move || {
                w.flag.store(true, Ordering::Release);
                wait::wake_unconditionally(w.words(), &w.futex);
            })
        };
        w.sleep_until_flag();
        closer.join().unwrap();
    });
}

/// The protocol and the ring together, as `queue.rs` uses them: the consumer blocks with
/// the ring's `peek` as its condition, the producer commits, publishes and wakes. Twice, so
/// that the consumer may sleep on a later epoch; then the producer blocks for space the
/// other way round.
#[test]
fn consumer_sleeping_on_an_spsc_ring_is_woken_by_the_producer() {
    builder(2).check(|| {
        // Capacity 64 from 32: the second record (32 bytes, and the zero header after it)
        // fits only once the first is taken.
        let ring = Arc::new(Ring::new(64, 32, 32));
        let data = Arc::new(Waiting::default());
        let space = Arc::new(Waiting::default());
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
                            Err(RingError::Full) => None,
                            Err(e) => panic!("{e:?}"),
                        },
                        &mut || {},
                    )
                    .unwrap();
                    ring.region.write(res.payload(), m);
                    p.commit(&ring.region, res, m.len() as u32);
                    p.publish(&ring.tail);
                    wait::wake(data.words(), &data.futex);
                }
            })
        };
        let mut c = Consumer::new(ring.geo, 32, false).unwrap();
        for m in &sent {
            let rec = wait::block(
                data.words(),
                1,
                &data.futex,
                None,
                || c.peek(&ring.region, &ring.releasing).unwrap(),
                &mut || {},
            )
            .unwrap();
            let mut v = vec![0; rec.len as usize];
            ring.region.read(rec.payload, &mut v);
            assert_eq!(&v, m);
            c.release(&ring.region, rec, &ring.releasing);
            c.publish(&ring.head);
            wait::wake(space.words(), &space.futex);
        }
        producer.join().unwrap();
    });
}

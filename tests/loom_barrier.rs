//! loom models of the asymmetric wait/wake protocol: the form that runs in production when
//! the kernel has `membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED)` and the process registered.
//!
//! Run with
//! `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test -p shmq --test loom_barrier --release`.
//! The very code of `wait::block` and `wait::wake` runs here, with a [`Futex`] whose
//! `light_waker` is true (the waker orders its publication before its waiter check with a
//! compiler fence only) and whose `heavy_barrier` is the model of membarrier below.
//! `tests/loom.rs` checks the symmetric form (a `SeqCst` fence on both sides), which runs
//! when the kernel refuses membarrier or the process set `SHMQ_MEMBARRIER=0`.
//!
//! # The model of membarrier
//! loom has no membarrier and cannot put a fence into another thread. What the kernel
//! promises is modelled as a handshake between the sleeper and the waker thread:
//!
//! * The sleeper's `heavy_barrier` executes `fence(SeqCst)`, posts a request (the IPI),
//!   waits until the waker has answered it or has finished, and executes `fence(SeqCst)`
//!   again. The kernel's `smp_mb()` before and after the IPIs, and `smp_call_function_many`
//!   waiting for every handler, are those two fences and the wait.
//! * The waker answers at its *instruction boundaries*: before its publication, between its
//!   publication and its load of the waiter set (inside `light_waker`, which `wait::wake`
//!   calls exactly there), and after its last operation. Answering is `fence(SeqCst)` (the
//!   `smp_mb()` of the IPI handler) followed by a Release store that the sleeper reads with
//!   Acquire (the handler's completion, which the sender waits for). loom's scheduler picks
//!   the boundary at which the request is first seen, so every placement of the IPI is
//!   explored, including none at all before the waker finished (a thread that is not running
//!   passes a full barrier at its next context switch, which the finished case stands for).
//!
//! # What the models prove, and what they assume
//! Proved (for one sleeper and one light waker, loom's preemption bound 3): with the barrier
//! as modelled, `block` never misses a wakeup from a waker that uses only a compiler fence,
//! at any placement of the IPI, and the waiter set returns to zero. Three negative controls
//! show the model has teeth: without the heavy barrier, with a barrier that does not wait for
//! the waker's answer (a fence on the sleeper's side only), and with the waker's check moved
//! before its publication (what the compiler fence forbids), a wakeup is lost.
//!
//! Assumed about the kernel and the hardware, not checked here:
//! * membarrier returns only after every CPU running a thread of a registered process ran a
//!   full barrier, and a registered thread not running passes one before it next runs user
//!   code (`membarrier(2)`; the kernel's `membarrier_global_expedited`).
//! * Interrupts are precise: at the boundary where the IPI lands, every earlier instruction
//!   of the waker has executed and no later one has (true of x86-64 and arm64), so the
//!   handler's barrier orders the waker's earlier stores before its later loads. The
//!   compiler fence in `wake` keeps the publication and the waiter load in source order.
//! * Boundaries other than the three modelled ones (inside the epoch increment, between it
//!   and `FUTEX_WAKE`) are equivalent, for the sleeper, to "after the waiter load".
//! * The futex is a mutex and a condition variable (as in `tests/loom.rs`); deadlines are not
//!   modelled (the uncovered sleeper's bounded sleeps are tested for real in the library).

#![cfg(loom)]

use std::collections::BTreeSet;
use std::sync::Mutex as StdMutex;
use std::time::Instant;

use loom::sync::atomic::{AtomicBool, AtomicU32};
use loom::sync::{Arc, Condvar, Mutex};
use loom::thread;

use shmq::sync::Futex;
use shmq::sync::atomic::{Ordering, fence};
use shmq::sync::futex::Woke;
use shmq::sync::wait::{self, WaitWords};

mod loom_support;
use loom_support::WaitLine;

/// Where the waker answered the sleeper's barrier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Landed {
    /// Before the waker's publication.
    Before,
    /// Between the publication and the load of the waiter set.
    Between,
    /// After the waker's last operation (or it had finished: not running).
    After,
}

/// The membarrier handshake between the sleeper (requests) and the one waker (answers).
#[derive(Default)]
struct Ipi {
    /// Requests posted by the sleeper's barrier.
    requested: AtomicU32,
    /// The last request the waker answered.
    answered: AtomicU32,
    /// The waker thread finished (it is no longer running).
    finished: AtomicBool,
    /// Where each request was answered (bookkeeping outside loom's view).
    landed: StdMutex<Vec<Landed>>,
}

impl Ipi {
    /// The waker at an instruction boundary: runs the IPI handler if a request is pending.
    fn boundary(&self, at: Landed) {
        // Acquire: pairs with the sleeper's posting, so what the sleeper did before its
        // barrier (raising its bit) is visible to what the waker does after answering.
        let r = self.requested.load(Ordering::Acquire);
        // Relaxed: only this thread writes `answered`.
        if r != self.answered.load(Ordering::Relaxed) {
            // The handler's smp_mb().
            fence(Ordering::SeqCst);
            self.landed.lock().unwrap().push(at);
            // Release: the sleeper, once it sees the answer, sees everything the waker did
            // before this boundary.
            self.answered.store(r, Ordering::Release);
        }
    }

    /// The waker thread ends: it passes any pending barrier at its next context switch.
    fn finish(&self) {
        self.boundary(Landed::After);
        // Release: as for an answer.
        self.finished.store(true, Ordering::Release);
    }

    /// The sleeper's membarrier. `wait_for_answer: false` is the broken variant of a negative
    /// control (the IPI is not waited for: only the sleeper's own fence remains).
    fn barrier(&self, wait_for_answer: bool) {
        fence(Ordering::SeqCst);
        // Release: see `boundary`.
        let r = self.requested.fetch_add(1, Ordering::Release) + 1;
        if wait_for_answer {
            // Acquire: pairs with the waker's answer or its end.
            while self.answered.load(Ordering::Acquire) < r && !self.finished.load(Ordering::Acquire) {
                thread::yield_now();
            }
        }
        fence(Ordering::SeqCst);
    }
}

/// How the modelled sleeper's barrier behaves.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Barrier {
    /// As the kernel does it.
    Membarrier,
    /// Negative control: no heavy barrier at all.
    None,
    /// Negative control: the sleeper's fence only, the IPI not waited for.
    NotWaited,
}

/// `FUTEX_WAIT`/`FUTEX_WAKE` as a mutex and a condition variable (as in `tests/loom.rs`),
/// with light wakers and the modelled membarrier.
struct LightFutex {
    lock: Mutex<()>,
    cv: Condvar,
    ipi: Ipi,
    barrier: Barrier,
    /// Bookkeeping: did anyone block on the condition variable.
    blocked: std::sync::atomic::AtomicBool,
}

impl LightFutex {
    fn new(barrier: Barrier) -> LightFutex {
        LightFutex {
            lock: Mutex::new(()),
            cv: Condvar::new(),
            ipi: Ipi::default(),
            barrier,
            blocked: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

impl Futex for LightFutex {
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

    /// Called by `wait::wake` between the caller's publication and its load of the waiter
    /// set: an instruction boundary of the waker, where an IPI may land.
    fn light_waker(&self) -> bool {
        self.ipi.boundary(Landed::Between);
        true
    }

    fn heavy_barrier(&self) -> bool {
        match self.barrier {
            Barrier::Membarrier => self.ipi.barrier(true),
            Barrier::NotWaited => self.ipi.barrier(false),
            Barrier::None => return false,
        }
        true
    }

    /// False so that `block` sleeps without a deadline even when the barrier did not run
    /// (deadlines are not modelled): the negative control then shows the lost wakeup as a
    /// deadlock instead of a bounded delay.
    fn wakers_may_be_light(&self) -> bool {
        false
    }
}

/// One direction's wait words, a flag standing for "the condition", and the futex.
struct Waiting {
    line: WaitLine,
    flag: AtomicBool,
    futex: LightFutex,
}

impl Waiting {
    fn new(barrier: Barrier) -> Waiting {
        Waiting { line: WaitLine::default(), flag: AtomicBool::new(false), futex: LightFutex::new(barrier) }
    }

    fn words(&self) -> WaitWords<'_> {
        self.line.words()
    }

    /// The light waker: publish, then `wait::wake`, with the IPI boundaries around them.
    fn publish_and_wake(&self) -> bool {
        self.futex.ipi.boundary(Landed::Before);
        self.flag.store(true, Ordering::Release);
        let woke = wait::wake(self.words(), &self.futex);
        self.futex.ipi.finish();
        woke
    }

    /// The sleeper: `wait::block` until the flag is set. Returns whether it slept.
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

fn builder() -> loom::model::Builder {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(3);
    b.max_branches = 100_000;
    b
}

/// A sleeper waits for a flag that a light waker (compiler fence only) sets and announces
/// with `wake`; the sleeper's membarrier covers it. The sleeper always returns (loom reports
/// a lost wakeup as a deadlock), and every placement of the IPI is taken, each with the
/// outcomes it allows: the set of outcomes explored must be exactly the acceptable one.
#[test]
fn a_light_waker_covered_by_the_sleepers_membarrier_never_loses_a_wakeup() {
    type Outcome = (bool, bool, bool, Vec<Landed>);
    let seen: std::sync::Arc<StdMutex<BTreeSet<Outcome>>> = Default::default();
    let record = seen.clone();
    builder().check(move || {
        let w = Arc::new(Waiting::new(Barrier::Membarrier));
        let waker = {
            let w = w.clone();
            thread::spawn(move || w.publish_and_wake())
        };
        let slept = w.sleep_until_flag();
        let woke = waker.join().unwrap();
        let blocked = w.futex.blocked.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(w.line.waiters.load(Ordering::Relaxed), 0, "the waiter set goes back to zero");
        let landed = w.futex.ipi.landed.lock().unwrap().clone();
        record.lock().unwrap().insert((slept, blocked, woke, landed));
    });
    let seen = seen.lock().unwrap().clone();
    use Landed::*;
    // (called FUTEX_WAIT, blocked in it, the waker called FUTEX_WAKE, where IPIs landed)
    let acceptable: BTreeSet<Outcome> = [
        // The flag was set and the waker gone before the sleeper raised its bit: the
        // finished waker stands for the answer; no wake call.
        (false, false, false, vec![]),
        // The IPI landed before the publication: the waker's check then sees the bit unless
        // the sleeper already saw the flag and cleared it. A waker that saw the bit bumps the
        // epoch and calls FUTEX_WAKE only if the sleeper is inside the wait (its `asleep`
        // bit): a sleeper still re-checking (it sees the flag) or entering the wait (it finds
        // the epoch moved) costs no system call. A woken sleeper finds the flag on its next
        // round's first look, before its barrier: no second IPI.
        (false, false, false, vec![Before]),
        (true, false, false, vec![Before]),
        (true, false, true, vec![Before]),
        (true, true, true, vec![Before]),
        // Between publication and check: the re-check sees the flag (no wake call: the
        // sleeper is not inside the wait).
        (false, false, false, vec![Between]),
        // After the check: the publication is visible to the re-check.
        (false, false, false, vec![After]),
    ]
    .into_iter()
    .collect();
    assert_eq!(seen, acceptable, "the outcomes explored differ from the acceptable ones");
}

/// Negative control: a light waker and a sleeper that issues no heavy barrier (only its
/// own `SeqCst` fence): the store-buffering pattern loses the wakeup and loom reports the
/// deadlock.
#[test]
#[should_panic(expected = "deadlock")]
fn a_light_waker_without_the_sleepers_barrier_loses_a_wakeup() {
    builder().check(|| {
        let w = Arc::new(Waiting::new(Barrier::None));
        let waker = {
            let w = w.clone();
            thread::spawn(move || w.publish_and_wake())
        };
        w.sleep_until_flag();
        waker.join().unwrap();
    });
}

/// Negative control: a "barrier" that posts the IPI but does not wait for the waker's
/// answer is only the sleeper's own fence: the wakeup is lost. The synchronous wait of
/// membarrier is what the protocol relies on.
#[test]
#[should_panic(expected = "deadlock")]
fn a_barrier_that_does_not_wait_for_the_other_cpu_loses_a_wakeup() {
    builder().check(|| {
        let w = Arc::new(Waiting::new(Barrier::NotWaited));
        let waker = {
            let w = w.clone();
            thread::spawn(move || w.publish_and_wake())
        };
        w.sleep_until_flag();
        waker.join().unwrap();
    });
}

/// Negative control: the waker's waiter check moved before its publication (the reordering
/// the compiler fence forbids): an IPI that lands between the two cannot help, and the
/// wakeup is lost even with the sleeper's membarrier.
#[test]
#[should_panic(expected = "deadlock")]
fn a_waker_that_checks_before_it_publishes_loses_a_wakeup_despite_the_barrier() {
    builder().check(|| {
        let w = Arc::new(Waiting::new(Barrier::Membarrier));
        let waker = {
            let w = w.clone();
            thread::spawn(move || {
                w.futex.ipi.boundary(Landed::Before);
                // The check, with its boundary (light_waker) before it, then the publication,
                // with the boundary between the two.
                wait::wake(w.words(), &w.futex);
                w.futex.ipi.boundary(Landed::Between);
                w.flag.store(true, Ordering::Release);
                w.futex.ipi.finish();
            })
        };
        w.sleep_until_flag();
        waker.join().unwrap();
    });
}

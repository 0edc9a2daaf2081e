//! What the loom model files share: a builder, outcome sets and flags read after an
//! exploration (`tests/loom_cursors.rs`, `tests/loom_inflight.rs`), and one wait line's
//! words (`tests/loom.rs`, `tests/loom_barrier.rs`).

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::sync::Mutex as StdMutex;
use std::sync::atomic::{AtomicBool as StdAtomicBool, AtomicUsize as StdAtomicUsize};

/// One wait line's words, laid out as `sync::wait` reads them from a segment's header (the
/// line pretends to be at byte 384 of one).
pub struct WaitLine {
    pub waiters: loom::sync::atomic::AtomicU64,
    pub epoch: loom::sync::atomic::AtomicU32,
    pub asleep: [loom::sync::atomic::AtomicU64; shmq::sync::wait::ASLEEP_SETS],
    pub tags: [loom::sync::atomic::AtomicU64; shmq::sync::wait::SLOTS],
}

impl Default for WaitLine {
    fn default() -> WaitLine {
        WaitLine {
            waiters: Default::default(),
            epoch: Default::default(),
            asleep: Default::default(),
            tags: std::array::from_fn(|_| Default::default()),
        }
    }
}

impl WaitLine {
    pub fn words(&self) -> shmq::sync::wait::WaitWords<'_> {
        shmq::sync::wait::WaitWords {
            waiters: &self.waiters,
            epoch: &self.epoch,
            asleep: &self.asleep,
            tags: &self.tags,
            line: 384,
        }
    }
}

/// Bookkeeping outside loom's view: counters and flags the models read after a run.
pub const STD: std::sync::atomic::Ordering = std::sync::atomic::Ordering::Relaxed;

/// A loom builder with the given preemption bound (`None`: exhaustive). The models use
/// bounds past which loom finds no further execution (raising them changes nothing: within
/// loom's model they are explored exhaustively); the negative controls use small ones,
/// enough to find the violation.
pub fn builder(preemptions: impl Into<Option<usize>>) -> loom::model::Builder {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = preemptions.into();
    b.max_branches = 100_000;
    b
}

/// Collects the outcomes of a model's executions (and counts the executions);
/// [`Outcomes::assert`] compares the set with the acceptable ones after the exploration.
pub struct Outcomes<T>(std::sync::Arc<(StdMutex<BTreeSet<T>>, StdAtomicUsize)>);

impl<T: Ord + Debug + Clone> Outcomes<T> {
    pub fn new() -> Outcomes<T> {
        Outcomes(std::sync::Arc::new((StdMutex::new(BTreeSet::new()), StdAtomicUsize::new(0))))
    }

    pub fn recorder(&self) -> impl Fn(T) + Send + Sync + 'static
    where
        T: Send + 'static,
    {
        let seen = self.0.clone();
        move |t| {
            seen.0.lock().unwrap().insert(t);
            seen.1.fetch_add(1, STD);
        }
    }

    pub fn assert(&self, acceptable: &[T]) {
        let seen = self.0.0.lock().unwrap().clone();
        eprintln!("{} executions, {} outcomes", self.0.1.load(STD), seen.len());
        let want: BTreeSet<T> = acceptable.iter().cloned().collect();
        assert_eq!(seen, want, "the outcomes explored differ from the acceptable ones");
    }
}

/// Runs a negative control: explores `holds` (one execution of a deliberately broken
/// variant, saying whether the invariant held) with the given preemption bound, and returns
/// whether some execution broke the invariant. The violation is recorded outside loom, not
/// panicked on, so the exploration runs to the end and the control cannot pass by crashing
/// for another reason.
pub fn violated(preemptions: impl Into<Option<usize>>, holds: impl Fn() -> bool + Sync + Send + 'static) -> bool {
    let seen = Seen::default();
    let flag = seen.clone();
    builder(preemptions).check(move || {
        if !holds() {
            flag.set();
        }
    });
    seen.get()
}

/// A flag set from inside a model, read after the exploration (negative controls).
#[derive(Clone, Default)]
pub struct Seen(std::sync::Arc<StdAtomicBool>);

impl Seen {
    pub fn set(&self) {
        self.0.store(true, STD);
    }

    pub fn get(&self) -> bool {
        self.0.load(STD)
    }
}

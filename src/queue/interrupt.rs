//! [`Interrupter`]: wakes a call blocked in a handle, from another thread or a signal handler.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::stats::Role;
use crate::segment::Segment;
use crate::sync::futex::OsFutex;
use crate::sync::wait::{self, WaitWords};

/// What a handle shares with its [`Interrupter`]s: the mapping (which an interrupter
/// touches, so it must outlive the handle if they do) and the interruption flag.
pub(super) struct Shared {
    pub(super) seg: Segment,
    /// Set by [`Interrupter::interrupt`], cleared by the wait that reports it. Only this
    /// process reads it: it is private memory, not part of the queue.
    pub(super) interrupted: AtomicBool,
    /// A member's subscription entry: it sleeps on that entry's wait line.
    pub(super) sub: Option<usize>,
}

impl Shared {
    pub(super) fn new(seg: Segment, sub: Option<usize>) -> Arc<Shared> {
        Arc::new(Shared { seg, interrupted: AtomicBool::new(false), sub })
    }

    /// Whether an interruption is pending; if so, uses it up. Called by the waiting thread
    /// only (the one thread that clears the flag), when its condition is not met.
    #[inline]
    pub(super) fn take_interruption(&self) -> bool {
        // Relaxed: the flag carries no data. The interrupter's epoch increment (Release)
        // makes it visible to a sleeper whose re-check follows its Acquire load of the
        // epoch (sync::wait); a spinner sees it within a few polls.
        self.interrupted.load(Ordering::Relaxed) && self.interrupted.swap(false, Ordering::Relaxed)
    }
}

/// The futex pair a handle of `role` sleeps on: space for a producer, data for the consumer.
#[inline]
pub(super) fn words(seg: &Segment, role: Role, sub: Option<usize>) -> WaitWords<'_> {
    match (role, sub) {
        (Role::Producer, _) => seg.space_words(),
        (Role::Consumer, None) => seg.data_words(),
        (Role::Consumer, Some(i)) => super::gate::sub_words(seg, i),
    }
}

/// Wakes the call blocked in one [`Producer`](super::Producer) or
/// [`Consumer`](super::Consumer), from any thread or from a signal handler; made by
/// [`Producer::interrupter`](super::Producer::interrupter) or
/// [`Consumer::interrupter`](super::Consumer::interrupter).
///
/// [`interrupt`](Self::interrupt) makes the handle's current blocking call, or if none is
/// waiting its next call that has to wait, return [`Error::Interrupted`](crate::Error::Interrupted).
/// The calls that can wait are `send`, `send_timeout`, `send_batch`, `reserve`,
/// `reserve_timeout`, `recv`, `recv_timeout`, `recv_batch`, `recv_batch_timeout` and
/// `peek`; the `try_` calls never wait and never report it. An interruption is reported
/// once: it stays pending until a call that has to wait uses it up, so one that lands just
/// before the call goes to sleep is not lost, and several before that are reported once.
/// A call that can complete at once (a message is there, there is room) completes, and
/// leaves the interruption pending.
///
/// It is `Clone`, `Send` and `Sync`, and keeps the handle's mapping alive (not its
/// participant slot: the handle deregisters when dropped), so it may outlive the handle;
/// interrupting then interrupts nothing (a new handle has interrupters of its own). It works
/// within this process only.
///
/// ```
/// use std::time::Duration;
/// use shmq::{Consumer, Error, Options, Queue};
/// # let name = format!("doc-interrupt-{}", std::process::id());
/// Queue::create(&name, Options::new())?;
/// let mut rx = Consumer::open(&name)?;
/// let stop = rx.interrupter();
/// let t = std::thread::spawn(move || {
///     std::thread::sleep(Duration::from_millis(10));
///     stop.interrupt();
/// });
/// assert!(matches!(rx.recv(), Err(Error::Interrupted)));   // the queue stays empty
/// t.join().unwrap();
/// # drop(rx); Queue::remove(&name)?;
/// # Ok::<(), shmq::Error>(())
/// ```
#[derive(Clone)]
pub struct Interrupter {
    shared: Arc<Shared>,
    role: Role,
}

impl Interrupter {
    pub(super) fn new(shared: &Arc<Shared>, role: Role) -> Interrupter {
        Interrupter { shared: shared.clone(), role }
    }

    /// Interrupts the handle's current or next blocking call (see the type's docs).
    ///
    /// Async-signal-safe: it only stores to atomics and makes one `FUTEX_WAKE` system call
    /// (no allocation, no lock, no panic), so a signal handler may call it. It wakes every
    /// thread sleeping on the same side of the queue (the other producers of an MPSC queue
    /// too); they find nothing new and sleep again.
    pub fn interrupt(&self) {
        // Relaxed: published by the Release increment of the epoch that follows.
        self.shared.interrupted.store(true, Ordering::Relaxed);
        // A sleeper either reads the new epoch (and then sees the flag in its re-check) or
        // sleeps on the old value, which this increment makes stale: FUTEX_WAIT returns at
        // once, or this wake reaches it. Unconditional: no waiter-set check, so no fence
        // pairing is needed.
        wait::wake_unconditionally(words(&self.shared.seg, self.role, self.shared.sub), &OsFutex);
    }
}

impl std::fmt::Debug for Interrupter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interrupter")
            .field("queue", &self.shared.seg.config().name)
            .field("role", &self.role)
            .field("pending", &self.shared.interrupted.load(Ordering::Relaxed))
            .finish()
    }
}

//! How a side waits for its condition: spin, block on a futex, or spin then block; and how
//! the other side wakes it without a system call when nobody sleeps.
//!
//! The protocol, per direction, with a waiter set, an epoch word, and each slot's entry in
//! the segment's sleep table (its tag: the line and epoch it registered on):
//!
//! ```text
//! sleeper (slot bit `me`)               waker
//! e = epoch                             publish (Release)
//! tag[me] = (line, e)                   fence(SeqCst)        // SYNC POINT: Dekker pair
//! waiters |= me  (Release)              if some waiter's tag is (line, epoch now):
//! fence(SeqCst)   // SYNC POINT             epoch += 1
//! if condition: waiters &= !me; done        FUTEX_WAKE(epoch, all)   (see below)
//! FUTEX_WAIT(epoch, e, timeout)
//! waiters &= !me; loop
//! ```
//!
//! The waiter "count" is a set: one bit per participant slot. A participant that dies asleep
//! leaves its bit set, and whoever takes its slot over clears it (a count could not be
//! repaired: nobody would know whose increment was left behind), so a dead sleeper costs
//! wake calls only until its slot is reused.
//! The two fences make this a Dekker pair: either the sleeper's re-check sees the
//! publication, or the waker sees the waiter (and its tag: the bit is stored with Release
//! after it, read with Acquire) and bumps the epoch, which the sleeper's `FUTEX_WAIT`
//! notices whether it runs before (the value differs: it returns at once) or after (the
//! wake reaches it). A waiter whose tag names an older epoch needs no bump: the epoch has
//! left the value its `FUTEX_WAIT` expects, so it returns at once, registers again with a
//! new tag, and re-checks. That is most often a reader woken but not yet run, whose bit
//! stays up until it runs: on a busy machine thousands of messages later, each of which
//! would otherwise cost an atomic increment and a full fence. A busy queue makes no system
//! call: the waker only loads a word that stays in its cache while nobody sleeps.
//!
//! A second Dekker pair keeps the `FUTEX_WAKE` system call for sleepers that may be inside
//! the wait, and for the one waker that owes it to them: a sleeper about to wait on epoch
//! `e` sets its bit in the `asleep` set of `e` ([`asleep_set`]), fences, and waits; a waker
//! that bumped the epoch from `e` fences and makes the call only if that set holds the bit
//! of a slot whose tag is (this line, `e`). A sleeper on `e` can be inside only until the
//! epoch leaves `e`, so the waker of that bump wakes it; later wakers find its bit (until it
//! runs again) with a tag on an older epoch, and skip it. (With the sets alone, each such
//! sleeper cost one system call per round of the sets: with four subscriptions whose members
//! were woken but not yet scheduled, `shmq bench --fanout` made about 215 wake calls per
//! 1000 messages at 64 B, for about 25 sleeps.)

use std::time::{Duration, Instant};

use super::atomic::{AtomicU32, AtomicU64, Ordering, fence};
use super::futex::{Futex, Woke};
pub use crate::layout::{ASLEEP_SETS, SLOTS, sleep_tag};
use std::sync::atomic::compiler_fence;

/// How a handle waits when it must (queue full for a producer, empty for a consumer).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Wait {
    /// Busy-poll with a CPU pause hint: the lowest latency, one core at 100% while waiting.
    Spin,
    /// Sleep in the kernel (futex), after giving the CPU once to whoever is ready to run (a
    /// `sched_yield`, which returns at once when nobody is): no CPU while waiting, a wakeup
    /// costs microseconds.
    Block,
    /// Spin for up to [`ADAPTIVE_SPIN`], then sleep: the default.
    #[default]
    Adaptive,
}

impl Wait {
    /// The lowercase name: `spin`, `block` or `adaptive` (as the CLI and C names use).
    pub fn as_str(&self) -> &'static str {
        match self {
            Wait::Spin => "spin",
            Wait::Block => "block",
            Wait::Adaptive => "adaptive",
        }
    }
}

impl std::fmt::Display for Wait {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Wait {
    type Err = crate::Error;

    /// Parses `spin`, `block` or `adaptive`.
    ///
    /// ```
    /// assert_eq!("block".parse::<shmq::Wait>()?, shmq::Wait::Block);
    /// assert!("nap".parse::<shmq::Wait>().is_err());
    /// # Ok::<(), shmq::Error>(())
    /// ```
    fn from_str(s: &str) -> Result<Wait, crate::Error> {
        match s {
            "spin" => Ok(Wait::Spin),
            "block" => Ok(Wait::Block),
            "adaptive" => Ok(Wait::Adaptive),
            _ => Err(crate::Error::InvalidArgument(format!("wait {s:?}: use spin, block or adaptive"))),
        }
    }
}

/// How long [`Wait::Adaptive`] spins before it sleeps. Long enough to cover a peer's
/// reply in a request/response exchange, short enough not to burn a core on an idle queue.
pub const ADAPTIVE_SPIN: Duration = Duration::from_micros(50);

/// How long a sleeper that could not issue the heavy barrier sleeps before re-checking
/// (see `sync::membarrier`).
pub const UNCOVERED_SLEEP: Duration = Duration::from_millis(1);

/// How many polls pass between two clock reads while spinning.
const SPINS_PER_CLOCK_READ: u32 = 64;

/// One direction's futex pair, as references into wherever it lives.
#[derive(Clone, Copy)]
pub struct WaitWords<'a> {
    /// Set of sleepers (or sleepers-to-be): bit `i` for participant slot `i`.
    pub waiters: &'a AtomicU64,
    /// The futex word.
    pub epoch: &'a AtomicU32,
    /// Sets of sleepers inside (or entering) the futex wait, by the epoch they wait on:
    /// bit `i` of set [`asleep_set`]`(e)` for participant `i` waiting on epoch `e`.
    pub asleep: &'a [AtomicU64; ASLEEP_SETS],
    /// The sleep table, by participant slot (shared by every line of the segment): entry
    /// `i` is [`sleep_tag`]`(line, e)` for the line and epoch slot `i` last slept on.
    pub tags: &'a [AtomicU64; SLOTS],
    /// This line's byte offset in the segment (its identity in the tags).
    pub line: usize,
}

/// Which `asleep` set a sleeper on epoch `e` registers in (and the waker that bumps the
/// epoch from `e` looks in).
#[inline]
pub fn asleep_set(e: u32) -> usize {
    e as usize % ASLEEP_SETS
}

/// Waits until `poll` returns `Some`, by `policy`, until `deadline` (`None`: forever).
/// Returns `None` if the deadline passed first. `me` is the caller's bit in the waiter set:
/// one bit, `1 << slot` for its participant slot (no two concurrent sleepers may share one). `on_sleep` runs
/// before each futex sleep (it counts them). `poll` must be cheap and must not block.
pub fn wait_for<T>(
    policy: Wait,
    words: WaitWords<'_>,
    me: u64,
    futex: &impl Futex,
    deadline: Option<Instant>,
    mut poll: impl FnMut() -> Option<T>,
    mut on_sleep: impl FnMut(),
) -> Option<T> {
    if let Some(r) = poll() {
        return Some(r);
    }
    let spin_until = match policy {
        Wait::Spin => deadline,
        Wait::Adaptive => {
            let s = Instant::now() + ADAPTIVE_SPIN;
            Some(deadline.map_or(s, |d| d.min(s)))
        }
        Wait::Block => {
            return match yield_then_poll(deadline, &mut poll) {
                Some(r) => Some(r),
                None => block(words, me, futex, deadline, poll, &mut on_sleep),
            };
        }
    };
    let mut spins = 0u32;
    loop {
        if let Some(r) = poll() {
            return Some(r);
        }
        std::hint::spin_loop();
        spins = spins.wrapping_add(1);
        if spins % SPINS_PER_CLOCK_READ == 0 {
            if let Some(until) = spin_until {
                if Instant::now() >= until {
                    break;
                }
            }
        }
    }
    if policy == Wait::Spin {
        // Spinning ended only because the deadline passed.
        return poll();
    }
    if let Some(r) = yield_then_poll(deadline, &mut poll) {
        return Some(r);
    }
    block(words, me, futex, deadline, poll, &mut on_sleep)
}

/// Before a sleep: gives the CPU once to whoever is ready to run (`sched_yield`, which
/// returns at once when nobody is), then looks again, unless `deadline` has passed. On a
/// machine with more busy processes than CPUs, what a reader waits for is often in the
/// hands of a process that only needs the CPU: a sleep would cost a heavy barrier, a wake
/// call and two context switches, and come back to the same state. With four blocking
/// subscriptions on two CPUs (`shmq bench --fanout`), members slept about 1.4 times per
/// 1000 messages without it, 0.1 with it, and two members of one subscription delivered
/// twice as many messages.
fn yield_then_poll<T>(deadline: Option<Instant>, poll: &mut impl FnMut() -> Option<T>) -> Option<T> {
    if deadline.is_some_and(|d| Instant::now() >= d) {
        return None;
    }
    std::thread::yield_now();
    poll()
}

/// The sleeping half of the protocol; see the module docs. `me`: as in [`wait_for`].
pub fn block<T>(
    words: WaitWords<'_>,
    me: u64,
    futex: &impl Futex,
    deadline: Option<Instant>,
    mut poll: impl FnMut() -> Option<T>,
    on_sleep: &mut impl FnMut(),
) -> Option<T> {
    loop {
        // Acquire: pairs with the Release of an unconditional increment (a queue closed, a
        // handle interrupted: `wake_unconditionally`): if we read its value, `poll` below
        // sees the flag stored before it. It also keeps this read before the waiter bit.
        let epoch = words.epoch.load(Ordering::Acquire);
        // Our tag, before our bit: a waker that sees the bit sees which epoch we wait on.
        debug_assert!(me.is_power_of_two());
        // Relaxed: published by the Release below (and ordered by the fence after it).
        words.tags[me.trailing_zeros() as usize].store(sleep_tag(words.line, epoch), Ordering::Relaxed);
        // Release: a waker that reads our bit (Acquire) reads the tag above, or a later one
        // (written after this registration ended). The SeqCst fence that follows orders it
        // before the re-check.
        words.waiters.fetch_or(me, Ordering::Release);
        // SYNC POINT: pairs with the fence in `wake`; see the module docs.
        fence(Ordering::SeqCst);
        // A look before the heavy barrier (a system call that interrupts every CPU running
        // a registered process): on a busy queue what we wait for has often come already.
        // Finding it is conclusive; not finding it is not (a light waker may have
        // published without a fence), so the decisive re-check follows the barrier.
        if let Some(r) = poll() {
            // Relaxed: as below.
            words.waiters.fetch_and(!me, Ordering::Relaxed);
            return Some(r);
        }
        // SYNC POINT: pairs with a light waker's compiler fence (sync::membarrier).
        let covered = futex.heavy_barrier();
        if let Some(r) = poll() {
            // Relaxed: a waker that still sees our bit makes one spurious wake call at most.
            words.waiters.fetch_and(!me, Ordering::Relaxed);
            return Some(r);
        }
        on_sleep();
        // Without the heavy barrier a light waker in another process could miss our bit:
        // sleep in bounded slices so that such a miss costs a delay, never a hang.
        let slice = match deadline {
            _ if covered || !futex.wakers_may_be_light() => deadline,
            None => Some(Instant::now() + UNCOVERED_SLEEP),
            Some(d) => Some(d.min(Instant::now() + UNCOVERED_SLEEP)),
        };
        // In the set of the epoch we wait on, which our tag names: only the waker that
        // bumps it from there needs to make the system call for us (later wakers find our
        // bit, but an older epoch in our tag, until we clear it).
        let asleep = &words.asleep[asleep_set(epoch)];
        // Release: as for the waiter bit (the tag was written before both). The fence below
        // orders it before the futex wait's read of `epoch`.
        asleep.fetch_or(me, Ordering::Release);
        // SYNC POINT: pairs with the waker's fence between its bump of `epoch` and its load
        // of `asleep`: either the waker that bumps it from `epoch` sees our bit (and makes
        // the wake call), or our futex wait reads the bumped epoch (and returns at once).
        fence(Ordering::SeqCst);
        let woke = futex.wait(words.epoch, epoch, slice);
        // Relaxed: a waker that still sees the bit makes one spurious wake call at most.
        asleep.fetch_and(!me, Ordering::Relaxed);
        // Relaxed: as above.
        words.waiters.fetch_and(!me, Ordering::Relaxed);
        if woke == Woke::TimedOut && deadline.is_some_and(|d| Instant::now() >= d) {
            return poll();
        }
    }
}

/// The waking half: call after publishing. Returns whether a wake call was made.
#[inline]
pub fn wake(words: WaitWords<'_>, futex: &impl Futex) -> bool {
    // SYNC POINT: pairs with the sleeper's fence: orders our publication (done by the
    // caller) before the load of the waiter set. A registered process needs only a compiler
    // fence: sleepers issue a membarrier that fences this CPU for us (sync::membarrier).
    if futex.light_waker() {
        compiler_fence(Ordering::SeqCst);
    } else {
        fence(Ordering::SeqCst);
    }
    // Acquire: pairs with the sleepers' Release of their bits (their tags are read below);
    // ordered after our publication by the fence above.
    let waiters = words.waiters.load(Ordering::Acquire);
    if waiters == 0 {
        return false;
    }
    // Only a sleeper registered on the current epoch needs a bump: one registered on an
    // older epoch finds the epoch changed when it tries to wait (and re-registers, and
    // re-checks, before it sleeps), or is inside the wait and was woken by the waker that
    // bumped past its epoch. Most often that is a sleeper woken but not yet run: its bit
    // stays up until it runs, and on a busy machine that can be thousands of messages. So a
    // busy queue whose readers sleep and are woken pays one bump and at most one system call
    // per sleep, not an atomic increment and a full fence per message. Relaxed: a bump by
    // another waker meanwhile only makes ours unneeded.
    let now = words.epoch.load(Ordering::Relaxed);
    if !tagged(words, waiters, now) {
        return false;
    }
    // Release: a sleeper that sees the new epoch also sees our publication (belt and
    // braces: it re-checks after the fence anyway). A sleeper that has not reached its
    // futex wait yet finds the epoch changed there and returns at once.
    let old = words.epoch.fetch_add(1, Ordering::Release);
    // SYNC POINT: pairs with the sleeper's fence between its `asleep` bit and its futex
    // wait: only a sleeper that may already be inside needs the system call. A sleeper
    // about to sleep (its waiter bit up, re-checking) costs a bump, not a system call:
    // that is most of them on a busy queue with blocking readers.
    fence(Ordering::SeqCst);
    // Only sleepers on the epoch we bumped from: one on an older epoch was woken by the
    // waker that bumped past it (it may not have run yet: a woken reader of a busy queue
    // would otherwise cost a system call per message until it clears its bit), and one on
    // the new epoch is the next waker's. Acquire: pairs with the sleeper's Release of its
    // bit, so its tag below is the one it wrote for this wait, or a later one (that wait is
    // over). Ordered after the bump by the fence above.
    let set = words.asleep[asleep_set(old)].load(Ordering::Acquire);
    if set == 0 || !tagged(words, set, old) {
        return false;
    }
    futex.wake_all(words.epoch);
    true
}

/// The participants waiting on `words`' current epoch: bit `i` when slot `i`'s waiter bit is
/// up and its tag names this line and the epoch now current (sleepers, sleepers-to-be, and
/// [`poll_registered`] pollers); a sleeper woken by the last bump and not yet run does not
/// count. A snapshot for heuristics (who waits now), never for the protocol: it may be stale
/// when it returns.
pub fn waiting_now(words: WaitWords<'_>) -> u64 {
    // Relaxed, all three: a hint; no decision that needs ordering rests on it.
    let want = sleep_tag(words.line, words.epoch.load(Ordering::Relaxed));
    let mut set = words.waiters.load(Ordering::Relaxed);
    let mut out = 0;
    while set != 0 {
        let i = set.trailing_zeros() as usize;
        set &= set - 1;
        if words.tags[i].load(Ordering::Relaxed) == want {
            out |= 1 << i;
        }
    }
    out
}

/// Polls until `poll` returns `Some` or `until` passes (then `None`), giving the CPU away
/// between looks (`sched_yield`), registered meanwhile as a waiter of `words` (tag and bit,
/// as a sleeper registers) without ever sleeping: [`waiting_now`] counts the caller, and a
/// waker pays an epoch bump for it but no system call (it is in no `asleep` set). For waits
/// expected to end within a fraction of a millisecond, where a futex sleep would add a
/// wake-up's latency (tens of microseconds on a virtual machine) to every one. `me`: as in
/// [`wait_for`]. Lost wakes are impossible: nothing here sleeps.
pub fn poll_registered<T>(
    words: WaitWords<'_>,
    me: u64,
    until: Instant,
    mut poll: impl FnMut() -> Option<T>,
) -> Option<T> {
    debug_assert!(me.is_power_of_two());
    // Relaxed: the tag only needs to name an epoch that was current at some point here; a
    // waker bumping past it meanwhile makes our registration stale, which is harmless.
    let epoch = words.epoch.load(Ordering::Relaxed);
    // Relaxed: published by the Release of the bit, as in `block`.
    words.tags[me.trailing_zeros() as usize].store(sleep_tag(words.line, epoch), Ordering::Relaxed);
    // Release: a reader of the bit (Acquire) reads the tag above.
    words.waiters.fetch_or(me, Ordering::Release);
    let r = loop {
        if let Some(r) = poll() {
            break Some(r);
        }
        if Instant::now() >= until {
            break None;
        }
        std::thread::yield_now();
    };
    // Relaxed: a waker that still sees the bit makes one epoch bump too many at most.
    words.waiters.fetch_and(!me, Ordering::Relaxed);
    r
}

/// Whether a slot in `set` (bits read with Acquire from this line) has its tag on `epoch`
/// of this line.
#[inline]
fn tagged(words: WaitWords<'_>, mut set: u64, epoch: u32) -> bool {
    let want = sleep_tag(words.line, epoch);
    while set != 0 {
        let i = set.trailing_zeros() as usize;
        set &= set - 1;
        // Relaxed: ordered by the Acquire load of the set.
        if words.tags[i].load(Ordering::Relaxed) == want {
            return true;
        }
    }
    false
}

/// Wakes every sleeper whether or not it is counted (used when the queue closes, and when a
/// handle is interrupted: async-signal-safe, an atomic increment and one system call).
pub fn wake_unconditionally(words: WaitWords<'_>, futex: &impl Futex) {
    // SeqCst: the flag (closed, interrupted) was stored before; every sleeper either sees
    // it on its re-check or sleeps on an epoch value that this increment makes stale.
    words.epoch.fetch_add(1, Ordering::SeqCst);
    futex.wake_all(words.epoch);
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::sync::futex::OsFutex;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    /// The kernel's futex, but as in a process where membarrier is refused: the sleeper
    /// cannot issue the heavy barrier while wakers elsewhere may skip their fence.
    struct Uncovered;

    impl Futex for Uncovered {
        fn wait(&self, word: &AtomicU32, expected: u32, deadline: Option<Instant>) -> Woke {
            OsFutex.wait(word, expected, deadline)
        }
        fn wake_all(&self, word: &AtomicU32) {
            OsFutex.wake_all(word)
        }
        fn light_waker(&self) -> bool {
            true
        }
        fn wakers_may_be_light(&self) -> bool {
            true
        }
    }

    struct Words {
        waiters: AtomicU64,
        epoch: AtomicU32,
        asleep: [AtomicU64; ASLEEP_SETS],
        tags: [AtomicU64; SLOTS],
        flag: AtomicBool,
    }

    /// The offset the test lines pretend to have in a segment.
    const LINE: usize = 384;

    impl Default for Words {
        fn default() -> Words {
            Words {
                waiters: AtomicU64::new(0),
                epoch: AtomicU32::new(0),
                asleep: Default::default(),
                tags: std::array::from_fn(|_| AtomicU64::new(0)),
                flag: AtomicBool::new(false),
            }
        }
    }

    impl Words {
        fn words(&self) -> WaitWords<'_> {
            WaitWords { waiters: &self.waiters, epoch: &self.epoch, asleep: &self.asleep, tags: &self.tags, line: LINE }
        }

        /// Slot `i` as it is inside the futex wait on `epoch`.
        fn sleeping(&self, i: usize, epoch: u32) {
            self.waiters.fetch_or(1 << i, Ordering::Relaxed);
            self.tags[i].store(sleep_tag(LINE, epoch), Ordering::Relaxed);
            self.asleep[asleep_set(epoch)].fetch_or(1 << i, Ordering::Relaxed);
        }
    }

    /// A futex that counts wake calls instead of making them.
    #[derive(Default)]
    struct Counting(std::sync::atomic::AtomicU32);

    impl Futex for Counting {
        fn wait(&self, _: &AtomicU32, _: u32, _: Option<Instant>) -> Woke {
            unreachable!("nobody sleeps here")
        }
        fn wake_all(&self, _: &AtomicU32) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn a_sleeper_costs_one_bump_and_one_system_call_however_long_it_takes_to_run() {
        // A sleeper (slot 3) waits on epoch 7.
        let w = Words::default();
        w.epoch.store(7, Ordering::Relaxed);
        w.sleeping(3, 7);
        let f = Counting::default();
        // The waker that bumps 7 -> 8 calls FUTEX_WAKE.
        assert!(wake(w.words(), &f));
        assert_eq!(f.0.load(Ordering::Relaxed), 1);
        assert_eq!(w.epoch.load(Ordering::Relaxed), 8);
        // The sleeper has not run yet (its bits are still up): later wakers neither call nor
        // bump, however many of them: its tag names epoch 7, which is gone.
        for _ in 0..10 * ASLEEP_SETS {
            assert!(!wake(w.words(), &f));
        }
        assert_eq!(f.0.load(Ordering::Relaxed), 1);
        assert_eq!(w.epoch.load(Ordering::Relaxed), 8, "no bump for a sleeper already woken");
        // It runs, and registers again on the current epoch (its bits were not cleared in
        // between here: the tag alone decides): the next waker bumps, and calls.
        w.sleeping(3, 8);
        assert!(wake(w.words(), &f));
        assert_eq!((f.0.load(Ordering::Relaxed), w.epoch.load(Ordering::Relaxed)), (2, 9));
        // Registered but not inside the wait yet (no `asleep` bit): a bump, no call.
        w.asleep[asleep_set(8)].store(0, Ordering::Relaxed);
        w.tags[3].store(sleep_tag(LINE, 9), Ordering::Relaxed);
        assert!(!wake(w.words(), &f));
        assert_eq!((f.0.load(Ordering::Relaxed), w.epoch.load(Ordering::Relaxed)), (2, 10));
        // A sleeper on the same epoch number of another line is not this line's.
        w.tags[3].store(sleep_tag(LINE + 128, 10), Ordering::Relaxed);
        w.asleep[asleep_set(10)].fetch_or(1 << 3, Ordering::Relaxed);
        assert!(!wake(w.words(), &f));
        assert_eq!(w.epoch.load(Ordering::Relaxed), 10);
        // A bit left up by a woken sleeper does not hide a real one in the same set.
        w.sleeping(9, 10);
        assert!(wake(w.words(), &f));
        assert_eq!((f.0.load(Ordering::Relaxed), w.epoch.load(Ordering::Relaxed)), (3, 11));
    }

    #[test]
    fn a_poller_counts_as_waiting_costs_its_waker_no_system_call_and_leaves_no_trace() {
        let w = Arc::new(Words::default());
        w.epoch.store(5, Ordering::Relaxed);
        // Slot 2 is a sleeper woken by the bump to 5 that has not run yet: not waiting now.
        w.sleeping(2, 4);
        assert_eq!(waiting_now(w.words()), 0);
        let started = Arc::new(AtomicBool::new(false));
        let poller = {
            let (w, started) = (w.clone(), started.clone());
            std::thread::spawn(move || {
                let until = Instant::now() + Duration::from_secs(10);
                poll_registered(w.words(), 1 << 6, until, || {
                    started.store(true, Ordering::Relaxed);
                    w.flag.load(Ordering::Acquire).then_some(())
                })
            })
        };
        let t = Instant::now();
        while !(started.load(Ordering::Relaxed) && waiting_now(w.words()) & (1 << 6) != 0) {
            assert!(t.elapsed() < Duration::from_secs(10), "the poller never registered");
            std::thread::yield_now();
        }
        // Counted on the current epoch, the woken sleeper still not.
        assert_eq!(waiting_now(w.words()), 1 << 6);
        // Its waker bumps the epoch for it but makes no wake call (it is not asleep).
        let f = Counting::default();
        w.flag.store(true, Ordering::Release);
        assert!(!wake(w.words(), &f));
        assert_eq!((f.0.load(Ordering::Relaxed), w.epoch.load(Ordering::Relaxed)), (0, 6));
        assert_eq!(poller.join().unwrap(), Some(()));
        assert_eq!(w.waiters.load(Ordering::Relaxed) & (1 << 6), 0, "its bit is down");
        // A poller whose wait does not come returns `None` at its bound, bit down too.
        let t = Instant::now();
        assert_eq!(poll_registered(w.words(), 1 << 7, t + Duration::from_millis(20), || None::<()>), None);
        assert!(t.elapsed() >= Duration::from_millis(20));
        assert_eq!(w.waiters.load(Ordering::Relaxed) & (1 << 7), 0);
    }

    #[test]
    fn a_sleeper_writes_its_tag_before_its_bit() {
        // A real sleeper (slot 5) in another thread: once its bit is up, its tag names this
        // line and the epoch it waits on, and the waker's call reaches it.
        let w = Arc::new(Words::default());
        w.epoch.store(41, Ordering::Relaxed);
        let sleeper = {
            let w = w.clone();
            std::thread::spawn(move || {
                let r = block(
                    w.words(),
                    1 << 5,
                    &OsFutex,
                    Some(Instant::now() + Duration::from_secs(10)),
                    || w.flag.load(Ordering::Acquire).then_some(()),
                    &mut || {},
                );
                (r, Instant::now())
            })
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while w.asleep[asleep_set(41)].load(Ordering::Acquire) == 0 {
            assert!(Instant::now() < deadline, "the sleeper never went to sleep");
            std::thread::yield_now();
        }
        assert_eq!(w.tags[5].load(Ordering::Relaxed), sleep_tag(LINE, 41));
        w.flag.store(true, Ordering::Release);
        let woke_at = Instant::now();
        assert!(wake(w.words(), &OsFutex), "the sleeper's own bump makes the call");
        let (r, at) = sleeper.join().unwrap();
        assert_eq!(r, Some(()));
        assert!(at - woke_at < Duration::from_secs(5), "woken by the call, not by its deadline");
    }

    #[test]
    fn an_uncovered_sleeper_with_light_wakers_still_wakes_every_time() {
        // Whether or not a wakeup is lost to the missing barrier, the sleeper's bounded
        // slices make it see the flag; the watchdog (join with a timeout) fails a hang.
        for _ in 0..200 {
            let w = Arc::new(Words::default());
            let sleeper = {
                let w = w.clone();
                std::thread::spawn(move || {
                    block(w.words(), 1, &Uncovered, None, || w.flag.load(Ordering::Acquire).then_some(()), &mut || {})
                })
            };
            w.flag.store(true, Ordering::Release);
            wake(w.words(), &Uncovered);
            let deadline = Instant::now() + Duration::from_secs(10);
            while !sleeper.is_finished() {
                assert!(Instant::now() < deadline, "the sleeper hung");
                std::thread::sleep(Duration::from_micros(100));
            }
            assert_eq!(sleeper.join().unwrap(), Some(()));
        }
    }

    #[test]
    fn a_blocking_wait_yields_and_looks_again_before_it_registers_or_sleeps() {
        // What the caller waits for comes while it gives the CPU away: found by the second
        // look, with no waiter bit ever raised and no futex call (`Counting` panics on one).
        let w = Words::default();
        let f = Counting::default();
        let mut looks = Vec::new();
        let got = wait_for(
            Wait::Block,
            w.words(),
            1,
            &f,
            None,
            || {
                // What the waiter set held at each look: registered or not yet.
                looks.push(w.waiters.load(Ordering::Relaxed));
                (looks.len() == 2).then_some(())
            },
            || panic!("slept"),
        );
        assert_eq!(got, Some(()));
        assert_eq!(looks, [0, 0], "both looks before registering as a waiter");
        assert_eq!(w.waiters.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_blocked_wait_returns_none_only_after_its_deadline() {
        let w = Words::default();
        let words = w.words();
        let start = Instant::now();
        let got =
            wait_for(Wait::Block, words, 1, &OsFutex, Some(start + Duration::from_millis(20)), || None::<()>, || {});
        assert_eq!(got, None);
        assert!(start.elapsed() >= Duration::from_millis(20));
        assert_eq!(w.waiters.load(Ordering::Relaxed), 0, "the sleeper's bit is cleared");
    }
}

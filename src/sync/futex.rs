//! Sleeping on a 32-bit word in shared memory.

use std::time::Instant;

use super::atomic::AtomicU32;

/// How a sleep on a futex word ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Woke {
    /// Woken, interrupted, or the word no longer held the expected value: re-check.
    Maybe,
    /// The deadline passed.
    TimedOut,
}

/// Sleep until woken: `FUTEX_WAIT`/`FUTEX_WAKE` on a real mapping, a condition variable
/// under loom.
pub trait Futex {
    /// Sleeps while `word` holds `expected`, until woken or until `deadline`.
    /// May return spuriously; the caller re-checks its condition.
    fn wait(&self, word: &AtomicU32, expected: u32, deadline: Option<Instant>) -> Woke;
    /// Wakes every sleeper on `word`.
    fn wake_all(&self, word: &AtomicU32);

    /// Whether a waker may order its publication before its waiter check with a compiler
    /// fence only, because sleepers issue a heavy barrier (see `sync::membarrier`).
    /// The default, `false`, is the symmetric protocol: a `SeqCst` fence on each side.
    fn light_waker(&self) -> bool {
        false
    }

    /// The sleeper's heavy barrier, after it raised its bit. Returns whether it ran; if not,
    /// and wakers may be light ([`wakers_may_be_light`](Self::wakers_may_be_light)), the
    /// sleeper bounds each sleep and re-checks.
    fn heavy_barrier(&self) -> bool {
        false
    }

    /// Whether some waker may be skipping its fence (another process may have registered).
    fn wakers_may_be_light(&self) -> bool {
        false
    }
}

/// The kernel's futex on a word in a shared (not private) mapping.
#[cfg(not(loom))]
#[derive(Clone, Copy, Debug, Default)]
pub struct OsFutex;

#[cfg(not(loom))]
impl Futex for OsFutex {
    fn wait(&self, word: &AtomicU32, expected: u32, deadline: Option<Instant>) -> Woke {
        use rustix::thread::futex;
        let timeout = match deadline {
            None => None,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Woke::TimedOut;
                }
                Some(rustix::thread::Timespec {
                    tv_sec: left.as_secs().min(i64::MAX as u64) as i64,
                    tv_nsec: left.subsec_nanos().into(),
                })
            }
        };
        // No FUTEX_PRIVATE_FLAG: the word lives in memory shared between processes, and
        // a private futex would be keyed by this process's address space only.
        match futex::wait(word, futex::Flags::empty(), expected, timeout.as_ref()) {
            Err(rustix::io::Errno::TIMEDOUT) => Woke::TimedOut,
            // EAGAIN: the word changed before we slept; EINTR: a signal. Both: re-check.
            _ => Woke::Maybe,
        }
    }

    #[inline]
    fn light_waker(&self) -> bool {
        super::membarrier::registered()
    }

    fn heavy_barrier(&self) -> bool {
        super::membarrier::heavy_barrier()
    }

    fn wakers_may_be_light(&self) -> bool {
        true
    }

    fn wake_all(&self, word: &AtomicU32) {
        // Shared futex, as above. A failure here can only be EFAULT/EINVAL, impossible for
        // a word in a live mapping; sleepers re-check their condition anyway.
        let _ = rustix::thread::futex::wake(word, rustix::thread::futex::Flags::empty(), i32::MAX as u32);
    }
}

/// The kernel's futex with the symmetric protocol: wakers fence, sleepers issue no heavy
/// barrier. For a line whose every waker is off the hot path (the durable line: woken
/// after an `fdatasync`), where the sleeper's `membarrier` would cost more than all of its
/// wakers' fences.
#[cfg(not(loom))]
#[derive(Clone, Copy, Debug, Default)]
pub struct FencedFutex;

#[cfg(not(loom))]
impl Futex for FencedFutex {
    fn wait(&self, word: &AtomicU32, expected: u32, deadline: Option<Instant>) -> Woke {
        OsFutex.wait(word, expected, deadline)
    }

    fn wake_all(&self, word: &AtomicU32) {
        OsFutex.wake_all(word)
    }
}

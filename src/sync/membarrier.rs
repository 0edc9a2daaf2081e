//! The asymmetric half of the wait protocol: `membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED)`.
//!
//! A waker checks the waiter set after every message it publishes; with a `fence(SeqCst)`
//! there, every send waits for its stores to drain, which costs most of a streaming
//! producer's throughput. Sleeping is rare, publishing is not, so the cost moves to the
//! sleeper: a process that has *registered* (`MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED`, at
//! handle open) wakes with only a compiler fence, and a sleeper, after raising its bit and
//! before its re-check, calls `membarrier(GLOBAL_EXPEDITED)`, which runs a full barrier on
//! every CPU currently running a thread of a registered process (a thread not running passes
//! through one at its next context switch). Either the waker's load of the waiter set comes
//! after that barrier and sees the bit, or it came before, and the barrier made the waker's
//! earlier publication visible to the sleeper's re-check. This is the scheme of
//! `membarrier(2)`, liburcu and folly's asymmetric barriers.
//!
//! Where the kernel refuses (no membarrier, seccomp), a process that could not register keeps
//! the full fence as a waker (safe with any sleeper), and a sleeper that cannot issue the
//! barrier caps each futex sleep at [`UNCOVERED_SLEEP`](super::wait::UNCOVERED_SLEEP) and re-checks, since the process that
//! wakes it may be one that skips the fence: a lost wakeup then costs a bounded delay, never a
//! hang. The loom models check the symmetric protocol (fences on both sides), which is also
//! what runs when the kernel says no.

use std::sync::atomic::{AtomicU8, Ordering};

use rustix::thread::{MembarrierCommand, membarrier, membarrier_query};

const UNKNOWN: u8 = 0;
const REGISTERED: u8 = 1;
const UNAVAILABLE: u8 = 2;

/// This process's registration: set once, read on every publication.
static STATE: AtomicU8 = AtomicU8::new(UNKNOWN);

/// Registers this process for global expedited barriers (once; cheap afterwards). Returns
/// whether wakers in this process may skip their fence.
pub fn register() -> bool {
    // Relaxed: a flag about this process only; the registration syscall orders itself.
    match STATE.load(Ordering::Relaxed) {
        REGISTERED => return true,
        UNAVAILABLE => return false,
        _ => {}
    }
    let ok = membarrier_query().contains_command(MembarrierCommand::GlobalExpedited)
        && membarrier(MembarrierCommand::RegisterGlobalExpedited).is_ok();
    // Relaxed: as above. Two threads racing here both register; registering twice is fine.
    STATE.store(if ok { REGISTERED } else { UNAVAILABLE }, Ordering::Relaxed);
    ok
}

/// Whether this process registered, so its wakers may use a compiler fence only.
#[inline]
pub fn registered() -> bool {
    // Relaxed: written once by `register`, before any handle of this process publishes.
    STATE.load(Ordering::Relaxed) == REGISTERED
}

/// The sleeper's heavy barrier. Returns whether it ran.
pub fn heavy_barrier() -> bool {
    membarrier(MembarrierCommand::GlobalExpedited).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kernel_with_global_expedited_membarrier_lets_this_process_register() {
        let supported = membarrier_query().contains_command(MembarrierCommand::GlobalExpedited);
        assert_eq!(register(), supported && registered());
        if supported {
            assert!(registered());
            assert!(heavy_barrier());
        }
    }
}

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
//! hang.
//!
//! # Opting out: `SHMQ_MEMBARRIER=0`
//! A registered process pays for the barriers of every sleeper of every queue on the host:
//! each one interrupts the CPUs its threads are running on, spinning consumers included. A
//! process started with `SHMQ_MEMBARRIER=0` (also `off`, `no`, `false`; read once, when its
//! first handle opens) does not register: its wakers keep the full fence, and no barrier
//! ever interrupts its CPUs. Its sleepers still issue the barrier, because the waker they
//! must cover may be in a process that did register; where nobody registered that is a
//! system call that interrupts nobody. Any mix of processes with and without the variable
//! is correct.
//!
//! # What the models check
//! `tests/loom.rs` checks the symmetric protocol (fences on both sides: what runs when the
//! kernel says no or the process opted out); `tests/loom_barrier.rs` checks the asymmetric
//! one, with the barrier modelled as described there.

use std::sync::atomic::{AtomicU8, Ordering};

use rustix::thread::{MembarrierCommand, membarrier, membarrier_query};

const UNKNOWN: u8 = 0;
const REGISTERED: u8 = 1;
const UNAVAILABLE: u8 = 2;
const DISABLED: u8 = 3;

/// The environment variable that keeps a process from registering: `SHMQ_MEMBARRIER=0`.
pub const ENV: &str = "SHMQ_MEMBARRIER";

/// This process's registration: set once, read on every publication.
static STATE: AtomicU8 = AtomicU8::new(UNKNOWN);

/// Whether `SHMQ_MEMBARRIER` asks this process not to register.
fn disabled_by_env() -> bool {
    disables(std::env::var_os(ENV).as_deref())
}

/// Whether a value of `SHMQ_MEMBARRIER` says not to register: `0`, `off`, `no` or `false`.
fn disables(value: Option<&std::ffi::OsStr>) -> bool {
    value.is_some_and(|v| matches!(v.to_str(), Some("0" | "off" | "no" | "false")))
}

/// Registers this process for global expedited barriers (once; cheap afterwards), unless
/// `SHMQ_MEMBARRIER=0` (read here, once). Returns whether wakers in this process may skip
/// their fence.
pub fn register() -> bool {
    // Relaxed: a flag about this process only; the registration syscall orders itself.
    match STATE.load(Ordering::Relaxed) {
        REGISTERED => return true,
        UNAVAILABLE | DISABLED => return false,
        _ => {}
    }
    let state = if disabled_by_env() {
        DISABLED
    } else if membarrier_query().contains_command(MembarrierCommand::GlobalExpedited)
        && membarrier(MembarrierCommand::RegisterGlobalExpedited).is_ok()
    {
        REGISTERED
    } else {
        UNAVAILABLE
    };
    // Relaxed: as above. Two threads racing here both register; registering twice is fine.
    STATE.store(state, Ordering::Relaxed);
    state == REGISTERED
}

/// Whether this process registered, so its wakers may use a compiler fence only.
#[inline]
pub fn registered() -> bool {
    // Relaxed: written once by `register`, before any handle of this process publishes.
    STATE.load(Ordering::Relaxed) == REGISTERED
}

/// The sleeper's heavy barrier. Returns whether it ran.
///
/// It runs whether or not this process registered: the waker it must cover may be in a
/// process that did. The kernel interrupts only CPUs that are running a registered process,
/// so where nobody registered it is a system call and nothing more.
pub fn heavy_barrier() -> bool {
    membarrier(MembarrierCommand::GlobalExpedited).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_follows_the_kernel_and_the_environment() {
        // The registration is per process and cannot be undone: one test makes it.
        let supported = membarrier_query().contains_command(MembarrierCommand::GlobalExpedited);
        let want = supported && !disabled_by_env();
        assert_eq!(register(), want);
        assert_eq!(registered(), want);
        assert_eq!(register(), want, "a second call answers the same");
        if supported {
            // Issuable registered or not: a sleeper must cover wakers in other processes.
            assert!(heavy_barrier());
        }
    }

    #[test]
    fn only_the_documented_values_keep_a_process_from_registering() {
        use std::ffi::OsStr;
        for v in ["0", "off", "no", "false"] {
            assert!(disables(Some(OsStr::new(v))), "{v:?}");
        }
        for v in ["1", "on", "", "OFF ", "yes"] {
            assert!(!disables(Some(OsStr::new(v))), "{v:?}");
        }
        assert!(!disables(None));
    }
}

//! Named points in the shared-memory protocols where a test can make the process die.
//!
//! With the `failpoints` feature, [`hit`] kills the calling process with `SIGKILL` (as
//! `kill -9` would) when the environment variable `SHMQ_FAILPOINT` names the point, after
//! `SHMQ_FAILPOINT_SKIP` earlier hits (default 0). Tests use it to stop a producer between
//! two steps that no external signal can be aimed at reliably. Without the feature it
//! compiles to nothing.
//!
//! The points (see where they are called):
//! * `mpsc-claim-recorded`: the claim is in the producer's slot, the CAS on `tail` not made.
//! * `mpsc-claimed`: the CAS on `tail` succeeded; nothing written into the record yet.
//! * `mpsc-pad-claimed`: a claim of the padding to the end of the region succeeded; the
//!   padding is not published.
//! * `mpsc-batch-committed-one`: the first record of a batch claim is committed, the rest
//!   not.
//! * `mpsc-committed`: a single send's record (on a volatile or a durable queue) is
//!   committed; its claim record is not cleared. (A send that first waited for room commits
//!   through the general path, which has no failpoint here.)
//! * `sub-creating`: a subscription entry is marked being created (admin lock held).
//! * `sub-joining`: a new subscription is active with its cursor flagged joining; the
//!   join is not finished.
//! * `rejoin-joining`: a member swapped a detached cursor to joining; the join is not
//!   finished.
//! * `member-claim-recorded`: a member recorded a span (claiming), the CAS on the cursor
//!   not made.
//! * `member-claimed`: the CAS succeeded (the cursor is locked with the claim); the claim
//!   is still marked claiming.
//! * `member-claim-held`: the claim is marked held; the cursor is still locked with it.
//! * `member-span-read`: a member received every message of its span; it is not handed
//!   back.
//! * `member-adopted`: a member took over a dead member's span (it holds that slot's
//!   lock); it has delivered none of it.
//! * `journal-copied`: a journaler copied records from the ring; nothing written.
//! * `journal-written`: the copy is written to the log files; `written` not raised.
//! * `journal-syncing`: about to sync the log; `durable` not raised.
//! * `journal-synced`: the sync returned; `durable` not raised.
//! * `journal-durable-raised`: `durable` raised; under `Always` the journal's cursor not
//!   raised yet, and nobody woken.
//! * `ceiling-raising`: about to write a raised id ceiling to the log's meta record.
//! * `restore-subscriptions`: a restored queue's segment is created (others may open it);
//!   the checkpoint's subscriptions are not made again yet.
//! * `spill-rejoin`: a durable queue's consumer read everything in the log and is about to
//!   rejoin the ring (its cursor detached).
//! * `spill-rejoining`: it swapped its cursor to plain; the producers' `gate_min` are not
//!   checked yet.
//! * `ack-reserved`: a member of a subscription with explicit acks reserved, filled and
//!   marked filled an in-flight entry for the message it is handing out; its `entered` is
//!   not raised.
//! * `ack-entered`: `entered` is raised past the message; the entry is not committed.
//! * `ack-moving`: a member marked an in-flight entry moving (a reject, or its last
//!   delivery); nothing is sent to the dead-letter queue.
//! * `ack-moved`: the dead letter is sent; the entry is not freed.
//! * `ack-retaken`: a member took a released (or doomed) in-flight entry to hand its
//!   message out again or move it (`RETAKING`, `MOVING`); nothing is read from the log yet.
//! * `ack-handing-back`: a member nacking a message took its entry out of expiry's reach
//!   (`RETAKING`) and wrote its reason; the entry is not released.
//!
//! With `SHMQ_FAILPOINT_ACTION=stop` the process stops itself (`SIGSTOP`, as a debugger or
//! `kill -STOP` would) instead of dying, once: continued, it runs on past later hits. Points
//! checked with [`fails`] instead make the operation fail as the OS could
//! (`journal-sync-fails`: the log's `fdatasync` reports EIO).

/// Dies here if `SHMQ_FAILPOINT` names `point` (feature `failpoints` only).
#[cfg(all(feature = "failpoints", not(loom)))]
pub fn hit(point: &str) {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static ARMED: OnceLock<Option<(String, u64)>> = OnceLock::new();
    static HITS: AtomicU64 = AtomicU64::new(0);
    let armed = ARMED.get_or_init(|| {
        let name = std::env::var("SHMQ_FAILPOINT").ok()?;
        let skip = std::env::var("SHMQ_FAILPOINT_SKIP").ok().and_then(|s| s.parse().ok()).unwrap_or(0);
        Some((name, skip))
    });
    if let Some((name, skip)) = armed {
        // Relaxed: a counter of this process's own hits. At that one hit only: a process
        // stopped there and continued runs on past later hits.
        if name == point && HITS.fetch_add(1, Ordering::Relaxed) == *skip {
            if std::env::var("SHMQ_FAILPOINT_ACTION").is_ok_and(|a| a == "stop") {
                // Aimed at this thread: a stop sent to the process is taken by whichever
                // thread the kernel picks, and this one runs on (microseconds: past the
                // next step) until that thread has stopped the rest. `raise` stops us on
                // the way out of the system call.
                // SAFETY: `raise` only sends a signal; SIGSTOP has no handler to run.
                unsafe { libc::raise(libc::SIGSTOP) };
            } else {
                // SIGKILL is delivered to every thread at once: we die on the way out.
                let _ = rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
            }
        }
    }
}

/// Whether the operation at `point` should fail now: `SHMQ_FAILPOINT` names it (after
/// `SHMQ_FAILPOINT_SKIP` earlier checks). Feature `failpoints` only; otherwise `false`.
#[cfg(all(feature = "failpoints", not(loom)))]
pub fn fails(point: &str) -> bool {
    use std::sync::atomic::{AtomicU64, Ordering};
    static CHECKS: AtomicU64 = AtomicU64::new(0);
    let Ok(name) = std::env::var("SHMQ_FAILPOINT") else { return false };
    let skip: u64 = std::env::var("SHMQ_FAILPOINT_SKIP").ok().and_then(|s| s.parse().ok()).unwrap_or(0);
    // Relaxed: a counter of this process's own checks.
    name == point && CHECKS.fetch_add(1, Ordering::Relaxed) >= skip
}

/// Whether the operation at `point` should fail now (feature `failpoints` only).
#[cfg(not(all(feature = "failpoints", not(loom))))]
#[cfg_attr(loom, allow(dead_code))] // its callers (the journal) are not built under loom
#[inline(always)]
pub fn fails(_point: &str) -> bool {
    false
}

/// Dies here if `SHMQ_FAILPOINT` names `point` (feature `failpoints` only).
#[cfg(not(all(feature = "failpoints", not(loom))))]
#[inline(always)]
pub fn hit(_point: &str) {}

//! [`Journaler`]: a process that only journals a durable queue (what `shmq journal` runs).

use super::journal::Journal;
use crate::error::{Error, Result};
use crate::segment::{Access, Segment};

/// A handle that journals a durable queue and nothing else: each [`run`](Self::run) copies
/// every committed record into the log and syncs it (unless the queue's policy is
/// [`Fsync::Never`](crate::Fsync::Never), where it only writes). It takes no participant
/// slot, so it never keeps a producer or a consumer out (an SPSC queue's one producer
/// included), and it takes the journal role only for the length of a run, as producers do.
///
/// Call `run` on a timer to keep the log close to the ring: producers under `Never` then
/// find their room freed without journaling themselves, and a queue under
/// [`Fsync::Interval`](crate::Fsync::Interval) is synced by this process even when no
/// process holding a producer runs its timer. Dropping it runs once more.
///
/// ```
/// # use shmq::{Fsync, Journaler, Options, Producer, Queue};
/// # let name = format!("doc-journaler-{}", std::process::id());
/// # let dir = std::env::temp_dir().join(&name);
/// Queue::create(&name, Options::new().durable(&dir).fsync(Fsync::Interval(std::time::Duration::from_secs(3600))))?;
/// let mut tx = Producer::open(&name)?;
/// let id = tx.send(b"order 1")?;
/// let j = Journaler::open(&name)?;
/// j.run()?;
/// assert!(Queue::inspect(&name)?.durable.unwrap().durable > id);
/// # drop((tx, j)); Queue::remove(&name)?; std::fs::remove_dir_all(&dir).ok();
/// # Ok::<(), shmq::Error>(())
/// ```
pub struct Journaler {
    seg: Segment,
    journal: Journal,
}

impl std::fmt::Debug for Journaler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journaler").field("queue", &self.seg.config().name).finish()
    }
}

impl Journaler {
    /// Attaches to the durable queue `name` and its log. `InvalidArgument` for a volatile
    /// queue; the errors of opening a queue and its log otherwise.
    pub fn open(name: &str) -> Result<Journaler> {
        let seg = Segment::open(name, Access::ReadWrite)?;
        let journal = Journal::attach_untimed(&seg)?.ok_or_else(|| {
            Error::InvalidArgument(format!("queue {name:?} is not durable: it has no log to journal"))
        })?;
        Ok(Journaler { seg, journal })
    }

    /// Journals everything committed now, and syncs it unless the policy is `Never`.
    /// `Err(Log)` once a write or sync of the log failed (the queue is then read-only).
    pub fn run(&self) -> Result<()> {
        self.journal.flush(&self.seg)
    }

    /// Whether the queue was removed ([`Queue::remove`](crate::Queue::remove)).
    pub fn is_closed(&self) -> bool {
        self.seg.is_closed()
    }
}

impl Drop for Journaler {
    fn drop(&mut self) {
        let _ = self.journal.flush(&self.seg);
    }
}

//! [`Queue`]: operations on queues by name (create, open-or-create, remove, list, inspect).

use super::options::Options;
use super::stats::Snapshot;
use crate::error::{Error, Result};
use crate::segment::{Access, Config, OpenError, Segment};

/// Operations on queues by name. Messages go through [`Producer`](super::Producer) and [`Consumer`](super::Consumer).
#[derive(Debug)]
pub struct Queue {
    _private: (),
}

impl Queue {
    /// Creates a queue named `name` (1–200 bytes of `[A-Za-z0-9._-]`, not starting with
    /// `.`), in POSIX shared memory as `/dev/shm/shmq.<name>`. Fails with `Exists` if the
    /// name is taken. The memory is reserved now: a full `/dev/shm` fails here.
    ///
    /// ```
    /// use shmq::{Options, Queue};
    /// # let name = format!("doc-create-{}", std::process::id());
    /// let cfg = Queue::create(&name, Options::new().capacity(1 << 16).max_message(1024))?;
    /// assert_eq!(cfg.capacity, 1 << 16);
    /// assert!(matches!(Queue::create(&name, Options::new()), Err(shmq::Error::Exists(_))));
    /// Queue::remove(&name)?;
    /// # Ok::<(), shmq::Error>(())
    /// ```
    pub fn create(name: &str, options: Options) -> Result<Config> {
        Segment::create(name, options.mode, options.capacity, options.max_message, options.permissions)
    }

    /// Opens the queue if it exists, creates it otherwise. An existing queue must have the
    /// same mode, capacity and `max_message` (else `InvalidArgument`). An object left
    /// unfinished by a creator that died is replaced.
    pub fn open_or_create(name: &str, options: Options) -> Result<Config> {
        let mut last = None;
        for _ in 0..8 {
            match Queue::create(name, options) {
                Err(Error::Exists(_)) => {}
                other => return other,
            }
            match Segment::open(name, Access::ReadOnly) {
                Ok(seg) => {
                    let c = seg.config().clone();
                    if c.mode != options.mode || c.capacity != options.capacity || c.max_message != options.max_message
                    {
                        return Err(Error::InvalidArgument(format!(
                            "queue {name:?} exists as {} with capacity {} and max_message {}",
                            c.mode, c.capacity, c.max_message
                        )));
                    }
                    return Ok(c);
                }
                Err(OpenError::CreatorDied) => Segment::remove_abandoned(name)?,
                Err(OpenError::Other(e @ Error::NotFound(_))) => last = Some(e),
                Err(OpenError::Other(e)) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| Error::Busy(format!("queue {name:?} keeps changing"))))
    }

    /// Unlinks the queue's name, marks it closed and wakes every waiter. Handles still
    /// attached keep working on the memory: producers then get `Closed`, the consumer
    /// receives what is left and then gets `Closed`.
    pub fn remove(name: &str) -> Result<()> {
        Segment::remove(name)
    }

    /// Names of every queue on this host, sorted.
    pub fn list() -> Result<Vec<String>> {
        Segment::list()
    }

    /// A read-only snapshot of a queue: configuration, depth, counters and participants.
    /// Needs only read permission.
    ///
    /// ```
    /// use shmq::{Options, Producer, Queue};
    /// # let name = format!("doc-inspect-{}", std::process::id());
    /// Queue::create(&name, Options::new())?;
    /// let mut tx = Producer::open(&name)?;
    /// tx.send(b"hello")?;
    /// let s = Queue::inspect(&name)?;
    /// assert_eq!((s.messages, s.sent.messages, s.sent.bytes), (1, 1, 5));
    /// assert!(s.participants.iter().any(|p| p.alive && p.pid == std::process::id()));
    /// # drop(tx); Queue::remove(&name)?;
    /// # Ok::<(), shmq::Error>(())
    /// ```
    pub fn inspect(name: &str) -> Result<Snapshot> {
        let seg = Segment::open(name, Access::ReadOnly)?;
        Ok(Snapshot::read(&seg))
    }
}

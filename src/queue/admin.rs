//! [`Queue`]: operations on queues by name (create, open-or-create, remove, list, inspect).

use super::options::Options;
use super::stats::Snapshot;
use crate::error::Result;
use crate::segment::{Access, Config, Segment};

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
    ///
    /// With [`Options::durable`] the queue also keeps a log in that directory: a new one,
    /// or, if the directory holds the log of a queue that no longer exists in memory (after
    /// a host restart), the queue is restored from it (see `docs/DURABLE.md`).
    pub fn create(name: &str, options: Options) -> Result<Config> {
        if let Some(d) = &options.durable {
            return super::restore::create(name, &options, d);
        }
        Segment::create(name, options.mode, options.capacity, options.max_message, options.permissions)
    }

    /// Opens the queue if it exists, creates it otherwise. An existing queue must have the
    /// same mode, capacity and `max_message` (else `InvalidArgument`). An object left
    /// unfinished by a creator that died is replaced.
    ///
    /// A durable queue ([`Options::durable`]) that does not exist in memory is restored from
    /// its log if the directory holds one: message ids continue above every id handed out
    /// before, and the default consumer resumes after what it released.
    pub fn open_or_create(name: &str, options: Options) -> Result<Config> {
        if let Some(d) = &options.durable {
            return super::restore::open_or_create(name, &options, d);
        }
        Segment::open_or_create(name, options.mode, options.capacity, options.max_message, options.permissions)
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
        super::stats::check_positions(&seg)?;
        Ok(Snapshot::read(&seg))
    }
}

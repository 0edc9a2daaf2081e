//! [`Reader`]: replaying a durable queue's log, read-only.

use std::time::{Duration, Instant};

use super::backlog::{Backlog, Step};
use super::subscription::From;
use crate::error::{Error, Result};
use crate::segment::{Access, Segment};
use crate::sync::atomic::Ordering;

/// Reads a durable queue's log from a given id on, in order, without taking anything from
/// anyone: no subscription, no participant slot, nothing producers wait for. It reads what
/// the journal has written to the log files (under [`Fsync::Always`](crate::Fsync::Always):
/// what is synced), waiting for more when it has read everything.
///
/// ```
/// # use shmq::{Options, Producer, Queue, Reader, From, Fsync};
/// # let name = format!("doc-reader-{}", std::process::id());
/// # let dir = std::env::temp_dir().join(&name);
/// Queue::create(&name, Options::new().durable(&dir).fsync(Fsync::Always))?;
/// let mut tx = Producer::open(&name)?;
/// let first = tx.send(b"order 1")?;
/// tx.send(b"order 2")?;
/// let mut r = Reader::open(&name, From::Id(first))?;
/// assert_eq!(&*r.recv_timeout(std::time::Duration::from_secs(5))?, b"order 1");
/// assert_eq!(&*r.recv_timeout(std::time::Duration::from_secs(5))?, b"order 2");
/// # drop((tx, r)); Queue::remove(&name)?; std::fs::remove_dir_all(&dir).unwrap();
/// # Ok::<(), shmq::Error>(())
/// ```
pub struct Reader {
    seg: Segment,
    log: Box<Backlog>,
    pos: u64,
    /// Messages below this id are skipped ([`From::Id`] of an id that is not a message's).
    from: u64,
    /// The last message read: (id, start and length in the backlog's bytes, next position).
    last: Option<(u64, usize, usize, u64)>,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader").field("queue", &self.seg.config().name).field("position", &self.pos).finish()
    }
}

/// How often a reader that has read everything looks for more.
const POLL: Duration = Duration::from_millis(2);

impl Reader {
    /// Opens queue `name`'s log for reading from `from`: [`From::Start`] (the oldest message
    /// still in the log), [`From::Id`] (that message, or the first after it), or
    /// [`From::Now`] (what is written from now on). `InvalidArgument` on a volatile queue.
    pub fn open(name: &str, from: From) -> Result<Reader> {
        let seg = Segment::open(name, Access::ReadOnly)?;
        let Some(d) = seg.config().durable.clone() else {
            return Err(Error::InvalidArgument(format!("queue {name:?} is not durable: it has no log to read")));
        };
        let log = super::journal::shared_log(&d.dir, d.identity)?;
        // Acquire: pairs with the journal's Release raise of `written`.
        let written = seg.header().durable.written.load(Ordering::Acquire);
        // An id is a message's position in the log. Any other number is between two
        // messages' (or inside one): reading starts at its segment's start, where a message
        // starts, and skips what is below it.
        let (pos, from) = match from {
            From::Start => (0, 0),
            From::Id(id) => (id / d.seg_size * d.seg_size, id),
            From::Now => (written, 0),
        };
        let backlog = Backlog::new(log, seg.config().capacity, d.seg_size);
        Ok(Reader { seg, log: Box::new(backlog), pos, from, last: None })
    }

    /// The next message if one is in the log now: `Ok(None)` otherwise.
    pub fn try_recv(&mut self) -> Result<Option<Replayed<'_>>> {
        if self.next()? { Ok(Some(self.replayed())) } else { Ok(None) }
    }

    /// The next message, waiting for it without limit.
    pub fn recv(&mut self) -> Result<Replayed<'_>> {
        self.wait(None)?;
        Ok(self.replayed())
    }

    /// The next message, waiting at most `timeout`: `Err(Timeout)` when it expires.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Replayed<'_>> {
        self.wait(Some(Instant::now() + timeout))?;
        Ok(self.replayed())
    }

    fn wait(&mut self, deadline: Option<Instant>) -> Result<()> {
        loop {
            if self.next()? {
                return Ok(());
            }
            if self.seg.is_closed() {
                return Err(Error::Closed);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(Error::Timeout);
            }
            std::thread::sleep(POLL);
        }
    }

    /// Moves to the next message in the log, if there is one now.
    fn next(&mut self) -> Result<bool> {
        if let Some((_, _, _, next)) = self.last.take() {
            self.pos = next;
        }
        // Acquire: as in `open`. Under `Always` only what is synced: readers never see what
        // a power cut could take back.
        let d = &self.seg.header().durable;
        let always = d.fsync.load(Ordering::Relaxed) == crate::layout::FSYNC_ALWAYS;
        let end = if always { d.durable.load(Ordering::Acquire) } else { d.written.load(Ordering::Acquire) };
        loop {
            match self.log.next(self.pos, end)? {
                Step::Frame(f) if f.pos < self.from => self.pos = f.next,
                Step::Frame(f) => {
                    self.last = Some((f.pos, f.offset, f.len as usize, f.next));
                    return Ok(true);
                }
                Step::End(at) => {
                    self.pos = self.pos.max(at);
                    return Ok(false);
                }
            }
        }
    }

    fn replayed(&self) -> Replayed<'_> {
        let (id, offset, len, _) = self.last.expect("a message was read");
        Replayed { id, data: &self.log.bytes()[offset..offset + len] }
    }
}

/// A message read by a [`Reader`]: it dereferences to its bytes.
#[derive(Debug)]
pub struct Replayed<'a> {
    id: u64,
    data: &'a [u8],
}

impl Replayed<'_> {
    /// The message's id (as [`Producer::send`](crate::Producer::send) returned it).
    pub fn id(&self) -> u64 {
        self.id
    }
}

impl std::ops::Deref for Replayed<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.data
    }
}

impl AsRef<[u8]> for Replayed<'_> {
    fn as_ref(&self) -> &[u8] {
        self.data
    }
}

//! The user API: [`Queue`] (create, remove, list, inspect), [`Producer`] and [`Consumer`]
//! handles, zero-copy [`Grant`]s and borrowed [`Message`]s.
//!
//! A handle is a segment (its own mapping and file description), a participant slot, a
//! ring state and a wait policy. Handles are `Send` but not `Sync`: one thread at a time.

use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::layout::{self, Counters};
use crate::ring::{Region, Reservation, RingError, consumer, mpsc, spsc};
use crate::segment::{Access, OpenError, Segment};
use crate::sync::atomic::Ordering;
use crate::sync::futex::OsFutex;
use crate::sync::wait::{self, Wait};

pub use crate::segment::{Config, Mode};

/// Default capacity of the data region: 1 MiB.
pub const DEFAULT_CAPACITY: u64 = 1 << 20;
/// Default largest message: 64 KiB.
pub const DEFAULT_MAX_MESSAGE: u32 = 64 << 10;
/// Default permission bits: owner read and write.
pub const DEFAULT_PERMISSIONS: u32 = 0o600;

/// How often (in messages) a handle refreshes its heartbeat without waiting.
const HEARTBEAT_EVERY: u64 = 4096;

/// Options for [`Queue::create`]. The defaults are the same in Rust, C and the CLI.
///
/// ```
/// use shmq::{Mode, Options};
/// let o = Options::new().capacity(1 << 16).max_message(1024).mode(Mode::Spsc).permissions(0o660);
/// assert_eq!(o.get_capacity(), 65536);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    capacity: u64,
    max_message: u32,
    mode: Mode,
    permissions: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            capacity: DEFAULT_CAPACITY,
            max_message: DEFAULT_MAX_MESSAGE,
            mode: Mode::Mpsc,
            permissions: DEFAULT_PERMISSIONS,
        }
    }
}

impl Options {
    /// The defaults: 1 MiB capacity, 64 KiB `max_message`, MPSC, `0600`.
    pub fn new() -> Options {
        Options::default()
    }
    /// Bytes in the data region: a power of two from 1 KiB to 1 TiB (not rounded: anything
    /// else is `InvalidArgument`). Each message takes 8 header bytes plus its length rounded
    /// up to 8.
    pub fn capacity(mut self, bytes: u64) -> Options {
        self.capacity = bytes;
        self
    }
    /// Largest message in bytes: at most half the capacity.
    pub fn max_message(mut self, bytes: u32) -> Options {
        self.max_message = bytes;
        self
    }
    /// [`Mode::Spsc`] (one producer, the fast path) or [`Mode::Mpsc`].
    pub fn mode(mut self, mode: Mode) -> Options {
        self.mode = mode;
        self
    }
    /// Permission bits of the shared-memory object, e.g. `0o660` for group access. Must
    /// include `0o600`. Applied exactly (the umask does not apply).
    pub fn permissions(mut self, bits: u32) -> Options {
        self.permissions = bits;
        self
    }
    /// The capacity set.
    pub fn get_capacity(&self) -> u64 {
        self.capacity
    }
    /// The `max_message` set.
    pub fn get_max_message(&self) -> u32 {
        self.max_message
    }
    /// The mode set.
    pub fn get_mode(&self) -> Mode {
        self.mode
    }
    /// The permissions set.
    pub fn get_permissions(&self) -> u32 {
        self.permissions
    }
}

/// Operations on queues by name. Messages go through [`Producer`] and [`Consumer`].
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

/// Counter values of a snapshot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CounterValues {
    /// Messages sent (producers) or received (consumer).
    pub messages: u64,
    /// Payload bytes.
    pub bytes: u64,
    /// Calls that found the queue full.
    pub full_events: u64,
    /// `FUTEX_WAKE` calls made.
    pub wake_calls: u64,
    /// `FUTEX_WAIT` calls made.
    pub wait_calls: u64,
}

impl CounterValues {
    fn read(c: &Counters) -> CounterValues {
        // Relaxed: statistics, a snapshot.
        CounterValues {
            messages: c.messages.load(Ordering::Relaxed),
            bytes: c.bytes.load(Ordering::Relaxed),
            full_events: c.full_events.load(Ordering::Relaxed),
            wake_calls: c.wake_calls.load(Ordering::Relaxed),
            wait_calls: c.wait_calls.load(Ordering::Relaxed),
        }
    }

    /// Saturating: the values come from shared memory, which anyone may have scribbled on.
    fn add(&mut self, o: CounterValues) {
        self.messages = self.messages.saturating_add(o.messages);
        self.bytes = self.bytes.saturating_add(o.bytes);
        self.full_events = self.full_events.saturating_add(o.full_events);
        self.wake_calls = self.wake_calls.saturating_add(o.wake_calls);
        self.wait_calls = self.wait_calls.saturating_add(o.wait_calls);
    }
}

/// Producer or consumer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Appends messages.
    Producer,
    /// Takes messages.
    Consumer,
}

/// One registered participant, as the table records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Participant {
    /// Slot index: 0 is the consumer.
    pub slot: usize,
    /// Producer or consumer.
    pub role: Role,
    /// Pid at registration (information: pids are reused).
    pub pid: u32,
    /// Start time in clock ticks after boot.
    pub start_time: u64,
    /// Last heartbeat, nanoseconds since the Unix epoch.
    pub heartbeat_unix_ns: u64,
    /// Whether the kernel says its holder lives (its slot lock is held; a stopped process
    /// is alive). A dead participant's slot is reclaimed by the next one to register.
    pub alive: bool,
    /// Its counters since registration.
    pub counters: CounterValues,
}

/// A snapshot of a queue, from [`Queue::inspect`]. Values may change at once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// The configuration.
    pub config: Config,
    /// Producer position (SPSC: committed; MPSC: claimed).
    pub tail: u64,
    /// Consumer position.
    pub head: u64,
    /// Bytes between the positions (headers and padding included).
    pub used_bytes: u64,
    /// Messages sent and not yet received.
    pub messages: u64,
    /// Whether the queue was removed.
    pub closed: bool,
    /// Totals over every producer, past and present.
    pub sent: CounterValues,
    /// Totals over every consumer, past and present.
    pub received: CounterValues,
    /// The registered participants.
    pub participants: Vec<Participant>,
}

impl Snapshot {
    fn read(seg: &Segment) -> Snapshot {
        let h = seg.header();
        let mut sent = CounterValues::read(&h.retired.producers);
        let mut received = CounterValues::read(&h.retired.consumers);
        let mut participants = Vec::new();
        for i in 0..layout::SLOTS {
            let s = seg.slot(i);
            // Acquire: pairs with the Release store of `state` at registration.
            if s.state.load(Ordering::Acquire) != layout::SLOT_ACTIVE {
                continue;
            }
            let counters = CounterValues::read(&s.counters);
            let role = if i == 0 { Role::Consumer } else { Role::Producer };
            match role {
                Role::Consumer => received.add(counters),
                Role::Producer => sent.add(counters),
            }
            participants.push(Participant {
                slot: i,
                role,
                // Relaxed: information only.
                pid: s.pid.load(Ordering::Relaxed),
                start_time: s.start_time.load(Ordering::Relaxed),
                heartbeat_unix_ns: s.heartbeat_unix_ns.load(Ordering::Relaxed),
                alive: seg.slot_alive(i),
                counters,
            });
        }
        // Relaxed: a snapshot.
        let tail = h.producer.tail.load(Ordering::Relaxed);
        let head = h.consumer.head.load(Ordering::Relaxed);
        Snapshot {
            config: seg.config().clone(),
            tail,
            head,
            used_bytes: tail.saturating_sub(head).min(seg.config().capacity),
            messages: sent.messages.saturating_sub(received.messages),
            closed: seg.is_closed(),
            sent,
            received,
            participants,
        }
    }
}

/// A handle's own counters, mirrored into its slot (its own cache line, so each update is
/// a plain store that stays in this core's cache).
#[derive(Default)]
struct Local {
    messages: u64,
    bytes: u64,
    full_events: u64,
    wake_calls: u64,
    wait_calls: u64,
}

impl Local {
    #[inline]
    fn count(&mut self, seg: &Segment, slot: usize, len: usize) {
        self.count_many(seg, slot, 1, len);
    }

    #[inline]
    fn count_many(&mut self, seg: &Segment, slot: usize, messages: u64, bytes: usize) {
        let before = self.messages;
        self.messages += messages;
        self.bytes += bytes as u64;
        let c = &seg.slot(slot).counters;
        // Relaxed: statistics; only this handle writes its slot.
        c.messages.store(self.messages, Ordering::Relaxed);
        c.bytes.store(self.bytes, Ordering::Relaxed);
        if self.messages / HEARTBEAT_EVERY != before / HEARTBEAT_EVERY {
            heartbeat(seg, slot);
        }
    }

    fn store_rare(&self, seg: &Segment, slot: usize) {
        let c = &seg.slot(slot).counters;
        // Relaxed: statistics.
        c.full_events.store(self.full_events, Ordering::Relaxed);
        c.wake_calls.store(self.wake_calls, Ordering::Relaxed);
        c.wait_calls.store(self.wait_calls, Ordering::Relaxed);
    }
}

fn heartbeat(seg: &Segment, slot: usize) {
    // Relaxed: information only.
    seg.slot(slot).heartbeat_unix_ns.store(crate::segment::now_unix_ns(), Ordering::Relaxed);
}

fn corrupt(seg: &Segment, e: RingError) -> Error {
    match e {
        RingError::Full => Error::Full,
        RingError::Corrupt(what) => Error::Corrupt(format!("{:?}: {what}", seg.config().name)),
    }
}

/// When a call gives up.
#[derive(Clone, Copy)]
enum Until {
    /// Try once.
    Now,
    /// Wait until this instant, or forever.
    Deadline(Option<Instant>),
}

fn until(timeout: Duration) -> Until {
    Until::Deadline(Instant::now().checked_add(timeout))
}

enum ProducerRing {
    Spsc(spsc::Producer),
    Mpsc(mpsc::Producer),
}

/// Appends messages to a queue. One per SPSC queue; up to 63 per MPSC queue.
///
/// Dropping it deregisters it. Not `Sync`: use it from one thread at a time; a child
/// process after `fork()` opens its own.
pub struct Producer {
    seg: Segment,
    slot: usize,
    wait: Wait,
    ring: ProducerRing,
    local: Local,
    /// A [`RawGrant`] is out: no other reservation may start (SPSC would hand out the same
    /// space twice).
    raw_outstanding: bool,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("queue", &self.seg.config().name)
            .field("slot", &self.slot)
            .field("wait", &self.wait)
            .finish()
    }
}

impl Producer {
    /// Attaches to queue `name` with the default wait policy ([`Wait::Adaptive`]).
    /// `Busy` if the queue is SPSC and a live process already produces, or the table is full.
    pub fn open(name: &str) -> Result<Producer> {
        Producer::open_with(name, Wait::default())
    }

    /// Attaches with the given wait policy.
    pub fn open_with(name: &str, wait: Wait) -> Result<Producer> {
        let seg = Segment::open(name, Access::ReadWrite)?;
        crate::sync::membarrier::register();
        let range = match seg.config().mode {
            Mode::Spsc => 1..2,
            Mode::Mpsc => 1..layout::SLOTS,
        };
        let slot = seg.register(range, layout::ROLE_PRODUCER)?;
        let ring = match Self::attach(&seg, slot) {
            Ok(r) => r,
            Err(e) => {
                seg.deregister(slot);
                return Err(e);
            }
        };
        Ok(Producer { seg, slot, wait, ring, local: Local::default(), raw_outstanding: false })
    }

    fn attach(seg: &Segment, slot: usize) -> Result<ProducerRing> {
        let h = seg.header();
        let geo = seg.config().geometry();
        // SYNC POINT: Acquire pairs with the consumer's Release store of `head`.
        let head = h.consumer.head.load(Ordering::Acquire);
        Ok(match seg.config().mode {
            Mode::Spsc => {
                // Acquire: pairs with a predecessor's Release store of `tail`.
                let tail = h.producer.tail.load(Ordering::Acquire);
                let p = spsc::Producer::attach(geo, tail, head, &seg.region()).map_err(|e| corrupt(seg, e))?;
                p.publish(&h.producer.tail);
                ProducerRing::Spsc(p)
            }
            Mode::Mpsc => ProducerRing::Mpsc(mpsc::Producer::new(geo, slot as u8, head).map_err(|e| corrupt(seg, e))?),
        })
    }

    /// The queue's configuration.
    pub fn config(&self) -> &Config {
        self.seg.config()
    }

    /// Changes how this handle waits.
    pub fn set_wait(&mut self, wait: Wait) {
        self.wait = wait;
    }

    /// The current wait policy.
    pub fn wait(&self) -> Wait {
        self.wait
    }

    /// Sends `msg`, waiting while the queue is full.
    ///
    /// ```
    /// # use shmq::{Options, Producer, Consumer, Queue};
    /// # let name = format!("doc-send-{}", std::process::id());
    /// # Queue::create(&name, Options::new())?;
    /// let mut tx = Producer::open(&name)?;
    /// tx.send(b"order 1")?;
    /// let mut rx = Consumer::open(&name)?;
    /// assert_eq!(&*rx.recv()?, b"order 1");
    /// # drop((tx, rx)); Queue::remove(&name)?;
    /// # Ok::<(), shmq::Error>(())
    /// ```
    #[inline]
    pub fn send(&mut self, msg: &[u8]) -> Result<()> {
        self.send_until(msg, Until::Deadline(None))
    }

    /// Sends `msg` if there is room now; `Err(Full)` otherwise.
    #[inline]
    pub fn try_send(&mut self, msg: &[u8]) -> Result<()> {
        self.send_until(msg, Until::Now)
    }

    /// Sends `msg`, waiting at most `timeout` for room; `Err(Timeout)` when it expires.
    pub fn send_timeout(&mut self, msg: &[u8], timeout: Duration) -> Result<()> {
        self.send_until(msg, until(timeout))
    }

    #[inline]
    fn send_until(&mut self, msg: &[u8], until: Until) -> Result<()> {
        let res = self.reserve_until(msg.len(), until)?;
        self.seg.region().write(res.payload(), msg);
        self.commit_reserved(res, msg.len() as u32);
        Ok(())
    }

    /// Reserves `len` bytes in the ring for zero-copy writing, waiting while full. Write the
    /// message into the [`Grant`], then [`commit`](Grant::commit) it; dropping the grant
    /// uncommitted aborts it.
    ///
    /// ```
    /// # use shmq::{Options, Producer, Consumer, Queue};
    /// # let name = format!("doc-reserve-{}", std::process::id());
    /// # Queue::create(&name, Options::new())?;
    /// let mut tx = Producer::open(&name)?;
    /// let mut grant = tx.reserve(16)?;
    /// grant[..5].copy_from_slice(b"hello");
    /// grant.truncate(5);
    /// grant.commit();
    /// let mut rx = Consumer::open(&name)?;
    /// assert_eq!(&*rx.recv()?, b"hello");
    /// # drop((tx, rx)); Queue::remove(&name)?;
    /// # Ok::<(), shmq::Error>(())
    /// ```
    pub fn reserve(&mut self, len: usize) -> Result<Grant<'_>> {
        let res = self.reserve_until(len, Until::Deadline(None))?;
        Ok(Grant { producer: self, res, len, done: false })
    }

    /// Reserves if there is room now; `Err(Full)` otherwise.
    pub fn try_reserve(&mut self, len: usize) -> Result<Grant<'_>> {
        let res = self.reserve_until(len, Until::Now)?;
        Ok(Grant { producer: self, res, len, done: false })
    }

    /// Reserves, waiting at most `timeout`; `Err(Timeout)` when it expires.
    pub fn reserve_timeout(&mut self, len: usize, timeout: Duration) -> Result<Grant<'_>> {
        let res = self.reserve_until(len, until(timeout))?;
        Ok(Grant { producer: self, res, len, done: false })
    }

    #[inline]
    fn check_len(&self, len: usize) -> Result<u32> {
        let max = self.seg.config().max_message;
        if len > max as usize {
            return Err(Error::TooLarge { len, max: max as usize });
        }
        Ok(len as u32)
    }

    #[inline]
    fn try_reserve_ring(
        ring: &mut ProducerRing,
        seg: &Segment,
        len: u32,
    ) -> std::result::Result<Reservation, RingError> {
        let h = seg.header();
        match ring {
            ProducerRing::Spsc(p) => p.try_reserve(&h.producer.tail, &h.consumer.head, &seg.region(), len),
            ProducerRing::Mpsc(p) => p.try_reserve(&h.producer.tail, &h.consumer.head, &seg.region(), len),
        }
    }

    #[inline]
    fn reserve_until(&mut self, len: usize, until: Until) -> Result<Reservation> {
        let len = self.check_len(len)?;
        if self.raw_outstanding {
            return Err(Error::InvalidArgument("a raw grant is outstanding: commit or abort it first".into()));
        }
        if self.seg.is_closed() {
            return Err(Error::Closed);
        }
        match Self::try_reserve_ring(&mut self.ring, &self.seg, len) {
            Ok(r) => return Ok(r),
            Err(RingError::Full) => {}
            Err(e) => return Err(corrupt(&self.seg, e)),
        }
        self.local.full_events += 1;
        self.local.store_rare(&self.seg, self.slot);
        let Until::Deadline(deadline) = until else {
            return Err(Error::Full);
        };
        self.wait_for_space(deadline, |ring, seg| Self::try_reserve_ring(ring, seg, len))
    }

    /// Waits (by the handle's policy) until `attempt` stops reporting `Full`.
    fn wait_for_space<T>(
        &mut self,
        deadline: Option<Instant>,
        mut attempt: impl FnMut(&mut ProducerRing, &Segment) -> std::result::Result<T, RingError>,
    ) -> Result<T> {
        heartbeat(&self.seg, self.slot);
        let Producer { seg, ring, local, wait, slot, .. } = self;
        let seg: &Segment = seg;
        let r = wait::wait_for(
            *wait,
            seg.space_words(),
            1 << *slot,
            &OsFutex,
            deadline,
            || match attempt(ring, seg) {
                Ok(r) => Some(Ok(r)),
                Err(RingError::Full) if seg.is_closed() => Some(Err(Error::Closed)),
                Err(RingError::Full) => None,
                Err(e) => Some(Err(corrupt(seg, e))),
            },
            || local.wait_calls += 1,
        );
        local.store_rare(seg, *slot);
        r.unwrap_or(Err(Error::Timeout))
    }

    /// Publishes a written reservation and wakes a sleeping consumer.
    #[inline]
    fn commit_reserved(&mut self, res: Reservation, len: u32) {
        let region = self.seg.region();
        match &mut self.ring {
            ProducerRing::Spsc(p) => {
                p.commit(&region, res, len);
                p.publish(&self.seg.header().producer.tail);
            }
            ProducerRing::Mpsc(p) => p.commit(&region, res, len),
        }
        self.local.count(&self.seg, self.slot, len as usize);
        self.wake_consumer();
    }

    #[inline]
    fn wake_consumer(&mut self) {
        if wait::wake(self.seg.data_words(), &OsFutex) {
            self.local.wake_calls += 1;
            self.local.store_rare(&self.seg, self.slot);
        }
    }

    fn abort_reserved(&mut self, res: Reservation) {
        if let ProducerRing::Mpsc(p) = &self.ring {
            // The claimed space becomes padding; the consumer may be waiting behind it.
            p.abort(&self.seg.region(), res);
            self.wake_consumer();
        }
        // SPSC: nothing was published; the space is simply reused.
    }

    /// Commits a [`RawGrant`] made by [`Grant::into_raw`] on this producer, with `len <=`
    /// its reserved length. A grant of another producer is refused with `InvalidArgument`
    /// (and left alone); a `len` above the reserved length aborts the grant and returns
    /// `InvalidArgument`, so no grant is ever left outstanding by a failed commit.
    pub fn commit_raw(&mut self, grant: RawGrant, len: usize) -> Result<()> {
        self.check_raw(&grant)?;
        self.raw_outstanding = false;
        if len > grant.len {
            self.abort_reserved(grant.res);
            return Err(Error::InvalidArgument(format!(
                "commit of {len} bytes into a grant of {} (the grant was aborted)",
                grant.len
            )));
        }
        self.commit_reserved(grant.res, len as u32);
        Ok(())
    }

    /// Aborts a [`RawGrant`] made on this producer: nothing reaches the consumer.
    pub fn abort_raw(&mut self, grant: RawGrant) -> Result<()> {
        self.check_raw(&grant)?;
        self.raw_outstanding = false;
        self.abort_reserved(grant.res);
        Ok(())
    }

    fn check_raw(&self, grant: &RawGrant) -> Result<()> {
        let ours = self.raw_outstanding
            && grant.ptr == self.seg.region().ptr(grant.res.payload(), grant.len)
            && grant.slot == self.slot;
        if ours { Ok(()) } else { Err(Error::InvalidArgument("not the outstanding grant of this producer".into())) }
    }

    /// Sends every message of `msgs` in order, waiting while the queue is full. Messages
    /// that fit are written together and the consumer is woken once per batch (MPSC: one
    /// claim per batch). If a message is too large nothing is sent.
    ///
    /// ```
    /// # use shmq::{Options, Producer, Consumer, Queue};
    /// # let name = format!("doc-batch-{}", std::process::id());
    /// # Queue::create(&name, Options::new())?;
    /// let mut tx = Producer::open(&name)?;
    /// tx.send_batch(&[&b"a"[..], b"bc", b""])?;
    /// let mut rx = Consumer::open(&name)?;
    /// let mut got = Vec::new();
    /// rx.try_recv_batch(10, |m| got.push(m.to_vec()))?;
    /// assert_eq!(got, [&b"a"[..], b"bc", b""]);
    /// # drop((tx, rx)); Queue::remove(&name)?;
    /// # Ok::<(), shmq::Error>(())
    /// ```
    pub fn send_batch<M: AsRef<[u8]>>(&mut self, msgs: &[M]) -> Result<()> {
        for m in msgs {
            self.check_len(m.as_ref().len())?;
        }
        let mut sent = 0;
        while sent < msgs.len() {
            match self.try_send_batch(&msgs[sent..]) {
                Ok(n) => sent += n,
                Err(Error::Full) => {
                    // Wait for room for the next message, then send it alone.
                    self.send(msgs[sent].as_ref())?;
                    sent += 1;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Sends as many messages of `msgs`, from the first, as fit now, and returns how many.
    /// `Err(Full)` if not even the first fits.
    pub fn try_send_batch<M: AsRef<[u8]>>(&mut self, msgs: &[M]) -> Result<usize> {
        for m in msgs {
            self.check_len(m.as_ref().len())?;
        }
        if msgs.is_empty() {
            return Ok(0);
        }
        if self.seg.is_closed() {
            return Err(Error::Closed);
        }
        let region = self.seg.region();
        let h = self.seg.header();
        let mut count = 0;
        let mut bytes = 0;
        let outcome = match &mut self.ring {
            ProducerRing::Spsc(p) => {
                let mut outcome = Ok(());
                for m in msgs {
                    let m = m.as_ref();
                    match p.try_reserve(&h.producer.tail, &h.consumer.head, &region, m.len() as u32) {
                        Ok(res) => {
                            region.write(res.payload(), m);
                            p.commit(&region, res, m.len() as u32);
                            count += 1;
                            bytes += m.len();
                        }
                        Err(e) => {
                            outcome = Err(e);
                            break;
                        }
                    }
                }
                p.publish(&h.producer.tail);
                outcome
            }
            ProducerRing::Mpsc(p) => {
                let lens = msgs.iter().map(|m| m.as_ref().len() as u32);
                match p.try_reserve_many(&h.producer.tail, &h.consumer.head, &region, lens) {
                    Ok((first, n)) => {
                        let (mut pos, mut index) = (first.pos, first.index);
                        for m in &msgs[..n] {
                            let m = m.as_ref();
                            let res = Reservation { pos, index, len: m.len() as u32 };
                            region.write(res.payload(), m);
                            p.commit(&region, res, m.len() as u32);
                            let size = layout::record::size(m.len() as u64);
                            pos += size;
                            index += size as usize;
                            bytes += m.len();
                        }
                        count = n;
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            }
        };
        if count > 0 {
            self.local.count_many(&self.seg, self.slot, count as u64, bytes);
            self.wake_consumer();
            return Ok(count);
        }
        match outcome {
            Err(RingError::Full) | Ok(()) => {
                self.local.full_events += 1;
                self.local.store_rare(&self.seg, self.slot);
                Err(Error::Full)
            }
            Err(e) => Err(corrupt(&self.seg, e)),
        }
    }

    /// Messages waiting in the queue (a snapshot from the counters: may change at once).
    pub fn len(&self) -> usize {
        Snapshot::read(&self.seg).messages as usize
    }

    /// Whether the queue holds no message (a snapshot: may change at once).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        self.local.store_rare(&self.seg, self.slot);
        self.seg.deregister(self.slot);
    }
}

/// Space reserved in the ring by [`Producer::reserve`]: write the message into it (it
/// dereferences to `&mut [u8]` of the reserved length), then [`commit`](Grant::commit).
/// Dropping it without committing aborts: nothing reaches the consumer.
///
/// The bytes are shared memory: initially they hold whatever was there (zeros or an older
/// message), and a process that ignores the protocol could write them too.
pub struct Grant<'a> {
    producer: &'a mut Producer,
    res: Reservation,
    len: usize,
    done: bool,
}

impl Grant<'_> {
    /// Publishes the message (the first [`len`](<[u8]>::len) bytes).
    pub fn commit(mut self) {
        self.done = true;
        let (res, len) = (self.res, self.len as u32);
        self.producer.commit_reserved(res, len);
    }

    /// Shortens the message to `len` bytes (no-op if not shorter). Committing fewer bytes
    /// than reserved is allowed; the rest of the space is skipped.
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }
}

impl Grant<'_> {
    /// Detaches the reservation from its borrow, for FFI and other callers that must keep
    /// it across calls: neither committed nor aborted on drop. Finish it with
    /// [`Producer::commit_raw`] or [`Producer::abort_raw`]; until then the producer refuses
    /// new reservations.
    pub fn into_raw(mut self) -> RawGrant {
        self.done = true;
        self.producer.raw_outstanding = true;
        let ptr = self.producer.seg.region().ptr(self.res.payload(), self.len);
        RawGrant { res: self.res, ptr, len: self.len, slot: self.producer.slot }
    }
}

/// A reservation detached from its [`Grant`]: `len` writable bytes at `as_mut_ptr()`,
/// valid until the grant is committed or aborted, or its producer dropped.
#[derive(Debug)]
pub struct RawGrant {
    res: Reservation,
    ptr: *mut u8,
    len: usize,
    slot: usize,
}

impl RawGrant {
    /// The first reserved byte.
    pub fn as_mut_ptr(&self) -> *mut u8 {
        self.ptr
    }
    /// Bytes reserved.
    pub fn len(&self) -> usize {
        self.len
    }
    /// Whether zero bytes were reserved.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl std::ops::Deref for Grant<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        let p = self.producer.seg.region().ptr(self.res.payload(), self.len);
        // SAFETY: in bounds (checked by `ptr`); the reserved bytes belong to this producer
        // until it commits (the ring protocol), and the mapping lives as long as the
        // producer we borrow.
        unsafe { std::slice::from_raw_parts(p, self.len) }
    }
}

impl std::ops::DerefMut for Grant<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        let p = self.producer.seg.region().ptr(self.res.payload(), self.len);
        // SAFETY: as in `deref`; `&mut self` makes this the only view.
        unsafe { std::slice::from_raw_parts_mut(p, self.len) }
    }
}

impl Drop for Grant<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.producer.abort_reserved(self.res);
        }
    }
}

impl std::fmt::Debug for Grant<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grant").field("len", &self.len).finish()
    }
}

/// Takes messages from a queue, in order. One per queue.
///
/// Dropping it deregisters it. Not `Sync`: use it from one thread at a time; a child
/// process after `fork()` opens its own.
pub struct Consumer {
    seg: Segment,
    slot: usize,
    wait: Wait,
    ring: consumer::Consumer,
    local: Local,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer").field("queue", &self.seg.config().name).field("wait", &self.wait).finish()
    }
}

impl Consumer {
    /// Attaches to queue `name` as its consumer, with the default wait policy. `Busy` while
    /// another live process (stopped ones included) is the consumer.
    pub fn open(name: &str) -> Result<Consumer> {
        Consumer::open_with(name, Wait::default())
    }

    /// Attaches with the given wait policy.
    pub fn open_with(name: &str, wait: Wait) -> Result<Consumer> {
        let seg = Segment::open(name, Access::ReadWrite)?;
        crate::sync::membarrier::register();
        let slot = seg.register(0..1, layout::ROLE_CONSUMER)?;
        match Self::attach(&seg) {
            Ok(ring) => Ok(Consumer { seg, slot, wait, ring, local: Local::default() }),
            Err(e) => {
                seg.deregister(slot);
                Err(e)
            }
        }
    }

    fn attach(seg: &Segment) -> Result<consumer::Consumer> {
        let h = seg.header();
        let cfg = seg.config();
        // Relaxed: we are the only writer of `head`; its last writer handed us the slot.
        let mut head = h.consumer.head.load(Ordering::Relaxed);
        if cfg.mode == Mode::Mpsc {
            // A predecessor that died mid-release may have zeroed records it delivered.
            let releasing = h.consumer.releasing.load(Ordering::Relaxed);
            let tail = h.producer.tail.load(Ordering::Relaxed);
            if releasing > head && releasing <= tail && releasing - head <= cfg.capacity && releasing % 8 == 0 {
                head = releasing;
            }
        }
        let mut ring =
            consumer::Consumer::new(cfg.geometry(), head, cfg.mode == Mode::Mpsc).map_err(|e| corrupt(seg, e))?;
        ring.publish(&h.consumer.head);
        // Relaxed: read only by a successor, after the kernel hands it our slot lock.
        h.consumer.releasing.store(head, Ordering::Relaxed);
        Ok(ring)
    }

    /// The queue's configuration.
    pub fn config(&self) -> &Config {
        self.seg.config()
    }

    /// Changes how this handle waits.
    pub fn set_wait(&mut self, wait: Wait) {
        self.wait = wait;
    }

    /// The current wait policy.
    pub fn wait(&self) -> Wait {
        self.wait
    }

    /// Receives the next message, waiting while the queue is empty. `Err(Closed)` once the
    /// queue was removed and everything in it received.
    #[inline]
    pub fn recv(&mut self) -> Result<Message<'_>> {
        let rec = self.next(Until::Deadline(None))?;
        Ok(Message { consumer: self, rec: rec.expect("waiting recv returns a record") })
    }

    /// The next message if there is one now: `Ok(None)` when empty.
    ///
    /// ```
    /// # use shmq::{Options, Consumer, Queue};
    /// # let name = format!("doc-try-recv-{}", std::process::id());
    /// # Queue::create(&name, Options::new())?;
    /// let mut rx = Consumer::open(&name)?;
    /// assert!(rx.try_recv()?.is_none());
    /// # drop(rx); Queue::remove(&name)?;
    /// # Ok::<(), shmq::Error>(())
    /// ```
    #[inline]
    pub fn try_recv(&mut self) -> Result<Option<Message<'_>>> {
        Ok(self.next(Until::Now)?.map(|rec| Message { consumer: self, rec }))
    }

    /// Receives the next message, waiting at most `timeout`: `Err(Timeout)` when it expires.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Message<'_>> {
        let rec = self.next(until(timeout))?;
        Ok(Message { consumer: self, rec: rec.expect("waiting recv returns a record") })
    }

    /// The next message without taking it: the same message again on the next call, until
    /// [`advance`](Self::advance). `Ok(None)` when empty now.
    pub fn try_peek(&mut self) -> Result<Option<&[u8]>> {
        match self.next(Until::Now)? {
            Some(rec) => Ok(Some(self.payload(rec))),
            None => Ok(None),
        }
    }

    /// Like [`try_peek`](Self::try_peek), but waits by the handle's policy: forever for
    /// `None`, at most the duration otherwise (`Err(Timeout)`).
    pub fn peek(&mut self, timeout: Option<Duration>) -> Result<&[u8]> {
        let until = timeout.map_or(Until::Deadline(None), until);
        let rec = self.next(until)?.expect("waiting peek returns a record");
        Ok(self.payload(rec))
    }

    /// Takes (releases) the message at the head, as last returned by a peek. Returns
    /// `false` if there is none.
    pub fn advance(&mut self) -> Result<bool> {
        match Self::peek_ring(&mut self.ring, &self.seg)? {
            Some(rec) => {
                self.release(rec);
                self.publish();
                Ok(true)
            }
            None => Ok(false),
        }
    }

    #[inline]
    fn peek_ring(ring: &mut consumer::Consumer, seg: &Segment) -> Result<Option<consumer::Record>> {
        ring.peek(&seg.region(), &seg.header().consumer.releasing).map_err(|e| corrupt(seg, e))
    }

    /// The next record; `None` only for `Until::Now` on an empty queue.
    #[inline]
    fn next(&mut self, until: Until) -> Result<Option<consumer::Record>> {
        if let Some(rec) = Self::peek_ring(&mut self.ring, &self.seg)? {
            return Ok(Some(rec));
        }
        // Padding skipped on the way is space the producers may be waiting for.
        self.publish();
        let closed = |ring: &mut consumer::Consumer, seg: &Segment| -> Result<Option<consumer::Record>> {
            // Drain what was sent before the removal, then report it.
            match Self::peek_ring(ring, seg)? {
                Some(r) => Ok(Some(r)),
                None => Err(Error::Closed),
            }
        };
        let deadline = match until {
            Until::Now if self.seg.is_closed() => return closed(&mut self.ring, &self.seg),
            Until::Now => return Ok(None),
            Until::Deadline(d) => d,
        };
        heartbeat(&self.seg, self.slot);
        let Consumer { seg, ring, local, wait, slot, .. } = self;
        let seg: &Segment = seg;
        let r = wait::wait_for(
            *wait,
            seg.data_words(),
            1 << *slot,
            &OsFutex,
            deadline,
            || match Self::peek_ring(ring, seg) {
                Ok(Some(r)) => Some(Ok(Some(r))),
                Ok(None) if seg.is_closed() => Some(closed(ring, seg)),
                Ok(None) => None,
                Err(e) => Some(Err(e)),
            },
            || local.wait_calls += 1,
        );
        local.store_rare(seg, *slot);
        r.unwrap_or(Err(Error::Timeout))
    }

    /// Stores `head` if it moved, and wakes producers waiting for space.
    #[inline]
    fn publish(&mut self) {
        if !self.ring.has_unpublished() {
            return;
        }
        self.ring.publish(&self.seg.header().consumer.head);
        if wait::wake(self.seg.space_words(), &OsFutex) {
            self.local.wake_calls += 1;
            self.local.store_rare(&self.seg, self.slot);
        }
    }

    #[inline]
    fn release(&mut self, rec: consumer::Record) {
        self.ring.release(&self.seg.region(), rec, &self.seg.header().consumer.releasing);
        self.local.count(&self.seg, self.slot, rec.len as usize);
    }

    /// Takes up to `max` messages that are in the queue now, calling `f` on each, and
    /// publishes the consumer position once. Returns how many; `Ok(0)` when empty.
    pub fn try_recv_batch(&mut self, max: usize, f: impl FnMut(&[u8])) -> Result<usize> {
        self.recv_batch_until(max, Until::Now, f)
    }

    /// Like [`try_recv_batch`](Self::try_recv_batch), but waits (by the handle's policy)
    /// for at least one message.
    pub fn recv_batch(&mut self, max: usize, f: impl FnMut(&[u8])) -> Result<usize> {
        self.recv_batch_until(max, Until::Deadline(None), f)
    }

    /// Like [`recv_batch`](Self::recv_batch), waiting at most `timeout` for the first.
    pub fn recv_batch_timeout(&mut self, max: usize, timeout: Duration, f: impl FnMut(&[u8])) -> Result<usize> {
        self.recv_batch_until(max, until(timeout), f)
    }

    fn recv_batch_until(&mut self, max: usize, until: Until, mut f: impl FnMut(&[u8])) -> Result<usize> {
        if max == 0 {
            return Ok(0);
        }
        let Some(mut rec) = self.next(until)? else {
            return Ok(0);
        };
        let mut n = 0;
        loop {
            f(self.payload(rec));
            self.release(rec);
            n += 1;
            if n == max {
                break;
            }
            match Self::peek_ring(&mut self.ring, &self.seg) {
                Ok(Some(r)) => rec = r,
                Ok(None) => break,
                Err(e) => {
                    self.publish();
                    return Err(e);
                }
            }
        }
        self.publish();
        Ok(n)
    }

    fn payload(&self, rec: consumer::Record) -> &[u8] {
        let len = rec.len as usize;
        let p = self.seg.region().ptr(rec.payload, len);
        // SAFETY: in bounds (checked by `ptr`); a committed record belongs to the consumer
        // until it releases it, and the mapping lives as long as `self`.
        unsafe { std::slice::from_raw_parts(p, len) }
    }

    /// Messages waiting (a snapshot from the counters: may change at once).
    pub fn len(&self) -> usize {
        Snapshot::read(&self.seg).messages as usize
    }

    /// Whether no message waits at the head now (a snapshot: may change at once).
    pub fn is_empty(&self) -> bool {
        self.ring.is_empty(&self.seg.region())
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.publish();
        self.local.store_rare(&self.seg, self.slot);
        self.seg.deregister(self.slot);
    }
}

/// A received message, borrowed from the ring: it dereferences to `&[u8]` and is released
/// (its space handed back to producers) when dropped.
pub struct Message<'a> {
    consumer: &'a mut Consumer,
    rec: consumer::Record,
}

impl std::ops::Deref for Message<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.consumer.payload(self.rec)
    }
}

impl AsRef<[u8]> for Message<'_> {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl Drop for Message<'_> {
    fn drop(&mut self) {
        let rec = self.rec;
        self.consumer.release(rec);
        self.consumer.publish();
    }
}

impl std::fmt::Debug for Message<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message").field("len", &self.rec.len).finish()
    }
}

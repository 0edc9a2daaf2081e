//! What a [`Producer`](super::Producer) and a [`Consumer`](super::Consumer) have in common:
//! a [`Handle`] is a segment (its own mapping and file description, shared with the handle's
//! [`Interrupter`]s), a participant slot, a wait policy and the handle's counters. [`Handle::open`] is the one way to open, register
//! and attach (deregistering again if attaching fails); dropping a `Handle` deregisters;
//! [`Handle::wait_for`] is the one wait loop both sides use.

use std::cell::Cell;
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::interrupt::{Interrupter, Shared, words};
use super::stats::{Local, Role, heartbeat};
use crate::error::{Error, Result};
use crate::layout::{self, Header, Slot};
use crate::ring::{PtrRegion, RingError};
use crate::segment::{Access, Mode, Segment};
use crate::sync::atomic::Ordering;
use crate::sync::futex::{FencedFutex, OsFutex};
use crate::sync::wait::{self, Wait, WaitWords};

/// The longest a reader of an `Fsync::Always` queue sleeps before it looks again without
/// being woken (see `Handle::wait_for`).
const SYNCED_READER_SLICE: Duration = Duration::from_millis(50);

/// When a call gives up.
#[derive(Clone, Copy)]
pub(super) enum Until {
    /// Try once.
    Now,
    /// Wait until this instant, or forever.
    Deadline(Option<Instant>),
    /// Wait at most this long, counted from when the call starts to wait: a call that
    /// succeeds at once never reads the clock.
    Within(Duration),
}

impl Until {
    /// The deadline of a call about to wait; `None` for `Now` (do not wait).
    #[inline]
    pub(super) fn deadline(self) -> Option<Option<Instant>> {
        match self {
            Until::Now => None,
            Until::Deadline(d) => Some(d),
            Until::Within(t) => Some(Instant::now().checked_add(t)),
        }
    }

    /// [`deadline`](Self::deadline), fixed at the first call: a `Within` becomes the
    /// `Deadline` it gives, so a loop that waits again keeps the same one.
    #[inline]
    pub(super) fn fix(&mut self) -> Option<Option<Instant>> {
        let d = self.deadline();
        if let Some(d) = d {
            *self = Until::Deadline(d);
        }
        d
    }
}

/// `Until` for a call that waits at most `timeout`.
pub(super) fn until(timeout: Duration) -> Until {
    Until::Within(timeout)
}

/// A ring error as the API reports it.
pub(super) fn corrupt(seg: &Segment, e: RingError) -> Error {
    match e {
        RingError::Full => Error::Full,
        RingError::Corrupt(what) => Error::Corrupt(format!("{:?}: {what}", seg.config().name)),
        RingError::Misuse(what) => Error::InvalidArgument(what.into()),
        RingError::Reclaimed => Error::Corrupt(format!(
            "{:?}: this producer's claim was turned into padding by a reader that found its slot lock free \
             (was the process forked, or its lock byte unlocked?); the message was not sent",
            seg.config().name
        )),
    }
}

/// One registered participant of a queue; see the module docs.
///
/// Besides the segment it keeps what the per-message paths use, made once: the data region,
/// and pointers to the header and to its own slot (each use would otherwise chase the `Arc`
/// and recompute them after every atomic access).
pub(super) struct Handle {
    pub(super) shared: Arc<Shared>,
    /// The data region of `shared.seg`.
    pub(super) region: PtrRegion,
    /// `shared.seg`'s header.
    header: NonNull<Header>,
    /// This handle's participant slot in `shared.seg`.
    slot_ptr: NonNull<Slot>,
    pub(super) slot: usize,
    pub(super) role: Role,
    pub(super) wait: Wait,
    /// A reader of an `Fsync::Always` queue: what it waits for becomes readable only when
    /// a sync completes, and only wakers that fence fully wake it (see `wait_for`).
    synced_reader: bool,
    pub(super) local: Local,
    /// `Send` but not `Sync`, and so are the handles made of it: a handle's ring state and
    /// counters are plain fields that one thread at a time may touch (its `&self` methods
    /// read the ring too), and the C ABI relies on Rust refusing to share one.
    _not_sync: PhantomData<Cell<()>>,
}

// SAFETY: `header` and `slot_ptr` point into the mapping that `shared` (an `Arc` of a
// `Send + Sync` segment) keeps alive; they carry no thread affinity, and the segment's words
// are atomics. Only `Send` is claimed: `_not_sync` keeps the handle from being shared.
unsafe impl Send for Handle {}

impl Handle {
    /// Opens queue `name` read-write, registers as `role` (the consumer slot, the SPSC
    /// producer slot, or any MPSC producer slot) and runs `attach` on the segment and the
    /// slot taken. If `attach` fails the slot is given back.
    pub(super) fn open<R>(
        name: &str,
        role: Role,
        wait: Wait,
        attach: impl FnOnce(&Segment, usize) -> Result<R>,
    ) -> Result<(Handle, R)> {
        let seg = Segment::open(name, Access::ReadWrite)?;
        crate::sync::membarrier::register();
        let (range, word) = match (role, seg.config().mode) {
            (Role::Consumer, _) => (0..1, layout::ROLE_CONSUMER),
            (Role::Producer, Mode::Spsc) => (1..2, layout::ROLE_PRODUCER),
            (Role::Producer, Mode::Mpsc) => (1..layout::SLOTS, layout::ROLE_PRODUCER),
        };
        let slot = seg.register(range, word)?;
        match attach(&seg, slot) {
            Ok(r) => Ok((Handle::new(seg, slot, role, wait, None), r)),
            Err(e) => {
                seg.deregister(slot);
                Err(e)
            }
        }
    }

    /// A handle on `seg`, registered in `slot` (a member of subscription entry `sub`, if
    /// given: it sleeps on that entry's wait line).
    pub(super) fn new(seg: Segment, slot: usize, role: Role, wait: Wait, sub: Option<usize>) -> Handle {
        let region = seg.region();
        let header = NonNull::from(seg.header());
        let slot_ptr = NonNull::from(seg.slot(slot));
        let shared = Shared::new(seg, sub);
        let local = Local::default();
        let synced_reader = role == Role::Consumer
            && shared.seg.config().durable.as_ref().is_some_and(|d| d.fsync == super::Fsync::Always);
        Handle { shared, region, header, slot_ptr, slot, role, wait, synced_reader, local, _not_sync: PhantomData }
    }

    /// The segment's header.
    #[inline]
    pub(super) fn header(&self) -> &Header {
        // SAFETY: points into the mapping of `self.shared.seg`, which lives (and stays at
        // its address, even after a fork) as long as the `Arc` we hold; `Header` is made of
        // atomics, valid for any bytes.
        unsafe { self.header.as_ref() }
    }

    /// This handle's participant slot.
    #[inline]
    pub(super) fn my_slot(&self) -> &Slot {
        // SAFETY: as in `header`: a slot of the table inside the same mapping.
        unsafe { self.slot_ptr.as_ref() }
    }

    /// Whether the queue was removed (`closed` is set).
    #[inline]
    pub(super) fn is_closed(&self) -> bool {
        // Acquire: pairs with the Release in `Queue::remove`.
        self.header().identity.closed.load(Ordering::Acquire) != 0
    }

    /// The futex pair the consumer sleeps on.
    #[inline]
    pub(super) fn data_words(&self) -> WaitWords<'_> {
        let h = self.header();
        line_words(h, &h.data_wait, std::mem::offset_of!(crate::layout::Header, data_wait))
    }

    /// The futex pair producers sleep on.
    #[inline]
    pub(super) fn space_words(&self) -> WaitWords<'_> {
        let h = self.header();
        line_words(h, &h.space_wait, std::mem::offset_of!(crate::layout::Header, space_wait))
    }

    /// Counts `messages` messages of `bytes` payload bytes in the slot.
    #[inline]
    pub(super) fn count(&mut self, messages: u64, bytes: usize) {
        // SAFETY: as in `my_slot` (not through it: `self.local` is borrowed mutably).
        let slot = unsafe { self.slot_ptr.as_ref() };
        self.local.count(slot, messages, bytes);
    }

    /// Stores the rarely changing counters (full events, wake and wait calls) in the slot.
    pub(super) fn store_rare(&self) {
        self.local.store_rare(self.my_slot());
    }

    /// A new [`Interrupter`] for this handle's blocking calls.
    pub(super) fn interrupter(&self) -> Interrupter {
        Interrupter::new(&self.shared, self.role)
    }

    /// Waits by the handle's policy until `poll` returns `Some`, or until `deadline`
    /// (`None`: forever; then `Err(Timeout)`), or until an [`Interrupter`] interrupts it
    /// (`Err(Interrupted)`; checked whenever `poll` finds nothing, so a pending interruption
    /// ends the wait before it starts). `poll` must not block.
    pub(super) fn wait_for<T>(
        &mut self,
        deadline: Option<Instant>,
        mut poll: impl FnMut(&Segment) -> Option<Result<T>>,
    ) -> Result<T> {
        let shared: &Shared = &self.shared;
        // SAFETY: as in `my_slot` (not through it: `self.local` is borrowed mutably).
        let slot = unsafe { self.slot_ptr.as_ref() };
        let (seg, local) = (&shared.seg, &mut self.local);
        heartbeat(slot);
        let (words, me) = (words(seg, self.role, shared.sub), 1u64 << self.slot);
        let poll = || match poll(seg) {
            Some(r) => Some(r),
            None if shared.take_interruption() => Some(Err(Error::Interrupted)),
            None => None,
        };
        let mut on_sleep = || local.wait_calls += 1;
        let r = if self.synced_reader {
            // A reader of an `Fsync::Always` queue reads only what is synced, so what it waits
            // for comes with a sync: the journal wakes it after each one (producers do not),
            // with a full fence, as every other waker of a reader's line does (acks, the
            // wrap, a close: `gate::wake_readers`, `acks`, unconditional wakes). So it sleeps
            // without the heavy barrier (a `membarrier` that interrupts every CPU running a
            // registered process), and `Adaptive` sleeps at once: a sync takes longer than
            // its spin. In slices: a journaler killed between raising `durable` and its wake
            // leaves readable records and nobody to wake for them until the next sync.
            let policy = if self.wait == Wait::Adaptive { Wait::Block } else { self.wait };
            let mut poll = poll;
            loop {
                let slice = Instant::now() + SYNCED_READER_SLICE;
                let until = deadline.map_or(slice, |d| d.min(slice));
                match wait::wait_for(policy, words, me, &FencedFutex, Some(until), &mut poll, &mut on_sleep) {
                    None if deadline.is_none_or(|d| Instant::now() < d) => continue,
                    r => break r,
                }
            }
        } else {
            wait::wait_for(self.wait, words, me, &OsFutex, deadline, poll, on_sleep)
        };
        local.store_rare(slot);
        r.unwrap_or(Err(Error::Timeout))
    }
}

/// The futex pair of `line`, at byte `offset` of the header `h`: what `Segment::wait_words`
/// gives, from the handle's own header pointer (one pointer fewer to follow on the
/// per-message paths).
#[inline]
fn line_words<'a>(h: &'a crate::layout::Header, line: &'a crate::layout::WaitLine, offset: usize) -> WaitWords<'a> {
    WaitWords { waiters: &line.waiters, epoch: &line.epoch, asleep: &line.asleep, tags: &h.sleeping.tags, line: offset }
}

/// A producer's gate: built on the handle itself, so that the per-message paths, which pass
/// it and rarely call it, pay nothing for it.
impl crate::ring::Gate for Handle {
    #[inline(never)]
    fn head(&self, tail: u64, need: u64) -> std::result::Result<u64, RingError> {
        super::gate::QueueGate { seg: &self.shared.seg, slot: self.my_slot(), me: self.slot }.head(tail, need)
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.store_rare();
        self.shared.seg.deregister(self.slot);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn handles_are_send() {
        fn send<T: Send>() {}
        send::<crate::Producer>();
        send::<crate::Consumer>();
    }
}

//! What a [`Producer`](super::Producer) and a [`Consumer`](super::Consumer) have in common:
//! a [`Handle`] is a segment (its own mapping and file description, shared with the handle's
//! [`Interrupter`]s), a participant slot, a wait policy and the handle's counters. [`Handle::open`] is the one way to open, register
//! and attach (deregistering again if attaching fails); dropping a `Handle` deregisters;
//! [`Handle::wait_for`] is the one wait loop both sides use.

use std::cell::Cell;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::interrupt::{Interrupter, Shared, words};
use super::stats::{Local, Role, heartbeat};
use crate::error::{Error, Result};
use crate::layout;
use crate::ring::RingError;
use crate::segment::{Access, Mode, Segment};
use crate::sync::futex::OsFutex;
use crate::sync::wait::{self, Wait};

/// When a call gives up.
#[derive(Clone, Copy)]
pub(super) enum Until {
    /// Try once.
    Now,
    /// Wait until this instant, or forever.
    Deadline(Option<Instant>),
}

/// `Until` for a call that waits at most `timeout`.
pub(super) fn until(timeout: Duration) -> Until {
    Until::Deadline(Instant::now().checked_add(timeout))
}

/// A ring error as the API reports it.
pub(super) fn corrupt(seg: &Segment, e: RingError) -> Error {
    match e {
        RingError::Full => Error::Full,
        RingError::Corrupt(what) => Error::Corrupt(format!("{:?}: {what}", seg.config().name)),
    }
}

/// One registered participant of a queue; see the module docs.
pub(super) struct Handle {
    pub(super) shared: Arc<Shared>,
    pub(super) slot: usize,
    pub(super) role: Role,
    pub(super) wait: Wait,
    pub(super) local: Local,
    /// `Send` but not `Sync`, and so are the handles made of it: a handle's ring state and
    /// counters are plain fields that one thread at a time may touch (its `&self` methods
    /// read the ring too), and the C ABI relies on Rust refusing to share one.
    _not_sync: PhantomData<Cell<()>>,
}

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
            Ok(r) => {
                let shared = Shared::new(seg);
                Ok((Handle { shared, slot, role, wait, local: Local::default(), _not_sync: PhantomData }, r))
            }
            Err(e) => {
                seg.deregister(slot);
                Err(e)
            }
        }
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
        let (seg, local) = (&shared.seg, &mut self.local);
        heartbeat(seg, self.slot);
        let (words, me) = (words(seg, self.role), 1u64 << self.slot);
        let poll = || match poll(seg) {
            Some(r) => Some(r),
            None if shared.take_interruption() => Some(Err(Error::Interrupted)),
            None => None,
        };
        let r = wait::wait_for(self.wait, words, me, &OsFutex, deadline, poll, || local.wait_calls += 1);
        local.store_rare(seg, self.slot);
        r.unwrap_or(Err(Error::Timeout))
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.local.store_rare(&self.shared.seg, self.slot);
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

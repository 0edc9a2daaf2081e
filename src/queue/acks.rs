//! Explicit acknowledgements: a member of a subscription with [`Ack::Explicit`] enters
//! every message it hands out in the subscription's in-flight table (shared memory), and
//! the entry stays there until the member acks it. What a member nacks, holds past
//! `ack_wait`, or holds when it dies is delivered again, read from the log (a durable
//! queue's log holds everything from the lowest entry on: it is part of what retention
//! keeps). After `max_deliveries`, or on reject, the message moves to the subscription's
//! dead-letter queue. How entries change hands is `ring::inflight`.
//!
//! Handing out a fresh message (from the member's claimed span) takes these steps, each of
//! which may be the last (kill points `ack-reserved`, `ack-entered`):
//! 1. an entry is reserved (`RESERVED`: its fields are still a former holder's, so a dead
//!    member's reserved entry is simply freed), its fields written, and it is marked
//!    `FILLED`;
//! 2. the member's `entered` word is raised past the message: whoever takes the member's
//!    claim over (it died) starts there, so the message is never in both the claim and an
//!    entry, and a `FILLED` entry below `entered` counts as handed out;
//! 3. the entry is committed (`ACQUIRED`).
//!
//! A dead member's entries are released by any member that finds its slot's lock free
//! (the kernel frees it only at death: a stopped member keeps its entries until they
//! expire), or by whichever process takes its slot next (at registration).
//!
//! [`Ack::Explicit`]: crate::Ack::Explicit

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::Consumer;
use crate::error::{Error, Result};
use crate::layout::{
    self, IF_ACQUIRED, IF_DOOMED, IF_FILLED, IF_FREE, IF_MOVING, IF_RELEASED, IF_RESERVED, IF_RETAKING,
    IN_FLIGHT_ENTRIES,
};
use crate::queue::attach::Until;
use crate::queue::dlq::DeadLetter;
use crate::ring::consumer::Record;
use crate::ring::inflight::{self, Fields};
use crate::segment::{Acks, Segment};
use crate::sync::atomic::Ordering;
use crate::sync::futex::FencedFutex;
use crate::sync::wait;

/// How often a member looks through the table for expired entries and dead owners (also
/// the longest it sleeps at once).
pub(crate) const SWEEP_EVERY: Duration = Duration::from_millis(50);
/// The reason given to a message moved because it was delivered `max_deliveries` times.
const TOO_MANY: &str = "delivered max_deliveries times without an ack";

/// What a member of a subscription with explicit acks keeps.
pub(super) struct AckState {
    sub: usize,
    slot: usize,
    pid: u32,
    ack_wait_ns: u64,
    max_in_flight: usize,
    max_deliveries: u32,
    /// What this member holds: (id, entry, owner word), in the order it was handed out
    /// (acks mostly come in that order: the one looked for is near the front).
    held: VecDeque<(u64, usize, u64)>,
    /// The entry reserved for the next fresh message, if any.
    reserved: Option<(usize, u64)>,
    /// Where the next search for a free entry starts.
    hint: usize,
    /// The table's `released` counter when this member last looked for released entries.
    pub(super) seen_released: u64,
    /// Where the next look for released entries starts.
    retake_hint: usize,
    /// When this member looks through the table next (`CLOCK_MONOTONIC` ns).
    next_sweep_ns: u64,
    /// [`wall_offset`] at the last look through the table.
    wall_offset: u64,
    /// The payload of the message handed out again last (read from the log).
    pub(super) buf: Vec<u8>,
    /// The delivery count of the message handed out last.
    pub(super) deliveries: u32,
    /// The dead-letter queue's producer (opened at the first dead letter).
    dlq: Option<crate::queue::Producer>,
    /// Whether entries past the first `max_in_flight` may be in use (a restore puts every
    /// message to deliver again in the table, however many): fresh messages then wait
    /// until fewer than `max_in_flight` are held in all. Cleared by a look that finds none.
    beyond: bool,
    /// This process's thread writing the checkpoints this member's changes owe.
    owed: std::sync::Arc<crate::queue::journal::Owed>,
}

/// The most messages a member remembers holding: one whose entry expired and was reused
/// stays remembered (its late ack says `AckExpired`) until this many newer ones push it out
/// (then its ack says `InvalidArgument`).
const HELD_MAX: usize = 2 * IN_FLIGHT_ENTRIES;

impl AckState {
    /// Remembers that this member holds message `id` in entry `k` (word `w`).
    fn hold(&mut self, id: u64, k: usize, w: u64) {
        if self.held.len() == HELD_MAX {
            self.held.pop_front();
        }
        self.held.push_back((id, k, w));
    }
}

/// What [`Consumer::acks_next`] hands out.
pub(super) enum Delivery {
    /// A fresh message, in the ring or the log as any member's.
    Fresh(Record),
    /// A message handed out again: its payload is in `AckState::buf`.
    Again(u64),
}

/// `CLOCK_MONOTONIC` now, in nanoseconds: deadlines in the table are in it (one clock for
/// every process on the host).
pub(super) fn mono_ns() -> u64 {
    crate::segment::clock_ns(libc::CLOCK_MONOTONIC)
}

/// `CLOCK_MONOTONIC_COARSE`: the monotonic clock as of the kernel's last tick, never ahead
/// of [`mono_ns`] and normally behind it by less than a tick ([`tick_ns`]). A member reads
/// a clock for every message it hands out (its deadline), and this one costs about 2.5 ns
/// where `CLOCK_MONOTONIC` costs about 20 (both through the vDSO, on the KVM guest with a
/// TSC clock source this was measured on): at 64 B, those 20 ns were the difference
/// between a member that keeps up with its producer and one that falls behind the ring
/// and reads the log (`shmq bench --acks`: explicit / auto 0.6 against 1.0).
fn mono_coarse_ns() -> u64 {
    crate::segment::clock_ns(libc::CLOCK_MONOTONIC_COARSE)
}

/// The coarse clock's resolution (the kernel's tick, 1-10 ms by `HZ`), asked once per
/// process. A deadline taken from the coarse clock is set this much later, so that it does
/// not come before `ack_wait` has passed (unless the kernel's tick itself is late).
fn tick_ns() -> u64 {
    static TICK: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICK.get_or_init(|| {
        let ns = crate::segment::clock_res_ns(libc::CLOCK_MONOTONIC_COARSE);
        // Bounded: an odd answer still gives sane deadlines.
        ns.clamp(1_000, 100_000_000)
    })
}

/// The deadline of an entry handed out at `now_ns` (the coarse clock): `ack_wait` and a
/// tick later.
fn deadline(now_ns: u64, ack_wait_ns: u64) -> u64 {
    now_ns.saturating_add(ack_wait_ns).saturating_add(tick_ns())
}

/// The wall clock minus the monotonic one, in ns (wrapping): a member stamps what it hands
/// out with its coarse monotonic reading plus this, instead of reading a second clock.
/// Refreshed at every look through the table (at least every 50 ms), so NTP's slewing of
/// one clock and not the other moves a stamp by microseconds at most, and a step of the
/// wall clock shows within one look.
fn wall_offset() -> u64 {
    let wall = crate::segment::now_unix_ns();
    wall.wrapping_sub(mono_ns())
}

/// The explicit-ack state for a member of entry `sub` (in slot `slot`), if the
/// subscription has explicit acks.
pub(super) fn state_for(seg: &Segment, sub: usize, slot: usize) -> Option<Box<AckState>> {
    let a = seg.acks(sub)?;
    // Relaxed, all: fixed at creation, ordered before us by the Acquire load of `active`
    // that found the subscription; validated below (shared memory is untrusted).
    let m = a.meta;
    if m.mode.load(Ordering::Relaxed) != layout::ACK_EXPLICIT {
        return None;
    }
    let max_in_flight = (m.max_in_flight.load(Ordering::Relaxed).clamp(1, layout::MAX_IN_FLIGHT)) as usize;
    let ack_wait_ns = m.ack_wait_ns.load(Ordering::Relaxed).clamp(1_000_000, 7 * 24 * 3600 * 1_000_000_000);
    Some(Box::new(AckState {
        sub,
        slot,
        pid: std::process::id(),
        ack_wait_ns,
        max_in_flight,
        max_deliveries: m.max_deliveries.load(Ordering::Relaxed).max(1),
        held: VecDeque::new(),
        reserved: None,
        hint: 0,
        seen_released: u64::MAX,
        retake_hint: 0,
        next_sweep_ns: 0,
        wall_offset: wall_offset(),
        buf: Vec::new(),
        deliveries: 1,
        dlq: None,
        beyond: true,
        owed: crate::queue::journal::Owed::start(&seg.config().name),
    }))
}

/// Whether subscription entry `sub` has explicit acks.
pub(crate) fn explicit(seg: &Segment, sub: usize) -> bool {
    // Relaxed: fixed at creation, ordered before any member by the Acquire load of `active`.
    seg.acks(sub).is_some_and(|a| a.meta.mode.load(Ordering::Relaxed) == layout::ACK_EXPLICIT)
}

/// Releases the entries the dead previous holder of slot `slot` left in every subscription
/// with explicit acks (the caller just took the slot's lock: its holder is dead). A
/// reserved entry was never handed out (freed); a filled one goes with the claim it belongs
/// to (whoever takes the claim over resolves it), or, outside every claim, is delivered
/// again.
pub(crate) fn release_orphans(seg: &Segment, slot: usize) {
    for i in 1..layout::SUBSCRIPTIONS {
        let Some(a) = seg.acks(i) else { return };
        // Relaxed: a hint; an entry of ours in a subscription not yet explicit is none.
        if a.meta.mode.load(Ordering::Relaxed) != layout::ACK_EXPLICIT {
            continue;
        }
        let mut bumped = false;
        for e in a.entries {
            let w = inflight::load(e);
            if owner_slot(w) != slot {
                continue;
            }
            match inflight::state(w) {
                IF_ACQUIRED | IF_RETAKING | IF_MOVING => bumped |= inflight::release(e, w).is_some(),
                IF_RESERVED => {
                    inflight::free(e, w);
                }
                // Relaxed: the slot's lock orders us after its previous holder's stores.
                IF_FILLED if !in_a_claim(seg, i, e.pos.load(Ordering::Relaxed)) => {
                    bumped |= inflight::release_filled(e, w);
                }
                _ => {}
            }
        }
        if bumped {
            released(seg, a, i);
        }
    }
}

/// Counts a release in the table and wakes the members (one may take it at once).
fn released(seg: &Segment, a: Acks<'_>, sub: usize) {
    // Release: pairs with the members' Acquire load of the counter: the entry's release is
    // visible to a member that sees the count change.
    a.meta.released.fetch_add(1, Ordering::Release);
    // A full fence: the members of an `Fsync::Always` queue sleep without the heavy
    // barrier a light wake relies on (`Handle::wait_for`); releases are rare.
    wait::wake(crate::queue::gate::sub_words(seg, sub), &FencedFutex);
}

/// Resolves the filled entries of a claim `[pos, end)` being taken over (its holder's slot
/// lock held: it died): those below `entered` were handed out (released, to be delivered
/// again), the others never were (freed). Returns where the claim's undelivered part
/// starts. Only entries of dead owners are touched: the member that died reading the claim
/// (it may have been reading another's claim it took over).
pub(crate) fn take_over_claim(seg: &Segment, sub: usize, pos: u64, end: u64, entered: u64) -> u64 {
    let Some(a) = seg.acks(sub) else { return pos };
    let entered = if entered > pos && entered <= end { entered } else { pos };
    let mut bumped = false;
    for e in a.entries {
        let w = inflight::load(e);
        if inflight::state(w) != IF_FILLED {
            continue;
        }
        let f = inflight::fields(e);
        // A filled entry's pid is its owner's (written before it was marked filled); a slot
        // held now by another process (the caller, taking its dead predecessor's claim) is
        // not that owner. Relaxed: information the slot's holder wrote at registration.
        let j = owner_slot(w);
        if seg.slot(j).pid.load(Ordering::Relaxed) == f.pid && seg.slot_alive(j) {
            continue;
        }
        if f.pos < pos || f.pos >= end {
            continue;
        }
        if f.pos < entered {
            bumped |= inflight::release_filled(e, w);
        } else {
            inflight::free(e, w);
        }
    }
    if bumped {
        released(seg, a, sub);
    }
    entered
}

/// The lowest position an entry of subscription `sub` holds (what retention keeps), or
/// `u64::MAX`.
pub(crate) fn floor(seg: &Segment, sub: usize) -> u64 {
    let Some(a) = seg.acks(sub) else { return u64::MAX };
    // Relaxed: a hint; a subscription not explicit has no entries.
    if a.meta.mode.load(Ordering::Relaxed) != layout::ACK_EXPLICIT {
        return u64::MAX;
    }
    let mut low = u64::MAX;
    for e in a.entries {
        let w = inflight::load(e);
        // A filled entry's message is still in its member's claim (and counted there).
        if matches!(inflight::state(w), IF_FREE | IF_RESERVED | IF_FILLED) {
            continue;
        }
        // Relaxed: ordered after the Acquire load of the owner word.
        let p = e.pos.load(Ordering::Relaxed);
        if crate::ring::plausible(p) {
            low = low.min(p);
        }
    }
    low
}

/// How many entries of table `t` members hold (reserved, being filled, handed out, being
/// handed back or moved), not counting entry `mine` (the caller's reservation); and
/// whether any entry past the first `max_in_flight` is in use at all.
fn handed_out(t: &Acks<'_>, mine: Option<usize>, max_in_flight: usize) -> (usize, bool) {
    let (mut held, mut beyond) = (0, false);
    for (k, e) in t.entries.iter().enumerate() {
        let s = inflight::state(inflight::load(e));
        if s == IF_FREE {
            continue;
        }
        beyond |= k >= max_in_flight;
        if Some(k) != mine && !matches!(s, IF_RELEASED | IF_DOOMED) {
            held += 1;
        }
    }
    (held, beyond)
}

/// What `Subscription::list` reports of a table: (in flight, oldest unacked first
/// delivery in Unix ns).
pub(crate) fn in_flight(seg: &Segment, sub: usize) -> (u64, Option<u64>) {
    let Some(a) = seg.acks(sub) else { return (0, None) };
    let (mut n, mut oldest) = (0u64, None::<u64>);
    for e in a.entries {
        let w = inflight::load(e);
        if matches!(inflight::state(w), IF_FREE | IF_RESERVED | IF_FILLED) {
            continue;
        }
        n += 1;
        // Relaxed: information only.
        let t = e.first_unix_ns.load(Ordering::Relaxed);
        oldest = Some(oldest.map_or(t, |o| o.min(t)));
    }
    (n, oldest)
}

impl Consumer {
    /// A member of a subscription with explicit acks: the next message, entered in the
    /// in-flight table. Messages to deliver again go first.
    pub(super) fn acks_next(&mut self, mut until: Until) -> Result<Option<Delivery>> {
        self.h.shared.seg.check_same_process()?;
        // `None` until the call first has to wait; then its deadline (`None`: forever).
        let mut waiting: Option<Option<Instant>> = None;
        loop {
            // A subscription removed since: its table may be another one's already (a new
            // subscription takes the entry), and nothing in it is this member's to take.
            if self.member.as_ref().is_some_and(|m| !m.subscribed(&self.h.shared.seg)) {
                self.acks_unreserve();
                return Err(Error::Closed);
            }
            // One coarse clock read per message: the sweep's schedule, the deadline and
            // (with `wall_offset`) the wall-clock stamp. A sweep or an expiry comes at most
            // a tick late for it.
            let now_ns = mono_coarse_ns();
            if now_ns >= self.acks().next_sweep_ns {
                self.acks_sweep(now_ns);
            }
            if let Some(d) = self.acks_retake(now_ns)? {
                return Ok(Some(d));
            }
            if !self.acks_reserve() {
                // Every entry it may use is held: wait for an ack, a release or an expiry.
                let d = match waiting {
                    Some(d) => d,
                    None => match until.fix() {
                        None => return Ok(None),
                        Some(d) => *waiting.insert(d),
                    },
                };
                self.acks_wait_for_room(d)?;
                continue;
            }
            // A message there now first (no clock read), then waits in slices until the
            // next look through the table.
            let u = match waiting {
                None => Until::Now,
                Some(d) => {
                    let slice = Instant::now() + self.acks_until_sweep(now_ns);
                    Until::Deadline(Some(d.map_or(slice, |d| d.min(slice))))
                }
            };
            match self.member_next(u) {
                Ok(Some(rec)) => {
                    // After a wait the clock read above is stale.
                    let now_ns = if waiting.is_some() { mono_coarse_ns() } else { now_ns };
                    self.acks_enter(rec, now_ns)?;
                    return Ok(Some(Delivery::Fresh(rec)));
                }
                Ok(None) => {
                    if waiting.is_none() {
                        match until.fix() {
                            None => {
                                self.acks_unreserve();
                                return Ok(None);
                            }
                            Some(d) => waiting = Some(d),
                        }
                    }
                }
                Err(Error::Timeout) if waiting.flatten().is_none_or(|d| Instant::now() < d) => {}
                Err(e) => {
                    self.acks_unreserve();
                    return Err(e);
                }
            }
        }
    }

    /// How long until this member's next look through the table (at least 1 ms).
    fn acks_until_sweep(&mut self, now_ns: u64) -> Duration {
        Duration::from_nanos(self.acks().next_sweep_ns.saturating_sub(now_ns)).max(Duration::from_millis(1))
    }

    fn acks(&mut self) -> &mut AckState {
        self.acks.as_mut().expect("a member with explicit acks")
    }

    fn ack_table(&self) -> Acks<'_> {
        let sub = self.acks.as_ref().expect("explicit acks").sub;
        self.h.shared.seg.acks(sub).expect("a durable queue")
    }

    /// Reserves a free entry among the first `max_in_flight` for the next fresh message
    /// (kept if one is reserved already). `false` if none is free.
    fn acks_reserve(&mut self) -> bool {
        let seg = &self.h.shared.seg;
        let a = self.acks.as_mut().expect("explicit acks");
        if a.reserved.is_some() {
            return true;
        }
        let t = seg.acks(a.sub).expect("a durable queue");
        if a.beyond {
            let (held, beyond) = handed_out(&t, None, a.max_in_flight);
            a.beyond = beyond;
            if held >= a.max_in_flight {
                return false;
            }
        }
        for n in 0..a.max_in_flight {
            let k = (a.hint + n) % a.max_in_flight;
            if let Some(w) = inflight::reserve(&t.entries[k], a.slot) {
                a.reserved = Some((k, w));
                a.hint = (k + 1) % a.max_in_flight;
                return true;
            }
        }
        false
    }

    /// Frees the reserved entry (no message came).
    fn acks_unreserve(&mut self) {
        let seg = &self.h.shared.seg;
        let Some(a) = self.acks.as_mut() else { return };
        if let Some((k, w)) = a.reserved.take() {
            inflight::free(&seg.acks(a.sub).expect("a durable queue").entries[k], w);
        }
    }

    /// Enters fresh message `rec` (at the head of the member's span) in the reserved entry.
    fn acks_enter(&mut self, rec: Record, now_ns: u64) -> Result<()> {
        let seg = &self.h.shared.seg;
        let span_of = self.member.as_ref().and_then(|m| m.span_of);
        let a = self.acks.as_mut().expect("explicit acks");
        let (k, w) = a.reserved.take().expect("reserved before reading");
        let e = &seg.acks(a.sub).expect("a durable queue").entries[k];
        let end = rec.pos + rec.size;
        let f = Fields {
            pos: rec.pos,
            end,
            deliveries: 1,
            deadline_ns: deadline(now_ns, a.ack_wait_ns),
            // The wall clock, derived from the coarse monotonic reading (`wall_offset`):
            // information (`subs ls`), where a tick's precision is plenty.
            first_unix_ns: now_ns.wrapping_add(a.wall_offset),
            pid: a.pid,
        };
        inflight::fill(e, &f);
        // A fresh message has no reason yet: the entry may keep the one a nack or reject
        // gave the message it held before.
        inflight::set_reason(e, b"");
        let Some(w) = inflight::filled(e, w) else { return Err(stolen(seg)) };
        crate::failpoint::hit("ack-reserved");
        if let Some(j) = span_of {
            // SYNC POINT: Release pairs with the Acquire of the slot lock's hand-over (and
            // of any reader of `entered`): the entry's fields are written before the
            // claim's taker starts past this message.
            seg.member(j).entered.store(end, Ordering::Release);
        }
        crate::failpoint::hit("ack-entered");
        let Some(w) = inflight::commit(e, w) else { return Err(stolen(seg)) };
        a.hold(rec.pos, k, w);
        a.deliveries = 1;
        a.owed.note();
        Ok(())
    }

    /// Looks through the table (it is time): expires entries held past their deadline,
    /// releases those of dead members.
    fn acks_sweep(&mut self, now_ns: u64) {
        let seg = &self.h.shared.seg;
        let a = self.acks.as_mut().expect("explicit acks");
        a.wall_offset = wall_offset();
        let t = seg.acks(a.sub).expect("a durable queue");
        let mut alive: [Option<bool>; layout::SLOTS] = [None; layout::SLOTS];
        let mut is_alive = |j: usize| *alive[j % layout::SLOTS].get_or_insert_with(|| seg.slot_alive(j));
        let mut bumped = false;
        let mut next = now_ns.saturating_add(SWEEP_EVERY.as_nanos() as u64);
        for e in t.entries {
            let w = inflight::load(e);
            let j = owner_slot(w);
            match inflight::state(w) {
                IF_ACQUIRED => {
                    if inflight::expire(e, now_ns) {
                        // Relaxed: a statistic.
                        t.meta.expired.fetch_add(1, Ordering::Relaxed);
                        bumped = true;
                    } else if j != a.slot && !is_alive(j) {
                        bumped |= inflight::release(e, w).is_some();
                    } else {
                        // Relaxed: ordered after the Acquire load of `w`; a hint.
                        next = next.min(e.deadline_ns.load(Ordering::Relaxed).max(now_ns));
                    }
                }
                IF_RETAKING | IF_MOVING if j != a.slot && !is_alive(j) => {
                    bumped |= inflight::release(e, w).is_some();
                }
                IF_RESERVED if j != a.slot && !is_alive(j) => {
                    // Its holder died before filling it: nothing was handed out.
                    inflight::free(e, w);
                }
                IF_FILLED if j != a.slot && !is_alive(j) && seg.try_lock_slot(j) => {
                    // Its holder is dead and nobody holds the slot (so nobody is taking its
                    // claims over now). An entry in a claim's span is the claim taker's to
                    // resolve; one outside every claim (it was taken over and resolved
                    // meanwhile, or a hostile writer) is delivered again rather than lost.
                    // Relaxed: the lock orders us after the dead holder's stores.
                    if !in_a_claim(seg, a.sub, e.pos.load(Ordering::Relaxed)) {
                        bumped |= inflight::release_filled(e, w);
                    }
                    seg.unlock_slot(j);
                }
                IF_RELEASED | IF_DOOMED => bumped = true,
                _ => {}
            }
        }
        if bumped {
            a.seen_released = u64::MAX;
            released(seg, t, a.sub);
        }
        a.next_sweep_ns = next.min(now_ns.saturating_add(SWEEP_EVERY.as_nanos() as u64));
    }

    /// Takes a released entry to hand it out again (or a doomed one, or one past its last
    /// delivery, to move it to the dead-letter queue), if the table has any.
    fn acks_retake(&mut self, now_ns: u64) -> Result<Option<Delivery>> {
        let seg = &self.h.shared.seg;
        let a = self.acks.as_mut().expect("explicit acks");
        let t = seg.acks(a.sub).expect("a durable queue");
        // Acquire: pairs with the Release increment after a release.
        let r = t.meta.released.load(Ordering::Acquire);
        if r == a.seen_released {
            return Ok(None);
        }
        // At most `max_in_flight` handed out together, redeliveries included: after a
        // restore, every message the members had claimed waits released in the table,
        // however many that is. Not marked seen while full: the next look tries again.
        if handed_out(&t, a.reserved.map(|(k, _)| k), a.max_in_flight).0 >= a.max_in_flight {
            return Ok(None);
        }
        // Seen before the look: a release meanwhile changes it again. (A look that hands
        // one out forgets it again below: there may be more.)
        a.seen_released = r;
        let from = a.retake_hint;
        for k in (from..IN_FLIGHT_ENTRIES).chain(0..from) {
            let a = self.acks.as_mut().expect("explicit acks");
            let e = &t.entries[k];
            let Some(w) = inflight::retake(e, a.slot) else { continue };
            let f = inflight::fields(e);
            let cap = seg.config().capacity;
            if !crate::ring::plausible(f.pos) || f.end <= f.pos || f.end - f.pos > cap {
                // Not a message (a hostile writer): nothing to deliver.
                inflight::free(e, w);
                continue;
            }
            crate::failpoint::hit("ack-retaken");
            let doomed = inflight::state(w) == IF_MOVING;
            if doomed || f.deliveries >= a.max_deliveries {
                let w = if doomed { w } else { inflight::begin_move(e, w).ok_or_else(|| stolen(seg))? };
                let reason = inflight::reason(e);
                let reason = if doomed || reason.is_empty() {
                    if reason.is_empty() { TOO_MANY.to_owned() } else { String::from_utf8_lossy(&reason).into_owned() }
                } else {
                    String::from_utf8_lossy(&reason).into_owned()
                };
                self.acks_move(k, w, f, reason)?;
                return self.acks_retake_again(now_ns);
            }
            let Some(m) = self.member.as_mut() else { return Ok(None) };
            let a = self.acks.as_mut().expect("explicit acks");
            match m.read_message(seg, f.pos, f.end, &mut a.buf)? {
                Some(()) => {}
                None => {
                    // Not in the log yet (an earlier claim of a live producer holds the
                    // journal back): back for a later look.
                    if inflight::release(e, w).is_some() {
                        released(seg, t, a.sub);
                    }
                    return Ok(None);
                }
            }
            let deliveries = f.deliveries.saturating_add(1);
            inflight::fill(e, &Fields { deliveries, deadline_ns: deadline(now_ns, a.ack_wait_ns), pid: a.pid, ..f });
            let w = inflight::commit(e, w).ok_or_else(|| stolen(seg))?;
            a.hold(f.pos, k, w);
            a.deliveries = deliveries;
            a.owed.note();
            // The next receive looks again, from the next entry on.
            a.seen_released = u64::MAX;
            a.retake_hint = (k + 1) % IN_FLIGHT_ENTRIES;
            // Relaxed: statistics.
            t.meta.redelivered.fetch_add(1, Ordering::Relaxed);
            seg.sub(a.sub).meta.redelivered.fetch_add(1, Ordering::Relaxed);
            return Ok(Some(Delivery::Again(f.pos)));
        }
        Ok(None)
    }

    /// After a move: look again (others may wait).
    fn acks_retake_again(&mut self, now_ns: u64) -> Result<Option<Delivery>> {
        self.acks().seen_released = u64::MAX;
        self.acks_retake(now_ns)
    }

    /// Moves the message of entry `k` (held `MOVING`, word `w`) to the dead-letter queue,
    /// then frees the entry. A failure leaves it doomed, for another try.
    fn acks_move(&mut self, k: usize, w: u64, f: Fields, reason: String) -> Result<()> {
        let seg = &self.h.shared.seg;
        let sub = self.acks.as_ref().expect("explicit acks").sub;
        let t = seg.acks(sub).expect("a durable queue");
        let e = &t.entries[k];
        let r = (|| -> Result<()> {
            let m = self.member.as_mut().expect("a member");
            let a = self.acks.as_mut().expect("explicit acks");
            if m.read_message(seg, f.pos, f.end, &mut a.buf)?.is_none() {
                return Err(Error::Busy("the message is not in the log yet".into()));
            }
            if a.dlq.is_none() {
                let name = crate::queue::subscription::entry_name(seg, sub).unwrap_or_default();
                let q = crate::queue::dlq::ensure(seg.config(), &name)?;
                a.dlq = Some(crate::queue::Producer::open(&q)?);
            }
            let d = DeadLetter {
                id: f.pos,
                deliveries: f.deliveries,
                reason,
                unix_ns: crate::segment::now_unix_ns(),
                payload: std::mem::take(&mut a.buf),
            };
            crate::failpoint::hit("ack-moving");
            let r = a.dlq.as_mut().expect("opened above").send(&d.encode());
            a.buf = d.payload;
            r?;
            crate::failpoint::hit("ack-moved");
            Ok(())
        })();
        match r {
            Ok(()) => {
                inflight::free(e, w);
                // Relaxed: a statistic.
                t.meta.dead_lettered.fetch_add(1, Ordering::Relaxed);
                self.acks().owed.note();
                Ok(())
            }
            Err(err) => {
                if inflight::release(e, w).is_some() {
                    released(seg, t, sub);
                }
                Err(err)
            }
        }
    }

    /// Waits (at most until `deadline`, and a sweep's interval) for a free entry.
    fn acks_wait_for_room(&mut self, deadline: Option<Instant>) -> Result<()> {
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            return Err(Error::Timeout);
        }
        let t = self.ack_table();
        // Relaxed: a flag an ack clears (and then wakes us); the wait below re-checks it.
        t.meta.starved.store(1, Ordering::Relaxed);
        let (sub, seen) = {
            let a = self.acks.as_ref().expect("explicit acks");
            (a.sub, a.seen_released)
        };
        let slice = now + self.acks_until_sweep(mono_ns());
        let until = deadline.map_or(slice, |d| d.min(slice));
        let r = self.h.wait_for(Some(until), move |seg| {
            let t = seg.acks(sub)?;
            // Relaxed: hints; the caller looks again.
            let moved = t.meta.starved.load(Ordering::Relaxed) == 0 || t.meta.released.load(Ordering::Relaxed) != seen;
            moved.then_some(Ok(()))
        });
        match r {
            Ok(()) | Err(Error::Timeout) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Acknowledges message `id`: it is done, and never delivered again. `AckExpired` if
    /// it was released meanwhile (held past `ack_wait`, or taken for another member);
    /// `InvalidArgument` if this member was not handed it.
    pub(super) fn acks_ack(&mut self, id: u64) -> Result<()> {
        let (k, w) = self.acks_take_held(id)?;
        let t = self.ack_table();
        if !inflight::ack(&t.entries[k], w) {
            return Err(Error::AckExpired(id));
        }
        // Relaxed: a statistic.
        t.meta.acked.fetch_add(1, Ordering::Relaxed);
        self.acks().owed.note();
        self.acks_room_made();
        Ok(())
    }

    /// Nacks message `id`: delivered again at once (to any member), with `reason` kept.
    pub(super) fn acks_nack(&mut self, id: u64, reason: &str) -> Result<()> {
        let (k, w) = self.acks_take_held(id)?;
        let sub = self.acks().sub;
        let seg = &self.h.shared.seg;
        let t = seg.acks(sub).expect("a durable queue");
        let e = &t.entries[k];
        // The entry is the caller's to write only while it holds it: taken out of expiry's
        // reach first, so that a nack that comes too late changes nothing.
        let Some(w) = inflight::begin_hand_back(e, w) else { return Err(Error::AckExpired(id)) };
        inflight::set_reason(e, reason.as_bytes());
        crate::failpoint::hit("ack-handing-back");
        if inflight::release(e, w).is_none() {
            return Err(stolen(seg));
        }
        // Relaxed: a statistic.
        t.meta.nacked.fetch_add(1, Ordering::Relaxed);
        released(seg, t, sub);
        self.acks().owed.note();
        Ok(())
    }

    /// Rejects message `id`: moved to the dead-letter queue now, with `reason`.
    pub(super) fn acks_reject(&mut self, id: u64, reason: &str) -> Result<()> {
        let (k, w) = self.acks_take_held(id)?;
        let e = &self.ack_table().entries[k];
        // Moving first: a reject that comes too late changes nothing.
        let Some(w) = inflight::begin_move(e, w) else { return Err(Error::AckExpired(id)) };
        // Kept in the entry for a member that finishes the move if this one dies.
        inflight::set_reason(e, reason.as_bytes());
        let f = inflight::fields(e);
        self.acks_move(k, w, f, reason.to_owned())?;
        self.acks_room_made();
        Ok(())
    }

    /// The entry holding `id` for this member, forgotten here.
    fn acks_take_held(&mut self, id: u64) -> Result<(usize, u64)> {
        self.h.shared.seg.check_same_process()?;
        let Some(a) = self.acks.as_mut() else {
            return Err(Error::InvalidArgument(
                "ack, nack and reject are for members of a subscription with explicit acks".into(),
            ));
        };
        let i = a.held.iter().position(|h| h.0 == id);
        let (_, k, w) = i
            .and_then(|i| a.held.remove(i))
            .ok_or_else(|| Error::InvalidArgument(format!("no message with id {id} is in flight to this member")))?;
        Ok((k, w))
    }

    /// An entry was freed: wakes a member waiting for one.
    fn acks_room_made(&mut self) {
        let seg = &self.h.shared.seg;
        let sub = self.acks.as_ref().expect("explicit acks").sub;
        let t = seg.acks(sub).expect("a durable queue");
        // Relaxed: a flag; the wake below is what the waiter acts on.
        if t.meta.starved.load(Ordering::Relaxed) != 0 {
            t.meta.starved.store(0, Ordering::Relaxed);
            // A full fence, as in `released`: only when a member starved.
            wait::wake(crate::queue::gate::sub_words(seg, sub), &FencedFutex);
        }
    }

    /// On leaving: what this member holds goes back, to be delivered again at once.
    pub(super) fn acks_leave(&mut self) {
        self.acks_unreserve();
        let seg = &self.h.shared.seg;
        let Some(a) = self.acks.as_mut() else { return };
        let t = seg.acks(a.sub).expect("a durable queue");
        let mut any = false;
        for (_, k, w) in a.held.drain(..) {
            any |= inflight::release(&t.entries[k], w).is_some();
        }
        if any {
            released(seg, t, a.sub);
        }
    }

    /// How many messages this member holds unacknowledged (including any whose entry
    /// expired meanwhile: their ack will say `AckExpired`).
    pub(super) fn acks_held(&self) -> usize {
        self.acks.as_ref().map_or(0, |a| a.held.len())
    }
}

/// Whether position `p` lies in a span some member of subscription `sub` has claimed.
fn in_a_claim(seg: &Segment, sub: usize, p: u64) -> bool {
    // Acquire: pairs with the Release that set a member's bit.
    let members = seg.sub(sub).cursor.members.load(Ordering::Acquire);
    crate::ring::cursors::bits(members).filter(|&j| j < layout::MEMBERS).any(|j| {
        let m = seg.member(j);
        // Acquire: pairs with a member's Release of its claim; the bounds after it.
        crate::ring::cursors::claim_state(m.claim_state.load(Ordering::Acquire)) != layout::CLAIM_NONE
            && m.claim_pos.load(Ordering::Relaxed) <= p
            && p < m.claim_end.load(Ordering::Relaxed)
    })
}

/// The participant slot of owner word `w`, kept within the table (the word is shared
/// memory: anything may be there).
fn owner_slot(w: u64) -> usize {
    inflight::slot(w) % layout::SLOTS
}

fn stolen(seg: &Segment) -> Error {
    Error::Corrupt(format!("{:?}: an in-flight entry changed hands under its owner", seg.config().name))
}

//! Several readers on one ring: the cursors producers wait for, how a cursor starts to
//! count, and how the members of a subscription share its messages. Free of system calls
//! (loom checks it: `tests/loom_cursors.rs`); the queue layer supplies the words through
//! [`Cursors`].
//!
//! **The gate.** Every active subscription holds a cursor word, `position | flags`; a
//! subscription's members also record the spans they claimed. A producer may overwrite only
//! bytes below the lowest of them. It computes that ([`gate`]) only when its cached value
//! says the ring is full; on the way it detaches any subscription with a lag limit (a
//! window smaller than the capacity) that the write would leave further behind than the
//! window: producers stop waiting for it, and its members learn it from the cursor.
//!
//! **The join.** A cursor that starts to count (a new subscription, or one rejoining after
//! it was lapped) must start at a position no producer is about to overwrite, though a
//! producer may have computed its gate before the cursor existed. Each producer publishes
//! the lowest cursor it saw (`gate_min`) before relying on it; a joiner publishes its cursor
//! flagged `JOINING` (nobody claims from it yet; producers wait for it where it is), bumps
//! `joins`, and only then reads every producer's `gate_min`, starting at or above the
//! highest. A producer re-reads `joins` after storing `gate_min`: with a full barrier on
//! each side this is a Dekker pair, so either the producer sees the bump (and scans again,
//! now seeing the cursor) or the joiner sees the producer's `gate_min` (and starts above
//! it). Anyone who finds a cursor `JOINING` may finish the join ([`finish_join`]): members
//! do when they claim, producers when they compute their gate (then gating on where it
//! started), so a joiner that dies or stops holds nobody hostage.
//!
//! **Members** claim spans ([`claim`]): from the cursor they walk over up to a batch of
//! committed records, record the span in their claim words (`CLAIMING`, with the claim's
//! number), then take it with a compare-and-swap of the cursor from the span's start to a
//! word that is *locked* with the claim's slot and number ([`take`]). Whoever finds the
//! cursor locked, the winner first, finishes the claim: marks it `HELD` (a compare-and-swap
//! from `CLAIMING` with the same number), then stores the span's end in the cursor. So a
//! claim still `CLAIMING` is the winner's only while the cursor is locked with it: a member
//! that died after losing the race (its claim recorded, the cursor moved by another) is
//! told apart from one that won and died, and its claim is never delivered again
//! ([`claim_taken`]). Producers read a subscription's claims after its cursor (Acquire),
//! so a span is never overwritten while claimed. A member done with a span stores `NONE`
//! (Release).
//!
//! **Spill** (every reader of a durable queue, whose messages are all in the queue's log
//! files below the journal's position). Producers never wait for such a reader: one in the
//! way is detached (as a lag limit does) and reads the log from where it stood (members of a
//! detached subscription claim their spans there, the same way). It comes
//! back at exactly the position it reached there ([`rejoin_at`]): it stores the position
//! as a plain cursor, bumps `joins` and reads every producer's `gate_min`; the Dekker pair
//! above means that either a producer sees the cursor, or the joiner sees that producer's
//! `gate_min`, and it stays only if no `gate_min` is above its position (no producer may be
//! overwriting from there). Producers count the journal's floor in `gate_min` for this: a
//! reader that has read the log up to the journal's position can come back. While the
//! default consumer reads a message in the ring it pins its cursor (`PINNED`; a member's
//! claim does the same for its span): producers wait for a
//! pinned cursor rather than detach it, so a borrowed message is never overwritten (unless
//! its reader died: then the pin counts for nothing). A detached reader still bounds the
//! producers: they stay within `max_log_bytes` of it.

use super::{Found, Geometry, Region, RingError, plausible, read_record};
use crate::layout::{
    CLAIM_CLAIMING, CLAIM_HELD, CLAIM_NONE, CLAIM_STATE_MASK, CURSOR_DETACHED, CURSOR_JOINING, CURSOR_LOCKED,
    CURSOR_PINNED, LOCK_SEQ_MASK, claim_word, cursor_locked,
};
use crate::sync::atomic::{AtomicU64, Ordering, fence};

/// The flag bits of a cursor word.
pub const FLAGS: u64 = CURSOR_DETACHED | CURSOR_JOINING | CURSOR_PINNED;

/// A producer gives up on a gate that keeps changing under it (a hostile writer bumping
/// `joins`) after this many scans.
const MAX_SCANS: u32 = 1 << 16;
/// A producer gives up on a cursor that keeps being made to join again (a hostile writer).
const MAX_FINISHES: u32 = 64;
/// A member's claim that keeps losing (a hostile writer moving the cursor) gives up.
const MAX_CLAIM_ATTEMPTS: u32 = 1 << 16;

/// A member's claim words (its member table entry).
#[derive(Clone, Copy)]
pub struct ClaimWords<'a> {
    /// The member's slot (what a locked cursor names).
    pub slot: usize,
    /// Start of the span.
    pub pos: &'a AtomicU64,
    /// End of the span.
    pub end: &'a AtomicU64,
    /// `claim_word(seq, CLAIM_NONE | CLAIM_CLAIMING | CLAIM_HELD)`.
    pub state: &'a AtomicU64,
}

/// The position cursor word `w` of entry `i` stands for, without changing anything (a
/// snapshot: `inspect`, retention): a locked word's is its claim's end (read with Relaxed:
/// the caller's Acquire load of `w`, if any, makes it the claim's). Flags are dropped.
pub fn position<C: Cursors + ?Sized>(c: &C, w: u64) -> u64 {
    match locked(w) {
        // Relaxed: see the doc above; a snapshot, validated by whoever uses it.
        Some((j, _, _)) => c.claim(j).end.load(Ordering::Relaxed),
        None => w & !FLAGS,
    }
}

/// Entry `i`'s cursor word, finishing any claim that has it locked first ([`finish_lock`]):
/// what a reader that acts on the word (claims, rejoins, probes) loads.
pub fn settled<C: Cursors + ?Sized>(c: &C, i: usize) -> Result<u64, RingError> {
    for _ in 0..MAX_FINISHES {
        // SYNC POINT: Acquire pairs with the Release of the compare-and-swap that stored it
        // (a claim, a join, a detach): what came before it is visible.
        let w = c.cursor(i).load(Ordering::Acquire);
        if locked(w).is_none() {
            return Ok(w);
        }
        finish_lock(c, i, w)?;
    }
    Err(RingError::Corrupt("subscription cursor keeps being locked"))
}

/// The state bits of a claim word.
pub fn claim_state(w: u64) -> u64 {
    w & CLAIM_STATE_MASK
}

/// The claim (slot, sequence number's low bits, detached) a locked cursor word names;
/// `None` for any other word.
pub fn locked(w: u64) -> Option<(usize, u64, bool)> {
    (w & CURSOR_LOCKED != 0).then_some((((w >> 3) & 63) as usize, (w >> 9) & LOCK_SEQ_MASK, w & CURSOR_DETACHED != 0))
}

/// Where the words of a queue's readers are.
pub trait Cursors {
    /// Bit `i`: entry `i` is active.
    fn active(&self) -> &AtomicU64;
    /// Bumped by every join.
    fn joins(&self) -> &AtomicU64;
    /// The producers' published position.
    fn tail(&self) -> &AtomicU64;
    /// Entry `i`'s cursor word.
    fn cursor(&self, i: usize) -> &AtomicU64;
    /// Entry `i`'s lag limit in bytes ([`NO_LIMIT`]: none). A limit above the capacity
    /// counts as the capacity: the entry is detached rather than overwritten unread.
    fn window(&self, i: usize) -> u64;
    /// Bit `j`: member `j` belongs to entry `i` (0 for an entry without members).
    fn members(&self, i: usize) -> u64;
    /// Member `j`'s claim words.
    fn claim(&self, j: usize) -> ClaimWords<'_>;
    /// Every producer's `gate_min` word.
    fn gate_mins(&self) -> impl Iterator<Item = &AtomicU64>;
    /// Called when entry `i` was detached (a statistic).
    fn lapped(&self, i: usize);
    /// Every producer's claim start word (`NO_CLAIM` when it holds no claim), with its slot.
    /// With no reader to pace them, producers must not overwrite each other's claims.
    fn producer_claims(&self) -> impl Iterator<Item = (usize, &AtomicU64)> {
        std::iter::empty()
    }
    /// A position producers may not overwrite from, whatever the cursors say (a durable
    /// queue's journal, its id ceiling less a capacity); `u64::MAX` when there is none.
    fn floor(&self) -> u64 {
        u64::MAX
    }
    /// Where the ring starts: a cursor below it reads older messages from elsewhere (a
    /// durable queue's log files after a restart) and holds the ring there. 0 normally.
    fn base(&self) -> u64 {
        0
    }
    /// Whether entry `i`'s reader can read what it missed elsewhere (a durable queue's log):
    /// producers then detach it when it is in their way, rather than wait, unless its cursor
    /// is `PINNED`; it rejoins with [`rejoin_at`].
    fn spills(&self, _i: usize) -> bool {
        false
    }
    /// How far producers may go past a detached (spilled) reader's position: a durable
    /// queue's `max_log_bytes` (at least twice the capacity); `u64::MAX` for no bound.
    fn log_limit(&self) -> u64 {
        u64::MAX
    }
    /// Whether entry `i`'s reader lives (a system call: asked only about a `PINNED` cursor
    /// in the way of a spilling entry; a dead reader's pin is detached like no pin).
    fn reader_alive(&self, _i: usize) -> bool {
        true
    }
    /// Whether the process in participant slot `j` (a producer, or a member of a
    /// subscription) lives (a system call: asked only about a claim in the way).
    fn producer_alive(&self, _j: usize) -> bool {
        true
    }
    /// Drops member `j`'s claim on entry `i` if the member is dead (a system call: asked only
    /// about a claim in the way of a lag-limited entry, which may miss messages but must not
    /// hold producers back). Returns whether it did.
    fn drop_dead_claim(&self, _i: usize, _j: usize) -> bool {
        false
    }
}

/// [`Cursors::window`] of an entry without a lag limit.
pub const NO_LIMIT: u64 = u64::MAX;

/// What a scan found.
struct Scan {
    /// The position below which the producer may overwrite.
    head: u64,
    /// The lowest tethered cursor or claim itself: what it publishes as `gate_min`.
    min_pos: u64,
}

/// Iterates over the set bits of `mask`, lowest first.
pub fn bits(mut mask: u64) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        if mask == 0 {
            return None;
        }
        let i = mask.trailing_zeros() as usize;
        mask &= mask - 1;
        Some(i)
    })
}

fn scan<C: Cursors + ?Sized>(
    c: &C,
    cap: u64,
    entries: usize,
    me: usize,
    tail: u64,
    need: u64,
) -> Result<Scan, RingError> {
    // The floor counts in `min_pos` too: a spilled reader that read the log up to it may
    // rejoin there (`rejoin_at`), as nothing at or above it is overwritten.
    let floor = c.floor();
    let (mut head, mut min_pos) = (tail.min(floor), tail.min(floor));
    let base = c.base();
    let log_limit = c.log_limit();
    // SYNC POINT: Acquire pairs with the Release that activated an entry: its cursor and
    // options are visible.
    let active = c.active().load(Ordering::Acquire);
    for i in bits(active).filter(|&i| i < entries) {
        let word = c.cursor(i);
        let limit = c.window(i);
        let window = limit.min(cap);
        let detachable = limit != NO_LIMIT || c.spills(i);
        // SYNC POINT: Acquire pairs with the Release stores (a sole consumer) and CASes
        // (members, joiners) of the cursor: the readers' reads below it are done, and the
        // claim records members stored before their CAS are visible below.
        let mut w = word.load(Ordering::Acquire);
        let mut finishes = 0u32;
        // Where the cursor stands once the loop below has settled it (not locked, joined).
        let mut at;
        loop {
            at = w & !FLAGS;
            if locked(w).is_some() {
                // A member's claim in the middle of being taken: we finish it (atomics only),
                // so a member that died or stopped there holds nobody up.
                finishes += 1;
                if finishes > MAX_FINISHES {
                    return Err(RingError::Corrupt("subscription cursor keeps being locked"));
                }
                finish_lock(c, i, w)?;
                // Acquire: as the load above.
                w = word.load(Ordering::Acquire);
                continue;
            }
            if w & CURSOR_JOINING != 0 {
                // Not started yet. We finish the join ourselves (atomics only), so that a
                // joiner that died or stopped holds nobody up, and gate on where it starts:
                // a producer that saw the joiner's bump must count its cursor (the Dekker
                // pair in the module docs), and we cannot tell whether we did.
                finishes += 1;
                if finishes > MAX_FINISHES {
                    return Err(RingError::Corrupt("subscription cursor keeps joining"));
                }
                let _ = finish_join(c, cap, i, w);
                // Acquire: as the load above.
                w = word.load(Ordering::Acquire);
                continue;
            }
            if w & CURSOR_DETACHED != 0 {
                // A spilled reader reads the log: producers stay within `log_limit` of it.
                // Any other detached entry (lag-limited) rejoins at the tail: it holds
                // nothing back.
                let pos = w & !FLAGS;
                if c.spills(i) && log_limit != u64::MAX && plausible(pos) && pos <= tail {
                    head = head.min(pos.saturating_add(log_limit).saturating_sub(cap));
                }
                break;
            }
            let pos = (w & !FLAGS).max(base);
            let in_the_way = (tail + need).saturating_sub(pos) > window;
            // A pin holds producers only while its reader lives (a stopped one does).
            let pinned = w & CURSOR_PINNED != 0 && !(detachable && in_the_way && !c.reader_alive(i));
            // A cursor above our view of the tail (on an MPSC queue our `tail` may be older
            // than what readers have seen) holds nothing we are about to overwrite. A
            // spilling reader's plain cursor more than a capacity behind is a rejoin at a
            // position we lapped meanwhile (its `confirm` fails) or one whose reader died in
            // the middle of it: detached below, not corrupt. Pinned, it would be.
            let lapped = pos <= tail && tail - pos > cap;
            if !plausible(pos) || (lapped && (pinned || !c.spills(i))) {
                return Err(RingError::Corrupt("subscription cursor outside the ring"));
            }
            if detachable && !pinned && in_the_way {
                // AcqRel: the detach is a decision its members read through the cursor;
                // on failure Acquire, as the load above.
                // A dead reader's pin goes with the detach: its successor reads the log.
                let detached = (w & !CURSOR_PINNED) | CURSOR_DETACHED;
                match word.compare_exchange(w, detached, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => {
                        c.lapped(i);
                        // Detached now: a spilled reader bounds us by `log_limit` (binding
                        // when it was more than a capacity behind), as above.
                        w = detached;
                        continue;
                    }
                    Err(now) => {
                        w = now;
                        continue;
                    }
                }
            }
            head = head.min((pos + window).saturating_sub(cap));
            min_pos = min_pos.min(pos);
            break;
        }
        // Ordered after the cursor's Acquire load above (a member sets its bit, Release,
        // before its first claim's CAS).
        for j in bits(c.members(i)) {
            let m = c.claim(j);
            // SYNC POINT: Acquire pairs with the member's Release store of `CLAIM_NONE` when
            // it is done with a span (or of a raised start): its reads are done before we
            // overwrite them. And with the Release of the unlock that follows a claim's mark
            // (read through the cursor's Acquire load above): a claim the cursor has passed
            // is held by now, or was never taken.
            let state = claim_state(m.state.load(Ordering::Acquire));
            if state == CLAIM_NONE {
                continue;
            }
            // Acquire: as above, for a start raised as the member releases messages; a
            // stale (lower) value only holds us back more.
            let pos = m.pos.load(Ordering::Acquire);
            // A claim still claiming below where the cursor stands lost the race for its span
            // (the cursor never goes back): it holds nothing, though its member (stopped,
            // say) has not cleared it yet.
            if state == CLAIM_CLAIMING && pos < at {
                continue;
            }
            // A claim recorded after its span was freed (a member that lost the race for it)
            // is below every cursor: ignoring it is right. One outside the ring is nonsense.
            if !(plausible(pos) && pos <= tail && tail - pos <= cap) {
                continue;
            }
            let in_the_way = tail + need - pos > cap;
            // A dead member's claim in the way of a spilling entry is not waited for: it is
            // in the log, where the member that takes it over reads it.
            if c.spills(i) && in_the_way && !c.producer_alive(j) {
                continue;
            }
            // A dead member's claim in the way of a lag-limited entry is dropped (the entry
            // misses those messages), never waited for.
            if limit != NO_LIMIT && !c.spills(i) && in_the_way && c.drop_dead_claim(i, j) {
                continue;
            }
            head = head.min(pos);
            min_pos = min_pos.min(pos);
        }
    }
    // The claims of other producers in flight: a reader cannot pass a record not yet
    // committed, but a cursor that started at the tail (a new subscription, a rejoin) is
    // already past such claims, and with no reader at all nothing else keeps us from
    // lapping them (their commit would then fail, or a reader get torn records).
    for (j, w) in c.producer_claims().filter(|&(j, _)| j != me) {
        // Acquire: pairs with the producer's Release clear after its commit.
        let pos = w.load(Ordering::Acquire);
        if !plausible(pos) || pos >= tail || tail - pos > cap {
            continue; // none, one at or past our view of the tail, or nonsense
        }
        // In the way: a dead producer's claim is waited for only by the readers stuck
        // behind it (which turn it into padding); a live (or stopped) one's is waited for.
        if tail + need - pos > cap && !c.producer_alive(j) {
            continue;
        }
        head = head.min(pos);
    }
    Ok(Scan { head, min_pos })
}

/// The gate for a producer whose view of the tail is `tail` and which needs `need` bytes
/// past it: the position below which it may overwrite (see the module docs). `gate_min`
/// is the producer's own published word, `me` its slot (its own claim is not in its way);
/// `entries` bounds the entry indexes.
pub fn gate<C: Cursors + ?Sized>(
    c: &C,
    cap: u64,
    entries: usize,
    me: usize,
    gate_min: &AtomicU64,
    tail: u64,
    need: u64,
) -> Result<u64, RingError> {
    for _ in 0..MAX_SCANS {
        // SYNC POINT: Acquire pairs with a joiner's Release bump: its cursor, stored
        // before, is visible to the scan.
        let joins = c.joins().load(Ordering::Acquire);
        let scan = scan(c, cap, entries, me, tail, need)?;
        // Never lower: the caller keeps the highest head it was given (it never moves its
        // cache backwards), and every head it was given is at or below the `gate_min` of its
        // scan; a joiner must start above all of them. Relaxed (load and store): only we
        // write it; ordered before the re-read of `joins` by the fence below.
        let published = gate_min.load(Ordering::Relaxed);
        let keep = if plausible(published) && published <= tail { published } else { 0 };
        gate_min.store(scan.min_pos.max(keep), Ordering::Relaxed);
        // SYNC POINT: pairs with the joiner's fence between its bump of `joins` and its
        // reads of `gate_min` (the module docs' Dekker pair). It also orders any detach
        // `scan` made before every write the producer then makes into the space it gained:
        // a durable queue's consumer that reads a later lap's word at its head without a
        // pin relies on it to see the detach too (`spill_look` in `queue/spill.rs`).
        fence(Ordering::SeqCst);
        // Relaxed: ordered by the fence above; a changed value sends us round again.
        if c.joins().load(Ordering::Relaxed) == joins {
            return Ok(scan.head);
        }
    }
    Err(RingError::Corrupt("subscriptions keep joining"))
}

/// Finishes the join of entry `i`, whose cursor word was seen as `w` (flagged `JOINING`):
/// finds the position to start at and stores it. Returns the start (`None` if another
/// process changed the word first: it finished the join, or the entry was removed).
pub fn finish_join<C: Cursors + ?Sized>(c: &C, cap: u64, i: usize, w: u64) -> Option<u64> {
    // Release (in AcqRel): a producer that reads the new count sees the cursor stored
    // before it (ours, or the one whose JOINING word we read with Acquire).
    c.joins().fetch_add(1, Ordering::AcqRel);
    // SYNC POINT: pairs with the fence in `gate`.
    fence(Ordering::SeqCst);
    let base = w & !FLAGS;
    let mut v = base;
    for g in c.gate_mins() {
        // Relaxed: ordered by the fence above; a dead or free slot's value is old and low.
        let g = g.load(Ordering::Relaxed);
        if plausible(g) && g > v {
            v = g;
        }
    }
    // Acquire: pairs with the producers' Release publication of `tail`: the newest position.
    let t = c.tail().load(Ordering::Acquire);
    if plausible(t) {
        // A `gate_min` far above the tail is nonsense (a scribbler): start at the tail then.
        if v > t && v - t > cap {
            v = t.max(base);
        }
        v = v.max(t);
    }
    // AcqRel: publishes the start; members then claim from it.
    c.cursor(i).compare_exchange(w, v, Ordering::AcqRel, Ordering::Acquire).ok().map(|_| v)
}

/// Makes entry `i`'s cursor count again from word `w` (detached): stores the producers'
/// position flagged `JOINING`, then [`finish_join`]. Returns the start (where the cursor
/// stands once joined, also when another member finished the join), or `None` if another
/// process changed the word first.
pub fn join<C: Cursors + ?Sized>(c: &C, cap: u64, i: usize, w: u64) -> Option<u64> {
    // Acquire: pairs with the producers' Release publication of `tail`.
    let t0 = c.tail().load(Ordering::Acquire);
    let t0 = if plausible(t0) { t0 } else { w & !FLAGS };
    let joining = t0 | CURSOR_JOINING;
    // AcqRel: the JOINING word is what producers must see before we read their `gate_min`
    // (the bump in `finish_join` orders it); Acquire on failure.
    if c.cursor(i).compare_exchange(w, joining, Ordering::AcqRel, Ordering::Acquire).is_err() {
        return None;
    }
    crate::failpoint::hit("rejoin-joining");
    // We made it join, so we report it: if another member finished the join first, its
    // start is the cursor's position now (Acquire: as the claim's load).
    Some(finish_join(c, cap, i, joining).unwrap_or_else(|| c.cursor(i).load(Ordering::Acquire) & !FLAGS))
}

/// Makes spilled entry `i` (cursor word `w`, detached) count again at exactly `pos`: its
/// reader read everything below `pos` elsewhere (the log). It stays only if no producer may
/// be overwriting at or above `pos` ([`confirm`]); otherwise it is detached again at `pos`
/// (the log has more by then). Returns whether it rejoined: a producer may detach it again
/// at once, so the reader's pin (a compare-and-swap from the plain position) is what tells
/// it that it may read in the ring.
pub fn rejoin_at<C: Cursors + ?Sized>(c: &C, cap: u64, i: usize, w: u64, pos: u64) -> bool {
    if !plausible(pos) {
        return false;
    }
    // AcqRel: the plain cursor is what producers must see before we read their `gate_min`
    // (the bump in `confirm` orders it); Acquire on failure.
    if c.cursor(i).compare_exchange(w, pos, Ordering::AcqRel, Ordering::Acquire).is_err() {
        return false;
    }
    crate::failpoint::hit("spill-rejoining");
    confirm(c, cap, i, pos)
}

/// Whether entry `i`'s plain cursor at `pos` can be read from: no producer's `gate_min` is
/// above it, and the producers' position is within a capacity of it. A reader that finds
/// its cursor plain when it attaches calls this too (its predecessor may have died in the
/// middle of [`rejoin_at`]). When not, the cursor is detached at `pos` (unless a producer
/// did it first) and this returns `false`.
pub fn confirm<C: Cursors + ?Sized>(c: &C, cap: u64, i: usize, pos: u64) -> bool {
    // Release (in AcqRel): a producer that reads the new count sees our cursor.
    c.joins().fetch_add(1, Ordering::AcqRel);
    // SYNC POINT: pairs with the fence in `gate` (the Dekker pair in the module docs).
    fence(Ordering::SeqCst);
    // Relaxed: ordered by the fence above; a dead or free slot's value is old and low.
    let mut ok = c.gate_mins().all(|g| {
        let g = g.load(Ordering::Relaxed);
        !plausible(g) || g <= pos
    });
    // Acquire: pairs with the producers' Release publication of `tail`.
    let t = c.tail().load(Ordering::Acquire);
    ok &= plausible(t) && t >= pos && t - pos <= cap;
    if ok {
        return true;
    }
    // AcqRel: the detach is a decision producers read through the cursor. A failure means
    // a producer detached it first: the same outcome.
    let _ = c.cursor(i).compare_exchange(pos, pos | CURSOR_DETACHED, Ordering::AcqRel, Ordering::Relaxed);
    false
}

/// What [`claim`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// The span `[start, end)` is this member's.
    Span(u64, u64),
    /// Nothing committed at the cursor.
    Nothing,
    /// The subscription was detached at `pos` and this member rejoined it at `start`.
    Lapped {
        /// Where it was detached.
        pos: u64,
        /// Where it starts again.
        start: u64,
    },
    /// The cursor was detached and rejoined by someone else meanwhile, or is joining:
    /// try again.
    Retry,
    /// The entry spills ([`Cursors::spills`]) and its cursor is detached: its members read
    /// the log from the cursor's position, claiming spans there the same way.
    Spilled,
}

/// Claims for member `me` of entry `i` the next span of at most `batch` messages (padding
/// on the way included). A detached cursor is rejoined (`Lapped`); a joining one is
/// finished.
pub fn claim<C: Cursors + ?Sized, R: Region + ?Sized>(
    c: &C,
    geo: &Geometry,
    region: &R,
    i: usize,
    me: ClaimWords<'_>,
    batch: usize,
    visible: u64,
) -> Result<Claim, RingError> {
    let word = c.cursor(i);
    for _ in 0..MAX_CLAIM_ATTEMPTS {
        // SYNC POINT: Acquire pairs with the Release of the CAS (or join) that stored it:
        // the records below it that others claimed are theirs, and a join's start is safe to
        // read from.
        let w = word.load(Ordering::Acquire);
        if locked(w).is_some() {
            // Another member is taking the span there: we finish it for them.
            finish_lock(c, i, w)?;
            continue;
        }
        if w & CURSOR_JOINING != 0 {
            let _ = finish_join(c, geo.capacity, i, w);
            return Ok(Claim::Retry);
        }
        if w & CURSOR_DETACHED != 0 {
            if c.spills(i) {
                return Ok(Claim::Spilled);
            }
            return Ok(match join(c, geo.capacity, i, w) {
                Some(start) => Claim::Lapped { pos: w & !FLAGS, start },
                None => Claim::Retry,
            });
        }
        let start = w;
        if !plausible(start) {
            return Err(RingError::Corrupt("subscription cursor not aligned or out of range"));
        }
        let (mut end, mut messages) = (start, 0usize);
        while messages < batch && end - start < geo.capacity && end < visible {
            match read_record(geo, region, end) {
                Ok(Found::Message { size, .. }) => {
                    end += size;
                    messages += 1;
                }
                Ok(Found::Skip { size }) => end += size,
                Ok(Found::Nothing) => break,
                // The first record unreadable: corrupt only if the cursor still stands
                // here (then the record is ours to read); if it moved, another member took
                // the span and a producer may have reused it meanwhile: try again.
                Err(e) if end == start => {
                    // Acquire: as the load above.
                    if word.load(Ordering::Acquire) == w {
                        return Err(e);
                    }
                    return Ok(Claim::Retry);
                }
                Err(_) => break,
            }
        }
        if end == start {
            return Ok(Claim::Nothing);
        }
        if take(c, i, me, w, end)? {
            return Ok(Claim::Span(start, end));
        }
    }
    Err(RingError::Corrupt("subscription cursor keeps changing"))
}

/// Takes the span from the position of entry `i`'s cursor word `w` (plain, or detached: a
/// span in the log of a spilled subscription) to `end` for member `me`: records the claim
/// (`CLAIMING`, numbered), swaps the cursor from `w` to a word locked with it, marks it
/// held and stores `end` in the cursor (keeping it detached if it was). Returns whether it
/// won; a loser clears its claim (one that dies first is told apart by [`claim_taken`]).
pub fn take<C: Cursors + ?Sized>(c: &C, i: usize, me: ClaimWords<'_>, w: u64, end: u64) -> Result<bool, RingError> {
    let detached = w & CURSOR_DETACHED != 0;
    // Relaxed: only we write our claim word now (helpers change it only while our lock is
    // on the cursor, and we hold none).
    let seq = (me.state.load(Ordering::Relaxed) >> 2).wrapping_add(1) & (u64::MAX >> 2);
    // Relaxed: made visible by the Release of the swap below to whoever reads the locked
    // cursor (Acquire), and to producers, which read our claim after the cursor.
    me.pos.store(w & !FLAGS, Ordering::Relaxed);
    me.end.store(end, Ordering::Relaxed);
    // SYNC POINT: Release pairs with a helper's Acquire load in `mark_held`: a helper that
    // read our previous lock and then this claim also sees that lock gone (we saw it go
    // before this store), so it never takes the lock for one whose claim vanished. Every
    // store of our claim word is Release for the same reason.
    me.state.store(claim_word(seq, CLAIM_CLAIMING), Ordering::Release);
    crate::failpoint::hit("member-claim-recorded");
    let lock = cursor_locked(me.slot, seq, detached);
    // SYNC POINT: Release pairs with the Acquire loads of the cursor (producers, members,
    // helpers): our claim record is visible to whoever sees the lock. Acquire on failure:
    // nothing to read, but it is the cursor's rule.
    if c.cursor(i).compare_exchange(w, lock, Ordering::AcqRel, Ordering::Acquire).is_err() {
        // Release: as in `release` (we read nothing, but it is the same rule).
        me.state.store(claim_word(seq, CLAIM_NONE), Ordering::Release);
        return Ok(false);
    }
    crate::failpoint::hit("member-claimed");
    // The same compare-and-swap as a helper's mark, not a plain store of `HELD`: with a
    // store here, `tests/loom_cursors.rs` (model 3) found an execution that left a member's
    // claim word held after its release.
    if !mark_held(me, seq)? {
        return Err(RingError::Corrupt("a member's claim changed under its lock"));
    }
    crate::failpoint::hit("member-claim-held");
    unlock(c, i, lock, end);
    Ok(true)
}

/// Marks claim number `seq` (its low bits, as a locked cursor holds them) of `m` held, if
/// it is claiming; returns whether it is held now (`false`: the claim is not that one).
fn mark_held(m: ClaimWords<'_>, seq: u64) -> Result<bool, RingError> {
    // Acquire: pairs with the Release of a helper's mark (nothing to read; the rule).
    let mut cw = m.state.load(Ordering::Acquire);
    for _ in 0..MAX_FINISHES {
        if (cw >> 2) & LOCK_SEQ_MASK != seq & LOCK_SEQ_MASK {
            return Ok(false);
        }
        match claim_state(cw) {
            CLAIM_HELD => return Ok(true),
            // AcqRel: the mark precedes the unlock (Release) that others read: whoever sees
            // the cursor unlocked sees the claim held. A compare-and-swap, so that a helper
            // that read the lock long ago never marks a later claim.
            CLAIM_CLAIMING => {
                match m.state.compare_exchange(cw, claim_word(cw >> 2, CLAIM_HELD), Ordering::AcqRel, Ordering::Acquire)
                {
                    Ok(_) => return Ok(true),
                    Err(now) => cw = now,
                }
            }
            _ => return Ok(false),
        }
    }
    Err(RingError::Corrupt("a member's claim word keeps changing"))
}

/// Stores the end of the claim that locked entry `i`'s cursor as `lock`, if it still does.
fn unlock<C: Cursors + ?Sized>(c: &C, i: usize, lock: u64, end: u64) {
    let to = end | (lock & CURSOR_DETACHED);
    // AcqRel: Release, the claim marked held before it (and the claim record) is visible to
    // whoever reads the cursor; Relaxed on failure: another finished it, or the
    // subscription was detached meanwhile (then it is finished again from that word).
    let _ = c.cursor(i).compare_exchange(lock, to, Ordering::AcqRel, Ordering::Relaxed);
}

/// Finishes the claim that locked entry `i`'s cursor, seen as `w` (loaded with Acquire):
/// marks it held, then stores its end in the cursor. Anyone who finds a cursor locked
/// calls this (atomics only), so a member that dies or stops in the middle of a claim holds
/// nobody up. `Corrupt` if the cursor stays locked by a claim that is not there.
pub fn finish_lock<C: Cursors + ?Sized>(c: &C, i: usize, w: u64) -> Result<(), RingError> {
    let Some((j, seq, _)) = locked(w) else { return Ok(()) };
    let m = c.claim(j);
    // Relaxed: the caller's Acquire load of `w` pairs with the locker's Release swap, so its
    // claim record (stored before) is visible. A later claim's end is stored only after the
    // cursor was unlocked; if we read one, our swap in `unlock` fails.
    let end = m.end.load(Ordering::Relaxed);
    let held = mark_held(m, seq)?;
    if !held || !plausible(end) {
        // Acquire: as the caller's load.
        if c.cursor(i).load(Ordering::Acquire) == w {
            return Err(RingError::Corrupt("subscription cursor locked by a claim that is not there"));
        }
        return Ok(()); // finished meanwhile, and the member moved on
    }
    unlock(c, i, w, end);
    Ok(())
}

/// Whether member `m`'s claim, seen `CLAIMING` or `HELD` with word `cw` by whoever holds
/// the member's slot now (its holder died, so it does not change by itself), took its span
/// from entry `i`'s cursor: yes if the cursor is locked with it (this then finishes the
/// claim, so nothing stays locked with a claim about to be handed back) or it is marked
/// held (the cursor unlocked since); no if it lost the race for the span, or never tried.
pub fn claim_taken<C: Cursors + ?Sized>(c: &C, i: usize, m: ClaimWords<'_>, cw: u64) -> Result<bool, RingError> {
    // Acquire: pairs with the Release of the swap that locked (or unlocked) the cursor.
    let w = c.cursor(i).load(Ordering::Acquire);
    if let Some((j, seq, _)) = locked(w)
        && j == m.slot
        && seq == (cw >> 2) & LOCK_SEQ_MASK
    {
        finish_lock(c, i, w)?;
        return Ok(true);
    }
    // Acquire: an unlock is made after the mark (and is read above, or a later change of
    // the cursor, all of them compare-and-swaps): a claim that took its span is held now.
    let now = m.state.load(Ordering::Acquire);
    Ok(now == claim_word(cw >> 2, CLAIM_HELD))
}

/// Hands a span back: the member's reads of it are done.
pub fn release(me: ClaimWords<'_>) {
    // Relaxed: only the slot's holder writes its claim word once the claim is finished.
    let seq = me.state.load(Ordering::Relaxed) >> 2;
    // SYNC POINT: Release pairs with the producers' Acquire load of the claim state: our
    // reads of the span are done before they overwrite it.
    me.state.store(claim_word(seq, CLAIM_NONE), Ordering::Release);
}

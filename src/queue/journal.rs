//! The journal of a durable queue: whoever needs progress copies committed records from the
//! ring into the log files, syncs them, and raises the id ceiling. No daemon.
//!
//! **A cursor like any reader.** The journal's position (`DurableLine::journal`) is one
//! more word producers gate on: they overwrite nothing the journal has not taken. Under
//! `Fsync::Always` it stands at `durable` (readers read only below it too, so nothing a
//! reader saw can vanish in a power cut); otherwise at `written`.
//!
//! **A pass** copies the committed records from `written` (they stay put: the journal's
//! cursor is at or below `written`, so no producer overwrites them), re-reads `written`
//! (unchanged: the copy is valid; changed: another journaler wrote that range, and the
//! copy may be stale, so it is dropped), writes the copy at its positions (segment k holds
//! positions `[k·S, (k+1)·S)`, so two journalers of one range write identical bytes at
//! identical offsets: harmless when repeated), then raises `written` to its end by a
//! compare-and-swap to the maximum. **A sync** `fdatasync`s `[durable, written)` and raises
//! `durable`. Every step can be the last: a journaler killed anywhere leaves `written` and
//! `durable` at or below what is on disk, and the next journaler redoes the rest.
//!
//! **Who journals.** An OFD lock on a byte of the segment elects one journaler at a time,
//! for efficiency only: a producer that must wait (for its sync under `Always`, or for room
//! held by the journal) takes it if it is free and journals inline (group commit: one sync
//! covers every record committed meanwhile, by any process, and waits for producers still
//! appending first: [`Journal::gather`]); a waiter that finds it taken waits by its
//! handle's policy (polling or sleeping: [`Journal::wait_durable`]), and one that has waited
//! [`ALONGSIDE_AFTER`] journals without it, so a stopped holder holds nobody's
//! durability hostage. Under `Fsync::Interval(d)`, a timer thread in each process holding
//! such a handle syncs every `d`.
//!
//! **Waking.** Waiters for a sync sleep on the durable line, and under `Always` readers
//! too wait for syncs (they read only what is synced; producers do not wake them). Both are
//! woken here, once per sync, with a full fence: they sleep without the heavy barrier
//! (`FencedFutex`), which costs more than all of their wakers' fences.
//!
//! **The id ceiling.** Ids are positions; after a crash, positions handed out but never
//! logged must not be handed out again. Producers never write at or past `ceiling` (the gate
//! counts it), and it is raised, a log segment at a time, only after the log's meta record
//! holds the new value on disk. A restart resumes at the ceiling.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::layout::{self, record};
use crate::log::Log;
use crate::ring::{Found, plausible, read_record};
use crate::segment::Segment;
use crate::sync::atomic::{AtomicU64, Ordering};
use crate::sync::futex::{FencedFutex, OsFutex};
use crate::sync::wait::{self, Wait};

use super::Fsync;
use super::gate::{wake_readers, wake_space};

/// A waiter whose sync has not come for this long journals alongside the role's holder
/// (which may be stopped).
pub(crate) const ALONGSIDE_AFTER: Duration = Duration::from_millis(50);
/// The longest a journaler waits for producers still appending before it syncs
/// ([`Journal::gather`]; normally a quarter of its last sync).
const MAX_GATHER: Duration = Duration::from_millis(1);
/// How long the tail must stand still for a gathering journaler to sync at once.
const GATHER_QUIET: Duration = Duration::from_micros(3);
/// The longest sync a waiter under [`Wait::Adaptive`] polls for rather than sleeps through
/// ([`Journal::wait_durable`]): beyond it, a wake-up's latency is a small part of the wait.
const POLL_SYNCS_UP_TO: Duration = Duration::from_millis(1);
/// The most bytes one pass copies before writing them (and the record that reaches it),
/// whatever the ring's size (see [`pass`]: an eighth of the ring below that when the run
/// does not sync).
const MAX_PASS: u64 = 4 << 20;

/// The most passes a consumer about to wait journals at a time ([`Journal::write_ahead`]):
/// the second only while the journal is what holds the producers back. Measured with
/// `shmq bench --durable --size 1KiB` (`Fsync::Never`, a 1 MiB ring, the disk floor at
/// 2.9 M messages/s, three alternated pairs of runs): one pass at a time streamed 2.2-2.4 M
/// messages/s, the in-stream p50 38-41 us; two, 2.4-2.5 M and 47-49 us. Three, and no
/// limit, were a few per cent faster again, at 80-85 us and 170 us.
const WRITE_AHEAD_PASSES: u32 = 2;
/// The records, on average, below which a consumer writes ahead one pass only. Reading a
/// small record costs about as much as journaling it (both are mostly per-record work), so
/// a consumer kept from reading by a second pass falls behind producers it barely outruns:
/// with 64-byte messages (96-byte records), it was lapped in the ring, and read the rest of
/// the stream from the log files, in 4 of 13 runs of `shmq bench --durable --size 64`
/// (in-stream p50 0.5-3 ms), against 3 of 38 with one pass at a time; with 256-byte
/// messages, a second pass streamed 6-9 % faster and none of 7 runs was lapped.
const WRITE_AHEAD_RECORD_BYTES: u64 = 256;

/// How much of what is committed a call journals when it does not sync.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Passes {
    /// Everything (a handle closing, the timer, a member that needs its span in the log).
    All,
    /// One pass: room for a producer that found the ring full, or a consumer reading the
    /// log that waits for the journal. The caller goes back to what it was doing, and asks
    /// again if it still needs to. A sync always journals everything first (it covers what
    /// its waiters sent).
    One,
    /// A consumer about to wait. Reading the ring (`upto`: its position there, the end of
    /// what it has read): up to [`WRITE_AHEAD_PASSES`], none past `upto`. Reading the log
    /// (`None`: it is behind the journal, which cannot overtake it): one pass.
    Ahead {
        /// Where the passes stop, if anywhere.
        upto: Option<u64>,
    },
}

thread_local! {
    /// The journal's copy buffer, kept from one call to the next ([`PassBuf`]).
    static PASS_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The calling thread's copy buffer for the passes of one journal call, given back to the
/// thread when dropped. A pass copies up to an eighth of the ring or [`MAX_PASS`] (and one
/// record more); a buffer that size allocated per call is one the allocator maps fresh and
/// unmaps again (128 KiB and up, glibc's default), so every call paid the kernel a page
/// fault and the zeroing of each page before copying into it. Kept, it costs its size per
/// thread that journals; one grown past [`KEEP_AT_MOST`] (by a record of hundreds of
/// megabytes) is freed instead.
struct PassBuf(Vec<u8>);

/// The largest pass buffer a thread keeps for its next journal call.
const KEEP_AT_MOST: usize = 2 * MAX_PASS as usize;

impl PassBuf {
    fn take() -> PassBuf {
        PassBuf(PASS_BUF.try_with(|b| b.take()).unwrap_or_default())
    }
}

impl Drop for PassBuf {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.0);
        if buf.capacity() > KEEP_AT_MOST {
            return;
        }
        // A thread being torn down has no buffer to keep.
        let _ = PASS_BUF.try_with(|b| b.replace(buf));
    }
}

/// A handle's view of its queue's log.
#[derive(Clone)]
pub(crate) struct Journal {
    log: Arc<Log>,
    fsync: Fsync,
    capacity: u64,
    seg_size: u64,
    /// `Fsync::Interval`: keeps this process's timer thread running.
    _timer: Option<Arc<Timer>>,
    /// The synced position this process left when it last journaled alongside a role
    /// holder that had not made progress (`u64::MAX`: never). While it still stands there,
    /// the holder is still stuck: later waits journal alongside at once, not after
    /// [`ALONGSIDE_AFTER`] each.
    alongside: Arc<AtomicU64>,
    /// How long this handle's last sync took (ns; 0: none yet): bounds [`Journal::gather`].
    last_sync: Arc<AtomicU64>,
    /// How long this handle's last wait for a sync took (ns; 0: none yet): how long the next
    /// one polls before it sleeps ([`Journal::wait_durable`]).
    last_wait: Arc<AtomicU64>,
    /// The participant slots that waited for this handle's last sync (its own included when
    /// it led while waiting): [`Journal::gather`] expects them back.
    waited: Arc<AtomicU64>,
}

impl Journal {
    /// The journal of `seg`'s queue, if it is durable: attaches its log (one per process
    /// and directory, shared by the handles), starting the interval timer if needed.
    pub(crate) fn attach(seg: &Segment) -> Result<Option<Journal>> {
        let Some(d) = seg.config().durable.clone() else { return Ok(None) };
        let log = shared_log(&d.dir, d.identity)?;
        let timer = match d.fsync {
            Fsync::Interval(every) => Some(Timer::start(&seg.config().name, every)),
            _ => None,
        };
        Ok(Some(Journal {
            log,
            fsync: d.fsync,
            capacity: seg.config().capacity,
            seg_size: d.seg_size,
            _timer: timer,
            alongside: Arc::new(AtomicU64::new(u64::MAX)),
            last_sync: Arc::new(AtomicU64::new(0)),
            waited: Arc::new(AtomicU64::new(0)),
            last_wait: Arc::new(AtomicU64::new(0)),
        }))
    }

    /// Whether sends wait for their sync.
    pub(crate) fn always(&self) -> bool {
        self.fsync == Fsync::Always
    }

    /// The log.
    pub(crate) fn log(&self) -> &Arc<Log> {
        &self.log
    }

    /// Makes progress if it is needed and the role is free (or `force`): raises the ceiling
    /// if producers are near it, journals everything committed, and syncs unless the policy
    /// is `Never`. Returns whether anything moved. `Err(Log)` once a sync failed.
    pub(crate) fn catch_up(&self, seg: &Segment, force: bool) -> Result<bool> {
        self.progress(seg, force, Passes::All)
    }

    /// One pass (at most about an eighth of the ring), not synced, except under `Always`,
    /// where the room it frees is what is synced, so it journals everything and syncs as
    /// [`catch_up`](Self::catch_up) does: what a producer that found the ring full needs
    /// (it asks again while it still finds it full), and a consumer reading the log that
    /// waits for the journal, without holding the ring (and a consumer reading right behind
    /// the producers) for a ring's worth of writes. Under `Interval` the timer syncs.
    pub(crate) fn step(&self, seg: &Segment, force: bool) -> Result<bool> {
        self.progress(seg, force, Passes::One)
    }

    fn progress(&self, seg: &Segment, force: bool, passes: Passes) -> Result<bool> {
        check_failed(seg)?;
        let h = seg.header();
        let d = &h.durable;
        // Acquire: pairs with the producers' Release publication of `tail`.
        let tail = h.producer.tail.load(Ordering::Acquire);
        // Relaxed: hints only; the pass re-reads them with the orderings it needs.
        let behind = d.journal.load(Ordering::Relaxed) < tail;
        let low = d.ceiling.load(Ordering::Relaxed) < tail.saturating_add(2 * self.capacity);
        if !behind && !low {
            return Ok(false);
        }
        let locked = seg.try_lock_journal();
        if !locked && !force {
            return Ok(false);
        }
        // A step syncs only where the room it makes is what is synced.
        let sync = match passes {
            Passes::All => self.fsync != Fsync::Never,
            Passes::One => self.fsync == Fsync::Always,
            // Not asked for here (`write_ahead` never syncs).
            Passes::Ahead { .. } => false,
        };
        let r = self.run(seg, sync, locked, 0, passes);
        if locked {
            release_role(seg);
        }
        r
    }

    /// Copies what is committed into the log files, without syncing, if the role is free
    /// and the journal is behind: a consumer with nothing to read takes that work off the
    /// producers (syncing stays with the policy's owners, so their syncs keep their
    /// batches). A pass, and a second one while the journal is what holds the producers
    /// back (at least half a ring behind them) and the records are not small (at least
    /// [`WRITE_AHEAD_RECORD_BYTES`] on average): the room the first made lets them send
    /// again while the second is written, instead of the journal standing idle until they
    /// have filled it (two passes at a time streamed 6-9 % faster than one, the consumer's
    /// in-stream latency 8-14 us longer; see [`WRITE_AHEAD_PASSES`]). Nothing at or past
    /// `read_to`, where the consumer's own reading is: a pass past that would let the
    /// producers overwrite what it has not read, and the consumer, passed in the ring, would
    /// read the rest back from the files. `None`: it reads the log; one pass, unbounded.
    ///
    /// A dead MPSC claimant's record at `read_to` is not passed here (the consumer's own
    /// stuck-claim check, or a producer that finds the ring full, passes it).
    pub(crate) fn write_ahead(&self, seg: &Segment, read_to: Option<u64>) -> Result<bool> {
        check_failed(seg)?;
        // Under `Always` the producers waiting for their syncs journal: a consumer taking
        // the role would only make them wait for it.
        if self.fsync == Fsync::Always {
            return Ok(false);
        }
        let h = seg.header();
        // Acquire: pairs with the producers' Release publication of `tail`. Relaxed for
        // `written`: a hint; the pass re-reads it.
        let tail = h.producer.tail.load(Ordering::Acquire);
        // Only a backlog worth a system call: a consumer keeping up with a producer message
        // by message must not pay a write per message (its latency is the queue's).
        let written = h.durable.written.load(Ordering::Relaxed);
        // Nothing it has read is left to journal: not worth the role's lock either.
        if tail.saturating_sub(written) < self.capacity / 4
            || read_to.is_some_and(|r| r <= written)
            || !seg.try_lock_journal()
        {
            return Ok(false);
        }
        let r = self.run(seg, false, true, 0, Passes::Ahead { upto: read_to });
        release_role(seg);
        r
    }

    /// One round of journaling by the caller (holding the role if `locked`): the ceiling,
    /// every committed record (without `sync`, one pass or two, bounded, if `passes` says so),
    /// and a sync if `sync`. A holder of the role wakes the producers
    /// waiting for their sync only when it gives the role back ([`release_role`]): woken
    /// earlier, those that must lead would find it taken and sleep again. `me`: the caller's
    /// waiter bit if it waits for this sync itself (0 otherwise).
    fn run(&self, seg: &Segment, sync: bool, locked: bool, me: u64, passes: Passes) -> Result<bool> {
        let mut moved = raise_ceiling(seg, &self.log, self.capacity, self.seg_size)?;
        let mut buf = PassBuf::take();
        let buf = &mut buf.0;
        // A run that syncs covers what its waiters sent, in passes as long as they may be;
        // the others free the ring in steps (see `pass`).
        let most = if sync { MAX_PASS } else { (self.capacity / 8).min(MAX_PASS) };
        let (upto, limit) = match passes {
            _ if sync => (u64::MAX, u32::MAX),
            Passes::All => (u64::MAX, u32::MAX),
            Passes::One => (u64::MAX, 1),
            Passes::Ahead { upto: Some(upto) } => (upto, WRITE_AHEAD_PASSES),
            Passes::Ahead { upto: None } => (u64::MAX, 1),
        };
        let mut done = 0;
        while let Some(m) = pass(seg, &self.log, buf, most, upto)? {
            moved = true;
            done += 1;
            if done >= limit {
                break;
            }
            // A consumer writing ahead goes on only while the journal is what holds the
            // producers, and for records large enough that writing them costs it far more
            // than reading them (see `WRITE_AHEAD_RECORD_BYTES`).
            let small = m.records != 0 && m.bytes / m.records < WRITE_AHEAD_RECORD_BYTES;
            if matches!(passes, Passes::Ahead { .. }) && (small || !journal_holds_producers(seg, self.capacity)) {
                break;
            }
        }
        if sync && self.fsync == Fsync::Always {
            moved |= self.gather(seg, buf, me)?;
        }
        if sync {
            let t0 = Instant::now();
            let synced = sync_log(seg, &self.log, !locked)?;
            if synced {
                // Relaxed, both: this process's own estimates. Whoever waits for a sync now
                // waited for this one (a sleeper woken by the last one and not yet run does
                // not count: its tag names an older epoch).
                self.last_sync.store(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
                self.waited.store(wait::waiting_now(seg.durable_words()) | me, Ordering::Relaxed);
            }
            moved |= synced;
        }
        if moved {
            maybe_checkpoint(seg, false);
            maybe_retire(seg, &self.log, self.seg_size);
        }
        Ok(moved)
    }

    /// Group commit: gives producers still appending a moment to finish before the sync,
    /// so that it covers their records too (a sync costs about as much for one record as
    /// for hundreds, and their senders would otherwise wait for the next one). Yields the
    /// CPU (the producers may need it) until the producers that waited for this journaler's
    /// last sync wait again (they have appended what they will append before waiting: under
    /// steady load, one sync per round of every producer's batch); when there were none, until
    /// the tail has stood still for [`GATHER_QUIET`]. At most for a quarter of the last sync,
    /// so a sync comes at most that much later than it would have (a producer that has
    /// stopped sending costs that once: it did not wait for this sync, so the next gather
    /// does not expect it). `me`: the caller's own waiter bit (0: none). Returns whether it
    /// wrote more.
    fn gather(&self, seg: &Segment, buf: &mut Vec<u8>, me: u64) -> Result<bool> {
        // Relaxed, both: this journaler's own estimates.
        let bound = Duration::from_nanos(self.last_sync.load(Ordering::Relaxed) / 4).min(MAX_GATHER);
        if bound.is_zero() {
            return Ok(false);
        }
        let expected = self.waited.load(Ordering::Relaxed) & !me;
        let words = seg.durable_words();
        let tail = &seg.header().producer.tail;
        // Relaxed: a hint that producers are appending; the passes read it with Acquire.
        let mut seen = tail.load(Ordering::Relaxed);
        let start = Instant::now();
        let mut still_since = start;
        loop {
            std::thread::yield_now();
            // Relaxed: as above.
            let t = tail.load(Ordering::Relaxed);
            let now = Instant::now();
            if expected != 0 {
                if expected & !wait::waiting_now(words) == 0 {
                    break;
                }
            } else if t != seen {
                seen = t;
                still_since = now;
            } else if now - still_since >= GATHER_QUIET {
                break;
            }
            if now - start >= bound {
                break;
            }
        }
        let mut moved = false;
        while pass(seg, &self.log, buf, MAX_PASS, u64::MAX)?.is_some() {
            moved = true;
        }
        Ok(moved)
    }

    /// Journals and syncs everything committed now (a handle closing, the timer).
    pub(crate) fn flush(&self, seg: &Segment) -> Result<()> {
        let locked = seg.try_lock_journal();
        let r = self.run(seg, self.fsync != Fsync::Never, locked, 0, Passes::All);
        if locked {
            release_role(seg);
        }
        maybe_checkpoint(seg, true);
        r.map(|_| ())
    }

    /// Waits until everything below `end` is durable (under `Never`: written to the log
    /// files), journaling itself when the role is free, or alongside its holder after
    /// [`ALONGSIDE_AFTER`]. `slot` is the caller's participant slot (its waiter bit).
    ///
    /// While another process syncs, the caller waits by `policy`: [`Wait::Block`] sleeps;
    /// [`Wait::Spin`] polls (yielding the CPU between looks) until the deadline;
    /// [`Wait::Adaptive`] polls for up to twice as long as this handle's last wait for a
    /// sync took, if that was at most [`POLL_SYNCS_UP_TO`], then sleeps. A woken sleeper
    /// needs tens of microseconds on a virtual machine before it runs, and a producer pays
    /// that before each round of sends: against syncs of a quarter of a millisecond, that is
    /// a good part of each round. A poller is registered as a waiter all the while
    /// ([`wait::poll_registered`]), so a gathering journaler counts it.
    pub(crate) fn wait_durable(
        &self,
        seg: &Segment,
        slot: usize,
        end: u64,
        deadline: Option<Instant>,
        policy: Wait,
    ) -> Result<()> {
        let d = &seg.header().durable;
        let target = if self.fsync == Fsync::Never { &d.written } else { &d.durable };
        let sync = self.fsync != Fsync::Never;
        // SYNC POINT: Acquire pairs with the journaler's Release raise: what it wrote and
        // synced is done.
        let mut seen = target.load(Ordering::Acquire);
        if seen >= end {
            return Ok(());
        }
        let start = Instant::now();
        let mut since = start;
        // A wait that had to wait: how long the next one polls.
        let waited = || {
            // Relaxed: this handle's own estimate.
            self.last_wait.store(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
            Ok(())
        };
        loop {
            if seen >= end {
                return waited();
            }
            check_failed(seg)?;
            let locked = seg.try_lock_journal();
            // Relaxed: this process's own hint.
            let stuck = self.alongside.load(Ordering::Relaxed) == seen;
            if locked || stuck || since.elapsed() >= ALONGSIDE_AFTER {
                let r = self.run(seg, sync, locked, 1u64 << (slot % 64), Passes::All);
                if locked {
                    release_role(seg);
                }
                r?;
                since = Instant::now();
                // Acquire: as above.
                let now = target.load(Ordering::Acquire);
                // Relaxed: as above.
                self.alongside.store(if locked { u64::MAX } else { now }, Ordering::Relaxed);
                if now >= end {
                    return waited();
                }
                if now == seen {
                    // Nothing moved: the records below `end` are not all committed yet (an
                    // MPSC claim in flight, or `end` is past everything sent so far). Sleep a
                    // little below, after a look at the deadline: holding the role and going
                    // round again at once would spin past it.
                } else {
                    seen = now;
                    // Lead again at once, unless the deadline has passed: under steady
                    // traffic every round moves `durable`, and an `end` not sent yet would
                    // otherwise keep us leading past it.
                    if locked && deadline.is_none_or(|t| Instant::now() < t) {
                        continue;
                    }
                }
            }
            if deadline.is_some_and(|t| Instant::now() >= t) {
                return Err(Error::Timeout);
            }
            let slice = Instant::now() + ALONGSIDE_AFTER;
            let until = deadline.map_or(slice, |t| t.min(slice));
            let me = 1u64 << (slot % 64);
            let words = seg.durable_words();
            // Acquire: as in `sync::wait::block`. Any wake after this (a sync, the role
            // released) ends the sleep: the role may be free for us now.
            let epoch = words.epoch.load(Ordering::Acquire);
            let was = seen;
            let poll = || {
                // Acquire: as above.
                let v = target.load(Ordering::Acquire);
                // Any progress wakes us: a sync that did not cover `end` leaves the next one
                // to lead, and the role is then free. Relaxed: the flag is re-checked with
                // Acquire at the top of the loop.
                let woken = words.epoch.load(Ordering::Relaxed) != epoch;
                (v >= end || v != was || woken || d.failed.load(Ordering::Relaxed) != 0).then_some(v)
            };
            // How long to poll before sleeping (see above). Relaxed: this handle's own
            // estimate.
            let last = Duration::from_nanos(self.last_wait.load(Ordering::Relaxed));
            let poll_for = match policy {
                Wait::Block => Duration::ZERO,
                Wait::Spin => ALONGSIDE_AFTER,
                Wait::Adaptive if last.is_zero() => wait::ADAPTIVE_SPIN,
                Wait::Adaptive if last <= POLL_SYNCS_UP_TO => 2 * last,
                Wait::Adaptive => Duration::ZERO,
            };
            if !poll_for.is_zero() {
                let r = wait::poll_registered(words, me, until.min(Instant::now() + poll_for), poll);
                if let Some(v) = r {
                    seen = v;
                }
                if r.is_some() || policy == Wait::Spin {
                    continue;
                }
            }
            if let Some(v) = wait::wait_for(Wait::Block, words, me, &FencedFutex, Some(until), poll, || {}) {
                seen = v;
            }
        }
    }
}

/// Gives the journal role back, and wakes whoever may have found it taken meanwhile and
/// gone to sleep for what its holder would do: producers waiting for a sync (woken by the
/// holder's syncs, they may have slept again) or for room (the holder may have stopped
/// journaling before their records' turn). The role is free for them now.
fn release_role(seg: &Segment) {
    seg.unlock_journal();
    wait::wake(seg.durable_words(), &FencedFutex);
    wake_space(seg);
}

/// Whether a restore is still making the checkpoint's subscriptions again (for at most
/// [`RESTORE_GRACE`](super::RESTORE_GRACE)): until it is done they hold no position, so
/// retention must not run, nor a checkpoint be written (it would leave them out).
pub(crate) fn restoring(seg: &Segment) -> bool {
    // Acquire: pairs with the creator's Release store when it is done. Read once.
    let until = u64::from(seg.header().durable.restoring_until.load(Ordering::Acquire));
    if until == 0 {
        return false;
    }
    // A creator writes at most now + the grace: a later time was scribbled there, and must
    // not stop retention and checkpoints for good.
    let now = crate::segment::now_unix_ns() / 1_000_000_000;
    now < until && until <= now + super::RESTORE_GRACE.as_secs()
}

/// Whether this process last did something for the queue whose log is in `dir` less than
/// `every` ago (`!now` only); if not, records that it does it now. Per queue: one queue's
/// pace must not hold another's back.
fn paced(last: &Mutex<Vec<(std::path::PathBuf, Instant)>>, dir: &std::path::Path, every: Duration, now: bool) -> bool {
    let mut last = last.lock().unwrap_or_else(|p| p.into_inner());
    match last.iter_mut().find(|(d, _)| d == dir) {
        Some((_, t)) if !now && t.elapsed() < every => true,
        Some((_, t)) => {
            *t = Instant::now();
            false
        }
        None => {
            last.push((dir.to_path_buf(), Instant::now()));
            false
        }
    }
}

/// Writes the consumers' positions to the log directory if this process's last checkpoint
/// of the queue is older than `CHECKPOINT_EVERY` (or `now`). Failures are ignored: a
/// missing checkpoint only means more redelivery after a restart.
pub(crate) fn maybe_checkpoint(seg: &Segment, now: bool) {
    use super::backlog::checkpoint;
    static LAST: Mutex<Vec<(std::path::PathBuf, Instant)>> = Mutex::new(Vec::new());
    let Some(d) = &seg.config().durable else { return };
    if restoring(seg) || paced(&LAST, &d.dir, checkpoint::CHECKPOINT_EVERY, now) {
        return;
    }
    // Another process writing one now wrote a snapshot as recent; a handle closing waits
    // for it (briefly) to write its own last word.
    for _ in 0..if now { 100 } else { 1 } {
        match checkpoint::write(seg, &d.dir, crate::segment::now_unix_ns()) {
            Ok(false) => std::thread::sleep(std::time::Duration::from_millis(2)),
            _ => return,
        }
    }
}

/// Deletes the log segments every reader has released and `retain` does not keep, at most
/// once a second per process and queue. Failures are left for the next time.
fn maybe_retire(seg: &Segment, log: &Log, seg_size: u64) {
    static LAST: Mutex<Vec<(std::path::PathBuf, Instant)>> = Mutex::new(Vec::new());
    let Some(d) = &seg.config().durable else { return };
    if restoring(seg) || paced(&LAST, &d.dir, Duration::from_secs(1), false) {
        return;
    }
    let h = &seg.header().durable;
    // Acquire: pairs with the Release raise; only what is written may go.
    let written = h.written.load(Ordering::Acquire);
    let mut keep = readers_floor(seg).min(written);
    // Nor, where the log is synced, what is not synced yet: a sync still to come covers
    // those segments (`Log::sync` refuses a missing one, and would turn the queue
    // read-only). Under `Interval` readers read what is written, ahead of the sync.
    // Relaxed: fixed at creation. Acquire: pairs with the Release raise after the sync.
    if h.fsync.load(Ordering::Relaxed) != layout::FSYNC_NEVER {
        keep = keep.min(h.durable.load(Ordering::Acquire));
    }
    if let super::Retain::Bytes(n) = d.retain {
        keep = keep.min(written.saturating_sub(n));
    }
    if keep >= seg_size {
        let _ = log.delete_before(keep / seg_size * seg_size);
    }
}

/// The lowest position any reader still needs: the default consumer's, every
/// subscription's cursor, and every span a member holds.
pub(crate) fn readers_floor(seg: &Segment) -> u64 {
    let h = seg.header();
    let mut floor = u64::MAX;
    // Acquire: as in the producers' gate.
    let active = h.subs.active.load(Ordering::Acquire);
    for i in crate::ring::cursors::bits(active).filter(|&i| i < layout::SUBSCRIPTIONS) {
        // Acquire: as in the producers' gate.
        let w = seg.cursor(i).load(Ordering::Acquire);
        // A locked cursor stands at its claim's end; the claim (counted below) at its start.
        floor = floor.min(crate::ring::cursors::position(seg, w));
        if i == 0 {
            continue;
        }
        // Acquire: pairs with the Release that set a member's bit.
        let members = seg.sub(i).cursor.members.load(Ordering::Acquire);
        for j in crate::ring::cursors::bits(members).filter(|&j| j < layout::MEMBERS) {
            let m = seg.member(j);
            // Acquire: as in the producers' gate.
            if crate::ring::cursors::claim_state(m.claim_state.load(Ordering::Acquire)) != layout::CLAIM_NONE {
                floor = floor.min(m.claim_pos.load(Ordering::Acquire));
            }
        }
        // Explicit acks: every message in flight (or to be delivered again) is read from
        // the log. Looked at after the claims: a message leaves its claim only once its
        // entry is committed.
        floor = floor.min(super::acks::floor(seg, i));
    }
    floor
}

/// `Err(Log)` once a sync of this queue's log failed.
pub(crate) fn check_failed(seg: &Segment) -> Result<()> {
    // Acquire: pairs with the Release store of the flag after the failure.
    if seg.header().durable.failed.load(Ordering::Acquire) != 0 {
        return Err(Error::Log(format!(
            "queue {}: a sync of its log failed earlier; the queue is read-only",
            seg.config().name
        )));
    }
    Ok(())
}

/// Raises `word` to `v` unless it is already there or above. Returns whether it did.
fn raise(word: &AtomicU64, v: u64) -> bool {
    // Relaxed: the compare-and-swap below orders.
    let mut cur = word.load(Ordering::Relaxed);
    while cur < v {
        // SYNC POINT: Release publishes what was done below `v` (written, synced) to the
        // Acquire loads of waiters, readers and the next journaler.
        match word.compare_exchange_weak(cur, v, Ordering::AcqRel, Ordering::Relaxed) {
            Ok(_) => return true,
            Err(now) => cur = now,
        }
    }
    false
}

/// What a [`pass`] that moved the journal did: the records (padding included) it wrote and
/// their bytes; zero, both, when another journaler had written them first.
#[derive(Clone, Copy, Debug)]
struct Moved {
    records: u64,
    bytes: u64,
}

/// Copies the committed records at `written` into the log (see the module docs), until
/// `most` bytes are copied (the record that reaches it included: a pass copies at least
/// one), and no record that starts at or past `upto` (a consumer's position, a record
/// boundary, so none crosses it either). Returns what it did if `written` moved.
///
/// A run that does not sync passes at most an eighth of the ring at a time: a journaler
/// frees the ring in steps, so a producer it holds back sends again soon, and a consumer
/// right behind the producers keeps ahead of what the next sends overwrite.
fn pass(seg: &Segment, log: &Arc<Log>, buf: &mut Vec<u8>, most: u64, upto: u64) -> Result<Option<Moved>> {
    let h = seg.header();
    let d = &h.durable;
    let geo = seg.config().geometry();
    let region = seg.region();
    let corrupt = |what: &str| Error::Corrupt(format!("queue {}: {what}", seg.config().name));
    // SYNC POINT: Acquire pairs with the Release raise of `written` by another journaler.
    let start = d.written.load(Ordering::Acquire);
    // Acquire: pairs with the producers' Release publication of `tail`.
    let tail = h.producer.tail.load(Ordering::Acquire);
    if !plausible(start) || !plausible(tail) {
        return Err(corrupt("log position out of range"));
    }
    if start >= tail {
        return Ok(None);
    }
    if tail - start > geo.capacity {
        return Err(corrupt("log position more than a ring behind the producers"));
    }
    let (most, end) = (most as usize, tail.min(upto));
    buf.clear();
    let mut pos = start;
    let mut records = 0;
    while pos < end && buf.len() < most {
        let index = geo.index(pos);
        match read_record(&geo, &region, pos).map_err(|e| corrupt(&format!("{e:?}")))? {
            // Not committed yet; or, if nothing at all moves, perhaps the claim of an MPSC
            // producer that died before committing: passed below as a reader would.
            Found::Nothing if pos == start && pass_dead_claim(seg, pos, tail)? => continue,
            Found::Nothing => break,
            Found::Message { size, .. } => {
                let at = buf.len();
                region.read_append(index, size as usize, buf);
                crate::log::format::seal(&mut buf[at..], pos);
                pos += size;
                records += 1;
            }
            Found::Skip { size } => {
                // Padding, or the wrap's padding to the end of the region (which the log
                // marks by its first word only: its reader skips to the next multiple of
                // the capacity).
                let at = buf.len();
                let end = pos + size;
                if end % geo.capacity == 0 {
                    buf.extend_from_slice(&crate::log::format::encode_pad_end(pos));
                } else {
                    buf.extend_from_slice(&crate::log::format::encode_padding(pos, size));
                }
                buf.resize(at + size as usize, 0);
                pos = end;
                records += 1;
            }
        }
    }
    if pos == start {
        return Ok(None);
    }
    // The copy is valid only if nobody moved `written` while we copied: the journal's
    // cursor, at or below `written`, is what kept producers off those bytes.
    // Acquire: as above.
    if d.written.load(Ordering::Acquire) != start {
        // Another journaler wrote this range; look again.
        return Ok(Some(Moved { records: 0, bytes: 0 }));
    }
    crate::failpoint::hit("journal-copied");
    log.write(start, buf).map_err(|e| fail(seg, e))?;
    crate::failpoint::hit("journal-written");
    log.prepare_ahead(start, pos, ceiling_for(pos, log.seg_size()));
    // Relaxed: a statistic.
    d.writes.fetch_add(1, Ordering::Relaxed);
    raise(&d.written, pos);
    // Relaxed: fixed at creation.
    if d.fsync.load(Ordering::Relaxed) != layout::FSYNC_ALWAYS && raise(&d.journal, pos) {
        wake_space(seg);
    }
    Ok(Some(Moved { records, bytes: pos - start }))
}

/// Whether the journal is at least half a ring behind the producers: the room they can
/// send into next depends on it, not on the readers.
fn journal_holds_producers(seg: &Segment, capacity: u64) -> bool {
    let h = seg.header();
    // Relaxed, both: a hint for whether to go on; the next pass reads them with the
    // orderings it needs.
    let tail = h.producer.tail.load(Ordering::Relaxed);
    tail.saturating_sub(h.durable.written.load(Ordering::Relaxed)) >= capacity / 2
}

/// MPSC: turns the claim at `pos` of a producer proven dead into padding, as a reader
/// stuck behind it does (`ring::reclaim`); with no reader there (or one further behind),
/// the journal must not wait for a commit that never comes. Returns whether it did.
fn pass_dead_claim(seg: &Segment, pos: u64, tail: u64) -> Result<bool> {
    use crate::ring::reclaim::{Outcome, reclaim};
    if seg.config().mode != crate::segment::Mode::Mpsc || pos >= tail {
        return Ok(false);
    }
    let claims = seg.claims();
    let corrupt = |e| Error::Corrupt(format!("queue {}: {e:?}", seg.config().name));
    match reclaim(&seg.config().geometry(), &seg.region(), pos, tail, &claims, |slot| seg.slot_alive(slot))
        .map_err(corrupt)?
    {
        Outcome::Reclaimed { dead, .. } => {
            for c in claims.iter().filter(|c| dead & (1 << c.slot) != 0) {
                seg.clear_claim(c.slot, c.pos);
            }
            // Relaxed: a statistic.
            seg.header().retired.reclaimed.fetch_add(1, Ordering::Relaxed);
            Ok(true)
        }
        Outcome::NotStuck | Outcome::Wait(_) => Ok(false),
    }
}

/// Syncs `[durable, written)`; returns whether `durable` moved. Wakes the producers waiting
/// for their sync if `wake_durable` (a holder of the role leaves that to [`release_role`]).
fn sync_log(seg: &Segment, log: &Log, wake_durable: bool) -> Result<bool> {
    let d = &seg.header().durable;
    // Acquire: pairs with the Release raises: the writes below them are done.
    let durable = d.durable.load(Ordering::Acquire);
    let written = d.written.load(Ordering::Acquire);
    if written <= durable {
        // Nothing to sync. A journaler killed after raising `durable` (below) left the
        // journal's cursor and the wakes behind: catch up, or producers waiting for the
        // room below `durable` would wait for a sync that has nothing to do.
        // Relaxed: fixed at creation.
        if d.fsync.load(Ordering::Relaxed) == layout::FSYNC_ALWAYS && raise(&d.journal, durable) {
            wake_space(seg);
            wake_readers(seg);
        }
        return Ok(false);
    }
    crate::failpoint::hit("journal-syncing");
    if crate::failpoint::fails("journal-sync-fails") {
        return Err(fail(seg, Error::Log("fdatasync of the log: Input/output error (os error 5, injected)".into())));
    }
    log.sync(durable, written, durable).map_err(|e| fail(seg, e))?;
    crate::failpoint::hit("journal-synced");
    // Relaxed: a statistic.
    d.syncs.fetch_add(1, Ordering::Relaxed);
    let moved = raise(&d.durable, written);
    crate::failpoint::hit("journal-durable-raised");
    // Relaxed: fixed at creation.
    if d.fsync.load(Ordering::Relaxed) == layout::FSYNC_ALWAYS && raise(&d.journal, written) {
        // Readers may read up to it now, and producers overwrite below it.
        wake_readers(seg);
        wake_space(seg);
    }
    if wake_durable {
        wait::wake(seg.durable_words(), &FencedFutex);
    }
    Ok(moved)
}

/// Records a log failure: a failed sync makes the queue read-only for good (the kernel may
/// have dropped the dirty pages: retrying could report success for data that is gone).
fn fail(seg: &Segment, e: Error) -> Error {
    if matches!(e, Error::Log(_)) {
        // Release: pairs with `check_failed`'s Acquire.
        seg.header().durable.failed.store(1, Ordering::Release);
        wait::wake_unconditionally(seg.durable_words(), &FencedFutex);
        wait::wake_unconditionally(seg.space_words(), &OsFutex);
    }
    e
}

/// Raises the id ceiling a log segment ahead when the producers come within two rings of it.
/// Returns whether it moved.
fn raise_ceiling(seg: &Segment, log: &Log, capacity: u64, seg_size: u64) -> Result<bool> {
    let h = seg.header();
    let d = &h.durable;
    // Acquire: pairs with the Release raise of the ceiling (after its meta record synced).
    let ceiling = d.ceiling.load(Ordering::Acquire);
    // Relaxed: a hint; the ceiling only matters at the gate, which reads it again.
    let tail = h.producer.tail.load(Ordering::Relaxed);
    if ceiling >= tail.saturating_add(2 * capacity) {
        return Ok(false);
    }
    let next = ceiling_for(tail, seg_size);
    if !plausible(next) {
        return Err(Error::Corrupt(format!("queue {}: positions exhausted", seg.config().name)));
    }
    crate::failpoint::hit("ceiling-raising");
    log.set_ceiling(next).map_err(|e| fail(seg, e))?;
    // Whether the ceiling moved: one already there (raised by another process, or a ring
    // as large as a segment, whose ceiling stays within two rings) is no progress.
    let raised = raise(&d.ceiling, next);
    if raised {
        wake_space(seg);
    }
    Ok(raised)
}

/// The ceiling raised for producers at `tail`: the end of the segment after `tail`'s, so
/// a raise is due once per segment, near its end. The journal's write that passes the
/// middle of a segment has it made durable ahead ([`Log::prepare_ahead`]).
fn ceiling_for(tail: u64, seg_size: u64) -> u64 {
    (tail / seg_size + 2) * seg_size
}

/// The floor the journal puts under producers: they write nothing at or above the
/// journal's cursor plus a capacity, nor at or past the ceiling. `u64::MAX` for a volatile
/// queue.
pub(crate) fn floor(seg: &Segment) -> u64 {
    let d = &seg.header().durable;
    // Relaxed: fixed at creation (the header was validated with Acquire).
    if d.flags.load(Ordering::Relaxed) == 0 {
        return u64::MAX;
    }
    // SYNC POINT: Acquire pairs with the journal's Release raise: its reads of the bytes
    // below are done before we overwrite them.
    let journal = d.journal.load(Ordering::Acquire);
    // Acquire: pairs with the Release raise after the meta record synced.
    let ceiling = d.ceiling.load(Ordering::Acquire);
    journal.min(ceiling.saturating_sub(seg.config().capacity))
}

/// One [`Log`] per process and directory.
pub(crate) fn shared_log(dir: &std::path::Path, identity: [u8; 16]) -> Result<Arc<Log>> {
    static LOGS: Mutex<Vec<(PathBuf, Weak<Log>)>> = Mutex::new(Vec::new());
    let mut logs = LOGS.lock().unwrap_or_else(|p| p.into_inner());
    logs.retain(|(_, w)| w.strong_count() > 0);
    // By identity too: a queue made again in a directory emptied meanwhile has a new log,
    // and the old `Log` (kept alive a moment by a thread of its own) holds the old files.
    if let Some(log) =
        logs.iter().filter(|(p, _)| p == dir).filter_map(|(_, w)| w.upgrade()).find(|l| l.identity() == identity)
    {
        return Ok(log);
    }
    let log = Arc::new(Log::attach(Arc::new(crate::log::fs::RealFs), dir, identity)?);
    logs.push((dir.to_path_buf(), Arc::downgrade(&log)));
    Ok(log)
}

/// The `Fsync::Interval` timer of one queue in this process: a thread that journals and
/// syncs every interval while a handle of the queue lives here, and once more at the end.
pub(crate) struct Timer {
    _private: (),
}

impl Timer {
    fn start(name: &str, every: Duration) -> Arc<Timer> {
        static TIMERS: Mutex<Vec<(String, Weak<Timer>)>> = Mutex::new(Vec::new());
        let mut timers = TIMERS.lock().unwrap_or_else(|p| p.into_inner());
        timers.retain(|(_, w)| w.strong_count() > 0);
        if let Some(t) = timers.iter().find(|(n, _)| n == name).and_then(|(_, w)| w.upgrade()) {
            return t;
        }
        let timer = Arc::new(Timer { _private: () });
        let weak = Arc::downgrade(&timer);
        let queue = name.to_owned();
        let spawned = std::thread::Builder::new().name(format!("shmq-sync-{name}")).spawn(move || {
            let Ok(seg) = Segment::open(&queue, crate::segment::Access::ReadWrite) else { return };
            let Ok(Some(j)) = Journal::attach_untimed(&seg) else { return };
            loop {
                std::thread::sleep(every);
                let alive = weak.strong_count() > 0;
                let _ = j.flush(&seg);
                if !alive || seg.is_closed() {
                    return;
                }
            }
        });
        if spawned.is_ok() {
            timers.push((name.to_owned(), Arc::downgrade(&timer)));
        }
        timer
    }
}

/// The checkpoints a queue's members with explicit acks owe in this process: their acks,
/// nacks, rejects and deliveries change what a restart must know, but nothing else may
/// write a checkpoint after them (no send, no sync). A thread, started with the first such
/// member and ending with the last, writes one within [`CHECKPOINT_EVERY`] of a change,
/// and none while nothing changes.
///
/// [`CHECKPOINT_EVERY`]: super::backlog::checkpoint::CHECKPOINT_EVERY
pub(crate) struct Owed {
    owed: std::sync::atomic::AtomicBool,
}

impl Owed {
    /// The queue's (shared by this process's members of it).
    pub(crate) fn start(name: &str) -> Arc<Owed> {
        use super::backlog::checkpoint::{self, CHECKPOINT_EVERY};
        static OWED: Mutex<Vec<(String, Weak<Owed>)>> = Mutex::new(Vec::new());
        let mut all = OWED.lock().unwrap_or_else(|p| p.into_inner());
        all.retain(|(_, w)| w.strong_count() > 0);
        if let Some(o) = all.iter().find(|(n, _)| n == name).and_then(|(_, w)| w.upgrade()) {
            return o;
        }
        let owed = Arc::new(Owed { owed: std::sync::atomic::AtomicBool::new(false) });
        let weak = Arc::downgrade(&owed);
        let queue = name.to_owned();
        let spawned = std::thread::Builder::new().name(format!("shmq-ckpt-{name}")).spawn(move || {
            let Ok(seg) = Segment::open(&queue, crate::segment::Access::ReadWrite) else { return };
            let Some(d) = seg.config().durable.clone() else { return };
            loop {
                std::thread::sleep(CHECKPOINT_EVERY);
                // The last member's close writes its own checkpoint.
                let Some(o) = weak.upgrade() else { return };
                if seg.is_closed() {
                    return;
                }
                // Relaxed: a flag; the checkpoint reads the shared state it describes.
                if o.owed.swap(false, Ordering::Relaxed) && !restoring(&seg) {
                    // Another process writing one now wrote one as recent: owed still (ours
                    // may be newer).
                    if !matches!(checkpoint::write(&seg, &d.dir, crate::segment::now_unix_ns()), Ok(true)) {
                        o.owed.store(true, Ordering::Relaxed);
                    }
                }
            }
        });
        if spawned.is_ok() {
            all.push((name.to_owned(), Arc::downgrade(&owed)));
        }
        owed
    }

    /// Something a checkpoint records changed.
    #[inline]
    pub(crate) fn note(&self) {
        // Relaxed: a flag the thread reads within a checkpoint interval.
        self.owed.store(true, Ordering::Relaxed);
    }
}

impl Journal {
    /// [`attach`](Self::attach) without the timer (for the timer itself, and [`Journaler`](super::Journaler)).
    pub(crate) fn attach_untimed(seg: &Segment) -> Result<Option<Journal>> {
        let Some(d) = seg.config().durable.clone() else { return Ok(None) };
        let log = shared_log(&d.dir, d.identity)?;
        Ok(Some(Journal {
            log,
            fsync: d.fsync,
            capacity: seg.config().capacity,
            seg_size: d.seg_size,
            _timer: None,
            alongside: Arc::new(AtomicU64::new(u64::MAX)),
            last_sync: Arc::new(AtomicU64::new(0)),
            waited: Arc::new(AtomicU64::new(0)),
            last_wait: Arc::new(AtomicU64::new(0)),
        }))
    }
}

/// Keeps `record` in use (its sizes define the frames the journal copies).
const _: () = assert!(record::HEADER == 16);

/// Where readers must stop: a durable queue synced on every send shows only synced
/// records; any other queue everything committed (`u64::MAX`).
#[inline]
pub(crate) fn visible(seg: &Segment) -> u64 {
    let d = &seg.header().durable;
    // Relaxed: fixed at creation.
    if d.fsync.load(Ordering::Relaxed) != layout::FSYNC_ALWAYS || d.flags.load(Ordering::Relaxed) == 0 {
        return u64::MAX;
    }
    // SYNC POINT: Acquire pairs with the journal's Release raise of `durable` (after the
    // sync); the records below were committed before it copied them.
    d.durable.load(Ordering::Acquire)
}

//! Reading a durable queue's messages from its log files: the default consumer does when it
//! was detached (spilled: it fell a ring behind, or the queue was restored after a restart
//! and its position is below the ring's start). It reads the log in order up to what the
//! journal wrote, then rejoins the ring there. Also the cursor checkpoint that lets a
//! restored queue resume its consumers.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::log::Log;
use crate::log::format::{Decoded, Invalid, decode};

/// Bytes read from the log at a time.
const CHUNK: usize = 1 << 20;

/// What the consumer keeps to read the log.
pub(crate) struct Backlog {
    log: Arc<Log>,
    wrap: u64,
    seg_size: u64,
    /// Bytes of the log from position `at`.
    buf: Vec<u8>,
    at: u64,
    /// From here on the log must hold every record below the end it is read to (a
    /// consumer's or member's position never falls below what retention keeps, and only a
    /// restart leaves a gap, below the ring's start): a missing segment or a hole there is
    /// `Corrupt`, not skipped. `u64::MAX` for a [`Reader`](crate::Reader), which may start
    /// below what retention kept.
    strict_from: u64,
}

/// A message read from the log.
pub(crate) struct Frame {
    /// Its id.
    pub(crate) pos: u64,
    /// Where the message's bytes start in [`Backlog::bytes`] (after the prefix).
    pub(crate) offset: usize,
    /// Its length.
    pub(crate) len: u32,
    /// Where the next frame starts.
    pub(crate) next: u64,
}

/// What [`Backlog::next`] found.
pub(crate) enum Step {
    /// A message.
    Frame(Frame),
    /// Nothing more below the end: the reader stands at this position (a record boundary,
    /// past any gap left by a restart).
    End(u64),
}

impl Backlog {
    pub(crate) fn new(log: Arc<Log>, wrap: u64, seg_size: u64) -> Backlog {
        Backlog { log, wrap, seg_size, buf: Vec::new(), at: 0, strict_from: u64::MAX }
    }

    /// A reader for a queue's consumer or member: the log is whole from `base` (the ring's
    /// start) up (see `strict_from`).
    pub(crate) fn strict_from(mut self, base: u64) -> Backlog {
        self.strict_from = base;
        self
    }

    /// The bytes a [`Frame`] points into.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// The next message at or after `pos` below `end` (a record boundary below which the
    /// log is written: the journal's `written`, or `durable` when readers see only synced
    /// records), or where the reader stands when there is none.
    pub(crate) fn next(&mut self, mut pos: u64, end: u64) -> Result<Step> {
        let corrupt = |pos: u64, why: String| Error::Corrupt(format!("log at position {pos}: {why}"));
        while pos < end {
            let seg_end = (pos / self.seg_size + 1) * self.seg_size;
            // Read no further than `end`: past it the files hold zeros (preallocated) or
            // records still being written. (What the buffer holds was read below an earlier
            // `end`, which only grows.)
            let lim = seg_end.min(end);
            let hole = |pos: u64| corrupt(pos, "missing from the log files, below what the journal wrote".into());
            if !self.holds(pos, 8) && !self.fill(pos, lim)? {
                if pos >= self.strict_from {
                    return Err(hole(pos));
                }
                // Nothing on disk here (a segment removed, or a gap left by a restart): the
                // next segment on disk, or the end (where the ring takes over). One listing,
                // not a walk through every missing segment: `end` comes from shared memory.
                pos = match self.log.next_segment(pos / self.seg_size + 1)? {
                    Some(k) if k.saturating_mul(self.seg_size) < end => k * self.seg_size,
                    _ => end,
                };
                continue;
            }
            let off = (pos - self.at) as usize;
            match decode(&self.buf[off..], pos, self.wrap, seg_end) {
                Ok(Decoded::Message { payload, size, .. }) => {
                    let next = pos + size;
                    let start = payload.as_ptr() as usize - self.buf.as_ptr() as usize;
                    return Ok(Step::Frame(Frame { pos, offset: start, len: payload.len() as u32, next }));
                }
                Ok(d) => pos = d.next(pos),
                Err(Invalid::Short(n)) => {
                    if !self.fill(pos, lim)? || (self.buf.len() as u64) < n.min(lim - pos) {
                        if pos >= self.strict_from {
                            return Err(hole(pos));
                        }
                        // The log ends inside this frame: nothing more was written here.
                        pos = seg_end;
                    }
                }
                // The end of what was written in this segment: a padding frame covers a
                // restart's gap, so this is the end of the log.
                Err(Invalid::Bad(_)) if self.is_zero(off) && pos < self.strict_from => pos = seg_end,
                Err(Invalid::Bad(why)) => return Err(corrupt(pos, why)),
            }
        }
        Ok(Step::End(pos.min(end)))
    }

    fn holds(&self, pos: u64, n: u64) -> bool {
        pos >= self.at && pos + n <= self.at + self.buf.len() as u64
    }

    fn is_zero(&self, off: usize) -> bool {
        self.buf[off..].iter().take(8).all(|&b| b == 0)
    }

    /// Reads from `pos` up to a chunk, not past `lim`. `false` if nothing is there.
    fn fill(&mut self, pos: u64, lim: u64) -> Result<bool> {
        let want = (lim - pos).min(CHUNK.max(self.wrap as usize / 2 + 64) as u64) as usize;
        self.buf.resize(want, 0);
        let n = self.log.read(pos, &mut self.buf)?;
        self.buf.truncate(n);
        self.at = pos;
        Ok(n >= 8)
    }
}

/// The readers' positions a restored queue resumes from, and (explicit acks) what each
/// subscription had in flight. Written at most every [`CHECKPOINT_EVERY`](checkpoint::CHECKPOINT_EVERY) by a journaler
/// after a sync, and when a handle closes, by one process at a time (the segment's
/// checkpoint lock), alternately into `<dir>/CURSORS.0` and `<dir>/CURSORS.1` (each with a
/// checksum), so a crash while writing one leaves the other. A position saved is one the
/// reader had released (never ahead of it): after a restart, messages released since the
/// last checkpoint are delivered again. (A log directory of an earlier version has one file,
/// `CURSORS`, with two fixed slots: it is read when the new files are not there.)
pub(crate) mod checkpoint {
    use std::os::unix::fs::FileExt;
    use std::path::Path;
    use std::time::Duration;

    use crate::layout;
    use crate::ring::inflight;
    use crate::segment::Segment;
    use crate::sync::atomic::Ordering;

    /// How often a checkpoint is written at most (per process).
    pub(crate) const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);
    const MAGIC_V1: &[u8; 8] = b"SHMQCURS";
    const MAGIC: &[u8; 8] = b"SHMQCUR2";
    const SLOT: usize = 8192;
    const NAME: usize = 48;
    const ENTRY: usize = 1 + NAME + 8 + 8;
    /// Bytes before the body of a file: magic, sequence, body length, checksum.
    const HEAD: usize = 8 + 8 + 8 + 8;
    /// The largest body read back (a full table of every subscription fits well within).
    const MAX_BODY: u64 = 64 << 20;

    /// What a checkpoint holds.
    #[derive(Debug, Default, PartialEq, Eq)]
    pub(crate) struct Saved {
        /// The default consumer's position.
        pub(crate) default: u64,
        /// Named subscriptions.
        pub(crate) subs: Vec<SavedSub>,
    }

    /// A named subscription in a checkpoint.
    #[derive(Debug, Default, PartialEq, Eq)]
    pub(crate) struct SavedSub {
        pub(crate) name: String,
        /// Its lag limit (0: none).
        pub(crate) lag: u64,
        /// Where it resumes: its cursor (explicit acks), else the lowest of its cursor and
        /// what its members claimed.
        pub(crate) pos: u64,
        /// Explicit acks: its options and what was in flight.
        pub(crate) acks: Option<SavedAcks>,
    }

    /// What a subscription with explicit acks had in flight.
    #[derive(Debug, Default, PartialEq, Eq)]
    pub(crate) struct SavedAcks {
        pub(crate) ack_wait_ns: u64,
        pub(crate) max_in_flight: u32,
        pub(crate) max_deliveries: u32,
        /// Messages handed out and not acknowledged (or to be handed out again, or moved).
        pub(crate) entries: Vec<SavedEntry>,
        /// Spans members had claimed and not handed out yet: `[start, end)`.
        pub(crate) pending: Vec<(u64, u64)>,
    }

    /// One in-flight message in a checkpoint.
    #[derive(Debug, Default, PartialEq, Eq, Clone)]
    pub(crate) struct SavedEntry {
        pub(crate) pos: u64,
        pub(crate) end: u64,
        pub(crate) deliveries: u32,
        /// To be moved to the dead-letter queue.
        pub(crate) doomed: bool,
        pub(crate) reason: Vec<u8>,
    }

    /// Reads what `seg` says now: for each subscription its cursor, then its members'
    /// claims, then its in-flight entries, in the order a message passes through them, so
    /// that a message moving on meanwhile is seen at least once.
    pub(crate) fn snapshot(seg: &Segment) -> Saved {
        // Relaxed, all: a position at or below what the consumer released is all we need;
        // a stale one only means more redelivery.
        let default = seg.header().consumer.head.load(Ordering::Relaxed) & !crate::ring::cursors::FLAGS;
        let mut subs = Vec::new();
        // Acquire: pairs with the Release that activated an entry: its name is visible.
        let active = seg.header().subs.active.load(Ordering::Acquire);
        for i in crate::ring::cursors::bits(active).filter(|&i| (1..layout::SUBSCRIPTIONS).contains(&i)) {
            let Some(name) = crate::queue::subscription::entry_name(seg, i) else { continue };
            let lag = seg.sub(i).meta.lag_limit.load(Ordering::Relaxed);
            let w = seg.cursor(i).load(Ordering::Relaxed);
            // A locked cursor stands at the end of the claim it is locked with.
            let cursor = crate::ring::cursors::position(seg, w);
            let explicit = crate::queue::acks::explicit(seg, i);
            let mut pos = cursor;
            let mut pending = Vec::new();
            let members = seg.sub(i).cursor.members.load(Ordering::Relaxed);
            for j in crate::ring::cursors::bits(members).filter(|&j| j < layout::MEMBERS) {
                let m = seg.member(j);
                // A claim counts once it took its span: held, or claiming with the cursor
                // locked with it. One still claiming otherwise is at or above the cursor (not
                // taken yet), or lost the race for its span to another member: the span is
                // not its to deliver again.
                let cw = m.claim_state.load(Ordering::Relaxed);
                let taken = match crate::ring::cursors::claim_state(cw) {
                    layout::CLAIM_HELD => true,
                    layout::CLAIM_CLAIMING => crate::ring::cursors::locked(w)
                        .is_some_and(|(l, seq, _)| l == j && seq == (cw >> 2) & layout::LOCK_SEQ_MASK),
                    _ => false,
                };
                if !taken {
                    continue;
                }
                let (p, e) = (m.claim_pos.load(Ordering::Relaxed), m.claim_end.load(Ordering::Relaxed));
                if !crate::ring::plausible(p) || !crate::ring::plausible(e) || p >= e {
                    continue;
                }
                if explicit {
                    // What was entered in the table is there; the rest was never handed out.
                    let entered = m.entered.load(Ordering::Relaxed);
                    let start = if entered > p && entered <= e { entered } else { p };
                    if start < e && start < cursor {
                        pending.push((start, e));
                    }
                } else {
                    // Spans claimed and not released are delivered again after a restart:
                    // the position saved is the lowest of them.
                    pos = pos.min(p);
                }
            }
            let acks = explicit.then(|| {
                let (_, wait, max_in_flight, max_deliveries) = crate::queue::subscription::ack_options(seg, i);
                let t = seg.acks(i).expect("explicit: a durable queue");
                let mut entries = Vec::new();
                for e in t.entries {
                    let w = inflight::load(e);
                    let doomed = match inflight::state(w) {
                        layout::IF_ACQUIRED | layout::IF_RELEASED | layout::IF_RETAKING => false,
                        layout::IF_MOVING | layout::IF_DOOMED => true,
                        _ => continue,
                    };
                    let f = inflight::fields(e);
                    if crate::ring::plausible(f.pos) && f.pos < f.end {
                        entries.push(SavedEntry {
                            pos: f.pos,
                            end: f.end,
                            deliveries: f.deliveries,
                            doomed,
                            reason: inflight::reason(e),
                        });
                    }
                }
                SavedAcks { ack_wait_ns: wait.as_nanos() as u64, max_in_flight, max_deliveries, entries, pending }
            });
            subs.push(SavedSub { name, lag, pos, acks });
        }
        Saved { default, subs }
    }

    fn encode(s: &Saved) -> Vec<u8> {
        let mut b = Vec::with_capacity(4096);
        b.extend_from_slice(&s.default.to_le_bytes());
        b.extend_from_slice(&(s.subs.len() as u32).to_le_bytes());
        for sub in &s.subs {
            let name = &sub.name.as_bytes()[..sub.name.len().min(NAME)];
            b.push(name.len() as u8);
            b.extend_from_slice(name);
            b.extend_from_slice(&sub.lag.to_le_bytes());
            b.extend_from_slice(&sub.pos.to_le_bytes());
            let Some(a) = &sub.acks else {
                b.push(0);
                continue;
            };
            b.push(1);
            b.extend_from_slice(&a.ack_wait_ns.to_le_bytes());
            b.extend_from_slice(&a.max_in_flight.to_le_bytes());
            b.extend_from_slice(&a.max_deliveries.to_le_bytes());
            b.extend_from_slice(&(a.entries.len() as u32).to_le_bytes());
            for e in &a.entries {
                b.extend_from_slice(&e.pos.to_le_bytes());
                b.extend_from_slice(&e.end.to_le_bytes());
                b.extend_from_slice(&e.deliveries.to_le_bytes());
                b.push(u8::from(e.doomed));
                let r = &e.reason[..e.reason.len().min(255)];
                b.push(r.len() as u8);
                b.extend_from_slice(r);
            }
            b.extend_from_slice(&(a.pending.len() as u32).to_le_bytes());
            for (p, e) in &a.pending {
                b.extend_from_slice(&p.to_le_bytes());
                b.extend_from_slice(&e.to_le_bytes());
            }
        }
        b
    }

    /// Reads what [`encode`] wrote; `None` if it does not parse (every length is checked
    /// against what is left).
    fn decode(b: &[u8]) -> Option<Saved> {
        struct R<'a>(&'a [u8]);
        impl R<'_> {
            fn take(&mut self, n: usize) -> Option<&[u8]> {
                if self.0.len() < n {
                    return None;
                }
                let (h, t) = self.0.split_at(n);
                self.0 = t;
                Some(h)
            }
            fn u8(&mut self) -> Option<u8> {
                self.take(1).map(|b| b[0])
            }
            fn u32(&mut self) -> Option<u32> {
                self.take(4).map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
            }
            fn u64(&mut self) -> Option<u64> {
                self.take(8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
            }
        }
        let mut r = R(b);
        let default = r.u64()?;
        let n = r.u32()? as usize;
        let mut subs = Vec::with_capacity(n.min(layout::SUBSCRIPTIONS));
        for _ in 0..n {
            let len = (r.u8()? as usize).min(NAME);
            let name = String::from_utf8(r.take(len)?.to_vec()).ok()?;
            let (lag, pos) = (r.u64()?, r.u64()?);
            let acks = match r.u8()? {
                0 => None,
                1 => {
                    let (ack_wait_ns, max_in_flight, max_deliveries) = (r.u64()?, r.u32()?, r.u32()?);
                    let ne = r.u32()? as usize;
                    let mut entries = Vec::with_capacity(ne.min(layout::IN_FLIGHT_ENTRIES));
                    for _ in 0..ne {
                        let (pos, end, deliveries) = (r.u64()?, r.u64()?, r.u32()?);
                        let doomed = r.u8()? != 0;
                        let rl = r.u8()? as usize;
                        let reason = r.take(rl)?.to_vec();
                        entries.push(SavedEntry { pos, end, deliveries, doomed, reason });
                    }
                    let np = r.u32()? as usize;
                    let mut pending = Vec::with_capacity(np.min(layout::MEMBERS));
                    for _ in 0..np {
                        pending.push((r.u64()?, r.u64()?));
                    }
                    Some(SavedAcks { ack_wait_ns, max_in_flight, max_deliveries, entries, pending })
                }
                _ => return None,
            };
            subs.push(SavedSub { name, lag, pos, acks });
        }
        Some(Saved { default, subs })
    }

    /// A checkpoint file: head (magic, `seq`, body length, checksum) and body.
    fn frame(body: &[u8], seq: u64) -> Vec<u8> {
        let mut b = Vec::with_capacity(HEAD + body.len());
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&seq.to_le_bytes());
        b.extend_from_slice(&(body.len() as u64).to_le_bytes());
        b.extend_from_slice(&u64::from(crc32c::crc32c(body)).to_le_bytes());
        b.extend_from_slice(body);
        b
    }

    /// A checkpoint file's sequence number and contents, if it is whole.
    fn unframe(b: &[u8]) -> Option<(u64, Saved)> {
        if b.len() < HEAD || &b[..8] != MAGIC {
            return None;
        }
        let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"));
        let (seq, len, crc) = (u64_at(8), u64_at(16), u64_at(24));
        if len > MAX_BODY || b.len() as u64 != HEAD as u64 + len {
            return None;
        }
        let body = &b[HEAD..];
        if u64::from(crc32c::crc32c(body)) != crc {
            return None;
        }
        Some((seq, decode(body)?))
    }

    /// Writes a checkpoint of `seg` into `dir` (the file chosen by `seq`), synced, if no
    /// other process is writing one now (then `Ok(false)`).
    pub(crate) fn write(seg: &Segment, dir: &Path, seq: u64) -> std::io::Result<bool> {
        use std::os::unix::fs::OpenOptionsExt;
        if !seg.try_lock_checkpoint() {
            return Ok(false);
        }
        let r = (|| {
            // Not through a symbolic link, and only a file of ours that no other name
            // shares: a member of the log directory's group (its mode may let one write
            // there) must not point our truncating write at another file of ours.
            let f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(dir.join(format!("CURSORS.{}", seq % 2)))?;
            let st = f.metadata()?;
            {
                use std::os::unix::fs::MetadataExt;
                if !st.is_file() || st.uid() != rustix::process::geteuid().as_raw() || st.nlink() != 1 {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::PermissionDenied,
                        "checkpoint file is not a regular file of ours with one name",
                    ));
                }
            }
            let b = frame(&encode(&snapshot(seg)), seq);
            f.set_len(0)?;
            f.write_all_at(&b, 0)?;
            f.sync_data()
        })();
        seg.unlock_checkpoint();
        r.map(|()| true)
    }

    /// The newest intact checkpoint in `dir`, if any.
    pub(crate) fn read(dir: &Path) -> Option<Saved> {
        let read = |k: u32| {
            let f = {
                use std::os::unix::fs::OpenOptionsExt;
                std::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                    .open(dir.join(format!("CURSORS.{k}")))
                    .ok()?
            };
            let len = f.metadata().ok()?.len();
            if len > MAX_BODY + HEAD as u64 {
                return None;
            }
            let mut b = vec![0u8; len as usize];
            f.read_exact_at(&mut b, 0).ok()?;
            unframe(&b)
        };
        match (read(0), read(1)) {
            (Some(a), Some(c)) => Some(if a.0 >= c.0 { a.1 } else { c.1 }),
            (Some(x), None) | (None, Some(x)) => Some(x.1),
            (None, None) => read_v1(dir),
        }
    }

    /// A checkpoint of an earlier version (`<dir>/CURSORS`, two fixed slots).
    fn read_v1(dir: &Path) -> Option<Saved> {
        let b = std::fs::read(dir.join("CURSORS")).ok()?;
        let a = b.get(..SLOT).and_then(decode_v1);
        let c = b.get(SLOT..2 * SLOT).and_then(decode_v1);
        match (a, c) {
            (Some(a), Some(c)) => Some(if a.0 >= c.0 { a.1 } else { c.1 }),
            (Some(x), None) | (None, Some(x)) => Some(x.1),
            (None, None) => None,
        }
    }

    fn decode_v1(b: &[u8]) -> Option<(u64, Saved)> {
        if b.len() < SLOT || &b[..8] != MAGIC_V1 {
            return None;
        }
        let crc = u32::from_le_bytes(b[SLOT - 8..SLOT - 4].try_into().ok()?);
        if crc32c::crc32c(&b[..SLOT - 8]) != crc {
            return None;
        }
        let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"));
        let seq = u64_at(8);
        let default = u64_at(16);
        let n = (u32::from_le_bytes(b[24..28].try_into().ok()?) as usize).min((SLOT - 40) / ENTRY);
        let mut subs = Vec::new();
        for k in 0..n {
            let o = 32 + k * ENTRY;
            let len = (b[o] as usize).min(NAME);
            let name = String::from_utf8(b[o + 1..o + 1 + len].to_vec()).ok()?;
            subs.push(SavedSub { name, lag: u64_at(o + 1 + NAME), pos: u64_at(o + 9 + NAME), acks: None });
        }
        Some((seq, Saved { default, subs }))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn sample() -> Saved {
            Saved {
                default: 4096,
                subs: vec![
                    SavedSub { name: "billing".into(), lag: 0, pos: 8192, acks: None },
                    SavedSub {
                        name: "work".into(),
                        lag: 0,
                        pos: 16,
                        acks: Some(SavedAcks {
                            ack_wait_ns: 30_000_000_000,
                            max_in_flight: 8,
                            max_deliveries: 5,
                            entries: vec![SavedEntry {
                                pos: 0,
                                end: 8,
                                deliveries: 2,
                                doomed: true,
                                reason: b"x".to_vec(),
                            }],
                            pending: vec![(8, 16)],
                        }),
                    },
                ],
            }
        }

        #[test]
        fn a_checkpoint_round_trips_and_a_damaged_or_cut_one_is_ignored() {
            let s = sample();
            let b = frame(&encode(&s), 7);
            assert_eq!(unframe(&b), Some((7, sample())));
            let mut bad = b.clone();
            bad[HEAD + 3] ^= 1;
            assert_eq!(unframe(&bad), None);
            assert_eq!(unframe(&b[..b.len() - 1]), None);
            // Every cut of the body fails to parse rather than panicking.
            let body = encode(&s);
            for n in 0..body.len() {
                assert!(decode(&body[..n]).is_none());
            }
        }
    }
}

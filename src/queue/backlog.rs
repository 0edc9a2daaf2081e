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

/// The consumers' positions a restored queue resumes from: `<dir>/CURSORS`, two slots
/// written alternately (each with a checksum), so a crash while writing one leaves the
/// other. Written at most every [`CHECKPOINT_EVERY`] by a journaler after a sync, and when a
/// handle closes. A position saved is one the consumer had released (never ahead of it):
/// after a restart, messages released since the last checkpoint are delivered again.
pub(crate) mod checkpoint {
    use std::os::unix::fs::FileExt;
    use std::path::Path;
    use std::time::Duration;

    use crate::layout;
    use crate::segment::Segment;
    use crate::sync::atomic::Ordering;

    /// How often a checkpoint is written at most (per process).
    pub(crate) const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);
    const MAGIC: &[u8; 8] = b"SHMQCURS";
    const SLOT: usize = 8192;
    const NAME: usize = 48;
    const ENTRY: usize = 1 + NAME + 8 + 8;

    /// What a checkpoint holds.
    #[derive(Debug, Default, PartialEq, Eq)]
    pub(crate) struct Saved {
        /// The default consumer's position.
        pub(crate) default: u64,
        /// Named subscriptions: name, lag limit (0: none), position.
        pub(crate) subs: Vec<(String, u64, u64)>,
    }

    /// Reads what `seg` says now.
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
            let mut pos = seg.cursor(i).load(Ordering::Relaxed) & !crate::ring::cursors::FLAGS;
            // Spans its members claimed and have not released are delivered again after a
            // restart: the position saved is the lowest of them.
            let members = seg.sub(i).cursor.members.load(Ordering::Relaxed);
            for j in crate::ring::cursors::bits(members).filter(|&j| j < layout::MEMBERS) {
                let m = seg.member(j);
                if m.claim_state.load(Ordering::Relaxed) != layout::CLAIM_NONE {
                    let p = m.claim_pos.load(Ordering::Relaxed);
                    if crate::ring::plausible(p) && p < pos {
                        pos = p;
                    }
                }
            }
            subs.push((name, lag, pos));
        }
        Saved { default, subs }
    }

    fn encode(s: &Saved, seq: u64) -> Vec<u8> {
        let mut b = vec![0u8; SLOT];
        b[..8].copy_from_slice(MAGIC);
        b[8..16].copy_from_slice(&seq.to_le_bytes());
        b[16..24].copy_from_slice(&s.default.to_le_bytes());
        let n = s.subs.len().min((SLOT - 32 - 8) / ENTRY);
        b[24..28].copy_from_slice(&(n as u32).to_le_bytes());
        for (k, (name, lag, pos)) in s.subs.iter().take(n).enumerate() {
            let o = 32 + k * ENTRY;
            let name = &name.as_bytes()[..name.len().min(NAME)];
            b[o] = name.len() as u8;
            b[o + 1..o + 1 + name.len()].copy_from_slice(name);
            b[o + 1 + NAME..o + 9 + NAME].copy_from_slice(&lag.to_le_bytes());
            b[o + 9 + NAME..o + 17 + NAME].copy_from_slice(&pos.to_le_bytes());
        }
        let crc = crc32c::crc32c(&b[..SLOT - 8]);
        b[SLOT - 8..SLOT - 4].copy_from_slice(&crc.to_le_bytes());
        b
    }

    fn decode(b: &[u8]) -> Option<(u64, Saved)> {
        if b.len() < SLOT || &b[..8] != MAGIC {
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
            subs.push((name, u64_at(o + 1 + NAME), u64_at(o + 9 + NAME)));
        }
        Some((seq, Saved { default, subs }))
    }

    /// Writes a checkpoint of `seg` into `dir` (its slot chosen by `seq`), synced.
    pub(crate) fn write(seg: &Segment, dir: &Path, seq: u64) -> std::io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(dir.join("CURSORS"))?;
        let b = encode(&snapshot(seg), seq);
        f.write_all_at(&b, (seq % 2) * SLOT as u64)?;
        f.sync_data()
    }

    /// The newest intact checkpoint in `dir`, if any.
    pub(crate) fn read(dir: &Path) -> Option<Saved> {
        let b = std::fs::read(dir.join("CURSORS")).ok()?;
        let a = b.get(..SLOT).and_then(decode);
        let c = b.get(SLOT..2 * SLOT).and_then(decode);
        match (a, c) {
            (Some(a), Some(c)) => Some(if a.0 >= c.0 { a.1 } else { c.1 }),
            (Some(x), None) | (None, Some(x)) => Some(x.1),
            (None, None) => None,
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn a_checkpoint_round_trips_and_a_damaged_slot_is_ignored() {
            let s = Saved { default: 4096, subs: vec![("billing".into(), 0, 8192), ("x".into(), 1 << 20, 16)] };
            let b = encode(&s, 7);
            assert_eq!(decode(&b), Some((7, s)));
            let mut bad = b.clone();
            bad[40] ^= 1;
            assert_eq!(decode(&bad), None);
        }
    }
}

//! Tests of the log module, in-process, on [`FaultFs`] (power cuts, faults, op order) and
//! on the real file system (permissions, speed).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::format::{encode_message, encode_pad_end, encode_padding, message_size};
use super::fs::{FaultFs, Fs, LockKind, Op, RealFs, Rng};
use super::*;

const ID: [u8; 16] = *b"queue-identity-1";

/// A message as written: (id, ts, payload).
type Msg = (u64, u64, Vec<u8>);

fn dir() -> PathBuf {
    PathBuf::from("/log")
}

fn params(seg: u64, wrap: u64) -> LogParams {
    LogParams::new(ID, seg, wrap)
}

/// A stream of frames as a ring would lay them out: messages of random sizes, now and then
/// a padding frame, a pad-end when the next frame would cross a multiple of `wrap`.
struct Stream {
    wrap: u64,
    pos: u64,
    rng: Rng,
    /// (id, ts, payload) of every message, in order.
    msgs: Vec<Msg>,
}

impl Stream {
    fn new(seed: u64, wrap: u64) -> Stream {
        Stream { wrap, pos: 0, rng: Rng::new(seed), msgs: Vec::new() }
    }

    /// The next few frames as one buffer starting at the returned position.
    fn batch(&mut self, frames: usize, max_payload: u64) -> (u64, Vec<u8>) {
        let start = self.pos;
        let mut out = Vec::new();
        for _ in 0..frames {
            let room = (self.pos / self.wrap + 1) * self.wrap - self.pos;
            let plen = self.rng.below(max_payload + 1);
            let pad_extra = if self.rng.one_in(5) { 8 * self.rng.below(3) } else { 0 };
            let size = message_size(plen) + pad_extra;
            if self.rng.one_in(10) && room >= 24 {
                let psize = 16 + 8 * self.rng.below(2);
                out.extend(encode_padding(self.pos, psize));
                self.pos += psize;
                continue;
            }
            if size > room {
                out.extend(encode_pad_end(self.pos));
                // The ring's bytes up to the wrap: anything; here zero.
                out.resize(out.len() + (room - 8) as usize, 0);
                self.pos += room;
                continue;
            }
            let ts = self.rng.next_u64() >> 1;
            let payload: Vec<u8> = (0..plen).map(|_| self.rng.next_u64() as u8).collect();
            out.extend(encode_message(self.pos, ts, &payload, size));
            self.msgs.push((self.pos, ts, payload));
            self.pos += size;
        }
        (start, out)
    }
}

/// Writes frames of up to 200 bytes, one at a time, until the stream reaches `end`.
fn write_until(log: &Log, s: &mut Stream, end: u64) {
    while s.pos < end {
        let (pos, bytes) = s.batch(1, 200);
        log.write(pos, &bytes).unwrap();
    }
}

fn all_frames(log: &Log, from: u64, to: u64) -> Vec<Msg> {
    log.frames(from, to).map(|f| f.map(|f| (f.id, f.ts, f.payload))).collect::<Result<Vec<_>>>().unwrap()
}

#[test]
fn what_is_written_reads_back_across_segments() {
    let fs = FaultFs::new();
    let log = Log::create(Arc::new(fs.clone()), &dir(), params(4096, 1024)).unwrap();
    let mut s = Stream::new(1, 1024);
    for _ in 0..60 {
        let (pos, bytes) = s.batch(5, 200);
        log.write(pos, &bytes).unwrap();
    }
    log.sync(0, s.pos, 0).unwrap();
    assert!(s.pos > 3 * 4096, "the stream spans several segments");
    assert_eq!(all_frames(&log, 0, s.pos), s.msgs);
    let mut raw = vec![0u8; 64];
    assert_eq!(log.read(0, &mut raw).unwrap(), 64);
    assert_eq!(log.read(1 << 40, &mut raw).unwrap(), 0, "a missing segment reads as nothing");
    drop(log);
    let (log, rec) = Log::recover(Arc::new(fs.clone()), &dir()).unwrap();
    assert_eq!((rec.start, rec.end, rec.dropped), (0, s.pos, 0));
    assert_eq!(all_frames(&log, rec.start, rec.end), s.msgs);
    let st = log.stats().unwrap();
    assert_eq!(st.segments, s.pos.div_ceil(4096));
    assert_eq!(st.bytes, st.segments * (4096 + 4096));
}

/// A cold scan (what recovery and `shmq log verify` do) keeps the read-ahead advice in
/// front of it once it has met the disk: of the 1 MiB reads of a 6 MiB segment, only the
/// first finds the page cache empty. With advice given only at reads that missed, every
/// third read missed, and the disk idled while the two before it were checked.
#[test]
fn a_cold_scan_keeps_its_read_ahead_in_front_of_it() {
    let fs = FaultFs::new();
    let log = Log::create(Arc::new(fs.clone()), &dir(), params(8 << 20, 1 << 20)).unwrap();
    let mut s = Stream::new(3, 1 << 20);
    while s.pos < 6 << 20 {
        let (pos, bytes) = s.batch(64, 1000);
        log.write(pos, &bytes).unwrap();
    }
    log.sync(0, s.pos, 0).unwrap();
    drop(log);
    fs.cold_page_cache();
    let (_, rec) = Log::inspect(Arc::new(fs.clone()), &dir()).unwrap();
    assert_eq!((rec.end, rec.dropped), (s.pos, 0), "the whole stream, read back");
    assert_eq!(fs.cache_misses(), 1, "reads that found the page cache short of what they asked for");
}

/// A log (segments of 4096) written into half of segment 0, with segment 1 made ahead.
fn made_ahead(seed: u64) -> (FaultFs, Log, Stream) {
    let fs = FaultFs::new();
    let log = Log::create(Arc::new(fs.clone()), &dir(), params(4096, 1024)).unwrap();
    let mut s = Stream::new(seed, 1024);
    write_until(&log, &mut s, 2048);
    log.prepare(1).unwrap();
    (fs, log, s)
}

/// A segment made ahead of the writes (`prepare_ahead`'s work) is the one they then use;
/// made while the writes were still in the segment before, and followed by a power cut, it
/// is an empty segment beyond the end: a clean tail, which recovery leaves as it is.
#[test]
fn a_segment_made_ahead_is_written_into_and_left_empty_is_a_clean_tail() {
    let (fs, log, mut s) = made_ahead(11);
    let s1 = dir().join("0000000000000001.seg");
    assert!(fs.read_file(&s1).is_some(), "segment 1 made ahead");
    log.sync(0, s.pos, 0).unwrap();
    let before = s.pos;
    for seed in 0..200 {
        let (_, rec) = Log::recover(Arc::new(fs.crash(seed)), &dir()).unwrap();
        assert_eq!((rec.end, rec.synced_through, rec.dropped), (before, 0, 0), "seed {seed}");
    }
    let crashed = fs.crash(7);
    let (_, rec) = Log::recover(Arc::new(crashed.clone()), &dir()).unwrap();
    assert_eq!((rec.end, rec.dropped, rec.tail_clean), (before, 0, true));
    assert!(crashed.read_file(&s1).is_some(), "recovery leaves it");
    // The live log goes on into the segment it made ahead.
    write_until(&log, &mut s, 4096 + 1024);
    log.sync(0, s.pos, before).unwrap();
    assert_eq!(all_frames(&log, 0, s.pos), s.msgs);
    drop(log);
    let (_, rec) = Log::recover(Arc::new(fs.clone()), &dir()).unwrap();
    assert_eq!((rec.end, rec.dropped), (s.pos, 0));
}

/// A restart whose gap passes over a segment made ahead and never written removes it with
/// its gap frame: left there, retention could delete the segment holding the gap frame and
/// keep it, and the next recovery would start at its zeros (damage below the mark).
#[test]
fn a_restart_removes_a_segment_made_ahead_inside_its_gap() {
    let (fs, log, mut s) = made_ahead(13);
    log.sync(0, s.pos, 0).unwrap();
    drop(log);
    let (log, rec) = Log::recover(Arc::new(fs.clone()), &dir()).unwrap();
    assert!(rec.tail_clean);
    log.bridge(rec.end, 2 * 4096).unwrap();
    let s1 = dir().join("0000000000000001.seg");
    assert!(fs.read_file(&s1).is_none(), "the empty segment inside the gap is removed");
    // The restored stream goes on in segment 2, retention removes segment 0 (and with it
    // the gap frame), and a recovery still finds the log.
    let old = s.msgs.len();
    s.pos = 2 * 4096;
    write_until(&log, &mut s, 2 * 4096 + 1024);
    log.sync(2 * 4096, s.pos, 0).unwrap();
    log.sync(2 * 4096, s.pos, s.pos).unwrap();
    assert_eq!(log.delete_before(2 * 4096 + 8).unwrap(), 2 * 4096);
    drop(log);
    let (log, rec) = Log::recover(Arc::new(fs.clone()), &dir()).unwrap();
    assert_eq!((rec.start, rec.end, rec.dropped), (2 * 4096, s.pos, 0));
    assert_eq!(all_frames(&log, rec.start, rec.end), s.msgs[old..]);
}

/// A write that passes the middle of its segment has the next one made, and the ceiling
/// raised, in the background, before any write reaches that segment; one that does not
/// pass it (or starts past it) does not.
#[test]
fn passing_the_middle_of_a_segment_makes_the_next_one_in_the_background() {
    let t = TempDir::new("ahead");
    let d = t.0.join("q");
    let log = Arc::new(Log::create(Arc::new(RealFs), &d, params(4096, 1024)).unwrap());
    let seg = |k: u64| d.join(format!("{k:016x}.seg"));
    let mut s = Stream::new(12, 1024);
    let mut last = 0;
    while s.pos < 2048 {
        let (pos, bytes) = s.batch(1, 200);
        log.write(pos, &bytes).unwrap();
        log.prepare_ahead(pos, s.pos, 3 * 4096);
        last = pos;
    }
    assert!(last < 2048, "one write crossed the middle");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !seg(1).exists() || log.ceiling() < 3 * 4096 {
        assert!(std::time::Instant::now() < deadline, "segment 1 was not made ahead, or the ceiling not raised");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    // Past the middle already, or short of it: nothing is made.
    log.prepare_ahead(4096 + 2100, 4096 + 2200, 4 * 4096);
    log.prepare_ahead(4096, 4096 + 100, 4 * 4096);
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert!(!seg(2).exists(), "no segment 2 without a write passing the middle of segment 1");
    assert_eq!(log.ceiling(), 3 * 4096);
    drop(log);
    let (_, rec) = Log::recover(Arc::new(RealFs), &d).unwrap();
    assert_eq!(rec.ceiling, 3 * 4096, "the ceiling raised ahead is on disk");
}

/// A ceiling this process has synced is not synced again; one only read is.
#[test]
fn a_ceiling_already_synced_by_this_process_is_not_synced_again() {
    let fs = FaultFs::new();
    let log = Log::create(Arc::new(fs.clone()), &dir(), params(4096, 1024)).unwrap();
    log.set_ceiling(8 * 4096).unwrap();
    fs.clear_ops();
    log.set_ceiling(8 * 4096).unwrap();
    log.set_ceiling(4 * 4096).unwrap();
    assert!(fs.ops().is_empty(), "{:#?}", fs.ops());
    drop(log);
    // Attached, the ceiling is only read: the first raise syncs.
    let log = Log::attach(Arc::new(fs.clone()), &dir(), ID).unwrap();
    fs.clear_ops();
    log.set_ceiling(8 * 4096).unwrap();
    let meta = dir().join(META_FILE);
    assert!(fs.ops().contains(&Op::Fdatasync(meta)), "{:#?}", fs.ops());
}

// ---------------------------------------------------------------------------------------
// Power cuts

#[derive(Clone, Copy, Debug)]
enum Policy {
    Always,
    Never,
    Interval(u64),
}

/// Counts over all seeds, to show the crashes exercised what they should.
#[derive(Default, Debug)]
struct Seen {
    failed_syncs: u64,
    lost_unsynced: u64,
    kept_unsynced: u64,
    dropped: u64,
    cut: u64,
}

/// One seed: a random workload, a power cut, a recovery, and the checks.
fn power_cut(seed: u64, seen: &mut Seen) {
    let mut rng = Rng::new(seed.wrapping_mul(0x2545_f491_4f6c_dd1d));
    let wrap = 256 << rng.below(3);
    let seg = wrap * (1 + rng.below(3));
    let policy = match seed % 3 {
        0 => Policy::Always,
        1 => Policy::Never,
        _ => Policy::Interval(2 + rng.below(3)),
    };
    let fs = FaultFs::new();
    let log = Log::create(Arc::new(fs.clone()), &dir(), params(seg, wrap)).unwrap();
    let mut s = Stream::new(seed, wrap);
    let mut durable = 0; // a sync of [.., durable) completed
    let mut last_mark = 0; // the mark the last completed sync wrote
    let mut ceiling = 0;
    let mut ceiling_tried = 0; // a set_ceiling that failed: it may or may not have landed
    // One seed in four: an fdatasync fails (EIO) partway, and the power cut follows there,
    // in the middle of a segment creation, a sync or a META update.
    let fail_at = rng.one_in(4).then(|| 1 + rng.below(8));
    if let Some(n) = fail_at {
        fs.fail_sync(n);
    }
    let ops = 1 + rng.below(24);
    let sticky = |r: Result<()>| match r {
        Ok(()) => Ok(()),
        Err(Error::Log(m)) => Err(m),
        Err(e) => panic!("seed {seed}: {e}"),
    };
    'work: for i in 0..ops {
        let (pos, bytes) = s.batch(1 + rng.below(4) as usize, 120);
        let written = if bytes.len() > 16 && rng.one_in(3) {
            // Two writers finishing out of order (8-aligned split).
            let cut = 8 * (1 + rng.below(bytes.len() as u64 / 8 - 1)) as usize;
            sticky(log.write(pos + cut as u64, &bytes[cut..])).and_then(|()| sticky(log.write(pos, &bytes[..cut])))
        } else {
            sticky(log.write(pos, &bytes))
        };
        if written.is_err() {
            break 'work;
        }
        let sync = match policy {
            Policy::Always => true,
            Policy::Never => false,
            Policy::Interval(k) => (i + 1) % k == 0,
        };
        if sync {
            if sticky(log.sync(durable, s.pos, durable)).is_err() {
                break 'work;
            }
            last_mark = durable;
            durable = s.pos;
        }
        if rng.one_in(8) {
            let c = ceiling + 1 + rng.below(1 << 20);
            if sticky(log.set_ceiling(c)).is_err() {
                ceiling_tried = c;
                break 'work;
            }
            ceiling = c;
        }
    }
    if fail_at.is_some() {
        seen.failed_syncs += u64::from(log.write(s.pos, &[0; 8]).is_err());
    }
    let crashed = fs.crash(seed);
    drop(log);
    let ctx = format!("seed {seed} ({policy:?}, wrap {wrap}, seg {seg}, written {}, durable {durable})", s.pos);
    let (log, rec) = Log::recover(Arc::new(crashed.clone()), &dir()).unwrap_or_else(|e| panic!("{ctx}: {e}"));
    assert!(rec.end >= durable, "{ctx}: synced data lost: end {}", rec.end);
    assert!(rec.end <= s.pos, "{ctx}: end {} beyond what was written", rec.end);
    assert!(
        last_mark <= rec.synced_through && rec.synced_through <= durable,
        "{ctx}: mark {} outside [{last_mark}, {durable}]",
        rec.synced_through
    );
    assert!(rec.synced_through <= rec.end, "{ctx}");
    assert!(
        rec.ceiling == ceiling || (ceiling_tried != 0 && rec.ceiling == ceiling_tried),
        "{ctx}: ceiling {} (set {ceiling}, tried {ceiling_tried}): it is synced before set_ceiling returns",
        rec.ceiling
    );
    let got = all_frames(&log, rec.start, rec.end);
    assert!(got.len() <= s.msgs.len() && got[..] == s.msgs[..got.len()], "{ctx}: not a prefix of what was written");
    let synced = s.msgs.iter().filter(|m| m.0 < durable).count();
    assert!(got.len() >= synced, "{ctx}: {} messages back, {synced} were synced", got.len());
    assert!(rec.dropped <= (s.msgs.len() - got.len()) as u64, "{ctx}: dropped {} invented", rec.dropped);
    if rec.end < s.pos {
        seen.lost_unsynced += 1;
    }
    if rec.end > durable {
        seen.kept_unsynced += 1;
    }
    seen.dropped += rec.dropped;
    // The recovery's own changes are durable: another power cut now changes nothing, and the
    // log goes on from `end`.
    drop(log);
    let again = crashed.crash(seed ^ 1);
    let (log, rec2) = Log::recover(Arc::new(again.clone()), &dir()).unwrap();
    assert_eq!((rec2.end, rec2.dropped), (rec.end, 0), "{ctx}: the cut was not durable");
    if rec.dropped > 0 || rec.end < s.pos {
        seen.cut += 1;
    }
    let mut more = Stream::new(seed ^ 2, wrap);
    more.pos = rec.end;
    let (pos, bytes) = more.batch(3, 64);
    log.write(pos, &bytes).unwrap();
    log.sync(pos, more.pos, rec.end).unwrap();
    let mut want = got;
    want.extend(more.msgs);
    assert_eq!(all_frames(&log, 0, more.pos), want, "{ctx}: appending after recovery");
}

#[test]
fn a_power_cut_keeps_everything_synced_in_order_and_invents_nothing() {
    let seeds: u64 = std::env::var("SHMQ_POWERCUT_SEEDS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let mut seen = Seen::default();
    for seed in 0..seeds {
        power_cut(seed, &mut seen);
    }
    eprintln!("power cuts: {seeds} seeds, {seen:?}");
    if seeds >= 300 {
        // The simulation must actually lose and keep unsynced data, and find frames to drop.
        assert!(
            seen.lost_unsynced > 0
                && seen.kept_unsynced > 0
                && seen.dropped > 0
                && seen.cut > 0
                && seen.failed_syncs > 0,
            "{seen:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Torn tails, bit flips, damage

/// A log of `n` messages (payload lengths multiples of 8, exact sizes, so every byte of a
/// frame is covered by its checks) in one segment, all synced, with the mark at the start of
/// message `mark_at`. Returns the fs and the messages with their frame ranges.
fn fixture(n: usize, mark_at: usize) -> (FaultFs, Vec<Msg>, Vec<(u64, u64)>) {
    let fs = FaultFs::new();
    let log = Log::create(Arc::new(fs.clone()), &dir(), params(1 << 16, 1 << 16)).unwrap();
    let mut msgs = Vec::new();
    let mut ranges = Vec::new();
    let mut pos = 0;
    for i in 0..n {
        let payload: Vec<u8> = (0..8 * (1 + i % 4)).map(|j| (i * 31 + j) as u8 | 1).collect();
        let size = message_size(payload.len() as u64);
        log.write(pos, &encode_message(pos, 1000 + i as u64, &payload, size)).unwrap();
        msgs.push((pos, 1000 + i as u64, payload));
        ranges.push((pos, pos + size));
        pos += size;
    }
    log.sync(0, pos, 0).unwrap();
    let mark = ranges[mark_at].0;
    // A second sync writes the mark (a position durable before it).
    log.sync(0, pos, mark).unwrap();
    (fs, msgs, ranges)
}

fn seg0() -> PathBuf {
    dir().join("0000000000000000.seg")
}

#[test]
fn a_torn_tail_at_any_byte_of_the_last_three_frames_is_cut_not_corrupt() {
    let n = 10;
    let (fs, msgs, ranges) = fixture(n, n - 3);
    let end = ranges[n - 1].1;
    let image = fs.read_file(&seg0()).unwrap();
    for b in ranges[n - 3].0..end {
        let torn = fs.crash(0);
        let zeros = vec![0u8; (end - b) as usize];
        torn.damage(&seg0(), 4096 + b, &zeros);
        let after = torn.read_file(&seg0()).unwrap();
        // The first frame any of whose bytes changed is where the log must end.
        let first_changed = ranges
            .iter()
            .position(|&(s, e)| {
                image[(4096 + s) as usize..(4096 + e) as usize] != after[(4096 + s) as usize..(4096 + e) as usize]
            })
            .unwrap_or(n);
        let (log, rec) = Log::recover(Arc::new(torn), &dir()).unwrap_or_else(|e| panic!("torn at {b}: {e}"));
        let want_end = if first_changed == n { end } else { ranges[first_changed].0 };
        assert_eq!(rec.end, want_end, "torn at {b}");
        assert_eq!(rec.dropped, 0, "torn at {b}");
        assert_eq!(all_frames(&log, 0, rec.end), msgs[..first_changed], "torn at {b}");
    }
}

#[test]
fn every_bit_flip_in_the_last_frame_is_cut_not_corrupt() {
    let n = 6;
    let (fs, msgs, ranges) = fixture(n, n - 2);
    let (s, e) = ranges[n - 1];
    let image = fs.read_file(&seg0()).unwrap();
    for bit in 0..(e - s) * 8 {
        let off = 4096 + s + bit / 8;
        let flipped = fs.crash(0);
        flipped.damage(&seg0(), off, &[image[off as usize] ^ (1 << (bit % 8))]);
        let (log, rec) = Log::recover(Arc::new(flipped), &dir()).unwrap_or_else(|e| panic!("bit {bit}: {e}"));
        assert_eq!((rec.end, rec.dropped), (s, 0), "bit {bit}");
        assert_eq!(all_frames(&log, 0, rec.end), msgs[..n - 1]);
    }
}

#[test]
fn valid_frames_after_a_hole_above_the_mark_are_dropped_and_counted() {
    let (fs, msgs, ranges) = fixture(10, 5);
    fs.damage(&seg0(), 4096 + ranges[7].0, &[0; 8]);
    let (log, rec) = Log::recover(Arc::new(fs.clone()), &dir()).unwrap();
    assert_eq!((rec.end, rec.dropped, rec.synced_through), (ranges[7].0, 2, ranges[5].0));
    assert_eq!(all_frames(&log, 0, rec.end), msgs[..7]);
    drop(log);
    let image = fs.read_file(&seg0()).unwrap();
    assert!(image[(4096 + ranges[7].0) as usize..].iter().all(|&b| b == 0), "the tail was zeroed");
    assert_eq!(image.len() as u64, 4096 + (1 << 16), "and the segment is still fully allocated");
    let (_, rec) = Log::recover(Arc::new(fs.crash(3)), &dir()).unwrap();
    assert_eq!((rec.end, rec.dropped), (ranges[7].0, 0));
}

#[test]
fn damage_below_the_mark_is_corrupt_naming_file_and_offset_and_changes_nothing() {
    let (fs, _, ranges) = fixture(10, 8);
    // A payload byte of message 3.
    fs.damage(&seg0(), 4096 + ranges[3].0 + 33, &[0xee]);
    let before = fs.read_file(&seg0()).unwrap();
    let err = Log::recover(Arc::new(fs.clone()), &dir()).unwrap_err();
    let Error::Corrupt(msg) = &err else { panic!("{err}") };
    assert!(msg.contains("/log/0000000000000000.seg"), "{msg}");
    assert!(msg.contains(&format!("at offset {}", 4096 + ranges[3].0)), "{msg}");
    assert_eq!(fs.read_file(&seg0()).unwrap(), before, "recovery changed a corrupt log");
    assert_eq!(err.code(), crate::error::code::CORRUPT);
    // A damaged header is Corrupt at offset 0.
    let (fs, _, _) = fixture(4, 1);
    fs.damage(&seg0(), 40, &[0xff]);
    let err = Log::recover(Arc::new(fs), &dir()).unwrap_err();
    assert!(matches!(&err, Error::Corrupt(m) if m.contains("0000000000000000.seg at offset 0")), "{err}");
}

#[test]
fn a_segment_missing_below_the_mark_is_corrupt() {
    let fs = FaultFs::new();
    let log = Log::create(Arc::new(fs.clone()), &dir(), params(1024, 1024)).unwrap();
    let mut s = Stream::new(9, 1024);
    while s.pos < 3 * 1024 {
        let (pos, bytes) = s.batch(4, 100);
        log.write(pos, &bytes).unwrap();
    }
    log.sync(0, s.pos, 0).unwrap();
    let (pos, bytes) = s.batch(1, 8);
    log.write(pos, &bytes).unwrap();
    log.sync(pos, s.pos, pos).unwrap();
    drop(log);
    fs.unlink(&dir().join("0000000000000001.seg")).unwrap();
    let err = Log::recover(Arc::new(fs), &dir()).unwrap_err();
    assert!(matches!(&err, Error::Corrupt(m) if m.contains("0000000000000001.seg: missing")), "{err}");
}

// ---------------------------------------------------------------------------------------
// Refusals

#[test]
fn a_log_of_another_queue_or_a_newer_format_is_refused() {
    let (fs, _, _) = fixture(3, 0);
    let err = Log::attach(Arc::new(fs.clone()), &dir(), *b"another-queue-id").unwrap_err();
    assert!(matches!(err, Error::Incompatible(_)), "{err}");
    Log::attach(Arc::new(fs.clone()), &dir(), ID).unwrap();

    // A segment header of another queue (valid crc).
    let other = fs.crash(0);
    let hdr = format::SegmentHeader {
        version: 1,
        identity: *b"another-queue-id",
        seg_size: 1 << 16,
        wrap: 1 << 16,
        index: 0,
        created_ns: 0,
    };
    other.damage(&seg0(), 0, &hdr.encode()[..68]);
    let err = Log::recover(Arc::new(other), &dir()).unwrap_err();
    assert!(matches!(&err, Error::Incompatible(m) if m.contains("another queue")), "{err}");

    // A newer segment format.
    let newer = fs.crash(0);
    newer.damage(&seg0(), 8, &2u32.to_le_bytes());
    let err = Log::recover(Arc::new(newer), &dir()).unwrap_err();
    assert!(matches!(&err, Error::Incompatible(m) if m.contains("version 2")), "{err}");

    // A newer META in both slots.
    let newer = fs.crash(0);
    let meta = dir().join(META_FILE);
    newer.damage(&meta, 8, &2u32.to_le_bytes());
    newer.damage(&meta, 512 + 8, &2u32.to_le_bytes());
    let err = Log::recover(Arc::new(newer), &dir()).unwrap_err();
    assert!(matches!(&err, Error::Incompatible(m) if m.contains("version 2")), "{err}");
}

#[test]
fn a_dir_or_file_of_another_user_or_writable_by_others_is_refused() {
    let (fs, _, _) = fixture(3, 0);
    let cases: Vec<(PathBuf, Option<u32>, Option<u32>)> = vec![
        (dir(), Some(4242), None),
        (dir(), None, Some(0o777)),
        (dir(), None, Some(0o770)),
        (dir().join(META_FILE), None, Some(0o666)),
        (dir().join(META_FILE), Some(4242), None),
        (dir().join(LOCK_FILE), None, Some(0o602)),
        (seg0(), None, Some(0o620)),
        (seg0(), Some(4242), None),
    ];
    for (path, uid, mode) in cases {
        let bad = fs.crash(0);
        bad.set_owner_mode(&path, uid, mode);
        let err = Log::recover(Arc::new(bad.clone()), &dir()).unwrap_err();
        assert!(matches!(err, Error::Permission(_)), "{} {uid:?} {mode:?}: {err}", path.display());
        let err = Log::attach(Arc::new(bad), &dir(), ID).unwrap_err();
        assert!(matches!(err, Error::Permission(_)), "{} {uid:?} {mode:?}: {err}", path.display());
    }
    // Group write is fine when the log's mode allows it.
    let fs = FaultFs::new();
    Log::create(Arc::new(fs.clone()), &dir(), LogParams { mode: 0o660, ..params(1024, 1024) }).unwrap();
    assert_eq!(fs.stat(&dir()).unwrap().mode, 0o770);
    assert_eq!(fs.stat(&dir().join(META_FILE)).unwrap().mode, 0o660);
    Log::recover(Arc::new(fs), &dir()).unwrap();
}

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let base = std::env::var_os("SHMQ_LOG_TMP").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
        let p = base.join(format!("shmq-log-{tag}-{}-{}", std::process::id(), now_ns()));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn on_the_real_file_system_modes_are_exact_and_loose_ones_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let t = TempDir::new("perm");
    let d = t.0.join("q");
    let log = Log::create(Arc::new(RealFs), &d, params(4096, 1024)).unwrap();
    log.write(0, &encode_message(0, 1, b"12345678", 40)).unwrap();
    log.sync(0, 40, 0).unwrap();
    drop(log);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&d), 0o700);
    assert_eq!(mode(&d.join(META_FILE)), 0o600);
    assert_eq!(mode(&d.join("0000000000000000.seg")), 0o600);
    let set = |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    for (p, loose, good) in
        [(d.clone(), 0o777, 0o700), (d.join(META_FILE), 0o622, 0o600), (d.join("0000000000000000.seg"), 0o606, 0o600)]
    {
        set(&p, loose);
        let err = Log::recover(Arc::new(RealFs), &d).unwrap_err();
        assert!(matches!(err, Error::Permission(_)), "{}: {err}", p.display());
        set(&p, good);
    }
    let (log, rec) = Log::recover(Arc::new(RealFs), &d).unwrap();
    assert_eq!(rec.end, 40);
    assert_eq!(all_frames(&log, 0, 40).len(), 1);
}

#[test]
fn recover_is_busy_while_a_live_process_holds_the_log_and_attach_while_recovery_does() {
    let (fs, _, _) = fixture(3, 0);
    let live = Log::attach(Arc::new(fs.clone()), &dir(), ID).unwrap();
    let err = Log::recover(Arc::new(fs.clone()), &dir()).unwrap_err();
    assert!(matches!(err, Error::Busy(_)), "{err}");
    drop(live);
    let recovering = fs.open(&dir().join(LOCK_FILE)).unwrap();
    assert!(recovering.lock(LockKind::Exclusive).unwrap());
    let err = Log::attach(Arc::new(fs.clone()), &dir(), ID).unwrap_err();
    assert!(matches!(err, Error::Busy(_)), "{err}");
    drop(recovering);
    // After recovery the lock is shared: live participants can attach.
    let (_rec, _) = Log::recover(Arc::new(fs.clone()), &dir()).unwrap();
    Log::attach(Arc::new(fs), &dir(), ID).unwrap();
}

// ---------------------------------------------------------------------------------------
// Sync ordering (FaultFs op log)

fn index_of(ops: &[Op], pred: impl Fn(&Op) -> bool) -> usize {
    ops.iter().position(pred).unwrap_or_else(|| panic!("op not found in {ops:#?}"))
}

/// The op log with temporary names shown as `TMP`.
fn ops_shown(fs: &FaultFs) -> Vec<String> {
    fs.ops()
        .iter()
        .map(|o| {
            let t = format!("{o:?}");
            let mut out = String::new();
            for part in t.split('"') {
                if part.contains(".seg.tmp.") {
                    out.push_str("TMP");
                } else {
                    out.push_str(part);
                }
            }
            out
        })
        .collect()
}

#[test]
fn segments_are_born_synced_before_their_rename_and_named_durably_before_use() {
    let fs = FaultFs::new();
    let log = Log::create(Arc::new(fs.clone()), &dir(), params(1024, 1024)).unwrap();
    fs.clear_ops();
    // 1500 bytes from position 0: segment 0 is created, then the write rolls into segment 1.
    let mut s = Stream::new(4, 1024);
    let mut bytes = Vec::new();
    while s.pos < 1500 {
        bytes.extend(s.batch(1, 100).1);
    }
    log.write(0, &bytes).unwrap();
    let n1 = s.pos - 1024;
    let birth = |k: u64| {
        vec![
            "Create(TMP)".to_owned(),
            "Write { path: TMP, off: 0, len: 4096 }".to_owned(),
            "Fallocate(TMP, 5120)".to_owned(),
            "Fdatasync(TMP)".to_owned(),
            format!("Rename(TMP, /log/{k:016x}.seg)"),
            "FsyncDir(/log)".to_owned(),
        ]
    };
    let mut want = birth(0);
    want.push("Write { path: /log/0000000000000000.seg, off: 4096, len: 1024 }".into());
    want.extend(birth(1));
    want.push(format!("Write {{ path: /log/0000000000000001.seg, off: 4096, len: {n1} }}"));
    assert_eq!(ops_shown(&fs), want);

    // A sync: segment 0 first, then the mark (a position durable before) into segment 1,
    // then segment 1. A mark of 0 is not written.
    fs.clear_ops();
    log.sync(0, s.pos, 0).unwrap();
    log.sync(0, s.pos, s.pos).unwrap();
    assert_eq!(
        ops_shown(&fs),
        vec![
            "Fdatasync(/log/0000000000000000.seg)",
            "Fdatasync(/log/0000000000000001.seg)",
            "Fdatasync(/log/0000000000000000.seg)",
            "Write { path: /log/0000000000000001.seg, off: 1024, len: 24 }",
            "Fdatasync(/log/0000000000000001.seg)",
        ]
    );
    // Retention: the record of the retired floor, named durably, then the unlink and the
    // directory fsync; the newest segment always stays.
    fs.clear_ops();
    assert_eq!(log.delete_before(1024).unwrap(), 1024);
    assert_eq!(
        ops_shown(&fs),
        vec![
            "Create(/log/RETIRED.0000000000000400)",
            "FsyncDir(/log)",
            "Unlink(/log/0000000000000000.seg)",
            "FsyncDir(/log)"
        ]
    );
    assert_eq!(log.delete_before(1 << 20).unwrap(), 1024, "the newest segment stays");
    let (_, rec) = Log::recover(Arc::new(fs.crash(1)), &dir()).unwrap();
    assert_eq!((rec.start, rec.end, rec.synced_through), (1024, s.pos, s.pos));
}

#[test]
fn recovery_removes_later_segments_durably_before_zeroing_the_tail() {
    let fs = FaultFs::new();
    let log = Log::create(Arc::new(fs.clone()), &dir(), params(1024, 1024)).unwrap();
    let mut s = Stream::new(5, 1024);
    let mut bytes = Vec::new();
    while s.pos < 2500 {
        bytes.extend(s.batch(1, 100).1);
    }
    log.write(0, &bytes).unwrap();
    log.sync(0, s.pos, 0).unwrap();
    drop(log);
    // Tear the first frame of segment 1 (no mark): segments 1 and 2 go.
    let s1 = dir().join("0000000000000001.seg");
    fs.damage(&s1, 4096, &[0xff; 8]);
    fs.clear_ops();
    let (_, rec) = Log::recover(Arc::new(fs.clone()), &dir()).unwrap();
    assert_eq!(rec.end, 1024);
    let ops = fs.ops();
    let s2 = dir().join("0000000000000002.seg");
    let unlink = index_of(&ops, |o| *o == Op::Unlink(s2.clone()));
    let fsync = index_of(&ops, |o| *o == Op::FsyncDir(dir()));
    let trunc = index_of(&ops, |o| *o == Op::Truncate(s1.clone(), 4096));
    let sync = index_of(&ops, |o| *o == Op::Fdatasync(s1.clone()));
    assert!(unlink < fsync && trunc < sync, "{ops:#?}");
    assert!(fs.read_file(&s2).is_none());
}

// ---------------------------------------------------------------------------------------
// Faults

#[test]
fn a_full_disk_is_no_space_at_segment_creation_and_not_sticky() {
    let fs = FaultFs::new();
    let log = Log::create(Arc::new(fs.clone()), &dir(), params(1 << 16, 1 << 16)).unwrap();
    fs.space_left(Some(10_000));
    let frame = encode_message(0, 1, b"abcdefgh", 40);
    let err = log.write(0, &frame).unwrap_err();
    assert!(matches!(err, Error::NoSpace), "{err}");
    assert_eq!(err.code(), crate::error::code::NO_SPACE);
    assert!(fs.list_dir(&dir()).unwrap().iter().all(|n| !n.contains(".tmp.")), "the temporary file was removed");
    fs.space_left(None);
    log.write(0, &frame).unwrap();
    log.sync(0, 40, 0).unwrap();
    assert_eq!(all_frames(&log, 0, 40).len(), 1);
}

#[test]
fn a_failed_fdatasync_fails_the_log_for_good() {
    let fs = FaultFs::new();
    let log = Log::create(Arc::new(fs.clone()), &dir(), params(4096, 1024)).unwrap();
    log.write(0, &encode_message(0, 1, b"abcdefgh", 40)).unwrap();
    fs.fail_sync(1);
    let err = log.sync(0, 40, 0).unwrap_err();
    let Error::Log(first) = &err else { panic!("{err}") };
    assert!(err.to_string().contains("the queue is read-only"), "{err}");
    assert_eq!(err.code(), crate::error::code::LOG);
    let syncs = fs.ops().iter().filter(|o| matches!(o, Op::Fdatasync(_))).count();
    // Every later call fails the same way without touching the disk.
    for r in [log.write(40, &encode_message(40, 2, b"", 32)), log.sync(0, 40, 0), log.set_ceiling(5)] {
        assert!(matches!(&r, Err(Error::Log(m)) if m == first), "{r:?}");
    }
    assert_eq!(fs.ops().iter().filter(|o| matches!(o, Op::Fdatasync(_))).count(), syncs, "a sync was retried");
    // Another process's log of the same directory is not affected.
    let other = Log::attach(Arc::new(fs.clone()), &dir(), ID).unwrap();
    other.sync(0, 40, 0).unwrap();
}

#[test]
fn two_logs_of_one_directory_write_identical_bytes_for_the_same_range() {
    let fs = FaultFs::new();
    let a = Log::create(Arc::new(fs.clone()), &dir(), params(1024, 1024)).unwrap();
    let b = Log::attach(Arc::new(fs.clone()), &dir(), ID).unwrap();
    let mut s = Stream::new(6, 1024);
    let mut bytes = Vec::new();
    while s.pos < 3000 {
        bytes.extend(s.batch(1, 100).1);
    }
    b.write(0, &bytes[..2000]).unwrap();
    a.write(0, &bytes).unwrap();
    let before: Vec<_> = (0..3).map(|k| fs.read_file(&dir().join(format!("{k:016x}.seg"))).unwrap()).collect();
    b.write(0, &bytes).unwrap();
    let after: Vec<_> = (0..3).map(|k| fs.read_file(&dir().join(format!("{k:016x}.seg"))).unwrap()).collect();
    assert!(before == after, "a rewrite of the same range changed bytes");
    a.sync(0, s.pos, 0).unwrap();
    assert_eq!(all_frames(&b, 0, s.pos), s.msgs);
}

#[test]
fn threads_share_one_log() {
    let fs = FaultFs::new();
    let log = Arc::new(Log::create(Arc::new(fs.clone()), &dir(), params(1024, 1024)).unwrap());
    let mut s = Stream::new(7, 1024);
    let mut bytes = Vec::new();
    while s.pos < 8 * 1024 {
        bytes.extend(s.batch(1, 100).1);
    }
    let bytes = Arc::new(bytes);
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let (log, bytes) = (log.clone(), bytes.clone());
            std::thread::spawn(move || {
                // Each thread writes every 4th KiB chunk, all of them race on segment creation.
                for (i, chunk) in bytes.chunks(1024).enumerate().filter(|(i, _)| i % 4 == t) {
                    log.write(i as u64 * 1024, chunk).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    log.sync(0, s.pos, 0).unwrap();
    assert_eq!(all_frames(&log, 0, s.pos), s.msgs);
}

#[test]
fn losing_the_race_to_create_a_segment_opens_the_winners_file() {
    let fs = FaultFs::new();
    let a = Log::create(Arc::new(fs.clone()), &dir(), params(1024, 1024)).unwrap();
    let b = Log::attach(Arc::new(fs.clone()), &dir(), ID).unwrap();
    let frame = encode_message(0, 5, b"winner!!", 40);
    a.write(0, &frame).unwrap();
    fs.clear_ops();
    // B creates segment 0 as if it had not seen A's: its rename finds the name taken.
    let theirs = b.create_segment(0).unwrap();
    let mut got = vec![0u8; 40];
    theirs.pread(4096, &mut got).unwrap();
    assert_eq!(got, frame, "B must use A's file, not its own");
    let ops = ops_shown(&fs);
    assert!(ops.contains(&"Unlink(TMP)".to_owned()), "{ops:?}");
    assert_eq!(ops.last().map(String::as_str), Some("FsyncDir(/log)"), "{ops:?}");
    assert!(fs.list_dir(&dir()).unwrap().iter().all(|n| !n.contains(".tmp.")));
}

#[test]
fn a_frame_claiming_more_than_any_message_is_refused_before_it_is_read() {
    let mut f = encode_message(0, 1, b"12345678", 40);
    let len = 16 + (1u64 << 31);
    let size = format::align8(16 + len);
    f[8..16].copy_from_slice(&(len | ((size / 8) << 32)).to_le_bytes());
    let r = format::decode(&f, 0, 1 << 40, 1 << 41);
    assert!(matches!(r, Err(format::Invalid::Bad(_))), "{r:?}");
}

#[test]
fn leftover_temporary_files_are_removed_by_recovery() {
    let (fs, msgs, _) = fixture(3, 0);
    let tmp = dir().join(".0000000000000001.seg.tmp.99.0");
    fs.create(&tmp, 0o600).unwrap().pwrite(0, &[1; 100]).unwrap();
    let (log, rec) = Log::recover(Arc::new(fs.clone()), &dir()).unwrap();
    assert!(fs.read_file(&tmp).is_none());
    assert_eq!(all_frames(&log, 0, rec.end), msgs);
}

// ---------------------------------------------------------------------------------------
// Restarts and stale writers

/// One message frame at `pos` (of 8..40 payload bytes by `i`); returns its end.
fn put_message(log: &Log, pos: u64, i: u64, msgs: &mut Vec<Msg>) -> u64 {
    let payload: Vec<u8> = (0..8 * (1 + i % 5)).map(|j| (i * 7 + j) as u8 | 1).collect();
    let size = message_size(payload.len() as u64);
    log.write(pos, &encode_message(pos, i, &payload, size)).unwrap();
    msgs.push((pos, i, payload));
    pos + size
}

/// Restarts that each leave the stream at a different distance from the end of its
/// window (wrap 1024): right at it, closer than a gap frame (a pad-end first), or far; and
/// half of them with a whole segment skipped (an id ceiling a segment ahead). Each restart
/// recovers, bridges to the new start and writes on there, with the mark above the gap:
/// every message stays readable, and each recovery finds the stream's true end.
#[test]
fn a_restarts_gap_is_bridged_wherever_the_old_stream_ended() {
    let fs = FaultFs::new();
    let (seg, wrap) = (4096u64, 1024u64);
    let mut log = Log::create(Arc::new(fs.clone()), &dir(), params(seg, wrap)).unwrap();
    let mut msgs = Vec::new();
    let (mut from, mut pos) = (0, 0);
    for (r, room) in [0u64, 8, 32, 40, 48, 512].into_iter().enumerate() {
        let r = r as u64;
        // Messages, then padding, to end `room` bytes before a window's end.
        let stop = (pos / wrap + 1) * wrap - room;
        let mut i = 0;
        while stop - pos >= 96 {
            pos = put_message(&log, pos, 100 * r + i, &mut msgs);
            i += 1;
        }
        if stop > pos {
            log.write(pos, &encode_padding(pos, stop - pos)).unwrap();
            pos = stop;
        }
        log.sync(from, pos, from).unwrap();
        drop(log);
        let (again, rec) = Log::recover(Arc::new(fs.clone()), &dir()).unwrap();
        assert_eq!((rec.end, rec.dropped), (pos, 0), "restart {r}: the end as written");
        assert_eq!(all_frames(&again, 0, rec.end), msgs, "restart {r}");
        let start = (rec.end / seg + 1 + r % 2) * seg;
        again.bridge(rec.end, start).unwrap();
        again.bridge(rec.end, start).unwrap(); // repeated: the same bytes
        from = start;
        pos = put_message(&again, start, 1000 + r, &mut msgs);
        again.sync(from, pos, from).unwrap();
        drop(again);
        let (again, rec) = Log::recover(Arc::new(fs.clone()), &dir()).unwrap();
        assert_eq!((rec.end, rec.dropped, rec.tail_clean), (pos, 0, true), "restart {r}: on past the gap");
        assert_eq!(all_frames(&again, 0, rec.end), msgs, "restart {r}: nothing lost, nothing invented");
        log = again;
    }
}

/// A power cut while a restore bridges its gap (the bridge's sync fails, then the machine
/// goes down keeping any subset of what was not synced): the next recovery ends the stream
/// at the old end or past the gap, loses no message, and bridging again from there reads on.
#[test]
fn a_power_cut_during_the_bridge_leaves_a_log_the_next_restore_bridges_again() {
    for seed in 0..200u64 {
        let fs = FaultFs::new();
        let (seg, wrap) = (4096u64, 1024u64);
        let log = Log::create(Arc::new(fs.clone()), &dir(), params(seg, wrap)).unwrap();
        let mut msgs = Vec::new();
        let mut pos = 0;
        for i in 0..3 + seed % 9 {
            pos = put_message(&log, pos, i, &mut msgs);
        }
        log.sync(0, pos, 0).unwrap();
        let start = seg * (1 + seed % 2);
        fs.fail_sync(1);
        assert!(log.bridge(pos, start).is_err(), "seed {seed}: the injected failure");
        let crashed = fs.crash(seed);
        drop(log);
        let (log, rec) = Log::recover(Arc::new(crashed.clone()), &dir()).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        assert!(rec.end == pos || rec.end == start, "seed {seed}: end {} (written to {pos}, gap to {start})", rec.end);
        assert_eq!(all_frames(&log, 0, rec.end), msgs, "seed {seed}");
        let next = rec.end.div_ceil(seg) * seg + seg;
        log.bridge(rec.end, next).unwrap();
        let end = put_message(&log, next, 99, &mut msgs);
        log.sync(next, end, next).unwrap();
        drop(log);
        let (log, rec) = Log::recover(Arc::new(crashed.clone()), &dir()).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        assert_eq!(rec.end, end, "seed {seed}");
        assert_eq!(all_frames(&log, 0, rec.end), msgs, "seed {seed}");
    }
}

/// A journaler stopped between its copy and its write while others journal, sync and
/// retire the range: its late write must not make the retired segment again (a lone,
/// partial segment below the synced mark would read as damage), and its late sync of that
/// range has nothing to do.
#[test]
fn a_stale_write_or_sync_over_a_retired_segment_changes_nothing() {
    let fs = FaultFs::new();
    let log = Log::create(Arc::new(fs.clone()), &dir(), params(4096, 1024)).unwrap();
    let mut s = Stream::new(9, 1024);
    let mut first = None;
    while s.pos < 3 * 4096 {
        let (pos, bytes) = s.batch(3, 100);
        first.get_or_insert((pos, bytes.clone()));
        log.write(pos, &bytes).unwrap();
    }
    log.sync(0, s.pos, 0).unwrap();
    assert_eq!(log.delete_before(2 * 4096).unwrap(), 2 * 4096);
    let (pos, bytes) = first.unwrap();
    log.write(pos, &bytes).unwrap();
    log.sync(0, s.pos, s.pos).unwrap();
    assert_eq!(log.stats().unwrap().oldest, Some(2 * 4096), "segment 0 stays gone");
    drop(log);
    // A late writer of an earlier version (or one killed between making the segment and
    // looking at the floor again) left segment 1 made again: header, then nothing.
    let junk = dir().join("0000000000000001.seg");
    let hdr =
        SegmentHeader { version: format::VERSION, identity: ID, seg_size: 4096, wrap: 1024, index: 1, created_ns: 1 };
    let f = fs.create(&junk, 0o600).unwrap();
    f.pwrite(0, &hdr.encode()).unwrap();
    f.fallocate(2 * 4096).unwrap();
    f.fdatasync().unwrap();
    fs.fsync_dir(&dir()).unwrap();
    drop(f);
    let (log, rec) = Log::recover(Arc::new(fs.clone()), &dir()).unwrap();
    assert_eq!((rec.start, rec.end, rec.dropped), (2 * 4096, s.pos, 0), "below the retired floor: not the log");
    assert!(fs.read_file(&junk).is_none(), "recovery removed it");
    assert_eq!(
        all_frames(&log, rec.start, rec.end),
        s.msgs.iter().filter(|m| m.0 >= 2 * 4096).cloned().collect::<Vec<_>>()
    );
}

// ---------------------------------------------------------------------------------------
// A creator killed part-way

/// What a creator leaves at each step of `Log::create` if it is killed there (a kill
/// keeps every completed write): the directory, then LOCK, then an empty META, then META
/// with a torn record. None of these holds a log, and the next create takes the directory
/// over; a finished log, a directory holding something else, or one whose LOCK a live
/// creator holds, it does not.
#[test]
fn a_directory_a_creator_was_killed_in_is_taken_over_by_the_next_create() {
    let steps: [&dyn Fn(&FaultFs); 5] = [
        &|_| {},
        &|fs| drop(fs.create(&dir().join(LOCK_FILE), 0o600).unwrap()),
        &|fs| drop(fs.create(&dir().join(META_FILE), 0o600).unwrap()),
        &|fs| fs.damage(&dir().join(META_FILE), 0, &[0x53; 40]),
        &|fs| fs.damage(&dir().join(META_FILE), 40, &[0; 600]),
    ];
    for n in 0..steps.len() {
        let fs = FaultFs::new();
        fs.mkdir(&dir(), 0o700).unwrap();
        for step in &steps[..=n] {
            step(&fs);
        }
        assert!(!Log::holds_log(&fs, &dir()), "step {n}");
        let log =
            Log::create(Arc::new(fs.clone()), &dir(), params(4096, 1024)).unwrap_or_else(|e| panic!("step {n}: {e}"));
        drop(log);
        assert!(Log::holds_log(&fs, &dir()), "step {n}: a log now");
        Log::recover(Arc::new(fs.clone()), &dir()).unwrap_or_else(|e| panic!("step {n}: {e}"));
        let again = Log::create(Arc::new(fs.clone()), &dir(), params(4096, 1024));
        assert!(matches!(again, Err(Error::Exists(_))), "step {n}: a finished log is not taken over: {again:?}");
    }
    // Another file there: not ours to take.
    let fs = FaultFs::new();
    fs.mkdir(&dir(), 0o700).unwrap();
    drop(fs.create(&dir().join("notes.txt"), 0o600).unwrap());
    assert!(matches!(Log::create(Arc::new(fs.clone()), &dir(), params(4096, 1024)), Err(Error::Exists(_))));
    // A creator at work (alive, LOCK held): Busy, to be retried.
    let fs = FaultFs::new();
    fs.mkdir(&dir(), 0o700).unwrap();
    let lock = fs.create(&dir().join(LOCK_FILE), 0o600).unwrap();
    assert!(lock.lock(LockKind::Exclusive).unwrap());
    assert!(matches!(Log::create(Arc::new(fs.clone()), &dir(), params(4096, 1024)), Err(Error::Busy(_))));
    drop(lock);
    Log::create(Arc::new(fs.clone()), &dir(), params(4096, 1024)).unwrap();
}

/// A power cut during `Log::create` (its n-th sync fails, then the machine goes down,
/// keeping any subset of what was not synced): the next start either finds a log and
/// recovers it, or takes the directory over; never stuck.
#[test]
fn a_power_cut_during_create_never_leaves_a_directory_nobody_can_use() {
    for seed in 0..400u64 {
        let fs = FaultFs::new();
        fs.fail_sync(1 + seed % 4);
        let made = Log::create(Arc::new(fs.clone()), &dir(), params(4096, 1024));
        let crashed = fs.crash(seed);
        drop(made);
        let r = if Log::holds_log(&crashed, &dir()) {
            Log::recover(Arc::new(crashed.clone()), &dir()).map(drop)
        } else {
            Log::create(Arc::new(crashed.clone()), &dir(), params(4096, 1024)).map(drop)
        };
        r.unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    }
}

/// Processes raising the id ceiling at the same moment (here: threads, each with its own
/// `Log` and file descriptions, on the real file system) read the same META record and write
/// the next one into the same slot; the last write wins it. Whatever the interleaving, once
/// `set_ceiling(c)` returns the record on disk holds `c` or more: ids below the ceiling may
/// be handed out, and a lower one after a crash would hand them out again.
#[test]
fn concurrent_ceiling_raises_never_leave_a_lower_ceiling_on_disk() {
    let t = TempDir::new("ceiling-race");
    let d = t.0.join("q");
    drop(Log::create(Arc::new(RealFs), &d, params(4096, 1024)).unwrap());
    let handles: Vec<_> = (0..4u64)
        .map(|k| {
            let d = d.clone();
            std::thread::spawn(move || {
                let log = Log::attach(Arc::new(RealFs), &d, ID).unwrap();
                for i in 0..60u64 {
                    let c = 4096 * (1 + 4 * i + k);
                    log.set_ceiling(c).unwrap();
                    let path = d.join(META_FILE);
                    let on_disk = Log::read_meta(&*log.meta_file, &path).unwrap().ceiling;
                    assert!(on_disk >= c, "thread {k}: set {c}, META holds {on_disk}");
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let (_, rec) = Log::recover(Arc::new(RealFs), &d).unwrap();
    assert_eq!(rec.ceiling, 4096 * (1 + 4 * 59 + 3), "the highest ceiling any raise returned for");
}

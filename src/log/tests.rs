//! Tests of the log module, in-process, on [`FaultFs`] (power cuts, faults, op order) and
//! on the real file system (permissions, speed).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::format::{self, encode_message, encode_pad_end, encode_padding, message_size};
use super::fs::{FaultFs, Fs, Op, RealFs, Rng};
use super::*;

const ID: [u8; 16] = *b"queue-identity-1";

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
    msgs: Vec<(u64, u64, Vec<u8>)>,
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

fn all_frames(log: &Log, from: u64, to: u64) -> Vec<(u64, u64, Vec<u8>)> {
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

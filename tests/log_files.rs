//! The log module across real processes on the real file system: two processes writing the
//! same range of one log, a writer killed with `kill -9`, a file-size limit.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::Child;
use shmq::Error;
use shmq::log::format::{encode_message, encode_pad_end, message_size};
use shmq::log::fs::RealFs;
use shmq::log::{Log, LogParams};

const ID: [u8; 16] = *b"log-files-test-1";
const WRAP: u64 = 4096;
const SEG: u64 = 2 * WRAP;

/// A fresh directory path (not created) under the temp dir; the tree is removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("shmq-log-files-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn log(&self) -> PathBuf {
        self.0.join("log")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A deterministic stream of frames: batch `i` is the same bytes at the same position in
/// every process. Returns (position, bytes, message ids) per batch.
fn stream(batches: u64) -> Vec<(u64, Vec<u8>, Vec<u64>)> {
    let mut out = Vec::new();
    let mut pos = 0u64;
    for i in 0..batches {
        let start = pos;
        let mut bytes = Vec::new();
        let mut ids = Vec::new();
        for j in 0..4u64 {
            let plen = (common::mix(i * 4 + j) % 200) as usize;
            let size = message_size(plen as u64);
            let room = (pos / WRAP + 1) * WRAP - pos;
            if size > room {
                bytes.extend(encode_pad_end(pos));
                bytes.resize(bytes.len() + room as usize - 8, 0);
                pos += room;
            }
            let payload: Vec<u8> = (0..plen).map(|k| (i as usize * 7 + k) as u8).collect();
            bytes.extend(encode_message(pos, i * 4 + j, &payload, size));
            ids.push(pos);
            pos += size;
        }
        out.push((start, bytes, ids));
    }
    out
}

fn payload_of(id_index: u64, len: usize) -> Vec<u8> {
    let i = id_index / 4;
    (0..len).map(|k| (i as usize * 7 + k) as u8).collect()
}

#[test]
fn child_role() {
    common::run_child(|role, dir| {
        let dir = Path::new(dir);
        match role {
            "write_range" => {
                let log = Log::attach(Arc::new(RealFs), dir, ID).unwrap();
                common::say("ready");
                assert_eq!(common::hear().as_deref(), Some("go"));
                let batches = stream(common::arg("BATCHES"));
                for (pos, bytes, _) in &batches {
                    log.write(*pos, bytes).unwrap();
                }
                let end = batches.last().map_or(0, |(p, b, _)| p + b.len() as u64);
                log.sync(0, end, 0).unwrap();
                common::say("done");
            }
            "write_until_killed" => {
                let log = Log::attach(Arc::new(RealFs), dir, ID).unwrap();
                let mut durable = 0;
                for (pos, bytes, _) in stream(100_000) {
                    log.write(pos, &bytes).unwrap();
                    let end = pos + bytes.len() as u64;
                    log.sync(durable, end, durable).unwrap();
                    durable = end;
                    common::say(&format!("synced {durable}"));
                }
            }
            "file_size_limit" => {
                let lim = rustix::process::Rlimit { current: Some(64 << 10), maximum: None };
                rustix::process::setrlimit(rustix::process::Resource::Fsize, lim).unwrap();
                // Segments of 1 MiB cannot be allocated under a 64 KiB limit: NoSpace, and
                // no SIGXFSZ (which would kill this process).
                let log = Log::create(Arc::new(RealFs), dir, LogParams::new(ID, 1 << 20, WRAP)).unwrap();
                let err = log.write(0, &encode_message(0, 1, b"12345678", 40)).unwrap_err();
                assert!(matches!(err, Error::NoSpace), "{err}");
                common::say("nospace");
            }
            other => panic!("unknown role {other}"),
        }
    });
}

#[test]
fn two_processes_writing_the_same_range_leave_the_bytes_one_writer_leaves() {
    let t = TempDir::new("same-range");
    let batches = 600u64;
    Log::create(Arc::new(RealFs), &t.log(), LogParams::new(ID, SEG, WRAP)).unwrap();
    let args = [("BATCHES", batches.to_string())];
    let d = t.log().to_string_lossy().into_owned();
    let mut a = Child::spawn("write_range", &d, &args);
    let mut b = Child::spawn("write_range", &d, &args);
    a.expect("ready");
    b.expect("ready");
    a.tell("go");
    b.tell("go");
    a.expect("done");
    b.expect("done");
    a.wait_ok();
    b.wait_ok();

    // The same stream written by one writer alone, elsewhere.
    let reference = t.0.join("reference");
    let one = Log::create(Arc::new(RealFs), &reference, LogParams::new(*b"log-files-test-1", SEG, WRAP)).unwrap();
    let s = stream(batches);
    for (pos, bytes, _) in &s {
        one.write(*pos, bytes).unwrap();
    }
    let end = s.last().map(|(p, b, _)| p + b.len() as u64).unwrap();
    assert!(end > 10 * SEG, "the range spans many segments (and creation races)");
    let segs = end.div_ceil(SEG);
    for k in 0..segs {
        let name = format!("{k:016x}.seg");
        let got = std::fs::read(t.log().join(&name)).unwrap();
        let want = std::fs::read(reference.join(&name)).unwrap();
        // Headers differ only in their creation time; the positions must be identical.
        assert_eq!(got.len(), want.len(), "{name}");
        assert!(got[4096..] == want[4096..], "{name}: the two writers left other bytes than one writer");
    }
    let (log, rec) = Log::recover(Arc::new(RealFs), &t.log()).unwrap();
    assert_eq!((rec.start, rec.end, rec.dropped), (0, end, 0));
    let ids: Vec<u64> = log.frames(0, end).map(|f| f.unwrap().id).collect();
    let want: Vec<u64> = s.iter().flat_map(|(_, _, ids)| ids.clone()).collect();
    assert_eq!(ids, want);
    for (i, f) in log.frames(0, end).enumerate() {
        let f = f.unwrap();
        assert_eq!(f.payload, payload_of(i as u64, f.payload.len()));
    }
}

#[test]
fn a_writer_killed_mid_stream_loses_nothing_it_had_synced() {
    let t = TempDir::new("killed");
    Log::create(Arc::new(RealFs), &t.log(), LogParams::new(ID, SEG, WRAP)).unwrap();
    let mut w = Child::spawn("write_until_killed", &t.log().to_string_lossy(), &[]);
    let mut synced = 0;
    for _ in 0..200 {
        synced = w.expect("synced").parse().unwrap();
    }
    w.kill9();
    // Lines said after the 200th are also durable: take the last one.
    while let Some(line) = w.try_line(std::time::Duration::from_millis(100)) {
        if let Some(n) = line.strip_prefix("synced ") {
            synced = n.parse().unwrap();
        }
    }
    let (log, rec) = Log::recover(Arc::new(RealFs), &t.log()).unwrap();
    assert!(rec.end >= synced, "end {} below what the writer had synced ({synced})", rec.end);
    assert!(rec.synced_through <= rec.end);
    let n = log.frames(0, rec.end).inspect(|f| assert!(f.is_ok(), "{f:?}")).count();
    assert!(n >= 800, "{n} messages back");
}

#[test]
fn a_file_size_limit_is_no_space_not_a_signal() {
    let t = TempDir::new("fsize");
    let mut c = Child::spawn("file_size_limit", &t.log().to_string_lossy(), &[]);
    c.expect("nospace");
    c.wait_ok();
}

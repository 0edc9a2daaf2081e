//! How fast a log is scanned (what `Log::recover` and `shmq log verify` do), against reading
//! the same bytes as a plain file, both cold (pages evicted with
//! `posix_fadvise(POSIX_FADV_DONTNEED)` after an `fdatasync`, since dropping the whole page
//! cache needs root) and warm.
//!
//! ```sh
//! cargo run --release --example log_scan -- /work/tmp 1024   # directory, MiB of log
//! ```
//!
//! Prints figures; asserts nothing about time.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use shmq::log::format::{encode_message, encode_pad_end, message_size};
use shmq::log::fs::RealFs;
use shmq::log::{Log, LogParams};

const WRAP: u64 = 1 << 20;
const SEG: u64 = 64 << 20;

/// Evicts a file's (clean) pages from the page cache.
fn evict(path: &Path) {
    let f = File::open(path).expect("open");
    f.sync_data().expect("fdatasync");
    // SAFETY: a valid fd; fadvise only gives advice about its pages.
    let r = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    assert_eq!(r, 0, "posix_fadvise");
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    v.sort();
    v
}

/// Seconds to read every file sequentially in 1 MiB chunks (what `cat > /dev/null` does).
fn cat(files: &[PathBuf]) -> (f64, u64) {
    let t = Instant::now();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    for p in files {
        let mut f = File::open(p).unwrap();
        loop {
            let got = f.read(&mut buf).unwrap();
            if got == 0 {
                break;
            }
            n += got as u64;
        }
    }
    (t.elapsed().as_secs_f64(), n)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let base = PathBuf::from(args.next().unwrap_or_else(|| "/work/tmp".into()));
    let mib: u64 = args.next().map_or(1024, |s| s.parse().expect("MiB"));
    let root = base.join(format!("shmq-log-scan-{}", std::process::id()));
    std::fs::create_dir_all(&root).unwrap();
    let dir = root.join("log");

    // Build the log: messages of 64..1088 payload bytes, in 1 MiB writes.
    let t = Instant::now();
    let log = Log::create(Arc::new(RealFs), &dir, LogParams::new(*b"log-scan-example", SEG, WRAP)).unwrap();
    let target = mib << 20;
    let mut pos = 0u64;
    let mut chunk = Vec::with_capacity(WRAP as usize);
    let mut chunk_pos = 0;
    let mut i = 0u64;
    let payload = vec![0x5au8; 1088];
    let mut messages = 0u64;
    while pos < target {
        let plen = 64 + (i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 54);
        let size = message_size(plen);
        let room = (pos / WRAP + 1) * WRAP - pos;
        if size > room {
            chunk.extend(encode_pad_end(pos));
            chunk.resize(chunk.len() + room as usize - 8, 0);
            pos += room;
        } else {
            chunk.extend(encode_message(pos, i, &payload[..plen as usize], size));
            pos += size;
            messages += 1;
        }
        if pos % WRAP == 0 {
            log.write(chunk_pos, &chunk).unwrap();
            chunk.clear();
            chunk_pos = pos;
        }
        i += 1;
    }
    log.write(chunk_pos, &chunk).unwrap();
    log.sync(0, pos, 0).unwrap();
    drop(log);
    println!("built {messages} messages, {} MiB of stream, in {:.1} s", pos >> 20, t.elapsed().as_secs_f64());

    // A plain file of the same total size, for `cat`.
    let segs: Vec<PathBuf> = files_in(&dir).into_iter().filter(|p| p.extension().is_some_and(|e| e == "seg")).collect();
    let total: u64 = segs.iter().map(|p| std::fs::metadata(p).unwrap().len()).sum();
    let plain = root.join("plain");
    {
        let mut f = File::create(&plain).unwrap();
        let block = vec![0xa5u8; 1 << 20];
        let mut left = total;
        while left > 0 {
            let n = left.min(block.len() as u64) as usize;
            f.write_all(&block[..n]).unwrap();
            left -= n as u64;
        }
    }

    let scan = || {
        let t = Instant::now();
        let (_, rec) = Log::inspect(Arc::new(RealFs), &dir).unwrap();
        assert_eq!((rec.messages, rec.end, rec.tail_clean), (messages, pos, true));
        t.elapsed().as_secs_f64()
    };
    let gib = total as f64 / f64::from(1 << 30);
    for round in ["cold", "warm"] {
        if round == "cold" {
            evict(&plain);
            for p in &segs {
                evict(p);
            }
        }
        let (c, n) = cat(std::slice::from_ref(&plain));
        assert_eq!(n, total);
        if round == "cold" {
            for p in &segs {
                evict(p);
            }
        }
        let segs_cat = if round == "cold" {
            let (c, n) = cat(&segs);
            assert_eq!(n, total);
            for p in &segs {
                evict(p);
            }
            format!("; cat of the segment files {c:.2} s ({:.2} GiB/s)", gib / c)
        } else {
            String::new()
        };
        let s = scan();
        println!(
            "{round}: cat {:.2} s ({:.2} GiB/s); log scan (inspect: every header, frame and crc) {:.2} s ({:.2} GiB/s), {:.2} GiB{segs_cat}",
            c,
            gib / c,
            s,
            gib / s,
            gib
        );
    }
    let _ = std::fs::remove_dir_all(&root);
}

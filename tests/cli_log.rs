//! `shmq log dump` and `shmq log verify`, run for real on logs built here with the library's
//! `Log` (intact, with a torn tail, damaged below the mark).

#![cfg(feature = "cli")]

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::Value;
use shmq::log::format::{encode_message, message_size};
use shmq::log::fs::RealFs;
use shmq::log::{Log, LogParams};

const BIN: &str = env!("CARGO_BIN_EXE_shmq");
const DEADLINE: Duration = Duration::from_secs(120);
const ID: [u8; 16] = *b"cli-log-test-id1";

/// A temp directory removed on drop; the log goes in `log` inside it.
struct Temp(PathBuf);

impl Temp {
    fn new(tag: &str) -> Temp {
        let p = std::env::temp_dir().join(format!("shmq-cli-log-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Temp(p)
    }
    fn log(&self) -> PathBuf {
        self.0.join("log")
    }
    fn dir_arg(&self) -> String {
        self.log().to_string_lossy().into_owned()
    }
}

impl Drop for Temp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn shmq(args: &[&str]) -> Output {
    let mut child =
        Command::new(BIN).args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start shmq");
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            panic!("shmq {args:?} ran past {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `n` messages "message i" (i = 0..n) with ts 1_000_000_000 * i, all synced, the mark at
/// the start of message `mark_at`. Returns the ids.
fn build(t: &Temp, n: u64, mark_at: usize) -> Vec<u64> {
    let log = Log::create(Arc::new(RealFs), &t.log(), LogParams::new(ID, 1 << 16, 1 << 12)).unwrap();
    let mut pos = 0;
    let mut ids = Vec::new();
    for i in 0..n {
        let payload = format!("message {i}");
        let size = message_size(payload.len() as u64);
        if (pos % 4096) + size > 4096 {
            log.write(pos, &shmq::log::format::encode_pad_end(pos)).unwrap();
            pos = (pos / 4096 + 1) * 4096;
        }
        log.write(pos, &encode_message(pos, i * 1_000_000_000, payload.as_bytes(), size)).unwrap();
        ids.push(pos);
        pos += size;
    }
    log.sync(0, pos, 0).unwrap();
    log.sync(0, pos, ids[mark_at]).unwrap();
    log.set_ceiling(1 << 30).unwrap();
    ids
}

fn seg0(t: &Temp) -> PathBuf {
    t.log().join("0000000000000000.seg")
}

fn damage(t: &Temp, off: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    std::fs::OpenOptions::new().write(true).open(seg0(t)).unwrap().write_all_at(bytes, off).unwrap();
}

#[test]
fn verify_says_intact_with_the_counts_and_exits_0() {
    let t = Temp::new("verify-ok");
    let ids = build(&t, 300, 299);
    let o = shmq(&["log", "verify", "--dir", &t.dir_arg()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(out.starts_with("intact: 300 messages, positions 0.."), "{out}");
    assert!(out.contains(&format!("synced through {}", ids[299])), "{out}");
    assert!(out.contains("id ceiling 1073741824"), "{out}");
}

#[test]
fn dump_prints_every_message_from_the_oldest_or_from_an_id() {
    let t = Temp::new("dump");
    let ids = build(&t, 200, 10);
    let o = shmq(&["log", "dump", "--dir", &t.dir_arg()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 200);
    assert_eq!(lines[3], format!("{}\t1970-01-01T00:00:03.000000000Z\t48\t9\tcrc ok\tmessage 3", ids[3]));
    let o = shmq(&["log", "dump", "--dir", &t.dir_arg(), "--from", &ids[150].to_string(), "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    let objs: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(objs.len(), 50);
    // An id inside message 150: the dump starts at 151.
    let o = shmq(&["log", "dump", "--dir", &t.dir_arg(), "--from", &(ids[150] + 8).to_string()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let first = text(&o.stdout).lines().next().map(str::to_owned).unwrap_or_default();
    assert!(first.starts_with(&format!("{}\t", ids[151])), "{first}");
    for (k, v) in objs.iter().enumerate() {
        let i = 150 + k;
        assert_eq!(v["id"], ids[i]);
        assert_eq!(v["schema_version"], 1);
        assert_eq!(v["crc_ok"], true);
        let payload = base64::engine::general_purpose::STANDARD.decode(v["payload_base64"].as_str().unwrap()).unwrap();
        assert_eq!(payload, format!("message {i}").as_bytes());
    }
}

#[test]
fn a_torn_tail_fails_verify_and_dump_says_what_recovery_would_cut() {
    let t = Temp::new("torn");
    let ids = build(&t, 100, 50);
    // Tear message 90 (above the mark): messages 91..99 follow it.
    damage(&t, 4096 + ids[90] + 40, &[0xff]);
    let o = shmq(&["log", "verify", "--dir", &t.dir_arg()]);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(err.contains("not intact") && err.contains(&format!("ends at position {}", ids[90])), "{err}");
    assert!(err.contains("(9 valid-looking frames)"), "{err}");
    let o = shmq(&["log", "dump", "--dir", &t.dir_arg()]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(text(&o.stdout).lines().count(), 90);
    assert!(text(&o.stderr).contains("would be cut by a recovery"), "{}", text(&o.stderr));
}

#[test]
fn damage_below_the_mark_fails_verify_naming_file_and_offset() {
    let t = Temp::new("corrupt");
    let ids = build(&t, 100, 80);
    damage(&t, 4096 + ids[20] + 33, &[0xff]);
    let o = shmq(&["log", "verify", "--dir", &t.dir_arg()]);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(err.contains(&format!("0000000000000000.seg at offset {}", 4096 + ids[20])), "{err}");
    // Dump shows what comes before the damage, then fails.
    let o = shmq(&["log", "dump", "--dir", &t.dir_arg()]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(text(&o.stdout).lines().count(), 20);
}

#[test]
fn a_missing_directory_is_exit_1_and_a_missing_dir_option_exit_2() {
    let t = Temp::new("missing");
    let o = shmq(&["log", "verify", "--dir", &t.dir_arg()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("not found"), "{}", text(&o.stderr));
    let o = shmq(&["log", "verify"]);
    assert_eq!(o.status.code(), Some(2));
}

/// `shmq log dump NAME` and `shmq log verify NAME` find a durable queue's log through its
/// segment; the ids match what `send` returned; a volatile queue has no log to show.
#[test]
fn log_dump_and_verify_by_queue_name() {
    use shmq::{Fsync, Options, Producer, Queue};
    let t = Temp::new("by-name");
    let name = format!("cli-log-by-name-{}", std::process::id());
    let _ = Queue::remove(&name);
    Queue::create(&name, Options::new().capacity(1 << 16).max_message(1024).durable(t.log()).fsync(Fsync::Always))
        .unwrap();
    let mut tx = Producer::open(&name).unwrap();
    let ids: Vec<u64> = (0..5).map(|i| tx.send(format!("order {i}").as_bytes()).unwrap()).collect();
    drop(tx);
    let out = shmq(&["log", "dump", &name, "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got: Vec<u64> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["id"].as_u64().unwrap())
        .collect();
    assert_eq!(got, ids);
    let out = shmq(&["log", "verify", &name]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    Queue::remove(&name).unwrap();
    let volatile = format!("cli-log-volatile-{}", std::process::id());
    let _ = Queue::remove(&volatile);
    Queue::create(&volatile, Options::new()).unwrap();
    let out = shmq(&["log", "dump", &volatile]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not durable"));
    Queue::remove(&volatile).unwrap();
}

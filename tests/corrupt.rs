//! Corrupt segments: bytes written straight into `/dev/shm/shmq.NAME`, or objects made from
//! scratch. Every opener (`Producer::open`, `Consumer::open`, `Queue::inspect`) answers
//! with a typed error, never a crash (a crash here would be a SIGBUS or SIGSEGV of the test
//! process, or a panic), and `Queue::remove` still cleans up.

mod common;

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;

use common::{
    Child, OFF_CAPACITY, OFF_DATA, OFF_DATA_OFFSET, OFF_HASH, OFF_HEAD, OFF_MAGIC, OFF_MAX_MESSAGE, OFF_MODE,
    OFF_STATE, OFF_TAIL, OFF_TOTAL_SIZE, OFF_VERSION, RawSegment, Rng, TestQueue,
};
use shmq::{Consumer, Error, Mode, Options, Producer, Queue};

const CAPACITY: u64 = 1 << 16;
const HEADER: u64 = OFF_DATA;

#[test]
fn child_role() {
    common::run_child(|role, queue| match role {
        "unfinished_creator" => {
            // Plays a creator that made the object and holds the creation lock (an OFD
            // write lock on byte 0, as the library's creator does) but never finishes.
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(common::path_of(queue))
                .expect("create the object");
            ofd_lock_byte_0(&f);
            common::say("locked");
            while common::hear().is_some() {}
        }
        other => panic!("unknown role {other}"),
    });
}

fn ofd_lock_byte_0(f: &std::fs::File) {
    use std::os::fd::AsRawFd;
    // SAFETY: all-zero is a valid `flock`.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = 0;
    fl.l_len = 1;
    // SAFETY: `f` is an open file; `fl` is a valid flock that outlives the call.
    let r = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_OFD_SETLK, &mut fl) };
    assert_eq!(r, 0, "F_OFD_SETLK: {}", std::io::Error::last_os_error());
}

#[derive(Clone, Copy, Debug)]
enum Expect {
    Corrupt,
    Incompatible,
}

impl Expect {
    fn matches(self, e: &Error) -> bool {
        match self {
            Expect::Corrupt => matches!(e, Error::Corrupt(_)),
            Expect::Incompatible => matches!(e, Error::Incompatible(_)),
        }
    }
}

/// Every way to attach fails with `expect`, then remove cleans the object up.
fn every_opener_fails(q: &TestQueue, expect: Expect, case: &str) {
    let check = |r: Result<(), Error>, who: &str| match r {
        Err(e) if expect.matches(&e) => {}
        other => panic!("{case}: {who} gave {other:?}, expected {expect:?}"),
    };
    check(Producer::open(&q.name).map(drop), "Producer::open");
    check(Consumer::open(&q.name).map(drop), "Consumer::open");
    check(Queue::inspect(&q.name).map(drop), "Queue::inspect");
    assert!(Queue::list().unwrap().contains(&q.name), "{case}: list still shows it");
    Queue::remove(&q.name).unwrap_or_else(|e| panic!("{case}: remove of a broken queue: {e}"));
    assert!(std::fs::metadata(q.path()).is_err(), "{case}: removed");
}

/// A real queue, then `damage` applied to its bytes.
fn damaged(case: &str, mode: Mode, expect: Expect, damage: impl FnOnce(&RawSegment)) {
    let q = TestQueue::create(case, Options::new().mode(mode).capacity(CAPACITY).max_message(1024));
    // Some traffic first, so the data region is not all zeros.
    {
        let mut tx = Producer::open(&q.name).unwrap();
        for i in 0..100u32 {
            tx.send(&i.to_le_bytes().repeat(i as usize % 50)).unwrap();
        }
    }
    damage(&q.raw());
    every_opener_fails(&q, expect, case);
}

#[test]
fn a_bad_magic_is_corrupt() {
    for mode in [Mode::Spsc, Mode::Mpsc] {
        damaged("bad-magic", mode, Expect::Corrupt, |r| r.write_u64(OFF_MAGIC, u64::from_le_bytes(*b"NOTSHMQ!")));
        damaged("zero-magic", mode, Expect::Corrupt, |r| r.write_u64(OFF_MAGIC, 0));
        damaged("flipped-magic", mode, Expect::Corrupt, |r| r.write_u64(OFF_MAGIC, r.read_u64(OFF_MAGIC) ^ 1));
    }
}

#[test]
fn an_object_that_is_not_a_queue_is_called_that() {
    let q = TestQueue::name("not-a-queue");
    let mut text = b"just some text, not a queue".repeat(1000);
    text.resize(HEADER as usize + CAPACITY as usize, b'.');
    std::fs::write(q.path(), &text).unwrap();
    let e = Producer::open(&q.name).unwrap_err().to_string();
    assert!(e.contains("not a shmq queue") && e.contains("just som"), "{e}");
    assert!(!e.contains("unknown state"), "{e}");
    Queue::remove(&q.name).unwrap();
}

#[test]
fn an_unfinished_object_says_how_to_remove_or_replace_it() {
    let q = TestQueue::name("unfinished-text");
    std::fs::File::create(q.path()).unwrap();
    let e = Consumer::open(&q.name).unwrap_err().to_string();
    assert!(e.contains("shmq rm") && e.contains("open_or_create") && e.contains("died"), "{e}");
}

#[test]
fn another_layout_version_or_hash_is_incompatible() {
    damaged("version-4", Mode::Mpsc, Expect::Incompatible, |r| r.write_u32(OFF_VERSION, 4));
    // The versions next to this build's: an older build's queue, and a newer one's.
    let v = shmq::layout::LAYOUT_VERSION;
    damaged("version-previous", Mode::Mpsc, Expect::Incompatible, |r| r.write_u32(OFF_VERSION, v - 1));
    damaged("version-next", Mode::Mpsc, Expect::Incompatible, |r| r.write_u32(OFF_VERSION, v + 1));
    damaged("version-0", Mode::Spsc, Expect::Incompatible, |r| r.write_u32(OFF_VERSION, 0));
    damaged("version-max", Mode::Mpsc, Expect::Incompatible, |r| r.write_u32(OFF_VERSION, u32::MAX));
    damaged("layout-hash", Mode::Mpsc, Expect::Incompatible, |r| r.write_u64(OFF_HASH, r.read_u64(OFF_HASH) ^ 1));
}

#[test]
fn a_bad_state_or_mode_is_corrupt() {
    damaged("state-7", Mode::Mpsc, Expect::Corrupt, |r| r.write_u32(OFF_STATE, 7));
    damaged("state-max", Mode::Spsc, Expect::Corrupt, |r| r.write_u32(OFF_STATE, u32::MAX));
    damaged("mode-0", Mode::Mpsc, Expect::Corrupt, |r| r.write_u32(OFF_MODE, 0));
    damaged("mode-3", Mode::Spsc, Expect::Corrupt, |r| r.write_u32(OFF_MODE, 3));
}

#[test]
fn a_capacity_that_is_not_a_power_of_two_or_out_of_bounds_is_corrupt() {
    for cap in [CAPACITY + 1, CAPACITY - 1, 3 << 14, 0, 1, 512, 1 << 41, 1 << 63, u64::MAX] {
        damaged(&format!("capacity-{cap}"), Mode::Mpsc, Expect::Corrupt, |r| r.write_u64(OFF_CAPACITY, cap));
    }
    // Capacity and total size changed together, consistently with each other but not with
    // the object: mapping what the header claims would run past the end of the object.
    damaged("capacity-doubled", Mode::Spsc, Expect::Corrupt, |r| {
        r.write_u64(OFF_CAPACITY, CAPACITY * 2);
        r.write_u64(OFF_TOTAL_SIZE, HEADER + CAPACITY * 2);
    });
    damaged("capacity-halved", Mode::Mpsc, Expect::Corrupt, |r| {
        r.write_u64(OFF_CAPACITY, CAPACITY / 2);
        r.write_u64(OFF_TOTAL_SIZE, HEADER + CAPACITY / 2);
    });
}

#[test]
fn a_max_message_above_half_the_capacity_is_corrupt() {
    for max in [CAPACITY as u32 / 2 + 1, CAPACITY as u32, u32::MAX] {
        damaged(&format!("max-message-{max}"), Mode::Spsc, Expect::Corrupt, |r| r.write_u32(OFF_MAX_MESSAGE, max));
    }
}

#[test]
fn sizes_larger_than_the_object_are_corrupt() {
    for total in [HEADER + CAPACITY + 4096, HEADER + CAPACITY + 1, (HEADER + CAPACITY) * 2, u64::MAX, 0] {
        damaged(&format!("total-size-{total}"), Mode::Mpsc, Expect::Corrupt, |r| r.write_u64(OFF_TOTAL_SIZE, total));
    }
    for off in [0, HEADER + 4096, HEADER / 2, u64::MAX] {
        damaged(&format!("data-offset-{off}"), Mode::Spsc, Expect::Corrupt, |r| r.write_u64(OFF_DATA_OFFSET, off));
    }
}

#[test]
fn a_truncated_or_grown_object_is_corrupt() {
    for len in [HEADER + CAPACITY - 4096, HEADER + CAPACITY / 2, HEADER + 1, HEADER, HEADER - 1, 4096, 100, 1] {
        damaged(&format!("truncated-{len}"), Mode::Mpsc, Expect::Corrupt, |r| r.set_len(len));
    }
    damaged("grown", Mode::Spsc, Expect::Corrupt, |r| r.set_len(HEADER + CAPACITY * 2));
}

#[test]
fn a_zero_length_object_whose_creator_is_gone_is_corrupt_and_open_or_create_replaces_it() {
    // Truncated to nothing after a real creation, and made from scratch.
    damaged("zero-length", Mode::Mpsc, Expect::Corrupt, |r| r.set_len(0));
    for case in ["scratch-zero", "scratch-zero-replaced"] {
        let q = TestQueue::name(case);
        std::fs::File::create(q.path()).unwrap();
        if case == "scratch-zero" {
            every_opener_fails(&q, Expect::Corrupt, case);
        } else {
            // The creator is provably dead (nobody holds the creation lock): replaced.
            let cfg = Queue::open_or_create(&q.name, Options::new().capacity(4096).max_message(64)).unwrap();
            assert_eq!(cfg.capacity, 4096);
            let mut tx = Producer::open(&q.name).unwrap();
            let mut rx = Consumer::open(&q.name).unwrap();
            tx.send(b"works").unwrap();
            assert_eq!(&*rx.try_recv().unwrap().unwrap(), b"works");
        }
    }
}

#[test]
fn a_header_left_initializing_by_a_dead_creator_is_corrupt() {
    // The magic is there but `ready` never came.
    damaged("initializing", Mode::Mpsc, Expect::Corrupt, |r| r.write_u32(OFF_STATE, 0));
    // All zeros: nothing was written at all.
    let q = TestQueue::name("all-zero");
    std::fs::File::create(q.path()).unwrap().set_len(HEADER + CAPACITY).unwrap();
    every_opener_fails(&q, Expect::Corrupt, "all-zero");
}

#[test]
fn an_object_whose_creator_lives_but_never_finishes_is_busy_not_corrupt() {
    let q = TestQueue::name("slow-creator");
    let mut creator = Child::spawn("unfinished_creator", &q.name, &[]);
    creator.expect("locked");
    let (r, took) = common::timed(|| Producer::open(&q.name).map(drop));
    assert!(matches!(r, Err(Error::Busy(_))), "{r:?}");
    assert!(took >= std::time::Duration::from_secs(1), "the opener waited for the creator: {took:?}");
    creator.kill9();
    // Now the creator is dead: corrupt, and replaceable.
    assert!(matches!(Consumer::open(&q.name), Err(Error::Corrupt(_))));
    Queue::open_or_create(&q.name, Options::new()).unwrap();
    Producer::open(&q.name).unwrap();
}

#[test]
fn objects_of_random_bytes_are_corrupt() {
    let mut rng = Rng(0xbad_5eed);
    for i in 0..20 {
        let q = TestQueue::name(&format!("random-{i}"));
        let len = [100, HEADER - 8, HEADER, HEADER + 4096, HEADER + CAPACITY][i % 5];
        let mut bytes = Vec::with_capacity(len as usize);
        while (bytes.len() as u64) < len {
            bytes.extend_from_slice(&rng.next_u64().to_le_bytes());
        }
        bytes.truncate(len as usize);
        if i % 2 == 1 {
            // The right magic and version, random everything else.
            bytes[..8].copy_from_slice(b"SHMQ\0RNG");
            bytes[8..12].copy_from_slice(&1u32.to_le_bytes());
        }
        std::fs::write(q.path(), &bytes).unwrap();
        let check = |r: Result<(), Error>, who: &str| {
            assert!(
                matches!(r, Err(Error::Corrupt(_) | Error::Incompatible(_))),
                "random object {i} ({len} bytes): {who} gave {r:?}"
            );
        };
        check(Producer::open(&q.name).map(drop), "Producer::open");
        check(Consumer::open(&q.name).map(drop), "Consumer::open");
        check(Queue::inspect(&q.name).map(drop), "Queue::inspect");
        Queue::remove(&q.name).unwrap();
    }
}

/// Positions are checked when a handle attaches, too, and by `Queue::inspect` (so `shmq
/// stat`, `ls`, `top` and the exporter report the queue as unreadable, not as a full one).
#[test]
fn implausible_positions_fail_the_attach_and_the_inspection_with_corrupt() {
    let cases: [(&str, Mode, u64, u64, bool); 7] = [
        // (case, mode, tail, head, consumer attaches (else producer))
        ("head-unaligned", Mode::Spsc, 800, 803, true),
        ("head-unaligned-mpsc", Mode::Mpsc, 800, 803, true),
        ("tail-unaligned", Mode::Spsc, 805, 800, false),
        ("tail-beyond-capacity", Mode::Spsc, 800 + CAPACITY + 8, 800, false),
        ("head-max", Mode::Spsc, 800, u64::MAX - 7, false),
        ("tail-max", Mode::Mpsc, u64::MAX, 800, false),
        ("tail-far", Mode::Mpsc, 1 << 48, 800, false),
    ];
    for (case, mode, tail, head, consumer) in cases {
        let q = TestQueue::create(case, Options::new().mode(mode).capacity(CAPACITY).max_message(1024));
        let r = q.raw();
        r.write_u64(OFF_TAIL, tail);
        r.write_u64(OFF_HEAD, head);
        let got = if consumer { Consumer::open(&q.name).map(drop) } else { Producer::open(&q.name).map(drop) };
        assert!(matches!(got, Err(Error::Corrupt(_))), "{case}: {got:?}");
        let seen = Queue::inspect(&q.name);
        assert!(matches!(&seen, Err(Error::Corrupt(e)) if e.contains("positions")), "{case}: {seen:?}");
        // The failed attach gave its slot back.
        r.write_u64(OFF_TAIL, 800);
        r.write_u64(OFF_HEAD, 800);
        assert!(Queue::inspect(&q.name).unwrap().participants.is_empty(), "{case}");
    }
}

/// `f` on another thread, which must finish within 5 s (a bug that blocks in the kernel
/// fails the test rather than hanging it; the blocked thread ends with the process).
fn within_5s<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap_or_else(|_| panic!("{what} blocked"))
}

/// Anyone may make `/dev/shm/shmq.NAME`. A FIFO there (whose read-only open would wait for
/// a writer: `Queue::inspect`, and so `shmq ls`, `stat`, `top` and the exporter, hung on it)
/// is `Corrupt` at once for every opener; a symbolic link to a file of ours is not
/// followed, and the file is left as it was.
#[test]
fn a_fifo_or_a_symbolic_link_named_like_a_queue_is_refused_at_once_and_never_followed() {
    let q = TestQueue::name("fifo");
    let path = std::ffi::CString::new(q.path()).unwrap();
    // SAFETY: a NUL-terminated path; mkfifo touches nothing else.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0, "{}", std::io::Error::last_os_error());
    let name = q.name.clone();
    within_5s("opening a FIFO", move || {
        for (who, r) in [
            ("Producer::open", Producer::open(&name).map(drop)),
            ("Consumer::open", Consumer::open(&name).map(drop)),
            ("Queue::inspect", Queue::inspect(&name).map(drop)),
        ] {
            assert!(matches!(r, Err(Error::Corrupt(_))), "{who} of a FIFO gave {r:?}");
        }
        assert!(Queue::list().unwrap().contains(&name), "list still shows it");
    });
    Queue::remove(&q.name).expect("remove the FIFO");
    assert!(std::fs::metadata(q.path()).is_err(), "removed");

    let q = TestQueue::name("symlink");
    let target =
        std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("shmq-link-target-{}", std::process::id()));
    std::fs::write(&target, vec![7u8; 8192]).unwrap();
    std::os::unix::fs::symlink(&target, q.path()).unwrap();
    let name = q.name.clone();
    within_5s("opening a symbolic link", move || {
        assert!(Producer::open(&name).is_err() && Consumer::open(&name).is_err() && Queue::inspect(&name).is_err());
        assert!(Queue::open_or_create(&name, Options::new()).is_err(), "made a queue through the link");
    });
    assert_eq!(std::fs::read(&target).unwrap(), vec![7u8; 8192], "the link's target changed");
    let _ = std::fs::remove_file(q.path());
    let _ = std::fs::remove_file(&target);
}

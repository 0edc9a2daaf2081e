//! Every error path of the API: names, options, existence, sizes, timeouts, full, empty,
//! busy, removal (across processes), permissions.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::Duration;

use common::{Child, OFF_DATA_WAITERS, OFF_SPACE_WAITERS, TestQueue, timed};
use shmq::{Consumer, Error, MAX_NAME_LEN, Mode, Options, Producer, Queue, Wait};

const MS20: Duration = Duration::from_millis(20);

fn small(mode: Mode) -> Options {
    Options::new().mode(mode).capacity(4096).max_message(1024)
}

#[test]
fn child_role() {
    common::run_child(|role, queue| match role {
        "consumer_until_closed" => {
            let mut rx = Consumer::open_with(queue, common::arg::<Wait>("wait")).expect("open consumer");
            common::say(&format!("ready {}", common::tid()));
            // No timeout: the removal must wake us (the parent's watchdog bounds this).
            match rx.recv() {
                Err(Error::Closed) => {}
                Ok(m) => panic!("a message of {} bytes from an empty queue", m.len()),
                Err(e) => panic!("recv: {e}"),
            }
        }
        "drain_then_closed" => {
            let mut rx = Consumer::open(queue).expect("open consumer");
            common::say("ready");
            assert_eq!(common::hear().as_deref(), Some("go"));
            for i in 0..3u8 {
                assert_eq!(&*rx.recv().expect("what was sent before the removal"), &[i; 3]);
            }
            assert!(matches!(rx.recv(), Err(Error::Closed)));
            assert!(matches!(rx.try_recv(), Err(Error::Closed)));
            assert!(matches!(rx.recv_timeout(MS20), Err(Error::Closed)));
        }
        "producer_until_closed" => {
            let mut tx = Producer::open_with(queue, common::arg::<Wait>("wait")).expect("open producer");
            while tx.try_send(&[7; 100]).is_ok() {}
            common::say(&format!("full {}", common::tid()));
            match tx.send(&[7; 100]) {
                Err(Error::Closed) => {}
                other => panic!("send on a removed full queue: {other:?}"),
            }
        }
        "create_under_umask" => {
            let umask: u32 = common::arg("umask");
            rustix::process::umask(rustix::fs::Mode::from_raw_mode(umask));
            Queue::create(&format!("{queue}-default"), Options::new().capacity(4096).max_message(64))
                .expect("create with the default permissions");
            for bits in [0o600, 0o640, 0o660, 0o666] {
                let o = Options::new().capacity(4096).max_message(64).permissions(bits);
                Queue::create(&format!("{queue}-{bits:o}"), o).expect("create");
            }
            common::say("created");
        }
        other => panic!("unknown role {other}"),
    });
}

// ---------------------------------------------------------------------------------------
// Names.

fn bad_names() -> Vec<String> {
    vec![
        String::new(),
        "a".repeat(MAX_NAME_LEN + 1),
        ".hidden".into(),
        ".".into(),
        "..".into(),
        "a/b".into(),
        "/abs".into(),
        "has space".into(),
        " lead".into(),
        "trail ".into(),
        "tab\t".into(),
        "nul\0".into(),
        "naïve".into(),
        "日本".into(),
        "star*".into(),
        "semi;colon".into(),
    ]
}

#[test]
fn bad_names_are_invalid_everywhere() {
    for name in bad_names() {
        let bad = |r: Result<(), Error>, what: &str| {
            assert!(matches!(r, Err(Error::InvalidName(_))), "{what}({name:?}): {r:?}");
        };
        bad(Queue::create(&name, Options::new()).map(drop), "create");
        bad(Queue::open_or_create(&name, Options::new()).map(drop), "open_or_create");
        bad(Producer::open(&name).map(drop), "Producer::open");
        bad(Consumer::open(&name).map(drop), "Consumer::open");
        bad(Queue::inspect(&name).map(drop), "inspect");
        bad(Queue::remove(&name), "remove");
    }
}

#[test]
fn a_bad_name_is_shown_short_with_the_rule_it_breaks() {
    let long = "a".repeat(300);
    let cases: [(&str, &str); 5] = [
        (&long, "is longer than 200 bytes"),
        ("", "is empty"),
        (".hidden", "starts with '.'"),
        ("a/b", "has '/' at byte 1"),
        ("naïve", "has 'ï' at byte 2"),
    ];
    for (name, rule) in cases {
        let text = Queue::create(name, Options::new()).unwrap_err().to_string();
        assert!(text.contains(rule), "{name:?}: {text}");
        assert!(text.contains("[A-Za-z0-9._-]"), "{name:?}: {text}");
    }
    let text = Producer::open(&long).unwrap_err().to_string();
    assert!(text.contains("of 300 bytes)") && text.len() < 200, "the long name is cut: {text}");
}

#[test]
fn names_of_the_allowed_bytes_up_to_200_long_are_valid() {
    let pid = std::process::id();
    for name in [
        format!("x{pid}-{}", "a".repeat(MAX_NAME_LEN - 12)),
        format!("x{pid}.dots.in-the_middle.A9"),
        format!("{pid}-"),
    ] {
        assert!(name.len() <= MAX_NAME_LEN);
        let _guard = TestQueue { name: name.clone() };
        Queue::create(&name, small(Mode::Mpsc)).unwrap_or_else(|e| panic!("create {name:?}: {e}"));
        assert!(Queue::list().unwrap().contains(&name));
        Queue::remove(&name).unwrap();
    }
    let exactly_200 = format!("{pid}").chars().chain(std::iter::repeat('z')).take(MAX_NAME_LEN).collect::<String>();
    let _guard = TestQueue { name: exactly_200.clone() };
    Queue::create(&exactly_200, small(Mode::Mpsc)).unwrap();
    Queue::remove(&exactly_200).unwrap();
}

// ---------------------------------------------------------------------------------------
// Existence.

#[test]
fn creating_an_existing_name_is_exists() {
    let q = TestQueue::create("exists", small(Mode::Spsc));
    assert!(matches!(Queue::create(&q.name, small(Mode::Spsc)), Err(Error::Exists(_))));
    assert!(matches!(Queue::create(&q.name, Options::new()), Err(Error::Exists(_))));
    // open_or_create: the same options open it, others are refused.
    assert_eq!(Queue::open_or_create(&q.name, small(Mode::Spsc)).unwrap().capacity, 4096);
    for other in [small(Mode::Mpsc), small(Mode::Spsc).capacity(8192), small(Mode::Spsc).max_message(512)] {
        let r = Queue::open_or_create(&q.name, other.clone());
        assert!(matches!(r, Err(Error::InvalidArgument(_))), "{other:?}: {r:?}");
    }
}

#[test]
fn opening_a_missing_queue_is_not_found() {
    let q = TestQueue::name("missing");
    assert!(matches!(Producer::open(&q.name), Err(Error::NotFound(_))));
    assert!(matches!(Consumer::open(&q.name), Err(Error::NotFound(_))));
    assert!(matches!(Queue::inspect(&q.name), Err(Error::NotFound(_))));
    assert!(matches!(Queue::remove(&q.name), Err(Error::NotFound(_))));
    assert!(!Queue::list().unwrap().contains(&q.name));
}

// ---------------------------------------------------------------------------------------
// Options.

#[test]
fn bad_options_are_invalid_arguments_and_leave_nothing_behind() {
    let cases = [
        Options::new().capacity(1000),
        Options::new().capacity(3 << 12),
        Options::new().capacity(0),
        Options::new().capacity(512).max_message(64),
        Options::new().capacity(1 << 41),
        Options::new().capacity(u64::MAX),
        Options::new().capacity(4096).max_message(2049),
        Options::new().capacity(4096).max_message(u32::MAX),
        Options::new().capacity(4096).max_message(0),
        Options::new().permissions(0o400),
        Options::new().permissions(0o200),
        Options::new().permissions(0o1600),
        Options::new().permissions(0o7777),
    ];
    for o in cases {
        let q = TestQueue::name("bad-options");
        let r = Queue::create(&q.name, o.clone());
        assert!(matches!(r, Err(Error::InvalidArgument(_))), "{o:?}: {r:?}");
        assert!(std::fs::metadata(q.path()).is_err(), "{o:?} left an object behind");
        let r = Queue::open_or_create(&q.name, o.clone());
        assert!(matches!(r, Err(Error::InvalidArgument(_))), "open_or_create {o:?}: {r:?}");
    }
    let q = TestQueue::name("max-message-0");
    let text = Queue::create(&q.name, Options::new().max_message(0)).unwrap_err().to_string();
    assert!(text.contains("max_message must be at least 1 byte"), "{text}");
    // The limits themselves are fine.
    let q = TestQueue::create("edge-options", Options::new().capacity(1024).max_message(512));
    let mut tx = Producer::open(&q.name).unwrap();
    tx.try_send(&[1; 512]).unwrap();
}

// ---------------------------------------------------------------------------------------
// Sizes.

#[test]
fn a_message_above_max_message_is_too_large_on_every_send_path() {
    let q = TestQueue::create("too-large", small(Mode::Mpsc));
    let mut tx = Producer::open(&q.name).unwrap();
    let big = vec![0u8; 1025];
    let too_large = |r: Result<(), Error>, what: &str| {
        assert!(matches!(r, Err(Error::TooLarge { len: 1025, max: 1024 })), "{what}: {r:?}");
    };
    too_large(tx.send(&big).map(drop), "send");
    too_large(tx.try_send(&big).map(drop), "try_send");
    too_large(tx.send_timeout(&big, MS20).map(drop), "send_timeout");
    too_large(tx.reserve(1025).map(drop), "reserve");
    too_large(tx.try_reserve(1025).map(drop), "try_reserve");
    too_large(tx.reserve_timeout(1025, MS20).map(drop), "reserve_timeout");
    too_large(tx.send_batch(&[&b"ok"[..], &big]), "send_batch");
    too_large(tx.try_send_batch(&[&b"ok"[..], &big]).map(drop), "try_send_batch");
    assert!(matches!(tx.try_send(&vec![0; usize::MAX >> 40]), Err(Error::TooLarge { .. })));
    // Nothing of the refused batches went out; the edges are fine.
    tx.try_send(&[9; 1024]).unwrap();
    tx.try_send(&[]).unwrap();
    let mut rx = Consumer::open(&q.name).unwrap();
    assert_eq!(rx.try_recv().unwrap().unwrap().len(), 1024);
    assert_eq!(rx.try_recv().unwrap().unwrap().len(), 0);
    assert!(rx.try_recv().unwrap().is_none());
}

// ---------------------------------------------------------------------------------------
// Full, empty, timeouts.

fn fill(tx: &mut Producer) -> usize {
    let mut n = 0;
    loop {
        match tx.try_send(&[5; 100]) {
            Ok(_) => n += 1,
            Err(Error::Full) => return n,
            Err(e) => panic!("try_send: {e}"),
        }
    }
}

#[test]
fn try_calls_on_a_full_queue_are_full_and_on_an_empty_one_none() {
    for mode in [Mode::Spsc, Mode::Mpsc] {
        let q = TestQueue::create(&format!("full-empty-{mode}"), small(mode));
        let mut rx = Consumer::open(&q.name).unwrap();
        assert!(rx.try_recv().unwrap().is_none());
        assert_eq!(rx.try_recv_batch(10, |_| panic!("nothing to take")).unwrap(), 0);
        assert!(rx.try_peek().unwrap().is_none());
        assert!(rx.is_empty());
        assert_eq!(rx.len(), 0);
        assert!(!rx.advance().unwrap());

        let mut tx = Producer::open(&q.name).unwrap();
        let n = fill(&mut tx);
        assert!(n > 0 && n < 4096 / 100, "{n} messages of 100 bytes in 4096");
        assert!(matches!(tx.try_send(&[5; 100]), Err(Error::Full)));
        assert!(matches!(tx.try_reserve(100), Err(Error::Full)));
        assert!(matches!(tx.try_send_batch(&[[5; 100]]), Err(Error::Full)));
        assert_eq!(tx.len(), n);
        let full_events = Queue::inspect(&q.name).unwrap().sent.full_events;
        assert!(full_events >= 4, "every call that found the queue full is counted: {full_events}");
        // Drained, it takes messages again.
        for _ in 0..n {
            assert_eq!(rx.try_recv().unwrap().unwrap().len(), 100);
        }
        assert!(rx.try_recv().unwrap().is_none());
        tx.try_send(&[5; 100]).unwrap();
    }
}

#[test]
fn waits_of_20ms_time_out_after_at_least_20ms() {
    for wait in [Wait::Block, Wait::Adaptive] {
        for mode in [Mode::Spsc, Mode::Mpsc] {
            let q = TestQueue::create(&format!("timeouts-{mode}"), small(mode));
            let mut rx = Consumer::open_with(&q.name, wait).unwrap();
            let mut tx = Producer::open_with(&q.name, wait).unwrap();
            let timeout = |(r, took): (Result<(), Error>, Duration), what: &str| {
                assert!(matches!(r, Err(Error::Timeout)), "{wait:?} {mode} {what}: {r:?}");
                assert!(took >= MS20, "{wait:?} {mode} {what}: timed out after {took:?}, before 20 ms");
            };
            timeout(timed(|| rx.recv_timeout(MS20).map(drop)), "recv_timeout");
            timeout(timed(|| rx.peek(Some(MS20)).map(drop)), "peek");
            timeout(timed(|| rx.recv_batch_timeout(8, MS20, |_| ()).map(drop)), "recv_batch_timeout");
            fill(&mut tx);
            timeout(timed(|| tx.send_timeout(&[5; 100], MS20).map(drop)), "send_timeout");
            timeout(timed(|| tx.reserve_timeout(100, MS20).map(drop)), "reserve_timeout");
            // Each of those was a wait on the futex.
            drop((rx, tx));
            let s = Queue::inspect(&q.name).unwrap();
            assert!(s.received.wait_calls >= 3 && s.sent.wait_calls >= 2, "{:?} {:?}", s.received, s.sent);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Busy.

#[test]
fn a_second_consumer_is_busy() {
    let q = TestQueue::create("second-consumer", small(Mode::Mpsc));
    let _rx = Consumer::open(&q.name).unwrap();
    assert!(matches!(Consumer::open(&q.name), Err(Error::Busy(_))));
    assert!(matches!(Consumer::open_with(&q.name, Wait::Block), Err(Error::Busy(_))));
}

#[test]
fn a_second_spsc_producer_is_busy() {
    let q = TestQueue::create("second-producer", small(Mode::Spsc));
    let _tx = Producer::open(&q.name).unwrap();
    assert!(matches!(Producer::open(&q.name), Err(Error::Busy(_))));
}

#[test]
fn a_full_participant_table_is_busy() {
    let q = TestQueue::create("table-full", small(Mode::Mpsc));
    let mut producers = Vec::new();
    loop {
        match Producer::open(&q.name) {
            Ok(p) => producers.push(p),
            Err(Error::Busy(_)) => break,
            Err(e) => panic!("open producer {}: {e}", producers.len()),
        }
        assert!(producers.len() <= 64, "the table has 64 slots");
    }
    assert_eq!(producers.len(), 63, "slot 0 is the consumer's");
    let _rx = Consumer::open(&q.name).expect("the consumer has its own slot");
    producers.pop();
    let _again = Producer::open(&q.name).expect("a slot given back is reused");
}

// ---------------------------------------------------------------------------------------
// Removal.

fn removal_wakes_a_blocked_consumer_with_closed(wait: &str) {
    let q = TestQueue::create(&format!("remove-wakes-{wait}"), small(Mode::Mpsc));
    let raw = q.raw();
    let mut child = Child::spawn("consumer_until_closed", &q.name, &[("wait", wait.into())]);
    let tid: i32 = child.expect("ready").parse().unwrap();
    child.wait_asleep_on_futex(tid, &raw, OFF_DATA_WAITERS);
    Queue::remove(&q.name).unwrap();
    child.wait_ok();
}

#[test]
fn removal_wakes_a_consumer_blocked_with_wait_block_which_gets_closed() {
    removal_wakes_a_blocked_consumer_with_closed("block");
}

#[test]
fn removal_wakes_a_consumer_blocked_with_wait_adaptive_which_gets_closed() {
    removal_wakes_a_blocked_consumer_with_closed("adaptive");
}

#[test]
fn removal_wakes_a_producer_blocked_on_a_full_queue_which_gets_closed() {
    for mode in [Mode::Spsc, Mode::Mpsc] {
        let q = TestQueue::create(&format!("remove-wakes-producer-{mode}"), small(mode));
        let raw = q.raw();
        let mut child = Child::spawn("producer_until_closed", &q.name, &[("wait", "block".into())]);
        let tid: i32 = child.expect("full").parse().unwrap();
        child.wait_asleep_on_futex(tid, &raw, OFF_SPACE_WAITERS);
        Queue::remove(&q.name).unwrap();
        child.wait_ok();
    }
}

#[test]
fn after_removal_the_consumer_drains_what_is_left_then_gets_closed_and_producers_get_closed() {
    let q = TestQueue::create("remove-drain", small(Mode::Mpsc));
    let mut child = Child::spawn("drain_then_closed", &q.name, &[]);
    child.expect("ready");
    let mut tx = Producer::open(&q.name).unwrap();
    for i in 0..3u8 {
        tx.send(&[i; 3]).unwrap();
    }
    Queue::remove(&q.name).unwrap();
    assert!(Queue::inspect(&q.name).is_err(), "the name is gone");
    child.tell("go");

    assert!(matches!(tx.try_send(b"late"), Err(Error::Closed)));
    assert!(matches!(tx.send(b"late"), Err(Error::Closed)));
    assert!(matches!(tx.send_timeout(b"late", MS20), Err(Error::Closed)));
    assert!(matches!(tx.reserve(4).map(drop), Err(Error::Closed)));
    assert!(matches!(tx.try_send_batch(&[b"late"]), Err(Error::Closed)));
    assert!(matches!(Producer::open(&q.name), Err(Error::NotFound(_))));
    assert!(matches!(Consumer::open(&q.name), Err(Error::NotFound(_))));
    child.wait_ok();
    // The name is free again while an old handle still lives.
    let _new = TestQueue { name: q.name.clone() };
    Queue::create(&q.name, small(Mode::Mpsc)).unwrap();
    assert!(!Queue::inspect(&q.name).unwrap().closed);
    drop(tx);
}

// ---------------------------------------------------------------------------------------
// Permissions.

#[test]
fn the_object_has_exactly_the_requested_mode_whatever_the_umask() {
    for umask in [0o077u32, 0o777, 0o022, 0] {
        let base = TestQueue::name(&format!("perm-{umask:o}"));
        let names: Vec<(String, u32)> = std::iter::once((format!("{}-default", base.name), 0o600))
            .chain([0o600, 0o640, 0o660, 0o666].map(|b| (format!("{}-{b:o}", base.name), b)))
            .collect();
        let _guards: Vec<TestQueue> = names.iter().map(|(n, _)| TestQueue { name: n.clone() }).collect();
        let mut child = Child::spawn("create_under_umask", &base.name, &[("umask", umask.to_string())]);
        child.expect("created");
        child.wait_ok();
        for (name, bits) in &names {
            let meta = std::fs::metadata(common::path_of(name)).unwrap();
            assert_eq!(meta.permissions().mode() & 0o7777, *bits, "{name} under umask {umask:o}");
            assert_eq!(meta.uid(), rustix::process::getuid().as_raw());
            assert_eq!(Queue::inspect(name).unwrap().config.permissions, *bits);
        }
    }
}

#[test]
fn advance_takes_the_message_at_the_head_even_after_other_receives_since_the_peek() {
    // `advance` remembers what the last peek found; a receive in between moves the head,
    // and `advance` must then take the message now at the head, not the one peeked.
    for mode in [Mode::Spsc, Mode::Mpsc] {
        let q = TestQueue::create(&format!("peek-advance-{mode}"), small(mode));
        let mut tx = Producer::open(&q.name).unwrap();
        for m in [&b"one"[..], b"two", b"three", b"four"] {
            tx.send(m).unwrap();
        }
        let mut rx = Consumer::open(&q.name).unwrap();
        assert_eq!(rx.try_peek().unwrap(), Some(&b"one"[..]));
        assert_eq!(&*rx.try_recv().unwrap().unwrap(), b"one", "a peek takes nothing");
        assert!(rx.advance().unwrap(), "takes \"two\"");
        assert_eq!(rx.peek(None).unwrap(), b"three");
        assert!(rx.advance().unwrap(), "takes \"three\", as peeked");
        assert_eq!(&*rx.try_recv().unwrap().unwrap(), b"four");
        assert!(!rx.advance().unwrap(), "nothing left");
        assert_eq!(rx.len(), 0);
    }
}

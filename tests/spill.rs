//! Spill: a durable queue's producers never wait for its readers. A consumer (or a named
//! subscription) a ring behind is detached and reads the log files from where it stood,
//! then rejoins the ring, in order, with no gap and no duplicate; producers wait only at
//! `max_log_bytes`. Real processes, real files on the real disk.
//!
//! Kill points of the consumer's side (see `src/queue/spill.rs`): killed while reading the
//! log (`spill-rejoin`, its cursor detached), in the middle of a rejoin (`spill-rejoining`:
//! its cursor plain, the producers' `gate_min` not yet checked), and while it holds a
//! message read in the ring (its cursor pinned). Each time the next consumer goes on from
//! the position the killed one published. A member of a spilled subscription killed at each
//! step of a claim in the log (`member-claim-recorded`, `member-claimed`,
//! `member-claim-held`, `member-span-read`) leaves the next member what it had not released.

mod common;

use std::time::{Duration, Instant};

use common::{Child, LogDir, TestQueue};
use rustix::process::Signal;
use shmq::{Consumer, Error, Fsync, Mode, Options, Producer, Queue, Wait};

const CAP: u64 = 1 << 16;

#[test]
fn child_role() {
    common::run_child(|role, queue| match role {
        "reader" => reader(queue),
        "producer" => producer(queue),
        "holder" => holder(queue),
        "member" => member(queue),
        "tracker" => tracker(queue),
        "streamer" => streamer(queue),
        "poller" => poller(queue),
        other => panic!("unknown role {other}"),
    });
}

/// Receives messages in order from `from` (seq) up to `count`, checking each: says `first`
/// after the first, `at SEQ` every 500, `done N` at the end. Messages with seq below `from`
/// (delivered again after a predecessor died) are allowed before `from` is reached only when
/// `redelivered` says so.
fn reader(queue: &str) {
    let count: u32 = common::arg("count");
    let mut rx = Consumer::open_with(queue, Wait::Block).expect("open");
    common::say("ready");
    let mut next: Option<u32> = None;
    let mut n = 0u32;
    let mut last_id = None;
    while next.is_none_or(|s| s < count) {
        let m = rx.recv_timeout(common::OP_TIMEOUT).expect("recv");
        let seq = check(&m);
        match next {
            None => common::say(&format!("first {seq}")),
            Some(s) => assert_eq!(seq, s, "messages in order, none missing, none twice"),
        }
        assert!(last_id.is_none_or(|l| l < m.id()), "ids increase");
        last_id = Some(m.id());
        next = Some(seq + 1);
        n += 1;
        if seq % 500 == 0 {
            common::say(&format!("at {seq}"));
        }
    }
    // Caught up: the next look finds nothing, and rejoins the ring on the way.
    assert!(rx.try_recv().expect("try_recv").is_none(), "nothing past the last message");
    common::say(&format!("done {n}"));
}

/// A member of subscription `sub`, alone in it (so in order): receives seq `from..count`,
/// checking each; says `first SEQ`, `at SEQ` every 500, and `done N REDELIVERED` (messages
/// with a delivery count above 1).
fn member(queue: &str) {
    let sub: String = common::arg("sub");
    let from: u32 = common::arg("from");
    let count: u32 = common::arg("count");
    let mut rx = Consumer::subscribe_with(queue, &sub, Wait::Block).expect("subscribe");
    common::say("ready");
    let (mut redelivered, mut last_id) = (0u32, None);
    for expected in from..count {
        let m = rx.recv_timeout(common::OP_TIMEOUT).expect("recv");
        let seq = check(&m);
        assert_eq!(seq, expected, "messages in order, none missing, none twice");
        assert!(last_id.is_none_or(|l| l < m.id()), "ids increase");
        last_id = Some(m.id());
        redelivered += u32::from(m.delivery_count() > 1);
        if expected == from {
            common::say(&format!("first {seq}"));
        }
        if seq % 500 == 0 {
            common::say(&format!("at {seq}"));
        }
    }
    assert!(rx.try_recv().expect("try_recv").is_none(), "nothing past the last message");
    common::say(&format!("done {} {redelivered}", count - from));
}

/// Receives with `try_recv` only, never waiting in the library: says `empty` once it found
/// the queue empty, waits for a line from the parent, then polls (sleeping 1 ms between
/// empty polls) until it has `count` messages in order; says `done N`.
fn poller(queue: &str) {
    let count: u32 = common::arg("count");
    let mut rx = Consumer::open_with(queue, Wait::Spin).expect("open");
    assert!(rx.try_recv().expect("try_recv").is_none(), "the queue starts empty");
    common::say("empty");
    common::hear().expect("the parent's go");
    let deadline = Instant::now() + common::OP_TIMEOUT;
    let mut next = 0;
    while next < count {
        match rx.try_recv().expect("try_recv") {
            Some(m) => {
                assert_eq!(check(&m), next, "messages in order, none missing, none twice");
                next += 1;
            }
            None => {
                assert!(Instant::now() < deadline, "try_recv found nothing at {next} of {count} messages sent");
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
    assert!(rx.try_recv().expect("try_recv").is_none(), "nothing past the last message");
    common::say(&format!("done {count}"));
}

/// Receives messages for ever, saying `got SEQ` for each before releasing it.
fn tracker(queue: &str) {
    let mut rx = Consumer::open_with(queue, Wait::Block).expect("open");
    common::say("ready");
    loop {
        let m = rx.recv_timeout(common::OP_TIMEOUT).expect("recv");
        common::say(&format!("got {}", check(&m)));
    }
}

/// Sends seq 0, 1, ... in bursts of `burst` messages, `pace` ms apart, until the parent
/// closes its stdin; then says `sent N`.
fn streamer(queue: &str) {
    let burst: u32 = common::arg("burst");
    let pace = Duration::from_millis(common::arg("pace"));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::spawn(move || {
        while common::hear().is_some() {}
        flag.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    let mut tx = Producer::open_with(queue, Wait::Block).expect("open");
    common::say("ready");
    let mut seq = 0;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        for _ in 0..burst {
            tx.send_timeout(&msg(seq), common::OP_TIMEOUT).expect("send");
            seq += 1;
        }
        std::thread::sleep(pace);
    }
    common::say(&format!("sent {seq}"));
}

/// Sends seq `from..count` with `send_timeout`, pausing `pace` ms every 64 messages.
fn producer(queue: &str) {
    let from: u32 = common::arg("from");
    let count: u32 = common::arg("count");
    let pace = Duration::from_millis(std::env::var("SHMQ_ARG_pace").ok().and_then(|v| v.parse().ok()).unwrap_or(0));
    let mut tx = Producer::open_with(queue, Wait::Block).expect("open");
    for seq in from..count {
        tx.send_timeout(&msg(seq), common::OP_TIMEOUT).expect("send");
        if seq % 64 == 63 && !pace.is_zero() {
            std::thread::sleep(pace);
        }
    }
    common::say("done");
}

/// Receives one message and holds it (its cursor pinned) until killed.
fn holder(queue: &str) {
    let mut rx = Consumer::open_with(queue, Wait::Block).expect("open");
    let m = rx.recv_timeout(common::OP_TIMEOUT).expect("recv");
    common::say(&format!("holding {}", check(&m)));
    std::thread::sleep(common::WATCHDOG);
}

fn msg(seq: u32) -> Vec<u8> {
    let mut m = seq.to_le_bytes().to_vec();
    m.resize(8 + (seq as usize * 13) % 120, seq as u8);
    m
}

fn check(m: &[u8]) -> u32 {
    let seq = u32::from_le_bytes(m[..4].try_into().unwrap());
    assert_eq!(m, msg(seq), "message bytes");
    seq
}

fn options(dir: &LogDir, mode: Mode, fsync: Fsync) -> Options {
    Options::new().mode(mode).capacity(CAP).max_message(1024).durable(&dir.0).fsync(fsync)
}

/// The default subscription's state: (detached, times detached, position).
fn default_cursor(name: &str) -> (bool, u64, u64) {
    let s = Queue::inspect(name).unwrap();
    let d = s.subscriptions.iter().find(|s| s.name == shmq::Subscription::DEFAULT).expect("default subscription");
    (d.detached, d.lapped, d.position)
}

/// The reader's next line starting with `word`, past its `at SEQ` progress lines.
fn expect_past(c: &mut Child, word: &str) -> String {
    loop {
        let line = c.expect("");
        if let Some(rest) = line.strip_prefix(word) {
            return rest.trim().to_owned();
        }
        assert!(line.starts_with("at ") || line.starts_with("first "), "expected {word:?}, the child said {line:?}");
    }
}

/// Sends `count` messages from `from` in this process: blocking sends, or under `Always`
/// `send_nowait` with a `wait_durable` every 500 (so the test does not pay a sync each).
fn send_all(name: &str, from: u32, count: u32, fsync: Fsync) {
    let mut tx = Producer::open_with(name, Wait::Block).unwrap();
    let mut last = None;
    for seq in from..count {
        let id = match fsync {
            Fsync::Always => tx.send_nowait(&msg(seq)),
            _ => tx.send_timeout(&msg(seq), common::OP_TIMEOUT),
        }
        .unwrap_or_else(|e| panic!("send {seq}: {e}"));
        last = Some(id);
        if fsync == Fsync::Always && seq % 500 == 499 {
            tx.wait_durable(id, Some(common::OP_TIMEOUT)).unwrap();
        }
    }
    if let Some(id) = last {
        tx.wait_durable(id, Some(common::OP_TIMEOUT)).unwrap();
    }
}

/// The case: a producer sends ten times the ring's capacity to a stopped consumer;
/// every send completes, and the consumer, resumed, reads everything in order from the log
/// and then the ring.
fn ten_rings_to_a_stopped_consumer(mode: Mode, fsync: Fsync) {
    let dir = LogDir::new(&format!("stopped-{mode:?}-{fsync:?}"));
    let q = TestQueue::create(&format!("spill-stopped-{mode:?}-{fsync:?}"), options(&dir, mode, fsync));
    // Records average ~90 bytes: 10 rings is ~7,300 messages.
    let count = (10 * CAP / 80) as u32;
    let mut rx = Child::spawn("reader", &q.name, &[("count", count.to_string())]);
    rx.expect("ready");
    send_all(&q.name, 0, 1, fsync);
    assert_eq!(rx.expect("first"), "0");
    // Let it go back to waiting (its cursor is not pinned while it waits), then stop it.
    std::thread::sleep(Duration::from_millis(100));
    rx.signal(Signal::STOP);
    rx.wait_stopped();
    let start = Instant::now();
    send_all(&q.name, 1, count, fsync);
    let sent_in = start.elapsed();
    let (detached, spills, position) = default_cursor(&q.name);
    assert!(detached && spills >= 1, "the stopped consumer was spilled: detached {detached}, {spills} times");
    let tail = Queue::inspect(&q.name).unwrap().tail;
    assert!(tail - position > 5 * CAP, "producers went {} bytes past it", tail - position);
    rx.signal(Signal::CONT);
    assert_eq!(expect_past(&mut rx, "done"), count.to_string());
    rx.wait_ok();
    let (detached, _, position) = default_cursor(&q.name);
    eprintln!("{mode:?} {fsync:?}: {count} messages sent past a stopped consumer in {sent_in:?}; it read them all");
    assert!(!detached, "it rejoined the ring once it caught up");
    assert_eq!(position, Queue::inspect(&q.name).unwrap().tail, "and stands at the end");
}

#[test]
fn spsc_never_a_producer_sends_ten_rings_to_a_stopped_consumer_which_then_reads_them_all_in_order() {
    ten_rings_to_a_stopped_consumer(Mode::Spsc, Fsync::Never);
}

#[test]
fn mpsc_always_a_producer_sends_ten_rings_to_a_stopped_consumer_which_then_reads_them_all_in_order() {
    ten_rings_to_a_stopped_consumer(Mode::Mpsc, Fsync::Always);
}

/// A consumer that only polls (`try_recv`) and found the queue empty is spilled while it
/// does not poll, the producer going ten rings past it; its next polls read everything from
/// the log. Its head in the ring was overwritten meanwhile: a poll that took what is there
/// now for "nothing sent yet" (without seeing that its cursor was detached) would find the
/// queue empty for ever. (On an MPSC queue a poll sees the producers' position past its
/// head as well, which alone sends it to the general path; the SPSC case is the one that
/// rests on the cursor.)
#[test]
fn a_polling_consumer_spilled_between_two_polls_reads_everything_from_the_log() {
    polling_consumer_spilled(Mode::Spsc);
    polling_consumer_spilled(Mode::Mpsc);
}

fn polling_consumer_spilled(mode: Mode) {
    let dir = LogDir::new(&format!("poller-{mode:?}"));
    let q = TestQueue::create(&format!("spill-poller-{mode:?}"), options(&dir, mode, Fsync::Never));
    let count = (10 * CAP / 80) as u32;
    let mut rx = Child::spawn("poller", &q.name, &[("count", count.to_string())]);
    rx.expect("empty");
    send_all(&q.name, 0, count, Fsync::Never);
    let (detached, spills, position) = default_cursor(&q.name);
    assert!(detached && spills >= 1, "the idle consumer was spilled: detached {detached}, {spills} times");
    assert_eq!(position, 0, "it had read nothing");
    rx.tell("go");
    assert_eq!(rx.expect("done"), count.to_string());
    rx.wait_ok();
    let (detached, _, position) = default_cursor(&q.name);
    assert!(!detached, "it rejoined the ring once it caught up");
    assert_eq!(position, Queue::inspect(&q.name).unwrap().tail, "and stands at the end");
}

/// Producers go on past a stopped consumer only up to `max_log_bytes`: `try_send` gets
/// `Full` there, a blocking send waits until the consumer reads on.
#[test]
fn max_log_bytes_bounds_how_far_producers_go_past_a_stopped_consumer() {
    let dir = LogDir::new("max-log");
    let max_log = 4 * CAP;
    let q = TestQueue::create("spill-max-log", options(&dir, Mode::Spsc, Fsync::Never).max_log_bytes(max_log));
    let count = (12 * CAP / 80) as u32;
    let mut rx = Child::spawn("reader", &q.name, &[("count", count.to_string())]);
    rx.expect("ready");
    let mut tx = Producer::open_with(&q.name, Wait::Block).unwrap();
    tx.send(&msg(0)).unwrap();
    assert_eq!(rx.expect("first"), "0");
    std::thread::sleep(Duration::from_millis(100));
    rx.signal(Signal::STOP);
    rx.wait_stopped();
    let mut seq = 1;
    let full_at = loop {
        match tx.try_send(&msg(seq)) {
            Ok(_) => seq += 1,
            Err(Error::Full) => break Queue::inspect(&q.name).unwrap().tail,
            Err(e) => panic!("try_send: {e}"),
        }
        assert!(seq < count, "never full: max_log_bytes bounds nothing");
    };
    let (_, _, position) = default_cursor(&q.name);
    let ahead = full_at - position;
    eprintln!("try_send full {ahead} bytes past the stopped consumer (max_log_bytes {max_log})");
    assert!(ahead > max_log - CAP && ahead <= max_log, "full {ahead} bytes past it, max_log_bytes {max_log}");
    // A blocking send (in another process: the queue has one producer) waits for the
    // consumer, which reads on once resumed.
    drop(tx);
    let mut p = Child::spawn("producer", &q.name, &[("from", seq.to_string()), ("count", count.to_string())]);
    std::thread::sleep(Duration::from_millis(200));
    assert!(p.wait_until(Instant::now()).is_none(), "the producer waits at max_log_bytes");
    rx.signal(Signal::CONT);
    p.expect("done");
    p.wait_ok();
    assert_eq!(expect_past(&mut rx, "done"), count.to_string());
    rx.wait_ok();
}

/// A consumer slower than its producer, in another process: it is spilled and rejoins
/// again and again, and reads every message once, in order (the reader role checks).
#[test]
fn a_slow_consumer_spills_and_rejoins_and_reads_every_message_once_in_order() {
    for (mode, fsync) in [(Mode::Spsc, Fsync::Never), (Mode::Mpsc, Fsync::Interval(Duration::from_millis(5)))] {
        let dir = LogDir::new(&format!("slow-{mode:?}"));
        let q = TestQueue::create(&format!("spill-slow-{mode:?}"), options(&dir, mode, fsync));
        let count = (40 * CAP / 80) as u32;
        let mut p = Child::spawn("producer", &q.name, &[("from", "0".into()), ("count", count.to_string())]);
        let mut rx = Consumer::open_with(&q.name, Wait::Block).unwrap();
        let (mut next, mut last_id) = (0u32, 0u64);
        while next < count {
            let m = rx.recv_timeout(common::OP_TIMEOUT).unwrap();
            assert_eq!(check(&m), next, "in order, none missing, none twice");
            assert!(next == 0 || m.id() > last_id, "ids increase");
            last_id = m.id();
            next += 1;
            drop(m);
            if next % 2000 == 0 {
                std::thread::sleep(Duration::from_millis(3));
            }
        }
        p.expect("done");
        p.wait_ok();
        let (_, spills, _) = default_cursor(&q.name);
        eprintln!("{mode:?}: {count} messages read in order; the consumer was spilled {spills} times");
        assert!(rx.try_recv().unwrap().is_none(), "nothing more");
    }
}

/// Kill points: a consumer killed while reading the log, in the middle of a rejoin, or
/// holding a message read in the ring; the next consumer goes on from what the killed one
/// published (the message it was on is delivered again), producers never wait for the
/// dead one, and nothing is missed.
#[cfg(feature = "failpoints")]
#[test]
fn a_consumer_killed_at_each_step_of_a_spill_leaves_the_next_one_every_message() {
    for point in ["spill-rejoin", "spill-rejoining", "pinned"] {
        let dir = LogDir::new(&format!("kill-{point}"));
        let q = TestQueue::create(&format!("spill-kill-{point}"), options(&dir, Mode::Mpsc, Fsync::Never));
        // With no consumer attached, producers spill the default subscription's cursor.
        let first = (5 * CAP / 80) as u32;
        send_all(&q.name, 0, first, Fsync::Never);
        assert!(default_cursor(&q.name).0, "spilled with no consumer attached");
        let mut killed = if point == "pinned" {
            // It reads the log, rejoins, and is killed holding a message in the ring.
            let mut c = Child::spawn("reader", &q.name, &[("count", first.to_string())]);
            c.expect("ready");
            assert_eq!(c.expect("first"), "0");
            expect_past(&mut c, "done");
            c.wait_ok();
            send_all(&q.name, first, first + 1, Fsync::Never);
            let mut h = Child::spawn("holder", &q.name, &[]);
            assert_eq!(h.expect("holding"), first.to_string());
            assert!(!default_cursor(&q.name).0, "it holds a message in the ring");
            h
        } else {
            let env = [("SHMQ_FAILPOINT", point.to_owned())];
            let mut c = Child::spawn_env("reader", &q.name, &[("count", (2 * first).to_string())], &env);
            c.expect("ready");
            c
        };
        if point == "pinned" {
            killed.kill9();
        } else {
            use std::os::unix::process::ExitStatusExt;
            let status = killed.wait_until(Instant::now() + common::WATCHDOG).expect("killed at the point");
            assert_eq!(status.signal(), Some(libc::SIGKILL), "{point}: died at its failpoint");
        }
        // Producers go on regardless (a spilled or a plain cursor is detached as needed).
        let total = 2 * first + 200;
        send_all(&q.name, first + u32::from(point == "pinned"), total, Fsync::Never);
        let (_, _, position) = default_cursor(&q.name);
        let mut rx = Consumer::open_with(&q.name, Wait::Block).unwrap();
        let m = rx.recv_timeout(common::OP_TIMEOUT).unwrap();
        let from = check(&m);
        assert_eq!(m.id(), position, "{point}: the next consumer starts at the published position");
        drop(m);
        for seq in from + 1..total {
            let m = rx.recv_timeout(common::OP_TIMEOUT).unwrap();
            assert_eq!(check(&m), seq, "{point}: in order to the end");
        }
        eprintln!("{point}: the next consumer went on from seq {from}");
        if point == "pinned" {
            assert_eq!(from, first, "the message held is delivered again");
        }
    }
}

/// A consumer stopped (SIGSTOP) while it holds a message read in the ring pins its cursor:
/// producers wait for it (`try_send` gets `Full` within a ring) and never overwrite the
/// message under it, however long it stays stopped; a stopped process is not a dead one.
/// Killed, it pins nothing: producers go on past it.
#[test]
fn a_consumer_stopped_holding_a_message_is_waited_for_and_once_killed_is_not() {
    let dir = LogDir::new("stopped-holder");
    let q = TestQueue::create("spill-stopped-holder", options(&dir, Mode::Mpsc, Fsync::Never));
    let mut tx = Producer::open_with(&q.name, Wait::Block).unwrap();
    tx.send(&msg(0)).unwrap();
    let mut h = Child::spawn("holder", &q.name, &[]);
    assert_eq!(h.expect("holding"), "0");
    h.signal(Signal::STOP);
    h.wait_stopped();
    let mut seq = 1;
    while tx.try_send(&msg(seq)).is_ok() {
        seq += 1;
        assert!(u64::from(seq) < 2 * CAP / 24, "producers went past a pinned consumer");
    }
    let (detached, _, position) = default_cursor(&q.name);
    assert!(!detached && position == 0, "the stopped holder keeps its place (detached {detached}, at {position})");
    std::thread::sleep(Duration::from_millis(300));
    assert!(tx.try_send(&msg(seq)).is_err(), "still waited for after a while");
    h.signal(Signal::CONT);
    h.kill9();
    let count = seq + (3 * CAP / 80) as u32;
    for s in seq..count {
        tx.send_timeout(&msg(s), common::OP_TIMEOUT).unwrap();
    }
    assert!(default_cursor(&q.name).0, "the dead holder's cursor was spilled");
    let mut rx = Consumer::open_with(&q.name, Wait::Block).unwrap();
    for s in 0..count {
        let m = rx.recv_timeout(common::OP_TIMEOUT).unwrap();
        assert_eq!(check(&m), s, "everything, from the message it held on");
    }
}

/// A subscription's member that is stopped is spilled like the default consumer: producers
/// send ten rings past it (another subscription's member reads them at once), and once
/// resumed it reads every message, in order, from the log and then the ring.
#[test]
fn a_stopped_member_of_a_subscription_is_spilled_and_then_reads_every_message_in_order() {
    let dir = LogDir::new("member-stopped");
    let q = TestQueue::create("spill-member-stopped", options(&dir, Mode::Mpsc, Fsync::Never));
    for sub in ["fast", "slow"] {
        shmq::Subscription::create(&q.name, sub, shmq::SubscriptionOptions::new()).unwrap();
    }
    let count = (10 * CAP / 80) as u32;
    let args = |sub: &str| [("sub", sub.to_owned()), ("from", "0".to_owned()), ("count", count.to_string())];
    let mut slow = Child::spawn("member", &q.name, &args("slow"));
    slow.expect("ready");
    send_all(&q.name, 0, 1, Fsync::Never);
    assert_eq!(slow.expect("first"), "0");
    std::thread::sleep(Duration::from_millis(100));
    slow.signal(Signal::STOP);
    slow.wait_stopped();
    let mut fast = Child::spawn("member", &q.name, &args("fast"));
    fast.expect("ready");
    send_all(&q.name, 1, count, Fsync::Never);
    assert_eq!(expect_past(&mut fast, "done"), format!("{count} 0"));
    fast.wait_ok();
    let info = |name: &str| {
        let s = Queue::inspect(&q.name).unwrap();
        s.subscriptions.into_iter().find(|s| s.name == name).unwrap()
    };
    let s = info("slow");
    assert!(s.detached && s.lapped >= 1 && s.missed_bytes == 0, "spilled, nothing missed: {s:?}");
    slow.signal(Signal::CONT);
    assert_eq!(expect_past(&mut slow, "done"), format!("{count} 0"));
    slow.wait_ok();
    let s = info("slow");
    assert!(!s.detached && s.missed_bytes == 0, "back in the ring: {s:?}");
}

/// A member killed at each step of a claim in the log (recorded but the cursor not moved;
/// the cursor locked with it but the claim not marked held; marked held, the cursor still
/// locked; read but not handed back): producers do not wait for the
/// dead member, and the next member takes over what it had not released, from the log
/// (delivered again, delivery count 2), then goes on; nothing is missed.
#[cfg(feature = "failpoints")]
#[test]
fn a_member_killed_at_each_step_of_a_claim_in_the_log_leaves_the_next_every_message() {
    // (failpoint, first message the next member gets, how many of them are deliveries again).
    // Each dies at its fourth hit, after three spans of 16 read and released.
    let cases = [
        // Recorded, the cursor not moved: never taken, so nothing is delivered again.
        ("member-claim-recorded", 48, 0),
        // The cursor locked with the claim (48..=63): the whole span again.
        ("member-claimed", 48, 16),
        // Marked held, the cursor still locked (it stays detached once finished): the same.
        ("member-claim-held", 48, 16),
        // Released 48..=62 (each release raises the claim's start), died on 63.
        ("member-span-read", 63, 1),
    ];
    for (point, from, again) in cases {
        let dir = LogDir::new(&format!("member-killed-{point}"));
        let q = TestQueue::create(&format!("spill-member-{point}"), options(&dir, Mode::Mpsc, Fsync::Never));
        shmq::Subscription::create(&q.name, "work", shmq::SubscriptionOptions::new()).unwrap();
        // No member yet: producers spill the subscription.
        let count = (5 * CAP / 80) as u32;
        send_all(&q.name, 0, count, Fsync::Never);
        let args = [("sub", "work".to_owned()), ("from", "0".to_owned()), ("count", count.to_string())];
        let env = [("SHMQ_FAILPOINT", point.to_owned()), ("SHMQ_FAILPOINT_SKIP", "3".to_owned())];
        let mut a = Child::spawn_env("member", &q.name, &args, &env);
        a.expect("ready");
        let status = a.wait_until(Instant::now() + common::WATCHDOG).expect("killed at its failpoint");
        {
            use std::os::unix::process::ExitStatusExt;
            assert_eq!(status.signal(), Some(libc::SIGKILL), "died at {point}");
        }
        // Producers go on past the dead member's claim.
        let total = count + (3 * CAP / 80) as u32;
        send_all(&q.name, count, total, Fsync::Never);
        let args = [("sub", "work".to_owned()), ("from", from.to_string()), ("count", total.to_string())];
        let mut b = Child::spawn("member", &q.name, &args);
        b.expect("ready");
        assert_eq!(b.expect("first"), from.to_string(), "{point}: what the dead member had not released first");
        assert_eq!(expect_past(&mut b, "done"), format!("{} {again}", total - from), "{point}: delivered again");
        b.wait_ok();
    }
}

/// After a restart, a subscription resumes where it stood: its member reads what it had
/// not released from the log, then the new messages from the ring.
#[test]
fn after_a_restart_a_subscription_resumes_from_the_log() {
    let dir = LogDir::new("member-restart");
    let opts = options(&dir, Mode::Mpsc, Fsync::Always);
    let q = TestQueue::create("spill-member-restart", opts.clone());
    shmq::Subscription::create(&q.name, "audit", shmq::SubscriptionOptions::new()).unwrap();
    send_all(&q.name, 0, 300, Fsync::Always);
    {
        let mut rx = Consumer::subscribe_with(&q.name, "audit", Wait::Block).unwrap();
        for seq in 0..100 {
            assert_eq!(check(&rx.recv_timeout(common::OP_TIMEOUT).unwrap()), seq);
        }
        // Dropping the member hands its span back and writes a checkpoint.
    }
    Queue::remove(&q.name).unwrap();
    Queue::open_or_create(&q.name, opts).unwrap();
    send_all(&q.name, 300, 350, Fsync::Always);
    let mut rx = Consumer::subscribe_with(&q.name, "audit", Wait::Block).unwrap();
    for seq in 100..350 {
        assert_eq!(check(&rx.recv_timeout(common::OP_TIMEOUT).unwrap()), seq, "old ones from the log, then new ones");
    }
    let s = Queue::inspect(&q.name).unwrap();
    let a = s.subscriptions.iter().find(|s| s.name == "audit").unwrap();
    assert_eq!(a.missed_bytes, 0, "nothing missed");
}

/// A consumer killed with kill -9 every few milliseconds while a producer streams in bursts
/// (the queue spills it whenever a burst comes while no consumer runs): each next consumer
/// goes on from the message the killed one was on (delivered again if it had not released
/// it) or the one after; none is missed. `SHMQ_SPILL_KILL_ROUNDS` rounds (default 200).
#[test]
fn a_consumer_killed_every_few_milliseconds_while_a_producer_streams_misses_nothing() {
    let rounds: u32 = std::env::var("SHMQ_SPILL_KILL_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let dir = LogDir::new("kill-loop");
    let q = TestQueue::create("spill-kill-loop", options(&dir, Mode::Mpsc, Fsync::Never));
    // Bursts of about a ring and a half, every 50 ms, until told to stop.
    let mut p = Child::spawn("streamer", &q.name, &[("burst", (3 * CAP / 160).to_string()), ("pace", "50".into())]);
    p.expect("ready");
    let mut rng = common::Rng(u64::from(std::process::id()));
    let mut t = Track::default();
    for _ in 0..rounds {
        let mut c = Child::spawn("tracker", &q.name, &[]);
        c.expect("ready");
        std::thread::sleep(Duration::from_millis(2 + rng.below(15)));
        c.kill9();
        t.fresh = true;
        t.take(&c.remaining_lines());
        // No consumer for a while: a burst may come and spill its cursor.
        std::thread::sleep(Duration::from_millis(rng.below(60)));
    }
    p.hang_up();
    let sent: u32 = p.expect("sent").parse().unwrap();
    p.wait_ok();
    let (_, spills, _) = default_cursor(&q.name);
    // The rest, read to the end.
    let mut c = Child::spawn("tracker", &q.name, &[]);
    c.expect("ready");
    t.fresh = true;
    while t.last != Some(sent - 1) {
        t.take(&[c.try_line(common::OP_TIMEOUT).expect("the last consumer reads to the end")]);
    }
    c.kill9();
    assert_eq!(t.seen, sent, "every message, once, in order (redeliveries aside)");
    let (redelivered, spills) = (t.redelivered, spills);
    eprintln!("{rounds} kills: {sent} messages, {redelivered} delivered again, the consumer spilled {spills} times");
}

/// What the consumers of the kill loop said, checked as it comes.
#[derive(Default)]
struct Track {
    /// Distinct messages seen.
    seen: u32,
    /// The last one.
    last: Option<u32>,
    /// Messages a consumer received again after its predecessor was killed holding them.
    redelivered: u32,
    /// The next line starts a consumer's output.
    fresh: bool,
}

impl Track {
    /// Takes one consumer's `got SEQ` lines (or, with `fresh` false, more of the same one's).
    fn take(&mut self, lines: &[String]) {
        for l in lines {
            let Some(seq) = l.strip_prefix("got ").map(|s| s.parse::<u32>().unwrap()) else { continue };
            match self.last {
                Some(prev) if self.fresh && seq == prev => self.redelivered += 1,
                Some(prev) => assert_eq!(seq, prev + 1, "after {prev}: none missed, in order"),
                None => assert_eq!(seq, 0, "from the first"),
            }
            if !(self.fresh && Some(seq) == self.last) {
                self.seen += 1;
            }
            self.last = Some(seq);
            self.fresh = false;
        }
    }
}

/// Shared memory is untrusted: a `written` position scribbled above what the journal wrote
/// (or past the producers' position) makes a spilled consumer report `Corrupt` where the log
/// has a hole, never skip the messages there, walk segments for ever, or hang.
#[test]
fn a_scribbled_written_position_is_corrupt_for_a_spilled_consumer_never_a_skip() {
    const OFF_WRITTEN: u64 = 896 + 56; // docs/LAYOUT.md, line 7
    for (case, past) in [("at-the-tail", 4096u64), ("far-past-it", 1 << 50)] {
        let dir = LogDir::new(&format!("scribbled-{case}"));
        let q = TestQueue::create(&format!("spill-scribbled-{case}"), options(&dir, Mode::Mpsc, Fsync::Never));
        let count = (3 * CAP / 80) as u32;
        send_all(&q.name, 0, count, Fsync::Never);
        assert!(default_cursor(&q.name).0, "spilled");
        // Ten more, in the ring only (the producer stays open: nothing journals them).
        let mut tx = Producer::open_with(&q.name, Wait::Block).unwrap();
        for seq in count..count + 10 {
            tx.send(&msg(seq)).unwrap();
        }
        let s = Queue::inspect(&q.name).unwrap();
        let written = s.durable.as_ref().unwrap().written;
        assert!(written < s.tail, "{case}: the last ten are not in the log");
        q.raw().write_u64(OFF_WRITTEN, s.tail + past - 4096);
        let mut rx = Consumer::open_with(&q.name, Wait::Block).unwrap();
        let mut next = 0;
        let end = loop {
            match rx.recv_timeout(Duration::from_secs(2)) {
                Ok(m) => {
                    assert_eq!(check(&m), next, "{case}: in order, none skipped");
                    next += 1;
                }
                Err(e) => break e,
            }
        };
        eprintln!("{case}: {next} of {count} messages read from the log, then {end:?}");
        assert_eq!(next, count, "{case}: everything the log holds");
        assert!(matches!(end, Error::Corrupt(_)), "{case}: {end:?}");
        drop(tx);
    }
}

/// A consumer holding messages (`recv_held`, as the NATS bridge does) is spilled like any
/// other: it reads on from the log past what it holds, and stays at the first message it
/// holds. One that dies holding them leaves them to the next consumer; one that releases
/// them comes back to the ring once it has caught up.
#[test]
fn a_consumer_holding_messages_is_spilled_reads_on_and_rejoins_once_it_released_them() {
    let dir = LogDir::new("held");
    let q = TestQueue::create("spill-held", options(&dir, Mode::Mpsc, Fsync::Never));
    let count = (4 * CAP / 80) as u32;
    send_all(&q.name, 0, 10, Fsync::Never);
    let mut rx = Consumer::open_with(&q.name, Wait::Block).unwrap();
    let mut first = None;
    rx.try_recv_held(10, |id, m| {
        first.get_or_insert(id);
        check(m);
    })
    .unwrap();
    // Four rings past the held messages: producers spill the consumer.
    send_all(&q.name, 10, count, Fsync::Never);
    assert!(default_cursor(&q.name).0, "spilled");
    let mut next = 10;
    while next < count {
        rx.recv_held_timeout(64, common::OP_TIMEOUT, |_, m| {
            assert_eq!(check(m), next, "in order past the held ones, from the log");
            next += 1;
        })
        .unwrap();
    }
    assert_eq!(rx.held() as u32, count, "everything received is held");
    assert!(rx.try_recv().unwrap().is_none());
    let (detached, _, position) = default_cursor(&q.name);
    assert!(detached && Some(position) == first, "in the log, at the first held message");
    // It goes without releasing anything (as if it died): the next one gets it all again.
    drop(rx);
    let mut rx = Consumer::open_with(&q.name, Wait::Block).unwrap();
    let (mut next, mut last) = (0, 0);
    while next < count {
        rx.recv_held_timeout(64, common::OP_TIMEOUT, |id, m| {
            assert_eq!(check(m), next, "everything again, from the first held message");
            next += 1;
            last = id;
        })
        .unwrap();
    }
    assert!(default_cursor(&q.name).0, "still in the log while it holds them");
    rx.release_held(last).unwrap();
    // Released and caught up: the next look rejoins the ring.
    assert!(rx.try_recv().unwrap().is_none());
    assert!(!default_cursor(&q.name).0, "back in the ring");
    send_all(&q.name, count, count + 5, Fsync::Never);
    for seq in count..count + 5 {
        assert_eq!(check(&rx.recv_timeout(common::OP_TIMEOUT).unwrap()), seq, "and on in the ring");
    }
}

/// `max_log_bytes` bounds producers against a named subscription that fell behind as well
/// (here the only reader: the default subscription is removed, and nobody reads "slow").
#[test]
fn max_log_bytes_bounds_producers_against_a_subscription_too() {
    let dir = LogDir::new("max-log-sub");
    let max_log = 4 * CAP;
    let q = TestQueue::create("spill-max-log-sub", options(&dir, Mode::Mpsc, Fsync::Never).max_log_bytes(max_log));
    shmq::Subscription::remove(&q.name, shmq::Subscription::DEFAULT).unwrap();
    shmq::Subscription::create(&q.name, "slow", shmq::SubscriptionOptions::new()).unwrap();
    let mut tx = Producer::open_with(&q.name, Wait::Block).unwrap();
    let mut seq = 0;
    while tx.try_send(&msg(seq)).is_ok() {
        seq += 1;
        assert!(u64::from(seq) < 4 * max_log / 24, "never full: max_log_bytes bounds nothing");
    }
    let s = Queue::inspect(&q.name).unwrap();
    let slow = s.subscriptions.iter().find(|s| s.name == "slow").unwrap();
    let ahead = s.tail - slow.position;
    assert!(slow.detached && ahead > max_log - CAP && ahead <= max_log, "full {ahead} bytes past it: {slow:?}");
    // Its member reads on: producers go on.
    let mut rx = Consumer::subscribe_with(&q.name, "slow", Wait::Block).unwrap();
    for s in 0..seq {
        assert_eq!(check(&rx.recv_timeout(common::OP_TIMEOUT).unwrap()), s);
    }
    tx.send_timeout(&msg(seq), common::OP_TIMEOUT).unwrap();
}

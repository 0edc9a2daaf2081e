//! Subscriptions across processes (issue #9): every subscription sees every message sent
//! after its creation (fan-out), the members of one share its messages, a member killed
//! with -9 loses nothing, a subscription with a lag limit is lapped and rejoins, one without
//! holds producers back, and a removed subscription closes on its members.
//!
//! * Fan-out: 4 subscriptions, a subscriber process on each, 2 producer processes:
//!   `SHMQ_FANOUT_MESSAGES` messages per producer (default 1,000,000: about 16 s in a debug
//!   build on 2 cores; smaller values for quick runs).
//! * Shared work under kill -9: 3 members of one subscription, one killed with `SIGKILL` every
//!   50 ms and replaced, `SHMQ_MEMBER_KILL_ROUNDS` rounds (default 200); one member's span,
//!   deterministically: killed (delivered again with count 2), stopped (kept), left (handed on).
//! * Lag limit (exact `missed_bytes`), holding producers back, a borrowed message under a
//!   full ring; a member lapped again and again by 2 producers at full speed
//!   (`SHMQ_LAG_MESSAGES` per producer, default 50,000); subscriptions created and joined
//!   while 2 producers run (`SHMQ_JOIN_ROUNDS`, default 40).
//! * Removal while members are asleep in `recv`, and while a producer waits for it; a
//!   subscription created again in the same entry.
//! * Names, options, the limit of 64 subscriptions, members filling the participant table,
//!   the default subscription.
//!
//! Children report to the parent on stdout (`@shmq` lines, see tests/common/mod.rs) and take
//! commands on stdin. Every wait is bounded (`OP_TIMEOUT`, the watchdog); no test asserts an
//! upper bound on time.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{Child, OP_TIMEOUT, Payloads, Rng, TestQueue, mix};
use shmq::{
    Consumer, Error, Message, Options, Producer, Queue, Subscription, SubscriptionInfo, SubscriptionOptions, Wait,
};

const SEED: u64 = 0x5eed_0009;

#[test]
fn child_role() {
    common::run_child(|role, queue| match role {
        "fan_subscriber" => fan_subscriber(queue),
        "fan_producer" => fan_producer(queue),
        "work_member" => work_member(queue),
        "work_producer" => work_producer(queue),
        "member" => member(queue),
        "many_members" => many_members(queue),
        "counting_producer" => counting_producer(queue),
        "lagging_member" => lagging_member(queue),
        "late_member" => late_member(queue),
        other => panic!("unknown role {other}"),
    });
}

// ---------------------------------------------------------------------------------------
// Messages and small helpers.

/// Message `seq` of `len >= 8` bytes: the tag `seq` (u64 LE), then bytes that depend on
/// `seq` and their position, so a stale or torn record never matches.
fn body(seq: u32, len: usize) -> Vec<u8> {
    assert!(len >= 8);
    let mut v = u64::from(seq).to_le_bytes().to_vec();
    let mut x = mix(u64::from(seq) ^ SEED);
    while v.len() < len {
        x = mix(x.wrapping_add(0x9e37_79b9_7f4a_7c15));
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// The tag of a [`body`].
fn seq_of(m: &[u8]) -> u32 {
    u64::from_le_bytes(m[..8].try_into().expect("8 bytes")) as u32
}

/// The length of message `seq` in the streams of varying length (8..=200 bytes).
fn varying_len(seq: u32) -> usize {
    8 + (mix(u64::from(seq) ^ SEED) % 193) as usize
}

/// `SHMQ_...` knob `key`, or `default`.
fn knob(key: &str, default: u64) -> u64 {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn wait_of(s: &str) -> Wait {
    match s {
        "spin" => Wait::Spin,
        "block" => Wait::Block,
        "adaptive" => Wait::Adaptive,
        other => panic!("unknown wait policy {other}"),
    }
}

/// The subscription `name` of `queue`, as [`Subscription::list`] reports it.
fn info(queue: &str, name: &str) -> SubscriptionInfo {
    let all = Subscription::list(queue).expect("list the subscriptions");
    let n = all.iter().filter(|s| s.name == name).count();
    assert_eq!(n, 1, "subscription {name:?} listed {n} times: {all:?}");
    all.into_iter().find(|s| s.name == name).expect("listed")
}

fn names(queue: &str) -> Vec<String> {
    Subscription::list(queue).expect("list the subscriptions").into_iter().map(|s| s.name).collect()
}

/// Waits (bounded by `OP_TIMEOUT`) until `cond` holds; `what` says what for the failure.
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + OP_TIMEOUT;
    while !cond() {
        assert!(Instant::now() < deadline, "{what}: not within {OP_TIMEOUT:?}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

// ---------------------------------------------------------------------------------------
// A member driven by commands: the lag-limit, removal and default-subscription tests.

/// How a receive went, as one line: `got SEQ ID DELIVERY_COUNT`, `lapped MISSED_BYTES`,
/// `closed`, `bad ...` (the bytes are not the message the tag names) or `err ERROR`.
fn outcome(r: Result<Message<'_>, Error>) -> String {
    match r {
        Ok(m) => {
            if m.len() < 8 {
                return format!("bad a message of {} bytes; all have at least 8", m.len());
            }
            let seq = seq_of(&m);
            if *m != body(seq, m.len())[..] {
                return format!("bad message {seq} ({} bytes, id {}): wrong bytes", m.len(), m.id());
            }
            format!("got {seq} {} {}", m.id(), m.delivery_count())
        }
        Err(Error::Lapped { missed_bytes }) => format!("lapped {missed_bytes}"),
        Err(Error::Closed) => "closed".into(),
        Err(e) => format!("err {e:?}"),
    }
}

/// Joins subscription `sub` (`how` = `subscribe`), or opens the queue's consumer (`how` =
/// `open`), with wait policy `wait`; says `ready` (or `failed ERROR`, and exits), then runs
/// commands from stdin:
/// * `recv K`: up to K `recv_timeout`s, one line each (see [`outcome`]), stopping at the
///   first that is not a message; then `ok`;
/// * `next`: one `recv_timeout`; `try`: one `try_recv` (`none` when empty);
/// * `block` / `timed`: says `waiting TID`, then one `recv()` / `recv_timeout(OP_TIMEOUT)`;
/// * `within MS`: one `recv_timeout` of MS milliseconds;
/// * `hold`: receives a message and keeps it: says `holding SEQ ID`; then on `check`
///   compares its bytes again (`intact`, or `torn ...`), on `release` drops it (`released`);
/// * `leave`: drops the handle (the process lives on); says `left`.
fn member(queue: &str) {
    let sub: String = common::arg("sub");
    let how: String = common::arg("how");
    let wait = wait_of(&common::arg::<String>("wait"));
    let rx = match how.as_str() {
        "subscribe" => Consumer::subscribe_with(queue, &sub, wait),
        "open" => Consumer::open_with(queue, wait),
        other => panic!("unknown way to join {other}"),
    };
    let mut joined = match rx {
        Ok(rx) => Some(rx),
        Err(e) => {
            common::say(&format!("failed {e:?}"));
            return;
        }
    };
    common::say("ready");
    while let Some(line) = common::hear() {
        let mut words = line.split_whitespace();
        let cmd = words.next().expect("a command");
        if cmd == "leave" {
            joined = None;
            common::say("left");
            continue;
        }
        let rx = joined.as_mut().expect("a command after leave");
        match cmd {
            "recv" => {
                let k: u32 = words.next().and_then(|w| w.parse().ok()).expect("recv K");
                for _ in 0..k {
                    let said = outcome(rx.recv_timeout(OP_TIMEOUT));
                    common::say(&said);
                    if !said.starts_with("got ") {
                        break;
                    }
                }
                common::say("ok");
            }
            "next" => common::say(&outcome(rx.recv_timeout(OP_TIMEOUT))),
            "try" => match rx.try_recv() {
                Ok(None) => common::say("none"),
                Ok(Some(m)) => common::say(&outcome(Ok(m))),
                Err(e) => common::say(&outcome(Err(e))),
            },
            "block" => {
                common::say(&format!("waiting {}", common::tid()));
                common::say(&outcome(rx.recv()));
            }
            "timed" => {
                common::say(&format!("waiting {}", common::tid()));
                common::say(&outcome(rx.recv_timeout(OP_TIMEOUT)));
            }
            "within" => {
                let ms: u64 = words.next().and_then(|w| w.parse().ok()).expect("within MS");
                common::say(&outcome(rx.recv_timeout(Duration::from_millis(ms))));
            }
            "hold" => {
                let m = match rx.recv_timeout(OP_TIMEOUT) {
                    Ok(m) => m,
                    Err(e) => {
                        common::say(&outcome(Err(e)));
                        continue;
                    }
                };
                let seq = seq_of(&m);
                let want = body(seq, m.len());
                assert!(*m == want[..], "held message {seq}: wrong bytes when received");
                common::say(&format!("holding {seq} {}", m.id()));
                assert_eq!(common::hear().as_deref(), Some("check"), "hold: the parent's next command");
                match m.iter().zip(&want).position(|(a, b)| a != b) {
                    None => common::say("intact"),
                    Some(i) => common::say(&format!("torn message {seq}: byte {i} of {} changed", want.len())),
                }
                assert_eq!(common::hear().as_deref(), Some("release"), "hold: the parent's next command");
                drop(m);
                common::say("released");
            }
            other => panic!("unknown command {other}"),
        }
    }
}

/// Spawns a [`member`] of `sub` (`how` = `subscribe` or `open`) and waits for its `ready`.
fn spawn_member(queue: &str, sub: &str, how: &str, wait: Wait) -> Child {
    let args = [("sub", sub.to_string()), ("how", how.to_string()), ("wait", wait.to_string())];
    let mut c = Child::spawn("member", queue, &args);
    let line = c.expect("");
    assert_eq!(line, "ready", "member of {sub:?} ({how})");
    c
}

/// Parses `SEQ ID DC` after `got`.
fn parse_got(rest: &str) -> (u32, u64, u32) {
    let v: Vec<&str> = rest.split_whitespace().collect();
    assert_eq!(v.len(), 3, "a reception line: got {rest:?}");
    (v[0].parse().expect("seq"), v[1].parse().expect("id"), v[2].parse().expect("delivery count"))
}

/// Has a [`member`] receive `n` messages, which must be `first..first + n` in order, each
/// delivered for the first time; returns their ids.
fn recv_n(c: &mut Child, first: u32, n: u32) -> Vec<u64> {
    c.tell(&format!("recv {n}"));
    let mut ids = Vec::new();
    for i in 0..n {
        let (seq, id, dc) = parse_got(&c.expect("got"));
        assert_eq!(seq, first + i, "the member received message {seq}, expected {}", first + i);
        assert_eq!(dc, 1, "message {seq}: delivery count {dc}, but no member died");
        if let Some(&prev) = ids.last() {
            assert!(id > prev, "message {seq}: id {id} after {prev}; ids increase in send order");
        }
        ids.push(id);
    }
    assert_eq!(c.expect("ok"), "");
    ids
}

/// The default subscription's consumer, in a thread of this process, keeping up: receives
/// everything, checks it is messages 0, 1, 2, ... byte for byte, counts it.
struct KeepUp {
    count: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    interrupter: shmq::Interrupter,
    thread: Option<JoinHandle<Result<(), String>>>,
}

impl KeepUp {
    fn start(queue: &str) -> KeepUp {
        let mut rx = Consumer::open_with(queue, Wait::Block).expect("open the default subscription's consumer");
        let interrupter = rx.interrupter();
        let count = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (count.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut last_id = None;
            // Relaxed: the flag only ends the loop; the interrupt wakes a waiting recv.
            while !s.load(Ordering::Relaxed) {
                let m = match rx.recv() {
                    Ok(m) => m,
                    Err(Error::Interrupted) => continue,
                    Err(e) => return Err(format!("default consumer: {e}")),
                };
                // Relaxed: only this thread writes the count.
                let n = c.load(Ordering::Relaxed);
                let seq = seq_of(&m);
                if seq as u64 != n || *m != body(seq, m.len())[..] {
                    return Err(format!("default consumer: message {seq} ({} bytes) where {n} was due", m.len()));
                }
                if last_id.is_some_and(|l| m.id() <= l) {
                    return Err(format!("default consumer: id {} after {last_id:?}", m.id()));
                }
                last_id = Some(m.id());
                drop(m);
                // Release: pairs with the Acquire in `wait_for`; the message was released
                // (handed back) before it is counted.
                c.store(n + 1, Ordering::Release);
            }
            Ok(())
        });
        KeepUp { count, stop, interrupter, thread: Some(thread) }
    }

    fn count(&self) -> u64 {
        // Acquire: pairs with the Release store after the release of the message.
        self.count.load(Ordering::Acquire)
    }

    /// Waits until it has received and released `n` messages.
    fn wait_for(&self, n: u32) {
        wait_until(&format!("the default consumer receiving {n} messages (at {})", self.count()), || {
            self.count() >= u64::from(n)
        });
    }

    fn finish(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.interrupter.interrupt();
        let r = self.thread.take().expect("thread").join().expect("the default consumer thread panicked");
        r.unwrap();
    }
}

// ---------------------------------------------------------------------------------------
// 1. Fan-out.

/// Joins subscription `sub`, receives `2 * count` messages of the two producers' streams,
/// checks each byte, the order per producer, and that ids increase; says `done HASH ID`,
/// `HASH` over every `(id, stream, seq)` in order of receipt, `ID` the last id.
fn fan_subscriber(queue: &str) {
    let sub: String = common::arg("sub");
    let count: u32 = common::arg("count");
    let p = Payloads::new(SEED, min_len(), common::arg("max"));
    let mut rx = Consumer::subscribe_with(queue, &sub, Wait::Adaptive).expect("subscribe");
    common::say("ready");
    let mut next = [0u32; 2];
    let mut last_id: Option<u64> = None;
    let mut hash = SEED;
    let mut scratch = Vec::new();
    for n in 0..2 * u64::from(count) {
        let m = rx.recv_timeout(OP_TIMEOUT).unwrap_or_else(|e| panic!("{sub}: message {n} of {}: {e}", 2 * count));
        let (stream, seq) = Payloads::tag(&m);
        assert!(stream < 2, "{sub}: a message of unknown producer {stream}");
        assert_eq!(seq, next[stream as usize], "{sub}: producer {stream}'s message {seq} out of order");
        p.check(stream, seq, &m, &mut scratch).unwrap_or_else(|e| panic!("{sub}: {e}"));
        assert_eq!(m.delivery_count(), 1, "{sub}: producer {stream} message {seq}: no member died");
        let id = m.id();
        assert!(last_id.is_none_or(|l| id > l), "{sub}: id {id} after {last_id:?}");
        last_id = Some(id);
        hash = mix(hash ^ id.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (u64::from(stream) << 32 | u64::from(seq)));
        next[stream as usize] += 1;
    }
    assert!(rx.try_recv().expect("try_recv").is_none(), "{sub}: a message beyond the last one sent");
    common::say(&format!("done {hash} {}", last_id.expect("messages")));
}

/// The fan-out roles' shortest message: argument `min` if given, else 8.
fn min_len() -> usize {
    std::env::var("SHMQ_ARG_min").map_or(8, |v| v.parse().expect("min"))
}

fn fan_producer(queue: &str) {
    let stream: u32 = common::arg("stream");
    let count: u32 = common::arg("count");
    let p = Payloads::new(SEED, min_len(), common::arg("max"));
    let mut tx = Producer::open_with(queue, Wait::Adaptive).expect("open producer");
    let mut buf = Vec::new();
    for seq in 0..count {
        p.fill(stream, seq, &mut buf);
        tx.send_timeout(&buf, OP_TIMEOUT).unwrap_or_else(|e| panic!("producer {stream}: message {seq}: {e}"));
    }
}

/// 4 subscriptions, created before any producer starts, a subscriber process on each;
/// 2 MPSC producer processes each send N messages of 8..=512 bytes. Every subscriber gets
/// all 2N, in order per producer, byte for byte, with ids increasing; all four see the same
/// ids for the same messages in the same order.
#[test]
fn fan_out_every_subscription_receives_every_message_of_every_producer() {
    const SUBS: usize = 4;
    const MAX: usize = 512;
    let count = knob("SHMQ_FANOUT_MESSAGES", 1_000_000) as u32;
    let q = TestQueue::create("fan", Options::new().capacity(256 << 10).max_message(4096));
    // Nobody reads the default subscription here: without a lag limit it would hold the
    // producers back.
    Subscription::remove(&q.name, Subscription::DEFAULT).expect("remove the default subscription");
    for i in 0..SUBS {
        Subscription::create(&q.name, &format!("fan{i}"), SubscriptionOptions::new()).expect("create");
    }
    let started = Instant::now();
    let common_args = [("count", count.to_string()), ("max", MAX.to_string())];
    let mut subscribers: Vec<Child> = (0..SUBS)
        .map(|i| {
            let mut args = common_args.to_vec();
            args.push(("sub", format!("fan{i}")));
            Child::spawn("fan_subscriber", &q.name, &args)
        })
        .collect();
    let mut producers: Vec<Child> = (0..2)
        .map(|s| {
            let mut args = common_args.to_vec();
            args.push(("stream", s.to_string()));
            Child::spawn("fan_producer", &q.name, &args)
        })
        .collect();
    let deadline = Instant::now() + common::WATCHDOG;
    for p in &mut producers {
        p.wait_ok_by(deadline);
    }
    let mut results = Vec::new();
    for (i, s) in subscribers.iter_mut().enumerate() {
        assert_eq!(s.expect(""), "ready", "subscriber {i}");
        results.push(s.expect("done"));
        s.wait_ok_by(deadline);
    }
    let elapsed = started.elapsed();
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r, &results[0], "subscriber {i} saw other ids than subscriber 0 (hash, last id)");
    }
    for i in 0..SUBS {
        let s = info(&q.name, &format!("fan{i}"));
        assert_eq!(s.received.messages, 2 * u64::from(count), "fan{i}: {s:?}");
        assert_eq!(s.lag_bytes, 0, "fan{i}: {s:?}");
        assert!(!s.detached && s.lapped == 0 && s.redelivered == 0, "fan{i}: {s:?}");
    }
    println!(
        "fan-out: {SUBS} subscriptions x {} messages from 2 producers in {:.2} s ({:.0} deliveries/s)",
        2 * u64::from(count),
        elapsed.as_secs_f64(),
        (SUBS as f64 * 2.0 * f64::from(count)) / elapsed.as_secs_f64()
    );
}

// ---------------------------------------------------------------------------------------
// 2. Shared work under kill -9.

/// A member of `work`: receives until its stdin closes (or the subscription is removed);
/// for each message says `r SEQ ID DC .` (the `.` marks a whole line: a member killed while
/// writing leaves a partial one), flushed, *before* it releases the message.
fn work_member(queue: &str) {
    let mut rx = Consumer::subscribe_with(queue, "work", Wait::Adaptive)
        .unwrap_or_else(|e| panic!("member pid {}: subscribe: {e}", std::process::id()));
    common::say("ready");
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    std::thread::spawn(move || {
        while common::hear().is_some() {}
        // Relaxed: only ends the loop below, which polls it.
        s.store(true, Ordering::Relaxed);
    });
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(m) => {
                let seq = seq_of(&m);
                assert!(*m == body(seq, varying_len(seq))[..], "message {seq}: wrong bytes ({} bytes)", m.len());
                common::say(&format!("r {seq} {} {} .", m.id(), m.delivery_count()));
            }
            Err(Error::Timeout) if stop.load(Ordering::Relaxed) => return,
            Err(Error::Timeout) => {}
            Err(Error::Closed) => return,
            Err(e) => panic!("member: recv: {e}"),
        }
    }
}

/// Sends messages 0, 1, 2, ... (of varying length) in bursts of 64 with a millisecond
/// between bursts, until its stdin closes; then says `sent COUNT`.
fn work_producer(queue: &str) {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    std::thread::spawn(move || {
        while common::hear().is_some() {}
        // Relaxed: only ends the loop below, which polls it.
        s.store(true, Ordering::Relaxed);
    });
    let mut tx = Producer::open_with(queue, Wait::Adaptive).expect("open producer");
    let mut seq = 0u32;
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..64 {
            tx.send_timeout(&body(seq, varying_len(seq)), OP_TIMEOUT).unwrap_or_else(|e| panic!("send {seq}: {e}"));
            seq += 1;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    common::say(&format!("sent {seq}"));
}

/// One reception a member reported.
#[derive(Clone, Copy, Debug)]
struct Reception {
    seq: u32,
    id: u64,
    dc: u32,
    member: usize,
}

/// What the members reported.
#[derive(Default)]
struct WorkLog {
    receptions: Vec<Reception>,
    /// Per sequence number: seen at least once.
    seen: Vec<bool>,
    distinct: u64,
    killed: HashSet<usize>,
}

impl WorkLog {
    /// Parses a member's line; `None` for a line that is not a whole report.
    fn parse(line: &str) -> Option<(u32, u64, u32)> {
        let v: Vec<&str> = line.split(' ').collect();
        if v.len() != 5 || v[0] != "r" || v[4] != "." {
            return None;
        }
        Some((v[1].parse().ok()?, v[2].parse().ok()?, v[3].parse().ok()?))
    }

    fn add(&mut self, member: usize, line: &str, last_of_killed: bool) {
        if line == "ready" {
            return;
        }
        let Some((seq, id, dc)) = WorkLog::parse(line) else {
            assert!(last_of_killed, "member {member}: a line that is not a report: {line:?}");
            return;
        };
        if self.seen.len() <= seq as usize {
            self.seen.resize(seq as usize + 1, false);
        }
        if !self.seen[seq as usize] {
            self.seen[seq as usize] = true;
            self.distinct += 1;
        }
        self.receptions.push(Reception { seq, id, dc, member });
    }

    /// Takes the lines a live member said so far.
    fn drain(&mut self, member: usize, c: &mut Child) {
        while let Some(line) = c.try_line(Duration::ZERO) {
            self.add(member, &line, false);
        }
    }

    /// Takes the rest of a member's lines, once it has exited.
    fn drain_to_end(&mut self, member: usize, c: &mut Child, killed: bool) {
        let lines = c.remaining_lines();
        let n = lines.len();
        for (i, line) in lines.iter().enumerate() {
            self.add(member, line, killed && i + 1 == n);
        }
        if killed {
            self.killed.insert(member);
        }
    }
}

fn spawn_work_member(queue: &str, n: usize) -> (usize, Child) {
    (n, Child::spawn("work_member", queue, &[]))
}

/// One subscription, 3 member processes, a producer process sending numbered messages; every
/// 50 ms one member is killed with `SIGKILL` and a fresh one joins. Members report every
/// message before releasing it; a killed member's last reports may be lost. Then:
/// * every message sent reached some member (none lost);
/// * a message reported more than once was held by a killed member each time but the last:
///   its delivery counts are distinct (each hand-out counts), and all receptions but the one
///   with the highest count are by members that were killed (a live member's release is
///   final);
/// * the same message has the same id whoever receives it, and ids increase with the
///   sequence numbers; a member's first deliveries (count 1) come in stream order.
#[test]
fn members_killed_with_sigkill_lose_nothing_and_only_their_messages_are_delivered_again() {
    let rounds = knob("SHMQ_MEMBER_KILL_ROUNDS", 200);
    let q = TestQueue::create("work", Options::new().capacity(64 << 10).max_message(1024));
    Subscription::remove(&q.name, Subscription::DEFAULT).expect("remove the default subscription");
    Subscription::create(&q.name, "work", SubscriptionOptions::new()).expect("create");
    let started = Instant::now();
    let mut log = WorkLog::default();
    let mut members: Vec<(usize, Child)> = (0..3).map(|n| spawn_work_member(&q.name, n)).collect();
    let mut next_member = members.len();
    let mut producer = Child::spawn("work_producer", &q.name, &[]);
    let mut rng = Rng(SEED);
    for _ in 0..rounds {
        let next_kill = Instant::now() + Duration::from_millis(50);
        while Instant::now() < next_kill {
            for (n, c) in &mut members {
                log.drain(*n, c);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let i = rng.below(members.len() as u64) as usize;
        let (n, c) = &mut members[i];
        c.kill9();
        log.drain_to_end(*n, c, true);
        members[i] = spawn_work_member(&q.name, next_member);
        next_member += 1;
    }
    producer.hang_up();
    let sent: u32 = producer.expect("sent").parse().expect("a count");
    producer.wait_ok();
    assert!(sent > 0, "the producer sent nothing");
    // Every message reaches a member; waits while the members make progress.
    let mut last = (log.distinct, Instant::now());
    while log.distinct < u64::from(sent) {
        for (n, c) in &mut members {
            log.drain(*n, c);
        }
        if log.distinct != last.0 {
            last = (log.distinct, Instant::now());
        }
        assert!(
            last.1.elapsed() < OP_TIMEOUT,
            "messages lost: {} of {sent} seen, none more for {OP_TIMEOUT:?}; first missing: {:?}",
            log.distinct,
            (0..sent).find(|&s| !log.seen.get(s as usize).copied().unwrap_or(false))
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    for (n, c) in &mut members {
        c.hang_up();
        c.wait_ok();
        log.drain_to_end(*n, c, false);
    }
    let elapsed = started.elapsed();
    let sub = info(&q.name, "work");

    // Nothing beyond what was sent, nothing lost.
    assert_eq!(log.seen.len() as u64, u64::from(sent), "a message beyond the {sent} sent was received");
    assert_eq!(log.distinct, u64::from(sent));
    // Per member, first deliveries in stream order.
    let mut last_first: Vec<Option<u32>> = vec![None; next_member];
    for r in log.receptions.iter().filter(|r| r.dc == 1) {
        let l = &mut last_first[r.member];
        assert!(l.is_none_or(|l| r.seq > l), "member {}: first delivery of {} after {l:?}", r.member, r.seq);
        *l = Some(r.seq);
    }
    // Per message.
    let mut by_seq = log.receptions.clone();
    by_seq.sort_by_key(|r| (r.seq, r.dc));
    let (mut duplicates, mut again, mut prev_id) = (0u64, 0u64, None::<u64>);
    for group in by_seq.chunk_by(|a, b| a.seq == b.seq) {
        let seq = group[0].seq;
        let id = group[0].id;
        assert!(group.iter().all(|r| r.id == id), "message {seq} received with different ids: {group:?}");
        assert!(prev_id.is_none_or(|p| id > p), "message {seq}: id {id} not above the previous message's {prev_id:?}");
        prev_id = Some(id);
        again += group.iter().filter(|r| r.dc >= 2).count() as u64;
        for w in group.windows(2) {
            assert!(w[1].dc > w[0].dc, "message {seq}: handed out twice with delivery count {}: {group:?}", w[0].dc);
        }
        for r in &group[..group.len() - 1] {
            assert!(
                log.killed.contains(&r.member),
                "message {seq} delivered again after member {} (not killed) had it: {group:?}",
                r.member
            );
        }
        duplicates += group.len() as u64 - 1;
    }
    let kills = log.killed.len();
    println!(
        "shared work: {sent} messages, {kills} members killed, {} receptions reported, {duplicates} duplicates, \
         {again} receptions with delivery count >= 2, subscription's redelivered counter {}, {:.1} s",
        log.receptions.len(),
        sub.redelivered,
        elapsed.as_secs_f64()
    );
    if kills >= 20 {
        assert!(
            again > 0 || sub.redelivered > 0,
            "{kills} busy members killed and not one message handed out again: does redelivery work?"
        );
    }
    assert!(sub.members.iter().all(|m| !m.alive), "members still listed alive after all exited: {:?}", sub.members);
}

// ---------------------------------------------------------------------------------------
// 3. Lag limit; holding producers back; borrowed messages.

/// Capacity of the lag tests' queues.
const CAP: u64 = 8192;
/// Their messages: 48 bytes, a record of 64 (16 header bytes), which divides the capacity:
/// no padding ever, so positions are exactly 64 apart.
const LEN: usize = 48;
const REC: u64 = 64;

fn lag_queue(test: &str) -> TestQueue {
    TestQueue::create(test, Options::new().capacity(CAP).max_message(1024))
}

/// Sends messages `*seq..*seq + n`.
fn send_n(tx: &mut Producer, seq: &mut u32, n: u32) {
    for _ in 0..n {
        tx.send_timeout(&body(*seq, LEN), OP_TIMEOUT).unwrap_or_else(|e| panic!("send of message {seq}: {e}"));
        *seq += 1;
    }
}

fn assert_consecutive(ids: &[u64], first: u64) {
    for (i, &id) in ids.iter().enumerate() {
        assert_eq!(id, first + i as u64 * REC, "ids {ids:?}: records of {LEN} bytes are {REC} apart");
    }
}

/// "slow" has a lag limit of a quarter of the capacity; its member (another process) reads
/// 10 messages and stops while the default consumer keeps up and the producer sends two
/// rings' worth: the producer never waits for "slow", which is detached. The member's next
/// receive returns `Lapped { missed_bytes }` where `missed_bytes` is exactly the stream
/// between the first message it did not receive and the producers' position (where it
/// rejoins); its next receives are the messages sent after that, the first at that position.
#[test]
fn a_subscription_past_its_lag_limit_is_lapped_and_rejoins_at_the_producers_position() {
    let q = lag_queue("lapped");
    Subscription::create(&q.name, "slow", SubscriptionOptions::new().lag_limit(Some(CAP / 4))).expect("create");
    let keep = KeepUp::start(&q.name);
    let mut m = spawn_member(&q.name, "slow", "subscribe", Wait::Block);
    let mut tx = Producer::open_with(&q.name, Wait::Block).expect("open producer");
    let mut seq = 0;
    send_n(&mut tx, &mut seq, 10);
    let ids = recv_n(&mut m, 0, 10);
    assert_consecutive(&ids, ids[0]);
    // The position of the first message "slow" did not receive.
    let resume = ids[9] + REC;

    let lap = (2 * CAP / REC) as u32;
    send_n(&mut tx, &mut seq, lap);
    keep.wait_for(seq);
    let s = info(&q.name, "slow");
    assert!(s.detached && s.lapped == 1, "after two rings' worth with its member idle: {s:?}");
    let tail = Queue::inspect(&q.name).expect("inspect").tail;
    assert_eq!(tail, resume + u64::from(lap) * REC, "the producers' position after {lap} more records");

    m.tell("next");
    let missed: u64 = m.expect("lapped").parse().expect("missed bytes");
    assert_eq!(missed, tail - resume, "missed_bytes: from the first message not received to the producers' position");
    let s = info(&q.name, "slow");
    assert!(!s.detached, "rejoined: {s:?}");
    assert_eq!((s.lapped, s.missed_bytes, s.position), (1, missed, tail), "{s:?}");

    let first = seq;
    send_n(&mut tx, &mut seq, 5);
    let ids = recv_n(&mut m, first, 5);
    assert_eq!(ids[0], tail, "the first message after rejoining is at the producers' position of then");
    assert_consecutive(&ids, tail);
    m.tell("try");
    assert_eq!(m.expect(""), "none");
    m.hang_up();
    m.wait_ok();
    keep.wait_for(seq);
    keep.finish();
}

/// "slow" has no lag limit and its member (another process) reads nothing: once a ring's
/// worth is in, `try_send` is `Full` and `send_timeout` times out, though the default
/// consumer keeps up. Then the member reads everything, in order, and the producer goes on
/// as it does: nothing is lost.
#[test]
fn a_subscription_without_a_lag_limit_holds_producers_back_and_loses_nothing() {
    let q = lag_queue("holds");
    Subscription::create(&q.name, "slow", SubscriptionOptions::new()).expect("create");
    let keep = KeepUp::start(&q.name);
    let mut m = spawn_member(&q.name, "slow", "subscribe", Wait::Block);
    let mut tx = Producer::open_with(&q.name, Wait::Block).expect("open producer");
    let per_ring = (CAP / REC) as u32;
    let mut seq = 0u32;
    loop {
        match tx.try_send(&body(seq, LEN)) {
            Ok(_) => seq += 1,
            // Full for "slow", not for a default consumer that has not caught up yet.
            Err(Error::Full) if keep.count() == u64::from(seq) => break,
            Err(Error::Full) => keep.wait_for(seq),
            Err(e) => panic!("try_send of message {seq}: {e}"),
        }
        assert!(seq <= per_ring, "{seq} messages of {REC} bytes in a ring of {CAP} that \"slow\" has not read");
    }
    assert_eq!(seq, per_ring, "try_send full before the ring was");
    let timeout = Duration::from_millis(200);
    let (r, took) = common::timed(|| tx.send_timeout(&body(seq, LEN), timeout));
    assert!(matches!(r, Err(Error::Timeout)), "send_timeout with \"slow\" a ring behind: {r:?}");
    assert!(took >= timeout, "send_timeout returned Timeout after {took:?}, before its {timeout:?}");
    let s = info(&q.name, "slow");
    assert_eq!(s.lag_bytes, CAP, "{s:?}");
    assert!(!s.detached && s.lapped == 0 && s.missed_bytes == 0, "{s:?}");
    assert_eq!(info(&q.name, Subscription::DEFAULT).lag_bytes, 0, "the default consumer keeps up");

    let ids = recv_n(&mut m, 0, seq);
    assert_consecutive(&ids, ids[0]);
    // Now the member reads while the producer sends two more rings' worth, waiting for it.
    let first = seq;
    m.tell(&format!("recv {}", 2 * per_ring));
    send_n(&mut tx, &mut seq, 2 * per_ring);
    for s in first..seq {
        let (got, _, dc) = parse_got(&m.expect("got"));
        assert_eq!((got, dc), (s, 1), "the member's message after {}", s.wrapping_sub(1));
    }
    assert_eq!(m.expect("ok"), "");
    let s = info(&q.name, "slow");
    assert_eq!((s.lapped, s.missed_bytes, s.lag_bytes), (0, 0, 0), "{s:?}");
    m.hang_up();
    m.wait_ok();
    keep.wait_for(seq);
    keep.finish();
}

/// "slow" has a lag limit; its member (another process) holds one received message while
/// the producer fills the ring: the producer may detach "slow" but never writes over the
/// held record (the ring refuses the send that would need its space), and the member finds
/// its bytes intact. Once released, the producer goes on, and the member's next receive is
/// `Lapped` with exactly the bytes after the held message up to the producers' position.
#[test]
fn a_borrowed_message_is_never_overwritten_under_its_reader() {
    let q = lag_queue("borrowed");
    Subscription::create(&q.name, "slow", SubscriptionOptions::new().lag_limit(Some(CAP / 4))).expect("create");
    let keep = KeepUp::start(&q.name);
    let mut m = spawn_member(&q.name, "slow", "subscribe", Wait::Block);
    let mut tx = Producer::open_with(&q.name, Wait::Block).expect("open producer");
    let mut seq = 0;
    send_n(&mut tx, &mut seq, 1);
    m.tell("hold");
    let held: Vec<u64> = m.expect("holding").split(' ').map(|w| w.parse().expect("a number")).collect();
    assert_eq!(held[0], 0, "the held message");
    let held_id = held[1];
    let per_ring = (CAP / REC) as u32;
    loop {
        match tx.try_send(&body(seq, LEN)) {
            Ok(_) => seq += 1,
            Err(Error::Full) if keep.count() == u64::from(seq) => break,
            Err(Error::Full) => keep.wait_for(seq),
            Err(e) => panic!("try_send of message {seq}: {e}"),
        }
        // `seq` messages are in the ring: the held one and those sent since.
        assert!(seq <= per_ring, "{seq} messages of {REC} bytes sent while one is held in a ring of {CAP}");
    }
    assert_eq!(seq, per_ring, "the ring refused a send before it was full");
    let timeout = Duration::from_millis(200);
    let (r, took) = common::timed(|| tx.send_timeout(&body(seq, LEN), timeout));
    assert!(matches!(r, Err(Error::Timeout)), "a send that needs the held message's space: {r:?}");
    assert!(took >= timeout, "Timeout after {took:?}, before its {timeout:?}");
    m.tell("check");
    assert_eq!(m.expect(""), "intact");
    m.tell("release");
    assert_eq!(m.expect(""), "released");

    // The space is free now; "slow" is a ring behind its limit: detached at the latest now.
    send_n(&mut tx, &mut seq, 8);
    keep.wait_for(seq);
    let s = info(&q.name, "slow");
    assert!(s.detached && s.lapped == 1, "{s:?}");
    let tail = Queue::inspect(&q.name).expect("inspect").tail;
    m.tell("next");
    let missed: u64 = m.expect("lapped").parse().expect("missed bytes");
    assert_eq!(missed, tail - (held_id + REC), "missed_bytes: from after the held message to the producers' position");
    let first = seq;
    send_n(&mut tx, &mut seq, 3);
    let ids = recv_n(&mut m, first, 3);
    assert_consecutive(&ids, tail);
    m.hang_up();
    m.wait_ok();
    keep.wait_for(seq);
    keep.finish();
}

// ---------------------------------------------------------------------------------------
// 2b. One member's span, deterministically: killed, or stopped.

/// Has a [`member`] receive `seqs`, each with delivery count `dc`.
fn recv_seqs(c: &mut Child, seqs: std::ops::Range<u32>, dc: u32) {
    c.tell(&format!("recv {}", seqs.len()));
    for want in seqs {
        let (seq, _, got_dc) = parse_got(&c.expect("got"));
        assert_eq!((seq, got_dc), (want, dc), "(message, delivery count) received; expected ({want}, {dc})");
    }
    assert_eq!(c.expect("ok"), "");
}

/// Member A (a process) claims a span of 5 messages by receiving the first, and is killed
/// with -9 holding it; member B (another process) then receives all 5, in order, each with
/// delivery count 2, and what follows with count 1. The subscription counts 5 redelivered.
#[test]
fn a_killed_members_span_goes_to_another_member_with_delivery_count_2() {
    let q = lag_queue("killed-span");
    Subscription::remove(&q.name, Subscription::DEFAULT).expect("remove the default subscription");
    Subscription::create(&q.name, "w", SubscriptionOptions::new()).expect("create");
    let mut a = spawn_member(&q.name, "w", "subscribe", Wait::Block);
    let mut b = spawn_member(&q.name, "w", "subscribe", Wait::Block);
    let mut tx = Producer::open_with(&q.name, Wait::Block).expect("open producer");
    let mut seq = 0;
    send_n(&mut tx, &mut seq, 5);
    a.tell("hold");
    assert_eq!(a.expect("holding").split(' ').next(), Some("0"));
    let claimed = info(&q.name, "w").members.iter().find(|m| m.pid == a.pid()).and_then(|m| m.claimed);
    assert_eq!(claimed.map(|(s, e)| (e - s) / REC), Some(5), "A's claim: the 5 messages there: {claimed:?}");
    a.kill9();
    recv_seqs(&mut b, 0..5, 2);
    send_n(&mut tx, &mut seq, 3);
    recv_seqs(&mut b, 5..8, 1);
    b.tell("try");
    assert_eq!(b.expect(""), "none");
    let s = info(&q.name, "w");
    assert_eq!(s.redelivered, 5, "{s:?}");
    b.hang_up();
    b.wait_ok();
}

/// Member A claims a span of 5 messages (it holds the first) and is stopped (`SIGSTOP`):
/// its span is never handed on. Member B receives what is sent after the span and nothing
/// of it, even while it waits well past the hand-over time; once continued, A finds its
/// message intact and receives the rest of its span itself. Nothing is delivered twice.
#[test]
fn a_stopped_member_keeps_its_span() {
    let q = lag_queue("stopped-span");
    Subscription::remove(&q.name, Subscription::DEFAULT).expect("remove the default subscription");
    Subscription::create(&q.name, "w", SubscriptionOptions::new()).expect("create");
    let mut a = spawn_member(&q.name, "w", "subscribe", Wait::Block);
    let mut b = spawn_member(&q.name, "w", "subscribe", Wait::Block);
    let mut tx = Producer::open_with(&q.name, Wait::Block).expect("open producer");
    let mut seq = 0;
    send_n(&mut tx, &mut seq, 5);
    a.tell("hold");
    assert_eq!(a.expect("holding").split(' ').next(), Some("0"));
    a.signal(rustix::process::Signal::STOP);
    a.wait_stopped();
    send_n(&mut tx, &mut seq, 20);
    recv_seqs(&mut b, 5..25, 1);
    // Waiting (and so looking for dead members' spans) for 10 times the hand-over time.
    b.tell("within 1000");
    assert_eq!(b.expect(""), "err Timeout", "B while A is stopped holding its span");
    a.signal(rustix::process::Signal::CONT);
    a.tell("check");
    assert_eq!(a.expect(""), "intact");
    a.tell("release");
    assert_eq!(a.expect(""), "released");
    recv_seqs(&mut a, 1..5, 1);
    for c in [&mut a, &mut b] {
        c.tell("try");
        assert_eq!(c.expect(""), "none");
    }
    assert_eq!(info(&q.name, "w").redelivered, 0);
    for c in [&mut a, &mut b] {
        c.hang_up();
        c.wait_ok();
    }
}

// ---------------------------------------------------------------------------------------
// 3b. Lag limit and joins under load.

/// The only member of "slow" (lag limit a quarter of the ring), slower than the producers
/// (a 2 ms nap every 16 messages), on a stream of 64-byte records from 2 producers (no
/// padding: positions are exactly 64 apart). It checks each message's bytes and per-producer
/// order, and that its id is exactly the previous message's end plus the `missed_bytes` of
/// the `Lapped` errors in between (`start` before the first). Once its stdin closes and
/// the producers are done, it drains, checks that it ends at the producers' position, and
/// says `done RECEIVED MISSED LAPPED`.
fn lagging_member(queue: &str) {
    let start: u64 = common::arg("start");
    let p = Payloads::new(SEED, 48, 48);
    let mut rx = Consumer::subscribe_with(queue, "slow", Wait::Block).expect("subscribe");
    common::say("ready");
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    std::thread::spawn(move || {
        while common::hear().is_some() {}
        // Relaxed: only ends the loop below, which polls it.
        s.store(true, Ordering::Relaxed);
    });
    let (mut expect, mut pending, mut received, mut missed, mut lapped) = (start, 0u64, 0u64, 0u64, 0u64);
    let mut next = [0u32; 2];
    let mut scratch = Vec::new();
    let mut draining = false;
    loop {
        let r = if draining {
            match rx.try_recv() {
                Ok(None) => break,
                Ok(Some(m)) => Ok(m),
                Err(e) => Err(e),
            }
        } else {
            rx.recv_timeout(Duration::from_millis(50))
        };
        match r {
            Ok(m) => {
                let (stream, seq) = Payloads::tag(&m);
                assert!(stream < 2 && seq >= next[stream as usize], "producer {stream} message {seq}: out of order");
                p.check(stream, seq, &m, &mut scratch).unwrap();
                assert_eq!(
                    m.id(),
                    expect + pending,
                    "producer {stream} message {seq}: its id is not the previous end ({expect}) plus the bytes \
                     lapped since ({pending})"
                );
                next[stream as usize] = seq + 1;
                expect = m.id() + REC;
                pending = 0;
                received += 1;
                if received % 16 == 0 {
                    drop(m);
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
            Err(Error::Lapped { missed_bytes }) => {
                assert!(missed_bytes > 0 && missed_bytes % REC == 0, "missed_bytes {missed_bytes}");
                pending += missed_bytes;
                missed += missed_bytes;
                lapped += 1;
            }
            Err(Error::Timeout) => draining = stop.load(Ordering::Relaxed),
            Err(e) => panic!("recv: {e}"),
        }
    }
    let tail = Queue::inspect(queue).expect("inspect").tail;
    assert_eq!(expect + pending, tail, "after draining: its position is not the producers'");
    common::say(&format!("done {received} {missed} {lapped}"));
}

/// 2 producer processes at full speed; "slow" has a lag limit and a member that cannot keep
/// up: it is lapped again and again. With `paced`, the subscription "all" (a subscriber
/// process that checks everything) paces the producers; without, nothing does while "slow"
/// is detached (the producers must still not overwrite each other's claims). Every
/// `Lapped { missed_bytes }` is exact: the member's next message is exactly that far past
/// where it stopped, the messages it received plus the bytes it missed make up the whole
/// stream, and the subscription's counters agree.
fn a_lagging_member_under_load(paced: bool) {
    let count = knob("SHMQ_LAG_MESSAGES", 50_000) as u32;
    let q = lag_queue(if paced { "lag-load" } else { "lag-free" });
    Subscription::remove(&q.name, Subscription::DEFAULT).expect("remove the default subscription");
    if paced {
        Subscription::create(&q.name, "all", SubscriptionOptions::new()).expect("create all");
    }
    Subscription::create(&q.name, "slow", SubscriptionOptions::new().lag_limit(Some(CAP / 4))).expect("create");
    let start = Queue::inspect(&q.name).expect("inspect").tail;
    let mut slow = Child::spawn("lagging_member", &q.name, &[("start", start.to_string())]);
    assert_eq!(slow.expect(""), "ready");
    let args = [("count", count.to_string()), ("min", "48".to_string()), ("max", "48".to_string())];
    let mut all = paced.then(|| {
        let mut a = args.to_vec();
        a.push(("sub", "all".into()));
        Child::spawn("fan_subscriber", &q.name, &a)
    });
    let mut producers: Vec<Child> = (0..2)
        .map(|s| {
            let mut a = args.to_vec();
            a.push(("stream", s.to_string()));
            Child::spawn("fan_producer", &q.name, &a)
        })
        .collect();
    for p in &mut producers {
        p.wait_ok();
    }
    if let Some(all) = &mut all {
        assert_eq!(all.expect(""), "ready");
        all.expect("done");
        all.wait_ok();
    }
    slow.hang_up();
    let v: Vec<u64> = slow.expect("done").split(' ').map(|w| w.parse().expect("a number")).collect();
    slow.wait_ok();
    let (received, missed, lapped) = (v[0], v[1], v[2]);
    let total = 2 * u64::from(count);
    println!(
        "lagging member ({}): {received} of {total} messages received, {missed} bytes missed in {lapped} laps",
        if paced { "paced" } else { "free" }
    );
    assert!(lapped > 0, "the slow member was never lapped: make it slower");
    assert_eq!(received * REC + missed, total * REC, "received and missed make up the stream");
    let s = info(&q.name, "slow");
    assert_eq!((s.lapped, s.missed_bytes, s.detached), (lapped, missed, false), "{s:?}");
}

#[test]
fn a_lagging_member_under_load_misses_exactly_the_bytes_lapped_reports() {
    a_lagging_member_under_load(true);
}

#[test]
fn a_lagging_member_with_nothing_else_pacing_the_producers_misses_exactly_what_lapped_reports() {
    a_lagging_member_under_load(false);
}

/// No subscription at all (the default one removed): 2 producer processes send at full
/// speed, nobody reads. Each must still never write over the other's claim before it is
/// committed (a producer whose claim is overwritten fails with `Corrupt`).
#[test]
fn producers_with_no_subscription_never_overwrite_each_others_claims() {
    let count = knob("SHMQ_LAG_MESSAGES", 50_000) as u32;
    let q = lag_queue("no-readers");
    Subscription::remove(&q.name, Subscription::DEFAULT).expect("remove the default subscription");
    let start = Queue::inspect(&q.name).expect("inspect").tail;
    let args = [("count", count.to_string()), ("min", "48".to_string()), ("max", "48".to_string())];
    let mut producers: Vec<Child> = (0..2)
        .map(|s| {
            let mut a = args.to_vec();
            a.push(("stream", s.to_string()));
            Child::spawn("fan_producer", &q.name, &a)
        })
        .collect();
    for p in &mut producers {
        p.wait_ok();
    }
    let snap = Queue::inspect(&q.name).expect("inspect");
    assert_eq!(snap.tail - start, 2 * u64::from(count) * REC, "every message claimed once: {snap:?}");
}

/// Joins subscriptions on command: `join NAME K LOW HIGH` subscribes to NAME, receives K
/// messages (64-byte records of 2 producers) and checks their bytes, per-producer order,
/// that ids are consecutive, and that the first is within `[LOW, HIGH]`; says `ok`, leaves.
fn late_member(queue: &str) {
    let p = Payloads::new(SEED, 48, 48);
    let mut scratch = Vec::new();
    common::say("ready");
    while let Some(line) = common::hear() {
        let w: Vec<&str> = line.split(' ').collect();
        assert_eq!((w.len(), w[0]), (5, "join"), "command {line:?}");
        let (name, k): (&str, u32) = (w[1], w[2].parse().expect("K"));
        let (low, high): (u64, u64) = (w[3].parse().expect("LOW"), w[4].parse().expect("HIGH"));
        let mut rx = Consumer::subscribe_with(queue, name, Wait::Adaptive).expect("subscribe");
        let mut next = [0u32; 2];
        let mut expect = None;
        for n in 0..k {
            let m = rx.recv_timeout(OP_TIMEOUT).unwrap_or_else(|e| panic!("{name}: message {n}: {e}"));
            let (stream, seq) = Payloads::tag(&m);
            assert!(stream < 2 && seq >= next[stream as usize], "{name}: producer {stream} message {seq}: order");
            p.check(stream, seq, &m, &mut scratch).unwrap_or_else(|e| panic!("{name}, message {n}: {e}"));
            match expect {
                None => assert!(
                    (low..=high).contains(&m.id()),
                    "{name}: first message at {}, not between the producers' positions around the creation \
                     ({low}..={high})",
                    m.id()
                ),
                Some(e) => assert_eq!(m.id(), e, "{name}: message {n} (producer {stream} seq {seq}): a gap"),
            }
            expect = Some(m.id() + REC);
            next[stream as usize] = seq + 1;
        }
        drop(rx);
        common::say("ok");
    }
}

/// While 2 producer processes send at full speed, subscriptions are created again and
/// again and joined at once by another process: each sees a clean suffix of the stream,
/// starting between the producers' positions just before and just after its creation, with
/// no gap and no torn or stale record (the join's race with producers that computed their
/// limit before the cursor existed).
#[test]
fn subscriptions_created_under_load_see_a_clean_suffix_of_the_stream() {
    let rounds = knob("SHMQ_JOIN_ROUNDS", 40) as u32;
    let count = 1_000_000u32; // more than the rounds need: the producers are stopped by removal
    let q = lag_queue("join-load");
    Subscription::remove(&q.name, Subscription::DEFAULT).expect("remove the default subscription");
    // Paces the producers: a subscription without members nor lag limit... would stop
    // them; a lag limit lets them run, lapping it.
    Subscription::create(&q.name, "pace", SubscriptionOptions::new().lag_limit(Some(CAP / 2))).expect("create");
    let args = [("count", count.to_string()), ("min", "48".to_string()), ("max", "48".to_string())];
    let mut producers: Vec<Child> = (0..2)
        .map(|s| {
            let mut a = args.to_vec();
            a.push(("stream", s.to_string()));
            Child::spawn("fan_producer", &q.name, &a)
        })
        .collect();
    let mut member = Child::spawn("late_member", &q.name, &[]);
    assert_eq!(member.expect(""), "ready");
    wait_until("the producers starting", || Queue::inspect(&q.name).expect("inspect").tail > 16 * CAP);
    for i in 0..rounds {
        let name = format!("late{i}");
        let low = Queue::inspect(&q.name).expect("inspect").tail;
        Subscription::create(&q.name, &name, SubscriptionOptions::new()).expect("create");
        let high = Queue::inspect(&q.name).expect("inspect").tail;
        member.tell(&format!("join {name} 500 {low} {high}"));
        if member.try_line(OP_TIMEOUT).as_deref() != Some("ok") {
            let snap = Queue::inspect(&q.name).expect("inspect");
            panic!(
                "round {i}: the member of {name} did not receive 500 messages (see its panic above, if any); \
                 producers at {}; subscriptions: {:#?}",
                snap.tail, snap.subscriptions
            );
        }
        Subscription::remove(&q.name, &name).expect("remove");
    }
    member.hang_up();
    member.wait_ok();
    let tail = Queue::inspect(&q.name).expect("inspect").tail;
    println!("{rounds} subscriptions joined under load; {} records sent meanwhile", tail / REC);
    // The producers would go on for long: the test is over.
    for p in &mut producers {
        if let Some(status) = p.wait_until(Instant::now()) {
            panic!("a producer exited before the end (see its panic above): {status:?}");
        }
        p.kill9();
    }
}

/// Member A (a process) claims a span of 5 messages, receives the first and leaves (drops
/// its handle; the process lives on). The other 4 are not lost: member B receives them, and
/// then what follows; the producer is not held back by A's span: it sends two rings' worth
/// while B reads.
#[test]
fn a_member_that_leaves_in_the_middle_of_its_span_hands_the_rest_on() {
    let q = lag_queue("left-span");
    Subscription::remove(&q.name, Subscription::DEFAULT).expect("remove the default subscription");
    Subscription::create(&q.name, "w", SubscriptionOptions::new()).expect("create");
    let mut a = spawn_member(&q.name, "w", "subscribe", Wait::Block);
    let mut b = spawn_member(&q.name, "w", "subscribe", Wait::Block);
    let mut tx = Producer::open_with(&q.name, Wait::Block).expect("open producer");
    let mut seq = 0;
    send_n(&mut tx, &mut seq, 5);
    recv_n(&mut a, 0, 1);
    a.tell("leave");
    assert_eq!(a.expect(""), "left");
    b.tell("recv 4");
    for want in 1..5 {
        let line = b.expect("");
        let (got, _, _) =
            parse_got(line.strip_prefix("got ").unwrap_or_else(|| {
                panic!("B, for message {want} of the span A left: {line:?} (lost with A's handle?)")
            }));
        assert_eq!(got, want, "B's messages from A's span");
    }
    assert_eq!(b.expect("ok"), "");
    let per_ring = (CAP / REC) as u32;
    let first = seq;
    b.tell(&format!("recv {}", 2 * per_ring));
    send_n(&mut tx, &mut seq, 2 * per_ring);
    for want in first..seq {
        let (got, _, dc) = parse_got(&b.expect("got"));
        assert_eq!((got, dc), (want, 1));
    }
    assert_eq!(b.expect("ok"), "");
    for c in [&mut a, &mut b] {
        c.hang_up();
        c.wait_ok();
    }
}

/// Member A of "w" receives 1 message of a span of 5 and leaves; "w" is removed and created
/// again (the same table entry): nothing of the old "w" holds the producer back, and a new
/// member receives what is sent to the new "w" (two rings' worth).
#[test]
fn a_subscription_created_again_inherits_nothing_from_the_removed_one() {
    let q = lag_queue("recreated");
    Subscription::remove(&q.name, Subscription::DEFAULT).expect("remove the default subscription");
    Subscription::create(&q.name, "w", SubscriptionOptions::new()).expect("create");
    let mut a = spawn_member(&q.name, "w", "subscribe", Wait::Block);
    let mut tx = Producer::open_with(&q.name, Wait::Block).expect("open producer");
    let mut seq = 0;
    send_n(&mut tx, &mut seq, 5);
    recv_n(&mut a, 0, 1);
    a.tell("leave");
    assert_eq!(a.expect(""), "left");
    Subscription::remove(&q.name, "w").expect("remove");
    Subscription::create(&q.name, "w", SubscriptionOptions::new()).expect("create again");
    let mut b = spawn_member(&q.name, "w", "subscribe", Wait::Block);
    let per_ring = (CAP / REC) as u32;
    let first = seq;
    b.tell(&format!("recv {}", 2 * per_ring));
    for _ in 0..2 * per_ring {
        let r = tx.send_timeout(&body(seq, LEN), OP_TIMEOUT);
        assert!(
            r.is_ok(),
            "send of message {seq} with the new \"w\"'s member reading: {r:?}; {:?}",
            info(&q.name, "w")
        );
        seq += 1;
    }
    for want in first..seq {
        let (got, _, dc) = parse_got(&b.expect("got"));
        assert_eq!((got, dc), (want, 1));
    }
    assert_eq!(b.expect("ok"), "");
    let members = info(&q.name, "w").members;
    assert!(members.len() == 1 && members[0].pid == b.pid(), "the new \"w\"'s members: only B: {members:?}");
    for c in [&mut a, &mut b] {
        c.hang_up();
        c.wait_ok();
    }
}

/// "slow" has a lag limit; its only member (a process) claims a span of 5 messages, holds
/// the first, and is killed with -9. Nobody is left to take the span over: the lag limit
/// still applies, so the producer is not held back for good (it sends three rings' worth),
/// and a new member's first receive is `Lapped`, then what was sent after.
#[test]
fn a_lag_limited_subscription_whose_member_died_mid_span_does_not_hold_producers() {
    let q = lag_queue("orphan-span");
    Subscription::remove(&q.name, Subscription::DEFAULT).expect("remove the default subscription");
    Subscription::create(&q.name, "slow", SubscriptionOptions::new().lag_limit(Some(CAP / 4))).expect("create");
    let mut a = spawn_member(&q.name, "slow", "subscribe", Wait::Block);
    let mut tx = Producer::open_with(&q.name, Wait::Block).expect("open producer");
    let mut seq = 0;
    send_n(&mut tx, &mut seq, 5);
    a.tell("hold");
    a.expect("holding");
    a.kill9();
    for _ in 0..3 * (CAP / REC) as u32 {
        let r = tx.send_timeout(&body(seq, LEN), OP_TIMEOUT);
        assert!(r.is_ok(), "send of message {seq}: {r:?}; {:?}", info(&q.name, "slow"));
        seq += 1;
    }
    let mut b = spawn_member(&q.name, "slow", "subscribe", Wait::Block);
    b.tell("next");
    let line = b.expect("");
    assert!(line.starts_with("lapped ") || line.starts_with("got 0 "), "B's first receive: {line}");
    b.hang_up();
    b.wait_ok();
}

// ---------------------------------------------------------------------------------------
// 4. Removal.

/// Three members of "gone" (other processes) asleep in `recv()` (`Block` and `Adaptive`) and
/// `recv_timeout`: `Subscription::remove` wakes each with `Err(Closed)`, and their next
/// receive is `Closed` too, even once a new subscription of the same name exists, which a
/// new member joins and reads normally.
#[test]
fn members_asleep_in_recv_get_closed_when_their_subscription_is_removed() {
    let q = TestQueue::create("removed", Options::new());
    Subscription::remove(&q.name, Subscription::DEFAULT).expect("remove the default subscription");
    Subscription::create(&q.name, "gone", SubscriptionOptions::new()).expect("create");
    let setups = [(Wait::Block, "block"), (Wait::Adaptive, "block"), (Wait::Block, "timed")];
    let mut members: Vec<Child> = setups
        .iter()
        .map(|&(wait, cmd)| {
            let mut c = spawn_member(&q.name, "gone", "subscribe", wait);
            c.tell(cmd);
            let tid: i32 = c.expect("waiting").parse().expect("a thread id");
            c.wait_in_shared_futex(tid);
            c
        })
        .collect();
    assert_eq!(info(&q.name, "gone").members.len(), 3);
    let removed = Instant::now();
    Subscription::remove(&q.name, "gone").expect("remove");
    for (c, (wait, cmd)) in members.iter_mut().zip(setups) {
        let line = c.try_line(OP_TIMEOUT);
        assert_eq!(line.as_deref(), Some("closed"), "member ({wait}, {cmd}) after the removal");
        println!("member ({wait}, {cmd}) woke with Closed {:?} after the removal", removed.elapsed());
    }
    assert!(!names(&q.name).contains(&"gone".to_string()));
    assert!(matches!(Consumer::subscribe(&q.name, "gone"), Err(Error::NotFound(_))), "subscribe to a removed one");

    Subscription::create(&q.name, "gone", SubscriptionOptions::new()).expect("create again");
    let mut tx = Producer::open(&q.name).expect("open producer");
    tx.send(&body(0, LEN)).expect("send");
    for c in &mut members {
        c.tell("try");
        assert_eq!(c.expect(""), "closed", "a member of the removed subscription, after a new one of its name");
    }
    // The new subscription has message 0, sent after its creation.
    let mut fresh = spawn_member(&q.name, "gone", "subscribe", Wait::Block);
    recv_n(&mut fresh, 0, 1);
    tx.send(&body(1, LEN)).expect("send");
    recv_n(&mut fresh, 1, 1);
    fresh.tell("try");
    assert_eq!(fresh.expect(""), "none");
    for c in members.iter_mut().chain([&mut fresh]) {
        c.hang_up();
        c.wait_ok();
    }
}

/// A producer that sends `count` messages of `LEN` bytes, saying `sent SEQ` after each.
fn counting_producer(queue: &str) {
    let count: u32 = common::arg("count");
    let mut tx = Producer::open_with(queue, Wait::Block).expect("open producer");
    for seq in 0..count {
        tx.send_timeout(&body(seq, LEN), OP_TIMEOUT).unwrap_or_else(|e| panic!("send {seq}: {e}"));
        common::say(&format!("sent {seq}"));
    }
}

/// A producer process waits for a subscription without a lag limit that nobody reads (the
/// ring full of its messages); removing it lets the producer go on at once.
#[test]
fn removing_a_subscription_releases_a_producer_waiting_for_it() {
    let q = lag_queue("release");
    Subscription::remove(&q.name, Subscription::DEFAULT).expect("remove the default subscription");
    Subscription::create(&q.name, "stuck", SubscriptionOptions::new()).expect("create");
    let per_ring = (CAP / REC) as u32;
    let count = per_ring + 10;
    let mut p = Child::spawn("counting_producer", &q.name, &[("count", count.to_string())]);
    for seq in 0..per_ring {
        assert_eq!(p.expect("sent"), seq.to_string());
    }
    // It is stuck: nothing more within a while (not a proof, but the ring is full).
    assert_eq!(p.try_line(Duration::from_millis(300)), None, "a send into a ring full of \"stuck\"'s messages");
    assert_eq!(info(&q.name, "stuck").lag_bytes, CAP);
    Subscription::remove(&q.name, "stuck").expect("remove");
    for seq in per_ring..count {
        assert_eq!(p.expect("sent"), seq.to_string());
    }
    p.wait_ok();
}

// ---------------------------------------------------------------------------------------
// 5. Names, options, limits, the default subscription.

/// Creating is idempotent with the same options and `InvalidArgument` with others; names
/// follow the queue-name rule and are at most 48 bytes; a queue has at most 64
/// subscriptions, the default one included (`Busy` beyond); removing frees an entry;
/// `NotFound` for unknown subscriptions and queues.
#[test]
fn subscription_names_options_and_the_limit_of_64() {
    assert_eq!(Subscription::MAX, 64);
    assert_eq!(Subscription::MAX_NAME_LEN, 48);
    let q = TestQueue::create("names", Options::new().capacity(1 << 16).max_message(1024));
    let all = Subscription::list(&q.name).expect("list");
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!((all[0].name.as_str(), all[0].lag_limit), (Subscription::DEFAULT, None));
    assert!(all[0].members.is_empty() && !all[0].detached, "{all:?}");

    let plain = SubscriptionOptions::new();
    let limited = SubscriptionOptions::new().start(shmq::From::Now).lag_limit(Some(4096));
    Subscription::create(&q.name, "a", plain).expect("create a");
    Subscription::create(&q.name, "a", plain).expect("create a again, same options");
    let r = Subscription::create(&q.name, "a", limited);
    assert!(matches!(r, Err(Error::InvalidArgument(_))), "a with other options: {r:?}");
    Subscription::create(&q.name, "b", limited).expect("create b");
    Subscription::create(&q.name, "b", limited).expect("create b again");
    for other in [plain, SubscriptionOptions::new().lag_limit(Some(2048))] {
        let r = Subscription::create(&q.name, "b", other);
        assert!(matches!(r, Err(Error::InvalidArgument(_))), "b with {other:?}: {r:?}");
    }
    assert_eq!(info(&q.name, "a").lag_limit, None);
    assert_eq!(info(&q.name, "b").lag_limit, Some(4096));
    // The default subscription: no lag limit.
    Subscription::create(&q.name, Subscription::DEFAULT, plain).expect("create default, same options");
    let r = Subscription::create(&q.name, Subscription::DEFAULT, limited);
    assert!(matches!(r, Err(Error::InvalidArgument(_))), "default with a lag limit: {r:?}");
    // A lag limit beyond the capacity (it counts as the capacity: see
    // `a_lag_limit_beyond_the_capacity_counts_as_the_capacity`).
    Subscription::create(&q.name, "huge", SubscriptionOptions::new().lag_limit(Some(u64::MAX))).expect("huge");
    Subscription::create(&q.name, "huge", SubscriptionOptions::new().lag_limit(Some(u64::MAX))).expect("again");
    assert!(info(&q.name, "huge").lag_limit.is_some());

    let longest = "x".repeat(48);
    Subscription::create(&q.name, &longest, plain).expect("a 48-byte name");
    for bad in ["", ".hidden", "a/b", "a b", "caf\u{e9}", "nul\0", &"y".repeat(49)] {
        let r = Subscription::create(&q.name, bad, plain);
        assert!(matches!(r, Err(Error::InvalidName(_))), "name {bad:?}: {r:?}");
    }
    let mut listed = names(&q.name);
    assert_eq!(listed[0], Subscription::DEFAULT, "the default one first");
    listed.sort();
    let mut want = vec![Subscription::DEFAULT.to_string(), "a".into(), "b".into(), "huge".into(), longest.clone()];
    want.sort();
    assert_eq!(listed, want);
    let snap = Queue::inspect(&q.name).expect("inspect");
    assert_eq!(snap.subscriptions.iter().map(|s| s.name.clone()).collect::<Vec<_>>(), names(&q.name));

    let mut i = 0;
    while names(&q.name).len() < Subscription::MAX {
        Subscription::create(&q.name, &format!("s.{i}_-"), plain).expect("create up to 64");
        i += 1;
    }
    let r = Subscription::create(&q.name, "one-too-many", plain);
    assert!(matches!(r, Err(Error::Busy(_))), "a 65th subscription: {r:?}");
    Subscription::create(&q.name, "a", plain).expect("an existing one, with 64: still idempotent");
    Subscription::remove(&q.name, "b").expect("remove b");
    Subscription::create(&q.name, "one-too-many", plain).expect("created once one was removed");
    assert_eq!(names(&q.name).len(), Subscription::MAX);

    for r in [Subscription::remove(&q.name, "b"), Subscription::remove(&q.name, "never")] {
        assert!(matches!(r, Err(Error::NotFound(_))), "remove of a missing subscription: {r:?}");
    }
    assert!(matches!(Consumer::subscribe(&q.name, "never"), Err(Error::NotFound(_))));
    let missing = TestQueue::name("no-such-queue");
    assert!(matches!(Subscription::create(&missing.name, "a", plain), Err(Error::NotFound(_))));
    assert!(matches!(Subscription::list(&missing.name), Err(Error::NotFound(_))));
    assert!(matches!(Subscription::remove(&missing.name, "a"), Err(Error::NotFound(_))));
    assert!(matches!(Consumer::subscribe(&missing.name, "a"), Err(Error::NotFound(_))));
}

/// `Consumer::open` still reads the default subscription, one consumer at a time (`Busy` for
/// a second while the first, in another process, lives; listed as its one member). Once
/// "default" is removed, `Consumer::open` is `NotFound`, in this process and another, and
/// producers no longer wait for it.
#[test]
fn the_default_subscription_is_exclusive_and_gone_once_removed() {
    let q = lag_queue("default");
    let mut c = spawn_member(&q.name, Subscription::DEFAULT, "open", Wait::Block);
    let r = Consumer::open(&q.name);
    assert!(matches!(r, Err(Error::Busy(_))), "a second Consumer::open: {r:?}");
    let d = info(&q.name, Subscription::DEFAULT);
    assert_eq!(d.members.iter().map(|m| m.pid).collect::<Vec<_>>(), [c.pid()], "{d:?}");
    let mut tx = Producer::open(&q.name).expect("open producer");
    tx.send(&body(0, LEN)).expect("send");
    c.tell("next");
    let (seq, _, dc) = parse_got(&c.expect("got"));
    assert_eq!((seq, dc), (0, 1));
    c.hang_up();
    c.wait_ok();
    drop(Consumer::open(&q.name).expect("Consumer::open once the first is gone"));

    Subscription::remove(&q.name, Subscription::DEFAULT).expect("remove the default subscription");
    assert!(matches!(Consumer::open(&q.name), Err(Error::NotFound(_))), "Consumer::open without default");
    let mut c = Child::spawn(
        "member",
        &q.name,
        &[("sub", Subscription::DEFAULT.into()), ("how", "open".into()), ("wait", "block".into())],
    );
    let line = c.expect("failed");
    assert!(line.starts_with("NotFound"), "Consumer::open in another process: {line}");
    c.wait_ok();
    // Nobody holds the producers back: three rings' worth goes in without waiting.
    for seq in 0..3 * (CAP / REC) as u32 {
        tx.try_send(&body(seq, LEN)).unwrap_or_else(|e| panic!("try_send {seq} with no subscription: {e}"));
    }
}

/// A subscription sees the messages sent after its creation, not those before, whoever
/// joins it and whenever.
#[test]
fn a_new_subscription_sees_only_what_is_sent_after_its_creation() {
    let q = lag_queue("late");
    Subscription::remove(&q.name, Subscription::DEFAULT).expect("remove the default subscription");
    let mut tx = Producer::open(&q.name).expect("open producer");
    let mut seq = 0;
    send_n(&mut tx, &mut seq, 3);
    let created_at = Queue::inspect(&q.name).expect("inspect").tail;
    Subscription::create(&q.name, "late", SubscriptionOptions::new()).expect("create");
    send_n(&mut tx, &mut seq, 2);
    Subscription::create(&q.name, "later", SubscriptionOptions::new()).expect("create");
    let mut late = spawn_member(&q.name, "late", "subscribe", Wait::Block);
    let mut later = spawn_member(&q.name, "later", "subscribe", Wait::Block);
    let ids = recv_n(&mut late, 3, 2);
    assert_consecutive(&ids, created_at);
    for c in [&mut late, &mut later] {
        c.tell("try");
        assert_eq!(c.expect(""), "none");
    }
    send_n(&mut tx, &mut seq, 1);
    let a = recv_n(&mut late, 5, 1);
    let b = recv_n(&mut later, 5, 1);
    assert_eq!(a, b, "the same message has the same id in every subscription");
    for c in [&mut late, &mut later] {
        c.hang_up();
        c.wait_ok();
    }
}

/// Joins subscription `sub` `n` times (each its own handle); says `joined` or `failed I
/// ERROR`; holds them until stdin closes.
fn many_members(queue: &str) {
    let sub: String = common::arg("sub");
    let n: usize = common::arg("n");
    let mut held = Vec::new();
    for i in 0..n {
        match Consumer::subscribe(queue, &sub) {
            Ok(c) => held.push(c),
            Err(e) => {
                common::say(&format!("failed {i} {e:?}"));
                return;
            }
        }
    }
    common::say("joined");
    while common::hear().is_some() {}
}

/// Members take participant slots, which they share with producers: slots 1..63 (slot 0
/// is the default subscription's consumer). 32 members in another process and 31 here fill
/// them: the next member is `Busy`, and so is a producer; once the other process is killed
/// with -9 its slots serve new members.
#[test]
fn members_fill_the_participant_table_and_the_slots_of_dead_ones_are_reused() {
    const SLOTS: usize = 63;
    let q = lag_queue("members");
    Subscription::create(&q.name, "x", SubscriptionOptions::new()).expect("create x");
    Subscription::create(&q.name, "y", SubscriptionOptions::new()).expect("create y");
    let mut other = Child::spawn("many_members", &q.name, &[("sub", "x".into()), ("n", "32".into())]);
    assert_eq!(other.expect(""), "joined");
    let mut here: Vec<Consumer> = (0..SLOTS - 32)
        .map(|i| Consumer::subscribe(&q.name, "y").unwrap_or_else(|e| panic!("member {i} here: {e}")))
        .collect();
    let r = Consumer::subscribe(&q.name, "y");
    assert!(matches!(r, Err(Error::Busy(_))), "a member beyond the table: {r:?}");
    let r = Producer::open(&q.name);
    assert!(matches!(r, Err(Error::Busy(_))), "a producer with the table full of members: {r:?}");
    assert_eq!((info(&q.name, "x").members.len(), info(&q.name, "y").members.len()), (32, SLOTS - 32));
    other.kill9();
    for i in 0..32 {
        here.push(Consumer::subscribe(&q.name, "y").unwrap_or_else(|e| panic!("member {i} after the kill: {e}")));
    }
    let r = Consumer::subscribe(&q.name, "x");
    assert!(matches!(r, Err(Error::Busy(_))), "a member beyond the table: {r:?}");
    assert!(info(&q.name, "x").members.is_empty(), "the dead members are gone from the list");
    drop(here);
    assert!(info(&q.name, "y").members.is_empty(), "members that dropped their handles");
}

/// A lag limit of the capacity or more counts as the capacity (no overflow): with its
/// member idle in another process, producers never wait for the subscription; it is lapped
/// and rejoins exactly as with a smaller limit.
#[test]
fn a_lag_limit_beyond_the_capacity_counts_as_the_capacity() {
    for limit in [CAP, CAP + 1, u64::MAX / 2, u64::MAX] {
        let q = lag_queue("huge-limit");
        Subscription::remove(&q.name, Subscription::DEFAULT).expect("remove the default subscription");
        Subscription::create(&q.name, "huge", SubscriptionOptions::new().lag_limit(Some(limit))).expect("create");
        let mut m = spawn_member(&q.name, "huge", "subscribe", Wait::Block);
        let mut tx = Producer::open_with(&q.name, Wait::Block).expect("open producer");
        let mut seq = 0;
        send_n(&mut tx, &mut seq, 1);
        let resume = recv_n(&mut m, 0, 1)[0] + REC;
        let lap = (3 * CAP / REC) as u32;
        for _ in 0..lap {
            let r = tx.send_timeout(&body(seq, LEN), OP_TIMEOUT);
            assert!(r.is_ok(), "lag limit {limit}: send of message {seq} with the member idle: {r:?}");
            seq += 1;
        }
        let tail = Queue::inspect(&q.name).expect("inspect").tail;
        m.tell("next");
        let missed: u64 = m.expect("lapped").parse().expect("missed bytes");
        assert_eq!(missed, tail - resume, "lag limit {limit}");
        let first = seq;
        send_n(&mut tx, &mut seq, 2);
        assert_consecutive(&recv_n(&mut m, first, 2), tail);
        m.hang_up();
        m.wait_ok();
    }
}

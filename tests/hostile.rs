//! The threat model (docs/ARCHITECTURE.md, "Untrusted memory"): a process of the same user writes anything into the
//! segment at any time. Here one process scribbles random and boundary values into the
//! positions, the record headers, the wait words and the participant table, for a few
//! seconds, while another sends and a third receives with timeouts. Both must only ever
//! get messages or errors: no panic (exit code 101), no signal (SIGSEGV, SIGBUS), no wait
//! past its timeout (the parent's watchdog kills everything and fails if they hang).

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{
    Child, OFF_DATA, OFF_DATA_WAITERS, OFF_HEAD, OFF_MEMBERS, OFF_SALT, OFF_SLOT_CLAIM, OFF_SLOT_GATE_MIN,
    OFF_SPACE_WAITERS, OFF_SUB_TABLE, OFF_SUBS, OFF_TABLE, OFF_TAIL, RawSegment, Rng, SLOT_SIZE, SLOTS, SUB_ENTRY_SIZE,
    TestQueue,
};
use shmq::{Consumer, Error, Mode, Options, Producer, Queue, Subscription, SubscriptionOptions, Wait};

const CAPACITY: u64 = 1 << 14;
const MAX_MESSAGE: u32 = 1024;
const OP: Duration = Duration::from_millis(20);
/// A call that lasts this long under `OP` timeouts has hung (see `Tally::assert_no_hang`).
const HANG: Duration = Duration::from_secs(10);
/// How long the scribbler runs; `SHMQ_HOSTILE_SECS` overrides it for longer explorations,
/// `SHMQ_HOSTILE_SEED` changes the seeds.
const SCRIBBLE_SECS: u64 = 3;
/// Generous: the whole run takes a few seconds.
const LIMIT: Duration = Duration::from_secs(60);

#[test]
fn child_role() {
    common::run_child(|role, queue| match role {
        "sender" => sender(queue),
        "receiver" => receiver(queue),
        "scribbler" => scribbler(queue, common::arg("seed"), Duration::from_secs(common::arg("secs"))),
        other => panic!("unknown role {other}"),
    });
}

/// Set once the parent hangs up.
fn stop_flag() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    std::thread::spawn(move || {
        while common::hear().is_some() {}
        s.store(true, Ordering::Relaxed);
    });
    stop
}

/// Outcomes by kind, and the longest single call.
#[derive(Default)]
struct Tally {
    counts: BTreeMap<String, u64>,
    longest: Duration,
}

impl Tally {
    fn add<T>(&mut self, r: &Result<T, Error>, took: Duration) {
        let kind = match r {
            Ok(_) => "ok".to_owned(),
            Err(e) => format!("{e:?}").split(['(', ' ', '{']).next().unwrap_or("?").to_owned(),
        };
        *self.counts.entry(kind).or_default() += 1;
        self.longest = self.longest.max(took);
    }

    fn get(&self, kind: &str) -> u64 {
        self.counts.get(kind).copied().unwrap_or(0)
    }

    /// Fails if any single call took longer than a generous bound: every call here has a
    /// timeout of `OP` (or none to wait for), so a call that lasts seconds is a hang that
    /// hostile words caused, not a slow machine.
    fn assert_no_hang(&self, who: &str) {
        assert!(self.longest < HANG, "{who}: a call took {:?} (timeouts are {OP:?}): {}", self.longest, self.report());
    }

    fn report(&self) -> String {
        format!("{:?} longest call {:?}", self.counts, self.longest)
    }
}

/// Calls the read-only snapshots, which read the same hostile words.
fn look(queue: &str, len: usize) -> usize {
    let n = Queue::inspect(queue).map(|s| s.participants.len().wrapping_add(s.messages as usize)).unwrap_or(0);
    let subs = Subscription::list(queue).map(|l| l.len()).unwrap_or(0);
    n.wrapping_add(len).wrapping_add(subs)
}

fn sender(queue: &str) {
    let wait = common::arg::<Wait>("wait");
    let stop = stop_flag();
    let mut rng = Rng(std::process::id().into());
    let mut tally = Tally::default();
    let mut opens = Tally::default();
    let mut tx = Some(Producer::open_with(queue, wait).expect("open producer"));
    common::say("ready");
    let buf: Vec<u8> = (0..MAX_MESSAGE).map(|i| i as u8).collect();
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let Some(p) = tx.as_mut() else {
            let (r, took) = common::timed(|| Producer::open_with(queue, wait));
            opens.add(&r, took);
            tx = r.ok();
            if tx.is_none() {
                std::thread::sleep(Duration::from_millis(1));
            }
            continue;
        };
        let len = rng.below(u64::from(MAX_MESSAGE) + 1) as usize;
        let (r, took) = common::timed(|| match i % 4 {
            0 => p.try_send(&buf[..len]).map(drop),
            1 => p.reserve_timeout(len, OP).map(|mut g| {
                g.copy_from_slice(&buf[..len]);
                let _ = g.commit(); // a hostile writer may have made it fail
            }),
            2 => p.try_send_batch(&[&buf[..len / 2], &buf[..len / 3]]).map(drop),
            _ => p.send_timeout(&buf[..len], OP).map(drop),
        });
        tally.add(&r, took);
        if i % 64 == 0 {
            std::hint::black_box(look(queue, p.len() + usize::from(p.is_empty())));
        }
        if matches!(r, Err(Error::Corrupt(_))) {
            tx = None; // attach again, over whatever the words say now
        }
    }
    drop(tx);
    tally.assert_no_hang("sender");
    opens.assert_no_hang("sender's opens");
    common::say(&format!("sender {} | opens {}", tally.report(), opens.report()));
}

fn receiver(queue: &str) {
    let wait = common::arg::<Wait>("wait");
    let sub = common::arg::<String>("sub");
    let stop = stop_flag();
    let mut tally = Tally::default();
    let mut opens = Tally::default();
    let mut rx = Some(match sub.as_str() {
        "" => Consumer::open_with(queue, wait).expect("open consumer"),
        s => Consumer::subscribe_with(queue, s, wait).expect("join the subscription"),
    });
    common::say("ready");
    let mut flowing = false;
    let mut sum = 0u64;
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let Some(c) = rx.as_mut() else {
            let (r, took) = common::timed(|| match sub.as_str() {
                "" => Consumer::open_with(queue, wait),
                s => Consumer::subscribe_with(queue, s, wait),
            });
            opens.add(&r, took);
            rx = r.ok();
            if rx.is_none() {
                std::thread::sleep(Duration::from_millis(1));
            }
            continue;
        };
        // Every byte handed out is read: an out-of-bounds slice would fault here.
        let mut read = |m: &[u8]| {
            assert!(m.len() <= MAX_MESSAGE as usize, "a message of {} bytes", m.len());
            sum = m.iter().fold(sum, |s, &b| s.wrapping_add(u64::from(b)));
        };
        let (r, took) = common::timed(|| match i % 4 {
            0 => c.try_recv_batch(16, &mut read).map(drop),
            1 => c.try_peek().map(|m| m.map(&mut read)).and_then(|_| c.advance().map(drop)),
            2 => c.recv_batch_timeout(8, OP, &mut read).map(drop),
            _ => c.recv_timeout(OP).map(|m| read(&m)),
        });
        tally.add(&r, took);
        if i % 64 == 0 {
            std::hint::black_box(look(queue, c.len().saturating_add(usize::from(c.is_empty()))));
        }
        if !flowing && tally.get("ok") >= 100 {
            flowing = true;
            common::say("flowing");
        }
        if matches!(r, Err(Error::Corrupt(_) | Error::Closed)) {
            rx = None;
        }
    }
    drop(rx);
    std::hint::black_box(sum);
    tally.assert_no_hang("receiver");
    opens.assert_no_hang("receiver's opens");
    common::say(&format!("receiver {} | opens {}", tally.report(), opens.report()));
}

/// A value worth writing over a word whose honest value is `cur`.
fn hostile_value(rng: &mut Rng, cur: u64) -> u64 {
    let cap = CAPACITY;
    match rng.below(16) {
        0 => 0,
        1 => u64::MAX,
        2 => cap - 1,
        3 => cap,
        4 => cap + 1,
        5 => rng.next_u64(),
        6 => 1 << 63,
        7 => cur.wrapping_add(cap),
        8 => cur.wrapping_sub(8),
        9 => cur | 3,
        10 => cur.wrapping_add(8),
        11 => u64::MAX - 7,
        12 => cap * 2,
        13 => cur.wrapping_add(rng.below(64) * 8),
        14 => cur.wrapping_sub(cap),
        _ => u64::from(u32::MAX),
    }
}

/// A record header word (layout v2) for the record at `pos`: a stamp forged for that very
/// position (the salt is in the header, readable by anyone) with any kind, or an info word
/// with boundary lengths and sizes, or a stamp of another position.
fn hostile_header(rng: &mut Rng, salt: u64, pos: u64) -> (u64, u64) {
    let stamp = |p: u64, kind: u64| ((p ^ salt) & !7) | kind;
    let max = u64::from(MAX_MESSAGE);
    let len = match rng.below(8) {
        0 => 0,
        1 => 7,
        2 => max,
        3 => max + 1,
        4 => u64::from(u32::MAX),
        _ => rng.below(max + 1),
    };
    let size = match rng.below(8) {
        0 => 0,
        1 => 8,
        2 => 16,
        3 => CAPACITY,
        4 => CAPACITY * 2,
        5 => (16 + len + 7) & !7,
        6 => rng.next_u64(),
        _ => rng.below(CAPACITY) & !7,
    };
    match rng.below(4) {
        0 => (0, stamp(pos, rng.below(8))),                        // the stamp, forged
        1 => (8, len | (size / 8) << 32),                          // the info word
        2 => (0, stamp(pos.wrapping_add(CAPACITY), rng.below(8))), // a stamp of another lap
        _ => (0, rng.next_u64()),
    }
}

fn scribbler(queue: &str, seed: u64, scribble_for: Duration) {
    let raw = RawSegment::open(queue);
    let mut rng = Rng(seed);
    let until = Instant::now() + scribble_for;
    let mut writes = 0u64;
    while Instant::now() < until {
        for _ in 0..32 {
            match rng.below(12) {
                // The subscriptions: the line-6 words, an entry's cursor, members mask,
                // wait words, options and name, a member's claim, a producer's `gate_min`.
                10 | 11 => {
                    let entry = OFF_SUB_TABLE + rng.below(3) * SUB_ENTRY_SIZE;
                    let off = match rng.below(7) {
                        0 => OFF_SUBS + 8 * rng.below(3),
                        1 | 2 => entry,
                        3 => entry + 8,
                        4 => entry + 128 + 8 * rng.below(2),
                        5 => entry + 256 + 8 * rng.below(15),
                        _ => match rng.below(2) {
                            0 => OFF_MEMBERS + rng.below(SLOTS) * 128 + 8 * rng.below(5),
                            _ => OFF_TABLE + rng.below(SLOTS) * SLOT_SIZE + OFF_SLOT_GATE_MIN,
                        },
                    };
                    let cur = raw.read_u64(off);
                    raw.write_u64(off, hostile_value(&mut rng, cur));
                }
                // The positions.
                0..=2 => {
                    // `tail`, `head`, or a producer slot's claim record (start or end).
                    let claim = OFF_TABLE + (1 + rng.below(SLOTS - 1)) * SLOT_SIZE + OFF_SLOT_CLAIM + 8 * rng.below(2);
                    let off = [OFF_TAIL, OFF_HEAD, claim][rng.below(3) as usize];
                    let cur = raw.read_u64(off);
                    raw.write_u64(off, hostile_value(&mut rng, cur));
                }
                // Record headers: where the consumer reads next, where producers write
                // next, or anywhere (aligned or not).
                3..=6 => {
                    let head = raw.read_u64(OFF_HEAD);
                    let tail = raw.read_u64(OFF_TAIL);
                    let pos = match rng.below(4) {
                        0 => head & !7,
                        1 => tail & !7,
                        2 => head.wrapping_add(rng.below(CAPACITY)) & !7,
                        _ => rng.next_u64() & !7,
                    };
                    let (word, value) = hostile_header(&mut rng, raw.read_u64(OFF_SALT), pos);
                    let index = (pos % CAPACITY + word).min(CAPACITY - 8);
                    if rng.chance(8) {
                        raw.write_u64(OFF_DATA + rng.below(CAPACITY - 8), value); // unaligned
                    } else {
                        raw.write_u64(OFF_DATA + index, value);
                    }
                }
                // The wait words.
                7 => {
                    let off = [OFF_DATA_WAITERS, OFF_SPACE_WAITERS][rng.below(2) as usize] + 4 * rng.below(2);
                    let v = [0, 1, u32::MAX, rng.next_u64() as u32][rng.below(4) as usize];
                    raw.write_u32(off, v);
                }
                // The participant table: state, role, pid, start time, heartbeat, counters.
                _ => {
                    let slot = if rng.chance(2) { rng.below(2) } else { rng.below(SLOTS) };
                    let field = rng.below(11) * 8;
                    let off = OFF_TABLE + slot * SLOT_SIZE + field;
                    let cur = raw.read_u64(off);
                    raw.write_u64(off, hostile_value(&mut rng, cur));
                }
            }
            writes += 1;
        }
        // Storms and lulls: in a lull the ring runs long enough to wrap and to reach
        // states that a storm would cut short.
        std::thread::sleep(Duration::from_micros(200 * (1 + rng.below(20))));
    }
    common::say(&format!("scribbled {writes}"));
}

fn hostile_writer_cannot_crash_or_hang_sender_and_receiver(mode: Mode, wait: &str, seed: u64) {
    hostile_run(mode, wait, seed, "");
}

/// As above; the receiver is a member of subscription `sub` (if not empty), which has a
/// lag limit, beside the default subscription.
fn hostile_run(mode: Mode, wait: &str, seed: u64, sub: &str) {
    let q = TestQueue::create(
        &format!("hostile-{mode}-{wait}"),
        Options::new().mode(mode).capacity(CAPACITY).max_message(MAX_MESSAGE),
    );
    if !sub.is_empty() {
        Subscription::create(&q.name, sub, SubscriptionOptions::new().lag_limit(Some(CAPACITY / 2))).unwrap();
    }
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    let secs = env("SHMQ_HOSTILE_SECS").unwrap_or(SCRIBBLE_SECS);
    let seed = seed ^ env("SHMQ_HOSTILE_SEED").unwrap_or(0);
    let deadline = Instant::now() + LIMIT + Duration::from_secs(secs);
    let args = [("wait", wait.to_owned()), ("sub", sub.to_owned())];
    let mut receiver = Child::spawn("receiver", &q.name, &args);
    receiver.expect("ready");
    let mut sender = Child::spawn("sender", &q.name, &args);
    sender.expect("ready");
    receiver.expect("flowing");
    let mut scribbler = Child::spawn("scribbler", &q.name, &[("seed", seed.to_string()), ("secs", secs.to_string())]);
    let scribbled: u64 = scribbler.expect("scribbled").parse().unwrap();
    scribbler.wait_ok_by(deadline);
    sender.hang_up();
    receiver.hang_up();
    sender.wait_ok_by(deadline);
    receiver.wait_ok_by(deadline);
    let sent = sender.expect("sender");
    let received = receiver.expect("receiver");
    eprintln!("{mode} {wait} seed {seed:#x}: {scribbled} hostile writes\n  sent: {sent}\n  received: {received}");
    assert!(scribbled > 1000, "the scribbler hardly wrote anything: {scribbled}");
    // The wreck can still be looked at and removed by a third party.
    let _ = Queue::inspect(&q.name);
    Queue::remove(&q.name).unwrap();
}

#[test]
fn a_hostile_writer_cannot_crash_or_hang_an_spsc_sender_and_receiver() {
    hostile_writer_cannot_crash_or_hang_sender_and_receiver(Mode::Spsc, "block", 0x4051_1e01);
}

#[test]
fn a_hostile_writer_cannot_crash_or_hang_an_mpsc_sender_and_receiver() {
    hostile_writer_cannot_crash_or_hang_sender_and_receiver(Mode::Mpsc, "adaptive", 0x4051_1e02);
}

#[test]
fn a_hostile_writer_cannot_crash_or_hang_a_member_of_a_subscription() {
    hostile_run(Mode::Mpsc, "block", 0x4051_1e03, "hostile-sub");
}

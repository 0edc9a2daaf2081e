//! Futex wakeups across processes: a sleeping consumer wakes when another process sends, a
//! sleeping producer wakes when another process drains; the counters in the header prove
//! that these went through the futex, and that a busy queue made no wake call.
//!
//! "Asleep" is checked, not assumed: the parent waits until the waiter count in the segment
//! is non-zero and `/proc/PID/task/TID/syscall` shows the child's thread in `FUTEX_WAIT` on
//! a shared futex.

mod common;

use common::{Child, OFF_DATA_WAITERS, OFF_SPACE_WAITERS, OP_TIMEOUT, Payloads, TestQueue};
use rustix::process::Signal;
use shmq::{Consumer, Error, Mode, Options, Producer, Queue, Subscription, SubscriptionOptions, Wait};

const SEED: u64 = 0x5eed_0003;

#[test]
fn child_role() {
    common::run_child(|role, queue| match role {
        "blocked_consumer" => {
            let mut rx = Consumer::open_with(queue, common::arg::<Wait>("wait")).expect("open consumer");
            common::say(&format!("ready {}", common::tid()));
            // No timeout: only a wakeup ends this (the parent's watchdog bounds it).
            let msg = rx.recv().expect("recv");
            assert_eq!(&*msg, b"wake up");
        }
        "blocked_producer" => {
            let p = Payloads::new(SEED, 0, 512);
            let mut tx = Producer::open_with(queue, common::arg::<Wait>("wait")).expect("open producer");
            let mut buf = Vec::new();
            let mut n = 0;
            loop {
                p.fill(0, n, &mut buf);
                match tx.try_send(&buf) {
                    Ok(_) => n += 1,
                    Err(Error::Full) => break,
                    Err(e) => panic!("try_send: {e}"),
                }
            }
            common::say(&format!("full {n} {}", common::tid()));
            // No timeout: only a wakeup ends this (the parent's watchdog bounds it).
            tx.send(&buf).expect("send");
        }
        "streaming_producer" => {
            let count: u32 = common::arg("count");
            let p = Payloads::new(SEED, 0, 64);
            let mut tx = Producer::open_with(queue, Wait::Block).expect("open producer");
            let mut buf = Vec::new();
            for seq in 0..count {
                p.fill(0, seq, &mut buf);
                tx.send_timeout(&buf, OP_TIMEOUT).expect("send");
            }
        }
        "counting_consumer" => {
            // Sleeps in `recv` (Block), then takes `count` messages; `sub`: as a member of
            // that subscription instead of the default consumer.
            let count: u32 = common::arg("count");
            let p = Payloads::new(SEED, 0, 64);
            let mut rx = match std::env::var("SHMQ_ARG_sub") {
                Ok(sub) => Consumer::subscribe_with(queue, &sub, Wait::Block).expect("join"),
                Err(_) => Consumer::open_with(queue, Wait::Block).expect("open consumer"),
            };
            common::say(&format!("ready {}", common::tid()));
            let mut scratch = Vec::new();
            for seq in 0..count {
                let m = rx.recv_timeout(common::WATCHDOG).expect("recv");
                p.check(0, seq, &m, &mut scratch).unwrap();
            }
        }
        "polling_consumer" => {
            // Never sleeps: try_recv only, yielding the CPU when the queue is empty.
            let count: u32 = common::arg("count");
            let p = Payloads::new(SEED, 0, 64);
            let mut rx = Consumer::open_with(queue, Wait::Block).expect("open consumer");
            let mut scratch = Vec::new();
            let mut seq = 0;
            while seq < count {
                match rx.try_recv().expect("try_recv") {
                    Some(m) => {
                        p.check(0, seq, &m, &mut scratch).unwrap();
                        seq += 1;
                    }
                    None => std::thread::yield_now(),
                }
            }
        }
        other => panic!("unknown role {other}"),
    });
}

fn consumer_blocked_in_recv_wakes_when_another_process_sends(wait: &str) {
    let q = TestQueue::create(&format!("wake-consumer-{wait}"), Options::new().capacity(1 << 16).max_message(1024));
    let raw = q.raw();
    let mut child = Child::spawn("blocked_consumer", &q.name, &[("wait", wait.into())]);
    let tid: i32 = child.expect("ready").parse().unwrap();
    child.wait_asleep_on_futex(tid, &raw, OFF_DATA_WAITERS);

    let mut tx = Producer::open_with(&q.name, Wait::Block).unwrap();
    tx.send(b"wake up").unwrap();
    child.wait_ok();

    let s = Queue::inspect(&q.name).unwrap();
    assert_eq!(s.received.messages, 1);
    assert!(s.sent.wake_calls >= 1, "the sender found a sleeper and made a wake call: {:?}", s.sent);
    assert!(s.received.wait_calls >= 1, "the consumer slept on the futex: {:?}", s.received);
}

#[test]
fn a_consumer_blocked_in_recv_with_wait_block_wakes_when_another_process_sends() {
    consumer_blocked_in_recv_wakes_when_another_process_sends("block");
}

#[test]
fn a_consumer_blocked_in_recv_with_wait_adaptive_wakes_when_another_process_sends() {
    consumer_blocked_in_recv_wakes_when_another_process_sends("adaptive");
}

fn producer_blocked_on_a_full_queue_wakes_when_the_consumer_drains(wait: &str, mode: Mode) {
    let q = TestQueue::create(
        &format!("wake-producer-{wait}-{mode}"),
        Options::new().mode(mode).capacity(1 << 14).max_message(512),
    );
    let raw = q.raw();
    let p = Payloads::new(SEED, 0, 512);
    let mut child = Child::spawn("blocked_producer", &q.name, &[("wait", wait.into())]);
    let said = child.expect("full");
    let (n, tid) = said.split_once(' ').unwrap();
    let (n, tid): (u32, i32) = (n.parse().unwrap(), tid.parse().unwrap());
    assert!(n > 0);
    child.wait_asleep_on_futex(tid, &raw, OFF_SPACE_WAITERS);

    let mut rx = Consumer::open_with(&q.name, Wait::Block).unwrap();
    let mut scratch = Vec::new();
    for seq in 0..=n {
        let m = rx.recv_timeout(OP_TIMEOUT).unwrap();
        p.check(0, seq, &m, &mut scratch).unwrap();
    }
    child.wait_ok();
    assert!(rx.try_recv().unwrap().is_none());

    let s = Queue::inspect(&q.name).unwrap();
    assert_eq!(s.sent.messages, u64::from(n) + 1);
    assert!(s.sent.full_events >= 1, "{:?}", s.sent);
    assert!(s.sent.wait_calls >= 1, "the producer slept on the futex: {:?}", s.sent);
    assert!(s.received.wake_calls >= 1, "the consumer found a sleeper and made a wake call: {:?}", s.received);
}

#[test]
fn a_producer_blocked_on_a_full_queue_with_wait_block_wakes_when_the_consumer_drains() {
    producer_blocked_on_a_full_queue_wakes_when_the_consumer_drains("block", Mode::Spsc);
}

#[test]
fn a_producer_blocked_on_a_full_queue_with_wait_adaptive_wakes_when_the_consumer_drains() {
    producer_blocked_on_a_full_queue_wakes_when_the_consumer_drains("adaptive", Mode::Spsc);
}

#[test]
fn a_producer_blocked_on_a_full_mpsc_queue_wakes_when_the_consumer_drains() {
    producer_blocked_on_a_full_queue_wakes_when_the_consumer_drains("block", Mode::Mpsc);
}

/// The waker makes a system call only if the waiter count is non-zero, and only a sleeper
/// raises it. The consumer here never sleeps (it polls with `try_recv`, which never waits),
/// so whatever the timing, a correct producer makes exactly zero wake calls: the assertion
/// is deterministic, not a hope about scheduling. (The producer itself may sleep when the
/// queue fills; then the consumer's wake calls are legitimate and not asserted.) The tests
/// above show that the same counter does count when someone sleeps.
fn a_busy_queue_makes_no_wake_calls_on_the_producer_side(mode: Mode) {
    const COUNT: u32 = 200_000;
    let q = TestQueue::create(&format!("busy-{mode}"), Options::new().mode(mode).capacity(1 << 20).max_message(1024));
    let mut consumer = Child::spawn("polling_consumer", &q.name, &[("count", COUNT.to_string())]);
    let mut producer = Child::spawn("streaming_producer", &q.name, &[("count", COUNT.to_string())]);
    producer.wait_ok();
    consumer.wait_ok();
    let s = Queue::inspect(&q.name).unwrap();
    assert_eq!((s.sent.messages, s.received.messages), (u64::from(COUNT), u64::from(COUNT)));
    assert_eq!(s.received.wait_calls, 0, "the consumer never waited: {:?}", s.received);
    assert_eq!(s.sent.wake_calls, 0, "nobody slept on the data side, yet the producer made wake calls: {:?}", s.sent);
}

#[test]
fn a_busy_spsc_queue_makes_no_wake_calls_on_the_producer_side() {
    a_busy_queue_makes_no_wake_calls_on_the_producer_side(Mode::Spsc);
}

#[test]
fn a_busy_mpsc_queue_makes_no_wake_calls_on_the_producer_side() {
    a_busy_queue_makes_no_wake_calls_on_the_producer_side(Mode::Mpsc);
}

/// A producer killed while asleep on a full queue leaves its count in the space-waiter
/// word. A successor must not inherit it: otherwise every later release by the consumer
/// makes a `FUTEX_WAKE` for a sleeper that no longer exists, and the queue is never again
/// free of system calls.
fn a_producer_killed_asleep_leaves_no_wake_calls_behind(mode: Mode) {
    let q = TestQueue::create(
        &format!("dead-sleeper-{mode}"),
        Options::new().mode(mode).capacity(1 << 14).max_message(512),
    );
    let raw = q.raw();
    let mut child = Child::spawn("blocked_producer", &q.name, &[("wait", "block".into())]);
    let said = child.expect("full");
    let tid: i32 = said.split_once(' ').unwrap().1.parse().unwrap();
    child.wait_asleep_on_futex(tid, &raw, OFF_SPACE_WAITERS);
    child.kill9();

    let mut rx = Consumer::open_with(&q.name, Wait::Block).unwrap();
    while rx.try_recv().unwrap().is_some() {}
    // A new producer takes over; nobody sleeps from now on.
    let mut tx = Producer::open_with(&q.name, Wait::Block).unwrap();
    let before = Queue::inspect(&q.name).unwrap().received.wake_calls;
    for i in 0..100u32 {
        tx.try_send(&i.to_le_bytes()).unwrap();
        assert_eq!(&*rx.try_recv().unwrap().unwrap(), &i.to_le_bytes());
    }
    let after = Queue::inspect(&q.name).unwrap().received.wake_calls;
    assert_eq!(
        after - before,
        0,
        "the consumer made {} wake calls for a sleeper killed long ago (space waiters = {})",
        after - before,
        raw.read_u32(OFF_SPACE_WAITERS)
    );
}

#[test]
fn an_spsc_producer_killed_asleep_leaves_no_wake_calls_behind() {
    a_producer_killed_asleep_leaves_no_wake_calls_behind(Mode::Spsc);
}

#[test]
fn an_mpsc_producer_killed_asleep_leaves_no_wake_calls_behind() {
    a_producer_killed_asleep_leaves_no_wake_calls_behind(Mode::Mpsc);
}

/// On an MPSC queue the dead sleeper's slot need not be reused: any producer that registers
/// clears the bits of dead producer slots (holding each slot's lock while it does).
#[test]
fn a_new_mpsc_producer_in_another_slot_clears_the_bit_of_a_producer_killed_asleep() {
    let q = TestQueue::create(
        "dead-sleeper-other-slot",
        Options::new().mode(Mode::Mpsc).capacity(1 << 14).max_message(512),
    );
    let raw = q.raw();
    // Slot 1 is ours, so the child sleeps in slot 2.
    let first = Producer::open_with(&q.name, Wait::Block).unwrap();
    let mut child = Child::spawn("blocked_producer", &q.name, &[("wait", "block".into())]);
    let said = child.expect("full");
    let tid: i32 = said.split_once(' ').unwrap().1.parse().unwrap();
    child.wait_asleep_on_futex(tid, &raw, OFF_SPACE_WAITERS);
    child.kill9();
    assert_eq!(raw.read_u32(OFF_SPACE_WAITERS), 1 << 2, "the dead sleeper's bit is still set");

    // The new producer takes slot 1 (freed by `first`), not the dead one's slot 2.
    drop(first);
    let mut tx = Producer::open_with(&q.name, Wait::Block).unwrap();
    assert_eq!(raw.read_u32(OFF_SPACE_WAITERS), 0, "registration cleared the dead sleeper's bit");
    let mut rx = Consumer::open_with(&q.name, Wait::Block).unwrap();
    while rx.try_recv().unwrap().is_some() {}
    let before = Queue::inspect(&q.name).unwrap().received.wake_calls;
    for i in 0..100u32 {
        tx.try_send(&i.to_le_bytes()).unwrap();
        assert_eq!(&*rx.try_recv().unwrap().unwrap(), &i.to_le_bytes());
    }
    let after = Queue::inspect(&q.name).unwrap().received.wake_calls;
    assert_eq!(after - before, 0, "wake calls for a sleeper killed long ago");
    let snap = Queue::inspect(&q.name).unwrap();
    assert!(snap.participants.iter().any(|p| p.slot == 1 && p.alive), "the new producer holds slot 1");
}

/// A reader woken but not yet run (here: stopped with `SIGSTOP` while asleep in `recv`, in
/// its own process) costs the producer one wake call, however many messages it sends before
/// the reader runs: its waiter bit stays up until then, but the epoch it registered on is
/// gone, so later sends neither bump the epoch nor call `FUTEX_WAKE`. (Before: one call
/// every 13 messages, as the epoch came round to the sleeper's `asleep` set again: 77 for
/// these 1000; on a busy machine with blocking readers that was most of the producer's time.)
fn a_reader_woken_but_not_run_costs_one_wake_call(sub: Option<&str>) {
    let tag = sub.unwrap_or("default");
    let q = TestQueue::create(&format!("woken-not-run-{tag}"), Options::new().capacity(1 << 17).max_message(1024));
    let mut args = vec![("count", "1000".to_string())];
    if let Some(s) = sub {
        Subscription::create(&q.name, s, SubscriptionOptions::new()).expect("create the subscription");
        args.push(("sub", s.to_string()));
    }
    let mut child = Child::spawn("counting_consumer", &q.name, &args);
    let tid: i32 = child.expect("ready").parse().unwrap();
    match sub {
        None => child.wait_asleep_on_futex(tid, &q.raw(), OFF_DATA_WAITERS),
        Some(_) => child.wait_in_shared_futex(tid),
    }
    child.signal(Signal::STOP);
    child.wait_stopped();
    let p = Payloads::new(SEED, 0, 64);
    let mut tx = Producer::open_with(&q.name, Wait::Block).unwrap();
    let mut buf = Vec::new();
    for seq in 0..1000 {
        p.fill(0, seq, &mut buf);
        tx.send_timeout(&buf, OP_TIMEOUT).expect("send");
    }
    let calls = Queue::inspect(&q.name).unwrap().sent.wake_calls;
    println!("{tag}: {calls} wake calls for 1000 messages to a reader that could not run");
    child.signal(Signal::CONT);
    child.wait_ok();
    assert_eq!(calls, 1, "one wake call for the one sleep");
}

#[test]
fn a_default_consumer_woken_but_not_yet_run_costs_the_producer_one_wake_call() {
    a_reader_woken_but_not_run_costs_one_wake_call(None);
}

#[test]
fn a_subscription_member_woken_but_not_yet_run_costs_the_producer_one_wake_call() {
    a_reader_woken_but_not_run_costs_one_wake_call(Some("billing"));
}

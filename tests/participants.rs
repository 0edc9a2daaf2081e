//! Participant slots across processes: a live holder (running or stopped) keeps its slot
//! (`Busy` for a rival), a holder killed with -9 frees it, dropping a handle gives it back,
//! and `Queue::inspect` tells the living from the dead.

mod common;

use common::{Child, OP_TIMEOUT, TestQueue};
use rustix::process::Signal;
use shmq::{Consumer, Error, Mode, Options, Participant, Producer, Queue, Role, Wait};

#[test]
fn child_role() {
    common::run_child(|role, queue| match role {
        "hold_consumer" => {
            let _rx = Consumer::open(queue).expect("open consumer");
            common::say("ready");
            while common::hear().is_some() {}
        }
        "hold_producer" => {
            let mut tx = Producer::open(queue).expect("open producer");
            for i in 0..10u32 {
                tx.send(&i.to_le_bytes()).expect("send");
            }
            common::say("ready");
            while common::hear().is_some() {}
        }
        "open_then_drop" => {
            let rx = Consumer::open(queue).expect("open consumer");
            let tx = Producer::open(queue).expect("open producer");
            drop((rx, tx));
            common::say("dropped");
            while common::hear().is_some() {}
        }
        "stream_producer" => {
            let count: u32 = common::arg("count");
            let mut tx = Producer::open_with(queue, Wait::Block).expect("open producer");
            for seq in 0..count {
                let len = 4 + (seq as usize * 37) % 300;
                let mut m = seq.to_le_bytes().repeat(len / 4 + 1);
                m.truncate(len);
                tx.send_timeout(&m, OP_TIMEOUT).expect("send");
            }
        }
        "stream_consumer" => {
            // Takes messages in order until killed; says when it is well into the stream.
            let mut rx = Consumer::open_with(queue, Wait::Block).expect("open consumer");
            for seq in 0u32.. {
                let m = rx.recv_timeout(OP_TIMEOUT).expect("recv");
                assert_eq!(m[..4], seq.to_le_bytes());
                if seq == 5000 {
                    common::say("midway");
                }
            }
        }
        other => panic!("unknown role {other}"),
    });
}

fn participant(name: &str, pid: u32) -> Option<Participant> {
    Queue::inspect(name).unwrap().participants.into_iter().find(|p| p.pid == pid)
}

fn spsc(test: &str) -> TestQueue {
    TestQueue::create(test, Options::new().mode(Mode::Spsc).capacity(1 << 16).max_message(1024))
}

fn open_consumer(name: &str) -> shmq::Result<Consumer> {
    Consumer::open(name)
}

fn open_producer(name: &str) -> shmq::Result<Producer> {
    Producer::open(name)
}

/// The holder (a child in `role`) owns the slot until killed with -9; then the slot is
/// free and a new participant gets it.
fn killed_holder_frees_its_slot<T: std::fmt::Debug>(q: &TestQueue, role: &str, open: fn(&str) -> shmq::Result<T>) {
    let mut child = Child::spawn(role, &q.name, &[]);
    child.expect("ready");
    assert!(matches!(open(&q.name), Err(Error::Busy(_))), "the slot is held by a live process");
    let p = participant(&q.name, child.pid()).expect("the holder is in the table");
    assert!(p.alive, "{p:?}");

    child.kill9();
    // Killed, not deregistered: the table still names it, the kernel says it is dead.
    let p = participant(&q.name, child.pid()).expect("the dead holder is still in the table");
    assert!(!p.alive, "a killed participant shows as dead: {p:?}");

    let handle = open(&q.name).expect("the slot of a killed holder is free");
    let me = participant(&q.name, std::process::id()).expect("the new holder is in the table");
    assert!(me.alive);
    assert_eq!(me.slot, p.slot, "the new holder took over the dead one's slot");
    assert!(participant(&q.name, child.pid()).is_none(), "the dead holder is gone from the table");
    drop(handle);
}

/// The holder keeps the slot while stopped by SIGSTOP (alive: the kernel keeps its locks).
fn stopped_holder_keeps_its_slot<T: std::fmt::Debug>(q: &TestQueue, role: &str, open: fn(&str) -> shmq::Result<T>) {
    let mut child = Child::spawn(role, &q.name, &[]);
    child.expect("ready");
    child.signal(Signal::STOP);
    child.wait_stopped();
    assert!(matches!(open(&q.name), Err(Error::Busy(_))), "a stopped holder still holds the slot");
    let p = participant(&q.name, child.pid()).expect("the holder is in the table");
    assert!(p.alive, "a stopped participant is alive: {p:?}");
    child.signal(Signal::CONT);
    child.kill9();
    open(&q.name).expect("the slot of a killed holder is free");
}

#[test]
fn a_consumer_killed_with_sigkill_frees_its_slot() {
    let q = TestQueue::create("kill-consumer", Options::new());
    killed_holder_frees_its_slot(&q, "hold_consumer", open_consumer);
}

#[test]
fn a_stopped_consumer_keeps_its_slot_until_killed() {
    let q = TestQueue::create("stop-consumer", Options::new());
    stopped_holder_keeps_its_slot(&q, "hold_consumer", open_consumer);
}

#[test]
fn a_second_spsc_producer_is_busy_until_the_first_is_killed() {
    let q = spsc("kill-spsc-producer");
    killed_holder_frees_its_slot(&q, "hold_producer", open_producer);
    // The ten messages of the killed producer are still there, and counted.
    let s = Queue::inspect(&q.name).unwrap();
    assert_eq!((s.sent.messages, s.messages), (10, 10));
    let mut rx = Consumer::open(&q.name).unwrap();
    for i in 0..10u32 {
        assert_eq!(&*rx.try_recv().unwrap().unwrap(), &i.to_le_bytes());
    }
}

#[test]
fn a_stopped_spsc_producer_keeps_its_slot_until_killed() {
    let q = spsc("stop-spsc-producer");
    stopped_holder_keeps_its_slot(&q, "hold_producer", open_producer);
}

#[test]
fn mpsc_producers_of_several_processes_coexist() {
    let q = TestQueue::create("mpsc-coexist", Options::new());
    let mut children: Vec<Child> = (0..3).map(|_| Child::spawn("hold_producer", &q.name, &[])).collect();
    for c in &mut children {
        c.expect("ready");
    }
    let _mine = Producer::open(&q.name).expect("one more producer");
    let s = Queue::inspect(&q.name).unwrap();
    let producers: Vec<_> = s.participants.iter().filter(|p| p.role == Role::Producer && p.alive).collect();
    assert_eq!(producers.len(), 4, "{:?}", s.participants);
    assert_eq!(s.sent.messages, 30);
    children[1].kill9();
    let s = Queue::inspect(&q.name).unwrap();
    let dead: Vec<_> = s.participants.iter().filter(|p| !p.alive).map(|p| p.pid).collect();
    assert_eq!(dead, [children[1].pid()], "exactly the killed one shows as dead");
    for c in &mut children {
        c.hang_up();
    }
    children[0].wait_ok();
    children[2].wait_ok();
}

#[test]
fn dropping_handles_in_another_process_gives_their_slots_back() {
    let q = spsc("drop-deregisters");
    let mut child = Child::spawn("open_then_drop", &q.name, &[]);
    child.expect("dropped");
    // The child still runs, but holds nothing.
    assert!(participant(&q.name, child.pid()).is_none(), "{:?}", Queue::inspect(&q.name).unwrap().participants);
    let rx = Consumer::open(&q.name).expect("the consumer slot was given back");
    let tx = Producer::open(&q.name).expect("the SPSC producer slot was given back");
    child.hang_up();
    child.wait_ok();
    drop((rx, tx));
    assert!(Queue::inspect(&q.name).unwrap().participants.is_empty());
}

#[test]
fn dropping_a_handle_in_this_process_gives_its_slot_back() {
    let q = spsc("drop-here");
    for _ in 0..3 {
        let rx = Consumer::open(&q.name).unwrap();
        let tx = Producer::open(&q.name).unwrap();
        assert!(matches!(Consumer::open(&q.name), Err(Error::Busy(_))));
        assert!(matches!(Producer::open(&q.name), Err(Error::Busy(_))));
        assert_eq!(Queue::inspect(&q.name).unwrap().participants.len(), 2);
        drop((rx, tx));
        assert!(Queue::inspect(&q.name).unwrap().participants.is_empty());
    }
}

/// A consumer killed with -9 in the middle of a stream (mid-receive, mid-release, asleep):
/// its successor resumes where it stopped, and the rest of the stream arrives without a
/// gap. (The message the dead one was holding may come again: delivery is at least once
/// across a consumer crash.)
fn a_consumer_killed_mid_stream_is_replaced_and_the_stream_resumes(mode: Mode) {
    const COUNT: u32 = 100_000;
    let q = TestQueue::create(
        &format!("kill-consumer-midstream-{mode}"),
        Options::new().mode(mode).capacity(1 << 14).max_message(1024),
    );
    let mut first = Child::spawn("stream_consumer", &q.name, &[]);
    let mut producer = Child::spawn("stream_producer", &q.name, &[("count", COUNT.to_string())]);
    first.expect("midway");
    // Somewhere further on, by the count of messages it took (a pause of a fixed time could
    // outlast the whole stream in a release build), well before the end; the exact point
    // is the scheduler's choice.
    let target = 10_000 + u64::from(first.pid() % 40) * 1000;
    let deadline = std::time::Instant::now() + OP_TIMEOUT;
    loop {
        let taken = participant(&q.name, first.pid()).map_or(0, |p| p.counters.messages);
        if taken >= target {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the first consumer stalled at {taken} messages");
        std::thread::yield_now();
    }
    first.kill9();
    // How many messages the dead consumer released: its slot's counter, still in the table
    // until a successor takes the slot over. Each message is counted on release, then `head`
    // is published (per message: it received one at a time), so the published position is
    // after message `released - 1` or, if it died between the two, after `released - 2`.
    let dead = Queue::inspect(&q.name).unwrap().participants.into_iter().find(|p| p.slot == 0).expect("slot 0");
    assert!(!dead.alive);
    let released = u32::try_from(dead.counters.messages).unwrap();
    assert!(released > 5000, "the first consumer was past message 5000: {released}");
    let mut rx = Consumer::open_with(&q.name, Wait::Block).expect("the killed consumer's slot is free");
    let m = rx.recv_timeout(OP_TIMEOUT).expect("the stream goes on");
    let resumed = u32::from_le_bytes(m[..4].try_into().unwrap());
    drop(m);
    // No gap (nothing released by the dead one is skipped unseen) and at most the one
    // message it released without publishing comes again.
    assert!(
        resumed == released || resumed + 1 == released,
        "resumed at {resumed}; the dead consumer had released {released}"
    );
    for seq in resumed + 1..COUNT {
        let m = rx.recv_timeout(OP_TIMEOUT).unwrap_or_else(|e| panic!("message {seq} (resumed at {resumed}): {e}"));
        assert_eq!(m[..4], seq.to_le_bytes(), "resumed at {resumed}");
    }
    producer.wait_ok();
    assert!(rx.try_recv().unwrap().is_none());
}

#[test]
fn an_spsc_consumer_killed_mid_stream_is_replaced_and_the_stream_resumes() {
    a_consumer_killed_mid_stream_is_replaced_and_the_stream_resumes(Mode::Spsc);
}

#[test]
fn an_mpsc_consumer_killed_mid_stream_is_replaced_and_the_stream_resumes() {
    a_consumer_killed_mid_stream_is_replaced_and_the_stream_resumes(Mode::Mpsc);
}

//! Queues that must never wedge, never hold space for nothing, and never hand a consumer a
//! stale record, each with the consumer in another process:
//!
//! * a message of `max_message = capacity / 2` after one that leaves it no room before the
//!   end of the region (the producer pads; the consumer, asleep in `recv`, must pass the
//!   padding and hand the space back), SPSC and MPSC, and streams of random sizes up to
//!   `capacity / 2`, `/ 4` and `/ 8`;
//! * a refused send's padding holds no space once the consumer has passed it;
//! * a consumer killed with -9 at random moments while it receives is replaced, lap after
//!   lap: its successor delivers no stale record, no gap and no reordering, and repeats
//!   only messages its predecessor had taken but not yet handed back.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use common::{Child, OFF_DATA_WAITERS, OP_TIMEOUT, Payloads, Rng, TestQueue, mix};
use rustix::process::Signal;
use shmq::{Consumer, Error, Mode, Options, Producer, Queue, Wait};

const SEED: u64 = 0x5eed_0007;

#[test]
fn child_role() {
    common::run_child(|role, queue| match role {
        "scripted_consumer" => scripted_consumer(queue),
        "stream_consumer" => {
            let count: u32 = common::arg("count");
            let p = Payloads::new(SEED, 0, common::arg("max"));
            let mut rx = Consumer::open_with(queue, Wait::Block).expect("open consumer");
            let mut scratch = Vec::new();
            for seq in 0..count {
                let m = rx.recv_timeout(OP_TIMEOUT).unwrap_or_else(|e| panic!("message {seq}: {e}"));
                p.check(0, seq, &m, &mut scratch).unwrap();
            }
            assert!(rx.try_recv().expect("try_recv").is_none(), "a message beyond the last one sent");
        }
        "stream_producer" => {
            let count: u32 = common::arg("count");
            let p = Payloads::new(SEED, 8, common::arg("max"));
            let mut tx = Producer::open_with(queue, Wait::Block).expect("open producer");
            let mut buf = Vec::new();
            for seq in 0..count {
                p.fill(0, seq, &mut buf);
                tx.send_timeout(&buf, OP_TIMEOUT).expect("send");
            }
        }
        "reporting_consumer" => reporting_consumer(queue),
        other => panic!("unknown role {other}"),
    });
}

/// Message `seq` of `len` bytes (any length): the tag `seq` (LE) then bytes that depend on
/// `seq` and position, truncated to `len`.
fn body(seq: u32, len: usize) -> Vec<u8> {
    let mut v = u64::from(seq).to_le_bytes().to_vec();
    let mut x = mix(u64::from(seq) ^ SEED);
    while v.len() < len {
        x = mix(x.wrapping_add(0x9e37_79b9_7f4a_7c15));
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// A consumer driven line by line from stdin:
/// * `recv SEQ`: says `waiting TID`, then receives with `recv()` (no timeout: the parent's
///   watchdog bounds it), checks the message is `body(SEQ, len)`, releases it and says
///   `got SEQ LEN`;
/// * `try SEQ`: `try_recv()`; says `none`, or does as `recv`.
fn scripted_consumer(queue: &str) {
    let mut rx = Consumer::open_with(queue, Wait::Block).expect("open consumer");
    common::say("ready");
    while let Some(line) = common::hear() {
        let (cmd, seq) = line.split_once(' ').expect("a command and a sequence number");
        let seq: u32 = seq.parse().expect("a sequence number");
        let m = match cmd {
            "recv" => {
                common::say(&format!("waiting {}", common::tid()));
                Some(rx.recv().expect("recv"))
            }
            "try" => rx.try_recv().expect("try_recv"),
            other => panic!("unknown command {other}"),
        };
        match m {
            Some(m) => {
                let len = m.len();
                assert!(*m == body(seq, len)[..], "message {seq}: wrong bytes ({len} bytes)");
                // Released (and the position published) before the parent hears of it.
                drop(m);
                common::say(&format!("got {seq} {len}"));
            }
            None => common::say("none"),
        }
    }
}

fn queue(test: &str, mode: Mode, capacity: u64, max: u32) -> TestQueue {
    TestQueue::create(&format!("{test}-{mode}"), Options::new().mode(mode).capacity(capacity).max_message(max))
}

/// Has the scripted consumer receive message `seq` and waits until it is asleep in `recv`.
fn recv_asleep(child: &mut Child, q: &TestQueue, seq: u32) {
    child.tell(&format!("recv {seq}"));
    let tid: i32 = child.expect("waiting").parse().expect("a thread id");
    child.wait_asleep_on_futex(tid, &q.raw(), OFF_DATA_WAITERS);
}

// ---------------------------------------------------------------------------------------
// Defect 1: the wedge near max_message = capacity / 2.

/// Capacity 1024, `max_message` 512, the consumer (another process) asleep in `recv()` with
/// `Wait::Block`: 504 bytes, then 512, which no longer fit before the end of the region:
/// the producer pads to the end and finds the ring full until the consumer has passed the
/// padding and handed the space back. It used to time out; it must go through, again and
/// again, whatever the record before it left.
fn a_max_size_message_after_one_that_leaves_it_no_room_is_delivered(mode: Mode) {
    let q = queue("wedge", mode, 1024, 512);
    let mut child = Child::spawn("scripted_consumer", &q.name, &[]);
    child.expect("ready");
    let mut tx = Producer::open_with(&q.name, Wait::Block).unwrap();
    let sizes = [504, 512, 512, 504, 8, 512, 0, 512, 496, 512, 511, 512];
    for (seq, &len) in sizes.iter().enumerate() {
        let seq = seq as u32;
        recv_asleep(&mut child, &q, seq);
        match tx.send_timeout(&body(seq, len), Duration::from_secs(2)) {
            Ok(_) => {}
            Err(e) => panic!("message {seq} of {len} bytes (sizes {sizes:?}): {e}: the queue is wedged"),
        }
        assert_eq!(child.expect("got"), format!("{seq} {len}"));
    }
    child.hang_up();
    child.wait_ok();
    let s = Queue::inspect(&q.name).unwrap();
    assert_eq!((s.messages, s.used_bytes), (0, 0), "{s:?}");
}

#[test]
fn spsc_a_max_size_message_after_one_that_leaves_it_no_room_is_delivered() {
    a_max_size_message_after_one_that_leaves_it_no_room_is_delivered(Mode::Spsc);
}

#[test]
fn mpsc_a_max_size_message_after_one_that_leaves_it_no_room_is_delivered() {
    a_max_size_message_after_one_that_leaves_it_no_room_is_delivered(Mode::Mpsc);
}

/// Every accepted configuration streams forever: thousands of messages of random sizes up
/// to `max_message` (half the capacity, the largest allowed, and smaller caps), through a
/// 1 KiB ring to a consumer in another process, all in order and byte for byte.
fn random_sizes_up_to_max_message_stream_through_a_small_ring(mode: Mode) {
    const COUNT: u32 = 4000;
    for max in [512u32, 256, 128] {
        let q = queue(&format!("stream-{max}"), mode, 1024, max);
        let mut child =
            Child::spawn("stream_consumer", &q.name, &[("count", COUNT.to_string()), ("max", max.to_string())]);
        let p = Payloads::new(SEED, 0, max as usize);
        let mut tx = Producer::open_with(&q.name, Wait::Block).unwrap();
        let mut buf = Vec::new();
        for seq in 0..COUNT {
            p.fill(0, seq, &mut buf);
            if let Err(e) = tx.send_timeout(&buf, OP_TIMEOUT) {
                panic!("max_message {max}: message {seq} of {} bytes: {e}", buf.len());
            }
        }
        child.wait_ok();
        let s = Queue::inspect(&q.name).unwrap();
        assert_eq!((s.received.messages, s.used_bytes), (u64::from(COUNT), 0), "max_message {max}: {s:?}");
    }
}

#[test]
fn spsc_random_sizes_up_to_max_message_stream_through_a_small_ring() {
    random_sizes_up_to_max_message_stream_through_a_small_ring(Mode::Spsc);
}

#[test]
fn mpsc_random_sizes_up_to_max_message_stream_through_a_small_ring() {
    random_sizes_up_to_max_message_stream_through_a_small_ring(Mode::Mpsc);
}

// ---------------------------------------------------------------------------------------
// A refused send uses up space.

/// A 4 KiB queue (`max_message` 2 KiB) holding one 16-byte message at offset 2048: a 2 KiB
/// send does not fit before the end, pads to it, and fails with `Full`. Returns the
/// producer and the consumer process, the 16-byte message (seq 1) still queued.
fn refused_send(mode: Mode) -> (TestQueue, Producer, Child) {
    let q = queue("refused", mode, 4096, 2048);
    let mut child = Child::spawn("scripted_consumer", &q.name, &[]);
    child.expect("ready");
    let mut tx = Producer::open_with(&q.name, Wait::Block).unwrap();
    // A 2032-byte message takes 2048 bytes: the next record starts at offset 2048.
    tx.send(&body(0, 2032)).unwrap();
    child.tell("recv 0");
    child.expect("waiting");
    assert_eq!(child.expect("got"), "0 2032");
    tx.send(&body(1, 16)).unwrap();
    assert!(matches!(tx.try_send(&body(9, 2048)), Err(Error::Full)), "a 2 KiB send must not fit now");
    let s = Queue::inspect(&q.name).unwrap();
    assert_eq!(s.messages, 1, "{s:?}");
    (q, tx, child)
}

/// SPSC: once the consumer has taken the 16-byte message and looked again (`try_recv`),
/// the padding of the refused send is passed and its space handed back: 0 bytes used.
#[test]
fn spsc_a_refused_send_holds_no_space_once_the_consumer_passed_its_padding() {
    let (q, mut tx, mut child) = refused_send(Mode::Spsc);
    child.tell("recv 1");
    child.expect("waiting");
    assert_eq!(child.expect("got"), "1 16");
    child.tell("try 2");
    assert_eq!(child.expect("none"), "");
    let s = Queue::inspect(&q.name).unwrap();
    assert_eq!((s.messages, s.used_bytes), (0, 0), "the refused send's padding still holds space: {s:?}");
    // And the whole ring is there for the 2 KiB message now.
    tx.try_send(&body(2, 2048)).expect("a 2 KiB send into an empty 4 KiB queue");
    child.tell("recv 2");
    child.expect("waiting");
    assert_eq!(child.expect("got"), "2 2048");
    child.hang_up();
    child.wait_ok();
    let s = Queue::inspect(&q.name).unwrap();
    assert_eq!((s.messages, s.used_bytes), (0, 0), "{s:?}");
}

/// MPSC: after the refused 2 KiB send and a drain (the 16-byte message taken, `try_recv`
/// again), no space is used; a 2-byte send is accepted, and once that is drained too,
/// nothing is queued and no space is used.
#[test]
fn mpsc_a_refused_send_holds_no_space_once_the_consumer_drained() {
    let (q, mut tx, mut child) = refused_send(Mode::Mpsc);
    child.tell("recv 1");
    child.expect("waiting");
    assert_eq!(child.expect("got"), "1 16");
    child.tell("try 2");
    assert_eq!(child.expect("none"), "");
    let s = Queue::inspect(&q.name).unwrap();
    assert_eq!((s.messages, s.used_bytes), (0, 0), "the refused send's padding still holds space: {s:?}");
    tx.try_send(&body(2, 2)).expect("a 2-byte send into a drained queue");
    child.tell("recv 2");
    child.expect("waiting");
    assert_eq!(child.expect("got"), "2 2");
    child.tell("try 3");
    assert_eq!(child.expect("none"), "");
    let s = Queue::inspect(&q.name).unwrap();
    assert_eq!((s.messages, s.used_bytes), (0, 0), "space held after draining: {s:?}");
    tx.try_send(&body(3, 2048)).expect("a 2 KiB send into an empty 4 KiB queue");
    child.tell("recv 3");
    child.expect("waiting");
    assert_eq!(child.expect("got"), "3 2048");
    child.hang_up();
    child.wait_ok();
    let s = Queue::inspect(&q.name).unwrap();
    assert_eq!((s.messages, s.used_bytes), (0, 0), "{s:?}");
}

// ---------------------------------------------------------------------------------------
// Defect 4: a consumer killed mid-stream, lap after lap.

/// Receives in batches of up to `batch` (so up to `batch` messages are taken and not yet
/// handed back at any moment), checks every byte against the message its tag names and
/// that tags follow each other, and says `got SEQ` for each *before* releasing it: every
/// message whose release a successor can see was reported. Says `done` after `count - 1`.
fn reporting_consumer(queue: &str) {
    let count: u32 = common::arg("count");
    let batch: usize = common::arg("batch");
    let p = Payloads::new(SEED, 8, common::arg("max"));
    let mut rx = Consumer::open_with(queue, Wait::Block).expect("open consumer");
    let mut scratch = Vec::new();
    let mut next: Option<u32> = None;
    while next != Some(count) {
        rx.recv_batch_timeout(batch, OP_TIMEOUT, |m| {
            assert!(m.len() >= 8, "a message of {} bytes; all have at least 8", m.len());
            let (stream, seq) = Payloads::tag(m);
            assert_eq!(stream, 0, "a message of unknown stream {stream} (seq {seq})");
            if let Some(n) = next {
                assert_eq!(seq, n, "message {seq} after {}", n - 1);
            }
            p.check(0, seq, m, &mut scratch).unwrap_or_else(|e| panic!("stale or torn record: {e}"));
            common::say(&format!("got {seq}"));
            next = Some(seq + 1);
        })
        .expect("recv_batch");
    }
    common::say("done");
}

fn parse_got(line: &str) -> u32 {
    line.strip_prefix("got ").and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("unexpected line {line:?}"))
}

/// Checks what one consumer delivered against what its predecessors did: a run of
/// consecutive sequence numbers that starts at most `dup` before where the predecessor
/// stopped (those it had taken but not handed back), and never after it (a gap).
fn check_run(run: &[u32], last: Option<u32>, dup: u32, who: &str) {
    let Some(&first) = run.first() else { return };
    for w in run.windows(2) {
        assert_eq!(w[1], w[0] + 1, "{who}: message {} after {}", w[1], w[0]);
    }
    match last {
        None => assert_eq!(first, 0, "{who}: the stream starts at message {first}"),
        Some(l) => {
            assert!(first <= l + 1, "{who}: resumed at {first} after {l}: messages lost");
            assert!(
                first + dup > l,
                "{who}: resumed at {first} after {l}: more repeated than the {dup} its predecessor could \
                 have taken without handing back (stale records)"
            );
        }
    }
}

/// A 4 KiB ring, a producer process streaming 50,000 messages of 8..=300 bytes (about 2,000
/// laps), consumer processes killed with -9 at random moments while they receive, each
/// replaced: over all laps every message arrives, in order, byte for byte; the only
/// repeats are the successor's first messages, which its predecessor had taken (at most
/// one batch) but not handed back.
fn a_consumer_killed_while_receiving_is_replaced_without_stale_records(mode: Mode) {
    const COUNT: u32 = 50_000;
    const MAX: u32 = 300;
    const KILLS: usize = 25;
    let q = queue("kill-consumer", mode, 4096, 1024);
    let mut rng = Rng(SEED ^ mode as u64);
    let mut producer =
        Child::spawn("stream_producer", &q.name, &[("count", COUNT.to_string()), ("max", MAX.to_string())]);
    let mut last: Option<u32> = None;
    let mut dup = 0u32;
    let mut kills = 0;
    let mut repeats = 0u64;
    for n in 1.. {
        let batch = 1 + rng.below(16) as u32;
        let args = [("count", COUNT.to_string()), ("batch", batch.to_string()), ("max", MAX.to_string())];
        let mut c = Child::spawn("reporting_consumer", &q.name, &args);
        let who = format!("consumer {n} (batch {batch})");
        let mut run = Vec::new();
        let mut done = false;
        if kills < KILLS {
            // Let it get somewhere, then kill it at a moment the scheduler picks.
            let want = 1 + rng.below(400) as usize;
            while run.len() < want && !done {
                match c.try_line(OP_TIMEOUT) {
                    Some(line) if line == "done" => done = true,
                    Some(line) => run.push(parse_got(&line)),
                    None => panic!("{who} said nothing for {OP_TIMEOUT:?}"),
                }
            }
            std::thread::sleep(Duration::from_micros(rng.below(3000)));
            c.signal(Signal::KILL); // a zombie until reaped: the pid cannot be reused
            let (status, _) = c.wait_exit();
            match status.signal() {
                Some(libc::SIGKILL) => kills += 1,
                _ => assert_eq!(status.code(), Some(0), "{who} failed before it was killed: {status:?}"),
            }
        } else {
            c.wait_ok();
        }
        for line in c.remaining_lines() {
            match line.as_str() {
                "done" => done = true,
                _ => run.push(parse_got(&line)),
            }
        }
        check_run(&run, last, dup, &who);
        if let (Some(&f), Some(l)) = (run.first(), last) {
            repeats += u64::from((l + 1).saturating_sub(f));
        }
        if let Some(&l) = run.last() {
            last = Some(last.map_or(l, |p| p.max(l)));
            // What this one took and had not handed back when it died, at most a batch.
            dup = batch;
        }
        if done {
            assert_eq!(last, Some(COUNT - 1), "{who} said done");
            break;
        }
    }
    assert_eq!(kills, KILLS, "the stream ended after {kills} kills; make it longer");
    let s = Queue::inspect(&q.name).unwrap();
    println!(
        "{mode}: {COUNT} messages, {} laps of the ring, {kills} consumers killed, {repeats} messages delivered twice",
        s.tail / 4096
    );
    producer.wait_ok();
    let s = Queue::inspect(&q.name).unwrap();
    assert_eq!(s.used_bytes, 0, "{s:?}");
}

#[test]
fn spsc_a_consumer_killed_while_receiving_is_replaced_without_stale_records() {
    a_consumer_killed_while_receiving_is_replaced_without_stale_records(Mode::Spsc);
}

#[test]
fn mpsc_a_consumer_killed_while_receiving_is_replaced_without_stale_records() {
    a_consumer_killed_while_receiving_is_replaced_without_stale_records(Mode::Mpsc);
}

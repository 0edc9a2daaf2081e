//! SPSC across processes: a million messages of random sizes, in order and byte for byte;
//! a producer killed mid-stream is replaced and the stream goes on in order; a reader that
//! waits by spinning gets every reply, whether it comes within its spin or after it.

mod common;

use common::{Child, OP_TIMEOUT, Payloads, TestQueue};
use shmq::{Consumer, Mode, Options, Producer, Queue, Wait};

const SEED: u64 = 0x5eed_0001;
const MAX: usize = 4096;

#[test]
fn child_role() {
    common::run_child(|role, queue| match role {
        "producer" => produce(queue, common::arg("stream"), common::arg("count"), common::arg("wait_block")),
        "consumer" => consume(queue, common::arg("count")),
        "endless_producer" => {
            // Sends until killed.
            let p = Payloads::new(SEED, 0, MAX);
            let mut tx = Producer::open(queue).expect("open producer");
            let mut buf = Vec::new();
            common::say("ready");
            for seq in 0.. {
                p.fill(0, seq, &mut buf);
                tx.send_timeout(&buf, OP_TIMEOUT).expect("send");
            }
        }
        "fixed_producer" => {
            // `count` messages of 1000 bytes, numbered in their first 4, blocking when full.
            let count: u32 = common::arg("count");
            let mut tx = Producer::open_with(queue, Wait::Block).expect("open producer");
            for seq in 0..count {
                let mut msg = vec![seq as u8; 1000];
                msg[..4].copy_from_slice(&seq.to_le_bytes());
                tx.send_timeout(&msg, OP_TIMEOUT).expect("send");
            }
        }
        "echo" => echo(queue, &common::arg::<String>("reply")),
        other => panic!("unknown role {other}"),
    });
}

/// Sends back every message of `queue` on `reply`, receiving with `recv` and with
/// `peek` + `advance` in turn (both wait without a deadline, so a message may be taken by
/// the short spin in line or by the general wait), until the queue is removed: then says
/// `closed`.
fn echo(queue: &str, reply: &str) {
    let mut rx = Consumer::open_with(queue, Wait::Adaptive).expect("open consumer");
    let mut tx = Producer::open_with(reply, Wait::Adaptive).expect("open producer");
    common::say("ready");
    let mut buf = Vec::new();
    for n in 0u64.. {
        let got = if n % 2 == 0 {
            rx.recv().map(|m| buf = m.to_vec())
        } else {
            rx.peek(None).map(|m| buf = m.to_vec()).and_then(|()| rx.advance().map(|taken| assert!(taken)))
        };
        match got {
            Ok(()) => {
                tx.send_timeout(&buf, OP_TIMEOUT).expect("send the reply");
            }
            Err(shmq::Error::Closed) => break,
            Err(e) => panic!("receive: {e}"),
        }
    }
    common::say("closed");
}

/// Sends messages `0..count` of `stream`: most with `send_timeout`, every seventh through a
/// zero-copy grant (reserved larger than needed and truncated), every eleventh in a batch.
fn produce(queue: &str, stream: u32, count: u32, block: bool) {
    let p = Payloads::new(SEED, 0, MAX);
    let wait = if block { Wait::Block } else { Wait::Adaptive };
    let mut tx = Producer::open_with(queue, wait).expect("open producer");
    let mut buf = Vec::new();
    let mut seq = 0;
    while seq < count {
        p.fill(stream, seq, &mut buf);
        if seq % 7 == 0 {
            let mut g = tx.reserve_timeout(MAX, OP_TIMEOUT).expect("reserve");
            g[..buf.len()].copy_from_slice(&buf);
            g.truncate(buf.len());
            g.commit().unwrap();
            seq += 1;
        } else if seq % 11 == 0 && seq + 3 <= count {
            let batch: Vec<Vec<u8>> = (seq..seq + 3)
                .map(|s| {
                    let mut b = Vec::new();
                    p.fill(stream, s, &mut b);
                    b
                })
                .collect();
            tx.send_batch(&batch).expect("send_batch");
            seq += 3;
        } else {
            tx.send_timeout(&buf, OP_TIMEOUT).expect("send");
            seq += 1;
        }
    }
}

/// Receives `count` messages of stream 0 and checks each.
fn consume(queue: &str, count: u32) {
    let p = Payloads::new(SEED, 0, MAX);
    let mut rx = Consumer::open(queue).expect("open consumer");
    let mut scratch = Vec::new();
    let mut seq = 0;
    while seq < count {
        if seq % 2 == 0 {
            let msg = rx.recv_timeout(OP_TIMEOUT).expect("recv");
            p.check(0, seq, &msg, &mut scratch).unwrap();
            seq += 1;
        } else {
            let mut bad = None;
            let max = (count - seq).min(64) as usize;
            let n = rx
                .recv_batch_timeout(max, OP_TIMEOUT, |m| {
                    if bad.is_none() {
                        bad = p.check(0, seq, m, &mut scratch).err();
                    }
                    seq += 1;
                })
                .expect("recv_batch");
            assert!(n > 0);
            if let Some(e) = bad {
                panic!("{e}");
            }
        }
    }
    assert!(rx.try_recv().expect("try_recv").is_none(), "a message beyond the last one sent");
}

#[test]
fn a_million_messages_of_random_sizes_arrive_in_order_byte_for_byte() {
    const COUNT: u32 = 1_000_000;
    let q =
        TestQueue::create("spsc-million", Options::new().mode(Mode::Spsc).capacity(1 << 18).max_message(MAX as u32));
    let mut consumer = Child::spawn("consumer", &q.name, &[("count", COUNT.to_string())]);
    let mut producer = Child::spawn(
        "producer",
        &q.name,
        &[("stream", "0".into()), ("count", COUNT.to_string()), ("wait_block", "false".into())],
    );
    producer.wait_ok();
    consumer.wait_ok();
    let s = Queue::inspect(&q.name).unwrap();
    assert_eq!((s.sent.messages, s.received.messages, s.messages), (u64::from(COUNT), u64::from(COUNT), 0));
    assert_eq!(s.sent.bytes, s.received.bytes);
    assert!(s.participants.is_empty(), "both children deregistered: {:?}", s.participants);
}

/// The consumer here is this process: it takes part of the first producer's stream, kills
/// that producer with -9 (wherever it is: mid-record, between commit and publishing its
/// position, asleep on a full queue), then a new producer process attaches and sends its
/// own stream. Everything the first one committed arrives once, in order, then the second
/// one's messages, in order.
#[test]
fn a_producer_killed_mid_stream_is_replaced_and_messages_continue_in_order() {
    let q = TestQueue::create(
        "spsc-kill-producer",
        Options::new().mode(Mode::Spsc).capacity(1 << 16).max_message(MAX as u32),
    );
    let p = Payloads::new(SEED, 0, MAX);
    let mut rx = Consumer::open_with(&q.name, Wait::Block).unwrap();
    let mut first = Child::spawn("endless_producer", &q.name, &[]);
    first.expect("ready");
    let mut scratch = Vec::new();
    let mut next = 0u32;
    while next < 3000 {
        let m = rx.recv_timeout(OP_TIMEOUT).unwrap();
        p.check(0, next, &m, &mut scratch).unwrap();
        next += 1;
    }
    first.kill9();
    // The slot is free, the ring holds whatever the first producer had committed.
    while let Some(m) = rx.try_recv().unwrap() {
        p.check(0, next, &m, &mut scratch).unwrap();
        next += 1;
    }
    const SECOND: u32 = 20_000;
    let mut second = Child::spawn(
        "producer",
        &q.name,
        &[("stream", "1".into()), ("count", SECOND.to_string()), ("wait_block", "true".into())],
    );
    for seq in 0..SECOND {
        let m = rx.recv_timeout(OP_TIMEOUT).unwrap();
        if seq == 0 && m.len() >= 8 && Payloads::tag(&m).0 == 0 {
            panic!("message {} of the killed producer arrived after its successor started", Payloads::tag(&m).1);
        }
        p.check(1, seq, &m, &mut scratch).unwrap();
    }
    second.wait_ok();
    assert!(rx.try_recv().unwrap().is_none());
    let s = Queue::inspect(&q.name).unwrap();
    // The killed producer may have died between committing a message and counting it.
    let total = u64::from(next + SECOND);
    assert!(
        (total - 1..=total).contains(&s.sent.messages),
        "counters of the killed producer survive it: {} of {total}",
        s.sent.messages
    );
}

/// A consumer's batch hands back what it has read as it goes (every quarter of the ring), not
/// only when the batch ends: a producer in another process, blocked on the full ring, sends
/// into the space a slow batch has read while the batch goes on, so one `recv_batch` call
/// takes more messages than the ring holds. (When the batch published only at its end, the
/// producer waited for it: at most a ring's worth, 64 here, per call.)
#[test]
fn a_long_recv_batch_hands_space_back_to_producers_as_it_goes() {
    let q =
        TestQueue::create("spsc-batch-release", Options::new().mode(Mode::Spsc).capacity(1 << 16).max_message(1024));
    let fits = (1u64 << 16) / 1016; // 16-byte header + 1000 bytes
    let mut producer = Child::spawn("fixed_producer", &q.name, &[("count", "200".into())]);
    // The ring full, the producer blocked on it.
    let deadline = std::time::Instant::now() + OP_TIMEOUT;
    while Queue::inspect(&q.name).unwrap().messages < fits {
        assert!(std::time::Instant::now() < deadline, "the producer never filled the ring");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let mut rx = Consumer::open_with(&q.name, Wait::Block).unwrap();
    let mut next = 0u32;
    let n = rx
        .recv_batch_timeout(200, OP_TIMEOUT, |m| {
            assert_eq!(m[..4], next.to_le_bytes(), "in order");
            next += 1;
            // A slow handler: the producer has time to use what the batch hands back.
            std::thread::sleep(std::time::Duration::from_millis(2));
        })
        .unwrap();
    println!("one recv_batch took {n} messages; the ring holds {fits}");
    assert!(n as u64 > fits, "one call took {n} messages, no more than the ring holds ({fits})");
    while next < 200 {
        let m = rx.recv_timeout(OP_TIMEOUT).unwrap();
        assert_eq!(m[..4], next.to_le_bytes(), "in order");
        next += 1;
    }
    producer.wait_ok();
}

/// A request/response exchange with a process that receives by spinning first
/// (`Wait::Adaptive`): the requests come at once (the reply's turn-around, within the
/// receiver's short spin in line), after a few microseconds, or after a millisecond (when it
/// has gone on to its general wait or to sleep). Every reply comes back in order, byte for
/// byte, and the removal of the queue ends the receiver's wait with `Closed`.
#[test]
fn a_spinning_receiver_takes_each_message_whether_it_comes_within_its_spin_or_after() {
    const ROUNDS: u32 = 2000;
    let options = Options::new().mode(Mode::Spsc).capacity(1 << 16).max_message(1024);
    let requests = TestQueue::create("spsc-spin-requests", options.clone());
    let replies = TestQueue::create("spsc-spin-replies", options);
    let mut echo = Child::spawn("echo", &requests.name, &[("reply", replies.name.clone())]);
    echo.expect("ready");
    let p = Payloads::new(SEED, 1, 1024);
    let mut tx = Producer::open(&requests.name).unwrap();
    let mut rx = Consumer::open(&replies.name).unwrap();
    let mut buf = Vec::new();
    for seq in 0..ROUNDS {
        match seq % 4 {
            0 | 1 => {}
            2 => {
                let t = std::time::Instant::now();
                while t.elapsed() < std::time::Duration::from_micros(20) {
                    std::hint::spin_loop();
                }
            }
            _ => std::thread::sleep(std::time::Duration::from_millis(1)),
        }
        p.fill(0, seq, &mut buf);
        tx.send_timeout(&buf, OP_TIMEOUT).unwrap();
        let got = rx.recv_timeout(OP_TIMEOUT).unwrap();
        assert!(*got == buf[..], "reply {seq}: {} bytes, sent {}", got.len(), buf.len());
    }
    drop((tx, rx));
    Queue::remove(&requests.name).unwrap();
    echo.expect("closed");
    echo.wait_ok();
}

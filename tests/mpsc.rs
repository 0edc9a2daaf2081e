//! MPSC across processes: four producer processes, every message delivered once, each
//! producer's messages in its sending order.

mod common;

use common::{Child, OP_TIMEOUT, Payloads, TestQueue};
use shmq::{Consumer, Options, Producer, Queue};

const SEED: u64 = 0x5eed_0002;
const MAX: usize = 1024;
const PRODUCERS: u32 = 4;
const PER_PRODUCER: u32 = 250_000;

#[test]
fn child_role() {
    common::run_child(|role, queue| match role {
        "producer" => {
            let stream: u32 = common::arg("stream");
            let p = Payloads::new(SEED, 8, MAX);
            let mut tx = Producer::open(queue).expect("open producer");
            let mut buf = Vec::new();
            let mut seq = 0;
            while seq < PER_PRODUCER {
                if seq % 13 == 0 && seq + 4 <= PER_PRODUCER {
                    // A batch: one claim for several records.
                    let batch: Vec<Vec<u8>> = (seq..seq + 4)
                        .map(|s| {
                            let mut b = Vec::new();
                            p.fill(stream, s, &mut b);
                            b
                        })
                        .collect();
                    tx.send_batch(&batch).expect("send_batch");
                    seq += 4;
                } else if seq % 5 == 0 {
                    p.fill(stream, seq, &mut buf);
                    let mut g = tx.reserve_timeout(buf.len() + 16, OP_TIMEOUT).expect("reserve");
                    g[..buf.len()].copy_from_slice(&buf);
                    g.truncate(buf.len());
                    g.commit().unwrap();
                    seq += 1;
                } else {
                    p.fill(stream, seq, &mut buf);
                    tx.send_timeout(&buf, OP_TIMEOUT).expect("send");
                    seq += 1;
                }
            }
        }
        other => panic!("unknown role {other}"),
    });
}

#[test]
fn four_producer_processes_deliver_every_message_in_per_producer_order() {
    let q = TestQueue::create("mpsc-four", Options::new().capacity(1 << 18).max_message(MAX as u32 + 16));
    let p = Payloads::new(SEED, 8, MAX);
    let mut rx = Consumer::open(&q.name).unwrap();
    let mut producers: Vec<Child> =
        (0..PRODUCERS).map(|i| Child::spawn("producer", &q.name, &[("stream", i.to_string())])).collect();
    let mut next = vec![0u32; PRODUCERS as usize];
    let mut scratch = Vec::new();
    let total = PRODUCERS * PER_PRODUCER;
    let mut received = 0;
    while received < total {
        let mut bad = None;
        let n = rx
            .recv_batch_timeout(256, OP_TIMEOUT, |m| {
                if bad.is_some() {
                    return;
                }
                if m.len() < 8 {
                    bad = Some(format!("a message of {} bytes, all are at least 8", m.len()));
                    return;
                }
                let (stream, seq) = Payloads::tag(m);
                let Some(expected) = next.get_mut(stream as usize) else {
                    bad = Some(format!("a message of unknown producer {stream}"));
                    return;
                };
                if seq != *expected {
                    bad = Some(format!("producer {stream}: message {seq} arrived, expected {expected}"));
                    return;
                }
                bad = p.check(stream, seq, m, &mut scratch).err();
                *expected += 1;
            })
            .unwrap();
        if let Some(e) = bad {
            panic!("{e}");
        }
        received += n as u32;
    }
    for c in &mut producers {
        c.wait_ok();
    }
    assert_eq!(next, vec![PER_PRODUCER; PRODUCERS as usize]);
    assert!(rx.try_recv().unwrap().is_none(), "a message beyond the last one sent");
    let s = Queue::inspect(&q.name).unwrap();
    assert_eq!((s.sent.messages, s.received.messages), (u64::from(total), u64::from(total)));
}

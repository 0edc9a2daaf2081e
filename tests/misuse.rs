//! Misuse of the safe API must be refused, never turned into a lost or damaged message: a
//! send of any kind while a raw grant is outstanding, a raw grant committed on the wrong
//! producer. The consumer is another process that reports exactly what it received.

mod common;

use common::{Child, OP_TIMEOUT, TestQueue};
use shmq::{Consumer, Error, Mode, Options, Producer, Queue};

/// The last message of a stream: the consumer reports everything before it.
const END: &[u8] = b"end";

#[test]
fn child_role() {
    common::run_child(|role, queue| match role {
        "report_until_end" => {
            let mut rx = Consumer::open(queue).expect("open consumer");
            common::say("ready");
            loop {
                let msg = rx.recv_timeout(OP_TIMEOUT).expect("recv");
                if &*msg == END {
                    break;
                }
                common::say(&format!("got {}", hex(&msg)));
            }
            common::say("end");
        }
        other => panic!("unknown role {other}"),
    });
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// What the consumer child received before [`END`].
fn received(child: &mut Child) -> Vec<String> {
    let mut got = Vec::new();
    loop {
        let line = child.expect("");
        if line == "end" {
            child.wait_ok();
            return got;
        }
        got.push(line.strip_prefix("got ").unwrap_or_else(|| panic!("child said {line:?}")).to_owned());
    }
}

fn is_invalid<T: std::fmt::Debug>(what: &str, r: Result<T, Error>) {
    match r {
        Err(Error::InvalidArgument(_)) => {}
        other => panic!("{what} with a raw grant outstanding: {other:?}, expected InvalidArgument"),
    }
}

/// The sequence of the report: reserve, detach, try to send a batch, commit the grant.
fn a_send_during_a_raw_grant_is_refused_and_nothing_is_lost(mode: Mode) {
    let q = TestQueue::create(
        &format!("raw-then-batch-{mode}"),
        Options::new().mode(mode).capacity(4096).max_message(1024),
    );
    let mut child = Child::spawn("report_until_end", &q.name, &[]);
    child.expect("ready");
    let mut tx = Producer::open(&q.name).unwrap();

    let g = tx.reserve(16).unwrap().into_raw();
    is_invalid("try_send_batch", tx.try_send_batch(&[b"x"]));
    // Every other way to send, empty batches included.
    is_invalid("send_batch", tx.send_batch(&[b"y"]));
    is_invalid("empty try_send_batch", tx.try_send_batch::<&[u8]>(&[]));
    is_invalid("empty send_batch", tx.send_batch::<&[u8]>(&[]));
    is_invalid("send", tx.send(b"z"));
    is_invalid("try_send", tx.try_send(b"z"));
    is_invalid("send_timeout", tx.send_timeout(b"z", OP_TIMEOUT));
    is_invalid("reserve", tx.reserve(8).map(|_| ()));
    is_invalid("try_reserve", tx.try_reserve(8).map(|_| ()));
    is_invalid("reserve_timeout", tx.reserve_timeout(8, OP_TIMEOUT).map(|_| ()));

    let payload: Vec<u8> = (0..16u8).map(|i| 0xa0 + i).collect();
    assert_eq!(g.len(), 16);
    // SAFETY: the grant's 16 bytes are reserved for this producer until the commit below.
    unsafe { std::ptr::copy_nonoverlapping(payload.as_ptr(), g.as_mut_ptr(), 16) };
    tx.commit_raw(g, 16).expect("commit the raw grant");
    tx.send(b"after").expect("the producer works again after the commit");
    tx.send(END).unwrap();

    assert_eq!(received(&mut child), [hex(&payload), hex(b"after")], "{mode}: exactly what was accepted, in order");
    let s = Queue::inspect(&q.name).unwrap();
    assert_eq!(s.sent.messages, 3, "{mode}: the refused sends were not counted");
}

#[test]
fn an_spsc_send_while_a_raw_grant_is_outstanding_is_refused_and_no_message_is_lost() {
    a_send_during_a_raw_grant_is_refused_and_nothing_is_lost(Mode::Spsc);
}

#[test]
fn an_mpsc_send_while_a_raw_grant_is_outstanding_is_refused_and_no_message_is_lost() {
    a_send_during_a_raw_grant_is_refused_and_nothing_is_lost(Mode::Mpsc);
}

/// A raw grant committed on another producer (of the same MPSC queue) is refused; its own
/// producer, dropped with the grant still outstanding, gives the space back, so the
/// consumer is not stuck behind a claim nobody will commit.
#[test]
fn a_raw_grant_committed_on_another_producer_is_refused_and_dropping_its_own_aborts_it() {
    let q = TestQueue::create("raw-other-producer", Options::new().mode(Mode::Mpsc).capacity(4096).max_message(1024));
    let mut child = Child::spawn("report_until_end", &q.name, &[]);
    child.expect("ready");
    let mut a = Producer::open(&q.name).unwrap();
    let mut b = Producer::open(&q.name).unwrap();
    let ga = a.reserve(4).unwrap().into_raw();
    let gb = b.reserve(4).unwrap().into_raw();
    // SAFETY: each grant's 4 bytes are reserved for its producer until its commit.
    unsafe {
        std::ptr::copy_nonoverlapping(b"aaaa".as_ptr(), ga.as_mut_ptr(), 4);
        std::ptr::copy_nonoverlapping(b"bbbb".as_ptr(), gb.as_mut_ptr(), 4);
    }
    is_invalid("commit of b's grant on a", a.commit_raw(gb, 4));
    a.commit_raw(ga, 4).expect("a's own grant, still outstanding after the refusal");
    // b's grant went into the refused call: b still counts it as outstanding.
    is_invalid("send on b, whose grant is outstanding", b.send(b"x"));
    drop(b);
    a.send(END).unwrap();
    assert_eq!(received(&mut child), [hex(b"aaaa")], "b's grant was aborted, not delivered");
}

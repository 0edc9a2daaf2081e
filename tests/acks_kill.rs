//! Every step can be the last: the multi-step protocols of explicit acks, with a member
//! process killed (`SIGKILL`, through the library's failpoints) between two of their
//! steps, and what a surviving member (another process) must see.
//!
//! The kill points (see `src/failpoint.rs`):
//! * handing out a fresh message: the entry reserved and filled, the member's `entered`
//!   not raised (`ack-reserved`: the message was never handed out); `entered` raised, the
//!   entry not committed (`ack-entered`: it counts as handed out);
//! * moving a message to the dead-letter queue: the entry marked moving, nothing sent
//!   (`ack-moving`); sent, the entry not freed (`ack-moved`: the dead letter is there
//!   twice, with the same original id);
//! * handing a nacked message out again: the released entry taken (`RETAKING`), the
//!   message not read, the entry not committed (`ack-retaken`: it was not handed out
//!   again, so its count does not rise).
//! * nacking a message: the entry taken out of expiry's reach (`RETAKING`) and its reason
//!   written, the entry not released (`ack-handing-back`: the nack did not happen; the
//!   dead member's message comes back as any dead member's does).
//!
//! * claiming a span: a member stopped with its claim recorded while another member takes
//!   the span and acks it all, then killed (the lost race), before and across a restart.
//!
//! Nothing is lost at any of them, and nothing acked is delivered again.

#![cfg(feature = "failpoints")]

mod common;

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use common::{Child, LogDir, TestQueue};
use shmq::{
    Ack, Consumer, DeadLetter, Error, Mode, Options, Producer, Queue, Subscription, SubscriptionOptions, Wait, dlq_name,
};

const SUB: &str = "work";
const N: u32 = 10;

#[test]
fn child_role() {
    common::run_child(|role, queue| match role {
        "member" => member(queue),
        other => panic!("unknown role {other}"),
    });
}

fn seq(m: &[u8]) -> u32 {
    u32::from_le_bytes(m[..4].try_into().unwrap())
}

/// Receives messages: acks them, except seq `reject` which it rejects and seq `nack` which
/// it nacks at its first delivery. Reports `got SEQ DC`.
fn member(queue: &str) {
    let reject: u32 = common::arg("reject");
    let nack: u32 = common::arg("nack");
    let mut rx = Consumer::subscribe_with(queue, SUB, Wait::Block).expect("subscribe");
    loop {
        let (id, s, n) = match rx.recv_timeout(Duration::from_millis(1500)) {
            Ok(m) => {
                common::say(&format!("got {} {}", seq(&m), m.delivery_count()));
                (m.id(), seq(&m), m.delivery_count())
            }
            Err(Error::Timeout) => break,
            Err(e) => panic!("member: {e}"),
        };
        if s == reject {
            rx.reject(id, "bad amount").expect("reject");
        } else if s == nack && n == 1 {
            rx.nack(id, "try again").expect("nack");
        } else {
            rx.ack(id).expect("ack");
        }
    }
}

struct Setup {
    q: TestQueue,
    _dir: LogDir,
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = Queue::remove(&dlq_name(&self.q.name, SUB));
    }
}

fn setup(test: &str) -> Setup {
    let dir = LogDir::new(test);
    let q =
        TestQueue::create(test, Options::new().capacity(64 << 10).max_message(1024).mode(Mode::Mpsc).durable(&dir.0));
    let o = SubscriptionOptions::new().ack(Ack::Explicit).ack_wait(Duration::from_secs(30)).max_deliveries(5);
    Subscription::create(&q.name, SUB, o).expect("subscription");
    let mut tx = Producer::open(&q.name).unwrap();
    for s in 0..N {
        let mut b = [0u8; 32];
        b[..4].copy_from_slice(&s.to_le_bytes());
        tx.send(&b).unwrap();
    }
    Setup { q, _dir: dir }
}

/// A member that dies at `point` after `skip` earlier hits, rejecting seq `reject` and
/// nacking seq `nack`; returns what it reported.
fn dies_at(s: &Setup, point: &str, skip: u32, reject: u32, nack: u32) -> Vec<(u32, u32)> {
    let mut c = Child::spawn_env(
        "member",
        &s.q.name,
        &[("reject", reject.to_string()), ("nack", nack.to_string())],
        &[("SHMQ_FAILPOINT", point.to_owned()), ("SHMQ_FAILPOINT_SKIP", skip.to_string())],
    );
    let (status, _) = c.wait_exit();
    assert_eq!(status.signal(), Some(9), "the failpoint {point} did not kill the member: {status:?}");
    parse(c.remaining_lines())
}

fn parse(lines: Vec<String>) -> Vec<(u32, u32)> {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix("got "))
        .map(|l| {
            let (s, d) = l.split_once(' ').unwrap();
            (s.parse().unwrap(), d.parse().unwrap())
        })
        .collect()
}

/// The survivor (this process): receives and acks everything left.
fn survivor(s: &Setup) -> Vec<(u32, u32)> {
    let mut rx = Consumer::subscribe_with(&s.q.name, SUB, Wait::Block).expect("subscribe");
    let mut got = Vec::new();
    loop {
        let (id, g) = match rx.recv_timeout(Duration::from_millis(1500)) {
            Ok(m) => (m.id(), (seq(&m), m.delivery_count())),
            Err(Error::Timeout) => break,
            Err(e) => panic!("survivor: {e}"),
        };
        rx.ack(id).expect("ack");
        got.push(g);
    }
    got
}

fn dead_letters(s: &Setup) -> Vec<DeadLetter> {
    let mut rx = Consumer::open(&dlq_name(&s.q.name, SUB)).expect("the dead-letter queue");
    let mut out = Vec::new();
    while let Some(m) = rx.try_recv().unwrap() {
        out.push(DeadLetter::decode(&m).unwrap());
    }
    out
}

/// The member dies handing out its third message (two acked before): the survivor gets
/// seqs 2.. once each, the third with `third` as its delivery count; 0 and 1 never again.
fn handing_out_dies_at(point: &str, third: u32) {
    let s = setup(point);
    let dead = dies_at(&s, point, 2, u32::MAX, u32::MAX);
    assert_eq!(dead, vec![(0, 1), (1, 1)], "{point}: the member acked two, then died handing out the third");
    let alive = survivor(&s);
    let want: Vec<(u32, u32)> = std::iter::once((2, third)).chain((3..N).map(|q| (q, 1))).collect();
    let mut got = alive.clone();
    got.sort();
    assert_eq!(got, want, "{point}: the survivor's (seq, delivery count)");
    let info = Subscription::list(&s.q.name).unwrap().into_iter().find(|i| i.name == SUB).unwrap();
    assert_eq!((info.in_flight, info.acked), (0, u64::from(N)));
}

#[test]
fn a_member_killed_with_an_entry_filled_but_not_entered_never_handed_it_out() {
    handing_out_dies_at("ack-reserved", 1);
}

#[test]
fn a_member_killed_after_entering_a_message_had_handed_it_out_and_it_comes_back_counted() {
    handing_out_dies_at("ack-entered", 2);
}

/// The member rejects seq 0 and dies moving it: the survivor moves it (`moves` dead letters
/// with its id in the end), and gets everything else once.
fn moving_dies_at(point: &str, moves: usize) {
    let s = setup(point);
    let dead = dies_at(&s, point, 0, 0, u32::MAX);
    assert_eq!(dead, vec![(0, 1)]);
    let mut alive = survivor(&s);
    alive.sort();
    assert_eq!(alive, (1..N).map(|q| (q, 1)).collect::<Vec<_>>(), "{point}: seq 0 is not delivered again");
    let dl = dead_letters(&s);
    assert_eq!(dl.len(), moves, "{point}: {dl:?}");
    for d in &dl {
        assert_eq!((seq(&d.payload), d.deliveries, d.reason.as_str()), (0, 1, "bad amount"));
    }
    assert!(dl.windows(2).all(|w| w[0].id == w[1].id), "a duplicate has the same original id");
}

#[test]
fn a_member_killed_before_sending_a_dead_letter_has_it_moved_by_another() {
    moving_dies_at("ack-moving", 1);
}

#[test]
fn a_member_killed_after_sending_a_dead_letter_leaves_a_duplicate_with_the_same_id() {
    moving_dies_at("ack-moved", 2);
}

/// The member nacks seq 0 and dies taking it back to hand it out again (`RETAKING`): the
/// survivor gets it with count 2 (the dead member's one delivery, then its own: the retake
/// handed nothing out), and everything else once; nothing goes to the dead-letter queue.
#[test]
fn a_member_killed_retaking_a_nacked_message_leaves_it_to_another_counted_once_more() {
    nack_dies_at("ack-retaken", "the member got seq 0, nacked it, and died taking it back", 1);
}

/// The member nacks seq 0 and dies between taking the entry back and releasing it: the
/// survivor finds the dead member's entry and delivers seq 0 again (count 2), everything
/// else once; the nack never completed, and nothing goes to the dead-letter queue.
#[test]
fn a_member_killed_handing_a_nacked_message_back_leaves_it_to_another() {
    nack_dies_at("ack-handing-back", "the member got seq 0 and died nacking it", 0);
}

/// A member nacks seq 0 and dies at failpoint `point`: the survivor delivers seq 0 again
/// (count 2) and everything else once, nothing is dead-lettered, and the subscription counts
/// `nacked` nacks (1 if the nack was done before the death, 0 if not).
fn nack_dies_at(point: &str, what: &str, nacked: u64) {
    let s = setup(point);
    let dead = dies_at(&s, point, 0, u32::MAX, 0);
    assert_eq!(dead, vec![(0, 1)], "{what}");
    let mut alive = survivor(&s);
    alive.sort();
    let want: Vec<(u32, u32)> = std::iter::once((0, 2)).chain((1..N).map(|q| (q, 1))).collect();
    assert_eq!(alive, want, "the survivor's (seq, delivery count)");
    assert!(dead_letters(&s).is_empty());
    let info = Subscription::list(&s.q.name).unwrap().into_iter().find(|i| i.name == SUB).unwrap();
    assert_eq!((info.in_flight, info.acked, info.nacked), (0, u64::from(N), nacked));
}

/// A member that records its claim of the first span and stops (`SIGSTOP`) before its
/// compare-and-swap on the cursor.
fn stopped_with_a_claim_recorded(s: &Setup) -> Child {
    let loser = Child::spawn_env(
        "member",
        &s.q.name,
        &[("reject", u32::MAX.to_string()), ("nack", u32::MAX.to_string())],
        &[("SHMQ_FAILPOINT", "member-claim-recorded".to_owned()), ("SHMQ_FAILPOINT_ACTION", "stop".to_owned())],
    );
    loser.wait_stopped();
    loser
}

/// A member records its claim of the first span and stops before its compare-and-swap on
/// the cursor (`member-claim-recorded`, stopped); another member claims that span instead,
/// and acks every message; then the first is killed, its claim still recorded. Its claim
/// lost the race, so taking its slot over delivers nothing: no acked message comes back.
#[test]
fn a_member_killed_after_losing_the_race_for_its_claim_has_nothing_delivered_again() {
    let s = setup("ack-lost-claim");
    let mut loser = stopped_with_a_claim_recorded(&s);
    let mut first = survivor(&s);
    first.sort();
    assert_eq!(first, (0..N).map(|q| (q, 1)).collect::<Vec<_>>(), "the winner gets every message once");
    loser.kill9();
    let again = survivor(&s);
    assert!(again.is_empty(), "acked messages delivered again after the loser's death: {again:?}");
    let info = Subscription::list(&s.q.name).unwrap().into_iter().find(|i| i.name == SUB).unwrap();
    assert_eq!((info.in_flight, info.acked, info.redelivered), (0, u64::from(N), 0));
}

/// As above, but the queue's checkpoint is written while the loser is stopped with its lost
/// claim recorded, and the host restarts: the restored subscription does not count the lost
/// claim as messages to hand out again (only the message sent last comes).
#[test]
fn after_a_restart_a_claim_that_lost_the_race_is_not_delivered_again() {
    let s = setup("ack-lost-restart");
    let mut loser = stopped_with_a_claim_recorded(&s);
    assert_eq!(survivor(&s).len(), N as usize, "the winner gets every message");
    // One more message; the producer's close writes the checkpoint (the loser still stopped).
    {
        let mut tx = Producer::open(&s.q.name).unwrap();
        let mut b = [0u8; 32];
        b[..4].copy_from_slice(&N.to_le_bytes());
        tx.send(&b).unwrap();
    }
    loser.kill9();
    // The host restarts: the shared-memory objects go, the log directory stays.
    let _ = Queue::remove(&dlq_name(&s.q.name, SUB));
    Queue::remove(&s.q.name).unwrap();
    let opts = Options::new().capacity(64 << 10).max_message(1024).mode(Mode::Mpsc).durable(&s._dir.0);
    Queue::open_or_create(&s.q.name, opts).expect("restore");
    assert_eq!(survivor(&s), vec![(N, 1)], "only the message sent last, once");
}

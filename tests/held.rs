//! Held messages (`Consumer::recv_held_timeout`, `try_recv_held`, `release_held`): a
//! consumer that holds messages keeps them in the queue until it releases them, so a
//! consumer killed while holding them leaves them to the next one, in another process.

mod common;

use std::time::Duration;

use common::{Child, TestQueue};
use shmq::{Consumer, Error, Options, Producer, Subscription, SubscriptionOptions};

fn seq_of(m: &[u8]) -> u32 {
    u32::from_le_bytes(m[..4].try_into().expect("4 bytes"))
}

#[test]
fn child_role() {
    common::run_child(|role, queue| match role {
        // Holds every message there is, releases the first `release` of them, reports, and
        // waits to be killed.
        "hold_then_die" => {
            let release: usize = common::arg("RELEASE");
            let mut rx = Consumer::open(queue).expect("open the consumer");
            let mut got = Vec::new();
            while got.len() < 100 {
                rx.recv_held_timeout(64, Duration::from_secs(10), |id, m| got.push((id, seq_of(m))))
                    .expect("receive held");
            }
            assert_eq!(rx.held(), 100);
            let seqs: Vec<u32> = got.iter().map(|&(_, s)| s).collect();
            assert_eq!(seqs, (0..100).collect::<Vec<u32>>(), "held in send order");
            assert_eq!(rx.release_held(got[release - 1].0).expect("release"), release);
            assert_eq!(rx.held(), 100 - release);
            common::say("holding");
            std::thread::sleep(Duration::from_secs(60)); // killed before this ends
        }
        _ => panic!("unknown role {role}"),
    });
}

#[test]
fn a_consumer_killed_while_holding_messages_leaves_them_to_the_next_consumer() {
    let q = TestQueue::create("held_kill", Options::new().capacity(64 << 10).max_message(1024));
    let mut tx = Producer::open(&q.name).unwrap();
    for i in 0..100u32 {
        tx.send(&i.to_le_bytes()).unwrap();
    }
    let mut child = Child::spawn("hold_then_die", &q.name, &[("RELEASE", "40".into())]);
    child.expect("holding");
    child.kill9();
    let mut rx = Consumer::open(&q.name).expect("the dead consumer's slot is free");
    let mut seqs = Vec::new();
    while let Some(m) = rx.try_recv().unwrap() {
        seqs.push(seq_of(&m));
    }
    assert_eq!(seqs, (40..100).collect::<Vec<u32>>(), "the released 40 are gone, the held 60 come again");
}

#[test]
fn held_messages_keep_their_space_from_producers_until_released() {
    let q = TestQueue::create("held_space", Options::new().capacity(1 << 10).max_message(64));
    let mut tx = Producer::open(&q.name).unwrap();
    let mut rx = Consumer::open(&q.name).unwrap();
    let mut sent = 0u32;
    while tx.try_send(&[7u8; 48]).is_ok() {
        sent += 1;
    }
    let mut ids = Vec::new();
    assert_eq!(rx.try_recv_held(1000, |id, _| ids.push(id)).unwrap(), sent as usize);
    assert!(matches!(tx.try_send(&[7u8; 48]), Err(Error::Full)), "held space is not free");
    assert_eq!(rx.try_recv_held(10, |_, _| panic!("nothing more")).unwrap(), 0);
    assert!(matches!(rx.recv_held_timeout(10, Duration::from_millis(20), |_, _| {}), Err(Error::Timeout)));
    assert_eq!(rx.release_held(ids[1]).unwrap(), 2);
    assert!(tx.try_send(&[8u8; 48]).is_ok(), "released space is free again");
    assert_eq!(rx.release_held(*ids.last().unwrap()).unwrap(), ids.len() - 2);
    assert_eq!(rx.held(), 0);
    let m = rx.try_recv().unwrap().expect("the message sent after the release");
    assert_eq!(&*m, &[8u8; 48]);
}

#[test]
fn releasing_an_id_that_is_not_held_is_an_invalid_argument() {
    let q = TestQueue::create("held_bad_id", Options::new());
    let mut tx = Producer::open(&q.name).unwrap();
    let mut rx = Consumer::open(&q.name).unwrap();
    tx.send(b"a").unwrap();
    tx.send(b"b").unwrap();
    let mut ids = Vec::new();
    rx.try_recv_held(2, |id, _| ids.push(id)).unwrap();
    assert!(matches!(rx.release_held(ids[0] + 8), Err(Error::InvalidArgument(_))));
    assert!(matches!(rx.release_held(u64::MAX), Err(Error::InvalidArgument(_))));
    assert_eq!(rx.release_held(ids[0]).unwrap(), 1);
    assert!(matches!(rx.release_held(ids[0]), Err(Error::InvalidArgument(_))), "released already");
    assert_eq!(rx.held(), 1);
}

#[test]
fn members_of_a_subscription_cannot_hold_messages() {
    let q = TestQueue::create("held_member", Options::new());
    Subscription::create(&q.name, "work", SubscriptionOptions::new()).unwrap();
    let mut m = Consumer::subscribe(&q.name, "work").unwrap();
    assert!(matches!(m.try_recv_held(1, |_, _| {}), Err(Error::InvalidArgument(_))));
}

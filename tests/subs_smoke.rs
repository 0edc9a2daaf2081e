//! Subscriptions inside one process: fan-out, lag limits, members sharing (the
//! cross-process tests are in tests/subscriptions.rs).

use shmq::{Consumer, Error, Options, Producer, Queue, Subscription, SubscriptionOptions, Wait};
use std::time::Duration;

fn q(tag: &str) -> String {
    format!("smoke-{tag}-{}", std::process::id())
}

#[test]
fn fanout_in_one_process() {
    let name = q("fan");
    Queue::create(&name, Options::new().capacity(1 << 16).max_message(1024)).unwrap();
    Subscription::create(&name, "a", SubscriptionOptions::new()).unwrap();
    Subscription::create(&name, "b", SubscriptionOptions::new()).unwrap();
    let mut a = Consumer::subscribe_with(&name, "a", Wait::Block).unwrap();
    let mut b = Consumer::subscribe_with(&name, "b", Wait::Block).unwrap();
    let mut d = Consumer::open_with(&name, Wait::Block).unwrap();
    let mut tx = Producer::open(&name).unwrap();
    for round in 0..50u32 {
        for i in 0..100u32 {
            tx.send_timeout(&(round * 100 + i).to_le_bytes(), Duration::from_secs(5)).unwrap();
        }
        for c in [&mut a, &mut b, &mut d] {
            for i in 0..100u32 {
                let m = c.recv_timeout(Duration::from_secs(5)).unwrap();
                assert_eq!(&*m, &(round * 100 + i).to_le_bytes());
            }
        }
    }
    let subs = Subscription::list(&name).unwrap();
    assert_eq!(subs.len(), 3, "{subs:?}");
    drop((a, b, d, tx));
    Queue::remove(&name).unwrap();
}

#[test]
fn lapped_and_rejoin() {
    let name = q("lap");
    Queue::create(&name, Options::new().capacity(1 << 12).max_message(256)).unwrap();
    Subscription::create(&name, "slow", SubscriptionOptions::new().lag_limit(Some(1024))).unwrap();
    Subscription::remove(&name, "default").unwrap();
    let mut s = Consumer::subscribe_with(&name, "slow", Wait::Block).unwrap();
    let mut tx = Producer::open(&name).unwrap();
    for i in 0..1000u32 {
        tx.send_timeout(&i.to_le_bytes(), Duration::from_secs(5)).unwrap();
    }
    match s.recv_timeout(Duration::from_secs(1)) {
        Err(Error::Lapped { missed_bytes }) => assert!(missed_bytes > 0),
        Ok(m) => panic!("got {:?}", &*m),
        Err(e) => panic!("{e}"),
    }
    tx.send(b"after").unwrap();
    assert_eq!(&*s.recv_timeout(Duration::from_secs(5)).unwrap(), b"after");
    drop((s, tx));
    Queue::remove(&name).unwrap();
}

#[test]
fn members_share() {
    let name = q("share");
    Queue::create(&name, Options::new().capacity(1 << 16).max_message(1024)).unwrap();
    Subscription::create(&name, "w", SubscriptionOptions::new()).unwrap();
    Subscription::remove(&name, "default").unwrap();
    let mut a = Consumer::subscribe_with(&name, "w", Wait::Block).unwrap();
    let mut b = Consumer::subscribe_with(&name, "w", Wait::Block).unwrap();
    let mut tx = Producer::open(&name).unwrap();
    let mut seen = vec![0u32; 2000];
    for i in 0..2000u32 {
        tx.send_timeout(&i.to_le_bytes(), Duration::from_secs(5)).unwrap();
        if i % 7 == 0 {
            if let Some(m) = a.try_recv().unwrap() {
                seen[u32::from_le_bytes(m[..4].try_into().unwrap()) as usize] += 1;
            }
        }
        if i % 5 == 0 {
            if let Some(m) = b.try_recv().unwrap() {
                seen[u32::from_le_bytes(m[..4].try_into().unwrap()) as usize] += 1;
            }
        }
    }
    loop {
        let mut any = false;
        for c in [&mut a, &mut b] {
            while let Some(m) = c.try_recv().unwrap() {
                seen[u32::from_le_bytes(m[..4].try_into().unwrap()) as usize] += 1;
                any = true;
            }
        }
        if !any {
            break;
        }
    }
    assert!(
        seen.iter().all(|&n| n == 1),
        "{:?}",
        seen.iter().enumerate().filter(|(_, n)| **n != 1).take(10).collect::<Vec<_>>()
    );
    drop((a, b, tx));
    Queue::remove(&name).unwrap();
}

/// A member that left in the middle of a batch, then its subscription removed and another
/// made in the same entry: the old claim holds nobody back.
#[test]
fn a_claim_left_in_a_removed_subscription_holds_no_producer_back() {
    let name = q("stale");
    Queue::create(&name, Options::new().capacity(4096).max_message(256)).unwrap();
    Subscription::remove(&name, "default").unwrap();
    Subscription::create(&name, "w", SubscriptionOptions::new()).unwrap();
    let mut tx = Producer::open(&name).unwrap();
    {
        let mut m = Consumer::subscribe(&name, "w").unwrap();
        for i in 0..10u32 {
            tx.send(&i.to_le_bytes()).unwrap();
        }
        assert_eq!(&*m.recv_timeout(Duration::from_secs(5)).unwrap(), &0u32.to_le_bytes());
    } // dropped with 9 claimed messages unread
    Subscription::remove(&name, "w").unwrap();
    Subscription::create(&name, "v", SubscriptionOptions::new()).unwrap();
    let mut v = Consumer::subscribe(&name, "v").unwrap();
    for i in 0..2000u32 {
        tx.send_timeout(&i.to_le_bytes(), Duration::from_secs(5)).unwrap();
        assert_eq!(&*v.recv_timeout(Duration::from_secs(5)).unwrap(), &i.to_le_bytes());
    }
    let subs = Subscription::list(&name).unwrap();
    assert!(subs[0].members.iter().all(|m| m.alive), "{subs:?}");
    drop((v, tx));
    Queue::remove(&name).unwrap();
}

/// A member that leaves in the middle of a batch hands the rest to the next member, which
/// sees it as delivered once (nobody received it).
#[test]
fn a_member_leaving_mid_batch_hands_the_rest_on_as_first_deliveries() {
    let name = q("leave");
    Queue::create(&name, Options::new().capacity(1 << 14).max_message(256)).unwrap();
    Subscription::remove(&name, "default").unwrap();
    Subscription::create(&name, "w", SubscriptionOptions::new()).unwrap();
    let mut tx = Producer::open(&name).unwrap();
    for i in 0..10u32 {
        tx.send(&i.to_le_bytes()).unwrap();
    }
    {
        let mut a = Consumer::subscribe(&name, "w").unwrap();
        let m = a.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!((&*m, m.delivery_count()), (&0u32.to_le_bytes()[..], 1));
    }
    let mut b = Consumer::subscribe(&name, "w").unwrap();
    for i in 1..10u32 {
        let m = b.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!((&*m, m.delivery_count()), (&i.to_le_bytes()[..], 1));
    }
    assert!(b.try_recv().unwrap().is_none());
    assert_eq!(Subscription::list(&name).unwrap()[0].redelivered, 0);
    drop((b, tx));
    Queue::remove(&name).unwrap();
}

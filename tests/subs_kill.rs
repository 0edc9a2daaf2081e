//! Every step can be the last: each multi-step protocol of subscriptions, with a real
//! process killed (`SIGKILL`, through the library's failpoints) between two of its steps,
//! and what the survivors must see.
//!
//! The kill points (see `src/failpoint.rs`):
//! * a member's claim: recorded but the cursor not moved (`member-claim-recorded`; also
//!   stopped there while another member takes the span, then killed: the lost race); the
//!   cursor locked with the claim but the claim not marked held (`member-claimed`); marked
//!   held, the cursor still locked (`member-claim-held`); every message of the span
//!   received but the span not handed back (`member-span-read`); a dead member's span
//!   taken over but none of it delivered (`member-adopted`);
//! * creating a subscription: the entry marked being created (`sub-creating`); the entry
//!   active with its cursor joining (`sub-joining`);
//! * rejoining after being lapped: the cursor swapped to joining (`rejoin-joining`).
//!
//! Nothing is lost at any of them. A message is delivered twice only when a member died
//! holding it, and then the second delivery says so (`delivery_count() >= 2`).

#![cfg(feature = "failpoints")]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Child, TestQueue};
use shmq::{Consumer, Error, Mode, Options, Producer, Subscription, SubscriptionOptions, Wait};

const SUB: &str = "work";
/// How long a member waits for the next message before it decides the queue is drained.
const IDLE_MS: u64 = 1500;

#[test]
fn child_role() {
    common::run_child(|role, queue| match role {
        "member" => member(queue),
        "create" => {
            let limit: u64 = common::arg("limit");
            let o = SubscriptionOptions::new().lag_limit((limit > 0).then_some(limit));
            Subscription::create(queue, &common::arg::<String>("sub"), o).expect("create");
            common::say("created");
        }
        other => panic!("unknown role {other}"),
    });
}

/// Joins `SUB`, reports `got SEQ DELIVERIES` for every message (and `lapped MISSED`),
/// until nothing came for `IDLE_MS`.
fn member(queue: &str) {
    let mut rx = Consumer::subscribe_with(queue, SUB, Wait::Block).expect("subscribe");
    common::say("joined");
    let idle = Duration::from_millis(common::arg("idle"));
    loop {
        match rx.recv_timeout(idle) {
            Ok(m) => {
                let seq = u32::from_le_bytes(m[..4].try_into().unwrap());
                common::say(&format!("got {seq} {}", m.delivery_count()));
            }
            Err(Error::Lapped { missed_bytes }) => common::say(&format!("lapped {missed_bytes}")),
            Err(Error::Timeout) => break,
            Err(e) => panic!("member: {e}"),
        }
    }
    common::say("done");
}

fn queue(test: &str) -> TestQueue {
    let q = TestQueue::create(test, Options::new().mode(Mode::Mpsc).capacity(1 << 16).max_message(1024));
    // Producers here wait for the named subscription only.
    Subscription::remove(&q.name, Subscription::DEFAULT).unwrap();
    q
}

/// A member in this process that never receives. With it no member is alone in `SUB`, so
/// every claim is of at most 16 messages, which the kill points below count on (a member
/// alone in its subscription claims up to 256: `a_lone_member_killed_after_reading_its_span_*`).
fn idle_member(q: &TestQueue) -> Consumer {
    Consumer::subscribe_with(&q.name, SUB, Wait::Block).expect("join the idle member")
}

fn send(tx: &mut Producer, seqs: std::ops::Range<u32>) {
    for seq in seqs {
        let mut msg = seq.to_le_bytes().to_vec();
        msg.resize(24, seq as u8);
        tx.send_timeout(&msg, common::OP_TIMEOUT).unwrap();
    }
}

/// A member that dies at `point` (after `skip` earlier hits).
fn dying_member(q: &TestQueue, point: &str, skip: u32) -> Child {
    Child::spawn_env(
        "member",
        &q.name,
        &[("idle", IDLE_MS.to_string())],
        &[("SHMQ_FAILPOINT", point.to_owned()), ("SHMQ_FAILPOINT_SKIP", skip.to_string())],
    )
}

fn member_child(q: &TestQueue) -> Child {
    Child::spawn("member", &q.name, &[("idle", IDLE_MS.to_string())])
}

/// What a member reported: `(seq, delivery count)` per message received.
type Reports = Vec<(u32, u32)>;

/// Waits for a child killed by its failpoint; returns what it reported.
fn killed(mut c: Child) -> Reports {
    use std::os::unix::process::ExitStatusExt;
    let (status, _) = c.wait_exit();
    assert_eq!(status.signal(), Some(9), "the failpoint did not kill the child: {status:?}");
    parse(c.remaining_lines())
}

/// Waits for a child that finishes; returns what it reported.
fn finished(mut c: Child) -> Reports {
    c.wait_ok();
    parse(c.remaining_lines())
}

fn parse(lines: Vec<String>) -> Reports {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix("got "))
        .map(|l| {
            let (s, d) = l.split_once(' ').unwrap();
            (s.parse().unwrap(), d.parse().unwrap())
        })
        .collect()
}

/// Every seq in `0..n` was received; returns how often each was.
fn all_received(n: u32, reports: &[&[(u32, u32)]]) -> BTreeMap<u32, u32> {
    let mut seen = BTreeMap::new();
    for r in reports {
        for &(seq, _) in r.iter() {
            *seen.entry(seq).or_insert(0u32) += 1;
        }
    }
    let missing: Vec<u32> = (0..n).filter(|s| !seen.contains_key(s)).collect();
    assert!(missing.is_empty(), "lost: {missing:?}");
    seen
}

/// A member dies at `point` on its second claim (after a first span received and handed
/// back); a second member then takes over. Returns (the dead one's reports, the survivor's).
fn member_dies_at(point: &str) -> (Reports, Reports) {
    let q = queue(point);
    Subscription::create(&q.name, SUB, SubscriptionOptions::new()).unwrap();
    let _idle = idle_member(&q);
    let mut tx = Producer::open(&q.name).unwrap();
    send(&mut tx, 0..100);
    let dead = killed(dying_member(&q, point, 1));
    assert!(!dead.is_empty(), "{point}: the first span was received before the kill");
    let alive = finished(member_child(&q));
    let seen = all_received(100, &[&dead, &alive]);
    for (&seq, &n) in &seen {
        if n > 1 {
            let again = alive.iter().find(|(s, _)| *s == seq).expect("the survivor has the duplicate");
            assert!(
                again.1 >= 2,
                "{point}: seq {seq} delivered twice, the second time with delivery count {}",
                again.1
            );
        }
    }
    (dead, alive)
}

#[test]
fn a_member_killed_after_recording_a_claim_it_never_took_loses_nothing_and_repeats_nothing() {
    let (_, alive) = member_dies_at("member-claim-recorded");
    // The cursor still stood at the claim's start: never taken, so nothing is redelivered.
    assert!(alive.iter().all(|&(_, d)| d == 1), "{alive:?}");
}

/// A member dies at `point`, after its compare-and-swap took its second span and before it
/// returned any of it: another member gets the whole span again, marked, and no message is
/// received twice.
fn taken_span_comes_again_whole(point: &str) {
    let (dead, alive) = member_dies_at(point);
    let again: Vec<_> = alive.iter().filter(|&&(_, d)| d >= 2).collect();
    assert!(!again.is_empty(), "{point}: the dead member's span comes again, marked: {alive:?}");
    let seen = all_received(100, &[&dead, &alive]);
    assert!(seen.values().all(|&n| n == 1), "{point}: {seen:?}");
}

#[test]
fn a_member_killed_after_moving_the_cursor_has_its_span_delivered_to_another() {
    taken_span_comes_again_whole("member-claimed");
}

#[test]
fn a_member_killed_after_marking_its_claim_held_with_the_cursor_locked_has_its_span_delivered_to_another() {
    // The cursor stays locked with the claim until another member (or a producer) finishes
    // it. A helper killed between its own mark and unlock leaves the same state.
    taken_span_comes_again_whole("member-claim-held");
}

/// A member records its second claim and stops before its compare-and-swap on the cursor;
/// another member takes that span (and the rest) instead. While the first stays stopped,
/// producers go on round the ring (its lost claim holds nothing); then it is killed, its
/// lost claim still recorded, and the member that takes its slot over delivers nothing again.
#[test]
fn a_member_killed_after_losing_the_race_for_its_claim_has_nothing_delivered_twice() {
    let q = queue("lost-claim");
    Subscription::create(&q.name, SUB, SubscriptionOptions::new()).unwrap();
    let _idle = idle_member(&q);
    let mut tx = Producer::open(&q.name).unwrap();
    send(&mut tx, 0..100);
    let mut loser = Child::spawn_env(
        "member",
        &q.name,
        &[("idle", IDLE_MS.to_string())],
        &[
            ("SHMQ_FAILPOINT", "member-claim-recorded".to_owned()),
            ("SHMQ_FAILPOINT_SKIP", "1".to_owned()),
            ("SHMQ_FAILPOINT_ACTION", "stop".to_owned()),
        ],
    );
    loser.wait_stopped();
    let winner = finished(member_child(&q));
    // The stopped loser's claim holds nothing: producers go round the ring past it (3 laps
    // of the 64 KiB ring) while a member receives.
    let more = member_child(&q);
    send(&mut tx, 100..4000);
    let more = finished(more);
    loser.kill9();
    let first = parse(loser.remaining_lines());
    assert!(!first.is_empty(), "the loser received its first span before it stopped");
    let after = finished(member_child(&q));
    assert!(after.is_empty(), "the lost claim was delivered again: {after:?}");
    let seen = all_received(4000, &[&first, &winner, &more]);
    assert!(seen.values().all(|&n| n == 1), "{seen:?}");
    assert!(winner.iter().chain(&more).all(|&(_, d)| d == 1), "{winner:?}");
}

#[test]
fn a_member_killed_with_a_span_read_but_not_handed_back_has_it_delivered_again() {
    let (dead, alive) = member_dies_at("member-span-read");
    let seen = all_received(100, &[&dead, &alive]);
    let twice: Vec<u32> = seen.iter().filter(|&(_, &n)| n > 1).map(|(&s, _)| s).collect();
    assert!(!twice.is_empty() && twice.len() <= 16, "exactly its last span repeats: {twice:?}");
}

/// A member alone in its subscription claims up to 256 messages at once (fewer claims, each
/// three compare-and-swaps); killed after reading all of its first span and before handing
/// it back, it has lost nothing, and a member that joins after it gets what it had not
/// released again, marked, and the rest.
#[test]
fn a_lone_member_killed_after_reading_its_span_has_its_unreleased_part_delivered_again() {
    let q = queue("lone");
    Subscription::create(&q.name, SUB, SubscriptionOptions::new()).unwrap();
    let mut tx = Producer::open(&q.name).unwrap();
    send(&mut tx, 0..600);
    let dead = killed(dying_member(&q, "member-span-read", 0));
    assert_eq!(dead, (0..256).map(|s| (s, 1)).collect::<Reports>(), "one span of 256, all received");
    let alive = finished(member_child(&q));
    let seen = all_received(600, &[&dead, &alive]);
    let twice: Vec<u32> = seen.iter().filter(|&(_, &n)| n > 1).map(|(&s, _)| s).collect();
    assert!(!twice.is_empty() && twice.iter().all(|&s| s < 256), "only its span repeats: {twice:?}");
    for &(seq, d) in &alive {
        assert_eq!(d >= 2, twice.contains(&seq), "seq {seq}: delivery count {d}");
    }
    println!("{} of the dead member's 256 delivered again", twice.len());
}

#[test]
fn a_member_killed_while_delivering_an_adopted_span_passes_it_on_again() {
    let q = queue("adopted");
    Subscription::create(&q.name, SUB, SubscriptionOptions::new()).unwrap();
    let _idle = idle_member(&q);
    let mut tx = Producer::open(&q.name).unwrap();
    send(&mut tx, 0..100);
    let first = killed(dying_member(&q, "member-claimed", 1));
    let second = killed(dying_member(&q, "member-adopted", 0));
    assert!(second.is_empty(), "it died before delivering anything: {second:?}");
    let third = finished(member_child(&q));
    all_received(100, &[&first, &second, &third]);
    assert!(third.iter().any(|&(_, d)| d >= 3), "handed out a third time: {third:?}");
}

#[test]
fn a_creator_killed_while_creating_leaves_nothing_behind() {
    let q = queue("creating");
    let mut c = Child::spawn_env(
        "create",
        &q.name,
        &[("sub", "half".into()), ("limit", "0".into())],
        &[("SHMQ_FAILPOINT", "sub-creating".into())],
    );
    let (status, _) = c.wait_exit();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(9));
    assert!(Subscription::list(&q.name).unwrap().is_empty(), "a half-made subscription is not listed");
    // It holds no producer back, and the name can be created.
    let mut tx = Producer::open(&q.name).unwrap();
    send(&mut tx, 0..10_000);
    Subscription::create(&q.name, "half", SubscriptionOptions::new()).unwrap();
    assert_eq!(Subscription::list(&q.name).unwrap().len(), 1);
}

#[test]
fn a_creator_killed_before_finishing_the_join_is_finished_by_the_first_member() {
    let q = queue("joining");
    let mut c = Child::spawn_env(
        "create",
        &q.name,
        &[("sub", SUB.into()), ("limit", "0".into())],
        &[("SHMQ_FAILPOINT", "sub-joining".into())],
    );
    let (status, _) = c.wait_exit();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(9));
    let list = Subscription::list(&q.name).unwrap();
    assert_eq!(list.len(), 1, "active, its join unfinished: {list:?}");
    let mut m = member_child(&q);
    m.expect("joined");
    let mut tx = Producer::open(&q.name).unwrap();
    // More than the capacity: the member's join released the producers' hold.
    send(&mut tx, 0..5000);
    let got = finished(m);
    all_received(5000, &[&got]);
}

#[test]
fn a_member_killed_while_rejoining_after_being_lapped_leaves_the_join_to_the_next() {
    let q = queue("rejoin");
    Subscription::create(&q.name, SUB, SubscriptionOptions::new().lag_limit(Some(4096))).unwrap();
    // A member that joins, then sleeps while the producer laps it.
    let mut slow = dying_member(&q, "rejoin-joining", 0);
    slow.expect("joined");
    slow.signal(rustix::process::Signal::STOP);
    slow.wait_stopped();
    let mut tx = Producer::open(&q.name).unwrap();
    send(&mut tx, 0..5000);
    let info = &Subscription::list(&q.name).unwrap()[0];
    assert!(info.detached && info.lapped >= 1, "{info:?}");
    slow.signal(rustix::process::Signal::CONT);
    let lines = {
        let (status, _) = slow.wait_exit();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9), "died in the rejoin");
        slow.remaining_lines()
    };
    assert!(!lines.iter().any(|l| l.starts_with("lapped")), "it died before reporting: {lines:?}");
    // The next member finishes the join and receives what is sent from then on.
    let mut m = member_child(&q);
    m.expect("joined");
    std::thread::sleep(Duration::from_millis(100)); // let it finish the join
    send(&mut tx, 5000..5100);
    let got = finished(m);
    let fresh: Vec<u32> = got.iter().map(|&(s, _)| s).filter(|&s| s >= 5000).collect();
    assert_eq!(fresh, (5000..5100).collect::<Vec<_>>(), "{got:?}");
}

#[test]
fn a_creator_killed_before_finishing_the_join_has_it_finished_by_the_producers() {
    let q = queue("joining-alone");
    let mut c = Child::spawn_env(
        "create",
        &q.name,
        &[("sub", SUB.into()), ("limit", "0".into())],
        &[("SHMQ_FAILPOINT", "sub-joining".into())],
    );
    let (status, _) = c.wait_exit();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(9));
    // The first producer to compute its gate finishes the join: from then on the
    // subscription keeps what is sent, like any other.
    let mut tx = Producer::open(&q.name).unwrap();
    send(&mut tx, 0..100);
    let info = &Subscription::list(&q.name).unwrap()[0];
    assert!(!info.detached && info.lag_bytes > 0, "{info:?}");
    let mut m = member_child(&q);
    m.expect("joined");
    send(&mut tx, 100..5000); // more than the capacity: the member makes room
    let got = finished(m);
    all_received(5000, &[&got]);
}

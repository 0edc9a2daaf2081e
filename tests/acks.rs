//! Explicit acknowledgements on durable queues: acks, nacks, rejects, expiry, redelivery
//! after a member's death, dead letters, and what a restart keeps. Real processes (the test
//! binary in a role), real files on the real disk.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{Child, LogDir, TestQueue};
use rustix::process::Signal;
use shmq::{
    Ack, Consumer, DeadLetter, Error, Mode, Options, Producer, Queue, Subscription, SubscriptionOptions, Wait, dlq_name,
};

const SUB: &str = "work";

#[test]
fn child_role() {
    common::run_child(|role, queue| match role {
        "member" => member(queue),
        "holder" => holder(queue),
        "partial" => partial(queue),
        "worker" => worker(queue),
        "sender" => sender(queue),
        other => panic!("unknown role {other}"),
    });
}

/// A queue with a log, removed with its dead-letter queues when dropped.
struct Durable {
    q: TestQueue,
    dir: LogDir,
}

impl Durable {
    fn new(test: &str, capacity: u64) -> Durable {
        let dir = LogDir::new(test);
        let q = TestQueue::create(
            test,
            Options::new().capacity(capacity).max_message(4096).mode(Mode::Mpsc).durable(&dir.0),
        );
        Durable { q, dir }
    }

    fn name(&self) -> &str {
        &self.q.name
    }

    fn explicit(&self, sub: &str, wait: Duration, max_in_flight: u32, max_deliveries: u32) {
        let o = SubscriptionOptions::new()
            .ack(Ack::Explicit)
            .ack_wait(wait)
            .max_in_flight(max_in_flight)
            .max_deliveries(max_deliveries);
        Subscription::create(self.name(), sub, o).expect("create the subscription");
    }

    /// Every dead letter of `sub` now, read by a consumer of its queue.
    fn dead_letters(&self, sub: &str) -> Vec<DeadLetter> {
        let mut rx = Consumer::open(&dlq_name(self.name(), sub)).expect("open the dead-letter queue");
        let mut out = Vec::new();
        while let Some(m) = rx.try_recv().expect("receive a dead letter") {
            out.push(DeadLetter::decode(&m).expect("a dead letter"));
        }
        out
    }
}

impl Drop for Durable {
    fn drop(&mut self) {
        for s in [SUB, "a", "b", "c"] {
            let _ = Queue::remove(&dlq_name(&self.q.name, s));
        }
        let _ = &self.dir;
    }
}

fn seq(m: &[u8]) -> u32 {
    u32::from_le_bytes(m[..4].try_into().unwrap())
}

fn send_seqs(q: &str, range: std::ops::Range<u32>, size: usize) -> Vec<u64> {
    let mut tx = Producer::open(q).expect("producer");
    let mut ids = Vec::new();
    let mut buf = vec![0u8; size.max(4)];
    for s in range {
        buf[..4].copy_from_slice(&s.to_le_bytes());
        ids.push(tx.send(&buf).expect("send"));
    }
    ids
}

#[test]
fn an_acked_message_is_done_a_nacked_one_comes_back_and_a_rejected_one_is_a_dead_letter() {
    let d = Durable::new("acks-basic", 64 << 10);
    d.explicit(SUB, Duration::from_secs(30), 16, 5);
    let ids = send_seqs(d.name(), 0..3, 16);
    let mut rx = Consumer::subscribe_with(d.name(), SUB, Wait::Block).expect("subscribe");
    let t = Duration::from_secs(10);
    let (id0, n0) = {
        let m = rx.recv_timeout(t).expect("first");
        (m.id(), m.delivery_count())
    };
    assert_eq!((id0, n0), (ids[0], 1));
    rx.ack(id0).expect("ack");
    assert!(matches!(rx.ack(id0), Err(Error::InvalidArgument(_))), "acked once only");
    let id1 = rx.recv_timeout(t).expect("second").id();
    rx.nack(id1, "try later").expect("nack");
    // The nacked one comes back before anything else, counted.
    {
        let m = rx.recv_timeout(t).expect("again");
        assert_eq!((m.id(), m.delivery_count(), seq(&m)), (id1, 2, 1));
    }
    rx.reject(id1, "bad amount").expect("reject");
    let id2 = rx.recv_timeout(t).expect("third").id();
    assert_eq!(id2, ids[2]);
    assert_eq!(rx.in_flight(), 1);
    rx.ack(id2).expect("ack");
    assert!(matches!(rx.try_recv(), Ok(None)), "nothing left");
    let info = Subscription::list(d.name()).unwrap().into_iter().find(|s| s.name == SUB).unwrap();
    assert_eq!((info.in_flight, info.acked, info.nacked, info.dead_lettered), (0, 2, 1, 1));
    let dl = d.dead_letters(SUB);
    assert_eq!(dl.len(), 1);
    assert_eq!((dl[0].id, dl[0].deliveries, dl[0].reason.as_str(), seq(&dl[0].payload)), (id1, 2, "bad amount", 1));
    assert_eq!(dl[0].payload.len(), 16);
}

#[test]
fn explicit_acks_need_a_durable_queue_and_fixed_options() {
    let q = TestQueue::create("acks-volatile", Options::new());
    let o = SubscriptionOptions::new().ack(Ack::Explicit);
    assert!(matches!(Subscription::create(&q.name, SUB, o), Err(Error::InvalidArgument(_))));
    let d = Durable::new("acks-options", 64 << 10);
    d.explicit(SUB, Duration::from_secs(1), 4, 3);
    d.explicit(SUB, Duration::from_secs(1), 4, 3); // the same: nothing to do
    let other = SubscriptionOptions::new().ack(Ack::Explicit).ack_wait(Duration::from_secs(2));
    assert!(matches!(Subscription::create(d.name(), SUB, other), Err(Error::InvalidArgument(_))));
    let bad = SubscriptionOptions::new().ack(Ack::Explicit).max_in_flight(5000);
    assert!(matches!(Subscription::create(d.name(), "b", bad), Err(Error::InvalidArgument(_))));
    let mut rx = Consumer::subscribe(d.name(), SUB).expect("subscribe");
    assert!(matches!(rx.try_peek(), Err(Error::InvalidArgument(_))));
    assert!(matches!(rx.try_recv_batch(4, |_| {}), Err(Error::InvalidArgument(_))));
}

/// A member that receives every message, nacks the poisoned ones (`poison` = seq) and acks
/// the rest, reporting `got SEQ DELIVERIES` and `acked SEQ`, until nothing came for `idle`
/// ms. `hold` > 0: it acks nothing and waits for the parent's word instead, then acks
/// what it holds and reports each result.
fn member(queue: &str) {
    let mut rx = Consumer::subscribe_with(queue, SUB, Wait::Block).expect("subscribe");
    common::say("joined");
    let idle = Duration::from_millis(common::arg("idle"));
    let poison: u32 = common::arg("poison");
    loop {
        let (id, s) = match rx.recv_timeout(idle) {
            Ok(m) => {
                common::say(&format!("got {} {}", seq(&m), m.delivery_count()));
                (m.id(), seq(&m))
            }
            Err(Error::Timeout) => break,
            Err(e) => panic!("member: {e}"),
        };
        if s == poison {
            rx.nack(id, "poisoned").expect("nack");
            continue;
        }
        common::say(&format!("acking {s}"));
        match rx.ack(id) {
            Ok(()) => common::say(&format!("acked {s}")),
            Err(Error::AckExpired(_)) => common::say(&format!("expired {s}")),
            Err(e) => panic!("ack: {e}"),
        }
    }
    common::say("idle");
}

/// Receives one message, reports it, waits for a line from the parent, then acks it and
/// reports `ack ok` or `ack expired`.
fn holder(queue: &str) {
    let mut rx = Consumer::subscribe_with(queue, SUB, Wait::Block).expect("subscribe");
    let id = {
        let m = rx.recv_timeout(common::OP_TIMEOUT).expect("a message");
        common::say(&format!("got {} {}", seq(&m), m.delivery_count()));
        m.id()
    };
    let _ = common::hear();
    match rx.ack(id) {
        Ok(()) => common::say("ack ok"),
        Err(Error::AckExpired(_)) => common::say("ack expired"),
        Err(e) => panic!("ack: {e}"),
    }
}

fn spawn_member(q: &str, idle_ms: u64, poison: u32) -> Child {
    let mut c = Child::spawn("member", q, &[("idle", idle_ms.to_string()), ("poison", poison.to_string())]);
    c.expect("joined");
    c
}

/// What members said: per seq, every delivery count, and whether an ack succeeded.
#[derive(Default)]
struct Seen {
    got: BTreeMap<u32, Vec<u32>>,
    acked: BTreeMap<u32, u32>,
}

impl Seen {
    /// Reads a member's lines until `idle`.
    fn drain(&mut self, c: &mut Child) {
        loop {
            let line = c.expect("");
            let mut w = line.split_whitespace();
            match (w.next(), w.next(), w.next()) {
                (Some("got"), Some(s), Some(n)) => {
                    let s: u32 = s.parse().unwrap();
                    assert!(!self.acked.contains_key(&s), "message {s} delivered again after its ack");
                    self.got.entry(s).or_default().push(n.parse().unwrap());
                }
                (Some("acked"), Some(s), None) => *self.acked.entry(s.parse().unwrap()).or_default() += 1,
                (Some("acking" | "expired"), ..) => {}
                (Some("idle"), ..) => return,
                _ => panic!("member said {line:?}"),
            }
        }
    }
}

#[test]
fn a_poisoned_message_is_delivered_max_deliveries_times_then_is_a_dead_letter_while_the_rest_flow() {
    let d = Durable::new("acks-poison", 64 << 10);
    d.explicit(SUB, Duration::from_secs(30), 8, 4);
    let n = 400;
    let poison = 123;
    let mut members = [spawn_member(d.name(), 1500, poison), spawn_member(d.name(), 1500, poison)];
    send_seqs(d.name(), 0..n, 100);
    let mut seen = Seen::default();
    for c in &mut members {
        seen.drain(c);
        c.wait_ok();
    }
    for s in 0..n {
        if s == poison {
            let mut counts = seen.got[&s].clone();
            counts.sort(); // the two members' reports are read one member after the other
            assert_eq!(counts, vec![1, 2, 3, 4], "delivered exactly max_deliveries times, counted");
            assert!(!seen.acked.contains_key(&s));
        } else {
            assert_eq!(seen.acked.get(&s), Some(&1), "message {s} acked once");
            assert_eq!(seen.got[&s], vec![1], "message {s} delivered once");
        }
    }
    let dl = d.dead_letters(SUB);
    assert_eq!(dl.len(), 1, "{dl:?}");
    assert_eq!((seq(&dl[0].payload), dl[0].deliveries, dl[0].payload.len()), (poison, 4, 100));
    assert_eq!(dl[0].reason, "poisoned");
}

#[test]
fn a_stopped_member_keeps_its_message_until_ack_wait_then_its_late_ack_expires() {
    let d = Durable::new("acks-stopped", 64 << 10);
    let wait = Duration::from_millis(600);
    d.explicit(SUB, wait, 8, 5);
    let mut holder = Child::spawn("holder", d.name(), &[]);
    send_seqs(d.name(), 0..1, 16);
    assert_eq!(holder.expect("got"), "0 1");
    holder.signal(Signal::STOP);
    let stopped = Instant::now();
    let mut rx = Consumer::subscribe_with(d.name(), SUB, Wait::Block).expect("subscribe");
    let id = {
        let m = rx.recv_timeout(common::OP_TIMEOUT).expect("delivered again after ack_wait");
        assert_eq!((seq(&m), m.delivery_count()), (0, 2));
        m.id()
    };
    assert!(stopped.elapsed() >= wait - Duration::from_millis(50), "not before ack_wait: {:?}", stopped.elapsed());
    rx.ack(id).expect("the new holder's ack");
    holder.signal(Signal::CONT);
    holder.tell("ack");
    assert_eq!(holder.expect("ack"), "expired");
    holder.wait_ok();
    assert!(matches!(rx.try_recv(), Ok(None)), "acked: never again");
}

/// Subscribes to `sub`, receives `take` messages: acks the first `ack`, nacks the one at
/// `nack_at` `nacks` times (receiving it back each time, before anything else), holds the
/// rest unacknowledged; says `ready`, then waits to be killed.
fn partial(queue: &str) {
    let sub: String = common::arg("sub");
    let (take, ack, nack_at, nacks): (u32, u32, u32, u32) =
        (common::arg("take"), common::arg("ack"), common::arg("nack_at"), common::arg("nacks"));
    let mut rx = Consumer::subscribe_with(queue, &sub, Wait::Block).expect("subscribe");
    for i in 0..take {
        let (id, s) = {
            let m = rx.recv_timeout(common::OP_TIMEOUT).expect("a message");
            (m.id(), seq(&m))
        };
        assert_eq!(s, i, "in order");
        if i < ack {
            rx.ack(id).expect("ack");
        } else if i == nack_at {
            for n in 0..nacks {
                rx.nack(id, &format!("nack {n}")).expect("nack");
                let m = rx.recv_timeout(common::OP_TIMEOUT).expect("the nacked message again");
                assert_eq!((m.id(), m.delivery_count()), (id, n + 2));
            }
        }
    }
    common::say("ready");
    let _ = common::hear();
}

#[test]
fn after_a_restart_each_subscription_resumes_exactly_with_its_messages_in_flight_counted() {
    let d = Durable::new("acks-restart", 64 << 10);
    for s in ["a", "b", "c"] {
        d.explicit(s, Duration::from_secs(30), 64, 6);
    }
    send_seqs(d.name(), 0..30, 40);
    // a: 10 received and acked. b: 20 received, 15 acked, 5 held (and the rest of its
    // member's claim not handed out). c: 5 received, 2 acked, the third nacked twice, all
    // held.
    let plans = [("a", 10, 10, u32::MAX, 0), ("b", 20, 15, u32::MAX, 0), ("c", 5, 2, 2, 2)];
    let mut children: Vec<Child> = plans
        .iter()
        .map(|&(sub, take, ack, nack_at, nacks)| {
            let mut c = Child::spawn(
                "partial",
                d.name(),
                &[
                    ("sub", sub.into()),
                    ("take", take.to_string()),
                    ("ack", ack.to_string()),
                    ("nack_at", nack_at.to_string()),
                    ("nacks", nacks.to_string()),
                ],
            );
            c.expect("ready");
            c
        })
        .collect();
    for c in &mut children {
        c.kill9();
    }
    // One more message, and the producer's close writes the last checkpoint.
    send_seqs(d.name(), 30..31, 40);
    // The host restarts: every shared-memory object goes, the log directories stay.
    for s in ["a", "b", "c"] {
        let _ = Queue::remove(&dlq_name(d.name(), s));
    }
    Queue::remove(d.name()).expect("remove");
    let opts = Options::new().capacity(64 << 10).max_message(4096).mode(Mode::Mpsc).durable(&d.dir.0);
    Queue::open_or_create(d.name(), opts).expect("restore");
    let expect: [(&str, Vec<(u32, u32)>); 3] = [
        ("a", (10..31).map(|s| (s, 1)).collect()),
        ("b", (15..20).map(|s| (s, 2)).chain((20..31).map(|s| (s, 1))).collect()),
        ("c", [(2, 4), (3, 2), (4, 2)].into_iter().chain((5..31).map(|s| (s, 1))).collect()),
    ];
    for (sub, want) in expect {
        let got = drain_acking(d.name(), sub);
        let mut want = want;
        want.sort();
        assert_eq!(got, want, "subscription {sub} after the restart: (seq, delivery count)");
    }
}

/// Joins `sub` of `queue` and receives and acks until nothing comes for half a second:
/// (seq, delivery count) of each message, sorted.
fn drain_acking(queue: &str, sub: &str) -> Vec<(u32, u32)> {
    let mut rx = Consumer::subscribe_with(queue, sub, Wait::Block).expect("subscribe after the restart");
    let mut got = Vec::new();
    loop {
        let (id, g) = match rx.recv_timeout(Duration::from_millis(500)) {
            Ok(m) => (m.id(), (seq(&m), m.delivery_count())),
            Err(Error::Timeout) => break,
            Err(e) => panic!("{sub}: {e}"),
        };
        rx.ack(id).expect("ack");
        got.push(g);
    }
    got.sort();
    got
}

fn knob(key: &str, default: u64) -> u64 {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A work-queue member: for every message says `got SEQ DC`, works a little, says
/// `acking SEQ`, acks, says `acked SEQ DC` (or `expired SEQ`). Ends once its stdin closes
/// and nothing came for a while.
fn worker(queue: &str) {
    let hung_up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let h = hung_up.clone();
    std::thread::spawn(move || {
        while common::hear().is_some() {}
        h.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    let mut rx = Consumer::subscribe_with(queue, SUB, Wait::Block).expect("subscribe");
    loop {
        let (id, s, dc) = match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(m) => (m.id(), seq(&m), m.delivery_count()),
            Err(Error::Timeout) if hung_up.load(std::sync::atomic::Ordering::Relaxed) => break,
            Err(Error::Timeout) => continue,
            Err(e) => panic!("worker: {e}"),
        };
        common::say(&format!("got {s} {dc}"));
        let t = Instant::now();
        while t.elapsed() < Duration::from_micros(400) {
            std::hint::spin_loop();
        }
        common::say(&format!("acking {s}"));
        match rx.ack(id) {
            Ok(()) => common::say(&format!("acked {s} {dc}")),
            Err(Error::AckExpired(_)) => common::say(&format!("expired {s}")),
            Err(e) => panic!("ack: {e}"),
        }
    }
}

/// Sends `count` numbered messages, `per_ms` a millisecond, then says `sent COUNT`.
fn sender(queue: &str) {
    let (count, per_ms): (u32, u32) = (common::arg("count"), common::arg("per_ms"));
    let mut tx = Producer::open(queue).expect("producer");
    let mut buf = [0u8; 64];
    let start = Instant::now();
    for s in 0..count {
        buf[..4].copy_from_slice(&s.to_le_bytes());
        tx.send(&buf).expect("send");
        let due = start + Duration::from_micros(u64::from(s) * 1000 / u64::from(per_ms));
        if let Some(d) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
    }
    common::say(&format!("sent {count}"));
}

/// What the workers said.
#[derive(Default)]
struct WorkLog {
    /// Per seq: (delivery count, worker) of every reception.
    got: BTreeMap<u32, Vec<(u32, usize)>>,
    /// Per seq: the delivery counts of the receptions whose ack succeeded.
    acked: BTreeMap<u32, Vec<u32>>,
    /// Seqs whose ack a killed worker started and did not report.
    ambiguous: BTreeMap<u32, usize>,
    expired: u64,
    killed: std::collections::BTreeSet<usize>,
    /// Every line, per worker (for the failure messages).
    lines: BTreeMap<usize, Vec<String>>,
}

impl WorkLog {
    fn add(&mut self, worker: usize, line: &str) {
        self.lines.entry(worker).or_default().push(line.to_owned());
        let mut w = line.split_whitespace();
        match (w.next(), w.next().and_then(|s| s.parse::<u32>().ok()), w.next().and_then(|s| s.parse::<u32>().ok())) {
            (Some("got"), Some(s), Some(dc)) => self.got.entry(s).or_default().push((dc, worker)),
            (Some("acking"), ..) => {}
            (Some("acked"), Some(s), Some(dc)) => self.acked.entry(s).or_default().push(dc),
            (Some("expired"), ..) => self.expired += 1,
            _ => panic!("worker {worker} said {line:?}"),
        }
    }

    /// What the workers that got message `s` said around it.
    fn around(&self, s: u32, got: &[(u32, usize)]) -> String {
        let mut out = String::new();
        for &(_, w) in got {
            let lines = &self.lines[&w];
            let at = lines.iter().position(|l| l.starts_with(&format!("got {s} "))).unwrap_or(0);
            let end = (at + 6).min(lines.len());
            out += &format!(
                "worker {w} (killed: {}, {} lines) said: {:?}; ",
                self.killed.contains(&w),
                lines.len(),
                &lines[at.saturating_sub(3)..end]
            );
        }
        out
    }

    fn drain(&mut self, worker: usize, c: &mut Child) {
        while let Some(line) = c.try_line(Duration::ZERO) {
            self.add(worker, &line);
        }
    }

    fn drain_to_end(&mut self, worker: usize, c: &mut Child, killed: bool) {
        for line in c.remaining_lines() {
            self.add(worker, &line);
        }
        if killed {
            self.killed.insert(worker);
            // Its very last words (maybe read before the kill): an ack started, not reported.
            let last = self.lines.get(&worker).and_then(|l| l.last());
            if let Some(s) = last.and_then(|l| l.strip_prefix("acking ")).and_then(|s| s.parse().ok()) {
                self.ambiguous.insert(s, worker);
            }
        }
    }
}

/// The work queue of explicit acks: 3 worker processes share a subscription, one is killed
/// with `SIGKILL` every 50 ms and a fresh one joins (`SHMQ_ACK_KILL_ROUNDS` rounds, default
/// 200), while a producer process sends numbered messages. In the end every message is
/// acked exactly once (an ack a killed worker started but did not report may have landed:
/// then it is never delivered again), no message is delivered after it was acked (no
/// delivery count above the acked one), nothing went to the dead-letter queue, and the
/// table is empty.
#[test]
fn workers_killed_with_sigkill_lose_nothing_and_no_acked_message_is_delivered_again() {
    let rounds = knob("SHMQ_ACK_KILL_ROUNDS", 200);
    let d = Durable::new("acks-kill", 64 << 10);
    d.explicit(SUB, Duration::from_secs(10), 256, 1000);
    let count = (rounds * 100) as u32;
    let started = Instant::now();
    let mut log = WorkLog::default();
    let spawn = |n: usize| (n, Child::spawn("worker", d.name(), &[]));
    let mut workers: Vec<(usize, Child)> = (0..3).map(spawn).collect();
    let mut sender = Child::spawn("sender", d.name(), &[("count", count.to_string()), ("per_ms", "2".into())]);
    let mut rng = common::Rng(0x05ee_dac4);
    let mut kills = 0;
    for next in (workers.len()..).take(rounds as usize) {
        let next_kill = Instant::now() + Duration::from_millis(50);
        while Instant::now() < next_kill {
            for (n, c) in &mut workers {
                log.drain(*n, c);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let i = rng.below(workers.len() as u64) as usize;
        let (n, c) = &mut workers[i];
        c.kill9();
        kills += 1;
        log.drain_to_end(*n, c, true);
        workers[i] = spawn(next);
    }
    assert_eq!(sender.expect("sent"), count.to_string());
    sender.wait_ok();
    // Until everything is acked: nothing in flight, the subscription's cursor at the end.
    let deadline = Instant::now() + common::OP_TIMEOUT;
    loop {
        for (n, c) in &mut workers {
            log.drain(*n, c);
        }
        let info = Subscription::list(d.name()).unwrap().into_iter().find(|s| s.name == SUB).unwrap();
        if info.in_flight == 0 && info.lag_bytes == 0 && info.members.iter().all(|m| m.claimed.is_none()) {
            break;
        }
        assert!(Instant::now() < deadline, "not all acked: {info:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
    for (n, c) in &mut workers {
        c.hang_up();
        c.wait_ok();
        log.drain_to_end(*n, c, false);
    }
    let (mut redelivered, mut ambiguous_used) = (0u64, 0u64);
    for s in 0..count {
        let got = log.got.get(&s).unwrap_or_else(|| panic!("message {s} never delivered"));
        redelivered += got.iter().filter(|(dc, _)| *dc >= 2).count() as u64;
        let mut dcs: Vec<u32> = got.iter().map(|g| g.0).collect();
        dcs.sort();
        assert!(
            dcs.windows(2).all(|w| w[0] < w[1]),
            "message {s}: a delivery count twice: {got:?} (worker, delivery count); killed: {:?}; ambiguous acks: {:?}",
            got.iter().map(|g| (g.1, log.killed.contains(&g.1))).collect::<Vec<_>>(),
            log.ambiguous.get(&s)
        );
        match log.acked.get(&s).map(Vec::as_slice) {
            Some([dc]) => {
                assert_eq!(dcs.last(), Some(dc), "message {s} delivered again after its ack: {got:?}");
            }
            Some(more) => panic!("message {s} acked {} times: {more:?}", more.len()),
            None => {
                // Its last ack was started by a killed worker: it landed (else it would
                // have been delivered again and acked by someone).
                assert!(log.ambiguous.contains_key(&s), "message {s} never acked: {got:?}; {}", log.around(s, got));
                ambiguous_used += 1;
            }
        }
    }
    assert!(d.dead_letters(SUB).is_empty(), "nothing is dead-lettered");
    let info = Subscription::list(d.name()).unwrap().into_iter().find(|s| s.name == SUB).unwrap();
    println!(
        "work queue: {count} messages, {kills} workers killed, {redelivered} deliveries with count >= 2, \
         {ambiguous_used} acks landed unreported, {} late acks expired; table: acked {}, expired {}, \
         redelivered {}; {:.1} s",
        log.expired,
        info.acked,
        info.expired,
        info.redelivered,
        started.elapsed().as_secs_f64()
    );
    if kills >= 20 {
        assert!(redelivered > 0, "{kills} busy workers killed and nothing delivered again: does redelivery work?");
    }
}

/// Restores `d`'s queue as after a host restart: every shared-memory object goes, the log
/// directories stay.
fn restart(d: &Durable, subs: &[&str]) {
    for s in subs {
        let _ = Queue::remove(&dlq_name(d.name(), s));
    }
    Queue::remove(d.name()).expect("remove");
    let opts = Options::new().capacity(64 << 10).max_message(4096).mode(Mode::Mpsc).durable(&d.dir.0);
    Queue::open_or_create(d.name(), opts).expect("restore");
}

/// A member's acks and deliveries after the last send (nothing else writes a checkpoint
/// then) are saved within a checkpoint interval: killed with kill -9 half a second later,
/// and the host restarted, its acked messages do not come back, and those it held come
/// back counted twice.
#[test]
fn acks_and_deliveries_after_the_last_send_survive_a_kill_and_a_restart() {
    let d = Durable::new("acks-late-ckpt", 64 << 10);
    d.explicit("a", Duration::from_secs(30), 64, 6);
    send_seqs(d.name(), 0..10, 40);
    let args = [("sub", "a".into()), ("take", "10".into()), ("ack", "5".into()), ("nack_at", u32::MAX.to_string())];
    let mut c = Child::spawn("partial", d.name(), &[&args[..], &[("nacks", "0".into())]].concat());
    c.expect("ready");
    std::thread::sleep(Duration::from_millis(500));
    c.kill9();
    restart(&d, &["a"]);
    let got = drain_acking(d.name(), "a");
    assert_eq!(got, (5..10).map(|s| (s, 2)).collect::<Vec<_>>(), "(seq, delivery count) after the restart");
}

/// `max_in_flight` holds after a restore too: a member killed holding one message of a
/// claim of several leaves them all to deliver again, and a new member gets them one at a
/// time (max_in_flight 1), each after the ack of the one before.
#[test]
fn after_a_restore_max_in_flight_still_bounds_what_members_hold() {
    let d = Durable::new("acks-restore-mif", 64 << 10);
    d.explicit("a", Duration::from_secs(30), 1, 6);
    send_seqs(d.name(), 0..8, 40);
    let args = [("sub", "a".into()), ("take", "1".into()), ("ack", "0".into()), ("nack_at", u32::MAX.to_string())];
    let mut c = Child::spawn("partial", d.name(), &[&args[..], &[("nacks", "0".into())]].concat());
    c.expect("ready");
    c.kill9();
    // One more message, and the producer's close writes a checkpoint: the dead member's
    // claim (all it had taken from the queue) is in it, to deliver again.
    send_seqs(d.name(), 8..9, 40);
    restart(&d, &["a"]);
    let mut rx = Consumer::subscribe_with(d.name(), "a", Wait::Block).expect("subscribe after the restart");
    let mut got = Vec::new();
    for _ in 0..9 {
        let id = {
            let m = rx.recv_timeout(Duration::from_secs(10)).expect("the next message");
            got.push(seq(&m));
            m.id()
        };
        if let Ok(Some(m)) = rx.try_recv() {
            panic!(
                "a second message while one is held (max_in_flight 1): {} (count {}) after {:?}",
                seq(&m),
                m.delivery_count(),
                got
            );
        }
        assert_eq!(rx.in_flight(), 1);
        rx.ack(id).expect("ack");
    }
    got.sort();
    assert_eq!(got, (0..9).collect::<Vec<_>>());
}

/// A dead letter's reason is the last one given for that message, or shmq's own: never one
/// a nack or reject gave an earlier message that used the same in-flight entry, nor one a
/// member gave too late (its `nack` or `reject` said `AckExpired`, and changed nothing).
#[test]
fn a_dead_letter_never_carries_another_messages_reason_or_a_late_one() {
    let d = Durable::new("acks-reasons", 64 << 10);
    d.explicit(SUB, Duration::from_millis(150), 1, 2);
    send_seqs(d.name(), 0..3, 16);
    let mut a = Consumer::subscribe_with(d.name(), SUB, Wait::Block).expect("subscribe");
    let mut b = Consumer::subscribe_with(d.name(), SUB, Wait::Block).expect("subscribe");
    let t = Duration::from_secs(10);
    // Message 0 is rejected with a reason; its entry is the only one (max_in_flight 1).
    let id0 = a.recv_timeout(t).expect("message 0").id();
    a.reject(id0, "m0 is corrupt").expect("reject");
    // Message 1: held past ack_wait by `a`; `b` gets it again; `a`'s nack and reject come
    // too late; `b` holds it past ack_wait too (its last delivery).
    let id1 = a.recv_timeout(t).expect("message 1").id();
    std::thread::sleep(Duration::from_millis(300));
    {
        let m = b.recv_timeout(t).expect("message 1 again");
        assert_eq!((m.id(), m.delivery_count()), (id1, 2));
    }
    assert!(matches!(a.nack(id1, "late nack"), Err(Error::AckExpired(_))));
    std::thread::sleep(Duration::from_millis(300));
    // Past its last delivery: the next receive moves it to the dead letters, then gives 2.
    {
        let m = a.recv_timeout(t).expect("message 2");
        assert_eq!(seq(&m), 2);
    }
    assert!(matches!(b.reject(id1, "late reject"), Err(Error::AckExpired(_))));
    let dl = d.dead_letters(SUB);
    let reasons: Vec<(u64, &str)> = dl.iter().map(|l| (l.id, l.reason.as_str())).collect();
    assert_eq!(reasons, [(id0, "m0 is corrupt"), (id1, "delivered max_deliveries times without an ack")]);
}

/// A member of a subscription removed meanwhile gets `Closed`, even with a nacked message
/// waiting, and never a message of a subscription created after (which may take the same
/// place in the queue); a refused `create` makes no dead-letter queue.
#[test]
fn a_removed_subscriptions_member_takes_nothing_more_and_a_refused_create_makes_nothing() {
    let d = Durable::new("acks-removed", 64 << 10);
    d.explicit("a", Duration::from_secs(30), 4, 5);
    send_seqs(d.name(), 0..1, 16);
    let mut old = Consumer::subscribe_with(d.name(), "a", Wait::Block).expect("subscribe");
    let id = old.recv_timeout(Duration::from_secs(10)).expect("message 0").id();
    old.nack(id, "later").expect("nack");
    Subscription::remove(d.name(), "a").expect("remove");
    assert!(matches!(old.recv_timeout(Duration::from_secs(2)), Err(Error::Closed)));
    d.explicit("b", Duration::from_secs(30), 4, 5);
    send_seqs(d.name(), 1..2, 16);
    let mut new = Consumer::subscribe_with(d.name(), "b", Wait::Block).expect("subscribe");
    let id = new.recv_timeout(Duration::from_secs(10)).expect("message 1").id();
    new.nack(id, "later").expect("nack");
    assert!(matches!(old.recv_timeout(Duration::from_secs(1)), Err(Error::Closed)));
    {
        let m = new.recv_timeout(Duration::from_secs(10)).expect("message 1 again, to b's member");
        assert_eq!((seq(&m), m.delivery_count()), (1, 2));
    }
    // "c" is auto-ack: asking for it with explicit acks is refused, and leaves nothing.
    Subscription::create(d.name(), "c", SubscriptionOptions::new()).expect("create");
    let explicit = SubscriptionOptions::new().ack(Ack::Explicit);
    assert!(matches!(Subscription::create(d.name(), "c", explicit), Err(Error::InvalidArgument(_))));
    assert!(matches!(Consumer::open(&dlq_name(d.name(), "c")), Err(Error::NotFound(_))));
    assert!(!d.dir.0.join("c.dlq").exists(), "a dead-letter log directory was made");
}

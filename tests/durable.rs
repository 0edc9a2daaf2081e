//! Durable queues with real processes and real files on the real disk (under the build's
//! temporary directory): ids, `Fsync::Always` sends that survive kills and a simulated host
//! restart (the shared-memory object removed, the log directory kept), group commit, and a
//! stopped journaler that holds nobody's sync hostage.
//!
//! Kill points of the journal (see `src/failpoint.rs`): records copied but not written
//! (`journal-copied`), written but `written` not raised (`journal-written`), about to sync
//! (`journal-syncing`), synced but `durable` not raised (`journal-synced`), `durable` raised
//! but not the journal's cursor, nobody woken (`journal-durable-raised`), about to raise the
//! id ceiling (`ceiling-raising`). A kill never tears a write (completed writes survive in
//! the page cache), so each leaves the log and the positions for the next journaler to
//! finish; a power cut is the log layer's own test (the fault-injecting file layer).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::{Child, LogDir, TestQueue};
use shmq::{Consumer, Fsync, Mode, Options, Producer, Queue, Subscription, SubscriptionOptions, Wait};

#[test]
fn child_role() {
    common::run_child(|role, queue| match role {
        "producer" => producer(queue),
        "nowait" => nowait_producer(queue),
        "limited" => limited_producer(queue),
        "reader" => reader(queue),
        "flood" => flood(queue),
        "filler" => filler(queue),
        "waiter" => waiter(queue),
        "restorer" => restorer(queue),
        "late_sub" => late_sub(queue),
        "bulk" => bulk(queue),
        other => panic!("unknown role {other}"),
    });
}

/// Restores the queue from the log in `dir` (after a simulated restart), with the options
/// of [`big_options`].
fn restorer(queue: &str) {
    let dir: String = common::arg("dir");
    Queue::open_or_create(queue, big_options(std::path::Path::new(&dir))).expect("restore");
    common::say("restored");
}

/// Sends `msg(9, 0)` under `Always`, creates subscription "late", sends `msg(9, 1)`, says
/// `sent`, and waits to be killed (so that no handle's close writes a checkpoint).
fn late_sub(queue: &str) {
    let mut tx = Producer::open_with(queue, Wait::Block).expect("open");
    tx.send(&msg(9, 0)).expect("send");
    Subscription::create(queue, "late", SubscriptionOptions::new()).expect("create");
    tx.send(&msg(9, 1)).expect("send");
    common::say("sent");
    std::thread::sleep(Duration::from_secs(60));
}

/// Sends `count` messages of [`bulk_msg`], says `sent`, and waits to be killed.
fn bulk(queue: &str) {
    let count: u32 = common::arg("count");
    // Optionally in bursts of `burst` messages, `pause` ms apart.
    let burst: u32 = common::arg_or("burst", u32::MAX);
    let pause = Duration::from_millis(common::arg_or("pause", 0));
    let mut tx = Producer::open_with(queue, Wait::Block).expect("open");
    for seq in 0..count {
        tx.send_timeout(&bulk_msg(seq), common::OP_TIMEOUT).expect("send");
        if seq % burst == burst - 1 {
            std::thread::sleep(pause);
        }
    }
    common::say("sent");
    std::thread::sleep(Duration::from_secs(60));
}

/// 16 KiB: the sequence number, then its low byte over and over.
fn bulk_msg(seq: u32) -> Vec<u8> {
    let mut m = vec![seq as u8; 16 << 10];
    m[..4].copy_from_slice(&seq.to_le_bytes());
    m
}

/// A ring of 1 MiB and messages of up to 16 KiB, under `Never`: a log of several segments
/// (64 MiB each) in a few seconds.
fn big_options(dir: &std::path::Path) -> Options {
    Options::new().mode(Mode::Mpsc).capacity(1 << 20).max_message(16 << 10).durable(dir).fsync(Fsync::Never)
}

/// Sends `count` messages `[stream u32][seq u32][filler]` with `send` (under `Always`: each
/// returns once durable), reporting `acked SEQ ID` after each. Waits by `wait` (default
/// `block`).
fn producer(queue: &str) {
    let stream: u32 = common::arg("stream");
    let count: u32 = common::arg("count");
    let mut tx = Producer::open_with(queue, common::arg_or("wait", Wait::Block)).expect("open");
    common::say("ready");
    for seq in 0..count {
        let id = tx.send_timeout(&msg(stream, seq), common::OP_TIMEOUT).expect("send");
        common::say(&format!("acked {seq} {id}"));
    }
    common::say("done");
}

/// Sends `count` messages with `send_nowait`, waiting for durability every `window`
/// messages; reports `acked SEQ ID` for each message once `wait_durable` covered it. Waits
/// by `wait` (default `block`).
fn nowait_producer(queue: &str) {
    let stream: u32 = common::arg("stream");
    let count: u32 = common::arg("count");
    let window: u32 = common::arg("window");
    let mut tx = Producer::open_with(queue, common::arg_or("wait", Wait::Block)).expect("open");
    common::say("ready");
    let mut pending = Vec::new();
    for seq in 0..count {
        let id = tx.send_nowait(&msg(stream, seq)).expect("send_nowait");
        pending.push((seq, id));
        if pending.len() as u32 == window || seq + 1 == count {
            tx.wait_durable(id, Some(common::OP_TIMEOUT)).expect("wait_durable");
            for (s, i) in pending.drain(..) {
                common::say(&format!("acked {s} {i}"));
            }
        }
    }
    common::say("done");
}

/// Receives `count` messages as the default consumer, or as a member of subscription
/// `sub` if given, waiting by `wait`: says `ready TID`, then `got SEQ` after each (each
/// checked, in order).
fn reader(queue: &str) {
    let count: u32 = common::arg("count");
    let wait: Wait = common::arg::<String>("wait").parse().expect("a wait policy");
    let sub = std::env::var("SHMQ_ARG_sub").ok();
    let mut rx = match &sub {
        Some(s) => Consumer::subscribe_with(queue, s, wait).expect("subscribe"),
        None => Consumer::open_with(queue, wait).expect("open"),
    };
    common::say(&format!("ready {}", common::tid()));
    for seq in 0..count {
        let m = rx.recv_timeout(common::OP_TIMEOUT).expect("recv");
        assert_eq!(check(&m), (7, seq));
        common::say(&format!("got {seq}"));
    }
}

/// Sends with `send_nowait` until its stdin closes, never waiting for a sync itself (so
/// never taking the journal role): steady traffic for whoever journals.
fn flood(queue: &str) {
    let mut tx = Producer::open_with(queue, Wait::Block).expect("open");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while common::hear().is_some() {}
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        })
    };
    common::say("ready");
    let mut seq = 0u32;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let t = Instant::now();
        tx.send_nowait_timeout(&msg(9, seq), common::OP_TIMEOUT).expect("send_nowait");
        // Room waits on the journal, which this process leads when nobody else does.
        assert!(t.elapsed() < Duration::from_secs(5), "a send waited {:?} for room", t.elapsed());
        seq = seq.wrapping_add(1);
    }
    watcher.join().unwrap();
}

/// Says `ready TID`, then for each `wait ID` line waits for message `ID` (which may not be
/// sent yet) to be durable, with its own producer handle, and says `synced`.
fn waiter(queue: &str) {
    let mut tx = Producer::open_with(queue, Wait::Block).expect("open");
    common::say(&format!("ready {}", common::tid()));
    while let Some(line) = common::hear() {
        let id: u64 = line.strip_prefix("wait ").and_then(|v| v.parse().ok()).expect("wait ID");
        tx.wait_durable(id, Some(common::OP_TIMEOUT)).expect("wait_durable");
        common::say("synced");
    }
}

/// Sends `count` messages with `send_nowait`, more than the ring holds, then says `done`.
fn filler(queue: &str) {
    let count: u32 = common::arg("count");
    let mut tx = Producer::open_with(queue, Wait::Block).expect("open");
    common::say("ready");
    for seq in 0..count {
        tx.send_nowait_timeout(&msg(8, seq), common::OP_TIMEOUT).expect("send_nowait");
    }
    common::say("done");
}

fn msg(stream: u32, seq: u32) -> Vec<u8> {
    let mut m = Vec::with_capacity(40);
    m.extend_from_slice(&stream.to_le_bytes());
    m.extend_from_slice(&seq.to_le_bytes());
    m.resize(8 + (seq as usize * 7) % 56, (seq as u8) ^ (stream as u8));
    m
}

fn check(m: &[u8]) -> (u32, u32) {
    let stream = u32::from_le_bytes(m[..4].try_into().unwrap());
    let seq = u32::from_le_bytes(m[4..8].try_into().unwrap());
    assert_eq!(m, msg(stream, seq), "message bytes");
    (stream, seq)
}

fn options(dir: &LogDir, fsync: Fsync) -> Options {
    Options::new().mode(Mode::Mpsc).capacity(1 << 16).max_message(1024).durable(&dir.0).fsync(fsync)
}

/// `acked SEQ ID` lines of a child.
fn acks(lines: &[String]) -> Vec<(u32, u64)> {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix("acked "))
        .map(|l| {
            let (s, i) = l.split_once(' ').unwrap();
            (s.parse().unwrap(), i.parse().unwrap())
        })
        .collect()
}

/// Reads everything in the queue now (until it is idle for a while).
fn drain(name: &str) -> Vec<(u32, u32, u64)> {
    let mut rx = Consumer::open_with(name, Wait::Block).unwrap();
    let mut got = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_millis(500)) {
            // The tests' own probes ("probe", "after") are shorter than any `msg`.
            Ok(m) if m.len() < 8 => {}
            Ok(m) => {
                let (stream, seq) = check(&m);
                got.push((stream, seq, m.id()));
            }
            Err(shmq::Error::Timeout) => return got,
            Err(e) => panic!("recv: {e}"),
        }
    }
}

/// The shared-memory object goes, as at a host restart; the log directory stays.
fn simulate_restart(name: &str) {
    Queue::remove(name).unwrap();
}

#[test]
fn send_returns_increasing_ids_and_a_consumer_in_another_process_receives_them_with_those_ids() {
    let dir = LogDir::new("ids");
    let q = TestQueue::create("durable-ids", options(&dir, Fsync::Always));
    let mut p = Child::spawn("producer", &q.name, &[("stream", "1".into()), ("count", "500".into())]);
    p.expect("ready");
    p.wait_ok();
    let acked = acks(&p.remaining_lines());
    assert_eq!(acked.len(), 500);
    assert!(acked.windows(2).all(|w| w[0].1 < w[1].1), "ids increase");
    let got = drain(&q.name);
    assert_eq!(got.len(), 500);
    for ((stream, seq, id), (aseq, aid)) in got.iter().zip(&acked) {
        assert_eq!((*stream, *seq, *id), (1, *aseq, *aid), "the consumer sees the ids send returned");
    }
    let s = Queue::inspect(&q.name).unwrap();
    let d = s.durable.expect("durable stats");
    assert!(d.durable >= acked.last().unwrap().1, "everything acknowledged is synced: {d:?}");
    assert!(d.syncs > 0 && d.syncs <= 500, "{d:?}");
}

/// Producers under `Always` are killed at random moments, round after round; then the
/// host "restarts". Every send that returned is in the log exactly once, in its producer's
/// order, and no id was handed out twice.
#[test]
fn under_always_every_acknowledged_send_survives_kill_9_rounds_and_a_restart() {
    let rounds: u32 = std::env::var("SHMQ_DURABLE_KILL_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(200);
    let dir = LogDir::new("kill");
    let q = TestQueue::create("durable-kill", options(&dir, Fsync::Always));
    let mut rng = common::Rng(0x5eed ^ u64::from(std::process::id()));
    let mut acked: BTreeMap<u32, Vec<(u32, u64)>> = BTreeMap::new();
    let mut ids = BTreeSet::new();
    let mut consumed = 0usize;
    for round in 0..rounds {
        // One sleeps while the other syncs, one polls (and may be killed while registered
        // as a waiter: it leaves its bit behind).
        let mut kids: Vec<(u32, Child)> = (0..2)
            .map(|k| {
                let stream = round * 2 + k;
                let wait = if k == 0 { "block" } else { "adaptive" };
                (
                    stream,
                    Child::spawn(
                        "producer",
                        &q.name,
                        &[("stream", stream.to_string()), ("count", "100000".into()), ("wait", wait.into())],
                    ),
                )
            })
            .collect();
        for (_, c) in &mut kids {
            c.expect("ready");
        }
        std::thread::sleep(Duration::from_millis(5 + rng.below(40)));
        for (stream, mut c) in kids {
            c.kill9();
            let _ = c.wait_exit();
            let a = acks(&c.remaining_lines());
            for &(_, id) in &a {
                assert!(ids.insert(id), "id {id} handed out twice");
            }
            acked.insert(stream, a);
        }
        // A consumer reads a little now and then (it must never see a message twice
        // beyond what it did not release).
        if round % 8 == 7 {
            let mut rx = Consumer::open_with(&q.name, Wait::Block).unwrap();
            for _ in 0..rng.below(200) {
                match rx.try_recv().unwrap() {
                    Some(m) => {
                        let (stream, seq) = check(&m);
                        let list = acked.get_mut(&stream).unwrap();
                        // Received messages leave the expectations (the first in order).
                        if let Some(k) = list.iter().position(|&(s, _)| s == seq) {
                            assert_eq!(k, 0, "stream {stream}: seq {seq} before earlier acknowledged ones");
                            list.remove(0);
                        }
                        consumed += 1;
                    }
                    None => break,
                }
            }
        }
    }
    simulate_restart(&q.name);
    Queue::open_or_create(&q.name, options(&dir, Fsync::Always)).unwrap();
    let got = drain(&q.name);
    let mut next: BTreeMap<u32, usize> = BTreeMap::new();
    let mut last_seq: BTreeMap<u32, u32> = BTreeMap::new();
    for &(stream, seq, _) in &got {
        if let Some(&prev) = last_seq.get(&stream) {
            assert!(seq > prev, "stream {stream}: {seq} after {prev}: out of order or twice");
        }
        last_seq.insert(stream, seq);
        let list = &acked[&stream];
        let k = next.entry(stream).or_insert(0);
        if *k < list.len() && list[*k].0 < seq {
            panic!("stream {stream}: acknowledged seq {} lost (next received {seq})", list[*k].0);
        }
        if *k < list.len() && list[*k].0 == seq {
            *k += 1;
        }
    }
    for (stream, list) in &acked {
        let k = next.get(stream).copied().unwrap_or(0);
        assert_eq!(k, list.len(), "stream {stream}: acknowledged {:?} lost", list.get(k));
    }
    let total: usize = acked.values().map(Vec::len).sum();
    eprintln!(
        "{rounds} rounds: {} acknowledged sends; {consumed} messages read before the restart, {} after it; \
         {total} acknowledged ones checked after it",
        ids.len(),
        got.len()
    );
    // Ids after the restart continue above every id handed out before.
    let max_before = ids.iter().next_back().copied().unwrap_or(0);
    let mut tx = Producer::open(&q.name).unwrap();
    let id = tx.send(b"after").unwrap();
    assert!(id > max_before, "id {id} after the restart is not above {max_before}");
}

/// Four producer processes under `Always`: their sends share syncs (group commit), whether
/// they sleep through others' syncs (`block`) or poll (`spin`, `adaptive`), all four kinds
/// at once.
#[test]
fn four_producer_processes_under_always_share_their_syncs() {
    let n: u32 = std::env::var("SHMQ_GROUP_COMMIT_MESSAGES").ok().and_then(|s| s.parse().ok()).unwrap_or(2000);
    let dir = LogDir::new("group");
    let q = TestQueue::create("durable-group", options(&dir, Fsync::Always).capacity(1 << 20));
    let waits = ["block", "adaptive", "spin", "adaptive"];
    let mut kids: Vec<Child> = (0..4)
        .map(|k| {
            Child::spawn(
                "nowait",
                &q.name,
                &[
                    ("stream", k.to_string()),
                    ("count", n.to_string()),
                    ("window", "64".into()),
                    ("wait", waits[k].into()),
                ],
            )
        })
        .collect();
    for c in &mut kids {
        c.expect("ready");
    }
    let mut total = 0;
    for c in &mut kids {
        c.wait_ok();
        total += acks(&c.remaining_lines()).len();
    }
    assert_eq!(total, 4 * n as usize);
    let d = Queue::inspect(&q.name).unwrap().durable.unwrap();
    eprintln!(
        "group commit: {total} messages, {} fdatasyncs, {:.1} messages per sync",
        d.syncs,
        total as f64 / d.syncs.max(1) as f64
    );
    assert!(d.syncs * 4 <= total as u64, "{} syncs for {total} messages: no group commit", d.syncs);
    let got = drain(&q.name);
    assert_eq!(got.len(), total);
    // Each stream in order, none missing, none twice.
    let mut next = [0u32; 4];
    for &(stream, seq, _) in &got {
        assert_eq!(seq, next[stream as usize], "stream {stream}: {seq} out of order");
        next[stream as usize] += 1;
    }
}

/// A producer process stopped (SIGSTOP) just before its first sync, holding the journal role.
#[cfg(feature = "failpoints")]
fn stopped_journal_holder(queue: &str) -> Child {
    let mut stopped = Child::spawn_env(
        "producer",
        queue,
        &[("stream", "0".into()), ("count", "10".into())],
        &[("SHMQ_FAILPOINT", "journal-syncing".into()), ("SHMQ_FAILPOINT_ACTION", "stop".into())],
    );
    stopped.expect("ready");
    stopped.wait_stopped();
    stopped
}

/// The process holding the journal role is stopped (SIGSTOP) just before its sync: other
/// producers' `Always` sends still complete (they journal alongside after a bound), by each
/// wait policy (a poller, too, must stop polling and journal).
#[cfg(feature = "failpoints")]
#[test]
fn a_stopped_journal_holder_does_not_hold_other_producers_syncs_hostage() {
    for wait in ["block", "adaptive", "spin"] {
        let dir = LogDir::new(&format!("stopped-{wait}"));
        let q = TestQueue::create(&format!("durable-stopped-{wait}"), options(&dir, Fsync::Always));
        let mut stopped = stopped_journal_holder(&q.name);
        let t = Instant::now();
        let mut other =
            Child::spawn("producer", &q.name, &[("stream", "1".into()), ("count", "50".into()), ("wait", wait.into())]);
        other.expect("ready");
        other.wait_ok();
        assert_eq!(acks(&other.remaining_lines()).len(), 50, "wait {wait}");
        eprintln!("50 Always sends ({wait}) beside a stopped journal holder: {:?}", t.elapsed());
        stopped.kill9();
    }
}

/// The same for room: a producer filling the ring beside a stopped journal holder waits
/// for the journal, which nobody wakes it for, so it looks again every 50 ms and then
/// journals alongside the holder. (It used to sleep until its own timeout.)
#[cfg(feature = "failpoints")]
#[test]
fn a_stopped_journal_holder_does_not_hold_other_producers_room_hostage() {
    let dir = LogDir::new("stopped-room");
    let q = TestQueue::create("durable-stopped-room", options(&dir, Fsync::Always));
    let mut stopped = stopped_journal_holder(&q.name);
    let t = Instant::now();
    // About 3 rings' worth (64 KiB each) of records of 40 bytes on average.
    let mut filler = Child::spawn("filler", &q.name, &[("count", "5000".into())]);
    filler.expect("ready");
    let done = filler.try_line(Duration::from_secs(10));
    assert_eq!(done.as_deref(), Some("done"), "the filler waited for room beside a stopped journal holder");
    filler.wait_ok();
    eprintln!("5000 sends (3 rings) beside a stopped journal holder: {:?}", t.elapsed());
    stopped.kill9();
}

/// A producer is killed at each journal kill point; the next producer finishes the job and
/// nothing acknowledged is lost.
#[cfg(feature = "failpoints")]
#[test]
fn a_journaler_killed_at_any_step_leaves_the_log_for_the_next_one() {
    for point in [
        "journal-copied",
        "journal-written",
        "journal-syncing",
        "journal-synced",
        "journal-durable-raised",
        "ceiling-raising",
    ] {
        let dir = LogDir::new(point);
        let q = TestQueue::create(&format!("durable-{point}"), options(&dir, Fsync::Always));
        let mut dying = Child::spawn_env(
            "producer",
            &q.name,
            &[("stream", "0".into()), ("count", "20".into())],
            &[("SHMQ_FAILPOINT", point.into()), ("SHMQ_FAILPOINT_SKIP", "3".into())],
        );
        let _ = dying.wait_exit();
        let before = acks(&dying.remaining_lines());
        let mut next = Child::spawn("producer", &q.name, &[("stream", "1".into()), ("count", "20".into())]);
        next.expect("ready");
        next.wait_ok();
        let after = acks(&next.remaining_lines());
        assert_eq!(after.len(), 20, "{point}");
        simulate_restart(&q.name);
        Queue::open_or_create(&q.name, options(&dir, Fsync::Always)).unwrap();
        let got = drain(&q.name);
        for (stream, list) in [(0u32, &before), (1, &after)] {
            let seqs: Vec<u32> = got.iter().filter(|g| g.0 == stream).map(|g| g.1).collect();
            for (seq, _) in list.iter() {
                assert!(seqs.contains(seq), "{point}: stream {stream} acknowledged seq {seq} lost");
            }
            assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{point}: stream {stream} out of order or twice");
        }
    }
}

/// A journaler killed between raising `durable` and raising the journal's cursor (and
/// waking anyone): a reader asleep in another process still gets the synced message (it
/// looks every 50 ms unwoken), and the next sync, though it finds nothing to sync, brings
/// the journal's cursor (which holds producers back) up to `durable`.
#[cfg(feature = "failpoints")]
#[test]
fn a_journaler_killed_after_raising_durable_leaves_nobody_waiting() {
    /// `DurableLine::durable` and `journal` (docs/LAYOUT.md, line 7).
    const OFF_DURABLE: u64 = 960;
    const OFF_JOURNAL: u64 = 968;
    let dir = LogDir::new("durable-raised");
    let q = TestQueue::create("durable-raised", options(&dir, Fsync::Always).mode(Mode::Spsc));
    let mut reader = Child::spawn("reader", &q.name, &[("count", "1".into()), ("wait", "block".into())]);
    let tid: i32 = reader.expect("ready").parse().expect("a thread id");
    reader.wait_in_shared_futex(tid);
    let mut dying = Child::spawn_env(
        "producer",
        &q.name,
        &[("stream", "7".into()), ("count", "1".into())],
        &[("SHMQ_FAILPOINT", "journal-durable-raised".into())],
    );
    let _ = dying.wait_exit();
    let raw = q.raw();
    let (durable, journal) = (raw.read_u64(OFF_DURABLE), raw.read_u64(OFF_JOURNAL));
    assert!(journal < durable, "the kill point was not reached: journal {journal}, durable {durable}");
    let line = reader.try_line(Duration::from_secs(5));
    assert_eq!(line.as_deref(), Some("got 0"), "the reader was not told of the synced message");
    reader.wait_ok();
    // A journal run with nothing to sync (every record is durable: a producer that sent
    // nothing closes, and journals on its way out) catches the cursor up.
    drop(Producer::open(&q.name).expect("open the producer"));
    assert_eq!(raw.read_u64(OFF_DURABLE), durable, "something was synced after all");
    assert_eq!(raw.read_u64(OFF_JOURNAL), durable, "the journal's cursor stayed behind `durable`");
}

/// Under `Never`, ids are not reused across kills and restarts either, even with messages
/// in flight.
#[test]
fn ids_are_never_reused_across_kills_and_restarts_under_never() {
    let dir = LogDir::new("never");
    let q = TestQueue::create("durable-never", options(&dir, Fsync::Never));
    let mut ids = BTreeSet::new();
    for round in 0..6 {
        let mut c = Child::spawn("producer", &q.name, &[("stream", round.to_string()), ("count", "100000".into())]);
        c.expect("ready");
        std::thread::sleep(Duration::from_millis(30));
        c.kill9();
        let _ = c.wait_exit();
        for (_, id) in acks(&c.remaining_lines()) {
            assert!(ids.insert(id), "round {round}: id {id} handed out twice");
        }
        simulate_restart(&q.name);
        Queue::open_or_create(&q.name, options(&dir, Fsync::Never)).unwrap();
        // The restored queue's producers start above everything handed out.
        let mut tx = Producer::open(&q.name).unwrap();
        let id = tx.send(b"probe").unwrap();
        assert!(ids.insert(id), "round {round}: probe id {id} handed out twice");
        drop(tx);
        drain(&q.name);
    }
}

/// A journal whose write passes the middle of a log segment makes the next segment in a
/// background thread. A producer killed after that, with nothing written into it yet,
/// leaves an empty segment beyond the end of the log: after a restart the queue keeps
/// every message, in order, writes on into that segment, and hands out higher ids.
#[test]
fn a_producer_killed_after_making_the_next_segment_ahead_leaves_a_log_that_restores() {
    let dir = LogDir::new("ahead");
    let q = TestQueue::create("durable-ahead", big_options(&dir.0));
    // 36 MiB: past the middle of segment 0 (64 MiB), short of segment 1.
    let count = 36 * 64u32;
    let mut p = Child::spawn("bulk", &q.name, &[("count", count.to_string())]);
    p.expect("sent");
    let seg1 = dir.0.join("0000000000000001.seg");
    let deadline = Instant::now() + common::OP_TIMEOUT;
    while !seg1.exists() {
        assert!(Instant::now() < deadline, "segment 1 was not made ahead");
        std::thread::sleep(Duration::from_millis(5));
    }
    p.kill9();
    let _ = p.wait_exit();
    // A handle closing journals what the ring still holds (into segment 0).
    drop(Producer::open(&q.name).unwrap());
    let before = Queue::inspect(&q.name).unwrap().durable.expect("durable stats");
    assert!(before.written < 64 << 20, "nothing was written into segment 1: {before:?}");
    simulate_restart(&q.name);
    Queue::open_or_create(&q.name, big_options(&dir.0)).unwrap();
    let mut tx = Producer::open(&q.name).unwrap();
    let last = tx.send(&bulk_msg(count)).unwrap();
    assert!(last >= 64 << 20, "the restored stream starts at segment 1: id {last}");
    drop(tx);
    let mut rx = Consumer::open_with(&q.name, Wait::Block).unwrap();
    let mut prev = None;
    for seq in 0..=count {
        let m = rx.recv_timeout(common::OP_TIMEOUT).unwrap_or_else(|e| panic!("message {seq}: {e}"));
        assert_eq!(&*m, &bulk_msg(seq)[..], "message {seq}");
        assert!(prev < Some(m.id()), "ids increase");
        prev = Some(m.id());
    }
    assert_eq!(prev, Some(last));
}

/// A producer process streams ten rings of large records (16 KiB) into a `Never` queue,
/// in bursts of seven eighths of the ring with pauses between, while this process's
/// consumer reads them. In each pause the consumer, with nothing to read and the journal
/// most of a ring behind, writes ahead: two passes at a time, bounded by what it has read
/// (the producer journals too, when a burst finds the ring full). Every message arrives
/// once, in order, and the log replayed from the start holds every one of them, in order.
#[test]
fn a_consumer_writing_ahead_of_a_producer_process_loses_nothing_in_the_ring_or_the_log() {
    let dir = LogDir::new("write-ahead");
    let q = TestQueue::create("durable-write-ahead", big_options(&dir.0));
    let mut rx = Consumer::open_with(&q.name, Wait::Block).unwrap();
    // Ten rings of 1 MiB.
    let count = 10 * 64u32;
    let mut p =
        Child::spawn("bulk", &q.name, &[("count", count.to_string()), ("burst", "56".into()), ("pause", "20".into())]);
    for seq in 0..count {
        let m = rx.recv_timeout(common::OP_TIMEOUT).unwrap_or_else(|e| panic!("message {seq}: {e}"));
        assert_eq!(&*m, &bulk_msg(seq)[..], "message {seq}");
    }
    p.expect("sent");
    p.kill9();
    assert!(rx.try_recv().unwrap().is_none(), "nothing past the last message");
    drop(rx);
    // What the ring still holds goes to the log when a handle closes.
    drop(Producer::open(&q.name).unwrap());
    let mut log = shmq::Reader::open(&q.name, shmq::From::Start).unwrap();
    for seq in 0..count {
        let m = log.recv_timeout(common::OP_TIMEOUT).unwrap_or_else(|e| panic!("log record {seq}: {e}"));
        assert_eq!(&*m, &bulk_msg(seq)[..], "log record {seq}");
    }
}

/// A consumer that received part of the queue, then a restart: it resumes after what it
/// released (the checkpoint), reading the rest from the log, then goes on in the ring.
#[test]
fn after_a_restart_the_default_consumer_resumes_after_what_it_released_reading_the_log_then_the_ring() {
    let dir = LogDir::new("resume");
    let q = TestQueue::create("durable-resume", options(&dir, Fsync::Always));
    let mut p = Child::spawn("producer", &q.name, &[("stream", "7".into()), ("count", "300".into())]);
    p.expect("ready");
    p.wait_ok();
    {
        let mut rx = Consumer::open_with(&q.name, Wait::Block).unwrap();
        for seq in 0..100 {
            let m = rx.recv_timeout(common::OP_TIMEOUT).unwrap();
            assert_eq!(check(&m), (7, seq));
        }
        // Dropping the consumer publishes its position and writes a checkpoint.
    }
    simulate_restart(&q.name);
    Queue::open_or_create(&q.name, options(&dir, Fsync::Always)).unwrap();
    let mut p = Child::spawn("producer", &q.name, &[("stream", "8".into()), ("count", "50".into())]);
    p.expect("ready");
    p.wait_ok();
    let got = drain(&q.name);
    let old: Vec<u32> = got.iter().filter(|g| g.0 == 7).map(|g| g.1).collect();
    let new: Vec<u32> = got.iter().filter(|g| g.0 == 8).map(|g| g.1).collect();
    assert_eq!(old, (100..300).collect::<Vec<_>>(), "the rest of the old messages, from the log, in order");
    assert_eq!(new, (0..50).collect::<Vec<_>>(), "then the new ones, from the ring");
    assert!(got.windows(2).all(|w| w[0].2 < w[1].2), "ids increase across the restart");
}

/// A restart resumes the stream at a segment boundary above every id ever handed out; the
/// positions in between were never written. A queue restarted again and again with
/// messages unread must read that gap as a gap, not as damage below the synced mark
/// (`Corrupt`, the queue lost) nor as the end of the log (everything after it cut), under
/// every fsync policy.
#[test]
fn a_queue_restarted_again_and_again_with_messages_unread_keeps_them_all_in_order() {
    let policies =
        [("always", Fsync::Always), ("interval", Fsync::Interval(Duration::from_millis(5))), ("never", Fsync::Never)];
    for (tag, fsync) in policies {
        let dir = LogDir::new(&format!("restarts-{tag}"));
        let q = TestQueue::create(&format!("durable-restarts-{tag}"), options(&dir, fsync));
        let mut sent = Vec::new();
        for stream in 0..4u32 {
            let mut p = Child::spawn("producer", &q.name, &[("stream", stream.to_string()), ("count", "40".into())]);
            p.expect("ready");
            p.wait_ok();
            sent.extend((0..40).map(|seq| (stream, seq)));
            simulate_restart(&q.name);
            Queue::open_or_create(&q.name, options(&dir, fsync))
                .unwrap_or_else(|e| panic!("{tag}: restart {} after stream {stream}: {e}", stream + 1));
        }
        let got = drain(&q.name);
        let seen: Vec<(u32, u32)> = got.iter().map(|g| (g.0, g.1)).collect();
        assert_eq!(seen, sent, "{tag}: every message, once, in order, across four restarts");
        assert!(got.windows(2).all(|w| w[0].2 < w[1].2), "{tag}: ids increase across the restarts");
    }
}

/// Under `Interval` a consumer that keeps up reads what is written before it is synced,
/// and journals ahead of the sync itself. Retention must still keep every segment not
/// synced yet: the sync to come covers it, and a missing one would fail the log for good
/// (the queue read-only). The interval here is an hour: only the last close syncs.
#[test]
fn under_interval_retention_keeps_what_is_not_synced_yet() {
    let dir = LogDir::new("retire-unsynced");
    let opts = Options::new()
        .capacity(1 << 20)
        .max_message(16 << 10)
        .durable(&dir.0)
        .fsync(Fsync::Interval(Duration::from_secs(3600)));
    let q = TestQueue::create("durable-retire-unsynced", opts);
    let mut tx = Producer::open_with(&q.name, Wait::Block).unwrap();
    let mut rx = Consumer::open_with(&q.name, Wait::Block).unwrap();
    let msg = vec![7u8; 8000];
    let segment = 64u64 << 20;
    let mut crossed: Option<Instant> = None;
    let deadline = Instant::now() + Duration::from_secs(60);
    // Past the first segment, then on for longer than retention's pause (a second).
    while crossed.is_none_or(|t| t.elapsed() < Duration::from_millis(2500)) {
        assert!(Instant::now() < deadline, "the test took too long");
        let mut last = 0;
        for _ in 0..60 {
            last = tx.send_timeout(&msg, common::OP_TIMEOUT).expect("send");
        }
        while rx.try_recv().expect("recv").is_some() {}
        // About to wait: the consumer journals ahead (and runs retention). What it leaves,
        // a producer that finds the ring full journals, without syncing: under `Interval`
        // the timer syncs.
        let _ = rx.recv_timeout(Duration::from_millis(1));
        if last > segment + (2 << 20) {
            crossed.get_or_insert_with(Instant::now);
        }
    }
    let d = Queue::inspect(&q.name).unwrap().durable.expect("durable stats");
    assert!(d.written > segment && d.durable < segment, "the first segment is written, not synced: {d:?}");
    assert!(dir.0.join("0000000000000000.seg").exists(), "the first segment is kept: it is not synced yet");
    drop(rx);
    drop(tx); // the last close syncs
    let d = Queue::inspect(&q.name).unwrap().durable.expect("durable stats");
    assert!(!d.failed, "the log did not fail: {d:?}");
    let mut tx = Producer::open(&q.name).unwrap();
    tx.send(b"after").expect("the queue is still writable");
}

/// The checkpoint files are written by whichever participant closes; a log directory
/// whose mode lets its group write (`permissions(0o660)`) must not let a group member plant
/// links that point that truncating write at another file of the owner's.
#[test]
fn checkpoints_are_not_written_through_links_planted_in_the_log_directory() {
    let dir = LogDir::new("cursor-links");
    let q = TestQueue::create("durable-cursor-links", options(&dir, Fsync::Always).permissions(0o660));
    let victim = dir.0.with_extension("victim");
    std::fs::write(&victim, b"precious").unwrap();
    let other = dir.0.with_extension("other");
    std::fs::write(&other, b"also precious").unwrap();
    std::os::unix::fs::symlink(&victim, dir.0.join("CURSORS.0")).unwrap();
    std::fs::hard_link(&other, dir.0.join("CURSORS.1")).unwrap();
    let mut p = Child::spawn("producer", &q.name, &[("stream", "7".into()), ("count", "20".into())]);
    p.expect("ready");
    p.wait_ok();
    let mut r = Child::spawn("reader", &q.name, &[("count", "20".into()), ("wait", "block".into())]);
    r.wait_ok(); // its close writes a checkpoint (or tries to)
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious", "nothing written through the symbolic link");
    assert_eq!(std::fs::read(&other).unwrap(), b"also precious", "nothing written through the second name");
    let _ = std::fs::remove_file(&victim);
    let _ = std::fs::remove_file(&other);
}

/// A restore makes the queue (others may open it at once), then the checkpoint's named
/// subscriptions again. A producer that opens in between and journals must neither run
/// retention, which would see only the default consumer's position and remove the segments
/// a subscription not made yet still needs, nor write a checkpoint, which would leave that
/// subscription out of it. The restorer is stopped in that window.
#[test]
#[cfg(feature = "failpoints")]
fn retention_waits_for_a_restore_to_make_its_subscriptions_again() {
    let dir = LogDir::new("restore-window");
    let q = TestQueue::create("durable-restore-window", big_options(&dir.0));
    Subscription::create(&q.name, "work", SubscriptionOptions::new()).unwrap();
    let msg = vec![5u8; 8000];
    let total = 9_000u32; // 72 MB: past the first 64 MiB segment
    {
        let mut tx = Producer::open_with(&q.name, Wait::Block).unwrap();
        let mut rx = Consumer::open_with(&q.name, Wait::Block).unwrap();
        for seq in 0..total {
            let mut m = msg.clone();
            m[..4].copy_from_slice(&seq.to_le_bytes());
            tx.send_timeout(&m, common::OP_TIMEOUT).unwrap();
            // The default consumer keeps up (its close checkpoints it at the end); "work"
            // reads nothing.
            while rx.try_recv().unwrap().is_some() {}
        }
    }
    assert!(dir.0.join("0000000000000000.seg").exists(), "\"work\" holds the first segment");
    simulate_restart(&q.name);
    let mut restorer = Child::spawn_env(
        "restorer",
        &q.name,
        &[("dir", dir.0.display().to_string())],
        &[("SHMQ_FAILPOINT", "restore-subscriptions".into()), ("SHMQ_FAILPOINT_ACTION", "stop".into())],
    );
    restorer.wait_stopped();
    // In the window: journal and give retention (at most once a second) two chances.
    let mut tx = Producer::open_with(&q.name, Wait::Block).unwrap();
    for round in 0..3 {
        let mut m = msg.clone();
        m[..4].copy_from_slice(&(total + round).to_le_bytes());
        let id = tx.send_timeout(&m, common::OP_TIMEOUT).unwrap();
        tx.wait_durable(id, Some(common::OP_TIMEOUT)).unwrap();
        std::thread::sleep(Duration::from_millis(600));
    }
    drop(tx);
    assert!(dir.0.join("0000000000000000.seg").exists(), "retention waited for the restore");
    restorer.signal(rustix::process::Signal::CONT);
    restorer.expect("restored");
    restorer.wait_ok();
    let mut member = Consumer::subscribe_with(&q.name, "work", Wait::Block).unwrap();
    for want in 0..total + 3 {
        let m = member.recv_timeout(common::OP_TIMEOUT).unwrap_or_else(|e| panic!("message {want}: {e}"));
        assert_eq!(u32::from_le_bytes(m[..4].try_into().unwrap()), want, "\"work\" gets every message in order");
    }
}

/// A subscription whose creation returned is restored after a crash and a restart, with
/// what was sent to it (durably) since: its creation writes a checkpoint.
#[test]
fn a_subscription_created_just_before_a_crash_survives_the_restart() {
    let dir = LogDir::new("late-sub");
    let q = TestQueue::create("durable-late-sub", options(&dir, Fsync::Always));
    let mut p = Child::spawn("late_sub", &q.name, &[]);
    p.expect("sent");
    p.kill9();
    simulate_restart(&q.name);
    Queue::open_or_create(&q.name, options(&dir, Fsync::Always)).unwrap();
    let mut member = Consumer::subscribe_with(&q.name, "late", Wait::Block).expect("the subscription was restored");
    let m = member.recv_timeout(common::OP_TIMEOUT).expect("what was sent after its creation");
    assert_eq!(check(&m), (9, 1));
}

/// The restoring word is shared memory, which anyone may scribble on: a time further
/// ahead than a restore's grace is not a restore, and must not stop checkpoints (nor
/// retention) for good.
#[test]
fn a_scribbled_restoring_word_does_not_stop_checkpoints() {
    let dir = LogDir::new("restoring-scribbled");
    let q = TestQueue::create("durable-restoring-scribbled", options(&dir, Fsync::Always));
    // `DurableLine::restoring_until` (docs/LAYOUT.md): the end of time, in Unix seconds.
    q.raw().write_u32(996, u32::MAX);
    Subscription::create(&q.name, "after", SubscriptionOptions::new()).unwrap();
    simulate_restart(&q.name);
    Queue::open_or_create(&q.name, options(&dir, Fsync::Always)).unwrap();
    Consumer::subscribe_with(&q.name, "after", Wait::Block).expect("its creation was checkpointed");
}

/// A `Reader` replays the log from any id while producers go on, and sees what a
/// consumer already took too.
#[test]
fn a_reader_replays_the_log_from_an_id_without_taking_anything() {
    let dir = LogDir::new("reader");
    let q = TestQueue::create("durable-reader", options(&dir, Fsync::Always));
    let mut p = Child::spawn("producer", &q.name, &[("stream", "3".into()), ("count", "200".into())]);
    p.expect("ready");
    p.wait_ok();
    let acked = acks(&p.remaining_lines());
    assert_eq!(drain(&q.name).len(), 200, "a consumer took everything");
    let (seq0, id) = acked[50];
    let mut r = shmq::Reader::open(&q.name, shmq::From::Id(id)).unwrap();
    for (k, &(seq, id)) in acked[50..].iter().enumerate() {
        let m = r.recv_timeout(common::OP_TIMEOUT).unwrap();
        assert_eq!((check(&m), m.id()), ((3, seq), id), "message {k} after seq {seq0}");
    }
    assert!(r.try_recv().unwrap().is_none());
    // An id that is not a message's (inside message 50, or just past it): the first after.
    for past in [1, 8] {
        let mut r = shmq::Reader::open(&q.name, shmq::From::Id(id + past)).unwrap();
        let m = r.recv_timeout(common::OP_TIMEOUT).unwrap();
        assert_eq!(m.id(), acked[51].1, "From::Id({id} + {past}) starts at the next message");
    }
    let mut all = shmq::Reader::open(&q.name, shmq::From::Start).unwrap();
    let mut n = 0;
    while all.try_recv().unwrap().is_some() {
        n += 1;
    }
    assert_eq!(n, 200);
    assert!(matches!(
        shmq::Reader::open(&TestQueue::create("volatile-reader", Options::new()).name, shmq::From::Start),
        Err(shmq::Error::InvalidArgument(_))
    ));
}

/// Under `Interval(d)`, a producer that sends and then only waits finds its messages synced
/// by the timer thread within a few intervals, without syncing itself.
#[test]
fn under_interval_the_timer_syncs_what_was_written() {
    let dir = LogDir::new("interval");
    let q = TestQueue::create("durable-interval", options(&dir, Fsync::Interval(Duration::from_millis(20))));
    let mut tx = Producer::open(&q.name).unwrap();
    let mut last = 0;
    for seq in 0..50 {
        last = tx.send(&msg(9, seq)).unwrap();
    }
    let deadline = Instant::now() + common::OP_TIMEOUT;
    loop {
        let d = Queue::inspect(&q.name).unwrap().durable.unwrap();
        if d.durable > last {
            assert!(d.syncs >= 1);
            break;
        }
        assert!(Instant::now() < deadline, "the timer never synced: {d:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(drain(&q.name).len(), 50);
}

/// A consumer's timed receive ends at its deadline while a producer stopped inside its
/// claim (alive: the journal cannot pass it) holds the journal behind a large backlog, on a
/// ring as large as a log segment (its id ceiling always looks low): the consumer keeps
/// offering to journal while it waits, and those offers, moving nothing readable, must not
/// keep the wait going.
#[cfg(feature = "failpoints")]
#[test]
fn a_timed_receive_ends_at_its_deadline_while_a_stopped_claim_holds_the_journal() {
    let dir = LogDir::new("stuck-claim-wait");
    let cap = 64u64 << 20;
    let q = TestQueue::create(
        "durable-stuck-claim-wait",
        Options::new().mode(Mode::Mpsc).capacity(cap).max_message(64 << 10).durable(&dir.0).fsync(Fsync::Never),
    );
    let rx = Consumer::open_with(&q.name, Wait::Adaptive).unwrap();
    let mut stopped = Child::spawn_env(
        "producer",
        &q.name,
        &[("stream", "0".into()), ("count", "1".into())],
        &[("SHMQ_FAILPOINT", "mpsc-claimed".into()), ("SHMQ_FAILPOINT_ACTION", "stop".into())],
    );
    stopped.wait_stopped();
    let mut tx = Producer::open(&q.name).unwrap();
    let m = vec![3u8; 60 << 10];
    let mut sent = 0u64;
    while sent < cap / 4 + (1 << 20) {
        tx.try_send(&m).unwrap();
        sent += m.len() as u64;
    }
    let waiting = std::thread::spawn(move || {
        let mut rx = rx;
        let start = Instant::now();
        let r = rx.recv_timeout(Duration::from_millis(500)).map(|m| m.len());
        (r, start.elapsed())
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while !waiting.is_finished() {
        if Instant::now() >= deadline {
            stopped.kill9();
            panic!("the receive went on past its deadline");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let (r, took) = waiting.join().unwrap();
    assert!(matches!(r, Err(shmq::Error::Timeout)), "nothing is readable behind the claim: {r:?}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    stopped.kill9();
    let _ = stopped.wait_exit();
}

/// Runs a producer of stream 0 that is killed (a failpoint) inside its sixth message's
/// claim, after its CAS on `tail` and before it writes anything: five messages sent.
#[cfg(feature = "failpoints")]
fn die_inside_the_sixth_claim(name: &str) {
    let mut dying = Child::spawn_env(
        "producer",
        name,
        &[("stream", "0".into()), ("count", "20".into())],
        &[("SHMQ_FAILPOINT", "mpsc-claimed".into()), ("SHMQ_FAILPOINT_SKIP", "5".into())],
    );
    let _ = dying.wait_exit();
    assert_eq!(acks(&dying.remaining_lines()).len(), 5);
}

/// An MPSC producer killed between its claim and its commit, on an `Always` queue nobody
/// reads: the journal passes the dead claim (as a reader would), so the next producer's
/// sends still become durable and return.
#[cfg(feature = "failpoints")]
#[test]
fn a_producer_killed_inside_its_claim_does_not_stop_the_journal() {
    let dir = LogDir::new("dead-claim");
    let q = TestQueue::create("durable-dead-claim", options(&dir, Fsync::Always));
    die_inside_the_sixth_claim(&q.name);
    let mut next = Child::spawn("producer", &q.name, &[("stream", "1".into()), ("count", "20".into())]);
    next.expect("ready");
    next.wait_ok();
    assert_eq!(acks(&next.remaining_lines()).len(), 20);
    let got = drain(&q.name);
    assert_eq!(got.len(), 25, "{got:?}");
}

/// The same dead claim on a `Fsync::Never` queue, read by a consumer that only polls
/// (`try_recv`), with no producer left to journal: a claim stands at its head with nothing
/// written there, and its polls alone pass it once its producer is proven dead; they then
/// read the next producer's messages. (A poll that took "nothing written at the head" for
/// an empty queue would stand before the claim for ever.)
#[cfg(feature = "failpoints")]
#[test]
fn a_polling_consumer_passes_a_dead_producers_claim() {
    let dir = LogDir::new("dead-claim-poll");
    let q = TestQueue::create("durable-dead-claim-poll", options(&dir, Fsync::Never));
    let mut rx = Consumer::open(&q.name).unwrap();
    assert!(rx.try_recv().unwrap().is_none());
    die_inside_the_sixth_claim(&q.name);
    let deadline = Instant::now() + common::OP_TIMEOUT;
    let mut got = Vec::new();
    let mut poll = |got: &mut Vec<(u32, u32)>| match rx.try_recv().unwrap() {
        Some(m) => got.push(check(&m)),
        None => {
            assert!(Instant::now() < deadline, "stuck behind the dead claim after {got:?}");
            std::thread::sleep(Duration::from_millis(1));
        }
    };
    // The dead claim is the last thing in the ring: passed when the consumer stands at the
    // producers' position.
    let passed = |name: &str| {
        let s = Queue::inspect(name).unwrap();
        s.subscriptions.iter().find(|d| d.name == Subscription::DEFAULT).unwrap().position == s.tail
    };
    while got.len() < 5 || !passed(&q.name) {
        poll(&mut got);
    }
    let mut next = Child::spawn("producer", &q.name, &[("stream", "1".into()), ("count", "20".into())]);
    next.expect("ready");
    next.wait_ok();
    while got.len() < 25 {
        poll(&mut got);
    }
    let want: Vec<_> = (0..5).map(|s| (0, s)).chain((0..20).map(|s| (1, s))).collect();
    assert_eq!(got, want, "everything committed, once, in order");
    assert!(rx.try_recv().unwrap().is_none());
}

/// A sync that fails (EIO, injected) makes the queue read-only for good: the sender gets
/// `Error::Log`, later sends from any process too, and what was synced before stays
/// readable.
#[cfg(feature = "failpoints")]
#[test]
fn a_failed_sync_makes_the_queue_read_only_and_keeps_what_was_synced_readable() {
    let dir = LogDir::new("sync-fails");
    let q = TestQueue::create("durable-sync-fails", options(&dir, Fsync::Always));
    let mut first = Child::spawn("producer", &q.name, &[("stream", "0".into()), ("count", "10".into())]);
    first.expect("ready");
    first.wait_ok();
    let mut failing = Child::spawn_env(
        "producer",
        &q.name,
        &[("stream", "1".into()), ("count", "10".into())],
        &[("SHMQ_FAILPOINT", "journal-sync-fails".into())],
    );
    let (status, _) = failing.wait_exit();
    assert!(!status.success(), "the send under a failing sync must fail");
    let lines = failing.remaining_lines();
    assert!(acks(&lines).is_empty(), "nothing was acknowledged: {lines:?}");
    let d = Queue::inspect(&q.name).unwrap().durable.unwrap();
    assert!(d.failed, "{d:?}");
    let mut tx = Producer::open(&q.name).unwrap();
    assert!(matches!(tx.send(b"late"), Err(shmq::Error::Log(_))), "read-only from then on");
    let got = drain(&q.name);
    let synced: Vec<u32> = got.iter().filter(|g| g.0 == 0).map(|g| g.1).collect();
    assert_eq!(synced, (0..10).collect::<Vec<_>>(), "what was synced stays readable");
    assert!(got.iter().all(|g| g.0 == 0), "nothing unsynced is shown: {got:?}");
}

/// A producer whose process may not grow files (`RLIMIT_FSIZE`) cannot create the next log
/// segment: its send fails with `NoSpace` (no `SIGXFSZ`), and another producer then writes
/// the log and loses nothing acknowledged.
#[test]
fn a_full_disk_is_no_space_for_the_sender_and_the_queue_goes_on() {
    let dir = LogDir::new("nospace");
    let q = TestQueue::create("durable-nospace", options(&dir, Fsync::Always));
    let mut limited = Child::spawn("limited", &q.name, &[]);
    limited.expect("nospace");
    limited.wait_ok();
    let mut next = Child::spawn("producer", &q.name, &[("stream", "2".into()), ("count", "20".into())]);
    next.expect("ready");
    next.wait_ok();
    assert_eq!(acks(&next.remaining_lines()).len(), 20);
    let got = drain(&q.name);
    assert_eq!(got.iter().filter(|g| g.0 == 2).count(), 20);
}

/// The `limited` role: sends under a 4 KiB file-size limit until `NoSpace`. `SIGXFSZ` is
/// ignored, as a process that sets such a limit does: writes past it then fail with EFBIG.
fn limited_producer(queue: &str) {
    // SAFETY: setting a signal's disposition to ignore, before any other thread exists
    // that could depend on it.
    unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    let lim = rustix::process::Rlimit { current: Some(4096), maximum: None };
    rustix::process::setrlimit(rustix::process::Resource::Fsize, lim).expect("setrlimit");
    let mut tx = Producer::open_with(queue, Wait::Block).expect("open");
    match tx.send_timeout(&msg(5, 0), common::OP_TIMEOUT) {
        Err(shmq::Error::NoSpace) => common::say("nospace"),
        other => panic!("expected NoSpace, got {other:?}"),
    }
}

/// Shared memory is untrusted: a ring start (`base`, line 7) scribbled above the producers'
/// position is refused with `Corrupt` when a consumer attaches, not walked through the log.
#[test]
fn a_scribbled_ring_start_is_corrupt_not_a_walk_through_the_log() {
    let dir = LogDir::new("hostile-base");
    let q = TestQueue::create("durable-hostile-base", options(&dir, Fsync::Never));
    let mut tx = Producer::open(&q.name).unwrap();
    tx.send(&msg(1, 0)).unwrap();
    drop(tx);
    const OFF_DURABLE_BASE: u64 = 896 + 88; // docs/LAYOUT.md, line 7
    q.raw().write_u64(OFF_DURABLE_BASE, 1 << 60);
    assert!(matches!(Consumer::open(&q.name), Err(shmq::Error::Corrupt(_))));
}

/// A wait for an id above everything sent times out (another producer may still send it):
/// it never spins on past its deadline holding the journal role (it did, at 100% CPU, when
/// nobody else held the role). Run in a thread under a watchdog, so that a regression fails
/// rather than hangs.
#[test]
fn waiting_for_an_id_not_sent_yet_times_out() {
    for fsync in [Fsync::Always, Fsync::Never] {
        let dir = LogDir::new(&format!("unsent-{fsync:?}"));
        let q = TestQueue::create(
            &format!("unsent-{fsync:?}"),
            Options::new().capacity(1 << 16).max_message(1024).durable(&dir.0).fsync(fsync),
        );
        let mut tx = Producer::open(&q.name).unwrap();
        let id = tx.send(b"the only one").unwrap();
        tx.wait_durable(id, Some(common::OP_TIMEOUT)).expect("a sent message becomes durable");
        let waiter = std::thread::spawn(move || {
            let start = Instant::now();
            let r = tx.wait_durable(id + 8 * 1000, Some(Duration::from_millis(100)));
            (r, start.elapsed())
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        while !waiter.is_finished() {
            assert!(Instant::now() < deadline, "{fsync:?}: wait_durable spun past its deadline");
            std::thread::sleep(Duration::from_millis(10));
        }
        let (r, took) = waiter.join().unwrap();
        assert!(matches!(r, Err(shmq::Error::Timeout)), "{fsync:?}: {r:?}");
        assert!(took >= Duration::from_millis(100), "{fsync:?}: returned early, after {took:?}");
    }
}

/// The same under steady traffic from another process that never journals: every round of
/// the waiter's journaling then moves `durable`, and it used to lead again and again without
/// looking at its deadline, for as long as the traffic lasted.
/// (A ring of 16 MiB, so that the traffic never finds it full and never journals itself.)
/// Run in a thread under a watchdog, so that a regression fails rather than hangs.
#[test]
fn waiting_for_an_id_not_sent_yet_times_out_under_steady_traffic() {
    let dir = LogDir::new("unsent-traffic");
    let q = TestQueue::create("unsent-traffic", options(&dir, Fsync::Always).capacity(16 << 20));
    let mut flood = Child::spawn("flood", &q.name, &[]);
    flood.expect("ready");
    let mut tx = Producer::open(&q.name).unwrap();
    let id = tx.send(b"mine").unwrap();
    let waiter = std::thread::spawn(move || {
        let start = Instant::now();
        let r = tx.wait_durable(id + (1 << 40), Some(Duration::from_millis(200)));
        (r, start.elapsed())
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while !waiter.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    flood.hang_up();
    flood.wait_ok();
    assert!(waiter.is_finished(), "wait_durable went on 10 s past a 200 ms timeout");
    let (r, took) = waiter.join().unwrap();
    assert!(matches!(r, Err(shmq::Error::Timeout)), "{r:?}");
    println!("timed out after {took:?} (timeout 200 ms)");
}

/// Readers of an `Always` queue see only what is synced, so the sync wakes them, not the
/// sends: a default consumer (`Adaptive`) and a member of a subscription (`Block`), each
/// asleep in its own process, sleep through 100 unsynced sends that make no wake call at
/// all, then the sync this process leads wakes both, and they read every message. Then 30
/// rounds of one message and its sync: each reader has it a median of well under 10 ms
/// later. (Such readers also look every 50 ms unwoken, in case a journaler died between
/// its sync and its wake: without the sync's wake the median would be about 25 ms.)
#[test]
fn under_always_sleeping_readers_are_woken_by_the_sync_not_by_the_sends() {
    let dir = LogDir::new("woken");
    let q = TestQueue::create("durable-woken", options(&dir, Fsync::Always).mode(Mode::Spsc));
    Subscription::create(&q.name, "audit", SubscriptionOptions::new()).expect("create the subscription");
    let (n, rounds) = (100u32, 30u32);
    let count = (n + rounds).to_string();
    let mut readers = [
        Child::spawn("reader", &q.name, &[("count", count.clone()), ("wait", "adaptive".into())]),
        Child::spawn("reader", &q.name, &[("count", count), ("wait", "block".into()), ("sub", "audit".into())]),
    ];
    for r in &mut readers {
        let tid: i32 = r.expect("ready").parse().expect("a thread id");
        r.wait_in_shared_futex(tid);
    }
    let mut tx = Producer::open_with(&q.name, Wait::Block).expect("open the producer");
    let mut last = 0;
    for seq in 0..n {
        last = tx.send_nowait(&msg(7, seq)).expect("send_nowait");
    }
    for r in &mut readers {
        assert_eq!(r.try_line(Duration::from_millis(200)), None, "a reader saw an unsynced message");
    }
    let sent = Queue::inspect(&q.name).expect("inspect").sent;
    assert_eq!(sent.wake_calls, 0, "the producer woke readers for messages they cannot read yet");
    tx.wait_durable(last, Some(common::OP_TIMEOUT)).expect("wait_durable");
    for r in &mut readers {
        for seq in 0..n {
            assert_eq!(r.expect("got"), seq.to_string());
        }
    }
    let mut delays = vec![Vec::new(), Vec::new()];
    for seq in n..n + rounds {
        let id = tx.send_nowait(&msg(7, seq)).expect("send_nowait");
        tx.wait_durable(id, Some(common::OP_TIMEOUT)).expect("wait_durable");
        let synced = Instant::now();
        for (r, d) in readers.iter_mut().zip(&mut delays) {
            assert_eq!(r.expect("got"), seq.to_string());
            d.push(synced.elapsed());
        }
    }
    for ((r, mut d), who) in readers.iter_mut().zip(delays).zip(["consumer (adaptive)", "member (block)"]) {
        r.wait_ok();
        d.sort();
        let median = common::percentile(&d, 50.0);
        println!("{who}: message read {median:?} after its sync (median of {rounds}), max {:?}", d[d.len() - 1]);
        assert!(median < Duration::from_millis(10), "a reader was not woken by the sync: median {median:?}");
    }
}

/// A producer waiting for its sync in one process is woken when another process that led
/// the sync gives the journal role back (the holder's only wake for its waiters). Each of 30
/// rounds: the waiter, in its own process, waits for the id the next message will have and
/// sleeps; this process sends that message and leads its sync; the waiter says so a median
/// of well under 10 ms later. (Waiters also look every 50 ms unwoken, in case a holder died
/// before its wake: without the wake the median was 47 ms.)
#[test]
fn a_producer_waiting_for_its_sync_is_woken_when_the_holder_gives_the_role_back() {
    let dir = LogDir::new("role-wake");
    let q = TestQueue::create("durable-role-wake", options(&dir, Fsync::Always));
    let mut waiter = Child::spawn("waiter", &q.name, &[]);
    let tid: i32 = waiter.expect("ready").parse().expect("a thread id");
    let mut tx = Producer::open_with(&q.name, Wait::Block).expect("open the producer");
    // Records of equal messages are equally long: the next id is the last one plus that.
    let a = tx.send(&msg(5, 0)).expect("send");
    let size = tx.send(&msg(5, 0)).expect("send") - a;
    let mut last = a + size;
    let rounds = 30;
    let mut delays = Vec::new();
    for _ in 0..rounds {
        let next = last + size;
        waiter.tell(&format!("wait {next}"));
        waiter.wait_in_shared_futex(tid);
        let id = tx.send_nowait(&msg(5, 0)).expect("send_nowait");
        assert_eq!(id, next, "the waiter waits for the id this message got");
        tx.wait_durable(id, Some(common::OP_TIMEOUT)).expect("wait_durable");
        let synced = Instant::now();
        assert_eq!(waiter.expect("synced"), "");
        delays.push(synced.elapsed());
        last = id;
    }
    delays.sort();
    let median = common::percentile(&delays, 50.0);
    println!(
        "waiter woken {median:?} after the sync was led elsewhere (median of {rounds}), max {:?}",
        delays[rounds - 1]
    );
    assert!(median < Duration::from_millis(10), "the waiter was not woken: median {median:?}");
    waiter.hang_up();
    waiter.wait_ok();
}

/// `Config::id_space` names the space of a queue's ids: a durable queue keeps it across a
/// restore from its log (its ids go on); a queue made anew under the same name (its ids start
/// over) gets another.
#[test]
fn a_restore_keeps_the_id_space_and_a_queue_made_anew_gets_another() {
    let dir = LogDir::new("id-space");
    let q = TestQueue::create("durable-id-space", options(&dir, Fsync::Never));
    let mut tx = Producer::open(&q.name).unwrap();
    let before = tx.config().id_space();
    assert_eq!(before.len(), 32, "a log identity in hex: {before}");
    let id = tx.send(b"one").unwrap();
    drop(tx);
    simulate_restart(&q.name);
    Queue::open_or_create(&q.name, options(&dir, Fsync::Never)).unwrap();
    let mut tx = Producer::open(&q.name).unwrap();
    assert_eq!(tx.config().id_space(), before, "a restore keeps the id space");
    assert!(tx.send(b"two").unwrap() > id, "and the ids go on");
    drop(tx);
    // Volatile: the creation time, another for a queue made again.
    let v = TestQueue::create("volatile-id-space", Options::new());
    let first = Queue::inspect(&v.name).unwrap().config.id_space();
    Queue::remove(&v.name).unwrap();
    std::thread::sleep(Duration::from_millis(2));
    Queue::create(&v.name, Options::new()).unwrap();
    assert_ne!(Queue::inspect(&v.name).unwrap().config.id_space(), first);
}

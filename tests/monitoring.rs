//! Monitoring, run for real: stuck and dead participants (other processes, stopped and
//! killed), `shmq stat --format prometheus` checked by `promtool check metrics` for a queue
//! in every state, `shmq exporter` scraped over HTTP on loopback while another process
//! creates, uses and removes queues, and `shmq top` driven in a real terminal (tmux).
//!
//! Every wait is bounded by the watchdog; no test asserts an upper bound on time (the
//! figures the issue asks for are printed, and measured in the README's commands).

#![cfg(feature = "cli")]

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Child, OP_TIMEOUT, TestQueue, WATCHDOG};
use rustix::process::Signal;
use serde_json::Value;
use shmq::{Consumer, Error, Options, Producer, Progress, Queue, Subscription, SubscriptionOptions, Wait, Watch};

const BIN: &str = env!("CARGO_BIN_EXE_shmq");

#[test]
fn child_role() {
    common::run_child(|role, queue| match role {
        // Receives until the queue is removed or nothing comes for OP_TIMEOUT; says `ready`
        // once attached and `got N` after each message.
        "consumer" => {
            let mut rx = Consumer::open_with(queue, Wait::Block).expect("open the consumer");
            common::say("ready");
            let mut n = 0u64;
            loop {
                match rx.recv_timeout(OP_TIMEOUT) {
                    Ok(_) => {
                        n += 1;
                        common::say(&format!("got {n}"));
                    }
                    Err(Error::Closed) | Err(Error::Timeout) => break,
                    Err(e) => panic!("consumer: {e}"),
                }
            }
        }
        // Takes a message every `delay_ms` milliseconds: slow, but never stuck.
        "slow" => {
            let delay = Duration::from_millis(common::arg("delay_ms"));
            let mut rx = Consumer::open_with(queue, Wait::Block).expect("open the consumer");
            common::say("ready");
            while let Ok(m) = rx.recv_timeout(OP_TIMEOUT) {
                drop(m);
                std::thread::sleep(delay);
            }
        }
        // Joins subscription `sub` and takes what comes until the subscription or the queue
        // is removed (or nothing comes for OP_TIMEOUT).
        "member" => {
            let mut rx =
                Consumer::subscribe_with(queue, &common::arg::<String>("sub"), Wait::Block).expect("subscribe");
            common::say("joined");
            while rx.recv_timeout(OP_TIMEOUT).is_ok() {}
        }
        // Joins subscription `sub`, takes one message and keeps it (never asks for the next):
        // a member holding messages without progress, no signal needed.
        "holder" => {
            let mut rx =
                Consumer::subscribe_with(queue, &common::arg::<String>("sub"), Wait::Block).expect("subscribe");
            common::say("joined");
            let m = rx.recv_timeout(OP_TIMEOUT).expect("one message");
            common::say("holding");
            // Until the parent hangs up.
            let _ = common::hear();
            drop(m);
        }
        // Sends and receives on each queue of `queues` (comma-separated) until stdin closes,
        // `rate` messages a second each, so that `top` shows live rates.
        "traffic" => {
            let names: String = common::arg("queues");
            let rate: u64 = common::arg("rate");
            let names: Vec<String> = names.split(',').map(str::to_owned).collect();
            let mut txs: Vec<Producer> = names.iter().map(|q| Producer::open(q).expect("producer")).collect();
            let mut rxs: Vec<Consumer> = names.iter().map(|q| Consumer::open(q).expect("consumer")).collect();
            let (stop_tx, stop) = std::sync::mpsc::channel::<()>();
            std::thread::spawn(move || {
                let _ = common::hear();
                let _ = stop_tx.send(());
            });
            common::say("flowing");
            let tick = Duration::from_micros(1_000_000 / rate.max(1));
            let started = Instant::now();
            while stop.try_recv().is_err() && started.elapsed() < WATCHDOG {
                for (tx, rx) in txs.iter_mut().zip(rxs.iter_mut()) {
                    tx.send_timeout(&[7u8; 100], OP_TIMEOUT).expect("send");
                    rx.recv_timeout(OP_TIMEOUT).expect("recv");
                }
                std::thread::sleep(tick);
            }
        }
        // Creates, uses and removes queues `prefix-0..` for `rounds` rounds: each round makes
        // a queue, sends and receives with handles that come and go, and removes the queue
        // of two rounds before. Says `round N` after each.
        "churn" => {
            let prefix: String = common::arg("prefix");
            let rounds: u64 = common::arg("rounds");
            for r in 0..rounds {
                let q = format!("{prefix}-{}", r % 4);
                let _ = Queue::remove(&q);
                Queue::create(&q, Options::new().capacity(64 << 10).max_message(1024)).expect("create");
                let mut rx = Consumer::open(&q).expect("consumer");
                for k in 0..5 {
                    let mut tx = Producer::open(&q).expect("producer");
                    for i in 0..50u32 {
                        tx.send_timeout(&(i + k).to_le_bytes(), OP_TIMEOUT).expect("send");
                    }
                    drop(tx);
                    for _ in 0..40 {
                        rx.recv_timeout(OP_TIMEOUT).expect("recv");
                    }
                    std::thread::sleep(Duration::from_millis(3));
                }
                drop(rx);
                let old = format!("{prefix}-{}", (r + 2) % 4);
                let _ = Queue::remove(&old);
                common::say(&format!("round {r}"));
            }
            for i in 0..4 {
                let _ = Queue::remove(&format!("{prefix}-{i}"));
            }
        }
        other => panic!("unknown role {other}"),
    });
}

// ---------------------------------------------------------------------------------------
// Helpers.

/// Runs `shmq ARGS` to its end (bounded by the watchdog); its stdout, and its exit status.
fn shmq(args: &[&str]) -> (String, i32) {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run shmq");
    let deadline = Instant::now() + WATCHDOG;
    loop {
        if child.try_wait().expect("waitpid").is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("shmq {args:?} ran past the watchdog");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let out = child.wait_with_output().expect("output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.is_empty() || out.status.success(), "shmq {args:?}: {stderr}");
    (String::from_utf8(out.stdout).expect("utf-8 output"), out.status.code().unwrap_or(-1))
}

fn shmq_ok(args: &[&str]) -> String {
    let (out, code) = shmq(args);
    assert_eq!(code, 0, "shmq {args:?} failed; output: {out}");
    out
}

/// Where `promtool` is: required in CI (.ci/run installs it), skipped with a note elsewhere.
fn promtool() -> Option<&'static str> {
    let found = Command::new("promtool").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status();
    if found.is_ok_and(|s| s.success()) {
        return Some("promtool");
    }
    assert!(std::env::var_os("CI").is_none(), "promtool is missing (.ci/run installs Debian's prometheus package)");
    eprintln!("promtool not installed: exposition not checked by it here (CI checks it)");
    None
}

/// `promtool check metrics` on `text`: it must pass with nothing to say.
fn promtool_check(text: &str, what: &str) {
    let Some(tool) = promtool() else { return };
    let mut child = Command::new(tool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().expect("promtool output");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "promtool on {what}: {said}\n--- exposition:\n{text}");
}

/// One sample: metric name, labels, value.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

impl Sample {
    fn label(&self, k: &str) -> Option<&str> {
        self.labels.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
    }

    /// Name and labels, as written.
    fn series(&self) -> String {
        let l: Vec<String> = self.labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
        format!("{}{{{}}}", self.name, l.join(","))
    }
}

/// Parses an exposition strictly (our own subset of format 0.0.4): every sample's family has
/// `# HELP` and `# TYPE` before it, each family once, names and values well formed.
fn parse_exposition(text: &str) -> Vec<Sample> {
    let mut types: HashMap<String, String> = HashMap::new();
    let mut helped: Vec<String> = Vec::new();
    let mut done: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap().to_owned();
            assert!(!helped.contains(&name), "family {name} declared twice");
            helped.push(name.clone());
            if !current.is_empty() {
                done.push(std::mem::take(&mut current));
            }
            current = name;
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, ty) = rest.split_once(' ').expect("# TYPE name type");
            assert!(matches!(ty, "counter" | "gauge"), "type {ty}");
            assert_eq!(name, current, "# TYPE right after its # HELP");
            types.insert(name.to_owned(), ty.to_owned());
            continue;
        }
        assert!(!line.starts_with('#') && !line.is_empty(), "unexpected line {line:?}");
        let (series, value) = line.rsplit_once(' ').expect("series value");
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (n, l.strip_suffix('}').expect("closing brace")),
            None => (series, ""),
        };
        assert!(
            name.starts_with("shmq_") && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "metric name {name}"
        );
        assert_eq!(name, current, "sample {line:?} outside its family (or before its # HELP)");
        assert!(types.contains_key(name), "no # TYPE for {name}");
        if types[name] == "counter" {
            assert!(name.ends_with("_total"), "counter {name} without _total");
        }
        let mut parsed = Vec::new();
        if !labels.is_empty() {
            for kv in labels.split("\",") {
                let (k, v) = kv.split_once("=\"").expect("label=\"value\"");
                parsed.push((k.to_owned(), v.trim_end_matches('"').to_owned()));
            }
        }
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("value of {line:?}"));
        samples.push(Sample { name: name.to_owned(), labels: parsed, value });
    }
    samples
}

fn find<'a>(samples: &'a [Sample], name: &str, labels: &[(&str, &str)]) -> Vec<&'a Sample> {
    samples.iter().filter(|s| s.name == name && labels.iter().all(|(k, v)| s.label(k) == Some(v))).collect()
}

/// Polls `f` every few milliseconds until it returns `Some`, bounded by the watchdog.
fn until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WATCHDOG;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn consumer_progress(s: &shmq::Snapshot, pid: u32) -> Option<(bool, Progress)> {
    s.participants.iter().find(|p| p.pid == pid).map(|p| (p.alive, p.progress))
}

// ---------------------------------------------------------------------------------------
// Stuck and dead.

#[test]
fn a_stopped_consumer_on_a_non_empty_queue_is_flagged_stuck_after_the_threshold_and_never_dead() {
    let q = TestQueue::create("stuck", Options::new().capacity(64 << 10).max_message(1024));
    let mut c = Child::spawn("consumer", &q.name, &[]);
    c.expect("ready");
    let mut tx = Producer::open(&q.name).unwrap();
    tx.send(b"first").unwrap();
    c.expect("got 1");
    c.signal(Signal::STOP);
    c.wait_stopped();
    for _ in 0..10 {
        tx.send(b"waiting for a stopped consumer").unwrap();
    }
    let threshold = Duration::from_secs(1);
    let mut watch = Watch::new(threshold);
    let first_look = Instant::now();
    let s = watch.inspect(&q.name).unwrap();
    assert_eq!(consumer_progress(&s, c.pid()), Some((true, Progress::Unknown)), "a first look judges nothing");
    let stuck_after = until("the stopped consumer is flagged stuck", || {
        let s = watch.inspect(&q.name).unwrap();
        let (alive, progress) = consumer_progress(&s, c.pid()).expect("the consumer is registered");
        assert!(alive, "a stopped consumer was reported dead");
        assert!(!matches!(progress, Progress::Moving), "a stopped consumer moved? {progress:?}");
        progress.is_stuck().then(|| first_look.elapsed())
    });
    assert!(stuck_after >= threshold, "flagged stuck after {stuck_after:?}, before the threshold");
    eprintln!("stopped consumer flagged stuck {stuck_after:?} after the first look (threshold {threshold:?})");

    // The tools say the same: stat (text, JSON, Prometheus), top --once --json.
    let text = shmq_ok(&["stat", &q.name, "--stuck-after", "1s"]);
    assert!(text.contains(" stuck "), "stat text: {text}");
    let j: Value = serde_json::from_str(&shmq_ok(&["stat", &q.name, "--json", "--stuck-after", "1s"])).unwrap();
    let p = j["participants"].as_array().unwrap().iter().find(|p| p["pid"] == c.pid()).cloned().unwrap();
    assert_eq!(p["state"], "stuck", "{p}");
    assert!(p["stalled_s"].as_f64().unwrap() >= 1.0, "{p}");
    assert_eq!(j["stuck_after_s"], 1.0);
    let prom = shmq_ok(&["stat", &q.name, "--format", "prometheus", "--stuck-after", "1s"]);
    promtool_check(&prom, "a queue with a stuck consumer");
    let samples = parse_exposition(&prom);
    let pid = c.pid().to_string();
    let stuck = find(&samples, "shmq_participant_stuck", &[("pid", &pid), ("subscription", "default")]);
    assert_eq!(stuck.len(), 1);
    assert_eq!(stuck[0].value, 1.0);
    assert_eq!(find(&samples, "shmq_participants", &[("role", "consumer"), ("state", "stuck")])[0].value, 1.0);
    assert_eq!(find(&samples, "shmq_participant_alive", &[("pid", &pid)])[0].value, 1.0);
    let top: Value = serde_json::from_str(&shmq_ok(&[
        "top",
        &q.name,
        "--once",
        "--json",
        "--interval",
        "1500ms",
        "--stuck-after",
        "1s",
    ]))
    .unwrap();
    assert_eq!(top["queues"][0]["consumers"]["stuck"], 1, "{top}");

    // Going on again, it takes the messages and is no longer stuck.
    c.signal(Signal::CONT);
    for n in 2..=11 {
        c.expect(&format!("got {n}"));
    }
    let s = watch.inspect(&q.name).unwrap();
    assert_eq!(consumer_progress(&s, c.pid()), Some((true, Progress::Moving)));
    drop(tx);
    Queue::remove(&q.name).unwrap();
    c.wait_ok();
}

#[test]
fn a_member_holding_a_claim_without_progress_is_flagged_stuck() {
    let q = TestQueue::create("holder", Options::new().capacity(64 << 10).max_message(1024));
    Subscription::create(&q.name, "audit", SubscriptionOptions::new()).unwrap();
    let mut c = Child::spawn("holder", &q.name, &[("sub", "audit".into())]);
    c.expect("joined");
    let mut tx = Producer::open(&q.name).unwrap();
    for _ in 0..5 {
        tx.send(b"audit me").unwrap();
    }
    c.expect("holding");
    let mut watch = Watch::new(Duration::from_millis(500));
    let member = until("the holding member is flagged stuck", || {
        let s = watch.inspect(&q.name).unwrap();
        let sub = s.subscriptions.iter().find(|x| x.name == "audit").expect("the subscription");
        let m = sub.members.iter().find(|m| m.pid == c.pid()).expect("the member").clone();
        assert!(m.alive);
        m.progress.is_stuck().then_some(m)
    });
    assert!(member.progress.stalled_for() >= Duration::from_millis(500));
    let j: Value = serde_json::from_str(&shmq_ok(&["stat", &q.name, "--json", "--stuck-after", "600ms"])).unwrap();
    let audit = j["subscriptions"].as_array().unwrap().iter().find(|s| s["name"] == "audit").cloned().unwrap();
    assert_eq!(audit["members"][0]["state"], "stuck", "{audit}");
    c.hang_up();
    c.wait_ok();
}

#[test]
fn a_slow_consumer_behind_a_backlog_and_a_slow_member_are_never_flagged_stuck() {
    let q = TestQueue::create("not-stuck", Options::new().capacity(64 << 10).max_message(1024));
    Subscription::create(&q.name, "work", SubscriptionOptions::new()).unwrap();
    let mut slow = Child::spawn("slow", &q.name, &[("delay_ms", "150".into())]);
    slow.expect("ready");
    let mut member = Child::spawn("member", &q.name, &[("sub", "work".into()), ("delay_ms", "150".into())]);
    member.expect("joined");
    let mut tx = Producer::open(&q.name).unwrap();
    // A backlog: each takes one message every 150 ms, far below the threshold, for seconds.
    for _ in 0..60 {
        tx.send(b"backlog").unwrap();
    }
    let threshold = Duration::from_millis(1500);
    let mut watch = Watch::new(threshold);
    let t0 = Instant::now();
    let mut judged = 0;
    let mut longest = Duration::ZERO;
    // Three thresholds' worth of looks.
    while t0.elapsed() < threshold * 3 {
        let s = watch.inspect(&q.name).unwrap();
        assert!(s.messages > 0, "the slow consumer caught up: no backlog left to judge it against");
        for p in &s.participants {
            assert!(p.alive, "{p:?}");
            assert!(!p.progress.is_stuck(), "flagged stuck after {:?}: {p:?}", t0.elapsed());
            judged += usize::from(p.progress != Progress::Unknown);
            longest = longest.max(p.progress.stalled_for());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(judged > 0);
    eprintln!("longest stall seen of a consumer and a member taking one message every 150 ms: {longest:?}");
    drop(tx);
    Queue::remove(&q.name).unwrap();
    slow.wait_ok();
    member.wait_ok();
}

#[test]
fn a_killed_consumer_is_flagged_dead_at_the_first_look_after_its_death() {
    let q = TestQueue::create("dead", Options::new().capacity(64 << 10).max_message(1024));
    let mut c = Child::spawn("consumer", &q.name, &[]);
    c.expect("ready");
    let mut tx = Producer::open(&q.name).unwrap();
    tx.send(b"one").unwrap();
    c.expect("got 1");
    let pid = c.pid();
    let mut watch = Watch::new(Duration::from_secs(5));
    let s = watch.inspect(&q.name).unwrap();
    assert_eq!(consumer_progress(&s, pid).map(|x| x.0), Some(true));
    let t_kill = Instant::now();
    c.signal(Signal::KILL);
    let (_, exited) = c.wait_exit();
    // The very first look after the exit shows it dead: no watching, no grace period.
    let s = watch.inspect(&q.name).unwrap();
    let seen = Instant::now();
    assert_eq!(consumer_progress(&s, pid).map(|x| x.0), Some(false), "dead consumer shown alive");
    eprintln!("kill -9 to dead in a snapshot: {:?} (exit seen {:?} after the signal)", seen - t_kill, exited - t_kill);
    let j: Value = serde_json::from_str(&shmq_ok(&["stat", &q.name, "--json"])).unwrap();
    assert_eq!(j["participants"][0]["state"], "dead", "{j}");
    let prom = shmq_ok(&["stat", &q.name, "--format", "prometheus"]);
    promtool_check(&prom, "a queue with a dead consumer");
    let samples = parse_exposition(&prom);
    assert_eq!(find(&samples, "shmq_participant_alive", &[("pid", &pid.to_string())])[0].value, 0.0);
    assert_eq!(find(&samples, "shmq_participants", &[("role", "consumer"), ("state", "dead")])[0].value, 1.0);
    // One look cannot judge stuck: the family is left out rather than claim "not stuck".
    assert!(find(&samples, "shmq_participant_stuck", &[]).is_empty());
}

// ---------------------------------------------------------------------------------------
// The exposition, checked by promtool.

#[test]
fn the_exposition_passes_promtool_for_a_queue_in_every_state() {
    // Empty, SPSC.
    let empty =
        TestQueue::create("prom-empty", Options::new().mode(shmq::Mode::Spsc).capacity(4 << 10).max_message(1024));
    let text = shmq_ok(&["stat", &empty.name, "--format", "prometheus"]);
    promtool_check(&text, "an empty queue");
    let s = parse_exposition(&text);
    assert_eq!(find(&s, "shmq_queue_messages", &[])[0].value, 0.0);
    assert_eq!(find(&s, "shmq_queue_info", &[("mode", "spsc")]).len(), 1);

    // Full, MPSC, with a lagging subscription that has a lag limit, and one lapped.
    let full = TestQueue::create("prom-full", Options::new().capacity(1 << 10).max_message(256));
    Subscription::create(&full.name, "slow", SubscriptionOptions::new()).unwrap();
    Subscription::create(&full.name, "lossy", SubscriptionOptions::new().lag_limit(Some(256))).unwrap();
    let mut tx = Producer::open(&full.name).unwrap();
    let mut sent = 0;
    loop {
        match tx.try_send(&[1u8; 100]) {
            Ok(_) => sent += 1,
            Err(Error::Full) => break,
            Err(e) => panic!("{e}"),
        }
        assert!(sent < 1000, "a 1 KiB queue never filled");
    }
    let text = shmq_ok(&["stat", &full.name, "--format", "prometheus"]);
    promtool_check(&text, "a full queue with subscriptions");
    let s = parse_exposition(&text);
    assert!(find(&s, "shmq_queue_fill_ratio", &[])[0].value > 0.8, "{text}");
    assert!(find(&s, "shmq_full_events_total", &[("role", "producer")])[0].value >= 1.0, "{text}");
    assert!(find(&s, "shmq_subscription_lag_bytes", &[("subscription", "slow")])[0].value > 0.0);
    assert_eq!(find(&s, "shmq_subscription_lag_limit_bytes", &[("subscription", "lossy")])[0].value, 256.0);
    assert!(find(&s, "shmq_subscription_lag_limit_bytes", &[("subscription", "slow")]).is_empty());
    drop(tx);

    // A removed queue still mapped (closed), and names needing no escaping are kept as is.
    let closed = TestQueue::create("prom-closed.a_b", Options::new());
    let keep = Producer::open(&closed.name).unwrap();
    let text = shmq_ok(&["stat", &closed.name, "--format", "prometheus"]);
    promtool_check(&text, "a queue with a producer");
    assert_eq!(find(&parse_exposition(&text), "shmq_queue_info", &[("queue", &closed.name)]).len(), 1);
    drop(keep);

    // A durable queue: its log's families, validated by promtool too.
    let dir =
        std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("prom-durable-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let durable = TestQueue::create(
        "prom-durable",
        Options::new().capacity(1 << 16).max_message(1024).durable(&dir).fsync(shmq::Fsync::Always),
    );
    // With a subscription with explicit acks whose member (this process) acked one
    // message, nacked one and holds one.
    let o = SubscriptionOptions::new().ack(shmq::Ack::Explicit);
    Subscription::create(&durable.name, "work", o).unwrap();
    let mut tx = Producer::open(&durable.name).unwrap();
    for _ in 0..10 {
        tx.send(&[7u8; 100]).unwrap();
    }
    let mut member = shmq::Consumer::subscribe(&durable.name, "work").unwrap();
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(member.recv_timeout(std::time::Duration::from_secs(10)).unwrap().id());
    }
    member.ack(ids[0]).unwrap();
    member.nack(ids[1], "later").unwrap();
    let text = shmq_ok(&["stat", &durable.name, "--format", "prometheus"]);
    promtool_check(&text, "a durable queue");
    let s = parse_exposition(&text);
    let q = [("queue", durable.name.as_str())];
    let value = |name: &str| find(&s, name, &q).first().unwrap_or_else(|| panic!("no {name}")).value;
    assert_eq!(value("shmq_log_durable_lag_bytes"), 0.0, "every send returned once synced");
    assert!(value("shmq_log_syncs_total") >= 1.0);
    assert!(value("shmq_log_durable_position_bytes") > 0.0);
    assert!(value("shmq_log_bytes") > 0.0, "the segment files' size");
    let w = [("queue", durable.name.as_str()), ("subscription", "work")];
    let acks = |name: &str| find(&s, name, &w).first().unwrap_or_else(|| panic!("no {name}: {text}")).value;
    assert_eq!(acks("shmq_subscription_in_flight_messages"), 2.0, "one held, one nacked to go again");
    assert_eq!(acks("shmq_subscription_acked_messages_total"), 1.0);
    assert_eq!(acks("shmq_subscription_nacked_messages_total"), 1.0);
    assert_eq!(acks("shmq_subscription_expired_messages_total"), 0.0);
    assert_eq!(acks("shmq_subscription_dead_lettered_messages_total"), 0.0);
    let age = acks("shmq_subscription_oldest_unacked_age_seconds");
    assert!((0.0..60.0).contains(&age), "{age}");
    // An automatic subscription has none of these.
    let d = [("queue", durable.name.as_str()), ("subscription", "default")];
    assert!(find(&s, "shmq_subscription_in_flight_messages", &d).is_empty(), "{text}");
    drop(member);
    let _ = shmq::Queue::remove(&shmq::dlq_name(&durable.name, "work"));
    // top shows the same: the log's size and nothing unsynced.
    let out = shmq_ok(&["top", &durable.name, "--once", "--json"]);
    let j: Value = serde_json::from_str(&out).unwrap();
    let qd = &j["queues"][0];
    assert!(qd["log_bytes"].as_u64().unwrap() > 0, "{qd}");
    assert_eq!(qd["durable_lag_bytes"].as_u64(), Some(0), "{qd}");
    drop((tx, durable));
    let _ = std::fs::remove_dir_all(&dir);

    // A NATS bridge's counters (the file shmq-bridge writes once a second) show in the
    // exposition and in `stat`.
    let bridged = TestQueue::create("prom-bridged", Options::new());
    let file = format!("/dev/shm/shmq-bridge.{}.to-nats.json", bridged.name);
    std::fs::write(
        &file,
        r#"{"queue":"q","direction":"to-nats","pid":1,"updated_unix_ms":1700000000000,"forwarded":42,"redelivered":3,"duplicates":0,"errors":1,"connected":true}"#,
    )
    .unwrap();
    let text = shmq_ok(&["stat", &bridged.name, "--format", "prometheus"]);
    promtool_check(&text, "a queue with a bridge");
    let s = parse_exposition(&text);
    let l = [("queue", bridged.name.as_str()), ("direction", "to-nats")];
    let value = |name: &str| find(&s, name, &l).first().unwrap_or_else(|| panic!("no {name}")).value;
    assert_eq!(value("shmq_bridge_forwarded_messages_total"), 42.0);
    assert_eq!(value("shmq_bridge_redelivered_messages_total"), 3.0);
    assert_eq!(value("shmq_bridge_errors_total"), 1.0);
    assert_eq!(value("shmq_bridge_connected"), 1.0);
    let text = shmq_ok(&["stat", &bridged.name]);
    assert!(text.contains("bridge to-nats: forwarded 42 redelivered 3 duplicates 0 errors 1 connected"), "{text}");
    let _ = std::fs::remove_file(&file);
}

// ---------------------------------------------------------------------------------------
// The exporter over HTTP.

/// The exporter process, killed on drop.
struct Exporter {
    child: std::process::Child,
    addr: String,
}

impl Exporter {
    fn start(args: &[&str]) -> Exporter {
        let mut child = Command::new(BIN)
            .arg("exporter")
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the exporter");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).expect("the exporter's first line");
        let addr = line
            .trim()
            .strip_prefix("shmq exporter: serving http://")
            .and_then(|r| r.strip_suffix("/metrics"))
            .unwrap_or_else(|| panic!("first line {line:?}"))
            .to_owned();
        Exporter { child, addr }
    }

    /// GET `path` over HTTP/1.0: status, headers (lowercase names), body.
    fn get(&self, path: &str) -> (u16, HashMap<String, String>, String) {
        let mut s = TcpStream::connect(&self.addr).expect("connect to the exporter");
        s.set_read_timeout(Some(OP_TIMEOUT)).unwrap();
        write!(s, "GET {path} HTTP/1.0\r\nHost: {}\r\n\r\n", self.addr).unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).expect("read the response");
        let raw = String::from_utf8(raw).expect("utf-8 response");
        let (head, body) = raw.split_once("\r\n\r\n").expect("headers and body");
        let mut lines = head.lines();
        let status: u16 = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
        let headers =
            lines.filter_map(|l| l.split_once(": ")).map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned())).collect();
        (status, headers, body.to_owned())
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_exporter_serves_every_queue_over_http_while_queues_come_and_go() {
    let prefix = format!("t{}-churn", std::process::id());
    let ex = Exporter::start(&["--interval", "50ms"]);
    let (status, headers, _) = ex.get("/nowhere");
    assert_eq!(status, 404);
    assert!(headers["content-type"].starts_with("text/plain"));

    let mut churn = Child::spawn("churn", "", &[("prefix", prefix.clone()), ("rounds", "120".into())]);
    // Per series of a queue (its name and creation time): the last value of each counter.
    let mut last: HashMap<(String, u64, String), f64> = HashMap::new();
    let mut scrapes = 0;
    let mut seen_queues = std::collections::HashSet::new();
    let mut checked_by_promtool = 0;
    let mut done = false;
    while !done {
        // Drain what the churn said without waiting; it ends after its last round.
        if churn.wait_until(Instant::now()).is_some() {
            done = true;
        }
        let (status, headers, body) = ex.get("/metrics");
        assert_eq!(status, 200);
        assert_eq!(headers["content-type"], "text/plain; version=0.0.4; charset=utf-8");
        let samples = parse_exposition(&body);
        scrapes += 1;
        if scrapes % 10 == 1 {
            promtool_check(&body, "a scrape during churn");
            checked_by_promtool += 1;
        }
        let created: HashMap<String, u64> = find(&samples, "shmq_queue_created_timestamp_seconds", &[])
            .iter()
            .map(|s| (s.label("queue").unwrap().to_owned(), (s.value * 1e3) as u64))
            .collect();
        for s in samples.iter().filter(|s| s.name.ends_with("_total") && !s.name.starts_with("shmq_exporter")) {
            let q = s.label("queue").expect("a queue label").to_owned();
            if !q.starts_with(&prefix) {
                continue;
            }
            seen_queues.insert(q.clone());
            let key = (q.clone(), created[&q], s.series());
            if let Some(&before) = last.get(&key) {
                assert!(s.value >= before, "counter {} went back from {before} to {}", s.series(), s.value);
            }
            last.insert(key, s.value);
        }
        // Read-only: the exporter never shows up as a participant.
        let pid = ex.child.id().to_string();
        assert!(find(&samples, "shmq_participant_alive", &[("pid", &pid)]).is_empty());
    }
    churn.wait_ok();
    assert!(seen_queues.len() >= 2, "the scrapes saw queues {seen_queues:?}");
    // The churn removed every queue it made: a scrape now shows none of them.
    let (_, _, body) = ex.get("/metrics");
    let samples = parse_exposition(&body);
    assert!(
        samples.iter().all(|s| !s.label("queue").is_some_and(|q| q.starts_with(&prefix))),
        "removed queues still exported"
    );
    assert!(find(&samples, "shmq_exporter_scrapes_total", &[])[0].value >= f64::from(scrapes));
    eprintln!(
        "{scrapes} scrapes during the churn, {checked_by_promtool} checked by promtool, queues {seen_queues:?}, {} counter series",
        last.len()
    );
}

#[test]
fn the_exporter_flags_stuck_and_dead_consumers_between_scrapes() {
    let q = TestQueue::create("ex-stuck", Options::new().capacity(64 << 10).max_message(1024));
    let ex = Exporter::start(&["--interval", "100ms", "--stuck-after", "1s", &q.name]);
    let mut c = Child::spawn("consumer", &q.name, &[]);
    c.expect("ready");
    let mut tx = Producer::open(&q.name).unwrap();
    c.signal(Signal::STOP);
    c.wait_stopped();
    tx.send(b"for nobody").unwrap();
    let pid = c.pid().to_string();
    let t0 = Instant::now();
    until("the exporter flags the stopped consumer stuck", || {
        std::thread::sleep(Duration::from_millis(200));
        let (_, _, body) = ex.get("/metrics");
        let s = parse_exposition(&body);
        assert_eq!(find(&s, "shmq_participant_alive", &[("pid", &pid)])[0].value, 1.0, "stopped shown dead");
        let stuck = find(&s, "shmq_participant_stuck", &[("pid", &pid)]);
        stuck.first().is_some_and(|x| x.value == 1.0).then_some(())
    });
    assert!(t0.elapsed() >= Duration::from_secs(1));
    c.signal(Signal::KILL);
    c.wait_exit();
    let (_, _, body) = ex.get("/metrics");
    let s = parse_exposition(&body);
    assert_eq!(find(&s, "shmq_participant_alive", &[("pid", &pid)])[0].value, 0.0, "killed consumer not dead");
    promtool_check(&body, "the exporter with a dead consumer");
}

// ---------------------------------------------------------------------------------------
// `top`.

#[test]
fn top_once_json_has_the_documented_shape() {
    let a = TestQueue::create("json-a", Options::new());
    let b = TestQueue::create("json-b", Options::new().mode(shmq::Mode::Spsc));
    Subscription::create(&b.name, "audit", SubscriptionOptions::new()).unwrap();
    let mut tx = Producer::open(&a.name).unwrap();
    tx.send(b"hello").unwrap();
    let out = shmq_ok(&["top", &a.name, &b.name, "--once", "--json", "--interval", "200ms"]);
    let j: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["schema_version"], 1);
    assert!(j["taken_unix_ns"].as_u64().unwrap() > 0);
    assert_eq!(j["interval_s"], 0.2);
    assert_eq!(j["stuck_after_s"], 5.0);
    assert!(j["errors"].as_array().unwrap().is_empty());
    let qs = j["queues"].as_array().unwrap();
    assert_eq!(qs.len(), 2);
    let qa = &qs[0];
    assert_eq!(qa["name"], a.name.as_str());
    assert!(qa["log_bytes"].is_null() && qa["durable_lag_bytes"].is_null(), "a volatile queue has no log");
    for k in ["mode", "capacity", "messages", "used_bytes", "percent_full", "closed"] {
        assert!(!qa[k].is_null(), "{k} missing: {qa}");
    }
    assert_eq!(qa["messages"], 1);
    for k in [
        "sent_msgs_per_s",
        "sent_bytes_per_s",
        "received_msgs_per_s",
        "received_bytes_per_s",
        "full_events_per_s",
        "wait_calls_per_s",
        "wake_calls_per_s",
    ] {
        assert!(qa["rates"][k].is_f64(), "rates.{k}: {qa}");
    }
    for who in ["producers", "consumers"] {
        for k in ["alive", "stuck", "dead"] {
            assert!(qa[who][k].is_u64(), "{who}.{k}: {qa}");
        }
    }
    assert_eq!(qa["producers"]["alive"], 1);
    let p = &qa["participants"][0];
    assert_eq!(p["role"], "producer");
    assert_eq!(p["pid"], std::process::id());
    assert_eq!(p["state"], "alive");
    assert!(p["stalled_s"].is_null() && p["subscription"].is_null() && p["slot"].is_u64());
    let subs = qs[1]["subscriptions"].as_array().unwrap();
    assert_eq!(subs.iter().map(|s| s["name"].as_str().unwrap()).collect::<Vec<_>>(), ["default", "audit"]);
    for k in ["lag_bytes", "lag_messages", "detached", "received_msgs_per_s", "members"] {
        assert!(!subs[1][k].is_null(), "{k}: {}", subs[1]);
    }
}

/// A tmux server of our own (its own socket, one per test), killed on drop.
struct Tmux(String);

impl Tmux {
    fn new(test: &str) -> Option<Tmux> {
        if Command::new("tmux").arg("-V").output().is_err() {
            assert!(std::env::var_os("CI").is_none(), "tmux is missing (.ci/run installs it)");
            eprintln!("tmux not installed: top's terminal view not tested here (CI tests it)");
            return None;
        }
        Some(Tmux(format!("shmq-test-{}-{test}", std::process::id())))
    }

    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux").args(["-L", &self.0]).args(args).output().expect("run tmux");
        assert!(out.status.success(), "tmux {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "top"])
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux").args(["-L", &self.0, "kill-server"]).output();
    }
}

/// The IN/s column of queue `name` on the screen, if its row shows a number there.
fn in_rate(screen: &str, name: &str) -> Option<f64> {
    // "│QUEUE MODE DEPTH FULL IN/s ...": the border, then the columns (as many as fit).
    let mut lines = screen.lines().map(|l| l.trim_start_matches('│'));
    let header = lines.clone().find(|l| l.starts_with("QUEUE") && l.contains("IN/s"))?;
    let col = header.split_whitespace().position(|h| h == "IN/s")?;
    let row = lines.find(|l| l.split_whitespace().next() == Some(name))?;
    let f: Vec<&str> = row.split_whitespace().collect();
    let v = f.get(col)?;
    let (num, scale) = match v.strip_suffix('k') {
        Some(n) => (n, 1e3),
        None => (v.strip_suffix('M').map_or(*v, |n| n), if v.ends_with('M') { 1e6 } else { 1.0 }),
    };
    num.parse::<f64>().ok().map(|x| x * scale)
}

#[test]
fn top_runs_in_a_terminal_shows_live_rates_sorts_resizes_and_quits_with_q() {
    let Some(tmux) = Tmux::new("rates") else { return };
    let a = TestQueue::create("top-a", Options::new());
    let b = TestQueue::create("top-b", Options::new());
    let mut traffic =
        Child::spawn("traffic", "", &[("queues", format!("{},{}", a.name, b.name)), ("rate", "200".into())]);
    traffic.expect("flowing");
    // top's exit status goes to a file (tmux does not always record a dead pane's status).
    let status_file = std::env::temp_dir().join(format!("shmq-top-status-{}", std::process::id()));
    let _ = std::fs::remove_file(&status_file);
    let cmd =
        format!("{BIN} top {} {} --interval 300ms; echo $? > {}; sleep 60", a.name, b.name, status_file.display());
    tmux.run(&["new-session", "-d", "-s", "top", "-x", "150", "-y", "30", &cmd]);
    let screen = until("top shows both queues with live rates", || {
        let s = tmux.screen();
        let live = |n: &str| in_rate(&s, n).is_some_and(|r| r > 0.0);
        (live(&a.name) && live(&b.name)).then_some(s)
    });
    assert!(screen.contains("QUEUE") && screen.contains("sort name"), "{screen}");
    assert!(screen.contains("subscriptions") && screen.contains("stuck and dead"), "{screen}");

    tmux.run(&["send-keys", "-t", "top", "s"]);
    until("s changes the sort column", || tmux.screen().contains("sort depth").then_some(()));
    tmux.run(&["resize-window", "-t", "top", "-x", "110", "-y", "20"]);
    until("top redraws at the new size", || {
        let s = tmux.screen();
        let widest = s.lines().map(|l| l.trim_end().chars().count()).max().unwrap_or(0);
        (widest <= 110 && widest > 80 && s.contains(&a.name)).then_some(())
    });
    tmux.run(&["send-keys", "-t", "top", "q"]);
    let status = until("top exits on q", || std::fs::read_to_string(&status_file).ok().filter(|s| s.ends_with('\n')));
    let _ = std::fs::remove_file(&status_file);
    let screen = tmux.screen();
    assert_eq!(status.trim(), "0", "top's exit status; the terminal after it:\n{screen}");
    // The terminal is given back: the full-screen view is gone.
    assert!(!screen.contains("[q] quit"), "top's view still on the terminal after it quit:\n{screen}");
    traffic.hang_up();
    traffic.wait_ok();
}

/// The title of the table `name` on the screen: "a-b of N" when it scrolls, "" when every
/// row fits.
fn table_range(screen: &str, name: &str) -> Option<String> {
    let line = screen.lines().find(|l| l.starts_with(&format!("┌ {name} ")))?;
    let rest = line.strip_prefix(&format!("┌ {name} "))?;
    Some(rest.split(" ─").next().unwrap_or("").trim_end_matches('─').trim().to_owned())
}

/// The first word of each row of the table that starts with `header` (a row marked as
/// selected counts too).
fn first_words(screen: &str, header: &str) -> Vec<String> {
    let mut rows = Vec::new();
    let mut inside = false;
    for l in screen.lines() {
        let l = l.trim_start_matches('│');
        if l.trim_start().starts_with(header) {
            inside = true;
        } else if inside {
            if l.starts_with('└') {
                break;
            }
            let l = l.strip_prefix("> ").unwrap_or(l);
            rows.extend(l.split_whitespace().next().map(str::to_owned));
        }
    }
    rows
}

#[test]
fn top_shows_long_names_whole_or_cut_in_the_middle_and_scrolls_each_table_with_the_keys() {
    let Some(tmux) = Tmux::new("scroll") else { return };
    // More queues than fit, with names longer than the QUEUE column's minimum (12) that
    // differ only at their end, as queues made in series do.
    let qs: Vec<TestQueue> =
        (0..30).map(|_| TestQueue::create("top-scroll-a-rather-long-name", Options::new())).collect();
    let mut names: Vec<String> = qs.iter().map(|q| q.name.clone()).collect();
    names.sort();
    let cmd = format!("{BIN} top {} --interval 200ms; sleep 60", names.join(" "));
    tmux.run(&["new-session", "-d", "-s", "top", "-x", "130", "-y", "30", &cmd]);
    let screen = until("top shows the first queues, whole names, and that more follow", || {
        let s = tmux.screen();
        let range = table_range(&s, "queues")?;
        (range.starts_with("1-") && range.ends_with(" of 30")).then_some(s)
    });
    let shown = first_words(&screen, "QUEUE ");
    assert!(shown.len() >= 5, "{screen}");
    assert_eq!(shown[..5], names[..5], "the first rows, with whole names:\n{screen}");

    // End: the last queue is on screen; Home: the first again.
    tmux.run(&["send-keys", "-t", "top", "End"]);
    let screen = until("End scrolls the queues to the last one", || {
        let s = tmux.screen();
        table_range(&s, "queues")?.ends_with("-30 of 30").then_some(s)
    });
    let shown = first_words(&screen, "QUEUE ");
    assert_eq!(shown.last(), names.last(), "{screen}");
    assert!(screen.contains(&format!("> {}", names[29])), "the last queue is the selected row:\n{screen}");
    tmux.run(&["send-keys", "-t", "top", "Home"]);
    until("Home scrolls back to the first", || {
        let s = tmux.screen();
        (table_range(&s, "queues")?.starts_with("1-") && s.contains(&format!("> {}", names[0]))).then_some(())
    });
    // Down moves the selection one row; PgDn a page.
    tmux.run(&["send-keys", "-t", "top", "Down"]);
    until("Down selects the next queue", || tmux.screen().contains(&format!("> {}", names[1])).then_some(()));
    tmux.run(&["send-keys", "-t", "top", "PageDown"]);
    until("PgDn moves a page down", || {
        let s = tmux.screen();
        let first: usize = table_range(&s, "queues")?.split('-').next()?.parse().ok()?;
        (first > 1).then_some(())
    });

    // Tab: the keys move the subscriptions table (one "default" per queue); the queues'
    // table stays where it was.
    let queues_before = table_range(&tmux.screen(), "queues").unwrap();
    tmux.run(&["send-keys", "-t", "top", "Tab"]);
    tmux.run(&["send-keys", "-t", "top", "End"]);
    let screen = until("End scrolls the subscriptions after Tab", || {
        let s = tmux.screen();
        table_range(&s, "subscriptions")?.ends_with("-30 of 30").then_some(s)
    });
    assert_eq!(table_range(&screen, "queues").unwrap(), queues_before, "{screen}");

    // Narrow: names are cut in the middle, keeping their distinct ends.
    tmux.run(&["resize-window", "-t", "top", "-x", "70", "-y", "30"]);
    let screen = until("top redraws 70 columns wide", || {
        let s = tmux.screen();
        let widest = s.lines().map(|l| l.trim_end().chars().count()).max().unwrap_or(0);
        (widest <= 70 && first_words(&s, "QUEUE ").iter().any(|w| w.contains('…'))).then_some(s)
    });
    let shown = first_words(&screen, "QUEUE ");
    for w in &shown {
        let (head, tail) = w.split_once('…').unwrap_or_else(|| panic!("{w:?} not cut:\n{screen}"));
        assert!(
            names.iter().any(|n| n.starts_with(head) && n.ends_with(tail)),
            "{w:?} is no queue's start and end:\n{screen}"
        );
    }
    let mut distinct = shown.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), shown.len(), "cut names must stay distinct:\n{screen}");
    tmux.run(&["send-keys", "-t", "top", "q"]);
    until("top quits", || (!tmux.screen().contains("[q] quit")).then_some(()));
}

#[test]
fn top_prints_plain_lines_when_stdout_is_not_a_terminal() {
    let a = TestQueue::create("plain", Options::new());
    let mut c = Child::spawn("consumer", &a.name, &[]);
    c.expect("ready");
    let mut tx = Producer::open(&a.name).unwrap();
    tx.send(b"x").unwrap();
    c.expect("got 1");
    let mut top = Command::new(BIN)
        .args(["top", &a.name, "--interval", "100ms"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(top.stdout.take().unwrap()).lines();
    let mut refreshes = 0;
    let killed = Instant::now();
    c.signal(Signal::KILL);
    c.wait_exit();
    let mut dead_seen = None;
    while refreshes < 50 {
        let line = lines.next().expect("a line").expect("utf-8");
        assert!(!line.contains('\x1b'), "escape codes in plain output: {line:?}");
        if line.contains(&format!(" {} mpsc depth ", a.name)) {
            refreshes += 1;
        }
        if line.contains("DEAD") && dead_seen.is_none() {
            dead_seen = Some(killed.elapsed());
            break;
        }
    }
    let _ = top.kill();
    let _ = top.wait();
    let dead_seen = dead_seen.expect("top never showed the killed consumer dead");
    eprintln!("top (plain, refresh 100ms) showed a kill -9'd consumer dead {dead_seen:?} after the kill");
}

// ---------------------------------------------------------------------------------------
// The Grafana dashboard.

#[test]
fn the_grafana_dashboard_queries_parse_and_use_only_exported_metrics() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/grafana-dashboard.json");
    let d: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut exprs = Vec::new();
    for p in d["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().unwrap() {
            exprs.push(t["expr"].as_str().unwrap().replace("$__rate_interval", "1m").replace("$queue", ".*"));
        }
    }
    assert!(exprs.len() >= 10);
    // Every metric the dashboard names is one the exporter serves (with a queue in it: a
    // producer, a stuck-judged consumer and a subscription).
    let q = TestQueue::create("grafana", Options::new());
    Subscription::create(&q.name, "audit", SubscriptionOptions::new().lag_limit(Some(4096))).unwrap();
    let mut tx = Producer::open(&q.name).unwrap();
    tx.send(b"x").unwrap();
    let ex = Exporter::start(&[&q.name]);
    let mut c = Child::spawn("consumer", &q.name, &[]);
    c.expect("ready");
    c.expect("got 1");
    // The consumer is judged from the exporter's second look at it on.
    let body = until("the exporter judges the consumer", || {
        let (_, _, body) = ex.get("/metrics");
        body.contains("shmq_participant_stuck{").then_some(body)
    });
    let names: std::collections::HashSet<String> = parse_exposition(&body).into_iter().map(|s| s.name).collect();
    for e in &exprs {
        for word in e.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| w.starts_with("shmq_")) {
            assert!(names.contains(word), "the dashboard queries {word}, which the exporter does not serve");
        }
    }
    // promtool parses every expression (as recording rules).
    let Some(tool) = promtool() else { return };
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, e) in exprs.iter().enumerate() {
        rules.push_str(&format!(
            "      - record: dashboard:expr{i}\n        expr: {}\n",
            serde_json::to_string(e).unwrap()
        ));
    }
    let file = std::env::temp_dir().join(format!("shmq-dashboard-rules-{}.yml", std::process::id()));
    std::fs::write(&file, rules).unwrap();
    let out = Command::new(tool).args(["check", "rules"]).arg(&file).output().expect("run promtool");
    let _ = std::fs::remove_file(&file);
    assert!(
        out.status.success(),
        "promtool check rules: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    drop(tx);
    Queue::remove(&q.name).unwrap();
    c.wait_ok();
}

/// What `shmq stat --json` (another process) says of a queue: (depth in messages, used
/// bytes, each subscription's (name, lag bytes)).
fn depth(name: &str) -> (u64, u64, Vec<(String, u64)>) {
    let v: Value = serde_json::from_str(&shmq_ok(&["stat", name, "--json"])).expect("JSON");
    let subs = v["subscriptions"]
        .as_array()
        .expect("subscriptions")
        .iter()
        .map(|s| (s["name"].as_str().unwrap().to_owned(), s["lag_bytes"].as_u64().unwrap()))
        .collect();
    (v["messages"].as_u64().unwrap(), v["used_bytes"].as_u64().unwrap(), subs)
}

/// Without the default subscription, the depth is what the slowest subscription has not
/// read (it was the removed default consumer's, standing still: 100 % full for good); a
/// durable queue's subscription may be far more than a ring behind, and says so.
#[test]
fn depth_without_the_default_subscription_and_a_durable_subscriptions_lag_are_what_is_unread() {
    let q = TestQueue::create("mon-nodefault", Options::new().capacity(1 << 12).max_message(256));
    Subscription::create(&q.name, "work", SubscriptionOptions::new()).unwrap();
    Subscription::remove(&q.name, Subscription::DEFAULT).unwrap();
    let mut tx = Producer::open_with(&q.name, Wait::Block).unwrap();
    let mut rx = Consumer::subscribe_with(&q.name, "work", Wait::Block).unwrap();
    for i in 0..1000u32 {
        tx.send(&i.to_le_bytes()).unwrap();
        assert_eq!(&*rx.recv_timeout(OP_TIMEOUT).unwrap(), &i.to_le_bytes());
    }
    assert_eq!(depth(&q.name), (0, 0, vec![("work".to_owned(), 0)]));
    for i in 0..10u32 {
        tx.send(&i.to_le_bytes()).unwrap();
    }
    let (messages, used, _) = depth(&q.name);
    assert_eq!((messages, used), (10, 10 * 24), "10 records of 24 bytes (a header of 16) unread");
    drop((tx, rx));

    let dir = common::LogDir::new("mon-durable-lag");
    let q = TestQueue::create("mon-durable-lag", Options::new().capacity(1 << 16).max_message(256).durable(&dir.0));
    Subscription::create(&q.name, "audit", SubscriptionOptions::new()).unwrap();
    {
        let mut tx = Producer::open_with(&q.name, Wait::Block).unwrap();
        for i in 0..20_000u32 {
            tx.send(&[i as u8; 24]).unwrap();
        }
    }
    let (_, _, subs) = depth(&q.name);
    let audit = subs.iter().find(|(n, _)| n == "audit").map(|&(_, l)| l).expect("audit listed");
    assert!(audit >= 20_000 * 40, "audit's lag {audit}: 20,000 records of at least 40 bytes, far more than the ring");
}

/// A member that leaves normally with the rest of its batch unread (`shmq recv -n 2`, in a
/// process of its own) is no member any more: the batch waits for the next one, counted in
/// the lag. It was listed as a dead member with pid 0 and nothing received.
#[test]
fn a_member_that_left_is_not_listed_as_a_dead_one() {
    let q = TestQueue::create("mon-left", Options::new());
    Subscription::create(&q.name, "sc", SubscriptionOptions::new()).unwrap();
    let mut tx = Producer::open(&q.name).unwrap();
    for i in 0..5u32 {
        tx.send(format!("m{i}").as_bytes()).unwrap();
    }
    assert_eq!(shmq_ok(&["recv", &q.name, "-s", "sc", "-n", "2"]), "m0\nm1\n");
    let v: Value = serde_json::from_str(&shmq_ok(&["subs", "ls", &q.name, "--json"])).unwrap();
    let sc = v["subscriptions"].as_array().unwrap().iter().find(|s| s["name"] == "sc").unwrap().clone();
    assert_eq!(sc["members"].as_array().unwrap().len(), 0, "{sc}");
    assert_eq!((sc["received"]["messages"].as_u64(), sc["lag_messages"].as_u64()), (Some(2), Some(3)), "{sc}");
    // The rest of the batch goes to the next member.
    assert_eq!(shmq_ok(&["recv", &q.name, "-s", "sc", "-n", "3"]), "m2\nm3\nm4\n");
}

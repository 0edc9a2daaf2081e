//! The README's quick-start pair, run for real: `examples/producer.rs` and
//! `examples/consumer.rs` as two processes on one queue, each started first in turn, and the
//! consumer's order check shown to fail on a wrong message; and `examples/subscriptions.rs`'s
//! demo (a producer, two fan-out subscriptions, two members sharing a third), which starts
//! its roles as processes itself.
//!
//! `cargo test` builds the examples next to the test binaries (`target/<profile>/examples/`);
//! `cargo test --test examples` alone does not, so run `cargo build --examples` first then.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Longest either example may run before the test kills it and fails.
const DEADLINE: Duration = Duration::from_secs(120);

/// The path of a built example, or a failure that says how to build it.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/examples-<hash> -> target/<profile>/examples/<name>
    let dir = exe.parent().and_then(|deps| deps.parent()).expect("test binary in target/<profile>/deps");
    let path = dir.join("examples").join(name);
    assert!(
        path.exists(),
        "{} is not built: `cargo test` builds the examples, `cargo test --test examples` alone does not \
         (run `cargo build --examples` first)",
        path.display()
    );
    path
}

/// A queue name unique to this test process, removed on drop.
struct Name(String);

impl Name {
    fn new(tag: &str) -> Name {
        Name(format!("examples-{}-{tag}", std::process::id()))
    }
}

impl Drop for Name {
    fn drop(&mut self) {
        let _ = shmq::Queue::remove(&self.0);
    }
}

fn spawn(name: &str, args: &[&str]) -> Child {
    Command::new(example(name))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {name}: {e}"))
}

/// Waits for `child`, killing it and failing once [`DEADLINE`] has passed.
fn finish(what: &str, mut child: Child) -> Output {
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("{what} ran past {DEADLINE:?}; stderr: {}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}

#[track_caller]
fn succeeded(what: &str, o: &Output) -> String {
    let (out, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert_eq!(o.status.code(), Some(0), "{what} failed\nstdout: {out}\nstderr: {err}");
    out.into_owned()
}

/// Runs the pair on `queue` with `opts`, the consumer started first or second, and checks
/// that every message arrived in order and the consumer removed the queue.
fn run_pair(queue: &Name, count: u64, opts: &[&str], consumer_first: bool) {
    let count_s = count.to_string();
    let mut common = vec!["--queue", &queue.0, "--count", &count_s];
    common.extend_from_slice(opts);
    let mut consumer_args = common.clone();
    consumer_args.extend_from_slice(&["--timeout-ms", "30000"]);

    let (consumer, producer) = if consumer_first {
        let c = spawn("consumer", &consumer_args);
        (c, spawn("producer", &common))
    } else {
        let p = spawn("producer", &common);
        (spawn("consumer", &consumer_args), p)
    };
    let produced = succeeded("producer", &finish("producer", producer));
    let consumed = succeeded("consumer", &finish("consumer", consumer));
    assert!(produced.contains(&format!("sent {count} messages")), "{produced}");
    assert!(consumed.contains(&format!("received {count} messages")), "{consumed}");
    assert!(consumed.contains("in order"), "{consumed}");
    assert!(
        matches!(shmq::Queue::inspect(&queue.0), Err(shmq::Error::NotFound(_))),
        "the consumer should have removed the queue"
    );
}

#[test]
fn the_pair_delivers_every_message_in_order_when_the_consumer_starts_first() {
    // A 4 KiB ring and 20,000 messages: the ring wraps hundreds of times and the producer
    // waits on a full queue, the consumer on an empty one.
    let q = Name::new("consumer-first");
    run_pair(&q, 20_000, &["--capacity", "4096", "--max-message", "256"], true);
}

#[test]
fn the_pair_delivers_every_message_in_order_when_the_producer_starts_first() {
    let q = Name::new("producer-first");
    let opts = ["--capacity", "4096", "--max-message", "256", "--mode", "spsc", "--wait", "block"];
    run_pair(&q, 20_000, &opts, false);
}

#[test]
fn the_pair_works_with_the_default_options() {
    let q = Name::new("defaults");
    run_pair(&q, 1000, &[], true);
}

#[test]
fn the_consumer_fails_on_a_message_out_of_order() {
    let q = Name::new("out-of-order");
    shmq::Queue::create(&q.0, shmq::Options::new()).unwrap();
    let mut tx = shmq::Producer::open(&q.0).unwrap();
    tx.send(b"order 0").unwrap();
    tx.send(b"order 2").unwrap();
    drop(tx);
    let o = finish("consumer", spawn("consumer", &["--queue", &q.0, "--count", "2", "--timeout-ms", "30000"]));
    assert_eq!(o.status.code(), Some(1), "stdout: {}", String::from_utf8_lossy(&o.stdout));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(r#"expected "order 1", received "order 2""#), "{err}");
}

#[test]
fn the_two_refuse_to_share_a_queue_with_other_options() {
    let q = Name::new("mismatch");
    shmq::Queue::create(&q.0, shmq::Options::new().capacity(4096).max_message(256)).unwrap();
    let o = finish("producer", spawn("producer", &["--queue", &q.0, "--count", "1"]));
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("exists as mpsc with capacity 4096"), "{err}");
}

/// Runs `examples/subscriptions.rs demo` with `args` on a queue of its own and returns its
/// stdout, failing unless it exited with 0 and removed the queue.
fn subscriptions_demo(queue: &Name, args: &[&str]) -> String {
    let mut all = vec!["demo", "--queue", &queue.0];
    all.extend_from_slice(args);
    let out = succeeded("subscriptions demo", &finish("subscriptions demo", spawn("subscriptions", &all)));
    assert!(
        matches!(shmq::Queue::inspect(&queue.0), Err(shmq::Error::NotFound(_))),
        "the demo should have removed the queue"
    );
    out
}

#[test]
fn the_subscriptions_demo_fans_out_to_two_subscriptions_and_shares_one_between_two_members() {
    // 3,000 messages through a 16 KiB ring: it wraps several times, so the producer waits
    // for the slowest of the three subscriptions.
    let q = Name::new("subs-demo");
    let out = subscriptions_demo(&q, &["--count", "3000", "--capacity", "16384"]);
    for name in ["audit", "metrics"] {
        assert!(out.contains(&format!("subscriber {name:?}: 3000 events, in order, ids 0..=")), "{out}");
    }
    assert_eq!(out.matches(r#"of "work": "#).count(), 2, "two members should report\n{out}");
    assert!(out.contains("received the 3000 events between them, each exactly once"), "{out}");
    assert!(out.contains("audit and metrics: every event, under the same ids 0..="), "{out}");
    assert!(!out.contains("lapped"), "{out}");
}

#[test]
fn the_subscriptions_demo_shows_a_subscription_with_a_lag_limit_lapped() {
    // `metrics` reads nothing until all 3,000 messages were sent: producers detach it
    // instead of waiting, and its first receive reports the bytes it missed.
    let q = Name::new("subs-lapped");
    let out = subscriptions_demo(&q, &["--count", "3000", "--capacity", "16384", "--lag-limit", "4096"]);
    assert!(out.contains(r#"subscriber "audit": 3000 events, in order"#), "{out}");
    let line = out.lines().find(|l| l.starts_with(r#"subscriber "metrics""#)).unwrap_or_else(|| panic!("{out}"));
    let missed: u64 = line
        .split("missed ")
        .nth(1)
        .and_then(|s| s.strip_suffix(" bytes"))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no missed bytes in {line:?}"));
    // Every record it missed: `event 0`..`event 99` take 24 bytes (16 of header, the payload
    // rounded up to 8), `event 100`..`event 2999` 32, `end 3000` 24; padding at the wraps
    // adds less than a record per lap.
    let records = 100 * 24 + 2900 * 32 + 24;
    assert!(line.contains("lapped 1 time(s)"), "{line}");
    assert!((records..records + 16 * 32).contains(&missed), "{line}: expected about {records} bytes");
    assert!(out.contains("each exactly once"), "{out}");
}

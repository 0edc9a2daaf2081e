//! The library under valgrind: a process that sends and receives on a volatile queue, on a
//! durable one, and as a member of a subscription with explicit acks (every clock the library
//! reads) runs to its end under memcheck with no error. Programs that link shmq get run under
//! valgrind by their developers; a dependency's own lookup of the vDSO once crashed them there.
//!
//! valgrind is required in CI (`.ci/run` installs it) and skipped with a note elsewhere.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{LogDir, OP_TIMEOUT, TestQueue, WATCHDOG};
use shmq::{Ack, Consumer, Mode, Options, Producer, Subscription, SubscriptionOptions, Wait};

#[test]
fn child_role() {
    common::run_child(|role, queue| match role {
        "everything_once" => everything_once(queue, &common::arg::<String>("durable")),
        other => panic!("unknown role {other}"),
    });
}

/// Ten messages through the volatile queue `queue` (spinning receiver), five through the
/// durable queue `durable` to a member of its subscription `work` (explicit acks), each
/// acknowledged.
fn everything_once(queue: &str, durable: &str) {
    let mut tx = Producer::open(queue).expect("open the producer");
    let mut rx = Consumer::open_with(queue, Wait::Spin).expect("open the consumer");
    for i in 0u32..10 {
        tx.send(&i.to_le_bytes()).expect("send");
        assert_eq!(*rx.recv().expect("recv"), i.to_le_bytes());
    }
    let mut tx = Producer::open(durable).expect("open the durable producer");
    let mut member = Consumer::subscribe_with(durable, "work", Wait::Adaptive).expect("subscribe");
    for i in 0u32..5 {
        tx.send(&i.to_le_bytes()).expect("send to the durable queue");
        let id = {
            let m = member.recv_timeout(OP_TIMEOUT).expect("the member receives");
            assert_eq!(*m, i.to_le_bytes());
            m.id()
        };
        member.ack(id).expect("ack");
    }
    common::say("done");
}

/// Whether valgrind runs here: required in CI, skipped with a note elsewhere.
fn valgrind() -> bool {
    let found = Command::new("valgrind").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status();
    if found.is_ok_and(|s| s.success()) {
        return true;
    }
    assert!(std::env::var_os("CI").is_none(), "valgrind is missing (.ci/run installs it)");
    eprintln!("valgrind not installed: the library under valgrind is not tested here (CI tests it)");
    false
}

#[test]
fn a_process_using_every_clock_of_the_library_runs_clean_under_valgrind() {
    if !valgrind() {
        return;
    }
    let q = TestQueue::create("valgrind-volatile", Options::new().mode(Mode::Spsc).capacity(1 << 16).max_message(1024));
    let dir = LogDir::new("valgrind");
    let d = TestQueue::create("valgrind-durable", Options::new().capacity(1 << 16).max_message(1024).durable(&dir.0));
    Subscription::create(&d.name, "work", SubscriptionOptions::new().ack(Ack::Explicit)).expect("subscription");
    // Its dead-letter queue, made with it, goes when the test ends.
    let _dlq = TestQueue { name: shmq::dlq_name(&d.name, "work") };
    let exe = std::env::current_exe().expect("current_exe");
    let mut child = Command::new("valgrind")
        .args(["--error-exitcode=99", "--quiet"])
        .arg(exe)
        .args(["--exact", common::ROLE_TEST, "--nocapture", "--test-threads=1", "--quiet"])
        .env("SHMQ_ROLE", "everything_once")
        .env("SHMQ_QUEUE", &q.name)
        .env("SHMQ_ARG_durable", &d.name)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start valgrind");
    let deadline = Instant::now() + WATCHDOG;
    while child.try_wait().expect("waitpid").is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("the child under valgrind still runs past the watchdog: killed");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("the child's output");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success() && stdout.contains("done"),
        "under valgrind: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
}

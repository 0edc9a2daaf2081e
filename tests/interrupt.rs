//! `Interrupter`: a call blocked in a handle (asleep on the futex, or spinning) returns
//! `Interrupted` when a signal handler or another thread interrupts it; the interruption is
//! pending until a call that has to wait uses it, is reported once, and leaves the handle
//! working. The blocked handles live in child processes; the parent proves they sleep on
//! the queue's futex before it interrupts them.

mod common;

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::{Child, OFF_DATA_WAITERS, OFF_SPACE_WAITERS, OP_TIMEOUT, TestQueue};
use shmq::{Consumer, Error, Interrupter, Mode, Options, Producer, Queue, Wait};

const MS20: Duration = Duration::from_millis(20);

fn small(mode: Mode) -> Options {
    Options::new().mode(mode).capacity(4096).max_message(1024)
}

// ---------------------------------------------------------------------------------------
// The child side.

/// The interrupter the signal handler uses, set before the handler is installed.
static INTERRUPTER: OnceLock<Interrupter> = OnceLock::new();
/// How many times the handler ran.
static HANDLED: AtomicU32 = AtomicU32::new(0);

extern "C" fn on_signal(_sig: libc::c_int) {
    // Async-signal-safe: an atomic load (OnceLock::get), an atomic add, and `interrupt`.
    HANDLED.fetch_add(1, Ordering::Relaxed);
    if let Some(i) = INTERRUPTER.get() {
        i.interrupt();
    }
}

/// Installs `on_signal` for SIGUSR1 without `SA_RESTART`, as the C report did.
fn install_handler(interrupter: Interrupter) {
    INTERRUPTER.set(interrupter).expect("one interrupter per child");
    let handler: extern "C" fn(libc::c_int) = on_signal;
    // SAFETY: an all-zero sigaction is valid (no flags, empty mask); the handler is an
    // `extern "C" fn(c_int)` that does only async-signal-safe work.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = handler as libc::sighandler_t;
        sa.sa_flags = 0;
        libc::sigemptyset(&mut sa.sa_mask);
        assert_eq!(libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut()), 0, "sigaction");
    }
}

/// A thread that only waits (bounded) to be signalled: the handler runs there, not on the
/// thread blocked in the queue, which only the futex wake can then reach.
fn bystander_thread() -> i32 {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        tx.send(common::tid()).unwrap();
        let end = Instant::now() + common::WATCHDOG;
        while HANDLED.load(Ordering::Relaxed) == 0 && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    rx.recv().unwrap()
}

/// Where the signal goes: to the blocked thread itself, or to a bystander thread.
fn signal_target(target: &str) -> i32 {
    match target {
        "self" => common::tid(),
        "bystander" => bystander_thread(),
        other => panic!("unknown target {other}"),
    }
}

/// A thread that interrupts once the parent says `go`.
fn interrupt_on_go(interrupter: Interrupter) {
    std::thread::spawn(move || {
        if common::hear().as_deref() == Some("go") {
            interrupter.interrupt();
        }
    });
}

fn expect_interrupted<T: std::fmt::Debug>(what: &str, r: Result<T, Error>) {
    match r {
        Err(Error::Interrupted) => {}
        other => panic!("{what}: {other:?}, expected Interrupted"),
    }
}

#[test]
fn child_role() {
    common::run_child(|role, queue| match role {
        "consumer" => {
            let (wait, how): (Wait, String) = (common::arg("wait"), common::arg("how"));
            let mut rx = Consumer::open_with(queue, wait).expect("open consumer");
            let target = match how.as_str() {
                "thread" => {
                    interrupt_on_go(rx.interrupter());
                    0
                }
                signal => {
                    install_handler(rx.interrupter());
                    signal_target(signal)
                }
            };
            common::say(&format!("ready {} {target}", common::tid()));
            // No timeout: only the interruption can end this (the parent's watchdog bounds it).
            expect_interrupted("recv", rx.recv());
            common::say(&format!("interrupted {}", HANDLED.load(Ordering::Relaxed)));
            // Used up: the next wait waits.
            assert!(matches!(rx.recv_timeout(MS20), Err(Error::Timeout)));
            // And the handle still works.
            common::say("waiting");
            let msg = rx.recv_timeout(OP_TIMEOUT).expect("recv after the interruption");
            assert_eq!(&*msg, b"hello");
        }
        "producer" => {
            let (wait, how): (Wait, String) = (common::arg("wait"), common::arg("how"));
            let mut tx = Producer::open_with(queue, wait).expect("open producer");
            let mut sent = 0;
            while tx.try_send(&[7u8; 100]).is_ok() {
                sent += 1;
            }
            let target = match how.as_str() {
                "thread" => {
                    interrupt_on_go(tx.interrupter());
                    0
                }
                signal => {
                    install_handler(tx.interrupter());
                    signal_target(signal)
                }
            };
            common::say(&format!("full {} {target} {sent}", common::tid()));
            expect_interrupted("send on a full queue", tx.send(&[8u8; 100]));
            common::say(&format!("interrupted {}", HANDLED.load(Ordering::Relaxed)));
        }
        other => panic!("unknown role {other}"),
    });
}

// ---------------------------------------------------------------------------------------
// The parent side.

/// `tgkill(pid, tid, SIGUSR1)`: the signal goes to that very thread of the child.
fn signal_thread(pid: u32, tid: i32) {
    // SAFETY: a plain system call with integer arguments.
    let r = unsafe { libc::syscall(libc::SYS_tgkill, pid as libc::c_long, tid as libc::c_long, libc::SIGUSR1) };
    assert_eq!(r, 0, "tgkill: {}", std::io::Error::last_os_error());
}

fn numbers(line: &str) -> Vec<i64> {
    line.split_whitespace().map(|w| w.parse().expect("a number")).collect()
}

fn a_blocked_consumer_is_interrupted(wait: &str, how: &str) {
    let q = TestQueue::create(&format!("int-consumer-{wait}-{how}"), small(Mode::Mpsc));
    let raw = q.raw();
    let mut child = Child::spawn("consumer", &q.name, &[("wait", wait.into()), ("how", how.into())]);
    let ids = numbers(&child.expect("ready"));
    let (tid, target) = (ids[0] as i32, ids[1] as i32);
    if wait == "spin" {
        // Nothing to observe; whether the interruption lands before or during the spin,
        // it must be reported.
        std::thread::sleep(MS20);
    } else {
        child.wait_asleep_on_futex(tid, &raw, OFF_DATA_WAITERS);
    }
    match how {
        "thread" => child.tell("go"),
        _ => signal_thread(child.pid(), target),
    }
    let handled: u32 = child.expect("interrupted").parse().unwrap();
    if how != "thread" {
        assert!(handled >= 1, "the signal handler ran");
    }
    child.expect("waiting");
    Producer::open(&q.name).unwrap().send(b"hello").unwrap();
    child.wait_ok();
}

#[test]
fn a_consumer_asleep_with_wait_block_is_interrupted_by_a_signal_handler_on_its_own_thread() {
    a_blocked_consumer_is_interrupted("block", "self");
}

#[test]
fn a_consumer_asleep_with_wait_block_is_interrupted_by_a_signal_handler_on_another_thread() {
    a_blocked_consumer_is_interrupted("block", "bystander");
}

#[test]
fn a_consumer_asleep_with_wait_adaptive_is_interrupted_by_a_signal_handler_on_its_own_thread() {
    a_blocked_consumer_is_interrupted("adaptive", "self");
}

#[test]
fn a_consumer_asleep_with_wait_adaptive_is_interrupted_by_a_signal_handler_on_another_thread() {
    a_blocked_consumer_is_interrupted("adaptive", "bystander");
}

#[test]
fn a_consumer_asleep_with_wait_block_is_interrupted_by_another_thread() {
    a_blocked_consumer_is_interrupted("block", "thread");
}

#[test]
fn a_spinning_consumer_is_interrupted_by_another_thread() {
    a_blocked_consumer_is_interrupted("spin", "thread");
}

fn a_producer_blocked_on_a_full_queue_is_interrupted(mode: Mode, wait: &str, how: &str) {
    let q = TestQueue::create(&format!("int-producer-{mode}-{wait}-{how}"), small(mode));
    let raw = q.raw();
    let mut child = Child::spawn("producer", &q.name, &[("wait", wait.into()), ("how", how.into())]);
    let ids = numbers(&child.expect("full"));
    let (tid, target, sent) = (ids[0] as i32, ids[1] as i32, ids[2] as usize);
    assert!(sent > 0);
    child.wait_asleep_on_futex(tid, &raw, OFF_SPACE_WAITERS);
    match how {
        "thread" => child.tell("go"),
        _ => signal_thread(child.pid(), target),
    }
    child.expect("interrupted");
    child.wait_ok();
    // The interrupted send sent nothing.
    let mut rx = Consumer::open(&q.name).unwrap();
    let mut got = 0;
    while let Some(m) = rx.try_recv().unwrap() {
        assert_eq!(&*m, &[7u8; 100][..]);
        got += 1;
    }
    assert_eq!(got, sent);
}

#[test]
fn an_spsc_producer_asleep_on_a_full_queue_is_interrupted_by_a_signal_handler() {
    a_producer_blocked_on_a_full_queue_is_interrupted(Mode::Spsc, "block", "self");
}

#[test]
fn an_mpsc_producer_asleep_on_a_full_queue_is_interrupted_by_a_signal_handler_on_another_thread() {
    a_producer_blocked_on_a_full_queue_is_interrupted(Mode::Mpsc, "adaptive", "bystander");
}

#[test]
fn an_mpsc_producer_asleep_on_a_full_queue_is_interrupted_by_another_thread() {
    a_producer_blocked_on_a_full_queue_is_interrupted(Mode::Mpsc, "block", "thread");
}

// ---------------------------------------------------------------------------------------
// When an interruption is reported (one process: these are about the flag, not the wake).

#[test]
fn an_interruption_before_the_call_is_reported_by_the_next_call_that_waits_once() {
    let q = TestQueue::create("int-before", small(Mode::Mpsc));
    let mut rx = Consumer::open_with(&q.name, Wait::Block).unwrap();
    let i = rx.interrupter();
    i.interrupt();
    i.clone().interrupt();
    assert!(rx.try_recv().unwrap().is_none(), "try_recv never waits, never reports it");
    expect_interrupted("recv", rx.recv());
    let start = Instant::now();
    assert!(matches!(rx.recv_timeout(MS20), Err(Error::Timeout)), "two interruptions, reported once");
    assert!(start.elapsed() >= MS20);
}

#[test]
fn a_call_that_need_not_wait_completes_and_leaves_the_interruption_pending() {
    let q = TestQueue::create("int-pending", small(Mode::Spsc));
    let mut tx = Producer::open(&q.name).unwrap();
    let mut rx = Consumer::open_with(&q.name, Wait::Block).unwrap();
    tx.send(b"a").unwrap();
    rx.interrupter().interrupt();
    assert_eq!(&*rx.recv().unwrap(), b"a");
    expect_interrupted("recv on the empty queue", rx.recv_timeout(OP_TIMEOUT));
    // The batch and peek calls wait through the same loop.
    rx.interrupter().interrupt();
    expect_interrupted("recv_batch", rx.recv_batch(4, |_| {}));
    rx.interrupter().interrupt();
    expect_interrupted("peek", rx.peek(None));
    // A producer's interruption is its own.
    tx.interrupter().interrupt();
    assert!(matches!(rx.recv_timeout(MS20), Err(Error::Timeout)));
    tx.send(b"b").unwrap();
    assert_eq!(&*rx.recv().unwrap(), b"b");
}

#[test]
fn an_interrupter_may_outlive_its_handle() {
    fn shareable<T: Clone + Send + Sync + 'static>() {}
    shareable::<Interrupter>();
    let q = TestQueue::create("int-outlive", small(Mode::Mpsc));
    let i = Consumer::open(&q.name).unwrap().interrupter();
    i.interrupt();
    // The consumer slot was given back when the handle dropped, and the old interrupter
    // is not the new consumer's.
    let mut rx = Consumer::open_with(&q.name, Wait::Block).expect("the slot was given back");
    i.interrupt();
    assert!(matches!(rx.recv_timeout(MS20), Err(Error::Timeout)));
    drop(rx);
    Queue::remove(&q.name).unwrap();
    i.interrupt();
}

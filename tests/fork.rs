//! `fork()` without `exec`: a child inherits its parent's descriptors, but it must not
//! inherit the parent's participant slots. Real processes: the test process, a parent that
//! holds handles and forks, and the forked child.
//!
//! * Parent dies: while the child lives on, the parent's consumer slot is free for a new
//!   consumer in a third process (before the fix: `Busy`, the child kept the lock alive).
//! * Child exits (after dropping what it inherited): the parent's slots are still alive and
//!   its handles still work.

mod common;

use std::time::{Duration, Instant};

use common::{Child, TestQueue, WATCHDOG};
use rustix::process::{Pid, Signal};
use shmq::{Consumer, Error, Mode, Options, Producer, Queue};

fn options() -> Options {
    Options::new().mode(Mode::Mpsc).capacity(4096).max_message(256)
}

/// `fork()`; in the child, runs `f` and leaves with `_exit(0)`. Returns the child's pid.
fn fork(f: impl FnOnce()) -> i32 {
    // SAFETY: this role process has one thread running (libtest's main thread waits for
    // the test thread); the child runs `f`, which makes system calls and drops handles,
    // then leaves with `_exit` without running anything else of the parent's.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        f();
        // SAFETY: leaves the child at once.
        unsafe { libc::_exit(0) };
    }
    pid
}

#[test]
fn child_role() {
    common::run_child(|role, queue| match role {
        "hold_and_fork" => {
            let rx = Consumer::open(queue).expect("open consumer");
            let child = fork(|| {
                // Live on, holding the inherited handle, until stdin (the test's pipe to
                // our parent) closes or we are killed.
                let mut b = [0u8; 1];
                // SAFETY: reads into a local buffer.
                while unsafe { libc::read(0, b.as_mut_ptr().cast(), 1) } > 0 {}
            });
            common::say(&format!("forked {child}"));
            while common::hear().is_some() {}
            drop(rx);
        }
        "fork_child_exits" => {
            let mut rx = Consumer::open(queue).expect("open consumer");
            let mut tx = Producer::open(queue).expect("open producer");
            let child = fork(|| {
                // The child drops the producer it inherited (the consumer it leaves to
                // `_exit`): neither may give the parent's slots away.
                // SAFETY: the child's bitwise copy of `tx`, dropped once; the child never
                // touches `tx` itself again (it leaves with `_exit`).
                let mut inherited = unsafe { std::ptr::read(&tx) };
                // An inherited handle refuses to work (exit status 3 fails the parent's check).
                if !matches!(inherited.try_send(b"from the child"), Err(Error::InvalidArgument(_))) {
                    // SAFETY: leaves the forked child at once, as `fork` does.
                    unsafe { libc::_exit(3) };
                }
                drop(inherited);
            });
            let mut status = 0;
            // SAFETY: waits for our own child.
            assert_eq!(unsafe { libc::waitpid(child, &mut status, 0) }, child);
            assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "child status {status:#x}");
            common::say("child-exited");
            assert_eq!(common::hear().as_deref(), Some("go"));
            tx.send(b"after the child").expect("the parent's producer still works");
            let m = rx.recv_timeout(common::OP_TIMEOUT).expect("the parent's consumer still works");
            assert_eq!(&*m, b"after the child");
            drop(m);
            common::say("works");
        }
        other => panic!("unknown role {other}"),
    });
}

fn alive(pid: i32) -> bool {
    // A zombie is dead for our purposes: it holds no descriptors.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !matches!(s.rsplit_once(')').and_then(|(_, r)| r.trim_start().chars().next()), Some('Z' | 'X')),
        Err(_) => false,
    }
}

#[test]
fn when_the_parent_dies_its_slot_is_free_while_its_forked_child_lives() {
    let q = TestQueue::create("parent-dies", options());
    let mut parent = Child::spawn("hold_and_fork", &q.name, &[]);
    let child: i32 = parent.expect("forked").parse().unwrap();
    assert!(matches!(Consumer::open(&q.name), Err(Error::Busy(_))), "the parent holds the consumer slot");
    parent.kill9();
    assert!(alive(child), "the forked child {child} lives on");
    // The parent is dead: its slot is free, though the child still has its descriptors.
    let rx = Consumer::open(&q.name);
    assert!(alive(child), "the forked child {child} still lives");
    let rx = rx.unwrap_or_else(|e| panic!("a new consumer while the parent's forked child lives: {e}"));
    drop(rx);
    let pid = Pid::from_raw(child).unwrap();
    rustix::process::kill_process(pid, Signal::KILL).unwrap();
    let deadline = Instant::now() + WATCHDOG;
    while alive(child) {
        assert!(Instant::now() < deadline, "the forked child {child} outlived SIGKILL");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn when_the_forked_child_exits_the_parents_slots_stay_alive_and_its_handles_work() {
    let q = TestQueue::create("child-exits", options());
    let mut parent = Child::spawn("fork_child_exits", &q.name, &[]);
    parent.expect("child-exited");
    assert!(matches!(Consumer::open(&q.name), Err(Error::Busy(_))), "the parent still holds the consumer slot");
    let s = Queue::inspect(&q.name).unwrap();
    let mine: Vec<_> = s.participants.iter().filter(|p| p.pid == parent.pid()).collect();
    assert_eq!(mine.len(), 2, "the parent's consumer and producer are registered: {:?}", s.participants);
    assert!(mine.iter().all(|p| p.alive), "and alive: {:?}", s.participants);
    parent.tell("go");
    parent.expect("works");
    parent.wait_ok();
    // The parent is gone: now its slots are free.
    let _rx = Consumer::open(&q.name).expect("the consumer slot after the parent exited");
}

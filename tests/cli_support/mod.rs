//! What the tests of the `shmq` binary share: running it under a deadline, reading what it
//! printed, checking its exit status, and names and directories removed when a test ends.
//! Each `tests/cli*.rs` file includes it with `mod cli_support;` (a test binary uses only
//! some of it).

#![allow(dead_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The `shmq` under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_shmq");
/// Longest a child may run before the test kills it and fails (a bench can ask for more
/// with [`wait_within`]).
pub const DEADLINE: Duration = Duration::from_secs(120);

/// A queue name unique to this test process (`cli-PID-TAG`), removed on drop, and with it
/// the dead-letter queues of the subscriptions named with [`Name::dlq`].
pub struct Name {
    name: String,
    dlqs: std::cell::RefCell<Vec<String>>,
}

impl Name {
    pub fn new(tag: &str) -> Name {
        Name { name: format!("cli-{}-{tag}", std::process::id()), dlqs: Default::default() }
    }

    /// The dead-letter queue of subscription `sub` (removed with the queue).
    pub fn dlq(&self, sub: &str) -> String {
        let d = shmq::dlq_name(&self.name, sub);
        let mut dlqs = self.dlqs.borrow_mut();
        if !dlqs.contains(&d) {
            dlqs.push(d.clone());
        }
        d
    }
}

impl Drop for Name {
    fn drop(&mut self) {
        let _ = shmq::Queue::remove(&self.name);
        for d in self.dlqs.borrow().iter() {
            let _ = shmq::Queue::remove(d);
        }
    }
}

impl std::ops::Deref for Name {
    type Target = str;
    fn deref(&self) -> &str {
        &self.name
    }
}

/// A scratch directory unique to this test (under cargo's temporary directory for
/// integration tests), removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        let p = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("shmq-cli-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Starts `shmq ARGS` in the background, stdin from /dev/null (not a terminal), its output
/// piped.
pub fn spawn_shmq(args: &[&str]) -> Child {
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start shmq")
}

/// Waits for `child` at most [`DEADLINE`]; kills it and fails past that.
pub fn wait_with_deadline(child: Child) -> Output {
    wait_within(child, DEADLINE)
}

/// Waits for `child` at most `deadline`; kills it and fails past that. Its output is read
/// once it has exited: what a test runs prints less than a pipe holds.
pub fn wait_within(mut child: Child, deadline: Duration) -> Output {
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("shmq ran past {deadline:?}; stderr: {}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs `shmq ARGS` under [`DEADLINE`].
pub fn shmq(args: &[&str]) -> Output {
    wait_with_deadline(spawn_shmq(args))
}

/// Runs `shmq ARGS` with `stdin` as its input, under [`DEADLINE`].
pub fn shmq_with_input(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start shmq");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin).unwrap();
    drop(input);
    wait_with_deadline(child)
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts exit status 0.
#[track_caller]
pub fn ok(o: Output) -> Output {
    assert_eq!(o.status.code(), Some(0), "stdout: {}\nstderr: {}", stdout(&o), stderr(&o));
    o
}

/// Asserts exit status `code` with a message on stderr.
#[track_caller]
pub fn fails_with(code: i32, o: &Output) {
    assert_eq!(o.status.code(), Some(code), "stdout: {}\nstderr: {}", stdout(o), stderr(o));
    assert!(!stderr(o).trim().is_empty(), "no message on stderr");
}

/// Asserts exit status `code` with a message on stderr that contains `says`; returns stderr.
#[track_caller]
pub fn fails_saying(code: i32, says: &str, o: &Output) -> String {
    fails_with(code, o);
    let err = stderr(o);
    assert!(err.contains(says), "stderr does not say {says:?}: {err}");
    err
}

/// What `shmq ... --json` printed.
#[track_caller]
pub fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(o)))
}

//! Helpers shared by the cross-process tests.
//!
//! * Child processes: a test re-executes its own binary with `--exact child_role` and the
//!   environment `SHMQ_ROLE` (what to do), `SHMQ_QUEUE` (on which queue) and `SHMQ_ARG_*`
//!   (parameters). Every test binary defines `#[test] fn child_role()` that calls
//!   [`run_child`]: without `SHMQ_ROLE` it returns at once, so in a normal run it is an
//!   empty test. A child talks to its parent with lines `@shmq ...` on stdout ([`say`]) and
//!   listens on stdin ([`hear`]). The parent bounds every child with [`WATCHDOG`]: a child
//!   that takes longer is killed and the test fails instead of hanging.
//! * [`TestQueue`]: a unique queue name (pid + test name + counter), removed on drop.
//! * [`Payloads`]: message contents derived from a seed and a sequence number, so a
//!   consumer in another process can check every byte.
//! * [`RawSegment`]: the bytes of `/dev/shm/shmq.NAME`, read and written with
//!   `pread`/`pwrite`, at the offsets of docs/LAYOUT.md (repeated here on purpose: these
//!   tests check the contract from the outside).

#![allow(dead_code)]

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::process::ExitStatusExt;
use std::process::{ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};
use shmq::Queue;

/// The name of the role dispatcher test every test binary defines.
pub const ROLE_TEST: &str = "child_role";
const ENV_ROLE: &str = "SHMQ_ROLE";
const ENV_QUEUE: &str = "SHMQ_QUEUE";
const ENV_ARG: &str = "SHMQ_ARG_";
const TAG: &str = "@shmq ";

/// The longest any child, or any wait for a child, may take: generous (debug builds, two
/// cores shared by parallel tests), and only there so that a bug fails instead of hanging.
pub const WATCHDOG: Duration = Duration::from_secs(120);
/// Timeout for single queue operations inside the tests: far beyond anything an honest
/// run needs, so that a lost wakeup fails as `Timeout` instead of hanging.
pub const OP_TIMEOUT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------
// Offsets of docs/LAYOUT.md.

/// `Identity::magic`.
pub const OFF_MAGIC: u64 = 0;
/// `Identity::layout_version` (u32).
pub const OFF_VERSION: u64 = 8;
/// `Identity::state` (u32).
pub const OFF_STATE: u64 = 12;
/// `Identity::layout_hash`.
pub const OFF_HASH: u64 = 16;
/// `Identity::mode` (u32).
pub const OFF_MODE: u64 = 24;
/// `Identity::max_message` (u32).
pub const OFF_MAX_MESSAGE: u64 = 28;
/// `Identity::capacity`.
pub const OFF_CAPACITY: u64 = 32;
/// `Identity::data_offset`.
pub const OFF_DATA_OFFSET: u64 = 40;
/// `Identity::total_size`.
pub const OFF_TOTAL_SIZE: u64 = 48;
/// `Identity::closed` (u32).
pub const OFF_CLOSED: u64 = 72;
/// `Identity::salt`: mixed into every record stamp.
pub const OFF_SALT: u64 = 80;
/// Producer position.
pub const OFF_TAIL: u64 = 128;
/// Consumer position.
pub const OFF_HEAD: u64 = 256;

/// Data-available waiter set (u64, bit i for slot i; tests read its low u32); the epoch
/// (futex word) follows at +8.
pub const OFF_DATA_WAITERS: u64 = 384;
/// Space-available waiter set (u64, as above); the epoch follows at +8.
pub const OFF_SPACE_WAITERS: u64 = 512;
/// Retired counters.
pub const OFF_RETIRED: u64 = 640;
/// Participant table: 64 slots of 128 bytes.
pub const OFF_TABLE: u64 = 4096;
/// `Slot::claim_pos` within a participant slot (`claim_end` follows at +8).
pub const OFF_SLOT_CLAIM: u64 = 72;
/// Size of a participant slot.
pub const SLOT_SIZE: u64 = 128;
/// Number of participant slots.
pub const SLOTS: u64 = 64;
/// Line 6: the active-subscriptions mask (u64); `sleepers` at +8, `joins` at +16.
pub const OFF_SUBS: u64 = 768;
/// `Slot::gate_min` within a participant slot.
pub const OFF_SLOT_GATE_MIN: u64 = 88;
/// Subscription table: 64 entries of 384 bytes (cursor line, wait line, meta line).
pub const OFF_SUB_TABLE: u64 = 12288;
/// Size of a subscription entry.
pub const SUB_ENTRY_SIZE: u64 = 384;
/// Member table: 64 entries of 128 bytes (claim words at +16: pos, end, state).
pub const OFF_MEMBERS: u64 = 36864;
/// Start of the data region.
pub const OFF_DATA: u64 = 45056;

// ---------------------------------------------------------------------------------------
// Queue names.

/// A unique queue, removed (even if broken) when dropped.
pub struct TestQueue {
    pub name: String,
}

impl TestQueue {
    /// A unique name for `test` (not created).
    pub fn name(test: &str) -> TestQueue {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("t{}-{test}-{n}", std::process::id());
        let _ = std::fs::remove_file(path_of(&name));
        TestQueue { name }
    }

    /// A unique queue for `test`, created with `options`.
    pub fn create(test: &str, options: shmq::Options) -> TestQueue {
        let q = TestQueue::name(test);
        Queue::create(&q.name, options).expect("create the test queue");
        q
    }

    /// The path of the shared-memory object.
    pub fn path(&self) -> String {
        path_of(&self.name)
    }

    /// The raw bytes of the object.
    pub fn raw(&self) -> RawSegment {
        RawSegment::open(&self.name)
    }
}

impl Drop for TestQueue {
    fn drop(&mut self) {
        let _ = Queue::remove(&self.name);
        let _ = std::fs::remove_file(self.path());
    }
}

/// `/dev/shm/shmq.NAME`.
pub fn path_of(name: &str) -> String {
    format!("/dev/shm/shmq.{name}")
}

// ---------------------------------------------------------------------------------------
// Raw access to a segment.

/// The shared-memory object opened as a plain file: reads and writes go to the same pages
/// every mapping of it sees.
pub struct RawSegment {
    pub file: File,
}

impl RawSegment {
    /// Opens `/dev/shm/shmq.NAME` for reading and writing.
    pub fn open(name: &str) -> RawSegment {
        let file = OpenOptions::new().read(true).write(true).open(path_of(name)).expect("open the raw object");
        RawSegment { file }
    }

    pub fn read_u64(&self, off: u64) -> u64 {
        let mut b = [0u8; 8];
        self.file.read_exact_at(&mut b, off).expect("pread");
        u64::from_le_bytes(b)
    }

    pub fn read_u32(&self, off: u64) -> u32 {
        let mut b = [0u8; 4];
        self.file.read_exact_at(&mut b, off).expect("pread");
        u32::from_le_bytes(b)
    }

    pub fn write_u64(&self, off: u64, v: u64) {
        self.file.write_all_at(&v.to_le_bytes(), off).expect("pwrite");
    }

    pub fn write_u32(&self, off: u64, v: u32) {
        self.file.write_all_at(&v.to_le_bytes(), off).expect("pwrite");
    }

    pub fn write_bytes(&self, off: u64, b: &[u8]) {
        self.file.write_all_at(b, off).expect("pwrite");
    }

    /// `ftruncate`.
    pub fn set_len(&self, len: u64) {
        self.file.set_len(len).expect("ftruncate");
    }

    pub fn len(&self) -> u64 {
        self.file.metadata().expect("fstat").len()
    }
}

// ---------------------------------------------------------------------------------------
// Deterministic payloads.

/// splitmix64: a tiny, good-enough PRNG (no `rand` crate needed).
#[derive(Clone, Debug)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }

    /// Uniform enough in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    pub fn chance(&mut self, one_in: u64) -> bool {
        self.below(one_in) == 0
    }
}

/// The splitmix64 finalizer.
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

const POOL: usize = 1 << 16;

/// Message contents as a function of `(seed, stream, seq)`: a length in `min..=max` and
/// bytes taken from a random pool at a per-message offset, with the 8-byte tag
/// `stream << 32 | seq` (little-endian) over the first `min(8, len)` bytes. Cheap to make
/// and check (copies and compares), yet every message differs from its neighbours and
/// from whatever an earlier lap of the ring left behind.
pub struct Payloads {
    seed: u64,
    min: usize,
    max: usize,
    pool: Vec<u8>,
}

impl Payloads {
    pub fn new(seed: u64, min: usize, max: usize) -> Payloads {
        assert!(min <= max);
        let mut rng = Rng(seed);
        let mut pool = Vec::with_capacity(POOL + max);
        while pool.len() < POOL + max {
            pool.extend_from_slice(&rng.next_u64().to_le_bytes());
        }
        Payloads { seed, min, max, pool }
    }

    fn key(&self, stream: u32, seq: u32) -> u64 {
        mix(self.seed ^ (u64::from(stream) << 32 | u64::from(seq)).wrapping_mul(0xd6e8_feb8_6659_fd93))
    }

    /// The length of message `seq` of `stream`.
    pub fn len(&self, stream: u32, seq: u32) -> usize {
        self.min + (self.key(stream, seq) % (self.max - self.min + 1) as u64) as usize
    }

    /// Writes message `seq` of `stream` into `out` (cleared first).
    pub fn fill(&self, stream: u32, seq: u32, out: &mut Vec<u8>) {
        let len = self.len(stream, seq);
        let off = (self.key(stream, seq) >> 20) as usize % POOL;
        out.clear();
        out.extend_from_slice(&self.pool[off..off + len]);
        let tag = (u64::from(stream) << 32 | u64::from(seq)).to_le_bytes();
        let n = len.min(8);
        out[..n].copy_from_slice(&tag[..n]);
    }

    /// Reads `(stream, seq)` back from a message of at least 8 bytes.
    pub fn tag(msg: &[u8]) -> (u32, u32) {
        let t = u64::from_le_bytes(msg[..8].try_into().expect("8 bytes"));
        ((t >> 32) as u32, t as u32)
    }

    /// Checks `got` against message `seq` of `stream`, with `scratch` as working space.
    pub fn check(&self, stream: u32, seq: u32, got: &[u8], scratch: &mut Vec<u8>) -> Result<(), String> {
        self.fill(stream, seq, scratch);
        if got == &scratch[..] {
            return Ok(());
        }
        let first_diff = got.iter().zip(scratch.iter()).position(|(a, b)| a != b);
        Err(format!(
            "stream {stream} message {seq}: got {} bytes, expected {}; first differing byte at {first_diff:?}",
            got.len(),
            scratch.len()
        ))
    }
}

// ---------------------------------------------------------------------------------------
// The child side.

/// In a child (`SHMQ_ROLE` set), runs `f(role, queue)`; in a normal test run, nothing.
pub fn run_child(f: impl FnOnce(&str, &str)) {
    let Ok(role) = std::env::var(ENV_ROLE) else {
        return;
    };
    let queue = std::env::var(ENV_QUEUE).unwrap_or_default();
    f(&role, &queue);
}

/// The child's parameter `key` (`SHMQ_ARG_<key>`).
pub fn arg<T: std::str::FromStr>(key: &str) -> T {
    let v = std::env::var(format!("{ENV_ARG}{key}")).unwrap_or_else(|_| panic!("child argument {key} missing"));
    v.parse().unwrap_or_else(|_| panic!("child argument {key}={v:?} does not parse"))
}

/// An argument of this child process, if the parent gave it.
pub fn arg_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    match std::env::var(format!("{ENV_ARG}{key}")) {
        Ok(v) => v.parse().unwrap_or_else(|_| panic!("child argument {key}={v:?} does not parse")),
        Err(_) => default,
    }
}

/// Sends a line to the parent.
pub fn say(msg: &str) {
    let mut out = std::io::stdout().lock();
    // A leading newline: libtest may have left "test child_role ... " on the line.
    writeln!(out, "\n{TAG}{msg}").expect("write to the parent");
    out.flush().expect("flush to the parent");
}

/// Reads a line from the parent; `None` once the parent closed our stdin.
pub fn hear() -> Option<String> {
    let mut line = String::new();
    match std::io::stdin().lock().read_line(&mut line) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(line.trim_end().to_owned()),
    }
}

/// This thread's id, for the parent's look at `/proc/PID/task/TID`.
pub fn tid() -> i32 {
    rustix::thread::gettid().as_raw_nonzero().get()
}

// ---------------------------------------------------------------------------------------
// The parent side.

/// A child process running one role. Dropped without [`wait`](Child::wait), it is killed.
pub struct Child {
    role: String,
    child: std::process::Child,
    lines: mpsc::Receiver<String>,
    stdin: Option<ChildStdin>,
    status: Option<ExitStatus>,
}

impl Child {
    /// Starts this test binary as a child running `role` on `queue`, with parameters.
    pub fn spawn(role: &str, queue: &str, args: &[(&str, String)]) -> Child {
        Child::spawn_env(role, queue, args, &[])
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits (bounded by the watchdog) for the next line the child says; it must start
    /// with `word`. Returns the rest of the line, trimmed.
    pub fn expect(&mut self, word: &str) -> String {
        match self.lines.recv_timeout(WATCHDOG) {
            Ok(line) => {
                let rest = line.strip_prefix(word).unwrap_or_else(|| {
                    panic!("child {}: expected {word:?}, it said {line:?}", self.role);
                });
                rest.trim().to_owned()
            }
            Err(e) => {
                let status = self.child.try_wait().ok().flatten();
                panic!("child {}: no {word:?} ({e}); status {status:?}", self.role)
            }
        }
    }

    /// Sends a line to the child's stdin.
    pub fn tell(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        writeln!(stdin, "{line}").expect("write to the child");
        stdin.flush().expect("flush to the child");
    }

    /// Closes the child's stdin (its [`hear`] returns `None`).
    pub fn hang_up(&mut self) {
        self.stdin = None;
    }

    pub fn signal(&self, sig: Signal) {
        let pid = Pid::from_raw(self.pid() as i32).expect("a child pid is positive");
        rustix::process::kill_process(pid, sig).expect("kill");
    }

    /// `kill -9`, then reaps the child (so it is gone, not a zombie, when this returns).
    pub fn kill9(&mut self) {
        self.signal(Signal::KILL);
        let status = self.wait_until(Instant::now() + WATCHDOG).expect("a killed child exits");
        assert_eq!(status.signal(), Some(libc::SIGKILL), "child {} after kill -9: {status:?}", self.role);
    }

    /// Waits for the child to exit by `deadline`; `None` if it is still running then.
    pub fn wait_until(&mut self, deadline: Instant) -> Option<ExitStatus> {
        if let Some(s) = self.status {
            return Some(s);
        }
        loop {
            if let Some(s) = self.child.try_wait().expect("waitpid") {
                self.status = Some(s);
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits (bounded by the watchdog, then kills it and fails) for a normal exit with
    /// status 0: the role ran to its end without a panic and without a signal.
    pub fn wait_ok(&mut self) {
        self.wait_ok_by(Instant::now() + WATCHDOG);
    }

    /// As [`wait_ok`](Self::wait_ok), with a deadline shared by several children.
    pub fn wait_ok_by(&mut self, deadline: Instant) {
        let Some(status) = self.wait_until(deadline) else {
            let _ = self.child.kill();
            panic!("child {} (pid {}) still running past the watchdog: killed", self.role, self.pid());
        };
        assert!(status.signal().is_none(), "child {} died by signal {:?}", self.role, status.signal());
        assert_eq!(status.code(), Some(0), "child {} failed (a panic in the role is exit code 101)", self.role);
    }

    /// Waits until `/proc` shows the child stopped (after `SIGSTOP`).
    pub fn wait_stopped(&self) {
        let deadline = Instant::now() + WATCHDOG;
        loop {
            if proc_state(self.pid(), self.pid() as i32) == Some('T') {
                return;
            }
            assert!(Instant::now() < deadline, "child {} never showed as stopped", self.role);
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Waits until thread `tid` of the child sleeps in `FUTEX_WAIT` on a shared (not
    /// private) futex while the waiter count at `waiters_off` of `seg` is non-zero: proof
    /// that the child is really asleep on the queue's futex, not spinning, not about to.
    pub fn wait_asleep_on_futex(&self, tid: i32, seg: &RawSegment, waiters_off: u64) {
        let deadline = Instant::now() + WATCHDOG;
        let mut last = String::new();
        loop {
            let waiters = seg.read_u32(waiters_off);
            if waiters > 0 {
                match proc_syscall(self.pid(), tid).filter(|_| SYS_FUTEX.is_some()) {
                    Some(s) if is_shared_futex_wait(&s) => return,
                    Some(s) => last = s,
                    // No /proc/PID/syscall here (or an unknown architecture): the count
                    // is all we can see. Give the few instructions between the count and
                    // the sleep ample time.
                    None => {
                        std::thread::sleep(Duration::from_millis(200));
                        return;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "child {} never slept on the futex (waiters {waiters}, syscall {last:?})",
                self.role
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Field 3 of `/proc/PID/task/TID/stat`.
fn proc_state(pid: u32, tid: i32) -> Option<char> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).ok()?;
    s.rsplit_once(')')?.1.trim_start().chars().next()
}

/// `/proc/PID/task/TID/syscall`: the system call the thread is blocked in.
fn proc_syscall(pid: u32, tid: i32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/syscall")).ok().map(|s| s.trim().to_owned())
}

/// The number of the futex system call, where we know it.
const SYS_FUTEX: Option<u64> = if cfg!(target_arch = "x86_64") {
    Some(202)
} else if cfg!(target_arch = "aarch64") {
    Some(98)
} else {
    None
};

/// Whether a `/proc/.../syscall` line is `futex(addr, FUTEX_WAIT or FUTEX_WAIT_BITSET
/// without FUTEX_PRIVATE_FLAG, ...)`.
fn is_shared_futex_wait(line: &str) -> bool {
    let mut f = line.split_whitespace();
    let nr = f.next().and_then(|n| n.parse::<u64>().ok());
    let _addr = f.next();
    let op = f.next().and_then(|o| u64::from_str_radix(o.trim_start_matches("0x"), 16).ok());
    match (nr, op) {
        (Some(nr), Some(op)) if Some(nr) == SYS_FUTEX => {
            const FUTEX_WAIT: u64 = 0;
            const FUTEX_WAIT_BITSET: u64 = 9;
            const FUTEX_PRIVATE_FLAG: u64 = 128;
            op & FUTEX_PRIVATE_FLAG == 0 && matches!(op & 0x7f, FUTEX_WAIT | FUTEX_WAIT_BITSET)
        }
        _ => false,
    }
}

/// Runs `f` and returns its result and how long it took.
pub fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let t = Instant::now();
    let r = f();
    (r, t.elapsed())
}

// ---------------------------------------------------------------------------------------
// Children with extra environment, exits seen the moment they happen, lines left behind.

impl Child {
    /// As [`spawn`](Child::spawn), with extra environment variables for the child (e.g.
    /// `SHMQ_FAILPOINT`, which the library reads itself).
    pub fn spawn_env(role: &str, queue: &str, args: &[(&str, String)], env: &[(&str, String)]) -> Child {
        let exe = std::env::current_exe().expect("current_exe");
        let mut cmd = Command::new(exe);
        cmd.args(["--exact", ROLE_TEST, "--nocapture", "--test-threads=1", "--quiet"])
            .env(ENV_ROLE, role)
            .env(ENV_QUEUE, queue)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in args {
            cmd.env(format!("{ENV_ARG}{k}"), v);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn a child process");
        let stdout = child.stdout.take().expect("piped stdout");
        let stdin = child.stdin.take();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(i) = line.find(TAG) {
                    if tx.send(line[i + TAG.len()..].to_owned()).is_err() {
                        break;
                    }
                }
            }
        });
        Child { role: role.to_owned(), child, lines, stdin, status: None }
    }

    /// Waits (bounded by the watchdog) for the child to exit and returns its status and the
    /// moment the exit was seen: the call sleeps in `poll` on a pidfd, which becomes
    /// readable as the process dies (after the kernel dropped its locks), so the moment is
    /// exact to a wakeup, not to a polling interval. Falls back to polling every
    /// millisecond where pidfds are missing (Linux < 5.3).
    pub fn wait_exit(&mut self) -> (ExitStatus, Instant) {
        if let Some(s) = self.status {
            return (s, Instant::now());
        }
        let deadline = Instant::now() + WATCHDOG;
        let pid = Pid::from_raw(self.pid() as i32).expect("a child pid is positive");
        if let Ok(fd) = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()) {
            use std::os::fd::AsRawFd;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                assert!(!left.is_zero(), "child {} did not exit within the watchdog", self.role);
                let mut p = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
                // SAFETY: one valid pollfd, for the duration of the call.
                let n = unsafe { libc::poll(&mut p, 1, left.as_millis().min(i32::MAX as u128) as i32) };
                if n == 1 {
                    break;
                }
            }
        }
        let seen = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().expect("waitpid") {
                self.status = Some(s);
                return (s, seen);
            }
            assert!(Instant::now() < deadline, "child {} did not exit within the watchdog", self.role);
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// The lines the child said that nobody [`expect`](Child::expect)ed yet, up to the end
    /// of its output (call it once the child has exited; bounded by the watchdog).
    pub fn remaining_lines(&mut self) -> Vec<String> {
        let deadline = Instant::now() + WATCHDOG;
        let mut out = Vec::new();
        loop {
            match self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => out.push(line),
                Err(mpsc::RecvTimeoutError::Disconnected) => return out,
                Err(mpsc::RecvTimeoutError::Timeout) => panic!("child {}: its output never ended", self.role),
            }
        }
    }

    /// The next line the child says, if it says one within `timeout`.
    pub fn try_line(&mut self, timeout: Duration) -> Option<String> {
        self.lines.recv_timeout(timeout).ok()
    }
}

/// `p`-th percentile (0..=100) of `sorted` (ascending), by the nearest-rank method.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    assert!(!sorted.is_empty());
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

// ---------------------------------------------------------------------------------------
// Waiting for a child asleep on a futex whose waiter count is not at a fixed offset.

impl Child {
    /// Waits until thread `tid` of the child sleeps in `FUTEX_WAIT` on a shared (not
    /// private) futex, as `/proc/PID/task/TID/syscall` shows it: for waits whose waiter
    /// count is not at a fixed offset of the header (a subscription member's). Where `/proc`
    /// does not show system calls, gives the few instructions before the sleep ample time.
    pub fn wait_in_shared_futex(&self, tid: i32) {
        let deadline = Instant::now() + WATCHDOG;
        loop {
            let last = match proc_syscall(self.pid(), tid).filter(|_| SYS_FUTEX.is_some()) {
                Some(s) if is_shared_futex_wait(&s) => return,
                Some(s) => s,
                None => {
                    std::thread::sleep(Duration::from_millis(200));
                    return;
                }
            };
            assert!(Instant::now() < deadline, "child {} never slept on a shared futex (syscall {last:?})", self.role);
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

// ---------------------------------------------------------------------------------------
// Durable queues.

/// A log directory on the real disk (under the build's temporary directory), removed on
/// drop. `tag` names it within a test binary; the process id keeps binaries apart.
pub struct LogDir(pub std::path::PathBuf);

impl LogDir {
    pub fn new(tag: &str) -> LogDir {
        let p = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("shmq-log-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        LogDir(p)
    }

    /// The directory as a string (for command lines).
    pub fn path(&self) -> &str {
        self.0.to_str().expect("UTF-8 path")
    }
}

impl Drop for LogDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

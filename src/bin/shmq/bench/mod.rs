//! `shmq bench`: how much faster than a pipe or a Unix socket is shmq, and how close to the
//! bare floor of the machine, measured between two processes.
//!
//! # Method
//! * Two processes: this one (the *leader*, which measures) and a *peer*: the same binary
//!   re-executed as `shmq bench-peer`, driven over a control pipe (its stdin and stdout).
//!   On a machine with two or more CPUs each is pinned to its own CPU.
//! * **Latency**: ping-pong. The leader sends a message, the peer receives it, verifies it
//!   and sends it back, the leader receives and verifies it. One clock read per round trip;
//!   one-way latency = round trip / 2, recorded in an HdrHistogram (p50, p90, p99, p99.9,
//!   max). Each run starts with unrecorded warm-up round trips.
//! * **Throughput**: streaming. The leader sends numbered messages back to back; the peer
//!   receives each, verifies its sequence number and payload, and reports on the control
//!   pipe when it has them all. Messages/s and MB/s (MB = 10⁶ bytes).
//! * Every transport copies each message in (from the sender's buffer) and out (into the
//!   receiver's buffer) and verifies it, so the comparison is fair.
//! * **Rounds**: on a VM the distance between two CPUs can change within seconds, so the
//!   transports run interleaved (A B C A B C …); each ratio is taken within a round and the
//!   median over rounds is reported. A floor probe runs before and after, so a reader sees
//!   when placement moved.
//!
//! # Transports
//! * `shmq` (waits `spin`, `block`, `adaptive`): two SPSC queues, one per direction.
//!   Latency uses `send` and `recv`; throughput uses `send` and `recv_batch`.
//! * `shmq-c` (the same waits): the same queues through the C ABI ([`c_abi`]): both
//!   processes load `libshmq.so` with `dlopen` and call `shmq_send` and `shmq_recv` (which
//!   copies the message into the receiver's buffer, as the Rust transport's `recv` and copy
//!   do), for latency and throughput alike: the C ABI has no batch receive.
//!   Its p50 and p99 are compared with `shmq`'s of the same wait, within each round.
//! * `spin-floor`: no queue at all. A shared mapping of the bench's own.
//!   - Latency: one slot per direction: an 8-byte header (a 32-bit sequence word and an ack
//!     word) followed by the payload, like a record. The sender copies the message in and
//!     stores the sequence with Release; the receiver spins on it with Acquire and copies
//!     the message out. This is the cost of moving the message's cache lines between the
//!     two CPUs: no queue can beat it.
//!   - Throughput: the strongest simple single-producer/single-consumer ring for
//!     fixed-size messages (no queue machinery): a power of two of fixed-size records, at
//!     least the bytes of the shmq queue it is compared with (1 MiB, or 16 messages' worth
//!     when larger), each an 8-byte stamp (sequence number and length) and the payload,
//!     packed back to back 8-byte aligned. The consumer sees a record arrive by its stamp
//!     (the producer publishes no index); the consumer's index sits on its own 128-byte line,
//!     stored once per batch (and at least every quarter ring), and the producer re-reads it
//!     only when its last reading says the ring is full. Spin waiting. The producer copies
//!     each message in, the consumer copies it out and verifies it like every other
//!     transport. The bound on streaming through shared memory with the same copies.
//! * `futex-floor`: the same slots, but the receiver sleeps at once in `FUTEX_WAIT` on the
//!   sequence word (shared, not private: the memory is shared) and the sender always calls
//!   `FUTEX_WAKE`: the cost of a bare cross-process wakeup. It streams through the same
//!   ring, but a side that finds it empty (consumer) or full (producer) raises a waiter flag
//!   and sleeps at once in `FUTEX_WAIT`; the other side calls `FUTEX_WAKE` only when the
//!   flag is up (a `SeqCst` fence on each side keeps wakeups from being lost).
//! * `pipe`: two FIFOs (kernel pipes, default size), `write` and `read` of fixed-size
//!   messages (no length prefix: the kernel transports' best case); the streaming reader
//!   reads through a 256 KiB buffer.
//! * `uds`: a Unix stream socket pair (connected through a socket file), used the same way.
//!
//! Kernel transports and the floors report `wait` as the mode they run in: `block` for
//! pipe, uds and futex-floor, `spin` for spin-floor.

pub mod acks;
pub mod c_abi;
pub mod durable;
pub mod fanout;
pub mod floors;
pub mod peer;
pub mod plot;
pub mod report;
pub mod transports;

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::ValueEnum;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::args::parse_usize_size;

fn size_label(n: usize) -> String {
    crate::args::format_size(n as u64)
}

/// `shmq bench --help`.
pub const LONG_HELP: &str = "\
Measure shmq against bare floors and kernel transports, between two processes: this one and
a peer (the same binary re-executed), each pinned to its own CPU when there are two or more.

Latency is ping-pong: one-way = round trip / 2, in an HdrHistogram (p50 p90 p99 p99.9 max).
Throughput is streaming: messages/s and MB/s (MB = 10^6 bytes), sequence numbers verified.
Every transport copies each message in and out and verifies it.

Transports:
  shmq         two SPSC queues (one per direction), with the waits spin, block, adaptive
  shmq-c       the same queues through the C ABI: both processes load libshmq.so at run time
               (--libshmq PATH; default: libshmq.so next to this executable, built by
               `cargo build --release -p shmq-c`) and call shmq_send and shmq_recv (which
               copies into the receiver's buffer), as a C program does. In the default
               transports only when the library loads (stderr says why not). Ratio lines
               shmq-c / shmq: p50 (target: at most 10 ns more) and p99 (target: at most 10 %
               more), per wait
  spin-floor   no queue: a shared mapping of the bench's own. Ping-pong: one slot per
               direction; the sender copies the message in and stores a sequence word, the
               receiver spins on it and copies the message out. The cache-line ping-pong
               floor: nothing that crosses CPUs through memory can be faster. Streaming: a
               bare single-producer/single-consumer ring of fixed-size records, >= the bytes
               of the shmq queue (1 MiB, or 16 messages if more), each an 8-byte stamp
               (sequence number, length) + the payload, packed. The consumer sees a record
               by its stamp (no producer index); the consumer's index is on its own cache
               line, stored once per batch, and the producer reads it only when the ring
               looks full. The producer copies in, the consumer copies out and verifies;
               both spin. The floor ring for throughput.
  futex-floor  the same slots, but the receiver sleeps in FUTEX_WAIT (shared futex) and the
               sender always calls FUTEX_WAKE: the floor for a blocking wakeup. Streaming:
               the same ring, but a side that finds it empty or full raises a waiter flag and
               sleeps in FUTEX_WAIT; the other wakes it only when the flag is up.
  pipe         two kernel pipes (FIFOs), fixed-size write/read
  uds          a Unix stream socket, fixed-size write/read

Transports run interleaved in rounds (A B C A B C ...); ratios are taken within each round
and their median is reported, with a spin-floor probe before and after the run, because on
VMs the distance between two CPUs can change within seconds. The table ends with shmq's
ratios to each floor and to the fastest kernel transport: p50 latency, and streaming
messages/s (the same ratio as MB/s: one size per row).

--fanout measures subscriptions instead, between one producer (this process) and 1-4 member
processes, all waiting with block, not pinned: baseline (the default consumer), fanout4 (4
subscriptions, 1 member each), members1 and members2 (1 subscription shared by 1, then 2
members). Every subscription is checked to receive each message exactly once. It reports
delivered msgs/s (until every subscription has everything) and the ratios fanout4/baseline
and members2/members1 (median over rounds). Sizes default to 64,1KiB,64KiB.

--durable measures durable queues against the volatile queue and a disk floor, with real
processes and real files in --dir (default: a new directory under the current one; tmpfs
refused unless --allow-tmpfs). The disk floor is the strongest simple log: a writer process
appends the same frames with one pwrite per batch of B records to a preallocated file, then
(always) one fdatasync, and publishes the readable length on a FIFO; a reader process reads
only published bytes. Cases: disk-floor-never/-always, shmq (volatile) and
shmq-durable-never (ping-pong latency, then a stream), shmq-durable-always with 4 producer
processes pipelining send_nowait + wait_durable every W (--batch, default 64; B = 4 x W)
and with 1 producer calling blocking send. Sizes default to 64,1KiB.

--acks measures explicit acknowledgements on durable queues (Fsync::Never, logs in --dir as
with --durable), one producer (this process) and member processes, all blocking: throughput
of one member of a named subscription with Ack::Auto against one with Ack::Explicit that acks
every message (interleaved rounds, each member checked to get exactly 0..M in order; delivered
msgs/s and the ratio explicit/auto, target >= 0.7 at 64 B), then redelivery after a death:
--kills rounds (default 30) in which a member holding 8 messages unacked (ack_wait 30 s) is
killed with SIGKILL while another waits in recv_timeout; the latency from the kill to the
first message delivered again (CLOCK_MONOTONIC in both processes): p50 p90 p99 max, target
p99 <= 250 ms. Sizes default to 64,1KiB.";

/// Options of `shmq bench`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Message sizes, comma-separated (1 B to 16 MiB) [default: 8,64,1KiB,64KiB; with
    /// --fanout: 64,1KiB,64KiB].
    #[arg(long, value_delimiter = ',', value_parser = parse_usize_size)]
    pub size: Vec<usize>,
    /// Transports, comma-separated (default: all).
    #[arg(long, value_delimiter = ',', value_enum)]
    pub transport: Vec<Kind>,
    /// shmq wait policies, comma-separated (default: all).
    #[arg(long, value_delimiter = ',', value_enum)]
    pub wait: Vec<WaitKind>,
    /// Measure subscriptions instead: one producer feeding the default consumer, 4
    /// subscriptions, and 1 then 2 members sharing one, all blocking, in separate processes.
    #[arg(long, conflicts_with_all = ["transport", "wait", "hgrm", "plot"])]
    pub fanout: bool,
    /// Measure durable queues instead: Fsync::Never and Always against the volatile queue
    /// and a disk floor (write + fdatasync per batch), with real files in --dir.
    #[arg(long, conflicts_with_all = ["transport", "wait", "hgrm", "plot", "fanout"])]
    pub durable: bool,
    /// With --durable or --acks: where files and logs go (default: a new directory under the
    /// current one).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// With --durable or --acks: allow --dir on tmpfs (which measures no disk).
    #[arg(long)]
    pub allow_tmpfs: bool,
    /// Measure explicit acks instead: Ack::Explicit against Ack::Auto on a durable queue,
    /// and redelivery after a member is killed, with real processes and logs in --dir.
    #[arg(long, conflicts_with_all = ["transport", "wait", "hgrm", "plot", "fanout", "durable", "batch"])]
    pub acks: bool,
    /// With --acks: redelivery rounds, each killing a member (default 30; 10 with --quick).
    #[arg(long, value_name = "N", requires = "acks")]
    pub kills: Option<u32>,
    /// With --durable: W, messages between a pipelining producer's wait_durable calls
    /// (default 64); the disk floor syncs every 4 x W records.
    #[arg(long, value_name = "W", requires = "durable")]
    pub batch: Option<u64>,
    /// Round trips (and streamed messages) per transport, size and round (default: as many
    /// as fit in a time budget per run).
    #[arg(long, value_name = "N")]
    pub messages: Option<u64>,
    /// Rounds (default 5; 3 with --quick).
    #[arg(long, value_name = "N")]
    pub rounds: Option<u32>,
    /// A short run (under 20 s): shorter time budgets and 3 rounds.
    #[arg(long)]
    pub quick: bool,
    /// Write the results as JSON to FILE (schema_version 1).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write HdrHistogram percentile-distribution files (.hgrm, microseconds) into DIR.
    #[arg(long, value_name = "DIR")]
    pub hgrm: Option<PathBuf>,
    /// Draw latency by percentile for every transport into an SVG file.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// Do not pin the two processes to CPUs.
    #[arg(long)]
    pub no_pin: bool,
    /// The C library for the shmq-c transport [default: libshmq.so next to this executable].
    #[arg(long, value_name = "PATH", conflicts_with_all = ["fanout", "durable", "acks"])]
    pub libshmq: Option<PathBuf>,
}

/// A transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// shmq SPSC queues.
    Shmq,
    /// The same queues through the C ABI: libshmq.so, loaded at run time.
    ShmqC,
    /// Bare cache-line ping-pong, and the strongest simple spinning ring for streaming.
    SpinFloor,
    /// Bare futex wait/wake, and the same ring sleeping when empty or full, through shared memory.
    FutexFloor,
    /// Kernel pipes.
    Pipe,
    /// Unix stream sockets.
    Uds,
}

impl Kind {
    /// Every transport, in the order of the table.
    pub const ALL: [Kind; 6] = [Kind::Shmq, Kind::ShmqC, Kind::SpinFloor, Kind::FutexFloor, Kind::Pipe, Kind::Uds];

    /// The name in the table and the JSON.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Shmq => "shmq",
            Kind::ShmqC => "shmq-c",
            Kind::SpinFloor => "spin-floor",
            Kind::FutexFloor => "futex-floor",
            Kind::Pipe => "pipe",
            Kind::Uds => "uds",
        }
    }

    /// Whether the kernel carries the messages.
    pub fn is_kernel(self) -> bool {
        matches!(self, Kind::Pipe | Kind::Uds)
    }

    /// Whether it is a shmq queue, measured with every wait policy.
    pub fn is_shmq(self) -> bool {
        matches!(self, Kind::Shmq | Kind::ShmqC)
    }
}

/// How a side waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WaitKind {
    /// Busy-poll.
    Spin,
    /// Sleep in the kernel.
    Block,
    /// Spin, then sleep (shmq only).
    Adaptive,
}

impl WaitKind {
    /// The name in the table and the JSON.
    pub fn name(self) -> &'static str {
        match self {
            WaitKind::Spin => "spin",
            WaitKind::Block => "block",
            WaitKind::Adaptive => "adaptive",
        }
    }

    /// The library's policy.
    pub fn to_shmq(self) -> shmq::Wait {
        match self {
            WaitKind::Spin => shmq::Wait::Spin,
            WaitKind::Block => shmq::Wait::Block,
            WaitKind::Adaptive => shmq::Wait::Adaptive,
        }
    }
}

/// One measured combination: a transport and how it waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Config {
    /// The transport.
    pub kind: Kind,
    /// How it waits (fixed for everything but shmq).
    pub wait: WaitKind,
}

impl Config {
    /// `shmq/spin`, `pipe`, ...
    pub fn label(self) -> String {
        if self.kind.is_shmq() {
            format!("{}/{}", self.kind.name(), self.wait.name())
        } else {
            self.kind.name().to_owned()
        }
    }
}

/// What the peer is asked to do in one run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunSpec {
    /// Transport and wait.
    pub config: Config,
    /// Message size in bytes.
    pub size: usize,
    /// Warm-up round trips before the leader says `go`.
    pub warmup: u64,
    /// The transport's rendezvous: queue base name, shm object name, or directory.
    pub resource: String,
    /// `shmq bench --fanout`: the peer joins a queue as a consumer or subscription member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<fanout::MemberSpec>,
    /// `shmq bench --durable`: the peer plays this role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub durable: Option<durable::Role>,
    /// The `shmq-c` transport: the `libshmq.so` that both processes load.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub libshmq: Option<PathBuf>,
}

/// Time budgets and counts of a run.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    /// Warm-up round trips per run.
    pub warmup: u64,
    /// Time for the recorded round trips of one run.
    pub latency: Duration,
    /// Time for the stream of one run.
    pub throughput: Duration,
    /// Fixed counts instead of the time budgets.
    pub fixed: Option<u64>,
}

/// Round trips skipped after `go` (the peer was reading the control pipe).
pub const SKIP_AFTER_GO: u64 = 16;
/// Fewest round trips or streamed messages of a time-budgeted run.
const MIN_COUNT: u64 = 200;
/// Most round trips or streamed messages of a time-budgeted run.
const MAX_COUNT: u64 = 5_000_000;
/// Largest message the bench sends.
const MAX_SIZE: usize = 16 << 20;
/// Longest any wait in the bench may take before it is declared stuck.
pub const STUCK: Duration = Duration::from_secs(20);

/// Set when the peer process exits: every loop of the leader that could wait for it stops.
pub static PEER_GONE: AtomicBool = AtomicBool::new(false);
/// Queues the current run uses, removed by the watchdog if the peer dies so that a blocked
/// `recv` returns `Closed`.
pub static CURRENT_QUEUES: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Bytes of message `seq`: its sequence number (little-endian, as many bytes as fit in 8)
/// and then the fixed pattern.
pub fn stamp(buf: &mut [u8], seq: u64) {
    let n = buf.len().min(8);
    buf[..n].copy_from_slice(&seq.to_le_bytes()[..n]);
}

/// Whether `buf` is message `seq` of a run whose pattern is `pattern`.
#[inline]
pub fn check(buf: &[u8], seq: u64, pattern: &[u8]) -> bool {
    let n = buf.len().min(8);
    buf.len() == pattern.len() && buf[..n] == seq.to_le_bytes()[..n] && buf[n..] == pattern[n..]
}

/// `CLOCK_MONOTONIC` in ns: the same clock in every process of the host.
pub fn mono_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

/// Clock `id` now, in ns (0 for a negative time). Through libc (the vDSO), not rustix,
/// whose own lookup of the vDSO crashes under valgrind.
pub fn clock_ns(id: libc::clockid_t) -> u64 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `t` is a valid, writable timespec; the clocks asked for always exist, and on
    // the impossible failure `t` stays zero.
    unsafe { libc::clock_gettime(id, &mut t) };
    u64::try_from(t.tv_sec).map_or(0, |s| s.saturating_mul(1_000_000_000).saturating_add(t.tv_nsec as u64))
}

/// The payload pattern of messages of `size` bytes.
pub fn pattern(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i as u8).wrapping_mul(31).wrapping_add(7)).collect()
}

/// The CPUs this process may run on.
pub fn allowed_cpus() -> Vec<usize> {
    match rustix::thread::sched_getaffinity(None) {
        Ok(set) => (0..rustix::thread::CpuSet::MAX_CPU).filter(|&c| set.is_set(c)).collect(),
        Err(_) => (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect(),
    }
}

/// Pins the calling thread to `cpu`.
pub fn pin(cpu: usize) -> Result<()> {
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu);
    rustix::thread::sched_setaffinity(None, &set).with_context(|| format!("pin to CPU {cpu}"))
}

/// The leader's handle on the peer process: its control pipe and a watchdog thread that
/// notices when it exits.
pub struct Peer {
    pid: rustix::process::Pid,
    to: ChildStdin,
    from: BufReader<ChildStdout>,
    watchdog: Option<std::thread::JoinHandle<Option<std::process::ExitStatus>>>,
}

impl Peer {
    fn spawn(cpu: Option<usize>) -> Result<Peer> {
        PEER_GONE.store(false, Ordering::SeqCst);
        let exe = std::env::current_exe().context("find the shmq executable to start the peer")?;
        let mut cmd = Command::new(exe);
        cmd.arg("bench-peer").stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit());
        if let Some(c) = cpu {
            cmd.arg("--cpu").arg(c.to_string());
        }
        let mut child: Child = cmd.spawn().context("start the peer process")?;
        let pid = rustix::process::Pid::from_child(&child);
        let to = child.stdin.take().expect("piped stdin");
        let from = BufReader::new(child.stdout.take().expect("piped stdout"));
        let watchdog = std::thread::spawn(move || {
            let status = child.wait().ok();
            PEER_GONE.store(true, Ordering::SeqCst);
            // Wake a leader blocked in a shmq recv: removal makes it return `Closed`.
            for q in CURRENT_QUEUES.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                let _ = shmq::Queue::remove(q);
            }
            status
        });
        let mut peer = Peer { pid, to, from, watchdog: Some(watchdog) };
        peer.expect("hello")?;
        Ok(peer)
    }

    /// Sends one control line.
    pub fn say(&mut self, line: &str) -> Result<()> {
        writeln!(self.to, "{line}").and_then(|_| self.to.flush()).map_err(|e| self.gone(e.into()))
    }

    /// Reads one control line; a line `error ...` from the peer becomes an error.
    pub fn hear(&mut self) -> Result<String> {
        let mut line = String::new();
        match self.from.read_line(&mut line) {
            Ok(0) => Err(self.gone(anyhow!("the peer closed the control pipe"))),
            Ok(_) => {
                let line = line.trim_end().to_owned();
                match line.strip_prefix("error ") {
                    Some(msg) => Err(anyhow!("peer: {msg}")),
                    None => Ok(line),
                }
            }
            Err(e) => Err(self.gone(e.into())),
        }
    }

    /// Reads one control line and checks it is `want`.
    pub fn expect(&mut self, want: &str) -> Result<()> {
        let got = self.hear()?;
        if got != want {
            bail!("peer said {got:?}, expected {want:?}");
        }
        Ok(())
    }

    /// Adds the peer's side of a failure to the leader's: a peer that failed says why on
    /// the control pipe and exits, which usually shows on the leader as a broken transport.
    pub fn explain(&mut self, e: anyhow::Error) -> anyhow::Error {
        let t0 = Instant::now();
        while !PEER_GONE.load(Ordering::SeqCst) && t0.elapsed() < Duration::from_secs(1) {
            std::thread::sleep(Duration::from_millis(5));
        }
        if !PEER_GONE.load(Ordering::SeqCst) {
            return e;
        }
        // The peer is gone: whatever it said is in the pipe, which ends at EOF.
        let mut said = String::new();
        let _ = std::io::Read::read_to_string(&mut self.from, &mut said);
        match said.lines().find_map(|l| l.strip_prefix("error ")) {
            Some(msg) => e.context(format!("the peer failed: {msg}")),
            None => e.context("the peer process exited"),
        }
    }

    fn gone(&mut self, e: anyhow::Error) -> anyhow::Error {
        if PEER_GONE.load(Ordering::SeqCst) { e.context("the peer process exited") } else { e }
    }

    /// Closes the control pipe (the peer exits) and waits for it.
    fn finish(mut self) -> Result<()> {
        let _ = writeln!(self.to, "quit").and_then(|_| self.to.flush());
        let status = self.watchdog.take().and_then(|w| w.join().ok()).flatten();
        match status {
            Some(s) if s.success() => Ok(()),
            Some(s) => bail!("the peer process failed: {s}"),
            None => bail!("lost track of the peer process"),
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Some(w) = self.watchdog.take() {
            // Unfinished (an error): stop the peer, then collect it.
            let _ = rustix::process::kill_process(self.pid, rustix::process::Signal::KILL);
            let _ = w.join();
        }
    }
}

/// One (config, size, round) measurement.
#[derive(Clone, Debug)]
pub struct Sample {
    /// One-way latency in nanoseconds.
    pub hist: Histogram<u64>,
    /// Recorded round trips.
    pub round_trips: u64,
    /// Messages streamed.
    pub streamed: u64,
    /// Time the stream took.
    pub stream_time: Duration,
}

/// A new histogram for one-way nanoseconds: 1 ns to 100 s, three significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid histogram bounds")
}

/// Everything measured, for the report.
pub struct Measurements {
    /// Configurations in table order.
    pub configs: Vec<Config>,
    /// Sizes in table order.
    pub sizes: Vec<usize>,
    /// `samples[round][size index][config index]`.
    pub samples: Vec<Vec<Vec<Sample>>>,
    /// Spin-floor probe p50 (ns) before and after, if it ran.
    pub probe: Option<(usize, u64, u64)>,
    /// Pinned CPUs (leader, peer).
    pub pinned: Option<(usize, usize)>,
    /// CPUs the bench was allowed to use (before pinning).
    pub cpus: usize,
    /// Budgets used.
    pub budget: Budget,
    /// Wall time of the whole run.
    pub elapsed: Duration,
}

/// `shmq bench`.
pub fn run(mut args: BenchArgs) -> Result<()> {
    if args.size.is_empty() {
        args.size = if args.durable || args.acks {
            vec![64, 1 << 10]
        } else if args.fanout {
            vec![64, 1 << 10, 64 << 10]
        } else {
            vec![8, 64, 1 << 10, 64 << 10]
        };
    }
    for &s in &args.size {
        if s == 0 || s > MAX_SIZE {
            crate::usage_error(format!("invalid --size {s}: from 1 B to 16 MiB (pipes cannot carry empty messages)"));
        }
    }
    if args.rounds == Some(0) || args.messages == Some(0) {
        crate::usage_error("--rounds and --messages must be at least 1");
    }
    if (args.dir.is_some() || args.allow_tmpfs) && !(args.durable || args.acks) {
        crate::usage_error("--dir and --allow-tmpfs go with --durable or --acks");
    }
    if args.fanout {
        return run_fanout(&args);
    }
    if args.acks {
        return acks::run_cli(&args);
    }
    if args.durable {
        return run_durable(&args);
    }
    let cpus = allowed_cpus();
    let pinned = if cpus.len() >= 2 && !args.no_pin { Some((cpus[0], cpus[1])) } else { None };
    let mut transports: Vec<Kind> = if args.transport.is_empty() { Kind::ALL.to_vec() } else { dedup(&args.transport) };
    // shmq-c needs libshmq.so: asked for, it must load; by default it runs when it loads.
    let clib = if transports.contains(&Kind::ShmqC) {
        let path = match &args.libshmq {
            Some(p) => p.clone(),
            None => c_abi::default_path()?,
        };
        match c_abi::load(&path) {
            Ok(lib) => Some(lib),
            Err(e) if args.transport.is_empty() => {
                eprintln!("shmq bench: transport shmq-c skipped: {e:#}");
                transports.retain(|&k| k != Kind::ShmqC);
                None
            }
            Err(e) => return Err(e.context("transport shmq-c")),
        }
    } else {
        None
    };
    let waits: Vec<WaitKind> = if args.wait.is_empty() {
        vec![WaitKind::Spin, WaitKind::Block, WaitKind::Adaptive]
    } else {
        dedup(&args.wait)
    };
    let single_cpu = cpus.len() < 2;
    let mut configs = Vec::new();
    for &kind in &transports {
        match kind {
            Kind::Shmq | Kind::ShmqC => {
                for &wait in &waits {
                    if single_cpu && wait != WaitKind::Block && args.wait.is_empty() {
                        continue;
                    }
                    configs.push(Config { kind, wait });
                }
            }
            Kind::SpinFloor if single_cpu && args.transport.is_empty() => {}
            Kind::SpinFloor => configs.push(Config { kind, wait: WaitKind::Spin }),
            _ => configs.push(Config { kind, wait: WaitKind::Block }),
        }
    }
    if configs.is_empty() {
        crate::usage_error("nothing to measure: check --transport and --wait");
    }
    if single_cpu {
        eprintln!("shmq bench: only one CPU available: spinning transports skipped unless asked for");
    }
    let rounds = args.rounds.unwrap_or(if args.quick { 3 } else { 5 });
    let budget = if args.quick {
        Budget {
            warmup: 100,
            latency: Duration::from_millis(25),
            throughput: Duration::from_millis(15),
            fixed: args.messages,
        }
    } else {
        Budget {
            warmup: 300,
            latency: Duration::from_millis(200),
            throughput: Duration::from_millis(100),
            fixed: args.messages,
        }
    };
    let sizes = args.size.clone();
    let m = measure(&configs, &sizes, rounds, budget, pinned, !single_cpu, clib)?;
    let rep = report::Report::build(&m, args.quick);
    let table = report::table(&m, &rep);
    print!("{table}");
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&rep)? + "\n";
        std::fs::write(path, text).with_context(|| format!("write {}", path.display()))?;
    }
    if let Some(dir) = &args.hgrm {
        report::write_hgrm(dir, &m).with_context(|| format!("write histograms into {}", dir.display()))?;
    }
    if let Some(path) = &args.plot {
        plot::draw(path, &m).with_context(|| format!("draw {}", path.display()))?;
    }
    Ok(())
}

/// `shmq bench --fanout`.
fn run_fanout(args: &BenchArgs) -> Result<()> {
    if let Some(&s) = args.size.iter().find(|&&s| s < fanout::MIN_SIZE) {
        crate::usage_error(format!(
            "invalid --size {s} with --fanout: at least {} B (each message carries its sequence number)",
            fanout::MIN_SIZE
        ));
    }
    let plan = fanout::Plan {
        sizes: args.size.clone(),
        rounds: args.rounds.unwrap_or(if args.quick { 3 } else { 5 }),
        budget: Duration::from_millis(if args.quick { 40 } else { 250 }),
        fixed: args.messages,
        warmup: if args.quick { 500 } else { 2000 },
        quick: args.quick,
    };
    fanout::run(&plan, args.json.as_deref())
}

/// `shmq bench --durable`.
fn run_durable(args: &BenchArgs) -> Result<()> {
    if let Some(&s) = args.size.iter().find(|&&s| s < durable::MIN_SIZE) {
        crate::usage_error(format!(
            "invalid --size {s} with --durable: at least {} B (each message carries a tag and a send time)",
            durable::MIN_SIZE
        ));
    }
    if args.batch == Some(0) {
        crate::usage_error("--batch must be at least 1");
    }
    let messages = args.messages.unwrap_or(if args.quick { 20_000 } else { 200_000 });
    if messages < u64::from(durable::PRODUCERS) {
        crate::usage_error(format!("--messages must be at least {} with --durable", durable::PRODUCERS));
    }
    let every = args.batch.unwrap_or(64);
    let (dir, made) = match &args.dir {
        Some(d) => (d.clone(), false),
        None => {
            let d = std::env::current_dir()
                .context("find the current directory")?
                .join(format!("shmq-bench-durable-{}", std::process::id()));
            std::fs::create_dir(&d).with_context(|| format!("create {}", d.display()))?;
            (d, true)
        }
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let dir = dir.canonicalize().with_context(|| format!("resolve {}", dir.display()))?;
    let result = durable::check_dir(&dir, args.allow_tmpfs).and_then(|fs| {
        let plan = durable::Plan {
            sizes: args.size.clone(),
            rounds: args.rounds.unwrap_or(if args.quick { 3 } else { 5 }),
            messages,
            round_trips: (messages / 10).max(100),
            blocking: (messages / 200).max(20),
            every,
            batch: every * u64::from(durable::PRODUCERS),
            dir: dir.clone(),
            quick: args.quick,
        };
        durable::run(&plan, fs, args.json.as_deref())
    });
    if made {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

fn dedup<T: Copy + Ord>(v: &[T]) -> Vec<T> {
    let mut out: Vec<T> = Vec::new();
    for &x in v {
        if !out.contains(&x) {
            out.push(x);
        }
    }
    out
}

/// Runs every round: starts the peer, measures, stops the peer.
fn measure(
    configs: &[Config],
    sizes: &[usize],
    rounds: u32,
    budget: Budget,
    pinned: Option<(usize, usize)>,
    probe: bool,
    clib: Option<&'static c_abi::CLib>,
) -> Result<Measurements> {
    let start = Instant::now();
    let cpus = allowed_cpus().len();
    if let Some((cpu, _)) = pinned {
        pin(cpu)?;
    }
    let mut peer = Peer::spawn(pinned.map(|p| p.1))?;
    let mut ctx = transports::Context::new(clib)?;
    let total = u64::from(rounds) * (sizes.len() * configs.len()) as u64 + if probe { 2 } else { 0 };
    // A bar on a terminal; otherwise (a log, CI) one line per phase, so that a long run is
    // never silent.
    let lines = !std::io::IsTerminal::is_terminal(&std::io::stderr());
    let say = |what: &str| {
        if lines {
            eprintln!("shmq bench: [{:>5.1} s] {what}", start.elapsed().as_secs_f64());
        }
    };
    let bar = if lines { indicatif::ProgressBar::hidden() } else { indicatif::ProgressBar::new(total) };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} (eta {eta})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let probe_size = if sizes.contains(&64) { 64 } else { sizes[0] };
    let probe_cfg = Config { kind: Kind::SpinFloor, wait: WaitKind::Spin };
    let probe_budget = Budget {
        warmup: budget.warmup,
        latency: budget.latency / 2,
        throughput: Duration::from_millis(1),
        fixed: None,
    };
    let run_probe = |peer: &mut Peer, ctx: &mut transports::Context, bar: &indicatif::ProgressBar, when: &str| {
        let what = format!("floor probe {when}: spin-floor ping-pong, {}", size_label(probe_size));
        say(&what);
        bar.set_message(what);
        let s = transports::run_one(peer, ctx, probe_cfg, probe_size, probe_budget);
        bar.inc(1);
        s.map(|s| s.hist.value_at_quantile(0.5))
    };
    let before = if probe { Some(run_probe(&mut peer, &mut ctx, &bar, "before")?) } else { None };
    let mut samples = Vec::new();
    for r in 0..rounds {
        let mut by_size = Vec::new();
        for &size in sizes {
            let labels: Vec<String> = configs.iter().map(|c| c.label()).collect();
            say(&format!("round {}/{rounds}, {}: {}", r + 1, size_label(size), labels.join(", ")));
            let mut by_cfg = Vec::new();
            for &cfg in configs {
                bar.set_message(format!("round {}/{rounds}: {} {}", r + 1, cfg.label(), size_label(size)));
                let s = transports::run_one(&mut peer, &mut ctx, cfg, size, budget)
                    .with_context(|| format!("{} with {size}-byte messages", cfg.label()))?;
                by_cfg.push(s);
                bar.inc(1);
            }
            by_size.push(by_cfg);
        }
        samples.push(by_size);
    }
    let after = if probe { Some(run_probe(&mut peer, &mut ctx, &bar, "after")?) } else { None };
    bar.finish_and_clear();
    say("done");
    peer.finish()?;
    Ok(Measurements {
        configs: configs.to_vec(),
        sizes: sizes.to_vec(),
        samples,
        probe: before.zip(after).map(|(b, a)| (probe_size, b, a)),
        pinned,
        cpus,
        budget,
        elapsed: start.elapsed(),
    })
}

/// How many round trips (or messages) fit in `budget` at `per_item` each.
pub fn count_for(budget: Duration, per_item: Duration) -> u64 {
    let per = per_item.as_nanos().max(1);
    ((budget.as_nanos() / per) as u64).clamp(MIN_COUNT, MAX_COUNT)
}

//! `shmq bench --durable`: what durability costs, against the volatile queue and against a
//! disk floor, with real processes and real files, in one run.
//!
//! # Method
//! * Up to five *peer* processes (the same binary re-executed as `shmq bench-peer`, not
//!   pinned) play roles the leader hands out; the leader creates the queues and files,
//!   says `go`, and collects each role's report: its start and end times (`CLOCK_MONOTONIC`,
//!   shared by every process of the host) and histograms.
//! * Every case runs in peers started for it, which exit when it ends. Peers kept from one
//!   case to the next carried the first case's effects into the second: on the 2-vCPU VM
//!   of the figures, the disk floor's rate at 64 B was 11-16% lower when its writer and
//!   reader had, in the case before, been a reader that polled (`sched_yield`) through each
//!   of a thousand syncs, and the same as ever in processes that had not.
//! * Every message carries a tag (producer index and sequence number) and, one message in
//!   [`SAMPLE`], its send time; the receiver checks the tag order and the payload pattern
//!   and records `now - send time` (one-way latency under load).
//! * **disk-floor-never / disk-floor-always**: the strongest simple design of a log. A
//!   writer process builds the same frames a durable queue writes (32-byte header with a
//!   crc32c, the payload, padded to 8 bytes) into a buffer, appends each batch of B
//!   records with one `pwrite` to a file preallocated with `fallocate` (as the queue's log
//!   segments are), then (`always`) one `fdatasync`, and publishes the length now readable
//!   (synced, for `always`) as an 8-byte word on a FIFO. A reader process waits on the
//!   FIFO, `pread`s the new bytes from the file and checks every record. Latency: from the
//!   record's append into the writer's buffer (its write call) to the reader having read it.
//! * **shmq** (volatile) and **shmq-durable-never**: ping-pong between two processes over
//!   two queues (one-way = round trip / 2, as in `shmq bench`), and a stream from one
//!   producer process to one consumer process (SPSC, 1 MiB ring).
//! * **shmq-durable-always**, `pipelined`: 4 producer processes each send their share with
//!   `send_nowait` and call `wait_durable` on their last id every W messages (and at the
//!   end); one consumer process (MPSC queue). `blocking`: one producer calling `send`,
//!   which returns once synced. Sync latency = the time of each `wait_durable` (or
//!   blocking `send`).
//! * Throughput = messages / (last receive − first send). MB = 10⁶ bytes of user payload.
//! * Cases run interleaved in rounds; ratios are taken within a round, medians reported.

use std::fs::File;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use shmq::{Consumer, Fsync, Mode, Producer, Queue};

use super::peer::Control;
use super::report::{self, Latency, Machine, RunInfo};
use super::transports::{QueueGuard, queue_options};
use super::{Config, Kind, Peer, RunSpec, STUCK, WaitKind, allowed_cpus, mono_ns, new_histogram, pattern, size_label};

/// Smallest message: the tag and the send time must fit.
pub const MIN_SIZE: usize = 16;
/// One message in this many carries its send time and is recorded in the latency histogram.
pub const SAMPLE: u64 = 16;
/// Producers of the pipelined `Fsync::Always` case.
pub const PRODUCERS: u16 = 4;
/// Most messages a consumer takes per `recv_batch` call.
const RECV_BATCH: usize = 1024;
/// Bytes of a frame before the payload (as in the log).
const FRAME_HEADER: usize = 32;
/// `statfs` magic numbers of memory file systems.
const TMPFS_MAGIC: u64 = 0x0102_1994;
const RAMFS_MAGIC: u64 = 0x8584_58f6;
/// The wait policy of every queue handle of this bench (the library's default).
const WAIT: shmq::Wait = shmq::Wait::Adaptive;

/// What a peer does in one run (in [`RunSpec::durable`]).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Role {
    /// Appends `count` frames to `file` in batches of `batch`, publishing the readable
    /// length on `fifo` after each (after its `fdatasync` when `sync`).
    FloorWriter { file: String, fifo: String, count: u64, batch: u64, sync: bool },
    /// Reads and checks `count` frames from `file` as their length is published on `fifo`.
    FloorReader { file: String, fifo: String, count: u64 },
    /// Ping-pong's measuring side: sends on `ping`, receives the echo on `pong`.
    Pinger { ping: String, pong: String, warmup: u64, count: u64 },
    /// Ping-pong's echoing side.
    Ponger { ping: String, pong: String, total: u64 },
    /// Sends `count` messages tagged with `index`.
    Producer { queue: String, index: u16, count: u64, send: SendMode },
    /// Receives `per_producer` messages from each of `producers` producers.
    Consumer { queue: String, producers: u16, per_producer: u64 },
}

/// How a producer sends.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum SendMode {
    /// `send` back to back.
    Plain,
    /// `send` under `Fsync::Always` (returns once synced), each timed.
    Blocking,
    /// `send_nowait`, and `wait_durable` (timed) on the last id every `every` messages.
    Pipelined { every: u64 },
}

/// What a role reports (`result {json}`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RoleResult {
    /// `CLOCK_MONOTONIC` ns when it started (after `go`).
    pub start_ns: u64,
    /// `CLOCK_MONOTONIC` ns when it finished.
    pub end_ns: u64,
    /// Messages it handled.
    pub count: u64,
    /// `fdatasync` calls it made (floor writer).
    pub syncs: u64,
    /// One-way latency samples (ns), as (value, count).
    pub latency: Vec<(u64, u64)>,
    /// Sync waits (ns), as (value, count).
    pub sync: Vec<(u64, u64)>,
    /// CPU time its process used from `go` to its result (ns, user and system).
    #[serde(default)]
    pub cpu_ns: u64,
}

/// CPU time this process has used (user and system, all threads), in ns.
fn process_cpu_ns() -> u64 {
    super::clock_ns(libc::CLOCK_PROCESS_CPUTIME_ID)
}

fn to_pairs(h: &Histogram<u64>) -> Vec<(u64, u64)> {
    h.iter_recorded().map(|v| (v.value_iterated_to(), v.count_at_value())).collect()
}

fn from_pairs(h: &mut Histogram<u64>, pairs: &[(u64, u64)]) {
    for &(v, n) in pairs {
        let _ = h.record_n(v.max(1), n);
    }
}

/// Writes message `seq` of producer `index` into `buf` (the pattern is already there).
#[inline]
fn fill(buf: &mut [u8], index: u16, seq: u64) {
    let tag = (u64::from(index) << 48) | seq;
    buf[..8].copy_from_slice(&tag.to_le_bytes());
    let t = if seq % SAMPLE == 0 { mono_ns() } else { 0 };
    buf[8..16].copy_from_slice(&t.to_le_bytes());
}

fn word(b: &[u8], off: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(w)
}

/// Bytes of the frame of a `size`-byte message.
fn frame_len(size: usize) -> usize {
    (FRAME_HEADER + size).next_multiple_of(8)
}

/// Appends the frame of message `seq` (payload `msg`) at file position `pos` to `out`:
/// `pos | 1`, `len | (frame size / 8) << 32`, a timestamp, crc32c, the payload, padding.
fn push_frame(out: &mut Vec<u8>, pos: u64, msg: &[u8], ts: u64) {
    let n = frame_len(msg.len());
    let start = out.len();
    let info = (msg.len() as u64 + 16) | (((n / 8) as u64) << 32);
    out.extend_from_slice(&(pos | 1).to_le_bytes());
    out.extend_from_slice(&info.to_le_bytes());
    out.extend_from_slice(&ts.to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&out[start..start + 24]), msg);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&[0u8; 4]);
    out.extend_from_slice(msg);
    out.resize(start + n, 0);
}

/// Opens a FIFO read-write: never blocks on open, and the other side may come and go.
fn open_fifo(path: &str) -> Result<File> {
    std::fs::OpenOptions::new().read(true).write(true).open(path).with_context(|| format!("open FIFO {path}"))
}

/// The peer's side of a `--durable` run.
pub fn serve<R: std::io::BufRead, W: std::io::Write>(
    ctl: &mut Control<R, W>,
    spec: &RunSpec,
    role: &Role,
) -> Result<()> {
    let size = spec.size;
    if size < MIN_SIZE {
        bail!("messages of {size} bytes cannot carry a tag and a send time");
    }
    let pat = pattern(size);
    let cpu_at_go = std::cell::Cell::new(0);
    let go = |ctl: &mut Control<R, W>| -> Result<()> {
        ctl.say("ready")?;
        let line = ctl.hear()?;
        if line != "go" {
            bail!("unexpected {line:?} from the leader");
        }
        cpu_at_go.set(process_cpu_ns());
        Ok(())
    };
    let mut res = RoleResult::default();
    let mut lat = new_histogram();
    let mut sync = new_histogram();
    match role {
        Role::FloorWriter { file, fifo, count, batch, sync: do_sync } => {
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(file)
                .with_context(|| format!("create {file}"))?;
            let total = *count * frame_len(size) as u64;
            rustix::fs::fallocate(&f, rustix::fs::FallocateFlags::empty(), 0, total.max(1))
                .with_context(|| format!("allocate {file}"))?;
            f.sync_all().with_context(|| format!("fsync {file}"))?;
            let mut pipe = open_fifo(fifo)?;
            let batch = (*batch).max(1);
            let mut buf = Vec::with_capacity(batch as usize * frame_len(size));
            let mut msg = pat.clone();
            go(ctl)?;
            res.start_ns = mono_ns();
            let mut pos = 0u64;
            for i in 0..*count {
                fill(&mut msg, 0, i);
                let at = pos + buf.len() as u64;
                push_frame(&mut buf, at, &msg, mono_ns());
                if (i + 1) % batch == 0 || i + 1 == *count {
                    f.write_all_at(&buf, pos).with_context(|| format!("write {file}"))?;
                    pos += buf.len() as u64;
                    buf.clear();
                    if *do_sync {
                        f.sync_data().with_context(|| format!("fdatasync {file}"))?;
                        res.syncs += 1;
                    }
                    std::io::Write::write_all(&mut pipe, &pos.to_le_bytes()).context("publish the length")?;
                }
            }
            res.end_ns = mono_ns();
            res.count = *count;
        }
        Role::FloorReader { file, fifo, count } => {
            let f = File::open(file).with_context(|| format!("open {file}"))?;
            let mut pipe = open_fifo(fifo)?;
            go(ctl)?;
            res.start_ns = mono_ns();
            let mut done = 0u64; // bytes read and checked
            let mut n = 0u64;
            let mut words = [0u8; 4096];
            let mut rest = 0usize;
            let mut data = Vec::new();
            while n < *count {
                let mut pfd = libc::pollfd { fd: pipe.as_raw_fd(), events: libc::POLLIN, revents: 0 };
                // SAFETY: one valid pollfd, living across the call; the descriptor is open
                // (owned by `pipe`).
                let ready = unsafe { libc::poll(&mut pfd, 1, STUCK.as_millis() as libc::c_int) };
                if ready == 0 {
                    bail!("the writer published nothing for {STUCK:?} (at record {n})");
                }
                if ready < 0 {
                    let e = std::io::Error::last_os_error();
                    if e.kind() == std::io::ErrorKind::Interrupted {
                        continue;
                    }
                    return Err(anyhow::Error::from(e).context("poll the FIFO"));
                }
                let got = pipe.read(&mut words[rest..]).context("read the FIFO")?;
                let have = rest + got;
                let whole = have / 8 * 8;
                if whole == 0 {
                    rest = have;
                    continue;
                }
                let published = word(&words, whole - 8);
                words.copy_within(whole..have, 0);
                rest = have - whole;
                if published < done {
                    bail!("published length went back from {done} to {published}");
                }
                let fl = frame_len(size) as u64;
                if (published - done) % fl != 0 {
                    bail!("published length {published} is not at a record boundary");
                }
                // At most 4 MiB at a time (whole records), however far the writer is ahead.
                let most = ((4 << 20) / fl).max(1) * fl;
                while done < published {
                    let len = (published - done).min(most);
                    data.resize(len as usize, 0);
                    f.read_exact_at(&mut data, done).with_context(|| format!("read {file}"))?;
                    let seen = mono_ns();
                    for (k, fr) in data.chunks_exact(fl as usize).enumerate() {
                        let ts = word(fr, 16);
                        let msg = &fr[FRAME_HEADER..FRAME_HEADER + size];
                        let at = done + k as u64 * fl;
                        if word(fr, 0) != at | 1 || word(msg, 0) != n || msg[16..] != pat[16..] {
                            bail!("record {n} arrived corrupted");
                        }
                        let _ = lat.record(seen.saturating_sub(ts).max(1));
                        n += 1;
                    }
                    done += len;
                }
            }
            res.end_ns = mono_ns();
            res.count = n;
        }
        Role::Pinger { ping, pong, warmup, count } => {
            let mut tx = Producer::open_with(ping, WAIT).with_context(|| format!("open the producer of {ping}"))?;
            let mut rx = Consumer::open_with(pong, WAIT).with_context(|| format!("open the consumer of {pong}"))?;
            let mut msg = pat.clone();
            go(ctl)?;
            for i in 0..warmup + count {
                if i == *warmup {
                    res.start_ns = mono_ns();
                }
                fill(&mut msg, 0, i);
                let t0 = Instant::now();
                tx.send_timeout(&msg, STUCK).with_context(|| format!("send {i}"))?;
                let m = rx.recv_timeout(STUCK).with_context(|| format!("receive echo {i}"))?;
                let rtt = t0.elapsed();
                if word(&m, 0) != i || m[16..] != pat[16..] {
                    bail!("echo {i} arrived corrupted");
                }
                if i >= *warmup {
                    let _ = lat.record((rtt.as_nanos() as u64 / 2).max(1));
                }
            }
            res.end_ns = mono_ns();
            res.count = *count;
        }
        Role::Ponger { ping, pong, total } => {
            let mut rx = Consumer::open_with(ping, WAIT).with_context(|| format!("open the consumer of {ping}"))?;
            let mut tx = Producer::open_with(pong, WAIT).with_context(|| format!("open the producer of {pong}"))?;
            let mut buf = vec![0u8; size];
            go(ctl)?;
            res.start_ns = mono_ns();
            for i in 0..*total {
                {
                    let m = rx.recv_timeout(STUCK).with_context(|| format!("receive {i}"))?;
                    if m.len() != size {
                        bail!("message {i} has {} bytes", m.len());
                    }
                    buf.copy_from_slice(&m);
                }
                tx.send_timeout(&buf, STUCK).with_context(|| format!("echo {i}"))?;
            }
            res.end_ns = mono_ns();
            res.count = *total;
        }
        Role::Producer { queue, index, count, send } => {
            let mut tx = Producer::open_with(queue, WAIT).with_context(|| format!("open the producer of {queue}"))?;
            let mut msg = pat.clone();
            go(ctl)?;
            res.start_ns = mono_ns();
            for i in 0..*count {
                fill(&mut msg, *index, i);
                match *send {
                    SendMode::Plain => {
                        tx.send_timeout(&msg, STUCK).with_context(|| format!("send {i}"))?;
                    }
                    SendMode::Blocking => {
                        let t0 = Instant::now();
                        tx.send_timeout(&msg, STUCK).with_context(|| format!("send {i}"))?;
                        let _ = sync.record((t0.elapsed().as_nanos() as u64).max(1));
                    }
                    SendMode::Pipelined { every } => {
                        let id = tx.send_nowait(&msg).with_context(|| format!("send {i}"))?;
                        if (i + 1) % every.max(1) == 0 || i + 1 == *count {
                            let t0 = Instant::now();
                            tx.wait_durable(id, Some(STUCK)).with_context(|| format!("wait for {i} to be synced"))?;
                            let _ = sync.record((t0.elapsed().as_nanos() as u64).max(1));
                        }
                    }
                }
            }
            res.end_ns = mono_ns();
            res.count = *count;
        }
        Role::Consumer { queue, producers, per_producer } => {
            let mut rx = Consumer::open_with(queue, WAIT).with_context(|| format!("open the consumer of {queue}"))?;
            let mut next = vec![0u64; usize::from(*producers)];
            let total = u64::from(*producers) * per_producer;
            go(ctl)?;
            res.start_ns = mono_ns();
            let mut n = 0u64;
            while n < total {
                let mut bad: Option<String> = None;
                rx.recv_batch_timeout(RECV_BATCH, STUCK, |m| {
                    if bad.is_some() {
                        return;
                    }
                    if m.len() != size || m[16..] != pat[16..] {
                        bad = Some(format!("message {n} arrived corrupted"));
                        return;
                    }
                    let tag = word(m, 0);
                    let (p, seq) = ((tag >> 48) as usize, tag & ((1 << 48) - 1));
                    if p >= next.len() || seq != next[p] {
                        bad = Some(format!("message {seq} of producer {p} out of order"));
                        return;
                    }
                    next[p] += 1;
                    n += 1;
                    if seq % SAMPLE == 0 {
                        let _ = lat.record(mono_ns().saturating_sub(word(m, 8)).max(1));
                    }
                })
                .with_context(|| format!("receive (after {n} of {total})"))?;
                if let Some(b) = bad {
                    bail!(b);
                }
            }
            res.end_ns = mono_ns();
            res.count = n;
        }
    }
    res.cpu_ns = process_cpu_ns().saturating_sub(cpu_at_go.get());
    res.latency = to_pairs(&lat);
    res.sync = to_pairs(&sync);
    ctl.say(&format!("result {}", serde_json::to_string(&res)?))
}

/// One measured case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Case {
    /// Plain writes of batches, a reader of the file.
    FloorNever,
    /// A write and an `fdatasync` per batch, a reader of what is synced.
    FloorAlways,
    /// The volatile queue: ping-pong, then a stream.
    Volatile,
    /// A durable queue, `Fsync::Never`: ping-pong, then a stream.
    Never,
    /// `Fsync::Always`, 4 producers with `send_nowait` + `wait_durable` every W.
    AlwaysPipelined,
    /// `Fsync::Always`, one producer calling blocking `send`.
    AlwaysBlocking,
}

impl Case {
    /// Every case, in the order of the table.
    pub const ALL: [Case; 6] =
        [Case::FloorNever, Case::FloorAlways, Case::Volatile, Case::Never, Case::AlwaysPipelined, Case::AlwaysBlocking];

    /// Peer processes the case runs in.
    fn processes(self) -> usize {
        match self {
            Case::AlwaysPipelined => usize::from(PRODUCERS) + 1,
            _ => 2,
        }
    }

    /// The transport's name in the table and the JSON.
    pub fn transport(self) -> &'static str {
        match self {
            Case::FloorNever => "disk-floor-never",
            Case::FloorAlways => "disk-floor-always",
            Case::Volatile => "shmq",
            Case::Never => "shmq-durable-never",
            Case::AlwaysPipelined | Case::AlwaysBlocking => "shmq-durable-always",
        }
    }

    /// How it sends.
    pub fn mode(self) -> &'static str {
        match self {
            Case::FloorNever | Case::FloorAlways => "batched",
            Case::Volatile | Case::Never => "stream",
            Case::AlwaysPipelined => "pipelined",
            Case::AlwaysBlocking => "blocking",
        }
    }

    /// Whether it has a ping-pong latency measurement.
    fn ping_pong(self) -> bool {
        matches!(self, Case::Volatile | Case::Never)
    }
}

/// One run of one case.
#[derive(Clone, Debug)]
pub struct Run {
    /// Messages streamed.
    pub messages: u64,
    /// First send to last receive.
    pub time: Duration,
    /// One-way latency (ns): ping-pong for shmq and shmq-durable-never, send to receive
    /// for the others.
    pub latency: Histogram<u64>,
    /// Send-to-receive latency during the stream (shmq and shmq-durable-never).
    pub stream_latency: Option<Histogram<u64>>,
    /// Sync waits (ns), for the `Fsync::Always` cases.
    pub sync: Option<Histogram<u64>>,
    /// `fdatasync` calls during the stream.
    pub syncs: u64,
    /// CPU time of every process of the measured run (for shmq and shmq-durable-never, the
    /// stream), summed (ns).
    pub cpu_ns: u64,
}

impl Run {
    fn rate(&self) -> f64 {
        self.messages as f64 / self.time.as_secs_f64().max(1e-12)
    }
}

/// The plan of a `--durable` run.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Message sizes.
    pub sizes: Vec<usize>,
    /// Rounds.
    pub rounds: u32,
    /// Messages per stream.
    pub messages: u64,
    /// Round trips of a ping-pong run.
    pub round_trips: u64,
    /// Messages of the blocking-`send` case.
    pub blocking: u64,
    /// W: each pipelining producer waits for its sync every W messages.
    pub every: u64,
    /// B: the disk floor syncs every B records (`PRODUCERS` × W: as many as the pipelined
    /// producers can have in flight in one sync).
    pub batch: u64,
    /// Where files and logs go.
    pub dir: PathBuf,
    /// `--quick`.
    pub quick: bool,
}

/// A role for peer `i`.
type Assign = (usize, Role);

/// Runs `roles` together: each peer joins, then all go, then their results are collected.
fn run_roles(peers: &mut [Peer], size: usize, roles: Vec<Assign>) -> Result<Vec<RoleResult>> {
    let config = Config { kind: Kind::Shmq, wait: WaitKind::Adaptive };
    for (i, role) in &roles {
        let spec = RunSpec {
            config,
            size,
            warmup: 0,
            resource: String::new(),
            member: None,
            durable: Some(role.clone()),
            libshmq: None,
        };
        peers[*i].say(&format!("run {}", serde_json::to_string(&spec)?))?;
        peers[*i].expect("ready")?;
    }
    for (i, _) in &roles {
        peers[*i].say("go")?;
    }
    let mut out = Vec::new();
    for (i, _) in &roles {
        let line = peers[*i].hear()?;
        let json = line.strip_prefix("result ").ok_or_else(|| anyhow!("peer said {line:?}, expected a result"))?;
        out.push(serde_json::from_str(json).context("parse a peer's result")?);
    }
    Ok(out)
}

fn hist_of<'a>(
    results: impl Iterator<Item = &'a RoleResult>,
    f: fn(&RoleResult) -> &Vec<(u64, u64)>,
) -> Histogram<u64> {
    let mut h = new_histogram();
    for r in results {
        from_pairs(&mut h, f(r));
    }
    h
}

/// CPU time of the processes of `results`, summed.
fn cpu_of(results: &[RoleResult]) -> u64 {
    results.iter().map(|r| r.cpu_ns).sum()
}

/// First start to last end over `results`.
fn span(results: &[RoleResult]) -> Duration {
    let start = results.iter().map(|r| r.start_ns).min().unwrap_or(0);
    let end = results.iter().map(|r| r.end_ns).max().unwrap_or(0);
    Duration::from_nanos(end.saturating_sub(start))
}

/// Removes a queue's log directory (and the queue) when dropped.
struct Scratch(Vec<PathBuf>);

impl Drop for Scratch {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = if p.is_dir() { std::fs::remove_dir_all(p) } else { std::fs::remove_file(p) };
        }
    }
}

/// Syncs of a durable queue so far.
fn syncs_of(q: &str) -> Result<u64> {
    Ok(Queue::inspect(q).with_context(|| format!("inspect {q:?}"))?.durable.map_or(0, |d| d.syncs))
}

/// One run of `case` at `size`.
fn run_case(peers: &mut [Peer], plan: &Plan, case: Case, size: usize, id: u64) -> Result<Run> {
    let base = format!("bench-{}-d{id}", std::process::id());
    let fsync = match case {
        Case::Never => Some(Fsync::Never),
        Case::AlwaysPipelined | Case::AlwaysBlocking => Some(Fsync::Always),
        _ => None,
    };
    let options = |name: &str, mode: Mode| {
        let o = queue_options(size).mode(mode);
        match fsync {
            Some(f) => o.durable(plan.dir.join(name)).fsync(f),
            None => o,
        }
    };
    let create = |names: &[String], mode: Mode| -> Result<(QueueGuard, Scratch)> {
        for n in names {
            Queue::create(n, options(n, mode)).with_context(|| format!("create queue {n:?}"))?;
        }
        Ok((QueueGuard::new(names.to_vec()), Scratch(names.iter().map(|n| plan.dir.join(n)).collect())))
    };
    match case {
        Case::FloorNever | Case::FloorAlways => {
            let file = plan.dir.join(format!("{base}.log"));
            let fifo = plan.dir.join(format!("{base}.fifo"));
            rustix::fs::mknodat(
                rustix::fs::CWD,
                &fifo,
                rustix::fs::FileType::Fifo,
                rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
                0,
            )
            .with_context(|| format!("make FIFO {}", fifo.display()))?;
            let _scratch = Scratch(vec![file.clone(), fifo.clone()]);
            let (file, fifo) = (file.display().to_string(), fifo.display().to_string());
            let count = plan.messages;
            let w = Role::FloorWriter {
                file: file.clone(),
                fifo: fifo.clone(),
                count,
                batch: plan.batch,
                sync: case == Case::FloorAlways,
            };
            // The reader joins second: the writer has made the file.
            let r = run_roles(peers, size, vec![(0, w), (1, Role::FloorReader { file, fifo, count })])?;
            Ok(Run {
                messages: count,
                time: Duration::from_nanos(r[1].end_ns.saturating_sub(r[0].start_ns)),
                latency: hist_of(r[1..].iter(), |r| &r.latency),
                stream_latency: None,
                sync: None,
                syncs: r[0].syncs,
                cpu_ns: cpu_of(&r),
            })
        }
        Case::Volatile | Case::Never => {
            let names = vec![format!("{base}-ping"), format!("{base}-pong")];
            let (guard, scratch) = create(&names, Mode::Spsc)?;
            let (ping, pong) = (names[0].clone(), names[1].clone());
            let warmup = (plan.round_trips / 10).max(10);
            let r = run_roles(
                peers,
                size,
                vec![
                    (1, Role::Ponger { ping: ping.clone(), pong: pong.clone(), total: warmup + plan.round_trips }),
                    (0, Role::Pinger { ping, pong, warmup, count: plan.round_trips }),
                ],
            )?;
            let latency = hist_of(r[1..].iter(), |r| &r.latency);
            drop(guard);
            drop(scratch);
            let names = vec![format!("{base}-s")];
            let (_guard, _scratch) = create(&names, Mode::Spsc)?;
            let q = names[0].clone();
            let count = plan.messages;
            let r = run_roles(
                peers,
                size,
                vec![
                    (1, Role::Consumer { queue: q.clone(), producers: 1, per_producer: count }),
                    (0, Role::Producer { queue: q.clone(), index: 0, count, send: SendMode::Plain }),
                ],
            )?;
            Ok(Run {
                messages: count,
                time: span(&r),
                latency,
                stream_latency: Some(hist_of(r[..1].iter(), |r| &r.latency)),
                sync: None,
                syncs: if fsync.is_some() { syncs_of(&q)? } else { 0 },
                cpu_ns: cpu_of(&r),
            })
        }
        Case::AlwaysPipelined | Case::AlwaysBlocking => {
            let names = vec![format!("{base}-a")];
            let (_guard, _scratch) = create(&names, Mode::Mpsc)?;
            let q = names[0].clone();
            let (producers, per, send) = if case == Case::AlwaysPipelined {
                (PRODUCERS, plan.messages / u64::from(PRODUCERS), SendMode::Pipelined { every: plan.every })
            } else {
                (1, plan.blocking, SendMode::Blocking)
            };
            let mut roles = vec![(0, Role::Consumer { queue: q.clone(), producers, per_producer: per })];
            for p in 0..producers {
                roles.push((1 + usize::from(p), Role::Producer { queue: q.clone(), index: p, count: per, send }));
            }
            let before = syncs_of(&q)?;
            let r = run_roles(peers, size, roles)?;
            let syncs = syncs_of(&q)? - before;
            Ok(Run {
                messages: per * u64::from(producers),
                time: span(&r),
                latency: hist_of(r[..1].iter(), |r| &r.latency),
                stream_latency: None,
                sync: Some(hist_of(r[1..].iter(), |r| &r.sync)),
                syncs,
                cpu_ns: cpu_of(&r),
            })
        }
    }
}

/// Everything measured: `runs[round][size index][case index]`.
pub struct DurableMeasurements {
    /// Sizes.
    pub sizes: Vec<usize>,
    /// The runs.
    pub runs: Vec<Vec<Vec<Run>>>,
    /// Wall time.
    pub elapsed: Duration,
    /// The file system of `--dir`.
    pub fs: String,
}

/// Refuses memory file systems (unless allowed): they would measure no disk at all.
pub fn check_dir(dir: &Path, allow_tmpfs: bool) -> Result<String> {
    let st = rustix::fs::statfs(dir).with_context(|| format!("statfs {}", dir.display()))?;
    // The magic numbers are 32-bit; `f_type` is signed and 32 or 64 bits wide by architecture.
    let magic = (st.f_type as u64) & 0xffff_ffff;
    let name = match magic {
        TMPFS_MAGIC => "tmpfs".to_owned(),
        RAMFS_MAGIC => "ramfs".to_owned(),
        0xEF53 => "ext2/3/4".to_owned(),
        0x5846_5342 => "xfs".to_owned(),
        0x9123_683E => "btrfs".to_owned(),
        0x794C_7630 => "overlayfs".to_owned(),
        m => format!("0x{m:x}"),
    };
    if (magic == TMPFS_MAGIC || magic == RAMFS_MAGIC) && !allow_tmpfs {
        bail!(
            "{} is on {name} (memory, not a disk): fdatasync costs nothing there. Give --dir on a disk, \
             or --allow-tmpfs to measure it anyway",
            dir.display()
        );
    }
    Ok(name)
}

/// Runs the rounds.
pub fn measure(plan: &Plan, fs: String) -> Result<DurableMeasurements> {
    let start = Instant::now();
    let lines = !std::io::IsTerminal::is_terminal(&std::io::stderr());
    let say = |what: &str| {
        if lines {
            eprintln!("shmq bench: [{:>5.1} s] {what}", start.elapsed().as_secs_f64());
        }
    };
    let mut id = 0u64;
    // Each case runs in processes started for it, which end with it: a process carries what
    // one case did into the next (see the module docs).
    let mut one = |case: Case, size: usize| -> Result<Run> {
        id += 1;
        let mut peers = (0..case.processes()).map(|_| Peer::spawn(None)).collect::<Result<Vec<_>>>()?;
        let run = run_case(&mut peers, plan, case, size, id)
            .with_context(|| format!("{} ({}) with {size}-byte messages", case.transport(), case.mode()))
            .map_err(|e| match peers.iter_mut().find(|p| p.watchdog.as_ref().is_some_and(|w| w.is_finished())) {
                Some(p) => p.explain(e),
                None => e,
            })?;
        for p in peers {
            p.finish()?;
        }
        Ok(run)
    };
    let mut runs = Vec::new();
    for r in 0..plan.rounds {
        let mut by_size = Vec::new();
        for &size in &plan.sizes {
            say(&format!("round {}/{}, {}", r + 1, plan.rounds, size_label(size)));
            let mut by_case = Vec::new();
            for case in Case::ALL {
                by_case.push(one(case, size)?);
            }
            by_size.push(by_case);
        }
        runs.push(by_size);
    }
    say("done");
    Ok(DurableMeasurements { sizes: plan.sizes.clone(), runs, elapsed: start.elapsed(), fs })
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

fn latency_of(h: &Histogram<u64>) -> Latency {
    Latency {
        p50: h.value_at_quantile(0.5),
        p90: h.value_at_quantile(0.9),
        p99: h.value_at_quantile(0.99),
        p999: h.value_at_quantile(0.999),
        max: h.max(),
    }
}

/// One (case, size) in the JSON.
#[derive(Serialize)]
pub struct DurableResult {
    /// `shmq`, `shmq-durable-never`, `shmq-durable-always`, `disk-floor-never`, `disk-floor-always`.
    pub transport: &'static str,
    /// `stream`, `pipelined`, `blocking` or `batched` (floors).
    pub mode: &'static str,
    /// Always `adaptive` (floors: `block`).
    pub wait: &'static str,
    /// Message size.
    pub size: usize,
    /// Producer processes.
    pub producers: u16,
    /// Messages per sync the producers wait for (W, pipelined) or the floor's batch (B).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch: Option<u64>,
    /// Messages streamed over all rounds.
    pub messages: u64,
    /// Median over rounds.
    pub throughput_msgs_per_s: f64,
    /// The same in MB/s of user payload (10⁶ bytes).
    pub throughput_mb_per_s: f64,
    /// Each round's msgs/s.
    pub throughput_per_round: Vec<f64>,
    /// `round-trip/2` (ping-pong) or `send-to-receive` (during the stream).
    pub latency_kind: &'static str,
    /// One-way latency merged over rounds.
    pub latency_ns: Latency,
    /// Send-to-receive latency during the stream, for the ping-pong cases.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_latency_ns: Option<Latency>,
    /// Durations of `wait_durable` (pipelined) or blocking `send` (blocking).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync_latency_ns: Option<Latency>,
    /// `fdatasync` calls per second (median over rounds); 0 without syncs.
    pub syncs_per_s: f64,
    /// Messages per `fdatasync` (over all rounds); null without syncs.
    pub msgs_per_sync: Option<f64>,
    /// CPU time (user and system) of every process of the case per message, over all rounds
    /// (ns; for shmq and shmq-durable-never, the stream's).
    pub cpu_ns_per_msg: f64,
}

/// A ratio within rounds.
#[derive(Serialize)]
pub struct DurableRatio {
    /// Message size.
    pub size: usize,
    /// E.g. `shmq-durable-never/shmq`.
    pub ratio: &'static str,
    /// `latency_p50` (lower is better), `throughput_msgs_per_s` or `throughput_mb_per_s`.
    pub metric: &'static str,
    /// Median of the per-round ratios.
    pub median: f64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
    /// Each round's.
    pub per_round: Vec<f64>,
    /// The target (`<=` for latency, `>=` otherwise), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<f64>,
    /// Whether the median meets it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub met: Option<bool>,
}

/// The `durable` object of the JSON.
#[derive(Serialize)]
pub struct DurableReport {
    /// `--dir`.
    pub dir: String,
    /// Its file system.
    pub filesystem: String,
    /// How the disk floor works.
    pub floor: &'static str,
    /// Producers of the pipelined case.
    pub producers: u16,
    /// W.
    pub wait_durable_every: u64,
    /// B.
    pub floor_batch: u64,
    /// One message in this many is timed for send-to-receive latency (floors: all).
    pub latency_sample: u64,
    /// Rounds.
    pub rounds: usize,
}

/// `shmq bench --durable --json FILE`: the bench's JSON layout (schema version 1).
#[derive(Serialize)]
pub struct DurableJson {
    /// 1.
    pub schema_version: u32,
    /// Where it ran.
    pub machine: Machine,
    /// How it ran.
    pub run: RunInfo,
    /// One per (case, size).
    pub results: Vec<DurableResult>,
    /// The ratios, per size.
    pub ratios: Vec<DurableRatio>,
    /// The durable run's parameters.
    pub durable: DurableReport,
}

/// Human description of the floor.
pub const FLOOR: &str = "disk floor: one writer process builds the same frames (32-byte header with crc32c, \
payload, padded to 8) into a buffer and appends each batch of B records with one pwrite to a file preallocated \
with fallocate, then (always) one fdatasync, then publishes the readable length on a FIFO; one reader process \
preads only published bytes and checks every record. Latency: append to the writer's buffer -> read by the reader";

fn ci(c: Case) -> usize {
    Case::ALL.iter().position(|&x| x == c).unwrap_or(0)
}

/// Builds the results and ratios.
pub fn build(m: &DurableMeasurements, plan: &Plan) -> (Vec<DurableResult>, Vec<DurableRatio>) {
    let mut results = Vec::new();
    let mut ratios = Vec::new();
    for (si, &size) in m.sizes.iter().enumerate() {
        for case in Case::ALL {
            let runs: Vec<&Run> = m.runs.iter().map(|r| &r[si][ci(case)]).collect();
            let per_round: Vec<f64> = runs.iter().map(|r| r.rate()).collect();
            let rate = median(&per_round);
            let mut lat = new_histogram();
            let mut stream = new_histogram();
            let mut sync = new_histogram();
            for r in &runs {
                let _ = lat.add(&r.latency);
                if let Some(h) = &r.stream_latency {
                    let _ = stream.add(h);
                }
                if let Some(h) = &r.sync {
                    let _ = sync.add(h);
                }
            }
            let messages: u64 = runs.iter().map(|r| r.messages).sum();
            let syncs: u64 = runs.iter().map(|r| r.syncs).sum();
            let sps: Vec<f64> = runs.iter().map(|r| r.syncs as f64 / r.time.as_secs_f64().max(1e-12)).collect();
            results.push(DurableResult {
                transport: case.transport(),
                mode: case.mode(),
                wait: if matches!(case, Case::FloorNever | Case::FloorAlways) { "block" } else { "adaptive" },
                size,
                producers: if case == Case::AlwaysPipelined { PRODUCERS } else { 1 },
                batch: match case {
                    Case::FloorNever | Case::FloorAlways => Some(plan.batch),
                    Case::AlwaysPipelined => Some(plan.every),
                    _ => None,
                },
                messages,
                throughput_msgs_per_s: rate,
                throughput_mb_per_s: rate * size as f64 / 1e6,
                throughput_per_round: per_round,
                latency_kind: if case.ping_pong() { "round-trip/2" } else { "send-to-receive" },
                latency_ns: latency_of(&lat),
                stream_latency_ns: case.ping_pong().then(|| latency_of(&stream)),
                sync_latency_ns: matches!(case, Case::AlwaysPipelined | Case::AlwaysBlocking)
                    .then(|| latency_of(&sync)),
                syncs_per_s: median(&sps),
                msgs_per_sync: (syncs > 0).then(|| messages as f64 / syncs as f64),
                cpu_ns_per_msg: runs.iter().map(|r| r.cpu_ns).sum::<u64>() as f64 / messages.max(1) as f64,
            });
        }
        let rate = |r: &Run| r.rate();
        let p50 = |r: &Run| r.latency.value_at_quantile(0.5).max(1) as f64;
        let mut push = |ratio, metric, f: &dyn Fn(&[Run]) -> f64, target: Option<f64>, lower: bool| {
            let per_round: Vec<f64> = m.runs.iter().map(|r| f(&r[si])).collect();
            let (min, max) = per_round.iter().fold((f64::INFINITY, 0f64), |(a, b), &x| (a.min(x), b.max(x)));
            let med = median(&per_round);
            ratios.push(DurableRatio {
                size,
                ratio,
                metric,
                median: med,
                min,
                max,
                per_round,
                target,
                met: target.map(|t| if lower { med <= t } else { med >= t }),
            });
        };
        let at = |rs: &[Run], c: Case| -> f64 { rate(&rs[ci(c)]) };
        push(
            "shmq-durable-never/shmq",
            "latency_p50",
            &|rs| p50(&rs[ci(Case::Never)]) / p50(&rs[ci(Case::Volatile)]),
            Some(1.5),
            true,
        );
        push(
            "shmq-durable-never/shmq",
            "throughput_msgs_per_s",
            &|rs| at(rs, Case::Never) / at(rs, Case::Volatile),
            None,
            false,
        );
        push(
            "shmq-durable-never/disk-floor-never",
            "throughput_mb_per_s",
            &|rs| at(rs, Case::Never) / at(rs, Case::FloorNever),
            None,
            false,
        );
        // The streaming target: >= 0.5x volatile or >= 0.8x the floor's bytes/s, whichever
        // is lower; as one ratio: never / min(0.5 volatile, 0.8 floor), target 1.
        push(
            "shmq-durable-never/min(0.5*shmq,0.8*disk-floor-never)",
            "throughput_mb_per_s",
            &|rs| at(rs, Case::Never) / (0.5 * at(rs, Case::Volatile)).min(0.8 * at(rs, Case::FloorNever)),
            Some(1.0),
            false,
        );
        push(
            "shmq-durable-always-pipelined/disk-floor-always",
            "throughput_msgs_per_s",
            &|rs| at(rs, Case::AlwaysPipelined) / at(rs, Case::FloorAlways),
            Some(0.8),
            false,
        );
        push(
            "shmq-durable-always-blocking/disk-floor-always",
            "throughput_msgs_per_s",
            &|rs| at(rs, Case::AlwaysBlocking) / at(rs, Case::FloorAlways),
            None,
            false,
        );
    }
    (results, ratios)
}

/// The printed table.
pub fn table(
    m: &DurableMeasurements,
    machine: &Machine,
    plan: &Plan,
    results: &[DurableResult],
    ratios: &[DurableRatio],
) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "shmq bench --durable: {} ({} CPUs{}), Linux {}; files in {} ({})",
        machine.cpu_model,
        machine.cpus,
        if machine.virtualized { ", virtualized" } else { "" },
        machine.kernel,
        plan.dir.display(),
        m.fs
    );
    let _ = writeln!(
        s,
        "{} rounds, cases interleaved; {} messages per stream, {} round trips, {} blocking sends; {:.1} s",
        m.runs.len(),
        plan.messages,
        plan.round_trips,
        plan.blocking,
        m.elapsed.as_secs_f64()
    );
    let _ = writeln!(s, "{FLOOR} (B = {}).", plan.batch);
    let _ = writeln!(
        s,
        "shmq-durable-always pipelined: {PRODUCERS} producer processes, send_nowait + wait_durable every W = {} \
         messages, 1 consumer; blocking: 1 producer, send. Volatile and Fsync::Never: latency is ping-pong \
         (round trip / 2), then a 1-producer stream. All shmq handles wait adaptive; processes not pinned.",
        plan.every
    );
    let _ = writeln!(
        s,
        "msgs/s: medians over rounds; latencies (us) merged over rounds; MB = 10^6 payload bytes; cpu/msg: ns of \
         CPU (user + system) of all the case's processes per message, over rounds (shmq, shmq-durable-never: the \
         stream)\n"
    );
    let _ = writeln!(
        s,
        "{:<7} {:<20} {:<9} {:>11} {:>8} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8}  sync p50/p99/p99.9 (us)",
        "size", "transport", "mode", "msgs/s", "MB/s", "syncs/s", "msg/sync", "cpu/msg", "p50", "p90", "p99", "p99.9"
    );
    let us = |ns: u64| ns as f64 / 1e3;
    let mut last = usize::MAX;
    for r in results {
        if r.size != last && last != usize::MAX {
            let _ = writeln!(s);
        }
        last = r.size;
        let l = &r.latency_ns;
        let sync = r
            .sync_latency_ns
            .map(|x| format!("{:.0}/{:.0}/{:.0}", us(x.p50), us(x.p99), us(x.p999)))
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "{:<7} {:<20} {:<9} {:>11} {:>8.1} {:>9.0} {:>9} {:>8.0} {:>8.1} {:>8.1} {:>8.1} {:>8.1}  {}{}",
            size_label(r.size),
            r.transport,
            r.mode,
            report::rate(r.throughput_msgs_per_s),
            r.throughput_mb_per_s,
            r.syncs_per_s,
            r.msgs_per_sync.map_or_else(|| "-".to_owned(), |x| format!("{x:.0}")),
            r.cpu_ns_per_msg,
            us(l.p50),
            us(l.p90),
            us(l.p99),
            us(l.p999),
            sync,
            if r.latency_kind == "round-trip/2" {
                r.stream_latency_ns.map_or(String::new(), |x| format!("(ping-pong; in stream p50 {:.1})", us(x.p50)))
            } else {
                String::new()
            }
        );
    }
    let _ = writeln!(s, "\nratios, median over rounds [min-max]:");
    for r in ratios {
        let target = match (r.target, r.met) {
            (Some(t), Some(met)) => format!(
                "target {} {t}: {}",
                if r.metric == "latency_p50" { "<=" } else { ">=" },
                if met { "met" } else { "NOT met" }
            ),
            _ => String::new(),
        };
        let _ = writeln!(
            s,
            "{:<7} {:<55} {:<22} {:>6.2} [{:.2}-{:.2}] {}",
            size_label(r.size),
            r.ratio,
            r.metric,
            r.median,
            r.min,
            r.max,
            target
        );
    }
    for r in results.iter().filter(|r| r.mode == "pipelined" && r.size == 64) {
        let _ = writeln!(
            s,
            "64 B     shmq-durable-always pipelined {} msgs/s: target >= 200 k: {}",
            report::rate(r.throughput_msgs_per_s),
            if r.throughput_msgs_per_s >= 200_000.0 { "met" } else { "NOT met" }
        );
    }
    s.lines().map(str::trim_end).collect::<Vec<_>>().join("\n") + "\n"
}

/// `shmq bench --durable`: measures, prints the table, writes the JSON.
pub fn run(plan: &Plan, fs: String, json: Option<&Path>) -> Result<()> {
    let m = measure(plan, fs)?;
    let (results, ratios) = build(&m, plan);
    let machine = report::machine_info(allowed_cpus().len(), None);
    print!("{}", table(&m, &machine, plan, &results, &ratios));
    if let Some(path) = json {
        let rep = DurableJson {
            schema_version: report::SCHEMA_VERSION,
            run: RunInfo {
                shmq_version: env!("CARGO_PKG_VERSION"),
                rounds: m.runs.len(),
                quick: plan.quick,
                sizes: m.sizes.clone(),
                warmup_round_trips: (plan.round_trips / 10).max(10),
                messages: Some(plan.messages),
                latency_budget_ms: 0,
                throughput_budget_ms: 0,
                floor_probe: None,
                elapsed_s: m.elapsed.as_secs_f64(),
            },
            machine,
            results,
            ratios,
            durable: DurableReport {
                dir: plan.dir.display().to_string(),
                filesystem: m.fs.clone(),
                floor: FLOOR,
                producers: PRODUCERS,
                wait_durable_every: plan.every,
                floor_batch: plan.batch,
                latency_sample: SAMPLE,
                rounds: m.runs.len(),
            },
        };
        let text = serde_json::to_string_pretty(&rep)? + "\n";
        std::fs::write(path, text).with_context(|| format!("write {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_floor_frame_is_laid_out_like_a_log_frame() {
        let msg: Vec<u8> = (0..21u8).collect();
        let mut out = vec![9u8; 3];
        push_frame(&mut out, 4096, &msg, 77);
        let f = &out[3..];
        assert_eq!(f.len(), frame_len(21));
        assert_eq!(f.len() % 8, 0);
        assert_eq!(word(f, 0), 4096 | 1);
        assert_eq!(word(f, 8), (21 + 16) | ((f.len() as u64 / 8) << 32));
        assert_eq!(word(f, 16), 77);
        let crc = crc32c::crc32c_append(crc32c::crc32c(&f[..24]), &msg);
        assert_eq!(u32::from_le_bytes(f[24..28].try_into().unwrap()), crc);
        assert_eq!(&f[32..53], &msg[..]);
        assert!(f[53..].iter().all(|&b| b == 0));
    }

    #[test]
    fn histograms_survive_the_trip_through_the_control_pipe() {
        let mut h = new_histogram();
        for v in [1u64, 5, 5, 1000, 123_456, 9_999_999] {
            h.record(v).unwrap();
        }
        let mut back = new_histogram();
        from_pairs(&mut back, &to_pairs(&h));
        assert_eq!(back.len(), h.len());
        for q in [0.0, 0.5, 0.9, 1.0] {
            assert_eq!(back.value_at_quantile(q), h.value_at_quantile(q));
        }
    }
}

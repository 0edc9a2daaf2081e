//! The transports behind one [`Endpoint`] trait, how each is set up on both sides, and the
//! leader's measuring loop ([`run_one`]). The peer's side is in [`super::peer`].

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use shmq::{Consumer, Mode, Options, Producer, Queue};

use super::c_abi::{CLib, CShmqEnd};
use super::floors::{FloorEnd, FloorMap};
use super::{
    Budget, CURRENT_QUEUES, Config, Kind, Peer, RunSpec, SKIP_AFTER_GO, Sample, check, count_for, new_histogram,
    pattern, stamp,
};

/// Buffer of the streaming reader of the kernel transports.
const STREAM_BUFFER: usize = 256 << 10;

/// One side of a transport: sends into it and receives from it, copying each message.
pub trait Endpoint {
    /// Copies `msg` into the transport.
    fn send(&mut self, msg: &[u8]) -> Result<()>;
    /// Receives the next message into `out` (exactly `out.len()` bytes).
    fn recv(&mut self, out: &mut [u8]) -> Result<()>;
    /// Switches to streaming (only sends one way from now on).
    fn start_stream(&mut self) -> Result<()> {
        Ok(())
    }
    /// Receives at least one and at most `max` streamed messages, copying each into `out`
    /// and calling `f` on it; `f` returns whether the message is right. Returns how many.
    fn recv_some(&mut self, out: &mut [u8], max: u64, mut f: impl FnMut(&[u8]) -> bool) -> Result<u64> {
        let _ = max;
        self.recv(out)?;
        if !f(out) {
            bail!("streamed message corrupted");
        }
        Ok(1)
    }
    /// Pushes out anything buffered.
    fn flush(&mut self) -> Result<()> {
        Ok(())
    }
}

/// shmq: two SPSC queues, one per direction.
pub struct ShmqEnd {
    tx: Producer,
    rx: Consumer,
}

impl ShmqEnd {
    /// The leader sends on `<base>-ping` and receives on `<base>-pong`; the peer the reverse.
    pub fn open(base: &str, leader: bool, wait: shmq::Wait) -> Result<ShmqEnd> {
        let (out, inn) = if leader { ("ping", "pong") } else { ("pong", "ping") };
        let tx = Producer::open_with(&format!("{base}-{out}"), wait).context("open the producer")?;
        let rx = Consumer::open_with(&format!("{base}-{inn}"), wait).context("open the consumer")?;
        Ok(ShmqEnd { tx, rx })
    }
}

impl Endpoint for ShmqEnd {
    #[inline]
    fn send(&mut self, msg: &[u8]) -> Result<()> {
        self.tx.send(msg)?;
        Ok(())
    }

    #[inline]
    fn recv(&mut self, out: &mut [u8]) -> Result<()> {
        let m = self.rx.recv()?;
        if m.len() != out.len() {
            bail!("received {} bytes, expected {}", m.len(), out.len());
        }
        out.copy_from_slice(&m);
        Ok(())
    }

    fn recv_some(&mut self, out: &mut [u8], max: u64, mut f: impl FnMut(&[u8]) -> bool) -> Result<u64> {
        let mut ok = true;
        let n = self.rx.recv_batch(max.min(usize::MAX as u64) as usize, |m| {
            if ok && m.len() == out.len() {
                out.copy_from_slice(m);
                ok = f(out);
            } else {
                ok = false;
            }
        })?;
        if !ok {
            bail!("streamed message corrupted");
        }
        Ok(n as u64)
    }
}

/// A kernel transport: a writer and a reader (two pipes, or both halves of a socket).
pub struct KernelEnd<W: Write, R: Read> {
    w: W,
    r: BufReader<R>,
    stream: bool,
}

impl<W: Write, R: Read> KernelEnd<W, R> {
    /// Wraps the two halves.
    pub fn new(w: W, r: R) -> Self {
        KernelEnd { w, r: BufReader::with_capacity(STREAM_BUFFER, r), stream: false }
    }
}

impl<W: Write, R: Read> Endpoint for KernelEnd<W, R> {
    #[inline]
    fn send(&mut self, msg: &[u8]) -> Result<()> {
        self.w.write_all(msg).context("write")
    }

    #[inline]
    fn recv(&mut self, out: &mut [u8]) -> Result<()> {
        // Ping-pong reads straight into `out` (one copy, from the kernel); the buffer is
        // empty then, and only streaming reads go through it.
        let r = if self.stream { self.r.read_exact(out) } else { self.r.get_mut().read_exact(out) };
        r.context("read")
    }

    fn start_stream(&mut self) -> Result<()> {
        self.stream = true;
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        self.w.flush().context("flush")
    }
}

/// The leader's scratch space: a private directory for FIFOs and sockets, a counter for
/// unique names, and the C library of the `shmq-c` transport.
pub struct Context {
    dir: PathBuf,
    next: u64,
    clib: Option<&'static CLib>,
}

impl Context {
    /// Makes the directory (`$TMPDIR/shmq-bench-<pid>`, mode 0700). `clib`: the loaded
    /// `libshmq.so`, if the `shmq-c` transport runs.
    pub fn new(clib: Option<&'static CLib>) -> Result<Context> {
        let dir = std::env::temp_dir().join(format!("shmq-bench-{}", std::process::id()));
        std::fs::DirBuilder::new().mode(0o700).create(&dir).with_context(|| format!("create {}", dir.display()))?;
        Ok(Context { dir, next: 0, clib })
    }

    fn id(&mut self) -> u64 {
        self.next += 1;
        self.next
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Removes the bench's queues of a run, whatever happens.
pub struct QueueGuard(Vec<String>);

impl QueueGuard {
    /// Removes `names` when dropped (and when the peer dies).
    pub fn new(names: Vec<String>) -> QueueGuard {
        CURRENT_QUEUES.lock().unwrap_or_else(|e| e.into_inner()).clone_from(&names);
        QueueGuard(names)
    }
}

impl Drop for QueueGuard {
    fn drop(&mut self) {
        CURRENT_QUEUES.lock().unwrap_or_else(|e| e.into_inner()).clear();
        for n in &self.0 {
            let _ = Queue::remove(n);
        }
    }
}

/// Queue geometry for messages of `size` bytes: room for at least 16 of them.
pub fn queue_options(size: usize) -> Options {
    Options::new().mode(Mode::Spsc).capacity(queue_capacity(size)).max_message(size as u32)
}

/// Bytes of a bench queue for messages of `size` bytes (the floor ring holds at least as
/// many).
pub fn queue_capacity(size: usize) -> u64 {
    ((size as u64 + 8).next_power_of_two() * 16).max(1 << 20)
}

/// How a FIFO is opened.
#[derive(Clone, Copy, PartialEq, Eq)]
enum FifoEnd {
    Read,
    Write,
    /// The leader's write end, opened read-write: it exists before the peer opens its read
    /// end, so the peer never reads an early EOF (Linux allows `O_RDWR` on a FIFO).
    WriteFirst,
}

fn open_fifo(path: &Path, end: FifoEnd) -> Result<File> {
    // O_NONBLOCK so that opening never waits for the other side, then back to blocking.
    let f = std::fs::OpenOptions::new()
        .read(end != FifoEnd::Write)
        .write(end != FifoEnd::Read)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)
        .with_context(|| format!("open {}", path.display()))?;
    rustix::fs::fcntl_setfl(&f, rustix::fs::OFlags::empty()).context("make the FIFO blocking")?;
    Ok(f)
}

/// The peer's end of the FIFOs in `dir`: it reads `ping`, writes `pong`.
pub fn peer_fifos(dir: &str) -> Result<KernelEnd<File, File>> {
    let dir = Path::new(dir);
    let r = open_fifo(&dir.join("ping"), FifoEnd::Read)?;
    let w = open_fifo(&dir.join("pong"), FifoEnd::Write)?;
    Ok(KernelEnd::new(w, r))
}

/// The peer's end of the socket at `path`.
pub fn peer_uds(path: &str) -> Result<KernelEnd<UnixStream, UnixStream>> {
    let s = UnixStream::connect(path).with_context(|| format!("connect to {path}"))?;
    let r = s.try_clone().context("clone the socket")?;
    Ok(KernelEnd::new(s, r))
}

/// One run on the leader's side: sets up the transport, has the peer join, measures
/// latency then throughput, and tears down.
pub fn run_one(peer: &mut Peer, ctx: &mut Context, config: Config, size: usize, budget: Budget) -> Result<Sample> {
    let id = ctx.id();
    let pid = std::process::id();
    let mut spec = RunSpec {
        config,
        size,
        warmup: budget.warmup,
        resource: String::new(),
        member: None,
        durable: None,
        libshmq: None,
    };
    let r = match config.kind {
        Kind::Shmq | Kind::ShmqC => {
            let base = format!("bench-{pid}-{id}");
            let names = vec![format!("{base}-ping"), format!("{base}-pong")];
            // Created by the Rust library for both transports: the same queues, so the C
            // path is compared like with like.
            for n in &names {
                Queue::create(n, queue_options(size)).with_context(|| format!("create queue {n:?}"))?;
            }
            let _guard = QueueGuard::new(names);
            spec.resource = base.clone();
            if config.kind == Kind::Shmq {
                start(peer, &spec)?;
                let mut e = ShmqEnd::open(&base, true, config.wait.to_shmq())?;
                drive(peer, &mut e, size, budget)
            } else {
                let lib = ctx.clib.ok_or_else(|| anyhow::anyhow!("shmq-c: no C library loaded"))?;
                spec.libshmq = Some(lib.path().to_path_buf());
                start(peer, &spec)?;
                let mut e = CShmqEnd::open(lib, &base, true, config.wait)?;
                drive(peer, &mut e, size, budget)
            }
        }
        Kind::SpinFloor | Kind::FutexFloor => {
            spec.resource = format!("/shmqbench.{pid}.{id}");
            let map = FloorMap::create(&spec.resource, size)?;
            let mut e = FloorEnd::new(map, true, config.kind == Kind::FutexFloor);
            start(peer, &spec)?;
            e.unlink();
            drive(peer, &mut e, size, budget)
        }
        Kind::Pipe => {
            let dir = ctx.dir.join(format!("pipe-{id}"));
            std::fs::create_dir(&dir).with_context(|| format!("create {}", dir.display()))?;
            for f in ["ping", "pong"] {
                rustix::fs::mkfifoat(rustix::fs::CWD, dir.join(f), rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR)
                    .with_context(|| format!("make FIFO {f} in {}", dir.display()))?;
            }
            // Before the peer opens its ends: our reader lets it open `pong` for writing,
            // our writer keeps its first read of `ping` from seeing EOF.
            let r = open_fifo(&dir.join("pong"), FifoEnd::Read)?;
            let w = open_fifo(&dir.join("ping"), FifoEnd::WriteFirst)?;
            spec.resource = dir.to_string_lossy().into_owned();
            start(peer, &spec)?;
            let _ = std::fs::remove_dir_all(&dir);
            drive(peer, &mut KernelEnd::new(w, r), size, budget)
        }
        Kind::Uds => {
            let path = ctx.dir.join(format!("uds-{id}.sock"));
            let listener = UnixListener::bind(&path).with_context(|| format!("bind {}", path.display()))?;
            spec.resource = path.to_string_lossy().into_owned();
            start(peer, &spec)?;
            let (s, _) = listener.accept().context("accept the peer's connection")?;
            let _ = std::fs::remove_file(&path);
            let r = s.try_clone().context("clone the socket")?;
            drive(peer, &mut KernelEnd::new(s, r), size, budget)
        }
    };
    r.map_err(|e| peer.explain(e))
}

fn start(peer: &mut Peer, spec: &RunSpec) -> Result<()> {
    peer.say(&format!("run {}", serde_json::to_string(spec)?))?;
    peer.expect("ready")
}

/// Most chunks of a time-budgeted phase.
const MAX_CHUNKS: u32 = 16;

/// The leader's measurement over a connected endpoint.
///
/// Both phases run in chunks whose counts the peer is told on the control pipe (`go N`,
/// `stream M`): each chunk is sized from the last one to take about a quarter of the time
/// budget, and the phase ends once the budget is spent. So a run stays near its budget even
/// when the other load on the machine preempts the two processes. With `--messages N` each
/// phase is one chunk of exactly N.
fn drive<E: Endpoint>(peer: &mut Peer, e: &mut E, size: usize, budget: Budget) -> Result<Sample> {
    let pat = pattern(size);
    let mut msg = pat.clone();
    let mut out = vec![0u8; size];
    let mut seq = 0u64;

    // Warm-up: unrecorded; it also tells how long a round trip takes here.
    let t0 = Instant::now();
    for _ in 0..budget.warmup {
        stamp(&mut msg, seq);
        e.send(&msg)?;
        e.recv(&mut out)?;
        if !check(&out, seq, &pat) {
            bail!("reply {seq} came back corrupted");
        }
        seq += 1;
    }
    let mut per_rt = t0.elapsed() / budget.warmup.max(1) as u32;

    // Latency: one clock read per round trip, one-way = round trip / 2. The first round
    // trips of a chunk are not recorded (the peer was reading the control pipe).
    let mut hist = new_histogram();
    let mut round_trips = 0;
    let start = Instant::now();
    for chunk in 1.. {
        let n = budget.fixed.unwrap_or_else(|| count_for(budget.latency / 4, per_rt));
        peer.say(&format!("go {}", n + SKIP_AFTER_GO))?;
        let t = Instant::now();
        let mut prev = t;
        for i in 0..n + SKIP_AFTER_GO {
            stamp(&mut msg, seq);
            e.send(&msg)?;
            e.recv(&mut out)?;
            let now = Instant::now();
            if i >= SKIP_AFTER_GO {
                let rt = (now - prev).as_nanos() as u64;
                hist.saturating_record(rt.div_ceil(2).max(1));
            }
            prev = now;
            if !check(&out, seq, &pat) {
                bail!("reply {seq} came back corrupted");
            }
            seq += 1;
        }
        round_trips += n;
        per_rt = t.elapsed() / (n + SKIP_AFTER_GO) as u32;
        if budget.fixed.is_some() || start.elapsed() >= budget.latency || chunk >= MAX_CHUNKS {
            break;
        }
    }

    // Throughput: stream numbered messages; the peer verifies each and says when it has
    // them all. The first chunk is sized by the median round trip (streaming goes faster:
    // later chunks are sized by the rate measured).
    e.start_stream()?;
    let mut per_msg = Duration::from_nanos(2 * hist.value_at_quantile(0.5));
    let (mut streamed, mut stream_time) = (0, Duration::ZERO);
    for chunk in 1.. {
        let m = budget.fixed.unwrap_or_else(|| count_for(budget.throughput / 4, per_msg));
        let t = Instant::now();
        peer.say(&format!("stream {m}"))?;
        for i in 0..m {
            stamp(&mut msg, i);
            e.send(&msg)?;
        }
        e.flush()?;
        peer.expect("done")?;
        let took = t.elapsed();
        streamed += m;
        stream_time += took;
        per_msg = took / m as u32;
        if budget.fixed.is_some() || stream_time >= budget.throughput || chunk >= MAX_CHUNKS {
            break;
        }
    }
    peer.say("end")?;
    if std::env::var_os("SHMQ_BENCH_DEBUG").is_some() {
        eprintln!(
            "run: {size} B, {round_trips} round trips in {:?}, {streamed} streamed in {stream_time:?}",
            start.elapsed() - stream_time
        );
    }
    Ok(Sample { hist, round_trips, streamed, stream_time })
}

//! Cross-process ping-pong latency through two SPSC queues.
//!
//! ```text
//! cargo run --release --example pingpong -- [--wait spin|block|adaptive] [--size BYTES]
//!                                           [--round-trips N] [--warmup N] [--durable DIR]
//! ```
//!
//! The process creates two queues, re-executes itself as the echo peer (`--role echo`),
//! pins itself and the peer to different CPUs when there are two or more, and measures
//! round trips: write a message (sequence number + filler) into `ping`, wait for the peer
//! to copy it back through `pong`, verify it. One-way latency = round trip / 2, recorded
//! in an HdrHistogram; percentiles printed at the end. `--durable DIR` makes both queues
//! durable (`Fsync::Never`, their logs in new directories under DIR, removed at the end).
//! For the comparison with pipes,
//! Unix sockets and the bare shared-memory floors, use `shmq bench` (feature `cli`).

use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use shmq::{Consumer, Fsync, Mode, Options, Producer, Queue, Wait};

struct Args {
    wait: Wait,
    size: usize,
    round_trips: u64,
    warmup: u64,
    role_echo: Option<String>,
    durable: Option<std::path::PathBuf>,
}

fn parse() -> Result<Args, String> {
    let mut a =
        Args { wait: Wait::Spin, size: 64, round_trips: 200_000, warmup: 20_000, role_echo: None, durable: None };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--wait" => a.wait = value()?.parse().map_err(|e: shmq::Error| e.to_string())?,
            "--size" => a.size = value()?.parse().map_err(|e| format!("--size: {e}"))?,
            "--round-trips" => a.round_trips = value()?.parse().map_err(|e| format!("--round-trips: {e}"))?,
            "--warmup" => a.warmup = value()?.parse().map_err(|e| format!("--warmup: {e}"))?,
            "--durable" => a.durable = Some(value()?.into()),
            "--role" => {
                let role = value()?;
                if role != "echo" {
                    return Err(format!("unknown role {role:?}"));
                }
                a.role_echo = Some(it.next().ok_or("--role echo needs the queue prefix")?);
            }
            "-h" | "--help" => {
                return Err(
                    "usage: pingpong [--wait spin|block|adaptive] [--size BYTES] [--round-trips N] [--warmup N] \
                     [--durable DIR]"
                        .into(),
                );
            }
            f => return Err(format!("unknown argument {f:?}")),
        }
    }
    if a.size < 8 {
        return Err("--size must be at least 8 (the sequence number)".into());
    }
    Ok(a)
}

/// Pins this process to one CPU, if the machine has more than one.
fn pin(cpu: usize) {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus >= 2 {
        let mut set = rustix::thread::CpuSet::new();
        set.set(cpu % cpus);
        let _ = rustix::thread::sched_setaffinity(None, &set);
    }
}

fn fill(buf: &mut [u8], seq: u64) {
    buf[..8].copy_from_slice(&seq.to_le_bytes());
    for (i, b) in buf[8..].iter_mut().enumerate() {
        *b = (seq as u8).wrapping_add(i as u8);
    }
}

fn echo(prefix: &str, wait: Wait) -> shmq::Result<()> {
    pin(1);
    let mut rx = Consumer::open_with(&format!("{prefix}.ping"), wait)?;
    let mut tx = Producer::open_with(&format!("{prefix}.pong"), wait)?;
    let mut buf = Vec::new();
    loop {
        match rx.recv() {
            Ok(msg) => {
                buf.clear();
                buf.extend_from_slice(&msg);
            }
            Err(shmq::Error::Closed) => return Ok(()),
            Err(e) => return Err(e),
        }
        tx.send(&buf)?;
    }
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let result = match &args.role_echo {
        Some(prefix) => echo(prefix, args.wait),
        None => run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pingpong: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> shmq::Result<()> {
    let prefix = format!("pingpong-{}", std::process::id());
    let (ping, pong) = (format!("{prefix}.ping"), format!("{prefix}.pong"));
    let opts = Options::new().mode(Mode::Spsc).capacity(1 << 20).max_message(args.size.max(64) as u32);
    let logs: Vec<_> = args.durable.iter().flat_map(|d| [d.join(&ping), d.join(&pong)]).collect();
    let _cleanup = Cleanup(vec![ping.clone(), pong.clone()], logs.clone());
    let durable = |opts: &Options, i: usize| match logs.get(i) {
        Some(dir) => opts.clone().durable(dir).fsync(Fsync::Never),
        None => opts.clone(),
    };
    Queue::create(&ping, durable(&opts, 0))?;
    Queue::create(&pong, durable(&opts, 1))?;
    let mut tx = Producer::open_with(&ping, args.wait)?;
    let mut rx = Consumer::open_with(&pong, args.wait)?;
    let wait_name = args.wait.as_str();
    let exe = std::env::current_exe().map_err(|e| shmq::Error::Io { context: "current_exe".into(), source: e })?;
    let mut child = Command::new(exe)
        .args(["--wait", wait_name, "--role", "echo", &prefix])
        .spawn()
        .map_err(|e| shmq::Error::Io { context: "spawn the echo peer".into(), source: e })?;
    // Pin only after spawning: the peer inherits our CPU mask and must still see two CPUs.
    pin(0);

    let mut hist = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram bounds");
    let mut out = vec![0u8; args.size];
    let mut expect = vec![0u8; args.size];
    let timeout = Duration::from_secs(10);
    let started = Instant::now();
    for seq in 0..args.warmup + args.round_trips {
        let t0 = Instant::now();
        let mut grant = tx.reserve_timeout(args.size, timeout)?;
        fill(&mut grant, seq);
        grant.commit().expect("commit");
        let msg = rx.recv_timeout(timeout)?;
        out.copy_from_slice(&msg);
        drop(msg);
        let rtt = t0.elapsed();
        fill(&mut expect, seq);
        if out != expect {
            return Err(shmq::Error::Corrupt(format!("echo of message {seq} differs")));
        }
        if seq >= args.warmup {
            let _ = hist.record((rtt.as_nanos() as u64 / 2).max(1));
        }
    }
    let total = started.elapsed();
    drop(tx);
    Queue::remove(&ping)?;
    let _ = child.wait();

    println!(
        "shmq ping-pong{}, {} B, wait {wait_name}, {} round trips in {:.2} s (one-way latency = round trip / 2)",
        if args.durable.is_some() { " (durable, Fsync::Never)" } else { "" },
        args.size,
        args.round_trips,
        total.as_secs_f64()
    );
    for (label, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999)] {
        println!("  {label:>6}: {:>9} ns", hist.value_at_quantile(q));
    }
    println!("  {:>6}: {:>9} ns", "max", hist.max());
    Ok(())
}

/// Removes the queues (and their logs) when the run ends, however it ends.
struct Cleanup(Vec<String>, Vec<std::path::PathBuf>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for q in &self.0 {
            let _ = Queue::remove(q);
        }
        for dir in &self.1 {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

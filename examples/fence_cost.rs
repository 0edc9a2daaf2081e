//! What the waker's full fence costs a streaming producer: `SHMQ_MEMBARRIER=0` against the
//! default (registered: the waker's fence is a compiler fence).
//!
//! ```text
//! cargo run --release --example fence_cost -- [--size BYTES] [--runs N] [--messages N]
//! ```
//!
//! For each run, in turn registered and opted out, a fresh producer process (pinned to the
//! first allowed CPU) streams `--messages` messages of `--size` bytes through a 1 MiB SPSC
//! queue to a consumer process (pinned to the second) that drains with `recv_batch`; both
//! spin. The producer times 25 chunks and reports the best and the median rate; on a shared
//! machine the best chunk is the closer estimate of what the producer can do.

use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use shmq::{Consumer, Mode, Options, Producer, Queue, Wait};

const CHUNKS: usize = 25;

fn pin(cpu: usize) {
    let mut s = rustix::thread::CpuSet::new();
    s.set(cpu);
    if let Err(e) = rustix::thread::sched_setaffinity(None, &s) {
        eprintln!("fence_cost: pin to CPU {cpu}: {e}");
    }
}

fn cpus() -> Vec<usize> {
    rustix::thread::sched_getaffinity(None)
        .map(|set| (0..rustix::thread::CpuSet::MAX_CPU).filter(|&c| set.is_set(c)).collect())
        .unwrap_or_default()
}

fn arg(args: &[String], flag: &str, default: u64) -> Result<u64, String> {
    match args.iter().position(|a| a == flag) {
        None => Ok(default),
        Some(i) => args.get(i + 1).and_then(|v| v.parse().ok()).ok_or(format!("{flag} needs a number")),
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fence_cost: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let size = arg(&args, "--size", 64)? as usize;
    let messages = arg(&args, "--messages", 2_000_000)?;
    let e = |e: shmq::Error| e.to_string();
    match args.get(1).map(String::as_str) {
        Some("--role-consumer") => {
            pin(arg(&args, "--cpu", 1)? as usize);
            let mut rx = Consumer::open_with(&args[2], Wait::Spin).map_err(e)?;
            // Until the producer removes the queue.
            while rx.recv_batch(1 << 20, |_| {}).is_ok() {}
            Ok(())
        }
        Some("--role-producer") => {
            let (cpu0, cpu1) = (arg(&args, "--cpu", 0)? as usize, arg(&args, "--peer-cpu", 1)?);
            let name = format!("fence-cost-{}", std::process::id());
            let opts = Options::new().mode(Mode::Spsc).capacity(1 << 20).max_message(size as u32);
            Queue::create(&name, opts).map_err(e)?;
            let mut tx = Producer::open_with(&name, Wait::Spin).map_err(e)?;
            let exe = std::env::current_exe().map_err(|e| e.to_string())?;
            let mut consumer = Command::new(exe)
                .args(["--role-consumer", &name, "--cpu", &cpu1.to_string()])
                .spawn()
                .map_err(|e| e.to_string())?;
            pin(cpu0);
            let msg = vec![0x5a; size];
            let mut rates = Vec::new();
            for _ in 0..CHUNKS {
                let t = Instant::now();
                for _ in 0..messages {
                    // The plain path first; only a full queue waits, and boundedly, so that a
                    // consumer that died does not leave the producer spinning.
                    let _id = match tx.try_send(&msg) {
                        Err(shmq::Error::Full) => tx.send_timeout(&msg, Duration::from_secs(5)).map_err(e)?,
                        r => r.map_err(e)?,
                    };
                }
                rates.push(messages as f64 / t.elapsed().as_secs_f64());
            }
            drop(tx);
            let _ = Queue::remove(&name);
            let _ = consumer.wait();
            rates.sort_by(f64::total_cmp);
            println!("{} {}", rates[CHUNKS - 1], rates[CHUNKS / 2]);
            Ok(())
        }
        _ => {
            let cpus = cpus();
            if cpus.len() < 2 {
                return Err("needs two CPUs".into());
            }
            let runs = arg(&args, "--runs", 5)?;
            let exe = std::env::current_exe().map_err(|e| e.to_string())?;
            let mut out: [Vec<(f64, f64)>; 2] = [Vec::new(), Vec::new()];
            for _ in 0..runs {
                for (i, env) in ["1", "0"].into_iter().enumerate() {
                    let o = Command::new(&exe)
                        .args(["--role-producer", "--size", &size.to_string(), "--messages", &messages.to_string()])
                        .args(["--cpu", &cpus[0].to_string(), "--peer-cpu", &cpus[1].to_string()])
                        .env("SHMQ_MEMBARRIER", env)
                        .output()
                        .map_err(|e| e.to_string())?;
                    let text = String::from_utf8_lossy(&o.stdout);
                    let mut f = text.split_whitespace().filter_map(|x| x.parse::<f64>().ok());
                    match (f.next(), f.next()) {
                        (Some(best), Some(median)) => out[i].push((best, median)),
                        _ => return Err(format!("producer failed: {}", String::from_utf8_lossy(&o.stderr))),
                    }
                }
            }
            println!("streaming producer, {size} B, {runs} runs each (M msgs/s: best chunk / median chunk per run)");
            for (i, label) in ["registered (compiler fence)", "SHMQ_MEMBARRIER=0 (full fence)"].into_iter().enumerate()
            {
                let cells: Vec<String> = out[i].iter().map(|(b, m)| format!("{:.1}/{:.1}", b / 1e6, m / 1e6)).collect();
                let mut bests: Vec<f64> = out[i].iter().map(|r| r.0).collect();
                bests.sort_by(f64::total_cmp);
                println!(
                    "{label:<32} median of bests {:>6.1}   runs: {}",
                    bests[bests.len() / 2] / 1e6,
                    cells.join(" ")
                );
            }
            Ok(())
        }
    }
}

//! What a neighbour's sleeps cost a spinning queue: the jitter that membarrier adds.
//!
//! ```text
//! cargo run --release --example jitter -- [--seconds S] [--rounds R] [--size BYTES]
//!                                         [--only NAME,NAME...]
//! ```
//!
//! A *spinning pair* (two processes, `Wait::Spin`, ping-pong through two SPSC queues, one
//! process pinned to each of the first two allowed CPUs) measures one-way latency (round
//! trip / 2) into an HdrHistogram for S seconds. Meanwhile a *neighbour pair* (two more
//! processes, `Wait::Block`, ping-pong on two other queues, pinned one to each of the same
//! two CPUs) sleeps and wakes as fast as it can: every receive sleeps in the kernel, and
//! every sleep issues the heavy barrier (`membarrier(GLOBAL_EXPEDITED)`), which interrupts
//! each CPU that is running a thread of a process registered for it.
//!
//! Scenarios (each round runs each once, interleaved, with fresh processes: a process's
//! registration is for its life):
//! * `alone`: the spinning pair only, registered (the default).
//! * `alone-fenced`: the spinning pair only, `SHMQ_MEMBARRIER=0`: its sends use a full fence.
//! * `neighbour-membarrier`: both pairs registered (the default everywhere).
//! * `neighbour-fallback`: all four processes `SHMQ_MEMBARRIER=0`: wakers fence, and the
//!   sleepers' barrier interrupts nobody.
//! * `neighbour-spinners-out`: only the spinning pair opts out; the neighbour is registered.
//!
//! On two CPUs the neighbour also takes CPU time from the spinners (each of its wakeups
//! preempts one): compare the neighbour scenarios with each other to see the barrier, and
//! with `alone` to see everything a neighbour costs. `--neighbour-nice -10` (root) gives the
//! neighbour's processes priority, so that each wakeup preempts a spinner at once and the
//! neighbour sleeps and wakes at the highest rate the two CPUs allow.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use shmq::{Consumer, Mode, Options, Producer, Queue, Wait};

const SCENARIOS: [(&str, bool, Option<bool>); 5] = [
    // (name, spinners registered, neighbour: None = absent, Some(registered))
    ("alone", true, None),
    ("alone-fenced", false, None),
    ("neighbour-membarrier", true, Some(true)),
    ("neighbour-fallback", false, Some(false)),
    ("neighbour-spinners-out", false, Some(true)),
];

/// Round trips before the spinning pair starts recording.
const WARMUP: u64 = 20_000;

struct Args {
    seconds: f64,
    rounds: u32,
    size: usize,
    only: Vec<String>,
    /// Nice value of the neighbour's processes.
    nice: i32,
    role: Option<Role>,
}

struct Role {
    name: String,
    queue: String,
    cpu: usize,
    stop: PathBuf,
}

fn parse() -> Result<Args, String> {
    let mut a = Args { seconds: 2.0, rounds: 3, size: 64, only: Vec::new(), nice: 0, role: None };
    let (mut role, mut queue, mut cpu, mut stop) = (None, None, None, None);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--seconds" => a.seconds = value()?.parse().map_err(|e| format!("--seconds: {e}"))?,
            "--rounds" => a.rounds = value()?.parse().map_err(|e| format!("--rounds: {e}"))?,
            "--size" => a.size = value()?.parse().map_err(|e| format!("--size: {e}"))?,
            "--neighbour-nice" => a.nice = value()?.parse().map_err(|e| format!("--neighbour-nice: {e}"))?,
            "--only" => a.only = value()?.split(',').map(str::to_owned).collect(),
            "--role" => role = Some(value()?),
            "--queue" => queue = Some(value()?),
            "--cpu" => cpu = Some(value()?.parse().map_err(|e| format!("--cpu: {e}"))?),
            "--stop" => stop = Some(PathBuf::from(value()?)),
            "-h" | "--help" => {
                return Err(
                    "usage: jitter [--seconds S] [--rounds R] [--size BYTES] [--neighbour-nice N] [--only NAME,...]"
                        .into(),
                );
            }
            f => return Err(format!("unknown argument {f:?}")),
        }
    }
    if a.size < 8 {
        return Err("--size must be at least 8 (the sequence number)".into());
    }
    if a.rounds == 0 || a.seconds.is_nan() || a.seconds <= 0.0 {
        return Err("--rounds and --seconds must be positive".into());
    }
    for o in &a.only {
        if !SCENARIOS.iter().any(|s| s.0 == o) {
            return Err(format!("unknown scenario {o:?}"));
        }
    }
    if let Some(name) = role {
        a.role = Some(Role {
            name,
            queue: queue.ok_or("--role needs --queue")?,
            cpu: cpu.ok_or("--role needs --cpu")?,
            stop: stop.ok_or("--role needs --stop")?,
        });
    }
    Ok(a)
}

fn pin(cpu: usize) -> Result<(), String> {
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu);
    rustix::thread::sched_setaffinity(None, &set).map_err(|e| format!("pin to CPU {cpu}: {e}"))
}

fn allowed_cpus() -> Vec<usize> {
    match rustix::thread::sched_getaffinity(None) {
        Ok(set) => (0..rustix::thread::CpuSet::MAX_CPU).filter(|&c| set.is_set(c)).collect(),
        Err(_) => Vec::new(),
    }
}

/// The two handles of one side of a pair: the lead sends on `-a` and receives on `-b`.
fn open(base: &str, lead: bool, wait: Wait) -> shmq::Result<(Producer, Consumer)> {
    let (out, inn) = if lead { ("a", "b") } else { ("b", "a") };
    Ok((Producer::open_with(&format!("{base}-{out}"), wait)?, Consumer::open_with(&format!("{base}-{inn}"), wait)?))
}

/// One round trip: send `msg` (stamped with `seq`), receive the echo, check it.
fn round_trip(tx: &mut Producer, rx: &mut Consumer, msg: &mut [u8], seq: u64) -> Result<(), String> {
    msg[..8].copy_from_slice(&seq.to_le_bytes());
    tx.send(msg).map_err(|e| e.to_string())?;
    let m = rx.recv().map_err(|e| e.to_string())?;
    if m.len() != msg.len() || m[..8] != seq.to_le_bytes() {
        return Err(format!("round trip {seq} came back wrong"));
    }
    Ok(())
}

/// Runs one of the four processes. Leads write one result line on stdout.
fn serve(role: &Role, seconds: f64, size: usize, nice: i32) -> Result<(), String> {
    pin(role.cpu)?;
    let spin = role.name.starts_with("spin");
    if !spin && nice != 0 {
        rustix::process::setpriority_process(None, nice).map_err(|e| format!("nice {nice}: {e}"))?;
    }
    let wait = if spin { Wait::Spin } else { Wait::Block };
    let lead = role.name.ends_with("lead");
    let (mut tx, mut rx) = open(&role.queue, lead, wait).map_err(|e| e.to_string())?;
    if !lead {
        // Echo until the queue is closed (the leader removes it) or this process is killed.
        loop {
            let m = match rx.recv() {
                Ok(m) => m,
                Err(shmq::Error::Closed) => return Ok(()),
                Err(e) => return Err(e.to_string()),
            };
            tx.send(&m).map_err(|e| e.to_string())?;
        }
    }
    let mut msg = vec![0x5au8; size];
    let mut seq = 0u64;
    let mut out = std::io::stdout().lock();
    if spin {
        for _ in 0..WARMUP {
            round_trip(&mut tx, &mut rx, &mut msg, seq)?;
            seq += 1;
        }
        let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).map_err(|e| e.to_string())?;
        let start = Instant::now();
        let end = start + Duration::from_secs_f64(seconds);
        let mut prev = start;
        loop {
            round_trip(&mut tx, &mut rx, &mut msg, seq)?;
            seq += 1;
            let now = Instant::now();
            hist.saturating_record(((now - prev).as_nanos() as u64).div_ceil(2).max(1));
            prev = now;
            if now >= end {
                break;
            }
        }
        // The histogram as `value:count` pairs (values at bucket resolution).
        let pairs: Vec<String> =
            hist.iter_recorded().map(|v| format!("{}:{}", v.value_iterated_to(), v.count_at_value())).collect();
        writeln!(out, "hist {}", pairs.join(" ")).map_err(|e| e.to_string())?;
    } else {
        // The neighbour's lead runs until the stop file appears, then says how fast it went.
        let start = Instant::now();
        let sleeps0 = sleeps(&role.queue);
        while !role.stop.exists() {
            for _ in 0..256 {
                round_trip(&mut tx, &mut rx, &mut msg, seq)?;
                seq += 1;
            }
        }
        let secs = start.elapsed().as_secs_f64();
        let slept = sleeps(&role.queue).saturating_sub(sleeps0);
        writeln!(out, "rate {} {}", seq as f64 / secs, slept as f64 / secs).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Futex sleeps on both queues of a pair so far (producers' and consumers').
fn sleeps(base: &str) -> u64 {
    ["a", "b"]
        .iter()
        .filter_map(|s| Queue::inspect(&format!("{base}-{s}")).ok())
        .map(|snap| snap.sent.wait_calls + snap.received.wait_calls)
        .sum()
}

/// A child process in a role, with `SHMQ_MEMBARRIER=0` unless `registered`.
fn spawn(role: &str, queue: &str, cpu: usize, stop: &PathBuf, registered: bool, a: &Args) -> Result<Child, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut cmd = Command::new(exe);
    cmd.args(["--role", role, "--queue", queue, "--cpu", &cpu.to_string()])
        .arg("--stop")
        .arg(stop)
        .args(["--seconds", &a.seconds.to_string(), "--size", &a.size.to_string()])
        .args(["--neighbour-nice", &a.nice.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if registered {
        cmd.env_remove("SHMQ_MEMBARRIER");
    } else {
        cmd.env("SHMQ_MEMBARRIER", "0");
    }
    cmd.spawn().map_err(|e| format!("start {role}: {e}"))
}

fn read_line(child: &mut Child) -> Result<String, String> {
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().ok_or("no stdout")?).read_line(&mut line).map_err(|e| e.to_string())?;
    if line.is_empty() {
        return Err("a child process exited without a result".into());
    }
    Ok(line.trim_end().to_owned())
}

struct Outcome {
    hist: Histogram<u64>,
    /// Neighbour round trips and futex sleeps per second.
    neighbour: Option<(f64, f64)>,
}

fn run_scenario(a: &Args, cpus: (usize, usize), n: usize, spin_reg: bool, nb: Option<bool>) -> Result<Outcome, String> {
    let pid = std::process::id();
    let (spin_q, nb_q) = (format!("jitter-{pid}-{n}-s"), format!("jitter-{pid}-{n}-n"));
    let stop = std::env::temp_dir().join(format!("shmq-jitter-{pid}-{n}.stop"));
    let _ = std::fs::remove_file(&stop);
    let opts = Options::new().mode(Mode::Spsc).capacity(1 << 20).max_message(a.size.max(64) as u32);
    let mut names = vec![format!("{spin_q}-a"), format!("{spin_q}-b")];
    if nb.is_some() {
        names.extend([format!("{nb_q}-a"), format!("{nb_q}-b")]);
    }
    for q in &names {
        Queue::create(q, opts.clone()).map_err(|e| format!("create {q}: {e}"))?;
    }
    let mut children: Vec<Child> = Vec::new();
    let result = (|| {
        if let Some(reg) = nb {
            children.push(spawn("block-echo", &nb_q, cpus.1, &stop, reg, a)?);
            children.push(spawn("block-lead", &nb_q, cpus.0, &stop, reg, a)?);
            // Let the neighbour reach its pace.
            std::thread::sleep(Duration::from_millis(200));
        }
        children.push(spawn("spin-echo", &spin_q, cpus.1, &stop, spin_reg, a)?);
        children.push(spawn("spin-lead", &spin_q, cpus.0, &stop, spin_reg, a)?);
        let lead = children.len() - 1;
        let line = read_line(&mut children[lead])?;
        let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).map_err(|e| e.to_string())?;
        for pair in line.strip_prefix("hist ").ok_or(format!("unexpected {line:?}"))?.split_whitespace() {
            let (v, c) = pair.split_once(':').ok_or("bad histogram")?;
            let (v, c): (u64, u64) = (v.parse().map_err(|_| "bad value")?, c.parse().map_err(|_| "bad count")?);
            hist.record_n(v, c).map_err(|e| e.to_string())?;
        }
        std::fs::write(&stop, b"").map_err(|e| e.to_string())?;
        let neighbour = if nb.is_some() {
            let line = read_line(&mut children[1])?;
            let mut f = line.strip_prefix("rate ").ok_or(format!("unexpected {line:?}"))?.split_whitespace();
            let mut num = || f.next().and_then(|x| x.parse::<f64>().ok()).ok_or("bad rate");
            Some((num()?, num()?))
        } else {
            None
        };
        Ok(Outcome { hist, neighbour })
    })();
    // Removing the queues wakes the echoes with `Closed`; kill whatever is left after that.
    for q in &names {
        let _ = Queue::remove(q);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    for c in &mut children {
        while c.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if c.try_wait().ok().flatten().is_none() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
    let _ = std::fs::remove_file(&stop);
    result
}

fn main() -> ExitCode {
    let a = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("jitter: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(role) = &a.role {
        return match serve(role, a.seconds, a.size, a.nice) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("jitter {}: {e}", role.name);
                ExitCode::FAILURE
            }
        };
    }
    let cpus = allowed_cpus();
    if cpus.len() < 2 {
        eprintln!("jitter: needs two CPUs (spinning pairs)");
        return ExitCode::FAILURE;
    }
    let pair = (cpus[0], cpus[1]);
    let scenarios: Vec<_> =
        SCENARIOS.iter().filter(|s| a.only.is_empty() || a.only.iter().any(|o| o == s.0)).copied().collect();
    let mut merged: Vec<Option<Histogram<u64>>> = vec![None; scenarios.len()];
    let mut per_round: Vec<Vec<(u64, u64, u64)>> = vec![Vec::new(); scenarios.len()];
    let mut rates: Vec<Vec<(f64, f64)>> = vec![Vec::new(); scenarios.len()];
    let mut n = 0;
    eprintln!(
        "jitter: spinning pair on CPUs {} and {}, neighbour pair on the same two; {} B; {} rounds of {} s",
        pair.0, pair.1, a.size, a.rounds, a.seconds
    );
    for r in 0..a.rounds {
        for (i, &(name, spin_reg, nb)) in scenarios.iter().enumerate() {
            eprintln!("jitter: round {}/{}: {name}", r + 1, a.rounds);
            n += 1;
            let o = match run_scenario(&a, pair, n, spin_reg, nb) {
                Ok(o) => o,
                Err(e) => {
                    eprintln!("jitter: {name}: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let q = |p: f64| o.hist.value_at_quantile(p);
            per_round[i].push((q(0.5), q(0.99), q(0.999)));
            if let Some(rate) = o.neighbour {
                rates[i].push(rate);
            }
            match &mut merged[i] {
                Some(h) => {
                    let _ = h.add(&o.hist);
                }
                slot => *slot = Some(o.hist),
            }
        }
    }
    println!("one-way latency of the spinning pair, ns ({} B, {} rounds of {} s, merged)", a.size, a.rounds, a.seconds);
    println!(
        "{:<24} {:>6} {:>6} {:>7} {:>8} {:>9} {:>9}  {:>22}  {:>26}",
        "scenario", "p50", "p99", "p99.9", "p99.99", "max", "samples", "per round p99.9", "neighbour RT/s / sleeps/s"
    );
    for (i, &(name, _, nb)) in scenarios.iter().enumerate() {
        let Some(h) = &merged[i] else { continue };
        let q = |p: f64| h.value_at_quantile(p);
        let rounds: Vec<String> = per_round[i].iter().map(|r| r.2.to_string()).collect();
        let rate = if nb.is_some() {
            let mut v: Vec<f64> = rates[i].iter().map(|r| r.0).collect();
            v.sort_by(f64::total_cmp);
            let mut w: Vec<f64> = rates[i].iter().map(|r| r.1).collect();
            w.sort_by(f64::total_cmp);
            format!("{:.1} k / {:.1} k", v[v.len() / 2] / 1e3, w[w.len() / 2] / 1e3)
        } else {
            "-".to_owned()
        };
        println!(
            "{:<24} {:>6} {:>6} {:>7} {:>8} {:>9} {:>9}  {:>22}  {:>26}",
            name,
            q(0.5),
            q(0.99),
            q(0.999),
            q(0.9999),
            h.max(),
            h.len(),
            rounds.join(" "),
            rate
        );
    }
    let _ = std::io::stdout().flush();
    ExitCode::SUCCESS
}

//! `shmq bench --acks`: what explicit acknowledgements cost, and how soon a dead member's
//! messages are delivered again, measured between real processes on durable queues.
//!
//! # Method
//! * Every queue is durable (`Fsync::Never`, the default), its log in a new directory
//!   under `--dir` (on a disk: tmpfs and ramfs are refused unless `--allow-tmpfs`), with
//!   one named subscription and the default subscription removed (nobody would read it).
//!   The leader (this process) is the one producer; members are *peer* processes (the same
//!   binary re-executed as `shmq bench-peer`), not pinned, all waiting with `Wait::Block`.
//! * **Throughput**: two cases, run interleaved in rounds (auto explicit auto explicit ...)
//!   at each size, each on a fresh queue:
//!   - `auto`: a named subscription with `Ack::Auto` (receiving is acknowledging);
//!   - `explicit`: a named subscription with `Ack::Explicit` (`ack_wait` 30 s,
//!     `max_in_flight` 256), whose member acks every message once it has checked it.
//!
//!   One member, receiving with `recv_timeout` one message at a time in both cases (the
//!   batch calls do not serve explicit acks). The leader sends `M` numbered messages (the
//!   sequence number in the first 8 bytes, then a fixed pattern); the member copies each
//!   out, checks its pattern, that it is the next number (so it got exactly `0..M`, each
//!   once, in order) and, with explicit acks, that it is a first delivery; it reports its
//!   count, the sum and sum of squares of the numbers (checked again by the leader) and the
//!   `CLOCK_MONOTONIC` time of its last receive (and ack). *Delivered* msgs/s = `M` / (that
//!   time − the time of the first send). `M` is the same for both cases at a size
//!   (`--messages`, or what fits in a time budget after an unrecorded warm-up run of each).
//!   The ratio explicit / auto is taken within each round; its median, min and max are
//!   reported (target: >= 0.7 at 64 B).
//! * **Redelivery after a death**: `--kills` rounds, each on a fresh queue whose
//!   subscription has explicit acks and `ack_wait` 30 s (so expiry cannot be what delivers
//!   again). The leader sends [`HELD`] messages; member A (a new peer process each round)
//!   receives them all without acking and says so; member B (a peer process) joins and
//!   waits in `recv_timeout`. After a random pause of 20-120 ms (so the kill falls anywhere
//!   in B's 50 ms period of looking through the in-flight table), the leader reads
//!   `CLOCK_MONOTONIC` and sends A `SIGKILL`. B records `CLOCK_MONOTONIC` when its receive
//!   returns the first message delivered again (delivery count 2, one of A's), then takes
//!   and acks the rest. Latency = B's time − the kill time (the same clock in every process
//!   of the host): p50, p90, p99, max over rounds (nearest rank; target: p99 <= 250 ms).
//!   B must get exactly A's messages, each with count 2, nothing before the kill and
//!   nothing else.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use shmq::{Ack, Consumer, Fsync, Producer, Queue, Subscription, SubscriptionOptions, Wait, dlq_name};

use super::durable::check_dir;
use super::fanout::Tally;
use super::peer::Control;
use super::report::{self, Machine, RunInfo};
use super::transports::{QueueGuard, queue_capacity, queue_options};
use super::{Peer, STUCK, allowed_cpus, check, count_for, mono_ns, pattern, size_label, stamp};

/// Smallest message: the whole sequence number must fit.
pub const MIN_SIZE: usize = 8;
/// Messages member A holds unacknowledged when it is killed.
pub const HELD: u64 = 8;
/// Size of the messages of the redelivery rounds.
const KILL_SIZE: usize = 64;
/// The subscription of every queue of this bench.
const SUB: &str = "work";
/// `ack_wait` of every subscription with explicit acks here: far longer than any round, so
/// only a death can make a message be delivered again.
const ACK_WAIT: Duration = Duration::from_secs(30);
/// The target for explicit / auto delivered msgs/s at 64 B.
pub const TARGET_RATIO: f64 = 0.7;
/// The target for the p99 of the first redelivery after a death, in ms.
pub const TARGET_P99_MS: f64 = 250.0;

/// What a peer does (the line `acks {Role as JSON}`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Role {
    /// Joins subscription [`SUB`] of `queue`, says `ready`, takes `stream M`, receives and
    /// checks messages `0..M` in order (acking each when `explicit`), says `stopped COUNT
    /// SUM SUMSQ END_NS`, leaves and says `left`.
    Member { queue: String, size: usize, explicit: bool },
    /// Joins, receives messages `0..count` without acking them, says `holding COUNT` and
    /// keeps them until it is killed (or the control pipe closes).
    Holder { queue: String, size: usize, count: u64 },
    /// Joins, says `ready`, waits for messages `0..count` delivered again (count 2), acks
    /// them, says `redelivered FIRST_NS ALL_NS`, leaves and says `left`.
    Waiter { queue: String, size: usize, count: u64 },
}

/// The peer's side: plays `json`'s role.
pub fn serve<R: std::io::BufRead, W: std::io::Write>(ctl: &mut Control<R, W>, json: &str) -> Result<()> {
    let role: Role = serde_json::from_str(json).context("parse the role")?;
    let (queue, size) = match &role {
        Role::Member { queue, size, .. } | Role::Holder { queue, size, .. } | Role::Waiter { queue, size, .. } => {
            (queue.clone(), *size)
        }
    };
    if size < MIN_SIZE {
        bail!("messages of {size} bytes cannot carry a sequence number");
    }
    let pat = pattern(size);
    let mut out = vec![0u8; size];
    let mut rx = Consumer::subscribe_with(&queue, SUB, Wait::Block)
        .with_context(|| format!("join subscription {SUB:?} of {queue:?}"))?;
    // Receives one message, copies it out and checks it: (sequence number, id, deliveries).
    let mut take = |rx: &mut Consumer, timeout: Duration| -> Result<(u64, u64, u32)> {
        let m = rx.recv_timeout(timeout).context("receive")?;
        if m.len() != out.len() {
            bail!("a message of {} bytes, expected {}", m.len(), out.len());
        }
        out.copy_from_slice(&m);
        let seq = u64::from_le_bytes(out[..8].try_into().expect("8 bytes"));
        if !check(&out, seq, &pat) {
            bail!("message {seq} arrived corrupted");
        }
        Ok((seq, m.id(), m.delivery_count()))
    };
    match role {
        Role::Member { explicit, .. } => {
            ctl.say("ready")?;
            let line = ctl.hear()?;
            let total: u64 = line
                .strip_prefix("stream ")
                .and_then(|n| n.trim().parse().ok())
                .ok_or_else(|| anyhow!("unexpected {line:?} from the leader"))?;
            let mut tally = Tally::default();
            for i in 0..total {
                let (seq, id, n) = take(&mut rx, STUCK).with_context(|| format!("message {i} of {total}"))?;
                if seq != i {
                    bail!("message {seq} arrived where {i} was due");
                }
                if explicit {
                    if n != 1 {
                        bail!("message {seq} was delivered {n} times (nothing should be delivered again)");
                    }
                    rx.ack(id).with_context(|| format!("ack message {seq}"))?;
                }
                tally.add(seq);
            }
            let end = mono_ns();
            if rx.in_flight() != 0 {
                bail!("{} messages still in flight after acking every one", rx.in_flight());
            }
            ctl.say(&format!("stopped {} {} {} {end}", tally.count, tally.sum, tally.sum_sq))?;
            drop(rx);
            ctl.say("left")
        }
        Role::Holder { count, .. } => {
            for i in 0..count {
                let (seq, _, n) = take(&mut rx, STUCK).with_context(|| format!("message {i} of {count}"))?;
                if (seq, n) != (i, 1) {
                    bail!("message {seq} (delivered {n} times) arrived where the first delivery of {i} was due");
                }
            }
            ctl.say(&format!("holding {count}"))?;
            // Holds them (unacknowledged) until SIGKILL; the leader never says anything here.
            let line = ctl.hear()?;
            if !line.is_empty() {
                bail!("unexpected {line:?} from the leader while holding messages");
            }
            Ok(())
        }
        Role::Waiter { count, .. } => {
            ctl.say("ready")?;
            let mut seen = vec![false; count as usize];
            let mut first = None;
            for _ in 0..count {
                let (seq, id, n) = take(&mut rx, STUCK).context("wait for a message delivered again")?;
                let t = mono_ns();
                first.get_or_insert(t);
                if seq >= count || seen[seq as usize] || n != 2 {
                    bail!("got message {seq} delivered {n} times: expected each of 0..{count} once, delivered twice");
                }
                seen[seq as usize] = true;
                rx.ack(id).with_context(|| format!("ack message {seq}"))?;
            }
            let all = mono_ns();
            if let Some(m) = rx.try_recv().context("receive")? {
                bail!(
                    "one more message ({} bytes, delivered {} times) after all held ones",
                    m.len(),
                    m.delivery_count()
                );
            }
            if rx.in_flight() != 0 {
                bail!("{} messages still in flight after acking every one", rx.in_flight());
            }
            ctl.say(&format!("redelivered {} {all}", first.unwrap_or(all)))?;
            drop(rx);
            ctl.say("left")
        }
    }
}

/// One measured throughput case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Case {
    /// A named subscription with `Ack::Auto`.
    Auto,
    /// A named subscription with `Ack::Explicit`, every message acked.
    Explicit,
}

impl Case {
    /// Both, in table (and run) order.
    pub const ALL: [Case; 2] = [Case::Auto, Case::Explicit];

    /// The name in the table and the JSON.
    pub fn name(self) -> &'static str {
        match self {
            Case::Auto => "auto",
            Case::Explicit => "explicit",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Case::Auto => "a named subscription, Ack::Auto, 1 member (recv)",
            Case::Explicit => "a named subscription, Ack::Explicit, 1 member (recv, then ack each)",
        }
    }

    fn options(self) -> SubscriptionOptions {
        match self {
            Case::Auto => SubscriptionOptions::new(),
            Case::Explicit => SubscriptionOptions::new().ack(Ack::Explicit).ack_wait(ACK_WAIT),
        }
    }
}

/// `shmq bench --acks` options, from [`super::BenchArgs`].
pub struct Plan {
    /// Message sizes.
    pub sizes: Vec<usize>,
    /// Throughput rounds.
    pub rounds: u32,
    /// Time for one throughput run, without `--messages`.
    pub budget: Duration,
    /// Messages per throughput run instead of the time budget.
    pub fixed: Option<u64>,
    /// Messages of the unrecorded warm-up run of each case and size (at least two rings).
    pub warmup: u64,
    /// Redelivery rounds (each kills one member).
    pub kills: u32,
    /// Where the logs go.
    pub dir: PathBuf,
    /// `--quick`.
    pub quick: bool,
}

/// Removes, when dropped, a queue, its subscription's dead-letter queue and its log
/// directory. Unlike [`QueueGuard`], it does not tell the peers' watchdogs about the queue:
/// the redelivery rounds kill a peer on purpose, and the queue must outlive it.
struct Scratch {
    queue: String,
    dir: PathBuf,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = Queue::remove(&self.queue);
        let _ = Queue::remove(&dlq_name(&self.queue, SUB));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Creates durable queue `q` (log in `dir/q`) for messages of `size` bytes with subscription
/// [`SUB`] (`options`) and without the default one.
fn make_queue(dir: &Path, q: &str, size: usize, options: SubscriptionOptions) -> Result<Scratch> {
    let log = dir.join(q);
    Queue::create(q, queue_options(size).durable(&log).fsync(Fsync::Never))
        .with_context(|| format!("create queue {q:?}"))?;
    let scratch = Scratch { queue: q.to_owned(), dir: log };
    Subscription::create(q, SUB, options).with_context(|| format!("create subscription {SUB:?} of {q:?}"))?;
    // Nobody reads the default subscription here (it would only keep the log).
    Subscription::remove(q, Subscription::DEFAULT)
        .with_context(|| format!("remove the default subscription of {q:?}"))?;
    Ok(scratch)
}

/// Sends a role to a peer.
fn assign(peer: &mut Peer, role: &Role) -> Result<()> {
    peer.say(&format!("acks {}", serde_json::to_string(role)?))
}

/// How long one throughput run took.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// Messages streamed.
    pub messages: u64,
    /// Until the last send returned.
    pub sent: Duration,
    /// Until the member had received (and acked) the last one.
    pub delivered: Duration,
}

impl Timing {
    fn sent_rate(&self) -> f64 {
        self.messages as f64 / self.sent.as_secs_f64().max(1e-12)
    }

    fn delivered_rate(&self) -> f64 {
        self.messages as f64 / self.delivered.as_secs_f64().max(1e-12)
    }
}

/// One throughput run of `case` at `size` with `count` messages.
fn run_case(peer: &mut Peer, dir: &Path, case: Case, size: usize, count: u64, id: u64) -> Result<Timing> {
    let q = format!("bench-{}-a{id}", std::process::id());
    let _scratch = make_queue(dir, &q, size, case.options())?;
    // Dropped first: if the member dies, its watchdog removes the queue and a send returns.
    let _guard = QueueGuard::new(vec![q.clone()]);
    assign(peer, &Role::Member { queue: q.clone(), size, explicit: case == Case::Explicit })?;
    peer.expect("ready")?;
    let mut tx = Producer::open_with(&q, Wait::Block).context("open the producer")?;
    peer.say(&format!("stream {count}"))?;
    let mut msg = pattern(size);
    let t0 = mono_ns();
    for i in 0..count {
        stamp(&mut msg, i);
        tx.send_timeout(&msg, STUCK).with_context(|| format!("send message {i}"))?;
    }
    let sent = Duration::from_nanos(mono_ns() - t0);
    let line = peer.hear()?;
    let words = line.strip_prefix("stopped ").ok_or_else(|| anyhow!("member said {line:?}"))?;
    let (tally, end) = words
        .rsplit_once(' ')
        .and_then(|(t, e)| Some((Tally::parse(t)?, e.parse::<u64>().ok()?)))
        .ok_or_else(|| anyhow!("member said {line:?}"))?;
    if tally != Tally::of_all(count) {
        bail!(
            "{}: the member received {} of {count} messages (or not each once: sums {} {} against {} {})",
            case.name(),
            tally.count,
            tally.sum,
            tally.sum_sq,
            Tally::of_all(count).sum,
            Tally::of_all(count).sum_sq
        );
    }
    peer.expect("left")?;
    drop(tx);
    Ok(Timing { messages: count, sent, delivered: Duration::from_nanos(end.saturating_sub(t0)) })
}

/// One redelivery round.
#[derive(Clone, Copy, Debug)]
pub struct Kill {
    /// From the kill to B's receive of the first message delivered again.
    pub first: Duration,
    /// From the kill to B's receive of the last of the [`HELD`] messages.
    pub all: Duration,
}

/// A pseudo-random pause of 20-120 ms (splitmix64 of the clock and the round).
fn pause(round: u32) -> Duration {
    let mut z = mono_ns() ^ u64::from(round).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    Duration::from_micros(20_000 + z % 100_000)
}

/// One redelivery round: A holds [`HELD`] messages and is killed; B (`waiter`) gets them.
fn run_kill(waiter: &mut Peer, dir: &Path, round: u32) -> Result<Kill> {
    let q = format!("bench-{}-k{round}", std::process::id());
    let o = SubscriptionOptions::new().ack(Ack::Explicit).ack_wait(ACK_WAIT);
    let _scratch = make_queue(dir, &q, KILL_SIZE, o)?;
    {
        let mut tx = Producer::open_with(&q, Wait::Block).context("open the producer")?;
        let mut msg = pattern(KILL_SIZE);
        for i in 0..HELD {
            stamp(&mut msg, i);
            tx.send_timeout(&msg, STUCK).with_context(|| format!("send message {i}"))?;
        }
    }
    let mut a = Peer::spawn(None)?;
    assign(&mut a, &Role::Holder { queue: q.clone(), size: KILL_SIZE, count: HELD })?;
    a.expect(&format!("holding {HELD}")).map_err(|e| a.explain(e))?;
    assign(waiter, &Role::Waiter { queue: q.clone(), size: KILL_SIZE, count: HELD })?;
    waiter.expect("ready")?;
    std::thread::sleep(pause(round));
    let killed = mono_ns();
    rustix::process::kill_process(a.pid, rustix::process::Signal::KILL).context("kill member A")?;
    // Collects A (its watchdog notices the exit); the queue is not in `CURRENT_QUEUES`.
    drop(a);
    let line = waiter.hear()?;
    let (first, all) = line
        .strip_prefix("redelivered ")
        .and_then(|w| w.split_once(' '))
        .and_then(|(f, a)| Some((f.parse::<u64>().ok()?, a.parse::<u64>().ok()?)))
        .ok_or_else(|| anyhow!("member B said {line:?}"))?;
    if first < killed {
        bail!("member B got a message delivered again {} µs before member A was killed", (killed - first) / 1000);
    }
    waiter.expect("left")?;
    Ok(Kill { first: Duration::from_nanos(first - killed), all: Duration::from_nanos(all.saturating_sub(killed)) })
}

/// Everything measured.
pub struct AcksMeasurements {
    /// Sizes.
    pub sizes: Vec<usize>,
    /// Messages per run, per size.
    pub counts: Vec<u64>,
    /// `runs[round][size index][case index]`.
    pub runs: Vec<Vec<Vec<Timing>>>,
    /// The redelivery rounds.
    pub kills: Vec<Kill>,
    /// Wall time.
    pub elapsed: Duration,
    /// The file system of `--dir`.
    pub fs: String,
}

/// Runs the throughput rounds, then the redelivery rounds.
pub fn measure(plan: &Plan, fs: String) -> Result<AcksMeasurements> {
    let start = Instant::now();
    let lines = !std::io::IsTerminal::is_terminal(&std::io::stderr());
    let say = |what: &str| {
        if lines {
            eprintln!("shmq bench: [{:>5.1} s] {what}", start.elapsed().as_secs_f64());
        }
    };
    let mut peer = Peer::spawn(None)?;
    let mut id = 0u64;
    let mut one = |peer: &mut Peer, case: Case, size: usize, count: u64| {
        id += 1;
        run_case(peer, &plan.dir, case, size, count, id)
            .with_context(|| format!("{} with {size}-byte messages", case.name()))
            .map_err(|e| peer.explain(e))
    };
    // Warm-up, unrecorded: it also tells how many messages fit in the budget. At least two
    // rings' worth, so that the member has had to read the log.
    let mut counts = Vec::new();
    for &size in &plan.sizes {
        let n = plan.warmup.max(2 * queue_capacity(size) / (size as u64 + 8));
        say(&format!("warm-up: {n} messages per case, {}", size_label(size)));
        let mut per = Duration::ZERO;
        for case in Case::ALL {
            let t = one(&mut peer, case, size, n)?;
            per = per.max(t.delivered / n as u32);
        }
        counts.push(plan.fixed.unwrap_or_else(|| count_for(plan.budget, per)));
    }
    let mut runs = Vec::new();
    for r in 0..plan.rounds {
        let mut by_size = Vec::new();
        for (si, &size) in plan.sizes.iter().enumerate() {
            say(&format!("round {}/{}, {}: auto, explicit", r + 1, plan.rounds, size_label(size)));
            let mut by_case = Vec::new();
            for case in Case::ALL {
                by_case.push(one(&mut peer, case, size, counts[si])?);
            }
            by_size.push(by_case);
        }
        runs.push(by_size);
    }
    say(&format!("redelivery: {} rounds, each killing a member that holds {HELD} messages", plan.kills));
    let mut kills = Vec::new();
    for r in 0..plan.kills {
        let k = run_kill(&mut peer, &plan.dir, r)
            .with_context(|| format!("redelivery round {}", r + 1))
            .map_err(|e| peer.explain(e))?;
        kills.push(k);
    }
    say("done");
    peer.finish()?;
    Ok(AcksMeasurements { sizes: plan.sizes.clone(), counts, runs, kills, elapsed: start.elapsed(), fs })
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

/// The nearest-rank `q` quantile of `v` (the smallest value with at least `q` of them at or
/// below it).
fn nearest_rank(v: &[f64], q: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * s.len() as f64).ceil() as usize).clamp(1, s.len());
    s[rank - 1]
}

/// One case at one size in the JSON: medians over rounds.
#[derive(Serialize)]
pub struct AckResult {
    /// `auto` or `explicit`.
    pub case: &'static str,
    /// Message size in bytes.
    pub size: usize,
    /// Messages per run.
    pub messages_per_run: u64,
    /// Messages over all rounds.
    pub messages: u64,
    /// Median over rounds of messages / time from the first send until the member had the
    /// last one (received and, with explicit acks, acked).
    pub delivered_msgs_per_s: f64,
    /// The same in MB/s (10⁶ bytes).
    pub delivered_mb_per_s: f64,
    /// Median over rounds of messages / time until the producer's last send returned.
    pub sent_msgs_per_s: f64,
    /// Each round's delivered msgs/s.
    pub delivered_per_round: Vec<f64>,
}

/// explicit / auto at one size: the same shape as `--durable`'s ratios.
pub type AckRatio = super::durable::DurableRatio;

/// Percentiles over the redelivery rounds, in ms (nearest rank).
#[derive(Serialize, Clone, Copy)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

impl Percentiles {
    fn of(v: &[f64]) -> Percentiles {
        Percentiles {
            p50: nearest_rank(v, 0.5),
            p90: nearest_rank(v, 0.9),
            p99: nearest_rank(v, 0.99),
            max: v.iter().copied().fold(f64::NAN, f64::max),
        }
    }
}

/// The `redelivery` object of the JSON.
#[derive(Serialize)]
pub struct RedeliveryReport {
    /// Rounds (one member killed in each).
    pub rounds: usize,
    /// Messages the killed member held unacknowledged.
    pub held: u64,
    /// Their size in bytes.
    pub size: usize,
    /// `ack_wait` of the subscription (ms): far longer than a round.
    pub ack_wait_ms: u64,
    /// From `kill(SIGKILL)` to the other member's receive of the first message delivered
    /// again (`CLOCK_MONOTONIC` in both processes), ms.
    pub first_ms: Percentiles,
    /// From the kill to the receive of the last of the held messages, ms.
    pub all_ms: Percentiles,
    /// Each round's `first` latency, ms.
    pub first_per_round_ms: Vec<f64>,
    /// The target for `first_ms.p99`.
    pub target_p99_ms: f64,
    /// Whether `first_ms.p99` meets it.
    pub met: bool,
}

/// The `acks` object of the JSON: the run's parameters.
#[derive(Serialize)]
pub struct AcksParams {
    /// Where the logs were.
    pub dir: String,
    /// Its file system.
    pub filesystem: String,
    /// Always `never`.
    pub fsync: &'static str,
    /// Always `block`.
    pub wait: &'static str,
    /// Time budget of one throughput run (ms), without `--messages`.
    pub budget_ms: u64,
    /// Messages of the warm-up run of each case and size (at least).
    pub warmup_messages: u64,
}

/// `shmq bench --acks --json FILE`.
#[derive(Serialize)]
pub struct AcksJson {
    /// Always 1.
    pub schema_version: u32,
    /// Where it ran.
    pub machine: Machine,
    /// How it ran.
    pub run: RunInfo,
    /// Throughput, one per (case, size).
    pub results: Vec<AckResult>,
    /// explicit / auto, per size.
    pub ratios: Vec<AckRatio>,
    /// Redelivery after a member's death.
    pub redelivery: RedeliveryReport,
    /// The parameters.
    pub acks: AcksParams,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Builds the results, the ratios and the redelivery report.
pub fn build(m: &AcksMeasurements) -> (Vec<AckResult>, Vec<AckRatio>, RedeliveryReport) {
    let mut results = Vec::new();
    let mut ratios = Vec::new();
    for (si, &size) in m.sizes.iter().enumerate() {
        for (ci, case) in Case::ALL.iter().enumerate() {
            let runs: Vec<Timing> = m.runs.iter().map(|r| r[si][ci]).collect();
            let delivered: Vec<f64> = runs.iter().map(Timing::delivered_rate).collect();
            let sent: Vec<f64> = runs.iter().map(Timing::sent_rate).collect();
            let d = median(&delivered);
            results.push(AckResult {
                case: case.name(),
                size,
                messages_per_run: m.counts[si],
                messages: runs.iter().map(|t| t.messages).sum(),
                delivered_msgs_per_s: d,
                delivered_mb_per_s: d * size as f64 / 1e6,
                sent_msgs_per_s: median(&sent),
                delivered_per_round: delivered,
            });
        }
        let per_round: Vec<f64> =
            m.runs.iter().map(|r| r[si][1].delivered_rate() / r[si][0].delivered_rate()).collect();
        let (min, max) = per_round.iter().fold((f64::INFINITY, 0f64), |(a, b), &x| (a.min(x), b.max(x)));
        let med = median(&per_round);
        let target = (size == 64).then_some(TARGET_RATIO);
        ratios.push(AckRatio {
            size,
            ratio: "explicit/auto",
            metric: "delivered_msgs_per_s",
            median: med,
            min,
            max,
            per_round,
            target,
            met: target.map(|t| med >= t),
        });
    }
    let first: Vec<f64> = m.kills.iter().map(|k| ms(k.first)).collect();
    let all: Vec<f64> = m.kills.iter().map(|k| ms(k.all)).collect();
    let first_ms = Percentiles::of(&first);
    let redelivery = RedeliveryReport {
        rounds: m.kills.len(),
        held: HELD,
        size: KILL_SIZE,
        ack_wait_ms: ACK_WAIT.as_millis() as u64,
        first_ms,
        all_ms: Percentiles::of(&all),
        first_per_round_ms: first,
        target_p99_ms: TARGET_P99_MS,
        met: first_ms.p99 <= TARGET_P99_MS,
    };
    (results, ratios, redelivery)
}

/// The printed table.
pub fn table(
    m: &AcksMeasurements,
    machine: &Machine,
    plan: &Plan,
    results: &[AckResult],
    ratios: &[AckRatio],
    red: &RedeliveryReport,
) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "shmq bench --acks: 1 producer (this process) + member processes, not pinned, all waits block; {} ({} CPUs{}), \
         Linux {}",
        machine.cpu_model,
        machine.cpus,
        if machine.virtualized { ", virtualized" } else { "" },
        machine.kernel
    );
    let _ = writeln!(
        s,
        "durable queues, Fsync::Never, logs in {} ({}); one named subscription, the default one removed; {:.1} s",
        plan.dir.display(),
        m.fs,
        m.elapsed.as_secs_f64()
    );
    let counts: Vec<String> =
        m.sizes.iter().zip(&m.counts).map(|(&z, &c)| format!("{c} at {}", size_label(z))).collect();
    let _ = writeln!(
        s,
        "\nthroughput: {} rounds, cases interleaved, messages per run: {}; the member checks it gets exactly 0..M in order",
        m.runs.len(),
        counts.join(", ")
    );
    for case in Case::ALL {
        let _ = writeln!(s, "  {:<9} {}", case.name(), case.describe());
    }
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "{:<8} {:<9} {:>13} {:>10} {:>13} {:>12}",
        "size", "case", "delivered/s", "MB/s", "sent/s", "messages"
    );
    let mut last = usize::MAX;
    for r in results {
        if r.size != last && last != usize::MAX {
            let _ = writeln!(s);
        }
        last = r.size;
        let _ = writeln!(
            s,
            "{:<8} {:<9} {:>13} {:>10.1} {:>13} {:>12}",
            size_label(r.size),
            r.case,
            report::rate(r.delivered_msgs_per_s),
            r.delivered_mb_per_s,
            report::rate(r.sent_msgs_per_s),
            r.messages
        );
    }
    let _ = writeln!(s, "\nexplicit/auto, delivered msgs/s, median over rounds [min-max]:");
    for r in ratios {
        let target = match (r.target, r.met) {
            (Some(t), Some(met)) => format!("target >= {t:.1}: {}", if met { "met" } else { "NOT met" }),
            _ => String::new(),
        };
        let _ = writeln!(s, "{:<8} {:.2} [{:.2}-{:.2}] {}", size_label(r.size), r.median, r.min, r.max, target);
    }
    let _ = writeln!(
        s,
        "\nredelivery after a member's death: {} rounds; member A holds {} messages of {} unacked (ack_wait {} s), \
         member B waits in recv_timeout, A gets SIGKILL after a random 20-120 ms pause",
        red.rounds,
        red.held,
        size_label(red.size),
        red.ack_wait_ms / 1000
    );
    let _ = writeln!(s, "from the kill to B's receive (CLOCK_MONOTONIC), ms, nearest rank over rounds:");
    let _ = writeln!(s, "{:<30} {:>8} {:>8} {:>8} {:>8}", "", "p50", "p90", "p99", "max");
    for (what, p) in [("first message delivered again", red.first_ms), ("all held messages", red.all_ms)] {
        let _ = writeln!(s, "{what:<30} {:>8.1} {:>8.1} {:>8.1} {:>8.1}", p.p50, p.p90, p.p99, p.max);
    }
    let _ = writeln!(
        s,
        "first redelivery p99 {:.1} ms: target <= {:.0} ms: {}",
        red.first_ms.p99,
        red.target_p99_ms,
        if red.met { "met" } else { "NOT met" }
    );
    s
}

/// `shmq bench --acks`: measures, prints the table, writes the JSON.
pub fn run(plan: &Plan, fs: String, json: Option<&Path>) -> Result<()> {
    let m = measure(plan, fs)?;
    let (results, ratios, redelivery) = build(&m);
    let machine = report::machine_info(allowed_cpus().len(), None);
    print!("{}", table(&m, &machine, plan, &results, &ratios, &redelivery));
    if let Some(path) = json {
        let rep = AcksJson {
            schema_version: report::SCHEMA_VERSION,
            run: RunInfo {
                shmq_version: env!("CARGO_PKG_VERSION"),
                rounds: m.runs.len(),
                quick: plan.quick,
                sizes: m.sizes.clone(),
                warmup_round_trips: 0,
                messages: plan.fixed,
                latency_budget_ms: 0,
                throughput_budget_ms: plan.budget.as_millis() as u64,
                floor_probe: None,
                elapsed_s: m.elapsed.as_secs_f64(),
            },
            machine,
            results,
            ratios,
            redelivery,
            acks: AcksParams {
                dir: plan.dir.display().to_string(),
                filesystem: m.fs.clone(),
                fsync: "never",
                wait: "block",
                budget_ms: plan.budget.as_millis() as u64,
                warmup_messages: plan.warmup,
            },
        };
        let text = serde_json::to_string_pretty(&rep)? + "\n";
        std::fs::write(path, text).with_context(|| format!("write {}", path.display()))?;
    }
    Ok(())
}

/// `shmq bench --acks` from the command line: makes (or checks) the log directory, runs,
/// removes what it made.
pub fn run_cli(args: &super::BenchArgs) -> Result<()> {
    if let Some(&s) = args.size.iter().find(|&&s| s < MIN_SIZE) {
        crate::usage_error(format!(
            "invalid --size {s} with --acks: at least {MIN_SIZE} B (each message carries its sequence number)"
        ));
    }
    if args.kills == Some(0) {
        crate::usage_error("--kills must be at least 1");
    }
    let (dir, made) = match &args.dir {
        Some(d) => (d.clone(), false),
        None => {
            let d = std::env::current_dir()
                .context("find the current directory")?
                .join(format!("shmq-bench-acks-{}", std::process::id()));
            std::fs::create_dir(&d).with_context(|| format!("create {}", d.display()))?;
            (d, true)
        }
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let dir = dir.canonicalize().with_context(|| format!("resolve {}", dir.display()))?;
    let result = check_dir(&dir, args.allow_tmpfs).and_then(|fs| {
        let plan = Plan {
            sizes: args.size.clone(),
            rounds: args.rounds.unwrap_or(if args.quick { 3 } else { 5 }),
            budget: Duration::from_millis(if args.quick { 40 } else { 250 }),
            fixed: args.messages,
            warmup: if args.quick { 2_000 } else { 20_000 },
            kills: args.kills.unwrap_or(if args.quick { 10 } else { 30 }),
            dir: dir.clone(),
            quick: args.quick,
        };
        run(&plan, fs, args.json.as_deref())
    });
    if made {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles_pick_a_measured_value() {
        let v: Vec<f64> = (1..=30).map(f64::from).collect();
        assert_eq!(nearest_rank(&v, 0.5), 15.0);
        assert_eq!(nearest_rank(&v, 0.9), 27.0);
        assert_eq!(nearest_rank(&v, 0.99), 30.0);
        assert_eq!(nearest_rank(&[4.0], 0.99), 4.0);
        assert!(nearest_rank(&[], 0.5).is_nan());
        let p = Percentiles::of(&[3.0, 1.0, 2.0]);
        assert_eq!((p.p50, p.p90, p.p99, p.max), (2.0, 3.0, 3.0, 3.0));
    }

    #[test]
    fn pauses_fall_between_20_and_120_ms() {
        for r in 0..1000 {
            let p = pause(r);
            assert!(p >= Duration::from_millis(20) && p < Duration::from_millis(120), "{p:?}");
        }
    }
}
